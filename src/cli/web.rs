//! `modobox web` and `modobox milter`: modobox's own daemons, which read the configuration and
//! the secrets as root, then give root up for good.

use std::process::ExitCode;

use anyhow::{anyhow, Result};

use crate::cli::Global;
use crate::config::Config;
use crate::distro::Distro;

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
    let (url, _) = super::database_url(global)?;
    if let Some(u) = user {
        // The message already names its cause: `{e}`, not the chain, keeps it said once.
        crate::system::privileges::become_user(u).map_err(|e| anyhow!("{e}"))?;
    }
    let store = crate::store::Store::connect(&url).await?;
    let web = crate::web::Web::new(store.clone(), config, distro, secure_cookies)
        .map_err(|e| anyhow!("{e}"))?
        .with_status_file(status_file);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stop = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    crate::web::serve(web, listen, public, stop)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// `modobox milter`: the From: header milter, as its own database role (see `store::roles`).
pub async fn milter(
    global: &Global,
    listen: std::net::SocketAddr,
    run_as: Option<&str>,
) -> Result<ExitCode> {
    use crate::store::roles::{self, Daemon};
    if !listen.ip().is_loopback() {
        anyhow::bail!("--listen {listen}: the milter listens on loopback only");
    }
    let config = Config::load(&global.config)?;
    let secrets = crate::secrets::Secrets::load_or_generate(config.paths.secrets.as_path())?;
    let (user, password) = roles::login(&config, &secrets, Daemon::Milter);
    let url = crate::store::DatabaseUrl::for_login(&config, &user, password);
    drop(secrets);
    if let Some(u) = run_as {
        // The message already names its cause: `{e}`, not the chain, keeps it said once.
        crate::system::privileges::become_user(u).map_err(|e| anyhow!("{e}"))?;
    }
    let store = crate::store::Store::connect(&url).await?;
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
    crate::milter::serve(listener, store.clone(), stop).await?;
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
