//! Who may do what: Modoboa's roles (superuser flag + groups), object access rows
//! (`core_objectaccess`, keyed by Django content types) and per-admin / per-domain limits.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::{StoreError, Tx};
use crate::args;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Role {
    SuperAdmins,
    Resellers,
    DomainAdmins,
    SimpleUsers,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::SuperAdmins,
        Role::Resellers,
        Role::DomainAdmins,
        Role::SimpleUsers,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Role::SuperAdmins => "SuperAdmins",
            Role::Resellers => "Resellers",
            Role::DomainAdmins => "DomainAdmins",
            Role::SimpleUsers => "SimpleUsers",
        }
    }
    pub fn is_admin(self) -> bool {
        self != Role::SimpleUsers
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                StoreError::refused(
                    "role",
                    "must be one of SuperAdmins, Resellers, DomainAdmins, SimpleUsers",
                )
            })
    }
}

/// Who asks for a change. The CLI runs as root and acts as the system; the web UI and API act
/// as the logged-in user and see only what that user administers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    System,
    User { id: i32, role: Role },
}

impl Actor {
    pub fn is_super(self) -> bool {
        matches!(
            self,
            Actor::System
                | Actor::User {
                    role: Role::SuperAdmins,
                    ..
                }
        )
    }
    pub fn user_id(self) -> Option<i32> {
        match self {
            Actor::System => None,
            Actor::User { id, .. } => Some(id),
        }
    }
}

/// The Django content types modobox records access for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    User,
    Domain,
    DomainAlias,
    Mailbox,
    Alias,
}

impl Kind {
    fn app_model(self) -> (&'static str, &'static str) {
        match self {
            Kind::User => ("core", "user"),
            Kind::Domain => ("admin", "domain"),
            Kind::DomainAlias => ("admin", "domainalias"),
            Kind::Mailbox => ("admin", "mailbox"),
            Kind::Alias => ("admin", "alias"),
        }
    }
}

/// The content type id (looked up, never assumed: an adopted database numbers them its way).
pub async fn content_type(tx: &mut Tx, kind: Kind) -> Result<i32, StoreError> {
    let (app, model) = kind.app_model();
    if let Some(r) = tx
        .row(
            "SELECT id FROM django_content_type WHERE app_label = ? AND model = ?",
            args![app, model],
        )
        .await?
    {
        return r.i32("id");
    }
    Ok(tx
        .insert(
            "INSERT INTO django_content_type (app_label, model) VALUES (?, ?)",
            args![app, model],
        )
        .await? as i32)
}

pub async fn grant(
    tx: &mut Tx,
    user_id: i32,
    kind: Kind,
    object_id: i32,
    is_owner: bool,
) -> Result<(), StoreError> {
    let ct = content_type(tx, kind).await?;
    let exists = tx
        .count(
            "SELECT COUNT(*) FROM core_objectaccess WHERE user_id = ? AND content_type_id = ? AND object_id = ?",
            args![user_id, ct, object_id],
        )
        .await?;
    if exists == 0 {
        tx.exec(
            "INSERT INTO core_objectaccess (user_id, content_type_id, object_id, is_owner) VALUES (?, ?, ?, ?)",
            args![user_id, ct, object_id, is_owner],
        )
        .await?;
    }
    Ok(())
}

/// A new object's access rows, as Modoboa writes them: its creator owns it (the first
/// superadmin when modobox creates it on no one's behalf: the CLI, an import, a job), and
/// every superadmin may administer it — Modoboa lists objects to superadmins through these
/// rows, so without them a return to Modoboa would hide what modobox made.
pub async fn grant_created(
    tx: &mut Tx,
    actor: Actor,
    kind: Kind,
    object_id: i32,
) -> Result<(), StoreError> {
    let owner = match actor.user_id() {
        Some(u) => Some(u),
        None => tx
            .row(
                "SELECT id FROM core_user WHERE is_superuser = ? ORDER BY id LIMIT 1",
                args![true],
            )
            .await?
            .map(|r| r.i32("id"))
            .transpose()?,
    };
    if let Some(o) = owner {
        grant(tx, o, kind, object_id, true).await?;
    }
    let ct = content_type(tx, kind).await?;
    tx.exec(
        "INSERT INTO core_objectaccess (user_id, content_type_id, object_id, is_owner) \
         SELECT u.id, ?, ?, ? FROM core_user u WHERE u.is_superuser = ? AND NOT EXISTS \
         (SELECT 1 FROM core_objectaccess a WHERE a.user_id = u.id AND a.content_type_id = ? AND a.object_id = ?)",
        args![ct, object_id, false, true, ct, object_id],
    )
    .await?;
    Ok(())
}

/// A new superadmin's access to every existing object (Modoboa does the same when an
/// account becomes a superadmin).
async fn grant_everything(tx: &mut Tx, user_id: i32) -> Result<(), StoreError> {
    for (kind, table, filter) in [
        (Kind::User, "core_user", ""),
        (Kind::Domain, "admin_domain", ""),
        (Kind::DomainAlias, "admin_domainalias", ""),
        (Kind::Mailbox, "admin_mailbox", ""),
        (Kind::Alias, "admin_alias", " AND t.internal = ?"),
    ] {
        let ct = content_type(tx, kind).await?;
        let sql = format!(
            "INSERT INTO core_objectaccess (user_id, content_type_id, object_id, is_owner) \
             SELECT ?, ?, t.id, ? FROM {table} t WHERE NOT EXISTS \
             (SELECT 1 FROM core_objectaccess a WHERE a.user_id = ? AND a.content_type_id = ? AND a.object_id = t.id){filter}"
        );
        if filter.is_empty() {
            tx.exec(&sql, args![user_id, ct, false, user_id, ct])
                .await?;
        } else {
            tx.exec(&sql, args![user_id, ct, false, user_id, ct, false])
                .await?;
        }
    }
    Ok(())
}

pub async fn revoke(
    tx: &mut Tx,
    user_id: i32,
    kind: Kind,
    object_id: i32,
) -> Result<u64, StoreError> {
    let ct = content_type(tx, kind).await?;
    tx.exec(
        "DELETE FROM core_objectaccess WHERE user_id = ? AND content_type_id = ? AND object_id = ?",
        args![user_id, ct, object_id],
    )
    .await
}

/// Drops every access row of an object that is being deleted.
pub async fn forget_object(tx: &mut Tx, kind: Kind, object_id: i32) -> Result<(), StoreError> {
    let ct = content_type(tx, kind).await?;
    tx.exec(
        "DELETE FROM core_objectaccess WHERE content_type_id = ? AND object_id = ?",
        args![ct, object_id],
    )
    .await?;
    Ok(())
}

/// Whether the actor administers the domain (superadmins administer everything).
pub async fn can_admin_domain(
    tx: &mut Tx,
    actor: Actor,
    domain_id: i32,
) -> Result<bool, StoreError> {
    let Actor::User { id, role } = actor else {
        return Ok(true);
    };
    match role {
        Role::SuperAdmins => Ok(true),
        Role::SimpleUsers => Ok(false),
        Role::Resellers | Role::DomainAdmins => {
            let ct = content_type(tx, Kind::Domain).await?;
            Ok(tx
                .count(
                    "SELECT COUNT(*) FROM core_objectaccess WHERE user_id = ? AND content_type_id = ? AND object_id = ?",
                    args![id, ct, domain_id],
                )
                .await?
                > 0)
        }
    }
}

pub async fn require_domain(
    tx: &mut Tx,
    actor: Actor,
    domain_id: i32,
    name: &str,
) -> Result<(), StoreError> {
    if can_admin_domain(tx, actor, domain_id).await? {
        Ok(())
    } else {
        // Same answer as a missing domain: an admin does not learn what others host.
        Err(StoreError::NotFound {
            kind: "domain",
            name: name.to_string(),
        })
    }
}

/// Refuses everyone but superadmins (and the system): `what` they alone may do.
pub fn require_super(actor: Actor, what: &str) -> Result<(), StoreError> {
    if actor.is_super() {
        Ok(())
    } else {
        Err(StoreError::Forbidden(format!("only superadmins {what}")))
    }
}

/// The ids of the domains an admin has access to (None = all).
pub async fn domain_ids(tx: &mut Tx, actor: Actor) -> Result<Option<Vec<i32>>, StoreError> {
    if actor.is_super() {
        return Ok(None);
    }
    let Some(id) = actor.user_id() else {
        return Ok(None);
    };
    let ct = content_type(tx, Kind::Domain).await?;
    let rows = tx
        .rows(
            "SELECT object_id FROM core_objectaccess WHERE user_id = ? AND content_type_id = ?",
            args![id, ct],
        )
        .await?;
    Ok(Some(
        rows.iter()
            .map(|r| r.i32("object_id"))
            .collect::<Result<_, _>>()?,
    ))
}

/// The role held by a user: the superuser flag, else its (single) group.
pub async fn role_of(tx: &mut Tx, user_id: i32) -> Result<Role, StoreError> {
    let row = tx
        .row_or_not_found(
            "SELECT is_superuser FROM core_user WHERE id = ?",
            args![user_id],
            "account",
            &format!("#{user_id}"),
        )
        .await?;
    if row.bool("is_superuser")? {
        return Ok(Role::SuperAdmins);
    }
    let groups = tx
        .rows(
            "SELECT g.name FROM auth_group g INNER JOIN core_user_groups ug ON ug.group_id = g.id WHERE ug.user_id = ?",
            args![user_id],
        )
        .await?;
    let names: Vec<String> = groups
        .iter()
        .map(|r| r.text("name"))
        .collect::<Result<_, _>>()?;
    for role in [Role::Resellers, Role::DomainAdmins, Role::SimpleUsers] {
        if names.iter().any(|n| n == role.as_str()) {
            return Ok(role);
        }
    }
    Ok(Role::SimpleUsers)
}

/// `role_of` for many users in one query (list pages).
pub async fn roles_of(
    tx: &mut Tx,
    user_ids: &[i32],
) -> Result<std::collections::HashMap<i32, Role>, StoreError> {
    let mut out = std::collections::HashMap::new();
    if user_ids.is_empty() {
        return Ok(out);
    }
    let a: Vec<super::Value> = user_ids.iter().map(|&i| i.into()).collect();
    let rows = tx
        .rows_in(
            "SELECT u.id, u.is_superuser, g.name FROM core_user u LEFT JOIN core_user_groups ug ON ug.user_id = u.id LEFT JOIN auth_group g ON g.id = ug.group_id WHERE u.id IN ({in})",
            &[],
            &a,
        )
        .await?;
    // Same precedence as role_of: superuser, then Resellers, DomainAdmins, SimpleUsers.
    let rank = |r: Role| Role::ALL.iter().position(|x| *x == r).unwrap_or(3);
    for r in &rows {
        let id = r.i32("id")?;
        let role = if r.bool("is_superuser")? {
            Role::SuperAdmins
        } else {
            match r.opt_text("name")?.as_deref() {
                Some("Resellers") => Role::Resellers,
                Some("DomainAdmins") => Role::DomainAdmins,
                _ => Role::SimpleUsers,
            }
        };
        let e = out.entry(id).or_insert(role);
        if rank(role) < rank(*e) {
            *e = role;
        }
    }
    Ok(out)
}

/// Gives a user exactly one role: superuser flag and group membership rewritten.
pub async fn set_role(tx: &mut Tx, user_id: i32, role: Role) -> Result<(), StoreError> {
    let superuser = role == Role::SuperAdmins;
    tx.exec(
        "UPDATE core_user SET is_superuser = ?, is_staff = ? WHERE id = ?",
        args![superuser, superuser, user_id],
    )
    .await?;
    tx.exec(
        "DELETE FROM core_user_groups WHERE user_id = ?",
        args![user_id],
    )
    .await?;
    if superuser {
        grant_everything(tx, user_id).await?;
    } else {
        let group = group_id(tx, role.as_str()).await?;
        tx.exec(
            "INSERT INTO core_user_groups (user_id, group_id) VALUES (?, ?)",
            args![user_id, group],
        )
        .await?;
    }
    Ok(())
}

async fn group_id(tx: &mut Tx, name: &str) -> Result<i32, StoreError> {
    if let Some(r) = tx
        .row("SELECT id FROM auth_group WHERE name = ?", args![name])
        .await?
    {
        return r.i32("id");
    }
    Ok(tx
        .insert("INSERT INTO auth_group (name) VALUES (?)", args![name])
        .await? as i32)
}

/// Names of Modoboa's limits.
pub const LIMIT_NAMES: [&str; 6] = [
    "domains",
    "domain_aliases",
    "mailboxes",
    "mailbox_aliases",
    "domain_admins",
    "quota",
];

pub fn check_limit_name(name: &str) -> Result<(), StoreError> {
    if LIMIT_NAMES.contains(&name) {
        Ok(())
    } else {
        Err(StoreError::refused(
            "limit",
            format!("must be one of {}", LIMIT_NAMES.join(", ")),
        ))
    }
}

/// The model a limit counts (Modoboa stores it with the limit).
fn limit_kind(name: &str) -> Kind {
    match name {
        "domain_aliases" => Kind::DomainAlias,
        "mailboxes" => Kind::Mailbox,
        "mailbox_aliases" => Kind::Alias,
        "domain_admins" => Kind::User,
        _ => Kind::Domain,
    }
}

pub async fn set_user_limit(
    tx: &mut Tx,
    user_id: i32,
    name: &str,
    max: i32,
) -> Result<(), StoreError> {
    check_limit_name(name)?;
    if max < -1 {
        return Err(StoreError::refused(
            name,
            "a limit is -1 (unlimited), 0 (none) or a positive number",
        ));
    }
    if tx
        .exec(
            "UPDATE limits_userobjectlimit SET max_value = ? WHERE user_id = ? AND name = ?",
            args![max, user_id, name],
        )
        .await?
        == 0
    {
        let ct = content_type(tx, limit_kind(name)).await?;
        tx.exec(
            "INSERT INTO limits_userobjectlimit (user_id, name, content_type_id, max_value) VALUES (?, ?, ?, ?)",
            args![user_id, name, ct, max],
        )
        .await?;
    }
    Ok(())
}

pub async fn user_limits(tx: &mut Tx, user_id: i32) -> Result<Vec<(String, i32)>, StoreError> {
    let rows = tx
        .rows(
            "SELECT name, max_value FROM limits_userobjectlimit WHERE user_id = ? ORDER BY name",
            args![user_id],
        )
        .await?;
    rows.iter()
        .map(|r| Ok((r.text("name")?, r.i32("max_value")?)))
        .collect()
}

/// Refuses a creation that would take an admin past its limit `name` (`used` already counted,
/// `adding` more). No row or -1 means unlimited (0 too for `quota`, a sum, as in Modoboa);
/// superadmins and the system have no limits.
pub async fn check_user_limit(
    tx: &mut Tx,
    actor: Actor,
    name: &str,
    used: i64,
    adding: i64,
) -> Result<(), StoreError> {
    let Actor::User { id, role } = actor else {
        return Ok(());
    };
    if role == Role::SuperAdmins {
        return Ok(());
    }
    let max = tx
        .row(
            "SELECT max_value FROM limits_userobjectlimit WHERE user_id = ? AND name = ?",
            args![id, name],
        )
        .await?;
    let max = max.map(|r| r.i32("max_value")).transpose()?;
    let max = if name == "quota" && max == Some(0) {
        None
    } else {
        max
    };
    check_against(name, max, used, adding)
}

/// The same for a domain's own limits (`limits_domainobjectlimit`), which bind everyone
/// when the `enable_domain_limits` setting is on (off by default, as in Modoboa).
pub async fn check_domain_limit(
    tx: &mut Tx,
    domain_id: i32,
    name: &str,
    used: i64,
    adding: i64,
) -> Result<(), StoreError> {
    let on = super::parameters::setting(tx, "enable_domain_limits").await?;
    if on.is_none_or(|v| v != "true") {
        return Ok(());
    }
    let max = tx
        .row(
            "SELECT max_value FROM limits_domainobjectlimit WHERE domain_id = ? AND name = ?",
            args![domain_id, name],
        )
        .await?;
    check_against(
        name,
        max.map(|r| r.i32("max_value")).transpose()?,
        used,
        adding,
    )
}

fn check_against(name: &str, max: Option<i32>, used: i64, adding: i64) -> Result<(), StoreError> {
    match max {
        None | Some(-1) => Ok(()),
        Some(max) if used + adding <= i64::from(max) => Ok(()),
        Some(max) => Err(StoreError::refused(
            name,
            format!("limit reached ({used} used of {max})"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_case_insensitively_and_refuse_others() {
        assert_eq!("domainadmins".parse::<Role>().unwrap(), Role::DomainAdmins);
        assert!("Admins".parse::<Role>().is_err());
    }

    #[test]
    fn limits_minus_one_is_unlimited_zero_is_none() {
        assert!(check_against("mailboxes", Some(-1), 1000, 1).is_ok());
        assert!(check_against("mailboxes", None, 1000, 1).is_ok());
        assert!(check_against("mailboxes", Some(0), 0, 1).is_err());
        assert!(check_against("mailboxes", Some(2), 1, 1).is_ok());
        assert!(check_against("mailboxes", Some(2), 2, 1).is_err());
    }
}
