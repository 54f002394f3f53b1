//! The CLI's log output: `tracing` events on stderr, off unless asked for.
//!
//! `COHORT_LOG` sets the levels (`warn`, `debug`, `cohort_engine=debug,info`: targets as in
//! `tracing_subscriber::filter::Targets`). Plugin warnings reach the user without it, through
//! the run's progress output; this is for debugging. Every line passes through
//! `cohort_config::mask` before it is written.

use std::io::{self, Write};

use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Installs the subscriber, if `COHORT_LOG` asks for one.
pub(crate) fn init() {
    let Ok(spec) = std::env::var("COHORT_LOG") else {
        return;
    };
    let filter: Targets = match spec.parse() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("warning: COHORT_LOG=`{spec}` is not a log filter ({e}); logging is off");
            return;
        }
    };
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(Masked)
                .with_target(false),
        )
        .with(filter)
        .try_init();
}

/// Hands out writers that mask secrets from each line before it reaches stderr.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Masked;

impl<'a> MakeWriter<'a> for Masked {
    type Writer = MaskedLine;

    fn make_writer(&'a self) -> MaskedLine {
        MaskedLine(Vec::new())
    }
}

/// One event's text, written masked when the event is done.
pub(crate) struct MaskedLine(Vec<u8>);

impl Write for MaskedLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for MaskedLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let _ = io::stderr().write_all(cohort_config::mask::redact(&text).as_bytes());
    }
}
