//! modobox's ACME client (RFC 8555, through `instant-acme`): the account, created once and
//! kept 0600 in `<paths.data>/tls/account.json`, and one order for a set of names, answered by
//! HTTP-01 through the challenge directory nginx serves on port 80, ending in a new key and
//! certificate chain. Which names, when, and what follows (files, reloads, backoff, alerts) is
//! `jobs::tls_renew`'s business.

use std::path::{Path, PathBuf};
use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    Problem, RetryPolicy,
};
use serde::{Deserialize, Serialize};

use crate::system::fs::{write_atomic, Owner};

/// How long an order may take to be validated, then to be issued.
const ORDER_TIMEOUT: Duration = Duration::from_secs(120);
/// The problem type of RFC 8555 §6.7 that asks a client to come back later.
const RATE_LIMITED: &str = "urn:ietf:params:acme:error:rateLimited";

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The authority answered with a rate-limit problem: no new attempt for a long while.
    #[error("rate limited by the ACME server: {0}")]
    RateLimited(String),
    /// Some names could not be validated; each with the authority's reason.
    #[error("validation failed: {}", failed_text(.0))]
    Validation(Vec<(String, String)>),
    /// Anything else the authority or the network said.
    #[error("ACME: {0}")]
    Protocol(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The first names with their reasons (the order's own order: the hostname first), the rest
/// counted: a failure of every name would otherwise fill an alert with the same sentence.
fn failed_text(failed: &[(String, String)]) -> String {
    const SHOWN: usize = 3;
    let mut text = failed
        .iter()
        .take(SHOWN)
        .map(|(name, why)| format!("{name}: {why}"))
        .collect::<Vec<_>>()
        .join("; ");
    if failed.len() > SHOWN {
        let rest: Vec<&str> = failed[SHOWN..].iter().map(|(n, _)| n.as_str()).collect();
        text.push_str(&format!("; and {} more: {}", rest.len(), rest.join(", ")));
    }
    text
}

fn problem_text(p: &Problem) -> String {
    let mut text = p.detail.clone().unwrap_or_else(|| "no detail".into());
    if let Some(t) = &p.r#type {
        text.push_str(&format!(
            " ({})",
            t.trim_start_matches("urn:ietf:params:acme:error:")
        ));
    }
    text
}

impl From<instant_acme::Error> for AcmeError {
    fn from(e: instant_acme::Error) -> Self {
        match e {
            instant_acme::Error::Api(p) if p.r#type.as_deref() == Some(RATE_LIMITED) => {
                AcmeError::RateLimited(problem_text(&p))
            }
            instant_acme::Error::Api(p) => AcmeError::Protocol(problem_text(&p)),
            other => AcmeError::Protocol(other.to_string()),
        }
    }
}

/// Where the account lives and which authority it is with.
#[derive(Debug, Clone)]
pub struct AccountSettings<'a> {
    pub directory: &'a str,
    pub email: Option<&'a str>,
    /// Trusted for the ACME server's own HTTPS instead of the system's roots.
    pub ca_root: Option<&'a Path>,
    pub file: &'a Path,
}

/// `account.json`: the credentials, and the directory they belong to (another directory in
/// the configuration means a new account there).
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: instant_acme::AccountCredentials,
}

fn builder(s: &AccountSettings<'_>) -> Result<instant_acme::AccountBuilder, AcmeError> {
    match s.ca_root {
        Some(root) => Account::builder_with_root(root)
            .map_err(|e| AcmeError::Protocol(format!("tls.acme_ca_root {}: {e}", root.display()))),
        None => Ok(Account::builder()?),
    }
}

/// The stored account when it is for this directory; otherwise a new one, stored 0600.
pub async fn account(s: &AccountSettings<'_>) -> Result<Account, AcmeError> {
    if let Ok(text) = std::fs::read_to_string(s.file) {
        match serde_json::from_str::<StoredAccount>(&text) {
            Ok(stored) if stored.directory == s.directory => {
                return Ok(builder(s)?.from_credentials(stored.credentials).await?);
            }
            Ok(_) => tracing::info!("tls.acme_directory changed: a new ACME account is created"),
            Err(e) => tracing::warn!("{}: {e}; a new ACME account is created", s.file.display()),
        }
    }
    let contact = s.email.map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder(s)?
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            s.directory.to_string(),
            None,
        )
        .await?;
    let stored = StoredAccount {
        directory: s.directory.to_string(),
        credentials,
    };
    let json =
        serde_json::to_vec_pretty(&stored).map_err(|e| AcmeError::Protocol(e.to_string()))?;
    write_atomic(s.file, &json, 0o600, Some(&root_owner())).map_err(|source| AcmeError::Io {
        path: s.file.to_path_buf(),
        source,
    })?;
    Ok(account)
}

fn root_owner() -> Owner {
    Owner {
        user: "root".into(),
        group: "root".into(),
    }
}

/// A new key and the certificate chain issued for it.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    // The key never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"(private)")
            .finish()
    }
}

/// A token names a file in the challenge directory: base64url only (RFC 8555 §8.1), so an
/// authority cannot make us write anywhere else.
fn valid_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 256
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `<webroot>/.well-known/acme-challenge`, readable by nginx whatever the process umask.
fn challenge_dir(webroot: &Path) -> Result<PathBuf, AcmeError> {
    use std::os::unix::fs::PermissionsExt;
    let mut dir = webroot.to_path_buf();
    for part in ["", ".well-known", "acme-challenge"] {
        if !part.is_empty() {
            dir.push(part);
        }
        let io = |source| AcmeError::Io {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
    }
    Ok(dir)
}

/// Orders a certificate for `names` (the first is the subject), answering every HTTP-01
/// challenge with a file under `webroot`, removed afterwards whatever happens.
pub async fn obtain(
    account: &Account,
    names: &[String],
    webroot: &Path,
) -> Result<Issued, AcmeError> {
    let dir = challenge_dir(webroot)?;
    let mut written = Vec::new();
    let result = order(account, names, &dir, &mut written).await;
    for path in written {
        let _ = std::fs::remove_file(path);
    }
    result
}

async fn order(
    account: &Account,
    names: &[String],
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<Issued, AcmeError> {
    let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
    {
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization?;
            match authorization.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(AcmeError::Validation(vec![(
                        authorization.identifier().to_string(),
                        format!("authorization is {other:?}"),
                    )]))
                }
            }
            let name = authorization.identifier().to_string();
            let mut challenge =
                authorization
                    .challenge(ChallengeType::Http01)
                    .ok_or_else(|| {
                        AcmeError::Validation(vec![(
                            name.clone(),
                            "no HTTP-01 challenge offered".into(),
                        )])
                    })?;
            if !valid_token(&challenge.token) {
                return Err(AcmeError::Protocol(format!(
                    "the server sent a challenge token that is not base64url: {:?}",
                    challenge.token
                )));
            }
            let path = dir.join(&challenge.token);
            write_atomic(
                &path,
                challenge.key_authorization().as_str().as_bytes(),
                0o644,
                None,
            )
            .map_err(|source| AcmeError::Io {
                path: path.clone(),
                source,
            })?;
            written.push(path);
            challenge.set_ready().await?;
        }
    }
    let retries = RetryPolicy::new().timeout(ORDER_TIMEOUT);
    let (status, problem) = match order.poll_ready(&retries).await {
        Ok(status) => (status, None),
        // An order that became invalid carries its reason on the authorizations; if none
        // does, the order's own problem is the reason.
        Err(instant_acme::Error::Api(p)) => (OrderStatus::Invalid, Some(p)),
        Err(e) => return Err(e.into()),
    };
    if status != OrderStatus::Ready {
        let mut failed = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization?;
            let state = authorization.refresh().await?;
            if state.status != AuthorizationStatus::Valid {
                let why = state
                    .challenges
                    .iter()
                    .find_map(|c| c.error.as_ref())
                    .map(problem_text)
                    .unwrap_or_else(|| format!("authorization is {:?}", state.status));
                failed.push((state.identifier().to_string(), why));
            }
        }
        if failed.is_empty() {
            // Not a name's failure: no name may be left out for it.
            return Err(match problem {
                Some(p) => AcmeError::from(instant_acme::Error::Api(p)),
                None => AcmeError::Protocol(format!("the order is {status:?}")),
            });
        }
        failed.sort_by_key(|(n, _)| names.iter().position(|x| x == n).unwrap_or(usize::MAX));
        return Err(AcmeError::Validation(failed));
    }
    let key = rcgen::KeyPair::generate().map_err(|e| AcmeError::Protocol(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .map_err(|e| AcmeError::Protocol(e.to_string()))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| AcmeError::Protocol(e.to_string()))?;
    order.finalize_csr(csr.der()).await?;
    let cert_pem = order.poll_certificate(&retries).await?;
    Ok(Issued {
        cert_pem,
        key_pem: key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_list_of_failures_names_every_name_but_explains_only_the_first() {
        let failed: Vec<(String, String)> = (1..=5)
            .map(|i| (format!("n{i}.example.com"), format!("reason {i}")))
            .collect();
        let text = AcmeError::Validation(failed).to_string();
        assert_eq!(
            text,
            "validation failed: n1.example.com: reason 1; n2.example.com: reason 2; \
             n3.example.com: reason 3; and 2 more: n4.example.com, n5.example.com"
        );
    }

    #[test]
    fn tokens_cannot_leave_the_challenge_directory() {
        assert!(valid_token("LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"));
        for bad in [
            "",
            "../../etc/passwd",
            "a/b",
            "a.b",
            "tok en",
            &"a".repeat(300),
        ] {
            assert!(!valid_token(bad), "{bad}");
        }
    }

    #[test]
    fn the_challenge_directory_is_readable_by_nginx_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let webroot = root.path().join("acme");
        // As a umask of 077 would have left it.
        std::fs::create_dir_all(webroot.join(".well-known/acme-challenge")).unwrap();
        for d in [
            &webroot,
            &webroot.join(".well-known"),
            &webroot.join(".well-known/acme-challenge"),
        ] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let dir = challenge_dir(&webroot).unwrap();
        for d in [&webroot, &webroot.join(".well-known"), &dir] {
            let mode = std::fs::metadata(d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o755, "{}", d.display());
        }
    }
}
