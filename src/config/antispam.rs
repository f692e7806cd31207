//! `[antispam]`: what port 25 checks before it accepts a message — postscreen (pregreet test,
//! DNS blocklists with weights, allow-lists) in front of smtpd, and the inbound authentication
//! milter (SPF, DKIM, DMARC).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::names::{DomainName, NameError, Network};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Antispam {
    /// postscreen answers port 25 and hands clients that pass to smtpd.
    pub postscreen: bool,
    /// postscreen's DNS blocklists and allow-lists, Postfix's `name[=filter][*weight]`
    /// (`postscreen_dnsbl_sites`); a negative weight allow-lists.
    pub dnsbl_sites: Vec<String>,
    /// The summed weight at which a client is refused.
    pub dnsbl_threshold: i32,
    /// At or below this summed weight a client skips postscreen's other tests.
    pub dnsbl_allowlist_threshold: i32,
    /// postscreen's after-the-banner tests (pipelining, non-SMTP commands, bare newlines): a
    /// client passing them must reconnect before it can deliver, which delays first mail.
    pub deep_protocol_tests: bool,
    /// Networks (CIDR) postscreen lets through untested, besides Postfix's `mynetworks`.
    pub allow_networks: Vec<Network>,
    /// Domains whose published SPF ranges postscreen lets through untested (big senders that
    /// retry from other addresses); the `postscreen_allowlist` job expands them.
    /// DNS names (SPF records often live under `_spf.` names, so underscores are allowed).
    pub allow_spf_domains: Vec<String>,
    /// Refuse mail whose SPF check fails (`-all`) unless a DKIM signature of the sender's
    /// domain passes (forwarded mail).
    pub spf_reject: bool,
    /// Apply the sending domain's DMARC policy.
    pub dmarc: bool,
    /// What a failure under `p=reject` gets: refused, or kept as spam (quarantine).
    pub dmarc_reject_action: DmarcRejectAction,
    /// Sending domains never refused for SPF or DMARC (their results are still recorded).
    pub exempt_sender_domains: Vec<DomainName>,
    /// Hosted domains whose recipients get every message, results recorded only.
    pub exempt_recipient_domains: Vec<DomainName>,
    /// One name server (`ip:port`) for the authentication checks instead of /etc/resolv.conf.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolver: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DmarcRejectAction {
    Reject,
    Quarantine,
}

/// postscreen's blocklists by default: free for a server's own volume, each with the answers
/// that mean "listed" only. Spamhaus answers 127.255.255.x when it refuses a query (a public
/// resolver, too many queries): outside the filter, so such an answer counts as not listed. The
/// same goes for DNSWL's 127.0.0.255.
pub const DEFAULT_DNSBL_SITES: [&str; 6] = [
    "zen.spamhaus.org=127.0.0.[2..11]*3",
    "bl.spamcop.net=127.0.0.2*2",
    "b.barracudacentral.org=127.0.0.2*2",
    "bl.mailspike.net=127.0.0.[10;11;12]*2",
    "psbl.surriel.com=127.0.0.2*1",
    "list.dnswl.org=127.0.[0..255].[1..3]*-2",
];

/// Senders that deliver from large, changing pools and retry from another address, which
/// postscreen's tests would delay for every new address.
pub const DEFAULT_ALLOW_SPF_DOMAINS: [&str; 5] = [
    "_spf.google.com",
    "spf.protection.outlook.com",
    "amazonses.com",
    "_spf.mail.yahoo.com",
    "icloud.com",
];

impl Default for Antispam {
    fn default() -> Self {
        Antispam {
            postscreen: true,
            dnsbl_sites: DEFAULT_DNSBL_SITES.iter().map(|s| s.to_string()).collect(),
            dnsbl_threshold: 3,
            dnsbl_allowlist_threshold: -1,
            deep_protocol_tests: false,
            allow_networks: Vec::new(),
            allow_spf_domains: DEFAULT_ALLOW_SPF_DOMAINS
                .iter()
                .map(|d| d.to_string())
                .collect(),
            spf_reject: true,
            dmarc: true,
            dmarc_reject_action: DmarcRejectAction::Reject,
            exempt_sender_domains: Vec::new(),
            exempt_recipient_domains: Vec::new(),
            resolver: None,
        }
    }
}

impl Antispam {
    pub fn validate(&self) -> Result<(), NameError> {
        for (i, site) in self.dnsbl_sites.iter().enumerate() {
            let field = format!("antispam.dnsbl_sites[{i}]");
            check_dnsbl_site(&field, site)?;
            // The same list may come back with another filter and weight (Postfix documents
            // that); the same list and filter twice is a mistake.
            if self.dnsbl_sites[..i]
                .iter()
                .any(|s| site_key(s) == site_key(site))
            {
                return Err(NameError::new(
                    &field,
                    "must not repeat a list with the same filter",
                    site,
                ));
            }
        }
        if !(1..=100).contains(&self.dnsbl_threshold) {
            return Err(NameError::new(
                "antispam.dnsbl_threshold",
                "must be between 1 and 100",
                &self.dnsbl_threshold.to_string(),
            ));
        }
        if !(-100..=0).contains(&self.dnsbl_allowlist_threshold) {
            return Err(NameError::new(
                "antispam.dnsbl_allowlist_threshold",
                "must be between -100 and 0",
                &self.dnsbl_allowlist_threshold.to_string(),
            ));
        }
        for (i, d) in self.allow_spf_domains.iter().enumerate() {
            if !is_dns_name(d) {
                return Err(NameError::new(
                    &format!("antispam.allow_spf_domains[{i}]"),
                    "must be a DNS name (letters, digits, hyphens and underscores in \
                     dot-separated labels)",
                    d,
                ));
            }
        }
        if self.allow_spf_domains.len() > 50 {
            return Err(NameError::new(
                "antispam.allow_spf_domains",
                "must name at most 50 domains",
                &self.allow_spf_domains.len().to_string(),
            ));
        }
        if let Some(r) = self.resolver {
            if r.port() == 0 || r.ip().is_unspecified() {
                return Err(NameError::new(
                    "antispam.resolver",
                    "must be the address and port of a name server (e.g. 127.0.0.1:53)",
                    &r.to_string(),
                ));
            }
        }
        Ok(())
    }
}

fn is_dns_name(name: &str) -> bool {
    let labels: Vec<&str> = name.trim_end_matches('.').split('.').collect();
    name.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            (1..=63).contains(&l.len())
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// A site without its weight: the list and its filter.
fn site_key(site: &str) -> &str {
    site.rsplit_once('*').map_or(site, |(k, _)| k)
}

/// `name[=filter][*weight]` as Postfix reads it: a DNS name, a filter of digits, dots,
/// brackets, `..` ranges and `;` lists, and an integer weight.
fn check_dnsbl_site(field: &str, site: &str) -> Result<(), NameError> {
    let rule =
        "must be a DNS list as name[=filter][*weight], e.g. zen.spamhaus.org=127.0.0.[2..11]*3";
    let (rest, weight) = match site.rsplit_once('*') {
        Some((r, w)) => (r, Some(w)),
        None => (site, None),
    };
    if let Some(w) = weight {
        match w.parse::<i32>() {
            Ok(w) if (-100..=100).contains(&w) && w != 0 => {}
            _ => return Err(NameError::new(field, rule, site)),
        }
    }
    let (name, filter) = match rest.split_once('=') {
        Some((n, f)) => (n, Some(f)),
        None => (rest, None),
    };
    DomainName::parse(field, name).map_err(|_| NameError::new(field, rule, site))?;
    if let Some(f) = filter {
        if !filter_ok(f) {
            return Err(NameError::new(field, rule, site));
        }
    }
    Ok(())
}

/// A filter as Postfix reads it: four dot-separated octets, each a number (0-255) or a
/// bracketed list of numbers and `a..b` ranges (a <= b) separated by `;`.
fn filter_ok(filter: &str) -> bool {
    let mut octets = vec![String::new()];
    let mut bracketed = false;
    for c in filter.chars() {
        match c {
            '[' if !bracketed => bracketed = true,
            ']' if bracketed => bracketed = false,
            '.' if !bracketed => {
                octets.push(String::new());
                continue;
            }
            c if c.is_ascii_digit() || (bracketed && (c == ';' || c == '.')) => {}
            _ => return false,
        }
        if let Some(o) = octets.last_mut() {
            o.push(c);
        }
    }
    let number =
        |t: &str| !t.is_empty() && t.len() <= 3 && t.parse::<u16>().is_ok_and(|n| n <= 255);
    let part_ok = |part: &str| match part.split_once("..") {
        Some((a, b)) => number(a) && number(b) && a.parse::<u16>().ok() <= b.parse::<u16>().ok(),
        None => number(part),
    };
    !bracketed
        && octets.len() == 4
        && octets.iter().all(
            |o| match o.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
                Some(inner) => !inner.is_empty() && inner.split(';').all(part_ok),
                None => number(o),
            },
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_sites_are_named() {
        Antispam::default().validate().unwrap();
        for bad in [
            "zen.spamhaus.org*x",
            "zen.spamhaus.org=127.0.0*3",
            "zen.spamhaus.org=127.0.0.2;rm*3",
            "no spaces.example*1",
            "list.example*0",
            "",
            "a.example=127.0.0.[2..3*1",
            "a.example=127..0.2*1",
            "a.example=127.0.0.999*1",
            "a.example=127.0.0.2;3*1",
            "a.example=127.0.0.[]*1",
            "a.example=127.0.0.[5..2]*1",
        ] {
            let a = Antispam {
                dnsbl_sites: vec![bad.into()],
                ..Antispam::default()
            };
            let e = a.validate().unwrap_err().to_string();
            assert!(e.contains("antispam.dnsbl_sites[0]"), "{bad}: {e}");
        }
        let twice = Antispam {
            dnsbl_sites: vec![
                "a.example=127.0.0.2*1".into(),
                "a.example=127.0.0.2*2".into(),
            ],
            ..Antispam::default()
        };
        assert!(twice.validate().unwrap_err().to_string().contains("repeat"));
        // Postfix's own idiom: one list, several filters and weights.
        let idiom = Antispam {
            dnsbl_sites: vec![
                "list.dnswl.org=127.0.[0..255].0*-2".into(),
                "list.dnswl.org=127.0.[0..255].1*-3".into(),
                "list.dnswl.org=127.0.[0..255].[2;3]*-4".into(),
            ],
            ..Antispam::default()
        };
        idiom.validate().unwrap();
        let bad_domain = Antispam {
            allow_spf_domains: vec!["_spf.example.test".into(), "not a name".into()],
            ..Antispam::default()
        };
        assert!(bad_domain
            .validate()
            .unwrap_err()
            .to_string()
            .contains("antispam.allow_spf_domains[1]"));
        for good in [
            "a.example",
            "a.example*-2",
            "a.example=127.0.[0..255].[1..3]*2",
        ] {
            let a = Antispam {
                dnsbl_sites: vec![good.into()],
                ..Antispam::default()
            };
            a.validate().unwrap();
        }
    }
}
