//! `new_accounts_statistics` (Modoboa's update_statistics): the number of accounts created in
//! the previous hour goes into `<paths.rrd>/new_accounts.rrd` through the `rrdtool` program
//! (created when missing: step 3600 s, one ABSOLUTE data source). The statistics issue owns the
//! RRD layer; this stays the minimum. Re-runnable: an hour already in the file is not added
//! again.

use chrono::{DateTime, Duration, DurationRound, Utc};

use super::JobContext;
use crate::store::accounts;
use crate::system::cmd::{self, Cmd};

pub const FILE: &str = "new_accounts.rrd";
const RRDTOOL: &str = "rrdtool";

/// The previous whole hour: `[start, end)`.
pub fn previous_hour(now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let end = now.duration_trunc(Duration::hours(1)).unwrap_or(now);
    (end - Duration::hours(1), end)
}

fn rrd(path: &str, hour_start: i64, hour_end: i64, count: i64) -> Result<String, String> {
    if !cmd::exists(RRDTOOL) {
        return Err(format!(
            "the `{RRDTOOL}` program is not installed (`modobox install` installs it with the \
             statistics packages): {path} cannot be updated"
        ));
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
            .output()
            .map_err(|e| e.to_string())?;
        // --no-overwrite fails when another run created it first: only its absence is an error.
        if !std::path::Path::new(path).exists() {
            return Err(format!("rrdtool create {path} made no file"));
        }
    }
    let last = Cmd::new(RRDTOOL)
        .args(["last", path])
        .run()
        .map_err(|e| e.to_string())?;
    let last: i64 = last.stdout.trim().parse().map_err(|_| {
        format!(
            "rrdtool last {path}: unexpected answer {:?}",
            last.stdout.trim()
        )
    })?;
    if last >= hour_end {
        return Ok(format!(
            "{count} new accounts: hour already recorded in {path}"
        ));
    }
    Cmd::new(RRDTOOL)
        .args(["update", path])
        .arg(format!("{hour_end}:{count}"))
        .run()
        .map_err(|e| e.to_string())?;
    Ok(format!("{count} new accounts recorded in {path}"))
}

pub async fn run(ctx: &JobContext, dry_run: bool) -> Result<String, String> {
    let (start, end) = previous_hour(Utc::now());
    let count = async {
        let mut tx = ctx.store.begin().await?;
        accounts::accounts_created_between(&mut tx, start, end).await
    }
    .await
    .map_err(|e| e.to_string())?;
    let dir = ctx.config.paths.rrd.as_path().to_path_buf();
    let path = dir.join(FILE).display().to_string();
    if dry_run {
        return Ok(format!(
            "would record {count} accounts created between {} and {} in {path}",
            start.format("%H:%M"),
            end.format("%H:%M")
        ));
    }
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        rrd(&path, start.timestamp(), end.timestamp(), count)
    })
    .await
    .map_err(|e| e.to_string())?
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
