//! Which binaries may replace this one: a detached minisign signature (Ed25519 over the
//! file's BLAKE2b-512, minisign's default "prehashed" mode) by one of the release keys built
//! into this binary (`assets/release-keys.pub`) or listed in `upgrade.keys`. Nothing of a new
//! binary is executed before its signature verified.

use minisign_verify::{PublicKey, Signature};

/// The release keys, as `minisign -G` writes a public key file (comment lines allowed).
const BUILT_IN: &str = include_str!("../../assets/release-keys.pub");

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("{what} is not signed: no signature at {path} (upgrades need the release's .minisig)")]
    Unsigned { what: String, path: String },
    #[error("{what}: the signature is not a minisign signature ({reason})")]
    Malformed { what: String, reason: String },
    #[error(
        "{what} is signed by key {key_id}, which is neither a release key nor in upgrade.keys"
    )]
    UnknownKey { what: String, key_id: String },
    #[error("{what} does not match its signature (altered or damaged file)")]
    Invalid { what: String },
}

/// The keys a new binary may be signed with.
#[derive(Debug, Clone)]
pub struct TrustedKeys {
    keys: Vec<(String, PublicKey)>,
}

/// A key's id as minisign prints it (`minisign public key 4415D6B51158FC4E`): the 8 bytes
/// after the algorithm, little-endian, in upper-case hexadecimal.
fn key_id(raw: &[u8]) -> Option<String> {
    let id = raw.get(2..10)?;
    Some(id.iter().rev().map(|b| format!("{b:02X}")).collect())
}

fn decode_b64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
}

impl TrustedKeys {
    /// The built-in release keys and `extra` (base64 lines, already validated by the
    /// configuration).
    pub fn new(extra: &[String]) -> Self {
        let lines = BUILT_IN
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
            .map(str::to_string)
            .chain(extra.iter().map(|k| k.trim().to_string()));
        let keys = lines
            .filter_map(|line| {
                let key = PublicKey::from_base64(&line).ok()?;
                let id = key_id(&decode_b64(&line)?)?;
                Some((id, key))
            })
            .collect();
        TrustedKeys { keys }
    }

    /// The ids of the trusted keys (for messages and `upgrade --check`).
    pub fn ids(&self) -> Vec<String> {
        self.keys.iter().map(|(id, _)| id.clone()).collect()
    }

    /// Verifies `content` (called `what` in messages) against the minisign signature `text`;
    /// returns the signing key's id.
    pub fn verify(&self, what: &str, content: &[u8], text: &str) -> Result<String, SignatureError> {
        self.verify_reader(what, content, text, std::io::sink())
            .map_err(|e| match e {
                StreamError::Signature(s) => s,
                // Reading a slice and writing to a sink cannot fail.
                StreamError::Io(_) => SignatureError::Invalid {
                    what: what.to_string(),
                },
            })
    }

    /// Verifies what `reader` yields against `text` while copying it to `out` (one pass, in
    /// constant memory); returns the signing key's id. `out` holds unverified bytes until this
    /// returns Ok: the caller must discard it otherwise.
    pub fn verify_reader(
        &self,
        what: &str,
        mut reader: impl std::io::Read,
        text: &str,
        mut out: impl std::io::Write,
    ) -> Result<String, StreamError> {
        let malformed = |reason: String| SignatureError::Malformed {
            what: what.to_string(),
            reason,
        };
        let signature = Signature::decode(text).map_err(|e| malformed(e.to_string()))?;
        // The signature line is the second line: algorithm, key id, Ed25519 signature.
        let raw = text
            .lines()
            .nth(1)
            .and_then(decode_b64)
            .ok_or_else(|| malformed("no signature line".into()))?;
        let id = key_id(&raw).ok_or_else(|| malformed("short signature line".into()))?;
        if raw.get(..2) != Some(b"ED".as_slice()) {
            return Err(malformed(
                "a legacy (not prehashed) signature: sign with minisign 0.8 or later".into(),
            )
            .into());
        }
        let Some((_, key)) = self.keys.iter().find(|(k, _)| *k == id) else {
            return Err(SignatureError::UnknownKey {
                what: what.to_string(),
                key_id: id,
            }
            .into());
        };
        let invalid = || SignatureError::Invalid {
            what: what.to_string(),
        };
        let mut verifier = key.verify_stream(&signature).map_err(|_| invalid())?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = reader.read(&mut buf).map_err(StreamError::Io)?;
            if n == 0 {
                break;
            }
            verifier.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(StreamError::Io)?;
        }
        out.flush().map_err(StreamError::Io)?;
        verifier.finalize().map_err(|_| invalid())?;
        Ok(id)
    }
}

/// Why a streamed verification failed: the signature, or reading/writing the bytes.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    Io(std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_release_key_is_read() {
        let keys = TrustedKeys::new(&[]);
        assert_eq!(keys.ids(), ["4415D6B51158FC4E"]);
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let keys = TrustedKeys::new(&[]);
        for text in [
            "",
            "hello",
            "untrusted comment: x\n!!!\ntrusted comment: y\nzz\n",
        ] {
            assert!(matches!(
                keys.verify("x", b"data", text),
                Err(SignatureError::Malformed { .. })
            ));
        }
    }
}
