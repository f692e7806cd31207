//! The periodic jobs against real databases (SQLite always, PostgreSQL and MariaDB when
//! tests/db-servers runs) and a real temporary mail root; the scheduler's slots, single flight,
//! timeout and cross-node exclusion (two schedulers on one database, each slot run once).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use croner::Cron;
use modobox::config::{Config, InactiveAction};
use modobox::distro::{Distro, DistroId};
use modobox::jobs::process::{process_runner, JobCommand};
use modobox::jobs::scheduler::{self, Entry, Runner, Scheduler};
use modobox::jobs::{self, JobContext, Outcome};
use modobox::names::{DomainName, Hostname, SafePath};
use modobox::store::access::{Actor, Role};
use modobox::store::accounts::{self, AccountPatch, AccountSpec, Options};
use modobox::store::domains::{self, DomainSpec};
use modobox::store::tasks::{self, JobLock};
use modobox::store::{migrate, Backend, Store, Tx};

const ROUNDS: modobox::password::HashPolicy = modobox::password::HashPolicy::sha512_crypt(5000);

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    ctx: JobContext,
}

impl Env {
    fn mail_root(&self) -> PathBuf {
        self.root.join("vmail")
    }
    fn opts(&self) -> Options {
        Options {
            mail_root: self.mail_root(),
            handle_mailboxes_on_filesystem: true,
        }
    }
}

fn safe(field: &str, p: &Path) -> SafePath {
    SafePath::parse(field, &p.display().to_string()).unwrap()
}

async fn env(db: &common::TestDb) -> Env {
    let store = db.connect().await;
    migrate::migrate(&store).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let mut config = Config::new(Hostname::parse("hostname", "mail.example.com").unwrap());
    config.paths.mail_root = safe("paths.mail_root", &root.join("vmail"));
    config.paths.dkim_keys = safe("paths.dkim_keys", &root.join("dkim"));
    config.paths.rrd = safe("paths.rrd", &root.join("rrd"));
    config.paths.data = safe("paths.data", &root.join("data"));
    // The statistics read this test's log, never the host's.
    config.stats.log_file = safe("stats.log_file", &root.join("mail.log"));
    config.stats.journal = false;
    config.validate().unwrap();
    std::fs::create_dir_all(root.join("vmail")).unwrap();
    let distro = Distro::load(&"debian:12".parse::<DistroId>().unwrap()).unwrap();
    Env {
        _dir: dir,
        root,
        ctx: JobContext {
            config,
            distro,
            store,
            node: "node-test".into(),
        },
    }
}

fn dom(n: &str) -> DomainName {
    DomainName::parse("domain", n).unwrap()
}

fn spec(addr: &str, role: Role, mailbox: bool) -> AccountSpec {
    common::account_spec(addr, role, mailbox, &[])
}

async fn domain(tx: &mut Tx, name: &str, dkim: bool, key_length: Option<i32>) {
    let spec = DomainSpec {
        enable_dkim: dkim,
        dkim_key_length: key_length,
        ..DomainSpec::default()
    };
    domains::create(tx, Actor::System, &dom(name), &spec, None)
        .await
        .unwrap();
}

async fn count(store: &Store, sql: &str) -> i64 {
    let mut tx = store.begin().await.unwrap();
    tx.count(sql, &[]).await.unwrap()
}

async fn log_count(store: &Store, level: &str, like: &str) -> i64 {
    let mut tx = store.begin().await.unwrap();
    tx.count(
        "SELECT COUNT(*) FROM core_log WHERE level = ? AND logger = 'modoboa.admin' AND message LIKE ?",
        modobox::args![level, format!("%{like}%")],
    )
    .await
    .unwrap()
}

fn mkdir_with_mail(p: &Path) {
    std::fs::create_dir_all(p.join("Maildir/cur")).unwrap();
    std::fs::write(p.join("Maildir/cur/1.eml"), "Subject: hi\n\nbody\n").unwrap();
}

#[tokio::test]
async fn mailbox_operations_move_and_remove_homes_and_are_rerunnable() {
    for db in common::all().await {
        let e = env(&db).await;
        let store = &e.ctx.store;
        let root = e.mail_root();
        let mut tx = store.begin().await.unwrap();
        domain(&mut tx, "example.com", false, None).await;
        domain(&mut tx, "example.net", false, None).await;
        for a in ["bob@example.com", "carol@example.com", "dan@example.com"] {
            accounts::create(
                &mut tx,
                Actor::System,
                &spec(a, Role::SimpleUsers, true),
                ROUNDS,
            )
            .await
            .unwrap();
        }
        mkdir_with_mail(&root.join("example.com/bob"));
        mkdir_with_mail(&root.join("example.com/carol"));
        // bob moves to another domain (whose directory does not exist yet); carol is deleted;
        // dan never received mail (no directory) and is renamed.
        let rename = |to: &str| AccountPatch {
            username: Some(common::user(to)),
            ..AccountPatch::default()
        };
        accounts::update(
            &mut tx,
            Actor::System,
            &common::user("bob@example.com"),
            &rename("robert@example.net"),
            &e.opts(),
        )
        .await
        .unwrap();
        accounts::update(
            &mut tx,
            Actor::System,
            &common::user("dan@example.com"),
            &rename("daniel@example.com"),
            &e.opts(),
        )
        .await
        .unwrap();
        accounts::delete(
            &mut tx,
            Actor::System,
            &common::user("carol@example.com"),
            &e.opts(),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            count(store, "SELECT COUNT(*) FROM admin_mailboxoperation").await,
            3
        );

        // A dry run changes nothing.
        let (o, m) = jobs::execute("mailbox_operations", &e.ctx, true).await;
        assert_eq!(o, Outcome::Ok, "{m}");
        assert!(m.contains("would move"), "{m}");
        assert!(root.join("example.com/bob").exists());
        assert_eq!(
            count(store, "SELECT COUNT(*) FROM admin_mailboxoperation").await,
            3
        );

        let (o, m) = jobs::execute("mailbox_operations", &e.ctx, false).await;
        assert_eq!(o, Outcome::Ok, "{:?}: {m}", db.backend);
        assert!(!root.join("example.com/bob").exists());
        assert_eq!(
            std::fs::read_to_string(root.join("example.net/robert/Maildir/cur/1.eml")).unwrap(),
            "Subject: hi\n\nbody\n"
        );
        let parent = std::fs::metadata(root.join("example.net")).unwrap();
        assert_eq!(parent.permissions().mode() & 0o777, 0o700);
        assert!(!root.join("example.com/carol").exists());
        assert_eq!(
            count(store, "SELECT COUNT(*) FROM admin_mailboxoperation").await,
            0
        );
        assert_eq!(log_count(store, "INFO", "moved to").await, 1);
        assert_eq!(log_count(store, "INFO", "removed").await, 1);
        assert_eq!(log_count(store, "CRITICAL", "").await, 0);

        // Nothing left: a second run is a no-op.
        let (o, m) = jobs::execute("mailbox_operations", &e.ctx, false).await;
        assert_eq!(
            (o, m.as_str()),
            (Outcome::Ok, "no mailbox operation queued")
        );

        // A run that stopped after the move but before deleting its row: the re-run sees the
        // move done and only removes the row.
        let mut tx = store.begin().await.unwrap();
        let mb = tx
            .row(
                "SELECT m.id FROM admin_mailbox m JOIN admin_domain d ON d.id = m.domain_id \
                 WHERE m.address = 'robert' AND d.name = 'example.net'",
                &[],
            )
            .await
            .unwrap()
            .unwrap()
            .i32("id")
            .unwrap();
        tx.exec(
            "INSERT INTO admin_mailboxoperation (mailbox_id, type, argument) VALUES (?, 'rename', ?)",
            modobox::args![mb, root.join("example.com/bob").display().to_string()],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let (o, m) = jobs::execute("mailbox_operations", &e.ctx, false).await;
        assert_eq!(o, Outcome::Ok, "{m}");
        assert!(root.join("example.net/robert/Maildir/cur/1.eml").exists());
        assert_eq!(
            count(store, "SELECT COUNT(*) FROM admin_mailboxoperation").await,
            0
        );
        store.close().await;
    }
}

#[tokio::test]
async fn hostile_mailbox_operations_are_refused_and_kept() {
    for db in common::all().await {
        let e = env(&db).await;
        let store = &e.ctx.store;
        let root = e.mail_root();
        // Things outside the mail root that must survive.
        let outside = e.root.join("outside");
        mkdir_with_mail(&outside.join("victim"));
        std::os::unix::fs::symlink(&outside, root.join("evil.com")).unwrap();
        let mut tx = store.begin().await.unwrap();
        domain(&mut tx, "example.com", false, None).await;
        accounts::create(
            &mut tx,
            Actor::System,
            &spec("bob@example.com", Role::SimpleUsers, true),
            ROUNDS,
        )
        .await
        .unwrap();
        mkdir_with_mail(&root.join("example.com/bob"));
        mkdir_with_mail(&root.join("example.com/robert"));
        accounts::update(
            &mut tx,
            Actor::System,
            &common::user("bob@example.com"),
            &AccountPatch {
                username: Some(common::user("robert@example.com")),
                ..AccountPatch::default()
            },
            &e.opts(),
        )
        .await
        .unwrap();
        let r = root.display().to_string();
        let hostile = [
            format!("{r}/example.com/../../outside/victim"),
            outside.join("victim").display().to_string(),
            "../outside/victim".to_string(),
            format!("{r}/evil.com/victim"),
            format!("{r}/example.com"),
            r.clone(),
        ];
        for arg in &hostile {
            tx.exec(
                "INSERT INTO admin_mailboxoperation (mailbox_id, type, argument) VALUES (?, 'delete', ?)",
                modobox::args![None::<i32>, arg.as_str()],
            )
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
        let queued = count(store, "SELECT COUNT(*) FROM admin_mailboxoperation").await;
        assert_eq!(queued, 7);

        let (o, m) = jobs::execute("mailbox_operations", &e.ctx, false).await;
        assert_eq!(o, Outcome::Failed, "{m}");
        assert!(m.contains("the target already exists"), "{m}");
        assert!(m.contains("symbolic link"), "{m}");
        assert!(m.contains("outside the mail root"), "{m}");
        assert!(m.contains("contains `.` or `..`"), "{m}");
        assert!(m.contains("not a mailbox directory"), "{m}");
        // Everything kept: the rows, both homes of the refused rename, the outside tree.
        assert_eq!(
            count(store, "SELECT COUNT(*) FROM admin_mailboxoperation").await,
            queued
        );
        assert!(outside.join("victim/Maildir/cur/1.eml").exists());
        assert!(root.join("example.com/bob/Maildir/cur/1.eml").exists());
        assert!(root.join("example.com/robert/Maildir/cur/1.eml").exists());
        assert!(root.join("evil.com").is_symlink());
        assert_eq!(
            log_count(store, "CRITICAL", "Mailbox operation failed").await,
            7
        );
        assert_eq!(log_count(store, "INFO", "removed").await, 0);
        store.close().await;
    }
}

#[tokio::test]
async fn a_symlink_in_the_target_path_of_a_rename_is_refused() {
    let db = common::sqlite().await;
    let e = env(&db).await;
    let store = &e.ctx.store;
    let root = e.mail_root();
    let outside = e.root.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let mut tx = store.begin().await.unwrap();
    domain(&mut tx, "example.com", false, None).await;
    domain(&mut tx, "example.org", false, None).await;
    accounts::create(
        &mut tx,
        Actor::System,
        &spec("bob@example.com", Role::SimpleUsers, true),
        ROUNDS,
    )
    .await
    .unwrap();
    mkdir_with_mail(&root.join("example.com/bob"));
    // The new domain's directory is a link out of the mail root.
    std::os::unix::fs::symlink(&outside, root.join("example.org")).unwrap();
    accounts::update(
        &mut tx,
        Actor::System,
        &common::user("bob@example.com"),
        &AccountPatch {
            username: Some(common::user("bob@example.org")),
            ..AccountPatch::default()
        },
        &e.opts(),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let (o, m) = jobs::execute("mailbox_operations", &e.ctx, false).await;
    assert_eq!(o, Outcome::Failed, "{m}");
    assert!(m.contains("symbolic link"), "{m}");
    assert!(root.join("example.com/bob/Maildir/cur/1.eml").exists());
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    assert_eq!(
        count(store, "SELECT COUNT(*) FROM admin_mailboxoperation").await,
        1
    );
}

#[tokio::test]
async fn dkim_keys_are_made_once_per_domain_0600_for_opendkim() {
    for db in common::all().await {
        let e = env(&db).await;
        let store = &e.ctx.store;
        let dir = e.root.join("dkim");
        let mut tx = store.begin().await.unwrap();
        domain(&mut tx, "example.com", true, None).await;
        domain(&mut tx, "small.example", true, Some(1024)).await;
        domain(&mut tx, "nodkim.example", false, None).await;
        domain(&mut tx, "legacy.example", true, Some(1024)).await;
        tx.commit().await.unwrap();
        // A key left on disk by a run that stopped before recording it is kept.
        let kept = modobox::keys::dkim::generate_key(2048).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("small.example.pem"), &kept.private_pem).unwrap();

        let (o, m) = jobs::execute("dkim_keys", &e.ctx, true).await;
        assert_eq!(o, Outcome::Ok);
        assert!(
            m.contains("example.com (2048 bits)") && m.contains("small.example (1024 bits)"),
            "{m}"
        );
        assert!(!dir.join("example.com.pem").exists());

        let (o, m) = jobs::execute("dkim_keys", &e.ctx, false).await;
        assert_eq!(o, Outcome::Ok, "{:?}: {m}", db.backend);
        let mut tx = store.begin().await.unwrap();
        let all = domains::list(&mut tx, Actor::System, None, None)
            .await
            .unwrap();
        drop(tx);
        let by_name: BTreeMap<_, _> = all.iter().map(|d| (d.name.as_str(), d)).collect();
        let d = by_name["example.com"];
        let path = dir.join("example.com.pem");
        assert_eq!(d.dkim_private_key_path, path.display().to_string());
        let pem = std::fs::read_to_string(&path).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8 PEM");
        assert_eq!(modobox::keys::dkim::key_bits(&pem).unwrap(), 2048);
        assert_eq!(
            modobox::keys::dkim::public_from_private(&pem).unwrap(),
            d.dkim_public_key
        );
        assert!(!d.dkim_public_key.contains('\n'));
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        if let Some((uid, gid)) = modobox::system::fs::resolve_owner(
            &modobox::keys::dkim_files::opendkim_owner(&e.ctx.distro),
        ) {
            assert_eq!((meta.uid(), meta.gid()), (uid, gid));
        }
        assert_eq!(by_name["small.example"].dkim_public_key, kept.public_b64);
        let legacy = std::fs::read_to_string(dir.join("legacy.example.pem")).unwrap();
        assert_eq!(
            modobox::keys::dkim::key_bits(&legacy).unwrap(),
            1024,
            "dkim_key_length honoured"
        );
        assert!(by_name["nodkim.example"].dkim_public_key.is_empty());
        assert!(!dir.join("nodkim.example.pem").exists());
        // No temporary file left behind.
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(names.is_empty(), "{names:?}");
        if db.backend == Backend::Sqlite {
            let table = std::fs::read_to_string(dir.join("keytable")).unwrap();
            assert!(
                table.contains(&format!("example.com:modoboa:{}", path.display())),
                "{table}"
            );
            let signing = std::fs::read_to_string(dir.join("signingtable")).unwrap();
            assert!(signing.contains("*@small.example "), "{signing}");
        }

        // Second run: nothing to do, the key is unchanged.
        let (o, m) = jobs::execute("dkim_keys", &e.ctx, false).await;
        assert_eq!((o, m.as_str()), (Outcome::Ok, "no DKIM key to generate"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), pem);
        store.close().await;
    }
}

async fn insert_user_at(
    tx: &mut Tx,
    username: &str,
    superuser: bool,
    last_login: Option<DateTime<Utc>>,
) {
    let role = if superuser {
        Role::SuperAdmins
    } else {
        Role::SimpleUsers
    };
    let mailbox = username.contains('@') && !superuser;
    accounts::create(tx, Actor::System, &spec(username, role, mailbox), ROUNDS)
        .await
        .unwrap();
    tx.exec(
        "UPDATE core_user SET last_login = ? WHERE username = ?",
        modobox::args![last_login, username],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn inactive_accounts_are_disabled_or_deleted_never_logged_in_kept() {
    for db in common::all().await {
        let mut e = env(&db).await;
        let now = Utc::now();
        let old = Some(now - chrono::Duration::days(45));
        let recent = Some(now - chrono::Duration::days(3));
        let store = e.ctx.store.clone();
        let mut tx = store.begin().await.unwrap();
        domain(&mut tx, "example.com", false, None).await;
        insert_user_at(&mut tx, "old@example.com", false, old).await;
        insert_user_at(&mut tx, "old2@example.com", false, old).await;
        insert_user_at(&mut tx, "recent@example.com", false, recent).await;
        insert_user_at(&mut tx, "never@example.com", false, None).await;
        insert_user_at(&mut tx, "boss", true, old).await;
        tx.commit().await.unwrap();
        let active = "SELECT COUNT(*) FROM core_user WHERE is_active = true";
        let active = if db.backend == Backend::Sqlite {
            &active.replace("true", "1")
        } else {
            active
        };
        assert_eq!(count(&store, active).await, 5);

        let (o, m) = jobs::execute("inactive_accounts", &e.ctx, true).await;
        assert_eq!(o, Outcome::Ok);
        assert!(
            m.contains("would disable 2 accounts")
                && m.contains("old@example.com")
                && m.contains("old2@example.com"),
            "{m}"
        );
        assert_eq!(count(&store, active).await, 5);

        let (o, m) = jobs::execute("inactive_accounts", &e.ctx, false).await;
        assert_eq!(o, Outcome::Ok, "{m}");
        assert_eq!(count(&store, active).await, 3);
        let mut tx = store.begin().await.unwrap();
        for (user, is_active) in [
            ("old@example.com", false),
            ("recent@example.com", true),
            ("never@example.com", true),
            ("boss", true),
        ] {
            let a = accounts::get(&mut tx, Actor::System, &common::user(user))
                .await
                .unwrap();
            assert_eq!(a.is_active, is_active, "{user}");
        }
        drop(tx);
        assert_eq!(log_count(&store, "INFO", "disabled: no login").await, 2);
        // Already disabled: not counted again.
        let (_, m) = jobs::execute("inactive_accounts", &e.ctx, false).await;
        assert!(m.starts_with("no account"), "{m}");

        // The delete action removes the account and queues its mailbox directory.
        e.ctx.config.jobs.inactive_account_action = InactiveAction::Delete;
        let mut tx = store.begin().await.unwrap();
        tx.exec(
            "UPDATE core_user SET last_login = ? WHERE username = 'recent@example.com'",
            modobox::args![old],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let (o, m) = jobs::execute("inactive_accounts", &e.ctx, false).await;
        assert_eq!(o, Outcome::Ok, "{m}");
        assert!(m.starts_with("deleted 1 accounts"), "{m}");
        assert_eq!(
            count(
                &store,
                "SELECT COUNT(*) FROM core_user WHERE username = 'recent@example.com'"
            )
            .await,
            0
        );
        assert_eq!(
            count(
                &store,
                "SELECT COUNT(*) FROM admin_mailboxoperation WHERE type = 'delete'"
            )
            .await,
            1
        );
        store.close().await;
    }
}

#[tokio::test]
async fn cleanups_delete_only_what_is_old() {
    for db in common::all().await {
        let mut e = env(&db).await;
        e.ctx.config.jobs.log_max_age_days = 30;
        let store = e.ctx.store.clone();
        let now = Utc::now();
        let days = |n: i64| now - chrono::Duration::days(n);
        let mut tx = store.begin().await.unwrap();
        insert_user_at(&mut tx, "boss", true, None).await;
        let uid = tx
            .row("SELECT id FROM core_user WHERE username = 'boss'", &[])
            .await
            .unwrap()
            .unwrap()
            .i32("id")
            .unwrap();
        for (id, expires) in [
            ("s-expired", now - chrono::Duration::minutes(1)),
            ("s-live", now + chrono::Duration::hours(1)),
        ] {
            tx.exec(
                "INSERT INTO modobox_session (id, user_id, csrf_token, created_at, expires_at) VALUES (?, ?, 'x', ?, ?)",
                modobox::args![id, uid, days(1), expires],
            )
            .await
            .unwrap();
        }
        tx.exec("DELETE FROM core_log", &[]).await.unwrap();
        for (msg, when) in [("old line", days(31)), ("new line", days(29))] {
            tx.exec(
                "INSERT INTO core_log (date_created, message, level, logger) VALUES (?, ?, 'INFO', 'modoboa.admin')",
                modobox::args![when, msg],
            )
            .await
            .unwrap();
        }
        // Amavis quarantine: one message 20 days old, one 2 days old.
        let blob = if db.backend == Backend::Postgres {
            "convert_to(?, 'UTF8')"
        } else {
            "?"
        };
        tx.exec(
            &format!("INSERT INTO maddr (partition_tag, email, domain) VALUES (0, {blob}, 'example.com')"),
            modobox::args!["a@example.com"],
        )
        .await
        .unwrap();
        let sid = tx.count("SELECT id FROM maddr", &[]).await.unwrap();
        for (mail_id, age) in [("oldmail", 20), ("newmail", 2)] {
            tx.exec(
                &format!(
                    "INSERT INTO msgs (partition_tag, mail_id, secret_id, am_id, time_num, time_iso, sid, size, host) \
                     VALUES (0, {blob}, {blob}, 'am', ?, ?, ?, 10, 'mx')"
                ),
                modobox::args![mail_id, "s", days(age).timestamp(), days(age), sid],
            )
            .await
            .unwrap();
            tx.exec(
                &format!("INSERT INTO msgrcpt (partition_tag, mail_id, rseqnum, rid, ds, rs) VALUES (0, {blob}, 1, ?, 'P', ' ')"),
                modobox::args![mail_id, sid],
            )
            .await
            .unwrap();
            tx.exec(
                &format!("INSERT INTO quarantine (partition_tag, mail_id, chunk_ind, mail_text) VALUES (0, {blob}, 1, {blob})"),
                modobox::args![mail_id, "Subject: x\n\nbody"],
            )
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();

        for (job, expect) in [
            ("clearsessions", "would delete 1 expired sessions"),
            ("cleanlogs", "would delete 1 log lines older than 30 days"),
            (
                "quarantine_cleanup",
                "would delete 1 messages older than 14 days (1 recipients, 1 quarantine chunks",
            ),
        ] {
            let (o, m) = jobs::execute(job, &e.ctx, true).await;
            assert_eq!(o, Outcome::Ok, "{job}: {m}");
            assert!(m.starts_with(expect), "{job}: {m}");
        }
        assert_eq!(count(&store, "SELECT COUNT(*) FROM msgs").await, 2);
        for (job, expect) in [
            ("clearsessions", "deleted 1 expired sessions"),
            ("cleanlogs", "deleted 1 log lines"),
            ("quarantine_cleanup", "deleted 1 messages older than 14 days (1 recipients, 1 quarantine chunks, 0 unused addresses)"),
        ] {
            let (o, m) = jobs::execute(job, &e.ctx, false).await;
            assert_eq!(o, Outcome::Ok, "{:?} {job}: {m}", db.backend);
            assert!(m.starts_with(expect), "{job}: {m}");
        }
        let mut tx = store.begin().await.unwrap();
        let left = tx
            .rows("SELECT id FROM modobox_session", &[])
            .await
            .unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].text("id").unwrap(), "s-live");
        let logs = tx.rows("SELECT message FROM core_log", &[]).await.unwrap();
        assert_eq!(
            logs.iter()
                .map(|r| r.text("message").unwrap())
                .collect::<Vec<_>>(),
            ["new line"]
        );
        drop(tx);
        assert_eq!(count(&store, "SELECT COUNT(*) FROM msgs").await, 1);
        assert_eq!(count(&store, "SELECT COUNT(*) FROM msgrcpt").await, 1);
        assert_eq!(count(&store, "SELECT COUNT(*) FROM quarantine").await, 1);
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM maddr").await,
            1,
            "still used"
        );
        // Re-runs find nothing more.
        let (_, m) = jobs::execute("quarantine_cleanup", &e.ctx, false).await;
        assert!(m.starts_with("deleted 0 messages"), "{m}");
        store.close().await;
    }
}

#[tokio::test]
async fn new_accounts_of_the_previous_hour_go_into_the_rrd() {
    if !modobox::system::cmd::exists("rrdtool") {
        assert!(std::env::var("CI").is_err(), "rrdtool is required under CI");
        eprintln!("rrdtool not installed: skipping");
        return;
    }
    for db in common::all().await {
        let e = env(&db).await;
        let store = &e.ctx.store;
        let (start, _) = jobs::new_accounts_statistics::previous_hour(Utc::now());
        let mut tx = store.begin().await.unwrap();
        for (u, joined) in [
            ("a", start + chrono::Duration::minutes(5)),
            ("b", start + chrono::Duration::minutes(50)),
            ("c", start - chrono::Duration::minutes(1)),
        ] {
            insert_user_at(&mut tx, u, true, None).await;
            tx.exec(
                "UPDATE core_user SET date_joined = ? WHERE username = ?",
                modobox::args![joined, u],
            )
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
        // A file in modobox's earlier layout is set aside and the history rebuilt from the
        // accounts' creation dates, in Modoboa's layout and scale.
        let file = e.root.join("rrd/new_accounts.rrd");
        std::fs::create_dir_all(e.root.join("rrd")).unwrap();
        let old = std::process::Command::new("rrdtool")
            .arg("create")
            .arg(&file)
            .args([
                "--step",
                "3600",
                "DS:new_accounts:ABSOLUTE:7200:0:U",
                "RRA:AVERAGE:0.5:1:744",
                "RRA:MAX:0.5:1:744",
            ])
            .status()
            .unwrap();
        assert!(old.success());
        let (o, m) = jobs::execute("new_accounts_statistics", &e.ctx, false).await;
        assert_eq!(o, Outcome::Ok, "{m}");
        assert!(
            m.starts_with("2 new accounts in the last hour recorded"),
            "{m}"
        );
        assert!(
            m.contains("(3 in 2 hour(s) up to") && m.ends_with(", file rebuilt)"),
            "{m}"
        );
        assert!(e.root.join("rrd/new_accounts.rrd.old-layout").exists());
        let info = std::process::Command::new("rrdtool")
            .arg("info")
            .arg(&file)
            .output()
            .unwrap();
        let info = String::from_utf8_lossy(&info.stdout);
        assert!(info.contains("step = 3600"), "{info}");
        assert!(
            info.contains("ds[new_accounts].type = \"ABSOLUTE\""),
            "{info}"
        );
        for (i, (per_row, rows)) in [(1, 48), (24, 31), (168, 52), (5208, 24)]
            .iter()
            .enumerate()
        {
            assert!(
                info.contains(&format!("rra[{i}].pdp_per_row = {per_row}\n")),
                "{info}"
            );
            assert!(
                info.contains(&format!("rra[{i}].rows = {rows}\n")),
                "{info}"
            );
            assert!(
                info.contains(&format!("rra[{i}].cf = \"AVERAGE\"")),
                "{info}"
            );
        }
        assert!(!info.contains("rra[4]"), "{info}");
        let last = std::process::Command::new("rrdtool")
            .arg("lastupdate")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            // Modoboa's scale: the hour's count times 60.
            String::from_utf8_lossy(&last.stdout)
                .trim_end()
                .ends_with(": 120"),
            "{}",
            String::from_utf8_lossy(&last.stdout)
        );
        // The same hour again is not added twice.
        let (o, m) = jobs::execute("new_accounts_statistics", &e.ctx, false).await;
        assert_eq!(o, Outcome::Ok, "{m}");
        assert!(m.contains("already recorded"), "{m}");
        store.close().await;
    }
}

#[tokio::test]
async fn logparser_fills_the_rrd_files_and_unknown_jobs_fail() {
    let db = common::sqlite().await;
    let e = env(&db).await;
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/stats/mail.log");
    std::fs::copy(fixture, e.root.join("mail.log")).unwrap();
    let mut tx = e.ctx.store.begin().await.unwrap();
    domain(&mut tx, "example.test", false, None).await;
    tx.commit().await.unwrap();
    let (o, m) = jobs::execute("logparser", &e.ctx, false).await;
    assert_eq!(o, Outcome::Ok, "{m}");
    assert!(e.root.join("rrd/global.rrd").exists(), "{m}");
    assert!(e.root.join("rrd/example.test.rrd").exists(), "{m}");
    let (o, m) = jobs::execute("nope", &e.ctx, false).await;
    assert_eq!(o, Outcome::Failed);
    assert!(
        m.contains("mailbox_operations") && m.contains("quarantine_cleanup"),
        "{m}"
    );
    let (o, _) = jobs::execute("check_mx", &e.ctx, true).await;
    assert_eq!(o, Outcome::Failed, "no dry run for check_mx");
}

// ---- the scheduler ----

fn every_second() -> Cron {
    Cron::new("* * * * * *")
        .with_seconds_optional()
        .parse()
        .unwrap()
}

fn entry(name: &str, timeout: Duration) -> Entry {
    Entry {
        name: name.into(),
        cron: every_second(),
        timeout,
    }
}

/// A runner that counts its runs, tracks how many overlap, and takes `work` each time.
struct Probe {
    runs: AtomicUsize,
    now: AtomicUsize,
    max: AtomicUsize,
}

struct Running(Arc<Probe>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

fn probe_runner(work: Duration) -> (Arc<Probe>, Runner) {
    let p = Arc::new(Probe {
        runs: AtomicUsize::new(0),
        now: AtomicUsize::new(0),
        max: AtomicUsize::new(0),
    });
    let q = p.clone();
    let runner: Runner = Arc::new(move |_name: String| {
        let q = q.clone();
        Box::pin(async move {
            q.runs.fetch_add(1, Ordering::SeqCst);
            let n = q.now.fetch_add(1, Ordering::SeqCst) + 1;
            q.max.fetch_max(n, Ordering::SeqCst);
            // Counted down when the future ends or is dropped (an aborted run).
            let _running = Running(q.clone());
            tokio::time::sleep(work).await;
            (Outcome::Ok, "done".to_string())
        })
    });
    (p, runner)
}

async fn runs_of(store: &Store, task: &str) -> Vec<tasks::Run> {
    let mut r = tasks::runs(store, task, 1000).await.unwrap();
    r.reverse();
    r
}

/// One run outside the schedule (no slot), as node n1.
async fn run_by_hand(
    store: &Store,
    name: &str,
    timeout: Duration,
    runner: &Runner,
) -> scheduler::Report {
    scheduler::run_locked(store, "n1", name, None, timeout, runner).await
}

#[tokio::test]
async fn a_run_over_its_timeout_is_stopped_and_recorded() {
    let db = common::sqlite().await;
    let e = env(&db).await;
    let store = &e.ctx.store;
    let (p, runner) = probe_runner(Duration::from_secs(30));
    let t = Instant::now();
    let r = run_by_hand(store, "slowjob", Duration::from_millis(200), &runner).await;
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(r.outcome, Outcome::Timeout);
    assert!(r.recorded);
    let runs = runs_of(store, "slowjob").await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].outcome, "timeout");
    assert!(runs[0].finished_at.is_some());
    // The abandoned job was stopped, not left running.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(p.now.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_lock_and_the_slot_let_one_runner_through() {
    for db in common::all().await {
        let e = env(&db).await;
        let store = &e.ctx.store;
        let (p, runner) = probe_runner(Duration::from_millis(1));
        // Held elsewhere (another node, another process): skipped, nothing recorded.
        let other = db.connect().await;
        let held = JobLock::try_acquire(&other, "job1")
            .await
            .unwrap()
            .expect("free lock");
        assert!(
            JobLock::try_acquire(&other, "job1")
                .await
                .unwrap()
                .is_none(),
            "{:?}",
            db.backend
        );
        let r = run_by_hand(store, "job1", Duration::from_secs(5), &runner).await;
        assert_eq!(r.outcome, Outcome::Skipped, "{:?}", db.backend);
        assert!(!r.recorded);
        // Another job's lock is independent.
        let r = run_by_hand(store, "job2", Duration::from_secs(5), &runner).await;
        assert_eq!(r.outcome, Outcome::Ok);
        held.release().await;
        let slot = Utc::now();
        let r = scheduler::run_locked(
            store,
            "n1",
            "job1",
            Some(slot),
            Duration::from_secs(5),
            &runner,
        )
        .await;
        assert_eq!((r.outcome, r.recorded), (Outcome::Ok, true));
        // The same slot a second time (another node whose clock is a little behind): skipped.
        let r = scheduler::run_locked(
            &other,
            "n2",
            "job1",
            Some(slot),
            Duration::from_secs(5),
            &runner,
        )
        .await;
        assert_eq!(
            (r.outcome, r.recorded),
            (Outcome::Skipped, false),
            "{}",
            r.message
        );
        assert_eq!(p.runs.load(Ordering::SeqCst), 2);
        let runs = runs_of(store, "job1").await;
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].node, "n1");
        assert_eq!(runs[0].outcome, "ok");
        other.close().await;
        store.close().await;
    }
}

async fn run_schedulers(
    stores: &[Store],
    entries: Vec<Entry>,
    runner: &Runner,
    for_how_long: Duration,
) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut handles = Vec::new();
    for (i, s) in stores.iter().enumerate() {
        let sched = Scheduler::new(
            s.clone(),
            format!("node-{i}"),
            entries.clone(),
            runner.clone(),
        );
        handles.push(tokio::spawn(sched.run(rx.clone())));
    }
    tokio::time::sleep(for_how_long).await;
    tx.send(true).unwrap();
    for h in handles {
        tokio::time::timeout(Duration::from_secs(10), h)
            .await
            .expect("scheduler stops")
            .unwrap();
    }
}

#[tokio::test]
async fn a_job_still_running_at_its_next_slot_is_skipped_not_doubled() {
    let db = common::sqlite().await;
    let e = env(&db).await;
    let store = e.ctx.store.clone();
    let (p, runner) = probe_runner(Duration::from_millis(2300));
    run_schedulers(
        std::slice::from_ref(&store),
        vec![entry("slow", Duration::from_secs(60))],
        &runner,
        Duration::from_millis(3500),
    )
    .await;
    assert_eq!(p.max.load(Ordering::SeqCst), 1, "never two at once");
    let runs = runs_of(&store, "slow").await;
    let skipped = runs.iter().filter(|r| r.outcome == "skipped").count();
    assert!(skipped >= 1, "{runs:?}");
    assert!(runs
        .iter()
        .filter(|r| r.outcome == "skipped")
        .all(|r| r.message.contains("still going")));
    assert_eq!(
        runs.iter().filter(|r| r.outcome != "skipped").count(),
        p.runs.load(Ordering::SeqCst)
    );
}

/// Two schedulers (two pools, two node names) on one database: every slot of every job runs
/// exactly once, none is missed, and the runs are spread over both nodes' attempts.
async fn each_slot_runs_once(db: &common::TestDb) {
    let e = env(db).await;
    let a = e.ctx.store.clone();
    let b = db.connect().await;
    let (p, probe) = probe_runner(Duration::from_millis(150));
    // One real job through the registry too (clearsessions), counted by the probe's runner.
    let ctx = Arc::new(e.ctx.clone());
    let real = scheduler::registry_runner(ctx);
    let runner: Runner = Arc::new(move |name: String| {
        if name == "clearsessions" {
            real(name)
        } else {
            probe(name)
        }
    });
    let entries = vec![
        entry("alpha", Duration::from_secs(30)),
        entry("beta", Duration::from_secs(30)),
        entry("clearsessions", Duration::from_secs(30)),
    ];
    run_schedulers(
        &[a.clone(), b.clone()],
        entries,
        &runner,
        Duration::from_millis(4200),
    )
    .await;
    for task in ["alpha", "beta", "clearsessions"] {
        let runs = runs_of(&a, task).await;
        let mut slots: Vec<DateTime<Utc>> = runs.iter().filter_map(|r| r.slot).collect();
        assert!(
            runs.iter().all(|r| r.outcome == "ok" && r.slot.is_some()),
            "{:?} {task}: {runs:?}",
            db.backend
        );
        slots.sort();
        let n = slots.len();
        slots.dedup();
        assert_eq!(
            slots.len(),
            n,
            "{:?} {task}: a slot ran twice: {runs:?}",
            db.backend
        );
        assert!(
            n >= 4,
            "{:?} {task}: only {n} slots in 4.2 s: {runs:#?}",
            db.backend
        );
        for w in slots.windows(2) {
            assert_eq!(
                (w[1] - w[0]).num_seconds(),
                1,
                "{:?} {task}: a slot was missed: {slots:?}",
                db.backend
            );
        }
    }
    let probe_rows = runs_of(&a, "alpha").await.len() + runs_of(&a, "beta").await.len();
    assert_eq!(
        p.runs.load(Ordering::SeqCst),
        probe_rows,
        "each recorded run ran once, nothing ran unrecorded"
    );
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn two_schedulers_on_one_postgresql_run_each_slot_once() {
    let Some(db) = common::postgres().await else {
        return;
    };
    each_slot_runs_once(&db).await;
}

#[tokio::test]
async fn two_schedulers_on_one_mariadb_run_each_slot_once() {
    let Some(db) = common::mysql().await else {
        return;
    };
    each_slot_runs_once(&db).await;
}

#[tokio::test]
async fn two_schedulers_on_one_sqlite_file_run_each_slot_once() {
    let db = common::sqlite().await;
    each_slot_runs_once(&db).await;
}

#[tokio::test]
async fn a_missed_slot_is_caught_up_once_at_start() {
    let db = common::sqlite().await;
    let e = env(&db).await;
    let store = e.ctx.store.clone();
    let (p, runner) = probe_runner(Duration::from_millis(1));
    // Daily at 00:00 UTC and never run: one catch-up run for the last midnight, not one per
    // missed day.
    let daily = Entry {
        name: "daily".into(),
        cron: Cron::new("0 0 * * *").parse().unwrap(),
        timeout: Duration::from_secs(5),
    };
    run_schedulers(
        std::slice::from_ref(&store),
        vec![daily.clone()],
        &runner,
        Duration::from_millis(400),
    )
    .await;
    let runs = runs_of(&store, "daily").await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    let midnight = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    assert_eq!(runs[0].slot, Some(midnight));
    // Started again the same day: that slot has run, no second catch-up.
    run_schedulers(
        std::slice::from_ref(&store),
        vec![daily],
        &runner,
        Duration::from_millis(400),
    )
    .await;
    assert_eq!(runs_of(&store, "daily").await.len(), 1);
    assert_eq!(p.runs.load(Ordering::SeqCst), 1);
}

// ---- the commands ----

fn modobox(config: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_modobox"))
        .args(["--distro", "debian:12"])
        .args(args)
        .env("MODOBOX_CONFIG", config)
        .env_remove("MODOBOX_DATABASE_URL")
        .output()
        .unwrap()
}

/// A configuration with every path (SQLite database included) inside `dir`.
fn sqlite_config(dir: &Path) -> PathBuf {
    let d = dir.display().to_string();
    let config = dir.join("modobox.toml");
    std::fs::write(
        &config,
        format!(
            "hostname = \"mail.example.com\"\n[database]\nengine = \"sqlite\"\nsqlite_path = \"{d}/m.db\"\n\
             [paths]\nmail_root = \"{d}/vmail\"\ndkim_keys = \"{d}/dkim\"\nrrd = \"{d}/rrd\"\n\
             data = \"{d}/data\"\nsecrets = \"{d}/secrets.toml\"\n\
             [stats]\nlog_file = \"{d}/mail.log\"\njournal = false\n"
        ),
    )
    .unwrap();
    config
}

#[test]
fn task_list_and_task_run_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let config = sqlite_config(dir.path());
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let o = modobox(&config, &["db", "migrate"]);
    assert!(o.status.success(), "{}", text(&o));

    let o = modobox(&config, &["task", "list"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    for name in jobs::names() {
        assert!(out.contains(name), "{name} missing:\n{out}");
    }
    assert!(
        out.contains("*/30 * * * *") && out.contains("never"),
        "{out}"
    );

    let o = modobox(&config, &["task", "run", "cleanlogs"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).starts_with("cleanlogs: ok: deleted 0 log lines"),
        "{}",
        text(&o)
    );

    // A dry run is not recorded; logparser reads its log (a missing log is a failure, exit 1),
    // an unknown job is refused with the list of jobs, and a job without a dry run says so.
    let o = modobox(&config, &["task", "run", "inactive_accounts", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = modobox(&config, &["task", "run", "logparser"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/stats/mail.log"),
        dir.path().join("mail.log"),
    )
    .unwrap();
    let o = modobox(&config, &["task", "run", "logparser"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = modobox(&config, &["task", "run", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("mailbox_operations, dkim_keys"),
        "{}",
        text(&o)
    );
    let o = modobox(&config, &["task", "run", "check_mx", "--dry-run"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("check_mx has no --dry-run"),
        "{}",
        text(&o)
    );

    let o = modobox(&config, &["task", "list", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let line = |job: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|l| l["job"] == job)
            .unwrap()
            .clone()
    };
    assert_eq!(line("cleanlogs")["last_run"]["outcome"], "ok");
    assert!(line("cleanlogs")["last_run"]["finished_at"].is_string());
    assert!(line("cleanlogs")["next_run"].is_string());
    assert_eq!(line("logparser")["last_run"]["outcome"], "ok");
    assert!(
        line("inactive_accounts")["last_run"].is_null(),
        "dry runs are not recorded"
    );
}

// ---- a process per scheduled run (jobs::process) ----

fn job_command(program: PathBuf, config: &Path) -> JobCommand {
    JobCommand {
        program,
        args: vec![
            "--config".into(),
            config.into(),
            "--distro".into(),
            "debian:12".into(),
        ],
        envs: Vec::new(),
    }
}

/// A stand-in for modobox: a shell script that ignores its arguments.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn running(pid: i32) -> bool {
    // A zombie has ended; only the reaping is left.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn each_scheduled_run_is_a_process_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let config = sqlite_config(dir.path());
    for args in [&["db", "migrate"][..], &["domain", "add", "example.test"]] {
        let o = modobox(&config, args);
        assert!(o.status.success(), "{o:?}");
    }
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/stats/mail.log"),
        dir.path().join("mail.log"),
    )
    .unwrap();
    // The scheduler's own records (lock, run) live in another database than the job's.
    let db = common::sqlite().await;
    let e = env(&db).await;
    let store = &e.ctx.store;
    let real = process_runner(job_command(env!("CARGO_BIN_EXE_modobox").into(), &config));
    let r = run_by_hand(store, "logparser", Duration::from_secs(60), &real).await;
    assert_eq!(r.outcome, Outcome::Ok, "{}", r.message);
    assert!(r.recorded);
    // The child did the work: the RRD files of the log's domains are there.
    assert!(
        std::fs::read_dir(dir.path().join("rrd")).unwrap().any(|f| f
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".rrd")),
        "no RRD file written by the job's process"
    );
    let r = run_by_hand(store, "nope", Duration::from_secs(60), &real).await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(r.message.contains("unknown job \"nope\""), "{}", r.message);

    // A run over its timeout is killed, not abandoned while it goes on.
    let pidfile = dir.path().join("job.pid");
    let slow = script(
        dir.path(),
        "slow",
        &format!("echo $$ > {}; exec sleep 60", pidfile.display()),
    );
    let t = Instant::now();
    let r = run_by_hand(
        store,
        "slowjob",
        Duration::from_millis(700),
        &process_runner(job_command(slow, &config)),
    )
    .await;
    assert_eq!(r.outcome, Outcome::Timeout);
    assert!(t.elapsed() < Duration::from_secs(5));
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let t = Instant::now();
    while running(pid) && t.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !running(pid),
        "the timed-out job's process {pid} still runs"
    );
    assert_eq!(runs_of(store, "slowjob").await[0].outcome, "timeout");

    // A process that dies or answers nonsense is a failed run saying so; a reported outcome
    // is taken as it is.
    let cases = [
        ("crash", "kill -9 $$", Outcome::Failed, "killed by signal 9"),
        (
            "garbage",
            "echo '{not json'; exit 3",
            Outcome::Failed,
            "exited with code 3 without a result",
        ),
        (
            "skips",
            "echo 'log line'; echo '{\"outcome\":\"skipped\",\"message\":\"nothing to do\"}'",
            Outcome::Skipped,
            "nothing to do",
        ),
    ];
    for (name, body, outcome, message) in cases {
        let program = script(dir.path(), name, body);
        let r = run_by_hand(
            store,
            name,
            Duration::from_secs(10),
            &process_runner(job_command(program, &config)),
        )
        .await;
        assert_eq!(r.outcome, outcome, "{name}: {}", r.message);
        assert!(r.message.contains(message), "{name}: {}", r.message);
    }
    let missing = job_command(dir.path().join("missing"), &config);
    let r = run_by_hand(
        store,
        "x",
        Duration::from_secs(10),
        &process_runner(missing),
    )
    .await;
    assert_eq!(r.outcome, Outcome::Failed);
    assert!(
        r.message.contains("starting the job's process"),
        "{}",
        r.message
    );
}

/// While an upgrade holds the lock with the maintenance flag set, every slot is skipped
/// ("paused"); once the lock is released, jobs run again (a killed upgrade cannot leave them
/// paused).
#[tokio::test]
async fn jobs_pause_while_an_upgrade_holds_maintenance() {
    let db = common::sqlite().await;
    let e = env(&db).await;
    let store = e.ctx.store.clone();
    let data = tempfile::tempdir().unwrap();
    let lock = modobox::system::maintenance::try_lock(data.path())
        .unwrap()
        .unwrap();
    modobox::system::maintenance::enter(data.path(), "upgrading to 9.9.9").unwrap();
    let (p, runner) = probe_runner(Duration::from_millis(10));
    let run_for = |how_long: Duration| {
        let (store, runner, data) = (store.clone(), runner.clone(), data.path().to_path_buf());
        async move {
            let (tx, rx) = tokio::sync::watch::channel(false);
            let sched = Scheduler::pausing(
                store,
                "node-0".into(),
                vec![entry("paused", Duration::from_secs(60))],
                runner,
                Some(data),
            );
            let h = tokio::spawn(sched.run(rx));
            tokio::time::sleep(how_long).await;
            tx.send(true).unwrap();
            h.await.unwrap();
        }
    };
    run_for(Duration::from_millis(2500)).await;
    assert_eq!(
        p.runs.load(Ordering::SeqCst),
        0,
        "nothing ran during maintenance"
    );
    let runs = runs_of(&store, "paused").await;
    assert!(!runs.is_empty());
    assert!(
        runs.iter()
            .all(|r| r.outcome == "skipped" && r.message.contains("upgrading to 9.9.9")),
        "{runs:?}"
    );
    drop(lock);
    run_for(Duration::from_millis(2500)).await;
    assert!(
        p.runs.load(Ordering::SeqCst) >= 1,
        "jobs run again once the lock is gone"
    );
}
