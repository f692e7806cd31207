//! The database: server, database and role (local installs), schema, the primary domain and the
//! first superadmin.

use std::time::{Duration, Instant};

use super::{services, Check, Ctx, Step, StepError, StepResult};
use crate::config::{DbLocation, Engine};
use crate::distro::Family;
use crate::names::Username;
use crate::secrets::Secret;
use crate::store::access::{Actor, Role};
use crate::store::roles::sql_literal;
use crate::store::{accounts, audit, domains, local_admin, migrate, roles, StoreError};
use crate::system::cmd::Cmd;

/// The server (local installs), the database and the role modobox, Postfix, Dovecot and
/// OpenDKIM connect as; done when those credentials work.
#[derive(Debug)]
pub struct Server;

pub(super) fn connects(ctx: &mut Ctx) -> StepResult<()> {
    let store = ctx.store()?;
    ctx.rt.block_on(async {
        let mut tx = store.begin().await?;
        tx.ping().await
    })?;
    Ok(())
}

impl Step for Server {
    fn name(&self) -> &'static str {
        "database"
    }

    fn check(&self, ctx: &mut Ctx) -> StepResult<Check> {
        let db = ctx.config.database.clone();
        let what = match (db.engine, db.location) {
            (Engine::Sqlite, _) => {
                let mut changes = Vec::new();
                let path = db.sqlite_path.as_path();
                if !path.exists() {
                    changes.push(format!("create the SQLite database {}", path.display()));
                }
                changes.extend(sqlite_acl_changes(ctx)?);
                return Ok(Check::from_changes(changes));
            }
            (Engine::Postgres, DbLocation::Local) => "on the local PostgreSQL server",
            (Engine::Mysql, DbLocation::Local) => "on the local MariaDB server",
            (_, DbLocation::External) => "(external server: modobox only connects)",
        };
        Ok(match connects(ctx) {
            Ok(()) => Check::Done,
            Err(e) => Check::Change(vec![format!(
                "create the database {} and the role {} with a generated password {what} \
                 (connecting now: {e})",
                db.name, db.user
            )]),
        })
    }

    fn apply(&self, ctx: &mut Ctx) -> StepResult<()> {
        let db = ctx.config.database.clone();
        ctx.reset_store();
        match (db.engine, db.location) {
            (Engine::Sqlite, _) => {
                // Connecting creates the file (mode 0600); the ACLs open it to the daemons.
                ctx.store()?;
                ctx.reset_store();
                return apply_sqlite_acls(ctx);
            }
            (_, DbLocation::External) => {
                let err = connects(ctx)
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                return Err(StepError::new(format!(
                    "cannot connect to the external database {}: {err}",
                    ctx.database_url().redacted()
                )));
            }
            (Engine::Postgres, DbLocation::Local) => {
                prepare_postgres(ctx)?;
                services::start_and_enable(ctx, &ctx.distro.facts.services.postgres.clone())?;
                wait_until(
                    Duration::from_secs(60),
                    "PostgreSQL to accept connections",
                    || {
                        Cmd::new("runuser")
                            .args(["-u", "postgres", "--", "psql", "-X", "-q", "-c", "SELECT 1"])
                            .output()
                            .is_ok_and(|o| o.success)
                    },
                )?;
                let pw = sql_literal(ctx.secrets.database_password.expose());
                let (name, user) = (db.name.as_str(), db.user.as_str());
                let script = format!(
                    "SELECT 'CREATE ROLE \"{user}\" LOGIN' WHERE NOT EXISTS \
                       (SELECT 1 FROM pg_roles WHERE rolname = '{user}')\\gexec\n\
                     ALTER ROLE \"{user}\" WITH LOGIN PASSWORD {pw};\n\
                     SELECT 'CREATE DATABASE \"{name}\" OWNER \"{user}\" ENCODING ''UTF8'' \
                       TEMPLATE template0' WHERE NOT EXISTS \
                       (SELECT 1 FROM pg_database WHERE datname = '{name}')\\gexec\n"
                );
                local_admin::client(Engine::Postgres, "postgres")
                    .stdin(script)
                    .run()?;
            }
            (Engine::Mysql, DbLocation::Local) => {
                services::start_and_enable(ctx, &ctx.distro.facts.services.mysql.clone())?;
                let client = local_admin::mysql_program();
                wait_until(
                    Duration::from_secs(60),
                    "MariaDB to accept connections",
                    || {
                        Cmd::new(client)
                            .args(["-e", "SELECT 1"])
                            .output()
                            .is_ok_and(|o| o.success)
                    },
                )?;
                let pw = sql_literal(ctx.secrets.database_password.expose());
                let (name, user) = (db.name.as_str(), db.user.as_str());
                let mut script = format!(
                    "CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 \
                     COLLATE utf8mb4_unicode_ci;\n"
                );
                // Postfix and Dovecot connect over TCP to 127.0.0.1, the CLI may use the socket.
                for host in ["localhost", "127.0.0.1", "::1"] {
                    script.push_str(&format!(
                        "CREATE USER IF NOT EXISTS '{user}'@'{host}' IDENTIFIED BY {pw};\n\
                         ALTER USER '{user}'@'{host}' IDENTIFIED BY {pw};\n\
                         GRANT ALL PRIVILEGES ON `{name}`.* TO '{user}'@'{host}';\n"
                    ));
                }
                Cmd::new(client).stdin(script).run()?;
            }
        }
        ctx.reset_store();
        Ok(())
    }
}

/// Postfix, Dovecot, OpenDKIM and Amavis each get their own database role with only the grants
/// their queries need (`store::roles`); done when every role logs in with its password from
/// the secrets file and holds exactly those grants.
#[derive(Debug)]
pub struct DaemonRoles;

impl DaemonRoles {
    fn differences(ctx: &mut Ctx) -> StepResult<Vec<String>> {
        let config = ctx.config.clone();
        let engine = config.database.engine;
        let out = local_admin::client(engine, config.database.name.as_str())
            .stdin(roles::actual_grants_query(&config))
            .run()?;
        let sep = if engine == Engine::Mysql { '\t' } else { '|' };
        let actual = roles::parse_grant_rows(out.stdout.lines().filter_map(|l| {
            let f: Vec<&str> = l.split(sep).collect();
            (f.len() == 4).then(|| [f[0], f[1], f[2], f[3]].map(str::to_string))
        }));
        let expected = roles::expected_grants(&config);
        let mut changes = Vec::new();
        for daemon in roles::Daemon::ALL {
            let role = roles::role_name(&config, daemon);
            let mine = |set: &std::collections::BTreeSet<roles::GrantRow>| {
                set.iter()
                    .filter(|(r, ..)| r.split('@').next() == Some(role.as_str()))
                    .cloned()
                    .collect::<Vec<_>>()
            };
            if mine(&actual) != mine(&expected) {
                changes.push(format!(
                    "give {} the database role {role} with only the grants it needs",
                    daemon.as_str()
                ));
                continue;
            }
            let (user, password) = roles::login(&config, &ctx.secrets, daemon);
            let url = crate::store::DatabaseUrl::for_login(&config, &user, password);
            let logs_in = ctx.rt.block_on(async {
                let store = crate::store::Store::connect(&url).await?;
                let mut tx = store.begin().await?;
                let n = tx.ping().await;
                drop(tx);
                store.close().await;
                n
            });
            if logs_in.is_err() {
                changes.push(format!(
                    "set the password of the database role {role} from the secrets file"
                ));
            }
        }
        Ok(changes)
    }
}

impl Step for DaemonRoles {
    fn name(&self) -> &'static str {
        "database-roles"
    }

    fn check(&self, ctx: &mut Ctx) -> StepResult<Check> {
        if !roles::per_daemon(&ctx.config) {
            return Ok(Check::Done);
        }
        if connects(ctx).is_err() {
            return Ok(Check::Change(vec![
                "give Postfix, Dovecot, OpenDKIM and Amavis their own database roles".into(),
            ]));
        }
        Ok(Check::from_changes(Self::differences(ctx)?))
    }

    fn apply(&self, ctx: &mut Ctx) -> StepResult<()> {
        let config = ctx.config.clone();
        let mut script = roles::apply_statements(&config, &ctx.secrets).join(";\n");
        script.push_str(";\n");
        local_admin::client(config.database.engine, config.database.name.as_str())
            .stdin(script)
            .run()?;
        Ok(())
    }
}

fn wait_until(limit: Duration, what: &str, mut ready: impl FnMut() -> bool) -> StepResult<()> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(StepError::new(format!(
        "waited {} s for {what}",
        limit.as_secs()
    )))
}

/// RHEL's PostgreSQL starts without a cluster, and its cluster trusts `ident` on TCP: initialise
/// it and let local TCP clients (Postfix, Dovecot) log in with passwords.
fn prepare_postgres(ctx: &Ctx) -> StepResult<()> {
    if ctx.distro.facts.family != Family::Rhel {
        return Ok(());
    }
    let data = std::path::Path::new("/var/lib/pgsql/data");
    if !data.join("PG_VERSION").exists() {
        Cmd::new("postgresql-setup").arg("--initdb").run()?;
    }
    let hba = data.join("pg_hba.conf");
    let text = std::fs::read_to_string(&hba).map_err(super::io_error(&hba))?;
    let fixed: String = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() == 5 && f[0] == "host" && f[4] == "ident" {
                format!("host {} {} {} scram-sha-256\n", f[1], f[2], f[3])
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    if fixed != text {
        crate::system::fs::write_atomic(
            &hba,
            fixed.as_bytes(),
            0o600,
            Some(&crate::system::fs::Owner {
                user: "postgres".into(),
                group: "postgres".into(),
            }),
        )
        .map_err(super::io_error(&hba))?;
    }
    Ok(())
}

/// (user, rights on the file, rights on its directory) for a SQLite database shared by the
/// daemons: Postfix only reads, Dovecot and the mailbox owner update quotas and last logins,
/// Amavis writes its quarantine.
fn sqlite_acl_users(ctx: &Ctx) -> Vec<(String, &'static str, &'static str)> {
    let u = &ctx.distro.facts.users;
    let mut out = vec![
        (u.postfix.clone(), "r", "x"),
        (u.dovecot.clone(), "rw", "rwx"),
        (ctx.config.mail.owner.to_string(), "rw", "rwx"),
    ];
    if ctx.config.components.amavis {
        out.push((u.amavis.clone(), "rw", "rwx"));
    }
    // modobox's own daemons: the web UI writes (sessions, everything an admin changes), the
    // milter process writes the sending counters of its policy service.
    out.push((crate::service::own::WEB.user.to_string(), "rw", "rwx"));
    out.push((crate::service::own::MILTER.user.to_string(), "rw", "rwx"));
    out
}

fn acl_of(path: &std::path::Path) -> String {
    Cmd::new("getfacl")
        .args(["-c", "-p"])
        .arg(path.display().to_string())
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default()
}

fn rights(r: &str) -> String {
    ['r', 'w', 'x']
        .iter()
        .map(|c| if r.contains(*c) { *c } else { '-' })
        .collect()
}

fn sqlite_acl_changes(ctx: &Ctx) -> StepResult<Vec<String>> {
    let file = ctx.config.database.sqlite_path.as_path();
    let Some(dir) = file.parent() else {
        return Ok(Vec::new());
    };
    let (file_acl, dir_acl) = (acl_of(file), acl_of(dir));
    let mut changes = Vec::new();
    // An entry narrowed by the mask shows "#effective:" after it: not granted.
    let granted = |acl: &str, user: &str, r: &str| {
        let entry = format!("user:{user}:{}", rights(r));
        acl.lines()
            .any(|l| l.starts_with(&entry) && !l.contains("#effective"))
    };
    for (user, on_file, on_dir) in sqlite_acl_users(ctx) {
        let file_ok = granted(&file_acl, &user, on_file);
        let dir_ok = granted(&dir_acl, &user, on_dir);
        if !file_ok || !dir_ok {
            changes.push(format!(
                "let {user} use {} ({on_file}) through an ACL",
                file.display()
            ));
        }
    }
    Ok(changes)
}

fn apply_sqlite_acls(ctx: &Ctx) -> StepResult<()> {
    let file = ctx.config.database.sqlite_path.as_path();
    let dir = file
        .parent()
        .ok_or_else(|| StepError::new("database.sqlite_path has no directory"))?;
    for (user, on_file, on_dir) in sqlite_acl_users(ctx) {
        Cmd::new("setfacl")
            .args(["-m", &format!("u:{user}:{on_file}")])
            .arg(file.display().to_string())
            .run()?;
        // SQLite writes its journal next to the file: the directory and new files there too.
        Cmd::new("setfacl")
            .args(["-m", &format!("u:{user}:{on_dir}")])
            .args(["-d", "-m", &format!("u:{user}:{on_file}")])
            .arg(dir.display().to_string())
            .run()?;
    }
    Ok(())
}

/// Embedded migrations; an unadopted Modoboa database is left alone with advice.
#[derive(Debug)]
pub struct Schema;

impl Step for Schema {
    fn name(&self) -> &'static str {
        "schema"
    }

    fn check(&self, ctx: &mut Ctx) -> StepResult<Check> {
        if connects(ctx).is_err() {
            return Ok(Check::Change(vec![
                "create modobox's tables (the database does not exist yet)".into(),
            ]));
        }
        let store = ctx.store()?;
        let status = ctx.rt.block_on(migrate::status(&store))?;
        if status.unadopted_modoboa {
            return Err(StepError::new(
                "the database holds a Modoboa schema modobox has not adopted: \
                 back it up, run `modobox db adopt`, then run the install again",
            ));
        }
        let mut changes: Vec<String> = status
            .migrations
            .iter()
            .filter(|m| !m.applied)
            .map(|m| format!("apply migration {:04}_{}", m.version, m.name))
            .collect();
        if changes.is_empty() {
            changes = ctx.rt.block_on(migrate::views_pending(&store))?;
        }
        Ok(Check::from_changes(changes))
    }

    fn apply(&self, ctx: &mut Ctx) -> StepResult<()> {
        let store = ctx.store()?;
        ctx.rt.block_on(migrate::migrate(&store))?;
        Ok(())
    }
}

/// The primary domain, with DKIM signing when OpenDKIM is on.
#[derive(Debug)]
pub struct PrimaryDomain;

fn primary(ctx: &Ctx) -> StepResult<crate::names::DomainName> {
    ctx.config
        .primary_domain()
        .ok_or_else(|| StepError::new("primary_domain: not set and the hostname has no parent"))
}

impl Step for PrimaryDomain {
    fn name(&self) -> &'static str {
        "primary-domain"
    }

    fn check(&self, ctx: &mut Ctx) -> StepResult<Check> {
        let name = primary(ctx)?;
        let exists = connects(ctx).is_ok() && {
            let store = ctx.store()?;
            ctx.rt.block_on(async {
                let mut tx = store.begin().await?;
                match domains::get(&mut tx, Actor::System, &name).await {
                    Ok(_) => Ok(true),
                    Err(StoreError::NotFound { .. }) => Ok(false),
                    Err(e) => Err(e),
                }
            })?
        };
        Ok(if exists {
            Check::Done
        } else {
            Check::Change(vec![format!(
                "create the domain {name}{}",
                if ctx.config.components.opendkim {
                    " with DKIM signing"
                } else {
                    ""
                }
            )])
        })
    }

    fn apply(&self, ctx: &mut Ctx) -> StepResult<()> {
        let name = primary(ctx)?;
        let store = ctx.store()?;
        let spec = domains::DomainSpec {
            enable_dkim: ctx.config.components.opendkim,
            ..Default::default()
        };
        ctx.rt.block_on(async {
            let mut tx = store.begin().await?;
            domains::create(&mut tx, Actor::System, &name, &spec, None).await?;
            audit::info(
                &mut tx,
                &format!("Domain {name} created by modobox install"),
            )
            .await?;
            tx.commit().await
        })?;
        Ok(())
    }
}

/// The first superadmin, `admin`, with a generated password shown once at the end of the
/// install (never a well-known default).
#[derive(Debug)]
pub struct Superadmin;

pub const FIRST_ADMIN: &str = "admin";

impl Step for Superadmin {
    fn name(&self) -> &'static str {
        "superadmin"
    }

    fn check(&self, ctx: &mut Ctx) -> StepResult<Check> {
        let count = if connects(ctx).is_ok() {
            let store = ctx.store()?;
            ctx.rt.block_on(async {
                let mut tx = store.begin().await?;
                accounts::superadmin_count(&mut tx).await
            })?
        } else {
            0
        };
        Ok(if count > 0 {
            Check::Done
        } else {
            Check::Change(vec![format!(
                "create the superadmin {FIRST_ADMIN} with a generated password (shown once)"
            )])
        })
    }

    fn apply(&self, ctx: &mut Ctx) -> StepResult<()> {
        let store = ctx.store()?;
        let password = Secret::generate(16).expose().to_string();
        let spec = accounts::AccountSpec {
            username: Username::Login(FIRST_ADMIN.to_string()),
            password: accounts::Password::Clear(password.clone()),
            first_name: String::new(),
            last_name: String::new(),
            enabled: true,
            role: Role::SuperAdmins,
            mailbox: None,
            mailbox_address: None,
            domains: Vec::new(),
            profile: Default::default(),
            mailbox_settings: Default::default(),
        };
        // Kept before the account exists, as well as shown in the summary: an install
        // interrupted after this step must not lose the only copy of the password. A first
        // boot keeps it out of the output, which the journal records.
        if let Some(file) = &ctx.credentials_file {
            write_credentials(file, &ctx.config, &password)?;
        }
        ctx.rt.block_on(async {
            let mut tx = store.begin().await?;
            let policy = accounts::hash_policy(&mut tx).await?;
            accounts::create(&mut tx, Actor::System, &spec, policy).await?;
            tx.commit().await
        })?;
        match &ctx.credentials_file {
            Some(file) => println!(
                "    superadmin {FIRST_ADMIN} created, its password is in {}",
                file.display()
            ),
            None => {
                println!("    superadmin {FIRST_ADMIN} created, password: {password} (shown once)")
            }
        }
        ctx.new_admin_password = Some(password);
        Ok(())
    }
}

/// The first superadmin's login, for the admin's eyes only (mode 0600).
pub fn write_credentials(
    file: &std::path::Path,
    config: &crate::config::Config,
    password: &str,
) -> StepResult<()> {
    let text = format!(
        "# modobox: the first login of this server (change the password after logging in)\n\
         url = \"https://{}/\"\nlogin = \"{FIRST_ADMIN}\"\npassword = \"{password}\"\n",
        config.hostname
    );
    crate::system::fs::write_atomic(file, text.as_bytes(), 0o600, None)
        .map_err(|e| StepError::new(format!("{}: {e}", file.display())))
}
