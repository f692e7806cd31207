//! The DNS side of `check_mx`: a resolver whose every query ends within a timeout, MX lookups
//! (each exchanger with its A and AAAA addresses), DNSBL query names (reversed IPv4 octets,
//! reversed IPv6 nibbles) and the reading of DNSBL answers, and the networks an MX may be in.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;

use crate::names::{DomainName, Network};

/// Whether `ip` is inside one of `networks`; an empty list accepts every address.
pub fn in_networks(networks: &[Network], ip: IpAddr) -> bool {
    networks.is_empty() || networks.iter().any(|n| n.contains(ip))
}

/// The reversed form a DNSBL is queried with: `1.2.0.192` for 192.0.2.1; for IPv6 the 32
/// nibbles of the full address, lowest first (RFC 5782 §2.4), not the colon groups.
pub fn reversed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}")
        }
        IpAddr::V6(v6) => {
            let mut labels = Vec::with_capacity(32);
            for byte in v6.octets().iter().rev() {
                labels.push(format!("{:x}", byte & 0x0f));
                labels.push(format!("{:x}", byte >> 4));
            }
            labels.join(".")
        }
    }
}

/// The fully-qualified name queried for `ip` on `provider`.
pub fn dnsbl_query_name(ip: IpAddr, provider: &DomainName) -> String {
    format!("{}.{provider}.", reversed(ip))
}

/// What a DNSBL said about one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsblAnswer {
    /// NXDOMAIN or no A record: not listed.
    Clean,
    /// Listed; the first return code (e.g. 127.0.0.2), stored in admin_dnsblresult.status.
    Listed(Ipv4Addr),
    /// The list answered with an error code of its own (Spamhaus' 127.255.255.x: public
    /// resolver, rate limit, bad query) or with an address outside 127.0.0.0/8. Neither listed
    /// nor clean.
    Refused(String),
    /// No answer: timeout, SERVFAIL, network error. Neither listed nor clean.
    Failed(DnsFailure),
}

impl DnsblAnswer {
    /// Neither listed nor clean.
    pub fn error(&self) -> Option<String> {
        match self {
            DnsblAnswer::Refused(e) => Some(e.clone()),
            DnsblAnswer::Failed(e) => Some(e.to_string()),
            DnsblAnswer::Clean | DnsblAnswer::Listed(_) => None,
        }
    }
}

/// Reads the A records of a DNSBL answer. Only 127.0.0.0/8 means "listed" (RFC 5782 §2.1);
/// 127.255.255.0/24 is how Spamhaus reports that it refused to answer, and any other address
/// is a wildcard or hijacked answer — both are errors, never listings.
pub fn classify(answers: &[Ipv4Addr]) -> DnsblAnswer {
    if answers.is_empty() {
        return DnsblAnswer::Clean;
    }
    if let Some(e) = answers.iter().find(|a| {
        let [a0, a1, a2, _] = a.octets();
        a0 == 127 && a1 == 255 && a2 == 255
    }) {
        return DnsblAnswer::Refused(format!("the list refused the query (answered {e})"));
    }
    match answers.iter().find(|a| a.octets()[0] == 127) {
        Some(code) => DnsblAnswer::Listed(*code),
        None => DnsblAnswer::Refused(format!(
            "answer outside 127.0.0.0/8 ({}): a wildcard or a rewriting resolver",
            answers[0]
        )),
    }
}

/// One mail exchanger of a domain and its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchanger {
    /// Lower-case, without the final dot.
    pub name: String,
    pub addresses: Vec<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsFailure {
    #[error("{name} {rtype}: no answer within {secs} s")]
    Timeout {
        name: String,
        rtype: &'static str,
        secs: u64,
    },
    #[error("{name} {rtype}: {message}")]
    Failed {
        name: String,
        rtype: &'static str,
        message: String,
    },
    #[error("resolver: {0}")]
    Setup(String),
}

/// A hickory resolver asking `server` (UDP, then TCP for truncated answers) or, for `None`, the
/// name servers of /etc/resolv.conf, one try each within `timeout` (also what the inbound
/// authentication milter asks through mail-auth).
pub fn hickory(server: Option<SocketAddr>, timeout: Duration) -> Result<TokioResolver, DnsFailure> {
    let provider = TokioRuntimeProvider::default();
    let mut builder = match server {
        Some(addr) => {
            let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                .into_iter()
                .map(|mut c| {
                    c.port = addr.port();
                    c
                })
                .collect();
            let ns = NameServerConfig::new(addr.ip(), true, connections);
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![ns]),
                provider,
            )
        }
        None => TokioResolver::builder(provider)
            .map_err(|e| DnsFailure::Setup(format!("reading /etc/resolv.conf: {e}")))?,
    };
    let opts = builder.options_mut();
    opts.timeout = timeout;
    // One try per server: the deadline below bounds the whole query anyway.
    opts.attempts = 1;
    builder
        .build()
        .map_err(|e| DnsFailure::Setup(e.to_string()))
}

/// A resolver for one run: a fresh cache each time (a delisting is seen at the next run), and
/// a hard deadline around every query on top of the resolver's own timeout.
#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
    timeout: Duration,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Resolver(timeout {:?})", self.timeout)
    }
}

impl Resolver {
    /// `server`: one name server (UDP, then TCP for truncated answers); `None`: the system's
    /// /etc/resolv.conf.
    pub fn new(server: Option<SocketAddr>, timeout: Duration) -> Result<Self, DnsFailure> {
        let inner = hickory(server, timeout)?;
        Ok(Resolver { inner, timeout })
    }

    /// The records of one type; an empty list for NXDOMAIN or no data.
    async fn records(&self, name: &str, rtype: RecordType) -> Result<Vec<RData>, DnsFailure> {
        let label: &'static str = match rtype {
            RecordType::MX => "MX",
            RecordType::A => "A",
            RecordType::AAAA => "AAAA",
            RecordType::TXT => "TXT",
            _ => "query",
        };
        let fqdn = if name.ends_with('.') {
            name.to_string()
        } else {
            format!("{name}.")
        };
        let lookup =
            match tokio::time::timeout(self.timeout, self.inner.lookup(fqdn.as_str(), rtype)).await
            {
                Err(_) => {
                    return Err(DnsFailure::Timeout {
                        name: fqdn,
                        rtype: label,
                        secs: self.timeout.as_secs(),
                    })
                }
                Ok(r) => r,
            };
        match lookup {
            Ok(l) => Ok(l
                .answers()
                .iter()
                .filter(|r| r.record_type() == rtype)
                .map(|r| r.data.clone())
                .collect()),
            Err(NetError::Dns(DnsError::NoRecordsFound(nr)))
                if matches!(
                    nr.response_code,
                    ResponseCode::NXDomain | ResponseCode::NoError
                ) =>
            {
                Ok(Vec::new())
            }
            Err(NetError::Timeout) => Err(DnsFailure::Timeout {
                name: fqdn,
                rtype: label,
                secs: self.timeout.as_secs(),
            }),
            Err(e) => Err(DnsFailure::Failed {
                name: fqdn,
                rtype: label,
                message: e.to_string(),
            }),
        }
    }

    /// The domain's exchangers, most preferred first, each with its A and AAAA addresses.
    /// An empty list when the domain has no MX record (or only the null MX of RFC 7505).
    pub async fn mx(&self, domain: &str) -> Result<Vec<Exchanger>, DnsFailure> {
        let mut mx: Vec<(u16, String)> = self
            .records(domain, RecordType::MX)
            .await?
            .into_iter()
            .filter_map(|r| match r {
                RData::MX(mx) => {
                    let name = mx.exchange.to_ascii().trim_end_matches('.').to_lowercase();
                    Some((mx.preference, name))
                }
                _ => None,
            })
            .filter(|(_, name)| !name.is_empty())
            .collect();
        mx.sort();
        mx.dedup_by(|a, b| a.1 == b.1);
        let mut out = Vec::with_capacity(mx.len());
        for (_, name) in mx {
            let addresses = self.addresses(&name).await?;
            out.push(Exchanger { name, addresses });
        }
        Ok(out)
    }

    /// The A and AAAA addresses of `name` (after CNAMEs), sorted; empty when it has none.
    pub async fn addresses(&self, name: &str) -> Result<Vec<IpAddr>, DnsFailure> {
        let (v4, v6) = tokio::join!(
            self.records(name, RecordType::A),
            self.records(name, RecordType::AAAA)
        );
        let mut addresses: Vec<IpAddr> = Vec::new();
        for r in v4?.into_iter().chain(v6?) {
            match r {
                RData::A(a) => addresses.push(IpAddr::V4(a.0)),
                RData::AAAA(a) => addresses.push(IpAddr::V6(a.0)),
                _ => {}
            }
        }
        addresses.sort();
        addresses.dedup();
        Ok(addresses)
    }

    /// The TXT records of a name, each one string (its character-strings joined).
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, DnsFailure> {
        Ok(self
            .records(name, RecordType::TXT)
            .await?
            .into_iter()
            .filter_map(|r| match r {
                RData::TXT(t) => Some(
                    t.txt_data
                        .iter()
                        .map(|part| String::from_utf8_lossy(part).into_owned())
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect())
    }

    /// Asks one DNSBL about one address.
    pub async fn dnsbl(&self, ip: IpAddr, provider: &DomainName) -> DnsblAnswer {
        let name = dnsbl_query_name(ip, provider);
        match self.records(&name, RecordType::A).await {
            Ok(records) => {
                let answers: Vec<Ipv4Addr> = records
                    .into_iter()
                    .filter_map(|r| match r {
                        RData::A(a) => Some(a.0),
                        _ => None,
                    })
                    .collect();
                classify(&answers)
            }
            Err(e) => DnsblAnswer::Failed(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_octets_are_reversed() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(reversed(ip), "1.2.0.192");
        let p = DomainName::parse("p", "zen.spamhaus.org").unwrap();
        assert_eq!(dnsbl_query_name(ip, &p), "1.2.0.192.zen.spamhaus.org.");
    }

    #[test]
    fn ipv6_nibbles_are_reversed() {
        // RFC 5782 §2.4's example.
        let ip: IpAddr = "2001:db8:1:2:3:4:567:89ab".parse().unwrap();
        assert_eq!(
            reversed(ip),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2"
        );
        // Zero groups are expanded to their four nibbles, never dropped.
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let r = reversed(ip);
        assert_eq!(r.split('.').count(), 32);
        assert!(r.starts_with("1.0.0.0.0.0.0.0."));
        assert!(r.ends_with(".8.b.d.0.1.0.0.2"));
    }

    #[test]
    fn answers_are_classified() {
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(classify(&[]), DnsblAnswer::Clean);
        assert_eq!(
            classify(&[a("127.0.0.2")]),
            DnsblAnswer::Listed(a("127.0.0.2"))
        );
        assert_eq!(
            classify(&[a("127.0.0.4"), a("127.0.0.10")]),
            DnsblAnswer::Listed(a("127.0.0.4"))
        );
        for spamhaus_error in ["127.255.255.252", "127.255.255.254", "127.255.255.255"] {
            assert!(
                matches!(classify(&[a(spamhaus_error)]), DnsblAnswer::Refused(_)),
                "{spamhaus_error}"
            );
        }
        assert!(matches!(
            classify(&[a("192.0.2.1")]),
            DnsblAnswer::Refused(_)
        ));
    }

    #[test]
    fn networks_parse_and_match() {
        let n = Network::parse("valid_networks", "192.0.2.0/24").unwrap();
        assert!(n.contains("192.0.2.77".parse().unwrap()));
        assert!(!n.contains("198.51.100.1".parse().unwrap()));
        let host = Network::parse("valid_networks", "2001:db8::25").unwrap();
        assert_eq!(host.to_string(), "2001:db8::25/128");
        let e = Network::parse("check_mx.valid_networks", "192.0.2.1/24").unwrap_err();
        assert_eq!(e.field, "check_mx.valid_networks");
        assert!(e.rule.contains("192.0.2.0/24"), "{e}");
        assert!(Network::parse("n", "192.0.2.0/33").is_err());
        assert!(Network::parse("n", "mail.example.com").is_err());
        assert!(in_networks(&[], "203.0.113.9".parse().unwrap()));
        assert!(!in_networks(&[n], "203.0.113.9".parse().unwrap()));
    }
}
