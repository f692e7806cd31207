//! Modoboa's CSV format (`;`-separated, one object per line): import all-or-nothing, export of
//! domains and identities. A file is parsed and checked completely before anything is written;
//! passwords are hashed on every core; then one transaction applies it, and any refusal names
//! the line and the field and rolls everything back.

use std::io::{Read, Write};

use serde::Serialize;

use super::access::{Actor, Role};
use super::accounts::{self, AccountSpec, Password};
use super::aliases::{self, AliasAddress, AliasSpec};
use super::domains::{self, DomainSpec, Relay};
use super::{Store, StoreError};
use crate::names::{DomainName, Username};
use crate::password::HashPolicy;

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("line {line}: {field}: {rule}")]
    Line {
        line: usize,
        field: String,
        rule: String,
    },
    #[error("line {line}: {source}")]
    Store {
        line: usize,
        #[source]
        source: StoreError,
    },
    #[error(transparent)]
    Db(#[from] StoreError),
    #[error("reading the file: {0}")]
    Read(String),
    #[error("writing: {0}")]
    Write(String),
}

fn refuse(line: usize, field: &str, rule: impl Into<String>) -> TransferError {
    TransferError::Line {
        line,
        field: field.to_string(),
        rule: rule.into(),
    }
}

/// Modoboa's truth values; anything else is false.
pub fn parse_bool(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "true" | "1" | "yes" | "y"
    )
}

fn bool_text(v: bool) -> &'static str {
    if v {
        "True"
    } else {
        "False"
    }
}

#[derive(Debug)]
enum Record {
    Domain {
        name: DomainName,
        spec: DomainSpec,
    },
    DomainAlias {
        name: DomainName,
        target: DomainName,
        enabled: bool,
    },
    RelayDomain {
        name: DomainName,
        relay: Relay,
        enabled: bool,
    },
    Account {
        spec: AccountSpec,
    },
    Alias {
        address: AliasAddress,
        spec: AliasSpec,
    },
}

/// How a file is read (Modoboa's `modo import` options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportOptions {
    /// The column separator (`--sepchar`, default `;`).
    pub sepchar: u8,
    /// Skip a domain, domain alias, relay domain or account that already exists, and add the
    /// recipients of an alias that exists to it (`--continue-if-exists`).
    pub continue_if_exists: bool,
    /// Hash every password column, even one that looks like a hash (`--crypt-passwords`).
    pub crypt_passwords: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            sepchar: b';',
            continue_if_exists: false,
            crypt_passwords: false,
        }
    }
}

/// First characters a spreadsheet reads as a formula: Modoboa 2.9+ writes such a cell with a
/// `'` in front (and modobox's export too); the import takes the `'` off again.
const FORMULA_PREFIXES: [char; 7] = ['=', '+', '-', '@', '\t', '\r', '\n'];

/// A cell as Modoboa reads it: trimmed, without the `'` its export adds before a formula
/// character.
fn clean(raw: &str) -> String {
    let t = raw.trim();
    match t.strip_prefix('\'') {
        Some(rest) if rest.starts_with(FORMULA_PREFIXES) => rest.trim().to_string(),
        _ => t.to_string(),
    }
}

/// A cell as written: with a `'` in front when it starts with a formula character.
fn escape(value: &str) -> std::borrow::Cow<'_, str> {
    if value.starts_with(FORMULA_PREFIXES) {
        format!("'{value}").into()
    } else {
        value.into()
    }
}

struct Fields<'a> {
    line: usize,
    cols: &'a [String],
}

impl Fields<'_> {
    fn at(&self, i: usize, field: &str) -> Result<&str, TransferError> {
        self.cols
            .get(i)
            .map(String::as_str)
            .ok_or_else(|| refuse(self.line, field, "is missing"))
    }
    /// Column `i`, or "" when the line is shorter.
    fn opt(&self, i: usize) -> &str {
        self.cols.get(i).map_or("", String::as_str)
    }
    fn domain(&self, i: usize, field: &str) -> Result<DomainName, TransferError> {
        DomainName::parse(field, &self.at(i, field)?.to_ascii_lowercase())
            .map_err(|e| refuse(self.line, field, e.rule))
    }
    fn int(&self, i: usize, field: &str) -> Result<i32, TransferError> {
        let v = self.at(i, field)?;
        v.parse::<i32>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            refuse(
                self.line,
                field,
                "must be a whole number between 0 and 2147483647",
            )
        })
    }
    /// At least `n` columns; more are ignored, as Modoboa does.
    fn at_least(&self, n: usize, what: &str) -> Result<(), TransferError> {
        if self.cols.len() < n {
            return Err(refuse(
                self.line,
                what,
                format!("expects at least {} fields, got {}", n, self.cols.len()),
            ));
        }
        Ok(())
    }
    /// Exactly `n` columns, empty trailing ones (a spreadsheet's padding) aside.
    fn exactly(&self, n: usize, what: &str) -> Result<(), TransferError> {
        let used = self
            .cols
            .iter()
            .rposition(|c| !c.is_empty())
            .map_or(0, |i| i + 1);
        if self.cols.len() < n || used > n {
            return Err(refuse(
                self.line,
                what,
                format!(
                    "expects {} fields, got {}",
                    n,
                    used.max(self.cols.len().min(n))
                ),
            ));
        }
        Ok(())
    }
}

/// The password column: a `{SCHEME}` value is a hash (an unknown scheme is an error, never a
/// clear-text password); a bare crypt(3) hash (`$6$…`, as some exports hold) is a hash of its
/// kind; anything else is clear text, hashed on import.
fn import_password(
    line: usize,
    value: &str,
    opts: &ImportOptions,
) -> Result<Password, TransferError> {
    if opts.crypt_passwords {
        return Ok(Password::Clear(value.to_string()));
    }
    if let Some((name, _)) = value
        .strip_prefix('{')
        .and_then(|rest| rest.split_once('}'))
    {
        let looks_like_scheme = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
        if looks_like_scheme {
            return match crate::password::scheme_of(value) {
                Ok(_) => Ok(Password::Hashed(value.to_string())),
                Err(e) => Err(refuse(
                    line,
                    "password",
                    format!("{e} (use --crypt-passwords if this column is clear text)"),
                )),
            };
        }
    }
    if value.starts_with('$') {
        let crypt = format!("{{CRYPT}}{value}");
        if let Ok(scheme) = crate::password::scheme_of(&crypt) {
            let named = match scheme {
                crate::password::Scheme::Crypt => crypt,
                s => format!("{{{}}}{value}", s.dovecot_name()),
            };
            return Ok(Password::Hashed(named));
        }
    }
    Ok(Password::Clear(value.to_string()))
}

fn parse_record(
    line: usize,
    cols: &[String],
    opts: &ImportOptions,
) -> Result<Record, TransferError> {
    let f = Fields { line, cols };
    let kind = f.at(0, "type")?.to_ascii_lowercase();
    match kind.as_str() {
        "domain" => {
            f.at_least(5, "domain")?;
            let quota = f.int(2, "quota")?;
            let default_mailbox_quota = f.int(3, "default mailbox quota")?;
            domains::check_quotas(quota, default_mailbox_quota)
                .map_err(|e| store_refusal(line, e))?;
            Ok(Record::Domain {
                name: f.domain(1, "name")?,
                spec: DomainSpec {
                    quota,
                    default_mailbox_quota,
                    enabled: parse_bool(f.at(4, "enabled")?),
                    ..DomainSpec::default()
                },
            })
        }
        "domainalias" => {
            f.at_least(4, "domainalias")?;
            Ok(Record::DomainAlias {
                name: f.domain(1, "name")?,
                target: f.domain(2, "target domain")?,
                enabled: parse_bool(f.at(3, "enabled")?),
            })
        }
        "relaydomain" => {
            f.exactly(7, "relaydomain")?;
            let port = f
                .at(3, "target port")?
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| refuse(line, "target port", "must be between 1 and 65535"))?;
            Ok(Record::RelayDomain {
                name: f.domain(1, "name")?,
                relay: Relay {
                    target_host: f.at(2, "target host")?.to_string(),
                    target_port: port,
                    service: match f.at(4, "service")? {
                        "" => "relay".to_string(),
                        s => s.to_string(),
                    },
                    verify_recipients: parse_bool(f.at(6, "verify recipients")?),
                },
                enabled: parse_bool(f.at(5, "enabled")?),
            })
        }
        "account" => {
            // 7 fields: no mailbox; 8: its address (the domain's default quota); 9: its quota;
            // then the domains a domain admin or reseller administers.
            f.at_least(7, "account")?;
            let username = Username::parse(&f.at(1, "username")?.to_lowercase())
                .map_err(|e| store_refusal(line, e.into()))?;
            let password = import_password(line, f.at(2, "password")?, opts)?;
            password.check().map_err(|e| store_refusal(line, e))?;
            let role: Role = f
                .at(6, "role")?
                .parse()
                .map_err(|e| store_refusal(line, e))?;
            let email = f.opt(7).to_lowercase();
            let quota = match f.opt(8) {
                "" => None,
                _ => Some(f.int(8, "quota")?),
            };
            let (mailbox, mailbox_address) = if email.is_empty() {
                if role == Role::SimpleUsers {
                    return Err(refuse(
                        line,
                        "email",
                        "a simple user needs its address (the 8th field): it is its mailbox",
                    ));
                }
                (None, None)
            } else if email != username.as_str() {
                if role == Role::SimpleUsers {
                    return Err(refuse(
                        line,
                        "email",
                        "must equal the username for a simple user",
                    ));
                }
                let addr = crate::names::EmailAddress::parse("email", &email)
                    .map_err(|e| store_refusal(line, e.into()))?;
                (Some(quota), Some(addr))
            } else {
                (Some(quota), None)
            };
            let mut domains = Vec::new();
            for (i, col) in cols.iter().enumerate().skip(9) {
                if !col.is_empty() {
                    domains.push(f.domain(i, "domain")?);
                }
            }
            if !domains.is_empty() && !matches!(role, Role::DomainAdmins | Role::Resellers) {
                return Err(refuse(
                    line,
                    "domain",
                    "only DomainAdmins and Resellers administer domains",
                ));
            }
            Ok(Record::Account {
                spec: AccountSpec {
                    username,
                    password,
                    first_name: f.at(3, "first name")?.to_string(),
                    last_name: f.at(4, "last name")?.to_string(),
                    enabled: parse_bool(f.at(5, "enabled")?),
                    role,
                    mailbox,
                    mailbox_address,
                    domains,
                    profile: Default::default(),
                    mailbox_settings: Default::default(),
                },
            })
        }
        // Modoboa writes forwards and distribution lists as the same three-field-plus lines.
        "alias" | "forward" | "dlist" => {
            f.at_least(4, &kind)?;
            let address = AliasAddress::parse("address", &f.at(1, "address")?.to_lowercase())
                .map_err(|e| store_refusal(line, e))?;
            let recipients: Vec<String> = cols[3..]
                .iter()
                .map(|r| r.to_lowercase())
                .filter(|r| !r.is_empty())
                .collect();
            if recipients.is_empty() {
                return Err(refuse(
                    line,
                    "recipient",
                    "an alias needs at least one recipient",
                ));
            }
            Ok(Record::Alias {
                address,
                spec: AliasSpec {
                    enabled: parse_bool(f.at(2, "enabled")?),
                    recipients,
                    ..AliasSpec::default()
                },
            })
        }
        other => Err(refuse(
            line,
            "type",
            format!(
                "unknown object type {other:?} (domain, domainalias, relaydomain, account, alias, forward, dlist)"
            ),
        )),
    }
}

fn store_refusal(line: usize, e: StoreError) -> TransferError {
    match e {
        StoreError::Refused { field, rule } => TransferError::Line { line, field, rule },
        StoreError::Invalid(n) => TransferError::Line {
            line,
            field: n.field.clone(),
            rule: n.rule.clone(),
        },
        other => TransferError::Store {
            line,
            source: other,
        },
    }
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct ImportReport {
    pub domains: usize,
    pub domain_aliases: usize,
    pub relay_domains: usize,
    pub accounts: usize,
    pub aliases: usize,
    /// Objects that already existed, left as they were (`--continue-if-exists`).
    pub existing: usize,
    /// Existing aliases the file's recipients were added to (`--continue-if-exists`).
    pub aliases_merged: usize,
    /// Lines of a mailbox's or a domain alias's own internal alias (Modoboa 1.10–2.0 exports
    /// list them): made with their mailbox or domain alias, so skipped.
    pub internal_aliases: usize,
}

/// Reads every line first: a syntax error anywhere means nothing is written. One object per
/// physical line (as Modoboa writes them), so error messages give the line an editor shows.
fn parse_all(
    mut input: impl Read,
    opts: &ImportOptions,
) -> Result<Vec<(usize, Record)>, TransferError> {
    let mut bytes = Vec::new();
    input
        .read_to_end(&mut bytes)
        .map_err(|e| TransferError::Read(e.to_string()))?;
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&bytes);
    let mut out = Vec::new();
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = i + 1;
        let text =
            std::str::from_utf8(raw).map_err(|_| refuse(line, "line", "is not valid UTF-8"))?;
        let text = text.strip_suffix('\r').unwrap_or(text);
        if text.trim().is_empty() || text.trim_start().starts_with('#') {
            continue;
        }
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(opts.sepchar)
            .has_headers(false)
            .flexible(true)
            .from_reader(text.as_bytes());
        let rec = match reader.records().next() {
            Some(Ok(rec)) => rec,
            Some(Err(e)) => {
                return Err(refuse(line, "line", format!("cannot be read as CSV ({e})")))
            }
            None => continue,
        };
        let cols: Vec<String> = rec.iter().map(clean).collect();
        out.push((line, parse_record(line, &cols, opts)?));
    }
    Ok(out)
}

/// Hashes clear-text passwords on all cores (SHA512-CRYPT with 70000 rounds is the slow part).
fn hash_all(
    records: &[(usize, Record)],
    policy: &HashPolicy,
) -> Result<Vec<Option<String>>, TransferError> {
    let jobs: Vec<(usize, &Password)> = records
        .iter()
        .map(|(line, r)| match r {
            Record::Account { spec } => (*line, &spec.password),
            _ => (*line, &NO_PASSWORD),
        })
        .collect();
    crate::system::parallel::try_map(&jobs, |(line, p)| match p {
        Password::Clear(c) if c.is_empty() => Ok(None),
        p => p
            .to_stored(policy)
            .map(Some)
            .map_err(|e| store_refusal(*line, e)),
    })
}

/// Placeholder for non-account lines in `hash_all` (skipped: empty clear text).
static NO_PASSWORD: Password = Password::Clear(String::new());

pub async fn import(
    store: &Store,
    actor: Actor,
    input: impl Read,
    opts: &ImportOptions,
) -> Result<ImportReport, TransferError> {
    let records = parse_all(input, opts)?;
    let mut tx = store.begin().await?;
    let policy = accounts::hash_policy(&mut tx).await?;
    drop(tx);
    let hashes = hash_all(&records, &policy)?;
    let mut tx = store.begin().await?;
    let mut report = ImportReport::default();
    for ((line, record), hash) in records.iter().zip(hashes) {
        let at = |e: StoreError| store_refusal(*line, e);
        // An object that exists already is skipped with --continue-if-exists (an alias gets
        // the file's recipients added), as Modoboa's import does; otherwise it is an error.
        let outcome = match record {
            Record::Domain { name, spec } => domains::create(&mut tx, actor, name, spec, None)
                .await
                .map(|_| report.domains += 1),
            Record::DomainAlias {
                name,
                target,
                enabled,
            } => domains::create_alias(&mut tx, actor, name, target, *enabled)
                .await
                .map(|_| report.domain_aliases += 1),
            Record::RelayDomain {
                name,
                relay,
                enabled,
            } => {
                let spec = DomainSpec {
                    enabled: *enabled,
                    ..DomainSpec::default()
                };
                domains::create(&mut tx, actor, name, &spec, Some(relay))
                    .await
                    .map(|_| report.relay_domains += 1)
            }
            Record::Account { spec } => {
                let stored = hash.ok_or_else(|| refuse(*line, "password", "must not be empty"))?;
                accounts::insert(&mut tx, actor, spec, &stored)
                    .await
                    .map(|_| report.accounts += 1)
            }
            Record::Alias { address, spec } => {
                if is_internal_alias_line(&mut tx, address, spec)
                    .await
                    .map_err(at)?
                {
                    report.internal_aliases += 1;
                    continue;
                }
                match aliases::create(&mut tx, actor, address, spec).await {
                    Err(StoreError::Exists { .. }) if opts.continue_if_exists => {
                        let current = aliases::get(&mut tx, actor, address).await.map_err(at)?;
                        let mut recipients = current.recipients.clone();
                        for r in &spec.recipients {
                            if !recipients.contains(r) {
                                recipients.push(r.clone());
                            }
                        }
                        if recipients != current.recipients {
                            let patch = aliases::AliasPatch {
                                recipients: Some(recipients),
                                ..aliases::AliasPatch::default()
                            };
                            aliases::update(&mut tx, actor, address, &patch)
                                .await
                                .map_err(at)?;
                            report.aliases_merged += 1;
                        } else {
                            report.existing += 1;
                        }
                        continue;
                    }
                    other => other.map(|_| report.aliases += 1),
                }
            }
        };
        match outcome {
            Ok(()) => {}
            Err(StoreError::Exists { .. }) if opts.continue_if_exists => report.existing += 1,
            Err(e) => return Err(at(e)),
        }
    }
    tx.commit().await?;
    Ok(report)
}

/// Whether an alias line is the internal alias of a mailbox (`alias;u@d;True;u@d`) or of a
/// domain alias (`alias;@alias.tld;True;@target.tld`) that exists: Modoboa 1.10 to 2.0 wrote
/// them into its exports, and Modoboa itself cannot import them back.
async fn is_internal_alias_line(
    tx: &mut super::Tx,
    address: &AliasAddress,
    spec: &AliasSpec,
) -> Result<bool, StoreError> {
    let [only] = spec.recipients.as_slice() else {
        return Ok(false);
    };
    let own = only == &address.full;
    let domain_alias = address.full.starts_with('@') && only.starts_with('@');
    if !own && !domain_alias {
        return Ok(false);
    }
    let rows = tx
        .rows(
            "SELECT r.address FROM admin_alias al INNER JOIN modoboa_admin_aliasrecipient r ON r.alias_id = al.id WHERE al.address = ? AND al.internal = ?",
            crate::args![address.full.as_str(), true],
        )
        .await?;
    Ok(rows.len() == 1 && rows[0].text("address")? == *only)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportKind {
    Domains,
    Identities,
}

/// Writes lines with every cell escaped as Modoboa 2.9+ does (see `escape`).
struct Writer<W: Write>(csv::Writer<W>);

impl<W: Write> Writer<W> {
    fn new(out: W, sepchar: u8) -> Self {
        Writer(
            csv::WriterBuilder::new()
                .delimiter(sepchar)
                .has_headers(false)
                .flexible(true)
                .from_writer(out),
        )
    }

    fn write_record<I, T>(&mut self, cells: I) -> Result<(), csv::Error>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.0
            .write_record(cells.into_iter().map(|c| escape(c.as_ref()).into_owned()))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Aliases with every alias a recipient names before it, so that the file imports in one
/// pass (a recipient inside a hosted domain must exist when its alias is made).
fn in_dependency_order(list: Vec<aliases::Alias>) -> Vec<aliases::Alias> {
    use std::collections::HashMap;
    let index: HashMap<String, usize> = list
        .iter()
        .enumerate()
        .map(|(i, a)| (a.address.clone(), i))
        .collect();
    let mut placed = vec![false; list.len()];
    let mut order = Vec::with_capacity(list.len());
    fn visit(
        i: usize,
        list: &[aliases::Alias],
        index: &HashMap<String, usize>,
        placed: &mut [bool],
        order: &mut Vec<usize>,
    ) {
        if placed[i] {
            return;
        }
        // Marked before the recipients: a loop of aliases is cut, not followed forever.
        placed[i] = true;
        for r in &list[i].recipients {
            if let Some(&j) = index.get(r) {
                visit(j, list, index, placed, order);
            }
        }
        order.push(i);
    }
    for i in 0..list.len() {
        visit(i, &list, &index, &mut placed, &mut order);
    }
    let mut slots: Vec<Option<aliases::Alias>> = list.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

pub async fn export(
    store: &Store,
    actor: Actor,
    kind: ExportKind,
    out: impl Write,
    sepchar: u8,
) -> Result<usize, TransferError> {
    let mut tx = store.begin().await?;
    let mut w = Writer::new(out, sepchar);
    let mut n = 0;
    let werr = |e: csv::Error| TransferError::Write(e.to_string());
    match kind {
        ExportKind::Domains => {
            for d in domains::list(&mut tx, actor, None, None).await? {
                match &d.relay {
                    None => w
                        .write_record([
                            "domain",
                            d.name.as_str(),
                            &d.quota.to_string(),
                            &d.default_mailbox_quota.to_string(),
                            bool_text(d.enabled),
                        ])
                        .map_err(werr)?,
                    Some(r) => w
                        .write_record([
                            "relaydomain",
                            d.name.as_str(),
                            &r.target_host,
                            &r.target_port.to_string(),
                            &r.service,
                            bool_text(d.enabled),
                            bool_text(r.verify_recipients),
                        ])
                        .map_err(werr)?,
                }
                n += 1;
            }
            for a in domains::list_aliases(&mut tx, actor, None).await? {
                w.write_record([
                    "domainalias",
                    a.name.as_str(),
                    a.target.as_str(),
                    bool_text(a.enabled),
                ])
                .map_err(werr)?;
                n += 1;
            }
        }
        ExportKind::Identities => {
            for a in accounts::list(&mut tx, actor, &accounts::ListFilter::default()).await? {
                let hash =
                    accounts::stored_password(&mut tx, actor, &Username::existing(&a.username))
                        .await?;
                let (email, quota) = match &a.mailbox {
                    Some(mb) => (mb.full_address.clone(), mb.quota.to_string()),
                    None => (String::new(), String::new()),
                };
                let mut rec = vec![
                    "account".to_string(),
                    a.username.clone(),
                    hash,
                    a.first_name.clone(),
                    a.last_name.clone(),
                    bool_text(a.is_active).into(),
                    a.role.as_str().into(),
                    email,
                    quota,
                ];
                rec.extend(a.domains.iter().cloned());
                w.write_record(&rec).map_err(werr)?;
                n += 1;
            }
            for al in in_dependency_order(aliases::list(&mut tx, actor, None).await?) {
                let mut rec = vec![
                    "alias".to_string(),
                    al.address.clone(),
                    bool_text(al.enabled).into(),
                ];
                rec.extend(al.recipients.iter().cloned());
                w.write_record(&rec).map_err(werr)?;
                n += 1;
            }
        }
    }
    w.flush().map_err(|e| TransferError::Write(e.to_string()))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<(usize, Record)>, TransferError> {
        parse_all(text.as_bytes(), &ImportOptions::default())
    }

    #[test]
    fn booleans_follow_modoboa() {
        for t in ["true", "TRUE", "1", "yes", "Y"] {
            assert!(parse_bool(t), "{t}");
        }
        for f in ["false", "0", "no", "", "oui"] {
            assert!(!parse_bool(f), "{f}");
        }
    }

    #[test]
    fn a_bad_line_is_named_with_its_field() {
        let err =
            parse("domain;example.com;100;10;true\ndomain;exa mple.com;1;1;true\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("line 2: name:"), "{text}");
        let err = parse("domain;example.com;-5;10;true\n").unwrap_err();
        assert!(err.to_string().starts_with("line 1: quota:"), "{err}");
        let err = parse("account;u@example.com;short;A;B;true;SimpleUsers;u@example.com;10\n")
            .unwrap_err();
        assert!(err.to_string().starts_with("line 1: password:"), "{err}");
        let err = parse("account;u@example.com;longenough1;A;B;true;Kings;u@example.com;10\n")
            .unwrap_err();
        assert!(err.to_string().starts_with("line 1: role:"), "{err}");
        let err = parse("mailbox;x\n").unwrap_err();
        assert!(err.to_string().starts_with("line 1: type:"), "{err}");
        let err = parse("alias;a@example.com;true\n").unwrap_err();
        assert!(
            err.to_string().starts_with("line 1: alias: expects"),
            "{err}"
        );
    }

    #[test]
    fn cells_are_trimmed_and_unescaped_as_modoboa_writes_them() {
        assert_eq!(clean("  a@b.c "), "a@b.c");
        assert_eq!(clean("'@example.net"), "@example.net");
        assert_eq!(clean("'=SUM(A1)"), "=SUM(A1)");
        assert_eq!(clean("'-x"), "-x");
        // A quote before anything else is the value's own.
        assert_eq!(clean("'quoted'"), "'quoted'");
        for v in ["@example.net", "=1+1", "+33", "-dash", "\tTab"] {
            assert_eq!(clean(&escape(v)), v.trim());
            assert!(escape(v).starts_with('\''), "{v}");
        }
        assert_eq!(escape("plain@example.net"), "plain@example.net");
    }

    #[test]
    fn passwords_are_hashes_only_when_named_so() {
        let o = ImportOptions::default();
        assert!(matches!(
            import_password(1, "{SSHA}Y07alSZAI/G9yoObDY7bTykcy+CqFULI", &o).unwrap(),
            Password::Hashed(_)
        ));
        let e = import_password(1, "{FOO}bar", &o).unwrap_err().to_string();
        assert!(
            e.starts_with("line 1: password:") && e.contains("FOO"),
            "{e}"
        );
        match import_password(1, "$6$saltsalt$Jo6plbx3lHUNfAtcPh6iVkyIyxJXBpu6I5mxIH.AMAPR8oLJQ.S3Hvr5GNL.tyzqKc2sBB5RZkIZmBG3bS74/0", &o).unwrap() {
            Password::Hashed(h) => assert!(h.starts_with("{SHA512-CRYPT}$6$"), "{h}"),
            p => panic!("{p:?}"),
        }
        assert!(matches!(
            import_password(1, "$ not a hash", &o).unwrap(),
            Password::Clear(_)
        ));
        assert!(matches!(
            import_password(1, "{x y} is text", &o).unwrap(),
            Password::Clear(_)
        ));
        let crypt = ImportOptions {
            crypt_passwords: true,
            ..o
        };
        assert!(matches!(
            import_password(1, "{SSHA}Y07alSZAI/G9yoObDY7bTykcy+CqFULI", &crypt).unwrap(),
            Password::Clear(_)
        ));
    }

    #[test]
    fn quoted_fields_and_comments_are_read() {
        let recs = parse("# a comment\n\ndomain;\"example.com\";0;0;yes\n").unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].0, 3);
    }
}
