//! Superadmin pages: the audit log (`core_log`) and the global parameters.

use axum::extract::{Query, State};
use axum::response::{Html, Response};
use serde::Deserialize;

use super::{
    base, form_errors, page_number, pager, refused, require_super, see_other, Errors, PAGE_SIZE,
};
use crate::store::{audit, parameters};
use crate::web::session::{Post, User};
use crate::web::{Web, WebError};

#[derive(Debug, Deserialize)]
pub struct LogQuery {
    #[serde(default)]
    level: String,
    #[serde(default)]
    logger: String,
    page: Option<String>,
}

pub async fn logs(
    State(web): State<Web>,
    user: User,
    Query(q): Query<LogQuery>,
) -> Result<Html<String>, WebError> {
    require_super(&user)?;
    let level = audit::LOG_LEVELS.iter().copied().find(|l| *l == q.level);
    let logger = Some(q.logger.as_str()).filter(|l| !l.is_empty());
    let page = page_number(&q.page);
    let mut tx = web.store.begin().await?;
    let mut found = audit::log_page(
        &mut tx,
        user.actor(),
        level,
        logger,
        (page - 1) * PAGE_SIZE,
        PAGE_SIZE,
    )
    .await?;
    let pages = ((found.total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    if page > pages {
        found = audit::log_page(
            &mut tx,
            user.actor(),
            level,
            logger,
            (pages - 1) * PAGE_SIZE,
            PAGE_SIZE,
        )
        .await?;
    }
    let loggers = audit::log_loggers(&mut tx, user.actor()).await?;
    tx.commit().await?;
    let mut ctx = base(&web, &user, "logs");
    ctx.insert("lines", &found.items);
    ctx.insert("levels", &audit::LOG_LEVELS);
    ctx.insert("loggers", &loggers);
    ctx.insert("level", level.unwrap_or(""));
    ctx.insert("logger", logger.unwrap_or(""));
    ctx.insert(
        "pager",
        &pager(
            found.total,
            page,
            "/logs",
            &[
                ("level", level.unwrap_or("")),
                ("logger", logger.unwrap_or("")),
            ],
        ),
    );
    web.render("logs.html", &ctx)
}

async fn parameters_page(
    web: &Web,
    user: &User,
    values: Option<&std::collections::BTreeMap<String, String>>,
    errors: &Errors,
    saved: bool,
) -> Result<tera::Context, WebError> {
    let mut tx = web.store.begin().await?;
    let mut params = parameters::editable(&mut tx, user.actor()).await?;
    tx.commit().await?;
    // A refused form shows what was typed, not what is stored.
    if let Some(values) = values {
        for p in &mut params {
            p.value = match p.kind {
                "bool" => if values.contains_key(p.name) {
                    "true"
                } else {
                    "false"
                }
                .into(),
                _ => values.get(p.name).cloned().unwrap_or_default(),
            };
        }
    }
    let mut ctx = base(web, user, "parameters");
    ctx.insert("parameters", &params);
    ctx.insert("errors", errors);
    ctx.insert("saved", &saved);
    // The effective configuration, read-only: it is changed in the file, then `modobox install`.
    ctx.insert(
        "config",
        &toml::to_string_pretty(&web.config).unwrap_or_else(|e| format!("# cannot show: {e}")),
    );
    Ok(ctx)
}

#[derive(Debug, Deserialize)]
pub struct Saved {
    #[serde(default)]
    saved: String,
}

pub async fn parameters(
    State(web): State<Web>,
    user: User,
    Query(q): Query<Saved>,
) -> Result<Html<String>, WebError> {
    require_super(&user)?;
    let ctx = parameters_page(&web, &user, None, &Errors::new(), !q.saved.is_empty()).await?;
    web.render("parameters.html", &ctx)
}

pub async fn set_parameters(
    State(web): State<Web>,
    post: Post<std::collections::BTreeMap<String, String>>,
) -> Result<Response, WebError> {
    let (user, form) = (post.user, post.form);
    require_super(&user)?;
    let mut tx = web.store.begin().await?;
    let params = parameters::editable(&mut tx, user.actor()).await?;
    let names: Vec<&str> = params.iter().map(|p| p.name).collect();
    let mut failed = None;
    for p in &params {
        let value = match p.kind {
            // An unchecked box is absent from the form.
            "bool" => if form.contains_key(p.name) {
                "true"
            } else {
                "false"
            }
            .to_string(),
            _ => form.get(p.name).cloned().unwrap_or_default(),
        };
        if let Err(e) = parameters::change(&mut tx, user.actor(), p.name, &value).await {
            failed = Some(form_errors(e, &names, "parameter")?);
            break;
        }
    }
    match failed {
        None => {
            tx.commit().await?;
            Ok(see_other("/parameters?saved=1"))
        }
        Some(errors) => {
            drop(tx);
            let ctx = parameters_page(&web, &user, Some(&form), &errors, false).await?;
            refused(&web, "parameters.html", &ctx)
        }
    }
}
