//! Amavis' SQL quarantine (`msgs`, `msgrcpt`, `quarantine`, `maddr`): the cleanup of old
//! messages (the `quarantine_cleanup` job). Amavis writes these tables; modobox only removes
//! from them.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{StoreError, Tx};
use crate::args;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QuarantineCleanup {
    pub messages: u64,
    pub recipients: u64,
    pub chunks: u64,
    pub addresses: u64,
}

/// Amavis quarantine: messages older than `cutoff` (Amavis' `time_num`, Unix seconds) with
/// their recipients and quarantined chunks, then the addresses nothing refers to any more.
/// Children first: an adopted database may lack the cascading foreign keys.
pub async fn cleanup(
    tx: &mut Tx,
    cutoff: DateTime<Utc>,
    dry_run: bool,
) -> Result<QuarantineCleanup, StoreError> {
    let t = cutoff.timestamp();
    const OLD: &str = "SELECT mail_id FROM msgs WHERE time_num < ?";
    if dry_run {
        let n = |v: i64| v.unsigned_abs();
        return Ok(QuarantineCleanup {
            messages: n(tx
                .count("SELECT COUNT(*) FROM msgs WHERE time_num < ?", args![t])
                .await?),
            recipients: n(tx
                .count(
                    &format!("SELECT COUNT(*) FROM msgrcpt WHERE mail_id IN ({OLD})"),
                    args![t],
                )
                .await?),
            chunks: n(tx
                .count(
                    &format!("SELECT COUNT(*) FROM quarantine WHERE mail_id IN ({OLD})"),
                    args![t],
                )
                .await?),
            addresses: 0,
        });
    }
    // MySQL refuses a subquery on the table being deleted from, not on another one: fine here.
    let chunks = tx
        .exec(
            &format!("DELETE FROM quarantine WHERE mail_id IN ({OLD})"),
            args![t],
        )
        .await?;
    let recipients = tx
        .exec(
            &format!("DELETE FROM msgrcpt WHERE mail_id IN ({OLD})"),
            args![t],
        )
        .await?;
    let messages = tx
        .exec("DELETE FROM msgs WHERE time_num < ?", args![t])
        .await?;
    // Only when messages went: Amavis inserts an address just before the message that uses it,
    // and an idle quarantine should not race with that.
    let addresses = if messages > 0 {
        tx.exec(
            "DELETE FROM maddr WHERE NOT EXISTS (SELECT 1 FROM msgs WHERE msgs.sid = maddr.id) \
             AND NOT EXISTS (SELECT 1 FROM msgrcpt WHERE msgrcpt.rid = maddr.id)",
            &[],
        )
        .await?
    } else {
        0
    };
    Ok(QuarantineCleanup {
        messages,
        recipients,
        chunks,
        addresses,
    })
}
