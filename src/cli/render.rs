//! `modobox render`: every configuration file of the stack under a root, or the diff.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::{Global, RenderArgs};
use crate::config::Config;
use crate::distro::Distro;
use crate::render;
use crate::render::write::{self as render_write, State};
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
        let manifest = render::manifest::Manifest::load(&root.path(&manifest_path))
            .with_context(|| format!("reading the manifest under {}", root.dir().display()))?;
        let changes = render_write::compare(&root, &files, &manifest)?;
        let mut changed = 0;
        for c in &changes {
            if !c.changes_anything() {
                continue;
            }
            changed += 1;
            let what = match c.state {
                State::Missing => "new file".to_string(),
                State::Same => "symlink missing".to_string(),
                State::Mode { current } => format!("mode {current:o} will change"),
                State::Outdated => "will change".to_string(),
                State::HandEdited => "edited by hand: kept (use --force to replace)".to_string(),
                State::Foreign => {
                    "not written by modobox: will be backed up and replaced".to_string()
                }
            };
            writeln!(out, "== {}: {what}", c.path.display())?;
            write!(out, "{}", c.diff)?;
        }
        writeln!(out, "{changed} of {} files would change", changes.len())?;
        return Ok(ExitCode::SUCCESS);
    }
    let report = render_write::apply(&root, &files, &manifest_path, args.force)?;
    for p in &report.backed_up {
        writeln!(
            out,
            "backed up {} to {}.modobox-orig",
            p.display(),
            p.display()
        )?;
    }
    for p in &report.kept {
        writeln!(
            out,
            "kept {} (edited by hand; --force replaces it)",
            p.display()
        )?;
    }
    writeln!(
        out,
        "rendered {} files under {}: {} written, {} unchanged, {} kept",
        files.len(),
        root.dir().display(),
        report.written.len(),
        report.unchanged.len(),
        report.kept.len()
    )?;
    Ok(ExitCode::SUCCESS)
}
