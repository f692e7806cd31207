//! The admin pages over real HTTP against a real database, per role: who sees what, a domain
//! admin kept out of other domains (404, nothing written), a simple user kept out of the
//! admin pages (403), CSRF refused on every form, bad input answered next to its field with
//! nothing written, pagination, the DNS page with the real DKIM key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::matrix::{self, Row};
use common::steps::step;
use common::web::{account, enc, http, login, start, Answer, PASSWORD};
use modobox::names::{DkimSelector, DomainName};
use modobox::store::access::{Actor, Role};
use modobox::store::accounts::{self, AccountSpec, Password};
use modobox::store::aliases::{self, AliasAddress, AliasSpec};
use modobox::store::domains::{self, DomainSpec};
use modobox::store::{migrate, parameters, Store};

async fn domain(store: &Store, name: &str) {
    let mut tx = store.begin().await.unwrap();
    domains::create(
        &mut tx,
        Actor::System,
        &DomainName::parse("name", name).unwrap(),
        &DomainSpec::default(),
        None,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

async fn user(store: &Store, username: &str, role: Role, mailbox: bool, doms: &[&str]) {
    let mut tx = store.begin().await.unwrap();
    let spec = AccountSpec {
        username: modobox::names::Username::parse(username).unwrap(),
        password: Password::Clear(PASSWORD.into()),
        first_name: String::new(),
        last_name: String::new(),
        enabled: true,
        role,
        mailbox: mailbox.then_some(Some(10)),
        mailbox_address: None,
        domains: doms
            .iter()
            .map(|d| DomainName::parse("d", d).unwrap())
            .collect(),
        profile: Default::default(),
        mailbox_settings: Default::default(),
    };
    common::create_account(&mut tx, &spec).await;
    tx.commit().await.unwrap();
}

async fn count(store: &Store, sql: &str, arg: &str) -> i64 {
    let mut tx = store.begin().await.unwrap();
    let n = tx.count(sql, modobox::args![arg]).await.unwrap();
    drop(tx);
    n
}

async fn domains_named(store: &Store, name: &str) -> i64 {
    count(
        store,
        "SELECT COUNT(*) FROM admin_domain WHERE name = ?",
        name,
    )
    .await
}

/// A logged-in browser: GET and POST with its session and CSRF token.
struct Client {
    port: u16,
    session: String,
    csrf: String,
}

impl Client {
    async fn new(port: u16, username: &str) -> Client {
        let (session, csrf) = login(port, username).await;
        Client {
            port,
            session,
            csrf,
        }
    }
    async fn get(&self, path: &str) -> Answer {
        http(self.port, "GET", path, &[&self.session], None).await
    }
    async fn post(&self, path: &str, form: &str) -> Answer {
        let body = format!("csrf={}&{form}", self.csrf);
        http(self.port, "POST", path, &[&self.session], Some(&body)).await
    }
    async fn post_forged(&self, path: &str, form: &str) -> Answer {
        let body = format!("csrf=forged&{form}");
        http(self.port, "POST", path, &[&self.session], Some(&body)).await
    }
}

/// The error shown next to a field: `<p class="field-error" id="e-FIELD">MESSAGE</p>`.
fn field_error(a: &Answer, field: &str) -> Option<String> {
    let tag = format!("id=\"e-{field}\">");
    let at = a.body.find(&tag)? + tag.len();
    let rest = &a.body[at..];
    Some(rest[..rest.find("</p>")?].to_string())
}

/// Who browses: each is logged in with its own session.
#[derive(Clone, Copy, Debug)]
enum Who {
    Superadmin,
    /// daa, the domain admin of a.test.
    DomainAdmin,
    /// u@a.test.
    SimpleUser,
}
use Who::*;

/// What the steps share: the database and a logged-in browser per role.
struct Ctx {
    store: Store,
    admin: Client,
    da: Client,
    simple: Client,
}

impl Ctx {
    fn client(&self, who: Who) -> &Client {
        match who {
            Superadmin => &self.admin,
            DomainAdmin => &self.da,
            SimpleUser => &self.simple,
        }
    }

    /// Sends a row's request; the answer's status and body.
    async fn answer_to(&self, row: Row<Who>) -> (u16, String) {
        let (method, path, who, form, _) = row;
        let a = match method {
            "GET" => self.client(who).get(path).await,
            "POST" => self.client(who).post(path, form).await,
            other => panic!("the pages answer GET and POST, not {other}"),
        };
        (a.status, a.body)
    }

    /// Runs a role matrix, row by row in order.
    async fn check_rows(&self, table: &str, rows: &[Row<Who>]) {
        matrix::check_rows(table, rows, |row| self.answer_to(row)).await;
    }

    /// One row checked where it stands in a step (between a change and the next).
    async fn expect(&self, row: Row<Who>) {
        matrix::check_one(row, |row| self.answer_to(row)).await;
    }
}

/// a.test and b.test with a domain admin of a.test, a reseller, a mailbox in each, and a
/// superadmin with a mailbox in a.test; the superadmin, the domain admin and the a.test user
/// logged in.
async fn start_with_two_domains(store: Store) -> Ctx {
    migrate::migrate(&store).await.unwrap();
    account(&store, "admin", Role::SuperAdmins).await;
    domain(&store, "a.test").await;
    domain(&store, "b.test").await;
    user(&store, "daa", Role::DomainAdmins, false, &["a.test"]).await;
    user(&store, "res", Role::Resellers, false, &[]).await;
    user(&store, "u@a.test", Role::SimpleUsers, true, &[]).await;
    user(&store, "m@b.test", Role::SimpleUsers, true, &[]).await;
    // A superadmin with a mailbox in the domain admin's domain: visible to it, not its to change.
    user(&store, "boss@a.test", Role::SuperAdmins, true, &[]).await;
    let port = start(&store).await;
    Ctx {
        admin: Client::new(port, "admin").await,
        da: Client::new(port, "daa").await,
        simple: Client::new(port, "u@a.test").await,
        store,
    }
}

async fn scenario(store: Store) {
    let ctx = start_with_two_domains(store).await;
    step!(simple_user_sees_its_own_account_only(&ctx));
    ctx.check_rows("SIMPLE_USER_KEPT_OUT", SIMPLE_USER_KEPT_OUT)
        .await;
    step!(simple_user_wrote_nothing(&ctx));
    step!(superadmin_sees_every_domain(&ctx));
    step!(superadmin_sees_the_server_statistics(&ctx));
    ctx.check_rows("STATISTICS_ACCESS", STATISTICS_ACCESS).await;
    step!(superadmin_searches_domains(&ctx));
    step!(domain_admin_sees_only_its_domain(&ctx));
    ctx.check_rows("DOMAIN_ADMIN_KEPT_OUT", DOMAIN_ADMIN_KEPT_OUT)
        .await;
    step!(refused_domain_admin_wrote_nothing(&ctx));
    step!(domain_admin_creates_a_mailbox_bad_input_named(&ctx));
    step!(quota_use_shows_in_list_and_page(&ctx));
    step!(domain_admin_resets_a_password_and_edits_the_account(&ctx));
    step!(domain_admin_manages_aliases(&ctx));
    step!(superadmin_creates_a_domain_and_sees_its_dkim_record(&ctx));
    step!(superadmin_creates_a_relay_domain(&ctx));
    step!(domain_aliases_by_superadmins_and_resellers_only(&ctx));
    step!(superadmin_grants_domains_and_limits_to_a_domain_admin(&ctx));
    step!(every_form_refuses_a_forged_csrf_token(&ctx));
    step!(logs_and_parameters_for_superadmins(&ctx));
    step!(lists_show_fifty_a_page(&ctx));
    step!(deletions_ask_for_confirmation(&ctx));
    step!(dashboard_per_role(&ctx));
}

/// A simple user: its own account only, no admin navigation.
async fn simple_user_sees_its_own_account_only(ctx: &Ctx) {
    let home = ctx.simple.get("/").await;
    assert_eq!(home.status, 200);
    assert!(!home.body.contains("href=\"/domains\""), "{}", home.body);
    assert!(home.body.contains("u@a.test"));
}

/// A simple user: 403 on admin pages.
static SIMPLE_USER_KEPT_OUT: &[Row<Who>] = &[
    ("GET", "/domains", SimpleUser, "", 403),
    ("GET", "/domains/a.test", SimpleUser, "", 403),
    ("GET", "/domains/new", SimpleUser, "", 403),
    ("GET", "/accounts", SimpleUser, "", 403),
    ("GET", "/accounts/u@a.test", SimpleUser, "", 403),
    ("GET", "/aliases", SimpleUser, "", 403),
    ("GET", "/aliases/new", SimpleUser, "", 403),
    ("GET", "/logs", SimpleUser, "", 403),
    ("GET", "/parameters", SimpleUser, "", 403),
    (
        "POST",
        "/domains/new",
        SimpleUser,
        "name=evil.test&quota=0&default_mailbox_quota=0",
        403,
    ),
    (
        "POST",
        "/aliases/new",
        SimpleUser,
        "address=x%40a.test&recipients=u%40a.test",
        403,
    ),
];

async fn simple_user_wrote_nothing(ctx: &Ctx) {
    assert_eq!(domains_named(&ctx.store, "evil.test").await, 0);
}

async fn superadmin_sees_every_domain(ctx: &Ctx) {
    let list = ctx.admin.get("/domains").await;
    assert_eq!(list.status, 200);
    assert!(list.body.contains("a.test") && list.body.contains("b.test"));
    assert!(list.body.contains("aria-current=\"page\""));
    assert!(list.body.contains("href=\"/statistics\""));
}

/// Statistics: the server's for superadmins, a domain admin's own domains only.
async fn superadmin_sees_the_server_statistics(ctx: &Ctx) {
    let page = ctx.admin.get("/statistics").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("No statistics recorded for global yet"),
        "{}",
        page.body
    );
}

static STATISTICS_ACCESS: &[Row<Who>] = &[
    ("GET", "/statistics?name=a.test", DomainAdmin, "", 200),
    ("GET", "/statistics?name=global", DomainAdmin, "", 403),
    ("GET", "/statistics?name=b.test", DomainAdmin, "", 404),
    (
        "GET",
        "/statistics/graph.svg?name=b.test",
        DomainAdmin,
        "",
        404,
    ),
    (
        "GET",
        "/statistics?name=..%2F..%2Fetc%2Fpasswd",
        DomainAdmin,
        "",
        400,
    ),
    (
        "GET",
        "/statistics?name=a.test&period=decade",
        Superadmin,
        "",
        400,
    ),
    ("GET", "/statistics", SimpleUser, "", 403),
];

async fn superadmin_searches_domains(ctx: &Ctx) {
    let found = ctx.admin.get("/domains?q=b.te").await;
    assert!(found.body.contains(">b.test<") && !found.body.contains(">a.test<"));
}

/// The domain admin: its domain only.
async fn domain_admin_sees_only_its_domain(ctx: &Ctx) {
    let list = ctx.da.get("/domains").await;
    assert_eq!(list.status, 200);
    assert!(list.body.contains(">a.test<") && !list.body.contains("b.test"));
    assert!(!list.body.contains("/domains/new"), "no create button");
    let accts = ctx.da.get("/accounts").await;
    assert!(accts.body.contains("u@a.test") && !accts.body.contains("m@b.test"));
}

/// Another domain is missing to the domain admin, even to POST; it sees the superadmin's
/// mailbox in its domain but cannot take the account over.
static DOMAIN_ADMIN_KEPT_OUT: &[Row<Who>] = &[
    ("GET", "/domains/b.test", DomainAdmin, "", 404),
    ("GET", "/domains/b.test/edit", DomainAdmin, "", 404),
    (
        "POST",
        "/domains/b.test/edit",
        DomainAdmin,
        "quota=0&default_mailbox_quota=0&enable_dkim=on",
        404,
    ),
    ("POST", "/domains/b.test/delete", DomainAdmin, "", 404),
    // Domain admins create no domain.
    ("POST", "/domains/new", DomainAdmin, "name=new.test", 403),
    ("GET", "/accounts/m@b.test", DomainAdmin, "", 404),
    (
        "POST",
        "/accounts/m@b.test/password",
        DomainAdmin,
        "password=aaaaaaaaaa&confirm=aaaaaaaaaa",
        404,
    ),
    ("POST", "/accounts/m@b.test/delete", DomainAdmin, "", 404),
    (
        "POST",
        "/aliases/new",
        DomainAdmin,
        "address=x%40b.test&recipients=u%40a.test&enabled=on",
        404,
    ),
    (
        "GET",
        "/accounts/boss@a.test/password",
        DomainAdmin,
        "",
        403,
    ),
    (
        "POST",
        "/accounts/boss@a.test/password",
        DomainAdmin,
        "password=taken+over+now&confirm=taken+over+now",
        403,
    ),
    ("GET", "/logs", DomainAdmin, "", 403),
    ("GET", "/parameters", DomainAdmin, "", 403),
];

async fn refused_domain_admin_wrote_nothing(ctx: &Ctx) {
    let store = &ctx.store;
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM admin_domain WHERE name = ? AND enable_dkim = TRUE",
            "b.test"
        )
        .await,
        0
    );
    assert_eq!(domains_named(store, "b.test").await, 1);
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM admin_alias WHERE address = ?",
            "x@b.test"
        )
        .await,
        0
    );
    let mut tx = store.begin().await.unwrap();
    assert!(accounts::authenticate(&mut tx, "boss@a.test", PASSWORD)
        .await
        .unwrap()
        .is_some());
    drop(tx);
}

/// Accounts: the domain admin creates a mailbox in its domain; bad input named.
async fn domain_admin_creates_a_mailbox_bad_input_named(ctx: &Ctx) {
    let (da, store) = (&ctx.da, &ctx.store);
    let a = da
        .post(
            "/accounts/new",
            "username=new%40a.test&password=short&confirm=short&role=SimpleUsers&enabled=on&mailbox=on&quota=5",
        )
        .await;
    assert_eq!(a.status, 400);
    let e = field_error(&a, "password").expect(&a.body);
    assert!(e.contains("at least 8"), "{e}");
    assert!(a.body.contains("aria-invalid=\"true\""));
    assert!(
        a.body.contains("value=\"new@a.test\""),
        "the form keeps what was typed"
    );
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM core_user WHERE username = ?",
            "new@a.test"
        )
        .await,
        0
    );
    // A domain admin creates simple users only.
    ctx.expect((
        "POST",
        "/accounts/new",
        DomainAdmin,
        "username=new%40a.test&password=long+enough&confirm=long+enough&role=DomainAdmins&enabled=on&mailbox=on&quota=5",
        403,
    ))
    .await;
    let a = da
        .post(
            "/accounts/new",
            "username=new%40a.test&password=long+enough&confirm=long+enough&role=SimpleUsers&enabled=on&mailbox=on&quota=5",
        )
        .await;
    assert_eq!(a.status, 303, "{}", a.body);
    assert_eq!(a.header("location"), Some("/accounts/new@a.test"));
    let a = da
        .post(
            "/accounts/new",
            "username=other%40a.test&password=long+enough&confirm=long+enough&role=SimpleUsers&enabled=on&mailbox=on&quota=-3",
        )
        .await;
    assert_eq!(a.status, 400);
    assert!(field_error(&a, "quota")
        .expect(&a.body)
        .starts_with("quota:"));
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM core_user WHERE username = ?",
            "other@a.test"
        )
        .await,
        0
    );
}

/// Quota use from admin_quota, in the list and on the account page.
async fn quota_use_shows_in_list_and_page(ctx: &Ctx) {
    let mut tx = ctx.store.begin().await.unwrap();
    tx.exec(
        "UPDATE admin_quota SET bytes = ? WHERE username = ?",
        modobox::args![5_i64 * 1_048_576, "new@a.test"],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let a = ctx.da.get("/accounts/new@a.test").await;
    assert_eq!(a.status, 200);
    assert!(a.body.contains("5.0 of 5 MB"), "{}", a.body);
    assert!(ctx.da.get("/accounts").await.body.contains("100%"));
}

/// Password reset by the admin, edit.
async fn domain_admin_resets_a_password_and_edits_the_account(ctx: &Ctx) {
    let da = &ctx.da;
    let a = da
        .post(
            "/accounts/new@a.test/password",
            "password=another+one&confirm=another+two",
        )
        .await;
    assert_eq!(a.status, 400);
    assert!(field_error(&a, "password").unwrap().contains("differ"));
    let a = da
        .post(
            "/accounts/new@a.test/password",
            "password=another+one&confirm=another+one",
        )
        .await;
    assert_eq!(a.status, 303);
    let mut tx = ctx.store.begin().await.unwrap();
    assert!(accounts::authenticate(&mut tx, "new@a.test", "another one")
        .await
        .unwrap()
        .is_some());
    drop(tx);
    let a = da
        .post(
            "/accounts/new@a.test/edit",
            "username=new%40a.test&first_name=Ann&last_name=Lee&role=SimpleUsers&enabled=on&quota=4",
        )
        .await;
    assert_eq!(a.status, 303, "{}", a.body);
    let a = da.get("/accounts/new@a.test").await;
    assert!(a.body.contains("Ann Lee"));
}

/// Aliases: create, bad recipient named, escaped description, edit, delete.
async fn domain_admin_manages_aliases(ctx: &Ctx) {
    let (da, store) = (&ctx.da, &ctx.store);
    let a = da
        .post(
            "/aliases/new",
            "address=team%40a.test&recipients=u%40a.test%0Anobody%40a.test&enabled=on",
        )
        .await;
    assert_eq!(a.status, 400);
    let e = field_error(&a, "recipients").expect(&a.body);
    assert!(e.contains("nobody@a.test"), "{e}");
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM admin_alias WHERE address = ?",
            "team@a.test"
        )
        .await,
        0
    );
    let a = da
        .post(
            "/aliases/new",
            &format!(
                "address=team%40a.test&recipients=u%40a.test%0Aout%40elsewhere.test&enabled=on&description={}",
                enc("<script>alert(1)</script>")
            ),
        )
        .await;
    assert_eq!(a.status, 303, "{}", a.body);
    let list = da.get("/aliases").await;
    assert!(
        list.body.contains("team@a.test") && list.body.contains("out@elsewhere.test"),
        "{}",
        list.body
    );
    assert!(!list.body.contains("<script>alert"));
    assert!(list.body.contains("&lt;script&gt;"));
    let a = da
        .post("/aliases/%40a.test/edit", "recipients=u%40a.test")
        .await;
    assert_eq!(a.status, 404, "no such catch-all yet");
    let a = da
        .post(
            "/aliases/new",
            "address=%40a.test&recipients=u%40a.test&enabled=on",
        )
        .await;
    assert_eq!(a.status, 303, "a catch-all");
    let a = da
        .post("/aliases/team@a.test/edit", "recipients=&enabled=on")
        .await;
    assert_eq!(a.status, 400);
    assert!(field_error(&a, "recipients").is_some());
    let a = da
        .post(
            "/aliases/team@a.test/edit",
            "recipients=new%40a.test&enabled=on",
        )
        .await;
    assert_eq!(a.status, 303);
    assert!(da
        .get("/aliases/team@a.test/edit")
        .await
        .body
        .contains("new@a.test"));
    assert_eq!(da.get("/aliases/team@a.test/delete").await.status, 200);
    assert_eq!(da.post("/aliases/team@a.test/delete", "").await.status, 303);
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM admin_alias WHERE address = ?",
            "team@a.test"
        )
        .await,
        0
    );
}

/// Domains: create with a refused field, then for real; DNS page with the DKIM key.
async fn superadmin_creates_a_domain_and_sees_its_dkim_record(ctx: &Ctx) {
    let (admin, store) = (&ctx.admin, &ctx.store);
    let a = admin
        .post(
            "/domains/new",
            "name=c.test&quota=100&default_mailbox_quota=500&enabled=on",
        )
        .await;
    assert_eq!(a.status, 400);
    let e = field_error(&a, "default_mailbox_quota").expect(&a.body);
    assert!(e.contains("cannot be greater than the domain quota"), "{e}");
    assert_eq!(domains_named(store, "c.test").await, 0);
    let a = admin
        .post("/domains/new", "name=not+a+domain&quota=0")
        .await;
    assert_eq!(a.status, 400);
    assert!(field_error(&a, "name").is_some());
    let a = admin.post("/domains/new", "name=a.test&quota=0").await;
    assert_eq!(a.status, 400);
    assert!(field_error(&a, "name").unwrap().contains("already exists"));
    let a = admin
        .post(
            "/domains/new",
            "name=c.test&quota=100&default_mailbox_quota=10&enabled=on&enable_dns_checks=on&dkim_key_selector=mail",
        )
        .await;
    assert_eq!(a.status, 303, "{}", a.body);
    assert_eq!(a.header("location"), Some("/domains/c.test"));
    let a = admin
        .post(
            "/domains/c.test/edit",
            "quota=100&default_mailbox_quota=10&enabled=on&enable_dkim=on&dkim_key_selector=mail&dkim_key_length=1024",
        )
        .await;
    assert_eq!(a.status, 303, "{}", a.body);
    let page = admin.get("/domains/c.test").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("key is not generated yet"),
        "{}",
        page.body
    );
    assert!(page.body.contains("v=spf1 mx -all"));
    let key = modobox::keys::dkim::generate_key(1024).unwrap();
    let mut tx = store.begin().await.unwrap();
    let c_test = modobox::names::DomainName::parse("domain", "c.test").unwrap();
    let d = domains::get(&mut tx, Actor::System, &c_test).await.unwrap();
    domains::set_dkim_key(&mut tx, d.id, "/tmp/c.test.pem", &key.public_b64)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let page = admin.get("/domains/c.test").await;
    assert!(
        page.body.contains("mail._domainkey.c.test."),
        "{}",
        page.body
    );
    assert!(page.body.contains("v=DKIM1"));
    // The page is HTML: Tera writes `/` as `&#x2F;` (base64 holds `/`).
    assert!(page
        .body
        .contains(&key.public_b64[..40].replace('/', "&#x2F;")));
    let _ = DkimSelector::parse("s", "mail").unwrap();
}

async fn superadmin_creates_a_relay_domain(ctx: &Ctx) {
    let admin = &ctx.admin;
    let a = admin
        .post(
            "/domains/new",
            "name=relay.test&relay=on&quota=0&default_mailbox_quota=0&enabled=on&target_host=&target_port=25&service=relay",
        )
        .await;
    assert_eq!(a.status, 400);
    assert!(field_error(&a, "target_host").is_some(), "{}", a.body);
    let a = admin
        .post(
            "/domains/new",
            "name=relay.test&relay=on&quota=0&default_mailbox_quota=0&enabled=on&target_host=mx.inside.test&target_port=2525&service=relay&verify_recipients=on",
        )
        .await;
    assert_eq!(a.status, 303, "{}", a.body);
    let page = admin.get("/domains/relay.test").await;
    assert!(page.body.contains("[mx.inside.test]:2525"));
    let a = admin
        .post(
            "/domains/relay.test/edit",
            "quota=0&default_mailbox_quota=0&enabled=on&target_host=mx2.inside.test&target_port=99999&service=relay",
        )
        .await;
    assert_eq!(a.status, 400);
    assert!(field_error(&a, "target_port").is_some());
}

/// A domain alias takes every address of its name: superadmins and resellers only.
async fn domain_aliases_by_superadmins_and_resellers_only(ctx: &Ctx) {
    let (admin, da, store) = (&ctx.admin, &ctx.da, &ctx.store);
    ctx.expect((
        "POST",
        "/domains/a.test/aliases/new",
        DomainAdmin,
        "name=a-alias.test&enabled=on",
        403,
    ))
    .await;
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM admin_domainalias WHERE name = ?",
            "a-alias.test"
        )
        .await,
        0
    );
    let a = admin
        .post(
            "/domains/a.test/aliases/new",
            "name=a-alias.test&enabled=on",
        )
        .await;
    assert_eq!(a.status, 303, "{}", a.body);
    let a = admin
        .post("/domains/a.test/aliases/new", "name=b.test&enabled=on")
        .await;
    assert_eq!(a.status, 400);
    assert!(field_error(&a, "name").unwrap().contains("already exists"));
    ctx.expect((
        "POST",
        "/domains/b.test/aliases/new",
        DomainAdmin,
        "name=z.test&enabled=on",
        404,
    ))
    .await;
    assert!(da
        .get("/domains/a.test")
        .await
        .body
        .contains("a-alias.test"));
    assert_eq!(
        da.post("/domain-aliases/a-alias.test/edit", "")
            .await
            .status,
        303
    );
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM admin_domainalias WHERE name = ? AND enabled = FALSE",
            "a-alias.test"
        )
        .await,
        1
    );
    assert_eq!(
        da.post("/domain-aliases/a-alias.test/delete", "")
            .await
            .status,
        303
    );
}

/// Admins: domains granted and revoked, limits, by the roles allowed.
async fn superadmin_grants_domains_and_limits_to_a_domain_admin(ctx: &Ctx) {
    let (admin, da, store) = (&ctx.admin, &ctx.da, &ctx.store);
    let a = admin.post("/accounts/daa/domains", "domain=c.test").await;
    assert_eq!(a.status, 303);
    assert!(da.get("/domains").await.body.contains(">c.test<"));
    // Domain admins give no domains.
    ctx.expect((
        "POST",
        "/accounts/daa/domains",
        DomainAdmin,
        "domain=b.test",
        403,
    ))
    .await;
    let a = admin
        .post("/accounts/daa/domains", "domain=nope.test")
        .await;
    assert_eq!(a.status, 400);
    assert!(field_error(&a, "domain").is_some());
    let a = admin
        .post("/accounts/daa/domains/revoke", "domain=c.test")
        .await;
    assert_eq!(a.status, 303);
    ctx.expect(("GET", "/domains/c.test", DomainAdmin, "", 404))
        .await;
    let a = admin.post("/accounts/daa/limits", "mailboxes=abc").await;
    assert_eq!(a.status, 400);
    assert!(field_error(&a, "mailboxes").is_some());
    let a = admin
        .post("/accounts/daa/limits", "mailboxes=2&mailbox_aliases=-5")
        .await;
    assert_eq!(a.status, 400);
    assert!(field_error(&a, "mailbox_aliases").is_some());
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM limits_userobjectlimit WHERE name = ?",
            "mailboxes"
        )
        .await,
        0,
        "nothing half-done"
    );
    let a = admin
        .post("/accounts/daa/limits", "mailboxes=2&mailbox_aliases=-1")
        .await;
    assert_eq!(a.status, 303);
    ctx.expect((
        "POST",
        "/accounts/daa/limits",
        DomainAdmin,
        "mailboxes=99",
        403,
    ))
    .await;
    // daa has 3 mailboxes in a.test now: its limit of 2 stops a fourth, named on the form.
    let a = da
        .post(
            "/accounts/new",
            "username=fourth%40a.test&password=long+enough&confirm=long+enough&role=SimpleUsers&enabled=on&mailbox=on&quota=1",
        )
        .await;
    assert_eq!(a.status, 400);
    assert!(field_error(&a, "form")
        .expect(&a.body)
        .contains("limit reached"));
}

async fn every_form_refuses_a_forged_csrf_token(ctx: &Ctx) {
    for (path, form) in [
        ("/domains/new", "name=csrf.test"),
        ("/domains/a.test/edit", "quota=0"),
        ("/domains/b.test/delete", ""),
        ("/domains/a.test/aliases/new", "name=csrf.test"),
        ("/domain-aliases/x.test/edit", ""),
        ("/domain-aliases/x.test/delete", ""),
        ("/accounts/new", "username=csrf%40a.test"),
        ("/accounts/u@a.test/edit", "username=u%40a.test"),
        (
            "/accounts/u@a.test/password",
            "password=aaaaaaaaaa&confirm=aaaaaaaaaa",
        ),
        ("/accounts/u@a.test/delete", ""),
        ("/accounts/daa/domains", "domain=b.test"),
        ("/accounts/daa/domains/revoke", "domain=a.test"),
        ("/accounts/daa/limits", "mailboxes=1"),
        (
            "/aliases/new",
            "address=csrf%40a.test&recipients=u%40a.test",
        ),
        ("/aliases/@a.test/edit", "recipients=u%40a.test"),
        ("/aliases/@a.test/delete", ""),
        ("/parameters", "password_rounds=5000"),
    ] {
        let a = ctx.admin.post_forged(path, form).await;
        assert_eq!(a.status, 403, "forged POST {path}");
        assert!(a.body.contains("CSRF"), "{path}: {}", a.body);
    }
    assert_eq!(domains_named(&ctx.store, "b.test").await, 1);
    assert_eq!(domains_named(&ctx.store, "csrf.test").await, 0);
}

async fn logs_and_parameters_for_superadmins(ctx: &Ctx) {
    let (admin, store) = (&ctx.admin, &ctx.store);
    let logs = admin.get("/logs").await;
    assert_eq!(logs.status, 200);
    assert!(logs.body.contains("Domain c.test created"), "{}", logs.body);
    let warn = admin.get("/logs?level=WARNING").await;
    assert!(!warn.body.contains("Domain c.test created"));
    let auth = admin.get("/logs?logger=modoboa.auth").await;
    assert!(auth.body.contains("logged in") && !auth.body.contains("Domain c.test created"));
    let a = admin
        .post(
            "/parameters",
            "password_scheme=SHA512-CRYPT&password_rounds=12&password_update_scheme=on",
        )
        .await;
    assert_eq!(a.status, 400);
    assert!(field_error(&a, "password_rounds")
        .unwrap()
        .contains("between 1000"));
    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        parameters::setting(&mut tx, "password_rounds")
            .await
            .unwrap(),
        None
    );
    drop(tx);
    // Weak schemes are read, never written; nothing of the form is stored.
    let a = admin
        .post(
            "/parameters",
            "password_scheme=SSHA&password_rounds=6000&password_update_scheme=on",
        )
        .await;
    assert_eq!(a.status, 400);
    assert!(field_error(&a, "password_scheme")
        .unwrap()
        .contains("does not write new passwords in SSHA"));
    let a = admin
        .post(
            "/parameters",
            "password_scheme=ARGON2ID&password_rounds=6000&enable_domain_limits=on",
        )
        .await;
    assert_eq!(a.status, 303);
    let mut tx = store.begin().await.unwrap();
    let policy = modobox::store::accounts::hash_policy(&mut tx)
        .await
        .unwrap();
    assert_eq!(policy.scheme(), modobox::password::Scheme::Argon2id);
    assert_eq!(
        parameters::setting(&mut tx, "password_update_scheme")
            .await
            .unwrap()
            .as_deref(),
        Some("false")
    );
    drop(tx);
    let a = admin
        .post(
            "/parameters",
            "password_scheme=SHA512-CRYPT&password_rounds=6000&enable_domain_limits=on&password_update_scheme=on",
        )
        .await;
    assert_eq!(a.status, 303);
    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        parameters::setting(&mut tx, "password_rounds")
            .await
            .unwrap()
            .as_deref(),
        Some("6000")
    );
    assert_eq!(
        parameters::setting(&mut tx, "enable_domain_limits")
            .await
            .unwrap()
            .as_deref(),
        Some("true")
    );
    drop(tx);
    let p = admin.get("/parameters?saved=1").await;
    assert!(
        p.body.contains("Parameters saved")
            && p.body.contains("hostname = &quot;mail.example.test&quot;")
    );
}

/// Pagination: 50 a page, the rest on the next.
async fn lists_show_fifty_a_page(ctx: &Ctx) {
    let (admin, store) = (&ctx.admin, &ctx.store);
    for i in 0..55 {
        domain(store, &format!("p{i:02}.test")).await;
    }
    let first = admin.get("/domains?q=p").await;
    assert_eq!(first.body.matches("href=\"/domains/p").count(), 50);
    assert!(first.body.contains("rel=\"next\""));
    let second = admin.get("/domains?q=p&page=2").await;
    assert!(second.body.contains(">p54.test<") && !second.body.contains(">p00.test<"));
    assert!(second.body.contains("page 2 of 2"));
    assert!(admin.get("/logs?page=2").await.body.contains("page 2 of"));
    for i in 0..52 {
        let name = format!("pager{i:02}@p00.test");
        user(store, &name, Role::SimpleUsers, true, &[]).await;
    }
    let first = admin.get("/accounts?q=pager").await;
    assert_eq!(first.body.matches(">pager").count(), 50, "{}", first.body);
    assert!(first.body.contains("page 1 of 2"));
    let second = admin.get("/accounts?q=pager&page=2").await;
    assert!(
        second.body.contains(">pager51@p00.test<") && !second.body.contains(">pager00@p00.test<")
    );
    // A page past the end shows the last one.
    let past = admin.get("/accounts?q=pager&page=9").await;
    assert!(past.body.contains(">pager51@p00.test<") && past.body.contains("page 2 of 2"));
    let filtered = admin
        .get("/accounts?q=pager&domain=p00.test&role=SimpleUsers")
        .await;
    assert!(filtered.body.contains("page 1 of 2"));
    assert!(!admin
        .get("/accounts?q=pager&role=DomainAdmins")
        .await
        .body
        .contains(">pager"));
    let mut tx = store.begin().await.unwrap();
    for i in 0..51 {
        let spec = AliasSpec {
            enabled: true,
            recipients: vec![format!("far{i:02}@elsewhere.example")],
            ..AliasSpec::default()
        };
        let address = AliasAddress::parse("address", &format!("pal{i:02}@p01.test")).unwrap();
        aliases::create(&mut tx, Actor::System, &address, &spec)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let first = admin.get("/aliases?q=elsewhere").await;
    assert!(first.body.contains("page 1 of 2") && first.body.contains("pal00@p01.test"));
    let second = admin.get("/aliases?q=elsewhere&page=2").await;
    assert!(second.body.contains("pal50@p01.test") && !second.body.contains("pal00@p01.test"));
    assert!(admin
        .get("/aliases?q=far07")
        .await
        .body
        .contains("pal07@p01.test"));
}

async fn deletions_ask_for_confirmation(ctx: &Ctx) {
    let (admin, store) = (&ctx.admin, &ctx.store);
    let confirm = admin.get("/domains/c.test/delete").await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.body.contains("Delete the domain c.test?"));
    assert_eq!(admin.post("/domains/c.test/delete", "").await.status, 303);
    assert_eq!(domains_named(store, "c.test").await, 0);
    assert_eq!(
        admin.post("/accounts/new@a.test/delete", "").await.status,
        303
    );
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM core_user WHERE username = ?",
            "new@a.test"
        )
        .await,
        0
    );
}

/// The dashboard: the machine's status for superadmins (checks, jobs: other tenants' names and
/// paths), whether the services answer for other admins, own account for everyone.
async fn dashboard_per_role(ctx: &Ctx) {
    let home = ctx.admin.get("/").await;
    assert!(home.body.contains("Periodic jobs") && home.body.contains("Checks"));
    let home = ctx.da.get("/").await;
    assert!(
        home.body.contains("Whether each mail service answers"),
        "{}",
        home.body
    );
    assert!(!home.body.contains("Periodic jobs") && !home.body.contains("Checks"));
    assert!(!home.body.contains("certificate /") && !home.body.contains("mail log"));
    let home = ctx.simple.get("/").await;
    assert!(!home.body.contains("Periodic jobs") && home.body.contains("of 10 MB used"));
}

#[tokio::test]
async fn pages_per_role_on_sqlite() {
    let db = common::sqlite().await;
    scenario(db.connect().await).await;
}

#[tokio::test]
async fn pages_per_role_on_postgres() {
    if let Some(db) = common::postgres().await {
        scenario(db.connect().await).await;
    }
}

#[tokio::test]
async fn pages_per_role_on_mariadb() {
    if let Some(db) = common::mysql().await {
        scenario(db.connect().await).await;
    }
}
