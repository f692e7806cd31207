//! The upgrade's journal: `<data>/upgrade/journal.json` (0600) says which phase an upgrade
//! reached, written before each phase starts, so a process that finds it open after a crash
//! knows whether there is anything to roll back. A finished upgrade (upgraded, rolled back,
//! or failed to roll back) moves to `history.jsonl`, one line each, for `upgrade --history`.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::system::fs::write_atomic;
use crate::system::maintenance;

/// The phases in order. Everything from `Maintenance` on changes the server, so a failure
/// there (or a crash) is rolled back; before it there is nothing to undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Preflight,
    RestorePoint,
    MigrationDryRun,
    Maintenance,
    /// The new binary's install steps: binary swap, migrations, three-way render,
    /// validators, restarts of what changed.
    Install,
    Lookups,
    HealthGate,
    Commit,
    RollingBack,
}

impl Phase {
    pub fn changes_the_server(self) -> bool {
        self >= Phase::Maintenance
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "result")]
pub enum Outcome {
    Upgraded,
    /// Failed before changing anything.
    Refused {
        failure: String,
    },
    RolledBack {
        failure: String,
    },
    RollbackFailed {
        failure: String,
        rollback_error: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseTime {
    pub phase: Phase,
    /// The install step running, within `Install`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub started: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    pub id: String,
    pub from: String,
    pub to: String,
    /// `rollback`: going back to a restore point by hand.
    pub kind: String,
    pub started: DateTime<Utc>,
    pub restore_point: Option<PathBuf>,
    pub phases: Vec<PhaseTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<DateTime<Utc>>,
    /// Seconds from the failure to the end of the rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_seconds: Option<f64>,
}

pub fn journal_path(data: &Path) -> PathBuf {
    maintenance::dir(data).join("journal.json")
}

pub fn history_path(data: &Path) -> PathBuf {
    maintenance::dir(data).join("history.jsonl")
}

impl Journal {
    pub fn start(data: &Path, kind: &str, from: &str, to: &str) -> std::io::Result<Self> {
        let now = Utc::now();
        let j = Journal {
            id: now.format("%Y%m%dT%H%M%SZ").to_string(),
            from: from.into(),
            to: to.into(),
            kind: kind.into(),
            started: now,
            restore_point: None,
            phases: Vec::new(),
            outcome: None,
            finished: None,
            rollback_seconds: None,
        };
        j.save(data)?;
        Ok(j)
    }

    /// The open journal, if an upgrade did not finish.
    pub fn open(data: &Path) -> std::io::Result<Option<Self>> {
        let path = journal_path(data);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn save(&self, data: &Path) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        write_atomic(&journal_path(data), &text, 0o600, None)
    }

    /// Records (and saves) that `phase` starts.
    pub fn enter(&mut self, data: &Path, phase: Phase, step: Option<&str>) -> std::io::Result<()> {
        self.phases.push(PhaseTime {
            phase,
            step: step.map(str::to_string),
            started: Utc::now(),
        });
        self.save(data)
    }

    pub fn phase(&self) -> Phase {
        self.phases.last().map_or(Phase::Preflight, |p| p.phase)
    }

    /// The furthest phase reached before any rollback started.
    pub fn reached(&self) -> Phase {
        self.phases
            .iter()
            .map(|p| p.phase)
            .filter(|p| *p != Phase::RollingBack)
            .max()
            .unwrap_or(Phase::Preflight)
    }

    /// Closes the journal: appended to the history, then removed.
    pub fn close(mut self, data: &Path, outcome: Outcome) -> std::io::Result<Self> {
        self.outcome = Some(outcome);
        self.finished = Some(Utc::now());
        let mut line = serde_json::to_vec(&self).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let path = history_path(data);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        f.write_all(&line)?;
        f.sync_all()?;
        std::fs::remove_file(journal_path(data))?;
        Ok(self)
    }
}

/// Every finished upgrade, oldest first (lines that do not parse are skipped).
pub fn history(data: &Path) -> std::io::Result<Vec<Journal>> {
    match std::fs::read_to_string(history_path(data)) {
        Ok(text) => Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_is_open_until_closed_then_in_the_history() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path();
        assert!(Journal::open(data).unwrap().is_none());
        let mut j = Journal::start(data, "upgrade", "0.1.0", "0.2.0").unwrap();
        j.enter(data, Phase::Preflight, None).unwrap();
        j.enter(data, Phase::Install, Some("binary")).unwrap();
        let found = Journal::open(data).unwrap().expect("open");
        assert_eq!(found.phase(), Phase::Install);
        assert!(found.reached().changes_the_server());
        let mode = std::fs::metadata(journal_path(data)).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        j.enter(data, Phase::RollingBack, None).unwrap();
        assert_eq!(j.reached(), Phase::Install);
        j.close(
            data,
            Outcome::RolledBack {
                failure: "x".into(),
            },
        )
        .unwrap();
        assert!(Journal::open(data).unwrap().is_none());
        let h = history(data).unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].to, "0.2.0");
        assert!(matches!(h[0].outcome, Some(Outcome::RolledBack { .. })));
    }
}
