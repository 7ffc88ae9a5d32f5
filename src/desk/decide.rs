//! What happens because a message arrived: a pure function of the message, who sent it,
//! the ticket it continues and the admin's rules. No I/O, so every policy here is tested
//! directly.
//!
//! Rules choose; code guards. Whatever the rules say, automated mail and history are
//! never answered, a quarantined message is never answered, and each mail goes to the
//! audience its template declares, with the address chosen here from the sender's
//! identity, never from a header.

use serde::Serialize;

use crate::compose::Audience;
use crate::config::{Limits, Role};
use crate::desk::{Effect, Recipient};
use crate::identity::Sender;
use crate::mail::ParsedMail;
use crate::policy::Policy;
use crate::rules::{CONFIRMATION_REQUEST, Evaluation, Facts, STAFF_NOTICE, SenderKind};
use crate::store::tickets::TicketRef;

/// Everything [`decide`] may look at.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    /// The configured mailbox the message came from.
    pub mailbox: &'a str,
    pub role: Role,
    pub mail: &'a ParsedMail,
    pub sender: &'a Sender,
    /// The ticket this message continues, if threading found one the sender may join.
    pub ticket: Option<&'a TicketRef>,
    /// Old mail found at the first sync: filed, never answered.
    pub history: bool,
    /// Too large to fetch: only its header is stored, and this is its size in bytes.
    pub oversize: Option<u64>,
    /// Whether the message arrived inside business hours (see [`super::hours`]).
    pub business_hours: bool,
    /// The Message-ID of our mail this automated message is about (bounce, auto-reply).
    pub reports_on: Option<&'a str>,
    /// Automatic mails already sent within the rate-limit window.
    pub recent: Recent,
    pub limits: Limits,
}

/// Automatic mails (not to staff) queued within the last `limits.window_minutes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recent {
    /// To the sender's address.
    pub to_sender: u32,
    /// On the ticket the message continues.
    pub on_ticket: u32,
}

/// The effects to apply, and the rule evaluation they came from (for `rules test`).
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub effects: Vec<Effect>,
    pub evaluation: Evaluation,
}

pub fn decide(inbound: Inbound<'_>, policy: &Policy) -> Decision {
    let Inbound {
        mail,
        sender,
        ticket,
        history,
        oversize,
        ..
    } = inbound;
    let mut effects = Vec::new();
    match ticket {
        Some(ticket) => {
            effects.push(Effect::JoinTicket {
                number: ticket.number,
            });
            let closed = matches!(ticket.status.as_str(), "resolved" | "closed");
            if closed
                && matches!(sender, Sender::Customer(_))
                && mail.automated.is_none()
                && !history
            {
                effects.push(Effect::Reopen);
            }
        }
        None => effects.push(Effect::OpenTicket {
            subject: if mail.subject.is_empty() {
                "(no subject)".into()
            } else {
                mail.subject.clone()
            },
        }),
    }
    if let Some(reason) = &mail.malformed {
        effects.push(Effect::FlagForStaff {
            reason: format!("malformed message: {reason}"),
        });
    }
    if let (Some(bounce), Some(ours)) = (&mail.bounce, inbound.reports_on) {
        effects.push(Effect::Bounced {
            message_id: ours.to_string(),
            permanent: bounce.permanent,
            reason: bounce.reason.clone(),
        });
    }
    if let Some(size) = oversize {
        effects.push(Effect::FlagForStaff {
            reason: format!("message of {size} bytes is over the size limit: only its header is stored, the whole message stays on the mail server"),
        });
    }
    let evaluation = policy
        .rules
        .evaluate(&facts(&inbound, policy.rules.uses_language()));
    rule_effects(&evaluation, ticket, sender, &mut effects);
    let sends = wanted_mails(&evaluation, sender);
    guard(&inbound, &evaluation, policy, sends, &mut effects);
    Decision {
        effects,
        evaluation,
    }
}

/// What the rules see of a message. The language is only detected (a costly guess)
/// when `with_language`, i.e. when a rule asks for it.
pub fn facts<'a>(inbound: &Inbound<'a>, with_language: bool) -> Facts<'a> {
    let mail = inbound.mail;
    Facts {
        mailbox: inbound.mailbox,
        role: inbound.role,
        sender: match inbound.sender {
            Sender::Customer(_) => SenderKind::Registered,
            Sender::Staff { .. } => SenderKind::Staff,
            Sender::Unverified { .. } => SenderKind::Unverified,
            Sender::Unregistered(_) | Sender::Unknown => SenderKind::Unregistered,
        },
        account_status: inbound.sender.account().map(|a| a.status.as_str()),
        from: mail.from.as_deref(),
        to: &mail.to,
        subject: &mail.subject,
        body: &mail.text,
        headers: &mail.headers,
        has_attachment: mail.attachments > 0,
        language: if with_language { mail.language() } else { None },
        category: inbound.ticket.and_then(|t| t.category.as_deref()),
        business_hours: inbound.business_hours,
        new_ticket: inbound.ticket.is_none(),
    }
}

/// Everything the matched rules set, except mails.
fn rule_effects(
    evaluation: &Evaluation,
    ticket: Option<&TicketRef>,
    sender: &Sender,
    effects: &mut Vec<Effect>,
) {
    for matched in &evaluation.matched {
        effects.push(Effect::RuleMatched {
            rule: matched.locator(),
            reasons: matched
                .reasons
                .iter()
                .map(|r| format!("{} ({:?})", r.condition, r.matched))
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    let old_category = ticket.and_then(|t| t.category.as_deref());
    let category = evaluation
        .category
        .clone()
        .filter(|c| Some(c.as_str()) != old_category);
    if evaluation.priority.is_some()
        || category.is_some()
        || evaluation.queue.is_some()
        || !evaluation.tags.is_empty()
    {
        effects.push(Effect::Classify {
            priority: evaluation.priority,
            category,
            queue: evaluation.queue.clone(),
            tags: evaluation.tags.clone(),
        });
    }
    if let Some(case) = &evaluation.abuse_case {
        effects.push(Effect::OpenAbuseCase {
            category: case.category.clone(),
            severity: case.severity,
        });
    }
    if let Some(name) = &evaluation.link_incident {
        effects.push(Effect::LinkIncident { name: name.clone() });
    }
    for (reason, _) in &evaluation.notify_staff {
        effects.push(Effect::FlagForStaff {
            reason: reason.clone(),
        });
    }
    if let Some((action, rule)) = &evaluation.require_confirmation {
        // Only the holder of the registered address can confirm; anyone else's request
        // waits for nothing, and is recorded as such.
        effects.push(match sender.account() {
            Some(_) => Effect::AwaitConfirmation {
                action: action.clone(),
            },
            None => Effect::SuppressReply {
                reason: format!(
                    "{CONFIRMATION_REQUEST} (rule {rule}): only a registered customer can ask for a change to an account"
                ),
            },
        });
    }
    if let Some(rule) = &evaluation.quarantine {
        effects.push(Effect::Quarantine { rule: rule.clone() });
    }
}

/// The mails the rules ask for, with the rule that asked: (template, rule).
fn wanted_mails<'a>(evaluation: &'a Evaluation, sender: &Sender) -> Vec<(&'a str, &'a str)> {
    let mut wanted: Vec<(&str, &str)> = Vec::new();
    for (_, rule) in &evaluation.notify_staff {
        if !wanted.iter().any(|(t, _)| *t == STAFF_NOTICE) {
            wanted.push((STAFF_NOTICE, rule));
        }
    }
    if let Some((_, rule)) = &evaluation.require_confirmation
        && sender.account().is_some()
    {
        wanted.push((CONFIRMATION_REQUEST, rule));
    }
    for (template, rule) in &evaluation.replies {
        if !wanted.iter().any(|(t, _)| t == template) {
            wanted.push((template, rule));
        }
    }
    wanted
}

/// Why a wanted mail is not sent.
enum Hold {
    /// By the reason recorded once for the whole message (history, automated mail).
    Explained,
    Because(String),
}

/// Turns wanted mails into `Send` effects, or into `SuppressReply` with the reason a
/// mail must not go out. Automated mail is never answered, but staff are still told
/// (most abuse reports are automated, and a notice to staff cannot start a loop).
/// History sends nothing at all: years of old mail must not become a flood of notices.
/// Quarantine and `suppress_reply` hold back answers; staff are still told.
fn guard(
    inbound: &Inbound<'_>,
    evaluation: &Evaluation,
    policy: &Policy,
    wanted: Vec<(&str, &str)>,
    effects: &mut Vec<Effect>,
) {
    let mail = inbound.mail;
    let blanket = if inbound.history {
        Some("imported as history at the mailbox's first sync".to_string())
    } else {
        mail.automated
            .as_ref()
            .map(|automated| format!("automated message: {automated}"))
    };
    if let Some(reason) = &blanket
        && !wanted.is_empty()
    {
        // Once for the message, whatever the rules wanted to send.
        effects.push(Effect::SuppressReply {
            reason: reason.clone(),
        });
    }
    let limits = inbound.limits;
    let mut to_sender = inbound.recent.to_sender;
    // The ticket had its automatic answers for this window: a follow-up gets none.
    let ticket_limited = inbound.ticket.is_some() && inbound.recent.on_ticket >= limits.per_ticket;
    for (template, rule) in wanted {
        let audience = policy.templates.audience(template);
        let to = match audience {
            Some(Audience::Staff) => Ok(Recipient::Staff),
            Some(Audience::Account) => match inbound.sender.account() {
                Some(account) => Ok(Recipient::RegisteredAddress {
                    account_id: account.id,
                }),
                None => Err(format!(
                    "{template} goes to an account's registered address, and the sender is not a registered customer"
                )),
            },
            Some(Audience::Sender) => match inbound.sender.address() {
                Some(address) => Ok(Recipient::Sender {
                    address: address.to_string(),
                }),
                None => Err(format!("{template}: no address to answer")),
            },
            None => Err(format!("{template}: no such template")),
        };
        let to_staff = audience == Some(Audience::Staff);
        let hold = if inbound.history || (blanket.is_some() && !to_staff) {
            Some(Hold::Explained)
        } else if to_staff {
            None
        } else if let Some(by) = &evaluation.quarantine {
            Some(Hold::Because(format!(
                "{template}: quarantined by rule {by}"
            )))
        } else {
            evaluation.suppress_reply.as_ref().map(|by| {
                Hold::Because(format!(
                    "{template}: suppressed by rule {by} (asked for by rule {rule})"
                ))
            })
        };
        let hold = hold.or_else(|| {
            if to_staff || to.is_err() {
                None
            } else if ticket_limited {
                Some(Hold::Because(format!(
                    "{template}: rate limit, this ticket already had {} automatic mail(s) in the last {} minutes (limit {})",
                    inbound.recent.on_ticket, limits.window_minutes, limits.per_ticket
                )))
            } else if to_sender >= limits.per_address {
                Some(Hold::Because(format!(
                    "{template}: rate limit, {to_sender} automatic mail(s) to this address in the last {} minutes (limit {})",
                    limits.window_minutes, limits.per_address
                )))
            } else {
                to_sender += 1;
                None
            }
        });
        match (hold, to) {
            (Some(Hold::Explained), _) => {}
            (Some(Hold::Because(reason)), _) | (None, Err(reason)) => {
                effects.push(Effect::SuppressReply { reason })
            }
            (None, Ok(to)) => effects.push(Effect::Send {
                template: template.to_string(),
                to,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The guards, on the default rules and templates shipped in the repository.
    use super::*;
    use crate::mail::Automated;
    use crate::policy::PolicyFiles;
    use crate::store::accounts::Account;

    fn policy() -> Policy {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let files = PolicyFiles {
            rules_dir: root.join("rules"),
            templates_dir: root.join("templates"),
        };
        let (policy, problems) = files.load();
        policy.unwrap_or_else(|| panic!("default policy: {problems:#?}"))
    }

    fn mail(from: &str) -> ParsedMail {
        ParsedMail::read(format!("From: {from}\r\nReply-To: elsewhere@evil.example\r\nSubject: Question about my invoice\r\n\r\nhelp\r\n").as_bytes(), &[])
    }

    fn customer() -> Sender {
        Sender::Customer(Account {
            id: 7,
            reference: "C7".into(),
            email: "ann@example.com".into(),
            name: "Ann".into(),
            language: "en".into(),
            status: "active".into(),
            details_valid: true,
        })
    }

    fn inbound<'a>(
        mail: &'a ParsedMail,
        sender: &'a Sender,
        ticket: Option<&'a TicketRef>,
    ) -> Inbound<'a> {
        Inbound {
            mailbox: "support",
            role: Role::Support,
            mail,
            sender,
            ticket,
            history: false,
            oversize: None,
            business_hours: true,
            reports_on: None,
            recent: Recent::default(),
            limits: Limits::default(),
        }
    }

    fn sends(effects: &[Effect]) -> Vec<(&str, &Recipient)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send { template, to } => Some((template.as_str(), to)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn new_customer_mail_is_acknowledged_at_the_registered_address() {
        let m = mail("ann@example.com");
        let d = decide(inbound(&m, &customer(), None), &policy());
        assert_eq!(
            d.effects[0],
            Effect::OpenTicket {
                subject: "Question about my invoice".into()
            }
        );
        assert_eq!(
            sends(&d.effects),
            vec![(
                "support_ack",
                &Recipient::RegisteredAddress { account_id: 7 }
            )]
        );
    }

    #[test]
    fn stranger_gets_the_generic_notice_at_its_own_address() {
        let m = mail("who@else.example");
        let sender = Sender::Unregistered("who@else.example".into());
        let d = decide(inbound(&m, &sender, None), &policy());
        assert_eq!(
            sends(&d.effects),
            vec![(
                "unregistered_notice",
                &Recipient::Sender {
                    address: "who@else.example".into()
                }
            )]
        );
    }

    #[test]
    fn automated_mail_is_never_answered_but_staff_hear_of_it() {
        let mut m = ParsedMail::read(
            b"From: ann@example.com\r\nSubject: Site down\r\n\r\nauto\r\n",
            &[],
        );
        m.automated = Some(Automated::AutoSubmitted("auto-replied".into()));
        let d = decide(inbound(&m, &customer(), None), &policy());
        // The rules still classify it (urgent, notify staff) ...
        assert!(
            d.effects
                .iter()
                .any(|e| matches!(e, Effect::Classify { .. }))
        );
        // ... staff are told, the sender is not answered, and the reason is recorded once.
        assert_eq!(
            sends(&d.effects),
            vec![("staff_notice", &Recipient::Staff)],
            "{:#?}",
            d.effects
        );
        let suppressed: Vec<_> = d
            .effects
            .iter()
            .filter(|e| matches!(e, Effect::SuppressReply { .. }))
            .collect();
        assert_eq!(suppressed.len(), 1);
        assert!(
            matches!(suppressed[0], Effect::SuppressReply { reason } if reason.contains("Auto-Submitted"))
        );
    }

    #[test]
    fn follow_up_joins_and_reopens_without_a_new_ack() {
        let m = mail("ann@example.com");
        let ticket = TicketRef {
            number: 3,
            account_id: Some(7),
            requester: "ann@example.com".into(),
            status: "resolved".into(),
            category: None,
        };
        let d = decide(inbound(&m, &customer(), Some(&ticket)), &policy());
        assert_eq!(
            d.effects,
            vec![Effect::JoinTicket { number: 3 }, Effect::Reopen]
        );
    }

    #[test]
    fn malformed_mail_is_flagged_and_not_answered() {
        let m = ParsedMail::read(b"Subject: ???\r\n\r\n\x00\x01", &[]);
        let d = decide(inbound(&m, &Sender::Unknown, None), &policy());
        assert!(
            matches!(&d.effects[1], Effect::FlagForStaff { reason } if reason.contains("no valid From"))
        );
        assert!(sends(&d.effects).is_empty());
        assert!(d.effects.iter().any(
            |e| matches!(e, Effect::SuppressReply { reason } if reason.contains("no address"))
        ));
    }

    #[test]
    fn history_is_filed_but_never_answered() {
        let m = mail("ann@example.com");
        let d = decide(
            Inbound {
                history: true,
                ..inbound(&m, &customer(), None)
            },
            &policy(),
        );
        assert!(matches!(&d.effects[0], Effect::OpenTicket { .. }));
        assert!(sends(&d.effects).is_empty());
        assert!(
            d.effects.iter().any(
                |e| matches!(e, Effect::SuppressReply { reason } if reason.contains("history"))
            )
        );
    }

    #[test]
    fn oversized_mail_is_flagged_and_still_acknowledged() {
        let m = mail("ann@example.com");
        let d = decide(
            Inbound {
                oversize: Some(30_000_000),
                ..inbound(&m, &customer(), None)
            },
            &policy(),
        );
        assert!(
            matches!(&d.effects[1], Effect::FlagForStaff { reason } if reason.contains("30000000 bytes"))
        );
        assert_eq!(sends(&d.effects)[0].0, "support_ack");
    }

    #[test]
    fn automatic_mails_stop_at_the_rate_limits() {
        let m = mail("ann@example.com");
        let limited = |recent: Recent, ticket: Option<&TicketRef>| {
            let d = decide(
                Inbound {
                    recent,
                    ..inbound(&m, &customer(), ticket)
                },
                &policy(),
            );
            (
                sends(&d.effects).len(),
                d.effects
                    .iter()
                    .filter_map(|e| match e {
                        Effect::SuppressReply { reason } => Some(reason.clone()),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            )
        };
        let four = Recent {
            to_sender: 4,
            on_ticket: 0,
        };
        assert_eq!(
            limited(four, None),
            (1, vec![]),
            "the fifth mail in the hour goes"
        );
        let five = Recent {
            to_sender: 5,
            on_ticket: 0,
        };
        let (sent, why) = limited(five, None);
        assert_eq!(sent, 0);
        assert!(
            why[0].contains(
                "rate limit, 5 automatic mail(s) to this address in the last 60 minutes (limit 5)"
            ),
            "{why:?}"
        );
    }

    #[test]
    fn unverified_sender_gets_no_account_mail() {
        let m = mail("ann@example.com");
        let sender = Sender::Unverified {
            address: "ann@example.com".into(),
            failure: "dmarc=fail".into(),
        };
        let d = decide(inbound(&m, &sender, None), &policy());
        assert_eq!(sends(&d.effects)[0].0, "unregistered_notice");
    }

    #[test]
    fn abuse_reports_open_a_case_ack_the_reporter_and_tell_staff() {
        let m = mail("reporter@isp.example");
        let sender = Sender::Unregistered("reporter@isp.example".into());
        let d = decide(
            Inbound {
                role: Role::Abuse,
                mailbox: "abuse",
                ..inbound(&m, &sender, None)
            },
            &policy(),
        );
        assert!(
            d.effects
                .iter()
                .any(|e| matches!(e, Effect::OpenAbuseCase { .. }))
        );
        assert_eq!(
            sends(&d.effects),
            vec![
                ("staff_notice", &Recipient::Staff),
                (
                    "abuse_ack",
                    &Recipient::Sender {
                        address: "reporter@isp.example".into()
                    }
                )
            ]
        );
    }
}
