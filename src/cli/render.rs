//! `modobox render`: every configuration file of the stack under a root, or the diff.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::{Global, RenderArgs};
use crate::config::Config;
use crate::distro::Distro;
use crate::render;
use crate::render::merge::MergeClass;
use crate::render::write as render_write;
use crate::secrets::Secrets;
use crate::system::Root;

pub fn render_command(global: &Global, args: &RenderArgs) -> Result<ExitCode> {
    let config = Config::load(&global.config)?;
    let distro = Distro::resolve(global.distro.as_ref())?;
    let root = args.root.as_ref().map_or_else(Root::host, Root::new);
    let secrets_path = root.path(config.paths.secrets.as_path());
    let secrets = if args.diff {
        Secrets::load_or_generate(&secrets_path)?
    } else {
        Secrets::load_or_create(&secrets_path)?
    };
    let renderer = render::Renderer::new(args.templates.as_deref())?;
    let ctx = render::context::build(&config, &distro, &secrets);
    let files = renderer.render_all(&ctx)?;
    let manifest_path = config
        .paths
        .data
        .as_path()
        .join(render::manifest::FILE_NAME);
    let mut out = std::io::stdout().lock();
    if args.diff {
        let records = render::base::Records::load(&root.path(&manifest_path))
            .with_context(|| format!("reading the manifest under {}", root.dir().display()))?;
        let changes = render_write::compare(&root, &files, &records)?;
        let mut changed = 0;
        for c in &changes {
            if c.changes_anything() {
                changed += 1;
            } else if c.state.class() == MergeClass::Unchanged {
                continue;
            }
            let link = if c.link_missing && c.changes_anything() {
                " (symlink missing)"
            } else {
                ""
            };
            writeln!(out, "== {}: {}{link}", c.path.display(), c.describe())?;
            write!(out, "{}", c.diff)?;
        }
        writeln!(out, "{changed} of {} files would change", changes.len())?;
        let pending = changes
            .iter()
            .filter(|c| c.base_pending && !c.changes_anything())
            .count();
        if pending > 0 {
            writeln!(
                out,
                "{pending} unchanged files would get their base text recorded (for merging \
                 later template changes)"
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let options = render_write::Options {
        force: args.force,
        accept_conflicts: args.accept_conflicts,
    };
    let (report, failure) = match render_write::apply(&root, &files, &manifest_path, options) {
        Ok(report) => (report, None),
        Err(e) => {
            // The other files were written: say what happened to them, then fail.
            let message = e.to_string();
            match e {
                render_write::WriteError::Conflicts { report } => (*report, Some(message)),
                other => return Err(other.into()),
            }
        }
    };
    for p in &report.backed_up {
        writeln!(
            out,
            "backed up {} to {}.modobox-orig",
            p.display(),
            p.display()
        )?;
    }
    for p in &report.merged {
        writeln!(
            out,
            "merged {}: your edits and the templates' changes",
            p.display()
        )?;
    }
    for p in &report.without_base {
        writeln!(
            out,
            "kept {} (edited by hand, no base to merge with; --force replaces it)",
            p.display()
        )?;
    }
    for p in &report.conflicts {
        writeln!(
            out,
            "conflict in {}: kept as it is, the new output is {}{}",
            p.display(),
            p.display(),
            render_write::NEW_SUFFIX
        )?;
    }
    writeln!(
        out,
        "rendered {} files under {}: {} written ({} merged), {} unchanged, {} kept, {} in conflict",
        files.len(),
        root.dir().display(),
        report.written.len(),
        report.merged.len(),
        report.unchanged.len(),
        report.kept.len(),
        report.conflicts.len()
    )?;
    if let Some(message) = failure {
        anyhow::bail!(message);
    }
    Ok(ExitCode::SUCCESS)
}
