//! `modobox upgrade`: a new modobox binary, from a file or the release channel, verified
//! (minisign signature by a trusted key, SHA-256 from the channel's index) and staged in a
//! root-only directory before anything of it runs; then compared with this version
//! (downgrades refused unless asked) and asked for its plan against this server.

pub mod apply;
pub mod channel;
pub mod gate;
pub mod journal;
pub mod restore_point;
pub mod signature;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::system::cmd::Cmd;
use signature::{SignatureError, StreamError, TrustedKeys};

/// The largest binary accepted from a file (a release build is ~40 MB, a debug build with its
/// symbols ~450 MB); it is streamed, never held in memory.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024 * 1024;
/// The largest binary downloaded from the channel (held in memory to check its SHA-256 first).
pub const MAX_DOWNLOAD_BYTES: usize = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Channel(String),
    #[error("the new binary {path} does not run here: {reason}")]
    NotRunnable { path: String, reason: String },
    #[error(
        "{new} is older than this modobox ({ours}): refused (a downgrade needs --allow-downgrade)"
    )]
    Downgrade { new: String, ours: String },
    #[error("the new binary's plan: {0}")]
    Plan(String),
    #[error("{0}")]
    Failed(String),
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> UpgradeError + '_ {
    move |source| UpgradeError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A verified new binary, copied where only root can change it: only this copy ever runs,
/// so the file that was verified is the file that is executed.
#[derive(Debug, Clone, Serialize)]
pub struct Staged {
    pub path: PathBuf,
    pub version: String,
    /// The minisign key that signed it.
    pub key_id: String,
    pub sha256: String,
}

/// Where verified binaries wait: `<data>/upgrade/staged/`, 0700.
pub fn staging_dir(data: &Path) -> PathBuf {
    data.join("upgrade").join("staged")
}

/// Verifies what `reader` yields (named `what`) against `signature` while copying it into the
/// staging directory under `data`; only a verified copy is kept, and then asked its version.
pub fn stage(
    keys: &TrustedKeys,
    what: &str,
    reader: impl std::io::Read,
    signature: &str,
    data: &Path,
) -> Result<Staged, UpgradeError> {
    let dir = staging_dir(data);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(io(&dir))?;
    let path = dir.join("modobox");
    let tmp = dir.join(".modobox.verifying");
    let _ = std::fs::remove_file(&path);
    let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    let mut hashing = HashingWriter {
        inner: std::io::BufWriter::new(file),
        hasher: sha2::Sha256::default(),
    };
    let verified = keys.verify_reader(what, reader, signature, &mut hashing);
    let key_id = match verified {
        Ok(id) => id,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(match e {
                StreamError::Signature(s) => s.into(),
                StreamError::Io(e) => io(&tmp)(e),
            });
        }
    };
    let sha256 = hex(&sha2::Digest::finalize(hashing.hasher));
    let file = hashing
        .inner
        .into_inner()
        .map_err(|e| io(&tmp)(e.into_error()))?;
    file.sync_all().map_err(io(&tmp))?;
    // An open writer makes exec fail with "text file busy".
    drop(file);
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    let version = version_of(&path)?;
    Ok(Staged {
        path,
        version,
        key_id,
        sha256,
    })
}

/// Copies to `inner` and hashes what passes.
struct HashingWriter<W> {
    inner: W,
    hasher: sha2::Sha256,
}

impl<W: std::io::Write> std::io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Stages the binary at `file`, signed by `signature` (default: `FILE.minisig`).
pub fn stage_file(
    keys: &TrustedKeys,
    file: &Path,
    signature: Option<&Path>,
    data: &Path,
) -> Result<Staged, UpgradeError> {
    let sig_path = signature.map_or_else(
        || PathBuf::from(format!("{}.minisig", file.display())),
        Path::to_path_buf,
    );
    let meta = std::fs::metadata(file).map_err(io(file))?;
    if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
        return Err(UpgradeError::NotRunnable {
            path: file.display().to_string(),
            reason: format!("not a file of at most {MAX_FILE_BYTES} bytes"),
        });
    }
    let text = match std::fs::read_to_string(&sig_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SignatureError::Unsigned {
                what: file.display().to_string(),
                path: sig_path.display().to_string(),
            }
            .into())
        }
        Err(e) => return Err(io(&sig_path)(e)),
    };
    let reader = std::fs::File::open(file).map_err(io(file))?;
    stage(keys, &file.display().to_string(), reader, &text, data)
}

/// `modobox --version` of a staged binary ("modobox 0.2.0").
pub(crate) fn version_of(path: &Path) -> Result<String, UpgradeError> {
    let not_runnable = |reason: String| UpgradeError::NotRunnable {
        path: path.display().to_string(),
        reason,
    };
    let out = Cmd::new(&path.to_string_lossy())
        .arg("--version")
        .run()
        .map_err(|e| not_runnable(e.to_string()))?;
    out.stdout
        .split_whitespace()
        .nth(1)
        .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
        .map(str::to_string)
        .ok_or_else(|| not_runnable(format!("`--version` said {:?}", out.stdout.trim())))
}

/// What the new version is to this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Upgrade,
    Current,
    Downgrade,
}

pub fn direction(new: &str, ours: &str) -> Direction {
    use crate::jobs::public_api::newer;
    if newer(new, ours) {
        Direction::Upgrade
    } else if newer(ours, new) {
        Direction::Downgrade
    } else {
        Direction::Current
    }
}

/// One step of the new binary's plan for this server, as `plan --json` reports it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PlannedStep {
    pub step: String,
    pub outcome: String,
    pub changes: Vec<String>,
}

/// Runs `NEW plan --json` (the new binary's checks against this server's configuration,
/// changing nothing) and returns its steps.
pub fn plan(staged: &Staged, config_path: &Path) -> Result<Vec<PlannedStep>, UpgradeError> {
    let out = Cmd::new(&staged.path.to_string_lossy())
        .arg("--config")
        .arg(config_path.to_string_lossy())
        .args(["plan", "--json"])
        .run()
        .map_err(|e| UpgradeError::Plan(e.to_string()))?;
    parse_plan(&out.stdout)
}

/// The JSON array in `plan --json`'s output (progress lines come before it, a count after).
fn parse_plan(stdout: &str) -> Result<Vec<PlannedStep>, UpgradeError> {
    let lines: Vec<&str> = stdout.lines().collect();
    let start = lines.iter().position(|l| *l == "[");
    let end = lines.iter().rposition(|l| *l == "]");
    let (Some(start), Some(end)) = (start, end) else {
        return Err(UpgradeError::Plan("no JSON report in its output".into()));
    };
    serde_json::from_str(&lines[start..=end].join("\n"))
        .map_err(|e| UpgradeError::Plan(format!("its JSON report: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directions() {
        assert_eq!(direction("0.2.0", "0.1.0"), Direction::Upgrade);
        assert_eq!(direction("0.1.0", "0.1.0"), Direction::Current);
        assert_eq!(direction("0.1.0", "0.2.0"), Direction::Downgrade);
        assert_eq!(direction("0.2.0", "0.2.0rc1"), Direction::Upgrade);
    }

    #[test]
    fn the_plan_is_found_between_progress_lines() {
        let out = "[1/2] configuration: ok (0.0 s)\n[2/2] schema: will change (0.0 s)\n[\n  {\n    \"step\": \"schema\",\n    \"outcome\": \"will change\",\n    \"changes\": [\"apply migration 5\"],\n    \"seconds\": 0.0\n  }\n]\n1 of 2 steps would change\n";
        let steps = parse_plan(out).unwrap();
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].changes, ["apply migration 5"]);
        assert!(parse_plan("[1/1] x: ok\n").is_err());
    }
}
