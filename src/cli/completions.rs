//! `pg-integrity completions SHELL` and `pg-integrity man`: from the same clap
//! definitions as the parser, so they cannot drift apart.

use crate::cli::args::Cli;
use crate::cli::exit::{write_stdout, Failure, EXIT_INPUT, EXIT_OK};

pub fn completions(shell: clap_complete::Shell) -> Result<u8, Failure> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "pg-integrity", &mut out);
    write_stdout(&String::from_utf8_lossy(&out));
    Ok(EXIT_OK)
}

pub fn man() -> Result<u8, Failure> {
    let cmd = <Cli as clap::CommandFactory>::command();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut out)
        .map_err(|e| Failure::msg(EXIT_INPUT, e.to_string(), ""))?;
    write_stdout(&String::from_utf8_lossy(&out));
    Ok(EXIT_OK)
}
