//! `cleanlogs`: deletes `core_log` lines older than `jobs.log_max_age_days`.

use chrono::{Duration, Utc};

use super::{JobContext, JobError};
use crate::store::audit;

pub async fn run(ctx: &JobContext, dry_run: bool) -> Result<String, JobError> {
    let days = ctx.config.jobs.log_max_age_days;
    let cutoff = Utc::now() - Duration::days(i64::from(days));
    let work = async {
        let mut tx = ctx.store.begin().await?;
        let n = audit::clean_logs(&mut tx, cutoff, dry_run).await?;
        tx.commit().await?;
        Ok::<_, crate::store::StoreError>(n)
    };
    let n = work.await?;
    let verb = if dry_run { "would delete" } else { "deleted" };
    Ok(format!("{verb} {n} log lines older than {days} days"))
}
