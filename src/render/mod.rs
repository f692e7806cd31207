//! Every configuration file of the stack, produced from the embedded Tera templates (or an
//! override directory) with configuration + distribution facts + secrets. Strict: an undefined
//! variable is an error. `templates/files.toml` says which template goes where, with which
//! mode and owner, and when.

pub mod base;
pub mod context;
pub mod manifest;
pub mod merge;
pub mod write;

use std::path::{Path, PathBuf};

use include_dir::{include_dir, Dir};
use serde::Deserialize;
use tera::Tera;

use crate::system::fs::Owner;

static TEMPLATES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/templates");
static UNITS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/systemd");

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("template {name}: {message}")]
    Template { name: String, message: String },
    #[error("templates/files.toml: {0}")]
    FileList(String),
    #[error("templates/files.toml entry {template}: {field} renders to {value:?}, {rule}")]
    Entry {
        template: String,
        field: &'static str,
        value: String,
        rule: &'static str,
    },
    #[error("override directory {dir}: {source}")]
    Override { dir: String, source: std::io::Error },
}

/// One file as an install would write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// Absolute path on the target system.
    pub path: PathBuf,
    pub mode: u32,
    pub owner: Owner,
    pub content: String,
    /// When set, a symlink at this absolute path points to `path` (nginx sites-enabled).
    pub link: Option<PathBuf>,
    pub template: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileList {
    file: Vec<FileEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    /// Template name; may itself use variables (`dovecot/{{ distro.dovecot.dialect }}/...`).
    template: String,
    dest: String,
    mode: String,
    #[serde(default = "root_name")]
    user: String,
    #[serde(default = "root_name")]
    group: String,
    /// A Tera expression; the file exists only when it renders to `true`.
    #[serde(default)]
    when: Option<String>,
    #[serde(default)]
    link: Option<String>,
}

fn root_name() -> String {
    "root".into()
}

/// Tera loaded with every template, embedded or from an override directory that replaces
/// embedded templates of the same name.
#[derive(Debug)]
pub struct Renderer {
    tera: Tera,
    /// `files.toml`, kept raw: its values are small templates rendered one by one.
    file_list: String,
}

/// Files in `templates/` that are not templates.
fn is_template(name: &str) -> bool {
    name != FILE_LIST && !name.ends_with(".md") && !name.starts_with("web/")
}

const FILE_LIST: &str = "files.toml";

fn add_dir(tera: &mut Tera, dir: &Dir<'_>, prefix: &str) -> Result<(), RenderError> {
    for entry in dir.entries() {
        match entry {
            include_dir::DirEntry::Dir(d) => add_dir(tera, d, prefix)?,
            include_dir::DirEntry::File(f) => {
                let name = format!("{prefix}{}", f.path().display());
                if !is_template(&name) {
                    continue;
                }
                let text = f.contents_utf8().ok_or_else(|| RenderError::Template {
                    name: name.clone(),
                    message: "is not UTF-8".into(),
                })?;
                tera.add_raw_template(&name, text)
                    .map_err(|e| tera_error(&name, &e))?;
            }
        }
    }
    Ok(())
}

/// Tera nests the useful message in `source()`; flatten it into one line.
fn tera_error(name: &str, e: &tera::Error) -> RenderError {
    let mut message = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        message.push_str(": ");
        message.push_str(&s.to_string());
        src = s.source();
    }
    RenderError::Template {
        name: name.to_string(),
        message,
    }
}

fn add_override(
    tera: &mut Tera,
    file_list: &mut String,
    base: &Path,
    dir: &Path,
) -> Result<(), RenderError> {
    let err = |source| RenderError::Override {
        dir: base.display().to_string(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let entry = entry.map_err(err)?;
        let path = entry.path();
        if path.is_dir() {
            add_override(tera, file_list, base, &path)?;
        } else {
            let name = path
                .strip_prefix(base)
                .unwrap_or(&path)
                .display()
                .to_string();
            let text = std::fs::read_to_string(&path).map_err(err)?;
            if name == FILE_LIST {
                *file_list = text;
                continue;
            }
            if !is_template(&name) {
                continue;
            }
            tera.add_raw_template(&name, &text)
                .map_err(|e| tera_error(&name, &e))?;
        }
    }
    Ok(())
}

impl Renderer {
    pub fn new(override_dir: Option<&Path>) -> Result<Self, RenderError> {
        let mut tera = Tera::default();
        tera.autoescape_on(vec![]);
        add_dir(&mut tera, &TEMPLATES, "")?;
        add_dir(&mut tera, &UNITS, "systemd/")?;
        let mut file_list = TEMPLATES
            .get_file(FILE_LIST)
            .and_then(|f| f.contents_utf8())
            .unwrap_or_default()
            .to_string();
        if let Some(dir) = override_dir {
            add_override(&mut tera, &mut file_list, dir, dir)?;
        }
        Ok(Renderer { tera, file_list })
    }

    pub fn render_template(&self, name: &str, ctx: &tera::Context) -> Result<String, RenderError> {
        self.tera
            .render(name, ctx)
            .map_err(|e| tera_error(name, &e))
    }

    fn render_str(
        &self,
        what: &str,
        text: &str,
        ctx: &tera::Context,
    ) -> Result<String, RenderError> {
        Tera::one_off(text, ctx, false).map_err(|e| tera_error(what, &e))
    }

    /// Renders every file of `templates/files.toml` that applies to this configuration.
    pub fn render_all(&self, ctx: &tera::Context) -> Result<Vec<RenderedFile>, RenderError> {
        let list: FileList =
            toml::from_str(&self.file_list).map_err(|e| RenderError::FileList(e.to_string()))?;
        let mut out = Vec::new();
        for entry in list.file {
            if let Some(cond) = &entry.when {
                let v = self.render_str(&entry.template, &format!("{{{{ {cond} }}}}"), ctx)?;
                if v.trim() != "true" {
                    continue;
                }
            }
            let template = self.render_str(&entry.template, &entry.template, ctx)?;
            let dest = self.render_str(&entry.template, &entry.dest, ctx)?;
            let path = checked_path(&entry.template, "dest", &dest)?;
            let link = match &entry.link {
                Some(l) => {
                    let l = self.render_str(&entry.template, l, ctx)?;
                    if l.is_empty() {
                        None
                    } else {
                        Some(checked_path(&entry.template, "link", &l)?)
                    }
                }
                None => None,
            };
            let mode =
                u32::from_str_radix(entry.mode.trim_start_matches("0o"), 8).map_err(|_| {
                    RenderError::Entry {
                        template: entry.template.clone(),
                        field: "mode",
                        value: entry.mode.clone(),
                        rule: "must be an octal mode such as 0644",
                    }
                })?;
            let owner = Owner {
                user: self.render_str(&entry.template, &entry.user, ctx)?,
                group: self.render_str(&entry.template, &entry.group, ctx)?,
            };
            let content = self.render_template(&template, ctx)?;
            out.push(RenderedFile {
                path,
                mode,
                owner,
                content,
                link,
                template,
            });
        }
        Ok(out)
    }
}

fn checked_path(template: &str, field: &'static str, value: &str) -> Result<PathBuf, RenderError> {
    crate::names::SafePath::parse(field, value)
        .map(|p| p.as_path().to_path_buf())
        .map_err(|_| RenderError::Entry {
            template: template.to_string(),
            field,
            value: value.to_string(),
            rule: "must be a safe absolute path",
        })
}
