//! Where a clone learns who it is at its first boot: cloud-init's user-data (a `modobox:`
//! section, or cloud-init's own `fqdn`/`hostname`), a NoCloud seed directory, the preseed file
//! `/etc/modobox/preseed.toml`, or — with none of them — questions on the console.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use yaml_rust2::{Yaml, YamlLoader};

use super::ImageError;
use crate::names::{DomainName, EmailAddress, Hostname};
use crate::system::Root;

/// What the first boot installs this clone as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub hostname: Hostname,
    pub domain: DomainName,
    pub admin_address: EmailAddress,
    /// Where it came from, in words ("cloud-init user-data /var/lib/cloud/…").
    pub source: String,
}

/// cloud-init's copy of the current instance's user-data, then the NoCloud seed directories
/// (read directly, so a seed works whether or not cloud-init is installed).
pub const USER_DATA_FILES: &[&str] = &[
    "/var/lib/cloud/instance/user-data.txt",
    "/var/lib/cloud/seed/nocloud/user-data",
    "/var/lib/cloud/seed/nocloud-net/user-data",
];
pub const PRESEED_FILE: &str = "/etc/modobox/preseed.toml";

/// The three settings as given, before the defaults (domain = the hostname's parent, admin =
/// postmaster@domain) fill the gaps.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Given {
    hostname: Option<String>,
    domain: Option<String>,
    admin_address: Option<String>,
}

impl Given {
    fn complete(self, source: String) -> Result<Instance, ImageError> {
        let field = |name: &str| format!("{name} ({source})");
        let host = self
            .hostname
            .ok_or_else(|| ImageError(format!("{}: required", field("hostname"))))?;
        let hostname = Hostname::parse(&field("hostname"), host.trim())?;
        let domain = match self.domain {
            Some(d) => DomainName::parse(&field("domain"), d.trim())?,
            None => hostname.parent_domain().ok_or_else(|| {
                ImageError(format!(
                    "{}: {hostname} has no parent domain; give the domain too",
                    field("hostname")
                ))
            })?,
        };
        let admin_address = match self.admin_address {
            Some(a) => EmailAddress::parse(&field("admin_address"), a.trim())?,
            None => EmailAddress::parse(&field("admin_address"), &format!("postmaster@{domain}"))?,
        };
        Ok(Instance {
            hostname,
            domain,
            admin_address,
            source,
        })
    }
}

/// The instance's settings from the files, in the order of `USER_DATA_FILES` then the preseed
/// file; `None` when none of them says anything about modobox or the hostname. A file that
/// says something wrong is an error naming the file and the field (never silently skipped).
pub fn from_files(root: &Root) -> Result<Option<Instance>, ImageError> {
    for file in USER_DATA_FILES {
        let path = root.path(Path::new(file));
        let Some(text) = read_optional(&path)? else {
            continue;
        };
        let source = format!("cloud-init user-data {file}");
        if let Some(given) = from_user_data(&text, &source)? {
            return given.complete(source).map(Some);
        }
    }
    let path = root.path(Path::new(PRESEED_FILE));
    if let Some(text) = read_optional(&path)? {
        let given: Given = toml::from_str(&text)
            .map_err(|e| ImageError(format!("{PRESEED_FILE}: {}", e.message())))?;
        return given.complete(PRESEED_FILE.to_string()).map(Some);
    }
    Ok(None)
}

fn read_optional(path: &Path) -> Result<Option<String>, ImageError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ImageError(format!("{}: {e}", path.display()))),
    }
}

/// The `modobox:` mapping of a `#cloud-config` document, else its `fqdn` (or a dotted
/// `hostname`). Other user-data formats (scripts, MIME multipart) carry nothing for us.
fn from_user_data(text: &str, source: &str) -> Result<Option<Given>, ImageError> {
    if !text.trim_start().starts_with("#cloud-config") {
        return Ok(None);
    }
    let docs = YamlLoader::load_from_str(text)
        .map_err(|e| ImageError(format!("{source}: not valid YAML: {e}")))?;
    let Some(doc) = docs.first() else {
        return Ok(None);
    };
    let text_of = |v: &Yaml, key: &str| yaml_text(v, key, source);
    match &doc["modobox"] {
        Yaml::BadValue | Yaml::Null => {}
        Yaml::Hash(h) => {
            let mut given = Given::default();
            for (k, v) in h {
                let key = k.as_str().unwrap_or("?");
                let value = text_of(v, &format!("modobox.{key}"))?;
                match key {
                    "hostname" => given.hostname = value,
                    "domain" => given.domain = value,
                    "admin_address" => given.admin_address = value,
                    other => {
                        return Err(ImageError(format!(
                            "{source}: modobox.{other}: unknown setting (hostname, domain, \
                             admin_address)"
                        )))
                    }
                }
            }
            if given.hostname.is_none() {
                given.hostname = cloud_hostname(doc, source)?;
            }
            return Ok(Some(given));
        }
        _ => {
            return Err(ImageError(format!(
                "{source}: modobox: must be a mapping (hostname, domain, admin_address)"
            )))
        }
    }
    Ok(cloud_hostname(doc, source)?.map(|hostname| Given {
        hostname: Some(hostname),
        ..Given::default()
    }))
}

/// cloud-init's own name for the instance: `fqdn`, or `hostname` when it is fully qualified.
fn cloud_hostname(doc: &Yaml, source: &str) -> Result<Option<String>, ImageError> {
    if let Some(f) = yaml_text(&doc["fqdn"], "fqdn", source)? {
        return Ok(Some(f));
    }
    Ok(yaml_text(&doc["hostname"], "hostname", source)?.filter(|h| h.contains('.')))
}

/// A YAML string setting; absent is `None`, anything but a string an error naming it.
fn yaml_text(v: &Yaml, key: &str, source: &str) -> Result<Option<String>, ImageError> {
    match v {
        Yaml::BadValue | Yaml::Null => Ok(None),
        Yaml::String(s) => Ok(Some(s.clone())),
        _ => Err(ImageError(format!("{source}: {key}: must be a string"))),
    }
}

/// How long each console question waits for an answer.
pub const CONSOLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Asks on the console when it is a terminal (a VM's screen or serial line); `None` when there
/// is no console or nobody answered within the timeout.
pub fn from_console(console: &Path, timeout: Duration) -> Result<Option<Instance>, ImageError> {
    let Ok(mut tty) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(console)
    else {
        return Ok(None);
    };
    if !std::io::IsTerminal::is_terminal(&tty) {
        return Ok(None);
    }
    let say = |tty: &mut std::fs::File, text: &str| {
        let _ = tty.write_all(text.as_bytes());
        let _ = tty.flush();
    };
    say(
        &mut tty,
        "\nmodobox first boot: this machine becomes a mail server.\n\
         No cloud-init user-data or /etc/modobox/preseed.toml named it: answer three questions\n\
         (Enter keeps the default in brackets).\n",
    );
    loop {
        let Some(host) = ask(
            &mut tty,
            "Hostname of this mail server (e.g. mail.example.com): ",
            timeout,
        )?
        else {
            return Ok(None);
        };
        let parent = Hostname::parse("hostname", &host)
            .ok()
            .and_then(|h| h.parent_domain())
            .map(|d| d.to_string())
            .unwrap_or_default();
        let Some(domain) = ask(
            &mut tty,
            &format!("Primary mail domain [{parent}]: "),
            timeout,
        )?
        else {
            return Ok(None);
        };
        let domain = if domain.is_empty() { parent } else { domain };
        let Some(admin) = ask(
            &mut tty,
            &format!("Admin address [postmaster@{domain}]: "),
            timeout,
        )?
        else {
            return Ok(None);
        };
        let given = Given {
            hostname: Some(host),
            domain: Some(domain).filter(|d| !d.is_empty()),
            admin_address: Some(admin).filter(|a| !a.is_empty()),
        };
        match given.complete("the console".into()) {
            Ok(i) => return Ok(Some(i)),
            Err(e) => say(&mut tty, &format!("{e}\nPlease try again.\n")),
        }
    }
}

/// One answer, or `None` after `timeout` without a full line.
fn ask(
    tty: &mut std::fs::File,
    question: &str,
    timeout: Duration,
) -> Result<Option<String>, ImageError> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let _ = tty.write_all(question.as_bytes());
    let _ = tty.flush();
    let deadline = Instant::now() + timeout;
    let mut line = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let _ = tty.write_all(b"\n(no answer)\n");
            return Ok(None);
        }
        let ms =
            PollTimeout::try_from(left.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::MAX);
        let ready = {
            let mut fds = [PollFd::new(tty.as_fd(), PollFlags::POLLIN)];
            poll(&mut fds, ms).map_err(|e| ImageError(format!("console: {e}")))?
        };
        if ready == 0 {
            continue;
        }
        let mut byte = [0u8; 1];
        match tty.read(&mut byte) {
            Ok(0) => return Ok(None),
            Ok(_) if byte[0] == b'\n' || byte[0] == b'\r' => {
                return Ok(Some(String::from_utf8_lossy(&line).trim().to_string()))
            }
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ImageError(format!("console: {e}"))),
        }
    }
}

/// Where a NoCloud seed goes inside a root (tests and image builders write it there).
pub fn nocloud_seed_dir(root: &Root) -> PathBuf {
    root.path(Path::new("/var/lib/cloud/seed/nocloud"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with(files: &[(&str, &str)]) -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        for (p, text) in files {
            let path = root.path(Path::new(p));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        (dir, root)
    }

    #[test]
    fn the_modobox_section_of_cloud_config_wins_and_gaps_get_defaults() {
        let (_d, root) = root_with(&[(
            "/var/lib/cloud/seed/nocloud/user-data",
            "#cloud-config\nfqdn: other.example.net\nmodobox:\n  hostname: mail.one.test\n",
        )]);
        let i = from_files(&root).unwrap().unwrap();
        assert_eq!(i.hostname.as_str(), "mail.one.test");
        assert_eq!(i.domain.as_str(), "one.test");
        assert_eq!(i.admin_address.as_str(), "postmaster@one.test");
        assert!(i.source.contains("nocloud/user-data"), "{}", i.source);
    }

    #[test]
    fn cloud_init_fqdn_alone_names_the_server_and_instance_data_comes_first() {
        let (_d, root) = root_with(&[
            (
                "/var/lib/cloud/instance/user-data.txt",
                "#cloud-config\nfqdn: mail.two.test\n",
            ),
            (
                "/var/lib/cloud/seed/nocloud/user-data",
                "#cloud-config\nmodobox:\n  hostname: mail.seed.test\n",
            ),
        ]);
        let i = from_files(&root).unwrap().unwrap();
        assert_eq!(i.hostname.as_str(), "mail.two.test");
    }

    #[test]
    fn the_preseed_file_is_used_without_user_data_and_a_script_is_not_user_data() {
        let (_d, root) = root_with(&[
            ("/var/lib/cloud/seed/nocloud/user-data", "#!/bin/sh\necho hi\n"),
            (
                PRESEED_FILE,
                "hostname = \"mx.three.test\"\ndomain = \"three.test\"\nadmin_address = \"it@three.test\"\n",
            ),
        ]);
        let i = from_files(&root).unwrap().unwrap();
        assert_eq!(i.hostname.as_str(), "mx.three.test");
        assert_eq!(i.admin_address.as_str(), "it@three.test");
        assert_eq!(i.source, PRESEED_FILE);
    }

    #[test]
    fn nothing_anywhere_is_none() {
        let (_d, root) = root_with(&[(
            "/var/lib/cloud/seed/nocloud/user-data",
            "#cloud-config\nhostname: shortname\n",
        )]);
        assert_eq!(from_files(&root).unwrap(), None);
    }

    #[test]
    fn bad_settings_name_the_file_and_the_field() {
        for (text, want) in [
            (
                "#cloud-config\nmodobox:\n  hostname: not a host\n",
                "hostname (cloud-init user-data",
            ),
            (
                "#cloud-config\nmodobox:\n  hostnme: mail.x.test\n",
                "modobox.hostnme: unknown setting",
            ),
            (
                "#cloud-config\nmodobox: yes\n",
                "modobox: must be a mapping",
            ),
            (
                "#cloud-config\nmodobox:\n  hostname: mail.x.test\n  admin_address: nobody\n",
                "admin_address (cloud-init",
            ),
            ("#cloud-config\nmodobox: [\n", "not valid YAML"),
        ] {
            let (_d, root) = root_with(&[("/var/lib/cloud/seed/nocloud/user-data", text)]);
            let e = from_files(&root).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let (_d, root) = root_with(&[(PRESEED_FILE, "hostname = \"mail.x.test\"\ncolour = 1\n")]);
        let e = from_files(&root).unwrap_err().to_string();
        assert!(e.contains(PRESEED_FILE) && e.contains("colour"), "{e}");
    }

    #[test]
    fn no_console_means_no_answer() {
        assert_eq!(
            from_console(Path::new("/nonexistent/console"), Duration::from_secs(1)).unwrap(),
            None
        );
        assert_eq!(
            from_console(Path::new("/dev/null"), Duration::from_secs(1)).unwrap(),
            None
        );
    }
}
