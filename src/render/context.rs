//! The values templates see. Everything here is already validated (names, paths, facts), so a
//! template can print any of it verbatim; the SQL dialect differences are precomputed too.

use serde::Serialize;

use crate::config::{Config, DbLocation, Engine, TlsMode};
use crate::distro::Distro;
use crate::names::SafePath;
use crate::secrets::Secrets;
use crate::store::roles::{self, Daemon};

/// Where the binary is installed; the unit file and Dovecot hooks call it there.
pub const BINARY_PATH: &str = "/usr/local/bin/modobox";

#[derive(Debug, Serialize)]
struct Db<'a> {
    engine: &'static str,
    location: &'static str,
    host: &'a str,
    port: u16,
    name: &'a str,
    user: &'a str,
    password: &'a str,
    sqlite_path: &'a str,
    /// Its directory (SQLite writes its journal there).
    sqlite_dir: String,
    /// How each daemon logs in (`db.roles.postfix.user`...): its own role, or the owner role
    /// where there are none (SQLite, external servers); see `store::roles`.
    roles: std::collections::BTreeMap<&'static str, Login<'a>>,
    /// Driver names of each consumer: Postfix map types, Dovecot SQL drivers, OpenDBX backends.
    postfix_driver: &'static str,
    dovecot_driver: &'static str,
    opendbx_driver: &'static str,
    /// SQL spellings that differ between engines.
    sql_true: &'static str,
    sql_now: &'static str,
    /// Postfix's sender-login map: the rule the From: header milter applies too.
    sender_login_query: String,
    /// Perl DBI data source for Amavis.
    amavis_dsn: String,
}

#[derive(Debug, Serialize)]
struct Login<'a> {
    user: String,
    password: &'a str,
}

#[derive(Debug, Serialize)]
struct Tls<'a> {
    mode: &'static str,
    cert: String,
    key: String,
    acme_webroot: &'a str,
    /// `acme`: the directories the renewal (in modobox.service) writes the pair into.
    renew_dirs: Vec<String>,
}

/// Paths of the certificate and key the stack uses, whatever the TLS mode.
pub fn tls_paths(config: &Config, distro: &Distro) -> (SafePath, SafePath) {
    let p = &distro.facts.paths;
    // ACME renews from modobox.service, which may not write /etc (ProtectSystem=full).
    let (cert_dir, key_dir) = if config.tls.mode == TlsMode::Acme {
        let dir = acme_dir(config);
        (dir.clone(), dir)
    } else {
        (p.ssl_certs.clone(), p.ssl_private.clone())
    };
    let cert = config.tls.cert.clone().unwrap_or_else(|| {
        cert_dir
            .join(&format!("modobox-{}.crt", config.hostname))
            .unwrap_or_else(|_| cert_dir.clone())
    });
    let key = config.tls.key.clone().unwrap_or_else(|| {
        key_dir
            .join(&format!("modobox-{}.key", config.hostname))
            .unwrap_or_else(|_| key_dir.clone())
    });
    (cert, key)
}

/// `<paths.data>/tls`: the ACME account, the renewal state and (by default) the certificate.
pub fn acme_dir(config: &Config) -> SafePath {
    config
        .paths
        .data
        .join("tls")
        .unwrap_or_else(|_| config.paths.data.clone())
}

/// The SQL driver name of `engine` in Postfix's maps (Dovecot names its drivers alike).
pub fn sql_driver(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => "pgsql",
        Engine::Mysql => "mysql",
        Engine::Sqlite => "sqlite",
    }
}

pub fn build(config: &Config, distro: &Distro, secrets: &Secrets) -> tera::Context {
    let engine = config.database.engine;
    let sql_driver = sql_driver(engine);
    let db = Db {
        engine: engine.as_str(),
        location: match config.database.location {
            DbLocation::Local => "local",
            DbLocation::External => "external",
        },
        host: config.database.host.as_str(),
        port: config.database.port(),
        name: config.database.name.as_str(),
        user: config.database.user.as_str(),
        password: secrets.database_password.expose(),
        sqlite_path: config.database.sqlite_path.as_str(),
        sqlite_dir: config
            .database
            .sqlite_path
            .as_path()
            .parent()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        roles: Daemon::ALL
            .iter()
            .map(|d| {
                let (user, password) = roles::login(config, secrets, *d);
                (d.as_str(), Login { user, password })
            })
            .collect(),
        postfix_driver: sql_driver,
        dovecot_driver: sql_driver,
        opendbx_driver: match engine {
            Engine::Postgres => "pgsql",
            Engine::Mysql => "mysql",
            Engine::Sqlite => "sqlite3",
        },
        sql_true: match engine {
            Engine::Postgres => "true",
            Engine::Mysql | Engine::Sqlite => "1",
        },
        sender_login_query: crate::store::accounts::senders::postfix_query(match engine {
            Engine::Postgres => crate::store::Backend::Postgres,
            Engine::Mysql => crate::store::Backend::Mysql,
            Engine::Sqlite => crate::store::Backend::Sqlite,
        }),
        sql_now: match engine {
            Engine::Postgres => "now()",
            Engine::Mysql => "NOW()",
            Engine::Sqlite => "datetime('now')",
        },
        amavis_dsn: match engine {
            Engine::Postgres => format!(
                "DBI:Pg:database={};host={};port={}",
                config.database.name,
                config.database.host,
                config.database.port()
            ),
            Engine::Mysql => format!(
                "DBI:mysql:database={};host={};port={}",
                config.database.name,
                config.database.host,
                config.database.port()
            ),
            Engine::Sqlite => format!("DBI:SQLite:dbname={}", config.database.sqlite_path),
        },
    };
    let (cert, key) = tls_paths(config, distro);
    let tls = Tls {
        mode: match config.tls.mode {
            TlsMode::SelfSigned => "self-signed",
            TlsMode::Manual => "manual",
            TlsMode::Acme => "acme",
        },
        renew_dirs: if config.tls.mode == TlsMode::Acme {
            let mut dirs: Vec<String> = [&cert, &key]
                .iter()
                .filter_map(|p| p.as_path().parent())
                .map(|d| d.display().to_string())
                .collect();
            dirs.sort();
            dirs.dedup();
            dirs
        } else {
            Vec::new()
        },
        cert: cert.to_string(),
        key: key.to_string(),
        acme_webroot: config.tls.acme_webroot.as_str(),
    };
    let mut ctx = tera::Context::new();
    ctx.insert("hostname", config.hostname.as_str());
    let domain = config
        .primary_domain()
        .map(|d| d.to_string())
        .unwrap_or_default();
    ctx.insert("primary_domain", &domain);
    ctx.insert(
        "admin_address",
        &config
            .admin_address()
            .map(|a| a.to_string())
            .unwrap_or_default(),
    );
    ctx.insert("db", &db);
    ctx.insert("components", &config.components);
    ctx.insert("paths", &config.paths);
    ctx.insert("mail", &config.mail);
    ctx.insert(
        "message_size_limit",
        &(u64::from(config.mail.message_size_limit_mb) * 1024 * 1024),
    );
    ctx.insert("tls", &tls);
    ctx.insert("web_listen", &config.web.listen.to_string());
    ctx.insert(
        "web_max_body_kb",
        &(crate::config::WEB_MAX_BODY_BYTES / 1024),
    );
    ctx.insert(
        "distro",
        &serde_json::json!({
            "id": distro.id.id,
            "version": distro.id.version,
            "family": distro.facts.family,
            "packages": distro.facts.packages,
            "services": distro.facts.services,
            "users": distro.facts.users,
            "paths": distro.facts.paths,
            "postfix": distro.facts.postfix,
            "dovecot": distro.facts.dovecot,
            "amavis": distro.facts.amavis,
            "nginx": distro.facts.nginx,
            "security": distro.facts.security,
        }),
    );
    ctx.insert("binary", BINARY_PATH);
    ctx.insert("milter_port", &crate::milter::PORT);
    ctx.insert("policy_port", &crate::policy::PORT);
    ctx.insert("inbound_milter_port", &crate::milter::inbound::PORT);
    ctx.insert("antispam", &config.antispam);
    ctx.insert(
        "postscreen_spf_allowlist",
        &config.postscreen_allowlist_path().display().to_string(),
    );
    // Postfix 3.6 renamed postscreen's blacklist/whitelist settings; older ones know only those.
    ctx.insert(
        "postfix_old_names",
        &version_below(&distro.facts.postfix.version, (3, 6)),
    );
    // No version in the rendered files: an upgrade whose templates did not change a file
    // leaves it (and its daemon) alone, and an edit by hand on a header line merges.
    ctx
}

/// A "major.minor" version below `than` (an unreadable one counts as current).
fn version_below(version: &str, than: (u32, u32)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) < than,
        _ => false,
    }
}
