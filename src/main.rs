//! The `maildesk` command. All logic lives in the library; this is argument parsing,
//! printing and exit codes.

mod cli;
mod logging;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::main() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
