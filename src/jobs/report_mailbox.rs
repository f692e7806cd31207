//! The mailbox a report job reads (TLS reports, DMARC reports): its Maildir on this server,
//! the messages of its inbox, and which of them a job already read (remembered by their Maildir
//! unique names in a file of `<paths.data>`; a message deleted from the mailbox is forgotten).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::names::EmailAddress;

/// A report mail larger than this is not a report (real ones are a few KiB).
pub const MAX_MAIL_BYTES: u64 = 32 << 20;

/// `<mail_root>/<domain>/<local part>/Maildir`, as Dovecot keeps it.
pub fn maildir_of(config: &Config, address: &EmailAddress) -> PathBuf {
    let (local, domain) = address
        .as_str()
        .split_once('@')
        .unwrap_or((address.as_str(), ""));
    config
        .paths
        .mail_root
        .as_path()
        .join(domain)
        .join(local)
        .join("Maildir")
}

/// The Maildir of the mailbox a report job reads, or what the job says when there is none here
/// (`what`: "TLS reports"; `setting`: the key that names the mailbox).
pub fn local_maildir(
    config: &Config,
    address: Option<EmailAddress>,
    what: &str,
    setting: &str,
) -> Result<(EmailAddress, PathBuf), String> {
    let Some(address) = address else {
        return Err(format!(
            "no address for {what} (set admin_address or {setting})"
        ));
    };
    let maildir = maildir_of(config, &address);
    if !maildir.is_dir() {
        return Err(format!(
            "{address} has no mailbox on this server ({} does not exist): its {what} are not \
             read here (set {setting} to a local mailbox)",
            maildir.display()
        ));
    }
    Ok((address, maildir))
}

/// The messages of the Maildir's inbox: (unique name, path).
pub fn messages(maildir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(rd) = std::fs::read_dir(maildir.join(sub)) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let unique = name
                .split_once(':')
                .map_or(name.as_str(), |(u, _)| u)
                .to_string();
            out.push((unique, e.path()));
        }
    }
    out
}

/// A message's bytes, unless it is too large to be a report.
pub fn read_message(path: &Path) -> Option<Vec<u8>> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() <= MAX_MAIL_BYTES => std::fs::read(path).ok(),
        _ => None,
    }
}

/// The unique names a job read before.
pub fn seen(file: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Writes the unique names read so far (a job saves them as it goes: a message that stops a
/// run is not read again by the next).
pub fn save_seen(file: &Path, seen: &BTreeSet<String>) -> std::io::Result<()> {
    let json = serde_json::to_vec(seen).unwrap_or_default();
    crate::system::fs::write_atomic(file, &json, 0o600, None)
}

/// Remembers the messages still in the mailbox (all of them have been read now).
pub fn remember(file: &Path, all: &[(String, PathBuf)]) -> std::io::Result<()> {
    let now_seen: BTreeSet<&String> = all.iter().map(|(u, _)| u).collect();
    let json = serde_json::to_vec(&now_seen).unwrap_or_default();
    crate::system::fs::write_atomic(file, &json, 0o600, None)
}

/// The hosted domains and domain aliases (reports about others are not kept).
pub async fn hosted(
    store: &crate::store::Store,
) -> Result<BTreeSet<String>, crate::store::StoreError> {
    use crate::names::DomainKind;
    use crate::store::access::Actor;
    let mut tx = store.begin_read().await?;
    let mut hosted: BTreeSet<String> =
        crate::store::domains::list(&mut tx, Actor::System, Some(DomainKind::Domain), None)
            .await?
            .into_iter()
            .map(|d| d.name.to_string())
            .collect();
    hosted.extend(
        crate::store::domains::list_aliases(&mut tx, Actor::System, None)
            .await?
            .into_iter()
            .map(|a| a.name.to_string()),
    );
    Ok(hosted)
}
