//! The local database server's administrator, for what modobox's own role may not do (create
//! databases and roles, grant, drop a scratch database): PostgreSQL's `postgres` through its
//! socket, MariaDB's root through socket authentication. SQL goes in on standard input.

use crate::config::Engine;
use crate::system::cmd::{self, Cmd};

/// MariaDB's client: `mariadb`, or `mysql` where only the older name exists.
pub fn mysql_program() -> &'static str {
    if cmd::exists("mariadb") {
        "mariadb"
    } else {
        "mysql"
    }
}

/// The administrator's client on `database`; rows come out as `a|b` (PostgreSQL) or
/// tab-separated (MariaDB) lines without headers.
pub fn client(engine: Engine, database: &str) -> Cmd {
    match engine {
        Engine::Mysql => Cmd::new(mysql_program()).args(["-N", "-B", database]),
        _ => Cmd::new("runuser").args([
            "-u",
            "postgres",
            "--",
            "psql",
            "-X",
            "-q",
            "-A",
            "-t",
            "-F",
            "|",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            database,
        ]),
    }
}
