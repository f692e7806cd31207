//! The audit trail in `core_log` (Modoboa's table, so its log viewer and ours agree): lines
//! written in the transaction of the change they describe, the superadmins' log viewer, and
//! the cleanup of old lines.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::access::{self, Actor};
use super::{Page, StoreError, Tx, Value};
use crate::args;

/// Modoboa's logger names.
pub const ADMIN: &str = "modoboa.admin";

/// Levels Modoboa writes.
pub const LOG_LEVELS: [&str; 4] = ["INFO", "WARNING", "ERROR", "CRITICAL"];

/// Appends an INFO line in the same transaction as the change it describes.
pub async fn info(tx: &mut Tx, message: &str) -> Result<(), StoreError> {
    line(tx, "INFO", ADMIN, message).await
}

pub async fn line(tx: &mut Tx, level: &str, logger: &str, message: &str) -> Result<(), StoreError> {
    // core_log.message is varchar(255); cut on a character boundary.
    let message: String = message.chars().take(255).collect();
    tx.exec(
        "INSERT INTO core_log (date_created, message, level, logger) VALUES (?, ?, ?, ?)",
        args![Utc::now(), message, level, logger],
    )
    .await?;
    Ok(())
}

/// One `core_log` line.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LogLine {
    pub id: i32,
    pub date_created: DateTime<Utc>,
    pub level: String,
    pub logger: String,
    pub message: String,
}

/// The newest log lines first, optionally of one level and one logger (superadmins only:
/// the log names every domain and login).
pub async fn log_page(
    tx: &mut Tx,
    actor: Actor,
    level: Option<&str>,
    logger: Option<&str>,
    offset: i64,
    limit: i64,
) -> Result<Page<LogLine>, StoreError> {
    access::require_super(actor, "read the log")?;
    let mut filter = String::from("1 = 1");
    let mut params: Vec<Value> = Vec::new();
    if let Some(l) = level {
        if !LOG_LEVELS.contains(&l) {
            return Err(StoreError::refused(
                "level",
                format!("must be one of {}", LOG_LEVELS.join(", ")),
            ));
        }
        filter.push_str(" AND level = ?");
        params.push(l.into());
    }
    if let Some(l) = logger {
        filter.push_str(" AND logger = ?");
        params.push(l.into());
    }
    let total = tx
        .count(
            &format!("SELECT COUNT(*) FROM core_log WHERE {filter}"),
            &params,
        )
        .await?;
    params.push(limit.max(0).into());
    params.push(offset.max(0).into());
    let rows = tx
        .rows(
            &format!("SELECT id, date_created, level, logger, message FROM core_log WHERE {filter} ORDER BY id DESC LIMIT ? OFFSET ?"),
            &params,
        )
        .await?;
    let items = rows
        .iter()
        .map(|r| {
            Ok(LogLine {
                id: r.i32("id")?,
                date_created: r.ts("date_created")?,
                level: r.text("level")?,
                logger: r.text("logger")?,
                message: r.text("message")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Page { items, total })
}

/// The loggers that have written to the log (for the filter).
pub async fn log_loggers(tx: &mut Tx, actor: Actor) -> Result<Vec<String>, StoreError> {
    access::require_super(actor, "read the log")?;
    tx.rows("SELECT DISTINCT logger FROM core_log ORDER BY logger", &[])
        .await?
        .iter()
        .map(|r| r.text("logger"))
        .collect()
}

/// `core_log` lines written before `cutoff` (the `cleanlogs` job).
pub async fn clean_logs(
    tx: &mut Tx,
    cutoff: DateTime<Utc>,
    dry_run: bool,
) -> Result<u64, StoreError> {
    if dry_run {
        let n = tx
            .count(
                "SELECT COUNT(*) FROM core_log WHERE date_created < ?",
                args![cutoff],
            )
            .await?;
        return Ok(n.unsigned_abs());
    }
    tx.exec("DELETE FROM core_log WHERE date_created < ?", args![cutoff])
        .await
}
