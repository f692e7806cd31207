//! The web UI's sessions (`modobox_session`): started at login, read on every request, ended at
//! logout; all of one account's end when its password changes, and the expired ones with the
//! `clearsessions` job. The table keeps only the SHA-256 of the cookie's token.

use chrono::{DateTime, Utc};

use super::tokens::digest;
use super::{StoreError, Tx};
use crate::args;

/// A session as stored, with its account.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: i32,
    pub username: String,
    pub is_active: bool,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

/// Records a session of `user_id` under the cookie token `token`.
pub async fn create(
    tx: &mut Tx,
    token: &str,
    user_id: i32,
    csrf_token: &str,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    tx.exec(
        "INSERT INTO modobox_session (id, user_id, csrf_token, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
        args![digest(token), user_id, csrf_token, created_at, expires_at],
    )
    .await?;
    Ok(())
}

/// Ends the session of the cookie token `token`.
pub async fn delete(tx: &mut Tx, token: &str) -> Result<(), StoreError> {
    tx.exec(
        "DELETE FROM modobox_session WHERE id = ?",
        args![digest(token)],
    )
    .await?;
    Ok(())
}

/// The session of the cookie token `token` and its account, expired or not.
pub async fn find(tx: &mut Tx, token: &str) -> Result<Option<Session>, StoreError> {
    let Some(r) = tx
        .row(
            "SELECT s.csrf_token, s.expires_at, u.id, u.username, u.is_active \
             FROM modobox_session s JOIN core_user u ON u.id = s.user_id WHERE s.id = ?",
            args![digest(token)],
        )
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(Session {
        user_id: r.i32("id")?,
        username: r.text("username")?,
        is_active: r.bool("is_active")?,
        csrf_token: r.text("csrf_token")?,
        expires_at: r.ts("expires_at")?,
    }))
}

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
