//! The backup repository, kept by restic (Debian's `restic` package) driven through its `--json`
//! output. restic encrypts everything; its password reaches it on standard input and the
//! repository location (which may hold credentials, `rest:https://user:pw@host/`) through the
//! environment, so neither shows in `ps`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::BackupError;
use crate::names::BackupRepository;
use crate::secrets::Secret;
use crate::system::cmd::{Cmd, Output};

const PASSWORD_NOTE: &str = "reading repository password";

/// One repository and what opens it.
#[derive(Debug, Clone)]
pub struct Repository {
    pub location: BackupRepository,
    password: Secret,
    /// restic's cache (index and tree blobs), kept between runs for speed.
    cache_dir: PathBuf,
}

/// A snapshot as `restic snapshots --json` lists it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Snapshot {
    pub id: String,
    pub short_id: String,
    pub time: String,
    pub hostname: String,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    pub paths: Vec<String>,
}

/// The last line of `restic backup --json`.
#[derive(Debug, Clone, Deserialize)]
pub struct BackupSummary {
    pub snapshot_id: String,
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    pub data_added: u64,
    pub total_files_processed: u64,
    pub total_bytes_processed: u64,
    pub total_duration: f64,
}

/// How many snapshots `forget` keeps.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
}

impl Repository {
    pub fn new(location: &BackupRepository, password: Secret, cache_dir: PathBuf) -> Self {
        Repository {
            location: location.clone(),
            password,
            cache_dir,
        }
    }

    fn cmd(&self, args: &[&str]) -> Cmd {
        let mut stdin = self.password.expose().as_bytes().to_vec();
        stdin.push(b'\n');
        Cmd::new("restic")
            .arg("--json")
            .arg("--cache-dir")
            .arg(self.cache_dir.to_string_lossy())
            .args(args.iter().copied())
            .env("RESTIC_REPOSITORY", self.location.expose())
            .stdin(stdin)
    }

    /// Runs restic and turns its failures into errors that say what is wrong. A lock left in
    /// the repository by a restic that was killed (a crash, a reboot mid-backup) makes restic
    /// refuse to run: `restic unlock` removes the locks whose process is gone (same host) or
    /// that are 30 minutes old, never a live one, then the command runs once more.
    fn run(&self, args: &[&str]) -> Result<Output, BackupError> {
        match self.run_once(args) {
            Err(BackupError::RepositoryLocked { .. }) => {
                self.run_once(&["unlock"])?;
                self.run_once(args)
            }
            other => other,
        }
    }

    fn run_once(&self, args: &[&str]) -> Result<Output, BackupError> {
        if !crate::system::cmd::exists("restic") {
            return Err(BackupError::Repository(
                "restic is not installed (apt install restic)".into(),
            ));
        }
        // On a full disk restic retries each write with backoff, for up to 15 minutes per
        // file: the first "no space left on device" ends it (reported below as NoSpace).
        let mut out = self
            .cmd(args)
            .output_stopping_on(|line| {
                line.to_ascii_lowercase()
                    .contains("no space left on device")
            })
            .map_err(|e| BackupError::Repository(e.to_string()))?;
        // restic says where the password came from on standard output, before its JSON.
        out.stdout = out
            .stdout
            .lines()
            .filter(|l| !l.starts_with(PASSWORD_NOTE))
            .collect::<Vec<_>>()
            .join("\n");
        if out.success {
            return Ok(out);
        }
        Err(self.failure(args.first().copied().unwrap_or_default(), &out))
    }

    fn failure(&self, command: &str, out: &Output) -> BackupError {
        let text = out.stderr.trim();
        let detail = text
            .lines()
            .filter(|l| !l.starts_with(PASSWORD_NOTE))
            .collect::<Vec<_>>()
            .join("\n");
        let lower = detail.to_ascii_lowercase();
        if lower.contains("wrong password") {
            BackupError::WrongPassword(self.location.redacted())
        } else if lower.contains("repository does not exist")
            || lower.contains("unable to open config file")
            || lower.contains("is there a repository at the following location")
        {
            BackupError::NoRepository(self.location.redacted())
        } else if lower.contains("no space left on device") {
            // restic names the file it could not write: the repository's or, for a restore,
            // the scratch directory's.
            BackupError::NoSpace {
                command: command.to_string(),
                location: self.location.redacted(),
                detail: last_lines(&detail, 3),
            }
        } else if lower.contains("repository is already locked") {
            BackupError::RepositoryLocked {
                location: self.location.redacted(),
                detail: last_lines(&detail, 4),
            }
        } else {
            BackupError::Repository(format!("{}: {}", self.location, last_lines(&detail, 8)))
        }
    }

    /// Creates the repository.
    pub fn init(&self) -> Result<(), BackupError> {
        self.run(&["init"]).map(|_| ())
    }

    /// Stores the directory `dir` (always the same path, so restic finds the previous snapshot
    /// as parent and skips unchanged files) with these tags.
    pub fn backup(
        &self,
        dir: &Path,
        host: &str,
        tags: &[&str],
    ) -> Result<BackupSummary, BackupError> {
        let dir_text = dir.to_string_lossy();
        let mut args = vec!["backup", "--quiet", "--ignore-ctime", "--host", host];
        for t in tags {
            args.push("--tag");
            args.push(t);
        }
        args.push(&dir_text);
        let out = self.run(&args)?;
        out.stdout
            .lines()
            .rev()
            .find_map(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .filter(|v| v["message_type"] == "summary")
            })
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| BackupError::Repository("restic backup printed no summary".into()))
    }

    pub fn snapshots(&self) -> Result<Vec<Snapshot>, BackupError> {
        let out = self.run(&["snapshots"])?;
        let mut list: Vec<Snapshot> = serde_json::from_str(out.stdout.trim())
            .map_err(|e| BackupError::Repository(format!("restic snapshots: {e}")))?;
        list.sort_by(|a, b| a.time.cmp(&b.time));
        Ok(list)
    }

    /// The snapshot named by an id (full or short) or `latest`.
    pub fn find(&self, id: &str) -> Result<Snapshot, BackupError> {
        let list = self.snapshots()?;
        let found = if id == "latest" {
            list.last().cloned()
        } else {
            list.into_iter()
                .find(|s| s.id == id || s.short_id == id || (id.len() >= 8 && s.id.starts_with(id)))
        };
        found.ok_or_else(|| BackupError::NoSuchBackup(id.to_string()))
    }

    /// Restores `paths` (absolute paths as they were backed up; all when empty) of `snapshot`
    /// into `target`.
    pub fn restore(
        &self,
        snapshot: &str,
        target: &Path,
        paths: &[&str],
    ) -> Result<(), BackupError> {
        let target_text = target.to_string_lossy();
        let mut args = vec!["restore", snapshot, "--target", &target_text];
        for p in paths {
            args.push("--include");
            args.push(p);
        }
        self.run(&args).map(|_| ())
    }

    pub fn forget(&self, keep: Retention) -> Result<(), BackupError> {
        let (d, w, m) = (
            keep.daily.to_string(),
            keep.weekly.to_string(),
            keep.monthly.to_string(),
        );
        self.run(&[
            "forget",
            "--prune",
            "--keep-daily",
            &d,
            "--keep-weekly",
            &w,
            "--keep-monthly",
            &m,
        ])
        .map(|_| ())
    }

    /// `restic check`, reading back `subset` of the data (`10%`, `1/5`...).
    pub fn check(&self, subset: &str) -> Result<(), BackupError> {
        let arg = format!("--read-data-subset={subset}");
        self.run(&["check", &arg]).map(|_| ())
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("; ")
}
