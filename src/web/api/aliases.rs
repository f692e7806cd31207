//! `aliases/`: aliases, forwards (an alias with the address of a mailbox) and catch-alls
//! (`@domain`).

use axum::extract::{Path, State};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::{
    begin, created, no_content, ok, pk, ApiError, ApiResult, ApiUser, Fields, JsonBody, Paging,
    Query, Route,
};
use crate::names::DomainName;
use crate::store::aliases::{self, Alias, AliasAddress, AliasPatch, AliasSpec};
use crate::store::{Page, Tx};
use crate::web::Web;

pub fn routes() -> Vec<Route> {
    vec![
        Route::new("/aliases/", &["GET", "POST"], get(list).post(create)),
        Route::new(
            "/aliases/{pk}/",
            &["GET", "PUT", "PATCH", "DELETE"],
            get(retrieve).put(put).patch(patch).delete(delete),
        ),
    ]
}

fn alias_json(a: &Alias) -> Value {
    json!({
        "pk": a.id,
        "address": a.address,
        "enabled": a.enabled,
        "internal": a.internal,
        "description": a.description,
        "expire_at": a.expire_at,
        "recipients": a.recipients,
    })
}

async fn list(State(web): State<Web>, user: ApiUser, q: Query) -> ApiResult {
    let paging = Paging::from(&q)?;
    let domain = q
        .get("domain")
        .map(|d| DomainName::parse("domain", d))
        .transpose()?;
    let (limit, offset) = paging.window();
    let mut tx = begin(&web).await?;
    let search = q.get("search");
    let Page { items: list, total } = match aliases::list_page(
        &mut tx,
        user.actor(),
        domain.as_ref(),
        search,
        limit,
        offset,
    )
    .await
    {
        // A domain the user does not administer: no aliases for it.
        Err(crate::store::StoreError::NotFound { .. }) => Page::empty(),
        other => other?,
    };
    tx.commit().await?;
    paging.respond(
        "/aliases/",
        &q,
        total,
        list.iter().map(alias_json).collect(),
    )
}

async fn by_pk(tx: &mut Tx, user: &ApiUser, id: &str) -> Result<Alias, ApiError> {
    let address = aliases::address_by_id(tx, pk(id)?)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(aliases::get(tx, user.actor(), &address).await?)
}

async fn retrieve(State(web): State<Web>, user: ApiUser, Path(id): Path<String>) -> ApiResult {
    let mut tx = begin(&web).await?;
    let a = by_pk(&mut tx, &user, &id).await?;
    tx.commit().await?;
    ok(alias_json(&a))
}

fn read_expiry(f: &mut Fields) -> Option<Option<DateTime<Utc>>> {
    match f.nullable_string("expire_at")? {
        None => Some(None),
        Some(s) => match DateTime::parse_from_rfc3339(s.trim()) {
            Ok(t) => Some(Some(t.with_timezone(&Utc))),
            Err(_) => {
                f.error(
                    "expire_at",
                    "must be an RFC 3339 date and time (e.g. 2030-01-31T12:00:00Z) or null",
                );
                None
            }
        },
    }
}

fn check_description(f: &mut Fields, d: &Option<String>) {
    if d.as_ref()
        .is_some_and(|d| d.chars().any(|c| c.is_control() && c != '\n'))
    {
        f.error("description", "must not contain control characters");
    }
}

async fn create(State(web): State<Web>, user: ApiUser, JsonBody(body): JsonBody) -> ApiResult {
    user.require_admin()?;
    let mut f = Fields::new(body, false);
    let address = f.string("address", true);
    let address = address.and_then(|a| match AliasAddress::parse("address", &a) {
        Ok(a) => Some(a),
        Err(e) => {
            f.error("address", e.to_string());
            None
        }
    });
    let enabled = f.boolean("enabled", false).unwrap_or(true);
    let recipients = f.string_list("recipients", true);
    let description = f.string("description", false);
    check_description(&mut f, &description);
    let expire_at = read_expiry(&mut f).flatten();
    if f.boolean("internal", false) == Some(true) {
        f.error("internal", "internal aliases are managed by modobox itself");
    }
    f.finish()?;
    let (Some(address), Some(recipients)) = (address, recipients) else {
        return Err(ApiError::field("address", "This field is required."));
    };
    let spec = AliasSpec {
        enabled,
        description: description.unwrap_or_default(),
        expire_at,
        recipients,
    };
    let mut tx = begin(&web).await?;
    let a = aliases::create(&mut tx, user.actor(), &address, &spec)
        .await
        .map_err(ApiError::on("address"))?;
    tx.commit().await?;
    created(alias_json(&a))
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
    let mut f = Fields::new(body, partial);
    if let Some(addr) = f.string("address", true) {
        if addr.trim().to_lowercase() != a.address {
            f.error(
                "address",
                "cannot be changed (delete this alias and create another)",
            );
        }
    }
    let description = f.string("description", false);
    check_description(&mut f, &description);
    let p = AliasPatch {
        enabled: f.boolean("enabled", false),
        description,
        expire_at: read_expiry(&mut f),
        recipients: f.string_list("recipients", true),
    };
    f.finish()?;
    let a = aliases::update(&mut tx, user.actor(), &a.address, &p)
        .await
        .map_err(ApiError::on("recipients"))?;
    tx.commit().await?;
    ok(alias_json(&a))
}

put_and_patch!(put, patch, update);

async fn delete(State(web): State<Web>, user: ApiUser, Path(id): Path<String>) -> ApiResult {
    user.require_admin()?;
    let mut tx = begin(&web).await?;
    let a = by_pk(&mut tx, &user, &id).await?;
    aliases::delete(&mut tx, user.actor(), &a.address).await?;
    tx.commit().await?;
    no_content()
}
