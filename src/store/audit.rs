//! The audit trail in `core_log` (Modoboa's table, so its log viewer and ours agree) and the
//! `modobox_setting` key/value store.

use chrono::Utc;

use super::{StoreError, Tx};
use crate::args;

/// Modoboa's logger names.
pub const ADMIN: &str = "modoboa.admin";

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

pub async fn setting(tx: &mut Tx, name: &str) -> Result<Option<String>, StoreError> {
    match tx
        .row(
            "SELECT value FROM modobox_setting WHERE name = ?",
            args![name],
        )
        .await?
    {
        Some(r) => Ok(Some(r.text("value")?)),
        None => Ok(None),
    }
}

pub async fn set_setting(tx: &mut Tx, name: &str, value: &str) -> Result<(), StoreError> {
    if tx
        .exec(
            "UPDATE modobox_setting SET value = ? WHERE name = ?",
            args![value, name],
        )
        .await?
        == 0
    {
        tx.exec(
            "INSERT INTO modobox_setting (name, value) VALUES (?, ?)",
            args![name, value],
        )
        .await?;
    }
    Ok(())
}
