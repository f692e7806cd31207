//! `modobox_setting`, modobox's key/value table: the global parameters an admin may edit from
//! the UI (checked and audited here) and the state modobox keeps for itself (DNS check results,
//! the public API's answers), read and written raw.

use serde::Serialize;

use super::access::{self, Actor};
use super::{audit, StoreError, Tx};
use crate::args;

/// The stored value of `name`, if any.
pub async fn setting(tx: &mut Tx, name: &str) -> Result<Option<String>, StoreError> {
    match tx
        .row(
            "SELECT value FROM modobox_setting WHERE name = ?",
            args![name],
        )
        .await?
    {
        Some(r) => Ok(Some(r.text("value")?)),
        None => Ok(None),
    }
}

/// Stores `value` under `name`, unchecked (callers own the meaning of their keys).
pub async fn set_setting(tx: &mut Tx, name: &str, value: &str) -> Result<(), StoreError> {
    if tx
        .exec(
            "UPDATE modobox_setting SET value = ? WHERE name = ?",
            args![value, name],
        )
        .await?
        == 0
    {
        tx.exec(
            "INSERT INTO modobox_setting (name, value) VALUES (?, ?)",
            args![name, value],
        )
        .await?;
    }
    Ok(())
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

/// The editable parameters with their values (superadmins only).
pub async fn editable(tx: &mut Tx, actor: Actor) -> Result<Vec<Parameter>, StoreError> {
    access::require_super(actor, "see the global parameters")?;
    let mut out = Vec::new();
    for (name, kind, help, default) in parameter_defs() {
        let value = setting(tx, name).await?.unwrap_or_else(|| default.clone());
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
pub async fn change(tx: &mut Tx, actor: Actor, name: &str, value: &str) -> Result<(), StoreError> {
    access::require_super(actor, "change the global parameters")?;
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
    if setting(tx, name).await?.as_deref() == Some(value.as_str()) {
        return Ok(());
    }
    set_setting(tx, name, &value).await?;
    audit::info(tx, &format!("Parameter {name} set to {value}")).await
}
