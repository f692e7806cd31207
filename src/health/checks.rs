//! Checks of the host's state, as opposed to a daemon's answer: the certificate's expiry, free
//! disk space, Postfix's queue, and rendered files edited by hand or gone. They are plain
//! synchronous file-system reads (the supervisor runs them on a blocking thread); each one
//! returns a `Check`, never an error: what cannot be read is itself the finding.

use std::fmt;
use std::io;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::render::manifest::{checksum, Manifest};

/// Below this many days left, a certificate is a warning.
pub const CERT_WARN_DAYS: i64 = 30;
/// Above this many queued messages, Postfix's queue is a warning.
pub const QUEUE_WARN: u64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "fail",
        })
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub level: Level,
    pub message: String,
}

impl Check {
    pub fn new(name: impl Into<String>, level: Level, message: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            level,
            message: message.into(),
        }
    }
}

/// The certificate at `cert_path` (PEM; the first certificate of a chain): `Warn` when fewer
/// than `warn_days` days are left, `Fail` when it expired or cannot be read.
pub fn cert_expiry(cert_path: &Path, warn_days: i64) -> Check {
    cert_expiry_at(cert_path, warn_days, Utc::now())
}

fn cert_expiry_at(cert_path: &Path, warn_days: i64, now: DateTime<Utc>) -> Check {
    let name = format!("certificate {}", cert_path.display());
    let pem = match std::fs::read_to_string(cert_path) {
        Ok(pem) => pem,
        Err(e) => return Check::new(name, Level::Fail, format!("cannot read it: {e}")),
    };
    let info = match crate::keys::tls::inspect(&pem) {
        Ok(info) => info,
        Err(e) => return Check::new(name, Level::Fail, e.to_string()),
    };
    let end = info.not_after.format("%Y-%m-%d %H:%M UTC");
    let left = info.not_after - now;
    if left <= chrono::Duration::zero() {
        return Check::new(name, Level::Fail, format!("expired on {end}"));
    }
    // Days begun count: a certificate made for 10 days reads "10 days", not 9.
    let days = (left.num_seconds() + 86_399) / 86_400;
    let plural = if days == 1 { "" } else { "s" };
    let level = if days < warn_days {
        Level::Warn
    } else {
        Level::Ok
    };
    let from = if info.self_signed {
        "self-signed".to_string()
    } else {
        format!("issued by {}", info.issuer)
    };
    Check::new(
        name,
        level,
        format!(
            "{days} day{plural} left (until {end}); {from}; for {}",
            info.dns_names.join(", ")
        ),
    )
}

/// Free space of the file system holding `path`, as an unprivileged process sees it:
/// `Fail` below `min_mb` MiB or `min_percent` % free, `Warn` below twice either.
pub fn free_space(path: &Path, min_mb: u64, min_percent: u8) -> Check {
    let name = format!("free space {}", path.display());
    let stat = match nix::sys::statvfs::statvfs(path) {
        Ok(stat) => stat,
        Err(e) => return Check::new(name, Level::Fail, format!("statvfs: {e}")),
    };
    let unit = stat.fragment_size().max(1);
    let free_mb = stat.blocks_available().saturating_mul(unit) / (1024 * 1024);
    let total = stat.blocks();
    let percent = if total == 0 {
        100.0
    } else {
        stat.blocks_available() as f64 * 100.0 / total as f64
    };
    let min_percent = f64::from(min_percent);
    let message = format!("{free_mb} MiB free ({percent:.1} %)");
    let level = if free_mb < min_mb || percent < min_percent {
        Level::Fail
    } else if free_mb < min_mb.saturating_mul(2) || percent < min_percent * 2.0 {
        Level::Warn
    } else {
        Level::Ok
    };
    Check::new(name, level, message)
}

/// Messages in each of Postfix's queues.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounts {
    pub incoming: u64,
    pub active: u64,
    pub deferred: u64,
    pub hold: u64,
}

impl QueueCounts {
    pub fn total(&self) -> u64 {
        self.incoming + self.active + self.deferred + self.hold
    }
}

/// Regular files under `dir`, recursively, symbolic links not followed. A missing directory
/// (or one Postfix removed meanwhile) holds nothing.
fn count_files(dir: &Path) -> io::Result<u64> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
    };
    let mut count = 0;
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let kind = match entry.file_type() {
            Ok(kind) => kind,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if kind.is_dir() {
            count += count_files(&entry.path())?;
        } else if kind.is_file() {
            count += 1;
        }
    }
    Ok(count)
}

/// Counts the queue files under `spool` (`/var/spool/postfix`) without running `postqueue`.
pub fn queue_counts(spool: &Path) -> io::Result<QueueCounts> {
    // A missing spool is an error; a missing queue directory inside it is an empty queue.
    std::fs::metadata(spool)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", spool.display())))?;
    Ok(QueueCounts {
        incoming: count_files(&spool.join("incoming"))?,
        active: count_files(&spool.join("active"))?,
        deferred: count_files(&spool.join("deferred"))?,
        hold: count_files(&spool.join("hold"))?,
    })
}

/// Postfix's queue under `spool`: `Warn` above `warn_over` messages, `Fail` when it cannot be
/// read.
pub fn postfix_queue(spool: &Path, warn_over: u64) -> Check {
    let name = "postfix queue";
    match queue_counts(spool) {
        Err(e) => Check::new(name, Level::Fail, format!("cannot count: {e}")),
        Ok(q) => {
            let total = q.total();
            let level = if total > warn_over {
                Level::Warn
            } else {
                Level::Ok
            };
            let plural = if total == 1 { "" } else { "s" };
            Check::new(
                name,
                level,
                format!(
                    "{total} message{plural} (incoming {}, active {}, deferred {}, hold {})",
                    q.incoming, q.active, q.deferred, q.hold
                ),
            )
        }
    }
}

/// How a rendered file left what modobox wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Drift {
    Changed,
    Missing,
    Unreadable(String),
}

/// Files of the render manifest whose content no longer matches its checksum, or that are gone.
pub fn drifted(manifest: &Manifest) -> Vec<(std::path::PathBuf, Drift)> {
    let mut out = Vec::new();
    for (path, sum) in &manifest.files {
        match std::fs::read(path) {
            Ok(content) if checksum(&content) == *sum => {}
            Ok(_) => out.push((path.clone(), Drift::Changed)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                out.push((path.clone(), Drift::Missing))
            }
            Err(e) => out.push((path.clone(), Drift::Unreadable(e.to_string()))),
        }
    }
    out
}

/// The files modobox rendered (its manifest at `manifest_path`) that were edited by hand or
/// removed: `Warn` listing them (modobox leaves hand edits alone; `modobox render` shows the
/// difference), `Fail` when the manifest cannot be read.
pub fn config_drift(manifest_path: &Path) -> Check {
    let name = "config drift";
    if !manifest_path.exists() {
        return Check::new(
            name,
            Level::Warn,
            format!(
                "no manifest at {} (nothing rendered yet?)",
                manifest_path.display()
            ),
        );
    }
    let manifest = match Manifest::load(manifest_path) {
        Ok(manifest) => manifest,
        Err(e) => return Check::new(name, Level::Fail, format!("manifest: {e}")),
    };
    let drift = drifted(&manifest);
    let total = manifest.files.len();
    if drift.is_empty() {
        return Check::new(
            name,
            Level::Ok,
            format!("{total} rendered files as written"),
        );
    }
    let list: Vec<String> = drift
        .iter()
        .map(|(path, how)| match how {
            Drift::Changed => format!("changed {}", path.display()),
            Drift::Missing => format!("missing {}", path.display()),
            Drift::Unreadable(e) => format!("unreadable {} ({e})", path.display()),
        })
        .collect();
    Check::new(
        name,
        Level::Warn,
        format!(
            "{} of {total} rendered files differ: {}",
            drift.len(),
            list.join("; ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::Hostname;
    use std::fs;

    fn cert_file(dir: &Path, days: u32) -> std::path::PathBuf {
        let host = Hostname::parse("hostname", "mail.example.test").unwrap();
        let pair = crate::keys::tls::generate_self_signed(&host, &[], days).unwrap();
        let path = dir.join(format!("cert-{days}.pem"));
        fs::write(&path, pair.cert_pem).unwrap();
        path
    }

    #[test]
    fn certificate_expiring_in_ten_days_warns() {
        let dir = tempfile::tempdir().unwrap();
        let path = cert_file(dir.path(), 10);
        let check = cert_expiry(&path, CERT_WARN_DAYS);
        assert_eq!(check.level, Level::Warn, "{check:?}");
        assert!(
            check.message.starts_with("10 days left (until "),
            "{check:?}"
        );
        assert_eq!(check.name, format!("certificate {}", path.display()));

        let check = cert_expiry(&path, 5);
        assert_eq!(check.level, Level::Ok, "{check:?}");
    }

    #[test]
    fn certificate_expired_unreadable_or_garbage_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = cert_file(dir.path(), 10);
        let later = Utc::now() + chrono::Duration::days(11);
        let check = cert_expiry_at(&path, CERT_WARN_DAYS, later);
        assert_eq!(check.level, Level::Fail);
        assert!(check.message.starts_with("expired on "), "{check:?}");

        let check = cert_expiry(&dir.path().join("absent.pem"), CERT_WARN_DAYS);
        assert_eq!(check.level, Level::Fail);
        assert!(check.message.starts_with("cannot read it: "), "{check:?}");

        let garbage = dir.path().join("garbage.pem");
        fs::write(&garbage, "not a certificate").unwrap();
        assert_eq!(cert_expiry(&garbage, CERT_WARN_DAYS).level, Level::Fail);
    }

    #[test]
    fn free_space_levels() {
        let dir = tempfile::tempdir().unwrap();
        let check = free_space(dir.path(), 0, 0);
        assert_eq!(check.level, Level::Ok, "{check:?}");
        assert!(check.message.contains(" MiB free ("), "{check:?}");

        assert_eq!(free_space(dir.path(), u64::MAX / 4, 0).level, Level::Fail);
        assert_eq!(free_space(dir.path(), 0, 100).level, Level::Fail);

        // Between the minimum and twice it: a warning.
        let stat = nix::sys::statvfs::statvfs(dir.path()).unwrap();
        let free_mb = stat.blocks_available() * stat.fragment_size() / (1024 * 1024);
        if free_mb >= 8 {
            let check = free_space(dir.path(), free_mb * 3 / 4, 0);
            assert_eq!(check.level, Level::Warn, "{check:?}");
        }

        let check = free_space(&dir.path().join("absent"), 0, 0);
        assert_eq!(check.level, Level::Fail);
        assert!(check.message.starts_with("statvfs: "), "{check:?}");
    }

    #[test]
    fn postfix_queue_counts_files_recursively() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path();
        let put = |rel: &str| {
            let path = spool.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, "queue file").unwrap();
        };
        put("incoming/4F1A2B3C4D");
        put("active/4F1A2B3C4E");
        put("active/4F1A2B3C4F");
        // Hashed subdirectories, as hash_queue_names sets them up for deferred.
        put("deferred/A/4A1B2C3D4E");
        put("deferred/B/4B1C2D3E4F");
        put("deferred/B/4B1C2D3E50");
        // Not queues.
        put("defer/A/4A1B2C3D4E");
        put("maildrop/4C1D2E3F40");
        put("private/note");
        fs::create_dir_all(spool.join("hold")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", spool.join("active/link")).unwrap();

        let counts = queue_counts(spool).unwrap();
        assert_eq!(
            counts,
            QueueCounts {
                incoming: 1,
                active: 2,
                deferred: 3,
                hold: 0
            }
        );
        let check = postfix_queue(spool, QUEUE_WARN);
        assert_eq!(check.level, Level::Ok);
        assert_eq!(
            check.message,
            "6 messages (incoming 1, active 2, deferred 3, hold 0)"
        );
        let check = postfix_queue(spool, 5);
        assert_eq!(check.level, Level::Warn);

        let check = postfix_queue(&spool.join("absent"), QUEUE_WARN);
        assert_eq!(check.level, Level::Fail);
        assert!(check.message.starts_with("cannot count: "), "{check:?}");
    }

    #[test]
    fn config_drift_lists_changed_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("main.cf");
        let edited = dir.path().join("dovecot.conf");
        let removed = dir.path().join("opendkim.conf");
        let mut manifest = Manifest::default();
        for path in [&kept, &edited, &removed] {
            let content = format!("# rendered {}\n", path.display());
            fs::write(path, &content).unwrap();
            manifest
                .files
                .insert(path.clone(), checksum(content.as_bytes()));
        }
        let manifest_path = dir.path().join(crate::render::manifest::FILE_NAME);
        manifest.save(&manifest_path).unwrap();

        let check = config_drift(&manifest_path);
        assert_eq!(check.level, Level::Ok);
        assert_eq!(check.message, "3 rendered files as written");

        fs::write(&edited, "# edited by hand\n").unwrap();
        fs::remove_file(&removed).unwrap();
        let check = config_drift(&manifest_path);
        assert_eq!(check.level, Level::Warn);
        // The manifest's order: paths sorted.
        assert_eq!(
            check.message,
            format!(
                "2 of 3 rendered files differ: changed {}; missing {}",
                edited.display(),
                removed.display()
            )
        );
        assert_eq!(
            drifted(&manifest),
            [
                (edited.clone(), Drift::Changed),
                (removed.clone(), Drift::Missing)
            ]
        );

        fs::write(&manifest_path, "{ not json").unwrap();
        assert_eq!(config_drift(&manifest_path).level, Level::Fail);
        assert_eq!(
            config_drift(&dir.path().join("absent.json")).level,
            Level::Warn
        );
    }

    #[test]
    fn checks_serialise() {
        let check = Check::new("postfix queue", Level::Warn, "120 messages");
        let json = serde_json::to_string(&check).unwrap();
        assert_eq!(
            json,
            r#"{"name":"postfix queue","level":"warn","message":"120 messages"}"#
        );
        assert_eq!(serde_json::from_str::<Check>(&json).unwrap(), check);
        assert!(Level::Ok < Level::Warn && Level::Warn < Level::Fail);
    }
}
