//! Restore points: everything an upgrade may change, saved before it changes anything, in
//! `<data>/releases/<old version>/` (0700): the old binary, the configuration directory, every
//! rendered file (units included) with the manifest and the base texts, and the database as
//! its engine's own dump. A restore point is written under a temporary name and renamed into
//! place when complete, so a half-written one never exists; the last three are kept.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::UpgradeError;
use crate::config::Config;
use crate::secrets::Secrets;
use crate::store::Store;
use crate::system::fs::write_atomic;

/// How many restore points are kept.
pub const KEEP: usize = 3;

/// One saved path: its content lives under `files/<path>` when it was a file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    pub path: PathBuf,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Kind {
    File {
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Symlink {
        target: PathBuf,
    },
    /// Not there: a rollback removes what the new version created at this path.
    Absent,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub version: String,
    pub created: DateTime<Utc>,
    pub binary: PathBuf,
    /// The schema version the dump holds.
    pub schema: i32,
    /// The directories whose files are all saved (a rollback removes files added there).
    pub trees: Vec<PathBuf>,
    pub saved: Vec<Saved>,
}

/// What a rollback did to the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseBack {
    Unchanged,
    /// Newer migrations kept: all additive, accepted by the old version.
    KeptAdditive(Vec<i32>),
    /// The dump loaded: these migrations (recorded, or left half-way) undone.
    Restored {
        undone: Vec<i32>,
        unfinished: Vec<i32>,
    },
}

impl std::fmt::Display for DatabaseBack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unchanged => write!(f, "schema unchanged, kept"),
            Self::KeptAdditive(v) => {
                write!(f, "kept with the newer migrations {v:?} (all additive, accepted by the old version)")
            }
            Self::Restored { undone, unfinished } => {
                write!(f, "the restore point's dump put back")?;
                if !undone.is_empty() {
                    write!(f, "; migrations {undone:?} undone")?;
                }
                if !unfinished.is_empty() {
                    write!(
                        f,
                        "; migrations {unfinished:?} that had failed half-way undone"
                    )?;
                }
                Ok(())
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct RestorePoint {
    pub dir: PathBuf,
    pub meta: Meta,
}

pub fn releases_dir(data: &Path) -> PathBuf {
    data.join("releases")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> UpgradeError + '_ {
    super::io(path)
}

/// What a restore point holds: the binary, and the files of these trees and paths.
#[derive(Debug)]
pub struct Contents<'a> {
    pub binary: &'a Path,
    /// Saved whole: the configuration directory, the base texts.
    pub trees: Vec<PathBuf>,
    /// Saved one by one (present or absent): the rendered files and the manifest.
    pub paths: Vec<PathBuf>,
}

fn files_dir(dir: &Path) -> PathBuf {
    dir.join("files")
}

fn copy_of(dir: &Path, path: &Path) -> PathBuf {
    files_dir(dir).join(path.strip_prefix("/").unwrap_or(path))
}

fn tree_files(tree: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(tree) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            tree_files(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// Saves `path` into the restore point at `dir`.
fn save(dir: &Path, path: &Path) -> Result<Saved, UpgradeError> {
    let kind = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Kind::Absent,
        Err(e) => return Err(io(path)(e)),
        Ok(m) if m.file_type().is_symlink() => Kind::Symlink {
            target: std::fs::read_link(path).map_err(io(path))?,
        },
        Ok(m) => {
            let copy = copy_of(dir, path);
            if let Some(parent) = copy.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            std::fs::copy(path, &copy).map_err(io(&copy))?;
            Kind::File {
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
            }
        }
    };
    Ok(Saved {
        path: path.to_path_buf(),
        kind,
    })
}

/// Writes a restore point of `version` for `contents` and the database.
pub async fn create(
    config: &Config,
    secrets: &Secrets,
    store: &Store,
    version: &str,
    contents: &Contents<'_>,
) -> Result<RestorePoint, UpgradeError> {
    crate::fault::point("upgrade-restore-point")
        .map_err(|e| UpgradeError::Failed(e.to_string()))?;
    let releases = releases_dir(config.paths.data.as_path());
    std::fs::create_dir_all(&releases).map_err(io(&releases))?;
    std::fs::set_permissions(&releases, std::fs::Permissions::from_mode(0o700))
        .map_err(io(&releases))?;
    let dir = releases.join(version);
    let partial = releases.join(format!(".{version}.partial"));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(io(&partial))?;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o700))
        .map_err(io(&partial))?;

    let bin_copy = partial.join("modobox");
    std::fs::copy(contents.binary, &bin_copy).map_err(io(&bin_copy))?;
    let mut paths = contents.paths.clone();
    for tree in &contents.trees {
        tree_files(tree, &mut paths).map_err(io(tree))?;
    }
    paths.sort();
    paths.dedup();
    let saved = paths
        .iter()
        .map(|p| save(&partial, p))
        .collect::<Result<Vec<_>, _>>()?;

    let db_dir = partial.join("database");
    let scratch = partial.join("scratch");
    for d in [&db_dir, &scratch] {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    let schema = crate::backup::database::dump(config, secrets, store, &db_dir, &scratch)
        .await
        .map_err(|e| UpgradeError::Failed(format!("the database dump: {e}")))?;
    let _ = std::fs::remove_dir_all(&scratch);

    let meta = Meta {
        version: version.to_string(),
        created: Utc::now(),
        binary: contents.binary.to_path_buf(),
        schema,
        trees: contents.trees.clone(),
        saved,
    };
    let meta_path = partial.join("meta.json");
    let text = serde_json::to_vec_pretty(&meta).map_err(|e| UpgradeError::Failed(e.to_string()))?;
    write_atomic(&meta_path, &text, 0o600, None).map_err(io(&meta_path))?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
    }
    std::fs::rename(&partial, &dir).map_err(io(&dir))?;
    prune(&releases, &dir)?;
    Ok(RestorePoint { dir, meta })
}

/// Every complete restore point, newest first.
pub fn list(data: &Path) -> Result<Vec<RestorePoint>, UpgradeError> {
    let releases = releases_dir(data);
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&releases) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(&releases)(e)),
    };
    for entry in entries {
        let dir = entry.map_err(io(&releases))?.path();
        if let Ok(p) = RestorePoint::load(&dir) {
            out.push(p);
        }
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.meta.created));
    Ok(out)
}

/// Keeps the newest `KEEP` (always including `current`); partial leftovers go too.
fn prune(releases: &Path, current: &Path) -> Result<(), UpgradeError> {
    let data = releases.parent().unwrap_or(Path::new("/"));
    let points = list(data)?;
    for p in points.iter().skip(KEEP) {
        if p.dir != current {
            std::fs::remove_dir_all(&p.dir).map_err(io(&p.dir))?;
        }
    }
    Ok(())
}

impl RestorePoint {
    pub fn load(dir: &Path) -> Result<Self, UpgradeError> {
        let meta_path = dir.join("meta.json");
        let bytes = std::fs::read(&meta_path).map_err(io(&meta_path))?;
        let meta = serde_json::from_slice(&bytes)
            .map_err(|e| UpgradeError::Failed(format!("{}: {e}", meta_path.display())))?;
        Ok(RestorePoint {
            dir: dir.to_path_buf(),
            meta,
        })
    }

    /// The saved binary (the old version).
    pub fn binary(&self) -> PathBuf {
        self.dir.join("modobox")
    }

    /// Puts every saved file back as it was (files the new version added in the saved trees or
    /// at saved paths are removed) and the old binary in its place. Returns the paths changed.
    pub fn restore_files(&self, also_remove: &[PathBuf]) -> Result<Vec<PathBuf>, UpgradeError> {
        let mut changed = Vec::new();
        let saved: std::collections::BTreeSet<&Path> =
            self.meta.saved.iter().map(|s| s.path.as_path()).collect();
        let mut added = Vec::new();
        for tree in &self.meta.trees {
            tree_files(tree, &mut added).map_err(io(tree))?;
        }
        added.extend(also_remove.iter().cloned());
        for path in added {
            if !saved.contains(path.as_path()) && std::fs::symlink_metadata(&path).is_ok() {
                std::fs::remove_file(&path).map_err(io(&path))?;
                changed.push(path);
            }
        }
        for s in &self.meta.saved {
            if self.put_back(s)? {
                changed.push(s.path.clone());
            }
        }
        let bin = self.binary();
        let bytes = std::fs::read(&bin).map_err(io(&bin))?;
        if std::fs::read(&self.meta.binary).ok().as_deref() != Some(bytes.as_slice()) {
            write_atomic(&self.meta.binary, &bytes, 0o755, None).map_err(io(&self.meta.binary))?;
            changed.push(self.meta.binary.clone());
        }
        Ok(changed)
    }

    /// One saved path back in place; false when it already was.
    fn put_back(&self, s: &Saved) -> Result<bool, UpgradeError> {
        let path = &s.path;
        let current = std::fs::symlink_metadata(path).ok();
        match &s.kind {
            Kind::Absent => match current {
                Some(_) => {
                    std::fs::remove_file(path).map_err(io(path))?;
                    Ok(true)
                }
                None => Ok(false),
            },
            Kind::Symlink { target } => {
                if std::fs::read_link(path).ok().as_ref() == Some(target) {
                    return Ok(false);
                }
                if current.is_some() {
                    std::fs::remove_file(path).map_err(io(path))?;
                }
                std::os::unix::fs::symlink(target, path).map_err(io(path))?;
                Ok(true)
            }
            Kind::File { mode, uid, gid } => {
                let copy = copy_of(&self.dir, path);
                let bytes = std::fs::read(&copy).map_err(io(&copy))?;
                let same = current.as_ref().is_some_and(|m| {
                    m.is_file() && m.mode() & 0o7777 == *mode && m.uid() == *uid && m.gid() == *gid
                }) && std::fs::read(path).ok().as_deref() == Some(bytes.as_slice());
                if same {
                    return Ok(false);
                }
                if current.as_ref().is_some_and(|m| m.file_type().is_symlink()) {
                    std::fs::remove_file(path).map_err(io(path))?;
                }
                write_atomic(path, &bytes, *mode, None).map_err(io(path))?;
                std::os::unix::fs::chown(path, Some(*uid), Some(*gid)).map_err(io(path))?;
                Ok(true)
            }
        }
    }

    /// Replaces the live database with the dump (all or nothing, per engine).
    async fn restore_database(
        &self,
        config: &Config,
        secrets: &Secrets,
        store: &Store,
    ) -> Result<(), UpgradeError> {
        let scratch = self.dir.join("scratch");
        std::fs::create_dir_all(&scratch).map_err(io(&scratch))?;
        let result = crate::backup::database::load(
            config,
            secrets,
            store,
            &self.dir.join("database"),
            &scratch,
        )
        .await
        .map_err(|e| UpgradeError::Failed(format!("restoring the database dump: {e}")));
        let _ = std::fs::remove_dir_all(&scratch);
        result
    }

    /// Puts the database back as this restore point found it, as far as needed: kept when no
    /// migration ran since, kept when every newer migration is additive and `old_accepts` (the
    /// old version's own `db status` agrees), else the dump is loaded — also when a migration
    /// failed half-way on MariaDB (its DDL committed itself, nothing recorded it).
    pub async fn put_database_back(
        &self,
        config: &Config,
        secrets: &Secrets,
        store: &Store,
        old_accepts: impl FnOnce() -> bool,
    ) -> Result<DatabaseBack, UpgradeError> {
        let failed = |e: crate::store::StoreError| UpgradeError::Failed(e.to_string());
        let since: Vec<(i32, bool)> = crate::store::migrate::applied_after(store, self.meta.schema)
            .await
            .map_err(failed)?;
        let unfinished = crate::store::migrate::unfinished(store)
            .await
            .map_err(failed)?;
        let newer: Vec<i32> = since.iter().map(|(v, _)| *v).collect();
        if newer.is_empty() && unfinished.is_empty() {
            return Ok(DatabaseBack::Unchanged);
        }
        if unfinished.is_empty() && since.iter().all(|(_, additive)| *additive) && old_accepts() {
            return Ok(DatabaseBack::KeptAdditive(newer));
        }
        self.restore_database(config, secrets, store).await?;
        Ok(DatabaseBack::Restored {
            undone: newer,
            unfinished,
        })
    }

    /// Loads the dump into a scratch database and runs `migrate` there: the migrations are
    /// tried on a copy of the real data before they touch it.
    pub async fn migration_dry_run(
        &self,
        config: &Config,
        secrets: &Secrets,
    ) -> Result<Vec<i32>, UpgradeError> {
        let scratch = self.dir.join("scratch");
        std::fs::create_dir_all(&scratch).map_err(io(&scratch))?;
        let db = crate::backup::database::load_scratch(
            config,
            secrets,
            &self.dir.join("database"),
            &scratch,
        )
        .await
        .map_err(|e| {
            UpgradeError::Failed(format!("loading the dump into a scratch database: {e}"))
        })?;
        let url = crate::store::DatabaseUrl::from_config(&db.config, secrets);
        let result = async {
            let store = Store::connect(&url).await?;
            let applied = crate::store::migrate::migrate(&store).await;
            store.close().await;
            applied
        }
        .await
        .map_err(|e| {
            UpgradeError::Failed(format!("the migrations on a copy of the database: {e}"))
        });
        db.drop_it(secrets, &scratch).await;
        let _ = std::fs::remove_dir_all(&scratch);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_come_back_and_additions_go() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let point = root.join("point");
        let etc = root.join("etc");
        std::fs::create_dir_all(etc.join("sub")).unwrap();
        std::fs::write(etc.join("a.conf"), "old a").unwrap();
        std::fs::write(etc.join("sub/b.conf"), "old b").unwrap();
        std::fs::set_permissions(etc.join("a.conf"), std::fs::Permissions::from_mode(0o640))
            .unwrap();
        let rendered = root.join("main.cf");
        std::fs::write(&rendered, "old main").unwrap();
        let link = root.join("link");
        std::os::unix::fs::symlink("main.cf", &link).unwrap();
        let absent = root.join("new.cf");
        let bin = root.join("modobox");
        std::fs::write(&bin, "old binary").unwrap();

        let mut paths = vec![rendered.clone(), link.clone(), absent.clone()];
        tree_files(&etc, &mut paths).unwrap();
        let saved = paths.iter().map(|p| save(&point, p).unwrap()).collect();
        std::fs::copy(&bin, point.join("modobox")).unwrap();
        let rp = RestorePoint {
            dir: point.clone(),
            meta: Meta {
                version: "0.1.0".into(),
                created: Utc::now(),
                binary: bin.clone(),
                schema: 4,
                trees: vec![etc.clone()],
                saved,
            },
        };

        // What an upgrade does: edits, a new file in the tree, a new rendered file, a new binary.
        std::fs::write(etc.join("a.conf"), "new a").unwrap();
        std::fs::set_permissions(etc.join("a.conf"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        std::fs::write(etc.join("sub/added.conf"), "added").unwrap();
        std::fs::write(&rendered, "new main").unwrap();
        std::fs::remove_file(&link).unwrap();
        std::fs::write(&absent, "created").unwrap();
        let later = root.join("later.cf");
        std::fs::write(&later, "created too").unwrap();
        std::fs::write(&bin, "new binary").unwrap();

        let changed = rp.restore_files(std::slice::from_ref(&later)).unwrap();
        assert_eq!(
            std::fs::read_to_string(etc.join("a.conf")).unwrap(),
            "old a"
        );
        let mode = std::fs::metadata(etc.join("a.conf")).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o640);
        assert_eq!(
            std::fs::read_to_string(etc.join("sub/b.conf")).unwrap(),
            "old b"
        );
        assert!(!etc.join("sub/added.conf").exists());
        assert_eq!(std::fs::read_to_string(&rendered).unwrap(), "old main");
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("main.cf"));
        assert!(!absent.exists());
        assert!(!later.exists());
        assert_eq!(std::fs::read_to_string(&bin).unwrap(), "old binary");
        assert_eq!(changed.len(), 7, "{changed:?}");
        assert!(
            rp.restore_files(&[]).unwrap().is_empty(),
            "a second restore changes nothing"
        );
    }
}
