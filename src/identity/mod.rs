//! Who sent a message: a registered customer, staff, or a stranger.
//!
//! The From address is matched against the registered addresses only; Reply-To is never
//! consulted, so a message cannot redirect where our answers go.

pub mod import;

use rusqlite::Connection;

use crate::store::StoreError;
use crate::store::accounts::{self, Account};
use crate::store::staff;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    /// From is the registered address of this account.
    Customer(Account),
    Staff {
        email: String,
    },
    /// A well-formed address that belongs to no account.
    Unregistered(String),
    /// No usable From address at all.
    Unknown,
}

impl Sender {
    /// How the audit log names this sender.
    pub fn actor(&self) -> String {
        match self {
            Sender::Customer(a) => format!("customer:{}", a.email),
            Sender::Staff { email } => format!("staff:{email}"),
            Sender::Unregistered(address) => format!("sender:{address}"),
            Sender::Unknown => "sender:unknown".into(),
        }
    }

    pub fn account(&self) -> Option<&Account> {
        match self {
            Sender::Customer(a) => Some(a),
            _ => None,
        }
    }
}

/// `from` is the normalised From address, if the message has a usable one.
pub fn identify(conn: &Connection, from: Option<&str>) -> Result<Sender, StoreError> {
    let Some(from) = from else {
        return Ok(Sender::Unknown);
    };
    if staff::is_staff(conn, from)? {
        return Ok(Sender::Staff {
            email: from.to_string(),
        });
    }
    Ok(match accounts::find_by_email(conn, from)? {
        Some(account) => Sender::Customer(account),
        None => Sender::Unregistered(from.to_string()),
    })
}
