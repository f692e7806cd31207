//! Hosted domains, relay domains (a domain row of type `relaydomain` + its transport + the
//! recipient-verification access row) and domain aliases, with Modoboa's quota rules and the
//! cascades it keeps in Python, done here in the caller's transaction. Domains and accounts
//! use each other (the store's one documented circle): deleting a domain deletes its accounts.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::access::{self, Actor, Kind, Role};
use super::{accounts, aliases, audit, contains_pattern, Page, StoreError, Tx};
use crate::args;
use crate::names::{DkimSelector, DomainKind, DomainName, Username};

/// Largest quota in MB: Modoboa's columns are 32-bit integers.
pub const MAX_QUOTA_MB: i32 = i32::MAX;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Relay {
    pub target_host: String,
    pub target_port: u16,
    pub service: String,
    pub verify_recipients: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Domain {
    pub id: i32,
    pub name: DomainName,
    #[serde(rename = "type")]
    pub kind: DomainKind,
    pub quota: i32,
    pub default_mailbox_quota: i32,
    pub enabled: bool,
    pub enable_dns_checks: bool,
    pub enable_dkim: bool,
    pub dkim_key_selector: String,
    pub dkim_key_length: Option<i32>,
    pub dkim_public_key: String,
    pub dkim_private_key_path: String,
    pub creation: DateTime<Utc>,
    pub last_modification: Option<DateTime<Utc>>,
    /// Modoboa 2.x's daily sending limit (None: none, or a 1.10 schema without the column).
    pub message_limit: Option<i32>,
    pub mailboxes: i64,
    /// Sum of the mailbox quotas (MB).
    pub allocated_quota: i64,
    /// Aliases (not the internal ones) and domain aliases of this domain.
    pub aliases: i64,
    pub domain_aliases: i64,
    /// Modoboa's `dns_global_status`: disabled, pending, ok or critical.
    pub dns_status: &'static str,
    /// The relay's `transport_transport` row.
    pub transport_id: Option<i32>,
    pub relay: Option<Relay>,
}

#[derive(Debug, Clone)]
pub struct DomainSpec {
    pub quota: i32,
    pub default_mailbox_quota: i32,
    pub enabled: bool,
    pub enable_dns_checks: bool,
    pub enable_dkim: bool,
    pub dkim_key_selector: DkimSelector,
    pub dkim_key_length: Option<i32>,
    /// Modoboa 2.x's daily sending limit (None: none).
    pub message_limit: Option<i32>,
}

impl Default for DomainSpec {
    fn default() -> Self {
        DomainSpec {
            quota: 0,
            default_mailbox_quota: 0,
            enabled: true,
            enable_dns_checks: true,
            enable_dkim: false,
            dkim_key_selector: DkimSelector::parse("dkim_key_selector", "modoboa")
                .unwrap_or_else(|_| unreachable!("a valid selector")),
            dkim_key_length: None,
            message_limit: None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct DomainPatch {
    pub quota: Option<i32>,
    pub default_mailbox_quota: Option<i32>,
    pub enabled: Option<bool>,
    pub enable_dns_checks: Option<bool>,
    pub enable_dkim: Option<bool>,
    pub dkim_key_selector: Option<DkimSelector>,
    pub dkim_key_length: Option<Option<i32>>,
    /// Some(None) = no daily sending limit.
    pub message_limit: Option<Option<i32>>,
    pub relay: Option<Relay>,
}

pub fn check_quotas(quota: i32, default_mailbox_quota: i32) -> Result<(), StoreError> {
    if quota < 0 {
        return Err(StoreError::refused(
            "quota",
            "must be 0 (unlimited) or a positive number of MB",
        ));
    }
    if default_mailbox_quota < 0 {
        return Err(StoreError::refused(
            "default_mailbox_quota",
            "must be 0 (unlimited) or a positive number of MB",
        ));
    }
    // 0 with a domain quota is allowed (as in Modoboa): each mailbox is then given its own.
    if quota > 0 && default_mailbox_quota > quota {
        return Err(StoreError::refused(
            "default_mailbox_quota",
            format!("cannot be greater than the domain quota ({quota} MB)"),
        ));
    }
    Ok(())
}

fn check_key_length(len: Option<i32>) -> Result<(), StoreError> {
    match len {
        None | Some(1024 | 2048 | 4096) => Ok(()),
        Some(_) => Err(StoreError::refused(
            "dkim_key_length",
            "must be 1024, 2048 or 4096",
        )),
    }
}

/// A name a new domain or domain alias may take: not a public suffix, not this server's hostname
/// or a name under it, not under a hosted or relay domain the actor does not administer.
async fn check_new_name(tx: &mut Tx, actor: Actor, name: &DomainName) -> Result<(), StoreError> {
    let n = name.as_str();
    if psl::suffix(n.as_bytes()).is_some_and(|s| s.typ().is_some() && s.as_bytes() == n.as_bytes())
    {
        return Err(StoreError::refused(
            "name",
            "is a public suffix (registries hand out names under it), not a domain",
        ));
    }
    if let Some(host) = server_hostname() {
        if n == host || n.ends_with(&format!(".{host}")) {
            return Err(StoreError::refused(
                "name",
                format!("is this server's hostname ({host}) or a name under it"),
            ));
        }
    }
    let mut parent = n;
    while let Some((_, rest)) = parent.split_once('.') {
        parent = rest;
        // A single label is no domain name, so no domain holds it.
        let Ok(parent_name) = DomainName::parse("name", parent) else {
            continue;
        };
        if let Some(id) = hosting_domain(tx, &parent_name).await? {
            if !access::can_admin_domain(tx, actor, id).await? {
                return Err(StoreError::refused(
                    "name",
                    format!("is under {parent}, a domain you do not administer"),
                ));
            }
        }
    }
    Ok(())
}

/// The id of the domain that holds the addresses of `name`: the domain of that name (hosted or
/// relay), or the target of the domain alias of that name.
pub(crate) async fn hosting_domain(
    tx: &mut Tx,
    name: &DomainName,
) -> Result<Option<i32>, StoreError> {
    if let Some(r) = tx
        .row(
            "SELECT id FROM admin_domain WHERE name = ?",
            args![name.as_str()],
        )
        .await?
    {
        return Ok(Some(r.i32("id")?));
    }
    tx.row(
        "SELECT target_id FROM admin_domainalias WHERE name = ?",
        args![name.as_str()],
    )
    .await?
    .map(|r| r.i32("target_id"))
    .transpose()
}

/// The hosted domain whose mail a client set up for `name` reads: the enabled hosted domain of
/// that name, or the target of an enabled domain alias of that name (then `true`). None for
/// relay domains, disabled ones and names this server does not host.
pub async fn mail_domain_of(
    tx: &mut Tx,
    name: &DomainName,
) -> Result<Option<(DomainName, bool)>, StoreError> {
    let hosted = DomainKind::Domain.as_str();
    if let Some(r) = tx
        .row(
            "SELECT name FROM admin_domain WHERE name = ? AND type = ? AND enabled = ?",
            args![name.as_str(), hosted, true],
        )
        .await?
    {
        return Ok(Some((stored_name(&r, "name")?, false)));
    }
    tx.row(
        "SELECT d.name FROM admin_domainalias da INNER JOIN admin_domain d ON d.id = da.target_id WHERE da.name = ? AND da.enabled = ? AND d.type = ? AND d.enabled = ?",
        args![name.as_str(), true, hosted, true],
    )
    .await?
    .map(|r| Ok((stored_name(&r, "name")?, true)))
    .transpose()
}

/// This machine's host name (what `install` set from the configuration's hostname), lower-case.
fn server_hostname() -> Option<String> {
    nix::unistd::gethostname()
        .ok()?
        .into_string()
        .ok()
        .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
        .filter(|h| h.contains('.'))
}

/// Superadmins and resellers create, delete and alias domains and point relays; domain admins
/// manage what is inside theirs.
fn may_manage_domains(actor: Actor) -> bool {
    actor.is_super()
        || matches!(
            actor,
            Actor::User {
                role: Role::Resellers,
                ..
            }
        )
}

/// The Postfix services a relay domain may use: the plain SMTP clients. Any other master.cf
/// service (`smtp-amavis`, the re-injection listener, `local`, pipes) would skip the content
/// filter or reach inside the server.
pub const RELAY_SERVICES: [&str; 2] = ["relay", "smtp"];

fn check_relay(relay: &Relay) -> Result<(), StoreError> {
    crate::names::DbHost::parse("target_host", &relay.target_host)?;
    if relay.target_port == 0 {
        return Err(StoreError::refused(
            "target_port",
            "must be between 1 and 65535",
        ));
    }
    if !RELAY_SERVICES.contains(&relay.service.as_str()) {
        return Err(StoreError::refused("service", "must be relay or smtp"));
    }
    if is_internal_target(&relay.target_host) {
        return Err(StoreError::refused(
            "target_host",
            "must not be this machine or a link-local address (loopback, localhost, unspecified, link-local)",
        ));
    }
    Ok(())
}

/// A relay target that is this machine or its link: the content filter's own listeners live on
/// loopback.
fn is_internal_target(host: &str) -> bool {
    use std::net::IpAddr;
    let h = host.trim_start_matches('[').trim_end_matches(']');
    match h.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => a.is_loopback() || a.is_unspecified() || a.is_link_local(),
        Ok(IpAddr::V6(a)) => {
            let mapped = a.to_ipv4_mapped();
            a.is_loopback()
                || a.is_unspecified()
                || (a.segments()[0] & 0xffc0) == 0xfe80
                || mapped
                    .is_some_and(|m| m.is_loopback() || m.is_unspecified() || m.is_link_local())
        }
        Err(_) => {
            let lower = h.to_ascii_lowercase();
            lower == "localhost" || lower.ends_with(".localhost")
        }
    }
}

const DOMAIN_COLUMNS: &str = "id, name, type, quota, default_mailbox_quota, enabled, enable_dns_checks, enable_dkim, dkim_key_selector, dkim_key_length, dkim_public_key, dkim_private_key_path, creation, transport_id";

/// What is counted beside a domain's row, as subqueries over `admin_domain d`: mailboxes and
/// their quotas, aliases, domain aliases, authorised MX records and DNSBL listings.
fn counted_columns(tx: &Tx) -> String {
    let sum = tx.sum_int("m.quota");
    format!(
        "(SELECT COUNT(*) FROM admin_mailbox m WHERE m.domain_id = d.id) AS n_mailboxes, \
         (SELECT {sum} FROM admin_mailbox m WHERE m.domain_id = d.id) AS allocated, \
         (SELECT COUNT(*) FROM admin_alias a WHERE a.domain_id = d.id AND NOT a.internal) AS n_aliases, \
         (SELECT COUNT(*) FROM admin_domainalias da WHERE da.target_id = d.id) AS n_domain_aliases, \
         (SELECT COUNT(*) FROM admin_mxrecord x WHERE x.domain_id = d.id AND x.managed) AS n_valid_mx, \
         (SELECT COUNT(*) FROM admin_dnsblresult b WHERE b.domain_id = d.id AND b.status <> '') AS n_listed"
    )
}

/// The domain columns, with `message_limit` only where the schema has it (Modoboa 2.x).
async fn domain_columns(tx: &mut Tx) -> Result<String, StoreError> {
    let limit = if tx.modoboa_schema().await?.message_limits().1 {
        "d.message_limit"
    } else {
        "NULL AS message_limit"
    };
    Ok(format!(
        "{}, d.last_modification, {limit}",
        DOMAIN_COLUMNS
            .split(", ")
            .map(|c| format!("d.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// Top-level domains that never hold a real domain (RFC 2606/6761), as Modoboa's
/// `RESERVED_TLD`: their DNS is not checked.
const RESERVED_TLDS: [&str; 4] = ["example", "invalid", "localhost", "test"];

/// Modoboa's `dns_global_status`: `disabled` when the checks are off (or the name cannot be
/// in DNS), `pending` when no authorised MX was seen yet for a domain under a day old,
/// `critical` when none was seen or an MX is on a DNSBL, else `ok`.
fn dns_status(
    r: &super::Row,
    name: &DomainName,
    creation: DateTime<Utc>,
) -> Result<&'static str, StoreError> {
    let tld = name.as_str().rsplit('.').next().unwrap_or("");
    if !r.bool("enable_dns_checks")? || RESERVED_TLDS.contains(&tld) {
        return Ok("disabled");
    }
    let valid_mx = r.i64("n_valid_mx")? > 0;
    Ok(
        if !valid_mx && Utc::now() - creation < chrono::Duration::hours(24) {
            "pending"
        } else if !valid_mx || r.i64("n_listed")? > 0 {
            "critical"
        } else {
            "ok"
        },
    )
}

async fn build(tx: &mut Tx, r: &super::Row) -> Result<Domain, StoreError> {
    let id = r.i32("id")?;
    let name = stored_name(r, "name")?;
    let relay = match r.opt_i32("transport_id")? {
        Some(t) => relay_of(tx, t, name.as_str()).await?,
        None => None,
    };
    let kind = DomainKind::parse("type", &r.text("type")?)
        .map_err(|e| StoreError::corrupt(format!("domain {name}"), e))?;
    let creation = r.ts("creation")?;
    let dns_status = dns_status(r, &name, creation)?;
    Ok(Domain {
        id,
        name,
        kind,
        quota: r.i32("quota")?,
        default_mailbox_quota: r.i32("default_mailbox_quota")?,
        enabled: r.bool("enabled")?,
        enable_dns_checks: r.bool("enable_dns_checks")?,
        enable_dkim: r.bool("enable_dkim")?,
        dkim_key_selector: r.text("dkim_key_selector")?,
        dkim_key_length: r.opt_i32("dkim_key_length")?,
        dkim_public_key: r.text("dkim_public_key")?,
        dkim_private_key_path: r.text("dkim_private_key_path")?,
        creation,
        last_modification: r.opt_ts("last_modification")?,
        message_limit: r.opt_i32("message_limit")?,
        mailboxes: r.i64("n_mailboxes")?,
        allocated_quota: r.i64("allocated")?,
        aliases: r.i64("n_aliases")?,
        domain_aliases: r.i64("n_domain_aliases")?,
        dns_status,
        transport_id: r.opt_i32("transport_id")?,
        relay,
    })
}

/// Transport `_settings` JSON as Modoboa writes it.
#[derive(Debug, Serialize, Deserialize)]
struct TransportSettings {
    relay_target_host: String,
    #[serde(deserialize_with = "port_number_or_text")]
    relay_target_port: u16,
    relay_verify_recipients: bool,
}

/// A port as a number, or as the text Modoboa 1.10–2.8's CSV import stored (`"2525"`).
fn port_number_or_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Port {
        Number(u16),
        Text(String),
    }
    match Port::deserialize(d)? {
        Port::Number(n) => Ok(n),
        Port::Text(t) => t
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("port {t:?} is not a number"))),
    }
}

async fn relay_of(tx: &mut Tx, transport_id: i32, name: &str) -> Result<Option<Relay>, StoreError> {
    let settings = super::modoboa_schema::json_text(tx.backend(), "_settings");
    let Some(t) = tx
        .row(
            &format!(
                "SELECT service, {settings} AS _settings FROM transport_transport WHERE id = ?"
            ),
            args![transport_id],
        )
        .await?
    else {
        return Ok(None);
    };
    let settings: TransportSettings =
        serde_json::from_str(&t.text("_settings")?).map_err(|e| StoreError::Corrupt {
            what: format!("transport settings of {name}: {e}"),
        })?;
    Ok(Some(Relay {
        target_host: settings.relay_target_host,
        target_port: settings.relay_target_port,
        service: t.text("service")?,
        verify_recipients: settings.relay_verify_recipients,
    }))
}

/// A domain name read back from column `col`: written as a `DomainName`, so one that fails
/// the rule is a damaged row.
fn stored_name(r: &super::Row, col: &str) -> Result<DomainName, StoreError> {
    let text = r.text(col)?;
    DomainName::parse(col, &text).map_err(|e| StoreError::corrupt("domain name", e))
}

/// A domain name given to find a domain or domain alias (from a URL, a command line): text
/// that cannot be a domain name names none, so it is not found, like any unknown name.
pub fn name_to_find(kind: &'static str, text: &str) -> Result<DomainName, StoreError> {
    DomainName::parse("name", text.trim()).map_err(|_| StoreError::not_found(kind, text))
}

/// A domain (hosted or relay) by name, if the actor administers it.
pub async fn get(tx: &mut Tx, actor: Actor, name: &DomainName) -> Result<Domain, StoreError> {
    let columns = domain_columns(tx).await?;
    let counted = counted_columns(tx);
    let row = tx
        .row_or_not_found(
            &format!("SELECT {columns}, {counted} FROM admin_domain d WHERE d.name = ?"),
            args![name.as_str()],
            "domain",
            name,
        )
        .await?;
    access::require_domain(tx, actor, row.i32("id")?, name.as_str()).await?;
    build(tx, &row).await
}

/// Domains the actor administers, optionally of one kind.
pub async fn list(
    tx: &mut Tx,
    actor: Actor,
    kind: Option<DomainKind>,
    search: Option<&str>,
) -> Result<Vec<Domain>, StoreError> {
    // One implementation: the paged query without a page.
    let q = DomainQuery { kind, search };
    Ok(list_page(tx, actor, &q, None, 0).await?.items)
}

/// What a page of domains is drawn from.
#[derive(Debug, Clone, Default)]
pub struct DomainQuery<'a> {
    pub kind: Option<DomainKind>,
    /// Part of the name.
    pub search: Option<&'a str>,
}

/// `limit` rows from `offset` of the domains the actor administers, by name, and how many
/// there are in all: filtered, counted and cut in SQL (one query for the page, whatever its
/// size), so a list of 10,000 domains costs what a page costs.
pub async fn list_page(
    tx: &mut Tx,
    actor: Actor,
    q: &DomainQuery<'_>,
    limit: Option<i64>,
    offset: i64,
) -> Result<Page<Domain>, StoreError> {
    let mut cond: Vec<&str> = Vec::new();
    let mut a: Vec<super::Value> = Vec::new();
    if let Actor::User { id, role } = actor {
        match role {
            access::Role::SuperAdmins => {}
            access::Role::SimpleUsers => return Ok(Page::empty()),
            access::Role::Resellers | access::Role::DomainAdmins => {
                let ct = access::content_type(tx, Kind::Domain).await?;
                cond.push("d.id IN (SELECT object_id FROM core_objectaccess WHERE user_id = ? AND content_type_id = ?)");
                a.extend([id.into(), ct.into()]);
            }
        }
    }
    if let Some(k) = q.kind {
        cond.push("d.type = ?");
        a.push(k.as_str().into());
    }
    if let Some(s) = q.search.filter(|s| !s.is_empty()) {
        cond.push("d.name LIKE ? ESCAPE '!'");
        a.push(contains_pattern(s).into());
    }
    let filter = if cond.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", cond.join(" AND "))
    };
    let total = tx
        .count(&format!("SELECT COUNT(*) FROM admin_domain d{filter}"), &a)
        .await?;
    let stats = counted_columns(tx);
    let columns = domain_columns(tx).await?;
    // The page's ids first (a derived table, which MariaDB allows with LIMIT where it refuses
    // `IN (... LIMIT)`), then the counts for those rows only: with the subqueries in the same
    // SELECT, PostgreSQL computes them for every row OFFSET skips.
    let sql = match limit {
        Some(l) => {
            a.extend([l.into(), offset.into()]);
            format!("SELECT {columns}, {stats} FROM (SELECT d.id AS page_id FROM admin_domain d{filter} ORDER BY d.name LIMIT ? OFFSET ?) p INNER JOIN admin_domain d ON d.id = p.page_id ORDER BY d.name")
        }
        None => {
            format!("SELECT {columns}, {stats} FROM admin_domain d{filter} ORDER BY d.name")
        }
    };
    let rows = tx.rows(&sql, &a).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(build(tx, r).await?);
    }
    Ok(Page { items: out, total })
}

/// The name of domain `id` (any kind), whoever may see it: callers then ask `get`.
pub async fn name_by_id(tx: &mut Tx, id: i32) -> Result<Option<DomainName>, StoreError> {
    tx.row("SELECT name FROM admin_domain WHERE id = ?", args![id])
        .await?
        .map(|r| stored_name(&r, "name"))
        .transpose()
}

pub async fn alias_name_by_id(tx: &mut Tx, id: i32) -> Result<Option<DomainName>, StoreError> {
    tx.row("SELECT name FROM admin_domainalias WHERE id = ?", args![id])
        .await?
        .map(|r| stored_name(&r, "name"))
        .transpose()
}

async fn name_taken(tx: &mut Tx, name: &str) -> Result<bool, StoreError> {
    Ok(tx
        .count(
            "SELECT COUNT(*) FROM admin_domain WHERE name = ?",
            args![name],
        )
        .await?
        + tx.count(
            "SELECT COUNT(*) FROM admin_domainalias WHERE name = ?",
            args![name],
        )
        .await?
        > 0)
}

/// Creates a hosted domain, or a relay domain when `relay` is given.
pub async fn create(
    tx: &mut Tx,
    actor: Actor,
    name: &DomainName,
    spec: &DomainSpec,
    relay: Option<&Relay>,
) -> Result<Domain, StoreError> {
    check_quotas(spec.quota, spec.default_mailbox_quota)?;
    check_key_length(spec.dkim_key_length)?;
    if let Some(r) = relay {
        check_relay(r)?;
    }
    if !may_manage_domains(actor) {
        return Err(StoreError::Forbidden(
            "only superadmins and resellers create domains".into(),
        ));
    }
    check_new_name(tx, actor, name).await?;
    if name_taken(tx, name.as_str()).await? {
        return Err(StoreError::Exists {
            kind: "domain",
            name: name.to_string(),
        });
    }
    if let Some(uid) = actor.user_id() {
        let mine = access::domain_ids(tx, actor)
            .await?
            .map_or(0, |v| v.len() as i64);
        access::check_user_limit(tx, actor, "domains", mine, 1).await?;
        if !actor.is_super() {
            let sum = tx.sum_int("d.quota");
            let ct = access::content_type(tx, Kind::Domain).await?;
            let allocated = tx
                .count(
                    &format!("SELECT {sum} FROM admin_domain d INNER JOIN core_objectaccess oa ON oa.object_id = d.id AND oa.content_type_id = ? WHERE oa.user_id = ?"),
                    args![ct, uid],
                )
                .await?;
            if spec.quota == 0 && has_quota_limit(tx, uid).await? {
                return Err(StoreError::refused(
                    "quota",
                    "your quota limit does not allow an unlimited domain",
                ));
            }
            access::check_user_limit(tx, actor, "quota", allocated, i64::from(spec.quota)).await?;
        }
    }
    let transport_id = match relay {
        Some(r) => Some(create_transport(tx, name, r).await?),
        None => None,
    };
    let now = Utc::now();
    let id = tx
        .insert(
            "INSERT INTO admin_domain (name, quota, default_mailbox_quota, enabled, type, enable_dns_checks, transport_id, enable_dkim, dkim_key_selector, dkim_key_length, dkim_public_key, dkim_private_key_path, creation, last_modification) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', '', ?, ?)",
            args![
                name.as_str(),
                spec.quota,
                spec.default_mailbox_quota,
                spec.enabled,
                if relay.is_some() {
                    DomainKind::RelayDomain
                } else {
                    DomainKind::Domain
                }
                .as_str(),
                spec.enable_dns_checks,
                transport_id,
                spec.enable_dkim,
                spec.dkim_key_selector.as_str(),
                spec.dkim_key_length,
                now,
                now
            ],
        )
        .await? as i32;
    if spec.message_limit.is_some() {
        set_message_limit(tx, id, spec.message_limit).await?;
    }
    access::grant_created(tx, actor, Kind::Domain, id).await?;
    let what = if relay.is_some() {
        "Relay domain"
    } else {
        "Domain"
    };
    audit::info(tx, &format!("{what} {name} created")).await?;
    get(tx, actor, name).await
}

async fn has_quota_limit(tx: &mut Tx, user_id: i32) -> Result<bool, StoreError> {
    Ok(tx
        .count(
            "SELECT COUNT(*) FROM limits_userobjectlimit WHERE user_id = ? AND name = 'quota' AND max_value > 0",
            args![user_id],
        )
        .await?
        > 0)
}

fn next_hop(r: &Relay) -> String {
    format!("[{}]:{}", r.target_host, r.target_port)
}

fn settings_json(r: &Relay) -> Result<String, StoreError> {
    serde_json::to_string(&TransportSettings {
        relay_target_host: r.target_host.clone(),
        relay_target_port: r.target_port,
        relay_verify_recipients: r.verify_recipients,
    })
    .map_err(|e| StoreError::Corrupt {
        what: format!("transport settings: {e}"),
    })
}

async fn create_transport(tx: &mut Tx, name: &DomainName, r: &Relay) -> Result<i32, StoreError> {
    let json = tx
        .modoboa_schema()
        .await?
        .json_param("transport_transport", "_settings");
    let id = tx
        .insert(
            &format!("INSERT INTO transport_transport (pattern, service, next_hop, _settings) VALUES (?, ?, ?, {json})"),
            args![name.as_str(), r.service.as_str(), next_hop(r), settings_json(r)?],
        )
        .await? as i32;
    set_verification(tx, name.as_str(), r.verify_recipients).await?;
    Ok(id)
}

async fn set_verification(tx: &mut Tx, name: &str, on: bool) -> Result<(), StoreError> {
    tx.exec(
        "DELETE FROM relaydomains_recipientaccess WHERE pattern = ?",
        args![name],
    )
    .await?;
    if on {
        tx.exec(
            "INSERT INTO relaydomains_recipientaccess (pattern, action) VALUES (?, 'reject_unverified_recipient')",
            args![name],
        )
        .await?;
    }
    Ok(())
}

pub async fn update(
    tx: &mut Tx,
    actor: Actor,
    name: &DomainName,
    patch: &DomainPatch,
) -> Result<Domain, StoreError> {
    let d = get(tx, actor, name).await?;
    // A domain's quotas are what its reseller or the superadmin granted: not its admins' to raise.
    let changes_quota = patch.quota.is_some_and(|q| q != d.quota)
        || patch
            .default_mailbox_quota
            .is_some_and(|q| q != d.default_mailbox_quota);
    if changes_quota
        && matches!(
            actor,
            Actor::User {
                role: Role::DomainAdmins | Role::SimpleUsers,
                ..
            }
        )
    {
        return Err(StoreError::Forbidden(
            "only superadmins and resellers change a domain's quotas".into(),
        ));
    }
    let quota = patch.quota.unwrap_or(d.quota);
    let default_mailbox_quota = patch
        .default_mailbox_quota
        .unwrap_or(d.default_mailbox_quota);
    check_quotas(quota, default_mailbox_quota)?;
    if quota > 0 && i64::from(quota) < d.allocated_quota {
        return Err(StoreError::refused(
            "quota",
            format!(
                "{quota} MB is less than the {} MB already given to mailboxes",
                d.allocated_quota
            ),
        ));
    }
    if quota > 0 && d.mailboxes > 0 {
        let unlimited = tx
            .count(
                "SELECT COUNT(*) FROM admin_mailbox WHERE domain_id = ? AND quota = 0",
                args![d.id],
            )
            .await?;
        if unlimited > 0 {
            return Err(StoreError::refused(
                "quota",
                format!("{unlimited} mailbox(es) of this domain have an unlimited quota; give them one first"),
            ));
        }
    }
    if let Some(relay) = &patch.relay {
        if d.kind != DomainKind::RelayDomain {
            return Err(StoreError::refused(
                "relay",
                "only a relay domain has a relay target",
            ));
        }
        check_relay(relay)?;
        if d.relay.as_ref() != Some(relay) && !may_manage_domains(actor) {
            return Err(StoreError::Forbidden(
                "only superadmins and resellers change a relay domain's target".into(),
            ));
        }
    }
    let key_length = patch.dkim_key_length.unwrap_or(d.dkim_key_length);
    check_key_length(key_length)?;
    let selector = patch
        .dkim_key_selector
        .as_ref()
        .map_or(d.dkim_key_selector.clone(), |s| s.to_string());
    // A new selector or key length means a new key: the DKIM job generates it.
    let rekey = selector != d.dkim_key_selector || key_length != d.dkim_key_length;
    tx.exec(
        "UPDATE admin_domain SET quota = ?, default_mailbox_quota = ?, enabled = ?, enable_dns_checks = ?, enable_dkim = ?, dkim_key_selector = ?, dkim_key_length = ?, last_modification = ? WHERE id = ?",
        args![
            quota,
            default_mailbox_quota,
            patch.enabled.unwrap_or(d.enabled),
            patch.enable_dns_checks.unwrap_or(d.enable_dns_checks),
            patch.enable_dkim.unwrap_or(d.enable_dkim),
            selector,
            key_length,
            Utc::now(),
            d.id
        ],
    )
    .await?;
    if rekey {
        tx.exec(
            "UPDATE admin_domain SET dkim_public_key = '', dkim_private_key_path = '' WHERE id = ?",
            args![d.id],
        )
        .await?;
    }
    if default_mailbox_quota != d.default_mailbox_quota {
        follow_default_quota(tx, &d, quota, default_mailbox_quota).await?;
    }
    if let Some(limit) = patch.message_limit {
        set_message_limit(tx, d.id, limit).await?;
    }
    if let Some(relay) = &patch.relay {
        let json = tx
            .modoboa_schema()
            .await?
            .json_param("transport_transport", "_settings");
        tx.exec(
            &format!("UPDATE transport_transport SET service = ?, next_hop = ?, _settings = {json} WHERE pattern = ?"),
            args![relay.service.as_str(), next_hop(relay), settings_json(relay)?, name.as_str()],
        )
        .await?;
        set_verification(tx, name.as_str(), relay.verify_recipients).await?;
    }
    audit::info(tx, &format!("Domain {name} modified")).await?;
    get(tx, actor, name).await
}

/// The mailboxes that use the domain's default quota take the new one (as in Modoboa), if
/// they still fit in the domain's quota.
async fn follow_default_quota(
    tx: &mut Tx,
    d: &Domain,
    quota: i32,
    default_mailbox_quota: i32,
) -> Result<(), StoreError> {
    let sum = tx.sum_int("quota");
    let r = tx
        .row(
            &format!("SELECT COUNT(*) AS n, {sum} AS q FROM admin_mailbox WHERE domain_id = ? AND use_domain_quota = ?"),
            args![d.id, true],
        )
        .await?;
    let (following, their_quota) = match r {
        Some(r) => (r.i64("n")?, r.i64("q")?),
        None => (0, 0),
    };
    if following == 0 {
        return Ok(());
    }
    if quota > 0 {
        if default_mailbox_quota == 0 {
            return Err(StoreError::refused(
                "default_mailbox_quota",
                format!("{following} mailbox(es) use the default quota: with a domain quota it cannot be 0 (unlimited)"),
            ));
        }
        let after = d.allocated_quota - their_quota + following * i64::from(default_mailbox_quota);
        if after > i64::from(quota) {
            return Err(StoreError::refused(
                "default_mailbox_quota",
                format!("{following} mailbox(es) use the default quota: {default_mailbox_quota} MB each would give {after} MB of the domain's {quota} MB"),
            ));
        }
    }
    tx.exec(
        "UPDATE admin_mailbox SET quota = ?, last_modification = ? WHERE domain_id = ? AND use_domain_quota = ?",
        args![default_mailbox_quota, Utc::now(), d.id, true],
    )
    .await?;
    Ok(())
}

/// Modoboa 2.x's daily sending limit of a domain; a 1.10 schema has no such column.
async fn set_message_limit(tx: &mut Tx, id: i32, limit: Option<i32>) -> Result<(), StoreError> {
    if !tx.modoboa_schema().await?.message_limits().1 {
        if limit.is_none() {
            return Ok(());
        }
        return Err(StoreError::refused(
            "message_limit",
            "needs a Modoboa 2.x database (this one has no sending limits)",
        ));
    }
    if limit.is_some_and(|l| l < 0) {
        return Err(StoreError::refused(
            "message_limit",
            "must be 0 or more messages a day, or null (no limit)",
        ));
    }
    tx.exec(
        "UPDATE admin_domain SET message_limit = ? WHERE id = ?",
        args![limit, id],
    )
    .await?;
    Ok(())
}

/// Deletes a domain and everything in it: mailboxes and their accounts (queued for removal
/// on disk when filesystem handling is on), aliases, domain aliases, DNS results, limits,
/// access rows, the relay transport.
pub async fn delete(
    tx: &mut Tx,
    actor: Actor,
    name: &DomainName,
    opts: &accounts::Options,
) -> Result<(), StoreError> {
    let d = get(tx, actor, name).await?;
    if !may_manage_domains(actor) {
        return Err(StoreError::Forbidden(
            "domain admins cannot delete domains".into(),
        ));
    }
    let users = tx
        .rows(
            "SELECT u.username FROM core_user u INNER JOIN admin_mailbox mb ON mb.user_id = u.id WHERE mb.domain_id = ?",
            args![d.id],
        )
        .await?
        .iter()
        .map(|r| r.text("username").map(|u| Username::existing(&u)))
        .collect::<Result<Vec<_>, _>>()?;
    // Deleting the domain deletes these accounts: never one the actor could not delete itself
    // (a reseller's domain holding a superadmin's mailbox).
    for u in &users {
        if let Err(StoreError::Forbidden(why)) = accounts::manageable(tx, actor, u).await {
            return Err(StoreError::Forbidden(format!(
                "{name} holds the mailbox of {u}, which you cannot delete ({why}): move or delete that account first"
            )));
        }
    }
    for u in &users {
        accounts::delete_in(tx, u, opts).await?;
    }
    let alias_ids = tx
        .rows(
            "SELECT id FROM admin_alias WHERE domain_id = ?",
            args![d.id],
        )
        .await?
        .iter()
        .map(|r| r.i32("id"))
        .collect::<Result<Vec<_>, _>>()?;
    aliases::delete_ids(tx, alias_ids).await?;
    for da in list_aliases(tx, Actor::System, Some(name)).await? {
        delete_alias_in(tx, &da).await?;
    }
    tx.exec(
        "DELETE FROM admin_dnsblresult WHERE domain_id = ?",
        args![d.id],
    )
    .await?;
    tx.exec(
        "DELETE FROM admin_mxrecord WHERE domain_id = ?",
        args![d.id],
    )
    .await?;
    tx.exec(
        "DELETE FROM limits_domainobjectlimit WHERE domain_id = ?",
        args![d.id],
    )
    .await?;
    access::forget_object(tx, Kind::Domain, d.id).await?;
    let what = format!("domain {name}");
    super::modoboa_schema::clear_references(tx, "admin_domain", d.id, &what).await?;
    tx.exec("DELETE FROM admin_domain WHERE id = ?", args![d.id])
        .await?;
    tx.exec(
        "DELETE FROM transport_transport WHERE pattern = ?",
        args![name.as_str()],
    )
    .await?;
    tx.exec(
        "DELETE FROM relaydomains_recipientaccess WHERE pattern = ?",
        args![name.as_str()],
    )
    .await?;
    audit::info(tx, &format!("Domain {name} deleted")).await
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DomainAlias {
    pub id: i32,
    pub name: DomainName,
    pub target: DomainName,
    pub target_id: i32,
    pub enabled: bool,
    pub creation: DateTime<Utc>,
}

async fn domain_alias_from_row(r: &super::Row) -> Result<DomainAlias, StoreError> {
    Ok(DomainAlias {
        id: r.i32("id")?,
        name: stored_name(r, "name")?,
        target: stored_name(r, "target")?,
        target_id: r.i32("target_id")?,
        enabled: r.bool("enabled")?,
        creation: r.ts("creation")?,
    })
}

const DOMAIN_ALIAS_SELECT: &str = "SELECT da.id, da.name, d.name AS target, da.enabled, da.creation, d.id AS target_id FROM admin_domainalias da INNER JOIN admin_domain d ON da.target_id = d.id";

pub async fn get_alias(
    tx: &mut Tx,
    actor: Actor,
    name: &DomainName,
) -> Result<DomainAlias, StoreError> {
    let r = tx
        .row_or_not_found(
            &format!("{DOMAIN_ALIAS_SELECT} WHERE da.name = ?"),
            args![name.as_str()],
            "domain alias",
            name,
        )
        .await?;
    if !access::can_admin_domain(tx, actor, r.i32("target_id")?).await? {
        return Err(StoreError::not_found("domain alias", name));
    }
    domain_alias_from_row(&r).await
}

pub async fn list_aliases(
    tx: &mut Tx,
    actor: Actor,
    target: Option<&DomainName>,
) -> Result<Vec<DomainAlias>, StoreError> {
    let rows = tx
        .rows(&format!("{DOMAIN_ALIAS_SELECT} ORDER BY da.name"), &[])
        .await?;
    let visible = access::domain_ids(tx, actor).await?;
    let mut out = Vec::new();
    for r in &rows {
        let tid = r.i32("target_id")?;
        if visible.as_ref().is_some_and(|ids| !ids.contains(&tid)) {
            continue;
        }
        let a = domain_alias_from_row(r).await?;
        if target.is_some_and(|t| *t != a.target) {
            continue;
        }
        out.push(a);
    }
    Ok(out)
}

/// `alias.tld → target.tld`, with its internal alias `@alias.tld → @target.tld`.
pub async fn create_alias(
    tx: &mut Tx,
    actor: Actor,
    name: &DomainName,
    target: &DomainName,
    enabled: bool,
) -> Result<DomainAlias, StoreError> {
    let t = get(tx, actor, target).await?;
    // An alias takes every address of its name: a domain admin naming one gmail.com would
    // receive what every tenant sends there.
    if !may_manage_domains(actor) {
        return Err(StoreError::Forbidden(
            "only superadmins and resellers create domain aliases".into(),
        ));
    }
    check_new_name(tx, actor, name).await?;
    if t.kind != DomainKind::Domain {
        return Err(StoreError::refused(
            "target",
            "must be a hosted domain, not a relay domain",
        ));
    }
    if name == target {
        return Err(StoreError::refused(
            "name",
            "a domain cannot be an alias of itself",
        ));
    }
    if name_taken(tx, name.as_str()).await? {
        return Err(StoreError::Exists {
            kind: "domain",
            name: name.to_string(),
        });
    }
    let used = tx
        .count(
            "SELECT COUNT(*) FROM admin_domainalias WHERE target_id = ?",
            args![t.id],
        )
        .await?;
    access::check_domain_limit(tx, t.id, "domain_aliases", used, 1).await?;
    if let Some(uid) = actor.user_id() {
        let ct = access::content_type(tx, Kind::Domain).await?;
        let mine = tx
            .count(
                "SELECT COUNT(*) FROM admin_domainalias da INNER JOIN core_objectaccess oa ON oa.object_id = da.target_id AND oa.content_type_id = ? WHERE oa.user_id = ?",
                args![ct, uid],
            )
            .await?;
        access::check_user_limit(tx, actor, "domain_aliases", mine, 1).await?;
    }
    let now = Utc::now();
    let id = tx
        .insert(
            "INSERT INTO admin_domainalias (name, target_id, enabled, creation, last_modification) VALUES (?, ?, ?, ?, ?)",
            args![name.as_str(), t.id, enabled, now, now],
        )
        .await?;
    // Modoboa leaves the domain of this internal alias empty.
    aliases::create_internal(tx, &format!("@{name}"), None, &format!("@{target}"), None).await?;
    access::grant_created(tx, actor, Kind::DomainAlias, id as i32).await?;
    audit::info(tx, &format!("Domain alias {name} -> {target} created")).await?;
    get_alias(tx, actor, name).await
}

pub async fn set_alias_enabled(
    tx: &mut Tx,
    actor: Actor,
    name: &DomainName,
    enabled: bool,
) -> Result<DomainAlias, StoreError> {
    let a = get_alias(tx, actor, name).await?;
    tx.exec(
        "UPDATE admin_domainalias SET enabled = ?, last_modification = ? WHERE id = ?",
        args![enabled, Utc::now(), a.id],
    )
    .await?;
    audit::info(tx, &format!("Domain alias {name} modified")).await?;
    get_alias(tx, actor, name).await
}

pub async fn delete_alias(tx: &mut Tx, actor: Actor, name: &DomainName) -> Result<(), StoreError> {
    let a = get_alias(tx, actor, name).await?;
    delete_alias_in(tx, &a).await
}

/// Deletes a domain alias and its internal alias (no access check: callers checked).
async fn delete_alias_in(tx: &mut Tx, a: &DomainAlias) -> Result<(), StoreError> {
    let name = &a.name;
    aliases::delete_internal(tx, &format!("@{name}")).await?;
    access::forget_object(tx, Kind::DomainAlias, a.id).await?;
    let what = format!("domain alias {name}");
    super::modoboa_schema::clear_references(tx, "admin_domainalias", a.id, &what).await?;
    tx.exec("DELETE FROM admin_domainalias WHERE id = ?", args![a.id])
        .await?;
    audit::info(tx, &format!("Domain alias {name} deleted")).await
}

/// A domain with DKIM signing on and no key yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimPending {
    pub id: i32,
    /// As stored: the job parses it and reports a bad one without stopping.
    pub name: String,
    pub key_length: Option<i32>,
}

pub async fn without_dkim_key(tx: &mut Tx) -> Result<Vec<DkimPending>, StoreError> {
    let rows = tx
        .rows(
            "SELECT id, name, dkim_key_length FROM admin_domain \
             WHERE enable_dkim = ? AND (dkim_private_key_path = '' OR dkim_public_key = '') \
             ORDER BY name",
            args![true],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(DkimPending {
                id: r.i32("id")?,
                name: r.text("name")?,
                key_length: r.opt_i32("dkim_key_length")?,
            })
        })
        .collect()
}

/// Records the DKIM key generated for a domain (by the installer or the `dkim_keys` job): the
/// private key's path for OpenDKIM and the public key (base64 SubjectPublicKeyInfo) for DNS.
pub async fn set_dkim_key(
    tx: &mut Tx,
    domain_id: i32,
    private_key_path: &str,
    public_key: &str,
) -> Result<(), StoreError> {
    let n = tx
        .exec(
            "UPDATE admin_domain SET dkim_private_key_path = ?, dkim_public_key = ? WHERE id = ?",
            args![private_key_path, public_key, domain_id],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::not_found("domain", format!("#{domain_id}")));
    }
    audit::info(
        tx,
        &format!("DKIM key of domain #{domain_id} set to {private_key_path}"),
    )
    .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn relay_ports_stored_as_text_are_read() {
        for json in [
            r#"{"relay_target_host": "h", "relay_target_port": 2525, "relay_verify_recipients": true}"#,
            r#"{"relay_target_host": "h", "relay_target_port": "2525", "relay_verify_recipients": true}"#,
        ] {
            let t: super::TransportSettings = serde_json::from_str(json).unwrap();
            assert_eq!(t.relay_target_port, 2525);
        }
        let bad = r#"{"relay_target_host": "h", "relay_target_port": "x25", "relay_verify_recipients": true}"#;
        assert!(serde_json::from_str::<super::TransportSettings>(bad).is_err());
    }
}
