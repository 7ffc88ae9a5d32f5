//! Writing what [`crate::desk::decide`] decided: the message, its ticket, audit events and
//! outgoing mails, all inside the caller's transaction. Either all of a message's effects
//! are committed, or none are and the message is still waiting at its source.

use chrono::{DateTime, Utc};
use minijinja::context;
use rusqlite::{Transaction, params};

use super::{StoreError, accounts, timestamp};
use crate::compose::{self, Composed, Draft, InReplyTo, Templates};
use crate::config::Role;
use crate::desk::thread::Threader;
use crate::desk::{Effect, MailKind, Recipient};
use crate::identity::Sender;
use crate::mail::ParsedMail;

/// A message as the source delivered it, with what was read from it.
pub struct Incoming<'a> {
    pub mailbox: &'a str,
    pub role: Role,
    pub source_key: &'a str,
    pub raw: &'a [u8],
    pub sha256: &'a str,
    pub mail: &'a ParsedMail,
    pub sender: &'a Sender,
}

/// What outgoing mails are made from.
pub struct Outgoing<'a> {
    pub templates: &'a Templates,
    pub threader: &'a Threader,
    pub desk_name: &'a str,
    pub support_address: &'a str,
    pub default_language: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub message: i64,
    pub ticket: Option<i64>,
    pub queued: usize,
}

pub fn apply(
    tx: &Transaction<'_>,
    incoming: &Incoming<'_>,
    effects: &[Effect],
    outgoing: &Outgoing<'_>,
    now: DateTime<Utc>,
) -> Result<Applied, StoreError> {
    let at = timestamp(now);
    let mail = incoming.mail;
    exec(tx,
        "INSERT INTO messages (direction, mailbox, source_key, message_id, sha256, size, raw, from_addr, subject,
                               automated, malformed, received_at)
         VALUES ('in', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            incoming.mailbox,
            incoming.source_key,
            mail.message_id,
            incoming.sha256,
            incoming.raw.len() as i64,
            incoming.raw,
            mail.from,
            mail.subject,
            mail.automated.as_ref().map(ToString::to_string),
            mail.malformed,
            at,
        ],
    )?;
    let message = tx.last_insert_rowid();
    let actor = incoming.sender.actor();
    let event = |ticket: Option<i64>,
                 kind: &str,
                 actor: &str,
                 detail: &str|
     -> Result<(), StoreError> {
        exec(
            tx,
            "INSERT INTO events (at, ticket, message, kind, actor, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![at, ticket, message, kind, actor, detail],
        )?;
        Ok(())
    };
    let mut ticket = None;
    let mut queued = 0;
    for effect in effects {
        match effect {
            Effect::OpenTicket { subject, priority } => {
                let sender = incoming.sender;
                exec(tx,
                    "INSERT INTO tickets (account_id, requester, mailbox_role, subject, priority, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                    params![
                        sender.account().map(|a| a.id),
                        mail.from.as_deref().unwrap_or("unknown"),
                        incoming.role.as_str(),
                        subject,
                        priority.as_str(),
                        at
                    ],
                )?;
                let number = tx.last_insert_rowid();
                ticket = Some(number);
                exec(
                    tx,
                    "UPDATE messages SET ticket = ?1 WHERE id = ?2",
                    params![number, message],
                )?;
                event(
                    ticket,
                    "ticket.opened",
                    &actor,
                    &format!("priority {}", priority.as_str()),
                )?;
            }
            Effect::JoinTicket { number } => {
                ticket = Some(*number);
                exec(
                    tx,
                    "UPDATE messages SET ticket = ?1 WHERE id = ?2",
                    params![number, message],
                )?;
                exec(
                    tx,
                    "UPDATE tickets SET updated_at = ?1 WHERE number = ?2",
                    params![at, number],
                )?;
                event(ticket, "message.added", &actor, "")?;
            }
            Effect::Reopen => {
                exec(
                    tx,
                    "UPDATE tickets SET status = 'open', updated_at = ?1 WHERE number = ?2",
                    params![at, ticket],
                )?;
                event(ticket, "ticket.reopened", &actor, "customer wrote again")?;
            }
            Effect::FlagForStaff { reason } => {
                flag(tx, ticket, reason, &at)?;
                event(ticket, "ticket.flagged", "system", reason)?;
            }
            Effect::SuppressReply { reason } => {
                event(ticket, "reply.suppressed", "system", reason)?
            }
            Effect::Send { kind, to } => {
                match write_mail(tx, incoming, *kind, to, ticket, outgoing, now)? {
                    Ok(composed) => {
                        exec(tx,
                        "INSERT INTO messages (direction, mailbox, message_id, sha256, size, raw, from_addr, subject, ticket, received_at)
                         VALUES ('out', 'outbox', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                        params![
                            composed.message_id,
                            crate::sha256_hex(&composed.raw),
                            composed.raw.len() as i64,
                            composed.raw,
                            composed.from,
                            composed.subject,
                            ticket,
                            at
                        ],
                    )?;
                        let out = tx.last_insert_rowid();
                        exec(
                            tx,
                            "INSERT INTO outbox (message, envelope_from, recipient, next_attempt_at) VALUES (?1, ?2, ?3, ?4)",
                            params![out, composed.from, composed.to, at],
                        )?;
                        queued += 1;
                        event(
                            ticket,
                            "mail.queued",
                            "system",
                            &format!("{} to {}", kind.template(), composed.to),
                        )?;
                    }
                    Err(problem) => {
                        let reason = format!("could not write {}: {problem}", kind.template());
                        flag(tx, ticket, &reason, &at)?;
                        event(ticket, "ticket.flagged", "system", &reason)?;
                    }
                }
            }
        }
    }
    Ok(Applied {
        message,
        ticket,
        queued,
    })
}

/// Runs a statement through the connection's cache of prepared statements: the same few
/// statements run for every message, and parsing SQL was a visible share of ingestion.
fn exec(
    tx: &Transaction<'_>,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<usize, StoreError> {
    Ok(tx.prepare_cached(sql)?.execute(params)?)
}

fn flag(
    tx: &Transaction<'_>,
    ticket: Option<i64>,
    reason: &str,
    at: &str,
) -> Result<(), StoreError> {
    exec(tx,
        "UPDATE tickets SET needs_staff = 1, updated_at = ?3,
                flag_reason = CASE WHEN flag_reason IS NULL THEN ?1 ELSE flag_reason || '; ' || ?1 END
          WHERE number = ?2",
        params![reason, ticket, at],
    )?;
    Ok(())
}

/// Renders one mail. The outer error aborts the transaction (the database failed); the
/// inner one is a problem with this mail only, which staff are told about.
fn write_mail(
    tx: &Transaction<'_>,
    incoming: &Incoming<'_>,
    kind: MailKind,
    to: &Recipient,
    ticket: Option<i64>,
    out: &Outgoing<'_>,
    now: DateTime<Utc>,
) -> Result<Result<Composed, String>, StoreError> {
    let desk = context! { name => out.desk_name, support_address => out.support_address };
    let (address, language, ctx) = match to {
        Recipient::RegisteredAddress { account_id } => {
            let Some(account) = accounts::find_by_id(tx, *account_id)? else {
                return Ok(Err(format!("account {account_id} no longer exists")));
            };
            let subject: String = match ticket {
                Some(n) => tx
                    .prepare_cached("SELECT subject FROM tickets WHERE number = ?1")?
                    .query_row([n], |r| r.get(0))?,
                None => incoming.mail.subject.clone(),
            };
            let ctx = context! {
                desk,
                ticket => context! {
                    number => ticket,
                    tag => ticket.map(|n| out.threader.subject_tag(n)),
                    subject,
                },
                account => context! { name => account.name, reference => account.reference },
            };
            (account.email, account.language, ctx)
        }
        Recipient::UnregisteredSender { address } => (
            address.clone(),
            out.default_language.to_string(),
            context! { desk },
        ),
    };
    let draft = Draft {
        kind,
        language: &language,
        from_name: out.desk_name,
        from_address: out.support_address,
        to: &address,
        context: ctx,
        answering: InReplyTo {
            message_id: incoming.mail.message_id.as_deref(),
            references: &incoming.mail.references,
        },
        unique: &incoming.sha256[..16],
    };
    Ok(compose::compose(out.templates, draft, now).map_err(|e| e.to_string()))
}
