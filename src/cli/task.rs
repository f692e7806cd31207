//! `modobox task list|run`: the periodic jobs by hand — their schedule and last runs, or one
//! run now under the scheduler's lock, recorded like a scheduled one (without a slot).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::cli::{Global, TaskCommand};
use crate::config::Config;
use crate::distro::Distro;
use crate::jobs::{self, scheduler, JobContext, Outcome};
use crate::store::tasks;

#[derive(Debug, Serialize)]
struct Line {
    job: &'static str,
    about: &'static str,
    schedule: String,
    next_run: Option<DateTime<Utc>>,
    dry_run: bool,
    last_run: Option<tasks::Run>,
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

pub async fn task(global: &Global, c: &TaskCommand) -> Result<ExitCode> {
    match c {
        TaskCommand::List { json } => list(global, *json).await,
        TaskCommand::Run { name, dry_run } => run(global, name, *dry_run).await,
        TaskCommand::Exec { name } => exec(global, name).await,
    }
}

async fn list(global: &Global, json: bool) -> Result<ExitCode> {
    let config = Config::load(&global.config)?;
    let entries = scheduler::entries(&config)?;
    // The schedule is still worth showing with the database down.
    let (last, db_error) = match super::open(global).await {
        Ok((store, _)) => {
            let r = tasks::last_runs(&store).await;
            store.close().await;
            match r {
                Ok(l) => (l, None),
                Err(e) => (Vec::new(), Some(e.to_string())),
            }
        }
        Err(e) => (Vec::new(), Some(format!("{e:#}"))),
    };
    let now = Utc::now();
    let lines: Vec<Line> = jobs::JOBS
        .iter()
        .map(|j| {
            let entry = entries.iter().find(|e| e.name == j.name);
            Line {
                job: j.name,
                about: j.about,
                schedule: config
                    .schedule
                    .entries()
                    .get(j.name)
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
                next_run: entry.and_then(|e| scheduler::next_slot(&e.cron, now)),
                dry_run: j.dry_run,
                last_run: last.iter().find(|r| r.task == j.name).cloned(),
            }
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&lines)?);
    } else {
        println!(
            "{:<24} {:<14} {:<19}  {:<19}  {:<19}  {:<8} MESSAGE",
            "JOB", "SCHEDULE", "NEXT RUN", "LAST START", "LAST END", "OUTCOME"
        );
        for l in &lines {
            let (start, end, outcome, message) = match &l.last_run {
                Some(r) => (
                    when(Some(r.started_at)),
                    when(r.finished_at),
                    r.outcome.clone(),
                    r.message.clone(),
                ),
                None => ("never".into(), "-".into(), "-".into(), String::new()),
            };
            println!(
                "{:<24} {:<14} {:<19}  {:<19}  {:<19}  {:<8} {}",
                l.job,
                l.schedule,
                when(l.next_run),
                start,
                end,
                outcome,
                message.lines().next().unwrap_or_default()
            );
        }
    }
    if let Some(e) = db_error {
        eprintln!("warning: last runs unknown: {e}");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

async fn run(global: &Global, name: &str, dry_run: bool) -> Result<ExitCode> {
    let Some(job) = jobs::job(name) else {
        bail!(
            "unknown job {name:?}; the jobs are: {}",
            jobs::names().join(", ")
        );
    };
    if dry_run && !job.dry_run {
        bail!("{name} has no --dry-run");
    }
    let config = Config::load(&global.config)?;
    let distro = Distro::resolve(global.distro.as_ref())?;
    let (store, _) = super::open(global).await?;
    let ctx = Arc::new(JobContext {
        node: scheduler::node_name(&config),
        config,
        distro,
        store: store.clone(),
    });
    let (outcome, message) = if dry_run {
        jobs::execute(name, &ctx, true).await
    } else {
        let report = scheduler::run_locked(
            &store,
            &ctx.node,
            name,
            None,
            ctx.config.jobs.timeout(name),
            &scheduler::registry_runner(ctx.clone()),
        )
        .await;
        (report.outcome, report.message)
    };
    store.close().await;
    println!("{name}: {outcome}: {message}");
    Ok(match outcome {
        Outcome::Ok => ExitCode::SUCCESS,
        Outcome::Skipped => ExitCode::from(3),
        Outcome::Failed | Outcome::Timeout => ExitCode::from(1),
    })
}

/// One run for the scheduler of `modobox run` (see jobs::process): the job's work only, its
/// outcome as one JSON line on standard output.
async fn exec(global: &Global, name: &str) -> Result<ExitCode> {
    let config = Config::load(&global.config)?;
    let distro = Distro::resolve(global.distro.as_ref())?;
    let (store, _) = super::open(global).await?;
    let ctx = JobContext {
        node: scheduler::node_name(&config),
        config,
        distro,
        store: store.clone(),
    };
    let (outcome, message) = jobs::execute(name, &ctx, false).await;
    store.close().await;
    println!(
        "{}",
        serde_json::to_string(&jobs::process::ExecResult { outcome, message })?
    );
    Ok(ExitCode::SUCCESS)
}
