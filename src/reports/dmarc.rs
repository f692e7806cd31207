//! DMARC aggregate reports (RFC 7489 appendix C) found in mail: the XML, plain, gzipped or
//! zipped, read by `mail-auth` (Stalwart's parser: decompression capped, no entity expansion),
//! then checked and bounded here before anything reaches the database.

use std::net::IpAddr;

use chrono::{DateTime, TimeZone, Utc};
use mail_auth::report::{ActionDisposition, Disposition, DmarcResult, Report};

use crate::names::DomainName;
pub use crate::store::dmarc_reports::{DmarcRecord as Record, DmarcReport as Aggregate};

/// The most XML one mail may decompress to, all its parts together (a big receiver's daily
/// report is a few MiB; a bomb, or many parts, stop here).
pub const MAX_XML_BYTES: usize = 16 << 20;
/// Report parts (attachments, zip entries) read of one mail.
const MAX_PARTS: usize = 10;
/// MIME parts looked at in one mail.
const MAX_MIME_PARTS: usize = 50;
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

/// The report a message carries, checked; `None` when the message has no report part at all
/// (another mail in the mailbox); an error names why a report part could not be read.
pub fn in_mail(raw: &[u8]) -> Result<Option<Aggregate>, String> {
    let Ok(mail) = mailparse::parse_mail(raw) else {
        return Ok(None);
    };
    // One budget for the whole mail: many parts or zip entries cannot add up to more.
    let mut budget = MAX_XML_BYTES;
    let mut read = 0usize;
    let mut error: Option<String> = None;
    let mut parts = vec![&mail];
    let mut seen_parts = 0usize;
    while let Some(part) = parts.pop() {
        seen_parts += 1;
        if seen_parts > MAX_MIME_PARTS {
            break;
        }
        parts.extend(part.subparts.iter());
        let Some(kind) = kind_of(part) else { continue };
        let Ok(body) = part.get_body_raw() else {
            error = Some("a report part cannot be decoded".into());
            continue;
        };
        let xmls = match kind {
            Kind::Xml => vec![body],
            Kind::Gzip => match gunzip(&body, budget) {
                Ok(x) => vec![x],
                Err(e) => return Err(e),
            },
            Kind::Zip => unzip(&body, budget)?,
        };
        for xml in xmls {
            read += 1;
            if read > MAX_PARTS {
                return Err(format!("more than {MAX_PARTS} report parts in one mail"));
            }
            if xml.len() > budget {
                return Err(too_large());
            }
            budget -= xml.len();
            let records = memchr::memmem::find_iter(&xml, b"<record>").count();
            if records > MAX_RECORDS {
                return Err(format!(
                    "{records} records: more than the {MAX_RECORDS} kept of one report"
                ));
            }
            match Report::parse_xml(&xml) {
                Ok(report) => return check(&report).map(Some),
                Err(e) => error = Some(format!("unreadable DMARC report: {}", clean(&e))),
            }
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(None),
    }
}

enum Kind {
    Xml,
    Gzip,
    Zip,
}

/// What a MIME part holds, by its type or its file name (receivers label them loosely).
fn kind_of(part: &mailparse::ParsedMail) -> Option<Kind> {
    let ctype = part.ctype.mimetype.to_ascii_lowercase();
    let name = super::part_file_name(part);
    // TLS reports (RFC 8460) come as gzipped JSON to the same mailbox often enough.
    if ctype.contains("tlsrpt") || name.contains(".json") {
        return None;
    }
    if ctype.ends_with("/gzip") || ctype.ends_with("/x-gzip") || name.ends_with(".gz") {
        Some(Kind::Gzip)
    } else if ctype.ends_with("/zip")
        || ctype.ends_with("/x-zip-compressed")
        || name.ends_with(".zip")
    {
        Some(Kind::Zip)
    } else if ctype == "text/xml" || ctype == "application/xml" || name.ends_with(".xml") {
        Some(Kind::Xml)
    } else {
        None
    }
}

fn too_large() -> String {
    format!(
        "the report is larger than {} MiB once uncompressed",
        MAX_XML_BYTES >> 20
    )
}

/// At most `budget` bytes out of a gzip stream.
fn gunzip(data: &[u8], budget: usize) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .take(budget as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("not gzip: {e}"))?;
    if out.len() > budget {
        return Err(too_large());
    }
    Ok(out)
}

/// The entries of a zip archive, at most `MAX_PARTS` of them and `budget` bytes in all.
fn unzip(data: &[u8], budget: usize) -> Result<Vec<Vec<u8>>, String> {
    use std::io::Read;
    let mut archive = mail_auth::zip::ZipArchive::new(std::io::Cursor::new(data))
        .map_err(|e| format!("not zip: {e}"))?;
    if archive.len() > MAX_PARTS {
        return Err(format!(
            "a zip of {} entries: more than {MAX_PARTS}",
            archive.len()
        ));
    }
    let mut left = budget;
    let mut out = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| format!("zip entry {i}: {e}"))?;
        let mut buf = Vec::new();
        (&mut entry)
            .take(left as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(|e| format!("zip entry {i}: {e}"))?;
        if buf.len() > left {
            return Err(too_large());
        }
        left -= buf.len();
        out.push(buf);
    }
    Ok(out)
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
