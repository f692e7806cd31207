//! The `public_api` job (Modoboa's `communicate_with_public_api`, versions part only): fetch
//! the newest published versions from `<public_api.url>versions/` and keep them in
//! `modobox_setting` (`public_api.latest.<name>`, `public_api.checked_at`), so that `status`
//! and the UI can say when a newer modobox is out. Opt-out: disabled, nothing leaves the host.

use std::cmp::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::config::Config;
use crate::names::{HttpUrl, NameError};
use crate::store::{parameters, Store, StoreError};
use crate::system::http::{self, HttpError};

/// Largest answer read; Modoboa's list is a few kilobytes.
pub const MAX_BODY: usize = 1 << 20;
pub const LATEST_PREFIX: &str = "public_api.latest.";
pub const CHECKED_AT: &str = "public_api.checked_at";
/// The component whose newer version makes an upgrade notice.
pub const COMPONENT: &str = "modobox";

/// One entry of the API's answer: `[{"name": "modoboa", "version": "2.4.1", "url": ...}]`.
#[derive(Debug, Deserialize)]
struct Entry {
    name: String,
    version: String,
}

/// Why the versions could not be fetched or kept.
#[derive(Debug, thiserror::Error)]
pub enum PublicApiError {
    #[error(transparent)]
    Url(#[from] NameError),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("{url}: {source}")]
    Answer {
        url: HttpUrl,
        #[source]
        source: AnswerError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What is wrong with the API's answer.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("the answer is not the expected JSON (a list of {{\"name\", \"version\"}}): {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("none of the {total} entries has a usable name and version")]
    NoUsableEntry { total: usize },
}

/// The scheduler's entry point.
pub async fn run(config: &Config, store: &Store) -> Result<String, PublicApiError> {
    let settings = &config.public_api;
    if !settings.enabled {
        return Ok("skipped: public_api.enabled = false (nothing sent)".into());
    }
    fetch_and_store(
        store,
        &settings.url,
        Duration::from_secs(settings.timeout_secs),
        Utc::now(),
    )
    .await
}

/// Fetches the versions list from `url` (the API root) and stores it, at the instant `now`.
pub async fn fetch_and_store(
    store: &Store,
    url: &HttpUrl,
    timeout: Duration,
    now: DateTime<Utc>,
) -> Result<String, PublicApiError> {
    let versions_url = url.join_dir("versions/")?;
    let body = http::get(&versions_url, timeout, MAX_BODY).await?;
    let versions = match parse_versions(&body) {
        Ok(v) => v,
        Err(source) => {
            return Err(PublicApiError::Answer {
                url: versions_url,
                source,
            })
        }
    };
    let mut tx = store.begin().await?;
    for (name, version) in &versions {
        parameters::set_setting(&mut tx, &format!("{LATEST_PREFIX}{name}"), version).await?;
    }
    parameters::set_setting(&mut tx, CHECKED_AT, &now.to_rfc3339()).await?;
    tx.commit().await?;
    let ours = versions
        .iter()
        .find(|(n, _)| n == COMPONENT)
        .map(|(_, v)| v.as_str());
    let verdict = match ours {
        Some(latest) if newer(latest, env!("CARGO_PKG_VERSION")) => {
            format!("{COMPONENT} {latest} is available")
        }
        Some(_) => format!("{COMPONENT} is up to date"),
        None => format!("{COMPONENT} is not listed"),
    };
    Ok(format!("{} versions received, {verdict}", versions.len()))
}

/// Reads the API's answer: a JSON list of objects with `name` and `version`. Entries with a
/// name or version that could not be a package's are dropped (they end up in settings names).
fn parse_versions(body: &[u8]) -> Result<Vec<(String, String)>, AnswerError> {
    let entries: Vec<Entry> = serde_json::from_slice(body).map_err(AnswerError::NotJson)?;
    let total = entries.len();
    let mut out: Vec<(String, String)> = Vec::new();
    for e in entries {
        let name = e.name.trim().to_ascii_lowercase();
        let version = e.version.trim().to_string();
        let name_ok = !name.is_empty()
            && name.len() <= 60
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        let version_ok = !version.is_empty()
            && version.len() <= 40
            && version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+'));
        if name_ok && version_ok && !out.iter().any(|(n, _)| *n == name) {
            out.push((name, version));
        }
    }
    if out.is_empty() && total > 0 {
        return Err(AnswerError::NoUsableEntry { total });
    }
    Ok(out)
}

/// Whether version `a` is newer than `b` (`1.10.0` > `1.9.3`; `2.0.0` > `2.0.0rc1`). A version
/// that does not start with a number is never newer.
pub fn newer(a: &str, b: &str) -> bool {
    match (parse_version(a), parse_version(b)) {
        (Some(a), Some(b)) => compare(&a, &b) == Ordering::Greater,
        _ => false,
    }
}

/// The numeric parts and whether a pre-release suffix follows (`1.2.0rc1` → [1, 2, 0], true).
fn parse_version(text: &str) -> Option<(Vec<u64>, bool)> {
    let text = text.trim().trim_start_matches(['v', 'V']);
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (numbers, suffix) = text.split_at(end);
    let parts: Vec<u64> = numbers
        .split('.')
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    if parts.is_empty() {
        return None;
    }
    // "+build" metadata does not make a pre-release.
    let pre = !suffix.is_empty() && !suffix.starts_with('+');
    Some((parts, pre))
}

fn compare(a: &(Vec<u64>, bool), b: &(Vec<u64>, bool)) -> Ordering {
    let len = a.0.len().max(b.0.len());
    for i in 0..len {
        let (x, y) = (
            a.0.get(i).copied().unwrap_or(0),
            b.0.get(i).copied().unwrap_or(0),
        );
        match x.cmp(&y) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    // Same numbers: the release is newer than its pre-release.
    b.1.cmp(&a.1)
}

/// "modobox X is available (this is Y)" when the last fetched list names a newer modobox.
pub async fn upgrade_notice(store: &Store) -> Option<String> {
    let mut tx = store.begin().await.ok()?;
    let latest = parameters::setting(&mut tx, &format!("{LATEST_PREFIX}{COMPONENT}"))
        .await
        .ok()??;
    let _ = tx.commit().await;
    let ours = env!("CARGO_PKG_VERSION");
    newer(&latest, ours).then(|| {
        format!("{COMPONENT} {latest} is available (this is {ours}): `modobox upgrade` installs it")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert!(newer("1.10.0", "1.9.3"));
        assert!(!newer("1.9.3", "1.10.0"));
        assert!(!newer("1.2.0", "1.2"));
        assert!(newer("1.2.1", "1.2"));
        assert!(newer("2.0.0", "2.0.0rc1"));
        assert!(!newer("2.0.0rc1", "2.0.0"));
        assert!(newer("v0.2.0", "0.1.0"));
        assert!(!newer("0.1.0+build5", "0.1.0"));
        assert!(!newer("latest", "0.1.0"));
        assert!(!newer("0.1.0", "0.1.0"));
    }

    #[test]
    fn answer_is_read_and_sanitised() {
        let v = parse_versions(
            br#"[{"name": "modoboa", "version": "2.4.1", "url": "https://x/"},
                 {"name": "Modobox", "version": "0.2.0"},
                 {"name": "../../etc", "version": "1"},
                 {"name": "modoboa-amavis", "version": "1.6.3; DROP"}]"#,
        )
        .unwrap();
        assert_eq!(
            v,
            vec![
                ("modoboa".to_string(), "2.4.1".to_string()),
                ("modobox".to_string(), "0.2.0".to_string())
            ]
        );
        assert!(parse_versions(b"{\"name\": \"modoboa\"}").is_err());
        assert!(parse_versions(b"<html>").is_err());
        assert!(parse_versions(br#"[{"name": "", "version": ""}]"#).is_err());
        assert_eq!(parse_versions(b"[]").unwrap(), vec![]);
    }
}
