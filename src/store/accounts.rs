//! The account registry: who the customers are and which address is theirs.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use super::{Store, StoreError, timestamp};

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

/// Rows whose address or resources belong to an account not being re-imported with them.
fn find_conflicts(
    tx: &Connection,
    records: &[AccountRecord],
) -> Result<Vec<(usize, String)>, StoreError> {
    let in_file: BTreeSet<&str> = records.iter().map(|r| r.reference.as_str()).collect();
    let mut conflicts = Vec::new();
    for record in records {
        // The account (other than this row's) that holds what `sql` looks up, if any.
        let owner_elsewhere =
            |sql: &str, args: &[&dyn rusqlite::ToSql]| -> Result<Option<String>, StoreError> {
                let owner: Option<String> = tx.query_row(sql, args, |r| r.get(0)).optional()?;
                Ok(owner.filter(|o| *o != record.reference && !in_file.contains(o.as_str())))
            };
        if let Some(owner) = owner_elsewhere(
            "SELECT reference FROM accounts WHERE email = ?1",
            &[&record.email],
        )? {
            conflicts.push((
                record.line,
                format!(
                    "email {} is already registered to account {owner}",
                    record.email
                ),
            ));
        }
        for resource in &record.resources {
            let sql =
                "SELECT a.reference FROM account_resources r JOIN accounts a ON a.id = r.account_id
                        WHERE r.kind = ?1 AND r.value = ?2";
            if let Some(owner) = owner_elsewhere(sql, &[&resource.kind, &resource.value])? {
                conflicts.push((
                    record.line,
                    format!(
                        "{} {} already belongs to account {owner}",
                        resource.kind, resource.value
                    ),
                ));
            }
        }
    }
    Ok(conflicts)
}
