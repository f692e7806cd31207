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

/// A killed upgrade left its journal open: its rollback runs first, as `modobox upgrade
/// --recover` in a unit of its own under systemd (the old version's install it runs restarts
/// modobox.service, which would end it if it ran in this process's unit), as a child process
/// otherwise. Waits until the journal is closed.
async fn finish_interrupted_upgrade(global: &Global, kind: daemon::ManagerKind) {
    let exe =
        std::env::current_exe().unwrap_or_else(|_| crate::render::context::BINARY_PATH.into());
    let config = global.config.to_string_lossy().to_string();
    let exe = exe.to_string_lossy().to_string();
    let mut recover = vec![
        exe.as_str(),
        "--config",
        config.as_str(),
        "upgrade",
        "--recover",
    ];
    let mut program = exe.as_str();
    if kind == daemon::ManagerKind::Systemd {
        program = "systemd-run";
        let mut args = vec![
            "--unit=modobox-upgrade-recover",
            "--collect",
            "--wait",
            "--quiet",
        ];
        args.append(&mut recover);
        recover = args;
    } else {
        recover.remove(0);
    }
    tracing::warn!(
        "an interrupted upgrade is being finished first: {program} {}",
        recover.join(" ")
    );
    let status = tokio::process::Command::new(program)
        .args(&recover)
        .status()
        .await;
    match status {
        Ok(s) if s.success() => tracing::info!("the interrupted upgrade is finished"),
        Ok(s) => {
            tracing::error!("finishing the interrupted upgrade: {s} (`modobox upgrade --history`)")
        }
        Err(e) => tracing::error!("finishing the interrupted upgrade: {program}: {e}"),
    }
}
