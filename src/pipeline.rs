//! One message through the whole flow: parse → identify → thread → decide → apply, inside
//! one transaction. The caller acknowledges the message at its source only after
//! [`Pipeline::ingest`] returned, i.e. after the commit.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, TransactionBehavior};

use crate::compose::Templates;
use crate::config::Config;
use crate::desk::decide::{Inbound, decide};
use crate::desk::thread::Threader;
use crate::identity;
use crate::mail::{ParsedMail, normalize_address};
use crate::source::SourceMessage;
use crate::store::apply::{self, Incoming, Outgoing};
use crate::store::{Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Stored {
        ticket: Option<i64>,
        queued: usize,
    },
    /// The same bytes were already stored from this mailbox (a re-delivery after a crash).
    AlreadyStored,
}

pub struct Pipeline {
    store: Store,
    templates: Templates,
    threader: Threader,
    own_addresses: Vec<String>,
    desk_name: String,
    support_address: String,
    default_language: String,
}

impl Pipeline {
    pub fn new(
        config: &Config,
        store: Store,
        templates: Templates,
    ) -> Result<Pipeline, regex::Error> {
        let desk = &config.desk;
        Ok(Pipeline {
            store,
            templates,
            threader: Threader::new(desk.ticket_tag.get_ref())?,
            own_addresses: [&desk.support_address, &desk.abuse_address]
                .iter()
                .map(|a| normalize_address(a.get_ref()))
                .collect(),
            desk_name: desk.name.clone(),
            support_address: desk.support_address.get_ref().clone(),
            default_language: desk.default_language.clone(),
        })
    }

    pub fn ingest(
        &mut self,
        message: &SourceMessage,
        now: DateTime<Utc>,
    ) -> Result<Outcome, StoreError> {
        let sha256 = crate::sha256_hex(&message.raw);
        let mail = ParsedMail::read(&message.raw, &self.own_addresses);
        let tx = self
            .store
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let known: Option<i64> = tx
            .query_row(
                "SELECT id FROM messages WHERE direction = 'in' AND mailbox = ?1 AND sha256 = ?2",
                [&message.mailbox, &sha256],
                |r| r.get(0),
            )
            .optional()?;
        if known.is_some() {
            return Ok(Outcome::AlreadyStored);
        }
        let sender = identity::identify(&tx, mail.from.as_deref())?;
        let ticket = self.threader.find(&tx, &mail, &sender)?;
        let effects = decide(Inbound {
            role: message.role,
            mail: &mail,
            sender: &sender,
            ticket: ticket.as_ref(),
        });
        let incoming = Incoming {
            mailbox: &message.mailbox,
            role: message.role,
            source_key: &message.key,
            raw: &message.raw,
            sha256: &sha256,
            mail: &mail,
            sender: &sender,
        };
        let outgoing = Outgoing {
            templates: &self.templates,
            threader: &self.threader,
            desk_name: &self.desk_name,
            support_address: &self.support_address,
            default_language: &self.default_language,
        };
        let applied = apply::apply(&tx, &incoming, &effects, &outgoing, now)?;
        tx.commit()?;
        tracing::info!(
            mailbox = %message.mailbox,
            key = %message.key,
            from = mail.from.as_deref().unwrap_or("-"),
            ticket = applied.ticket,
            queued = applied.queued,
            "stored message"
        );
        Ok(Outcome::Stored {
            ticket: applied.ticket,
            queued: applied.queued,
        })
    }
}
