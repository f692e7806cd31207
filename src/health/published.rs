//! The status `modobox run` publishes for the web UI, which runs unprivileged and so cannot
//! gather it itself (D-Bus, Postfix's queue, the daemons' files): a JSON file with the time it
//! was written. The supervisor writes it (`supervisor::status`), the dashboard reads it.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Where the supervisor publishes it: root:modobox-web 0640.
pub const SNAPSHOT: &str = "/run/modobox/status.json";

/// How old a published status the web UI still shows.
const STALE_AFTER_SECONDS: i64 = 120;

#[derive(Serialize)]
struct Published<'a, T> {
    at: DateTime<Utc>,
    status: &'a T,
}

/// Writes a status snapshot, readable by `group` when that group exists.
pub fn write_snapshot<T: Serialize>(
    path: &Path,
    status: &T,
    group: Option<&str>,
) -> std::io::Result<()> {
    let json = serde_json::to_vec(&Published {
        at: Utc::now(),
        status,
    })
    .map_err(std::io::Error::other)?;
    let owner = group
        .filter(|g| uzers::get_group_by_name(g).is_some())
        .map(|g| crate::system::fs::Owner {
            user: "root".into(),
            group: g.into(),
        });
    crate::system::fs::write_atomic(path, &json, 0o640, owner.as_ref())
}

/// Why the dashboard has no status to show (its message is shown there).
#[derive(Debug, thiserror::Error)]
pub enum PublishedError {
    /// No file (or not readable): the supervisor is not running, or has not written it yet.
    #[error("no status published by the supervisor: is modobox.service running?")]
    Missing(#[source] std::io::Error),
    #[error("{}: {source}", path.display())]
    NotJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: no time", path.display())]
    NoTime { path: PathBuf },
    #[error("the supervisor's last status is {age} s old: is modobox.service running?")]
    Stale { age: i64 },
}

/// The status the supervisor published, if it is fresh; else why there is none.
pub fn read_snapshot(path: &Path) -> Result<serde_json::Value, PublishedError> {
    let bytes = std::fs::read(path).map_err(PublishedError::Missing)?;
    let mut v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|source| PublishedError::NotJson {
            path: path.to_path_buf(),
            source,
        })?;
    let at = v["at"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .ok_or_else(|| PublishedError::NoTime {
            path: path.to_path_buf(),
        })?;
    let age = (Utc::now() - at.with_timezone(&Utc)).num_seconds();
    if age > STALE_AFTER_SECONDS {
        return Err(PublishedError::Stale { age });
    }
    Ok(v["status"].take())
}
