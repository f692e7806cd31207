//! Comparing rendered files with what is on disk (`render --diff`, `plan`) and writing them
//! (`render`, `install`): atomically, with modes and owners, merging an admin's edits with the
//! templates' changes three ways (`merge.rs`) against the base texts (`base.rs`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use similar::TextDiff;

use super::base::Records;
use super::merge::{three_way, MergeClass, Outcome};
use super::RenderedFile;
use crate::system::fs::write_atomic;
use crate::system::Root;

/// Beside a conflicting file: the new template output, for the admin to merge by hand.
pub const NEW_SUFFIX: &str = ".modobox-new";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Not on disk yet.
    Missing,
    /// Content and mode already right.
    Same,
    /// Content right, mode wrong.
    Mode { current: u32 },
    /// Not edited since modobox wrote it: replaced.
    Outdated,
    /// Present but never written by modobox (the distribution's file): backed up, replaced.
    Foreign,
    /// Edited by hand, and the templates produce what modobox last wrote: left as it is.
    Kept,
    /// Edited by hand, with no base text known (written before modobox kept them, or by
    /// something else since): left as it is, the templates' changes missed; `force` replaces it.
    HandEdited,
    /// Edited by hand, the templates changed other lines: this merge is written.
    Merged { text: String },
    /// Edited by hand on the lines the templates changed: left as it is, the new output is
    /// written beside it as `FILE.modobox-new`. `marked`: the file with the conflicting lines
    /// marked, to show where.
    Conflict { marked: String },
}

impl State {
    pub fn class(&self) -> MergeClass {
        match self {
            State::Missing => MergeClass::NewFile,
            State::Same => MergeClass::Unchanged,
            State::Mode { .. } | State::Outdated | State::Foreign => MergeClass::Replaced,
            State::Kept | State::HandEdited => MergeClass::Kept,
            State::Merged { .. } => MergeClass::Merged,
            State::Conflict { .. } => MergeClass::Conflict,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Change {
    pub path: PathBuf,
    pub state: State,
    /// Unified diff from the file on disk to what the render writes (to the template output
    /// for a file kept without a base; to the file with its conflicts marked for a conflict);
    /// empty for a file kept as it is.
    pub diff: String,
    /// The symlink (nginx sites-enabled) is missing or points elsewhere.
    pub link_missing: bool,
    /// A render would record today's output as the base (files written before modobox kept
    /// base texts), with nothing else to change in the file itself.
    pub base_pending: bool,
}

impl Change {
    /// True when a render writes something for this file. A file left to the admin is not
    /// touched, nor is its symlink (as before merges existed).
    pub fn changes_anything(&self) -> bool {
        match self.state {
            State::Same => self.link_missing,
            State::Kept | State::HandEdited => false,
            _ => true,
        }
    }

    /// The merge class with what it means for this file, in words for the admin.
    pub fn describe(&self) -> String {
        let class = self.state.class();
        let detail = match &self.state {
            State::Missing | State::Same => return class.to_string(),
            State::Mode { current } => format!("mode {current:o} changes"),
            State::Outdated => "not edited since modobox wrote it".into(),
            State::Foreign => format!(
                "not written by modobox: saved first as {}.modobox-orig",
                self.path.display()
            ),
            State::Kept => {
                "edited by hand; the templates have not changed it since (later changes will be \
                 merged)"
                    .into()
            }
            State::HandEdited => "edited by hand before modobox kept its base texts, so the \
                                  templates' changes cannot be merged (--force replaces it)"
                .into(),
            State::Merged { .. } => "edited by hand; your edits and the templates' changes \
                                     are both in it"
                .into(),
            State::Conflict { .. } => format!(
                "edited by hand on the lines the templates changed: the file stays as it is, \
                 the new output goes to {}{NEW_SUFFIX}",
                self.path.display()
            ),
        };
        format!("{class}: {detail}")
    }
}

/// What `apply` may do beyond the safe default.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Replace files edited by hand too (kept, merged or conflicting): the template output wins.
    pub force: bool,
    /// Go on past conflicts: the admin's file stays, `FILE.modobox-new` holds the new output,
    /// and that output becomes the base (the file counts as the admin's edit of it).
    pub accept_conflicts: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// Every other file was written; callers stop before restarting any daemon.
    #[error("{}", conflicts_message(&.report.conflicts))]
    Conflicts { report: Box<Report> },
}

fn conflicts_message(paths: &[PathBuf]) -> String {
    let list: Vec<String> = paths
        .iter()
        .map(|p| {
            format!(
                "{} (new output in {}{NEW_SUFFIX})",
                p.display(),
                p.display()
            )
        })
        .collect();
    format!(
        "edits by hand conflict with the templates' changes in {}; those files are kept as \
         they are. Merge each by hand and run again accepting the conflicts \
         (--accept-conflicts), or take the new output (mv FILE{NEW_SUFFIX} FILE)",
        list.join(", ")
    )
}

pub(super) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        path: path.display().to_string(),
        source,
    }
}

pub fn diff_text(path: &Path, old: &str, new: &str) -> String {
    diff_labelled(path, old, new, "rendered")
}

fn diff_labelled(path: &Path, old: &str, new: &str, label: &str) -> String {
    if old == new {
        return String::new();
    }
    let shown = path.display().to_string();
    TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{shown} (on disk)"), &format!("{shown} ({label})"))
        .to_string()
}

fn link_missing(root: &Root, file: &RenderedFile) -> bool {
    match &file.link {
        None => false,
        Some(link) => std::fs::read_link(root.path(link)).map_or(true, |t| t != file.path),
    }
}

/// What writing `files` under `root` would change, given what modobox last wrote.
pub fn compare(
    root: &Root,
    files: &[RenderedFile],
    records: &Records,
) -> Result<Vec<Change>, WriteError> {
    let mut out = Vec::new();
    for file in files {
        let target = root.path(&file.path);
        let (state, diff) = match std::fs::read(&target) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                (State::Missing, diff_text(&file.path, "", &file.content))
            }
            Err(e) => return Err(io_err(&target)(e)),
            Ok(bytes) if bytes == file.content.as_bytes() => {
                let mode = std::fs::metadata(&target)
                    .map_err(io_err(&target))?
                    .permissions()
                    .mode()
                    & 0o7777;
                let state = if mode == file.mode {
                    State::Same
                } else {
                    State::Mode { current: mode }
                };
                (state, String::new())
            }
            Ok(bytes) => {
                let state = edited_state(records, file, &bytes)?;
                let current = String::from_utf8_lossy(&bytes);
                let diff = match &state {
                    State::Kept => String::new(),
                    State::Merged { text } => diff_text(&file.path, &current, text),
                    State::Conflict { marked } if !marked.is_empty() => diff_labelled(
                        &file.path,
                        &current,
                        marked,
                        "conflicts marked: ours = on disk, theirs = the templates'",
                    ),
                    _ => diff_text(&file.path, &current, &file.content),
                };
                (state, diff)
            }
        };
        // Recorded whatever else happens, except for a file whose base stays unknown or stays
        // the old one until its conflict is settled.
        let base_pending = match state {
            State::HandEdited | State::Conflict { .. } => false,
            _ => !records.holds(&file.path, &file.content)?,
        };
        out.push(Change {
            path: file.path.clone(),
            state,
            diff,
            link_missing: link_missing(root, file),
            base_pending,
        });
    }
    Ok(out)
}

/// The state of a file on disk that differs from the template output.
fn edited_state(records: &Records, file: &RenderedFile, disk: &[u8]) -> Result<State, WriteError> {
    if !records.manifest.files.contains_key(&file.path) {
        return Ok(State::Foreign);
    }
    let Some(base) = records.known_base(&file.path, disk, &file.content)? else {
        return Ok(State::HandEdited);
    };
    // Text that is not UTF-8 cannot be merged line by line: a person decides (the diff shows
    // the new output then, there are no lines to mark).
    let Ok(disk) = std::str::from_utf8(disk) else {
        return Ok(State::Conflict {
            marked: String::new(),
        });
    };
    Ok(match three_way(&base, disk, &file.content) {
        Outcome::Unchanged => State::Same,
        Outcome::Replace => State::Outdated,
        Outcome::Keep => State::Kept,
        Outcome::Merged(text) => State::Merged { text },
        Outcome::Conflict(marked) => State::Conflict { marked },
    })
}

#[derive(Debug, Default)]
pub struct Report {
    /// The target was written: new, replaced or merged.
    pub written: Vec<PathBuf>,
    pub unchanged: Vec<PathBuf>,
    /// Edited by hand and left as they are (conflicts apart).
    pub kept: Vec<PathBuf>,
    /// Of `kept`: no base known, so the templates' changes are missed (`force` replaces them).
    pub without_base: Vec<PathBuf>,
    /// Of `written`: the admin's edits merged with the templates' changes.
    pub merged: Vec<PathBuf>,
    /// Left as they are, the new output beside them as `FILE.modobox-new`.
    pub conflicts: Vec<PathBuf>,
    /// Foreign files saved as `<file>.modobox-orig` before being replaced.
    pub backed_up: Vec<PathBuf>,
}

/// Writes `files` under `root` and records each one (its base text and the manifest at
/// `manifest_path`, a path of the target system) right after writing it, so a run killed
/// halfway leaves every record true. Conflicts end in `WriteError::Conflicts`, after every
/// other file was written, unless `options.accept_conflicts`.
pub fn apply(
    root: &Root,
    files: &[RenderedFile],
    manifest_path: &Path,
    options: Options,
) -> Result<Report, WriteError> {
    let mut records = Records::load(&root.path(manifest_path))?;
    let changes = compare(root, files, &records)?;
    let mut report = Report::default();
    for (file, change) in files.iter().zip(changes) {
        let target = root.path(&file.path);
        let write = |content: &str, to: &Path| {
            write_atomic(to, content.as_bytes(), file.mode, Some(&file.owner)).map_err(io_err(to))
        };
        let edited = matches!(
            change.state,
            State::Kept | State::HandEdited | State::Merged { .. } | State::Conflict { .. }
        );
        // Today's behaviour for a file left to the admin: its symlink is left alone too.
        let left_as_is = !options.force
            && matches!(
                change.state,
                State::Kept | State::HandEdited | State::Conflict { .. }
            );
        match change.state {
            State::Same => report.unchanged.push(file.path.clone()),
            _ if edited && options.force => {
                write(&file.content, &target)?;
                report.written.push(file.path.clone());
            }
            State::Missing | State::Mode { .. } | State::Outdated => {
                write(&file.content, &target)?;
                report.written.push(file.path.clone());
            }
            State::Foreign => {
                let backup = PathBuf::from(format!("{}.modobox-orig", target.display()));
                if !backup.exists() {
                    std::fs::copy(&target, &backup).map_err(io_err(&backup))?;
                }
                report.backed_up.push(file.path.clone());
                write(&file.content, &target)?;
                report.written.push(file.path.clone());
            }
            State::Kept => {
                // Recorded below: the base may so far be known from the manifest alone.
                report.kept.push(file.path.clone());
            }
            State::HandEdited => {
                // What modobox wrote before is unknown: no base to record.
                report.kept.push(file.path.clone());
                report.without_base.push(file.path.clone());
                continue;
            }
            State::Merged { ref text } => {
                write(text, &target)?;
                report.written.push(file.path.clone());
                report.merged.push(file.path.clone());
            }
            State::Conflict { .. } => {
                let beside = PathBuf::from(format!("{}{NEW_SUFFIX}", target.display()));
                if std::fs::read(&beside).ok().as_deref() != Some(file.content.as_bytes()) {
                    write(&file.content, &beside)?;
                }
                report.conflicts.push(file.path.clone());
                if !options.accept_conflicts {
                    // The base stays: the next run finds the same conflict until it is settled.
                    continue;
                }
            }
        }
        if let Some(link) = &file.link {
            if change.link_missing && !left_as_is {
                let link_path = root.path(link);
                if let Some(dir) = link_path.parent() {
                    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
                }
                let _ = std::fs::remove_file(&link_path);
                std::os::unix::fs::symlink(&file.path, &link_path).map_err(io_err(&link_path))?;
            }
        }
        // The base is the template output even after a merge: the disk holds the admin's
        // edits on top of it, which the next merge must see as theirs.
        records.record(&file.path, &file.content)?;
    }
    if !report.conflicts.is_empty() && !options.accept_conflicts {
        return Err(WriteError::Conflicts {
            report: Box::new(report),
        });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::manifest::{checksum, Manifest};
    use crate::system::fs::Owner;

    const MANIFEST: &str = "/var/lib/modobox/rendered-files.json";
    const MAIN_CF: &str = "/etc/postfix/main.cf";
    const V1: &str = "# main.cf\nmyhostname = mail.example.test\nbiff = no\n\
                      append_dot_mydomain = no\nreadme_directory = no\n\
                      smtpd_banner = $myhostname ESMTP\ndelay_warning_time = 4h\n";

    fn file(path: &str, mode: u32, content: &str) -> RenderedFile {
        RenderedFile {
            path: PathBuf::from(path),
            mode,
            owner: Owner {
                user: "root".into(),
                group: "root".into(),
            },
            content: content.to_string(),
            link: None,
            template: "test".into(),
        }
    }

    fn main_cf(content: &str) -> RenderedFile {
        file(MAIN_CF, 0o644, content)
    }

    fn edit(text: &str, from: &str, to: &str) -> String {
        assert!(text.contains(from), "{from:?} not in {text:?}");
        text.replacen(from, to, 1)
    }

    struct Site {
        _dir: tempfile::TempDir,
        root: Root,
    }

    impl Site {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let root = Root::new(dir.path());
            Site { _dir: dir, root }
        }

        fn apply(&self, files: &[RenderedFile], options: Options) -> Result<Report, WriteError> {
            apply(&self.root, files, Path::new(MANIFEST), options)
        }

        fn render(&self, files: &[RenderedFile]) -> Report {
            self.apply(files, Options::default()).unwrap()
        }

        fn compare(&self, files: &[RenderedFile]) -> Vec<Change> {
            let records = Records::load(&self.root.path(Path::new(MANIFEST))).unwrap();
            compare(&self.root, files, &records).unwrap()
        }

        fn path(&self, p: &str) -> PathBuf {
            self.root.path(Path::new(p))
        }

        fn read(&self, p: &str) -> String {
            std::fs::read_to_string(self.path(p)).unwrap()
        }

        fn write(&self, p: &str, text: &str) {
            std::fs::write(self.path(p), text).unwrap();
        }

        fn base(&self, target: &str) -> PathBuf {
            self.path(&format!("/var/lib/modobox/rendered-base{target}"))
        }

        fn base_text(&self, target: &str) -> Option<String> {
            std::fs::read_to_string(self.base(target)).ok()
        }

        /// `text` is `target`'s base: in the mirror, root-only, and in the manifest.
        fn assert_recorded(&self, target: &str, text: &str) {
            assert_eq!(self.base_text(target).as_deref(), Some(text), "{target}");
            assert_eq!(self.mode(&self.base(target)), 0o600, "{target}");
            assert_eq!(
                self.manifest_sum(target),
                Some(checksum(text.as_bytes())),
                "{target}"
            );
        }

        fn manifest_sum(&self, target: &str) -> Option<String> {
            Manifest::load(&self.path(MANIFEST))
                .unwrap()
                .files
                .get(Path::new(target))
                .cloned()
        }

        fn mode(&self, p: &Path) -> u32 {
            std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
        }
    }

    #[test]
    fn base_is_root_only_whatever_the_target_mode() {
        let site = Site::new();
        let world_readable = file("/etc/mailname", 0o644, "mail.example.test\n");
        let secret = file("/etc/postfix/sql-aliases.cf", 0o640, "password = s3cret\n");
        let report = site.render(&[world_readable, secret]);
        assert_eq!(report.written.len(), 2);
        for target in ["/etc/mailname", "/etc/postfix/sql-aliases.cf"] {
            assert_eq!(site.mode(&site.base(target)), 0o600, "{target}");
            assert_eq!(site.base_text(target).unwrap(), site.read(target));
        }
        for dir in ["", "/etc", "/etc/postfix"] {
            let d = site.path(&format!("/var/lib/modobox/rendered-base{dir}"));
            assert_eq!(site.mode(&d), 0o700, "{}", d.display());
        }
    }

    #[test]
    fn untouched_file_is_replaced() {
        let site = Site::new();
        site.render(&[main_cf(V1)]);
        let v2 = edit(V1, "biff = no", "biff = yes");
        let changes = site.compare(&[main_cf(&v2)]);
        assert_eq!(changes[0].state, State::Outdated);
        assert_eq!(changes[0].state.class(), MergeClass::Replaced);
        let report = site.render(&[main_cf(&v2)]);
        assert_eq!(report.written, [PathBuf::from(MAIN_CF)]);
        assert_eq!(site.read(MAIN_CF), v2);
        site.assert_recorded(MAIN_CF, &v2);
    }

    #[test]
    fn edited_file_is_kept_while_the_templates_do_not_change_it() {
        let site = Site::new();
        site.render(&[main_cf(V1)]);
        let edited = format!("{V1}message_size_limit = 0\n");
        site.write(MAIN_CF, &edited);
        let changes = site.compare(&[main_cf(V1)]);
        assert_eq!(changes[0].state, State::Kept);
        assert!(!changes[0].changes_anything());
        let report = site.render(&[main_cf(V1)]);
        assert_eq!(report.kept, [PathBuf::from(MAIN_CF)]);
        assert!(report.written.is_empty());
        assert_eq!(site.read(MAIN_CF), edited);
        site.assert_recorded(MAIN_CF, V1);
    }

    #[test]
    fn edits_and_template_changes_on_other_lines_are_merged() {
        let site = Site::new();
        site.render(&[main_cf(V1)]);
        let edited = edit(V1, "biff = no\n", "biff = no\nmessage_size_limit = 0\n");
        site.write(MAIN_CF, &edited);
        let v2 = edit(V1, "delay_warning_time = 4h", "delay_warning_time = 2h");
        let merged = edit(
            &edited,
            "delay_warning_time = 4h",
            "delay_warning_time = 2h",
        );

        let changes = site.compare(&[main_cf(&v2)]);
        assert_eq!(
            changes[0].state,
            State::Merged {
                text: merged.clone()
            }
        );
        assert!(changes[0].describe().starts_with("merged: "));
        assert!(changes[0].diff.contains("+delay_warning_time = 2h"));
        assert!(!changes[0].diff.contains("message_size_limit"));

        let report = site.render(&[main_cf(&v2)]);
        assert_eq!(report.merged, [PathBuf::from(MAIN_CF)]);
        assert_eq!(report.written, [PathBuf::from(MAIN_CF)]);
        assert_eq!(site.read(MAIN_CF), merged);
        assert_eq!(site.mode(&site.path(MAIN_CF)), 0o644);
        // The base is what the templates produced; the admin's edits stay theirs.
        site.assert_recorded(MAIN_CF, &v2);

        // The same templates again: nothing to do.
        assert_eq!(site.compare(&[main_cf(&v2)])[0].state, State::Kept);
        // A later template change merges against that base, the edit still kept.
        let v3 = edit(
            &v2,
            "readme_directory = no",
            "readme_directory = /usr/share/doc",
        );
        site.render(&[main_cf(&v3)]);
        assert_eq!(
            site.read(MAIN_CF),
            edit(
                &merged,
                "readme_directory = no",
                "readme_directory = /usr/share/doc"
            )
        );
    }

    #[test]
    fn a_merged_file_is_kept_by_a_binary_that_cannot_merge() {
        // An older modobox (a rolled-back upgrade) reads the manifest alone: the merged file
        // must look edited to it, not like its own output to overwrite.
        let site = Site::new();
        site.render(&[main_cf(V1)]);
        site.write(MAIN_CF, &format!("# note\n{V1}"));
        let v2 = edit(V1, "delay_warning_time = 4h", "delay_warning_time = 2h");
        site.render(&[main_cf(&v2)]);
        let merged = site.read(MAIN_CF);
        std::fs::remove_dir_all(site.path("/var/lib/modobox/rendered-base")).unwrap();
        let v3 = edit(&v2, "biff = no", "biff = yes");
        let changes = site.compare(&[main_cf(&v3)]);
        assert_eq!(changes[0].state, State::HandEdited);
        let report = site.render(&[main_cf(&v3)]);
        assert_eq!(report.without_base, [PathBuf::from(MAIN_CF)]);
        assert_eq!(site.read(MAIN_CF), merged);
    }

    #[test]
    fn overlapping_edits_conflict_and_keep_the_admins_file() {
        let site = Site::new();
        let other = file("/etc/mailname", 0o644, "mail.example.test\n");
        site.render(&[main_cf(V1), other.clone()]);
        let secret_mode = 0o640;
        std::fs::set_permissions(
            site.path(MAIN_CF),
            std::fs::Permissions::from_mode(secret_mode),
        )
        .unwrap();
        let edited = edit(V1, "biff = no", "biff = maybe");
        site.write(MAIN_CF, &edited);
        let v2 = edit(V1, "biff = no", "biff = yes");
        let new_main_cf = RenderedFile {
            mode: secret_mode,
            ..main_cf(&v2)
        };
        let other_v2 = file("/etc/mailname", 0o644, "mx.example.test\n");
        let files = [new_main_cf, other_v2];

        let changes = site.compare(&files);
        assert_eq!(changes[0].state.class(), MergeClass::Conflict);
        assert!(changes[0].changes_anything());
        // The diff shows where: the admin's line kept, the templates' one marked beside it.
        assert!(
            changes[0]
                .diff
                .contains("+<<<<<<< ours\n biff = maybe\n+||||||| original\n"),
            "{}",
            changes[0].diff
        );
        assert!(changes[0].diff.contains("+biff = yes\n+>>>>>>> theirs\n"));

        let err = site.apply(&files, Options::default()).unwrap_err();
        let WriteError::Conflicts { report } = &err else {
            panic!("not a conflict: {err}")
        };
        assert_eq!(report.conflicts, [PathBuf::from(MAIN_CF)]);
        let message = err.to_string();
        assert!(message.contains(MAIN_CF) && message.contains("--accept-conflicts"));
        // The other file was written all the same.
        assert_eq!(site.read("/etc/mailname"), "mx.example.test\n");
        // The admin's file is untouched; the new output is beside it, with its mode.
        assert_eq!(site.read(MAIN_CF), edited);
        let beside = site.path(&format!("{MAIN_CF}{NEW_SUFFIX}"));
        assert_eq!(std::fs::read_to_string(&beside).unwrap(), v2);
        assert_eq!(site.mode(&beside), secret_mode);
        // Nothing recorded: the next run finds the same conflict.
        site.assert_recorded(MAIN_CF, V1);
        assert!(matches!(
            site.apply(&files, Options::default()),
            Err(WriteError::Conflicts { .. })
        ));

        // Accepted: the file stays, the new output becomes its base.
        let accept = Options {
            accept_conflicts: true,
            ..Options::default()
        };
        let report = site.apply(&files, accept).unwrap();
        assert_eq!(report.conflicts, [PathBuf::from(MAIN_CF)]);
        assert_eq!(site.read(MAIN_CF), edited);
        site.assert_recorded(MAIN_CF, &v2);
        assert_eq!(site.compare(&files)[0].state, State::Kept);
    }

    #[test]
    fn taking_the_new_output_settles_a_conflict() {
        let site = Site::new();
        site.render(&[main_cf(V1)]);
        site.write(MAIN_CF, &edit(V1, "biff = no", "biff = maybe"));
        let v2 = edit(V1, "biff = no", "biff = yes");
        assert!(site.apply(&[main_cf(&v2)], Options::default()).is_err());
        std::fs::rename(
            site.path(&format!("{MAIN_CF}{NEW_SUFFIX}")),
            site.path(MAIN_CF),
        )
        .unwrap();
        let report = site.render(&[main_cf(&v2)]);
        assert_eq!(report.unchanged, [PathBuf::from(MAIN_CF)]);
        site.assert_recorded(MAIN_CF, &v2);
    }

    #[test]
    fn force_replaces_edited_files() {
        let site = Site::new();
        site.render(&[main_cf(V1)]);
        site.write(MAIN_CF, &edit(V1, "biff = no", "biff = maybe"));
        let v2 = edit(V1, "biff = no", "biff = yes");
        let force = Options {
            force: true,
            ..Options::default()
        };
        let report = site.apply(&[main_cf(&v2)], force).unwrap();
        assert_eq!(report.written, [PathBuf::from(MAIN_CF)]);
        assert!(report.conflicts.is_empty());
        assert_eq!(site.read(MAIN_CF), v2);
        assert!(!site.path(&format!("{MAIN_CF}{NEW_SUFFIX}")).exists());
    }

    /// A file and the manifest as versions before base texts left them: checksums only.
    fn old_install(site: &Site, disk: &str, written: &str) {
        std::fs::create_dir_all(site.path("/etc/postfix")).unwrap();
        site.write(MAIN_CF, disk);
        let mut manifest = Manifest::default();
        manifest
            .files
            .insert(PathBuf::from(MAIN_CF), checksum(written.as_bytes()));
        manifest.save(&site.path(MANIFEST)).unwrap();
    }

    #[test]
    fn old_state_untouched_file_is_replaced_and_its_base_recorded() {
        let site = Site::new();
        old_install(&site, V1, V1);
        let v2 = edit(V1, "biff = no", "biff = yes");
        assert_eq!(site.compare(&[main_cf(&v2)])[0].state, State::Outdated);
        site.render(&[main_cf(&v2)]);
        assert_eq!(site.read(MAIN_CF), v2);
        site.assert_recorded(MAIN_CF, &v2);
        assert_eq!(site.mode(&site.base(MAIN_CF)), 0o600);
    }

    #[test]
    fn old_state_edited_file_is_kept_as_before() {
        let site = Site::new();
        let edited = format!("{V1}message_size_limit = 0\n");
        old_install(&site, &edited, V1);

        // The templates changed since: what modobox wrote is unknown, so no merge.
        let v2 = edit(V1, "biff = no", "biff = yes");
        let changes = site.compare(&[main_cf(&v2)]);
        assert_eq!(changes[0].state, State::HandEdited);
        assert!(changes[0].describe().contains("--force"));
        let report = site.render(&[main_cf(&v2)]);
        assert_eq!(report.without_base, [PathBuf::from(MAIN_CF)]);
        assert_eq!(site.read(MAIN_CF), edited);
        assert_eq!(site.base_text(MAIN_CF), None);
        assert_eq!(site.manifest_sum(MAIN_CF).unwrap(), checksum(V1.as_bytes()));

        // The templates give what the manifest records: that is the base, kept from now on,
        // and the next template change merges.
        let report = site.render(&[main_cf(V1)]);
        assert_eq!(report.kept, [PathBuf::from(MAIN_CF)]);
        assert!(report.without_base.is_empty());
        site.assert_recorded(MAIN_CF, V1);
        let report = site.render(&[main_cf(&v2)]);
        assert_eq!(report.merged, [PathBuf::from(MAIN_CF)]);
        assert_eq!(site.read(MAIN_CF), format!("{v2}message_size_limit = 0\n"));
    }

    #[test]
    fn a_stale_base_left_by_a_rollback_is_ignored() {
        let site = Site::new();
        let v2 = edit(V1, "biff = no", "biff = yes");
        site.render(&[main_cf(&v2)]);
        // The older binary, unaware of bases, writes its own output and manifest entry.
        old_install(&site, V1, V1);
        // With the stale base (v2) trusted, today's v2 would count as "unchanged templates"
        // and the old text would stay for good.
        let changes = site.compare(&[main_cf(&v2)]);
        assert_eq!(changes[0].state, State::Outdated);
        site.render(&[main_cf(&v2)]);
        assert_eq!(site.read(MAIN_CF), v2);
    }

    #[test]
    fn a_run_killed_between_the_file_and_its_base_completes() {
        let site = Site::new();
        site.render(&[main_cf(V1)]);
        let edited = format!("# note\n{V1}");
        site.write(MAIN_CF, &edited);
        let v2 = edit(V1, "delay_warning_time = 4h", "delay_warning_time = 2h");
        // The merge was written, then the run died: base and manifest still say V1.
        let merged = edit(
            &edited,
            "delay_warning_time = 4h",
            "delay_warning_time = 2h",
        );
        site.write(MAIN_CF, &merged);
        let report = site.render(&[main_cf(&v2)]);
        assert_eq!(report.kept, [PathBuf::from(MAIN_CF)]);
        assert_eq!(site.read(MAIN_CF), merged);
        site.assert_recorded(MAIN_CF, &v2);
    }

    #[test]
    fn a_file_already_as_rendered_gets_its_base_recorded() {
        let site = Site::new();
        old_install(&site, V1, V1);
        // The mode a umask may have narrowed: this test is about the base only.
        std::fs::set_permissions(site.path(MAIN_CF), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let changes = site.compare(&[main_cf(V1)]);
        assert!(!changes[0].changes_anything());
        assert!(changes[0].base_pending);
        let report = site.render(&[main_cf(V1)]);
        assert_eq!(report.unchanged, [PathBuf::from(MAIN_CF)]);
        site.assert_recorded(MAIN_CF, V1);
        assert!(!site.compare(&[main_cf(V1)])[0].base_pending);
    }
}
