//! Verifies a message's DKIM signature (RFC 6376, rsa-sha256, simple or relaxed
//! canonicalization) against a public key we already hold — the domain's key in the database —
//! so the upgrade's canary proves the server signs with the key its DNS publishes, without a
//! DNS lookup.

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Why a signature does not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("DKIM: {0}")]
pub struct DkimVerifyError(String);

fn fail(m: impl Into<String>) -> DkimVerifyError {
    DkimVerifyError(m.into())
}

/// A header field as it appears: its name, and the whole field (name, colon, value with its
/// folding as CRLF) without the final CRLF.
struct Field {
    name: String,
    raw: String,
}

/// Splits a message (CRLF or LF line ends) into header fields and body (each line ending in
/// CRLF).
fn split(message: &str) -> (Vec<Field>, String) {
    let mut lines: Vec<&str> = message
        .split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .collect();
    if message.ends_with('\n') {
        lines.pop();
    }
    let mut fields: Vec<Field> = Vec::new();
    let mut rest = lines.len();
    for (i, line) in lines.iter().enumerate() {
        if line.is_empty() {
            rest = i + 1;
            break;
        }
        match fields.last_mut() {
            Some(f) if line.starts_with([' ', '\t']) => {
                f.raw.push_str("\r\n");
                f.raw.push_str(line);
            }
            _ => fields.push(Field {
                name: line
                    .split(':')
                    .next()
                    .unwrap_or_default()
                    .trim_end()
                    .to_string(),
                raw: line.to_string(),
            }),
        }
    }
    let mut body = String::new();
    for line in lines.iter().skip(rest) {
        body.push_str(line);
        body.push_str("\r\n");
    }
    (fields, body)
}

fn relaxed_header(raw: &str) -> String {
    let (name, value) = raw.split_once(':').unwrap_or((raw, ""));
    let unfolded: String = value.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    let collapsed = unfolded
        .split([' ', '\t'])
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    format!("{}:{}", name.trim_end().to_ascii_lowercase(), collapsed)
}

/// The body canonicalized (`body` has CRLF line ends, one per line).
fn canonical_body(body: &str, relaxed: bool) -> String {
    let mut lines: Vec<String> = body
        .split("\r\n")
        .map(|l| {
            if relaxed {
                let mut collapsed = String::new();
                let mut space = false;
                for c in l.chars() {
                    if c == ' ' || c == '\t' {
                        space = true;
                    } else {
                        if space {
                            collapsed.push(' ');
                            space = false;
                        }
                        collapsed.push(c);
                    }
                }
                collapsed
            } else {
                l.to_string()
            }
        })
        .collect();
    // `split` leaves one empty piece after the final CRLF; then empty lines at the end go.
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    if lines.is_empty() {
        return if relaxed {
            String::new()
        } else {
            "\r\n".into()
        };
    }
    let mut out = lines.join("\r\n");
    out.push_str("\r\n");
    out
}

fn tags(value: &str) -> Vec<(String, String)> {
    value
        .split(';')
        .filter_map(|t| {
            let (k, v) = t.split_once('=')?;
            let v: String = v.chars().filter(|c| !c.is_whitespace()).collect();
            Some((k.trim().to_string(), v))
        })
        .collect()
}

/// Verifies the DKIM-Signature of `message` made for `domain`, with the public key
/// `public_b64` (base64 of the DER SubjectPublicKeyInfo, as `admin_domain.dkim_public_key`).
pub fn verify(message: &str, domain: &str, public_b64: &str) -> Result<(), DkimVerifyError> {
    let (fields, body) = split(message);
    let sig_index = (0..fields.len())
        .rev()
        .filter(|i| fields[*i].name.eq_ignore_ascii_case("DKIM-Signature"))
        .find(|i| {
            tags(fields[*i].raw.split_once(':').map_or("", |(_, v)| v))
                .iter()
                .any(|(k, v)| k == "d" && v.eq_ignore_ascii_case(domain))
        })
        .ok_or_else(|| fail(format!("no DKIM-Signature with d={domain}")))?;
    let sig = &fields[sig_index];
    let value = sig.raw.split_once(':').map_or("", |(_, v)| v);
    let t = tags(value);
    let get = |k: &str| t.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if get("a") != Some("rsa-sha256") {
        return Err(fail(format!(
            "algorithm {:?} (only rsa-sha256 is checked)",
            get("a")
        )));
    }
    let (hc, bc) = match get("c").unwrap_or("simple/simple").split_once('/') {
        Some((h, b)) => (h.to_string(), b.to_string()),
        None => (
            get("c").unwrap_or("simple").to_string(),
            "simple".to_string(),
        ),
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut canon = canonical_body(&body, bc == "relaxed");
    if let Some(l) = get("l") {
        let l: usize = l.parse().map_err(|_| fail("bad l= tag"))?;
        canon.truncate(l);
    }
    let bh = b64.encode(Sha256::digest(canon.as_bytes()));
    if Some(bh.as_str()) != get("bh") {
        return Err(fail(
            "the body hash does not match (the body changed after signing)",
        ));
    }
    let relaxed = hc == "relaxed";
    let canon_header = |raw: &str| {
        if relaxed {
            relaxed_header(raw)
        } else {
            raw.to_string()
        }
    };
    let mut signed = String::new();
    let mut used = vec![false; fields.len()];
    for name in get("h").unwrap_or_default().split(':') {
        // The last unused instance of the name, from the bottom up.
        if let Some(i) = (0..fields.len())
            .rev()
            .find(|i| !used[*i] && *i != sig_index && fields[*i].name.eq_ignore_ascii_case(name))
        {
            used[i] = true;
            signed.push_str(&canon_header(&fields[i].raw));
            signed.push_str("\r\n");
        }
    }
    // The signature field itself, its b= value emptied, without the final CRLF.
    let emptied = empty_b_tag(&sig.raw);
    signed.push_str(&canon_header(&emptied));
    let signature = b64
        .decode(get("b").ok_or_else(|| fail("no b= tag"))?)
        .map_err(|_| fail("b= is not base64"))?;
    let spki = b64
        .decode(public_b64.trim())
        .map_err(|_| fail("the stored public key is not base64"))?;
    let (_, info) = <x509_parser::x509::SubjectPublicKeyInfo as x509_parser::prelude::FromDer<
        '_,
        x509_parser::error::X509Error,
    >>::from_der(&spki)
    .map_err(|e| fail(format!("the stored public key: {e}")))?;
    let key = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
        info.subject_public_key.data.as_ref(),
    );
    key.verify(signed.as_bytes(), &signature).map_err(|_| {
        fail(format!(
            "the signature of d={domain} does not verify with its key"
        ))
    })
}

/// `raw` with the value of its `b=` tag removed (the tag and everything else kept as is).
fn empty_b_tag(raw: &str) -> String {
    let (name, value) = raw.split_once(':').unwrap_or((raw, ""));
    let mut out = String::new();
    let mut first = true;
    for tag in value.split(';') {
        if !first {
            out.push(';');
        }
        first = false;
        let key = tag.split('=').next().unwrap_or_default().trim();
        if key == "b" {
            let eq = tag.find('=').unwrap_or(tag.len());
            out.push_str(&tag[..=eq.min(tag.len() - 1)]);
        } else {
            out.push_str(tag);
        }
    }
    format!("{name}:{out}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_canonicalized_per_rfc() {
        assert_eq!(canonical_body("", false), "\r\n");
        assert_eq!(canonical_body("", true), "");
        assert_eq!(canonical_body("a  b \r\n\r\n\r\n", true), "a b\r\n");
        assert_eq!(canonical_body("a  b \r\n\r\n", false), "a  b \r\n");
    }

    #[test]
    fn headers_are_canonicalized_per_rfc() {
        assert_eq!(
            relaxed_header("SubJect :  Hi \r\n\tthere  "),
            "subject:Hi there"
        );
        assert_eq!(
            empty_b_tag("DKIM-Signature: v=1; b=abc\r\n def; bh=x"),
            "DKIM-Signature: v=1; b=; bh=x"
        );
    }
}
