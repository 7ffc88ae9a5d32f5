//! What happens because a message arrived: a pure function of the message, who sent it
//! and the ticket it continues. No I/O, so every policy here is tested directly.

use crate::config::Role;
use crate::desk::{Effect, MailKind, Priority, Recipient};
use crate::identity::Sender;
use crate::mail::ParsedMail;
use crate::store::tickets::TicketRef;

/// Everything [`decide`] may look at.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    pub role: Role,
    pub mail: &'a ParsedMail,
    pub sender: &'a Sender,
    /// The ticket this message continues, if threading found one the sender may join.
    pub ticket: Option<&'a TicketRef>,
    /// Old mail found at the first sync: filed, never answered.
    pub history: bool,
    /// Too large to fetch: only its header is stored, and this is its size in bytes.
    pub oversize: Option<u64>,
}

pub fn decide(inbound: Inbound<'_>) -> Vec<Effect> {
    let Inbound {
        role,
        mail,
        sender,
        ticket,
        history,
        oversize,
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
            priority: Priority::Normal,
        }),
    }
    if let Some(reason) = &mail.malformed {
        effects.push(Effect::FlagForStaff {
            reason: format!("malformed message: {reason}"),
        });
    }
    if let Some(size) = oversize {
        effects.push(Effect::FlagForStaff {
            reason: format!("message of {size} bytes is over the size limit: only its header is stored, the whole message stays on the mail server"),
        });
    }
    if role == Role::Abuse && ticket.is_none() {
        // Abuse reports are triaged by a person until the abuse policy is automated.
        effects.push(Effect::FlagForStaff {
            reason: "abuse report: needs triage".into(),
        });
    }
    if let Some(reply) = acknowledgement(&inbound) {
        effects.push(reply);
    }
    effects
}

/// The automatic answer to a message, or why there is none. `None`: nothing to record.
fn acknowledgement(inbound: &Inbound<'_>) -> Option<Effect> {
    let Inbound {
        role,
        mail,
        sender,
        ticket,
        history,
        ..
    } = *inbound;
    if ticket.is_some() {
        // Only a new ticket is acknowledged; follow-ups are answered by people.
        return None;
    }
    if history {
        return Some(Effect::SuppressReply {
            reason: "imported as history at the mailbox's first sync".into(),
        });
    }
    if let Some(automated) = &mail.automated {
        return Some(Effect::SuppressReply {
            reason: format!("automated message: {automated}"),
        });
    }
    if role == Role::Abuse {
        return Some(Effect::SuppressReply {
            reason: "abuse reports are not acknowledged automatically yet".into(),
        });
    }
    match sender {
        Sender::Customer(account) => Some(Effect::Send {
            kind: MailKind::SupportAck,
            to: Recipient::RegisteredAddress {
                account_id: account.id,
            },
        }),
        Sender::Unregistered(address) => Some(Effect::Send {
            kind: MailKind::UnregisteredNotice,
            to: Recipient::UnregisteredSender {
                address: address.clone(),
            },
        }),
        Sender::Staff { .. } => None,
        Sender::Unknown => Some(Effect::SuppressReply {
            reason: "no address to answer".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::Automated;
    use crate::store::accounts::Account;

    fn mail(from: &str) -> ParsedMail {
        ParsedMail::read(format!("From: {from}\r\nReply-To: elsewhere@evil.example\r\nSubject: Site down\r\n\r\nhelp\r\n").as_bytes(), &[])
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
            role: Role::Support,
            mail,
            sender,
            ticket,
            history: false,
            oversize: None,
        }
    }

    #[test]
    fn new_customer_mail_opens_a_ticket_acknowledged_at_the_registered_address() {
        let m = mail("ann@example.com");
        let effects = decide(inbound(&m, &customer(), None));
        assert_eq!(
            effects,
            vec![
                Effect::OpenTicket {
                    subject: "Site down".into(),
                    priority: Priority::Normal
                },
                Effect::Send {
                    kind: MailKind::SupportAck,
                    to: Recipient::RegisteredAddress { account_id: 7 }
                },
            ]
        );
    }

    #[test]
    fn stranger_gets_the_generic_notice_at_its_own_address() {
        let m = mail("who@else.example");
        let sender = Sender::Unregistered("who@else.example".into());
        let effects = decide(inbound(&m, &sender, None));
        assert_eq!(
            effects[1],
            Effect::Send {
                kind: MailKind::UnregisteredNotice,
                to: Recipient::UnregisteredSender {
                    address: "who@else.example".into()
                }
            }
        );
    }

    #[test]
    fn automated_mail_is_never_answered() {
        let mut m = mail("ann@example.com");
        m.automated = Some(Automated::AutoSubmitted("auto-replied".into()));
        let effects = decide(inbound(&m, &customer(), None));
        assert!(!effects.iter().any(|e| matches!(e, Effect::Send { .. })));
        assert!(effects.iter().any(
            |e| matches!(e, Effect::SuppressReply { reason } if reason.contains("Auto-Submitted"))
        ));
    }

    #[test]
    fn follow_up_joins_and_reopens_without_a_new_ack() {
        let m = mail("ann@example.com");
        let ticket = TicketRef {
            number: 3,
            account_id: Some(7),
            requester: "ann@example.com".into(),
            status: "resolved".into(),
        };
        let effects = decide(inbound(&m, &customer(), Some(&ticket)));
        assert_eq!(
            effects,
            vec![Effect::JoinTicket { number: 3 }, Effect::Reopen]
        );
    }

    #[test]
    fn malformed_mail_is_flagged_and_not_answered() {
        let m = ParsedMail::read(b"Subject: ???\r\n\r\n\x00\x01", &[]);
        let effects = decide(inbound(&m, &Sender::Unknown, None));
        assert!(
            matches!(&effects[1], Effect::FlagForStaff { reason } if reason.contains("no valid From"))
        );
        assert!(matches!(&effects[2], Effect::SuppressReply { .. }));
    }

    #[test]
    fn history_is_filed_but_never_answered() {
        let m = mail("ann@example.com");
        let effects = decide(Inbound {
            history: true,
            ..inbound(&m, &customer(), None)
        });
        assert!(matches!(&effects[0], Effect::OpenTicket { .. }));
        assert!(
            matches!(&effects[1], Effect::SuppressReply { reason } if reason.contains("history"))
        );
        assert_eq!(effects.len(), 2);
    }

    #[test]
    fn oversized_mail_is_flagged_and_still_acknowledged() {
        let m = mail("ann@example.com");
        let effects = decide(Inbound {
            oversize: Some(30_000_000),
            ..inbound(&m, &customer(), None)
        });
        assert!(
            matches!(&effects[1], Effect::FlagForStaff { reason } if reason.contains("30000000 bytes"))
        );
        assert!(matches!(
            &effects[2],
            Effect::Send {
                kind: MailKind::SupportAck,
                ..
            }
        ));
    }

    #[test]
    fn abuse_reports_are_flagged_for_triage() {
        let m = mail("reporter@isp.example");
        let sender = Sender::Unregistered("reporter@isp.example".into());
        let effects = decide(Inbound {
            role: Role::Abuse,
            ..inbound(&m, &sender, None)
        });
        assert!(
            effects
                .iter()
                .any(|e| matches!(e, Effect::FlagForStaff { reason } if reason.contains("abuse")))
        );
        assert!(!effects.iter().any(|e| matches!(e, Effect::Send { .. })));
    }
}
