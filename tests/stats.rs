//! Statistics: the parser against logs written by the real Postfix, Amavis and Dovecot of an
//! e2e run (tests/stats/traffic.py), with the counts derived from what that run sent.

use std::collections::BTreeMap;
use std::path::PathBuf;

use modobox::stats::parser::{Counter, Counters, Domains, Parser, Zone, COUNTERS};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/stats")
        .join(name)
}

fn parse(file: &str) -> BTreeMap<String, Counters> {
    let now = chrono::DateTime::parse_from_rfc3339("2026-12-02T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let mut p = Parser::new(
        Domains::new(["example.test", "other.test", "relay.test", "alias.test"]),
        Zone::Fixed(0),
        now,
    );
    p.feed(&std::fs::read(fixture(file)).unwrap());
    p.finish();
    p.totals()
}

fn check(log: &str, expected: &str) {
    let exp: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture(expected)).unwrap()).unwrap();
    let got = parse(log);
    let counts = exp["counts"].as_object().unwrap();
    for (name, want) in counts {
        let have = got.get(name).copied().unwrap_or_default();
        for (i, c) in COUNTERS.iter().enumerate() {
            if c.starts_with("size_") {
                continue; // sizes: checked below against the counts
            }
            let w = want[*c].as_u64().unwrap_or(0);
            assert_eq!(have.0[i], w, "{log}: {name}.{c}");
        }
        // Postfix's size of what was delivered: more than nothing whenever a message counted.
        assert_eq!(
            have.get(Counter::SizeRecv) > 0,
            have.get(Counter::Recv) > 0,
            "{log}: {name}"
        );
        assert_eq!(
            have.get(Counter::SizeSent) > 0,
            have.get(Counter::Sent) > 0,
            "{log}: {name}"
        );
    }
    for name in got.keys() {
        assert!(
            counts.contains_key(name),
            "{log}: unexpected counts for {name}: {:?}",
            got[name]
        );
    }
}

#[test]
fn journal_classic_syslog_lines() {
    check("journal-short.log", "expected.json");
}

#[test]
fn journal_short_iso_lines() {
    check("journal-iso.log", "expected.json");
}

#[test]
fn rsyslog_rfc3339_mail_log() {
    check("mail.log", "expected.json");
}

#[test]
fn postfix_maillog_file() {
    check("postfix-maillog.log", "postfix-maillog.expected.json");
}

#[test]
fn sizes_are_at_least_what_was_sent() {
    let exp: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("expected.json")).unwrap()).unwrap();
    let sent_bytes: u64 = exp["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["from"]
                .as_str()
                .is_some_and(|f| f.ends_with("@example.test"))
        })
        .filter(|c| c["subject"] != "bounce")
        .map(|c| c["bytes"].as_u64().unwrap() * c["to"].as_array().unwrap().len() as u64)
        .sum();
    let got = parse("journal-short.log");
    let size_sent = got["example.test"].get(Counter::SizeSent);
    assert!(size_sent >= sent_bytes, "{size_sent} < {sent_bytes}");
}
