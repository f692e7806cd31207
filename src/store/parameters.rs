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
    /// For kind `choice`: the values offered, as `[value, label]`.
    pub options: Vec<[&'static str; 2]>,
}

/// The settings the code reads (`password_*` in accounts, `enable_domain_limits` in access);
/// nothing else is offered, so nothing shown is without effect.
fn parameter_defs() -> [(&'static str, &'static str, &'static str, String); 4] {
    [
        (
            "enable_domain_limits",
            "bool",
            "Apply each domain's own limits (mailboxes, aliases, domain aliases, domain admins) to everyone, superadmins included.",
            "false".into(),
        ),
        (
            "password_scheme",
            "choice",
            "How new passwords are hashed. Dovecot must read the scheme (checked when saved).",
            crate::password::HashPolicy::default().scheme().to_string(),
        ),
        (
            "password_rounds",
            "integer",
            "SHA512-CRYPT and SHA256-CRYPT rounds of newly set passwords (1000 to 999999999). More is slower to guess and slower to log in.",
            crate::password::DEFAULT_ROUNDS.to_string(),
        ),
        (
            "password_update_scheme",
            "bool",
            "At a successful login, store again a password kept in another scheme (or with fewer rounds) in the one above.",
            "true".into(),
        ),
    ]
}

fn options(name: &str) -> Vec<[&'static str; 2]> {
    match name {
        "password_scheme" => crate::password::WRITABLE_SCHEMES
            .iter()
            .map(|s| [s.dovecot_name(), s.dovecot_name()])
            .collect(),
        _ => Vec::new(),
    }
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
            options: options(name),
        });
    }
    Ok(out)
}

/// Checks and stores one editable parameter.
pub async fn change(tx: &mut Tx, actor: Actor, name: &str, value: &str) -> Result<(), StoreError> {
    access::require_super(actor, "change the global parameters")?;
    let value = validate(name, value)?;
    if setting(tx, name).await?.as_deref() == Some(value.as_str()) {
        return Ok(());
    }
    set_setting(tx, name, &value).await?;
    audit::info(tx, &format!("Parameter {name} set to {value}")).await
}

/// The value an editable parameter would be stored as, or the rule it breaks.
pub fn validate(name: &str, value: &str) -> Result<String, StoreError> {
    let value = value.trim();
    Ok(match name {
        "enable_domain_limits" | "password_update_scheme" => match value {
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
        "password_scheme" => {
            let scheme = value
                .parse::<crate::password::Scheme>()
                .map_err(|e| StoreError::refused(name, e.to_string()))?;
            crate::password::HashPolicy::new(scheme, crate::password::DEFAULT_ROUNDS)
                .map_err(|e| StoreError::refused(name, e.to_string()))?;
            dovecot_reads(scheme).map_err(|e| StoreError::refused(name, e))?;
            scheme.to_string()
        }
        _ => {
            return Err(StoreError::refused(
                "parameter",
                "must be one of enable_domain_limits, password_scheme, password_rounds, password_update_scheme",
            ))
        }
    })
}

/// Whether this machine's Dovecot verifies `scheme` (`doveadm pw -l`): a scheme it cannot read
/// would lock every user whose password is set afterwards out of IMAP. SHA512-CRYPT is read by
/// every Dovecot (through crypt(3)) and is not asked about.
fn dovecot_reads(scheme: crate::password::Scheme) -> Result<(), String> {
    if scheme == crate::password::Scheme::Sha512Crypt {
        return Ok(());
    }
    let out = crate::system::cmd::Cmd::new("doveadm")
        .args(["pw", "-l"])
        .run()
        .map_err(|e| format!("cannot ask Dovecot which schemes it reads: {e}"))?;
    if out
        .stdout
        .split_whitespace()
        .any(|s| s == scheme.dovecot_name())
    {
        Ok(())
    } else {
        Err(format!(
            "this server's Dovecot does not read {scheme} (doveadm pw -l)"
        ))
    }
}
