//! Mail statistics (modoboa-stats compatible): an incremental mail-log parser, the RRD files it
//! feeds and the graphs drawn from them. `run` is what the scheduler calls every 5 minutes;
//! `update` is the same without the database (the hosted names given).

pub mod graph;
pub mod parser;
pub mod rrd;
pub mod state;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::store::access::Actor;
use crate::store::{domains, Store};
use parser::{Domains, Parser, Zone};
use rrd::Rrd;
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
    /// Read the journal (mail facility) when `log_file` does not exist.
    pub journal: bool,
    pub rrd_dir: PathBuf,
    pub state_file: PathBuf,
    pub zone: Zone,
}

/// The environment variable that overrides the RRD directory (`--rrd-dir` too).
pub const RRD_DIR_ENV: &str = "MODOBOX_RRD_DIR";

impl Settings {
    pub fn from_config(config: &Config) -> Settings {
        let rrd_dir = std::env::var_os(RRD_DIR_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| config.paths.rrd.as_path().to_path_buf());
        Settings {
            log_file: config.stats.log_file.as_path().to_path_buf(),
            journal: config.stats.journal,
            rrd_dir,
            state_file: config.stats.state_file.as_path().to_path_buf(),
            zone: Zone::Local,
        }
    }
}

/// What one update did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub source: String,
    pub bytes: u64,
    pub lines: u64,
    pub skipped: u64,
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
            "{}: {} lines ({} bytes, {} skipped){}{} in {:.2} s; {} RRD files updated ({} minute rows); {} messages in flight",
            self.source,
            self.lines,
            self.bytes,
            self.skipped,
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
        .map(|d| d.name)
        .collect();
    names.extend(
        domains::list_aliases(&mut tx, Actor::System, None)
            .await?
            .into_iter()
            .map(|a| a.name),
    );
    tx.commit().await?;
    Ok(names)
}

/// The scheduler's `logparser` job: parses what the mail log gained since the last run and
/// updates the RRD files. Ok = a one-line summary.
pub async fn run(config: &Config, store: &Store) -> Result<String, String> {
    let names = hosted_names(store).await.map_err(|e| e.to_string())?;
    let settings = Settings::from_config(config);
    tokio::task::spawn_blocking(move || update(&settings, &names, None, Utc::now()))
        .await
        .map_err(|e| format!("statistics task: {e}"))?
        .map(|r| r.summary())
        .map_err(|e| e.to_string())
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
    let _lock = lock(&settings.state_file)?;
    let mut st = State::load(&settings.state_file)?;
    let mut parser = Parser::new(Domains::new(names), settings.zone, now);
    parser.import(st.carry());
    let mut report = Report::default();
    let log = file.unwrap_or(&settings.log_file);
    if log.exists() {
        let key = log.display().to_string();
        let (mark, r) = state::read_file(log, st.files.get(&key), &mut parser)?;
        st.files.insert(key.clone(), mark);
        report.source = key;
        report.rotated = r.rotated;
        report.truncated = r.truncated;
    } else if file.is_none() && settings.journal {
        st.journal_cursor = read_journal(st.journal_cursor.take(), &mut parser)?;
        report.source = "journal".into();
    } else {
        return Err(StatsError::NoLog {
            path: log.display().to_string(),
        });
    }
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
    st.carry = parser.export();
    st.save(&settings.state_file)?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
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

/// Streams the mail facility of the journal after `cursor`; returns the new cursor.
fn read_journal(cursor: Option<String>, parser: &mut Parser) -> Result<Option<String>, StatsError> {
    let mut cmd = Command::new("journalctl");
    cmd.args([
        "--output=short-iso",
        "--no-pager",
        "--quiet",
        "--show-cursor",
        "SYSLOG_FACILITY=2",
    ]);
    if let Some(c) = &cursor {
        cmd.arg(format!("--after-cursor={c}"));
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| StatsError::Journal(format!("cannot run journalctl: {e}")))?;
    let Some(stdout) = child.stdout.take() else {
        return Err(StatsError::Journal("no output pipe".into()));
    };
    let mut tail = TailReader {
        inner: stdout,
        tail: Vec::new(),
    };
    state::feed_stream(&mut tail, 0, parser, true)
        .map_err(|e| StatsError::Journal(e.to_string()))?;
    let out = child
        .wait_with_output()
        .map_err(|e| StatsError::Journal(e.to_string()))?;
    if !out.status.success() {
        return Err(StatsError::Journal(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    let text = String::from_utf8_lossy(&tail.tail);
    let new = text
        .rsplit_once("-- cursor: ")
        .map(|(_, c)| c.trim().to_string())
        .filter(|c| !c.is_empty());
    if new.is_some() {
        parser.input.skipped = parser.input.skipped.saturating_sub(1); // the cursor line
    }
    Ok(new.or(cursor))
}

/// Keeps the last bytes read (where journalctl prints the cursor).
#[derive(Debug)]
struct TailReader<R> {
    inner: R,
    tail: Vec<u8>,
}

impl<R: std::io::Read> std::io::Read for TailReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.tail.extend_from_slice(&buf[..n]);
        if self.tail.len() > 4096 {
            let cut = self.tail.len() - 1024;
            self.tail.drain(..cut);
        }
        Ok(n)
    }
}

/// Totals per counter of `name` over the last `seconds` before `now`.
pub fn show(
    rrd_dir: &Path,
    name: &str,
    seconds: i64,
    now: DateTime<Utc>,
) -> Result<std::collections::BTreeMap<String, f64>, StatsError> {
    let end = now.timestamp();
    Rrd::new(rrd_dir).totals(name, end - seconds, end)
}
