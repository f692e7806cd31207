//! `clearsessions`: deletes the web sessions that expired (Django's `clearsessions`).

use chrono::Utc;

use super::{JobContext, JobError};
use crate::store::sessions;

pub async fn run(ctx: &JobContext, dry_run: bool) -> Result<String, JobError> {
    let work = async {
        let mut tx = ctx.store.begin().await?;
        let n = sessions::delete_expired(&mut tx, Utc::now(), dry_run).await?;
        tx.commit().await?;
        Ok::<_, crate::store::StoreError>(n)
    };
    let n = work.await?;
    Ok(if dry_run {
        format!("would delete {n} expired sessions")
    } else {
        format!("deleted {n} expired sessions")
    })
}
