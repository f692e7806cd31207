//! `backup` and `backup_verify`: the scheduled forms of `modobox backup create` (followed by
//! `forget --prune` with the configured retention) and `modobox backup verify latest`. A
//! failure mails the admin: a backup that silently stopped is found only when it is needed.

use super::{JobContext, JobError};
use crate::backup::{self, restic::Retention, BackupContext, BackupError};
use crate::secrets::Secrets;

fn context(ctx: &JobContext) -> Result<BackupContext, JobError> {
    let secrets = Secrets::load_or_create(ctx.config.paths.secrets.as_path())
        .map_err(|e| BackupError::Database(format!("secrets: {e}")))?;
    Ok(BackupContext {
        config: ctx.config.clone(),
        distro: ctx.distro.clone(),
        secrets,
        store: ctx.store.clone(),
    })
}

async fn alert(ctx: &JobContext, text: &str) {
    super::alert_admin(&ctx.config, text).await;
}

pub async fn run(ctx: &JobContext) -> Result<String, JobError> {
    let result = async {
        let bctx = context(ctx)?;
        let report = backup::create(&bctx, None).await?;
        let b = &ctx.config.backup;
        let repo = bctx.repository(None)?;
        let keep = Retention {
            daily: b.keep_daily,
            weekly: b.keep_weekly,
            monthly: b.keep_monthly,
        };
        tokio::task::spawn_blocking(move || repo.forget(keep)).await??;
        Ok::<_, JobError>(format!(
            "backup {}: {} mailboxes, {} messages, {:.1} MB ({:.1} MB new) in {:.0} s",
            report.snapshot,
            report.mailboxes,
            report.messages,
            report.bytes as f64 / 1e6,
            report.bytes_added as f64 / 1e6,
            report.seconds
        ))
    }
    .await;
    if let Err(e) = &result {
        alert(ctx, &format!("the backup failed: {e}")).await;
    }
    result
}

pub async fn verify(ctx: &JobContext) -> Result<String, JobError> {
    let result = async {
        let bctx = context(ctx)?;
        let report = backup::verify::verify(&bctx, None, "latest", "10%").await?;
        if report.problems.is_empty() {
            Ok(format!(
                "backup {} restores: {} files, {} messages, database and keys checked in {:.0} s",
                report.snapshot, report.files_checked, report.messages, report.seconds
            ))
        } else {
            Err(JobError::Partly {
                done: String::new(),
                failures: report.problems,
            })
        }
    }
    .await;
    if let Err(e) = &result {
        alert(
            ctx,
            &format!("the latest backup does not restore cleanly: {e}"),
        )
        .await;
    }
    result
}
