//! The checksum manifest: the template output modobox last wrote to each file, so that a later
//! run can tell a file an admin edited by hand (its checksum no longer matches). The texts
//! themselves are kept beside it (`base.rs`); this file's format stays as older versions read it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::system::fs::write_atomic;

pub const FILE_NAME: &str = "rendered-files.json";

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Absolute target path → SHA-256 (hex) of the template output modobox last wrote there
    /// (its base text). After a merge the file also holds the admin's edits, so its checksum
    /// differs on purpose: a binary that cannot merge sees an edited file and keeps it.
    pub files: BTreeMap<PathBuf, String>,
}

pub fn checksum(content: &[u8]) -> String {
    Sha256::digest(content)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Manifest {
    /// A missing manifest is an empty one; a corrupt one is an error (never guess).
    pub fn load(path: &Path) -> std::io::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e),
        }
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        write_atomic(path, text.as_bytes(), 0o644, None)
    }
}
