//! The layout's dependency direction: each top-level module of `src/` may use only modules of
//! lower layers (never one of its own layer), so there is no circle between folders and
//! no arrow upwards. The table is the README's "Architecture" section; a new module, or a
//! `crate::` path that runs upwards, fails here with the file and the line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

/// Bottom to top. A module may use any module of a lower layer; modules of one layer do not
/// use each other.
const LAYERS: &[&[&str]] = &[
    &["names", "password", "fault"],
    &["system"],
    &["config", "distro", "secrets"],
    &["store"],
    &["keys"],
    &["dns"],
    &["milter", "policy"],
    &["render"],
    &["health"],
    &["stats", "reports"],
    &["service"],
    &["backup"],
    &["jobs"],
    &["install"],
    &["supervisor", "image"],
    &["upgrade"],
    &["web"],
    &["cli"],
];

/// Macros exported at the crate root, and the module that owns each.
const MACROS: &[(&str, &str)] = &[("args", "store")];

fn layer_of(module: &str) -> Option<usize> {
    let module = MACROS
        .iter()
        .find(|(m, _)| *m == module)
        .map_or(module, |(_, owner)| owner);
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The first segment of every `crate::x` path in a line of code.
fn crate_paths(code: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()))
            .unwrap_or(rest.len());
        if end > 0 {
            out.push(&rest[..end]);
        }
    }
    out
}

#[test]
fn modules_only_use_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut wrong = Vec::new();
    let mut edges: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let Some(from) = layer_of(&top) else {
            wrong.push(format!(
                "src/{}: module {top} is in no layer of this test's table",
                rel.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for to in crate_paths(code) {
                let owner = MACROS.iter().find(|(m, _)| *m == to).map_or(to, |(_, o)| o);
                if owner == top {
                    continue;
                }
                let ok = match layer_of(to) {
                    Some(l) => l < from,
                    None => false,
                };
                edges.entry(top.clone()).or_default().push(to.to_string());
                if !ok {
                    wrong.push(format!(
                        "src/{}:{}: {top} uses crate::{to}, which is not below it",
                        rel.display(),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The table is not empty talk: the top uses most of what is below it.
    assert!(edges.get("cli").is_some_and(|e| e.len() > 10));
}
