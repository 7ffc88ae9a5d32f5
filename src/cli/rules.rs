use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use maildesk::config::{Config, Role};
use maildesk::desk::{Effect, Recipient};
use maildesk::identity::import::import_file;
use maildesk::pipeline::{Explained, Pipeline};
use maildesk::policy::SharedPolicy;
use maildesk::source::SourceMessage;
use maildesk::store::Store;

#[derive(clap::Subcommand)]
pub enum Command {
    /// What would happen to a message: the rules that match and why, the decisions, and
    /// every mail that would be sent, fully written. Changes nothing, sends nothing.
    Test {
        /// The message, as a file (.eml)
        message: PathBuf,
        /// A configured mailbox name, or a role (support, abuse)
        #[arg(long, default_value = "support")]
        mailbox: String,
        /// Pretend the message arrives at this time (RFC 3339), e.g. to try business hours
        #[arg(long)]
        at: Option<DateTime<Utc>>,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(config: &Config, command: Command) -> anyhow::Result<ExitCode> {
    let Command::Test {
        message,
        mailbox,
        at,
        json,
    } = command;
    let (policy, problems) = config.policy_files().load();
    for problem in &problems {
        eprintln!("{problem}");
    }
    let Some(policy) = policy else {
        bail!("the rules or templates have errors (listed above); fix them first");
    };
    let (name, role) = resolve_mailbox(config, &mailbox)?;
    let raw =
        std::fs::read(&message).with_context(|| format!("cannot read {}", message.display()))?;
    let database = config.database.get_ref();
    // The real database when there is one (registry, tickets to thread into); it is only
    // read, inside a transaction that is rolled back.
    let store = if database.exists() {
        Store::open(database)?
    } else {
        // No database yet: the registry the daemon would start with.
        let mut store = Store::in_memory()?;
        store.sync_staff(&config.staff)?;
        if let Some(file) = &config.accounts_file {
            import_file(&mut store, file.get_ref())?;
        }
        store
    };
    let mut pipeline = Pipeline::new(config, store, SharedPolicy::new(policy))?;
    let source = SourceMessage {
        mailbox: name.clone(),
        role,
        key: message.display().to_string(),
        raw,
        oversize: None,
        history: false,
    };
    let now = at.unwrap_or_else(Utc::now);
    let Some(explained) = pipeline.explain(source, now)? else {
        if json {
            super::print_json(&serde_json::json!({ "already_stored": true, "mailbox": name }))?;
        } else {
            let mut out = super::stdout();
            writeln!(
                out,
                "{}: already stored from mailbox {name}; it would be skipped",
                message.display()
            )?;
            out.flush()?;
        }
        return Ok(ExitCode::SUCCESS);
    };
    if json {
        super::print_json(&explained)?;
    } else {
        let base = config.file.parent().unwrap_or(Path::new(""));
        // The rendered mails carry text from the message: shown, never obeyed.
        let text = render(&message, &name, role, now, &explained, base);
        let mut out = super::stdout();
        out.write_all(super::visible_text(&text).as_bytes())?;
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

fn resolve_mailbox(config: &Config, wanted: &str) -> anyhow::Result<(String, Role)> {
    if let Some(m) = config.mailboxes.iter().find(|m| m.name.get_ref() == wanted) {
        return Ok((m.name.get_ref().clone(), m.role));
    }
    let role = match wanted {
        "support" => Role::Support,
        "abuse" => Role::Abuse,
        _ => bail!(
            "no mailbox named {wanted:?} in {}; give a mailbox name or a role (support, abuse)",
            config.file.display()
        ),
    };
    let name = config
        .mailboxes
        .iter()
        .find(|m| m.role == role)
        .map_or_else(|| wanted.to_string(), |m| m.name.get_ref().clone());
    Ok((name, role))
}

fn render(
    message: &Path,
    mailbox: &str,
    role: Role,
    now: DateTime<Utc>,
    e: &Explained,
    base: &Path,
) -> String {
    let relative = |p: &Path| p.strip_prefix(base).unwrap_or(p).display().to_string();
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!("message   {}", message.display()));
    line(format!("mailbox   {mailbox} (role {})", role.as_str()));
    line(format!("sender    {}", e.sender));
    line(format!(
        "language  {}",
        e.language.as_deref().unwrap_or("not detected")
    ));
    line(format!(
        "time      {} ({} business hours)",
        now.format("%Y-%m-%d %H:%M UTC"),
        if e.business_hours {
            "inside"
        } else {
            "outside"
        }
    ));
    line(format!(
        "thread    {}",
        match e.ticket {
            Some(n) => format!("continues ticket {n}"),
            None => "new ticket".into(),
        }
    ));
    line(String::new());
    let matched = &e.decision.evaluation.matched;
    if matched.is_empty() {
        line("rules matched: none".into());
    } else {
        line(format!("rules matched ({}):", matched.len()));
        for m in matched {
            let stop = if m.stop { "  [stop]" } else { "" };
            line(format!(
                "  {}:{} {}{stop}",
                relative(&m.file),
                m.line,
                m.name
            ));
            for r in &m.reasons {
                line(format!("      {}  matched {:?}", r.condition, r.matched));
            }
        }
    }
    line(String::new());
    line("decisions:".into());
    for effect in &e.decision.effects {
        if let Some(text) = describe(effect) {
            line(format!("  {text}"));
        }
    }
    line(String::new());
    if e.mails.is_empty() {
        line("mails: none".into());
    }
    for (i, mail) in e.mails.iter().enumerate() {
        line(format!(
            "mail {} of {}: to {} ({} bytes)",
            i + 1,
            e.mails.len(),
            mail.to,
            mail.raw.len()
        ));
        line("-".repeat(72));
        // The header as sent, then the text as the recipient reads it (the raw body is
        // quoted-printable).
        let raw = String::from_utf8_lossy(&mail.raw).replace("\r\n", "\n");
        line(raw.split("\n\n").next().unwrap_or_default().to_string());
        line(String::new());
        line(mail.body.trim_end().to_string());
        line("-".repeat(72));
    }
    out
}

/// One line per decision; rule matches are listed above them already.
fn describe(effect: &Effect) -> Option<String> {
    Some(match effect {
        Effect::OpenTicket { subject } => format!("open a new ticket {subject:?}"),
        Effect::JoinTicket { number } => format!("add to ticket {number}"),
        Effect::Reopen => "reopen the ticket".into(),
        Effect::RuleMatched { .. } => return None,
        Effect::Classify { .. } => format!("set {}", effect.classification()),
        Effect::FlagForStaff { reason } => format!("flag for staff: {reason}"),
        Effect::OpenAbuseCase { category, severity } => format!(
            "open an abuse case: category {category}, severity {}",
            severity.as_str()
        ),
        Effect::AwaitConfirmation { action } => {
            format!("wait for confirmation from the registered address: {action}")
        }
        Effect::LinkIncident { name } => format!("link to incident {name}"),
        Effect::Quarantine { rule } => format!("quarantine (rule {rule}): keep, never answer"),
        Effect::Send { template, to } => format!(
            "send {template} to {}",
            match to {
                Recipient::RegisteredAddress { account_id } =>
                    format!("the registered address of account #{account_id}"),
                Recipient::Sender { address } => format!("the sender, {address}"),
                Recipient::Staff => "every staff member".into(),
            }
        ),
        Effect::Bounced {
            message_id,
            permanent,
            reason,
        } => format!(
            "{} of our mail <{message_id}>: {reason}",
            if *permanent { "bounce" } else { "delay notice" }
        ),
        Effect::SuppressReply { reason } => format!("no automatic answer: {reason}"),
    })
}
