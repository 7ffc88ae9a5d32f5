use std::process::ExitCode;

use maildesk::compose::Templates;
use maildesk::config::Config;

/// The config was already validated on load; this checks the templates too.
pub fn check(config: &Config) -> anyhow::Result<ExitCode> {
    println!(
        "{}: ok ({} mailbox(es))",
        config.file.display(),
        config.mailboxes.len()
    );
    match Templates::load(config.templates_dir.get_ref()) {
        Ok(_) => {
            println!("{}: ok", config.templates_dir.get_ref().display());
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}
