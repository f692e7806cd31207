//! File writes that never leave a half-written file: temp file in the same directory, fsync,
//! mode and owner set before the rename, then the directory synced.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Who should own a written file; applied only when running as root and both names exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub user: String,
    pub group: String,
}

/// Resolves `owner` to numeric ids, or `None` when not root or when the user or group does not
/// exist on this system (e.g. rendering into a test root on a machine without OpenDKIM).
pub fn resolve_owner(owner: &Owner) -> Option<(u32, u32)> {
    if uzers::get_effective_uid() != 0 {
        return None;
    }
    let uid = uzers::get_user_by_name(&owner.user)?.uid();
    let gid = uzers::get_group_by_name(&owner.group)?.gid();
    Some((uid, gid))
}

pub fn write_atomic(
    path: &Path,
    content: &[u8],
    mode: u32,
    owner: Option<&Owner>,
) -> io::Result<()> {
    write_atomic_with(path, mode, owner, |f| f.write_all(content))
}

/// `write_atomic` of another file's content, streamed (a binary of hundreds of MB is never
/// held in memory).
pub fn copy_atomic(source: &Path, path: &Path, mode: u32) -> io::Result<()> {
    let mut from = File::open(source)?;
    write_atomic_with(path, mode, None, |f| io::copy(&mut from, f).map(|_| ()))
}

/// Whether two files hold the same bytes, read in chunks.
pub fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    use std::io::Read;
    let (mut fa, mut fb) = (File::open(a)?, File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

fn write_atomic_with(
    path: &Path,
    mode: u32,
    owner: Option<&Owner>,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = path.parent().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a file path needs a parent directory",
        )
    })?;
    fs::create_dir_all(dir)?;
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "a file path needs a file name")
    })?;
    let tmp = dir.join(format!(
        ".{}.modobox-{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        // A leftover from a killed run would make create_new fail: it is ours, remove it.
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        fill(&mut f)?;
        // The umask may have narrowed the mode given to open.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        if let Some((uid, gid)) = owner.and_then(resolve_owner) {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        }
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_with_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/secret.conf");
        write_atomic(&p, b"x = 1\n", 0o600, None).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "x = 1\n");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        write_atomic(&p, b"x = 2\n", 0o640, None).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let names: Vec<_> = fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn copies_stream_and_compare() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b/c"));
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(&a, &big).unwrap();
        copy_atomic(&a, &b, 0o755).unwrap();
        assert!(same_content(&a, &b).unwrap());
        assert_eq!(
            fs::metadata(&b).unwrap().permissions().mode() & 0o777,
            0o755
        );
        let mut changed = big.clone();
        changed[2_500_000] ^= 1;
        fs::write(&b, &changed).unwrap();
        assert!(!same_content(&a, &b).unwrap());
        fs::write(&b, &big[..10]).unwrap();
        assert!(!same_content(&a, &b).unwrap());
    }
}
