//! What `check_mx` reads and writes: the domains to check, their MX rows (`admin_mxrecord`,
//! whose `address` is `inet` on PostgreSQL and `char(39)` elsewhere), the DNSBL results
//! (`admin_dnsblresult`), who administers a domain, and the per-domain check state kept in
//! `modobox_setting` (`check_mx.domain.<id>`) so that alerts fire on changes only.

use std::net::IpAddr;

use chrono::{DateTime, Utc};

use super::access::{self, Kind};
use super::{parameters, Backend, StoreError, Tx};
use crate::args;

/// A domain whose DNS is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedDomain {
    pub id: i32,
    pub name: String,
}

/// Enabled domains with DNS checks on, as Modoboa selects them (relay domains included).
pub async fn domains(tx: &mut Tx) -> Result<Vec<CheckedDomain>, StoreError> {
    tx.rows(
        "SELECT id, name FROM admin_domain WHERE enabled = ? AND enable_dns_checks = ? ORDER BY name",
        args![true, true],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(CheckedDomain {
            id: r.i32("id")?,
            name: r.text("name")?,
        })
    })
    .collect()
}

/// One `admin_mxrecord` row. `managed` is Modoboa's flag for "this MX address is inside the
/// valid networks" (false when no network is configured).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxRow {
    pub id: i32,
    pub name: String,
    pub address: IpAddr,
    pub managed: bool,
    /// When the row goes stale (Modoboa stores the expiry here).
    pub updated: DateTime<Utc>,
}

/// PostgreSQL's `inet` prints a host address without its /32 through `host()`; the other
/// engines store the text as written.
fn address_column(tx: &Tx) -> &'static str {
    match tx.backend() {
        Backend::Postgres => "host(address)",
        _ => "address",
    }
}

fn address_param(tx: &Tx) -> &'static str {
    match tx.backend() {
        Backend::Postgres => "CAST(? AS inet)",
        _ => "?",
    }
}

pub async fn mx_rows(tx: &mut Tx, domain_id: i32) -> Result<Vec<MxRow>, StoreError> {
    let sql = format!(
        "SELECT id, name, {} AS address, managed, updated FROM admin_mxrecord WHERE domain_id = ? ORDER BY id",
        address_column(tx)
    );
    let rows = tx.rows(&sql, args![domain_id]).await?;
    rows.iter()
        .map(|r| {
            let text = r.text("address")?;
            let address = text.trim().parse().map_err(|_| StoreError::Corrupt {
                what: format!("admin_mxrecord.address {text:?} is not an IP address"),
            })?;
            Ok(MxRow {
                id: r.i32("id")?,
                name: r.text("name")?,
                address,
                managed: r.bool("managed")?,
                updated: r.ts("updated")?,
            })
        })
        .collect()
}

pub async fn insert_mx(
    tx: &mut Tx,
    domain_id: i32,
    name: &str,
    address: IpAddr,
    managed: bool,
    expires: DateTime<Utc>,
) -> Result<i32, StoreError> {
    // admin_mxrecord.name is varchar(254); a longer exchanger name cannot exist in DNS.
    let name: String = name.chars().take(254).collect();
    let sql = format!(
        "INSERT INTO admin_mxrecord (domain_id, name, address, managed, updated) VALUES (?, ?, {}, ?, ?)",
        address_param(tx)
    );
    let id = tx
        .insert(
            &sql,
            args![domain_id, name, address.to_string(), managed, expires],
        )
        .await?;
    i32::try_from(id).map_err(|_| StoreError::Corrupt {
        what: "an admin_mxrecord id out of range".into(),
    })
}

/// Keeps a row (and so its DNSBL history) for another period.
pub async fn refresh_mx(
    tx: &mut Tx,
    id: i32,
    managed: bool,
    expires: DateTime<Utc>,
) -> Result<(), StoreError> {
    tx.exec(
        "UPDATE admin_mxrecord SET managed = ?, updated = ? WHERE id = ?",
        args![managed, expires, id],
    )
    .await?;
    Ok(())
}

/// Removes an MX row and the DNSBL results that point at it (Django's cascade).
pub async fn delete_mx(tx: &mut Tx, id: i32) -> Result<(), StoreError> {
    tx.exec("DELETE FROM admin_dnsblresult WHERE mx_id = ?", args![id])
        .await?;
    tx.exec("DELETE FROM admin_mxrecord WHERE id = ?", args![id])
        .await?;
    Ok(())
}

/// One `admin_dnsblresult` row: `status` '' = not listed, else the list's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsblRow {
    pub provider: String,
    pub mx_id: i32,
    pub status: String,
}

pub async fn dnsbl_rows(tx: &mut Tx, domain_id: i32) -> Result<Vec<DnsblRow>, StoreError> {
    tx.rows(
        "SELECT provider, mx_id, status FROM admin_dnsblresult WHERE domain_id = ? ORDER BY id",
        args![domain_id],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(DnsblRow {
            provider: r.text("provider")?,
            mx_id: r.i32("mx_id")?,
            status: r.text("status")?,
        })
    })
    .collect()
}

pub async fn set_dnsbl(
    tx: &mut Tx,
    domain_id: i32,
    provider: &str,
    mx_id: i32,
    status: &str,
) -> Result<(), StoreError> {
    // status is varchar(45): an IPv4 answer always fits.
    let status: String = status.chars().take(45).collect();
    let changed = tx
        .exec(
            "UPDATE admin_dnsblresult SET status = ? WHERE domain_id = ? AND provider = ? AND mx_id = ?",
            args![&status, domain_id, provider, mx_id],
        )
        .await?;
    if changed == 0 {
        tx.exec(
            "INSERT INTO admin_dnsblresult (domain_id, provider, mx_id, status) VALUES (?, ?, ?, ?)",
            args![domain_id, provider, mx_id, status],
        )
        .await?;
    }
    Ok(())
}

/// Drops the results of a provider no longer configured.
pub async fn delete_dnsbl(tx: &mut Tx, domain_id: i32, provider: &str) -> Result<(), StoreError> {
    tx.exec(
        "DELETE FROM admin_dnsblresult WHERE domain_id = ? AND provider = ?",
        args![domain_id, provider],
    )
    .await?;
    Ok(())
}

/// The addresses of the active domain administrators and resellers who have access to the
/// domain (superadmins are reached through the configured admin address). `email` when set,
/// else the login, which is an address for Modoboa's accounts.
pub async fn admin_addresses(tx: &mut Tx, domain_id: i32) -> Result<Vec<String>, StoreError> {
    let ct = access::content_type(tx, Kind::Domain).await?;
    let rows = tx
        .rows(
            "SELECT u.id, u.username, u.email FROM core_user u INNER JOIN core_objectaccess oa ON oa.user_id = u.id WHERE oa.content_type_id = ? AND oa.object_id = ? AND u.is_active = ? AND u.is_superuser = ? ORDER BY u.username",
            args![ct, domain_id, true, false],
        )
        .await?;
    let mut out = Vec::new();
    for r in rows {
        let role = access::role_of(tx, r.i32("id")?).await?;
        if !role.is_admin() {
            continue;
        }
        let email = r.text("email")?;
        let address = if email.trim().is_empty() {
            r.text("username")?
        } else {
            email
        };
        if !out.contains(&address) {
            out.push(address);
        }
    }
    Ok(out)
}

const STATE_PREFIX: &str = "check_mx.domain.";

/// The check's last state of a domain (JSON written by the job).
pub async fn state(tx: &mut Tx, domain_id: i32) -> Result<Option<String>, StoreError> {
    parameters::setting(tx, &format!("{STATE_PREFIX}{domain_id}")).await
}

pub async fn set_state(tx: &mut Tx, domain_id: i32, json: &str) -> Result<(), StoreError> {
    parameters::set_setting(tx, &format!("{STATE_PREFIX}{domain_id}"), json).await
}

/// Forgets the state of domains that are gone or no longer checked, so that a domain checked
/// again later starts afresh.
pub async fn prune_states(tx: &mut Tx, checked: &[i32]) -> Result<u64, StoreError> {
    let rows = tx
        .rows(
            "SELECT name FROM modobox_setting WHERE name LIKE ?",
            args![format!("{STATE_PREFIX}%")],
        )
        .await?;
    let mut removed = 0;
    for r in rows {
        let name = r.text("name")?;
        let keep = name
            .strip_prefix(STATE_PREFIX)
            .and_then(|id| id.parse::<i32>().ok())
            .is_some_and(|id| checked.contains(&id));
        if !keep {
            removed += tx
                .exec("DELETE FROM modobox_setting WHERE name = ?", args![name])
                .await?;
        }
    }
    Ok(removed)
}
