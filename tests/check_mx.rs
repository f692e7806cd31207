//! The check_mx job against a DNS server started here on loopback (UDP, answers from a table
//! the test edits between runs) and the real databases: MX rows, DNSBL results, error states
//! and alerts on every change, on SQLite, PostgreSQL and MariaDB.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::dns::{dns_server, fqdn, Answer, SharedZone, Zone};
use hickory_resolver::proto::rr::rdata::A;
use hickory_resolver::proto::rr::{RData, RecordType};
use modobox::config::Config;
use modobox::dns::resolver::{dnsbl_query_name, Resolver};
use modobox::jobs::check_mx::{self, MxState, Settings};
use modobox::names::Network;
use modobox::names::{DomainName, EmailAddress, Hostname};
use modobox::store::access::{Actor, Role};
use modobox::store::accounts::{AccountSpec, Password};
use modobox::store::domains::{self, DomainSpec};
use modobox::store::{dnschecks, migrate, Store};

/// check_mx's own uses of the zone: DNSBL listings and what was asked.
trait ZoneExt {
    fn list(&mut self, ip: &str, provider: &str, answer: &str);
    fn delist(&mut self, ip: &str, provider: &str);
    fn asked_count(&self, name: &str, rtype: RecordType) -> usize;
}

impl ZoneExt for Zone {
    fn list(&mut self, ip: &str, provider: &str, answer: &str) {
        let name = dnsbl_query_name(ip.parse().unwrap(), &dom(provider));
        self.set(
            &name,
            RecordType::A,
            Answer::Records(vec![RData::A(A(answer.parse().unwrap()))]),
        );
    }
    fn delist(&mut self, ip: &str, provider: &str) {
        let name = dnsbl_query_name(ip.parse().unwrap(), &dom(provider));
        self.remove(&name, RecordType::A);
    }
    fn asked_count(&self, name: &str, rtype: RecordType) -> usize {
        let name = fqdn(name);
        self.asked
            .iter()
            .filter(|(n, t)| *n == name && *t == rtype)
            .count()
    }
}

fn dom(n: &str) -> DomainName {
    DomainName::parse("domain", n).unwrap()
}

fn settings(resolver: SocketAddr, timeout: Duration) -> Settings {
    Settings {
        providers: vec![dom("bl.test"), dom("sh.test")],
        valid_networks: vec![
            Network::parse("n", "192.0.2.0/24").unwrap(),
            Network::parse("n", "2001:db8::/32").unwrap(),
        ],
        resolver: Some(resolver),
        timeout,
        admin_address: Some(EmailAddress::parse("a", "postmaster@example.com").unwrap()),
        hostname: "mail.example.com".into(),
    }
}

async fn fresh(db: &common::TestDb) -> Store {
    let store = db.connect().await;
    migrate::migrate(&store).await.unwrap();
    store
}

async fn add_domain(store: &Store, name: &str, dns_checks: bool) -> i32 {
    let mut tx = store.begin().await.unwrap();
    let spec = DomainSpec {
        enable_dns_checks: dns_checks,
        ..DomainSpec::default()
    };
    let d = domains::create(&mut tx, Actor::System, &dom(name), &spec, None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    d.id
}

async fn add_domain_admin(store: &Store, address: &str, domain: &str) {
    let mut tx = store.begin().await.unwrap();
    let spec = AccountSpec {
        username: common::user(address),
        password: Password::Clear("correct horse 1".into()),
        first_name: "Dom".into(),
        last_name: "Admin".into(),
        enabled: true,
        role: Role::DomainAdmins,
        mailbox: Some(None),
        mailbox_address: None,
        domains: vec![dom(domain)],
        profile: Default::default(),
        mailbox_settings: Default::default(),
    };
    common::create_account(&mut tx, &spec).await;
    tx.commit().await.unwrap();
}

/// (name, address, expiry) of a domain's MX rows, sorted.
async fn mx_rows(store: &Store, domain_id: i32) -> Vec<(String, IpAddr, DateTime<Utc>)> {
    let mut tx = store.begin().await.unwrap();
    let mut rows: Vec<_> = dnschecks::mx_rows(&mut tx, domain_id)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.name, r.address, r.updated))
        .collect();
    tx.commit().await.unwrap();
    rows.sort();
    rows
}

/// (MX address, provider) → status of a domain's DNSBL rows.
async fn dnsbl(store: &Store, domain_id: i32) -> HashMap<(IpAddr, String), String> {
    let mut tx = store.begin().await.unwrap();
    let rows = dnschecks::mx_rows(&mut tx, domain_id).await.unwrap();
    let results = dnschecks::dnsbl_rows(&mut tx, domain_id).await.unwrap();
    tx.commit().await.unwrap();
    results
        .into_iter()
        .map(|r| {
            let ip = rows.iter().find(|m| m.id == r.mx_id).unwrap().address;
            ((ip, r.provider), r.status)
        })
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn key(a: &str, provider: &str) -> (IpAddr, String) {
    (ip(a), provider.to_string())
}

fn same_instant(a: DateTime<Utc>, b: DateTime<Utc>) -> bool {
    // MariaDB and SQLite keep microseconds; compare at that precision.
    (a - b).num_milliseconds().abs() < 1
}

/// The first run's DNS: good.test listed twice (and refused by "Spamhaus"), nomx.test
/// without MX, outside.test outside the valid networks, off.test not checked.
fn first_zone(z: &mut Zone) {
    *z = Zone::default();
    z.mx("good.test", "mx.good.test");
    z.a("mx.good.test", &["192.0.2.10", "2001:db8::10"]);
    z.list("192.0.2.10", "bl.test", "127.0.0.2");
    z.list("2001:db8::10", "bl.test", "127.0.0.3");
    // Spamhaus' "query refused" code: an error, not a listing.
    z.list("192.0.2.10", "sh.test", "127.255.255.254");
    // nomx.test exists but has no MX (NOERROR, no data).
    z.set("nomx.test", RecordType::MX, Answer::NoData);
    z.mx("outside.test", "mx.elsewhere.test");
    z.a("mx.elsewhere.test", &["198.51.100.5"]);
    z.mx("off.test", "mx.good.test");
}

#[tokio::test]
async fn records_listings_and_alerts_once_per_change() {
    let zone: SharedZone = Arc::default();
    let server = dns_server(zone.clone(), false).await;
    let settings = settings(server, Duration::from_secs(2));

    for db in common::all().await {
        let store = fresh(&db).await;
        let good = add_domain(&store, "good.test", true).await;
        let nomx = add_domain(&store, "nomx.test", true).await;
        let outside = add_domain(&store, "outside.test", true).await;
        let off = add_domain(&store, "off.test", false).await;
        add_domain_admin(&store, "admin@good.test", "good.test").await;
        first_zone(&mut zone.lock().unwrap());
        // A new resolver per run, as `run` does: its cache lives for one run only.
        let resolver = || Resolver::new(settings.resolver, settings.timeout).unwrap();
        let t0 = Utc::now();

        // Run 1: everything is new.
        let out = check_mx::check(&store, &settings, &resolver(), t0)
            .await
            .unwrap();
        assert_eq!(out.domains, 3, "{:?}", db.backend);
        let rows = mx_rows(&store, good).await;
        assert_eq!(
            rows.iter().map(|r| (r.0.as_str(), r.1)).collect::<Vec<_>>(),
            vec![
                ("mx.good.test", ip("192.0.2.10")),
                ("mx.good.test", ip("2001:db8::10"))
            ],
            "{:?}",
            db.backend
        );
        let expiry = t0 + chrono::Duration::seconds(check_mx::MX_TTL_SECS);
        assert!(rows.iter().all(|r| same_instant(r.2, expiry)), "{rows:?}");
        // Modoboa's `managed`: inside the valid networks.
        let managed = |id| {
            let store = store.clone();
            async move {
                let mut tx = store.begin().await.unwrap();
                let rows = dnschecks::mx_rows(&mut tx, id).await.unwrap();
                tx.commit().await.unwrap();
                rows.iter().map(|r| r.managed).collect::<Vec<_>>()
            }
        };
        assert_eq!(managed(good).await, vec![true, true]);
        assert_eq!(managed(outside).await, vec![false]);
        let results = dnsbl(&store, good).await;
        assert_eq!(results[&key("192.0.2.10", "bl.test")], "127.0.0.2");
        assert_eq!(results[&key("2001:db8::10", "bl.test")], "127.0.0.3");
        assert_eq!(results[&key("2001:db8::10", "sh.test")], "");
        assert!(
            !results.contains_key(&key("192.0.2.10", "sh.test")),
            "an error answer must not be recorded as a result: {results:?}"
        );
        {
            let z = zone.lock().unwrap();
            // The IPv6 query used the 32 reversed nibbles.
            let v6_name = "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test";
            assert_eq!(z.asked_count(v6_name, RecordType::A), 1, "{:?}", z.asked);
            assert_eq!(z.asked_count("off.test", RecordType::MX), 0);
        }
        let state = check_mx::domain_state(&store, good).await.unwrap().unwrap();
        assert_eq!(state.mx, MxState::Ok);
        assert!(
            state
                .errors
                .iter()
                .any(|e| e.contains("sh.test") && e.contains("127.255.255.254")),
            "{state:?}"
        );
        assert_eq!(
            check_mx::domain_state(&store, nomx)
                .await
                .unwrap()
                .unwrap()
                .mx,
            MxState::Missing
        );
        assert_eq!(
            check_mx::domain_state(&store, outside)
                .await
                .unwrap()
                .unwrap()
                .mx,
            MxState::OutsideNetworks
        );
        assert!(check_mx::domain_state(&store, off).await.unwrap().is_none());
        assert_eq!(out.alerts.len(), 3, "{:#?}", out.alerts);
        let good_alert = out
            .alerts
            .iter()
            .find(|m| m.body.contains("good.test"))
            .unwrap();
        let to: Vec<&str> = good_alert.to.iter().map(|a| a.as_str()).collect();
        assert_eq!(to, vec!["admin@good.test", "postmaster@example.com"]);
        assert!(good_alert
            .body
            .contains("192.0.2.10) is now listed on bl.test"));
        assert!(good_alert
            .body
            .contains("2001:db8::10) is now listed on bl.test"));
        assert!(!good_alert.body.contains("sh.test"), "{}", good_alert.body);
        let nomx_alert = out
            .alerts
            .iter()
            .find(|m| m.body.contains("nomx.test"))
            .unwrap();
        assert!(nomx_alert.subject.contains("nomx.test has no MX record"));
        assert_eq!(
            nomx_alert.to.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
            vec!["postmaster@example.com"]
        );
        assert_eq!(out.listings.len(), 2);

        // Run 2, ten minutes later, nothing changed: MX rows are fresh (no MX query for
        // good.test), the lists are asked again, no alert.
        let mx_queries = zone
            .lock()
            .unwrap()
            .asked_count("good.test", RecordType::MX);
        let out = check_mx::check(
            &store,
            &settings,
            &resolver(),
            t0 + chrono::Duration::minutes(10),
        )
        .await
        .unwrap();
        assert!(out.alerts.is_empty(), "{:#?}", out.alerts);
        assert_eq!(
            zone.lock()
                .unwrap()
                .asked_count("good.test", RecordType::MX),
            mx_queries
        );
        assert_eq!(mx_rows(&store, good).await, rows);

        // Run 3: one delisting and an MX that appears: exactly one mail for each domain.
        {
            let mut z = zone.lock().unwrap();
            z.delist("192.0.2.10", "bl.test");
            z.mx("nomx.test", "mx.nomx.test");
            z.a("mx.nomx.test", &["192.0.2.20"]);
        }
        let out = check_mx::check(
            &store,
            &settings,
            &resolver(),
            t0 + chrono::Duration::minutes(20),
        )
        .await
        .unwrap();
        assert_eq!(out.alerts.len(), 2, "{:#?}", out.alerts);
        let good_alert = out
            .alerts
            .iter()
            .find(|m| m.body.contains("good.test"))
            .unwrap();
        assert!(good_alert
            .subject
            .contains("192.0.2.10) is no longer listed on bl.test"));
        assert!(
            !good_alert.body.contains("2001:db8::10"),
            "{}",
            good_alert.body
        );
        let back = out
            .alerts
            .iter()
            .find(|m| m.body.contains("nomx.test"))
            .unwrap();
        assert!(back
            .subject
            .contains("nomx.test has a valid MX record again"));
        assert_eq!(dnsbl(&store, good).await[&key("192.0.2.10", "bl.test")], "");
        assert_eq!(
            check_mx::domain_state(&store, nomx)
                .await
                .unwrap()
                .unwrap()
                .mx,
            MxState::Ok
        );

        // Run 4, three hours later: the rows are stale, the MX host moved to another IPv4
        // address. The old row and its results go, the IPv6 row keeps its history.
        {
            let mut z = zone.lock().unwrap();
            z.a("mx.good.test", &["192.0.2.11", "2001:db8::10"]);
            z.list("192.0.2.11", "bl.test", "127.0.0.2");
        }
        let t4 = t0 + chrono::Duration::hours(3);
        let out = check_mx::check(&store, &settings, &resolver(), t4)
            .await
            .unwrap();
        let rows = mx_rows(&store, good).await;
        assert_eq!(
            rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            vec![ip("192.0.2.11"), ip("2001:db8::10")]
        );
        let expiry = t4 + chrono::Duration::seconds(check_mx::MX_TTL_SECS);
        assert!(rows.iter().all(|r| same_instant(r.2, expiry)), "{rows:?}");
        let results = dnsbl(&store, good).await;
        assert_eq!(results[&key("192.0.2.11", "bl.test")], "127.0.0.2");
        assert_eq!(results[&key("2001:db8::10", "bl.test")], "127.0.0.3");
        assert!(!results.contains_key(&key("192.0.2.10", "bl.test")));
        let alerts: Vec<_> = out
            .alerts
            .iter()
            .filter(|m| m.body.contains("good.test"))
            .collect();
        assert_eq!(alerts.len(), 1, "{alerts:#?}");
        assert!(alerts[0]
            .subject
            .contains("192.0.2.11) is now listed on bl.test"));

        // Disabling the checks forgets the domain's state.
        let mut tx = store.begin().await.unwrap();
        domains::update(
            &mut tx,
            Actor::System,
            &dom("outside.test"),
            &domains::DomainPatch {
                enable_dns_checks: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        check_mx::check(&store, &settings, &resolver(), t4)
            .await
            .unwrap();
        assert!(check_mx::domain_state(&store, outside)
            .await
            .unwrap()
            .is_none());
        store.close().await;
    }
}

#[tokio::test]
async fn a_dead_resolver_is_an_error_state_not_a_verdict() {
    let zone: SharedZone = Arc::default();
    {
        let mut z = zone.lock().unwrap();
        z.mx("good.test", "mx.good.test");
        z.a("mx.good.test", &["192.0.2.10"]);
        z.list("192.0.2.10", "bl.test", "127.0.0.2");
    }
    let live = dns_server(zone.clone(), false).await;
    let dead = dns_server(Arc::default(), true).await;
    let timeout = Duration::from_secs(1);

    for db in common::all().await {
        let store = fresh(&db).await;
        let good = add_domain(&store, "good.test", true).await;
        let t0 = Utc::now();
        let s = settings(live, timeout);
        let resolver = Resolver::new(s.resolver, timeout).unwrap();
        let out = check_mx::check(&store, &s, &resolver, t0).await.unwrap();
        assert_eq!(out.alerts.len(), 1);
        let rows_before = mx_rows(&store, good).await;
        let results_before = dnsbl(&store, good).await;

        // Three hours later the resolver answers nothing: the MX lookup and every list query
        // time out. Nothing is deleted, nothing is delisted, no one is alerted.
        let s = settings(dead, timeout);
        let resolver = Resolver::new(s.resolver, timeout).unwrap();
        let started = Instant::now();
        let out = check_mx::check(&store, &s, &resolver, t0 + chrono::Duration::hours(3))
            .await
            .unwrap();
        let took = started.elapsed();
        // One MX lookup, then the list queries at once: about two timeouts, never more
        // than a few.
        assert!(took < Duration::from_secs(6), "took {took:?}");
        assert!(out.alerts.is_empty(), "{:#?}", out.alerts);
        assert_eq!(out.errors.len(), 3, "{:?}", out.errors);
        assert!(
            out.errors
                .iter()
                .all(|e| e.contains("no answer within 1 s")),
            "{:?}",
            out.errors
        );
        assert_eq!(mx_rows(&store, good).await, rows_before);
        assert_eq!(dnsbl(&store, good).await, results_before);
        let state = check_mx::domain_state(&store, good).await.unwrap().unwrap();
        assert_eq!(state.mx, MxState::Ok);
        assert_eq!(state.errors.len(), 3);
        assert_eq!(out.listings.len(), 1, "the last known listing still counts");

        // Through the scheduler's entry point: every lookup failed, so the run failed, and
        // it ended within the timeouts.
        let mut config = Config::new(Hostname::parse("hostname", "mail.example.com").unwrap());
        config.check_mx.resolver = Some(dead);
        config.check_mx.timeout_secs = 1;
        config.check_mx.dnsbl_providers = vec![dom("bl.test")];
        let started = Instant::now();
        let e = check_mx::run(&config, &store)
            .await
            .unwrap_err()
            .to_string();
        assert!(started.elapsed() < Duration::from_secs(6));
        assert!(e.contains("DNS failure"), "{e}");
        store.close().await;
    }
}

#[tokio::test]
async fn a_dead_resolver_stops_the_run_early() {
    let dead = dns_server(Arc::default(), true).await;
    let db = common::sqlite().await;
    let store = fresh(&db).await;
    let mut ids = Vec::new();
    for i in 1..=6 {
        ids.push(add_domain(&store, &format!("d{i}.test"), true).await);
    }
    let mut config = Config::new(Hostname::parse("hostname", "mail.example.com").unwrap());
    config.check_mx.resolver = Some(dead);
    config.check_mx.timeout_secs = 1;
    let started = Instant::now();
    let e = check_mx::run(&config, &store)
        .await
        .unwrap_err()
        .to_string();
    let took = started.elapsed();
    // Four MX lookups of one second each, then the remaining domains are skipped.
    assert!(took < Duration::from_secs(7), "took {took:?}");
    assert!(e.contains("2 domain(s) skipped"), "{e}");
    assert!(check_mx::domain_state(&store, ids[3])
        .await
        .unwrap()
        .is_some());
    assert!(check_mx::domain_state(&store, ids[4])
        .await
        .unwrap()
        .is_none());
    store.close().await;
}
