//! The incremental cursor: which files were read, how far, and how to tell they are the same.
//!
//! A file is identified by its path plus a fingerprint of its first bytes (up to 4 KiB). CSV
//! exports grow by appending, which leaves those bytes alone, so a file whose fingerprint still
//! matches is resumed at the saved byte offset and only the new rows are read. A file whose
//! beginning changed, or that shrank below the offset, was replaced: it is read again from the
//! start. A new file is read from the start; a file that disappeared is forgotten.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How many leading bytes identify a file.
const HEAD: u64 = 4096;

/// Where a stream stands: one entry per file, in reading order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    /// Files, in the order they are read.
    pub files: Vec<FileState>,
}

/// How far one file was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileState {
    /// The file.
    pub path: PathBuf,
    /// How many leading bytes the fingerprint covers.
    pub head_len: u64,
    /// FNV-1a of those bytes, in hex.
    pub head_hash: String,
    /// Byte offset of the next unread row (0: not started).
    pub byte: u64,
    /// Line of that row.
    pub line: u64,
}

/// Fingerprint of a file as it is now: `(head_len, head_hash)`.
pub fn fingerprint(path: &Path, len: u64) -> io::Result<(u64, String)> {
    let head_len = len.min(HEAD);
    let mut buf = vec![0; usize::try_from(head_len).unwrap_or(0)];
    File::open(path)?.read_exact(&mut buf)?;
    Ok((head_len, hash(&buf)))
}

fn hash(bytes: &[u8]) -> String {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{h:016x}")
}

/// Whether `state` still describes the file at its path (same beginning, not shorter).
pub fn still_same(state: &FileState, len: u64) -> bool {
    if len < state.byte || len < state.head_len {
        return false;
    }
    let mut buf = vec![0; usize::try_from(state.head_len).unwrap_or(0)];
    match File::open(&state.path).and_then(|mut f| f.read_exact(&mut buf)) {
        Ok(()) => hash(&buf) == state.head_hash,
        Err(_) => false,
    }
}

impl Cursor {
    /// The cursor for the files of this run: entries of files that are unchanged keep their
    /// offsets, everything else starts at 0. Also returns the files that were replaced.
    pub fn reconcile(&self, files: &[PathBuf]) -> io::Result<(Cursor, Vec<PathBuf>)> {
        let mut out = Cursor::default();
        let mut replaced = Vec::new();
        for path in files {
            let len = std::fs::metadata(path)?.len();
            let previous = self.files.iter().find(|f| &f.path == path);
            match previous {
                Some(prev) if still_same(prev, len) => {
                    let mut state = prev.clone();
                    // The fingerprint grows with the file until it covers HEAD bytes.
                    if state.head_len < HEAD.min(len) {
                        let (head_len, head_hash) = fingerprint(path, len)?;
                        state.head_len = head_len;
                        state.head_hash = head_hash;
                    }
                    out.files.push(state);
                }
                other => {
                    if other.is_some() {
                        replaced.push(path.clone());
                    }
                    let (head_len, head_hash) = fingerprint(path, len)?;
                    out.files.push(FileState {
                        path: path.clone(),
                        head_len,
                        head_hash,
                        byte: 0,
                        line: 0,
                    });
                }
            }
        }
        Ok((out, replaced))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_files_resume_and_replaced_files_restart() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.csv");
        std::fs::write(&a, "id\n1\n").unwrap();
        let (c, _) = Cursor::default()
            .reconcile(std::slice::from_ref(&a))
            .unwrap();
        let mut c = c;
        c.files[0].byte = 5;
        c.files[0].line = 3;
        std::fs::write(&a, "id\n1\n2\n").unwrap();
        let (resumed, replaced) = c.reconcile(std::slice::from_ref(&a)).unwrap();
        assert_eq!(resumed.files[0].byte, 5, "appended: resume");
        assert!(replaced.is_empty());
        std::fs::write(&a, "id\n9\n8\n7\n").unwrap();
        let (restarted, replaced) = resumed.reconcile(std::slice::from_ref(&a)).unwrap();
        assert_eq!(restarted.files[0].byte, 0, "rewritten: restart");
        assert_eq!(replaced, [a]);
    }
}
