//! The queue of mailbox directory work (`admin_mailboxoperation`, Modoboa's table): renames and
//! deletions of accounts queue the move or removal of their directory here, in the transaction
//! of the change; the `mailbox_operations` job does it on disk and removes the row.

use serde::Serialize;

use crate::args;
use crate::store::{StoreError, Tx};

/// A row of `admin_mailboxoperation`, with where its mailbox lives now (for a rename).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MailboxOperation {
    pub id: i32,
    pub kind: String,
    pub argument: String,
    /// `(domain, local part)` of the mailbox when it still exists.
    pub mailbox: Option<(String, String)>,
}

/// Every queued operation, oldest first.
pub async fn pending(tx: &mut Tx) -> Result<Vec<MailboxOperation>, StoreError> {
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
pub async fn delete(tx: &mut Tx, id: i32) -> Result<bool, StoreError> {
    Ok(tx
        .exec("DELETE FROM admin_mailboxoperation WHERE id = ?", args![id])
        .await?
        > 0)
}

/// Queues the move of a renamed mailbox's directory from `old_home`.
pub(super) async fn queue_rename(
    tx: &mut Tx,
    mailbox_id: i32,
    old_home: &str,
) -> Result<(), StoreError> {
    tx.exec(
        "INSERT INTO admin_mailboxoperation (mailbox_id, type, argument) VALUES (?, 'rename', ?)",
        args![mailbox_id, old_home],
    )
    .await?;
    Ok(())
}

/// Queues the removal of a deleted mailbox's directory `home`.
pub(super) async fn queue_delete(tx: &mut Tx, home: &str) -> Result<(), StoreError> {
    tx.exec(
        "INSERT INTO admin_mailboxoperation (mailbox_id, type, argument) VALUES (?, 'delete', ?)",
        args![None::<i32>, home],
    )
    .await?;
    Ok(())
}

/// Unlinks the queued operations of a mailbox being deleted (they keep their paths).
pub(super) async fn detach(tx: &mut Tx, mailbox_id: i32) -> Result<(), StoreError> {
    tx.exec(
        "UPDATE admin_mailboxoperation SET mailbox_id = NULL WHERE mailbox_id = ?",
        args![mailbox_id],
    )
    .await?;
    Ok(())
}
