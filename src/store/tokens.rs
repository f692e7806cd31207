//! API tokens (`modobox_api_token`, one per user): the key is shown once when created; the
//! table keeps only its SHA-256, so a copy of the database does not open the API.
//!
//! An adopted Modoboa database keeps its clients' keys in clear in Django REST framework's
//! `authtoken_token`: such a key is accepted, and at its first use moved into
//! `modobox_api_token` (its SHA-256) and removed from `authtoken_token`.

use chrono::{Duration, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::access::{self, Role};
use super::{audit, Backend, StoreError, Tx};
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
    forget_modoboa_key(tx, user_id).await?;
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

/// Removes a user's token (and a Modoboa key not used since the adoption); whether there was one.
pub async fn revoke_token(tx: &mut Tx, user_id: i32) -> Result<bool, StoreError> {
    let modoboa = forget_modoboa_key(tx, user_id).await?;
    Ok(tx
        .exec(
            "DELETE FROM modobox_api_token WHERE user_id = ?",
            args![user_id],
        )
        .await?
        > 0
        || modoboa)
}

/// Whether the database has Django REST framework's token table (an adopted Modoboa one).
async fn has_modoboa_keys(tx: &mut Tx) -> Result<bool, StoreError> {
    Ok(tx
        .modoboa_schema()
        .await?
        .references
        .iter()
        .any(|r| r.table == "authtoken_token" && r.parent == "core_user"))
}

/// `key` is a reserved word in MariaDB.
fn key_column(tx: &Tx) -> &'static str {
    match tx.backend() {
        Backend::Mysql => "`key`",
        _ => "\"key\"",
    }
}

/// Removes a user's Modoboa key, if any; whether there was one.
async fn forget_modoboa_key(tx: &mut Tx, user_id: i32) -> Result<bool, StoreError> {
    if !has_modoboa_keys(tx).await? {
        return Ok(false);
    }
    Ok(tx
        .exec(
            "DELETE FROM authtoken_token WHERE user_id = ?",
            args![user_id],
        )
        .await?
        > 0)
}

/// A Modoboa key's first use: its owner, with the key moved into `modobox_api_token`.
async fn adopt_modoboa_key(tx: &mut Tx, token: &str) -> Result<Option<i32>, StoreError> {
    if !has_modoboa_keys(tx).await? {
        return Ok(None);
    }
    let Some(r) = tx
        .row(
            &format!(
                "SELECT user_id FROM authtoken_token WHERE {} = ?",
                key_column(tx)
            ),
            args![token],
        )
        .await?
    else {
        return Ok(None);
    };
    let user_id = r.i32("user_id")?;
    tx.exec(
        "DELETE FROM modobox_api_token WHERE user_id = ?",
        args![user_id],
    )
    .await?;
    tx.exec(
        "INSERT INTO modobox_api_token (user_id, token_hash, created_at, last_used_at) VALUES (?, ?, ?, ?)",
        args![user_id, digest(token), Utc::now(), None::<chrono::DateTime<Utc>>],
    )
    .await?;
    tx.exec(
        "DELETE FROM authtoken_token WHERE user_id = ?",
        args![user_id],
    )
    .await?;
    audit::info(
        tx,
        &format!("API token of account #{user_id} taken over from Modoboa (now kept hashed)"),
    )
    .await?;
    Ok(Some(user_id))
}

/// An account's API token as `modobox token list` shows it (never the key).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenInfo {
    pub username: String,
    /// "modobox" (kept hashed), or "Modoboa" (a key of the adopted database, in clear until
    /// its first use).
    pub kind: &'static str,
    pub created_at: Option<chrono::DateTime<Utc>>,
    pub last_used_at: Option<chrono::DateTime<Utc>>,
}

/// Every account's API token.
pub async fn list(tx: &mut Tx) -> Result<Vec<TokenInfo>, StoreError> {
    let mut out = Vec::new();
    for r in tx
        .rows(
            "SELECT u.username, t.created_at, t.last_used_at FROM modobox_api_token t INNER JOIN core_user u ON u.id = t.user_id ORDER BY u.username",
            &[],
        )
        .await?
    {
        out.push(TokenInfo {
            username: r.text("username")?,
            kind: "modobox",
            created_at: r.opt_ts("created_at")?,
            last_used_at: r.opt_ts("last_used_at")?,
        });
    }
    if has_modoboa_keys(tx).await? {
        for r in tx
            .rows(
                "SELECT u.username, t.created FROM authtoken_token t INNER JOIN core_user u ON u.id = t.user_id ORDER BY u.username",
                &[],
            )
            .await?
        {
            out.push(TokenInfo {
                username: r.text("username")?,
                kind: "Modoboa",
                created_at: r.opt_ts("created")?,
                last_used_at: None,
            });
        }
    }
    out.sort_by(|a, b| a.username.cmp(&b.username));
    Ok(out)
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
    let token = token.to_ascii_lowercase();
    let sql = "SELECT t.id AS t_id, t.last_used_at, u.id, u.username, u.is_active FROM modobox_api_token t INNER JOIN core_user u ON u.id = t.user_id WHERE t.token_hash = ?";
    let mut found = tx.row(sql, args![digest(&token)]).await?;
    if found.is_none() && adopt_modoboa_key(tx, &token).await?.is_some() {
        found = tx.row(sql, args![digest(&token)]).await?;
    }
    let Some(r) = found else {
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
