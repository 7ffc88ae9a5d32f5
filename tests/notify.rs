//! systemd's notify protocol, for real: `maildesk run` on the demo with `$NOTIFY_SOCKET`
//! and `$WATCHDOG_USEC` set as systemd sets them for a `Type=notify` unit with
//! `WatchdogSec=`, and a datagram socket of the test standing in for systemd.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Daemon, Desk, terminate};

/// What systemd would have been told: one entry per `KEY=VALUE` line, in order.
struct Notifications {
    socket: UnixDatagram,
    seen: Vec<String>,
}

impl Notifications {
    /// Reads datagrams until `count` lines equal to `line` have arrived; fails after 20 s.
    fn wait_for(&mut self, line: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 4096];
        while self.seen.iter().filter(|l| *l == line).count() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no {line} x{count}; got {:?}", self.seen);
            self.socket.set_read_timeout(Some(left)).expect("timeout");
            let n = match self.socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e) => panic!("waiting for {line}: {e}; got {:?}", self.seen),
            };
            let text = std::str::from_utf8(&buf[..n]).expect("utf-8 notification");
            self.seen.extend(text.lines().map(str::to_string));
        }
    }
}

#[test]
fn daemon_tells_systemd_it_is_ready_alive_and_stopping() {
    let desk = Desk::demo();
    let path = desk.dir.path().join("notify.sock");
    let mut notes = Notifications {
        socket: UnixDatagram::bind(&path).expect("bind the notify socket"),
        seen: Vec::new(),
    };
    let daemon = Daemon::spawn(
        Command::new(env!("CARGO_BIN_EXE_maildesk"))
            .arg("--config")
            .arg(desk.config())
            .arg("run")
            .env("NOTIFY_SOCKET", &path)
            // 0.4 s: a ping every 0.2 s.
            .env("WATCHDOG_USEC", "400000")
            .env("RUST_LOG", "info"),
    );

    notes.wait_for("READY=1", 1);
    notes.wait_for("WATCHDOG=1", 3);
    assert!(
        !notes.seen.iter().any(|l| l == "STOPPING=1"),
        "stopping before any stop: {:?}",
        notes.seen
    );

    let log = terminate(daemon);
    notes.wait_for("STOPPING=1", 1);
    assert_eq!(
        notes.seen.iter().filter(|l| *l == "READY=1").count(),
        1,
        "{:?}",
        notes.seen
    );
    assert!(log.contains("systemd watchdog enabled"), "{log}");
    assert!(log.contains("maildesk stopped"), "{log}");
}

#[test]
fn run_once_reports_ready_and_works_without_a_watchdog() {
    let desk = Desk::demo();
    let path = desk.dir.path().join("notify.sock");
    let mut notes = Notifications {
        socket: UnixDatagram::bind(&path).expect("bind the notify socket"),
        seen: Vec::new(),
    };
    let out = Command::new(env!("CARGO_BIN_EXE_maildesk"))
        .arg("--config")
        .arg(desk.config())
        .args(["run", "--once"])
        .env("NOTIFY_SOCKET", &path)
        .env_remove("WATCHDOG_USEC")
        .output()
        .expect("run --once");
    assert!(out.status.success(), "{}", common::stderr(&out));
    notes.wait_for("READY=1", 1);
    assert_eq!(notes.seen, ["READY=1"], "only READY without a watchdog");
    assert_eq!(desk.sent_mails().len(), 5, "the demo was handled as usual");
}
