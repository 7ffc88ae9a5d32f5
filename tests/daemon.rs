//! `maildesk run` as a long-running process: it picks up new mail on its own and stops
//! cleanly on SIGTERM.

mod common;

use std::time::Duration;

use common::{Desk, terminate, wait_for};

#[test]
fn daemon_polls_for_new_mail_and_exits_cleanly_on_sigterm() {
    let desk = Desk::demo();
    desk.edit_config("poll_interval_secs = 30", "poll_interval_secs = 1");
    let daemon = desk.spawn_daemon();
    let limit = Duration::from_secs(20);
    wait_for("the demo mail to be processed", limit, || {
        desk.files_in("new").is_empty()
    });
    wait_for("the acknowledgements", limit, || {
        desk.sent_mails().len() == 5
    });

    desk.deliver(
        "1763900000.M1P9.demo",
        b"From: ops@bigshop.example\r\nTo: support@acme-hosting.example\r\nSubject: Backup restore request\r\nMessage-ID: <restore@bigshop.example>\r\n\r\nPlease restore yesterday's backup.\r\n",
    );
    wait_for("the new mail to be acknowledged", limit, || {
        desk.sent_mails().len() == 6
    });

    let log = terminate(daemon);
    assert!(
        log.contains("SIGTERM: finishing the work in progress"),
        "{log}"
    );
    assert!(log.contains("maildesk stopped"), "{log}");
}

/// A second daemon on the same database would read the same mail and send the same
/// outbox: it is refused at once, naming the running one, and touches nothing.
#[test]
fn a_second_daemon_or_run_once_on_the_same_database_is_refused_naming_the_pid() {
    let desk = Desk::demo();
    let mut daemon = desk.spawn_daemon();
    daemon.wait_for_log("maildesk started", Duration::from_secs(20));
    wait_for("the demo mail", Duration::from_secs(20), || {
        desk.sent_mails().len() == 5
    });
    let health = desk.examples().join("demo.health.json");
    desk.deliver(
        "1763900000.M2P9.demo",
        b"From: ops@bigshop.example\r\nTo: support@acme-hosting.example\r\nSubject: Second\r\n\r\nHello\r\n",
    );
    for args in [&["run"][..], &["run", "--once"][..]] {
        let started = std::time::Instant::now();
        let out = desk.maildesk(args);
        let err = common::stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "refused at once"
        );
        assert!(err.contains(&format!("pid {}", daemon.id())), "{err}");
        assert!(err.contains("demo.db.lock"), "{err}");
    }
    // The report stays the running daemon's (which rewrites it as it works).
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&health).unwrap()).unwrap();
    assert_eq!(report["pid"], daemon.id());
    let log = terminate(daemon);
    assert!(!log.contains("ERROR"), "{log}");
    // Once the first is gone, the lock is free again.
    let out = desk.ok(&["run", "--once"]);
    assert!(out.contains("stored 1 message(s)"), "{out}");
}

/// The CLI works beside a daemon that is busy ingesting: writers wait their turn (busy
/// timeout, short transactions), readers never wait (WAL).
#[test]
fn cli_commands_work_while_the_daemon_ingests() {
    let desk = Desk::empty();
    let traffic = common::mailgen::traffic(3, 300, 3000, 20);
    std::fs::write(desk.examples().join("accounts.csv"), &traffic.accounts_csv).unwrap();
    for (i, raw) in traffic.messages.iter().enumerate() {
        desk.deliver(&format!("{}.M{i}P1.test", 1_700_000_000 + i), raw);
    }
    desk.edit_config("[[mailbox]]\nname", "[[mailbox]]\nbatch_size = 50\nname");
    let import = desk.examples().join("more.csv");
    std::fs::write(
        &import,
        "reference,email,name,language\nX1,new.customer@example.org,New Customer,en\n",
    )
    .unwrap();
    let daemon = desk.spawn_daemon();
    wait_for("ingestion to start", Duration::from_secs(20), || {
        desk.stored() > 0
    });
    let mut rounds = 0;
    while desk.stored() < 3000 || rounds < 3 {
        for args in [
            &["accounts", "import", import.to_str().unwrap()][..],
            &["tickets", "list", "--json"][..],
            &["accounts", "list", "--json"][..],
            &["check"][..],
        ] {
            let out = desk.maildesk(args);
            let err = common::stderr(&out);
            assert!(out.status.success(), "{args:?} during ingestion: {err}");
            assert!(!err.contains("locked"), "{err}");
        }
        rounds += 1;
    }
    assert!(rounds >= 3);
    terminate(daemon);
    assert_eq!(desk.stored(), 3000);
}
