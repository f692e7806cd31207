//! `modobox image prepare`: seals an installed machine so that it can be copied. The stack is
//! stopped and its units disabled, every per-machine secret and identity is removed (the
//! list below), and `modobox-firstboot.service` is enabled: each clone's first boot makes its
//! own. Safe to run twice (the second run finds nothing to remove); an interrupted run
//! completes when run again.

use std::path::{Path, PathBuf};

use super::{io_error, pending_marker, ImageError, CREDENTIALS_FILE, FIRSTBOOT_UNIT};
use crate::config::{Config, DbLocation, Engine, TlsMode};
use crate::distro::Distro;
use crate::install::services::services;
use crate::install::Ctx;
use crate::render::context::tls_paths;
use crate::secrets::Secrets;
use crate::service::systemd::Systemd;
use crate::store::{inventory, local_admin, roles, Store};
use crate::system::fs::write_atomic;
use crate::system::Root;

#[derive(Debug, Default, Clone, Copy)]
pub struct Options {
    /// Seal a machine that holds mail: the mail, the queue and every account are deleted.
    pub force: bool,
}

/// What sealing did, one line per kind of item, for the admin.
#[derive(Debug, Default)]
pub struct Sealed {
    pub removed: Vec<String>,
    /// Units stopped and kept from starting at boot until the first boot succeeded.
    pub disabled: Vec<String>,
    pub was_sealed: bool,
}

/// SSH's host keys: every clone makes its own at its first boot.
const SSH_DIR: &str = "/etc/ssh";
/// Debian's ssl-cert package key pair (PostgreSQL's TLS), made again at the first boot.
pub const SNAKEOIL_KEY: &str = "/etc/ssl/private/ssl-cert-snakeoil.key";
pub const SNAKEOIL_CERT: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";
/// Postfix's queue directories (mail in transit).
const POSTFIX_QUEUES: &[&str] = &[
    "maildrop", "incoming", "active", "deferred", "hold", "corrupt", "bounce", "defer", "trace",
    "flush", "saved",
];
const POSTFIX_SPOOL: &str = "/var/spool/postfix";

/// Seals this machine (see the module documentation).
pub fn prepare(
    config_path: &Path,
    distro: &Distro,
    options: Options,
) -> Result<Sealed, ImageError> {
    let root = Root::host();
    if !config_path.exists() {
        return Err(ImageError(format!(
            "image prepare: no modobox configuration at {}: install first (`modobox install \
             HOSTNAME`), then seal",
            config_path.display()
        )));
    }
    let config = Config::load(config_path)?;
    refuse_shared_identity(&config)?;
    // In memory only when the file is gone (a second run): nothing is written.
    let in_memory = Secrets::load_or_generate(config.paths.secrets.as_path())?;
    let secrets = config
        .paths
        .secrets
        .as_path()
        .exists()
        .then(|| in_memory.clone());
    let ctx = Ctx::new(
        config.clone(),
        config_path.to_path_buf(),
        distro.clone(),
        in_memory,
    )?;
    // zbus' connection needs the runtime's context, down to its drop.
    let _in_runtime = ctx.rt.enter();
    let units: Vec<String> = services(&ctx)?.into_iter().map(|s| s.unit).collect();
    let db_unit = local_database_unit(&config, distro);
    let marker = pending_marker(&config);
    let mut sealed = Sealed {
        was_sealed: marker.exists(),
        ..Sealed::default()
    };
    let sd = ctx.rt.block_on(Systemd::connect())?;
    // The database is only gone once the marker is written (last): until then, read it.
    if !sealed.was_sealed {
        if let Some(unit) = &db_unit {
            ctx.rt.block_on(sd.start(unit))?;
        }
        let held = ctx
            .rt
            .block_on(holdings(&root, &config, secrets.as_ref()))?;
        if held.has_mail() && !options.force {
            return Err(ImageError(format!(
                "image prepare: this machine holds mail ({}): sealing deletes it. Nothing was \
                 changed; run `modobox image prepare --force` to delete it and seal",
                held.describe()
            )));
        }
        // The supervisor first (it would restart what we stop), then the daemons.
        for unit in units.iter().rev().filter(|u| Some(*u) != db_unit.as_ref()) {
            ctx.rt.block_on(sd.stop(unit))?;
        }
        sealed.removed.push(drop_database(&config, &held)?);
    }
    for unit in units.iter().rev() {
        ctx.rt.block_on(sd.stop(unit))?;
    }
    let names: Vec<&str> = units.iter().map(String::as_str).collect();
    if ctx.rt.block_on(sd.disable(&names))? {
        sealed.disabled = units.clone();
    }
    sealed.removed.extend(remove_instance_files(
        &root,
        &config,
        distro,
        secrets.as_ref(),
        options.force,
    )?);
    set_up_first_boot(&root, &config, distro, &sd, &ctx.rt)?;
    if !sealed.was_sealed {
        write_atomic(
            &marker,
            b"sealed by `modobox image prepare`: modobox-firstboot.service runs at the next boot\n",
            0o600,
            None,
        )
        .map_err(io_error(&marker))?;
    }
    ctx.close();
    Ok(sealed)
}

/// Stops the stack (the supervisor first, which would restart the rest) and keeps it from
/// starting at boot: after a failed first boot, the daemons stay down until one succeeds.
pub fn stop_stack(config_path: &Path, distro: &Distro) -> Result<Vec<String>, ImageError> {
    let config = Config::load(config_path)?;
    let secrets = Secrets::load_or_generate(config.paths.secrets.as_path())?;
    let ctx = Ctx::new(config, config_path.to_path_buf(), distro.clone(), secrets)?;
    let units: Vec<String> = services(&ctx)?.into_iter().map(|s| s.unit).collect();
    let names: Vec<&str> = units.iter().map(String::as_str).collect();
    ctx.rt.block_on(async {
        let sd = Systemd::connect().await?;
        for unit in names.iter().rev() {
            sd.stop(unit).await?;
        }
        sd.disable(&names).await?;
        Ok::<(), ImageError>(())
    })?;
    ctx.close();
    Ok(units)
}

/// What clones could not each have their own of.
fn refuse_shared_identity(config: &Config) -> Result<(), ImageError> {
    if config.database.location == DbLocation::External {
        return Err(ImageError(
            "image prepare: database.location = \"external\": every clone would share that \
             database and its password; an image needs a local database"
                .into(),
        ));
    }
    if config.tls.mode == TlsMode::Manual {
        return Err(ImageError(
            "image prepare: tls.mode = \"manual\": every clone would serve this machine's \
             certificate and private key; set tls.mode to \"self-signed\" or \"acme\" first"
                .into(),
        ));
    }
    Ok(())
}

fn local_database_unit(config: &Config, distro: &Distro) -> Option<String> {
    if config.database.location != DbLocation::Local {
        return None;
    }
    match config.database.engine {
        Engine::Postgres => Some(distro.facts.services.postgres.clone()),
        Engine::Mysql => Some(distro.facts.services.mysql.clone()),
        Engine::Sqlite => None,
    }
}

/// What the machine holds that sealing would delete.
#[derive(Debug, Default)]
pub struct Holdings {
    pub messages: u64,
    pub queued: u64,
    pub domains: u64,
    pub mailboxes: u64,
    pub accounts: i64,
    pub tokens: i64,
    pub dkim_keys: i64,
    pub sessions: i64,
    pub database: bool,
}

impl Holdings {
    pub fn has_mail(&self) -> bool {
        self.messages > 0 || self.queued > 0 || self.mailboxes > 0
    }
    fn describe(&self) -> String {
        format!(
            "{} messages in mailboxes, {} in the Postfix queue, {} mailboxes",
            self.messages, self.queued, self.mailboxes
        )
    }
}

async fn holdings(
    root: &Root,
    config: &Config,
    secrets: Option<&Secrets>,
) -> Result<Holdings, ImageError> {
    let mut h = Holdings {
        messages: count_messages(&root.path(config.paths.mail_root.as_path())),
        queued: POSTFIX_QUEUES
            .iter()
            .filter(|q| {
                matches!(
                    **q,
                    "maildrop" | "incoming" | "active" | "deferred" | "hold"
                )
            })
            .map(|q| count_files(&root.path(&Path::new(POSTFIX_SPOOL).join(q))))
            .sum(),
        ..Holdings::default()
    };
    if !database_exists(root, config)? {
        return Ok(h);
    }
    let Some(secrets) = secrets else {
        return Err(ImageError(format!(
            "image prepare: the database {} exists but the secrets file {} is gone: cannot \
             read it to see what it holds",
            config.database.name, config.paths.secrets
        )));
    };
    let store = Store::connect(&crate::store::DatabaseUrl::from_config(config, secrets)).await?;
    let mut tx = store.begin_read().await?;
    let inv = inventory::read(&mut tx).await?;
    h.database = true;
    h.domains = inv.domains.len() as u64;
    h.mailboxes = inv.mailboxes.len() as u64;
    h.accounts = tx.count("SELECT COUNT(*) FROM core_user", &[]).await?;
    h.tokens = tx
        .count("SELECT COUNT(*) FROM modobox_api_token", &[])
        .await?;
    h.sessions = tx
        .count("SELECT COUNT(*) FROM modobox_session", &[])
        .await?;
    h.dkim_keys = tx
        .count(
            "SELECT COUNT(*) FROM admin_domain WHERE dkim_public_key IS NOT NULL AND dkim_public_key <> ''",
            &[],
        )
        .await?;
    tx.commit().await?;
    store.close().await;
    Ok(h)
}

/// Whether modobox's database is still there (asked as the server's administrator: an
/// interrupted earlier run may have dropped it already).
fn database_exists(root: &Root, config: &Config) -> Result<bool, ImageError> {
    let name = config.database.name.to_string();
    let sql = match config.database.engine {
        Engine::Sqlite => return Ok(root.path(config.database.sqlite_path.as_path()).exists()),
        Engine::Mysql => format!(
            "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = {};\n",
            roles::sql_literal(&name)
        ),
        Engine::Postgres => format!(
            "SELECT COUNT(*) FROM pg_database WHERE datname = {};\n",
            roles::sql_literal(&name)
        ),
    };
    let admin_db = if config.database.engine == Engine::Mysql {
        "mysql"
    } else {
        "postgres"
    };
    let out = local_admin::client(config.database.engine, admin_db)
        .stdin(sql)
        .run()?;
    Ok(out.stdout.trim() != "0")
}

/// Message files in a mail store (every `cur` and `new` directory of every folder).
fn count_messages(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let here = matches!(
        dir.file_name().and_then(|n| n.to_str()),
        Some("cur" | "new")
    );
    let mut n = 0;
    for e in entries.flatten() {
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            n += count_messages(&e.path());
        } else if here && t.is_file() {
            n += 1;
        }
    }
    n
}

fn count_files(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            Ok(_) => 1,
            Err(_) => 0,
        })
        .sum()
}

/// Drops the database and its roles (the superadmin, the placeholder domain, DKIM rows, API
/// tokens, sessions and the role passwords go with them).
fn drop_database(config: &Config, held: &Holdings) -> Result<String, ImageError> {
    let what = if held.database {
        format!(
            "{} domains, {} accounts (the superadmin among them), {} mailboxes, {} DKIM keys, {} API tokens, {} web sessions",
            held.domains, held.accounts, held.mailboxes, held.dkim_keys, held.tokens, held.sessions
        )
    } else {
        "already gone".to_string()
    };
    match config.database.engine {
        Engine::Sqlite => {
            let path = config.database.sqlite_path.as_path();
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let p = PathBuf::from(format!("{}{suffix}", path.display()));
                remove_path(&p)?;
            }
            Ok(format!("database {} ({what})", path.display()))
        }
        engine => {
            let sql = roles::drop_database_sql(config);
            let admin_db = if engine == Engine::Mysql {
                "mysql"
            } else {
                "postgres"
            };
            local_admin::client(engine, admin_db).stdin(sql).run()?;
            Ok(format!(
                "database {} and its roles with their passwords ({what})",
                config.database.name
            ))
        }
    }
}

/// Removes a file, a symlink or a whole directory; `false` when there was nothing.
fn remove_path(path: &Path) -> Result<bool, ImageError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_error(path)(e)),
    };
    if meta.is_dir() {
        std::fs::remove_dir_all(path).map_err(io_error(path))?;
    } else {
        std::fs::remove_file(path).map_err(io_error(path))?;
    }
    Ok(true)
}

/// Collects what a sweep removed: "what: N items (where)".
struct Sweep<'a> {
    root: &'a Root,
    lines: Vec<String>,
}

impl Sweep<'_> {
    /// Removes the entries of `dir` whose name `keep` rejects.
    fn entries(
        &mut self,
        what: &str,
        dir: &Path,
        pick: impl Fn(&str) -> bool,
    ) -> Result<(), ImageError> {
        let real = self.root.path(dir);
        let Ok(list) = std::fs::read_dir(&real) else {
            return Ok(());
        };
        let mut n = 0;
        let mut names: Vec<_> = list.flatten().collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let name = e.file_name().to_string_lossy().into_owned();
            if pick(&name) && remove_path(&e.path())? {
                n += 1;
            }
        }
        if n > 0 {
            self.lines.push(format!("{what}: {n} in {}", dir.display()));
        }
        Ok(())
    }

    fn files(&mut self, what: &str, paths: &[PathBuf]) -> Result<(), ImageError> {
        let mut gone = Vec::new();
        for p in paths {
            if remove_path(&self.root.path(p))? {
                gone.push(p.display().to_string());
            }
        }
        if !gone.is_empty() {
            self.lines.push(format!("{what}: {}", gone.join(", ")));
        }
        Ok(())
    }
}

/// Every per-machine file: keys, secrets, state, logs and caches (see the README's list).
pub fn remove_instance_files(
    root: &Root,
    config: &Config,
    distro: &Distro,
    secrets: Option<&Secrets>,
    force: bool,
) -> Result<Vec<String>, ImageError> {
    let mut sweep = Sweep {
        root,
        lines: Vec::new(),
    };
    let p = |s: &str| PathBuf::from(s);
    // Rendered files and their merge bases hold the database passwords: those are written
    // again, with the clone's passwords, at its first boot.
    if let Some(secrets) = secrets {
        let (bases, live): (Vec<PathBuf>, Vec<PathBuf>) =
            files_holding_secrets(root, config, secrets)?
                .into_iter()
                .partition(|p| p.starts_with(config.paths.data.as_path()));
        sweep.files("rendered files holding this machine's passwords", &live)?;
        sweep.files("their merge bases", &bases)?;
        if let Some(line) = sweep
            .lines
            .last_mut()
            .filter(|l| l.starts_with("their merge bases"))
        {
            *line = format!(
                "their merge bases: {} in {}",
                bases.len(),
                config.paths.data
            );
        }
    }
    sweep.files(
        "secrets file (database passwords, session key, backup password)",
        &[config.paths.secrets.as_path().to_path_buf()],
    )?;
    let (cert, key) = tls_paths(config, distro);
    sweep.files(
        "TLS certificate and private key",
        &[cert.as_path().to_path_buf(), key.as_path().to_path_buf()],
    )?;
    sweep.files(
        "ACME account key and renewal state",
        &[
            crate::jobs::tls_renew::account_path(config),
            crate::jobs::tls_renew::state_path(config),
        ],
    )?;
    sweep.entries(
        "DKIM private keys",
        config.paths.dkim_keys.as_path(),
        |_| true,
    )?;
    sweep.entries("SSH host keys", Path::new(SSH_DIR), |n| {
        n.starts_with("ssh_host_")
    })?;
    sweep.files(
        "ssl-cert snakeoil key pair",
        &[p(SNAKEOIL_KEY), p(SNAKEOIL_CERT)],
    )?;
    reset_machine_id(root, &mut sweep.lines)?;
    sweep.files(
        "random seeds and machine credentials",
        &[
            p("/var/lib/systemd/random-seed"),
            p("/var/lib/systemd/credential.secret"),
            p("/var/lib/postfix/prng_exch"),
        ],
    )?;
    sweep.entries("journal", Path::new("/var/log/journal"), |_| true)?;
    for q in POSTFIX_QUEUES {
        sweep.entries("mail queue", &Path::new(POSTFIX_SPOOL).join(q), |_| true)?;
    }
    sweep.entries(
        "Postfix TLS session caches",
        Path::new("/var/lib/postfix"),
        |n| n.ends_with("_scache.db") || n.ends_with("_scache.lmdb"),
    )?;
    if force {
        sweep.entries("mail store", config.paths.mail_root.as_path(), |_| true)?;
    }
    sweep.entries(
        "Amavis state (Bayes database, temporary files, quarantine)",
        Path::new("/var/lib/amavis/.spamassassin"),
        |n| n.starts_with("bayes_"),
    )?;
    sweep.entries(
        "Amavis state (Bayes database, temporary files, quarantine)",
        Path::new("/var/lib/amavis/tmp"),
        |_| true,
    )?;
    sweep.entries(
        "Amavis state (Bayes database, temporary files, quarantine)",
        Path::new("/var/lib/amavis/virusmails"),
        |_| true,
    )?;
    sweep.entries("mail and database logs", Path::new("/var/log"), |n| {
        n.starts_with("mail.")
            || n.starts_with("syslog")
            || n.starts_with("messages")
            || n.starts_with("cloud-init")
    })?;
    sweep.entries(
        "mail and database logs",
        Path::new("/var/log/postgresql"),
        |_| true,
    )?;
    sweep.entries(
        "mail and database logs",
        Path::new("/var/log/mysql"),
        |_| true,
    )?;
    sweep.entries("DHCP leases", Path::new("/var/lib/dhcp"), |n| {
        n.ends_with(".leases")
    })?;
    sweep.entries("DHCP leases", Path::new("/var/lib/NetworkManager"), |n| {
        n.ends_with(".lease")
    })?;
    sweep.entries(
        "cloud-init instance state",
        Path::new("/var/lib/cloud"),
        |n| n != "seed" && n != "scripts",
    )?;
    let mut history: Vec<PathBuf> = [
        ".bash_history",
        ".psql_history",
        ".mysql_history",
        ".python_history",
        ".lesshst",
        ".viminfo",
        ".wget-hsts",
    ]
    .iter()
    .flat_map(|f| {
        [
            Path::new("/root").join(f),
            Path::new("/var/lib/postgresql").join(f),
        ]
    })
    .collect();
    if let Ok(homes) = std::fs::read_dir(root.path(Path::new("/home"))) {
        for h in homes.flatten() {
            history.push(Path::new("/home").join(h.file_name()).join(".bash_history"));
        }
    }
    sweep.files("shell histories", &history)?;
    sweep.entries("apt package lists", Path::new("/var/lib/apt/lists"), |n| {
        n != "lock" && n != "partial" && n != "auxfiles"
    })?;
    sweep.files(
        "first-boot credentials of an earlier instance",
        &[p(CREDENTIALS_FILE)],
    )?;
    // modobox's own state: statistics, parser offsets, backup and upgrade state, the task log.
    // The render manifest and the merge bases stay (they hold no secret any more).
    let keep = [
        crate::render::manifest::FILE_NAME,
        crate::render::base::DIR_NAME,
        "firstboot-pending",
    ];
    sweep.entries(
        "modobox state (statistics, task history, backup and upgrade state)",
        config.paths.data.as_path(),
        |n| !keep.contains(&n),
    )?;
    if !config
        .paths
        .rrd
        .as_path()
        .starts_with(config.paths.data.as_path())
    {
        sweep.entries("statistics", config.paths.rrd.as_path(), |_| true)?;
    }
    forget_hostname(root, config, &mut sweep.lines)?;
    Ok(merge_lines(sweep.lines))
}

/// Lines with the same label become one ("journal: 2 in /var/log/journal").
fn merge_lines(lines: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in lines {
        let label = l.split(": ").next().unwrap_or("").to_string();
        match out
            .iter_mut()
            .find(|o| o.starts_with(&format!("{label}: ")))
        {
            Some(o) => {
                o.push_str("; ");
                o.push_str(&l[label.len() + 2..]);
            }
            None => out.push(l),
        }
    }
    out
}

/// Rendered files (and their merge bases and `.modobox-new` siblings) that contain one of
/// this machine's secret values.
fn files_holding_secrets(
    root: &Root,
    config: &Config,
    secrets: &Secrets,
) -> Result<Vec<PathBuf>, ImageError> {
    let values: Vec<&str> = secret_values(secrets);
    let manifest_path = root.path(&crate::install::files::manifest_path(config));
    let manifest = crate::render::manifest::Manifest::load(&manifest_path)
        .map_err(io_error(&manifest_path))?;
    let base_dir = config
        .paths
        .data
        .as_path()
        .join(crate::render::base::DIR_NAME);
    let mut out = Vec::new();
    for file in manifest.files.keys() {
        let rel = file.strip_prefix("/").unwrap_or(file);
        let new = PathBuf::from(format!("{}.modobox-new", file.display()));
        for candidate in [file.clone(), base_dir.join(rel), new] {
            if let Ok(text) = std::fs::read(root.path(&candidate)) {
                if values.iter().any(|v| contains(&text, v.as_bytes())) {
                    out.push(candidate);
                }
            }
        }
    }
    Ok(out)
}

fn secret_values(s: &Secrets) -> Vec<&str> {
    [
        &s.database_password,
        &s.session_key,
        &s.postfix_db_password,
        &s.dovecot_db_password,
        &s.opendkim_db_password,
        &s.amavis_db_password,
        &s.milter_db_password,
        &s.backup_password,
    ]
    .iter()
    .map(|s| s.expose())
    .filter(|v| !v.is_empty())
    .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

/// `/etc/machine-id` set to `uninitialized`: systemd makes a new one at the next boot and
/// treats that boot as the first (ConditionFirstBoot). D-Bus' copy goes too.
fn reset_machine_id(root: &Root, lines: &mut Vec<String>) -> Result<(), ImageError> {
    let path = root.path(Path::new("/etc/machine-id"));
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current.trim() != "uninitialized" {
        write_atomic(&path, b"uninitialized\n", 0o444, None).map_err(io_error(&path))?;
        lines.push("machine-id: /etc/machine-id reset to \"uninitialized\"".into());
    }
    let dbus = root.path(Path::new("/var/lib/dbus/machine-id"));
    if std::fs::symlink_metadata(&dbus).is_ok_and(|m| m.is_file()) {
        std::fs::remove_file(&dbus).map_err(io_error(&dbus))?;
        lines.push("machine-id: /var/lib/dbus/machine-id".into());
    }
    Ok(())
}

/// The builder's name out of /etc/hostname and /etc/hosts (the clone's is set at first boot;
/// Postfix would otherwise take it).
fn forget_hostname(
    root: &Root,
    config: &Config,
    lines: &mut Vec<String>,
) -> Result<(), ImageError> {
    let host = config.hostname.as_str();
    let path = root.path(Path::new("/etc/hostname"));
    if std::fs::read_to_string(&path).is_ok_and(|t| t.trim() != "localhost") {
        write_atomic(&path, b"localhost\n", 0o644, None).map_err(io_error(&path))?;
        lines.push("hostname: /etc/hostname set to \"localhost\"".into());
    }
    let hosts = root.path(Path::new("/etc/hosts"));
    if let Ok(text) = std::fs::read_to_string(&hosts) {
        let names_host = |l: &str| {
            !l.trim_start().starts_with('#') && l.split_whitespace().skip(1).any(|n| n == host)
        };
        if text.lines().any(names_host) {
            let kept: String = text
                .lines()
                .filter(|l| !names_host(l))
                .map(|l| format!("{l}\n"))
                .collect();
            write_atomic(&hosts, kept.as_bytes(), 0o644, None).map_err(io_error(&hosts))?;
            lines.push(format!("hostname: the lines naming {host} in /etc/hosts"));
        }
    }
    Ok(())
}

/// The first-boot unit, enabled; ssh kept down until it succeeded; systemd's own first-boot
/// questions masked (they would wait for a key press on the console).
fn set_up_first_boot(
    root: &Root,
    config: &Config,
    distro: &Distro,
    sd: &Systemd,
    rt: &tokio::runtime::Runtime,
) -> Result<(), ImageError> {
    write_first_boot_files(root, config, distro)?;
    rt.block_on(async {
        sd.daemon_reload().await?;
        sd.enable(&[FIRSTBOOT_UNIT]).await
    })?;
    Ok(())
}

/// The files of the first boot under `root`: the unit, ssh's drop-ins, the preset that keeps
/// systemd from enabling units at the first boot, systemd-firstboot masked. Enabling the unit
/// is the caller's (live: over D-Bus; an image root: `enable_offline`).
pub fn write_first_boot_files(
    root: &Root,
    config: &Config,
    distro: &Distro,
) -> Result<(), ImageError> {
    let units = root.path(distro.facts.paths.systemd_units.as_path());
    let unit = units.join(FIRSTBOOT_UNIT);
    write_atomic(&unit, firstboot_unit(config)?.as_bytes(), 0o644, None)
        .map_err(io_error(&unit))?;
    for ssh in ["ssh.service", "sshd.service"] {
        let dropin = units.join(format!("{ssh}.d/modobox-firstboot.conf"));
        write_atomic(&dropin, SSH_DROPIN.as_bytes(), 0o644, None).map_err(io_error(&dropin))?;
    }
    let preset = root.path(Path::new(super::PRESET_FILE));
    write_atomic(&preset, PRESET.as_bytes(), 0o644, None).map_err(io_error(&preset))?;
    mask(root, distro, "systemd-firstboot.service")
}

/// A unit masked in an image root (a link to /dev/null in the admin's unit directory).
pub fn mask(root: &Root, distro: &Distro, unit: &str) -> Result<(), ImageError> {
    let link = root
        .path(distro.facts.paths.systemd_units.as_path())
        .join(unit);
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink("/dev/null", &link).map_err(io_error(&link))?;
    }
    Ok(())
}

/// On a first boot (machine-id "uninitialized") systemd enables every unit its presets name,
/// which on Debian is every unit: the stack would start before its first-boot install, and
/// units the builder never enabled would start too. This preset enables nothing.
const PRESET: &str =
    "# Written by `modobox image prepare`, removed by the first boot once it succeeded:\n\
# the unit states stay as the image was sealed (modobox-firstboot.service enables the stack).\n\
disable *\n";

/// ssh starts after the first boot, and not at all when it failed (no host keys yet).
const SSH_DROPIN: &str =
    "# Written by `modobox image prepare`: the SSH host keys are made at the first boot.\n\
[Unit]\n\
After=modobox-firstboot.service\n\
Requires=modobox-firstboot.service\n";

/// The unit (systemd/modobox-firstboot.service) with this configuration's paths.
pub fn firstboot_unit(config: &Config) -> Result<String, ImageError> {
    let mut ctx = tera::Context::new();
    ctx.insert("binary", crate::render::context::BINARY_PATH);
    ctx.insert("marker", &pending_marker(config).display().to_string());
    Ok(crate::render::Renderer::new(None)?
        .render_template("systemd/modobox-firstboot.service", &ctx)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::Hostname;

    fn put(root: &Root, abs: &str, text: &str) {
        let p = root.path(Path::new(abs));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn exists(root: &Root, abs: &str) -> bool {
        std::fs::symlink_metadata(root.path(Path::new(abs))).is_ok()
    }

    /// A root holding what an installed machine holds; the sweep removes every per-machine
    /// item, keeps the rest, and finds nothing on a second run.
    #[test]
    fn the_sweep_removes_every_instance_item_and_only_those() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let distro = Distro::load(&"debian:12".parse().unwrap()).unwrap();
        let config = Config::new(Hostname::parse("hostname", "mail.builder.test").unwrap());
        let secrets = Secrets::load_or_create(&root.path(config.paths.secrets.as_path())).unwrap();
        let pw = secrets.postfix_db_password.expose().to_string();
        // Rendered files: one with a password, one without; the manifest and merge bases.
        put(
            &root,
            "/etc/postfix/sql-domains.cf",
            &format!("user = modobox_postfix\npassword = {pw}\n"),
        );
        put(
            &root,
            "/etc/postfix/main.cf",
            "myhostname = mail.builder.test\n",
        );
        put(
            &root,
            "/var/lib/modobox/rendered-base/etc/postfix/sql-domains.cf",
            &format!("password = {pw}\n"),
        );
        put(
            &root,
            "/var/lib/modobox/rendered-base/etc/postfix/main.cf",
            "myhostname = x\n",
        );
        let mut manifest = crate::render::manifest::Manifest::default();
        manifest
            .files
            .insert("/etc/postfix/sql-domains.cf".into(), "aa".into());
        manifest
            .files
            .insert("/etc/postfix/main.cf".into(), "bb".into());
        manifest
            .save(&root.path(Path::new("/var/lib/modobox/rendered-files.json")))
            .unwrap();
        let (cert, key) = tls_paths(&config, &distro);
        put(&root, &cert.to_string(), "CERT");
        put(&root, &key.to_string(), "KEY");
        for f in [
            "/var/lib/dkim/builder.test.pem",
            "/etc/ssh/ssh_host_ed25519_key",
            "/etc/ssh/ssh_host_ed25519_key.pub",
            SNAKEOIL_KEY,
            "/var/lib/systemd/random-seed",
            "/var/log/journal/0123/system.journal",
            "/var/spool/postfix/deferred/A/ABC123",
            "/var/lib/postfix/smtpd_scache.db",
            "/var/log/mail.log",
            "/var/lib/dhcp/dhclient.eth0.leases",
            "/var/lib/cloud/instances/i-1/user-data.txt",
            "/root/.bash_history",
            "/var/lib/apt/lists/deb.debian.org_Packages",
            "/var/lib/modobox/rrd/builder.test.rrd",
            "/var/lib/modobox/parser-state.json",
            "/var/lib/modobox/tls/account.json",
            "/srv/vmail/builder.test/alice/Maildir/cur/1:2,S",
        ] {
            put(&root, f, "x");
        }
        put(
            &root,
            "/etc/machine-id",
            "0123456789abcdef0123456789abcdef\n",
        );
        put(&root, "/etc/hostname", "mail.builder.test\n");
        put(
            &root,
            "/etc/hosts",
            "127.0.0.1 localhost\n127.0.1.1\tmail.builder.test mail\n",
        );
        // Kept: configuration, the seed a builder put in, the SSH server's settings.
        for f in [
            "/etc/ssh/sshd_config",
            "/var/lib/cloud/seed/nocloud/user-data",
            "/var/spool/postfix/pid/master.pid",
            "/var/lib/apt/lists/lock",
        ] {
            put(&root, f, "keep");
        }

        let removed =
            remove_instance_files(&root, &config, &distro, Some(&secrets), false).unwrap();
        let text = removed.join("\n");
        for gone in [
            "/etc/postfix/sql-domains.cf",
            "/var/lib/modobox/rendered-base/etc/postfix/sql-domains.cf",
            "/etc/modobox/secrets.toml",
            "/var/lib/dkim/builder.test.pem",
            "/var/lib/modobox/tls/account.json",
            "/etc/ssh/ssh_host_ed25519_key",
            "/etc/ssh/ssh_host_ed25519_key.pub",
            SNAKEOIL_KEY,
            "/var/lib/systemd/random-seed",
            "/var/log/journal/0123",
            "/var/spool/postfix/deferred/A",
            "/var/lib/postfix/smtpd_scache.db",
            "/var/log/mail.log",
            "/var/lib/dhcp/dhclient.eth0.leases",
            "/var/lib/cloud/instances",
            "/root/.bash_history",
            "/var/lib/apt/lists/deb.debian.org_Packages",
            "/var/lib/modobox/rrd",
            "/var/lib/modobox/parser-state.json",
        ] {
            assert!(
                !exists(&root, gone),
                "{gone} is still there; removed:\n{text}"
            );
        }
        assert!(!exists(&root, &key.to_string()) && !exists(&root, &cert.to_string()));
        for kept in [
            "/etc/postfix/main.cf",
            "/var/lib/modobox/rendered-base/etc/postfix/main.cf",
            "/var/lib/modobox/rendered-files.json",
            "/etc/ssh/sshd_config",
            "/var/lib/cloud/seed/nocloud/user-data",
            "/var/spool/postfix/pid/master.pid",
            "/var/lib/apt/lists/lock",
            // Without --force the mail store is not touched (prepare refused before).
            "/srv/vmail/builder.test/alice/Maildir/cur/1:2,S",
        ] {
            assert!(exists(&root, kept), "{kept} was removed; removed:\n{text}");
        }
        let read = |p: &str| std::fs::read_to_string(root.path(Path::new(p))).unwrap();
        assert_eq!(read("/etc/machine-id"), "uninitialized\n");
        assert_eq!(read("/etc/hostname"), "localhost\n");
        assert_eq!(read("/etc/hosts"), "127.0.0.1 localhost\n");
        for label in [
            "SSH host keys",
            "DKIM private keys",
            "rendered files holding",
            "machine-id",
            "journal",
            "mail queue",
        ] {
            assert!(text.contains(label), "{label} not listed:\n{text}");
        }

        // Sealed: a second sweep finds nothing; --force then takes the mail store.
        let again = remove_instance_files(&root, &config, &distro, None, false).unwrap();
        assert!(again.is_empty(), "{again:?}");
        let forced = remove_instance_files(&root, &config, &distro, None, true).unwrap();
        assert_eq!(forced, vec!["mail store: 1 in /srv/vmail".to_string()]);
    }

    #[test]
    fn messages_are_counted_in_every_folder_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        for f in [
            "/m/a.test/alice/Maildir/cur/1",
            "/m/a.test/alice/Maildir/new/2",
            "/m/a.test/alice/Maildir/.Sent/cur/3",
            "/m/a.test/alice/Maildir/tmp/4",
            "/m/a.test/alice/Maildir/dovecot.index",
        ] {
            put(&root, f, "x");
        }
        assert_eq!(count_messages(&root.path(Path::new("/m"))), 3);
        assert_eq!(count_messages(&root.path(Path::new("/nowhere"))), 0);
    }
}
