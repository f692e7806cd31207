//! Steps that shape the host itself: modobox's configuration and secrets, the binary in its
//! place, the mailbox owner, group memberships and directories.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{io_error, Check, Ctx, Step, StepError, StepResult};
use crate::config::{Config, Engine};
use crate::render::context::BINARY_PATH;
use crate::render::write::diff_text;
use crate::secrets::Secrets;
use crate::service::own;
use crate::system::cmd::Cmd;
use crate::system::fs::{resolve_owner, write_atomic, Owner};

const CONFIG_HEADER: &str = "# modobox configuration, written by `modobox install`.\n\
# `modobox config default` prints every setting with its explanation.\n\n";

/// `/etc/modobox/modobox.toml` (what the install was asked for) and the secrets file (0600).
#[derive(Debug)]
pub struct Configuration;

impl Step for Configuration {
    fn name(&self) -> &'static str {
        "configuration"
    }

    fn check(&self, ctx: &mut Ctx) -> StepResult<Check> {
        let mut changes = Vec::new();
        let path = &ctx.config_path;
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let same = Config::from_toml(&text, &path.display().to_string())
                    .is_ok_and(|on_disk| on_disk == ctx.config);
                if !same {
                    changes.push(format!(
                        "rewrite {} with the settings given\n{}",
                        path.display(),
                        diff_text(path, &text, &config_text(&ctx.config))
                    ));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                changes.push(format!("write {}", path.display()));
            }
            Err(e) => return Err(io_error(path)(e)),
        }
        let secrets_path = ctx.config.paths.secrets.as_path();
        let on_disk = Secrets::load_or_generate(secrets_path)?;
        if on_disk != ctx.secrets {
            changes.push(format!(
                "generate the database password and session key in {} (mode 0600)",
                secrets_path.display()
            ));
        }
        Ok(Check::from_changes(changes))
    }

    fn apply(&self, ctx: &mut Ctx) -> StepResult<()> {
        let path = &ctx.config_path;
        let current = std::fs::read_to_string(path).ok();
        let unchanged = current
            .as_deref()
            .and_then(|t| Config::from_toml(t, "").ok())
            .is_some_and(|c| c == ctx.config);
        if !unchanged {
            write_atomic(path, config_text(&ctx.config).as_bytes(), 0o640, None)
                .map_err(io_error(path))?;
        }
        ctx.secrets.save(ctx.config.paths.secrets.as_path())?;
        Ok(())
    }
}

fn config_text(config: &Config) -> String {
    format!("{CONFIG_HEADER}{}", config.to_toml())
}

/// The running binary copied to `/usr/local/bin/modobox`, where the unit file and the Dovecot
/// hooks call it.
#[derive(Debug)]
pub struct Binary;

fn current_binary() -> StepResult<PathBuf> {
    std::env::current_exe().map_err(|e| StepError::new(format!("finding the running binary: {e}")))
}

impl Step for Binary {
    fn name(&self) -> &'static str {
        "binary"
    }

    fn check(&self, ctx: &mut Ctx) -> StepResult<Check> {
        let exe = current_binary()?;
        let target = Path::new(BINARY_PATH);
        // Compared in chunks: a debug build is hundreds of MB (a small VM's whole memory).
        let same = crate::system::fs::same_content(&exe, target).unwrap_or(false)
            && std::fs::metadata(target).is_ok_and(|m| m.permissions().mode() & 0o7777 == 0o755);
        Ok(if same {
            Check::Done
        } else {
            ctx.planned_writes.push(target.to_path_buf());
            Check::Change(vec![format!(
                "copy {} to {BINARY_PATH} (mode 0755)",
                exe.display()
            )])
        })
    }

    fn apply(&self, _ctx: &mut Ctx) -> StepResult<()> {
        let exe = current_binary()?;
        let target = Path::new(BINARY_PATH);
        crate::system::fs::copy_atomic(&exe, target, 0o755).map_err(io_error(target))
    }
}

/// The mailbox owner (user and group), the group memberships ClamAV and Amavis need to read
/// each other's files, and the directories with their owners and modes.
#[derive(Debug)]
pub struct Accounts;

#[derive(Debug, Clone)]
struct Dir {
    path: PathBuf,
    owner: Owner,
    mode: u32,
    /// Holds the SQLite database: its ACLs show as the group bits (the ACL mask), which a
    /// chmod would narrow and so take the daemons' write access away. Group bits are left alone.
    acl: bool,
}

impl Dir {
    fn mode_ok(&self, current: u32) -> bool {
        let care = if self.acl { 0o7707 } else { 0o7777 };
        current & care == self.mode & care
    }
    fn mode_to_set(&self, current: u32) -> u32 {
        if self.acl {
            (self.mode & !0o070) | (current & 0o070)
        } else {
            self.mode
        }
    }
}

fn owner(user: &str, group: &str) -> Owner {
    Owner {
        user: user.to_string(),
        group: group.to_string(),
    }
}

fn directories(ctx: &Ctx) -> Vec<Dir> {
    let c = &ctx.config;
    let users = &ctx.distro.facts.users;
    let vmail = c.mail.owner.as_str();
    let mut dirs = vec![
        Dir {
            path: ctx
                .config_path
                .parent()
                .map_or_else(|| PathBuf::from("/etc/modobox"), Path::to_path_buf),
            owner: owner("root", "root"),
            mode: 0o750,
            acl: false,
        },
        Dir {
            path: c.paths.mail_root.as_path().to_path_buf(),
            owner: owner(vmail, vmail),
            mode: 0o750,
            acl: false,
        },
        Dir {
            path: c.paths.data.as_path().to_path_buf(),
            owner: owner("root", "root"),
            mode: 0o751,
            acl: false,
        },
        // The statistics: written by the supervisor's jobs, read by the unprivileged web UI
        // through the group (setgid: new files get it too).
        Dir {
            path: c.paths.rrd.as_path().to_path_buf(),
            owner: owner("root", own::WEB.user),
            mode: 0o2750,
            acl: false,
        },
    ];
    if c.components.opendkim {
        dirs.push(Dir {
            path: c.paths.dkim_keys.as_path().to_path_buf(),
            owner: owner(&users.opendkim, &users.opendkim),
            mode: 0o750,
            acl: false,
        });
    }
    if c.database.engine == Engine::Sqlite {
        if let Some(dir) = c.database.sqlite_path.as_path().parent() {
            // Postfix, Dovecot and the mailbox owner reach the file through ACLs (the
            // SQLite step); the directory itself only needs to be traversable.
            match dirs.iter_mut().find(|d| d.path == dir) {
                Some(d) => d.acl = true,
                None => dirs.push(Dir {
                    path: dir.to_path_buf(),
                    owner: owner("root", "root"),
                    mode: 0o751,
                    acl: true,
                }),
            }
        }
    }
    dirs
}

/// (member, group) pairs the stack needs.
fn memberships(ctx: &Ctx) -> Vec<(String, String)> {
    let users = &ctx.distro.facts.users;
    let comps = &ctx.config.components;
    let mut out = Vec::new();
    if comps.amavis && comps.clamav {
        // clamd scans the files Amavis unpacks; Amavis reads clamd's socket.
        out.push((users.clamav.clone(), users.amavis.clone()));
        out.push((users.amavis.clone(), users.clamav.clone()));
    }
    out
}

fn in_group(user: &str, group: &str) -> bool {
    let Some(u) = uzers::get_user_by_name(user) else {
        return false;
    };
    uzers::get_user_groups(user, u.primary_group_id()).is_some_and(|groups| {
        groups
            .iter()
            .any(|g| g.name().to_str().is_some_and(|n| n == group))
    })
}

/// Files of the statistics directory the web UI's group cannot read yet (made before the
/// directory was its group's).
fn unreadable_stats_files(ctx: &Ctx) -> Vec<PathBuf> {
    let Some(gid) = uzers::get_group_by_name(own::WEB.user).map(|g| g.gid()) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(ctx.config.paths.rrd.as_path()) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.metadata()
                .is_ok_and(|m| m.is_file() && (m.gid() != gid || m.mode() & 0o040 == 0))
        })
        .map(|e| e.path())
        .collect()
}

impl Step for Accounts {
    fn name(&self) -> &'static str {
        "system-accounts"
    }

    fn check(&self, ctx: &mut Ctx) -> StepResult<Check> {
        let mut changes = Vec::new();
        for d in own::ALL {
            if uzers::get_user_by_name(d.user).is_none() {
                changes.push(format!(
                    "create the system user {} (modobox's {}, no login, no capability)",
                    d.user, d.name
                ));
            }
        }
        let stale = unreadable_stats_files(ctx);
        if !stale.is_empty() {
            changes.push(format!(
                "let the web UI's group {} read {} statistics files",
                own::WEB.user,
                stale.len()
            ));
        }
        let vmail = ctx.config.mail.owner.as_str();
        if uzers::get_group_by_name(vmail).is_none() {
            changes.push(format!("create the system group {vmail}"));
        }
        if uzers::get_user_by_name(vmail).is_none() {
            changes.push(format!(
                "create the system user {vmail} (mailbox owner, home {}, no login)",
                ctx.config.paths.mail_root
            ));
        }
        for (member, group) in memberships(ctx) {
            if !in_group(&member, &group) {
                changes.push(format!("add {member} to the group {group}"));
            }
        }
        for d in directories(ctx) {
            match std::fs::metadata(&d.path) {
                Err(_) => changes.push(format!(
                    "create {} ({}:{}, {:o})",
                    d.path.display(),
                    d.owner.user,
                    d.owner.group,
                    d.mode
                )),
                Ok(m) => {
                    let right_owner = resolve_owner(&d.owner) == Some((m.uid(), m.gid()));
                    if !m.is_dir() || !right_owner || !d.mode_ok(m.mode()) {
                        changes.push(format!(
                            "set {} to {}:{}, mode {:o}",
                            d.path.display(),
                            d.owner.user,
                            d.owner.group,
                            d.mode
                        ));
                    }
                }
            }
        }
        Ok(Check::from_changes(changes))
    }

    fn apply(&self, ctx: &mut Ctx) -> StepResult<()> {
        for d in own::ALL {
            if uzers::get_group_by_name(d.user).is_none() {
                Cmd::new("groupadd").args(["--system", d.user]).run()?;
            }
            if uzers::get_user_by_name(d.user).is_none() {
                Cmd::new("useradd")
                    .args(["--system", "--gid", d.user, "--home-dir", "/nonexistent"])
                    .args(["--no-create-home", "--shell", "/usr/sbin/nologin", d.user])
                    .run()?;
            }
        }
        let vmail = ctx.config.mail.owner.as_str();
        if uzers::get_group_by_name(vmail).is_none() {
            Cmd::new("groupadd").args(["--system", vmail]).run()?;
        }
        if uzers::get_user_by_name(vmail).is_none() {
            Cmd::new("useradd")
                .args(["--system", "--gid", vmail, "--home-dir"])
                .arg(ctx.config.paths.mail_root.as_str())
                .args(["--no-create-home", "--shell", "/usr/sbin/nologin", vmail])
                .run()?;
        }
        for (member, group) in memberships(ctx) {
            if !in_group(&member, &group) {
                Cmd::new("usermod")
                    .args(["--append", "--groups", &group, &member])
                    .run()?;
            }
        }
        for d in directories(ctx) {
            std::fs::create_dir_all(&d.path).map_err(io_error(&d.path))?;
            let (uid, gid) = resolve_owner(&d.owner).ok_or_else(|| {
                StepError::new(format!(
                    "{}: the user {} or group {} does not exist",
                    d.path.display(),
                    d.owner.user,
                    d.owner.group
                ))
            })?;
            std::os::unix::fs::chown(&d.path, Some(uid), Some(gid)).map_err(io_error(&d.path))?;
            let current = std::fs::metadata(&d.path)
                .map_err(io_error(&d.path))?
                .mode();
            std::fs::set_permissions(
                &d.path,
                std::fs::Permissions::from_mode(d.mode_to_set(current)),
            )
            .map_err(io_error(&d.path))?;
        }
        if let Some(gid) = uzers::get_group_by_name(own::WEB.user).map(|g| g.gid()) {
            for f in unreadable_stats_files(ctx) {
                std::os::unix::fs::chown(&f, None, Some(gid)).map_err(io_error(&f))?;
                let mode = std::fs::metadata(&f).map_err(io_error(&f))?.mode() & 0o7777;
                std::fs::set_permissions(&f, std::fs::Permissions::from_mode(mode | 0o040))
                    .map_err(io_error(&f))?;
            }
        }
        Ok(())
    }
}
