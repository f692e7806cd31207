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

/// Detaches every mount at or below `dir` (deepest first), so that the tree can be removed:
/// a killed mmdebstrap leaves /proc, /sys and /dev/pts mounted in its root. Returns how many.
pub fn detach_mounts_under(dir: &Path) -> io::Result<usize> {
    let dir = match fs::canonicalize(dir) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let table = fs::read_to_string("/proc/self/mountinfo")?;
    let mut points: Vec<std::path::PathBuf> = table
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| std::path::PathBuf::from(unescape_mount_point(p)))
        .filter(|p| p.starts_with(&dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    for p in &points {
        nix::mount::umount2(p.as_path(), nix::mount::MntFlags::MNT_DETACH)
            .map_err(|e| io::Error::other(format!("{}: {e}", p.display())))?;
    }
    Ok(points.len())
}

/// mountinfo writes space, tab, newline and backslash in mount points as octal escapes.
fn unescape_mount_point(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_unescape() {
        assert_eq!(
            unescape_mount_point("/var/tmp/a\\040b/proc"),
            "/var/tmp/a b/proc"
        );
        assert_eq!(unescape_mount_point("/plain"), "/plain");
        assert_eq!(unescape_mount_point("/end\\04"), "/end\\04");
    }

    #[test]
    fn mounts_below_a_directory_are_detached() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: mounting needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("root/proc");
        let deeper = inner.join("x");
        fs::create_dir_all(&inner).unwrap();
        let tmpfs = |p: &Path| {
            nix::mount::mount(
                Some("tmpfs"),
                p,
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            )
            .unwrap()
        };
        tmpfs(&inner);
        fs::create_dir(&deeper).unwrap();
        tmpfs(&deeper);
        assert_eq!(detach_mounts_under(dir.path()).unwrap(), 2);
        assert_eq!(detach_mounts_under(dir.path()).unwrap(), 0);
        fs::remove_dir_all(dir.path().join("root")).unwrap();
        assert_eq!(detach_mounts_under(&dir.path().join("gone")).unwrap(), 0);
    }

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
