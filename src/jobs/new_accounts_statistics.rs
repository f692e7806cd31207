//! `new_accounts_statistics` (Modoboa's update_statistics): the number of accounts created in
//! the previous hour goes into `<paths.rrd>/new_accounts.rrd` through the `rrdtool` program
//! (created when missing: step 3600 s, one ABSOLUTE data source). The statistics issue owns the
//! RRD layer; this stays the minimum. Re-runnable: an hour already in the file is not added
//! again.

use chrono::{DateTime, Duration, DurationRound, Utc};

use super::{JobContext, JobError};
use crate::store::accounts;
use crate::system::cmd::{self, Cmd, CmdError};

pub const FILE: &str = "new_accounts.rrd";
const RRDTOOL: &str = "rrdtool";

/// Why the count could not be written to the RRD file.
#[derive(Debug, thiserror::Error)]
pub enum RrdError {
    #[error(
        "the `{RRDTOOL}` program is not installed (`modobox install` installs it with the \
         statistics packages): {path} cannot be updated"
    )]
    NoRrdtool { path: String },
    #[error(transparent)]
    Rrdtool(#[from] CmdError),
    #[error("rrdtool create {path} made no file")]
    NotCreated { path: String },
    #[error("rrdtool last {path}: unexpected answer {answer:?}")]
    Last { path: String, answer: String },
    #[error("{}: {source}", dir.display())]
    Dir {
        dir: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The previous whole hour: `[start, end)`.
pub fn previous_hour(now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let end = now.duration_trunc(Duration::hours(1)).unwrap_or(now);
    (end - Duration::hours(1), end)
}

fn rrd(path: &str, hour_start: i64, hour_end: i64, count: i64) -> Result<String, RrdError> {
    if !cmd::exists(RRDTOOL) {
        return Err(RrdError::NoRrdtool {
            path: path.to_string(),
        });
    }
    if !std::path::Path::new(path).exists() {
        Cmd::new(RRDTOOL)
            .args([
                "create",
                path,
                "--no-overwrite",
                "--step",
                "3600",
                "--start",
            ])
            .arg((hour_start - 1).to_string())
            .args([
                "DS:new_accounts:ABSOLUTE:7200:0:U",
                // One row per hour for 31 days, one per day for a year.
                "RRA:AVERAGE:0.5:1:744",
                "RRA:AVERAGE:0.5:24:366",
                "RRA:MAX:0.5:1:744",
                "RRA:MAX:0.5:24:366",
            ])
            .output()?;
        // --no-overwrite fails when another run created it first: only its absence is an error.
        if !std::path::Path::new(path).exists() {
            return Err(RrdError::NotCreated {
                path: path.to_string(),
            });
        }
    }
    let last = Cmd::new(RRDTOOL).args(["last", path]).run()?;
    let last: i64 = last.stdout.trim().parse().map_err(|_| RrdError::Last {
        path: path.to_string(),
        answer: last.stdout.trim().to_string(),
    })?;
    if last >= hour_end {
        return Ok(format!(
            "{count} new accounts: hour already recorded in {path}"
        ));
    }
    Cmd::new(RRDTOOL)
        .args(["update", path])
        .arg(format!("{hour_end}:{count}"))
        .run()?;
    Ok(format!("{count} new accounts recorded in {path}"))
}

pub async fn run(ctx: &JobContext, dry_run: bool) -> Result<String, JobError> {
    let (start, end) = previous_hour(Utc::now());
    let count = async {
        let mut tx = ctx.store.begin().await?;
        accounts::accounts_created_between(&mut tx, start, end).await
    }
    .await?;
    let dir = ctx.config.paths.rrd.as_path().to_path_buf();
    let path = dir.join(FILE).display().to_string();
    if dry_run {
        return Ok(format!(
            "would record {count} accounts created between {} and {} in {path}",
            start.format("%H:%M"),
            end.format("%H:%M")
        ));
    }
    let recorded = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir).map_err(|source| RrdError::Dir {
            dir: dir.clone(),
            source,
        })?;
        rrd(&path, start.timestamp(), end.timestamp(), count)
    })
    .await??;
    Ok(recorded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_previous_hour_is_whole() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T16:42:10Z")
            .unwrap()
            .with_timezone(&Utc);
        let (s, e) = previous_hour(now);
        assert_eq!(s.to_rfc3339(), "2026-12-01T15:00:00+00:00");
        assert_eq!(e.to_rfc3339(), "2026-12-01T16:00:00+00:00");
    }
}
