//! The command tree (clap derive). Only commands that work are listed.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use clap_complete::Shell;

use crate::distro::DistroId;

#[derive(Debug, Parser)]
#[command(
    name = "modobox",
    version,
    about = "Installs, configures and keeps healthy a Modoboa-compatible mail server",
    long_about = "modobox turns a Debian, Ubuntu or RHEL-family server into a complete mail server \
                  (Postfix, Dovecot, Amavis, SpamAssassin, ClamAV, OpenDKIM, nginx and a database) \
                  and keeps it healthy.",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Configuration file.
    #[arg(long, global = true, env = "MODOBOX_CONFIG", default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Use the facts of this distribution instead of detecting it (e.g. debian:12, rocky:9).
    #[arg(long, global = true, value_name = "ID:VERSION")]
    pub distro: Option<DistroId>,
    /// The database to use instead of the configured one (postgres://, mysql://, sqlite://).
    #[arg(
        long,
        global = true,
        env = "MODOBOX_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// More output (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install and configure the whole mail server on this machine (idempotent: a re-run
    /// changes only what is not done yet).
    Install(InstallArgs),
    /// Show what `install` would do, step by step, with file diffs; changes nothing.
    Plan(InstallArgs),
    /// Upgrade modobox: a new binary from FILE (signed by FILE.minisig) or the release channel
    /// (upgrade.url or --url), verified against the release keys before anything of it runs.
    Upgrade(UpgradeArgs),
    /// The resident supervisor (what modobox.service runs): migrates the database, then probes
    /// every service of the stack and repairs what stays down, until SIGTERM.
    Run {
        /// The service manager: systemd over D-Bus, or `direct` (modobox starts the daemons
        /// itself; for containers and images without systemd, also as PID 1). Default: systemd
        /// when it runs the machine.
        #[arg(long, value_enum)]
        manager: Option<crate::supervisor::daemon::ManagerKind>,
    },
    /// Serve the admin web UI and API (what modobox-web.service runs, as its own unprivileged
    /// user, behind nginx).
    Web {
        /// Address to listen on (default: web.listen of the configuration); a non-loopback
        /// address needs --public.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Allow listening on a non-loopback address (plain HTTP: put TLS in front of it).
        #[arg(long)]
        public: bool,
        /// Session cookies without the Secure attribute, for plain HTTP on a test machine.
        #[arg(long)]
        insecure_cookies: bool,
        /// Started as root: read the configuration and the secrets, then become this user with
        /// no capability left (what modobox-web.service does with `modobox-web`).
        #[arg(long, value_name = "USER")]
        user: Option<String>,
        /// The status the supervisor publishes, shown on the dashboard.
        #[arg(long, value_name = "FILE", default_value = crate::health::published::SNAPSHOT)]
        status_file: std::path::PathBuf,
    },
    /// The From: header milter Postfix asks on submission (587, 465): refuses a message whose
    /// From: names an address the login may not send as; the inbound authentication milter
    /// port 25 asks (SPF, DKIM, DMARC); the sending-limit policy service
    /// (modobox-milter.service runs them).
    Milter {
        #[arg(long, default_value = "127.0.0.1:8893")]
        listen: std::net::SocketAddr,
        /// Where the sending-limit policy service (Postfix's check_policy_service) listens.
        #[arg(long, default_value = "127.0.0.1:8894")]
        policy_listen: std::net::SocketAddr,
        /// Where the inbound authentication milter (port 25's smtpd_milters) listens.
        #[arg(long, default_value = "127.0.0.1:8895")]
        inbound_listen: std::net::SocketAddr,
        /// Started as root: read the configuration and the secrets, then become this user with
        /// no capability left (what modobox-milter.service does with `modobox-milter`).
        #[arg(long, value_name = "USER")]
        user: Option<String>,
    },
    /// The health of the mail server: services, probes, checks, events, jobs. Exit code 0
    /// healthy, 1 degraded, 2 down.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// DNS records to publish for the hosted domains.
    #[command(subcommand)]
    Dns(DnsCommand),
    /// The TLS certificate the stack serves.
    #[command(subcommand)]
    Tls(TlsCommand),
    /// Print the default configuration or validate a configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Render every configuration file of the stack (under --root), or show what would change.
    Render(RenderArgs),
    /// Show the detected distribution and its facts.
    Distro {
        /// Print the facts as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Database schema: migrate, status, adopt a Modoboa database.
    #[command(subcommand)]
    Db(DbCommand),
    /// Hosted domains.
    #[command(subcommand)]
    Domain(DomainCommand),
    /// Domain aliases (alias.tld delivers to target.tld).
    #[command(subcommand, name = "domainalias")]
    DomainAlias(DomainAliasCommand),
    /// Relay domains (mail accepted here and relayed to another server).
    #[command(subcommand, name = "relaydomain")]
    RelayDomain(RelayDomainCommand),
    /// Mailboxes (accounts with a mailbox).
    #[command(subcommand)]
    Mailbox(MailboxCommand),
    /// Aliases, forwards and catch-alls (@domain).
    #[command(subcommand)]
    Alias(AliasCommand),
    /// Administrators: superadmins, resellers, domain admins, their domains and limits.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// REST API tokens (`Authorization: Token <key>` on /api/v1/).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Import domains, accounts and aliases from a Modoboa CSV file (all or nothing).
    Import {
        /// The CSV file (`-` for standard input).
        file: PathBuf,
        #[arg(long)]
        json: bool,
        /// The column separator (Modoboa's web UI exports with `,`).
        #[arg(long, default_value = ";", value_parser = parse_sepchar)]
        sepchar: u8,
        /// Skip domains, domain aliases, relay domains and accounts that exist already, and add
        /// the recipients of an existing alias to it (Modoboa's option).
        #[arg(long)]
        continue_if_exists: bool,
        /// Hash every password column, even one that looks like a `{SCHEME}` hash (Modoboa's
        /// option).
        #[arg(long)]
        crypt_passwords: bool,
    },
    /// Export in Modoboa's CSV format.
    Export {
        #[arg(value_enum)]
        what: ExportWhat,
        /// Write to this file (mode 0600: it holds password hashes) instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// The column separator.
        #[arg(long, default_value = ";", value_parser = parse_sepchar)]
        sepchar: u8,
    },
    /// Periodic jobs: their schedule and last run, or one run now.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Mail statistics: parse the mail log into the RRD files, show totals, draw graphs.
    #[command(subcommand)]
    Stats(StatsCommand),
    /// Backups (restic): take one now, list them, show one's contents.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// Appliance images: seal this machine for copying (`prepare`), and give a copy its own
    /// identity at its first boot (`firstboot`, run by modobox-firstboot.service).
    #[command(subcommand)]
    Image(ImageCommand),
    /// Generate shell completions on standard output.
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Generate the man page (roff) on standard output.
    Man,
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Take a consistent backup (database, every mailbox, configuration, secrets, keys,
    /// certificates, statistics) and store it in the repository; mail keeps flowing.
    Create {
        /// This repository instead of backup.repository (a path or a restic URL).
        #[arg(long, value_name = "REPO")]
        to: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The backups in the repository, oldest first.
    List {
        /// This repository instead of backup.repository.
        #[arg(long, value_name = "REPO")]
        from: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Prove a backup restores: restic checks the repository and reads back --read-data of it,
    /// then the whole backup is restored into a scratch area and checked (every file's
    /// checksum, the database loaded into a scratch database with its counts, DKIM and TLS
    /// keys). Exit code 1 when a problem is found.
    Verify {
        /// A backup id or `latest`.
        #[arg(default_value = "latest")]
        id: String,
        #[arg(long, value_name = "REPO")]
        from: Option<String>,
        /// The share of the repository's data restic reads back (`10%`, `100%`, `1/5`).
        #[arg(long, value_name = "SUBSET", default_value = "10%")]
        read_data: String,
        #[arg(long)]
        json: bool,
    },
    /// Restore a backup: everything (database, configuration, keys, mail, statistics), some
    /// parts (--only), or one mailbox. Shows what it will replace and asks (or --yes).
    Restore {
        /// A backup id or `latest`.
        id: String,
        #[arg(long, value_name = "REPO")]
        from: Option<String>,
        /// Only these parts (repeatable).
        #[arg(long, value_enum, value_name = "PART")]
        only: Vec<crate::backup::restore::Part>,
        /// Only this mailbox: its messages go into a `Restored-<date>` folder (see
        /// --into-folder), newer mail untouched.
        #[arg(long, value_name = "ADDRESS", conflicts_with = "only")]
        mailbox: Option<String>,
        /// The folder --mailbox restores into; `-` merges into the mailbox's own folders
        /// instead (only the messages it no longer has).
        #[arg(long, value_name = "NAME", requires = "mailbox")]
        into_folder: Option<String>,
        /// Do not ask.
        #[arg(long, short)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
    /// One backup: versions, counts per domain and mailbox, size.
    Show {
        /// A backup id (as `list` shows it) or `latest`.
        id: String,
        #[arg(long, value_name = "REPO")]
        from: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print a commented default configuration.
    Default,
    /// Validate a configuration file (default: the --config file).
    Check { file: Option<PathBuf> },
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Write under this directory instead of `/`.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Show the differences with the files on disk and write nothing.
    #[arg(long)]
    pub diff: bool,
    /// Replace files an admin edited by hand too.
    #[arg(long)]
    pub force: bool,
    /// Go on when an edit by hand conflicts with a template change: the file stays as it is,
    /// FILE.modobox-new holds the new output.
    #[arg(long)]
    pub accept_conflicts: bool,
    /// A directory of templates that replace the embedded ones of the same name.
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Every job: schedule, next run, last run (start, end, outcome, message).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Run a job now, under the same lock as the scheduler; the run is recorded. Exit code 0
    /// ok, 1 failed or timed out, 3 skipped (running elsewhere, or not available).
    Run {
        /// The job (see `modobox task list`).
        name: String,
        /// Show what the job would do and change nothing (not recorded).
        #[arg(long)]
        dry_run: bool,
    },
    /// Run a job's work in this process and print its outcome as one JSON line: how the
    /// scheduler of `modobox run` starts each run (it holds the lock and records the run).
    #[command(hide = true)]
    Exec {
        /// The job.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply pending migrations.
    Migrate,
    /// Show the applied and pending migrations.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Take over a database created by Modoboa (1.10 to 2.12): add modobox's tables only.
    Adopt {
        /// Only report what adoption would do (and whether it can), changing nothing.
        #[arg(long)]
        check: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportWhat {
    /// Domains, relay domains and domain aliases.
    Domains,
    /// Accounts (with their password hashes) and aliases.
    Identities,
}

/// `--json` and `--search` for list commands.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Only names containing this text.
    #[arg(long)]
    pub search: Option<String>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    pub name: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    pub name: String,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct DomainSettings {
    /// Quota shared by the domain's mailboxes, in MB (0 = unlimited).
    #[arg(long, value_name = "MB", allow_hyphen_values = true)]
    pub quota: Option<i32>,
    /// Quota of a new mailbox, in MB (0 = unlimited).
    #[arg(long, value_name = "MB", allow_hyphen_values = true)]
    pub default_mailbox_quota: Option<i32>,
    /// Enable or disable the domain.
    #[arg(long, value_name = "BOOL")]
    pub enabled: Option<bool>,
    /// MX and DNSBL checks for this domain.
    #[arg(long, value_name = "BOOL")]
    pub dns_checks: Option<bool>,
    /// Sign outgoing mail with DKIM (the key is generated by the DKIM job).
    #[arg(long, value_name = "BOOL")]
    pub dkim: Option<bool>,
    /// DKIM selector.
    #[arg(long, value_name = "SELECTOR")]
    pub dkim_selector: Option<String>,
    /// DKIM key length (1024, 2048 or 4096).
    #[arg(long, value_name = "BITS")]
    pub dkim_key_length: Option<i32>,
}

#[derive(Debug, Subcommand)]
pub enum DomainCommand {
    /// Add a hosted domain.
    Add {
        name: String,
        #[command(flatten)]
        settings: DomainSettings,
    },
    /// List domains.
    List(ListArgs),
    /// Show one domain.
    Show(ShowArgs),
    /// Change a domain's settings.
    Edit {
        name: String,
        #[command(flatten)]
        settings: DomainSettings,
    },
    /// Delete a domain with all its mailboxes and aliases.
    Del(DeleteArgs),
}

#[derive(Debug, Subcommand)]
pub enum DomainAliasCommand {
    /// Add a domain alias: mail to any address @NAME goes to the same address @TARGET.
    Add {
        name: String,
        target: String,
        #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
        enabled: bool,
    },
    /// List domain aliases.
    List {
        #[arg(long)]
        json: bool,
        /// Only the aliases of this target domain.
        #[arg(long)]
        domain: Option<String>,
    },
    Show(ShowArgs),
    /// Enable or disable a domain alias.
    Edit {
        name: String,
        #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
        enabled: bool,
    },
    Del(DeleteArgs),
}

#[derive(Debug, Args)]
pub struct RelaySettings {
    /// The server mail is relayed to.
    #[arg(long, value_name = "HOST")]
    pub target_host: Option<String>,
    #[arg(long, value_name = "PORT")]
    pub target_port: Option<u16>,
    /// Postfix transport service.
    #[arg(long)]
    pub service: Option<String>,
    /// Ask the target server whether a recipient exists before accepting mail.
    #[arg(long, value_name = "BOOL")]
    pub verify_recipients: Option<bool>,
    #[arg(long, value_name = "BOOL")]
    pub enabled: Option<bool>,
}

#[derive(Debug, Subcommand)]
pub enum RelayDomainCommand {
    /// Add a relay domain (--target-host is required).
    Add {
        name: String,
        #[command(flatten)]
        settings: RelaySettings,
    },
    List(ListArgs),
    Show(ShowArgs),
    Edit {
        name: String,
        #[command(flatten)]
        settings: RelaySettings,
    },
    Del(DeleteArgs),
}

/// Where a new password comes from: a prompt on a terminal, else the first line of standard
/// input; never the command line.
#[derive(Debug, Args)]
pub struct PasswordSource {
    /// Generate a random password and print it once.
    #[arg(long)]
    pub generate_password: bool,
}

#[derive(Debug, Subcommand)]
pub enum MailboxCommand {
    /// Add a mailbox (an account whose username is its address).
    Add {
        address: String,
        /// Quota in MB (default: the domain's default mailbox quota).
        #[arg(long, value_name = "MB", allow_hyphen_values = true)]
        quota: Option<i32>,
        #[arg(long, default_value = "")]
        first_name: String,
        #[arg(long, default_value = "")]
        last_name: String,
        #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
        enabled: bool,
        /// SimpleUsers (default) or DomainAdmins (then it administers the mailbox's domain).
        #[arg(long, default_value = "SimpleUsers")]
        role: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    List {
        #[arg(long)]
        json: bool,
        #[arg(long)]
        domain: Option<String>,
        #[arg(long)]
        search: Option<String>,
    },
    Show(ShowArgs),
    /// Set a mailbox's password.
    Passwd {
        address: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// Change a mailbox: quota, names, state, address (the directory is moved by the jobs).
    Edit {
        address: String,
        #[arg(
            long,
            value_name = "MB",
            conflicts_with = "domain_quota",
            allow_hyphen_values = true
        )]
        quota: Option<i32>,
        /// Go back to the domain's default quota.
        #[arg(long)]
        domain_quota: bool,
        #[arg(long)]
        first_name: Option<String>,
        #[arg(long)]
        last_name: Option<String>,
        #[arg(long, value_name = "BOOL")]
        enabled: Option<bool>,
        /// New address.
        #[arg(long, value_name = "ADDRESS")]
        rename: Option<String>,
        /// Allow sending as this address too (repeatable).
        #[arg(long, value_name = "ADDRESS")]
        add_sender: Vec<String>,
        /// Stop allowing sending as this address (repeatable).
        #[arg(long, value_name = "ADDRESS")]
        remove_sender: Vec<String>,
    },
    Del(DeleteArgs),
}

#[derive(Debug, Subcommand)]
pub enum AliasCommand {
    /// Add an alias (`@domain` for a catch-all) delivering to one or more recipients.
    Add {
        address: String,
        #[arg(required = true)]
        recipients: Vec<String>,
        #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
        enabled: bool,
        #[arg(long, default_value = "")]
        description: String,
        /// Expiry: an RFC 3339 date-time, or a duration from now like 12h, 7d.
        #[arg(long, value_name = "WHEN")]
        expires: Option<String>,
    },
    List {
        #[arg(long)]
        json: bool,
        #[arg(long)]
        domain: Option<String>,
    },
    Show(ShowArgs),
    Edit {
        address: String,
        /// Replace the recipients.
        #[arg(long, num_args = 1..)]
        recipients: Option<Vec<String>>,
        #[arg(long, value_name = "BOOL")]
        enabled: Option<bool>,
        #[arg(long)]
        description: Option<String>,
        /// New expiry (RFC 3339 or 12h, 7d), or `never`.
        #[arg(long, value_name = "WHEN")]
        expires: Option<String>,
    },
    Del(DeleteArgs),
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Add an administrator.
    Add {
        username: String,
        /// SuperAdmins, Resellers or DomainAdmins.
        #[arg(long)]
        role: String,
        /// Domains it administers (domain admins, resellers; repeatable).
        #[arg(long = "domain", value_name = "DOMAIN")]
        domains: Vec<String>,
        /// Give it a mailbox too (the username must be an address in a hosted domain).
        #[arg(long)]
        mailbox: bool,
        #[arg(long, default_value = "")]
        first_name: String,
        #[arg(long, default_value = "")]
        last_name: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// List administrators.
    List {
        #[arg(long)]
        json: bool,
    },
    Show(ShowArgs),
    /// Let an administrator administer a domain.
    Grant {
        username: String,
        domain: String,
    },
    /// Take a domain away from an administrator.
    Revoke {
        username: String,
        domain: String,
    },
    /// Set a limit: domains, domain_aliases, mailboxes, mailbox_aliases, domain_admins, quota
    /// (-1 = unlimited).
    Limit {
        username: String,
        name: String,
        #[arg(allow_hyphen_values = true)]
        value: i32,
    },
    /// Change an account's role.
    Role {
        username: String,
        role: String,
    },
    /// Set an administrator's password.
    Passwd {
        username: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    Del(DeleteArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineArg {
    Postgres,
    Mysql,
    Sqlite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsArg {
    SelfSigned,
    Manual,
    Acme,
}

/// What the install is asked for. Without `--config FILE` (or the default configuration file)
/// the settings come from these options, or from prompts on a terminal.
#[derive(Debug, Default, Args)]
pub struct InstallArgs {
    /// The server's fully-qualified name (MX target, certificate, HELO), e.g. mail.example.com.
    pub hostname: Option<String>,
    /// The first hosted domain (default: the hostname's parent domain).
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// Where alerts go (default: postmaster@DOMAIN).
    #[arg(long, value_name = "ADDRESS")]
    pub admin_address: Option<String>,
    /// The database engine (installed locally).
    #[arg(long, value_enum, value_name = "ENGINE")]
    pub database: Option<EngineArg>,
    /// Leave out these components (amavis, spamassassin, clamav, opendkim, pop3, managesieve).
    #[arg(long, value_delimiter = ',', value_name = "COMPONENT")]
    pub without: Vec<String>,
    /// How the TLS certificate is obtained.
    #[arg(long, value_enum, value_name = "MODE")]
    pub tls: Option<TlsArg>,
    /// Certificate chain (PEM) for --tls manual.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) for --tls manual.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// For --tls acme: the address the certificate authority sends expiry notices to.
    #[arg(long, value_name = "ADDRESS")]
    pub acme_email: Option<String>,
    /// For --tls acme: the authority's ACME directory URL (default: Let's Encrypt).
    #[arg(long, value_name = "URL")]
    pub acme_directory: Option<String>,
    /// Answer yes to every question (unattended installs, images, automation).
    #[arg(long, short)]
    pub yes: bool,
    /// Only show what would change (the same as `modobox plan`).
    #[arg(long)]
    pub dry_run: bool,
    /// Go on when an edit by hand of a rendered file conflicts with a template change: the
    /// file stays as it is, FILE.modobox-new holds the new output, services are restarted.
    #[arg(long)]
    pub accept_conflicts: bool,
    /// Print the report as JSON at the end.
    #[arg(long)]
    pub json: bool,
    /// Rebuild a server from its backup on this fresh machine: REPO is a restic repository
    /// (a path or backend:location), ID a backup (default: latest). The repository password
    /// (backup_password of the old server's secrets file) is read from a prompt, or from the
    /// first line of standard input.
    #[arg(
        long,
        value_name = "REPO[:ID]",
        conflicts_with_all = ["domain", "admin_address", "database", "without", "tls", "tls_cert", "tls_key"]
    )]
    pub restore: Option<String>,
    /// A first boot (`image firstboot`): the new superadmin password goes into this file (mode
    /// 0600) instead of the output, which the journal keeps.
    #[arg(skip)]
    pub credentials_file: Option<PathBuf>,
}

/// `modobox image ...`
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Seal this installed machine so that it can be copied: stops the stack and removes every
    /// per-machine secret and identity (SSH host keys, secrets file, database and its
    /// passwords, TLS and DKIM keys, superadmin, machine-id, journal, queue, ...), then enables
    /// modobox-firstboot.service. Power off afterwards and copy the disk.
    Prepare {
        /// Seal even though the machine holds mail: the mail, the queue and every account
        /// are deleted.
        #[arg(long)]
        force: bool,
    },
    /// Build a bootable VM disk image (BIOS boot, GPT, ext4) of the whole stack, as root on a
    /// Debian host, no hypervisor needed: mmdebstrap makes the root with every package, the
    /// root is sealed (no identity in it) and each copy installs itself at its first boot.
    Build(ImageBuildArgs),
    /// A copy's first boot (modobox-firstboot.service runs it): reads the instance's settings
    /// (cloud-init user-data, a NoCloud seed, /etc/modobox/preseed.toml, or questions on the
    /// console), makes new SSH host keys and installs with the copy's own identity.
    Firstboot,
}

/// What `image build` is asked for.
#[derive(Debug, Args)]
pub struct ImageBuildArgs {
    /// The disk format: raw, qcow2 (QEMU/KVM, libvirt, OpenStack), vmdk (VMware), vhdx (Hyper-V),
    /// vagrant-libvirt (a .box for local trials).
    #[arg(long, value_enum, default_value = "qcow2")]
    pub format: ImageFormatArg,
    /// The virtual disk's size (sparse): e.g. 8G, 20G, 16384M.
    #[arg(long, default_value = "8G", value_name = "SIZE")]
    pub size: String,
    /// The image file to write (it appears only once complete).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// The database engine of the image (installed locally in each copy).
    #[arg(long, value_enum, value_name = "ENGINE")]
    pub database: Option<EngineArg>,
    /// Leave out these components (amavis, spamassassin, clamav, opendkim, pop3, managesieve).
    #[arg(long, value_delimiter = ',', value_name = "COMPONENT")]
    pub without: Vec<String>,
    /// The Debian archive (default: this host's, else http://deb.debian.org/debian).
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
    /// The Debian security archive (default: this host's, else http://deb.debian.org/debian-security).
    #[arg(long, value_name = "URL")]
    pub security_mirror: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImageFormatArg {
    Raw,
    Qcow2,
    Vmdk,
    Vhdx,
    /// A Vagrant box (libvirt provider) for local trials.
    VagrantLibvirt,
}

/// What `upgrade` is asked for.
#[derive(Debug, Default, Args)]
pub struct UpgradeArgs {
    /// The new modobox binary (default: the newest release of the channel).
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Its minisign signature (default: FILE.minisig).
    #[arg(long, value_name = "SIG", requires = "file")]
    pub signature: Option<PathBuf>,
    /// The release channel's index instead of upgrade.url.
    #[arg(long, value_name = "URL", conflicts_with = "file")]
    pub url: Option<String>,
    /// Upgrade the installed server to this binary (run as /path/to/new/modobox upgrade --self;
    /// works on installations made by any older version).
    #[arg(long = "self", conflicts_with_all = ["file", "url", "check"])]
    pub self_: bool,
    /// Only show the plan: exit 0 when an upgrade is available, 3 when already current.
    #[arg(long)]
    pub check: bool,
    /// Do not ask.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Upgrade even when a probe is failing before the upgrade.
    #[arg(long)]
    pub force: bool,
    /// Go on when your edit of a rendered file conflicts with a template change (your file is
    /// kept, the new version written beside it as FILE.modobox-new).
    #[arg(long)]
    pub accept_conflicts: bool,
    /// Accept an older version.
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Go back to the newest restore point of another version (with the same health gate).
    #[arg(long, conflicts_with_all = ["file", "url", "check", "self_", "history"])]
    pub rollback: bool,
    /// The upgrades and rollbacks of this server.
    #[arg(long, conflicts_with_all = ["file", "url", "check", "self_"])]
    pub history: bool,
    /// Finish an interrupted upgrade (what `run` starts when it finds one).
    #[arg(long, hide = true, conflicts_with_all = ["file", "url", "check", "self_", "history", "rollback"])]
    pub recover: bool,
    /// Seconds the health gate waits for every probe to be green three rounds in a row.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub gate_seconds: u64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DnsCommand {
    /// Print the records (zone-file syntax) for DOMAIN, or for every hosted domain.
    Records {
        domain: Option<String>,
        /// This server's public addresses (default: the non-local addresses of its interfaces).
        #[arg(long, value_delimiter = ',', value_name = "IP")]
        address: Vec<std::net::IpAddr>,
        /// Also the MTA-STS records.
        #[arg(long)]
        mta_sts: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// The certificate: issuer, names, expiry, and which of the names mail clients and
    /// senders use (the hostname; autoconfig., autodiscover. and mta-sts. of each hosted
    /// domain) it covers. Exit code 0 fine, 1 a warning (expiring within 14 days, a client
    /// name not covered), 2 expired, unreadable or not covering the hostname.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// With tls.mode = "acme": obtains a new certificate now when one is due (the placeholder,
    /// 30 days before expiry, a client name whose DNS points here missing), then reloads
    /// Postfix, Dovecot and nginx. What the `tls_renew` job does on its schedule.
    Renew {
        /// Renew even when not due, and without waiting after earlier failures.
        #[arg(long)]
        force: bool,
    },
}

/// `--rrd-dir`: the RRD directory instead of the configured `paths.rrd`.
#[derive(Debug, Args)]
pub struct RrdDirArg {
    #[arg(long, value_name = "DIR", env = crate::stats::RRD_DIR_ENV)]
    pub rrd_dir: Option<PathBuf>,
}

/// A period, or a custom range with --start and --end.
#[derive(Debug, Args)]
pub struct PeriodArgs {
    #[arg(long, value_enum, default_value = "day")]
    pub period: crate::stats::graph::Period,
    /// Start of a custom period: RFC 3339 or seconds since the epoch.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub start: Option<String>,
    /// End of a custom period (default: now).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub end: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum StatsCommand {
    /// Parse what the mail log gained since the last run and update the RRD files (the
    /// scheduler does this every 5 minutes).
    Parse {
        /// Read this log file instead of stats.log_file.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Count these names instead of the hosted domains of the database (repeatable).
        #[arg(long = "domain", value_name = "DOMAIN")]
        domains: Vec<String>,
        #[command(flatten)]
        rrd: RrdDirArg,
        #[arg(long)]
        json: bool,
    },
    /// Totals per counter of a domain (or `global`) over a period.
    Show {
        /// A hosted domain, domain alias, or `global`.
        name: String,
        #[command(flatten)]
        period: PeriodArgs,
        #[command(flatten)]
        rrd: RrdDirArg,
        #[arg(long)]
        json: bool,
    },
    /// Draw a traffic or size graph as SVG or PNG (from the --out extension).
    Graph {
        name: String,
        #[command(flatten)]
        period: PeriodArgs,
        #[arg(long, value_enum, default_value = "traffic")]
        kind: crate::stats::graph::Kind,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        rrd: RrdDirArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Give an account a new API token and print it (once: only its SHA-256 is kept); its
    /// previous token stops working.
    Create { username: String },
    /// Remove an account's API token.
    Revoke { username: String },
    /// Every account's API token (never the key): modobox's, and the keys of an adopted
    /// Modoboa database not used since (moved into modobox's table at their first use).
    List {
        #[arg(long)]
        json: bool,
    },
}

/// `--sepchar`: one ASCII punctuation or tab character that cannot be part of a value's
/// quoting.
fn parse_sepchar(v: &str) -> Result<u8, String> {
    let v = if v == "\\t" { "\t" } else { v };
    match v.as_bytes() {
        [b] if (b.is_ascii_punctuation() || *b == b'\t') && !matches!(b, b'"' | b'\'' | b'{' | b'}' | b'@' | b'.' | b'$') => Ok(*b),
        _ => Err("must be one punctuation character such as ; , | or a tab (not a quote, @, ., {, } or $)".into()),
    }
}
