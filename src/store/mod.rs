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
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OpenFlags};

pub use migrations::LATEST_VERSION;

/// How long a statement waits for another connection's write to finish: the CLI's writes
/// (retry, cancel, import) run while the daemon commits batches.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

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
    #[error(
        "database {path} does not exist (`maildesk run` creates it); check `database` in the config"
    )]
    Missing { path: String },
    #[error(
        "database {path} has schema version {found}, this maildesk reads version {supported}; \
         run `maildesk run --once` (or the daemon) to upgrade it"
    )]
    Outdated {
        path: String,
        found: u32,
        supported: u32,
    },
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
        // Checkpoint every 10,000 pages (40 MB of WAL) instead of 1,000: at thousands of
        // messages a second the default ran a checkpoint, with its fsync, every tenth of a
        // second in the committing thread, and wrote the same hot index pages each time.
        conn.pragma_update(None, "wal_autocheckpoint", 10_000)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // 16 MiB of page cache (default 2 MiB): the indexes every message consults stay in
        // memory as the database grows with raw mail.
        conn.pragma_update(None, "cache_size", -16 * 1024)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
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

    /// Opens an existing database for reading only: a command that only looks must not
    /// create a database where the config points by mistake, nor upgrade one under the
    /// daemon's feet.
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        let name = path.display().to_string();
        if !path.exists() {
            return Err(StoreError::Missing { path: name });
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        migrations::check_current(&conn, &name)?;
        Ok(Store { conn })
    }

    /// Like [`Store::open`], but refuses to create a missing database: for commands that
    /// change rows (`outbox cancel`) and have nothing to do in a new one.
    pub fn open_existing(path: &Path) -> Result<Store, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing {
                path: path.display().to_string(),
            });
        }
        Store::open(path)
    }

    /// For a connection off the ingestion path (the outbox, the accounts file): SQLite's
    /// default 2 MiB of page cache, and what it holds beyond that given back. On a large
    /// database every connection's cache fills to its limit; at 16 MiB each, the side
    /// connections alone took the daemon past 100 MB.
    pub fn small_cache(&mut self) -> Result<(), StoreError> {
        self.conn.pragma_update(None, "cache_size", -2048)?;
        self.conn.execute_batch("PRAGMA shrink_memory")?;
        Ok(())
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
