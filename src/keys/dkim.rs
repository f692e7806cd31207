//! DKIM keys the way Modoboa keeps them: an RSA private key in a PEM file that OpenDKIM reads,
//! and in `admin_domain.dkim_public_key` the base64 of the DER SubjectPublicKeyInfo (no PEM
//! armour, no line breaks), which is also what goes after `p=` in the DNS record.
//!
//! 2048- and 4096-bit keys are made in-process (rcgen on aws-lc). AWS-LC refuses to make or
//! load RSA keys below 2048 bits, so 1024-bit keys, which Modoboa still offers, are made by the
//! `openssl` command, as Modoboa itself does. Reading the public half out of a private key
//! file needs no crypto library at all: it is a few DER fields, parsed here, so keys of any
//! size adopted from an existing Modoboa work.

use crate::system::cmd::Cmd;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use rcgen::PublicKeyData as _;

use crate::names::NameError;

/// A freshly generated DKIM key pair.
#[derive(Clone, PartialEq, Eq)]
pub struct DkimKey {
    /// The private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), for the key file.
    pub private_pem: String,
    /// Base64 of the DER SubjectPublicKeyInfo, one line: `admin_domain.dkim_public_key`.
    pub public_b64: String,
}

impl std::fmt::Debug for DkimKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key, even in a debug dump.
        f.debug_struct("DkimKey")
            .field("private_pem", &"<redacted>")
            .field("public_b64", &self.public_b64)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    #[error(transparent)]
    Invalid(#[from] NameError),
    #[error("DKIM key generation failed: {0}")]
    Generate(String),
    #[error("DKIM private key: {0}")]
    Key(String),
}

/// The key lengths Modoboa offers (`admin_domain.dkim_key_length`).
pub const KEY_LENGTHS: [u32; 3] = [1024, 2048, 4096];

/// Generates an RSA key of `bits` (1024, 2048 or 4096) with public exponent 65537.
pub fn generate_key(bits: u32) -> Result<DkimKey, DkimError> {
    let size = match bits {
        1024 => return generate_with_openssl(bits),
        2048 => rcgen::RsaKeySize::_2048,
        4096 => rcgen::RsaKeySize::_4096,
        _ => {
            return Err(NameError::new(
                "dkim_key_length",
                "must be 1024, 2048 or 4096",
                &bits.to_string(),
            )
            .into())
        }
    };
    let kp = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, size)
        .map_err(|e| DkimError::Generate(e.to_string()))?;
    Ok(DkimKey {
        private_pem: kp.serialize_pem(),
        public_b64: STANDARD.encode(kp.subject_public_key_info()),
    })
}

fn generate_with_openssl(bits: u32) -> Result<DkimKey, DkimError> {
    let out = Cmd::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt"])
        .arg(format!("rsa_keygen_bits:{bits}"))
        .output()
        .map_err(|e| {
            DkimError::Generate(format!(
                "{bits}-bit keys are made with the openssl command (the built-in library only \
                 makes 2048 bits and more), and running it failed: {e}; install openssl or \
                 choose 2048"
            ))
        })?;
    if !out.success {
        return Err(DkimError::Generate(format!(
            "openssl genpkey exited with {}: {}",
            out.code
                .map_or_else(|| "a signal".to_string(), |c| format!("status {c}")),
            out.stderr.trim()
        )));
    }
    // A PEM key is ASCII: anything else fails to parse just below.
    let private_pem = out.stdout;
    let key = RsaPublic::from_private_pem(&private_pem)?;
    if key.bits() != bits as usize {
        return Err(DkimError::Generate(format!(
            "openssl made a {}-bit key instead of {bits}",
            key.bits()
        )));
    }
    Ok(DkimKey {
        public_b64: STANDARD.encode(key.spki_der()),
        private_pem,
    })
}

/// The `public_b64` of an RSA private key in PEM: PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1
/// (`BEGIN RSA PRIVATE KEY`), any size. Lets a key on disk be checked against the database.
pub fn public_from_private(pem: &str) -> Result<String, DkimError> {
    let key = RsaPublic::from_private_pem(pem)?;
    Ok(STANDARD.encode(key.spki_der()))
}

/// The size in bits of the RSA modulus of a private key in PEM.
pub fn key_bits(pem: &str) -> Result<usize, DkimError> {
    Ok(RsaPublic::from_private_pem(pem)?.bits())
}

/// The DNS TXT value for a DKIM public key: `v=DKIM1; k=rsa; p=<b64>`.
pub fn txt_value(public_b64: &str) -> String {
    format!("v=DKIM1; k=rsa; p={public_b64}")
}

/// A TXT value in zone-file syntax: cut into character-strings of at most 255 bytes (the DNS
/// limit of one string), each quoted with `"` and `\` escaped. One string is written bare
/// (`"v=spf1 mx -all"`); several are grouped in parentheses (`( "…" "…" )`), which is how zone
/// files and most DNS panels take a long DKIM key.
pub fn zone_txt(value: &str) -> String {
    let mut chunks: Vec<String> = Vec::new();
    let mut current = String::new();
    for c in value.chars() {
        if current.len() + c.len_utf8() > 255 {
            chunks.push(std::mem::take(&mut current));
        }
        current.push(c);
    }
    if !current.is_empty() || chunks.is_empty() {
        chunks.push(current);
    }
    let quoted: Vec<String> = chunks
        .iter()
        .map(|chunk| {
            let mut q = String::with_capacity(chunk.len() + 2);
            q.push('"');
            for c in chunk.chars() {
                match c {
                    '"' | '\\' => {
                        q.push('\\');
                        q.push(c);
                    }
                    // A control character (a line break above all) would end the record.
                    c if c.is_control() => {
                        let mut buf = [0u8; 4];
                        for b in c.encode_utf8(&mut buf).bytes() {
                            q.push_str(&format!("\\{b:03}"));
                        }
                    }
                    c => q.push(c),
                }
            }
            q.push('"');
            q
        })
        .collect();
    if quoted.len() == 1 {
        quoted.concat()
    } else {
        format!("( {} )", quoted.join(" "))
    }
}

// ---------------------------------------------------------------------------------------------
// Just enough DER to read an RSA private key and write its SubjectPublicKeyInfo.

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_NULL: u8 = 0x05;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;
/// 1.2.840.113549.1.1.1 (rsaEncryption), content octets.
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

fn bad(what: &str) -> DkimError {
    DkimError::Key(format!("not a valid RSA private key ({what})"))
}

/// Reads DER elements off the front of a byte slice.
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Der { rest: bytes }
    }

    /// The next element: its tag and its content octets.
    fn next(&mut self) -> Result<(u8, &'a [u8]), DkimError> {
        let (&tag, after_tag) = self.rest.split_first().ok_or_else(|| bad("truncated"))?;
        if tag & 0x1f == 0x1f {
            return Err(bad("unexpected high tag number"));
        }
        let (&first, mut after_len) = after_tag.split_first().ok_or_else(|| bad("truncated"))?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return Err(bad("unsupported length"));
            }
            let bytes = after_len.get(..n).ok_or_else(|| bad("truncated"))?;
            after_len = after_len.get(n..).ok_or_else(|| bad("truncated"))?;
            bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        let content = after_len.get(..len).ok_or_else(|| bad("truncated"))?;
        self.rest = after_len.get(len..).ok_or_else(|| bad("truncated"))?;
        Ok((tag, content))
    }

    fn expect(&mut self, tag: u8, what: &str) -> Result<&'a [u8], DkimError> {
        match self.next()? {
            (t, content) if t == tag => Ok(content),
            _ => Err(bad(what)),
        }
    }

    /// A non-negative INTEGER, without its leading zero octets.
    fn unsigned(&mut self, what: &str) -> Result<&'a [u8], DkimError> {
        let v = self.expect(TAG_INTEGER, what)?;
        if v.first().is_some_and(|b| b & 0x80 != 0) {
            return Err(bad(what));
        }
        let start = v.iter().position(|&b| b != 0).unwrap_or(v.len());
        Ok(v.get(start..).unwrap_or_default())
    }
}

fn der_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        let significant = bytes.get(skip..).unwrap_or_default();
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    der_len(content.len(), &mut out);
    out.extend_from_slice(content);
    out
}

/// A non-negative INTEGER from its big-endian magnitude (no leading zeros).
fn der_unsigned(magnitude: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(magnitude.len() + 1);
    if magnitude.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(magnitude);
    der_tlv(TAG_INTEGER, &content)
}

/// The public half of an RSA key: modulus and exponent, big-endian, no leading zeros.
struct RsaPublic {
    n: Vec<u8>,
    e: Vec<u8>,
}

impl RsaPublic {
    fn from_private_pem(pem: &str) -> Result<Self, DkimError> {
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .map_err(|_| DkimError::Key("no PEM block found".into()))?;
        match block.label.as_str() {
            "PRIVATE KEY" => Self::from_pkcs8(&block.contents),
            "RSA PRIVATE KEY" => Self::from_pkcs1(&block.contents),
            "ENCRYPTED PRIVATE KEY" => Err(DkimError::Key(
                "the key is encrypted with a passphrase, which OpenDKIM cannot read".into(),
            )),
            other => Err(DkimError::Key(format!(
                "expected a PEM private key (PRIVATE KEY or RSA PRIVATE KEY), found {other:?}"
            ))),
        }
    }

    /// PKCS#8 PrivateKeyInfo: version, AlgorithmIdentifier, OCTET STRING (RSAPrivateKey), ...
    fn from_pkcs8(der: &[u8]) -> Result<Self, DkimError> {
        let mut outer = Der::new(der);
        let info = outer.expect(TAG_SEQUENCE, "PKCS#8 structure")?;
        let mut info = Der::new(info);
        info.unsigned("PKCS#8 version")?;
        let alg = info.expect(TAG_SEQUENCE, "algorithm identifier")?;
        let oid = Der::new(alg).expect(TAG_OID, "algorithm identifier")?;
        if oid != OID_RSA_ENCRYPTION {
            return Err(DkimError::Key(
                "the key is not an RSA key (DKIM with k=rsa needs one)".into(),
            ));
        }
        let inner = info.expect(TAG_OCTET_STRING, "PKCS#8 private key")?;
        Self::from_pkcs1(inner)
    }

    /// PKCS#1 RSAPrivateKey: version, n, e, d, p, q, dp, dq, qinv.
    fn from_pkcs1(der: &[u8]) -> Result<Self, DkimError> {
        let mut outer = Der::new(der);
        let key = outer.expect(TAG_SEQUENCE, "RSAPrivateKey structure")?;
        let mut key = Der::new(key);
        key.unsigned("RSAPrivateKey version")?;
        let n = key.unsigned("modulus")?;
        let e = key.unsigned("public exponent")?;
        // The private exponent must follow: a public key alone is not a private key file.
        key.unsigned("private exponent")?;
        if n.len() < 64 || e.is_empty() {
            return Err(bad("modulus or exponent too small"));
        }
        Ok(RsaPublic {
            n: n.to_vec(),
            e: e.to_vec(),
        })
    }

    fn bits(&self) -> usize {
        let top = self.n.first().copied().unwrap_or(0);
        self.n.len() * 8 - top.leading_zeros() as usize
    }

    /// SubjectPublicKeyInfo { AlgorithmIdentifier { rsaEncryption, NULL }, BIT STRING {
    /// RSAPublicKey { n, e } } }.
    fn spki_der(&self) -> Vec<u8> {
        let mut rsa_public = der_unsigned(&self.n);
        rsa_public.extend(der_unsigned(&self.e));
        let rsa_public = der_tlv(TAG_SEQUENCE, &rsa_public);
        let mut alg = der_tlv(TAG_OID, OID_RSA_ENCRYPTION);
        alg.extend(der_tlv(TAG_NULL, &[]));
        let alg = der_tlv(TAG_SEQUENCE, &alg);
        let mut bits = vec![0u8];
        bits.extend(rsa_public);
        let mut spki = alg;
        spki.extend(der_tlv(TAG_BIT_STRING, &bits));
        der_tlv(TAG_SEQUENCE, &spki)
    }
}

/// Tests: `openssl` when installed; when `CI` is set its absence fails the test.
#[cfg(test)]
pub(crate) fn openssl_available() -> bool {
    let found = std::process::Command::new("openssl")
        .arg("version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "openssl is required when CI is set"
        );
        eprintln!("note: openssl not installed, skipping the openssl cross-check");
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    fn openssl(args: &[&str], dir: &Path) -> Vec<u8> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn pem_body(pem: &str) -> String {
        pem.lines().filter(|l| !l.starts_with("-----")).collect()
    }

    #[test]
    fn refuses_other_lengths_naming_the_field() {
        for bits in [0, 512, 1023, 3072, 8192] {
            let err = generate_key(bits).unwrap_err().to_string();
            assert!(
                err.starts_with("dkim_key_length: must be 1024, 2048 or 4096"),
                "{err}"
            );
            assert!(err.contains(&format!("\"{bits}\"")), "{err}");
        }
    }

    #[test]
    fn generated_2048_key_is_pkcs8_and_its_public_part_matches() {
        let key = generate_key(2048).unwrap();
        assert!(key.private_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(!key.public_b64.contains(['\n', '-', ' ']));
        assert_eq!(
            public_from_private(&key.private_pem).unwrap(),
            key.public_b64
        );
        assert_eq!(key_bits(&key.private_pem).unwrap(), 2048);
        // A 2048-bit SPKI is 294 bytes: 392 base64 characters, `MIIBIjAN…` as everyone knows it.
        assert_eq!(key.public_b64.len(), 392);
        assert!(key
            .public_b64
            .starts_with("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"));
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }

    #[test]
    fn generated_keys_cross_checked_with_openssl() {
        if !openssl_available() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        for bits in KEY_LENGTHS {
            let key = generate_key(bits).unwrap();
            std::fs::write(dir.path().join("key.pem"), &key.private_pem).unwrap();
            // Parses, and is consistent (openssl pkey -check).
            openssl(&["pkey", "-in", "key.pem", "-check", "-noout"], dir.path());
            let text = String::from_utf8(openssl(
                &["pkey", "-in", "key.pem", "-noout", "-text"],
                dir.path(),
            ))
            .unwrap();
            assert!(
                text.contains(&format!("Private-Key: ({bits} bit")),
                "{bits}: {text}"
            );
            assert!(text.contains("publicExponent: 65537"));
            // openssl rsa -pubout gives the same SubjectPublicKeyInfo as public_b64.
            let pubout =
                String::from_utf8(openssl(&["rsa", "-in", "key.pem", "-pubout"], dir.path()))
                    .unwrap();
            assert_eq!(pem_body(&pubout), key.public_b64, "{bits}");

            // Sign with the private key, verify with the public key rebuilt from public_b64.
            std::fs::write(
                dir.path().join("msg.txt"),
                b"From: a@example.com\r\nSubject: hi\r\n\r\nhello\r\n",
            )
            .unwrap();
            let wrapped: Vec<String> = key
                .public_b64
                .as_bytes()
                .chunks(64)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            std::fs::write(
                dir.path().join("pub.pem"),
                format!(
                    "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
                    wrapped.join("\n")
                ),
            )
            .unwrap();
            openssl(
                &[
                    "dgst", "-sha256", "-sign", "key.pem", "-out", "sig.bin", "msg.txt",
                ],
                dir.path(),
            );
            let verified = openssl(
                &[
                    "dgst",
                    "-sha256",
                    "-verify",
                    "pub.pem",
                    "-signature",
                    "sig.bin",
                    "msg.txt",
                ],
                dir.path(),
            );
            assert_eq!(String::from_utf8_lossy(&verified).trim(), "Verified OK");
            // And a tampered message does not verify.
            std::fs::write(dir.path().join("msg.txt"), b"tampered").unwrap();
            let out = Command::new("openssl")
                .args([
                    "dgst",
                    "-sha256",
                    "-verify",
                    "pub.pem",
                    "-signature",
                    "sig.bin",
                ])
                .arg("msg.txt")
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(!out.status.success());
        }
    }

    #[test]
    fn public_from_private_reads_pkcs1_and_pkcs8_made_by_openssl() {
        if !openssl_available() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        for bits in ["1024", "2048"] {
            // PKCS#1, as `openssl genrsa -traditional` (and Modoboa's older keys) write it.
            openssl(
                &["genrsa", "-traditional", "-out", "rsa1.pem", bits],
                dir.path(),
            );
            openssl(&["pkey", "-in", "rsa1.pem", "-out", "rsa8.pem"], dir.path());
            let pkcs1 = std::fs::read_to_string(dir.path().join("rsa1.pem")).unwrap();
            let pkcs8 = std::fs::read_to_string(dir.path().join("rsa8.pem")).unwrap();
            assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
            assert!(pkcs8.starts_with("-----BEGIN PRIVATE KEY-----"));
            let expected = pem_body(
                &String::from_utf8(openssl(&["pkey", "-in", "rsa1.pem", "-pubout"], dir.path()))
                    .unwrap(),
            );
            assert_eq!(public_from_private(&pkcs1).unwrap(), expected);
            assert_eq!(public_from_private(&pkcs8).unwrap(), expected);
            assert_eq!(key_bits(&pkcs1).unwrap().to_string(), bits);
        }
        // Not RSA: refused with a reason.
        openssl(
            &["genpkey", "-algorithm", "ED25519", "-out", "ed.pem"],
            dir.path(),
        );
        let ed = std::fs::read_to_string(dir.path().join("ed.pem")).unwrap();
        assert!(public_from_private(&ed)
            .unwrap_err()
            .to_string()
            .contains("not an RSA key"));
    }

    #[test]
    fn public_from_private_refuses_garbage() {
        assert!(public_from_private("").is_err());
        assert!(public_from_private("hello").is_err());
        let cert = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
        assert!(public_from_private(cert)
            .unwrap_err()
            .to_string()
            .contains("CERTIFICATE"));
        let enc =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(public_from_private(enc)
            .unwrap_err()
            .to_string()
            .contains("passphrase"));
        // Truncated and hostile DER never panics.
        let key = generate_key(2048).unwrap();
        let der = STANDARD.decode(pem_body(&key.private_pem)).unwrap();
        for cut in [0, 1, 2, 5, 20, 100, der.len() - 1] {
            let pem = format!(
                "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                STANDARD.encode(&der[..cut])
            );
            assert!(public_from_private(&pem).is_err(), "cut at {cut}");
        }
        let huge_len = [0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x02];
        let pem = format!(
            "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n",
            STANDARD.encode(huge_len)
        );
        assert!(public_from_private(&pem).is_err());
    }

    #[test]
    fn txt_value_and_zone_splitting() {
        assert_eq!(txt_value("QUJD"), "v=DKIM1; k=rsa; p=QUJD");
        assert_eq!(zone_txt("v=spf1 mx -all"), "\"v=spf1 mx -all\"");
        assert_eq!(zone_txt(""), "\"\"");
        assert_eq!(zone_txt("a\"b\\c"), "\"a\\\"b\\\\c\"");
        let long = "x".repeat(255);
        assert_eq!(zone_txt(&long), format!("\"{long}\""));
        let longer = "y".repeat(600);
        assert_eq!(
            zone_txt(&longer),
            format!(
                "( \"{}\" \"{}\" \"{}\" )",
                "y".repeat(255),
                "y".repeat(255),
                "y".repeat(90)
            )
        );
        // A real 4096-bit value: every string ≤ 255, concatenation gives the value back.
        let value = txt_value(&"A".repeat(736));
        let zone = zone_txt(&value);
        let inner = zone.trim_start_matches("( ").trim_end_matches(" )");
        let parts: Vec<&str> = inner.split("\" \"").collect();
        assert_eq!(parts.len(), 3);
        let joined: String = parts.iter().map(|p| p.trim_matches('"')).collect();
        assert_eq!(joined, value);
        assert!(parts.iter().all(|p| p.trim_matches('"').len() <= 255));
        // Line breaks cannot leak into a zone file.
        assert_eq!(zone_txt("a\nb"), "\"a\\010b\"");
        assert_eq!(zone_txt("a\u{85}b"), "\"a\\194\\133b\"");
    }

    /// Not a test of behaviour: prints how long key generation takes (run with --ignored
    /// --nocapture, in release, to measure).
    #[test]
    #[ignore]
    fn time_key_generation() {
        for bits in [2048, 4096] {
            let runs = if bits == 2048 { 10 } else { 3 };
            let mut times = Vec::new();
            for _ in 0..runs {
                let t = std::time::Instant::now();
                generate_key(bits).unwrap();
                times.push(t.elapsed());
            }
            times.sort();
            eprintln!(
                "{bits}-bit: min {:?}, median {:?}, max {:?} over {runs} runs",
                times[0],
                times[runs / 2],
                times[runs - 1]
            );
        }
    }
}
