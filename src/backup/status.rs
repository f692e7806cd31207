//! The status line of backups (`modobox status`, the dashboard): the last backup and the last
//! verified restore, a warning when either failed or is later than its schedule allows.

use chrono::{DateTime, Utc};

use crate::config::{parse_cron, Config};
use crate::health::checks::{Check, Level};
use crate::store::{tasks, Store};

/// A run is late once its next slot after the last success is this far behind.
const GRACE: chrono::Duration = chrono::Duration::hours(1);

fn when(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let ago = now - t;
    let ago = if ago.num_hours() >= 48 {
        format!("{} days ago", ago.num_days())
    } else if ago.num_minutes() >= 120 {
        format!("{} h ago", ago.num_hours())
    } else {
        format!("{} min ago", ago.num_minutes().max(0))
    };
    format!("{} ({ago})", t.format("%Y-%m-%d %H:%M UTC"))
}

/// Whether a job last successful at `last_ok` has missed its schedule by now.
fn late(schedule: &str, last_ok: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let cron = parse_cron("schedule", schedule).ok()?;
    let due = cron.find_next_occurrence(&last_ok, false).ok()?;
    (now > due + GRACE).then_some(due)
}

pub async fn check(config: &Config, store: &Store, now: DateTime<Utc>) -> Check {
    let Some(repo) = &config.backup.repository else {
        return Check::new(
            "backup",
            Level::Ok,
            "off: no repository configured (set backup.repository, then `modobox backup create`)",
        );
    };
    let (last_ok, last, verified, last_verify) = match (
        tasks::last_ok(store, "backup").await,
        tasks::runs(store, "backup", 1).await,
        tasks::last_ok(store, "backup_verify").await,
        tasks::runs(store, "backup_verify", 1).await,
    ) {
        (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b.into_iter().next(), c, d.into_iter().next()),
        _ => return Check::new("backup", Level::Warn, "cannot read the backup runs"),
    };
    let mut problems = Vec::new();
    let mut facts = Vec::new();
    match &last_ok {
        Some(r) => {
            facts.push(format!("last backup {}", when(r.started_at, now)));
            if let Some(due) = late(&config.schedule.backup, r.started_at, now) {
                problems.push(format!("a backup was due {}", when(due, now)));
            }
        }
        None => problems.push("no backup yet".into()),
    }
    if let Some(r) = last.filter(|r| matches!(r.outcome.as_str(), "failed" | "timeout")) {
        problems.push(format!("the last backup run {}: {}", r.outcome, r.message));
    }
    match &verified {
        Some(r) => {
            facts.push(format!("last verified restore {}", when(r.started_at, now)));
            if let Some(due) = late(&config.schedule.backup_verify, r.started_at, now) {
                problems.push(format!("a restore test was due {}", when(due, now)));
            }
        }
        None => facts.push("no verified restore yet".into()),
    }
    if let Some(r) = last_verify.filter(|r| matches!(r.outcome.as_str(), "failed" | "timeout")) {
        problems.push(format!(
            "the last restore test {}: {}",
            r.outcome, r.message
        ));
    }
    let level = if problems.is_empty() {
        Level::Ok
    } else {
        Level::Warn
    };
    problems.extend(facts);
    Check::new(
        "backup",
        level,
        format!("{}: {}", repo, problems.join("; ")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn late_follows_the_schedule() {
        let at = |d: u32, h: u32, m: u32| Utc.with_ymd_and_hms(2026, 12, d, h, m, 0).unwrap();
        // Daily at 03:30: a success on the 5th at 03:31 is fine until the 6th 04:30.
        assert_eq!(late("30 3 * * *", at(5, 3, 31), at(6, 4, 29)), None);
        assert_eq!(
            late("30 3 * * *", at(5, 3, 31), at(6, 4, 31)),
            Some(at(6, 3, 30))
        );
        // Weekly on Sundays (2026-12-06 is one).
        assert_eq!(late("0 5 * * 0", at(6, 5, 2), at(12, 23, 0)), None);
        assert!(late("0 5 * * 0", at(6, 5, 2), at(13, 6, 1)).is_some());
    }
}
