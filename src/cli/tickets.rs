use std::borrow::Cow;
use std::io::Write;
use std::process::ExitCode;

use anyhow::bail;
use maildesk::config::Config;
use maildesk::store::Store;
use maildesk::store::tickets::{STATUSES, Thread, Ticket, TicketFilter, search_query};

use super::{Clock, Column, Table, visible_line, visible_text, write_raw};

/// What `tickets list` fits in: a terminal of 100 columns.
const LIST_WIDTH: usize = 100;

#[derive(clap::Subcommand)]
pub enum Command {
    /// List tickets, oldest first (times in the desk's zone)
    List {
        /// Only tickets in this status
        #[arg(long, value_parser = STATUSES)]
        status: Option<String>,
        /// Only tickets of the account with this reference
        #[arg(long)]
        account: Option<String>,
        /// Only tickets with mail from this configured mailbox
        #[arg(long)]
        mailbox: Option<String>,
        /// Only tickets flagged for staff
        #[arg(long)]
        flagged: bool,
        /// Only tickets with a message holding all these words (subject, sender or text)
        #[arg(long, value_name = "TEXT")]
        search: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// A ticket's whole thread: every message, whole, and every event
    Show {
        number: i64,
        /// Print the bytes of message ID (as listed in the thread) as stored, nothing else
        #[arg(long, value_name = "ID")]
        raw: Option<i64>,
        #[arg(long, conflicts_with = "raw")]
        json: bool,
    },
}

pub fn run(config: &Config, command: Command) -> anyhow::Result<ExitCode> {
    let store = Store::open_read_only(config.database.get_ref())?;
    let mut out = super::stdout();
    match command {
        Command::List {
            status,
            account,
            mailbox,
            flagged,
            search,
            json,
        } => {
            let filter = TicketFilter {
                status,
                account,
                mailbox,
                flagged,
                search,
            };
            check_filter(config, &store, &filter)?;
            let tickets = store.list_tickets(&filter)?;
            if json {
                super::write_json(&mut out, &tickets)?;
            } else {
                list_table(&Clock::new(config), &tickets).print(&mut out, LIST_WIDTH)?;
            }
        }
        Command::Show { number, raw, json } => {
            if let Some(id) = raw {
                let Some(bytes) = store.ticket_message_raw(number, id)? else {
                    eprintln!("ticket {number} has no message {id}");
                    return Ok(ExitCode::FAILURE);
                };
                write_raw(&mut out, &bytes)?;
                out.flush()?;
                return Ok(ExitCode::SUCCESS);
            }
            let Some(thread) = store.ticket_thread(number)? else {
                eprintln!("no ticket {number}");
                return Ok(ExitCode::FAILURE);
            };
            if json {
                super::write_json(&mut out, &thread)?;
            } else {
                write_thread(&mut out, &Clock::new(config), &thread)?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// A filter naming something that does not exist is a typo, not an empty result.
fn check_filter(config: &Config, store: &Store, filter: &TicketFilter) -> anyhow::Result<()> {
    if let Some(mailbox) = &filter.mailbox {
        let names: Vec<&str> = config
            .mailboxes
            .iter()
            .map(|m| m.name.get_ref().as_str())
            .collect();
        if !names.contains(&mailbox.as_str()) {
            bail!(
                "unknown mailbox {:?}; the configured mailboxes are: {}",
                visible_line(mailbox),
                names.join(", ")
            );
        }
    }
    if let Some(account) = &filter.account
        && !store.account_exists(account)?
    {
        bail!(
            "no account with reference {:?} (`maildesk accounts list` shows them)",
            visible_line(account)
        );
    }
    if filter
        .search
        .as_deref()
        .is_some_and(|s| search_query(s).is_none())
    {
        bail!("--search needs at least one word");
    }
    Ok(())
}

fn list_table(clock: &Clock, tickets: &[Ticket]) -> Table {
    let mut table = Table::new(vec![
        Column::right("#", 8),
        Column::left("CREATED", 11),
        Column::left("UPDATED", 11),
        Column::left("STATUS", 8),
        Column::left("PRIO", 6),
        Column::left("!", 1),
        Column::left("CATEGORY", 12),
        Column::left("CASE", 12),
        Column::left("SUBJECT", LIST_WIDTH),
    ]);
    for t in tickets {
        table.row(vec![
            t.number.to_string().into(),
            clock.short(&t.created_at).into(),
            clock.short(&t.updated_at).into(),
            t.status.as_str().into(),
            t.priority.as_str().into(),
            if t.needs_staff { "!" } else { "" }.into(),
            joined(t.category.as_deref(), t.queue.as_deref()),
            joined(t.case_category.as_deref(), t.case_severity.as_deref()),
            t.subject.as_str().into(),
        ]);
    }
    table
}

/// `a/b`, `a`, `/b` or nothing: two optional fields in one column.
fn joined<'a>(a: Option<&'a str>, b: Option<&'a str>) -> Cow<'a, str> {
    match (a, b) {
        (Some(a), Some(b)) => format!("{a}/{b}").into(),
        (Some(a), None) => a.into(),
        (None, Some(b)) => format!("/{b}").into(),
        (None, None) => "".into(),
    }
}

fn write_thread(out: &mut impl Write, clock: &Clock, thread: &Thread) -> std::io::Result<()> {
    let t = &thread.ticket;
    let none = || "-".to_string();
    writeln!(out, "Ticket {}: {}", t.number, visible_line(&t.subject))?;
    writeln!(
        out,
        "  status {}, priority {}, category {}, queue {}",
        t.status,
        t.priority,
        t.category
            .as_deref()
            .map_or_else(none, |c| visible_line(c).into()),
        t.queue
            .as_deref()
            .map_or_else(none, |q| visible_line(q).into()),
    )?;
    let account = t.account.as_deref().map_or_else(
        || "none (unregistered sender)".to_string(),
        |a| visible_line(a).into(),
    );
    writeln!(
        out,
        "  from {}, account {account}, {} desk",
        visible_line(&t.requester),
        t.mailbox_role
    )?;
    writeln!(
        out,
        "  created {}, updated {}",
        clock.long(&t.created_at),
        clock.long(&t.updated_at)
    )?;
    if let Some(case) = &t.case_category {
        let severity = t.case_severity.as_deref().unwrap_or("-");
        writeln!(
            out,
            "  abuse case {}, severity {severity}",
            visible_line(case)
        )?;
    }
    if let Some(reason) = &t.flag_reason {
        writeln!(out, "  NEEDS STAFF: {}", visible_line(reason))?;
    }
    for m in &thread.messages {
        let arrow = if m.direction == "in" { "<<" } else { ">>" };
        writeln!(
            out,
            "\n{arrow} message {} {} from {} ({} bytes, {})",
            m.id,
            clock.long(&m.received_at),
            visible_line(m.from.as_deref().unwrap_or("?")),
            m.size,
            visible_line(&m.mailbox)
        )?;
        writeln!(out, "   Subject: {}", visible_line(&m.subject))?;
        for note in [&m.automated, &m.malformed, &m.delivery]
            .into_iter()
            .flatten()
        {
            writeln!(out, "   [{}]", visible_line(note))?;
        }
        for line in m.text.lines() {
            writeln!(out, "   | {}", visible_text(line))?;
        }
    }
    writeln!(out, "\nEvents:")?;
    for e in &thread.events {
        writeln!(
            out,
            "{}",
            format!(
                "  {} {:<18} {:<32} {}",
                clock.long(&e.at),
                e.kind,
                visible_line(&e.actor),
                visible_line(&e.detail)
            )
            .trim_end()
        )?;
    }
    Ok(())
}
