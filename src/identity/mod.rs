//! Who sent a message: a registered customer, staff, or a stranger.
//!
//! The From address is matched against the registered addresses only; Reply-To is never
//! consulted, so a message cannot redirect where our answers go.

pub mod import;
pub mod overlap;

use rusqlite::Connection;

#[cfg(doc)]
use crate::mail::ParsedMail;
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
    /// A registered address, but the receiving server reported that the message failed
    /// authentication: it is not trusted as the account's owner (invariant 4), and its
    /// answers go to the address it claims, never with account data.
    Unverified {
        address: String,
        failure: String,
    },
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
            Sender::Unverified { address, .. } => format!("unverified:{address}"),
            Sender::Unknown => "sender:unknown".into(),
        }
    }

    /// The address the message came from, if it had a usable one.
    pub fn address(&self) -> Option<&str> {
        match self {
            Sender::Customer(a) => Some(&a.email),
            Sender::Staff { email } => Some(email),
            Sender::Unregistered(address) | Sender::Unverified { address, .. } => Some(address),
            Sender::Unknown => None,
        }
    }

    pub fn account(&self) -> Option<&Account> {
        match self {
            Sender::Customer(a) => Some(a),
            _ => None,
        }
    }
}

/// `from` is the normalised From address, if the message has a usable one;
/// `auth_failed` what the receiving server reported against it (see [`ParsedMail`]).
pub fn identify(
    conn: &Connection,
    from: Option<&str>,
    auth_failed: Option<&str>,
) -> Result<Sender, StoreError> {
    let Some(from) = from else {
        return Ok(Sender::Unknown);
    };
    if let Some(failure) = auth_failed {
        return Ok(Sender::Unverified {
            address: from.to_string(),
            failure: failure.to_string(),
        });
    }
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
