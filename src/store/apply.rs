//! Writing what [`crate::desk::decide`] decided: the message, its ticket, audit events and
//! outgoing mails, all inside the caller's transaction. Either all of a message's effects
//! are committed, or none are and the message is still waiting at its source.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use rusqlite::{OptionalExtension, Transaction, params};

use super::accounts::Account;
use super::{StoreError, accounts, staff, timestamp};
use crate::compose::variables::{
    CaseVars, ConfirmationVars, DeskVars, IncidentVars, MailFacts, MessageVars, TicketVars,
};
use crate::compose::{self, Composed, Conversation, Draft, InReplyTo, Templates};
use crate::config::Role;
use crate::desk::thread::Threader;
use crate::desk::{Effect, Recipient};
use crate::identity::Sender;
use crate::mail::ParsedMail;

/// How long a customer has to act on an abuse warning before suspension (seed default).
pub const ABUSE_DEADLINE: Duration = Duration::hours(48);

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
    pub desk: &'a DeskVars,
    pub default_language: &'a str,
    /// The provider's time zone, for dates in mails.
    pub zone: Tz,
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
                        ..mail_facts(
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
                            outgoing,
                            now,
                        )?
                    }),
                };
                for (n, address, language) in recipients(tx, to, incoming, outgoing)? {
                    let unique = match n {
                        0 => incoming.sha256[..16].to_string(),
                        n => format!("{}.{n}", &incoming.sha256[..16]),
                    };
                    let draft = Draft {
                        template,
                        language: &language,
                        from_name: &outgoing.desk.name,
                        from_address: from_address(incoming.role, outgoing.desk),
                        to: &address,
                        facts,
                        answering: InReplyTo {
                            message_id: incoming.mail.message_id.as_deref(),
                            references: &incoming.mail.references,
                        },
                        unique: &unique,
                        // Not for mails to a sender: they carry nothing from our
                        // records, not even the ticket's subject.
                        conversation: ticket
                            .zip(facts.ticket.opened)
                            .filter(|_| !matches!(to, Recipient::Sender { .. }))
                            .map(|(n, opened)| Conversation {
                                ticket: n,
                                opened,
                                topic: &facts.ticket.subject,
                            }),
                    };
                    match compose::compose(outgoing.templates, draft, now) {
                        Ok(composed) => {
                            queue(tx, &composed, ticket, &at)?;
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

fn queue(
    tx: &Transaction<'_>,
    composed: &Composed,
    ticket: Option<i64>,
    at: &str,
) -> Result<(), StoreError> {
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
    Ok(())
}

/// Abuse mail is answered from the abuse address, everything else from support.
fn from_address(role: Role, desk: &DeskVars) -> &str {
    match role {
        Role::Support => &desk.support_address,
        Role::Abuse => &desk.abuse_address,
    }
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

/// Who receives a mail to `to`: `(index, address, language)`. Addresses come from the
/// registry, the staff list, or the message's own sender, never from any other header.
fn recipients(
    tx: &Transaction<'_>,
    to: &Recipient,
    incoming: &Incoming<'_>,
    out: &Outgoing<'_>,
) -> Result<Vec<(usize, String, String)>, StoreError> {
    Ok(match to {
        Recipient::RegisteredAddress { account_id } => {
            match accounts::find_by_id(tx, *account_id)? {
                Some(account) => vec![(0, account.email, account.language)],
                None => Vec::new(),
            }
        }
        Recipient::Sender { address } => {
            // The sender's own language if we have its mail in it, else the desk's.
            let language = incoming
                .mail
                .language()
                .filter(|l| out.templates.has_language(l))
                .unwrap_or(out.default_language)
                .to_string();
            vec![(0, address.clone(), language)]
        }
        Recipient::Staff => staff::all(tx)?
            .into_iter()
            .enumerate()
            .map(|(i, email)| (i + 1, email, out.default_language.to_string()))
            .collect(),
    })
}

/// Everything templates may show, read from the ticket as it now stands.
/// `mail` is the message the mail is about, `account` the customer's; `detect_language`
/// whether `message.language` is wanted (for mails to senders and staff).
fn mail_facts(
    tx: &Transaction<'_>,
    mail: &ParsedMail,
    detect_language: bool,
    account: Option<Account>,
    ticket: Option<i64>,
    out: &Outgoing<'_>,
    now: DateTime<Utc>,
) -> Result<MailFacts, StoreError> {
    let row = match ticket {
        Some(n) => tx
            .prepare_cached(
                "SELECT t.subject, t.priority, t.category, t.queue, t.status, t.case_category, t.case_severity,
                        i.name, i.impact, i.status, i.opened_at, i.resolved_at, t.confirmation, t.created_at
                   FROM tickets t LEFT JOIN incidents i ON i.id = t.incident_id
                  WHERE t.number = ?1",
            )?
            .query_row([n], |r| {
                Ok((
                    TicketVars {
                        opened: r
                            .get::<_, String>(13)?
                            .parse::<DateTime<Utc>>()
                            .ok(),
                        number: n,
                        tag: out.threader.subject_tag(n),
                        subject: r.get(0)?,
                        priority: r.get(1)?,
                        category: r.get(2)?,
                        queue: r.get(3)?,
                        status: r.get(4)?,
                    },
                    (r.get::<_, Option<String>>(5)?, r.get::<_, Option<String>>(6)?),
                    IncidentVars {
                        name: r.get(7)?,
                        impact: r.get(8)?,
                        status: r.get(9)?,
                        update: None,
                        started_at: r.get(10)?,
                        resolved_at: r.get(11)?,
                    },
                    r.get::<_, Option<String>>(12)?,
                ))
            })
            .optional()?,
        None => None,
    };
    let (ticket, (case_category, case_severity), incident, confirmation) =
        row.unwrap_or_else(|| {
            (
                TicketVars {
                    opened: None,
                    number: 0,
                    tag: String::new(),
                    subject: mail.subject.clone(),
                    priority: "normal".into(),
                    category: None,
                    queue: None,
                    status: "new".into(),
                },
                (None, None),
                IncidentVars::default(),
                None,
            )
        });
    let local = |t: DateTime<Utc>| {
        t.with_timezone(&out.zone)
            .format("%Y-%m-%d %H:%M %Z")
            .to_string()
    };
    let deadline = case_category.as_ref().map(|_| local(now + ABUSE_DEADLINE));
    Ok(MailFacts {
        desk: out.desk.clone(),
        ticket,
        message: MessageVars {
            subject: mail.subject.clone(),
            from: mail.from.clone(),
            date: local(now),
            // Detecting the language is costly; mails to a customer's account, the
            // bulk of what we send, are written in the account's language anyway.
            language: detect_language
                .then(|| mail.language().map(str::to_string))
                .flatten(),
            text: mail.text.clone(),
        },
        account,
        case: CaseVars {
            category: case_category,
            severity: case_severity,
            deadline,
            outcome: None,
        },
        incident,
        confirmation: ConfirmationVars {
            action: confirmation,
        },
        reason: None,
    })
}

/// One of our mails that was given up (see [`crate::outbox::deliver_due`]).
#[derive(Debug, Clone)]
pub struct GivenUp {
    pub outbox: i64,
    pub ticket: Option<i64>,
    pub recipient: String,
    pub message_id: Option<String>,
    pub error: String,
}

/// Tells every staff member (template `staff_notice`) that a mail of a ticket could not be
/// delivered. Not for mails to staff themselves: an undeliverable alert must not beget
/// another. Returns how many notices were queued.
pub fn alert_staff(
    tx: &Transaction<'_>,
    failed: &GivenUp,
    out: &Outgoing<'_>,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let Some(ticket) = failed.ticket else {
        return Ok(0);
    };
    if staff::all(tx)?.contains(&failed.recipient) {
        return Ok(0);
    }
    // What the ticket is about: its latest message from outside, as received.
    let latest: Option<(Vec<u8>, Option<i64>)> = tx
        .prepare_cached(
            "SELECT m.raw, t.account_id FROM messages m JOIN tickets t ON t.number = m.ticket
              WHERE m.ticket = ?1 AND m.direction = 'in' ORDER BY m.id DESC LIMIT 1",
        )?
        .query_row([ticket], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((raw, account_id)) = latest else {
        return Ok(0);
    };
    let mail = ParsedMail::read(&raw, &[]);
    let account = match account_id {
        Some(id) => accounts::find_by_id(tx, id)?,
        None => None,
    };
    let reason = format!(
        "our mail to {} could not be delivered: {}",
        failed.recipient, failed.error
    );
    let facts = MailFacts {
        reason: Some(reason.clone()),
        ..mail_facts(tx, &mail, true, account, Some(ticket), out, now)?
    };
    let at = timestamp(now);
    let mut queued = 0;
    for (n, address) in staff::all(tx)?.into_iter().enumerate() {
        let unique = format!("undeliverable-{}.{}", failed.outbox, n + 1);
        let draft = Draft {
            template: crate::rules::STAFF_NOTICE,
            language: out.default_language,
            from_name: &out.desk.name,
            from_address: &out.desk.support_address,
            to: &address,
            facts: &facts,
            answering: InReplyTo {
                message_id: failed.message_id.as_deref(),
                references: &[],
            },
            unique: &unique,
            conversation: facts.ticket.opened.map(|opened| Conversation {
                ticket,
                opened,
                topic: &facts.ticket.subject,
            }),
        };
        match compose::compose(out.templates, draft, now) {
            Ok(composed) => {
                queue(tx, &composed, Some(ticket), &at)?;
                exec(
                    tx,
                    "INSERT INTO events (at, ticket, kind, actor, detail) VALUES (?1, ?2, 'staff.alerted', 'system', ?3)",
                    params![at, ticket, format!("{address}: {reason}")],
                )?;
                queued += 1;
            }
            Err(error) => {
                tracing::error!(ticket, %error, "cannot write the undeliverable-mail alert");
            }
        }
    }
    Ok(queued)
}
