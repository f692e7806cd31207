//! Which distribution this is (from `/etc/os-release`, or `--distro ID:VERSION`) and its facts:
//! package names, unit names, paths, users, versions — all read from `distro/*.toml`, so the
//! code never spells a distribution's package or path.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::names::SafePath;

/// The fact files, embedded; each holds `[base]` facts and `[version."N"]` overrides.
const FACT_FILES: [(&str, &str); 3] = [
    ("debian", include_str!("../distro/debian.toml")),
    ("ubuntu", include_str!("../distro/ubuntu.toml")),
    ("rhel", include_str!("../distro/rhel.toml")),
];

/// os-release `ID`s of the RHEL family, all read from `rhel.toml`.
const RHEL_IDS: [&str; 5] = ["rhel", "centos", "rocky", "almalinux", "ol"];

#[derive(Debug, thiserror::Error)]
pub enum DistroError {
    #[error("unsupported system {id} {version}; modobox supports: {supported}")]
    Unsupported {
        id: String,
        version: String,
        supported: String,
    },
    #[error("--distro: expected ID:VERSION such as debian:12 or rocky:9 (got {0:?})")]
    BadSpec(String),
    #[error("cannot read /etc/os-release: {0}")]
    OsRelease(std::io::Error),
    #[error("distro/{file}.toml: {message}")]
    Facts { file: String, message: String },
}

/// A distribution and release, e.g. `debian:12`, `ubuntu:24.04`, `rocky:9`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistroId {
    pub id: String,
    pub version: String,
}

impl fmt::Display for DistroId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.id, self.version)
    }
}

impl std::str::FromStr for DistroId {
    type Err = DistroError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (id, version) = s
            .split_once(':')
            .ok_or_else(|| DistroError::BadSpec(s.to_string()))?;
        let ok = |t: &str| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        };
        if !ok(id) || !ok(version) {
            return Err(DistroError::BadSpec(s.to_string()));
        }
        Ok(DistroId {
            id: id.to_ascii_lowercase(),
            version: version.to_string(),
        })
    }
}

/// Everything modobox needs to know about one distribution release.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Facts {
    pub family: Family,
    pub name: String,
    pub codename: String,
    pub package_manager: PackageManager,
    /// Extra repositories to enable before installing (EPEL, CRB).
    pub repositories: Vec<String>,
    pub packages: Packages,
    pub services: Services,
    pub users: Users,
    pub paths: Paths,
    pub postfix: PostfixFacts,
    pub dovecot: DovecotFacts,
    pub amavis: AmavisFacts,
    pub nginx: NginxFacts,
    pub security: SecurityFacts,
    /// How each daemon runs in the foreground under `modobox run --manager direct` (no
    /// systemd), keyed like `services`.
    pub direct: std::collections::BTreeMap<String, DirectSpec>,
}

/// One daemon as the direct service manager starts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectSpec {
    /// Program and arguments; the program stays in the foreground.
    pub command: Vec<String>,
    /// Started as this user (with its groups) when the daemon does not drop root by itself.
    #[serde(default)]
    pub user: Option<String>,
    /// Directories under /run it expects: "PATH OWNER:GROUP MODE" (what tmpfiles.d does).
    #[serde(default)]
    pub runtime_dirs: Vec<String>,
    /// Commands run (as root) before each start.
    #[serde(default)]
    pub pre: Vec<Vec<String>>,
    /// The signal that stops it cleanly (PostgreSQL: INT, its fast shutdown).
    #[serde(default = "default_stop_signal")]
    pub stop_signal: String,
}

fn default_stop_signal() -> String {
    "TERM".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Debian,
    Rhel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageManager {
    Apt,
    Dnf,
}

/// Package names per component; `*_sql` tables are keyed by database engine.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Packages {
    pub base: Vec<String>,
    pub postfix: Vec<String>,
    pub dovecot: Vec<String>,
    pub pop3: Vec<String>,
    pub managesieve: Vec<String>,
    pub opendkim: Vec<String>,
    pub amavis: Vec<String>,
    pub spamassassin: Vec<String>,
    pub clamav: Vec<String>,
    pub nginx: Vec<String>,
    pub stats: Vec<String>,
    pub postgres: EnginePackages,
    pub mysql: EnginePackages,
    pub sqlite: EnginePackages,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnginePackages {
    /// The server, when the database is local.
    pub server: Vec<String>,
    pub client: Vec<String>,
    pub postfix: Vec<String>,
    pub dovecot: Vec<String>,
    pub opendkim: Vec<String>,
    /// The Perl DBI driver Amavis needs for its SQL lookups and quarantine.
    pub amavis: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Services {
    pub postfix: String,
    pub dovecot: String,
    pub opendkim: String,
    pub amavis: String,
    pub clamav: String,
    pub freshclam: String,
    pub nginx: String,
    pub postgres: String,
    pub mysql: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Users {
    pub postfix: String,
    pub dovecot: String,
    pub dovenull: String,
    pub opendkim: String,
    pub amavis: String,
    pub clamav: String,
    pub nginx: String,
    pub postgres: String,
    pub mysql: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Paths {
    pub ssl_certs: SafePath,
    pub ssl_private: SafePath,
    pub postfix: SafePath,
    pub postfix_spool: SafePath,
    pub dovecot: SafePath,
    pub opendkim_conf: SafePath,
    pub clamd_socket: SafePath,
    pub systemd_units: SafePath,
    /// Helper programs modobox installs (the Dovecot post-login script).
    pub libexec: SafePath,
    /// SpamAssassin's site rules directory (Amavis's SpamAssassin reads every *.cf there).
    pub spamassassin_rules: SafePath,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostfixFacts {
    pub version: String,
    /// Default chroot column of master.cf services (Debian `y`, RHEL `n`).
    pub chroot: bool,
    pub compatibility_level: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DovecotFacts {
    pub version: String,
    /// Configuration dialect: "2.3" or "2.4".
    pub dialect: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmavisFacts {
    /// "conf.d": Debian snippets in `config`; "single": RHEL's one `amavisd.conf` at `config`.
    pub layout: String,
    pub config: SafePath,
    pub home: SafePath,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NginxFacts {
    /// Where the vhost files go.
    pub sites: SafePath,
    /// Debian's sites-enabled (symlinks); absent when `sites` is read directly (conf.d).
    pub sites_enabled: Option<SafePath>,
    /// nginx ≥ 1.25.1 enables HTTP/2 with `http2 on;` (the `listen ... http2` form warns).
    pub http2_directive: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityFacts {
    pub selinux: bool,
    pub firewalld: bool,
}

/// A supported release, resolved to its fact file and version table.
#[derive(Debug, Clone)]
pub struct Distro {
    pub id: DistroId,
    pub facts: Facts,
}

/// Every `ID:VERSION` modobox supports, for error messages and tests.
pub fn supported() -> Vec<DistroId> {
    let mut out = Vec::new();
    for (file, text) in FACT_FILES {
        let Ok(doc) = text.parse::<toml::Table>() else {
            continue;
        };
        let versions: Vec<String> = doc
            .get("version")
            .and_then(|v| v.as_table())
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default();
        let ids: Vec<&str> = if file == "rhel" {
            RHEL_IDS[..4].to_vec()
        } else {
            vec![file]
        };
        for id in ids {
            for v in &versions {
                out.push(DistroId {
                    id: id.to_string(),
                    version: v.clone(),
                });
            }
        }
    }
    out
}

fn supported_list() -> String {
    supported()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Merges `over` into `base`, table by table; other values are replaced.
fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

impl Distro {
    /// Facts for an explicit `ID:VERSION`.
    pub fn load(id: &DistroId) -> Result<Self, DistroError> {
        let file = if RHEL_IDS.contains(&id.id.as_str()) {
            "rhel"
        } else {
            id.id.as_str()
        };
        let unsupported = || DistroError::Unsupported {
            id: id.id.clone(),
            version: id.version.clone(),
            supported: supported_list(),
        };
        let text = FACT_FILES
            .iter()
            .find(|(name, _)| *name == file)
            .map(|(_, t)| *t)
            .ok_or_else(unsupported)?;
        let facts_err = |message: String| DistroError::Facts {
            file: file.to_string(),
            message,
        };
        let doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| facts_err(e.to_string()))?;
        // RHEL-family versions are majors: 9.4 → 9.
        let version = if file == "rhel" {
            id.version.split('.').next().unwrap_or_default().to_string()
        } else {
            id.version.clone()
        };
        let over = doc
            .get("version")
            .and_then(|v| v.get(&version))
            .and_then(|v| v.as_table())
            .ok_or_else(unsupported)?;
        let mut table = doc
            .get("base")
            .and_then(|v| v.as_table())
            .cloned()
            .ok_or_else(|| facts_err("missing [base]".into()))?;
        merge(&mut table, over);
        let facts: Facts = table
            .try_into()
            .map_err(|e: toml::de::Error| facts_err(e.to_string()))?;
        Ok(Distro {
            id: DistroId {
                id: id.id.clone(),
                version,
            },
            facts,
        })
    }

    /// Detects the running system from `/etc/os-release` text.
    pub fn detect_from(os_release: &str) -> Result<Self, DistroError> {
        let fields = parse_os_release(os_release);
        let id = fields.get("ID").cloned().unwrap_or_default();
        let version = fields.get("VERSION_ID").cloned().unwrap_or_default();
        let like = fields.get("ID_LIKE").cloned().unwrap_or_default();
        let direct = DistroId {
            id: id.clone(),
            version: version.clone(),
        };
        if let Ok(d) = Self::load(&direct) {
            return Ok(d);
        }
        // A derivative: try the families it says it is like, RHEL first for its clones.
        for parent in like.split_whitespace() {
            let parent = if matches!(parent, "rhel" | "centos" | "fedora") {
                "rhel"
            } else {
                parent
            };
            if let Ok(d) = Self::load(&DistroId {
                id: parent.to_string(),
                version: version.clone(),
            }) {
                return Ok(Distro {
                    id: direct,
                    facts: d.facts,
                });
            }
        }
        Err(DistroError::Unsupported {
            id: if id.is_empty() { "unknown".into() } else { id },
            version,
            supported: supported_list(),
        })
    }

    pub fn detect() -> Result<Self, DistroError> {
        let text = std::fs::read_to_string("/etc/os-release")
            .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
            .map_err(DistroError::OsRelease)?;
        Self::detect_from(&text)
    }

    /// `--distro ID:VERSION` when given, else detection.
    pub fn resolve(spec: Option<&DistroId>) -> Result<Self, DistroError> {
        match spec {
            Some(id) => Self::load(id),
            None => Self::detect(),
        }
    }
}

fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_string(),
                v.trim().trim_matches('"').trim_matches('\'').to_string(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_release_loads() {
        let all = supported();
        assert!(all.len() >= 13, "{all:?}");
        for id in all {
            Distro::load(&id).unwrap_or_else(|e| panic!("{id}: {e}"));
        }
    }

    #[test]
    fn detection_from_os_release() {
        let d = Distro::detect_from("ID=debian\nVERSION_ID=\"12\"\n").unwrap();
        assert_eq!(d.facts.codename, "bookworm");
        let r = Distro::detect_from(
            "ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.4\"\n",
        )
        .unwrap();
        assert_eq!(r.facts.family, Family::Rhel);
        assert_eq!(r.id.version, "9");
        let clone = Distro::detect_from(
            "ID=\"eurolinux\"\nID_LIKE=\"rhel fedora centos\"\nVERSION_ID=\"9.2\"\n",
        )
        .unwrap();
        assert_eq!(clone.facts.family, Family::Rhel);
    }

    #[test]
    fn unsupported_lists_what_is() {
        let e = Distro::detect_from("ID=arch\n").unwrap_err().to_string();
        assert!(e.contains("unsupported system arch"), "{e}");
        assert!(
            e.contains("debian:12") && e.contains("rocky:9") && e.contains("ubuntu:24.04"),
            "{e}"
        );
        let e = Distro::load(&"debian:10".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("debian:11"), "{e}");
    }

    #[test]
    fn bad_spec_is_refused() {
        assert!("debian".parse::<DistroId>().is_err());
        assert!("debian:12\n".parse::<DistroId>().is_err());
        assert!("../x:1".parse::<DistroId>().is_err());
    }
}
