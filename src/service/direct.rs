//! The direct service manager, for machines and containers without systemd: modobox starts each
//! daemon in the foreground (as its user), logs its output, restarts it with exponential backoff
//! when it exits, and stops everything in reverse dependency order.
//!
//! Each daemon is owned by one task (its "keeper"); the supervisor talks to it over a channel,
//! so a restart asked by a probe and an exit noticed by the keeper never race.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::UnitStatus;
use crate::distro::DirectSpec;
use crate::system::cmd::{Cmd, CmdError};

/// First and longest wait before starting a daemon again after it exited.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A daemon that ran this long before exiting starts again from the first backoff.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// How long a daemon gets to stop after its stop signal, before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// What `modobox status` shows for a daemon of the direct manager.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// running, backoff (waiting to start again), stopped or failed (cannot be started).
    pub state: String,
    pub pid: u32,
    pub since: Option<DateTime<Utc>>,
    pub restarts: u32,
    pub last_exit: Option<String>,
}

impl Snapshot {
    pub fn unit_status(&self) -> UnitStatus {
        let running = self.state == "running";
        UnitStatus {
            active: if running { "active" } else { "inactive" }.into(),
            sub: self.state.clone(),
            load: "loaded".into(),
            unit_file: "direct".into(),
            since: self.since,
            main_pid: self.pid,
            restarts: self.restarts,
        }
    }
}

/// Why the direct manager could not do what it was asked for a daemon.
#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    #[error("{name}: not managed here")]
    NotManaged { name: String },
    #[error("{name}: its keeper has ended")]
    KeeperEnded { name: String },
    /// Another thread panicked while holding the daemon's state.
    #[error("poisoned lock: another task failed inside")]
    Poisoned,
    #[error("{name}: {source}")]
    Launch {
        name: String,
        #[source]
        source: LaunchError,
    },
}

/// Why a daemon could not be started (kept in its snapshot as `last_exit`).
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("runtime_dirs entry {line:?}: expected \"PATH OWNER:GROUP MODE\"")]
    RuntimeDirEntry { line: String },
    #[error("{path}: no user {user}")]
    RuntimeDirUser { path: String, user: String },
    #[error("{path}: no group {group}")]
    RuntimeDirGroup { path: String, group: String },
    #[error("{path}: {source}")]
    RuntimeDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A pre-start command failed.
    #[error(transparent)]
    Pre(#[from] CmdError),
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    #[error("no user {user}")]
    NoUser { user: String },
    #[error("empty command")]
    EmptyCommand,
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

enum Ctl {
    Start(oneshot::Sender<Result<(), DirectError>>),
    Restart(oneshot::Sender<Result<(), DirectError>>),
    Stop(oneshot::Sender<()>),
}

#[derive(Debug)]
struct Daemon {
    name: String,
    ctl: mpsc::Sender<Ctl>,
    snapshot: Arc<Mutex<Snapshot>>,
}

/// The daemons, in dependency order (the order they were given).
#[derive(Debug)]
pub struct Direct {
    daemons: Vec<Daemon>,
}

impl Direct {
    /// One keeper task per daemon; nothing starts until [`Direct::start`].
    pub fn new(specs: Vec<(String, DirectSpec)>) -> Self {
        let daemons = specs
            .into_iter()
            .map(|(name, spec)| {
                let (tx, rx) = mpsc::channel(4);
                let snapshot = Arc::new(Mutex::new(Snapshot {
                    state: "stopped".into(),
                    ..Default::default()
                }));
                tokio::spawn(keeper(name.clone(), spec, rx, snapshot.clone()));
                Daemon {
                    name,
                    ctl: tx,
                    snapshot,
                }
            })
            .collect();
        Direct { daemons }
    }

    fn daemon(&self, name: &str) -> Result<&Daemon, DirectError> {
        self.daemons
            .iter()
            .find(|d| d.name == name)
            .ok_or_else(|| DirectError::NotManaged {
                name: name.to_string(),
            })
    }

    async fn ask(
        &self,
        name: &str,
        make: fn(oneshot::Sender<Result<(), DirectError>>) -> Ctl,
    ) -> Result<(), DirectError> {
        let (tx, rx) = oneshot::channel();
        let d = self.daemon(name)?;
        let ended = || DirectError::KeeperEnded {
            name: name.to_string(),
        };
        d.ctl.send(make(tx)).await.map_err(|_| ended())?;
        rx.await.map_err(|_| ended())?
    }

    pub async fn start(&self, name: &str) -> Result<(), DirectError> {
        self.ask(name, Ctl::Start).await
    }

    pub async fn restart(&self, name: &str) -> Result<(), DirectError> {
        self.ask(name, Ctl::Restart).await
    }

    /// Stops every daemon, last started first, each within its grace period.
    pub async fn stop_all(&self) {
        for d in self.daemons.iter().rev() {
            let (tx, rx) = oneshot::channel();
            if d.ctl.send(Ctl::Stop(tx)).await.is_ok() {
                let _ = rx.await;
            }
        }
    }

    pub fn status(&self, name: &str) -> Result<UnitStatus, DirectError> {
        Ok(self.snapshot(name)?.unit_status())
    }

    pub fn snapshot(&self, name: &str) -> Result<Snapshot, DirectError> {
        let d = self.daemon(name)?;
        Ok(d.snapshot
            .lock()
            .map_err(|_| DirectError::Poisoned)?
            .clone())
    }

    /// Every daemon's state, for the file `modobox status` reads.
    pub fn snapshots(&self) -> BTreeMap<String, Snapshot> {
        self.daemons
            .iter()
            .filter_map(|d| Some((d.name.clone(), d.snapshot.lock().ok()?.clone())))
            .collect()
    }
}

fn set(snapshot: &Mutex<Snapshot>, f: impl FnOnce(&mut Snapshot)) {
    if let Ok(mut s) = snapshot.lock() {
        f(&mut s);
    }
}

/// Owns one daemon: starts it, watches it exit, restarts it with backoff while it is wanted.
async fn keeper(
    name: String,
    spec: DirectSpec,
    mut rx: mpsc::Receiver<Ctl>,
    snapshot: Arc<Mutex<Snapshot>>,
) {
    let mut child: Option<(Child, Instant)> = None;
    let mut wanted = false;
    let mut backoff = BACKOFF_FIRST;
    let mut retry_at: Option<Instant> = None;
    loop {
        tokio::select! {
            ctl = rx.recv() => {
                let Some(ctl) = ctl else {
                    if let Some((c, _)) = child.take() {
                        stop(&name, &spec, c).await;
                    }
                    return;
                };
                match ctl {
                    Ctl::Start(reply) => {
                        wanted = true;
                        let r = if child.is_some() { Ok(()) } else {
                            retry_at = None;
                            launch(&name, &spec, &snapshot, &mut child).await
                        };
                        let _ = reply.send(r);
                    }
                    Ctl::Restart(reply) => {
                        wanted = true;
                        retry_at = None;
                        backoff = BACKOFF_FIRST;
                        if let Some((c, _)) = child.take() {
                            stop(&name, &spec, c).await;
                        }
                        set(&snapshot, |s| s.restarts += 1);
                        let _ = reply.send(launch(&name, &spec, &snapshot, &mut child).await);
                    }
                    Ctl::Stop(reply) => {
                        wanted = false;
                        retry_at = None;
                        if let Some((c, _)) = child.take() {
                            stop(&name, &spec, c).await;
                        }
                        set(&snapshot, |s| { s.state = "stopped".into(); s.pid = 0; });
                        let _ = reply.send(());
                    }
                }
            }
            status = exit_of(&mut child) => {
                let ran = child.take().map(|(_, t)| t.elapsed()).unwrap_or_default();
                let how = match status {
                    Ok(s) => s.to_string(),
                    Err(e) => format!("wait failed: {e}"),
                };
                if ran >= STABLE_AFTER {
                    backoff = BACKOFF_FIRST;
                }
                tracing::warn!("{name}: exited ({how}) after {} s; starting it again in {} s",
                    ran.as_secs(), backoff.as_secs());
                set(&snapshot, |s| { s.state = "backoff".into(); s.pid = 0; s.last_exit = Some(how); });
                if wanted {
                    retry_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
            _ = wake_at(retry_at) => {
                retry_at = None;
                set(&snapshot, |s| s.restarts += 1);
                if launch(&name, &spec, &snapshot, &mut child).await.is_err() {
                    retry_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}

async fn exit_of(
    child: &mut Option<(Child, Instant)>,
) -> std::io::Result<std::process::ExitStatus> {
    match child.as_mut() {
        Some((c, _)) => c.wait().await,
        None => std::future::pending().await,
    }
}

async fn wake_at(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Prepares and spawns the daemon; on failure the snapshot says why.
async fn launch(
    name: &str,
    spec: &DirectSpec,
    snapshot: &Mutex<Snapshot>,
    child: &mut Option<(Child, Instant)>,
) -> Result<(), DirectError> {
    let result = match prepare(spec).await {
        Ok(()) => spawn(name, spec),
        Err(e) => Err(e),
    };
    match result {
        Ok(c) => {
            let pid = c.id().unwrap_or(0);
            tracing::info!("{name}: started (pid {pid})");
            set(snapshot, |s| {
                s.state = "running".into();
                s.pid = pid;
                s.since = Some(Utc::now());
            });
            *child = Some((c, Instant::now()));
            Ok(())
        }
        Err(source) => {
            let e = DirectError::Launch {
                name: name.to_string(),
                source,
            };
            tracing::error!("{e}");
            set(snapshot, |s| {
                s.state = "failed".into();
                s.pid = 0;
                s.last_exit = Some(e.to_string());
            });
            Err(e)
        }
    }
}

/// Runtime directories and pre-start commands, as systemd's units and tmpfiles.d would.
async fn prepare(spec: &DirectSpec) -> Result<(), LaunchError> {
    for line in &spec.runtime_dirs {
        runtime_dir(line)?;
    }
    for pre in &spec.pre {
        let Some((program, args)) = pre.split_first() else {
            continue;
        };
        let cmd = Cmd::new(program).args(args.iter().cloned());
        tokio::task::spawn_blocking(move || cmd.run()).await??;
    }
    Ok(())
}

/// "PATH OWNER:GROUP MODE": created if missing, then owner and mode set.
fn runtime_dir(line: &str) -> Result<(), LaunchError> {
    let bad = || LaunchError::RuntimeDirEntry {
        line: line.to_string(),
    };
    let mut parts = line.split_whitespace();
    let (Some(path), Some(owner), Some(mode), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let (user, group) = owner.split_once(':').ok_or_else(bad)?;
    let mode = u32::from_str_radix(mode, 8).map_err(|_| bad())?;
    let uid = uzers::get_user_by_name(user)
        .ok_or_else(|| LaunchError::RuntimeDirUser {
            path: path.to_string(),
            user: user.to_string(),
        })?
        .uid();
    let gid = uzers::get_group_by_name(group)
        .ok_or_else(|| LaunchError::RuntimeDirGroup {
            path: path.to_string(),
            group: group.to_string(),
        })?
        .gid();
    let io = |source| LaunchError::RuntimeDir {
        path: path.to_string(),
        source,
    };
    std::fs::create_dir_all(path).map_err(io)?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(io)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io)
}

fn spawn(name: &str, spec: &DirectSpec) -> Result<Child, LaunchError> {
    let mut argv: Vec<String> = Vec::new();
    if let Some(user) = &spec.user {
        // setpriv execs the daemon in place (its pid stays ours to signal) with the user's
        // supplementary groups, which std's Command cannot set.
        let u = uzers::get_user_by_name(user)
            .ok_or_else(|| LaunchError::NoUser { user: user.clone() })?;
        argv.extend([
            "setpriv".to_string(),
            format!("--reuid={}", u.uid()),
            format!("--regid={}", u.primary_group_id()),
            "--init-groups".into(),
            "--".into(),
        ]);
    }
    argv.extend(spec.command.iter().cloned());
    let (program, args) = argv.split_first().ok_or(LaunchError::EmptyCommand)?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| LaunchError::Spawn {
            program: program.clone(),
            source,
        })?;
    if let Some(out) = child.stdout.take() {
        tokio::spawn(relay(name.to_string(), out));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(relay(name.to_string(), err));
    }
    Ok(child)
}

/// The daemon's output, line by line, into modobox's log.
async fn relay(name: String, out: impl AsyncRead + Unpin) {
    let mut lines = BufReader::new(out).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(target: "modobox::daemon", "{name}: {line}");
    }
}

/// Sends the stop signal, waits for the exit, and kills it after the grace period.
async fn stop(name: &str, spec: &DirectSpec, mut child: Child) {
    let signal = parse_signal(&spec.stop_signal).unwrap_or(Signal::SIGTERM);
    if let Some(pid) = child.id() {
        tracing::info!("{name}: stopping (SIG{})", spec.stop_signal);
        let pid = Pid::from_raw(pid as i32);
        let _ = kill(pid, signal);
        // A stopped (SIGSTOP) daemon handles its stop signal only once continued, as with systemd.
        let _ = kill(pid, Signal::SIGCONT);
    }
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(_) => tracing::info!("{name}: stopped"),
        Err(_) => {
            tracing::warn!(
                "{name}: still running {} s after SIG{}; killing it",
                STOP_GRACE.as_secs(),
                spec.stop_signal
            );
            let _ = child.kill().await;
        }
    }
}

pub fn parse_signal(name: &str) -> Option<Signal> {
    format!("SIG{}", name.trim_start_matches("SIG"))
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> DirectSpec {
        DirectSpec {
            command: vec!["/bin/sh".into(), "-c".into(), script.into()],
            user: None,
            runtime_dirs: vec![],
            pre: vec![],
            stop_signal: "TERM".into(),
        }
    }

    async fn until(d: &Direct, name: &str, what: impl Fn(&Snapshot) -> bool) -> Snapshot {
        for _ in 0..100 {
            let s = d.snapshot(name).unwrap();
            if what(&s) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{name}: not reached: {:?}", d.snapshot(name));
    }

    #[tokio::test]
    async fn an_exited_daemon_is_started_again_and_stop_ends_it() {
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("starts");
        let script = format!("echo started >> {}; exit 3", count.display());
        let d = Direct::new(vec![("flaky".into(), sh(&script))]);
        d.start("flaky").await.unwrap();
        // Exits at once, is started again after 1 s, exits again: two starts and a backoff.
        let s = until(&d, "flaky", |s| s.restarts >= 1 && s.state == "backoff").await;
        assert_eq!(s.last_exit.as_deref(), Some("exit status: 3"));
        let starts = std::fs::read_to_string(&count).unwrap();
        assert_eq!(starts.lines().count(), 2, "{starts}");
        d.stop_all().await;
        assert_eq!(d.snapshot("flaky").unwrap().state, "stopped");
    }

    #[tokio::test]
    async fn restart_replaces_the_process_and_stop_uses_the_stop_signal() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("got-int");
        let ready = dir.path().join("ready");
        // Ignores TERM: only its stop signal (INT) ends it cleanly.
        let script = format!(
            "trap '' TERM; trap 'echo int >> {}; exit 0' INT; echo >> {}; while :; do sleep 0.1; done",
            marker.display(),
            ready.display()
        );
        let started = |n: usize| {
            let ready = ready.clone();
            move |_: &Snapshot| {
                std::fs::read_to_string(&ready).is_ok_and(|r| r.lines().count() == n)
            }
        };
        let mut spec = sh(&script);
        spec.stop_signal = "INT".into();
        // As `modobox run` does: a handled SIGINT is reset to its default in children, one
        // inherited as ignored (a test run started as a background job of a shell) stays
        // ignored, and the script's INT trap would never run.
        let _int =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).unwrap();
        let d = Direct::new(vec![("db".into(), spec)]);
        d.start("db").await.unwrap();
        let first = until(&d, "db", started(1)).await.pid;
        d.restart("db").await.unwrap();
        let second = until(&d, "db", started(2)).await;
        assert_ne!(first, second.pid);
        assert_eq!(second.restarts, 1);
        assert!(
            kill(Pid::from_raw(first as i32), None).is_err(),
            "old process still there"
        );
        d.stop_all().await;
        assert!(kill(Pid::from_raw(second.pid as i32), None).is_err());
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "int\nint\n");
        assert!(d.status("db").unwrap().active == "inactive");
    }

    #[tokio::test]
    async fn a_missing_program_is_reported_not_hidden() {
        let mut spec = sh("");
        spec.command = vec!["/nonexistent/daemon".into()];
        let d = Direct::new(vec![("ghost".into(), spec)]);
        let e = d.start("ghost").await.unwrap_err();
        assert!(
            e.to_string().contains("cannot run /nonexistent/daemon"),
            "{e}"
        );
        assert_eq!(d.snapshot("ghost").unwrap().state, "failed");
        assert!(d
            .start("nobody")
            .await
            .unwrap_err()
            .to_string()
            .contains("not managed"));
    }

    #[test]
    fn runtime_dirs_are_checked_and_signals_parsed() {
        assert!(runtime_dir("/run/x root")
            .unwrap_err()
            .to_string()
            .contains("PATH OWNER:GROUP MODE"));
        assert!(runtime_dir("/run/x root:root 0999").is_err());
        assert_eq!(parse_signal("INT"), Some(Signal::SIGINT));
        assert_eq!(parse_signal("SIGTERM"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("NOPE"), None);
    }
}
