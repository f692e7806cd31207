//! Giving root up for good. modobox's own daemons (the web UI, the milter) start as root only to
//! read the configuration and the secrets (`/etc/modobox` is root's), then become their own user
//! with no capability left in any set and no_new_privs, before they accept a connection.
//! (systemd's LoadCredential would hand them the files instead, but it needs a credentials
//! file system some containers cannot mount; this works under any manager.)

use caps::CapSet;
use nix::unistd::{Gid, Uid};

/// Becomes `name` (uid, primary group, no supplementary group) when running as root; when
/// already running as `name`, only takes no_new_privs. Anything else is refused.
pub fn become_user(name: &str) -> Result<(), String> {
    let u = uzers::get_user_by_name(name)
        .ok_or_else(|| format!("--user {name}: no such user (`modobox install` creates it)"))?;
    if u.uid() == 0 {
        return Err(format!("--user {name}: that is root"));
    }
    let (uid, gid) = (Uid::from_raw(u.uid()), Gid::from_raw(u.primary_group_id()));
    let me = nix::unistd::geteuid();
    if me.is_root() {
        // The bounding set first: dropping from it needs CAP_SETPCAP, which goes with the uid.
        for cap in caps::all() {
            if caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
                caps::drop(None, CapSet::Bounding, cap).map_err(|e| format!("{cap}: {e}"))?;
            }
        }
        caps::clear(None, CapSet::Ambient).map_err(|e| e.to_string())?;
        caps::clear(None, CapSet::Inheritable).map_err(|e| e.to_string())?;
        nix::unistd::setgroups(&[gid]).map_err(|e| format!("setgroups: {e}"))?;
        nix::unistd::setresgid(gid, gid, gid).map_err(|e| format!("setresgid: {e}"))?;
        // Leaving uid 0 clears the permitted and effective sets.
        nix::unistd::setresuid(uid, uid, uid).map_err(|e| format!("setresuid: {e}"))?;
    } else if me != uid {
        return Err(format!(
            "--user {name}: running as uid {me}, neither root nor {name}"
        ));
    }
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("no_new_privs: {e}"))?;
    let sets: &[CapSet] = if me.is_root() {
        &[CapSet::Permitted, CapSet::Effective, CapSet::Bounding]
    } else {
        &[CapSet::Permitted, CapSet::Effective]
    };
    for &set in sets {
        let left = caps::read(None, set).map_err(|e| e.to_string())?;
        if !left.is_empty() {
            return Err(format!("capabilities left in the {set:?} set: {left:?}"));
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
        assert!(become_user("root").unwrap_err().contains("that is root"));
        assert!(become_user("no-such-user-modobox")
            .unwrap_err()
            .contains("no such user"));
        assert_eq!(
            nix::unistd::geteuid().is_root(),
            uzers::get_effective_uid() == 0
        );
    }
}
