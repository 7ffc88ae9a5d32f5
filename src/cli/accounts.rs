use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::Utc;
use maildesk::config::Config;
use maildesk::diag::Diagnostic;
use maildesk::identity::import::parse_accounts;
use maildesk::store::Store;
use maildesk::store::accounts::ImportError;

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
        Command::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let records = match parse_accounts(&file, &text) {
                Ok(records) => records,
                Err(problems) => return Ok(report(&problems)),
            };
            match store.import_accounts(&records, &file.display().to_string(), Utc::now()) {
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
                Err(ImportError::Conflicts(conflicts)) => {
                    let problems: Vec<_> = conflicts
                        .into_iter()
                        .map(|(line, message)| Diagnostic::error(&file, message).at_line(line))
                        .collect();
                    Ok(report(&problems))
                }
                Err(ImportError::Store(e)) => Err(e.into()),
            }
        }
        Command::List { json } => {
            let accounts = store.list_accounts()?;
            if json {
                super::print_json(&accounts)?;
            } else {
                println!(
                    "{:<12} {:<32} {:<10} {:<4} {}",
                    "REFERENCE", "EMAIL", "STATUS", "LANG", "NAME"
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

fn report(problems: &[Diagnostic]) -> ExitCode {
    for problem in problems {
        eprintln!("{problem}");
    }
    eprintln!("nothing was imported");
    ExitCode::FAILURE
}
