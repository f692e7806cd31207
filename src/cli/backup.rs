//! `modobox backup ...`: the configuration, secrets and database for `crate::backup`, and what
//! it prints.

use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::json;

use super::output::{print_json, table};
use crate::backup::{self, BackupContext};
use crate::cli::{BackupCommand, Global};
use crate::config::Config;
use crate::distro::Distro;
use crate::names::BackupRepository;
use crate::secrets::Secrets;

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

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

pub fn backup(global: &Global, cmd: &BackupCommand) -> Result<ExitCode> {
    super::runtime()?.block_on(async {
        match cmd {
            BackupCommand::Create { to, json } => {
                let to = repository("--to", to.as_ref())?;
                let ctx = context(global).await?;
                let report = backup::create(&ctx, to.as_ref())
                    .await
                    .context("backup create")?;
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
                Ok(ExitCode::SUCCESS)
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
                            s.time.chars().take(19).collect::<String>().replace('T', " "),
                            s.hostname.clone(),
                            s.tags.clone().unwrap_or_default().join(","),
                        ]);
                    }
                    table(rows);
                }
                Ok(ExitCode::SUCCESS)
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
                    return Ok(ExitCode::SUCCESS);
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
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}
