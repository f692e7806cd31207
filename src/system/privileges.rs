//! Giving root up for good. modobox's own daemons (the web UI, the milter) start as root only to
//! read the configuration and the secrets (`/etc/modobox` is root's), then become their own user
//! with no capability left in any set and no_new_privs, before they accept a connection.
//! (systemd's LoadCredential would hand them the files instead, but it needs a credentials
//! file system some containers cannot mount; this works under any manager.)

use caps::errors::CapsError;
use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{Gid, Uid};

/// Why `--user` could not be taken on. Every message starts with what failed.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("--user {name}: no such user (`modobox install` creates it)")]
    NoSuchUser { name: String },
    #[error("--user {name}: that is root")]
    Root { name: String },
    #[error("--user {name}: running as uid {uid}, neither root nor {name}")]
    OtherUser { name: String, uid: Uid },
    /// One capability could not be dropped from the bounding set.
    #[error("{cap}: {source}")]
    Drop {
        cap: Capability,
        #[source]
        source: CapsError,
    },
    /// Reading or clearing a capability set failed.
    #[error(transparent)]
    Caps(#[from] CapsError),
    /// A system call of the switch (`setgroups`, `setresgid`, `setresuid`, `no_new_privs`).
    #[error("{call}: {source}")]
    Syscall {
        call: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("capabilities left in the {set:?} set: {left:?}")]
    Left { set: CapSet, left: CapsHashSet },
}

fn syscall(call: &'static str) -> impl FnOnce(nix::Error) -> PrivilegeError {
    move |source| PrivilegeError::Syscall { call, source }
}

/// Becomes `name` (uid, primary group, no supplementary group) when running as root; when
/// already running as `name`, only takes no_new_privs. Anything else is refused.
pub fn become_user(name: &str) -> Result<(), PrivilegeError> {
    let u = uzers::get_user_by_name(name).ok_or_else(|| PrivilegeError::NoSuchUser {
        name: name.to_string(),
    })?;
    if u.uid() == 0 {
        return Err(PrivilegeError::Root {
            name: name.to_string(),
        });
    }
    let (uid, gid) = (Uid::from_raw(u.uid()), Gid::from_raw(u.primary_group_id()));
    let me = nix::unistd::geteuid();
    if me.is_root() {
        // The bounding set first: dropping from it needs CAP_SETPCAP, which goes with the uid.
        for cap in caps::all() {
            if caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
                caps::drop(None, CapSet::Bounding, cap)
                    .map_err(|source| PrivilegeError::Drop { cap, source })?;
            }
        }
        caps::clear(None, CapSet::Ambient)?;
        caps::clear(None, CapSet::Inheritable)?;
        nix::unistd::setgroups(&[gid]).map_err(syscall("setgroups"))?;
        nix::unistd::setresgid(gid, gid, gid).map_err(syscall("setresgid"))?;
        // Leaving uid 0 clears the permitted and effective sets.
        nix::unistd::setresuid(uid, uid, uid).map_err(syscall("setresuid"))?;
    } else if me != uid {
        return Err(PrivilegeError::OtherUser {
            name: name.to_string(),
            uid: me,
        });
    }
    nix::sys::prctl::set_no_new_privs().map_err(syscall("no_new_privs"))?;
    let sets: &[CapSet] = if me.is_root() {
        &[CapSet::Permitted, CapSet::Effective, CapSet::Bounding]
    } else {
        &[CapSet::Permitted, CapSet::Effective]
    };
    for &set in sets {
        let left = caps::read(None, set)?;
        if !left.is_empty() {
            return Err(PrivilegeError::Left { set, left });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The refusals (the drop itself is proven on the installed server: tests/e2e/privcheck.sh).
    #[test]
    fn root_and_unknown_users_are_refused_before_anything_changes() {
        assert!(become_user("root")
            .unwrap_err()
            .to_string()
            .contains("that is root"));
        assert!(become_user("no-such-user-modobox")
            .unwrap_err()
            .to_string()
            .contains("no such user"));
        assert_eq!(
            nix::unistd::geteuid().is_root(),
            uzers::get_effective_uid() == 0
        );
    }
}
