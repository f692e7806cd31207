//! The statistics page: traffic and size graphs of a domain (or of the whole server for a
//! superadmin) drawn by `rrdtool` from the RRD files the logparser job fills.

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{base, require_admin};
use crate::names::DomainName;
use crate::stats::graph::{self, Kind, Period};
use crate::stats::{rrd::Rrd, Settings};
use crate::store::domains;
use crate::web::session::User;
use crate::web::{Web, WebError};

#[derive(Debug, Deserialize)]
pub struct StatsQuery {
    #[serde(default)]
    name: String,
    #[serde(default)]
    period: String,
    #[serde(default)]
    kind: String,
}

fn period(text: &str) -> Result<Period, WebError> {
    match text {
        "" | "day" => Ok(Period::Day),
        "week" => Ok(Period::Week),
        "month" => Ok(Period::Month),
        "year" => Ok(Period::Year),
        _ => Err(WebError::BadRequest(
            "period: must be day, week, month or year".into(),
        )),
    }
}

/// The graph's subject, checked: "global" for superadmins, else a domain this user administers
/// (the name then also names an RRD file, so it must be a valid domain name).
async fn subject(web: &Web, user: &User, name: &str) -> Result<String, WebError> {
    let super_admin = user.actor().is_super();
    if name.is_empty() || name == "global" {
        return if super_admin {
            Ok("global".into())
        } else {
            Err(WebError::Forbidden(
                "the server-wide statistics are for superadmins: choose one of your domains".into(),
            ))
        };
    }
    let domain =
        DomainName::parse("name", name).map_err(|e| WebError::BadRequest(e.to_string()))?;
    let mut tx = web.store.begin().await?;
    domains::get(&mut tx, user.actor(), &domain).await?;
    tx.commit().await?;
    Ok(domain.as_str().to_ascii_lowercase())
}

pub async fn page(
    State(web): State<Web>,
    user: User,
    Query(q): Query<StatsQuery>,
) -> Result<Response, WebError> {
    require_admin(&user)?;
    let mut tx = web.store.begin().await?;
    let visible = domains::list(&mut tx, user.actor(), None, None).await?;
    tx.commit().await?;
    let default = if user.actor().is_super() {
        "global".to_string()
    } else {
        visible
            .first()
            .map(|d| d.name.to_string())
            .unwrap_or_default()
    };
    let wanted = if q.name.is_empty() {
        default
    } else {
        q.name.clone()
    };
    let p = period(&q.period)?;
    let mut ctx = base(&web, &user, "statistics");
    ctx.insert("period", &p);
    ctx.insert(
        "names",
        &visible
            .iter()
            .map(|d| d.name.as_str())
            .take(500)
            .collect::<Vec<_>>(),
    );
    ctx.insert("is_super_stats", &user.actor().is_super());
    if wanted.is_empty() {
        ctx.insert("name", "");
        return Ok(web.render("statistics.html", &ctx)?.into_response());
    }
    let name = subject(&web, &user, &wanted).await?;
    let settings = Settings::from_config(&web.config);
    let rrd = Rrd::new(&settings.rrd_dir);
    let seconds = p.seconds().unwrap_or(86_400);
    let now = chrono::Utc::now();
    let totals = {
        let (dir, n) = (settings.rrd_dir.clone(), name.clone());
        tokio::task::spawn_blocking(move || crate::stats::show(&dir, &n, seconds, now))
            .await
            .map_err(|e| WebError::Internal(e.to_string()))?
    };
    ctx.insert("name", &name);
    ctx.insert("has_data", &rrd.path(&name).exists());
    match totals {
        Ok(t) => ctx.insert("totals", &t),
        Err(e) => ctx.insert("note", &e.to_string()),
    }
    Ok(web.render("statistics.html", &ctx)?.into_response())
}

/// One graph as SVG, drawn on request into a private temporary file.
pub async fn graph_svg(
    State(web): State<Web>,
    user: User,
    Query(q): Query<StatsQuery>,
) -> Result<Response, WebError> {
    require_admin(&user)?;
    let name = subject(&web, &user, &q.name).await?;
    let p = period(&q.period)?;
    let kind = match q.kind.as_str() {
        "" | "traffic" => Kind::Traffic,
        "size" => Kind::Size,
        _ => return Err(WebError::BadRequest("kind: must be traffic or size".into())),
    };
    let settings = Settings::from_config(&web.config);
    let end = chrono::Utc::now().timestamp();
    let start = end - p.seconds().unwrap_or(86_400);
    // Whatever stops the drawing (no data, rrdtool missing) is answered 404 with its reason.
    let not_found = |e: &dyn std::fmt::Display| WebError::NotFound(e.to_string());
    let svg = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, WebError> {
        let dir = std::env::temp_dir().join(format!(
            "modobox-graph-{}",
            crate::web::session::random_token()
        ));
        std::fs::create_dir(&dir).map_err(|e| not_found(&e))?;
        let out = dir.join("graph.svg");
        let drawn = graph::draw(&Rrd::new(&settings.rrd_dir), &name, kind, start, end, &out)
            .map_err(|e| not_found(&e))
            .and_then(|()| std::fs::read(&out).map_err(|e| not_found(&e)));
        let _ = std::fs::remove_dir_all(&dir);
        drawn
    })
    .await
    .map_err(|e| WebError::Internal(e.to_string()))??;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "private, max-age=60"),
        ],
        svg,
    )
        .into_response())
}
