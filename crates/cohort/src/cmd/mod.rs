//! One module per subcommand.

pub(crate) mod plugins;
mod segment;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command};

pub(crate) fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Segment(cmd) => segment::run(cmd),
        Command::Plugins(cmd) => plugins::run(cmd, None).map(|()| ExitCode::SUCCESS),
    }
}
