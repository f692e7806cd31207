//! The store's behaviour, the same suite on SQLite, PostgreSQL and MariaDB: migrations,
//! Modoboa's invariants and cascades, access and limits, CSV import/export all-or-nothing,
//! adoption of a Modoboa 1.10 database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use modobox::names::DomainName;
use modobox::store::access::{self, Actor, Role};
use modobox::store::accounts::{self, AccountPatch, AccountSpec, Options, Password};
use modobox::store::aliases::{self, AliasAddress, AliasSpec};
use modobox::store::domains::{self, DomainPatch, DomainSpec, Relay};
use modobox::store::{migrate, transfer, Page, Store, StoreError, Tx};

const ROUNDS: modobox::password::HashPolicy = modobox::password::HashPolicy::sha512_crypt(5000);

fn opts() -> Options {
    Options {
        mail_root: PathBuf::from("/srv/vmail"),
        handle_mailboxes_on_filesystem: true,
    }
}

fn dom(n: &str) -> DomainName {
    DomainName::parse("domain", n).unwrap()
}

async fn fresh(db: &common::TestDb) -> Store {
    let store = db.connect().await;
    migrate::migrate(&store).await.unwrap();
    store
}

fn mailbox(addr: &str, quota: Option<i32>) -> AccountSpec {
    AccountSpec {
        username: common::user(addr),
        password: Password::Clear("correct horse 1".into()),
        first_name: "First".into(),
        last_name: "Last".into(),
        enabled: true,
        role: Role::SimpleUsers,
        mailbox: Some(quota),
        mailbox_address: None,
        domains: vec![],
        profile: Default::default(),
        mailbox_settings: Default::default(),
    }
}

async fn count(tx: &mut Tx, sql: &str) -> i64 {
    tx.count(sql, &[]).await.unwrap()
}

fn refused_field(e: StoreError) -> String {
    match e {
        StoreError::Refused { field, .. } => field,
        StoreError::Invalid(n) => n.field,
        other => panic!("expected a refusal, got {other}"),
    }
}

#[tokio::test]
async fn migrations_apply_once_and_status_reports_them() {
    for db in common::all().await {
        let store = db.connect().await;
        let before = migrate::status(&store).await.unwrap();
        assert_eq!(before.pending(), before.migrations.len());
        let applied = migrate::migrate(&store).await.unwrap();
        assert_eq!(applied, vec![1, 2, 3, 4, 5, 6, 7], "{:?}", db.backend);
        assert!(migrate::migrate(&store).await.unwrap().is_empty());
        let after = migrate::status(&store).await.unwrap();
        assert_eq!(after.pending(), 0);
        assert!(!after.unadopted_modoboa);
        // A migrated database is not a Modoboa database to adopt.
        assert!(migrate::adopt(&store).await.is_err());
        store.close().await;
    }
}

/// A database a newer modobox migrated: accepted when all its newer migrations are additive
/// (a rolled-back upgrade keeps its data), refused when one is not; a ledger from before the
/// rule gets the column (older binaries insert without it: it has a default).
#[tokio::test]
async fn newer_additive_migrations_are_accepted_and_others_refused() {
    for db in common::all().await {
        let store = fresh(&db).await;
        let latest = migrate::latest();
        let mut tx = store.begin().await.unwrap();
        let now = chrono::Utc::now();
        tx.exec(
            "INSERT INTO modobox_schema_migration (version, name, checksum, baseline, applied_at, additive) VALUES (?, ?, ?, ?, ?, ?)",
            modobox::args![latest + 1, "from a newer modobox", "x", false, now, true],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let status = migrate::status(&store).await.unwrap();
        assert_eq!(status.newer_additive, vec![latest + 1], "{:?}", db.backend);
        assert!(migrate::migrate(&store).await.unwrap().is_empty());
        assert_eq!(
            migrate::applied_after(&store, latest).await.unwrap(),
            vec![(latest + 1, true)]
        );
        // An older binary's insert (no additive column named) counts as not additive.
        let mut tx = store.begin().await.unwrap();
        tx.exec(
            "INSERT INTO modobox_schema_migration (version, name, checksum, baseline, applied_at) VALUES (?, ?, ?, ?, ?)",
            modobox::args![latest + 2, "not additive", "y", false, now],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let e = migrate::status(&store).await.unwrap_err().to_string();
        assert!(e.contains(&format!("version {}", latest + 2)), "{e}");
        assert_eq!(
            migrate::applied_after(&store, latest).await.unwrap(),
            vec![(latest + 1, true), (latest + 2, false)]
        );
        store.close().await;
    }
}

#[tokio::test]
async fn mailboxes_keep_modoboa_invariants_and_quota_rules() {
    for db in common::all().await {
        let store = fresh(&db).await;
        let mut tx = store.begin().await.unwrap();
        let spec = DomainSpec {
            quota: 1000,
            default_mailbox_quota: 400,
            ..DomainSpec::default()
        };
        domains::create(&mut tx, Actor::System, &dom("example.com"), &spec, None)
            .await
            .unwrap();
        let a = accounts::create(
            &mut tx,
            Actor::System,
            &mailbox("Alice@Example.com", None),
            ROUNDS,
        )
        .await
        .unwrap();
        assert_eq!(a.username, "alice@example.com");
        let mb = a.mailbox.unwrap();
        assert_eq!((mb.quota, mb.use_domain_quota), (400, true));
        // The internal self alias, its recipient pointing at the mailbox, the quota row.
        assert_eq!(
            count(&mut tx, "SELECT COUNT(*) FROM admin_alias WHERE address = 'alice@example.com' AND internal = (1=1)").await,
            1
        );
        assert_eq!(
            count(&mut tx, "SELECT COUNT(*) FROM modoboa_admin_aliasrecipient WHERE address = 'alice@example.com' AND r_mailbox_id IS NOT NULL").await,
            1
        );
        assert_eq!(
            count(
                &mut tx,
                "SELECT COUNT(*) FROM admin_quota WHERE username = 'alice@example.com'"
            )
            .await,
            1
        );
        // 400 + 600 fits the 1000 MB domain; one more MB does not; unlimited never does.
        accounts::create(
            &mut tx,
            Actor::System,
            &mailbox("bob@example.com", Some(600)),
            ROUNDS,
        )
        .await
        .unwrap();
        let e = accounts::create(
            &mut tx,
            Actor::System,
            &mailbox("carl@example.com", Some(1)),
            ROUNDS,
        )
        .await
        .unwrap_err();
        assert_eq!(refused_field(e), "quota");
        let e = accounts::create(
            &mut tx,
            Actor::System,
            &mailbox("dan@example.com", Some(0)),
            ROUNDS,
        )
        .await
        .unwrap_err();
        assert_eq!(refused_field(e), "quota");
        // The domain quota cannot drop below what is allocated.
        let e = domains::update(
            &mut tx,
            Actor::System,
            &dom("example.com"),
            &DomainPatch {
                quota: Some(999),
                ..DomainPatch::default()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(refused_field(e), "quota");
        // Duplicates are refused.
        assert!(matches!(
            accounts::create(
                &mut tx,
                Actor::System,
                &mailbox("alice@example.com", None),
                ROUNDS
            )
            .await,
            Err(StoreError::Exists { .. })
        ));
        // Short passwords are refused, and the stored hash is SHA512-CRYPT that verifies.
        let mut weak = mailbox("eve@example.com", Some(0));
        weak.password = Password::Clear("short".into());
        assert_eq!(
            refused_field(
                accounts::create(&mut tx, Actor::System, &weak, ROUNDS)
                    .await
                    .unwrap_err()
            ),
            "password"
        );
        let ok = accounts::authenticate(&mut tx, "alice@example.com", "correct horse 1")
            .await
            .unwrap();
        assert!(ok.is_some());
        assert!(ok.unwrap().last_login.is_some());
        assert!(
            accounts::authenticate(&mut tx, "alice@example.com", "wrong")
                .await
                .unwrap()
                .is_none()
        );
        // Every change left an audit line.
        assert!(
            count(
                &mut tx,
                "SELECT COUNT(*) FROM core_log WHERE logger = 'modoboa.admin'"
            )
            .await
                >= 3
        );
        tx.commit().await.unwrap();
        store.close().await;
    }
}

#[tokio::test]
async fn aliases_resolve_recipients_and_follow_their_mailboxes() {
    for db in common::all().await {
        let store = fresh(&db).await;
        let mut tx = store.begin().await.unwrap();
        domains::create(
            &mut tx,
            Actor::System,
            &dom("example.com"),
            &DomainSpec::default(),
            None,
        )
        .await
        .unwrap();
        for u in ["alice@example.com", "bob@example.com"] {
            accounts::create(&mut tx, Actor::System, &mailbox(u, None), ROUNDS)
                .await
                .unwrap();
        }
        let spec = |r: &[&str]| AliasSpec {
            enabled: true,
            recipients: r.iter().map(|s| s.to_string()).collect(),
            ..AliasSpec::default()
        };
        let addr = |a: &str| AliasAddress::parse("address", a).unwrap();
        // A recipient inside a hosted domain must exist.
        let e = aliases::create(
            &mut tx,
            Actor::System,
            &addr("x@example.com"),
            &spec(&["nobody@example.com"]),
        )
        .await
        .unwrap_err();
        assert_eq!(refused_field(e), "recipients[1]");
        let sales = aliases::create(
            &mut tx,
            Actor::System,
            &addr("sales@example.com"),
            &spec(&[
                "alice@example.com",
                "friend@elsewhere.test",
                "alice@example.com",
            ]),
        )
        .await
        .unwrap();
        assert_eq!(
            sales.recipients,
            vec!["alice@example.com", "friend@elsewhere.test"]
        );
        aliases::create(
            &mut tx,
            Actor::System,
            &addr("@example.com"),
            &spec(&["bob@example.com"]),
        )
        .await
        .unwrap();
        // An alias of an alias is linked through r_alias_id.
        aliases::create(
            &mut tx,
            Actor::System,
            &addr("team@example.com"),
            &spec(&["sales@example.com", "bob@example.com"]),
        )
        .await
        .unwrap();
        assert_eq!(
            count(
                &mut tx,
                "SELECT COUNT(*) FROM modoboa_admin_aliasrecipient WHERE r_alias_id IS NOT NULL"
            )
            .await,
            1
        );
        // Deleting bob removes him from every alias; the catch-all, left empty, goes too.
        accounts::delete(
            &mut tx,
            Actor::System,
            &common::user("bob@example.com"),
            &opts(),
        )
        .await
        .unwrap();
        let left: Vec<String> = aliases::list(&mut tx, Actor::System, None)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.address)
            .collect();
        assert_eq!(left, vec!["sales@example.com", "team@example.com"]);
        assert_eq!(
            aliases::get(&mut tx, Actor::System, &common::alias("team@example.com"))
                .await
                .unwrap()
                .recipients,
            vec!["sales@example.com"]
        );
        // Deleting sales empties team, which is deleted with it.
        aliases::delete(&mut tx, Actor::System, &common::alias("sales@example.com"))
            .await
            .unwrap();
        assert!(aliases::list(&mut tx, Actor::System, None)
            .await
            .unwrap()
            .is_empty());
        // Queued: bob's home for deletion.
        assert_eq!(
            count(&mut tx, "SELECT COUNT(*) FROM admin_mailboxoperation WHERE type = 'delete' AND argument = '/srv/vmail/example.com/bob'").await,
            1
        );
        tx.commit().await.unwrap();
        store.close().await;
    }
}

#[tokio::test]
async fn rename_moves_everything_and_queues_the_directory_move() {
    for db in common::all().await {
        let store = fresh(&db).await;
        let mut tx = store.begin().await.unwrap();
        domains::create(
            &mut tx,
            Actor::System,
            &dom("example.com"),
            &DomainSpec::default(),
            None,
        )
        .await
        .unwrap();
        accounts::create(
            &mut tx,
            Actor::System,
            &mailbox("bob@example.com", None),
            ROUNDS,
        )
        .await
        .unwrap();
        let sales = AliasSpec {
            enabled: true,
            recipients: vec!["bob@example.com".into()],
            ..AliasSpec::default()
        };
        aliases::create(
            &mut tx,
            Actor::System,
            &AliasAddress::parse("a", "sales@example.com").unwrap(),
            &sales,
        )
        .await
        .unwrap();
        accounts::add_sender_address(
            &mut tx,
            Actor::System,
            &common::user("bob@example.com"),
            &common::alias("news@example.com"),
        )
        .await
        .unwrap();
        let patch = AccountPatch {
            username: Some(common::user("robert@example.com")),
            ..AccountPatch::default()
        };
        let r = accounts::update(
            &mut tx,
            Actor::System,
            &common::user("bob@example.com"),
            &patch,
            &opts(),
        )
        .await
        .unwrap();
        assert_eq!(
            r.mailbox.as_ref().unwrap().full_address,
            "robert@example.com"
        );
        assert_eq!(
            r.mailbox.unwrap().sender_addresses,
            vec!["news@example.com"]
        );
        assert_eq!(
            aliases::get(&mut tx, Actor::System, &common::alias("sales@example.com"))
                .await
                .unwrap()
                .recipients,
            vec!["robert@example.com"]
        );
        assert_eq!(
            count(
                &mut tx,
                "SELECT COUNT(*) FROM admin_alias WHERE address = 'robert@example.com'"
            )
            .await,
            1
        );
        assert_eq!(
            count(
                &mut tx,
                "SELECT COUNT(*) FROM admin_quota WHERE username = 'robert@example.com'"
            )
            .await,
            1
        );
        assert_eq!(
            count(&mut tx, "SELECT COUNT(*) FROM admin_mailboxoperation WHERE type = 'rename' AND argument = '/srv/vmail/example.com/bob' AND mailbox_id IS NOT NULL").await,
            1
        );
        tx.commit().await.unwrap();
        store.close().await;
    }
}

#[tokio::test]
async fn deleting_a_domain_leaves_nothing_behind() {
    for db in common::all().await {
        let store = fresh(&db).await;
        let mut tx = store.begin().await.unwrap();
        let sys = Actor::System;
        domains::create(
            &mut tx,
            sys,
            &dom("example.com"),
            &DomainSpec::default(),
            None,
        )
        .await
        .unwrap();
        domains::create(
            &mut tx,
            sys,
            &dom("keep.test"),
            &DomainSpec::default(),
            None,
        )
        .await
        .unwrap();
        accounts::create(&mut tx, sys, &mailbox("a@example.com", None), ROUNDS)
            .await
            .unwrap();
        accounts::create(&mut tx, sys, &mailbox("k@keep.test", None), ROUNDS)
            .await
            .unwrap();
        domains::create_alias(&mut tx, sys, &dom("example.net"), &dom("example.com"), true)
            .await
            .unwrap();
        let fwd = AliasSpec {
            enabled: true,
            recipients: vec!["a@example.com".into(), "k@keep.test".into()],
            ..AliasSpec::default()
        };
        aliases::create(
            &mut tx,
            sys,
            &AliasAddress::parse("a", "info@keep.test").unwrap(),
            &fwd,
        )
        .await
        .unwrap();
        let admin = AccountSpec {
            username: common::user("boss"),
            role: Role::DomainAdmins,
            mailbox: None,
            domains: vec![dom("example.com")],
            ..mailbox("boss", None)
        };
        accounts::create(&mut tx, sys, &admin, ROUNDS)
            .await
            .unwrap();
        domains::delete(&mut tx, sys, &dom("example.com"), &opts())
            .await
            .unwrap();
        for (sql, n) in [
            ("SELECT COUNT(*) FROM admin_domain", 1),
            ("SELECT COUNT(*) FROM admin_domainalias", 0),
            ("SELECT COUNT(*) FROM admin_mailbox", 1),
            (
                "SELECT COUNT(*) FROM core_user WHERE username = 'a@example.com'",
                0,
            ),
            (
                "SELECT COUNT(*) FROM admin_alias WHERE address LIKE '%example.%'",
                0,
            ),
            (
                "SELECT COUNT(*) FROM modoboa_admin_aliasrecipient WHERE address LIKE '%example.%'",
                0,
            ),
            ("SELECT COUNT(*) FROM admin_quota", 1),
            ("SELECT COUNT(*) FROM core_objectaccess", 0),
            (
                "SELECT COUNT(*) FROM admin_mailboxoperation WHERE type = 'delete'",
                1,
            ),
        ] {
            assert_eq!(count(&mut tx, sql).await, n, "{:?}: {sql}", db.backend);
        }
        // The forward that also pointed at the deleted mailbox keeps its other recipient.
        assert_eq!(
            aliases::get(&mut tx, sys, &common::alias("info@keep.test"))
                .await
                .unwrap()
                .recipients,
            vec!["k@keep.test"]
        );
        tx.commit().await.unwrap();
        store.close().await;
    }
}

#[tokio::test]
async fn relay_domains_write_transport_and_verification() {
    for db in common::all().await {
        let store = fresh(&db).await;
        let mut tx = store.begin().await.unwrap();
        let relay = Relay {
            target_host: "10.0.0.5".into(),
            target_port: 2525,
            service: "relay".into(),
            verify_recipients: true,
        };
        let d = domains::create(
            &mut tx,
            Actor::System,
            &dom("relay.test"),
            &DomainSpec::default(),
            Some(&relay),
        )
        .await
        .unwrap();
        assert_eq!(d.kind.as_str(), "relaydomain");
        assert_eq!(d.relay.as_ref(), Some(&relay));
        assert_eq!(
            count(
                &mut tx,
                "SELECT COUNT(*) FROM transport_transport WHERE next_hop = '[10.0.0.5]:2525'"
            )
            .await,
            1
        );
        assert_eq!(count(&mut tx, "SELECT COUNT(*) FROM relaydomains_recipientaccess WHERE action = 'reject_unverified_recipient'").await, 1);
        let off = DomainPatch {
            relay: Some(Relay {
                verify_recipients: false,
                ..relay.clone()
            }),
            ..DomainPatch::default()
        };
        domains::update(&mut tx, Actor::System, &dom("relay.test"), &off)
            .await
            .unwrap();
        assert_eq!(
            count(&mut tx, "SELECT COUNT(*) FROM relaydomains_recipientaccess").await,
            0
        );
        let bad = Relay {
            service: "re lay".into(),
            ..relay
        };
        let e = domains::create(
            &mut tx,
            Actor::System,
            &dom("bad.test"),
            &DomainSpec::default(),
            Some(&bad),
        )
        .await
        .unwrap_err();
        assert_eq!(refused_field(e), "service");
        domains::delete(&mut tx, Actor::System, &dom("relay.test"), &opts())
            .await
            .unwrap();
        assert_eq!(
            count(&mut tx, "SELECT COUNT(*) FROM transport_transport").await,
            0
        );
        tx.commit().await.unwrap();
        store.close().await;
    }
}

#[tokio::test]
async fn domain_admins_see_only_their_domains_and_limits_hold() {
    for db in common::all().await {
        let store = fresh(&db).await;
        let mut tx = store.begin().await.unwrap();
        let sys = Actor::System;
        for d in ["mine.test", "theirs.test"] {
            domains::create(&mut tx, sys, &dom(d), &DomainSpec::default(), None)
                .await
                .unwrap();
            accounts::create(&mut tx, sys, &mailbox(&format!("u@{d}"), None), ROUNDS)
                .await
                .unwrap();
        }
        let spec = AccountSpec {
            role: Role::DomainAdmins,
            domains: vec![dom("mine.test")],
            ..mailbox("admin@mine.test", None)
        };
        let admin = accounts::create(&mut tx, sys, &spec, ROUNDS).await.unwrap();
        assert_eq!(admin.domains, vec!["mine.test"]);
        let me = Actor::User {
            id: admin.id,
            role: Role::DomainAdmins,
        };
        let seen: Vec<String> = domains::list(&mut tx, me, None, None)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.name.to_string())
            .collect();
        assert_eq!(seen, vec!["mine.test"]);
        let hidden = accounts::get(&mut tx, me, &common::user("u@theirs.test")).await;
        assert!(
            matches!(hidden, Err(StoreError::NotFound { .. })),
            "{hidden:?}"
        );
        assert!(matches!(
            accounts::create(&mut tx, me, &mailbox("x@theirs.test", None), ROUNDS).await,
            Err(StoreError::NotFound { .. })
        ));
        let users = accounts::list(&mut tx, me, &accounts::ListFilter::default())
            .await
            .unwrap();
        assert!(
            users.iter().all(|u| u.username.ends_with("@mine.test")),
            "{users:?}"
        );
        // Domain admins create simple users, not other admins, not domains.
        let other_admin = AccountSpec {
            role: Role::Resellers,
            ..mailbox("y@mine.test", None)
        };
        assert!(matches!(
            accounts::create(&mut tx, me, &other_admin, ROUNDS).await,
            Err(StoreError::Forbidden(_))
        ));
        assert!(matches!(
            domains::create(&mut tx, me, &dom("new.test"), &DomainSpec::default(), None).await,
            Err(StoreError::Forbidden(_))
        ));
        // A limit of 3 mailboxes: 2 exist in its domain, one more fits, the next does not.
        access::set_user_limit(&mut tx, admin.id, "mailboxes", 3)
            .await
            .unwrap();
        accounts::create(&mut tx, me, &mailbox("v@mine.test", None), ROUNDS)
            .await
            .unwrap();
        let e = accounts::create(&mut tx, me, &mailbox("w@mine.test", None), ROUNDS)
            .await
            .unwrap_err();
        assert_eq!(refused_field(e), "mailboxes");
        assert!(access::set_user_limit(&mut tx, admin.id, "bogus", 1)
            .await
            .is_err());
        // A superadmin whose mailbox is in its domain is visible to the domain admin, but not
        // its to take over: no password, no edit, no deletion; its own users stay its to manage.
        let boss = AccountSpec {
            role: Role::SuperAdmins,
            ..mailbox("boss@mine.test", None)
        };
        accounts::create(&mut tx, sys, &boss, ROUNDS).await.unwrap();
        let pw = Password::Clear("taken over 123".into());
        assert!(matches!(
            accounts::set_password(&mut tx, me, &common::user("boss@mine.test"), &pw).await,
            Err(StoreError::Forbidden(_))
        ));
        let patch = AccountPatch {
            enabled: Some(false),
            ..Default::default()
        };
        assert!(matches!(
            accounts::update(
                &mut tx,
                me,
                &common::user("boss@mine.test"),
                &patch,
                &opts()
            )
            .await,
            Err(StoreError::Forbidden(_))
        ));
        assert!(matches!(
            accounts::delete(&mut tx, me, &common::user("boss@mine.test"), &opts()).await,
            Err(StoreError::Forbidden(_))
        ));
        accounts::set_password(&mut tx, me, &common::user("v@mine.test"), &pw)
            .await
            .unwrap();
        // Nobody disables itself (locked out, the server maybe without an admin).
        let off = AccountPatch {
            enabled: Some(false),
            ..Default::default()
        };
        assert!(matches!(
            accounts::update(&mut tx, me, &common::user("admin@mine.test"), &off, &opts()).await,
            Err(StoreError::Forbidden(_))
        ));
        // Its domain's quotas are not its to change; other settings are.
        let more = DomainPatch {
            quota: Some(500),
            ..Default::default()
        };
        assert!(matches!(
            domains::update(&mut tx, me, &dom("mine.test"), &more).await,
            Err(StoreError::Forbidden(_))
        ));
        let checks_off = DomainPatch {
            quota: Some(0),
            enable_dns_checks: Some(false),
            ..Default::default()
        };
        domains::update(&mut tx, me, &dom("mine.test"), &checks_off)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        store.close().await;
    }
}

const GOOD_CSV: &str = "\
domain;example.com;1000;100;true
domain;example.org;0;0;yes
domainalias;example.net;example.com;true
relaydomain;relay.test;10.0.0.5;25;relay;true;true
account;admin@example.com;Sup3r-secret!;Ada;Min;true;DomainAdmins;admin@example.com;200;example.com;example.org
account;alice@example.com;{PLAIN}already hashed;Alice;A;1;SimpleUsers;alice@example.com;
account;boss;another secret;Big;Boss;true;Resellers;;
alias;info@example.com;true;alice@example.com;someone@else.test
alias;@example.org;true;alice@example.com
";

#[tokio::test]
async fn csv_imports_all_or_nothing_and_round_trips() {
    for db in common::all().await {
        let store = fresh(&db).await;
        // A bad line at the end: nothing at all is imported, and the error names it.
        let bad = format!("{GOOD_CSV}alias;oops@example.com;true;nobody@example.com\n");
        let e = transfer::import(
            &store,
            Actor::System,
            bad.as_bytes(),
            &transfer::ImportOptions::default(),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().starts_with("line 10: recipients[1]:"), "{e}");
        let mut tx = store.begin().await.unwrap();
        for t in [
            "admin_domain",
            "core_user",
            "admin_alias",
            "transport_transport",
            "core_log",
        ] {
            assert_eq!(
                count(&mut tx, &format!("SELECT COUNT(*) FROM {t}")).await,
                0,
                "{t}"
            );
        }
        drop(tx);
        let report = transfer::import(
            &store,
            Actor::System,
            GOOD_CSV.as_bytes(),
            &transfer::ImportOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(
            report,
            transfer::ImportReport {
                domains: 2,
                domain_aliases: 1,
                relay_domains: 1,
                accounts: 3,
                aliases: 2,
                ..Default::default()
            }
        );
        let mut tx = store.begin().await.unwrap();
        let admin = accounts::get(&mut tx, Actor::System, &common::user("admin@example.com"))
            .await
            .unwrap();
        assert_eq!(admin.role, Role::DomainAdmins);
        assert_eq!(admin.domains, vec!["example.com", "example.org"]);
        assert_eq!(admin.mailbox.unwrap().quota, 200);
        let alice = accounts::get(&mut tx, Actor::System, &common::user("alice@example.com"))
            .await
            .unwrap();
        assert_eq!(alice.password_scheme, "PLAIN");
        assert_eq!(alice.mailbox.unwrap().quota, 100);
        let boss = accounts::get(&mut tx, Actor::System, &common::user("boss"))
            .await
            .unwrap();
        assert_eq!(boss.password_scheme, "SHA512-CRYPT");
        assert!(accounts::authenticate(&mut tx, "boss", "another secret")
            .await
            .unwrap()
            .is_some());
        drop(tx);
        // Export, import into an empty database, export again: the same text.
        let mut first = Vec::new();
        transfer::export(
            &store,
            Actor::System,
            transfer::ExportKind::Domains,
            &mut first,
            b';',
        )
        .await
        .unwrap();
        transfer::export(
            &store,
            Actor::System,
            transfer::ExportKind::Identities,
            &mut first,
            b';',
        )
        .await
        .unwrap();
        let other = common::sqlite().await;
        let store2 = fresh(&other).await;
        transfer::import(
            &store2,
            Actor::System,
            first.as_slice(),
            &transfer::ImportOptions::default(),
        )
        .await
        .unwrap();
        let mut second = Vec::new();
        transfer::export(
            &store2,
            Actor::System,
            transfer::ExportKind::Domains,
            &mut second,
            b';',
        )
        .await
        .unwrap();
        transfer::export(
            &store2,
            Actor::System,
            transfer::ExportKind::Identities,
            &mut second,
            b';',
        )
        .await
        .unwrap();
        assert_eq!(
            String::from_utf8(first).unwrap(),
            String::from_utf8(second).unwrap()
        );
        store.close().await;
        store2.close().await;
    }
}

/// Modoboa's own files, as its `modo export domains` and `export identities` write them: 2.12
/// (relay domains as plain domains, `'`-escaped catch-all, a forward on a mailbox's address,
/// ARGON2ID/SSHA/BLF-CRYPT hashes of "Password123!", a superadmin without a mailbox in
/// 9 fields) and 1.10–2.0 (the internal aliases of mailboxes and domain aliases, 7- and
/// 8-field account lines, an administrator whose mailbox is not its username, blanks around
/// fields, a bare crypt hash).
const MODOBOA_2_DOMAINS: &str = "\
domain;example.net;0;0;True
domain;example.org;0;0;True
domainalias;example-alias.org;example.org;True
domain;relay.example;0;0;True
";
const MODOBOA_2_IDENTITIES: &str = "\
account;alice@example.org;{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=4$h41DelOglU//PT+vfztFxg$bOCK4F6pEbfG6eSZpv2sbhzhwXVAKAd+lKXzAMC20hg;F;L;True;SimpleUsers;alice@example.org;0
account;bob@example.org;{SSHA}Y07alSZAI/G9yoObDY7bTykcy+CqFULI;F;L;True;SimpleUsers;bob@example.org;100
account;dave@example.net;{BLF-CRYPT}$2b$12$1fDwxFWWrM8hrwpTWPM.v.CV9LzETnLo.NpWxayYAVABDOePoyFUe;F;L;True;SimpleUsers;dave@example.net;0
account;admin2;{SSHA}Y07alSZAI/G9yoObDY7bTykcy+CqFULI;;;True;SuperAdmins;;
alias;'@example.net;True;dave@example.net
alias;bob@example.org;True;bob.ext@external.test;bob@example.org
alias;'-dash@example.org;True;alice@example.org
alias;sales@example.org;True;alice@example.org;bob@example.org
";
const MODOBOA_110_IDENTITIES: &str = "\
account;carol@example.org;$6$saltsaltsaltsalt$Jo6plbx3lHUNfAtcPh6iVkyIyxJXBpu6I5mxIH.AMAPR8oLJQ.S3Hvr5GNL.tyzqKc2sBB5RZkIZmBG3bS74/0;Carol;C;True;SimpleUsers;carol@example.org
account; boss ; long enough pw ;Big;Boss;True;DomainAdmins; boss@example.org ;50;example.org
account;owner;long enough pw;;;True;Resellers
alias;carol@example.org;True;carol@example.org
alias;@example-alias.org;True;@example.org
forward;fwd@example.org;True;someone@external.test
dlist;team@example.org;True;carol@example.org;boss@example.org
";

#[tokio::test]
async fn modoboa_csv_files_import_as_they_are() {
    for db in common::all().await {
        let store = fresh(&db).await;
        let all = format!("{MODOBOA_2_DOMAINS}{MODOBOA_2_IDENTITIES}");
        let report = transfer::import(
            &store,
            Actor::System,
            all.as_bytes(),
            &transfer::ImportOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(
            (
                report.domains,
                report.domain_aliases,
                report.accounts,
                report.aliases
            ),
            (3, 1, 4, 4)
        );
        let mut tx = store.begin().await.unwrap();
        for user in [
            "alice@example.org",
            "bob@example.org",
            "dave@example.net",
            "admin2",
        ] {
            assert!(
                accounts::authenticate(&mut tx, user, "Password123!")
                    .await
                    .unwrap()
                    .is_some(),
                "{:?}: {user}",
                db.backend
            );
        }
        // The escaped catch-all and the escaped name are what Modoboa exported, without the '.
        let catch_all = aliases::get(&mut tx, Actor::System, &common::alias("@example.net"))
            .await
            .unwrap();
        assert_eq!(catch_all.recipients, vec!["dave@example.net"]);
        aliases::get(&mut tx, Actor::System, &common::alias("-dash@example.org"))
            .await
            .unwrap();
        let forward = aliases::get(&mut tx, Actor::System, &common::alias("bob@example.org"))
            .await
            .unwrap();
        assert_eq!(
            forward.recipients,
            vec!["bob.ext@external.test", "bob@example.org"]
        );
        tx.commit().await.unwrap();

        // The same files again: an error naming the first existing object, nothing changed...
        let e = transfer::import(
            &store,
            Actor::System,
            all.as_bytes(),
            &transfer::ImportOptions::default(),
        )
        .await
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("line 1: domain example.net already exists"),
            "{e}"
        );
        // ...or, with --continue-if-exists, everything left as it is, and an alias's new
        // recipient added to it; separated by commas (Modoboa's web export).
        let continuing = transfer::ImportOptions {
            sepchar: b',',
            continue_if_exists: true,
            ..Default::default()
        };
        let commas: String = all
            .lines()
            .map(|l| {
                let cells: Vec<String> = l
                    .split(';')
                    .map(|c| {
                        if c.contains(',') {
                            format!("\"{c}\"")
                        } else {
                            c.to_string()
                        }
                    })
                    .collect();
                cells.join(",") + "\n"
            })
            .collect();
        let again = format!("{commas}alias,sales@example.org,True,dave@example.net\n");
        let report = transfer::import(&store, Actor::System, again.as_bytes(), &continuing)
            .await
            .unwrap();
        assert_eq!(
            (report.existing, report.aliases_merged, report.accounts),
            (12, 1, 0)
        );
        let mut tx = store.begin().await.unwrap();
        let sales = aliases::get(&mut tx, Actor::System, &common::alias("sales@example.org"))
            .await
            .unwrap();
        assert_eq!(
            sales.recipients,
            vec!["alice@example.org", "bob@example.org", "dave@example.net"]
        );
        drop(tx);

        // 1.10's lines: the internal aliases are skipped (made with their mailbox and domain
        // alias), the bare crypt hash is a hash, the administrator's mailbox is its own.
        let report = transfer::import(
            &store,
            Actor::System,
            MODOBOA_110_IDENTITIES.as_bytes(),
            &transfer::ImportOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(
            (report.accounts, report.aliases, report.internal_aliases),
            (3, 2, 2)
        );
        let mut tx = store.begin().await.unwrap();
        let carol = accounts::get(&mut tx, Actor::System, &common::user("carol@example.org"))
            .await
            .unwrap();
        assert_eq!(carol.password_scheme, "SHA512-CRYPT");
        assert!(
            accounts::authenticate(&mut tx, "carol@example.org", "Password123!")
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(carol.mailbox.as_ref().unwrap().quota, 0);
        let boss = accounts::get(&mut tx, Actor::System, &common::user("boss"))
            .await
            .unwrap();
        assert_eq!(boss.role, Role::DomainAdmins);
        assert_eq!(boss.domains, vec!["example.org"]);
        let mb = boss.mailbox.unwrap();
        assert_eq!(
            (mb.full_address.as_str(), mb.quota),
            ("boss@example.org", 50)
        );
        assert!(accounts::authenticate(&mut tx, "boss", "long enough pw")
            .await
            .unwrap()
            .is_some());
        let owner = accounts::get(&mut tx, Actor::System, &common::user("owner"))
            .await
            .unwrap();
        assert!(owner.mailbox.is_none());
        // Renaming the administrator leaves its mailbox where it is.
        let rename = AccountPatch {
            username: Some(common::user("chief")),
            ..Default::default()
        };
        let chief = accounts::update(
            &mut tx,
            Actor::System,
            &common::user("boss"),
            &rename,
            &opts(),
        )
        .await
        .unwrap();
        assert_eq!(chief.mailbox.unwrap().full_address, "boss@example.org");
        // A simple user may not take the administrator's address.
        let taken = common::account_spec("boss@example.org", Role::SimpleUsers, true, &[]);
        assert!(matches!(
            common::create_account_result(&mut tx, &taken).await,
            Err(StoreError::Exists { .. })
        ));
        tx.commit().await.unwrap();

        // modobox's export writes what Modoboa 2.9+ writes: escaped cells, an alias named as a
        // recipient before the alias naming it.
        let mut out = Vec::new();
        transfer::export(
            &store,
            Actor::System,
            transfer::ExportKind::Identities,
            &mut out,
            b';',
        )
        .await
        .unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("\nalias;'@example.net;True;dave@example.net\n"),
            "{out}"
        );
        assert!(
            out.contains("\nalias;'-dash@example.org;True;alice@example.org\n"),
            "{out}"
        );
        assert!(
            out.contains("account;chief;")
                && out.contains(";DomainAdmins;boss@example.org;50;example.org\n"),
            "{out}"
        );
        store.close().await;
    }
}

#[tokio::test]
async fn hostile_csv_lines_are_refused_with_line_and_field() {
    let db = common::sqlite().await;
    let store = fresh(&db).await;
    let header = "domain;example.com;1000;100;true\n";
    let cases: &[(&str, &str)] = &[
        ("domain;exa\"mple.com;10;1;true", "name"),
        ("domain;example.org;99999999999;1;true", "quota"),
        ("domain;example.org;10;20;true", "default_mailbox_quota"),
        ("domain;example.org;10;-1;true", "default mailbox quota"),
        ("domain;-bad-.org;10;1;true", "name"),
        ("domain;a.b;1;1", "domain"),
        ("domainalias;example.net;example.com", "domainalias"),
        ("account;u@example.com;{NOSUCH}abcdefgh;A;B;true;SimpleUsers;u@example.com;10", "password"),
        ("account;u@example.com;longpassword;A;B;true;SimpleUsers", "email"),
        ("forward;f@example.com;true", "forward"),
        ("relaydomain;r.test;10.0.0.1;99999;relay;true;true", "target port"),
        ("relaydomain;r.test;evil\thost;25;relay;true;true", "target_host"),
        ("relaydomain;r.test;10.0.0.1;25;re;lay;true;true", "relaydomain"),
        ("account;../../etc@example.com;longpassword;A;B;true;SimpleUsers;../../etc@example.com;10", "username"),
        ("account;u@example.com;longpassword;A;B;true;Root;u@example.com;10", "role"),
        ("account;u@example.com;longpassword;A;B;true;SimpleUsers;other@example.com;10", "email"),
        ("account;u@example.com;longpassword;A;B;true;SimpleUsers;u@example.com;-5", "quota"),
        ("account;u@example.com;longpassword;A;B;true;SimpleUsers;u@example.com;2000", "quota"),
        ("account;u@example.com;longpassword;Aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa;B;true;SimpleUsers;u@example.com;10", "first_name"),
        ("account;u@example.com;{SHA512-CRYPT}$6$broken;A;B;true;SimpleUsers;u@example.com;10", "password"),
        ("account;u@example.com;longpassword;A;B;true;SimpleUsers;u@example.com;10;example.com", "domain"),
        ("account;u@nowhere.test;longpassword;A;B;true;SimpleUsers;u@nowhere.test;10", "domain"),
        ("alias;info@example.com;true", "alias"),
        ("alias;info@example.com;true;nobody@example.com", "recipients[1]"),
        ("alias;in fo@example.com;true;x@else.test", "address"),
        ("alias;@@example.com;true;x@else.test", "address"),
    ];
    for (line, field) in cases {
        let text = format!("{header}{line}\n");
        let Err(e) = transfer::import(
            &store,
            Actor::System,
            text.as_bytes(),
            &transfer::ImportOptions::default(),
        )
        .await
        else {
            panic!("accepted: {line}");
        };
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("line 2: {field}"))
                || (msg.starts_with("line 2: ") && msg.contains(field)),
            "{line}\n  -> {msg}"
        );
    }
    // Invalid UTF-8 is named too; and after all these refusals nothing was imported.
    let e = transfer::import(
        &store,
        Actor::System,
        &b"domain;example.com;1;1;true\ndomain;ex\xffample.org;1;1;true\n"[..],
        &transfer::ImportOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("line 2: line: is not valid UTF-8"),
        "{e}"
    );
    let mut tx = store.begin().await.unwrap();
    assert_eq!(count(&mut tx, "SELECT COUNT(*) FROM admin_domain").await, 0);
    assert_eq!(count(&mut tx, "SELECT COUNT(*) FROM core_user").await, 0);
}

fn fixture(backend: modobox::store::Backend) -> PathBuf {
    let name = match backend {
        modobox::store::Backend::Postgres => "postgres.sql",
        modobox::store::Backend::Mysql => "mysql.sql",
        modobox::store::Backend::Sqlite => "sqlite.sql",
    };
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/modoboa-1.10")
        .join(name)
}

const MODOBOA_TABLES: &[&str] = &[
    "core_user",
    "core_user_groups",
    "auth_group",
    "django_content_type",
    "core_objectaccess",
    "core_log",
    "admin_domain",
    "admin_domainalias",
    "admin_mailbox",
    "admin_quota",
    "admin_alias",
    "modoboa_admin_aliasrecipient",
    "admin_senderaddress",
    "admin_mailboxoperation",
    "admin_mxrecord",
    "admin_dnsblresult",
    "transport_transport",
    "relaydomains_recipientaccess",
    "limits_userobjectlimit",
    "limits_domainobjectlimit",
    "django_migrations",
    "authtoken_token",
];

#[tokio::test]
async fn a_modoboa_database_is_adopted_without_touching_its_data() {
    for db in common::all().await {
        db.load_sql_file(&fixture(db.backend));
        let store = db.connect().await;
        let status = migrate::status(&store).await.unwrap();
        assert!(status.unadopted_modoboa, "{:?}", db.backend);
        // `migrate` refuses and points at `adopt`.
        let e = migrate::migrate(&store).await.unwrap_err().to_string();
        assert!(e.contains("modobox db adopt"), "{e}");
        // 1.10's settings: the ones matching modobox's default configuration say so.
        use modobox::store::modoboa_settings::{self, Outcome};
        let config =
            modobox::config::Config::from_toml(modobox::config::DEFAULT_TEXT, "default").unwrap();
        let mut tx = store.begin_read().await.unwrap();
        let settings = modoboa_settings::plan(&mut tx, &config).await.unwrap();
        drop(tx);
        for (key, path) in [
            ("admin.mailboxes_owner", "mail.owner"),
            (
                "admin.handle_mailboxes",
                "mail.handle_mailboxes_on_filesystem",
            ),
            ("admin.dkim_keys_storage_dir", "paths.dkim_keys"),
            (
                "core.inactive_account_threshold",
                "jobs.inactive_account_days",
            ),
        ] {
            assert!(
                settings
                    .iter()
                    .any(|i| i.modoboa == key
                        && i.outcome == Outcome::SameInConfig { key: path.into() }),
                "{key}: {settings:?}"
            );
        }
        assert!(settings.iter().any(|i| i.modoboa == "core.password_scheme"
            && i.outcome
                == Outcome::Taken {
                    setting: "password_scheme".into(),
                    value: "SHA512-CRYPT".into()
                }));
        let before = db.dump_tables(MODOBOA_TABLES);
        assert_eq!(
            migrate::adopt(&store).await.unwrap(),
            vec![1, 2, 3, 4, 5, 6, 7]
        );
        assert_eq!(
            db.dump_tables(MODOBOA_TABLES),
            before,
            "{:?}: Modoboa's data changed",
            db.backend
        );
        let status = migrate::status(&store).await.unwrap();
        assert_eq!(status.pending(), 0);
        assert!(status.migrations[0].baseline);
        assert!(migrate::migrate(&store).await.unwrap().is_empty());

        // modobox reads Modoboa's rows as Modoboa meant them.
        let mut tx = store.begin().await.unwrap();
        let bob = accounts::get(&mut tx, Actor::System, &common::user("bob@example.org"))
            .await
            .unwrap();
        assert_eq!(bob.role, Role::DomainAdmins);
        assert_eq!(bob.domains, vec!["example.org"]);
        let admin = accounts::get(&mut tx, Actor::System, &common::user("admin"))
            .await
            .unwrap();
        assert_eq!(admin.role, Role::SuperAdmins);
        assert!(
            accounts::authenticate(&mut tx, "alice@example.org", "password")
                .await
                .unwrap()
                .is_some()
        );
        // carol's hash has passlib's 656000 rounds, as a real 1.10 install writes it.
        assert!(
            accounts::authenticate(&mut tx, "carol@example.net", "password")
                .await
                .unwrap()
                .is_some()
        );
        let org = domains::get(&mut tx, Actor::System, &dom("example.org"))
            .await
            .unwrap();
        assert_eq!((org.quota, org.enable_dkim), (5000, true));
        let relay = domains::get(&mut tx, Actor::System, &dom("relay.example.com"))
            .await
            .unwrap();
        assert_eq!(relay.relay.unwrap().target_host, "mx.relay.example.com");
        assert_eq!(
            aliases::get(&mut tx, Actor::System, &common::alias("sales@example.org"))
                .await
                .unwrap()
                .recipients,
            vec!["alice@example.org", "partner@external.test"]
        );
        // bob sees example.org only, and his Modoboa limit (mailboxes = 20) applies.
        let me = Actor::User {
            id: bob.id,
            role: Role::DomainAdmins,
        };
        let seen: Vec<String> = domains::list(&mut tx, me, None, None)
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.name.to_string())
            .collect();
        assert_eq!(seen, vec!["example.org"]);
        accounts::create(&mut tx, me, &mailbox("dave@example.org", Some(100)), ROUNDS)
            .await
            .unwrap();
        domains::delete(&mut tx, Actor::System, &dom("example.net"), &opts())
            .await
            .unwrap();
        assert_eq!(
            count(
                &mut tx,
                "SELECT COUNT(*) FROM admin_alias WHERE address LIKE '%example.net'"
            )
            .await,
            0
        );
        tx.commit().await.unwrap();
        store.close().await;
    }
}

/// Two processes writing one SQLite file (the CLI while a job of `modobox run` writes): a
/// transaction that reads before it writes waits for the other writer instead of failing with
/// "database is locked".
#[tokio::test]
async fn sqlite_writers_wait_for_each_other() {
    let db = common::sqlite().await;
    let first = fresh(&db).await;
    let second = db.connect().await;
    let mut holder = first.begin().await.unwrap();
    holder
        .exec(
            "INSERT INTO core_log (date_created, message, level, logger) VALUES ('2026-12-01 00:00:00', 'held', 'INFO', 't')",
            &[],
        )
        .await
        .unwrap();
    let writer = tokio::spawn(async move {
        let mut tx = second.begin().await.unwrap();
        let n = tx
            .count("SELECT COUNT(*) FROM core_log", &[])
            .await
            .unwrap();
        tx.exec(
            "INSERT INTO core_log (date_created, message, level, logger) VALUES ('2026-12-01 00:00:01', 'after', 'INFO', 't')",
            &[],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        n
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    holder.commit().await.unwrap();
    // The second writer started after the first committed: it saw its row.
    assert_eq!(writer.await.unwrap(), 1);
    let mut tx = first.begin().await.unwrap();
    assert_eq!(count(&mut tx, "SELECT COUNT(*) FROM core_log").await, 2);
}

/// The alias list of the UI and the API: filtered by visibility, domain and search (address or
/// a recipient), counted and paged in SQL, with each alias's recipients in their order.
#[tokio::test]
async fn alias_lists_are_paged_and_searched_in_sql() {
    for db in common::all().await {
        let store = fresh(&db).await;
        let mut tx = store.begin().await.unwrap();
        let sys = Actor::System;
        for d in ["a.test", "b.test"] {
            domains::create(&mut tx, sys, &dom(d), &DomainSpec::default(), None)
                .await
                .unwrap();
        }
        let spec = |r: &[&str]| AliasSpec {
            enabled: true,
            recipients: r.iter().map(|s| s.to_string()).collect(),
            ..AliasSpec::default()
        };
        let addr = |a: &str| AliasAddress::parse("address", a).unwrap();
        for i in 0..7 {
            let to = format!("ext{i}@far.example");
            aliases::create(&mut tx, sys, &addr(&format!("al{i}@a.test")), &spec(&[&to]))
                .await
                .unwrap();
        }
        aliases::create(
            &mut tx,
            sys,
            &addr("multi@a.test"),
            &spec(&["zz@far.example", "aa@far.example"]),
        )
        .await
        .unwrap();
        aliases::create(
            &mut tx,
            sys,
            &addr("x@b.test"),
            &spec(&["special@far.example"]),
        )
        .await
        .unwrap();
        let admin = accounts::create(
            &mut tx,
            sys,
            &AccountSpec {
                role: Role::DomainAdmins,
                domains: vec![dom("a.test")],
                ..mailbox("admin@a.test", None)
            },
            ROUNDS,
        )
        .await
        .unwrap();
        let me = Actor::User {
            id: admin.id,
            role: Role::DomainAdmins,
        };
        let names = |l: &[aliases::Alias]| l.iter().map(|a| a.address.clone()).collect::<Vec<_>>();

        let Page { items: page, total } = aliases::list_page(&mut tx, sys, None, None, Some(3), 3)
            .await
            .unwrap();
        assert_eq!(total, 9, "{}", db.name);
        assert_eq!(names(&page), ["al3@a.test", "al4@a.test", "al5@a.test"]);
        let Page { items: last, .. } = aliases::list_page(&mut tx, sys, None, None, Some(3), 6)
            .await
            .unwrap();
        assert_eq!(names(&last), ["al6@a.test", "multi@a.test", "x@b.test"]);
        // Recipients by address, as Modoboa lists them.
        assert_eq!(last[1].recipients, ["aa@far.example", "zz@far.example"]);
        // The whole list is the same query without a limit.
        let all = aliases::list(&mut tx, sys, None).await.unwrap();
        assert_eq!(all.len(), 9);
        assert_eq!(all[7].recipients, last[1].recipients);

        // Search: in a recipient, case-insensitive, LIKE's wildcards taken literally.
        let found = |search: &str| {
            let search = search.to_string();
            let store = store.clone();
            async move {
                let mut tx = store.begin().await.unwrap();
                let r = aliases::list_page(&mut tx, Actor::System, None, Some(&search), None, 0)
                    .await
                    .unwrap();
                drop(tx);
                r
            }
        };
        tx.commit().await.unwrap();
        let Page { items: hit, total } = found("special").await;
        assert_eq!((names(&hit), total), (vec!["x@b.test".to_string()], 1));
        assert_eq!(names(&found("AL1").await.items), ["al1@a.test"]);
        assert_eq!(found("%").await.total, 0);
        assert_eq!(found("_").await.total, 0);
        assert_eq!(found("far.example").await.total, 9);

        // A domain admin sees its domain's aliases only; another domain is not found.
        let mut tx = store.begin().await.unwrap();
        let Page { items: mine, total } = aliases::list_page(&mut tx, me, None, None, Some(50), 0)
            .await
            .unwrap();
        assert_eq!(total, 8);
        assert!(mine.iter().all(|a| a.address.ends_with("@a.test")));
        let Page { items: none, total } =
            aliases::list_page(&mut tx, me, None, Some("special"), None, 0)
                .await
                .unwrap();
        assert!(none.is_empty() && total == 0);
        assert!(matches!(
            aliases::list_page(&mut tx, me, Some(&dom("b.test")), None, None, 0).await,
            Err(StoreError::NotFound { .. })
        ));
        let Page {
            items: only_a,
            total,
        } = aliases::list_page(&mut tx, sys, Some(&dom("a.test")), Some("multi"), None, 0)
            .await
            .unwrap();
        assert_eq!(
            (names(&only_a), total),
            (vec!["multi@a.test".to_string()], 1)
        );
    }
}

/// Lists without a page (the API without `page`, the CLI): 70,000 accounts are more values
/// than one statement may bind on any engine (SQLite 32,766; PostgreSQL, MariaDB 65,535), so
/// the per-page lookups (roles, quota use, sender addresses) go in chunks.
#[tokio::test]
async fn unpaged_lists_of_70000_accounts_work() {
    const N: i64 = 70_000;
    for db in common::all().await {
        let store = fresh(&db).await;
        let mut tx = store.begin().await.unwrap();
        domains::create(
            &mut tx,
            Actor::System,
            &dom("big.test"),
            &DomainSpec::default(),
            None,
        )
        .await
        .unwrap();
        if tx.backend() == modobox::store::Backend::Mysql {
            tx.exec("SET SESSION max_recursive_iterations = 100000", &[])
                .await
                .unwrap();
        }
        let (concat, t, f) = match tx.backend() {
            modobox::store::Backend::Mysql => ("CONCAT('u', i, '@big.test')", "1", "0"),
            _ => ("'u' || i || '@big.test'", "true", "false"),
        };
        tx.exec(
            &format!(
                "INSERT INTO core_user (password, is_superuser, username, first_name, last_name, email, is_staff, is_active, date_joined, is_local, master_user, language, _parameters) \
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {N}) \
                 SELECT '{{PLAIN}}x', {f}, {concat}, '', '', '', {f}, {t}, '2026-01-01 00:00:00', {t}, {f}, 'en', '{{}}' FROM n"
            ),
            &[],
        )
        .await
        .unwrap();
        let domain_id = tx
            .row("SELECT id FROM admin_domain WHERE name = 'big.test'", &[])
            .await
            .unwrap()
            .unwrap()
            .i32("id")
            .unwrap();
        tx.exec(
            &format!(
                "INSERT INTO admin_mailbox (address, quota, use_domain_quota, domain_id, user_id, creation) \
                 SELECT SUBSTR(username, 1, LENGTH(username) - 9), 0, {t}, {domain_id}, id, '2026-01-01 00:00:00' FROM core_user"
            ),
            &[],
        )
        .await
        .unwrap();
        tx.exec(
            "INSERT INTO admin_quota (username, bytes, messages) SELECT username, 4096, 1 FROM core_user",
            &[],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();

        let mut tx = store.begin().await.unwrap();
        let Page { items: all, total } = accounts::list_page(
            &mut tx,
            Actor::System,
            &accounts::ListFilter::default(),
            None,
            0,
        )
        .await
        .unwrap();
        assert_eq!((all.len() as i64, total), (N, N), "{}", db.name);
        let last = all
            .iter()
            .find(|a| a.username == "u70000@big.test")
            .unwrap();
        assert_eq!(last.role, Role::SimpleUsers);
        let mb = last.mailbox.as_ref().expect("a mailbox");
        assert_eq!(mb.full_address, "u70000@big.test");
        assert_eq!(mb.quota_used_bytes, 4096);
    }
}
