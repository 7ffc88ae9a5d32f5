//! Delivery through a real SMTP server (aiosmtpd on loopback).

mod common;

use common::smtp::{SmtpSink, free_port};
use common::{Desk, header};

#[test]
fn acknowledgements_reach_a_real_smtp_server() {
    let desk = Desk::demo();
    let sink = SmtpSink::start(desk.dir.path());
    desk.use_smtp(sink.port);
    let summary = desk.ok(&["run", "--once"]);
    assert!(summary.contains("sent 5 mail(s), 0 deferred"), "{summary}");
    let received = sink.received();
    assert_eq!(received.len(), 5);
    let mut recipients: Vec<String> = received
        .iter()
        .map(|m| header(m, "X-RcptTo").unwrap())
        .collect();
    recipients.sort();
    assert_eq!(
        recipients,
        vec![
            "claire.martin@boulangerie-martin.example",
            "curious@freemail.example",
            "jane.doe@janedoe.example",
            "luca@acme-hosting.example",
            "mario.rossi@pizzeria-rossi.example",
        ]
    );
    for mail in &received {
        assert!(
            mail.contains("X-MailFrom: support@acme-hosting.example"),
            "{mail}"
        );
        let expected = if mail.contains("To: luca@acme-hosting.example") {
            "Auto-Submitted: auto-generated"
        } else {
            "Auto-Submitted: auto-replied"
        };
        assert!(mail.contains(expected), "{mail}");
    }
}

#[test]
fn mail_waits_while_the_server_is_down_and_goes_out_once_it_is_back() {
    let desk = Desk::demo();
    let port = free_port();
    desk.use_smtp(port);
    let out = desk.maildesk(&["run", "--once"]);
    assert_eq!(out.status.code(), Some(3), "mail deferred: exit 3");
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("sent 0 mail(s), 5 deferred"), "{summary}");
    let (attempts, error): (i64, String) = desk
        .db()
        .query_row(
            "SELECT attempts, last_error FROM outbox WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(attempts, 1);
    assert!(!error.is_empty());

    // Not due yet: a run now does not try again.
    let sink = SmtpSink::start_on(desk.dir.path(), port);
    let summary = desk.ok(&["run", "--once"]);
    assert!(summary.contains("sent 0 mail(s), 0 deferred"), "{summary}");
    // Due now: each goes out exactly once.
    desk.db()
        .execute(
            "UPDATE outbox SET next_attempt_at = '2000-01-01T00:00:00Z'",
            [],
        )
        .unwrap();
    let summary = desk.ok(&["run", "--once"]);
    assert!(summary.contains("sent 5 mail(s), 0 deferred"), "{summary}");
    desk.ok(&["run", "--once"]);
    assert_eq!(sink.received().len(), 5);
}

#[test]
fn plain_smtp_to_a_remote_host_is_refused() {
    let desk = Desk::demo();
    let config = desk.config();
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[outgoing]\ntransport = \"file\"\ndir = \"out/mail\"",
        "[outgoing]\ntransport = \"smtp\"\nhost = \"smtp.example.net\"\nsecurity = \"plain\"",
    );
    std::fs::write(&config, text).unwrap();
    let out = desk.maildesk(&["run", "--once"]);
    assert_eq!(out.status.code(), Some(2));
    let err = common::stderr(&out);
    assert!(
        err.contains("security = \"plain\" is allowed only towards loopback, not smtp.example.net"),
        "{err}"
    );
    assert_eq!(
        desk.files_in("new").len(),
        7,
        "nothing was taken from the mailbox"
    );
}
