//! The three-way decision for one rendered file: the base (the template output modobox last
//! wrote), the file on disk now, and today's template output. Owns the line-based merge of an
//! admin's edits with the templates' changes, and the merge classes `plan` and `render` show.

use std::fmt;

/// What a render does to one file, as `plan`, `render --diff` and the reports name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MergeClass {
    /// Not on disk yet.
    NewFile,
    /// Already what the templates produce.
    Unchanged,
    /// Not edited by hand (or never written by modobox): the new output replaces it.
    Replaced,
    /// Edited by hand and left as it is.
    Kept,
    /// Edited by hand, the templates changed too, on other lines: both kept.
    Merged,
    /// Edited by hand on the lines the templates changed: the admin's file stays, the new
    /// output goes beside it as `FILE.modobox-new`.
    Conflict,
}

impl MergeClass {
    pub fn as_str(self) -> &'static str {
        match self {
            MergeClass::NewFile => "new file",
            MergeClass::Unchanged => "unchanged",
            MergeClass::Replaced => "replaced",
            MergeClass::Kept => "kept",
            MergeClass::Merged => "merged",
            MergeClass::Conflict => "conflict",
        }
    }
}

impl fmt::Display for MergeClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The decision for a file whose base is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The disk already holds the new output.
    Unchanged,
    /// Nobody edited the file since modobox wrote it: the new output replaces it.
    Replace,
    /// The admin's file stays: the templates produce the base again, or the file already
    /// holds every change they make.
    Keep,
    /// The admin's edits applied to the new output.
    Merged(String),
    /// Both sides changed the same or neighbouring lines: the admin's file with the
    /// conflicting lines marked, diff3-style (`ours` = the file on disk, `theirs` = the
    /// templates'), to show where.
    Conflict(String),
}

/// Decides with `base` = what modobox last wrote, `disk` = the file now, `new` = today's
/// template output.
pub fn three_way(base: &str, disk: &str, new: &str) -> Outcome {
    if disk == new {
        return Outcome::Unchanged;
    }
    if disk == base {
        return Outcome::Replace;
    }
    if new == base {
        return Outcome::Keep;
    }
    // diffy, like diff3, also calls changes on touching lines a conflict: in a configuration
    // file a neighbouring line often belongs to the same setting, so a person decides.
    let mut options = diffy::MergeOptions::new();
    // Markers on lines of their own even after a last line without a newline.
    options.set_incomplete_hunk_style(diffy::IncompleteHunkStyle::Git);
    match options.merge(base, disk, new) {
        Ok(merged) if merged == disk => Outcome::Keep,
        Ok(merged) if merged == new => Outcome::Replace,
        Ok(merged) => Outcome::Merged(merged),
        Err(marked) => Outcome::Conflict(marked),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str =
        "# main.cf\nmyhostname = mail.example.test\nsmtpd_banner = $myhostname ESMTP\n\
                        biff = no\nappend_dot_mydomain = no\nreadme_directory = no\n\
                        compatibility_level = 3.6\n";

    fn with(text: &str, from: &str, to: &str) -> String {
        assert!(text.contains(from), "{from:?} not in the text");
        text.replacen(from, to, 1)
    }

    #[test]
    fn untouched_file_is_replaced() {
        let new = with(BASE, "biff = no", "biff = yes");
        assert_eq!(three_way(BASE, BASE, &new), Outcome::Replace);
    }

    #[test]
    fn edited_file_is_kept_when_the_templates_did_not_change() {
        let disk = format!("{BASE}message_size_limit = 0\n");
        assert_eq!(three_way(BASE, &disk, BASE), Outcome::Keep);
    }

    #[test]
    fn disk_already_new_is_unchanged() {
        let new = with(BASE, "biff = no", "biff = yes");
        assert_eq!(three_way(BASE, &new, &new), Outcome::Unchanged);
    }

    #[test]
    fn edits_on_other_lines_are_merged() {
        let disk = format!("{BASE}message_size_limit = 0\n");
        let new = with(
            BASE,
            "smtpd_banner = $myhostname ESMTP",
            "smtpd_banner = $myhostname",
        );
        let Outcome::Merged(merged) = three_way(BASE, &disk, &new) else {
            panic!("not merged")
        };
        assert_eq!(
            merged,
            format!(
                "{}message_size_limit = 0\n",
                with(
                    BASE,
                    "smtpd_banner = $myhostname ESMTP",
                    "smtpd_banner = $myhostname"
                )
            )
        );
    }

    #[test]
    fn edits_of_the_same_line_conflict() {
        let disk = with(BASE, "biff = no", "biff = maybe");
        let new = with(BASE, "biff = no", "biff = yes");
        assert_eq!(
            three_way(BASE, &disk, &new),
            Outcome::Conflict(with(
                BASE,
                "biff = no\n",
                "<<<<<<< ours\nbiff = maybe\n||||||| original\nbiff = no\n=======\n\
                 biff = yes\n>>>>>>> theirs\n"
            ))
        );
    }

    #[test]
    fn edits_next_to_each_other_conflict() {
        let disk = with(BASE, "biff = no\n", "biff = no\nmessage_size_limit = 0\n");
        let new = with(BASE, "biff = no", "biff = yes");
        assert!(matches!(three_way(BASE, &disk, &new), Outcome::Conflict(_)));
    }

    #[test]
    fn a_file_that_already_has_the_templates_changes_is_kept() {
        // The same change on both sides (an admin who applied the fix by hand, or a run
        // killed after the merge was written but before the base was).
        let new = with(BASE, "biff = no", "biff = yes");
        let disk = format!("{new}message_size_limit = 0\n");
        assert_eq!(three_way(BASE, &disk, &new), Outcome::Keep);
    }
}
