//! Services of the mail system: their state and the errors of controlling them.
//! [`systemd::Systemd`] drives systemd over D-Bus (the installer and the supervisor use it).

pub mod direct;
pub mod own;
pub mod syslog;
pub mod systemd;

use std::time::Duration;

use chrono::{DateTime, Utc};

/// What systemd reports about one unit (as `systemctl show` would).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitStatus {
    /// `ActiveState`: active, reloading, inactive, failed, activating, deactivating, …
    pub active: String,
    /// `SubState`: running, dead, exited, failed, start, auto-restart, …
    pub sub: String,
    /// `LoadState`: loaded, not-found, bad-setting, error, masked, …
    pub load: String,
    /// `UnitFileState`: enabled, disabled, static, masked, indirect, generated, … or empty.
    pub unit_file: String,
    /// `ActiveEnterTimestamp`: when the unit last became active; `None` if never.
    pub since: Option<DateTime<Utc>>,
    /// `MainPID` of a service; 0 when it has none (or the unit is not a service).
    pub main_pid: u32,
    /// `NRestarts`: automatic restarts of a service; 0 when systemd does not report it.
    pub restarts: u32,
}

impl UnitStatus {
    /// `ActiveState` is "active" (or "reloading", which is active too).
    pub fn is_active(&self) -> bool {
        self.active == "active" || self.active == "reloading"
    }
}

/// Controlling a unit failed. Each message names the operation and the unit(s).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The unit name breaks systemd's rules; nothing was sent.
    #[error("invalid unit name {name:?}: {rule}")]
    InvalidName { name: String, rule: &'static str },
    /// No system bus to talk to.
    #[error(
        "cannot connect to the D-Bus system bus ({source}); is dbus running and is systemd PID 1?"
    )]
    NoSystemBus {
        #[source]
        source: Box<zbus::Error>,
    },
    /// The system bus answers but systemd's manager does not.
    #[error("systemd's manager is not reachable on the system bus ({source}); is systemd PID 1?")]
    NoSystemd {
        #[source]
        source: Box<zbus::Error>,
    },
    /// systemd knows no such unit (or unit file).
    #[error("{op} {unit}: no such unit ({detail})")]
    NoSuchUnit {
        op: &'static str,
        unit: String,
        detail: String,
    },
    /// The job ran but did not end with result "done".
    #[error("{op} {unit}: job failed (result {result:?})")]
    JobFailed {
        op: &'static str,
        unit: String,
        result: String,
    },
    /// The operation (for a job: until it finished) took longer than allowed.
    #[error("{op} {unit}: no answer within {} s", timeout.as_secs())]
    Timeout {
        op: &'static str,
        unit: String,
        timeout: Duration,
    },
    /// systemd refused the request, or the bus failed.
    #[error("{op} {unit}: {source}")]
    Bus {
        op: &'static str,
        unit: String,
        #[source]
        source: Box<zbus::Error>,
    },
}
