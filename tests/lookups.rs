//! What Postfix, Dovecot and OpenDKIM look up in a live database (docs/MODOBOA-COMPAT.md §3),
//! asked of the daemons themselves. For each engine: a fresh database populated with the real
//! binary (`modobox domain add`, `mailbox add`, ...), the stack rendered for Debian 12, then
//! tests/validate/live-lookups runs `postmap -q` through every `sql-*.cf` map, `doveadm auth
//! test` / `doveadm user` against a Dovecot started from the rendered configuration, a message
//! saved through the quota dict and the post-login script; every answer is compared with what §3
//! says, negative cases included. On PostgreSQL and MariaDB, OpenDKIM's own check (`opendkim
//! -n`) also reads the `dkim` view through the rendered DSNs (run-validators with
//! MODOBOX_VALIDATE_DB=1).
//!
//! Needs root and the daemons (tests/setup-host); MODOBOX_REQUIRE_VALIDATORS=1 makes their
//! absence a failure. The server databases come from tests/db-servers
//! (MODOBOX_TEST_POSTGRES_URL, MODOBOX_TEST_MYSQL_URL): without them the test is skipped, unless
//! CI=true, where it fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

const BIN: &str = env!("CARGO_BIN_EXE_modobox");
const HOSTNAME: &str = "mail.example.test";

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/validate")
        .join(name)
}

fn flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

fn tool(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Root and the daemons' tools; a skip, or a failure when MODOBOX_REQUIRE_VALIDATORS=1.
fn daemons_available() -> bool {
    let tools = [
        "postmap", "postconf", "dovecot", "doveadm", "doveconf", "opendkim", "unshare", "setpriv",
        "setfacl", "openssl", "psql", "sqlite3",
    ];
    let missing: Vec<_> = tools.iter().filter(|t| !tool(t)).collect();
    let root = uzers::get_effective_uid() == 0;
    if missing.is_empty() && root {
        return true;
    }
    assert!(
        !flag("MODOBOX_REQUIRE_VALIDATORS"),
        "live lookups required but not possible (root: {root}, missing: {missing:?}); run tests/setup-host as root"
    );
    eprintln!("skipping: needs root and the daemons (root: {root}, missing: {missing:?})");
    false
}

/// The admin URL of a test server; a skip when unset, a failure when CI=true.
fn server_url(var: &str) -> Option<url::Url> {
    match std::env::var(var) {
        Ok(u) if !u.is_empty() => Some(url::Url::parse(&u).expect("a valid URL")),
        _ => {
            assert!(
                !flag("CI"),
                "{var} is unset while CI=true: start tests/db-servers and eval its env"
            );
            eprintln!("skipping: {var} is unset (tests/db-servers start; eval \"$(tests/db-servers env)\")");
            None
        }
    }
}

fn run(cmd: &mut Command, stdin: Option<&str>) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn check(cmd: &mut Command, stdin: Option<&str>) -> String {
    let out = run(cmd, stdin);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Postgres,
    Mysql,
    Sqlite,
}

/// A database on a test server, dropped at the end whatever happens.
#[derive(Debug)]
struct ServerDb {
    engine: Engine,
    admin: url::Url,
    name: String,
}

impl ServerDb {
    fn create(engine: Engine, admin: url::Url) -> ServerDb {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("modobox_lookups_{}_{nanos}", std::process::id());
        let db = ServerDb {
            engine,
            admin,
            name,
        };
        db.admin_sql(&format!("CREATE DATABASE {}", db.name));
        db
    }

    /// A client running one statement on `database`; rows come out as `a|b` lines.
    fn sql_command(&self, database: &str, sql: &str) -> Command {
        let a = &self.admin;
        match self.engine {
            Engine::Postgres => {
                let mut u = a.clone();
                u.set_path(&format!("/{database}"));
                let mut c = Command::new("psql");
                c.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
                    .arg(u.as_str())
                    .arg("-c")
                    .arg(sql);
                c
            }
            Engine::Mysql => {
                let mut c = Command::new(if tool("mariadb") { "mariadb" } else { "mysql" });
                c.args(["--no-defaults", "--protocol=TCP", "-N", "-B"])
                    .arg(format!("--host={}", a.host_str().unwrap()))
                    .arg(format!("--port={}", a.port().unwrap_or(3306)))
                    .arg(format!("--user={}", a.username()))
                    .arg(format!("--password={}", a.password().unwrap_or("")))
                    .arg("-e")
                    .arg(sql)
                    .arg(database);
                c
            }
            Engine::Sqlite => unreachable!("no server for SQLite"),
        }
    }

    fn sql(&self, database: &str, sql: &str) -> String {
        check(&mut self.sql_command(database, sql), None).replace('\t', "|")
    }

    fn admin_sql(&self, sql: &str) -> String {
        self.sql(self.admin.path().trim_start_matches('/'), sql)
    }
}

impl Drop for ServerDb {
    fn drop(&mut self) {
        let sql = match self.engine {
            Engine::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            _ => format!("DROP DATABASE IF EXISTS {}", self.name),
        };
        let _ = run(
            &mut self.sql_command(self.admin.path().trim_start_matches('/'), &sql),
            None,
        );
        // The daemons' roles are server-wide; their grants went with the database.
        for daemon in ["postfix", "dovecot", "opendkim", "amavis", "milter"] {
            let role = format!("{}_{daemon}", self.name);
            let sql = match self.engine {
                Engine::Postgres => format!("DROP ROLE IF EXISTS \"{role}\""),
                _ => ["localhost", "127.0.0.1", "::1"]
                    .map(|h| format!("DROP USER IF EXISTS '{role}'@'{h}'"))
                    .join("; "),
            };
            let _ = run(
                &mut self.sql_command(self.admin.path().trim_start_matches('/'), &sql),
                None,
            );
        }
    }
}

/// A configured modobox: configuration, secrets, database, render root.
#[derive(Debug)]
struct Site {
    engine: Engine,
    dir: tempfile::TempDir,
    config: PathBuf,
    server: Option<ServerDb>,
    sqlite: PathBuf,
}

impl Site {
    fn new(engine: Engine, server: Option<ServerDb>) -> Site {
        let dir = tempfile::Builder::new()
            .prefix("modobox-lookups-")
            .tempdir()
            .unwrap();
        // The daemons traverse it to reach the SQLite database.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o711),
        )
        .unwrap();
        let d = dir.path().to_str().unwrap().to_string();
        let sqlite = dir.path().join("db/modobox.db");
        std::fs::create_dir(dir.path().join("db")).unwrap();
        let (engine_name, conn, password) = match (&server, engine) {
            (Some(s), Engine::Postgres | Engine::Mysql) => (
                if engine == Engine::Postgres {
                    "postgres"
                } else {
                    "mysql"
                },
                format!(
                    "host = \"{}\"\nport = {}\nname = \"{}\"\nuser = \"{}\"\n",
                    s.admin.host_str().unwrap(),
                    s.admin.port().unwrap(),
                    s.name,
                    s.admin.username()
                ),
                s.admin.password().unwrap().to_string(),
            ),
            _ => ("sqlite", String::new(), "unused".to_string()),
        };
        let config = dir.path().join("modobox.toml");
        std::fs::write(
            &config,
            format!(
                "hostname = \"{HOSTNAME}\"\n[database]\nengine = \"{engine_name}\"\n{conn}\
                 sqlite_path = \"{}\"\n[paths]\nsecrets = \"{d}/secrets.toml\"\n\
                 [mail]\nhandle_mailboxes_on_filesystem = true\n",
                sqlite.display()
            ),
        )
        .unwrap();
        // The daemons' own roles (created in `populate`) get fixed passwords too.
        let secrets = format!(
            "database_password = \"{password}\"\nsession_key = \"{}\"\n\
             postfix_db_password = \"PostfixRole1\"\ndovecot_db_password = \"DovecotRole1\"\n\
             opendkim_db_password = \"OpendkimRole1\"\namavis_db_password = \"AmavisRole1\"\nmilter_db_password = \"MilterRole1\"\n",
            "5e551011".repeat(8)
        );
        // The CLI reads the secrets at paths.secrets; `render --root` reads them under the root.
        let root_secrets = dir.path().join("root").join(&d[1..]).join("secrets.toml");
        std::fs::create_dir_all(root_secrets.parent().unwrap()).unwrap();
        for p in [dir.path().join("secrets.toml"), root_secrets] {
            std::fs::write(&p, &secrets).unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
        }
        Site {
            engine,
            dir,
            config,
            server,
            sqlite,
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn modobox(&self, args: &[&str]) -> String {
        self.modobox_stdin(args, None)
    }

    fn modobox_stdin(&self, args: &[&str], stdin: Option<&str>) -> String {
        check(
            Command::new(BIN)
                .arg("--config")
                .arg(&self.config)
                .args(args)
                .env_remove("MODOBOX_CONFIG")
                .env_remove("MODOBOX_DATABASE_URL"),
            stdin,
        )
    }

    /// One SQL statement on the site's database; rows as `a|b` lines.
    fn sql(&self, sql: &str) -> String {
        match &self.server {
            Some(s) => s.sql(&s.name, sql),
            None => check(Command::new("sqlite3").arg(&self.sqlite).arg(sql), None),
        }
    }
}

/// Queries for live-lookups and the answers expected, in order.
#[derive(Debug, Default)]
struct Queries {
    input: String,
    expected: Vec<String>,
}

impl Queries {
    fn map(&mut self, map: &str, key: &str, answer: &str) {
        self.input.push_str(&format!("{map}\t{key}\n"));
        self.expected
            .push(normalize(&format!("{map}\t{key}\t{answer}")));
    }
    /// `userdb`: the USER answer without uid/gid (checked to be a real account's ids).
    fn auth(&mut self, user: &str, password: &str, result: &str, userdb: &str) {
        self.input.push_str(&format!("AUTH\t{user}\t{password}\n"));
        self.expected.push(format!("AUTH\t{user}\t{result}"));
        self.expected
            .push(normalize(&format!("USER\t{user}\t{userdb}")));
    }
    /// `auth` for one service (imap, pop3, lmtp, smtp...).
    fn auth_for(&mut self, user: &str, password: &str, service: &str, result: &str, userdb: &str) {
        self.input
            .push_str(&format!("AUTH\t{user}\t{password}\t{service}\n"));
        self.expected
            .push(format!("AUTH\t{user} [{service}]\t{result}"));
        self.expected
            .push(normalize(&format!("USER\t{user} [{service}]\t{userdb}")));
    }
    fn quota(&mut self, user: &str, answer: &str) {
        self.input.push_str(&format!("QUOTA\t{user}\n"));
        self.expected.push(format!("QUOTA\t{user}\t{answer}"));
    }
    fn login(&mut self, user: &str) {
        self.input.push_str(&format!("LOGIN\t{user}\n"));
        self.expected.push(format!("LOGIN\t{user}\tran"));
    }
}

/// Order-free comparison of multi-valued answers: map results sorted; USER fields sorted, with
/// uid/gid checked to be non-root numeric ids and then dropped.
fn normalize(line: &str) -> String {
    let mut f = line.splitn(3, '\t');
    let (kind, key, value) = (
        f.next().unwrap_or(""),
        f.next().unwrap_or(""),
        f.next().unwrap_or(""),
    );
    let value = if kind == "USER" {
        if value == "(unknown)" {
            value.to_string()
        } else {
            let mut fields: Vec<String> = value
                .split(' ')
                .filter(|kv| match kv.split_once('=') {
                    Some(("uid" | "gid", id)) => {
                        if id.parse::<u32>().map_or(true, |n| n == 0) {
                            return true; // kept, so the comparison fails and shows it
                        }
                        false
                    }
                    _ => true,
                })
                .map(str::to_string)
                .collect();
            fields.sort();
            fields.join(" ")
        }
    } else if kind.starts_with("sql-") {
        let mut v: Vec<&str> = value.split(',').collect();
        v.sort_unstable();
        v.join(",")
    } else {
        value.to_string()
    };
    format!("{kind}\t{key}\t{value}")
}

const USER_PASSWORD: &str = "S3cret-pass word";

/// Domains, aliases, mailboxes... through the CLI as an admin would.
fn populate(site: &Site) {
    let m = |args: &[&str]| site.modobox(args);
    let mailbox = |address: &str, password: &str, extra: &[&str]| {
        let mut args = vec!["mailbox", "add", address];
        args.extend_from_slice(extra);
        site.modobox_stdin(&args, Some(&format!("{password}\n")));
    };
    m(&["db", "migrate"]);
    // Postfix, Dovecot and OpenDKIM query as their own roles, as after an install: every lookup
    // below also proves their grants are enough.
    if let Some(server) = &site.server {
        let config = modobox::config::Config::load(&site.config).unwrap();
        let secrets =
            modobox::secrets::Secrets::load_or_create(&site.dir.path().join("secrets.toml"))
                .unwrap();
        let statements = modobox::store::roles::apply_statements(&config, &secrets);
        server.sql(&server.name, &statements.join(";\n"));
    }
    m(&[
        "domain",
        "add",
        "example.com",
        "--quota",
        "1000",
        "--default-mailbox-quota",
        "50",
    ]);
    m(&["domain", "add", "disabled.test"]);
    m(&["domain", "edit", "disabled.test", "--enabled", "false"]);
    m(&["domainalias", "add", "alias.test", "example.com"]);
    m(&[
        "relaydomain",
        "add",
        "relay.test",
        "--target-host",
        "relay.example.net",
        "--target-port",
        "2525",
        "--verify-recipients",
        "true",
    ]);
    mailbox("user@example.com", USER_PASSWORD, &["--quota", "100"]);
    mailbox("other@example.com", "Other-pass1", &[]);
    mailbox("old@example.com", "Old-pass1", &[]);
    mailbox("gone@example.com", "Gone-pass1", &[]);
    mailbox("someone@disabled.test", "Dis-pass1", &[]);
    // A local mailbox inside the relay domain (a "splitted" domain).
    mailbox("local@relay.test", "Split-pass1", &[]);
    m(&["mailbox", "edit", "gone@example.com", "--enabled", "false"]);
    m(&[
        "mailbox",
        "edit",
        "user@example.com",
        "--add-sender",
        "sales@example.com",
    ]);
    // Modoboa 2.x's wildcard: every address of a domain.
    m(&[
        "mailbox",
        "edit",
        "other@example.com",
        "--add-sender",
        "@partner.example",
    ]);
    m(&[
        "alias",
        "add",
        "team@example.com",
        "user@example.com",
        "other@example.com",
    ]);
    m(&[
        "alias",
        "add",
        "fwd@example.com",
        "someone@external.example",
    ]);
    m(&["alias", "add", "@example.com", "user@example.com"]);
    m(&[
        "alias",
        "add",
        "soon@example.com",
        "user@example.com",
        "--expires",
        "7d",
    ]);
    // The CLI accepts an expiry in the past: no SQL needed.
    m(&[
        "alias",
        "add",
        "expired@example.com",
        "user@example.com",
        "--expires",
        "2020-01-01T00:00:00Z",
    ]);
    m(&["alias", "add", "off@example.com", "user@example.com"]);
    m(&["alias", "edit", "off@example.com", "--enabled", "false"]);
    // A pending rename: the mailbox is new@ now, its directory still has to move.
    m(&[
        "mailbox",
        "edit",
        "old@example.com",
        "--rename",
        "new@example.com",
    ]);
    assert_eq!(
        site.sql("SELECT type, argument FROM admin_mailboxoperation")
            .trim(),
        "rename|/srv/vmail/example.com/old"
    );
    // Modoboa 2.2+ migrating the database underneath: admin_mailbox gets is_send_only, and the
    // next `db migrate` (the supervisor runs it at every start) points modobox_send_only at it.
    mailbox("sendonly@example.com", "Send-only1", &[]);
    let (column, yes) = match site.engine {
        Engine::Postgres => ("boolean NOT NULL DEFAULT false", "TRUE"),
        Engine::Mysql => ("tinyint(1) NOT NULL DEFAULT 0", "1"),
        Engine::Sqlite => ("bool NOT NULL DEFAULT 0", "1"),
    };
    site.sql(&format!(
        "ALTER TABLE admin_mailbox ADD COLUMN is_send_only {column}"
    ));
    site.sql(&format!(
        "UPDATE admin_mailbox SET is_send_only = {yes} WHERE address = 'sendonly'"
    ));
    m(&["db", "migrate"]);
    assert_eq!(
        site.sql("SELECT email FROM modobox_send_only").trim(),
        "sendonly@example.com"
    );
}

/// What the installer and the DKIM job provide before the daemons start: a certificate, and a
/// DKIM key for example.com recorded in the database (the `dkim` view lists it).
fn provide(site: &Site) {
    let root = site.root();
    let ssl = |p: &str| root.join(p);
    let (cert, key) = (
        ssl(&format!("etc/ssl/certs/modobox-{HOSTNAME}.crt")),
        ssl(&format!("etc/ssl/private/modobox-{HOSTNAME}.key")),
    );
    for p in [&cert, &key] {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    }
    check(
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", &format!("/CN={HOSTNAME}")])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
        None,
    );
    if site.engine == Engine::Sqlite {
        // OpenDKIM reads the key tables the DKIM job writes for SQLite, not the database.
        for t in ["keytable", "signingtable"] {
            let p = root.join("var/lib/dkim").join(t);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        }
        return;
    }
    let pem = root.join("var/lib/dkim/example.com.pem");
    std::fs::create_dir_all(pem.parent().unwrap()).unwrap();
    check(
        Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&pem),
        None,
    );
    std::fs::set_permissions(&pem, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    if let Some(u) = uzers::get_user_by_name("opendkim") {
        std::os::unix::fs::chown(&pem, Some(u.uid()), Some(u.primary_group_id())).unwrap();
    }
    site.modobox(&["domain", "edit", "example.com", "--dkim", "true"]);
    site.sql(
        "UPDATE admin_domain SET dkim_private_key_path = '/var/lib/dkim/example.com.pem' \
         WHERE name = 'example.com'",
    );
    assert_eq!(
        site.sql("SELECT domain_name, selector, private_key_path FROM dkim")
            .trim(),
        "example.com|modoboa|/var/lib/dkim/example.com.pem"
    );
}

fn queries() -> Queries {
    let mut q = Queries::default();
    const DOMAINS: &str = "sql-domains.cf";
    q.map(DOMAINS, "example.com", "example.com");
    q.map(DOMAINS, "disabled.test", "");
    q.map(DOMAINS, "relay.test", "");
    q.map(DOMAINS, "alias.test", "");
    q.map(DOMAINS, "unknown.test", "");

    const DOMAIN_ALIASES: &str = "sql-domain-aliases.cf";
    q.map(DOMAIN_ALIASES, "alias.test", "example.com");
    q.map(DOMAIN_ALIASES, "example.com", "");
    q.map(DOMAIN_ALIASES, "unknown.test", "");

    const ALIASES: &str = "sql-aliases.cf";
    q.map(ALIASES, "user@example.com", "user@example.com");
    q.map(
        ALIASES,
        "team@example.com",
        "user@example.com,other@example.com",
    );
    q.map(ALIASES, "fwd@example.com", "someone@external.example");
    q.map(ALIASES, "@example.com", "user@example.com");
    q.map(ALIASES, "@alias.test", "@example.com");
    q.map(ALIASES, "soon@example.com", "user@example.com");
    q.map(ALIASES, "expired@example.com", "");
    q.map(ALIASES, "off@example.com", "");
    q.map(ALIASES, "new@example.com", "new@example.com");
    q.map(ALIASES, "old@example.com", "");
    q.map(ALIASES, "unknown@example.com", "");
    q.map(ALIASES, "local@relay.test", "local@relay.test");

    const MAINTAIN: &str = "sql-maintain.cf";
    q.map(
        MAINTAIN,
        "new@example.com",
        "450 Requested mail action not taken: mailbox unavailable",
    );
    q.map(MAINTAIN, "old@example.com", "");
    q.map(MAINTAIN, "user@example.com", "");
    q.map(MAINTAIN, "unknown@example.com", "");

    const SEND_ONLY: &str = "sql-send-only.cf";
    q.map(
        SEND_ONLY,
        "sendonly@example.com",
        "REJECT 5.1.1 Recipient address rejected: this mailbox only sends mail",
    );
    q.map(SEND_ONLY, "user@example.com", "");

    const SENDERS: &str = "sql-sender-login-map.cf";
    q.map(SENDERS, "user@example.com", "user@example.com");
    q.map(SENDERS, "sales@example.com", "user@example.com");
    q.map(
        SENDERS,
        "team@example.com",
        "user@example.com,other@example.com",
    );
    q.map(SENDERS, "new@example.com", "new@example.com");
    q.map(SENDERS, "sendonly@example.com", "sendonly@example.com");
    q.map(SENDERS, "gone@example.com", "");
    q.map(SENDERS, "off@example.com", "");
    q.map(SENDERS, "nobody@example.com", "");
    // A mailbox's own local part at a domain alias of its domain.
    q.map(SENDERS, "user@alias.test", "user@example.com");
    q.map(SENDERS, "nobody@alias.test", "");
    // An alias's address at a domain alias of its domain (Modoboa 2.x): the alias's mailboxes.
    q.map(
        SENDERS,
        "team@alias.test",
        "user@example.com,other@example.com",
    );
    // A `@domain` sender address: any address of that domain.
    q.map(SENDERS, "anyone@partner.example", "other@example.com");
    q.map(SENDERS, "anyone@other.example", "");

    // Port 25: any address of a hosted domain or domain alias needs a login; a relay domain's
    // or an outside one does not.
    const HOSTED_SENDERS: &str = "sql-hosted-senders.cf";
    const MUST_LOG_IN: &str = "REJECT 5.7.1 Sender address rejected: an address of this server: log in (submission, port 587 or 465) to send as it";
    q.map(HOSTED_SENDERS, "anyone@example.com", MUST_LOG_IN);
    q.map(HOSTED_SENDERS, "user@example.com", MUST_LOG_IN);
    q.map(HOSTED_SENDERS, "anyone@alias.test", MUST_LOG_IN);
    q.map(HOSTED_SENDERS, "someone@relay.test", "");
    q.map(HOSTED_SENDERS, "someone@elsewhere.example", "");

    const RELAY: &str = "sql-relaydomains.cf";
    q.map(RELAY, "relay.test", "relay.test");
    q.map(RELAY, "example.com", "");
    q.map(RELAY, "unknown.test", "");

    const TRANSPORT: &str = "sql-transport.cf";
    q.map(TRANSPORT, "relay.test", "relay:[relay.example.net]:2525");
    q.map(TRANSPORT, "example.com", "");

    const SPLIT: &str = "sql-spliteddomains-transport.cf";
    q.map(SPLIT, "local@relay.test", "lmtp:unix:private/dovecot-lmtp");
    q.map(SPLIT, "nobody@relay.test", "");
    q.map(SPLIT, "user@example.com", "");

    const VERIFY: &str = "sql-relay-recipient-verification.cf";
    q.map(VERIFY, "relay.test", "reject_unverified_recipient");
    q.map(VERIFY, "example.com", "");

    // Dovecot: passdb answers active users of enabled domains; userdb gives home, owner, quota.
    let home =
        |d: &str, l: &str, mb: u32| format!("home=/srv/vmail/{d}/{l} quota_rule=*:bytes={mb}M");
    q.auth(
        "user@example.com",
        USER_PASSWORD,
        "ok",
        &home("example.com", "user", 100),
    );
    q.auth(
        "user@example.com",
        "wrong password",
        "refused",
        &home("example.com", "user", 100),
    );
    // The domain's default mailbox quota.
    q.auth(
        "other@example.com",
        "Other-pass1",
        "ok",
        &home("example.com", "other", 50),
    );
    // Renamed: the new address logs in with the old password, its new home.
    q.auth(
        "new@example.com",
        "Old-pass1",
        "ok",
        &home("example.com", "new", 50),
    );
    q.auth("old@example.com", "Old-pass1", "refused", "(unknown)");
    q.auth("gone@example.com", "Gone-pass1", "refused", "(unknown)");
    // Disabled domain: no login (userdb still answers; Postfix accepts no mail for it).
    q.auth(
        "someone@disabled.test",
        "Dis-pass1",
        "refused",
        &home("disabled.test", "someone", 0),
    );
    q.auth(
        "local@relay.test",
        "Split-pass1",
        "ok",
        &home("relay.test", "local", 0),
    );
    q.auth("ghost@example.com", "whatever", "refused", "(unknown)");
    // A send-only mailbox logs in to send, never to read, and gets no mail.
    q.auth_for(
        "sendonly@example.com",
        "Send-only1",
        "smtp",
        "ok",
        &home("example.com", "sendonly", 50),
    );
    q.auth_for(
        "sendonly@example.com",
        "Send-only1",
        "imap",
        "refused",
        "(unknown)",
    );
    q.auth_for(
        "sendonly@example.com",
        "Send-only1",
        "pop3",
        "refused",
        "(unknown)",
    );
    q.auth_for(
        "sendonly@example.com",
        "Send-only1",
        "lmtp",
        "ok",
        "(unknown)",
    );
    q.auth_for(
        "user@example.com",
        USER_PASSWORD,
        "imap",
        "ok",
        &home("example.com", "user", 100),
    );
    // Quota usage through the dict (1 KiB of 100 MiB), last_login through the post-login script.
    q.quota("user@example.com", "STORAGE=1/102400 MESSAGE=1/-");
    q.login("user@example.com");
    q
}

fn live_lookups(engine: Engine) {
    if !daemons_available() {
        return;
    }
    let server = match engine {
        Engine::Postgres | Engine::Mysql => {
            let var = if engine == Engine::Postgres {
                "MODOBOX_TEST_POSTGRES_URL"
            } else {
                "MODOBOX_TEST_MYSQL_URL"
            };
            let Some(admin) = server_url(var) else {
                return;
            };
            Some(ServerDb::create(engine, admin))
        }
        Engine::Sqlite => None,
    };
    let site = Site::new(engine, server);
    populate(&site);
    site.modobox(&[
        "--distro",
        "debian:12",
        "render",
        "--root",
        site.root().to_str().unwrap(),
    ]);
    provide(&site);

    let q = queries();
    let file = site.dir.path().join("queries.tsv");
    std::fs::write(&file, &q.input).unwrap();
    let out = run(
        Command::new(script("live-lookups"))
            .arg(site.root())
            .arg(&file),
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("== live-lookups ({engine:?})\n{stdout}{stderr}");
    let got: Vec<String> = stdout.lines().map(normalize).collect();
    let mut problems: Vec<String> = Vec::new();
    for i in 0..q.expected.len().max(got.len()) {
        let (want, have) = (q.expected.get(i), got.get(i));
        if want != have {
            problems.push(format!(
                "  expected {:?}\n       got {:?}",
                want.map_or("(nothing)", String::as_str),
                have.map_or("(nothing)", String::as_str)
            ));
        }
    }
    if !out.status.success() {
        problems.push(format!("live-lookups failed ({}):\n{stderr}", out.status));
    }
    assert!(
        problems.is_empty(),
        "{engine:?}: the daemons' answers differ from docs/MODOBOA-COMPAT.md §3:\n{}",
        problems.join("\n")
    );

    // What the daemons wrote went to the database itself.
    let quota =
        site.sql("SELECT bytes, messages FROM admin_quota WHERE username = 'user@example.com'");
    let (bytes, messages) = quota.trim().split_once('|').unwrap();
    assert!(
        bytes.parse::<i64>().unwrap() > 0 && messages == "1",
        "admin_quota of user@example.com: {quota}"
    );
    let logins =
        site.sql("SELECT username FROM core_user WHERE last_login IS NOT NULL ORDER BY username");
    assert_eq!(logins.trim(), "user@example.com", "core_user.last_login");

    // OpenDKIM's own check, reading the dkim view through the rendered DSNs.
    if engine != Engine::Sqlite {
        let out = run(
            Command::new(script("run-validators"))
                .arg(site.root())
                .arg(BIN)
                .env("MODOBOX_VALIDATE_DB", "1"),
            None,
        );
        let text = String::from_utf8_lossy(&out.stdout);
        println!("== run-validators with the live database ({engine:?})\n{text}");
        assert!(
            out.status.success() && text.lines().any(|l| l == "ok   opendkim"),
            "{engine:?}: validators with the live database failed:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn postgres_answers_what_compat_section_3_says() {
    live_lookups(Engine::Postgres);
}

#[test]
fn mysql_answers_what_compat_section_3_says() {
    live_lookups(Engine::Mysql);
}

#[test]
fn sqlite_answers_what_compat_section_3_says() {
    live_lookups(Engine::Sqlite);
}
