//! The CSV source's config: raw (as written) and validated (files found, columns checked).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cohort_csv::Overrides;
use cohort_plugin_api::wire::{ConfigIssue, Stream};
use serde::Deserialize;

/// Config of the `csv` source.
///
/// ```toml
/// [orders]
/// paths = ["exports/orders-*.csv"]
/// [customers]
/// paths = ["exports/customers.csv"]
/// columns = { email = "E-mail Address", "attributes.tier" = "Tier" }
/// ```
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Folder that relative paths are read from; the working directory by default.
    #[serde(default)]
    pub base_dir: Option<PathBuf>,
    /// Where customers come from.
    #[serde(default)]
    pub customers: Option<StreamConfig>,
    /// Where orders come from.
    #[serde(default)]
    pub orders: Option<StreamConfig>,
    /// Where engagement events come from.
    #[serde(default)]
    pub events: Option<StreamConfig>,
    /// Longest field accepted, in bytes (default 65536). A row with a longer field is reported
    /// and skipped; so is a quoted field still open this far on, which is taken for a quote
    /// left open by mistake: reading resumes at the line after the row's first, so the rows
    /// it would have swallowed still load.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub max_field_bytes: Option<u64>,
    /// What a record missing from a file read again in full means: `ignore` (the default:
    /// it stays, as before) or `delete` (the files are full exports: a customer, order or
    /// event no longer in them is marked deleted, leaves every segment, and mirror audiences
    /// drop it). With `delete`, a change to any file of a stream, or a file gone, reads all of
    /// the stream's files again; an empty or unreadable file deletes nothing.
    #[serde(default)]
    pub deletions: Deletions,
}

/// What a record missing from a full export means.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Deletions {
    /// Nothing: the record stays in the store.
    #[default]
    Ignore,
    /// The record is gone: marked deleted.
    Delete,
}

/// The files of one stream.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// Files to read: paths or glob patterns (`exports/orders-*.csv`, `data/**/*.csv`), read in
    /// sorted order. A plain path must exist; a pattern may match nothing yet.
    #[schemars(length(min = 1))]
    pub paths: Vec<String>,
    /// Columns for fields whose header is not one Cohort recognises: field name to column
    /// header (`email = "E-mail Address"`, `"attributes.tier" = "Tier"` for a custom attribute).
    /// The shared generator's layout and Shopify's exports need none.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
}

/// One stream, checked: where its files are and how its columns map.
#[derive(Debug, Clone)]
pub struct StreamFiles {
    /// Absolute paths and patterns, in config order.
    pub patterns: Vec<Pattern>,
    /// Column overrides.
    pub overrides: Overrides,
}

/// A configured path: literal or glob.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// A file that must exist.
    File(PathBuf),
    /// A glob pattern.
    Glob(String),
}

/// A config checked against the file system.
#[derive(Debug, Clone)]
pub struct Validated {
    /// Files per stream; a stream absent from the config yields nothing.
    pub streams: BTreeMap<Stream, StreamFiles>,
    /// The bound on one field, in bytes.
    pub max_field_bytes: u64,
    /// What a record missing from a file read again in full means.
    pub deletions: Deletions,
}

impl Config {
    /// Checks every stream, collecting every problem with its config path.
    pub fn validate(self) -> Result<Validated, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let base = self.base_dir.clone().unwrap_or_default();
        if self.base_dir.as_ref().is_some_and(|b| !b.is_dir()) {
            issues.push(issue(
                "/base_dir",
                format!("{} is not a folder", base.display()),
            ));
        }
        if self.max_field_bytes == Some(0) {
            issues.push(issue(
                "/max_field_bytes",
                "must be at least 1 (the default is 65536)".to_owned(),
            ));
        }
        let mut out = Validated {
            streams: BTreeMap::new(),
            max_field_bytes: self
                .max_field_bytes
                .unwrap_or(cohort_csv::DEFAULT_MAX_FIELD_BYTES),
            deletions: self.deletions,
        };
        for (stream, cfg) in [
            (Stream::Customers, self.customers),
            (Stream::Orders, self.orders),
            (Stream::Events, self.events),
        ] {
            let Some(cfg) = cfg else { continue };
            let at = format!("/{stream}");
            if cfg.paths.is_empty() {
                issues.push(issue(
                    &format!("{at}/paths"),
                    "list at least one file or pattern".to_owned(),
                ));
            }
            let mut patterns = Vec::new();
            for (i, p) in cfg.paths.iter().enumerate() {
                let full = absolute(&base, p);
                let text = full.to_string_lossy().into_owned();
                if p.contains(['*', '?', '[']) {
                    match glob::Pattern::new(&text) {
                        Ok(_) => patterns.push(Pattern::Glob(text)),
                        Err(e) => issues.push(issue(
                            &format!("{at}/paths/{i}"),
                            format!("bad pattern: {e}"),
                        )),
                    }
                } else if full.is_file() {
                    patterns.push(Pattern::File(full));
                } else {
                    issues.push(issue(
                        &format!("{at}/paths/{i}"),
                        format!("{} does not exist or is not a file", full.display()),
                    ));
                }
            }
            let mut overrides = Overrides::new();
            for (field, column) in &cfg.columns {
                if let Err(e) = overrides.add(stream, field, column) {
                    issues.push(issue(
                        &format!(
                            "{at}/columns/{}",
                            field.replace('~', "~0").replace('/', "~1")
                        ),
                        e.to_string(),
                    ));
                }
            }
            out.streams.insert(
                stream,
                StreamFiles {
                    patterns,
                    overrides,
                },
            );
        }
        if out.streams.is_empty() && issues.is_empty() {
            issues.push(issue(
                "",
                "configure at least one of `customers`, `orders` or `events`".to_owned(),
            ));
        }
        if issues.is_empty() {
            Ok(out)
        } else {
            Err(issues)
        }
    }
}

fn issue(path: &str, message: String) -> ConfigIssue {
    ConfigIssue {
        path: path.to_owned(),
        message,
    }
}

fn absolute(base: &Path, p: &str) -> PathBuf {
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

impl StreamFiles {
    /// The files to read now: patterns expanded, each list sorted, duplicates removed, in
    /// config order.
    pub fn files(&self) -> Result<Vec<PathBuf>, String> {
        let mut out: Vec<PathBuf> = Vec::new();
        for p in &self.patterns {
            match p {
                Pattern::File(f) => out.push(f.clone()),
                Pattern::Glob(g) => {
                    let mut matched: Vec<PathBuf> = glob::glob(g)
                        .map_err(|e| format!("bad pattern {g}: {e}"))?
                        .filter_map(Result::ok)
                        .filter(|p| p.is_file())
                        .collect();
                    matched.sort();
                    out.extend(matched);
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|p| seen.insert(p.clone()));
        Ok(out)
    }
}
