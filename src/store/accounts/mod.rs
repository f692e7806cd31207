//! Accounts (`core_user`) and their mailboxes (`admin_mailbox`): creation with the mailbox's
//! internal self alias and quota row, quota rules against the domain, renames and deletions
//! (their directories queued in `mailbox_operations`), passwords, limits, logins, and the
//! domains an admin administers. `list` holds the list queries, `senders` who may send as an
//! address; their items are re-exported here, so callers say `accounts::list_page`.
//!
//! Accounts and domains use each other, the one documented circle inside the store: deleting a
//! domain deletes its accounts, and an account's mailbox lives in a domain.

pub mod list;
pub mod mailbox_operations;
pub mod senders;

pub use list::{
    first_joined, inactive_accounts, joined_between, list, list_page, superadmin_count,
    InactiveAccount, ListFilter,
};
pub use senders::{
    add_sender_address, find_sender_address, get_sender_address, list_sender_addresses,
    remove_sender_address, update_sender_address, SenderAddress, SenderPattern,
};

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::access::{self, Actor, Kind, Role};
use super::{aliases, audit, domains, modoboa_schema, StoreError, Tx};
use crate::args;
use crate::names::{DomainKind, DomainName, EmailAddress, Username};
use crate::password::{self, HashPolicy};

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
    pub fn to_stored(&self, policy: &HashPolicy) -> Result<String, StoreError> {
        self.check()?;
        match self {
            Password::Clear(p) => Ok(policy.hash(p)?),
            Password::Hashed(h) => Ok(h.clone()),
        }
    }
}

/// How new passwords are hashed: the `password_scheme` setting (default SHA512-CRYPT, as
/// Modoboa's) with the `password_rounds` setting (default 70000, Modoboa's) for SHA-crypt.
pub async fn hash_policy(tx: &mut Tx) -> Result<HashPolicy, StoreError> {
    let rounds = match super::parameters::setting(tx, "password_rounds").await? {
        Some(v) => v
            .parse()
            .map_err(|_| StoreError::refused("password_rounds", "must be a whole number"))?,
        None => password::DEFAULT_ROUNDS,
    };
    let scheme = match super::parameters::setting(tx, "password_scheme").await? {
        Some(v) => v
            .parse()
            .map_err(|_| StoreError::refused("password_scheme", "is not a scheme name"))?,
        None => HashPolicy::default().scheme(),
    };
    HashPolicy::new(scheme, rounds)
        .map_err(|e| StoreError::refused("password_scheme", e.to_string()))
}

/// Whether a login rehashes a password stored in another scheme (Modoboa's `update_scheme`,
/// default on).
async fn update_scheme(tx: &mut Tx) -> Result<bool, StoreError> {
    Ok(super::parameters::setting(tx, "password_update_scheme")
        .await?
        .as_deref()
        != Some("false"))
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
    /// Modoboa 2.x: SMTP AUTH only, no delivery, IMAP or POP3.
    pub is_send_only: bool,
    /// Modoboa 2.x's daily sending limit (None: none).
    pub message_limit: Option<i32>,
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
    pub phone_number: Option<String>,
    pub secondary_email: Option<String>,
    /// Dovecot's master user (`user*master` logins): superadmins only.
    pub master_user: bool,
    pub totp_enabled: bool,
    pub webauthn_enabled: bool,
    pub last_login: Option<DateTime<Utc>>,
    pub date_joined: DateTime<Utc>,
    /// `{SCHEME}` of the stored password, never the hash itself.
    pub password_scheme: String,
    pub mailbox: Option<Mailbox>,
    /// Domains this admin administers.
    pub domains: Vec<String>,
}

impl Account {
    /// The username as the store's functions take it (see `Username::existing`).
    pub fn username(&self) -> Username {
        Username::existing(&self.username)
    }
}

#[derive(Debug, Clone)]
pub struct AccountSpec {
    pub username: Username,
    pub password: Password,
    pub first_name: String,
    pub last_name: String,
    pub enabled: bool,
    pub role: Role,
    /// Create a mailbox (the username must then be an address in a hosted domain). `None`
    /// quota = the domain's default.
    pub mailbox: Option<Option<i32>>,
    /// The mailbox's address when it is not the username: administrators only (a SimpleUser's
    /// username is its address), as Modoboa allows (`admin` with `admin@example.org`).
    pub mailbox_address: Option<EmailAddress>,
    /// Domains given to a domain admin or reseller.
    pub domains: Vec<DomainName>,
    /// What Modoboa's API also takes; `Profile::default()` for none of it.
    pub profile: Profile,
    /// The mailbox's Modoboa 2.x settings.
    pub mailbox_settings: MailboxSettings,
}

/// The account fields beyond the login: language, phone number, secondary address, master
/// user. In a patch, None leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    pub language: Option<Language>,
    pub phone_number: Option<Option<PhoneNumber>>,
    pub secondary_email: Option<Option<EmailAddress>>,
    pub master_user: Option<bool>,
}

/// A mailbox's Modoboa 2.x settings (a 1.10 schema has neither); None leaves one as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MailboxSettings {
    pub is_send_only: Option<bool>,
    pub message_limit: Option<Option<i32>>,
}

/// The languages Modoboa offers (`core.constants.LANGUAGES`).
pub const LANGUAGES: &[&str] = &[
    "br", "cs", "de", "el", "en", "es", "fi", "fr", "it", "ja", "nl", "pl", "pt", "pt-br", "ro",
    "ru", "sv", "tr", "zh-hant",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Language(String);

impl Language {
    pub fn parse(field: &str, text: &str) -> Result<Language, StoreError> {
        let t = text.trim().to_ascii_lowercase();
        if LANGUAGES.contains(&t.as_str()) {
            Ok(Language(t))
        } else {
            Err(StoreError::refused(
                field,
                format!(
                    "\"{text}\" is not a valid choice (one of {})",
                    LANGUAGES.join(", ")
                ),
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A phone number in international (E.164) form: `+`, then 8 to 15 digits (spaces, dots,
/// dashes and parentheses between them are dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    pub fn parse(field: &str, text: &str) -> Result<PhoneNumber, StoreError> {
        let t = text.trim();
        let digits: String = t
            .chars()
            .skip(1)
            .filter(|c| !matches!(c, ' ' | '.' | '-' | '(' | ')'))
            .collect();
        if t.starts_with('+')
            && (8..=15).contains(&digits.len())
            && digits.chars().all(|c| c.is_ascii_digit())
            && !digits.starts_with('0')
        {
            Ok(PhoneNumber(format!("+{digits}")))
        } else {
            Err(StoreError::refused(
                field,
                "must be a phone number in international form: + and the country code, then 8 to 15 digits in all (e.g. +33612345678)",
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Default)]
pub struct AccountPatch {
    pub username: Option<Username>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub enabled: Option<bool>,
    pub role: Option<Role>,
    /// Some(None) = back to the domain's default quota.
    pub quota: Option<Option<i32>>,
    pub profile: Profile,
    pub mailbox_settings: MailboxSettings,
}

struct DomainRow {
    id: i32,
    quota: i32,
    default_mailbox_quota: i32,
}

async fn hosted_domain(
    tx: &mut Tx,
    actor: Actor,
    name: &DomainName,
) -> Result<DomainRow, StoreError> {
    let d = domains::get(tx, actor, name).await?;
    if d.kind != DomainKind::Domain {
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
    policy: HashPolicy,
) -> Result<Account, StoreError> {
    check_person_name("first_name", &spec.first_name)?;
    check_person_name("last_name", &spec.last_name)?;
    let stored = spec.password.to_stored(&policy)?;
    insert(tx, actor, spec, &stored).await?;
    get(tx, actor, &spec.username).await
}

/// `create` with the password already hashed (imports hash on all cores first); returns the
/// new account's id.
pub async fn insert(
    tx: &mut Tx,
    actor: Actor,
    spec: &AccountSpec,
    stored: &str,
) -> Result<i32, StoreError> {
    let username = &spec.username;
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
    refuse_taken_username(tx, username).await?;
    check_master_user(actor, spec.role, spec.profile.master_user.unwrap_or(false))?;
    let mailbox_domain = match &spec.mailbox {
        Some(quota) => {
            let addr = match &spec.mailbox_address {
                Some(a) if a.as_str() != username.as_str() => {
                    if spec.role == Role::SimpleUsers {
                        return Err(StoreError::refused(
                            "email",
                            "must be the username for a simple user (its username is its address)",
                        ));
                    }
                    a.clone()
                }
                _ => EmailAddress::parse("username", username.as_str())?,
            };
            refuse_taken_address(tx, &addr).await?;
            let d = hosted_domain(tx, actor, &addr.domain_name()).await?;
            refuse_alias_address(tx, &addr).await?;
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
    // Flags later Modoboa versions added (an adopted 2.x database): Django's default, false.
    let schema = tx.modoboa_schema().await?;
    let (flag_cols, flag_vals) = schema.user_flags();
    let user_id = tx
        .insert(
            &format!("INSERT INTO core_user (password, last_login, is_superuser, username, first_name, last_name, email, is_staff, is_active, date_joined, is_local, master_user, language, phone_number, secondary_email, _parameters{flag_cols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '{{}}'{flag_vals})"),
            args![
                stored,
                None::<DateTime<Utc>>,
                false,
                username.as_str(),
                spec.first_name.as_str(),
                spec.last_name.as_str(),
                email,
                false,
                spec.enabled,
                now,
                true,
                spec.profile.master_user.unwrap_or(false),
                spec.profile
                    .language
                    .as_ref()
                    .map_or("en", Language::as_str),
                spec.profile
                    .phone_number
                    .clone()
                    .flatten()
                    .map(|p| p.0),
                spec.profile
                    .secondary_email
                    .clone()
                    .flatten()
                    .map(|e| e.to_string())
            ],
        )
        .await? as i32;
    access::set_role(tx, user_id, spec.role).await?;
    access::grant_created(tx, actor, Kind::User, user_id).await?;
    if let Some((addr, d, quota, use_domain)) = mailbox_domain {
        let (send_only_col, send_only_val) = if schema.mailbox_send_only() {
            (", is_send_only", ", FALSE")
        } else {
            ("", "")
        };
        let mb = tx
            .insert(
                &format!("INSERT INTO admin_mailbox (address, quota, use_domain_quota, domain_id, user_id, creation, last_modification{send_only_col}) VALUES (?, ?, ?, ?, ?, ?, ?{send_only_val})"),
                args![addr.local_part(), quota, use_domain, d.id, user_id, now, now],
            )
            .await? as i32;
        set_mailbox_settings(tx, &schema, mb, &spec.mailbox_settings).await?;
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
        access::grant_created(tx, actor, Kind::Mailbox, mb).await?;
    }
    for d in &spec.domains {
        grant_domain_in(tx, actor, username, d).await?;
    }
    audit::info(tx, &format!("Account {username} created")).await?;
    Ok(user_id)
}

/// Dovecot's master users see every mailbox: only a superadmin makes one, and only of a
/// superadmin (Modoboa: "Not allowed for this role").
fn check_master_user(actor: Actor, role: Role, master_user: bool) -> Result<(), StoreError> {
    if !master_user {
        return Ok(());
    }
    if !actor.is_super() {
        return Err(StoreError::Forbidden(
            "only superadmins make master users".into(),
        ));
    }
    if role != Role::SuperAdmins {
        return Err(StoreError::refused(
            "master_user",
            "not allowed for this role (only a superadmin can be a master user)",
        ));
    }
    // Dovecot's master passdb is not configured by modobox: a flag that let nobody in would
    // be a promise not kept. An adopted account keeps the flag Modoboa gave it.
    Err(StoreError::refused(
        "master_user",
        "modobox does not set up Dovecot master logins: only false is accepted",
    ))
}

/// Writes a mailbox's Modoboa 2.x settings; on a 1.10 schema only their absence.
async fn set_mailbox_settings(
    tx: &mut Tx,
    schema: &modoboa_schema::Schema,
    mailbox_id: i32,
    m: &MailboxSettings,
) -> Result<(), StoreError> {
    if let Some(on) = m.is_send_only {
        if schema.mailbox_send_only() {
            tx.exec(
                "UPDATE admin_mailbox SET is_send_only = ? WHERE id = ?",
                args![on, mailbox_id],
            )
            .await?;
        } else if on {
            return Err(StoreError::refused(
                "mailbox.is_send_only",
                "needs a Modoboa 2.x database (this one has no send-only mailboxes)",
            ));
        }
    }
    if let Some(limit) = m.message_limit {
        if limit.is_some_and(|l| l < 0) {
            return Err(StoreError::refused(
                "mailbox.message_limit",
                "must be 0 or more messages a day, or null (no limit)",
            ));
        }
        if schema.message_limits().0 {
            tx.exec(
                "UPDATE admin_mailbox SET message_limit = ? WHERE id = ?",
                args![limit, mailbox_id],
            )
            .await?;
        } else if limit.is_some() {
            return Err(StoreError::refused(
                "mailbox.message_limit",
                "needs a Modoboa 2.x database (this one has no sending limits)",
            ));
        }
    }
    Ok(())
}

/// The profile fields a patch gives.
async fn set_profile(tx: &mut Tx, user_id: i32, p: &Profile) -> Result<(), StoreError> {
    if let Some(l) = &p.language {
        tx.exec(
            "UPDATE core_user SET language = ? WHERE id = ?",
            args![l.as_str(), user_id],
        )
        .await?;
    }
    if let Some(n) = &p.phone_number {
        tx.exec(
            "UPDATE core_user SET phone_number = ? WHERE id = ?",
            args![n.as_ref().map(|n| n.as_str().to_string()), user_id],
        )
        .await?;
    }
    if let Some(e) = &p.secondary_email {
        tx.exec(
            "UPDATE core_user SET secondary_email = ? WHERE id = ?",
            args![e.as_ref().map(|e| e.to_string()), user_id],
        )
        .await?;
    }
    if let Some(m) = p.master_user {
        tx.exec(
            "UPDATE core_user SET master_user = ? WHERE id = ?",
            args![m, user_id],
        )
        .await?;
    }
    Ok(())
}

/// Refuses a username another account holds.
async fn refuse_taken_username(tx: &mut Tx, username: &Username) -> Result<(), StoreError> {
    let n = tx
        .count(
            "SELECT COUNT(*) FROM core_user WHERE username = ?",
            args![username.as_str()],
        )
        .await?;
    if n > 0 {
        return Err(StoreError::Exists {
            kind: "account",
            name: username.to_string(),
        });
    }
    Ok(())
}

/// Refuses a mailbox address another account holds as its username or its address.
async fn refuse_taken_address(tx: &mut Tx, addr: &EmailAddress) -> Result<(), StoreError> {
    let n = tx
        .count(
            "SELECT COUNT(*) FROM core_user WHERE username = ? OR email = ?",
            args![addr.as_str(), addr.as_str()],
        )
        .await?;
    if n > 0 {
        return Err(StoreError::Exists {
            kind: "mailbox",
            name: addr.to_string(),
        });
    }
    Ok(())
}

/// Refuses a mailbox address an ordinary alias holds.
async fn refuse_alias_address(tx: &mut Tx, addr: &EmailAddress) -> Result<(), StoreError> {
    let n = tx
        .count(
            "SELECT COUNT(*) FROM admin_alias WHERE address = ? AND internal = ?",
            args![addr.as_str(), false],
        )
        .await?;
    if n > 0 {
        return Err(StoreError::Exists {
            kind: "alias",
            name: addr.to_string(),
        });
    }
    Ok(())
}

async fn admin_mailbox_count(tx: &mut Tx, user_id: i32) -> Result<i64, StoreError> {
    let ct = access::content_type(tx, Kind::Domain).await?;
    tx.count(
        "SELECT COUNT(*) FROM admin_mailbox mb INNER JOIN core_objectaccess oa ON oa.object_id = mb.domain_id AND oa.content_type_id = ? WHERE oa.user_id = ?",
        args![ct, user_id],
    )
    .await
}

const USER_COLUMNS: &str = "u.id, u.username, u.first_name, u.last_name, u.email, u.is_active, u.language, u.phone_number, u.secondary_email, u.master_user, u.last_login, u.date_joined, u.password";
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
            let senders = senders::addresses_of_mailbox(tx, mb).await?;
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
                is_send_only: r.bool("mb_send_only")?,
                message_limit: r.opt_i32("mb_message_limit")?,
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
        phone_number: r.opt_text("phone_number")?.filter(|p| !p.is_empty()),
        secondary_email: r.opt_text("secondary_email")?.filter(|e| !e.is_empty()),
        master_user: r.bool("master_user")?,
        totp_enabled: r.bool("u_totp")?,
        webauthn_enabled: r.bool("u_webauthn")?,
        last_login: r.opt_ts("last_login")?,
        date_joined: r.ts("date_joined")?,
        password_scheme: password::scheme_of(&stored)
            .map(|s| s.dovecot_name().to_string())
            .unwrap_or_else(|_| "unknown".into()),
        mailbox,
        domains,
    })
}

fn select_columns(schema: &modoboa_schema::Schema) -> String {
    format!("{USER_COLUMNS}, {}, {}, mb.id AS mb_id, mb.address AS mb_address, mb.quota AS mb_quota, mb.use_domain_quota AS mb_use_domain_quota, mb.domain_id AS mb_domain_id, d.name AS d_name", schema.user_flag_columns(), schema.mailbox_columns())
}

fn select(schema: &modoboa_schema::Schema) -> String {
    format!(
        "SELECT {} FROM core_user u {MAILBOX_JOIN}",
        select_columns(schema)
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

pub async fn get(tx: &mut Tx, actor: Actor, username: &Username) -> Result<Account, StoreError> {
    let not_found = || StoreError::not_found("account", username);
    let schema = tx.modoboa_schema().await?;
    let r = tx
        .row_or_not_found(
            &format!("{} WHERE u.username = ?", select(&schema)),
            args![username.as_str()],
            "account",
            username,
        )
        .await?;
    if !visible(tx, actor, &r).await? {
        return Err(not_found());
    }
    from_row(tx, &r).await
}

/// The stored password hash (export, login).
pub async fn stored_password(
    tx: &mut Tx,
    actor: Actor,
    username: &Username,
) -> Result<String, StoreError> {
    let a = get(tx, actor, username).await?;
    let r = tx
        .row_or_not_found(
            "SELECT password FROM core_user WHERE id = ?",
            args![a.id],
            "account",
            username,
        )
        .await?;
    r.text("password")
}

/// The username of account `id`, whoever may see it: callers then ask `get`.
pub async fn username_by_id(tx: &mut Tx, id: i32) -> Result<Option<String>, StoreError> {
    tx.row("SELECT username FROM core_user WHERE id = ?", args![id])
        .await?
        .map(|r| r.text("username"))
        .transpose()
}

/// Whether an account or an ordinary alias already uses this address (`accounts/exists/`).
pub async fn address_in_use(tx: &mut Tx, address: &EmailAddress) -> Result<bool, StoreError> {
    let address = address.as_str();
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

/// Whether `address` is a mailbox of this server (the profile signer asks).
pub async fn mailbox_exists(tx: &mut Tx, address: &EmailAddress) -> Result<bool, StoreError> {
    let Some((local, domain)) = address.as_str().split_once('@') else {
        return Ok(false);
    };
    Ok(tx
        .count(
            "SELECT COUNT(*) FROM admin_mailbox mb INNER JOIN admin_domain d ON d.id = mb.domain_id \
             WHERE mb.address = ? AND d.name = ?",
            args![local, domain],
        )
        .await?
        > 0)
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
    username: &Username,
    password: &Password,
) -> Result<(), StoreError> {
    let a = manageable(tx, actor, username).await?;
    let policy = hash_policy(tx).await?;
    let stored = password.to_stored(&policy)?;
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
    username: &Username,
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
    if patch.profile.master_user == Some(true) && !a.master_user {
        check_master_user(actor, patch.role.unwrap_or(a.role), true)?;
    }
    if patch.role.is_some_and(|r| r != Role::SuperAdmins)
        && (a.master_user && patch.profile.master_user != Some(false))
    {
        return Err(StoreError::refused(
            "master_user",
            "not allowed for this role: only a superadmin can be a master user (set it to false first)",
        ));
    }
    set_profile(tx, a.id, &patch.profile).await?;
    if let Some(mb) = &a.mailbox {
        let schema = tx.modoboa_schema().await?;
        set_mailbox_settings(tx, &schema, mb.id, &patch.mailbox_settings).await?;
    } else if patch.mailbox_settings != MailboxSettings::default() {
        return Err(StoreError::refused(
            "mailbox",
            "this account has no mailbox",
        ));
    }
    if let (Some(quota), Some(mb)) = (patch.quota, &a.mailbox) {
        let d = hosted_domain(tx, actor, &DomainName::parse("domain", &mb.domain)?).await?;
        let (q, use_domain) = mailbox_quota(tx, &d, quota, mb.quota).await?;
        tx.exec(
            "UPDATE admin_mailbox SET quota = ?, use_domain_quota = ?, last_modification = ? WHERE id = ?",
            args![q, use_domain, Utc::now(), mb.id],
        )
        .await?;
    }
    let mut name = Username::existing(&a.username);
    if let Some(new) = &patch.username {
        if new.as_str() != a.username {
            rename(tx, actor, &a, new, opts).await?;
            name = new.clone();
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
    new: &Username,
    opts: &Options,
) -> Result<(), StoreError> {
    refuse_taken_username(tx, new).await?;
    // A mailbox follows its username only when it is the username: an administrator's
    // own address (`admin` with `admin@example.org`) stays as it is.
    let mailbox = a
        .mailbox
        .as_ref()
        .filter(|mb| mb.full_address == a.username);
    let Some(mb) = mailbox else {
        tx.exec(
            "UPDATE core_user SET username = ? WHERE id = ?",
            args![new.as_str(), a.id],
        )
        .await?;
        return Ok(());
    };
    let addr = EmailAddress::parse("username", new.as_str())?;
    refuse_alias_address(tx, &addr).await?;
    let d = hosted_domain(tx, actor, &addr.domain_name()).await?;
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
        mailbox_operations::queue_rename(tx, mb.id, &old_home).await?;
    }
    Ok(())
}

pub async fn delete(
    tx: &mut Tx,
    actor: Actor,
    username: &Username,
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
    username: &Username,
    opts: &Options,
) -> Result<(), StoreError> {
    let a = get(tx, Actor::System, username).await?;
    if let Some(mb) = &a.mailbox {
        aliases::unhook_mailbox(tx, mb.id).await?;
        aliases::delete_internal(tx, &mb.full_address).await?;
        senders::delete_of_mailbox(tx, mb.id).await?;
        mailbox_operations::detach(tx, mb.id).await?;
        tx.exec(
            "DELETE FROM admin_quota WHERE username = ?",
            args![mb.full_address.as_str()],
        )
        .await?;
        access::forget_object(tx, Kind::Mailbox, mb.id).await?;
        let what = format!("mailbox {}", mb.full_address);
        modoboa_schema::clear_references(tx, "admin_mailbox", mb.id, &what).await?;
        tx.exec("DELETE FROM admin_mailbox WHERE id = ?", args![mb.id])
            .await?;
        if opts.handle_mailboxes_on_filesystem {
            let (local, domain) = mb.full_address.split_once('@').unwrap_or(("", ""));
            mailbox_operations::queue_delete(tx, &home(opts, domain, local)).await?;
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
    let what = format!("account {username}");
    modoboa_schema::clear_references(tx, "core_user", a.id, &what).await?;
    tx.exec("DELETE FROM core_user WHERE id = ?", args![a.id])
        .await?;
    audit::info(tx, &format!("Account {username} deleted")).await
}

/// Gives a domain admin or reseller access to a domain.
pub async fn grant_domain(
    tx: &mut Tx,
    actor: Actor,
    username: &Username,
    domain: &DomainName,
) -> Result<(), StoreError> {
    grant_domain_in(tx, actor, username, domain).await?;
    audit::info(tx, &format!("{username} now administers {domain}")).await
}

async fn grant_domain_in(
    tx: &mut Tx,
    actor: Actor,
    username: &Username,
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
    let d = domains::get(tx, actor, domain).await?;
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
    username: &Username,
    domain: &DomainName,
) -> Result<(), StoreError> {
    let a = manageable(tx, actor, username).await?;
    let d = domains::get(tx, actor, domain).await?;
    if access::revoke(tx, a.id, Kind::Domain, d.id).await? == 0 {
        return Err(StoreError::NotFound {
            kind: "domain access",
            name: format!("{username} → {domain}"),
        });
    }
    audit::info(tx, &format!("{username} no longer administers {domain}")).await
}

/// Sets one limit of an admin. Superadmins set the limits of resellers and domain admins;
/// resellers those of the domain admins they may see; nobody their own.
pub async fn set_limit(
    tx: &mut Tx,
    actor: Actor,
    username: &Username,
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
    username: &Username,
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
pub async fn manageable(
    tx: &mut Tx,
    actor: Actor,
    username: &Username,
) -> Result<Account, StoreError> {
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
    let row = match Username::parse(username) {
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
        _ => password::dummy_hash(hash_policy(tx).await?),
    };
    let right = password::verify_bounded(stored.clone(), given.to_string()).await;
    let Some(r) = row.filter(|_| right) else {
        return Ok(None);
    };
    if !r.bool("is_active")? {
        return Ok(None);
    }
    let id = r.i32("id")?;
    tx.exec(
        "UPDATE core_user SET last_login = ? WHERE id = ?",
        args![Utc::now(), id],
    )
    .await?;
    // A password kept in a legacy scheme (an adopted Modoboa's SSHA, fewer rounds...) is
    // stored again in the configured one now that it is known, as Modoboa does at login.
    let policy = hash_policy(tx).await?;
    if !policy.is_current(&stored) && update_scheme(tx).await? {
        if let Some(new) = password::hash_bounded(policy, given.to_string()).await {
            tx.exec(
                "UPDATE core_user SET password = ? WHERE id = ? AND password = ?",
                args![new, id, stored],
            )
            .await?;
            tracing::info!(
                "password of {} rehashed to {}",
                r.text("username")?,
                policy.scheme()
            );
        }
    }
    Ok(Some(
        get(tx, Actor::System, &Username::existing(&r.text("username")?)).await?,
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_are_kept_in_international_form() {
        for (text, kept) in [
            ("+33612345678", Some("+33612345678")),
            ("+33 6 12 34 56 78", Some("+33612345678")),
            ("+1 (415) 555-2671", Some("+14155552671")),
            ("0612345678", None),
            ("+0612345678", None),
            ("+336123", None),
            ("+3361234567890123", None),
            ("+33 6 12 34 56 7a", None),
        ] {
            assert_eq!(
                PhoneNumber::parse("phone_number", text)
                    .ok()
                    .map(|p| p.as_str().to_string()),
                kept.map(str::to_string),
                "{text:?}"
            );
        }
    }

    #[test]
    fn languages_are_modoboas_choices() {
        assert_eq!(Language::parse("language", "FR").unwrap().as_str(), "fr");
        assert_eq!(
            Language::parse("language", "pt-br").unwrap().as_str(),
            "pt-br"
        );
        let e = Language::parse("language", "xx").unwrap_err().to_string();
        assert!(e.contains("\"xx\" is not a valid choice"), "{e}");
    }
}
