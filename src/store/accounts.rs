//! Accounts (`core_user`) and their mailboxes (`admin_mailbox`): creation with the mailbox's
//! internal self alias and quota row, quota rules against the domain, renames and deletions
//! queued for the disk (`admin_mailboxoperation`), passwords, sender addresses, and the
//! domains an admin administers.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::access::{self, Actor, Kind, Role};
use super::{aliases, audit, contains_pattern, domains, Page, StoreError, Tx};
use crate::args;
use crate::names::{DomainName, EmailAddress};
use crate::password;

/// What the store needs to know of the host to keep mailboxes and disk in step.
#[derive(Debug, Clone)]
pub struct Options {
    pub mail_root: PathBuf,
    pub handle_mailboxes_on_filesystem: bool,
}

/// A password as given: clear text (hashed here) or an already hashed `{SCHEME}...` value
/// (CSV round trips, imports from another server).
#[derive(Clone)]
pub enum Password {
    Clear(String),
    Hashed(String),
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Password::Clear(_) => "Password::Clear(***)",
            Password::Hashed(_) => "Password::Hashed(***)",
        })
    }
}

pub const MIN_PASSWORD_LEN: usize = 8;
pub const MAX_PASSWORD_LEN: usize = 128;

impl Password {
    /// A value from a CSV file: a `{SCHEME}` prefix naming a known scheme means "already
    /// hashed" (and a malformed hash is then refused, not taken as a clear-text password).
    pub fn from_import(value: &str) -> Password {
        let named = value
            .strip_prefix('{')
            .and_then(|rest| rest.split_once('}'))
            .is_some_and(|(name, _)| name.parse::<password::Scheme>().is_ok());
        if named {
            Password::Hashed(value.to_string())
        } else {
            Password::Clear(value.to_string())
        }
    }

    pub fn check(&self) -> Result<(), StoreError> {
        match self {
            Password::Clear(p) => {
                let n = p.chars().count();
                if n < MIN_PASSWORD_LEN {
                    return Err(StoreError::refused(
                        "password",
                        format!("must be at least {MIN_PASSWORD_LEN} characters long"),
                    ));
                }
                if n > MAX_PASSWORD_LEN {
                    return Err(StoreError::refused(
                        "password",
                        format!("must be at most {MAX_PASSWORD_LEN} characters long"),
                    ));
                }
                if p.chars().any(char::is_control) {
                    return Err(StoreError::refused(
                        "password",
                        "must not contain control characters",
                    ));
                }
                Ok(())
            }
            Password::Hashed(h) => {
                password::scheme_of(h)?;
                if h.len() > 256 || h.chars().any(char::is_control) {
                    return Err(StoreError::refused(
                        "password",
                        "is not a valid stored hash",
                    ));
                }
                Ok(())
            }
        }
    }

    /// The value stored in `core_user.password`.
    pub fn to_stored(&self, rounds: u32) -> Result<String, StoreError> {
        self.check()?;
        match self {
            Password::Clear(p) => Ok(password::hash(p, rounds)?),
            Password::Hashed(h) => Ok(h.clone()),
        }
    }
}

/// SHA512-CRYPT rounds: the `password_rounds` setting, default 70000 (Modoboa's).
pub async fn password_rounds(tx: &mut Tx) -> Result<u32, StoreError> {
    match super::parameters::setting(tx, "password_rounds").await? {
        Some(v) => v
            .parse()
            .map_err(|_| StoreError::refused("password_rounds", "must be a whole number")),
        None => Ok(password::DEFAULT_ROUNDS),
    }
}

/// A username: an address (accounts with a mailbox) or a plain login name for admins.
pub fn parse_username(value: &str) -> Result<String, StoreError> {
    let v = value.trim();
    if v.contains('@') {
        return Ok(EmailAddress::parse("username", v)?.to_string());
    }
    let ok = !v.is_empty()
        && v.len() <= 150
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'));
    if !ok {
        return Err(StoreError::refused(
            "username",
            "must be an address or a login of letters, digits and . _ - +",
        ));
    }
    Ok(v.to_ascii_lowercase())
}

fn check_person_name(field: &str, v: &str) -> Result<(), StoreError> {
    if v.chars().count() > 30 {
        return Err(StoreError::refused(
            field,
            "must be at most 30 characters long",
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(StoreError::refused(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Mailbox {
    pub id: i32,
    pub full_address: String,
    pub domain: String,
    pub quota: i32,
    pub use_domain_quota: bool,
    pub quota_used_bytes: i64,
    pub sender_addresses: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Account {
    pub id: i32,
    pub username: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub is_active: bool,
    pub role: Role,
    pub language: String,
    pub last_login: Option<DateTime<Utc>>,
    pub date_joined: DateTime<Utc>,
    /// `{SCHEME}` of the stored password, never the hash itself.
    pub password_scheme: String,
    pub mailbox: Option<Mailbox>,
    /// Domains this admin administers.
    pub domains: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct AccountSpec {
    pub username: String,
    pub password: Password,
    pub first_name: String,
    pub last_name: String,
    pub enabled: bool,
    pub role: Role,
    /// Create a mailbox (the username must then be an address in a hosted domain). `None`
    /// quota = the domain's default.
    pub mailbox: Option<Option<i32>>,
    /// Domains given to a domain admin or reseller.
    pub domains: Vec<DomainName>,
}

#[derive(Debug, Clone, Default)]
pub struct AccountPatch {
    pub username: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub enabled: Option<bool>,
    pub role: Option<Role>,
    /// Some(None) = back to the domain's default quota.
    pub quota: Option<Option<i32>>,
}

struct DomainRow {
    id: i32,
    quota: i32,
    default_mailbox_quota: i32,
}

async fn hosted_domain(tx: &mut Tx, actor: Actor, name: &str) -> Result<DomainRow, StoreError> {
    let d = domains::get(tx, actor, name).await?;
    if d.kind != "domain" {
        // A relay domain can hold local mailboxes (the "splitted domains" transport).
        tracing::debug!("mailbox in relay domain {name}");
    }
    Ok(DomainRow {
        id: d.id,
        quota: d.quota,
        default_mailbox_quota: d.default_mailbox_quota,
    })
}

/// The mailbox quota to store, checked against the domain's quota.
async fn mailbox_quota(
    tx: &mut Tx,
    d: &DomainRow,
    asked: Option<i32>,
    replacing: i32,
) -> Result<(i32, bool), StoreError> {
    let (quota, use_domain) = match asked {
        Some(q) => (q, false),
        None => (d.default_mailbox_quota, true),
    };
    if quota < 0 {
        return Err(StoreError::refused(
            "quota",
            "must be 0 (unlimited) or a positive number of MB",
        ));
    }
    if d.quota > 0 {
        if quota == 0 {
            return Err(StoreError::refused(
                "quota",
                format!(
                    "the domain has a quota of {} MB: a mailbox cannot be unlimited",
                    d.quota
                ),
            ));
        }
        let sum = tx.sum_int("quota");
        let allocated = tx
            .count(
                &format!("SELECT {sum} FROM admin_mailbox WHERE domain_id = ?"),
                args![d.id],
            )
            .await?
            - i64::from(replacing);
        if allocated + i64::from(quota) > i64::from(d.quota) {
            return Err(StoreError::refused(
                "quota",
                format!(
                    "{quota} MB does not fit: {allocated} of the domain's {} MB are already given",
                    d.quota
                ),
            ));
        }
    }
    Ok((quota, use_domain))
}

fn home(opts: &Options, domain: &str, local: &str) -> String {
    opts.mail_root
        .join(domain)
        .join(local)
        .display()
        .to_string()
}

/// Creates an account, its mailbox, self alias and quota row, its role and domain access.
pub async fn create(
    tx: &mut Tx,
    actor: Actor,
    spec: &AccountSpec,
    rounds: u32,
) -> Result<Account, StoreError> {
    let username = parse_username(&spec.username)?;
    check_person_name("first_name", &spec.first_name)?;
    check_person_name("last_name", &spec.last_name)?;
    let stored = spec.password.to_stored(rounds)?;
    insert(tx, actor, spec, &username, &stored).await?;
    get(tx, actor, &username).await
}

/// `create` with the password already hashed (imports hash on all cores first); returns the
/// new account's id.
pub async fn insert(
    tx: &mut Tx,
    actor: Actor,
    spec: &AccountSpec,
    username: &str,
    stored: &str,
) -> Result<i32, StoreError> {
    let username = parse_username(username)?;
    let username = username.as_str();
    check_person_name("first_name", &spec.first_name)?;
    check_person_name("last_name", &spec.last_name)?;
    // Resellers create domain admins and simple users; domain admins create simple users.
    if let Actor::User { role, .. } = actor {
        let allowed = match role {
            Role::SuperAdmins => true,
            Role::Resellers => matches!(spec.role, Role::DomainAdmins | Role::SimpleUsers),
            Role::DomainAdmins => spec.role == Role::SimpleUsers,
            Role::SimpleUsers => false,
        };
        if !allowed {
            return Err(StoreError::Forbidden(format!(
                "{role} cannot create {}",
                spec.role
            )));
        }
    }
    if tx
        .count(
            "SELECT COUNT(*) FROM core_user WHERE username = ?",
            args![username],
        )
        .await?
        > 0
    {
        return Err(StoreError::Exists {
            kind: "account",
            name: username.to_string(),
        });
    }
    let mailbox_domain = match &spec.mailbox {
        Some(quota) => {
            let addr = EmailAddress::parse("username", username)?;
            let d = hosted_domain(tx, actor, addr.domain()).await?;
            let taken = tx
                .count(
                    "SELECT COUNT(*) FROM admin_alias WHERE address = ? AND internal = ?",
                    args![addr.as_str(), false],
                )
                .await?;
            if taken > 0 {
                return Err(StoreError::Exists {
                    kind: "alias",
                    name: addr.to_string(),
                });
            }
            let used = tx
                .count(
                    "SELECT COUNT(*) FROM admin_mailbox WHERE domain_id = ?",
                    args![d.id],
                )
                .await?;
            access::check_domain_limit(tx, d.id, "mailboxes", used, 1).await?;
            if let Some(uid) = actor.user_id() {
                let mine = admin_mailbox_count(tx, uid).await?;
                access::check_user_limit(tx, actor, "mailboxes", mine, 1).await?;
            }
            let (q, use_domain) = mailbox_quota(tx, &d, *quota, 0).await?;
            Some((addr, d, q, use_domain))
        }
        None => None,
    };
    let now = Utc::now();
    let email = mailbox_domain
        .as_ref()
        .map_or(String::new(), |(a, ..)| a.to_string());
    let user_id = tx
        .insert(
            "INSERT INTO core_user (password, last_login, is_superuser, username, first_name, last_name, email, is_staff, is_active, date_joined, is_local, master_user, language, phone_number, secondary_email, _parameters) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'en', ?, ?, '{}')",
            args![
                stored,
                None::<DateTime<Utc>>,
                false,
                username,
                spec.first_name.as_str(),
                spec.last_name.as_str(),
                email,
                false,
                spec.enabled,
                now,
                true,
                false,
                None::<String>,
                None::<String>
            ],
        )
        .await? as i32;
    access::set_role(tx, user_id, spec.role).await?;
    if let Some(uid) = actor.user_id() {
        access::grant(tx, uid, Kind::User, user_id, true).await?;
    }
    if let Some((addr, d, quota, use_domain)) = mailbox_domain {
        let mb = tx
            .insert(
                "INSERT INTO admin_mailbox (address, quota, use_domain_quota, domain_id, user_id, creation, last_modification) VALUES (?, ?, ?, ?, ?, ?, ?)",
                args![addr.local_part(), quota, use_domain, d.id, user_id, now, now],
            )
            .await? as i32;
        aliases::create_internal(tx, addr.as_str(), Some(d.id), addr.as_str(), Some(mb)).await?;
        tx.exec(
            "DELETE FROM admin_quota WHERE username = ?",
            args![addr.as_str()],
        )
        .await?;
        tx.exec(
            "INSERT INTO admin_quota (username, bytes, messages) VALUES (?, 0, 0)",
            args![addr.as_str()],
        )
        .await?;
        if let Some(uid) = actor.user_id() {
            access::grant(tx, uid, Kind::Mailbox, mb, true).await?;
        }
    }
    for d in &spec.domains {
        grant_domain_in(tx, actor, username, d).await?;
    }
    audit::info(tx, &format!("Account {username} created")).await?;
    Ok(user_id)
}

async fn admin_mailbox_count(tx: &mut Tx, user_id: i32) -> Result<i64, StoreError> {
    let ct = access::content_type(tx, Kind::Domain).await?;
    tx.count(
        "SELECT COUNT(*) FROM admin_mailbox mb INNER JOIN core_objectaccess oa ON oa.object_id = mb.domain_id AND oa.content_type_id = ? WHERE oa.user_id = ?",
        args![ct, user_id],
    )
    .await
}

const USER_COLUMNS: &str = "u.id, u.username, u.first_name, u.last_name, u.email, u.is_active, u.language, u.last_login, u.date_joined, u.password";
const MAILBOX_JOIN: &str = "LEFT JOIN admin_mailbox mb ON mb.user_id = u.id LEFT JOIN admin_domain d ON mb.domain_id = d.id";

async fn from_row(tx: &mut Tx, r: &super::Row) -> Result<Account, StoreError> {
    let id = r.i32("id")?;
    let role = access::role_of(tx, id).await?;
    let (used, senders) = match r.opt_i32("mb_id")? {
        Some(mb) => {
            let full = format!("{}@{}", r.text("mb_address")?, r.text("d_name")?);
            let used = tx
                .count(
                    "SELECT bytes FROM admin_quota WHERE username = ?",
                    args![full.as_str()],
                )
                .await?;
            let senders = tx
                .rows(
                    "SELECT address FROM admin_senderaddress WHERE mailbox_id = ? ORDER BY address",
                    args![mb],
                )
                .await?
                .iter()
                .map(|s| s.text("address"))
                .collect::<Result<Vec<_>, _>>()?;
            (used, senders)
        }
        None => (0, Vec::new()),
    };
    let domains = if role.is_admin() && role != Role::SuperAdmins {
        let ct = access::content_type(tx, Kind::Domain).await?;
        tx.rows(
            "SELECT d.name FROM admin_domain d INNER JOIN core_objectaccess oa ON oa.object_id = d.id AND oa.content_type_id = ? WHERE oa.user_id = ? ORDER BY d.name",
            args![ct, id],
        )
        .await?
        .iter()
        .map(|d| d.text("name"))
        .collect::<Result<Vec<_>, _>>()?
    } else {
        Vec::new()
    };
    assemble(r, role, used, senders, domains)
}

/// An account from its row and what was looked up beside it.
fn assemble(
    r: &super::Row,
    role: Role,
    used: i64,
    senders: Vec<String>,
    domains: Vec<String>,
) -> Result<Account, StoreError> {
    let id = r.i32("id")?;
    let mailbox = match r.opt_i32("mb_id")? {
        Some(mb) => {
            let domain = r.text("d_name")?;
            let full = format!("{}@{domain}", r.text("mb_address")?);
            Some(Mailbox {
                id: mb,
                full_address: full,
                domain,
                quota: r.i32("mb_quota")?,
                use_domain_quota: r.bool("mb_use_domain_quota")?,
                quota_used_bytes: used,
                sender_addresses: senders,
            })
        }
        None => None,
    };
    let stored = r.text("password")?;
    Ok(Account {
        id,
        username: r.text("username")?,
        first_name: r.text("first_name")?,
        last_name: r.text("last_name")?,
        email: r.text("email")?,
        is_active: r.bool("is_active")?,
        role,
        language: r.text("language")?,
        last_login: r.opt_ts("last_login")?,
        date_joined: r.ts("date_joined")?,
        password_scheme: password::scheme_of(&stored)
            .map(|s| s.dovecot_name().to_string())
            .unwrap_or_else(|_| "unknown".into()),
        mailbox,
        domains,
    })
}

fn select_columns() -> String {
    format!("{USER_COLUMNS}, mb.id AS mb_id, mb.address AS mb_address, mb.quota AS mb_quota, mb.use_domain_quota AS mb_use_domain_quota, mb.domain_id AS mb_domain_id, d.name AS d_name")
}

fn select() -> String {
    format!(
        "SELECT {} FROM core_user u {MAILBOX_JOIN}",
        select_columns()
    )
}

/// Whether the actor may see/change this account: superadmins all; resellers and domain
/// admins the accounts whose mailbox is in their domains, the accounts they created, and
/// themselves; simple users only themselves.
async fn visible(tx: &mut Tx, actor: Actor, r: &super::Row) -> Result<bool, StoreError> {
    let Actor::User { id, role } = actor else {
        return Ok(true);
    };
    let uid = r.i32("id")?;
    if role == Role::SuperAdmins || uid == id {
        return Ok(true);
    }
    if role == Role::SimpleUsers {
        return Ok(false);
    }
    if let Some(d) = r.opt_i32("mb_domain_id")? {
        if access::can_admin_domain(tx, actor, d).await? {
            return Ok(true);
        }
    }
    let ct = access::content_type(tx, Kind::User).await?;
    Ok(tx
        .count(
            "SELECT COUNT(*) FROM core_objectaccess WHERE user_id = ? AND content_type_id = ? AND object_id = ?",
            args![id, ct, uid],
        )
        .await?
        > 0)
}

pub async fn get(tx: &mut Tx, actor: Actor, username: &str) -> Result<Account, StoreError> {
    let not_found = || StoreError::NotFound {
        kind: "account",
        name: username.to_string(),
    };
    let r = tx
        .row(
            &format!("{} WHERE u.username = ?", select()),
            args![username],
        )
        .await?
        .ok_or_else(not_found)?;
    if !visible(tx, actor, &r).await? {
        return Err(not_found());
    }
    from_row(tx, &r).await
}

/// The stored password hash (export, login).
pub async fn stored_password(
    tx: &mut Tx,
    actor: Actor,
    username: &str,
) -> Result<String, StoreError> {
    let a = get(tx, actor, username).await?;
    let r = tx
        .row("SELECT password FROM core_user WHERE id = ?", args![a.id])
        .await?
        .ok_or(StoreError::NotFound {
            kind: "account",
            name: username.to_string(),
        })?;
    r.text("password")
}

#[derive(Debug, Clone, Default)]
pub struct ListFilter<'a> {
    pub domain: Option<&'a str>,
    pub search: Option<&'a str>,
    pub role: Option<Role>,
    pub with_mailbox: Option<bool>,
}

/// Every account the actor may see that passes `filter`, by username.
pub async fn list(
    tx: &mut Tx,
    actor: Actor,
    filter: &ListFilter<'_>,
) -> Result<Vec<Account>, StoreError> {
    // One implementation: the paged query without a page (a few queries in all, not a few
    // per account).
    Ok(list_page(tx, actor, filter, None, 0).await?.items)
}

/// `limit` rows from `offset` of the accounts the actor may see (the rules of `visible`, in
/// SQL), by username, and how many there are in all. The page's roles, quotas, sender
/// addresses and domains come in four queries, not four per account.
pub async fn list_page(
    tx: &mut Tx,
    actor: Actor,
    filter: &ListFilter<'_>,
    limit: Option<i64>,
    offset: i64,
) -> Result<Page<Account>, StoreError> {
    let mut cond: Vec<&str> = Vec::new();
    let mut a: Vec<super::Value> = Vec::new();
    if let Actor::User { id, role } = actor {
        match role {
            Role::SuperAdmins => {}
            Role::SimpleUsers => {
                cond.push("u.id = ?");
                a.push(id.into());
            }
            Role::Resellers | Role::DomainAdmins => {
                let dom = access::content_type(tx, Kind::Domain).await?;
                let usr = access::content_type(tx, Kind::User).await?;
                cond.push("(u.id = ? OR mb.domain_id IN (SELECT object_id FROM core_objectaccess WHERE user_id = ? AND content_type_id = ?) OR u.id IN (SELECT object_id FROM core_objectaccess WHERE user_id = ? AND content_type_id = ?))");
                a.extend([id.into(), id.into(), dom.into(), id.into(), usr.into()]);
            }
        }
    }
    if let Some(d) = filter.domain {
        cond.push("d.name = ?");
        a.push(d.into());
    }
    if let Some(s) = filter.search.filter(|s| !s.is_empty()) {
        cond.push("u.username LIKE ? ESCAPE '!'");
        a.push(contains_pattern(s).into());
    }
    match filter.with_mailbox {
        Some(true) => cond.push("mb.id IS NOT NULL"),
        Some(false) => cond.push("mb.id IS NULL"),
        None => {}
    }
    const IN_GROUP: &str = "EXISTS (SELECT 1 FROM core_user_groups ug INNER JOIN auth_group g ON g.id = ug.group_id WHERE ug.user_id = u.id AND g.name = ?)";
    let in_group = |g: &str| IN_GROUP.replace("g.name = ?", &format!("g.name = '{g}'"));
    // Constant group names (no user input): the same precedence as access::role_of.
    let role_cond = match filter.role {
        None => None,
        Some(Role::SuperAdmins) => Some("u.is_superuser = ?".to_string()),
        Some(Role::Resellers) => Some(format!("u.is_superuser = ? AND {}", in_group("Resellers"))),
        Some(Role::DomainAdmins) => Some(format!(
            "u.is_superuser = ? AND {} AND NOT {}",
            in_group("DomainAdmins"),
            in_group("Resellers")
        )),
        Some(Role::SimpleUsers) => Some(format!(
            "u.is_superuser = ? AND NOT {} AND NOT {}",
            in_group("DomainAdmins"),
            in_group("Resellers")
        )),
    };
    if let Some(c) = &role_cond {
        cond.push(c);
        a.push((filter.role == Some(Role::SuperAdmins)).into());
    }
    let filter_sql = if cond.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", cond.join(" AND "))
    };
    let total = tx
        .count(
            &format!("SELECT COUNT(*) FROM core_user u {MAILBOX_JOIN}{filter_sql}"),
            &a,
        )
        .await?;
    // The page's ids first, through an index on username when the filter allows (PostgreSQL
    // drops the unused outer joins), then the joins for those rows only; a derived table
    // because MariaDB refuses `IN (... LIMIT)`.
    let sql = match limit {
        Some(l) => {
            a.extend([l.into(), offset.into()]);
            format!("SELECT {} FROM (SELECT u.id AS page_id FROM core_user u {MAILBOX_JOIN}{filter_sql} ORDER BY u.username LIMIT ? OFFSET ?) p INNER JOIN core_user u ON u.id = p.page_id {MAILBOX_JOIN} ORDER BY u.username", select_columns())
        }
        None => format!("{}{filter_sql} ORDER BY u.username", select()),
    };
    let rows = tx.rows(&sql, &a).await?;
    if rows.is_empty() {
        return Ok(Page {
            items: Vec::new(),
            total,
        });
    }
    let ids = rows
        .iter()
        .map(|r| r.i32("id"))
        .collect::<Result<Vec<_>, _>>()?;
    let roles = access::roles_of(tx, &ids).await?;
    let mut full = Vec::new();
    let mut mb_ids = Vec::new();
    for r in &rows {
        if let Some(mb) = r.opt_i32("mb_id")? {
            mb_ids.push(mb);
            full.push(format!("{}@{}", r.text("mb_address")?, r.text("d_name")?));
        }
    }
    let mut used = std::collections::HashMap::new();
    let mut senders: std::collections::HashMap<i32, Vec<String>> = Default::default();
    if !full.is_empty() {
        let fa: Vec<super::Value> = full.iter().map(|f| f.into()).collect();
        for q in tx
            .rows_in(
                "SELECT username, bytes FROM admin_quota WHERE username IN ({in})",
                &[],
                &fa,
            )
            .await?
        {
            used.insert(q.text("username")?, q.i64("bytes")?);
        }
        let ma: Vec<super::Value> = mb_ids.iter().map(|&i| i.into()).collect();
        for s in tx
            .rows_in(
                "SELECT mailbox_id, address FROM admin_senderaddress WHERE mailbox_id IN ({in}) ORDER BY address",
                &[],
                &ma,
            )
            .await?
        {
            senders
                .entry(s.i32("mailbox_id")?)
                .or_default()
                .push(s.text("address")?);
        }
    }
    let admins: Vec<i32> = ids
        .iter()
        .copied()
        .filter(|i| matches!(roles.get(i), Some(Role::Resellers | Role::DomainAdmins)))
        .collect();
    let mut doms: std::collections::HashMap<i32, Vec<String>> = Default::default();
    if !admins.is_empty() {
        let ct = access::content_type(tx, Kind::Domain).await?;
        let da: Vec<super::Value> = admins.iter().map(|&i| i.into()).collect();
        for d in tx
            .rows_in(
                "SELECT oa.user_id, d.name FROM admin_domain d INNER JOIN core_objectaccess oa ON oa.object_id = d.id AND oa.content_type_id = ? WHERE oa.user_id IN ({in}) ORDER BY d.name",
                &[ct.into()],
                &da,
            )
            .await?
        {
            doms.entry(d.i32("user_id")?)
                .or_default()
                .push(d.text("name")?);
        }
    }
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let id = r.i32("id")?;
        let role = roles.get(&id).copied().unwrap_or(Role::SimpleUsers);
        let (u, s) = match r.opt_i32("mb_id")? {
            Some(mb) => {
                let f = format!("{}@{}", r.text("mb_address")?, r.text("d_name")?);
                (
                    used.get(&f).copied().unwrap_or(0),
                    senders.remove(&mb).unwrap_or_default(),
                )
            }
            None => (0, Vec::new()),
        };
        out.push(assemble(
            r,
            role,
            u,
            s,
            doms.remove(&id).unwrap_or_default(),
        )?);
    }
    Ok(Page { items: out, total })
}

/// The username of account `id`, whoever may see it: callers then ask `get`.
pub async fn username_by_id(tx: &mut Tx, id: i32) -> Result<Option<String>, StoreError> {
    tx.row("SELECT username FROM core_user WHERE id = ?", args![id])
        .await?
        .map(|r| r.text("username"))
        .transpose()
}

/// Whether an account or an ordinary alias already uses this address (`accounts/exists/`).
pub async fn address_in_use(tx: &mut Tx, address: &str) -> Result<bool, StoreError> {
    Ok(tx
        .count(
            "SELECT COUNT(*) FROM core_user WHERE username = ? OR email = ?",
            args![address, address],
        )
        .await?
        + tx.count(
            "SELECT COUNT(*) FROM admin_alias WHERE address = ? AND internal = ?",
            args![address, false],
        )
        .await?
        > 0)
}

/// A row of `admin_senderaddress`: an extra address a mailbox may send as.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SenderAddress {
    pub id: i32,
    pub address: String,
    pub mailbox_id: i32,
    /// The mailbox's account.
    pub username: String,
}

const SENDER_SELECT: &str = "SELECT sa.id, sa.address, sa.mailbox_id, mb.domain_id, u.username FROM admin_senderaddress sa INNER JOIN admin_mailbox mb ON mb.id = sa.mailbox_id INNER JOIN core_user u ON u.id = mb.user_id";

fn sender_from_row(r: &super::Row) -> Result<SenderAddress, StoreError> {
    Ok(SenderAddress {
        id: r.i32("id")?,
        address: r.text("address")?,
        mailbox_id: r.i32("mailbox_id")?,
        username: r.text("username")?,
    })
}

/// Sender addresses of the mailboxes in the domains the actor administers.
pub async fn list_sender_addresses(
    tx: &mut Tx,
    actor: Actor,
) -> Result<Vec<SenderAddress>, StoreError> {
    if matches!(
        actor,
        Actor::User {
            role: Role::SimpleUsers,
            ..
        }
    ) {
        return Ok(Vec::new());
    }
    let visible = access::domain_ids(tx, actor).await?;
    let rows = tx
        .rows(&format!("{SENDER_SELECT} ORDER BY sa.address, sa.id"), &[])
        .await?;
    let mut out = Vec::new();
    for r in &rows {
        let d = r.i32("domain_id")?;
        if visible.as_ref().is_none_or(|v| v.contains(&d)) {
            out.push(sender_from_row(r)?);
        }
    }
    Ok(out)
}

pub async fn get_sender_address(
    tx: &mut Tx,
    actor: Actor,
    id: i32,
) -> Result<SenderAddress, StoreError> {
    let not_found = || StoreError::NotFound {
        kind: "sender address",
        name: format!("#{id}"),
    };
    let r = tx
        .row(&format!("{SENDER_SELECT} WHERE sa.id = ?"), args![id])
        .await?
        .ok_or_else(not_found)?;
    if !access::can_admin_domain(tx, actor, r.i32("domain_id")?).await? {
        return Err(not_found());
    }
    sender_from_row(&r)
}

/// The sender address `address` of `username`'s mailbox, after `add_sender_address`.
pub async fn find_sender_address(
    tx: &mut Tx,
    actor: Actor,
    username: &str,
    address: &str,
) -> Result<SenderAddress, StoreError> {
    let r = tx
        .row(
            &format!("{SENDER_SELECT} WHERE u.username = ? AND sa.address = ?"),
            args![username, address],
        )
        .await?
        .ok_or_else(|| StoreError::NotFound {
            kind: "sender address",
            name: address.to_string(),
        })?;
    get_sender_address(tx, actor, r.i32("id")?).await
}

/// Points sender address `id` at another address and/or mailbox (both visible to the actor).
pub async fn update_sender_address(
    tx: &mut Tx,
    actor: Actor,
    id: i32,
    address: &EmailAddress,
    username: &str,
) -> Result<SenderAddress, StoreError> {
    get_sender_address(tx, actor, id).await?;
    let a = manageable(tx, actor, username).await?;
    let mb = a
        .mailbox
        .ok_or_else(|| StoreError::refused("mailbox", "this account has no mailbox"))?;
    check_sender_address(tx, actor, address).await?;
    if tx
        .count(
            "SELECT COUNT(*) FROM admin_senderaddress WHERE address = ? AND mailbox_id = ? AND id <> ?",
            args![address.as_str(), mb.id, id],
        )
        .await?
        > 0
    {
        return Err(StoreError::Exists {
            kind: "sender address",
            name: address.to_string(),
        });
    }
    tx.exec(
        "UPDATE admin_senderaddress SET address = ?, mailbox_id = ? WHERE id = ?",
        args![address.as_str(), mb.id, id],
    )
    .await?;
    audit::info(
        tx,
        &format!("Sender address {address} of {username} modified"),
    )
    .await?;
    get_sender_address(tx, actor, id).await
}

/// The username owning mailbox `id`, whoever may see it: callers then ask `get`.
pub async fn username_by_mailbox_id(tx: &mut Tx, id: i32) -> Result<Option<String>, StoreError> {
    tx.row(
        "SELECT u.username FROM admin_mailbox mb INNER JOIN core_user u ON u.id = mb.user_id WHERE mb.id = ?",
        args![id],
    )
    .await?
    .map(|r| r.text("username"))
    .transpose()
}

pub async fn set_password(
    tx: &mut Tx,
    actor: Actor,
    username: &str,
    password: &Password,
) -> Result<(), StoreError> {
    let a = manageable(tx, actor, username).await?;
    let rounds = password_rounds(tx).await?;
    let stored = password.to_stored(rounds)?;
    tx.exec(
        "UPDATE core_user SET password = ? WHERE id = ?",
        args![stored, a.id],
    )
    .await?;
    // Whoever held the old password is out: every web session and the API token end.
    end_sessions(tx, a.id).await?;
    audit::info(tx, &format!("Password of {username} changed")).await
}

/// Ends every web session of an account and revokes its API token.
pub async fn end_sessions(tx: &mut Tx, user_id: i32) -> Result<(), StoreError> {
    super::sessions::delete_of_user(tx, user_id).await?;
    super::tokens::revoke_token(tx, user_id).await?;
    Ok(())
}

pub async fn update(
    tx: &mut Tx,
    actor: Actor,
    username: &str,
    patch: &AccountPatch,
    opts: &Options,
) -> Result<Account, StoreError> {
    let a = manageable(tx, actor, username).await?;
    if let Some(f) = &patch.first_name {
        check_person_name("first_name", f)?;
    }
    if let Some(l) = &patch.last_name {
        check_person_name("last_name", l)?;
    }
    if let Some(role) = patch.role {
        if !actor.is_super() && role != a.role {
            return Err(StoreError::Forbidden(
                "only superadmins change roles".into(),
            ));
        }
        if actor.user_id() == Some(a.id) && role != a.role {
            return Err(StoreError::Forbidden(
                "you cannot change your own role".into(),
            ));
        }
    }
    // Disabling yourself would lock you out (and leave the server without its admin).
    if actor.user_id() == Some(a.id) && patch.enabled == Some(false) && a.is_active {
        return Err(StoreError::Forbidden(
            "you cannot disable your own account".into(),
        ));
    }
    if let Some(role) = patch.role {
        access::set_role(tx, a.id, role).await?;
    }
    tx.exec(
        "UPDATE core_user SET first_name = ?, last_name = ?, is_active = ? WHERE id = ?",
        args![
            patch.first_name.clone().unwrap_or(a.first_name.clone()),
            patch.last_name.clone().unwrap_or(a.last_name.clone()),
            patch.enabled.unwrap_or(a.is_active),
            a.id
        ],
    )
    .await?;
    if let (Some(quota), Some(mb)) = (patch.quota, &a.mailbox) {
        let d = hosted_domain(tx, actor, &mb.domain).await?;
        let (q, use_domain) = mailbox_quota(tx, &d, quota, mb.quota).await?;
        tx.exec(
            "UPDATE admin_mailbox SET quota = ?, use_domain_quota = ?, last_modification = ? WHERE id = ?",
            args![q, use_domain, Utc::now(), mb.id],
        )
        .await?;
    }
    let mut name = a.username.clone();
    if let Some(new) = &patch.username {
        let new = parse_username(new)?;
        if new != a.username {
            rename(tx, actor, &a, &new, opts).await?;
            name = new;
        }
    }
    audit::info(tx, &format!("Account {name} modified")).await?;
    get(tx, actor, &name).await
}

/// Renames an account; with a mailbox, moves it (same or another administered domain) and
/// queues the move of its directory.
async fn rename(
    tx: &mut Tx,
    actor: Actor,
    a: &Account,
    new: &str,
    opts: &Options,
) -> Result<(), StoreError> {
    if tx
        .count(
            "SELECT COUNT(*) FROM core_user WHERE username = ?",
            args![new],
        )
        .await?
        > 0
    {
        return Err(StoreError::Exists {
            kind: "account",
            name: new.to_string(),
        });
    }
    let Some(mb) = &a.mailbox else {
        tx.exec(
            "UPDATE core_user SET username = ? WHERE id = ?",
            args![new, a.id],
        )
        .await?;
        return Ok(());
    };
    let addr = EmailAddress::parse("username", new)?;
    if tx
        .count(
            "SELECT COUNT(*) FROM admin_alias WHERE address = ? AND internal = ?",
            args![addr.as_str(), false],
        )
        .await?
        > 0
    {
        return Err(StoreError::Exists {
            kind: "alias",
            name: addr.to_string(),
        });
    }
    let d = hosted_domain(tx, actor, addr.domain()).await?;
    if addr.domain() != mb.domain {
        mailbox_quota(tx, &d, Some(mb.quota), 0).await?;
    }
    let old_home = home(
        opts,
        &mb.domain,
        mb.full_address.split('@').next().unwrap_or(""),
    );
    tx.exec(
        "UPDATE core_user SET username = ?, email = ? WHERE id = ?",
        args![addr.as_str(), addr.as_str(), a.id],
    )
    .await?;
    tx.exec(
        "UPDATE admin_mailbox SET address = ?, domain_id = ?, last_modification = ? WHERE id = ?",
        args![addr.local_part(), d.id, Utc::now(), mb.id],
    )
    .await?;
    tx.exec(
        "UPDATE admin_alias SET address = ?, domain_id = ? WHERE address = ? AND internal = ?",
        args![addr.as_str(), d.id, mb.full_address.as_str(), true],
    )
    .await?;
    tx.exec(
        "UPDATE modoboa_admin_aliasrecipient SET address = ? WHERE r_mailbox_id = ?",
        args![addr.as_str(), mb.id],
    )
    .await?;
    tx.exec(
        "UPDATE admin_quota SET username = ? WHERE username = ?",
        args![addr.as_str(), mb.full_address.as_str()],
    )
    .await?;
    if opts.handle_mailboxes_on_filesystem {
        tx.exec(
            "INSERT INTO admin_mailboxoperation (mailbox_id, type, argument) VALUES (?, 'rename', ?)",
            args![mb.id, old_home],
        )
        .await?;
    }
    Ok(())
}

pub async fn delete(
    tx: &mut Tx,
    actor: Actor,
    username: &str,
    opts: &Options,
) -> Result<(), StoreError> {
    let a = manageable(tx, actor, username).await?;
    if actor.user_id() == Some(a.id) {
        return Err(StoreError::Forbidden(
            "you cannot delete your own account".into(),
        ));
    }
    if !actor.is_super() && a.role.is_admin() && a.role != Role::DomainAdmins {
        return Err(StoreError::Forbidden(format!(
            "only superadmins delete {}",
            a.role
        )));
    }
    delete_in(tx, username, opts).await
}

/// Deletes an account and its mailbox (no access check: callers checked).
pub(super) async fn delete_in(
    tx: &mut Tx,
    username: &str,
    opts: &Options,
) -> Result<(), StoreError> {
    let a = get(tx, Actor::System, username).await?;
    if let Some(mb) = &a.mailbox {
        aliases::unhook_mailbox(tx, mb.id).await?;
        aliases::delete_internal(tx, &mb.full_address).await?;
        tx.exec(
            "DELETE FROM admin_senderaddress WHERE mailbox_id = ?",
            args![mb.id],
        )
        .await?;
        tx.exec(
            "UPDATE admin_mailboxoperation SET mailbox_id = NULL WHERE mailbox_id = ?",
            args![mb.id],
        )
        .await?;
        tx.exec(
            "DELETE FROM admin_quota WHERE username = ?",
            args![mb.full_address.as_str()],
        )
        .await?;
        access::forget_object(tx, Kind::Mailbox, mb.id).await?;
        tx.exec("DELETE FROM admin_mailbox WHERE id = ?", args![mb.id])
            .await?;
        if opts.handle_mailboxes_on_filesystem {
            let (local, domain) = mb.full_address.split_once('@').unwrap_or(("", ""));
            tx.exec(
                "INSERT INTO admin_mailboxoperation (mailbox_id, type, argument) VALUES (?, 'delete', ?)",
                args![None::<i32>, home(opts, domain, local)],
            )
            .await?;
        }
    }
    access::forget_object(tx, Kind::User, a.id).await?;
    tx.exec(
        "DELETE FROM core_objectaccess WHERE user_id = ?",
        args![a.id],
    )
    .await?;
    tx.exec(
        "DELETE FROM core_user_groups WHERE user_id = ?",
        args![a.id],
    )
    .await?;
    tx.exec(
        "DELETE FROM limits_userobjectlimit WHERE user_id = ?",
        args![a.id],
    )
    .await?;
    tx.exec("DELETE FROM core_user WHERE id = ?", args![a.id])
        .await?;
    audit::info(tx, &format!("Account {username} deleted")).await
}

/// Gives a domain admin or reseller access to a domain.
pub async fn grant_domain(
    tx: &mut Tx,
    actor: Actor,
    username: &str,
    domain: &DomainName,
) -> Result<(), StoreError> {
    grant_domain_in(tx, actor, username, domain).await?;
    audit::info(tx, &format!("{username} now administers {domain}")).await
}

async fn grant_domain_in(
    tx: &mut Tx,
    actor: Actor,
    username: &str,
    domain: &DomainName,
) -> Result<(), StoreError> {
    let a = manageable(tx, actor, username).await?;
    if !matches!(a.role, Role::DomainAdmins | Role::Resellers) {
        return Err(StoreError::refused(
            "role",
            format!(
                "{username} is {}: only domain admins and resellers are given domains",
                a.role
            ),
        ));
    }
    let d = domains::get(tx, actor, domain.as_str()).await?;
    let ct = access::content_type(tx, Kind::Domain).await?;
    let admins = tx
        .count(
            "SELECT COUNT(*) FROM core_objectaccess oa INNER JOIN core_user_groups ug ON ug.user_id = oa.user_id INNER JOIN auth_group g ON g.id = ug.group_id WHERE oa.content_type_id = ? AND oa.object_id = ? AND g.name = 'DomainAdmins'",
            args![ct, d.id],
        )
        .await?;
    if a.role == Role::DomainAdmins {
        access::check_domain_limit(tx, d.id, "domain_admins", admins, 1).await?;
    }
    access::grant(tx, a.id, Kind::Domain, d.id, false).await
}

pub async fn revoke_domain(
    tx: &mut Tx,
    actor: Actor,
    username: &str,
    domain: &DomainName,
) -> Result<(), StoreError> {
    let a = manageable(tx, actor, username).await?;
    let d = domains::get(tx, actor, domain.as_str()).await?;
    if access::revoke(tx, a.id, Kind::Domain, d.id).await? == 0 {
        return Err(StoreError::NotFound {
            kind: "domain access",
            name: format!("{username} → {domain}"),
        });
    }
    audit::info(tx, &format!("{username} no longer administers {domain}")).await
}

/// A sender address lets a mailbox send as it (Postfix's sender login map, and the From: rule):
/// an address of a hosted domain only by who administers that domain, an address outside every
/// hosted domain only by superadmins.
async fn check_sender_address(
    tx: &mut Tx,
    actor: Actor,
    address: &EmailAddress,
) -> Result<(), StoreError> {
    match domains::hosting_domain(tx, address.domain()).await? {
        Some(id) if access::can_admin_domain(tx, actor, id).await? => Ok(()),
        Some(_) => Err(StoreError::refused(
            "address",
            "is in a domain you do not administer",
        )),
        None if actor.is_super() => Ok(()),
        None => Err(StoreError::refused(
            "address",
            "is not in a hosted domain: only superadmins add outside sender addresses",
        )),
    }
}

pub async fn add_sender_address(
    tx: &mut Tx,
    actor: Actor,
    username: &str,
    address: &EmailAddress,
) -> Result<(), StoreError> {
    let a = manageable(tx, actor, username).await?;
    let mb = a
        .mailbox
        .ok_or_else(|| StoreError::refused("username", "has no mailbox"))?;
    check_sender_address(tx, actor, address).await?;
    if mb.sender_addresses.iter().any(|s| s == address.as_str()) {
        return Err(StoreError::Exists {
            kind: "sender address",
            name: address.to_string(),
        });
    }
    tx.exec(
        "INSERT INTO admin_senderaddress (address, mailbox_id) VALUES (?, ?)",
        args![address.as_str(), mb.id],
    )
    .await?;
    audit::info(tx, &format!("Sender address {address} added to {username}")).await
}

pub async fn remove_sender_address(
    tx: &mut Tx,
    actor: Actor,
    username: &str,
    address: &EmailAddress,
) -> Result<(), StoreError> {
    let a = manageable(tx, actor, username).await?;
    let mb = a
        .mailbox
        .ok_or_else(|| StoreError::refused("username", "has no mailbox"))?;
    if tx
        .exec(
            "DELETE FROM admin_senderaddress WHERE address = ? AND mailbox_id = ?",
            args![address.as_str(), mb.id],
        )
        .await?
        == 0
    {
        return Err(StoreError::NotFound {
            kind: "sender address",
            name: address.to_string(),
        });
    }
    audit::info(
        tx,
        &format!("Sender address {address} removed from {username}"),
    )
    .await
}

/// Sets one limit of an admin. Superadmins set the limits of resellers and domain admins;
/// resellers those of the domain admins they may see; nobody their own.
pub async fn set_limit(
    tx: &mut Tx,
    actor: Actor,
    username: &str,
    name: &str,
    max: i32,
) -> Result<(), StoreError> {
    let a = get(tx, actor, username).await?;
    if !matches!(a.role, Role::Resellers | Role::DomainAdmins) {
        return Err(StoreError::refused(
            "limit",
            format!(
                "{username} is {}: only resellers and domain admins have limits",
                a.role
            ),
        ));
    }
    if actor.user_id() == Some(a.id) {
        return Err(StoreError::Forbidden(
            "you cannot set your own limits".into(),
        ));
    }
    let allowed = match actor {
        Actor::System => true,
        Actor::User { role, .. } => {
            role == Role::SuperAdmins || (role == Role::Resellers && a.role == Role::DomainAdmins)
        }
    };
    if !allowed {
        return Err(StoreError::Forbidden(format!(
            "you cannot set the limits of {username}"
        )));
    }
    access::set_user_limit(tx, a.id, name, max).await?;
    audit::info(tx, &format!("Limit {name} of {username} set to {max}")).await
}

/// The limits of an admin the actor may see, every known limit listed (-1 when unset).
pub async fn limits(
    tx: &mut Tx,
    actor: Actor,
    username: &str,
) -> Result<Vec<(String, i32)>, StoreError> {
    let a = get(tx, actor, username).await?;
    let set = access::user_limits(tx, a.id).await?;
    Ok(access::LIMIT_NAMES
        .iter()
        .map(|n| {
            let v = set.iter().find(|(k, _)| k == n).map_or(-1, |(_, v)| *v);
            (n.to_string(), v)
        })
        .collect())
}

fn rank(role: Role) -> u8 {
    match role {
        Role::SuperAdmins => 3,
        Role::Resellers => 2,
        Role::DomainAdmins => 1,
        Role::SimpleUsers => 0,
    }
}

/// An account the actor may change (edit, password, delete, domains, sender addresses):
/// visible to it and, unless the actor is a superadmin, itself or of a lower role. A domain
/// admin sees an account whose mailbox is in its domain even when that account is a
/// superadmin's: seeing it must not let it take that account over.
pub async fn manageable(tx: &mut Tx, actor: Actor, username: &str) -> Result<Account, StoreError> {
    let a = get(tx, actor, username).await?;
    match actor {
        Actor::System => Ok(a),
        Actor::User { id, role } => {
            if role == Role::SuperAdmins || id == a.id || rank(a.role) < rank(role) {
                Ok(a)
            } else {
                Err(StoreError::Forbidden(format!(
                    "{role} cannot change the account of a {}",
                    a.role
                )))
            }
        }
    }
}

/// Checks a password for a login (web UI, API): Ok(None) when unknown, inactive or wrong.
pub async fn authenticate(
    tx: &mut Tx,
    username: &str,
    given: &str,
) -> Result<Option<Account>, StoreError> {
    let row = match parse_username(username) {
        Ok(u) => {
            tx.row(
                "SELECT id, username, password, is_active FROM core_user WHERE username = ?",
                args![u.as_str()],
            )
            .await?
        }
        Err(_) => None,
    };
    // Unknown and disabled accounts are checked against a dummy hash: every answer takes the
    // time of a hashing, so timing does not tell which accounts exist.
    let stored = match &row {
        Some(r) if r.bool("is_active")? => r.text("password")?,
        _ => password::dummy_hash(password_rounds(tx).await?),
    };
    let right = password::verify_bounded(stored, given.to_string()).await;
    let Some(r) = row.filter(|_| right) else {
        return Ok(None);
    };
    if !r.bool("is_active")? {
        return Ok(None);
    }
    tx.exec(
        "UPDATE core_user SET last_login = ? WHERE id = ?",
        args![Utc::now(), r.i32("id")?],
    )
    .await?;
    Ok(Some(get(tx, Actor::System, &r.text("username")?).await?))
}

/// A row of `admin_mailboxoperation`, with where its mailbox lives now (for a rename).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MailboxOperation {
    pub id: i32,
    pub kind: String,
    pub argument: String,
    /// `(domain, local part)` of the mailbox when it still exists.
    pub mailbox: Option<(String, String)>,
}

pub async fn mailbox_operations(tx: &mut Tx) -> Result<Vec<MailboxOperation>, StoreError> {
    let rows = tx
        .rows(
            "SELECT o.id, o.type, o.argument, m.address, d.name AS domain \
             FROM admin_mailboxoperation o \
             LEFT JOIN admin_mailbox m ON m.id = o.mailbox_id \
             LEFT JOIN admin_domain d ON d.id = m.domain_id \
             ORDER BY o.id",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let mailbox = match (r.opt_text("domain")?, r.opt_text("address")?) {
                (Some(d), Some(a)) => Some((d, a)),
                _ => None,
            };
            Ok(MailboxOperation {
                id: r.i32("id")?,
                kind: r.text("type")?,
                argument: r.text("argument")?,
                mailbox,
            })
        })
        .collect()
}

/// Removes a done operation; false when another run removed it first.
pub async fn delete_mailbox_operation(tx: &mut Tx, id: i32) -> Result<bool, StoreError> {
    Ok(tx
        .exec("DELETE FROM admin_mailboxoperation WHERE id = ?", args![id])
        .await?
        > 0)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InactiveAccount {
    pub id: i32,
    pub username: String,
    pub last_login: DateTime<Utc>,
}

/// Active, non-superuser accounts whose last login is before `cutoff`; accounts that never
/// logged in are not inactive (they may not have been handed out yet).
pub async fn inactive_accounts(
    tx: &mut Tx,
    cutoff: DateTime<Utc>,
) -> Result<Vec<InactiveAccount>, StoreError> {
    let rows = tx
        .rows(
            "SELECT id, username, last_login FROM core_user \
             WHERE is_active = ? AND is_superuser = ? AND last_login IS NOT NULL AND last_login < ? \
             ORDER BY username",
            args![true, false, cutoff],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(InactiveAccount {
                id: r.i32("id")?,
                username: r.text("username")?,
                last_login: r.ts("last_login")?,
            })
        })
        .collect()
}

/// Disables one account (only if it is still active and still not logged in since `cutoff`:
/// a login between the listing and now wins).
pub async fn disable_inactive_account(
    tx: &mut Tx,
    a: &InactiveAccount,
    cutoff: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let n = tx
        .exec(
            "UPDATE core_user SET is_active = ? WHERE id = ? AND is_active = ? AND last_login < ?",
            args![false, a.id, true, cutoff],
        )
        .await?;
    if n > 0 {
        audit::info(
            tx,
            &format!(
                "Account {} disabled: no login since {}",
                a.username,
                a.last_login.format("%Y-%m-%d")
            ),
        )
        .await?;
    }
    Ok(n > 0)
}

/// Accounts created in `[from, to)`.
pub async fn accounts_created_between(
    tx: &mut Tx,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<i64, StoreError> {
    tx.count(
        "SELECT COUNT(*) FROM core_user WHERE date_joined >= ? AND date_joined < ?",
        args![from, to],
    )
    .await
}
