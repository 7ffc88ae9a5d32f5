//! IMAP mailbox cursors: how far a mailbox has been committed, under which UIDVALIDITY.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::{Store, StoreError, timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub uidvalidity: u32,
    /// Every UID up to this one (and from `first_uid`) is committed.
    pub last_uid: u32,
    /// UIDs below were skipped at the first sync and are never touched.
    pub first_uid: u32,
    /// UIDs below are imported as history, without automatic answers.
    pub history_below: u32,
}

impl Store {
    pub fn cursor(&self, mailbox: &str) -> Result<Option<Cursor>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT uidvalidity, last_uid, first_uid, history_below FROM mailbox_cursors WHERE mailbox = ?1",
                [mailbox],
                |r| Ok(Cursor { uidvalidity: r.get(0)?, last_uid: r.get(1)?, first_uid: r.get(2)?, history_below: r.get(3)? }),
            )
            .optional()?)
    }

    /// Starts (or, after a UIDVALIDITY change, restarts) a mailbox's cursor.
    pub fn reset_cursor(
        &mut self,
        mailbox: &str,
        cursor: Cursor,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO mailbox_cursors (mailbox, uidvalidity, last_uid, first_uid, history_below, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (mailbox) DO UPDATE SET uidvalidity = ?2, last_uid = ?3, first_uid = ?4,
                                                 history_below = ?5, updated_at = ?6",
            params![mailbox, cursor.uidvalidity, cursor.last_uid, cursor.first_uid, cursor.history_below, timestamp(now)],
        )?;
        Ok(())
    }
}

/// Moves the cursor forward inside the transaction that stored the messages it covers.
/// Guarded by UIDVALIDITY: a cursor reset meanwhile is never overwritten.
pub fn advance(
    tx: &Connection,
    mailbox: &str,
    uidvalidity: u32,
    last_uid: u32,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE mailbox_cursors SET last_uid = max(last_uid, ?3), updated_at = ?4 WHERE mailbox = ?1 AND uidvalidity = ?2",
        params![mailbox, uidvalidity, last_uid, timestamp(now)],
    )?;
    Ok(())
}
