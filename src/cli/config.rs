use std::io::Write;
use std::process::ExitCode;

use maildesk::config::Config;

/// Prints the configuration in force, every default filled in (see
/// [`Config::effective_toml`]); needs no secret and touches no database.
pub fn print(config: &Config) -> anyhow::Result<ExitCode> {
    let file = std::path::absolute(&config.file)?;
    let mut out = super::stdout();
    writeln!(
        out,
        "# maildesk config: {}, with every default filled in",
        file.display()
    )?;
    write!(out, "{}", config.effective_toml()?)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
