//! `maildesk generate`: the man pages and shell completions, made from the same clap
//! definitions as the parser so they cannot drift from it. Run by `scripts/package`
//! where the package is built, so it needs no config file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Write maildesk.1 and one page per subcommand (maildesk-run.1, ...) into DIR
    Man {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Write the completion script of each SHELL into DIR
    Completions {
        #[arg(required = true)]
        shells: Vec<Shell>,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

pub fn run(command: &Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Man { out } => {
            create(out)?;
            clap_mangen::generate_to(super::Cli::command(), out)
                .with_context(|| format!("cannot write the man pages to {}", out.display()))?;
        }
        Command::Completions { shells, out } => {
            create(out)?;
            let mut cli = super::Cli::command();
            for &shell in shells {
                let file = clap_complete::generate_to(shell, &mut cli, "maildesk", out)
                    .with_context(|| format!("cannot write the {shell} completions"))?;
                println!("{}", file.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn create(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}
