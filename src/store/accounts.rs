//! The account registry: who the customers are and which address is theirs.

use std::collections::BTreeSet;
use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, Transaction, params};
use serde::Serialize;

use super::outgoing::{Outgoing, StaffNotice, notify_staff};
use super::{Store, StoreError, timestamp};
use crate::identity::overlap::{self, Holding};
use crate::mail::ParsedMail;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    pub id: i64,
    pub reference: String,
    /// The registered address, normalised.
    pub email: String,
    pub name: String,
    pub language: String,
    pub status: String,
    pub details_valid: bool,
}

const ACCOUNT_COLUMNS: &str = "id, reference, email, name, language, status, details_valid";

fn account_from_row(row: &Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: row.get(0)?,
        reference: row.get(1)?,
        email: row.get(2)?,
        name: row.get(3)?,
        language: row.get(4)?,
        status: row.get(5)?,
        details_valid: row.get(6)?,
    })
}

/// A resource a customer holds, by which abuse reports find their account.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Resource {
    pub kind: &'static str,
    pub value: String,
}

/// One account as an import file states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    /// Line of the import file, for error messages.
    pub line: usize,
    pub reference: String,
    pub email: String,
    pub name: String,
    pub language: String,
    pub status: String,
    pub details_valid: bool,
    pub resources: BTreeSet<Resource>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Rows that clash with accounts already registered: `(line, problem)`.
    #[error("{} row(s) conflict with registered accounts", .0.len())]
    Conflicts(Vec<(usize, String)>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for ImportError {
    fn from(e: rusqlite::Error) -> Self {
        ImportError::Store(e.into())
    }
}

pub fn find_by_email(conn: &Connection, email: &str) -> Result<Option<Account>, StoreError> {
    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE email = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([email], account_from_row)
        .optional()?)
}

pub fn find_by_id(conn: &Connection, id: i64) -> Result<Option<Account>, StoreError> {
    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], account_from_row)
        .optional()?)
}

fn resources_of(conn: &Connection, account_id: i64) -> Result<BTreeSet<Resource>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT kind, value FROM account_resources WHERE account_id = ?1")?;
    let rows = stmt.query_map([account_id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = BTreeSet::new();
    for row in rows {
        let (kind, value) = row?;
        out.insert(Resource {
            kind: resource_kind(&kind),
            value,
        });
    }
    Ok(out)
}

fn resource_kind(kind: &str) -> &'static str {
    match kind {
        "ip" => "ip",
        "cidr" => "cidr",
        _ => "domain",
    }
}

#[derive(Debug, Serialize)]
pub struct AccountListing {
    #[serde(flatten)]
    pub account: Account,
    pub resources: Vec<Resource>,
}

impl Store {
    pub fn list_accounts(&self) -> Result<Vec<AccountListing>, StoreError> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY reference");
        let mut stmt = self.conn.prepare(&sql)?;
        let accounts = stmt
            .query_map([], account_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        accounts
            .into_iter()
            .map(|account| {
                let resources = resources_of(&self.conn, account.id)?.into_iter().collect();
                Ok(AccountListing { account, resources })
            })
            .collect()
    }

    /// Creates or updates every record, keyed on its reference, in one transaction:
    /// either the whole file is imported or nothing is.
    pub fn import_accounts(
        &mut self,
        records: &[AccountRecord],
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<ImportSummary, ImportError> {
        // Immediate: a transaction that reads first and writes later fails at once with
        // "database is locked" if the daemon committed in between; taking the write lock
        // first makes it wait (busy timeout) instead.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let conflicts = find_conflicts(&tx, records)?;
        if !conflicts.is_empty() {
            return Err(ImportError::Conflicts(conflicts));
        }
        let at = timestamp(now);
        let actor = format!("import:{source}");
        let mut summary = ImportSummary::default();
        // Addresses and resources may move between accounts within one file (two customers
        // swapping addresses, say). Every account named first gets its old state read, its
        // resources cleared and a changing address parked on a placeholder, so that no
        // UNIQUE constraint trips halfway; every parked address is set below.
        let select = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE reference = ?1");
        let mut previous = std::collections::HashMap::new();
        for record in records {
            let Some(old) = tx
                .query_row(&select, [&record.reference], account_from_row)
                .optional()?
            else {
                continue;
            };
            let resources = resources_of(&tx, old.id)?;
            tx.execute(
                "DELETE FROM account_resources WHERE account_id = ?1",
                [old.id],
            )?;
            if old.email != record.email {
                tx.execute(
                    "UPDATE accounts SET email = 'moving:' || id WHERE id = ?1",
                    [old.id],
                )?;
            }
            previous.insert(record.reference.as_str(), (old, resources));
        }
        for record in records {
            let existing = previous.remove(record.reference.as_str());
            let id = match &existing {
                None => {
                    tx.execute(
                        "INSERT INTO accounts (reference, email, name, language, status, details_valid, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                        params![record.reference, record.email, record.name, record.language, record.status, record.details_valid, at],
                    )?;
                    tx.last_insert_rowid()
                }
                Some((old, _)) => old.id,
            };
            for resource in &record.resources {
                tx.execute(
                    "INSERT INTO account_resources (account_id, kind, value) VALUES (?1, ?2, ?3)",
                    params![id, resource.kind, resource.value],
                )?;
            }
            let Some((old, old_resources)) = existing else {
                summary.created += 1;
                insert_account_event(&tx, &at, id, "account.created", &actor, &record.email)?;
                continue;
            };
            let mut changes = field_changes(&old, record);
            if !changes.is_empty() {
                tx.execute(
                    "UPDATE accounts SET email = ?2, name = ?3, language = ?4, status = ?5, details_valid = ?6, updated_at = ?7
                     WHERE id = ?1",
                    params![id, record.email, record.name, record.language, record.status, record.details_valid, at],
                )?;
            }
            if old_resources != record.resources {
                changes.push("resources changed".into());
            }
            if changes.is_empty() {
                summary.unchanged += 1;
            } else {
                summary.updated += 1;
                insert_account_event(&tx, &at, id, "account.updated", &actor, &changes.join("; "))?;
            }
        }
        tx.commit()?;
        Ok(summary)
    }
}

/// `field: "before" -> "after"` for every field the record changes.
fn field_changes(old: &Account, new: &AccountRecord) -> Vec<String> {
    let fields = [
        ("email", old.email.clone(), new.email.clone()),
        ("name", old.name.clone(), new.name.clone()),
        ("language", old.language.clone(), new.language.clone()),
        ("status", old.status.clone(), new.status.clone()),
        (
            "details_valid",
            old.details_valid.to_string(),
            new.details_valid.to_string(),
        ),
    ];
    fields
        .into_iter()
        .filter(|(_, before, after)| before != after)
        .map(|(field, before, after)| format!("{field}: {before:?} -> {after:?}"))
        .collect()
}

fn insert_account_event(
    tx: &Connection,
    at: &str,
    account_id: i64,
    kind: &str,
    actor: &str,
    detail: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO events (at, account_id, kind, actor, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![at, account_id, kind, actor, detail],
    )?;
    Ok(())
}

/// The kinds of event that record what the daemon made of its accounts_file.
const REFUSED: &str = "accounts.refused";
const IMPORTED: &str = "accounts.imported";

fn last_file_event(conn: &Connection) -> Result<Option<(String, String)>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT kind, detail FROM events WHERE kind IN (?1, ?2) ORDER BY id DESC LIMIT 1",
        )?
        .query_row([REFUSED, IMPORTED], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Records that the daemon refused the accounts_file `file` for `problems`, and tells
/// staff, once: the same refusal again (the next poll, a restart) is already recorded
/// and told, until the file is imported. Returns how many notices were queued.
pub fn record_refusal(
    tx: &Transaction<'_>,
    file: &Path,
    problems: &str,
    out: &Outgoing<'_>,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let detail = format!("{}\n{problems}", file.display());
    if last_file_event(tx)? == Some((REFUSED.to_string(), detail.clone())) {
        return Ok(0);
    }
    insert_file_event(tx, now, REFUSED, &detail)?;
    // The notice is about the file: its problems stand where a customer's text would.
    let about = ParsedMail::read(
        format!(
            "Subject: accounts_file {} refused\r\n\r\n{problems}\r\n",
            file.display()
        )
        .as_bytes(),
        &[],
    );
    let notice = StaffNotice {
        ticket: None,
        about: &about,
        account: None,
        reason: format!(
            "the accounts_file {} has errors and was not imported; the registry stays as it was until it is corrected",
            file.display()
        ),
        key: crate::sha256_hex(detail.as_bytes()),
        message_id: None,
    };
    let mut queued = 0;
    for notice in notify_staff(tx, notice, out, now)? {
        match notice {
            Ok(_) => queued += 1,
            Err(error) => {
                tracing::error!(%error, "cannot write the notice about the accounts_file")
            }
        }
    }
    Ok(queued)
}

/// Records that `file` was imported after a refusal, so that a later refusal is told.
pub fn record_import(conn: &Connection, file: &Path, now: DateTime<Utc>) -> Result<(), StoreError> {
    if last_file_event(conn)?.is_some_and(|(kind, _)| kind == REFUSED) {
        insert_file_event(conn, now, IMPORTED, &file.display().to_string())?;
    }
    Ok(())
}

fn insert_file_event(
    conn: &Connection,
    now: DateTime<Utc>,
    kind: &str,
    detail: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO events (at, kind, actor, detail) VALUES (?1, ?2, 'system', ?3)",
    )?
    .execute(params![timestamp(now), kind, detail])?;
    Ok(())
}

/// What importing `records` into the registry at `database` would refuse, found without
/// changing it (for `maildesk check`): read-only, or against an empty registry when there
/// is no database yet.
pub fn conflicts_with_registry(
    database: &Path,
    records: &[AccountRecord],
) -> Result<Vec<(usize, String)>, StoreError> {
    if !database.exists() {
        return find_conflicts(&Store::in_memory()?.conn, records);
    }
    let conn = Connection::open_with_flags(database, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    find_conflicts(&conn, records)
}

/// Rows whose address belongs to an account not being re-imported with them, and rows
/// whose resources overlap another account's (see [`overlap`]), in the file or
/// registered. Accounts the file names are compared as the file states them.
fn find_conflicts(
    conn: &Connection,
    records: &[AccountRecord],
) -> Result<Vec<(usize, String)>, StoreError> {
    let in_file: BTreeSet<&str> = records.iter().map(|r| r.reference.as_str()).collect();
    let mut conflicts = Vec::new();
    let mut by_email = conn.prepare_cached("SELECT reference FROM accounts WHERE email = ?1")?;
    for record in records {
        let owner: Option<String> = by_email
            .query_row([&record.email], |r| r.get(0))
            .optional()?;
        if let Some(owner) = owner.filter(|o| !in_file.contains(o.as_str())) {
            conflicts.push((
                record.line,
                format!(
                    "email {} is already registered to account {owner}",
                    record.email
                ),
            ));
        }
    }
    let mut stmt = conn.prepare_cached(
        "SELECT a.reference, r.kind, r.value FROM account_resources r JOIN accounts a ON a.id = r.account_id",
    )?;
    let registered = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Resource {
                    kind: resource_kind(&r.get::<_, String>(1)?),
                    value: r.get(2)?,
                },
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let holdings: Vec<Holding<'_>> = registered
        .iter()
        .filter(|(owner, _)| !in_file.contains(owner.as_str()))
        .map(|(owner, resource)| Holding {
            account: owner,
            line: None,
            resource,
        })
        .chain(records.iter().flat_map(|record| {
            record.resources.iter().map(|resource| Holding {
                account: &record.reference,
                line: Some(record.line),
                resource,
            })
        }))
        .collect();
    conflicts.extend(overlap::conflicts(&holdings));
    conflicts.sort();
    Ok(conflicts)
}
