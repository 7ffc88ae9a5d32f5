//! A stop is bounded: SIGTERM or SIGINT ends `maildesk run` within 10 s in every state the
//! daemon can be in, with the servers really stopped, and never leaves a batch half done.

mod common;

use std::time::Duration;

use common::imapdesk::{SUPPORT, count, imap_desk};
use common::smtp::SmtpSink;
use common::{Daemon, Desk, mailgen, signal_pid, wait_for};

/// What operators and systemd's stop timeout expect.
const BOUND: Duration = Duration::from_secs(10);

/// Sends `signal`, requires a clean exit within [`BOUND`], returns the log.
fn stop_with(mut daemon: Daemon, signal: &str) -> String {
    daemon.signal(signal);
    let (status, took) = daemon.wait_exit(BOUND);
    let log = daemon.log();
    assert!(status.success(), "exit {status} after SIG{signal}:\n{log}");
    assert!(took < BOUND, "took {took:?}");
    assert!(log.contains("maildesk stopped"), "{log}");
    log
}

/// `count` mails from as many customers, each opening a ticket that gets an answer.
fn fill(desk: &Desk, count: usize) -> mailgen::Generated {
    let traffic = mailgen::traffic(7, count, count, 0);
    std::fs::write(desk.examples().join("accounts.csv"), &traffic.accounts_csv).unwrap();
    desk.append_config("[limits]\nper_address = 100000");
    traffic
}

#[test]
fn sigterm_in_the_reconnect_wait_of_a_stopped_imap_server() {
    let (desk, mut dovecot) = imap_desk("");
    let mut daemon = desk.spawn_daemon();
    daemon.wait_for_log("watching mailbox", BOUND);
    dovecot.stop();
    // The third failure in a row waits 2 to 4 s before trying again.
    daemon.wait_for_log("failures=3", Duration::from_secs(30));
    let log = stop_with(daemon, "TERM");
    assert!(log.contains("IMAP session failed; reconnecting"), "{log}");
}

#[test]
fn sigint_in_idle() {
    let (desk, _dovecot) = imap_desk("");
    let mut daemon = desk.spawn_daemon();
    daemon.wait_for_log("idle=true", BOUND);
    std::thread::sleep(Duration::from_millis(300));
    stop_with(daemon, "INT");
}

/// A server that stops answering in the middle of a session (its IMAP process stopped:
/// the connection stays open, nothing comes back). The command that waits for it is
/// abandoned once the grace is over.
#[test]
fn sigterm_while_the_imap_server_hangs() {
    let (desk, dovecot) = imap_desk("");
    let mut daemon = desk.spawn_daemon();
    daemon.wait_for_log("idle=true", BOUND);
    let _hung = Stopped::new(dovecot.imap_processes());
    daemon.signal("TERM");
    let (status, took) = daemon.wait_exit(BOUND);
    let log = daemon.log();
    assert!(status.success(), "{status}:\n{log}");
    assert!(took < BOUND, "took {took:?}");
    assert!(log.contains("abandoned an IMAP command"), "{log}");
}

/// Processes stopped with SIGSTOP until the guard is dropped, then continued (a stopped
/// process would hold up the server's own shutdown).
struct Stopped(Vec<u32>);

impl Stopped {
    fn new(pids: Vec<u32>) -> Stopped {
        assert!(!pids.is_empty(), "nothing to stop");
        for pid in &pids {
            signal_pid(*pid, "STOP");
        }
        Stopped(pids)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = std::process::Command::new("kill")
                .args(["-CONT", &pid.to_string()])
                .status();
        }
    }
}

/// A large first sync stops between batches; the next start finishes it, and every
/// message is stored exactly once.
#[test]
fn sigterm_during_a_large_first_imap_sync() {
    let (desk, dovecot) = imap_desk("batch_size = 20");
    let traffic = fill(&desk, 2000);
    for chunk in traffic.messages.chunks(500) {
        dovecot.append_many(SUPPORT, "INBOX", chunk);
    }
    let mut daemon = desk.spawn_daemon();
    wait_for("the first batches", BOUND, || desk.stored() >= 200);
    daemon.signal("TERM");
    let (status, took) = daemon.wait_exit(BOUND);
    assert!(status.success(), "{status}:\n{}", daemon.log());
    let stored = desk.stored();
    assert!(
        stored < 4000,
        "the sync was over before the stop ({took:?})"
    );
    assert_eq!(
        dovecot.count(SUPPORT, "Processed"),
        stored as usize,
        "exactly what was committed was moved"
    );

    desk.ok(&["run", "--once"]);
    let distinct = "SELECT count(DISTINCT sha256) FROM messages WHERE direction = 'in'";
    assert_eq!(desk.stored(), 2000);
    assert_eq!(count(&desk, distinct), 2000);
    assert_eq!(dovecot.count(SUPPORT, "INBOX"), 0);
    assert_eq!(dovecot.count(SUPPORT, "Processed"), 2000);
}

#[test]
fn sigterm_during_a_large_first_maildir_sync() {
    let desk = Desk::empty();
    desk.edit_config("[[mailbox]]\nname", "[[mailbox]]\nbatch_size = 50\nname");
    let traffic = fill(&desk, 3000);
    for (i, raw) in traffic.messages.iter().enumerate() {
        desk.deliver(&format!("{}.M{i}P1.test", 1_700_000_000 + i), raw);
    }
    let mut daemon = desk.spawn_daemon();
    wait_for("the first batches", BOUND, || desk.stored() >= 100);
    daemon.signal("TERM");
    let (status, _) = daemon.wait_exit(BOUND);
    assert!(status.success(), "{status}:\n{}", daemon.log());
    let stored = desk.stored() as usize;
    assert!(stored < 3000, "the sync was over before the stop");
    assert_eq!(desk.files_in("new").len(), 3000 - stored, "stored = moved");

    desk.ok(&["run", "--once"]);
    assert_eq!(desk.stored(), 3000);
    assert_eq!(
        count(
            &desk,
            "SELECT count(DISTINCT sha256) FROM messages WHERE direction = 'in'"
        ),
        3000
    );
    assert!(desk.files_in("new").is_empty());
}

/// A thousand mails due and a relay that hangs (stopped with SIGSTOP: the kernel
/// accepts the connection, nobody answers), then one that refuses (killed). Each stop is
/// bounded; no mail is marked sent that was not, and once the relay is back every mail
/// is delivered exactly once.
#[test]
fn sigterm_with_thousands_of_mails_due_and_the_relay_hung_or_gone() {
    const MAILS: usize = 1000;
    let desk = Desk::empty();
    let sink = SmtpSink::start(desk.dir.path());
    let port = sink.port;
    desk.use_smtp(port);
    let traffic = fill(&desk, MAILS);
    for (i, raw) in traffic.messages.iter().enumerate() {
        desk.deliver(&format!("{}.M{i}P1.test", 1_700_000_000 + i), raw);
    }
    signal_pid(sink.pid(), "STOP");
    let queued = || count(&desk, "SELECT count(*) FROM outbox");
    let sent = || count(&desk, "SELECT count(*) FROM outbox WHERE status = 'sent'");

    let daemon = desk.spawn_daemon();
    wait_for("every mail queued", Duration::from_secs(60), || {
        desk.stored() == MAILS as i64 && queued() == MAILS as i64
    });
    std::thread::sleep(Duration::from_millis(500));
    stop_with(daemon, "TERM");
    assert_eq!(sent(), 0);

    // Gone: every attempt is refused at once, each one deferred.
    drop(sink);
    desk.ok(&["outbox", "retry", "--all"]);
    let mut daemon = desk.spawn_daemon();
    daemon.wait_for_log("delivery failed, will retry", BOUND);
    stop_with(daemon, "TERM");
    assert_eq!(sent(), 0);
    assert!(count(&desk, "SELECT count(*) FROM outbox WHERE attempts > 0") > 0);

    let sink = SmtpSink::start_on(desk.dir.path(), port);
    desk.ok(&["outbox", "retry", "--all"]);
    desk.ok(&["run", "--once"]);
    assert_eq!(sent(), MAILS as i64);
    let received = sink.received();
    let ids: std::collections::HashSet<_> = received
        .iter()
        .filter_map(|m| common::header(m, "Message-ID"))
        .collect();
    assert_eq!(received.len(), MAILS, "each mail once");
    assert_eq!(ids.len(), MAILS);
}
