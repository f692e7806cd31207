//! Validated names: every hostname, domain, address, selector and path that can reach a
//! configuration file, an SQL row or the filesystem is parsed here once, into a type that can
//! only hold a safe value. Templates and the store only ever see these types. Modoboa's
//! account and domain vocabulary lives here too: `Username` and `DomainKind`.

use std::fmt;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use unicode_script::{Script, UnicodeScript};

/// A value refused at the door: names the field, the rule broken and (escaped) what was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule} (got {shown})")]
pub struct NameError {
    pub field: String,
    pub rule: String,
    shown: String,
}

impl NameError {
    pub fn new(field: &str, rule: impl Into<String>, value: &str) -> Self {
        // Escape control characters and cap the length so a hostile value cannot forge
        // log lines or flood the terminal.
        let mut shown: String = value.chars().take(80).collect::<String>();
        if value.chars().count() > 80 {
            shown.push('…');
        }
        NameError {
            field: field.to_string(),
            rule: rule.into(),
            shown: format!("{shown:?}"),
        }
    }

    /// The same error, reported under another field name (e.g. `domain` → `csv line 3: domain`).
    pub fn in_field(mut self, field: &str) -> Self {
        self.field = field.to_string();
        self
    }
}

const MAX_LABEL: usize = 63;
const MAX_HOSTNAME: usize = 253;
/// Modoboa stores domain names in `admin_domain.name varchar(100)`.
const MAX_DOMAIN: usize = 100;
const MAX_LOCAL_PART: usize = 64;
/// `core_user.username varchar(254)`.
const MAX_ADDRESS: usize = 254;
/// `admin_domain.dkim_key_selector varchar(30)`.
const MAX_SELECTOR: usize = 30;
const MAX_PATH: usize = 1024;

fn refuse_controls(field: &str, value: &str) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::new(field, "must not be empty", value));
    }
    if value.chars().any(|c| c == '\n' || c == '\r') {
        return Err(NameError::new(
            field,
            "must not contain a line break",
            value,
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(NameError::new(
            field,
            "must not contain control characters",
            value,
        ));
    }
    if value.chars().any(|c| matches!(c, '"' | '\'' | '`')) {
        return Err(NameError::new(field, "must not contain quotes", value));
    }
    if value.chars().any(char::is_whitespace) {
        return Err(NameError::new(field, "must not contain spaces", value));
    }
    Ok(())
}

/// Scripts a single label may mix (UTS #39 "highly restrictive"): one script, or Latin with
/// the Han-based combinations of Japanese, Chinese and Korean. Anything else (Latin with
/// Cyrillic, Greek with Latin, ...) is the classic look-alike spoof and is refused.
fn single_script(label: &str) -> bool {
    let mut scripts: Vec<Script> = Vec::new();
    for c in label.chars() {
        let s = c.script();
        if matches!(s, Script::Common | Script::Inherited | Script::Unknown) {
            continue;
        }
        if !scripts.contains(&s) {
            scripts.push(s);
        }
    }
    if scripts.len() <= 1 {
        return true;
    }
    let allowed: [&[Script]; 3] = [
        &[
            Script::Latin,
            Script::Han,
            Script::Hiragana,
            Script::Katakana,
        ],
        &[Script::Latin, Script::Han, Script::Bopomofo],
        &[Script::Latin, Script::Han, Script::Hangul],
    ];
    allowed
        .iter()
        .any(|set| scripts.iter().all(|s| set.contains(s)))
}

/// Parses a DNS name (hostname or domain) into its lower-case ASCII (IDNA) form.
fn parse_dns_name(
    field: &str,
    value: &str,
    max_len: usize,
    min_labels: usize,
) -> Result<String, NameError> {
    refuse_controls(field, value)?;
    let trimmed = value.strip_suffix('.').unwrap_or(value);
    if trimmed.contains("..") {
        return Err(NameError::new(
            field,
            "must not contain an empty label (`..`)",
            value,
        ));
    }
    // Length rules first: IDNA rejects over-long input with a vaguer message.
    if trimmed.is_ascii() {
        if trimmed.len() > max_len {
            return Err(NameError::new(
                field,
                format!("must be at most {max_len} characters long in its ASCII form"),
                value,
            ));
        }
        if trimmed.split('.').any(|l| l.len() > MAX_LABEL) {
            return Err(NameError::new(
                field,
                format!("each label must be at most {MAX_LABEL} characters long"),
                value,
            ));
        }
    }
    for label in trimmed.split('.') {
        if !single_script(label) {
            return Err(NameError::new(
                field,
                "must not mix writing systems in one label (look-alike names are refused)",
                value,
            ));
        }
    }
    let ascii = idna::domain_to_ascii_strict(trimmed).map_err(|_| {
        NameError::new(
            field,
            "must be a valid domain name (letters, digits and hyphens in dot-separated labels)",
            value,
        )
    })?;
    let ascii = ascii.to_ascii_lowercase();
    if ascii.len() > max_len {
        return Err(NameError::new(
            field,
            format!("must be at most {max_len} characters long in its ASCII form"),
            value,
        ));
    }
    let labels: Vec<&str> = ascii.split('.').collect();
    if labels.len() < min_labels {
        return Err(NameError::new(
            field,
            format!(
                "must have at least {min_labels} dot-separated labels (a fully-qualified name)"
            ),
            value,
        ));
    }
    for label in &labels {
        if label.is_empty() {
            return Err(NameError::new(
                field,
                "must not contain an empty label",
                value,
            ));
        }
        if label.len() > MAX_LABEL {
            return Err(NameError::new(
                field,
                format!("each label must be at most {MAX_LABEL} characters long"),
                value,
            ));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(NameError::new(
                field,
                "labels may only contain letters, digits and hyphens",
                value,
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(NameError::new(
                field,
                "labels must not start or end with a hyphen",
                value,
            ));
        }
    }
    let tld = labels.last().copied().unwrap_or_default();
    if labels.len() > 1 && tld.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NameError::new(
            field,
            "must not end with a numeric label (that is an IP address, not a name)",
            value,
        ));
    }
    Ok(ascii)
}

macro_rules! string_newtype {
    ($name:ident, $parse:expr) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                #[allow(clippy::redundant_closure_call)]
                ($parse)(raw.as_str())
                    .map_err(|e: NameError| serde::de::Error::custom(e.rule_and_value()))
            }
        }
    };
}

impl NameError {
    /// For serde: the field name is added by the deserializer's path, so only say the rule.
    fn rule_and_value(&self) -> String {
        format!("{} (got {})", self.rule, self.shown)
    }
}

/// A fully-qualified host name (at least two labels), ASCII, lower-case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hostname(String);

impl Hostname {
    pub fn parse(field: &str, value: &str) -> Result<Self, NameError> {
        parse_dns_name(field, value, MAX_HOSTNAME, 2).map(Hostname)
    }
    /// The parent domain (`mail.example.com` → `example.com`), when it has two labels or more.
    pub fn parent_domain(&self) -> Option<DomainName> {
        let (_, rest) = self.0.split_once('.')?;
        DomainName::parse("hostname", rest).ok()
    }
}
string_newtype!(Hostname, |v| Hostname::parse("hostname", v));

/// A mail domain as Modoboa stores it (≤ 100 characters), ASCII, lower-case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainName(String);

impl DomainName {
    pub fn parse(field: &str, value: &str) -> Result<Self, NameError> {
        parse_dns_name(field, value, MAX_DOMAIN, 2).map(DomainName)
    }
}
string_newtype!(DomainName, |v| DomainName::parse("domain", v));

/// The part of an address before the `@`. Restricted to a conservative ASCII set because it
/// becomes a directory name under the mail root: no `/`, no `%`, no quotes, no leading dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocalPart(String);

impl LocalPart {
    pub fn parse(field: &str, value: &str) -> Result<Self, NameError> {
        refuse_controls(field, value)?;
        if value.len() > MAX_LOCAL_PART {
            return Err(NameError::new(
                field,
                format!("the local part must be at most {MAX_LOCAL_PART} characters long"),
                value,
            ));
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-' | b'='))
        {
            return Err(NameError::new(
                field,
                "the local part may only contain letters, digits and . _ + - =",
                value,
            ));
        }
        if value.starts_with('.') || value.ends_with('.') || value.contains("..") {
            return Err(NameError::new(
                field,
                "the local part must not start or end with a dot or contain `..`",
                value,
            ));
        }
        Ok(LocalPart(value.to_ascii_lowercase()))
    }
}
string_newtype!(LocalPart, |v| LocalPart::parse("local part", v));

/// `local@domain`, lower-case, the domain in ASCII form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailAddress {
    full: String,
    at: usize,
}

impl EmailAddress {
    pub fn parse(field: &str, value: &str) -> Result<Self, NameError> {
        refuse_controls(field, value)?;
        let (local, domain) = value.rsplit_once('@').ok_or_else(|| {
            NameError::new(field, "must be an address of the form local@domain", value)
        })?;
        let local = LocalPart::parse(field, local)?;
        let domain = DomainName::parse(field, domain)?;
        let full = format!("{local}@{domain}");
        if full.len() > MAX_ADDRESS {
            return Err(NameError::new(
                field,
                format!("must be at most {MAX_ADDRESS} characters long"),
                value,
            ));
        }
        Ok(EmailAddress {
            at: local.as_str().len(),
            full,
        })
    }
    pub fn from_parts(local: &LocalPart, domain: &DomainName) -> Result<Self, NameError> {
        Self::parse("address", &format!("{local}@{domain}"))
    }
    pub fn as_str(&self) -> &str {
        &self.full
    }
    pub fn local_part(&self) -> &str {
        &self.full[..self.at]
    }
    pub fn domain(&self) -> &str {
        &self.full[self.at + 1..]
    }
    /// The domain part, already checked as one when the address was parsed.
    pub fn domain_name(&self) -> DomainName {
        DomainName(self.domain().to_string())
    }
}
impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}
impl Serialize for EmailAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.full)
    }
}
impl<'de> Deserialize<'de> for EmailAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        EmailAddress::parse("address", &raw)
            .map_err(|e| serde::de::Error::custom(e.rule_and_value()))
    }
}

/// An account's login (`core_user.username`): an address for accounts with a mailbox, or a
/// plain login name (≤ 150 letters, digits and `. _ - +`) for admins; lower-case either way.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Username {
    Address(EmailAddress),
    Login(String),
}

/// A refused username: a malformed address says why (like any address); a login name with
/// other characters gets the username rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    #[error(transparent)]
    Address(#[from] NameError),
    #[error("username: {}", Username::LOGIN_RULE)]
    Login,
}

/// Django's `username` column holds at most 150 characters.
const MAX_LOGIN: usize = 150;

impl Username {
    pub const LOGIN_RULE: &'static str =
        "must be an address or a login of letters, digits and . _ - +";

    pub fn parse(value: &str) -> Result<Self, UsernameError> {
        let v = value.trim();
        if v.contains('@') {
            return Ok(Username::Address(EmailAddress::parse("username", v)?));
        }
        let ok = !v.is_empty()
            && v.len() <= MAX_LOGIN
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'));
        if !ok {
            return Err(UsernameError::Login);
        }
        Ok(Username::Login(v.to_ascii_lowercase()))
    }
    /// The username of an existing account as stored in `core_user` (or as given to find one):
    /// parsed when today's rule takes it unchanged; otherwise kept as it is, since an adopted
    /// Modoboa database may hold names that rule refuses and those accounts must stay
    /// reachable. Text that names no account is then simply not found. Not for new names: those
    /// go through `parse`.
    pub fn existing(value: &str) -> Self {
        match Username::parse(value) {
            Ok(u) if u.as_str() == value => u,
            _ => Username::Login(value.to_string()),
        }
    }
    pub fn as_str(&self) -> &str {
        match self {
            Username::Address(a) => a.as_str(),
            Username::Login(l) => l,
        }
    }
    /// The address, for an account named by one (the only kind that may have a mailbox).
    pub fn address(&self) -> Option<&EmailAddress> {
        match self {
            Username::Address(a) => Some(a),
            Username::Login(_) => None,
        }
    }
}
impl From<EmailAddress> for Username {
    fn from(a: EmailAddress) -> Self {
        Username::Address(a)
    }
}
impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl Serialize for Username {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What a domain row is (Modoboa's `admin_domain.type`): a hosted domain or a relay domain.
/// The stored and shown strings are Modoboa's, `domain` and `relaydomain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DomainKind {
    Domain,
    RelayDomain,
}

impl DomainKind {
    pub fn parse(field: &str, value: &str) -> Result<Self, NameError> {
        match value {
            "domain" => Ok(DomainKind::Domain),
            "relaydomain" => Ok(DomainKind::RelayDomain),
            _ => Err(NameError::new(
                field,
                "must be domain or relaydomain",
                value,
            )),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            DomainKind::Domain => "domain",
            DomainKind::RelayDomain => "relaydomain",
        }
    }
}
impl fmt::Display for DomainKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl Serialize for DomainKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A DKIM selector: dot-separated labels of lower-case letters, digits and hyphens (≤ 30).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DkimSelector(String);

impl DkimSelector {
    pub fn parse(field: &str, value: &str) -> Result<Self, NameError> {
        refuse_controls(field, value)?;
        if value.len() > MAX_SELECTOR {
            return Err(NameError::new(
                field,
                format!("must be at most {MAX_SELECTOR} characters long"),
                value,
            ));
        }
        let ok = value.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
        if !ok {
            return Err(NameError::new(
                field,
                "must be dot-separated labels of lower-case letters, digits and hyphens",
                value,
            ));
        }
        Ok(DkimSelector(value.to_string()))
    }
}
string_newtype!(DkimSelector, |v| DkimSelector::parse("selector", v));

/// An absolute filesystem path that is safe to write into any configuration file: no `..`,
/// no `.` components, no characters a config syntax or a shell would interpret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SafePath(PathBuf);

impl SafePath {
    pub fn parse(field: &str, value: &str) -> Result<Self, NameError> {
        refuse_controls(field, value)?;
        if value.len() > MAX_PATH {
            return Err(NameError::new(
                field,
                format!("must be at most {MAX_PATH} characters long"),
                value,
            ));
        }
        if !value.starts_with('/') {
            return Err(NameError::new(field, "must be an absolute path", value));
        }
        if !value.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-' | b'+' | b'@')
        }) {
            return Err(NameError::new(
                field,
                "may only contain letters, digits and / . _ - + @",
                value,
            ));
        }
        let path = Path::new(value);
        for c in path.components() {
            match c {
                Component::ParentDir => {
                    return Err(NameError::new(field, "must not contain `..`", value))
                }
                Component::CurDir => {
                    return Err(NameError::new(
                        field,
                        "must not contain `.` components",
                        value,
                    ))
                }
                _ => {}
            }
        }
        // `Path::components` silently drops interior `.`: look at the raw text too.
        if value.split('/').any(|c| c == "..") {
            return Err(NameError::new(field, "must not contain `..`", value));
        }
        if value.split('/').any(|c| c == ".") {
            return Err(NameError::new(
                field,
                "must not contain `.` components",
                value,
            ));
        }
        let normal: PathBuf = path.components().collect();
        if normal == Path::new("/") {
            return Err(NameError::new(
                field,
                "must not be the root directory",
                value,
            ));
        }
        Ok(SafePath(normal))
    }
    pub fn as_path(&self) -> &Path {
        &self.0
    }
    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are admitted by `parse`, so the path is always valid UTF-8.
        self.0.to_str().unwrap_or_default()
    }
    /// A child path, for names that are themselves validated (a domain, a local part).
    pub fn join(&self, name: &str) -> Result<SafePath, NameError> {
        SafePath::parse("path", &format!("{}/{name}", self.as_str()))
    }
}
impl fmt::Display for SafePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl Serialize for SafePath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
impl<'de> Deserialize<'de> for SafePath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        SafePath::parse("path", &raw).map_err(|e| serde::de::Error::custom(e.rule_and_value()))
    }
}

/// A Unix user or group name (`vmail`, `opendkim`): lower-case, starts with a letter or `_`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnixName(String);

impl UnixName {
    pub fn parse(field: &str, value: &str) -> Result<Self, NameError> {
        refuse_controls(field, value)?;
        let mut bytes = value.bytes();
        let first_ok = bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
        if !first_ok
            || value.len() > 32
            || !bytes
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err(NameError::new(
                field,
                "must be a Unix name: up to 32 lower-case letters, digits, _ or -, starting with a letter or _",
                value,
            ));
        }
        Ok(UnixName(value.to_string()))
    }
}
string_newtype!(UnixName, |v| UnixName::parse("user", v));

/// A database server address: an IP address, `localhost` or a fully-qualified host name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DbHost(String);

impl DbHost {
    pub fn parse(field: &str, value: &str) -> Result<Self, NameError> {
        refuse_controls(field, value)?;
        if value.parse::<std::net::IpAddr>().is_ok() || value == "localhost" {
            return Ok(DbHost(value.to_string()));
        }
        Hostname::parse(field, value).map(|h| DbHost(h.0))
    }
}
string_newtype!(DbHost, |v| DbHost::parse("host", v));

/// A database or role name: lower-case letters, digits and `_`, never needing quotes in SQL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DbIdent(String);

impl DbIdent {
    pub fn parse(field: &str, value: &str) -> Result<Self, NameError> {
        refuse_controls(field, value)?;
        let mut bytes = value.bytes();
        let first_ok = bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
        if !first_ok
            || value.len() > 63
            || !bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(NameError::new(
                field,
                "must be up to 63 lower-case letters, digits or _, starting with a letter or _",
                value,
            ));
        }
        Ok(DbIdent(value.to_string()))
    }
}
string_newtype!(DbIdent, |v| DbIdent::parse("name", v));

// ---- network names: URLs modobox fetches, networks an MX may be in ----

/// An `https://` URL, or `http://` to a loopback address.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpUrl(url::Url);

impl HttpUrl {
    pub fn parse(field: &str, value: &str) -> Result<Self, NameError> {
        let u = url::Url::parse(value.trim())
            .map_err(|e| NameError::new(field, format!("must be an https:// URL ({e})"), value))?;
        match u.scheme() {
            "https" => {}
            "http" if is_loopback(&u) => {}
            "http" => {
                return Err(NameError::new(
                    field,
                    "must be an https:// URL (plain http:// only to a loopback address)",
                    value,
                ))
            }
            _ => return Err(NameError::new(field, "must be an https:// URL", value)),
        }
        if u.host().is_none() {
            return Err(NameError::new(field, "must name a host", value));
        }
        if !u.username().is_empty() || u.password().is_some() {
            return Err(NameError::new(
                field,
                "must not carry credentials (user:password@)",
                value,
            ));
        }
        Ok(HttpUrl(u))
    }

    pub fn as_url(&self) -> &url::Url {
        &self.0
    }

    /// `path` resolved against this URL as a directory (`https://h/1` + `versions/` →
    /// `https://h/1/versions/`).
    pub fn join_dir(&self, path: &str) -> Result<HttpUrl, NameError> {
        let mut base = self.0.clone();
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let joined = base.join(path).map_err(|e| {
            NameError::new("url", format!("cannot add {path} ({e})"), self.as_str())
        })?;
        Ok(HttpUrl(joined))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

impl fmt::Debug for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HttpUrl({})", self.0)
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl Serialize for HttpUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        HttpUrl::parse("url", &raw).map_err(|e| serde::de::Error::custom(e.rule))
    }
}

/// A network in CIDR notation (`192.0.2.0/24`, `2001:db8::/32`); a bare address is a /32 or
/// /128. The host bits must be zero, so a typo like `192.0.2.1/24` is refused, not guessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network(ipnet::IpNet);

impl Network {
    pub fn parse(field: &str, value: &str) -> Result<Self, NameError> {
        let text = value.trim();
        let net = if text.contains('/') {
            text.parse::<ipnet::IpNet>().map_err(|_| {
                NameError::new(
                    field,
                    "must be a network in CIDR notation (address/prefix length, e.g. 192.0.2.0/24)",
                    value,
                )
            })?
        } else {
            let ip: IpAddr = text.parse().map_err(|_| {
                NameError::new(
                    field,
                    "must be a network in CIDR notation (address/prefix length, e.g. 192.0.2.0/24)",
                    value,
                )
            })?;
            ipnet::IpNet::from(ip)
        };
        if net.trunc() != net {
            return Err(NameError::new(
                field,
                format!(
                    "must have its host bits zero (did you mean {}?)",
                    net.trunc()
                ),
                value,
            ));
        }
        Ok(Network(net))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip)
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for Network {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        // The field name comes from the deserializer's path; say the rule only.
        Network::parse("network", &raw).map_err(|e| serde::de::Error::custom(e.rule))
    }
}

/// Where backups are kept: a restic repository, given as an absolute local path or as
/// `<backend>:<location>` for restic's other backends (`sftp:`, `rest:`, `s3:`, ...). The text
/// may hold credentials (`rest:https://user:password@host/`): show it with `redacted`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRepository(String);

/// The restic backends a repository may name.
pub const BACKUP_BACKENDS: [&str; 9] = [
    "local", "sftp", "rest", "s3", "b2", "azure", "gs", "swift", "rclone",
];

impl BackupRepository {
    pub fn parse(field: &str, value: &str) -> Result<Self, NameError> {
        refuse_controls(field, value)?;
        if value.trim() != value || value.is_empty() || value.len() > 1024 {
            return Err(NameError::new(
                field,
                "must be 1 to 1024 characters without surrounding spaces",
                value,
            ));
        }
        if value.starts_with('/') {
            SafePath::parse(field, value)?;
            return Ok(BackupRepository(value.to_string()));
        }
        match value.split_once(':') {
            Some((backend, rest)) if BACKUP_BACKENDS.contains(&backend) && !rest.is_empty() => {
                if backend == "local" && !rest.starts_with('/') {
                    return Err(NameError::new(
                        field,
                        "local: needs an absolute path",
                        value,
                    ));
                }
                Ok(BackupRepository(value.to_string()))
            }
            _ => Err(NameError::new(
                field,
                format!(
                    "must be an absolute path or <backend>:<location> with a restic backend ({})",
                    BACKUP_BACKENDS.join(", ")
                ),
                value,
            )),
        }
    }

    /// The text restic gets (through its environment, never a command line).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// For messages and logs: a password inside a URL (`user:password@`) replaced by `***`.
    pub fn redacted(&self) -> String {
        let Some(at) = self.0.rfind('@') else {
            return self.0.clone();
        };
        let head = &self.0[..at];
        let Some(slashes) = head.find("//") else {
            return self.0.clone();
        };
        match head[slashes + 2..].find(':') {
            Some(colon) => format!("{}:***{}", &head[..slashes + 2 + colon], &self.0[at..]),
            None => self.0.clone(),
        }
    }

    /// A local repository's directory, when it is one.
    pub fn local_path(&self) -> Option<&Path> {
        let path = self.0.strip_prefix("local:").unwrap_or(&self.0);
        path.starts_with('/').then(|| Path::new(path))
    }
}

impl fmt::Display for BackupRepository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for BackupRepository {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for BackupRepository {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        BackupRepository::parse("repository", &raw).map_err(|e| serde::de::Error::custom(e.rule))
    }
}

/// What a client typed, fit for a log line or a reply: control characters shown as `?`, at
/// most 100 characters.
pub fn printable(s: &str) -> String {
    s.chars()
        .take(100)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_repositories() {
        for ok in [
            "/var/backups/modobox",
            "local:/mnt/usb/modobox",
            "sftp:backup@host.example:/srv/restic",
            "rest:https://user:pw@backup.example:8000/mail",
            "s3:s3.amazonaws.com/bucket/mail",
        ] {
            assert!(
                BackupRepository::parse("backup.repository", ok).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "",
            " /var/backups",
            "backups",
            "ftp:host/x",
            "sftp:",
            "local:relative",
            "/var/../etc",
            "/var/backups\n",
        ] {
            let e = BackupRepository::parse("backup.repository", bad).unwrap_err();
            assert_eq!(e.field, "backup.repository", "{bad}");
        }
        let r = BackupRepository::parse("r", "rest:https://user:secret@host:8000/x").unwrap();
        assert_eq!(r.redacted(), "rest:https://user:***@host:8000/x");
        assert!(!r.to_string().contains("secret"));
        assert_eq!(
            BackupRepository::parse("r", "local:/srv/b")
                .unwrap()
                .local_path(),
            Some(Path::new("/srv/b"))
        );
        assert_eq!(
            BackupRepository::parse("r", "sftp:h:/x")
                .unwrap()
                .local_path(),
            None
        );
    }

    #[test]
    fn usernames_are_addresses_or_plain_logins_in_lower_case() {
        let a = Username::parse(" Joe@Example.COM ").unwrap();
        assert_eq!(a.as_str(), "joe@example.com");
        assert!(a.address().is_some());
        let l = Username::parse("Admin.1+x").unwrap();
        assert_eq!((l.as_str(), l.address()), ("admin.1+x", None));
        assert_eq!(Username::parse("a b"), Err(UsernameError::Login));
        assert_eq!(Username::parse(""), Err(UsernameError::Login));
        assert_eq!(Username::parse(&"a".repeat(151)), Err(UsernameError::Login));
        assert!(matches!(
            Username::parse("a@b@"),
            Err(UsernameError::Address(_))
        ));
        assert_eq!(
            UsernameError::Login.to_string(),
            "username: must be an address or a login of letters, digits and . _ - +"
        );
    }

    #[test]
    fn domain_kinds_keep_modoboa_strings() {
        for k in [DomainKind::Domain, DomainKind::RelayDomain] {
            assert_eq!(DomainKind::parse("type", k.as_str()), Ok(k));
        }
        assert!(DomainKind::parse("type", "Domain").is_err());
    }

    #[test]
    fn idn_is_converted_to_ascii() {
        let d = DomainName::parse("domain", "Bücher.Example").unwrap();
        assert_eq!(d.as_str(), "xn--bcher-kva.example");
        let h = Hostname::parse("hostname", "mail.例え.jp").unwrap();
        assert!(h.as_str().starts_with("mail.xn--"));
    }

    #[test]
    fn normal_values_pass() {
        assert_eq!(
            Hostname::parse("h", "Mail.Example.COM.").unwrap().as_str(),
            "mail.example.com"
        );
        let a = EmailAddress::parse("a", "John.Doe+tag@Example.org").unwrap();
        assert_eq!(a.local_part(), "john.doe+tag");
        assert_eq!(a.domain(), "example.org");
        assert_eq!(
            SafePath::parse("p", "/srv/vmail/").unwrap().as_str(),
            "/srv/vmail"
        );
        assert_eq!(
            DkimSelector::parse("s", "modoboa").unwrap().as_str(),
            "modoboa"
        );
        assert_eq!(
            Hostname::parse("h", "mail.example.com")
                .unwrap()
                .parent_domain()
                .unwrap()
                .as_str(),
            "example.com"
        );
    }

    #[test]
    fn error_names_field_and_rule() {
        let e = Hostname::parse("hostname", "mail\n.example.com").unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("hostname: must not contain a line break"),
            "{text}"
        );
        assert!(!text.contains('\n'));
    }

    #[test]
    fn mixed_scripts_are_refused() {
        // Latin "p" + Cyrillic "а" (U+0430).
        let e = DomainName::parse("domain", "p\u{0430}ypal.com").unwrap_err();
        assert!(e.rule.contains("writing systems"));
        // Japanese mixes are legitimate.
        DomainName::parse("domain", "日本語ひらがなカタカナ.jp").unwrap();
    }
}
