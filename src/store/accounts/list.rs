//! Lists of accounts: the paged, filtered and counted query behind every list (UI, API, CLI,
//! exports), the inactive accounts the `inactive_accounts` job disables, the count of new
//! accounts for the statistics job, and the count of superadmins (the installer's check).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{assemble, select, select_columns, Account, MAILBOX_JOIN};
use crate::args;
use crate::store::access::{self, Actor, Kind, Role};
use crate::store::{contains_pattern, prefix_pattern, Page, StoreError, Tx, Value};

#[derive(Debug, Clone, Default)]
pub struct ListFilter<'a> {
    pub domain: Option<&'a str>,
    /// Part of the username.
    pub search: Option<&'a str>,
    /// Modoboa's account search (API v1): every term (split on spaces and commas) starts the
    /// first name, the last name or the address, whatever the case.
    pub name_terms: Option<&'a str>,
    pub role: Option<Role>,
    pub with_mailbox: Option<bool>,
}

/// Every account the actor may see that passes `filter`, by username.
pub async fn list(
    tx: &mut Tx,
    actor: Actor,
    filter: &ListFilter<'_>,
) -> Result<Vec<Account>, StoreError> {
    // One implementation: the paged query without a page (a few queries in all, not a few
    // per account).
    Ok(list_page(tx, actor, filter, None, 0).await?.items)
}

/// `limit` rows from `offset` of the accounts the actor may see (the rules of `visible`, in
/// SQL), by username, and how many there are in all. The page's roles, quotas, sender
/// addresses and domains come in four queries, not four per account.
pub async fn list_page(
    tx: &mut Tx,
    actor: Actor,
    filter: &ListFilter<'_>,
    limit: Option<i64>,
    offset: i64,
) -> Result<Page<Account>, StoreError> {
    let mut cond: Vec<&str> = Vec::new();
    let mut a: Vec<Value> = Vec::new();
    if let Actor::User { id, role } = actor {
        match role {
            Role::SuperAdmins => {}
            Role::SimpleUsers => {
                cond.push("u.id = ?");
                a.push(id.into());
            }
            Role::Resellers | Role::DomainAdmins => {
                let dom = access::content_type(tx, Kind::Domain).await?;
                let usr = access::content_type(tx, Kind::User).await?;
                cond.push("(u.id = ? OR mb.domain_id IN (SELECT object_id FROM core_objectaccess WHERE user_id = ? AND content_type_id = ?) OR u.id IN (SELECT object_id FROM core_objectaccess WHERE user_id = ? AND content_type_id = ?))");
                a.extend([id.into(), id.into(), dom.into(), id.into(), usr.into()]);
            }
        }
    }
    if let Some(d) = filter.domain {
        cond.push("d.name = ?");
        a.push(d.into());
    }
    if let Some(s) = filter.search.filter(|s| !s.is_empty()) {
        cond.push("u.username LIKE ? ESCAPE '!'");
        a.push(contains_pattern(s).into());
    }
    for term in filter
        .name_terms
        .unwrap_or("")
        .split([' ', ',', '\t'])
        .filter(|t| !t.is_empty())
    {
        cond.push("(LOWER(u.first_name) LIKE ? ESCAPE '!' OR LOWER(u.last_name) LIKE ? ESCAPE '!' OR LOWER(u.email) LIKE ? ESCAPE '!')");
        let p = prefix_pattern(term);
        a.extend([p.clone().into(), p.clone().into(), p.into()]);
    }
    match filter.with_mailbox {
        Some(true) => cond.push("mb.id IS NOT NULL"),
        Some(false) => cond.push("mb.id IS NULL"),
        None => {}
    }
    const IN_GROUP: &str = "EXISTS (SELECT 1 FROM core_user_groups ug INNER JOIN auth_group g ON g.id = ug.group_id WHERE ug.user_id = u.id AND g.name = ?)";
    let in_group = |g: &str| IN_GROUP.replace("g.name = ?", &format!("g.name = '{g}'"));
    // Constant group names (no user input): the same precedence as access::role_of.
    let role_cond = match filter.role {
        None => None,
        Some(Role::SuperAdmins) => Some("u.is_superuser = ?".to_string()),
        Some(Role::Resellers) => Some(format!("u.is_superuser = ? AND {}", in_group("Resellers"))),
        Some(Role::DomainAdmins) => Some(format!(
            "u.is_superuser = ? AND {} AND NOT {}",
            in_group("DomainAdmins"),
            in_group("Resellers")
        )),
        Some(Role::SimpleUsers) => Some(format!(
            "u.is_superuser = ? AND NOT {} AND NOT {}",
            in_group("DomainAdmins"),
            in_group("Resellers")
        )),
    };
    if let Some(c) = &role_cond {
        cond.push(c);
        a.push((filter.role == Some(Role::SuperAdmins)).into());
    }
    let filter_sql = if cond.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", cond.join(" AND "))
    };
    let total = tx
        .count(
            &format!("SELECT COUNT(*) FROM core_user u {MAILBOX_JOIN}{filter_sql}"),
            &a,
        )
        .await?;
    // The page's ids first, through an index on username when the filter allows (PostgreSQL
    // drops the unused outer joins), then the joins for those rows only; a derived table
    // because MariaDB refuses `IN (... LIMIT)`.
    let schema = tx.modoboa_schema().await?;
    let sql = match limit {
        Some(l) => {
            a.extend([l.into(), offset.into()]);
            format!("SELECT {} FROM (SELECT u.id AS page_id FROM core_user u {MAILBOX_JOIN}{filter_sql} ORDER BY u.username LIMIT ? OFFSET ?) p INNER JOIN core_user u ON u.id = p.page_id {MAILBOX_JOIN} ORDER BY u.username", select_columns(&schema))
        }
        None => format!("{}{filter_sql} ORDER BY u.username", select(&schema)),
    };
    let rows = tx.rows(&sql, &a).await?;
    if rows.is_empty() {
        return Ok(Page {
            items: Vec::new(),
            total,
        });
    }
    let ids = rows
        .iter()
        .map(|r| r.i32("id"))
        .collect::<Result<Vec<_>, _>>()?;
    let roles = access::roles_of(tx, &ids).await?;
    let mut full = Vec::new();
    let mut mb_ids = Vec::new();
    for r in &rows {
        if let Some(mb) = r.opt_i32("mb_id")? {
            mb_ids.push(mb);
            full.push(format!("{}@{}", r.text("mb_address")?, r.text("d_name")?));
        }
    }
    let mut used = HashMap::new();
    let mut senders: HashMap<i32, Vec<String>> = Default::default();
    if !full.is_empty() {
        let fa: Vec<Value> = full.iter().map(|f| f.into()).collect();
        for q in tx
            .rows_in(
                "SELECT username, bytes FROM admin_quota WHERE username IN ({in})",
                &[],
                &fa,
            )
            .await?
        {
            used.insert(q.text("username")?, q.i64("bytes")?);
        }
        senders = super::senders::addresses_of_mailboxes(tx, &mb_ids).await?;
    }
    let admins: Vec<i32> = ids
        .iter()
        .copied()
        .filter(|i| matches!(roles.get(i), Some(Role::Resellers | Role::DomainAdmins)))
        .collect();
    let mut doms: HashMap<i32, Vec<String>> = Default::default();
    if !admins.is_empty() {
        let ct = access::content_type(tx, Kind::Domain).await?;
        let da: Vec<Value> = admins.iter().map(|&i| i.into()).collect();
        for d in tx
            .rows_in(
                "SELECT oa.user_id, d.name FROM admin_domain d INNER JOIN core_objectaccess oa ON oa.object_id = d.id AND oa.content_type_id = ? WHERE oa.user_id IN ({in}) ORDER BY d.name",
                &[ct.into()],
                &da,
            )
            .await?
        {
            doms.entry(d.i32("user_id")?)
                .or_default()
                .push(d.text("name")?);
        }
    }
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let id = r.i32("id")?;
        let role = roles.get(&id).copied().unwrap_or(Role::SimpleUsers);
        let (u, s) = match r.opt_i32("mb_id")? {
            Some(mb) => {
                let f = format!("{}@{}", r.text("mb_address")?, r.text("d_name")?);
                (
                    used.get(&f).copied().unwrap_or(0),
                    senders.remove(&mb).unwrap_or_default(),
                )
            }
            None => (0, Vec::new()),
        };
        out.push(assemble(
            r,
            role,
            u,
            s,
            doms.remove(&id).unwrap_or_default(),
        )?);
    }
    Ok(Page { items: out, total })
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

/// When the first account was created.
pub async fn first_joined(tx: &mut Tx) -> Result<Option<DateTime<Utc>>, StoreError> {
    match tx
        .row("SELECT MIN(date_joined) AS first FROM core_user", &[])
        .await?
    {
        Some(r) => r.opt_ts("first"),
        None => Ok(None),
    }
}

/// The creation times of the accounts created in `[from, to)`.
pub async fn joined_between(
    tx: &mut Tx,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<DateTime<Utc>>, StoreError> {
    tx.rows(
        "SELECT date_joined FROM core_user WHERE date_joined >= ? AND date_joined < ?",
        args![from, to],
    )
    .await?
    .iter()
    .map(|r| r.ts("date_joined"))
    .collect()
}

/// How many superadmins there are.
pub async fn superadmin_count(tx: &mut Tx) -> Result<i64, StoreError> {
    tx.count(
        "SELECT COUNT(*) FROM core_user WHERE is_superuser = ?",
        args![true],
    )
    .await
}

/// The full address of one active mailbox account (the oldest), for the upgrade's lookups
/// through the daemons' own maps.
pub async fn some_active_mailbox(tx: &mut Tx) -> Result<Option<String>, StoreError> {
    let row = tx
        .row(
            "SELECT u.username FROM core_user u JOIN admin_mailbox m ON m.user_id = u.id \
             WHERE u.is_active = ? ORDER BY u.id LIMIT 1",
            args![true],
        )
        .await?;
    row.map(|r| r.text("username")).transpose()
}
