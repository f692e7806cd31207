//! API tokens (`modobox_api_token`, one per user): the key is shown once when created; the
//! table keeps only its SHA-256, so a copy of the database does not open the API.

use chrono::{Duration, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::access::{self, Role};
use super::{audit, StoreError, Tx};
use crate::args;

/// `last_used_at` is rewritten at most this often: a busy client must not turn every read
/// into a write.
const TOUCH_EVERY: Duration = Duration::seconds(60);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn digest(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// A new key for `user_id`, replacing the previous one. 40 hex digits (160 random bits), the
/// shape of Modoboa's (Django REST framework's) tokens, so clients that check it keep working.
pub async fn create_token(tx: &mut Tx, user_id: i32) -> Result<String, StoreError> {
    let mut raw = [0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let token = hex(&raw);
    let user = tx
        .row_or_not_found(
            "SELECT username FROM core_user WHERE id = ?",
            args![user_id],
            "account",
            &format!("#{user_id}"),
        )
        .await?;
    tx.exec(
        "DELETE FROM modobox_api_token WHERE user_id = ?",
        args![user_id],
    )
    .await?;
    tx.exec(
        "INSERT INTO modobox_api_token (user_id, token_hash, created_at, last_used_at) VALUES (?, ?, ?, ?)",
        args![user_id, digest(&token), Utc::now(), None::<chrono::DateTime<Utc>>],
    )
    .await?;
    audit::info(
        tx,
        &format!("API token of {} created", user.text("username")?),
    )
    .await?;
    Ok(token)
}

/// Removes a user's token; whether there was one.
pub async fn revoke_token(tx: &mut Tx, user_id: i32) -> Result<bool, StoreError> {
    Ok(tx
        .exec(
            "DELETE FROM modobox_api_token WHERE user_id = ?",
            args![user_id],
        )
        .await?
        > 0)
}

/// The owner of a token.
#[derive(Debug, Clone)]
pub struct TokenUser {
    pub id: i32,
    pub username: String,
    pub role: Role,
}

/// The active user a key belongs to, if any; records the use (at most once a minute).
pub async fn authenticate(tx: &mut Tx, token: &str) -> Result<Option<TokenUser>, StoreError> {
    // Anything but 40 hex digits cannot be a key: no query for it.
    if token.len() != 40 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let Some(r) = tx
        .row(
            "SELECT t.id AS t_id, t.last_used_at, u.id, u.username, u.is_active FROM modobox_api_token t INNER JOIN core_user u ON u.id = t.user_id WHERE t.token_hash = ?",
            args![digest(&token.to_ascii_lowercase())],
        )
        .await?
    else {
        return Ok(None);
    };
    if !r.bool("is_active")? {
        return Ok(None);
    }
    let now = Utc::now();
    if r.opt_ts("last_used_at")?
        .is_none_or(|t| now - t > TOUCH_EVERY)
    {
        tx.exec(
            "UPDATE modobox_api_token SET last_used_at = ? WHERE id = ?",
            args![now, r.i32("t_id")?],
        )
        .await?;
    }
    let id = r.i32("id")?;
    Ok(Some(TokenUser {
        id,
        username: r.text("username")?,
        role: access::role_of(tx, id).await?,
    }))
}
