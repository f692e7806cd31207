//! The periodic jobs' bookkeeping: one `modobox_task_run` row per run (with the schedule slot
//! it belongs to), and the lock that lets one node at a time run a job when several modobox
//! nodes share a database.
//!
//! The lock lives on a connection of its own, opened outside the pool: a job holds it for its
//! whole run while its own statements use pooled connections, so ten jobs starting at midnight
//! cannot starve the pool. Closing that connection (or a crash) releases it.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use nix::fcntl::{Flock, FlockArg};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{Connection, Row as _};

use super::{Pool, Store, StoreError};
use crate::args;

/// The outcome column while a run is going (a node that died mid-run leaves it; the next start
/// of that node marks it failed).
pub const RUNNING: &str = "running";

/// One recorded run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Run {
    pub id: i64,
    pub task: String,
    pub node: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: String,
    pub message: String,
    pub slot: Option<DateTime<Utc>>,
}

const RUN_COLUMNS: &str = "id, task, node, started_at, finished_at, outcome, message, slot";

fn run_of(r: &super::Row) -> Result<Run, StoreError> {
    Ok(Run {
        id: r.i64("id")?,
        task: r.text("task")?,
        node: r.text("node")?,
        started_at: r.ts("started_at")?,
        finished_at: r.opt_ts("finished_at")?,
        outcome: r.text("outcome")?,
        message: r.text("message")?,
        slot: r.opt_ts("slot")?,
    })
}

/// Records the start of a run. With a slot, returns `None` when that slot of that task was
/// already run (by this node or another): the unique index on (task, slot) decides, so two
/// nodes racing for one slot cannot both get a row.
pub async fn start(
    store: &Store,
    task: &str,
    node: &str,
    slot: Option<DateTime<Utc>>,
) -> Result<Option<i64>, StoreError> {
    // Insert first: the unique (task, slot) key decides which node claims the slot.
    let mut tx = store.begin().await?;
    let id = match tx
        .insert(
            "INSERT INTO modobox_task_run (task, node, started_at, finished_at, outcome, message, slot) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
            args![task, node, Utc::now(), None::<DateTime<Utc>>, RUNNING, "", slot],
        )
        .await
    {
        Ok(id) => id,
        Err(StoreError::Db(sqlx::Error::Database(e))) if e.is_unique_violation() => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    tx.commit().await?;
    Ok(Some(id))
}

/// Records how a run ended.
pub async fn finish(
    store: &Store,
    id: i64,
    outcome: &str,
    message: &str,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    tx.exec(
        "UPDATE modobox_task_run SET finished_at = ?, outcome = ?, message = ? WHERE id = ?",
        args![Utc::now(), outcome, message, id],
    )
    .await?;
    tx.commit().await
}

/// Records a run that did not happen (e.g. the previous one was still going), without a slot.
pub async fn record_skipped(
    store: &Store,
    task: &str,
    node: &str,
    message: &str,
) -> Result<(), StoreError> {
    let now = Utc::now();
    let mut tx = store.begin().await?;
    tx.exec(
        "INSERT INTO modobox_task_run (task, node, started_at, finished_at, outcome, message, slot) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
        args![task, node, now, now, "skipped", message, None::<DateTime<Utc>>],
    )
    .await?;
    tx.commit().await
}

/// Marks this node's scheduled runs still `running` from before `before` as failed: the
/// process that ran them is gone (each node runs one scheduler). Runs by hand (no slot) are
/// left alone: one may be going on right now.
pub async fn mark_interrupted(
    store: &Store,
    node: &str,
    before: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let mut tx = store.begin().await?;
    let n = tx
        .exec(
            "UPDATE modobox_task_run SET outcome = 'failed', finished_at = ?, \
             message = 'interrupted: modobox stopped during the run' \
             WHERE node = ? AND outcome = ? AND started_at < ? AND slot IS NOT NULL",
            args![Utc::now(), node, RUNNING, before],
        )
        .await?;
    tx.commit().await?;
    Ok(n)
}

/// The last run of each task (any node).
pub async fn last_runs(store: &Store) -> Result<Vec<Run>, StoreError> {
    let mut tx = store.begin().await?;
    let rows = tx
        .rows(
            &format!(
                "SELECT {RUN_COLUMNS} FROM modobox_task_run r \
                 WHERE r.id = (SELECT MAX(x.id) FROM modobox_task_run x WHERE x.task = r.task) \
                 ORDER BY r.task"
            ),
            &[],
        )
        .await?;
    rows.iter().map(run_of).collect()
}

/// The newest run of `task` that ended `ok`.
pub async fn last_ok(store: &Store, task: &str) -> Result<Option<Run>, StoreError> {
    let mut tx = store.begin_read().await?;
    let row = tx
        .row(
            &format!(
                "SELECT {RUN_COLUMNS} FROM modobox_task_run WHERE task = ? AND outcome = 'ok' \
                 ORDER BY id DESC LIMIT 1"
            ),
            args![task],
        )
        .await?;
    row.as_ref().map(run_of).transpose()
}

/// The runs of one task, newest first.
pub async fn runs(store: &Store, task: &str, limit: i64) -> Result<Vec<Run>, StoreError> {
    let mut tx = store.begin().await?;
    let rows = tx
        .rows(
            &format!(
                "SELECT {RUN_COLUMNS} FROM modobox_task_run WHERE task = ? ORDER BY id DESC LIMIT ?"
            ),
            args![task, limit],
        )
        .await?;
    rows.iter().map(run_of).collect()
}

/// Whether any node started a run of `task` for `slot` or later (so no catch-up is due).
pub async fn ran_since(store: &Store, task: &str, slot: DateTime<Utc>) -> Result<bool, StoreError> {
    let mut tx = store.begin().await?;
    Ok(tx
        .count(
            "SELECT COUNT(*) FROM modobox_task_run WHERE task = ? AND (slot >= ? OR started_at >= ?) \
             AND outcome <> 'skipped'",
            args![task, slot, slot],
        )
        .await?
        > 0)
}

/// A job's exclusive lock across every node sharing the database; released by `release` or
/// when dropped (the connection closes, the file is closed).
#[derive(Debug)]
pub enum JobLock {
    Postgres(sqlx::PgConnection),
    Mysql(sqlx::MySqlConnection, String),
    Sqlite(Flock<File>),
    /// An in-memory SQLite database: no other process can share it.
    Memory,
}

/// PostgreSQL advisory locks are per database; the key is a stable hash of the job's name.
fn pg_key(task: &str) -> i64 {
    let d = Sha256::digest(format!("modobox.job:{task}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    i64::from_be_bytes(b)
}

/// The lock file of a job next to the SQLite database: `<db>.job-<task>.lock`.
pub fn sqlite_lock_path(db: &Path, task: &str) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".job-{task}.lock"));
    db.with_file_name(name)
}

impl JobLock {
    /// Takes the lock of `task` without waiting: `None` when someone holds it.
    pub async fn try_acquire(store: &Store, task: &str) -> Result<Option<JobLock>, StoreError> {
        match &store.pool {
            Pool::Postgres(pool) => {
                let mut c = sqlx::PgConnection::connect_with(&pool.connect_options()).await?;
                let got: bool = sqlx::query("SELECT pg_try_advisory_lock($1)")
                    .bind(pg_key(task))
                    .fetch_one(&mut c)
                    .await?
                    .try_get(0)?;
                if got {
                    Ok(Some(JobLock::Postgres(c)))
                } else {
                    let _ = c.close().await;
                    Ok(None)
                }
            }
            Pool::Mysql(pool) => {
                let mut c = sqlx::MySqlConnection::connect_with(&pool.connect_options()).await?;
                // Lock names are per server, not per database, and at most 64 characters.
                let name: String = sqlx::query(
                    "SELECT CONCAT('modobox.', LEFT(SHA2(CONCAT(COALESCE(DATABASE(), ''), '/', ?), 256), 40))",
                )
                .bind(task)
                .fetch_one(&mut c)
                .await?
                .try_get(0)?;
                let got: Option<i64> = sqlx::query("SELECT GET_LOCK(?, 0)")
                    .bind(&name)
                    .fetch_one(&mut c)
                    .await?
                    .try_get(0)?;
                if got == Some(1) {
                    Ok(Some(JobLock::Mysql(c, name)))
                } else {
                    let _ = c.close().await;
                    Ok(None)
                }
            }
            Pool::Sqlite(pool) => {
                let opts = pool.connect_options();
                let db = opts.get_filename();
                if db.as_os_str().is_empty() || db == Path::new(":memory:") {
                    return Ok(Some(JobLock::Memory));
                }
                let path = sqlite_lock_path(db, task);
                let file = OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| StoreError::Corrupt {
                        what: format!("lock file {}: {e}", path.display()),
                    })?;
                match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                    Ok(lock) => Ok(Some(JobLock::Sqlite(lock))),
                    Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
                    Err((_, e)) => Err(StoreError::Corrupt {
                        what: format!("locking {}: {e}", path.display()),
                    }),
                }
            }
        }
    }

    pub async fn release(self) {
        match self {
            JobLock::Postgres(mut c) => {
                let _ = sqlx::query("SELECT pg_advisory_unlock_all()")
                    .execute(&mut c)
                    .await;
                let _ = c.close().await;
            }
            JobLock::Mysql(mut c, name) => {
                let _ = sqlx::query("SELECT RELEASE_LOCK(?)")
                    .bind(name)
                    .execute(&mut c)
                    .await;
                let _ = c.close().await;
            }
            // Closing the file releases the flock.
            JobLock::Sqlite(lock) => drop(lock),
            JobLock::Memory => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_stable_and_distinct() {
        assert_eq!(pg_key("cleanlogs"), pg_key("cleanlogs"));
        assert_ne!(pg_key("cleanlogs"), pg_key("clearsessions"));
        assert_eq!(
            sqlite_lock_path(Path::new("/var/lib/modobox/modobox.db"), "dkim_keys"),
            PathBuf::from("/var/lib/modobox/modobox.db.job-dkim_keys.lock")
        );
    }
}
