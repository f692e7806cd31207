//! Reports other mail servers send about the hosted domains. `tlsrpt`: SMTP TLS Reporting
//! (RFC 8460), the daily account of how sending servers fared with STARTTLS and MTA-STS here.

pub mod tlsrpt;
