//! `modobox upgrade`: the new version verified and staged, its direction, and (`--check`) the
//! plan the new binary has for this server.

use std::io::IsTerminal;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::json;

use super::output::print_json;
use crate::cli::{Global, UpgradeArgs};
use crate::config::Config;
use crate::distro::Distro;
use crate::names::HttpUrl;
use crate::upgrade::journal::{self, Outcome};
use crate::upgrade::{self, apply, channel, signature::TrustedKeys, Direction, UpgradeError};

/// `--check`: an upgrade is available.
const AVAILABLE: u8 = 0;
/// `--check`: this is already the newest version.
const CURRENT: u8 = 3;

pub fn upgrade(global: &Global, args: &UpgradeArgs) -> Result<ExitCode> {
    if args.history {
        return history(global, args);
    }
    let distro = Distro::resolve(global.distro.as_ref())?;
    let deadline = Duration::from_secs(args.gate_seconds);
    if args.recover {
        let config = Config::load(&global.config)?;
        let data = config.paths.data.as_path();
        let _lock = apply::take_lock(data)?;
        // The recovery's own success: what was interrupted is finished (closed, rolled back,
        // or the verified upgrade kept); only a failed rollback is a failure of its unit.
        return Ok(match apply::recover(&global.config, &distro, deadline)? {
            Some(j) if matches!(j.outcome, Some(Outcome::RollbackFailed { .. })) => {
                finished(args, &apply::Ended::Done(Box::new(j)))?
            }
            _ => ExitCode::SUCCESS,
        });
    }
    if args.rollback {
        if !confirm(
            args,
            "Go back to the previous version? The database returns to its state before the \
             upgrade if that upgrade changed its schema (later changes to accounts, domains and \
             aliases would then be lost; mail on disk is not touched).",
        )? {
            bail!("cancelled: nothing was changed");
        }
        let ended = apply::rollback_by_hand(&global.config, distro, deadline)?;
        return finished(args, &ended);
    }
    if args.self_ {
        let from = apply::installed_version()?;
        let to = env!("CARGO_PKG_VERSION");
        if upgrade::direction(to, &from) != Direction::Current
            && !confirm(args, &format!("Upgrade modobox {from} to {to}?"))?
        {
            bail!("cancelled: nothing was changed");
        }
        let options = apply::Options {
            force: args.force,
            accept_conflicts: args.accept_conflicts,
            allow_downgrade: args.allow_downgrade,
            gate_deadline: deadline,
        };
        let ended = apply::upgrade_self(&global.config, distro, &options)?;
        return finished(args, &ended);
    }
    let config = Config::load(&global.config)?;
    let keys = TrustedKeys::new(&config.upgrade.keys);
    let data = config.paths.data.as_path();
    let staged = match (&args.file, &args.url) {
        (Some(file), _) => upgrade::stage_file(&keys, file, args.signature.as_deref(), data)?,
        (None, given) => {
            let url = match given {
                Some(u) => HttpUrl::parse("--url", u)?,
                None => match &config.upgrade.url {
                    Some(u) => u.clone(),
                    None => bail!(
                        "no new version: give the new binary (FILE, signed by FILE.minisig) or \
                         --url, or set upgrade.url in {}",
                        global.config.display()
                    ),
                },
            };
            super::runtime()?.block_on(channel::fetch(&url, &keys, data))?
        }
    };
    let ours = env!("CARGO_PKG_VERSION");
    let direction = upgrade::direction(&staged.version, ours);
    if direction == Direction::Downgrade && !args.allow_downgrade {
        return Err(UpgradeError::Downgrade {
            new: staged.version.clone(),
            ours: ours.to_string(),
        }
        .into());
    }
    if !args.check {
        if direction == Direction::Current {
            println!("modobox {ours} is current (the new binary is {ours} too)");
            return Ok(ExitCode::from(CURRENT));
        }
        println!(
            "modobox {} verified (signed by key {}, SHA-256 {})",
            staged.version, staged.key_id, staged.sha256
        );
        if !confirm(
            args,
            &format!("Upgrade modobox {ours} to {}?", staged.version),
        )? {
            bail!("cancelled: nothing was changed");
        }
        return Err(hand_over(global, args, &staged.path));
    }
    let steps = if direction == Direction::Current {
        Vec::new()
    } else {
        upgrade::plan(&staged, &global.config)?
    };
    let changing: Vec<&upgrade::PlannedStep> = steps.iter().filter(|s| s.outcome != "ok").collect();
    if args.json {
        print_json(&json!({
            "from": ours,
            "to": staged.version,
            "direction": direction,
            "signed_by": staged.key_id,
            "sha256": staged.sha256,
            "steps": changing,
        }))?;
    } else {
        match direction {
            Direction::Current => {
                println!("modobox {ours} is current (the new binary is {ours} too)")
            }
            _ => println!(
                "modobox {ours} → {} ({}), signed by key {}, SHA-256 {}",
                staged.version,
                if direction == Direction::Upgrade {
                    "upgrade"
                } else {
                    "DOWNGRADE"
                },
                staged.key_id,
                staged.sha256
            ),
        }
        for step in &changing {
            println!("  {}:", step.step);
            for change in &step.changes {
                for line in change.lines() {
                    println!("    {line}");
                }
            }
        }
    }
    Ok(ExitCode::from(if direction == Direction::Current {
        CURRENT
    } else {
        AVAILABLE
    }))
}

fn confirm(args: &UpgradeArgs, question: &str) -> Result<bool> {
    if args.yes || !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        return Ok(true);
    }
    Ok(inquire::Confirm::new(question)
        .with_default(true)
        .prompt()?)
}

/// The verified binary carries on as `upgrade --self` (this process becomes it, so its exit
/// code is the command's). Returns only when it could not be started.
fn hand_over(global: &Global, args: &UpgradeArgs, staged: &Path) -> anyhow::Error {
    let mut cmd = std::process::Command::new(staged);
    cmd.arg("--config").arg(&global.config);
    if let Some(d) = &global.distro {
        cmd.arg("--distro").arg(d.to_string());
    }
    cmd.args(["upgrade", "--self", "--yes"]);
    cmd.arg("--gate-seconds").arg(args.gate_seconds.to_string());
    for (on, flag) in [
        (args.force, "--force"),
        (args.accept_conflicts, "--accept-conflicts"),
        (args.allow_downgrade, "--allow-downgrade"),
        (args.json, "--json"),
    ] {
        if on {
            cmd.arg(flag);
        }
    }
    let e = cmd.exec();
    anyhow::anyhow!("starting the new binary {}: {e}", staged.display())
}

/// Prints how the upgrade or rollback ended; its exit code.
fn finished(args: &UpgradeArgs, ended: &apply::Ended) -> Result<ExitCode> {
    let code = match ended {
        apply::Ended::Current(message) => {
            println!("{message}");
            apply::exit_code(ended)
        }
        apply::Ended::Done(j) => {
            if args.json {
                print_json(j)?;
            }
            match (&j.outcome, j.kind.as_str()) {
                // A rollback asked for is a success when it rolled back.
                (Some(Outcome::RolledBack { .. }), "rollback") => 0,
                _ => apply::exit_code(ended),
            }
        }
    };
    Ok(ExitCode::from(code))
}

fn history(global: &Global, args: &UpgradeArgs) -> Result<ExitCode> {
    let config = Config::load(&global.config)?;
    let data = config.paths.data.as_path();
    let entries = journal::history(data)?;
    let points = upgrade::restore_point::list(data)?;
    if args.json {
        print_json(&json!({
            "history": entries,
            "restore_points": points.iter().map(|p| json!({
                "version": p.meta.version,
                "created": p.meta.created,
                "dir": p.dir,
            })).collect::<Vec<_>>(),
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if entries.is_empty() {
        println!("no upgrade yet");
    }
    for j in &entries {
        let (result, detail) = match &j.outcome {
            Some(Outcome::Upgraded) => ("upgraded", String::new()),
            Some(Outcome::Refused { failure }) => ("refused", failure.clone()),
            Some(Outcome::RolledBack { failure }) => ("rolled back", failure.clone()),
            Some(Outcome::RollbackFailed {
                failure,
                rollback_error,
            }) => (
                "ROLLBACK FAILED",
                format!("{failure}; the rollback: {rollback_error}"),
            ),
            None => ("open", String::new()),
        };
        let seconds = j
            .finished
            .map(|f| (f - j.started).num_milliseconds() as f64 / 1000.0)
            .unwrap_or_default();
        print!(
            "{}  {:<8} {} → {}  {result} ({seconds:.0} s",
            j.started.format("%Y-%m-%d %H:%M:%S"),
            j.kind,
            j.from,
            j.to
        );
        if let Some(r) = j.rollback_seconds {
            print!(", rollback {r:.0} s");
        }
        println!(")");
        if !detail.is_empty() {
            println!("    {detail}");
        }
    }
    if !points.is_empty() {
        println!("restore points (`modobox upgrade --rollback` goes back to the newest of another version):");
        for p in &points {
            println!(
                "  {}  {}  {}",
                p.meta.version,
                p.meta.created.format("%Y-%m-%d %H:%M:%S"),
                p.dir.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
