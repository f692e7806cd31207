//! `resources/{pk}/`: the limits of a reseller or domain admin (`pk` = its account), -1 meaning
//! unlimited. Anyone who sees the admin reads them; only superadmins change them.

use axum::extract::{Path, State};
use axum::routing::get;
use serde_json::{Map, Value};

use super::{begin, ok, pk, ApiError, ApiResult, ApiUser, Fields, Route};
use crate::names::Username;
use crate::store::access::{self, Role, LIMIT_NAMES};
use crate::store::accounts::{self, Account};
use crate::store::Tx;
use crate::web::Web;

pub fn routes() -> Vec<Route> {
    vec![Route::new(
        "/resources/{pk}/",
        &["GET", "PUT", "PATCH"],
        get(retrieve).put(put).patch(patch),
    )]
}

async fn admin_by_pk(tx: &mut Tx, user: &ApiUser, id: &str) -> Result<Account, ApiError> {
    user.require_admin()?;
    let name = accounts::username_by_id(tx, pk(id)?)
        .await?
        .ok_or(ApiError::NotFound)?;
    let a = accounts::get(tx, user.actor(), &Username::existing(&name)).await?;
    // Only resellers and domain admins have limits: for anyone else there is no resource.
    if !matches!(a.role, Role::Resellers | Role::DomainAdmins) {
        return Err(ApiError::NotFound);
    }
    Ok(a)
}

async fn limits_json(tx: &mut Tx, user_id: i32) -> Result<Value, ApiError> {
    let set = access::user_limits(tx, user_id).await?;
    let mut m = Map::new();
    for name in LIMIT_NAMES {
        let v = set.iter().find(|(n, _)| n == name).map_or(-1, |(_, v)| *v);
        m.insert(name.to_string(), Value::from(v));
    }
    Ok(Value::Object(m))
}

async fn retrieve(State(web): State<Web>, user: ApiUser, Path(id): Path<String>) -> ApiResult {
    let mut tx = begin(&web).await?;
    let a = admin_by_pk(&mut tx, &user, &id).await?;
    let v = limits_json(&mut tx, a.id).await?;
    tx.commit().await?;
    ok(v)
}

async fn update(
    web: Web,
    user: ApiUser,
    id: String,
    body: Map<String, Value>,
    partial: bool,
) -> ApiResult {
    let mut tx = begin(&web).await?;
    let a = admin_by_pk(&mut tx, &user, &id).await?;
    if !user.is_super() {
        return Err(ApiError::Forbidden(
            "permission denied: only superadmins change limits".into(),
        ));
    }
    let mut f = Fields::new(body, partial);
    let mut values = Vec::new();
    for name in LIMIT_NAMES {
        if let Some(v) = f.int(name, true) {
            if v < -1 {
                f.error(
                    name,
                    "must be -1 (unlimited), 0 (none) or a positive number",
                );
            } else {
                values.push((name, v));
            }
        }
    }
    f.finish()?;
    for (name, v) in values {
        access::set_user_limit(&mut tx, a.id, name, v).await?;
    }
    let v = limits_json(&mut tx, a.id).await?;
    tx.commit().await?;
    ok(v)
}

put_and_patch!(put, patch, update);
