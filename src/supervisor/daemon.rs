//! `modobox run`: migrate, drop the capabilities it does not need, tell systemd it is ready,
//! then probe and repair the stack until SIGTERM.

use std::time::{Duration, Instant};

use caps::errors::CapsError;
use tokio::signal::unix::{signal, SignalKind};

use super::notify::{notify, watchdog_interval};
use super::policy::Policy;
use super::{probe, store_event, watched, Manager, ProbeFailure, Supervisor};
use crate::config::Config;
use crate::distro::Distro;
use crate::jobs::process::JobCommand;
use crate::service::direct::Direct;
use crate::service::own;
use crate::service::syslog;
use crate::service::systemd::Systemd;
use crate::service::ServiceError;
use crate::store::{migrate, Store, StoreError};

/// Why the database could not be opened, as the caller (the command line) words it.
pub type OpenError = Box<dyn std::error::Error + Send + Sync>;

/// Why `modobox run` could not start, or stopped.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error(
        "systemd is not running this machine: give --manager direct to let modobox \
         start the daemons itself (containers, images without systemd)"
    )]
    NoManager,
    /// Reading or setting a capability set.
    #[error("dropping capabilities: {0}")]
    Capabilities(#[source] CapsError),
    #[error("dropping capabilities: {cap}: {source}")]
    DropCapability {
        cap: caps::Capability,
        #[source]
        source: CapsError,
    },
    #[error("the {distro} facts have no direct command for {key}")]
    NoDirectCommand { distro: String, key: String },
    #[error("{0}")]
    Open(#[source] OpenError),
    /// Migrating the schema, before anything else.
    #[error(transparent)]
    Migrate(#[from] StoreError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// Installing the SIGTERM or SIGINT handler.
    #[error("{0}")]
    Signal(#[source] std::io::Error),
}

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
/// With `bounding` false the bounding set is left alone: the daemons the direct manager starts as
/// root take their capabilities from it.
pub fn drop_capabilities(bounding: bool) -> Result<(), SupervisorError> {
    use caps::{CapSet, CapsHashSet};
    use SupervisorError::Capabilities;
    let keep: CapsHashSet = KEPT_CAPABILITIES.iter().copied().collect();
    let permitted = caps::read(None, CapSet::Permitted).map_err(Capabilities)?;
    if permitted.is_empty() {
        return Ok(());
    }
    // Dropping from the bounding set needs CAP_SETPCAP, which goes last.
    for cap in caps::all() {
        if bounding
            && !keep.contains(&cap)
            && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false)
        {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(|source| SupervisorError::DropCapability { cap, source })?;
        }
    }
    let kept: CapsHashSet = keep.intersection(&permitted).copied().collect();
    caps::clear(None, CapSet::Ambient).map_err(Capabilities)?;
    caps::set(None, CapSet::Inheritable, &CapsHashSet::new()).map_err(Capabilities)?;
    caps::set(None, CapSet::Effective, &kept).map_err(Capabilities)?;
    caps::set(None, CapSet::Permitted, &kept).map_err(Capabilities)?;
    Ok(())
}

/// Mails the admin through the local sendmail (queued even while Postfix is down).
fn alert(config: &Config, text: &str) {
    if let Err(e) = crate::system::mail::alert_admin(config.admin_address(), &config.hostname, text)
    {
        tracing::error!("alert mail failed: {e}");
    }
}

/// Which service manager `modobox run` drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ManagerKind {
    /// systemd over D-Bus (systemd is PID 1).
    Systemd,
    /// modobox starts the daemons itself (containers and images without systemd).
    Direct,
}

impl ManagerKind {
    /// systemd when it runs this machine (the test `sd_booted` does); direct when modobox is
    /// the init (PID 1, or the child of its PID 1 half). Anything else would risk starting a
    /// second copy of daemons another init runs, so it must be asked for.
    pub fn detect() -> Result<Self, SupervisorError> {
        if std::path::Path::new("/run/systemd/system").is_dir() {
            Ok(ManagerKind::Systemd)
        } else if super::init::is_init() {
            Ok(ManagerKind::Direct)
        } else {
            Err(SupervisorError::NoManager)
        }
    }
}

/// Where the direct manager leaves its daemons' state for `modobox status`.
pub const DIRECT_STATE: &str = "/run/modobox/services.json";

/// How long the direct manager waits for each daemon to answer its probes at start-up.
const START_WAIT: Duration = Duration::from_secs(90);

/// `modobox run`. `open` connects to the database: with the direct manager the database server
/// is one of the daemons, so it is called once that daemon runs.
pub async fn run<F, Fut>(
    config: Config,
    config_path: &std::path::Path,
    distro: Distro,
    kind: ManagerKind,
    open: F,
    jobs: JobCommand,
) -> Result<(), SupervisorError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Store, OpenError>>,
{
    let services = watched(&config, &distro);
    match kind {
        ManagerKind::Systemd => {
            let store = open().await.map_err(SupervisorError::Open)?;
            migrate_first(&store).await?;
            drop_capabilities(true)?;
            let manager = Systemd::connect().await?;
            let r = supervise(&config, &distro, &store, &jobs, manager, services, None).await;
            store.close().await;
            r
        }
        ManagerKind::Direct => {
            // The daemons get their own capabilities from the bounding set; modobox keeps its own few.
            drop_capabilities(false)?;
            let mut specs = Vec::new();
            for w in &services {
                let spec = match own::OwnDaemon::by_unit(w.key) {
                    Some(d) => d.direct_spec(config_path),
                    None => distro.facts.direct.get(w.key).cloned().ok_or_else(|| {
                        SupervisorError::NoDirectCommand {
                            distro: distro.id.to_string(),
                            key: w.key.to_string(),
                        }
                    })?,
                };
                specs.push((w.unit.clone(), spec));
            }
            // No syslog daemon here: the mail lines go to the mail log the statistics read.
            let mail_log = syslog::MailLog::new(
                config.stats.log_file.as_path().to_path_buf(),
                config.hostname.as_str(),
            );
            let _syslog = syslog::listen(
                &[
                    std::path::PathBuf::from("/dev/log"),
                    distro.facts.paths.postfix_spool.as_path().join("dev/log"),
                ],
                Some(mail_log),
            );
            let manager = Direct::new(specs);
            let r = direct(&config, &distro, &jobs, &manager, services, open).await;
            notify("STOPPING=1");
            manager.stop_all().await;
            let _ = std::fs::remove_file(DIRECT_STATE);
            tracing::info!("every daemon stopped");
            r
        }
    }
}

async fn migrate_first(store: &Store) -> Result<(), SupervisorError> {
    let applied = migrate::migrate(store).await?;
    if !applied.is_empty() {
        tracing::info!("applied migrations {applied:?}");
    }
    Ok(())
}

/// Starts the daemons in dependency order (each answering its probes, or the wait over, before
/// the next), then supervises them.
async fn direct<F, Fut>(
    config: &Config,
    distro: &Distro,
    jobs: &JobCommand,
    manager: &Direct,
    services: Vec<super::Watched>,
    open: F,
) -> Result<(), SupervisorError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Store, OpenError>>,
{
    let host = config.hostname.as_str();
    let mut store = None;
    for w in &services {
        let t0 = Instant::now();
        if let Err(e) = manager.start(&w.unit).await {
            tracing::error!("{e}");
            continue;
        }
        loop {
            let ok = if w.name == "database" && store.is_none() {
                match open().await {
                    Ok(s) => {
                        store = Some(s);
                        true
                    }
                    Err(_) => false,
                }
            } else {
                probe(w, store.as_ref(), host, PROBE_TIMEOUT).await.is_ok()
            };
            if ok {
                tracing::info!(
                    "{}: answering after {:.1} s",
                    w.name,
                    t0.elapsed().as_secs_f32()
                );
                break;
            }
            if t0.elapsed() > START_WAIT {
                tracing::warn!(
                    "{}: not answering after {} s; going on",
                    w.name,
                    START_WAIT.as_secs()
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let store = match store {
        Some(s) => s,
        None => open().await.map_err(SupervisorError::Open)?,
    };
    migrate_first(&store).await?;
    let r = supervise(
        config,
        distro,
        &store,
        jobs,
        manager,
        services,
        Some(manager),
    )
    .await;
    store.close().await;
    r
}

/// The periodic jobs and the status snapshot, next to the supervisor; both end when `stop`
/// turns true. (The web UI is a daemon of its own: `service::own`.)
fn start_companions(
    config: &Config,
    distro: &Distro,
    store: &Store,
    jobs: &JobCommand,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let ctx = std::sync::Arc::new(crate::jobs::JobContext {
        node: crate::jobs::scheduler::node_name(config),
        config: config.clone(),
        distro: distro.clone(),
        store: store.clone(),
    });
    let runner = crate::jobs::process::process_runner(jobs.clone());
    vec![
        tokio::spawn(crate::jobs::scheduler::run(ctx, runner, stop.clone())),
        tokio::spawn(super::status::publish(
            config.clone(),
            distro.clone(),
            store.clone(),
            stop.clone(),
        )),
        tokio::spawn(profile_signer(config, distro, store, stop.clone())),
        tokio::spawn(finish_tls_swap(config.clone(), distro.clone())),
    ]
}

/// A certificate swap a crash cut short (`jobs::tls_renew::install_pair`) is finished at once,
/// not at the next renewal run: nginx and Dovecot refuse to start on a key that is not their
/// certificate's. The daemons then reload the finished pair.
async fn finish_tls_swap(config: Config, distro: Distro) {
    let (cert, key) = crate::render::context::tls_paths(&config, &distro);
    match crate::jobs::tls_renew::finish_swap(cert.as_path(), key.as_path()) {
        Ok(Some(note)) => {
            tracing::warn!("{note}");
            for failure in crate::jobs::tls_renew::reload_daemons().await {
                tracing::error!("reload after finishing the certificate swap: {failure}");
            }
        }
        Ok(None) => {}
        Err(e) => tracing::error!("finishing a certificate swap: {e}"),
    }
}

/// Signs the web UI's Apple profiles with the TLS key the web process may not read.
fn profile_signer(
    config: &Config,
    distro: &Distro,
    store: &Store,
    stop: tokio::sync::watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> {
    let (cert, key) = crate::render::context::tls_paths(config, distro);
    let web = crate::service::own::WEB.user;
    let signer = crate::keys::mobileconfig::Signer {
        socket: crate::keys::mobileconfig::SOCKET.into(),
        hostname: config.hostname.clone(),
        cert: cert.as_path().to_path_buf(),
        key: key.as_path().to_path_buf(),
        allowed: uzers::get_user_by_name(web).map(|u| (u.uid(), u.primary_group_id())),
        store: store.clone(),
    };
    crate::keys::mobileconfig::serve(signer, stop)
}

/// Probes and repairs until SIGTERM or SIGINT; the jobs and the status snapshot run alongside.
async fn supervise<M: Manager>(
    config: &Config,
    distro: &Distro,
    store: &Store,
    jobs: &JobCommand,
    manager: M,
    services: Vec<super::Watched>,
    direct: Option<&Direct>,
) -> Result<(), SupervisorError> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let companions = start_companions(config, distro, store, jobs, &stop_rx);
    let r = probe_loop(config, store, manager, services, direct).await;
    let _ = stop_tx.send(true);
    // The scheduler lets running jobs finish (≤ 20 s, inside the unit's stop timeout).
    for t in companions {
        let _ = t.await;
    }
    r
}

async fn probe_loop<M: Manager>(
    config: &Config,
    store: &Store,
    manager: M,
    services: Vec<super::Watched>,
    direct: Option<&Direct>,
) -> Result<(), SupervisorError> {
    let mut supervisor = Supervisor::new(Policy::default(), manager, services);
    let mut term = signal(SignalKind::terminate()).map_err(SupervisorError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(SupervisorError::Signal)?;
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
    let mut paused = false;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = pings.tick(), if watchdog.is_some() => notify("WATCHDOG=1"),
            _ = ticks.tick() => {
                // An upgrade restarts daemons and waits for them itself: repairing one that is
                // still starting would restart it again (and Postfix would defer mail for
                // minutes). Paused while the upgrade holds its lock.
                if let Some(upgrade) = crate::system::maintenance::active(config.paths.data.as_path()) {
                    if !paused {
                        tracing::info!("repairs paused: {upgrade}");
                        paused = true;
                    }
                    continue;
                }
                if paused {
                    tracing::info!("repairs resumed");
                    paused = false;
                }
                let results = probe_all(&supervisor, store, config.hostname.as_str()).await;
                let (events, alerts) = supervisor.handle(Instant::now(), results).await;
                for e in &events {
                    tracing::warn!("{}: {} ({})", e.service, e.kind, e.message);
                    if let Err(err) = store_event(store, e).await {
                        tracing::error!("recording the event: {err}");
                    }
                }
                for a in alerts {
                    let config = config.clone();
                    let _ = tokio::task::spawn_blocking(move || alert(&config, &a)).await;
                }
                if let Some(d) = direct {
                    save_direct_state(d);
                }
            }
        }
    }
    notify("STOPPING=1");
    tracing::info!("stopping");
    Ok(())
}

fn save_direct_state(d: &Direct) {
    let Ok(json) = serde_json::to_vec_pretty(&d.snapshots()) else {
        return;
    };
    let path = std::path::Path::new(DIRECT_STATE);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = crate::system::fs::write_atomic(path, &json, 0o644, None) {
        tracing::error!("{}: {e}", path.display());
    }
}

/// Probes every service at once (each with its own timeout), in the supervisor's order.
async fn probe_all<M>(
    supervisor: &Supervisor<M>,
    store: &Store,
    hostname: &str,
) -> Vec<Result<(), ProbeFailure>> {
    let mut set = tokio::task::JoinSet::new();
    for (i, (w, _)) in supervisor.services.iter().enumerate() {
        let (w, store, host) = (w.clone(), store.clone(), hostname.to_string());
        set.spawn(async move { (i, probe(&w, Some(&store), &host, PROBE_TIMEOUT).await) });
    }
    let mut out: Vec<Result<(), ProbeFailure>> =
        (0..supervisor.services.len()).map(|_| Ok(())).collect();
    while let Some(joined) = set.join_next().await {
        if let Ok((i, r)) = joined {
            out[i] = r;
        }
    }
    out
}
