//! Finding a run's plugins and preparing the config each one is opened with.

use std::path::Path;

use cohort_config::{Config, PluginConfig};
use cohort_plugin_host::LoadedPlugin;
use cohort_plugin_host::discovery::{self, Registry, SearchDir};
use cohort_plugin_host::wire::{DestinationMode, Kind};
use serde_json::Value;

use crate::error::{Context, EngineError, Result};

/// The plugins a configuration can use, found once per process (or config reload).
#[derive(Debug)]
pub struct Plugins {
    registry: Registry,
    dirs: Vec<SearchDir>,
}

impl Plugins {
    /// Discovers plugins beside the executable, in `[plugins] dir`, then in
    /// `COHORT_PLUGIN_PATH`.
    pub fn discover(config: &Config) -> Plugins {
        let dirs = discovery::default_search_dirs(config.plugins.dir.as_deref());
        Plugins {
            registry: Registry::discover(&dirs),
            dirs,
        }
    }

    /// Every plugin found, by name.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Where plugins were searched, in order.
    pub fn search_dirs(&self) -> &[SearchDir] {
        &self.dirs
    }

    /// The plugin called `name`.
    pub fn get(&self, name: &str) -> Result<&LoadedPlugin> {
        self.registry.get(name).ok_or_else(|| {
            let searched: Vec<String> = self
                .dirs
                .iter()
                .map(|d| d.dir.display().to_string())
                .collect();
            EngineError::config(format!(
                "no plugin named `{name}` (searched {}; `cohort plugins list` shows what is found)",
                searched.join(", ")
            ))
        })
    }

    /// The plugin called `name`, which must be a source.
    pub fn source(&self, name: &str) -> Result<&LoadedPlugin> {
        let plugin = self.get(name)?;
        if !plugin.manifest().is(Kind::Source) {
            return Err(EngineError::config(format!(
                "plugin `{}` is not a source (it is: {})",
                plugin.name(),
                plugin.manifest().kinds_label()
            )));
        }
        Ok(plugin)
    }

    /// The plugin called `name`, which must be a destination supporting `mode`.
    pub fn destination(&self, name: &str, mode: DestinationMode) -> Result<&LoadedPlugin> {
        let plugin = self.get(name)?;
        if !plugin.manifest().is(Kind::Destination) {
            return Err(EngineError::config(format!(
                "plugin `{}` is not a destination (it is: {})",
                plugin.name(),
                plugin.manifest().kinds_label()
            )));
        }
        if !plugin
            .manifest()
            .capabilities
            .destination_modes
            .contains(&mode)
        {
            return Err(EngineError::config(format!(
                "plugin `{}` does not support {mode} mode",
                plugin.name()
            )));
        }
        Ok(plugin)
    }
}

/// A plugin config ready to open: secrets resolved, relative paths anchored.
pub struct Prepared {
    /// The config the plugin is opened with.
    pub value: Value,
    /// The secrets in it, for the plugin host's redactor.
    pub secrets: Vec<String>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("secrets", &self.secrets.len())
            .finish_non_exhaustive()
    }
}

/// Resolves `${env:..}`/`${file:..}` in `config` and, when the plugin's schema has a `base_dir`
/// (plugins that read or write files do), anchors it at the config file's folder: relative
/// paths in a config mean "beside this file", whatever folder `cohort` runs from.
pub fn prepare(plugin: &LoadedPlugin, config: &PluginConfig) -> Result<Prepared> {
    let resolved = config
        .resolve()
        .with_context(|| format!("resolving the config of plugin `{}`", plugin.name()))?;
    let mut value = resolved.value;
    let takes_base_dir = plugin
        .manifest()
        .config_schema
        .pointer("/properties/base_dir")
        .is_some();
    if takes_base_dir {
        anchor_base_dir(&mut value, config.base_dir())?;
    }
    Ok(Prepared {
        value,
        secrets: resolved.secrets,
    })
}

fn anchor_base_dir(value: &mut Value, dir: &Path) -> Result<()> {
    let Some(object) = value.as_object_mut() else {
        return Err(EngineError::config("the plugin config must be a table"));
    };
    let anchored = match object.get("base_dir") {
        None | Some(Value::Null) => dir.to_path_buf(),
        Some(Value::String(s)) => dir.join(s),
        Some(other) => {
            return Err(EngineError::config(format!(
                "base_dir must be a path, not {other}"
            )));
        }
    };
    object.insert(
        "base_dir".to_owned(),
        Value::String(anchored.display().to_string()),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn base_dir_defaults_to_the_config_folder_and_relative_ones_are_anchored_there() {
        let mut absent = json!({"dir": "out"});
        anchor_base_dir(&mut absent, Path::new("/etc/cohort")).unwrap();
        assert_eq!(absent["base_dir"], "/etc/cohort");
        let mut relative = json!({"base_dir": "data"});
        anchor_base_dir(&mut relative, Path::new("/etc/cohort")).unwrap();
        assert_eq!(relative["base_dir"], "/etc/cohort/data");
        let mut absolute = json!({"base_dir": "/srv/shop"});
        anchor_base_dir(&mut absolute, Path::new("/etc/cohort")).unwrap();
        assert_eq!(absolute["base_dir"], "/srv/shop");
    }
}
