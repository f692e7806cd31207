//! What the commands print: JSON, aligned tables, yes/no and quotas.

use std::io::Write;

use anyhow::Result;
use serde::Serialize;

pub(super) fn print_json<T: Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub(super) fn table(rows: Vec<Vec<String>>) {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = std::io::stdout().lock();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
}

pub(super) fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

pub(super) fn quota(mb: i32) -> String {
    if mb == 0 {
        "unlimited".into()
    } else {
        format!("{mb} MB")
    }
}
