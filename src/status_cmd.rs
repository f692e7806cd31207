//! `modobox run` and `modobox status`: configuration and store for the supervisor; the status
//! report as a table or JSON.

use std::process::ExitCode;

use anyhow::{anyhow, Result};

use modobox::cli::Global;
use modobox::config::Config;
use modobox::distro::Distro;
use modobox::health::checks::Level;
use modobox::supervisor::{daemon, status};

pub async fn run(global: &Global, manager: Option<daemon::ManagerKind>) -> Result<ExitCode> {
    let config = Config::load(&global.config)?;
    let distro = Distro::resolve(global.distro.as_ref())?;
    let kind = match manager {
        Some(k) => k,
        None => daemon::ManagerKind::detect().map_err(|e| anyhow!("modobox run: {e}"))?,
    };
    let open = || async {
        crate::commands::open(global)
            .await
            .map(|(s, _)| s)
            .map_err(|e| format!("{e:#}"))
    };
    // Each job runs as `modobox [these options] task exec NAME` (jobs::process).
    let mut args: Vec<std::ffi::OsString> = vec!["--config".into(), global.config.clone().into()];
    args.extend(["--distro".into(), distro.id.to_string().into()]);
    args.extend((0..global.verbose).map(|_| "-v".into()));
    let envs = global
        .database_url
        .iter()
        .map(|u| ("MODOBOX_DATABASE_URL".to_string(), u.clone()))
        .collect();
    let jobs = modobox::jobs::process::JobCommand::this_executable(args, envs);
    daemon::run(config, &global.config, distro, kind, open, jobs)
        .await
        .map_err(|e| anyhow!("modobox run: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

pub async fn web(
    global: &Global,
    listen: Option<std::net::SocketAddr>,
    public: bool,
    secure_cookies: bool,
    user: Option<&str>,
    status_file: std::path::PathBuf,
) -> Result<ExitCode> {
    let config = Config::load(&global.config)?;
    let listen = listen.unwrap_or(config.web.listen);
    let distro = Distro::resolve(global.distro.as_ref())?;
    let (url, _) = crate::commands::database_url(global)?;
    if let Some(u) = user {
        modobox::system::privileges::become_user(u).map_err(|e| anyhow!(e))?;
    }
    let store = modobox::store::Store::connect(&url).await?;
    let web = modobox::web::Web::new(store.clone(), config, distro, secure_cookies)
        .map_err(|e| anyhow!(e))?
        .with_status_file(status_file);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stop = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    modobox::web::serve(web, listen, public, stop)
        .await
        .map_err(|e| anyhow!(e))?;
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// `modobox milter`: the From: header milter, as its own database role (see `store::roles`).
pub async fn milter(
    global: &Global,
    listen: std::net::SocketAddr,
    run_as: Option<&str>,
) -> Result<ExitCode> {
    use modobox::store::roles::{self, Daemon};
    if !listen.ip().is_loopback() {
        anyhow::bail!("--listen {listen}: the milter listens on loopback only");
    }
    let config = Config::load(&global.config)?;
    let secrets = modobox::secrets::Secrets::load_or_generate(config.paths.secrets.as_path())?;
    let (user, password) = roles::login(&config, &secrets, Daemon::Milter);
    let url = modobox::store::DatabaseUrl::for_login(&config, &user, password);
    drop(secrets);
    if let Some(u) = run_as {
        modobox::system::privileges::become_user(u).map_err(|e| anyhow!(e))?;
    }
    let store = modobox::store::Store::connect(&url).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow!("--listen {listen}: {e}"))?;
    tracing::info!("milter listening on {listen} (database role {user})");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stop = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    modobox::milter::serve(listener, store.clone(), stop).await?;
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

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
    let store = crate::commands::open(global).await.ok().map(|(s, _)| s);
    let st = status::gather(&config, &distro, store.as_ref()).await;
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
