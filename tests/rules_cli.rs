//! Rules and templates as an admin meets them on the command line: `check` lists every
//! problem with its place, a running daemon refuses a broken edit and keeps the old set,
//! `rules test` explains a decision without touching anything, and no incoming text can
//! add a header to a mail we write.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::Duration;

use common::snapshot::snapshot;
use common::{Desk, REPO, header, stderr, terminate, wait_for};
use rusqlite::{Connection, OptionalExtension};

const AT: &str = "2026-11-23T10:00:00Z";
const LIMIT: Duration = Duration::from_secs(20);

fn rules_dir(desk: &Desk) -> PathBuf {
    desk.examples().join("../rules")
}

fn templates_dir(desk: &Desk) -> PathBuf {
    desk.examples().join("../templates")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes under another name and renames, so a watching daemon never reads half a file.
fn write_file(path: &Path, text: &str) {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// 1-based number of the line holding `needle` in `source`.
fn line_of(source: &str, needle: &str) -> usize {
    let at = source
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the file"));
    source[..at].matches('\n').count() + 1
}

/// 1-based column, in characters, where `needle` starts on its line.
fn column_of(source: &str, needle: &str) -> usize {
    let at = source
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the file"));
    let line_start = source[..at].rfind('\n').map_or(0, |i| i + 1);
    source[line_start..at].chars().count() + 1
}

/// One problem as `check` prints it: `<file>[:line[:col]]: error|warning: message`, then
/// an optional `  hint: ...` line.
#[derive(Debug, Clone)]
struct Problem {
    file: String,
    line: Option<usize>,
    column: Option<usize>,
    severity: String,
    message: String,
    hint: Option<String>,
}

impl Problem {
    fn is_in(&self, file_name: &str) -> bool {
        Path::new(&self.file).file_name() == Some(file_name.as_ref())
    }
}

fn problems(text: &str) -> Vec<Problem> {
    let mut found: Vec<Problem> = Vec::new();
    for line in text.lines() {
        if let Some(hint) = line.trim_start().strip_prefix("hint: ") {
            let last = found.last_mut().expect("a hint follows its problem");
            assert!(last.hint.is_none(), "two hints for one problem:\n{text}");
            last.hint = Some(hint.to_string());
            continue;
        }
        let split = [": error: ", ": warning: "]
            .iter()
            .find_map(|sep| line.split_once(sep).map(|(a, m)| (a, sep, m)));
        let Some((at, sep, message)) = split else {
            continue;
        };
        // The place: a path, then up to two numbers.
        let mut parts: Vec<&str> = at.trim().rsplitn(3, ':').collect();
        parts.reverse();
        let mut numbers = Vec::new();
        while parts.len() > 1 {
            match parts.last().and_then(|p| p.parse::<usize>().ok()) {
                Some(n) => {
                    numbers.insert(0, n);
                    parts.pop();
                }
                None => break,
            }
        }
        found.push(Problem {
            file: parts.join(":"),
            line: numbers.first().copied(),
            column: numbers.get(1).copied(),
            severity: sep.trim_matches([':', ' ']).to_string(),
            message: message.to_string(),
            hint: None,
        });
    }
    found
}

/// The only problem in `file_name` whose message contains `text`.
fn the_problem<'a>(all: &'a [Problem], file_name: &str, text: &str) -> &'a Problem {
    let matching: Vec<&Problem> = all
        .iter()
        .filter(|p| p.is_in(file_name) && p.message.contains(text))
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "expected one problem in {file_name} saying {text:?}, found {matching:#?} among {all:#?}"
    );
    matching[0]
}

// ---------------------------------------------------------------------------------------
// 1. check: every problem in one run, each at its place
// ---------------------------------------------------------------------------------------

const BROKEN_RULES: &str = r#"# Each rule below has one mistake; check must report all of them at once.
[[rule]]
name = "bad-regex"
when.role = "support"
when.subject = '(?i)(down|off)line[z-a]'
then.priority = "high"

[[rule]]
name = "typo-in-condition"
when.subjet = '(?i)invoice'
then.priority = "high"

[[rule]]
name = "unknown-action"
when.role = "support"
then.escalate = "now"

[[rule]]
name = "wrong-type"
when.has_attachment = "yes"
then.priority = "low"

[[rule]]
name = "misspelt-template"
when.role = "support"
then.reply = "support_akc"

[[rule]]
name = "acknowledge-new-ticket"
when.role = "abuse"
then.tags = "duplicate"
"#;

const OTHER_BROKEN_RULES: &str = r#"[[rule]]
name = "other-file"
when.role = "support"
then.priority = "extreme"
"#;

#[test]
fn check_reports_every_rule_problem_at_once_with_file_line_and_column() {
    let desk = Desk::demo();
    let broken = rules_dir(&desk).join("30-broken.toml");
    let other = rules_dir(&desk).join("40-other.toml");
    std::fs::write(&broken, BROKEN_RULES).unwrap();
    std::fs::write(&other, OTHER_BROKEN_RULES).unwrap();

    let out = desk.maildesk(&["check"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "check must fail:\n{err}");
    assert!(
        !stdout(&out).contains("rule(s)"),
        "a broken set is not reported ok:\n{}",
        stdout(&out)
    );
    let all = problems(&err);
    for p in &all {
        assert_eq!(p.severity, "error", "{p:#?}");
    }
    assert_eq!(
        all.len(),
        7,
        "six problems in one file, one in the other:\n{err}"
    );
    let src = BROKEN_RULES;

    // (a) The column points inside the quoted pattern, at the invalid range `z-a`.
    let regex = the_problem(&all, "30-broken.toml", "invalid regex");
    let pattern_line = "when.subject = '(?i)(down|off)line[z-a]'";
    assert_eq!(regex.line, Some(line_of(src, pattern_line)), "{regex:#?}");
    let quote = column_of(src, pattern_line) + pattern_line.find('\'').unwrap();
    let expected = column_of(src, "z-a]");
    assert!(expected > quote + 1, "the error sits inside the pattern");
    assert_eq!(regex.column, Some(expected), "{regex:#?}");
    let in_pattern = "(?i)(down|off)line[z-a]".find("z-a").unwrap() + 1;
    assert!(
        regex
            .message
            .contains(&format!("at character {in_pattern} of the pattern")),
        "{regex:#?}"
    );

    // (b) A misspelt condition, with the spelling it probably meant.
    let typo = the_problem(&all, "30-broken.toml", "`subjet`");
    assert_eq!(typo.line, Some(line_of(src, "when.subjet")));
    assert_eq!(typo.column, Some(column_of(src, "subjet")));
    assert_eq!(typo.hint.as_deref(), Some("did you mean `subject`?"));

    // (c) An action that does not exist.
    let action = the_problem(&all, "30-broken.toml", "`escalate`");
    assert!(action.message.starts_with("unknown action"), "{action:#?}");
    assert_eq!(action.line, Some(line_of(src, "then.escalate")));
    assert_eq!(action.column, Some(column_of(src, "escalate")));

    // (d) A value of the wrong type, pointed at the value.
    let wrong = the_problem(&all, "30-broken.toml", "\"yes\"");
    assert!(wrong.message.contains("expected a boolean"), "{wrong:#?}");
    assert_eq!(wrong.line, Some(line_of(src, "when.has_attachment")));
    assert_eq!(wrong.column, Some(column_of(src, "\"yes\"")));
    assert_eq!(
        wrong.hint.as_deref(),
        Some("write true or false, without quotes")
    );

    // (e) A template that does not exist, with the near one.
    let template = the_problem(&all, "30-broken.toml", "unknown template");
    assert!(template.message.contains("`support_akc`"), "{template:#?}");
    assert_eq!(template.line, Some(line_of(src, "then.reply")));
    assert_eq!(template.column, Some(column_of(src, "\"support_akc\"")));
    assert_eq!(
        template.hint.as_deref(),
        Some("did you mean `support_ack`?")
    );

    // (f) A name already used by a default rule, pointing back at the first one.
    let duplicate = the_problem(&all, "30-broken.toml", "already exists");
    assert!(
        duplicate.message.contains("`acknowledge-new-ticket`"),
        "{duplicate:#?}"
    );
    let dup_name = "name = \"acknowledge-new-ticket\"";
    assert_eq!(duplicate.line, Some(line_of(src, dup_name)));
    assert_eq!(
        duplicate.column,
        Some(column_of(src, "\"acknowledge-new-ticket\""))
    );
    let support = std::fs::read_to_string(rules_dir(&desk).join("10-support.toml")).unwrap();
    let first = format!("10-support.toml:{}", line_of(&support, dup_name));
    assert!(
        duplicate
            .hint
            .as_deref()
            .is_some_and(|h| h.contains(&first)),
        "the hint names the first rule ({first}): {duplicate:#?}"
    );

    // And the second file's own problem, in the same run.
    let variant = the_problem(&all, "40-other.toml", "`extreme`");
    assert_eq!(
        variant.line,
        Some(line_of(OTHER_BROKEN_RULES, "then.priority"))
    );
    assert_eq!(
        variant.column,
        Some(column_of(OTHER_BROKEN_RULES, "\"extreme\""))
    );
}

const SHADOWED: &str = r#"[[rule]]
name = "vip-reporters"
when.role = "abuse"
when.from = '@vip\.example$'
then.priority = "high"
stop = true

[[rule]]
name = "vip-spam-reports"
when.role = "abuse"
when.from = '@vip\.example$'
when.subject = '(?i)spam'
then.tags = "vip-spam"
"#;

#[test]
fn check_warns_about_a_rule_shadowed_by_an_earlier_stop_rule_and_succeeds() {
    let desk = Desk::demo();
    let defaults = count_rules(&rules_dir(&desk));
    std::fs::write(rules_dir(&desk).join("90-vip.toml"), SHADOWED).unwrap();

    let out = desk.maildesk(&["check"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "warnings do not fail:\n{err}");
    assert!(
        stdout(&out).contains(&format!("ok ({} rule(s), 1 warning(s))", defaults + 2)),
        "{}",
        stdout(&out)
    );
    let all = problems(&err);
    assert_eq!(all.len(), 1, "{err}");
    let warning = &all[0];
    assert_eq!(warning.severity, "warning");
    assert!(warning.is_in("90-vip.toml"), "{warning:#?}");
    assert_eq!(
        warning.line,
        Some(line_of(SHADOWED, "name = \"vip-spam-reports\""))
    );
    assert!(
        warning.message.contains("`vip-spam-reports`")
            && warning.message.contains("`vip-reporters`"),
        "the warning names both rules: {warning:#?}"
    );
    assert!(
        warning.message.contains(&format!(
            "90-vip.toml:{}",
            line_of(SHADOWED, "name = \"vip-reporters\"")
        )),
        "and where the earlier one is: {warning:#?}"
    );
}

fn count_rules(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .filter(|l| l.trim() == "[[rule]]")
                .count()
        })
        .sum()
}

// ---------------------------------------------------------------------------------------
// 2. check: broken templates
// ---------------------------------------------------------------------------------------

#[test]
fn check_reports_broken_templates_at_their_file_line() {
    let desk = Desk::demo();
    let en = templates_dir(&desk).join("en");
    // Lines 1-2 are the header lines, line 3 is blank: body line 6 is file line 9.
    let syntax = "Subject: {{ ticket.tag }} Test\nAudience: account\n\nHello {{ account.name }},\n\nthis is line 6.\n{% if ticket.priority == \"urgent\" %}\nurgent\n{% endfor %}\n";
    let undefined = "Subject: {{ ticket.tag }} Test\nAudience: account\n\nHello {{ account.name }},\n\nYour ticket: {{ ticket.numbr }}\n";
    let leaky = "Subject: {{ ticket.tag }} Your report\nAudience: sender\n\nHello,\n\nthe service belongs to {{ account.name }}.\n";
    let no_audience = "Subject: {{ ticket.tag }} Test\n\nHello,\n";
    let bad_subject = "Subject: {{ ticket.tag }} {{ ticket.subject \nAudience: staff\n\nHello,\n";
    std::fs::write(en.join("bad_syntax.txt"), syntax).unwrap();
    std::fs::write(en.join("undefined_var.txt"), undefined).unwrap();
    std::fs::write(en.join("leaky_ack.txt"), leaky).unwrap();
    std::fs::write(en.join("no_audience.txt"), no_audience).unwrap();
    std::fs::write(en.join("bad_subject.txt"), bad_subject).unwrap();

    let out = desk.maildesk(&["check"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let all = problems(&err);
    let mut files: Vec<String> = all
        .iter()
        .map(|p| {
            Path::new(&p.file)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "bad_subject.txt",
            "bad_syntax.txt",
            "leaky_ack.txt",
            "no_audience.txt",
            "undefined_var.txt"
        ],
        "one problem per broken template, none elsewhere:\n{err}"
    );
    for p in &all {
        assert_eq!(p.severity, "error", "{p:#?}");
        assert_eq!(p.column, None, "templates are located by line: {p:#?}");
    }

    let p = the_problem(&all, "bad_syntax.txt", "template syntax");
    assert_eq!(p.line, Some(line_of(syntax, "{% endfor %}")), "{p:#?}");
    assert_eq!(p.line, Some(9));
    assert!(
        err.contains("bad_syntax.txt:9: error: template syntax"),
        "{err}"
    );

    let p = the_problem(&all, "undefined_var.txt", "undefined");
    assert!(p.message.contains("ticket.numbr"), "{p:#?}");
    assert_eq!(p.line, Some(line_of(undefined, "ticket.numbr")), "{p:#?}");

    let p = the_problem(&all, "leaky_ack.txt", "undefined");
    assert!(p.message.contains("account"), "{p:#?}");
    assert_eq!(p.line, Some(line_of(leaky, "account.name")), "{p:#?}");
    assert!(
        p.hint
            .as_deref()
            .is_some_and(|h| h.contains("customer data")),
        "{p:#?}"
    );

    let p = the_problem(&all, "no_audience.txt", "no Audience line");
    assert!(
        p.hint
            .as_deref()
            .is_some_and(|h| h.contains("Audience: account")),
        "{p:#?}"
    );

    let p = the_problem(&all, "bad_subject.txt", "template syntax");
    assert_eq!(p.line, Some(1), "{p:#?}");
}

// ---------------------------------------------------------------------------------------
// 3. hot reload: a broken edit is refused, the old set serves, a good edit takes over
// ---------------------------------------------------------------------------------------

/// A valid rule that would change what happens to invoice questions, next to a rule with
/// a broken pattern: if any part of this file were applied, the invoice mail would get no
/// acknowledgement.
const RELOAD_BROKEN: &str = r#"[[rule]]
name = "quiet-invoices"
when.role = "support"
when.subject = '(?i)invoice'
then.priority = "high"
then.tags = "reloaded"
then.suppress_reply = true

[[rule]]
name = "refunds"
when.role = "support"
when.body = '(?i)refund[ing'
then.queue = "billing"
"#;

const RELOAD_GOOD: &str = r#"[[rule]]
name = "quiet-invoices"
when.role = "support"
when.subject = '(?i)invoice'
then.priority = "high"
then.tags = "reloaded"
then.suppress_reply = true
"#;

fn health(desk: &Desk) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(desk.examples().join("demo.health.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn invoice_mail(n: u32) -> Vec<u8> {
    format!(
        "From: Jane Doe <jane.doe@janedoe.example>\r\nTo: support@acme-hosting.example\r\nSubject: Invoice 2026-{n}: VAT number missing\r\nMessage-ID: <invoice-{n}@mail.janedoe.example>\r\nDate: Mon, 23 Nov 2026 09:00:00 +0000\r\n\r\nHello, could you send invoice 2026-{n} again with our VAT number on it?\r\nThanks, Jane\r\n"
    )
    .into_bytes()
}

struct TicketView {
    number: i64,
    priority: String,
    tags: Vec<String>,
    events: Vec<(String, String)>,
    outgoing: i64,
}

fn open(desk: &Desk) -> Connection {
    let conn = desk.db();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn
}

fn ticket_by_subject(desk: &Desk, subject: &str) -> Option<TicketView> {
    if !desk.examples().join("demo.db").exists() {
        return None;
    }
    let conn = open(desk);
    let (number, priority): (i64, String) = conn
        .query_row(
            "SELECT number, priority FROM tickets WHERE subject = ?1",
            [subject],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .ok()??;
    let tags = conn
        .prepare("SELECT tag FROM ticket_tags WHERE ticket = ?1 ORDER BY tag")
        .unwrap()
        .query_map([number], |r| r.get(0))
        .unwrap()
        .collect::<Result<Vec<String>, _>>()
        .unwrap();
    let events = conn
        .prepare("SELECT kind, detail FROM events WHERE ticket = ?1 ORDER BY id")
        .unwrap()
        .query_map([number], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<Vec<(String, String)>, _>>()
        .unwrap();
    let outgoing = conn
        .query_row(
            "SELECT count(*) FROM messages WHERE ticket = ?1 AND direction = 'out'",
            [number],
            |r| r.get(0),
        )
        .unwrap();
    Some(TicketView {
        number,
        priority,
        tags,
        events,
        outgoing,
    })
}

fn sighup(child: &Child) {
    let status = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
}

#[test]
fn daemon_refuses_a_broken_reload_keeps_serving_the_old_rules_then_takes_a_good_one() {
    let desk = Desk::demo();
    desk.edit_config("poll_interval_secs = 30", "poll_interval_secs = 1");
    let defaults = count_rules(&rules_dir(&desk));
    let daemon = desk.spawn_daemon();
    let pid = daemon.id();

    wait_for("the daemon's health file", LIMIT, || {
        health(&desk).is_some()
    });
    wait_for("the demo mail to be answered", LIMIT, || {
        desk.files_in("new").is_empty() && desk.sent_mails().len() == 5
    });
    let started = health(&desk).unwrap();
    assert_eq!(started["pid"], pid);
    assert_eq!(started["rules"], defaults);
    assert!(started["rejected"].is_null(), "{started}");

    // A broken edit: refused, and said so in the health file.
    let local = rules_dir(&desk).join("15-local.toml");
    write_file(&local, RELOAD_BROKEN);
    wait_for("the broken rules to be refused", LIMIT, || {
        health(&desk).is_some_and(|h| !h["rejected"].is_null())
    });
    let refused = health(&desk).unwrap();
    let reported = refused["rejected"]["problems"].to_string();
    assert!(
        reported.contains("15-local.toml") && reported.contains("invalid regex"),
        "{refused:#}"
    );
    assert_eq!(refused["rules"], defaults, "the old set still serves");
    assert_eq!(refused["policy_loaded_at"], started["policy_loaded_at"]);

    // The old rules decide: the invoice question is acknowledged, not held back.
    desk.deliver("1763900000.M1P1.test", &invoice_mail(117));
    let subject_a = "Invoice 2026-117: VAT number missing";
    wait_for("the first invoice mail to be stored", LIMIT, || {
        ticket_by_subject(&desk, subject_a).is_some()
    });
    let a = ticket_by_subject(&desk, subject_a).unwrap();
    assert_eq!(a.priority, "normal");
    assert!(a.tags.is_empty(), "{:?}", a.tags);
    assert!(
        !a.events
            .iter()
            .any(|(k, d)| k == "reply.suppressed" || d.contains("quiet-invoices")),
        "{:?}",
        a.events
    );
    assert_eq!(a.outgoing, 1, "the acknowledgement: {:?}", a.events);
    wait_for("the acknowledgement to be written", LIMIT, || {
        desk.sent_mails()
            .iter()
            .any(|m| header(m, "Subject").is_some_and(|s| s.contains(subject_a)))
    });

    // `check` shows the files are broken and that the daemon refused them.
    let out = desk.maildesk(&["check"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("the daemon (pid {pid}) refused to reload")),
        "{err}"
    );
    assert!(err.contains("invalid regex"), "{err}");

    // A good edit, announced with SIGHUP: the new set takes over.
    write_file(&local, RELOAD_GOOD);
    sighup(&daemon);
    wait_for("the good rules to be loaded", LIMIT, || {
        health(&desk).is_some_and(|h| h["rejected"].is_null() && h["rules"] == defaults + 1)
    });
    let out = desk.maildesk(&["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("refused"), "{}", stderr(&out));

    desk.deliver("1763900060.M2P1.test", &invoice_mail(118));
    let subject_b = "Invoice 2026-118: VAT number missing";
    wait_for("the second invoice mail to be stored", LIMIT, || {
        ticket_by_subject(&desk, subject_b).is_some()
    });
    let b = ticket_by_subject(&desk, subject_b).unwrap();
    assert_ne!(a.number, b.number);
    assert_eq!(b.priority, "high", "{:?}", b.events);
    assert_eq!(b.tags, ["reloaded"]);
    assert!(
        b.events
            .iter()
            .any(|(k, d)| k == "rule.matched" && d.contains("quiet-invoices")),
        "{:?}",
        b.events
    );
    assert!(
        b.events
            .iter()
            .any(|(k, d)| k == "reply.suppressed" && d.contains("quiet-invoices")),
        "{:?}",
        b.events
    );
    assert_eq!(b.outgoing, 0, "no acknowledgement: {:?}", b.events);

    let log = terminate(daemon);
    assert!(log.contains("reload refused"), "{log}");
    assert!(log.contains("15-local.toml"), "{log}");
    assert!(
        log.contains("SIGHUP: reloading rules and templates"),
        "{log}"
    );
    assert!(log.contains("rules and templates reloaded"), "{log}");
    assert!(log.contains("maildesk stopped"), "{log}");
    assert!(
        health(&desk).is_none(),
        "a stopped daemon leaves no health report"
    );
    assert!(
        !desk.sent_mails().iter().any(|m| m.contains(subject_b)),
        "nothing was sent about the second invoice"
    );
}

// ---------------------------------------------------------------------------------------
// 4. rules test on real messages, against snapshots
// ---------------------------------------------------------------------------------------

fn fixture(name: &str) -> PathBuf {
    Path::new(REPO).join("tests/fixtures/rules").join(name)
}

/// `rules test` on a fixture at a fixed time, with the paths that depend on where the
/// repository and the temporary copy are made neutral.
fn dry_run(desk: &Desk, name: &str, extra: &[&str]) -> String {
    let path = fixture(name);
    let path = path.to_str().unwrap();
    let mut args = vec!["rules", "test", path, "--at", AT];
    args.extend_from_slice(extra);
    let out = desk.ok(&args);
    out.replace(&format!("{REPO}/"), "")
        .replace(desk.dir.path().to_str().unwrap(), "<tmp>")
}

/// The mails part of a dry run: each `mail i of n: to X` and its text.
fn mails_in(output: &str) -> Vec<(String, String)> {
    let mut mails = Vec::new();
    let mut rest = output;
    while let Some(at) = rest.find("\nmail ") {
        let block = &rest[at + 1..];
        let head = block.lines().next().unwrap();
        let to = head
            .split(": to ")
            .nth(1)
            .and_then(|t| t.split(" (").next())
            .unwrap()
            .to_string();
        let end = block[head.len()..]
            .find("\nmail ")
            .map_or(block.len(), |i| i + head.len());
        mails.push((to, block[..end].to_string()));
        rest = &block[end..];
    }
    mails
}

#[test]
fn rules_test_french_message_from_an_unregistered_sender() {
    let desk = Desk::demo();
    let out = dry_run(
        &desk,
        "cerberus-sample9-fr-TR-forward-ticket-address.eml",
        &[],
    );
    assert!(
        out.contains("\nmailbox   support (role support)\n"),
        "{out}"
    );
    assert!(
        out.contains("\nsender    unregistered sender test@test.com\n"),
        "{out}"
    );
    assert!(out.contains("\nthread    new ticket\n"), "{out}");
    assert!(out.contains("unregistered-sender-notice"), "{out}");
    let mails = mails_in(&out);
    assert_eq!(mails.len(), 1, "{out}");
    assert_eq!(mails[0].0, "test@test.com");
    assert!(
        mails[0]
            .1
            .contains("\nSubject: Your message to ACME Hosting support\n"),
        "{out}"
    );
    for account in [
        "C100",
        "Jane Doe",
        "Mario Rossi",
        "Claire Martin",
        "BigShop",
    ] {
        assert!(!out.contains(account), "no customer data: {account}\n{out}");
    }
    snapshot("rules_test_fr_unregistered_support", &out);
}

#[test]
fn rules_test_arf_report_opens_a_case_tells_staff_and_answers_no_robot() {
    let desk = Desk::demo();
    let out = dry_run(&desk, "abuseio-fbl-aol-1.eml", &["--mailbox", "abuse"]);
    assert!(out.contains("\nmailbox   abuse (role abuse)\n"), "{out}");
    assert!(out.contains("abuse-feedback-report"), "{out}");
    assert!(
        out.contains("open an abuse case: category feedback-report, severity low"),
        "{out}"
    );
    assert!(
        out.contains("no automatic answer: automated message"),
        "{out}"
    );
    // The reporting robot is not answered; staff are told, to triage it.
    let tos: Vec<String> = mails_in(&out).into_iter().map(|(to, _)| to).collect();
    assert_eq!(tos, ["luca@acme-hosting.example"], "{out}");
    snapshot("rules_test_arf_aol", &out);
}

#[test]
fn rules_test_phishing_report_acknowledges_the_reporter_without_customer_data() {
    let desk = Desk::demo();
    let out = dry_run(
        &desk,
        "cerberus-lexsi-phishing-fr.eml",
        &["--mailbox", "abuse"],
    );
    assert!(out.contains("\nlanguage  fr\n"), "{out}");
    assert!(out.contains("abuse-phishing"), "{out}");
    assert!(
        out.contains("open an abuse case: category phishing, severity high"),
        "{out}"
    );
    let mails = mails_in(&out);
    let tos: Vec<&str> = mails.iter().map(|(to, _)| to.as_str()).collect();
    assert_eq!(
        tos,
        ["luca@acme-hosting.example", "cert-soc@lexsi.com"],
        "{out}"
    );
    let to_reporter = &mails[1].1;
    assert!(
        to_reporter.contains("Type d'abus : phishing"),
        "{to_reporter}"
    );
    for private in ["Customer", "Client", "C100", "Registered", "registered"] {
        assert!(
            !to_reporter.contains(private),
            "the reporter learns nothing about customers ({private}):\n{to_reporter}"
        );
    }
    assert!(
        to_reporter.contains("Auto-Submitted: auto-replied"),
        "{to_reporter}"
    );
    snapshot("rules_test_phishing_fr", &out);
}

#[test]
fn rules_test_auto_reply_is_never_answered() {
    let desk = Desk::demo();
    let out = dry_run(&desk, "sisimai-rfc3834-01.eml", &[]);
    assert!(
        out.contains("no automatic answer: automated message: Auto-Submitted: auto-replied"),
        "{out}"
    );
    assert!(!out.contains("\n  send "), "{out}");
    assert!(out.ends_with("\nmails: none\n"), "{out}");
    snapshot("rules_test_autoreply", &out);
}

#[test]
fn rules_test_json_has_the_whole_decision() {
    let desk = Desk::demo();
    let path = fixture("cerberus-lexsi-phishing-fr.eml");
    let args = [
        "rules",
        "test",
        path.to_str().unwrap(),
        "--mailbox",
        "abuse",
        "--at",
        AT,
    ];
    let v = desk.json(&[&args[..], &["--json"]].concat());

    assert_eq!(v["sender"], "unregistered sender cert-soc@lexsi.com");
    assert_eq!(v["language"], "fr");
    assert_eq!(v["business_hours"], true, "Monday 11:00 in Rome");
    assert!(v["ticket"].is_null(), "a new ticket");

    let effects = v["decision"]["effects"].as_array().expect("effects");
    assert_eq!(effects[0]["effect"], "open_ticket");
    assert!(
        effects[0]["subject"]
            .as_str()
            .unwrap()
            .starts_with("[URGENT] SUSPENSION REQUISE"),
        "{:#}",
        effects[0]
    );
    let has = |want: serde_json::Value| effects.contains(&want);
    assert!(has(serde_json::json!({
        "effect": "open_abuse_case", "category": "phishing", "severity": "high"
    })));
    assert!(has(serde_json::json!({
        "effect": "send", "template": "staff_notice", "to": {"kind": "staff"}
    })));
    assert!(has(serde_json::json!({
        "effect": "send", "template": "abuse_ack",
        "to": {"kind": "sender", "address": "cert-soc@lexsi.com"}
    })));

    let evaluation = &v["decision"]["evaluation"];
    let abuse_rules = std::fs::read_to_string(rules_dir(&desk).join("20-abuse.toml")).unwrap();
    let matched = evaluation["matched"].as_array().expect("matched");
    let names: Vec<&str> = matched
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["abuse-report", "abuse-phishing"]);
    for m in matched {
        let name = m["name"].as_str().unwrap();
        assert!(
            m["file"].as_str().unwrap().ends_with("rules/20-abuse.toml"),
            "{m:#}"
        );
        assert_eq!(
            m["line"],
            line_of(&abuse_rules, &format!("name = \"{name}\"")),
            "{m:#}"
        );
        assert_eq!(m["stop"], false);
        let reasons = m["reasons"].as_array().unwrap();
        assert!(!reasons.is_empty());
        for r in reasons {
            assert!(
                r["condition"].is_string() && r["matched"].is_string(),
                "{r:#}"
            );
        }
    }
    let body = matched[1]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["condition"].as_str().unwrap().starts_with("body ~ "))
        .expect("the body condition");
    assert_eq!(body["matched"], "phishing");
    assert_eq!(
        evaluation["abuse_case"],
        serde_json::json!({"category": "phishing", "severity": "high"})
    );

    let mails = v["mails"].as_array().expect("mails");
    assert_eq!(mails.len(), 2);
    for m in mails {
        for key in ["message_id", "from", "to", "subject", "raw"] {
            assert!(m[key].is_string(), "{key} in {m:#}");
        }
        assert_eq!(m["from"], "abuse@acme-hosting.example");
        let raw = m["raw"].as_str().unwrap();
        assert!(
            raw.contains(&format!(
                "Message-ID: <{}>\r\n",
                m["message_id"].as_str().unwrap()
            )),
            "{raw}"
        );
    }
    assert_eq!(mails[0]["to"], "luca@acme-hosting.example");
    assert_eq!(mails[1]["to"], "cert-soc@lexsi.com");
    assert_eq!(
        mails[1]["subject"],
        "[ACME #1] Votre signalement d'abus a bien été reçu"
    );

    // The text output describes the same mails.
    let text = dry_run(
        &desk,
        "cerberus-lexsi-phishing-fr.eml",
        &["--mailbox", "abuse"],
    );
    for m in mails {
        let id = m["message_id"].as_str().unwrap();
        assert!(
            text.contains(&format!("Message-ID: <{id}>")),
            "{id}\n{text}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 5. no header injection through a variable fed by the incoming message
// ---------------------------------------------------------------------------------------

#[test]
fn no_incoming_subject_can_add_a_header_to_our_mails() {
    let desk = Desk::empty();
    // A template that puts the incoming subject into ours, sent to every new ticket,
    // besides support_ack and staff_notice, which use the ticket's subject.
    std::fs::write(
        templates_dir(&desk).join("en/echo_subject.txt"),
        "Subject: Re: {{ message.subject }}\nAudience: sender\n\nWe got your message: {{ message.subject }}\n",
    )
    .unwrap();
    std::fs::write(
        rules_dir(&desk).join("90-echo.toml"),
        "[[rule]]\nname = \"echo-subject\"\nwhen.role = \"support\"\nwhen.new_ticket = true\nthen.reply = \"echo_subject\"\nthen.notify_staff = \"header injection test\"\n",
    )
    .unwrap();
    // Five messages from one customer, two answers each: above the default rate limit.
    desk.append_config("[limits]\nper_address = 100");
    desk.ok(&["check"]);

    // (subject header as sent, the address the injection tries to add)
    let attempts = [
        // base64 encoded-word: "Help\r\nBcc: x1@evil.test"
        (
            "=?utf-8?b?SGVscA0KQmNjOiB4MUBldmlsLnRlc3Q=?=",
            "x1@evil.test",
        ),
        // quoted-printable encoded-word with CR LF
        (
            "=?utf-8?q?Question=0D=0ABcc:_x2@evil.test?=",
            "x2@evil.test",
        ),
        // a folded header: the continuation line is part of the subject
        ("Folded\r\n Bcc: x3@evil.test", "x3@evil.test"),
        // a bare LF inside an encoded word, then a bare CR in the raw header
        ("=?utf-8?b?TEYKQmNjOiB4NEBldmlsLnRlc3Q=?=", "x4@evil.test"),
        ("Bare CR\rBcc: x5@evil.test", "x5@evil.test"),
    ];
    for (i, (subject, _)) in attempts.iter().enumerate() {
        let raw = format!(
            "From: Jane Doe <jane.doe@janedoe.example>\r\nTo: support@acme-hosting.example\r\nSubject: {subject}\r\nMessage-ID: <inject-{i}@mail.janedoe.example>\r\nDate: Mon, 23 Nov 2026 09:00:00 +0000\r\n\r\nPlease have a look.\r\n"
        );
        desk.deliver(&format!("1763900{i:03}.M{i}P1.test"), raw.as_bytes());
    }
    let summary = desk.ok(&["run", "--once"]);
    assert!(summary.contains("stored 5 message(s)"), "{summary}");

    let mails = desk.sent_mails();
    // Each message: support_ack to the registered address, echo_subject to the sender,
    // staff_notice to the staff member.
    assert_eq!(mails.len(), attempts.len() * 3, "{summary}");
    for (_, evil) in &attempts {
        let carrying: Vec<&String> = mails.iter().filter(|m| m.contains(evil)).collect();
        assert_eq!(carrying.len(), 3, "three mails mention {evil}");
        for mail in carrying {
            let text = mail.replace("\r\n", "\n");
            let head = text.split("\n\n").next().unwrap();
            let subjects = head
                .lines()
                .filter(|l| l.to_ascii_lowercase().starts_with("subject:"))
                .count();
            assert_eq!(subjects, 1, "exactly one Subject line:\n{mail}");
            for line in text.lines() {
                assert!(
                    !line.to_ascii_lowercase().starts_with("bcc:"),
                    "no Bcc line anywhere:\n{mail}"
                );
            }
            let subject = header(mail, "Subject").expect("a subject");
            assert!(
                subject.contains(&format!("Bcc: {evil}")),
                "the injected text stays inside the subject: {subject:?}\n{mail}"
            );
            let to = header(mail, "To").unwrap();
            assert!(!to.contains("evil"), "{mail}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// 6. rules test changes nothing
// ---------------------------------------------------------------------------------------

fn counts(desk: &Desk) -> Vec<(&'static str, i64)> {
    let conn = open(desk);
    [
        "tickets",
        "messages",
        "outbox",
        "events",
        "ticket_tags",
        "incidents",
    ]
    .into_iter()
    .map(|table| {
        let n = conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap();
        (table, n)
    })
    .collect()
}

fn out_files(desk: &Desk) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(desk.out_dir()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn rules_test_changes_nothing_in_the_database_or_the_outbox() {
    let desk = Desk::demo();
    desk.ok(&["run", "--once"]);
    let db_file = desk.examples().join("demo.db");
    let before = counts(&desk);
    let files = out_files(&desk);
    assert_eq!(files.len(), 5, "the demo's answers");
    let bytes = std::fs::read(&db_file).unwrap();

    let scratch = desk.dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    // A new urgent ticket: would notify staff and acknowledge the customer.
    let down = scratch.join("down.eml");
    std::fs::write(
        &down,
        "From: Jane Doe <jane.doe@janedoe.example>\r\nTo: support@acme-hosting.example\r\nSubject: Website down\r\nMessage-ID: <dry-down@mail.janedoe.example>\r\n\r\nOur website is completely down since 9:00.\r\n",
    )
    .unwrap();
    // A follow-up on Jane's existing ticket.
    let (number, subject): (i64, String) = open(&desk)
        .query_row(
            "SELECT t.number, t.subject FROM tickets t JOIN accounts a ON a.id = t.account_id
              WHERE a.email = 'jane.doe@janedoe.example' ORDER BY t.number LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let follow_up = scratch.join("follow-up.eml");
    std::fs::write(
        &follow_up,
        format!("From: Jane Doe <jane.doe@janedoe.example>\r\nTo: support@acme-hosting.example\r\nSubject: Re: [ACME #{number}] {subject}\r\nMessage-ID: <dry-follow@mail.janedoe.example>\r\n\r\nIt still fails.\r\n"),
    )
    .unwrap();
    // A message already stored.
    let stored = desk.maildir().join("cur").join(&desk.files_in("cur")[0]);

    let out = desk.ok(&["rules", "test", down.to_str().unwrap()]);
    assert!(out.contains("\nthread    new ticket\n"), "{out}");
    assert!(out.contains("send staff_notice"), "{out}");
    assert!(out.contains("send support_ack"), "{out}");
    let out = desk.ok(&["rules", "test", follow_up.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ticket"], number, "{out}");
    let out = desk.ok(&["rules", "test", stored.to_str().unwrap()]);
    assert!(out.contains("already stored"), "{out}");

    assert_eq!(counts(&desk), before);
    assert_eq!(out_files(&desk), files, "nothing written to out/mail");
    assert!(
        std::fs::read(&db_file).unwrap() == bytes,
        "the database file is unchanged"
    );
    // Nothing was sent either: the next real run sends only what the new mail causes.
    let summary = desk.ok(&["run", "--once"]);
    assert!(
        summary.contains("stored 0 message(s)") && summary.contains("sent 0 mail(s)"),
        "{summary}"
    );
}

#[test]
fn check_finds_a_template_that_would_print_an_empty_value_and_a_misplaced_audience() {
    let desk = Desk::demo();
    let dir = templates_dir(&desk);
    // ticket.category may be none: printed unguarded, a mail would read "none".
    let unguarded = "Subject: {{ ticket.tag }} [{{ ticket.category }}] Hello\nAudience: account\n\nHello {{ account.name }}\n";
    write_file(&dir.join("en/category_ack.txt"), unguarded);
    // Audience first, Subject second: the mismatch is reported on the Audience line.
    write_file(
        &dir.join("en/two_audiences.txt"),
        "Subject: x\nAudience: account\n\nHello\n",
    );
    write_file(
        &dir.join("fr/two_audiences.txt"),
        "Audience: staff\nSubject: x\n\nBonjour\n",
    );
    let out = desk.maildesk(&["check"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let all = problems(&err);
    let p = the_problem(&all, "category_ack.txt", "can be none");
    assert_eq!(p.line, Some(1), "{p:#?}");
    let p = the_problem(&all, "two_audiences.txt", "Audience: staff differs");
    assert!(p.file.contains("/fr/"), "{p:#?}");
    assert_eq!(p.line, Some(1), "{p:#?}");
    assert!(p.message.contains("(account)"), "{p:#?}");
}

#[test]
fn check_ignores_the_report_of_a_daemon_that_is_gone() {
    let desk = Desk::demo();
    let health = desk.examples().join("demo.health.json");
    let report = |pid: u32| {
        serde_json::json!({
            "pid": pid,
            "started_at": "2026-11-23T10:00:00Z",
            "policy_loaded_at": "2026-11-23T10:00:00Z",
            "rules": 1,
            "rejected": {"at": "2026-11-23T10:05:00Z", "problems": ["rules/x.toml:1: error: broken"]},
        })
        .to_string()
    };
    // A live process (this test) refused the files: check says so.
    write_file(&health, &report(std::process::id()));
    let err = stderr(&desk.maildesk(&["check"]));
    assert!(err.contains("refused to reload"), "{err}");
    // No process has this pid: the report is stale and not shown.
    write_file(&health, &report(u32::MAX - 1));
    let out = desk.maildesk(&["check"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!stderr(&out).contains("refused"), "{}", stderr(&out));
}
