use std::path::Path;
use std::process::ExitCode;

use maildesk::config::Config;
use maildesk::daemon::reload::Health;

/// The config was already validated on load; this checks rules and templates too, and
/// shows whether a running daemon refused the files on disk.
pub fn check(config: &Config) -> anyhow::Result<ExitCode> {
    println!(
        "{}: ok ({} mailbox(es))",
        config.file.display(),
        config.mailboxes.len()
    );
    let files = config.policy_files();
    let (policy, problems) = files.load();
    for problem in &problems {
        eprintln!("{problem}");
    }
    if let Some(policy) = &policy {
        let warnings = problems.len();
        println!(
            "{}: ok ({} rule(s){})",
            files.rules_dir.display(),
            policy.rules.rules.len(),
            match warnings {
                0 => String::new(),
                n => format!(", {n} warning(s)"),
            }
        );
        println!("{}: ok", files.templates_dir.display());
    }
    // A report left by a daemon that no longer runs says nothing about the present.
    if let Some(health) = Health::read(&config.health_file())
        && Path::new("/proc").join(health.pid.to_string()).exists()
        && let Some(rejected) = &health.rejected
    {
        eprintln!(
            "the daemon (pid {}) refused to reload at {} and still serves the rules and templates loaded at {}:",
            health.pid, rejected.at, health.policy_loaded_at
        );
        for problem in &rejected.problems {
            eprintln!("  {problem}");
        }
    }
    Ok(if policy.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
