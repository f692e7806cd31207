//! The web UI's sessions (`modobox_session`) as the rest of the store ends them: all of one
//! account's when its password changes, and the expired ones (the `clearsessions` job).

use chrono::{DateTime, Utc};

use super::{StoreError, Tx};
use crate::args;

/// Ends every web session of an account.
pub async fn delete_of_user(tx: &mut Tx, user_id: i32) -> Result<(), StoreError> {
    tx.exec(
        "DELETE FROM modobox_session WHERE user_id = ?",
        args![user_id],
    )
    .await?;
    Ok(())
}

/// Web sessions that expired before `now`.
pub async fn delete_expired(
    tx: &mut Tx,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<u64, StoreError> {
    if dry_run {
        let n = tx
            .count(
                "SELECT COUNT(*) FROM modobox_session WHERE expires_at < ?",
                args![now],
            )
            .await?;
        return Ok(n.unsigned_abs());
    }
    tx.exec(
        "DELETE FROM modobox_session WHERE expires_at < ?",
        args![now],
    )
    .await
}
