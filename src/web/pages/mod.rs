//! The pages of the admin UI. Each handler takes the logged-in [`User`] and acts as that user
//! through the store, which enforces what each role may see and change; a form's store calls
//! run in one transaction that is committed only when all of them succeeded.

mod accounts;
mod admin;
mod aliases;
mod domains;
mod stats;

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Serialize;

use super::session::User;
use super::{Web, WebError};
use crate::store::access::Role;
use crate::store::StoreError;

/// Rows per page of every list.
pub const PAGE_SIZE: i64 = 50;

/// The pages beyond the dashboard, login and password (see `router`).
pub fn routes() -> axum::Router<Web> {
    axum::Router::new()
        .route("/domains", get(domains::list))
        .route("/domains/new", get(domains::new_form).post(domains::create))
        .route("/domains/{name}", get(domains::show))
        .route(
            "/domains/{name}/edit",
            get(domains::edit_form).post(domains::update),
        )
        .route(
            "/domains/{name}/delete",
            get(domains::delete_form).post(domains::delete),
        )
        .route(
            "/domains/{name}/aliases/new",
            get(domains::alias_new_form).post(domains::alias_create),
        )
        .route(
            "/domain-aliases/{name}/edit",
            get(domains::alias_edit_form).post(domains::alias_update),
        )
        .route(
            "/domain-aliases/{name}/delete",
            get(domains::alias_delete_form).post(domains::alias_delete),
        )
        .route("/accounts", get(accounts::list))
        .route(
            "/accounts/new",
            get(accounts::new_form).post(accounts::create),
        )
        .route("/accounts/{username}", get(accounts::show))
        .route(
            "/accounts/{username}/edit",
            get(accounts::edit_form).post(accounts::update),
        )
        .route(
            "/accounts/{username}/password",
            get(accounts::password_form).post(accounts::password),
        )
        .route(
            "/accounts/{username}/mobileconfig",
            get(accounts::mobileconfig).post(accounts::mobileconfig_with_password),
        )
        .route(
            "/accounts/{username}/delete",
            get(accounts::delete_form).post(accounts::delete),
        )
        .route(
            "/accounts/{username}/domains",
            axum::routing::post(accounts::grant),
        )
        .route(
            "/accounts/{username}/domains/revoke",
            axum::routing::post(accounts::revoke),
        )
        .route(
            "/accounts/{username}/limits",
            axum::routing::post(accounts::limits),
        )
        .route("/aliases", get(aliases::list))
        .route("/aliases/new", get(aliases::new_form).post(aliases::create))
        .route(
            "/aliases/{address}/edit",
            get(aliases::edit_form).post(aliases::update),
        )
        .route(
            "/aliases/{address}/delete",
            get(aliases::delete_form).post(aliases::delete),
        )
        .route("/statistics", get(stats::page))
        .route("/statistics/graph.svg", get(stats::graph_svg))
        .route("/logs", get(admin::logs))
        .route(
            "/parameters",
            get(admin::parameters).post(admin::set_parameters),
        )
}

/// The delete confirmation page: what is deleted, where its form posts, where "cancel" goes
/// back to, and what goes with it.
#[derive(Debug)]
pub struct Deletion<'a> {
    pub kind: &'a str,
    pub name: &'a str,
    pub action: String,
    pub back: String,
    pub consequence: String,
}

pub fn confirm_delete(
    web: &Web,
    user: &User,
    section: &str,
    d: Deletion<'_>,
) -> Result<Html<String>, WebError> {
    let mut ctx = base(web, user, section);
    ctx.insert("kind", d.kind);
    ctx.insert("name", d.name);
    ctx.insert("action", &d.action);
    ctx.insert("back", &d.back);
    ctx.insert("consequence", &d.consequence);
    web.render("confirm_delete.html", &ctx)
}

/// What every page's layout needs: who is logged in, the navigation they may use, the CSRF token
/// of their forms.
pub fn base(web: &Web, user: &User, active: &str) -> tera::Context {
    let mut ctx = tera::Context::new();
    ctx.insert("hostname", web.config.hostname.as_str());
    ctx.insert("username", &user.username);
    ctx.insert("role", user.role.as_str());
    ctx.insert("is_admin", &user.is_admin());
    ctx.insert("is_super", &(user.role == Role::SuperAdmins));
    ctx.insert("csrf", &user.csrf);
    ctx.insert("active", active);
    ctx.insert("version", env!("CARGO_PKG_VERSION"));
    ctx.insert("errors", &Errors::new());
    // While an upgrade runs, every page says why its forms are refused for a moment.
    ctx.insert(
        "maintenance",
        &crate::system::maintenance::active(web.config.paths.data.as_path()),
    );
    ctx
}

pub async fn dashboard(State(web): State<Web>, user: User) -> Result<Html<String>, WebError> {
    let mut ctx = base(&web, &user, "dashboard");
    if user.is_admin() {
        // Published by the supervisor: this process runs unprivileged and cannot probe it all.
        match crate::health::published::read_snapshot(&web.status_file) {
            Ok(status) if user.role == Role::SuperAdmins => {
                // Checks, jobs and events are the machine's (other tenants' domains, mailbox
                // paths, DNSBL hits): superadmins only.
                ctx.insert("status", &status);
                ctx.insert(
                    "upgrade",
                    &crate::jobs::public_api::upgrade_notice(&web.store).await,
                );
            }
            Ok(status) => {
                // Other admins: whether each service answers, nothing more.
                let health: Vec<(String, bool)> = status["services"]
                    .as_array()
                    .map(|all| {
                        all.iter()
                            .map(|s| {
                                (
                                    s["service"].as_str().unwrap_or_default().to_string(),
                                    s["healthy"].as_bool().unwrap_or(false),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                ctx.insert("service_health", &health);
            }
            Err(e) => ctx.insert("status_error", &e.to_string()),
        }
    }
    let mut tx = web.store.begin().await?;
    let me = crate::store::accounts::get(
        &mut tx,
        crate::store::access::Actor::System,
        &crate::names::Username::existing(&user.username),
    )
    .await?;
    tx.commit().await?;
    ctx.insert("me", &me);
    ctx.insert("me_usage", &me.mailbox.as_ref().map(Usage::of));
    web.render("dashboard.html", &ctx)
}

/// Administration pages: a simple user gets 403 (its own account pages are elsewhere).
pub fn require_admin(user: &User) -> Result<(), WebError> {
    if user.is_admin() {
        Ok(())
    } else {
        Err(WebError::Forbidden(
            "this page is for administrators".into(),
        ))
    }
}

pub fn require_super(user: &User) -> Result<(), WebError> {
    if user.role == Role::SuperAdmins {
        Ok(())
    } else {
        Err(WebError::Forbidden("this page is for superadmins".into()))
    }
}

/// Field name → message of a refused form; `_form` holds what belongs to no field.
pub type Errors = BTreeMap<String, String>;

/// Sorts a store error into the form's errors (shown next to the field it names) or, for
/// what is not about the input (a missing object, a refusal by role, a failure), the error
/// page.
pub fn form_errors(e: StoreError, fields: &[&str], exists_field: &str) -> Result<Errors, WebError> {
    let message = e.to_string();
    let field = match &e {
        StoreError::Refused { field, .. } => field.clone(),
        StoreError::Invalid(n) => n.field.clone(),
        StoreError::Exists { .. } => exists_field.to_string(),
        StoreError::Password(_) => "password".to_string(),
        _ => return Err(e.into()),
    };
    // "recipients[2]" belongs to the recipients field.
    let field = field.split('[').next().unwrap_or_default().to_string();
    let key = if fields.contains(&field.as_str()) {
        field
    } else {
        "_form".to_string()
    };
    let mut errors = Errors::new();
    errors.insert(key, message);
    Ok(errors)
}

pub fn one_error(field: &str, message: impl Into<String>) -> Errors {
    let mut e = Errors::new();
    e.insert(field.to_string(), message.into());
    e
}

/// A refused form: the page again, with its errors, answering 400.
pub fn refused(web: &Web, template: &str, ctx: &tera::Context) -> Result<Response, WebError> {
    Ok((StatusCode::BAD_REQUEST, web.render(template, ctx)?).into_response())
}

pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// A whole number typed in a form field; blank is `None`.
pub fn int_field(field: &str, value: &str) -> Result<Option<i32>, Errors> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    v.parse::<i32>()
        .map(Some)
        .map_err(|_| one_error(field, format!("{field}: must be a whole number")))
}

pub fn checked(v: &Option<String>) -> bool {
    v.as_deref()
        .is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Which page of a list, from `?page=` (anything unreadable is the first).
pub fn page_number(raw: &Option<String>) -> i64 {
    raw.as_deref()
        .and_then(|p| p.parse::<i64>().ok())
        .filter(|p| *p >= 1)
        .unwrap_or(1)
}

/// The last page when `page` is past the end of `total` items (the list shrank, or a typed
/// URL): the pager shows that one.
pub fn past_the_end(page: i64, total: i64) -> Option<i64> {
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    (page > pages).then_some(pages)
}

/// The pager under a list: links keep the list's other query parameters.
#[derive(Debug, Serialize)]
pub struct Pager {
    pub page: i64,
    pub pages: i64,
    pub total: i64,
    pub first: i64,
    pub last: i64,
    pub prev: Option<String>,
    pub next: Option<String>,
}

pub fn pager(total: i64, page: i64, path: &str, query: &[(&str, &str)]) -> Pager {
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let page = page.min(pages);
    let link = |p: i64| {
        let mut q: Vec<(&str, String)> = query
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (*k, v.to_string()))
            .collect();
        q.push(("page", p.to_string()));
        format!(
            "{path}?{}",
            serde_urlencoded::to_string(&q).unwrap_or_default()
        )
    };
    let first = if total == 0 {
        0
    } else {
        (page - 1) * PAGE_SIZE + 1
    };
    Pager {
        page,
        pages,
        total,
        first,
        last: (page * PAGE_SIZE).min(total),
        prev: (page > 1).then(|| link(page - 1)),
        next: (page < pages).then(|| link(page + 1)),
    }
}

/// Quota use of a mailbox for display: MB used, and the percentage when there is a quota.
#[derive(Debug, Serialize)]
pub struct Usage {
    pub used_mb: String,
    pub quota: i32,
    pub percent: Option<i64>,
}

impl Usage {
    pub fn of(mb: &crate::store::accounts::Mailbox) -> Usage {
        let used = mb.quota_used_bytes as f64 / 1_048_576.0;
        Usage {
            used_mb: format!("{used:.1}"),
            quota: mb.quota,
            percent: (mb.quota > 0).then(|| ((used / f64::from(mb.quota)) * 100.0).round() as i64),
        }
    }
}

/// What the store needs to keep the mailboxes on disk in step.
pub fn store_options(web: &Web) -> crate::store::accounts::Options {
    crate::store::accounts::Options {
        mail_root: web.config.paths.mail_root.as_path().to_path_buf(),
        handle_mailboxes_on_filesystem: web.config.mail.handle_mailboxes_on_filesystem,
    }
}
