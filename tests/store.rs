//! The database file: created with the current schema, a newer one refused.

mod common;

use common::{Desk, stderr};

#[test]
fn database_is_created_in_wal_mode_with_the_current_version() {
    let desk = Desk::demo();
    desk.ok(&["run", "--once"]);
    let db = desk.db();
    let version: u32 = db
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, maildesk::store::LATEST_VERSION);
    let mode: String = db
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn a_database_from_a_newer_maildesk_is_refused() {
    let desk = Desk::demo();
    desk.ok(&["run", "--once"]);
    desk.db().pragma_update(None, "user_version", 99).unwrap();
    let out = desk.maildesk(&["tickets", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("database schema version 99 is newer than this maildesk understands"),
        "{}",
        stderr(&out)
    );
    // Refused before it starts, like `check` (exit 2: the setup cannot be used).
    let out = desk.maildesk(&["run", "--once"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!desk.files_in("new").iter().any(|_| false));
}
