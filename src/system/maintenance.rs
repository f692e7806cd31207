//! The marks an upgrade leaves for the other processes, in `<data>/upgrade/`:
//! - `lock`: held (flock, exclusive) by whoever upgrades or rolls back; `install` and a second
//!   `upgrade` refuse while it is held;
//! - `maintenance`: while it exists *and the lock is held*, web writes answer 503 and the
//!   scheduler pauses its jobs (mail keeps flowing). A killed upgrade releases the lock with
//!   its process, so it can never leave the server read-only.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// `<data>/upgrade`: readable by the web's user (it checks the lock), the journal and the
/// staged binaries inside are root's only.
pub fn dir(data: &Path) -> PathBuf {
    data.join("upgrade")
}

fn lock_path(data: &Path) -> PathBuf {
    dir(data).join("lock")
}

fn flag_path(data: &Path) -> PathBuf {
    dir(data).join("maintenance")
}

/// The upgrade lock, held until dropped.
#[derive(Debug)]
pub struct UpgradeLock {
    _lock: Flock<File>,
}

/// Takes the upgrade lock, or `None` when another process holds it.
pub fn try_lock(data: &Path) -> io::Result<Option<UpgradeLock>> {
    let d = dir(data);
    std::fs::create_dir_all(&d)?;
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755))?;
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o644)
        .open(lock_path(data))?;
    match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(Some(UpgradeLock { _lock: l })),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(io::Error::from(e)),
    }
}

/// Whether some process holds the upgrade lock (read-only: the web's user may ask).
pub fn is_locked(data: &Path) -> bool {
    let Ok(f) = File::open(lock_path(data)) else {
        return false;
    };
    match Flock::lock(f, FlockArg::LockSharedNonblock) {
        Ok(_) => false,
        Err((_, e)) => e == nix::errno::Errno::EWOULDBLOCK,
    }
}

/// Turns maintenance mode on with `message` (shown in the web's banner). Only the lock's holder
/// should call this.
pub fn enter(data: &Path, message: &str) -> io::Result<()> {
    crate::system::fs::write_atomic(&flag_path(data), message.as_bytes(), 0o644, None)
}

pub fn leave(data: &Path) -> io::Result<()> {
    match std::fs::remove_file(flag_path(data)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The maintenance message while an upgrade holds the lock with the flag set; `None` otherwise.
pub fn active(data: &Path) -> Option<String> {
    let text = std::fs::read_to_string(flag_path(data)).ok()?;
    is_locked(data).then(|| text.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_counts_only_while_the_lock_is_held() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path();
        assert!(!is_locked(data));
        let lock = try_lock(data).unwrap().expect("free");
        assert!(is_locked(data));
        assert!(try_lock(data).unwrap().is_none(), "held by the first");
        assert_eq!(active(data), None, "no flag yet");
        enter(data, "upgrading to 0.2.0").unwrap();
        assert_eq!(active(data).as_deref(), Some("upgrading to 0.2.0"));
        drop(lock);
        assert_eq!(active(data), None, "a released lock ends maintenance");
        let again = try_lock(data).unwrap().expect("free again");
        assert!(active(data).is_some());
        leave(data).unwrap();
        leave(data).unwrap();
        assert_eq!(active(data), None);
        drop(again);
    }
}
