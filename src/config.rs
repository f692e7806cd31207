//! `/etc/modobox/modobox.toml`: what the admin chose (hostname, database, components, paths,
//! TLS, web listener, job schedules), parsed strictly — an unknown key is an error naming it —
//! and validated as a whole. Secrets live apart, in `secrets.rs`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::names::{
    DbHost, DbIdent, DomainName, EmailAddress, Hostname, NameError, SafePath, UnixName,
};

pub const DEFAULT_PATH: &str = "/etc/modobox/modobox.toml";

/// The commented default printed by `modobox config default`; a test keeps it equal to the
/// defaults below.
pub const DEFAULT_TEXT: &str = include_str!("config_default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    #[error("{path}: {0}", path = .1)]
    Invalid(NameError, String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The mail server's own fully-qualified name (MX target, TLS certificate, HELO).
    pub hostname: Hostname,
    /// First hosted domain; defaults to the hostname's parent domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_domain: Option<DomainName>,
    /// Where alerts go and the first superadmin's login; defaults to postmaster@primary domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_address: Option<EmailAddress>,
    #[serde(default)]
    pub database: Database,
    #[serde(default)]
    pub components: Components,
    #[serde(default)]
    pub paths: Paths,
    #[serde(default)]
    pub mail: Mail,
    #[serde(default)]
    pub tls: Tls,
    #[serde(default)]
    pub web: Web,
    #[serde(default)]
    pub schedule: Schedule,
    #[serde(default)]
    pub stats: Stats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Postgres,
    Mysql,
    Sqlite,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Mysql => "mysql",
            Engine::Sqlite => "sqlite",
        }
    }
    pub fn default_port(self) -> u16 {
        match self {
            Engine::Postgres => 5432,
            Engine::Mysql => 3306,
            Engine::Sqlite => 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DbLocation {
    /// modobox installs the server on this machine and creates the database and role.
    Local,
    /// The database exists elsewhere; modobox only connects to it.
    External,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Database {
    pub engine: Engine,
    pub location: DbLocation,
    pub host: DbHost,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub name: DbIdent,
    pub user: DbIdent,
    /// The database file when `engine = "sqlite"`.
    pub sqlite_path: SafePath,
}

impl Default for Database {
    fn default() -> Self {
        Database {
            engine: Engine::Postgres,
            location: DbLocation::Local,
            host: known_good(DbHost::parse("database.host", "127.0.0.1")),
            port: None,
            name: known_good(DbIdent::parse("database.name", "modobox")),
            user: known_good(DbIdent::parse("database.user", "modobox")),
            sqlite_path: known_good(SafePath::parse(
                "database.sqlite_path",
                "/var/lib/modobox/modobox.db",
            )),
        }
    }
}

impl Database {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(self.engine.default_port())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Components {
    pub amavis: bool,
    pub spamassassin: bool,
    pub clamav: bool,
    pub opendkim: bool,
    pub pop3: bool,
    pub managesieve: bool,
}

impl Default for Components {
    fn default() -> Self {
        Components {
            amavis: true,
            spamassassin: true,
            clamav: true,
            opendkim: true,
            pop3: true,
            managesieve: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Paths {
    /// Mailboxes live in `<mail_root>/<domain>/<local part>/`.
    pub mail_root: SafePath,
    /// DKIM private keys, `<dkim_keys>/<domain>.pem`.
    pub dkim_keys: SafePath,
    /// modoboa-stats compatible RRD files.
    pub rrd: SafePath,
    /// modobox's own state (manifest, parser offsets, SQLite database by default).
    pub data: SafePath,
    /// The secrets file (mode 0600): database password, session key.
    pub secrets: SafePath,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            mail_root: known_good(SafePath::parse("paths.mail_root", "/srv/vmail")),
            dkim_keys: known_good(SafePath::parse("paths.dkim_keys", "/var/lib/dkim")),
            rrd: known_good(SafePath::parse("paths.rrd", "/var/lib/modobox/rrd")),
            data: known_good(SafePath::parse("paths.data", "/var/lib/modobox")),
            secrets: known_good(SafePath::parse(
                "paths.secrets",
                "/etc/modobox/secrets.toml",
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mail {
    /// The system user and group owning every mailbox.
    pub owner: UnixName,
    /// Rename and delete mailbox directories when accounts are renamed or deleted.
    pub handle_mailboxes_on_filesystem: bool,
    /// Postfix's message size limit, in MB.
    pub message_size_limit_mb: u32,
}

impl Default for Mail {
    fn default() -> Self {
        Mail {
            owner: known_good(UnixName::parse("mail.owner", "vmail")),
            handle_mailboxes_on_filesystem: true,
            message_size_limit_mb: 50,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// modobox generates a self-signed certificate for the hostname.
    SelfSigned,
    /// The admin provides `cert` and `key`.
    Manual,
    /// An ACME client (the hook) keeps `cert` and `key` current; modobox serves the challenge.
    Acme,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    pub mode: TlsMode,
    /// Certificate chain (PEM). Required for `manual` and `acme`; for `self-signed` the
    /// distribution's TLS directory is used when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<SafePath>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<SafePath>,
    /// `acme`: the program run to obtain or renew the certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acme_hook: Option<SafePath>,
    /// Directory served at `/.well-known/acme-challenge/`.
    pub acme_webroot: SafePath,
}

impl Default for Tls {
    fn default() -> Self {
        Tls {
            mode: TlsMode::SelfSigned,
            cert: None,
            key: None,
            acme_hook: None,
            acme_webroot: known_good(SafePath::parse("tls.acme_webroot", "/var/lib/modobox/acme")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Web {
    /// modobox's own HTTP listener; loopback only, nginx terminates TLS in front of it.
    pub listen: SocketAddr,
}

impl Default for Web {
    fn default() -> Self {
        Web {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
        }
    }
}

/// Mail statistics: where the log is read and the parser's state kept (the RRD files live in
/// `paths.rrd`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Stats {
    /// The mail log (Postfix, Amavis, Dovecot lines).
    pub log_file: SafePath,
    /// Read the journal (mail facility) when `log_file` does not exist.
    pub journal: bool,
    /// Offsets, journal cursor and messages in flight between runs.
    pub state_file: SafePath,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            log_file: known_good(SafePath::parse("stats.log_file", "/var/log/mail.log")),
            journal: true,
            state_file: known_good(SafePath::parse(
                "stats.state_file",
                "/var/lib/modobox/stats-state.json",
            )),
        }
    }
}

/// Cron expressions (5 fields, minute first) per periodic job; Modoboa's schedule by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Schedule {
    pub mailbox_operations: String,
    pub dkim_keys: String,
    pub clearsessions: String,
    pub cleanlogs: String,
    pub inactive_accounts: String,
    pub logparser: String,
    pub new_accounts_statistics: String,
    pub check_mx: String,
    pub public_api: String,
    pub quarantine_cleanup: String,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            mailbox_operations: "* * * * *".into(),
            dkim_keys: "* * * * *".into(),
            clearsessions: "0 0 * * *".into(),
            cleanlogs: "0 0 * * *".into(),
            inactive_accounts: "0 1 * * *".into(),
            logparser: "*/5 * * * *".into(),
            new_accounts_statistics: "0 * * * *".into(),
            check_mx: "*/30 * * * *".into(),
            public_api: "0 * * * *".into(),
            quarantine_cleanup: "0 2 * * *".into(),
        }
    }
}

impl Schedule {
    pub fn entries(&self) -> BTreeMap<&'static str, &str> {
        BTreeMap::from([
            ("mailbox_operations", self.mailbox_operations.as_str()),
            ("dkim_keys", self.dkim_keys.as_str()),
            ("clearsessions", self.clearsessions.as_str()),
            ("cleanlogs", self.cleanlogs.as_str()),
            ("inactive_accounts", self.inactive_accounts.as_str()),
            ("logparser", self.logparser.as_str()),
            (
                "new_accounts_statistics",
                self.new_accounts_statistics.as_str(),
            ),
            ("check_mx", self.check_mx.as_str()),
            ("public_api", self.public_api.as_str()),
            ("quarantine_cleanup", self.quarantine_cleanup.as_str()),
        ])
    }
}

/// Parses a 5-field cron expression; the scheduler uses the same parser.
pub fn parse_cron(field: &str, expr: &str) -> Result<croner::Cron, NameError> {
    if expr.split_whitespace().count() != 5 {
        return Err(NameError::new(
            field,
            "must be a cron expression of 5 fields (minute hour day-of-month month day-of-week)",
            expr,
        ));
    }
    croner::Cron::new(expr).parse().map_err(|e| {
        NameError::new(
            field,
            format!("must be a valid cron expression ({e})"),
            expr,
        )
    })
}

/// Defaults for values that are constants of this file: parsing them cannot fail, and the
/// unit test `defaults_are_valid` proves it.
fn known_good<T>(r: Result<T, NameError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => unreachable!("built-in default is invalid: {e}"),
    }
}

impl Config {
    /// A configuration with every default and the given hostname.
    pub fn new(hostname: Hostname) -> Self {
        Config {
            hostname,
            primary_domain: None,
            admin_address: None,
            database: Database::default(),
            components: Components::default(),
            paths: Paths::default(),
            mail: Mail::default(),
            tls: Tls::default(),
            web: Web::default(),
            schedule: Schedule::default(),
            stats: Stats::default(),
        }
    }

    /// The paths and mailbox settings a configuration has by default (commands given only a
    /// database URL use them).
    pub fn default_paths_and_mail() -> (Paths, Mail) {
        (Paths::default(), Mail::default())
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        // serde_path_to_error names the key (`database.name`) whose value was refused.
        let config: Config = serde_path_to_error::deserialize(toml::Deserializer::new(text))
            .map_err(|e| {
                let field = e.path().to_string();
                let inner = e.into_inner();
                let line = inner
                    .span()
                    .map(|s| text[..s.start.min(text.len())].lines().count().max(1))
                    .map(|n| format!(" (line {n})"))
                    .unwrap_or_default();
                let message = if field.is_empty() || field == "." {
                    format!("{}{line}", inner.message())
                } else {
                    format!("{field}: {}{line}", inner.message())
                };
                ConfigError::Syntax {
                    path: origin.to_string(),
                    message,
                }
            })?;
        config
            .validate()
            .map_err(|e| ConfigError::Invalid(e, origin.to_string()))?;
        Ok(config)
    }

    /// Rules that span several fields.
    pub fn validate(&self) -> Result<(), NameError> {
        let c = &self.components;
        if c.spamassassin && !c.amavis {
            return Err(NameError::new(
                "components.spamassassin",
                "requires components.amavis = true (SpamAssassin runs inside Amavis)",
                "true",
            ));
        }
        if c.clamav && !c.amavis {
            return Err(NameError::new(
                "components.clamav",
                "requires components.amavis = true (ClamAV is called by Amavis)",
                "true",
            ));
        }
        if self.primary_domain().is_none() {
            return Err(NameError::new(
                "primary_domain",
                "must be set when the hostname has no parent domain",
                self.hostname.as_str(),
            ));
        }
        if !self.web.listen.ip().is_loopback() {
            return Err(NameError::new(
                "web.listen",
                "must be a loopback address (nginx serves the web UI to the network)",
                &self.web.listen.to_string(),
            ));
        }
        match self.tls.mode {
            TlsMode::SelfSigned => {}
            TlsMode::Manual | TlsMode::Acme => {
                let mode = if self.tls.mode == TlsMode::Manual {
                    "manual"
                } else {
                    "acme"
                };
                if self.tls.cert.is_none() {
                    return Err(NameError::new(
                        "tls.cert",
                        format!("is required when tls.mode = \"{mode}\""),
                        "",
                    ));
                }
                if self.tls.key.is_none() {
                    return Err(NameError::new(
                        "tls.key",
                        format!("is required when tls.mode = \"{mode}\""),
                        "",
                    ));
                }
            }
        }
        if self.tls.mode == TlsMode::Acme && self.tls.acme_hook.is_none() {
            return Err(NameError::new(
                "tls.acme_hook",
                "is required when tls.mode = \"acme\"",
                "",
            ));
        }
        if self.database.engine == Engine::Sqlite && self.database.location == DbLocation::External
        {
            return Err(NameError::new(
                "database.location",
                "must be \"local\" with engine = \"sqlite\" (a SQLite file cannot be remote)",
                "external",
            ));
        }
        if self.database.port == Some(0) {
            return Err(NameError::new(
                "database.port",
                "must be between 1 and 65535",
                "0",
            ));
        }
        if !(1..=2048).contains(&self.mail.message_size_limit_mb) {
            return Err(NameError::new(
                "mail.message_size_limit_mb",
                "must be between 1 and 2048",
                &self.mail.message_size_limit_mb.to_string(),
            ));
        }
        for (job, expr) in self.schedule.entries() {
            parse_cron(&format!("schedule.{job}"), expr)?;
        }
        let p = &self.paths;
        let under_mail_root = [
            ("paths.dkim_keys", &p.dkim_keys),
            ("paths.data", &p.data),
            ("paths.rrd", &p.rrd),
            ("stats.state_file", &self.stats.state_file),
        ];
        for (field, path) in under_mail_root {
            if path.as_path().starts_with(p.mail_root.as_path()) {
                return Err(NameError::new(
                    field,
                    "must not be inside paths.mail_root (mailbox operations own that tree)",
                    path.as_str(),
                ));
            }
        }
        Ok(())
    }

    pub fn primary_domain(&self) -> Option<DomainName> {
        self.primary_domain
            .clone()
            .or_else(|| self.hostname.parent_domain())
    }

    pub fn admin_address(&self) -> Option<EmailAddress> {
        if let Some(a) = &self.admin_address {
            return Some(a.clone());
        }
        let domain = self.primary_domain()?;
        EmailAddress::parse("admin_address", &format!("postmaster@{domain}")).ok()
    }

    pub fn to_toml(&self) -> String {
        // Serialising plain data into TOML cannot fail: every field is a string, bool or table.
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = Config::new(Hostname::parse("hostname", "mail.example.com").unwrap());
        c.validate().unwrap();
        assert_eq!(c.primary_domain().unwrap().as_str(), "example.com");
        assert_eq!(
            c.admin_address().unwrap().as_str(),
            "postmaster@example.com"
        );
    }

    #[test]
    fn commented_default_matches_the_code() {
        let parsed = Config::from_toml(DEFAULT_TEXT, "default").unwrap();
        let mut expected = Config::new(Hostname::parse("hostname", "mail.example.com").unwrap());
        expected.primary_domain = parsed.primary_domain.clone();
        expected.admin_address = parsed.admin_address.clone();
        assert_eq!(parsed, expected);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::from_toml(
            "hostname = \"mail.example.com\"\n[database]\nengin = \"mysql\"\n",
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown field `engin`"), "{e}");
    }

    #[test]
    fn bad_cron_is_named() {
        let e = Config::from_toml(
            "hostname = \"mail.example.com\"\n[schedule]\ncheck_mx = \"61 * * * *\"\n",
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("schedule.check_mx"), "{e}");
    }
}
