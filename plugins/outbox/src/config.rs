//! The outbox's config: raw (as the user writes it) and validated.

use std::path::PathBuf;

use cohort_plugin_api::prelude::PluginError;
use serde::Deserialize;

/// Config of the `outbox` destination.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Folder a relative `dir` is taken from; the working directory by default. Cohort sets it
    /// to the config file's folder, so `dir = "out"` lands beside the config.
    #[serde(default)]
    pub base_dir: Option<PathBuf>,
    /// Folder the operations are written to. Audience operations go to
    /// `DIR/audiences/AUDIENCE/KEY.json`, emails to `DIR/messages/KEY.eml`.
    #[schemars(length(min = 1))]
    pub dir: PathBuf,
    /// Create the folder when it does not exist.
    #[serde(default = "yes")]
    pub create_dir: bool,
    /// Flush every file to disk before acknowledging it (slower, survives power loss).
    #[serde(default = "yes")]
    pub fsync: bool,
}

fn yes() -> bool {
    true
}

/// A config checked against the file system.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The folder, existing.
    pub dir: PathBuf,
    /// Whether to fsync.
    pub fsync: bool,
}

impl Config {
    /// Checks the folder, creating it if allowed.
    pub fn validate(self) -> Result<Validated, PluginError> {
        if self.dir.as_os_str().is_empty() {
            return Err(PluginError::config("/dir", "must not be empty"));
        }
        let dir = match &self.base_dir {
            Some(base) => base.join(&self.dir),
            None => self.dir,
        };
        match std::fs::metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(PluginError::config(
                    "/dir",
                    format!("{} exists but is not a folder", dir.display()),
                ));
            }
            Err(_) if self.create_dir => std::fs::create_dir_all(&dir).map_err(|e| {
                PluginError::config("/dir", format!("cannot create {}: {e}", dir.display()))
            })?,
            Err(_) => {
                return Err(PluginError::config(
                    "/dir",
                    format!(
                        "{} does not exist (set create_dir = true to create it)",
                        dir.display()
                    ),
                ));
            }
        }
        Ok(Validated {
            dir,
            fsync: self.fsync,
        })
    }
}
