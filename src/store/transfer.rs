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

struct Fields<'a> {
    line: usize,
    cols: &'a [String],
}

impl Fields<'_> {
    fn at(&self, i: usize, field: &str) -> Result<&str, TransferError> {
        self.cols
            .get(i)
            .map(|s| s.trim())
            .ok_or_else(|| refuse(self.line, field, "is missing"))
    }
    fn domain(&self, i: usize, field: &str) -> Result<DomainName, TransferError> {
        DomainName::parse(field, self.at(i, field)?).map_err(|e| refuse(self.line, field, e.rule))
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
    fn exactly(&self, n: usize, what: &str) -> Result<(), TransferError> {
        if self.cols.len() != n {
            return Err(refuse(
                self.line,
                what,
                format!("expects {} fields, got {}", n, self.cols.len()),
            ));
        }
        Ok(())
    }
}

fn parse_record(line: usize, cols: &[String]) -> Result<Record, TransferError> {
    let f = Fields { line, cols };
    let kind = f.at(0, "type")?.to_ascii_lowercase();
    match kind.as_str() {
        "domain" => {
            f.exactly(5, "domain")?;
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
            f.exactly(4, "domainalias")?;
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
                    service: f.at(4, "service")?.to_string(),
                    verify_recipients: parse_bool(f.at(6, "verify recipients")?),
                },
                enabled: parse_bool(f.at(5, "enabled")?),
            })
        }
        "account" => {
            if cols.len() < 9 {
                return Err(refuse(
                    line,
                    "account",
                    format!("expects at least 9 fields, got {}", cols.len()),
                ));
            }
            let username =
                Username::parse(f.at(1, "username")?).map_err(|e| store_refusal(line, e.into()))?;
            let password = Password::from_import(cols[2].as_str());
            password.check().map_err(|e| store_refusal(line, e))?;
            let role: Role = f
                .at(6, "role")?
                .parse()
                .map_err(|e| store_refusal(line, e))?;
            let email = f.at(7, "email")?.to_ascii_lowercase();
            let quota = match f.at(8, "quota")? {
                "" => None,
                _ => Some(f.int(8, "quota")?),
            };
            let mailbox = if email.is_empty() {
                None
            } else if email != username.as_str() {
                return Err(refuse(
                    line,
                    "email",
                    "must equal the username for an account with a mailbox",
                ));
            } else {
                Some(quota)
            };
            let mut domains = Vec::new();
            for (i, col) in cols.iter().enumerate().skip(9) {
                if !col.trim().is_empty() {
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
                    domains,
                },
            })
        }
        "alias" => {
            if cols.len() < 4 {
                return Err(refuse(
                    line,
                    "alias",
                    format!("expects at least 4 fields, got {}", cols.len()),
                ));
            }
            let address = AliasAddress::parse("address", f.at(1, "address")?)
                .map_err(|e| store_refusal(line, e))?;
            let recipients: Vec<String> = cols[3..]
                .iter()
                .map(|r| r.trim().to_string())
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
                "unknown object type {other:?} (domain, domainalias, relaydomain, account, alias)"
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
}

/// Reads every line first: a syntax error anywhere means nothing is written. One object per
/// physical line (as Modoboa writes them), so error messages give the line an editor shows.
fn parse_all(mut input: impl Read) -> Result<Vec<(usize, Record)>, TransferError> {
    let mut bytes = Vec::new();
    input
        .read_to_end(&mut bytes)
        .map_err(|e| TransferError::Read(e.to_string()))?;
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
            .delimiter(b';')
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
        let cols: Vec<String> = rec.iter().map(str::to_string).collect();
        out.push((line, parse_record(line, &cols)?));
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
) -> Result<ImportReport, TransferError> {
    let records = parse_all(input)?;
    let mut tx = store.begin().await?;
    let policy = accounts::hash_policy(&mut tx).await?;
    drop(tx);
    let hashes = hash_all(&records, &policy)?;
    let mut tx = store.begin().await?;
    let mut report = ImportReport::default();
    for ((line, record), hash) in records.iter().zip(hashes) {
        let at = |e: StoreError| store_refusal(*line, e);
        match record {
            Record::Domain { name, spec } => {
                domains::create(&mut tx, actor, name, spec, None)
                    .await
                    .map_err(at)?;
                report.domains += 1;
            }
            Record::DomainAlias {
                name,
                target,
                enabled,
            } => {
                domains::create_alias(&mut tx, actor, name, target, *enabled)
                    .await
                    .map_err(at)?;
                report.domain_aliases += 1;
            }
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
                    .map_err(at)?;
                report.relay_domains += 1;
            }
            Record::Account { spec } => {
                let stored = hash.ok_or_else(|| refuse(*line, "password", "must not be empty"))?;
                accounts::insert(&mut tx, actor, spec, &stored)
                    .await
                    .map_err(at)?;
                report.accounts += 1;
            }
            Record::Alias { address, spec } => {
                aliases::create(&mut tx, actor, address, spec)
                    .await
                    .map_err(at)?;
                report.aliases += 1;
            }
        }
    }
    tx.commit().await?;
    Ok(report)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportKind {
    Domains,
    Identities,
}

fn writer(out: impl Write) -> csv::Writer<impl Write> {
    csv::WriterBuilder::new()
        .delimiter(b';')
        .has_headers(false)
        .flexible(true)
        .from_writer(out)
}

pub async fn export(
    store: &Store,
    actor: Actor,
    kind: ExportKind,
    out: impl Write,
) -> Result<usize, TransferError> {
    let mut tx = store.begin().await?;
    let mut w = writer(out);
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
            for al in aliases::list(&mut tx, actor, None).await? {
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
        parse_all(text.as_bytes())
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
    fn quoted_fields_and_comments_are_read() {
        let recs = parse("# a comment\n\ndomain;\"example.com\";0;0;yes\n").unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].0, 3);
    }
}
