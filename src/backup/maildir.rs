//! A consistent copy of one mailbox's home (`<mail_root>/<domain>/<local>/`) taken while Dovecot
//! and Postfix keep running, kept from one backup to the next and brought up to date (`sync`).
//! Message files are immutable in Maildir (only renamed: `new/` → `cur/`, flag changes), so each
//! is hard-linked into the snapshot (no data copied, and the inode — what restic compares
//! between runs — stays the same); a message already linked is left alone, so an unchanged
//! folder costs directory listings, no call per message. A file that vanishes between listing
//! and linking was renamed: it is looked up again by its unique base name. The small files
//! Dovecot rewrites (`dovecot-uidlist`, keywords, subscriptions, Sieve scripts) are copied when
//! their content changed. Index caches, `tmp/` and lock files are left out: Dovecot rebuilds
//! them. Nothing here trusts a directory's modification time to skip it: two changes in the
//! same clock tick leave it unchanged.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{io, remove_any, BackupError};

/// Files Dovecot rebuilds on its own: never worth backing up, and unsafe to restore stale.
fn is_cache(name: &str) -> bool {
    name.starts_with("dovecot.index")
        || name.starts_with("dovecot.list.index")
        || name.starts_with("dovecot.mailbox.log")
        || name.starts_with(".dovecot.lda-dupes")
        || name.ends_with(".lock")
}

/// The unique part of a Maildir file name: what stays the same when the message moves from
/// `new/` to `cur/` or its flags change (`<unique>:2,<flags>`).
pub fn unique_part(name: &str) -> &str {
    name.split_once(':').map_or(name, |(base, _)| base)
}

/// Brings `dest` — the snapshot of the mailbox home `home` left by the previous run, or
/// nothing — up to date. `dest` should be on the same filesystem as `home` so that messages are
/// hard links; across filesystems they are copied instead. Returns the message files the
/// snapshot holds, relative to `dest`.
pub fn sync(home: &Path, dest: &Path) -> Result<Vec<PathBuf>, BackupError> {
    let mut messages = Vec::new();
    sync_tree(home, dest, Path::new(""), &mut messages)?;
    Ok(messages)
}

/// Maildir's two message directories; `new/` is always listed first.
const SUBS: [&str; 2] = ["new", "cur"];
const CUR: usize = 1;
/// Listings of a directory that keeps changing, before settling for what was seen.
const MAX_PASSES: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
    Other,
}

fn sync_tree(
    src: &Path,
    dest: &Path,
    rel: &Path,
    messages: &mut Vec<PathBuf>,
) -> Result<(), BackupError> {
    let Some(Listing { entries, complete }) = settled_listing(src)? else {
        // Gone while we walk (deleted, or a folder renamed): the snapshot keeps what it had
        // until a run sees the new state.
        return Ok(());
    };
    ensure_dir(dest)?;
    let is_maildir_folder = entries.get(OsStr::new("cur")) == Some(&Kind::Dir);
    let mut names: Vec<(&OsString, Kind)> = entries.iter().map(|(n, k)| (n, *k)).collect();
    // Dovecot's UID list first: messages delivered after it get new UIDs at restore, which
    // Dovecot handles; the reverse order could list UIDs of files the snapshot lacks.
    names.sort_by_key(|(n, _)| *n != "dovecot-uidlist");
    let mut wanted: HashSet<OsString> = HashSet::new();
    for (name, kind) in names {
        let text = name.to_str();
        if text.is_some_and(is_cache) {
            continue;
        }
        let (from, to) = (src.join(name), dest.join(name));
        match kind {
            Kind::Dir if is_maildir_folder && matches!(text, Some("tmp" | "cur" | "new")) => {}
            Kind::Dir => {
                wanted.insert(name.clone());
                sync_tree(&from, &to, &rel.join(name), messages)?;
            }
            _ => {
                if sync_file(&from, &to)? {
                    wanted.insert(name.clone());
                }
            }
        }
    }
    if is_maildir_folder {
        wanted.extend(SUBS.map(OsString::from));
        sync_messages(src, dest, rel, messages)?;
    }
    if complete {
        remove_unwanted(dest, &wanted)?;
    }
    Ok(())
}

/// What `settled_listing` saw of a directory.
struct Listing {
    entries: BTreeMap<OsString, Kind>,
    complete: bool,
}

/// The entries of `dir` (`None`: it does not exist), listed again while it changes — a listing
/// taken during renames can skip an entry — and merged. `true` when the listing is complete:
/// its last pass saw a directory that did not change meanwhile and had either not changed for a
/// while or shown nothing new; only then is an entry it lacks really gone.
fn settled_listing(dir: &Path) -> Result<Option<Listing>, BackupError> {
    let mut seen = BTreeMap::new();
    for pass in 0..MAX_PASSES {
        let started = SystemTime::now();
        let before = modified(dir);
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound && pass == 0 => return Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Ok(Some(Listing {
                    entries: seen,
                    complete: false,
                }))
            }
            Err(e) => return Err(io(dir)(e)),
        };
        let mut added = 0;
        for entry in rd.filter_map(Result::ok) {
            let kind = match entry.file_type() {
                Ok(t) if t.is_dir() => Kind::Dir,
                Ok(t) if t.is_file() => Kind::File,
                Ok(t) if t.is_symlink() => Kind::Symlink,
                _ => Kind::Other,
            };
            if seen.insert(entry.file_name(), kind).is_none() {
                added += 1;
            }
        }
        if before == modified(dir) && (added == 0 && pass > 0 || settled(&[before], started)) {
            return Ok(Some(Listing {
                entries: seen,
                complete: true,
            }));
        }
    }
    Ok(Some(Listing {
        entries: seen,
        complete: false,
    }))
}

/// A directory's modification time, `None` when it is missing.
fn modified(dir: &Path) -> Option<(i64, i64)> {
    std::fs::symlink_metadata(dir)
        .ok()
        .map(|m| (m.mtime(), m.mtime_nsec()))
}

/// Whether none of these modification times (of directories, `None`: missing) is recent.
fn settled(times: &[Option<(i64, i64)>], started: SystemTime) -> bool {
    times.iter().flatten().all(|t| super::settled(*t, started))
}

/// `path` as a directory (whatever else stood there is replaced).
fn ensure_dir(path: &Path) -> Result<(), BackupError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => remove_any(path)?,
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io(path)(e)),
    }
    std::fs::create_dir_all(path).map_err(io(path))
}

/// Removes what the snapshot directory holds beyond `wanted` (gone from the live home).
fn remove_unwanted(dest: &Path, wanted: &HashSet<OsString>) -> Result<(), BackupError> {
    for entry in std::fs::read_dir(dest)
        .map_err(io(dest))?
        .filter_map(Result::ok)
    {
        if !wanted.contains(&entry.file_name()) {
            remove_any(&entry.path())?;
        }
    }
    Ok(())
}

/// Copies a small file (or recreates a symbolic link, such as `.dovecot.sieve`) unless the
/// snapshot already has the same; `false` when there is nothing to keep (gone, a socket).
fn sync_file(src: &Path, dest: &Path) -> Result<bool, BackupError> {
    let meta = match std::fs::symlink_metadata(src) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io(src)(e)),
    };
    if meta.file_type().is_symlink() {
        let target = match std::fs::read_link(src) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io(src)(e)),
        };
        if std::fs::read_link(dest).is_ok_and(|t| t == target) {
            return Ok(true);
        }
        remove_any(dest)?;
        std::os::unix::fs::symlink(target, dest).map_err(io(dest))?;
        return Ok(true);
    }
    if !meta.is_file() {
        return Ok(false); // sockets, fifos: nothing Dovecot keeps there
    }
    if same_content(src, dest, &meta) {
        return Ok(true);
    }
    if !std::fs::symlink_metadata(dest).is_ok_and(|m| m.is_file()) {
        remove_any(dest)?;
    }
    match std::fs::copy(src, dest) {
        Ok(_) => Ok(true),
        Err(e) => {
            // A partial copy would sit in the kept snapshot (a full disk stays full).
            let _ = std::fs::remove_file(dest);
            if e.kind() == ErrorKind::NotFound {
                Ok(false)
            } else {
                Err(super::copy_error(src, dest)(e))
            }
        }
    }
}

/// Whether the regular file `dest` has the mode of `src` (described by `meta`) and holds
/// exactly what it holds. Compared byte by byte, not by modification time: Dovecot can rewrite a
/// file twice in one clock tick.
fn same_content(src: &Path, dest: &Path, meta: &std::fs::Metadata) -> bool {
    let like = |m: std::fs::Metadata| {
        m.is_file() && m.len() == meta.len() && m.mode() & 0o7777 == meta.mode() & 0o7777
    };
    if !std::fs::symlink_metadata(dest).is_ok_and(like) {
        return false;
    }
    let (Ok(mut a), Ok(mut b)) = (std::fs::File::open(src), std::fs::File::open(dest)) else {
        return false;
    };
    let (mut buf_a, mut buf_b) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    loop {
        let n = match a.read(&mut buf_a) {
            Ok(n) => n,
            Err(_) => return false,
        };
        if n == 0 {
            // Also at the end of `dest`: it may have grown since its length was read.
            return b.read(&mut buf_b[..1]).is_ok_and(|m| m == 0);
        }
        if b.read_exact(&mut buf_b[..n]).is_err() || buf_a[..n] != buf_b[..n] {
            return false;
        }
    }
}

/// The messages of one Maildir folder. `new/` is listed before `cur/`, so a message moving
/// between them meanwhile is still seen; one renamed before it is linked is found again by its
/// unique part; one seen in both keeps its `cur/` name; one the snapshot already holds under
/// the same name and inode is left alone. A directory listing taken while files are renamed
/// inside it may skip an entry, so the folder is listed again until a pass finds nothing new
/// and neither directory changed during it (one pass is enough when neither had changed for a
/// while). Then the snapshot drops the other names of the messages it kept (older flags), and
/// the messages no pass saw, but only when that listing was complete and a last look by name
/// does not find them.
fn sync_messages(
    folder: &Path,
    dest: &Path,
    rel: &Path,
    messages: &mut Vec<PathBuf>,
) -> Result<(), BackupError> {
    // What the snapshot holds, per sub-directory: name → inode.
    let mut held: [HashMap<String, u64>; 2] = Default::default();
    for (i, sub) in SUBS.iter().enumerate() {
        ensure_dir(&dest.join(sub))?;
        held[i] = list(&dest.join(sub))?.into_iter().collect();
    }
    // unique part → (sub-directory, name) of the link kept for it
    let mut kept: HashMap<String, (usize, String)> = HashMap::new();
    let mut complete = false;
    for pass in 0..MAX_PASSES {
        let started = SystemTime::now();
        let before = changed_at(folder);
        let mut added = 0;
        for (i, sub) in SUBS.iter().enumerate() {
            for (name, ino) in list(&folder.join(sub))? {
                let unique = unique_part(&name).to_string();
                match kept.get(&unique) {
                    Some((s, _)) if *s == i || *s == CUR => continue, // already kept
                    Some(_) => {} // moved from new/ to cur/ while we listed: keep the cur/ one
                    None => added += 1,
                }
                let linked = if held[i].get(&name) == Some(&ino)
                    || held[i].contains_key(&name) && same_message(folder, dest, i, &name)
                {
                    Some((i, name.clone()))
                } else {
                    link_one(folder, dest, i, &name)?
                };
                if let Some((s, n)) = linked {
                    // The inode is known only for the name listed (0: check it again).
                    let known = if s == i && n == name { ino } else { 0 };
                    held[s].insert(n.clone(), known);
                    kept.insert(unique, (s, n));
                }
            }
        }
        let after = changed_at(folder);
        if before == after && (added == 0 || pass == 0 && settled(&before, started)) {
            complete = true;
            break;
        }
    }
    if complete {
        last_look(folder, dest, &mut held, &mut kept)?;
    }
    // cur/ first: of a message held twice that no pass saw, the cur/ name stays.
    let mut unseen_kept = HashSet::new();
    for i in [CUR, 0] {
        let mut names: Vec<&String> = held[i].keys().collect();
        names.sort();
        for name in names {
            let unique = unique_part(name);
            let keep = match kept.get(unique) {
                Some((s, n)) => *s == i && n == name,
                None => !complete && unseen_kept.insert(unique),
            };
            if keep {
                messages.push(rel.join(SUBS[i]).join(name));
            } else {
                remove_any(&dest.join(SUBS[i]).join(name))?;
            }
        }
    }
    Ok(())
}

/// One more listing for the messages the snapshot holds that no pass saw, before they are
/// dropped as expunged: linked again if it finds them.
fn last_look(
    folder: &Path,
    dest: &Path,
    held: &mut [HashMap<String, u64>; 2],
    kept: &mut HashMap<String, (usize, String)>,
) -> Result<(), BackupError> {
    let unseen: HashSet<String> = held
        .iter()
        .flat_map(|h| h.keys())
        .map(|n| unique_part(n).to_string())
        .filter(|u| !kept.contains_key(u))
        .collect();
    if unseen.is_empty() {
        return Ok(());
    }
    for (i, sub) in SUBS.iter().enumerate() {
        for (name, _) in list(&folder.join(sub))? {
            let unique = unique_part(&name);
            if !unseen.contains(unique) || kept.get(unique).is_some_and(|(s, _)| *s == CUR) {
                continue;
            }
            if let Some((s, n)) = link_one(folder, dest, i, &name)? {
                held[s].insert(n.clone(), 0);
                kept.insert(unique.to_string(), (s, n));
            }
        }
    }
    Ok(())
}

/// Whether the snapshot's `sub/name` is the live message of that name: the same inode, or a
/// copy (across filesystems) with its size and modification time.
fn same_message(folder: &Path, dest: &Path, sub: usize, name: &str) -> bool {
    let (Ok(live), Ok(snap)) = (
        std::fs::symlink_metadata(folder.join(SUBS[sub]).join(name)),
        std::fs::symlink_metadata(dest.join(SUBS[sub]).join(name)),
    ) else {
        return false;
    };
    (live.dev(), live.ino()) == (snap.dev(), snap.ino())
        || (live.len(), live.mtime(), live.mtime_nsec())
            == (snap.len(), snap.mtime(), snap.mtime_nsec())
}

/// When `cur/` and `new/` last changed (an entry added, removed or renamed).
fn changed_at(folder: &Path) -> [Option<(i64, i64)>; 2] {
    SUBS.map(|sub| modified(&folder.join(sub)))
}

/// The messages of a directory: name and inode (from the listing itself, no call per file).
fn list(dir: &Path) -> Result<Vec<(String, u64)>, BackupError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut names: Vec<(String, u64)> = rd
        .filter_map(Result::ok)
        .filter_map(|e| {
            let ino = e.ino();
            e.file_name().into_string().ok().map(|n| (n, ino))
        })
        .filter(|(n, _)| !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

/// Links one message; when it is gone, looks for its new name (a few times: a message can be
/// renamed again while we look). `None`: it was expunged.
fn link_one(
    folder: &Path,
    dest: &Path,
    sub: usize,
    name: &str,
) -> Result<Option<(usize, String)>, BackupError> {
    let unique = unique_part(name).to_string();
    let (mut sub, mut name) = (sub, name.to_string());
    for _ in 0..5 {
        let src = folder.join(SUBS[sub]).join(&name);
        let target = dest.join(SUBS[sub]).join(&name);
        match link_or_copy(&src, &target) {
            Ok(()) => return Ok(Some((sub, name))),
            Err(e) if e.kind() == ErrorKind::NotFound => match find(folder, &unique)? {
                Some((s, n)) => (sub, name) = (s, n),
                None => return Ok(None),
            },
            Err(e) => return Err(super::copy_error(&src, &target)(e)),
        }
    }
    // Still moving after five tries: one more listing settles it.
    Ok(None)
}

/// Makes `dest` a hard link to `src`, replacing what was there; across filesystems a copy with
/// the same times (so that `same_message` knows it next time).
fn link_or_copy(src: &Path, dest: &Path) -> std::io::Result<()> {
    match std::fs::hard_link(src, dest) {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            std::fs::remove_file(dest)?;
            std::fs::hard_link(src, dest)
        }
        other => other,
    }
    .or_else(|e| {
        if e.raw_os_error() != Some(nix::libc::EXDEV) {
            return Err(e);
        }
        let meta = std::fs::metadata(src)?;
        std::fs::copy(src, dest)?;
        super::keep_times(dest, &meta).map_err(|_| e)
    })
}

/// Where the message with this unique part is now.
fn find(folder: &Path, unique: &str) -> Result<Option<(usize, String)>, BackupError> {
    for sub in [CUR, 0] {
        if let Some((n, _)) = list(&folder.join(SUBS[sub]))?
            .into_iter()
            .find(|(n, _)| unique_part(n) == unique)
        {
            return Ok(Some((sub, n)));
        }
    }
    Ok(None)
}

/// Every message file of a snapshot (or a restored home), by path relative to it.
pub fn message_files(home: &Path) -> Result<Vec<PathBuf>, BackupError> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    walk_messages(home, home, &mut out, &mut seen)?;
    out.sort();
    Ok(out)
}

fn walk_messages(
    root: &Path,
    dir: &Path,
    out: &mut Vec<PathBuf>,
    seen: &mut HashSet<PathBuf>,
) -> Result<(), BackupError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(dir)(e)),
    };
    let is_folder = dir.join("cur").is_dir();
    for entry in rd.filter_map(Result::ok) {
        let path = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = entry.file_name();
        if is_folder && (name == "cur" || name == "new") {
            for file in std::fs::read_dir(&path)
                .map_err(|e| io(&path)(e))?
                .filter_map(Result::ok)
            {
                let p = file.path();
                if let Ok(rel) = p.strip_prefix(root) {
                    if seen.insert(rel.to_path_buf()) {
                        out.push(rel.to_path_buf());
                    }
                }
            }
        } else if !(is_folder && name == "tmp") {
            walk_messages(root, &path, out, seen)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn home_with_folders(home: &Path) {
        for f in ["Maildir", "Maildir/.Sent", "Maildir/.Archive.2026"] {
            for sub in ["cur", "new", "tmp"] {
                std::fs::create_dir_all(home.join(f).join(sub)).unwrap();
            }
        }
        write(
            &home.join("Maildir/new/1000.M1P1.host"),
            "Subject: one\n\nbody\n",
        );
        write(
            &home.join("Maildir/cur/1001.M2P1.host:2,S"),
            "Subject: two\n\nbody\n",
        );
        write(
            &home.join("Maildir/.Sent/cur/1002.M3P1.host:2,S"),
            "Subject: three\n\n",
        );
        write(&home.join("Maildir/tmp/1003.M4P1.host"), "half delivered");
        write(
            &home.join("Maildir/dovecot-uidlist"),
            "3 V1 N3\n1 1000.M1P1.host\n",
        );
        write(&home.join("Maildir/dovecot-keywords"), "0 $Junk\n");
        write(&home.join("Maildir/subscriptions"), "Sent\n");
        write(&home.join("Maildir/.Sent/maildirfolder"), "");
        write(&home.join("Maildir/dovecot.index.cache"), "cache");
        write(&home.join("Maildir/dovecot.list.index.log"), "cache");
        write(&home.join("Maildir/dovecot-uidlist.lock"), "");
        write(
            &home.join("sieve/vacation.sieve"),
            "require \"vacation\";\n",
        );
        std::os::unix::fs::symlink("sieve/vacation.sieve", home.join(".dovecot.sieve")).unwrap();
    }

    #[test]
    fn keeps_messages_and_dovecot_state_not_caches_or_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        home_with_folders(&home);
        let snap = dir.path().join("snap");
        let messages = sync(&home, &snap).unwrap();
        assert_eq!(messages.len(), 3);
        for kept in [
            "Maildir/new/1000.M1P1.host",
            "Maildir/cur/1001.M2P1.host:2,S",
            "Maildir/.Sent/cur/1002.M3P1.host:2,S",
            "Maildir/dovecot-uidlist",
            "Maildir/dovecot-keywords",
            "Maildir/subscriptions",
            "Maildir/.Sent/maildirfolder",
            "sieve/vacation.sieve",
        ] {
            assert!(snap.join(kept).is_file(), "{kept} missing");
        }
        assert_eq!(
            std::fs::read_link(snap.join(".dovecot.sieve")).unwrap(),
            Path::new("sieve/vacation.sieve")
        );
        for left in [
            "Maildir/tmp/1003.M4P1.host",
            "Maildir/dovecot.index.cache",
            "Maildir/dovecot.list.index.log",
            "Maildir/dovecot-uidlist.lock",
        ] {
            assert!(!snap.join(left).exists(), "{left} copied");
        }
        // Messages are the same inode (hard links), Dovecot's state files are copies.
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        assert_eq!(
            ino(&home.join("Maildir/new/1000.M1P1.host")),
            ino(&snap.join("Maildir/new/1000.M1P1.host"))
        );
        assert_ne!(
            ino(&home.join("Maildir/dovecot-uidlist")),
            ino(&snap.join("Maildir/dovecot-uidlist"))
        );
        assert_eq!(message_files(&snap).unwrap().len(), 3);
        // An empty tmp/ and the folder layout stay usable for Dovecot after a restore.
        assert!(snap.join("Maildir/.Archive.2026/cur").is_dir());
    }

    #[test]
    fn a_message_moved_or_renamed_meanwhile_is_kept_once() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("Maildir");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(folder.join(sub)).unwrap();
        }
        write(&folder.join("new/42.M1.host"), "moving");
        let snap = dir.path().join("snap");
        // Listed in new/, then moved before it could be linked: found again in cur/.
        std::fs::create_dir_all(snap.join("new")).unwrap();
        std::fs::create_dir_all(snap.join("cur")).unwrap();
        std::fs::rename(
            folder.join("new/42.M1.host"),
            folder.join("cur/42.M1.host:2,S"),
        )
        .unwrap();
        let got = link_one(&folder, &snap, 0, "42.M1.host").unwrap();
        assert_eq!(got, Some((CUR, "42.M1.host:2,S".to_string())));
        // Expunged before it could be linked: skipped.
        assert_eq!(
            link_one(&folder, &snap, CUR, "43.M1.host:2,").unwrap(),
            None
        );
    }

    /// A delivery agent and a mail client working on the mailbox during the snapshot: every
    /// message that exists from start to end is in the snapshot exactly once.
    #[test]
    fn concurrent_moves_and_flag_changes_lose_and_duplicate_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let folder = home.join("Maildir");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(folder.join(sub)).unwrap();
        }
        let total = 500;
        for i in 0..total {
            write(&folder.join(format!("new/{i}.M1.host")), "x");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mover = {
            let folder = folder.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut round = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    // A busy client, not a CPU hog: the other tests share these cores.
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    round += 1;
                    for i in 0..total {
                        let flags = if round.is_multiple_of(2) { "S" } else { "RS" };
                        let cur_old = folder.join(format!(
                            "cur/{i}.M1.host:2,{}",
                            if round.is_multiple_of(2) { "RS" } else { "S" }
                        ));
                        let new = folder.join(format!("new/{i}.M1.host"));
                        let cur_new = folder.join(format!("cur/{i}.M1.host:2,{flags}"));
                        let _ = std::fs::rename(&new, &cur_new);
                        let _ = std::fs::rename(&cur_old, &cur_new);
                    }
                }
            })
        };
        // Three fresh snapshots, then the same one brought up to date three times (the path a
        // scheduled backup takes): each run holds every message exactly once.
        for run in 0..6 {
            let snap = dir.path().join(format!("snap{}", run.min(3)));
            let messages = sync(&home, &snap).unwrap();
            let files = message_files(&snap).unwrap();
            let uniques: HashSet<String> = files
                .iter()
                .map(|p| unique_part(&p.file_name().unwrap().to_string_lossy()).to_string())
                .collect();
            assert_eq!(files.len(), total, "run {run}: {} files", files.len());
            assert_eq!(uniques.len(), total, "run {run}: duplicates");
            assert_eq!(messages.len(), total);
        }
        stop.store(true, Ordering::Relaxed);
        mover.join().unwrap();
        // Once the client is quiet, messages expunged since are dropped from the kept snapshot.
        for i in 0..50 {
            for name in [
                format!("cur/{i}.M1.host:2,S"),
                format!("cur/{i}.M1.host:2,RS"),
            ] {
                let _ = std::fs::remove_file(folder.join(name));
            }
        }
        let snap = dir.path().join("snap3");
        assert_eq!(sync(&home, &snap).unwrap().len(), total - 50);
        assert_eq!(message_files(&snap).unwrap().len(), total - 50);
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut out: Vec<String> = message_files(dir)
            .unwrap()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn a_kept_snapshot_follows_moves_flag_changes_deletions_and_new_folders() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        home_with_folders(&home);
        write(
            &home.join("Maildir/cur/1004.M4P1.host:2,S"),
            "Subject: four\n\n",
        );
        let snap = dir.path().join("snap");
        assert_eq!(sync(&home, &snap).unwrap().len(), 4);
        let sent_cur = snap.join("Maildir/.Sent/cur");
        let sent_before = std::fs::metadata(&sent_cur).unwrap();
        let m = home.join("Maildir");
        // new/ → cur/ with a flag; a message expunged; a folder deleted, another created.
        std::fs::rename(
            m.join("new/1000.M1P1.host"),
            m.join("cur/1000.M1P1.host:2,S"),
        )
        .unwrap();
        std::fs::remove_dir_all(m.join(".Archive.2026")).unwrap();
        write(
            &m.join(".Trash/cur/1005.M5P1.host:2,T"),
            "Subject: five\n\n",
        );
        write(&m.join(".Trash/maildirfolder"), "");
        std::fs::create_dir_all(m.join(".Trash/new")).unwrap();
        // A message replaced under the same name (another inode): the snapshot follows.
        write(&m.join("tmp/x"), "Subject: two, again\n\nbody\n");
        std::fs::rename(m.join("tmp/x"), m.join("cur/1001.M2P1.host:2,S")).unwrap();
        // Dovecot's UID list rewritten with the same length; the Sieve link removed.
        write(&m.join("dovecot-uidlist"), "3 V1 N3\n1 1000.M1P2.host\n");
        std::fs::remove_file(home.join(".dovecot.sieve")).unwrap();
        std::fs::remove_file(m.join("cur/1004.M4P1.host:2,S")).unwrap();
        // A Sieve script made private: same content, another mode.
        std::fs::set_permissions(
            home.join("sieve/vacation.sieve"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();

        let messages = sync(&home, &snap).unwrap();
        assert_eq!(
            names(&snap),
            [
                "Maildir/.Sent/cur/1002.M3P1.host:2,S",
                "Maildir/.Trash/cur/1005.M5P1.host:2,T",
                "Maildir/cur/1000.M1P1.host:2,S",
                "Maildir/cur/1001.M2P1.host:2,S",
            ]
        );
        assert_eq!(messages.len(), 4);
        assert!(!snap.join("Maildir/.Archive.2026").exists());
        assert!(!snap.join(".dovecot.sieve").exists());
        assert!(snap.join("Maildir/.Trash/maildirfolder").is_file());
        assert_eq!(
            std::fs::read_to_string(snap.join("Maildir/dovecot-uidlist")).unwrap(),
            "3 V1 N3\n1 1000.M1P2.host\n"
        );
        assert_eq!(
            std::fs::metadata(snap.join("sieve/vacation.sieve"))
                .unwrap()
                .mode()
                & 0o777,
            0o600
        );
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        assert_eq!(
            ino(&m.join("cur/1001.M2P1.host:2,S")),
            ino(&snap.join("Maildir/cur/1001.M2P1.host:2,S"))
        );
        // An untouched folder is not relinked: its snapshot directory did not change.
        let sent_after = std::fs::metadata(&sent_cur).unwrap();
        assert_eq!(
            (sent_before.mtime(), sent_before.mtime_nsec()),
            (sent_after.mtime(), sent_after.mtime_nsec())
        );
    }

    /// Changes within one timestamp tick leave a directory's modification time as it was: the
    /// snapshot must follow them anyway.
    #[test]
    fn changes_that_leave_modification_times_unchanged_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        home_with_folders(&home);
        let m = home.join("Maildir");
        let dirs = [
            home.clone(),
            m.clone(),
            m.join("cur"),
            m.join("new"),
            m.join(".Sent"),
        ];
        let old = 1_700_000_000;
        for d in &dirs {
            crate::backup::set_mtime(d, old);
        }
        let snap = dir.path().join("snap");
        sync(&home, &snap).unwrap();
        std::fs::rename(
            m.join("cur/1001.M2P1.host:2,S"),
            m.join("cur/1001.M2P1.host:2,RS"),
        )
        .unwrap();
        std::fs::remove_file(m.join("new/1000.M1P1.host")).unwrap();
        write(&m.join("new/1010.M10P1.host"), "Subject: ten\n\n");
        std::fs::remove_dir_all(m.join(".Sent")).unwrap();
        for d in dirs.iter().filter(|d| d.exists()) {
            crate::backup::set_mtime(d, old);
        }
        sync(&home, &snap).unwrap();
        assert_eq!(
            names(&snap),
            [
                "Maildir/cur/1001.M2P1.host:2,RS",
                "Maildir/new/1010.M10P1.host"
            ]
        );
    }
}
