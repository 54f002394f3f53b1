//! Building plugin libraries from tests, benchmarks and tools.
//!
//! Integration tests must load the real `cdylib` cargo builds, and `cargo test` does not build
//! another package's `cdylib` for them. [`build_cdylib`] runs `cargo build -p PACKAGE` (with the
//! same cargo, target folder and profile flags) and reads the artifact's path from cargo's JSON
//! messages instead of guessing it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// The cargo running us (tests and xtask inherit `CARGO`), or `cargo` from `PATH`.
fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Builds `package`'s `cdylib` (in release when `release`) and returns its path. Builds once per
/// process and package.
pub fn build_cdylib(package: &str, release: bool) -> Result<PathBuf, String> {
    static BUILT: OnceLock<Mutex<HashMap<(String, bool), PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get(&(package.to_owned(), release)) {
        return Ok(path.clone());
    }
    let mut cmd = Command::new(cargo());
    cmd.args([
        "build",
        "--quiet",
        "--message-format=json-render-diagnostics",
        "-p",
        package,
    ]);
    if release {
        cmd.arg("--release");
    }
    let output = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running cargo to build {package}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`cargo build -p {package}` failed ({})",
            output.status
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let path = stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
        })
        .flat_map(|m| m["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .find(|f| f.to_string_lossy().ends_with(std::env::consts::DLL_SUFFIX))
        .ok_or_else(|| format!("cargo built {package} but reported no cdylib"))?;
    built.insert((package.to_owned(), release), path.clone());
    Ok(path)
}
