//! The admin web UI and API, served by `modobox run` (and `modobox web`) on a loopback address
//! behind nginx's TLS. Pages are rendered on the server from `templates/web` with the assets
//! of `assets/` embedded in the binary: nothing is loaded from elsewhere.

pub mod api;
pub mod client_setup;
pub mod login;
pub mod pages;
pub mod session;
pub mod throttle;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use include_dir::{include_dir, Dir};

use crate::config::Config;
use crate::distro::Distro;
use crate::store::{Store, StoreError};

static TEMPLATES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/templates/web");
static ASSETS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/assets");

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct Web(Arc<Inner>);

#[derive(Debug)]
pub struct Inner {
    pub store: Store,
    pub config: Config,
    pub distro: Distro,
    pub tera: tera::Tera,
    pub throttle: Mutex<throttle::Throttle>,
    /// Cookies marked Secure: always behind nginx; `modobox web` on plain HTTP for tests says
    /// otherwise.
    pub secure_cookies: bool,
    /// The status the supervisor publishes (`health::published::SNAPSHOT`).
    pub status_file: std::path::PathBuf,
    /// The supervisor's profile signer (`keys::mobileconfig::SOCKET`).
    pub profile_socket: std::path::PathBuf,
}

impl std::ops::Deref for Web {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Web {
    /// Reads the supervisor's status from another file (tests).
    pub fn with_status_file(mut self, path: std::path::PathBuf) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.0) {
            inner.status_file = path;
        }
        self
    }

    /// Asks another profile signer (tests).
    pub fn with_profile_socket(mut self, path: std::path::PathBuf) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.0) {
            inner.profile_socket = path;
        }
        self
    }

    pub fn new(
        store: Store,
        config: Config,
        distro: Distro,
        secure_cookies: bool,
    ) -> Result<Self, ServeError> {
        let mut tera = tera::Tera::default();
        let mut files = Vec::new();
        for f in TEMPLATES.files() {
            let name = f.path().display().to_string();
            let Some(text) = f.contents_utf8() else {
                return Err(ServeError::NotUtf8 { name });
            };
            files.push((name, text));
        }
        tera.add_raw_templates(files)
            .map_err(ServeError::Templates)?;
        tera.autoescape_on(vec![".html"]);
        tera.register_filter("path", path_filter);
        Ok(Web(Arc::new(Inner {
            store,
            config,
            distro,
            tera,
            throttle: Mutex::new(throttle::Throttle::default()),
            secure_cookies,
            status_file: crate::health::published::SNAPSHOT.into(),
            profile_socket: crate::keys::mobileconfig::SOCKET.into(),
        })))
    }

    pub fn render(&self, name: &str, ctx: &tera::Context) -> Result<Html<String>, WebError> {
        self.tera.render(name, ctx).map(Html).map_err(|e| {
            let mut m = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                m.push_str(": ");
                m.push_str(&s.to_string());
                src = s.source();
            }
            WebError::Internal(format!("template {name}: {m}"))
        })
    }
}

/// Why the web UI could not start, or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("templates/web/{name}: not UTF-8")]
    NotUtf8 { name: String },
    /// A template does not parse (tera's Debug names the template and the line).
    #[error("templates/web: {0:?}")]
    Templates(#[source] tera::Error),
    #[error(
        "web.listen = {listen}: must be a loopback address (nginx serves HTTPS in front of it)"
    )]
    NotLoopback { listen: SocketAddr },
    #[error("web: cannot listen on {listen}: {source}")]
    Listen {
        listen: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("web: {0}")]
    Serve(#[source] std::io::Error),
}

/// Everything a handler can fail with, and how the browser sees it.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("log in first")]
    LoginNeeded(String),
    #[error("the form has expired or did not come from this site (CSRF token missing or wrong): reload the page and try again")]
    Csrf,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("too many failed logins: try again in {0} minutes")]
    Throttled(u64),
    #[error("internal error: {0}")]
    Internal(String),
    /// An upgrade is running: changes wait (mail keeps flowing).
    #[error("{0}; try again in a minute")]
    Maintenance(String),
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => WebError::NotFound(e.to_string()),
            StoreError::Forbidden(_) => WebError::Forbidden(e.to_string()),
            StoreError::Refused { .. }
            | StoreError::Exists { .. }
            | StoreError::Invalid(_)
            | StoreError::Password(_) => WebError::BadRequest(e.to_string()),
            other => WebError::Internal(other.to_string()),
        }
    }
}

impl WebError {
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::LoginNeeded(_) => StatusCode::SEE_OTHER,
            WebError::Csrf | WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            WebError::Maintenance(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if let WebError::LoginNeeded(next) = &self {
            let to = format!(
                "/login?next={}",
                percent_encoding::utf8_percent_encode(next, percent_encoding::NON_ALPHANUMERIC)
            );
            return Redirect::to(&to).into_response();
        }
        let status = self.status();
        let message = match &self {
            WebError::Internal(detail) => {
                // The detail goes to the log, not to the browser.
                tracing::error!("web: {detail}");
                "internal error (the details are in modobox's log)".to_string()
            }
            other => other.to_string(),
        };
        let body = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{code}</title>\
             <link rel=\"stylesheet\" href=\"/assets/modobox.css\"></head><body><main class=\"narrow\">\
             <h1>{code}</h1><p class=\"error\">{}</p><p><a href=\"/\">Back</a></p></main></body></html>",
            escape(&message),
            code = status
        );
        (status, Html(body)).into_response()
    }
}

/// `{{ name | path }}`: a value made safe as one URL path segment (an address's `+`, `/`...).
fn path_filter(
    value: &tera::Value,
    _: &std::collections::HashMap<String, tera::Value>,
) -> tera::Result<tera::Value> {
    let text = match value {
        tera::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Ok(tera::Value::String(path_segment(&text)))
}

/// Percent-encodes everything but unreserved characters and `@` (readable addresses).
pub fn path_segment(text: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~')
        .remove(b'@');
    percent_encoding::utf8_percent_encode(text, SET).to_string()
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The client's address: nginx's X-Forwarded-For when the peer is loopback (nginx), the peer
/// otherwise.
#[derive(Debug, Clone)]
pub struct Client(pub String);

impl FromRequestParts<Web> for Client {
    type Rejection = WebError;
    async fn from_request_parts(parts: &mut Parts, _: &Web) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let forwarded = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(|v| v.trim().to_string())
            .filter(|v| v.parse::<std::net::IpAddr>().is_ok());
        Ok(Client(match (peer, forwarded) {
            (Some(p), Some(f)) if p.is_loopback() => f,
            (Some(p), _) => p.to_string(),
            (None, _) => "unknown".into(),
        }))
    }
}

async fn asset(Path(path): Path<String>) -> Response {
    let Some(file) = ASSETS.get_file(&path) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let kind = match path.rsplit('.').next() {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        file.contents(),
    )
        .into_response()
}

/// Headers every answer carries: no framing, no sniffing, no referrer, nothing but our own
/// resources.
async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// The largest request body the UI and API read (forms and JSON); nginx stops larger ones first.
pub const MAX_BODY_BYTES: usize = crate::config::WEB_MAX_BODY_BYTES;

pub fn router(web: Web) -> Router {
    Router::new()
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", axum::routing::post(login::logout))
        .route(
            "/account/password",
            get(login::password_form).post(login::password_submit),
        )
        .route("/account/token", axum::routing::post(login::token_submit))
        .route("/", get(pages::dashboard))
        .merge(pages::routes())
        .nest("/api/v1", api::routes())
        .merge(client_setup::routes())
        .route("/assets/{*path}", get(asset))
        .fallback(|| async { WebError::NotFound("no such page".into()) })
        .layer(axum::middleware::from_fn_with_state(
            web.clone(),
            writes_wait_for_upgrades,
        ))
        .layer(axum::middleware::map_response(security_headers))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(web)
}

/// While an upgrade runs (`system::maintenance`), every request that could change something
/// answers 503 with the upgrade's message; pages still show.
async fn writes_wait_for_upgrades(
    State(web): State<Web>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let reads = matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    if !reads {
        if let Some(message) = crate::system::maintenance::active(web.config.paths.data.as_path()) {
            let e = WebError::Maintenance(message);
            if req.uri().path().starts_with("/api/") {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, "60")],
                    axum::Json(serde_json::json!({ "detail": e.to_string() })),
                )
                    .into_response();
            }
            return e.into_response();
        }
    }
    next.run(req).await
}

/// Serves until `shutdown` resolves. Refuses a non-loopback address unless `public` (only
/// `modobox web` may ask for that).
pub async fn serve(
    web: Web,
    listen: SocketAddr,
    public: bool,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    if !public && !listen.ip().is_loopback() {
        return Err(ServeError::NotLoopback { listen });
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ServeError::Listen { listen, source })?;
    tracing::info!("web UI and API on http://{listen}");
    serve_on(web, listener, shutdown).await
}

/// Serves on a bound listener (tests bind port 0).
pub async fn serve_on(
    web: Web,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    axum::serve(
        listener,
        router(web).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(ServeError::Serve)
}
