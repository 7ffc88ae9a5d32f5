//! The desk's policy: which ticket a message belongs to ([`thread`]) and what happens
//! because of it ([`decide`], pure). The effects are written by [`crate::store::apply`].

pub mod decide;
pub mod hours;
pub mod thread;

use serde::{Deserialize, Serialize};

use crate::rules::Severity;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

/// Who an outgoing mail goes to. A customer is named by account, never by address: the
/// address is read from the registry when the mail is written, so no header of the
/// incoming message can ever choose it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Recipient {
    RegisteredAddress {
        account_id: i64,
    },
    /// The address the message came from (unregistered sender, abuse reporter): only for
    /// templates with `Audience: sender`, which get no account data.
    Sender {
        address: String,
    },
    /// Every staff member in the config.
    Staff,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "effect")]
pub enum Effect {
    OpenTicket {
        subject: String,
    },
    JoinTicket {
        number: i64,
    },
    /// A customer wrote again on a resolved or closed ticket.
    Reopen,
    /// A rule matched: recorded in the audit log with the reasons.
    RuleMatched {
        rule: String,
        reasons: String,
    },
    /// What rules set on the ticket; `None` and empty leave it as it is.
    Classify {
        priority: Option<Priority>,
        category: Option<String>,
        queue: Option<String>,
        tags: Vec<String>,
    },
    FlagForStaff {
        reason: String,
    },
    OpenAbuseCase {
        category: String,
        severity: Severity,
    },
    /// A change the registered address must confirm before anyone acts on it.
    AwaitConfirmation {
        action: String,
    },
    LinkIncident {
        name: String,
    },
    /// Kept and never answered.
    Quarantine {
        rule: String,
    },
    Send {
        template: String,
        to: Recipient,
    },
    /// A machine reports that our mail could not be delivered.
    Bounced {
        message_id: String,
        /// The address failed for good, not just a delay.
        permanent: bool,
        reason: String,
    },
    /// No automatic answer, and why (recorded in the audit log).
    SuppressReply {
        reason: String,
    },
}

impl Effect {
    /// "priority urgent, category outage, tags a, b" for a `Classify`; empty otherwise.
    pub fn classification(&self) -> String {
        let Effect::Classify {
            priority,
            category,
            queue,
            tags,
        } = self
        else {
            return String::new();
        };
        let mut parts = Vec::new();
        if let Some(p) = priority {
            parts.push(format!("priority {}", p.as_str()));
        }
        if let Some(c) = category {
            parts.push(format!("category {c}"));
        }
        if let Some(q) = queue {
            parts.push(format!("queue {q}"));
        }
        if !tags.is_empty() {
            parts.push(format!("tags {}", tags.join(", ")));
        }
        parts.join(", ")
    }
}
