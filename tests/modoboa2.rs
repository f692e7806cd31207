//! Adoption of a real Modoboa 2.x database (issue 20), on the three engines: the database is
//! made by Modoboa 2.12 itself (installed from PyPI by tests/modoboa2/setup, migrated by its
//! own `manage.py migrate`, filled through its own REST API by tests/modoboa2/populate.py),
//! then adopted by modobox, written to and deleted from by modobox — and Modoboa must still
//! start on it afterwards (`manage.py check`, every migration applied) and read what modobox
//! wrote.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use modobox::store::access::{Actor, Role};
use modobox::store::accounts::{self, AccountSpec, Options, Password};
use modobox::store::aliases::{self, AliasAddress, AliasSpec};
use modobox::store::domains::{self, DomainPatch, DomainSpec, Relay};
use modobox::store::modoboa_settings::{self, Outcome};
use modobox::store::{migrate, transfer, Backend};

const ROUNDS: modobox::password::HashPolicy = modobox::password::HashPolicy::sha512_crypt(5000);

fn dom(n: &str) -> modobox::names::DomainName {
    modobox::names::DomainName::parse("domain", n).unwrap()
}

fn opts() -> Options {
    Options {
        mail_root: PathBuf::from("/srv/vmail"),
        handle_mailboxes_on_filesystem: false,
    }
}

/// Modoboa's virtualenv and project (cached between runs), and a private Redis for this test.
struct Modoboa {
    dir: PathBuf,
    tmp: tempfile::TempDir,
    redis: Child,
}

impl Drop for Modoboa {
    fn drop(&mut self) {
        let _ = self.redis.kill();
        let _ = self.redis.wait();
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl Modoboa {
    /// None (skipped, said why) outside CI when Modoboa cannot be set up here; in CI a failure.
    fn start() -> Option<Modoboa> {
        let dir = PathBuf::from(
            std::env::var("MODOBOX_MODOBOA_DIR")
                .unwrap_or_else(|_| "/var/cache/modobox-tests/modoboa".into()),
        );
        let out = Command::new(repo().join("tests/modoboa2/setup"))
            .arg(&dir)
            .output()
            .expect("running tests/modoboa2/setup");
        if !out.status.success() {
            let why = format!(
                "tests/modoboa2/setup failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(std::env::var("CI").is_err(), "{why}");
            eprintln!("skipped: {why}");
            return None;
        }
        let tmp = tempfile::tempdir().unwrap();
        let sock = tmp.path().join("redis.sock");
        let redis = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--save",
                "",
                "--appendonly",
                "no",
                "--unixsocket",
            ])
            .arg(&sock)
            .arg("--dir")
            .arg(tmp.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (tests/setup-host installs it)");
        for _ in 0..100 {
            if sock.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(sock.exists(), "redis-server did not open its socket");
        Some(Modoboa { dir, tmp, redis })
    }

    fn redis_url(&self, db: u32) -> String {
        format!(
            "unix://{}?db={db}",
            self.tmp.path().join("redis.sock").display()
        )
    }

    /// Modoboa's Python with the test's settings for `db`.
    fn python(&self, db: &common::TestDb, redis_db: u32) -> Command {
        let mut c = Command::new(self.dir.join("venv/bin/python"));
        let dkim = self.tmp.path().join(format!("dkim-{redis_db}"));
        std::fs::create_dir_all(&dkim).unwrap();
        c.env("DJANGO_SETTINGS_MODULE", "settings")
            .env(
                "PYTHONPATH",
                format!(
                    "{}:{}",
                    repo().join("tests/modoboa2").display(),
                    self.dir.join("project").display()
                ),
            )
            .env("MODOBOA_TEST_DATABASE_URL", django_url(db))
            .env("MODOBOA_TEST_REDIS_URL", self.redis_url(redis_db))
            .env("MODOBOA_TEST_DKIM_DIR", dkim)
            .current_dir(self.dir.join("project"));
        c
    }

    /// `manage.py ARGS...`: (standard output, both outputs); a failure fails the test with
    /// what it said.
    fn run_manage(&self, db: &common::TestDb, redis_db: u32, args: &[&str]) -> (String, String) {
        let out = self
            .python(db, redis_db)
            .arg("manage.py")
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let text = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(
            out.status.success(),
            "{:?}: manage.py {args:?}: {text}",
            db.backend
        );
        (stdout, text)
    }

    /// `manage.py ARGS...`: all it said.
    fn manage(&self, db: &common::TestDb, redis_db: u32, args: &[&str]) -> String {
        self.run_manage(db, redis_db, args).1
    }

    /// `manage.py ARGS...`'s standard output alone (an export).
    fn manage_stdout(&self, db: &common::TestDb, redis_db: u32, args: &[&str]) -> String {
        self.run_manage(db, redis_db, args).0
    }

    /// A new Modoboa database as an admin would make it: Modoboa's migrations, its initial
    /// data, then tests/modoboa2/populate.py. What the script printed last (tokens, password).
    fn populate(&self, db: &common::TestDb, redis_db: u32) -> serde_json::Value {
        self.manage(db, redis_db, &["migrate", "--noinput"]);
        self.manage(
            db,
            redis_db,
            &[
                "load_initial_data",
                "--no-frontend",
                "--admin-username",
                "admin",
            ],
        );
        let populated = self.script(db, redis_db, &repo().join("tests/modoboa2/populate.py"));
        serde_json::from_str(populated.lines().last().unwrap()).unwrap()
    }

    /// A Python script (which sets Django up itself): its standard output.
    fn script(&self, db: &common::TestDb, redis_db: u32, path: &Path) -> String {
        self.script_with(db, redis_db, path, &[])
    }

    /// `script` with arguments.
    fn script_with(
        &self,
        db: &common::TestDb,
        redis_db: u32,
        path: &Path,
        args: &[&Path],
    ) -> String {
        let out = self
            .python(db, redis_db)
            .arg(path)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{:?}: {}: {}{}",
            db.backend,
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A function asking modobox's policy service (served on a free port over `store`) what it
/// answers a submission by `login` at `state` with `recipients` recipients: the action.
async fn sending_limits_answer(
    store: &modobox::store::Store,
) -> impl Fn(
    &'static str,
    &'static str,
    u32,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = String>>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(modobox::policy::serve(
        listener,
        store.clone(),
        std::future::pending(),
    ));
    move |login, state, recipients| {
        Box::pin(async move {
            use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let sasl = if login.is_empty() {
                String::new()
            } else {
                format!("sasl_username={login}\n")
            };
            s.write_all(
                format!(
                    "request=smtpd_access_policy\nprotocol_state={state}\nprotocol_name=ESMTP\n{sasl}recipient_count={recipients}\nrecipient=x@elsewhere.test\n\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
            let mut r = tokio::io::BufReader::new(s);
            let mut line = String::new();
            r.read_line(&mut line).await.unwrap();
            let mut end = String::new();
            r.read_line(&mut end).await.unwrap();
            assert_eq!(end, "\n");
            line.trim_end()
                .strip_prefix("action=")
                .unwrap_or_else(|| panic!("{line}"))
                .to_string()
        })
    }
}

/// The test database's URL as dj-database-url reads it.
fn django_url(db: &common::TestDb) -> String {
    match db.backend {
        // Four slashes: an absolute path.
        Backend::Sqlite => format!("sqlite:///{}", db.name),
        _ => db.raw_url.clone(),
    }
}

/// Modoboa's tables whose rows modobox must not touch when it adopts.
const MODOBOA_TABLES: &[&str] = &[
    "core_user",
    "admin_domain",
    "admin_domainalias",
    "admin_mailbox",
    "admin_alias",
    "modoboa_admin_aliasrecipient",
    "admin_senderaddress",
    "transport_transport",
    "django_migrations",
    "authtoken_token",
];

#[tokio::test]
async fn a_modoboa_2_database_is_adopted_written_and_given_back() {
    let Some(modoboa) = Modoboa::start() else {
        return;
    };
    for (n, db) in common::all().await.into_iter().enumerate() {
        let redis_db = n as u32;
        let t0 = std::time::Instant::now();
        let summary = modoboa.populate(&db, redis_db);
        let password = summary["password"].as_str().unwrap().to_string();
        eprintln!(
            "{:?}: Modoboa 2.12 database made and filled in {:.0} s",
            db.backend,
            t0.elapsed().as_secs_f64()
        );

        // Modoboa's own CSV files (`modo export`) import into an empty modobox as they are:
        // the `'`-escaped catch-all, the forward, the hashes Modoboa wrote (and Dovecot reads).
        let domains_csv = modoboa.manage_stdout(&db, redis_db, &["modo", "export", "domains"]);
        let identities_csv =
            modoboa.manage_stdout(&db, redis_db, &["modo", "export", "identities"]);
        assert!(
            identities_csv.contains("alias;'@example.net;"),
            "{identities_csv}"
        );
        let empty = common::sqlite().await;
        let other = empty.connect().await;
        migrate::migrate(&other).await.unwrap();
        for csv in [&domains_csv, &identities_csv] {
            transfer::import(
                &other,
                Actor::System,
                csv.as_bytes(),
                &transfer::ImportOptions::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("{:?}: {e}\n{csv}", db.backend));
        }
        let mut tx = other.begin().await.unwrap();
        for user in [
            "alice@example.org",
            "bob@example.org",
            "carol@example.org",
            "dave@example.net",
            "admin@example.org",
        ] {
            assert!(
                accounts::authenticate(&mut tx, user, &password)
                    .await
                    .unwrap()
                    .is_some(),
                "{:?}: {user} imported from Modoboa's export",
                db.backend
            );
        }
        aliases::get(&mut tx, Actor::System, &common::alias("@example.net"))
            .await
            .unwrap();
        drop(tx);
        other.close().await;

        // The check: what adoption would do, and that it can.
        let store = db.connect().await;
        let plan = migrate::adoption(&store).await.unwrap();
        assert_eq!(plan.refused, None, "{:?}", db.backend);
        let release = plan.release.clone().unwrap();
        assert_eq!(release.version.as_deref(), Some("2.12"), "{release:?}");
        assert_eq!(release.admin_migration, "0026_mailbox_shares");
        for c in [
            "core_user.totp_enabled",
            "core_user.webauthn_enabled",
            "admin_mailbox.is_send_only",
        ] {
            assert!(
                plan.filled_columns.contains(&c.to_string()),
                "{c}: {plan:?}"
            );
        }
        for t in [
            "authtoken_token.user_id → core_user",
            "otp_totp_totpdevice.user_id → core_user",
            "postfix_autoreply_armessage.mbox_id → admin_mailbox",
            "admin_alarm.mailbox_id → admin_mailbox",
            "dnstools_dnsrecord.domain_id → admin_domain",
        ] {
            assert!(
                plan.cleaned_tables.contains(&t.to_string()),
                "{t}: {plan:?}"
            );
        }
        assert!(plan.unknown_references.is_empty(), "{plan:?}");
        if db.backend == Backend::Postgres {
            assert!(
                plan.json_columns
                    .contains(&"transport_transport._settings (jsonb)".to_string()),
                "{plan:?}"
            );
        }

        // Modoboa's settings: taken, compared with the configuration, or named as having no
        // equivalent; a secret's value never shown.
        let config =
            modobox::config::Config::from_toml(modobox::config::DEFAULT_TEXT, "default").unwrap();
        let mut tx = store.begin_read().await.unwrap();
        let settings = modoboa_settings::plan(&mut tx, &config).await.unwrap();
        drop(tx);
        let outcome = |key: &str| {
            settings
                .iter()
                .find(|i| i.modoboa == key)
                .unwrap_or_else(|| panic!("{key} not reported: {settings:?}"))
                .outcome
                .clone()
        };
        let taken = |setting: &str, value: &str| Outcome::Taken {
            setting: setting.into(),
            value: value.into(),
        };
        assert_eq!(
            outcome("core.password_scheme"),
            taken("password_scheme", "ARGON2ID")
        );
        assert_eq!(
            outcome("core.rounds_number"),
            taken("password_rounds", "80000")
        );
        assert_eq!(
            outcome("core.update_scheme"),
            taken("password_update_scheme", "true")
        );
        assert_eq!(
            outcome("limits.enable_domain_limits"),
            taken("enable_domain_limits", "true")
        );
        assert!(
            matches!(outcome("admin.handle_mailboxes"), Outcome::DiffersInConfig { key, set, .. }
                if key == "mail.handle_mailboxes_on_filesystem" && set.starts_with("handle_mailboxes_on_filesystem = false under [mail]")),
            "{settings:?}"
        );
        assert!(
            matches!(outcome("admin.custom_dns_server"), Outcome::DiffersInConfig { set, .. }
                if set == "resolver = \"192.0.2.53:53\" under [check_mx]"),
            "{settings:?}"
        );
        assert!(matches!(
            outcome("admin.dkim_keys_storage_dir"),
            Outcome::DiffersInConfig { .. }
        ));
        assert_eq!(
            outcome("core.log_maximum_age"),
            Outcome::SameInConfig {
                key: "jobs.log_max_age_days".into()
            }
        );
        assert!(matches!(
            outcome("admin.dkim_default_key_length"),
            Outcome::NoEquivalent { .. }
        ));
        let report = serde_json::to_string(&settings).unwrap();
        assert!(!report.contains("Ldap-S3cret-value"), "{report}");
        assert!(report.contains("core.ldap_bind_password"), "{report}");
        assert!(report.contains("core.items_per_page"), "{report}");

        let before = db.dump_tables(MODOBOA_TABLES);
        migrate::adopt(&store).await.unwrap();
        assert_eq!(db.dump_tables(MODOBOA_TABLES), before, "{:?}", db.backend);
        let mut tx = store.begin().await.unwrap();
        assert_eq!(
            modoboa_settings::apply(&mut tx, &settings).await.unwrap(),
            4
        );
        let policy = accounts::hash_policy(&mut tx).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            policy,
            modobox::password::HashPolicy::new(modobox::password::Scheme::Argon2id, 80000).unwrap()
        );
        let stored = |user: &str| {
            db.query(&format!(
                "SELECT password FROM core_user WHERE username = '{user}'"
            ))
            .trim()
            .to_string()
        };
        let before_login: Vec<String> =
            ["alice@example.org", "bob@example.org", "carol@example.org"]
                .iter()
                .map(|u| stored(u))
                .collect();

        // Reads: Modoboa 2.x's rows as Modoboa meant them.
        let mut tx = store.begin().await.unwrap();
        let sys = Actor::System;
        let relay = domains::get(&mut tx, sys, &dom("relay.example"))
            .await
            .unwrap()
            .relay
            .unwrap();
        assert_eq!(
            (
                relay.target_host.as_str(),
                relay.target_port,
                relay.verify_recipients
            ),
            ("192.0.2.25", 2525, true)
        );
        for (user, scheme) in [
            ("alice@example.org", "ARGON2ID"),
            ("bob@example.org", "SSHA"),
            ("carol@example.org", "SHA512-CRYPT"),
            ("dave@example.net", "BLF-CRYPT"),
        ] {
            assert!(
                accounts::authenticate(&mut tx, user, &password)
                    .await
                    .unwrap()
                    .is_some(),
                "{:?}: {user} ({scheme}) with Modoboa's password",
                db.backend
            );
        }
        tx.commit().await.unwrap();
        // Logins stored the legacy hashes again in the adopted scheme (Modoboa's update_scheme);
        // alice's was already ARGON2ID and stays as it was. Dovecot reads the new ones.
        assert_eq!(stored("alice@example.org"), before_login[0]);
        for (i, user) in ["bob@example.org", "carol@example.org"].iter().enumerate() {
            let now = stored(user);
            assert_ne!(now, before_login[i + 1], "{user}");
            assert!(now.starts_with("{ARGON2ID}$argon2id$"), "{user}: {now}");
            let out = Command::new("doveadm")
                .args(["pw", "-t", &now, "-p", &password])
                .output()
                .unwrap();
            assert!(
                String::from_utf8_lossy(&out.stdout).contains("(verified)"),
                "doveadm: {user}: {out:?}"
            );
        }
        let mut tx = store.begin().await.unwrap();
        let da = accounts::get(&mut tx, sys, &common::user("admin@example.org"))
            .await
            .unwrap();
        assert_eq!(da.role, Role::DomainAdmins);
        tx.commit().await.unwrap();

        // Daily sending limits (message_limit) through the policy service, as Postfix asks it,
        // with the answers of Modoboa's policy daemon: alice may send 2 messages a day, her
        // domain 1000 (populate.py); dave's domain has no limit.
        db.query("UPDATE admin_mailbox SET message_limit = 2 WHERE address = 'alice'");
        let policy = sending_limits_answer(&store).await;
        let (rcpt, eom) = ("RCPT", "END-OF-MESSAGE");
        assert_eq!(policy("", rcpt, 1).await, "dunno");
        assert_eq!(policy("alice@example.org", rcpt, 0).await, "dunno");
        assert_eq!(policy("alice@example.org", eom, 1).await, "dunno");
        assert_eq!(policy("Alice@Example.org", eom, 1).await, "dunno");
        let over = "defer_if_permit Daily limit reached, retry later";
        assert_eq!(policy("alice@example.org", rcpt, 0).await, over);
        assert_eq!(policy("alice@example.org", eom, 1).await, over);
        // carol's 3 recipients count 3 against the domain; refused messages count nothing.
        assert_eq!(policy("carol@example.org", eom, 3).await, "dunno");
        assert_eq!(policy("dave@example.net", eom, 5).await, "dunno");
        let counts = db.query("SELECT name, sent FROM modobox_sending_count ORDER BY name");
        assert_eq!(
            counts.trim().replace('\t', "|"),
            "alice@example.org|2\nexample.org|5",
            "{:?}",
            db.backend
        );
        // A counter of an earlier day counts from zero (the daily reset at 00:00 UTC).
        db.query(
            "UPDATE modobox_sending_count SET day = '2000-01-01' WHERE name = 'alice@example.org'",
        );
        assert_eq!(policy("alice@example.org", rcpt, 0).await, "dunno");
        assert_eq!(policy("alice@example.org", eom, 2).await, "dunno");
        assert_eq!(policy("alice@example.org", eom, 1).await, over);
        let mut tx = store.begin().await.unwrap();

        // Writes: every kind of object, into Modoboa 2.x's tables.
        domains::create(&mut tx, sys, &dom("new.test"), &DomainSpec::default(), None)
            .await
            .unwrap();
        let eve = AccountSpec {
            username: common::user("eve@new.test"),
            password: Password::Clear("Eve-secret-2x".into()),
            first_name: "Eve".into(),
            last_name: "New".into(),
            enabled: true,
            role: Role::SimpleUsers,
            mailbox: Some(Some(10)),
            mailbox_address: None,
            domains: vec![],
            profile: Default::default(),
            mailbox_settings: Default::default(),
        };
        accounts::create(&mut tx, sys, &eve, ROUNDS).await.unwrap();
        let admin2 = AccountSpec {
            username: common::user("boss@new.test"),
            role: Role::DomainAdmins,
            domains: vec![dom("new.test")],
            mailbox: None,
            ..eve.clone()
        };
        accounts::create(&mut tx, sys, &admin2, ROUNDS)
            .await
            .unwrap();
        let mut r = Relay {
            target_host: "192.0.2.30".into(),
            target_port: 25,
            service: "relay".into(),
            verify_recipients: false,
        };
        domains::create(
            &mut tx,
            sys,
            &dom("relay2.test"),
            &DomainSpec::default(),
            Some(&r),
        )
        .await
        .unwrap();
        r.target_port = 2526;
        r.verify_recipients = true;
        let patch = DomainPatch {
            relay: Some(r),
            ..DomainPatch::default()
        };
        domains::update(&mut tx, sys, &dom("relay2.test"), &patch)
            .await
            .unwrap();
        domains::create_alias(
            &mut tx,
            sys,
            &dom("alias-of-new.test"),
            &dom("new.test"),
            true,
        )
        .await
        .unwrap();
        let spec = AliasSpec {
            enabled: true,
            recipients: vec!["eve@new.test".into(), "alice@example.org".into()],
            ..AliasSpec::default()
        };
        aliases::create(
            &mut tx,
            sys,
            &AliasAddress::parse("address", "team@new.test").unwrap(),
            &spec,
        )
        .await
        .unwrap();

        // Deletes: rows of Modoboa's other applications go with what they point at, as
        // Django's cascades would (a TOTP device, a token and an auto-reply of alice's; an
        // alarm, an MX record and a DNS record of example.net).
        accounts::delete(&mut tx, sys, &common::user("alice@example.org"), &opts())
            .await
            .unwrap();
        accounts::delete(&mut tx, sys, &common::user("bob@example.org"), &opts())
            .await
            .unwrap();
        domains::delete(&mut tx, sys, &dom("example.net"), &opts())
            .await
            .unwrap();
        domains::delete_alias(&mut tx, sys, &dom("example-alias.org"))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        for (table, left) in [
            ("otp_totp_totpdevice", 0),
            ("postfix_autoreply_armessage", 0),
            ("dnstools_dnsrecord", 0),
            ("admin_alarm", 0),
        ] {
            let n = db.query(&format!("SELECT COUNT(*) FROM {table}"));
            assert_eq!(n.trim(), left.to_string(), "{:?}: {table}", db.backend);
        }
        let tokens = db.query("SELECT COUNT(*) FROM authtoken_token");
        // The admin's and the domain admin's tokens stay; bob's went with bob.
        assert_eq!(tokens.trim(), "2", "{:?}", db.backend);

        // The domain admin's Modoboa key opens modobox's API v1, and at its first use moves
        // into modobox's table as a SHA-256 (out of authtoken_token).
        let key = summary["tokens"]["admin@example.org"].as_str().unwrap();
        let mut tx = store.begin().await.unwrap();
        let listed: Vec<(String, &str)> = modobox::store::tokens::list(&mut tx)
            .await
            .unwrap()
            .into_iter()
            .map(|t| (t.username, t.kind))
            .collect();
        drop(tx);
        assert_eq!(
            listed,
            vec![
                ("admin".to_string(), "Modoboa"),
                ("admin@example.org".to_string(), "Modoboa")
            ]
        );
        let port = common::web::start(&store).await;
        let auth = format!("Authorization: Token {key}");
        for _ in 0..2 {
            let a =
                common::web::http_with(port, "GET", "/api/v1/domains/", &[&auth], &[], None).await;
            assert_eq!(a.status, 200, "{:?}: {}", db.backend, a.body);
            assert!(a.body.contains("\"example.org\""), "{}", a.body);
            assert!(!a.body.contains("relay.example"), "{}", a.body);
        }
        let left = db.query(&format!(
            "SELECT COUNT(*) FROM authtoken_token WHERE user_id = {}",
            da.id
        ));
        assert_eq!(
            left.trim(),
            "0",
            "{:?}: the key stayed in clear",
            db.backend
        );
        let hashed = db.query(&format!(
            "SELECT token_hash FROM modobox_api_token WHERE user_id = {}",
            da.id
        ));
        assert_eq!(hashed.trim(), modobox::store::tokens::digest(key));
        let wrong = "0".repeat(40);
        let a = common::web::http_with(
            port,
            "GET",
            "/api/v1/domains/",
            &[&format!("Authorization: Token {wrong}")],
            &[],
            None,
        )
        .await;
        assert_eq!(a.status, 401, "{:?}", db.backend);
        // modobox's export imports into a new Modoboa (`modo import`), and the hashes in it
        // are what Dovecot reads (`doveadm pw -t`): once, on SQLite.
        if db.backend == Backend::Sqlite {
            let mut csv = Vec::new();
            for kind in [
                transfer::ExportKind::Domains,
                transfer::ExportKind::Identities,
            ] {
                transfer::export(&store, Actor::System, kind, &mut csv, b';')
                    .await
                    .unwrap();
            }
            let csv = String::from_utf8(csv).unwrap();
            for line in csv.lines().filter(|l| l.starts_with("account;")) {
                let cells: Vec<&str> = line.split(';').collect();
                let known = match cells[1] {
                    "eve@new.test" => Some("Eve-secret-2x"),
                    "carol@example.org" | "admin@example.org" => Some(password.as_str()),
                    _ => None,
                };
                if let Some(pw) = known {
                    let out = Command::new("doveadm")
                        .args(["pw", "-t", cells[2], "-p", pw])
                        .output()
                        .unwrap();
                    assert!(
                        String::from_utf8_lossy(&out.stdout).contains("(verified)"),
                        "doveadm: {line}: {out:?}"
                    );
                }
            }
            let fresh = common::sqlite().await;
            modoboa.manage(&fresh, redis_db, &["migrate", "--noinput"]);
            modoboa.manage(
                &fresh,
                redis_db,
                &[
                    "load_initial_data",
                    "--no-frontend",
                    "--admin-username",
                    "admin",
                ],
            );
            let tmp = tempfile::tempdir().unwrap();
            let file = tmp.path().join("modobox-export.csv");
            std::fs::write(&file, &csv).unwrap();
            let said = modoboa.manage(
                &fresh,
                redis_db,
                &[
                    "modo",
                    "import",
                    "--continue-if-exists",
                    file.to_str().unwrap(),
                ],
            );
            let read = modoboa.script(&fresh, redis_db, &repo().join("tests/modoboa2/imported.py"));
            assert!(read.contains("imported ok"), "{said}\n{read}\n{csv}");
        }
        store.close().await;

        // Going back: Modoboa 2.12 starts on the database modobox wrote, finds every one of its
        // migrations applied, and reads modobox's objects as its own.
        modoboa.manage(&db, redis_db, &["check"]);
        let plan = modoboa.manage(&db, redis_db, &["showmigrations", "--plan"]);
        assert!(
            !plan.lines().any(|l| l.trim_start().starts_with("[ ]")),
            "{:?}: unapplied Modoboa migrations after modobox:\n{plan}",
            db.backend
        );
        let read = modoboa.script(&db, redis_db, &repo().join("tests/modoboa2/readback.py"));
        assert!(read.contains("readback ok"), "{:?}: {read}", db.backend);
        eprintln!(
            "{:?}: adopted, written, deleted, given back in {:.0} s",
            db.backend,
            t0.elapsed().as_secs_f64()
        );
    }
}

/// One request of tests/modoboa2/api-v1-cases.json, replayed against Modoboa and modobox.
#[derive(Debug, Clone, serde::Deserialize)]
struct ApiCase {
    name: String,
    #[serde(rename = "as")]
    user: String,
    method: String,
    url: String,
    body: Option<serde_json::Value>,
    /// Paths (`mailbox.quota`, `[].dkim_public_key`) whose values may differ (types may not).
    #[serde(default)]
    values_may_differ: Vec<String>,
    /// Keys of Modoboa's answer modobox deliberately leaves out (`password`: no hash ever
    /// leaves modobox).
    #[serde(default)]
    missing_here: Vec<String>,
    /// A deliberate difference: modobox's status, and why (the README's compatibility table).
    modobox_status: Option<u16>,
    why: Option<String>,
}

/// Keys whose values are pks (each side has its own) or moments: compared by type only.
const OWN_VALUE_KEYS: &[&str] = &[
    "pk",
    "id",
    "target",
    "mailbox",
    "domain",
    "date_joined",
    "last_login",
    "dkim_public_key",
    "dkim_private_key_path",
    "last_modification",
    "creation",
];

/// The pk of the object a placeholder names in `db` (999999 when there is none), as
/// api_replay.py resolves it on Modoboa's side.
fn pk_in(db: &common::TestDb, kind: &str, name: &str) -> i64 {
    let name = name.replace('\'', "''");
    let sql = match kind {
        "domain" => format!("SELECT id FROM admin_domain WHERE name = '{name}'"),
        "domainalias" => format!("SELECT id FROM admin_domainalias WHERE name = '{name}'"),
        "account" => format!("SELECT id FROM core_user WHERE username = '{name}'"),
        "mailbox" => {
            let (local, domain) = name.split_once('@').unwrap();
            format!(
                "SELECT m.id FROM admin_mailbox m JOIN admin_domain d ON d.id = m.domain_id \
                 WHERE m.address = '{local}' AND d.name = '{domain}'"
            )
        }
        "alias" => {
            format!("SELECT id FROM admin_alias WHERE address = '{name}' AND NOT internal")
        }
        "sender" => format!("SELECT id FROM admin_senderaddress WHERE address = '{name}'"),
        other => panic!("unknown placeholder kind {other}"),
    };
    db.query(&sql).trim().parse().unwrap_or(999_999)
}

const PLACEHOLDER_KINDS: &[&str] = &[
    "domain",
    "domainalias",
    "account",
    "mailbox",
    "alias",
    "sender",
];

/// `text` with each `{kind:name}` replaced by the pk; Err(pk) when the whole text is one.
fn fill_text(db: &common::TestDb, text: &str) -> Result<String, i64> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let inner = &rest[open + 1..];
        let found = inner.find('}').and_then(|close| {
            let (kind, name) = inner[..close].split_once(':')?;
            PLACEHOLDER_KINDS
                .contains(&kind)
                .then(|| (close, pk_in(db, kind, name)))
        });
        match found {
            Some((close, pk)) => {
                if open == 0 && close + 2 == rest.len() && out.is_empty() {
                    return Err(pk);
                }
                out.push_str(&rest[..open]);
                out.push_str(&pk.to_string());
                rest = &inner[close + 1..];
            }
            None => {
                out.push_str(&rest[..=open]);
                rest = inner;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn fill_placeholders(db: &common::TestDb, v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) => match fill_text(db, s) {
            Ok(text) => Value::String(text),
            Err(pk) => Value::from(pk),
        },
        Value::Array(items) => {
            Value::Array(items.iter().map(|i| fill_placeholders(db, i)).collect())
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), fill_placeholders(db, v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// The key that names a list item on both sides (its pk differs).
fn natural_key(v: &serde_json::Value) -> Option<String> {
    ["name", "username", "address"]
        .iter()
        .find_map(|k| v.get(*k).and_then(|x| x.as_str()).map(str::to_string))
}

/// Every key of Modoboa's answer `m` must be in modobox's `x` with the same JSON type, and
/// the same value unless the key holds a pk or a moment or the case allows it; list items
/// are matched by name, so a list must hold the same objects. Differences go to `errors`.
fn compare_answers(
    m: &serde_json::Value,
    x: &serde_json::Value,
    path: &str,
    case: &ApiCase,
    errors: &mut Vec<String>,
) {
    use serde_json::Value;
    let key = path.rsplit('.').next().unwrap_or("");
    let key = key.trim_end_matches("[]");
    let own = OWN_VALUE_KEYS.contains(&key)
        || case.values_may_differ.iter().any(|p| p == path || p == "*");
    match (m, x) {
        (Value::Object(mo), Value::Object(xo)) => {
            for (k, mv) in mo {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match xo.get(k) {
                    None if case.missing_here.contains(&p) => {}
                    None => errors.push(format!("{p}: missing (Modoboa: {mv})")),
                    Some(xv) => compare_answers(mv, xv, &p, case, errors),
                }
            }
        }
        (Value::Array(ma), Value::Array(xa)) => {
            let p = format!("{path}[]");
            let keyed: Option<Vec<_>> = ma.iter().map(natural_key).collect();
            match keyed {
                Some(names) if !names.is_empty() => {
                    let theirs: Vec<Option<String>> = xa.iter().map(natural_key).collect();
                    for (name, mv) in names.iter().zip(ma) {
                        match theirs.iter().position(|t| t.as_deref() == Some(name)) {
                            Some(i) => compare_answers(mv, &xa[i], &p, case, errors),
                            None => errors.push(format!("{p}: {name} missing")),
                        }
                    }
                    for t in theirs.iter().flatten() {
                        if !names.contains(t) {
                            errors.push(format!("{p}: {t} not in Modoboa's answer"));
                        }
                    }
                }
                _ if own => {
                    if let (Some(a), Some(b)) = (ma.first(), xa.first()) {
                        compare_answers(a, b, &p, case, errors);
                    }
                }
                _ => {
                    if ma.len() != xa.len() {
                        errors.push(format!("{path}: {} items, Modoboa {}", xa.len(), ma.len()));
                    }
                    for (a, b) in ma.iter().zip(xa) {
                        compare_answers(a, b, &p, case, errors);
                    }
                }
            }
        }
        _ if json_type(m) != json_type(x) => errors.push(format!(
            "{path}: {} {x}, Modoboa {} {m}",
            json_type(x),
            json_type(m)
        )),
        _ if !own && m != x => errors.push(format!("{path}: {x}, Modoboa {m}")),
        _ => {}
    }
}

/// Modoboa's own API v1 requests (its test suites' payloads, as data) replayed in order
/// against Modoboa 2.12 and against modobox on a copy of the same database: the same status,
/// and every key Modoboa answers present in modobox's answer with the same type and value.
#[tokio::test]
async fn modoboas_api_v1_requests_are_answered_alike() {
    let Some(modoboa) = Modoboa::start() else {
        return;
    };
    let cases_file = repo().join("tests/modoboa2/api-v1-cases.json");
    let cases: Vec<ApiCase> =
        serde_json::from_str(&std::fs::read_to_string(&cases_file).unwrap()).unwrap();
    let mut engines = vec![common::sqlite().await];
    engines.extend(common::postgres().await);
    for (n, theirs) in engines.into_iter().enumerate() {
        let redis_db = 8 + n as u32;
        let t0 = std::time::Instant::now();
        let summary = modoboa.populate(&theirs, redis_db);
        let ours = theirs.copy().await;
        let answers = modoboa.script_with(
            &theirs,
            redis_db,
            &repo().join("tests/modoboa2/api_replay.py"),
            &[&cases_file],
        );
        let answers: Vec<serde_json::Value> =
            serde_json::from_str(answers.lines().last().unwrap()).unwrap();
        assert_eq!(answers.len(), cases.len());

        let store = ours.connect().await;
        migrate::adopt(&store).await.unwrap();
        let port = common::web::start(&store).await;
        let mut errors = Vec::new();
        for (i, (case, theirs)) in cases.iter().zip(&answers).enumerate() {
            let key = summary["tokens"][&case.user]
                .as_str()
                .unwrap_or_else(|| panic!("{}: no token for {}", case.name, case.user));
            let url = fill_text(&ours, &case.url).unwrap_or_else(|pk| pk.to_string());
            let body = case
                .body
                .as_ref()
                .map(|b| fill_placeholders(&ours, b).to_string());
            let a = common::web::http_with(
                port,
                &case.method.to_uppercase(),
                &url,
                &[&format!("Authorization: Token {key}")],
                &[],
                body.as_deref(),
            )
            .await;
            let label = format!(
                "case {} ({}) {} {}",
                i + 1,
                case.name,
                case.method,
                case.url
            );
            let want = case
                .modobox_status
                .unwrap_or_else(|| u16::try_from(theirs["status"].as_u64().unwrap()).unwrap());
            if case.modobox_status.is_some() {
                assert!(case.why.is_some(), "{label}: a difference needs its why");
            }
            if a.status != want {
                errors.push(format!(
                    "{label}: status {} (Modoboa {}): {}\n    Modoboa said {}",
                    a.status, theirs["status"], a.body, theirs["body"]
                ));
                continue;
            }
            if case.modobox_status.is_some() || theirs["body"].is_null() {
                continue;
            }
            let ours_body: serde_json::Value = match serde_json::from_str(&a.body) {
                Ok(v) => v,
                Err(e) => {
                    errors.push(format!("{label}: not JSON ({e}): {}", a.body));
                    continue;
                }
            };
            let mut diffs = Vec::new();
            // A refusal's messages are modobox's own (naming the rule): keys and types count.
            let mut case_here = case.clone();
            if a.status >= 400 {
                case_here.values_may_differ.push("*".into());
            }
            compare_answers(&theirs["body"], &ours_body, "", &case_here, &mut diffs);
            if !diffs.is_empty() {
                errors.push(format!("{label}:\n    {}", diffs.join("\n    ")));
            }
        }
        store.close().await;
        eprintln!(
            "{:?}: {} API v1 requests answered by Modoboa and modobox in {:.0} s",
            ours.backend,
            cases.len(),
            t0.elapsed().as_secs_f64()
        );
        assert!(
            errors.is_empty(),
            "{:?}: {} of {} requests answered differently:\n{}",
            ours.backend,
            errors.len(),
            cases.len(),
            errors.join("\n")
        );
    }
}
