//! DKIM keys on disk next to their row in the database, shared by `install` (the primary
//! domain's key) and the `dkim_keys` job (every domain): where a key file lives, who owns it,
//! keeping a valid key already on disk, and the key/signing tables OpenDKIM reads as files
//! when the database is SQLite.

use std::path::{Path, PathBuf};

use crate::distro::Distro;
use crate::keys::dkim::DkimError;
use crate::store::access::Actor;
use crate::store::{domains, StoreError, Tx};
use crate::system::fs::{write_atomic, Owner};

/// Modoboa's default key length.
pub const DEFAULT_KEY_BITS: u32 = 2048;

/// `<dkim_keys>/<domain>.pem`.
pub fn key_path(dir: &Path, domain: &str) -> PathBuf {
    dir.join(format!("{domain}.pem"))
}

/// OpenDKIM reads the keys as its own user (and group of the same name).
pub fn opendkim_owner(distro: &Distro) -> Owner {
    let u = &distro.facts.users.opendkim;
    Owner {
        user: u.clone(),
        group: u.clone(),
    }
}

/// The bits of a domain's key: its `dkim_key_length`, else the default.
pub fn key_bits(length: Option<i32>) -> u32 {
    length
        .and_then(|b| u32::try_from(b).ok())
        .filter(|b| *b > 0)
        .unwrap_or(DEFAULT_KEY_BITS)
}

/// The key at `path` when it is a valid private key (its public half may already be published,
/// and a run interrupted between writing the file and recording it must not change it);
/// otherwise a new key of `bits`. Returns `(private PEM, public base64, generated)`.
pub fn existing_or_new_key(path: &Path, bits: u32) -> Result<(String, String, bool), DkimError> {
    if let Ok(pem) = std::fs::read_to_string(path) {
        if let Ok(public) = crate::keys::dkim::public_from_private(&pem) {
            return Ok((pem, public, false));
        }
    }
    let k = crate::keys::dkim::generate_key(bits)?;
    Ok((k.private_pem, k.public_b64, true))
}

/// Writes a private key: atomically (never a half-written key), 0600, owned by OpenDKIM.
pub fn write_key(path: &Path, pem: &str, owner: &Owner) -> std::io::Result<()> {
    write_atomic(path, pem.as_bytes(), 0o600, Some(owner))
}

/// Puts a new key at `path` only if no file is there (a hard link from a complete temporary
/// file: two runs racing for one domain end with one key, never a mix). Returns false when
/// another file was there first; the caller then reads that one.
pub fn install_key_if_absent(path: &Path, pem: &str, owner: &Owner) -> std::io::Result<bool> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = path.parent().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a key path needs a directory",
        )
    })?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}-{:016x}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(pem.as_bytes())?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        if let Some((uid, gid)) = crate::system::fs::resolve_owner(owner) {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        }
        f.sync_all()?;
        drop(f);
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => {
                std::fs::File::open(dir)?.sync_all()?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

/// OpenDKIM's key and signing tables (SQLite installs: there is no OpenDBX SQLite driver).
pub async fn tables(tx: &mut Tx, dir: &Path) -> Result<Vec<(PathBuf, String)>, StoreError> {
    let all = domains::list(tx, Actor::System, None, None).await?;
    let mut keys = String::from("# Written by modobox: DKIM keys (id domain:selector:key).\n");
    let mut signing = String::from("# Written by modobox: which key signs which senders' mail.\n");
    for d in all
        .iter()
        .filter(|d| d.enable_dkim && !d.dkim_private_key_path.is_empty())
    {
        keys.push_str(&format!(
            "{} {}:{}:{}\n",
            d.id, d.name, d.dkim_key_selector, d.dkim_private_key_path
        ));
        signing.push_str(&format!("*@{} {}\n", d.name, d.id));
    }
    Ok(vec![
        (dir.join("keytable"), keys),
        (dir.join("signingtable"), signing),
    ])
}

/// Writes the tables that differ from what is on disk; returns the paths written.
pub fn write_tables(tables: &[(PathBuf, String)], owner: &Owner) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (path, text) in tables {
        if std::fs::read_to_string(path).ok().as_deref() == Some(text.as_str()) {
            continue;
        }
        write_atomic(path, text.as_bytes(), 0o640, Some(owner))?;
        written.push(path.clone());
    }
    Ok(written)
}
