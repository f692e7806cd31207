//! `manifest.json`, the table of contents of a backup: versions (modobox, schema, distribution),
//! counts per domain and mailbox, and a SHA-256 for every file, so a restore (or `verify`) can
//! prove it got back exactly what was saved. Hashing 200,000 messages on every run would make
//! incremental backups slow, so the digests of message files (immutable in Maildir) are
//! remembered by inode, size and modification time between runs.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, ErrorKind, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::BackupError;

pub const FILE_NAME: &str = "manifest.json";
/// Bumped when the layout of a backup changes in a way older restores cannot read.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub created: String,
    pub hostname: String,
    pub modobox_version: String,
    /// The highest applied migration.
    pub schema_version: i32,
    /// `debian:12`, ...
    pub distro: String,
    /// postgres | mysql | sqlite: how `database/` was dumped.
    pub engine: String,
    pub domains: BTreeMap<String, DomainCounts>,
    /// By address.
    pub mailboxes: BTreeMap<String, MailboxEntry>,
    /// Every file of the backup but this manifest, by path relative to the backup root.
    pub files: BTreeMap<String, FileEntry>,
    /// `user:group` of every entry under `files/` (directories too), by path relative to the
    /// backup root: another machine gives the same users other uids. Missing in backups made
    /// before it was recorded (then the numbers restic kept are used).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub owners: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainCounts {
    pub mailboxes: u64,
    pub aliases: u64,
    pub domain_aliases: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxEntry {
    pub messages: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub size: u64,
    pub sha256: String,
}

/// `user:group` names of every entry under `root/sub` (the entry itself included), keyed by
/// path relative to `root`; ids without a name here are left out.
pub fn owner_names(root: &Path, sub: &str) -> Result<BTreeMap<String, String>, BackupError> {
    fn walk(
        root: &Path,
        path: &Path,
        out: &mut BTreeMap<String, String>,
    ) -> Result<(), BackupError> {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(super::io(path)(e)),
        };
        let user = uzers::get_user_by_uid(meta.uid());
        let group = uzers::get_group_by_gid(meta.gid());
        if let (Some(u), Some(g), Ok(rel)) = (user, group, path.strip_prefix(root)) {
            out.insert(
                rel.to_string_lossy().into_owned(),
                format!(
                    "{}:{}",
                    u.name().to_string_lossy(),
                    g.name().to_string_lossy()
                ),
            );
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(path)
                .map_err(super::io(path))?
                .filter_map(Result::ok)
            {
                walk(root, &entry.path(), out)?;
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(root, &root.join(sub), &mut out)?;
    Ok(out)
}

impl Manifest {
    pub fn total_messages(&self) -> u64 {
        self.mailboxes.values().map(|m| m.messages).sum()
    }
    pub fn total_bytes(&self) -> u64 {
        self.files.values().map(|f| f.size).sum()
    }

    pub fn read(root: &Path) -> Result<Manifest, BackupError> {
        let path = root.join(FILE_NAME);
        let text = std::fs::read(&path).map_err(super::io(&path))?;
        serde_json::from_slice(&text).map_err(|e| BackupError::Manifest(e.to_string()))
    }

    pub fn write(&self, root: &Path) -> Result<(), BackupError> {
        let path = root.join(FILE_NAME);
        let text =
            serde_json::to_vec_pretty(self).map_err(|e| BackupError::Manifest(e.to_string()))?;
        std::fs::write(&path, text).map_err(super::io(&path))
    }
}

/// Digests remembered from the previous run: `inode size mtime_ns sha256` per line.
#[derive(Debug)]
pub struct DigestCache {
    known: HashMap<Key, String>,
    /// The digests this run used (shared by the threads that walk the mailboxes).
    used: Mutex<Vec<(Key, String)>>,
    started: SystemTime,
}

/// inode, size, modification time in nanoseconds.
type Key = (u64, u64, i64);

impl Default for DigestCache {
    fn default() -> Self {
        DigestCache::new(HashMap::new())
    }
}

impl DigestCache {
    fn new(known: HashMap<Key, String>) -> Self {
        DigestCache {
            known,
            used: Mutex::new(Vec::new()),
            started: SystemTime::now(),
        }
    }

    /// A missing or unreadable cache is an empty one: it only saves time.
    pub fn load(path: &Path) -> DigestCache {
        let mut known = HashMap::new();
        if let Ok(f) = std::fs::File::open(path) {
            for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
                let mut parts = line.split(' ');
                let (Some(ino), Some(size), Some(mtime), Some(sha), None) = (
                    parts.next().and_then(|p| p.parse().ok()),
                    parts.next().and_then(|p| p.parse().ok()),
                    parts.next().and_then(|p| p.parse().ok()),
                    parts.next(),
                    parts.next(),
                ) else {
                    continue;
                };
                if sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                    known.insert((ino, size, mtime), sha.to_string());
                }
            }
        }
        DigestCache::new(known)
    }

    /// Keeps only the digests of this run's files (deleted mail drops out).
    pub fn save(&self, path: &Path) -> Result<(), BackupError> {
        let mut used =
            std::mem::take(&mut *self.used.lock().unwrap_or_else(PoisonError::into_inner));
        used.sort_unstable();
        used.dedup();
        let mut out = Vec::with_capacity(used.len() * 100);
        for ((ino, size, mtime), sha) in &used {
            let _ = writeln!(out, "{ino} {size} {mtime} {sha}");
        }
        crate::system::fs::write_atomic(path, &out, 0o600, None).map_err(super::io(path))
    }

    fn digest(&self, path: &Path, meta: &std::fs::Metadata) -> Result<String, BackupError> {
        let key = (
            meta.ino(),
            meta.size(),
            meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        );
        let sha = match self.known.get(&key) {
            Some(sha) => sha.clone(),
            None => sha256_file(path)?,
        };
        // A file written in the last moments could be rewritten within the same clock tick,
        // same size, same inode: its digest is not remembered until it has settled.
        if super::settled((meta.mtime(), meta.mtime_nsec()), self.started) {
            self.used
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((key, sha.clone()));
        }
        Ok(sha)
    }
}

pub fn sha256_file(path: &Path) -> Result<String, BackupError> {
    let mut f = std::fs::File::open(path).map_err(super::io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(super::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The size and digest of every regular file under `start` (`root` or a directory in it;
/// symbolic links are recorded by their target's text), by path relative to `root`.
pub fn digest_tree(
    root: &Path,
    start: &Path,
    cache: &DigestCache,
) -> Result<BTreeMap<String, FileEntry>, BackupError> {
    let mut out = BTreeMap::new();
    let mut stack: Vec<PathBuf> = vec![start.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound && dir == start => continue,
            Err(e) => return Err(super::io(&dir)(e)),
        };
        for entry in rd.filter_map(Result::ok) {
            let path = entry.path();
            // Relative to the open directory: no walk down the whole path for every file.
            let meta = entry.metadata().map_err(super::io(&path))?;
            let Ok(rel) = path.strip_prefix(root) else {
                continue;
            };
            let rel = rel.to_string_lossy().into_owned();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).map_err(super::io(&path))?;
                let text = target.to_string_lossy();
                out.insert(
                    rel,
                    FileEntry {
                        size: text.len() as u64,
                        sha256: hex(&Sha256::digest(text.as_bytes())),
                    },
                );
            } else if meta.is_file() && rel != FILE_NAME {
                let sha256 = cache.digest(&path, &meta)?;
                out.insert(
                    rel,
                    FileEntry {
                        size: meta.size(),
                        sha256,
                    },
                );
            }
        }
    }
    Ok(out)
}

/// The files of `root` whose digest differs from the manifest's, or that are missing: empty
/// when the tree is exactly what was saved. Only the paths for which `wanted` is true; the
/// files are hashed on all cores.
pub fn compare(
    manifest: &Manifest,
    root: &Path,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<String>, BackupError> {
    let entries: Vec<(&String, &FileEntry)> =
        manifest.files.iter().filter(|(p, _)| wanted(p)).collect();
    let problems = crate::system::parallel::try_map(&entries, |(rel, entry)| {
        let path = root.join(rel);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            return Ok::<_, BackupError>(Some(format!("{rel}: missing")));
        };
        let sha = if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).map_err(super::io(&path))?;
            hex(&Sha256::digest(target.to_string_lossy().as_bytes()))
        } else if meta.len() != entry.size {
            String::new()
        } else {
            sha256_file(&path)?
        };
        Ok((sha != entry.sha256).then(|| format!("{rel}: content differs")))
    })?;
    Ok(problems.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_remembered_by_inode_and_rechecked_after_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/msg"), "hello").unwrap();
        crate::backup::set_mtime(&root.join("a/b/msg"), 1_700_000_000);
        std::fs::write(root.join("a/fresh"), "just written").unwrap();
        std::os::unix::fs::symlink("b/msg", root.join("a/link")).unwrap();
        let cache_path = dir.path().join("cache");
        let cache = DigestCache::load(&cache_path);
        let files = digest_tree(&root, &root, &cache).unwrap();
        assert_eq!(
            files["a/b/msg"].sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(files["a/link"].size, 5);
        assert_eq!(files.len(), 3);
        cache.save(&cache_path).unwrap();
        // A remembered digest is used as long as inode, size and mtime match; a file modified
        // in the last seconds is not remembered (it could change again within the same tick).
        let mut cache = DigestCache::load(&cache_path);
        assert_eq!(cache.known.len(), 1);
        let key = *cache.known.keys().next().unwrap();
        cache.known.insert(key, "0".repeat(64));
        let files = digest_tree(&root, &root.join("a/b"), &cache).unwrap();
        assert_eq!(files["a/b/msg"].sha256, "0".repeat(64));
        assert_eq!(files.len(), 1, "only the tree asked for: {files:?}");
        // A rewritten file (new size) is hashed again.
        std::fs::write(root.join("a/b/msg"), "hello!").unwrap();
        let cache = DigestCache::load(&cache_path);
        assert_ne!(
            digest_tree(&root, &root, &cache).unwrap()["a/b/msg"].sha256,
            "0".repeat(64)
        );
    }

    #[test]
    fn owners_are_recorded_by_name_for_every_server_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("files/etc/modobox")).unwrap();
        std::fs::write(root.join("files/etc/modobox/modobox.toml"), "").unwrap();
        std::fs::create_dir_all(root.join("mail/x")).unwrap();
        let me = uzers::get_user_by_uid(uzers::get_current_uid()).unwrap();
        let group = uzers::get_group_by_gid(uzers::get_current_gid()).unwrap();
        let names = format!(
            "{}:{}",
            me.name().to_string_lossy(),
            group.name().to_string_lossy()
        );
        let owners = owner_names(root, "files").unwrap();
        let keys: Vec<&str> = owners.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "files",
                "files/etc",
                "files/etc/modobox",
                "files/etc/modobox/modobox.toml"
            ]
        );
        assert!(owners.values().all(|v| *v == names));
        assert!(owner_names(root, "none").unwrap().is_empty());
    }

    #[test]
    fn compare_names_missing_and_changed_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("one"), "1").unwrap();
        std::fs::write(root.join("two"), "2").unwrap();
        let cache = DigestCache::default();
        let manifest = Manifest {
            format: FORMAT,
            created: String::new(),
            hostname: "mail.example.test".into(),
            modobox_version: "0".into(),
            schema_version: 1,
            distro: "debian:12".into(),
            engine: "sqlite".into(),
            domains: BTreeMap::new(),
            mailboxes: BTreeMap::new(),
            files: digest_tree(root, root, &cache).unwrap(),
            owners: BTreeMap::new(),
        };
        assert!(compare(&manifest, root, |_| true).unwrap().is_empty());
        std::fs::write(root.join("one"), "x").unwrap();
        std::fs::remove_file(root.join("two")).unwrap();
        assert_eq!(
            compare(&manifest, root, |_| true).unwrap(),
            ["one: content differs", "two: missing"]
        );
        assert_eq!(
            compare(&manifest, root, |p| p == "two").unwrap(),
            ["two: missing"]
        );
    }
}
