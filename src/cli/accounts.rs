use std::path::PathBuf;
use std::process::ExitCode;

use maildesk::config::Config;
use maildesk::identity::import::{ImportFileError, import_file};
use maildesk::store::Store;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create or update accounts from a CSV file (all rows or none)
    Import { file: PathBuf },
    /// List registered accounts
    List {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(config: &Config, command: Command) -> anyhow::Result<ExitCode> {
    let mut store = Store::open(config.database.get_ref())?;
    match command {
        Command::Import { file } => match import_file(&mut store, &file) {
            Ok(s) => {
                println!(
                    "{}: {} created, {} updated, {} unchanged",
                    file.display(),
                    s.created,
                    s.updated,
                    s.unchanged
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e @ ImportFileError::Invalid(_)) => {
                eprintln!("{e}");
                Ok(ExitCode::FAILURE)
            }
            Err(e) => Err(e.into()),
        },
        Command::List { json } => {
            let accounts = store.list_accounts()?;
            if json {
                super::print_json(&accounts)?;
            } else {
                println!(
                    "{:<12} {:<32} {:<10} {:<4} NAME",
                    "REFERENCE", "EMAIL", "STATUS", "LANG"
                );
                for a in &accounts {
                    let a = &a.account;
                    println!(
                        "{:<12} {:<32} {:<10} {:<4} {}",
                        a.reference, a.email, a.status, a.language, a.name
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
