//! The SQLite store: opening, schema migrations, and the queries of each table.
//!
//! Only [`apply`] writes what the pipeline decided; the other modules here read, plus the
//! admin commands (account import) and the outbox worker's delivery bookkeeping.

pub mod accounts;
pub mod apply;
pub mod cursors;
mod migrations;
pub mod outbox;
pub mod outgoing;
pub mod probe;
pub mod staff;
pub mod tickets;

use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::Connection;

pub use migrations::LATEST_VERSION;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "database schema version {found} is newer than this maildesk understands ({supported}); \
         run a newer maildesk or restore a backup"
    )]
    TooNew { found: u32, supported: u32 },
    #[error("database {path} has tables but no maildesk schema version; refusing to touch it")]
    Foreign { path: String },
}

pub struct Store {
    pub(crate) conn: Connection,
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut conn = Connection::open(path)?;
        // WAL: readers (CLI, outbox worker) never block the ingesting writer.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a commit is on disk before it returns. The message is flagged or moved on
        // its server only after that, so a power cut can never leave a message acknowledged
        // at the source but missing here (NORMAL in WAL mode may lose the last commits).
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // 16 MiB of page cache (default 2 MiB): the indexes every message consults stay in
        // memory as the database grows with raw mail.
        conn.pragma_update(None, "cache_size", -16 * 1024)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // Every transaction takes the write lock when it begins, and so waits its turn
        // behind another process's writer (busy timeout). A deferred one that reads first
        // and writes later cannot wait: in WAL mode its upgrade fails at once with "database
        // is locked" if anyone committed meanwhile (`accounts import` beside the daemon).
        conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
        // Every statement of the ingestion path stays prepared.
        conn.set_prepared_statement_cache_capacity(64);
        // ...and keeps its plan: without the query planner stability guarantee, SQLite
        // re-prepares a statement whenever a new value is bound to a parameter the plan
        // might depend on (it did so on every call for several of ours, a sixth of ingestion).
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )?;
        migrations::migrate(&mut conn, &path.display().to_string())?;
        Ok(Store { conn })
    }

    /// A new, empty database in memory: for a dry run when no database exists yet.
    pub fn in_memory() -> Result<Store, StoreError> {
        let mut conn = Connection::open_in_memory()?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrations::migrate(&mut conn, ":memory:")?;
        Ok(Store { conn })
    }
}

/// Runs a statement through the connection's cache of prepared statements: the same few
/// statements run for every message, and parsing SQL was a visible share of ingestion.
pub(crate) fn exec(
    tx: &rusqlite::Transaction<'_>,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<usize, StoreError> {
    Ok(tx.prepare_cached(sql)?.execute(params)?)
}

/// The one timestamp format of the database: RFC 3339, UTC, sortable as text.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}
