//! Aliases, forwards and catch-alls (`admin_alias` + `modoboa_admin_aliasrecipient`), and the
//! internal aliases Modoboa keeps for every mailbox (`user@dom → user@dom`) and every domain
//! alias (`@alias → @target`): Postfix's `virtual_alias_maps` resolves all of them.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::access::{self, Actor, Kind};
use super::{audit, contains_pattern, Page, StoreError, Tx, Value};
use crate::args;
use crate::names::{DomainName, EmailAddress, Username};

/// An alias address: `local@domain`, or `@domain` for a catch-all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasAddress {
    pub full: String,
    pub domain: DomainName,
}

impl AliasAddress {
    pub fn parse(field: &str, value: &str) -> Result<Self, StoreError> {
        if let Some(domain) = value.trim().strip_prefix('@') {
            let domain = DomainName::parse(field, domain)?;
            return Ok(AliasAddress {
                full: format!("@{domain}"),
                domain,
            });
        }
        let addr = EmailAddress::parse(field, value.trim())?;
        let domain = DomainName::parse(field, addr.domain())?;
        Ok(AliasAddress {
            full: addr.as_str().to_string(),
            domain,
        })
    }
    pub fn is_catchall(&self) -> bool {
        self.full.starts_with('@')
    }
}

impl std::fmt::Display for AliasAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.full)
    }
}

/// An alias address given to find an alias (from a URL, a command line): text that cannot be
/// an alias address names none, so it is not found, like any unknown address.
pub fn address_to_find(text: &str) -> Result<AliasAddress, StoreError> {
    AliasAddress::parse("address", text).map_err(|_| StoreError::not_found("alias", text))
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Alias {
    pub id: i32,
    pub address: String,
    pub enabled: bool,
    pub internal: bool,
    pub description: String,
    pub expire_at: Option<DateTime<Utc>>,
    pub recipients: Vec<String>,
    pub creation: DateTime<Utc>,
}

#[derive(Debug, Clone, Default)]
pub struct AliasSpec {
    pub enabled: bool,
    pub description: String,
    pub expire_at: Option<DateTime<Utc>>,
    pub recipients: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct AliasPatch {
    pub enabled: Option<bool>,
    pub description: Option<String>,
    pub expire_at: Option<Option<DateTime<Utc>>>,
    pub recipients: Option<Vec<String>>,
}

/// What a recipient address points at, resolved as Modoboa does.
struct Target {
    address: String,
    mailbox: Option<i32>,
    alias: Option<i32>,
}

/// A recipient is a local mailbox, a local alias, or an address outside the hosted domains
/// (a forward). An address inside a hosted domain that matches nothing is refused.
async fn resolve(tx: &mut Tx, field: &str, value: &str) -> Result<Target, StoreError> {
    let addr = EmailAddress::parse(field, value)?;
    if let Some(r) = tx
        .row(
            "SELECT mb.id FROM admin_mailbox mb INNER JOIN admin_domain d ON mb.domain_id = d.id WHERE mb.address = ? AND d.name = ?",
            args![addr.local_part(), addr.domain()],
        )
        .await?
    {
        return Ok(Target {
            address: addr.as_str().to_string(),
            mailbox: Some(r.i32("id")?),
            alias: None,
        });
    }
    if let Some(r) = tx
        .row(
            "SELECT id FROM admin_alias WHERE address = ? AND internal = ?",
            args![addr.as_str(), false],
        )
        .await?
    {
        return Ok(Target {
            address: addr.as_str().to_string(),
            mailbox: None,
            alias: Some(r.i32("id")?),
        });
    }
    let hosted = tx
        .count(
            "SELECT COUNT(*) FROM admin_domain WHERE name = ? AND type = 'domain'",
            args![addr.domain()],
        )
        .await?;
    if hosted > 0 {
        return Err(StoreError::refused(
            field,
            format!("{addr} is in a hosted domain but is neither a mailbox nor an alias"),
        ));
    }
    Ok(Target {
        address: addr.as_str().to_string(),
        mailbox: None,
        alias: None,
    })
}

/// Resolves every recipient before anything is written, so a refusal changes nothing.
async fn resolve_all(
    tx: &mut Tx,
    recipients: &[String],
    own: Option<i32>,
) -> Result<Vec<Target>, StoreError> {
    if recipients.is_empty() {
        return Err(StoreError::refused(
            "recipients",
            "an alias needs at least one recipient",
        ));
    }
    let mut out: Vec<Target> = Vec::new();
    for (i, r) in recipients.iter().enumerate() {
        let t = resolve(tx, &format!("recipients[{}]", i + 1), r).await?;
        if own.is_some() && t.alias == own {
            return Err(StoreError::refused(
                "recipients",
                "an alias cannot point to itself",
            ));
        }
        if !out.iter().any(|o| o.address == t.address) {
            out.push(t);
        }
    }
    Ok(out)
}

async fn write_recipients(
    tx: &mut Tx,
    alias_id: i32,
    targets: &[Target],
) -> Result<(), StoreError> {
    tx.exec(
        "DELETE FROM modoboa_admin_aliasrecipient WHERE alias_id = ?",
        args![alias_id],
    )
    .await?;
    for t in targets {
        tx.exec(
            "INSERT INTO modoboa_admin_aliasrecipient (address, alias_id, r_mailbox_id, r_alias_id) VALUES (?, ?, ?, ?)",
            args![t.address.as_str(), alias_id, t.mailbox, t.alias],
        )
        .await?;
    }
    Ok(())
}

/// The internal alias of a mailbox or domain alias; recipients stored verbatim.
pub(super) async fn create_internal(
    tx: &mut Tx,
    address: &str,
    domain_id: Option<i32>,
    recipient: &str,
    mailbox: Option<i32>,
) -> Result<i32, StoreError> {
    let now = Utc::now();
    let id = tx
        .insert(
            "INSERT INTO admin_alias (address, domain_id, enabled, internal, description, expire_at, creation, last_modification) VALUES (?, ?, ?, ?, '', ?, ?, ?)",
            args![address, domain_id, true, true, None::<DateTime<Utc>>, now, now],
        )
        .await? as i32;
    tx.exec(
        "INSERT INTO modoboa_admin_aliasrecipient (address, alias_id, r_mailbox_id, r_alias_id) VALUES (?, ?, ?, ?)",
        args![recipient, id, mailbox, None::<i32>],
    )
    .await?;
    Ok(id)
}

/// Deletes aliases by id with their recipients, and unhooks other aliases pointing at them;
/// an ordinary alias left with no recipient is deleted too (as Modoboa does).
pub(super) async fn delete_ids(tx: &mut Tx, ids: Vec<i32>) -> Result<(), StoreError> {
    let mut queue = ids;
    while let Some(id) = queue.pop() {
        let parents = tx
            .rows(
                "SELECT DISTINCT alias_id FROM modoboa_admin_aliasrecipient WHERE r_alias_id = ?",
                args![id],
            )
            .await?;
        tx.exec(
            "DELETE FROM modoboa_admin_aliasrecipient WHERE alias_id = ? OR r_alias_id = ?",
            args![id, id],
        )
        .await?;
        access::forget_object(tx, Kind::Alias, id).await?;
        super::modoboa_schema::clear_references(tx, "admin_alias", id, "alias").await?;
        tx.exec("DELETE FROM admin_alias WHERE id = ?", args![id])
            .await?;
        for p in parents {
            queue.extend(orphan(tx, p.i32("alias_id")?).await?);
        }
    }
    Ok(())
}

/// Deletes the internal alias of a mailbox (`user@dom`) or a domain alias (`@alias`).
pub(super) async fn delete_internal(tx: &mut Tx, address: &str) -> Result<(), StoreError> {
    let ids = tx
        .rows(
            "SELECT id FROM admin_alias WHERE address = ? AND internal = ?",
            args![address, true],
        )
        .await?
        .iter()
        .map(|r| r.i32("id"))
        .collect::<Result<Vec<_>, _>>()?;
    delete_ids(tx, ids).await
}

/// The alias if it is an ordinary alias that has no recipient left.
async fn orphan(tx: &mut Tx, alias_id: i32) -> Result<Option<i32>, StoreError> {
    let left = tx
        .count(
            "SELECT COUNT(*) FROM modoboa_admin_aliasrecipient WHERE alias_id = ?",
            args![alias_id],
        )
        .await?;
    let internal = tx
        .row(
            "SELECT internal FROM admin_alias WHERE id = ?",
            args![alias_id],
        )
        .await?
        .map(|r| r.bool("internal"))
        .transpose()?
        .unwrap_or(true);
    Ok((left == 0 && !internal).then_some(alias_id))
}

/// Removes a mailbox from every alias that delivers to it (before the mailbox goes away).
pub(super) async fn unhook_mailbox(tx: &mut Tx, mailbox_id: i32) -> Result<(), StoreError> {
    let parents = tx
        .rows(
            "SELECT DISTINCT alias_id FROM modoboa_admin_aliasrecipient WHERE r_mailbox_id = ?",
            args![mailbox_id],
        )
        .await?;
    tx.exec(
        "DELETE FROM modoboa_admin_aliasrecipient WHERE r_mailbox_id = ?",
        args![mailbox_id],
    )
    .await?;
    let mut empty = Vec::new();
    for p in parents {
        if let Some(id) = orphan(tx, p.i32("alias_id")?).await? {
            empty.push(id);
        }
    }
    delete_ids(tx, empty).await
}

async fn domain_of(tx: &mut Tx, actor: Actor, domain: &DomainName) -> Result<i32, StoreError> {
    let row = tx
        .row_or_not_found(
            "SELECT id FROM admin_domain WHERE name = ?",
            args![domain.as_str()],
            "domain",
            domain,
        )
        .await?;
    let id = row.i32("id")?;
    access::require_domain(tx, actor, id, domain.as_str()).await?;
    Ok(id)
}

pub async fn create(
    tx: &mut Tx,
    actor: Actor,
    address: &AliasAddress,
    spec: &AliasSpec,
) -> Result<Alias, StoreError> {
    let domain_id = domain_of(tx, actor, &address.domain).await?;
    guard_account_address(tx, actor, address).await?;
    let taken = tx
        .count(
            "SELECT COUNT(*) FROM admin_alias WHERE address = ? AND internal = ?",
            args![address.full.as_str(), false],
        )
        .await?;
    if taken > 0 {
        return Err(StoreError::Exists {
            kind: "alias",
            name: address.full.clone(),
        });
    }
    let used = tx
        .count(
            "SELECT COUNT(*) FROM admin_alias WHERE domain_id = ? AND internal = ?",
            args![domain_id, false],
        )
        .await?;
    access::check_domain_limit(tx, domain_id, "mailbox_aliases", used, 1).await?;
    if let Some(uid) = actor.user_id() {
        let mine = admin_alias_count(tx, uid).await?;
        access::check_user_limit(tx, actor, "mailbox_aliases", mine, 1).await?;
    }
    let targets = resolve_all(tx, &spec.recipients, None).await?;
    let now = Utc::now();
    let id = tx
        .insert(
            "INSERT INTO admin_alias (address, domain_id, enabled, internal, description, expire_at, creation, last_modification) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            args![address.full.as_str(), domain_id, spec.enabled, false, spec.description.as_str(), spec.expire_at, now, now],
        )
        .await? as i32;
    write_recipients(tx, id, &targets).await?;
    access::grant_created(tx, actor, Kind::Alias, id).await?;
    audit::info(tx, &format!("Alias {address} created")).await?;
    get(tx, actor, address).await
}

/// An alias (or forward) on an account's own address takes that account's mail: it is created,
/// changed or removed only by who may manage the account (`accounts::manageable`), so a domain
/// admin cannot redirect the mail of a superadmin whose mailbox is in its domain.
async fn guard_account_address(
    tx: &mut Tx,
    actor: Actor,
    address: &AliasAddress,
) -> Result<(), StoreError> {
    if actor.is_super() {
        return Ok(());
    }
    let Some((local, _)) = address.full.rsplit_once('@') else {
        return Ok(());
    };
    let mut owner = tx
        .row(
            "SELECT username FROM core_user WHERE username = ?",
            args![address.full.as_str()],
        )
        .await?
        .map(|r| r.text("username"))
        .transpose()?;
    if owner.is_none() && !local.is_empty() {
        if let Some(domain_id) = super::domains::hosting_domain(tx, &address.domain).await? {
            owner = tx
                .row(
                    "SELECT u.username FROM admin_mailbox mb INNER JOIN core_user u ON u.id = mb.user_id WHERE mb.address = ? AND mb.domain_id = ?",
                    args![local, domain_id],
                )
                .await?
                .map(|r| r.text("username"))
                .transpose()?;
        }
    }
    let Some(username) = owner else {
        return Ok(());
    };
    match super::accounts::manageable(tx, actor, &Username::existing(&username)).await {
        Ok(_) => Ok(()),
        Err(StoreError::Forbidden(why)) => Err(StoreError::Forbidden(format!(
            "{address} is the address of {username}: {why}"
        ))),
        Err(StoreError::NotFound { .. }) => Err(StoreError::Forbidden(format!(
            "{address} is the address of an account you do not manage"
        ))),
        Err(e) => Err(e),
    }
}

async fn admin_alias_count(tx: &mut Tx, user_id: i32) -> Result<i64, StoreError> {
    let ct = access::content_type(tx, Kind::Domain).await?;
    tx.count(
        "SELECT COUNT(*) FROM admin_alias a INNER JOIN core_objectaccess oa ON oa.object_id = a.domain_id AND oa.content_type_id = ? WHERE oa.user_id = ? AND a.internal = ?",
        args![ct, user_id, false],
    )
    .await
}

fn alias_from_row(r: &super::Row, recipients: Vec<String>) -> Result<Alias, StoreError> {
    Ok(Alias {
        id: r.i32("id")?,
        address: r.text("address")?,
        enabled: r.bool("enabled")?,
        internal: r.bool("internal")?,
        description: r.text("description")?,
        expire_at: r.opt_ts("expire_at")?,
        recipients,
        creation: r.ts("creation")?,
    })
}

async fn recipients_of(tx: &mut Tx, alias_id: i32) -> Result<Vec<String>, StoreError> {
    let rows = tx
        .rows(
            "SELECT address FROM modoboa_admin_aliasrecipient WHERE alias_id = ? ORDER BY address",
            args![alias_id],
        )
        .await?;
    rows.iter().map(|r| r.text("address")).collect()
}

const ALIAS_COLUMNS: &str =
    "id, address, enabled, internal, description, expire_at, creation, domain_id";

/// An ordinary (non-internal) alias by address.
pub async fn get(tx: &mut Tx, actor: Actor, address: &AliasAddress) -> Result<Alias, StoreError> {
    let not_found = || StoreError::not_found("alias", address);
    let row = tx
        .row_or_not_found(
            &format!("SELECT {ALIAS_COLUMNS} FROM admin_alias WHERE address = ? AND internal = ?"),
            args![address.full.as_str(), false],
            "alias",
            address,
        )
        .await?;
    if let Some(d) = row.opt_i32("domain_id")? {
        if !access::can_admin_domain(tx, actor, d).await? {
            return Err(not_found());
        }
    } else if !actor.is_super() {
        return Err(not_found());
    }
    let recipients = recipients_of(tx, row.i32("id")?).await?;
    alias_from_row(&row, recipients)
}

/// The address of ordinary alias `id`, whoever may see it: callers then ask `get`.
/// An address that fails today's rule is a damaged row.
pub async fn address_by_id(tx: &mut Tx, id: i32) -> Result<Option<AliasAddress>, StoreError> {
    let Some(r) = tx
        .row(
            "SELECT address FROM admin_alias WHERE id = ? AND internal = ?",
            args![id, false],
        )
        .await?
    else {
        return Ok(None);
    };
    let text = r.text("address")?;
    AliasAddress::parse("address", &text)
        .map(Some)
        .map_err(|e| StoreError::corrupt("alias address", e))
}

/// Ordinary aliases, optionally of one domain, that the actor may see.
pub async fn list(
    tx: &mut Tx,
    actor: Actor,
    domain: Option<&DomainName>,
) -> Result<Vec<Alias>, StoreError> {
    Ok(list_page(tx, actor, domain, None, None, 0).await?.items)
}

/// `limit` ordinary aliases from `offset` (all with `None`), by address, optionally of one
/// domain, whose address or one of whose recipients contains `search`, among those the actor
/// may see; and how many there are in all. Filtered, counted and cut in SQL; the recipients of
/// the page come in one query per 1,000 aliases, not one per alias.
pub async fn list_page(
    tx: &mut Tx,
    actor: Actor,
    domain: Option<&DomainName>,
    search: Option<&str>,
    limit: Option<i64>,
    offset: i64,
) -> Result<Page<Alias>, StoreError> {
    let mut cond = vec!["a.internal = ?"];
    let mut a: Vec<Value> = vec![false.into()];
    if let Some(d) = domain {
        let id = domain_of(tx, actor, d).await?;
        cond.push("a.domain_id = ?");
        a.push(id.into());
    }
    if let (false, Some(user)) = (actor.is_super(), actor.user_id()) {
        let ct = access::content_type(tx, Kind::Domain).await?;
        cond.push("a.domain_id IN (SELECT object_id FROM core_objectaccess WHERE user_id = ? AND content_type_id = ?)");
        a.extend([user.into(), ct.into()]);
    }
    if let Some(s) = search.map(str::trim).filter(|s| !s.is_empty()) {
        let pattern = contains_pattern(s);
        cond.push("(a.address LIKE ? ESCAPE '!' OR EXISTS (SELECT 1 FROM modoboa_admin_aliasrecipient r WHERE r.alias_id = a.id AND r.address LIKE ? ESCAPE '!'))");
        a.extend([pattern.clone().into(), pattern.into()]);
    }
    let filter = cond.join(" AND ");
    let total = tx
        .count(
            &format!("SELECT COUNT(*) FROM admin_alias a WHERE {filter}"),
            &a,
        )
        .await?;
    let mut sql =
        format!("SELECT {ALIAS_COLUMNS} FROM admin_alias a WHERE {filter} ORDER BY a.address");
    if let Some(l) = limit {
        sql.push_str(" LIMIT ? OFFSET ?");
        a.extend([l.max(0).into(), offset.max(0).into()]);
    }
    let rows = tx.rows(&sql, &a).await?;
    let ids = rows
        .iter()
        .map(|r| r.i32("id"))
        .collect::<Result<Vec<_>, _>>()?;
    let values: Vec<Value> = ids.iter().map(|&i| i.into()).collect();
    let mut recipients: HashMap<i32, Vec<String>> = HashMap::new();
    for r in &tx
        .rows_in(
            "SELECT alias_id, address FROM modoboa_admin_aliasrecipient WHERE alias_id IN ({in}) ORDER BY address",
            &[],
            &values,
        )
        .await?
    {
        recipients
            .entry(r.i32("alias_id")?)
            .or_default()
            .push(r.text("address")?);
    }
    let items = rows
        .iter()
        .zip(&ids)
        .map(|(r, id)| alias_from_row(r, recipients.remove(id).unwrap_or_default()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page { items, total })
}

pub async fn update(
    tx: &mut Tx,
    actor: Actor,
    address: &AliasAddress,
    patch: &AliasPatch,
) -> Result<Alias, StoreError> {
    let current = get(tx, actor, address).await?;
    guard_account_address(tx, actor, address).await?;
    let enabled = patch.enabled.unwrap_or(current.enabled);
    let description = patch.description.clone().unwrap_or(current.description);
    let expire_at = patch.expire_at.unwrap_or(current.expire_at);
    let targets = match &patch.recipients {
        Some(r) => Some(resolve_all(tx, r, Some(current.id)).await?),
        None => None,
    };
    tx.exec(
        "UPDATE admin_alias SET enabled = ?, description = ?, expire_at = ?, last_modification = ? WHERE id = ?",
        args![enabled, description, expire_at, Utc::now(), current.id],
    )
    .await?;
    if let Some(targets) = &targets {
        write_recipients(tx, current.id, targets).await?;
    }
    audit::info(tx, &format!("Alias {address} modified")).await?;
    get(tx, actor, address).await
}

pub async fn delete(tx: &mut Tx, actor: Actor, address: &AliasAddress) -> Result<(), StoreError> {
    let current = get(tx, actor, address).await?;
    guard_account_address(tx, actor, address).await?;
    delete_ids(tx, vec![current.id]).await?;
    audit::info(tx, &format!("Alias {address} deleted")).await
}
