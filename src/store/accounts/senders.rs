//! Who may send as an address: the one rule behind Postfix's sender-login map (the envelope
//! sender, `reject_sender_login_mismatch`) and the From: header milter (`crate::milter`). Both
//! run the query written here, so the two can never disagree. And the extra sender addresses
//! of a mailbox (`admin_senderaddress`), which that rule reads.
//!
//! The logins allowed to send as an address are: the account whose address it is; the mailboxes
//! holding it as an extra sender address; the mailboxes an enabled alias of that address delivers
//! to; and, for an address at an enabled domain alias, the mailbox with the same local part in
//! the alias's target domain.

use std::collections::HashMap;

use serde::Serialize;

use super::{manageable, Mailbox};
use crate::args;
use crate::names::{EmailAddress, Username};
use crate::store::access::{self, Actor, Role};
use crate::store::db::Value;
use crate::store::{audit, domains, Backend, StoreError, Tx};

/// A sender address: an address, or `@domain` for every address of a domain (Modoboa 2.x).
pub type SenderPattern = crate::store::aliases::AliasAddress;

/// What each `?` of the query stands for, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    /// The whole address (Postfix's `%s`).
    Address,
    /// Its local part (`%u`).
    Local,
    /// Its domain (`%d`).
    Domain,
    /// `@` and its domain (`@%d`): a sender address for every address of the domain.
    AtDomain,
}

const KEYS: [Key; 8] = [
    Key::Address,
    Key::Address,
    Key::AtDomain,
    Key::Address,
    Key::Domain,
    Key::Local,
    Key::Domain,
    Key::Local,
];

fn query(backend: Backend) -> String {
    let t = match backend {
        Backend::Postgres => "true",
        Backend::Mysql | Backend::Sqlite => "1",
    };
    // `local@` the alias's domain, to find the alias a domain alias address stands for.
    let at_target = match backend {
        Backend::Mysql => "CONCAT(?, '@', d.name)",
        Backend::Postgres | Backend::Sqlite => "? || '@' || d.name",
    };
    format!(
        "SELECT email FROM core_user WHERE email=? AND is_active={t} \
         UNION SELECT u.email FROM core_user u INNER JOIN admin_mailbox mb ON mb.user_id=u.id \
         INNER JOIN admin_senderaddress sa ON sa.mailbox_id=mb.id \
         WHERE (sa.address=? OR sa.address=?) AND u.is_active={t} \
         UNION SELECT u.email FROM core_user u INNER JOIN admin_mailbox mb ON mb.user_id=u.id \
         INNER JOIN modoboa_admin_aliasrecipient alr ON alr.r_mailbox_id=mb.id \
         INNER JOIN admin_alias al ON alr.alias_id=al.id \
         WHERE al.address=? AND al.enabled={t} AND u.is_active={t} \
         UNION SELECT u.email FROM core_user u INNER JOIN admin_mailbox mb ON mb.user_id=u.id \
         INNER JOIN admin_domainalias da ON da.target_id=mb.domain_id \
         WHERE da.name=? AND da.enabled={t} AND mb.address=? AND u.is_active={t} \
         UNION SELECT u.email FROM core_user u INNER JOIN admin_mailbox mb ON mb.user_id=u.id \
         INNER JOIN modoboa_admin_aliasrecipient alr ON alr.r_mailbox_id=mb.id \
         INNER JOIN admin_alias al ON alr.alias_id=al.id \
         INNER JOIN admin_domainalias da ON da.target_id=al.domain_id \
         INNER JOIN admin_domain d ON d.id=da.target_id \
         WHERE da.name=? AND da.enabled={t} AND al.enabled={t} AND al.internal={f} \
         AND al.address={at_target} AND u.is_active={t}",
        f = match backend {
            Backend::Postgres => "false",
            Backend::Mysql | Backend::Sqlite => "0",
        },
    )
}

/// The query as Postfix's SQL map wants it (`'%s'`, `'%u'`, `'%d'`, `'@%d'`; Postfix quotes
/// the values).
pub fn postfix_query(backend: Backend) -> String {
    let mut out = String::new();
    let mut keys = KEYS.iter();
    for (i, part) in query(backend).split('?').enumerate() {
        if i > 0 {
            out.push_str(match keys.next() {
                Some(Key::Address) => "'%s'",
                Some(Key::Local) => "'%u'",
                Some(Key::AtDomain) => "'@%d'",
                Some(Key::Domain) | None => "'%d'",
            });
        }
        out.push_str(part);
    }
    out
}

/// The logins (account addresses, lower case) that may send as `address`.
pub async fn logins_for(tx: &mut Tx, address: &EmailAddress) -> Result<Vec<String>, StoreError> {
    let full = address.to_string().to_lowercase();
    let (local, domain) = full.rsplit_once('@').unwrap_or((full.as_str(), ""));
    let at_domain = format!("@{domain}");
    let args: Vec<Value> = KEYS
        .iter()
        .map(|k| {
            Value::from(match k {
                Key::Address => full.as_str(),
                Key::Local => local,
                Key::Domain => domain,
                Key::AtDomain => at_domain.as_str(),
            })
        })
        .collect();
    let rows = tx.rows(&query(tx.backend()), &args).await?;
    rows.iter()
        .map(|r| r.text("email").map(|e| e.to_lowercase()))
        .collect()
}

/// Whether the account logged in as `login` may send as `address`.
pub async fn may_send_as(
    tx: &mut Tx,
    login: &str,
    address: &EmailAddress,
) -> Result<bool, StoreError> {
    let login = login.to_lowercase();
    Ok(logins_for(tx, address).await?.contains(&login))
}

/// The extra sender addresses of mailbox `mailbox_id`, sorted.
pub(super) async fn addresses_of_mailbox(
    tx: &mut Tx,
    mailbox_id: i32,
) -> Result<Vec<String>, StoreError> {
    tx.rows(
        "SELECT address FROM admin_senderaddress WHERE mailbox_id = ? ORDER BY address",
        args![mailbox_id],
    )
    .await?
    .iter()
    .map(|s| s.text("address"))
    .collect()
}

/// The extra sender addresses of each of `mailbox_ids` (one query per chunk, not per mailbox).
pub(super) async fn addresses_of_mailboxes(
    tx: &mut Tx,
    mailbox_ids: &[i32],
) -> Result<HashMap<i32, Vec<String>>, StoreError> {
    let ids: Vec<Value> = mailbox_ids.iter().map(|&i| i.into()).collect();
    let mut out: HashMap<i32, Vec<String>> = HashMap::new();
    for s in tx
        .rows_in(
            "SELECT mailbox_id, address FROM admin_senderaddress WHERE mailbox_id IN ({in}) ORDER BY address",
            &[],
            &ids,
        )
        .await?
    {
        out.entry(s.i32("mailbox_id")?)
            .or_default()
            .push(s.text("address")?);
    }
    Ok(out)
}

/// Forgets the sender addresses of a mailbox being deleted.
pub(super) async fn delete_of_mailbox(tx: &mut Tx, mailbox_id: i32) -> Result<(), StoreError> {
    tx.exec(
        "DELETE FROM admin_senderaddress WHERE mailbox_id = ?",
        args![mailbox_id],
    )
    .await?;
    Ok(())
}

/// A sender address lets a mailbox send as it (Postfix's sender login map, and the From: rule):
/// an address of a hosted domain only by who administers that domain, an address outside every
/// hosted domain only by superadmins.
async fn check_sender_address(
    tx: &mut Tx,
    actor: Actor,
    address: &SenderPattern,
) -> Result<(), StoreError> {
    match domains::hosting_domain(tx, &address.domain).await? {
        Some(id) if access::can_admin_domain(tx, actor, id).await? => Ok(()),
        Some(_) => Err(StoreError::refused(
            "address",
            "is in a domain you do not administer",
        )),
        None if actor.is_super() => Ok(()),
        None => Err(StoreError::refused(
            "address",
            "is not in a hosted domain: only superadmins add outside sender addresses",
        )),
    }
}

/// The mailbox of an account the actor may change.
async fn manageable_mailbox(
    tx: &mut Tx,
    actor: Actor,
    username: &Username,
) -> Result<Mailbox, StoreError> {
    manageable(tx, actor, username)
        .await?
        .mailbox
        .ok_or_else(|| StoreError::refused("username", "has no mailbox"))
}

pub async fn add_sender_address(
    tx: &mut Tx,
    actor: Actor,
    username: &Username,
    address: &SenderPattern,
) -> Result<(), StoreError> {
    let mb = manageable_mailbox(tx, actor, username).await?;
    check_sender_address(tx, actor, address).await?;
    if mb
        .sender_addresses
        .iter()
        .any(|s| s == address.full.as_str())
    {
        return Err(StoreError::Exists {
            kind: "sender address",
            name: address.to_string(),
        });
    }
    tx.exec(
        "INSERT INTO admin_senderaddress (address, mailbox_id) VALUES (?, ?)",
        args![address.full.as_str(), mb.id],
    )
    .await?;
    audit::info(tx, &format!("Sender address {address} added to {username}")).await
}

pub async fn remove_sender_address(
    tx: &mut Tx,
    actor: Actor,
    username: &Username,
    address: &SenderPattern,
) -> Result<(), StoreError> {
    let mb = manageable_mailbox(tx, actor, username).await?;
    if tx
        .exec(
            "DELETE FROM admin_senderaddress WHERE address = ? AND mailbox_id = ?",
            args![address.full.as_str(), mb.id],
        )
        .await?
        == 0
    {
        return Err(StoreError::NotFound {
            kind: "sender address",
            name: address.to_string(),
        });
    }
    audit::info(
        tx,
        &format!("Sender address {address} removed from {username}"),
    )
    .await
}

/// A row of `admin_senderaddress`: an extra address a mailbox may send as.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SenderAddress {
    pub id: i32,
    pub address: String,
    pub mailbox_id: i32,
    /// The mailbox's account.
    pub username: String,
}

const SENDER_SELECT: &str = "SELECT sa.id, sa.address, sa.mailbox_id, mb.domain_id, u.username FROM admin_senderaddress sa INNER JOIN admin_mailbox mb ON mb.id = sa.mailbox_id INNER JOIN core_user u ON u.id = mb.user_id";

fn sender_from_row(r: &crate::store::Row) -> Result<SenderAddress, StoreError> {
    Ok(SenderAddress {
        id: r.i32("id")?,
        address: r.text("address")?,
        mailbox_id: r.i32("mailbox_id")?,
        username: r.text("username")?,
    })
}

/// Sender addresses of the mailboxes in the domains the actor administers.
pub async fn list_sender_addresses(
    tx: &mut Tx,
    actor: Actor,
) -> Result<Vec<SenderAddress>, StoreError> {
    if matches!(
        actor,
        Actor::User {
            role: Role::SimpleUsers,
            ..
        }
    ) {
        return Ok(Vec::new());
    }
    let visible = access::domain_ids(tx, actor).await?;
    let rows = tx
        .rows(&format!("{SENDER_SELECT} ORDER BY sa.address, sa.id"), &[])
        .await?;
    let mut out = Vec::new();
    for r in &rows {
        let d = r.i32("domain_id")?;
        if visible.as_ref().is_none_or(|v| v.contains(&d)) {
            out.push(sender_from_row(r)?);
        }
    }
    Ok(out)
}

pub async fn get_sender_address(
    tx: &mut Tx,
    actor: Actor,
    id: i32,
) -> Result<SenderAddress, StoreError> {
    let not_found = || StoreError::not_found("sender address", format!("#{id}"));
    let r = tx
        .row_or_not_found(
            &format!("{SENDER_SELECT} WHERE sa.id = ?"),
            args![id],
            "sender address",
            &format!("#{id}"),
        )
        .await?;
    if !access::can_admin_domain(tx, actor, r.i32("domain_id")?).await? {
        return Err(not_found());
    }
    sender_from_row(&r)
}

/// The sender address `address` of `username`'s mailbox, after `add_sender_address`.
pub async fn find_sender_address(
    tx: &mut Tx,
    actor: Actor,
    username: &Username,
    address: &SenderPattern,
) -> Result<SenderAddress, StoreError> {
    let r = tx
        .row_or_not_found(
            &format!("{SENDER_SELECT} WHERE u.username = ? AND sa.address = ?"),
            args![username.as_str(), address.full.as_str()],
            "sender address",
            address,
        )
        .await?;
    get_sender_address(tx, actor, r.i32("id")?).await
}

/// Points sender address `id` at another address and/or mailbox (both visible to the actor).
pub async fn update_sender_address(
    tx: &mut Tx,
    actor: Actor,
    id: i32,
    address: &SenderPattern,
    username: &Username,
) -> Result<SenderAddress, StoreError> {
    get_sender_address(tx, actor, id).await?;
    let a = manageable(tx, actor, username).await?;
    let mb = a
        .mailbox
        .ok_or_else(|| StoreError::refused("mailbox", "this account has no mailbox"))?;
    check_sender_address(tx, actor, address).await?;
    if tx
        .count(
            "SELECT COUNT(*) FROM admin_senderaddress WHERE address = ? AND mailbox_id = ? AND id <> ?",
            args![address.full.as_str(), mb.id, id],
        )
        .await?
        > 0
    {
        return Err(StoreError::Exists {
            kind: "sender address",
            name: address.to_string(),
        });
    }
    tx.exec(
        "UPDATE admin_senderaddress SET address = ?, mailbox_id = ? WHERE id = ?",
        args![address.full.as_str(), mb.id, id],
    )
    .await?;
    audit::info(
        tx,
        &format!("Sender address {address} of {username} modified"),
    )
    .await?;
    get_sender_address(tx, actor, id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postfix_gets_its_expansions_in_place_of_the_placeholders() {
        for backend in [Backend::Postgres, Backend::Mysql, Backend::Sqlite] {
            let q = postfix_query(backend);
            assert!(!q.contains('?'), "{q}");
            assert_eq!(q.matches("'%s'").count(), 3);
            assert!(q.contains("sa.address='@%d'"), "{q}");
            assert_eq!(q.matches("'%u'").count(), 2, "{q}");
        }
        assert!(postfix_query(Backend::Sqlite)
            .contains("da.name='%d' AND da.enabled=1 AND mb.address='%u'"));
        assert!(postfix_query(Backend::Mysql).contains("al.address=CONCAT('%u', '@', d.name)"));
        assert!(postfix_query(Backend::Postgres).contains("al.address='%u' || '@' || d.name"));
    }
}
