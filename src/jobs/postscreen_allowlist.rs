//! The `postscreen_allowlist` job: big senders (antispam.allow_spf_domains) deliver from
//! large pools and retry from another address, so postscreen's tests would delay their mail
//! at every new address. Their SPF records (ip4/ip6, through include and redirect) are
//! expanded into a CIDR table postscreen lets through untested, rewritten whole when it changes
//! and followed by `postfix reload`. A domain whose lookup fails keeps the ranges it had.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{JobContext, JobError};
use crate::config::Config;
use crate::dns::resolver::Resolver;
use crate::system::cmd::Cmd;

/// SPF lookups followed per domain (RFC 7208 allows 10 for a check; an allow-list may go
/// further, but not without bound).
const MAX_LOOKUPS: usize = 40;
/// Ranges kept per domain, a guard against a record that lists the whole Internet.
const MAX_RANGES: usize = 5000;

/// The table postscreen reads (main.cf's `postscreen_access_list`).
pub fn file(config: &Config) -> PathBuf {
    config
        .paths
        .data
        .as_path()
        .join("postscreen-spf-allow.cidr")
}

/// Creates an empty table when there is none (Postfix refuses to start on a missing one).
pub fn ensure(config: &Config) -> std::io::Result<()> {
    let path = file(config);
    if path.exists() {
        return Ok(());
    }
    crate::system::fs::write_atomic(&path, render(&BTreeMap::new()).as_bytes(), 0o644, None)
}

/// The ranges of one domain's SPF record, or why they could not be read.
pub async fn expand(resolver: &Resolver, domain: &str) -> Result<BTreeSet<String>, String> {
    let mut ranges = BTreeSet::new();
    let mut pending = vec![domain.trim_end_matches('.').to_ascii_lowercase()];
    let mut seen = BTreeSet::new();
    while let Some(name) = pending.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if seen.len() > MAX_LOOKUPS {
            return Err(format!("{domain}: more than {MAX_LOOKUPS} SPF lookups"));
        }
        let records = resolver
            .txt(&name)
            .await
            .map_err(|e| format!("{domain}: {e}"))?;
        let spf: Vec<&String> = records
            .iter()
            .filter(|r| {
                let l = r.to_ascii_lowercase();
                l == "v=spf1" || l.starts_with("v=spf1 ")
            })
            .collect();
        let Some(record) = spf.first() else {
            return Err(format!("{domain}: {name} has no SPF record"));
        };
        let terms: Vec<&str> = record.split_whitespace().skip(1).collect();
        let has_all = terms.iter().any(|t| {
            t.trim_start_matches(['+', '-', '~', '?'])
                .eq_ignore_ascii_case("all")
        });
        // Ranges a record excludes ahead of what it allows ("-ip4:" carve-outs): a wider
        // allowed range containing one is left out, since SPF takes the first match.
        let mut excluded: Vec<ipnet::IpNet> = Vec::new();
        for term in terms {
            let (qualifier, mechanism) = match term.chars().next() {
                Some(q @ ('+' | '-' | '~' | '?')) => (q, &term[1..]),
                _ => ('+', term),
            };
            let lower = mechanism.to_ascii_lowercase();
            if let Some(net) = lower
                .strip_prefix("ip4:")
                .or_else(|| lower.strip_prefix("ip6:"))
            {
                let Some(net) = parse_range(net) else {
                    continue;
                };
                if qualifier != '+' {
                    excluded.push(net);
                } else if wide_enough(&net) && !excluded.iter().any(|x| net.contains(x)) {
                    ranges.insert(net.to_string());
                }
            } else if let Some(target) = lower.strip_prefix("include:") {
                // Only what the record allows: "-include:", "~include:" deny or doubt.
                if qualifier == '+' && !target.contains('%') {
                    pending.push(target.trim_end_matches('.').to_string());
                }
            } else if let Some(target) = lower.strip_prefix("redirect=") {
                // RFC 7208 6.1: a redirect is ignored when the record has "all".
                if !has_all && !target.contains('%') {
                    pending.push(target.trim_end_matches('.').to_string());
                }
            }
            // a, mx, ptr and exists name per-message or per-host answers: not an allow-list's.
        }
        if ranges.len() > MAX_RANGES {
            return Err(format!("{domain}: more than {MAX_RANGES} ranges"));
        }
    }
    Ok(ranges)
}

fn render(sections: &BTreeMap<String, BTreeSet<String>>) -> String {
    let mut out = String::from(
        "# Written by modobox's postscreen_allowlist job from antispam.allow_spf_domains: the\n\
         # SPF ranges of big senders, let through postscreen untested. Rewritten daily.\n",
    );
    for (domain, ranges) in sections {
        out.push_str(&format!("# {domain}\n"));
        for r in ranges {
            out.push_str(&format!("{r}\tpermit\n"));
        }
    }
    out
}

/// The sections of a table this job wrote.
fn parse(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(d) = line.strip_prefix("# ") {
            if !d.contains(' ') {
                current = Some(d.to_string());
                out.entry(d.to_string()).or_default();
            }
        } else if let (Some(d), Some((net, "permit"))) = (&current, line.split_once('\t')) {
            out.entry(d.clone()).or_default().insert(net.to_string());
        }
    }
    out
}

/// What one refresh did.
#[derive(Debug)]
pub struct Refreshed {
    pub done: String,
    pub changed: bool,
    /// Domains that could not be expanded (their old ranges kept), each with why.
    pub failures: Vec<String>,
}

/// An `ip4:`/`ip6:` value as a network (host bits cleared; a bare address a /32 or /128).
fn parse_range(text: &str) -> Option<ipnet::IpNet> {
    if let Ok(n) = text.parse::<ipnet::IpNet>() {
        return Some(n.trunc());
    }
    text.parse::<std::net::IpAddr>()
        .ok()
        .map(ipnet::IpNet::from)
}

/// Ranges wider than a /8 (IPv4) or /19 (IPv6) are not a sender's pool but a mistake or a
/// trick: never let through untested.
fn wide_enough(net: &ipnet::IpNet) -> bool {
    match net {
        ipnet::IpNet::V4(n) => n.prefix_len() >= 8,
        ipnet::IpNet::V6(n) => n.prefix_len() >= 19,
    }
}

/// Expands every domain and rewrites the table when it changed.
pub async fn refresh(
    config: &Config,
    resolver: &Resolver,
    path: &Path,
) -> Result<Refreshed, JobError> {
    let old_text = std::fs::read_to_string(path).unwrap_or_default();
    let old = parse(&old_text);
    let mut sections = BTreeMap::new();
    let mut failures = Vec::new();
    for domain in &config.antispam.allow_spf_domains {
        let d = domain.trim_end_matches('.').to_ascii_lowercase();
        match expand(resolver, &d).await {
            Ok(r) => {
                sections.insert(d, r);
            }
            Err(e) => {
                failures.push(e);
                if let Some(kept) = old.get(&d) {
                    sections.insert(d, kept.clone());
                }
            }
        }
    }
    let text = render(&sections);
    let changed = text != old_text;
    if changed {
        crate::system::fs::write_atomic(path, text.as_bytes(), 0o644, None).map_err(|e| {
            JobError::Partly {
                done: String::new(),
                failures: vec![format!("{}: {e}", path.display())],
            }
        })?;
    }
    let count: usize = sections.values().map(BTreeSet::len).sum();
    let done = format!(
        "{count} ranges of {} domains{}",
        sections.len(),
        if changed {
            " (table rewritten)"
        } else {
            " (unchanged)"
        }
    );
    Ok(Refreshed {
        done,
        changed,
        failures,
    })
}

pub async fn run(ctx: &JobContext) -> Result<String, JobError> {
    let config = &ctx.config;
    let timeout = Duration::from_secs(config.check_mx.timeout_secs);
    let resolver =
        Resolver::new(config.antispam.resolver, timeout).map_err(|e| JobError::Partly {
            done: String::new(),
            failures: vec![e.to_string()],
        })?;
    let path = file(config);
    let Refreshed {
        done,
        changed,
        mut failures,
    } = refresh(config, &resolver, &path).await?;
    if changed && config.antispam.postscreen {
        let cmd = Cmd::new("postfix").arg("reload");
        match tokio::task::spawn_blocking(move || cmd.run()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => failures.push(e.to_string()),
            Err(e) => failures.push(format!("postfix reload: {e}")),
        }
    }
    if failures.is_empty() {
        Ok(done)
    } else {
        Err(JobError::Partly { done, failures })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_read_back_what_they_wrote() {
        let mut s = BTreeMap::new();
        s.insert(
            "_spf.example.test".to_string(),
            BTreeSet::from(["192.0.2.0/24".to_string(), "2001:db8::/32".to_string()]),
        );
        s.insert("empty.test".to_string(), BTreeSet::new());
        let text = render(&s);
        assert!(text.contains("192.0.2.0/24\tpermit\n"));
        assert_eq!(parse(&text), s);
    }
}
