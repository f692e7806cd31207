//! Reports other mail servers send about the hosted domains. `tlsrpt`: SMTP TLS Reporting
//! (RFC 8460), the daily account of how sending servers fared with STARTTLS and MTA-STS here;
//! `dmarc`: DMARC aggregate reports (RFC 7489), who sends as the domain and how it authenticates.

pub mod dmarc;
pub mod tlsrpt;

/// A MIME part's file name (Content-Disposition's, else Content-Type's `name`), lowercased:
/// report senders label their attachments by name as often as by type.
pub fn part_file_name(part: &mailparse::ParsedMail) -> String {
    part.get_content_disposition()
        .params
        .get("filename")
        .cloned()
        .or_else(|| part.ctype.params.get("name").cloned())
        .unwrap_or_default()
        .to_ascii_lowercase()
}
