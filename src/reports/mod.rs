//! Reports other mail servers send about the hosted domains. `tlsrpt`: SMTP TLS Reporting
//! (RFC 8460), the daily account of how sending servers fared with STARTTLS and MTA-STS here;
//! `dmarc`: DMARC aggregate reports (RFC 7489), who sends as the domain and how it authenticates.

pub mod dmarc;
pub mod tlsrpt;
