//! Appliance images. `image prepare` seals an installed machine so that it can be copied:
//! every per-machine secret and identity is removed and a first-boot unit is enabled;
//! `image firstboot` (run by that unit in each clone) gives the clone its own hostname,
//! keys, passwords and database by running the install again with the clone's settings.

pub mod build;
pub mod firstboot;
pub mod prepare;
pub mod seed;

use std::path::{Path, PathBuf};

use crate::config::Config;

/// Why sealing or a first boot could not go on, in words for the admin.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ImageError(pub String);

macro_rules! image_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for ImageError {
            fn from(e: $t) -> Self {
                ImageError(e.to_string())
            }
        }
    )*};
}
image_error_from!(
    crate::names::NameError,
    crate::config::ConfigError,
    crate::store::StoreError,
    crate::secrets::SecretsError,
    crate::service::ServiceError,
    crate::system::cmd::CmdError,
    crate::install::StepError,
    crate::render::RenderError
);

/// The unit that runs `modobox image firstboot` once per clone.
pub const FIRSTBOOT_UNIT: &str = "modobox-firstboot.service";

/// Present from `image prepare` until a first boot succeeded: the first-boot unit's condition
/// (rather than systemd's ConditionFirstBoot alone, so a failed first boot runs again).
pub fn pending_marker(config: &Config) -> PathBuf {
    config.paths.data.as_path().join("firstboot-pending")
}

/// The preset that keeps systemd's own first-boot `preset-all` from enabling units.
pub const PRESET_FILE: &str = "/etc/systemd/system-preset/00-modobox-image.preset";

/// The clone's first superadmin password and where to log in (mode 0600, root only).
pub const CREDENTIALS_FILE: &str = "/root/modobox-credentials";

/// The console a clone's first boot talks to (a VM's screen or serial line).
pub const CONSOLE: &str = "/dev/console";

/// Whether this process runs as a systemd service (then starting a unit ordered after our own
/// would wait for us: a deadlock).
pub fn under_systemd_unit() -> bool {
    std::env::var_os("INVOCATION_ID").is_some()
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |e| ImageError(format!("{}: {e}", path.display()))
}
