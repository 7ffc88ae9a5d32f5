//! IMAP ingestion against a real Dovecot: exactly once, whatever happens.

mod common;

use std::path::Path;
use std::time::Duration;

use common::imapdesk::{ABUSE, SUPPORT, count, imap_desk};
use common::mailgen;
use common::{demo_mails, header, stderr, terminate, wait_for};

#[test]
fn appended_mail_becomes_tickets_and_is_moved_to_processed() {
    let (desk, dovecot) = imap_desk("initial_sync = \"process\"");
    let mails = demo_mails();
    dovecot.append_many(SUPPORT, "INBOX", &mails);
    let report =
        std::fs::read(Path::new(common::REPO).join("tests/fixtures/arf/abuseio-fbl-aol-1.eml"))
            .unwrap();
    dovecot.append(ABUSE, "INBOX", &report);

    let summary = desk.ok(&["run", "--once"]);
    assert!(
        summary.contains("stored 8 message(s), 0 already stored, 0 failed; sent 5 mail(s)"),
        "{summary}"
    );
    assert_eq!(dovecot.count(SUPPORT, "INBOX"), 0);
    assert_eq!(dovecot.count(SUPPORT, "Processed"), 7);
    assert_eq!(dovecot.count(ABUSE, "Processed"), 1);
    let tickets = desk.json(&["tickets", "list", "--json"]);
    assert_eq!(
        tickets.as_array().unwrap().len(),
        7,
        "six support tickets and one abuse report: {tickets:#}"
    );
    let abuse = tickets
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["mailbox_role"] == "abuse")
        .unwrap();
    assert_eq!(abuse["needs_staff"], true);
    // Raw bytes as the server has them (it stores the LF-only fixture with CRLF).
    let stored: Vec<u8> = desk
        .db()
        .query_row(
            "SELECT raw FROM messages WHERE mailbox = 'abuse'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let crlf = String::from_utf8(report)
        .unwrap()
        .replace("\r\n", "\n")
        .replace('\n', "\r\n");
    assert!(
        stored == crlf.as_bytes(),
        "stored bytes differ from the server's"
    );
    let acks = desk.sent_mails();
    assert!(
        acks.iter()
            .any(|m| header(m, "To").as_deref() == Some("jane.doe@janedoe.example"))
    );

    // Restart: the cursor holds, nothing is stored twice.
    let summary = desk.ok(&["run", "--once"]);
    assert!(
        summary.contains("stored 0 message(s), 0 already stored"),
        "{summary}"
    );
    dovecot.append(
        SUPPORT,
        "INBOX",
        &mails[0]
            .clone()
            .into_iter()
            .chain(b"P.S. again\r\n".iter().copied())
            .collect::<Vec<u8>>(),
    );
    let summary = desk.ok(&["run", "--once"]);
    assert!(summary.contains("stored 1 message(s)"), "{summary}");
    assert_eq!(
        count(
            &desk,
            "SELECT count(*) FROM messages WHERE direction = 'in'"
        ),
        9
    );
}

/// The processed folder is found by its exact name, spaces and all, on every run.
#[test]
fn a_processed_folder_with_a_space_is_created_once_and_reused() {
    let (desk, dovecot) = imap_desk("initial_sync = \"process\"\nprocessed_folder = \"Done Mail\"");
    let mails = demo_mails();
    dovecot.append_many(SUPPORT, "INBOX", &mails[..2]);
    desk.ok(&["run", "--once"]);
    dovecot.append(SUPPORT, "INBOX", &mails[2]);
    let summary = desk.ok(&["run", "--once"]);
    assert!(summary.contains("stored 1 message(s)"), "{summary}");
    assert_eq!(dovecot.count(SUPPORT, "Done Mail"), 3);
    assert_eq!(dovecot.count(SUPPORT, "INBOX"), 0);
}

#[test]
fn seen_mode_leaves_mail_in_place_flagged() {
    let (desk, dovecot) = imap_desk("initial_sync = \"process\"\nafter = \"seen\"");
    dovecot.append_many(SUPPORT, "INBOX", &demo_mails());
    desk.ok(&["run", "--once"]);
    let uids = dovecot.uids(SUPPORT, "INBOX");
    assert_eq!(uids.len(), 7);
    assert!(
        uids.iter()
            .all(|(_, flags)| flags.iter().any(|f| f == "\\Seen")),
        "{uids:?}"
    );
    assert_eq!(dovecot.count(SUPPORT, "Processed"), 0);
}

/// A mailbox rebuilt by the server (new UIDVALIDITY) is read again, and every message
/// already stored is recognised: no second ticket, no second answer.
#[test]
fn uidvalidity_change_creates_no_duplicates() {
    let (desk, dovecot) = imap_desk("initial_sync = \"process\"\nafter = \"seen\"");
    dovecot.append_many(SUPPORT, "INBOX", &demo_mails());
    desk.ok(&["run", "--once"]);
    let tickets = desk.json(&["tickets", "list", "--json"]);
    let acks = desk.sent_mails().len();

    dovecot.change_uidvalidity(SUPPORT, "INBOX");
    let summary = desk.ok(&["run", "--once"]);
    assert!(
        summary.contains("stored 0 message(s), 7 already stored"),
        "{summary}"
    );
    assert_eq!(desk.json(&["tickets", "list", "--json"]), tickets);
    assert_eq!(desk.sent_mails().len(), acks);
}

#[test]
fn first_sync_imports_old_mail_without_answering_it() {
    let (desk, dovecot) = imap_desk("");
    let traffic = mailgen::traffic(7, 40, 200, 30);
    std::fs::write(desk.examples().join("accounts.csv"), &traffic.accounts_csv).unwrap();
    dovecot.append_many(SUPPORT, "INBOX", &traffic.messages);

    let summary = desk.ok(&["run", "--once"]);
    assert!(summary.contains("stored 200 message(s)"), "{summary}");
    assert!(summary.contains("sent 0 mail(s)"), "{summary}");
    assert_eq!(count(&desk, "SELECT count(*) FROM outbox"), 0);
    assert_eq!(
        count(&desk, "SELECT count(*) FROM tickets"),
        traffic.new_tickets as i64
    );
    let suppressed = count(
        &desk,
        "SELECT count(*) FROM events WHERE kind = 'reply.suppressed' AND detail LIKE '%history%'",
    );
    assert_eq!(suppressed, traffic.new_tickets as i64);
    assert_eq!(dovecot.count(SUPPORT, "Processed"), 200);

    // Mail arriving after the first sync is answered as usual.
    let new = mailgen::traffic(8, 40, 1, 0);
    dovecot.append(SUPPORT, "INBOX", &new.messages[0]);
    let summary = desk.ok(&["run", "--once"]);
    assert!(
        summary.contains("stored 1 message(s)") && summary.contains("sent 1 mail(s)"),
        "{summary}"
    );
}

#[test]
fn skip_existing_leaves_old_mail_alone() {
    let (desk, dovecot) = imap_desk("initial_sync = \"skip-existing\"");
    dovecot.append_many(SUPPORT, "INBOX", &demo_mails());
    let summary = desk.ok(&["run", "--once"]);
    assert!(summary.contains("stored 0 message(s)"), "{summary}");
    assert_eq!(dovecot.count(SUPPORT, "INBOX"), 7, "untouched");
    assert!(
        dovecot
            .uids(SUPPORT, "INBOX")
            .iter()
            .all(|(_, flags)| flags.is_empty())
    );
    dovecot.append(SUPPORT, "INBOX", &demo_mails()[1]);
    let summary = desk.ok(&["run", "--once"]);
    assert!(
        summary.contains("stored 1 message(s)") && summary.contains("sent 1 mail(s)"),
        "{summary}"
    );
    assert_eq!(dovecot.count(SUPPORT, "INBOX"), 7);
}

#[test]
fn oversized_mail_is_recorded_by_its_header_and_does_not_block() {
    let (desk, dovecot) = imap_desk("initial_sync = \"process\"\nmax_message_bytes = 4000");
    let mut big = b"From: jane.doe@janedoe.example\r\nTo: support@example.test\r\nSubject: Logs attached\r\nMessage-ID: <big@janedoe.example>\r\n\r\n".to_vec();
    big.extend(std::iter::repeat_n(b"0123456789abcdef\r\n".as_slice(), 1000).flatten());
    let mails = demo_mails();
    dovecot.append_many(SUPPORT, "INBOX", &[big.clone(), mails[0].clone()]);
    let summary = desk.ok(&["run", "--once"]);
    assert!(summary.contains("stored 2 message(s)"), "{summary}");
    assert_eq!(dovecot.count(SUPPORT, "INBOX"), 0);
    let tickets = desk.json(&["tickets", "list", "--json"]);
    let logs = tickets
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["subject"] == "Logs attached")
        .unwrap();
    assert_eq!(logs["needs_staff"], true);
    assert!(
        logs["flag_reason"]
            .as_str()
            .unwrap()
            .contains(&format!("message of {} bytes", big.len())),
        "{logs}"
    );
    let size: i64 = count(
        &desk,
        "SELECT size FROM messages WHERE subject = 'Logs attached'",
    );
    assert!(size < 200, "only the header is stored, {size} bytes");
}

#[test]
fn idle_delivers_new_mail_within_a_second_or_so() {
    let (desk, dovecot) = imap_desk("");
    let daemon = desk.spawn_daemon();
    // Let it make first contact (an empty mailbox), then start idling.
    wait_for("the cursor", Duration::from_secs(20), || {
        desk.examples().join("demo.db").exists()
            && desk
                .db()
                .query_row("SELECT count(*) FROM mailbox_cursors", [], |r| {
                    r.get::<_, i64>(0)
                })
                .unwrap_or(0)
                == 2
    });
    std::thread::sleep(Duration::from_millis(300));
    // Jane's question: one acknowledgement, nothing for staff.
    dovecot.append(SUPPORT, "INBOX", &demo_mails()[1]);
    let latency = wait_for(
        "the message to be committed",
        Duration::from_secs(5),
        || desk.stored() == 1,
    );
    eprintln!("IDLE: committed {latency:?} after APPEND");
    wait_for("the acknowledgement", Duration::from_secs(5), || {
        desk.sent_mails().len() == 1
    });
    let log = terminate(daemon);
    assert!(log.contains("idle=true"), "{log}");
}

#[test]
fn daemon_reconnects_after_the_server_restarts() {
    let (desk, mut dovecot) = imap_desk("initial_sync = \"process\"");
    let mails = demo_mails();
    dovecot.append_many(SUPPORT, "INBOX", &mails[..3]);
    let daemon = desk.spawn_daemon();
    wait_for("the first mails", Duration::from_secs(20), || {
        desk.stored() == 3
    });
    dovecot.stop();
    std::thread::sleep(Duration::from_secs(2));
    dovecot.restart();
    dovecot.append_many(SUPPORT, "INBOX", &mails[3..]);
    wait_for(
        "the rest after the restart",
        Duration::from_secs(60),
        || desk.stored() == 7,
    );
    let log = terminate(daemon);
    eprintln!("DOVECOT LOG:\n{}", dovecot.log());
    assert!(log.contains("IMAP session failed; reconnecting"), "{log}");
    assert_eq!(dovecot.count(SUPPORT, "INBOX"), 0);
    assert_eq!(
        count(
            &desk,
            "SELECT count(DISTINCT sha256) FROM messages WHERE direction = 'in'"
        ),
        7
    );
}

#[test]
fn run_once_reports_an_unreachable_server() {
    let (desk, mut dovecot) = imap_desk("");
    dovecot.stop();
    let out = desk.maildesk(&["run", "--once"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("mailbox support: network:") && err.contains("mailbox abuse: network:"),
        "{err}"
    );
}

#[test]
fn sasl_plain_login_works() {
    let (desk, dovecot) = imap_desk("initial_sync = \"process\"\nauth = \"plain\"");
    dovecot.append_many(SUPPORT, "INBOX", &demo_mails()[..2]);
    let summary = desk.ok(&["run", "--once"]);
    assert!(summary.contains("stored 2 message(s)"), "{summary}");
    std::fs::write(dovecot.password_file(), "wrong\n").unwrap();
    let out = desk.maildesk(&["run", "--once"]);
    assert!(
        stderr(&out).contains("mailbox support: login refused"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn wrong_password_is_reported_clearly() {
    let (desk, dovecot) = imap_desk("");
    std::fs::write(dovecot.password_file(), "wrong\n").unwrap();
    let out = desk.maildesk(&["run", "--once"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("login refused"), "{}", stderr(&out));
}

#[test]
fn plaintext_imap_to_a_remote_host_needs_explicit_consent() {
    let (desk, _dovecot) = imap_desk("");
    let config = desk.config();
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("host = \"127.0.0.1\"", "host = \"imap.example.net\"");
    std::fs::write(&config, &text).unwrap();
    let out = desk.maildesk(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "security = \"plain\" is allowed only towards loopback, not imap.example.net"
        )
    );
    let text = text.replace(
        "security = \"plain\"",
        "security = \"plain\"\nallow_plaintext = true",
    );
    std::fs::write(&config, &text).unwrap();
    assert!(
        desk.maildesk(&["check"]).status.success(),
        "{}",
        stderr(&desk.maildesk(&["check"]))
    );
    // Moving processed mail into the watched folder would fetch it again forever.
    let looping = text.replacen(
        "allow_plaintext = true",
        "allow_plaintext = true\nprocessed_folder = \"INBOX\"",
        1,
    );
    std::fs::write(&config, looping).unwrap();
    let out = desk.maildesk(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("processed_folder is the watched folder \"INBOX\""),
        "{}",
        stderr(&out)
    );
}

/// Invariant 1 and 2 under fire: 500 messages, the daemon killed with SIGKILL at random
/// moments at least 20 times and restarted each time. Afterwards every message is stored
/// exactly once, one ticket per thread, one acknowledgement per ticket.
#[test]
fn sigkill_at_random_moments_loses_and_duplicates_nothing() {
    let (desk, dovecot) = imap_desk("initial_sync = \"process\"\nbatch_size = 7");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("seed {seed}");
    let traffic = mailgen::traffic(seed, 60, 500, 30);
    std::fs::write(desk.examples().join("accounts.csv"), &traffic.accounts_csv).unwrap();
    // Every new ticket is acknowledged: ~6 per account here, over the default rate limit.
    desk.append_config("[limits]\nper_address = 1000");
    dovecot.append_many(SUPPORT, "INBOX", &traffic.messages);

    let mut rng = mailgen::Rng::new(seed);
    let mut kills = 0;
    while kills < 20 || (desk.stored() < 500 && kills < 200) {
        let mut daemon = desk.spawn_daemon();
        std::thread::sleep(Duration::from_millis(30 + rng.below(400)));
        daemon.kill().unwrap();
        daemon.wait().unwrap();
        kills += 1;
    }
    eprintln!(
        "{kills} kills, {} stored before the last run",
        desk.stored()
    );
    let summary = desk.ok(&["run", "--once"]);
    eprintln!("{summary}");

    assert_eq!(
        count(
            &desk,
            "SELECT count(*) FROM messages WHERE direction = 'in'"
        ),
        500
    );
    assert_eq!(
        count(
            &desk,
            "SELECT count(DISTINCT sha256) FROM messages WHERE direction = 'in'"
        ),
        500
    );
    assert_eq!(
        count(&desk, "SELECT count(*) FROM tickets"),
        traffic.new_tickets as i64
    );
    assert_eq!(
        count(&desk, "SELECT count(*) FROM outbox"),
        traffic.new_tickets as i64,
        "one ack per new ticket"
    );
    assert_eq!(
        count(
            &desk,
            "SELECT count(DISTINCT recipient || ' ' || message) FROM outbox"
        ),
        traffic.new_tickets as i64
    );
    assert_eq!(
        count(
            &desk,
            "SELECT count(*) FROM (SELECT ticket FROM messages WHERE direction = 'out' GROUP BY ticket HAVING count(*) > 1)"
        ),
        0,
        "no ticket was acknowledged twice"
    );
    assert_eq!(dovecot.count(SUPPORT, "INBOX"), 0);
    assert_eq!(dovecot.count(SUPPORT, "Processed"), 500);
}

/// Mail that arrives while the daemon is busy fetching and moving is announced once,
/// during whatever command was running: the daemon looks again before it idles, instead
/// of waiting in IDLE for the next mail (which may never come).
#[test]
fn mail_arriving_during_a_catch_up_is_not_left_waiting_for_the_next_one() {
    let (desk, dovecot) = imap_desk("initial_sync = \"process\"\nbatch_size = 10");
    let traffic = mailgen::traffic(5, 40, 400, 30);
    std::fs::write(desk.examples().join("accounts.csv"), &traffic.accounts_csv).unwrap();
    desk.append_config("[limits]\nper_address = 1000");
    let mut daemon = desk.spawn_daemon();
    daemon.wait_for_log("idle=true", Duration::from_secs(20));
    for chunk in traffic.messages.chunks(10) {
        dovecot.append_many(SUPPORT, "INBOX", chunk);
    }
    // Nothing more arrives: whatever is left must be found without a new announcement.
    wait_for("every message stored", Duration::from_secs(30), || {
        desk.stored() == 400
    });
    terminate(daemon);
    assert_eq!(dovecot.count(SUPPORT, "Processed"), 400);
}
