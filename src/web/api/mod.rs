//! The REST API v1, compatible with Modoboa's (`/api/v1/`, `Authorization: Token <key>`, JSON):
//! token authentication (no cookies, so no CSRF), errors in Django REST framework's shape,
//! page-number pagination, and the route table the OpenAPI document is checked against. The
//! store decides who sees and changes what (`Actor`); handlers only translate.

/// The PUT (every field) and PATCH (the fields sent) handlers of one resource: both call
/// `$update(web, user, id, body, partial)`. Defined before the resource modules that use it.
macro_rules! put_and_patch {
    ($put:ident, $patch:ident, $update:ident) => {
        async fn $put(
            axum::extract::State(web): axum::extract::State<$crate::web::Web>,
            user: $crate::web::api::ApiUser,
            axum::extract::Path(id): axum::extract::Path<String>,
            $crate::web::api::JsonBody(body): $crate::web::api::JsonBody,
        ) -> $crate::web::api::ApiResult {
            $update(web, user, id, body, false).await
        }

        async fn $patch(
            axum::extract::State(web): axum::extract::State<$crate::web::Web>,
            user: $crate::web::api::ApiUser,
            axum::extract::Path(id): axum::extract::Path<String>,
            $crate::web::api::JsonBody(body): $crate::web::api::JsonBody,
        ) -> $crate::web::api::ApiResult {
            $update(web, user, id, body, true).await
        }
    };
}

pub mod accounts;
pub mod aliases;
pub mod domains;
pub mod openapi;
pub mod resources;

use std::collections::BTreeMap;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use super::Web;
use crate::store::access::{Actor, Role};
use crate::store::{accounts as store_accounts, tokens, StoreError, Tx};

/// Largest JSON body accepted.
const MAX_BODY: usize = super::MAX_BODY_BYTES;
pub const DEFAULT_PAGE_SIZE: i64 = 50;
pub const MAX_PAGE_SIZE: i64 = 1000;

/// What a request can fail with, answered as DRF does: `{"detail": "..."}`, or for invalid
/// input `{"field": ["message naming the rule"]}` with 400.
#[derive(Debug)]
pub enum ApiError {
    Unauthenticated(&'static str),
    Forbidden(String),
    NotFound,
    Invalid(BTreeMap<String, Vec<String>>),
    Detail(StatusCode, String),
    Internal(String),
}

impl ApiError {
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        ApiError::Invalid(BTreeMap::from([(field.to_string(), vec![message.into()])]))
    }

    /// A store error met while writing: a missing or existing object it refers to is a
    /// mistake in `field`, not a missing resource.
    pub fn on(field: &'static str) -> impl Fn(StoreError) -> ApiError {
        move |e| match e {
            StoreError::NotFound { .. } | StoreError::Exists { .. } => {
                ApiError::field(field, e.to_string())
            }
            other => other.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => ApiError::NotFound,
            StoreError::Forbidden(m) => ApiError::Forbidden(format!("permission denied: {m}")),
            StoreError::Invalid(n) => ApiError::field(&n.field, n.to_string()),
            StoreError::Refused { field, rule } => ApiError::field(&field, rule),
            StoreError::Exists { .. } => ApiError::field("non_field_errors", e.to_string()),
            StoreError::Password(p) => ApiError::field("password", p.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<crate::web::WebError> for ApiError {
    fn from(e: crate::web::WebError) -> Self {
        match e {
            crate::web::WebError::Throttled(minutes) => ApiError::Detail(
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many attempts: try again in {minutes} minute(s)"),
            ),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<crate::names::NameError> for ApiError {
    fn from(e: crate::names::NameError) -> Self {
        ApiError::field(&e.field, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            ApiError::Unauthenticated(m) => (StatusCode::UNAUTHORIZED, json!({ "detail": m })),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, json!({ "detail": m })),
            ApiError::NotFound => (StatusCode::NOT_FOUND, json!({ "detail": "Not found." })),
            ApiError::Invalid(errors) => (StatusCode::BAD_REQUEST, nested_errors(errors)),
            ApiError::Detail(s, m) => (s, json!({ "detail": m })),
            ApiError::Internal(detail) => {
                // The detail goes to the log, not to the client.
                tracing::error!("api: {detail}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({ "detail": "internal error (the details are in modobox's log)" }),
                )
            }
        };
        let mut res = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Token"));
        }
        res
    }
}

/// Field errors as DRF nests them: `mailbox.quota` → `{"mailbox": {"quota": [...]}}`.
fn nested_errors(errors: BTreeMap<String, Vec<String>>) -> Value {
    let mut root = Map::new();
    for (field, messages) in errors {
        // The store's `recipients[2]` (from 1, for people) is DRF's `recipients.1`.
        let field = match field.split_once('[') {
            Some((name, rest)) => {
                match rest.strip_suffix(']').and_then(|n| n.parse::<usize>().ok()) {
                    Some(n) if n > 0 => format!("{name}.{}", n - 1),
                    _ => field,
                }
            }
            None => field,
        };
        let mut parts: Vec<&str> = field.split('.').collect();
        let last = parts.pop().unwrap_or_default();
        let mut node = &mut root;
        for p in parts {
            let entry = node
                .entry(p.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                // A message on the parent itself too: the nested ones go beside it.
                *entry = json!({ "non_field_errors": entry.clone() });
            }
            let Value::Object(m) = entry else {
                unreachable!("made an object above")
            };
            node = m;
        }
        let list = json!(messages);
        match node.get_mut(last) {
            Some(Value::Object(m)) => {
                m.insert("non_field_errors".into(), list);
            }
            _ => {
                node.insert(last.to_string(), list);
            }
        }
    }
    Value::Object(root)
}

pub type ApiResult = Result<Response, ApiError>;

pub fn ok(value: Value) -> ApiResult {
    Ok(Json(value).into_response())
}

pub fn created(value: Value) -> ApiResult {
    Ok((StatusCode::CREATED, Json(value)).into_response())
}

pub fn no_content() -> ApiResult {
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The user a request's token belongs to.
#[derive(Debug, Clone)]
pub struct ApiUser {
    pub id: i32,
    pub username: String,
    pub role: Role,
}

impl ApiUser {
    pub fn actor(&self) -> Actor {
        Actor::User {
            id: self.id,
            role: self.role,
        }
    }
    pub fn is_super(&self) -> bool {
        self.role == Role::SuperAdmins
    }
    /// Simple users read what concerns them; they change nothing through these endpoints.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.role.is_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "permission denied: simple users cannot do this".into(),
            ))
        }
    }
}

impl FromRequestParts<Web> for ApiUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, web: &Web) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::Unauthenticated(
                "Authentication credentials were not provided.",
            ));
        };
        let text = value.to_str().unwrap_or("");
        let mut words = text.split_whitespace();
        match words.next() {
            Some(scheme) if scheme.eq_ignore_ascii_case("token") => {}
            // Another scheme (Basic, Bearer...) is not ours: as if there were none.
            _ => {
                return Err(ApiError::Unauthenticated(
                    "Authentication credentials were not provided.",
                ))
            }
        }
        let (Some(key), None) = (words.next(), words.next()) else {
            return Err(ApiError::Unauthenticated(
                "Invalid token header: give exactly one key after \"Token\".",
            ));
        };
        let mut tx = web.store.begin().await?;
        let user = tokens::authenticate(&mut tx, key).await?;
        tx.commit().await?;
        let user = user.ok_or(ApiError::Unauthenticated("Invalid token."))?;
        Ok(ApiUser {
            id: user.id,
            username: user.username,
            role: user.role,
        })
    }
}

/// A JSON object body.
#[derive(Debug)]
pub struct JsonBody(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;
    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("");
            if !ct
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
            {
                return Err(ApiError::Detail(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!("Unsupported media type \"{ct}\" in request: send application/json."),
                ));
            }
        }
        let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY)
            .await
            .map_err(|_| {
                ApiError::Detail(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the body is too large (1 MiB at most)".into(),
                )
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBody(Map::new()));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(m)) => Ok(JsonBody(m)),
            Ok(other) => Err(ApiError::field(
                "non_field_errors",
                format!(
                    "Invalid data. Expected a JSON object, but got {}.",
                    type_name(&other)
                ),
            )),
            Err(e) => Err(ApiError::Detail(
                StatusCode::BAD_REQUEST,
                format!("JSON parse error - {e}"),
            )),
        }
    }
}

/// `size2integer` of Modoboa (MB out), strict: digits, optional spaces, an optional unit
/// whose first letter is K, M or G.
pub fn parse_size_mb(text: &str) -> Option<i32> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if digits_end == 0 {
        return None;
    }
    let n: i64 = text[..digits_end].parse().ok()?;
    let unit = text[digits_end..].trim_start();
    if !unit.chars().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    let mb = match unit.chars().next().map(|c| c.to_ascii_uppercase()) {
        None | Some('M') => n,
        Some('K') => n / 1024,
        Some('G') => n.checked_mul(1024)?,
        Some(_) => return None,
    };
    i32::try_from(mb).ok()
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Reads the fields of a body, collecting every error so that one answer names them all.
/// `partial` (PATCH) makes every field optional.
#[derive(Debug)]
pub struct Fields {
    map: Map<String, Value>,
    partial: bool,
    errors: BTreeMap<String, Vec<String>>,
}

impl Fields {
    pub fn new(map: Map<String, Value>, partial: bool) -> Self {
        Fields {
            map,
            partial,
            errors: BTreeMap::new(),
        }
    }

    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors
            .entry(field.to_string())
            .or_default()
            .push(message.into());
    }

    pub fn has(&self, field: &str) -> bool {
        self.map.contains_key(field)
    }

    /// A field's value, left in place.
    pub fn peek(&self, field: &str) -> Option<&Value> {
        self.map.get(field)
    }

    fn take(&mut self, field: &str, required: bool) -> Option<Value> {
        match self.map.remove(field) {
            Some(v) => Some(v),
            None => {
                if required && !self.partial {
                    self.error(field, "This field is required.");
                }
                None
            }
        }
    }

    /// A string; a number is taken as its text (as DRF's CharField does).
    pub fn string(&mut self, field: &str, required: bool) -> Option<String> {
        match self.take(field, required)? {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            Value::Null => {
                self.error(field, "This field may not be null: give a string.");
                None
            }
            _ => {
                self.error(field, "must be a string");
                None
            }
        }
    }

    /// true or false; also the numbers 1 and 0 and the words DRF's BooleanField takes
    /// ("true", "yes", "on", "1"...), as form-minded clients send them.
    pub fn boolean(&mut self, field: &str, required: bool) -> Option<bool> {
        match self.take(field, required)? {
            Value::Bool(b) => Some(b),
            Value::Number(n) if n.as_i64() == Some(1) => Some(true),
            Value::Number(n) if n.as_i64() == Some(0) => Some(false),
            Value::String(t)
                if ["true", "t", "yes", "y", "on", "1"].contains(&t.to_lowercase().as_str()) =>
            {
                Some(true)
            }
            Value::String(t)
                if ["false", "f", "no", "n", "off", "0"].contains(&t.to_lowercase().as_str()) =>
            {
                Some(false)
            }
            _ => {
                self.error(field, "must be true or false");
                None
            }
        }
    }

    fn int_of(&mut self, field: &str, v: &Value) -> Option<i32> {
        let n = match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        match n.and_then(|n| i32::try_from(n).ok()) {
            Some(n) => Some(n),
            None => {
                self.error(
                    field,
                    "must be a whole number between -2147483648 and 2147483647",
                );
                None
            }
        }
    }

    pub fn int(&mut self, field: &str, required: bool) -> Option<i32> {
        let v = self.take(field, required)?;
        self.int_of(field, &v)
    }

    /// A size in MB as Modoboa 2.x takes it: a whole number, or one with a unit whose first
    /// letter is K, M or G (binary: "1G" = 1024, "2048K" = 2). Anything else (a fraction, a
    /// negative, another unit) is refused, where Modoboa would silently store 0 (unlimited).
    pub fn size_mb(&mut self, field: &str, required: bool) -> Option<i32> {
        let v = self.take(field, required)?;
        let text = match &v {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.trim().to_string(),
            _ => String::new(),
        };
        match parse_size_mb(&text) {
            Some(n) => Some(n),
            None => {
                self.error(
                    field,
                    "must be a size in MB: a whole number, or one with the unit K, M or G (1G = 1024 MB), e.g. 500, \"500M\", \"2G\"",
                );
                None
            }
        }
    }

    /// An integer or null; None when absent.
    pub fn nullable_int(&mut self, field: &str) -> Option<Option<i32>> {
        match self.take(field, false)? {
            Value::Null => Some(None),
            v => self.int_of(field, &v).map(Some),
        }
    }

    /// A string or null; None when absent.
    pub fn nullable_string(&mut self, field: &str) -> Option<Option<String>> {
        match self.take(field, false)? {
            Value::Null => Some(None),
            Value::String(s) => Some(Some(s)),
            _ => {
                self.error(field, "must be a string or null");
                None
            }
        }
    }

    pub fn string_list(&mut self, field: &str, required: bool) -> Option<Vec<String>> {
        match self.take(field, required)? {
            Value::Array(items) => {
                let mut out = Vec::new();
                for i in items {
                    match i {
                        Value::String(s) => out.push(s),
                        _ => {
                            self.error(field, "must be a list of strings");
                            return None;
                        }
                    }
                }
                Some(out)
            }
            _ => {
                self.error(field, "must be a list of strings");
                None
            }
        }
    }

    /// A nested object or null; None when absent.
    pub fn object(&mut self, field: &str, required: bool) -> Option<Option<Map<String, Value>>> {
        match self.take(field, required)? {
            Value::Null => Some(None),
            Value::Object(m) => Some(Some(m)),
            _ => {
                self.error(field, "must be an object or null");
                None
            }
        }
    }

    /// Errors of a nested object's reader, reported as `parent.field`.
    pub fn absorb(&mut self, parent: &str, inner: Fields) {
        for (k, v) in inner.errors {
            self.errors
                .entry(format!("{parent}.{k}"))
                .or_default()
                .extend(v);
        }
    }

    /// The errors so far, taken out (to report them under another name).
    pub fn take_errors(&mut self) -> BTreeMap<String, Vec<String>> {
        std::mem::take(&mut self.errors)
    }

    pub fn is_partial(&self) -> bool {
        self.partial
    }

    /// Ok when every field read was valid.
    pub fn finish(&mut self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Invalid(std::mem::take(&mut self.errors)))
        }
    }
}

/// The query string as name → value (the last one wins, as in Django's `QueryDict.get`).
#[derive(Debug, Default)]
pub struct Query(pub BTreeMap<String, String>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
            .map_err(|e| ApiError::Detail(StatusCode::BAD_REQUEST, format!("query: {e}")))?;
        if let Some((name, _)) = pairs.iter().find(|(_, v)| v.chars().any(char::is_control)) {
            return Err(ApiError::Detail(
                StatusCode::BAD_REQUEST,
                format!("{name}: must not contain control characters"),
            ));
        }
        Ok(Query(pairs.into_iter().collect()))
    }
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Query::parse(parts.uri.query())
    }
}

/// `?page=` / `?page_size=`: without either, the whole list as a plain array (what
/// Modoboa's v1 API answers); with one, a page in DRF's `{count, next, previous, results}`.
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    pub page: i64,
    pub size: i64,
    pub paged: bool,
}

impl Paging {
    pub fn from(q: &Query) -> Result<Self, ApiError> {
        let page = q.get("page");
        let size = q.get("page_size");
        let paged = page.is_some() || size.is_some();
        let page = match page {
            None => 1,
            Some(p) => match p.parse::<i64>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    return Err(ApiError::Detail(
                        StatusCode::NOT_FOUND,
                        "Invalid page.".into(),
                    ))
                }
            },
        };
        let size = match size {
            None => DEFAULT_PAGE_SIZE,
            Some(s) => match s.parse::<i64>() {
                Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
                _ => {
                    return Err(ApiError::field(
                        "page_size",
                        format!("must be a whole number between 1 and {MAX_PAGE_SIZE}"),
                    ))
                }
            },
        };
        if page.checked_mul(size).is_none() {
            return Err(ApiError::Detail(
                StatusCode::NOT_FOUND,
                "Invalid page.".into(),
            ));
        }
        Ok(Paging { page, size, paged })
    }

    /// LIMIT and OFFSET for the store (no limit when not paged).
    pub fn window(&self) -> (Option<i64>, i64) {
        if self.paged {
            (Some(self.size), (self.page - 1) * self.size)
        } else {
            (None, 0)
        }
    }

    /// The answer for one page of `total` items.
    pub fn respond(&self, path: &str, q: &Query, total: i64, items: Vec<Value>) -> ApiResult {
        if !self.paged {
            return ok(Value::Array(items));
        }
        let last = ((total + self.size - 1) / self.size).max(1);
        if self.page > last {
            return Err(ApiError::Detail(
                StatusCode::NOT_FOUND,
                "Invalid page.".into(),
            ));
        }
        let link = |page: i64| {
            let mut params = q.0.clone();
            params.insert("page".into(), page.to_string());
            let qs = serde_urlencoded::to_string(&params).unwrap_or_default();
            Value::String(format!("/api/v1{path}?{qs}"))
        };
        ok(json!({
            "count": total,
            "next": if self.page < last { link(self.page + 1) } else { Value::Null },
            "previous": if self.page > 1 { link(self.page - 1) } else { Value::Null },
            "results": items,
        }))
    }

    /// The same over a list already in memory (the smaller collections).
    pub fn respond_all(&self, path: &str, q: &Query, items: Vec<Value>) -> ApiResult {
        let total = items.len() as i64;
        let (limit, offset) = self.window();
        let items = match limit {
            Some(l) => items
                .into_iter()
                .skip(usize::try_from(offset).unwrap_or(usize::MAX))
                .take(usize::try_from(l).unwrap_or(usize::MAX))
                .collect(),
            None => items,
        };
        self.respond(path, q, total, items)
    }
}

/// Whole percent of `of` that `part` is, 0 when `of` is 0 (unlimited), as Modoboa computes
/// its quota percentages.
pub fn percent(part: i64, of: i64) -> i64 {
    if of <= 0 {
        return 0;
    }
    part.max(0) * 100 / of
}

/// A `{pk}` path segment; anything but a number is no object (404, as DRF answers).
pub fn pk(text: &str) -> Result<i32, ApiError> {
    text.parse::<i32>().map_err(|_| ApiError::NotFound)
}

pub async fn begin(web: &Web) -> Result<Tx, ApiError> {
    Ok(web.store.begin().await?)
}

pub fn store_options(web: &Web) -> store_accounts::Options {
    store_accounts::Options {
        mail_root: web.config.paths.mail_root.as_path().to_path_buf(),
        handle_mailboxes_on_filesystem: web.config.mail.handle_mailboxes_on_filesystem,
    }
}

/// One route: its path under `/api/v1`, the methods it answers (what the OpenAPI document
/// must list) and the handlers.
#[derive(Debug)]
pub struct Route {
    pub path: &'static str,
    pub methods: &'static [&'static str],
    handler: MethodRouter<Web>,
}

fn table() -> Vec<Route> {
    let mut t = vec![Route {
        path: "/openapi.json",
        methods: &["GET"],
        handler: get(openapi::serve),
    }];
    t.extend(domains::routes());
    t.extend(accounts::routes());
    t.extend(aliases::routes());
    t.extend(resources::routes());
    t
}

/// Every route and its methods, for the OpenAPI document and its test.
pub fn route_list() -> Vec<(&'static str, &'static [&'static str])> {
    table().iter().map(|r| (r.path, r.methods)).collect()
}

impl Route {
    pub fn new(
        path: &'static str,
        methods: &'static [&'static str],
        handler: MethodRouter<Web>,
    ) -> Self {
        Route {
            path,
            methods,
            handler,
        }
    }
}

pub fn routes() -> Router<Web> {
    table()
        .into_iter()
        .fold(Router::new(), |r, route| r.route(route.path, route.handler))
        .fallback(|| async { ApiError::NotFound })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_modoboa_2_reads_them_and_nonsense_is_refused() {
        for (text, mb) in [
            ("10", Some(10)),
            ("1G", Some(1024)),
            ("1 g", Some(1024)),
            ("1GiB", Some(1024)),
            ("500M", Some(500)),
            ("500MB", Some(500)),
            ("2048K", Some(2)),
            ("100k", Some(0)),
            ("0", Some(0)),
            ("1.5G", None),
            ("-5", None),
            ("10T", None),
            ("G", None),
            ("", None),
            ("12 34", None),
            ("10MB!", None),
            ("3000000G", None),
        ] {
            assert_eq!(parse_size_mb(text), mb, "{text:?}");
        }
    }

    #[test]
    fn field_errors_nest_as_drf_nests_them() {
        let errors = BTreeMap::from([
            ("mailbox.quota".to_string(), vec!["required".to_string()]),
            ("mailbox".to_string(), vec!["no mailbox".to_string()]),
            ("name".to_string(), vec!["taken".to_string()]),
            ("transport._settings".to_string(), vec!["a: b".to_string()]),
            ("recipients[2]".to_string(), vec!["unknown".to_string()]),
        ]);
        assert_eq!(
            nested_errors(errors),
            json!({
                "mailbox": { "quota": ["required"], "non_field_errors": ["no mailbox"] },
                "name": ["taken"],
                "transport": { "_settings": ["a: b"] },
                "recipients": { "1": ["unknown"] },
            })
        );
    }
}
