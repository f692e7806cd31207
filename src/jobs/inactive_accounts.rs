//! `inactive_accounts` (Modoboa's clean_inactive_accounts): active non-superuser accounts with
//! no login for `jobs.inactive_account_days` are disabled, or deleted with
//! `jobs.inactive_account_action = "delete"` (their mailbox directory is then queued for
//! removal like any deletion). Accounts that never logged in are kept.

use chrono::{Duration, Utc};

use super::{JobContext, JobError};
use crate::config::InactiveAction;
use crate::store::access::Actor;
use crate::store::accounts::{self, Options};
use crate::store::StoreError;

/// At most this many names in a run's message (the message is stored with the run).
const SHOWN: usize = 20;

fn names(list: &[accounts::InactiveAccount]) -> String {
    let mut s: Vec<&str> = list
        .iter()
        .take(SHOWN)
        .map(|a| a.username.as_str())
        .collect();
    if list.len() > SHOWN {
        s.push("...");
    }
    s.join(", ")
}

pub async fn run(ctx: &JobContext, dry_run: bool) -> Result<String, JobError> {
    let days = ctx.config.jobs.inactive_account_days;
    let action = ctx.config.jobs.inactive_account_action;
    let cutoff = Utc::now() - Duration::days(i64::from(days));
    let opts = Options {
        mail_root: ctx.config.paths.mail_root.as_path().to_path_buf(),
        handle_mailboxes_on_filesystem: ctx.config.mail.handle_mailboxes_on_filesystem,
    };
    let verb = match action {
        InactiveAction::Disable => "disable",
        InactiveAction::Delete => "delete",
    };
    let work = async {
        let mut tx = ctx.store.begin().await?;
        let list = accounts::inactive_accounts(&mut tx, cutoff).await?;
        if dry_run || list.is_empty() {
            return Ok::<_, StoreError>((list, 0));
        }
        let mut done = 0;
        for a in &list {
            match action {
                InactiveAction::Disable => {
                    if accounts::disable_inactive_account(&mut tx, a, cutoff).await? {
                        done += 1;
                    }
                }
                InactiveAction::Delete => {
                    accounts::delete(&mut tx, Actor::System, &a.username, &opts).await?;
                    done += 1;
                }
            }
        }
        tx.commit().await?;
        Ok((list, done))
    };
    let (list, done) = work.await?;
    if list.is_empty() {
        return Ok(format!("no account without a login for {days} days"));
    }
    if dry_run {
        return Ok(format!(
            "would {verb} {} accounts without a login for {days} days: {}",
            list.len(),
            names(&list)
        ));
    }
    Ok(format!(
        "{verb}d {done} accounts without a login for {days} days: {}",
        names(&list)
    ))
}
