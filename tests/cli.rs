//! The operator's commands at a terminal: `tickets`, `outbox`, `accounts list`. Output that
//! a person reads is compared with snapshots; mail text must never reach the terminal as
//! control sequences; a reader that goes away ends a command quietly.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::smtp::{SmtpSink, free_port};
use common::snapshot::snapshot;
use common::{Daemon, Desk, header, stderr};
use regex::Regex;
use unicode_width::UnicodeWidthStr;

/// A mail from a stranger whose subject and body try to clear the screen, ring the bell,
/// set the window title and reverse the text; its body is longer than a screen.
fn hostile_mail() -> Vec<u8> {
    let mut body = String::from(
        "Hello\x1b[2J\x07 there, \u{9b}2J.\r\n\tIndented\x1b]0;pwned\x07 line, \u{202e}desrever\u{202c}.\r\n",
    );
    for i in 1..=30 {
        body.push_str(&format!("line {i} of the quota report\r\n"));
    }
    format!(
        "From: Eve <eve@evil.example>\r\nTo: support@acme-hosting.example\r\n\
         Subject: Invoice \x1b[2J\x07 overdue\r\nMessage-ID: <hostile@evil.example>\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0100\r\n\r\n{body}"
    )
    .into_bytes()
}

/// The demo after one run, plus the hostile mail as ticket 7.
fn desk_with_hostile_mail() -> Desk {
    let desk = Desk::demo();
    desk.deliver("1763900000.M9P9.demo", &hostile_mail());
    desk.ok(&["run", "--once"]);
    // mail-parser drops control characters from the subject it decodes; the display must
    // not rely on that (a database written by another version, a rule's text): the stored
    // subject gets them back.
    desk.db()
        .execute_batch(
            "UPDATE tickets SET subject = 'Invoice ' || char(27) || '[2J' || char(7) || ' overdue'
              WHERE number = 7;
             UPDATE messages SET subject = (SELECT subject FROM tickets WHERE number = 7)
              WHERE ticket = 7 AND direction = 'in';",
        )
        .unwrap();
    desk
}

/// Times and the temporary directory depend on the run: replaced by placeholders.
fn normalized(desk: &Desk, text: &str) -> String {
    let text = text.replace(desk.dir.path().to_str().unwrap(), "<tmp>");
    let long = Regex::new(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [A-Z]+").unwrap();
    let short = Regex::new(r"\d\d-\d\d \d\d:\d\d").unwrap();
    let text = long.replace_all(&text, "<time>");
    short.replace_all(&text, "MM-DD hh:mm").into_owned()
}

/// No byte of the output can drive a terminal: only printable text, newlines and tabs.
fn assert_terminal_safe(output: &str) {
    let bad: Vec<char> = output
        .chars()
        .filter(|&c| c.is_control() && c != '\n' && c != '\t' || c == '\u{202e}')
        .collect();
    assert!(bad.is_empty(), "control characters {bad:?} in:\n{output}");
}

#[test]
fn tickets_list_shows_times_category_case_and_flag_in_100_columns() {
    let desk = desk_with_hostile_mail();
    // An abuse case and a queue, as rules set them.
    desk.db()
        .execute_batch(
            "UPDATE tickets SET queue = 'mail', case_category = 'phishing', case_severity = 'critical'
              WHERE number = 2",
        )
        .unwrap();
    let text = desk.ok(&["tickets", "list"]);
    assert_terminal_safe(&text);
    for line in text.lines() {
        assert!(line.width() <= 100, "{} columns: {line}", line.width());
    }
    assert!(text.contains(r"Invoice \x1b[2J\x07 overdue"), "{text}");
    snapshot("cli_tickets_list", &normalized(&desk, &text));

    let json = desk.json(&["tickets", "list", "--json"]);
    let two = &json[1];
    for (field, value) in [
        ("queue", "mail"),
        ("case_category", "phishing"),
        ("case_severity", "critical"),
    ] {
        assert_eq!(two[field], value, "{json:#}");
    }
    assert_eq!(json[0]["category"], "outage");
    assert_eq!(json[0]["needs_staff"], true);
    assert!(json[0]["created_at"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn tickets_show_prints_every_message_whole_and_control_characters_visibly() {
    let desk = desk_with_hostile_mail();
    let text = desk.ok(&["tickets", "show", "7"]);
    assert_terminal_safe(&text);
    assert!(
        text.contains(r"Subject: Invoice \x1b[2J\x07 overdue"),
        "{text}"
    );
    assert!(text.contains("   | \tIndented\\x1b]0;pwned\\x07 line, \\u{202e}desrever"));
    assert!(
        text.contains("line 30 of the quota report"),
        "whole: {text}"
    );
    snapshot("cli_tickets_show", &normalized(&desk, &text));

    // --raw: the stored bytes, exactly, into a pipe.
    let thread = desk.json(&["tickets", "show", "7", "--json"]);
    let id = thread["messages"][0]["id"].as_i64().unwrap();
    let raw = desk.maildesk(&["tickets", "show", "7", "--raw", &id.to_string()]);
    assert!(raw.status.success());
    assert_eq!(raw.stdout, hostile_mail());
    let other = desk.maildesk(&["tickets", "show", "1", "--raw", &id.to_string()]);
    assert_eq!(other.status.code(), Some(1));
    assert!(stderr(&other).contains(&format!("ticket 1 has no message {id}")));
}

#[test]
fn tickets_list_filters_and_searches() {
    let desk = desk_with_hostile_mail();
    let numbers = |args: &[&str]| -> Vec<i64> {
        let mut all = vec!["tickets", "list", "--json"];
        all.extend_from_slice(args);
        desk.json(&all)
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["number"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(numbers(&[]), vec![1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(numbers(&["--account", "C1002"]), vec![2]);
    assert_eq!(numbers(&["--flagged"]), vec![1, 6]);
    assert_eq!(numbers(&["--mailbox", "support"]).len(), 7);
    assert_eq!(numbers(&["--status", "new", "--account", "C1001"]), vec![1]);
    // Text of a follow-up, in any case; a subject word; a sender; accents ignored.
    assert_eq!(numbers(&["--search", "starttls"]), vec![2]);
    assert_eq!(numbers(&["--search", "quota report"]), vec![7]);
    assert_eq!(numbers(&["--search", "eve@evil.example"]), vec![7]);
    assert_eq!(
        numbers(&["--search", "expire"]),
        vec![4],
        "Certificat SSL expiré"
    );
    assert!(numbers(&["--search", "quota nowhere"]).is_empty());
    // Query syntax is taken as words, not as FTS5 operators.
    assert_eq!(
        numbers(&["--search", "\"STARTTLS\" NEAR( -*"]),
        Vec::<i64>::new()
    );
    assert_eq!(numbers(&["--search", "(STARTTLS* -\""]), vec![2]);

    for (args, error) in [
        (
            vec!["--status", "pending"],
            "[possible values: new, open, waiting, resolved, closed]",
        ),
        (
            vec!["--mailbox", "abuse"],
            "unknown mailbox \"abuse\"; the configured mailboxes are: support",
        ),
        (vec!["--account", "C9"], "no account with reference \"C9\""),
        (
            vec!["--search", " -*( "],
            "--search needs at least one word",
        ),
    ] {
        let mut all = vec!["tickets", "list"];
        all.extend_from_slice(&args);
        let out = desk.maildesk(&all);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(error), "{args:?}: {}", stderr(&out));
    }
}

/// Runs maildesk with stdout a pipe whose reading end is already closed.
fn run_into_closed_pipe(desk: &Desk, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut process = Daemon::start(
        Command::new(env!("CARGO_BIN_EXE_maildesk"))
            .arg("--config")
            .arg(desk.config())
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(writer),
    );
    let (status, _) = process.wait_exit(Duration::from_secs(20));
    Output {
        status,
        stdout: Vec::new(),
        stderr: process.log().into_bytes(),
    }
}

#[test]
fn a_closed_stdout_ends_each_command_quietly() {
    let desk = desk_with_hostile_mail();
    let thread = desk.json(&["tickets", "show", "7", "--json"]);
    let id = thread["messages"][0]["id"].to_string();
    let message = desk.dir.path().join("hostile.eml");
    std::fs::write(&message, hostile_mail()).unwrap();
    let message = message.to_str().unwrap();
    for args in [
        &["check"][..],
        &["config"],
        &["rules", "test", message],
        &["run", "--once"],
        &["tickets", "list"][..],
        &["tickets", "list", "--json"],
        &["tickets", "show", "7"],
        &["tickets", "show", "7", "--raw", &id],
        &["outbox", "list"],
        &["outbox", "show", "1"],
        &["accounts", "list"],
    ] {
        let out = run_into_closed_pipe(&desk, args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{args:?}");
    }
}

#[test]
fn read_only_commands_never_create_the_database() {
    let desk = Desk::demo();
    let db = desk.examples().join("demo.db");
    for args in [
        &["tickets", "list"][..],
        &["tickets", "show", "1"],
        &["outbox", "list"],
        &["outbox", "cancel", "1"],
        &["accounts", "list"],
    ] {
        let out = desk.maildesk(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&out).contains(&format!("database {} does not exist", db.display())),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(!db.exists(), "{args:?} created the database");
    }
}

#[test]
fn an_older_database_is_not_upgraded_by_a_reading_command() {
    let desk = Desk::demo();
    desk.ok(&["run", "--once"]);
    desk.db().pragma_update(None, "user_version", 5).unwrap();
    let out = desk.maildesk(&["tickets", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("has schema version 5, this maildesk reads version 6"),
        "{}",
        stderr(&out)
    );
    let version: u32 = desk
        .db()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 5);
}

#[test]
fn version_is_printed() {
    let out = Command::new(env!("CARGO_BIN_EXE_maildesk"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("maildesk {}\n", env!("CARGO_PKG_VERSION"))
    );
}

fn maildesk_as(desk: &Desk, user: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_maildesk"))
        .arg("--config")
        .arg(desk.config())
        .args(args)
        .env("USER", user)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// The queue while the relay is down, a cancelled mail, a retry once it is up: all but the
/// cancelled mail arrive, once.
#[test]
fn outbox_commands_against_a_stopped_and_then_running_smtp_server() {
    let desk = Desk::demo();
    let port = free_port();
    desk.use_smtp(port);
    let out = desk.maildesk(&["run", "--once"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "mail deferred: {}",
        stderr(&out)
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("sent 0 mail(s), 5 deferred"), "{summary}");

    let deferred = desk.json(&["outbox", "list", "--status", "deferred", "--json"]);
    let deferred = deferred.as_array().unwrap();
    assert_eq!(deferred.len(), 5);
    for mail in deferred {
        assert_eq!(mail["status"], "pending");
        assert_eq!(mail["attempts"], 1);
        assert!(!mail["last_error"].as_str().unwrap().is_empty(), "{mail}");
    }
    let text = desk.ok(&["outbox", "list"]);
    assert_terminal_safe(&text);
    assert_eq!(text.matches(" deferred ").count(), 5, "{text}");
    let error = deferred[0]["last_error"].as_str().unwrap();
    assert!(text.contains(&format!("        ({error})")), "{text}");
    snapshot("cli_outbox_list_deferred", &normalized(&desk, &text));

    // Cancel the acknowledgement to Jane (ticket 2).
    let jane = deferred
        .iter()
        .find(|m| m["recipient"] == "jane.doe@janedoe.example")
        .unwrap();
    let id = jane["id"].to_string();
    let out = maildesk_as(&desk, "alice", &["outbox", "cancel", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let again = maildesk_as(&desk, "alice", &["outbox", "cancel", &id]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains(&format!(
        "outbox mail {id} is cancelled; only pending mail can be cancelled"
    )));
    let retry = desk.maildesk(&["outbox", "retry", &id]);
    assert_eq!(retry.status.code(), Some(1));
    assert!(stderr(&retry).contains("only pending mail can be retried"));
    let missing = desk.maildesk(&["outbox", "cancel", "99"]);
    assert!(stderr(&missing).contains("no outbox mail 99"));
    let thread = desk.json(&["tickets", "show", "2", "--json"]);
    let event = thread["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "mail.cancelled")
        .expect("a mail.cancelled event");
    assert_eq!(event["actor"], "admin:alice");
    assert_eq!(event["detail"], "to jane.doe@janedoe.example");
    let shown = desk.ok(&["outbox", "show", &id]);
    assert!(shown.contains("state cancelled, 1 attempt(s)"), "{shown}");
    assert!(shown.contains("To: jane.doe@janedoe.example"), "{shown}");

    // The server is up; the mails are not due yet until retried.
    let sink = SmtpSink::start_on(desk.dir.path(), port);
    let summary = desk.ok(&["run", "--once"]);
    assert!(summary.contains("sent 0 mail(s), 0 deferred"), "{summary}");
    let retried = desk.ok(&["outbox", "retry", "--all"]);
    assert!(
        retried.starts_with("4 pending mail(s) due now"),
        "{retried}"
    );
    let summary = desk.ok(&["run", "--once"]);
    assert!(summary.contains("sent 4 mail(s), 0 deferred"), "{summary}");
    desk.ok(&["outbox", "retry", "--all"]);
    desk.ok(&["run", "--once"]);

    let received = sink.received();
    assert_eq!(received.len(), 4);
    assert!(
        received
            .iter()
            .all(|m| header(m, "X-RcptTo").unwrap() != "jane.doe@janedoe.example"),
        "the cancelled mail was sent"
    );
    let states: Vec<String> = desk
        .json(&["outbox", "list", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(states.iter().filter(|s| *s == "sent").count(), 4);
    assert_eq!(states.iter().filter(|s| *s == "cancelled").count(), 1);
    assert_eq!(
        desk.json(&["outbox", "list", "--status", "cancelled", "--json"])[0]["id"].to_string(),
        id
    );
}

/// The operator's writes (retry, cancel, import) succeed while the daemon stores mail and
/// retries deliveries on the same database.
#[test]
fn write_commands_work_while_the_daemon_writes() {
    let desk = Desk::demo();
    desk.use_smtp(free_port());
    desk.edit_config("poll_interval_secs = 30", "poll_interval_secs = 1");
    let daemon = desk.spawn_daemon();
    common::wait_for("the demo mail stored", Duration::from_secs(20), || {
        desk.stored() == 7
    });
    let accounts = desk.examples().join("accounts.csv");
    let accounts = accounts.to_str().unwrap();
    let mut cancelled = 0;
    for round in 0..15 {
        for i in 0..20 {
            desk.deliver(
                &format!("1763900000.M{round}x{i}P1.demo"),
                format!(
                    "From: mario.rossi@pizzeria-rossi.example\r\nTo: support@acme-hosting.example\r\n\
                     Subject: Question {round}-{i}\r\nMessage-ID: <q{round}x{i}@pizzeria-rossi.example>\r\n\r\n\
                     Round {round}, mail {i}.\r\n"
                )
                .as_bytes(),
            );
        }
        desk.ok(&["outbox", "retry", "--all"]);
        desk.ok(&["accounts", "import", accounts]);
        let pending = desk.json(&["outbox", "list", "--status", "pending", "--json"]);
        if let Some(mail) = pending.as_array().unwrap().last() {
            let out = desk.maildesk(&["outbox", "cancel", &mail["id"].to_string()]);
            // The daemon may have given it up in between; anything else is a failure.
            assert!(
                out.status.success() || stderr(&out).contains("only pending mail"),
                "{}",
                stderr(&out)
            );
            cancelled += usize::from(out.status.success());
        }
    }
    common::wait_for("every mail stored", Duration::from_secs(60), || {
        desk.files_in("new").is_empty()
    });
    common::terminate(daemon);
    assert_eq!(desk.stored(), 7 + 15 * 20);
    assert!(cancelled > 0);
    let events: i64 = desk
        .db()
        .query_row(
            "SELECT count(*) FROM events WHERE kind = 'mail.cancelled'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(events, cancelled as i64);
}

/// `rules test` shows the message's text and the mails it would send; escape sequences
/// in them reach the terminal as visible escapes, never as control bytes.
#[test]
fn rules_test_shows_control_characters_visibly() {
    let desk = Desk::demo();
    // A rule whose match spans the escape sequence: the match is shown.
    std::fs::write(
        desk.dir.path().join("rules/50-hostile.toml"),
        "[[rule]]\nname = \"hostile\"\nwhen.body = 'Hello.{1,8}there'\nthen.tags = [\"seen\"]\n",
    )
    .unwrap();
    let message = desk.dir.path().join("hostile.eml");
    std::fs::write(&message, hostile_mail()).unwrap();
    let out = desk.ok(&["rules", "test", message.to_str().unwrap()]);
    assert!(
        out.contains(r#"matched "Hello\u{1b}[2J\u{7} there""#),
        "{out}"
    );
    assert!(
        !out.chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t'),
        "{out:?}"
    );
}
