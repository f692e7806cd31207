//! The database: one `Store` over PostgreSQL, MariaDB/MySQL or SQLite (chosen from the URL),
//! the migrations that create Modoboa's schema plus modobox's own tables, and the operations
//! that keep Modoboa's invariants. Nothing outside this module writes SQL.

pub mod access;
pub mod accounts;
pub mod aliases;
pub mod audit;
pub mod db;
pub mod dmarc_reports;
pub mod dnschecks;
pub mod domains;
pub mod events;
pub mod inventory;
pub mod local_admin;
pub mod migrate;
pub mod modoboa_schema;
pub mod modoboa_settings;
pub mod parameters;
pub mod quarantine;
pub mod roles;
pub mod sending;
pub mod sessions;
pub mod tasks;
pub mod tls_reports;
pub mod tokens;
pub mod transfer;

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::Connection;

use crate::config::{Config, Engine};
use crate::names::{NameError, Username, UsernameError};
use crate::secrets::Secrets;

pub use db::{contains_pattern, prefix_pattern, Page, Row, Tx, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Mysql,
    Sqlite,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Mysql => "mysql",
            Backend::Sqlite => "sqlite",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Invalid(#[from] NameError),
    #[error("{kind} {name} does not exist")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} {name} already exists")]
    Exists { kind: &'static str, name: String },
    #[error("{field}: {rule}")]
    Refused { field: String, rule: String },
    #[error("permission denied: {0}")]
    Forbidden(String),
    #[error("the database holds something modobox cannot read: {what}")]
    Corrupt { what: String },
    #[error("database URL: {0}")]
    Url(String),
    #[error("migrations: {0}")]
    Migration(String),
    #[error("password: {0}")]
    Password(#[from] crate::password::PasswordError),
}

impl From<UsernameError> for StoreError {
    fn from(e: UsernameError) -> Self {
        match e {
            UsernameError::Address(n) => StoreError::Invalid(n),
            UsernameError::Login => StoreError::refused("username", Username::LOGIN_RULE),
        }
    }
}

impl StoreError {
    pub fn not_found(kind: &'static str, name: impl fmt::Display) -> Self {
        StoreError::NotFound {
            kind,
            name: name.to_string(),
        }
    }

    /// A value read back from the database that fails the rule it was written under.
    pub fn corrupt(what: impl fmt::Display, e: impl fmt::Display) -> Self {
        StoreError::Corrupt {
            what: format!("{what}: {e}"),
        }
    }

    pub fn refused(field: &str, rule: impl Into<String>) -> Self {
        StoreError::Refused {
            field: field.to_string(),
            rule: rule.into(),
        }
    }

    /// SQLite's "database or disk is full" (SQLITE_FULL, code 13): with no page limit set, the
    /// disk it writes to is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::Db(sqlx::Error::Database(e))
            if e.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some()
                && e.code().as_deref() == Some("13"))
    }
}

/// A database URL (`postgres://`, `mysql://` or `mariadb://`, `sqlite://`). Holds the
/// password, so it never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        let text = text.trim();
        let backend = Self::backend_of(text)?;
        if backend != Backend::Sqlite {
            url::Url::parse(text).map_err(|e| StoreError::Url(format!("not a valid URL ({e})")))?;
        }
        Ok(DatabaseUrl(text.to_string()))
    }

    fn backend_of(text: &str) -> Result<Backend, StoreError> {
        let scheme = text.split_once(':').map(|(s, _)| s).unwrap_or("");
        match scheme {
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            "mysql" | "mariadb" => Ok(Backend::Mysql),
            "sqlite" => Ok(Backend::Sqlite),
            _ => Err(StoreError::Url(
                "the scheme must be postgres://, mysql://, mariadb:// or sqlite://".into(),
            )),
        }
    }

    pub fn backend(&self) -> Backend {
        // Checked in parse().
        Self::backend_of(&self.0).unwrap_or(Backend::Sqlite)
    }

    /// The URL of the configured database (credentials from the secrets file).
    pub fn from_config(config: &Config, secrets: &Secrets) -> Self {
        Self::for_login(
            config,
            config.database.user.as_str(),
            secrets.database_password.expose(),
        )
    }

    /// The URL of the configured database as another role (a daemon's, see `roles`).
    pub fn for_login(config: &Config, user: &str, password: &str) -> Self {
        let db = &config.database;
        match db.engine {
            Engine::Sqlite => DatabaseUrl(format!("sqlite://{}", db.sqlite_path)),
            Engine::Postgres | Engine::Mysql => {
                let scheme = if db.engine == Engine::Postgres {
                    "postgres"
                } else {
                    "mysql"
                };
                // Host, user and name are validated identifiers; only the password needs encoding.
                let password = percent_encoding::utf8_percent_encode(
                    password,
                    percent_encoding::NON_ALPHANUMERIC,
                );
                let host = if db.host.as_str().contains(':') {
                    format!("[{}]", db.host)
                } else {
                    db.host.to_string()
                };
                DatabaseUrl(format!(
                    "{scheme}://{user}:{password}@{host}:{}/{}",
                    db.port(),
                    db.name
                ))
            }
        }
    }

    fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password replaced, fit for messages.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("***"));
                u.to_string()
            }
            _ => self.0.clone(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

/// A new SQLite file starts as 0600: it holds password hashes. The installer grants the
/// daemons that read it (Postfix, Dovecot) access explicitly.
fn private_file(path: &std::path::Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    if path.as_os_str().is_empty() || path == std::path::Path::new(":memory:") || path.exists() {
        return Ok(());
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .or_else(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Ok(())
            } else {
                Err(StoreError::Url(format!("creating {}: {e}", path.display())))
            }
        })
}

/// Whether the SQLite file at `path` passes `PRAGMA integrity_check` (a copy is checked before
/// it is trusted).
pub async fn check_sqlite_file(path: &Path) -> Result<(), StoreError> {
    let opts = SqliteConnectOptions::new().filename(path).read_only(true);
    let mut db = sqlx::SqliteConnection::connect_with(&opts).await?;
    let verdict: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut db)
        .await?;
    db.close().await?;
    if verdict != "ok" {
        return Err(StoreError::Migration(format!(
            "{} fails its integrity check: {verdict}",
            path.display()
        )));
    }
    Ok(())
}

/// The database, whichever engine holds it.
/// The database: a connection pool, and what it learnt of an adopted Modoboa schema.
#[derive(Debug, Clone)]
pub struct Store {
    pub pool: Pool,
    schema: modoboa_schema::Cache,
}

#[derive(Debug, Clone)]
pub enum Pool {
    Postgres(PgPool),
    Mysql(MySqlPool),
    Sqlite(SqlitePool),
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Store {
    pub async fn connect(url: &DatabaseUrl) -> Result<Store, StoreError> {
        let max = std::thread::available_parallelism().map_or(4, |n| n.get() as u32 * 2 + 2);
        let fail = |e: sqlx::Error| StoreError::Url(format!("{}: {e}", url.redacted()));
        let pool = match url.backend() {
            Backend::Postgres => {
                let opts = PgConnectOptions::from_str(url.expose()).map_err(fail)?;
                Pool::Postgres(
                    PgPoolOptions::new()
                        .max_connections(max)
                        .acquire_timeout(CONNECT_TIMEOUT)
                        .connect_with(opts)
                        .await
                        .map_err(fail)?,
                )
            }
            Backend::Mysql => {
                let text = url.expose().replacen("mariadb://", "mysql://", 1);
                let opts = MySqlConnectOptions::from_str(&text)
                    .map_err(fail)?
                    .charset("utf8mb4");
                Pool::Mysql(
                    MySqlPoolOptions::new()
                        .max_connections(max)
                        .acquire_timeout(CONNECT_TIMEOUT)
                        .connect_with(opts)
                        .await
                        .map_err(fail)?,
                )
            }
            Backend::Sqlite => {
                let opts = SqliteConnectOptions::from_str(url.expose()).map_err(fail)?;
                private_file(opts.get_filename())?;
                let opts = opts
                    .create_if_missing(true)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10));
                Pool::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(max.min(8))
                        .acquire_timeout(CONNECT_TIMEOUT)
                        .connect_with(opts)
                        .await
                        .map_err(fail)?,
                )
            }
        };
        Ok(Store::from_pool(pool))
    }

    pub fn from_pool(pool: Pool) -> Store {
        Store {
            pool,
            schema: modoboa_schema::Cache::default(),
        }
    }

    /// Forgets what was learnt of the schema (after migrations or an adoption changed it).
    pub fn forget_schema(&self) {
        self.schema.clear();
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Postgres(_) => Backend::Postgres,
            Pool::Mysql(_) => Backend::Mysql,
            Pool::Sqlite(_) => Backend::Sqlite,
        }
    }

    pub async fn begin(&self) -> Result<Tx, StoreError> {
        let schema = self.schema.clone();
        Ok(match &self.pool {
            Pool::Postgres(p) => Tx::postgres(p.begin().await?, schema),
            Pool::Mysql(p) => Tx::mysql(p.begin().await?, schema),
            // A deferred transaction that reads and then writes cannot wait for another
            // writer (SQLite answers SQLITE_BUSY at once: `modobox mailbox add` failed while
            // a job wrote); an immediate one takes the write lock first and waits for it
            // (busy_timeout).
            Pool::Sqlite(p) => Tx::sqlite(p.begin_with("BEGIN IMMEDIATE").await?, schema),
        })
    }

    /// A transaction that only reads: on SQLite a deferred one, which needs no write lock (and
    /// so no write access to the file: the milter's).
    pub async fn begin_read(&self) -> Result<Tx, StoreError> {
        Ok(match &self.pool {
            Pool::Sqlite(p) => Tx::sqlite(p.begin().await?, self.schema.clone()),
            _ => self.begin().await?,
        })
    }

    /// SQLite only: a consistent copy of the whole database into the new file `dest`
    /// (`VACUUM INTO` reads one snapshot while writers go on), checked with
    /// `PRAGMA integrity_check` before it is trusted.
    pub async fn copy_sqlite_into(&self, dest: &Path) -> Result<(), StoreError> {
        let Pool::Sqlite(pool) = &self.pool else {
            return Err(StoreError::Migration(
                "a file copy of the database exists only for SQLite".into(),
            ));
        };
        let target = dest.to_string_lossy().into_owned();
        sqlx::query("VACUUM INTO ?")
            .bind(&target)
            .execute(pool)
            .await?;
        check_sqlite_file(dest).await
    }

    pub async fn close(&self) {
        match &self.pool {
            Pool::Postgres(p) => p.close().await,
            Pool::Mysql(p) => p.close().await,
            Pool::Sqlite(p) => p.close().await,
        }
    }
}
