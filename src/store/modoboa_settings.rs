//! Modoboa's global settings (`core_localconfig._parameters`, one JSON object per application)
//! read at adoption and mapped onto modobox's: the ones modobox keeps in the database are
//! taken, the ones in modobox's configuration file are compared with it (and the line to set is
//! named when they differ), and the rest is listed as having no equivalent. Values of secret
//! settings (LDAP bind passwords...) are never shown.

use serde::Serialize;
use serde_json::Value as Json;

use super::{modoboa_schema, parameters, StoreError, Tx};
use crate::config::Config;

/// What became of one Modoboa setting.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Stored as modobox's database setting `setting` (at adoption; `--check` only says so).
    Taken { setting: String, value: String },
    /// modobox already holds its own value for this setting: kept.
    KeptModobox { setting: String, value: String },
    /// A modobox database setting refuses Modoboa's value (a weak scheme...): not taken.
    NotTaken { setting: String, why: String },
    /// A setting of modobox's configuration file with the same value.
    SameInConfig { key: String },
    /// A setting of modobox's configuration file with another value: what to set to keep
    /// Modoboa's behaviour (modobox does not rewrite the file).
    DiffersInConfig {
        key: String,
        modobox: String,
        set: String,
    },
    /// Nothing in modobox does this.
    NoEquivalent { why: String },
}

/// One Modoboa setting (`app.name`) and its fate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    pub modoboa: String,
    /// Modoboa's value as JSON text; `"(secret)"` for passwords and keys.
    pub value: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Where a Modoboa setting goes in modobox.
enum Target {
    /// A `modobox_setting` row, through the editable parameters' checks.
    Setting(&'static str),
    /// A key of the configuration file (`section.key`), with the conversion of the value.
    Config(&'static str, fn(&Json) -> Option<toml::Value>),
    /// modobox does it another way, or not at all.
    None(&'static str),
}

fn same(v: &Json) -> Option<toml::Value> {
    toml::Value::try_from(v).ok()
}

/// `custom_dns_server` is an address; modobox's resolver is `ip:port`.
fn dns_server(v: &Json) -> Option<toml::Value> {
    let ip: std::net::IpAddr = v.as_str()?.trim().parse().ok()?;
    Some(toml::Value::String(
        std::net::SocketAddr::new(ip, 53).to_string(),
    ))
}

/// `valid_mxs` is networks separated by blanks or newlines.
fn networks(v: &Json) -> Option<toml::Value> {
    Some(toml::Value::Array(
        v.as_str()?
            .split_whitespace()
            .map(|n| toml::Value::String(n.to_string()))
            .collect(),
    ))
}

/// Modoboa's settings with an effect modobox reproduces or must say it does not.
fn target(app: &str, name: &str) -> Option<Target> {
    use Target::*;
    Some(match (app, name) {
        ("core", "password_scheme") => Setting("password_scheme"),
        ("core", "rounds_number") => Setting("password_rounds"),
        ("core", "update_scheme") => Setting("password_update_scheme"),
        ("limits", "enable_domain_limits") => Setting("enable_domain_limits"),
        ("admin", "handle_mailboxes") => Config("mail.handle_mailboxes_on_filesystem", same),
        ("admin", "mailboxes_owner") => Config("mail.owner", same),
        ("admin", "dkim_keys_storage_dir") => Config("paths.dkim_keys", same),
        ("admin", "custom_dns_server") => Config("check_mx.resolver", dns_server),
        ("admin", "valid_mxs") => Config("check_mx.valid_networks", networks),
        ("core", "inactive_account_threshold") => Config("jobs.inactive_account_days", same),
        ("core", "log_maximum_age") => Config("jobs.log_max_age_days", same),
        ("core", "check_new_versions") => Config("public_api.enabled", same),
        ("amavis", "max_messages_age") => Config("jobs.quarantine_max_age_days", same),
        ("maillog", "logfile") => Config("stats.log_file", same),
        ("maillog", "rrd_rootdir") => Config("paths.rrd", same),
        ("core", "authentication_type") => {
            None("modobox authenticates against the database only; LDAP users cannot log in")
        }
        ("limits", "enable_admin_limits") => {
            None("modobox always applies the limits set on an administrator")
        }
        ("admin", "dkim_default_key_length") => {
            None("modobox generates 2048-bit RSA keys for new domains")
        }
        (
            "admin",
            "enable_mx_checks" | "enable_dnsbl_checks" | "enable_spf_checks" | "enable_dkim_checks"
            | "enable_dmarc_checks" | "enable_autoconfig_checks",
        ) => None(
            "modobox checks the MX records and DNSBL listings of every domain whose own DNS checks flag is on (schedule.check_mx, [check_mx]); `modobox dns records` shows SPF, DKIM, DMARC and autoconfig",
        ),
        ("admin", "default_domain_quota" | "default_mailbox_quota") => {
            None("no default: a domain or mailbox created without a quota is unlimited (0)")
        }
        _ => return Option::None,
    })
}

/// Settings whose value is a secret (LDAP bind passwords, SMS API keys, the default password
/// of new accounts): named, never shown.
fn is_secret(name: &str) -> bool {
    ["password", "secret", "_key", "token"]
        .iter()
        .any(|s| name.ends_with(s))
}

/// Modoboa's scheme names (`password_scheme`) as Dovecot's.
fn dovecot_scheme(modoboa: &str) -> Option<&'static str> {
    Some(match modoboa {
        "sha512crypt" => "SHA512-CRYPT",
        "sha256crypt" => "SHA256-CRYPT",
        "blfcrypt" => "BLF-CRYPT",
        "md5crypt" => "MD5-CRYPT",
        "argon2id" => "ARGON2ID",
        "ssha" => "SSHA",
        "sha256" => "SHA256",
        "md5" => "MD5",
        "plain" => "PLAIN",
        "crypt" => "CRYPT",
        _ => return None,
    })
}

/// The JSON of Modoboa's global settings, if the database holds any.
pub async fn read(tx: &mut Tx) -> Result<Option<Json>, StoreError> {
    if !tx.table_exists("core_localconfig").await? {
        return Ok(None);
    }
    let col = modoboa_schema::json_text(tx.backend(), "_parameters");
    let Some(row) = tx
        .row(
            &format!("SELECT {col} AS p FROM core_localconfig ORDER BY id"),
            &[],
        )
        .await?
    else {
        return Ok(None);
    };
    let text = row.opt_text("p")?.unwrap_or_default();
    serde_json::from_str(&text).map(Some).map_err(|e| {
        StoreError::refused("core_localconfig._parameters", format!("is not JSON: {e}"))
    })
}

/// What adopting would do with each of Modoboa's settings, given modobox's configuration and
/// the settings modobox already holds (none before adoption).
pub async fn plan(tx: &mut Tx, config: &Config) -> Result<Vec<Item>, StoreError> {
    let Some(params) = read(tx).await? else {
        return Ok(Vec::new());
    };
    let own = tx.table_exists("modobox_setting").await?;
    let config = toml::Value::try_from(config)
        .map_err(|e| StoreError::refused("configuration", e.to_string()))?;
    let mut items = Vec::new();
    let mut unmapped: Vec<String> = Vec::new();
    let Some(apps) = params.as_object() else {
        return Ok(items);
    };
    for (app, values) in apps {
        let Some(values) = values.as_object() else {
            continue;
        };
        for (name, value) in values {
            let key = format!("{app}.{name}");
            let shown = if is_secret(name) {
                "(secret)".to_string()
            } else {
                value.to_string()
            };
            let outcome = match target(app, name) {
                Some(Target::Setting(setting)) => {
                    setting_outcome(tx, own, setting, app, name, value).await?
                }
                Some(Target::Config(path, convert)) => {
                    config_outcome(&config, path, convert, value)
                }
                Some(Target::None(why)) => {
                    if (app.as_str(), name.as_str()) == ("core", "authentication_type")
                        && value.as_str() == Some("local")
                    {
                        continue;
                    }
                    Outcome::NoEquivalent { why: why.into() }
                }
                None => {
                    unmapped.push(key);
                    continue;
                }
            };
            items.push(Item {
                modoboa: key,
                value: shown,
                outcome,
            });
        }
    }
    if !unmapped.is_empty() {
        unmapped.sort();
        items.push(Item {
            modoboa: unmapped.join(", "),
            value: String::new(),
            outcome: Outcome::NoEquivalent {
                why:
                    "settings of Modoboa's web UI, LDAP, SMS, themes and extensions with no counterpart in modobox"
                        .into(),
            },
        });
    }
    Ok(items)
}

async fn setting_outcome(
    tx: &mut Tx,
    own: bool,
    setting: &str,
    app: &str,
    name: &str,
    value: &Json,
) -> Result<Outcome, StoreError> {
    let text = match value {
        Json::String(s) if (app, name) == ("core", "password_scheme") => match dovecot_scheme(s) {
            Some(d) => d.to_string(),
            None => s.clone(),
        },
        Json::String(s) => s.clone(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.to_string(),
        other => other.to_string(),
    };
    if own {
        if let Some(v) = parameters::setting(tx, setting).await? {
            return Ok(Outcome::KeptModobox {
                setting: setting.into(),
                value: v,
            });
        }
    }
    Ok(match parameters::validate(setting, &text) {
        Ok(value) => Outcome::Taken {
            setting: setting.into(),
            value,
        },
        Err(e) => Outcome::NotTaken {
            setting: setting.into(),
            why: match e {
                StoreError::Refused { rule, .. } => rule,
                e => e.to_string(),
            },
        },
    })
}

fn config_outcome(
    config: &toml::Value,
    path: &str,
    convert: fn(&Json) -> Option<toml::Value>,
    value: &Json,
) -> Outcome {
    let current = path.split('.').try_fold(config, |v, k| v.get(k));
    let wanted = if value.is_null() {
        None
    } else {
        convert(value)
    };
    let shown = |v: Option<&toml::Value>| v.map_or("(not set)".to_string(), |v| v.to_string());
    if wanted.as_ref() == current {
        return Outcome::SameInConfig { key: path.into() };
    }
    let (section, key) = path.split_once('.').unwrap_or(("", path));
    Outcome::DiffersInConfig {
        key: path.into(),
        modobox: shown(current),
        set: match &wanted {
            Some(v) => format!("{key} = {v} under [{section}]"),
            None => format!("remove {key} from [{section}]"),
        },
    }
}

/// Stores the settings `plan` found taken, through the same checks as the parameters page.
pub async fn apply(tx: &mut Tx, items: &[Item]) -> Result<usize, StoreError> {
    let mut n = 0;
    for item in items {
        if let Outcome::Taken { setting, value } = &item.outcome {
            parameters::change(tx, super::access::Actor::System, setting, value).await?;
            n += 1;
        }
    }
    Ok(n)
}
