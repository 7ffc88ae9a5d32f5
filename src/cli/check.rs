use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use maildesk::config::Config;
use maildesk::daemon::reload::{Health, Rejected};
use maildesk::identity::import::{ImportFileError, check_file};

use super::EXIT_CONFIG;

/// The config's structure was validated on load; this checks everything else `run` needs
/// (the same [`Config::check_runtime`] that `run` refuses on), the rules and templates,
/// the accounts file, and shows whether a running daemon refused the files on disk.
/// Exit 2 for what stops `run`, 1 for broken rules, templates or accounts.
pub fn check(config: &Config) -> anyhow::Result<ExitCode> {
    let mut out = super::stdout();
    let runtime = config.check_runtime();
    for problem in &runtime {
        eprintln!("{problem}");
    }
    if runtime.is_empty() {
        writeln!(
            out,
            "{}: ok ({} mailbox(es))",
            config.file.display(),
            config.mailboxes.len()
        )?;
    }
    let files = config.policy_files();
    let (policy, problems) = files.load();
    for problem in &problems {
        eprintln!("{problem}");
    }
    if let Some(policy) = &policy {
        let warnings = problems.len();
        writeln!(
            out,
            "{}: ok ({} rule(s){})",
            files.rules_dir.display(),
            policy.rules.rules.len(),
            match warnings {
                0 => String::new(),
                n => format!(", {n} warning(s)"),
            }
        )?;
        writeln!(out, "{}: ok", files.templates_dir.display())?;
    }
    let accounts_ok = check_accounts(config, &mut out)?;
    out.flush()?;
    // A report left by a daemon that no longer runs says nothing about the present.
    if let Some(health) = Health::read(&config.health_file())
        && Path::new("/proc").join(health.pid.to_string()).exists()
    {
        if let Some(rejected) = &health.rejected {
            let what = format!(
                "to reload at {} and still serves the rules and templates loaded at {}",
                rejected.at, health.policy_loaded_at
            );
            show_refusal(health.pid, &what, rejected);
        }
        if let Some(rejected) = &health.accounts_rejected {
            let what = format!(
                "the accounts_file at {}; the registry stays as it was",
                rejected.at
            );
            show_refusal(health.pid, &what, rejected);
        }
    }
    Ok(if !runtime.is_empty() {
        ExitCode::from(EXIT_CONFIG)
    } else if policy.is_some() && accounts_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// For `run`: refuses to start on what `check` would refuse, with the same problems.
pub fn ready_to_run(config: &Config) -> Result<(), ExitCode> {
    let problems = config.check_runtime();
    for problem in &problems {
        eprintln!("{problem}");
    }
    match problems.is_empty() {
        true => Ok(()),
        false => Err(ExitCode::from(EXIT_CONFIG)),
    }
}

/// Whether the accounts file (if any) would be imported, compared with the registry
/// as it is; every problem is shown.
fn check_accounts(config: &Config, out: &mut impl Write) -> std::io::Result<bool> {
    let Some(file) = &config.accounts_file else {
        return Ok(true);
    };
    let file = file.get_ref();
    match check_file(config.database.get_ref(), file) {
        Ok(count) => {
            writeln!(out, "{}: ok ({count} account(s))", file.display())?;
            Ok(true)
        }
        Err(ImportFileError::Invalid(problems)) => {
            for problem in &problems.0 {
                eprintln!("{problem}");
            }
            Ok(false)
        }
        Err(error) => {
            eprintln!("{}: error: {error}", file.display());
            Ok(false)
        }
    }
}

fn show_refusal(pid: u32, what: &str, rejected: &Rejected) {
    eprintln!("the daemon (pid {pid}) refused {what}:");
    for problem in &rejected.problems {
        eprintln!("  {problem}");
    }
}
