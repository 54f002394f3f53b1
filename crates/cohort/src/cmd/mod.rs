//! One module per subcommand.

mod segment;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command};

pub(crate) fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Segment(cmd) => segment::run(cmd),
    }
}
