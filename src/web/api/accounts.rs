//! `accounts/` (accounts with their mailbox), `accounts/{pk}/password/`, `accounts/exists/`
//! and `senderaddresses/`.

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::routing::{get, put};
use serde_json::{json, Map, Value};

use super::{
    begin, created, no_content, ok, pk, store_options, ApiError, ApiResult, ApiUser, Fields,
    JsonBody, Paging, Query, Route,
};
use crate::names::{DomainName, EmailAddress, Username};
use crate::store::access::Role;
use crate::store::accounts::{
    self, Account, AccountPatch, AccountSpec, Language, ListFilter, MailboxSettings, Password,
    PhoneNumber, Profile, SenderAddress,
};
use crate::store::{Page, Tx};
use crate::web::Web;

pub fn routes() -> Vec<Route> {
    vec![
        Route::new("/accounts/", &["GET", "POST"], get(list).post(create)),
        Route::new("/accounts/exists/", &["GET"], get(exists)),
        Route::new(
            "/accounts/{pk}/",
            &["GET", "PUT", "PATCH", "DELETE"],
            get(retrieve).put(put_account).patch(patch).delete(delete),
        ),
        Route::new("/accounts/{pk}/password/", &["PUT"], put(password)),
        Route::new(
            "/senderaddresses/",
            &["GET", "POST"],
            get(sender_list).post(sender_create),
        ),
        Route::new(
            "/senderaddresses/{pk}/",
            &["GET", "PUT", "PATCH", "DELETE"],
            get(sender_retrieve)
                .put(sender_put)
                .patch(sender_patch)
                .delete(sender_delete),
        ),
    ]
}

/// An account as Modoboa's v1 AccountSerializer answers it (`master_user` only to
/// superadmins, the mailbox quota as a string of MB, its use in percent), plus `email` and
/// `mailbox.quota_usage_bytes`.
pub fn account_json(a: &Account, viewer: &ApiUser, sent: &SentToday) -> Value {
    let mut v = json!({
        "pk": a.id,
        "username": a.username,
        "first_name": a.first_name,
        "last_name": a.last_name,
        "email": a.email,
        "is_active": a.is_active,
        "mailbox": a.mailbox.as_ref().map(|m| json!({
            "pk": m.id,
            "full_address": m.full_address,
            "use_domain_quota": m.use_domain_quota,
            "quota": m.quota.to_string(),
            "message_limit": m.message_limit,
            "sent_messages_in_percent": m.message_limit.map(|limit| {
                let n = sent.get(&m.full_address).copied().unwrap_or(0);
                if limit > 0 { super::percent(n, i64::from(limit)) } else { 100 }
            }),
            "quota_usage": super::percent(m.quota_used_bytes, i64::from(m.quota) * 1024 * 1024),
            "is_send_only": m.is_send_only,
            "quota_usage_bytes": m.quota_used_bytes,
        })),
        "role": a.role.as_str(),
        "language": a.language,
        "phone_number": a.phone_number,
        "secondary_email": a.secondary_email,
        "domains": a.domains,
        "tfa_enabled": a.totp_enabled || a.webauthn_enabled,
        "totp_enabled": a.totp_enabled,
        "webauthn_enabled": a.webauthn_enabled,
        "date_joined": a.date_joined,
        "last_login": a.last_login,
    });
    if viewer.is_super() {
        v["master_user"] = Value::Bool(a.master_user);
    }
    v
}

/// Messages each mailbox with a daily limit sent today (the policy service's counters), by
/// address: Modoboa's `sent_messages_in_percent`.
pub type SentToday = std::collections::HashMap<String, i64>;

pub async fn sent_today(tx: &mut Tx, accounts: &[Account]) -> Result<SentToday, ApiError> {
    let keys: Vec<String> = accounts
        .iter()
        .filter_map(|a| a.mailbox.as_ref())
        .filter(|m| m.message_limit.is_some())
        .map(|m| m.full_address.clone())
        .collect();
    let day = crate::store::sending::day_of(chrono::Utc::now());
    Ok(crate::store::sending::sent_of(tx, &keys, &day).await?)
}

/// One account's answer, its sending counter read.
async fn one_json(tx: &mut Tx, a: &Account, viewer: &ApiUser) -> Result<Value, ApiError> {
    let sent = sent_today(tx, std::slice::from_ref(a)).await?;
    Ok(account_json(a, viewer, &sent))
}

async fn list(State(web): State<Web>, user: ApiUser, q: Query) -> ApiResult {
    let paging = Paging::from(&q)?;
    let role = match q.get("role") {
        Some(r) => Some(r.parse::<Role>().map_err(|_| {
            ApiError::field(
                "role",
                "must be one of SuperAdmins, Resellers, DomainAdmins, SimpleUsers",
            )
        })?),
        None => None,
    };
    // Modoboa's search: each term starts the first name, the last name or the address.
    let filter = ListFilter {
        domain: q.get("domain"),
        name_terms: q.get("search"),
        role,
        ..ListFilter::default()
    };
    let (limit, offset) = paging.window();
    let mut tx = begin(&web).await?;
    let Page { items: list, total } =
        accounts::list_page(&mut tx, user.actor(), &filter, limit, offset).await?;
    let sent = sent_today(&mut tx, &list).await?;
    tx.commit().await?;
    paging.respond(
        "/accounts/",
        &q,
        total,
        list.iter().map(|a| account_json(a, &user, &sent)).collect(),
    )
}

async fn by_pk(tx: &mut Tx, user: &ApiUser, id: &str) -> Result<Account, ApiError> {
    let name = accounts::username_by_id(tx, pk(id)?)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(accounts::get(tx, user.actor(), &Username::existing(&name)).await?)
}

async fn retrieve(State(web): State<Web>, user: ApiUser, Path(id): Path<String>) -> ApiResult {
    let mut tx = begin(&web).await?;
    let a = by_pk(&mut tx, &user, &id).await?;
    let v = one_json(&mut tx, &a, &user).await?;
    tx.commit().await?;
    ok(v)
}

fn read_role(f: &mut Fields, required: bool) -> Option<Role> {
    let r = f.string("role", required)?;
    match r.parse::<Role>() {
        Ok(r) => Some(r),
        Err(e) => {
            f.error(
                "role",
                e.to_string().trim_start_matches("role: ").to_string(),
            );
            None
        }
    }
}

fn read_domains(f: &mut Fields) -> Option<Vec<DomainName>> {
    let list = f.string_list("domains", false)?;
    let mut out = Vec::new();
    for d in list {
        match DomainName::parse("domains", &d) {
            Ok(d) if !out.contains(&d) => out.push(d),
            Ok(_) => {}
            Err(e) => f.error("domains", e.to_string()),
        }
    }
    Some(out)
}

/// A `mailbox` object of a body.
#[derive(Debug, Default)]
struct MailboxFields {
    /// The quota to ask for; None = the domain's default (`use_domain_quota`).
    quota: Option<i32>,
    /// Whether `quota` or `use_domain_quota` was given at all.
    quota_given: bool,
    full_address: Option<EmailAddress>,
    settings: MailboxSettings,
}

/// `mailbox: {full_address, quota, use_domain_quota, message_limit, is_send_only}`; Some(None)
/// for `null`, None when absent.
fn read_mailbox(f: &mut Fields) -> Option<Option<MailboxFields>> {
    let m = f.object("mailbox", false)?;
    let Some(m) = m else {
        return Some(None);
    };
    let mut mf = Fields::new(m, true);
    let quota = mf.size_mb("quota", false);
    let use_domain = mf.boolean("use_domain_quota", false);
    let full_address = mf.string("full_address", false).and_then(|a| {
        match EmailAddress::parse("full_address", a.trim()) {
            Ok(a) => Some(a),
            Err(e) => {
                mf.error("full_address", e.to_string());
                None
            }
        }
    });
    let settings = MailboxSettings {
        is_send_only: mf.boolean("is_send_only", false),
        message_limit: mf.nullable_int("message_limit"),
    };
    let out = MailboxFields {
        quota: match (use_domain, quota) {
            (Some(true), _) | (None, None) => None,
            (_, Some(q)) => Some(q),
            (Some(false), None) => {
                mf.error("quota", "This field is required");
                None
            }
        },
        quota_given: use_domain.is_some() || quota.is_some(),
        full_address,
        settings,
    };
    f.absorb("mailbox", mf);
    Some(Some(out))
}

/// `language`, `phone_number`, `secondary_email`, `master_user` (null or "" clears the two
/// optional ones).
fn read_profile(f: &mut Fields) -> Profile {
    let mut p = Profile::default();
    if let Some(l) = f.string("language", false) {
        match Language::parse("language", &l) {
            Ok(l) => p.language = Some(l),
            Err(e) => f.error("language", refusal_text(&e)),
        }
    }
    if let Some(n) = f.nullable_string("phone_number") {
        match n.filter(|n| !n.trim().is_empty()) {
            None => p.phone_number = Some(None),
            Some(n) => match PhoneNumber::parse("phone_number", &n) {
                Ok(n) => p.phone_number = Some(Some(n)),
                Err(e) => f.error("phone_number", refusal_text(&e)),
            },
        }
    }
    if let Some(e) = f.nullable_string("secondary_email") {
        match e.filter(|e| !e.trim().is_empty()) {
            None => p.secondary_email = Some(None),
            Some(e) => match EmailAddress::parse("secondary_email", e.trim()) {
                Ok(e) => p.secondary_email = Some(Some(e)),
                Err(err) => f.error("secondary_email", err.to_string()),
            },
        }
    }
    p.master_user = f.boolean("master_user", false);
    p
}

/// A store refusal's rule without its field name (the field is the key already).
fn refusal_text(e: &crate::store::StoreError) -> String {
    match e {
        crate::store::StoreError::Refused { rule, .. } => rule.clone(),
        other => other.to_string(),
    }
}

async fn create(State(web): State<Web>, user: ApiUser, JsonBody(body): JsonBody) -> ApiResult {
    user.require_admin()?;
    let mut f = Fields::new(body, false);
    let username = f.string("username", true);
    let random = f.boolean("random_password", false).unwrap_or(false);
    let password = f.string("password", !random);
    let first_name = f.string("first_name", false).unwrap_or_default();
    let last_name = f.string("last_name", false).unwrap_or_default();
    let enabled = f.boolean("is_active", false).unwrap_or(true);
    let role = read_role(&mut f, false).unwrap_or(Role::SimpleUsers);
    let profile = read_profile(&mut f);
    // A simple user without `mailbox` gets one at its username with the domain's default
    // quota, as Modoboa does.
    let mailbox = match read_mailbox(&mut f).flatten() {
        Some(m) => Some(m),
        None if role == Role::SimpleUsers => Some(MailboxFields::default()),
        None => None,
    };
    // Domains only mean something for domain admins and resellers (Modoboa ignores them).
    let domains = read_domains(&mut f)
        .filter(|_| matches!(role, Role::DomainAdmins | Role::Resellers))
        .unwrap_or_default();
    let username = username.and_then(|u| match Username::parse(&u) {
        Ok(u) => Some(u),
        Err(e) => {
            f.error(
                "username",
                e.to_string().trim_start_matches("username: ").to_string(),
            );
            None
        }
    });
    let mailbox_address = mailbox.as_ref().and_then(|m| m.full_address.clone());
    if let (Some(u), Some(a)) = (&username, &mailbox_address) {
        if role == Role::SimpleUsers && u.as_str() != a.as_str() {
            f.error("username", "Must be equal to mailbox full_address");
        }
    }
    f.finish()?;
    let Some(username) = username else {
        return Err(ApiError::field("username", "This field is required."));
    };
    let password = match (password, random) {
        (Some(p), false) => p,
        // Modoboa never answers a random password: the account's owner resets it.
        (_, true) => crate::secrets::Secret::generate(24).expose().to_string(),
        (None, false) => return Err(ApiError::field("password", "This field is required.")),
    };
    let (quota, settings) = match &mailbox {
        Some(m) => (Some(m.quota), m.settings.clone()),
        None => (None, MailboxSettings::default()),
    };
    let spec = AccountSpec {
        username,
        password: Password::Clear(password),
        first_name,
        last_name,
        enabled,
        role,
        mailbox: quota,
        mailbox_address,
        domains,
        profile,
        mailbox_settings: settings,
    };
    let mut tx = begin(&web).await?;
    // A domain to administer the user does not have is a mistake in `domains`.
    for d in &spec.domains {
        crate::store::domains::get(&mut tx, user.actor(), d)
            .await
            .map_err(ApiError::on("domains"))?;
    }
    let policy = accounts::hash_policy(&mut tx).await?;
    let a = accounts::create(&mut tx, user.actor(), &spec, policy)
        .await
        .map_err(ApiError::on("username"))?;
    let v = one_json(&mut tx, &a, &user).await?;
    tx.commit().await?;
    created(v)
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
    let a = by_pk(&mut tx, &user, &id).await?;
    if a.id == user.id && !user.is_super() {
        return Err(ApiError::Forbidden(
            "permission denied: change your own password with accounts/{pk}/password/; other changes to your account are made by an administrator above you".into(),
        ));
    }
    let mut f = Fields::new(body, partial);
    let username = f.string("username", true);
    let password = f.string("password", false);
    let mut p = AccountPatch {
        first_name: f.string("first_name", false),
        last_name: f.string("last_name", false),
        enabled: f.boolean("is_active", false),
        role: read_role(&mut f, false),
        profile: read_profile(&mut f),
        ..AccountPatch::default()
    };
    if let Some(m) = read_mailbox(&mut f) {
        match (m, &a.mailbox) {
            (Some(m), Some(current)) => {
                if m.quota_given {
                    p.quota = Some(m.quota);
                }
                let moved = m.full_address.as_ref().is_some_and(|addr| {
                    addr.as_str() != current.full_address
                        && username.as_deref().map(str::trim) != Some(addr.as_str())
                });
                if moved {
                    f.error(
                        "mailbox.full_address",
                        "cannot be changed here: a mailbox follows its account's username (rename the account)",
                    );
                }
                p.mailbox_settings = m.settings;
            }
            (Some(_), None) => f.error(
                "mailbox",
                "this account has no mailbox (a mailbox is only given at creation)",
            ),
            (None, Some(_)) => f.error("mailbox", "cannot be removed (delete the account instead)"),
            (None, None) => {}
        }
    }
    let domains = read_domains(&mut f);
    if let Some(u) = &username {
        match Username::parse(u) {
            Ok(u) => p.username = Some(u),
            Err(e) => f.error(
                "username",
                e.to_string().trim_start_matches("username: ").to_string(),
            ),
        }
    }
    // Domains only mean something for domain admins and resellers (Modoboa ignores them).
    let role_after = p.role.unwrap_or(a.role);
    let domains = domains.filter(|_| matches!(role_after, Role::DomainAdmins | Role::Resellers));
    f.finish()?;
    for d in domains.iter().flatten() {
        crate::store::domains::get(&mut tx, user.actor(), d)
            .await
            .map_err(ApiError::on("domains"))?;
    }
    let opts = store_options(&web);
    let mut a2 = accounts::update(&mut tx, user.actor(), &a.username(), &p, &opts)
        .await
        .map_err(ApiError::on("username"))?;
    if let Some(pw) = password {
        accounts::set_password(&mut tx, user.actor(), &a2.username(), &Password::Clear(pw)).await?;
    }
    if let Some(want) = domains {
        for d in &a2.domains {
            if !want.iter().any(|w| w.as_str() == d) {
                let d = DomainName::parse("domains", d)?;
                accounts::revoke_domain(&mut tx, user.actor(), &a2.username(), &d)
                    .await
                    .map_err(ApiError::on("domains"))?;
            }
        }
        for w in &want {
            if !a2.domains.iter().any(|d| d == w.as_str()) {
                accounts::grant_domain(&mut tx, user.actor(), &a2.username(), w)
                    .await
                    .map_err(ApiError::on("domains"))?;
            }
        }
        a2 = accounts::get(&mut tx, user.actor(), &a2.username()).await?;
    }
    let v = one_json(&mut tx, &a2, &user).await?;
    tx.commit().await?;
    ok(v)
}

put_and_patch!(put_account, patch, update);

async fn delete(State(web): State<Web>, user: ApiUser, Path(id): Path<String>) -> ApiResult {
    user.require_admin()?;
    let mut tx = begin(&web).await?;
    let a = by_pk(&mut tx, &user, &id).await?;
    accounts::delete(&mut tx, user.actor(), &a.username(), &store_options(&web)).await?;
    tx.commit().await?;
    no_content()
}

/// `{password: current, new_password}`: the account's own current password is the proof,
/// whoever asks (as in Modoboa).
async fn password(
    State(web): State<Web>,
    user: ApiUser,
    client: crate::web::Client,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let mut f = Fields::new(body, false);
    let current = f.string("password", true);
    let new = f.string("new_password", true);
    if let Some(n) = &new {
        if let Err(e) = Password::Clear(n.clone()).check() {
            f.error(
                "new_password",
                e.to_string().trim_start_matches("password: ").to_string(),
            );
        }
    }
    f.finish()?;
    let (Some(current), Some(new)) = (current, new) else {
        return Err(ApiError::field("password", "This field is required."));
    };
    let mut tx = begin(&web).await?;
    let a = by_pk(&mut tx, &user, &id).await?;
    // Authority first: who may not change this password learns nothing about the current one
    // (the same 403 whether it was right or wrong).
    accounts::manageable(&mut tx, user.actor(), &a.username()).await?;
    let stored = accounts::stored_password(&mut tx, user.actor(), &a.username()).await?;
    drop(tx);
    let attempt = crate::web::login::reserve_attempt(&web, &client, &a.username).await?;
    if !crate::password::verify_bounded(stored, current).await {
        let line = format!("Wrong current password for {} (API)", a.username);
        crate::web::login::audit_auth(&web, &client, "WARNING", &line).await?;
        return Err(ApiError::field("password", "Password not correct"));
    }
    crate::web::login::attempt_succeeded(&web, &attempt);
    let mut tx = begin(&web).await?;
    accounts::set_password(&mut tx, user.actor(), &a.username(), &Password::Clear(new)).await?;
    tx.commit().await?;
    // Modoboa answers 200 with an empty body.
    Ok(axum::http::StatusCode::OK.into_response())
}

/// `?email=`: whether an account or alias already uses the address (admins only: it answers
/// across domains, so that a creation does not fail later on a name already taken).
async fn exists(State(web): State<Web>, user: ApiUser, q: Query) -> ApiResult {
    user.require_admin()?;
    let Some(email) = q.get("email") else {
        return Err(ApiError::Detail(
            axum::http::StatusCode::BAD_REQUEST,
            "email not provided".into(),
        ));
    };
    // Text that is no address is used by nothing (Modoboa answers false too).
    let Ok(email) = EmailAddress::parse("email", email) else {
        return ok(json!({ "exists": false }));
    };
    let mut tx = begin(&web).await?;
    let found = accounts::address_in_use(&mut tx, &email).await?;
    tx.commit().await?;
    ok(json!({ "exists": found }))
}

// Sender addresses.

fn sender_json(s: &SenderAddress) -> Value {
    json!({ "pk": s.id, "address": s.address, "mailbox": s.mailbox_id })
}

async fn sender_list(State(web): State<Web>, user: ApiUser, q: Query) -> ApiResult {
    let paging = Paging::from(&q)?;
    let mut tx = begin(&web).await?;
    let mut list = accounts::list_sender_addresses(&mut tx, user.actor()).await?;
    tx.commit().await?;
    if let Some(m) = q.get("mailbox") {
        let m = m
            .parse::<i32>()
            .map_err(|_| ApiError::field("mailbox", "must be a mailbox pk (a whole number)"))?;
        list.retain(|s| s.mailbox_id == m);
    }
    if let Some(s) = q.get("search") {
        let s = s.to_lowercase();
        list.retain(|x| x.address.contains(&s));
    }
    paging.respond_all(
        "/senderaddresses/",
        &q,
        list.iter().map(sender_json).collect(),
    )
}

async fn sender_retrieve(
    State(web): State<Web>,
    user: ApiUser,
    Path(id): Path<String>,
) -> ApiResult {
    let mut tx = begin(&web).await?;
    let s = accounts::get_sender_address(&mut tx, user.actor(), pk(&id)?).await?;
    tx.commit().await?;
    ok(sender_json(&s))
}

/// `address` and `mailbox` (a mailbox pk) of a body; the mailbox's username.
async fn read_sender(
    tx: &mut Tx,
    user: &ApiUser,
    f: &mut Fields,
    current: Option<&SenderAddress>,
) -> Result<(accounts::SenderPattern, Username), ApiError> {
    let address = f.string("address", true);
    let mailbox = f.int("mailbox", true);
    f.finish()?;
    let address = match address.or_else(|| current.map(|c| c.address.clone())) {
        Some(a) => accounts::SenderPattern::parse("address", &a)?,
        None => return Err(ApiError::field("address", "This field is required.")),
    };
    let username = match (mailbox, current) {
        (Some(m), _) => {
            let name = accounts::username_by_mailbox_id(tx, m)
                .await?
                .ok_or_else(|| ApiError::field("mailbox", format!("mailbox {m} does not exist")))?;
            let name = Username::existing(&name);
            // A mailbox the user does not administer does not exist for it either.
            accounts::get(tx, user.actor(), &name)
                .await
                .map_err(|_| ApiError::field("mailbox", format!("mailbox {m} does not exist")))?;
            name
        }
        (None, Some(c)) => Username::existing(&c.username),
        (None, None) => return Err(ApiError::field("mailbox", "This field is required.")),
    };
    Ok((address, username))
}

async fn sender_create(
    State(web): State<Web>,
    user: ApiUser,
    JsonBody(body): JsonBody,
) -> ApiResult {
    user.require_admin()?;
    let mut f = Fields::new(body, false);
    let mut tx = begin(&web).await?;
    let (address, username) = read_sender(&mut tx, &user, &mut f, None).await?;
    accounts::add_sender_address(&mut tx, user.actor(), &username, &address)
        .await
        .map_err(ApiError::on("address"))?;
    let s = accounts::find_sender_address(&mut tx, user.actor(), &username, &address).await?;
    tx.commit().await?;
    created(sender_json(&s))
}

async fn sender_update(
    web: Web,
    user: ApiUser,
    id: String,
    body: Map<String, Value>,
    partial: bool,
) -> ApiResult {
    user.require_admin()?;
    let mut tx = begin(&web).await?;
    let current = accounts::get_sender_address(&mut tx, user.actor(), pk(&id)?).await?;
    let mut f = Fields::new(body, partial);
    let (address, username) = read_sender(&mut tx, &user, &mut f, Some(&current)).await?;
    let s = accounts::update_sender_address(&mut tx, user.actor(), current.id, &address, &username)
        .await
        .map_err(ApiError::on("address"))?;
    tx.commit().await?;
    ok(sender_json(&s))
}

put_and_patch!(sender_put, sender_patch, sender_update);

async fn sender_delete(State(web): State<Web>, user: ApiUser, Path(id): Path<String>) -> ApiResult {
    user.require_admin()?;
    let mut tx = begin(&web).await?;
    let s = accounts::get_sender_address(&mut tx, user.actor(), pk(&id)?).await?;
    let address = accounts::SenderPattern::parse("address", &s.address)?;
    accounts::remove_sender_address(
        &mut tx,
        user.actor(),
        &Username::existing(&s.username),
        &address,
    )
    .await?;
    tx.commit().await?;
    no_content()
}
