//! Fresh databases for the store tests: a temporary SQLite file always; a new PostgreSQL and
//! MariaDB database on the servers `tests/db-servers` starts (URLs in MODOBOX_TEST_*_URL).
//! Under CI a missing server is a failure, not a skip.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

pub mod dns;
pub mod matrix;
pub mod steps;
pub mod web;

use modobox::store::access::Role;
use modobox::store::accounts::{AccountSpec, Password};
use modobox::store::{Backend, DatabaseUrl, Store};
use sqlx::Connection;

/// A username the tests know to be valid.
pub fn user(username: &str) -> modobox::names::Username {
    modobox::names::Username::parse(username).unwrap()
}

/// An alias address the tests know to be valid.
pub fn alias(address: &str) -> modobox::store::aliases::AliasAddress {
    modobox::store::aliases::AliasAddress::parse("address", address).unwrap()
}

/// How the tests hash passwords: SHA512-CRYPT with few rounds, quick to make and check.
pub const FAST_HASH: modobox::password::HashPolicy =
    modobox::password::HashPolicy::sha512_crypt(5000);

/// Creates an account as the system, its password hashed with `FAST_HASH`.
pub async fn create_account(
    tx: &mut modobox::store::Tx,
    spec: &AccountSpec,
) -> modobox::store::accounts::Account {
    create_account_result(tx, spec).await.unwrap()
}

/// `create_account`, the refusal kept.
pub async fn create_account_result(
    tx: &mut modobox::store::Tx,
    spec: &AccountSpec,
) -> Result<modobox::store::accounts::Account, modobox::store::StoreError> {
    modobox::store::accounts::create(tx, modobox::store::access::Actor::System, spec, FAST_HASH)
        .await
}

/// An account with the tests' password ("correct horse 1"), with a mailbox of the domain's
/// default quota or none, administering `domains`.
pub fn account_spec(username: &str, role: Role, mailbox: bool, domains: &[&str]) -> AccountSpec {
    AccountSpec {
        username: user(username),
        password: Password::Clear("correct horse 1".into()),
        first_name: String::new(),
        last_name: String::new(),
        enabled: true,
        role,
        mailbox: mailbox.then_some(None),
        mailbox_address: None,
        domains: domains
            .iter()
            .map(|d| modobox::names::DomainName::parse("domain", d).unwrap())
            .collect(),
        profile: Default::default(),
        mailbox_settings: Default::default(),
    }
}

pub struct TestDb {
    pub backend: Backend,
    pub url: DatabaseUrl,
    pub raw_url: String,
    pub name: String,
    _dir: Option<tempfile::TempDir>,
}

fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        chrono::Utc::now().timestamp_micros() % 1_000_000
    )
}

fn server_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var("CI").is_err(),
                "{var} is not set: run the tests through tests/run-all (it starts the servers)"
            );
            eprintln!("{var} not set: skipping this engine (tests/run-all starts the servers)");
            None
        }
    }
}

fn with_db(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{db}")
}

pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("modobox.db");
    let raw = format!("sqlite://{}", path.display());
    TestDb {
        backend: Backend::Sqlite,
        url: DatabaseUrl::parse(&raw).unwrap(),
        raw_url: raw,
        name: path.display().to_string(),
        _dir: Some(dir),
    }
}

pub async fn postgres() -> Option<TestDb> {
    let admin = server_url("MODOBOX_TEST_POSTGRES_URL")?;
    let name = unique("mbx");
    let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut c)
        .await
        .unwrap();
    c.close().await.unwrap();
    let raw = with_db(&admin, &name);
    Some(TestDb {
        backend: Backend::Postgres,
        url: DatabaseUrl::parse(&raw).unwrap(),
        raw_url: raw,
        name,
        _dir: None,
    })
}

pub async fn mysql() -> Option<TestDb> {
    let admin = server_url("MODOBOX_TEST_MYSQL_URL")?;
    let name = unique("mbx");
    let mut c = sqlx::MySqlConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!(
        "CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
    ))
    .execute(&mut c)
    .await
    .unwrap();
    c.close().await.unwrap();
    let raw = with_db(&admin, &name);
    Some(TestDb {
        backend: Backend::Mysql,
        url: DatabaseUrl::parse(&raw).unwrap(),
        raw_url: raw,
        name,
        _dir: None,
    })
}

/// SQLite, then PostgreSQL and MariaDB when their servers are there.
pub async fn all() -> Vec<TestDb> {
    let mut v = vec![sqlite().await];
    v.extend(postgres().await);
    v.extend(mysql().await);
    v
}

impl TestDb {
    pub async fn connect(&self) -> Store {
        Store::connect(&self.url).await.unwrap()
    }

    /// The MariaDB client, connected as the URL says (its password in the environment).
    fn mariadb(&self) -> Command {
        let u = url::Url::parse(&self.raw_url).unwrap();
        let mut c = Command::new("mariadb");
        c.arg(format!("--host={}", u.host_str().unwrap()))
            .arg(format!("--port={}", u.port().unwrap()))
            .arg(format!("--user={}", u.username()))
            .env("MYSQL_PWD", u.password().unwrap());
        c
    }

    /// Runs an SQL file with the engine's own client (the fixtures are client dumps).
    pub fn load_sql_file(&self, file: &std::path::Path) {
        let out = match self.backend {
            Backend::Sqlite => Command::new("sqlite3")
                .arg(&self.name)
                .stdin(std::fs::File::open(file).unwrap())
                .output(),
            Backend::Postgres => Command::new("psql")
                .args(["-q", "-v", "ON_ERROR_STOP=1", &self.raw_url, "-f"])
                .arg(file)
                .output(),
            Backend::Mysql => self
                .mariadb()
                .arg(&self.name)
                .stdin(std::fs::File::open(file).unwrap())
                .output(),
        }
        .expect("running the database client");
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "loading {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A second database holding what this one holds (SQLite: the file; PostgreSQL: a
    /// template copy). Nothing may be connected to this one meanwhile.
    pub async fn copy(&self) -> TestDb {
        match self.backend {
            Backend::Sqlite => {
                let other = sqlite().await;
                std::fs::copy(&self.name, &other.name).unwrap();
                other
            }
            Backend::Postgres => {
                let admin = server_url("MODOBOX_TEST_POSTGRES_URL").unwrap();
                let name = unique("mbx");
                let mut c = sqlx::PgConnection::connect(&admin).await.unwrap();
                sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {}", self.name))
                    .execute(&mut c)
                    .await
                    .unwrap();
                c.close().await.unwrap();
                let raw = with_db(&admin, &name);
                TestDb {
                    backend: Backend::Postgres,
                    url: DatabaseUrl::parse(&raw).unwrap(),
                    raw_url: raw,
                    name,
                    _dir: None,
                }
            }
            Backend::Mysql => panic!("TestDb::copy: not made for MariaDB"),
        }
    }

    /// The rows of some tables as text, in a stable order (to prove data was not touched).
    pub fn dump_tables(&self, tables: &[&str]) -> String {
        tables
            .iter()
            .map(|t| {
                format!(
                    "== {t}\n{}",
                    self.query(&format!("SELECT * FROM {t} ORDER BY 1"))
                )
            })
            .collect()
    }

    /// Runs SQL statements with the engine's own client; what they print, one row a line.
    pub fn query(&self, sql: &str) -> String {
        let out = match self.backend {
            Backend::Sqlite => Command::new("sqlite3").arg(&self.name).arg(sql).output(),
            Backend::Postgres => Command::new("psql")
                .args([
                    "-X",
                    "-A",
                    "-t",
                    "-v",
                    "ON_ERROR_STOP=1",
                    &self.raw_url,
                    "-c",
                    sql,
                ])
                .output(),
            Backend::Mysql => self
                .mariadb()
                .args(["-N", "-B", &self.name, "-e", sql])
                .output(),
        }
        .unwrap();
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}
