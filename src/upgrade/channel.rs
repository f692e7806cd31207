//! The release channel (`upgrade.url`): a JSON index of releases, each with its binary's URL,
//! SHA-256 and minisign signature URL. The newest release for this machine's architecture is
//! fetched, checked against the index's SHA-256, then against its signature (the index alone
//! proves nothing: whoever can change it can change the checksum too).

use std::time::Duration;

use serde::Deserialize;

use super::signature::{SignatureError, TrustedKeys};
use super::{stage, Staged, UpgradeError, MAX_DOWNLOAD_BYTES};
use crate::names::HttpUrl;

/// Longest wait for each download.
const TIMEOUT: Duration = Duration::from_secs(300);
const MAX_INDEX_BYTES: usize = 1024 * 1024;
const MAX_SIGNATURE_BYTES: usize = 64 * 1024;

/// `{"releases": [{"version": "0.2.0", "arch": "x86_64", "url": "https://…/modobox",
/// "sha256": "…", "signature": "https://…/modobox.minisig"}]}`; `signature` defaults to the
/// binary's URL + `.minisig`, `arch` to any.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Index {
    pub releases: Vec<Release>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Release {
    pub version: String,
    #[serde(default)]
    pub arch: Option<String>,
    pub url: String,
    pub sha256: String,
    #[serde(default)]
    pub signature: Option<String>,
}

fn channel_error(url: &HttpUrl, what: impl std::fmt::Display) -> UpgradeError {
    UpgradeError::Channel(format!("release channel {}: {what}", url.as_str()))
}

/// The newest release of the index for `arch`.
pub fn newest<'a>(index: &'a Index, arch: &str) -> Option<&'a Release> {
    index
        .releases
        .iter()
        .filter(|r| r.arch.as_deref().is_none_or(|a| a == arch))
        .filter(|r| r.version.starts_with(|c: char| c.is_ascii_digit()))
        .reduce(|best, r| {
            if crate::jobs::public_api::newer(&r.version, &best.version) {
                r
            } else {
                best
            }
        })
}

/// Fetches the index at `url`, then the newest release's binary and signature; verifies both
/// and stages the binary.
pub async fn fetch(
    url: &HttpUrl,
    keys: &TrustedKeys,
    data: &std::path::Path,
) -> Result<Staged, UpgradeError> {
    let body = crate::system::http::get(url, TIMEOUT, MAX_INDEX_BYTES)
        .await
        .map_err(|e| channel_error(url, e))?;
    let index: Index = serde_json::from_slice(&body)
        .map_err(|e| channel_error(url, format!("not a release index ({e})")))?;
    let release = newest(&index, std::env::consts::ARCH)
        .ok_or_else(|| channel_error(url, format!("no release for {}", std::env::consts::ARCH)))?;
    let resolve = |field: &str, link: &str| {
        let joined = url
            .as_url()
            .join(link)
            .map_err(|e| channel_error(url, format!("{field} {link:?}: {e}")))?;
        HttpUrl::parse(field, joined.as_str()).map_err(|e| channel_error(url, e))
    };
    let binary_url = resolve("url", &release.url)?;
    let signature_url = resolve(
        "signature",
        &release
            .signature
            .clone()
            .unwrap_or_else(|| format!("{}.minisig", release.url)),
    )?;
    let binary = crate::system::http::get(&binary_url, TIMEOUT, MAX_DOWNLOAD_BYTES)
        .await
        .map_err(|e| channel_error(url, e))?;
    let sum = crate::render::manifest::checksum(&binary);
    if !sum.eq_ignore_ascii_case(release.sha256.trim()) {
        return Err(channel_error(
            url,
            format!(
                "{} has SHA-256 {sum}, the index says {}: refused",
                binary_url.as_str(),
                release.sha256
            ),
        ));
    }
    let signature =
        match crate::system::http::get(&signature_url, TIMEOUT, MAX_SIGNATURE_BYTES).await {
            Ok(s) => String::from_utf8_lossy(&s).into_owned(),
            Err(crate::system::http::HttpError::Status { status: 404, .. }) => {
                return Err(SignatureError::Unsigned {
                    what: binary_url.as_str().to_string(),
                    path: signature_url.as_str().to_string(),
                }
                .into())
            }
            Err(e) => return Err(channel_error(url, e)),
        };
    stage(
        keys,
        binary_url.as_str(),
        binary.as_slice(),
        &signature,
        data,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_release_for_this_architecture_is_chosen() {
        let index: Index = serde_json::from_str(
            r#"{"releases": [
                {"version": "0.2.0", "url": "a", "sha256": "x"},
                {"version": "0.10.0", "arch": "aarch64", "url": "b", "sha256": "x"},
                {"version": "0.9.1", "arch": "x86_64", "url": "c", "sha256": "x"},
                {"version": "latest", "url": "d", "sha256": "x"}
            ]}"#,
        )
        .unwrap();
        assert_eq!(newest(&index, "x86_64").unwrap().url, "c");
        assert_eq!(newest(&index, "aarch64").unwrap().url, "b");
        assert_eq!(newest(&index, "riscv64").unwrap().url, "a");
        assert!(newest(&Index { releases: vec![] }, "x86_64").is_none());
    }
}
