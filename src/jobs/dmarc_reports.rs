//! `dmarc_reports`: reads the DMARC aggregate reports receiving servers mailed to
//! `mail.dmarc_reports_mailbox` (else the admin address) — the `rua` of the `_dmarc` record
//! `dns records` prints — from that mailbox's Maildir on this server (modoboa-dmarc's job), and
//! keeps each report about a hosted domain once (`modobox_dmarc_report`, `modobox_dmarc_record`;
//! the domain page shows them). The messages stay; the ones read are remembered in
//! `<paths.data>/dmarc-reports-seen.json`.

use chrono::Utc;

use super::report_mailbox as mailbox;
use super::{JobContext, JobError};
use crate::reports::dmarc;

pub async fn run(ctx: &JobContext) -> Result<String, JobError> {
    let (address, maildir) = match mailbox::local_maildir(
        &ctx.config,
        ctx.config.dmarc_reports_address(),
        "DMARC reports",
        "mail.dmarc_reports_mailbox",
    ) {
        Ok(found) => found,
        // Nothing to read here: said, not failed.
        Err(why) => return Ok(why),
    };
    let hosted = mailbox::hosted(&ctx.store).await?;
    let seen_file = ctx
        .config
        .paths
        .data
        .as_path()
        .join("dmarc-reports-seen.json");
    let all = mailbox::messages(&maildir);
    // The messages read before, less those deleted since.
    let present: std::collections::BTreeSet<&String> = all.iter().map(|(u, _)| u).collect();
    let mut seen = mailbox::seen(&seen_file);
    seen.retain(|u| present.contains(u));
    let (mut read, mut stored, mut known, mut foreign, mut other) = (0, 0, 0, 0, 0);
    let mut unreadable = Vec::new();
    let now = Utc::now();
    let save = |seen: &std::collections::BTreeSet<String>| {
        mailbox::save_seen(&seen_file, seen).map_err(|e| JobError::Partly {
            done: String::new(),
            failures: vec![format!("{}: {e}", seen_file.display())],
        })
    };
    for (unique, path) in &all {
        if seen.contains(unique) {
            continue;
        }
        read += 1;
        // Remembered before it is read (every 25 messages, and before any large one): a
        // message that stops a run (a crash, the job's time limit) is not read again by every
        // run after it, and a long backlog goes forward run by run.
        seen.insert(unique.clone());
        let large = std::fs::metadata(path).map_or(true, |m| m.len() > 64 << 10);
        if large || read % 25 == 1 {
            save(&seen)?;
        }
        let Some(raw) = mailbox::read_message(path) else {
            unreadable.push(format!("{unique}: larger than a report can be"));
            continue;
        };
        // Parsing and decompressing are CPU work: off the async threads.
        let report = match tokio::task::spawn_blocking(move || dmarc::in_mail(&raw)).await {
            Ok(Ok(Some(r))) => r,
            Ok(Ok(None)) => {
                other += 1;
                continue;
            }
            Ok(Err(e)) => {
                unreadable.push(format!("{unique}: {e}"));
                continue;
            }
            Err(e) => {
                unreadable.push(format!("{unique}: the report could not be read ({e})"));
                continue;
            }
        };
        if !hosted.contains(&report.domain) {
            foreign += 1;
            continue;
        }
        // One transaction per report: all its records or none.
        let mut tx = ctx.store.begin().await?;
        match crate::store::dmarc_reports::insert(&mut tx, &report, now).await {
            Ok(true) => {
                tx.commit().await?;
                stored += 1;
            }
            Ok(false) => known += 1,
            Err(e) => {
                // The database's failure, not the report's: read again next time.
                drop(tx);
                seen.remove(unique);
                save(&seen)?;
                unreadable.push(format!("{unique}: {e} (tried again next run)"));
            }
        }
    }
    save(&seen)?;
    let mut message = format!(
        "{read} new message(s) in {address}'s mailbox: {stored} DMARC reports stored, {known} already known"
    );
    if foreign > 0 {
        message.push_str(&format!(
            ", {foreign} about domains not hosted here ignored"
        ));
    }
    if other > 0 {
        message.push_str(&format!(", {other} without a DMARC report"));
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
