//! Daily sending limits (Modoboa 2.x's `message_limit` on `admin_domain` and `admin_mailbox`,
//! NULL = none) and the counters behind them (`modobox_sending_count`), for the Postfix policy
//! service (`crate::policy`). Keys are a login's address and its domain, as Modoboa's policy
//! daemon counts them. A counter holds what was sent on its UTC day; one of an earlier day
//! counts as zero, so every limit starts again at 00:00 UTC without a job.

use chrono::{DateTime, Utc};

use super::{StoreError, Tx};
use crate::args;

/// One limit that applies to a login: its own (`alice@example.org`) or its domain's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub key: String,
    pub limit: i64,
}

/// What sending `n` more messages would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consumed {
    /// Counted; the keys whose counter reached its limit with these messages.
    Counted { now_exhausted: Vec<String> },
    /// Over the limit of this key: nothing was counted.
    Refused { key: String },
}

/// The UTC day counters belong to.
pub fn day_of(now: DateTime<Utc>) -> String {
    now.format("%Y-%m-%d").to_string()
}

/// The limits of `login` (lower case): its mailbox's and its domain's, where set. None on a
/// database without Modoboa 2.x's `message_limit` columns.
pub async fn limits(tx: &mut Tx, login: &str) -> Result<Vec<Limit>, StoreError> {
    let (on_mailbox, on_domain) = tx.modoboa_schema().await?.message_limits();
    let Some((local, domain)) = login.rsplit_once('@') else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    if on_domain {
        if let Some(r) = tx
            .row(
                "SELECT message_limit FROM admin_domain WHERE name = ?",
                args![domain],
            )
            .await?
        {
            if let Some(limit) = r.opt_i32("message_limit")?.map(i64::from) {
                out.push(Limit {
                    key: domain.to_string(),
                    limit,
                });
            }
        }
    }
    if on_mailbox {
        if let Some(r) = tx
            .row(
                "SELECT mb.message_limit FROM admin_mailbox mb INNER JOIN admin_domain d ON d.id = mb.domain_id WHERE mb.address = ? AND d.name = ?",
                args![local, domain],
            )
            .await?
        {
            if let Some(limit) = r.opt_i32("message_limit")?.map(i64::from) {
                out.push(Limit {
                    key: login.to_string(),
                    limit,
                });
            }
        }
    }
    Ok(out)
}

/// Messages counted on `day` for each of `keys` that has a counter of that day.
pub async fn sent_of(
    tx: &mut Tx,
    keys: &[String],
    day: &str,
) -> Result<std::collections::HashMap<String, i64>, StoreError> {
    let mut out = std::collections::HashMap::new();
    if keys.is_empty() {
        return Ok(out);
    }
    let k: Vec<super::Value> = keys.iter().map(|k| k.as_str().into()).collect();
    for r in tx
        .rows_in(
            "SELECT name, sent FROM modobox_sending_count WHERE day = ? AND name IN ({in})",
            &[day.into()],
            &k,
        )
        .await?
    {
        out.insert(r.text("name")?, r.i64("sent")?);
    }
    Ok(out)
}

/// Messages counted for `key` on `day`.
pub async fn sent(tx: &mut Tx, key: &str, day: &str) -> Result<i64, StoreError> {
    Ok(tx
        .row(
            "SELECT sent FROM modobox_sending_count WHERE name = ? AND day = ?",
            args![key, day],
        )
        .await?
        .map(|r| r.any_int("sent"))
        .transpose()?
        .unwrap_or(0))
}

/// Counts `n` messages against every limit, or none when one would go over it. Each counter
/// moves by one conditional UPDATE (`sent + n <= limit`), so two messages at once cannot both
/// take the last place; the caller's transaction undoes the others when one refuses.
pub async fn consume(
    tx: &mut Tx,
    limits: &[Limit],
    n: i64,
    day: &str,
) -> Result<Consumed, StoreError> {
    let mut now_exhausted = Vec::new();
    for l in limits {
        // A counter of an earlier day starts again from zero.
        tx.exec(
            "UPDATE modobox_sending_count SET day = ?, sent = 0 WHERE name = ? AND day <> ?",
            args![day, l.key.as_str(), day],
        )
        .await?;
        let counted = tx
            .exec(
                "UPDATE modobox_sending_count SET sent = sent + ? WHERE name = ? AND day = ? AND sent + ? <= ?",
                args![n, l.key.as_str(), day, n, l.limit],
            )
            .await?;
        if counted == 0 {
            let exists = tx
                .count(
                    "SELECT COUNT(*) FROM modobox_sending_count WHERE name = ?",
                    args![l.key.as_str()],
                )
                .await?
                > 0;
            if exists || n > l.limit {
                return Ok(Consumed::Refused { key: l.key.clone() });
            }
            tx.exec(
                "INSERT INTO modobox_sending_count (name, day, sent) VALUES (?, ?, ?)",
                args![l.key.as_str(), day, n],
            )
            .await?;
        }
        if sent(tx, &l.key, day).await? >= l.limit {
            now_exhausted.push(l.key.clone());
        }
    }
    Ok(Consumed::Counted { now_exhausted })
}
