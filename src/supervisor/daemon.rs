//! `modobox run`: migrate, drop the capabilities it does not need, tell systemd it is ready,
//! then probe and repair the stack until SIGTERM.

use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, SignalKind};

use super::notify::{notify, watchdog_interval};
use super::policy::Policy;
use super::{probe, store_event, watched, Supervisor};
use crate::config::Config;
use crate::distro::Distro;
use crate::service::systemd::Systemd;
use crate::store::{migrate, Store};

/// How often every service is probed, and how long one probe may take.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(5);
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What `modobox run` keeps: it manages services over D-Bus (as root), moves mailboxes as their
/// owner (chown, setuid/setgid), reads every daemon's files, and signals its children.
pub const KEPT_CAPABILITIES: &[caps::Capability] = &[
    caps::Capability::CAP_CHOWN,
    caps::Capability::CAP_DAC_OVERRIDE,
    caps::Capability::CAP_DAC_READ_SEARCH,
    caps::Capability::CAP_FOWNER,
    caps::Capability::CAP_SETUID,
    caps::Capability::CAP_SETGID,
    caps::Capability::CAP_KILL,
];

/// Drops every other capability from the bounding, permitted and effective sets, and clears
/// the inheritable and ambient sets. Nothing to drop when not running as root.
pub fn drop_capabilities() -> Result<(), String> {
    use caps::{CapSet, CapsHashSet};
    let keep: CapsHashSet = KEPT_CAPABILITIES.iter().copied().collect();
    let permitted = caps::read(None, CapSet::Permitted).map_err(|e| e.to_string())?;
    if permitted.is_empty() {
        return Ok(());
    }
    // Dropping from the bounding set needs CAP_SETPCAP, which goes last.
    for cap in caps::all() {
        if !keep.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap).map_err(|e| format!("{cap}: {e}"))?;
        }
    }
    let kept: CapsHashSet = keep.intersection(&permitted).copied().collect();
    caps::clear(None, CapSet::Ambient).map_err(|e| e.to_string())?;
    caps::set(None, CapSet::Inheritable, &CapsHashSet::new()).map_err(|e| e.to_string())?;
    caps::set(None, CapSet::Effective, &kept).map_err(|e| e.to_string())?;
    caps::set(None, CapSet::Permitted, &kept).map_err(|e| e.to_string())?;
    Ok(())
}

/// Mails the admin through the local sendmail (queued even while Postfix is down).
fn alert(config: &Config, text: &str) {
    if let Err(e) = crate::system::mail::alert_admin(config, text) {
        tracing::error!("alert mail failed: {e}");
    }
}

pub async fn run(config: Config, distro: Distro, store: Store) -> Result<(), String> {
    let applied = migrate::migrate(&store).await.map_err(|e| e.to_string())?;
    if !applied.is_empty() {
        tracing::info!("applied migrations {applied:?}");
    }
    drop_capabilities().map_err(|e| format!("dropping capabilities: {e}"))?;
    let manager = Systemd::connect().await.map_err(|e| e.to_string())?;
    let services = watched(&config, &distro);
    let mut supervisor = Supervisor::new(Policy::default(), manager, services);

    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut ticks = tokio::time::interval(PROBE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let watchdog = watchdog_interval();
    let mut pings = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    notify("READY=1\nSTATUS=supervising the mail stack");
    tracing::info!(
        "supervising {} services, probing every {} s",
        supervisor.services.len(),
        PROBE_INTERVAL.as_secs()
    );
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = pings.tick(), if watchdog.is_some() => notify("WATCHDOG=1"),
            _ = ticks.tick() => {
                let results = probe_all(&supervisor, &store, config.hostname.as_str()).await;
                let (events, alerts) = supervisor.handle(Instant::now(), results).await;
                for e in &events {
                    tracing::warn!("{}: {} ({})", e.service, e.kind, e.message);
                    if let Err(err) = store_event(&store, e).await {
                        tracing::error!("recording the event: {err}");
                    }
                }
                for a in alerts {
                    let config = config.clone();
                    let _ = tokio::task::spawn_blocking(move || alert(&config, &a)).await;
                }
            }
        }
    }
    notify("STOPPING=1");
    tracing::info!("stopping");
    store.close().await;
    Ok(())
}

/// Probes every service at once (each with its own timeout), in the supervisor's order.
async fn probe_all<M>(
    supervisor: &Supervisor<M>,
    store: &Store,
    hostname: &str,
) -> Vec<Result<(), String>> {
    let mut set = tokio::task::JoinSet::new();
    for (i, (w, _)) in supervisor.services.iter().enumerate() {
        let (w, store, host) = (w.clone(), store.clone(), hostname.to_string());
        set.spawn(async move { (i, probe(&w, Some(&store), &host, PROBE_TIMEOUT).await) });
    }
    let mut out: Vec<Result<(), String>> = vec![Ok(()); supervisor.services.len()];
    while let Some(joined) = set.join_next().await {
        if let Ok((i, r)) = joined {
            out[i] = r;
        }
    }
    out
}
