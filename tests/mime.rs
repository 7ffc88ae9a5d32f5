//! Every kind of mail we send is well-formed MIME (issue 11, item 10): produced for real by
//! the binary, then read again by a second parser (mailparse, not the mail-parser crate
//! maildesk reads mail with) and checked line by line.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::smtp::free_port;
use common::{Desk, REPO};

/// RFC 5322 2.1.1: a line is at most 998 octets without its CRLF.
const MAX_LINE: usize = 998;

/// The templates shipped in every language.
const TEMPLATES: [&str; 11] = [
    "abuse_ack",
    "abuse_outcome",
    "abuse_warning",
    "confirmation_request",
    "incident_confirmation",
    "incident_resolution",
    "incident_update",
    "staff_notice",
    "support_ack",
    "suspension_notice",
    "unregistered_notice",
];

/// What a mail said, once decoded by the second parser.
struct Read {
    message_id: String,
    subject: String,
    body: String,
}

/// Checks one mail and returns what it says, or every rule it breaks.
fn lint(raw: &[u8]) -> Result<Read, Vec<String>> {
    let mut problems = lint_lines(raw);
    let parsed = match mailparse::parse_mail(raw) {
        Ok(parsed) => parsed,
        Err(e) => return Err(vec![format!("mailparse cannot read it: {e}")]),
    };
    let one = |name: &str, problems: &mut Vec<String>| {
        let values: Vec<String> = parsed
            .headers
            .iter()
            .filter(|h| h.get_key().eq_ignore_ascii_case(name))
            .map(|h| h.get_value())
            .collect();
        if values.len() != 1 {
            problems.push(format!("{} {name} header(s), not one", values.len()));
        }
        values.into_iter().next().unwrap_or_default()
    };
    for header in &parsed.headers {
        if !header.get_key_raw().is_ascii() || !header.get_value_raw().is_ascii() {
            problems.push(format!("header {} is not ASCII", header.get_key()));
        }
    }
    let version = one("MIME-Version", &mut problems);
    if version.trim() != "1.0" {
        problems.push(format!("MIME-Version is {version:?}, not 1.0"));
    }
    let date = one("Date", &mut problems);
    if mailparse::dateparse(&date).is_err() {
        problems.push(format!("Date {date:?} does not parse"));
    }
    let message_id = one("Message-ID", &mut problems);
    let subject = one("Subject", &mut problems);
    if parsed.ctype.mimetype != "text/plain" || !parsed.ctype.params.contains_key("charset") {
        problems.push(format!(
            "Content-Type {} {:?}: text/plain with a charset expected",
            parsed.ctype.mimetype, parsed.ctype.params
        ));
    }
    let encoding = one("Content-Transfer-Encoding", &mut problems).to_ascii_lowercase();
    problems.extend(lint_encoding(&encoding, body_bytes(raw)));
    let body = match parsed.get_body_raw().map(String::from_utf8) {
        Ok(Ok(body)) => body,
        _ => {
            problems.push("the decoded body is not UTF-8".into());
            String::new()
        }
    };
    problems.extend(agree_with_mail_parser(raw, &subject, &body));
    if problems.is_empty() {
        Ok(Read {
            message_id,
            subject,
            body,
        })
    } else {
        Err(problems)
    }
}

/// The transfer encoding matches the bytes: 7bit is ASCII, quoted-printable and base64
/// use only their alphabets; nothing else (8bit needs a server that accepts it).
fn lint_encoding(encoding: &str, encoded: &[u8]) -> Vec<String> {
    match encoding {
        "7bit" if !encoded.is_ascii() => vec!["7bit, but bytes over 127".into()],
        "7bit" => Vec::new(),
        "quoted-printable" => lint_quoted_printable(encoded),
        "base64" => {
            let alphabet = |b: &u8| b.is_ascii_alphanumeric() || b"+/=\r\n".contains(b);
            if encoded.iter().all(alphabet) {
                Vec::new()
            } else {
                vec!["base64 body with bytes outside the alphabet".into()]
            }
        }
        other => vec![format!("Content-Transfer-Encoding {other:?}")],
    }
}

/// Every line CRLF-terminated and short enough; no bare CR or LF anywhere.
fn lint_lines(raw: &[u8]) -> Vec<String> {
    let mut problems = Vec::new();
    if !raw.ends_with(b"\r\n") {
        problems.push("the last line does not end with CRLF".into());
    }
    let lines = raw.strip_suffix(b"\n").unwrap_or(raw);
    for (number, line) in lines.split(|b| *b == b'\n').enumerate() {
        let Some(content) = line.strip_suffix(b"\r") else {
            problems.push(format!("line {} ends without CRLF", number + 1));
            continue;
        };
        if content.contains(&b'\r') {
            problems.push(format!("line {} holds a bare CR", number + 1));
        }
        if content.len() >= MAX_LINE {
            problems.push(format!("line {} has {} octets", number + 1, content.len()));
        }
    }
    problems
}

/// The bytes after the blank line that ends the header.
fn body_bytes(raw: &[u8]) -> &[u8] {
    raw.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(&[][..], |at| &raw[at + 4..])
}

/// RFC 2045 6.7: printable ASCII, `=XX` with upper-case hex or a soft break, and no
/// white space at the end of a line.
fn lint_quoted_printable(encoded: &[u8]) -> Vec<String> {
    let mut problems = Vec::new();
    for (number, line) in encoded.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.ends_with(b" ") || line.ends_with(b"\t") {
            problems.push(format!("body line {}: white space at its end", number + 1));
        }
        if line.len() > 76 {
            problems.push(format!("body line {}: over 76 characters", number + 1));
        }
        let mut rest = line;
        while let Some(at) = rest.iter().position(|b| *b == b'=') {
            let escape = &rest[at + 1..];
            let soft_break = escape.is_empty();
            let hex = escape.len() >= 2
                && escape[..2]
                    .iter()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b));
            if !soft_break && !hex {
                problems.push(format!("body line {}: a bad = escape", number + 1));
                break;
            }
            rest = &escape[escape.len().min(2)..];
        }
        if !line
            .iter()
            .all(|b| *b == b'\t' || (b' '..=b'~').contains(b))
        {
            problems.push(format!("body line {}: unprintable bytes", number + 1));
        }
    }
    problems
}

/// The parser maildesk reads mail with must read the same subject and text.
fn agree_with_mail_parser(raw: &[u8], subject: &str, body: &str) -> Vec<String> {
    let Some(other) = mail_parser::MessageParser::default().parse(raw) else {
        return vec!["mail-parser cannot read it".into()];
    };
    let mut problems = Vec::new();
    if other.subject() != Some(subject) {
        problems.push(format!(
            "subjects differ: mailparse {subject:?}, mail-parser {:?}",
            other.subject()
        ));
    }
    let text = other.body_text(0).unwrap_or_default();
    if text.replace("\r\n", "\n") != body.replace("\r\n", "\n") {
        problems.push("the two parsers decode different texts".into());
    }
    problems
}

/// Lints every mail; fails with every problem of every mail at once.
fn lint_all(mails: &[Vec<u8>]) -> Vec<Read> {
    let mut read = Vec::new();
    let mut failures = Vec::new();
    for raw in mails {
        match lint(raw) {
            Ok(r) => read.push(r),
            Err(problems) => failures.push(format!(
                "{}\n  {}",
                String::from_utf8_lossy(&raw[..raw.len().min(600)]),
                problems.join("\n  ")
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} mails are not well-formed:\n\n{}",
        failures.len(),
        mails.len(),
        failures.join("\n\n")
    );
    read
}

/// The bytes of every `.eml` the file transport wrote.
fn eml_files(desk: &Desk) -> Vec<Vec<u8>> {
    let mut files: Vec<_> = std::fs::read_dir(desk.out_dir())
        .expect("out dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read(f).expect("eml"))
        .collect()
}

/// The template a mail was made from, out of our Message-ID (`<support-ack.…@…>`).
fn template_of(read: &Read) -> String {
    let id = read.message_id.trim().trim_start_matches('<');
    id.split('.').next().unwrap_or_default().replace('-', "_")
}

/// Adds an abuse mailbox (a Maildir) to the desk and returns its `new/`.
fn add_abuse_mailbox(desk: &Desk) -> std::path::PathBuf {
    desk.append_config(
        "[[mailbox]]\nname = \"abuse\"\nrole = \"abuse\"\nkind = \"maildir\"\npath = \"abuse-maildir\"\ninitial_sync = \"process\"",
    );
    let new = desk.examples().join("abuse-maildir/new");
    std::fs::create_dir_all(&new).expect("abuse maildir");
    new
}

/// A rule per template: a message whose subject says `mime-check` gets every one.
fn reply_with_every_template(desk: &Desk) {
    let rules: String = TEMPLATES
        .iter()
        .map(|t| {
            format!(
                "[[rule]]\nname = \"mime-{t}\"\nwhen.subject = '(?i)mime-check'\nthen.reply = \"{t}\"\n\n"
            )
        })
        .collect();
    std::fs::write(desk.dir.path().join("rules/90-mime.toml"), rules).expect("rules");
    desk.append_config("[limits]\nper_address = 1000\nper_ticket = 1000");
}

#[test]
fn the_demo_and_the_abuse_fixtures_send_well_formed_mail() {
    let desk = Desk::demo();
    let abuse = add_abuse_mailbox(&desk);
    for dir in ["tests/fixtures/rules", "tests/fixtures/arf"] {
        for entry in std::fs::read_dir(Path::new(REPO).join(dir)).expect("fixtures") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "eml") {
                let name = path.file_name().expect("name");
                std::fs::copy(&path, abuse.join(name)).expect("copy");
            }
        }
    }
    // Mail in many charsets: their subjects come back in our staff notices and answers.
    for entry in std::fs::read_dir(Path::new(REPO).join("tests/fixtures/charsets")).unwrap() {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        desk.deliver(&name, &std::fs::read(&path).expect("fixture"));
    }
    desk.ok(&["run", "--once"]);
    let read = lint_all(&eml_files(&desk));
    let kinds: BTreeSet<String> = read.iter().map(template_of).collect();
    for kind in [
        "support_ack",
        "staff_notice",
        "unregistered_notice",
        "abuse_ack",
    ] {
        assert!(kinds.contains(kind), "no {kind} among {kinds:?}");
    }
    assert!(
        read.iter().any(|r| !r.subject.is_ascii()),
        "some subject carries non-ASCII text"
    );
}

#[test]
fn every_template_in_every_language_is_well_formed() {
    // Registered customers writing in their own language; staff mails in the default.
    let customers = [
        (
            "it",
            "mario.rossi@pizzeria-rossi.example",
            "Buongiorno, il mio sito non funziona più da stamattina e vorrei sapere perché. Grazie mille per l'aiuto.",
        ),
        (
            "en",
            "jane.doe@janedoe.example",
            "Hello, my website has not been working since this morning and I would like to know why. Thank you very much for your help.",
        ),
        (
            "fr",
            "claire.martin@boulangerie-martin.example",
            "Bonjour, mon site ne fonctionne plus depuis ce matin et je voudrais savoir pourquoi. Merci beaucoup pour votre aide.",
        ),
    ];
    let mut bodies: Vec<(String, String)> = Vec::new();
    for (language, from, text) in customers {
        let desk = Desk::empty();
        desk.edit_config(
            "default_language = \"en\"",
            &format!("default_language = \"{language}\""),
        );
        reply_with_every_template(&desk);
        desk.deliver(
            "1.mime",
            format!("From: {from}\r\nTo: support@acme-hosting.example\r\nSubject: mime-check {language}\r\nMessage-ID: <mime-{language}@example.org>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\n\r\n{text}\r\n").as_bytes(),
        );
        desk.ok(&["run", "--once"]);
        let read = lint_all(&eml_files(&desk));
        let kinds: BTreeSet<String> = read.iter().map(template_of).collect();
        let all: BTreeSet<String> = TEMPLATES.iter().map(|t| t.to_string()).collect();
        assert_eq!(kinds, all, "{language}: every template sent");
        bodies.extend(read.iter().map(|r| (template_of(r), r.body.clone())));
    }
    // Each language wrote its own text: three different bodies of every template.
    let distinct: BTreeSet<&(String, String)> = bodies.iter().collect();
    assert_eq!(distinct.len(), 3 * TEMPLATES.len(), "one text per language");
}

#[test]
fn long_lines_and_non_ascii_come_out_encoded() {
    let desk = Desk::empty();
    reply_with_every_template(&desk);
    let token = "x".repeat(2000);
    let long_id = format!("{}@example.org", "i".repeat(1500));
    let subject = format!("mime-check Überweisung für café ☕ {token}");
    // A template line of 2,000 characters, not only a variable.
    let template = format!(
        "Subject: Ticket {{{{ ticket.tag }}}} – réponse\nAudience: account\n\n{}\n",
        "é".repeat(1000) + &"y".repeat(1000)
    );
    std::fs::write(desk.dir.path().join("templates/en/long_line.txt"), template).unwrap();
    std::fs::write(
        desk.dir.path().join("rules/91-long.toml"),
        "[[rule]]\nname = \"long\"\nwhen.subject = 'mime-check'\nthen.reply = \"long_line\"\n",
    )
    .unwrap();
    let encoded_subject = format!("=?utf-8?b?{}?=", base64(&subject));
    desk.deliver(
        "1.long",
        format!("From: jane.doe@janedoe.example\r\nTo: support@acme-hosting.example\r\nSubject: {encoded_subject}\r\nMessage-ID: <{long_id}>\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n", base64(&format!("Größe: {token} ü\n"))).as_bytes(),
    );
    desk.ok(&["run", "--once"]);
    let read = lint_all(&eml_files(&desk));
    assert_eq!(read.len(), TEMPLATES.len() + 1, "every mail sent");
    let notice = read
        .iter()
        .find(|r| template_of(r) == "staff_notice")
        .expect("a staff notice");
    assert!(notice.subject.ends_with(&subject), "{}", notice.subject);
    assert!(notice.body.contains(&format!("Größe: {token} ü")));
    let long = read
        .iter()
        .find(|r| template_of(r) == "long_line")
        .expect("the long template");
    assert!(long.subject.ends_with("– réponse"), "{}", long.subject);
    assert!(long.body.contains(&("é".repeat(1000) + &"y".repeat(1000))));
}

#[test]
fn the_alert_about_undeliverable_mail_is_well_formed() {
    let desk = Desk::demo();
    // Nothing listens there, and no mail may wait: every mail is given up at once and
    // staff are alerted (the alerts themselves cannot go either).
    desk.use_smtp(free_port());
    desk.edit_config(
        "security = \"plain\"",
        "security = \"plain\"\nmax_age_hours = 0",
    );
    desk.ok(&["run", "--once"]);
    let mails: Vec<Vec<u8>> = {
        let db = desk.db();
        let mut rows = db
            .prepare("SELECT raw FROM messages WHERE direction = 'out' ORDER BY id")
            .unwrap();
        rows.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let read = lint_all(&mails);
    assert!(
        read.iter()
            .any(|r| r.body.contains("could not be delivered")),
        "an alert among {} mails",
        read.len()
    );
}

fn base64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}
