//! Reading tickets: for threading (which ticket does a message belong to) and for staff
//! (lists and whole threads).

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params, params_from_iter};
use serde::Serialize;

use super::{Store, StoreError, exec};
use crate::mail::ParsedMail;

/// The statuses a ticket can have (the schema's CHECK), for validating filters.
pub const STATUSES: [&str; 5] = ["new", "open", "waiting", "resolved", "closed"];

/// Adds an incoming message to the search index, in the transaction that stores it.
pub(crate) fn index_for_search(
    tx: &Transaction<'_>,
    message: i64,
    mail: &ParsedMail,
) -> Result<(), StoreError> {
    exec(
        tx,
        "INSERT INTO message_search (rowid, subject, sender, text) VALUES (?1, ?2, ?3, ?4)",
        params![message, mail.subject, mail.from, mail.text],
    )?;
    Ok(())
}

/// Indexes every incoming message stored before the search index existed.
pub(super) fn index_stored_messages(tx: &Transaction<'_>) -> Result<(), StoreError> {
    let mut stmt = tx.prepare("SELECT id, raw FROM messages WHERE direction = 'in'")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let raw: Vec<u8> = row.get(1)?;
        index_for_search(tx, row.get(0)?, &ParsedMail::read(&raw, &[]))?;
    }
    Ok(())
}

/// Turns text typed by an operator into an FTS5 query matching messages that hold all of
/// its words, or `None` when it has no word. Words are split where the index's tokenizer
/// splits them (anything not a letter or digit), since the index keeps no positions to
/// match a phrase; each is quoted, so no character of it is query syntax.
pub fn search_query(text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| format!("\"{w}\""))
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// Which tickets `list_tickets` returns; every set field must hold.
#[derive(Debug, Default, Clone)]
pub struct TicketFilter {
    pub status: Option<String>,
    /// The account's reference.
    pub account: Option<String>,
    /// The configured mailbox name one of its messages arrived in.
    pub mailbox: Option<String>,
    pub flagged: bool,
    /// Words that one of its messages' subject, sender or text holds.
    pub search: Option<String>,
}

/// What threading needs to know of an existing ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketRef {
    pub number: i64,
    pub account_id: Option<i64>,
    pub requester: String,
    pub status: String,
    pub category: Option<String>,
}

pub fn ticket_ref(conn: &Connection, number: i64) -> Result<Option<TicketRef>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT number, account_id, requester, status, category FROM tickets WHERE number = ?1",
        )?
        .query_row([number], |r| {
            Ok(TicketRef {
                number: r.get(0)?,
                account_id: r.get(1)?,
                requester: r.get(2)?,
                status: r.get(3)?,
                category: r.get(4)?,
            })
        })
        .optional()?)
}

/// The ticket of the first of `message_ids` (nearest ancestor first) that we know.
pub fn ticket_of_messages(
    conn: &Connection,
    message_ids: &[&str],
) -> Result<Option<i64>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT ticket FROM messages WHERE message_id = ?1 AND ticket IS NOT NULL ORDER BY id LIMIT 1",
    )?;
    for id in message_ids {
        if let Some(ticket) = stmt.query_row([id], |r| r.get(0)).optional()? {
            return Ok(Some(ticket));
        }
    }
    Ok(None)
}

#[derive(Debug, Clone, Serialize)]
pub struct Ticket {
    pub number: i64,
    pub account: Option<String>,
    pub requester: String,
    pub mailbox_role: String,
    pub subject: String,
    pub status: String,
    pub priority: String,
    pub needs_staff: bool,
    pub flag_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub category: Option<String>,
    pub queue: Option<String>,
    /// Set when the ticket is an abuse case.
    pub case_category: Option<String>,
    pub case_severity: Option<String>,
}

const TICKET_SELECT: &str =
    "SELECT t.number, a.reference, t.requester, t.mailbox_role, t.subject, t.status, t.priority,
        t.needs_staff, t.flag_reason, t.created_at, t.updated_at, t.category, t.queue,
        t.case_category, t.case_severity
   FROM tickets t LEFT JOIN accounts a ON a.id = t.account_id";

fn ticket_from_row(r: &Row<'_>) -> rusqlite::Result<Ticket> {
    Ok(Ticket {
        number: r.get(0)?,
        account: r.get(1)?,
        requester: r.get(2)?,
        mailbox_role: r.get(3)?,
        subject: r.get(4)?,
        status: r.get(5)?,
        priority: r.get(6)?,
        needs_staff: r.get(7)?,
        flag_reason: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
        category: r.get(11)?,
        queue: r.get(12)?,
        case_category: r.get(13)?,
        case_severity: r.get(14)?,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct ThreadMessage {
    pub id: i64,
    pub direction: String,
    pub mailbox: String,
    pub message_id: Option<String>,
    pub from: Option<String>,
    pub subject: String,
    pub received_at: String,
    pub size: i64,
    pub sha256: String,
    pub automated: Option<String>,
    pub malformed: Option<String>,
    /// Text body decoded from the stored raw bytes.
    pub text: String,
    /// Outgoing mail only: delivery state in the outbox.
    pub delivery: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub at: String,
    pub kind: String,
    pub actor: String,
    pub message: Option<i64>,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Thread {
    pub ticket: Ticket,
    pub messages: Vec<ThreadMessage>,
    pub events: Vec<Event>,
}

impl Store {
    /// The tickets that pass `filter`, oldest first.
    pub fn list_tickets(&self, filter: &TicketFilter) -> Result<Vec<Ticket>, StoreError> {
        let mut conditions = vec!["1 = 1"];
        let mut args = Vec::new();
        if let Some(status) = &filter.status {
            args.push(status.clone());
            conditions.push("t.status = ?");
        }
        if let Some(account) = &filter.account {
            args.push(account.clone());
            conditions.push("a.reference = ?");
        }
        if let Some(mailbox) = &filter.mailbox {
            args.push(mailbox.clone());
            conditions.push(
                "EXISTS (SELECT 1 FROM messages m WHERE m.ticket = t.number AND m.mailbox = ?)",
            );
        }
        if filter.flagged {
            conditions.push("t.needs_staff = 1");
        }
        if let Some(search) = &filter.search {
            let Some(query) = search_query(search) else {
                return Ok(Vec::new());
            };
            args.push(query);
            conditions.push(
                "t.number IN (SELECT m.ticket FROM message_search s JOIN messages m ON m.id = s.rowid
                               WHERE message_search MATCH ?)",
            );
        }
        let sql = format!(
            "{TICKET_SELECT} WHERE {} ORDER BY t.number",
            conditions.join(" AND ")
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(args), ticket_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn account_exists(&self, reference: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM accounts WHERE reference = ?1",
                [reference],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// The bytes of message `id` as received (or sent), if it belongs to ticket `number`.
    pub fn ticket_message_raw(&self, number: i64, id: i64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT raw FROM messages WHERE id = ?1 AND ticket = ?2",
                [id, number],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The ticket with every message (oldest first) and every event.
    pub fn ticket_thread(&self, number: i64) -> Result<Option<Thread>, StoreError> {
        let sql = format!("{TICKET_SELECT} WHERE t.number = ?1");
        let Some(ticket) = self
            .conn
            .query_row(&sql, [number], ticket_from_row)
            .optional()?
        else {
            return Ok(None);
        };
        let mut stmt = self.conn.prepare(
            "SELECT m.id, m.direction, m.mailbox, m.message_id, m.from_addr, m.subject, m.received_at, m.size,
                    m.sha256, m.automated, m.malformed, m.raw, o.status
               FROM messages m LEFT JOIN outbox o ON o.message = m.id
              WHERE m.ticket = ?1 ORDER BY m.id",
        )?;
        let messages = stmt
            .query_map([number], |r| {
                let raw: Vec<u8> = r.get(11)?;
                Ok(ThreadMessage {
                    id: r.get(0)?,
                    direction: r.get(1)?,
                    mailbox: r.get(2)?,
                    message_id: r.get(3)?,
                    from: r.get(4)?,
                    subject: r.get(5)?,
                    received_at: r.get(6)?,
                    size: r.get(7)?,
                    sha256: r.get(8)?,
                    automated: r.get(9)?,
                    malformed: r.get(10)?,
                    text: ParsedMail::read(&raw, &[]).text,
                    delivery: r.get(12)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut stmt = self.conn.prepare(
            "SELECT at, kind, actor, message, detail FROM events WHERE ticket = ?1 ORDER BY id",
        )?;
        let events = stmt
            .query_map([number], |r| {
                Ok(Event {
                    at: r.get(0)?,
                    kind: r.get(1)?,
                    actor: r.get(2)?,
                    message: r.get(3)?,
                    detail: r.get(4)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(Some(Thread {
            ticket,
            messages,
            events,
        }))
    }
}

/// The first of `ids` that is a mail we sent, with its ticket: what an automated message
/// (a bounce, an out-of-office) that mentions it is about.
pub fn our_mail(conn: &Connection, ids: &[String]) -> Result<Option<(String, i64)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT ticket FROM messages WHERE direction = 'out' AND message_id = ?1 AND ticket IS NOT NULL",
    )?;
    for id in ids {
        if let Some(ticket) = stmt.query_row([id], |r| r.get(0)).optional()? {
            return Ok(Some((id.clone(), ticket)));
        }
    }
    Ok(None)
}
