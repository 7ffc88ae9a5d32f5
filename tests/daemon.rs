//! `maildesk run` as a long-running process: it picks up new mail on its own and stops
//! cleanly on SIGTERM.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Desk;

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn daemon_polls_for_new_mail_and_exits_cleanly_on_sigterm() {
    let desk = Desk::demo();
    let config = desk.config();
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("poll_interval_secs = 30", "poll_interval_secs = 1");
    std::fs::write(&config, text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_maildesk"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the demo mail to be processed", || {
        desk.files_in("new").is_empty()
    });
    wait_for("the acknowledgements", || desk.sent_mails().len() == 4);

    desk.deliver(
        "1763900000.M1P9.demo",
        b"From: ops@bigshop.example\r\nTo: support@acme-hosting.example\r\nSubject: Backup restore request\r\nMessage-ID: <restore@bigshop.example>\r\n\r\nPlease restore yesterday's backup.\r\n",
    );
    wait_for("the new mail to be acknowledged", || {
        desk.sent_mails().len() == 5
    });

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "maildesk did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(exit.success(), "exit {exit}: {log}");
    assert!(log.contains("maildesk stopped"), "{log}");
}
