use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use maildesk::config::Config;
use maildesk::identity::import::{ImportFileError, import_file};
use maildesk::store::Store;

use super::{Column, Table};

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
    let database = config.database.get_ref();
    let mut out = super::stdout();
    match command {
        Command::Import { file } => match import_file(&mut Store::open(database)?, &file) {
            Ok(s) => {
                writeln!(
                    out,
                    "{}: {} created, {} updated, {} unchanged",
                    file.display(),
                    s.created,
                    s.updated,
                    s.unchanged
                )?;
            }
            Err(e @ ImportFileError::Invalid(_)) => {
                eprintln!("{e}");
                return Ok(ExitCode::FAILURE);
            }
            Err(e) => return Err(e.into()),
        },
        Command::List { json } => {
            let accounts = Store::open_read_only(database)?.list_accounts()?;
            if json {
                super::write_json(&mut out, &accounts)?;
            } else {
                let mut table = Table::new(vec![
                    Column::left("REFERENCE", usize::MAX),
                    // Never cut: an address is what an operator searches for.
                    Column::left("EMAIL", usize::MAX),
                    Column::left("STATUS", 9),
                    Column::left("LANG", 4),
                    Column::left("NAME", usize::MAX),
                ]);
                for a in &accounts {
                    let a = &a.account;
                    table.row(vec![
                        a.reference.as_str().into(),
                        a.email.as_str().into(),
                        a.status.as_str().into(),
                        a.language.as_str().into(),
                        a.name.as_str().into(),
                    ]);
                }
                table.print(&mut out, usize::MAX)?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
