//! Command-line interface: one file per subcommand.

mod accounts;
mod check;
mod config;
mod generate;
mod rules;
mod run;
mod tickets;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use maildesk::config::{Config, ConfigError};

use crate::logging::LogFormat;

#[derive(Parser)]
#[command(
    name = "maildesk",
    version,
    about = "Support and abuse desk for a hosting provider, run over email"
)]
struct Cli {
    /// Config file [default: ./maildesk.toml, then /etc/maildesk/maildesk.toml]
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log lines on stderr: text, or one JSON object per line
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read the mailboxes, store and answer mail, deliver the outbox
    Run(run::Args),
    /// Validate the config, rules and templates without touching any mailbox
    Check,
    /// Print the configuration in force, every default filled in
    Config,
    /// Rules: try them on a message
    #[command(subcommand)]
    Rules(rules::Command),
    /// The account registry
    #[command(subcommand)]
    Accounts(accounts::Command),
    /// Tickets and their threads
    #[command(subcommand)]
    Tickets(tickets::Command),
    /// Man pages and shell completions, for packaging
    #[command(subcommand, hide = true)]
    Generate(generate::Command),
}

/// Exit code for a config that cannot be used (clap uses 2 for usage errors too).
pub const EXIT_CONFIG: u8 = 2;
/// Exit code of `run --once` when mail stays queued for a later try.
pub const EXIT_DEFERRED: u8 = 3;

pub fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    crate::logging::init(cli.log_format);
    // Run where the package is built, which has no config.
    if let Command::Generate(command) = &cli.command {
        return generate::run(command);
    }
    let config = match load_config(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    match cli.command {
        Command::Run(args) => match check::ready_to_run(&config) {
            Ok(()) => run::run(&config, args),
            Err(code) => Ok(code),
        },
        Command::Check => check::check(&config),
        Command::Config => config::print(&config),
        Command::Rules(command) => rules::run(&config, command),
        Command::Accounts(command) => accounts::run(&config, command),
        Command::Tickets(command) => tickets::run(&config, command),
        Command::Generate(_) => unreachable!("generate returns before the config is loaded"),
    }
}

fn load_config(given: Option<&Path>) -> Result<Config, ConfigError> {
    Config::load(&Config::locate(given)?)
}

/// Prints `value` as pretty JSON on stdout.
fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
