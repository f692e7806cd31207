//! `backup verify`: proof that a backup restores, by restoring it somewhere harmless.
//! restic checks the repository's structure and reads back a share of its data; then the whole
//! backup is fetched into a scratch directory and every file compared with the manifest's
//! SHA-256; the database dump is loaded into a scratch database that must pass the schema
//! check and hold the manifest's counts; each signing domain's DKIM key must be in the backup
//! and match the public key in the database (what DNS publishes); the TLS key must match its
//! certificate. Nothing live is touched.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use super::restore::{self, Selection, ALL_PARTS};
use super::{database, BackupContext, BackupError};
use crate::names::BackupRepository;
use crate::store::{inventory, migrate, DatabaseUrl, Store};

#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub snapshot: String,
    pub taken: String,
    pub files_checked: usize,
    pub messages: u64,
    pub database_loaded: bool,
    pub schema_version: i32,
    pub dkim_keys_checked: usize,
    pub tls_checked: bool,
    /// Empty when the backup restores.
    pub problems: Vec<String>,
    pub seconds: f64,
}

/// Verifies backup `id` (or `latest`); `subset` is the share of the repository's data restic
/// reads back (`10%`, `100%`, ...).
pub async fn verify(
    ctx: &BackupContext,
    from: Option<&BackupRepository>,
    id: &str,
    subset: &str,
) -> Result<VerifyReport, BackupError> {
    let started = Instant::now();
    let repo = ctx.repository(from)?;
    let _lock = super::lock(&ctx.state_dir())?;
    let mut report = VerifyReport::default();
    if let Err(e) = repo.check(subset) {
        report.problems.push(format!("repository check: {e}"));
    }
    let fetched = match restore::fetch(ctx, &repo, id, &Selection::Parts(ALL_PARTS.to_vec())) {
        Ok(f) => f,
        Err(BackupError::Damaged(list)) => {
            report.problems.extend(list);
            report.seconds = started.elapsed().as_secs_f64();
            return Ok(report);
        }
        Err(
            e @ (BackupError::NoSuchBackup(_)
            | BackupError::WrongPassword(_)
            | BackupError::NoRepository(_)),
        ) => return Err(e),
        Err(e) => {
            report.problems.push(format!("restore: {e}"));
            report.seconds = started.elapsed().as_secs_f64();
            return Ok(report);
        }
    };
    let m = &fetched.manifest;
    report.snapshot = fetched.snapshot.short_id.clone();
    report.taken = m.created.clone();
    report.files_checked = m.files.len();
    report.messages = m.total_messages();
    report.schema_version = m.schema_version;

    let scratch = fetched.root.with_file_name("verify-scratch");
    super::fresh_dir(&scratch)?;
    match database::load_scratch(
        &ctx.config,
        &ctx.secrets,
        &fetched.root.join("database"),
        &scratch,
    )
    .await
    {
        Ok(db) => {
            report.database_loaded = true;
            let checked =
                check_database(&db.config, &ctx.secrets, &fetched.root, m, &mut report).await;
            if let Err(e) = checked {
                report.problems.push(format!("database: {e}"));
            }
            db.drop_it(&ctx.secrets, &scratch).await;
        }
        Err(e) => report.problems.push(format!("database: {e}")),
    }

    let (cert, key) = crate::render::context::tls_paths(&ctx.config, &ctx.distro);
    let saved = |p: &Path| {
        fetched
            .root
            .join("files")
            .join(p.strip_prefix("/").unwrap_or(p))
    };
    match (
        std::fs::read_to_string(saved(cert.as_path())),
        std::fs::read_to_string(saved(key.as_path())),
    ) {
        (Ok(c), Ok(k)) => {
            report.tls_checked = true;
            match crate::keys::tls::key_matches(&c, &k) {
                Ok(true) => {}
                Ok(false) => report.problems.push(format!(
                    "TLS: the key {key} is not the one of the certificate {cert}"
                )),
                Err(e) => report.problems.push(format!("TLS: {e}")),
            }
        }
        _ => report.problems.push(format!(
            "TLS: the backup lacks the certificate {cert} or the key {key}"
        )),
    }
    let _ = std::fs::remove_dir_all(&scratch);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

async fn check_database(
    scratch_config: &crate::config::Config,
    secrets: &crate::secrets::Secrets,
    root: &Path,
    m: &super::manifest::Manifest,
    report: &mut VerifyReport,
) -> Result<(), BackupError> {
    let store = Store::connect(&DatabaseUrl::from_config(scratch_config, secrets)).await?;
    let result = async {
        let status = migrate::status(&store).await?;
        let newest_applied = status
            .migrations
            .iter()
            .filter(|x| x.applied)
            .map(|x| x.version)
            .max()
            .unwrap_or(0);
        if newest_applied != m.schema_version {
            report.problems.push(format!(
                "database: schema version {newest_applied} in the dump, {} in the manifest",
                m.schema_version
            ));
        }
        let mut tx = store.begin_read().await?;
        let inv = inventory::read(&mut tx).await?;
        let keys = inventory::dkim_keys(&mut tx).await?;
        drop(tx);
        for (name, counts) in &m.domains {
            match inv.domains.get(name) {
                Some(d)
                    if d.mailboxes == counts.mailboxes
                        && d.aliases == counts.aliases
                        && d.domain_aliases == counts.domain_aliases => {}
                Some(d) => report.problems.push(format!(
                    "database: {name} has {}/{}/{} mailboxes/aliases/domain aliases, the manifest says {}/{}/{}",
                    d.mailboxes, d.aliases, d.domain_aliases, counts.mailboxes, counts.aliases, counts.domain_aliases
                )),
                None => report.problems.push(format!("database: the domain {name} is missing")),
            }
        }
        if inv.domains.len() != m.domains.len() || inv.mailboxes.len() != m.mailboxes.len() {
            report.problems.push(format!(
                "database: {} domains and {} mailboxes, the manifest says {} and {}",
                inv.domains.len(),
                inv.mailboxes.len(),
                m.domains.len(),
                m.mailboxes.len()
            ));
        }
        for k in keys {
            report.dkim_keys_checked += 1;
            let path = Path::new(&k.private_key_path);
            let saved = root.join("files").join(path.strip_prefix("/").unwrap_or(path));
            match std::fs::read_to_string(&saved) {
                Err(_) => report.problems.push(format!(
                    "DKIM: the key of {} ({}) is not in the backup",
                    k.domain, k.private_key_path
                )),
                Ok(pem) => match crate::keys::dkim::public_from_private(&pem) {
                    Ok(public) if public == k.public_key => {}
                    Ok(_) => report.problems.push(format!(
                        "DKIM: the key of {} does not match the public key in the database (and DNS)",
                        k.domain
                    )),
                    Err(e) => report.problems.push(format!("DKIM: the key of {}: {e}", k.domain)),
                },
            }
        }
        Ok::<_, BackupError>(())
    }
    .await;
    store.close().await;
    result
}
