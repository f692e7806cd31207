//! What the admin pages need beyond the object modules: paged domain lists with their total,
//! the `core_log` viewer, the global settings an admin may edit, and admin limits set by the
//! role allowed to set them. Every function takes the acting user and enforces the same rules
//! as the object modules.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::access::{self, Actor, Role};
use super::{accounts, audit, domains, StoreError, Tx};

/// One page of results and how many there are in all.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
}

/// The domains the actor administers whose name contains `search`, `kind` ("domain" or
/// "relaydomain") to filter, `limit` of them from `offset`, ordered by name.
pub async fn domains_page(
    tx: &mut Tx,
    actor: Actor,
    kind: Option<&str>,
    search: Option<&str>,
    offset: i64,
    limit: i64,
) -> Result<Page<domains::Domain>, StoreError> {
    if let Actor::User {
        role: Role::SimpleUsers,
        ..
    } = actor
    {
        return Err(StoreError::Forbidden(
            "simple users administer no domain".into(),
        ));
    }
    // The same paged query as the API's list (filtered, counted and cut in SQL).
    let q = domains::DomainQuery {
        kind,
        search: search.map(str::trim),
    };
    let (items, total) =
        domains::list_page(tx, actor, &q, Some(limit.max(0)), offset.max(0)).await?;
    Ok(Page { items, total })
}

/// One `core_log` line.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LogLine {
    pub id: i32,
    pub date_created: DateTime<Utc>,
    pub level: String,
    pub logger: String,
    pub message: String,
}

/// Levels Modoboa writes.
pub const LOG_LEVELS: [&str; 4] = ["INFO", "WARNING", "ERROR", "CRITICAL"];

fn require_super(actor: Actor, what: &str) -> Result<(), StoreError> {
    if actor.is_super() {
        Ok(())
    } else {
        Err(StoreError::Forbidden(format!("only superadmins {what}")))
    }
}

/// The newest log lines first, optionally of one level and one logger (superadmins only:
/// the log names every domain and login).
pub async fn log_page(
    tx: &mut Tx,
    actor: Actor,
    level: Option<&str>,
    logger: Option<&str>,
    offset: i64,
    limit: i64,
) -> Result<Page<LogLine>, StoreError> {
    require_super(actor, "read the log")?;
    let mut filter = String::from("1 = 1");
    let mut params: Vec<super::Value> = Vec::new();
    if let Some(l) = level {
        if !LOG_LEVELS.contains(&l) {
            return Err(StoreError::refused(
                "level",
                format!("must be one of {}", LOG_LEVELS.join(", ")),
            ));
        }
        filter.push_str(" AND level = ?");
        params.push(l.into());
    }
    if let Some(l) = logger {
        filter.push_str(" AND logger = ?");
        params.push(l.into());
    }
    let total = tx
        .count(
            &format!("SELECT COUNT(*) FROM core_log WHERE {filter}"),
            &params,
        )
        .await?;
    params.push(limit.max(0).into());
    params.push(offset.max(0).into());
    let rows = tx
        .rows(
            &format!("SELECT id, date_created, level, logger, message FROM core_log WHERE {filter} ORDER BY id DESC LIMIT ? OFFSET ?"),
            &params,
        )
        .await?;
    let items = rows
        .iter()
        .map(|r| {
            Ok(LogLine {
                id: r.i32("id")?,
                date_created: r.ts("date_created")?,
                level: r.text("level")?,
                logger: r.text("logger")?,
                message: r.text("message")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Page { items, total })
}

/// The loggers that have written to the log (for the filter).
pub async fn log_loggers(tx: &mut Tx, actor: Actor) -> Result<Vec<String>, StoreError> {
    require_super(actor, "read the log")?;
    tx.rows("SELECT DISTINCT logger FROM core_log ORDER BY logger", &[])
        .await?
        .iter()
        .map(|r| r.text("logger"))
        .collect()
}

/// A global setting kept in `modobox_setting` that an admin may change from the UI.
#[derive(Debug, Clone, Serialize)]
pub struct Parameter {
    pub name: &'static str,
    pub kind: &'static str,
    pub help: &'static str,
    pub default: String,
    pub value: String,
}

/// The settings the code reads (`password_rounds` in accounts, `enable_domain_limits` in
/// access); nothing else is offered, so nothing shown is without effect.
fn parameter_defs() -> [(&'static str, &'static str, &'static str, String); 2] {
    [
        (
            "enable_domain_limits",
            "bool",
            "Apply each domain's own limits (mailboxes, aliases, domain aliases, domain admins) to everyone, superadmins included.",
            "false".into(),
        ),
        (
            "password_rounds",
            "integer",
            "SHA512-CRYPT rounds of newly set passwords (1000 to 999999999). More is slower to guess and slower to log in.",
            crate::password::DEFAULT_ROUNDS.to_string(),
        ),
    ]
}

pub async fn parameters(tx: &mut Tx, actor: Actor) -> Result<Vec<Parameter>, StoreError> {
    require_super(actor, "see the global parameters")?;
    let mut out = Vec::new();
    for (name, kind, help, default) in parameter_defs() {
        let value = audit::setting(tx, name)
            .await?
            .unwrap_or_else(|| default.clone());
        out.push(Parameter {
            name,
            kind,
            help,
            default,
            value,
        });
    }
    Ok(out)
}

/// Checks and stores one editable parameter.
pub async fn set_parameter(
    tx: &mut Tx,
    actor: Actor,
    name: &str,
    value: &str,
) -> Result<(), StoreError> {
    require_super(actor, "change the global parameters")?;
    let value = value.trim();
    let value = match name {
        "enable_domain_limits" => match value {
            "true" | "false" => value.to_string(),
            _ => return Err(StoreError::refused(name, "must be true or false")),
        },
        "password_rounds" => match value.parse::<u32>() {
            Ok(n) if (1_000..=999_999_999).contains(&n) => n.to_string(),
            _ => {
                return Err(StoreError::refused(
                    name,
                    "must be a whole number between 1000 and 999999999",
                ))
            }
        },
        _ => {
            return Err(StoreError::refused(
                "parameter",
                "must be enable_domain_limits or password_rounds",
            ))
        }
    };
    if audit::setting(tx, name).await?.as_deref() == Some(value.as_str()) {
        return Ok(());
    }
    audit::set_setting(tx, name, &value).await?;
    audit::info(tx, &format!("Parameter {name} set to {value}")).await
}

/// Sets one limit of an admin. Superadmins set the limits of resellers and domain admins;
/// resellers those of the domain admins they may see; nobody their own.
pub async fn set_limit(
    tx: &mut Tx,
    actor: Actor,
    username: &str,
    name: &str,
    max: i32,
) -> Result<(), StoreError> {
    let a = accounts::get(tx, actor, username).await?;
    if !matches!(a.role, Role::Resellers | Role::DomainAdmins) {
        return Err(StoreError::refused(
            "limit",
            format!(
                "{username} is {}: only resellers and domain admins have limits",
                a.role
            ),
        ));
    }
    if actor.user_id() == Some(a.id) {
        return Err(StoreError::Forbidden(
            "you cannot set your own limits".into(),
        ));
    }
    let allowed = match actor {
        Actor::System => true,
        Actor::User { role, .. } => {
            role == Role::SuperAdmins || (role == Role::Resellers && a.role == Role::DomainAdmins)
        }
    };
    if !allowed {
        return Err(StoreError::Forbidden(format!(
            "you cannot set the limits of {username}"
        )));
    }
    access::set_user_limit(tx, a.id, name, max).await?;
    audit::info(tx, &format!("Limit {name} of {username} set to {max}")).await
}

/// The limits of an admin the actor may see, every known limit listed (-1 when unset).
pub async fn limits(
    tx: &mut Tx,
    actor: Actor,
    username: &str,
) -> Result<Vec<(String, i32)>, StoreError> {
    let a = accounts::get(tx, actor, username).await?;
    let set = access::user_limits(tx, a.id).await?;
    Ok(access::LIMIT_NAMES
        .iter()
        .map(|n| {
            let v = set.iter().find(|(k, _)| k == n).map_or(-1, |(_, v)| *v);
            (n.to_string(), v)
        })
        .collect())
}
