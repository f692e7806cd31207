//! The mail server's self-signed certificate, and the checks the installer and the supervisor
//! run on whatever certificate is in place (ours, or one from a real CA).
//!
//! The key is ECDSA P-256: it is made in a millisecond, every TLS stack still in use speaks it
//! (OpenSSL ≥ 1.0, Windows ≥ Vista, Android ≥ 4, Java ≥ 7, Apple since 2011), and a
//! self-signed certificate is trusted by no client on its own anyway, so RSA's edge with
//! decade-old clients buys nothing here.

use chrono::{DateTime, Utc};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PublicKeyData as _, SanType, SerialNumber,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::names::{Hostname, NameError};

/// A certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct CertPair {
    pub cert_pem: String,
    /// PKCS#8 (`-----BEGIN PRIVATE KEY-----`).
    pub key_pem: String,
}

impl std::fmt::Debug for CertPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertPair")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// What the installer and the supervisor need to know about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The DNS names of the subjectAltName extension, as written (may hold `*.` wildcards).
    pub dns_names: Vec<String>,
    pub not_after: DateTime<Utc>,
    /// Issuer equals subject and the signature verifies with the certificate's own key.
    pub self_signed: bool,
    /// The issuer's distinguished name, as text (`CN=R11, O=Let's Encrypt, C=US`).
    pub issuer: String,
}

impl CertInfo {
    /// Whether a client connecting to `host` would find it among the names (a `*.` wildcard
    /// covers exactly one label, as RFC 6125 says).
    pub fn covers(&self, host: &Hostname) -> bool {
        let host = host.as_str();
        self.dns_names.iter().any(|name| {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            match name.strip_prefix("*.") {
                Some(parent) => host
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
                None => name == host,
            }
        })
    }

    /// Whether the certificate is still valid `days` days from `now`.
    pub fn valid_for(&self, now: DateTime<Utc>, days: i64) -> bool {
        self.not_after > now + chrono::Duration::days(days)
    }
}

/// What `modobox tls status` says of a certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertReport {
    pub issuer: String,
    pub self_signed: bool,
    /// The names it holds (subjectAltName).
    pub names: Vec<String>,
    pub not_after: DateTime<Utc>,
    /// Days begun until it expires (0 or less: expired).
    pub days_left: i64,
    /// The names clients use, each with whether the certificate covers it.
    pub coverage: Vec<NameCoverage>,
    /// 0 fine, 1 a warning, 2 a failure (the exit code of `tls status`).
    pub severity: u8,
    /// What is wrong, one line each.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NameCoverage {
    pub name: String,
    pub covered: bool,
}

/// Below this many days left, `tls status` warns.
pub const EXPIRY_WARN_DAYS: i64 = 14;

/// The report of `info` at `now`: expired, or without the hostname (every client and server
/// checks it), is a failure; expiring within `EXPIRY_WARN_DAYS` days, or without a name mail
/// clients or senders ask for (`client_names`), a warning.
pub fn report(
    info: &CertInfo,
    now: DateTime<Utc>,
    hostname: &Hostname,
    client_names: &[Hostname],
) -> CertReport {
    let left = info.not_after - now;
    let days_left = if left <= chrono::Duration::zero() {
        left.num_days()
    } else {
        (left.num_seconds() + 86_399) / 86_400
    };
    let mut problems = Vec::new();
    let mut severity = 0;
    if days_left <= 0 {
        problems.push(format!(
            "expired on {}",
            info.not_after.format("%Y-%m-%d %H:%M UTC")
        ));
        severity = 2;
    } else if days_left < EXPIRY_WARN_DAYS {
        problems.push(format!("expires in {days_left} day(s)"));
        severity = 1;
    }
    let mut coverage = vec![NameCoverage {
        name: hostname.to_string(),
        covered: info.covers(hostname),
    }];
    if !info.covers(hostname) {
        problems.push(format!(
            "does not hold the hostname {hostname}: every client and server connecting refuses it"
        ));
        severity = 2;
    }
    for name in client_names {
        let covered = info.covers(name);
        if !covered {
            problems.push(format!(
                "does not hold {name}: clients asking that name get a certificate warning"
            ));
            severity = severity.max(1);
        }
        coverage.push(NameCoverage {
            name: name.to_string(),
            covered,
        });
    }
    CertReport {
        issuer: info.issuer.clone(),
        self_signed: info.self_signed,
        names: info.dns_names.clone(),
        not_after: info.not_after,
        days_left,
        coverage,
        severity,
        problems,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Invalid(#[from] NameError),
    #[error("certificate generation failed: {0}")]
    Generate(String),
    #[error("certificate: {0}")]
    Cert(String),
    #[error("private key: {0}")]
    Key(String),
}

/// Longest validity we make: ten years.
pub const MAX_DAYS: u32 = 3650;

/// A self-signed certificate for `hostname`: CN = hostname, subjectAltName = hostname then the
/// extra names (duplicates dropped), valid from a day ago (clock skew) for `days` days, for
/// TLS servers (extendedKeyUsage serverAuth, basicConstraints CA:FALSE).
pub fn generate_self_signed(
    hostname: &Hostname,
    extra_sans: &[Hostname],
    days: u32,
) -> Result<CertPair, TlsError> {
    if days == 0 || days > MAX_DAYS {
        return Err(NameError::new(
            "tls_days",
            format!("must be between 1 and {MAX_DAYS}"),
            &days.to_string(),
        )
        .into());
    }
    let mut names: Vec<&Hostname> = vec![hostname];
    for extra in extra_sans {
        if !names.contains(&extra) {
            names.push(extra);
        }
    }
    let gen = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let mut params = CertificateParams::default();
    params.subject_alt_names = names
        .iter()
        .map(|n| {
            rcgen::string::Ia5String::try_from(n.as_str())
                .map(SanType::DnsName)
                .map_err(|e| TlsError::Generate(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, hostname.as_str());
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    // No keyCertSign: RFC 5280 ties it to CA:TRUE, and a CA certificate used as a server's
    // own is refused by Firefox and Thunderbird even once the user trusts it.
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(i64::from(days));
    // A random positive 127-bit serial: clients remember issuer+serial, and a regenerated
    // certificate must not reuse one.
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f;
    serial[0] |= 0x40;
    params.serial_number = Some(SerialNumber::from_slice(&serial));

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen)?;
    let cert = params.self_signed(&key).map_err(gen)?;
    Ok(CertPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Reads the first certificate of a PEM file (a full chain is fine: the leaf comes first).
pub fn inspect(cert_pem: &str) -> Result<CertInfo, TlsError> {
    let pem = first_cert(cert_pem)?;
    let cert = pem
        .parse_x509()
        .map_err(|e| TlsError::Cert(format!("not a valid X.509 certificate: {e}")))?;
    let mut dns_names = Vec::new();
    let san = cert
        .subject_alternative_name()
        .map_err(|e| TlsError::Cert(format!("subjectAltName: {e}")))?;
    if let Some(san) = san {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(n) = name {
                dns_names.push((*n).to_string());
            }
        }
    }
    let ts = cert.validity().not_after.timestamp();
    let not_after = DateTime::<Utc>::from_timestamp(ts, 0)
        .ok_or_else(|| TlsError::Cert(format!("notAfter out of range ({ts})")))?;
    let self_signed = cert.subject().as_raw() == cert.issuer().as_raw() && signed_by_own_key(&cert);
    Ok(CertInfo {
        dns_names,
        not_after,
        self_signed,
        issuer: cert.issuer().to_string(),
    })
}

/// Whether the certificate's signature verifies with its own public key.
fn signed_by_own_key(cert: &X509Certificate<'_>) -> bool {
    use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
    use x509_parser::oid_registry::{OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA512WITHRSA};
    if cert.verify_signature(None).is_ok() {
        return true;
    }
    // x509-parser checks SHA-2 RSA signatures only for keys of 2048 bits and more; an old
    // 1024-bit certificate goes through AWS-LC's legacy algorithms.
    let alg = &cert.signature_algorithm.algorithm;
    let legacy: &'static dyn VerificationAlgorithm = if *alg == OID_PKCS1_SHA256WITHRSA {
        &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY
    } else if *alg == OID_PKCS1_SHA512WITHRSA {
        &signature::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY
    } else {
        return false;
    };
    UnparsedPublicKey::new(legacy, &cert.public_key().subject_public_key.data)
        .verify(cert.tbs_certificate.as_ref(), &cert.signature_value.data)
        .is_ok()
}

/// Whether the private key in `key_pem` (PKCS#8, PKCS#1 or SEC1 PEM) is the one of the
/// certificate in `cert_pem` (its first certificate).
pub fn key_matches(cert_pem: &str, key_pem: &str) -> Result<bool, TlsError> {
    let pem = first_cert(cert_pem)?;
    let cert = pem
        .parse_x509()
        .map_err(|e| TlsError::Cert(format!("not a valid X.509 certificate: {e}")))?;
    let cert_spki = cert.public_key().raw;
    let key_spki = private_key_spki(key_pem)?;
    Ok(cert_spki == key_spki.as_slice())
}

fn first_cert(pem: &str) -> Result<x509_parser::pem::Pem, TlsError> {
    let mut rest = pem.as_bytes();
    loop {
        let (after, block) = x509_parser::pem::parse_x509_pem(rest)
            .map_err(|_| TlsError::Cert("no PEM certificate found".into()))?;
        if block.label == "CERTIFICATE" {
            return Ok(block);
        }
        // Some bundles put the key first; skip any other block.
        if after.len() >= rest.len() {
            return Err(TlsError::Cert("no PEM certificate found".into()));
        }
        rest = after;
    }
}

/// The DER SubjectPublicKeyInfo of a private key in PEM.
fn private_key_spki(key_pem: &str) -> Result<Vec<u8>, TlsError> {
    // RSA keys are read by hand: AWS-LC refuses RSA keys under 2048 bits, and an old 1024-bit
    // certificate must still be recognised (to be replaced).
    if let Ok(b64) = crate::keys::dkim::public_from_private(key_pem) {
        use base64::Engine as _;
        return base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| TlsError::Key(e.to_string()));
    }
    let key = KeyPair::from_pem(key_pem)
        .map_err(|e| TlsError::Key(format!("not a usable private key: {e}")))?;
    Ok(key.subject_public_key_info())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn h(s: &str) -> Hostname {
        Hostname::parse("hostname", s).unwrap()
    }

    #[test]
    fn generates_and_inspects_round_trip() {
        let before = Utc::now();
        let pair = generate_self_signed(
            &h("mail.example.com"),
            &[
                h("autoconfig.example.com"),
                h("MAIL.example.com"),
                h("mta-sts.example.com"),
            ],
            90,
        )
        .unwrap();
        assert!(pair.cert_pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(pair.key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(!format!("{pair:?}").contains("PRIVATE KEY"));
        let info = inspect(&pair.cert_pem).unwrap();
        assert_eq!(
            info.dns_names,
            [
                "mail.example.com",
                "autoconfig.example.com",
                "mta-sts.example.com"
            ]
        );
        assert!(info.self_signed);
        let lo = before + chrono::Duration::days(90) - chrono::Duration::seconds(5);
        let hi = Utc::now() + chrono::Duration::days(90) + chrono::Duration::seconds(5);
        assert!(
            info.not_after > lo && info.not_after < hi,
            "{}",
            info.not_after
        );
        assert!(info.covers(&h("mail.example.com")));
        assert!(!info.covers(&h("imap.example.com")));
        assert!(info.valid_for(Utc::now(), 30));
        assert!(!info.valid_for(Utc::now(), 91));
        assert!(key_matches(&pair.cert_pem, &pair.key_pem).unwrap());
    }

    #[test]
    fn refuses_bad_validity() {
        for days in [0, MAX_DAYS + 1] {
            let err = generate_self_signed(&h("mail.example.com"), &[], days)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("tls_days: must be between 1 and 3650"),
                "{err}"
            );
        }
        let pair = generate_self_signed(&h("mail.example.com"), &[], 1).unwrap();
        let info = inspect(&pair.cert_pem).unwrap();
        assert!(info.valid_for(Utc::now(), 0));
        assert!(!info.valid_for(Utc::now(), 30));
    }

    #[test]
    fn detects_a_key_that_is_not_the_certificates() {
        let a = generate_self_signed(&h("mail.example.com"), &[], 30).unwrap();
        let b = generate_self_signed(&h("mail.example.com"), &[], 30).unwrap();
        assert!(!key_matches(&a.cert_pem, &b.key_pem).unwrap());
        assert!(!key_matches(&b.cert_pem, &a.key_pem).unwrap());
        // Serials differ between two certificates for the same name.
        assert_ne!(a.cert_pem, b.cert_pem);
        // An RSA DKIM key is a valid key, just not this one.
        let rsa = crate::keys::dkim::generate_key(2048).unwrap();
        assert!(!key_matches(&a.cert_pem, &rsa.private_pem).unwrap());
        // Garbage is an error, not a "no".
        assert!(key_matches(&a.cert_pem, "not a key").is_err());
        assert!(key_matches("not a cert", &a.key_pem).is_err());
        assert!(inspect("").is_err());
        assert!(inspect(&a.key_pem).is_err());
    }

    #[test]
    fn reads_the_leaf_of_a_chain_and_skips_a_leading_key() {
        let leaf = generate_self_signed(&h("mail.example.com"), &[], 30).unwrap();
        let other = generate_self_signed(&h("other.example.org"), &[], 300).unwrap();
        let chain = format!("{}{}", leaf.cert_pem, other.cert_pem);
        assert_eq!(inspect(&chain).unwrap().dns_names, ["mail.example.com"]);
        let bundle = format!("{}{}", leaf.key_pem, leaf.cert_pem);
        assert_eq!(inspect(&bundle).unwrap().dns_names, ["mail.example.com"]);
        assert!(key_matches(&bundle, &leaf.key_pem).unwrap());
    }

    #[test]
    fn reports_say_what_clients_would_meet() {
        let now = Utc::now();
        let info = CertInfo {
            dns_names: vec!["mail.example.com".into(), "autoconfig.example.com".into()],
            not_after: now + chrono::Duration::days(60),
            self_signed: false,
            issuer: "CN=R11".into(),
        };
        let clients = [h("autoconfig.example.com"), h("mta-sts.example.com")];
        let r = report(&info, now, &h("mail.example.com"), &clients);
        assert_eq!((r.severity, r.days_left), (1, 60));
        assert_eq!(
            r.problems,
            ["does not hold mta-sts.example.com: clients asking that name get a certificate warning"]
        );
        assert_eq!(
            r.coverage.iter().map(|c| c.covered).collect::<Vec<_>>(),
            [true, true, false]
        );
        let r = report(&info, now, &h("mail.example.com"), &clients[..1]);
        assert_eq!(r.severity, 0, "{:?}", r.problems);
        let r = report(
            &info,
            now + chrono::Duration::days(50),
            &h("mail.example.com"),
            &[],
        );
        assert_eq!((r.severity, r.days_left), (1, 10));
        let r = report(
            &info,
            now + chrono::Duration::days(61),
            &h("mail.example.com"),
            &[],
        );
        assert_eq!(r.severity, 2);
        assert!(r.problems[0].starts_with("expired on "), "{:?}", r.problems);
        let r = report(&info, now, &h("mx.example.org"), &[]);
        assert_eq!(r.severity, 2);
    }

    #[test]
    fn wildcards_cover_one_label() {
        let info = CertInfo {
            dns_names: vec!["*.example.com".into(), "Example.NET".into()],
            not_after: Utc::now(),
            self_signed: false,
            issuer: String::new(),
        };
        assert!(info.covers(&h("mail.example.com")));
        assert!(!info.covers(&h("example.com")));
        assert!(!info.covers(&h("a.mail.example.com")));
        assert!(info.covers(&h("example.net")));
    }

    fn openssl_run(args: &[&str], dir: &std::path::Path) -> String {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "openssl {args:?}: {text}");
        text
    }

    #[test]
    fn openssl_reads_and_verifies_the_certificate() {
        if !crate::keys::dkim::openssl_available() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let pair =
            generate_self_signed(&h("mail.example.com"), &[h("imap.example.com")], 365).unwrap();
        std::fs::write(dir.path().join("cert.pem"), &pair.cert_pem).unwrap();
        std::fs::write(dir.path().join("key.pem"), &pair.key_pem).unwrap();
        let text = openssl_run(&["x509", "-noout", "-text", "-in", "cert.pem"], dir.path());
        let text = text.replace("CN = ", "CN=");
        assert!(text.contains("Subject: CN=mail.example.com"), "{text}");
        assert!(text.contains("Issuer: CN=mail.example.com"), "{text}");
        assert!(
            text.contains("DNS:mail.example.com, DNS:imap.example.com"),
            "{text}"
        );
        assert!(text.contains("TLS Web Server Authentication"), "{text}");
        assert!(text.contains("CA:FALSE"), "{text}");
        assert!(text.contains("ecdsa-with-SHA256"), "{text}");
        assert!(
            text.contains("NIST CURVE: P-256") || text.contains("prime256v1"),
            "{text}"
        );
        let verify = openssl_run(&["verify", "-CAfile", "cert.pem", "cert.pem"], dir.path());
        assert!(verify.contains("cert.pem: OK"), "{verify}");
        let verify = openssl_run(
            &[
                "verify",
                "-CAfile",
                "cert.pem",
                "-purpose",
                "sslserver",
                "-verify_hostname",
                "imap.example.com",
                "cert.pem",
            ],
            dir.path(),
        );
        assert!(verify.contains("cert.pem: OK"), "{verify}");
        // The key parses and is the certificate's (openssl's view agrees with key_matches).
        openssl_run(&["pkey", "-in", "key.pem", "-check", "-noout"], dir.path());
        let from_cert = openssl_run(
            &["x509", "-in", "cert.pem", "-noout", "-pubkey"],
            dir.path(),
        );
        let from_key = openssl_run(&["pkey", "-in", "key.pem", "-pubout"], dir.path());
        assert_eq!(from_cert, from_key);
    }

    #[test]
    fn inspects_certificates_made_by_openssl() {
        if !crate::keys::dkim::openssl_available() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        // An old-style 1024-bit RSA self-signed certificate with a PKCS#1 key, as an earlier
        // installer may have left behind.
        openssl_run(
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:1024",
                "-nodes",
                "-days",
                "10",
                "-subj",
                "/CN=old.example.com",
                "-addext",
                "subjectAltName=DNS:old.example.com",
                "-keyout",
                "key8.pem",
                "-out",
                "cert.pem",
            ],
            dir.path(),
        );
        openssl_run(
            &["rsa", "-in", "key8.pem", "-traditional", "-out", "key1.pem"],
            dir.path(),
        );
        let cert = std::fs::read_to_string(dir.path().join("cert.pem")).unwrap();
        let key8 = std::fs::read_to_string(dir.path().join("key8.pem")).unwrap();
        let key1 = std::fs::read_to_string(dir.path().join("key1.pem")).unwrap();
        let info = inspect(&cert).unwrap();
        assert_eq!(info.dns_names, ["old.example.com"]);
        assert!(info.self_signed);
        assert!(!info.valid_for(Utc::now(), 30));
        assert!(key_matches(&cert, &key8).unwrap());
        assert!(key_matches(&cert, &key1).unwrap());
        let ours = generate_self_signed(&h("old.example.com"), &[], 30).unwrap();
        assert!(!key_matches(&cert, &ours.key_pem).unwrap());

        // A certificate signed by a CA is not self-signed; an EC key in SEC1 form is read too.
        openssl_run(
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "30",
                "-subj",
                "/CN=Test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
            dir.path(),
        );
        openssl_run(
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                "/CN=mail.example.com",
                "-keyout",
                "leaf.key",
                "-out",
                "leaf.csr",
            ],
            dir.path(),
        );
        std::fs::write(
            dir.path().join("ext.cnf"),
            "subjectAltName=DNS:mail.example.com,DNS:*.example.com\n",
        )
        .unwrap();
        openssl_run(
            &[
                "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-days",
                "60", "-extfile", "ext.cnf", "-out", "leaf.pem",
            ],
            dir.path(),
        );
        openssl_run(&["ec", "-in", "leaf.key", "-out", "leaf.sec1"], dir.path());
        let leaf = std::fs::read_to_string(dir.path().join("leaf.pem")).unwrap();
        let leaf_key = std::fs::read_to_string(dir.path().join("leaf.key")).unwrap();
        let leaf_sec1 = std::fs::read_to_string(dir.path().join("leaf.sec1")).unwrap();
        let info = inspect(&leaf).unwrap();
        assert!(!info.self_signed);
        assert_eq!(info.dns_names, ["mail.example.com", "*.example.com"]);
        assert!(info.covers(&h("smtp.example.com")));
        assert!(info.valid_for(Utc::now(), 30));
        assert!(key_matches(&leaf, &leaf_key).unwrap());
        if leaf_sec1.starts_with("-----BEGIN EC PRIVATE KEY-----") {
            assert!(key_matches(&leaf, &leaf_sec1).unwrap());
        }
        let ca = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
        assert!(inspect(&ca).unwrap().self_signed);
    }
}
