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

/// `modobox milter`: the From: header milter and the sending-limit policy service, as the
/// milter's own database role (see `store::roles`).
pub async fn milter(
    global: &Global,
    [listen, policy_listen, inbound_listen]: [std::net::SocketAddr; 3],
    run_as: Option<&str>,
) -> Result<ExitCode> {
    use crate::store::roles::{self, Daemon};
    for (option, addr) in [
        ("--listen", listen),
        ("--policy-listen", policy_listen),
        ("--inbound-listen", inbound_listen),
    ] {
        if !addr.ip().is_loopback() {
            anyhow::bail!(
                "{option} {addr}: the milters and the policy service listen on loopback only"
            );
        }
    }
    let config = Config::load(&global.config)?;
    // The inbound checks failing to start must not take submission's milter and the sending
    // limits down with them: Postfix passes port 25's mail on without them meanwhile, and the
    // supervisor's probe reports it.
    let checker =
        match crate::milter::inbound::Checker::new(config.hostname.as_str(), &config.antispam) {
            Ok(c) => Some(std::sync::Arc::new(c)),
            Err(e) => {
                tracing::error!("{e}: the inbound authentication milter is not served");
                None
            }
        };
    let message_limit = usize::try_from(config.mail.message_size_limit_mb)
        .unwrap_or(usize::MAX)
        .saturating_mul(1 << 20);
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
    let policy = tokio::net::TcpListener::bind(policy_listen)
        .await
        .map_err(|e| anyhow!("--policy-listen {policy_listen}: {e}"))?;
    let inbound = tokio::net::TcpListener::bind(inbound_listen)
        .await
        .map_err(|e| anyhow!("--inbound-listen {inbound_listen}: {e}"))?;
    tracing::info!(
        "milter listening on {listen}, policy service on {policy_listen}, inbound \
         authentication milter on {inbound_listen} (database role {user})"
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let (m, p, i) = tokio::join!(
        crate::milter::serve(listener, store.clone(), stopped(stop_rx.clone())),
        crate::policy::serve(policy, store.clone(), stopped(stop_rx.clone())),
        async {
            match checker {
                Some(c) => {
                    crate::milter::inbound::serve(inbound, c, message_limit, stopped(stop_rx)).await
                }
                None => Ok(()),
            }
        },
    );
    m?;
    p?;
    i?;
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
