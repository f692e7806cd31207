//! The pages of the admin UI. Each handler takes the logged-in [`User`] and acts as that user
//! through the store, which enforces what each role may see and change.

use axum::extract::State;
use axum::response::Html;

use super::session::User;
use super::{Web, WebError};
use crate::store::access::Role;

/// The pages beyond the dashboard, login and password (see `router`).
pub fn routes() -> axum::Router<Web> {
    axum::Router::new()
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
    ctx
}

pub async fn dashboard(State(web): State<Web>, user: User) -> Result<Html<String>, WebError> {
    let mut ctx = base(&web, &user, "dashboard");
    if user.is_admin() {
        // Services, checks and jobs are the machine's: administrators only.
        let status =
            crate::supervisor::status::gather(&web.config, &web.distro, Some(&web.store)).await;
        ctx.insert("status", &status);
    }
    let mut tx = web.store.begin().await?;
    let me =
        crate::store::accounts::get(&mut tx, crate::store::access::Actor::System, &user.username)
            .await?;
    tx.commit().await?;
    ctx.insert("me", &me);
    web.render("dashboard.html", &ctx)
}
