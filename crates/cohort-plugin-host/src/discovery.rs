//! Finding plugins on disk.
//!
//! Places are searched in a fixed order, and the first plugin of a given name wins:
//!
//! 1. beside the `cohort` executable, and its `plugins/` subfolder: what `cargo build` and a
//!    release archive put there;
//! 2. `plugins.dir` from the config file;
//! 3. every folder of `COHORT_PLUGIN_PATH` (separated like `PATH`: `:` on Unix, `;` on Windows).
//!
//! In those folders only files named like a plugin are loaded: `libcohort_plugin_NAME.so` on
//! Linux, `libcohort_plugin_NAME.dylib` on macOS, `cohort_plugin_NAME.dll` on Windows (what cargo
//! names a `cdylib` package called `cohort-plugin-NAME`). Loading a library runs its code, so
//! Cohort never loads arbitrary libraries it happens to find next to itself. Any file can still
//! be loaded explicitly (`cohort plugins check PATH`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::LoadError;
use crate::plugin::LoadedPlugin;

/// The environment variable listing extra plugin folders.
pub const PLUGIN_PATH_ENV: &str = "COHORT_PLUGIN_PATH";

/// Prefix of a plugin file name (after the platform's `lib`, if any).
pub const FILE_PREFIX: &str = "cohort_plugin_";

/// Where a search folder came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    /// Beside the `cohort` executable (or in its `plugins/` subfolder).
    Executable,
    /// `plugins.dir` in the config.
    Config,
    /// `COHORT_PLUGIN_PATH`.
    Env,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Executable => "beside cohort",
            Origin::Config => "plugins.dir",
            Origin::Env => PLUGIN_PATH_ENV,
        })
    }
}

/// One folder to search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchDir {
    /// The folder.
    pub dir: PathBuf,
    /// Why it is searched.
    pub origin: Origin,
}

/// The folders to search, in order: beside `exe` (and `exe`'s `plugins/`), `config_dir`, then
/// `env_path` (the value of `COHORT_PLUGIN_PATH`).
pub fn search_dirs(
    exe: Option<&Path>,
    config_dir: Option<&Path>,
    env_path: Option<&std::ffi::OsStr>,
) -> Vec<SearchDir> {
    let mut dirs = Vec::new();
    if let Some(dir) = exe.and_then(Path::parent) {
        dirs.push(SearchDir {
            dir: dir.to_path_buf(),
            origin: Origin::Executable,
        });
        dirs.push(SearchDir {
            dir: dir.join("plugins"),
            origin: Origin::Executable,
        });
    }
    if let Some(dir) = config_dir {
        dirs.push(SearchDir {
            dir: dir.to_path_buf(),
            origin: Origin::Config,
        });
    }
    if let Some(path) = env_path {
        for dir in std::env::split_paths(path).filter(|d| !d.as_os_str().is_empty()) {
            dirs.push(SearchDir {
                dir,
                origin: Origin::Env,
            });
        }
    }
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|d| seen.insert(d.dir.clone()));
    dirs
}

/// The folders to search for this process: its own executable, `config_dir`, and the
/// environment.
pub fn default_search_dirs(config_dir: Option<&Path>) -> Vec<SearchDir> {
    let exe = std::env::current_exe().ok();
    let env = std::env::var_os(PLUGIN_PATH_ENV);
    search_dirs(exe.as_deref(), config_dir, env.as_deref())
}

/// Whether a file name follows the plugin naming convention on this platform.
pub fn is_plugin_file_name(name: &str) -> bool {
    let stem = name
        .strip_prefix(std::env::consts::DLL_PREFIX)
        .unwrap_or(name);
    let Some(rest) = stem.strip_prefix(FILE_PREFIX) else {
        return false;
    };
    match rest.strip_suffix(std::env::consts::DLL_SUFFIX) {
        Some(plugin) => !plugin.is_empty(),
        None => false,
    }
}

/// The file name a plugin package called `cohort-plugin-NAME` builds to on this platform.
pub fn plugin_file_name(name: &str) -> String {
    format!(
        "{}{FILE_PREFIX}{}{}",
        std::env::consts::DLL_PREFIX,
        name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    )
}

/// A plugin file found during discovery.
#[derive(Debug)]
pub struct Found {
    /// The file.
    pub path: PathBuf,
    /// Where it was found.
    pub origin: Origin,
    /// The plugin, or why it could not be loaded.
    pub result: Result<LoadedPlugin, LoadError>,
}

/// Every plugin found, by name, plus what could not be used.
#[derive(Debug, Default)]
pub struct Registry {
    /// The plugin used for each name (the first found).
    pub plugins: BTreeMap<String, (LoadedPlugin, Origin)>,
    /// Plugins hidden by an earlier one of the same name: `(path, origin, hidden by)`.
    pub shadowed: Vec<(PathBuf, Origin, PathBuf)>,
    /// Files named like plugins that failed to load.
    pub failed: Vec<(PathBuf, Origin, LoadError)>,
}

impl Registry {
    /// Searches `dirs` in order. Missing folders are skipped silently: most installs have no
    /// `plugins.dir` and no `COHORT_PLUGIN_PATH`.
    pub fn discover(dirs: &[SearchDir]) -> Registry {
        let mut reg = Registry::default();
        for found in scan(dirs) {
            match found.result {
                Ok(plugin) => {
                    let name = plugin.name().to_owned();
                    if let Some((first, _)) = reg.plugins.get(&name) {
                        reg.shadowed
                            .push((found.path, found.origin, first.path().to_path_buf()));
                    } else {
                        reg.plugins.insert(name, (plugin, found.origin));
                    }
                }
                Err(e) => reg.failed.push((found.path, found.origin, e)),
            }
        }
        reg
    }

    /// The plugin of that name, if found.
    pub fn get(&self, name: &str) -> Option<&LoadedPlugin> {
        self.plugins.get(name).map(|(p, _)| p)
    }
}

/// Loads every plugin-named file in `dirs`, in order (files sorted by name within a folder).
pub fn scan(dirs: &[SearchDir]) -> Vec<Found> {
    let mut out = Vec::new();
    for SearchDir { dir, origin } in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_type()
                    .map(|t| t.is_file() || t.is_symlink())
                    .unwrap_or(false)
            })
            .filter(|e| e.file_name().to_str().is_some_and(is_plugin_file_name))
            .map(|e| e.path())
            .collect();
        files.sort();
        for path in files {
            let result = LoadedPlugin::load(&path);
            out.push(Found {
                path,
                origin: *origin,
                result,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_named_like_plugins_are_candidates() {
        let ok = plugin_file_name("csv");
        assert!(is_plugin_file_name(&ok), "{ok}");
        assert!(!is_plugin_file_name(&format!(
            "{}cohort_core{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        )));
        assert!(!is_plugin_file_name(&format!(
            "{}cohort_plugin_{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        )));
        assert!(!is_plugin_file_name("cohort_plugin_csv.txt"));
    }

    #[test]
    fn search_order_is_executable_then_config_then_environment() {
        let env = std::env::join_paths(["/opt/a", "", "/opt/b"]).unwrap();
        let dirs = search_dirs(
            Some(Path::new("/usr/bin/cohort")),
            Some(Path::new("/etc/cohort/plugins")),
            Some(&env),
        );
        let got: Vec<(String, Origin)> = dirs
            .iter()
            .map(|d| (d.dir.display().to_string(), d.origin))
            .collect();
        assert_eq!(
            got,
            [
                ("/usr/bin".to_owned(), Origin::Executable),
                ("/usr/bin/plugins".to_owned(), Origin::Executable),
                ("/etc/cohort/plugins".to_owned(), Origin::Config),
                ("/opt/a".to_owned(), Origin::Env),
                ("/opt/b".to_owned(), Origin::Env),
            ]
        );
    }
}
