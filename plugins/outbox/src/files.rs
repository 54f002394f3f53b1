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

use cohort_plugin_api::cohort_core::hash::fnv1a_64;

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
        out = format!("{}~{:016x}", &out[..cut], fnv1a_64(key.as_bytes()));
    }
    out
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

/// Removes the temporary files that writers which are gone left in `tmp_dir`.
///
/// A process killed between creating its temporary file and linking it leaves the file
/// behind; its operation was not acknowledged, so the next run writes it again under a new
/// name and the leftover is only clutter. A file is stale when the process named in it
/// (`NAME.PID.SEQ.tmp`) no longer runs: on Linux, when `/proc/PID` is gone; elsewhere, when
/// the file is over an hour old. Files of this process and of live writers are kept, so two
/// runs sharing an outbox never pull a file from under each other. Returns how many were
/// removed; a missing `tmp_dir` is not an error.
pub fn sweep_stale_temp_files(tmp_dir: &Path) -> io::Result<usize> {
    let entries = match fs::read_dir(tmp_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(writer_pid) else {
            continue;
        };
        if pid == std::process::id() || writer_may_be_alive(pid, &entry.path()) {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

/// The writer's process id in a temporary file's name (`NAME.PID.SEQ.tmp`).
fn writer_pid(name: &str) -> Option<u32> {
    let mut parts = name.rsplitn(4, '.');
    let (Some("tmp"), Some(seq), Some(pid), Some(_)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    seq.parse::<u64>().ok()?;
    pid.parse().ok()
}

fn writer_may_be_alive(pid: u32, file: &Path) -> bool {
    if cfg!(target_os = "linux") {
        return Path::new("/proc").join(pid.to_string()).exists();
    }
    let age = fs::metadata(file)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok());
    age.is_none_or(|age| age < std::time::Duration::from_secs(3600))
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
    fn temporary_files_of_writers_that_are_gone_are_swept_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        // A process that has exited: its id is free (until reused, which `/proc` would show).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        let stale = format!("shop%2Fthanks%2F1%2F1-send.eml.{gone}.3.tmp");
        let mine = format!("a.json.{}.0.tmp", std::process::id());
        for name in [stale.as_str(), mine.as_str(), "notes.txt", "x.1.tmp"] {
            fs::write(dir.path().join(name), b"partial").unwrap();
        }
        let removed = sweep_stale_temp_files(dir.path()).unwrap();
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        if cfg!(target_os = "linux") {
            assert_eq!(removed, 1);
            assert_eq!(left, [mine.as_str(), "notes.txt", "x.1.tmp"]);
        }
        assert_eq!(writer_pid(&stale), Some(gone));
        assert_eq!(writer_pid("x.1.tmp"), None);
        assert_eq!(sweep_stale_temp_files(&dir.path().join("none")).unwrap(), 0);
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
