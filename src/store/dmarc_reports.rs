//! `modobox_dmarc_report` and `modobox_dmarc_record`: the DMARC aggregate reports received for
//! the hosted domains, and what the domain page shows of them (who sends as the domain, from
//! which addresses, how it authenticates).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{StoreError, Tx};
use crate::args;

/// One report, as `reports::dmarc` checked it.
#[derive(Debug, Clone, PartialEq)]
pub struct DmarcReport {
    /// The domain the report is about (its published policy's).
    pub domain: String,
    pub organization: String,
    pub report_id: String,
    pub begins_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// The policy the reporter found published: `none`, `quarantine` or `reject`.
    pub policy: String,
    pub records: Vec<DmarcRecord>,
}

/// One record: what one address sent as the domain, and how the reporter judged it.
#[derive(Debug, Clone, PartialEq)]
pub struct DmarcRecord {
    pub source_ip: String,
    pub messages: i64,
    /// `none`, `quarantine`, `reject` (or `pass`).
    pub disposition: String,
    /// DMARC's DKIM and SPF verdicts (aligned and passing): `pass` or `fail`.
    pub dkim: String,
    pub spf: String,
    pub header_from: String,
    /// The underlying results, e.g. `dkim=example.org:pass spf=bounce.example.net:fail`.
    pub auth: String,
}

impl DmarcRecord {
    /// DMARC passes when either aligned check passes.
    pub fn passes(&self) -> bool {
        self.dkim == "pass" || self.spf == "pass"
    }
}

/// Keeps a report and its records unless this organization's report with this id about this
/// domain is already kept: whether it was new.
pub async fn insert(tx: &mut Tx, a: &DmarcReport, now: DateTime<Utc>) -> Result<bool, StoreError> {
    let known = tx
        .count(
            "SELECT COUNT(*) FROM modobox_dmarc_report WHERE organization = ? AND report_id = ? \
             AND domain = ?",
            args![&a.organization, &a.report_id, &a.domain],
        )
        .await?;
    if known > 0 {
        return Ok(false);
    }
    let id = tx
        .insert(
            "INSERT INTO modobox_dmarc_report (domain, organization, report_id, begins_at, \
             ends_at, policy, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            args![
                &a.domain,
                &a.organization,
                &a.report_id,
                a.begins_at,
                a.ends_at,
                &a.policy,
                now
            ],
        )
        .await?;
    for r in &a.records {
        tx.insert(
            "INSERT INTO modobox_dmarc_record (dmarc_report_id, source_ip, messages, \
             disposition, dkim, spf, header_from, auth) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            args![
                id,
                &r.source_ip,
                r.messages,
                &r.disposition,
                &r.dkim,
                &r.spf,
                &r.header_from,
                &r.auth
            ],
        )
        .await?;
    }
    Ok(true)
}

/// One sending address over the period shown: its messages, how many passed DMARC (aligned
/// DKIM or SPF), through which, and what the receivers did with the others.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Source {
    pub source_ip: String,
    pub header_from: String,
    pub messages: i64,
    pub dkim_pass: i64,
    pub spf_pass: i64,
    pub dmarc_pass: i64,
    pub rejected: i64,
    pub quarantined: i64,
    pub reporters: i64,
}

/// The domain's senders in reports whose period ended after `since`, most messages first.
pub async fn sources(
    tx: &mut Tx,
    domain: &str,
    since: DateTime<Utc>,
) -> Result<Vec<Source>, StoreError> {
    let sum = |e: &str| tx.sum_int(e);
    let sql = format!(
        "SELECT c.source_ip, c.header_from, {} AS messages, {} AS dkim_pass, {} AS spf_pass, \
         {} AS dmarc_pass, {} AS rejected, {} AS quarantined, \
         COUNT(DISTINCT r.organization) AS reporters \
         FROM modobox_dmarc_record c JOIN modobox_dmarc_report r ON r.id = c.dmarc_report_id \
         WHERE r.domain = ? AND r.ends_at >= ? \
         GROUP BY c.source_ip, c.header_from ORDER BY messages DESC, c.source_ip LIMIT 200",
        sum("c.messages"),
        sum("CASE WHEN c.dkim = 'pass' THEN c.messages ELSE 0 END"),
        sum("CASE WHEN c.spf = 'pass' THEN c.messages ELSE 0 END"),
        sum("CASE WHEN c.dkim = 'pass' OR c.spf = 'pass' THEN c.messages ELSE 0 END"),
        sum("CASE WHEN c.disposition = 'reject' THEN c.messages ELSE 0 END"),
        sum("CASE WHEN c.disposition = 'quarantine' THEN c.messages ELSE 0 END"),
    );
    let rows = tx.rows(&sql, args![domain, since]).await?;
    rows.iter()
        .map(|r| {
            Ok(Source {
                source_ip: r.text("source_ip")?,
                header_from: r.text("header_from")?,
                messages: r.i64("messages")?,
                dkim_pass: r.i64("dkim_pass")?,
                spf_pass: r.i64("spf_pass")?,
                dmarc_pass: r.i64("dmarc_pass")?,
                rejected: r.i64("rejected")?,
                quarantined: r.i64("quarantined")?,
                reporters: r.i64("reporters")?,
            })
        })
        .collect()
}

/// One report as listed: who, when, the policy seen, its messages and how many passed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportLine {
    pub organization: String,
    pub begins_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub policy: String,
    pub messages: i64,
    pub dmarc_pass: i64,
}

/// The domain's reports whose period ended after `since`, newest first (the "over time" view).
pub async fn reports(
    tx: &mut Tx,
    domain: &str,
    since: DateTime<Utc>,
) -> Result<Vec<ReportLine>, StoreError> {
    let sql = format!(
        "SELECT r.organization, r.begins_at, r.ends_at, r.policy, {} AS messages, \
         {} AS dmarc_pass \
         FROM modobox_dmarc_report r LEFT JOIN modobox_dmarc_record c ON c.dmarc_report_id = r.id \
         WHERE r.domain = ? AND r.ends_at >= ? \
         GROUP BY r.id, r.organization, r.begins_at, r.ends_at, r.policy \
         ORDER BY r.ends_at DESC, r.organization LIMIT 200",
        tx.sum_int("c.messages"),
        tx.sum_int("CASE WHEN c.dkim = 'pass' OR c.spf = 'pass' THEN c.messages ELSE 0 END"),
    );
    let rows = tx.rows(&sql, args![domain, since]).await?;
    rows.iter()
        .map(|r| {
            Ok(ReportLine {
                organization: r.text("organization")?,
                begins_at: r.ts("begins_at")?,
                ends_at: r.ts("ends_at")?,
                policy: r.text("policy")?,
                messages: r.i64("messages")?,
                dmarc_pass: r.i64("dmarc_pass")?,
            })
        })
        .collect()
}
