//! Getting a backup back: fetched from the repository into a scratch directory on the mail's
//! filesystem, every file checked against the manifest's SHA-256 before anything live is
//! touched, then each part put in place:
//! - the database replaced all or nothing (`database::load`);
//! - files (configuration and secrets, DKIM keys, TLS material, statistics) written
//!   atomically one by one with their modes and owners;
//! - mail merged: a mailbox missing on disk comes back whole (with Dovecot's UID list, so
//!   clients keep their caches); in a live mailbox only the messages it no longer has are
//!   added, newer mail untouched; or a mailbox goes into a `Restored-<date>` folder.

use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::manifest::{self, Manifest};
use super::restic::{Repository, Snapshot};
use super::{database, io, maildir, BackupContext, BackupError};
use crate::config::Config;
use crate::distro::Distro;
use crate::names::EmailAddress;
use crate::system::cmd::{self, Cmd};

/// The parts `--only` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// The database.
    Db,
    /// /etc/modobox (configuration and secrets) and the rendered-files manifest.
    Config,
    /// DKIM keys and the TLS key and certificate.
    Keys,
    /// Every mailbox (merged: newer mail is kept).
    Mail,
    /// The statistics (RRD files).
    Stats,
}

pub const ALL_PARTS: [Part; 5] = [Part::Db, Part::Config, Part::Keys, Part::Mail, Part::Stats];

/// What to restore.
#[derive(Debug, Clone)]
pub enum Selection {
    Parts(Vec<Part>),
    /// One mailbox, into a folder of the live mailbox (or merged when `folder` is `None`).
    Mailbox {
        address: EmailAddress,
        folder: Option<String>,
    },
}

/// A backup fetched into a scratch directory (removed when dropped).
#[derive(Debug)]
pub struct Fetched {
    pub snapshot: Snapshot,
    pub manifest: Manifest,
    /// The backup's root (where `manifest.json` is).
    pub root: PathBuf,
    scratch: PathBuf,
}

impl Drop for Fetched {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

/// The prefixes (relative to the backup root) a selection needs.
fn prefixes(ctx: &BackupContext, selection: &Selection) -> Vec<String> {
    let files = |paths: Vec<PathBuf>| -> Vec<String> {
        paths
            .iter()
            .map(|p| format!("files{}", p.display()))
            .collect()
    };
    let mut out = Vec::new();
    let parts = match selection {
        Selection::Parts(p) => p.clone(),
        Selection::Mailbox { address, .. } => {
            out.push(format!(
                "mail/{}/{}",
                address.domain(),
                address.local_part()
            ));
            Vec::new()
        }
    };
    for part in parts {
        match part {
            Part::Db => out.push("database".into()),
            Part::Mail => out.push("mail".into()),
            Part::Config => out.extend(files(config_paths(&ctx.config))),
            Part::Keys => out.extend(files(key_paths(&ctx.config, &ctx.distro))),
            Part::Stats => out.extend(files(vec![ctx.config.paths.rrd.as_path().to_path_buf()])),
        }
    }
    out
}

/// The configuration part: /etc/modobox, the secrets and the rendered-files manifest.
pub(crate) fn config_paths(config: &Config) -> Vec<PathBuf> {
    vec![
        PathBuf::from("/etc/modobox"),
        config.paths.secrets.as_path().to_path_buf(),
        config
            .paths
            .data
            .as_path()
            .join(crate::render::manifest::FILE_NAME),
    ]
}

/// The keys part: DKIM keys, the TLS certificate and key.
pub(crate) fn key_paths(config: &Config, distro: &Distro) -> Vec<PathBuf> {
    let (cert, key) = crate::render::context::tls_paths(config, distro);
    vec![
        config.paths.dkim_keys.as_path().to_path_buf(),
        cert.as_path().to_path_buf(),
        key.as_path().to_path_buf(),
    ]
}

fn under(path: &str, prefix: &str) -> bool {
    path == prefix || path.starts_with(&format!("{prefix}/"))
}

/// Fetches what `selection` needs of backup `id` and checks it against the manifest.
pub fn fetch(
    ctx: &BackupContext,
    repo: &Repository,
    id: &str,
    selection: &Selection,
) -> Result<Fetched, BackupError> {
    fetch_prefixes(&ctx.work_dir(), repo, id, prefixes(ctx, selection))
}

/// Fetches `wanted` (paths relative to the backup root, with `manifest.json`) of backup `id`
/// into a scratch directory under `work_dir`, and checks every fetched file against the
/// manifest's SHA-256 before anything may use it.
pub fn fetch_prefixes(
    work_dir: &Path,
    repo: &Repository,
    id: &str,
    wanted: Vec<String>,
) -> Result<Fetched, BackupError> {
    let snapshot = repo.find(id)?;
    let original = snapshot
        .paths
        .first()
        .cloned()
        .ok_or_else(|| BackupError::Manifest("the backup names no path".into()))?;
    let scratch = work_dir.join(format!("restore-{}", snapshot.short_id));
    super::fresh_dir(&scratch)?;
    let mut includes = vec![format!("{original}/{}", manifest::FILE_NAME)];
    includes.extend(wanted.iter().map(|p| format!("{original}/{p}")));
    let root = scratch.join(original.trim_start_matches('/'));
    let mut fetched = Fetched {
        snapshot,
        // Read below, once the files are here.
        manifest: Manifest::default(),
        root,
        scratch,
    };
    let include_refs: Vec<&str> = includes.iter().map(String::as_str).collect();
    let mut steps = super::Steps::start();
    repo.restore(&fetched.snapshot.id, &fetched.scratch, &include_refs)?;
    steps.done("fetched by restic");
    let manifest = Manifest::read(&fetched.root)?;
    if manifest.format > manifest::FORMAT {
        return Err(BackupError::Manifest(format!(
            "backup format {} is newer than this modobox reads ({}): upgrade modobox first",
            manifest.format,
            manifest::FORMAT
        )));
    }
    let newest = crate::store::migrate::latest();
    if manifest.schema_version > newest {
        return Err(BackupError::NewerSchema {
            backup: manifest.schema_version,
            ours: newest,
        });
    }
    let bad = manifest::compare(&manifest, &fetched.root, |p| {
        wanted.iter().any(|w| under(p, w))
    })?;
    steps.done("checked against the manifest");
    if !bad.is_empty() {
        return Err(BackupError::Damaged(bad));
    }
    fetched.manifest = manifest;
    Ok(fetched)
}

/// What a restore will replace, one line each, for the confirmation.
pub fn describe(ctx: &BackupContext, fetched: &Fetched, selection: &Selection) -> Vec<String> {
    let m = &fetched.manifest;
    let mut out = Vec::new();
    match selection {
        Selection::Mailbox { address, folder } => {
            let entry = m.mailboxes.get(address.as_str());
            let n = entry.map_or(0, |e| e.messages);
            match folder {
                Some(f) => out.push(format!(
                    "{n} messages of {address} copied into its folder {f} (nothing else touched)"
                )),
                None => out.push(format!(
                    "{address}: the messages it no longer has come back ({n} in the backup); newer mail is kept"
                )),
            }
        }
        Selection::Parts(parts) => {
            for part in parts {
                out.push(match part {
                    Part::Db => format!(
                        "the {} database {} is REPLACED by the backup's (schema {}, {} domains, {} mailboxes): changes made since {} are lost",
                        ctx.config.database.engine.as_str(),
                        ctx.config.database.name,
                        m.schema_version,
                        m.domains.len(),
                        m.mailboxes.len(),
                        m.created
                    ),
                    Part::Config => "/etc/modobox (configuration and secrets) replaced by the backup's".into(),
                    Part::Keys => "DKIM keys and the TLS key and certificate replaced by the backup's".into(),
                    Part::Mail => format!(
                        "mail: {} mailboxes, {} messages; messages a mailbox no longer has come back, newer mail is kept",
                        m.mailboxes.len(),
                        m.total_messages()
                    ),
                    Part::Stats => "statistics (RRD files) replaced by the backup's".into(),
                });
            }
        }
    }
    out
}

/// What a restore did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RestoreReport {
    pub snapshot: String,
    pub database: bool,
    pub files: usize,
    pub mailboxes: usize,
    pub messages_restored: u64,
    pub messages_already_there: u64,
}

/// Puts the fetched parts in place.
pub async fn apply(
    ctx: &BackupContext,
    fetched: &Fetched,
    selection: &Selection,
) -> Result<RestoreReport, BackupError> {
    let mut report = RestoreReport {
        snapshot: fetched.snapshot.short_id.clone(),
        ..RestoreReport::default()
    };
    let root = &fetched.root;
    let mut steps = super::Steps::start();
    match selection {
        Selection::Mailbox { address, folder } => {
            let src = root
                .join("mail")
                .join(address.domain())
                .join(address.local_part());
            if !src.is_dir() {
                return Err(BackupError::NoSuchMailbox(address.to_string()));
            }
            let merged = match folder {
                Some(f) => restore_into_folder(ctx, &src, address, f)?,
                None => merge_mailbox(ctx, &src, address)?,
            };
            report.mailboxes = 1;
            report.messages_restored = merged.added;
            report.messages_already_there = merged.present;
            if !merged.came_back_whole {
                resync(&[address.to_string()], &fetched.scratch);
            }
        }
        Selection::Parts(parts) => {
            for part in parts {
                match part {
                    Part::Db => {
                        let scratch = fetched.scratch.join("db");
                        super::fresh_dir(&scratch)?;
                        database::load(
                            &ctx.config,
                            &ctx.secrets,
                            &ctx.store,
                            &root.join("database"),
                            &scratch,
                        )
                        .await?;
                        report.database = true;
                    }
                    Part::Config => {
                        report.files += restore_files(fetched, &config_paths(&ctx.config))?
                    }
                    Part::Keys => {
                        report.files +=
                            restore_files(fetched, &key_paths(&ctx.config, &ctx.distro))?
                    }
                    Part::Stats => {
                        report.files +=
                            restore_files(fetched, &[ctx.config.paths.rrd.as_path().to_path_buf()])?
                    }
                    Part::Mail => {
                        let mail = root.join("mail");
                        let homes: Vec<(EmailAddress, PathBuf)> = fetched
                            .manifest
                            .mailboxes
                            .keys()
                            .filter_map(|a| EmailAddress::parse("mailbox", a).ok())
                            .map(|a| {
                                let src = mail.join(a.domain()).join(a.local_part());
                                (a, src)
                            })
                            // A mailbox without a home had never received mail.
                            .filter(|(_, src)| src.is_dir())
                            .collect();
                        // Each mailbox is its own tree: put back on all cores.
                        let merged = crate::system::parallel::try_map(&homes, |(address, src)| {
                            merge_mailbox(ctx, src, address)
                        })?;
                        let mut live = Vec::new();
                        for ((address, _), merged) in homes.iter().zip(merged) {
                            report.mailboxes += 1;
                            report.messages_restored += merged.added;
                            report.messages_already_there += merged.present;
                            if !merged.came_back_whole {
                                live.push(address.to_string());
                            }
                        }
                        resync(&live, &fetched.scratch);
                    }
                }
            }
        }
    }
    steps.done("put in place");
    Ok(report)
}

/// Writes every file the backup holds under each of `paths` back to its place, each one
/// atomically (temp file, then rename) with its mode and owner. Returns how many.
pub(crate) fn restore_files(fetched: &Fetched, paths: &[PathBuf]) -> Result<usize, BackupError> {
    let owners = Owners(&fetched.manifest.owners);
    let mut n = 0;
    for path in paths {
        let Ok(rel) = path.strip_prefix("/") else {
            continue;
        };
        let src = fetched.root.join("files").join(rel);
        n += put_back(&src, path, &format!("files/{}", rel.display()), &owners)?;
    }
    Ok(n)
}

/// The owners a backup recorded by name: on another machine the same user may have another
/// uid (packages create their users in install order), so names win over the numbers the
/// fetched copy carries.
struct Owners<'a>(&'a std::collections::BTreeMap<String, String>);

impl Owners<'_> {
    fn ids(&self, rel: &str, meta: &std::fs::Metadata) -> (u32, u32) {
        let by_name = self.0.get(rel).and_then(|names| {
            let (user, group) = names.split_once(':')?;
            let uid = uzers::get_user_by_name(user)?.uid();
            let gid = uzers::get_group_by_name(group)?.gid();
            Some((uid, gid))
        });
        by_name.unwrap_or((meta.uid(), meta.gid()))
    }
}

fn put_back(src: &Path, dest: &Path, rel: &str, owners: &Owners) -> Result<usize, BackupError> {
    let meta = match std::fs::symlink_metadata(src) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io(src)(e)),
    };
    let (uid, gid) = owners.ids(rel, &meta);
    if meta.is_dir() {
        std::fs::create_dir_all(dest).map_err(io(dest))?;
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(io(dest))?;
        std::os::unix::fs::lchown(dest, Some(uid), Some(gid)).map_err(io(dest))?;
        let mut n = 0;
        for entry in std::fs::read_dir(src)
            .map_err(io(src))?
            .filter_map(Result::ok)
        {
            let name = entry.file_name();
            let child_rel = format!("{rel}/{}", name.to_string_lossy());
            n += put_back(&entry.path(), &dest.join(&name), &child_rel, owners)?;
        }
        return Ok(n);
    }
    let parent = dest
        .parent()
        .ok_or_else(|| BackupError::Manifest(format!("{} has no parent", dest.display())))?;
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.modobox-restore"));
    let _ = std::fs::remove_file(&tmp);
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(src).map_err(io(src))?;
        std::os::unix::fs::symlink(target, &tmp).map_err(io(&tmp))?;
    } else if meta.is_file() {
        std::fs::copy(src, &tmp).map_err(io(&tmp))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(io(&tmp))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io(&tmp))?;
        super::keep_times(&tmp, &meta)?;
    } else {
        return Ok(0);
    }
    std::os::unix::fs::lchown(&tmp, Some(uid), Some(gid)).map_err(io(&tmp))?;
    std::fs::rename(&tmp, dest).map_err(io(dest))?;
    Ok(1)
}

/// Where Dovecot keeps a mailbox: `<mail_root>/<domain>/<local part>`.
fn mail_home(ctx: &BackupContext, address: &EmailAddress) -> PathBuf {
    ctx.config
        .paths
        .mail_root
        .as_path()
        .join(address.domain())
        .join(address.local_part())
}

/// The mail owner's ids (vmail), to give restored mail back to Dovecot.
fn mail_owner(ctx: &BackupContext) -> Option<(u32, u32)> {
    let user = uzers::get_user_by_name(ctx.config.mail.owner.as_str())?;
    Some((user.uid(), user.primary_group_id()))
}

fn chown_tree(path: &Path, owner: Option<(u32, u32)>) -> Result<(), BackupError> {
    let Some((uid, gid)) = owner else {
        return Ok(());
    };
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(io(path))?;
    if std::fs::symlink_metadata(path).map_err(io(path))?.is_dir() {
        for entry in std::fs::read_dir(path)
            .map_err(io(path))?
            .filter_map(Result::ok)
        {
            chown_tree(&entry.path(), Some((uid, gid)))?;
        }
    }
    Ok(())
}

/// What putting one mailbox's messages back did.
struct Merged {
    added: u64,
    /// Messages the live mailbox still had.
    present: u64,
    /// The home was gone and came back as it was saved: Dovecot has no index of it to resync.
    came_back_whole: bool,
}

/// Brings the messages of the backup's home `src` back into the live mailbox. A home that is
/// gone comes back whole; otherwise only the messages the live folders no longer have (by
/// Maildir unique name) are added.
fn merge_mailbox(
    ctx: &BackupContext,
    src: &Path,
    address: &EmailAddress,
) -> Result<Merged, BackupError> {
    let home = mail_home(ctx, address);
    let owner = mail_owner(ctx);
    if !home.exists() {
        let n = maildir::message_files(src)?.len() as u64;
        let parent = home
            .parent()
            .ok_or_else(|| BackupError::Manifest("mail root".into()))?;
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        // The scratch directory is on the mail's filesystem: a rename, not a copy.
        std::fs::rename(src, &home).map_err(io(&home))?;
        chown_tree(&home, owner)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::lchown(parent, Some(uid), Some(gid)).map_err(io(parent))?;
        }
        return Ok(Merged {
            added: n,
            present: 0,
            came_back_whole: true,
        });
    }
    place_messages(src, owner, |rel| {
        let folder_rel = rel.parent().and_then(Path::parent).unwrap_or(Path::new(""));
        let sub = rel
            .parent()
            .and_then(Path::file_name)
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "cur".into());
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Some((home.join(folder_rel), sub, name))
    })
}

/// Moves each message of the backup's home `src` (paths relative to it) into the live folder
/// `place` names for it — `(folder, "cur"|"new", unique name)`, or None to skip it — unless
/// that folder already has it under its unique name.
fn place_messages(
    src: &Path,
    owner: Option<(u32, u32)>,
    place: impl Fn(&Path) -> Option<(PathBuf, String, String)>,
) -> Result<Merged, BackupError> {
    let (mut added, mut present) = (0, 0);
    let mut known = KnownMessages::default();
    for rel in maildir::message_files(src)? {
        let Some((live_folder, sub, name)) = place(&rel) else {
            continue;
        };
        if !known.insert(&live_folder, &name)? {
            present += 1;
            continue;
        }
        ensure_folder(&live_folder, owner)?;
        let dest = live_folder.join(&sub).join(&name);
        std::fs::rename(src.join(&rel), &dest).map_err(io(&dest))?;
        chown_tree(&dest, owner)?;
        added += 1;
    }
    Ok(Merged {
        added,
        present,
        came_back_whole: false,
    })
}

/// The messages of the live folders, listed once per folder.
#[derive(Default)]
struct KnownMessages(std::collections::HashMap<PathBuf, HashSet<String>>);

impl KnownMessages {
    /// Records the message `name` in `folder`; false when the folder already has it.
    fn insert(&mut self, folder: &Path, name: &str) -> Result<bool, BackupError> {
        if !self.0.contains_key(folder) {
            self.0
                .insert(folder.to_path_buf(), live_unique_names(folder)?);
        }
        Ok(self
            .0
            .get_mut(folder)
            .is_some_and(|set| set.insert(maildir::unique_part(name).to_string())))
    }
}

/// The unique parts of the messages of a live folder.
fn live_unique_names(folder: &Path) -> Result<HashSet<String>, BackupError> {
    let mut out = HashSet::new();
    for sub in ["cur", "new"] {
        let dir = folder.join(sub);
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&dir)(e)),
        };
        for e in rd.filter_map(Result::ok) {
            out.insert(maildir::unique_part(&e.file_name().to_string_lossy()).to_string());
        }
    }
    Ok(out)
}

/// A Maildir folder with its three directories (and the marker Dovecot puts in sub-folders).
fn ensure_folder(folder: &Path, owner: Option<(u32, u32)>) -> Result<(), BackupError> {
    for sub in ["cur", "new", "tmp"] {
        let d = folder.join(sub);
        if !d.is_dir() {
            std::fs::create_dir_all(&d).map_err(io(&d))?;
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).map_err(io(&d))?;
            chown_tree(&d, owner)?;
        }
    }
    let is_sub = folder
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'));
    let marker = folder.join("maildirfolder");
    if is_sub && !marker.exists() {
        std::fs::write(&marker, "").map_err(io(&marker))?;
        chown_tree(&marker, owner)?;
        chown_tree(folder, owner)?;
    }
    Ok(())
}

/// A folder name for `--into-folder`: one Maildir++ level, no separators or control
/// characters.
pub fn check_folder_name(name: &str) -> Result<(), BackupError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '));
    if ok {
        Ok(())
    } else {
        Err(BackupError::BadInput {
            field: "--into-folder",
            rule: "letters, digits, spaces, - and _ only (one folder level)".into(),
        })
    }
}

/// Copies every message of the backup's home into `<folder>` of the live mailbox, keeping the
/// backup's folder tree below it (`Restored-2026-12-06/Sent`, ...).
fn restore_into_folder(
    ctx: &BackupContext,
    src: &Path,
    address: &EmailAddress,
    folder: &str,
) -> Result<Merged, BackupError> {
    check_folder_name(folder)?;
    let maildir = mail_home(ctx, address).join("Maildir");
    let owner = mail_owner(ctx);
    place_messages(src, owner, |rel| {
        // rel: Maildir[/.Sub]/cur/name
        let parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let (first, rest) = parts.split_first()?;
        if first != "Maildir" || rest.len() < 2 {
            return None;
        }
        let sub_folder = if rest.len() == 3 {
            format!(".{folder}{}", rest[0]) // ".Sent" → ".Restored-….Sent"
        } else {
            format!(".{folder}")
        };
        let (sub, name) = (&rest[rest.len() - 2], &rest[rest.len() - 1]);
        Some((maildir.join(&sub_folder), sub.clone(), name.clone()))
    })
}

/// Tells Dovecot to re-read the mailboxes that got messages beside live ones (new files, a
/// changed UID list), all in one `doveadm` run: a run per mailbox costs tens of milliseconds,
/// minutes for a whole server. Best effort, as Dovecot also notices new files by itself.
fn resync(addresses: &[String], scratch: &Path) {
    if addresses.is_empty() || !cmd::exists("doveadm") {
        return;
    }
    let list = scratch.join("resync-users");
    if std::fs::write(&list, addresses.join("\n") + "\n").is_err() {
        return;
    }
    let _ = Cmd::new("doveadm")
        .args(["force-resync", "-F"])
        .arg(list.to_string_lossy())
        .arg("*")
        .run();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names() {
        assert!(check_folder_name("Restored-2026-12-06").is_ok());
        for bad in ["", ".hidden", "a/b", "a.b", "x\n", &"y".repeat(101)] {
            assert!(check_folder_name(bad).is_err(), "{bad:?}");
        }
    }

    /// A fetched backup whose root is `dir/backup` (nothing fetched: the test writes it).
    fn fetched_at(dir: &Path, owners: &[(&str, &str)]) -> Fetched {
        Fetched {
            snapshot: Snapshot {
                id: "0".repeat(64),
                short_id: "00000000".into(),
                time: String::new(),
                paths: Vec::new(),
                hostname: String::new(),
                tags: None,
            },
            manifest: Manifest {
                owners: owners
                    .iter()
                    .map(|(p, o)| (p.to_string(), o.to_string()))
                    .collect(),
                ..Manifest::default()
            },
            root: dir.join("backup"),
            scratch: dir.join("scratch"),
        }
    }

    #[test]
    fn files_come_back_atomically_with_their_modes() {
        let dir = tempfile::tempdir().unwrap();
        let fetched = fetched_at(dir.path(), &[]);
        let live = dir.path().join("live/etc/modobox");
        let saved = fetched
            .root
            .join("files")
            .join(live.strip_prefix("/").unwrap());
        std::fs::create_dir_all(&saved).unwrap();
        std::fs::write(saved.join("secrets.toml"), "new").unwrap();
        std::fs::set_permissions(
            saved.join("secrets.toml"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        std::fs::create_dir_all(&live).unwrap();
        std::fs::write(live.join("secrets.toml"), "old").unwrap();
        std::fs::write(live.join("kept.toml"), "mine").unwrap();
        assert_eq!(
            restore_files(&fetched, std::slice::from_ref(&live)).unwrap(),
            1
        );
        assert_eq!(
            std::fs::read_to_string(live.join("secrets.toml")).unwrap(),
            "new"
        );
        assert_eq!(
            std::fs::metadata(live.join("secrets.toml")).unwrap().mode() & 0o777,
            0o600
        );
        // Files the backup does not have are left alone; no temp file stays behind.
        assert_eq!(
            std::fs::read_to_string(live.join("kept.toml")).unwrap(),
            "mine"
        );
        assert_eq!(std::fs::read_dir(&live).unwrap().count(), 2);
    }

    /// On another machine the backup's owners are found again by name, whatever uid the
    /// fetched copy carries; a name unknown here falls back to the number.
    #[test]
    fn owners_are_restored_by_name() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: changing owners needs root");
            return;
        }
        let Some(nobody) = uzers::get_user_by_name("nobody") else {
            eprintln!("skipped: no user nobody");
            return;
        };
        let group = uzers::get_group_by_gid(nobody.primary_group_id()).unwrap();
        let names = format!("nobody:{}", group.name().to_string_lossy());
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live/keys");
        let rel = format!("files/{}", live.strip_prefix("/").unwrap().display());
        let fetched = fetched_at(
            dir.path(),
            &[
                (&format!("{rel}/a.pem"), &names),
                (
                    &format!("{rel}/b.pem"),
                    "no-such-user-here:no-such-group-here",
                ),
            ],
        );
        let saved = fetched.root.join(&rel);
        std::fs::create_dir_all(&saved).unwrap();
        std::fs::write(saved.join("a.pem"), "a").unwrap();
        std::fs::write(saved.join("b.pem"), "b").unwrap();
        assert_eq!(
            restore_files(&fetched, std::slice::from_ref(&live)).unwrap(),
            2
        );
        let a = std::fs::metadata(live.join("a.pem")).unwrap();
        assert_eq!(
            (a.uid(), a.gid()),
            (nobody.uid(), nobody.primary_group_id())
        );
        let b = std::fs::metadata(live.join("b.pem")).unwrap();
        assert_eq!((b.uid(), b.gid()), (0, 0));
    }
}
