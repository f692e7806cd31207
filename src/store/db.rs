//! The one place that speaks to sqlx: a transaction over any of the three engines, bind values
//! and row accessors. Every statement is written once with `?` placeholders; PostgreSQL gets
//! them renumbered to `$1, $2...` here. Timestamps are UTC everywhere; SQLite stores them as
//! text in Django's format so that an adopted database and Postfix's comparisons agree. The
//! shapes every paged list shares live here too: `Page` and the escaped `LIKE` pattern.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;
use sqlx::mysql::{MySql, MySqlRow};
use sqlx::postgres::{PgRow, Postgres};
use sqlx::sqlite::{Sqlite, SqliteRow};
use sqlx::{Row as _, Transaction};

use super::{Backend, StoreError};

/// One page of results and how many there are in all.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: i64,
}

impl<T> Page<T> {
    /// Nothing found.
    pub fn empty() -> Self {
        Page {
            items: Vec::new(),
            total: 0,
        }
    }
}

/// A `LIKE` pattern matching `text` anywhere, its wildcards escaped with `!` (the one escape
/// character all three engines accept the same way: `LIKE ? ESCAPE '!'`).
pub fn contains_pattern(text: &str) -> String {
    format!("%{}", prefix_pattern(text))
}

/// A LIKE pattern (escape `!`) for text that starts with `text`, lower-cased.
pub fn prefix_pattern(text: &str) -> String {
    let mut p = String::new();
    // No name holds a control character, and PostgreSQL refuses a NUL in text.
    for c in text.to_lowercase().chars().filter(|c| !c.is_control()) {
        if matches!(c, '!' | '%' | '_') {
            p.push('!');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// A value bound to a `?` placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    I32(i32),
    I64(i64),
    Bool(bool),
    Text(String),
    Ts(DateTime<Utc>),
    /// SQL NULL, whatever the column's type.
    NullInt,
    NullText,
    NullTs,
}

impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::I32(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::I64(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
impl From<DateTime<Utc>> for Value {
    fn from(v: DateTime<Utc>) -> Self {
        Value::Ts(v)
    }
}
impl From<Option<i32>> for Value {
    fn from(v: Option<i32>) -> Self {
        v.map_or(Value::NullInt, Value::I32)
    }
}
impl From<Option<String>> for Value {
    fn from(v: Option<String>) -> Self {
        v.map_or(Value::NullText, Value::Text)
    }
}
impl From<Option<DateTime<Utc>>> for Value {
    fn from(v: Option<DateTime<Utc>>) -> Self {
        v.map_or(Value::NullTs, Value::Ts)
    }
}

/// `args![a, b, c]` → `&[Value]` for the query helpers.
#[macro_export]
macro_rules! args {
    ($($v:expr),* $(,)?) => { &[$($crate::store::db::Value::from($v)),*][..] };
}

/// Django's SQLite datetime text; sorts and compares like the instant it names.
const SQLITE_TS: &str = "%Y-%m-%d %H:%M:%S%.6f";

fn sqlite_ts(ts: &DateTime<Utc>) -> String {
    ts.naive_utc().format(SQLITE_TS).to_string()
}

fn parse_sqlite_ts(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
        return Some(dt.with_timezone(&Utc));
    }
    // Django writes naive UTC, sometimes with a "+00:00" suffix.
    let naive = text.strip_suffix("+00:00").unwrap_or(text);
    [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(naive, f).ok())
    .map(|n| n.and_utc())
}

/// Values bound in one IN list by `Tx::rows_in`.
const IN_CHUNK: usize = 1000;

/// `?, ?, ...` for an `IN` list of `n` values.
fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// `?` → `$n` outside string literals (PostgreSQL's placeholder syntax).
pub fn numbered_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    let mut in_quote = false;
    for c in sql.chars() {
        match c {
            '\'' => {
                in_quote = !in_quote;
                out.push(c);
            }
            '?' if !in_quote => {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => out.push(c),
        }
    }
    out
}

macro_rules! bind_all {
    ($query:expr, $args:expr, |$ts:ident| $ts_conv:expr) => {{
        let mut q = $query;
        for a in $args {
            q = match a {
                Value::I32(v) => q.bind(*v),
                Value::I64(v) => q.bind(*v),
                Value::Bool(v) => q.bind(*v),
                Value::Text(v) => q.bind(v.as_str()),
                Value::Ts($ts) => q.bind($ts_conv),
                Value::NullInt => q.bind(None::<i32>),
                Value::NullText => q.bind(None::<String>),
                Value::NullTs => q.bind(None::<DateTime<Utc>>),
            };
        }
        q
    }};
}

/// One open transaction. Dropping it without `commit` rolls back. It carries what its store
/// learnt of an adopted Modoboa schema (`modoboa_schema`), read on first use.
#[derive(Debug)]
pub struct Tx {
    conn: Conn,
    pub(super) schema: super::modoboa_schema::Cache,
}

#[derive(Debug)]
enum Conn {
    Postgres(Transaction<'static, Postgres>),
    Mysql(Transaction<'static, MySql>),
    Sqlite(Transaction<'static, Sqlite>),
}

/// A result row; columns are read by name.
pub enum Row {
    Postgres(PgRow),
    Mysql(MySqlRow),
    Sqlite(SqliteRow),
}

impl Tx {
    pub(super) fn postgres(
        t: Transaction<'static, Postgres>,
        schema: super::modoboa_schema::Cache,
    ) -> Tx {
        Tx {
            conn: Conn::Postgres(t),
            schema,
        }
    }
    pub(super) fn mysql(
        t: Transaction<'static, MySql>,
        schema: super::modoboa_schema::Cache,
    ) -> Tx {
        Tx {
            conn: Conn::Mysql(t),
            schema,
        }
    }
    pub(super) fn sqlite(
        t: Transaction<'static, Sqlite>,
        schema: super::modoboa_schema::Cache,
    ) -> Tx {
        Tx {
            conn: Conn::Sqlite(t),
            schema,
        }
    }

    pub fn backend(&self) -> Backend {
        match self.conn {
            Conn::Postgres(_) => Backend::Postgres,
            Conn::Mysql(_) => Backend::Mysql,
            Conn::Sqlite(_) => Backend::Sqlite,
        }
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        match self.conn {
            Conn::Postgres(t) => t.commit().await?,
            Conn::Mysql(t) => t.commit().await?,
            Conn::Sqlite(t) => t.commit().await?,
        }
        Ok(())
    }

    /// Runs a statement; returns the number of rows it changed.
    pub async fn exec(&mut self, sql: &str, args: &[Value]) -> Result<u64, StoreError> {
        Ok(match &mut self.conn {
            Conn::Postgres(t) => {
                let sql = numbered_placeholders(sql);
                bind_all!(sqlx::query(&sql), args, |ts| *ts)
                    .execute(&mut **t)
                    .await?
                    .rows_affected()
            }
            Conn::Mysql(t) => bind_all!(sqlx::query(sql), args, |ts| *ts)
                .execute(&mut **t)
                .await?
                .rows_affected(),
            Conn::Sqlite(t) => bind_all!(sqlx::query(sql), args, |ts| sqlite_ts(ts))
                .execute(&mut **t)
                .await?
                .rows_affected(),
        })
    }

    /// Runs an INSERT into a table with an `id` key and returns the new id.
    pub async fn insert(&mut self, sql: &str, args: &[Value]) -> Result<i64, StoreError> {
        Ok(match &mut self.conn {
            Conn::Postgres(t) => {
                let sql = numbered_placeholders(&format!("{sql} RETURNING id"));
                let row = bind_all!(sqlx::query(&sql), args, |ts| *ts)
                    .fetch_one(&mut **t)
                    .await?;
                // serial (int4) for Modoboa's tables, bigserial for modobox's own logs.
                match row.try_get::<i32, _>(0) {
                    Ok(id) => i64::from(id),
                    Err(_) => row.try_get::<i64, _>(0)?,
                }
            }
            Conn::Mysql(t) => {
                let done = bind_all!(sqlx::query(sql), args, |ts| *ts)
                    .execute(&mut **t)
                    .await?;
                i64::try_from(done.last_insert_id()).map_err(|_| StoreError::Corrupt {
                    what: "an insert id out of range".into(),
                })?
            }
            Conn::Sqlite(t) => bind_all!(sqlx::query(sql), args, |ts| sqlite_ts(ts))
                .execute(&mut **t)
                .await?
                .last_insert_rowid(),
        })
    }

    /// The rows of `sql`, whose `{in}` stands for an IN list over `values`, in chunks well
    /// below every engine's limit of bound values (SQLite 32,766, PostgreSQL and MariaDB
    /// 65,535: a list of 100,000 accounts in one statement is refused); `before` is bound
    /// first in each chunk. Rows come chunk after chunk (ORDER BY holds within a chunk).
    pub async fn rows_in(
        &mut self,
        sql: &str,
        before: &[Value],
        values: &[Value],
    ) -> Result<Vec<Row>, StoreError> {
        let mut out = Vec::new();
        for chunk in values.chunks(IN_CHUNK) {
            let mut args = before.to_vec();
            args.extend_from_slice(chunk);
            out.extend(
                self.rows(&sql.replace("{in}", &marks(chunk.len())), &args)
                    .await?,
            );
        }
        Ok(out)
    }

    pub async fn rows(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Row>, StoreError> {
        Ok(match &mut self.conn {
            Conn::Postgres(t) => {
                let sql = numbered_placeholders(sql);
                bind_all!(sqlx::query(&sql), args, |ts| *ts)
                    .fetch_all(&mut **t)
                    .await?
                    .into_iter()
                    .map(Row::Postgres)
                    .collect()
            }
            Conn::Mysql(t) => bind_all!(sqlx::query(sql), args, |ts| *ts)
                .fetch_all(&mut **t)
                .await?
                .into_iter()
                .map(Row::Mysql)
                .collect(),
            Conn::Sqlite(t) => bind_all!(sqlx::query(sql), args, |ts| sqlite_ts(ts))
                .fetch_all(&mut **t)
                .await?
                .into_iter()
                .map(Row::Sqlite)
                .collect(),
        })
    }

    pub async fn row(&mut self, sql: &str, args: &[Value]) -> Result<Option<Row>, StoreError> {
        Ok(self.rows(sql, args).await?.into_iter().next())
    }

    /// A single integer (COUNT, SUM...), 0 when there is no row or it is NULL.
    /// The row `sql` finds, else `StoreError::NotFound` naming `kind` and `name`.
    pub async fn row_or_not_found(
        &mut self,
        sql: &str,
        args: &[Value],
        kind: &'static str,
        name: &(dyn std::fmt::Display + Sync),
    ) -> Result<Row, StoreError> {
        self.row(sql, args)
            .await?
            .ok_or_else(|| StoreError::not_found(kind, name))
    }

    /// Whether a table (or view) of that name exists in the connected database.
    pub async fn table_exists(&mut self, name: &str) -> Result<bool, StoreError> {
        let sql = match self.backend() {
            Backend::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?"
            }
            Backend::Mysql => {
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?"
            }
            Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?"
            }
        };
        Ok(self.count(sql, &[Value::from(name)]).await? > 0)
    }

    /// Runs `sql`, whose `{in}` stands for an IN list over `values`, in chunks (as `rows_in`);
    /// returns the number of rows changed in all.
    pub async fn exec_in(&mut self, sql: &str, values: &[Value]) -> Result<u64, StoreError> {
        let mut changed = 0;
        for chunk in values.chunks(IN_CHUNK) {
            changed += self
                .exec(&sql.replace("{in}", &marks(chunk.len())), chunk)
                .await?;
        }
        Ok(changed)
    }

    /// A trivial query: 1 when the database answers (connection checks, the health probe).
    pub async fn ping(&mut self) -> Result<i64, StoreError> {
        self.count("SELECT COUNT(*) FROM (SELECT 1 AS one) t", &[])
            .await
    }

    pub async fn count(&mut self, sql: &str, args: &[Value]) -> Result<i64, StoreError> {
        match self.row(sql, args).await? {
            Some(row) => Ok(row.opt_i64_at(0)?.unwrap_or(0)),
            None => Ok(0),
        }
    }

    /// `SUM(expr)` as an integer on every engine (MySQL sums integers into DECIMAL, PostgreSQL
    /// sums bigints into NUMERIC).
    pub fn sum_int(&self, expr: &str) -> String {
        match self.conn {
            Conn::Mysql(_) => format!("CAST(COALESCE(SUM({expr}), 0) AS SIGNED)"),
            Conn::Postgres(_) => format!("CAST(COALESCE(SUM({expr}), 0) AS BIGINT)"),
            _ => format!("COALESCE(SUM({expr}), 0)"),
        }
    }
}

impl std::fmt::Debug for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Row")
    }
}

macro_rules! get {
    ($row:expr, $col:expr, $ty:ty) => {
        match $row {
            Row::Postgres(r) => r.try_get::<$ty, _>($col)?,
            Row::Mysql(r) => r.try_get::<$ty, _>($col)?,
            Row::Sqlite(r) => r.try_get::<$ty, _>($col)?,
        }
    };
}

impl Row {
    pub fn i32(&self, col: &str) -> Result<i32, StoreError> {
        self.opt_i32(col)?.ok_or(StoreError::Corrupt {
            what: format!("NULL in column {col}"),
        })
    }
    pub fn opt_i32(&self, col: &str) -> Result<Option<i32>, StoreError> {
        match self {
            // Modoboa's MySQL schema has `int unsigned` quota columns.
            Row::Mysql(r) => match r.try_get::<Option<i32>, _>(col) {
                Ok(v) => Ok(v),
                Err(_) => r
                    .try_get::<Option<u32>, _>(col)?
                    .map(|v| {
                        i32::try_from(v).map_err(|_| StoreError::Corrupt {
                            what: format!("{v} out of range in column {col}"),
                        })
                    })
                    .transpose(),
            },
            _ => Ok(get!(self, col, Option<i32>)),
        }
    }
    pub fn i64(&self, col: &str) -> Result<i64, StoreError> {
        Ok(get!(self, col, i64))
    }
    /// An integer column of any width (an id: serial in Modoboa's tables, bigint in others).
    pub fn any_int(&self, col: &str) -> Result<i64, StoreError> {
        match self.opt_i32(col) {
            Ok(Some(v)) => Ok(i64::from(v)),
            _ => self.i64(col),
        }
    }
    fn opt_i64_at(&self, idx: usize) -> Result<Option<i64>, StoreError> {
        Ok(get!(self, idx, Option<i64>))
    }
    pub fn bool(&self, col: &str) -> Result<bool, StoreError> {
        Ok(get!(self, col, bool))
    }
    pub fn text(&self, col: &str) -> Result<String, StoreError> {
        Ok(get!(self, col, String))
    }
    pub fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
        Ok(get!(self, col, Option<String>))
    }
    pub fn opt_ts(&self, col: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        match self {
            Row::Postgres(r) => Ok(r.try_get::<Option<DateTime<Utc>>, _>(col)?),
            Row::Mysql(r) => Ok(r.try_get::<Option<DateTime<Utc>>, _>(col)?),
            Row::Sqlite(r) => match r.try_get::<Option<String>, _>(col)? {
                None => Ok(None),
                Some(text) => parse_sqlite_ts(&text).map(Some).ok_or(StoreError::Corrupt {
                    what: format!("a timestamp that cannot be read in column {col}"),
                }),
            },
        }
    }
    pub fn ts(&self, col: &str) -> Result<DateTime<Utc>, StoreError> {
        self.opt_ts(col)?.ok_or(StoreError::Corrupt {
            what: format!("NULL in column {col}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_renumbered_outside_quotes() {
        assert_eq!(
            numbered_placeholders("SELECT '?' FROM t WHERE a = ? AND b = ?"),
            "SELECT '?' FROM t WHERE a = $1 AND b = $2"
        );
    }

    #[test]
    fn sqlite_timestamps_read_django_and_modobox_forms() {
        let t = parse_sqlite_ts("2024-03-01 12:30:00.250000").unwrap();
        assert_eq!(sqlite_ts(&t), "2024-03-01 12:30:00.250000");
        assert_eq!(
            parse_sqlite_ts("2024-03-01 12:30:00"),
            Some(t - chrono::Duration::milliseconds(250))
        );
        assert!(parse_sqlite_ts("2024-03-01T12:30:00+00:00").is_some());
        assert!(parse_sqlite_ts("yesterday").is_none());
    }
}
