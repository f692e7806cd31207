//! Tenant isolation in the store, tried as a hostile admin would, on SQLite, PostgreSQL and
//! MariaDB: each attempt is refused *and* leaves every table as it was (the attempts run in the
//! one transaction a caller would commit).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use modobox::names::DomainName;
use modobox::store::access::{Actor, Role};
use modobox::store::accounts::{self, AccountSpec, Options};
use modobox::store::aliases::{self, AliasAddress, AliasPatch, AliasSpec};
use modobox::store::domains::{self, DomainPatch, DomainSpec, Relay};
use modobox::store::{migrate, StoreError, Tx};

const ROUNDS: modobox::password::HashPolicy = modobox::password::HashPolicy::sha512_crypt(5000);

fn dom(n: &str) -> DomainName {
    DomainName::parse("domain", n).unwrap()
}

fn email(a: &str) -> modobox::store::accounts::SenderPattern {
    modobox::store::accounts::SenderPattern::parse("address", a).unwrap()
}

fn opts() -> Options {
    Options {
        mail_root: PathBuf::from("/srv/vmail"),
        handle_mailboxes_on_filesystem: true,
    }
}

fn account(username: &str, role: Role, domains: &[&str]) -> AccountSpec {
    common::account_spec(username, role, true, domains)
}

fn relay(host: &str, service: &str) -> Relay {
    Relay {
        target_host: host.into(),
        target_port: 25,
        service: service.into(),
        verify_recipients: false,
    }
}

/// Every row of the tables an attempt could touch, in a stable order.
async fn snapshot(tx: &mut Tx) -> String {
    let queries = [
        "SELECT name, type, enabled FROM admin_domain ORDER BY name",
        "SELECT name, target_id FROM admin_domainalias ORDER BY name",
        "SELECT username, is_active FROM core_user ORDER BY username",
        "SELECT address, domain_id FROM admin_mailbox ORDER BY address, domain_id",
        "SELECT address, mailbox_id FROM admin_senderaddress ORDER BY address, mailbox_id",
        "SELECT address, enabled FROM admin_alias ORDER BY address",
        "SELECT address, alias_id FROM modoboa_admin_aliasrecipient ORDER BY alias_id, address",
        "SELECT pattern, service, next_hop FROM transport_transport ORDER BY pattern",
    ];
    let mut out = String::new();
    for q in queries {
        for r in tx.rows(q, &[]).await.unwrap() {
            out.push_str(&format!("{r:?}\n"));
        }
        out.push_str("--\n");
    }
    out
}

/// `attempt` must fail with an error that `expected` accepts, and change nothing.
macro_rules! refused {
    ($tx:expr, $what:literal, $attempt:expr, $expected:pat $(if $guard:expr)?) => {{
        let before = snapshot($tx).await;
        let r = $attempt;
        assert!(
            matches!(r, Err($expected) $(if $guard)?),
            "{}: expected a refusal, got {:?}",
            $what,
            r.map(|_| ())
        );
        assert_eq!(snapshot($tx).await, before, "{}: something changed", $what);
    }};
}

fn field_is(e: &StoreError, f: &str) -> bool {
    match e {
        StoreError::Refused { field, .. } => field == f,
        StoreError::Invalid(n) => n.field == f,
        _ => false,
    }
}

#[tokio::test]
async fn tenants_cannot_act_as_each_other() {
    for db in common::all().await {
        let store = db.connect().await;
        migrate::migrate(&store).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        let sys = Actor::System;
        for d in ["own.test", "other.test", "res.test"] {
            domains::create(&mut tx, sys, &dom(d), &DomainSpec::default(), None)
                .await
                .unwrap();
        }
        domains::create(
            &mut tx,
            sys,
            &dom("relay.test"),
            &DomainSpec::default(),
            Some(&relay("mx.inside.test", "relay")),
        )
        .await
        .unwrap();
        let da = accounts::create(
            &mut tx,
            sys,
            &account(
                "da@own.test",
                Role::DomainAdmins,
                &["own.test", "relay.test"],
            ),
            ROUNDS,
        )
        .await
        .unwrap();
        let da = Actor::User {
            id: da.id,
            role: Role::DomainAdmins,
        };
        let res = accounts::create(
            &mut tx,
            sys,
            &account("res@res.test", Role::Resellers, &["res.test"]),
            ROUNDS,
        )
        .await
        .unwrap();
        let res = Actor::User {
            id: res.id,
            role: Role::Resellers,
        };
        for (u, role) in [
            ("user@own.test", Role::SimpleUsers),
            ("boss@other.test", Role::SimpleUsers),
            ("root@own.test", Role::SuperAdmins),
            ("chief@res.test", Role::SuperAdmins),
        ] {
            accounts::create(&mut tx, sys, &account(u, role, &[]), ROUNDS)
                .await
                .unwrap();
        }

        // 2. Sender addresses across tenants.
        refused!(
            &mut tx,
            "sender address in another tenant's domain",
            accounts::add_sender_address(&mut tx, da, &common::user("user@own.test"), &email("boss@other.test"))
                .await,
            ref e if field_is(e, "address")
        );
        refused!(
            &mut tx,
            "outside sender address by a domain admin",
            accounts::add_sender_address(&mut tx, da, &common::user("user@own.test"), &email("ceo@bank.example"))
                .await,
            ref e if field_is(e, "address")
        );
        accounts::add_sender_address(
            &mut tx,
            da,
            &common::user("user@own.test"),
            &email("sales@own.test"),
        )
        .await
        .unwrap();
        let s = accounts::find_sender_address(
            &mut tx,
            da,
            &common::user("user@own.test"),
            &email("sales@own.test"),
        )
        .await
        .unwrap();
        refused!(
            &mut tx,
            "sender address changed to another tenant's",
            accounts::update_sender_address(
                &mut tx,
                da,
                s.id,
                &email("boss@other.test"),
                &common::user("user@own.test")
            )
            .await,
            ref e if field_is(e, "address")
        );
        accounts::add_sender_address(
            &mut tx,
            sys,
            &common::user("user@own.test"),
            &email("me@elsewhere.example"),
        )
        .await
        .unwrap();

        // 4. Domain aliases and new domains for names one does not own.
        refused!(
            &mut tx,
            "domain alias gmail.com by a domain admin",
            domains::create_alias(&mut tx, da, &dom("gmail.com"), &dom("own.test"), true).await,
            StoreError::Forbidden(_)
        );
        refused!(
            &mut tx,
            "domain alias on a public suffix",
            domains::create_alias(&mut tx, res, &dom("co.uk"), &dom("res.test"), true).await,
            ref e if field_is(e, "name")
        );
        refused!(
            &mut tx,
            "domain on a public suffix (a private one)",
            domains::create(&mut tx, res, &dom("github.io"), &DomainSpec::default(), None).await,
            ref e if field_is(e, "name")
        );
        refused!(
            &mut tx,
            "domain alias under another tenant's domain",
            domains::create_alias(&mut tx, res, &dom("mail.other.test"), &dom("res.test"), true)
                .await,
            ref e if field_is(e, "name")
        );
        refused!(
            &mut tx,
            "domain under another tenant's domain",
            domains::create(&mut tx, res, &dom("x.own.test"), &DomainSpec::default(), None).await,
            ref e if field_is(e, "name")
        );
        if let Some(host) = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .filter(|h| h.contains('.') && DomainName::parse("h", h).is_ok())
        {
            refused!(
                &mut tx,
                "domain alias named as this server",
                domains::create_alias(&mut tx, sys, &dom(&host), &dom("own.test"), true).await,
                ref e if field_is(e, "name")
            );
        }
        domains::create_alias(&mut tx, res, &dom("lists.res.test"), &dom("res.test"), true)
            .await
            .unwrap();

        // 5. Aliases and forwards on the address of an account one cannot manage.
        let hijack = AliasSpec {
            enabled: true,
            description: String::new(),
            expire_at: None,
            recipients: vec!["root@own.test".into(), "attacker@evil.example".into()],
        };
        let root_addr = AliasAddress::parse("address", "root@own.test").unwrap();
        refused!(
            &mut tx,
            "forward on a superadmin's address by a domain admin",
            aliases::create(&mut tx, da, &root_addr, &hijack).await,
            StoreError::Forbidden(_)
        );
        // One the superadmin set itself is not the domain admin's to change or remove.
        let own_forward = AliasSpec {
            recipients: vec!["root@own.test".into(), "chief@res.test".into()],
            ..hijack.clone()
        };
        aliases::create(&mut tx, sys, &root_addr, &own_forward)
            .await
            .unwrap();
        let patch = AliasPatch {
            recipients: Some(vec!["attacker@evil.example".into()]),
            ..Default::default()
        };
        refused!(
            &mut tx,
            "changing a superadmin's forward",
            aliases::update(&mut tx, da, &common::alias("root@own.test"), &patch).await,
            StoreError::Forbidden(_)
        );
        refused!(
            &mut tx,
            "removing a superadmin's forward",
            aliases::delete(&mut tx, da, &common::alias("root@own.test")).await,
            StoreError::Forbidden(_)
        );
        // Through a domain alias of that domain (the same mailbox): no alias lives there.
        domains::create_alias(&mut tx, sys, &dom("own-alias.test"), &dom("own.test"), true)
            .await
            .unwrap();
        refused!(
            &mut tx,
            "forward on a superadmin's address through a domain alias",
            aliases::create(
                &mut tx,
                da,
                &AliasAddress::parse("address", "root@own-alias.test").unwrap(),
                &hijack
            )
            .await,
            StoreError::Forbidden(_) | StoreError::NotFound { .. }
        );
        let user_forward = AliasSpec {
            recipients: vec!["user@own.test".into(), "user@elsewhere.example".into()],
            ..hijack.clone()
        };
        aliases::create(
            &mut tx,
            da,
            &AliasAddress::parse("address", "user@own.test").unwrap(),
            &user_forward,
        )
        .await
        .unwrap();

        // 6. Deleting a domain never takes an account the actor could not delete itself.
        refused!(
            &mut tx,
            "a reseller deleting the domain of a superadmin's mailbox",
            domains::delete(&mut tx, res, &dom("res.test"), &opts()).await,
            StoreError::Forbidden(_)
        );

        // 7. Relay transports: the plain SMTP clients only, never this machine.
        for (host, service, field) in [
            ("127.0.0.1", "relay", "target_host"),
            ("localhost", "relay", "target_host"),
            ("169.254.10.1", "smtp", "target_host"),
            ("::1", "relay", "target_host"),
            ("0.0.0.0", "relay", "target_host"),
            ("mx.inside.test", "smtp-amavis", "service"),
            ("mx.inside.test", "local", "service"),
        ] {
            refused!(
                &mut tx,
                "relay domain with an internal target or service",
                domains::create(
                    &mut tx,
                    sys,
                    &dom("relay2.test"),
                    &DomainSpec::default(),
                    Some(&relay(host, service))
                )
                .await,
                ref e if field_is(e, field)
            );
        }
        let retarget = DomainPatch {
            relay: Some(relay("mx.elsewhere.example", "relay")),
            ..Default::default()
        };
        refused!(
            &mut tx,
            "a domain admin re-pointing its relay domain",
            domains::update(&mut tx, da, &dom("relay.test"), &retarget).await,
            StoreError::Forbidden(_)
        );
        // The same target as before is no change of target.
        let same = DomainPatch {
            relay: Some(relay("mx.inside.test", "relay")),
            enable_dns_checks: Some(false),
            ..Default::default()
        };
        domains::update(&mut tx, da, &dom("relay.test"), &same)
            .await
            .unwrap();
        domains::update(&mut tx, res, &dom("res.test"), &DomainPatch::default())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        eprintln!("{:?}: every attempt refused, nothing changed", db.backend);
    }
}

// ---- authentication, over real HTTP against the web server ----

use common::web::{enc, http_with, start, PASSWORD};
use std::time::Instant;

/// The login form's cookie and token, from `client` (nginx's X-Forwarded-For: the web server
/// listens on loopback behind it).
async fn login_form(port: u16, client: &str) -> (String, String) {
    let xff = format!("X-Forwarded-For: {client}");
    let form = http_with(port, "GET", "/login", &[&xff], &[], None).await;
    (
        form.cookie("modobox_login").unwrap(),
        form.field("csrf").unwrap(),
    )
}

async fn try_login(port: u16, client: &str, username: &str, password: &str) -> u16 {
    let (pre, csrf) = login_form(port, client).await;
    let xff = format!("X-Forwarded-For: {client}");
    let body = format!(
        "csrf={csrf}&next=%2F&username={}&password={}",
        enc(username),
        enc(password)
    );
    http_with(port, "POST", "/login", &[&xff], &[&pre], Some(&body))
        .await
        .status
}

async fn auth_log(store: &modobox::store::Store) -> Vec<String> {
    let mut tx = store.begin().await.unwrap();
    tx.rows(
        "SELECT message FROM core_log WHERE logger = ? ORDER BY id",
        modobox::args!["modoboa.auth"],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.text("message").unwrap())
    .collect()
}

#[tokio::test]
async fn authentication_holds_against_guessing_flooding_and_redirects() {
    let db = common::sqlite().await;
    let store = db.connect().await;
    migrate::migrate(&store).await.unwrap();
    common::web::account(&store, "boss", Role::SuperAdmins).await;
    let port = start(&store).await;

    // 10. Forty concurrent wrong guesses on one account from one client: five are checked, the
    // rest refused before any hashing; the account stays open to its owner elsewhere.
    let guesses = (0..40).map(|_| try_login(port, "198.51.100.7", "boss", "guess"));
    let answers = futures_util::future::join_all(guesses).await;
    let checked = answers.iter().filter(|s| **s == 401).count();
    let refused = answers.iter().filter(|s| **s == 429).count();
    assert_eq!((checked, refused), (5, 35), "{answers:?}");
    assert_eq!(try_login(port, "198.51.100.7", "boss", PASSWORD).await, 429);
    assert_eq!(try_login(port, "203.0.113.9", "boss", PASSWORD).await, 303);
    // Spraying: ten accounts from one IPv6 /64 (different addresses), then it stops.
    for i in 0..10 {
        let s = try_login(port, &format!("2001:db8:5:6::{i:x}"), &format!("u{i}"), "x").await;
        assert_eq!(s, 401);
    }
    assert_eq!(
        try_login(port, "2001:db8:5:6::ff", "boss", PASSWORD).await,
        429
    );

    // 13. The audit log: a bounded number of lines per client, no control character.
    let before = auth_log(&store).await.len();
    for i in 0..60 {
        let who = format!("evil{i}\nUser boss logged in from 10.0.0.1");
        try_login(port, "192.0.2.66", &who, "x").await;
    }
    let lines = auth_log(&store).await;
    let new = &lines[before..];
    assert!(
        new.len() <= modobox::web::throttle::MAX_LOG_LINES,
        "{} lines",
        new.len()
    );
    assert!(new.iter().all(|l| !l.contains('\n')), "{new:?}");
    assert!(new.last().unwrap().contains("left out"), "{new:?}");

    // 11. Unknown and known accounts take the time of a hashing alike.
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for i in 0..5 {
        let t = Instant::now();
        try_login(port, &format!("192.0.2.{}", 100 + i), "boss", "wrong").await;
        known.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        try_login(
            port,
            &format!("192.0.2.{}", 150 + i),
            "nobody-here",
            "wrong",
        )
        .await;
        unknown.push(t.elapsed().as_secs_f64());
    }
    let (k, u) = (median(known), median(unknown));
    assert!(u >= k * 0.5, "unknown {u:.3} s vs known {k:.3} s");

    // 12. Redirects after login stay on this site.
    for next in [
        "%2F%09%2Fevil.example%2Fx",
        "%2F%0A%2Fevil.example",
        "%2F%5Cevil.example",
        "%2F%2Fevil.example",
        "https%3A%2F%2Fevil.example",
        "%2F%20%2Fevil.example",
    ] {
        let (pre, csrf) = login_form(port, "192.0.2.200").await;
        let body = format!(
            "csrf={csrf}&next={next}&username=boss&password={}",
            enc(PASSWORD)
        );
        let a = http_with(
            port,
            "POST",
            "/login",
            &["X-Forwarded-For: 192.0.2.200"],
            &[&pre],
            Some(&body),
        )
        .await;
        assert_eq!(a.status, 303);
        assert_eq!(a.header("location"), Some("/"), "next={next}");
    }
}

#[tokio::test]
async fn the_password_endpoint_is_no_oracle() {
    for db in common::all().await {
        let store = db.connect().await;
        migrate::migrate(&store).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        domains::create(
            &mut tx,
            Actor::System,
            &dom("own.test"),
            &DomainSpec::default(),
            None,
        )
        .await
        .unwrap();
        let da = accounts::create(
            &mut tx,
            Actor::System,
            &account("da@own.test", Role::DomainAdmins, &["own.test"]),
            ROUNDS,
        )
        .await
        .unwrap();
        let boss = accounts::create(
            &mut tx,
            Actor::System,
            &account("root@own.test", Role::SuperAdmins, &[]),
            ROUNDS,
        )
        .await
        .unwrap();
        let key = modobox::store::tokens::create_token(&mut tx, da.id)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let port = start(&store).await;
        let auth = format!("Authorization: Token {key}");
        let path = format!("/api/v1/accounts/{}/password/", boss.id);
        // 9. A domain admin who sees the superadmin's account gets the same 403 whether the
        // current password it tries is right or wrong.
        let mut seen = Vec::new();
        for current in ["wrong guess", "correct horse 1"] {
            let body =
                format!("{{\"password\": \"{current}\", \"new_password\": \"taken over 1234\"}}");
            let a = http_with(port, "PUT", &path, &[&auth], &[], Some(&body)).await;
            seen.push((a.status, a.body));
        }
        assert_eq!(seen[0], seen[1], "{seen:?}");
        assert_eq!(seen[0].0, 403);
        let mut tx = store.begin().await.unwrap();
        assert!(
            accounts::authenticate(&mut tx, "root@own.test", "correct horse 1")
                .await
                .unwrap()
                .is_some()
        );
        drop(tx);
        // Its own: wrong guesses are throttled like logins (five, then 429).
        let own = format!("/api/v1/accounts/{}/password/", da.id);
        let body = "{\"password\": \"nope\", \"new_password\": \"another one 1234\"}";
        let mut statuses = Vec::new();
        for _ in 0..6 {
            statuses.push(
                http_with(port, "PUT", &own, &[&auth], &[], Some(body))
                    .await
                    .status,
            );
        }
        assert_eq!(statuses, [400, 400, 400, 400, 400, 429]);
    }
}

// ---- a database role per daemon (PostgreSQL and MariaDB) ----

use modobox::config::Config;
use modobox::secrets::Secrets;
use modobox::store::roles::{self, Daemon};
use modobox::store::{Backend, DatabaseUrl, Store};
use sqlx::Connection;

/// Runs a script (statements joined by `;`) as the test server's administrator.
async fn admin_script(db: &common::TestDb, statements: &[String]) {
    let script = statements.join(";\n");
    match db.backend {
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&db.raw_url).await.unwrap();
            sqlx::raw_sql(&script).execute(&mut c).await.unwrap();
        }
        _ => {
            let mut c = sqlx::MySqlConnection::connect(&db.raw_url).await.unwrap();
            sqlx::raw_sql(&script).execute(&mut c).await.unwrap();
        }
    }
}

async fn actual_grants(
    db: &common::TestDb,
    config: &Config,
) -> std::collections::BTreeSet<roles::GrantRow> {
    let store = db.connect().await;
    let mut tx = store.begin().await.unwrap();
    let rows = tx
        .rows(&roles::actual_grants_query(config), &[])
        .await
        .unwrap();
    roles::parse_grant_rows(
        rows.iter()
            .map(|r| ["grantee", "object", "privilege", "col"].map(|c| r.text(c).unwrap())),
    )
}

/// The outcome of one statement run as a daemon's role: Ok, or the server's refusal.
async fn as_daemon(
    config: &Config,
    secrets: &Secrets,
    daemon: Daemon,
    sql: &str,
) -> Result<(), String> {
    let (user, password) = roles::login(config, secrets, daemon);
    let store = Store::connect(&DatabaseUrl::for_login(config, &user, password))
        .await
        .map_err(|e| format!("login: {e}"))?;
    let mut tx = store.begin().await.map_err(|e| e.to_string())?;
    let r = tx
        .exec(sql, &[])
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    drop(tx);
    store.close().await;
    r
}

#[tokio::test]
async fn each_daemon_role_holds_only_what_its_queries_need() {
    let mut servers = Vec::new();
    servers.extend(common::postgres().await);
    servers.extend(common::mysql().await);
    for db in servers {
        let engine = if db.backend == Backend::Postgres {
            "postgres"
        } else {
            "mysql"
        };
        let url = url::Url::parse(&db.raw_url).unwrap();
        let config = Config::from_toml(
            &format!(
                "hostname = \"mail.example.test\"\n[database]\nengine = \"{engine}\"\n\
                 host = \"{}\"\nport = {}\nname = \"{}\"\nuser = \"{}\"\n",
                url.host_str().unwrap(),
                url.port().unwrap(),
                db.name,
                url.username()
            ),
            "test",
        )
        .unwrap();
        let secrets =
            Secrets::load_or_generate(std::path::Path::new("/nonexistent/secrets")).unwrap();
        let store = db.connect().await;
        migrate::migrate(&store).await.unwrap();
        // A grant from an earlier version (or by hand) that is no longer wanted...
        admin_script(&db, &roles::apply_statements(&config, &secrets)).await;
        let extra = format!(
            "GRANT INSERT ON {} TO {}",
            if engine == "mysql" {
                format!("`{}`.`core_user`", db.name)
            } else {
                "core_user".into()
            },
            if engine == "mysql" {
                format!(
                    "'{}'@'127.0.0.1'",
                    roles::role_name(&config, Daemon::Postfix)
                )
            } else {
                format!("\"{}\"", roles::role_name(&config, Daemon::Postfix))
            }
        );
        admin_script(&db, &[extra]).await;
        assert_ne!(
            actual_grants(&db, &config).await,
            roles::expected_grants(&config),
            "{engine}"
        );
        // ...is gone after the next apply, which leaves exactly the declared grants.
        admin_script(&db, &roles::apply_statements(&config, &secrets)).await;
        assert_eq!(
            actual_grants(&db, &config).await,
            roles::expected_grants(&config),
            "{engine}"
        );

        // What the daemons' queries need works...
        let allowed = [
            (
                Daemon::Postfix,
                "SELECT email FROM core_user WHERE email = 'x'",
            ),
            (Daemon::Postfix, "SELECT name FROM admin_domain"),
            (
                Daemon::Dovecot,
                "SELECT password FROM core_user WHERE email = 'x'",
            ),
            (
                Daemon::Dovecot,
                "UPDATE core_user SET last_login = NULL WHERE username = 'x'",
            ),
            (
                Daemon::Dovecot,
                "DELETE FROM admin_quota WHERE username = 'x'",
            ),
            (
                Daemon::Opendkim,
                "SELECT domain_name, selector, private_key_path FROM dkim",
            ),
            (
                Daemon::Amavis,
                "SELECT id FROM admin_domain WHERE name = 'x'",
            ),
            (Daemon::Amavis, "DELETE FROM msgs WHERE time_num < 0"),
            (Daemon::Milter, "SELECT da.name FROM admin_domainalias da JOIN admin_mailbox mb ON da.target_id = mb.domain_id"),
            // The policy service in the milter's process: the sending counters.
            (Daemon::Milter, "INSERT INTO modobox_sending_count (name, day, sent) VALUES ('x', '2000-01-01', 1)"),
            (Daemon::Milter, "UPDATE modobox_sending_count SET sent = sent + 1 WHERE name = 'x'"),
            (Daemon::Milter, "SELECT d.name FROM admin_domain d"),
            (Daemon::Postfix, "SELECT email FROM modobox_send_only"),
            (Daemon::Dovecot, "SELECT email FROM modobox_send_only"),
        ];
        for (daemon, sql) in allowed {
            as_daemon(&config, &secrets, daemon, sql)
                .await
                .unwrap_or_else(|e| panic!("{engine} {daemon:?}: {sql}: {e}"));
        }
        // ...and nothing else: writes to tables they only read, hashes Postfix has no use for,
        // tables outside their part.
        let refused = [
            (
                Daemon::Postfix,
                "INSERT INTO core_user (username, email, password) VALUES ('x', 'x', 'x')",
            ),
            (Daemon::Postfix, "SELECT password FROM core_user"),
            (Daemon::Postfix, "UPDATE admin_domain SET enabled = enabled"),
            (Daemon::Postfix, "SELECT * FROM modobox_session"),
            (Daemon::Dovecot, "UPDATE core_user SET password = 'x'"),
            (
                Daemon::Dovecot,
                "UPDATE core_user SET is_superuser = is_superuser",
            ),
            (Daemon::Dovecot, "DELETE FROM admin_mailbox"),
            (
                Daemon::Opendkim,
                "SELECT dkim_private_key_path FROM admin_domain",
            ),
            (Daemon::Opendkim, "SELECT email FROM core_user"),
            (Daemon::Amavis, "SELECT password FROM core_user"),
            (Daemon::Amavis, "UPDATE admin_domain SET enabled = enabled"),
            (Daemon::Milter, "SELECT password FROM core_user"),
            (
                Daemon::Milter,
                "UPDATE admin_senderaddress SET address = address",
            ),
            (Daemon::Milter, "UPDATE admin_domain SET enabled = enabled"),
            (Daemon::Milter, "UPDATE modobox_setting SET value = value"),
        ];
        for (daemon, sql) in refused {
            let err = as_daemon(&config, &secrets, daemon, sql)
                .await
                .expect_err(&format!("{engine} {daemon:?} may run {sql}"));
            assert!(
                err.contains("denied") || err.contains("permission"),
                "{engine} {daemon:?}: {sql}: {err}"
            );
        }
        store.close().await;
        // Roles are server-wide: leave none behind.
        let mut cleanup = Vec::new();
        for daemon in Daemon::ALL {
            let role = roles::role_name(&config, daemon);
            if engine == "postgres" {
                cleanup.push(format!("DROP OWNED BY \"{role}\""));
                cleanup.push(format!("DROP ROLE \"{role}\""));
            } else {
                for host in ["localhost", "127.0.0.1", "::1"] {
                    cleanup.push(format!("DROP USER '{role}'@'{host}'"));
                }
            }
        }
        admin_script(&db, &cleanup).await;
    }
}

// ---- the From: header milter (sending as someone else, item 1) ----

/// A minimal MTA side of the milter protocol: negotiation, the login macro, MAIL, the headers,
/// end of headers; the milter's answer to the headers ('c' or "550 ..." text).
async fn milter_verdict(port: u16, login: Option<&str>, headers: &[(&str, &str)]) -> String {
    use modobox::milter::protocol;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut offer = Vec::new();
    for v in [6u32, 0x1ff, 0x1fffff] {
        offer.extend_from_slice(&v.to_be_bytes());
    }
    protocol::write(&mut s, protocol::OPTNEG, &offer)
        .await
        .unwrap();
    let reply = protocol::read(&mut s).await.unwrap().unwrap();
    assert_eq!(reply.command, protocol::OPTNEG);
    if let Some(l) = login {
        let mut m = b"M{auth_authen}\0".to_vec();
        m.extend_from_slice(l.as_bytes());
        m.push(0);
        protocol::write(&mut s, protocol::MACRO, &m).await.unwrap();
    }
    protocol::write(&mut s, protocol::MAIL, b"<x@y.test>\0")
        .await
        .unwrap();
    let r = protocol::read(&mut s).await.unwrap().unwrap();
    if r.command == protocol::ACCEPT {
        return "accept".into();
    }
    for (name, value) in headers {
        let mut h = name.as_bytes().to_vec();
        h.push(0);
        h.extend_from_slice(value.as_bytes());
        h.push(0);
        protocol::write(&mut s, protocol::HEADER, &h).await.unwrap();
        assert_eq!(
            protocol::read(&mut s).await.unwrap().unwrap().command,
            protocol::CONTINUE
        );
    }
    protocol::write(&mut s, protocol::EOH, &[]).await.unwrap();
    let r = protocol::read(&mut s).await.unwrap().unwrap();
    let verdict = match r.command {
        protocol::CONTINUE => "continue".to_string(),
        protocol::REPLYCODE => String::from_utf8_lossy(&r.data)
            .trim_end_matches('\0')
            .to_string(),
        c => format!("unexpected {}", c as char),
    };
    protocol::write(&mut s, protocol::QUIT, &[]).await.unwrap();
    verdict
}

#[tokio::test]
async fn a_forged_from_header_is_refused_on_submission() {
    for db in common::all().await {
        let engine = db.backend.as_str();
        let store = db.connect().await;
        migrate::migrate(&store).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        let sys = Actor::System;
        for d in ["own.test", "other.test"] {
            domains::create(&mut tx, sys, &dom(d), &DomainSpec::default(), None)
                .await
                .unwrap();
        }
        domains::create_alias(&mut tx, sys, &dom("alias.test"), &dom("own.test"), true)
            .await
            .unwrap();
        for u in ["alice@own.test", "bob@own.test", "ceo@other.test"] {
            accounts::create(&mut tx, sys, &account(u, Role::SimpleUsers, &[]), ROUNDS)
                .await
                .unwrap();
        }
        accounts::add_sender_address(
            &mut tx,
            sys,
            &common::user("alice@own.test"),
            &email("sales@own.test"),
        )
        .await
        .unwrap();
        let alias = |recipients: Vec<String>, enabled: bool| AliasSpec {
            enabled,
            description: String::new(),
            expire_at: None,
            recipients,
        };
        aliases::create(
            &mut tx,
            sys,
            &AliasAddress::parse("address", "info@own.test").unwrap(),
            &alias(vec!["alice@own.test".into()], true),
        )
        .await
        .unwrap();
        aliases::create(
            &mut tx,
            sys,
            &AliasAddress::parse("address", "old@own.test").unwrap(),
            &alias(vec!["alice@own.test".into()], false),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(modobox::milter::serve(
            listener,
            store.clone(),
            std::future::pending(),
        ));
        let alice = Some("Alice@own.test");
        let from = |v: &'static str| vec![("Subject", "x"), ("From", v)];
        // Allowed: her address (any case, display name), her sender address, an alias that
        // delivers to her, her address at a domain alias, several allowed ones together.
        for ok in [
            "alice@own.test",
            "\"Alice A.\" <ALICE@own.test>",
            "sales@own.test",
            "Info <info@own.test>",
            "alice@alias.test",
            "alice@own.test, sales@own.test",
        ] {
            assert_eq!(
                milter_verdict(port, alice, &from(ok)).await,
                "continue",
                "{engine}: From: {ok}"
            );
        }
        // Refused with 550 5.7.1: someone else's address (hosted here or not), one forged
        // address among allowed ones, a second From: header, a disabled alias, someone else's
        // local part at the domain alias, no readable address.
        for (headers, what) in [
            (from("bob@own.test"), "bob@own.test"),
            (from("ceo@other.test"), "ceo@other.test"),
            (from("someone@outside.example"), "someone@outside.example"),
            (from("alice@own.test, ceo@other.test"), "ceo@other.test"),
            (
                vec![("From", "alice@own.test"), ("From", "bob@own.test")],
                "bob@own.test",
            ),
            (from("old@own.test"), "old@own.test"),
            (from("bob@alias.test"), "bob@alias.test"),
            (from("Team: ;"), "no address"),
            (from("<not an address>"), "From: header"),
        ] {
            let v = milter_verdict(port, alice, &headers).await;
            assert!(
                v.starts_with("550 5.7.1") && v.contains(what),
                "{engine}: {headers:?}: {v}"
            );
        }
        // A message without From: is not the milter's to refuse (OpenDKIM signs nothing then);
        // a session without login (port 25 never asks the milter) is accepted at MAIL.
        assert_eq!(
            milter_verdict(port, alice, &[("Subject", "x")]).await,
            "continue"
        );
        assert_eq!(
            milter_verdict(port, None, &from("bob@own.test")).await,
            "accept"
        );
        // With the database gone, the answer is "try again later", never a pass.
        store.close().await;
        let v = milter_verdict(port, alice, &from("alice@own.test")).await;
        assert!(v.starts_with("451 4.3.0"), "{engine}: {v}");
        server.abort();
    }
}
