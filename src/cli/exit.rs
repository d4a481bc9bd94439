//! How a command ends: its exit code (SPEC §1), the failure it reports, and what it
//! writes on stdout.

use crate::db::connection::ConnectionError;
use crate::db::sandbox::SandboxError;
use miette::Report;
use std::io::Write;

pub const EXIT_OK: u8 = 0;
pub const EXIT_GATE: u8 = 1;
pub const EXIT_INPUT: u8 = 2;
pub const EXIT_DATABASE: u8 = 3;

/// A command that could not finish: the exit code and what to tell the user.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub report: Report,
}

impl Failure {
    pub fn input(e: impl Into<Report>) -> Self {
        Failure {
            code: EXIT_INPUT,
            report: e.into(),
        }
    }
    pub fn database(e: impl Into<Report>) -> Self {
        Failure {
            code: EXIT_DATABASE,
            report: e.into(),
        }
    }
    pub fn msg(code: u8, msg: String, help: &str) -> Self {
        Failure {
            code,
            report: miette::miette!(help = help.to_string(), "{msg}"),
        }
    }
}

/// Bad input is exit 2; anything else from reaching the database is exit 3.
fn input_or_database(input: bool, report: Report) -> Failure {
    let code = if input { EXIT_INPUT } else { EXIT_DATABASE };
    Failure { code, report }
}

impl From<ConnectionError> for Failure {
    fn from(e: ConnectionError) -> Self {
        input_or_database(e.is_input_error(), e.into())
    }
}

impl From<SandboxError> for Failure {
    fn from(e: SandboxError) -> Self {
        input_or_database(e.is_input_error(), e.into())
    }
}

/// Write to stdout; a closed pipe (`| head`) is not an error.
pub fn write_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}
