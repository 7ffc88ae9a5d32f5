//! Finding the ticket a message continues: our subject tag first, then the Message-IDs it
//! answers. A match only counts when the sender may write on that ticket, so a stranger
//! who copies a tag cannot slip mail into someone else's ticket.

use regex::Regex;
use rusqlite::Connection;

use crate::identity::Sender;
use crate::mail::ParsedMail;
use crate::store::StoreError;
use crate::store::tickets::{self, TicketRef};

pub struct Threader {
    tag: Regex,
    tag_name: String,
}

impl Threader {
    pub fn new(ticket_tag: &str) -> Result<Threader, regex::Error> {
        let pattern = format!(r"(?i)\[{}\s*#(\d{{1,18}})\]", regex::escape(ticket_tag));
        Ok(Threader {
            tag: Regex::new(&pattern)?,
            tag_name: ticket_tag.to_string(),
        })
    }

    /// `[TAG #123]` for ticket 123.
    pub fn subject_tag(&self, number: i64) -> String {
        format!("[{} #{number}]", self.tag_name)
    }

    /// The ticket number in the subject's first tag of ours, if any.
    pub fn tagged_number(&self, subject: &str) -> Option<i64> {
        self.tag.captures(subject)?.get(1)?.as_str().parse().ok()
    }

    pub fn find(
        &self,
        conn: &Connection,
        mail: &ParsedMail,
        sender: &Sender,
    ) -> Result<Option<TicketRef>, StoreError> {
        let mut candidates = Vec::new();
        if let Some(number) = self.tagged_number(&mail.subject) {
            candidates.push(number);
        }
        let ancestors: Vec<&str> = mail.ancestors().collect();
        if let Some(number) = tickets::ticket_of_messages(conn, &ancestors)? {
            candidates.push(number);
        }
        for number in candidates {
            if let Some(ticket) = tickets::ticket_ref(conn, number)?
                && may_join(&ticket, sender)
            {
                return Ok(Some(ticket));
            }
        }
        Ok(None)
    }
}

/// Whether `sender` may add a message to `ticket`.
pub fn may_join(ticket: &TicketRef, sender: &Sender) -> bool {
    match sender {
        Sender::Staff { .. } => true,
        Sender::Customer(account) => ticket.account_id == Some(account.id),
        Sender::Unregistered(address) | Sender::Unverified { address, .. } => {
            ticket.account_id.is_none() && ticket.requester == *address
        }
        Sender::Unknown => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::accounts::Account;

    fn account(id: i64) -> Account {
        Account {
            id,
            reference: format!("C{id}"),
            email: format!("c{id}@example.com"),
            name: String::new(),
            language: "en".into(),
            status: "active".into(),
            details_valid: true,
        }
    }

    #[test]
    fn finds_our_tag_only() {
        let t = Threader::new("ACME").unwrap();
        assert_eq!(t.tagged_number("Re: [ACME #42] site down"), Some(42));
        assert_eq!(t.tagged_number("RE: [acme#7]"), Some(7));
        assert_eq!(t.tagged_number("[Ticket ID: 255909] Bestellung"), None);
        assert_eq!(t.tagged_number("[OTHER #42]"), None);
        assert_eq!(t.subject_tag(42), "[ACME #42]");
    }

    #[test]
    fn only_the_owner_or_staff_may_join() {
        let ticket = TicketRef {
            number: 1,
            account_id: Some(1),
            requester: "c1@example.com".into(),
            status: "new".into(),
            category: None,
        };
        assert!(may_join(&ticket, &Sender::Customer(account(1))));
        assert!(!may_join(&ticket, &Sender::Customer(account(2))));
        assert!(!may_join(
            &ticket,
            &Sender::Unregistered("c1@example.com".into())
        ));
        assert!(may_join(
            &ticket,
            &Sender::Staff {
                email: "s@desk.test".into()
            }
        ));
        let stranger = TicketRef {
            number: 2,
            account_id: None,
            requester: "x@y.example".into(),
            status: "new".into(),
            category: None,
        };
        assert!(may_join(
            &stranger,
            &Sender::Unregistered("x@y.example".into())
        ));
        assert!(!may_join(
            &stranger,
            &Sender::Unregistered("z@y.example".into())
        ));
        assert!(!may_join(&stranger, &Sender::Unknown));
    }
}
