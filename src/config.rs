//! `/etc/modobox/modobox.toml`: what the admin chose (hostname, database, components, paths,
//! TLS, web listener, job schedules), parsed strictly — an unknown key is an error naming it —
//! and validated as a whole. Secrets live apart, in `secrets.rs`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

mod antispam;
pub use antispam::{Antispam, DmarcRejectAction, DEFAULT_DNSBL_SITES};

use crate::names::HttpUrl;

use crate::names::Network;
use crate::names::{
    BackupRepository, DbHost, DbIdent, DomainName, EmailAddress, Hostname, NameError, SafePath,
    UnixName,
};

pub const DEFAULT_PATH: &str = "/etc/modobox/modobox.toml";
/// `paths.data` unless configured otherwise.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/modobox";

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

/// The largest request body the web UI reads; nginx in front stops larger ones first (both
/// come from here).
pub const WEB_MAX_BODY_BYTES: usize = 1 << 20;

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
    pub jobs: Jobs,
    #[serde(default)]
    pub antispam: Antispam,
    #[serde(default)]
    pub check_mx: CheckMx,
    #[serde(default)]
    pub public_api: PublicApi,
    #[serde(default)]
    pub stats: Stats,
    #[serde(default)]
    pub backup: Backup,
    #[serde(default)]
    pub upgrade: Upgrade,
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
            data: known_good(SafePath::parse("paths.data", DEFAULT_DATA_DIR)),
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
    /// The mode of the MTA-STS policy served for every hosted domain.
    pub mta_sts_mode: MtaStsMode,
    /// The mailbox TLS reports (RFC 8460) are sent to and read from; unset: the admin address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_reports_mailbox: Option<EmailAddress>,
    /// The mailbox DMARC aggregate reports are sent to and read from; unset: the admin address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dmarc_reports_mailbox: Option<EmailAddress>,
}

impl Default for Mail {
    fn default() -> Self {
        Mail {
            owner: known_good(UnixName::parse("mail.owner", "vmail")),
            handle_mailboxes_on_filesystem: true,
            message_size_limit_mb: 50,
            mta_sts_mode: MtaStsMode::Testing,
            tls_reports_mailbox: None,
            dmarc_reports_mailbox: None,
        }
    }
}

/// RFC 8461's policy modes modobox offers: `testing` (senders report TLS failures but deliver)
/// or `enforce` (they refuse to deliver unless the MX presents a certificate they trust: for
/// a certificate from a public CA only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MtaStsMode {
    Testing,
    Enforce,
}

impl MtaStsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MtaStsMode::Testing => "testing",
            MtaStsMode::Enforce => "enforce",
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
    /// modobox's ACME client (or the admin's, `acme_hook`) keeps the certificate current.
    Acme,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    pub mode: TlsMode,
    /// Certificate chain (PEM). Required for `manual`; when unset, `self-signed` uses the
    /// distribution's TLS directory and `acme` `<paths.data>/tls/`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<SafePath>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<SafePath>,
    /// `acme`: the ACME directory (RFC 8555) of the certificate authority.
    pub acme_directory: HttpUrl,
    /// `acme`: the contact address given to the certificate authority (expiry notices).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acme_email: Option<EmailAddress>,
    /// `acme`: a PEM file of the CA that signs the ACME server's own HTTPS certificate, for
    /// private authorities; unset: the system's trusted roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acme_ca_root: Option<SafePath>,
    /// `acme`: an external program to run instead of modobox's own ACME client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acme_hook: Option<SafePath>,
    /// Directory served at `/.well-known/acme-challenge/`.
    pub acme_webroot: SafePath,
}

/// Let's Encrypt's production directory.
pub const DEFAULT_ACME_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";

impl Default for Tls {
    fn default() -> Self {
        Tls {
            mode: TlsMode::SelfSigned,
            cert: None,
            key: None,
            acme_directory: known_good(HttpUrl::parse(
                "tls.acme_directory",
                DEFAULT_ACME_DIRECTORY,
            )),
            acme_email: None,
            acme_ca_root: None,
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
    /// Read the journal (mail facility) when `log_file` does not exist or is no longer written.
    pub journal: bool,
    /// No longer used: the parser's state lives with the RRD files (`paths.rrd`). Accepted
    /// so configurations written by older versions load; the file it names is moved there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_file: Option<SafePath>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            log_file: known_good(SafePath::parse("stats.log_file", "/var/log/mail.log")),
            journal: true,
            state_file: None,
        }
    }
}

/// `modobox upgrade`: where new versions come from and which keys may sign them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Upgrade {
    /// The release channel: a JSON index of versions; none: upgrades come from a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<HttpUrl>,
    /// minisign public keys (the base64 line of a minisign.pub) trusted beside the release
    /// keys built into the binary.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
}

impl Upgrade {
    fn validate(&self) -> Result<(), NameError> {
        for (i, key) in self.keys.iter().enumerate() {
            if minisign_verify::PublicKey::from_base64(key.trim()).is_err() {
                return Err(NameError::new(
                    &format!("upgrade.keys[{i}]"),
                    "must be a minisign public key (the base64 line of a minisign.pub file)",
                    key,
                ));
            }
        }
        Ok(())
    }
}

/// Backups (`modobox backup`): where restic keeps them and how many `forget` keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Backup {
    /// The restic repository; none: backups are off until one is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<BackupRepository>,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
}

impl Default for Backup {
    fn default() -> Self {
        Backup {
            repository: None,
            keep_daily: 7,
            keep_weekly: 4,
            keep_monthly: 6,
        }
    }
}

impl Backup {
    fn validate(&self) -> Result<(), NameError> {
        for (field, v) in [
            ("backup.keep_daily", self.keep_daily),
            ("backup.keep_weekly", self.keep_weekly),
            ("backup.keep_monthly", self.keep_monthly),
        ] {
            if v > 1000 {
                return Err(NameError::new(
                    field,
                    "must be between 0 and 1000",
                    &v.to_string(),
                ));
            }
        }
        if self.keep_daily + self.keep_weekly + self.keep_monthly == 0 {
            return Err(NameError::new(
                "backup.keep_daily",
                "at least one of keep_daily, keep_weekly, keep_monthly must keep a backup",
                "0",
            ));
        }
        Ok(())
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
    /// Does nothing until backup.repository is set.
    pub backup: String,
    pub backup_verify: String,
    /// Renews the ACME certificate when it is due (only with tls.mode = "acme").
    pub tls_renew: String,
    /// Reads the TLS reports mailed to the TLS reports mailbox.
    pub tls_reports: String,
    /// Reads the DMARC aggregate reports mailed to the DMARC reports mailbox.
    pub dmarc_reports: String,
    /// Expands antispam.allow_spf_domains into postscreen's allow-list.
    pub postscreen_allowlist: String,
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
            backup: "30 3 * * *".into(),
            backup_verify: "0 5 * * 0".into(),
            tls_renew: "23 */6 * * *".into(),
            tls_reports: "41 * * * *".into(),
            dmarc_reports: "47 * * * *".into(),
            postscreen_allowlist: "17 4 * * *".into(),
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
            ("backup", self.backup.as_str()),
            ("backup_verify", self.backup_verify.as_str()),
            ("tls_renew", self.tls_renew.as_str()),
            ("tls_reports", self.tls_reports.as_str()),
            ("dmarc_reports", self.dmarc_reports.as_str()),
            ("postscreen_allowlist", self.postscreen_allowlist.as_str()),
        ])
    }
}

/// What `inactive_accounts` does to an account nobody logged into for too long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InactiveAction {
    Disable,
    Delete,
}

/// Settings of the periodic jobs (their schedule is `[schedule]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Jobs {
    /// A run longer than this is stopped and recorded as `timeout`.
    pub timeout_minutes: u32,
    /// Per-job overrides of `timeout_minutes`, keyed by job name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub timeouts: BTreeMap<String, u32>,
    /// `cleanlogs`: `core_log` lines older than this go.
    pub log_max_age_days: u32,
    /// `inactive_accounts`: no login for this long makes an account inactive.
    pub inactive_account_days: u32,
    pub inactive_account_action: InactiveAction,
    /// `quarantine_cleanup`: quarantined messages older than this go.
    pub quarantine_max_age_days: u32,
}

impl Default for Jobs {
    fn default() -> Self {
        Jobs {
            timeout_minutes: 10,
            timeouts: BTreeMap::new(),
            log_max_age_days: 365,
            inactive_account_days: 30,
            inactive_account_action: InactiveAction::Disable,
            quarantine_max_age_days: 14,
        }
    }
}

impl Jobs {
    pub fn validate(&self, jobs: &[&str]) -> Result<(), NameError> {
        let ranges = [
            ("jobs.timeout_minutes", self.timeout_minutes, 1, 1440),
            ("jobs.log_max_age_days", self.log_max_age_days, 1, 36500),
            (
                "jobs.inactive_account_days",
                self.inactive_account_days,
                1,
                36500,
            ),
            (
                "jobs.quarantine_max_age_days",
                self.quarantine_max_age_days,
                1,
                36500,
            ),
        ];
        for (field, v, min, max) in ranges {
            if !(min..=max).contains(&v) {
                return Err(NameError::new(
                    field,
                    format!("must be between {min} and {max}"),
                    &v.to_string(),
                ));
            }
        }
        for (job, minutes) in &self.timeouts {
            if !jobs.contains(&job.as_str()) {
                return Err(NameError::new(
                    "jobs.timeouts",
                    format!("must name a job ({})", jobs.join(", ")),
                    job,
                ));
            }
            if !(1..=1440).contains(minutes) {
                return Err(NameError::new(
                    &format!("jobs.timeouts.{job}"),
                    "must be between 1 and 1440 (minutes)",
                    &minutes.to_string(),
                ));
            }
        }
        Ok(())
    }

    /// How long one run of `job` may take.
    pub fn timeout(&self, job: &str) -> std::time::Duration {
        // A backup or a restore test reads the whole mail store: hours, not minutes, unless
        // the admin says otherwise.
        let default = match job {
            "backup" | "backup_verify" => self.timeout_minutes.max(240),
            _ => self.timeout_minutes,
        };
        let minutes = self.timeouts.get(job).copied().unwrap_or(default);
        std::time::Duration::from_secs(u64::from(minutes) * 60)
    }
}

/// The `check_mx` job: MX records of the hosted domains and their DNSBL listings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckMx {
    /// DNS blocklists every MX address is looked up in.
    pub dnsbl_providers: Vec<DomainName>,
    /// Networks (CIDR) a domain's MX must be in to count as valid; empty = any address.
    pub valid_networks: Vec<Network>,
    /// One name server (`ip:port`) instead of the system's /etc/resolv.conf.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolver: Option<SocketAddr>,
    /// Longest wait for one DNS answer, in seconds.
    pub timeout_secs: u64,
}

/// Blocklists queried by default: widely used, free for low-volume queries. Spamhaus refuses
/// queries that come through large public resolvers (answering 127.255.255.254), so the
/// server's resolver should be a local one.
pub const DEFAULT_DNSBL_PROVIDERS: [&str; 6] = [
    "zen.spamhaus.org",
    "bl.spamcop.net",
    "b.barracudacentral.org",
    "psbl.surriel.com",
    "dnsbl.sorbs.net",
    "bl.mailspike.net",
];

impl Default for CheckMx {
    fn default() -> Self {
        CheckMx {
            dnsbl_providers: DEFAULT_DNSBL_PROVIDERS
                .iter()
                .map(|p| known_good(DomainName::parse("check_mx.dnsbl_providers", p)))
                .collect(),
            valid_networks: Vec::new(),
            resolver: None,
            timeout_secs: 5,
        }
    }
}

/// The `public_api` job: newest versions from Modoboa's public API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublicApi {
    /// false: the job does nothing and nothing leaves the machine.
    pub enabled: bool,
    /// The API root (Modoboa's `MODOBOA_API_URL`); versions are read from `<url>versions/`.
    pub url: HttpUrl,
    /// Longest wait for the whole request, in seconds.
    pub timeout_secs: u64,
}

pub const DEFAULT_PUBLIC_API_URL: &str = "https://api.modoboa.org/1/";

impl Default for PublicApi {
    fn default() -> Self {
        PublicApi {
            enabled: true,
            url: known_good(HttpUrl::parse("public_api.url", DEFAULT_PUBLIC_API_URL)),
            timeout_secs: 10,
        }
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
            jobs: Jobs::default(),
            antispam: Antispam::default(),
            check_mx: CheckMx::default(),
            public_api: PublicApi::default(),
            stats: Stats::default(),
            backup: Backup::default(),
            upgrade: Upgrade::default(),
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
        if self.tls.mode == TlsMode::Manual {
            for (field, value) in [("tls.cert", &self.tls.cert), ("tls.key", &self.tls.key)] {
                if value.is_none() {
                    return Err(NameError::new(
                        field,
                        "is required when tls.mode = \"manual\"",
                        "",
                    ));
                }
            }
        }
        if let Some(root) = &self.tls.acme_ca_root {
            if ["/root", "/home", "/run/user"]
                .iter()
                .any(|d| root.as_path().starts_with(d))
            {
                return Err(NameError::new(
                    "tls.acme_ca_root",
                    "must not be under /root, /home or /run/user (modobox.service, which renews \
                     the certificate, cannot read there)",
                    root.as_str(),
                ));
            }
        }
        if self.tls.mode == TlsMode::Acme && self.tls.acme_directory.as_str().starts_with("http:") {
            return Err(NameError::new(
                "tls.acme_directory",
                "must be an https:// URL (ACME servers are only spoken to over HTTPS)",
                self.tls.acme_directory.as_str(),
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
        let names: Vec<&str> = self.schedule.entries().into_keys().collect();
        self.jobs.validate(&names)?;
        self.validate_jobs()?;
        self.backup.validate()?;
        self.upgrade.validate()?;
        self.antispam.validate()?;
        if self.antispam.dmarc_reject_action == DmarcRejectAction::Quarantine
            && !(self.components.amavis && self.components.spamassassin)
        {
            return Err(NameError::new(
                "antispam.dmarc_reject_action",
                "\"quarantine\" needs components.amavis and components.spamassassin (SpamAssassin \
                 scores the mark)",
                "quarantine",
            ));
        }
        let p = &self.paths;
        let mut under_mail_root = vec![
            ("paths.dkim_keys", &p.dkim_keys),
            ("paths.data", &p.data),
            ("paths.rrd", &p.rrd),
        ];
        if let Some(legacy) = &self.stats.state_file {
            under_mail_root.push(("stats.state_file", legacy));
        }
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

    fn validate_jobs(&self) -> Result<(), NameError> {
        let mx = &self.check_mx;
        if !(1..=60).contains(&mx.timeout_secs) {
            return Err(NameError::new(
                "check_mx.timeout_secs",
                "must be between 1 and 60 seconds",
                &mx.timeout_secs.to_string(),
            ));
        }
        for (i, p) in mx.dnsbl_providers.iter().enumerate() {
            if mx.dnsbl_providers[..i].contains(p) {
                return Err(NameError::new(
                    &format!("check_mx.dnsbl_providers[{i}]"),
                    "must not repeat a provider",
                    p.as_str(),
                ));
            }
        }
        if let Some(r) = mx.resolver {
            if r.port() == 0 || r.ip().is_unspecified() {
                return Err(NameError::new(
                    "check_mx.resolver",
                    "must be the address and port of a name server (e.g. 127.0.0.1:53)",
                    &r.to_string(),
                ));
            }
        }
        if !(1..=120).contains(&self.public_api.timeout_secs) {
            return Err(NameError::new(
                "public_api.timeout_secs",
                "must be between 1 and 120 seconds",
                &self.public_api.timeout_secs.to_string(),
            ));
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

    /// The CIDR table of big senders' SPF ranges postscreen lets through (written by the
    /// `postscreen_allowlist` job, named in main.cf).
    pub fn postscreen_allowlist_path(&self) -> std::path::PathBuf {
        self.paths.data.as_path().join("postscreen-spf-allow.cidr")
    }

    /// Where receiving servers mail their DMARC aggregate reports (the `_dmarc` record's `rua`).
    pub fn dmarc_reports_address(&self) -> Option<EmailAddress> {
        self.mail
            .dmarc_reports_mailbox
            .clone()
            .or_else(|| self.admin_address())
    }

    /// Where sending servers mail their TLS reports (the `_smtp._tls` record's `rua`).
    pub fn tls_reports_address(&self) -> Option<EmailAddress> {
        self.mail
            .tls_reports_mailbox
            .clone()
            .or_else(|| self.admin_address())
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
    fn acme_settings_are_checked_and_named() {
        for (text, field, rule) in [
            ("[tls]\nmode = \"manual\"\n", "tls.cert", "is required"),
            (
                "[tls]\nmode = \"acme\"\nacme_directory = \"http://127.0.0.1:14000/dir\"\n",
                "tls.acme_directory",
                "https://",
            ),
            (
                "[tls]\nacme_directory = \"ftp://ca.example.com/dir\"\n",
                "tls.acme_directory",
                "https://",
            ),
            (
                "[tls]\nacme_ca_root = \"/root/ca.pem\"\n",
                "tls.acme_ca_root",
                "cannot read there",
            ),
            (
                "[tls]\nacme_email = \"not an address\"\n",
                "tls.acme_email",
                "",
            ),
        ] {
            let e = Config::from_toml(
                &format!("hostname = \"mail.example.com\"\n{text}"),
                "t.toml",
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains(field) && e.contains(rule), "{text}: {e}");
        }
        // ACME needs neither a hook nor file paths: modobox's client and its own directory.
        let c = Config::from_toml(
            "hostname = \"mail.example.com\"\n[tls]\nmode = \"acme\"\nacme_email = \"a@example.com\"\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.tls.acme_directory.as_str(), DEFAULT_ACME_DIRECTORY);
    }

    #[test]
    fn bad_job_settings_are_named() {
        for (text, field) in [
            ("[jobs]\ntimeout_minutes = 0\n", "jobs.timeout_minutes"),
            ("[jobs]\nlog_max_age_days = 0\n", "jobs.log_max_age_days"),
            ("[jobs]\ntimeouts = { nope = 3 }\n", "jobs.timeouts"),
            (
                "[jobs]\ntimeouts = { logparser = 0 }\n",
                "jobs.timeouts.logparser",
            ),
            (
                "[jobs]\ninactive_account_action = \"purge\"\n",
                "jobs.inactive_account_action",
            ),
        ] {
            let e = Config::from_toml(
                &format!("hostname = \"mail.example.com\"\n{text}"),
                "t.toml",
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
        let c = Config::from_toml(
            "hostname = \"mail.example.com\"\n[jobs]\ntimeouts = { check_mx = 3 }\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.jobs.timeout("check_mx").as_secs(), 180);
        assert_eq!(c.jobs.timeout("cleanlogs").as_secs(), 600);
    }

    #[test]
    fn job_settings_are_checked_and_named() {
        let bad = |text: &str, field: &str| {
            let e = Config::from_toml(
                &format!("hostname = \"mail.example.com\"\n{text}"),
                "t.toml",
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains(field), "{text}: {e}");
            e
        };
        let e = bad(
            "[check_mx]\nvalid_networks = [\"192.0.2.0/24\", \"10.0.0.1/8\"]\n",
            "check_mx.valid_networks[1]",
        );
        assert!(e.contains("host bits"), "{e}");
        let e = bad(
            "[check_mx]\nvalid_networks = [\"nonsense\"]\n",
            "check_mx.valid_networks[0]",
        );
        assert!(e.contains("CIDR"), "{e}");
        let e = bad(
            "[check_mx]\ndnsbl_providers = [\"zen.spamhaus.org\", \"\"]\n",
            "check_mx.dnsbl_providers[1]",
        );
        assert!(e.contains("must not be empty"), "{e}");
        bad(
            "[check_mx]\ndnsbl_providers = [\"not a domain\"]\n",
            "check_mx.dnsbl_providers[0]",
        );
        bad(
            "[check_mx]\ndnsbl_providers = [\"localhost\"]\n",
            "check_mx.dnsbl_providers[0]",
        );
        bad(
            "[check_mx]\ndnsbl_providers = [\"bl.example.org\", \"bl.example.org\"]\n",
            "check_mx.dnsbl_providers[1]",
        );
        bad(
            "[check_mx]\nresolver = \"127.0.0.1\"\n",
            "check_mx.resolver",
        );
        bad("[check_mx]\ntimeout_secs = 0\n", "check_mx.timeout_secs");
        let e = bad(
            "[public_api]\nurl = \"http://api.modoboa.org/1/\"\n",
            "public_api.url",
        );
        assert!(e.contains("https://"), "{e}");
        bad(
            "[public_api]\nurl = \"ftp://api.modoboa.org/\"\n",
            "public_api.url",
        );
        bad(
            "[public_api]\ntimeout_secs = 600\n",
            "public_api.timeout_secs",
        );
        let ok = Config::from_toml(
            "hostname = \"mail.example.com\"\n[check_mx]\nresolver = \"127.0.0.1:5353\"\nvalid_networks = [\"2001:db8::/32\"]\ndnsbl_providers = []\n[public_api]\nenabled = false\nurl = \"http://127.0.0.1:8080/api/\"\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(
            ok.check_mx.resolver,
            Some("127.0.0.1:5353".parse().unwrap())
        );
        assert!(!ok.public_api.enabled);
    }

    #[test]
    fn job_settings_survive_the_written_file() {
        let mut c = Config::new(Hostname::parse("hostname", "mail.example.com").unwrap());
        c.check_mx.resolver = Some("[::1]:5353".parse().unwrap());
        c.check_mx.valid_networks = vec![Network::parse("n", "192.0.2.0/24").unwrap()];
        c.public_api.enabled = false;
        let back = Config::from_toml(&c.to_toml(), "written").unwrap();
        assert_eq!(back, c);
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
