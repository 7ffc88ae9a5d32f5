//! maildesk: a hosting provider's support and abuse desk, run over email.
//!
//! Flow of a message (see ARCHITECTURE.md): [`source`] → [`mail`] (parse) → [`identity`]
//! → [`desk::thread`] → [`desk::decide`] (pure) → [`store::apply`] (one transaction) →
//! acknowledged at the source. [`outbox`] delivers what was queued; [`daemon`] drives it all.

pub mod compose;
pub mod config;
pub mod daemon;
pub mod desk;
pub mod diag;
pub mod identity;
pub mod mail;
pub mod metrics;
pub mod outbox;
pub mod pipeline;
pub mod policy;
pub mod rules;
pub mod shutdown;
pub mod source;
pub mod store;

use sha2::{Digest, Sha256};

/// Lower-case hex SHA-256, the content hash stored with every message.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
