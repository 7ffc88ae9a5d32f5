//! Schema versions, tracked in `PRAGMA user_version`.
//!
//! A new database gets `schema.sql` whole. An older one runs each step above its version,
//! each in its own transaction with the version bump, so a crash mid-upgrade leaves the
//! database at a whole version. A newer database is refused: an old binary must not write
//! to a schema it does not know.

use rusqlite::{Connection, Transaction};

use super::StoreError;

const SCHEMA: &str = include_str!("../../schema.sql");

/// Upgrade steps: `(version reached, SQL)`, in order. Add a step and update `schema.sql`
/// together; the tests below check that both give the same schema.
const STEPS: &[(u32, &str)] = &[
    (2, include_str!("migrations/0002_imap_first_sync.sql")),
    (3, include_str!("migrations/0003_rules.sql")),
    (4, include_str!("migrations/0004_outbound.sql")),
    (5, include_str!("migrations/0005_outbox_window.sql")),
    (6, include_str!("migrations/0006_search_and_cancel.sql")),
];

pub const LATEST_VERSION: u32 = 6;

/// Work a step needs beyond its SQL, run in the step's transaction after it.
type Backfill = fn(&Transaction<'_>, u32) -> Result<(), StoreError>;

pub(super) fn migrate(conn: &mut Connection, name: &str) -> Result<(), StoreError> {
    migrate_with(conn, name, SCHEMA, LATEST_VERSION, STEPS, backfill)
}

/// Version 6 indexes the mail stored before it for search: the text is decoded from the raw
/// bytes, which SQL cannot do.
fn backfill(tx: &Transaction<'_>, version: u32) -> Result<(), StoreError> {
    if version == 6 {
        super::tickets::index_stored_messages(tx)?;
    }
    Ok(())
}

/// For a connection that must not write: the database must be at this maildesk's version.
pub(super) fn check_current(conn: &Connection, name: &str) -> Result<(), StoreError> {
    let found: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    match found {
        LATEST_VERSION => Ok(()),
        found if found > LATEST_VERSION => Err(StoreError::TooNew {
            found,
            supported: LATEST_VERSION,
        }),
        found => Err(StoreError::Outdated {
            path: name.to_string(),
            found,
            supported: LATEST_VERSION,
        }),
    }
}

fn migrate_with(
    conn: &mut Connection,
    name: &str,
    schema: &str,
    latest: u32,
    steps: &[(u32, &str)],
    backfill: Backfill,
) -> Result<(), StoreError> {
    let found: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > latest {
        return Err(StoreError::TooNew {
            found,
            supported: latest,
        });
    }
    if found == 0 {
        let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
        if tables > 0 {
            return Err(StoreError::Foreign {
                path: name.to_string(),
            });
        }
        let tx = conn.transaction()?;
        tx.execute_batch(schema)?;
        tx.pragma_update(None, "user_version", latest)?;
        tx.commit()?;
        tracing::info!(database = name, version = latest, "created database");
        return Ok(());
    }
    for (version, sql) in steps.iter().filter(|(v, _)| *v > found) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        backfill(&tx, *version)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(database = name, version, "upgraded database schema");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(conn: &Connection) -> u32 {
        conn.pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    }

    fn tables(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn older_database_is_upgraded_step_by_step() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("db")).unwrap();
        conn.execute_batch("CREATE TABLE a (x); PRAGMA user_version = 1;")
            .unwrap();
        let steps = [
            (2, "CREATE TABLE b (y);"),
            (3, "ALTER TABLE b ADD COLUMN z;"),
        ];
        migrate_with(
            &mut conn,
            "db",
            "CREATE TABLE a (x); CREATE TABLE b (y, z);",
            3,
            &steps,
            |_, _| Ok(()),
        )
        .unwrap();
        assert_eq!(version(&conn), 3);
        assert_eq!(tables(&conn), vec!["a", "b"]);
        conn.execute("INSERT INTO b (y, z) VALUES (1, 2)", [])
            .unwrap();
    }

    /// Every table's columns and every index, to compare two databases' schemas.
    fn shape(conn: &Connection) -> Vec<String> {
        let mut out = Vec::new();
        for table in tables(conn) {
            let mut stmt = conn
                .prepare(&format!("PRAGMA table_info({table})"))
                .unwrap();
            let columns = stmt
                .query_map([], |r| {
                    Ok(format!(
                        "{table}.{} {} notnull={} default={:?} pk={}",
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, i64>(5)?
                    ))
                })
                .unwrap();
            out.extend(columns.map(Result::unwrap));
        }
        let mut stmt = conn
            .prepare("SELECT name || ' ON ' || tbl_name FROM sqlite_master WHERE type = 'index' ORDER BY name")
            .unwrap();
        out.extend(
            stmt.query_map([], |r| r.get::<_, String>(0))
                .unwrap()
                .map(Result::unwrap),
        );
        out
    }

    #[test]
    fn a_version_1_database_upgrades_to_the_current_schema() {
        let dir = tempfile::tempdir().unwrap();
        let mut old = Connection::open(dir.path().join("old.db")).unwrap();
        old.execute_batch(include_str!("migrations/0001_initial.sql"))
            .unwrap();
        old.pragma_update(None, "user_version", 1).unwrap();
        old.execute(
            "INSERT INTO mailbox_cursors (mailbox, uidvalidity, last_uid, updated_at) VALUES ('support', 7, 42, 'x')",
            [],
        )
        .unwrap();
        migrate(&mut old, "old.db").unwrap();
        assert_eq!(version(&old), LATEST_VERSION);
        let mut new = Connection::open_in_memory().unwrap();
        migrate(&mut new, "new").unwrap();
        assert_eq!(shape(&old), shape(&new));
        let kept: (i64, i64, i64) = old
            .query_row(
                "SELECT last_uid, first_uid, history_below FROM mailbox_cursors",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(kept, (42, 1, 0), "existing cursors keep their place");
    }

    #[test]
    fn outbox_rows_learn_their_ticket_and_queue_time_at_version_5() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(include_str!("migrations/0001_initial.sql"))
            .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        migrate_with(&mut conn, "v4", SCHEMA, 4, &STEPS[..3], backfill).unwrap();
        conn.execute_batch(
            "INSERT INTO tickets (number, requester, mailbox_role, subject, created_at, updated_at)
                 VALUES (12, 'a@example.test', 'support', 's', 't0', 't0');
             INSERT INTO messages (id, direction, mailbox, sha256, size, raw, ticket, received_at)
                 VALUES (3, 'out', 'outbox', 'h', 1, x'00', 12, '2026-11-20T10:00:00Z');
             INSERT INTO outbox (id, message, envelope_from, recipient, status, next_attempt_at)
                 VALUES (8, 3, 'support@example.test', 'a@example.test', 'sent', 'later');",
        )
        .unwrap();
        migrate(&mut conn, "v4").unwrap();
        let row: (i64, i64, String, String, String) = conn
            .query_row(
                "SELECT id, ticket, queued_at, status, next_attempt_at FROM outbox",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!(
            row,
            (
                8,
                12,
                "2026-11-20T10:00:00Z".into(),
                "sent".into(),
                "later".into()
            )
        );
    }

    #[test]
    fn version_6_indexes_stored_mail_for_search_and_lets_mail_be_cancelled() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(include_str!("migrations/0001_initial.sql"))
            .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        migrate_with(&mut conn, "v5", SCHEMA, 5, &STEPS[..4], backfill).unwrap();
        conn.execute_batch(
            "INSERT INTO tickets (number, requester, mailbox_role, subject, created_at, updated_at)
                 VALUES (12, 'a@example.test', 'support', 's', 't0', 't0');
             INSERT INTO messages (id, direction, mailbox, sha256, size, raw, ticket, received_at)
                 VALUES (3, 'in', 'support', 'h', 1,
                         CAST('From: a@example.test' || char(13, 10) || 'Subject: Webmail' || char(13, 10, 13, 10) || 'the quota is exceeded' AS BLOB),
                         12, 't0');
             INSERT INTO outbox (id, message, ticket, queued_at, envelope_from, recipient, status, next_attempt_at)
                 VALUES (8, 3, 12, 't0', 'support@example.test', 'a@example.test', 'pending', 't0');",
        )
        .unwrap();
        migrate(&mut conn, "v5").unwrap();
        let found = |words: &str| -> Vec<i64> {
            let mut stmt = conn
                .prepare("SELECT rowid FROM message_search WHERE message_search MATCH ?1")
                .unwrap();
            stmt.query_map([words], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert_eq!(found("quota"), vec![3], "decoded text");
        assert_eq!(found("webmail"), vec![3], "subject");
        assert_eq!(found("a example test"), vec![3], "sender");
        assert!(found("nothing").is_empty());
        conn.execute("UPDATE outbox SET status = 'cancelled' WHERE id = 8", [])
            .unwrap();
        assert!(
            conn.execute("UPDATE outbox SET status = 'lost' WHERE id = 8", [])
                .is_err(),
            "the CHECK constraint is kept"
        );
    }

    #[test]
    fn newer_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA user_version = 7;").unwrap();
        let err = migrate(&mut conn, "db").unwrap_err();
        assert!(err.to_string().contains("version 7 is newer"), "{err}");
    }

    #[test]
    fn foreign_database_is_left_alone() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE theirs (x);").unwrap();
        assert!(matches!(
            migrate(&mut conn, "db"),
            Err(StoreError::Foreign { .. })
        ));
        assert_eq!(tables(&conn), vec!["theirs"]);
    }

    #[test]
    fn new_database_gets_the_whole_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, "db").unwrap();
        assert_eq!(version(&conn), LATEST_VERSION);
        for table in [
            "accounts",
            "account_resources",
            "staff",
            "tickets",
            "messages",
            "events",
            "outbox",
            "mailbox_cursors",
        ] {
            assert!(tables(&conn).iter().any(|t| t == table), "missing {table}");
        }
        // A second open changes nothing.
        migrate(&mut conn, "db").unwrap();
        assert_eq!(version(&conn), LATEST_VERSION);
    }
}
