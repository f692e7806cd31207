//! systemd over D-Bus (the system bus), on the tokio runtime.
//!
//! Jobs (start, stop, restart, …) are submitted with mode "replace" and awaited: the manager's
//! `JobRemoved` signal is subscribed to *before* the job is submitted, so a job that finishes at
//! once is not missed, and the signal carrying the returned job path must report "done".
//!
//! systemd-zbus types some strings as enums that lack values newer systemd versions send
//! (`UnitFileState` "alias"/"generated"/"transient", `ActiveState` "refreshing", change types such
//! as "destination not present"). Those calls are made here with plain strings instead.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use systemd_zbus::{ManagerProxy, Mode};
use zbus::zvariant::{OwnedObjectPath, OwnedValue};
use zbus::DBusError;

use super::{ServiceError, UnitStatus};

/// How long an operation (a job: until it has finished) may take unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(90);

const DESTINATION: &str = "org.freedesktop.systemd1";
const UNIT_IFACE: &str = "org.freedesktop.systemd1.Unit";
const SERVICE_IFACE: &str = "org.freedesktop.systemd1.Service";
const PROPERTIES_IFACE: &str = "org.freedesktop.DBus.Properties";

/// The longest unit name systemd accepts (UNIT_NAME_MAX less the NUL).
const UNIT_NAME_MAX: usize = 255;
/// Suffixes that make a name a unit name already; anything else gets ".service" appended.
const UNIT_TYPES: &[&str] = &[
    "service",
    "socket",
    "target",
    "timer",
    "path",
    "mount",
    "automount",
    "swap",
    "device",
    "slice",
    "scope",
];

/// A connection to systemd's manager on the system bus.
#[derive(Debug, Clone)]
pub struct Systemd {
    conn: zbus::Connection,
    manager: ManagerProxy<'static>,
    timeout: Duration,
}

#[derive(Debug, Clone, Copy)]
enum Job {
    Start,
    Stop,
    Restart,
    Reload,
    TryRestart,
    ReloadOrRestart,
}

impl Job {
    fn op(self) -> &'static str {
        match self {
            Job::Start => "start",
            Job::Stop => "stop",
            Job::Restart => "restart",
            Job::Reload => "reload",
            Job::TryRestart => "try-restart",
            Job::ReloadOrRestart => "reload-or-restart",
        }
    }
}

impl Systemd {
    /// Connects to the system bus and subscribes to the manager's signals.
    /// Fails with [`ServiceError::NoSystemBus`] or [`ServiceError::NoSystemd`] when there is no
    /// bus or no systemd on it.
    pub async fn connect() -> Result<Self, ServiceError> {
        let connecting = async {
            let conn =
                zbus::Connection::system()
                    .await
                    .map_err(|source| ServiceError::NoSystemBus {
                        source: Box::new(source),
                    })?;
            let manager =
                ManagerProxy::new(&conn)
                    .await
                    .map_err(|source| ServiceError::NoSystemd {
                        source: Box::new(source),
                    })?;
            // Without a subscriber systemd may not emit JobRemoved.
            manager
                .subscribe()
                .await
                .map_err(|source| ServiceError::NoSystemd {
                    source: Box::new(source),
                })?;
            Ok(Systemd {
                conn,
                manager,
                timeout: DEFAULT_TIMEOUT,
            })
        };
        match tokio::time::timeout(DEFAULT_TIMEOUT, connecting).await {
            Ok(r) => r,
            Err(_) => Err(ServiceError::Timeout {
                op: "connect",
                unit: "systemd".into(),
                timeout: DEFAULT_TIMEOUT,
            }),
        }
    }

    /// The same connection with another limit for each operation (default [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The limit for each operation.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// `systemctl start`, waiting for the job to finish.
    pub async fn start(&self, unit: &str) -> Result<(), ServiceError> {
        self.job(Job::Start, unit).await
    }

    /// `systemctl stop`, waiting for the job to finish.
    pub async fn stop(&self, unit: &str) -> Result<(), ServiceError> {
        self.job(Job::Stop, unit).await
    }

    /// `systemctl restart` (starts a stopped unit), waiting for the job to finish.
    pub async fn restart(&self, unit: &str) -> Result<(), ServiceError> {
        self.job(Job::Restart, unit).await
    }

    /// `systemctl reload`, waiting for the job to finish. systemd refuses it for inactive units.
    pub async fn reload(&self, unit: &str) -> Result<(), ServiceError> {
        self.job(Job::Reload, unit).await
    }

    /// `systemctl try-restart`: restarts the unit only if it is running.
    pub async fn try_restart(&self, unit: &str) -> Result<(), ServiceError> {
        self.job(Job::TryRestart, unit).await
    }

    /// `systemctl reload-or-restart`: reloads if the unit supports it, else restarts; starts it
    /// when stopped.
    pub async fn reload_or_restart(&self, unit: &str) -> Result<(), ServiceError> {
        self.job(Job::ReloadOrRestart, unit).await
    }

    /// `systemctl enable` (not `--now`, not `--runtime`, not `--force`). Returns whether a
    /// symlink was created or removed; systemd's configuration is then reloaded.
    pub async fn enable(&self, units: &[&str]) -> Result<bool, ServiceError> {
        self.unit_files("enable", units).await
    }

    /// `systemctl disable` (not `--now`): the units no longer start at boot. Returns whether a
    /// symlink was removed; systemd's configuration is then reloaded.
    pub async fn disable(&self, units: &[&str]) -> Result<bool, ServiceError> {
        self.unit_files("disable", units).await
    }

    async fn unit_files(&self, op: &'static str, units: &[&str]) -> Result<bool, ServiceError> {
        let names = units
            .iter()
            .map(|u| unit_name(u))
            .collect::<Result<Vec<_>, _>>()?;
        if names.is_empty() {
            return Ok(false);
        }
        let label = names.join(" ");
        let files: Vec<&str> = names.iter().map(String::as_str).collect();
        let changes: Vec<(String, String, String)> = if op == "enable" {
            let (install_info, changes): (bool, Vec<(String, String, String)>) = self
                .bounded(op, &label, async {
                    self.manager
                        .inner()
                        .call("EnableUnitFiles", &(files, false, false))
                        .await
                        .map_err(|e| failed(op, &label, e))
                })
                .await?;
            if !install_info && changes.is_empty() {
                tracing::warn!(units = %label, "enable: no [Install] section, nothing to enable");
            }
            changes
        } else {
            self.bounded(op, &label, async {
                self.manager
                    .inner()
                    .call("DisableUnitFiles", &(files, false))
                    .await
                    .map_err(|e| failed(op, &label, e))
            })
            .await?
        };
        for (kind, from, to) in &changes {
            tracing::debug!(units = %label, "{op}: {kind} {from} -> {to}");
        }
        let changed = !changes.is_empty();
        if changed {
            self.daemon_reload().await?;
        }
        Ok(changed)
    }

    /// `systemctl is-enabled`: the unit file state (enabled, disabled, static, masked, indirect,
    /// alias, generated, …). A unit without a unit file is [`ServiceError::NoSuchUnit`].
    pub async fn is_enabled(&self, unit: &str) -> Result<String, ServiceError> {
        let name = unit_name(unit)?;
        self.bounded("is-enabled", &name, async {
            self.manager
                .inner()
                .call("GetUnitFileState", &(name.as_str(),))
                .await
                .map_err(|e| failed("is-enabled", &name, e))
        })
        .await
    }

    /// `systemctl daemon-reload`; returns once systemd has reloaded.
    pub async fn daemon_reload(&self) -> Result<(), ServiceError> {
        self.bounded("daemon-reload", "systemd", async {
            self.manager
                .reload()
                .await
                .map_err(|e| failed("daemon-reload", "systemd", e))
        })
        .await
    }

    /// The unit's state. A unit systemd cannot find is no error: its `load` is "not-found".
    pub async fn status(&self, unit: &str) -> Result<UnitStatus, ServiceError> {
        let name = unit_name(unit)?;
        self.bounded("status", &name, async {
            let path = self
                .manager
                .load_unit(&name)
                .await
                .map_err(|e| failed("status", &name, e))?;
            let mut u = self
                .properties(&path, UNIT_IFACE)
                .await
                .map_err(|e| failed("status", &name, e))?;
            let mut s = if name.ends_with(".service") {
                self.properties(&path, SERVICE_IFACE)
                    .await
                    .map_err(|e| failed("status", &name, e))?
            } else {
                HashMap::new()
            };
            let since = take_u64(&mut u, "ActiveEnterTimestamp")
                .and_then(|us| i64::try_from(us).ok())
                .filter(|us| *us > 0)
                .and_then(DateTime::<Utc>::from_timestamp_micros);
            Ok(UnitStatus {
                active: take_string(&mut u, "ActiveState"),
                sub: take_string(&mut u, "SubState"),
                load: take_string(&mut u, "LoadState"),
                unit_file: take_string(&mut u, "UnitFileState"),
                since,
                main_pid: take_u32(&mut s, "MainPID").unwrap_or(0),
                restarts: take_u32(&mut s, "NRestarts").unwrap_or(0),
            })
        })
        .await
    }

    /// `systemctl reset-failed UNIT`. A unit that is not loaded has nothing to reset: `Ok`.
    pub async fn reset_failed(&self, unit: &str) -> Result<(), ServiceError> {
        let name = unit_name(unit)?;
        self.bounded("reset-failed", &name, async {
            match self.manager.reset_failed_unit(&name).await {
                Ok(()) => Ok(()),
                Err(e) => match failed("reset-failed", &name, e) {
                    ServiceError::NoSuchUnit { .. } => Ok(()),
                    other => Err(other),
                },
            }
        })
        .await
    }

    /// Submits a job for `unit` and waits until systemd removes it; its result must be "done".
    async fn job(&self, job: Job, unit: &str) -> Result<(), ServiceError> {
        let op = job.op();
        let name = unit_name(unit)?;
        self.bounded(op, &name, async {
            // Subscribe first: the job may finish before its path comes back to us.
            let mut removed = self
                .manager
                .receive_job_removed()
                .await
                .map_err(|e| failed(op, &name, e))?;
            let submitted = match job {
                Job::Start => self.manager.start_unit(&name, Mode::Replace).await,
                Job::Stop => self.manager.stop_unit(&name, Mode::Replace).await,
                Job::Restart => self.manager.restart_unit(&name, Mode::Replace).await,
                Job::Reload => self.manager.reload_unit(&name, Mode::Replace).await,
                Job::TryRestart => self.manager.try_restart_unit(&name, Mode::Replace).await,
                Job::ReloadOrRestart => {
                    self.manager
                        .reload_or_restart_unit(&name, Mode::Replace)
                        .await
                }
            };
            let path = submitted.map_err(|e| failed(op, &name, e))?;
            while let Some(signal) = removed.next().await {
                let args = signal.args().map_err(|e| failed(op, &name, e))?;
                if args.job.as_str() != path.as_str() {
                    continue;
                }
                return if args.result == "done" {
                    Ok(())
                } else {
                    Err(ServiceError::JobFailed {
                        op,
                        unit: name.clone(),
                        result: args.result.to_string(),
                    })
                };
            }
            Err(ServiceError::Bus {
                op,
                unit: name.clone(),
                source: Box::new(zbus::Error::Failure(format!(
                    "the bus connection ended before job {} finished",
                    path.as_str()
                ))),
            })
        })
        .await
    }

    /// All properties of one interface of the object at `path`.
    async fn properties(
        &self,
        path: &OwnedObjectPath,
        interface: &str,
    ) -> zbus::Result<HashMap<String, OwnedValue>> {
        let reply = self
            .conn
            .call_method(
                Some(DESTINATION),
                path.as_str(),
                Some(PROPERTIES_IFACE),
                "GetAll",
                &(interface,),
            )
            .await?;
        reply.body().deserialize()
    }

    async fn bounded<T>(
        &self,
        op: &'static str,
        unit: &str,
        work: impl Future<Output = Result<T, ServiceError>>,
    ) -> Result<T, ServiceError> {
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(ServiceError::Timeout {
                op,
                unit: unit.to_string(),
                timeout: self.timeout,
            }),
        }
    }
}

/// The full unit name for `unit`: ".service" is appended unless it ends in a unit type suffix
/// (so "dovecot" and "php8.2-fpm" are services). Names with characters systemd does not allow,
/// empty ones and ones longer than 255 characters are refused.
pub fn unit_name(unit: &str) -> Result<String, ServiceError> {
    let invalid = |rule| ServiceError::InvalidName {
        name: unit.to_string(),
        rule,
    };
    if unit.is_empty() {
        return Err(invalid("a unit name must not be empty"));
    }
    if !unit
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ":-_.@\\".contains(c))
    {
        return Err(invalid(
            "a unit name may only contain ASCII letters, digits and the characters :-_.@\\",
        ));
    }
    let typed = unit
        .rsplit_once('.')
        .is_some_and(|(stem, suffix)| !stem.is_empty() && UNIT_TYPES.contains(&suffix));
    let name = if typed {
        unit.to_string()
    } else {
        format!("{unit}.service")
    };
    if name.len() > UNIT_NAME_MAX {
        return Err(invalid(
            "a unit name must be at most 255 characters long (with its suffix)",
        ));
    }
    Ok(name)
}

/// The D-Bus error name and its message, when the error is one systemd (or the bus) replied.
fn error_parts(e: &zbus::Error) -> Option<(String, String)> {
    match e {
        zbus::Error::MethodError(name, detail, _) => Some((
            name.as_str().to_string(),
            detail.clone().unwrap_or_default(),
        )),
        zbus::Error::FDO(fdo) => Some((
            fdo.name().as_str().to_string(),
            fdo.description().unwrap_or_default().to_string(),
        )),
        _ => None,
    }
}

/// Sorts a failed call into the error a caller can act on.
fn failed(op: &'static str, unit: &str, e: zbus::Error) -> ServiceError {
    match error_parts(&e) {
        Some((name, detail))
            if name == "org.freedesktop.systemd1.NoSuchUnit"
                || name == "org.freedesktop.DBus.Error.FileNotFound" =>
        {
            ServiceError::NoSuchUnit {
                op,
                unit: unit.to_string(),
                detail,
            }
        }
        Some((name, _))
            if name == "org.freedesktop.DBus.Error.ServiceUnknown"
                || name == "org.freedesktop.DBus.Error.NameHasNoOwner" =>
        {
            ServiceError::NoSystemd {
                source: Box::new(e),
            }
        }
        _ => ServiceError::Bus {
            op,
            unit: unit.to_string(),
            source: Box::new(e),
        },
    }
}

fn take_string(props: &mut HashMap<String, OwnedValue>, key: &str) -> String {
    props
        .remove(key)
        .and_then(|v| String::try_from(v).ok())
        .unwrap_or_default()
}

fn take_u64(props: &mut HashMap<String, OwnedValue>, key: &str) -> Option<u64> {
    props.remove(key).and_then(|v| u64::try_from(v).ok())
}

fn take_u32(props: &mut HashMap<String, OwnedValue>, key: &str) -> Option<u32> {
    props.remove(key).and_then(|v| u32::try_from(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names() {
        assert_eq!(unit_name("dovecot").unwrap(), "dovecot.service");
        assert_eq!(unit_name("postfix@-").unwrap(), "postfix@-.service");
        assert_eq!(unit_name("php8.2-fpm").unwrap(), "php8.2-fpm.service");
        assert_eq!(unit_name("mail.target").unwrap(), "mail.target");
        assert_eq!(unit_name("x.service").unwrap(), "x.service");
        assert_eq!(
            unit_name("dev-disk-by\\x2dlabel.device").unwrap(),
            "dev-disk-by\\x2dlabel.device"
        );
        for bad in ["", "a b", "a/b", "../x", "é", "x;y", "x\n"] {
            let err = unit_name(bad).unwrap_err().to_string();
            assert!(err.contains("invalid unit name"), "{bad:?}: {err}");
        }
        assert!(unit_name(&"a".repeat(247)).is_ok());
        let err = unit_name(&"a".repeat(248)).unwrap_err().to_string();
        assert!(err.contains("255"), "{err}");
    }
}
