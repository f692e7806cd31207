//! The statements of the periodic jobs: queued mailbox operations, domains waiting for a DKIM
//! key, expired sessions, old log lines, inactive accounts, new-account counts and the Amavis
//! quarantine. Each cleanup takes `dry_run` and then only counts.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{audit, StoreError, Tx};
use crate::args;

/// A row of `admin_mailboxoperation`, with where its mailbox lives now (for a rename).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MailboxOperation {
    pub id: i32,
    pub kind: String,
    pub argument: String,
    /// `(domain, local part)` of the mailbox when it still exists.
    pub mailbox: Option<(String, String)>,
}

pub async fn mailbox_operations(tx: &mut Tx) -> Result<Vec<MailboxOperation>, StoreError> {
    let rows = tx
        .rows(
            "SELECT o.id, o.type, o.argument, m.address, d.name AS domain \
             FROM admin_mailboxoperation o \
             LEFT JOIN admin_mailbox m ON m.id = o.mailbox_id \
             LEFT JOIN admin_domain d ON d.id = m.domain_id \
             ORDER BY o.id",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let mailbox = match (r.opt_text("domain")?, r.opt_text("address")?) {
                (Some(d), Some(a)) => Some((d, a)),
                _ => None,
            };
            Ok(MailboxOperation {
                id: r.i32("id")?,
                kind: r.text("type")?,
                argument: r.text("argument")?,
                mailbox,
            })
        })
        .collect()
}

/// Removes a done operation; false when another run removed it first.
pub async fn delete_mailbox_operation(tx: &mut Tx, id: i32) -> Result<bool, StoreError> {
    Ok(tx
        .exec("DELETE FROM admin_mailboxoperation WHERE id = ?", args![id])
        .await?
        > 0)
}

/// A domain with DKIM signing on and no key yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimPending {
    pub id: i32,
    pub name: String,
    pub key_length: Option<i32>,
}

pub async fn domains_without_dkim_key(tx: &mut Tx) -> Result<Vec<DkimPending>, StoreError> {
    let rows = tx
        .rows(
            "SELECT id, name, dkim_key_length FROM admin_domain \
             WHERE enable_dkim = ? AND (dkim_private_key_path = '' OR dkim_public_key = '') \
             ORDER BY name",
            args![true],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(DkimPending {
                id: r.i32("id")?,
                name: r.text("name")?,
                key_length: r.opt_i32("dkim_key_length")?,
            })
        })
        .collect()
}

/// Web sessions that expired before `now`.
pub async fn clear_sessions(
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

/// `core_log` lines written before `cutoff`.
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InactiveAccount {
    pub id: i32,
    pub username: String,
    pub last_login: DateTime<Utc>,
}

/// Active, non-superuser accounts whose last login is before `cutoff`; accounts that never
/// logged in are not inactive (they may not have been handed out yet).
pub async fn inactive_accounts(
    tx: &mut Tx,
    cutoff: DateTime<Utc>,
) -> Result<Vec<InactiveAccount>, StoreError> {
    let rows = tx
        .rows(
            "SELECT id, username, last_login FROM core_user \
             WHERE is_active = ? AND is_superuser = ? AND last_login IS NOT NULL AND last_login < ? \
             ORDER BY username",
            args![true, false, cutoff],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(InactiveAccount {
                id: r.i32("id")?,
                username: r.text("username")?,
                last_login: r.ts("last_login")?,
            })
        })
        .collect()
}

/// Disables one account (only if it is still active and still not logged in since `cutoff`:
/// a login between the listing and now wins).
pub async fn disable_inactive_account(
    tx: &mut Tx,
    a: &InactiveAccount,
    cutoff: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let n = tx
        .exec(
            "UPDATE core_user SET is_active = ? WHERE id = ? AND is_active = ? AND last_login < ?",
            args![false, a.id, true, cutoff],
        )
        .await?;
    if n > 0 {
        audit::info(
            tx,
            &format!(
                "Account {} disabled: no login since {}",
                a.username,
                a.last_login.format("%Y-%m-%d")
            ),
        )
        .await?;
    }
    Ok(n > 0)
}

/// Accounts created in `[from, to)`.
pub async fn accounts_created_between(
    tx: &mut Tx,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<i64, StoreError> {
    tx.count(
        "SELECT COUNT(*) FROM core_user WHERE date_joined >= ? AND date_joined < ?",
        args![from, to],
    )
    .await
}

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
pub async fn quarantine_cleanup(
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
