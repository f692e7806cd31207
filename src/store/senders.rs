//! Who may send as an address: the one rule behind Postfix's sender-login map (the envelope
//! sender, `reject_sender_login_mismatch`) and the From: header milter (`crate::milter`). Both
//! run the query written here, so the two can never disagree.
//!
//! The logins allowed to send as an address are: the account whose address it is; the mailboxes
//! holding it as an extra sender address; the mailboxes an enabled alias of that address delivers
//! to; and, for an address at an enabled domain alias, the mailbox with the same local part in
//! the alias's target domain.

use super::db::Value;
use super::{Backend, StoreError, Tx};
use crate::names::EmailAddress;

/// What each `?` of the query stands for, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    /// The whole address (Postfix's `%s`).
    Address,
    /// Its local part (`%u`).
    Local,
    /// Its domain (`%d`).
    Domain,
}

const KEYS: [Key; 5] = [
    Key::Address,
    Key::Address,
    Key::Address,
    Key::Domain,
    Key::Local,
];

fn query(sql_true: &str) -> String {
    format!(
        "SELECT email FROM core_user WHERE email=? AND is_active={t} \
         UNION SELECT u.email FROM core_user u INNER JOIN admin_mailbox mb ON mb.user_id=u.id \
         INNER JOIN admin_senderaddress sa ON sa.mailbox_id=mb.id \
         WHERE sa.address=? AND u.is_active={t} \
         UNION SELECT u.email FROM core_user u INNER JOIN admin_mailbox mb ON mb.user_id=u.id \
         INNER JOIN modoboa_admin_aliasrecipient alr ON alr.r_mailbox_id=mb.id \
         INNER JOIN admin_alias al ON alr.alias_id=al.id \
         WHERE al.address=? AND al.enabled={t} AND u.is_active={t} \
         UNION SELECT u.email FROM core_user u INNER JOIN admin_mailbox mb ON mb.user_id=u.id \
         INNER JOIN admin_domainalias da ON da.target_id=mb.domain_id \
         WHERE da.name=? AND da.enabled={t} AND mb.address=? AND u.is_active={t}",
        t = sql_true
    )
}

/// The query as Postfix's SQL map wants it (`'%s'`, `'%u'`, `'%d'`; Postfix quotes the values).
pub fn postfix_query(sql_true: &str) -> String {
    let mut out = String::new();
    let mut keys = KEYS.iter();
    for (i, part) in query(sql_true).split('?').enumerate() {
        if i > 0 {
            out.push_str(match keys.next() {
                Some(Key::Address) => "'%s'",
                Some(Key::Local) => "'%u'",
                Some(Key::Domain) | None => "'%d'",
            });
        }
        out.push_str(part);
    }
    out
}

/// The logins (account addresses, lower case) that may send as `address`.
pub async fn logins_for(tx: &mut Tx, address: &EmailAddress) -> Result<Vec<String>, StoreError> {
    let sql_true = match tx.backend() {
        Backend::Postgres => "true",
        Backend::Mysql | Backend::Sqlite => "1",
    };
    let full = address.to_string().to_lowercase();
    let (local, domain) = full.rsplit_once('@').unwrap_or((full.as_str(), ""));
    let args: Vec<Value> = KEYS
        .iter()
        .map(|k| {
            Value::from(match k {
                Key::Address => full.as_str(),
                Key::Local => local,
                Key::Domain => domain,
            })
        })
        .collect();
    let rows = tx.rows(&query(sql_true), &args).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postfix_gets_its_expansions_in_place_of_the_placeholders() {
        let q = postfix_query("1");
        assert!(!q.contains('?'));
        assert_eq!(q.matches("'%s'").count(), 3);
        assert!(q.contains("da.name='%d' AND da.enabled=1 AND mb.address='%u'"));
    }
}
