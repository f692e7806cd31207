//! `modobox db`: migrations, adoption of a Modoboa database, CSV import and export.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::output::print_json;
use super::{open, ACTOR};
use crate::cli::{DbCommand, ExportWhat, Global};
use crate::store::{migrate, modoboa_settings, transfer};

pub async fn db(global: &Global, cmd: &DbCommand) -> Result<ExitCode> {
    let (store, _) = open(global).await?;
    match cmd {
        DbCommand::Migrate => {
            let applied = migrate::migrate(&store).await?;
            if applied.is_empty() {
                println!("the database is up to date");
            } else {
                println!("applied migrations {applied:?}");
            }
        }
        DbCommand::Adopt { check, json } => {
            let plan = migrate::adoption(&store).await?;
            // Modoboa's settings are compared with this machine's configuration (or, with
            // only --database-url, with the one `modobox install` would write).
            let config = match super::options(global)?.0 {
                Some(c) => c,
                None => crate::config::Config::from_toml(crate::config::DEFAULT_TEXT, "default")?,
            };
            let mut tx = store.begin_read().await?;
            let settings = modoboa_settings::plan(&mut tx, &config).await?;
            drop(tx);
            if *json {
                #[derive(serde::Serialize)]
                struct Report<'a> {
                    #[serde(flatten)]
                    adoption: &'a migrate::Adoption,
                    settings: &'a [modoboa_settings::Item],
                }
                print_json(&Report {
                    adoption: &plan,
                    settings: &settings,
                })?;
            } else {
                print_adoption(&plan);
                print_settings(&settings, *check);
            }
            if *check || plan.refused.is_some() {
                store.close().await;
                return Ok(if plan.refused.is_some() {
                    ExitCode::from(1)
                } else {
                    ExitCode::SUCCESS
                });
            }
            let applied = migrate::adopt(&store).await?;
            let mut tx = store.begin().await?;
            let taken = modoboa_settings::apply(&mut tx, &settings).await?;
            tx.commit().await?;
            if !*json {
                println!(
                    "adopted the Modoboa database; applied migrations {applied:?}; took {taken} of Modoboa's settings"
                );
            }
        }
        DbCommand::Status { json } => {
            let status = migrate::status(&store).await?;
            if *json {
                print_json(&status)?;
            } else {
                println!("database engine: {}", status.backend);
                if status.unadopted_modoboa {
                    println!("this is a Modoboa database not yet adopted: run `modobox db adopt`");
                }
                for m in &status.migrations {
                    let state = match (m.applied, m.baseline) {
                        (true, true) => "present (adopted)",
                        (true, false) => "applied",
                        _ => "pending",
                    };
                    println!("{:>4}  {:<28} {state}", m.version, m.name);
                }
            }
            store.close().await;
            return Ok(if status.pending() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

fn print_adoption(plan: &migrate::Adoption) {
    match &plan.release {
        Some(r) => println!(
            "Modoboa release: {} (newest migrations: admin {}, core {})",
            r.version.as_deref().unwrap_or("unknown"),
            r.admin_migration,
            r.core_migration
        ),
        None => println!("Modoboa release: unknown (no django_migrations rows for admin and core)"),
    }
    let list = |title: &str, items: &[String]| {
        if !items.is_empty() {
            println!("{title}:");
            for i in items {
                println!("  {i}");
            }
        }
    };
    list(
        "columns of later releases, filled with Django's default on insert",
        &plan.filled_columns,
    );
    list("JSON columns, read and written as JSON", &plan.json_columns);
    list(
        "other applications' rows removed (or set to NULL) with what they point at, as Django does",
        &plan.cleaned_tables,
    );
    list(
        "tables modobox does not know: deleting what their rows point at is refused",
        &plan.unknown_references,
    );
    println!(
        "modobox migrations to apply: {:?}; Modoboa's tables and rows are not changed",
        plan.migrations
    );
    match &plan.refused {
        Some(why) => println!("cannot adopt: {why}"),
        None => println!("can be adopted"),
    }
}

/// Modoboa's settings, grouped by what adoption does with them.
fn print_settings(items: &[modoboa_settings::Item], check: bool) {
    use modoboa_settings::Outcome::*;
    if items.is_empty() {
        println!("Modoboa settings: none stored (Modoboa's defaults, which are modobox's)");
        return;
    }
    println!("Modoboa settings (core_localconfig):");
    let taken = if check { "would be taken" } else { "taken" };
    for i in items {
        let line = match &i.outcome {
            Taken { setting, value } => format!("{taken} as {setting} = {value}"),
            KeptModobox { setting, value } => format!("modobox's own {setting} = {value} kept"),
            NotTaken { setting, why } => format!("not taken as {setting}: {why}"),
            SameInConfig { key } => format!("same as the configuration's {key}"),
            DiffersInConfig { key, modobox, set } => format!(
                "differs from the configuration's {key} ({modobox}): to keep Modoboa's behaviour set {set} in the configuration file, then run `modobox install`"
            ),
            NoEquivalent { why } => format!("no equivalent: {why}"),
        };
        if i.value.is_empty() {
            println!("  {}: {line}", i.modoboa);
        } else {
            println!("  {} = {}: {line}", i.modoboa, i.value);
        }
    }
}

pub async fn import(
    global: &Global,
    file: &Path,
    json: bool,
    opts: &transfer::ImportOptions,
) -> Result<ExitCode> {
    let (store, _) = open(global).await?;
    let report = if file == Path::new("-") {
        transfer::import(&store, ACTOR, std::io::stdin().lock(), opts).await
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        transfer::import(&store, ACTOR, std::io::BufReader::new(f), opts).await
    }
    .with_context(|| format!("{}: nothing was imported", file.display()))?;
    store.close().await;
    if json {
        print_json(&report)?;
    } else {
        println!(
            "imported {} domain(s), {} domain alias(es), {} relay domain(s), {} account(s), {} alias(es)",
            report.domains, report.domain_aliases, report.relay_domains, report.accounts, report.aliases
        );
        if report.existing + report.aliases_merged > 0 {
            println!(
                "left {} existing object(s) as they were; added recipients to {} existing alias(es)",
                report.existing, report.aliases_merged
            );
        }
        if report.internal_aliases > 0 {
            println!(
                "skipped {} internal alias line(s) (a mailbox's or domain alias's own, made with it)",
                report.internal_aliases
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn export(
    global: &Global,
    what: ExportWhat,
    output: Option<&Path>,
    sepchar: u8,
) -> Result<ExitCode> {
    let (store, _) = open(global).await?;
    let kind = match what {
        ExportWhat::Domains => transfer::ExportKind::Domains,
        ExportWhat::Identities => transfer::ExportKind::Identities,
    };
    let mut buf = Vec::new();
    let n = transfer::export(&store, ACTOR, kind, &mut buf, sepchar).await?;
    store.close().await;
    match output {
        Some(path) => {
            crate::system::fs::write_atomic(path, &buf, 0o600, None)
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("exported {n} line(s) to {}", path.display());
        }
        None => std::io::stdout().lock().write_all(&buf)?,
    }
    Ok(ExitCode::SUCCESS)
}
