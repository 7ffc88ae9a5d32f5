//! Messages through the whole flow: parse → identify → thread → decide → apply, a batch
//! inside one transaction together with the source's cursor. The caller acknowledges the
//! messages at their source only after [`Pipeline::ingest_batch`] returned, i.e. after
//! the commit.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Transaction, TransactionBehavior};

use crate::compose::Templates;
use crate::config::Config;
use crate::desk::decide::{Inbound, decide};
use crate::desk::thread::Threader;
use crate::identity;
use crate::mail::{ParsedMail, normalize_address};
use crate::source::SourceMessage;
use crate::store::apply::{self, Incoming, Outgoing};
use crate::store::{Store, StoreError, cursors};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Stored {
        ticket: Option<i64>,
        queued: usize,
    },
    /// The same message was already stored from this mailbox (a re-delivery after a crash,
    /// or a mailbox re-read after its UIDVALIDITY changed).
    AlreadyStored,
}

/// Where an IMAP mailbox's cursor moves when a batch commits.
#[derive(Debug, Clone, Copy)]
pub struct CursorAdvance<'a> {
    pub mailbox: &'a str,
    pub uidvalidity: u32,
    pub last_uid: u32,
}

pub struct Pipeline {
    store: Store,
    desk: Desk,
}

/// Everything but the database: what messages are read and answered with.
struct Desk {
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
            desk: Desk {
                templates,
                threader: Threader::new(desk.ticket_tag.get_ref())?,
                own_addresses: [&desk.support_address, &desk.abuse_address]
                    .iter()
                    .map(|a| normalize_address(a.get_ref()))
                    .collect(),
                desk_name: desk.name.clone(),
                support_address: desk.support_address.get_ref().clone(),
                default_language: desk.default_language.clone(),
            },
        })
    }

    pub fn store(&mut self) -> &mut Store {
        &mut self.store
    }

    pub fn ingest(
        &mut self,
        message: &SourceMessage,
        now: DateTime<Utc>,
    ) -> Result<Outcome, StoreError> {
        let outcomes = self.ingest_batch(std::slice::from_ref(message), None, now)?;
        Ok(outcomes
            .into_iter()
            .next()
            .unwrap_or(Outcome::AlreadyStored))
    }

    /// Stores `messages` and moves `cursor`, all in one transaction.
    pub fn ingest_batch(
        &mut self,
        messages: &[SourceMessage],
        cursor: Option<CursorAdvance<'_>>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Outcome>, StoreError> {
        let parsed: Vec<ParsedMail> = messages
            .iter()
            .map(|m| ParsedMail::read(&m.raw, &self.desk.own_addresses))
            .collect();
        let tx = self
            .store
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut outcomes = Vec::with_capacity(messages.len());
        for (message, mail) in messages.iter().zip(&parsed) {
            outcomes.push(self.desk.ingest_one(&tx, message, mail, now)?);
        }
        if let Some(c) = cursor {
            cursors::advance(&tx, c.mailbox, c.uidvalidity, c.last_uid, now)?;
        }
        tx.commit()?;
        Ok(outcomes)
    }
}

impl Desk {
    fn ingest_one(
        &self,
        tx: &Transaction<'_>,
        message: &SourceMessage,
        mail: &ParsedMail,
        now: DateTime<Utc>,
    ) -> Result<Outcome, StoreError> {
        let sha256 = crate::sha256_hex(&message.raw);
        if already_stored(tx, message, mail, &sha256)? {
            return Ok(Outcome::AlreadyStored);
        }
        let sender = identity::identify(tx, mail.from.as_deref())?;
        let ticket = self.threader.find(tx, mail, &sender)?;
        let effects = decide(Inbound {
            role: message.role,
            mail,
            sender: &sender,
            ticket: ticket.as_ref(),
            history: message.history,
            oversize: message.oversize,
        });
        let incoming = Incoming {
            mailbox: &message.mailbox,
            role: message.role,
            source_key: &message.key,
            raw: &message.raw,
            sha256: &sha256,
            mail,
            sender: &sender,
        };
        let outgoing = Outgoing {
            templates: &self.templates,
            threader: &self.threader,
            desk_name: &self.desk_name,
            support_address: &self.support_address,
            default_language: &self.default_language,
        };
        let applied = apply::apply(tx, &incoming, &effects, &outgoing, now)?;
        tracing::debug!(
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

/// The same bytes in the same mailbox are one message. Mail read as history (first sync,
/// or a mailbox whose UIDVALIDITY changed) is also recognised by its Message-ID, since a
/// rebuilt mailbox may hand out the same message with slightly different bytes.
fn already_stored(
    tx: &Transaction<'_>,
    message: &SourceMessage,
    mail: &ParsedMail,
    sha256: &str,
) -> Result<bool, StoreError> {
    let mut by_hash = tx.prepare_cached(
        "SELECT 1 FROM messages WHERE direction = 'in' AND mailbox = ?1 AND sha256 = ?2",
    )?;
    if by_hash
        .query_row([&message.mailbox, sha256], |_| Ok(()))
        .optional()?
        .is_some()
    {
        return Ok(true);
    }
    match (&mail.message_id, message.history) {
        (Some(id), true) => {
            let mut by_id = tx.prepare_cached(
                "SELECT 1 FROM messages WHERE direction = 'in' AND mailbox = ?1 AND message_id = ?2",
            )?;
            Ok(by_id
                .query_row([&message.mailbox, id], |_| Ok(()))
                .optional()?
                .is_some())
        }
        _ => Ok(false),
    }
}
