//! Writing our mails: templates (minijinja) rendered into complete RFC 5322 messages.
//!
//! A template file is `templates/<lang>/<name>.txt`: a first line `Subject: ...`, a blank
//! line, then the body. The account's language picks the folder, English is the fallback.
//! Templates are compiled and test-rendered at load time with every variable their mail
//! offers, so a syntax error or an unknown variable is found by `maildesk check`, not by a
//! customer. Header values are forced onto one line: no variable can inject a header.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use minijinja::{Environment, UndefinedBehavior, Value, context};

use crate::desk::MailKind;
use crate::diag::Diagnostic;
use crate::mail::single_line;

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

/// All templates, compiled.
#[derive(Clone)]
pub struct Templates {
    env: Environment<'static>,
    /// kind template name -> languages it exists in
    available: BTreeMap<String, Vec<String>>,
    /// Where each loaded template came from, for error messages.
    files: BTreeMap<String, PathBuf>,
}

impl Templates {
    /// Loads and checks every template under `dir`; all problems or a usable set.
    pub fn load(dir: &Path) -> Result<Templates, Vec<Diagnostic>> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let mut problems = Vec::new();
        let mut available: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut files = BTreeMap::new();
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
            let entries = match sorted_entries(&lang_dir) {
                Ok(entries) => entries,
                Err(e) => {
                    problems.push(Diagnostic::error(&lang_dir, format!("cannot read: {e}")));
                    continue;
                }
            };
            for file in entries
                .into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "txt"))
            {
                let name = file
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                match load_one(&mut env, &file, &lang, &name) {
                    Ok(()) => {
                        available
                            .entry(name.clone())
                            .or_default()
                            .push(lang.clone());
                        files.insert(format!("{lang}/{name}"), file);
                    }
                    Err(d) => problems.push(d),
                }
            }
        }
        let templates = Templates {
            env,
            available,
            files,
        };
        for kind in MailKind::ALL {
            let name = kind.template();
            match templates.available.get(name) {
                Some(langs) if langs.iter().any(|l| l == FALLBACK_LANGUAGE) => {
                    for lang in langs {
                        if let Err(e) = templates.render(kind, lang, &sample_context(kind)) {
                            let file = templates
                                .files
                                .get(&format!("{lang}/{name}"))
                                .cloned()
                                .unwrap_or_default();
                            problems.push(render_diagnostic(&file, e));
                        }
                    }
                }
                _ => problems.push(
                    Diagnostic::error(
                        &dir.join(FALLBACK_LANGUAGE).join(format!("{name}.txt")),
                        "missing template",
                    )
                    .with_hint(format!(
                        "every mail maildesk sends needs an English template; {name} is one"
                    )),
                ),
            }
        }
        if problems.is_empty() {
            Ok(templates)
        } else {
            Err(problems)
        }
    }

    /// Subject and body of `kind` in `language` (or English).
    pub fn render(
        &self,
        kind: MailKind,
        language: &str,
        ctx: &Value,
    ) -> Result<(String, String), ComposeError> {
        let name = kind.template();
        let langs = self
            .available
            .get(name)
            .ok_or_else(|| ComposeError::Missing(name.into()))?;
        let lang = if langs.iter().any(|l| l == language) {
            language
        } else {
            FALLBACK_LANGUAGE
        };
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

/// Lines before the body: the subject line and the blank line after it.
const BODY_LINE_OFFSET: usize = 2;

fn load_one(
    env: &mut Environment<'static>,
    file: &Path,
    lang: &str,
    name: &str,
) -> Result<(), Diagnostic> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Diagnostic::error(file, format!("cannot read: {e}")))?;
    let text = text.replace("\r\n", "\n");
    let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
    let subject = first.strip_prefix("Subject:").ok_or_else(|| {
        Diagnostic::error(file, "the first line must be the subject")
            .at_line(1)
            .with_hint("start the file with `Subject: ...`, then a blank line, then the body")
    })?;
    let body = rest.strip_prefix('\n').ok_or_else(|| {
        Diagnostic::error(file, "the subject line must be followed by a blank line").at_line(2)
    })?;
    env.add_template_owned(format!("{lang}/{name}.subject"), subject.trim().to_string())
        .map_err(|e| syntax_diagnostic(file, &e, 0))?;
    env.add_template_owned(format!("{lang}/{name}.body"), body.to_string())
        .map_err(|e| syntax_diagnostic(file, &e, BODY_LINE_OFFSET))?;
    Ok(())
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

fn render_diagnostic(file: &Path, e: ComposeError) -> Diagnostic {
    match e {
        ComposeError::Render { name, source } => {
            let offset = if source.name().is_some_and(|n| n.ends_with(".body")) {
                BODY_LINE_OFFSET
            } else {
                0
            };
            let d = Diagnostic::error(
                file,
                format!("{name}: {}", source.detail().unwrap_or(&source.to_string())),
            )
            .with_hint("see README, section Templates, for the variables each mail offers");
            match source.line() {
                Some(line) => d.at_line(line + offset),
                None => d,
            }
        }
        other => Diagnostic::error(file, other.to_string()),
    }
}

/// Every variable a mail offers, with made-up values: used to test-render templates.
fn sample_context(kind: MailKind) -> Value {
    let desk = context! { name => "Example Hosting", support_address => "support@example.net" };
    match kind {
        MailKind::SupportAck => context! {
            desk,
            ticket => context! { number => 1, tag => "[EX #1]", subject => "Website down" },
            account => context! { name => "Example Customer", reference => "C1" },
        },
        MailKind::UnregisteredNotice => context! { desk },
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
}

/// What a mail answers: threading headers are taken from it.
pub struct InReplyTo<'a> {
    pub message_id: Option<&'a str>,
    pub references: &'a [String],
}

pub struct Draft<'a> {
    pub kind: MailKind,
    pub language: &'a str,
    pub from_name: &'a str,
    pub from_address: &'a str,
    pub to: &'a str,
    pub context: Value,
    pub answering: InReplyTo<'a>,
    /// Makes the Message-ID unique and stable: the same input gives the same id, so a
    /// mail re-created after a crash is recognisably the same mail.
    pub unique: &'a str,
}

pub fn compose(
    templates: &Templates,
    draft: Draft<'_>,
    now: DateTime<Utc>,
) -> Result<Composed, ComposeError> {
    let (subject, body) = templates.render(draft.kind, draft.language, &draft.context)?;
    let domain = draft.from_address.rsplit('@').next().unwrap_or("localhost");
    let message_id = format!(
        "{}.{}@{domain}",
        draft.kind.template().replace('_', "-"),
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
        .subject(subject.clone())
        .message_id(Some(format!("<{message_id}>")))
        .date(SystemTime::from(now))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-replied".into(),
        ))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Auto-Response-Suppress"),
            "All".into(),
        ));
    if let Some(parent) = draft.answering.message_id {
        let mut chain: Vec<String> = draft
            .answering
            .references
            .iter()
            .map(|r| format!("<{r}>"))
            .collect();
        chain.push(format!("<{parent}>"));
        builder = builder
            .in_reply_to(format!("<{parent}>"))
            .references(chain.join(" "));
    }
    let message = builder
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| bad(&e))?;
    Ok(Composed {
        message_id,
        from: draft.from_address.to_string(),
        to: draft.to.to_string(),
        subject,
        raw: message.formatted(),
    })
}
