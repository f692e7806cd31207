//! The upgrade itself, run by the *new* binary (`NEW upgrade --self`, which `modobox upgrade
//! FILE` hands over to once the file is verified): preflight, restore point, migration dry
//! run, maintenance mode, the new version's install steps (binary swap, migrations,
//! three-way render, validators, restarts of what changed), lookups, health gate, commit.
//! Any failure after the server started changing is rolled back: the restore point's
//! files and binary back, the database dump back when the schema changed, then the *old*
//! binary's own install (which restarts what changed with its own knowledge of the units) and
//! the health gate again. A crash leaves the journal open; the next `upgrade`, `install` or
//! `run` finishes the rollback first (`recover`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::gate;
use super::journal::{Journal, Outcome, Phase};
use super::restore_point::{self, Contents, RestorePoint};
use super::UpgradeError;
use crate::config::Config;
use crate::distro::Distro;
use crate::install::{self, Ctx, StepError};
use crate::render::context::BINARY_PATH;
use crate::secrets::Secrets;
use crate::system::cmd::Cmd;
use crate::system::maintenance;

#[derive(Debug, Clone)]
pub struct Options {
    /// Upgrade a server whose probes are not all green.
    pub force: bool,
    pub accept_conflicts: bool,
    pub allow_downgrade: bool,
    pub gate_deadline: Duration,
}

/// How an upgrade (or a rollback by hand) ended.
#[derive(Debug)]
pub enum Ended {
    /// This version is already installed: nothing done.
    Current(String),
    Done(Box<Journal>),
}

/// The journal's outcome as the process's exit code: 0 upgraded, 4 rolled back cleanly,
/// 5 the rollback failed, 1 refused before anything changed, 3 already current.
pub fn exit_code(ended: &Ended) -> u8 {
    match ended {
        Ended::Current(_) => 3,
        Ended::Done(j) => match &j.outcome {
            Some(Outcome::Upgraded) => 0,
            Some(Outcome::RolledBack { .. }) => 4,
            Some(Outcome::RollbackFailed { .. }) => 5,
            Some(Outcome::Refused { .. }) | None => 1,
        },
    }
}

fn say(phase: &str, started: Instant, what: &str) {
    println!(
        "[{phase}] {what} ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
}

/// The version of the modobox installed at `BINARY_PATH`.
pub fn installed_version() -> Result<String, UpgradeError> {
    let path = Path::new(BINARY_PATH);
    if !path.is_file() {
        return Err(UpgradeError::Failed(format!(
            "no modobox installed at {BINARY_PATH}: this is for upgrading an installed server \
             (`modobox install` installs one)"
        )));
    }
    super::version_of(path)
}

/// What a restore point must hold for this server.
fn contents(config: &Config, config_path: &Path) -> Contents<'static> {
    let manifest = install::files::manifest_path(config);
    let records = crate::render::manifest::Manifest::load(&manifest).unwrap_or_default();
    let bases = crate::render::base::Bases::beside(&manifest);
    let mut paths: Vec<PathBuf> = records
        .files
        .keys()
        .flat_map(|p| with_new_beside(p))
        .collect();
    paths.push(manifest);
    Contents {
        binary: Path::new(BINARY_PATH),
        trees: vec![
            config_path
                .parent()
                .unwrap_or(Path::new("/etc/modobox"))
                .to_path_buf(),
            bases.dir().to_path_buf(),
        ],
        paths,
    }
}

/// A rendered file and the `FILE.modobox-new` an upgrade may write beside it (a conflict):
/// a rollback puts both back as they were.
fn with_new_beside(path: &Path) -> [PathBuf; 2] {
    let mut new = path.as_os_str().to_owned();
    new.push(crate::render::write::NEW_SUFFIX);
    [path.to_path_buf(), PathBuf::from(new)]
}

/// `NEW upgrade --self`: upgrades the installed server to this binary's version.
pub fn upgrade_self(
    config_path: &Path,
    distro: Distro,
    opts: &Options,
) -> Result<Ended, UpgradeError> {
    let config = Config::load(config_path)
        .map_err(|e| UpgradeError::Failed(format!("the configuration ({e:#})")))?;
    let data = config.paths.data.as_path().to_path_buf();
    let _lock = take_lock(&data)?;
    recover(config_path, &distro, opts.gate_deadline)?;

    let from = installed_version()?;
    let to = env!("CARGO_PKG_VERSION").to_string();
    match super::direction(&to, &from) {
        super::Direction::Current => {
            return Ok(Ended::Current(format!("modobox {to} is already installed")));
        }
        super::Direction::Downgrade if !opts.allow_downgrade => {
            return Err(UpgradeError::Downgrade {
                new: to,
                ours: from,
            });
        }
        _ => {}
    }
    println!("upgrading modobox {from} → {to}");
    let mut journal = Journal::start(&data, "upgrade", &from, &to).map_err(super::io(&data))?;
    let secrets = Secrets::load_or_create(config.paths.secrets.as_path())
        .map_err(|e| UpgradeError::Failed(e.to_string()))?;
    let mut ctx = Ctx::new(
        config.clone(),
        config_path.to_path_buf(),
        distro.clone(),
        secrets,
    )
    .map_err(|e| UpgradeError::Failed(e.to_string()))?;
    ctx.accept_conflicts = opts.accept_conflicts;

    // Nothing has changed until maintenance: a failure up to there only closes the journal.
    let before = (|| -> Result<RestorePoint, UpgradeError> {
        let t = Instant::now();
        journal
            .enter(&data, Phase::Preflight, None)
            .map_err(super::io(&data))?;
        preflight(&mut ctx, opts, &from)?;
        say(
            "preflight",
            t,
            "configuration read by the new version, disk space, probes, conflicts: ok",
        );

        let t = Instant::now();
        journal
            .enter(&data, Phase::RestorePoint, None)
            .map_err(super::io(&data))?;
        let store = ctx.store().map_err(failed)?;
        let point = ctx.rt.block_on(restore_point::create(
            &ctx.config,
            &ctx.secrets,
            &store,
            &from,
            &contents(&ctx.config, config_path),
        ))?;
        journal.restore_point = Some(point.dir.clone());
        say("restore point", t, &format!("{}", point.dir.display()));

        let t = Instant::now();
        journal
            .enter(&data, Phase::MigrationDryRun, None)
            .map_err(super::io(&data))?;
        let pending = ctx
            .rt
            .block_on(crate::store::migrate::status(&store))
            .map_err(|e| UpgradeError::Failed(e.to_string()))?
            .pending();
        if pending > 0 {
            let applied = ctx
                .rt
                .block_on(point.migration_dry_run(&ctx.config, &ctx.secrets))?;
            say(
                "migration dry run",
                t,
                &format!(
                    "{} migrations applied to a copy of the database",
                    applied.len()
                ),
            );
        } else {
            say("migration dry run", t, "no migration to apply");
        }
        Ok(point)
    })();
    let point = match before {
        Ok(p) => p,
        Err(e) => {
            ctx.close();
            journal
                .close(
                    &data,
                    Outcome::Refused {
                        failure: e.to_string(),
                    },
                )
                .map_err(super::io(&data))?;
            return Err(UpgradeError::Failed(format!("{e}; nothing was changed")));
        }
    };

    let t0 = Instant::now();
    let result = (|| -> Result<(), String> {
        journal
            .enter(&data, Phase::Maintenance, None)
            .map_err(|e| e.to_string())?;
        maintenance::enter(
            &data,
            &format!("modobox is being upgraded to {to}: changes are paused for a moment"),
        )
        .map_err(|e| format!("maintenance mode: {e}"))?;
        crate::fault::point("upgrade-maintenance").map_err(|e| e.to_string())?;

        let steps = install::steps(&ctx);
        let data2 = data.clone();
        let journal_ref = &mut journal;
        install::run_with(&mut ctx, &steps, false, &mut |step| {
            journal_ref
                .enter(&data2, Phase::Install, Some(step))
                .map_err(|e| StepError::new(e.to_string()))?;
            if step == "config-files" {
                // The new binary is in place: its supervisor takes over before any daemon
                // restarts, and pauses its repairs during maintenance (an older one would
                // "repair" a daemon the upgrade is still starting).
                let _ = Cmd::new("systemctl")
                    .args(["try-restart", "modobox.service"])
                    .run();
            }
            crate::fault::point(format!("upgrade-step-{step}"))
                .map_err(|e| StepError::new(e.to_string()))
        })
        .map_err(|e| e.to_string())?;
        for note in std::mem::take(&mut ctx.notes) {
            println!("    note: {note}");
        }

        let t = Instant::now();
        journal
            .enter(&data, Phase::Lookups, None)
            .map_err(|e| e.to_string())?;
        ctx.reset_store();
        let store = ctx.store().map_err(|e| e.to_string())?;
        let checked = ctx
            .rt
            .block_on(gate::lookups(&ctx.config, &ctx.distro, &store))?;
        say("lookups", t, &checked.join("; "));

        let t = Instant::now();
        journal
            .enter(&data, Phase::HealthGate, None)
            .map_err(|e| e.to_string())?;
        let passed = ctx.rt.block_on(gate::health_gate(
            &ctx.config,
            &ctx.distro,
            Some(&store),
            env!("CARGO_PKG_VERSION"),
            gate::ROUNDS,
            opts.gate_deadline,
            "upgrade-gate",
        ))?;
        say(
            "health gate",
            t,
            &format!(
                "{} consecutive green rounds of every probe",
                gate::ROUNDS.min(passed.rounds)
            ),
        );
        flush_queue();
        let t = Instant::now();
        crate::fault::point("upgrade-canary").map_err(|e| format!("the canary: {e}"))?;
        match ctx.rt.block_on(crate::health::canary::fly(&ctx.config, &store))? {
            Some(flown) => say(
                "canary",
                t,
                &format!(
                    "a message from {} submitted on 587, delivered, read back over IMAPS{}, deleted",
                    flown.address,
                    if flown.dkim { ", its DKIM signature verified" } else { "" }
                ),
            ),
            None => say("canary", t, "no hosted primary domain: no canary message"),
        }
        journal
            .enter(&data, Phase::Commit, None)
            .map_err(|e| e.to_string())?;
        // What a scanner restart deferred after the last flush goes now too.
        flush_queue();
        crate::fault::point("upgrade-commit").map_err(|e| e.to_string())?;
        Ok(())
    })();
    match result {
        Ok(()) => {
            let store = ctx.store().ok();
            if let Some(store) = store {
                let message = format!("modobox upgraded from {from} to {to}");
                let _ = ctx.rt.block_on(async {
                    let mut tx = store.begin().await?;
                    crate::store::audit::info(&mut tx, &message).await?;
                    tx.commit().await
                });
            }
            ctx.close();
            maintenance::leave(&data).map_err(super::io(&data))?;
            let j = journal
                .close(&data, Outcome::Upgraded)
                .map_err(super::io(&data))?;
            println!(
                "upgraded to modobox {to} in {:.0} s",
                t0.elapsed().as_secs_f64()
            );
            Ok(Ended::Done(Box::new(j)))
        }
        Err(failure) => {
            eprintln!("upgrade failed: {failure}");
            ctx.close();
            let j = rollback(
                config_path,
                &distro,
                journal,
                &point,
                failure,
                opts.gate_deadline,
            )?;
            Ok(Ended::Done(Box::new(j)))
        }
    }
}

fn failed(e: StepError) -> UpgradeError {
    UpgradeError::Failed(e.to_string())
}

/// The upgrade lock, or an error saying another upgrade or rollback holds it.
pub fn take_lock(data: &Path) -> Result<maintenance::UpgradeLock, UpgradeError> {
    maintenance::try_lock(data)
        .map_err(super::io(data))?
        .ok_or_else(|| {
            UpgradeError::Failed(format!(
                "another upgrade or rollback is running (lock {})",
                maintenance::dir(data).join("lock").display()
            ))
        })
}

/// Before anything changes: the new version reads the configuration (done by the caller),
/// there is room for the restore point, the server is healthy (unless `--force`), and no
/// file edited by hand conflicts with a template change (unless `--accept-conflicts`).
fn preflight(ctx: &mut Ctx, opts: &Options, installed: &str) -> Result<(), UpgradeError> {
    crate::fault::point("upgrade-preflight").map_err(|e| UpgradeError::Failed(e.to_string()))?;
    let data = ctx.config.paths.data.as_path().to_path_buf();
    let binary = std::fs::metadata(BINARY_PATH).map_or(0, |m| m.len());
    let need = 2 * binary + 256 * 1024 * 1024;
    let free = nix::sys::statvfs::statvfs(&data)
        .map(|s| s.blocks_available() * s.fragment_size())
        .unwrap_or(u64::MAX);
    if free < need {
        return Err(UpgradeError::Failed(format!(
            "{} has {} MB free; the restore point needs at least {} MB",
            data.display(),
            free / 1_000_000,
            need / 1_000_000
        )));
    }
    if !opts.force {
        let store = ctx.store().map_err(failed)?;
        // One green round within a minute (a daemon may be busy for a moment).
        // The installed version serves the stack yet: its health is what it serves.
        let healthy = ctx.rt.block_on(gate::health_gate(
            &ctx.config,
            &ctx.distro,
            Some(&store),
            installed,
            1,
            Duration::from_secs(60),
            "upgrade-preflight-probes",
        ));
        if let Err(failures) = healthy {
            return Err(UpgradeError::Failed(format!(
                "the server is {failures} before the upgrade; fix it first or use --force"
            )));
        }
    }
    let conflicts = install::files::conflicts(ctx).map_err(failed)?;
    if !conflicts.is_empty() && !opts.accept_conflicts {
        return Err(UpgradeError::Failed(format!(
            "your edits of {} conflict with the new templates; `modobox upgrade --check` shows \
             the changes; merge them by hand, or upgrade with --accept-conflicts (your file is \
             kept and the new version written beside it as FILE.modobox-new)",
            conflicts
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(())
}

/// Puts `point` back (files, binary, database when its schema changed), runs the old
/// binary's install to restart what changed, and the health gate. Closes `journal`.
fn rollback(
    config_path: &Path,
    distro: &Distro,
    mut journal: Journal,
    point: &RestorePoint,
    failure: String,
    deadline: Duration,
) -> Result<Journal, UpgradeError> {
    let started = Instant::now();
    // The old version's install may restart Amavis without waiting for it: the gate after a
    // rollback gets at least the default time, whatever the upgrade's gate had.
    let deadline = deadline.max(gate::DEADLINE);
    let config = Config::load(config_path).ok();
    let data = match &config {
        Some(c) => c.paths.data.as_path().to_path_buf(),
        None => PathBuf::from("/var/lib/modobox"),
    };
    println!(
        "rolling back to modobox {} ({})",
        point.meta.version,
        point.dir.display()
    );
    journal
        .enter(&data, Phase::RollingBack, None)
        .map_err(super::io(&data))?;
    let result = put_back(config_path, distro, point, deadline);
    let seconds = started.elapsed().as_secs_f64();
    journal.rollback_seconds = Some(seconds);
    let outcome = match result {
        Ok(()) => {
            maintenance::leave(&data).map_err(super::io(&data))?;
            println!(
                "rolled back to modobox {} in {seconds:.0} s; the failure: {failure}",
                point.meta.version
            );
            Outcome::RolledBack { failure }
        }
        Err(e) => {
            eprintln!(
                "the rollback failed: {e}\nWhat to do: the restore point {dir} holds the old \
                 binary (modobox), configuration and files (files/), and the database dump \
                 (database/); `{this} upgrade --rollback` tries again; `{BINARY_PATH} backup \
                 restore latest` restores the last backup",
                dir = point.dir.display(),
                this = std::env::current_exe()
                    .map_or_else(|_| BINARY_PATH.to_string(), |p| p.display().to_string()),
            );
            Outcome::RollbackFailed {
                failure,
                rollback_error: e,
            }
        }
    };
    journal.close(&data, outcome).map_err(super::io(&data))
}

/// The rollback's work; the error says which part failed.
fn put_back(
    config_path: &Path,
    distro: &Distro,
    point: &RestorePoint,
    deadline: Duration,
) -> Result<(), String> {
    crate::fault::point("upgrade-rollback").map_err(|e| e.to_string())?;
    // Files the new version rendered where the old one had none go too.
    let new_files: Vec<PathBuf> = Config::load(config_path)
        .ok()
        .and_then(|c| {
            crate::render::manifest::Manifest::load(&install::files::manifest_path(&c)).ok()
        })
        .map(|m| m.files.keys().flat_map(|p| with_new_beside(p)).collect())
        .unwrap_or_default();
    let changed = point
        .restore_files(&new_files)
        .map_err(|e| format!("putting the files back: {e}"))?;
    println!("    {} files put back", changed.len());

    let config = Config::load(config_path).map_err(|e| format!("the old configuration: {e:#}"))?;
    let secrets =
        Secrets::load_or_create(config.paths.secrets.as_path()).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let url = crate::store::DatabaseUrl::from_config(&config, &secrets);
    rt.block_on(async {
        let store = crate::store::Store::connect(&url)
            .await
            .map_err(|e| format!("connecting to the database: {e}"))?;
        let result = point
            .put_database_back(&config, &secrets, &store, || {
                old_accepts_schema(config_path)
            })
            .await
            .map(|done| println!("    database: {done} (schema {})", point.meta.schema))
            .map_err(|e| e.to_string());
        store.close().await;
        result
    })?;

    // The old binary knows its units: its install restarts what the files changed.
    println!("    {BINARY_PATH} install --yes (the old version restarts what changed)");
    let out = Cmd::new(BINARY_PATH)
        .env(UNDER_UPGRADE_ENV, "1")
        .arg("--config")
        .arg(config_path.to_string_lossy())
        .args(["install", "--yes"])
        .run()
        .map_err(|e| format!("the old version's install: {e}"))?;
    if let Some(last) = out
        .stdout
        .lines()
        .rev()
        .find(|l| l.contains("steps changed"))
    {
        println!("    {last}");
    }
    let store = rt
        .block_on(crate::store::Store::connect(&url))
        .map_err(|e| e.to_string())?;
    let gate = rt.block_on(gate::health_gate(
        &config,
        distro,
        Some(&store),
        &point.meta.version,
        gate::ROUNDS,
        deadline,
        "upgrade-rollback-gate",
    ));
    rt.block_on(store.close());
    gate.map_err(|e| format!("after the rollback the server is {e}"))?;
    flush_queue();
    Ok(())
}

/// Whether the old binary (back at `BINARY_PATH`) works with the database as it is now: its
/// own `db status` says so (versions from before the additive rule refuse any newer schema).
fn old_accepts_schema(config_path: &Path) -> bool {
    Cmd::new(BINARY_PATH)
        .env(UNDER_UPGRADE_ENV, "1")
        .arg("--config")
        .arg(config_path.to_string_lossy())
        .args(["db", "status"])
        .run()
        .is_ok()
}

/// Mail deferred while a daemon restarted is delivered now, not at the next queue run.
fn flush_queue() {
    if let Err(e) = Cmd::new("postqueue").arg("-f").run() {
        eprintln!("    postqueue -f: {e}");
    }
}

/// Finishes what a killed upgrade left: an open journal is closed, after a rollback when the
/// server had started changing. The caller holds the lock.
pub fn recover(
    config_path: &Path,
    distro: &Distro,
    deadline: Duration,
) -> Result<Option<Journal>, UpgradeError> {
    let data = Config::load(config_path)
        .map(|c| c.paths.data.as_path().to_path_buf())
        .map_err(|e| UpgradeError::Failed(format!("the configuration ({e:#})")))?;
    let Some(journal) = Journal::open(&data).map_err(super::io(&data))? else {
        return Ok(None);
    };
    let phase = journal.reached();
    let failure = format!(
        "the upgrade to {} was interrupted during {}",
        journal.to,
        serde_json::to_value(journal.phase())
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    );
    println!("{failure}: finishing it first");
    if phase == Phase::Commit {
        // The new version had passed its health gate and its canary: it stands.
        println!(
            "its health gate and canary had passed: the upgrade to {} stands",
            journal.to
        );
        maintenance::leave(&data).map_err(super::io(&data))?;
        return journal
            .close(&data, Outcome::Upgraded)
            .map(Some)
            .map_err(super::io(&data));
    }
    if !phase.changes_the_server() {
        maintenance::leave(&data).map_err(super::io(&data))?;
        return journal
            .close(&data, Outcome::Refused { failure })
            .map(Some)
            .map_err(super::io(&data));
    }
    let point = journal
        .restore_point
        .clone()
        .ok_or_else(|| UpgradeError::Failed("the open journal names no restore point".into()))
        .and_then(|d| RestorePoint::load(&d))?;
    rollback(config_path, distro, journal, &point, failure, deadline).map(Some)
}

/// `upgrade --rollback`: back to the newest restore point of another version, by hand.
pub fn rollback_by_hand(
    config_path: &Path,
    distro: Distro,
    deadline: Duration,
) -> Result<Ended, UpgradeError> {
    let config = Config::load(config_path)
        .map_err(|e| UpgradeError::Failed(format!("the configuration ({e:#})")))?;
    let data = config.paths.data.as_path().to_path_buf();
    let _lock = take_lock(&data)?;
    if let Some(j) = recover(config_path, &distro, deadline)? {
        return Ok(Ended::Done(Box::new(j)));
    }
    let current = installed_version()?;
    let point = restore_point::list(&data)?
        .into_iter()
        .find(|p| p.meta.version != current)
        .ok_or_else(|| {
            UpgradeError::Failed(format!(
                "no restore point of another version than {current} in {}",
                restore_point::releases_dir(&data).display()
            ))
        })?;
    let mut journal = Journal::start(&data, "rollback", &current, &point.meta.version)
        .map_err(super::io(&data))?;
    journal.restore_point = Some(point.dir.clone());
    journal
        .enter(&data, Phase::Maintenance, None)
        .map_err(super::io(&data))?;
    maintenance::enter(
        &data,
        "modobox is being rolled back: changes are paused for a moment",
    )
    .map_err(super::io(&data))?;
    let j = rollback(
        config_path,
        &distro,
        journal,
        &point,
        format!("rollback by hand from {current}"),
        deadline,
    )?;
    Ok(Ended::Done(Box::new(j)))
}

/// Set for the old binary's install that a rollback runs: it is part of the rollback, which
/// holds the lock.
pub const UNDER_UPGRADE_ENV: &str = "MODOBOX_UNDER_UPGRADE";

/// For `install`: refuses while an upgrade runs, and finishes an interrupted one first. The
/// lock is held until the returned guard is dropped (no upgrade starts during the install).
pub fn guard_install(
    config_path: &Path,
    distro: &Distro,
) -> Result<Option<maintenance::UpgradeLock>, UpgradeError> {
    if std::env::var_os(UNDER_UPGRADE_ENV).is_some() {
        return Ok(None);
    }
    let Ok(config) = Config::load(config_path) else {
        // Not installed yet (or a configuration install itself will report on).
        return Ok(None);
    };
    let data = config.paths.data.as_path();
    if !data.exists() {
        return Ok(None);
    }
    let lock = maintenance::try_lock(data)
        .map_err(super::io(data))?
        .ok_or_else(|| {
            UpgradeError::Failed(
                "an upgrade or rollback of modobox is running: install again once it has finished \
             (`modobox upgrade --history` shows how it ended)"
                    .into(),
            )
        })?;
    recover(config_path, distro, DEFAULT_DEADLINE)?;
    Ok(Some(lock))
}

/// The health gate's default deadline.
pub const DEFAULT_DEADLINE: Duration = gate::DEADLINE;

/// For `run`: an upgrade that was killed and left its journal open (no one holds the lock)
/// needs finishing. True when there is one.
pub fn interrupted(data: &Path) -> bool {
    !maintenance::is_locked(data) && Journal::open(data).ok().flatten().is_some()
}
