//! The incremental cursor: which files were read, how far, and how to tell they are the same.
//!
//! A file is identified by its path plus a hash (xxh3) of every byte read so far, `0..byte`.
//! A file that still starts with exactly those bytes only grew by appending: it is resumed at
//! the saved offset and only the new rows are read. Any other change, anywhere in the part
//! already read (a consent flag flipped in place, a row deleted), means the file is read again
//! in full; the store's content hashes keep unchanged records from counting as updates. A new
//! file is read from the start; a file that disappeared is forgotten.
//!
//! The hash is built while reading, over the bytes each page consumed, so a file is hashed once
//! per run however many pages it takes; checking it at the next run hashes the saved prefix
//! once, and reading on continues that same hash.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

/// Where a stream stands: one entry per file, in reading order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    /// Files, in the order they are read.
    pub files: Vec<FileState>,
    /// The full pass under way (`deletions = "delete"`): every file is being read again from
    /// its start, and the records the pass does not find are gone. Kept in the cursor so that a
    /// pass resumed after a crash keeps its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<String>,
    /// Whether a file of the pass was empty or unreadable: then the pass deletes nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pass_broken: bool,
}

impl Cursor {
    /// Starts a full pass: every file from its start, under a new name.
    pub fn start_full_pass(&mut self) {
        let mut seed = Xxh3::new();
        for f in &mut self.files {
            seed.update(f.path.to_string_lossy().as_bytes());
            *f = FileState::new(f.path.clone());
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        seed.update(&nanos.to_le_bytes());
        self.pass = Some(format!("{:016x}", seed.digest()));
        self.pass_broken = false;
    }
}

/// How far one file was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileState {
    /// The file.
    pub path: PathBuf,
    /// xxh3 of bytes `0..byte`, in hex. Absent in cursors of releases that fingerprinted only
    /// a file's first 4 KiB; such a file is read again in full once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_hash: Option<String>,
    /// Byte offset of the next unread row (0: not started).
    pub byte: u64,
    /// Line of that row (0: not started).
    pub line: u64,
    /// The old fingerprint's length: read, never written.
    #[serde(default, skip_serializing)]
    pub head_len: Option<u64>,
    /// The old fingerprint: read, never written.
    #[serde(default, skip_serializing)]
    pub head_hash: Option<String>,
}

impl FileState {
    fn new(path: PathBuf) -> FileState {
        FileState {
            path,
            prefix_hash: Some(PrefixHash::new().hex()),
            byte: 0,
            line: 0,
            head_len: None,
            head_hash: None,
        }
    }

    /// Whether this file was read to its end in this pass (`len` bytes long now).
    pub fn finished(&self, len: u64) -> bool {
        self.line > 0 && self.byte >= len
    }
}

/// The hash of a file's first bytes, extended as reading goes on.
#[derive(Clone)]
pub struct PrefixHash {
    state: Box<Xxh3>,
    /// How many bytes it covers.
    len: u64,
}

impl std::fmt::Debug for PrefixHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrefixHash({} bytes: {})", self.len, self.hex())
    }
}

impl Default for PrefixHash {
    fn default() -> Self {
        PrefixHash::new()
    }
}

impl PrefixHash {
    /// The hash of no bytes.
    pub fn new() -> PrefixHash {
        PrefixHash {
            state: Box::new(Xxh3::new()),
            len: 0,
        }
    }

    /// How many bytes it covers.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it covers no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Extends the hash over bytes `self.len()..to` of `path` (nothing if `to` is not past it).
    pub fn extend_to(&mut self, path: &Path, to: u64) -> io::Result<()> {
        if to <= self.len {
            return Ok(());
        }
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(self.len))?;
        let mut rest = file.take(to - self.len);
        let mut buf = vec![0; 256 * 1024];
        loop {
            let n = rest.read(&mut buf)?;
            if n == 0 {
                break;
            }
            self.state.update(&buf[..n]);
            self.len += n as u64;
        }
        if self.len < to {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while it was read", path.display()),
            ));
        }
        Ok(())
    }

    /// The hash, in hex.
    pub fn hex(&self) -> String {
        format!("{:016x}", self.state.digest())
    }
}

/// Why a file is read again from the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Something changed in the part read before (or the file shrank).
    Changed,
    /// The cursor is from a release that fingerprinted only the first 4 KiB.
    OldCursor,
}

/// The cursor for the files of this run, with what is known of each.
#[derive(Debug, Default)]
pub struct Reconciled {
    /// The cursor to read from.
    pub cursor: Cursor,
    /// The hash of each file's first `byte` bytes, ready to extend, by index in `cursor`.
    pub hashes: Vec<PrefixHash>,
    /// Files read before that are read again from the start, and why.
    pub restarted: Vec<(PathBuf, Restart)>,
    /// Files the cursor knew that are gone now.
    pub vanished: Vec<PathBuf>,
}

impl Cursor {
    /// The cursor for the files of this run: files whose read part is unchanged keep their
    /// offsets, everything else starts at 0.
    pub fn reconcile(&self, files: &[PathBuf]) -> io::Result<Reconciled> {
        let mut out = Reconciled::default();
        for path in files {
            let len = std::fs::metadata(path)?.len();
            let previous = self.files.iter().find(|f| &f.path == path);
            let (state, hash) = match previous {
                None => (FileState::new(path.clone()), PrefixHash::new()),
                Some(prev) => match same_prefix(prev, len)? {
                    Ok(hash) => (prev.clone(), hash),
                    Err(why) => {
                        if prev.byte > 0 {
                            out.restarted.push((path.clone(), why));
                        }
                        (FileState::new(path.clone()), PrefixHash::new())
                    }
                },
            };
            out.cursor.files.push(state);
            out.hashes.push(hash);
        }
        out.vanished = self
            .files
            .iter()
            .filter(|f| !files.contains(&f.path))
            .map(|f| f.path.clone())
            .collect();
        out.cursor.pass = self.pass.clone();
        out.cursor.pass_broken = self.pass_broken;
        Ok(out)
    }
}

/// The hash of the part of the file `state` says was read, if those bytes are unchanged.
fn same_prefix(state: &FileState, len: u64) -> io::Result<Result<PrefixHash, Restart>> {
    let Some(saved) = &state.prefix_hash else {
        return Ok(Err(Restart::OldCursor));
    };
    if len < state.byte {
        return Ok(Err(Restart::Changed));
    }
    let mut hash = PrefixHash::new();
    hash.extend_to(&state.path, state.byte)?;
    Ok(if &hash.hex() == saved {
        Ok(hash)
    } else {
        Err(Restart::Changed)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reconcile(c: &Cursor, path: &Path) -> Reconciled {
        c.reconcile(&[path.to_path_buf()]).expect("reconcile")
    }

    /// The cursor after reading `path` up to `byte`.
    fn read_to(path: &Path, byte: u64, line: u64) -> Cursor {
        let mut hash = PrefixHash::new();
        hash.extend_to(path, byte).expect("hash");
        let mut state = FileState::new(path.to_path_buf());
        (state.byte, state.line, state.prefix_hash) = (byte, line, Some(hash.hex()));
        Cursor {
            files: vec![state],
            ..Cursor::default()
        }
    }

    #[test]
    fn appended_files_resume_and_files_changed_anywhere_restart() {
        let dir = tempfile::tempdir().expect("dir");
        let a = dir.path().join("a.csv");
        let rows: String = (0..2000).map(|i| format!("{i},x\n")).collect();
        std::fs::write(&a, format!("id,v\n{rows}")).expect("write");
        let len = std::fs::metadata(&a).expect("meta").len();
        let c = read_to(&a, len, 2002);

        std::fs::write(&a, format!("id,v\n{rows}2000,x\n")).expect("append");
        let r = reconcile(&c, &a);
        assert_eq!(r.cursor.files[0].byte, len, "appended: resume");
        assert_eq!(r.hashes[0].len(), len, "the hash goes on from there");
        assert!(r.restarted.is_empty());

        // One byte changed well past the first 4 KiB, same length.
        let changed = format!("id,v\n{}", rows.replacen("1999,x", "1999,y", 1));
        std::fs::write(&a, changed).expect("edit");
        let r = reconcile(&c, &a);
        assert_eq!(r.cursor.files[0].byte, 0, "changed in place: restart");
        assert_eq!(r.restarted, [(a.clone(), Restart::Changed)]);

        std::fs::write(&a, "id,v\n1,x\n").expect("shrink");
        assert_eq!(reconcile(&c, &a).restarted, [(a.clone(), Restart::Changed)]);
    }

    #[test]
    fn a_cursor_of_the_previous_release_restarts_the_file_once() {
        let dir = tempfile::tempdir().expect("dir");
        let a = dir.path().join("a.csv");
        std::fs::write(&a, "id\n1\n").expect("write");
        let old = format!(
            r#"{{"files":[{{"path":{:?},"head_len":5,"head_hash":"af63bd4c8601b7df","byte":5,"line":3}}]}}"#,
            a.display().to_string()
        );
        let c: Cursor = serde_json::from_str(&old).expect("old cursors still parse");
        let r = reconcile(&c, &a);
        assert_eq!(r.cursor.files[0].byte, 0);
        assert_eq!(r.restarted, [(a, Restart::OldCursor)]);
        let written = serde_json::to_string(&r.cursor).expect("json");
        assert!(!written.contains("head_"), "{written}");
    }
}
