//! `modobox upgrade`: the new version verified and staged, its direction, and (`--check`) the
//! plan the new binary has for this server.

use std::process::ExitCode;

use anyhow::{bail, Result};
use serde_json::json;

use super::output::print_json;
use crate::cli::{Global, UpgradeArgs};
use crate::config::Config;
use crate::names::HttpUrl;
use crate::upgrade::{self, channel, signature::TrustedKeys, Direction, UpgradeError};

/// `--check`: an upgrade is available.
const AVAILABLE: u8 = 0;
/// `--check`: this is already the newest version.
const CURRENT: u8 = 3;

pub fn upgrade(global: &Global, args: &UpgradeArgs) -> Result<ExitCode> {
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
        bail!(
            "modobox {} is verified and staged at {}; applying it is `modobox upgrade --check` \
             only in this version",
            staged.version,
            staged.path.display()
        );
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
