//! The Maildir source honours `initial_sync` and `max_message_bytes` as IMAP does.

mod common;

use common::imapdesk::count;
use common::{Desk, demo_mails};

/// The demo with its mails in new/ and `initial_sync` set to `mode`.
fn desk_with(mode: &str) -> Desk {
    let desk = Desk::demo();
    desk.edit_config(
        "initial_sync = \"process\"",
        &format!("initial_sync = \"{mode}\""),
    );
    desk
}

/// A mail that arrives after the first contact: Jane's question, under a new name.
fn deliver_later(desk: &Desk) {
    desk.deliver("1900000000.M1P1.later", &demo_mails()[1]);
}

#[test]
fn import_silently_files_the_existing_mail_without_answering_then_answers_new_mail() {
    let desk = desk_with("import-silently");
    let summary = desk.ok(&["run", "--once"]);
    assert!(summary.contains("stored 7 message(s)"), "{summary}");
    assert!(desk.sent_mails().is_empty(), "nothing answered");
    assert_eq!(desk.files_in("new"), Vec::<String>::new());
    assert_eq!(count(&desk, "SELECT count(*) FROM outbox"), 0);
    let history =
        "SELECT count(*) FROM events WHERE kind = 'reply.suppressed' AND detail LIKE '%history%'";
    assert!(
        count(&desk, history) >= 4,
        "each withheld answer is recorded"
    );

    // The first contact is over: a mail arriving now is answered like any other. Its
    // bytes are already stored, so give it a new Message-ID and text.
    let later = String::from_utf8(demo_mails()[1].clone())
        .unwrap()
        .replace("Message-ID: <", "Message-ID: <later-")
        .replace("\r\n\r\n", "\r\n\r\nOne more thing.\r\n");
    desk.deliver("1900000000.M1P1.later", later.as_bytes());
    desk.ok(&["run", "--once"]);
    assert_eq!(desk.sent_mails().len(), 1, "the new mail is answered");
}

#[test]
fn skip_existing_leaves_the_existing_mail_alone() {
    let desk = desk_with("skip-existing");
    let before = desk.files_in("new");
    let summary = desk.ok(&["run", "--once"]);
    assert!(summary.contains("stored 0 message(s)"), "{summary}");
    assert_eq!(desk.stored(), 0);
    // Moved to cur/ without the Seen flag, as a mail client leaves what it did not read.
    assert_eq!(
        desk.files_in("cur"),
        before.iter().map(|n| format!("{n}:2,")).collect::<Vec<_>>()
    );

    deliver_later(&desk);
    let summary = desk.ok(&["run", "--once"]);
    assert!(summary.contains("stored 1 message(s)"), "{summary}");
    assert_eq!(desk.sent_mails().len(), 1);
}

#[test]
fn process_answers_the_existing_mail() {
    let desk = desk_with("process");
    desk.ok(&["run", "--once"]);
    assert_eq!(desk.sent_mails().len(), 5);
}

#[test]
fn an_oversized_file_is_stored_by_its_header_and_flagged() {
    let desk = Desk::empty();
    desk.edit_config(
        "initial_sync = \"process\"",
        "initial_sync = \"process\"\nmax_message_bytes = 4000",
    );
    let mut big = b"From: jane.doe@janedoe.example\r\nTo: support@acme-hosting.example\r\nSubject: Logs attached\r\nMessage-ID: <big@janedoe.example>\r\n\r\n".to_vec();
    let header_len = big.len();
    big.extend(std::iter::repeat_n(b"0123456789abcdef\r\n", 1000).flatten());
    desk.deliver("1900000001.M2P1.big", &big);
    let summary = desk.ok(&["run", "--once"]);
    assert!(summary.contains("stored 1 message(s)"), "{summary}");
    let (size, raw_len): (i64, i64) = desk
        .db()
        .query_row(
            "SELECT size, length(raw) FROM messages WHERE direction = 'in'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(raw_len as usize, header_len, "only the header is kept");
    assert!(size as usize >= header_len);
    let reason: String = desk
        .db()
        .query_row("SELECT flag_reason FROM tickets", [], |r| r.get(0))
        .unwrap();
    assert!(
        reason.contains(&format!("message of {} bytes", big.len())),
        "{reason}"
    );
    assert!(desk.files_in("new").is_empty(), "acknowledged all the same");
}
