//! Delivery bookkeeping of the outbox: what is due, what was sent, what must be retried.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use super::{Store, StoreError, timestamp};

#[derive(Debug, Clone)]
pub struct PendingMail {
    pub id: i64,
    pub ticket: Option<i64>,
    /// When it was queued: a mail undelivered for too long is given up.
    pub queued_at: DateTime<Utc>,
    pub message_id: Option<String>,
    pub envelope_from: String,
    pub recipient: String,
    pub attempts: u32,
    pub raw: Vec<u8>,
}

impl Store {
    /// Up to `limit` mails due for a (first or further) delivery attempt, oldest first.
    pub fn due_mail(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<PendingMail>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT o.id, o.ticket, o.envelope_from, o.recipient, o.attempts, m.raw, o.queued_at, m.message_id
               FROM outbox o JOIN messages m ON m.id = o.message
              WHERE o.status = 'pending' AND o.next_attempt_at <= ?1
              ORDER BY o.id LIMIT ?2",
        )?;
        let rows = stmt.query_map(rusqlite::params![timestamp(now), limit as i64], |r| {
            Ok(PendingMail {
                id: r.get(0)?,
                ticket: r.get(1)?,
                envelope_from: r.get(2)?,
                recipient: r.get(3)?,
                attempts: r.get(4)?,
                raw: r.get(5)?,
                message_id: r.get(7)?,
                queued_at: r.get::<_, String>(6)?.parse().map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        6,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn mark_sent(&mut self, mail: &PendingMail, now: DateTime<Utc>) -> Result<(), StoreError> {
        let at = timestamp(now);
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE outbox SET status = 'sent', sent_at = ?1, attempts = attempts + 1, last_error = NULL WHERE id = ?2",
            params![at, mail.id],
        )?;
        tx.execute(
            "INSERT INTO events (at, ticket, message, kind, actor, detail)
             SELECT ?1, ?2, message, 'mail.sent', 'system', ?3 FROM outbox WHERE id = ?4",
            params![at, mail.ticket, format!("to {}", mail.recipient), mail.id],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Records a failed attempt; the mail is tried again at `retry_at`.
    pub fn mark_retry(
        &mut self,
        mail: &PendingMail,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?1, next_attempt_at = ?2 WHERE id = ?3",
            params![error, timestamp(retry_at), mail.id],
        )?;
        Ok(())
    }
}

impl Store {
    /// Gives a mail up: it failed for good, or stayed undelivered too long. The ticket
    /// records it and is flagged, so a person finds another way to reach the customer.
    pub fn mark_failed(
        &mut self,
        mail: &PendingMail,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let at = timestamp(now);
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ?1 WHERE id = ?2",
            params![error, mail.id],
        )?;
        let detail = format!("to {}: {error}", mail.recipient);
        tx.execute(
            "INSERT INTO events (at, ticket, message, kind, actor, detail)
             SELECT ?1, ?2, message, 'mail.failed', 'system', ?3 FROM outbox WHERE id = ?4",
            params![at, mail.ticket, detail, mail.id],
        )?;
        super::apply::flag(
            &tx,
            mail.ticket,
            &format!("our mail could not be delivered {detail}"),
            &at,
        )?;
        tx.commit()?;
        Ok(())
    }
}

/// Automatic mails (not to staff) queued since `since`: to `address`, and on `ticket`.
/// Read inside the ingesting transaction, so mails queued earlier in the same batch count.
pub fn recent_automatic(
    conn: &Connection,
    address: Option<&str>,
    ticket: Option<i64>,
    since: DateTime<Utc>,
) -> Result<(u32, u32), StoreError> {
    let since = timestamp(since);
    let to_address: u32 = match address {
        Some(address) => conn
            .prepare_cached("SELECT count(*) FROM outbox WHERE recipient = ?1 AND queued_at >= ?2")?
            .query_row(params![address, since], |r| r.get(0))?,
        None => 0,
    };
    let on_ticket: u32 = match ticket {
        Some(ticket) => conn
            .prepare_cached(
                "SELECT count(*) FROM outbox WHERE ticket = ?1 AND queued_at >= ?2
                    AND recipient NOT IN (SELECT email FROM staff)",
            )?
            .query_row(params![ticket, since], |r| r.get(0))?,
        None => 0,
    };
    Ok((to_address, on_ticket))
}

/// The statuses an outbox row can have, for validating filters. `deferred` is a pending
/// mail that has failed at least once.
pub const STATUSES: [&str; 5] = ["pending", "deferred", "sent", "failed", "cancelled"];

/// One queued mail as an operator sees it (`outbox list`, `outbox show`).
#[derive(Debug, Clone, Serialize)]
pub struct OutboxEntry {
    pub id: i64,
    pub ticket: Option<i64>,
    /// The stored mail (`messages.id`).
    pub message: i64,
    pub message_id: Option<String>,
    pub subject: String,
    pub envelope_from: String,
    pub recipient: String,
    pub status: String,
    /// `status`, but `deferred` for a pending mail that has failed before.
    pub state: String,
    pub attempts: u32,
    pub queued_at: String,
    pub next_attempt_at: String,
    pub last_error: Option<String>,
    pub sent_at: Option<String>,
    pub bounced_at: Option<String>,
    pub bounce_reason: Option<String>,
}

const ENTRY_SELECT: &str =
    "SELECT o.id, o.ticket, o.message, m.message_id, m.subject, o.envelope_from,
        o.recipient, o.status, o.attempts, o.queued_at, o.next_attempt_at, o.last_error,
        o.sent_at, o.bounced_at, o.bounce_reason
   FROM outbox o JOIN messages m ON m.id = o.message";

fn entry_from_row(r: &Row<'_>) -> rusqlite::Result<OutboxEntry> {
    let status: String = r.get(7)?;
    let attempts: u32 = r.get(8)?;
    let state = if status == "pending" && attempts > 0 {
        "deferred".to_string()
    } else {
        status.clone()
    };
    Ok(OutboxEntry {
        id: r.get(0)?,
        ticket: r.get(1)?,
        message: r.get(2)?,
        message_id: r.get(3)?,
        subject: r.get(4)?,
        envelope_from: r.get(5)?,
        recipient: r.get(6)?,
        status,
        state,
        attempts,
        queued_at: r.get(9)?,
        next_attempt_at: r.get(10)?,
        last_error: r.get(11)?,
        sent_at: r.get(12)?,
        bounced_at: r.get(13)?,
        bounce_reason: r.get(14)?,
    })
}

/// What `outbox cancel` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancelled {
    Done,
    NoSuchMail,
    /// Only a pending mail can be cancelled; this one is in the given status.
    NotPending(String),
}

impl Store {
    /// Queued mail, oldest first; with `state`, only those in it (see [`STATUSES`]).
    pub fn list_outbox(&self, state: Option<&str>) -> Result<Vec<OutboxEntry>, StoreError> {
        let condition = match state {
            None => "1 = 1",
            Some("deferred") => "o.status = 'pending' AND o.attempts > 0",
            Some(_) => "o.status = ?1",
        };
        let sql = format!("{ENTRY_SELECT} WHERE {condition} ORDER BY o.id");
        let mut stmt = self.conn.prepare(&sql)?;
        let args = state.filter(|s| *s != "deferred");
        let rows = stmt.query_map(rusqlite::params_from_iter(args), entry_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One queued mail with its bytes.
    pub fn outbox_entry(&self, id: i64) -> Result<Option<(OutboxEntry, Vec<u8>)>, StoreError> {
        let sql = format!("{ENTRY_SELECT} WHERE o.id = ?1");
        let Some(entry) = self.conn.query_row(&sql, [id], entry_from_row).optional()? else {
            return Ok(None);
        };
        let raw = self.conn.query_row(
            "SELECT raw FROM messages WHERE id = ?1",
            [entry.message],
            |r| r.get(0),
        )?;
        Ok(Some((entry, raw)))
    }

    /// Makes pending mail due at `now`: mail `id`, or all of it. Returns how many rows
    /// changed; mail that is not pending is left alone.
    pub fn retry_outbox(
        &mut self,
        id: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        Ok(self.conn.execute(
            "UPDATE outbox SET next_attempt_at = ?1 WHERE status = 'pending' AND (?2 IS NULL OR id = ?2)",
            params![timestamp(now), id],
        )?)
    }

    /// Withdraws pending mail `id`: it is never sent. Recorded on its ticket as done by
    /// `actor`.
    pub fn cancel_outbox(
        &mut self,
        id: i64,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Cancelled, StoreError> {
        let at = timestamp(now);
        // Immediate: waits for the daemon's commit rather than failing with "locked".
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE outbox SET status = 'cancelled' WHERE id = ?1 AND status = 'pending'",
            [id],
        )?;
        if changed == 0 {
            let status: Option<String> = tx
                .query_row("SELECT status FROM outbox WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .optional()?;
            return Ok(status.map_or(Cancelled::NoSuchMail, Cancelled::NotPending));
        }
        tx.execute(
            "INSERT INTO events (at, ticket, message, kind, actor, detail)
             SELECT ?1, ticket, message, 'mail.cancelled', ?2, 'to ' || recipient FROM outbox WHERE id = ?3",
            params![at, actor, id],
        )?;
        tx.commit()?;
        Ok(Cancelled::Done)
    }
}

/// The outbox at a glance, for the metrics and the health report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Rows by status, every status present.
    pub by_status: Vec<(String, u64)>,
    /// When the earliest pending mail is (or became) due. A pending mail stays due until
    /// it is tried, so the wait of the oldest due mail at any later moment follows from
    /// this one time, without asking again until the table changes.
    pub next_due: Option<DateTime<Utc>>,
}

pub fn summary(conn: &Connection) -> Result<Summary, StoreError> {
    let by_status = conn
        .prepare_cached("SELECT status, count(*) FROM outbox GROUP BY status ORDER BY status")?
        .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?.unsigned_abs())))?
        .collect::<Result<_, _>>()?;
    let next_due: Option<String> = conn
        .prepare_cached("SELECT min(next_attempt_at) FROM outbox WHERE status = 'pending'")?
        .query_row([], |r| r.get(0))?;
    let next_due = next_due
        .map(|at| at.parse::<DateTime<Utc>>())
        .transpose()
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })?;
    Ok(Summary {
        by_status,
        next_due,
    })
}
