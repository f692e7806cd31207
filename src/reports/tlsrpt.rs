//! SMTP TLS reports (RFC 8460): found in a mail (`application/tlsrpt+gzip` or `+json` parts,
//! or `.json.gz`/`.json` attachments as some senders label them), gunzipped with a size cap (a
//! small gzip can expand to gigabytes), read as the RFC's JSON, and checked before anything
//! is kept: the organization and report id bounded, each policy's domain a valid name.

use std::io::Read;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::names::DomainName;

/// Largest report taken, uncompressed (real ones are a few KiB; a large provider's, some MiB).
pub const MAX_REPORT_BYTES: u64 = 16 << 20;
/// Longest organization name or report id kept (the table's columns).
const MAX_ID: usize = 200;

/// One report as RFC 8460 §4.4 writes it (the fields modobox keeps).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Report {
    pub organization_name: String,
    pub date_range: DateRange,
    pub report_id: String,
    pub policies: Vec<PolicyResult>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DateRange {
    pub start_datetime: DateTime<Utc>,
    pub end_datetime: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PolicyResult {
    pub policy: Policy,
    pub summary: Summary,
    #[serde(default)]
    pub failure_details: Vec<FailureDetail>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Policy {
    /// `sts`, `tlsa` or `no-policy-found`.
    pub policy_type: String,
    #[serde(default)]
    pub policy_string: Vec<String>,
    pub policy_domain: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Summary {
    pub total_successful_session_count: u64,
    pub total_failure_session_count: u64,
}

/// One kind of failure of one sending server (what the domain page shows).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct FailureDetail {
    /// `starttls-not-supported`, `certificate-host-mismatch`, `certificate-expired`,
    /// `sts-policy-fetch-error`, `validation-failure`, …
    pub result_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sending_mta_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving_mx_hostname: Option<String>,
    #[serde(default)]
    pub failed_session_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason_code: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ReportError {
    #[error("larger than {} MiB uncompressed", MAX_REPORT_BYTES >> 20)]
    TooLarge,
    #[error("not gzip: {0}")]
    Gzip(String),
    #[error("not an RFC 8460 report: {0}")]
    Json(String),
    #[error("{field}: {rule}")]
    Invalid { field: &'static str, rule: String },
}

/// At most this many reports are read from one mail (real senders send one).
pub const MAX_PARTS: usize = 10;

/// The JSON of a report part: gunzipped when it is gzip (told by its magic bytes), at most
/// `limit` bytes either way.
fn decode(bytes: &[u8], limit: u64) -> Result<Vec<u8>, ReportError> {
    let json = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(|e| ReportError::Gzip(e.to_string()))?;
        out
    } else {
        bytes.to_vec()
    };
    if json.len() as u64 > limit {
        return Err(ReportError::TooLarge);
    }
    Ok(json)
}

/// Reads a report: JSON, gzipped or not.
pub fn parse(bytes: &[u8]) -> Result<Report, ReportError> {
    from_json(&decode(bytes, MAX_REPORT_BYTES)?)
}

fn from_json(json: &[u8]) -> Result<Report, ReportError> {
    let report: Report =
        serde_json::from_slice(json).map_err(|e| ReportError::Json(e.to_string()))?;
    check(&report)?;
    Ok(report)
}

/// A text field of a report: bounded, without control characters (what the table and page
/// take on every engine; PostgreSQL refuses NUL outright).
fn text_ok(field: &'static str, value: &str, max: usize) -> Result<(), ReportError> {
    if value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(ReportError::Invalid {
            field,
            rule: format!("must be at most {max} characters without control characters"),
        });
    }
    Ok(())
}

fn check(r: &Report) -> Result<(), ReportError> {
    for (field, value) in [
        ("organization-name", &r.organization_name),
        ("report-id", &r.report_id),
    ] {
        if value.trim().is_empty()
            || value.chars().count() > MAX_ID
            || value.chars().any(char::is_control)
        {
            return Err(ReportError::Invalid {
                field,
                rule: format!("must be 1 to {MAX_ID} characters without control characters"),
            });
        }
    }
    let (start, end) = (r.date_range.start_datetime, r.date_range.end_datetime);
    let earliest = DateTime::<Utc>::from_timestamp(946_684_800, 0).unwrap_or_default(); // 2000
    let latest = Utc::now() + chrono::Duration::days(7);
    if end < start || start < earliest || end > latest {
        return Err(ReportError::Invalid {
            field: "date-range",
            rule: "must start after 2000, end after it starts and not in the future".into(),
        });
    }
    if r.policies.len() > 100 {
        return Err(ReportError::Invalid {
            field: "policies",
            rule: "at most 100".into(),
        });
    }
    for p in &r.policies {
        DomainName::parse("policy-domain", &p.policy.policy_domain).map_err(|e| {
            ReportError::Invalid {
                field: "policy-domain",
                rule: e.to_string(),
            }
        })?;
        if !matches!(
            p.policy.policy_type.as_str(),
            "sts" | "tlsa" | "no-policy-found"
        ) {
            return Err(ReportError::Invalid {
                field: "policy-type",
                rule: "must be sts, tlsa or no-policy-found".into(),
            });
        }
        if p.policy.policy_string.len() > 100 || p.failure_details.len() > 1000 {
            return Err(ReportError::Invalid {
                field: "policy-string",
                rule: "at most 100 lines and 1000 failure details per policy".into(),
            });
        }
        for line in &p.policy.policy_string {
            text_ok("policy-string", line, 1000)?;
        }
        for f in &p.failure_details {
            text_ok("result-type", &f.result_type, 64)?;
            for v in [
                &f.sending_mta_ip,
                &f.receiving_mx_hostname,
                &f.failure_reason_code,
            ]
            .into_iter()
            .flatten()
            {
                text_ok("failure-details", v, 255)?;
            }
        }
    }
    Ok(())
}

/// The TLS reports a mail carries: every part labelled as one (RFC 8460 §5.3), or attached as
/// `.json.gz`/`.json` under a generic type. Unreadable ones come back as errors.
pub fn in_mail(raw: &[u8]) -> Vec<Result<Report, ReportError>> {
    let Ok(mail) = mailparse::parse_mail(raw) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    // One budget for the whole mail: many small parts cannot add up to gigabytes.
    let mut budget = MAX_REPORT_BYTES;
    let mut parts = vec![&mail];
    while let Some(part) = parts.pop() {
        parts.extend(part.subparts.iter());
        let ctype = part.ctype.mimetype.to_ascii_lowercase();
        let name = super::part_file_name(part);
        let labelled = matches!(
            ctype.as_str(),
            "application/tlsrpt+gzip" | "application/tlsrpt+json"
        );
        let attached = matches!(
            ctype.as_str(),
            "application/gzip"
                | "application/x-gzip"
                | "application/octet-stream"
                | "application/json"
        ) && (name.ends_with(".json.gz") || name.ends_with(".json"));
        if labelled || attached {
            if out.len() == MAX_PARTS {
                out.push(Err(ReportError::Invalid {
                    field: "mail",
                    rule: format!("more than {MAX_PARTS} reports in one mail: the rest not read"),
                }));
                break;
            }
            let report = part
                .get_body_raw()
                .map_err(|e| ReportError::Json(e.to_string()))
                .and_then(|b| decode(&b, budget))
                .and_then(|json| {
                    budget -= json.len() as u64;
                    from_json(&json)
                });
            out.push(report);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// RFC 8460 §4.8's example, shortened.
    pub const EXAMPLE: &str = r#"{
      "organization-name": "Company-X",
      "date-range": {"start-datetime": "2016-04-01T00:00:00Z", "end-datetime": "2016-04-01T23:59:59Z"},
      "contact-info": "sts-reporting@company-x.example",
      "report-id": "5065427c-23d3-47ca-b6e0-946ea0e8c4be",
      "policies": [{
        "policy": {"policy-type": "sts", "policy-string": ["version: STSv1", "mode: testing", "mx: *.mail.company-y.example", "max_age: 86400"],
                   "policy-domain": "company-y.example", "mx-host": ["*.mail.company-y.example"]},
        "summary": {"total-successful-session-count": 5326, "total-failure-session-count": 303},
        "failure-details": [
          {"result-type": "certificate-expired", "sending-mta-ip": "2001:db8:abcd:0012::1",
           "receiving-mx-hostname": "mx1.mail.company-y.example", "failed-session-count": 100},
          {"result-type": "starttls-not-supported", "sending-mta-ip": "2001:db8:abcd:0013::1",
           "receiving-mx-hostname": "mx2.mail.company-y.example", "receiving-ip": "203.0.113.56",
           "failed-session-count": 200, "additional-information": "https://reports.company-x.example/report_info?id=5065427c-23d3#StarttlsNotSupported"}
        ]
      }]
    }"#;

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn the_rfc_example_is_read_plain_and_gzipped() {
        for bytes in [EXAMPLE.as_bytes().to_vec(), gz(EXAMPLE.as_bytes())] {
            let r = parse(&bytes).unwrap();
            assert_eq!(r.organization_name, "Company-X");
            let p = &r.policies[0];
            assert_eq!(p.policy.policy_domain, "company-y.example");
            assert_eq!(p.summary.total_failure_session_count, 303);
            assert_eq!(p.failure_details[1].result_type, "starttls-not-supported");
            assert_eq!(p.failure_details[1].failed_session_count, 200);
        }
    }

    #[test]
    fn bombs_garbage_and_bad_fields_are_refused() {
        // 64 MiB of zeros gzip to ~64 KiB: refused after reading 16 MiB.
        let bomb = gz(&vec![b'0'; 64 << 20]);
        assert!(bomb.len() < 200 << 10);
        assert_eq!(parse(&bomb).unwrap_err(), ReportError::TooLarge);
        assert!(matches!(
            parse(b"\x1f\x8bnot gzip").unwrap_err(),
            ReportError::Gzip(_)
        ));
        assert!(matches!(
            parse(b"{\"a\": 1}").unwrap_err(),
            ReportError::Json(_)
        ));
        let bad_domain = EXAMPLE.replace(
            "\"policy-domain\": \"company-y.example\"",
            "\"policy-domain\": \"../etc\"",
        );
        assert!(matches!(
            parse(bad_domain.as_bytes()).unwrap_err(),
            ReportError::Invalid {
                field: "policy-domain",
                ..
            }
        ));
        let nul = EXAMPLE.replace("mode: testing", "mode: \\u0000testing");
        assert!(matches!(
            parse(nul.as_bytes()).unwrap_err(),
            ReportError::Invalid {
                field: "policy-string",
                ..
            }
        ));
        let ancient = EXAMPLE.replace("2016-04-01T00:00:00Z", "0999-04-01T00:00:00Z");
        assert!(matches!(
            parse(ancient.as_bytes()).unwrap_err(),
            ReportError::Invalid {
                field: "date-range",
                ..
            }
        ));
        let long_id = EXAMPLE.replace("5065427c-23d3-47ca-b6e0-946ea0e8c4be", &"x".repeat(300));
        assert!(matches!(
            parse(long_id.as_bytes()).unwrap_err(),
            ReportError::Invalid {
                field: "report-id",
                ..
            }
        ));
    }

    #[test]
    fn reports_are_found_in_a_mail_as_senders_attach_them() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(gz(EXAMPLE.as_bytes()));
        let mail = format!(
            "From: reports@company-x.example\r\nTo: tlsrpt@company-y.example\r\n\
             Subject: Report Domain: company-y.example Submitter: company-x.example Report-ID: <1>\r\n\
             TLS-Report-Domain: company-y.example\r\nTLS-Report-Submitter: company-x.example\r\n\
             MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=\"tlsrpt\"; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nThis is a TLS report.\r\n\
             --b\r\nContent-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n\
             Content-Disposition: attachment; filename=\"company-x.example!company-y.example!1!2.json.gz\"\r\n\r\n\
             {b64}\r\n--b--\r\n"
        );
        let found = in_mail(mail.as_bytes());
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].as_ref().unwrap().report_id,
            "5065427c-23d3-47ca-b6e0-946ea0e8c4be"
        );
        // Google labels its attachment application/gzip.
        let google = mail.replace("application/tlsrpt+gzip", "application/gzip");
        assert_eq!(in_mail(google.as_bytes()).len(), 1);
        // Many reports in one mail: ten read, the rest refused with a reason.
        let part = format!(
            "--b\r\nContent-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n"
        );
        let many = format!(
            "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; boundary=\"b\"\r\n\r\n{}--b--\r\n",
            part.repeat(12)
        );
        let found = in_mail(many.as_bytes());
        assert_eq!(found.len(), MAX_PARTS + 1);
        assert_eq!(found.iter().filter(|r| r.is_ok()).count(), MAX_PARTS);
        assert!(found[MAX_PARTS]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("more than 10"));
        // An ordinary mail has none.
        assert!(in_mail(b"From: a@b.example\r\nSubject: hi\r\n\r\nhello\r\n").is_empty());
    }
}
