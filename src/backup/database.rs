//! The database part of a backup, dumped with each engine's own consistent method while the
//! migrators' lock is held (no schema change lands in the middle): PostgreSQL `pg_dump -Fc`
//! (one snapshot), MariaDB/MySQL `mariadb-dump --single-transaction`, SQLite `VACUUM INTO`
//! checked with `PRAGMA integrity_check`. Passwords reach the dump programs through a 0600
//! file, never their arguments.

use std::path::{Path, PathBuf};

use super::BackupError;
use crate::config::{Config, Engine};
use crate::secrets::Secrets;
use crate::store::{migrate, Store};
use crate::system::cmd::{self, Cmd};

/// The dump's file name inside `database/`, by engine.
pub fn file_name(engine: Engine) -> &'static str {
    match engine {
        Engine::Postgres => "modobox.pgdump",
        Engine::Mysql => "modobox.sql",
        Engine::Sqlite => "modobox.sqlite3",
    }
}

/// Dumps the database into `dir/<file_name>`; `scratch` is a private directory for the
/// credentials file. Returns the schema version the dump holds.
pub async fn dump(
    config: &Config,
    secrets: &Secrets,
    store: &Store,
    dir: &Path,
    scratch: &Path,
) -> Result<i32, BackupError> {
    let engine = config.database.engine;
    let out = dir.join(file_name(engine));
    let (version, result) = migrate::while_locked(store, async {
        match engine {
            Engine::Sqlite => store.copy_sqlite_into(&out).await.map_err(|e| {
                if e.is_disk_full() {
                    // Said the way every other full disk is: the file and the cause.
                    BackupError::Io {
                        path: out.display().to_string(),
                        source: std::io::Error::new(
                            std::io::ErrorKind::StorageFull,
                            "No space left on device (SQLite: database or disk is full)",
                        ),
                    }
                } else {
                    e.into()
                }
            }),
            Engine::Postgres | Engine::Mysql => {
                let command = dump_command(config, secrets, scratch)?;
                let out = out.clone();
                tokio::task::spawn_blocking(move || dump_into(command, &out))
                    .await
                    .map_err(|e| BackupError::Database(format!("the dump was interrupted: {e}")))?
            }
        }
    })
    .await?;
    let _ = std::fs::remove_file(credentials_path(scratch));
    result?;
    Ok(version)
}

/// Runs a dump program that writes to its standard output, into the file `out`. The file is
/// written here, so a failed write (a full disk) is reported with its path and cause, which
/// the programs' own messages lack ("mariadb-dump: Got errno 28 on write").
fn dump_into(command: Cmd, out: &Path) -> Result<(), BackupError> {
    use std::io::{ErrorKind, Read, Write};
    let mut file = std::fs::File::create(out).map_err(super::io(out))?;
    let mut running = command
        .stream()
        .map_err(|e| BackupError::Database(e.to_string()))?;
    let mut buf = vec![0u8; 1 << 16];
    let written = loop {
        match running.read(&mut buf) {
            // On disk, not only in the page cache: a full disk may only show here.
            Ok(0) => break file.sync_all(),
            Ok(n) => {
                if let Err(e) = file.write_all(&buf[..n]) {
                    break Err(e);
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                running.kill();
                return Err(BackupError::Database(format!("reading the dump: {e}")));
            }
        }
    };
    if let Err(e) = written {
        running.kill();
        return Err(super::io(out)(e));
    }
    running
        .finish_ok()
        .map(|_| ())
        .map_err(|e| BackupError::Database(e.to_string()))
}

fn credentials_path(scratch: &Path) -> PathBuf {
    scratch.join("db-credentials")
}

/// Writes the credentials file for the client programs (mode 0600).
fn write_credentials(scratch: &Path, text: &str) -> Result<PathBuf, BackupError> {
    let path = credentials_path(scratch);
    crate::system::fs::write_atomic(&path, text.as_bytes(), 0o600, None)
        .map_err(super::io(&path))?;
    Ok(path)
}

/// `host:port:database:user:password` with `:` and `\` escaped, as libpq reads it.
fn pgpass_line(host: &str, port: u16, db: &str, user: &str, password: &str) -> String {
    let esc = |s: &str| s.replace('\\', "\\\\").replace(':', "\\:");
    format!(
        "{}:{port}:{}:{}:{}\n",
        esc(host),
        esc(db),
        esc(user),
        esc(password)
    )
}

/// `program` (pg_dump, pg_restore, psql) connected to database `dbname` as modobox's own role,
/// its password in a 0600 pgpass file of `scratch`.
fn pg_client(
    program: &str,
    config: &Config,
    secrets: &Secrets,
    scratch: &Path,
    dbname: &str,
) -> Result<Cmd, BackupError> {
    let db = &config.database;
    let (host, port, user) = (db.host.to_string(), db.port(), db.user.to_string());
    let line = pgpass_line(
        &host,
        port,
        dbname,
        &user,
        secrets.database_password.expose(),
    );
    let pass = write_credentials(scratch, &line)?;
    Ok(Cmd::new(program)
        .args(["--host", &host, "--port", &port.to_string()])
        .args(["--username", &user, "--dbname", dbname, "--no-password"])
        .env("PGPASSFILE", &pass.to_string_lossy())
        .env("PGCONNECT_TIMEOUT", "10"))
}

/// The dump program, writing to its standard output.
fn dump_command(config: &Config, secrets: &Secrets, scratch: &Path) -> Result<Cmd, BackupError> {
    let db = &config.database;
    let (host, port) = (db.host.to_string(), db.port());
    let (name, user) = (db.name.to_string(), db.user.to_string());
    let password = secrets.database_password.expose();
    Ok(match db.engine {
        Engine::Postgres => pg_client("pg_dump", config, secrets, scratch, &name)?.args([
            "--format=custom",
            "--no-owner",
            "--no-privileges",
        ]),
        Engine::Mysql => {
            // The option file must come first on the command line.
            let defaults =
                write_credentials(scratch, &format!("[client]\npassword=\"{password}\"\n"))?;
            let program = if cmd::exists("mariadb-dump") {
                "mariadb-dump"
            } else {
                "mysqldump"
            };
            Cmd::new(program)
                .arg(format!("--defaults-extra-file={}", defaults.display()))
                .args([
                    "--single-transaction",
                    "--quick",
                    "--routines",
                    "--triggers",
                ])
                .arg("--default-character-set=utf8mb4")
                .args([
                    "--host",
                    &host,
                    "--port",
                    &port.to_string(),
                    "--user",
                    &user,
                ])
                .arg(name)
        }
        Engine::Sqlite => {
            return Err(BackupError::Database(
                "SQLite is copied by the store, not a dump program".into(),
            ))
        }
    })
}

/// Replaces the live database with the dump in `dir`, all or nothing:
/// - PostgreSQL: the dump becomes an SQL script that runs in one transaction after dropping
///   the current tables (a failure rolls everything back);
/// - MariaDB/MySQL (whose DDL is not transactional): loaded into a new database, then every
///   table swapped in with one atomic `RENAME TABLE`;
/// - SQLite: copied next to the live file, checked, then renamed over it while holding the
///   write lock.
///
/// The daemons' grants and the schema's newer migrations are for the caller to apply
/// afterwards (`install` does both).
pub async fn load(
    config: &Config,
    secrets: &Secrets,
    store: &Store,
    dir: &Path,
    scratch: &Path,
) -> Result<(), BackupError> {
    let engine = config.database.engine;
    let dump = dir.join(file_name(engine));
    if !dump.is_file() {
        return Err(BackupError::Manifest(format!(
            "the backup has no {} dump (database/{}): was it taken with another engine?",
            engine.as_str(),
            file_name(engine)
        )));
    }
    let result = match engine {
        Engine::Sqlite => load_sqlite(config, store, &dump).await,
        Engine::Postgres => {
            let (config, secrets) = (config.clone(), secrets.clone());
            let (dump, scratch) = (dump.clone(), scratch.to_path_buf());
            blocking(move || load_postgres(&config, &secrets, &dump, &scratch)).await
        }
        Engine::Mysql => {
            let (config, secrets) = (config.clone(), secrets.clone());
            let (dump, scratch) = (dump.clone(), scratch.to_path_buf());
            blocking(move || load_mysql(&config, &secrets, &dump, &scratch)).await
        }
    };
    let _ = std::fs::remove_file(credentials_path(scratch));
    result
}

async fn blocking(
    work: impl FnOnce() -> Result<(), BackupError> + Send + 'static,
) -> Result<(), BackupError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| BackupError::Database(format!("interrupted: {e}")))?
}

fn failed(what: &str) -> impl FnOnce(cmd::CmdError) -> BackupError + '_ {
    move |e| BackupError::Database(format!("{what}: {e}"))
}

/// Drops every table, view and sequence of the `public` schema (inside the restore's
/// transaction, so a failed restore brings them back).
const PG_DROP_ALL: &str = "DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND c.relkind IN ('v', 'm') LOOP
    EXECUTE format(CASE r.relkind WHEN 'v' THEN 'DROP VIEW IF EXISTS public.%I CASCADE'
                   ELSE 'DROP MATERIALIZED VIEW IF EXISTS public.%I CASCADE' END, r.relname);
  END LOOP;
  FOR r IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') LOOP
    EXECUTE format('DROP TABLE IF EXISTS public.%I CASCADE', r.relname);
  END LOOP;
  FOR r IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND c.relkind = 'S' LOOP
    EXECUTE format('DROP SEQUENCE IF EXISTS public.%I CASCADE', r.relname);
  END LOOP;
END $$;
";

fn load_postgres(
    config: &Config,
    secrets: &Secrets,
    dump: &Path,
    scratch: &Path,
) -> Result<(), BackupError> {
    let name = config.database.name.to_string();
    let script = scratch.join("restore.sql");
    Cmd::new("pg_restore")
        .args(["--no-owner", "--no-privileges"])
        .arg(format!("--file={}", script.display()))
        .arg(dump.to_string_lossy())
        .run()
        .map_err(failed("reading the PostgreSQL dump"))?;
    let drop_all = scratch.join("drop-all.sql");
    std::fs::write(&drop_all, PG_DROP_ALL).map_err(super::io(&drop_all))?;
    // The daemons' grants go with the tables they are on, in the same transaction.
    let grants = scratch.join("grants.sql");
    // pg_restore's script empties the search path; the grants name tables unqualified.
    let statements: String = std::iter::once("SET search_path = public".to_string())
        .chain(crate::store::roles::owner_grant_statements(config))
        .map(|s| format!("{s};\n"))
        .collect();
    std::fs::write(&grants, statements).map_err(super::io(&grants))?;
    let result = pg_client("psql", config, secrets, scratch, &name)?
        .args(["-X", "-q", "--single-transaction", "-v", "ON_ERROR_STOP=1"])
        .arg("-f")
        .arg(drop_all.to_string_lossy())
        .arg("-f")
        .arg(script.to_string_lossy())
        .arg("-f")
        .arg(grants.to_string_lossy())
        .env("PGOPTIONS", "--client-min-messages=warning")
        .run()
        .map(|_| ())
        .map_err(failed(
            "restoring the PostgreSQL database (nothing was changed)",
        ));
    let _ = std::fs::remove_file(&script);
    result
}

/// The MariaDB client as the server's administrator (socket authentication as root) for a
/// local server, as modobox's own user for an external one.
fn mysql_admin(config: &Config, secrets: &Secrets, scratch: &Path) -> Result<Cmd, BackupError> {
    let program = crate::store::local_admin::mysql_program();
    let db = &config.database;
    if db.location == crate::config::DbLocation::Local {
        return Ok(Cmd::new(program).args(["-N", "-B"]));
    }
    let defaults = write_credentials(
        scratch,
        &format!(
            "[client]\npassword=\"{}\"\n",
            secrets.database_password.expose()
        ),
    )?;
    Ok(Cmd::new(program)
        .arg(format!("--defaults-extra-file={}", defaults.display()))
        .args(["-N", "-B", "--host", &db.host.to_string()])
        .args([
            "--port",
            &db.port().to_string(),
            "--user",
            &db.user.to_string(),
        ]))
}

fn load_mysql(
    config: &Config,
    secrets: &Secrets,
    dump: &Path,
    scratch: &Path,
) -> Result<(), BackupError> {
    let name = config.database.name.to_string();
    let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S");
    let incoming = format!("{name}_restore_{stamp}");
    let retired = format!("{name}_before_restore_{stamp}");
    let admin = || mysql_admin(config, secrets, scratch);
    let sql = |text: String| -> Result<String, BackupError> {
        admin()?
            .stdin(text)
            .run()
            .map(|o| o.stdout)
            .map_err(failed("MariaDB"))
    };
    // What a restore killed half-way left: the database it was loading (the live one was not
    // touched yet), or the old tables it had just swapped out (the restored ones are live).
    let leftovers: Vec<String> = sql("SHOW DATABASES;".into())?
        .lines()
        .filter(|db| is_restore_leftover(&name, db))
        .map(|db| format!("DROP DATABASE `{db}`;"))
        .collect();
    if !leftovers.is_empty() {
        sql(leftovers.concat())?;
    }
    sql(format!(
        "CREATE DATABASE `{incoming}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;"
    ))?;
    let loaded = std::fs::read(dump)
        .map_err(super::io(dump))
        .and_then(|bytes| {
            admin()?.arg(&incoming).stdin(bytes).run().map_err(failed(
                "loading the MariaDB dump (the live database was not touched)",
            ))
        });
    if let Err(e) = loaded {
        let _ = sql(format!("DROP DATABASE `{incoming}`;"));
        return Err(e);
    }
    let tables = |db: &str| -> Result<Vec<String>, BackupError> {
        Ok(sql(format!(
            "SELECT table_name FROM information_schema.tables \
             WHERE table_schema = '{db}' AND table_type = 'BASE TABLE';"
        ))?
        .lines()
        .map(str::to_string)
        .filter(|t| !t.is_empty())
        .collect())
    };
    let live = tables(&name)?;
    let restored = tables(&incoming)?;
    crate::fault::point("restore.db-swap")?;
    let mut renames: Vec<String> = live
        .iter()
        .map(|t| format!("`{name}`.`{t}` TO `{retired}`.`{t}`"))
        .collect();
    renames.extend(
        restored
            .iter()
            .map(|t| format!("`{incoming}`.`{t}` TO `{name}`.`{t}`")),
    );
    // One statement: every client sees either all the old tables or all the restored ones.
    sql(format!(
        "CREATE DATABASE `{retired}`; SET FOREIGN_KEY_CHECKS = 0; RENAME TABLE {}; SET FOREIGN_KEY_CHECKS = 1;",
        renames.join(", ")
    ))?;
    sql(format!(
        "DROP DATABASE `{retired}`; DROP DATABASE `{incoming}`;"
    ))?;
    Ok(())
}

/// Whether `db` is one of the databases `load_mysql` makes for the live database `live`
/// (`<live>_restore_<stamp>`, `<live>_before_restore_<stamp>`).
fn is_restore_leftover(live: &str, db: &str) -> bool {
    ["_restore_", "_before_restore_"].iter().any(|middle| {
        db.strip_prefix(live)
            .and_then(|rest| rest.strip_prefix(middle))
            .is_some_and(|stamp| stamp.len() == 14 && stamp.bytes().all(|b| b.is_ascii_digit()))
    })
}

async fn load_sqlite(config: &Config, store: &Store, dump: &Path) -> Result<(), BackupError> {
    let live = config.database.sqlite_path.as_path();
    let incoming = live.with_extension("restoring");
    let io = super::io;
    std::fs::copy(dump, &incoming).map_err(io(&incoming))?;
    // The live file's owner, mode and ACLs (the daemons read it through ACLs) go to the new one.
    if let Ok(meta) = std::fs::metadata(live) {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        std::fs::set_permissions(
            &incoming,
            std::fs::Permissions::from_mode(meta.mode() & 0o7777),
        )
        .map_err(io(&incoming))?;
        std::os::unix::fs::chown(&incoming, Some(meta.uid()), Some(meta.gid()))
            .map_err(io(&incoming))?;
        if cmd::exists("getfacl") {
            if let Ok(acl) = Cmd::new("getfacl")
                .args(["-p", "--omit-header"])
                .arg(live.to_string_lossy())
                .run()
            {
                let _ = Cmd::new("setfacl")
                    .args(["--set-file=-"])
                    .arg(incoming.to_string_lossy())
                    .stdin(acl.stdout)
                    .run();
            }
        }
    }
    crate::store::check_sqlite_file(&incoming).await?;
    crate::fault::point("restore.db-swap")?;
    // The write lock: no transaction is half-way through the old file when it is replaced.
    let tx = store.begin().await?;
    let swapped = std::fs::rename(&incoming, live).map_err(io(live));
    drop(tx);
    swapped
}

/// A throw-away database holding a backup's dump, for `backup verify`: the configuration it
/// is reached with (the live one with another database name or SQLite file).
#[derive(Debug)]
pub struct ScratchDatabase {
    pub config: Config,
    created: bool,
}

/// Loads the dump in `dir` into a new scratch database (dropped by `ScratchDatabase::drop_it`).
pub async fn load_scratch(
    config: &Config,
    secrets: &Secrets,
    dir: &Path,
    scratch: &Path,
) -> Result<ScratchDatabase, BackupError> {
    let engine = config.database.engine;
    let dump = dir.join(file_name(engine));
    let mut scratch_config = config.clone();
    match engine {
        Engine::Sqlite => {
            let copy = scratch.join("verify.sqlite3");
            std::fs::copy(&dump, &copy).map_err(super::io(&copy))?;
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600));
            crate::store::check_sqlite_file(&copy).await?;
            scratch_config.database.sqlite_path =
                crate::names::SafePath::parse("sqlite_path", &copy.to_string_lossy())
                    .map_err(|e| BackupError::Database(e.to_string()))?;
            return Ok(ScratchDatabase {
                config: scratch_config,
                created: false,
            });
        }
        Engine::Postgres | Engine::Mysql => {}
    }
    let name = format!("{}_verify", config.database.name);
    scratch_config.database.name = crate::names::DbIdent::parse("database.name", &name)
        .map_err(|e| BackupError::Database(e.to_string()))?;
    let mut db = ScratchDatabase {
        config: scratch_config,
        created: false,
    };
    let (c, sec, dump, scr) = (
        config.clone(),
        secrets.clone(),
        dump.clone(),
        scratch.to_path_buf(),
    );
    let n = name.clone();
    let result = blocking(move || match c.database.engine {
        Engine::Postgres => scratch_postgres(&c, &sec, &n, &dump, &scr),
        _ => scratch_mysql(&c, &sec, &n, &dump, &scr),
    })
    .await;
    db.created = true;
    if let Err(e) = result {
        db.drop_it(secrets, scratch).await;
        return Err(e);
    }
    Ok(db)
}

impl ScratchDatabase {
    /// Removes the scratch database (or file); errors are ignored: it is only scratch.
    pub async fn drop_it(self, secrets: &Secrets, scratch: &Path) {
        if !self.created {
            return;
        }
        let (config, secrets, dir) = (self.config, secrets.clone(), scratch.to_path_buf());
        let scratch = dir.clone();
        let _ = blocking(move || {
            let name = config.database.name.to_string();
            match config.database.engine {
                Engine::Postgres => pg_admin(
                    &config,
                    &secrets,
                    &scratch,
                    &format!("DROP DATABASE IF EXISTS \"{name}\""),
                )
                .map(|_| ()),
                Engine::Mysql => mysql_admin(&config, &secrets, &scratch)?
                    .stdin(format!("DROP DATABASE IF EXISTS `{name}`;"))
                    .run()
                    .map(|_| ())
                    .map_err(failed("MariaDB")),
                Engine::Sqlite => Ok(()),
            }
        })
        .await;
        let _ = std::fs::remove_file(credentials_path(&dir));
    }
}

/// One statement on the `postgres` maintenance database: as the server's administrator for a
/// local server, as modobox's own role (which then needs CREATEDB) for an external one.
fn pg_admin(
    config: &Config,
    secrets: &Secrets,
    scratch: &Path,
    sql: &str,
) -> Result<String, BackupError> {
    let db = &config.database;
    let cmd = if db.location == crate::config::DbLocation::Local {
        crate::store::local_admin::client(Engine::Postgres, "postgres")
    } else {
        pg_client("psql", config, secrets, scratch, "postgres")?.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
        ])
    };
    cmd.stdin(sql.to_string())
        .run()
        .map(|o| o.stdout)
        .map_err(failed("PostgreSQL"))
}

fn scratch_postgres(
    config: &Config,
    secrets: &Secrets,
    name: &str,
    dump: &Path,
    scratch: &Path,
) -> Result<(), BackupError> {
    let user = config.database.user.to_string();
    pg_admin(
        config,
        secrets,
        scratch,
        &format!("DROP DATABASE IF EXISTS \"{name}\""),
    )?;
    pg_admin(
        config,
        secrets,
        scratch,
        &format!("CREATE DATABASE \"{name}\" OWNER \"{user}\" ENCODING 'UTF8' TEMPLATE template0"),
    )?;
    pg_client("pg_restore", config, secrets, scratch, name)?
        .args([
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
        ])
        .arg(dump.to_string_lossy())
        .run()
        .map(|_| ())
        .map_err(failed(
            "loading the PostgreSQL dump into a scratch database",
        ))
}

fn scratch_mysql(
    config: &Config,
    secrets: &Secrets,
    name: &str,
    dump: &Path,
    scratch: &Path,
) -> Result<(), BackupError> {
    let user = config.database.user.to_string();
    let mut script = format!(
        "DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;\n"
    );
    if config.database.location == crate::config::DbLocation::Local {
        for host in ["localhost", "127.0.0.1", "::1"] {
            script.push_str(&format!(
                "GRANT ALL PRIVILEGES ON `{name}`.* TO '{user}'@'{host}';\n"
            ));
        }
    }
    mysql_admin(config, secrets, scratch)?
        .stdin(script)
        .run()
        .map_err(failed("MariaDB"))?;
    let bytes = std::fs::read(dump).map_err(super::io(dump))?;
    mysql_admin(config, secrets, scratch)?
        .arg(name)
        .stdin(bytes)
        .run()
        .map(|_| ())
        .map_err(failed("loading the MariaDB dump into a scratch database"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_restore_s_own_databases_are_leftovers() {
        assert!(is_restore_leftover(
            "modobox",
            "modobox_restore_20261206131500"
        ));
        assert!(is_restore_leftover(
            "modobox",
            "modobox_before_restore_20261206131500"
        ));
        for other in [
            "modobox",
            "modobox_verify",
            "modobox_restore_",
            "modobox_restore_2026120613150x",
            "modobox_restore_202612061315001",
            "other_restore_20261206131500",
            "modobox2_restore_20261206131500",
        ] {
            assert!(!is_restore_leftover("modobox", other), "{other}");
        }
    }

    #[test]
    fn pgpass_escapes_separators() {
        assert_eq!(
            pgpass_line("127.0.0.1", 5432, "mod:box", "u\\x", "pw"),
            "127.0.0.1:5432:mod\\:box:u\\\\x:pw\n"
        );
    }
}
