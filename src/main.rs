//! The `maildesk` command. All logic lives in the library; this is argument parsing,
//! printing and exit codes.

mod cli;
mod logging;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::main() {
        Ok(code) => code,
        // The reader of our output went away (`| head`): nothing is wrong, nothing to say.
        Err(error) if cli::is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
