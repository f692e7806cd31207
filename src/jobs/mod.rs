//! The periodic jobs (Modoboa's cron jobs, issue #6): the registry by name, what a job gets
//! (`JobContext`), how a run ends (`Outcome`) and why it fails (`JobError`, whose text is the
//! run's message). One file per job; `scheduler` runs them on their cron schedule with locks
//! across nodes and records every run.

pub mod backup;
pub mod cleanlogs;
pub mod clearsessions;
pub mod dkim_keys;
pub mod dmarc_reports;
pub mod inactive_accounts;
pub mod mailbox_operations;
pub mod new_accounts_statistics;
pub mod postscreen_allowlist;
pub mod process;
pub mod quarantine_cleanup;
pub mod report_mailbox;
pub mod scheduler;
pub mod tls_renew;
pub mod tls_reports;

// Written in another branch (network jobs); only called from here.
pub mod check_mx;
pub mod public_api;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::distro::Distro;
use crate::stats::StatsError;
use crate::store::{Store, StoreError};

/// Why a job failed; its text is the run's message (`modobox_task_run.message`).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blocking part of a job (files, programs) did not finish.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    #[error(transparent)]
    MailboxOperation(#[from] mailbox_operations::MailboxOpError),
    #[error(transparent)]
    NewAccounts(#[from] new_accounts_statistics::RrdError),
    #[error(transparent)]
    CheckMx(#[from] check_mx::CheckMxError),
    #[error(transparent)]
    PublicApi(#[from] public_api::PublicApiError),
    #[error(transparent)]
    Stats(#[from] StatsError),
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
    #[error(transparent)]
    Tls(#[from] tls_renew::RenewError),
    /// Some items were done and others failed, each failure named.
    #[error("{}", partly(.done, .failures))]
    Partly { done: String, failures: Vec<String> },
    /// A run that did not end `ok` ([`run_job`]); a skipped one says so.
    #[error("{}", not_ok(*.outcome, .message))]
    NotOk { outcome: Outcome, message: String },
}

fn partly(done: &str, failures: &[String]) -> String {
    let failed = format!("failed: {}", failures.join("; "));
    if done.is_empty() {
        failed
    } else {
        format!("{done}; {failed}")
    }
}

fn not_ok(outcome: Outcome, message: &str) -> String {
    match outcome {
        Outcome::Skipped => format!("skipped: {message}"),
        _ => message.to_string(),
    }
}

/// Mails the admin from a job (best effort: the failure is recorded with the run either way).
pub async fn alert_admin(config: &Config, text: &str) {
    let config = config.clone();
    let text = text.to_string();
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(e) =
            crate::system::mail::alert_admin(config.admin_address(), &config.hostname, &text)
        {
            tracing::error!("alert mail failed: {e}");
        }
    })
    .await;
}

/// What every job gets.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub config: Config,
    pub distro: Distro,
    pub store: Store,
    /// This node's name (its hostname), recorded with each run.
    pub node: String,
}

/// A job of the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Job {
    pub name: &'static str,
    pub about: &'static str,
    /// `--dry-run` lists what the job would do and changes nothing.
    pub dry_run: bool,
}

/// Every job, by the name its `[schedule]` key has.
pub const JOBS: &[Job] = &[
    Job {
        name: "mailbox_operations",
        about: "move or remove mailbox directories after renames and deletions",
        dry_run: true,
    },
    Job {
        name: "dkim_keys",
        about: "generate the DKIM keys of domains that have signing on and no key",
        dry_run: true,
    },
    Job {
        name: "clearsessions",
        about: "delete expired web sessions",
        dry_run: true,
    },
    Job {
        name: "cleanlogs",
        about: "delete old audit log lines (jobs.log_max_age_days)",
        dry_run: true,
    },
    Job {
        name: "inactive_accounts",
        about: "disable or delete accounts without a login for jobs.inactive_account_days",
        dry_run: true,
    },
    Job {
        name: "logparser",
        about: "mail log statistics into the RRD files",
        dry_run: false,
    },
    Job {
        name: "new_accounts_statistics",
        about: "count the accounts created in the previous hour into new_accounts.rrd",
        dry_run: true,
    },
    Job {
        name: "check_mx",
        about: "check the MX records of the domains and the DNSBL listings",
        dry_run: false,
    },
    Job {
        name: "public_api",
        about: "register with the public API and fetch the newest versions",
        dry_run: false,
    },
    Job {
        name: "quarantine_cleanup",
        about: "delete quarantined messages older than jobs.quarantine_max_age_days",
        dry_run: true,
    },
    Job {
        name: "backup",
        about: "take a backup into backup.repository, then forget the ones retention drops",
        dry_run: false,
    },
    Job {
        name: "backup_verify",
        about: "restore the latest backup into a scratch area and check it (verify)",
        dry_run: false,
    },
    Job {
        name: "tls_reports",
        about: "store the TLS reports (RFC 8460) mailed to the TLS reports mailbox",
        dry_run: false,
    },
    Job {
        name: "dmarc_reports",
        about: "store the DMARC aggregate reports mailed to the DMARC reports mailbox",
        dry_run: false,
    },
    Job {
        name: "postscreen_allowlist",
        about: "expand antispam.allow_spf_domains' SPF ranges into postscreen's allow-list",
        dry_run: false,
    },
    Job {
        name: "tls_renew",
        about: "renew the ACME certificate when due and reload the daemons (tls.mode = \"acme\")",
        dry_run: false,
    },
];

pub fn job(name: &str) -> Option<&'static Job> {
    JOBS.iter().find(|j| j.name == name)
}

pub fn names() -> Vec<&'static str> {
    JOBS.iter().map(|j| j.name).collect()
}

/// How a run ended (the `outcome` column of `modobox_task_run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Failed,
    /// The job did not run: not available, nothing it may do, or already running.
    Skipped,
    Timeout,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
            Outcome::Timeout => "timeout",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Runs one job now, in this process, without locks or records (the scheduler and
/// `modobox task run` add those). An unknown name or an unsupported dry run is `Failed`.
pub async fn execute(name: &str, ctx: &JobContext, dry_run: bool) -> (Outcome, String) {
    let Some(job) = job(name) else {
        return (
            Outcome::Failed,
            format!("unknown job {name:?}: the jobs are {}", names().join(", ")),
        );
    };
    if dry_run && !job.dry_run {
        return (
            Outcome::Failed,
            format!("{name} has no dry run: it only reads or its changes cannot be previewed"),
        );
    }
    let result: Result<String, JobError> = match name {
        "mailbox_operations" => mailbox_operations::run(ctx, dry_run).await,
        "dkim_keys" => dkim_keys::run(ctx, dry_run).await,
        "clearsessions" => clearsessions::run(ctx, dry_run).await,
        "cleanlogs" => cleanlogs::run(ctx, dry_run).await,
        "inactive_accounts" => inactive_accounts::run(ctx, dry_run).await,
        "new_accounts_statistics" => new_accounts_statistics::run(ctx, dry_run).await,
        "quarantine_cleanup" => quarantine_cleanup::run(ctx, dry_run).await,
        "check_mx" => check_mx::run(&ctx.config, &ctx.store)
            .await
            .map_err(JobError::from),
        "public_api" => public_api::run(&ctx.config, &ctx.store)
            .await
            .map_err(JobError::from),
        "logparser" => crate::stats::run(&ctx.config, &ctx.store)
            .await
            .map_err(JobError::from),
        "backup" | "backup_verify" if ctx.config.backup.repository.is_none() => {
            return (
                Outcome::Skipped,
                "backups are off: no repository (set backup.repository)".into(),
            )
        }
        "backup" => backup::run(ctx).await,
        "backup_verify" => backup::verify(ctx).await,
        "tls_renew" if ctx.config.tls.mode != crate::config::TlsMode::Acme => {
            return (
                Outcome::Skipped,
                "the certificate is not renewed by ACME (tls.mode is not \"acme\")".into(),
            )
        }
        "tls_renew" => tls_renew::renew(ctx, false).await,
        "tls_reports" => tls_reports::run(ctx).await,
        "postscreen_allowlist" => postscreen_allowlist::run(ctx).await,
        "dmarc_reports" => dmarc_reports::run(ctx).await,
        _ => return (Outcome::Failed, format!("{name}: no implementation")),
    };
    match result {
        Ok(m) => (Outcome::Ok, m),
        Err(e) => (Outcome::Failed, e.to_string()),
    }
}

/// Runs one job now: `Ok(message)` on success, [`JobError::NotOk`] otherwise (a skipped run
/// did not do its work either).
pub async fn run_job(name: &str, ctx: &JobContext) -> Result<String, JobError> {
    match execute(name, ctx, false).await {
        (Outcome::Ok, m) => Ok(m),
        (outcome, message) => Err(JobError::NotOk { outcome, message }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_is_the_schedule() {
        let schedule = crate::config::Schedule::default();
        let keys: Vec<&str> = schedule.entries().into_keys().collect();
        let mut ours = names();
        ours.sort_unstable();
        assert_eq!(ours, keys);
    }
}
