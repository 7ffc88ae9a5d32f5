//! Messages through the whole flow: parse → identify → thread → decide → apply, a batch
//! inside one transaction together with the source's cursor. The caller acknowledges the
//! messages at their source only after [`Pipeline::ingest_batch`] returned, i.e. after
//! the commit. Parsing needs no database: a source does it with a [`Reader`] while the
//! previous batch commits, on another core.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Transaction, TransactionBehavior};
use serde::Serialize;

use crate::compose::Composed;
use crate::compose::variables::DeskVars;
use crate::config::{Config, Limits, Time};
use crate::desk::Effect;
use crate::desk::decide::{Decision, Inbound, Recent, decide};
use crate::desk::hours::is_business_time;
use crate::desk::thread::Threader;
use crate::identity::{self, Sender};
use crate::mail::{ParsedMail, normalize_address};
use crate::metrics::{self, Stored};
use crate::policy::{Policy, SharedPolicy};
use crate::source::SourceMessage;
use crate::store::apply::{self, Incoming};
use crate::store::outgoing::{self, GivenUp, Outgoing};
use crate::store::{Store, StoreError, cursors, outbox, tickets};

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

/// A message read and hashed: everything about it that needs no database.
pub struct Prepared {
    pub message: SourceMessage,
    mail: ParsedMail,
    sha256: String,
}

/// Reads messages for a pipeline without holding it.
#[derive(Clone)]
pub struct Reader {
    own_addresses: Arc<[String]>,
}

impl Reader {
    pub fn prepare(&self, message: SourceMessage) -> Prepared {
        Prepared {
            mail: ParsedMail::read(&message.raw, &self.own_addresses),
            sha256: crate::sha256_hex(&message.raw),
            message,
        }
    }
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
    policy: SharedPolicy,
    threader: Threader,
    reader: Reader,
    vars: DeskVars,
    default_language: String,
    time: Time,
    limits: Limits,
}

/// What happened to one message, in full: for `maildesk rules test`.
#[derive(Debug, Clone, Serialize)]
pub struct Explained {
    pub sender: String,
    pub language: Option<String>,
    pub business_hours: bool,
    /// The ticket the message continues, if any.
    pub ticket: Option<i64>,
    pub decision: Decision,
    #[serde(serialize_with = "serialize_mails")]
    pub mails: Vec<Composed>,
}

fn serialize_mails<S: serde::Serializer>(mails: &[Composed], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(mails.len()))?;
    for mail in mails {
        seq.serialize_element(&serde_json::json!({
            "message_id": mail.message_id,
            "from": mail.from,
            "to": mail.to,
            "subject": mail.subject,
            "raw": String::from_utf8_lossy(&mail.raw),
        }))?;
    }
    seq.end()
}

impl Pipeline {
    pub fn new(
        config: &Config,
        store: Store,
        policy: SharedPolicy,
    ) -> Result<Pipeline, regex::Error> {
        let desk = &config.desk;
        Ok(Pipeline {
            store,
            desk: Desk {
                policy,
                threader: Threader::new(desk.ticket_tag.get_ref())?,
                reader: Reader {
                    own_addresses: [&desk.support_address, &desk.abuse_address]
                        .iter()
                        .map(|a| normalize_address(a.get_ref()))
                        .collect(),
                },
                vars: DeskVars {
                    name: desk.name.clone(),
                    support_address: desk.support_address.get_ref().clone(),
                    abuse_address: desk.abuse_address.get_ref().clone(),
                },
                default_language: desk.default_language.clone(),
                time: config.time.clone(),
                limits: config.limits,
            },
        })
    }

    pub fn store(&mut self) -> &mut Store {
        &mut self.store
    }

    pub fn reader(&self) -> Reader {
        self.desk.reader.clone()
    }

    pub fn ingest(
        &mut self,
        message: SourceMessage,
        now: DateTime<Utc>,
    ) -> Result<Outcome, StoreError> {
        let prepared = self.desk.reader.prepare(message);
        let outcomes = self.ingest_batch(std::slice::from_ref(&prepared), None, now)?;
        Ok(outcomes
            .into_iter()
            .next()
            .unwrap_or(Outcome::AlreadyStored))
    }

    /// Stores `batch` and moves `cursor`, all in one transaction.
    pub fn ingest_batch(
        &mut self,
        batch: &[Prepared],
        cursor: Option<CursorAdvance<'_>>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Outcome>, StoreError> {
        // One policy for the whole batch, however a reload races with it.
        let policy = self.desk.policy.current();
        let tx = self
            .store
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut matched = Vec::new();
        for prepared in batch {
            outcomes.push(match self.desk.ingest_one(&tx, &policy, prepared, now)? {
                Some(mut handled) => {
                    matched.append(&mut handled.decision.evaluation.matched);
                    Outcome::Stored {
                        ticket: handled.ticket,
                        queued: handled.mails.len(),
                    }
                }
                None => Outcome::AlreadyStored,
            });
        }
        if let Some(c) = cursor {
            cursors::advance(&tx, c.mailbox, c.uidvalidity, c.last_uid, now)?;
        }
        tx.commit()?;
        // Counted once committed: a batch rolled back is handed out again.
        for (prepared, outcome) in batch.iter().zip(&outcomes) {
            let result = match outcome {
                Outcome::Stored { .. } => Stored::Stored,
                Outcome::AlreadyStored => Stored::AlreadyStored,
            };
            metrics::messages(&prepared.message.mailbox, result, 1);
        }
        for rule in &matched {
            metrics::rule_matched(&rule.name);
        }
        Ok(outcomes)
    }

    /// Tells staff about mails that were given up (see [`apply::alert_staff`]), in one
    /// transaction; returns how many notices were queued.
    pub fn alert_staff(
        &mut self,
        given_up: &[GivenUp],
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        if given_up.is_empty() {
            return Ok(0);
        }
        self.with_outgoing(|tx, outgoing| {
            let mut queued = 0;
            for failed in given_up {
                queued += outgoing::alert_staff(tx, failed, outgoing, now)?;
            }
            Ok(queued)
        })
    }

    /// Runs `write` in one transaction with what our mails are made from: for mails that
    /// answer no incoming message, such as notices to staff.
    pub fn with_outgoing<T>(
        &mut self,
        write: impl FnOnce(&Transaction<'_>, &Outgoing<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let policy = self.desk.policy.current();
        let tx = self.store.conn.transaction()?;
        let result = write(&tx, &self.desk.outgoing(&policy))?;
        tx.commit()?;
        Ok(result)
    }

    /// Everything that would happen to `message`, rules matched and mails fully written,
    /// computed by the very code that ingests, inside a transaction that is then rolled
    /// back: no row is changed and nothing is sent.
    pub fn explain(
        &mut self,
        message: SourceMessage,
        now: DateTime<Utc>,
    ) -> Result<Option<Explained>, StoreError> {
        let prepared = self.desk.reader.prepare(message);
        let policy = self.desk.policy.current();
        let tx = self.store.conn.transaction()?;
        let handled = self.desk.ingest_one(&tx, &policy, &prepared, now)?;
        tx.rollback()?;
        Ok(handled.map(|h| Explained {
            sender: describe(&h.sender),
            language: prepared.mail.language().map(str::to_string),
            business_hours: h.business_hours,
            ticket: h.joined,
            decision: h.decision,
            mails: h.mails,
        }))
    }
}

/// One message through the desk.
struct Handled {
    sender: Sender,
    business_hours: bool,
    joined: Option<i64>,
    ticket: Option<i64>,
    decision: Decision,
    mails: Vec<Composed>,
}

fn describe(sender: &Sender) -> String {
    match sender {
        Sender::Customer(a) => format!(
            "registered customer {} ({}), account {} status {}",
            a.name, a.email, a.reference, a.status
        ),
        Sender::Staff { email } => format!("staff {email}"),
        Sender::Unregistered(address) => format!("unregistered sender {address}"),
        Sender::Unverified { address, failure } => {
            format!("unverified sender {address} ({failure})")
        }
        Sender::Unknown => "unknown sender (no usable From)".into(),
    }
}

/// The sender's kind in the rules' words (`when.sender`), for log lines.
fn sender_kind(sender: &Sender) -> &'static str {
    match sender {
        Sender::Customer(_) => "registered",
        Sender::Staff { .. } => "staff",
        Sender::Unregistered(_) => "unregistered",
        Sender::Unverified { .. } => "unverified",
        Sender::Unknown => "unknown",
    }
}

/// What was decided for a message, in a few words for its log line ("queued support_ack;
/// flagged: ..."). Written straight into the line, and only when the line is written.
struct Decided<'a>(&'a [Effect]);

impl std::fmt::Display for Decided<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut separator = "";
        for effect in self.0 {
            let (what, detail): (&str, &str) = match effect {
                Effect::Send { template, .. } => ("queued ", template),
                Effect::SuppressReply { reason } => ("reply suppressed: ", reason),
                Effect::FlagForStaff { reason } => ("flagged: ", reason),
                Effect::Quarantine { rule } => ("quarantined by ", rule),
                Effect::AwaitConfirmation { action } => ("awaits confirmation: ", action),
                Effect::Bounced {
                    permanent: true, ..
                } => ("bounce of our mail", ""),
                Effect::Bounced { .. } => ("delay of our mail", ""),
                _ => continue,
            };
            write!(f, "{separator}{what}{detail}")?;
            separator = "; ";
        }
        if separator.is_empty() {
            f.write_str("filed")?;
        }
        Ok(())
    }
}

impl Desk {
    /// What outgoing mails are made from, under `policy`.
    fn outgoing<'a>(&'a self, policy: &'a Policy) -> Outgoing<'a> {
        Outgoing {
            templates: &policy.templates,
            threader: &self.threader,
            desk: &self.vars,
            default_language: &self.default_language,
            zone: self.time.zone,
        }
    }

    /// `None` when the message was already stored.
    fn ingest_one(
        &self,
        tx: &Transaction<'_>,
        policy: &Policy,
        prepared: &Prepared,
        now: DateTime<Utc>,
    ) -> Result<Option<Handled>, StoreError> {
        let Prepared {
            message,
            mail,
            sha256,
        } = prepared;
        if already_stored(tx, message, mail, sha256)? {
            return Ok(None);
        }
        let sender = identity::identify(tx, mail.from.as_deref(), mail.auth_failed.as_deref())?;
        // A machine writing about one of our mails (a bounce, an out-of-office) belongs
        // to that mail's ticket, whatever address it writes from; it can change nothing.
        let ours = match mail.automated {
            Some(_) => tickets::our_mail(tx, &mail.mentions)?,
            None => None,
        };
        let ticket = match &ours {
            Some((_, number)) => tickets::ticket_ref(tx, *number)?,
            None => self.threader.find(tx, mail, &sender)?,
        };
        let business_hours = is_business_time(&self.time, now);
        let window = chrono::Duration::minutes(i64::from(self.limits.window_minutes));
        let (to_sender, on_ticket) = outbox::recent_automatic(
            tx,
            sender.address(),
            ticket.as_ref().map(|t| t.number),
            now - window,
        )?;
        let decision = decide(
            Inbound {
                mailbox: &message.mailbox,
                role: message.role,
                mail,
                sender: &sender,
                ticket: ticket.as_ref(),
                history: message.history,
                oversize: message.oversize,
                business_hours,
                reports_on: ours.as_ref().map(|(id, _)| id.as_str()),
                recent: Recent {
                    to_sender,
                    on_ticket,
                },
                limits: self.limits,
            },
            policy,
        );
        let incoming = Incoming {
            mailbox: &message.mailbox,
            role: message.role,
            source_key: &message.key,
            raw: &message.raw,
            sha256,
            mail,
            sender: &sender,
        };
        let outgoing = self.outgoing(policy);
        let applied = apply::apply(tx, &incoming, &decision.effects, &outgoing, now)?;
        tracing::info!(
            mailbox = %message.mailbox,
            source_key = %message.key,
            ticket = applied.ticket,
            sender = %sender_kind(&sender),
            decided = %Decided(&decision.effects),
            queued = applied.mails.len(),
            "stored message"
        );
        Ok(Some(Handled {
            business_hours,
            joined: ticket.map(|t| t.number),
            ticket: applied.ticket,
            sender,
            decision,
            mails: applied.mails,
        }))
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
