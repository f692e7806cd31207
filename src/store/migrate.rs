//! Schema migrations, embedded per engine and recorded in `modobox_schema_migration` with a
//! checksum: a migration is never edited once released, only followed by a new one.
//! Adoption of a Modoboa database records the Modoboa schema as already there and runs only
//! what modobox adds.

use chrono::Utc;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{modoboa_schema, Backend, Store, StoreError, Tx};
use crate::args;

struct Migration {
    version: i32,
    name: &'static str,
    postgres: &'static str,
    mysql: &'static str,
    sqlite: &'static str,
}

macro_rules! migration {
    ($version:expr, $file:literal) => {
        Migration {
            version: $version,
            name: $file,
            postgres: include_str!(concat!("migrations/postgres/", $file, ".sql")),
            mysql: include_str!(concat!("migrations/mysql/", $file, ".sql")),
            sqlite: include_str!(concat!("migrations/sqlite/", $file, ".sql")),
        }
    };
}

/// Version 1 is the Modoboa schema itself: an adopted database already has it.
const MODOBOA_SCHEMA: i32 = 1;

static MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_modoboa_schema"),
    migration!(2, "0002_amavis_quarantine"),
    migration!(3, "0003_modobox_tables"),
    migration!(4, "0004_task_run_slot"),
    migration!(5, "0005_sending_count"),
    migration!(6, "0006_tls_reports"),
    migration!(7, "0007_dmarc_reports"),
];

/// The first line of a migration that only adds (tables, columns with defaults, indexes, views)
/// and so leaves every query of older versions working: an older modobox accepts a database
/// whose newer migrations all say so (a rolled-back upgrade keeps its data).
const ADDITIVE_MARK: &str = "-- additive";

impl Migration {
    fn additive(&self) -> bool {
        [self.postgres, self.mysql, self.sqlite].iter().all(|sql| {
            sql.lines()
                .next()
                .is_some_and(|l| l.trim() == ADDITIVE_MARK)
        })
    }

    fn sql(&self, backend: Backend) -> &'static str {
        match backend {
            Backend::Postgres => self.postgres,
            Backend::Mysql => self.mysql,
            Backend::Sqlite => self.sqlite,
        }
    }
    fn checksum(&self, backend: Backend) -> String {
        let digest = Sha256::digest(self.sql(backend).as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// One statement per `;` at the end of a line; `--` comment lines dropped.
fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with("--") {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if trimmed.ends_with(';') {
            let stmt = current.trim().trim_end_matches(';').to_string();
            out.push(stmt);
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MigrationState {
    pub version: i32,
    pub name: &'static str,
    pub applied: bool,
    /// Recorded as present without running (adopted Modoboa schema).
    pub baseline: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub backend: &'static str,
    /// The database holds Modoboa's tables but modobox never migrated it.
    pub unadopted_modoboa: bool,
    pub migrations: Vec<MigrationState>,
    /// Migrations of a newer modobox applied to this database, all additive (else `status`
    /// refuses): this version works with them.
    pub newer_additive: Vec<i32>,
}

impl Status {
    pub fn pending(&self) -> usize {
        self.migrations.iter().filter(|m| !m.applied).count()
    }
}

const LEDGER: &str = "modobox_schema_migration";

async fn table_exists(tx: &mut Tx, name: &str) -> Result<bool, StoreError> {
    tx.table_exists(name).await
}

async fn ensure_ledger(tx: &mut Tx) -> Result<(), StoreError> {
    let ts = match tx.backend() {
        Backend::Postgres => "timestamp with time zone",
        Backend::Mysql => "datetime(6)",
        Backend::Sqlite => "datetime",
    };
    tx.exec(
        &format!(
            "CREATE TABLE IF NOT EXISTS {LEDGER} (version integer NOT NULL PRIMARY KEY, \
             name varchar(100) NOT NULL, checksum varchar(64) NOT NULL, \
             baseline {bool} NOT NULL, applied_at {ts} NOT NULL)",
            bool = if tx.backend() == Backend::Postgres {
                "boolean"
            } else {
                "bool"
            }
        ),
        &[],
    )
    .await?;
    if !has_additive_column(tx).await? {
        // Ledgers written before the additive rule: older binaries insert without the
        // column, so it has a default.
        tx.exec(
            &format!(
                "ALTER TABLE {LEDGER} ADD COLUMN additive {} NOT NULL DEFAULT {}",
                if tx.backend() == Backend::Postgres {
                    "boolean"
                } else {
                    "bool"
                },
                if tx.backend() == Backend::Postgres {
                    "false"
                } else {
                    "0"
                }
            ),
            &[],
        )
        .await?;
    }
    Ok(())
}

async fn has_additive_column(tx: &mut Tx) -> Result<bool, StoreError> {
    let sql = match tx.backend() {
        Backend::Postgres => {
            "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ? AND column_name = 'additive'"
        }
        Backend::Mysql => {
            "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = ? AND column_name = 'additive'"
        }
        Backend::Sqlite => "SELECT COUNT(*) FROM pragma_table_info(?) WHERE name = 'additive'",
    };
    Ok(tx.count(sql, args![LEDGER]).await? > 0)
}

/// Serialises migrators on servers shared by several nodes; released with the transaction
/// (PostgreSQL) or the session (MySQL). SQLite's write lock does the same job.
async fn lock(tx: &mut Tx) -> Result<(), StoreError> {
    match tx.backend() {
        Backend::Postgres => {
            tx.exec("SELECT pg_advisory_xact_lock(7310004201)", &[])
                .await?;
        }
        Backend::Mysql => {
            let got = tx
                .count("SELECT GET_LOCK('modobox_migrate', 120)", &[])
                .await?;
            if got != 1 {
                return Err(StoreError::Migration(
                    "another node has been migrating this database for 2 minutes".into(),
                ));
            }
        }
        Backend::Sqlite => {}
    }
    Ok(())
}

async fn unlock(tx: &mut Tx) -> Result<(), StoreError> {
    if tx.backend() == Backend::Mysql {
        tx.exec("SELECT RELEASE_LOCK('modobox_migrate')", &[])
            .await?;
    }
    Ok(())
}

/// MySQL and MariaDB commit each DDL statement on its own (the migration's transaction does
/// not cover them), so a migration failing half-way stays half-applied, and running it again
/// from its start would fail on what its first statements made ("Duplicate column name").
/// There, how many statements of an unfinished migration took effect is kept in this table
/// (committed with each of them), and the next run resumes after them.
const PROGRESS: &str = "modobox_schema_progress";

/// How many statements of the unfinished migration `m` took effect (MySQL only; else 0).
async fn statements_done(tx: &mut Tx, m: &Migration) -> Result<usize, StoreError> {
    if tx.backend() != Backend::Mysql {
        return Ok(0);
    }
    let rows = tx
        .rows(
            &format!("SELECT checksum, statements FROM {PROGRESS} WHERE version = ?"),
            args![m.version],
        )
        .await?;
    let Some(row) = rows.first() else {
        return Ok(0);
    };
    if row.text("checksum")? != m.checksum(Backend::Mysql) {
        return Err(changed(m));
    }
    Ok(usize::try_from(row.i32("statements")?).unwrap_or(0))
}

async fn ensure_progress(tx: &mut Tx) -> Result<(), StoreError> {
    tx.exec(
        &format!(
            "CREATE TABLE IF NOT EXISTS {PROGRESS} (version integer NOT NULL PRIMARY KEY, \
             checksum varchar(64) NOT NULL, statements integer NOT NULL)"
        ),
        &[],
    )
    .await?;
    Ok(())
}

/// Records that `done` statements of `m` took effect (MySQL only): committed with the
/// statement (a DDL statement commits itself, the row after it is committed on its own).
async fn record_progress(tx: &mut Tx, m: &Migration, done: usize) -> Result<(), StoreError> {
    if tx.backend() != Backend::Mysql {
        return Ok(());
    }
    let done = i32::try_from(done).unwrap_or(i32::MAX);
    tx.exec(
        &format!("REPLACE INTO {PROGRESS} (version, checksum, statements) VALUES (?, ?, ?)"),
        args![m.version, m.checksum(Backend::Mysql), done],
    )
    .await?;
    Ok(())
}

struct Recorded {
    version: i32,
    checksum: String,
    baseline: bool,
    additive: bool,
}

async fn recorded(tx: &mut Tx) -> Result<Vec<Recorded>, StoreError> {
    if !table_exists(tx, LEDGER).await? {
        return Ok(Vec::new());
    }
    let additive = match (has_additive_column(tx).await?, tx.backend()) {
        (true, _) => "additive",
        (false, Backend::Postgres) => "false AS additive",
        (false, _) => "0 AS additive",
    };
    let rows = tx
        .rows(
            &format!(
                "SELECT version, checksum, baseline, {additive} FROM {LEDGER} ORDER BY version"
            ),
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Recorded {
                version: r.i32("version")?,
                checksum: r.text("checksum")?,
                baseline: r.bool("baseline")?,
                additive: r.bool("additive")?,
            })
        })
        .collect()
}

/// The applied migrations after `version`, each with whether it is additive (the rollback of an
/// upgrade keeps the database when they all are and the old version accepts them).
pub async fn applied_after(store: &Store, version: i32) -> Result<Vec<(i32, bool)>, StoreError> {
    let mut tx = store.begin_read().await?;
    Ok(recorded(&mut tx)
        .await?
        .into_iter()
        .filter(|r| r.version > version)
        .map(|r| (r.version, r.additive))
        .collect())
}

/// Migrations that failed half-way and left statements applied (MariaDB, whose DDL commits
/// itself; on the other engines a failing migration's transaction leaves nothing).
pub async fn unfinished(store: &Store) -> Result<Vec<i32>, StoreError> {
    let mut tx = store.begin_read().await?;
    if tx.backend() != Backend::Mysql || !table_exists(&mut tx, PROGRESS).await? {
        return Ok(Vec::new());
    }
    tx.rows(
        &format!("SELECT version FROM {PROGRESS} WHERE statements > 0 ORDER BY version"),
        &[],
    )
    .await?
    .iter()
    .map(|r| r.i32("version"))
    .collect()
}

async fn has_modoboa_tables(tx: &mut Tx) -> Result<bool, StoreError> {
    Ok(table_exists(tx, "admin_domain").await? && table_exists(tx, "core_user").await?)
}

pub async fn status(store: &Store) -> Result<Status, StoreError> {
    let mut tx = store.begin().await?;
    let done = recorded(&mut tx).await?;
    let unadopted_modoboa = done.is_empty() && has_modoboa_tables(&mut tx).await?;
    let backend = store.backend();
    let mut migrations = Vec::new();
    for m in MIGRATIONS {
        let rec = done.iter().find(|r| r.version == m.version);
        if let Some(r) = rec {
            if !r.baseline && r.checksum != m.checksum(backend) {
                return Err(changed(m));
            }
        }
        migrations.push(MigrationState {
            version: m.version,
            name: m.name,
            applied: rec.is_some(),
            baseline: rec.is_some_and(|r| r.baseline),
        });
    }
    if let Some(newer) = done.iter().find(|r| r.version > latest() && !r.additive) {
        return Err(StoreError::Migration(format!(
            "the database is at version {}, newer than this modobox knows ({}), and that \
             migration changes what this version reads: upgrade modobox",
            newer.version,
            latest()
        )));
    }
    Ok(Status {
        backend: backend.as_str(),
        unadopted_modoboa,
        migrations,
        newer_additive: done
            .iter()
            .filter(|r| r.version > latest())
            .map(|r| r.version)
            .collect(),
    })
}

/// The newest schema version this modobox knows.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

fn changed(m: &Migration) -> StoreError {
    StoreError::Migration(format!(
        "migration {} ({}) differs from the one applied to this database: migrations must never be edited",
        m.version, m.name
    ))
}

/// Applies what is pending; returns the versions applied. Refuses a Modoboa database that was
/// never adopted (its tables exist: running migration 1 would fail half-way).
pub async fn migrate(store: &Store) -> Result<Vec<i32>, StoreError> {
    run(store, false).await
}

/// Takes over a database created by Modoboa (1.10 to 2.12): records the Modoboa schema as
/// present and adds modobox's tables (and the `dkim` view when Modoboa's is missing). Rows
/// and Modoboa's tables are not touched. Refuses, changing nothing, what `adoption` finds
/// unsupported.
pub async fn adopt(store: &Store) -> Result<Vec<i32>, StoreError> {
    let applied = run(store, true).await;
    store.forget_schema();
    applied
}

/// What adopting this database would do (`modobox db adopt --check`), changing nothing.
#[derive(Debug, Clone, Serialize)]
pub struct Adoption {
    /// The Modoboa release that last migrated it, from `django_migrations`.
    pub release: Option<modoboa_schema::Release>,
    /// Columns of later Modoboa releases that modobox fills with Django's default on insert.
    pub filled_columns: Vec<String>,
    /// JSON columns modobox reads and writes in their type.
    pub json_columns: Vec<String>,
    /// Tables of other Modoboa applications whose rows modobox removes (or sets to NULL) with
    /// the account, mailbox or domain they point at, as Django does.
    pub cleaned_tables: Vec<String>,
    /// Tables pointing at accounts, mailboxes or domains that modobox does not know: a
    /// deletion that finds rows there is refused.
    pub unknown_references: Vec<String>,
    /// modobox's own migrations that would be applied.
    pub migrations: Vec<i32>,
    /// Why it cannot be adopted, when it cannot.
    pub refused: Option<String>,
}

/// The adoption check: the release, the columns and tables modobox would have to deal with,
/// and whether it can.
pub async fn adoption(store: &Store) -> Result<Adoption, StoreError> {
    let mut tx = store.begin_read().await?;
    let done = recorded(&mut tx).await?;
    let (release, schema, refused) = adoption_check(&mut tx, &done).await?;
    drop(tx);
    Ok(Adoption {
        release,
        filled_columns: schema.filled_columns(),
        json_columns: schema.json_columns(),
        cleaned_tables: schema.cleaned_tables(),
        unknown_references: schema.unknown_references(),
        migrations: MIGRATIONS
            .iter()
            .map(|m| m.version)
            .filter(|v| *v != MODOBOA_SCHEMA)
            .collect(),
        refused,
    })
}

/// What `adoption` reports and `adopt` refuses on: the release, the schema, and why this
/// database cannot be adopted, if it cannot.
async fn adoption_check(
    tx: &mut Tx,
    done: &[Recorded],
) -> Result<
    (
        Option<modoboa_schema::Release>,
        modoboa_schema::Schema,
        Option<String>,
    ),
    StoreError,
> {
    let mut refused = if !has_modoboa_tables(tx).await? {
        Some("nothing to adopt: this database has no Modoboa tables (admin_domain, core_user); use `modobox db migrate`".to_string())
    } else if done.iter().any(|r| r.version == MODOBOA_SCHEMA) {
        Some("this database is already managed by modobox; use `modobox db migrate`".to_string())
    } else {
        None
    };
    let release = modoboa_schema::release(tx).await?;
    if refused.is_none() {
        refused = release.as_ref().and_then(|r| r.unsupported.clone());
    }
    let schema = modoboa_schema::read(tx).await?;
    let missing = schema.unwritable();
    if refused.is_none() && !missing.is_empty() {
        refused = Some(format!(
            "NOT NULL columns without a default that modobox does not know how to fill: {} (a Modoboa release or extension newer than this modobox)",
            missing.join(", ")
        ));
    }
    Ok((release, schema, refused))
}

/// Runs `work` while holding the migrators' lock, so that no schema change lands in the middle
/// of it (a backup's database dump); returns the schema version it saw with its result.
pub async fn while_locked<T, F>(store: &Store, work: F) -> Result<(i32, T), StoreError>
where
    F: std::future::Future<Output = T>,
{
    let mut tx = store.begin_read().await?;
    lock(&mut tx).await?;
    let version = match recorded(&mut tx).await {
        Ok(r) => r.last().map_or(0, |m| m.version),
        Err(e) => {
            let _ = unlock(&mut tx).await;
            return Err(e);
        }
    };
    let result = work.await;
    unlock(&mut tx).await?;
    // Read only: dropping the transaction ends it.
    drop(tx);
    Ok((version, result))
}

async fn run(store: &Store, adopting: bool) -> Result<Vec<i32>, StoreError> {
    let backend = store.backend();
    let mut tx = store.begin().await?;
    lock(&mut tx).await?;
    let result = match apply(&mut tx, backend, adopting).await {
        Ok(applied) => define_send_only_view(&mut tx, backend)
            .await
            .map(|()| applied),
        Err(e) => Err(e),
    };
    unlock(&mut tx).await?;
    let applied = result?;
    tx.commit().await?;
    Ok(applied)
}

/// Which definition of `modobox_send_only` the database holds (a `modobox_setting` key).
const SEND_ONLY_VIEW: &str = "send_only_view";

/// The definition `modobox_send_only` needs ("column" or "none") when the database does not
/// hold it yet.
async fn send_only_view_to_define(tx: &mut Tx) -> Result<Option<&'static str>, StoreError> {
    let has_column = modoboa_schema::read(tx).await?.mailbox_send_only();
    let variant = if has_column { "column" } else { "none" };
    let current = if table_exists(tx, "modobox_send_only").await?
        && table_exists(tx, "modobox_setting").await?
    {
        super::parameters::setting(tx, SEND_ONLY_VIEW).await?
    } else {
        None
    };
    Ok((current.as_deref() != Some(variant)).then_some(variant))
}

/// What the next migration run has to (re)define besides migrations, for the install's schema
/// step.
pub async fn views_pending(store: &Store) -> Result<Vec<String>, StoreError> {
    let mut tx = store.begin_read().await?;
    if !table_exists(&mut tx, "admin_mailbox").await? {
        return Ok(Vec::new());
    }
    Ok(send_only_view_to_define(&mut tx)
        .await?
        .map(|_| "define the modobox_send_only view (Modoboa 2.x send-only mailboxes)".to_string())
        .into_iter()
        .collect())
}

/// The `modobox_send_only` view: the addresses of the send-only mailboxes (Modoboa 2.2+'s
/// `admin_mailbox.is_send_only`: SMTP only, no IMAP, POP3 or delivery), empty where that
/// column does not exist. Dovecot and Postfix read the view, so their queries are the same
/// whichever Modoboa made the database. Checked at every run: Modoboa migrating the database
/// underneath adds the column, and the view then follows it. `CREATE OR REPLACE` keeps the
/// daemons' grants on it (SQLite has none to keep).
async fn define_send_only_view(tx: &mut Tx, backend: Backend) -> Result<(), StoreError> {
    let Some(variant) = send_only_view_to_define(tx).await? else {
        return Ok(());
    };
    let has_column = variant == "column";
    let sql_true = match backend {
        Backend::Postgres => "TRUE",
        Backend::Mysql | Backend::Sqlite => "1",
    };
    let body = if has_column {
        format!(
            "SELECT u.email AS email FROM core_user u INNER JOIN admin_mailbox mb ON mb.user_id = u.id WHERE mb.is_send_only = {sql_true}"
        )
    } else {
        "SELECT u.email AS email FROM core_user u WHERE 1 = 0".to_string()
    };
    match backend {
        Backend::Postgres | Backend::Mysql => {
            tx.exec(
                &format!("CREATE OR REPLACE VIEW modobox_send_only AS {body}"),
                &[],
            )
            .await?;
        }
        Backend::Sqlite => {
            tx.exec("DROP VIEW IF EXISTS modobox_send_only", &[])
                .await?;
            tx.exec(&format!("CREATE VIEW modobox_send_only AS {body}"), &[])
                .await?;
        }
    }
    super::parameters::set_setting(tx, SEND_ONLY_VIEW, variant).await
}

async fn apply(tx: &mut Tx, backend: Backend, adopting: bool) -> Result<Vec<i32>, StoreError> {
    let done = recorded(tx).await?;
    let modoboa = has_modoboa_tables(tx).await?;
    if adopting {
        if let (_, _, Some(why)) = adoption_check(tx, &done).await? {
            return Err(StoreError::Migration(format!("{why}; nothing was changed")));
        }
    } else if done.is_empty() && modoboa {
        return Err(StoreError::Migration(
            "this database already holds Modoboa's tables: take it over with `modobox db adopt`"
                .into(),
        ));
    }
    ensure_ledger(tx).await?;
    let mut applied = Vec::new();
    for m in MIGRATIONS {
        if let Some(r) = done.iter().find(|r| r.version == m.version) {
            if !r.baseline && r.checksum != m.checksum(backend) {
                return Err(changed(m));
            }
            continue;
        }
        let baseline = adopting && m.version == MODOBOA_SCHEMA;
        if baseline {
            if !table_exists(tx, "dkim").await? {
                let view = statements(m.sql(backend))
                    .into_iter()
                    .find(|s| s.starts_with("CREATE VIEW dkim"))
                    .ok_or_else(|| StoreError::Migration("the dkim view is missing".into()))?;
                tx.exec(&view, &[]).await?;
            }
        } else {
            let failed = |e: &dyn std::fmt::Display| {
                StoreError::Migration(format!("migration {} ({}): {e}", m.version, m.name))
            };
            if backend == Backend::Mysql {
                ensure_progress(tx).await?;
            }
            let done_before = statements_done(tx, m).await?;
            for (n, stmt) in statements(m.sql(backend))
                .iter()
                .enumerate()
                .skip(done_before)
            {
                // Before its n-th statement (from 1): a migration failing half-way.
                crate::fault::point(format_args!("migrate.{}.{}", m.name, n + 1))
                    .map_err(|e| failed(&e))?;
                tx.exec(stmt, &[]).await.map_err(|e| failed(&e))?;
                record_progress(tx, m, n + 1).await?;
            }
        }
        tx.exec(
            &format!(
                "INSERT INTO {LEDGER} (version, name, checksum, baseline, applied_at, additive) VALUES (?, ?, ?, ?, ?, ?)"
            ),
            args![m.version, m.name, m.checksum(backend), baseline, Utc::now(), m.additive()],
        )
        .await?;
        // After the ledger's row: a progress row left for a recorded migration is never read.
        if backend == Backend::Mysql && !baseline {
            tx.exec(
                &format!("DELETE FROM {PROGRESS} WHERE version = ?"),
                args![m.version],
            )
            .await?;
        }
        applied.push(m.version);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_splits_into_statements_on_every_engine() {
        for m in MIGRATIONS {
            for b in [Backend::Postgres, Backend::Mysql, Backend::Sqlite] {
                let stmts = statements(m.sql(b));
                assert!(!stmts.is_empty(), "{} {:?}", m.name, b);
                for s in &stmts {
                    assert!(!s.ends_with(';'), "{s}");
                    assert!(
                        s.starts_with("CREATE")
                            || s.starts_with("INSERT")
                            || s.starts_with("ALTER TABLE"),
                        "{} {:?}: unexpected statement {s}",
                        m.name,
                        b
                    );
                }
            }
        }
    }

    #[test]
    fn a_migration_is_additive_on_every_engine_or_on_none() {
        for m in MIGRATIONS {
            let marked: Vec<bool> = [m.postgres, m.mysql, m.sqlite]
                .iter()
                .map(|sql| {
                    sql.lines()
                        .next()
                        .is_some_and(|l| l.trim() == ADDITIVE_MARK)
                })
                .collect();
            assert!(
                marked.iter().all(|b| *b == marked[0]),
                "{}: marked additive on some engines only",
                m.name
            );
        }
    }

    #[test]
    fn versions_are_increasing_and_named_after_their_files() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1);
            assert!(m.name.starts_with(&format!("{:04}_", m.version)));
        }
    }
}
