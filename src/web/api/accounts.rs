//! `accounts/` (accounts with their mailbox), `accounts/{pk}/password/`, `accounts/exists/`
//! and `senderaddresses/`.

use axum::extract::{Path, State};
use axum::routing::{get, put};
use serde_json::{json, Map, Value};

use super::{
    begin, created, no_content, ok, pk, store_options, ApiError, ApiResult, ApiUser, Fields,
    JsonBody, Paging, Query, Route,
};
use crate::names::{DomainName, EmailAddress, Username};
use crate::store::access::Role;
use crate::store::accounts::{
    self, Account, AccountPatch, AccountSpec, ListFilter, Password, SenderAddress,
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

pub fn account_json(a: &Account) -> Value {
    json!({
        "pk": a.id,
        "username": a.username,
        "first_name": a.first_name,
        "last_name": a.last_name,
        "email": a.email,
        "is_active": a.is_active,
        "role": a.role.as_str(),
        "language": a.language,
        "last_login": a.last_login,
        "date_joined": a.date_joined,
        "mailbox": a.mailbox.as_ref().map(|m| json!({
            "pk": m.id,
            "full_address": m.full_address,
            "quota": m.quota,
            "use_domain_quota": m.use_domain_quota,
            "quota_usage_bytes": m.quota_used_bytes,
        })),
        "domains": a.domains,
    })
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
    let filter = ListFilter {
        domain: q.get("domain"),
        search: q.get("search"),
        role,
        with_mailbox: None,
    };
    let (limit, offset) = paging.window();
    let mut tx = begin(&web).await?;
    let Page { items: list, total } =
        accounts::list_page(&mut tx, user.actor(), &filter, limit, offset).await?;
    tx.commit().await?;
    paging.respond(
        "/accounts/",
        &q,
        total,
        list.iter().map(account_json).collect(),
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
    tx.commit().await?;
    ok(account_json(&a))
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

/// `mailbox: {quota, use_domain_quota}` → the quota to ask for (None = the domain's default).
fn read_mailbox(f: &mut Fields) -> Option<Option<Option<i32>>> {
    let m = f.object("mailbox", false)?;
    let Some(m) = m else {
        return Some(None);
    };
    let mut mf = Fields::new(m, true);
    let quota = mf.int("quota", false);
    let use_domain = mf.boolean("use_domain_quota", false);
    mf.string("full_address", false); // read-only, as in Modoboa
    f.absorb("mailbox", mf);
    Some(Some(match (use_domain, quota) {
        (Some(true), _) | (None, None) => None,
        (_, Some(q)) => Some(q),
        (Some(false), None) => {
            f.error(
                "mailbox.quota",
                "is required when use_domain_quota is false",
            );
            None
        }
    }))
}

async fn create(State(web): State<Web>, user: ApiUser, JsonBody(body): JsonBody) -> ApiResult {
    user.require_admin()?;
    let mut f = Fields::new(body, false);
    let username = f.string("username", true);
    let password = f.string("password", true);
    let first_name = f.string("first_name", false).unwrap_or_default();
    let last_name = f.string("last_name", false).unwrap_or_default();
    let enabled = f.boolean("is_active", false).unwrap_or(true);
    let role = read_role(&mut f, false).unwrap_or(Role::SimpleUsers);
    let mailbox = read_mailbox(&mut f).flatten();
    let domains = read_domains(&mut f).unwrap_or_default();
    if role == Role::SimpleUsers && mailbox.is_none() {
        f.error(
            "mailbox",
            "is required for a simple user (an object, e.g. {})",
        );
    }
    if !domains.is_empty() && !matches!(role, Role::DomainAdmins | Role::Resellers) {
        f.error(
            "domains",
            "only domain admins and resellers administer domains",
        );
    }
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
    f.finish()?;
    let (Some(username), Some(password)) = (username, password) else {
        return Err(ApiError::field("username", "This field is required."));
    };
    let spec = AccountSpec {
        username,
        password: Password::Clear(password),
        first_name,
        last_name,
        enabled,
        role,
        mailbox,
        mailbox_address: None,
        domains,
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
    tx.commit().await?;
    created(account_json(&a))
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
        ..AccountPatch::default()
    };
    if let Some(m) = read_mailbox(&mut f) {
        match (m, &a.mailbox) {
            (Some(q), Some(_)) => p.quota = Some(q),
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
    let role_after = p.role.unwrap_or(a.role);
    if domains.as_ref().is_some_and(|d| !d.is_empty())
        && !matches!(role_after, Role::DomainAdmins | Role::Resellers)
    {
        f.error(
            "domains",
            "only domain admins and resellers administer domains",
        );
    }
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
    tx.commit().await?;
    ok(account_json(&a2))
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
        return Err(ApiError::field("password", "wrong password"));
    }
    crate::web::login::attempt_succeeded(&web, &attempt);
    let mut tx = begin(&web).await?;
    accounts::set_password(&mut tx, user.actor(), &a.username(), &Password::Clear(new)).await?;
    tx.commit().await?;
    no_content()
}

/// `?email=`: whether an account or alias already uses the address (admins only: it answers
/// across domains, so that a creation does not fail later on a name already taken).
async fn exists(State(web): State<Web>, user: ApiUser, q: Query) -> ApiResult {
    user.require_admin()?;
    let Some(email) = q.get("email") else {
        return Err(ApiError::field("email", "This field is required."));
    };
    let email = EmailAddress::parse("email", email)?;
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
