//! Runs the jobs on their cron schedule inside `modobox run`: one loop per job, one run at a
//! time per job in this process, a timeout per run, at most `MAX_CONCURRENT` jobs at once, and
//! every run recorded in `modobox_task_run` with the slot (the cron instant) it belongs to.
//!
//! Across nodes sharing one database, a run first takes the job's lock (PostgreSQL advisory
//! lock, MariaDB `GET_LOCK`, a flock next to a SQLite file) and then claims its slot (unique
//! on task + slot): a node that finds the lock taken, or the slot already run, skips it without
//! recording anything, so each slot runs once whatever the number of nodes. A run still going
//! when its job's next slot comes makes that slot skipped (recorded). Slots missed while
//! modobox was down are not replayed: at start, a job whose latest slot has no run gets one
//! catch-up run, unless its next slot is less than a minute away.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;
use tokio::sync::{watch, Semaphore};

use super::{execute, JobContext, Outcome};
use crate::config::{parse_cron, Config};
use crate::names::NameError;
use crate::store::tasks::{self, JobLock};
use crate::store::Store;

/// Jobs running at once in one process (every daily job starts at midnight).
pub const MAX_CONCURRENT: usize = 3;
/// No catch-up run when the next slot is nearer than this: it will run soon anyway (and a
/// catch-up still going at that slot would make it skipped).
pub const CATCH_UP_MIN_WAIT: chrono::Duration = chrono::Duration::seconds(60);
/// How long a stopping scheduler waits for running jobs before abandoning them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// One scheduled job.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub cron: Cron,
    pub timeout: Duration,
}

/// The entries of every job from the configuration (`[schedule]`, `[jobs]`).
pub fn entries(config: &Config) -> Result<Vec<Entry>, NameError> {
    config
        .schedule
        .entries()
        .into_iter()
        .map(|(name, expr)| {
            Ok(Entry {
                name: name.to_string(),
                cron: parse_cron(&format!("schedule.{name}"), expr)?,
                timeout: config.jobs.timeout(name),
            })
        })
        .collect()
}

/// The first slot strictly after `after`.
pub fn next_slot(cron: &Cron, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&after, false).ok()
}

/// The latest slot at or before `now` (looked for in growing windows, so a job every minute
/// costs a few steps and a yearly one still finds its slot).
pub fn latest_slot(cron: &Cron, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let windows = [
        chrono::Duration::minutes(2),
        chrono::Duration::hours(2),
        chrono::Duration::days(2),
        chrono::Duration::days(63),
        chrono::Duration::days(400),
    ];
    for w in windows {
        let mut t = now - w;
        let mut last = None;
        while let Some(n) = next_slot(cron, t).filter(|n| *n <= now) {
            last = Some(n);
            t = n;
        }
        if last.is_some() {
            return last;
        }
    }
    None
}

pub type JobFuture = Pin<Box<dyn Future<Output = (Outcome, String)> + Send>>;
/// What runs a job by name (the registry; tests give their own).
pub type Runner = Arc<dyn Fn(String) -> JobFuture + Send + Sync>;

/// The registry's jobs in this process (`modobox task run`).
pub fn registry_runner(ctx: Arc<JobContext>) -> Runner {
    Arc::new(move |name: String| {
        let ctx = ctx.clone();
        Box::pin(async move { execute(&name, &ctx, false).await })
    })
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub outcome: Outcome,
    pub message: String,
    /// False when nothing was recorded (another node or process had it, or the slot was done).
    pub recorded: bool,
}

/// Aborts the job's task when the run is abandoned (timeout, shutdown).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `name` once under its cross-node lock, recording the run; `slot` is the schedule
/// instant (None for a run by hand).
pub async fn run_locked(
    store: &Store,
    node: &str,
    name: &str,
    slot: Option<DateTime<Utc>>,
    timeout: Duration,
    runner: &Runner,
) -> Report {
    let not_recorded = |outcome, message: String| Report {
        outcome,
        message,
        recorded: false,
    };
    let lock = match JobLock::try_acquire(store, name).await {
        Ok(Some(l)) => l,
        Ok(None) => {
            return not_recorded(
                Outcome::Skipped,
                format!("{name} is running in another modobox process or node"),
            )
        }
        Err(e) => return not_recorded(Outcome::Failed, format!("taking the lock of {name}: {e}")),
    };
    let id = match tasks::start(store, name, node, slot).await {
        Ok(Some(id)) => id,
        Ok(None) => {
            lock.release().await;
            return not_recorded(
                Outcome::Skipped,
                format!("this slot of {name} was already run"),
            );
        }
        Err(e) => {
            lock.release().await;
            return not_recorded(Outcome::Failed, format!("recording the run of {name}: {e}"));
        }
    };
    let mut job = AbortOnDrop(tokio::spawn(runner(name.to_string())));
    let (outcome, message) = match tokio::time::timeout(timeout, &mut job.0).await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => (Outcome::Failed, format!("the job stopped abnormally: {e}")),
        Err(_) => (
            Outcome::Timeout,
            format!("stopped after {} s", timeout.as_secs_f64()),
        ),
    };
    let recorded = match tasks::finish(store, id, outcome.as_str(), &message).await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!("recording the end of {name}: {e}");
            false
        }
    };
    lock.release().await;
    Report {
        outcome,
        message,
        recorded,
    }
}

/// The scheduler of one process.
pub struct Scheduler {
    store: Store,
    node: String,
    entries: Vec<Entry>,
    runner: Runner,
    running: Mutex<HashSet<String>>,
    limit: Semaphore,
    jobs: tokio::sync::Mutex<tokio::task::JoinSet<()>>,
    /// The data directory whose maintenance flag pauses the jobs (`system::maintenance`).
    paused_by: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("node", &self.node)
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    pub fn new(store: Store, node: String, entries: Vec<Entry>, runner: Runner) -> Arc<Self> {
        Self::pausing(store, node, entries, runner, None)
    }

    /// A scheduler whose slots are skipped while an upgrade holds `data`'s maintenance flag.
    pub fn pausing(
        store: Store,
        node: String,
        entries: Vec<Entry>,
        runner: Runner,
        data: Option<std::path::PathBuf>,
    ) -> Arc<Self> {
        Arc::new(Scheduler {
            store,
            node,
            entries,
            runner,
            running: Mutex::new(HashSet::new()),
            limit: Semaphore::new(MAX_CONCURRENT),
            jobs: tokio::sync::Mutex::new(tokio::task::JoinSet::new()),
            paused_by: data,
        })
    }

    fn claim(&self, name: &str) -> bool {
        // A poisoned set only means a panic elsewhere; the names in it are still right.
        let mut set = self.running.lock().unwrap_or_else(|p| p.into_inner());
        set.insert(name.to_string())
    }

    fn unclaim(&self, name: &str) {
        let mut set = self.running.lock().unwrap_or_else(|p| p.into_inner());
        set.remove(name);
    }

    /// Starts one run of entry `i` for `slot` unless the previous one is still going.
    async fn fire(self: &Arc<Self>, i: usize, slot: DateTime<Utc>) {
        let entry = &self.entries[i];
        let name = entry.name.clone();
        if let Some(upgrade) = self
            .paused_by
            .as_deref()
            .and_then(crate::system::maintenance::active)
        {
            let message = format!("paused while modobox upgrades ({upgrade})");
            tracing::info!("{name}: skipped: {message}");
            if let Err(e) = tasks::record_skipped(&self.store, &name, &self.node, &message).await {
                tracing::error!("recording a skipped run of {name}: {e}");
            }
            return;
        }
        if !self.claim(&name) {
            let message = format!(
                "the previous run is still going (slot {} not run)",
                slot.format("%Y-%m-%d %H:%M:%S")
            );
            tracing::warn!("{name}: skipped: {message}");
            if let Err(e) = tasks::record_skipped(&self.store, &name, &self.node, &message).await {
                tracing::error!("recording a skipped run of {name}: {e}");
            }
            return;
        }
        let me = self.clone();
        let timeout = entry.timeout;
        let mut jobs = self.jobs.lock().await;
        // Finished runs stay in the set until reaped: without this it grows every minute.
        while jobs.try_join_next().is_some() {}
        jobs.spawn(async move {
            let report = {
                // The semaphore is never closed, so acquiring only waits.
                let _permit = me.limit.acquire().await;
                run_locked(&me.store, &me.node, &name, Some(slot), timeout, &me.runner).await
            };
            me.unclaim(&name);
            match report.outcome {
                Outcome::Ok => tracing::debug!("{name}: {}", report.message),
                Outcome::Skipped => tracing::debug!("{name}: skipped: {}", report.message),
                Outcome::Failed | Outcome::Timeout => {
                    tracing::error!("{name}: {}: {}", report.outcome, report.message)
                }
            }
        });
    }

    async fn job_loop(self: Arc<Self>, i: usize, mut shutdown: watch::Receiver<bool>) {
        let cron = self.entries[i].cron.clone();
        let name = self.entries[i].name.clone();
        let started = Utc::now();
        let next_soon = next_slot(&cron, started).is_none_or(|n| n - started < CATCH_UP_MIN_WAIT);
        if let Some(prev) = latest_slot(&cron, started).filter(|_| !next_soon) {
            match tasks::ran_since(&self.store, &name, prev).await {
                Ok(false) => self.fire(i, prev).await,
                Ok(true) => {}
                Err(e) => tracing::error!("{name}: checking for a missed run: {e}"),
            }
        }
        let mut after = started;
        loop {
            let Some(next) = next_slot(&cron, after) else {
                tracing::warn!("{name}: its schedule has no future slot");
                return;
            };
            // Sleep in steps: the wall clock may be set while we wait.
            loop {
                let now = Utc::now();
                if now >= next {
                    break;
                }
                let wait = (next - now)
                    .to_std()
                    .unwrap_or_default()
                    .min(Duration::from_secs(60));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => return,
                }
                if *shutdown.borrow() {
                    return;
                }
            }
            self.fire(i, next).await;
            // Late (suspend, clock jump): the slots in between are not replayed.
            after = next.max(Utc::now());
        }
    }

    /// Runs until `shutdown` turns true, then waits up to `SHUTDOWN_GRACE` for running jobs.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        match tasks::mark_interrupted(&self.store, &self.node, Utc::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!("{n} runs were interrupted by the last stop of modobox"),
            Err(e) => tracing::error!("marking interrupted runs: {e}"),
        }
        let mut loops = tokio::task::JoinSet::new();
        for i in 0..self.entries.len() {
            loops.spawn(self.clone().job_loop(i, shutdown.clone()));
        }
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
        loops.abort_all();
        while loops.join_next().await.is_some() {}
        let mut jobs = std::mem::take(&mut *self.jobs.lock().await);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while jobs.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "stopping: abandoning jobs still running after {} s",
                SHUTDOWN_GRACE.as_secs()
            );
            jobs.shutdown().await;
        }
    }
}

/// The scheduler of `modobox run`: every job of the configuration, each run by `runner` (a
/// process per run, see jobs::process), until `shutdown` is true.
pub async fn run(ctx: Arc<JobContext>, runner: Runner, shutdown: watch::Receiver<bool>) {
    let entries = match entries(&ctx.config) {
        Ok(e) => e,
        Err(e) => {
            // Config::load validates the schedule: this only happens with a config built in code.
            tracing::error!("periodic jobs not started: {e}");
            return;
        }
    };
    tracing::info!(
        "periodic jobs: {} scheduled on node {}",
        entries.len(),
        ctx.node
    );
    let data = Some(ctx.config.paths.data.as_path().to_path_buf());
    Scheduler::pausing(ctx.store.clone(), ctx.node.clone(), entries, runner, data)
        .run(shutdown)
        .await;
}

/// This node's name for the run records: the hostname the kernel reports, else the
/// configured one.
pub fn node_name(config: &Config) -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| config.hostname.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cron(expr: &str) -> Cron {
        Cron::new(expr).with_seconds_optional().parse().unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn slots_follow_the_cron_expression() {
        let c = cron("*/30 * * * *");
        assert_eq!(
            next_slot(&c, at("2026-12-01T16:29:59Z")),
            Some(at("2026-12-01T16:30:00Z"))
        );
        // Strictly after: a slot is never fired twice.
        assert_eq!(
            next_slot(&c, at("2026-12-01T16:30:00Z")),
            Some(at("2026-12-01T17:00:00Z"))
        );
        assert_eq!(
            latest_slot(&c, at("2026-12-01T16:45:00Z")),
            Some(at("2026-12-01T16:30:00Z"))
        );
        assert_eq!(
            latest_slot(&c, at("2026-12-01T16:30:00Z")),
            Some(at("2026-12-01T16:30:00Z"))
        );
        // Daily and yearly schedules find their last slot too.
        assert_eq!(
            latest_slot(&cron("0 2 * * *"), at("2026-12-01T01:00:00Z")),
            Some(at("2026-11-30T02:00:00Z"))
        );
        assert_eq!(
            latest_slot(&cron("0 0 1 1 *"), at("2026-12-01T01:00:00Z")),
            Some(at("2026-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn the_default_configuration_schedules_every_job() {
        let config = Config::new(crate::names::Hostname::parse("h", "mail.example.com").unwrap());
        let e = entries(&config).unwrap();
        assert_eq!(e.len(), super::super::JOBS.len());
        for e in &e {
            // A backup and its restore test read the whole mail store: 4 hours by default.
            let minutes = if e.name.starts_with("backup") {
                240
            } else {
                10
            };
            assert_eq!(e.timeout, Duration::from_secs(minutes * 60), "{}", e.name);
        }
    }
}
