//! A consistent copy of one mailbox's home (`<mail_root>/<domain>/<local>/`) taken while Dovecot
//! and Postfix keep running. Message files are immutable in Maildir (only renamed: `new/` →
//! `cur/`, flag changes), so each is hard-linked into the snapshot (no data copied, and the
//! inode — what restic compares between runs — stays the same). A file that vanishes between
//! listing and linking was renamed: it is looked up again by its unique base name. The small
//! files Dovecot rewrites (`dovecot-uidlist`, keywords, subscriptions, Sieve scripts) are copied.
//! Index caches, `tmp/` and lock files are left out: Dovecot rebuilds them.

use std::collections::{BTreeMap, HashSet};
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{io, BackupError};

/// What one mailbox snapshot holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MailboxCounts {
    pub messages: u64,
    pub bytes: u64,
}

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

/// Copies the mailbox home `home` into `dest` (which must not exist yet). `dest` should be on
/// the same filesystem as `home` so that messages are hard links; across filesystems they are
/// copied instead.
pub fn snapshot(home: &Path, dest: &Path) -> Result<MailboxCounts, BackupError> {
    let mut counts = MailboxCounts::default();
    copy_tree(home, dest, &mut counts)?;
    Ok(counts)
}

fn copy_tree(src: &Path, dest: &Path, counts: &mut MailboxCounts) -> Result<(), BackupError> {
    std::fs::create_dir_all(dest).map_err(|e| io(dest)(e))?;
    let is_maildir_folder = src.join("cur").is_dir();
    let mut entries: Vec<_> = match std::fs::read_dir(src) {
        Ok(rd) => rd.filter_map(Result::ok).collect(),
        // A folder deleted by its user while we walk: nothing left to keep.
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(src)(e)),
    };
    // Dovecot's UID list first: messages delivered after it get new UIDs at restore, which
    // Dovecot handles; the reverse order could list UIDs of files the snapshot lacks.
    entries.sort_by_key(|e| e.file_name() != "dovecot-uidlist");
    let mut message_dirs = Vec::new();
    for entry in entries {
        let name = entry.file_name();
        let Some(name_str) = name.to_str() else {
            // Not a name Dovecot or modobox creates; kept as is.
            copy_entry(&entry.path(), &dest.join(&name))?;
            continue;
        };
        if is_cache(name_str) {
            continue;
        }
        let path = entry.path();
        let kind = match entry.file_type() {
            Ok(k) => k,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&path)(e)),
        };
        if kind.is_dir() {
            match name_str {
                "tmp" if is_maildir_folder => {}
                "cur" | "new" if is_maildir_folder => message_dirs.push(name_str.to_string()),
                _ => copy_tree(&path, &dest.join(&name), counts)?,
            }
        } else {
            copy_entry(&path, &dest.join(&name))?;
        }
    }
    if !message_dirs.is_empty() {
        link_messages(src, dest, counts)?;
    }
    Ok(())
}

/// Copies a small file (or recreates a symbolic link, such as `.dovecot.sieve`).
fn copy_entry(src: &Path, dest: &Path) -> Result<(), BackupError> {
    let meta = match std::fs::symlink_metadata(src) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(src)(e)),
    };
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(src).map_err(|e| io(src)(e))?;
        return std::os::unix::fs::symlink(target, dest).map_err(|e| io(dest)(e));
    }
    if !meta.is_file() {
        return Ok(()); // sockets, fifos: nothing Dovecot keeps there
    }
    match std::fs::copy(src, dest) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(super::copy_error(src, dest)(e)),
    }
}

/// The messages of one Maildir folder. `new/` is listed before `cur/`, so a message moving
/// between them meanwhile is still seen; one renamed before it is linked is found again by its
/// unique part; one seen in both keeps its `cur/` name. A directory listing taken while files
/// are renamed inside it may skip an entry, so the folder is listed again until a pass finds
/// nothing new and neither directory changed during it.
fn link_messages(
    folder: &Path,
    dest: &Path,
    counts: &mut MailboxCounts,
) -> Result<(), BackupError> {
    const MAX_PASSES: usize = 10;
    for sub in ["new", "cur"] {
        std::fs::create_dir_all(dest.join(sub)).map_err(|e| io(&dest.join(sub))(e))?;
    }
    // unique part → (sub-directory, name, size) of the link made for it
    let mut linked: BTreeMap<String, (&'static str, String, u64)> = BTreeMap::new();
    for _ in 0..MAX_PASSES {
        let before = changed_at(folder);
        let mut added = 0;
        for sub in ["new", "cur"] {
            for name in list(&folder.join(sub))? {
                let unique = unique_part(&name).to_string();
                if let Some((old_sub, old_name, old_size)) = linked.get(&unique) {
                    if *old_sub == sub || *old_sub == "cur" {
                        continue; // already kept (flag changes since then do not matter)
                    }
                    // Moved from new/ to cur/ while we listed: keep the cur/ one.
                    remove(&dest.join(old_sub).join(old_name))?;
                    counts.messages -= 1;
                    counts.bytes -= old_size;
                    linked.remove(&unique);
                } else {
                    added += 1;
                }
                if let Some((sub, name, size)) = link_one(folder, dest, sub, &name)? {
                    counts.messages += 1;
                    counts.bytes += size;
                    linked.insert(unique, (sub, name, size));
                }
            }
        }
        if added == 0 && before == changed_at(folder) {
            break;
        }
    }
    Ok(())
}

/// When `cur/` and `new/` last changed (an entry added, removed or renamed).
fn changed_at(folder: &Path) -> [Option<(i64, i64)>; 2] {
    ["new", "cur"].map(|sub| {
        std::fs::metadata(folder.join(sub))
            .ok()
            .map(|m| (m.mtime(), m.mtime_nsec()))
    })
}

fn list(dir: &Path) -> Result<Vec<String>, BackupError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut names: Vec<String> = rd
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

fn remove(path: &Path) -> Result<(), BackupError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(path)(e)),
    }
}

/// Links one message; when it is gone, looks for its new name (a few times: a message can be
/// renamed again while we look). `None`: it was expunged.
fn link_one(
    folder: &Path,
    dest: &Path,
    sub: &'static str,
    name: &str,
) -> Result<Option<(&'static str, String, u64)>, BackupError> {
    let unique = unique_part(name).to_string();
    let (mut sub, mut name) = (sub, name.to_string());
    for _ in 0..5 {
        let src = folder.join(sub).join(&name);
        let target = dest.join(sub).join(&name);
        match hard_link_or_copy(&src, &target) {
            Ok(size) => return Ok(Some((sub, name, size))),
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

fn hard_link_or_copy(src: &Path, dest: &Path) -> std::io::Result<u64> {
    match std::fs::hard_link(src, dest) {
        Ok(()) => Ok(std::fs::metadata(dest)?.size()),
        Err(e) if e.raw_os_error() == Some(nix::libc::EXDEV) => std::fs::copy(src, dest),
        Err(e) => Err(e),
    }
}

/// Where the message with this unique part is now.
fn find(folder: &Path, unique: &str) -> Result<Option<(&'static str, String)>, BackupError> {
    for sub in ["cur", "new"] {
        if let Some(n) = list(&folder.join(sub))?
            .into_iter()
            .find(|n| unique_part(n) == unique)
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
        let counts = snapshot(&home, &snap).unwrap();
        assert_eq!(counts.messages, 3);
        assert_eq!(counts.bytes, 19 + 19 + 16);
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
        let got = link_one(&folder, &snap, "new", "42.M1.host").unwrap();
        assert_eq!(
            got.map(|g| (g.0, g.1)),
            Some(("cur", "42.M1.host:2,S".to_string()))
        );
        // Expunged before it could be linked: skipped.
        assert_eq!(
            link_one(&folder, &snap, "cur", "43.M1.host:2,").unwrap(),
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
        for run in 0..3 {
            let snap = dir.path().join(format!("snap{run}"));
            let counts = snapshot(&home, &snap).unwrap();
            let files = message_files(&snap).unwrap();
            let uniques: HashSet<String> = files
                .iter()
                .map(|p| unique_part(&p.file_name().unwrap().to_string_lossy()).to_string())
                .collect();
            assert_eq!(files.len(), total, "run {run}: {} files", files.len());
            assert_eq!(uniques.len(), total, "run {run}: duplicates");
            assert_eq!(counts.messages, total as u64);
        }
        stop.store(true, Ordering::Relaxed);
        mover.join().unwrap();
    }
}
