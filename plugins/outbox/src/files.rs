//! Writing one file per operation key: atomically, at most once.
//!
//! A file is written under a temporary name in `DIR/.tmp`, flushed, then *hard-linked* to its
//! final name. Unlike a rename, a link fails when the target exists, so "create if absent" is a
//! single atomic step: two runs racing on the same key (or a run retried after a crash) can never
//! produce two files or a half-written one. Readers only ever see complete files.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// What happened to a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The file is new.
    Created,
    /// A file for this key was already there: nothing was written.
    AlreadyThere,
}

/// A file name for an idempotency key: safe on every file system, unique per key.
///
/// Letters, digits, `-`, `_` and `.` are kept; every other byte becomes `%XX`, so distinct keys
/// never share a name. Very long keys are shortened to a prefix plus a hash of the whole key.
pub fn file_stem(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_') || (b == b'.' && !out.is_empty()) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        return "%".to_owned();
    }
    if out.len() > 180 {
        let cut = out.char_indices().nth(160).map_or(out.len(), |(i, _)| i);
        out = format!("{}~{:016x}", &out[..cut], fnv1a(key.as_bytes()));
    }
    out
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Writes `bytes` to `target` unless it exists. `tmp_dir` must be on the same file system.
pub fn write_once(tmp_dir: &Path, target: &Path, bytes: &[u8], fsync: bool) -> io::Result<Written> {
    if target.exists() {
        return Ok(Written::AlreadyThere);
    }
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp: PathBuf = tmp_dir.join(format!(
        "{}.{}.{}.tmp",
        target.file_name().and_then(|n| n.to_str()).unwrap_or("op"),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        if fsync {
            file.sync_all()?;
        }
        drop(file);
        match fs::hard_link(&tmp, target) {
            Ok(()) => Ok(Written::Created),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Written::AlreadyThere),
            Err(e) => Err(e),
        }
    })();
    let _ = fs::remove_file(&tmp);
    if fsync && result.as_ref().is_ok_and(|w| *w == Written::Created) {
        sync_dir(target.parent().unwrap_or(Path::new(".")))?;
    }
    result
}

/// Makes a new directory entry durable (a no-op where directories cannot be opened).
fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir) {
        Ok(d) => d.sync_all().or(Ok(())),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_distinct_safe_file_names() {
        assert_eq!(file_stem("vip:42:upsert"), "vip%3A42%3Aupsert");
        assert_eq!(file_stem("../etc/passwd"), "%2E.%2Fetc%2Fpasswd");
        assert_ne!(file_stem("a/b"), file_stem("a%2Fb"));
        assert_eq!(file_stem(""), "%");
        let long = "k".repeat(500);
        let stem = file_stem(&long);
        assert!(stem.len() < 200);
        assert_ne!(stem, file_stem(&format!("{long}x")));
    }

    #[test]
    fn writing_the_same_target_twice_keeps_the_first_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("k.json");
        assert_eq!(
            write_once(dir.path(), &target, b"first", true).unwrap(),
            Written::Created
        );
        assert_eq!(
            write_once(dir.path(), &target, b"second", true).unwrap(),
            Written::AlreadyThere
        );
        assert_eq!(fs::read(&target).unwrap(), b"first");
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }
}
