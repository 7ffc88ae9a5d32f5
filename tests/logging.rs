//! The log lines an operator reads (issue 11, item 8): one INFO line per stored message
//! and per sent mail, an error per mail given up, `--log-format json`, and journald
//! priorities under systemd.

mod common;

use std::process::{Command, Output};

use common::Desk;
use common::smtp::free_port;

/// `maildesk --config <demo> ARGS run --once` at level info; `journal` sets
/// `JOURNAL_STREAM` as systemd does for `StandardError=journal`.
fn run_once(desk: &Desk, args: &[&str], journal: bool) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_maildesk"));
    command
        .arg("--config")
        .arg(desk.config())
        .args(args)
        .args(["run", "--once"])
        .env("RUST_LOG", "info")
        .env_remove("JOURNAL_STREAM");
    if journal {
        command.env("JOURNAL_STREAM", "1:1");
    }
    let out = command.output().expect("run maildesk");
    assert!(out.status.success(), "{}", common::stderr(&out));
    out
}

#[test]
fn under_journald_every_line_starts_with_its_priority() {
    let desk = Desk::demo();
    // Nothing listens there and no mail may wait: every delivery is given up, an error.
    desk.use_smtp(free_port());
    desk.edit_config(
        "security = \"plain\"",
        "security = \"plain\"\nmax_age_hours = 0",
    );
    let log = common::stderr(&run_once(&desk, &[], true));
    let lines: Vec<&str> = log.lines().collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let priority = line.get(..3).unwrap_or_default();
        assert!(
            ["<3>", "<4>", "<6>", "<7>"].contains(&priority),
            "no priority: {line:?}"
        );
        // The level and the priority agree.
        let level = line[3..].split_whitespace().next().unwrap_or_default();
        let expected = match level {
            "ERROR" => "<3>",
            "WARN" => "<4>",
            "INFO" => "<6>",
            _ => "<7>",
        };
        assert_eq!(priority, expected, "{line}");
    }
    let stored = lines
        .iter()
        .filter(|l| l.starts_with("<6>") && l.contains("stored message"))
        .count();
    assert_eq!(stored, 7, "{log}");
    let given_up: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("<3>") && l.contains("delivery given up"))
        .collect();
    // The five answers and the four alerts to staff about those not to staff.
    assert_eq!(given_up.len(), 9, "{log}");
    for line in given_up {
        for field in ["ticket=", "message_id=", "recipient=", "reason="] {
            assert!(line.contains(field), "no {field} in {line}");
        }
    }
}

#[test]
fn json_lines_name_each_message_and_each_mail() {
    let desk = Desk::demo();
    let out = run_once(&desk, &["--log-format", "json"], false);
    let events: Vec<serde_json::Value> = common::stderr(&out)
        .lines()
        .map(|line| {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert!(value.is_object(), "{line}");
            value
        })
        .collect();
    let named = |message: &str| -> Vec<&serde_json::Value> {
        events.iter().filter(|e| e["message"] == message).collect()
    };
    let stored = named("stored message");
    assert_eq!(stored.len(), 7, "{events:#?}");
    for event in &stored {
        assert_eq!(event["level"], "INFO");
        assert_eq!(event["mailbox"], "support");
        for field in ["source_key", "sender", "decided"] {
            assert!(event[field].is_string(), "{field} in {event}");
        }
        assert!(event["ticket"].is_i64(), "{event}");
    }
    // What the demo's messages come to (README: What the demo shows).
    let decided = |sender: &str, decided: &str| {
        stored
            .iter()
            .any(|e| e["sender"] == sender && e["decided"].as_str().unwrap().starts_with(decided))
    };
    assert!(decided("unregistered", "queued unregistered_notice"));
    assert!(decided("registered", "reply suppressed: automated message"));
    assert!(decided("unknown", "flagged: malformed message"));
    assert!(decided("registered", "flagged: service fully down"));
    // Each sent mail, by the Message-ID and recipient the outbox has for it.
    let sent = named("sent mail");
    let outbox: Vec<(i64, String, String)> = {
        let db = desk.db();
        let mut rows = db
            .prepare(
                "SELECT m.ticket, m.message_id, o.recipient FROM outbox o
                   JOIN messages m ON m.id = o.message ORDER BY o.id",
            )
            .unwrap();
        rows.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(outbox.len(), 5);
    let logged: Vec<(i64, String, String)> = sent
        .iter()
        .map(|e| {
            (
                e["ticket"].as_i64().unwrap(),
                e["message_id"].as_str().unwrap().to_string(),
                e["recipient"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(logged, outbox);
}
