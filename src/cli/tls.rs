//! `modobox tls status`: the certificate the stack serves, and the names clients ask it for.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::{Global, TlsCommand};
use crate::config::Config;
use crate::distro::Distro;
use crate::keys::tls;
use crate::names::DomainKind;

pub async fn tls(global: &Global, cmd: &TlsCommand) -> Result<ExitCode> {
    let TlsCommand::Status { json } = cmd;
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
    let report = tls::report(&info, chrono::Utc::now(), &config.hostname, &client_names);
    let mode = serde_json::to_value(config.tls.mode)?;
    let path = cert.as_path().display().to_string();
    if *json {
        let mut v = serde_json::to_value(&report)?;
        v["path"] = serde_json::Value::String(path);
        v["mode"] = mode;
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
        if report.problems.is_empty() {
            println!("ok");
        }
    }
    Ok(ExitCode::from(report.severity))
}
