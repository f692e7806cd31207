//! `modobox_tls_report`: the TLS reports (RFC 8460) received for the hosted domains, one row per
//! policy of a report, and what the domain page shows of them.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{StoreError, Tx};
use crate::args;

/// One policy of one report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TlsReport {
    pub domain: String,
    pub organization: String,
    pub report_id: String,
    pub begins_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// `sts`, `tlsa` or `no-policy-found`.
    pub policy_type: String,
    /// The policy's lines, one per line.
    pub policy: String,
    pub successful: i64,
    pub failed: i64,
    /// The failure details as JSON (`reports::tlsrpt::FailureDetail` list).
    pub failures: String,
}

/// Keeps `r` unless this organization's report with this id already gave this domain's policy
/// (told apart by its text: a DANE report has one `tlsa` policy per MX): whether it was new.
pub async fn insert(tx: &mut Tx, r: &TlsReport, now: DateTime<Utc>) -> Result<bool, StoreError> {
    use sha2::Digest;
    let hash: String = sha2::Sha256::digest(r.policy.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let known = tx
        .count(
            "SELECT COUNT(*) FROM modobox_tls_report WHERE organization = ? AND report_id = ? \
             AND domain = ? AND policy_type = ? AND policy_hash = ?",
            args![
                &r.organization,
                &r.report_id,
                &r.domain,
                &r.policy_type,
                &hash
            ],
        )
        .await?;
    if known > 0 {
        return Ok(false);
    }
    tx.insert(
        "INSERT INTO modobox_tls_report (domain, organization, report_id, begins_at, ends_at, \
         policy_type, policy, policy_hash, successful, failed, failures, received_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        args![
            &r.domain,
            &r.organization,
            &r.report_id,
            r.begins_at,
            r.ends_at,
            &r.policy_type,
            &r.policy,
            &hash,
            r.successful,
            r.failed,
            &r.failures,
            now
        ],
    )
    .await?;
    Ok(true)
}

/// The domain's reports whose period ended after `since`, newest first.
pub async fn recent(
    tx: &mut Tx,
    domain: &str,
    since: DateTime<Utc>,
) -> Result<Vec<TlsReport>, StoreError> {
    let rows = tx
        .rows(
            "SELECT domain, organization, report_id, begins_at, ends_at, policy_type, policy, \
             successful, failed, failures FROM modobox_tls_report \
             WHERE domain = ? AND ends_at >= ? ORDER BY ends_at DESC, organization LIMIT 200",
            args![domain, since],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(TlsReport {
                domain: r.text("domain")?,
                organization: r.text("organization")?,
                report_id: r.text("report_id")?,
                begins_at: r.ts("begins_at")?,
                ends_at: r.ts("ends_at")?,
                policy_type: r.text("policy_type")?,
                policy: r.text("policy")?,
                successful: r.i64("successful")?,
                failed: r.i64("failed")?,
                failures: r.text("failures")?,
            })
        })
        .collect()
}
