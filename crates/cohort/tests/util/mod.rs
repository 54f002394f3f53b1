//! Runs the real `cohort` binary in a temporary folder (in the manner of ripgrep's
//! `tests/util.rs`): write files, run a command, look at stdout, stderr and the exit code.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod pg;
pub mod shop;

/// A scratch folder and the binary.
pub struct Dir {
    pub tmp: tempfile::TempDir,
}

impl Dir {
    pub fn new() -> Dir {
        Dir {
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cohort"));
        cmd.current_dir(self.tmp.path());
        cmd
    }

    /// Runs `cohort ARGS` and returns what it did.
    pub fn run(&self, args: &[&str]) -> Run {
        let out = self.command().args(args).output().unwrap();
        Run::from(out)
    }
}

/// What a run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub stdout: String,
    pub stderr: String,
    pub code: Option<i32>,
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
            code: out.status.code(),
        }
    }
}

impl Run {
    /// Asserts success and returns stdout.
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code,
            Some(0),
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts failure.
    pub fn failed(self) -> Run {
        assert_eq!(
            self.code,
            Some(1),
            "expected failure\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// `segment members` counts from a `--output counts` table.
    pub fn counts(&self) -> Vec<(String, u64)> {
        self.stdout
            .lines()
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .map(|l| {
                let mut parts = l.split_whitespace();
                (
                    parts.next().unwrap().to_owned(),
                    parts.next().unwrap().parse().unwrap(),
                )
            })
            .collect()
    }
}

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

/// `../shared` beside the repository (or `COHORT_SHARED_DIR`).
pub fn shared() -> PathBuf {
    std::env::var_os("COHORT_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().parent().unwrap().join("shared"))
}

/// The shipped demo's files.
pub fn demo(name: &str) -> String {
    repo().join("config/demo").join(name).display().to_string()
}
