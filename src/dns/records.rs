//! The DNS records a hosted mail domain must publish, in zone-file syntax: what the admin
//! copies into their DNS, and what the DNS checks compare against.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::keys::dkim;
use crate::names::{DkimSelector, DomainName, EmailAddress, Hostname, NameError};
use crate::store::domains::Domain;

/// What the records of one domain depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainDns {
    pub domain: DomainName,
    /// The mail server (MX, and target of the client-configuration records).
    pub hostname: Hostname,
    pub ipv4: Vec<Ipv4Addr>,
    pub ipv6: Vec<Ipv6Addr>,
    /// The DKIM selector and public key (`admin_domain.dkim_public_key`), when DKIM is on.
    pub dkim: Option<(DkimSelector, String)>,
    /// Publish MTA-STS (policy id, `mta-sts` host) and TLS reporting records.
    pub mta_sts: bool,
    /// The mode of the MTA-STS policy.
    pub mta_sts_mode: crate::config::MtaStsMode,
    /// Where DMARC aggregate reports go.
    /// Where DMARC aggregate reports go (`mail.dmarc_reports_mailbox`, else the admin address).
    pub dmarc_reports: String,
    /// Where TLS reports go (`mail.tls_reports_mailbox`, else the admin address).
    pub tls_reports: String,
}

/// The addresses other servers reach this one at: every interface address except loopback,
/// link-local and (for IPv6) unique-local ones.
pub fn public_addresses() -> Vec<IpAddr> {
    crate::system::net::interface_addresses()
        .into_iter()
        .filter(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local() && !v4.is_unspecified(),
            IpAddr::V6(v6) => {
                let first = v6.segments()[0];
                !v6.is_loopback()
                    && !v6.is_unspecified()
                    && first & 0xffc0 != 0xfe80
                    && first & 0xfe00 != 0xfc00
            }
        })
        .collect()
}

/// The records of a hosted domain — with its DKIM key once the `dkim_keys` job made it — as
/// the install summary, `modobox dns records` and the domain page all show them.
pub fn for_domain(
    d: &Domain,
    config: &Config,
    addresses: &[IpAddr],
    mta_sts: bool,
) -> Result<Vec<Record>, NameError> {
    let dkim = if d.enable_dkim && !d.dkim_public_key.is_empty() {
        Some((
            DkimSelector::parse("dkim_key_selector", &d.dkim_key_selector)?,
            d.dkim_public_key.clone(),
        ))
    } else {
        None
    };
    let input = DomainDns {
        domain: d.name.clone(),
        hostname: config.hostname.clone(),
        ipv4: addresses
            .iter()
            .filter_map(|a| match a {
                IpAddr::V4(v4) => Some(*v4),
                IpAddr::V6(_) => None,
            })
            .collect(),
        ipv6: addresses
            .iter()
            .filter_map(|a| match a {
                IpAddr::V6(v6) => Some(*v6),
                IpAddr::V4(_) => None,
            })
            .collect(),
        dkim,
        mta_sts,
        mta_sts_mode: config.mail.mta_sts_mode,
        dmarc_reports: config
            .dmarc_reports_address()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        tls_reports: config
            .tls_reports_address()
            .map(|a| a.to_string())
            .unwrap_or_default(),
    };
    Ok(records(&input))
}

/// One resource record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Owner name, fully qualified with a trailing dot.
    pub name: String,
    pub ttl: u32,
    pub rtype: &'static str,
    /// RDATA in zone-file syntax (TXT values quoted and split into ≤ 255-byte strings).
    pub value: String,
    /// What the record is for, in one line.
    pub comment: String,
    /// False for a record that belongs in another zone (the mail server's address when the
    /// server is named outside the domain, a DMARC report authorization at the admin's
    /// domain): shown, commented out, for whoever runs that zone.
    pub in_zone: bool,
}

pub const TTL: u32 = 3600;
/// How long senders cache the MTA-STS policy (one week).
pub const MTA_STS_MAX_AGE: u32 = 604_800;

fn push(out: &mut Vec<Record>, name: String, rtype: &'static str, value: String, comment: String) {
    out.push(Record {
        name,
        ttl: TTL,
        rtype,
        value,
        comment,
        in_zone: true,
    });
}

fn fqdn(name: &str) -> String {
    format!("{name}.")
}

/// Whether `name` is `zone` or below it.
fn within(name: &str, zone: &str) -> bool {
    name == zone
        || name
            .strip_suffix(zone)
            .is_some_and(|prefix| prefix.ends_with('.'))
}

/// The MTA-STS policy served at `https://mta-sts.<domain>/.well-known/mta-sts.txt`.
///
/// Mode `testing` (the default): senders report TLS failures (to the TLS-RPT address) but
/// still deliver. `enforce` (`mail.mta_sts_mode`) makes them refuse to deliver unless the MX
/// presents a certificate from a public CA, which a self-signed certificate is not.
pub fn mta_sts_policy(d: &DomainDns) -> String {
    mta_sts_policy_for(&d.hostname, d.mta_sts_mode)
}

/// The MTA-STS policy of every domain whose MX is `hostname` (what the web server serves).
pub fn mta_sts_policy_for(hostname: &Hostname, mode: crate::config::MtaStsMode) -> String {
    format!(
        "version: STSv1\r\nmode: {}\r\nmx: {hostname}\r\nmax_age: {MTA_STS_MAX_AGE}\r\n",
        mode.as_str()
    )
}

/// The policy id of the `_mta-sts` record: 20 hex digits of the SHA-256 of the policy, so it
/// changes exactly when the policy does (RFC 8461 allows 1 to 32 letters and digits).
pub fn mta_sts_id(policy: &str) -> String {
    Sha256::digest(policy.as_bytes())
        .iter()
        .take(10)
        .fold(String::with_capacity(20), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The web names of the domain that point at the mail server and so belong in its
/// certificate: `autoconfig.`, `autodiscover.` and, with MTA-STS, `mta-sts.` (whose HTTPS
/// certificate senders check).
pub fn web_names(d: &DomainDns) -> Vec<Hostname> {
    web_names_of(&d.domain, d.mta_sts)
}

/// `web_names` of `domain`: `autoconfig.`, `autodiscover.` and, with `mta_sts`, `mta-sts.`.
pub fn web_names_of(domain: &DomainName, mta_sts: bool) -> Vec<Hostname> {
    let mut labels = vec!["autoconfig", "autodiscover"];
    if mta_sts {
        labels.push("mta-sts");
    }
    labels
        .into_iter()
        .filter_map(|l| Hostname::parse("hostname", &format!("{l}.{domain}")).ok())
        .collect()
}

/// `mail.<domain>`: the name a customer may give their mail clients instead of the hostname;
/// the ACME certificate covers it when its DNS points here.
pub fn mail_name_of(domain: &DomainName) -> Option<Hostname> {
    Hostname::parse("hostname", &format!("mail.{domain}")).ok()
}

/// Every record the domain needs, in the order an admin would enter them.
pub fn records(d: &DomainDns) -> Vec<Record> {
    let domain = d.domain.as_str();
    let host = d.hostname.as_str();
    let apex = fqdn(domain);
    let target = fqdn(host);
    let mut out = Vec::new();

    push(
        &mut out,
        apex.clone(),
        "MX",
        format!("10 {target}"),
        format!("mail for {domain} is delivered to {host}"),
    );

    let host_inside = within(host, domain);
    let address_comment = if host_inside {
        format!("address of the mail server {host}")
    } else {
        format!("address of the mail server: belongs in the zone holding {host}, not in {domain}")
    };
    for ip in &d.ipv4 {
        push(
            &mut out,
            target.clone(),
            "A",
            ip.to_string(),
            address_comment.clone(),
        );
    }
    for ip in &d.ipv6 {
        push(
            &mut out,
            target.clone(),
            "AAAA",
            ip.to_string(),
            address_comment.clone(),
        );
    }
    for r in out
        .iter_mut()
        .filter(|r| r.rtype == "A" || r.rtype == "AAAA")
    {
        r.in_zone = host_inside;
    }

    push(
        &mut out,
        apex.clone(),
        "TXT",
        dkim::zone_txt("v=spf1 mx -all"),
        format!("SPF: only the MX hosts of {domain} send its mail"),
    );

    if let Some((selector, public_b64)) = &d.dkim {
        push(
            &mut out,
            format!("{selector}._domainkey.{apex}"),
            "TXT",
            dkim::zone_txt(&dkim::txt_value(public_b64)),
            format!("DKIM public key, selector {selector}"),
        );
    }

    let admin = EmailAddress::parse("dmarc_reports", &d.dmarc_reports).ok();
    let (dmarc, dmarc_comment) = match &admin {
        Some(a) => (
            format!("v=DMARC1; p=quarantine; rua=mailto:{a}"),
            format!("DMARC: quarantine mail that fails SPF and DKIM; daily reports to {a}"),
        ),
        None => (
            "v=DMARC1; p=quarantine".to_string(),
            "DMARC: quarantine mail that fails SPF and DKIM (no valid admin address for reports)"
                .to_string(),
        ),
    };
    push(
        &mut out,
        format!("_dmarc.{apex}"),
        "TXT",
        dkim::zone_txt(&dmarc),
        dmarc_comment,
    );
    // Reports sent to another organisation's domain need its consent (RFC 7489 §7.1).
    let external_reports = admin
        .as_ref()
        .filter(|a| !within(a.domain(), domain) && !within(domain, a.domain()));
    if let Some(a) = external_reports {
        out.push(Record {
            name: format!("{domain}._report._dmarc.{}.", a.domain()),
            ttl: TTL,
            rtype: "TXT",
            value: dkim::zone_txt("v=DMARC1"),
            comment: format!(
                "lets {} receive the DMARC reports of {domain}: belongs in the zone of {}",
                a.domain(),
                a.domain()
            ),
            in_zone: false,
        });
    }

    for label in ["autoconfig", "autodiscover"] {
        let name = format!("{label}.{apex}");
        // A CNAME cannot share its name with the server's own address records.
        if name != target {
            push(
                &mut out,
                name,
                "CNAME",
                target.clone(),
                "account autoconfiguration (Thunderbird, Outlook)".to_string(),
            );
        }
    }

    // RFC 6186 service records, implicit TLS preferred over STARTTLS (RFC 8314 §5.1).
    for (service, priority, port) in [
        ("_submissions", 0, 465),
        ("_submission", 10, 587),
        ("_imaps", 0, 993),
        ("_imap", 10, 143),
    ] {
        push(
            &mut out,
            format!("{service}._tcp.{apex}"),
            "SRV",
            format!("{priority} 1 {port} {target}"),
            "mail client settings (RFC 6186): submission and IMAP, implicit TLS preferred \
             (RFC 8314)"
                .to_string(),
        );
    }

    if d.mta_sts {
        let id = mta_sts_id(&mta_sts_policy(d));
        push(
            &mut out,
            format!("_mta-sts.{apex}"),
            "TXT",
            dkim::zone_txt(&format!("v=STSv1; id={id}")),
            "MTA-STS: id of the current policy, changes with it".to_string(),
        );
        let sts_host = format!("mta-sts.{apex}");
        if sts_host != target {
            push(
                &mut out,
                sts_host,
                "CNAME",
                target.clone(),
                format!(
                    "MTA-STS: serves https://mta-sts.{domain}/.well-known/mta-sts.txt \
                     (with a certificate from a public CA)"
                ),
            );
        }
        if let Ok(a) = EmailAddress::parse("tls_reports", &d.tls_reports) {
            push(
                &mut out,
                format!("_smtp._tls.{apex}"),
                "TXT",
                dkim::zone_txt(&format!("v=TLSRPTv1; rua=mailto:{a}")),
                format!("TLS reporting (RFC 8460): daily reports to {a}"),
            );
        }
    }
    out
}

/// The records as zone-file lines: columns aligned, each group under its `;` comment,
/// records that belong in another zone commented out.
pub fn zone_text(records: &[Record]) -> String {
    let name_width = records.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let ttl_width = records
        .iter()
        .map(|r| r.ttl.to_string().len())
        .max()
        .unwrap_or(0);
    let type_width = records.iter().map(|r| r.rtype.len()).max().unwrap_or(0);
    let mut text = String::new();
    let mut last_comment: Option<&str> = None;
    for r in records {
        if last_comment != Some(r.comment.as_str()) {
            if last_comment.is_some() {
                text.push('\n');
            }
            if !r.comment.is_empty() {
                // One line: a comment must not run into the next record.
                let comment: String = r
                    .comment
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                let _ = writeln!(text, "; {comment}");
            }
            last_comment = Some(r.comment.as_str());
        }
        let line = format!(
            "{:<name_width$} {:>ttl_width$} IN {:<type_width$} {}",
            r.name, r.ttl, r.rtype, r.value
        );
        if r.in_zone {
            text.push_str(&line);
        } else {
            text.push_str("; ");
            text.push_str(&line);
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn inside() -> DomainDns {
        DomainDns {
            domain: DomainName::parse("domain", "example.com").unwrap(),
            hostname: Hostname::parse("hostname", "mail.example.com").unwrap(),
            ipv4: vec!["192.0.2.10".parse().unwrap()],
            ipv6: vec!["2001:db8::10".parse().unwrap()],
            dkim: Some((
                DkimSelector::parse("selector", "modoboa").unwrap(),
                "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA".to_string() + &"Q".repeat(348),
            )),
            mta_sts: true,
            mta_sts_mode: crate::config::MtaStsMode::Testing,
            dmarc_reports: "postmaster@example.com".to_string(),
            tls_reports: "postmaster@example.com".to_string(),
        }
    }

    fn outside() -> DomainDns {
        DomainDns {
            domain: DomainName::parse("domain", "example.org").unwrap(),
            hostname: Hostname::parse("hostname", "mx1.hosting.example.net").unwrap(),
            ipv4: vec![
                "192.0.2.20".parse().unwrap(),
                "198.51.100.20".parse().unwrap(),
            ],
            ipv6: vec![],
            dkim: None,
            mta_sts: false,
            mta_sts_mode: crate::config::MtaStsMode::Testing,
            dmarc_reports: "reports@hosting.example.net".to_string(),
            tls_reports: "reports@hosting.example.net".to_string(),
        }
    }

    fn find<'a>(records: &'a [Record], name: &str, rtype: &str) -> Vec<&'a Record> {
        records
            .iter()
            .filter(|r| r.name == name && r.rtype == rtype)
            .collect()
    }

    fn one<'a>(records: &'a [Record], name: &str, rtype: &str) -> &'a Record {
        let found = find(records, name, rtype);
        assert_eq!(found.len(), 1, "{name} {rtype}: {records:#?}");
        found[0]
    }

    #[test]
    fn records_of_a_domain_whose_server_is_inside_it() {
        let d = inside();
        let rs = records(&d);
        assert!(rs
            .iter()
            .all(|r| r.name.ends_with(".example.com.") || r.name == "example.com."));
        assert!(rs
            .iter()
            .all(|r| r.in_zone && r.ttl == TTL && !r.comment.is_empty()));
        assert_eq!(one(&rs, "example.com.", "MX").value, "10 mail.example.com.");
        assert_eq!(one(&rs, "mail.example.com.", "A").value, "192.0.2.10");
        assert_eq!(one(&rs, "mail.example.com.", "AAAA").value, "2001:db8::10");
        assert_eq!(one(&rs, "example.com.", "TXT").value, "\"v=spf1 mx -all\"");
        let dkim = one(&rs, "modoboa._domainkey.example.com.", "TXT");
        let (_, key) = d.dkim.as_ref().unwrap();
        assert!(
            dkim.value.starts_with("( \"v=DKIM1; k=rsa; p=MIIBIjAN"),
            "{}",
            dkim.value
        );
        let joined: String = dkim
            .value
            .trim_start_matches("( ")
            .trim_end_matches(" )")
            .split("\" \"")
            .map(|p| p.trim_matches('"'))
            .collect();
        assert_eq!(joined, format!("v=DKIM1; k=rsa; p={key}"));
        assert_eq!(
            one(&rs, "_dmarc.example.com.", "TXT").value,
            "\"v=DMARC1; p=quarantine; rua=mailto:postmaster@example.com\""
        );
        assert_eq!(
            one(&rs, "autoconfig.example.com.", "CNAME").value,
            "mail.example.com."
        );
        assert_eq!(
            one(&rs, "autodiscover.example.com.", "CNAME").value,
            "mail.example.com."
        );
        for (name, value) in [
            (
                "_submissions._tcp.example.com.",
                "0 1 465 mail.example.com.",
            ),
            (
                "_submission._tcp.example.com.",
                "10 1 587 mail.example.com.",
            ),
            ("_imaps._tcp.example.com.", "0 1 993 mail.example.com."),
            ("_imap._tcp.example.com.", "10 1 143 mail.example.com."),
        ] {
            assert_eq!(one(&rs, name, "SRV").value, value);
        }
        let sts = one(&rs, "_mta-sts.example.com.", "TXT");
        let id = mta_sts_id(&mta_sts_policy(&d));
        assert_eq!(sts.value, format!("\"v=STSv1; id={id}\""));
        assert_eq!(id.len(), 20);
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(
            one(&rs, "mta-sts.example.com.", "CNAME").value,
            "mail.example.com."
        );
        assert_eq!(
            one(&rs, "_smtp._tls.example.com.", "TXT").value,
            "\"v=TLSRPTv1; rua=mailto:postmaster@example.com\""
        );
        assert_eq!(rs.len(), 15);
        // No external report authorization for an address inside the domain.
        assert!(rs.iter().all(|r| !r.name.contains("._report._dmarc.")));
    }

    #[test]
    fn the_mta_sts_id_follows_the_policy() {
        let d = inside();
        let policy = mta_sts_policy(&d);
        assert_eq!(
            policy,
            "version: STSv1\r\nmode: testing\r\nmx: mail.example.com\r\nmax_age: 604800\r\n"
        );
        // Stable: same policy, same id.
        assert_eq!(mta_sts_id(&policy), mta_sts_id(&mta_sts_policy(&inside())));
        let mut other = inside();
        other.hostname = Hostname::parse("hostname", "mx2.example.com").unwrap();
        assert_ne!(mta_sts_id(&policy), mta_sts_id(&mta_sts_policy(&other)));
        // Known answer, so a change of derivation is noticed (ids in the wild would change).
        assert_eq!(mta_sts_id(""), "e3b0c44298fc1c149afb");
    }

    #[test]
    fn records_of_a_domain_served_from_elsewhere() {
        let d = outside();
        let rs = records(&d);
        assert_eq!(
            one(&rs, "example.org.", "MX").value,
            "10 mx1.hosting.example.net."
        );
        let a = find(&rs, "mx1.hosting.example.net.", "A");
        assert_eq!(a.len(), 2);
        assert!(a
            .iter()
            .all(|r| !r.in_zone && r.comment.contains("not in example.org")));
        assert!(find(&rs, "mx1.hosting.example.net.", "AAAA").is_empty());
        assert!(rs
            .iter()
            .all(|r| r.rtype != "TXT" || !r.name.contains("_domainkey")));
        assert!(find(&rs, "_mta-sts.example.org.", "TXT").is_empty());
        assert!(find(&rs, "mta-sts.example.org.", "CNAME").is_empty());
        assert!(find(&rs, "_smtp._tls.example.org.", "TXT").is_empty());
        let auth = one(
            &rs,
            "example.org._report._dmarc.hosting.example.net.",
            "TXT",
        );
        assert!(!auth.in_zone);
        assert_eq!(auth.value, "\"v=DMARC1\"");
        let text = zone_text(&rs);
        assert!(text.contains("\n; mx1.hosting.example.net. "), "{text}");
        assert!(text.contains("\n; example.org._report._dmarc.hosting.example.net. "));
        for line in text
            .lines()
            .filter(|l| !l.starts_with(';') && !l.is_empty())
        {
            assert!(
                line.starts_with("example.org.") || line.contains(".example.org. "),
                "{line}"
            );
        }
    }

    #[test]
    fn a_bad_admin_address_drops_the_report_addresses_only() {
        let mut d = inside();
        d.dmarc_reports = "x\"; evil\n@example.com".to_string();
        d.tls_reports = d.dmarc_reports.clone();
        let rs = records(&d);
        assert_eq!(
            one(&rs, "_dmarc.example.com.", "TXT").value,
            "\"v=DMARC1; p=quarantine\""
        );
        assert!(find(&rs, "_smtp._tls.example.com.", "TXT").is_empty());
        assert!(!zone_text(&rs).contains("evil"));
    }

    #[test]
    fn no_cname_on_the_servers_own_name() {
        let mut d = inside();
        d.hostname = Hostname::parse("hostname", "autoconfig.example.com").unwrap();
        let rs = records(&d);
        assert!(find(&rs, "autoconfig.example.com.", "CNAME").is_empty());
        assert_eq!(find(&rs, "autoconfig.example.com.", "A").len(), 1);
        d.hostname = Hostname::parse("hostname", "example.com").unwrap();
        let rs = records(&d);
        assert_eq!(one(&rs, "example.com.", "MX").value, "10 example.com.");
        assert_eq!(one(&rs, "example.com.", "A").value, "192.0.2.10");
        assert!(rs.iter().all(|r| r.in_zone));
    }

    #[test]
    fn web_names_are_the_cnames() {
        let names: Vec<String> = web_names(&inside()).iter().map(|h| h.to_string()).collect();
        assert_eq!(
            names,
            [
                "autoconfig.example.com",
                "autodiscover.example.com",
                "mta-sts.example.com"
            ]
        );
        assert_eq!(web_names(&outside()).len(), 2);
    }

    #[test]
    fn zone_text_aligns_and_comments() {
        let text = zone_text(&records(&inside()));
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with(';') && !l.is_empty())
            .collect();
        let col = |l: &str| l.find(" 3600 IN ").unwrap();
        assert!(lines.iter().all(|l| col(l) == col(lines[0])), "{text}");
        assert!(text.starts_with("; mail for example.com is delivered to mail.example.com\n"));
        assert!(text.contains("\n\n; DKIM public key, selector modoboa\n"));
        // A/AAAA share one comment.
        assert_eq!(text.matches("; address of the mail server").count(), 1);
        assert_eq!(zone_text(&[]), "");
    }

    /// `named-checkzone` on the records inside a minimal zone (SOA + NS), with every check
    /// that can fail set to fail.
    fn checkzone(origin: &str, records: &[Record]) {
        if let Some((ok, said, zone)) = run_checkzone(origin, records) {
            assert!(ok, "{said}\n{zone}");
            assert!(said.contains("OK"), "{said}");
        }
    }

    /// (passed, what it said, the zone), or None when named-checkzone is not installed.
    fn run_checkzone(origin: &str, records: &[Record]) -> Option<(bool, String, String)> {
        let found = Command::new("named-checkzone")
            .arg("-v")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            assert!(
                std::env::var_os("CI").is_none(),
                "named-checkzone (Debian package bind9-utils) is required when CI is set"
            );
            eprintln!("note: named-checkzone not installed (bind9-utils), skipping zone check");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let zone = format!(
            "$ORIGIN {origin}.\n$TTL 3600\n\
             @ IN SOA ns1.{origin}. hostmaster.{origin}. 1 7200 900 1209600 3600\n\
             @ IN NS ns1.{origin}.\n\
             ns1 IN A 192.0.2.53\n\n{}",
            zone_text(records)
        );
        let path = dir.path().join("zone");
        std::fs::write(&path, &zone).unwrap();
        let out = Command::new("named-checkzone")
            .args([
                "-k", "fail", "-n", "fail", "-m", "fail", "-M", "fail", "-S", "fail",
            ])
            .args(["-i", "full", "-r", "fail"])
            .arg(origin)
            .arg(&path)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Some((out.status.success(), said, zone))
    }

    #[test]
    fn named_checkzone_is_not_a_rubber_stamp() {
        // A CNAME beside other data at the same name is refused: the check does check.
        let mut rs = records(&inside());
        rs.push(Record {
            name: "mail.example.com.".into(),
            ttl: TTL,
            rtype: "CNAME",
            value: "example.com.".into(),
            comment: "broken on purpose".into(),
            in_zone: true,
        });
        if let Some((ok, said, _)) = run_checkzone("example.com", &rs) {
            assert!(!ok, "{said}");
        }
        // So is a TXT string over 255 bytes.
        let mut rs = records(&inside());
        rs.push(Record {
            name: "long.example.com.".into(),
            ttl: TTL,
            rtype: "TXT",
            value: format!("\"{}\"", "x".repeat(256)),
            comment: "broken on purpose".into(),
            in_zone: true,
        });
        if let Some((ok, said, _)) = run_checkzone("example.com", &rs) {
            assert!(!ok, "{said}");
        }
    }

    #[test]
    fn named_checkzone_accepts_the_records() {
        let mut d = inside();
        let key = crate::keys::dkim::generate_key(2048).unwrap();
        d.dkim = Some((
            DkimSelector::parse("s", "mail.2024").unwrap(),
            key.public_b64,
        ));
        checkzone("example.com", &records(&d));
        // A 4096-bit key's length: three strings in the TXT record.
        let mut long = inside();
        long.dkim = Some((DkimSelector::parse("s", "big").unwrap(), "A".repeat(736)));
        checkzone("example.com", &records(&long));
        checkzone("example.org", &records(&outside()));
        let mut apex = inside();
        apex.hostname = Hostname::parse("hostname", "example.com").unwrap();
        checkzone("example.com", &records(&apex));
    }
}
