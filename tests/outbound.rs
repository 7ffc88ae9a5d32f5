//! Outbound mail: automated mail never answered, bounces linked to the mail they report,
//! delivery given up and flagged, rate limits, two desks that write to each other, and
//! the headers of every kind of mail we send.

mod common;

use std::path::{Path, PathBuf};

use common::smtp::{SmtpSink, free_port};
use common::{Desk, REPO, header};

fn fixtures(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(Path::new(REPO).join("tests/fixtures").join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
    files.sort();
    files
}

fn count(desk: &Desk, sql: &str) -> i64 {
    desk.db().query_row(sql, [], |r| r.get(0)).unwrap()
}

/// The Message-ID of the acknowledgement the demo sends to Jane, and her ticket.
fn janes_ack(desk: &Desk) -> (String, i64) {
    desk.db()
        .query_row(
            "SELECT m.message_id, m.ticket FROM outbox o JOIN messages m ON m.id = o.message
              WHERE o.recipient = 'jane.doe@janedoe.example'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
}

#[test]
fn no_auto_reply_or_bounce_is_ever_answered() {
    let desk = Desk::empty();
    let files: Vec<PathBuf> = [fixtures("autoreplies"), fixtures("bounces")].concat();
    assert_eq!(files.len(), 38);
    for (i, file) in files.iter().enumerate() {
        desk.deliver(
            &format!("17639{i:05}.M1P1.test"),
            &std::fs::read(file).unwrap(),
        );
    }
    let summary = desk.ok(&["run", "--once"]);
    assert!(
        summary.contains("stored 38 message(s), 0 already stored, 0 failed; sent 0 mail(s)"),
        "{summary}"
    );
    assert_eq!(count(&desk, "SELECT count(*) FROM outbox"), 0);
    // Each would have been answered by the unregistered-sender rule; each says why not.
    let tickets = count(&desk, "SELECT count(*) FROM tickets");
    let suppressed = count(
        &desk,
        "SELECT count(DISTINCT ticket) FROM events WHERE kind = 'reply.suppressed' AND detail LIKE 'automated message:%'",
    );
    assert_eq!(suppressed, tickets);
}

/// A real Postfix DSN whose returned message is our acknowledgement `ours`.
fn bounce_of(ours: &str) -> Vec<u8> {
    let mut dsn =
        std::fs::read(Path::new(REPO).join("tests/fixtures/bounces/sisimai-postfix-01.eml"))
            .unwrap();
    dsn.extend_from_slice(
        format!(
            "From: \"ACME Hosting\" <support@acme-hosting.example>\nTo: jane.doe@janedoe.example\nSubject: [ACME #2] We received your request\nMessage-ID: <{ours}>\nAuto-Submitted: auto-replied\n\nHello Jane Doe,\n\n--FFFFFFFFFFFF.0000000000000/p351355.pool.example.ne.jp--\n"
        )
        .as_bytes(),
    );
    dsn
}

#[test]
fn a_bounce_is_linked_to_the_mail_it_reports_and_answered_by_nobody() {
    let desk = Desk::demo();
    desk.ok(&["run", "--once"]);
    let (ours, ticket) = janes_ack(&desk);
    let sent_before = desk.sent_mails().len();

    desk.deliver("1763900000.M1P5.demo", &bounce_of(&ours));
    let summary = desk.ok(&["run", "--once"]);
    assert!(summary.contains("stored 1 message(s)"), "{summary}");
    assert_eq!(desk.sent_mails().len(), sent_before, "nothing sent back");

    let (bounced_at, reason): (Option<String>, Option<String>) = desk
        .db()
        .query_row(
            "SELECT o.bounced_at, o.bounce_reason FROM outbox o JOIN messages m ON m.id = o.message
              WHERE m.message_id = ?1",
            [&ours],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(bounced_at.is_some());
    let reason = reason.unwrap();
    assert!(reason.starts_with("status 5.1.1: procmail"), "{reason}");
    // The bounce is on Jane's ticket (MAILER-DAEMON may not join it, but a machine
    // writing about our mail belongs there), which is flagged; no new ticket.
    assert_eq!(count(&desk, "SELECT count(*) FROM tickets"), 6);
    let on_ticket = count(
        &desk,
        &format!(
            "SELECT count(*) FROM messages WHERE direction = 'in' AND ticket = {ticket} AND from_addr LIKE 'mailer-daemon@%'"
        ),
    );
    assert_eq!(on_ticket, 1);
    let detail: String = desk
        .db()
        .query_row(
            "SELECT detail FROM events WHERE kind = 'mail.bounced' AND ticket = ?1",
            [ticket],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        detail.contains(&ours) && detail.contains("5.1.1"),
        "{detail}"
    );
    let (needs_staff, why): (bool, String) = desk
        .db()
        .query_row(
            "SELECT needs_staff, flag_reason FROM tickets WHERE number = ?1",
            [ticket],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(needs_staff);
    assert!(why.contains("could not be delivered"), "{why}");
}

#[test]
fn a_delay_notice_is_recorded_without_marking_the_mail_bounced() {
    let desk = Desk::demo();
    desk.ok(&["run", "--once"]);
    let (ours, ticket) = janes_ack(&desk);
    let mut delay = std::fs::read(
        Path::new(REPO).join("tests/fixtures/bounces/sisimai-sendmail-29-delayed.eml"),
    )
    .unwrap();
    delay.extend_from_slice(format!("\nMessage-ID: <{ours}>\n").as_bytes());
    desk.deliver("1763900000.M1P6.demo", &delay);
    desk.ok(&["run", "--once"]);
    let bounced: Option<String> = desk
        .db()
        .query_row(
            "SELECT o.bounced_at FROM outbox o JOIN messages m ON m.id = o.message WHERE m.message_id = ?1",
            [&ours],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(bounced, None);
    let delayed = count(
        &desk,
        &format!("SELECT count(*) FROM events WHERE kind = 'mail.delayed' AND ticket = {ticket}"),
    );
    assert_eq!(delayed, 1);
}

#[test]
fn an_out_of_office_to_our_mail_joins_its_ticket_and_reopens_nothing() {
    let desk = Desk::demo();
    desk.ok(&["run", "--once"]);
    let (ours, ticket) = janes_ack(&desk);
    desk.db()
        .execute(
            "UPDATE tickets SET status = 'resolved' WHERE number = ?1",
            [ticket],
        )
        .unwrap();
    let sent_before = desk.sent_mails().len();
    // A real vacation reply, from an address that is not Jane's, answering our ack.
    let vacation = String::from_utf8(
        std::fs::read(Path::new(REPO).join("tests/fixtures/autoreplies/sisimai-rfc3834-01.eml"))
            .unwrap(),
    )
    .unwrap();
    let (head, body) = vacation.split_once("\n\n").unwrap();
    let head: Vec<&str> = head
        .lines()
        .filter(|l| !l.starts_with("From:") && !l.starts_with("In-Reply-To:"))
        .collect();
    let raw = format!(
        "From: jane.travel@freemail.example\nIn-Reply-To: <{ours}>\n{}\n\n{body}",
        head.join("\n")
    );
    desk.deliver("1763900000.M1P7.demo", raw.as_bytes());
    desk.ok(&["run", "--once"]);

    assert_eq!(
        count(&desk, "SELECT count(*) FROM tickets"),
        6,
        "no new ticket"
    );
    let joined = count(
        &desk,
        &format!(
            "SELECT count(*) FROM messages WHERE ticket = {ticket} AND from_addr = 'jane.travel@freemail.example'"
        ),
    );
    assert_eq!(joined, 1);
    let status: String = desk
        .db()
        .query_row(
            "SELECT status FROM tickets WHERE number = ?1",
            [ticket],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(status, "resolved", "an auto-reply never reopens a ticket");
    assert_eq!(
        desk.sent_mails().len(),
        sent_before,
        "and is never answered"
    );
}

#[test]
fn a_refused_recipient_is_given_up_at_once_recorded_and_flagged() {
    let desk = Desk::demo();
    let sink = SmtpSink::start_refusing(desk.dir.path(), "jane.doe@");
    desk.use_smtp(sink.port);
    let summary = desk.ok(&["run", "--once"]);
    // Four mails, and the alert to staff about the fifth.
    assert!(
        summary.contains("sent 5 mail(s), 0 deferred, 1 undeliverable"),
        "{summary}"
    );
    let received = sink.received();
    assert_eq!(received.len(), 5);
    let alert = received
        .iter()
        .find(|m| {
            m.contains("X-RcptTo: luca@acme-hosting.example")
                && m.contains("could not be delivered")
        })
        .expect("an alert to staff");
    assert!(
        alert.contains("our mail to jane.doe@janedoe.example could not be delivered"),
        "{alert}"
    );
    assert!(alert.contains("550"), "{alert}");
    let (status, error, ticket): (String, String, i64) = desk
        .db()
        .query_row(
            "SELECT o.status, o.last_error, m.ticket FROM outbox o JOIN messages m ON m.id = o.message
              WHERE o.recipient = 'jane.doe@janedoe.example'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(status, "failed");
    assert!(error.contains("550"), "{error}");
    let event: String = desk
        .db()
        .query_row(
            "SELECT detail FROM events WHERE kind = 'mail.failed' AND ticket = ?1",
            [ticket],
            |r| r.get(0),
        )
        .unwrap();
    assert!(event.contains("jane.doe@janedoe.example"), "{event}");
    let flagged = count(
        &desk,
        &format!("SELECT needs_staff FROM tickets WHERE number = {ticket}"),
    );
    assert_eq!(flagged, 1);
    // Given up means given up: a later run does not try again.
    let summary = desk.ok(&["run", "--once"]);
    assert!(
        summary.contains("sent 0 mail(s), 0 deferred, 0 undeliverable"),
        "{summary}"
    );
}

#[test]
fn mail_undelivered_longer_than_max_age_is_given_up() {
    let desk = Desk::demo();
    desk.use_smtp(free_port());
    desk.edit_config(
        "security = \"plain\"",
        "security = \"plain\"\nmax_age_hours = 0",
    );
    let summary = desk.ok(&["run", "--once"]);
    // The five mails, then the alerts to staff about the four not to staff, which
    // cannot go either (and beget no alert of their own).
    assert!(
        summary.contains("sent 0 mail(s), 0 deferred, 9 undeliverable"),
        "{summary}"
    );
    assert_eq!(
        count(&desk, "SELECT count(*) FROM outbox WHERE status = 'failed'"),
        9
    );
    assert_eq!(
        count(
            &desk,
            "SELECT count(*) FROM events WHERE kind = 'mail.failed'"
        ),
        9
    );
    assert_eq!(
        count(
            &desk,
            "SELECT count(*) FROM events WHERE kind = 'staff.alerted'"
        ),
        4
    );
}

#[test]
fn follow_ups_within_the_window_get_no_second_automatic_answer() {
    let desk = Desk::demo();
    std::fs::write(
        desk.examples().join("../rules/90-every-message.toml"),
        "[[rule]]\nname = \"answer-follow-ups\"\nwhen.role = \"support\"\nwhen.sender = \"registered\"\nwhen.new_ticket = false\nthen.reply = \"support_ack\"\n",
    )
    .unwrap();
    desk.ok(&["run", "--once"]);
    // Jane's follow-up asked for an answer; her ticket had one within the hour.
    let mails = desk.sent_mails();
    let to_jane = mails
        .iter()
        .filter(|m| header(m, "To").as_deref() == Some("jane.doe@janedoe.example"))
        .count();
    assert_eq!(to_jane, 1);
    let why: String = desk
        .db()
        .query_row(
            "SELECT detail FROM events WHERE kind = 'reply.suppressed' AND detail LIKE '%rate limit%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        why.contains("support_ack: rate limit, this ticket already had 1 automatic mail(s) in the last 60 minutes (limit 1)"),
        "{why}"
    );
}

/// Two desks whose outgoing SMTP server delivers into the other's Maildir.
struct Pair {
    a: Desk,
    b: Desk,
    into_a: SmtpSink,
    into_b: SmtpSink,
}

impl Pair {
    fn new() -> Pair {
        let a = Desk::empty();
        let b = Desk::empty();
        b.edit_config("acme-hosting.example", "bravo-hosting.example");
        b.edit_config("ticket_tag = \"ACME\"", "ticket_tag = \"BRAVO\"");
        // aiosmtpd's Mailbox handler writes a Maildir: the other desk's inbox.
        let into_a = SmtpSink::start_into(a.maildir());
        let into_b = SmtpSink::start_into(b.maildir());
        a.use_smtp(into_b.port);
        b.use_smtp(into_a.port);
        Pair {
            a,
            b,
            into_a,
            into_b,
        }
    }

    /// Runs both desks until neither sends anything; returns the rounds it took.
    fn exchange(&self, tamper: impl Fn(&Desk)) -> usize {
        for round in 1..=30 {
            let before = self.into_a.received().len() + self.into_b.received().len();
            tamper(&self.a);
            self.a.ok(&["run", "--once"]);
            tamper(&self.b);
            self.b.ok(&["run", "--once"]);
            if self.into_a.received().len() + self.into_b.received().len() == before {
                return round;
            }
        }
        panic!("the two desks are still writing to each other after 30 rounds");
    }
}

const FIRST_MAIL: &[u8] = b"From: support@bravo-hosting.example\r\nTo: support@acme-hosting.example\r\nSubject: About your service\r\nMessage-ID: <start@bravo-hosting.example>\r\n\r\nHello, can you tell us more?\r\n";

#[test]
fn two_desks_writing_to_each_other_stop_at_once() {
    let pair = Pair::new();
    pair.a.deliver("1763900000.M1P1.start", FIRST_MAIL);
    let rounds = pair.exchange(|_| {});
    // A answers the stranger once; B sees an auto-reply and never answers it. (A's
    // inbox also holds the first mail, put there by the test.)
    assert_eq!(pair.into_b.received().len(), 1);
    assert_eq!(pair.into_a.received().len() - 1, 0);
    assert!(rounds <= 2, "{rounds} rounds");
}

/// What a broken peer does: forwards mail as if a person wrote it (no Auto-Submitted,
/// no In-Reply-To), so nothing tells either desk that it talks to a machine.
fn hide_that_machines_wrote(desk: &Desk) {
    let new = desk.maildir().join("new");
    for entry in std::fs::read_dir(&new).unwrap() {
        let path = entry.unwrap().path();
        let text = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
        let cleaned: Vec<&str> = text
            .split('\n')
            .filter(|l| {
                ![
                    "Auto-Submitted:",
                    "X-Auto-Response-Suppress:",
                    "In-Reply-To:",
                    "References:",
                ]
                .iter()
                .any(|h| l.starts_with(h))
            })
            .collect();
        std::fs::write(&path, cleaned.join("\n")).unwrap();
    }
}

#[test]
fn two_desks_that_cannot_tell_they_talk_to_a_machine_stop_at_the_rate_limit() {
    let pair = Pair::new();
    pair.a.deliver("1763900000.M1P1.start", FIRST_MAIL);
    pair.exchange(hide_that_machines_wrote);
    // Each desk sends at most 5 automatic mails to one address per hour.
    let (to_b, to_a) = (
        pair.into_b.received().len(),
        pair.into_a.received().len() - 1,
    );
    assert_eq!((to_b, to_a), (5, 5), "mails each way");
    // A, which started, is the one whose sixth answer is held back, and says so.
    let limited = count(
        &pair.a,
        "SELECT count(*) FROM events WHERE kind = 'reply.suppressed' AND detail LIKE '%rate limit, 5 automatic mail(s) to this address%'",
    );
    assert_eq!(limited, 1, "the suppressed answer is recorded");
}

/// The header block of each mail `rules test` shows.
fn headers_of(output: &str) -> Vec<String> {
    output
        .split("\nmail ")
        .skip(1)
        .map(|block| {
            let start = block.find("From: ").unwrap();
            let head = &block[start..];
            head[..head.find("\n\n").unwrap()].to_string()
        })
        .collect()
}

#[test]
fn headers_of_every_kind_of_mail() {
    let desk = Desk::demo();
    let at = "2026-11-23T10:00:00Z";
    let demo = |n: usize| {
        let mut files = desk.files_in("new");
        files.sort();
        desk.maildir()
            .join("new")
            .join(&files[n])
            .display()
            .to_string()
    };
    let confirm = desk.dir.path().join("confirm.eml");
    std::fs::write(
        &confirm,
        "From: jane.doe@janedoe.example\r\nTo: support@acme-hosting.example\r\nSubject: Please change the email address of my account\r\nMessage-ID: <change@janedoe.example>\r\n\r\nTo jane@newmail.example, please.\r\n",
    )
    .unwrap();
    let phishing = Path::new(REPO).join("tests/fixtures/rules/cerberus-lexsi-phishing-fr.eml");
    let cases: [(&str, String, &[&str]); 4] = [
        // Mario, site down: staff notice and support_ack
        ("mario", demo(0), &[]),
        // the stranger: unregistered_notice
        ("stranger", demo(2), &[]),
        ("confirmation", confirm.display().to_string(), &[]),
        (
            "abuse",
            phishing.display().to_string(),
            &["--mailbox", "abuse"],
        ),
    ];
    let mut all = String::new();
    for (name, file, extra) in cases {
        let mut args = vec!["rules", "test", file.as_str(), "--at", at];
        args.extend_from_slice(extra);
        for head in headers_of(&desk.ok(&args)) {
            all.push_str(&format!("== {name}\n{head}\n\n"));
        }
    }
    // Every automatic mail: RFC 3834 marks, our Message-ID, no Reply-To or Bcc.
    for head in all.split("== ").skip(1) {
        assert!(head.contains("\nAuto-Submitted: auto-"), "{head}");
        assert!(head.contains("\nX-Auto-Response-Suppress: All\n"), "{head}");
        assert!(head.contains("@acme-hosting.example>\n"), "{head}");
        assert!(
            !head.contains("\nBcc:") && !head.contains("\nReply-To:"),
            "{head}"
        );
    }
    let file = Path::new(REPO).join("tests/snapshots/headers.txt");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
        std::fs::write(&file, &all).unwrap();
    }
    let expected = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        all,
        expected,
        "UPDATE_SNAPSHOTS=1 rewrites {}",
        file.display()
    );
}
