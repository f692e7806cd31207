//! `modobox status`: a line per service (unit state, live probe, uptime, restarts), the host
//! checks, the recent supervisor events and the last run of each periodic job.

use chrono::{DateTime, Utc};
use serde::Serialize;

use std::collections::BTreeMap;

use super::daemon::{DIRECT_STATE, PROBE_TIMEOUT};
use super::{probe_of_version, watched};
use crate::config::Config;
use crate::distro::Distro;
use crate::health::checks::{self, Check, Level};
use crate::health::published::{write_snapshot, SNAPSHOT};
use crate::service::direct::Snapshot;
use crate::service::systemd::Systemd;
use crate::store::{events, tasks, Store, StoreError};

#[derive(Debug, Serialize)]
pub struct ServiceLine {
    pub service: &'static str,
    pub unit: String,
    pub state: String,
    pub probe: String,
    pub healthy: bool,
    pub since: Option<DateTime<Utc>>,
    /// Restarts by the supervisor in the last 24 hours.
    pub restarts_24h: i64,
}

#[derive(Debug, Serialize)]
pub struct JobLine {
    pub task: String,
    pub started_at: DateTime<Utc>,
    pub outcome: String,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct Status {
    /// "healthy", "degraded" or "down".
    pub overall: &'static str,
    pub supervisor: String,
    pub services: Vec<ServiceLine>,
    pub checks: Vec<Check>,
    pub events: Vec<events::Event>,
    pub jobs: Vec<JobLine>,
    /// "modobox X is available (this is Y)" once the public_api job has seen a newer version.
    pub upgrade: Option<String>,
}

impl Status {
    /// 0 healthy, 1 degraded, 2 down.
    pub fn exit_code(&self) -> u8 {
        match self.overall {
            "healthy" => 0,
            "degraded" => 1,
            _ => 2,
        }
    }
}

/// How often the supervisor publishes the status (`health::published`).
const PUBLISH_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Gathers and publishes the status every 30 s until `stop` turns true.
pub async fn publish(
    config: Config,
    distro: Distro,
    store: Store,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use std::os::unix::fs::PermissionsExt;
    let path = std::path::Path::new(SNAPSHOT);
    // The web UI's user must reach it (the unit's umask would make the directory 0750).
    if let Some(dir) = path.parent() {
        let made = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)));
        if let Err(e) = made {
            tracing::warn!("{}: {e}", dir.display());
        }
    }
    // The backup line turning to a warning (failed, late) mails the admin once.
    let mut backup_was_ok = true;
    loop {
        let st = gather(&config, &distro, Some(&store), env!("CARGO_PKG_VERSION")).await;
        if let Some(b) = st.checks.iter().find(|c| c.name == "backup") {
            let ok = b.level == Level::Ok;
            if backup_was_ok && !ok {
                let (config, text) = (
                    config.clone(),
                    format!("backups need attention: {}", b.message),
                );
                let _ = tokio::task::spawn_blocking(move || {
                    crate::system::mail::alert_admin(
                        config.admin_address(),
                        &config.hostname,
                        &text,
                    )
                })
                .await;
            }
            backup_was_ok = ok;
        }
        if let Err(e) = write_snapshot(path, &st, Some(crate::service::own::WEB.user)) {
            tracing::warn!("{}: {e}", path.display());
        }
        tokio::select! {
            _ = tokio::time::sleep(PUBLISH_EVERY) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

/// How many of the recent supervisor events the status shows.
const EVENTS_SHOWN: i64 = 20;

async fn jobs(store: &Store) -> Result<Vec<JobLine>, StoreError> {
    Ok(tasks::last_runs(store)
        .await?
        .into_iter()
        .map(|r| JobLine {
            task: r.task,
            started_at: r.started_at,
            outcome: r.outcome,
            message: r.message,
        })
        .collect())
}

/// The stack's status as modobox `running` (the installed version) serves it.
pub async fn gather(
    config: &Config,
    distro: &Distro,
    store: Option<&Store>,
    running: &str,
) -> Status {
    let sd = Systemd::connect().await.ok();
    // Without systemd, `modobox run --manager direct` leaves its daemons' state in a file.
    let direct: Option<BTreeMap<String, Snapshot>> = match sd {
        Some(_) => None,
        None => std::fs::read(DIRECT_STATE)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok()),
    };
    let day_ago = Utc::now() - chrono::Duration::hours(24);
    let mut services = Vec::new();
    for w in watched(config, distro) {
        let unit = match (&sd, &direct) {
            (Some(sd), _) => sd.status(&w.unit).await.ok(),
            (None, Some(d)) => d.get(&w.unit).map(Snapshot::unit_status),
            (None, None) => None,
        };
        let probe_result =
            probe_of_version(&w, store, config.hostname.as_str(), PROBE_TIMEOUT, running).await;
        let active = unit.as_ref().is_some_and(|u| u.is_active());
        services.push(ServiceLine {
            service: w.name,
            unit: w.unit.clone(),
            state: unit
                .as_ref()
                .map_or_else(|| "unknown".into(), |u| format!("{}/{}", u.active, u.sub)),
            healthy: probe_result.is_ok() && ((sd.is_none() && direct.is_none()) || active),
            probe: probe_result.map_or_else(|e| e.to_string(), |()| "ok".into()),
            since: unit.as_ref().and_then(|u| u.since),
            restarts_24h: match store {
                Some(s) => events::restarts_since(s, w.name, day_ago)
                    .await
                    .unwrap_or(0),
                None => 0,
            },
        });
    }
    let supervisor = match &sd {
        Some(sd) => sd
            .status("modobox.service")
            .await
            .map_or_else(|e| e.to_string(), |u| format!("{}/{}", u.active, u.sub)),
        None if direct.is_some() => "running (direct manager)".into(),
        None => "unknown (no systemd, no direct manager running)".into(),
    };
    let (cert, _) = crate::render::context::tls_paths(config, distro);
    let checks = vec![
        checks::cert_expiry(cert.as_path(), 30),
        checks::free_space(config.paths.mail_root.as_path(), 1024, 5),
        checks::postfix_queue(distro.facts.paths.postfix_spool.as_path(), 100),
        crate::stats::check(&crate::stats::Settings::from_config(config), Utc::now()),
        checks::config_drift(
            &config
                .paths
                .data
                .as_path()
                .join(crate::render::manifest::FILE_NAME),
        ),
    ];
    let mut checks = checks;
    if config.tls.mode == crate::config::TlsMode::Acme {
        let state =
            crate::jobs::tls_renew::RenewalState::load(&crate::jobs::tls_renew::state_path(config));
        checks.push(crate::jobs::tls_renew::check(&state));
    }
    if let Some(s) = store {
        checks.push(crate::backup::status::check(config, s, Utc::now()).await);
    }
    let (events, jobs, upgrade) = match store {
        Some(s) => (
            events::recent(s, EVENTS_SHOWN).await.unwrap_or_default(),
            jobs(s).await.unwrap_or_default(),
            crate::jobs::public_api::upgrade_notice(s).await,
        ),
        None => (Vec::new(), Vec::new(), None),
    };
    let overall = if services.iter().any(|s| !s.healthy) {
        "down"
    } else if checks.iter().any(|c| c.level != Level::Ok) {
        "degraded"
    } else {
        "healthy"
    };
    Status {
        overall,
        supervisor,
        services,
        checks,
        events,
        jobs,
        upgrade,
    }
}
