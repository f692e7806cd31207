//! The host, behind small seams: every path goes through a `Root` prefix so that tests and
//! `modobox render --root DIR` write into a directory instead of `/`.

pub mod cmd;
pub mod fs;
pub mod http;
pub mod mail;
pub mod maintenance;
pub mod net;
pub mod parallel;
pub mod privileges;
pub mod text;

use std::path::{Path, PathBuf};

/// The filesystem root modobox works on: `/` on a real host, a directory in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root(PathBuf);

impl Root {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Root(dir.into())
    }
    pub fn host() -> Self {
        Root(PathBuf::from("/"))
    }
    pub fn is_host(&self) -> bool {
        self.0 == Path::new("/")
    }
    pub fn dir(&self) -> &Path {
        &self.0
    }
    /// Where the absolute path `abs` of the target system lives under this root.
    pub fn path(&self, abs: &Path) -> PathBuf {
        let rel = abs.strip_prefix("/").unwrap_or(abs);
        self.0.join(rel)
    }
}
