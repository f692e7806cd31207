//! What the server holds, for a backup's manifest and a restore's comparison: every domain
//! with its mailbox, alias and domain-alias counts, and every mailbox address. Read in one
//! transaction, so the counts agree with the database dump taken beside them.

use std::collections::BTreeMap;

use super::{StoreError, Tx};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainInventory {
    pub mailboxes: u64,
    /// Aliases an admin created (not the internal one Modoboa keeps per mailbox).
    pub aliases: u64,
    pub domain_aliases: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    pub domains: BTreeMap<String, DomainInventory>,
    /// `local@domain` of every mailbox.
    pub mailboxes: Vec<String>,
}

pub async fn read(tx: &mut Tx) -> Result<Inventory, StoreError> {
    let mut inv = Inventory::default();
    for r in tx.rows("SELECT name FROM admin_domain", &[]).await? {
        inv.domains
            .insert(r.text("name")?, DomainInventory::default());
    }
    let rows = tx
        .rows(
            "SELECT mb.address AS local, d.name AS domain FROM admin_mailbox mb \
             JOIN admin_domain d ON d.id = mb.domain_id ORDER BY d.name, mb.address",
            &[],
        )
        .await?;
    for r in rows {
        let domain = r.text("domain")?;
        inv.mailboxes.push(format!("{}@{domain}", r.text("local")?));
        inv.domains.entry(domain).or_default().mailboxes += 1;
    }
    let rows = tx
        .rows(
            "SELECT d.name AS domain, COUNT(*) AS n FROM admin_alias a \
             JOIN admin_domain d ON d.id = a.domain_id \
             WHERE a.internal = ? GROUP BY d.name",
            &[crate::store::Value::Bool(false)],
        )
        .await?;
    for r in rows {
        inv.domains.entry(r.text("domain")?).or_default().aliases = r.i64("n")? as u64;
    }
    let rows = tx
        .rows(
            "SELECT d.name AS domain, COUNT(*) AS n FROM admin_domainalias da \
             JOIN admin_domain d ON d.id = da.target_id GROUP BY d.name",
            &[],
        )
        .await?;
    for r in rows {
        inv.domains
            .entry(r.text("domain")?)
            .or_default()
            .domain_aliases = r.i64("n")? as u64;
    }
    Ok(inv)
}

/// A domain's DKIM key as the database knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimRecord {
    pub domain: String,
    /// Base64 of the public key (what the TXT record publishes).
    pub public_key: String,
    pub private_key_path: String,
}

/// The DKIM keys of the domains that sign (and have a key).
pub async fn dkim_keys(tx: &mut Tx) -> Result<Vec<DkimRecord>, StoreError> {
    let rows = tx
        .rows(
            "SELECT name, dkim_public_key, dkim_private_key_path FROM admin_domain \
             WHERE enable_dkim = ? AND dkim_public_key <> '' ORDER BY name",
            &[crate::store::Value::Bool(true)],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(DkimRecord {
                domain: r.text("name")?,
                public_key: r.text("dkim_public_key")?,
                private_key_path: r.text("dkim_private_key_path")?,
            })
        })
        .collect()
}
