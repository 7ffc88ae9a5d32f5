//! The desk's policy: which ticket a message belongs to ([`thread`]) and what happens
//! because of it ([`decide`], pure). The effects are written by [`crate::store::apply`].

pub mod decide;
pub mod thread;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }
}

/// The mails maildesk writes on its own; each is a template of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MailKind {
    /// "We received your request", with the ticket number: to the registered address.
    SupportAck,
    /// To an address that belongs to no account: says nothing about any account.
    UnregisteredNotice,
}

impl MailKind {
    pub const ALL: [MailKind; 2] = [MailKind::SupportAck, MailKind::UnregisteredNotice];

    pub fn template(self) -> &'static str {
        match self {
            MailKind::SupportAck => "support_ack",
            MailKind::UnregisteredNotice => "unregistered_notice",
        }
    }
}

/// Who an outgoing mail goes to. A customer is named by account, never by address: the
/// address is read from the registry when the mail is written, so no header of the
/// incoming message can ever choose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    RegisteredAddress {
        account_id: i64,
    },
    /// Only for the unregistered-sender notice, which discloses nothing.
    UnregisteredSender {
        address: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    OpenTicket {
        subject: String,
        priority: Priority,
    },
    JoinTicket {
        number: i64,
    },
    /// A customer wrote again on a resolved or closed ticket.
    Reopen,
    FlagForStaff {
        reason: String,
    },
    Send {
        kind: MailKind,
        to: Recipient,
    },
    /// No automatic answer, and why (recorded in the audit log).
    SuppressReply {
        reason: String,
    },
}
