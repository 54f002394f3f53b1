//! `cohort`, the one binary: CLI, and later the daemon and HTTP API.
//!
//! It wires the library crates together and owns everything that touches the outside world
//! from the user's side: arguments, files, terminal output, exit codes. Errors are `anyhow`
//! here, with context saying what was being done; the libraries below return typed errors.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a CLI prints")]

mod cli;
mod cmd;
mod daemon;
mod load;
mod logging;
mod progress;
mod segments_file;

use std::process::ExitCode;

use clap::Parser;

/// Loading a shop allocates millions of short strings; mimalloc makes that markedly cheaper
/// than the system allocator (measured with `cargo xtask bench segments`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = cli::Cli::parse();
    // The daemon installs its own subscriber (`--log-format`).
    if !matches!(cli.command, cli::Command::Daemon(_)) {
        logging::init();
    }
    match cmd::run(cli) {
        Ok(code) => code,
        Err(err) => {
            // Every error leaves through the mask: a secret quoted by a plugin, a driver or a
            // path never reaches the terminal.
            let mask = |text: String| cohort_config::mask::redact(&text).into_owned();
            eprintln!("error: {}", mask(err.to_string()));
            let mut shown = err.to_string();
            for cause in err.chain().skip(1) {
                // Some errors already include their cause in their own message; say it once.
                let text = cause.to_string();
                if shown.contains(&text) {
                    continue;
                }
                eprintln!("  caused by: {}", mask(text.clone()));
                shown = text;
            }
            ExitCode::FAILURE
        }
    }
}

/// `cohort runs list | head` closes the pipe early. Rust ignores SIGPIPE, so the next `println!`
/// panics; a command line tool should just stop, as `ls | head` does. Other panics keep the
/// default report.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
