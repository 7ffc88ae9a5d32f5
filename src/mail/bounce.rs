//! Bounces: delivery status notifications (RFC 3464) and the free-form failure notices
//! older servers send. We read which of our mails a machine writes about, and whether
//! the address failed for good, so the outbox row can say "bounced" and staff can see it.

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

/// A report that one of our mails could not be delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bounce {
    /// The address failed for good (status 5.x.x); otherwise a delay or a temporary
    /// failure, which the sending server keeps retrying.
    pub permanent: bool,
    /// Status code and diagnostic, or the notice's subject.
    pub reason: String,
}

static STATUS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?im)^[ \t]*Status:[ \t]*([245])\.(\d{1,3})\.(\d{1,3})").expect("constant pattern")
});
static ACTION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?im)^[ \t]*Action:[ \t]*([a-z]+)").expect("constant pattern"));
static DIAGNOSTIC: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?im)^[ \t]*Diagnostic-Code:[ \t]*(?:[a-z0-9-]+[ \t]*;)?[ \t]*(.+)$")
        .expect("constant pattern")
});
/// Subjects of failure notices without a machine-readable part, in the languages mail
/// servers write them in.
static FAILURE_SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(undeliver|undelivered|delivery (status notification|failure|problem)|returned mail|failure notice|mail delivery failed|non recapitabile|non remis|unzustellbar|no entregado)")
        .expect("constant pattern")
});
static DELAY_WORDS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(delayed|will (retry|keep trying)|temporar|warning)")
        .expect("constant pattern")
});

/// Reads a bounce out of an automated message: `report_type` is the report-type of a
/// multipart/report, `robot` whether the sender is MAILER-DAEMON or postmaster.
pub fn read(raw: &[u8], subject: &str, report_type: Option<&str>, robot: bool) -> Option<Bounce> {
    let is_dsn = report_type.is_some_and(|t| t.eq_ignore_ascii_case("delivery-status"));
    if !(is_dsn || robot || FAILURE_SUBJECT.is_match(subject)) {
        return None;
    }
    let text = String::from_utf8_lossy(raw);
    let status = STATUS.captures(&text);
    let action = ACTION.captures(&text).map(|c| c[1].to_ascii_lowercase());
    let diagnostic = DIAGNOSTIC.captures(&text).map(|c| c[1].trim().to_string());
    let permanent = match (&status, action.as_deref()) {
        (Some(s), _) => &s[1] == "5",
        (None, Some(action)) => action == "failed",
        (None, None) => !DELAY_WORDS.is_match(subject),
    };
    let reason = match (&status, diagnostic) {
        (Some(s), Some(d)) => format!("status {}.{}.{}: {d}", &s[1], &s[2], &s[3]),
        (Some(s), None) => format!("status {}.{}.{}", &s[1], &s[2], &s[3]),
        (None, Some(d)) => d,
        (None, None) => subject.to_string(),
    };
    Some(Bounce {
        permanent,
        reason: crate::mail::single_line(&reason),
    })
}

/// Message-IDs on one of `domains` mentioned anywhere in `raw`: a DSN carries the
/// original's header, an auto-reply its In-Reply-To, many bounces quote the whole mail.
pub fn mentioned_ids(raw: &[u8], domains: &[String]) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let lower = text.to_ascii_lowercase();
    let mut found: Vec<String> = Vec::new();
    for domain in domains {
        let needle = format!("@{domain}>");
        for (end, _) in lower.match_indices(&needle) {
            let Some(start) = lower[..end].rfind('<') else {
                continue;
            };
            let local = &text[start + 1..end];
            if local.is_empty() || local.contains(|c: char| c.is_whitespace() || c == '>') {
                continue;
            }
            // The local part as written (it is case-sensitive), the domain as ours.
            let id = format!("{local}@{domain}");
            if !found.contains(&id) {
                found.push(id);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dsn_gives_status_and_diagnostic() {
        let raw = b"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\nFinal-Recipient: rfc822; ann@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 <ann@example.com>: user unknown\r\n";
        let b = read(
            raw,
            "Undelivered Mail Returned to Sender",
            Some("delivery-status"),
            true,
        )
        .unwrap();
        assert!(b.permanent);
        assert_eq!(
            b.reason,
            "status 5.1.1: 550 5.1.1 <ann@example.com>: user unknown"
        );
    }

    #[test]
    fn a_delay_is_not_permanent() {
        let raw = b"Action: delayed\r\nStatus: 4.4.7\r\n";
        let b = read(
            raw,
            "Delayed Mail (still being retried)",
            Some("delivery-status"),
            true,
        )
        .unwrap();
        assert!(!b.permanent);
        let b = read(b"no fields", "Warning: message delayed", None, true).unwrap();
        assert!(!b.permanent);
    }

    #[test]
    fn an_ordinary_auto_reply_is_no_bounce() {
        assert_eq!(read(b"I am away", "Out of office", None, false), None);
    }

    #[test]
    fn our_ids_are_found_wherever_they_are_quoted() {
        let raw = b"Message-ID: <support-ack.0123456789abcdef@Desk.Example>\r\n> In-Reply-To: <x@elsewhere.example>\r\nReferences: <staff-notice.aa.1@desk.example>";
        assert_eq!(
            mentioned_ids(raw, &["desk.example".to_string()]),
            vec![
                "support-ack.0123456789abcdef@desk.example",
                "staff-notice.aa.1@desk.example"
            ]
        );
    }
}
