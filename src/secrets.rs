//! The secrets file (mode 0600, root only): the database passwords (modobox's owner role and one
//! role per daemon, see `store::roles`), the web session key and the backup password. Generated
//! when missing, never printed, never in `Debug` output, never on a command line.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rand::distributions::Alphanumeric;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::system::fs::write_atomic;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot read the secrets file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write the secrets file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("secrets file {path}: {message}")]
    Syntax { path: String, message: String },
    #[error("secrets file {path}: mode {mode:o} lets other users read it; run `chmod 600 {path}`")]
    Exposed { path: String, mode: u32 },
}

/// A secret string: its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn generate(len: usize) -> Self {
        // Alphanumeric only: safe inside every config syntax we render (Postfix maps, Dovecot
        // connect strings, OpenDBX, Perl) without any quoting.
        Secret(
            rand::rngs::OsRng
                .sample_iter(&Alphanumeric)
                .take(len)
                .map(char::from)
                .collect(),
        )
    }
    /// A secret someone typed (a repository password read from a prompt or standard input).
    pub fn typed(value: String) -> Self {
        Secret(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    pub database_password: Secret,
    pub session_key: Secret,
    /// The daemons' own database roles (local PostgreSQL and MariaDB).
    pub postfix_db_password: Secret,
    pub dovecot_db_password: Secret,
    pub opendkim_db_password: Secret,
    pub amavis_db_password: Secret,
    pub milter_db_password: Secret,
    /// Opens the backup repositories (restic encrypts with it): without it no backup can be
    /// read, so admins keep a copy off the machine.
    pub backup_password: Secret,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Partial {
    database_password: Option<Secret>,
    session_key: Option<Secret>,
    postfix_db_password: Option<Secret>,
    dovecot_db_password: Option<Secret>,
    opendkim_db_password: Option<Secret>,
    amavis_db_password: Option<Secret>,
    milter_db_password: Option<Secret>,
    backup_password: Option<Secret>,
}

impl Secrets {
    /// Reads the secrets file, generating whatever is missing (and the file itself), and
    /// rewrites it atomically with mode 0600 when something was added.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretsError> {
        Self::load(path, true)
    }

    /// Like `load_or_create`, but never writes: missing secrets are generated in memory only
    /// (for `--diff` and `plan`, which must not change the system).
    pub fn load_or_generate(path: &Path) -> Result<Self, SecretsError> {
        Self::load(path, false)
    }

    fn load(path: &Path, persist: bool) -> Result<Self, SecretsError> {
        let shown = path.display().to_string();
        let partial = match std::fs::read_to_string(path) {
            Ok(text) => {
                let mode = std::fs::metadata(path)
                    .map_err(|source| SecretsError::Read {
                        path: shown.clone(),
                        source,
                    })?
                    .permissions()
                    .mode()
                    & 0o777;
                if mode & 0o077 != 0 {
                    return Err(SecretsError::Exposed { path: shown, mode });
                }
                toml::from_str::<Partial>(&text).map_err(|e| SecretsError::Syntax {
                    path: shown.clone(),
                    // toml quotes the offending line; a secrets file must never be echoed.
                    message: e.message().to_string(),
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Partial::default(),
            Err(source) => {
                return Err(SecretsError::Read {
                    path: shown,
                    source,
                })
            }
        };
        let mut complete = true;
        let mut take = |secret: Option<Secret>, len: usize| {
            secret.unwrap_or_else(|| {
                complete = false;
                Secret::generate(len)
            })
        };
        let secrets = Secrets {
            database_password: take(partial.database_password, 32),
            session_key: take(partial.session_key, 64),
            postfix_db_password: take(partial.postfix_db_password, 32),
            dovecot_db_password: take(partial.dovecot_db_password, 32),
            opendkim_db_password: take(partial.opendkim_db_password, 32),
            amavis_db_password: take(partial.amavis_db_password, 32),
            milter_db_password: take(partial.milter_db_password, 32),
            backup_password: take(partial.backup_password, 40),
        };
        if !complete && persist {
            secrets.save(path)?;
        }
        Ok(secrets)
    }

    /// Writes these secrets atomically with mode 0600 (the installer persists the ones its
    /// plan was made with).
    pub fn save(&self, path: &Path) -> Result<(), SecretsError> {
        let text = format!(
            "# modobox secrets: generated, mode 0600. Never share this file.\n{}",
            toml::to_string(self).unwrap_or_default()
        );
        write_atomic(path, text.as_bytes(), 0o600, None).map_err(|source| SecretsError::Write {
            path: path.display().to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_stable_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("etc/modobox/secrets.toml");
        let a = Secrets::load_or_create(&p).unwrap();
        let b = Secrets::load_or_create(&p).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.database_password.expose().len(), 32);
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!format!("{a:?}").contains(a.database_password.expose()));
    }

    #[test]
    fn readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secrets.toml");
        Secrets::load_or_create(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Secrets::load_or_create(&p),
            Err(SecretsError::Exposed { .. })
        ));
    }
}
