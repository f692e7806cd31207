//! The `check_mx` job (Modoboa's `modo check_mx`): for every enabled domain with DNS checks on,
//! the MX records and their addresses (kept in `admin_mxrecord` for 7200 s), whether one is in
//! the valid networks, and every MX address against every DNSBL (`admin_dnsblresult`). The
//! domain's administrators and the admin address get one mail per domain whenever something
//! changed since the previous run; a DNS failure changes nothing and alerts no one.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::dns::resolver::{in_networks, DnsFailure, DnsblAnswer, Exchanger, Resolver};
use crate::names::Network;
use crate::names::{DomainName, EmailAddress};
use crate::store::dnschecks::{self, CheckedDomain, MxRow};
use crate::store::{Store, StoreError};
use crate::system::mail::{self, Mail};

/// How long resolved MX rows are trusted before the next lookup (Modoboa's value).
pub const MX_TTL_SECS: i64 = 7200;
/// After this many queries without a single answer, the rest of the run is skipped.
const DEAD_RESOLVER_QUERIES: usize = 4;
/// At most this many error lines are kept in a domain's state.
const MAX_ERRORS: usize = 20;

/// What the check needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub providers: Vec<DomainName>,
    pub valid_networks: Vec<Network>,
    pub resolver: Option<SocketAddr>,
    pub timeout: Duration,
    /// Copied on every alert (the superadmins' address).
    pub admin_address: Option<EmailAddress>,
    /// Named in the alerts.
    pub hostname: String,
}

impl Settings {
    pub fn from_config(config: &Config) -> Self {
        Settings {
            providers: config.check_mx.dnsbl_providers.clone(),
            valid_networks: config.check_mx.valid_networks.clone(),
            resolver: config.check_mx.resolver,
            timeout: Duration::from_secs(config.check_mx.timeout_secs),
            admin_address: config.admin_address(),
            hostname: config.hostname.to_string(),
        }
    }
}

/// The MX situation of a domain, as last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum MxState {
    #[default]
    Ok,
    /// No MX record (or only RFC 7505's null MX).
    Missing,
    /// MX records whose hosts have no address.
    NoAddress,
    /// No MX address inside `check_mx.valid_networks`.
    OutsideNetworks,
}

impl MxState {
    fn describe(self, domain: &str) -> String {
        match self {
            MxState::Ok => format!("{domain} has a valid MX record again"),
            MxState::Missing => format!("{domain} has no MX record: mail for it cannot be delivered"),
            MxState::NoAddress => {
                format!("the MX hosts of {domain} have no address: mail for it cannot be delivered")
            }
            MxState::OutsideNetworks => format!(
                "no MX of {domain} points inside the valid networks (check_mx.valid_networks): its mail goes elsewhere"
            ),
        }
    }
}

/// What is kept between runs for one domain (`modobox_setting`, `check_mx.domain.<id>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DomainState {
    /// The last MX state that was established (a failed lookup leaves it as it was).
    pub mx: MxState,
    pub checked_at: Option<DateTime<Utc>>,
    /// This run's DNS failures (lookups that gave neither a yes nor a no).
    #[serde(default)]
    pub errors: Vec<String>,
}

/// The state `check_mx` recorded for a domain, for `status` and the UI.
pub async fn domain_state(
    store: &Store,
    domain_id: i32,
) -> Result<Option<DomainState>, StoreError> {
    let mut tx = store.begin().await?;
    let raw = dnschecks::state(&mut tx, domain_id).await?;
    tx.commit().await?;
    Ok(raw.and_then(|text| serde_json::from_str(&text).ok()))
}

/// What one run did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub domains: usize,
    pub without_valid_mx: usize,
    /// (domain, MX host, address, provider, answer) of every current listing.
    pub listings: Vec<(String, String, IpAddr, String, String)>,
    pub lookups: usize,
    /// Lookups that got no answer at all.
    pub timeouts: usize,
    pub errors: Vec<String>,
    /// Domains not checked because the resolver stopped answering.
    pub skipped: usize,
    /// One mail per domain whose state changed; `run` sends them.
    pub alerts: Vec<Mail>,
}

impl Outcome {
    pub fn summary(&self) -> String {
        let mut parts = vec![format!(
            "{} domain{} checked",
            self.domains,
            if self.domains == 1 { "" } else { "s" }
        )];
        if self.without_valid_mx > 0 {
            parts.push(format!("{} without a valid MX", self.without_valid_mx));
        }
        parts.push(match self.listings.len() {
            0 => "no DNSBL listing".to_string(),
            n => format!(
                "{n} DNSBL listing{} ({})",
                if n == 1 { "" } else { "s" },
                self.listings
                    .iter()
                    .take(3)
                    .map(|(_, host, ip, provider, _)| format!("{host} {ip} on {provider}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
        if !self.errors.is_empty() {
            parts.push(format!(
                "{} DNS failure{} (first: {})",
                self.errors.len(),
                if self.errors.len() == 1 { "" } else { "s" },
                self.errors[0]
            ));
        }
        if self.skipped > 0 {
            parts.push(format!(
                "{} domain(s) skipped: the resolver answers nothing",
                self.skipped
            ));
        }
        if !self.alerts.is_empty() {
            parts.push(format!("{} alert mail(s)", self.alerts.len()));
        }
        parts.join(", ")
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckMxError {
    /// No resolver could be set up.
    #[error(transparent)]
    Resolver(#[from] DnsFailure),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Every lookup failed, or domains were skipped: the resolver itself is unusable. The text
    /// is the run's summary.
    #[error("{summary}")]
    Unusable { summary: String },
}

/// The scheduler's entry point.
pub async fn run(config: &Config, store: &Store) -> Result<String, CheckMxError> {
    let settings = Settings::from_config(config);
    let resolver = Resolver::new(settings.resolver, settings.timeout)?;
    let outcome = check(store, &settings, &resolver, Utc::now()).await?;
    for alert in &outcome.alerts {
        let (config, alert) = (config.clone(), alert.clone());
        let sent = tokio::task::spawn_blocking(move || mail::send(&config.hostname, &alert)).await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("check_mx alert mail failed: {e}"),
            Err(e) => tracing::error!("check_mx alert mail failed: {e}"),
        }
    }
    let summary = outcome.summary();
    // Every lookup failing means the resolver itself is unusable: the run failed.
    if outcome.skipped > 0 || (outcome.lookups > 0 && outcome.errors.len() >= outcome.lookups) {
        return Err(CheckMxError::Unusable { summary });
    }
    Ok(summary)
}

/// One run over every checked domain at the instant `now`. Network waits happen outside any
/// transaction; each domain's writes are one transaction.
pub async fn check(
    store: &Store,
    settings: &Settings,
    resolver: &Resolver,
    now: DateTime<Utc>,
) -> Result<Outcome, StoreError> {
    let mut tx = store.begin().await?;
    let domains = dnschecks::domains(&mut tx).await?;
    tx.commit().await?;
    let mut outcome = Outcome {
        domains: domains.len(),
        ..Outcome::default()
    };
    for (i, domain) in domains.iter().enumerate() {
        // A dead resolver would cost two timeouts per domain: stop once it has answered none
        // of several queries, rather than hold the job for domains × timeouts.
        if outcome.lookups >= DEAD_RESOLVER_QUERIES && outcome.timeouts == outcome.lookups {
            outcome.skipped = domains.len() - i;
            break;
        }
        check_domain(store, settings, resolver, now, domain, &mut outcome).await?;
    }
    let ids: Vec<i32> = domains.iter().map(|d| d.id).collect();
    let mut tx = store.begin().await?;
    dnschecks::prune_states(&mut tx, &ids).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// The MX rows to have after this run: those to keep (refreshed or not) and those to add.
struct MxPlan {
    keep: Vec<MxRow>,
    refresh: bool,
    add: Vec<(String, IpAddr)>,
    remove: Vec<i32>,
    /// None when the lookup failed: the previous state stands.
    state: Option<MxState>,
}

fn plan_mx(rows: Vec<MxRow>, resolved: Option<&[Exchanger]>, networks: &[Network]) -> MxPlan {
    let Some(exchangers) = resolved else {
        // Cached rows (fresh) or a failed lookup (stale rows kept until one succeeds).
        return MxPlan {
            state: None,
            keep: rows,
            refresh: false,
            add: Vec::new(),
            remove: Vec::new(),
        };
    };
    let wanted: BTreeSet<(String, IpAddr)> = exchangers
        .iter()
        .flat_map(|x| x.addresses.iter().map(|a| (x.name.clone(), *a)))
        .collect();
    let mut keep = Vec::new();
    let mut remove = Vec::new();
    let mut have = BTreeSet::new();
    for row in rows {
        let key = (row.name.clone(), row.address);
        if wanted.contains(&key) && !have.contains(&key) {
            have.insert(key);
            keep.push(row);
        } else {
            remove.push(row.id);
        }
    }
    let add = wanted.difference(&have).cloned().collect();
    let state = if exchangers.is_empty() {
        MxState::Missing
    } else if wanted.is_empty() {
        MxState::NoAddress
    } else if !wanted.iter().any(|(_, ip)| in_networks(networks, *ip)) {
        MxState::OutsideNetworks
    } else {
        MxState::Ok
    };
    MxPlan {
        keep,
        refresh: true,
        add,
        remove,
        state: Some(state),
    }
}

async fn check_domain(
    store: &Store,
    settings: &Settings,
    resolver: &Resolver,
    now: DateTime<Utc>,
    domain: &CheckedDomain,
    outcome: &mut Outcome,
) -> Result<(), StoreError> {
    let mut tx = store.begin().await?;
    let rows = dnschecks::mx_rows(&mut tx, domain.id).await?;
    let previous: DomainState = dnschecks::state(&mut tx, domain.id)
        .await?
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    let old_results = dnschecks::dnsbl_rows(&mut tx, domain.id).await?;
    tx.commit().await?;

    let mut errors = Vec::new();
    // Modoboa's cache: rows younger than their expiry are used as they are.
    let fresh = !rows.is_empty() && rows.iter().all(|r| r.updated > now);
    let resolved = if fresh {
        None
    } else {
        outcome.lookups += 1;
        match resolver.mx(&domain.name).await {
            Ok(x) => Some(x),
            Err(e) => {
                if matches!(e, DnsFailure::Timeout { .. }) {
                    outcome.timeouts += 1;
                }
                errors.push(e.to_string());
                None
            }
        }
    };
    let mut plan = plan_mx(rows, resolved.as_deref(), &settings.valid_networks);
    if fresh {
        // The configured networks may have changed since the rows were written.
        plan.state = Some(
            if plan
                .keep
                .iter()
                .any(|r| in_networks(&settings.valid_networks, r.address))
            {
                MxState::Ok
            } else {
                MxState::OutsideNetworks
            },
        );
    }

    // Every distinct address of the rows to be, against every provider, all at once.
    let addresses: BTreeSet<IpAddr> = plan
        .keep
        .iter()
        .map(|r| r.address)
        .chain(plan.add.iter().map(|(_, a)| *a))
        .collect();
    let mut queries = tokio::task::JoinSet::new();
    for ip in &addresses {
        for provider in &settings.providers {
            let (resolver, ip, provider) = (resolver.clone(), *ip, provider.clone());
            queries.spawn(async move {
                let answer = resolver.dnsbl(ip, &provider).await;
                (ip, provider.to_string(), answer)
            });
        }
    }
    let mut answers: BTreeMap<(IpAddr, String), DnsblAnswer> = BTreeMap::new();
    while let Some(joined) = queries.join_next().await {
        outcome.lookups += 1;
        match joined {
            Ok((ip, provider, answer)) => {
                if matches!(answer, DnsblAnswer::Failed(DnsFailure::Timeout { .. })) {
                    outcome.timeouts += 1;
                }
                if let Some(e) = answer.error() {
                    errors.push(format!("{provider} for {ip}: {e}"));
                }
                answers.insert((ip, provider), answer);
            }
            Err(e) => errors.push(format!("a DNSBL query did not finish: {e}")),
        }
    }

    let mut tx = store.begin().await?;
    let expires = now + chrono::Duration::seconds(MX_TTL_SECS);
    for id in &plan.remove {
        dnschecks::delete_mx(&mut tx, *id).await?;
    }
    let mut current: Vec<MxRow> = Vec::new();
    // Modoboa's `managed`: the address is inside the configured valid networks.
    let managed = |ip: IpAddr| {
        !settings.valid_networks.is_empty() && in_networks(&settings.valid_networks, ip)
    };
    for row in plan.keep {
        if plan.refresh {
            dnschecks::refresh_mx(&mut tx, row.id, managed(row.address), expires).await?;
        }
        current.push(row);
    }
    for (name, address) in &plan.add {
        let m = managed(*address);
        let id = dnschecks::insert_mx(&mut tx, domain.id, name, *address, m, expires).await?;
        current.push(MxRow {
            id,
            name: name.clone(),
            address: *address,
            managed: m,
            updated: expires,
        });
    }
    let configured: BTreeSet<String> = settings.providers.iter().map(|p| p.to_string()).collect();
    for gone in old_results
        .iter()
        .map(|r| r.provider.clone())
        .collect::<BTreeSet<_>>()
        .difference(&configured)
    {
        dnschecks::delete_dnsbl(&mut tx, domain.id, gone).await?;
    }

    let mut changes = Vec::new();
    let new_state = plan.state.unwrap_or(previous.mx);
    if new_state != previous.mx {
        changes.push(new_state.describe(&domain.name));
    }
    if new_state != MxState::Ok {
        outcome.without_valid_mx += 1;
    }
    for row in &current {
        for provider in &configured {
            let before = old_results
                .iter()
                .find(|r| r.mx_id == row.id && &r.provider == provider)
                .map(|r| r.status.clone());
            let status = match answers.get(&(row.address, provider.clone())) {
                Some(DnsblAnswer::Clean) => String::new(),
                Some(DnsblAnswer::Listed(code)) => code.to_string(),
                // No answer: the last known result stands, whatever it was.
                Some(DnsblAnswer::Refused(_) | DnsblAnswer::Failed(_)) | None => {
                    if let Some(b) = before.as_ref().filter(|b| !b.is_empty()) {
                        outcome.listings.push((
                            domain.name.clone(),
                            row.name.clone(),
                            row.address,
                            provider.clone(),
                            b.clone(),
                        ));
                    }
                    continue;
                }
            };
            let was_listed = before.as_ref().is_some_and(|b| !b.is_empty());
            let listed = !status.is_empty();
            if listed {
                outcome.listings.push((
                    domain.name.clone(),
                    row.name.clone(),
                    row.address,
                    provider.clone(),
                    status.clone(),
                ));
            }
            if listed && !was_listed {
                changes.push(format!(
                    "{} ({}) is now listed on {provider} (answer {status})",
                    row.name, row.address
                ));
            } else if was_listed && !listed {
                changes.push(format!(
                    "{} ({}) is no longer listed on {provider}",
                    row.name, row.address
                ));
            }
            if before.as_deref() != Some(status.as_str()) {
                dnschecks::set_dnsbl(&mut tx, domain.id, provider, row.id, &status).await?;
            }
        }
    }

    let mut kept_errors: Vec<String> = errors
        .iter()
        .take(MAX_ERRORS)
        .map(|e| e.chars().take(300).collect())
        .collect();
    kept_errors.dedup();
    let state = DomainState {
        mx: new_state,
        checked_at: Some(now),
        errors: kept_errors,
    };
    let json = serde_json::to_string(&state).map_err(|e| StoreError::Corrupt {
        what: format!("check state of {}: {e}", domain.name),
    })?;
    dnschecks::set_state(&mut tx, domain.id, &json).await?;

    let recipients = if changes.is_empty() {
        Vec::new()
    } else {
        let mut to: Vec<EmailAddress> = Vec::new();
        let admins = dnschecks::admin_addresses(&mut tx, domain.id).await?;
        for a in admins {
            match EmailAddress::parse("administrator address", &a) {
                Ok(addr) if !to.contains(&addr) => to.push(addr),
                Ok(_) => {}
                Err(e) => tracing::warn!("check_mx: not alerting {a:?}: {e}"),
            }
        }
        if let Some(admin) = &settings.admin_address {
            if !to.contains(admin) {
                to.push(admin.clone());
            }
        }
        to
    };
    tx.commit().await?;

    if !changes.is_empty() {
        let advice = if changes.iter().any(|c| c.contains(" is now listed on ")) {
            "\nA listed address loses mail to the receivers that use the list: find why it was \
             listed (the provider's lookup page) and ask for removal once the cause is fixed.\n"
        } else {
            ""
        };
        let body = format!(
            "modobox on {host} found changes in the DNS of {domain}:\n\n{lines}\n{advice}",
            host = settings.hostname,
            domain = domain.name,
            lines = changes
                .iter()
                .map(|c| format!("- {c}"))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        let subject = if changes.len() == 1 {
            format!("[modobox] {}", changes[0])
        } else {
            format!("[modobox] {}: {} DNS changes", domain.name, changes.len())
        };
        if recipients.is_empty() {
            tracing::warn!(
                "check_mx: nobody to alert for {}: {}",
                domain.name,
                changes.join("; ")
            );
        } else {
            outcome.alerts.push(Mail {
                to: recipients,
                subject,
                body,
            });
        }
    }
    outcome.errors.extend(errors);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i32, name: &str, ip: &str) -> MxRow {
        MxRow {
            id,
            name: name.into(),
            address: ip.parse().unwrap(),
            managed: false,
            updated: Utc::now(),
        }
    }

    #[test]
    fn plan_keeps_matching_rows_and_replaces_the_others() {
        let rows = vec![
            row(1, "mx.example.com", "192.0.2.1"),
            row(2, "mx.example.com", "192.0.2.2"),
            row(3, "mx.example.com", "192.0.2.1"),
        ];
        let x = [Exchanger {
            name: "mx.example.com".into(),
            addresses: vec!["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()],
        }];
        let plan = plan_mx(rows, Some(&x), &[]);
        assert_eq!(plan.keep.iter().map(|r| r.id).collect::<Vec<_>>(), vec![1]);
        assert_eq!(plan.remove, vec![2, 3]);
        assert_eq!(
            plan.add,
            vec![("mx.example.com".to_string(), "2001:db8::1".parse().unwrap())]
        );
        assert_eq!(plan.state, Some(MxState::Ok));
    }

    #[test]
    fn plan_states() {
        assert_eq!(
            plan_mx(vec![], Some(&[]), &[]).state,
            Some(MxState::Missing)
        );
        let no_addr = [Exchanger {
            name: "mx.example.com".into(),
            addresses: vec![],
        }];
        assert_eq!(
            plan_mx(vec![], Some(&no_addr), &[]).state,
            Some(MxState::NoAddress)
        );
        let x = [Exchanger {
            name: "mx.example.com".into(),
            addresses: vec!["198.51.100.7".parse().unwrap()],
        }];
        let nets = [Network::parse("n", "192.0.2.0/24").unwrap()];
        assert_eq!(
            plan_mx(vec![], Some(&x), &nets).state,
            Some(MxState::OutsideNetworks)
        );
        let failed = plan_mx(vec![row(1, "mx.example.com", "192.0.2.1")], None, &nets);
        assert_eq!(failed.state, None);
        assert_eq!(failed.keep.len(), 1);
        assert!(!failed.refresh);
    }
}
