//! Checks made before the install touches anything: root, systemd, a hostname that resolves to
//! this machine, the mail ports, memory and disk, and configuration already on the machine.

use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::Path;

use crate::config::Config;
use crate::names::Hostname;

/// The ports the stack serves.
pub const PORTS: &[(u16, &str)] = &[
    (25, "SMTP"),
    (80, "HTTP"),
    (143, "IMAP"),
    (443, "HTTPS"),
    (465, "SMTPS"),
    (587, "submission"),
    (993, "IMAPS"),
    (4190, "ManageSieve"),
];

/// Process names of the stack itself: a port they hold is fine (a re-run).
const STACK_PROCESSES: &[&str] = &["master", "dovecot", "nginx", "smtpd", "imap-login"];

/// ClamAV's signatures take about 1 GB of memory.
pub const CLAMAV_MIN_RAM_MB: u64 = 2048;
pub const MIN_FREE_DISK_MB: u64 = 1024;
pub const ADVISED_FREE_DISK_MB: u64 = 3072;

#[derive(Debug, Default)]
pub struct Findings {
    /// Stop: the install cannot go on.
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// The hostname does not resolve here: this `/etc/hosts` line fixes it.
    pub hosts_line: Option<String>,
    /// Memory is short for ClamAV.
    pub clamav_too_big: bool,
}

pub fn check(config: &Config) -> Findings {
    let mut f = Findings::default();
    if uzers::get_effective_uid() != 0 {
        f.errors
            .push("run it as root (it installs packages and writes /etc)".into());
    }
    if !Path::new("/run/systemd/system").is_dir() {
        f.errors.push(
            "systemd is not the init system here: `modobox install` needs it to manage the \
             services"
                .into(),
        );
    }
    check_hostname(&config.hostname, &mut f);
    check_ports(&mut f);
    check_resources(config, &mut f);
    f
}

fn check_hostname(host: &Hostname, f: &mut Findings) {
    let resolved: Vec<IpAddr> = (host.as_str(), 0)
        .to_socket_addrs()
        .map(|it| it.map(|s| s.ip()).collect())
        .unwrap_or_default();
    let local = crate::system::net::interface_addresses();
    let here = resolved
        .iter()
        .any(|ip| ip.is_loopback() || local.contains(ip));
    if !here {
        let short = host.as_str().split('.').next().unwrap_or_default();
        f.hosts_line = Some(format!("127.0.1.1\t{host} {short}"));
        f.warnings.push(if resolved.is_empty() {
            format!("{host} does not resolve")
        } else {
            format!(
                "{host} resolves to {} which is not an address of this machine",
                resolved
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
    }
}

/// Adds the line to `/etc/hosts` (keeping the file's other lines).
pub fn fix_hosts(line: &str) -> std::io::Result<()> {
    let path = Path::new("/etc/hosts");
    let mut text = std::fs::read_to_string(path).unwrap_or_default();
    if !text.ends_with('\n') && !text.is_empty() {
        text.push('\n');
    }
    text.push_str(line);
    text.push('\n');
    crate::system::fs::write_atomic(path, text.as_bytes(), 0o644, None)
}

/// Listening TCP ports → socket inodes, from /proc/net/tcp{,6}.
fn listening_inodes() -> HashMap<u64, u16> {
    let mut out = HashMap::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // local_address rem_address st ... inode is column 9; state 0A = LISTEN.
            if cols.len() < 10 || cols[3] != "0A" {
                continue;
            }
            let port = cols[1]
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if let (Some(port), Ok(inode)) = (port, cols[9].parse::<u64>()) {
                out.insert(inode, port);
            }
        }
    }
    out
}

/// Port → (pid, process name) of whoever listens on it.
pub fn port_owners() -> HashMap<u16, (u32, String)> {
    let inodes = listening_inodes();
    let mut out = HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let t = target.to_string_lossy();
            let Some(inode) = t
                .strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if let Some(port) = inodes.get(&inode) {
                let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
                out.entry(*port).or_insert((pid, comm.trim().to_string()));
            }
        }
    }
    out
}

fn check_ports(f: &mut Findings) {
    let owners = port_owners();
    for (port, what) in PORTS {
        let Some((pid, name)) = owners.get(port) else {
            continue;
        };
        if STACK_PROCESSES.contains(&name.as_str()) {
            continue;
        }
        if name == "exim4" && *port == 25 {
            f.warnings
                .push("exim4 listens on port 25: installing Postfix removes it".to_string());
            continue;
        }
        f.errors.push(format!(
            "port {port} ({what}) is used by {name} (pid {pid}): stop or remove it first"
        ));
    }
}

fn meminfo_mb(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

fn free_disk_mb(path: &Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    Some(st.blocks_available() as u64 * st.fragment_size() as u64 / (1024 * 1024))
}

fn check_resources(config: &Config, f: &mut Findings) {
    if let Some(ram) = meminfo_mb("MemTotal:") {
        if config.components.clamav && ram < CLAMAV_MIN_RAM_MB {
            f.clamav_too_big = true;
            f.warnings.push(format!(
                "{ram} MB of memory: ClamAV alone needs about 1 GB (advised: {CLAMAV_MIN_RAM_MB} MB \
                 or more)"
            ));
        }
    }
    if let Some(free) = free_disk_mb(Path::new("/")) {
        if free < MIN_FREE_DISK_MB {
            f.errors.push(format!(
                "{free} MB free on /: the packages need at least {MIN_FREE_DISK_MB} MB"
            ));
        } else if free < ADVISED_FREE_DISK_MB {
            f.warnings.push(format!(
                "{free} MB free on /: {ADVISED_FREE_DISK_MB} MB or more is advised"
            ));
        }
    }
}

/// The distribution's own configuration files the install will replace (each is kept as
/// `<file>.modobox-orig`).
pub fn existing_configuration(
    files: &[crate::render::RenderedFile],
    manifest: &Path,
) -> Vec<String> {
    let known = crate::render::manifest::Manifest::load(manifest).unwrap_or_default();
    files
        .iter()
        .filter(|f| f.path.exists() && !known.files.contains_key(&f.path))
        .map(|f| f.path.display().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_port_is_found_with_its_process() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let owners = port_owners();
        let (pid, _) = owners.get(&port).expect("our own listener");
        assert_eq!(*pid, std::process::id());
    }

    #[test]
    fn a_name_that_does_not_resolve_gets_a_hosts_line() {
        let mut g = Findings::default();
        check_hostname(
            &Hostname::parse("h", "mail.modobox-preflight.invalid").unwrap(),
            &mut g,
        );
        assert!(g
            .hosts_line
            .as_deref()
            .unwrap()
            .ends_with("mail.modobox-preflight.invalid mail"));
        assert!(
            g.warnings[0].contains("does not resolve"),
            "{:?}",
            g.warnings
        );
    }
}
