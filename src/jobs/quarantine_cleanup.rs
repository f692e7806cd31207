//! `quarantine_cleanup` (Amavis' qcleanup): deletes quarantined messages older than
//! `jobs.quarantine_max_age_days`, with their recipients and stored chunks.

use chrono::{Duration, Utc};

use super::{JobContext, JobError};
use crate::store::quarantine;

pub async fn run(ctx: &JobContext, dry_run: bool) -> Result<String, JobError> {
    let days = ctx.config.jobs.quarantine_max_age_days;
    let cutoff = Utc::now() - Duration::days(i64::from(days));
    let work = async {
        let mut tx = ctx.store.begin().await?;
        let n = quarantine::cleanup(&mut tx, cutoff, dry_run).await?;
        tx.commit().await?;
        Ok::<_, crate::store::StoreError>(n)
    };
    let n = work.await?;
    let verb = if dry_run { "would delete" } else { "deleted" };
    Ok(format!(
        "{verb} {} messages older than {days} days ({} recipients, {} quarantine chunks, {} unused addresses)",
        n.messages, n.recipients, n.chunks, n.addresses
    ))
}
