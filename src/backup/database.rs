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
            Engine::Sqlite => store
                .copy_sqlite_into(&out)
                .await
                .map_err(BackupError::from),
            Engine::Postgres | Engine::Mysql => {
                let command = dump_command(config, secrets, &out, scratch)?;
                tokio::task::spawn_blocking(move || command.run())
                    .await
                    .map_err(|e| BackupError::Database(format!("the dump was interrupted: {e}")))?
                    .map(|_| ())
                    .map_err(|e| BackupError::Database(e.to_string()))
            }
        }
    })
    .await?;
    let _ = std::fs::remove_file(credentials_path(scratch));
    result?;
    Ok(version)
}

fn credentials_path(scratch: &Path) -> PathBuf {
    scratch.join("db-credentials")
}

/// Writes the credentials file for the client programs (mode 0600).
fn write_credentials(scratch: &Path, text: &str) -> Result<PathBuf, BackupError> {
    let path = credentials_path(scratch);
    crate::system::fs::write_atomic(&path, text.as_bytes(), 0o600, None).map_err(|source| {
        BackupError::Io {
            path: path.display().to_string(),
            source,
        }
    })?;
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

fn dump_command(
    config: &Config,
    secrets: &Secrets,
    out: &Path,
    scratch: &Path,
) -> Result<Cmd, BackupError> {
    let db = &config.database;
    let (host, port) = (db.host.to_string(), db.port());
    let (name, user) = (db.name.to_string(), db.user.to_string());
    let password = secrets.database_password.expose();
    Ok(match db.engine {
        Engine::Postgres => {
            let pass = write_credentials(scratch, &pgpass_line(&host, port, &name, &user, password))?;
            Cmd::new("pg_dump")
                .args(["--format=custom", "--no-owner", "--no-privileges"])
                .arg(format!("--file={}", out.display()))
                .args(["--host", &host, "--port", &port.to_string()])
                .args(["--username", &user, "--dbname", &name, "--no-password"])
                .env("PGPASSFILE", &pass.to_string_lossy())
                .env("PGCONNECT_TIMEOUT", "10")
        }
        Engine::Mysql => {
            // The option file must come first on the command line.
            let defaults = write_credentials(
                scratch,
                &format!("[client]\npassword=\"{password}\"\n"),
            )?;
            let program = if cmd::exists("mariadb-dump") {
                "mariadb-dump"
            } else {
                "mysqldump"
            };
            Cmd::new(program)
                .arg(format!("--defaults-extra-file={}", defaults.display()))
                .args(["--single-transaction", "--quick", "--routines", "--triggers"])
                .args(["--default-character-set=utf8mb4", "--connect-timeout=10"])
                .args(["--host", &host, "--port", &port.to_string(), "--user", &user])
                .arg(format!("--result-file={}", out.display()))
                .arg(name)
        }
        Engine::Sqlite => {
            return Err(BackupError::Database(
                "SQLite is copied by the store, not a dump program".into(),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgpass_escapes_separators() {
        assert_eq!(
            pgpass_line("127.0.0.1", 5432, "mod:box", "u\\x", "pw"),
            "127.0.0.1:5432:mod\\:box:u\\\\x:pw\n"
        );
    }
}
