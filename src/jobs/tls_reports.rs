//! `tls_reports`: reads the TLS reports (RFC 8460) sending servers mailed to
//! `mail.tls_reports_mailbox` (else the admin address) — the `rua` of the `_smtp._tls` record
//! `dns records` prints — from that mailbox's Maildir on this server, and keeps each policy of
//! each report about a hosted domain in `modobox_tls_report` (the domain page shows them). The
//! messages stay where they are; the ones already read are remembered by their Maildir unique
//! name in `<paths.data>/tls-reports-seen.json`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use chrono::Utc;

use super::report_mailbox as mailbox;
use super::{JobContext, JobError};
use crate::reports::tlsrpt::{self, Report};
use crate::store::tls_reports::{self, TlsReport};

fn seen_path(ctx: &JobContext) -> PathBuf {
    ctx.config
        .paths
        .data
        .as_path()
        .join("tls-reports-seen.json")
}

/// The rows a report gives: one per policy about a hosted domain (the others are counted).
fn rows_of(report: &Report, hosted: &BTreeSet<String>) -> (Vec<TlsReport>, usize) {
    let mut rows = Vec::new();
    let mut foreign = 0;
    for p in &report.policies {
        let domain = p
            .policy
            .policy_domain
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if !hosted.contains(&domain) {
            foreign += 1;
            continue;
        }
        rows.push(TlsReport {
            domain,
            organization: report.organization_name.clone(),
            report_id: report.report_id.clone(),
            begins_at: report.date_range.start_datetime,
            ends_at: report.date_range.end_datetime,
            policy_type: p.policy.policy_type.clone(),
            policy: p.policy.policy_string.join("\n"),
            successful: i64::try_from(p.summary.total_successful_session_count).unwrap_or(i64::MAX),
            failed: i64::try_from(p.summary.total_failure_session_count).unwrap_or(i64::MAX),
            failures: serde_json::to_string(&p.failure_details).unwrap_or_else(|_| "[]".into()),
        });
    }
    (rows, foreign)
}

pub async fn run(ctx: &JobContext) -> Result<String, JobError> {
    let (address, maildir) = match mailbox::local_maildir(
        &ctx.config,
        ctx.config.tls_reports_address(),
        "TLS reports",
        "mail.tls_reports_mailbox",
    ) {
        Ok(found) => found,
        // Nothing to read here: said, not failed.
        Err(why) => return Ok(why),
    };
    let hosted = mailbox::hosted(&ctx.store).await?;
    let seen_file = seen_path(ctx);
    let seen = mailbox::seen(&seen_file);
    let all = mailbox::messages(&maildir);
    let (mut read, mut stored, mut known, mut foreign, mut unreadable) = (0, 0, 0, 0, Vec::new());
    let now = Utc::now();
    for (unique, path) in &all {
        if seen.contains(unique) {
            continue;
        }
        read += 1;
        let Some(raw) = mailbox::read_message(path) else {
            continue;
        };
        // One transaction per message: what a database refuses of one report (a value one
        // engine takes and another does not) is named, and the others are kept.
        let mut tx = ctx.store.begin().await?;
        let mut refused = None;
        let (mut new_rows, mut known_rows) = (0, 0);
        'reports: for found in tlsrpt::in_mail(&raw) {
            match found {
                Ok(report) => {
                    let (rows, other) = rows_of(&report, &hosted);
                    foreign += other;
                    for row in rows {
                        match tls_reports::insert(&mut tx, &row, now).await {
                            Ok(true) => new_rows += 1,
                            Ok(false) => known_rows += 1,
                            Err(e) => {
                                refused = Some(format!("{unique}: {e}"));
                                break 'reports;
                            }
                        }
                    }
                }
                Err(e) => unreadable.push(format!("{unique}: {e}")),
            }
        }
        match refused {
            Some(why) => {
                drop(tx);
                unreadable.push(why);
            }
            None => {
                tx.commit().await?;
                stored += new_rows;
                known += known_rows;
            }
        }
    }
    // Remembered: the messages that are still there (a deleted one is forgotten).
    mailbox::remember(&seen_file, &all).map_err(|e| JobError::Partly {
        done: format!("{stored} TLS report policies stored"),
        failures: vec![format!("{}: {e}", seen_file.display())],
    })?;
    let mut message = format!(
        "{read} new message(s) in {address}'s mailbox: {stored} report policies stored, {known} already known"
    );
    if foreign > 0 {
        message.push_str(&format!(
            ", {foreign} about domains not hosted here ignored"
        ));
    }
    if unreadable.is_empty() {
        Ok(message)
    } else {
        Err(JobError::Partly {
            done: message,
            failures: unreadable,
        })
    }
}
