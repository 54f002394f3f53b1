//! Finding a run's plugins and preparing the config each one is opened with.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use cohort_config::{Config, PluginConfig};
use cohort_plugin_host::LoadedPlugin;
use cohort_plugin_host::discovery::{self, Registry};
use serde_json::Value;

/// The plugins a configuration can use, found once per run.
#[derive(Debug)]
pub(crate) struct Plugins {
    registry: Registry,
    searched: Vec<String>,
}

impl Plugins {
    /// Discovers plugins beside the executable, in `[plugins] dir`, then in
    /// `COHORT_PLUGIN_PATH`.
    pub(crate) fn discover(config: &Config) -> Plugins {
        let dirs = discovery::default_search_dirs(config.plugins.dir.as_deref());
        let searched = dirs.iter().map(|d| d.dir.display().to_string()).collect();
        Plugins {
            registry: Registry::discover(&dirs),
            searched,
        }
    }

    /// The plugin called `name`.
    pub(crate) fn get(&self, name: &str) -> Result<&LoadedPlugin> {
        self.registry.get(name).ok_or_else(|| {
            anyhow!(
                "no plugin named `{name}` (searched {}; `cohort plugins list` shows what is found)",
                self.searched.join(", ")
            )
        })
    }
}

/// A plugin config ready to open: secrets resolved, relative paths anchored.
pub(crate) struct Prepared {
    pub(crate) value: Value,
    pub(crate) secrets: Vec<String>,
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
pub(crate) fn prepare(plugin: &LoadedPlugin, config: &PluginConfig) -> Result<Prepared> {
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
        bail!("the plugin config must be a table");
    };
    let anchored = match object.get("base_dir") {
        None | Some(Value::Null) => dir.to_path_buf(),
        Some(Value::String(s)) => dir.join(s),
        Some(other) => bail!("base_dir must be a path, not {other}"),
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
