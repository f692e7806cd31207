//! `modobox run`: the composition root of the resident process — configuration, store and the
//! job command line for the supervisor and its scheduler.

use std::process::ExitCode;

use anyhow::{anyhow, Result};

use crate::cli::Global;
use crate::config::Config;
use crate::distro::Distro;
use crate::supervisor::daemon;

pub async fn run(global: &Global, manager: Option<daemon::ManagerKind>) -> Result<ExitCode> {
    let config = Config::load(&global.config)?;
    let distro = Distro::resolve(global.distro.as_ref())?;
    let kind = match manager {
        Some(k) => k,
        None => daemon::ManagerKind::detect().map_err(|e| anyhow!("modobox run: {e}"))?,
    };
    if crate::upgrade::apply::interrupted(config.paths.data.as_path()) {
        finish_interrupted_upgrade(global, kind).await;
    }
    let open = || async {
        super::open(global)
            .await
            .map(|(s, _)| s)
            // The whole chain, as `modobox run: ...` says it on failure.
            .map_err(|e| daemon::OpenError::from(format!("{e:#}")))
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
    let jobs = crate::jobs::process::JobCommand::this_executable(args, envs);
    daemon::run(config, &global.config, distro, kind, open, jobs)
        .await
        .map_err(|e| anyhow!("modobox run: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

/// A killed upgrade left its journal open: its rollback runs as `modobox upgrade --recover`,
/// in a unit of its own under systemd (the old version's install it runs restarts
/// modobox.service, which would end it if it ran in this unit), as a child process otherwise.
/// Not waited for: this supervisor starts meanwhile and pauses its repairs while the recovery
/// holds the upgrade's lock, then the old version's install restarts it as the old version.
async fn finish_interrupted_upgrade(global: &Global, kind: daemon::ManagerKind) {
    let exe = std::env::current_exe()
        .unwrap_or_else(|_| crate::render::context::BINARY_PATH.into())
        .to_string_lossy()
        .to_string();
    let config = global.config.to_string_lossy().to_string();
    let recover = [
        exe.as_str(),
        "--config",
        config.as_str(),
        "upgrade",
        "--recover",
    ];
    let mut command = if kind == daemon::ManagerKind::Systemd {
        let mut c = tokio::process::Command::new("systemd-run");
        c.args(["--unit=modobox-upgrade-recover", "--collect", "--quiet"]);
        c.args(recover);
        c
    } else {
        let mut c = tokio::process::Command::new(&exe);
        c.args(&recover[1..]);
        c
    };
    tracing::warn!(
        "an interrupted upgrade is being rolled back: {}",
        recover.join(" ")
    );
    match command.spawn() {
        Ok(mut child) if kind == daemon::ManagerKind::Systemd => match child.wait().await {
            Ok(s) if s.success() => {}
            Ok(s) => tracing::error!("starting the rollback of the interrupted upgrade: {s}"),
            Err(e) => tracing::error!("starting the rollback of the interrupted upgrade: {e}"),
        },
        // The direct manager's child: reaped by PID 1 (modobox run) when it ends.
        Ok(_) => {}
        Err(e) => tracing::error!("starting the rollback of the interrupted upgrade: {e}"),
    }
}
