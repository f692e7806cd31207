//! Glue between `modobox stats ...` and `crate::stats`: configuration, hosted names from the
//! database, printing.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};

use crate::cli::{Global, PeriodArgs, RrdDirArg, StatsCommand};
use crate::config::Config;
use crate::stats::{self, graph, graph::Period, parser::COUNTERS, Settings};

/// The RRD directory: --rrd-dir / MODOBOX_RRD_DIR, else the configured one, else the default.
fn rrd_dir(global: &Global, arg: &RrdDirArg) -> Result<PathBuf> {
    if let Some(d) = &arg.rrd_dir {
        return Ok(d.clone());
    }
    if global.config.exists() {
        return Ok(Config::load(&global.config)?
            .paths
            .rrd
            .as_path()
            .to_path_buf());
    }
    Ok(Config::default_paths_and_mail()
        .0
        .rrd
        .as_path()
        .to_path_buf())
}

fn time_arg(field: &str, v: &str) -> Result<i64> {
    if let Ok(n) = v.parse::<i64>() {
        return Ok(n);
    }
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.timestamp())
        .with_context(|| {
            format!("{field}: {v:?} is neither an RFC 3339 time nor seconds since the epoch")
        })
}

/// [start, end] in seconds.
fn range(p: &PeriodArgs, now: DateTime<Utc>) -> Result<(i64, i64)> {
    let end = match &p.end {
        Some(e) => time_arg("--end", e)?,
        None => now.timestamp(),
    };
    let start = match (p.period.seconds(), &p.start) {
        (_, Some(s)) => time_arg("--start", s)?,
        (Some(secs), None) => end - secs,
        (None, None) => bail!("--start: is required with --period custom"),
    };
    if p.period != Period::Custom && p.start.is_some() {
        bail!("--start: only with --period custom");
    }
    if end <= start {
        bail!("--end: must be after --start");
    }
    Ok((start, end))
}

pub fn stats(global: &Global, cmd: &StatsCommand) -> Result<ExitCode> {
    let now = Utc::now();
    match cmd {
        StatsCommand::Parse {
            file,
            domains,
            rrd,
            json,
        } => {
            let config = Config::load(&global.config)?;
            let mut settings = Settings::from_config(&config);
            if let Some(d) = &rrd.rrd_dir {
                settings.set_rrd_dir(d.clone());
            }
            let names = if domains.is_empty() {
                super::runtime()?.block_on(async {
                    let (store, _) = super::open(global).await?;
                    let names = stats::hosted_names(&store).await;
                    store.close().await;
                    anyhow::Ok(names?)
                })?
            } else {
                domains.clone()
            };
            let report = stats::update(&settings, &names, file.as_deref(), now)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{}", report.summary());
            }
        }
        StatsCommand::Show {
            name,
            period,
            rrd,
            json,
        } => {
            let (start, end) = range(period, now)?;
            let dir = rrd_dir(global, rrd)?;
            let totals = stats::show_between(&dir, &name.to_ascii_lowercase(), start, end)?;
            if *json {
                let m: serde_json::Map<String, serde_json::Value> = totals
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::json!(v.round() as u64)))
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "name": name, "start": start, "end": end, "totals": m
                    }))?
                );
            } else {
                println!("{name} from {start} to {end}:");
                for c in COUNTERS {
                    if let Some(v) = totals.get(c) {
                        println!("  {c:<10} {}", v.round() as u64);
                    }
                }
            }
        }
        StatsCommand::Graph {
            name,
            period,
            kind,
            out,
            rrd,
        } => {
            let (start, end) = range(period, now)?;
            let dir = rrd_dir(global, rrd)?;
            graph::draw(
                &stats::rrd::Rrd::new(&dir),
                &name.to_ascii_lowercase(),
                *kind,
                start,
                end,
                out,
            )?;
            println!("wrote {}", out.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
