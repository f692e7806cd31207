//! The rendered base texts: the template output modobox last wrote to each file, mirrored
//! under `<paths.data>/rendered-base/<absolute path>` so that the next render can merge an
//! admin's edits three ways. Beside the manifest, not in it: an older modobox (a rolled-back
//! upgrade) must still read the manifest, whose fields are closed. Root-only, because rendered
//! files hold database passwords whatever their own mode.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::manifest::{checksum, Manifest};
use super::write::{io_err, WriteError};
use crate::system::fs::write_atomic;

pub const DIR_NAME: &str = "rendered-base";
const FILE_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;

/// The mirror of base texts, at a path of this host (under the render's root).
#[derive(Debug, Clone)]
pub struct Bases {
    dir: PathBuf,
}

impl Bases {
    /// The store beside the manifest file `manifest_file`.
    pub fn beside(manifest_file: &Path) -> Self {
        let parent = manifest_file.parent().unwrap_or(Path::new("/"));
        Bases {
            dir: parent.join(DIR_NAME),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the base of `target` (an absolute path of the target system) is kept.
    pub fn mirror(&self, target: &Path) -> Result<PathBuf, WriteError> {
        let rel = target.strip_prefix("/").unwrap_or(target);
        // Only plain names: a `..` would leave the mirror.
        if !target.is_absolute() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(io_err(target)(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a rendered file needs a plain absolute path",
            )));
        }
        Ok(self.dir.join(rel))
    }

    /// The base of `target`; `None` when there is none (files written before bases were kept)
    /// or it is not UTF-8 (then modobox did not write it).
    pub fn read(&self, target: &Path) -> Result<Option<String>, WriteError> {
        let path = self.mirror(target)?;
        match fs::read(&path) {
            Ok(bytes) => Ok(String::from_utf8(bytes).ok()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Stores `text` as the base of `target`: atomically, 0600 in 0700 directories.
    pub fn write(&self, target: &Path, text: &str) -> Result<(), WriteError> {
        let path = self.mirror(target)?;
        let mut dir = self.dir.clone();
        if let Some(parent) = dir.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        private_dir(&dir)?;
        let rel = path
            .parent()
            .and_then(|p| p.strip_prefix(&self.dir).ok())
            .unwrap_or(Path::new(""));
        for name in rel.components() {
            dir.push(name);
            private_dir(&dir)?;
        }
        write_atomic(&path, text.as_bytes(), FILE_MODE, None).map_err(io_err(&path))
    }
}

/// Creates `dir` 0700, or makes an existing one 0700: one made by hand, or by an older
/// version, may have any mode.
fn private_dir(dir: &Path) -> Result<(), WriteError> {
    match DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err(dir)(e)),
    }
    let meta = fs::symlink_metadata(dir).map_err(io_err(dir))?;
    if !meta.is_dir() {
        return Err(io_err(dir)(io::Error::new(
            io::ErrorKind::InvalidInput,
            "expected a directory (a link or a file is not followed)",
        )));
    }
    if meta.permissions().mode() & 0o7777 != DIR_MODE {
        fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE)).map_err(io_err(dir))?;
    }
    Ok(())
}

/// What modobox knows of its own writes: the manifest's checksums and the base texts.
#[derive(Debug)]
pub struct Records {
    pub manifest: Manifest,
    manifest_file: PathBuf,
    bases: Bases,
}

impl Records {
    /// The manifest at `manifest_file` (a path of this host) and the bases beside it.
    pub fn load(manifest_file: &Path) -> Result<Self, WriteError> {
        Ok(Records {
            manifest: Manifest::load(manifest_file).map_err(io_err(manifest_file))?,
            manifest_file: manifest_file.to_path_buf(),
            bases: Bases::beside(manifest_file),
        })
    }

    pub fn bases(&self) -> &Bases {
        &self.bases
    }

    /// The text modobox last wrote to `target`, when it can be known. The manifest's checksum
    /// decides: a stored base counts only when it is the text the manifest records (an older
    /// modobox may have rewritten the file and the manifest since, unaware of bases); without
    /// one, today's output or the file on disk is that text when its checksum is the
    /// manifest's.
    pub fn known_base(
        &self,
        target: &Path,
        disk: &[u8],
        new: &str,
    ) -> Result<Option<String>, WriteError> {
        let Some(sum) = self.manifest.files.get(target) else {
            return Ok(None);
        };
        if let Some(base) = self.bases.read(target)? {
            if checksum(base.as_bytes()) == *sum {
                return Ok(Some(base));
            }
        }
        if checksum(new.as_bytes()) == *sum {
            return Ok(Some(new.to_string()));
        }
        if checksum(disk) == *sum {
            return Ok(String::from_utf8(disk.to_vec()).ok());
        }
        Ok(None)
    }

    /// True when `text` is recorded as `target`'s base, in the manifest and the mirror.
    pub fn holds(&self, target: &Path, text: &str) -> Result<bool, WriteError> {
        Ok(
            self.manifest.files.get(target) == Some(&checksum(text.as_bytes()))
                && self.bases.read(target)?.as_deref() == Some(text),
        )
    }

    /// Records `text` as the template output modobox wrote to `target`, once the target holds
    /// it (or the admin's edits on top of it). The base goes first, then the manifest: a crash
    /// in between leaves a base the manifest does not confirm, which `known_base` ignores.
    pub fn record(&mut self, target: &Path, text: &str) -> Result<(), WriteError> {
        if self.bases.read(target)?.as_deref() != Some(text) {
            // Written even when the manifest already has its checksum: the mirror may lack it.
            self.bases.write(target, text)?;
        }
        let sum = checksum(text.as_bytes());
        if self.manifest.files.get(target) != Some(&sum) {
            self.manifest.files.insert(target.to_path_buf(), sum);
            self.manifest
                .save(&self.manifest_file)
                .map_err(io_err(&self.manifest_file))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn bases_are_root_only_whatever_the_directories_were() {
        let dir = tempfile::tempdir().unwrap();
        let bases = Bases::beside(&dir.path().join("data/rendered-files.json"));
        // An existing, too open directory of the mirror is narrowed.
        let postfix = bases.dir().join("etc/postfix");
        fs::create_dir_all(&postfix).unwrap();
        fs::set_permissions(bases.dir().join("etc"), fs::Permissions::from_mode(0o755)).unwrap();
        let target = Path::new("/etc/postfix/sql-aliases.cf");
        bases.write(target, "password = secret\n").unwrap();
        let file = bases.mirror(target).unwrap();
        assert_eq!(
            file,
            dir.path()
                .join("data/rendered-base/etc/postfix/sql-aliases.cf")
        );
        assert_eq!(mode(&file), 0o600);
        for d in [bases.dir().to_path_buf(), bases.dir().join("etc"), postfix] {
            assert_eq!(mode(&d), 0o700, "{}", d.display());
        }
        assert_eq!(
            bases.read(target).unwrap().as_deref(),
            Some("password = secret\n")
        );
        assert_eq!(bases.read(Path::new("/etc/postfix/main.cf")).unwrap(), None);
    }

    #[test]
    fn a_path_that_would_leave_the_mirror_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let bases = Bases::beside(&dir.path().join("rendered-files.json"));
        assert!(bases.mirror(Path::new("/etc/../../x")).is_err());
        assert!(bases.mirror(Path::new("etc/postfix/main.cf")).is_err());
    }

    #[test]
    fn a_base_counts_only_when_the_manifest_records_it() {
        let dir = tempfile::tempdir().unwrap();
        let manifest_file = dir.path().join("rendered-files.json");
        let target = Path::new("/etc/postfix/main.cf");
        let mut records = Records::load(&manifest_file).unwrap();
        // Never written by modobox: no base, whatever the texts.
        assert_eq!(records.known_base(target, b"a\n", "a\n").unwrap(), None);

        records.record(target, "v1\n").unwrap();
        let records = Records::load(&manifest_file).unwrap();
        assert_eq!(
            records
                .known_base(target, b"edited\n", "v2\n")
                .unwrap()
                .as_deref(),
            Some("v1\n")
        );

        // An older modobox rewrote the file and the manifest, not the base: the stale base
        // is ignored and the file on disk, matching the manifest, is the base.
        let mut older = Manifest::load(&manifest_file).unwrap();
        older
            .files
            .insert(target.to_path_buf(), checksum(b"old version\n"));
        older.save(&manifest_file).unwrap();
        let records = Records::load(&manifest_file).unwrap();
        assert_eq!(
            records
                .known_base(target, b"old version\n", "v2\n")
                .unwrap()
                .as_deref(),
            Some("old version\n")
        );
        // ... and when neither the file nor today's output is that text, nothing is known.
        assert_eq!(
            records.known_base(target, b"edited\n", "v2\n").unwrap(),
            None
        );
        // Today's output proves itself the same way.
        assert_eq!(
            records
                .known_base(target, b"edited\n", "old version\n")
                .unwrap()
                .as_deref(),
            Some("old version\n")
        );
    }
}
