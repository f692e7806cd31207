//! Comparing rendered files with what is on disk (`render --diff`, `plan`) and writing them
//! (`render`, `install`): atomically, with modes and owners, respecting hand edits.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use similar::TextDiff;

use super::manifest::{checksum, Manifest};
use super::RenderedFile;
use crate::system::fs::write_atomic;
use crate::system::Root;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Not on disk yet.
    Missing,
    /// Content and mode already right.
    Same,
    /// Content right, mode wrong.
    Mode { current: u32 },
    /// Different content, last written by modobox: will be replaced.
    Outdated,
    /// Different content that modobox did not write (an edit by hand): kept unless forced.
    HandEdited,
    /// Present but never written by modobox (the distribution's file): backed up, replaced.
    Foreign,
}

#[derive(Debug, Clone)]
pub struct Change {
    pub path: PathBuf,
    pub state: State,
    /// Unified diff from disk to rendered (empty when the content is the same).
    pub diff: String,
    /// The symlink (nginx sites-enabled) is missing or points elsewhere.
    pub link_missing: bool,
}

impl Change {
    pub fn changes_anything(&self) -> bool {
        self.state != State::Same || self.link_missing
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        path: path.display().to_string(),
        source,
    }
}

pub fn diff_text(path: &Path, old: &str, new: &str) -> String {
    if old == new {
        return String::new();
    }
    let shown = path.display().to_string();
    TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(
            &format!("{shown} (on disk)"),
            &format!("{shown} (rendered)"),
        )
        .to_string()
}

fn link_missing(root: &Root, file: &RenderedFile) -> bool {
    match &file.link {
        None => false,
        Some(link) => std::fs::read_link(root.path(link)).map_or(true, |t| t != file.path),
    }
}

/// What writing `files` under `root` would change.
pub fn compare(
    root: &Root,
    files: &[RenderedFile],
    manifest: &Manifest,
) -> Result<Vec<Change>, WriteError> {
    let mut out = Vec::new();
    for file in files {
        let target = root.path(&file.path);
        let (state, diff) = match std::fs::read(&target) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                (State::Missing, diff_text(&file.path, "", &file.content))
            }
            Err(e) => return Err(io_err(&target)(e)),
            Ok(bytes) => {
                let current = String::from_utf8_lossy(&bytes);
                let diff = diff_text(&file.path, &current, &file.content);
                let state = if bytes == file.content.as_bytes() {
                    let mode = std::fs::metadata(&target)
                        .map_err(io_err(&target))?
                        .permissions()
                        .mode()
                        & 0o7777;
                    if mode == file.mode {
                        State::Same
                    } else {
                        State::Mode { current: mode }
                    }
                } else if manifest.hand_edited(&file.path, &bytes) {
                    State::HandEdited
                } else if manifest.files.contains_key(&file.path) {
                    State::Outdated
                } else {
                    State::Foreign
                };
                (state, diff)
            }
        };
        out.push(Change {
            path: file.path.clone(),
            state,
            diff,
            link_missing: link_missing(root, file),
        });
    }
    Ok(out)
}

#[derive(Debug, Default)]
pub struct Report {
    pub written: Vec<PathBuf>,
    pub unchanged: Vec<PathBuf>,
    /// Hand-edited files left alone (use `--force` to replace them).
    pub kept: Vec<PathBuf>,
    /// Foreign files saved as `<file>.modobox-orig` before being replaced.
    pub backed_up: Vec<PathBuf>,
}

/// Writes `files` under `root` and records them in the manifest at `manifest_path` (a path of
/// the target system). Hand-edited files are kept unless `force`.
pub fn apply(
    root: &Root,
    files: &[RenderedFile],
    manifest_path: &Path,
    force: bool,
) -> Result<Report, WriteError> {
    let manifest_file = root.path(manifest_path);
    let mut manifest = Manifest::load(&manifest_file).map_err(io_err(&manifest_file))?;
    let changes = compare(root, files, &manifest)?;
    let mut report = Report::default();
    for (file, change) in files.iter().zip(changes) {
        let target = root.path(&file.path);
        let owner = Some(&file.owner);
        match change.state {
            State::Same => report.unchanged.push(file.path.clone()),
            State::HandEdited if !force => {
                report.kept.push(file.path.clone());
                continue;
            }
            State::Foreign => {
                let backup = PathBuf::from(format!("{}.modobox-orig", target.display()));
                if !backup.exists() {
                    std::fs::copy(&target, &backup).map_err(io_err(&backup))?;
                }
                report.backed_up.push(file.path.clone());
                write_atomic(&target, file.content.as_bytes(), file.mode, owner)
                    .map_err(io_err(&target))?;
                report.written.push(file.path.clone());
            }
            State::Missing | State::Outdated | State::HandEdited | State::Mode { .. } => {
                write_atomic(&target, file.content.as_bytes(), file.mode, owner)
                    .map_err(io_err(&target))?;
                report.written.push(file.path.clone());
            }
        }
        if let Some(link) = &file.link {
            if change.link_missing {
                let link_path = root.path(link);
                if let Some(dir) = link_path.parent() {
                    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
                }
                let _ = std::fs::remove_file(&link_path);
                std::os::unix::fs::symlink(&file.path, &link_path).map_err(io_err(&link_path))?;
            }
        }
        manifest
            .files
            .insert(file.path.clone(), checksum(file.content.as_bytes()));
    }
    manifest
        .save(&manifest_file)
        .map_err(io_err(&manifest_file))?;
    Ok(report)
}
