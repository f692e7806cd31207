//! One database role per daemon. On a database server modobox installs (PostgreSQL, MariaDB),
//! Postfix, Dovecot, OpenDKIM, Amavis and modobox's milter each log in as their own role holding only the grants
//! their queries need; modobox itself (CLI, supervisor, web) keeps the owner role. The grants
//! are data here; the SQL that creates the roles and the query that reads them back come from
//! it, so the installer's check compares exactly what it applies.
//!
//! SQLite has no roles: every daemon that opens the file can read all of it (see the README).
//! An external database is the DBA's: the daemons use the owner role there.

use std::collections::BTreeSet;

use crate::config::{Config, DbLocation, Engine};
use crate::secrets::{Secret, Secrets};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Daemon {
    Postfix,
    Dovecot,
    Opendkim,
    Amavis,
    /// modobox's From: header milter (`crate::milter`).
    Milter,
}

impl Daemon {
    pub const ALL: [Daemon; 5] = [
        Daemon::Postfix,
        Daemon::Dovecot,
        Daemon::Opendkim,
        Daemon::Amavis,
        Daemon::Milter,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Daemon::Postfix => "postfix",
            Daemon::Dovecot => "dovecot",
            Daemon::Opendkim => "opendkim",
            Daemon::Amavis => "amavis",
            Daemon::Milter => "milter",
        }
    }

    fn password(self, secrets: &Secrets) -> &Secret {
        match self {
            Daemon::Postfix => &secrets.postfix_db_password,
            Daemon::Dovecot => &secrets.dovecot_db_password,
            Daemon::Opendkim => &secrets.opendkim_db_password,
            Daemon::Amavis => &secrets.amavis_db_password,
            Daemon::Milter => &secrets.milter_db_password,
        }
    }

    /// What the daemon may do: (table, privileges, columns; no columns = the whole table).
    /// Each line follows from the queries in templates/ (postfix/sql-*.cf, dovecot's SQL,
    /// opendkim.conf's DSNs, amavis' settings and its SQL quarantine).
    pub fn grants(self) -> &'static [Grant] {
        const READ: &[&str] = &["SELECT"];
        const WRITE: &[&str] = &["SELECT", "INSERT", "UPDATE", "DELETE"];
        match self {
            // Postfix reads the maps; of core_user only what the sender-login map needs
            // (never the password hashes).
            Daemon::Postfix => {
                const G: &[Grant] = &[
                    Grant::columns("core_user", READ, &["id", "email", "is_active"]),
                    Grant::table("admin_domain", READ),
                    Grant::table("admin_domainalias", READ),
                    Grant::table("admin_mailbox", READ),
                    Grant::table("admin_mailboxoperation", READ),
                    Grant::table("admin_senderaddress", READ),
                    Grant::table("admin_alias", READ),
                    Grant::table("modoboa_admin_aliasrecipient", READ),
                    Grant::table("relaydomains_recipientaccess", READ),
                    Grant::table("transport_transport", READ),
                    Grant::table("modobox_send_only", READ),
                ];
                G
            }
            // Dovecot authenticates (password hashes), finds homes and quotas, records the
            // last login (post-login hook) and keeps quota usage.
            Daemon::Dovecot => {
                const G: &[Grant] = &[
                    Grant::columns(
                        "core_user",
                        READ,
                        &["id", "username", "email", "password", "is_active"],
                    ),
                    Grant::columns("core_user", &["UPDATE"], &["last_login"]),
                    Grant::table("admin_mailbox", READ),
                    Grant::table("admin_domain", READ),
                    Grant::table("admin_quota", WRITE),
                    Grant::table("modobox_send_only", READ),
                ];
                G
            }
            // OpenDKIM reads the key paths through the dkim view, nothing else.
            Daemon::Opendkim => {
                const G: &[Grant] = &[Grant::table("dkim", READ)];
                G
            }
            // Amavis looks up local domains and keeps its quarantine and message log.
            Daemon::Amavis => {
                const G: &[Grant] = &[
                    Grant::columns("admin_domain", READ, &["id", "name", "enabled"]),
                    Grant::table("maddr", WRITE),
                    Grant::table("msgs", WRITE),
                    Grant::table("msgrcpt", WRITE),
                    Grant::table("quarantine", WRITE),
                    Grant::sequence("maddr_id_seq"),
                ];
                G
            }
            // The milter asks who may send as an address (store::accounts::senders).
            Daemon::Milter => {
                const G: &[Grant] = &[
                    Grant::columns("core_user", READ, &["id", "email", "is_active"]),
                    Grant::table("admin_mailbox", READ),
                    Grant::table("admin_senderaddress", READ),
                    Grant::table("admin_alias", READ),
                    Grant::table("modoboa_admin_aliasrecipient", READ),
                    Grant::table("admin_domainalias", READ),
                    // The sending limits (message_limit, where Modoboa 2.x has it) and their
                    // counters, for the policy service the same process serves.
                    Grant::table("admin_domain", READ),
                    Grant::table("modobox_sending_count", WRITE),
                ];
                G
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Grant {
    pub object: &'static str,
    pub privileges: &'static [&'static str],
    pub columns: &'static [&'static str],
    /// A PostgreSQL sequence (MariaDB's AUTO_INCREMENT needs no grant).
    pub sequence: bool,
}

impl Grant {
    const fn table(object: &'static str, privileges: &'static [&'static str]) -> Grant {
        Grant {
            object,
            privileges,
            columns: &[],
            sequence: false,
        }
    }
    const fn columns(
        object: &'static str,
        privileges: &'static [&'static str],
        columns: &'static [&'static str],
    ) -> Grant {
        Grant {
            object,
            privileges,
            columns,
            sequence: false,
        }
    }
    const fn sequence(object: &'static str) -> Grant {
        Grant {
            object,
            privileges: &["USAGE"],
            columns: &[],
            sequence: true,
        }
    }
}

/// Whether the daemons get their own roles with this configuration: only on a server modobox
/// installs (it needs the server's administrator to create roles).
pub fn per_daemon(config: &Config) -> bool {
    config.database.engine != Engine::Sqlite && config.database.location == DbLocation::Local
}

/// The role a daemon's own role is called: `<database>_<daemon>` (`modobox_postfix`), so two
/// modobox databases on one server never share a role.
pub fn role_name(config: &Config, daemon: Daemon) -> String {
    format!("{}_{}", config.database.name, daemon.as_str())
}

/// The user and password a daemon logs in with.
pub fn login<'a>(config: &'a Config, secrets: &'a Secrets, daemon: Daemon) -> (String, &'a str) {
    if per_daemon(config) {
        (role_name(config, daemon), daemon.password(secrets).expose())
    } else {
        (
            config.database.user.to_string(),
            secrets.database_password.expose(),
        )
    }
}

/// MariaDB accounts are per client host: Postfix, Dovecot and Amavis connect over TCP to
/// 127.0.0.1 (or ::1), command-line clients through the socket (localhost).
const MYSQL_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The administrator's SQL that removes modobox's database and every role the installer
/// created for it (`image prepare`: a clone gets its own at its first boot). Safe to run twice.
pub fn drop_database_sql(config: &Config) -> String {
    let db = &config.database.name;
    let mut users = vec![config.database.user.to_string()];
    users.extend(Daemon::ALL.iter().map(|d| role_name(config, *d)));
    match config.database.engine {
        Engine::Mysql => {
            let mut sql = format!("DROP DATABASE IF EXISTS `{db}`;\n");
            for user in &users {
                for host in MYSQL_HOSTS {
                    sql.push_str(&format!("DROP USER IF EXISTS '{user}'@'{host}';\n"));
                }
            }
            sql
        }
        _ => {
            let mut sql = format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE);\n");
            for user in &users {
                sql.push_str(&format!("DROP ROLE IF EXISTS \"{user}\";\n"));
            }
            sql
        }
    }
}

/// A SQL string literal, for the statements that cannot take parameters (role passwords in
/// CREATE/ALTER ROLE, the administrator's scripts).
pub fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''").replace('\\', "\\\\"))
}

/// The statements that create (or update) every daemon's role and set its grants to exactly
/// `grants()`, run by the server's administrator connected to the database. Idempotent: each
/// run revokes everything first, so a grant removed here is removed from the server too.
pub fn apply_statements(config: &Config, secrets: &Secrets) -> Vec<String> {
    let db = config.database.name.as_str();
    let mut out = Vec::new();
    for daemon in Daemon::ALL {
        let role = role_name(config, daemon);
        let pw = sql_literal(daemon.password(secrets).expose());
        match config.database.engine {
            Engine::Postgres => {
                out.push(format!(
                    "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') \
                     THEN CREATE ROLE \"{role}\" LOGIN; END IF; END $$"
                ));
                out.push(format!(
                    "ALTER ROLE \"{role}\" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE \
                     NOREPLICATION NOINHERIT PASSWORD {pw}"
                ));
                out.push(format!(
                    "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM \"{role}\""
                ));
                out.push(format!(
                    "REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM \"{role}\""
                ));
                for g in daemon.grants() {
                    let kind = if g.sequence { "SEQUENCE" } else { "TABLE" };
                    out.push(format!(
                        "GRANT {} ON {kind} {} TO \"{role}\"",
                        privileges(g),
                        g.object
                    ));
                }
            }
            Engine::Mysql => {
                for host in MYSQL_HOSTS {
                    let account = format!("'{role}'@'{host}'");
                    out.push(format!(
                        "CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {pw}"
                    ));
                    out.push(format!("ALTER USER {account} IDENTIFIED BY {pw}"));
                    out.push(format!(
                        "REVOKE ALL PRIVILEGES, GRANT OPTION FROM {account}"
                    ));
                    for g in daemon.grants().iter().filter(|g| !g.sequence) {
                        out.push(format!(
                            "GRANT {} ON `{db}`.`{}` TO {account}",
                            privileges(g),
                            g.object
                        ));
                    }
                }
            }
            Engine::Sqlite => {}
        }
    }
    out
}

/// PostgreSQL only: the daemons' grants as statements the tables' owner may run itself (no
/// role is created), each one skipped when its table or column does not exist. A restored
/// database runs them in its own transaction, so the daemons never lose their rights; the
/// installer's step then checks the whole set.
pub fn owner_grant_statements(config: &Config) -> Vec<String> {
    if config.database.engine != Engine::Postgres || !per_daemon(config) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for daemon in Daemon::ALL {
        let role = role_name(config, daemon);
        for g in daemon.grants() {
            let kind = if g.sequence { "SEQUENCE" } else { "TABLE" };
            let grant = format!(
                "GRANT {} ON {kind} {} TO \"{role}\"",
                privileges(g),
                g.object
            );
            out.push(format!(
                "DO $$ BEGIN EXECUTE {}; EXCEPTION WHEN undefined_table OR undefined_column \
                 OR undefined_object THEN NULL; END $$",
                sql_literal(&grant)
            ));
        }
    }
    out
}

/// `SELECT, INSERT` or `SELECT (id, email)`.
fn privileges(g: &Grant) -> String {
    g.privileges
        .iter()
        .map(|p| {
            if g.columns.is_empty() {
                p.to_string()
            } else {
                format!("{p} ({})", g.columns.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One granted privilege: (role, object, privilege, column or "").
pub type GrantRow = (String, String, String, String);

/// What `apply_statements` grants, in the rows `actual_grants_query` returns.
pub fn expected_grants(config: &Config) -> BTreeSet<GrantRow> {
    let mut out = BTreeSet::new();
    let engine = config.database.engine;
    for daemon in Daemon::ALL {
        let role = role_name(config, daemon);
        let accounts: Vec<String> = match engine {
            Engine::Mysql => MYSQL_HOSTS.iter().map(|h| format!("{role}@{h}")).collect(),
            _ => vec![role.clone()],
        };
        for account in accounts {
            for g in daemon.grants() {
                if g.sequence && engine != Engine::Postgres {
                    continue;
                }
                for p in g.privileges {
                    let columns: Vec<&str> = if g.columns.is_empty() {
                        vec![""]
                    } else {
                        g.columns.to_vec()
                    };
                    for c in columns {
                        out.insert((
                            account.clone(),
                            g.object.to_string(),
                            p.to_string(),
                            c.to_string(),
                        ));
                    }
                }
            }
        }
    }
    out
}

/// A query (for the server's administrator) listing every privilege the daemon roles hold in
/// the database as rows (grantee, object, privilege, col), MariaDB's privilege sets comma-joined
/// in the third field (`parse_grant_rows` splits them).
pub fn actual_grants_query(config: &Config) -> String {
    let roles: Vec<String> = Daemon::ALL
        .iter()
        .map(|d| sql_literal(&role_name(config, *d)))
        .collect();
    let roles = roles.join(", ");
    let db = sql_literal(config.database.name.as_str());
    match config.database.engine {
        Engine::Postgres => format!(
            "SELECT r.rolname::text AS grantee, c.relname::text AS object, \
             a.privilege_type::text AS privilege, '' AS col \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public' \
             CROSS JOIN LATERAL aclexplode(c.relacl) a JOIN pg_roles r ON r.oid = a.grantee \
             WHERE r.rolname IN ({roles}) \
             UNION ALL \
             SELECT r.rolname::text, c.relname::text, a.privilege_type::text, att.attname::text \
             FROM pg_attribute att JOIN pg_class c ON c.oid = att.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public' \
             CROSS JOIN LATERAL aclexplode(att.attacl) a JOIN pg_roles r ON r.oid = a.grantee \
             WHERE r.rolname IN ({roles})"
        ),
        // mysql.* columns are binary-collated: cast, so every client reads text.
        Engine::Mysql => format!(
            "SELECT CAST(CONCAT(User, '@', Host) AS CHAR) AS grantee, \
             CAST(Table_name AS CHAR) AS object, CAST(Table_priv AS CHAR) AS privilege, \
             '' AS col \
             FROM mysql.tables_priv WHERE Db = {db} AND User IN ({roles}) AND Table_priv <> '' \
             UNION ALL \
             SELECT CAST(CONCAT(User, '@', Host) AS CHAR), CAST(Table_name AS CHAR), \
             CAST(Column_priv AS CHAR), CAST(Column_name AS CHAR) \
             FROM mysql.columns_priv WHERE Db = {db} AND User IN ({roles}) \
             UNION ALL \
             SELECT CAST(CONCAT(User, '@', Host) AS CHAR), '*', 'GLOBAL', '' FROM mysql.user \
             WHERE User IN ({roles}) AND (Select_priv = 'Y' OR Insert_priv = 'Y' \
             OR Update_priv = 'Y' OR Delete_priv = 'Y' OR Super_priv = 'Y')"
        ),
        Engine::Sqlite => String::new(),
    }
}

/// Rows of `actual_grants_query` (4 fields each) as a set comparable with `expected_grants`.
pub fn parse_grant_rows(rows: impl IntoIterator<Item = [String; 4]>) -> BTreeSet<GrantRow> {
    let mut out = BTreeSet::new();
    for [role, object, privileges, column] in rows {
        for p in privileges
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            out.insert((
                role.clone(),
                object.clone(),
                p.to_ascii_uppercase(),
                column.clone(),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(engine: &str) -> Config {
        Config::from_toml(
            &format!("hostname = \"mail.example.test\"\n[database]\nengine = \"{engine}\"\n"),
            "test",
        )
        .unwrap()
    }

    #[test]
    fn postfix_never_reads_password_hashes() {
        let expected = expected_grants(&config("postgres"));
        assert!(expected.contains(&(
            "modobox_postfix".into(),
            "core_user".into(),
            "SELECT".into(),
            "email".into()
        )));
        assert!(!expected
            .iter()
            .any(|(r, t, _, c)| r == "modobox_postfix" && t == "core_user" && c == "password"));
        assert!(!expected
            .iter()
            .any(|(r, _, p, _)| r == "modobox_opendkim" && p != "SELECT"));
    }

    #[test]
    fn mysql_rows_split_into_single_privileges() {
        let rows = parse_grant_rows([[
            "modobox_amavis@localhost".to_string(),
            "msgs".into(),
            "Select,Insert,Update,Delete".into(),
            String::new(),
        ]]);
        assert_eq!(rows.len(), 4);
        assert!(rows.iter().all(|(_, t, _, _)| t == "msgs"));
    }

    #[test]
    fn sqlite_and_external_use_the_owner_role() {
        let secrets = Secrets::load_or_generate(std::path::Path::new("/nonexistent/x")).unwrap();
        let c = config("sqlite");
        assert_eq!(login(&c, &secrets, Daemon::Postfix).0, "modobox");
        let c = config("postgres");
        assert_eq!(login(&c, &secrets, Daemon::Postfix).0, "modobox_postfix");
        assert_eq!(
            login(&c, &secrets, Daemon::Postfix).1,
            secrets.postfix_db_password.expose()
        );
    }
}
