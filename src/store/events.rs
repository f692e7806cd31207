//! The supervisor's events (`modobox_service_event`): what it recorded about the services it
//! watches (restarts, failed restarts, ...), read back by `modobox status`.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Store, StoreError};
use crate::args;

/// One recorded event.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Event {
    pub at: DateTime<Utc>,
    pub service: String,
    pub kind: String,
    pub message: String,
}

/// Records an event of `service` now.
pub async fn record(
    store: &Store,
    service: &str,
    kind: &str,
    message: &str,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    tx.exec(
        "INSERT INTO modobox_service_event (at, service, kind, message) VALUES (?, ?, ?, ?)",
        args![Utc::now(), service, kind, message],
    )
    .await?;
    tx.commit().await
}

/// The last `limit` events, newest first.
pub async fn recent(store: &Store, limit: i64) -> Result<Vec<Event>, StoreError> {
    let mut tx = store.begin().await?;
    let rows = tx
        .rows(
            "SELECT at, service, kind, message FROM modobox_service_event ORDER BY id DESC LIMIT ?",
            args![limit],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Event {
                at: r.ts("at")?,
                service: r.text("service")?,
                kind: r.text("kind")?,
                message: r.text("message")?,
            })
        })
        .collect()
}

/// How many times the supervisor restarted `service` after `since`.
pub async fn restarts_since(
    store: &Store,
    service: &str,
    since: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let mut tx = store.begin().await?;
    tx.count(
        "SELECT COUNT(*) FROM modobox_service_event WHERE service = ? AND kind = 'restarted' AND at > ?",
        args![service, since],
    )
    .await
}
