//! Sessions of the web UI: a random token in an HttpOnly, Secure, SameSite=Strict cookie; the
//! database keeps only its SHA-256 (a copy of the table does not log anyone in), the user, a
//! CSRF token and the expiry. `clearsessions` deletes the expired rows.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use base64::Engine;
use chrono::Utc;
use rand::RngCore;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use super::{Web, WebError};
use crate::store::access::{self, Actor, Role};
use crate::store::{sessions, Tx};

pub const COOKIE: &str = "modobox_session";
/// Before login there is no session: the login form's CSRF token is a cookie of its own.
pub const LOGIN_COOKIE: &str = "modobox_login";
/// How long a session lasts.
pub const LIFETIME: chrono::Duration = chrono::Duration::hours(8);

/// 32 random bytes, URL-safe base64.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

pub use crate::store::tokens::digest;

pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value; `max_age` 0 deletes it.
pub fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The logged-in user of a request.
#[derive(Debug, Clone)]
pub struct User {
    pub id: i32,
    pub username: String,
    pub role: Role,
    pub csrf: String,
    session: String,
}

impl User {
    pub fn actor(&self) -> Actor {
        Actor::User {
            id: self.id,
            role: self.role,
        }
    }
    pub fn is_admin(&self) -> bool {
        self.role.is_admin()
    }
    pub fn check_csrf(&self, given: &str) -> Result<(), WebError> {
        if same(&self.csrf, given) {
            Ok(())
        } else {
            Err(WebError::Csrf)
        }
    }
}

/// Starts a session for `user_id`; returns the cookie token.
pub async fn create(tx: &mut Tx, user_id: i32) -> Result<String, WebError> {
    let token = random_token();
    let now = Utc::now();
    sessions::create(tx, &token, user_id, &random_token(), now, now + LIFETIME).await?;
    Ok(token)
}

pub async fn delete(tx: &mut Tx, token: &str) -> Result<(), WebError> {
    sessions::delete(tx, token).await?;
    Ok(())
}

/// The session's user, if the cookie names a live session of an active user.
pub async fn load(web: &Web, headers: &HeaderMap) -> Result<Option<User>, WebError> {
    match cookie_value(headers, COOKIE) {
        Some(token) => load_token(web, token).await,
        None => Ok(None),
    }
}

/// The user of a live session token.
pub async fn load_token(web: &Web, token: &str) -> Result<Option<User>, WebError> {
    let mut tx = web.store.begin().await?;
    let Some(s) = sessions::find(&mut tx, token).await? else {
        return Ok(None);
    };
    if s.expires_at <= Utc::now() || !s.is_active {
        return Ok(None);
    }
    let role = access::role_of(&mut tx, s.user_id).await?;
    tx.commit().await?;
    Ok(Some(User {
        id: s.user_id,
        username: s.username,
        role,
        csrf: s.csrf_token,
        session: token.to_string(),
    }))
}

impl User {
    pub fn session_token(&self) -> &str {
        &self.session
    }
}

/// Pages need a user: without one, the browser goes to the login page.
impl FromRequestParts<Web> for User {
    type Rejection = WebError;
    async fn from_request_parts(parts: &mut Parts, web: &Web) -> Result<Self, Self::Rejection> {
        match load(web, &parts.headers).await? {
            Some(u) => Ok(u),
            None => Err(WebError::LoginNeeded(
                parts
                    .uri
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
            )),
        }
    }
}

/// A form posted by a logged-in user, its CSRF token checked before anything else.
#[derive(Debug)]
pub struct Post<T> {
    pub user: User,
    pub form: T,
}

#[derive(serde::Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

impl<T: DeserializeOwned + Send> FromRequest<Web> for Post<T> {
    type Rejection = WebError;
    async fn from_request(req: Request, web: &Web) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let user = User::from_request_parts(&mut parts, web).await?;
        let bytes = axum::body::to_bytes(body, 1 << 20)
            .await
            .map_err(|_| WebError::BadRequest("the form is too large (1 MiB at most)".into()))?;
        let csrf: CsrfField = serde_urlencoded::from_bytes(&bytes).unwrap_or(CsrfField {
            csrf: String::new(),
        });
        user.check_csrf(&csrf.csrf)?;
        let form = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| WebError::BadRequest(format!("form: {e}")))?;
        Ok(Post { user, form })
    }
}
