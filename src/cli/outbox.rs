//! The outbox as an operator sees it, like `mailq` and `postqueue`: what waits, why, and
//! the two things a person may do about it: try again now, or withdraw a mail.

use std::io::Write;
use std::process::ExitCode;

use chrono::Utc;
use maildesk::config::Config;
use maildesk::store::Store;
use maildesk::store::outbox::{Cancelled, OutboxEntry, STATUSES};

use super::{Clock, Column, Table, visible_line, write_raw};

/// What `outbox list` fits in: a terminal of 100 columns.
const LIST_WIDTH: usize = 100;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Queued mail, oldest first, with the last delivery error (times in the desk's zone)
    List {
        /// Only mail in this state (`deferred`: pending, and failed at least once)
        #[arg(long, value_parser = STATUSES)]
        status: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One queued mail: its delivery record and the mail as it is sent
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Make pending mail due now: the next delivery round tries it
    Retry {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<i64>,
        /// Every pending mail
        #[arg(long)]
        all: bool,
    },
    /// Withdraw a pending mail: it is never sent; its ticket records who did it
    Cancel { id: i64 },
}

pub fn run(config: &Config, command: Command) -> anyhow::Result<ExitCode> {
    let database = config.database.get_ref();
    let mut out = super::stdout();
    let code = match command {
        Command::List { status, json } => {
            let entries = Store::open_read_only(database)?.list_outbox(status.as_deref())?;
            if json {
                super::write_json(&mut out, &entries)?;
            } else {
                list_table(&Clock::new(config), &entries).print(&mut out, LIST_WIDTH)?;
            }
            ExitCode::SUCCESS
        }
        Command::Show { id, json } => {
            let Some((entry, raw)) = Store::open_read_only(database)?.outbox_entry(id)? else {
                eprintln!("no outbox mail {id}");
                return Ok(ExitCode::FAILURE);
            };
            if json {
                super::write_json(&mut out, &entry)?;
            } else {
                write_entry(&mut out, &Clock::new(config), &entry)?;
                writeln!(out)?;
                write_raw(&mut out, &raw)?;
            }
            ExitCode::SUCCESS
        }
        Command::Retry { id, all: _ } => retry(&mut Store::open_existing(database)?, id, &mut out)?,
        Command::Cancel { id } => {
            let actor = format!("admin:{}", unix_user());
            match Store::open_existing(database)?.cancel_outbox(id, &actor, Utc::now())? {
                Cancelled::Done => {
                    writeln!(out, "outbox mail {id} cancelled: it will not be sent")?;
                    ExitCode::SUCCESS
                }
                Cancelled::NoSuchMail => {
                    eprintln!("no outbox mail {id}");
                    ExitCode::FAILURE
                }
                Cancelled::NotPending(status) => {
                    eprintln!("outbox mail {id} is {status}; only pending mail can be cancelled");
                    ExitCode::FAILURE
                }
            }
        }
    };
    out.flush()?;
    Ok(code)
}

fn retry(store: &mut Store, id: Option<i64>, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let due = store.retry_outbox(id, Utc::now())?;
    match id {
        None => writeln!(out, "{due} pending mail(s) due now")?,
        Some(id) if due == 1 => writeln!(out, "outbox mail {id} due now")?,
        Some(id) => {
            match store.outbox_entry(id)? {
                None => eprintln!("no outbox mail {id}"),
                Some((entry, _)) => eprintln!(
                    "outbox mail {id} is {}; only pending mail can be retried",
                    entry.status
                ),
            }
            return Ok(ExitCode::FAILURE);
        }
    }
    writeln!(
        out,
        "the running daemon sends it at its next outbox round, or run `maildesk run --once`"
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Who ran the command, for the ticket's audit trail.
fn unix_user() -> String {
    ["USER", "LOGNAME"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

fn list_table(clock: &Clock, entries: &[OutboxEntry]) -> Table {
    let mut table = Table::new(vec![
        Column::right("ID", 8),
        Column::right("TICKET", 8),
        Column::left("STATE", 9),
        Column::right("TRIES", 5),
        Column::left("QUEUED", 11),
        Column::left("NEXT TRY", 11),
        Column::left("TO", 28),
        Column::left("SUBJECT", LIST_WIDTH),
    ]);
    for e in entries {
        let next = if e.status == "pending" {
            clock.short(&e.next_attempt_at)
        } else {
            String::new()
        };
        let note = e.last_error.as_deref().filter(|_| e.status != "sent");
        table.row_with_note(
            vec![
                e.id.to_string().into(),
                e.ticket.map(|t| t.to_string()).unwrap_or_default().into(),
                e.state.as_str().into(),
                e.attempts.to_string().into(),
                clock.short(&e.queued_at).into(),
                next.into(),
                e.recipient.as_str().into(),
                e.subject.as_str().into(),
            ],
            note,
        );
    }
    table
}

fn write_entry(out: &mut impl Write, clock: &Clock, e: &OutboxEntry) -> std::io::Result<()> {
    writeln!(out, "Outbox mail {}: {}", e.id, visible_line(&e.subject))?;
    writeln!(out, "  state {}, {} attempt(s)", e.state, e.attempts)?;
    let ticket = e
        .ticket
        .map_or_else(|| "none".to_string(), |t| t.to_string());
    let message_id = e.message_id.as_deref().unwrap_or("none");
    writeln!(
        out,
        "  ticket {ticket}, message {} <{}>",
        e.message,
        visible_line(message_id)
    )?;
    writeln!(
        out,
        "  from {} to {}",
        visible_line(&e.envelope_from),
        visible_line(&e.recipient)
    )?;
    writeln!(out, "  queued {}", clock.long(&e.queued_at))?;
    if e.status == "pending" {
        writeln!(out, "  next attempt {}", clock.long(&e.next_attempt_at))?;
    }
    if let Some(at) = &e.sent_at {
        writeln!(out, "  sent {}", clock.long(at))?;
    }
    if let Some(error) = &e.last_error {
        writeln!(out, "  last error: {}", visible_line(error))?;
    }
    if let Some(at) = &e.bounced_at {
        let reason = e.bounce_reason.as_deref().unwrap_or("");
        writeln!(
            out,
            "  bounced {}: {}",
            clock.long(at),
            visible_line(reason)
        )?;
    }
    Ok(())
}
