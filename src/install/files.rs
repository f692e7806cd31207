//! Every configuration file of the stack from the templates, then the daemons' own checkers on
//! the result.

use std::path::{Path, PathBuf};

use super::{Check, Ctx, Step, StepError, StepResult};
use crate::config::Config;
use crate::distro::Family;
use crate::render::write::{self as render_write, State};
use crate::render::{self, RenderedFile};
use crate::system::cmd::{self, Cmd};

pub fn manifest_path(config: &Config) -> PathBuf {
    config
        .paths
        .data
        .as_path()
        .join(render::manifest::FILE_NAME)
}

pub fn rendered(ctx: &Ctx) -> StepResult<Vec<RenderedFile>> {
    let renderer = render::Renderer::new(None)?;
    let tctx = render::context::build(&ctx.config, &ctx.distro, &ctx.secrets);
    let mut files = renderer.render_all(&tctx)?;
    broken_by_faults(&mut files);
    Ok(files)
}

/// Fault points that break a template's output the way a bad release could (test builds only):
/// `template-postfix-invalid` (master.cf that `postfix check` refuses) and
/// `template-dovecot-unstartable` (a dovecot.conf that `doveconf -n` accepts but that cannot
/// start: it listens on an address this host does not have).
fn broken_by_faults(files: &mut [RenderedFile]) {
    // (fault point, file, line replaced, its replacement): lines away from the files' ends,
    // where the e2e test's edits by hand are (no merge conflict).
    let breakages = [
        (
            "template-postfix-invalid",
            "/master.cf",
            "pickup    unix",
            "broken-service inet\npickup    unix",
        ),
        (
            "template-dovecot-unstartable",
            "/dovecot.conf",
            "listen = *, ::",
            "listen = 192.0.2.55",
        ),
    ];
    for (point, file, from, to) in breakages {
        if crate::fault::point(point).is_err() {
            for f in files
                .iter_mut()
                .filter(|f| f.path.to_string_lossy().ends_with(file))
            {
                f.content = f.content.replacen(from, to, 1);
            }
        }
    }
}

/// The rendered files whose edits by hand conflict with the templates' changes.
pub fn conflicts(ctx: &Ctx) -> StepResult<Vec<PathBuf>> {
    let files = rendered(ctx)?;
    let records = render::base::Records::load(&manifest_path(&ctx.config))?;
    let root = crate::system::Root::host();
    Ok(render_write::compare(&root, &files, &records)?
        .into_iter()
        .filter(|c| matches!(c.state, State::Conflict { .. }))
        .map(|c| c.path)
        .collect())
}

#[derive(Debug)]
pub struct ConfigFiles;

impl Step for ConfigFiles {
    fn name(&self) -> &'static str {
        "config-files"
    }

    fn check(&self, ctx: &mut Ctx) -> StepResult<Check> {
        let files = rendered(ctx)?;
        let records = render::base::Records::load(&manifest_path(&ctx.config))?;
        let root = crate::system::Root::host();
        let changes_of = render_write::compare(&root, &files, &records)?;
        let mut changes = Vec::new();
        for (file, c) in files.iter().zip(&changes_of) {
            if matches!(c.state, State::Kept | State::HandEdited) {
                // Not a change the install makes, but the admin should know.
                ctx.notes
                    .insert(format!("{}: {}", c.path.display(), c.describe()));
            }
            if !c.changes_anything() {
                continue;
            }
            // Files others may not read can hold passwords: a plan never prints them.
            let diff = if file.mode & 0o004 == 0 {
                String::from("  (contents not shown: the file may hold secrets)\n")
            } else {
                c.diff.clone()
            };
            let mut what = match c.state {
                State::Missing => "new file".to_string(),
                State::Same => "symlink missing".to_string(),
                State::Foreign => {
                    "replaced: the distribution's file (backed up as .modobox-orig)".to_string()
                }
                _ => c.describe(),
            };
            if !matches!(c.state, State::Conflict { .. }) {
                ctx.planned_writes.push(c.path.clone());
            } else if !ctx.accept_conflicts {
                what.push_str("; the install stops here, before any daemon restarts");
            }
            changes.push(format!("{}: {what}\n{}", c.path.display(), diff.trim_end()));
        }
        let pending = changes_of
            .iter()
            .filter(|c| c.base_pending && !c.changes_anything())
            .count();
        if pending > 0 {
            // Installs from before base texts: recorded now, so later template changes merge.
            changes.push(format!(
                "record the base texts of {pending} files (what modobox wrote, for merging \
                 later template changes with edits by hand)"
            ));
        }
        if aliases_db_stale() {
            changes.push("build /etc/aliases.db (newaliases): main.cf reads it".into());
        }
        Ok(Check::from_changes(changes))
    }

    fn apply(&self, ctx: &mut Ctx) -> StepResult<()> {
        let files = rendered(ctx)?;
        let root = crate::system::Root::host();
        let options = render_write::Options {
            force: false,
            accept_conflicts: ctx.accept_conflicts,
        };
        // A conflict fails the step after every other file is written: the daemons are not
        // restarted with a half-decided configuration.
        let report = render_write::apply(&root, &files, &manifest_path(&ctx.config), options)?;
        // main.cf names the allow-list the postscreen_allowlist job fills: it must exist.
        let allowlist = crate::jobs::postscreen_allowlist::file(&ctx.config);
        crate::jobs::postscreen_allowlist::ensure(&ctx.config)
            .map_err(super::io_error(&allowlist))?;
        // After main.cf exists: newaliases reads it.
        if aliases_db_stale() {
            Cmd::new("newaliases").run()?;
        }
        for p in &report.backed_up {
            println!(
                "    backed up {} as {}.modobox-orig",
                p.display(),
                p.display()
            );
        }
        for p in &report.merged {
            ctx.notes.insert(format!(
                "{}: your edits were merged with the templates' changes",
                p.display()
            ));
        }
        for p in &report.conflicts {
            ctx.notes.insert(format!(
                "{}: kept as you edited it although the templates changed the same lines; \
                 merge {}{} into it by hand",
                p.display(),
                p.display(),
                render_write::NEW_SUFFIX
            ));
        }
        Ok(())
    }
}

/// main.cf's `alias_maps = hash:/etc/aliases` needs the compiled table (Debian's package leaves
/// it to the admin when Postfix is installed unconfigured).
fn aliases_db_stale() -> bool {
    let modified = |p: &str| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified("/etc/aliases"), modified("/etc/aliases.db")) {
        (Some(_), None) => cmd::exists("newaliases") || Path::new("/usr/bin/newaliases").exists(),
        (Some(src), Some(db)) => src > db,
        _ => false,
    }
}

/// The checkers each daemon ships, run on the files just written. A failure stops the install
/// before any daemon is restarted with a broken configuration.
pub fn validators(ctx: &Ctx) -> Vec<(&'static str, Cmd)> {
    let c = &ctx.config.components;
    let mut out = vec![
        ("postfix", Cmd::new("postfix").arg("check")),
        ("postfix main.cf", Cmd::new("postconf").arg("-n")),
        (
            "dovecot",
            Cmd::new("doveconf").args(["-n", "-c"]).arg(
                ctx.distro
                    .facts
                    .paths
                    .dovecot
                    .as_path()
                    .join("dovecot.conf")
                    .display()
                    .to_string(),
            ),
        ),
        ("nginx", Cmd::new("nginx").args(["-t", "-q"])),
    ];
    if c.opendkim {
        out.push((
            "opendkim",
            Cmd::new("opendkim")
                .args(["-n", "-x"])
                .arg(ctx.distro.facts.paths.opendkim_conf.as_str()),
        ));
    }
    if c.amavis {
        let amavis = match ctx.distro.facts.family {
            Family::Debian => Cmd::new("amavisd").arg("showkeys"),
            Family::Rhel => Cmd::new("amavisd")
                .args(["-c", ctx.distro.facts.amavis.config.as_str()])
                .arg("showkeys"),
        };
        out.push(("amavis", amavis));
    }
    out
}

#[derive(Debug)]
pub struct Validation;

fn failures(ctx: &Ctx) -> Vec<String> {
    let mut failed = Vec::new();
    for (name, cmd) in validators(ctx) {
        let program = cmd.shown();
        let program = program.split(' ').next().unwrap_or_default();
        if !cmd::exists(program) && !Path::new("/usr/sbin").join(program).exists() {
            failed.push(format!("{name}: {program} is not installed"));
            continue;
        }
        if let Err(e) = cmd.run() {
            failed.push(format!("{name}: {e}"));
        }
    }
    failed
}

impl Step for Validation {
    fn name(&self) -> &'static str {
        "validation"
    }

    fn check(&self, ctx: &mut Ctx) -> StepResult<Check> {
        let failed = failures(ctx);
        if failed.is_empty() {
            Ok(Check::Done)
        } else if ctx.dry_run {
            // The packages and files the checkers need may not be there before the install.
            Ok(Check::Change(
                failed
                    .into_iter()
                    .map(|f| format!("check after installing: {f}"))
                    .collect(),
            ))
        } else {
            Err(StepError::new(format!(
                "the daemons' checkers refuse the configuration:\n  {}",
                failed.join("\n  ")
            )))
        }
    }

    fn apply(&self, _ctx: &mut Ctx) -> StepResult<()> {
        Ok(())
    }
}
