//! Where incoming mail comes from. A source hands out raw bytes and is told to acknowledge
//! a message only after the message's transaction has committed.

pub mod backoff;
pub mod imap;
pub mod maildir;

use crate::config::Role;

/// One message as fetched, before anything was read from it.
#[derive(Debug, Clone)]
pub struct SourceMessage {
    /// Configured mailbox name.
    pub mailbox: String,
    pub role: Role,
    /// Where the source keeps it: the Maildir unique name, or the IMAP UID.
    pub key: String,
    /// Only the header when the message was too large; `oversize` then says how large.
    pub raw: Vec<u8>,
    pub oversize: Option<u64>,
    /// Found in the mailbox at the first sync, or when the server changed its
    /// UIDVALIDITY: stored (recognised by Message-ID too), never answered.
    pub history: bool,
}

/// What a source did with the messages it handed out.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub stored: usize,
    pub already_stored: usize,
    /// Left at the source (unreadable, or refused by the store), tried again later.
    pub failed: usize,
}
