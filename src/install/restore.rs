//! The steps of `install --restore` that bring a backup's server back on a fresh machine,
//! placed where the install has what each needs: the keys and statistics once the packages
//! created their users, the database right after the database server made it (so the schema,
//! roles, primary domain, superadmin and DKIM steps find the backup's rows and change
//! nothing), the mail before the services start taking new mail. Each runs once: what is
//! done is recorded in the rebuild state, so a rebuild killed halfway carries on when run
//! again (the database is not replaced a second time over mail that arrived since).

use std::path::PathBuf;

use super::{Check, Ctx, Step, StepError, StepResult};
use crate::backup::rebuild::RebuildState;
use crate::backup::restic::Repository;
use crate::backup::restore::{self, Fetched, Part, Selection};
use crate::backup::BackupContext;

/// The backup a rebuild restores, with its server files already fetched and checked.
#[derive(Debug)]
pub struct Rebuild {
    pub repository: Repository,
    /// The backup's full id.
    pub snapshot: String,
    pub state_path: PathBuf,
    pub files: Fetched,
}

impl Rebuild {
    fn state(&self) -> StepResult<RebuildState> {
        let state = RebuildState::load(&self.state_path).map_err(backup_error)?;
        Ok(state.unwrap_or_else(|| RebuildState {
            snapshot: self.snapshot.clone(),
            ..RebuildState::default()
        }))
    }

    fn record(&self, done: impl FnOnce(&mut RebuildState)) -> StepResult<()> {
        let mut state = self.state()?;
        done(&mut state);
        state.save(&self.state_path).map_err(backup_error)
    }
}

fn backup_error(e: crate::backup::BackupError) -> StepError {
    StepError::new(e.to_string())
}

fn rebuild(ctx: &Ctx) -> StepResult<&Rebuild> {
    ctx.restore
        .as_ref()
        .ok_or_else(|| StepError::new("no backup to restore"))
}

/// Whether `part` is still to do, and the change to show when it is.
fn pending(ctx: &Ctx, done: impl Fn(&RebuildState) -> bool, change: String) -> StepResult<Check> {
    if done(&rebuild(ctx)?.state()?) {
        Ok(Check::Done)
    } else {
        Ok(Check::Change(vec![change]))
    }
}

/// Restores `part` of the backup through the same code as `modobox backup restore`.
fn restore_part(ctx: &mut Ctx, part: Part) -> StepResult<restore::RestoreReport> {
    let store = ctx.store()?;
    let backup = BackupContext {
        config: ctx.config.clone(),
        distro: ctx.distro.clone(),
        secrets: ctx.secrets.clone(),
        store,
    };
    let r = rebuild(ctx)?;
    let selection = Selection::Parts(vec![part]);
    let fetched =
        restore::fetch(&backup, &r.repository, &r.snapshot, &selection).map_err(backup_error)?;
    ctx.rt
        .block_on(restore::apply(&backup, &fetched, &selection))
        .map_err(backup_error)
}

#[derive(Debug)]
pub struct RestoreKeys;

impl Step for RestoreKeys {
    fn name(&self) -> &'static str {
        "restore-keys"
    }

    fn check(&self, ctx: &mut Ctx) -> StepResult<Check> {
        pending(
            ctx,
            |s| s.files,
            "put the backup's DKIM keys, TLS key and certificate and statistics in place".into(),
        )
    }

    fn apply(&self, ctx: &mut Ctx) -> StepResult<()> {
        let r = rebuild(ctx)?;
        crate::backup::rebuild::put_keys_and_statistics(&r.files, &ctx.config, &ctx.distro)
            .map_err(backup_error)?;
        r.record(|s| s.files = true)
    }
}

#[derive(Debug)]
pub struct RestoreDatabase;

impl Step for RestoreDatabase {
    fn name(&self) -> &'static str {
        "restore-database"
    }

    fn check(&self, ctx: &mut Ctx) -> StepResult<Check> {
        let m = &rebuild(ctx)?.files.manifest;
        let change = format!(
            "load the backup's database (schema {}, {} domains, {} mailboxes)",
            m.schema_version,
            m.domains.len(),
            m.mailboxes.len()
        );
        pending(ctx, |s| s.database, change)
    }

    fn apply(&self, ctx: &mut Ctx) -> StepResult<()> {
        restore_part(ctx, Part::Db)?;
        // Tables were replaced under the pool's feet.
        ctx.reset_store();
        rebuild(ctx)?.record(|s| s.database = true)
    }
}

#[derive(Debug)]
pub struct RestoreMail;

impl Step for RestoreMail {
    fn name(&self) -> &'static str {
        "restore-mail"
    }

    fn check(&self, ctx: &mut Ctx) -> StepResult<Check> {
        let m = &rebuild(ctx)?.files.manifest;
        let change = format!(
            "bring back {} messages of {} mailboxes",
            m.total_messages(),
            m.mailboxes.len()
        );
        pending(ctx, |s| s.mail, change)
    }

    fn apply(&self, ctx: &mut Ctx) -> StepResult<()> {
        let report = restore_part(ctx, Part::Mail)?;
        ctx.notes.insert(format!(
            "{} messages back in {} mailboxes",
            report.messages_restored + report.messages_already_there,
            report.mailboxes
        ));
        rebuild(ctx)?.record(|s| s.mail = true)
    }
}
