//! Rebuilding a server from a backup on a fresh machine (`modobox install HOST --restore
//! REPO[:ID]`): what happens before the installer can run — the backup's server files are
//! fetched and checked, its hostname compared, its configuration and secrets put in place
//! (so the install works towards the same server: engine, components, database passwords,
//! session key) — and the state that lets an interrupted rebuild carry on where it stopped.
//! The installer then restores the keys, the database and the mail as steps of its own
//! (`install::restore`), each once.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::restic::Repository;
use super::restore::{self, Fetched};
use super::{io, BackupError};
use crate::config::Config;
use crate::distro::Distro;
use crate::names::{BackupRepository, Hostname};

/// `REPO[:ID]` as `--restore` takes it: the last `:`-separated part is the backup when it
/// looks like one (`latest`, or 8 to 64 hexadecimal digits), so repository locations with
/// colons of their own (`sftp:host:/path`, `s3:host/bucket`) need no quoting.
pub fn parse_source(
    field: &'static str,
    value: &str,
) -> Result<(BackupRepository, String), BackupError> {
    let (location, id) = match value.rsplit_once(':') {
        Some((repo, id))
            if !repo.is_empty()
                && (id == "latest"
                    || (id.len() >= 8
                        && id.len() <= 64
                        && id.chars().all(|c| c.is_ascii_hexdigit()))) =>
        {
            (repo, id.to_string())
        }
        _ => (value, "latest".to_string()),
    };
    let repository =
        BackupRepository::parse(field, location).map_err(|e| BackupError::BadInput {
            field,
            rule: e.to_string(),
        })?;
    Ok((repository, id))
}

/// What an interrupted rebuild has already done (`<data>/backup/rebuild.json`, root only):
/// the restore steps skip what is recorded, and `install --restore` may run again on the
/// configuration it wrote itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebuildState {
    /// The full id of the backup being restored.
    pub snapshot: String,
    pub files: bool,
    pub database: bool,
    pub mail: bool,
}

impl RebuildState {
    /// Where the state lives: the default data directory, since the backup's own
    /// configuration (which may name another) is not known before it is fetched.
    pub fn path() -> PathBuf {
        Path::new(crate::config::DEFAULT_DATA_DIR)
            .join("backup")
            .join("rebuild.json")
    }

    pub fn load(path: &Path) -> Result<Option<RebuildState>, BackupError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                BackupError::Manifest(format!("{}: {e} (remove it to start over)", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(path)(e)),
        }
    }

    /// Written atomically, 0600.
    pub fn save(&self, path: &Path) -> Result<(), BackupError> {
        let text =
            serde_json::to_vec_pretty(self).map_err(|e| BackupError::Manifest(e.to_string()))?;
        crate::system::fs::write_atomic(path, &text, 0o600, None).map_err(io(path))
    }

    pub fn remove(path: &Path) -> Result<(), BackupError> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path)(e)),
            _ => Ok(()),
        }
    }
}

/// The backup's server files (configuration, secrets, keys, statistics), fetched and checked,
/// with the configuration they hold.
#[derive(Debug)]
pub struct Prepared {
    pub fetched: Fetched,
    pub config: Config,
}

/// Fetches the server files of backup `id` into a scratch directory under `work_dir`, reads
/// the backup's configuration and checks that it is the server `hostname` names (when given).
pub fn prepare(
    work_dir: &Path,
    repo: &Repository,
    id: &str,
    hostname: Option<&Hostname>,
) -> Result<Prepared, BackupError> {
    std::fs::create_dir_all(work_dir).map_err(io(work_dir))?;
    // The secrets pass through here.
    std::fs::set_permissions(work_dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io(work_dir))?;
    let fetched = restore::fetch_prefixes(work_dir, repo, id, vec!["files".into()])?;
    let config_file = fetched
        .root
        .join("files")
        .join(crate::config::DEFAULT_PATH.trim_start_matches('/'));
    if !config_file.is_file() {
        return Err(BackupError::Manifest(format!(
            "the backup holds no {}",
            crate::config::DEFAULT_PATH
        )));
    }
    let config = Config::load(&config_file).map_err(|e| {
        BackupError::Manifest(format!("the backup's {}: {e}", crate::config::DEFAULT_PATH))
    })?;
    if let Some(host) = hostname {
        if host.as_str() != config.hostname.as_str() {
            return Err(BackupError::BadInput {
                field: "hostname",
                rule: format!(
                    "the backup is of {}, not {host}: a server is rebuilt under its own name \
                     (its MX records, DKIM keys and certificate name it); give {} or leave the \
                     hostname out",
                    config.hostname, config.hostname
                ),
            });
        }
    }
    Ok(Prepared { fetched, config })
}

/// What the rebuild will bring back, one line each, for the confirmation.
pub fn describe(prepared: &Prepared, distro: &Distro) -> Vec<String> {
    let m = &prepared.fetched.manifest;
    let c = &prepared.config;
    vec![
        format!(
            "server {} (modobox {}, schema {}, {}) rebuilt on this {} machine",
            m.hostname, m.modobox_version, m.schema_version, m.distro, distro.id
        ),
        format!(
            "its configuration and secrets ({}), DKIM keys, TLS certificate and statistics",
            crate::config::DEFAULT_PATH
        ),
        format!(
            "its {} database: {} domains, {} mailboxes (their passwords and the admins' logins)",
            c.database.engine.as_str(),
            m.domains.len(),
            m.mailboxes.len()
        ),
        format!(
            "its mail: {} messages into {}",
            m.total_messages(),
            c.paths.mail_root
        ),
    ]
}

/// Puts the backup's configuration and secrets in place (owned by root: no other user
/// exists yet). Not the rendered-files manifest: it describes the old machine's files, and
/// this one's are rendered by the install.
pub fn put_configuration(prepared: &Prepared) -> Result<usize, BackupError> {
    let render_manifest = prepared
        .config
        .paths
        .data
        .as_path()
        .join(crate::render::manifest::FILE_NAME);
    let paths: Vec<PathBuf> = restore::config_paths(&prepared.config)
        .into_iter()
        .filter(|p| *p != render_manifest)
        .collect();
    restore::restore_files(&prepared.fetched, &paths)
}

/// Puts the DKIM keys, the TLS material and the statistics in place, with their owners found
/// again by name (run once the packages created the users).
pub fn put_keys_and_statistics(
    fetched: &Fetched,
    config: &Config,
    distro: &Distro,
) -> Result<usize, BackupError> {
    let mut paths = restore::key_paths(config, distro);
    paths.push(config.paths.rrd.as_path().to_path_buf());
    restore::restore_files(fetched, &paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_a_repository_and_an_optional_backup_id() {
        let cases = [
            ("/var/backups/modobox", "/var/backups/modobox", "latest"),
            (
                "/var/backups/modobox:latest",
                "/var/backups/modobox",
                "latest",
            ),
            ("/srv/b:1a2b3c4d", "/srv/b", "1a2b3c4d"),
            (
                "sftp:backup@host:/srv/modobox",
                "sftp:backup@host:/srv/modobox",
                "latest",
            ),
            (
                "sftp:backup@host:/srv/modobox:deadbeef",
                "sftp:backup@host:/srv/modobox",
                "deadbeef",
            ),
            (
                "s3:s3.example.com/bucket/box",
                "s3:s3.example.com/bucket/box",
                "latest",
            ),
            // Not an id: too short, not hexadecimal.
            ("sftp:host:/srv/abc", "sftp:host:/srv/abc", "latest"),
        ];
        for (input, repo, id) in cases {
            let (r, i) = parse_source("--restore", input).unwrap();
            assert_eq!((r.expose(), i.as_str()), (repo, id), "{input}");
        }
        for bad in ["", "relative/path", ":latest", "nope:x"] {
            let e = parse_source("--restore", bad).unwrap_err().to_string();
            assert!(e.starts_with("--restore"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_state_survives_a_restart_and_goes_away() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup/rebuild.json");
        assert_eq!(RebuildState::load(&path).unwrap(), None);
        let state = RebuildState {
            snapshot: "ab".repeat(32),
            files: true,
            database: true,
            mail: false,
        };
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        state.save(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(RebuildState::load(&path).unwrap(), Some(state));
        RebuildState::remove(&path).unwrap();
        RebuildState::remove(&path).unwrap();
        assert_eq!(RebuildState::load(&path).unwrap(), None);
    }
}
