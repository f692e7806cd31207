//! `domains/`, `domainaliases/` and `relaydomains/`.

use axum::extract::{Path, State};
use axum::routing::get;
use serde_json::{json, Map, Value};

use super::{
    begin, created, no_content, ok, pk, store_options, ApiError, ApiResult, ApiUser, Fields,
    JsonBody, Paging, Query, Route,
};
use crate::names::{DkimSelector, DomainKind, DomainName};
use crate::store::domains::{
    self, name_to_find, Domain, DomainAlias, DomainPatch, DomainQuery, DomainSpec, Relay,
};
use crate::store::Page;
use crate::web::Web;

pub fn routes() -> Vec<Route> {
    vec![
        Route::new("/domains/", &["GET", "POST"], get(list).post(create)),
        Route::new(
            "/domains/{pk}/",
            &["GET", "PUT", "PATCH", "DELETE"],
            get(retrieve).put(put).patch(patch).delete(delete),
        ),
        Route::new(
            "/domainaliases/",
            &["GET", "POST"],
            get(alias_list).post(alias_create),
        ),
        Route::new(
            "/domainaliases/{pk}/",
            &["GET", "PUT", "PATCH", "DELETE"],
            get(alias_retrieve)
                .put(alias_put)
                .patch(alias_patch)
                .delete(alias_delete),
        ),
        Route::new(
            "/relaydomains/",
            &["GET", "POST"],
            get(relay_list).post(relay_create),
        ),
        Route::new(
            "/relaydomains/{pk}/",
            &["GET", "PUT", "PATCH", "DELETE"],
            get(relay_retrieve)
                .put(relay_put)
                .patch(relay_patch)
                .delete(relay_delete),
        ),
    ]
}

/// A domain as Modoboa's v1 DomainSerializer answers it (quotas as strings of MB), plus
/// `enable_dns_checks` and `allocated_quota`.
pub fn domain_json(d: &Domain) -> Value {
    json!({
        "pk": d.id,
        "name": d.name,
        "quota": d.quota.to_string(),
        "default_mailbox_quota": d.default_mailbox_quota.to_string(),
        "enabled": d.enabled,
        "type": d.kind,
        "enable_dkim": d.enable_dkim,
        "dkim_key_selector": d.dkim_key_selector,
        "dkim_key_length": d.dkim_key_length,
        "dkim_public_key": d.dkim_public_key,
        "dkim_private_key_path": d.dkim_private_key_path,
        "allocated_quota_in_percent": super::percent(d.allocated_quota, i64::from(d.quota)),
        "mailbox_count": d.mailboxes,
        "mbalias_count": d.aliases,
        "domainalias_count": d.domain_aliases,
        "dns_global_status": d.dns_status,
        "message_limit": d.message_limit,
        "creation": d.creation,
        "last_modification": d.last_modification,
        "enable_dns_checks": d.enable_dns_checks,
        "allocated_quota": d.allocated_quota,
    })
}

/// A relay domain as Modoboa's RelayDomainSerializer answers it: the transport's pk, service
/// and `_settings`; plus `next_hop` and the quotas.
fn relay_json(d: &Domain) -> Value {
    let r = d.relay.as_ref();
    json!({
        "pk": d.id,
        "name": d.name,
        "enabled": d.enabled,
        "transport": {
            "pk": d.transport_id,
            "service": r.map_or("relay", |r| r.service.as_str()),
            "_settings": {
                "relay_target_host": r.map(|r| r.target_host.clone()),
                "relay_target_port": r.map(|r| r.target_port),
                "relay_verify_recipients": r.is_some_and(|r| r.verify_recipients),
            },
            "next_hop": r.map(|r| format!("[{}]:{}", r.target_host, r.target_port)),
        },
        "enable_dkim": d.enable_dkim,
        "dkim_key_selector": d.dkim_key_selector,
        "dkim_public_key": d.dkim_public_key,
        "quota": d.quota.to_string(),
        "default_mailbox_quota": d.default_mailbox_quota.to_string(),
    })
}

/// A domain alias; `target` is the target domain's pk, as in Modoboa.
fn alias_json(a: &DomainAlias) -> Value {
    json!({ "pk": a.id, "name": a.name, "target": a.target_id, "enabled": a.enabled })
}

async fn page_of(web: &Web, user: &ApiUser, q: &Query, kind: DomainKind) -> ApiResult {
    let paging = Paging::from(q)?;
    let (limit, offset) = paging.window();
    let mut tx = begin(web).await?;
    // `/domains/` lists every kind, as Modoboa's does (`type` tells them apart).
    let query = DomainQuery {
        kind: (kind == DomainKind::RelayDomain).then_some(kind),
        search: q.get("search"),
    };
    let Page { items: list, total } =
        domains::list_page(&mut tx, user.actor(), &query, limit, offset).await?;
    tx.commit().await?;
    let to_json = if kind == DomainKind::RelayDomain {
        relay_json
    } else {
        domain_json
    };
    let path = if kind == DomainKind::RelayDomain {
        "/relaydomains/"
    } else {
        "/domains/"
    };
    paging.respond(path, q, total, list.iter().map(to_json).collect())
}

async fn list(State(web): State<Web>, user: ApiUser, q: Query) -> ApiResult {
    page_of(&web, &user, &q, DomainKind::Domain).await
}

/// The domain `pk` the user administers, else 404: under `relaydomains/` a relay domain,
/// under `domains/` any (as in Modoboa).
async fn by_pk(
    tx: &mut crate::store::Tx,
    user: &ApiUser,
    id: &str,
    kind: DomainKind,
) -> Result<Domain, ApiError> {
    let name = domains::name_by_id(tx, pk(id)?)
        .await?
        .ok_or(ApiError::NotFound)?;
    let d = domains::get(tx, user.actor(), &name).await?;
    if kind == DomainKind::RelayDomain && d.kind != kind {
        return Err(ApiError::NotFound);
    }
    Ok(d)
}

async fn retrieve(State(web): State<Web>, user: ApiUser, Path(id): Path<String>) -> ApiResult {
    let mut tx = begin(&web).await?;
    let d = by_pk(&mut tx, &user, &id, DomainKind::Domain).await?;
    tx.commit().await?;
    ok(domain_json(&d))
}

/// The settings common to hosted and relay domains, for a creation.
fn read_spec(f: &mut Fields) -> DomainSpec {
    let mut spec = DomainSpec::default();
    if let Some(q) = f.size_mb("quota", false) {
        spec.quota = q;
    }
    if let Some(q) = f.size_mb("default_mailbox_quota", false) {
        spec.default_mailbox_quota = q;
    }
    if let Some(l) = f.nullable_int("message_limit") {
        spec.message_limit = l;
    }
    if let Some(e) = f.boolean("enabled", false) {
        spec.enabled = e;
    }
    if let Some(e) = f.boolean("enable_dns_checks", false) {
        spec.enable_dns_checks = e;
    }
    if let Some(e) = f.boolean("enable_dkim", false) {
        spec.enable_dkim = e;
    }
    if let Some(s) = f.string("dkim_key_selector", false) {
        match DkimSelector::parse("dkim_key_selector", &s) {
            Ok(s) => spec.dkim_key_selector = s,
            Err(e) => f.error("dkim_key_selector", e.to_string()),
        }
    }
    if let Some(l) = f.nullable_int("dkim_key_length") {
        spec.dkim_key_length = l;
    }
    spec
}

fn read_name(f: &mut Fields) -> Option<DomainName> {
    let name = f.string("name", true)?;
    match DomainName::parse("name", &name) {
        Ok(n) => Some(n),
        Err(e) => {
            f.error("name", e.to_string());
            None
        }
    }
}

async fn create(State(web): State<Web>, user: ApiUser, JsonBody(body): JsonBody) -> ApiResult {
    user.require_admin()?;
    let mut f = Fields::new(body, false);
    let name = read_name(&mut f);
    if let Some(t) = f.string("type", false) {
        if t != "domain" {
            f.error(
                "type",
                "must be \"domain\" here (relay domains are created under relaydomains/)",
            );
        }
    }
    let spec = read_spec(&mut f);
    f.finish()?;
    let Some(name) = name else {
        return Err(ApiError::field("name", "This field is required."));
    };
    let mut tx = begin(&web).await?;
    let d = domains::create(&mut tx, user.actor(), &name, &spec, None)
        .await
        .map_err(ApiError::on("name"))?;
    tx.commit().await?;
    created(domain_json(&d))
}

/// The changes of a PUT or PATCH; the name and type cannot change.
fn read_patch(f: &mut Fields, d: &Domain) -> DomainPatch {
    if let Some(n) = f.string("name", true) {
        if n.trim().to_lowercase() != d.name.as_str() {
            f.error(
                "name",
                "cannot be changed (renaming a domain is not supported: create the new one)",
            );
        }
    }
    if let Some(t) = f.string("type", false) {
        if t != d.kind.as_str() {
            f.error("type", "cannot be changed");
        }
    }
    let mut p = DomainPatch {
        quota: f.size_mb("quota", false),
        default_mailbox_quota: f.size_mb("default_mailbox_quota", false),
        message_limit: f.nullable_int("message_limit"),
        enabled: f.boolean("enabled", false),
        enable_dns_checks: f.boolean("enable_dns_checks", false),
        enable_dkim: f.boolean("enable_dkim", false),
        dkim_key_length: f.nullable_int("dkim_key_length"),
        ..DomainPatch::default()
    };
    if let Some(s) = f.string("dkim_key_selector", false) {
        match DkimSelector::parse("dkim_key_selector", &s) {
            Ok(s) => p.dkim_key_selector = Some(s),
            Err(e) => f.error("dkim_key_selector", e.to_string()),
        }
    }
    p
}

/// A domain admin manages what is in its domain, not the domain's size (as in Modoboa, where
/// only superadmins and resellers edit domain quotas).
fn quota_guard(user: &ApiUser, d: &Domain, p: &DomainPatch) -> Result<(), ApiError> {
    let changes = p.quota.is_some_and(|q| q != d.quota)
        || p.default_mailbox_quota
            .is_some_and(|q| q != d.default_mailbox_quota);
    if user.role == crate::store::access::Role::DomainAdmins && changes {
        return Err(ApiError::Forbidden(
            "permission denied: domain admins cannot change domain quotas".into(),
        ));
    }
    Ok(())
}

async fn update(
    web: Web,
    user: ApiUser,
    id: String,
    body: Map<String, Value>,
    partial: bool,
) -> ApiResult {
    user.require_admin()?;
    let mut tx = begin(&web).await?;
    let d = by_pk(&mut tx, &user, &id, DomainKind::Domain).await?;
    let mut f = Fields::new(body, partial);
    let p = read_patch(&mut f, &d);
    f.finish()?;
    quota_guard(&user, &d, &p)?;
    let d = domains::update(&mut tx, user.actor(), &d.name, &p)
        .await
        .map_err(ApiError::on("name"))?;
    tx.commit().await?;
    ok(domain_json(&d))
}

put_and_patch!(put, patch, update);

async fn remove(web: Web, user: ApiUser, id: String, kind: DomainKind) -> ApiResult {
    let mut tx = begin(&web).await?;
    let d = by_pk(&mut tx, &user, &id, kind).await?;
    domains::delete(&mut tx, user.actor(), &d.name, &store_options(&web)).await?;
    tx.commit().await?;
    no_content()
}

async fn delete(State(web): State<Web>, user: ApiUser, Path(id): Path<String>) -> ApiResult {
    remove(web, user, id, DomainKind::Domain).await
}

// Domain aliases.

async fn alias_list(State(web): State<Web>, user: ApiUser, q: Query) -> ApiResult {
    let paging = Paging::from(&q)?;
    let mut tx = begin(&web).await?;
    // Text that is no domain name is the target of no alias.
    let target = q
        .get("domain")
        .map(|d| name_to_find("domain", d))
        .transpose();
    let mut list = match target {
        Ok(target) => domains::list_aliases(&mut tx, user.actor(), target.as_ref()).await?,
        Err(_) => Vec::new(),
    };
    tx.commit().await?;
    if let Some(s) = q.get("search") {
        let s = s.to_lowercase();
        list.retain(|a| a.name.as_str().contains(&s) || a.target.as_str().contains(&s));
    }
    paging.respond_all("/domainaliases/", &q, list.iter().map(alias_json).collect())
}

async fn alias_by_pk(
    tx: &mut crate::store::Tx,
    user: &ApiUser,
    id: &str,
) -> Result<DomainAlias, ApiError> {
    let name = domains::alias_name_by_id(tx, pk(id)?)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(domains::get_alias(tx, user.actor(), &name).await?)
}

async fn alias_retrieve(
    State(web): State<Web>,
    user: ApiUser,
    Path(id): Path<String>,
) -> ApiResult {
    let mut tx = begin(&web).await?;
    let a = alias_by_pk(&mut tx, &user, &id).await?;
    tx.commit().await?;
    ok(alias_json(&a))
}

/// A domain alias' `target`: the domain's pk as Modoboa takes it, or (modobox) its name.
#[derive(Debug)]
enum Target {
    Pk(i32),
    Name(DomainName),
}

fn target_field(f: &mut Fields, required: bool) -> Option<Target> {
    if f.has("target") && matches!(f.peek("target"), Some(Value::Number(_))) {
        return f.int("target", required).map(Target::Pk);
    }
    domain_field(f, "target", required).map(Target::Name)
}

/// The domain a `target` names, if the user administers it; else an error on `target`.
async fn target_domain(
    tx: &mut crate::store::Tx,
    user: &ApiUser,
    target: Target,
) -> Result<DomainName, ApiError> {
    let name = match target {
        Target::Name(n) => n,
        Target::Pk(id) => domains::name_by_id(tx, id).await?.ok_or_else(|| {
            ApiError::field(
                "target",
                format!("Invalid pk \"{id}\" - object does not exist."),
            )
        })?,
    };
    domains::get(tx, user.actor(), &name)
        .await
        .map_err(ApiError::on("target"))?;
    Ok(name)
}

fn domain_field(f: &mut Fields, field: &str, required: bool) -> Option<DomainName> {
    let v = f.string(field, required)?;
    match DomainName::parse(field, &v) {
        Ok(n) => Some(n),
        Err(e) => {
            f.error(field, e.to_string());
            None
        }
    }
}

async fn alias_create(
    State(web): State<Web>,
    user: ApiUser,
    JsonBody(body): JsonBody,
) -> ApiResult {
    user.require_admin()?;
    let mut f = Fields::new(body, false);
    let name = domain_field(&mut f, "name", true);
    let target = target_field(&mut f, true);
    let enabled = f.boolean("enabled", false).unwrap_or(true);
    f.finish()?;
    let (Some(name), Some(target)) = (name, target) else {
        return Err(ApiError::field("name", "This field is required."));
    };
    let mut tx = begin(&web).await?;
    // The target must be one of the user's domains: anything else is a wrong `target`.
    let target = target_domain(&mut tx, &user, target).await?;
    let a = domains::create_alias(&mut tx, user.actor(), &name, &target, enabled)
        .await
        .map_err(ApiError::on("name"))?;
    tx.commit().await?;
    created(alias_json(&a))
}

async fn alias_update(
    web: Web,
    user: ApiUser,
    id: String,
    body: Map<String, Value>,
    partial: bool,
) -> ApiResult {
    user.require_admin()?;
    let mut tx = begin(&web).await?;
    let a = alias_by_pk(&mut tx, &user, &id).await?;
    let mut f = Fields::new(body, partial);
    if let Some(v) = f.string("name", true) {
        if v.trim().to_lowercase() != a.name.as_str() {
            f.error(
                "name",
                "cannot be changed (delete this domain alias and create another)",
            );
        }
    }
    let target = target_field(&mut f, true);
    let enabled = f.boolean("enabled", false);
    f.finish()?;
    if let Some(t) = target {
        let same = match &t {
            Target::Pk(id) => *id == a.target_id,
            Target::Name(n) => n == &a.target,
        };
        if !same {
            return Err(ApiError::field(
                "target",
                "cannot be changed (delete this domain alias and create another)",
            ));
        }
    }
    let a = match enabled {
        Some(e) => domains::set_alias_enabled(&mut tx, user.actor(), &a.name, e).await?,
        None => a,
    };
    tx.commit().await?;
    ok(alias_json(&a))
}

put_and_patch!(alias_put, alias_patch, alias_update);

async fn alias_delete(State(web): State<Web>, user: ApiUser, Path(id): Path<String>) -> ApiResult {
    user.require_admin()?;
    let mut tx = begin(&web).await?;
    let a = alias_by_pk(&mut tx, &user, &id).await?;
    domains::delete_alias(&mut tx, user.actor(), &a.name).await?;
    tx.commit().await?;
    no_content()
}

// Relay domains.

async fn relay_list(State(web): State<Web>, user: ApiUser, q: Query) -> ApiResult {
    page_of(&web, &user, &q, DomainKind::RelayDomain).await
}

async fn relay_retrieve(
    State(web): State<Web>,
    user: ApiUser,
    Path(id): Path<String>,
) -> ApiResult {
    let mut tx = begin(&web).await?;
    let d = by_pk(&mut tx, &user, &id, DomainKind::RelayDomain).await?;
    tx.commit().await?;
    ok(relay_json(&d))
}

/// `transport: {service, _settings}` → the relay target; `current` fills what a PATCH leaves
/// out. Modoboa's clients send `_settings` as a JSON-encoded string; an object (and the
/// `settings` key of modobox's earlier answers) is taken too. The target port is required
/// for a new relay domain, as in Modoboa.
fn read_transport(f: &mut Fields, required: bool, current: Option<&Relay>) -> Option<Relay> {
    let t = match f.object("transport", required)? {
        Some(t) => t,
        None => {
            f.error("transport", "This field may not be null.");
            return None;
        }
    };
    let partial = f.is_partial() || current.is_some() && !required;
    let mut tf = Fields::new(t, partial);
    let service = tf
        .string("service", false)
        .or_else(|| current.map(|c| c.service.clone()))
        .unwrap_or_else(|| "relay".into());
    let key = if tf.has("_settings") || !tf.has("settings") {
        "_settings"
    } else {
        "settings"
    };
    let settings = match tf.peek(key).cloned() {
        Some(Value::String(text)) => {
            tf.string(key, false);
            match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(m)) => Some(m),
                _ => {
                    tf.error(
                        "_settings",
                        "must be an object, or a string holding one in JSON",
                    );
                    None
                }
            }
        }
        Some(Value::Object(_)) => tf.object(key, false).flatten(),
        Some(_) => {
            tf.object(key, false);
            None
        }
        None => {
            if current.is_none() {
                tf.error("_settings", "This field is required.");
            }
            None
        }
    }
    .unwrap_or_default();
    let mut sf = Fields::new(settings, current.is_some());
    let host = sf
        .string("relay_target_host", true)
        .or_else(|| current.map(|c| c.target_host.clone()));
    let port = match sf.int("relay_target_port", true) {
        Some(p) => match u16::try_from(p) {
            Ok(p) if p > 0 => Some(p),
            _ => {
                sf.error("relay_target_port", "must be between 1 and 65535");
                None
            }
        },
        None => current.map(|c| c.target_port),
    };
    let verify = sf
        .boolean("relay_verify_recipients", false)
        .or_else(|| current.map(|c| c.verify_recipients))
        .unwrap_or(false);
    // Modoboa reports the settings' errors as "name: message" under `_settings`.
    for (name, messages) in sf.take_errors() {
        for m in messages {
            tf.error("_settings", format!("{name}: {m}"));
        }
    }
    f.absorb("transport", tf);
    Some(Relay {
        target_host: host?,
        target_port: port?,
        service,
        verify_recipients: verify,
    })
}

async fn relay_create(
    State(web): State<Web>,
    user: ApiUser,
    JsonBody(body): JsonBody,
) -> ApiResult {
    user.require_admin()?;
    let mut f = Fields::new(body, false);
    let name = read_name(&mut f);
    let spec = read_spec(&mut f);
    let relay = read_transport(&mut f, true, None);
    f.finish()?;
    let (Some(name), Some(relay)) = (name, relay) else {
        return Err(ApiError::field("transport", "This field is required."));
    };
    let mut tx = begin(&web).await?;
    let d = domains::create(&mut tx, user.actor(), &name, &spec, Some(&relay))
        .await
        .map_err(ApiError::on("name"))?;
    tx.commit().await?;
    created(relay_json(&d))
}

async fn relay_update(
    web: Web,
    user: ApiUser,
    id: String,
    body: Map<String, Value>,
    partial: bool,
) -> ApiResult {
    user.require_admin()?;
    let mut tx = begin(&web).await?;
    let d = by_pk(&mut tx, &user, &id, DomainKind::RelayDomain).await?;
    let mut f = Fields::new(body, partial);
    let mut p = read_patch(&mut f, &d);
    if f.has("transport") {
        p.relay = read_transport(&mut f, false, d.relay.as_ref());
    }
    f.finish()?;
    quota_guard(&user, &d, &p)?;
    let d = domains::update(&mut tx, user.actor(), &d.name, &p)
        .await
        .map_err(ApiError::on("name"))?;
    tx.commit().await?;
    ok(relay_json(&d))
}

put_and_patch!(relay_put, relay_patch, relay_update);

async fn relay_delete(State(web): State<Web>, user: ApiUser, Path(id): Path<String>) -> ApiResult {
    remove(web, user, id, DomainKind::RelayDomain).await
}
