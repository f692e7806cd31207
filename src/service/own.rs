//! modobox's own daemons next to the supervisor: the admin web UI/API and the From: header
//! milter. Each is this same executable, started as root only to read the configuration and the
//! secrets, then its own system user with no capability and no_new_privs
//! (`system::privileges::become_user`), under systemd's sandbox (systemd/modobox-*.service) or
//! the direct manager.

use std::path::Path;

use crate::distro::DirectSpec;
use crate::render::context::BINARY_PATH;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnDaemon {
    /// The name the supervisor and `modobox status` show.
    pub name: &'static str,
    /// Its unit (and the direct manager's key).
    pub unit: &'static str,
    /// Its system user and group.
    pub user: &'static str,
    /// The subcommand it runs.
    pub command: &'static str,
}

pub const WEB: OwnDaemon = OwnDaemon {
    name: "web",
    unit: "modobox-web",
    user: "modobox-web",
    command: "web",
};

pub const MILTER: OwnDaemon = OwnDaemon {
    name: "milter",
    unit: "modobox-milter",
    user: "modobox-milter",
    command: "milter",
};

pub const ALL: [OwnDaemon; 2] = [MILTER, WEB];

impl OwnDaemon {
    pub fn by_unit(unit: &str) -> Option<OwnDaemon> {
        ALL.into_iter().find(|d| d.unit == unit)
    }

    /// How the direct manager starts it (it gives root up itself).
    pub fn direct_spec(&self, config_path: &Path) -> DirectSpec {
        DirectSpec {
            command: vec![
                BINARY_PATH.into(),
                "--config".into(),
                config_path.display().to_string(),
                self.command.into(),
                "--user".into(),
                self.user.into(),
            ],
            user: None,
            runtime_dirs: Vec::new(),
            pre: Vec::new(),
            stop_signal: "TERM".into(),
        }
    }
}
