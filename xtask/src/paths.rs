//! Where the repository, its target directory and the shared data live.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The workspace root: xtask sits one level below it.
pub(crate) fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// Cargo's target directory, honouring `CARGO_TARGET_DIR`.
pub(crate) fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => repo_root().join(dir),
        None => repo_root().join("target"),
    }
}

/// The project's shared folder (data sets, tools): `COHORT_SHARED_DIR`, else `../shared`.
pub(crate) fn shared_dir() -> Result<PathBuf> {
    let (dir, how) = match std::env::var_os("COHORT_SHARED_DIR") {
        Some(dir) => (PathBuf::from(dir), "COHORT_SHARED_DIR"),
        None => (
            repo_root().join("..").join("shared"),
            "the sibling of the repository",
        ),
    };
    if !dir.is_dir() {
        bail!(
            "the shared folder {} ({how}) does not exist; set COHORT_SHARED_DIR to the folder \
             holding data/cdnow and tools/gen_merchant_data.py",
            dir.display()
        );
    }
    dir.canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))
}
