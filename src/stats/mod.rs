//! Mail statistics (modoboa-stats compatible): where the log lines come from (`source`: the
//! log file or the journal), an incremental mail-log parser, where it stopped (`state`), the
//! RRD files it feeds and the graphs drawn from them. `run` is what the scheduler calls every
//! 5 minutes; `update` is the same without the database (the hosted names given).

pub mod graph;
pub mod parser;
pub mod rrd;
pub mod source;
pub mod state;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::health::checks::{Check, Level};
use crate::store::access::Actor;
use crate::store::{domains, Store};
use parser::{Domains, Parser, Zone, COUNTERS};
use rrd::Rrd;
use source::{Source, JOURNAL};
use state::State;

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("statistics state {path}: {message}")]
    State { path: String, message: String },
    #[error("rrdtool {command}: {message}")]
    Rrdtool { command: String, message: String },
    #[error("no statistics for {name} ({path} does not exist)")]
    NoData { name: String, path: String },
    #[error("{field}: {rule}")]
    Invalid { field: String, rule: String },
    #[error("stats.log_file: {path} does not exist and reading the journal is off (stats.journal = false)")]
    NoLog { path: String },
    #[error("journalctl: {0}")]
    Journal(String),
    #[error("another statistics update holds the lock {0}")]
    Busy(String),
    #[error("reading the hosted domains: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The blocking update did not finish.
    #[error("statistics task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl StatsError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        StatsError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Where the statistics come from and go.
#[derive(Debug, Clone)]
pub struct Settings {
    pub log_file: PathBuf,
    /// Read the journal (mail facility) when `log_file` does not exist or is no longer written.
    pub journal: bool,
    /// The RRD files, and beside them the parser's state (`parser-state.json`): where the
    /// parser stopped belongs to where its results went.
    pub rrd_dir: PathBuf,
    /// Where earlier versions kept the state (`stats.state_file`): moved into `rrd_dir` once.
    pub legacy_state_file: Option<PathBuf>,
    pub zone: Zone,
}

/// The environment variable that overrides the RRD directory (`--rrd-dir` too).
pub const RRD_DIR_ENV: &str = "MODOBOX_RRD_DIR";
/// The parser's state, in the RRD directory.
pub const STATE_FILE: &str = "parser-state.json";
/// No event recognised for this long while Postfix queues mail: the statistics check warns.
const SILENT_SECS: i64 = 3600;
/// ... once at least this many messages were queued meanwhile (not one deferred message).
const SILENT_MIN_QUEUED: u64 = 5;

impl Settings {
    pub fn from_config(config: &Config) -> Settings {
        let configured = config.paths.rrd.as_path().to_path_buf();
        let mut settings = Settings {
            log_file: config.stats.log_file.as_path().to_path_buf(),
            journal: config.stats.journal,
            rrd_dir: configured.clone(),
            legacy_state_file: config
                .stats
                .state_file
                .as_ref()
                .map(|p| p.as_path().to_path_buf()),
            zone: Zone::Local,
        };
        if let Some(dir) = std::env::var_os(RRD_DIR_ENV).filter(|v| !v.is_empty()) {
            settings.set_rrd_dir(PathBuf::from(dir));
        }
        settings
    }

    /// Another RRD directory (`--rrd-dir`): it has a state of its own, and the legacy state
    /// belongs to the configured directory only.
    pub fn set_rrd_dir(&mut self, dir: PathBuf) {
        if dir != self.rrd_dir {
            self.legacy_state_file = None;
        }
        self.rrd_dir = dir;
    }

    pub fn state_file(&self) -> PathBuf {
        self.rrd_dir.join(STATE_FILE)
    }
}

/// What one update did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub source: String,
    pub bytes: u64,
    pub lines: u64,
    pub skipped: u64,
    /// Lines skipped because another source gave them already.
    pub already_read: u64,
    pub rotated: bool,
    pub truncated: bool,
    pub files_updated: usize,
    pub minutes_written: usize,
    pub in_flight: usize,
    pub seconds: f64,
}

impl Report {
    pub fn summary(&self) -> String {
        format!(
            "{}: {} lines ({} bytes, {} skipped{}){}{} in {:.2} s; {} RRD files updated ({} minute rows); {} messages in flight",
            self.source,
            self.lines,
            self.bytes,
            self.skipped,
            if self.already_read > 0 {
                format!(", {} read before from another source", self.already_read)
            } else {
                String::new()
            },
            if self.rotated { ", followed a rotation" } else { "" },
            if self.truncated { ", file was truncated: read again from the start" } else { "" },
            self.seconds,
            self.files_updated,
            self.minutes_written,
            self.in_flight
        )
    }
}

/// The names counted per domain: hosted domains, relay domains and domain aliases.
pub async fn hosted_names(store: &Store) -> Result<Vec<String>, StatsError> {
    let mut tx = store.begin().await?;
    let mut names: Vec<String> = domains::list(&mut tx, Actor::System, None, None)
        .await?
        .into_iter()
        .map(|d| d.name.to_string())
        .collect();
    names.extend(
        domains::list_aliases(&mut tx, Actor::System, None)
            .await?
            .into_iter()
            .map(|a| a.name.to_string()),
    );
    tx.commit().await?;
    Ok(names)
}

/// The scheduler's `logparser` job: parses what the mail log gained since the last run and
/// updates the RRD files. Ok = a one-line summary.
pub async fn run(config: &Config, store: &Store) -> Result<String, StatsError> {
    let names = hosted_names(store).await?;
    let settings = Settings::from_config(config);
    tokio::task::spawn_blocking(move || update(&settings, &names, None, Utc::now()))
        .await?
        .map(|r| r.summary())
}

/// Parses new log data (the configured log file, `file` instead, or the journal) and writes
/// every complete minute before `now` to the RRD files. Holds a lock: one update at a time.
pub fn update(
    settings: &Settings,
    names: &[String],
    file: Option<&Path>,
    now: DateTime<Utc>,
) -> Result<Report, StatsError> {
    let started = Instant::now();
    let state_file = settings.state_file();
    let _lock = lock(&state_file)?;
    adopt_legacy_state(settings, &state_file)?;
    let mut st = State::load(&state_file)?;
    let mut parser = Parser::new(Domains::new(names), settings.zone, now);
    parser.import(st.carry());
    parser.set_activity(st.activity);
    let mut report = Report::default();
    // `--file` is an explicit one-off: it neither resumes after nor moves the regular source.
    let source = match file {
        Some(f) => Source::File(f.to_path_buf()),
        None => Source::choose(settings)?,
    };
    let key = source.key();
    let switched = file.is_none() && st.source.as_deref().is_some_and(|s| s != key);
    if switched && st.source.as_deref() == Some(JOURNAL) && settings.journal {
        // The journal holds every line up to the switch (rsyslog just installed): read it to
        // the end first; the file's lines it already gave are skipped below. A journal that
        // cannot be read any more (no journald: the direct manager) has nothing to add.
        if let Err(e) = Source::Journal.read(&mut st, &mut parser) {
            tracing::info!("statistics: the journal before {key}: {e}");
        }
    }
    if switched {
        if let Some(p) = parser.position().or(st.position) {
            parser.resume_after(p);
        }
    }
    let read = source.read(&mut st, &mut parser)?;
    report.rotated = read.rotated;
    report.truncated = read.truncated;
    report.source = key.clone();
    // Minutes before the current one are complete; the rest waits for the next run.
    let cut = now.timestamp().div_euclid(60);
    let mut rows = parser.take_before(cut);
    rows.extend(st.take_pending(cut));
    st.add_pending(parser.take_rest());
    let mut all: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
    all.push("global".into());
    let (files, minutes) = Rrd::new(&settings.rrd_dir).write(&rows, &all, cut)?;
    report.files_updated = files;
    report.minutes_written = minutes;
    report.in_flight = parser.in_flight();
    report.lines = parser.input.lines;
    report.bytes = parser.input.bytes;
    report.skipped = parser.input.skipped;
    report.already_read = parser.input.already_read;
    st.carry = parser.export();
    if file.is_none() {
        st.source = Some(key.clone());
        st.position = parser.position().or(st.position);
        st.activity = parser.activity();
        if report.lines > report.already_read {
            if report.skipped == report.lines - report.already_read {
                st.unreadable_since.get_or_insert(now.timestamp());
            } else {
                st.unreadable_since = None;
            }
        }
        st.last_run = Some(state::LastRun {
            at: now.timestamp(),
            source: key,
            lines: report.lines,
            skipped: report.skipped,
        });
    }
    st.save(&state_file)?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Moves the state an older modobox kept at `stats.state_file` into the RRD directory, once.
fn adopt_legacy_state(settings: &Settings, state_file: &Path) -> Result<(), StatsError> {
    let Some(legacy) = &settings.legacy_state_file else {
        return Ok(());
    };
    if state_file.exists() || !legacy.exists() {
        return Ok(());
    }
    let st = State::load(legacy)?;
    st.save(state_file)?;
    std::fs::remove_file(legacy).map_err(|e| StatsError::io(legacy, e))?;
    let _ = std::fs::remove_file(legacy.with_extension("lock"));
    tracing::info!(
        "statistics state moved from {} to {}",
        legacy.display(),
        state_file.display()
    );
    Ok(())
}

/// An exclusive lock beside the state file; released when dropped.
fn lock(state_file: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, StatsError> {
    let path = state_file.with_extension("lock");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| StatsError::io(dir, e))?;
    }
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StatsError::io(&path, e))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|_| StatsError::Busy(path.display().to_string()))
}

/// Totals per counter of `name` over the last `seconds` before `now`.
pub fn show(
    rrd_dir: &Path,
    name: &str,
    seconds: i64,
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, f64>, StatsError> {
    let end = now.timestamp();
    show_between(rrd_dir, name, end - seconds, end)
}

/// Totals per counter of `name` between two times (seconds): what the RRD file holds
/// (consolidated rows and the row being filled) plus the minutes the parser has not written
/// yet, so a message shows as soon as a run has read its lines.
pub fn show_between(
    rrd_dir: &Path,
    name: &str,
    start: i64,
    end: i64,
) -> Result<BTreeMap<String, f64>, StatsError> {
    let rrd = Rrd::new(rrd_dir);
    // The state may be unreadable to the caller (or not there yet): then only the RRD file.
    let pending = State::load(&rrd_dir.join(STATE_FILE))
        .ok()
        .map(|st| st.pending_of(name, start.div_euclid(60), end.div_euclid(60) + 1))
        .filter(|c| !c.is_zero());
    let mut totals = match rrd.totals(name, start, end) {
        Ok(t) => t,
        Err(StatsError::NoData { .. }) if pending.is_some() => {
            COUNTERS.iter().map(|c| (c.to_string(), 0.0)).collect()
        }
        Err(e) => return Err(e),
    };
    if let Some(p) = pending {
        for (i, c) in COUNTERS.iter().enumerate() {
            if let Some(v) = totals.get_mut(*c) {
                *v += p.0[i] as f64;
            }
        }
    }
    Ok(totals)
}

/// The statistics check of `modobox status` and the dashboard: a warning when the parser reads
/// lines but none in a format it knows, or recognises no mail event for an hour while Postfix
/// keeps queueing messages — instead of flat zero graphs.
pub fn check(settings: &Settings, now: DateTime<Utc>) -> Check {
    const NAME: &str = "statistics";
    let path = settings.state_file();
    let st = match State::load(&path) {
        Ok(st) => st,
        Err(e) => return Check::new(NAME, Level::Warn, e.to_string()),
    };
    let Some(run) = &st.last_run else {
        return Check::new(NAME, Level::Ok, "the mail log has not been read yet");
    };
    let at = |t: i64| {
        DateTime::<Utc>::from_timestamp(t, 0).map_or_else(
            || t.to_string(),
            |d| d.format("%Y-%m-%d %H:%M UTC").to_string(),
        )
    };
    let now = now.timestamp();
    if let Some(since) = st.unreadable_since.filter(|s| now - s >= SILENT_SECS) {
        return Check::new(
            NAME,
            Level::Warn,
            format!(
                "no line of {} read since {} is in a format the log parser knows ({} of {} lines in the last run): check stats.log_file",
                run.source,
                at(since),
                run.skipped,
                run.lines
            ),
        );
    }
    let a = &st.activity;
    if let Some(first) = a.first_queued_since_event {
        if a.queued_since_event >= SILENT_MIN_QUEUED && now - first >= SILENT_SECS {
            let last = a
                .last_event
                .map_or_else(|| "ever".to_string(), |t| format!("since {}", at(t)));
            return Check::new(
                NAME,
                Level::Warn,
                format!(
                    "Postfix queued {} messages since {} but the log parser counted no delivery, bounce or reject {last} (source: {}): the statistics are not counting",
                    a.queued_since_event,
                    at(first),
                    run.source
                ),
            );
        }
    }
    let last = a.last_event.map_or_else(|| "none yet".to_string(), at);
    Check::new(
        NAME,
        Level::Ok,
        format!(
            "last read {} ({} lines from {}); last counted event: {last}",
            at(run.at),
            run.lines,
            run.source
        ),
    )
}
