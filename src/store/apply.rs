//! Writing what [`crate::desk::decide`] decided: the message, its ticket, audit events and
//! outgoing mails, all inside the caller's transaction. Either all of a message's effects
//! are committed, or none are and the message is still waiting at its source.

use chrono::{DateTime, Utc};
use rusqlite::{Transaction, params};

use super::outgoing::{self, Answer, Outgoing};
use super::{StoreError, exec, timestamp};
use crate::compose::Composed;
use crate::compose::variables::MailFacts;
use crate::config::Role;
use crate::desk::{Effect, Recipient};
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

#[derive(Debug, Clone)]
pub struct Applied {
    pub message: i64,
    pub ticket: Option<i64>,
    /// The mails queued in the outbox.
    pub mails: Vec<Composed>,
}

pub fn apply(
    tx: &Transaction<'_>,
    incoming: &Incoming<'_>,
    effects: &[Effect],
    out: &Outgoing<'_>,
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
    super::tickets::index_for_search(tx, message, mail)?;
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
    let mut mails = Vec::new();
    let mut facts = None;
    let mut flags = Vec::new();
    for effect in effects {
        match effect {
            Effect::OpenTicket { subject } => {
                let sender = incoming.sender;
                exec(tx,
                    "INSERT INTO tickets (account_id, requester, mailbox_role, subject, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                    params![
                        sender.account().map(|a| a.id),
                        mail.from.as_deref().unwrap_or("unknown"),
                        incoming.role.as_str(),
                        subject,
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
                event(ticket, "ticket.opened", &actor, subject)?;
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
            Effect::RuleMatched { rule, reasons } => {
                event(
                    ticket,
                    "rule.matched",
                    "rules",
                    &format!("{rule}: {reasons}"),
                )?;
            }
            Effect::Classify {
                priority,
                category,
                queue,
                tags,
            } => {
                exec(tx,
                    "UPDATE tickets SET priority = coalesce(?1, priority), category = coalesce(?2, category),
                            queue = coalesce(?3, queue), updated_at = ?4
                      WHERE number = ?5",
                    params![priority.map(|p| p.as_str()), category, queue, at, ticket],
                )?;
                for tag in tags {
                    exec(
                        tx,
                        "INSERT OR IGNORE INTO ticket_tags (ticket, tag) VALUES (?1, ?2)",
                        params![ticket, tag],
                    )?;
                }
                event(
                    ticket,
                    "ticket.classified",
                    "rules",
                    &effect.classification(),
                )?;
            }
            Effect::FlagForStaff { reason } => {
                flags.push(reason.as_str());
                flag(tx, ticket, reason, &at)?;
                event(ticket, "ticket.flagged", "system", reason)?;
            }
            Effect::OpenAbuseCase { category, severity } => {
                exec(
                    tx,
                    "UPDATE tickets SET case_category = ?1, case_severity = ?2, updated_at = ?3 WHERE number = ?4",
                    params![category, severity.as_str(), at, ticket],
                )?;
                event(
                    ticket,
                    "case.opened",
                    "rules",
                    &format!("category {category}, severity {}", severity.as_str()),
                )?;
            }
            Effect::AwaitConfirmation { action } => {
                exec(
                    tx,
                    "UPDATE tickets SET confirmation = ?1, status = 'waiting', updated_at = ?2 WHERE number = ?3",
                    params![action, at, ticket],
                )?;
                event(ticket, "confirmation.requested", "rules", action)?;
            }
            Effect::LinkIncident { name } => {
                exec(
                    tx,
                    "INSERT OR IGNORE INTO incidents (name, opened_at) VALUES (?1, ?2)",
                    params![name, at],
                )?;
                exec(
                    tx,
                    "UPDATE tickets SET incident_id = (SELECT id FROM incidents WHERE name = ?1), updated_at = ?2
                      WHERE number = ?3",
                    params![name, at, ticket],
                )?;
                event(ticket, "incident.linked", "rules", name)?;
            }
            Effect::Quarantine { rule } => {
                exec(
                    tx,
                    "UPDATE tickets SET quarantined = 1, updated_at = ?1 WHERE number = ?2",
                    params![at, ticket],
                )?;
                event(
                    ticket,
                    "ticket.quarantined",
                    "rules",
                    &format!("by rule {rule}"),
                )?;
            }
            Effect::Bounced {
                message_id,
                permanent: true,
                reason,
            } => {
                exec(
                    tx,
                    "UPDATE outbox SET bounced_at = ?1, bounce_reason = ?2
                      WHERE message IN (SELECT id FROM messages WHERE direction = 'out' AND message_id = ?3)",
                    params![at, reason, message_id],
                )?;
                event(
                    ticket,
                    "mail.bounced",
                    "system",
                    &format!("<{message_id}>: {reason}"),
                )?;
                // The address we answer at does not work: a person must find another way.
                let why = format!("our mail <{message_id}> could not be delivered: {reason}");
                flag(tx, ticket, &why, &at)?;
            }
            Effect::Bounced {
                message_id,
                permanent: false,
                reason,
            } => {
                event(
                    ticket,
                    "mail.delayed",
                    "system",
                    &format!("<{message_id}>: {reason}"),
                )?;
            }
            Effect::SuppressReply { reason } => {
                event(ticket, "reply.suppressed", "system", reason)?
            }
            Effect::Send { template, to } => {
                // Read once, after the ticket effects: every mail shows the final state.
                let facts = match &mut facts {
                    Some(facts) => facts,
                    None => facts.insert(MailFacts {
                        reason: (!flags.is_empty()).then(|| flags.join("; ")),
                        ..outgoing::facts_about(
                            tx,
                            incoming.mail,
                            effects.iter().any(|e| {
                                matches!(
                                    e,
                                    Effect::Send {
                                        to: Recipient::Sender { .. } | Recipient::Staff,
                                        ..
                                    }
                                )
                            }),
                            incoming.sender.account().cloned(),
                            ticket,
                            out,
                            now,
                        )?
                    }),
                };
                let answer = Answer {
                    role: incoming.role,
                    message_id: incoming.mail.message_id.as_deref(),
                    references: &incoming.mail.references,
                    mail: Some(incoming.mail),
                    sha256: incoming.sha256,
                };
                for written in outgoing::write(tx, template, to, &answer, ticket, facts, out, now)?
                {
                    match written {
                        Ok(composed) => {
                            event(
                                ticket,
                                "mail.queued",
                                "system",
                                &format!("{template} to {}", composed.to),
                            )?;
                            mails.push(composed);
                        }
                        Err(problem) => {
                            let reason = format!("could not write {template}: {problem}");
                            flag(tx, ticket, &reason, &at)?;
                            event(ticket, "ticket.flagged", "system", &reason)?;
                        }
                    }
                }
            }
        }
    }
    Ok(Applied {
        message,
        ticket,
        mails,
    })
}

/// Marks the ticket for staff, adding `reason` to the reasons already there.
pub(super) fn flag(
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
