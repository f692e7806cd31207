//! `tls_renew` (also `modobox tls renew` and install's `acme` step), with `tls.mode = "acme"`:
//! keeps the certificate every daemon serves current. A renewal is due when the certificate is
//! the self-signed placeholder, expires within 30 days, or lacks a name clients ask for whose
//! DNS points here (`autoconfig.`, `autodiscover.`, `mta-sts.`, and `mail.` — so customers
//! may use their own domain in their mail client — of each hosted domain and domain alias; one that does not point here is left out, so a missing record never makes
//! issuance fail; one that fails validation is left out for a week, unless forced). A new key and chain
//! replace the old pair only once issued and checked (a swap cut short is finished at the next
//! run), then Postfix, Dovecot and nginx reload — no restart. A failure keeps the old
//! certificate, waits longer after each failure (a day when the authority says rate limit) and
//! mails the admin (once a day at most). The state lives in `<paths.data>/tls/state.json`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::{JobContext, JobError};
use crate::config::{Config, TlsMode};
use crate::dns::resolver::Resolver;
use crate::keys::acme::{self, AcmeError, Issued};
use crate::keys::tls::{self as tlskeys, CertInfo};
use crate::names::{DomainKind, Hostname};
use crate::render::context::{acme_dir, tls_paths};
use crate::store::access::Actor;
use crate::system::cmd::Cmd;
use crate::system::fs::{write_atomic, Owner};

/// Renew this many days before the end (Let's Encrypt's certificates last 90 or fewer).
pub const RENEW_BEFORE_DAYS: i64 = 30;
/// Let's Encrypt's limit of names per certificate.
const MAX_NAMES: usize = 100;
/// A name that failed validation is not asked for again before this many days (unless forced):
/// asked again sooner, a name that keeps failing would make a new certificate for the same
/// names each time, into the authority's duplicate-certificate limit (5 a week at Let's Encrypt).
const LEFT_OUT_DAYS: i64 = 7;

#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    #[error(transparent)]
    Acme(#[from] AcmeError),
    #[error("{0}")]
    Failed(String),
}

/// What the renewals remember between runs (`state.json`; `modobox tls status` shows it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RenewalState {
    pub last_attempt: Option<DateTime<Utc>>,
    pub last_success: Option<DateTime<Utc>>,
    /// Failed attempts in a row.
    pub failures: u32,
    /// No attempt before this (unless forced).
    pub next_attempt: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub alerted_at: Option<DateTime<Utc>>,
    /// When the daemons last reloaded the certificate on disk.
    pub reloaded_at: Option<DateTime<Utc>>,
    /// Names that failed validation: not asked for until `until`.
    pub left_out: BTreeMap<String, LeftOut>,
    /// Names clients use that the last run did not ask for, and why (DNS).
    pub skipped: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeftOut {
    pub until: DateTime<Utc>,
    pub reason: String,
}

pub fn state_path(config: &Config) -> PathBuf {
    acme_dir(config).as_path().join("state.json")
}

pub fn account_path(config: &Config) -> PathBuf {
    acme_dir(config).as_path().join("account.json")
}

impl RenewalState {
    /// The saved state; a missing or unreadable file is a fresh start.
    pub fn load(path: &Path) -> Self {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    fn save(&self, path: &Path) -> Result<(), RenewError> {
        let json =
            serde_json::to_vec_pretty(self).map_err(|e| RenewError::Failed(e.to_string()))?;
        write_atomic(path, &json, 0o600, None)
            .map_err(|e| RenewError::Failed(format!("{}: {e}", path.display())))
    }

    /// Whether the daemons loaded the files as they are now (a reload after their last write),
    /// so that a daemon started before them needs no restart.
    pub fn reloaded_since(&self, written: DateTime<Utc>) -> bool {
        self.reloaded_at.is_some_and(|r| r >= written)
    }
}

/// The `status` (and dashboard) line of the renewals: a warning while the last attempt failed.
pub fn check(state: &RenewalState) -> crate::health::checks::Check {
    use crate::health::checks::{Check, Level};
    let at = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M UTC").to_string();
    let skipped = if state.skipped.is_empty() {
        String::new()
    } else {
        format!(
            "; not asked for: {}",
            state
                .skipped
                .iter()
                .map(|(n, why)| format!("{n} ({why})"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    match (&state.last_error, state.last_success) {
        (Some(e), _) => Check::new(
            "ACME renewal",
            Level::Warn,
            format!(
                "{} failed attempt(s), the last: {e}; next attempt {}{skipped}",
                state.failures,
                state
                    .next_attempt
                    .map_or_else(|| "at the next run".into(), at)
            ),
        ),
        (None, Some(t)) => Check::new(
            "ACME renewal",
            Level::Ok,
            format!("renewed {}{skipped}", at(t)),
        ),
        (None, None) => Check::new(
            "ACME renewal",
            Level::Ok,
            format!("not renewed yet{skipped}"),
        ),
    }
}

/// How long to wait after the `failures`-th failure in a row.
pub fn backoff(failures: u32, rate_limited: bool) -> Duration {
    if rate_limited {
        return Duration::hours(24);
    }
    Duration::hours(match failures {
        0 | 1 => 1,
        2 => 3,
        3 => 6,
        4 => 12,
        _ => 24,
    })
}

/// Why the certificate must be replaced now; empty when it need not be.
pub fn due_reasons(
    current: Option<&CertInfo>,
    wanted: &[Hostname],
    now: DateTime<Utc>,
) -> Vec<String> {
    let Some(info) = current else {
        return vec!["no certificate".into()];
    };
    let mut reasons = Vec::new();
    if info.self_signed {
        reasons.push("the certificate is self-signed".into());
    }
    if !info.valid_for(now, RENEW_BEFORE_DAYS) {
        reasons.push(format!(
            "it expires on {}",
            info.not_after.format("%Y-%m-%d")
        ));
    }
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|n| !info.covers(n))
        .map(Hostname::as_str)
        .collect();
    if !missing.is_empty() {
        reasons.push(format!("it lacks {}", missing.join(", ")));
    }
    reasons
}

/// Whether a name with `addresses` points at this server (`here`): all of its addresses must
/// be ours (the authority may validate through any of them, an AAAA elsewhere included).
fn points_here(addresses: &[IpAddr], here: &[IpAddr]) -> Result<(), String> {
    if addresses.is_empty() {
        return Err("no A/AAAA record".into());
    }
    let elsewhere: Vec<String> = addresses
        .iter()
        .filter(|a| !here.contains(a))
        .map(ToString::to_string)
        .collect();
    if elsewhere.is_empty() {
        Ok(())
    } else {
        Err(format!("points to {}, not here", elsewhere.join(", ")))
    }
}

/// This machine's addresses: its interfaces', and what the hostname resolves to (behind NAT
/// the public address is on no interface).
async fn here(resolver: &Resolver, hostname: &Hostname) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = nix::ifaddrs::getifaddrs()
        .map(|addrs| {
            addrs
                .filter_map(|a| a.address)
                .filter_map(|s| {
                    s.as_sockaddr_in()
                        .map(|v4| IpAddr::V4(v4.ip()))
                        .or_else(|| s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
                })
                .collect()
        })
        .unwrap_or_default();
    if let Ok(mut a) = resolver.addresses(hostname.as_str()).await {
        out.append(&mut a);
    }
    out.sort();
    out.dedup();
    out
}

/// The names to ask for: the hostname first, then every client name that points here and is
/// not left out; with the ones skipped and why.
async fn wanted_names(
    ctx: &JobContext,
    state: &RenewalState,
) -> (Vec<Hostname>, BTreeMap<String, String>) {
    let config = &ctx.config;
    let mut wanted = vec![config.hostname.clone()];
    let mut skipped = BTreeMap::new();
    let mut candidates: Vec<Hostname> = Vec::new();
    match client_domains(ctx).await {
        Ok(domains) => {
            for d in domains {
                candidates.extend(crate::dns::records::web_names_of(&d, true));
                candidates.extend(crate::dns::records::mail_name_of(&d));
            }
        }
        Err(e) => {
            skipped.insert("(hosted domains)".into(), format!("database: {e}"));
        }
    }
    candidates.retain(|n| *n != config.hostname);
    candidates.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    candidates.dedup();
    let resolver = match Resolver::new(
        config.check_mx.resolver,
        std::time::Duration::from_secs(config.check_mx.timeout_secs),
    ) {
        Ok(r) => r,
        Err(e) => {
            for n in candidates {
                skipped.insert(n.to_string(), format!("DNS: {e}"));
            }
            return (wanted, skipped);
        }
    };
    let here = here(&resolver, &config.hostname).await;
    for name in candidates {
        if let Some(l) = state.left_out.get(name.as_str()) {
            skipped.insert(
                name.to_string(),
                format!(
                    "failed validation ({}); asked again after {}",
                    l.reason,
                    l.until.format("%Y-%m-%d %H:%M UTC")
                ),
            );
            continue;
        }
        let verdict = match resolver.addresses(name.as_str()).await {
            Ok(addresses) => points_here(&addresses, &here),
            Err(e) => Err(format!("DNS: {e}")),
        };
        match verdict {
            Ok(()) if wanted.len() < MAX_NAMES => wanted.push(name),
            Ok(()) => {
                skipped.insert(name.to_string(), format!("more than {MAX_NAMES} names"));
            }
            Err(why) => {
                skipped.insert(name.to_string(), why);
            }
        }
    }
    (wanted, skipped)
}

/// The enabled hosted domains and domain aliases.
async fn client_domains(
    ctx: &JobContext,
) -> Result<Vec<crate::names::DomainName>, crate::store::StoreError> {
    let mut tx = ctx.store.begin_read().await?;
    let mut out: Vec<_> =
        crate::store::domains::list(&mut tx, Actor::System, Some(DomainKind::Domain), None)
            .await?
            .into_iter()
            .filter(|d| d.enabled)
            .map(|d| d.name)
            .collect();
    out.extend(
        crate::store::domains::list_aliases(&mut tx, Actor::System, None)
            .await?
            .into_iter()
            .filter(|a| a.enabled)
            .map(|a| a.name),
    );
    Ok(out)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

fn root() -> Owner {
    Owner {
        user: "root".into(),
        group: "root".into(),
    }
}

/// Puts a new pair in place: both written beside the old ones, then the key renamed over the
/// old key and the certificate over the old certificate. Cut short between the two renames,
/// [`finish_swap`] completes it.
pub fn install_pair(
    cert: &Path,
    key: &Path,
    cert_pem: &str,
    key_pem: &str,
) -> Result<(), RenewError> {
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |e: std::io::Error| RenewError::Failed(format!("{p}: {e}"))
    };
    let (cert_new, key_new) = (with_suffix(cert, ".new"), with_suffix(key, ".new"));
    write_atomic(&key_new, key_pem.as_bytes(), 0o600, Some(&root())).map_err(io(&key_new))?;
    write_atomic(&cert_new, cert_pem.as_bytes(), 0o644, Some(&root())).map_err(io(&cert_new))?;
    std::fs::rename(&key_new, key).map_err(io(key))?;
    crate::fault::point("tls-renew-between-renames")
        .map_err(|e| RenewError::Failed(e.to_string()))?;
    std::fs::rename(&cert_new, cert).map_err(io(cert))?;
    Ok(())
}

/// Finishes a swap [`install_pair`] did not: a new certificate whose key is the new key (or
/// the key already renamed) goes in place; anything else left beside is removed.
pub fn finish_swap(cert: &Path, key: &Path) -> Result<Option<String>, RenewError> {
    let (cert_new, key_new) = (with_suffix(cert, ".new"), with_suffix(key, ".new"));
    let Ok(new_cert) = std::fs::read_to_string(&cert_new) else {
        let _ = std::fs::remove_file(&key_new);
        return Ok(None);
    };
    let key_candidate = if key_new.exists() {
        &key_new
    } else {
        &key.to_path_buf()
    };
    let matches = std::fs::read_to_string(key_candidate)
        .ok()
        .and_then(|k| tlskeys::key_matches(&new_cert, &k).ok())
        .unwrap_or(false);
    if !matches {
        let _ = std::fs::remove_file(&cert_new);
        let _ = std::fs::remove_file(&key_new);
        return Ok(None);
    }
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |e: std::io::Error| RenewError::Failed(format!("{p}: {e}"))
    };
    if key_new.exists() {
        std::fs::rename(&key_new, key).map_err(io(key))?;
    }
    std::fs::rename(&cert_new, cert).map_err(io(cert))?;
    Ok(Some(format!(
        "finished replacing {} (a renewal was cut short)",
        cert.display()
    )))
}

/// Reloads the daemons that serve the certificate; each failure named.
pub async fn reload_daemons() -> Vec<String> {
    let commands: [(&str, &[&str]); 3] = [
        ("postfix", &["reload"]),
        ("doveadm", &["reload"]),
        ("nginx", &["-s", "reload"]),
    ];
    let mut failures = Vec::new();
    for (program, args) in commands {
        let cmd = Cmd::new(program).args(args.iter().copied());
        match tokio::task::spawn_blocking(move || cmd.run()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => failures.push(e.to_string()),
            Err(e) => failures.push(format!("{program}: {e}")),
        }
    }
    failures
}

/// The certificate the daemons serve, when there is a readable one.
fn current(cert: &Path) -> Option<CertInfo> {
    let pem = std::fs::read_to_string(cert).ok()?;
    tlskeys::inspect(&pem).ok()
}

/// Obtains a pair for `names` with modobox's client; when optional names fail validation,
/// once more without them (they are left out for a week).
async fn obtain(
    ctx: &JobContext,
    names: &[Hostname],
    state: &mut RenewalState,
) -> Result<Issued, RenewError> {
    let config = &ctx.config;
    let account_file = account_path(config);
    let settings = acme::AccountSettings {
        directory: config.tls.acme_directory.as_str(),
        email: config.tls.acme_email.as_ref().map(|e| e.as_str()),
        ca_root: config.tls.acme_ca_root.as_ref().map(|p| p.as_path()),
        file: &account_file,
    };
    let account = acme::account(&settings).await?;
    let webroot = config.tls.acme_webroot.as_path();
    let mut names: Vec<String> = names.iter().map(ToString::to_string).collect();
    match acme::obtain(&account, &names, webroot).await {
        Err(AcmeError::Validation(failed))
            if !failed.iter().any(|(n, _)| *n == config.hostname.as_str()) =>
        {
            let until = Utc::now() + Duration::days(LEFT_OUT_DAYS);
            for (name, reason) in &failed {
                tracing::warn!("ACME: {name} left out: {reason}");
                state.left_out.insert(
                    name.clone(),
                    LeftOut {
                        until,
                        reason: reason.clone(),
                    },
                );
                state
                    .skipped
                    .insert(name.clone(), format!("failed validation ({reason})"));
            }
            names.retain(|n| !failed.iter().any(|(f, _)| f == n));
            Ok(acme::obtain(&account, &names, webroot).await?)
        }
        other => Ok(other?),
    }
}

/// What the external client (`tls.acme_hook`) gets, as environment variables (nothing on its
/// command line): it must leave a certificate for the hostname and its key at MODOBOX_CERT and
/// MODOBOX_KEY.
pub fn hook_env(config: &Config, distro: &crate::distro::Distro) -> Vec<(&'static str, String)> {
    let (cert, key) = tls_paths(config, distro);
    vec![
        ("MODOBOX_HOSTNAME", config.hostname.to_string()),
        ("MODOBOX_WEBROOT", config.tls.acme_webroot.to_string()),
        ("MODOBOX_CERT", cert.to_string()),
        ("MODOBOX_KEY", key.to_string()),
    ]
}

async fn run_hook(hook: &Path, env: Vec<(&'static str, String)>) -> Result<(), RenewError> {
    let mut cmd = Cmd::new(&hook.display().to_string());
    for (k, v) in &env {
        cmd = cmd.env(k, v);
    }
    tokio::task::spawn_blocking(move || cmd.run())
        .await
        .map_err(|e| RenewError::Failed(e.to_string()))?
        .map_err(|e| RenewError::Failed(e.to_string()))?;
    Ok(())
}

/// One renewal: does nothing when not due (unless `force`) or while waiting after failures.
pub async fn renew(ctx: &JobContext, force: bool) -> Result<String, JobError> {
    let config = &ctx.config;
    if config.tls.mode != TlsMode::Acme {
        return Ok("tls.mode is not \"acme\": nothing to renew".into());
    }
    let dir = acme_dir(config);
    ensure_dir(dir.as_path()).map_err(RenewError::Failed)?;
    let (cert, key) = tls_paths(config, &ctx.distro);
    let (cert, key) = (cert.as_path(), key.as_path());
    let mut notes = Vec::new();
    if let Some(n) = finish_swap(cert, key)? {
        // The daemons still hold the old pair (or failed on the mismatched one): reload.
        notes.push(n);
        notes.extend(reload_daemons().await);
    }
    let path = state_path(config);
    let mut state = RenewalState::load(&path);
    let now = Utc::now();
    // Forced: the names left out are asked for again at once.
    state.left_out.retain(|_, l| l.until > now && !force);
    let info = current(cert);
    let (wanted, skipped) = if config.tls.acme_hook.is_some() {
        // The hook is given the hostname only: the client names are its business.
        (vec![config.hostname.clone()], BTreeMap::new())
    } else {
        wanted_names(ctx, &state).await
    };
    state.skipped = skipped;
    let reasons = due_reasons(info.as_ref(), &wanted, now);
    if let (true, false, Some(info)) = (reasons.is_empty(), force, &info) {
        state.save(&path)?;
        if !notes.is_empty() {
            return Ok(notes.join("; "));
        }
        return Ok(format!(
            "not due: valid until {} and holds the {} name(s) asked for; renewal from {}",
            info.not_after.format("%Y-%m-%d"),
            wanted.len(),
            (info.not_after - Duration::days(RENEW_BEFORE_DAYS)).format("%Y-%m-%d")
        ));
    }
    if let Some(next) = state.next_attempt.filter(|n| *n > now && !force) {
        state.save(&path)?;
        return Ok(format!(
            "due ({}), waiting until {} after {} failed attempt(s): {}",
            reasons.join("; "),
            next.format("%Y-%m-%d %H:%M UTC"),
            state.failures,
            state.last_error.as_deref().unwrap_or("")
        ));
    }
    state.last_attempt = Some(now);
    let attempt = async {
        match &config.tls.acme_hook {
            Some(hook) => run_hook(hook.as_path(), hook_env(config, &ctx.distro)).await,
            None => {
                let issued = obtain(ctx, &wanted, &mut state).await?;
                check_pair(&issued.cert_pem, &issued.key_pem, &config.hostname)?;
                install_pair(cert, key, &issued.cert_pem, &issued.key_pem)
            }
        }?;
        // What is now on disk must be a pair for the hostname (the hook's too).
        let cert_pem = std::fs::read_to_string(cert)
            .map_err(|e| RenewError::Failed(format!("{}: {e}", cert.display())))?;
        let key_pem = std::fs::read_to_string(key)
            .map_err(|e| RenewError::Failed(format!("{}: {e}", key.display())))?;
        check_pair(&cert_pem, &key_pem, &config.hostname)
    }
    .await;
    match attempt {
        Ok(new) => {
            state.failures = 0;
            state.next_attempt = None;
            state.last_error = None;
            state.last_success = Some(Utc::now());
            let failures = reload_daemons().await;
            if failures.is_empty() {
                state.reloaded_at = Some(Utc::now());
            }
            state.save(&path)?;
            notes.push(format!(
                "certificate for {} issued by {}, valid until {}",
                new.dns_names.join(", "),
                new.issuer,
                new.not_after.format("%Y-%m-%d")
            ));
            if failures.is_empty() {
                notes.push("Postfix, Dovecot and nginx reloaded".into());
                Ok(notes.join("; "))
            } else {
                Err(JobError::Partly {
                    done: notes.join("; "),
                    failures: failures
                        .into_iter()
                        .map(|f| {
                            format!(
                                "reload: {f} (it takes the new certificate when it next starts)"
                            )
                        })
                        .collect(),
                })
            }
        }
        Err(e) => {
            let rate_limited = matches!(e, RenewError::Acme(AcmeError::RateLimited(_)));
            state.failures += 1;
            let next = now + backoff(state.failures, rate_limited);
            state.next_attempt = Some(next);
            state.last_error = Some(e.to_string());
            let kept = info.as_ref().map_or_else(
                || "no certificate".to_string(),
                |i| {
                    format!(
                        "the current certificate is kept (valid until {})",
                        i.not_after.format("%Y-%m-%d")
                    )
                },
            );
            if state
                .alerted_at
                .is_none_or(|a| now - a >= Duration::hours(24))
            {
                state.alerted_at = Some(now);
                super::alert_admin(
                    config,
                    &format!(
                        "the TLS certificate could not be renewed\n\n{e}\n\n{kept}; the next attempt is \
                         at {} (`modobox tls renew --force` tries now).",
                        next.format("%Y-%m-%d %H:%M UTC")
                    ),
                )
                .await;
            }
            state.save(&path)?;
            Err(RenewError::Failed(format!(
                "{e}; {kept}; next attempt at {}",
                next.format("%Y-%m-%d %H:%M UTC")
            ))
            .into())
        }
    }
}

/// [`renew`] under the job's lock and recorded as a run of `tls_renew` (by hand: `tls renew`,
/// the install), so it never runs beside the scheduled one.
pub async fn renew_locked(
    ctx: std::sync::Arc<JobContext>,
    force: bool,
) -> super::scheduler::Report {
    use super::Outcome;
    let job = ctx.clone();
    let runner: super::scheduler::Runner = std::sync::Arc::new(move |_name: String| {
        let job = job.clone();
        Box::pin(async move {
            match renew(&job, force).await {
                Ok(message) => (Outcome::Ok, message),
                Err(e) => (Outcome::Failed, e.to_string()),
            }
        })
    });
    let name = "tls_renew";
    super::scheduler::run_locked(
        &ctx.store,
        &ctx.node,
        name,
        None,
        ctx.config.jobs.timeout(name),
        &runner,
    )
    .await
}

/// A certificate for `hostname` whose key is `key_pem`, or why not.
fn check_pair(cert_pem: &str, key_pem: &str, hostname: &Hostname) -> Result<CertInfo, RenewError> {
    let info = tlskeys::inspect(cert_pem)
        .map_err(|e| RenewError::Failed(format!("the new certificate: {e}")))?;
    if !info.covers(hostname) {
        return Err(RenewError::Failed(format!(
            "the new certificate is for {} and not for {hostname}",
            info.dns_names.join(", ")
        )));
    }
    if !tlskeys::key_matches(cert_pem, key_pem).unwrap_or(false) {
        return Err(RenewError::Failed(
            "the new certificate is not for the new key".into(),
        ));
    }
    Ok(info)
}

/// `<paths.data>/tls`: 0755 (the certificate is public; the key and account are 0600).
fn ensure_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)))
        .map_err(|e| format!("{}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(n: &str) -> Hostname {
        Hostname::parse("hostname", n).unwrap()
    }

    fn info(names: &[&str], days: i64, self_signed: bool) -> CertInfo {
        CertInfo {
            dns_names: names.iter().map(ToString::to_string).collect(),
            not_after: Utc::now() + Duration::days(days),
            self_signed,
            issuer: "CN=Test CA".into(),
        }
    }

    #[test]
    fn a_renewal_is_due_for_the_placeholder_near_the_end_or_for_a_missing_name() {
        let now = Utc::now();
        let wanted = [host("mail.example.com"), host("autoconfig.example.com")];
        let good = info(&["mail.example.com", "autoconfig.example.com"], 60, false);
        assert!(due_reasons(Some(&good), &wanted, now).is_empty());
        assert_eq!(due_reasons(None, &wanted, now), ["no certificate"]);
        let placeholder = info(&["mail.example.com", "autoconfig.example.com"], 800, true);
        assert_eq!(
            due_reasons(Some(&placeholder), &wanted, now),
            ["the certificate is self-signed"]
        );
        let ending = info(&["mail.example.com", "autoconfig.example.com"], 29, false);
        assert!(due_reasons(Some(&ending), &wanted, now)[0].starts_with("it expires on"));
        let short = info(&["mail.example.com"], 60, false);
        assert_eq!(
            due_reasons(Some(&short), &wanted, now),
            ["it lacks autoconfig.example.com"]
        );
    }

    #[tokio::test]
    async fn the_hook_gets_its_paths_in_the_environment_and_its_failure_is_reported() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let hook = dir.path().join("hook");
        let out = dir.path().join("seen");
        let script = format!(
            "#!/bin/sh\necho \"$MODOBOX_HOSTNAME $MODOBOX_CERT\" > {}\n",
            out.display()
        );
        std::fs::write(&hook, script).unwrap();
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        let env = vec![
            ("MODOBOX_HOSTNAME", "mail.example.com".to_string()),
            ("MODOBOX_CERT", "/etc/ssl/certs/x.crt".to_string()),
        ];
        run_hook(&hook, env.clone()).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "mail.example.com /etc/ssl/certs/x.crt\n"
        );
        std::fs::write(&hook, "#!/bin/sh\necho 'rate limited' >&2\nexit 1\n").unwrap();
        let e = run_hook(&hook, env).await.unwrap_err().to_string();
        assert!(e.contains("rate limited"), "{e}");
    }

    #[test]
    fn backoff_grows_to_a_day_and_a_rate_limit_waits_a_day() {
        let hours: Vec<i64> = (1..=6).map(|n| backoff(n, false).num_hours()).collect();
        assert_eq!(hours, [1, 3, 6, 12, 24, 24]);
        assert_eq!(backoff(1, true).num_hours(), 24);
    }

    #[test]
    fn a_name_points_here_when_one_of_its_addresses_is_ours() {
        let here: Vec<IpAddr> = vec![
            "192.0.2.10".parse().unwrap(),
            "2001:db8::10".parse().unwrap(),
        ];
        assert!(points_here(&["2001:db8::10".parse().unwrap()], &here).is_ok());
        // One address elsewhere (an old AAAA) is enough to leave the name out.
        let both: Vec<IpAddr> = vec![
            "192.0.2.10".parse().unwrap(),
            "2001:db8::99".parse().unwrap(),
        ];
        assert_eq!(
            points_here(&both, &here).unwrap_err(),
            "points to 2001:db8::99, not here"
        );
        assert_eq!(points_here(&[], &here).unwrap_err(), "no A/AAAA record");
        assert_eq!(
            points_here(&["198.51.100.7".parse().unwrap()], &here).unwrap_err(),
            "points to 198.51.100.7, not here"
        );
    }

    fn pair(name: &str) -> (String, String) {
        let p = tlskeys::generate_self_signed(&host(name), &[], 30).unwrap();
        (p.cert_pem, p.key_pem)
    }

    #[test]
    fn a_swap_cut_short_between_the_renames_is_finished_and_strays_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.crt"), dir.path().join("c.key"));
        let (old_cert, old_key) = pair("mail.example.com");
        std::fs::write(&cert, &old_cert).unwrap();
        std::fs::write(&key, &old_key).unwrap();
        assert_eq!(finish_swap(&cert, &key).unwrap(), None);

        // Cut after the key was renamed: the new certificate is finished in place.
        let (new_cert, new_key) = pair("mail.example.com");
        std::fs::write(&key, &new_key).unwrap();
        std::fs::write(with_suffix(&cert, ".new"), &new_cert).unwrap();
        assert!(finish_swap(&cert, &key).unwrap().is_some());
        assert_eq!(std::fs::read_to_string(&cert).unwrap(), new_cert);
        assert!(!with_suffix(&cert, ".new").exists());

        // Cut before any rename: both new files go in place.
        let (c3, k3) = pair("mail.example.com");
        std::fs::write(with_suffix(&cert, ".new"), &c3).unwrap();
        std::fs::write(with_suffix(&key, ".new"), &k3).unwrap();
        finish_swap(&cert, &key).unwrap();
        assert_eq!(std::fs::read_to_string(&cert).unwrap(), c3);
        assert_eq!(std::fs::read_to_string(&key).unwrap(), k3);

        // A stray certificate of no key we hold is removed, the pair in place kept.
        let (c4, _) = pair("mail.example.com");
        std::fs::write(with_suffix(&cert, ".new"), &c4).unwrap();
        assert_eq!(finish_swap(&cert, &key).unwrap(), None);
        assert_eq!(std::fs::read_to_string(&cert).unwrap(), c3);
        assert!(!with_suffix(&cert, ".new").exists());
    }

    /// The real cut: `install_pair` stopped between its renames by the fault point.
    #[cfg(feature = "fault-injection")]
    #[test]
    fn an_install_stopped_between_the_renames_is_finished_by_the_next_run() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.crt"), dir.path().join("c.key"));
        let (c1, k1) = pair("mail.example.com");
        install_pair(&cert, &key, &c1, &k1).unwrap();
        let (c2, k2) = pair("mail.example.com");
        let cut = crate::fault::armed_in_this_thread("tls-renew-between-renames", || {
            install_pair(&cert, &key, &c2, &k2)
        });
        assert!(cut.is_err());
        // The daemons would now find a key that is not the certificate's.
        assert_eq!(std::fs::read_to_string(&key).unwrap(), k2);
        assert_eq!(std::fs::read_to_string(&cert).unwrap(), c1);
        assert!(finish_swap(&cert, &key).unwrap().is_some());
        assert_eq!(std::fs::read_to_string(&cert).unwrap(), c2);
        assert!(tlskeys::key_matches(&c2, &std::fs::read_to_string(&key).unwrap()).unwrap());
    }

    #[test]
    fn install_pair_replaces_both_files_with_the_key_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.crt"), dir.path().join("c.key"));
        let (c, k) = pair("mail.example.com");
        install_pair(&cert, &key, &c, &k).unwrap();
        assert_eq!(std::fs::read_to_string(&cert).unwrap(), c);
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(check_pair(&c, &k, &host("mail.example.com")).is_ok());
        assert!(check_pair(&c, &k, &host("other.example.com")).is_err());
        let (_, other_key) = pair("mail.example.com");
        assert!(check_pair(&c, &other_key, &host("mail.example.com")).is_err());
    }
}
