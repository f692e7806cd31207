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
