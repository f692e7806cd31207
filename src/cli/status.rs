//! `modobox status`: the status report as a table or JSON.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::Global;
use crate::config::Config;
use crate::distro::Distro;
use crate::health::checks::Level;
use crate::supervisor::status;

fn age(since: Option<chrono::DateTime<chrono::Utc>>) -> String {
    let Some(since) = since else {
        return "-".into();
    };
    let s = (chrono::Utc::now() - since).num_seconds().max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

pub async fn status(global: &Global, json: bool) -> Result<ExitCode> {
    let config = Config::load(&global.config)?;
    let distro = Distro::resolve(global.distro.as_ref())?;
    // The report is still useful with the database down: it says so.
    let store = super::open(global).await.ok().map(|(s, _)| s);
    // The stack is the installed modobox's (another version's during an upgrade's checks): its
    // health is what that version serves.
    let running = crate::upgrade::apply::installed_version()
        .unwrap_or_else(|_| env!("CARGO_PKG_VERSION").to_string());
    let st = status::gather(&config, &distro, store.as_ref(), &running).await;
    if let Some(s) = store {
        s.close().await;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&st)?);
        return Ok(ExitCode::from(st.exit_code()));
    }
    println!(
        "{}: {} (supervisor {})",
        config.hostname, st.overall, st.supervisor
    );
    println!(
        "\n{:<10} {:<26} {:<18} {:>7} {:>9}  PROBE",
        "SERVICE", "UNIT", "STATE", "UPTIME", "RESTARTS"
    );
    for s in &st.services {
        println!(
            "{:<10} {:<26} {:<18} {:>7} {:>9}  {}",
            s.service,
            s.unit,
            s.state,
            age(s.since),
            s.restarts_24h,
            s.probe
        );
    }
    println!("\nCHECKS");
    for c in &st.checks {
        let level = match c.level {
            Level::Ok => "ok",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        println!("  {level:<4} {:<14} {}", c.name, c.message);
    }
    if let Some(u) = &st.upgrade {
        println!("\nUPGRADE: {u}");
    }
    println!("\nJOBS");
    if st.jobs.is_empty() {
        println!("  (no periodic job has run yet)");
    }
    for j in &st.jobs {
        println!(
            "  {:<24} {} {:<8} {}",
            j.task,
            j.started_at.format("%Y-%m-%d %H:%M"),
            j.outcome,
            j.message
        );
    }
    if !st.events.is_empty() {
        println!("\nRECENT EVENTS");
        for e in &st.events {
            println!(
                "  {} {:<9} {:<13} {}",
                e.at.format("%Y-%m-%d %H:%M:%S"),
                e.service,
                e.kind,
                e.message
            );
        }
    }
    Ok(ExitCode::from(st.exit_code()))
}
