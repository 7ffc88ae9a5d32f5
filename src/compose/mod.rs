//! Writing our mails: templates (minijinja) rendered into complete RFC 5322 messages.
//!
//! A template file is `templates/<lang>/<name>.txt`: header lines `Subject: ...` and
//! `Audience: account|sender|staff`, a blank line, then the body. The audience decides
//! who the mail goes to and which variables it may use ([`variables`]). The recipient's
//! language picks the folder, English is the fallback. Every template is compiled and
//! test-rendered at load time with the variables of its audience, so a syntax error or an
//! unknown variable is found by `maildesk check`, not by a customer. Header values are
//! forced onto one line: no variable can inject a header.

pub mod variables;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use lettre::message::header::{
    ContentTransferEncoding, ContentType, HeaderName, HeaderValue, MIME_VERSION_1_0,
};
use lettre::message::{Body, Mailbox, Message};
use minijinja::{Environment, UndefinedBehavior, Value};
use serde::Serialize;

use crate::diag::{Diagnostic, closest};
use crate::mail::single_line;
use variables::MailFacts;

pub const FALLBACK_LANGUAGE: &str = "en";

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("template {name}: {source}")]
    Render {
        name: String,
        source: minijinja::Error,
    },
    #[error("no template {0} in any language")]
    Missing(String),
    #[error("cannot build the mail: {0}")]
    Build(String),
}

/// Who a template's mail goes to. Chosen by the template's author, enforced by code: the
/// address always comes from the database or the message's own sender, never from a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Audience {
    /// The registered address of the ticket's account.
    Account,
    /// The address the message came from: an unregistered sender or an abuse reporter.
    Sender,
    /// Every staff member listed in the config.
    Staff,
}

impl Audience {
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Account => "account",
            Audience::Sender => "sender",
            Audience::Staff => "staff",
        }
    }

    fn parse(value: &str) -> Option<Audience> {
        match value {
            "account" => Some(Audience::Account),
            "sender" => Some(Audience::Sender),
            "staff" => Some(Audience::Staff),
            _ => None,
        }
    }
}

/// One template, in every language it exists in.
#[derive(Debug, Clone)]
struct Entry {
    audience: Audience,
    /// language -> where it was read from
    files: BTreeMap<String, Source>,
}

#[derive(Debug, Clone)]
struct Source {
    path: PathBuf,
    body_offset: usize,
}

/// All templates, compiled.
#[derive(Clone)]
pub struct Templates {
    env: Environment<'static>,
    entries: BTreeMap<String, Entry>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("entries", &self.entries)
            .finish()
    }
}

impl Templates {
    /// Loads and checks every template under `dir`; all problems or a usable set.
    pub fn load(dir: &Path) -> Result<Templates, Vec<Diagnostic>> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Printing a value that is none is an error, not the text "none": a field that may
        // be empty must be guarded, and the test render with empty fields finds it.
        env.set_formatter(|out, state, value| {
            if value.is_none() {
                return Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    "this value can be none here; print it inside {% if ... %}",
                ));
            }
            minijinja::escape_formatter(out, state, value)
        });
        let mut problems = Vec::new();
        // Files seen per template, broken or not, so a broken English file is not also
        // reported as missing.
        let mut english_files = std::collections::BTreeSet::new();
        let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
        let languages = match sorted_entries(dir) {
            Ok(entries) => entries,
            Err(e) => {
                return Err(vec![Diagnostic::error(
                    dir,
                    format!("cannot read the templates directory: {e}"),
                )]);
            }
        };
        for lang_dir in languages.into_iter().filter(|p| p.is_dir()) {
            let lang = file_name(&lang_dir);
            let files = match sorted_entries(&lang_dir) {
                Ok(files) => files,
                Err(e) => {
                    problems.push(Diagnostic::error(&lang_dir, format!("cannot read: {e}")));
                    continue;
                }
            };
            for file in files
                .into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "txt"))
            {
                let name = file
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if lang == FALLBACK_LANGUAGE {
                    english_files.insert(name.clone());
                }
                let Loaded {
                    audience,
                    audience_line,
                    body_offset,
                } = match load_one(&mut env, &file, &lang, &name) {
                    Ok(loaded) => loaded,
                    Err(d) => {
                        problems.push(d);
                        continue;
                    }
                };
                let entry = entries.entry(name.clone()).or_insert_with(|| Entry {
                    audience,
                    files: BTreeMap::new(),
                });
                if entry.audience != audience {
                    problems.push(
                        Diagnostic::error(
                            &file,
                            format!(
                                "Audience: {} differs from the other languages of {name} ({})",
                                audience.as_str(),
                                entry.audience.as_str()
                            ),
                        )
                        .at_line(audience_line)
                        .with_hint("every language of a mail goes to the same audience"),
                    );
                }
                entry.files.insert(
                    lang.clone(),
                    Source {
                        path: file,
                        body_offset,
                    },
                );
            }
        }
        let templates = Templates { env, entries };
        let sample = MailFacts::sample();
        for (name, entry) in &templates.entries {
            if !english_files.contains(name) {
                problems.push(
                    Diagnostic::error(
                        &dir.join(FALLBACK_LANGUAGE).join(format!("{name}.txt")),
                        "missing template",
                    )
                    .with_hint(format!(
                        "{name} exists in other languages; English is the fallback every mail needs"
                    )),
                );
            }
            // Every field filled, then every optional field empty: together they reach
            // every branch a template may take on real data.
            let contexts = [
                sample.context(entry.audience),
                MailFacts::sample_sparse(entry.audience).context(entry.audience),
            ];
            for (lang, source) in &entry.files {
                if let Some(e) = contexts
                    .iter()
                    .find_map(|ctx| templates.render_in(name, lang, ctx).err())
                {
                    problems.push(render_diagnostic(source, e, entry.audience));
                }
            }
        }
        if problems.is_empty() {
            Ok(templates)
        } else {
            Err(problems)
        }
    }

    /// Whether a template of that name exists (in English, hence in every language).
    pub fn contains(&self, name: &str) -> bool {
        self.entries
            .get(name)
            .is_some_and(|e| e.files.contains_key(FALLBACK_LANGUAGE))
    }

    /// The nearest existing name, for "did you mean" hints.
    pub fn closest(&self, name: &str) -> Option<&str> {
        closest(name, self.entries.keys().map(String::as_str))
    }

    /// Whether any template exists in `language`.
    pub fn has_language(&self, language: &str) -> bool {
        self.entries
            .values()
            .any(|e| e.files.contains_key(language))
    }

    pub fn audience(&self, name: &str) -> Option<Audience> {
        self.entries.get(name).map(|e| e.audience)
    }

    /// The first of `languages` the template exists in, else English.
    pub fn language_for<'a>(&self, name: &str, languages: &[&'a str]) -> &'a str {
        let files = self.entries.get(name).map(|e| &e.files);
        languages
            .iter()
            .find(|l| files.is_some_and(|f| f.contains_key(**l)))
            .copied()
            .unwrap_or(FALLBACK_LANGUAGE)
    }

    /// Subject and body of template `name` in `language` (or English).
    pub fn render(
        &self,
        name: &str,
        language: &str,
        facts: &MailFacts,
    ) -> Result<(String, String), ComposeError> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| ComposeError::Missing(name.into()))?;
        let lang = self.language_for(name, &[language]);
        self.render_in(name, lang, &facts.context(entry.audience))
    }

    fn render_in(
        &self,
        name: &str,
        lang: &str,
        ctx: &Value,
    ) -> Result<(String, String), ComposeError> {
        let render = |part: &str| {
            let full = format!("{lang}/{name}.{part}");
            self.env
                .get_template(&full)
                .and_then(|t| t.render(ctx))
                .map_err(|source| ComposeError::Render {
                    name: format!("{lang}/{name}"),
                    source,
                })
        };
        let mut body = render("body")?;
        // minijinja drops a template's final newline; a text mail body ends with one.
        if !body.ends_with('\n') {
            body.push('\n');
        }
        Ok((single_line(&render("subject")?), body))
    }
}

fn sorted_entries(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut entries = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()?;
    entries.sort();
    Ok(entries)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

struct Loaded {
    audience: Audience,
    audience_line: usize,
    /// Lines before the body, to turn a body line into a file line.
    body_offset: usize,
}

/// Reads the header lines and compiles subject and body.
fn load_one(
    env: &mut Environment<'static>,
    file: &Path,
    lang: &str,
    name: &str,
) -> Result<Loaded, Diagnostic> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Diagnostic::error(file, format!("cannot read: {e}")))?;
    let text = text.replace("\r\n", "\n");
    let mut subject = None;
    let mut audience = None;
    let mut audience_line = 0;
    let mut body_line = None;
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let number = index + 1;
        offset += line.len();
        let line = line.trim_end_matches('\n');
        if line.trim().is_empty() {
            body_line = Some(number + 1);
            break;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(Diagnostic::error(file, format!("expected a header line `Name: value`, found {line:?}"))
                .at_line(number)
                .with_hint("a template starts with `Subject: ...` and `Audience: ...`, then a blank line, then the body"));
        };
        let value = value.trim();
        match key.trim().to_ascii_lowercase().as_str() {
            "subject" => subject = Some(value.to_string()),
            "audience" => {
                audience_line = number;
                audience = Some(Audience::parse(value).ok_or_else(|| {
                    Diagnostic::error(file, format!("unknown audience {value:?}"))
                        .at_line(number)
                        .with_hint("write account, sender or staff")
                })?)
            }
            other => {
                let hint = match closest(other, ["subject", "audience"]) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => "the header lines are Subject and Audience".into(),
                };
                return Err(Diagnostic::error(
                    file,
                    format!("unknown header line `{}`", key.trim()),
                )
                .at_line(number)
                .with_hint(hint));
            }
        }
    }
    let Some(body_line) = body_line else {
        return Err(
            Diagnostic::error(file, "no blank line between the header lines and the body")
                .with_hint("write `Subject: ...`, `Audience: ...`, a blank line, then the body"),
        );
    };
    let subject = subject.ok_or_else(|| {
        Diagnostic::error(file, "no Subject line")
            .at_line(1)
            .with_hint("start the file with `Subject: ...`")
    })?;
    let audience = audience.ok_or_else(|| {
        Diagnostic::error(file, "no Audience line")
            .at_line(1)
            .with_hint("add `Audience: account` (the registered address), `sender` or `staff`")
    })?;
    let body = text[offset..].to_string();
    env.add_template_owned(format!("{lang}/{name}.subject"), subject)
        .map_err(|e| syntax_diagnostic(file, &e, 0))?;
    env.add_template_owned(format!("{lang}/{name}.body"), body)
        .map_err(|e| syntax_diagnostic(file, &e, body_line - 1))?;
    Ok(Loaded {
        audience,
        audience_line,
        body_offset: body_line - 1,
    })
}
fn syntax_diagnostic(file: &Path, e: &minijinja::Error, line_offset: usize) -> Diagnostic {
    let d = Diagnostic::error(
        file,
        format!(
            "template syntax: {}",
            e.detail().unwrap_or("invalid template")
        ),
    );
    match e.line() {
        Some(line) => d.at_line(line + line_offset),
        None => d,
    }
}

fn render_diagnostic(source: &Source, e: ComposeError, audience: Audience) -> Diagnostic {
    let ComposeError::Render {
        name,
        source: error,
    } = e
    else {
        return Diagnostic::error(&source.path, e.to_string());
    };
    let offset = if error.name().is_some_and(|n| n.ends_with(".body")) {
        source.body_offset
    } else {
        0
    };
    let hint = match audience {
        Audience::Sender => {
            "a mail with `Audience: sender` has no `account` variables (it must not disclose customer data); see README, section Templates"
        }
        Audience::Account | Audience::Staff => {
            "see README, section Templates, for the variables each audience offers"
        }
    };
    let d = Diagnostic::error(
        &source.path,
        format!("{name}: {}", error.detail().unwrap_or(&error.to_string())),
    )
    .with_hint(hint);
    match error.line() {
        Some(line) => d.at_line(line + offset),
        None => d,
    }
}

/// One outgoing mail, ready for the outbox.
#[derive(Debug, Clone)]
pub struct Composed {
    /// Without angle brackets, like every Message-ID in the database.
    pub message_id: String,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub raw: Vec<u8>,
    /// The rendered text, before transfer encoding: for people reading a dry run.
    pub body: String,
}

/// What a mail answers: threading headers are taken from it.
pub struct InReplyTo<'a> {
    pub message_id: Option<&'a str>,
    pub references: &'a [String],
}

pub struct Draft<'a> {
    pub template: &'a str,
    pub language: &'a str,
    pub from_name: &'a str,
    pub from_address: &'a str,
    pub to: &'a str,
    pub facts: &'a MailFacts,
    pub answering: InReplyTo<'a>,
    /// Makes the Message-ID unique and stable: the same input gives the same id, so a
    /// mail re-created after a crash is recognisably the same mail.
    pub unique: &'a str,
    /// The ticket the mail belongs to, for Outlook's conversation headers.
    pub conversation: Option<Conversation<'a>>,
}

/// What Outlook groups a conversation by: every mail of a ticket carries the same
/// Thread-Topic and the same Thread-Index, so they show as one thread even where
/// In-Reply-To is lost (Exchange often rewrites it).
pub struct Conversation<'a> {
    pub ticket: i64,
    pub opened: DateTime<Utc>,
    pub topic: &'a str,
}

/// A Thread-Index: 22 bytes, base64. Outlook's layout is 6 bytes of the conversation's
/// start time (the top of a FILETIME) and a 16-byte GUID; ours is derived from the
/// ticket and our domain, so it is the same for every mail of the ticket, forever.
pub fn thread_index(domain: &str, ticket: i64, opened: DateTime<Utc>) -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    // FILETIME: 100 ns steps since 1601-01-01; 11,644,473,600 s before the Unix epoch.
    let filetime = (opened.timestamp() + 11_644_473_600).max(0) as u64 * 10_000_000;
    let mut index = filetime.to_be_bytes()[..6].to_vec();
    let guid = Sha256::digest(format!("maildesk thread {domain} {ticket}"));
    index.extend_from_slice(&guid[..16]);
    base64::engine::general_purpose::STANDARD.encode(index)
}

/// RFC 5322's recommended line length, header name included.
const FOLD_AT: usize = 78;

/// The longest Message-ID repeated in In-Reply-To and References. An id cannot be folded,
/// so a longer one (only broken or hostile mail has them) would make a line over RFC
/// 5322's limit of 998 octets; such a parent is left out, and the ticket tag in the
/// subject still threads the answer.
const MAX_ID: usize = 900;

/// A header of free text. lettre folds it between words and encodes non-ASCII words, but
/// cannot fold inside a word, so a word longer than a line (a pasted URL, a run of 2,000
/// characters) would break the line limit. Such a value is written whole as RFC 2047
/// encoded-words, which may be cut anywhere and decode to the same text.
fn text_header(name: &'static str, value: &str) -> Result<HeaderValue, ComposeError> {
    let prefix = name.len() + ": ".len();
    let header = HeaderName::new_from_ascii_str(name);
    if value
        .split_whitespace()
        .all(|word| prefix + word.len() <= FOLD_AT)
    {
        return Ok(HeaderValue::new(header, value.to_string()));
    }
    let mut encoded = String::new();
    {
        let mut writer =
            email_encoding::headers::writer::EmailWriter::new(&mut encoded, prefix, 0, false);
        email_encoding::headers::rfc2047::encode(value, &mut writer)
            .map_err(|e| ComposeError::Build(format!("{name}: {e}")))?;
    }
    Ok(HeaderValue::dangerous_new_pre_encoded(
        header,
        value.to_string(),
        encoded,
    ))
}

/// The body in the transfer encoding lettre finds best for it (7bit only for short ASCII
/// lines, else quoted-printable or base64), every line ending in CRLF: lettre's base64
/// leaves the last line without one.
fn transfer_encoded(text: &str) -> Body {
    let body = Body::new(text.to_string());
    if body.encoding() != ContentTransferEncoding::Base64 || body.as_ref().ends_with(b"\r\n") {
        return body;
    }
    let mut bytes = body.into_vec();
    bytes.extend_from_slice(b"\r\n");
    Body::dangerous_pre_encoded(bytes, ContentTransferEncoding::Base64)
}

pub fn compose(
    templates: &Templates,
    draft: Draft<'_>,
    now: DateTime<Utc>,
) -> Result<Composed, ComposeError> {
    let (subject, body) = templates.render(draft.template, draft.language, draft.facts)?;
    // RFC 3834: answers to a message are auto-replied, mails of our own making are
    // auto-generated. Both tell well-behaved software never to answer them.
    let auto_submitted = match templates.audience(draft.template) {
        Some(Audience::Staff) | None => "auto-generated",
        Some(Audience::Account | Audience::Sender) => "auto-replied",
    };
    let domain = draft.from_address.rsplit('@').next().unwrap_or("localhost");
    let message_id = format!(
        "{}.{}@{domain}",
        draft.template.replace('_', "-"),
        draft.unique
    );
    let bad = |e: &dyn std::fmt::Display| ComposeError::Build(e.to_string());
    let from = Mailbox::new(
        Some(single_line(draft.from_name)),
        draft.from_address.parse().map_err(|e| bad(&e))?,
    );
    let to: Mailbox = draft.to.parse().map_err(|e| bad(&e))?;
    let mut builder = Message::builder()
        .from(from)
        .to(to)
        .raw_header(text_header("Subject", &subject)?)
        .message_id(Some(format!("<{message_id}>")))
        .date(SystemTime::from(now))
        .header(MIME_VERSION_1_0)
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            auto_submitted.into(),
        ))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Auto-Response-Suppress"),
            "All".into(),
        ));
    if let Some(c) = &draft.conversation {
        builder = builder
            .raw_header(text_header("Thread-Topic", &single_line(c.topic))?)
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Thread-Index"),
                thread_index(domain, c.ticket, c.opened),
            ));
    }
    if let Some(parent) = draft.answering.message_id.filter(|id| id.len() <= MAX_ID) {
        let chain: Vec<String> = draft
            .answering
            .references
            .iter()
            .map(String::as_str)
            .chain([parent])
            .filter(|id| id.len() <= MAX_ID)
            .map(|id| format!("<{id}>"))
            .collect();
        builder = builder
            .in_reply_to(format!("<{parent}>"))
            .references(chain.join(" "));
    }
    let message = builder
        .header(ContentType::TEXT_PLAIN)
        .body(transfer_encoded(&body))
        .map_err(|e| bad(&e))?;
    Ok(Composed {
        message_id,
        from: draft.from_address.to_string(),
        to: draft.to.to_string(),
        subject,
        raw: message.formatted(),
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use chrono::TimeZone;

    #[test]
    fn thread_index_is_outlook_shaped_and_one_per_ticket() {
        let opened = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
        let index = thread_index("desk.example", 42, opened);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&index)
            .unwrap();
        assert_eq!(bytes.len(), 22);
        // The top six bytes of the FILETIME of the opening time.
        let filetime = (opened.timestamp() as u64 + 11_644_473_600) * 10_000_000;
        assert_eq!(bytes[..6], filetime.to_be_bytes()[..6]);
        assert_eq!(index, thread_index("desk.example", 42, opened));
        assert_ne!(index, thread_index("desk.example", 43, opened));
        assert_ne!(index, thread_index("other.example", 42, opened));
    }
}
