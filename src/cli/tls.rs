//! `modobox tls status`: the certificate the stack serves, and the names clients ask it for.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::{Global, TlsCommand};
use crate::config::Config;
use crate::distro::Distro;
use crate::keys::tls;
use crate::names::DomainKind;

pub async fn tls(global: &Global, cmd: &TlsCommand) -> Result<ExitCode> {
    match cmd {
        TlsCommand::Status { json } => status(global, *json).await,
        TlsCommand::Renew { force } => renew(global, *force).await,
    }
}

/// `tls renew`: the `tls_renew` job, now, in this process — under the job's lock and recorded
/// like `task run tls_renew`, so it never runs beside the scheduled one.
async fn renew(global: &Global, force: bool) -> Result<ExitCode> {
    use crate::jobs::{scheduler, Outcome};
    let config = Config::load(&global.config)?;
    if config.tls.mode != crate::config::TlsMode::Acme {
        anyhow::bail!(
            "tls.mode is {:?}: only certificates of tls.mode = \"acme\" are renewed by modobox",
            serde_json::to_value(config.tls.mode)?
                .as_str()
                .unwrap_or_default()
        );
    }
    let distro = Distro::resolve(global.distro.as_ref())?;
    let (store, _) = super::open(global).await?;
    let ctx = std::sync::Arc::new(crate::jobs::JobContext {
        node: scheduler::node_name(&config),
        config,
        distro,
        store: store.clone(),
    });
    let report = crate::jobs::tls_renew::renew_locked(ctx, force).await;
    store.close().await;
    match report.outcome {
        Outcome::Ok => {
            println!("{}", report.message);
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            eprintln!("error: {}", report.message);
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn status(global: &Global, json: bool) -> Result<ExitCode> {
    let config = Config::load(&global.config)?;
    let distro = Distro::resolve(global.distro.as_ref())?;
    let (cert, _) = crate::render::context::tls_paths(&config, &distro);
    let pem = std::fs::read_to_string(cert.as_path())
        .with_context(|| format!("reading the certificate {}", cert.as_path().display()))?;
    let info = tls::inspect(&pem)
        .with_context(|| format!("the certificate {}", cert.as_path().display()))?;
    // The names mail clients and senders ask for: those of every hosted domain that
    // `dns records` points here. Without the database, the hostname alone.
    let client_names = match super::open(global).await {
        Ok((store, _)) => {
            let mut tx = store.begin_read().await?;
            let domains = crate::store::domains::list(
                &mut tx,
                crate::store::access::Actor::System,
                Some(DomainKind::Domain),
                None,
            )
            .await?;
            drop(tx);
            store.close().await;
            domains
                .iter()
                .flat_map(|d| crate::dns::records::web_names_of(&d.name, true))
                .collect()
        }
        Err(e) => {
            eprintln!("the database cannot be read ({e:#}): only the hostname is checked");
            Vec::new()
        }
    };
    let mut report = tls::report(&info, chrono::Utc::now(), &config.hostname, &client_names);
    let mode = serde_json::to_value(config.tls.mode)?;
    let path = cert.as_path().display().to_string();
    let acme = (config.tls.mode == crate::config::TlsMode::Acme).then(|| {
        crate::jobs::tls_renew::RenewalState::load(&crate::jobs::tls_renew::state_path(&config))
    });
    if let Some(e) = acme.as_ref().and_then(|s| s.last_error.as_ref()) {
        report
            .problems
            .push(format!("the last ACME renewal failed: {e}"));
        report.severity = report.severity.max(1);
    }
    if json {
        let mut v = serde_json::to_value(&report)?;
        v["path"] = serde_json::Value::String(path);
        v["mode"] = mode;
        if let Some(state) = &acme {
            v["acme"] = serde_json::to_value(state)?;
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "certificate {path} (tls.mode = {})",
            mode.as_str().unwrap_or_default()
        );
        let kind = if report.self_signed {
            "self-signed".to_string()
        } else {
            format!("issued by {}", report.issuer)
        };
        println!("  {kind}");
        println!(
            "  valid until {} ({} day(s) left)",
            report.not_after.format("%Y-%m-%d %H:%M UTC"),
            report.days_left
        );
        println!("  names: {}", report.names.join(", "));
        for c in &report.coverage {
            let mark = if c.covered { "covered" } else { "NOT covered" };
            println!("  {:<40} {mark}", c.name);
        }
        for p in &report.problems {
            println!(
                "{}: {p}",
                if report.severity == 2 {
                    "error"
                } else {
                    "warning"
                }
            );
        }
        if let Some(state) = &acme {
            print_acme(state);
        }
        if report.problems.is_empty() {
            println!("ok");
        }
    }
    Ok(ExitCode::from(report.severity))
}

/// The ACME renewals as `state.json` has them.
fn print_acme(state: &crate::jobs::tls_renew::RenewalState) {
    let at = |t: &Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or_else(
            || "never".to_string(),
            |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
        )
    };
    println!(
        "  ACME: last renewal {}, last attempt {}",
        at(&state.last_success),
        at(&state.last_attempt)
    );
    if let Some(e) = &state.last_error {
        println!(
            "  ACME: {} failed attempt(s) in a row, the last: {e}; next attempt {}",
            state.failures,
            at(&state.next_attempt)
        );
    }
    for (name, why) in &state.skipped {
        println!("  ACME: {name} not asked for: {why}");
    }
}
