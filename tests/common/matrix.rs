//! Role matrices: rows of (method, path, role, body, expected status) run by one loop, a
//! failing row named with its number, its request and both statuses.
#![allow(dead_code)]

use std::fmt::Debug;
use std::future::Future;

/// `role` sends `method path` with `body` ("" for none) and must get `status`. The path may
/// hold `{placeholders}` the test resolves at run time (ids of objects it created).
pub type Row<R> = (&'static str, &'static str, R, &'static str, u16);

/// Replaces each `{name}` in `template` by `value(name)`.
pub fn fill(template: &str, value: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = open + rest[open..].find('}').expect("a placeholder ends with }");
        out.push_str(&rest[..open]);
        out.push_str(&value(&rest[open + 1..close]));
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The name of a table's row in failure messages: "DOMAIN_ACCESS row 3".
fn row_label(table: &str, index: usize) -> String {
    format!("{table} row {}", index + 1)
}

/// Panics unless `got` is the row's status, naming the row ("DOMAIN_ACCESS row 3: DELETE
/// /domains/{domain_b}/ as DomainAdmin: expected 404, got 204") and showing the answer.
fn check<R: Debug>(label: &str, row: &Row<R>, got: u16, answer: &str) {
    let (method, path, role, body, want) = row;
    if got != *want {
        let with = if body.is_empty() {
            String::new()
        } else {
            format!(" with {body}")
        };
        panic!("{label}: {method} {path} as {role:?}{with}: expected {want}, got {got}\n{answer}");
    }
}

/// Runs a table's rows in order; `answer` sends a row's request and returns the answer's status
/// and body.
pub async fn check_rows<R, F>(table: &str, rows: &[Row<R>], answer: impl Fn(Row<R>) -> F)
where
    R: Copy + Debug,
    F: Future<Output = (u16, String)>,
{
    for (index, row) in rows.iter().enumerate() {
        let (status, body) = answer(*row).await;
        check(&row_label(table, index), row, status, &body);
    }
}

/// One row checked on its own, where it stands in a step.
pub async fn check_one<R, F>(row: Row<R>, answer: impl Fn(Row<R>) -> F)
where
    R: Copy + Debug,
    F: Future<Output = (u16, String)>,
{
    let (status, body) = answer(row).await;
    check("check", &row, status, &body);
}
