//! Writing our mails into the outbox: who receives each (from the registry, the staff
//! list or the message's own sender, never from another header), what its template
//! sees, and the rows that the outbox worker delivers. Runs inside the caller's
//! transaction, like everything in [`super::apply`].

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use rusqlite::{OptionalExtension, Transaction, params};

use super::accounts::Account;
use super::{StoreError, accounts, exec, staff, timestamp};
use crate::compose::variables::{
    CaseVars, ConfirmationVars, DeskVars, IncidentVars, MailFacts, MessageVars, TicketVars,
};
use crate::compose::{self, Composed, Conversation, Draft, InReplyTo, Templates};
use crate::config::Role;
use crate::desk::Recipient;
use crate::desk::thread::Threader;
use crate::mail::ParsedMail;
use crate::rules::STAFF_NOTICE;

/// How long a customer has to act on an abuse warning before suspension (seed default).
pub const ABUSE_DEADLINE: Duration = Duration::hours(48);

/// What outgoing mails are made from.
pub struct Outgoing<'a> {
    pub templates: &'a Templates,
    pub threader: &'a Threader,
    pub desk: &'a DeskVars,
    pub default_language: &'a str,
    /// The provider's time zone, for dates in mails.
    pub zone: Tz,
}

pub(super) fn queue(
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
        "INSERT INTO outbox (message, ticket, queued_at, envelope_from, recipient, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?3)",
        params![out, ticket, at, composed.from, composed.to],
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

/// Who receives a mail to `to`: `(index, address, language)`. Addresses come from the
/// registry, the staff list, or the message's own sender, never from any other header.
fn recipients(
    tx: &Transaction<'_>,
    to: &Recipient,
    answer: &Answer<'_>,
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
            let language = answer
                .mail
                .and_then(ParsedMail::language)
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
pub(super) fn facts_about(
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
    if staff::is_staff(tx, &failed.recipient)? {
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
    let at = timestamp(now);
    let notice = StaffNotice {
        ticket: Some(ticket),
        about: &mail,
        account,
        reason: reason.clone(),
        // Stable per given-up mail, so a notice re-written after a crash is the same mail.
        key: crate::sha256_hex(format!("undeliverable {}", failed.outbox).as_bytes()),
        message_id: failed.message_id.as_deref(),
    };
    let mut queued = 0;
    let notices = notify_staff(tx, notice, out, now)?;
    for notice in notices {
        match notice {
            Ok(composed) => {
                exec(
                    tx,
                    "INSERT INTO events (at, ticket, kind, actor, detail) VALUES (?1, ?2, 'staff.alerted', 'system', ?3)",
                    params![at, ticket, format!("{}: {reason}", composed.to)],
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

/// A `staff_notice` to every staff member that answers no message of theirs: about a
/// ticket, or about a matter of its own (then `about` describes it and `ticket` is none).
pub struct StaffNotice<'a> {
    pub ticket: Option<i64>,
    /// The mail the notice is about: its subject, sender and text are shown.
    pub about: &'a ParsedMail,
    pub account: Option<Account>,
    pub reason: String,
    /// Makes the Message-IDs stable: the same notice written again is the same mail.
    pub key: String,
    /// The Message-ID the notice refers to, if any.
    pub message_id: Option<&'a str>,
}

/// Queues `notice` for every staff member; a notice that cannot be written is an `Err`.
pub fn notify_staff(
    tx: &Transaction<'_>,
    notice: StaffNotice<'_>,
    out: &Outgoing<'_>,
    now: DateTime<Utc>,
) -> Result<Vec<Result<Composed, String>>, StoreError> {
    let facts = MailFacts {
        reason: Some(notice.reason),
        ..facts_about(
            tx,
            notice.about,
            true,
            notice.account,
            notice.ticket,
            out,
            now,
        )?
    };
    let answer = Answer {
        role: Role::Support,
        message_id: notice.message_id,
        references: &[],
        mail: None,
        sha256: &notice.key,
    };
    write(
        tx,
        STAFF_NOTICE,
        &Recipient::Staff,
        &answer,
        notice.ticket,
        &facts,
        out,
        now,
    )
}

/// The message a mail answers: its threading headers, language and content hash.
pub struct Answer<'a> {
    pub role: Role,
    pub message_id: Option<&'a str>,
    pub references: &'a [String],
    /// The message itself, when there is one: a mail to its sender is written in its
    /// language when we can (detected only then: it is costly).
    pub mail: Option<&'a ParsedMail>,
    /// Makes each Message-ID stable: the same message gives the same mail after a crash.
    pub sha256: &'a str,
}

/// Writes `template` for every recipient of `to` and queues each. A mail that cannot be
/// written is an `Err` with the problem, for the caller to tell staff; the outer error
/// is the database's.
#[allow(clippy::too_many_arguments)]
pub fn write(
    tx: &Transaction<'_>,
    template: &str,
    to: &Recipient,
    answer: &Answer<'_>,
    ticket: Option<i64>,
    facts: &MailFacts,
    out: &Outgoing<'_>,
    now: DateTime<Utc>,
) -> Result<Vec<Result<Composed, String>>, StoreError> {
    let at = timestamp(now);
    let mut written = Vec::new();
    for (n, address, language) in recipients(tx, to, answer, out)? {
        let unique = match n {
            0 => answer.sha256[..16].to_string(),
            n => format!("{}.{n}", &answer.sha256[..16]),
        };
        let draft = Draft {
            template,
            language: &language,
            from_name: &out.desk.name,
            from_address: from_address(answer.role, out.desk),
            to: &address,
            facts,
            answering: InReplyTo {
                message_id: answer.message_id,
                references: answer.references,
            },
            unique: &unique,
            // Not for mails to a sender: they carry nothing from our records, not even
            // the ticket's subject.
            conversation: ticket
                .zip(facts.ticket.opened)
                .filter(|_| !matches!(to, Recipient::Sender { .. }))
                .map(|(n, opened)| Conversation {
                    ticket: n,
                    opened,
                    topic: &facts.ticket.subject,
                }),
        };
        written.push(match compose::compose(out.templates, draft, now) {
            Ok(composed) => {
                queue(tx, &composed, ticket, &at)?;
                Ok(composed)
            }
            Err(problem) => Err(problem.to_string()),
        });
    }
    Ok(written)
}
