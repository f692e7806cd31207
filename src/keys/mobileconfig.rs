//! Apple configuration profiles (`.mobileconfig`) that set up one mail account on iOS and
//! macOS: IMAP on 993 and SMTP submission on 465, both TLS, password login, the password inside
//! only when the user typed it in. Signed (CMS, `openssl cms -sign`) with the certificate the
//! server serves when a public authority issued it, so Apple devices show the profile as
//! verified; a self-signed certificate would only make it look worse, so that profile stays
//! unsigned.
//!
//! The web process cannot read the TLS key: the supervisor (root) signs, over a Unix socket
//! only the web UI's user may use ([`serve`]). It builds the document itself from the
//! request's address (which must be a mailbox of this server), name and password, with the
//! server's own settings, so a compromised web process can only get signed profiles for mail
//! accounts on this server — never a profile installing a CA or pointing elsewhere.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::names::{EmailAddress, Hostname};
use crate::system::text::xml_escape as escape;

/// Where the supervisor listens for signing requests.
pub const SOCKET: &str = "/run/modobox/profile.sock";
/// Longest display name or password taken into a profile.
const MAX_FIELD: usize = 256;

/// What one profile holds.
#[derive(Clone, Serialize, Deserialize)]
pub struct Request {
    pub email: String,
    /// The account's full name (shown in Mail).
    pub name: String,
    /// Put in the profile only when the user asked for it.
    pub password: Option<String>,
}

impl std::fmt::Debug for Request {
    // The password never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("email", &self.email)
            .field("name", &self.name)
            .field("password", &self.password.as_ref().map(|_| "(given)"))
            .finish()
    }
}

/// The signer's answer: the profile (signed DER, or the XML document), base64.
#[derive(Debug, Serialize, Deserialize)]
pub struct Answer {
    pub signed: bool,
    pub profile: String,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("{field}: {rule}")]
    Invalid { field: &'static str, rule: String },
    #[error("signing the profile: {0}")]
    Sign(String),
    #[error("the profile signer ({path}): {message}")]
    Signer { path: String, message: String },
}

/// A UUID (version 4 layout) derived from `seed`: the same account gets the same profile
/// identity, so installing a new one replaces the old on the device.
fn uuid_of(seed: &str) -> String {
    let d = Sha256::digest(seed.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    crate::system::text::uuid_v4_from(b)
}

fn checked(req: &Request) -> Result<EmailAddress, ProfileError> {
    let email = EmailAddress::parse("email", &req.email).map_err(|e| ProfileError::Invalid {
        field: "email",
        rule: e.to_string(),
    })?;
    if req.name.chars().count() > MAX_FIELD || req.name.chars().any(char::is_control) {
        return Err(ProfileError::Invalid {
            field: "name",
            rule: format!("must be at most {MAX_FIELD} characters, without control characters"),
        });
    }
    if req
        .password
        .as_ref()
        .is_some_and(|p| p.is_empty() || p.len() > 1024 || p.chars().any(char::is_control))
    {
        // A control character could not travel through the XML unchanged (CR comes back LF).
        return Err(ProfileError::Invalid {
            field: "password",
            rule: "must be 1 to 1024 bytes without control characters".into(),
        });
    }
    Ok(email)
}

/// The profile document (an XML property list) for `req` on server `hostname`.
pub fn render(req: &Request, hostname: &Hostname) -> Result<String, ProfileError> {
    let email = checked(req)?;
    let host = hostname.as_str();
    let reverse: Vec<&str> = host.rsplit('.').collect();
    let id_base = format!("{}.modobox.mail", reverse.join("."));
    let account_uuid = uuid_of(&format!("account {host} {email}"));
    let profile_uuid = uuid_of(&format!("profile {host} {email}"));
    let e = escape(email.as_str());
    let name = escape(if req.name.trim().is_empty() {
        email.as_str()
    } else {
        req.name.trim()
    });
    let h = escape(host);
    let password = match &req.password {
        Some(p) => format!(
            "\t\t\t<key>IncomingPassword</key>\n\t\t\t<string>{p}</string>\n\
             \t\t\t<key>OutgoingPasswordSameAsIncomingPassword</key>\n\t\t\t<true/>\n",
            p = escape(p)
        ),
        None => String::new(),
    };
    Ok(format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>PayloadContent</key>
	<array>
		<dict>
			<key>EmailAccountDescription</key>
			<string>{e}</string>
			<key>EmailAccountName</key>
			<string>{name}</string>
			<key>EmailAccountType</key>
			<string>EmailTypeIMAP</string>
			<key>EmailAddress</key>
			<string>{e}</string>
			<key>IncomingMailServerAuthentication</key>
			<string>EmailAuthPassword</string>
			<key>IncomingMailServerHostName</key>
			<string>{h}</string>
			<key>IncomingMailServerPortNumber</key>
			<integer>993</integer>
			<key>IncomingMailServerUseSSL</key>
			<true/>
			<key>IncomingMailServerUsername</key>
			<string>{e}</string>
{password}			<key>OutgoingMailServerAuthentication</key>
			<string>EmailAuthPassword</string>
			<key>OutgoingMailServerHostName</key>
			<string>{h}</string>
			<key>OutgoingMailServerPortNumber</key>
			<integer>465</integer>
			<key>OutgoingMailServerUseSSL</key>
			<true/>
			<key>OutgoingMailServerUsername</key>
			<string>{e}</string>
			<key>PayloadDescription</key>
			<string>The mail account {e} on {h}</string>
			<key>PayloadDisplayName</key>
			<string>{e}</string>
			<key>PayloadIdentifier</key>
			<string>{id_base}.account.{account_uuid}</string>
			<key>PayloadType</key>
			<string>com.apple.mail.managed</string>
			<key>PayloadUUID</key>
			<string>{account_uuid}</string>
			<key>PayloadVersion</key>
			<integer>1</integer>
		</dict>
	</array>
	<key>PayloadDescription</key>
	<string>Sets up the mail account {e} (IMAP and SMTP with TLS on {h}).</string>
	<key>PayloadDisplayName</key>
	<string>Mail: {e}</string>
	<key>PayloadIdentifier</key>
	<string>{id_base}.{profile_uuid}</string>
	<key>PayloadOrganization</key>
	<string>{h}</string>
	<key>PayloadRemovalDisallowed</key>
	<false/>
	<key>PayloadType</key>
	<string>Configuration</string>
	<key>PayloadUUID</key>
	<string>{profile_uuid}</string>
	<key>PayloadVersion</key>
	<integer>1</integer>
</dict>
</plist>
"#
    ))
}

/// `document` signed (CMS SignedData, content attached, DER) with the certificate chain in
/// `cert` and its key.
pub fn sign(document: &[u8], cert: &Path, key: &Path) -> Result<Vec<u8>, ProfileError> {
    // The intermediates travel with the signature: the chain after its first certificate (the
    // signer's own, which openssl refuses to add twice), in a file of its own.
    let pem = std::fs::read_to_string(cert)
        .map_err(|e| ProfileError::Sign(format!("{}: {e}", cert.display())))?;
    let intermediates: String = pem
        .match_indices("-----BEGIN CERTIFICATE-----")
        .nth(1)
        .map(|(at, _)| pem[at..].to_string())
        .unwrap_or_default();
    let chain = std::env::temp_dir().join(format!(
        "modobox-profile-chain-{}-{}.pem",
        std::process::id(),
        rand::random::<u64>()
    ));
    let mut cmd = Command::new("openssl");
    cmd.args([
        "cms",
        "-sign",
        "-nodetach",
        "-binary",
        "-outform",
        "DER",
        "-signer",
    ])
    .arg(cert)
    .arg("-inkey")
    .arg(key);
    if !intermediates.is_empty() {
        std::fs::write(&chain, &intermediates)
            .map_err(|e| ProfileError::Sign(format!("{}: {e}", chain.display())))?;
        cmd.arg("-certfile").arg(&chain);
    }
    let result = run_openssl(cmd, document);
    let _ = std::fs::remove_file(&chain);
    result
}

fn run_openssl(mut cmd: Command, document: &[u8]) -> Result<Vec<u8>, ProfileError> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ProfileError::Sign(format!("openssl: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(document)
            .map_err(|e| ProfileError::Sign(format!("openssl: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| ProfileError::Sign(format!("openssl: {e}")))?;
    if !out.status.success() || out.stdout.is_empty() {
        return Err(ProfileError::Sign(format!(
            "openssl cms: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

/// The profile for `req`: signed when the served certificate (`cert`) is not self-signed.
pub fn build(
    req: &Request,
    hostname: &Hostname,
    cert: &Path,
    key: &Path,
) -> Result<(bool, Vec<u8>), ProfileError> {
    let document = render(req, hostname)?;
    let real = std::fs::read_to_string(cert)
        .ok()
        .and_then(|pem| crate::keys::tls::inspect(&pem).ok())
        .is_some_and(|info| !info.self_signed);
    if real {
        Ok((true, sign(document.as_bytes(), cert, key)?))
    } else {
        Ok((false, document.into_bytes()))
    }
}

/// Asks the signer at `socket` for the profile of `req`.
pub async fn request(socket: &Path, req: &Request) -> Result<(bool, Vec<u8>), ProfileError> {
    use base64::Engine;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let failed = |message: String| ProfileError::Signer {
        path: socket.display().to_string(),
        message,
    };
    let work = async {
        let mut stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let mut line = serde_json::to_vec(req).map_err(|e| failed(e.to_string()))?;
        line.push(b'\n');
        stream
            .write_all(&line)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let mut answer = String::new();
        BufReader::new(stream)
            .take(4 << 20)
            .read_line(&mut answer)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let answer: Answer =
            serde_json::from_str(&answer).map_err(|e| failed(format!("answer: {e}")))?;
        if let Some(e) = answer.error {
            return Err(failed(e));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(answer.profile)
            .map_err(|e| failed(format!("answer: {e}")))?;
        Ok((answer.signed, bytes))
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), work)
        .await
        .map_err(|_| failed("no answer within 20 s".into()))?
}

/// At most this many requests are answered at once; each must arrive within `REQUEST_TIMEOUT`.
const MAX_CONCURRENT: usize = 4;
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What the signing service needs.
#[derive(Debug, Clone)]
pub struct Signer {
    pub socket: PathBuf,
    pub hostname: Hostname,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The web UI's (uid, gid): the socket's group, and the one user besides root it answers.
    pub allowed: Option<(u32, u32)>,
    /// Where the addresses asked for must be mailboxes.
    pub store: crate::store::Store,
}

/// The signing service of the supervisor: one JSON request per connection, from root or the
/// allowed user only (the socket is also 0660, group of that user).
pub async fn serve(signer: Signer, mut stop: tokio::sync::watch::Receiver<bool>) {
    use std::os::unix::fs::PermissionsExt;
    let socket = signer.socket.clone();
    let allowed = signer.allowed;
    if let Some(dir) = socket.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::remove_file(&socket);
    let listener = match tokio::net::UnixListener::bind(&socket) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("profile signer: {}: {e}", socket.display());
            return;
        }
    };
    let gid = allowed.map(|(_, gid)| nix::unistd::Gid::from_raw(gid));
    let _ = nix::unistd::chown(&socket, Some(nix::unistd::Uid::from_raw(0)), gid);
    let _ = std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o660));
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT));
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let peer = stream.peer_cred().map(|c| c.uid()).ok();
                let may = peer.is_some_and(|uid| uid == 0 || allowed.is_some_and(|(u, _)| u == uid));
                if !may {
                    tracing::warn!("profile signer: refused a connection from uid {peer:?}");
                    continue;
                }
                // Busy: the next connection waits for a slot (the client gives up after 20 s).
                let Ok(slot) = slots.clone().acquire_owned().await else { break };
                let signer = signer.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(REQUEST_TIMEOUT * 2, answer(stream, &signer)).await;
                    drop(slot);
                });
            }
        }
    }
    let _ = std::fs::remove_file(&socket);
}

/// Profiles are signed for this server's mailboxes only.
async fn known_mailbox(store: &crate::store::Store, email: &str) -> Result<(), ProfileError> {
    let address = EmailAddress::parse("email", email).map_err(|e| ProfileError::Invalid {
        field: "email",
        rule: e.to_string(),
    })?;
    let lookup = async {
        let mut tx = store.begin_read().await?;
        crate::store::accounts::mailbox_exists(&mut tx, &address).await
    };
    match lookup.await {
        Ok(true) => Ok(()),
        Ok(false) => Err(ProfileError::Invalid {
            field: "email",
            rule: "is not a mailbox of this server".into(),
        }),
        Err(e) => Err(ProfileError::Sign(format!("database: {e}"))),
    }
}

async fn answer(stream: tokio::net::UnixStream, signer: &Signer) {
    use base64::Engine;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    // A request is a few hundred bytes: 16 KiB is plenty, and it comes at once.
    let mut reader = BufReader::new(read).take(16 << 10);
    let request = reader.read_line(&mut line);
    if !matches!(
        tokio::time::timeout(REQUEST_TIMEOUT, request).await,
        Ok(Ok(_))
    ) {
        return;
    }
    let result = match serde_json::from_str::<Request>(&line) {
        Ok(req) => match known_mailbox(&signer.store, &req.email).await {
            Ok(()) => {
                let s = signer.clone();
                tokio::task::spawn_blocking(move || build(&req, &s.hostname, &s.cert, &s.key))
                    .await
                    .unwrap_or_else(|e| Err(ProfileError::Sign(e.to_string())))
            }
            Err(e) => Err(e),
        },
        Err(e) => Err(ProfileError::Invalid {
            field: "request",
            rule: e.to_string(),
        }),
    };
    let answer = match result {
        Ok((signed, bytes)) => Answer {
            signed,
            profile: base64::engine::general_purpose::STANDARD.encode(bytes),
            error: None,
        },
        Err(e) => Answer {
            signed: false,
            profile: String::new(),
            error: Some(e.to_string()),
        },
    };
    if let Ok(mut json) = serde_json::to_vec(&answer) {
        json.push(b'\n');
        let _ = write.write_all(&json).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(password: Option<&str>) -> Request {
        Request {
            email: "alice@example.com".into(),
            name: "Alice <& Co>".into(),
            password: password.map(Into::into),
        }
    }

    #[test]
    fn the_document_escapes_what_it_is_given_and_holds_a_password_only_when_asked() {
        let host = Hostname::parse("hostname", "mail.example.com").unwrap();
        let without = render(&req(None), &host).unwrap();
        assert!(without.contains("<string>Alice &lt;&amp; Co&gt;</string>"));
        assert!(!without.contains("IncomingPassword"));
        let with = render(&req(Some("s3cret&<x>")), &host).unwrap();
        assert!(with
            .contains("<key>IncomingPassword</key>\n\t\t\t<string>s3cret&amp;&lt;x&gt;</string>"));
        // The same account, the same identity: a new profile replaces the old one.
        assert_eq!(
            without
                .lines()
                .filter(|l| l.contains("-4"))
                .collect::<Vec<_>>(),
            with.lines()
                .filter(|l| l.contains("-4"))
                .collect::<Vec<_>>()
        );
        assert!(format!("{:?}", req(Some("s3cret"))).contains("(given)"));
        assert!(!format!("{:?}", req(Some("s3cret"))).contains("s3cret"));
    }

    #[test]
    fn bad_requests_are_named() {
        let host = Hostname::parse("hostname", "mail.example.com").unwrap();
        let mut r = req(None);
        r.email = "not an address</string>".into();
        assert!(render(&r, &host)
            .unwrap_err()
            .to_string()
            .starts_with("email:"));
        let mut r = req(None);
        r.name = "x\u{7}".into();
        assert!(render(&r, &host)
            .unwrap_err()
            .to_string()
            .starts_with("name:"));
        assert!(render(&req(Some("")), &host)
            .unwrap_err()
            .to_string()
            .starts_with("password:"));
    }

    #[test]
    fn a_chain_is_signed_with_its_first_certificate_and_carries_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let host = Hostname::parse("hostname", "mail.example.com").unwrap();
        let leaf = crate::keys::tls::generate_self_signed(&host, &[], 30).unwrap();
        let other = crate::keys::tls::generate_self_signed(&host, &[], 30).unwrap();
        let (cert, key) = (dir.path().join("chain.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, format!("{}{}", leaf.cert_pem, other.cert_pem)).unwrap();
        std::fs::write(&key, &leaf.key_pem).unwrap();
        let der = sign(b"<plist/>", &cert, &key).unwrap();
        std::fs::write(dir.path().join("p.der"), der).unwrap();
        let out = Command::new("openssl")
            .current_dir(dir.path())
            .args([
                "cms",
                "-verify",
                "-noverify",
                "-inform",
                "DER",
                "-in",
                "p.der",
                "-certsout",
                "certs.pem",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, b"<plist/>");
        let certs = std::fs::read_to_string(dir.path().join("certs.pem")).unwrap();
        assert_eq!(certs.matches("BEGIN CERTIFICATE").count(), 2, "{certs}");
    }

    #[test]
    fn uuids_are_stable_and_shaped_as_uuids() {
        let a = uuid_of("x");
        assert_eq!(a, uuid_of("x"));
        assert_ne!(a, uuid_of("y"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }
}
