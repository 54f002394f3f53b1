//! One module per subcommand.

pub(crate) mod campaign;
pub(crate) mod explain;
pub(crate) mod init;
pub(crate) mod plugins;
pub(crate) mod run;
pub(crate) mod runs;
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
        Command::Run(args) => run::run(&args),
        Command::Daemon(args) => crate::daemon::run(&args),
        Command::Runs(cmd) => runs::run(&cmd),
        Command::Campaign(cmd) => campaign::run(cmd),
    }
}

/// Reads a config, printing every problem it has at once.
pub(crate) fn load_config(path: &std::path::Path) -> Result<cohort_config::Config> {
    cohort_config::load(path).map_err(|diagnostics| {
        anyhow::anyhow!(
            "{} problem(s) in the config:\n{diagnostics}",
            diagnostics.len()
        )
    })
}

/// The runtime the async commands run on: the store and plugin calls need one.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
