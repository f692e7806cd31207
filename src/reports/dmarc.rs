//! DMARC aggregate reports (RFC 7489 appendix C) found in mail: the XML, plain, gzipped or
//! zipped, read by `mail-auth` (Stalwart's parser: decompression capped, no entity expansion),
//! then checked and bounded here before anything reaches the database.

use std::net::IpAddr;

use chrono::{DateTime, TimeZone, Utc};
use mail_auth::report::{ActionDisposition, Disposition, DmarcResult, Report};

use crate::names::DomainName;
pub use crate::store::dmarc_reports::{DmarcRecord as Record, DmarcReport as Aggregate};

/// The most XML one report may decompress to (real ones are KiB; a bomb stops here).
pub const MAX_XML_BYTES: usize = 16 << 20;
/// Records kept of one report (a big receiver's daily report has a few hundred).
pub const MAX_RECORDS: usize = 10_000;
/// Longest text kept of a reporter's field.
const MAX_TEXT: usize = 200;

/// Printable, one line, at most `MAX_TEXT` characters.
fn clean(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_TEXT)
        .collect::<String>()
        .trim()
        .to_string()
}

fn verdict(r: DmarcResult) -> &'static str {
    match r {
        DmarcResult::Pass => "pass",
        _ => "fail",
    }
}

fn time(field: &str, secs: u64) -> Result<DateTime<Utc>, String> {
    let t = i64::try_from(secs)
        .ok()
        .and_then(|s| Utc.timestamp_opt(s, 0).single())
        .ok_or_else(|| format!("{field} {secs} is not a time"))?;
    if t.timestamp() < 946_684_800 || t > Utc::now() + chrono::Duration::days(2) {
        return Err(format!("{field} {t} is before 2000 or in the future"));
    }
    Ok(t)
}

/// The report a message carries, checked, or why there is none.
pub fn in_mail(raw: &[u8]) -> Result<Aggregate, String> {
    let report = Report::parse_rfc5322(raw, MAX_XML_BYTES).map_err(|e| match e {
        mail_auth::report::Error::ReportTooLarge => {
            format!(
                "the report is larger than {} MiB once uncompressed",
                MAX_XML_BYTES >> 20
            )
        }
        mail_auth::report::Error::NoReportsFound => "no DMARC report in the message".into(),
        other => format!("unreadable DMARC report: {other:?}"),
    })?;
    check(&report)
}

/// A parsed report turned into what is stored, every field checked.
pub fn check(report: &Report) -> Result<Aggregate, String> {
    let domain = report.domain().trim_end_matches('.').to_ascii_lowercase();
    DomainName::parse("policy_published.domain", &domain).map_err(|e| e.to_string())?;
    let organization = clean(report.org_name());
    let report_id = clean(report.report_id());
    if organization.is_empty() || report_id.is_empty() {
        return Err("the report names no organization or no report id".into());
    }
    let begins_at = time("date_range.begin", report.date_range_begin())?;
    let ends_at = time("date_range.end", report.date_range_end())?;
    if ends_at < begins_at {
        return Err("the report's period ends before it begins".into());
    }
    let policy = match report.p() {
        Disposition::None => "none",
        Disposition::Quarantine => "quarantine",
        Disposition::Reject => "reject",
        Disposition::Unspecified => "unspecified",
    }
    .to_string();
    if report.records().len() > MAX_RECORDS {
        return Err(format!(
            "{} records: more than the {MAX_RECORDS} kept of one report",
            report.records().len()
        ));
    }
    let mut records = Vec::with_capacity(report.records().len());
    for r in report.records() {
        let Some(ip) = r.source_ip() else {
            return Err("a record has no source address".into());
        };
        let ip: IpAddr = ip;
        let disposition = match r.action_disposition() {
            ActionDisposition::None => "none",
            ActionDisposition::Pass => "pass",
            ActionDisposition::Quarantine => "quarantine",
            ActionDisposition::Reject => "reject",
            ActionDisposition::Unspecified => "none",
        };
        let mut auth = Vec::new();
        for d in r.dkim_auth_result().iter().take(10) {
            auth.push(format!(
                "dkim={}:{}",
                clean(&d.domain),
                format!("{:?}", d.result).to_ascii_lowercase()
            ));
        }
        for s in r.spf_auth_result().iter().take(10) {
            auth.push(format!(
                "spf={}:{}",
                clean(&s.domain),
                format!("{:?}", s.result).to_ascii_lowercase()
            ));
        }
        records.push(Record {
            source_ip: ip.to_string(),
            messages: i64::from(r.count()),
            disposition: disposition.into(),
            dkim: verdict(r.dmarc_dkim_result()).into(),
            spf: verdict(r.dmarc_spf_result()).into(),
            header_from: clean(&r.header_from().to_ascii_lowercase()),
            auth: auth.join(" "),
        });
    }
    Ok(Aggregate {
        domain,
        organization,
        report_id,
        begins_at,
        ends_at,
        policy,
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_auth::report::{AuthResult, DKIMAuthResult, DkimResult, Identifier, Row};

    fn report(records: usize) -> Report {
        let now = Utc::now().timestamp() as u64;
        let mut r = Report::new()
            .with_org_name("Receiver\u{7} Inc.")
            .with_report_id("r-1")
            .with_domain("Example.ORG")
            .with_date_range_begin(now - 86_400)
            .with_date_range_end(now)
            .with_p(Disposition::Reject);
        for i in 0..records {
            r.add_record(mail_auth::report::Record {
                row: Row {
                    source_ip: Some(format!("192.0.2.{}", i % 250).parse().unwrap()),
                    count: 3,
                    policy_evaluated: mail_auth::report::PolicyEvaluated {
                        disposition: ActionDisposition::None,
                        dkim: DmarcResult::Pass,
                        spf: DmarcResult::Fail,
                        reason: vec![],
                    },
                },
                identifiers: Identifier {
                    envelope_to: None,
                    envelope_from: "example.org".into(),
                    header_from: "Example.org".into(),
                },
                auth_results: AuthResult {
                    dkim: vec![DKIMAuthResult {
                        domain: "example.org".into(),
                        selector: "s".into(),
                        result: DkimResult::Pass,
                        human_result: None,
                    }],
                    spf: vec![],
                },
                extensions: vec![],
            });
        }
        r
    }

    #[test]
    fn reports_are_checked_and_bounded() {
        let a = check(&report(2)).unwrap();
        assert_eq!(a.domain, "example.org");
        assert_eq!(a.organization, "Receiver Inc.");
        assert_eq!(a.policy, "reject");
        assert_eq!(a.records.len(), 2);
        let r = &a.records[0];
        assert_eq!((r.dkim.as_str(), r.spf.as_str()), ("pass", "fail"));
        assert!(r.passes());
        assert_eq!(r.header_from, "example.org");
        assert_eq!(r.auth, "dkim=example.org:pass");
        assert!(check(&report(MAX_RECORDS + 1))
            .unwrap_err()
            .contains("records"));
        let future = report(1).with_date_range_end(Utc::now().timestamp() as u64 + 10 * 86_400);
        assert!(check(&future).unwrap_err().contains("future"));
        let bad = report(1).with_domain("not a domain");
        assert!(check(&bad).is_err());
        let anonymous = report(1).with_org_name("\u{1}");
        assert!(check(&anonymous).unwrap_err().contains("organization"));
    }
}
