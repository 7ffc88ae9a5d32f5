use std::process::ExitCode;

use maildesk::config::Config;
use maildesk::store::Store;
use maildesk::store::tickets::Ticket;

#[derive(clap::Subcommand)]
pub enum Command {
    /// List tickets, oldest first
    List {
        /// Only tickets in this status (new, open, waiting, resolved, closed)
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// A ticket's whole thread: every message and every event
    Show {
        number: i64,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(config: &Config, command: Command) -> anyhow::Result<ExitCode> {
    let store = Store::open(config.database.get_ref())?;
    match command {
        Command::List { status, json } => {
            let tickets = store.list_tickets(status.as_deref())?;
            if json {
                super::print_json(&tickets)?;
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<(String, &Ticket)> = tickets
                .iter()
                .map(|t| match &t.account {
                    Some(reference) => (format!("{} ({reference})", t.requester), t),
                    None => (format!("{} (unregistered)", t.requester), t),
                })
                .collect();
            let width = rows
                .iter()
                .map(|(who, _)| who.chars().count())
                .max()
                .unwrap_or(0)
                .max(4);
            println!(
                "{:>6}  {:<8} {:<8} {:<5} {:<width$}  SUBJECT",
                "NUMBER", "STATUS", "PRIORITY", "STAFF", "FROM"
            );
            for (who, t) in rows {
                let staff = if t.needs_staff { "yes" } else { "" };
                println!(
                    "{:>6}  {:<8} {:<8} {:<5} {:<width$}  {}",
                    t.number, t.status, t.priority, staff, who, t.subject
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Show { number, json } => {
            let Some(thread) = store.ticket_thread(number)? else {
                eprintln!("no ticket {number}");
                return Ok(ExitCode::FAILURE);
            };
            if json {
                super::print_json(&thread)?;
                return Ok(ExitCode::SUCCESS);
            }
            let t = &thread.ticket;
            println!("Ticket {}: {}", t.number, t.subject);
            println!(
                "  status {}, priority {}, from {}, account {}",
                t.status,
                t.priority,
                t.requester,
                t.account.as_deref().unwrap_or("none (unregistered sender)")
            );
            if let Some(reason) = &t.flag_reason {
                println!("  NEEDS STAFF: {reason}");
            }
            for m in &thread.messages {
                let arrow = if m.direction == "in" { "<<" } else { ">>" };
                println!(
                    "\n{arrow} message {} {} from {} ({} bytes, {})",
                    m.id,
                    m.received_at,
                    m.from.as_deref().unwrap_or("?"),
                    m.size,
                    m.mailbox
                );
                println!("   Subject: {}", m.subject);
                for note in [&m.automated, &m.malformed, &m.delivery]
                    .into_iter()
                    .flatten()
                {
                    println!("   [{note}]");
                }
                for line in m.text.lines().take(20) {
                    println!("   | {line}");
                }
            }
            println!("\nEvents:");
            for e in &thread.events {
                println!("  {} {:<18} {:<32} {}", e.at, e.kind, e.actor, e.detail);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
