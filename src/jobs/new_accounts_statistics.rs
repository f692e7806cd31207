//! `new_accounts_statistics` (Modoboa's update_statistics): the number of accounts created in
//! each hour goes into `<paths.rrd>/new_accounts.rrd` through the `rrdtool` program, in
//! Modoboa's layout and scale, so a Modoboa RRD directory keeps working and Modoboa reads
//! modobox's: step 3600 s, one ABSOLUTE data source, Modoboa's four AVERAGE archives, and the
//! count written times 60 (Modoboa's graph divides by the step and multiplies by 60 again).
//! Every whole hour since the file's last one is written (a server down for a day leaves no
//! gap); a missing file is rebuilt from the accounts' creation dates, and a file in another
//! layout (modobox before it followed Modoboa's) is set aside and rebuilt.

use chrono::{DateTime, Duration, DurationRound, TimeZone, Utc};

use super::{JobContext, JobError};
use crate::store::accounts;
use crate::system::cmd::{self, Cmd, CmdError};

pub const FILE: &str = "new_accounts.rrd";
const RRDTOOL: &str = "rrdtool";
const STEP: i64 = 3600;
/// Modoboa's archives (`modoboa/maillog/.../update_statistics.py`): 48 hours, 31 days, 52 weeks,
/// and 24 rows of 5208 hours.
const RRAS: [(u32, u32); 4] = [(1, 48), (24, 31), (168, 52), (5208, 24)];
/// Modoboa writes the hour's count times this.
const SCALE: i64 = 60;
/// The longest history the archives hold (24 rows of 5208 hours): a rebuild starts no earlier.
const HISTORY_HOURS: i64 = 5208 * 24;
/// Hours written per `rrdtool update`.
const UPDATES_AT_ONCE: usize = 500;

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
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The previous whole hour: `[start, end)`.
pub fn previous_hour(now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let end = now.duration_trunc(Duration::hours(1)).unwrap_or(now);
    (end - Duration::hours(1), end)
}

/// Whether `rrdtool info` describes Modoboa's layout.
fn is_modoboa_layout(info: &str) -> bool {
    let value = |key: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(" = "))
            .map(|v| v.trim_matches('"').to_string())
    };
    let archives = info
        .lines()
        .filter(|l| l.starts_with("rra[") && l.contains("].cf = "))
        .count();
    value("step").as_deref() == Some("3600")
        && value("ds[new_accounts].type").as_deref() == Some("ABSOLUTE")
        && archives == RRAS.len()
        && RRAS.iter().enumerate().all(|(i, (per_row, rows))| {
            value(&format!("rra[{i}].cf")).as_deref() == Some("AVERAGE")
                && value(&format!("rra[{i}].pdp_per_row")) == Some(per_row.to_string())
                && value(&format!("rra[{i}].rows")) == Some(rows.to_string())
        })
}

/// The time of the file's last hour, or None when there is no file in Modoboa's layout (one in
/// another layout is renamed `new_accounts.rrd.old-layout` first).
fn last_hour(path: &str) -> Result<Option<i64>, RrdError> {
    if !cmd::exists(RRDTOOL) {
        return Err(RrdError::NoRrdtool {
            path: path.to_string(),
        });
    }
    if !std::path::Path::new(path).exists() {
        return Ok(None);
    }
    let info = Cmd::new(RRDTOOL).args(["info", path]).run()?;
    if !is_modoboa_layout(&info.stdout) {
        let aside = format!("{path}.old-layout");
        std::fs::rename(path, &aside).map_err(|source| RrdError::Io {
            path: path.into(),
            source,
        })?;
        tracing::info!("{path} was not in Modoboa's layout: moved to {aside}, rebuilt");
        return Ok(None);
    }
    let last = Cmd::new(RRDTOOL).args(["last", path]).run()?;
    let last = last.stdout.trim().parse().map_err(|_| RrdError::Last {
        path: path.to_string(),
        answer: last.stdout.trim().to_string(),
    })?;
    Ok(Some(last))
}

/// Writes one value per hour ending at each of `hours` (the file made first if `create`).
fn write(path: &str, create: Option<i64>, hours: &[(i64, i64)]) -> Result<(), RrdError> {
    if let Some(start) = create {
        let mut c = Cmd::new(RRDTOOL)
            .args(["create", path, "--no-overwrite", "--step"])
            .arg(STEP.to_string())
            .arg("--start")
            .arg((start - 1).to_string())
            .arg("DS:new_accounts:ABSOLUTE:7200:0:U");
        for (per_row, rows) in RRAS {
            c = c.arg(format!("RRA:AVERAGE:0.5:{per_row}:{rows}"));
        }
        c.output()?;
        // --no-overwrite fails when another run created it first: only its absence is an error.
        if !std::path::Path::new(path).exists() {
            return Err(RrdError::NotCreated {
                path: path.to_string(),
            });
        }
    }
    for chunk in hours.chunks(UPDATES_AT_ONCE) {
        Cmd::new(RRDTOOL)
            .args(["update", path])
            .args(chunk.iter().map(|(end, n)| format!("{end}:{}", n * SCALE)))
            .run()?;
    }
    Ok(())
}

pub async fn run(ctx: &JobContext, dry_run: bool) -> Result<String, JobError> {
    let (_, end) = previous_hour(Utc::now());
    let dir = ctx.config.paths.rrd.as_path().to_path_buf();
    let path = dir.join(FILE).display().to_string();
    let p = path.clone();
    let last = if dry_run && !std::path::Path::new(&path).exists() {
        None
    } else {
        tokio::task::spawn_blocking(move || last_hour(&p)).await??
    };
    if last.is_some_and(|l| l >= end.timestamp()) {
        return Ok(format!(
            "hour {}–{} already recorded in {path}",
            (end - Duration::hours(1)).format("%H:%M"),
            end.format("%H:%M")
        ));
    }
    let mut tx = ctx.store.begin().await?;
    // From the file's last hour; a new file from the first account's hour (its history).
    let start = match last {
        Some(l) => Utc.timestamp_opt(l, 0).single().unwrap_or(end),
        None => {
            let first = accounts::first_joined(&mut tx).await?.unwrap_or(end);
            first
                .duration_trunc(Duration::hours(1))
                .unwrap_or(first)
                .max(end - Duration::hours(HISTORY_HOURS))
                .min(end - Duration::hours(1))
        }
    };
    let joined = accounts::joined_between(&mut tx, start, end).await?;
    drop(tx);
    let mut hours: Vec<(i64, i64)> = (1..)
        .map(|h| start.timestamp() + h * STEP)
        .take_while(|t| *t <= end.timestamp())
        .map(|t| (t, 0))
        .collect();
    for j in &joined {
        let i = (j.timestamp() - start.timestamp()).div_euclid(STEP);
        if let Some(slot) = usize::try_from(i).ok().and_then(|i| hours.get_mut(i)) {
            slot.1 += 1;
        }
    }
    let created: i64 = hours.iter().map(|h| h.1).sum();
    let last_count = hours.last().map_or(0, |h| h.1);
    let span = format!(
        "{} hour(s) up to {}",
        hours.len(),
        end.format("%Y-%m-%d %H:%M")
    );
    if dry_run {
        return Ok(format!(
            "would record {created} accounts created in {span} in {path}"
        ));
    }
    let create = last.is_none().then_some(start.timestamp());
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir).map_err(|source| RrdError::Io { path: dir, source })?;
        write(&path, create, &hours).map(|()| path)
    })
    .await?
    .map(|path| {
        format!(
            "{last_count} new accounts in the last hour recorded in {path} ({created} in {span}{})",
            if create.is_some() {
                ", file rebuilt"
            } else {
                ""
            }
        )
    })
    .map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modoboa_layout_is_recognised() {
        let modoboa = "step = 3600\nds[new_accounts].type = \"ABSOLUTE\"\n\
            rra[0].cf = \"AVERAGE\"\nrra[0].rows = 48\nrra[0].pdp_per_row = 1\n\
            rra[1].cf = \"AVERAGE\"\nrra[1].rows = 31\nrra[1].pdp_per_row = 24\n\
            rra[2].cf = \"AVERAGE\"\nrra[2].rows = 52\nrra[2].pdp_per_row = 168\n\
            rra[3].cf = \"AVERAGE\"\nrra[3].rows = 24\nrra[3].pdp_per_row = 5208\n";
        assert!(is_modoboa_layout(modoboa));
        let old = modoboa.replace("rra[0].rows = 48", "rra[0].rows = 744");
        assert!(!is_modoboa_layout(&old));
        let more = format!("{modoboa}rra[4].cf = \"MAX\"\n");
        assert!(!is_modoboa_layout(&more));
    }

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
