//! Runs a child process and measures its wall time and peak resident memory.
//!
//! Peak memory is the kernel's own `ru_maxrss` for that one child, from `wait4(2)`: exact, no
//! sampling, and it includes descendants the child waited for. `/usr/bin/time` may be absent.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use wait4::Wait4;

/// What one run of a child did.
#[derive(Debug)]
pub(crate) struct Measured {
    pub(crate) wall: Duration,
    pub(crate) max_rss_bytes: u64,
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `cmd` to completion with its output captured.
pub(crate) fn run(cmd: &mut Command) -> Result<Measured> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let usage = loop {
        match child.wait4() {
            // Interrupted before the child was reaped: waiting again is safe.
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            other => break other.with_context(|| format!("waiting for {cmd:?}"))?,
        }
    };
    // The clock stops when the child exits, not when we have finished reading its output.
    let wall = start.elapsed();
    let stdout = stdout
        .join()
        .map_err(|_| anyhow!("stdout reader panicked"))??;
    let stderr = stderr
        .join()
        .map_err(|_| anyhow!("stderr reader panicked"))??;
    Ok(Measured {
        wall,
        max_rss_bytes: usage.rusage.maxrss,
        status: usage.status,
        stdout,
        stderr,
    })
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<std::io::Result<String>> {
    thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            pipe.read_to_string(&mut text)?;
        }
        Ok(text)
    })
}
