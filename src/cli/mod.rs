//! The commands: each parses nothing (clap did, in `args`), resolves its inputs once
//! (`target`), calls the engine, hands results to the reports, and ends with an exit
//! code (`exit`). `main` maps a `Failure` to that code.

pub mod args;
pub mod audit;
pub mod checks;
pub mod completions;
pub mod demo;
pub mod exit;
pub mod fix;
pub mod init;
pub mod migrate;
pub mod target;

use crate::cli::args::{Cli, Command};
use crate::cli::exit::Failure;

pub async fn run(cli: Cli) -> Result<u8, Failure> {
    match cli.command {
        Command::Audit(args) => audit::run(*args).await,
        Command::Checks(cmd) => checks::run(cmd).await,
        Command::Migrate(cmd) => migrate::run(cmd).await,
        Command::Fix(args) => fix::run(*args).await,
        Command::Demo => demo::run().await,
        Command::Init(args) => init::run(args).await,
        Command::Completions { shell } => completions::completions(shell),
        Command::Man => completions::man(),
    }
}
