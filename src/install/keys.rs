//! Keys and certificates: the TLS certificate every daemon serves, and the primary domain's
//! DKIM key (file for OpenDKIM, public half in the database for the DNS records).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::Utc;

use super::{io_error, Check, Ctx, Step, StepError, StepResult};
use crate::config::{Engine, TlsMode};
use crate::names::DomainName;
use crate::render::context::tls_paths;
use crate::store::access::Actor;
use crate::store::domains;
use crate::system::fs::{write_atomic, Owner};

/// A self-signed certificate lives this long; `install` renews it 30 days before the end.
const SELF_SIGNED_DAYS: u32 = 825;
const RENEW_BEFORE_DAYS: i64 = 30;

#[derive(Debug)]
pub struct Certificate;

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// What is wrong with the certificate and key on disk for this hostname, if anything.
fn certificate_problems(ctx: &Ctx) -> Vec<String> {
    let (cert_path, key_path) = tls_paths(&ctx.config, &ctx.distro);
    let (Some(cert), Some(key)) = (read(cert_path.as_path()), read(key_path.as_path())) else {
        return vec![format!("{cert_path} or {key_path} does not exist")];
    };
    let info = match crate::keys::tls::inspect(&cert) {
        Ok(i) => i,
        Err(e) => return vec![format!("{cert_path}: {e}")],
    };
    let mut problems = Vec::new();
    let host = ctx.config.hostname.as_str();
    if !info.dns_names.iter().any(|n| n.eq_ignore_ascii_case(host)) {
        problems.push(format!(
            "{cert_path} is for {} and not for {host}",
            info.dns_names.join(", ")
        ));
    }
    let days_left = (info.not_after - Utc::now()).num_days();
    if days_left < RENEW_BEFORE_DAYS {
        problems.push(format!("{cert_path} expires in {days_left} days"));
    }
    if !crate::keys::tls::key_matches(&cert, &key).unwrap_or(false) {
        problems.push(format!("{key_path} is not the key of {cert_path}"));
    }
    if std::fs::metadata(key_path.as_path()).is_ok_and(|m| m.mode() & 0o077 != 0) {
        problems.push(format!("{key_path} is readable by others than root"));
    }
    problems
}

impl Step for Certificate {
    fn name(&self) -> &'static str {
        "tls-certificate"
    }

    fn check(&self, ctx: &mut Ctx) -> StepResult<Check> {
        let problems = certificate_problems(ctx);
        if problems.is_empty() {
            return Ok(Check::Done);
        }
        Ok(Check::Change(match ctx.config.tls.mode {
            TlsMode::SelfSigned | TlsMode::Acme => problems
                .into_iter()
                .map(|p| {
                    format!(
                        "{p}: generate a self-signed certificate for {}",
                        ctx.config.hostname
                    )
                })
                .collect(),
            TlsMode::Manual => problems,
        }))
    }

    fn apply(&self, ctx: &mut Ctx) -> StepResult<()> {
        if ctx.config.tls.mode == TlsMode::Manual {
            // The admin's files are never overwritten.
            return Err(StepError::new(format!(
                "tls.mode = \"manual\": fix the certificate and key given in tls.cert and \
                 tls.key ({})",
                certificate_problems(ctx).join("; ")
            )));
        }
        // ACME: the placeholder lets every daemon start; the hook replaces it once nginx
        // serves the challenge directory.
        let pair =
            crate::keys::tls::generate_self_signed(&ctx.config.hostname, &[], SELF_SIGNED_DAYS)
                .map_err(|e| StepError::new(e.to_string()))?;
        let (cert_path, key_path) = tls_paths(&ctx.config, &ctx.distro);
        let root = Owner {
            user: "root".into(),
            group: "root".into(),
        };
        write_atomic(
            key_path.as_path(),
            pair.key_pem.as_bytes(),
            0o600,
            Some(&root),
        )
        .map_err(io_error(key_path.as_path()))?;
        write_atomic(
            cert_path.as_path(),
            pair.cert_pem.as_bytes(),
            0o644,
            Some(&root),
        )
        .map_err(io_error(cert_path.as_path()))
    }
}

/// The primary domain's DKIM key: `<dkim_keys>/<domain>.pem`, 0600, owned by OpenDKIM's user,
/// recorded in the database. With SQLite, OpenDKIM reads its key and signing tables from
/// files (no OpenDBX SQLite driver): those are written here too.
#[derive(Debug)]
pub struct DkimKey;

pub use crate::keys::dkim_files::{key_path, DEFAULT_KEY_BITS};

fn opendkim_owner(ctx: &Ctx) -> Owner {
    crate::keys::dkim_files::opendkim_owner(&ctx.distro)
}

fn dkim_domain(ctx: &mut Ctx) -> StepResult<Option<(DomainName, domains::Domain)>> {
    let Some(name) = ctx.config.primary_domain() else {
        return Ok(None);
    };
    let store = ctx.store()?;
    let d = ctx.rt.block_on(async {
        let mut tx = store.begin().await?;
        domains::get(&mut tx, Actor::System, &name).await
    })?;
    Ok(Some((name, d)))
}

/// The key and signing tables OpenDKIM reads as files (SQLite installs).
fn refile_tables(ctx: &mut Ctx) -> StepResult<Vec<(PathBuf, String)>> {
    let store = ctx.store()?;
    let dir = ctx.config.paths.dkim_keys.as_path().to_path_buf();
    Ok(ctx.rt.block_on(async {
        let mut tx = store.begin().await?;
        crate::keys::dkim_files::tables(&mut tx, &dir).await
    })?)
}

fn dkim_changes(ctx: &mut Ctx) -> StepResult<Vec<String>> {
    let Some((name, d)) = dkim_domain(ctx)? else {
        return Ok(Vec::new());
    };
    let mut changes = Vec::new();
    if d.enable_dkim {
        let path = key_path(ctx.config.paths.dkim_keys.as_path(), name.as_str());
        let owner = opendkim_owner(ctx);
        let on_disk = read(&path);
        let public = on_disk
            .as_deref()
            .and_then(|pem| crate::keys::dkim::public_from_private(pem).ok());
        match &public {
            None => changes.push(format!(
                "generate a {}-bit DKIM key for {name} in {}",
                crate::keys::dkim_files::key_bits(d.dkim_key_length),
                path.display()
            )),
            Some(p)
                if *p != d.dkim_public_key || d.dkim_private_key_path != path.to_string_lossy() =>
            {
                changes.push(format!("record the DKIM key of {name} in the database"));
            }
            Some(_) => {}
        }
        if public.is_some() {
            let m = std::fs::metadata(&path).map_err(io_error(&path))?;
            let right_owner = crate::system::fs::resolve_owner(&owner) == Some((m.uid(), m.gid()));
            if m.permissions().mode() & 0o7777 != 0o600 || !right_owner {
                changes.push(format!(
                    "set {} to mode 0600, owned by {}",
                    path.display(),
                    owner.user
                ));
            }
        }
    }
    if ctx.config.database.engine == Engine::Sqlite {
        for (path, text) in refile_tables(ctx)? {
            if read(&path).as_deref() != Some(text.as_str()) {
                changes.push(format!("write {}", path.display()));
            }
        }
    }
    Ok(changes)
}

impl Step for DkimKey {
    fn name(&self) -> &'static str {
        "dkim-key"
    }

    fn check(&self, ctx: &mut Ctx) -> StepResult<Check> {
        if !ctx.config.components.opendkim {
            return Ok(Check::Done);
        }
        if super::database::connects(ctx).is_err() {
            return Ok(Check::Change(vec![
                "generate the primary domain's DKIM key (once the database exists)".into(),
            ]));
        }
        Ok(Check::from_changes(dkim_changes(ctx)?))
    }

    fn apply(&self, ctx: &mut Ctx) -> StepResult<()> {
        let owner = opendkim_owner(ctx);
        if let Some((name, d)) = dkim_domain(ctx)? {
            if d.enable_dkim {
                let path = key_path(ctx.config.paths.dkim_keys.as_path(), name.as_str());
                // A valid key already on disk is kept: its public half may be published.
                let bits = crate::keys::dkim_files::key_bits(d.dkim_key_length);
                let (pem, public, _) = crate::keys::dkim_files::existing_or_new_key(&path, bits)
                    .map_err(|e| StepError::new(e.to_string()))?;
                crate::keys::dkim_files::write_key(&path, &pem, &owner).map_err(io_error(&path))?;
                let store = ctx.store()?;
                let path_text = path.display().to_string();
                ctx.rt.block_on(async {
                    let mut tx = store.begin().await?;
                    domains::set_dkim_key(&mut tx, d.id, &path_text, &public).await?;
                    tx.commit().await
                })?;
            }
        }
        if ctx.config.database.engine == Engine::Sqlite {
            let tables = refile_tables(ctx)?;
            let dir = ctx.config.paths.dkim_keys.as_path();
            crate::keys::dkim_files::write_tables(&tables, &owner).map_err(io_error(dir))?;
        }
        Ok(())
    }
}

/// `tls.mode = "acme"`: once nginx serves the challenge directory, the self-signed placeholder
/// is replaced by a certificate from the ACME authority (`jobs::tls_renew`: modobox's own
/// client, or the admin's `tls.acme_hook`), and the daemons reload it.
#[derive(Debug)]
pub struct Acme;

fn acme_pending(ctx: &Ctx) -> bool {
    let (cert_path, _) = tls_paths(&ctx.config, &ctx.distro);
    match read(cert_path.as_path()).map(|c| crate::keys::tls::inspect(&c)) {
        Some(Ok(info)) => info.self_signed || !certificate_problems(ctx).is_empty(),
        _ => true,
    }
}

impl Step for Acme {
    fn name(&self) -> &'static str {
        "acme"
    }

    fn check(&self, ctx: &mut Ctx) -> StepResult<Check> {
        if ctx.config.tls.mode != TlsMode::Acme || !acme_pending(ctx) {
            return Ok(Check::Done);
        }
        let with = match &ctx.config.tls.acme_hook {
            Some(hook) => hook.to_string(),
            None => ctx.config.tls.acme_directory.to_string(),
        };
        Ok(Check::Change(vec![format!(
            "obtain the certificate for {} from {with}",
            ctx.config.hostname
        )]))
    }

    fn apply(&self, ctx: &mut Ctx) -> StepResult<()> {
        let job = std::sync::Arc::new(crate::jobs::JobContext {
            node: crate::jobs::scheduler::node_name(&ctx.config),
            config: ctx.config.clone(),
            distro: ctx.distro.clone(),
            store: ctx.store()?,
        });
        let report = ctx
            .rt
            .block_on(crate::jobs::tls_renew::renew_locked(job, false));
        if report.outcome == crate::jobs::Outcome::Ok && !acme_pending(ctx) {
            println!("    {}", report.message);
        } else {
            // Mail works with the placeholder meanwhile; the job retries (and alerts).
            eprintln!(
                "warning: no certificate from the ACME authority yet: {}\n         the \
                 self-signed placeholder is served until the tls_renew job gets one \
                 (`modobox tls status` shows its attempts; `modobox tls renew --force` tries now)",
                report.message
            );
        }
        // A daemon that did not take the new pair by reloading is restarted.
        super::services::Services.apply(ctx)
    }
}
