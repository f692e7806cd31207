//! DNS: `resolver` (lookups with deadlines for the MX and DNSBL checks) and `records` (the
//! records a hosted domain needs, in zone-file syntax).

pub mod records;
pub mod resolver;
