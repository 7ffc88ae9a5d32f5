//! Where incoming mail comes from. A source hands out raw bytes and is told to acknowledge
//! a message only after the message's transaction has committed.

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
    pub raw: Vec<u8>,
}
