//! `modobox backup ...`: the configuration, secrets and database for `crate::backup`, and what
//! it prints.

use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::json;

use super::output::{print_json, table};
use crate::backup::restore::{self, Part};
use crate::backup::{self, BackupContext};
use crate::cli::{BackupCommand, Global};
use crate::config::Config;
use crate::distro::Distro;
use crate::names::{BackupRepository, EmailAddress};
use crate::secrets::Secrets;
use crate::store::tasks;

async fn context(global: &Global) -> Result<BackupContext> {
    let config = Config::load(&global.config)?;
    let distro = Distro::detect()?;
    // Creating the secrets file's missing backup password is what "the first time a
    // repository is used" means: it must outlive this command.
    let secrets = Secrets::load_or_create(config.paths.secrets.as_path())?;
    let (store, _) = super::open(global).await?;
    Ok(BackupContext {
        config,
        distro,
        secrets,
        store,
    })
}

fn repository(flag: &str, value: Option<&String>) -> Result<Option<BackupRepository>> {
    value
        .map(|v| BackupRepository::parse(flag, v))
        .transpose()
        .map_err(Into::into)
}

/// Records a run of `task` by hand (like `modobox task run`), when it concerns the configured
/// repository; recording is best effort, the command's own result is what counts.
async fn record_start(ctx: &BackupContext, task: &str, configured: bool) -> Option<i64> {
    if !configured {
        return None;
    }
    tasks::start(&ctx.store, task, ctx.config.hostname.as_str(), None)
        .await
        .ok()
        .flatten()
}

async fn record_end<E: std::fmt::Display>(
    ctx: &BackupContext,
    run: Option<i64>,
    result: &Result<String, E>,
) {
    let Some(id) = run else { return };
    let (outcome, message) = match result {
        Ok(m) => ("ok", m.clone()),
        Err(e) => ("failed", e.to_string()),
    };
    let _ = tasks::finish(&ctx.store, id, outcome, &message).await;
}

/// What `restore` was asked for.
fn selection(
    only: &[Part],
    mailbox: Option<&str>,
    into_folder: Option<&str>,
    id: &str,
) -> Result<restore::Selection> {
    if let Some(address) = mailbox {
        let address = EmailAddress::parse("--mailbox", address)?;
        let folder = match into_folder {
            Some("-") => None,
            Some(name) => Some(name.to_string()),
            None => Some(format!(
                "Restored-{}",
                if id == "latest" {
                    chrono::Utc::now().format("%Y-%m-%d").to_string()
                } else {
                    id.chars().take(8).collect()
                }
            )),
        };
        if let Some(f) = &folder {
            restore::check_folder_name(f)?;
        }
        return Ok(restore::Selection::Mailbox { address, folder });
    }
    let mut parts = if only.is_empty() {
        restore::ALL_PARTS.to_vec()
    } else {
        only.to_vec()
    };
    parts.dedup();
    // The database before the mail: a restored mailbox is looked up in it.
    parts.sort_by_key(|p| restore::ALL_PARTS.iter().position(|q| q == p));
    Ok(restore::Selection::Parts(parts))
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

/// What is left to do once the command's own work is done (outside its async runtime: the
/// installer runs its own).
enum Then {
    Exit(ExitCode),
    /// Restored configuration, secrets or keys go live the way every change does: the
    /// installer re-renders, migrates, re-grants the daemons' roles and restarts what changed.
    Reinstall,
    /// A restored database may be older than this modobox, and lost the daemons' grants.
    Database,
}

pub fn backup(global: &Global, cmd: &BackupCommand) -> Result<ExitCode> {
    let then = super::runtime()?.block_on(command(global, cmd))?;
    let code = match then {
        Then::Exit(code) => return Ok(code),
        Then::Reinstall => {
            println!("re-applying the restored configuration (modobox install)...");
            super::install::reapply(global)?
        }
        Then::Database => {
            println!("bringing the restored database up to date (schema, daemons' roles)...");
            super::install::reapply_database(global)?
        }
    };
    // Mail deferred while the database or the services were being replaced goes out now
    // rather than at Postfix's next retry, minutes later.
    if crate::system::cmd::exists("postqueue") {
        let _ = crate::system::cmd::Cmd::new("postqueue").arg("-f").run();
    }
    Ok(code)
}

async fn command(global: &Global, cmd: &BackupCommand) -> Result<Then> {
    {
        match cmd {
            BackupCommand::Create { to, json } => {
                let to = repository("--to", to.as_ref())?;
                let ctx = context(global).await?;
                // A backup into the configured repository counts as the `backup` job's run
                // (status: "last backup").
                let run = record_start(&ctx, "backup", to.is_none()).await;
                let result = backup::create(&ctx, to.as_ref()).await;
                record_end(
                    &ctx,
                    run,
                    &result.as_ref().map(|r| {
                        format!(
                            "backup {}: {} mailboxes, {} messages (by hand)",
                            r.snapshot, r.mailboxes, r.messages
                        )
                    }),
                )
                .await;
                let report = result.context("backup create")?;
                if *json {
                    print_json(&report)?;
                } else {
                    if report.repository_created {
                        println!(
                            "created the repository {} (encrypted with backup_password from {}: keep a copy of it off this machine)",
                            report.repository,
                            ctx.config.paths.secrets
                        );
                    }
                    println!(
                        "backup {} in {}: {} domains, {} mailboxes, {} messages, {} files, {} ({} new in the repository) in {:.1} s",
                        report.snapshot,
                        report.repository,
                        report.domains,
                        report.mailboxes,
                        report.messages,
                        report.files,
                        megabytes(report.bytes),
                        megabytes(report.bytes_added),
                        report.seconds
                    );
                }
                Ok(Then::Exit(ExitCode::SUCCESS))
            }
            BackupCommand::List { from, json } => {
                let from = repository("--from", from.as_ref())?;
                let ctx = context(global).await?;
                let list = backup::list(&ctx, from.as_ref())?;
                if *json {
                    print_json(&list)?;
                } else if list.is_empty() {
                    println!("no backups yet");
                } else {
                    let mut rows = vec![vec![
                        "ID".to_string(),
                        "TIME".into(),
                        "HOST".into(),
                        "TAGS".into(),
                    ]];
                    for s in &list {
                        rows.push(vec![
                            s.short_id.clone(),
                            s.time
                                .chars()
                                .take(19)
                                .collect::<String>()
                                .replace('T', " "),
                            s.hostname.clone(),
                            s.tags.clone().unwrap_or_default().join(","),
                        ]);
                    }
                    table(rows);
                }
                Ok(Then::Exit(ExitCode::SUCCESS))
            }
            BackupCommand::Verify {
                id,
                from,
                read_data,
                json,
            } => {
                let from = repository("--from", from.as_ref())?;
                let ctx = context(global).await?;
                let run = record_start(&ctx, "backup_verify", from.is_none()).await;
                let result =
                    crate::backup::verify::verify(&ctx, from.as_ref(), id, read_data).await;
                let outcome = match &result {
                    Ok(r) if r.problems.is_empty() => {
                        Ok(format!("backup {} restores (by hand)", r.snapshot))
                    }
                    Ok(r) => Err(r.problems.join("; ")),
                    Err(e) => Err(e.to_string()),
                };
                record_end(&ctx, run, &outcome).await;
                let report = result.context("backup verify")?;
                if *json {
                    print_json(&report)?;
                } else if report.problems.is_empty() {
                    println!(
                        "backup {} (taken {}) restores: {} files match their checksums ({} messages), database loaded (schema {}) with the manifest's counts, {} DKIM keys match the database, TLS key matches its certificate ({:.1} s)",
                        report.snapshot,
                        report.taken,
                        report.files_checked,
                        report.messages,
                        report.schema_version,
                        report.dkim_keys_checked,
                        report.seconds
                    );
                } else {
                    println!("backup {} does NOT restore cleanly:", report.snapshot);
                    for p in &report.problems {
                        println!("  {p}");
                    }
                }
                Ok(Then::Exit(if report.problems.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }))
            }
            BackupCommand::Restore {
                id,
                from,
                only,
                mailbox,
                into_folder,
                yes,
                json,
            } => {
                let from = repository("--from", from.as_ref())?;
                let selection = selection(only, mailbox.as_deref(), into_folder.as_deref(), id)?;
                let ctx = context(global).await?;
                let repo = ctx.repository(from.as_ref())?;
                // Not while a backup reads what is being replaced, nor two restores at once.
                let _lock = backup::lock(&ctx.state_dir())?;
                let fetched = restore::fetch(&ctx, &repo, id, &selection)?;
                let plan = restore::describe(&ctx, &fetched, &selection);
                println!(
                    "backup {} of {} taken {}:",
                    fetched.snapshot.short_id, fetched.manifest.hostname, fetched.manifest.created
                );
                for line in &plan {
                    println!("  {line}");
                }
                super::input::confirm(*yes, "Restore?")?;
                let report = restore::apply(&ctx, &fetched, &selection).await?;
                drop(fetched);
                ctx.store.close().await;
                if *json {
                    print_json(&report)?;
                } else {
                    println!(
                        "restored from {}: {}{} files, {} mailboxes ({} messages back, {} were still there)",
                        report.snapshot,
                        if report.database { "the database, " } else { "" },
                        report.files,
                        report.mailboxes,
                        report.messages_restored,
                        report.messages_already_there
                    );
                }
                if let restore::Selection::Parts(parts) = &selection {
                    if parts.iter().any(|p| matches!(p, Part::Config | Part::Keys)) {
                        return Ok(Then::Reinstall);
                    }
                    if parts.contains(&Part::Db) {
                        return Ok(Then::Database);
                    }
                }
                Ok(Then::Exit(ExitCode::SUCCESS))
            }
            BackupCommand::Show { id, from, json } => {
                let from = repository("--from", from.as_ref())?;
                let ctx = context(global).await?;
                let (snapshot, manifest) = backup::show(&ctx, from.as_ref(), id)?;
                if *json {
                    print_json(&json!({
                        "id": snapshot.id,
                        "time": snapshot.time,
                        "hostname": manifest.hostname,
                        "modobox_version": manifest.modobox_version,
                        "schema_version": manifest.schema_version,
                        "distro": manifest.distro,
                        "engine": manifest.engine,
                        "domains": manifest.domains,
                        "mailboxes": manifest.mailboxes,
                        "files": manifest.files.len(),
                        "bytes": manifest.total_bytes(),
                    }))?;
                    return Ok(Then::Exit(ExitCode::SUCCESS));
                }
                println!("backup {} taken {}", snapshot.short_id, manifest.created);
                println!(
                    "  server {} (modobox {}, schema {}, {}, database {})",
                    manifest.hostname,
                    manifest.modobox_version,
                    manifest.schema_version,
                    manifest.distro,
                    manifest.engine
                );
                println!(
                    "  {} mailboxes, {} messages, {} files, {}",
                    manifest.mailboxes.len(),
                    manifest.total_messages(),
                    manifest.files.len(),
                    megabytes(manifest.total_bytes())
                );
                let mut rows = vec![vec![
                    "DOMAIN".to_string(),
                    "MAILBOXES".into(),
                    "ALIASES".into(),
                    "DOMAIN ALIASES".into(),
                ]];
                for (name, d) in &manifest.domains {
                    rows.push(vec![
                        name.clone(),
                        d.mailboxes.to_string(),
                        d.aliases.to_string(),
                        d.domain_aliases.to_string(),
                    ]);
                }
                table(rows);
                Ok(Then::Exit(ExitCode::SUCCESS))
            }
        }
    }
}
