//! `dkim_keys` (Modoboa's manage_dkim_keys): every domain with DKIM signing on and no key gets
//! an RSA key (`dkim_key_length`, default 2048 bits) at `<paths.dkim_keys>/<domain>.pem`, 0600,
//! owned by OpenDKIM's user, and its public half in the domain row. With SQLite, OpenDKIM's
//! key and signing tables are kept in step with the database on every run.
//!
//! Re-runnable: a valid key already at the path (e.g. written by a run that stopped before
//! recording it) is kept and recorded; a new key only lands where no file is.

use std::path::PathBuf;

use super::{JobContext, JobError};
use crate::keys::dkim::DkimError;
use crate::keys::dkim_files::{self, key_path};
use crate::names::DomainName;
use crate::store::{domains, Backend};
use crate::system::fs::Owner;

/// Why a domain's key file could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error(transparent)]
    Generate(#[from] DkimError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file another run wrote is no key either.
    #[error("{}: {source}", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: DkimError,
    },
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

/// The key file of one domain: the one on disk when valid, else a new one. Blocking (RSA
/// generation takes a moment), so it runs on the blocking pool.
fn ensure_key_file(path: PathBuf, bits: u32, owner: Owner) -> Result<(String, bool), KeyFileError> {
    if let Ok(pem) = std::fs::read_to_string(&path) {
        if let Ok(public) = crate::keys::dkim::public_from_private(&pem) {
            return Ok((public, false));
        }
    }
    let key = crate::keys::dkim::generate_key(bits)?;
    let io = |source| KeyFileError::Io {
        path: path.clone(),
        source,
    };
    if path.exists() {
        // Something that is not a key sits there: replace it whole.
        tracing::warn!(
            "{} is not a valid private key: replacing it",
            path.display()
        );
        dkim_files::write_key(&path, &key.private_pem, &owner).map_err(io)?;
        return Ok((key.public_b64, true));
    }
    if dkim_files::install_key_if_absent(&path, &key.private_pem, &owner).map_err(io)? {
        return Ok((key.public_b64, true));
    }
    // Another run put its key there first: that one wins.
    let pem = std::fs::read_to_string(&path).map_err(io)?;
    let public =
        crate::keys::dkim::public_from_private(&pem).map_err(|source| KeyFileError::Invalid {
            path: path.clone(),
            source,
        })?;
    Ok((public, false))
}

pub async fn run(ctx: &JobContext, dry_run: bool) -> Result<String, JobError> {
    let dir = ctx.config.paths.dkim_keys.as_path().to_path_buf();
    let owner = dkim_files::opendkim_owner(&ctx.distro);
    let pending = async {
        let mut tx = ctx.store.begin().await?;
        domains::without_dkim_key(&mut tx).await
    }
    .await?;
    if dry_run {
        if pending.is_empty() {
            return Ok("no domain waits for a DKIM key".into());
        }
        let list: Vec<String> = pending
            .iter()
            .map(|d| format!("{} ({} bits)", d.name, dkim_files::key_bits(d.key_length)))
            .collect();
        return Ok(format!("would generate DKIM keys for {}", list.join(", ")));
    }
    let mut made = Vec::new();
    let mut errors = Vec::new();
    for d in &pending {
        // The name becomes a file name: an adopted row holding anything else is refused.
        let name = match DomainName::parse("admin_domain.name", &d.name) {
            Ok(n) => n,
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        let path = key_path(&dir, name.as_str());
        let bits = dkim_files::key_bits(d.key_length);
        let (p, o) = (path.clone(), owner.clone());
        let key = tokio::task::spawn_blocking(move || ensure_key_file(p, bits, o))
            .await
            .map_err(KeyFileError::from)
            .and_then(|r| r);
        let public = match key {
            Ok((public, _)) => public,
            Err(e) => {
                errors.push(format!("{}: {e}", d.name));
                continue;
            }
        };
        let path_text = path.display().to_string();
        let recorded = async {
            let mut tx = ctx.store.begin().await?;
            domains::set_dkim_key(&mut tx, d.id, &path_text, &public).await?;
            tx.commit().await
        }
        .await;
        match recorded {
            Ok(()) => made.push(d.name.clone()),
            Err(e) => errors.push(format!("{}: recording the key: {e}", d.name)),
        }
    }
    // Every run, not only when a key was made: DKIM switched off by the CLI leaves the tables too.
    if ctx.store.backend() == Backend::Sqlite {
        let tables = async {
            let mut tx = ctx.store.begin().await?;
            dkim_files::tables(&mut tx, &dir).await
        }
        .await?;
        let written =
            tokio::task::spawn_blocking(move || dkim_files::write_tables(&tables, &owner)).await?;
        if let Err(e) = written {
            errors.push(format!("OpenDKIM tables in {}: {e}", dir.display()));
        }
    }
    let done = if made.is_empty() {
        "no DKIM key to generate".to_string()
    } else {
        format!("DKIM keys for {}", made.join(", "))
    };
    if errors.is_empty() {
        Ok(done)
    } else {
        Err(JobError::Partly {
            done,
            failures: errors,
        })
    }
}
