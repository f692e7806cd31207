//! Where the parser stopped: per log file its mark (`source::FileMark`), the journal cursor,
//! the messages still in flight and the counters of the minute not yet complete. Persisted as
//! JSON next to the RRD files.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::parser::{Activity, Carry, Counters, Position};
use super::source::FileMark;
use super::StatsError;

const VERSION: u32 = 1;
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// Per log file path.
    #[serde(default)]
    pub files: BTreeMap<String, FileMark>,
    #[serde(default)]
    pub journal_cursor: Option<String>,
    #[serde(default)]
    pub carry: Carry,
    /// Counters of minutes not written to the RRD files yet: (minute, name, counters).
    #[serde(default)]
    pub pending: Vec<(i64, String, Counters)>,
    /// The source read last (`journal` or a file's path) and where it stopped, in time.
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub position: Option<Position>,
    #[serde(default)]
    pub activity: Activity,
    #[serde(default)]
    pub last_run: Option<LastRun>,
    /// Since when every line read was one the parser cannot read (seconds).
    #[serde(default)]
    pub unreadable_since: Option<i64>,
}

/// What the last run read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRun {
    /// Seconds since the epoch.
    pub at: i64,
    pub source: String,
    pub lines: u64,
    pub skipped: u64,
}

impl State {
    pub fn load(path: &Path) -> Result<State, StatsError> {
        match std::fs::read(path) {
            Ok(b) => {
                let s: State = serde_json::from_slice(&b).map_err(|e| StatsError::State {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
                Ok(s)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State {
                version: VERSION,
                ..State::default()
            }),
            Err(e) => Err(StatsError::io(path, e)),
        }
    }

    /// Written to a temporary file then renamed: a crash never leaves half a state. Mode 0600:
    /// the messages in flight name their recipients.
    pub fn save(&self, path: &Path) -> Result<(), StatsError> {
        let text = serde_json::to_vec(self).map_err(|e| StatsError::State {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        crate::system::fs::write_atomic(path, &text, 0o640, None)
            .map_err(|e| StatsError::io(path, e))
    }

    /// The pending counters of `name` for the minutes `from..to` (minutes since the epoch).
    pub fn pending_of(&self, name: &str, from: i64, to: i64) -> Counters {
        let mut c = Counters::default();
        for (m, n, v) in &self.pending {
            if (from..to).contains(m) && n == name {
                c.add(v);
            }
        }
        c
    }

    /// Merges rows into the pending minutes.
    pub fn add_pending(&mut self, rows: Vec<(i64, String, Counters)>) {
        let mut map: HashMap<(i64, String), Counters> = self
            .pending
            .drain(..)
            .map(|(m, n, c)| ((m, n), c))
            .collect();
        for (m, n, c) in rows {
            map.entry((m, n)).or_default().add(&c);
        }
        let mut v: Vec<(i64, String, Counters)> =
            map.into_iter().map(|((m, n), c)| (m, n, c)).collect();
        v.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        self.pending = v;
    }

    /// Takes the pending minutes before `cut`.
    pub fn take_pending(&mut self, cut: i64) -> Vec<(i64, String, Counters)> {
        let (out, keep): (Vec<_>, Vec<_>) = self.pending.drain(..).partition(|r| r.0 < cut);
        self.pending = keep;
        out
    }

    pub fn carry(&mut self) -> Carry {
        std::mem::take(&mut self.carry)
    }
}
