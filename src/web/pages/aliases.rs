//! Aliases, forwards and catch-alls: list, create, edit (recipients, description, enabled),
//! delete.

use axum::extract::{Path, Query, State};
use axum::response::{Html, Response};
use serde::{Deserialize, Serialize};

use super::domains::Nothing;
use super::{
    base, checked, confirm_delete, form_errors, one_error, page_number, pager, past_the_end,
    refused, require_admin, see_other, Deletion, Errors, PAGE_SIZE,
};
use crate::names::DomainName;
use crate::store::aliases::{self, AliasAddress, AliasPatch, AliasSpec};
use crate::store::Page;
use crate::web::session::{Post, User};
use crate::web::{path_segment, Web, WebError};

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    domain: String,
    page: Option<String>,
}

pub async fn list(
    State(web): State<Web>,
    user: User,
    Query(q): Query<ListQuery>,
) -> Result<Html<String>, WebError> {
    require_admin(&user)?;
    let domain = match q.domain.trim() {
        "" => None,
        d => Some(DomainName::parse("domain", d).map_err(|e| WebError::BadRequest(e.to_string()))?),
    };
    let page = page_number(&q.page);
    let search = Some(q.q.as_str());
    let offset = |page: i64| (page - 1) * PAGE_SIZE;
    let mut tx = web.store.begin().await?;
    let Page {
        items: mut found,
        total,
    } = aliases::list_page(
        &mut tx,
        user.actor(),
        domain.as_ref(),
        search,
        Some(PAGE_SIZE),
        offset(page),
    )
    .await?;
    if let Some(last) = past_the_end(page, total) {
        found = aliases::list_page(
            &mut tx,
            user.actor(),
            domain.as_ref(),
            search,
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
        "/aliases",
        &[("q", &q.q), ("domain", &q.domain)],
    );
    let mut ctx = base(&web, &user, "aliases");
    ctx.insert("aliases", &found);
    ctx.insert("q", &q.q);
    ctx.insert("domain", &q.domain);
    ctx.insert("pager", &p);
    web.render("aliases.html", &ctx)
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct AliasForm {
    #[serde(default)]
    address: String,
    #[serde(default)]
    recipients: String,
    #[serde(default)]
    description: String,
    enabled: Option<String>,
}

const ALIAS_FIELDS: &[&str] = &["address", "recipients", "description"];

fn recipients_of(text: &str) -> Vec<String> {
    text.split([',', ' ', '\n', '\r', '\t'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn check_description(d: &str) -> Result<(), Errors> {
    if d.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
    {
        return Err(one_error(
            "description",
            "description: must not contain control characters",
        ));
    }
    Ok(())
}

fn form_page(
    web: &Web,
    user: &User,
    form: &AliasForm,
    editing: bool,
    errors: &Errors,
) -> tera::Context {
    let mut ctx = base(web, user, "aliases");
    ctx.insert("form", form);
    ctx.insert("editing", &editing);
    ctx.insert("errors", errors);
    ctx
}

#[derive(Debug, Deserialize)]
pub struct NewQuery {
    #[serde(default)]
    domain: String,
}

pub async fn new_form(
    State(web): State<Web>,
    user: User,
    Query(q): Query<NewQuery>,
) -> Result<Html<String>, WebError> {
    require_admin(&user)?;
    let form = AliasForm {
        address: if q.domain.is_empty() {
            String::new()
        } else {
            format!("@{}", q.domain)
        },
        enabled: Some("on".into()),
        ..Default::default()
    };
    web.render(
        "alias_form.html",
        &form_page(&web, &user, &form, false, &Errors::new()),
    )
}

pub async fn create(State(web): State<Web>, post: Post<AliasForm>) -> Result<Response, WebError> {
    let (user, form) = (post.user, post.form);
    require_admin(&user)?;
    let again = |errors: Errors| {
        refused(
            &web,
            "alias_form.html",
            &form_page(&web, &user, &form, false, &errors),
        )
    };
    if let Err(errors) = check_description(&form.description) {
        return again(errors);
    }
    let address = match AliasAddress::parse("address", &form.address) {
        Ok(a) => a,
        Err(e) => return again(form_errors(e, ALIAS_FIELDS, "address")?),
    };
    let spec = AliasSpec {
        enabled: checked(&form.enabled),
        description: form.description.trim().to_string(),
        expire_at: None,
        recipients: recipients_of(&form.recipients),
    };
    let mut tx = web.store.begin().await?;
    match aliases::create(&mut tx, user.actor(), &address, &spec).await {
        Ok(_) => {
            tx.commit().await?;
            Ok(see_other("/aliases"))
        }
        Err(e) => {
            drop(tx);
            again(form_errors(e, ALIAS_FIELDS, "address")?)
        }
    }
}

pub async fn edit_form(
    State(web): State<Web>,
    user: User,
    Path(address): Path<String>,
) -> Result<Html<String>, WebError> {
    require_admin(&user)?;
    let mut tx = web.store.begin().await?;
    let a = aliases::get(&mut tx, user.actor(), &address).await?;
    tx.commit().await?;
    let form = AliasForm {
        address: a.address.clone(),
        recipients: a.recipients.join("\n"),
        description: a.description.clone(),
        enabled: a.enabled.then(|| "on".into()),
    };
    web.render(
        "alias_form.html",
        &form_page(&web, &user, &form, true, &Errors::new()),
    )
}

pub async fn update(
    State(web): State<Web>,
    Path(address): Path<String>,
    post: Post<AliasForm>,
) -> Result<Response, WebError> {
    let (user, mut form) = (post.user, post.form);
    require_admin(&user)?;
    let mut tx = web.store.begin().await?;
    let current = aliases::get(&mut tx, user.actor(), &address).await?;
    form.address = current.address.clone();
    let result = match check_description(&form.description) {
        Err(errors) => Err(Ok(errors)),
        Ok(()) => {
            let patch = AliasPatch {
                enabled: Some(checked(&form.enabled)),
                description: Some(form.description.trim().to_string()),
                expire_at: None,
                recipients: Some(recipients_of(&form.recipients)),
            };
            aliases::update(&mut tx, user.actor(), &current.address, &patch)
                .await
                .map_err(|e| form_errors(e, ALIAS_FIELDS, "address"))
        }
    };
    match result {
        Ok(_) => {
            tx.commit().await?;
            Ok(see_other("/aliases"))
        }
        Err(errors) => {
            drop(tx);
            refused(
                &web,
                "alias_form.html",
                &form_page(&web, &user, &form, true, &errors?),
            )
        }
    }
}

pub async fn delete_form(
    State(web): State<Web>,
    user: User,
    Path(address): Path<String>,
) -> Result<Html<String>, WebError> {
    require_admin(&user)?;
    let mut tx = web.store.begin().await?;
    let a = aliases::get(&mut tx, user.actor(), &address).await?;
    tx.commit().await?;
    confirm_delete(
        &web,
        &user,
        "aliases",
        Deletion {
            kind: "alias",
            name: &a.address,
            action: format!("/aliases/{}/delete", path_segment(&a.address)),
            back: "/aliases".into(),
            consequence: format!(
                "Mail to {} is no longer delivered to {}.",
                a.address,
                a.recipients.join(", ")
            ),
        },
    )
}

pub async fn delete(
    State(web): State<Web>,
    Path(address): Path<String>,
    post: Post<Nothing>,
) -> Result<Response, WebError> {
    require_admin(&post.user)?;
    let mut tx = web.store.begin().await?;
    aliases::delete(&mut tx, post.user.actor(), &address).await?;
    tx.commit().await?;
    Ok(see_other("/aliases"))
}
