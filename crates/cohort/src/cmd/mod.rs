//! One module per subcommand.

pub(crate) mod plugins;
pub(crate) mod init;
mod segment;
pub(crate) mod validate;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command};

pub(crate) fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Segment(cmd) => segment::run(cmd),
        Command::Plugins(cmd) => plugins::run(cmd, None).map(|()| ExitCode::SUCCESS),
        Command::Validate(args) => validate::run(&args),
        Command::Init(args) => init::run(&args),
    }
}
