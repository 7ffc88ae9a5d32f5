//! Staff members: configured in the config file, mirrored here so that every lookup and
//! the audit log see one list.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Store, StoreError};
use crate::config::Staff;
use crate::mail::normalize_address;

pub fn is_staff(conn: &Connection, address: &str) -> Result<bool, StoreError> {
    let found: Option<i64> = conn
        .prepare_cached("SELECT id FROM staff WHERE email = ?1")?
        .query_row([address], |r| r.get(0))
        .optional()?;
    Ok(found.is_some())
}

impl Store {
    /// Makes the staff table what the config says, in one transaction.
    pub fn sync_staff(&mut self, staff: &[Staff]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM staff", [])?;
        for member in staff {
            tx.execute(
                "INSERT INTO staff (email, name) VALUES (?1, ?2)
                 ON CONFLICT (email) DO UPDATE SET name = excluded.name",
                params![normalize_address(member.email.get_ref()), member.name],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// Every staff address, for notices to staff.
pub fn all(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT email FROM staff ORDER BY email")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
