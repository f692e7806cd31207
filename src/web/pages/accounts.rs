//! Accounts: mailboxes with their quota use, admins and resellers with their domains and
//! limits; create, edit, password reset, delete.

use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::domains::Nothing;
use super::{
    base, checked, confirm_delete, form_errors, int_field, one_error, page_number, pager,
    past_the_end, refused, require_admin, see_other, store_options, Deletion, Errors, Usage,
    PAGE_SIZE,
};
use crate::names::{DomainName, Username};
use crate::store::access::{self, Role};
use crate::store::accounts::{self, Account, AccountPatch, AccountSpec, ListFilter, Password};
use crate::store::{Page, StoreError};
use crate::web::session::{Post, User};
use crate::web::{path_segment, Web, WebError};

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    domain: String,
    page: Option<String>,
}

#[derive(Debug, Serialize)]
struct Row {
    account: Account,
    usage: Option<Usage>,
}

pub async fn list(
    State(web): State<Web>,
    user: User,
    Query(q): Query<ListQuery>,
) -> Result<Html<String>, WebError> {
    require_admin(&user)?;
    let role = q.role.parse::<Role>().ok();
    let filter = ListFilter {
        domain: Some(q.domain.as_str()).filter(|d| !d.is_empty()),
        search: Some(q.q.as_str()).filter(|s| !s.trim().is_empty()),
        role,
        ..ListFilter::default()
    };
    let page = page_number(&q.page);
    let mut tx = web.store.begin().await?;
    // Filtered, counted and cut in SQL (the API's query): a page costs the same with 100,000
    // accounts as with 100.
    let offset = |page: i64| (page - 1) * PAGE_SIZE;
    let Page {
        items: mut found,
        total,
    } = accounts::list_page(
        &mut tx,
        user.actor(),
        &filter,
        Some(PAGE_SIZE),
        offset(page),
    )
    .await?;
    if let Some(last) = past_the_end(page, total) {
        found = accounts::list_page(
            &mut tx,
            user.actor(),
            &filter,
            Some(PAGE_SIZE),
            offset(last),
        )
        .await?
        .items;
    }
    tx.commit().await?;
    let p = pager(
        total,
        page,
        "/accounts",
        &[
            ("q", &q.q),
            ("role", role.map_or("", |r| r.as_str())),
            ("domain", &q.domain),
        ],
    );
    let rows: Vec<Row> = found
        .into_iter()
        .map(|a| Row {
            usage: a.mailbox.as_ref().map(Usage::of),
            account: a,
        })
        .collect();
    let mut ctx = base(&web, &user, "accounts");
    ctx.insert("rows", &rows);
    ctx.insert("q", &q.q);
    ctx.insert("role_filter", role.map_or("", |r| r.as_str()));
    ctx.insert("domain", &q.domain);
    ctx.insert("roles", &Role::ALL.map(|r| r.as_str()));
    ctx.insert("pager", &p);
    web.render("accounts.html", &ctx)
}

/// The roles this user may give (the store refuses others anyway).
fn creatable_roles(user: &User) -> Vec<&'static str> {
    match user.role {
        Role::SuperAdmins => Role::ALL.iter().map(|r| r.as_str()).collect(),
        Role::Resellers => vec!["SimpleUsers", "DomainAdmins"],
        Role::DomainAdmins => vec!["SimpleUsers"],
        Role::SimpleUsers => vec![],
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct AccountForm {
    #[serde(default)]
    username: String,
    #[serde(default, skip_serializing)]
    password: String,
    #[serde(default, skip_serializing)]
    confirm: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    #[serde(default)]
    role: String,
    enabled: Option<String>,
    mailbox: Option<String>,
    #[serde(default)]
    quota: String,
    #[serde(default)]
    domains: String,
}

const ACCOUNT_FIELDS: &[&str] = &[
    "username",
    "password",
    "first_name",
    "last_name",
    "role",
    "quota",
    "domains",
];

fn form_page(
    web: &Web,
    user: &User,
    form: &AccountForm,
    editing: Option<&Account>,
    errors: &Errors,
) -> tera::Context {
    let mut ctx = base(web, user, "accounts");
    ctx.insert("form", form);
    ctx.insert("editing", &editing);
    ctx.insert("errors", errors);
    let options: Vec<(&str, &str)> = creatable_roles(user).into_iter().map(|r| (r, r)).collect();
    ctx.insert("role_options", &options);
    ctx
}

pub async fn new_form(State(web): State<Web>, user: User) -> Result<Html<String>, WebError> {
    require_admin(&user)?;
    let form = AccountForm {
        role: "SimpleUsers".into(),
        enabled: Some("on".into()),
        mailbox: Some("on".into()),
        ..Default::default()
    };
    web.render(
        "account_form.html",
        &form_page(&web, &user, &form, None, &Errors::new()),
    )
}

fn parse_domains(text: &str) -> Result<Vec<DomainName>, Errors> {
    text.split([',', ' ', '\n', '\r', '\t'])
        .filter(|s| !s.is_empty())
        .map(|s| DomainName::parse("domains", s).map_err(|e| one_error("domains", e.to_string())))
        .collect()
}

/// The username typed in the form, refused as the store would refuse it.
fn parse_username(text: &str) -> Result<Username, Errors> {
    Username::parse(text).map_err(|e| one_error("username", StoreError::from(e).to_string()))
}

fn check_confirm(form: &AccountForm) -> Result<(), Errors> {
    if form.password != form.confirm {
        return Err(one_error("password", "password: the two entries differ"));
    }
    Ok(())
}

pub async fn create(State(web): State<Web>, post: Post<AccountForm>) -> Result<Response, WebError> {
    let (user, form) = (post.user, post.form);
    require_admin(&user)?;
    let again = |errors: Errors| {
        refused(
            &web,
            "account_form.html",
            &form_page(&web, &user, &form, None, &errors),
        )
    };
    let parsed = (|| {
        check_confirm(&form)?;
        let role = form
            .role
            .parse::<Role>()
            .map_err(|e| one_error("role", e.to_string()))?;
        let quota = int_field("quota", &form.quota)?;
        let domains = parse_domains(&form.domains)?;
        Ok::<_, Errors>(AccountSpec {
            username: parse_username(&form.username)?,
            password: Password::Clear(form.password.clone()),
            first_name: form.first_name.trim().to_string(),
            last_name: form.last_name.trim().to_string(),
            enabled: checked(&form.enabled),
            role,
            mailbox: checked(&form.mailbox).then_some(quota),
            mailbox_address: None,
            domains,
            profile: Default::default(),
            mailbox_settings: Default::default(),
        })
    })();
    let spec = match parsed {
        Ok(s) => s,
        Err(errors) => return again(errors),
    };
    let mut tx = web.store.begin().await?;
    let result = async {
        let policy = accounts::hash_policy(&mut tx).await?;
        accounts::create(&mut tx, user.actor(), &spec, policy).await
    }
    .await;
    match result {
        Ok(a) => {
            tx.commit().await?;
            Ok(see_other(&format!(
                "/accounts/{}",
                path_segment(&a.username)
            )))
        }
        Err(e) => {
            drop(tx);
            again(form_errors(e, ACCOUNT_FIELDS, "username")?)
        }
    }
}

pub async fn show(
    State(web): State<Web>,
    user: User,
    Path(username): Path<String>,
) -> Result<Html<String>, WebError> {
    require_admin(&user)?;
    let mut tx = web.store.begin().await?;
    let username = Username::existing(&username);
    let a = accounts::get(&mut tx, user.actor(), &username).await?;
    let limits = if matches!(a.role, Role::Resellers | Role::DomainAdmins) {
        accounts::limits(&mut tx, user.actor(), &username).await?
    } else {
        Vec::new()
    };
    tx.commit().await?;
    show_page(&web, &user, &a, &limits, &Errors::new())
}

fn show_page(
    web: &Web,
    user: &User,
    a: &Account,
    limits: &[(String, i32)],
    errors: &Errors,
) -> Result<Html<String>, WebError> {
    let mut ctx = base(web, user, "accounts");
    ctx.insert("account", a);
    ctx.insert("usage", &a.mailbox.as_ref().map(Usage::of));
    ctx.insert("limits", limits);
    ctx.insert("errors", errors);
    // Who may grant domains and set limits (the store checks again).
    let admin_target = matches!(a.role, Role::Resellers | Role::DomainAdmins);
    ctx.insert(
        "can_grant",
        &(admin_target
            && matches!(user.role, Role::SuperAdmins | Role::Resellers)
            && a.id != user.id),
    );
    ctx.insert(
        "can_limit",
        &(admin_target
            && a.id != user.id
            && (user.role == Role::SuperAdmins
                || (user.role == Role::Resellers && a.role == Role::DomainAdmins))),
    );
    web.render("account.html", &ctx)
}

pub async fn edit_form(
    State(web): State<Web>,
    user: User,
    Path(username): Path<String>,
) -> Result<Html<String>, WebError> {
    require_admin(&user)?;
    let mut tx = web.store.begin().await?;
    let a = accounts::manageable(&mut tx, user.actor(), &Username::existing(&username)).await?;
    tx.commit().await?;
    let form = AccountForm {
        username: a.username.clone(),
        first_name: a.first_name.clone(),
        last_name: a.last_name.clone(),
        role: a.role.as_str().into(),
        enabled: a.is_active.then(|| "on".into()),
        mailbox: a.mailbox.as_ref().map(|_| "on".into()),
        quota: a
            .mailbox
            .as_ref()
            .filter(|m| !m.use_domain_quota)
            .map(|m| m.quota.to_string())
            .unwrap_or_default(),
        ..Default::default()
    };
    web.render(
        "account_form.html",
        &form_page(&web, &user, &form, Some(&a), &Errors::new()),
    )
}

pub async fn update(
    State(web): State<Web>,
    Path(username): Path<String>,
    post: Post<AccountForm>,
) -> Result<Response, WebError> {
    let (user, form) = (post.user, post.form);
    require_admin(&user)?;
    let mut tx = web.store.begin().await?;
    let a = accounts::manageable(&mut tx, user.actor(), &Username::existing(&username)).await?;
    let parsed = (|| {
        let role = form
            .role
            .parse::<Role>()
            .map_err(|e| one_error("role", e.to_string()))?;
        let quota = int_field("quota", &form.quota)?;
        Ok::<_, Errors>(AccountPatch {
            username: Some(parse_username(&form.username)?),
            first_name: Some(form.first_name.trim().to_string()),
            last_name: Some(form.last_name.trim().to_string()),
            enabled: Some(checked(&form.enabled)),
            // Only superadmins change roles: others send the role unchanged.
            role: Some(role),
            quota: Some(quota),
            ..AccountPatch::default()
        })
    })();
    let result = match parsed {
        Ok(patch) => accounts::update(
            &mut tx,
            user.actor(),
            &a.username(),
            &patch,
            &store_options(&web),
        )
        .await
        .map_err(|e| form_errors(e, ACCOUNT_FIELDS, "username")),
        Err(errors) => Err(Ok(errors)),
    };
    match result {
        Ok(updated) => {
            tx.commit().await?;
            Ok(see_other(&format!(
                "/accounts/{}",
                path_segment(&updated.username)
            )))
        }
        Err(errors) => {
            drop(tx);
            let errors = errors?;
            refused(
                &web,
                "account_form.html",
                &form_page(&web, &user, &form, Some(&a), &errors),
            )
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

fn password_page(web: &Web, user: &User, target: &str, errors: &Errors) -> tera::Context {
    let mut ctx = base(web, user, "accounts");
    ctx.insert("target", target);
    ctx.insert("errors", errors);
    ctx
}

pub async fn password_form(
    State(web): State<Web>,
    user: User,
    Path(username): Path<String>,
) -> Result<Html<String>, WebError> {
    require_admin(&user)?;
    let mut tx = web.store.begin().await?;
    let a = accounts::manageable(&mut tx, user.actor(), &Username::existing(&username)).await?;
    tx.commit().await?;
    web.render(
        "account_password.html",
        &password_page(&web, &user, &a.username, &Errors::new()),
    )
}

pub async fn password(
    State(web): State<Web>,
    Path(username): Path<String>,
    post: Post<PasswordForm>,
) -> Result<Response, WebError> {
    let (user, form) = (post.user, post.form);
    require_admin(&user)?;
    let mut tx = web.store.begin().await?;
    let a = accounts::manageable(&mut tx, user.actor(), &Username::existing(&username)).await?;
    let result = if form.password != form.confirm {
        Err(Ok(one_error(
            "password",
            "password: the two entries differ",
        )))
    } else {
        accounts::set_password(
            &mut tx,
            user.actor(),
            &a.username(),
            &Password::Clear(form.password),
        )
        .await
        .map_err(|e| form_errors(e, &["password"], "password"))
    };
    match result {
        Ok(()) => {
            tx.commit().await?;
            Ok(see_other(&format!(
                "/accounts/{}",
                path_segment(&a.username)
            )))
        }
        Err(errors) => {
            drop(tx);
            refused(
                &web,
                "account_password.html",
                &password_page(&web, &user, &a.username, &errors?),
            )
        }
    }
}

pub async fn delete_form(
    State(web): State<Web>,
    user: User,
    Path(username): Path<String>,
) -> Result<Html<String>, WebError> {
    require_admin(&user)?;
    let mut tx = web.store.begin().await?;
    let a = accounts::manageable(&mut tx, user.actor(), &Username::existing(&username)).await?;
    tx.commit().await?;
    let consequence = if a.mailbox.is_some() {
        "Its mailbox is deleted with it (and its directory removed by the next mailbox_operations run)."
    } else {
        "The account can no longer log in."
    };
    confirm_delete(
        &web,
        &user,
        "accounts",
        Deletion {
            kind: "account",
            name: &a.username,
            action: format!("/accounts/{}/delete", path_segment(&a.username)),
            back: format!("/accounts/{}", path_segment(&a.username)),
            consequence: consequence.into(),
        },
    )
}

pub async fn delete(
    State(web): State<Web>,
    Path(username): Path<String>,
    post: Post<Nothing>,
) -> Result<Response, WebError> {
    require_admin(&post.user)?;
    let mut tx = web.store.begin().await?;
    let a =
        accounts::manageable(&mut tx, post.user.actor(), &Username::existing(&username)).await?;
    accounts::delete(
        &mut tx,
        post.user.actor(),
        &a.username(),
        &store_options(&web),
    )
    .await?;
    tx.commit().await?;
    Ok(see_other("/accounts"))
}

#[derive(Debug, Deserialize)]
pub struct DomainField {
    #[serde(default)]
    domain: String,
}

/// Granting and revoking domains is for superadmins and resellers (Modoboa's rule).
fn require_granter(user: &User) -> Result<(), WebError> {
    if matches!(user.role, Role::SuperAdmins | Role::Resellers) {
        Ok(())
    } else {
        Err(WebError::Forbidden(
            "only superadmins and resellers give domains to admins".into(),
        ))
    }
}

async fn show_refused(
    web: &Web,
    user: &User,
    username: &str,
    errors: Errors,
) -> Result<Response, WebError> {
    let mut tx = web.store.begin().await?;
    let username = Username::existing(username);
    let a = accounts::get(&mut tx, user.actor(), &username).await?;
    let limits = if matches!(a.role, Role::Resellers | Role::DomainAdmins) {
        accounts::limits(&mut tx, user.actor(), &username).await?
    } else {
        Vec::new()
    };
    tx.commit().await?;
    let page = show_page(web, user, &a, &limits, &errors)?;
    Ok((axum::http::StatusCode::BAD_REQUEST, page).into_response())
}

async fn change_domain(
    web: Web,
    username: String,
    post: Post<DomainField>,
    grant: bool,
) -> Result<Response, WebError> {
    let (user, form) = (post.user, post.form);
    require_admin(&user)?;
    require_granter(&user)?;
    let mut tx = web.store.begin().await?;
    let a = accounts::manageable(&mut tx, user.actor(), &Username::existing(&username)).await?;
    let result = match DomainName::parse("domain", form.domain.trim()) {
        Ok(d) if grant => accounts::grant_domain(&mut tx, user.actor(), &a.username(), &d).await,
        Ok(d) => accounts::revoke_domain(&mut tx, user.actor(), &a.username(), &d).await,
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => {
            tx.commit().await?;
            Ok(see_other(&format!(
                "/accounts/{}",
                path_segment(&a.username)
            )))
        }
        Err(e) => {
            drop(tx);
            // A domain the actor does not administer reads as missing: say so by the field.
            let errors = match e {
                StoreError::NotFound { .. } => one_error("domain", format!("domain: {e}")),
                other => form_errors(other, &["domain"], "domain")?,
            };
            show_refused(&web, &user, &a.username, errors).await
        }
    }
}

pub async fn grant(
    State(web): State<Web>,
    Path(username): Path<String>,
    post: Post<DomainField>,
) -> Result<Response, WebError> {
    change_domain(web, username, post, true).await
}

pub async fn revoke(
    State(web): State<Web>,
    Path(username): Path<String>,
    post: Post<DomainField>,
) -> Result<Response, WebError> {
    change_domain(web, username, post, false).await
}

/// Every limit of the form: `domains=5&mailboxes=-1...`; all or none are written.
pub async fn limits(
    State(web): State<Web>,
    Path(username): Path<String>,
    post: Post<std::collections::BTreeMap<String, String>>,
) -> Result<Response, WebError> {
    let (user, form) = (post.user, post.form);
    require_admin(&user)?;
    let mut tx = web.store.begin().await?;
    let a = accounts::manageable(&mut tx, user.actor(), &Username::existing(&username)).await?;
    let mut result: Result<(), Result<Errors, WebError>> = Ok(());
    for name in access::LIMIT_NAMES {
        let Some(raw) = form.get(name) else { continue };
        let value = match int_field(name, raw) {
            Ok(Some(v)) => v,
            Ok(None) => -1,
            Err(errors) => {
                result = Err(Ok(errors));
                break;
            }
        };
        if let Err(e) = accounts::set_limit(&mut tx, user.actor(), &a.username(), name, value).await
        {
            result = Err(form_errors(e, &access::LIMIT_NAMES, "limit"));
            break;
        }
    }
    match result {
        Ok(()) => {
            tx.commit().await?;
            Ok(see_other(&format!(
                "/accounts/{}",
                path_segment(&a.username)
            )))
        }
        Err(errors) => {
            drop(tx);
            show_refused(&web, &user, &a.username, errors?).await
        }
    }
}

/// The Apple profile of the account's mailbox (`.mobileconfig`), without its password.
pub async fn mobileconfig(
    State(web): State<Web>,
    user: User,
    Path(username): Path<String>,
) -> Result<Response, WebError> {
    require_admin(&user)?;
    mobileconfig_of(&web, &user, &username, None).await
}

#[derive(Debug, Deserialize)]
pub struct ProfileForm {
    #[serde(default)]
    password: String,
}

/// The same profile with the password typed in: checked against the account's own first, so a
/// typing mistake never ends up on a phone.
pub async fn mobileconfig_with_password(
    State(web): State<Web>,
    Path(username): Path<String>,
    client: crate::web::Client,
    post: Post<ProfileForm>,
) -> Result<Response, WebError> {
    let (user, form) = (post.user, post.form);
    require_admin(&user)?;
    let mut tx = web.store.begin().await?;
    let stored =
        accounts::stored_password(&mut tx, user.actor(), &Username::existing(&username)).await?;
    tx.commit().await?;
    // A password check like a login: the same limits against guessing (per client and account).
    let attempt = crate::web::login::reserve_attempt(&web, &client, &username).await?;
    if form.password.is_empty()
        || !crate::password::verify_bounded(stored, form.password.clone()).await
    {
        let line = format!("Wrong password for {username}'s Apple profile");
        crate::web::login::audit_auth(&web, &client, "WARNING", &line).await?;
        return show_refused(
            &web,
            &user,
            &username,
            one_error("password", "password: is not this account's password"),
        )
        .await;
    }
    crate::web::login::attempt_succeeded(&web, &attempt);
    mobileconfig_of(&web, &user, &username, Some(form.password)).await
}

async fn mobileconfig_of(
    web: &Web,
    user: &User,
    username: &str,
    password: Option<String>,
) -> Result<Response, WebError> {
    use crate::keys::mobileconfig;
    use axum::http::header;
    let mut tx = web.store.begin().await?;
    let a = accounts::get(&mut tx, user.actor(), &Username::existing(username)).await?;
    tx.commit().await?;
    let Some(mailbox) = &a.mailbox else {
        return Err(WebError::NotFound(format!(
            "{}: no mailbox, so no mail account to set up",
            a.username
        )));
    };
    let req = mobileconfig::Request {
        email: mailbox.full_address.clone(),
        name: format!("{} {}", a.first_name, a.last_name)
            .trim()
            .to_string(),
        password,
    };
    // Signed by the supervisor, which alone may read the TLS key.
    let (signed, bytes) = match mobileconfig::request(&web.profile_socket, &req).await {
        Ok(answer) => answer,
        Err(e) => {
            tracing::warn!("{e}: the profile for {} is sent unsigned", req.email);
            let document = mobileconfig::render(&req, &web.config.hostname)
                .map_err(|e| WebError::BadRequest(e.to_string()))?;
            (false, document.into_bytes())
        }
    };
    let file = format!(
        "attachment; filename=\"{}.mobileconfig\"",
        mailbox.full_address.replace(['"', '\\', '\r', '\n'], "")
    );
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "application/x-apple-aspen-config".to_string(),
            ),
            (header::CONTENT_DISPOSITION, file),
            // It may hold a password.
            (header::CACHE_CONTROL, "no-store".to_string()),
            (
                header::HeaderName::from_static("x-modobox-profile"),
                if signed { "signed" } else { "unsigned" }.to_string(),
            ),
        ],
        bytes,
    )
        .into_response())
}
