//! A crash on purpose, for the tests that prove a killed run loses and duplicates nothing.
//!
//! `COHORT_FAILPOINT=NAME` or `NAME:N` aborts the process (no unwinding, no cleanup, like a
//! `kill -9`) the N-th time (default 1st) the run passes the point NAME: `after-pull`,
//! `after-segments`, `after-push` (a batch was pushed, its outcomes not yet recorded).
//!
//! `COHORT_FAILPOINT=sleep:NAME:MS` instead stalls the run MS milliseconds at NAME, every
//! time: a slow run, for the daemon's tests of drains and timeouts.

use std::sync::atomic::{AtomicU32, Ordering};

/// The armed failpoint of this process, if any.
#[derive(Debug, Default)]
pub struct Failpoint {
    armed: Option<(String, u32)>,
    stall: Option<(String, u64)>,
    hits: AtomicU32,
}

impl Failpoint {
    /// Reads `COHORT_FAILPOINT`.
    pub fn from_env() -> Failpoint {
        let spec = std::env::var("COHORT_FAILPOINT").ok();
        if let Some(rest) = spec.as_deref().and_then(|s| s.strip_prefix("sleep:"))
            && let Some((name, ms)) = rest.rsplit_once(':')
        {
            return Failpoint {
                armed: None,
                stall: Some((name.to_owned(), ms.parse().unwrap_or(1000))),
                hits: AtomicU32::new(0),
            };
        }
        let armed = spec.map(|spec| match spec.split_once(':') {
            Some((name, n)) => (name.to_owned(), n.parse().unwrap_or(1)),
            None => (spec, 1),
        });
        Failpoint {
            armed,
            stall: None,
            hits: AtomicU32::new(0),
        }
    }

    /// Aborts the process if this is the armed point's N-th pass.
    #[allow(clippy::print_stderr, reason = "the last words of a deliberate crash")]
    pub fn hit(&self, name: &str) {
        if let Some((stall, ms)) = &self.stall
            && stall == name
        {
            std::thread::sleep(std::time::Duration::from_millis(*ms));
        }
        let Some((armed, at)) = &self.armed else {
            return;
        };
        if armed == name {
            let n = self.hits.fetch_add(1, Ordering::SeqCst) + 1;
            if n == *at {
                eprintln!("COHORT_FAILPOINT: aborting at {name} #{n}");
                std::process::abort();
            }
        }
    }
}
