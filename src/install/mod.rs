//! `modobox install` and `modobox plan`: the mail server as an ordered list of idempotent
//! steps. Each step can say whether it is done (and what it would change) and can apply
//! itself; a step that still has changes right after applying is an error, so a re-run of a
//! finished install reports zero changes and a killed install completes when run again.

pub mod database;
pub mod files;
pub mod keys;
pub mod packages;
pub mod preflight;
pub mod restore;
pub mod security;
pub mod services;
pub mod summary;
pub mod system;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use crate::config::Config;
use crate::distro::Distro;
use crate::secrets::Secrets;
use crate::store::{DatabaseUrl, Store};

/// Why a step could not check or apply itself, in words for the admin.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StepError(pub String);

impl StepError {
    pub fn new(message: impl Into<String>) -> Self {
        StepError(message.into())
    }
}

macro_rules! step_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StepError {
            fn from(e: $t) -> Self {
                StepError(e.to_string())
            }
        }
    )*};
}
step_error_from!(
    crate::system::cmd::CmdError,
    crate::store::StoreError,
    crate::render::RenderError,
    crate::render::write::WriteError,
    crate::secrets::SecretsError,
    crate::service::ServiceError
);

/// `std::io::Error` carries no path: name it.
pub fn io_error(what: &std::path::Path) -> impl FnOnce(std::io::Error) -> StepError + '_ {
    move |e| StepError(format!("{}: {e}", what.display()))
}

pub type StepResult<T> = Result<T, StepError>;

/// What a step's check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    Done,
    /// What applying would change, one item per line (diffs included).
    Change(Vec<String>),
}

impl Check {
    pub fn from_changes(changes: Vec<String>) -> Self {
        if changes.is_empty() {
            Check::Done
        } else {
            Check::Change(changes)
        }
    }
}

pub trait Step {
    /// Short, stable name shown in the plan.
    fn name(&self) -> &'static str;
    fn check(&self, ctx: &mut Ctx) -> StepResult<Check>;
    fn apply(&self, ctx: &mut Ctx) -> StepResult<()>;
}

/// Everything the steps share.
#[derive(Debug)]
pub struct Ctx {
    pub config: Config,
    pub config_path: PathBuf,
    pub distro: Distro,
    /// Generated in memory until the configuration step writes them (0600).
    pub secrets: Secrets,
    pub rt: tokio::runtime::Runtime,
    /// The first superadmin's password, only when this run created it (shown once).
    pub new_admin_password: Option<String>,
    /// `plan`: checks only; a check may not fail because an earlier step has not run.
    pub dry_run: bool,
    /// Go on past a rendered file whose edit by hand conflicts with a template change (the
    /// file stays, `FILE.modobox-new` beside it); otherwise the install stops there, before
    /// any daemon is restarted.
    pub accept_conflicts: bool,
    /// Things the admin should know that are not changes (printed once, after the step).
    pub notes: std::collections::BTreeSet<String>,
    /// `install --restore`: the backup this install rebuilds the server from.
    pub restore: Option<restore::Rebuild>,
    /// `plan`: the files earlier steps' checks found they would write (the binary, rendered
    /// files), so that the services step can say which units would restart.
    pub planned_writes: Vec<PathBuf>,
    /// A first boot (`image firstboot`): the new superadmin's password goes into this file
    /// (0600) and never into the output.
    pub credentials_file: Option<PathBuf>,
    store: Option<Store>,
}

impl Ctx {
    pub fn new(
        config: Config,
        config_path: PathBuf,
        distro: Distro,
        secrets: Secrets,
    ) -> StepResult<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| StepError(format!("starting the async runtime: {e}")))?;
        Ok(Ctx {
            config,
            config_path,
            distro,
            secrets,
            rt,
            new_admin_password: None,
            dry_run: false,
            accept_conflicts: false,
            notes: std::collections::BTreeSet::new(),
            restore: None,
            planned_writes: Vec::new(),
            credentials_file: None,
            store: None,
        })
    }

    pub fn database_url(&self) -> DatabaseUrl {
        DatabaseUrl::from_config(&self.config, &self.secrets)
    }

    /// The store, connected on first use.
    pub fn store(&mut self) -> StepResult<Store> {
        if let Some(s) = &self.store {
            return Ok(s.clone());
        }
        let url = self.database_url();
        let store = self.rt.block_on(Store::connect(&url))?;
        self.store = Some(store.clone());
        Ok(store)
    }

    /// Forgets the connection (after the database server or role changed).
    pub fn reset_store(&mut self) {
        if let Some(s) = self.store.take() {
            self.rt.block_on(s.close());
        }
    }

    pub fn close(mut self) {
        self.reset_store();
    }
}

/// The steps that bring an existing database up to date: after a restore replaced it.
pub fn database_steps() -> Vec<Box<dyn Step>> {
    vec![Box::new(database::Schema), Box::new(database::DaemonRoles)]
}

/// The whole install, in order, for this configuration and distribution (with the restore
/// steps in their places when it rebuilds a server from a backup).
pub fn steps(ctx: &Ctx) -> Vec<Box<dyn Step>> {
    let rebuild = ctx.restore.is_some();
    let mut steps: Vec<Box<dyn Step>> = vec![
        Box::new(system::Configuration),
        Box::new(system::Binary),
        Box::new(packages::Packages),
        Box::new(system::Accounts),
    ];
    if rebuild {
        steps.push(Box::new(restore::RestoreKeys));
    }
    steps.push(Box::new(database::Server));
    if rebuild {
        steps.push(Box::new(restore::RestoreDatabase));
    }
    steps.extend::<[Box<dyn Step>; 8]>([
        Box::new(database::Schema),
        Box::new(database::DaemonRoles),
        Box::new(database::PrimaryDomain),
        Box::new(database::Superadmin),
        Box::new(keys::Certificate),
        Box::new(keys::DkimKey),
        Box::new(files::ConfigFiles),
        Box::new(files::Validation),
    ]);
    if rebuild {
        steps.push(Box::new(restore::RestoreMail));
    }
    if ctx.distro.facts.security.selinux {
        steps.push(Box::new(security::Selinux));
    }
    if ctx.distro.facts.security.firewalld {
        steps.push(Box::new(security::Firewall));
    }
    steps.push(Box::new(services::Services));
    if ctx.config.tls.mode == crate::config::TlsMode::Acme {
        steps.push(Box::new(keys::Acme));
    }
    steps
}

/// How one step ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepReport {
    pub step: &'static str,
    /// "ok" (nothing to do), "changed" (applied), "will change" (plan only).
    pub outcome: &'static str,
    pub changes: Vec<String>,
    pub seconds: f64,
}

/// Progress lines: rewritten in place on a terminal, one line per step otherwise.
struct Progress {
    terminal: bool,
    total: usize,
}

impl Progress {
    fn start(&self, i: usize, name: &str) {
        if self.terminal {
            print!("\r\x1b[2K[{}/{}] {name} …", i + 1, self.total);
            let _ = std::io::stdout().flush();
        }
    }
    fn done(&self, i: usize, name: &str, outcome: &str, seconds: f64) {
        if self.terminal {
            print!("\r\x1b[2K");
        }
        println!(
            "[{}/{}] {name}: {outcome} ({seconds:.1} s)",
            i + 1,
            self.total
        );
    }
}

/// Checks every step; applies those with changes unless `ctx.dry_run`. Stops at the first error,
/// naming the step: what was done before it stays done, and a re-run carries on from there.
pub fn run(
    ctx: &mut Ctx,
    steps: &[Box<dyn Step>],
    show_details: bool,
) -> StepResult<Vec<StepReport>> {
    run_with(ctx, steps, show_details, &mut |_| Ok(()))
}

/// `run`, telling `before_step` the name of each step before it is checked (the upgrade
/// journals it); an error from it stops the run there.
pub fn run_with(
    ctx: &mut Ctx,
    steps: &[Box<dyn Step>],
    show_details: bool,
    before_step: &mut dyn FnMut(&str) -> StepResult<()>,
) -> StepResult<Vec<StepReport>> {
    let progress = Progress {
        terminal: std::io::stdout().is_terminal(),
        total: steps.len(),
    };
    let mut reports = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let name = step.name();
        progress.start(i, name);
        let started = Instant::now();
        let in_step = |e: StepError| StepError(format!("step {name}: {e}"));
        before_step(name).map_err(in_step)?;
        let check = step.check(ctx).map_err(in_step)?;
        let (outcome, changes) = match check {
            Check::Done => ("ok", Vec::new()),
            Check::Change(changes) if ctx.dry_run => ("will change", changes),
            Check::Change(changes) => {
                step.apply(ctx).map_err(in_step)?;
                // The notes of the check after applying would describe the new state as if
                // nothing had happened ("kept: edited by hand"): only the first two count.
                let notes = std::mem::take(&mut ctx.notes);
                let after = step.check(ctx).map_err(in_step)?;
                ctx.notes = notes;
                if let Check::Change(left) = after {
                    return Err(in_step(StepError(format!(
                        "still not done after applying it:\n  {}",
                        left.join("\n  ")
                    ))));
                }
                ("changed", changes)
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        progress.done(i, name, outcome, seconds);
        for note in std::mem::take(&mut ctx.notes) {
            println!("    note: {note}");
        }
        if show_details {
            for c in &changes {
                for line in c.lines() {
                    println!("    {line}");
                }
            }
        }
        reports.push(StepReport {
            step: name,
            outcome,
            changes,
            seconds,
        });
    }
    Ok(reports)
}
