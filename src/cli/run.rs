use std::process::ExitCode;

use anyhow::Context;
use maildesk::config::Config;

#[derive(clap::Args)]
pub struct Args {
    /// Process what is waiting once, deliver the outbox, and exit
    #[arg(long)]
    once: bool,
}

pub fn run(config: &Config, args: Args) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let totals = runtime.block_on(maildesk::daemon::run(config, args.once))?;
    if args.once {
        println!(
            "stored {} message(s), {} already stored, {} failed; sent {} mail(s), {} deferred, {} undeliverable",
            totals.stored,
            totals.already_stored,
            totals.failed,
            totals.sent,
            totals.deferred,
            totals.undeliverable
        );
    }
    Ok(if totals.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
