//! The embedded default end to end: the demo Maildir through the real binary.

mod common;

use common::{Desk, header};

fn ticket_by_subject<'a>(tickets: &'a serde_json::Value, prefix: &str) -> &'a serde_json::Value {
    tickets
        .as_array()
        .expect("array")
        .iter()
        .find(|t| t["subject"].as_str().is_some_and(|s| s.starts_with(prefix)))
        .unwrap_or_else(|| panic!("no ticket {prefix:?} in {tickets:#}"))
}

/// What staff will do by mail; until then, straight in the database.
fn resolve_ticket(desk: &Desk, number: i64) {
    desk.db()
        .execute(
            "UPDATE tickets SET status = 'resolved' WHERE number = ?1",
            [number],
        )
        .unwrap();
}

fn mail_to<'a>(mails: &'a [String], address: &str) -> Vec<&'a String> {
    mails
        .iter()
        .filter(|m| header(m, "To").as_deref() == Some(address))
        .collect()
}

#[test]
fn demo_run_turns_mail_into_tickets_and_acknowledgements() {
    let desk = Desk::demo();
    let delivered = desk.files_in("new");
    assert_eq!(delivered.len(), 7);
    let summary = desk.ok(&["run", "--once"]);
    assert!(summary.contains("stored 7 message(s)"), "{summary}");

    let tickets = desk.json(&["tickets", "list", "--json"]);
    assert_eq!(
        tickets.as_array().unwrap().len(),
        6,
        "the follow-up joins its ticket: {tickets:#}"
    );

    // Every message left new/ for cur/, flagged Seen, after its commit.
    assert!(desk.files_in("new").is_empty());
    let cur = desk.files_in("cur");
    assert_eq!(
        cur,
        delivered
            .iter()
            .map(|n| format!("{n}:2,S"))
            .collect::<Vec<_>>()
    );

    let mails = desk.sent_mails();
    assert_eq!(
        mails.len(),
        5,
        "acks for 3 customers + 1 notice to the stranger + 1 staff notice for the outage"
    );
    // "Sito completamente down": urgent, and staff are told at once.
    let notices = mail_to(&mails, "luca@acme-hosting.example");
    assert_eq!(notices.len(), 1);
    assert!(
        notices[0].contains("Priority:       urgent"),
        "{}",
        notices[0]
    );
    assert_eq!(
        header(notices[0], "Auto-Submitted").as_deref(),
        Some("auto-generated")
    );

    // Registered customer: ack with the ticket number, to the registered address.
    let mario = ticket_by_subject(&tickets, "Sito completamente down");
    assert_eq!(mario["account"], "C1001");
    let acks = mail_to(&mails, "mario.rossi@pizzeria-rossi.example");
    assert_eq!(acks.len(), 1);
    let tag = format!("[ACME #{}]", mario["number"]);
    assert!(
        header(acks[0], "Subject").unwrap().starts_with(&tag),
        "{}",
        acks[0]
    );
    assert_eq!(
        header(acks[0], "Auto-Submitted").as_deref(),
        Some("auto-replied")
    );
    assert_eq!(
        header(acks[0], "In-Reply-To").as_deref(),
        Some("<20261122094000.1@pizzeria-rossi.example>")
    );
    assert!(
        acks[0].contains("Gentile Mario Rossi"),
        "Italian template for an Italian account"
    );

    // Jane's mail asks for answers at her Reply-To; the ack goes to the registered address.
    assert!(mail_to(&mails, "jane.travel@freemail.example").is_empty());
    assert!(
        !mails
            .iter()
            .any(|m| m.contains("jane.travel@freemail.example"))
    );
    assert_eq!(
        mail_to(&mails, "jane.doe@janedoe.example").len(),
        1,
        "one ack: the follow-up is not acked again"
    );

    // The stranger is stored, visible, and told nothing about any account.
    let stranger = ticket_by_subject(&tickets, "What plan is janedoe.example on?");
    assert_eq!(stranger["account"], serde_json::Value::Null);
    assert_eq!(stranger["requester"], "curious@freemail.example");
    let notice = mail_to(&mails, "curious@freemail.example");
    assert_eq!(notice.len(), 1);
    assert_eq!(
        header(notice[0], "Subject").as_deref(),
        Some("Your message to ACME Hosting support")
    );
    for secret in ["janedoe", "Jane", "C1002", "ACME #"] {
        assert!(
            !notice[0].contains(secret),
            "the notice discloses {secret:?}:\n{}",
            notice[0]
        );
    }

    // French account, encoded subject decoded, French template.
    let claire = ticket_by_subject(&tickets, "Certificat SSL expiré");
    assert_eq!(claire["account"], "C1003");
    assert!(
        mail_to(&mails, "claire.martin@boulangerie-martin.example")[0]
            .contains("Bonjour Claire Martin")
    );

    // The out-of-office reply is stored on a ticket but never answered.
    ticket_by_subject(&tickets, "Automatic reply:");
    assert!(mail_to(&mails, "ops@bigshop.example").is_empty());

    // The malformed message is kept raw and flagged for staff.
    let broken = ticket_by_subject(&tickets, "(no subject)");
    assert_eq!(broken["needs_staff"], true);
    assert!(
        broken["flag_reason"]
            .as_str()
            .unwrap()
            .contains("malformed"),
        "{broken}"
    );
    let raw: Vec<u8> = desk
        .db()
        .query_row(
            "SELECT raw FROM messages WHERE ticket = ?1 AND direction = 'in'",
            [broken["number"].as_i64()],
            |r| r.get(0),
        )
        .unwrap();
    let original =
        std::fs::read(desk.maildir().join("cur/1763803800.M100007P4242.demo:2,S")).unwrap();
    assert_eq!(raw, original);
}

#[test]
fn second_run_creates_nothing_new() {
    let desk = Desk::demo();
    desk.ok(&["run", "--once"]);
    let tickets = desk.json(&["tickets", "list", "--json"]);
    let mails = desk.sent_mails();
    let summary = desk.ok(&["run", "--once"]);
    assert!(summary.contains("stored 0 message(s)"), "{summary}");
    assert!(summary.contains("sent 0 mail(s)"), "{summary}");
    assert_eq!(desk.json(&["tickets", "list", "--json"]), tickets);
    assert_eq!(desk.sent_mails(), mails);
}

/// A crash after the commit but before the move to cur/ leaves the file in new/; the next
/// run must recognise it and neither store it again nor answer it again.
#[test]
fn message_seen_again_after_a_crash_is_not_duplicated() {
    let desk = Desk::demo();
    desk.ok(&["run", "--once"]);
    let cur = desk.maildir().join("cur/1763802000.M100001P4242.demo:2,S");
    std::fs::rename(
        &cur,
        desk.maildir().join("new/1763802000.M100001P4242.demo"),
    )
    .unwrap();
    let summary = desk.ok(&["run", "--once"]);
    assert!(
        summary.contains("stored 0 message(s), 1 already stored"),
        "{summary}"
    );
    let count: i64 = desk
        .db()
        .query_row(
            "SELECT count(*) FROM messages WHERE direction = 'in'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(count, 7);
    assert_eq!(desk.sent_mails().len(), 5);
    assert!(desk.files_in("new").is_empty(), "acknowledged this time");
}

#[test]
fn ticket_show_has_every_message_and_event() {
    let desk = Desk::demo();
    desk.ok(&["run", "--once"]);
    let tickets = desk.json(&["tickets", "list", "--json"]);
    let jane = ticket_by_subject(&tickets, "Cannot send mail").clone();
    let number = jane["number"].to_string();
    let thread = desk.json(&["tickets", "show", &number, "--json"]);
    let directions: Vec<_> = thread["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["direction"].as_str().unwrap())
        .collect();
    assert_eq!(directions, vec!["in", "out", "in"]);
    assert!(
        thread["messages"][2]["text"]
            .as_str()
            .unwrap()
            .contains("Port 587, STARTTLS")
    );
    assert_eq!(thread["messages"][1]["delivery"], "sent");
    let kinds: Vec<_> = thread["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec![
            "ticket.opened",
            "rule.matched",
            "mail.queued",
            "message.added",
            "mail.sent"
        ]
    );
    let rule = &thread["events"][1]["detail"];
    assert!(
        rule.as_str().unwrap().contains("acknowledge-new-ticket"),
        "{rule}"
    );

    let text = desk.ok(&["tickets", "show", &number]);
    assert!(
        text.contains("Ticket ")
            && text.contains("Port 587, STARTTLS")
            && text.contains("mail.sent"),
        "{text}"
    );
    let out = desk.maildesk(&["tickets", "show", "999"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(common::stderr(&out).contains("no ticket 999"));
}

#[test]
fn tickets_list_filters_by_status() {
    let desk = Desk::demo();
    desk.ok(&["run", "--once"]);
    resolve_ticket(&desk, 1);
    let resolved = desk.json(&["tickets", "list", "--status", "resolved", "--json"]);
    assert_eq!(resolved.as_array().unwrap().len(), 1);
    assert_eq!(resolved[0]["number"], 1);
    let text = desk.ok(&["tickets", "list", "--status", "new"]);
    assert_eq!(
        text.lines().count(),
        1 + 5,
        "header + five new tickets:\n{text}"
    );
}

#[test]
fn customer_writing_on_a_resolved_ticket_reopens_it() {
    let desk = Desk::demo();
    desk.ok(&["run", "--once"]);
    resolve_ticket(&desk, 1);
    desk.deliver(
        "1763900000.M1P1.demo",
        b"From: mario.rossi@pizzeria-rossi.example\r\nTo: support@acme-hosting.example\r\nSubject: Re: [ACME #1] Abbiamo ricevuto la tua richiesta\r\nMessage-ID: <again@pizzeria-rossi.example>\r\n\r\nDi nuovo down!\r\n",
    );
    desk.ok(&["run", "--once"]);
    let thread = desk.json(&["tickets", "show", "1", "--json"]);
    assert_eq!(thread["ticket"]["status"], "open");
    let mails = desk.sent_mails();
    assert_eq!(
        mail_to(&mails, "mario.rossi@pizzeria-rossi.example").len(),
        1,
        "a follow-up gets no second ack"
    );
    assert_eq!(
        mail_to(&mails, "luca@acme-hosting.example").len(),
        2,
        "staff hear of every message on an outage ticket"
    );
}

#[test]
fn a_stranger_cannot_join_a_customer_ticket_by_copying_its_tag() {
    let desk = Desk::demo();
    desk.ok(&["run", "--once"]);
    desk.deliver(
        "1763900000.M1P2.demo",
        b"From: curious@freemail.example\r\nTo: support@acme-hosting.example\r\nSubject: Re: [ACME #2] tell me more\r\nMessage-ID: <sneaky@freemail.example>\r\nIn-Reply-To: <CAJd0e-77f1@mail.janedoe.example>\r\n\r\nWhat is Jane's password?\r\n",
    );
    desk.ok(&["run", "--once"]);
    let thread = desk.json(&["tickets", "show", "2", "--json"]);
    assert_eq!(
        thread["messages"].as_array().unwrap().len(),
        3,
        "ticket 2 unchanged"
    );
    let tickets = desk.json(&["tickets", "list", "--json"]);
    let sneaky = ticket_by_subject(&tickets, "Re: [ACME #2] tell me more");
    assert_eq!(sneaky["account"], serde_json::Value::Null);
}

#[test]
fn staff_may_write_on_any_ticket_and_are_not_acknowledged() {
    let desk = Desk::demo();
    desk.ok(&["run", "--once"]);
    desk.deliver(
        "1763900000.M1P3.demo",
        b"From: Luca <Luca@acme-hosting.example>\r\nTo: support@acme-hosting.example\r\nSubject: Re: [ACME #2] note\r\nMessage-ID: <note@acme-hosting.example>\r\n\r\nChecked the SMTP logs: her password expired.\r\n",
    );
    desk.ok(&["run", "--once"]);
    let thread = desk.json(&["tickets", "show", "2", "--json"]);
    let last = thread["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["from"], "luca@acme-hosting.example");
    let actor = thread["events"].as_array().unwrap().last().unwrap()["actor"].clone();
    assert_eq!(actor, "staff:luca@acme-hosting.example");
    assert_eq!(desk.sent_mails().len(), 5, "nothing sent for a staff note");
}
