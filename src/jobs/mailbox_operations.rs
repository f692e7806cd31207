//! `mailbox_operations` (Modoboa's handle_mailbox_operations): applies the queued
//! `admin_mailboxoperation` rows to the disk — a rename moves the old home to the mailbox's
//! current home (parents created, owned by the mailbox owner), a delete removes the home.
//! Success deletes the row and logs INFO in `core_log`; failure keeps the row and logs
//! CRITICAL (`modoboa.admin`, Modoboa's logger).
//!
//! The paths come from the database, so they are treated as hostile: only directories at least
//! `<mail_root>/<domain>/<local part>` deep inside the mail root are touched; `..`, relative
//! paths, paths outside the root and symbolic links anywhere below the root are refused; a
//! rename never lands on an existing directory. Every step is re-runnable: a rename whose
//! source is gone and target present was done (a run that stopped before deleting its row).

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use super::{JobContext, JobError};
use crate::store::accounts::mailbox_operations::{self, MailboxOperation};
use crate::store::{audit, StoreError};
use crate::system::fs::{resolve_owner, Owner};

/// Why an operation was refused or failed (its text goes to `core_log` and the run's message).
#[derive(Debug, thiserror::Error)]
pub enum MailboxOpError {
    #[error("{arg:?} is not an absolute path")]
    NotAbsolute { arg: String },
    #[error("{arg:?} contains `.` or `..`")]
    DotComponent { arg: String },
    #[error("{arg:?} is outside the mail root {}", root.display())]
    OutsideRoot { arg: String, root: PathBuf },
    #[error("{arg:?} is not a mailbox directory ({}/<domain>/<local part>)", root.display())]
    NotMailbox { arg: String, root: PathBuf },
    #[error("mail root {}: {source}", root.display())]
    MailRoot {
        root: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is a symbolic link: mailbox operations do not follow links", path.display())]
    SymbolicLink { path: PathBuf },
    #[error("{} is not a directory", path.display())]
    NotDirectory { path: PathBuf },
    /// A directory to create lies outside the mail root.
    #[error("{} is outside the mail root", dir.display())]
    ParentOutside { dir: PathBuf },
    #[error("{} is not a plain directory", path.display())]
    NotPlainDirectory { path: PathBuf },
    #[error("{what} {value:?} cannot be a directory name")]
    BadName { what: &'static str, value: String },
    #[error("unknown operation type {kind:?}")]
    UnknownKind { kind: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("creating {}: {source}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("chown {}: {source}", path.display())]
    Chown {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot move {} to {}: the target already exists", from.display(), to.display())]
    TargetExists { from: PathBuf, to: PathBuf },
    #[error(
        "cannot move {} to {}: they are on different filesystems",
        from.display(),
        to.display()
    )]
    CrossDevice { from: PathBuf, to: PathBuf },
    #[error("moving {} to {}: {source}", from.display(), to.display())]
    Move {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("removing {}: {source}", path.display())]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    /// The row asks for something [`plan`] does not allow: nothing was touched.
    #[error("refused: {0}")]
    Refused(#[source] Box<MailboxOpError>),
    /// The operation's outcome could not be written to the database.
    #[error("{what}: recording the result: {source}")]
    Recording {
        what: String,
        #[source]
        source: StoreError,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> MailboxOpError + '_ {
    move |source| MailboxOpError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn mail_root(root: &Path) -> impl FnOnce(io::Error) -> MailboxOpError + '_ {
    move |source| MailboxOpError::MailRoot {
        root: root.to_path_buf(),
        source,
    }
}

/// What one queued operation amounts to on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Move { from: PathBuf, to: PathBuf },
    Remove(PathBuf),
}

/// The directory `arg` names, checked against the mail root: absolute, no `.`/`..`, inside the
/// root and at least two levels below it, no symbolic link on the way. The result is under the
/// canonical root (the configured root itself may be a link, e.g. to another disk).
pub fn confine(root: &Path, arg: &str) -> Result<PathBuf, MailboxOpError> {
    let p = Path::new(arg);
    let arg_owned = || arg.to_string();
    if arg.contains('\0') || !p.is_absolute() {
        return Err(MailboxOpError::NotAbsolute { arg: arg_owned() });
    }
    if p.components()
        .any(|c| !matches!(c, Component::RootDir | Component::Normal(_)))
        || arg.split('/').any(|part| part == "." || part == "..")
    {
        return Err(MailboxOpError::DotComponent { arg: arg_owned() });
    }
    let rel = p
        .strip_prefix(root)
        .map_err(|_| MailboxOpError::OutsideRoot {
            arg: arg_owned(),
            root: root.to_path_buf(),
        })?;
    if rel.components().count() < 2 {
        return Err(MailboxOpError::NotMailbox {
            arg: arg_owned(),
            root: root.to_path_buf(),
        });
    }
    let canon_root = root.canonicalize().map_err(mail_root(root))?;
    let mut cur = canon_root.clone();
    for c in rel.components() {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(MailboxOpError::SymbolicLink { path: cur })
            }
            Ok(m) if !m.is_dir() => return Err(MailboxOpError::NotDirectory { path: cur }),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) => return Err(io_at(&cur)(e)),
        }
    }
    Ok(canon_root.join(rel))
}

/// One name (domain or local part) as a single path component.
fn one_component(what: &'static str, v: &str) -> Result<(), MailboxOpError> {
    if v.is_empty() || v == "." || v == ".." || v.contains('/') || v.contains('\0') {
        return Err(MailboxOpError::BadName {
            what,
            value: v.to_string(),
        });
    }
    Ok(())
}

/// What an operation row asks for, paths confined to the mail root.
pub fn plan(root: &Path, op: &MailboxOperation) -> Result<Action, MailboxOpError> {
    match op.kind.as_str() {
        "rename" => {
            let from = confine(root, &op.argument)?;
            match &op.mailbox {
                Some((domain, local)) => {
                    one_component("domain", domain)?;
                    one_component("local part", local)?;
                    let to = root.join(domain).join(local);
                    let to = confine(root, &to.to_string_lossy())?;
                    Ok(Action::Move { from, to })
                }
                // The mailbox was deleted after this rename was queued: its data never moved,
                // so the deletion's intent is the old home's removal.
                None => Ok(Action::Remove(from)),
            }
        }
        "delete" => Ok(Action::Remove(confine(root, &op.argument)?)),
        other => Err(MailboxOpError::UnknownKind {
            kind: other.to_string(),
        }),
    }
}

fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

/// Creates the missing directories of `dir` below the canonical root, mode 0700, owned by the
/// mailbox owner (when running as root), refusing links.
fn create_parents(
    canon_root: &Path,
    dir: &Path,
    owner: Option<(u32, u32)>,
) -> Result<(), MailboxOpError> {
    let rel = dir
        .strip_prefix(canon_root)
        .map_err(|_| MailboxOpError::ParentOutside {
            dir: dir.to_path_buf(),
        })?;
    let mut cur = canon_root.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() && !m.file_type().is_symlink() => continue,
            Ok(_) => return Err(MailboxOpError::NotPlainDirectory { path: cur }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_at(&cur)(e)),
        }
        match std::fs::create_dir(&cur) {
            Ok(()) => {}
            // Another run made it meanwhile: checked again on the next loop's metadata.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(MailboxOpError::Create { path: cur, source }),
        }
        std::fs::set_permissions(&cur, std::fs::Permissions::from_mode(0o700))
            .map_err(io_at(&cur))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&cur, Some(uid), Some(gid)).map_err(|source| {
                MailboxOpError::Chown {
                    path: cur.clone(),
                    source,
                }
            })?;
        }
    }
    Ok(())
}

/// Applies one action; the message says what happened (for `core_log`).
pub fn apply(root: &Path, action: &Action, owner: &Owner) -> Result<String, MailboxOpError> {
    let canon_root = root.canonicalize().map_err(mail_root(root))?;
    match action {
        Action::Move { from, to } => match (exists(from), exists(to)) {
            (false, true) => Ok(format!(
                "Mailbox {} already moved to {}",
                from.display(),
                to.display()
            )),
            (false, false) => Ok(format!(
                "Mailbox {} does not exist (never received mail): nothing to move to {}",
                from.display(),
                to.display()
            )),
            (true, true) => Err(MailboxOpError::TargetExists {
                from: from.clone(),
                to: to.clone(),
            }),
            (true, false) => {
                if let Some(parent) = to.parent() {
                    create_parents(&canon_root, parent, resolve_owner(owner))?;
                }
                // Checked again right before the move: a link planted meanwhile is refused.
                confine(&canon_root, &to.to_string_lossy())?;
                std::fs::rename(from, to).map_err(|source| {
                    let (from, to) = (from.clone(), to.clone());
                    if source.raw_os_error() == Some(nix::errno::Errno::EXDEV as i32) {
                        MailboxOpError::CrossDevice { from, to }
                    } else {
                        MailboxOpError::Move { from, to, source }
                    }
                })?;
                Ok(format!(
                    "Mailbox {} moved to {}",
                    from.display(),
                    to.display()
                ))
            }
        },
        Action::Remove(path) => {
            if !exists(path) {
                return Ok(format!("Mailbox {} already removed", path.display()));
            }
            confine(&canon_root, &path.to_string_lossy())?;
            // remove_dir_all does not follow links inside the tree.
            match std::fs::remove_dir_all(path) {
                Ok(()) => Ok(format!("Mailbox {} removed", path.display())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    Ok(format!("Mailbox {} already removed", path.display()))
                }
                Err(source) => Err(MailboxOpError::Remove {
                    path: path.clone(),
                    source,
                }),
            }
        }
    }
}

fn describe(action: &Action) -> String {
    match action {
        Action::Move { from, to } => format!("move {} to {}", from.display(), to.display()),
        Action::Remove(p) => format!("remove {}", p.display()),
    }
}

async fn record(
    ctx: &JobContext,
    id: i32,
    result: &Result<String, MailboxOpError>,
    what: &str,
) -> Result<(), StoreError> {
    let mut tx = ctx.store.begin().await?;
    match result {
        Ok(message) => {
            mailbox_operations::delete(&mut tx, id).await?;
            audit::line(&mut tx, "INFO", audit::ADMIN, message).await?;
        }
        Err(e) => {
            audit::line(
                &mut tx,
                "CRITICAL",
                audit::ADMIN,
                &format!("Mailbox operation failed ({what}): {e}"),
            )
            .await?;
        }
    }
    tx.commit().await
}

pub async fn run(ctx: &JobContext, dry_run: bool) -> Result<String, JobError> {
    let ops = async {
        let mut tx = ctx.store.begin().await?;
        mailbox_operations::pending(&mut tx).await
    }
    .await?;
    if ops.is_empty() {
        return Ok("no mailbox operation queued".into());
    }
    let root = ctx.config.paths.mail_root.as_path().to_path_buf();
    let owner = Owner {
        user: ctx.config.mail.owner.to_string(),
        group: ctx.config.mail.owner.to_string(),
    };
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for op in &ops {
        let what = format!("#{} {} {}", op.id, op.kind, op.argument);
        let planned = plan(&root, op);
        if dry_run {
            match planned {
                Ok(a) => done.push(format!("would {}", describe(&a))),
                Err(e) => failed.push(format!("{what}: refused: {e}")),
            }
            continue;
        }
        let result = match planned {
            Ok(action) => {
                let (r, o) = (root.clone(), owner.clone());
                tokio::task::spawn_blocking(move || apply(&r, &action, &o))
                    .await
                    .map_err(MailboxOpError::from)
                    .and_then(|r| r)
            }
            Err(e) => Err(MailboxOpError::Refused(Box::new(e))),
        };
        if let Err(source) = record(ctx, op.id, &result, &what).await {
            return Err(MailboxOpError::Recording { what, source }.into());
        }
        match result {
            Ok(m) => done.push(m),
            Err(e) => failed.push(format!("{what}: {e}")),
        }
    }
    let message = if dry_run {
        done.join("; ")
    } else {
        format!("{} of {} operations done", done.len(), ops.len())
    };
    if failed.is_empty() {
        return Ok(message);
    }
    Err(JobError::Partly {
        done: message,
        failures: failed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_outside_or_above_mailboxes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("vmail");
        std::fs::create_dir(&root).unwrap();
        let r = root.display().to_string();
        for bad in [
            "relative/example.com/bob".to_string(),
            format!("{r}/example.com/../../etc"),
            format!("{r}/./example.com/bob"),
            format!("{r}/example.com"),
            r.clone(),
            "/etc/passwd".to_string(),
            format!("{r}x/example.com/bob"),
        ] {
            assert!(confine(&root, &bad).is_err(), "{bad} was accepted");
        }
        let ok = confine(&root, &format!("{r}/example.com/bob")).unwrap();
        assert!(ok.ends_with("example.com/bob"));
    }
}
