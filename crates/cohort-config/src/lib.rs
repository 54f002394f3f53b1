//! Reading and checking Cohort's configuration.
//!
//! Owns the TOML format (one file, or a folder of `*.toml` with one workspace per file),
//! secrets placeholders (`${env:NAME}`, `${file:PATH}`), job schedules (cron) and every check
//! that needs nothing but the config: types, unknown keys with did-you-mean, names,
//! references, time zones, currencies, schedules. It must not open plugins, databases or the
//! network: `cohort validate` adds those checks on top, in the binary.
//!
//! Reading goes in two steps, after Vector: each file is read into raw structs that keep every
//! value's place ([`raw`]), then one pure function turns them into the validated [`Config`]
//! (`validate`), collecting every problem as a [`Diagnostic`] with `file:line:col` before
//! failing. The keys are documented in `docs/config.md`; a test keeps it complete.

mod diag;
mod duration;
pub mod mask;
mod model;
mod raw;
mod schedule;
mod secret;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use diag::{Diagnostic, Diagnostics, Location, did_you_mean, dotted_pointer};
pub use duration::parse_duration;
pub use model::{
    Campaign, Config, DATABASE_URL_ENV, DEFAULT_DATABASE_URL, DEFAULT_MISFIRE_GRACE,
    DEFAULT_RETRY_BACKOFF, DEFAULT_SHUTDOWN_GRACE, DEFAULT_WORKERS, Destination, Email, Identity,
    Job, Misfire, Mode, PluginsSection, RateLimit, Segment, ServerSection, Source, StoreSection,
    Template, Workspace,
};
pub use schedule::{Schedule, ScheduleError};
pub use secret::{PluginConfig, Resolved, SecretError, SecretString, SecretTemplate};
pub use validate::DEFAULT_BATCH_SIZE;

/// Reads the config at `path` (a file, or a folder whose `*.toml` files are read in name
/// order) and checks everything it can alone. `Err` holds every problem, sorted by place.
pub fn load(path: &Path) -> Result<Config, Diagnostics> {
    into_result(check(path))
}

/// Like [`load`], but returns the config as far as it could be read along with every problem,
/// so a caller (`cohort validate`) can go on checking plugins, segments and templates of a
/// config that has mistakes, and report everything at once. Entries too broken to use (no
/// name, no plugin) are left out.
pub fn check(path: &Path) -> (Config, Diagnostics) {
    let mut diags = Diagnostics::new();
    let files = match config_files(path) {
        Ok(files) => files,
        Err(d) => {
            diags.push(d);
            Vec::new()
        }
    };
    let mut raws = Vec::new();
    for file in &files {
        match std::fs::read_to_string(file) {
            Ok(text) => raws.push(raw::parse_file(file, &text, &mut diags)),
            Err(e) => diags.push(Diagnostic::new(
                Some(Location::start_of(file)),
                format!("cannot read {}: {e}", file.display()),
            )),
        }
    }
    let mut templates = BTreeMap::new();
    for path in raws.iter().flat_map(raw::RawFile::template_files) {
        let read = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_owned(),
            _ => e.to_string(),
        });
        templates.insert(path, read);
    }
    if raws.is_empty() {
        let empty = Config {
            store: StoreSection::default(),
            plugins: PluginsSection::default(),
            server: ServerSection::default(),
            workspaces: Vec::new(),
            files,
        };
        return (empty, diags);
    }
    finish(&raws, &templates, diags)
}

/// Reads a config from strings, for tests and tools: `(path, text)` pairs in order, template
/// files looked up in `files` by path (relative to the config's folder as written).
pub fn load_str(
    sources: &[(&Path, &str)],
    files: &BTreeMap<PathBuf, String>,
) -> Result<Config, Diagnostics> {
    let mut diags = Diagnostics::new();
    let raws: Vec<raw::RawFile> = sources
        .iter()
        .map(|(p, t)| raw::parse_file(p, t, &mut diags))
        .collect();
    let templates = raws
        .iter()
        .flat_map(raw::RawFile::template_files)
        .map(|p| {
            let read = files
                .get(&p)
                .cloned()
                .ok_or_else(|| "no such file".to_owned());
            (p, read)
        })
        .collect();
    into_result(finish(&raws, &templates, diags))
}

fn into_result((config, diags): (Config, Diagnostics)) -> Result<Config, Diagnostics> {
    if diags.is_empty() {
        Ok(config)
    } else {
        Err(diags)
    }
}

/// Validates the files read and merges in the problems found while reading them, sorted.
fn finish(
    raws: &[raw::RawFile],
    templates: &validate::TemplateFiles,
    mut diags: Diagnostics,
) -> (Config, Diagnostics) {
    let (config, more) = validate::validate(raws, templates);
    diags.extend(more);
    diags.sort();
    (config, diags)
}

/// The files of a config path: the file itself, or a folder's `*.toml` in name order.
fn config_files(path: &Path) -> Result<Vec<PathBuf>, Diagnostic> {
    let meta = std::fs::metadata(path).map_err(|e| {
        Diagnostic::new(None, format!("cannot read config {}: {e}", path.display()))
            .help("pass a config file or a folder of *.toml files; `cohort init` writes one")
    })?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path).map_err(|e| {
        Diagnostic::new(
            None,
            format!("cannot list config folder {}: {e}", path.display()),
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Diagnostic::new(
            None,
            format!("config folder {} has no *.toml files", path.display()),
        ));
    }
    Ok(files)
}

#[cfg(test)]
mod tests;
