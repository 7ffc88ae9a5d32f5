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
