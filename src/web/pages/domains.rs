//! Domains, relay domains and domain aliases: the paged list, create/edit/delete, and each
//! domain's page with the DNS records to publish (its real DKIM key) and the MX/DNSBL results.

use axum::extract::{Path, Query, State};
use axum::response::{Html, Response};
use serde::{Deserialize, Serialize};

use super::{
    base, checked, confirm_delete, form_errors, int_field, one_error, page_number, pager,
    past_the_end, refused, require_admin, see_other, store_options, Deletion, Errors, PAGE_SIZE,
};
use crate::dns::records::{self};
use crate::names::{DkimSelector, DomainKind, DomainName};
use crate::store::access::Role;
use crate::store::domains::{self, Domain, DomainPatch, DomainQuery, DomainSpec, Relay};
use crate::store::{dnschecks, StoreError};
use crate::web::session::{Post, User};
use crate::web::{Web, WebError};

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default, rename = "type")]
    kind: String,
    page: Option<String>,
}

pub async fn list(
    State(web): State<Web>,
    user: User,
    Query(q): Query<ListQuery>,
) -> Result<Html<String>, WebError> {
    require_admin(&user)?;
    let page = page_number(&q.page);
    let kind = DomainKind::parse("type", &q.kind).ok();
    let query = DomainQuery {
        kind,
        search: Some(q.q.trim()).filter(|s| !s.is_empty()),
    };
    let mut tx = web.store.begin().await?;
    // The API's paged query: filtered, counted and cut in SQL.
    let offset = |page: i64| (page - 1) * PAGE_SIZE;
    let mut found =
        domains::list_page(&mut tx, user.actor(), &query, Some(PAGE_SIZE), offset(page)).await?;
    if let Some(last) = past_the_end(page, found.total) {
        found = domains::list_page(&mut tx, user.actor(), &query, Some(PAGE_SIZE), offset(last))
            .await?;
    }
    let aliases = domains::list_aliases(&mut tx, user.actor(), None).await?;
    tx.commit().await?;
    let mut ctx = base(&web, &user, "domains");
    ctx.insert("domains", &found.items);
    ctx.insert("domain_aliases", &aliases);
    ctx.insert("q", &q.q);
    ctx.insert("kind", kind.map_or("", DomainKind::as_str));
    ctx.insert(
        "pager",
        &pager(
            found.total,
            page,
            "/domains",
            &[("q", &q.q), ("type", kind.map_or("", DomainKind::as_str))],
        ),
    );
    ctx.insert("can_create", &can_create(&user));
    web.render("domains.html", &ctx)
}

fn can_create(user: &User) -> bool {
    matches!(user.role, Role::SuperAdmins | Role::Resellers)
}

/// The domain form as typed (kept to show it again when refused).
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct DomainForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    quota: String,
    #[serde(default)]
    default_mailbox_quota: String,
    enabled: Option<String>,
    enable_dns_checks: Option<String>,
    enable_dkim: Option<String>,
    #[serde(default)]
    dkim_key_selector: String,
    #[serde(default)]
    dkim_key_length: String,
    #[serde(default)]
    relay: String,
    #[serde(default)]
    target_host: String,
    #[serde(default)]
    target_port: String,
    #[serde(default)]
    service: String,
    verify_recipients: Option<String>,
}

const DOMAIN_FIELDS: &[&str] = &[
    "name",
    "quota",
    "default_mailbox_quota",
    "dkim_key_selector",
    "dkim_key_length",
    "target_host",
    "target_port",
    "service",
];

impl DomainForm {
    fn from_domain(d: &Domain) -> Self {
        let relay = d.relay.clone();
        DomainForm {
            name: d.name.to_string(),
            quota: d.quota.to_string(),
            default_mailbox_quota: d.default_mailbox_quota.to_string(),
            enabled: d.enabled.then(|| "on".into()),
            enable_dns_checks: d.enable_dns_checks.then(|| "on".into()),
            enable_dkim: d.enable_dkim.then(|| "on".into()),
            dkim_key_selector: d.dkim_key_selector.clone(),
            dkim_key_length: d.dkim_key_length.map(|l| l.to_string()).unwrap_or_default(),
            relay: if relay.is_some() {
                "on".into()
            } else {
                String::new()
            },
            target_host: relay
                .as_ref()
                .map(|r| r.target_host.clone())
                .unwrap_or_default(),
            target_port: relay
                .as_ref()
                .map(|r| r.target_port.to_string())
                .unwrap_or_default(),
            service: relay
                .as_ref()
                .map(|r| r.service.clone())
                .unwrap_or_default(),
            verify_recipients: relay
                .as_ref()
                .and_then(|r| r.verify_recipients.then(|| "on".into())),
        }
    }

    fn quotas(&self) -> Result<(i32, i32), Errors> {
        Ok((
            int_field("quota", &self.quota)?.unwrap_or(0),
            int_field("default_mailbox_quota", &self.default_mailbox_quota)?.unwrap_or(0),
        ))
    }

    fn selector(&self) -> Result<DkimSelector, Errors> {
        let s = if self.dkim_key_selector.trim().is_empty() {
            "modoboa"
        } else {
            self.dkim_key_selector.trim()
        };
        DkimSelector::parse("dkim_key_selector", s)
            .map_err(|e| one_error("dkim_key_selector", e.to_string()))
    }

    fn key_length(&self) -> Result<Option<i32>, Errors> {
        int_field("dkim_key_length", &self.dkim_key_length)
    }

    fn relay(&self) -> Result<Option<Relay>, Errors> {
        if !checked(&Some(self.relay.clone())) {
            return Ok(None);
        }
        let port = self.target_port.trim();
        let port = if port.is_empty() { "25" } else { port };
        let target_port = port
            .parse::<u16>()
            .map_err(|_| one_error("target_port", "target_port: must be between 1 and 65535"))?;
        let service = if self.service.trim().is_empty() {
            "relay".to_string()
        } else {
            self.service.trim().to_string()
        };
        Ok(Some(Relay {
            target_host: self.target_host.trim().to_string(),
            target_port,
            service,
            verify_recipients: checked(&self.verify_recipients),
        }))
    }
}

fn form_page(
    web: &Web,
    user: &User,
    form: &DomainForm,
    editing: Option<&Domain>,
    errors: &Errors,
) -> tera::Context {
    let mut ctx = base(web, user, "domains");
    ctx.insert("form", form);
    ctx.insert("editing", &editing);
    ctx.insert("errors", errors);
    ctx.insert(
        "key_lengths",
        &[
            ("", "default (2048 bits)"),
            ("1024", "1024 bits"),
            ("2048", "2048 bits"),
            ("4096", "4096 bits"),
        ],
    );
    ctx
}

#[derive(Debug, Deserialize)]
pub struct NewQuery {
    #[serde(default, rename = "type")]
    kind: String,
}

pub async fn new_form(
    State(web): State<Web>,
    user: User,
    Query(q): Query<NewQuery>,
) -> Result<Html<String>, WebError> {
    require_admin(&user)?;
    if !can_create(&user) {
        return Err(WebError::Forbidden(
            "only superadmins and resellers create domains".into(),
        ));
    }
    let form = DomainForm {
        enabled: Some("on".into()),
        enable_dns_checks: Some("on".into()),
        dkim_key_selector: "modoboa".into(),
        relay: if q.kind == "relaydomain" {
            "on".into()
        } else {
            String::new()
        },
        target_port: "25".into(),
        service: "relay".into(),
        ..Default::default()
    };
    web.render(
        "domain_form.html",
        &form_page(&web, &user, &form, None, &Errors::new()),
    )
}

pub async fn create(State(web): State<Web>, post: Post<DomainForm>) -> Result<Response, WebError> {
    let (user, form) = (post.user, post.form);
    require_admin(&user)?;
    let again = |errors: Errors| {
        refused(
            &web,
            "domain_form.html",
            &form_page(&web, &user, &form, None, &errors),
        )
    };
    let name = match DomainName::parse("name", form.name.trim()) {
        Ok(n) => n,
        Err(e) => return again(one_error("name", e.to_string())),
    };
    let parsed = (|| {
        let (quota, default_mailbox_quota) = form.quotas()?;
        Ok::<_, Errors>((
            DomainSpec {
                quota,
                default_mailbox_quota,
                enabled: checked(&form.enabled),
                enable_dns_checks: checked(&form.enable_dns_checks),
                enable_dkim: checked(&form.enable_dkim),
                dkim_key_selector: form.selector()?,
                dkim_key_length: form.key_length()?,
                message_limit: None,
            },
            form.relay()?,
        ))
    })();
    let (spec, relay) = match parsed {
        Ok(p) => p,
        Err(errors) => return again(errors),
    };
    let mut tx = web.store.begin().await?;
    match domains::create(&mut tx, user.actor(), &name, &spec, relay.as_ref()).await {
        Ok(d) => {
            tx.commit().await?;
            Ok(see_other(&format!("/domains/{}", d.name)))
        }
        Err(e) => {
            drop(tx);
            again(form_errors(e, DOMAIN_FIELDS, "name")?)
        }
    }
}

#[derive(Debug, Serialize)]
struct RecordView {
    name: String,
    ttl: u32,
    rtype: &'static str,
    value: String,
    comment: String,
    in_zone: bool,
}

#[derive(Debug, Serialize)]
struct MxView {
    name: String,
    address: String,
    managed: bool,
    updated: chrono::DateTime<chrono::Utc>,
    listings: Vec<(String, String)>,
}

/// The domain page shows the TLS reports of this many days.
const TLS_REPORT_DAYS: i64 = 30;

/// One policy of one TLS report, as the domain page shows it.
/// A report's period as the domain page shows it (UTC).
fn period(begins: chrono::DateTime<chrono::Utc>, ends: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "{} – {}",
        begins.format("%Y-%m-%d %H:%M"),
        ends.format("%Y-%m-%d %H:%M UTC")
    )
}

/// A DMARC report as listed: who, the period, the policy seen, messages and the share passing.
#[derive(Serialize)]
struct DmarcReportView {
    organization: String,
    period: String,
    policy: String,
    messages: i64,
    dmarc_pass: i64,
}

impl DmarcReportView {
    fn of(r: crate::store::dmarc_reports::ReportLine) -> Self {
        DmarcReportView {
            organization: r.organization,
            period: period(r.begins_at, r.ends_at),
            policy: r.policy,
            messages: r.messages,
            dmarc_pass: r.dmarc_pass,
        }
    }
}

#[derive(Debug, Serialize)]
struct TlsReportView {
    organization: String,
    period: String,
    policy_type: String,
    successful: i64,
    failed: i64,
    /// "result-type (count)" per kind of failure, the largest first.
    failures: Vec<String>,
}

impl TlsReportView {
    fn of(r: crate::store::tls_reports::TlsReport) -> Self {
        let mut details: Vec<crate::reports::tlsrpt::FailureDetail> =
            serde_json::from_str(&r.failures).unwrap_or_default();
        details.sort_by_key(|f| std::cmp::Reverse(f.failed_session_count));
        TlsReportView {
            period: period(r.begins_at, r.ends_at),
            organization: r.organization,
            policy_type: r.policy_type,
            successful: r.successful,
            failed: r.failed,
            failures: details
                .iter()
                .take(5)
                .map(|f| {
                    let mut s = format!("{} ({})", f.result_type, f.failed_session_count);
                    if let Some(mx) = &f.receiving_mx_hostname {
                        s.push_str(&format!(" at {mx}"));
                    }
                    if let Some(ip) = &f.sending_mta_ip {
                        s.push_str(&format!(" from {ip}"));
                    }
                    s
                })
                .collect(),
        }
    }
}

pub async fn show(
    State(web): State<Web>,
    user: User,
    Path(name): Path<String>,
) -> Result<Html<String>, WebError> {
    let name = domains::name_to_find("domain", &name)?;
    require_admin(&user)?;
    let mut tx = web.store.begin().await?;
    let d = domains::get(&mut tx, user.actor(), &name).await?;
    let aliases = domains::list_aliases(&mut tx, user.actor(), Some(&d.name)).await?;
    let mx = dnschecks::mx_rows(&mut tx, d.id).await?;
    let dnsbl = dnschecks::dnsbl_rows(&mut tx, d.id).await?;
    let since = chrono::Utc::now() - chrono::Duration::days(TLS_REPORT_DAYS);
    let tls_reports: Vec<TlsReportView> =
        crate::store::tls_reports::recent(&mut tx, d.name.as_str(), since)
            .await?
            .into_iter()
            .map(TlsReportView::of)
            .collect();
    let dmarc_sources =
        crate::store::dmarc_reports::sources(&mut tx, d.name.as_str(), since).await?;
    let dmarc_reports: Vec<DmarcReportView> =
        crate::store::dmarc_reports::reports(&mut tx, d.name.as_str(), since)
            .await?
            .into_iter()
            .map(DmarcReportView::of)
            .collect();
    tx.commit().await?;
    let state = crate::jobs::check_mx::domain_state(&web.store, d.id).await?;
    let mx: Vec<MxView> = mx
        .iter()
        .map(|m| MxView {
            name: m.name.clone(),
            address: m.address.to_string(),
            managed: m.managed,
            updated: m.updated,
            listings: dnsbl
                .iter()
                .filter(|b| b.mx_id == m.id)
                .map(|b| (b.provider.clone(), b.status.clone()))
                .collect(),
        })
        .collect();
    let mut ctx = base(&web, &user, "domains");
    if d.kind == DomainKind::Domain {
        let records = records_of(&web, &d)?;
        ctx.insert("zone", &records::zone_text(&records));
        let views: Vec<RecordView> = records
            .into_iter()
            .map(|r| RecordView {
                name: r.name,
                ttl: r.ttl,
                rtype: r.rtype,
                value: r.value,
                comment: r.comment,
                in_zone: r.in_zone,
            })
            .collect();
        ctx.insert("records", &views);
    }
    ctx.insert(
        "dkim_pending",
        &(d.enable_dkim && d.dkim_public_key.is_empty()),
    );
    ctx.insert("domain", &d);
    ctx.insert("domain_aliases", &aliases);
    ctx.insert("mx", &mx);
    ctx.insert("mx_state", &state);
    ctx.insert("tls_reports", &tls_reports);
    ctx.insert("tls_report_days", &TLS_REPORT_DAYS);
    ctx.insert("dmarc_sources", &dmarc_sources);
    ctx.insert("dmarc_reports", &dmarc_reports);
    ctx.insert(
        "dmarc_reports_address",
        &web.config.dmarc_reports_address().map(|a| a.to_string()),
    );
    ctx.insert(
        "tls_reports_address",
        &web.config.tls_reports_address().map(|a| a.to_string()),
    );
    ctx.insert("can_delete", &can_create(&user));
    web.render("domain.html", &ctx)
}

/// The records of a hosted domain, with its DKIM key once the `dkim_keys` job made it.
fn records_of(web: &Web, d: &Domain) -> Result<Vec<records::Record>, WebError> {
    let addresses = records::public_addresses();
    Ok(records::for_domain(d, &web.config, &addresses, false).map_err(StoreError::from)?)
}

pub async fn edit_form(
    State(web): State<Web>,
    user: User,
    Path(name): Path<String>,
) -> Result<Html<String>, WebError> {
    let name = domains::name_to_find("domain", &name)?;
    require_admin(&user)?;
    let mut tx = web.store.begin().await?;
    let d = domains::get(&mut tx, user.actor(), &name).await?;
    tx.commit().await?;
    let form = DomainForm::from_domain(&d);
    web.render(
        "domain_form.html",
        &form_page(&web, &user, &form, Some(&d), &Errors::new()),
    )
}

pub async fn update(
    State(web): State<Web>,
    Path(name): Path<String>,
    post: Post<DomainForm>,
) -> Result<Response, WebError> {
    let name = domains::name_to_find("domain", &name)?;
    let (user, mut form) = (post.user, post.form);
    require_admin(&user)?;
    let mut tx = web.store.begin().await?;
    let d = domains::get(&mut tx, user.actor(), &name).await?;
    form.name = d.name.to_string();
    // Whether it relays is fixed at creation: the form only edits the relay target.
    form.relay = if d.relay.is_some() {
        "on".into()
    } else {
        String::new()
    };
    let parsed = (|| {
        let (quota, default_mailbox_quota) = form.quotas()?;
        Ok::<_, Errors>(DomainPatch {
            quota: Some(quota),
            default_mailbox_quota: Some(default_mailbox_quota),
            enabled: Some(checked(&form.enabled)),
            enable_dns_checks: Some(checked(&form.enable_dns_checks)),
            enable_dkim: Some(checked(&form.enable_dkim)),
            dkim_key_selector: Some(form.selector()?),
            dkim_key_length: Some(form.key_length()?),
            relay: form.relay()?,
            ..DomainPatch::default()
        })
    })();
    let result = match parsed {
        Ok(patch) => domains::update(&mut tx, user.actor(), &d.name, &patch)
            .await
            .map_err(|e| form_errors(e, DOMAIN_FIELDS, "name")),
        Err(errors) => Err(Ok(errors)),
    };
    match result {
        Ok(_) => {
            tx.commit().await?;
            Ok(see_other(&format!("/domains/{}", d.name)))
        }
        Err(errors) => {
            drop(tx);
            let errors = errors?;
            refused(
                &web,
                "domain_form.html",
                &form_page(&web, &user, &form, Some(&d), &errors),
            )
        }
    }
}

pub async fn delete_form(
    State(web): State<Web>,
    user: User,
    Path(name): Path<String>,
) -> Result<Html<String>, WebError> {
    let name = domains::name_to_find("domain", &name)?;
    require_admin(&user)?;
    let mut tx = web.store.begin().await?;
    let d = domains::get(&mut tx, user.actor(), &name).await?;
    tx.commit().await?;
    confirm_delete(
        &web,
        &user,
        "domains",
        Deletion {
            kind: "domain",
            name: d.name.as_str(),
            action: format!("/domains/{}/delete", d.name),
            back: format!("/domains/{}", d.name),
            consequence: format!(
                "Its {} mailbox(es) and their accounts, its aliases and domain aliases are deleted with it.",
                d.mailboxes
            ),
        },
    )
}

#[derive(Debug, Deserialize)]
pub struct Nothing {}

pub async fn delete(
    State(web): State<Web>,
    Path(name): Path<String>,
    post: Post<Nothing>,
) -> Result<Response, WebError> {
    let name = domains::name_to_find("domain", &name)?;
    require_admin(&post.user)?;
    let mut tx = web.store.begin().await?;
    domains::delete(&mut tx, post.user.actor(), &name, &store_options(&web)).await?;
    tx.commit().await?;
    Ok(see_other("/domains"))
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct DomainAliasForm {
    #[serde(default)]
    name: String,
    enabled: Option<String>,
}

fn alias_page(
    web: &Web,
    user: &User,
    target: &str,
    form: &DomainAliasForm,
    editing: bool,
    errors: &Errors,
) -> tera::Context {
    let mut ctx = base(web, user, "domains");
    ctx.insert("target", target);
    ctx.insert("form", form);
    ctx.insert("editing", &editing);
    ctx.insert("errors", errors);
    ctx
}

pub async fn alias_new_form(
    State(web): State<Web>,
    user: User,
    Path(target): Path<String>,
) -> Result<Html<String>, WebError> {
    let target = domains::name_to_find("domain", &target)?;
    require_admin(&user)?;
    let mut tx = web.store.begin().await?;
    let d = domains::get(&mut tx, user.actor(), &target).await?;
    tx.commit().await?;
    let form = DomainAliasForm {
        enabled: Some("on".into()),
        ..Default::default()
    };
    web.render(
        "domain_alias_form.html",
        &alias_page(&web, &user, d.name.as_str(), &form, false, &Errors::new()),
    )
}

pub async fn alias_create(
    State(web): State<Web>,
    Path(target): Path<String>,
    post: Post<DomainAliasForm>,
) -> Result<Response, WebError> {
    let target = domains::name_to_find("domain", &target)?;
    let (user, form) = (post.user, post.form);
    require_admin(&user)?;
    let mut tx = web.store.begin().await?;
    let d = domains::get(&mut tx, user.actor(), &target).await?;
    let result = match DomainName::parse("name", form.name.trim()) {
        Ok(name) => {
            domains::create_alias(
                &mut tx,
                user.actor(),
                &name,
                &d.name,
                checked(&form.enabled),
            )
            .await
        }
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(_) => {
            tx.commit().await?;
            Ok(see_other(&format!("/domains/{}", d.name)))
        }
        Err(e) => {
            drop(tx);
            let errors = form_errors(e, &["name"], "name")?;
            refused(
                &web,
                "domain_alias_form.html",
                &alias_page(&web, &user, d.name.as_str(), &form, false, &errors),
            )
        }
    }
}

pub async fn alias_edit_form(
    State(web): State<Web>,
    user: User,
    Path(name): Path<String>,
) -> Result<Html<String>, WebError> {
    let name = domains::name_to_find("domain alias", &name)?;
    require_admin(&user)?;
    let mut tx = web.store.begin().await?;
    let a = domains::get_alias(&mut tx, user.actor(), &name).await?;
    tx.commit().await?;
    let form = DomainAliasForm {
        name: a.name.to_string(),
        enabled: a.enabled.then(|| "on".into()),
    };
    web.render(
        "domain_alias_form.html",
        &alias_page(&web, &user, a.target.as_str(), &form, true, &Errors::new()),
    )
}

pub async fn alias_update(
    State(web): State<Web>,
    Path(name): Path<String>,
    post: Post<DomainAliasForm>,
) -> Result<Response, WebError> {
    let name = domains::name_to_find("domain alias", &name)?;
    require_admin(&post.user)?;
    let mut tx = web.store.begin().await?;
    let a = domains::set_alias_enabled(
        &mut tx,
        post.user.actor(),
        &name,
        checked(&post.form.enabled),
    )
    .await?;
    tx.commit().await?;
    Ok(see_other(&format!("/domains/{}", a.target)))
}

pub async fn alias_delete_form(
    State(web): State<Web>,
    user: User,
    Path(name): Path<String>,
) -> Result<Html<String>, WebError> {
    let name = domains::name_to_find("domain alias", &name)?;
    require_admin(&user)?;
    let mut tx = web.store.begin().await?;
    let a = domains::get_alias(&mut tx, user.actor(), &name).await?;
    tx.commit().await?;
    confirm_delete(
        &web,
        &user,
        "domains",
        Deletion {
            kind: "domain alias",
            name: a.name.as_str(),
            action: format!("/domain-aliases/{}/delete", a.name),
            back: format!("/domains/{}", a.target),
            consequence: format!(
                "Mail to @{} is no longer delivered to @{}.",
                a.name, a.target
            ),
        },
    )
}

pub async fn alias_delete(
    State(web): State<Web>,
    Path(name): Path<String>,
    post: Post<Nothing>,
) -> Result<Response, WebError> {
    let name = domains::name_to_find("domain alias", &name)?;
    require_admin(&post.user)?;
    let mut tx = web.store.begin().await?;
    let a = domains::get_alias(&mut tx, post.user.actor(), &name).await?;
    domains::delete_alias(&mut tx, post.user.actor(), &name).await?;
    tx.commit().await?;
    Ok(see_other(&format!("/domains/{}", a.target)))
}
