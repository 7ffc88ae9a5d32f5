//! Reading an incoming message: the facts the rest of the pipeline needs, taken once from
//! the raw bytes. The raw bytes themselves are stored untouched; this is only a view.

mod auth;
mod automated;
pub mod bounce;
mod language;

use std::sync::OnceLock;

use mail_parser::{Address, HeaderValue, Message, MessageParser, MimeHeaders};

pub use automated::Automated;
pub use bounce::Bounce;

/// What maildesk knows about one incoming message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedMail {
    /// Without angle brackets, as found (case kept: Message-IDs are case-sensitive).
    pub message_id: Option<String>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    /// Normalised From address (see [`normalize_address`]).
    pub from: Option<String>,
    /// Normalised To and Cc addresses.
    pub to: Vec<String>,
    pub subject: String,
    /// Every header field as `(lower-case name, value on one line)`, for rules. Values the
    /// parser decodes as text (Subject, Comments...) are decoded; others are as written.
    pub headers: Vec<(String, String)>,
    pub attachments: usize,
    /// ISO 639-1 code of the language, when it can be told: see [`ParsedMail::language`].
    /// Detecting it costs more than the rest of reading a message, and most messages never
    /// need it, so it is found on first use.
    language: OnceLock<Option<String>>,
    /// Set when the receiving server reported failed authentication (`dmarc=fail`...):
    /// the From address is then not proof of who wrote the message.
    pub auth_failed: Option<String>,
    /// The first text body (HTML converted by the parser when there is no text part).
    pub text: String,
    /// Set when the message cannot be handled automatically and needs a person.
    pub malformed: Option<String>,
    /// Set when the message was sent by a machine and must never be answered.
    pub automated: Option<Automated>,
    /// For automated mail: Message-IDs on our domains it mentions (the mail of ours it
    /// bounces or answers), wherever they appear.
    pub mentions: Vec<String>,
    /// For automated mail: the failure it reports, if it is a bounce.
    pub bounce: Option<Bounce>,
}

impl ParsedMail {
    /// Reads `raw`; never fails: what cannot be read is reported in `malformed`.
    /// `own_addresses` are the desk's addresses: mail from them is a loop, not a customer.
    pub fn read(raw: &[u8], own_addresses: &[String]) -> ParsedMail {
        let normalized = cr_only_to_crlf(raw);
        let raw = normalized.as_deref().unwrap_or(raw);
        let Some(message) = MessageParser::default().parse(raw) else {
            return ParsedMail {
                message_id: None,
                in_reply_to: Vec::new(),
                references: Vec::new(),
                from: None,
                to: Vec::new(),
                subject: String::new(),
                headers: Vec::new(),
                attachments: 0,
                language: OnceLock::new(),
                auth_failed: None,
                text: String::from_utf8_lossy(raw).into_owned(),
                malformed: Some("no header could be read".into()),
                automated: None,
                mentions: Vec::new(),
                bounce: None,
            };
        };
        let from = message
            .from()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .map(normalize_address)
            .filter(|a| is_plausible_address(a));
        let malformed = if from.is_none() {
            Some("no valid From address".to_string())
        } else {
            None
        };
        let automated = automated::detect(&message, from.as_deref(), own_addresses);
        let subject = message.subject().map(single_line).unwrap_or_default();
        let (mentions, bounce) = match &automated {
            Some(_) => {
                let domains: Vec<String> = own_addresses
                    .iter()
                    .filter_map(|a| a.rsplit_once('@').map(|(_, d)| d.to_string()))
                    .collect();
                let report_type = message
                    .content_type()
                    .filter(|ct| {
                        ct.subtype()
                            .is_some_and(|s| s.eq_ignore_ascii_case("report"))
                    })
                    .and_then(|ct| ct.attribute("report-type"));
                let robot = from.as_deref().is_some_and(automated::is_robot);
                (
                    bounce::mentioned_ids(raw, &domains),
                    bounce::read(raw, &subject, report_type, robot),
                )
            }
            None => (Vec::new(), None),
        };
        let text = message
            .body_text(0)
            .map(|t| t.into_owned())
            .unwrap_or_default();
        let headers = headers(&message);
        ParsedMail {
            message_id: message
                .message_id()
                .map(|id| id.chars().filter(|c| !c.is_whitespace()).collect()),
            in_reply_to: ids(message.in_reply_to()),
            references: ids(message.references()),
            from,
            to: [message.to(), message.cc()]
                .into_iter()
                .flatten()
                .flat_map(Address::iter)
                .filter_map(|a| a.address())
                .map(normalize_address)
                .collect(),
            language: OnceLock::new(),
            auth_failed: auth::failure(
                headers
                    .iter()
                    .filter(|(name, _)| name == "authentication-results")
                    .map(|(_, value)| value.as_str()),
            ),
            attachments: message.attachment_count(),
            headers,
            subject,
            text,
            malformed,
            automated,
            mentions,
            bounce,
        }
    }

    /// The language the message is written in (ISO 639-1), when it can be told.
    pub fn language(&self) -> Option<&str> {
        self.language
            .get_or_init(|| language::detect(&self.subject, &self.text))
            .as_deref()
    }

    /// Every Message-ID this message points back to, nearest first.
    pub fn ancestors(&self) -> impl Iterator<Item = &str> {
        self.in_reply_to
            .iter()
            .chain(self.references.iter().rev())
            .map(String::as_str)
    }
}

/// Messages stored by classic Mac software end lines with a bare CR, which parsers do not
/// split on. Such a message (CR but no LF at all) is read with CRLF line ends instead.
fn cr_only_to_crlf(raw: &[u8]) -> Option<Vec<u8>> {
    if !raw.contains(&b'\r') || raw.contains(&b'\n') {
        return None;
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 40);
    for &byte in raw {
        out.push(byte);
        if byte == b'\r' {
            out.push(b'\n');
        }
    }
    Some(out)
}

fn headers(message: &Message<'_>) -> Vec<(String, String)> {
    let raw = message.raw_message();
    message
        .headers()
        .iter()
        .map(|h| {
            let value = match &h.value {
                HeaderValue::Text(text) => single_line(text),
                _ => raw
                    .get(h.offset_start as usize..h.offset_end as usize)
                    .map(|bytes| single_line(&String::from_utf8_lossy(bytes)))
                    .unwrap_or_default(),
            };
            (h.name.as_str().to_ascii_lowercase(), value)
        })
        .collect()
}

fn ids(value: &HeaderValue<'_>) -> Vec<String> {
    value
        .as_text_list()
        .map(|list| {
            // A Message-ID has no whitespace; a folded one would otherwise carry CR LF
            // into our In-Reply-To and References.
            list.iter()
                .map(|id| {
                    id.chars()
                        .filter(|c| !c.is_whitespace())
                        .collect::<String>()
                })
                .filter(|id| !id.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Header text on one line: folding, CR, LF and other control characters become spaces.
pub fn single_line(text: &str) -> String {
    text.split(|c: char| c.is_control())
        .filter(|part| !part.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Lower-cases and trims an address. The local part is case-sensitive in theory, but no
/// mail provider treats it so, and an account must be found however its owner types it.
pub fn normalize_address(address: &str) -> String {
    address.trim().trim_matches(['<', '>']).to_lowercase()
}

fn is_plausible_address(address: &str) -> bool {
    match address.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && (domain.contains('.') || domain == "localhost")
                && !address.chars().any(|c| c.is_whitespace() || c.is_control())
                && !domain.contains('@')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fields_threading_needs() {
        let raw = b"From: \"Ann\" <Ann@Example.COM>\r\nTo: support@desk.test\r\nSubject: =?utf-8?q?Caf=C3=A9?= down\r\nMessage-ID: <a1@example.com>\r\nIn-Reply-To: <x@desk.test>\r\nReferences: <r1@desk.test> <x@desk.test>\r\nDate: Mon, 2 Nov 2026 10:00:00 +0100\r\n\r\nHello\r\n";
        let m = ParsedMail::read(raw, &[]);
        assert_eq!(m.from.as_deref(), Some("ann@example.com"));
        assert_eq!(m.subject, "Café down");
        assert_eq!(m.message_id.as_deref(), Some("a1@example.com"));
        assert_eq!(
            m.ancestors().collect::<Vec<_>>(),
            vec!["x@desk.test", "x@desk.test", "r1@desk.test"]
        );
        assert_eq!(m.text.trim(), "Hello");
        assert!(m.malformed.is_none());
        assert!(m.automated.is_none());
        assert_eq!(m.to, vec!["support@desk.test"]);
        assert!(
            m.headers
                .contains(&("subject".to_string(), "Café down".to_string()))
        );
        assert!(
            m.headers
                .iter()
                .any(|(name, value)| name == "in-reply-to" && value.contains("x@desk.test"))
        );
    }

    #[test]
    fn missing_sender_is_malformed() {
        let m = ParsedMail::read(b"Subject: hi\r\n\r\nbody\r\n", &[]);
        assert_eq!(m.malformed.as_deref(), Some("no valid From address"));
        let m = ParsedMail::read(b"", &[]);
        assert_eq!(m.malformed.as_deref(), Some("no header could be read"));
    }

    #[test]
    fn classic_mac_line_ends_are_read() {
        let m = ParsedMail::read(
            b"From: MAILER-DAEMON@mx.example\rSubject: Undelivered\r\rbody\r",
            &[],
        );
        assert_eq!(m.subject, "Undelivered");
        assert!(m.malformed.is_none());
        assert!(m.automated.is_some());
    }

    #[test]
    fn header_text_cannot_span_lines() {
        assert_eq!(
            single_line("a\r\nBcc: x@evil.test\t b"),
            "a Bcc: x@evil.test b"
        );
    }
}
