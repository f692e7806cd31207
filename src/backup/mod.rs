//! Backups (`modobox backup`): one consistent snapshot of everything needed to rebuild the
//! server — the database dump, every mailbox, the configuration and secrets, DKIM keys, the TLS
//! key and certificate, the statistics and the rendered-files manifest — described by a
//! `manifest.json` and stored in a restic repository. Mail keeps flowing: nothing is stopped.
//!
//! The snapshot is assembled in `<mail_root>/.modobox-backup/snapshot` (on the mail's own
//! filesystem, so messages are hard links, not copies), always at that path so that restic
//! recognises the previous run's files and reads only what changed. Its mail part stays from one
//! run to the next and is brought up to date (`maildir::sync`): relinking 200,000 unchanged
//! messages every run would cost more than the rest of an incremental backup.
//!
//! Layout of a snapshot (and of a backup once restored somewhere):
//! ```text
//! manifest.json
//! database/modobox.{pgdump,sql,sqlite3}
//! mail/<domain>/<local part>/...      the mailbox home, as Dovecot keeps it
//! files/<absolute path>               /etc/modobox, DKIM keys, TLS files, RRD files, ...
//! ```

pub mod database;
pub mod maildir;
pub mod manifest;
pub mod rebuild;
pub mod restic;
pub mod restore;
pub mod status;
pub mod verify;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::Config;
use crate::distro::Distro;
use crate::names::BackupRepository;
use crate::secrets::Secrets;
use crate::store::{inventory, Store, StoreError};
use manifest::{DigestCache, DomainCounts, MailboxEntry, Manifest};
use restic::Repository;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "no backup repository: set backup.repository in the configuration \
         (e.g. \"/var/backups/modobox\" on another disk, or \"sftp:user@host:/path\") or give --to"
    )]
    NotConfigured,
    #[error("another backup is running (lock {0})")]
    Busy(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("copying {from} to {to}: {source}")]
    Copy {
        from: String,
        to: String,
        source: std::io::Error,
    },
    #[error("database: {0}")]
    Database(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("manifest: {0}")]
    Manifest(String),
    #[error("the backup repository {0} does not open with the backup password (secrets file: backup_password)")]
    WrongPassword(String),
    #[error("no backup repository at {0}")]
    NoRepository(String),
    #[error("backup repository: {0}")]
    Repository(String),
    #[error("no space left on device: `restic {command}` with the backup repository {location} stopped: {detail}")]
    NoSpace {
        command: String,
        location: String,
        detail: String,
    },
    #[error("the backup repository {location} is locked by a restic process that is still running (or runs on another host): {detail}")]
    RepositoryLocked { location: String, detail: String },
    #[error("no backup {0:?} in the repository (see `modobox backup list`)")]
    NoSuchBackup(String),
    #[error("the backup has schema version {backup}, newer than this modobox knows ({ours}): upgrade modobox first")]
    NewerSchema { backup: i32, ours: i32 },
    #[error("the backup is damaged, nothing was restored: {}", .0.join("; "))]
    Damaged(Vec<String>),
    #[error("the backup has no mailbox {0}")]
    NoSuchMailbox(String),
    #[error("{field}: {rule}")]
    BadInput { field: &'static str, rule: String },
    #[error(transparent)]
    Fault(#[from] crate::fault::Injected),
}

/// Names the file an I/O error is about (`.map_err(io(path))`).
pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Names both ends of a failed copy (`.map_err(copy_error(from, to))`): reading one or writing
/// the other (a full disk) can be what failed.
pub(crate) fn copy_error<'a>(
    from: &'a Path,
    to: &'a Path,
) -> impl FnOnce(std::io::Error) -> BackupError + 'a {
    move |source| BackupError::Copy {
        from: from.display().to_string(),
        to: to.display().to_string(),
        source,
    }
}

/// Everything a backup command needs.
#[derive(Debug, Clone)]
pub struct BackupContext {
    pub config: Config,
    pub distro: Distro,
    pub secrets: Secrets,
    pub store: Store,
}

impl BackupContext {
    /// The repository named on the command line, or the configured one.
    pub fn repository(&self, chosen: Option<&BackupRepository>) -> Result<Repository, BackupError> {
        let location = chosen
            .or(self.config.backup.repository.as_ref())
            .ok_or(BackupError::NotConfigured)?;
        Ok(Repository::new(
            location,
            self.secrets.backup_password.clone(),
            self.state_dir().join("restic-cache"),
        ))
    }

    /// modobox's own backup state (lock, digest cache, restic's cache), root only.
    pub(crate) fn state_dir(&self) -> PathBuf {
        self.config.paths.data.as_path().join("backup")
    }

    /// Where snapshots are assembled: on the mail's filesystem, so messages can be hard links.
    pub(crate) fn work_dir(&self) -> PathBuf {
        self.config
            .paths
            .mail_root
            .as_path()
            .join(".modobox-backup")
    }
}

/// What `backup create` did.
#[derive(Debug, Clone, Serialize)]
pub struct CreateReport {
    pub snapshot: String,
    pub repository: String,
    pub repository_created: bool,
    pub schema_version: i32,
    pub domains: usize,
    pub mailboxes: usize,
    pub messages: u64,
    pub files: usize,
    pub bytes: u64,
    /// New data written to the repository (after deduplication and compression).
    pub bytes_added: u64,
    pub files_new: u64,
    pub files_changed: u64,
    pub seconds: f64,
}

/// A lock file held for the whole run: two backups at once would share the work directory.
pub(crate) struct RunLock {
    _file: nix::fcntl::Flock<std::fs::File>,
}

pub(crate) fn lock(dir: &Path) -> Result<RunLock, BackupError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    let file = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|_| BackupError::Busy(path.display().to_string()))?;
    Ok(RunLock { _file: file })
}

/// Logs (debug level: `modobox -v`) how long each step of a backup or a restore took.
#[derive(Debug)]
pub(crate) struct Steps(Instant);

impl Steps {
    pub(crate) fn start() -> Self {
        Steps(Instant::now())
    }
    pub(crate) fn done(&mut self, step: &str) {
        tracing::debug!("{step}: {:.2} s", self.0.elapsed().as_secs_f64());
        self.0 = Instant::now();
    }
}

/// A fresh, empty, root-only directory (a leftover of a killed run is removed first).
pub(crate) fn fresh_dir(path: &Path) -> Result<(), BackupError> {
    if path.exists() {
        std::fs::remove_dir_all(path).map_err(io(path))?;
    }
    private_dir(path)
}

/// A root-only directory, created when missing, its content kept.
fn private_dir(path: &Path) -> Result<(), BackupError> {
    std::fs::create_dir_all(path).map_err(io(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(io(path))
}

/// Removes a file, a symbolic link or a whole tree; missing is fine.
pub(crate) fn remove_any(path: &Path) -> Result<(), BackupError> {
    let result = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path)(e)),
        _ => Ok(()),
    }
}

/// Whether a modification time `(seconds, nanoseconds)` is old enough, at `started`, that a
/// change made since would show: within the same timestamp tick (a second on some filesystems,
/// a few milliseconds on others) a second change leaves it as it was.
pub(crate) fn settled(mtime: (i64, i64), started: SystemTime) -> bool {
    const SETTLE: Duration = Duration::from_secs(2);
    started
        .checked_sub(SETTLE)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .is_some_and(|limit| mtime < (limit.as_secs() as i64, i64::from(limit.subsec_nanos())))
}

/// Removes everything of a snapshot directory but its mail part (the hard links the next
/// run brings up to date).
fn keep_only_mail(snap: &Path) -> Result<(), BackupError> {
    for entry in std::fs::read_dir(snap)
        .map_err(io(snap))?
        .filter_map(Result::ok)
    {
        if entry.file_name() != "mail" {
            remove_any(&entry.path())?;
        }
    }
    Ok(())
}

/// Takes a backup and stores it in the repository (`to`, or the configured one).
pub async fn create(
    ctx: &BackupContext,
    to: Option<&BackupRepository>,
) -> Result<CreateReport, BackupError> {
    let started = Instant::now();
    let repo = ctx.repository(to)?;
    let _lock = lock(&ctx.state_dir())?;

    let work = ctx.work_dir();
    private_dir(&work)?;
    let snap = work.join("snapshot");
    let scratch = work.join("scratch");
    // Kept for the next run, even after a failure: it is only links and copies, and the next
    // run compares it with the live mail anyway.
    private_dir(&snap)?;
    fresh_dir(&scratch)?;
    let result = assemble_and_store(ctx, &repo, &snap, &scratch).await;
    let _ = std::fs::remove_dir_all(&scratch);
    // The dump, the server files and the manifest are in the repository now (or failed):
    // only the mail part is worth its disk space until the next run.
    let _ = keep_only_mail(&snap);
    let (manifest, summary, repository_created) = result?;
    Ok(CreateReport {
        snapshot: summary.snapshot_id,
        repository: repo.location.redacted(),
        repository_created,
        schema_version: manifest.schema_version,
        domains: manifest.domains.len(),
        mailboxes: manifest.mailboxes.len(),
        messages: manifest.total_messages(),
        files: manifest.files.len(),
        bytes: manifest.total_bytes(),
        bytes_added: summary.data_added,
        files_new: summary.files_new,
        files_changed: summary.files_changed,
        seconds: started.elapsed().as_secs_f64(),
    })
}

async fn assemble_and_store(
    ctx: &BackupContext,
    repo: &Repository,
    snap: &Path,
    scratch: &Path,
) -> Result<(Manifest, restic::BackupSummary, bool), BackupError> {
    let config = &ctx.config;
    let mut steps = Steps::start();
    // Only the mail part is kept from the previous run; the rest is taken afresh.
    keep_only_mail(snap)?;
    // The database first, with the inventory read in the same breath: the counts describe
    // the dump. Mail delivered after this point is in the mail part but not in the counts.
    let db_dir = snap.join("database");
    private_dir(&db_dir)?;
    let schema_version = database::dump(config, &ctx.secrets, &ctx.store, &db_dir, scratch).await?;
    crate::fault::point("backup.after-dump")?;
    let inventory = {
        let mut tx = ctx.store.begin_read().await?;
        inventory::read(&mut tx).await?
    };
    steps.done("database dumped");

    let cache_path = ctx.state_dir().join("digests");
    let cache = DigestCache::load(&cache_path);
    let MailPart {
        mailboxes,
        mut files,
    } = snapshot_mail(
        config.paths.mail_root.as_path(),
        snap,
        &inventory.mailboxes,
        &cache,
    )?;
    steps.done("mail snapshot brought up to date and hashed");
    for path in server_files(config, &ctx.distro) {
        copy_into(&path, &snap.join("files"))?;
    }
    for part in ["database", "files"] {
        files.extend(manifest::digest_tree(snap, &snap.join(part), &cache)?);
    }
    let owners = manifest::owner_names(snap, "files")?;
    let manifest = Manifest {
        format: manifest::FORMAT,
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        hostname: config.hostname.to_string(),
        modobox_version: env!("CARGO_PKG_VERSION").to_string(),
        schema_version,
        distro: ctx.distro.id.to_string(),
        engine: config.database.engine.as_str().to_string(),
        domains: inventory
            .domains
            .iter()
            .map(|(name, d)| {
                (
                    name.clone(),
                    DomainCounts {
                        mailboxes: d.mailboxes,
                        aliases: d.aliases,
                        domain_aliases: d.domain_aliases,
                    },
                )
            })
            .collect(),
        mailboxes,
        files,
        owners,
    };
    manifest.write(snap)?;
    steps.done("server files copied, manifest written");
    let schema_tag = format!("schema-{schema_version}");
    let version_tag = format!("modobox-{}", env!("CARGO_PKG_VERSION"));
    let (repo, dir, host) = (
        repo.clone(),
        snap.to_path_buf(),
        config.hostname.to_string(),
    );
    let (summary, created) = tokio::task::spawn_blocking(move || {
        let tags = ["modobox", schema_tag.as_str(), version_tag.as_str()];
        // No repository yet: created, then stored. Checking first would cost every run one
        // more restic start (half a second of key derivation); a wrong password or an
        // unreachable repository fails here just the same, before anything is stored.
        match repo.backup(&dir, &host, &tags) {
            Err(BackupError::NoRepository(_)) => {
                repo.init()?;
                repo.backup(&dir, &host, &tags).map(|s| (s, true))
            }
            other => other.map(|s| (s, false)),
        }
    })
    .await
    .map_err(|e| BackupError::Repository(format!("interrupted: {e}")))??;
    steps.done("stored by restic");
    cache.save(&cache_path)?;
    Ok((manifest, summary, created))
}

/// The mail part of a backup: counts per mailbox, digest of every file.
struct MailPart {
    mailboxes: BTreeMap<String, MailboxEntry>,
    files: BTreeMap<String, manifest::FileEntry>,
}

/// Brings the mail part of the snapshot (`<snap>/mail/<domain>/<local part>/`) up to date with
/// the homes of `addresses`, on all cores, and drops the homes of mailboxes that are gone.
fn snapshot_mail(
    mail_root: &Path,
    snap: &Path,
    addresses: &[String],
    cache: &DigestCache,
) -> Result<MailPart, BackupError> {
    let homes: Vec<(&String, PathBuf)> = addresses
        .iter()
        .filter_map(|a| {
            let (local, domain) = a.rsplit_once('@')?;
            Some((a, Path::new(domain).join(local)))
        })
        .collect();
    let mail = snap.join("mail");
    let synced = crate::system::parallel::try_map(&homes, |(_, rel)| {
        let (home, dest) = (mail_root.join(rel), mail.join(rel));
        if !home.is_dir() {
            // Never received mail yet: Dovecot creates the home on first delivery.
            remove_any(&dest)?;
            return Ok::<_, BackupError>((Vec::new(), BTreeMap::new()));
        }
        let messages = maildir::sync(&home, &dest)?;
        Ok((messages, manifest::digest_tree(snap, &dest, cache)?))
    })?;
    drop_other_homes(&mail, homes.iter().map(|(_, rel)| rel.as_path()))?;
    let mut mailboxes = BTreeMap::new();
    let mut files = BTreeMap::new();
    for ((address, rel), (messages, home_files)) in homes.iter().zip(synced) {
        let mut entry = MailboxEntry::default();
        for m in &messages {
            let key = Path::new("mail").join(rel).join(m);
            entry.messages += 1;
            entry.bytes += home_files
                .get(key.to_string_lossy().as_ref())
                .map_or(0, |f| f.size);
        }
        mailboxes.insert((*address).clone(), entry);
        files.extend(home_files);
    }
    Ok(MailPart { mailboxes, files })
}

/// Removes from the mail part of the snapshot every `<domain>/<local part>` not in `homes`
/// (mailboxes deleted since the last run).
fn drop_other_homes<'a>(
    mail: &Path,
    homes: impl Iterator<Item = &'a Path>,
) -> Result<(), BackupError> {
    let keep: std::collections::HashSet<&Path> = homes.collect();
    let domains: std::collections::HashSet<&Path> =
        keep.iter().filter_map(|h| h.parent()).collect();
    let list = |dir: &Path| -> Result<Vec<std::fs::DirEntry>, BackupError> {
        match std::fs::read_dir(dir) {
            Ok(rd) => Ok(rd.filter_map(Result::ok).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io(dir)(e)),
        }
    };
    for domain in list(mail)? {
        let name = PathBuf::from(domain.file_name());
        if !domains.contains(name.as_path()) {
            remove_any(&domain.path())?;
            continue;
        }
        for home in list(&domain.path())? {
            if !keep.contains(name.join(home.file_name()).as_path()) {
                remove_any(&home.path())?;
            }
        }
    }
    Ok(())
}

/// The server's own files a rebuild needs, beside the database and the mail.
pub fn server_files(config: &Config, distro: &Distro) -> Vec<PathBuf> {
    let (cert, key) = crate::render::context::tls_paths(config, distro);
    let mut out = vec![
        PathBuf::from(crate::config::DEFAULT_PATH)
            .parent()
            .map_or_else(|| PathBuf::from("/etc/modobox"), Path::to_path_buf),
        config.paths.secrets.as_path().to_path_buf(),
        config.paths.dkim_keys.as_path().to_path_buf(),
        cert.as_path().to_path_buf(),
        key.as_path().to_path_buf(),
        config.paths.rrd.as_path().to_path_buf(),
        config
            .paths
            .data
            .as_path()
            .join(crate::render::manifest::FILE_NAME),
    ];
    out.sort();
    out.dedup();
    // A path inside another one of the list is already copied with it.
    let all = out.clone();
    out.retain(|p| !all.iter().any(|q| q != p && p.starts_with(q)));
    out
}

/// Copies `src` (a file or a whole tree, missing = skipped) to `<files>/<src without />`,
/// keeping modes and owners so a restore puts them back as they were.
fn copy_into(src: &Path, files: &Path) -> Result<(), BackupError> {
    let Ok(rel) = src.strip_prefix("/") else {
        return Ok(());
    };
    copy_preserving(src, &files.join(rel))
}

fn copy_preserving(src: &Path, dest: &Path) -> Result<(), BackupError> {
    let meta = match std::fs::symlink_metadata(src) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(src)(e)),
    };
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(src).map_err(io(src))?;
        return std::os::unix::fs::symlink(target, dest).map_err(io(dest));
    }
    if meta.is_dir() {
        std::fs::create_dir_all(dest).map_err(io(dest))?;
        for entry in std::fs::read_dir(src)
            .map_err(io(src))?
            .filter_map(Result::ok)
        {
            copy_preserving(&entry.path(), &dest.join(entry.file_name()))?;
        }
    } else if meta.is_file() {
        std::fs::copy(src, dest).map_err(copy_error(src, dest))?;
    } else {
        return Ok(()); // sockets and fifos are not state
    }
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(io(dest))?;
    if uzers::get_effective_uid() == 0 {
        std::os::unix::fs::lchown(dest, Some(meta.uid()), Some(meta.gid())).map_err(io(dest))?;
    }
    keep_times(dest, &meta)
}

/// Gives `path` the access and modification times of `meta`: a copy of an unchanged file
/// looks unchanged (to restic between runs, and to the installer after a restore, which
/// restarts daemons older than their files).
pub(crate) fn keep_times(path: &Path, meta: &std::fs::Metadata) -> Result<(), BackupError> {
    let stamp = |secs: i64, nsecs: i64| nix::sys::time::TimeSpec::new(secs, nsecs);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &stamp(meta.atime(), meta.atime_nsec()),
        &stamp(meta.mtime(), meta.mtime_nsec()),
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| io(path)(e.into()))
}

/// Gives `path` (not followed when a symbolic link) these access and modification times: a
/// file or directory as if last changed long ago.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn set_mtime(path: &Path, secs: i64) {
    let t = nix::sys::time::TimeSpec::new(secs, 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

/// The backups of a repository, newest last.
pub fn list(
    ctx: &BackupContext,
    from: Option<&BackupRepository>,
) -> Result<Vec<restic::Snapshot>, BackupError> {
    ctx.repository(from)?.snapshots()
}

/// One backup's manifest, read from the repository (only that file is fetched).
pub fn show(
    ctx: &BackupContext,
    from: Option<&BackupRepository>,
    id: &str,
) -> Result<(restic::Snapshot, Manifest), BackupError> {
    let repo = ctx.repository(from)?;
    let snapshot = repo.find(id)?;
    let scratch = ctx.work_dir().join(format!("show-{}", std::process::id()));
    fresh_dir(&scratch)?;
    let result = (|| {
        let root = snapshot
            .paths
            .first()
            .cloned()
            .ok_or_else(|| BackupError::Manifest("the snapshot names no path".into()))?;
        let manifest_path = format!("{root}/{}", manifest::FILE_NAME);
        repo.restore(&snapshot.id, &scratch, &[&manifest_path])?;
        Manifest::read(&scratch.join(root.trim_start_matches('/')))
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    Ok((snapshot, result?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_files_name_each_tree_once() {
        let config: Config = toml::from_str(
            "hostname = \"mail.example.test\"\n[paths]\nsecrets = \"/etc/modobox/secrets.toml\"\n",
        )
        .unwrap();
        let distro = Distro::load(&"debian:12".parse().unwrap()).unwrap();
        let files = server_files(&config, &distro);
        assert!(files.contains(&PathBuf::from("/etc/modobox")));
        assert!(!files.contains(&PathBuf::from("/etc/modobox/secrets.toml")));
        assert!(files.contains(&PathBuf::from("/var/lib/dkim")));
        assert!(files.contains(&PathBuf::from("/var/lib/modobox/rrd")));
        assert!(files
            .iter()
            .any(|p| p.ends_with("modobox-mail.example.test.key")));
    }

    #[test]
    fn homes_of_deleted_mailboxes_leave_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let mail = dir.path();
        for home in ["a.test/kept", "a.test/gone", "b.test/gone"] {
            std::fs::create_dir_all(mail.join(home).join("Maildir/cur")).unwrap();
        }
        std::fs::write(mail.join("stray"), "").unwrap();
        drop_other_homes(
            mail,
            [Path::new("a.test/kept"), Path::new("c.test/new")].into_iter(),
        )
        .unwrap();
        let mut left: Vec<String> = walk(mail);
        left.sort();
        assert_eq!(
            left,
            [
                "a.test",
                "a.test/kept",
                "a.test/kept/Maildir",
                "a.test/kept/Maildir/cur"
            ]
        );
    }

    fn walk(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().filter_map(Result::ok) {
                out.push(e.path().strip_prefix(root).unwrap().display().to_string());
                if e.path().is_dir() {
                    stack.push(e.path());
                }
            }
        }
        out
    }

    #[test]
    fn copies_keep_mode_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("keys")).unwrap();
        std::fs::write(src.join("keys/a.pem"), "key").unwrap();
        std::fs::set_permissions(
            src.join("keys/a.pem"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        std::os::unix::fs::symlink("a.pem", src.join("keys/current")).unwrap();
        let files = dir.path().join("files");
        copy_into(&src, &files).unwrap();
        let copied = files.join(src.strip_prefix("/").unwrap()).join("keys");
        assert_eq!(
            std::fs::read_to_string(copied.join("a.pem")).unwrap(),
            "key"
        );
        assert_eq!(
            std::fs::metadata(copied.join("a.pem"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::read_link(copied.join("current")).unwrap(),
            Path::new("a.pem")
        );
        copy_into(&dir.path().join("missing"), &files).unwrap();
    }
}
