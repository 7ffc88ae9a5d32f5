use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

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
    let result = runtime.block_on(maildesk::daemon::run(config, args.once));
    // A store call abandoned at a stop may still sit on the blocking pool: the process
    // does not wait for it (its transaction, uncommitted, is rolled back).
    runtime.shutdown_timeout(Duration::from_millis(500));
    let totals = result?;
    if args.once {
        let mut out = super::stdout();
        writeln!(
            out,
            "stored {} message(s), {} already stored, {} failed; sent {} mail(s), {} deferred, {} undeliverable",
            totals.stored,
            totals.already_stored,
            totals.failed,
            totals.sent,
            totals.deferred,
            totals.undeliverable
        )?;
        out.flush()?;
    }
    Ok(if totals.failed > 0 {
        ExitCode::FAILURE
    } else if args.once && totals.deferred > 0 {
        ExitCode::from(super::EXIT_DEFERRED)
    } else {
        ExitCode::SUCCESS
    })
}
