//! The variables a template sees. One function builds them for real mails and for the
//! test render at load time, so `maildesk check` knows exactly what a mail will offer.
//! Which ones exist depends on the template's [`Audience`]: `account` only where the mail
//! goes to the account's registered address (or to staff), so a mail to an unregistered
//! sender or an abuse reporter cannot disclose customer data, whatever its author writes.

use minijinja::Value;
use minijinja::value::Serde;
use serde::Serialize;

use super::Audience;
use crate::store::accounts::Account;

/// Everything known when a mail is written; see README, section Templates.
#[derive(Debug, Clone, Serialize)]
pub struct MailFacts {
    pub desk: DeskVars,
    pub ticket: TicketVars,
    pub message: MessageVars,
    #[serde(skip)]
    pub account: Option<Account>,
    pub case: CaseVars,
    pub incident: IncidentVars,
    pub confirmation: ConfirmationVars,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeskVars {
    pub name: String,
    pub support_address: String,
    pub abuse_address: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TicketVars {
    /// When the ticket was opened; for the conversation headers, not a variable.
    #[serde(skip)]
    pub opened: Option<chrono::DateTime<chrono::Utc>>,
    pub number: i64,
    pub tag: String,
    pub subject: String,
    pub priority: String,
    pub category: Option<String>,
    pub queue: Option<String>,
    pub status: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct MessageVars {
    pub subject: String,
    pub from: Option<String>,
    pub date: String,
    pub language: Option<String>,
    /// Only staff see the text of the message.
    #[serde(skip)]
    pub text: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CaseVars {
    pub category: Option<String>,
    pub severity: Option<String>,
    pub deadline: Option<String>,
    pub outcome: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct IncidentVars {
    pub name: Option<String>,
    pub impact: Option<String>,
    pub status: Option<String>,
    pub update: Option<String>,
    pub started_at: Option<String>,
    pub resolved_at: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ConfirmationVars {
    pub action: Option<String>,
}

#[derive(Serialize)]
struct AccountVars<'a> {
    name: Option<&'a str>,
    reference: Option<&'a str>,
    email: Option<&'a str>,
    language: Option<&'a str>,
    status: Option<&'a str>,
}

impl<'a> AccountVars<'a> {
    fn of(account: Option<&'a Account>) -> Self {
        Self {
            name: account.map(|a| a.name.as_str()),
            reference: account.map(|a| a.reference.as_str()),
            email: account.map(|a| a.email.as_str()),
            language: account.map(|a| a.language.as_str()),
            status: account.map(|a| a.status.as_str()),
        }
    }
}

impl MailFacts {
    /// The template context for a mail to `audience`.
    pub fn context(&self, audience: Audience) -> Value {
        let base = value(self);
        let extra = match audience {
            Audience::Sender => return base,
            Audience::Account => minijinja::context! {
                account => value(AccountVars::of(self.account.as_ref())),
            },
            Audience::Staff => minijinja::context! {
                account => value(AccountVars::of(self.account.as_ref())),
                message => minijinja::context! { text => &self.message.text, ..value(&self.message) },
            },
        };
        minijinja::context! { ..extra, ..base }
    }

    /// [`MailFacts::sample`] with every optional field empty: a template must read well,
    /// and print no "none", for a ticket without category, a message without a detected
    /// language, a staff notice about a stranger (no account)...
    pub fn sample_sparse(audience: Audience) -> MailFacts {
        let full = MailFacts::sample();
        MailFacts {
            ticket: TicketVars {
                category: None,
                queue: None,
                ..full.ticket
            },
            message: MessageVars {
                // Only a staff notice can be about a message without a usable From.
                from: match audience {
                    Audience::Staff => None,
                    Audience::Account | Audience::Sender => full.message.from.clone(),
                },
                language: None,
                ..full.message
            },
            // Mails to an account always have one; staff notices may be about a stranger.
            account: match audience {
                Audience::Staff => None,
                Audience::Account | Audience::Sender => full.account.clone(),
            },
            case: CaseVars::default(),
            incident: IncidentVars::default(),
            confirmation: ConfirmationVars::default(),
            reason: None,
            ..full
        }
    }

    /// Made-up values for every variable, for the test render of each template.
    pub fn sample() -> MailFacts {
        let some = |s: &str| Some(s.to_string());
        MailFacts {
            desk: DeskVars {
                name: "Example Hosting".into(),
                support_address: "support@example.net".into(),
                abuse_address: "abuse@example.net".into(),
            },
            ticket: TicketVars {
                opened: None,
                number: 1,
                tag: "[EX #1]".into(),
                subject: "Website down".into(),
                priority: "urgent".into(),
                category: some("outage"),
                queue: some("hosting"),
                status: "open".into(),
            },
            message: MessageVars {
                subject: "Website down".into(),
                from: some("customer@example.com"),
                date: "Mon, 23 Nov 2026 10:00:00 +0100".into(),
                language: some("en"),
                text: "Our website has been down since this morning.".into(),
            },
            account: Some(Account {
                id: 1,
                reference: "C1".into(),
                email: "customer@example.com".into(),
                name: "Example Customer".into(),
                language: "en".into(),
                status: "active".into(),
                details_valid: true,
            }),
            case: CaseVars {
                category: some("spam"),
                severity: some("high"),
                deadline: some("2026-11-25 10:00 CET"),
                outcome: some("The offending content was removed."),
            },
            incident: IncidentVars {
                name: some("mail-cluster-2"),
                impact: some("Mail delivery is delayed"),
                status: some("investigating"),
                update: some("A faulty disk was replaced."),
                started_at: some("2026-11-23 09:40 CET"),
                resolved_at: some("2026-11-23 12:10 CET"),
            },
            confirmation: ConfirmationVars {
                action: some("change the registered address"),
            },
            reason: some("service fully down"),
        }
    }
}

fn value(x: impl Serialize) -> Value {
    Value::from(Serde(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(ctx: &Value, path: &[&str]) -> bool {
        let mut value = ctx.clone();
        for key in path {
            match value.get_attr(key) {
                Ok(v) if !v.is_undefined() => value = v,
                _ => return false,
            }
        }
        true
    }

    #[test]
    fn only_account_and_staff_mails_see_the_account() {
        let facts = MailFacts::sample();
        let sender = facts.context(Audience::Sender);
        assert!(has(&sender, &["ticket", "tag"]));
        assert!(!has(&sender, &["account"]));
        assert!(!has(&sender, &["message", "text"]));
        let account = facts.context(Audience::Account);
        assert!(has(&account, &["account", "name"]));
        assert!(!has(&account, &["message", "text"]));
        let staff = facts.context(Audience::Staff);
        assert!(has(&staff, &["account", "reference"]));
        assert!(has(&staff, &["message", "text"]));
        assert!(has(&staff, &["message", "subject"]));
    }
}
