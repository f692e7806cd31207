//! Logging in and out, and the user's own password page.

use crate::names::{printable, Username};
use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::session::{self, Post, User, COOKIE, LOGIN_COOKIE};
use super::throttle::{self, Reservation};
use super::{Client, Web, WebError};
use crate::store::access::Actor;
use crate::store::accounts::{self, Password};
use crate::store::audit;

/// Modoboa's logger for authentication events.
const AUTH_LOGGER: &str = "modoboa.auth";

#[derive(Debug, Deserialize)]
pub struct Next {
    #[serde(default)]
    next: String,
}

/// Only a path on this site: "/domains", not "//evil.test", "https://evil.test", "/\\evil.test"
/// or "/\t/evil.test" (browsers drop tabs and line breaks from URLs, turning it into "//").
fn safe_next(next: &str) -> &str {
    let same_origin_path = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(|c| c.is_control() || c.is_whitespace());
    if same_origin_path {
        next
    } else {
        "/"
    }
}

/// Reserves one password attempt of `client` on `account` (before any hashing), or refuses it
/// when a limit is reached: `Throttled`, written to the audit log within the client's budget.
pub(crate) async fn reserve_attempt(
    web: &Web,
    client: &Client,
    account: &str,
) -> Result<Reservation, WebError> {
    let reserved = match web.throttle.lock() {
        Ok(mut t) => t.reserve(Instant::now(), &client.0, account),
        Err(_) => Err(throttle::WINDOW),
    };
    match reserved {
        Ok(r) => Ok(r),
        Err(wait) => {
            let line = format!("Login refused (throttled) for {}", printable(account));
            audit_auth(web, client, "WARNING", &line).await?;
            Err(WebError::Throttled(wait.as_secs().div_ceil(60)))
        }
    }
}

pub(crate) fn attempt_succeeded(web: &Web, r: &Reservation) {
    if let Ok(mut t) = web.throttle.lock() {
        t.succeeded(r);
    }
}

/// An authentication event in the audit log. Failures and refusals come from anyone, so each
/// client has a budget of lines per window (the last one says the rest are left out).
pub(crate) async fn audit_auth(
    web: &Web,
    client: &Client,
    level: &str,
    line: &str,
) -> Result<(), WebError> {
    let line = format!("{line} from {}", printable(&client.0));
    let budget = if level == "INFO" {
        Some(true)
    } else {
        web.throttle
            .lock()
            .ok()
            .and_then(|mut t| t.log_budget(Instant::now(), &client.0))
    };
    let line = match budget {
        Some(true) => line,
        Some(false) => {
            format!("{line} (further failures from this client left out for 15 minutes)")
        }
        None => return Ok(()),
    };
    let mut tx = web.store.begin().await?;
    audit::line(&mut tx, level, AUTH_LOGGER, &line).await?;
    tx.commit().await?;
    Ok(())
}

fn login_page(
    web: &Web,
    status: StatusCode,
    next: &str,
    username: &str,
    error: Option<String>,
) -> Result<Response, WebError> {
    let token = session::random_token();
    let mut ctx = tera::Context::new();
    ctx.insert("csrf", &token);
    ctx.insert("next", safe_next(next));
    ctx.insert("username", username);
    ctx.insert("error", &error);
    ctx.insert("hostname", web.config.hostname.as_str());
    let page = web.render("login.html", &ctx)?;
    let cookie = session::set_cookie(LOGIN_COOKIE, &token, 3600, web.secure_cookies);
    Ok((status, [(header::SET_COOKIE, cookie)], page).into_response())
}

pub async fn form(
    State(web): State<Web>,
    headers: HeaderMap,
    Query(q): Query<Next>,
) -> Result<Response, WebError> {
    if session::load(&web, &headers).await?.is_some() {
        return Ok(Redirect::to(safe_next(&q.next)).into_response());
    }
    login_page(&web, StatusCode::OK, &q.next, "", None)
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: String,
}

pub async fn submit(
    State(web): State<Web>,
    client: Client,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Result<Response, WebError> {
    // The login form's token must match its cookie (a cross-site form cannot read or set it).
    let expected = session::cookie_value(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !session::same(expected, &f.csrf) {
        return Err(WebError::Csrf);
    }
    let username = f.username.trim().to_lowercase();
    if username.is_empty() || f.password.is_empty() {
        let e = "username and password are both required".to_string();
        return login_page(&web, StatusCode::BAD_REQUEST, &f.next, &username, Some(e));
    }
    let attempt = reserve_attempt(&web, &client, &username).await?;
    let mut tx = web.store.begin().await?;
    match accounts::authenticate(&mut tx, &username, &f.password).await? {
        Some(account) => {
            attempt_succeeded(&web, &attempt);
            let token = session::create(&mut tx, account.id).await?;
            tx.commit().await?;
            let line = format!("User {} logged in", account.username);
            audit_auth(&web, &client, "INFO", &line).await?;
            Ok(login_answer(&web, &token, safe_next(&f.next)))
        }
        None => {
            drop(tx);
            let line = format!("Login failed for {}", printable(&username));
            audit_auth(&web, &client, "WARNING", &line).await?;
            let e = "wrong username or password".to_string();
            login_page(&web, StatusCode::UNAUTHORIZED, &f.next, &username, Some(e))
        }
    }
}

/// The session cookie (the login form's cookie cleared), then on to `next`.
fn login_answer(web: &Web, token: &str, next: &str) -> Response {
    let secure = web.secure_cookies;
    let max_age = session::LIFETIME.num_seconds();
    (
        axum::response::AppendHeaders([
            (
                header::SET_COOKIE,
                session::set_cookie(COOKIE, token, max_age, secure),
            ),
            (
                header::SET_COOKIE,
                session::set_cookie(LOGIN_COOKIE, "", 0, secure),
            ),
        ]),
        Redirect::to(next),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
pub struct Nothing {}

pub async fn logout(
    State(web): State<Web>,
    client: Client,
    post: Post<Nothing>,
) -> Result<Response, WebError> {
    let mut tx = web.store.begin().await?;
    session::delete(&mut tx, post.user.session_token()).await?;
    let line = format!("User {} logged out from {}", post.user.username, client.0);
    audit::line(&mut tx, "INFO", AUTH_LOGGER, &line).await?;
    tx.commit().await?;
    let cookie = session::set_cookie(COOKIE, "", 0, web.secure_cookies);
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response())
}

fn password_page(
    web: &Web,
    user: &User,
    status: StatusCode,
    error: Option<String>,
    done: bool,
) -> Result<Response, WebError> {
    settings_page(web, user, status, error, done, None)
}

/// The user's own settings: password, and the API token (shown once, when just made).
fn settings_page(
    web: &Web,
    user: &User,
    status: StatusCode,
    error: Option<String>,
    done: bool,
    token: Option<String>,
) -> Result<Response, WebError> {
    let mut ctx = super::pages::base(web, user, "password");
    ctx.insert("error", &error);
    ctx.insert("done", &done);
    ctx.insert("token", &token);
    Ok((status, web.render("password.html", &ctx)?).into_response())
}

/// A new API token for the logged-in user (its previous one stops working), shown once.
pub async fn token_submit(
    State(web): State<Web>,
    client: Client,
    post: Post<Nothing>,
) -> Result<Response, WebError> {
    let mut tx = web.store.begin().await?;
    let token = crate::store::tokens::create_token(&mut tx, post.user.id).await?;
    let line = format!(
        "API token of {} replaced from {}",
        post.user.username, client.0
    );
    audit::line(&mut tx, "INFO", AUTH_LOGGER, &line).await?;
    tx.commit().await?;
    settings_page(&web, &post.user, StatusCode::OK, None, false, Some(token))
}

pub async fn password_form(State(web): State<Web>, user: User) -> Result<Response, WebError> {
    password_page(&web, &user, StatusCode::OK, None, false)
}

#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    confirm: String,
}

pub async fn password_submit(
    State(web): State<Web>,
    client: Client,
    post: Post<PasswordForm>,
) -> Result<Response, WebError> {
    let (user, f) = (post.user, post.form);
    let refuse =
        |m: &str| password_page(&web, &user, StatusCode::BAD_REQUEST, Some(m.into()), false);
    if f.new != f.confirm {
        return refuse("new password: the two entries differ");
    }
    if let Err(e) = Password::Clear(f.new.clone()).check() {
        return refuse(&e.to_string());
    }
    let attempt = reserve_attempt(&web, &client, &user.username).await?;
    let mut tx = web.store.begin().await?;
    if accounts::authenticate(&mut tx, &user.username, &f.current)
        .await?
        .is_none()
    {
        drop(tx);
        let line = format!("Wrong current password for {}", user.username);
        audit_auth(&web, &client, "WARNING", &line).await?;
        return refuse("current password: wrong password");
    }
    attempt_succeeded(&web, &attempt);
    // The user changes their own password: allowed whatever the role. Every session and the
    // API token of the account end with it; this browser gets a new session.
    accounts::set_password(
        &mut tx,
        Actor::System,
        &Username::existing(&user.username),
        &Password::Clear(f.new),
    )
    .await?;
    let token = session::create(&mut tx, user.id).await?;
    tx.commit().await?;
    let user = session::load_token(&web, &token)
        .await?
        .ok_or_else(|| WebError::Internal("the new session is gone".into()))?;
    let page = password_page(&web, &user, StatusCode::OK, None, true)?;
    let cookie = session::set_cookie(
        COOKIE,
        &token,
        session::LIFETIME.num_seconds(),
        web.secure_cookies,
    );
    Ok(([(header::SET_COOKIE, cookie)], page).into_response())
}
