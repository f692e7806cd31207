//! The parts of a clone's first boot around its install (`cli::image` runs them in order):
//! new host keys and hostname before, then the marker removed and the unit disabled after
//! success, or the stack stopped after a failure.

use std::io::Write;
use std::path::Path;

use super::prepare::{SNAKEOIL_CERT, SNAKEOIL_KEY};
use super::{io_error, pending_marker, under_systemd_unit, ImageError, CONSOLE, FIRSTBOOT_UNIT};
use crate::config::Config;
use crate::names::Hostname;
use crate::service::systemd::Systemd;
use crate::system::cmd::{self, Cmd};
use crate::system::fs::write_atomic;

/// SSH host keys of every type sshd uses (only the missing ones are made), and the ssl-cert
/// package's key pair when it is gone (PostgreSQL's TLS uses it). Returns what was made.
pub fn make_host_keys() -> Result<Vec<String>, ImageError> {
    let mut made = Vec::new();
    if cmd::exists("ssh-keygen") {
        let missing = |dir: &Path| {
            ["rsa", "ecdsa", "ed25519"]
                .iter()
                .filter(|t| !dir.join(format!("ssh_host_{t}_key")).exists())
                .count()
        };
        let before = missing(Path::new("/etc/ssh"));
        if before > 0 {
            Cmd::new("ssh-keygen").arg("-A").run()?;
            made.push(format!("{before} SSH host keys"));
        }
    }
    if cmd::exists("make-ssl-cert") && !Path::new(SNAKEOIL_KEY).exists() {
        let _ = std::fs::remove_file(SNAKEOIL_CERT);
        Cmd::new("make-ssl-cert")
            .args(["generate-default-snakeoil", "--force-overwrite"])
            .run()?;
        made.push("the ssl-cert snakeoil key pair".into());
    }
    Ok(made)
}

/// The clone's name in /etc/hostname and for the running system.
pub fn set_hostname(hostname: &Hostname) -> Result<(), ImageError> {
    let path = Path::new("/etc/hostname");
    write_atomic(path, format!("{hostname}\n").as_bytes(), 0o644, None).map_err(io_error(path))?;
    nix::unistd::sethostname(hostname.as_str())
        .map_err(|e| ImageError(format!("setting the hostname to {hostname}: {e}")))
}

/// After a successful first boot: never again (the marker goes, the unit is disabled), and
/// ssh starts now when this was run by hand after a failed boot (under the unit, ssh waits
/// for us and starts by itself).
pub fn finish(config: &Config, rt: &tokio::runtime::Runtime) -> Result<(), ImageError> {
    for file in [Path::new(super::PRESET_FILE), &pending_marker(config)] {
        match std::fs::remove_file(file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(file)(e)),
        }
    }
    rt.block_on(async {
        let sd = Systemd::connect().await?;
        sd.disable(&[FIRSTBOOT_UNIT]).await?;
        if !under_systemd_unit() {
            for ssh in ["ssh.service", "sshd.service"] {
                if sd.status(ssh).await?.load == "loaded" {
                    sd.start(ssh).await?;
                }
            }
        }
        Ok::<(), ImageError>(())
    })
}

/// Writes to the console directly (not to standard output, which the journal keeps): for the
/// new superadmin password. Nothing happens without a console.
pub fn tell_console(text: &str) {
    if let Ok(mut c) = std::fs::OpenOptions::new().write(true).open(CONSOLE) {
        let _ = c.write_all(text.as_bytes());
        let _ = c.flush();
    }
}
