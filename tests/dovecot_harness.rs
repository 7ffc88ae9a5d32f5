//! The Dovecot test harness itself: a real IMAP server that keeps mail across restarts, can
//! be given a new UIDVALIDITY, and runs beside other instances.

#[path = "common/dovecot.rs"]
#[allow(dead_code)]
mod dovecot;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use dovecot::Dovecot;

const SUPPORT: &str = "support@example.test";

fn mail(n: u32) -> Vec<u8> {
    format!(
        "From: Alice Example <alice@client.example>\r\n\
         To: support@example.test\r\n\
         Subject: Harness test {n}\r\n\
         Message-ID: <harness-{n}@client.example>\r\n\
         Date: Mon, 23 Nov 2026 10:00:0{n} +0000\r\n\
         \r\n\
         Message number {n}.\r\n"
    )
    .into_bytes()
}

#[test]
fn mail_and_uidvalidity_survive_a_restart_until_the_mailbox_is_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut dovecot = Dovecot::start(dir.path());

    dovecot.append_many(SUPPORT, "INBOX", &[mail(1), mail(2), mail(3)]);
    assert_eq!(dovecot.count(SUPPORT, "INBOX"), 3);
    let uids = dovecot.uids(SUPPORT, "INBOX");
    assert_eq!(uids.len(), 3, "{uids:?}");
    assert!(uids.windows(2).all(|w| w[0].0 < w[1].0), "{uids:?}");
    for (uid, flags) in &uids {
        assert!(!flags.iter().any(|f| f == "\\Seen"), "UID {uid}: {flags:?}");
        assert!(
            !flags.iter().any(|f| f == "\\Recent"),
            "UID {uid}: {flags:?}"
        );
    }
    let uidvalidity = dovecot.uidvalidity(SUPPORT, "INBOX");

    dovecot.restart();
    assert_eq!(dovecot.count(SUPPORT, "INBOX"), 3);
    assert_eq!(dovecot.uids(SUPPORT, "INBOX"), uids);
    assert_eq!(dovecot.uidvalidity(SUPPORT, "INBOX"), uidvalidity);

    dovecot.change_uidvalidity(SUPPORT, "INBOX");
    let changed = dovecot.uidvalidity(SUPPORT, "INBOX");
    assert_ne!(changed, uidvalidity);
    assert_eq!(dovecot.count(SUPPORT, "INBOX"), 3);

    dovecot.restart();
    assert_eq!(dovecot.uidvalidity(SUPPORT, "INBOX"), changed);
    assert_eq!(dovecot.count(SUPPORT, "INBOX"), 3);
}

#[test]
fn append_creates_a_missing_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dovecot = Dovecot::start(dir.path());

    assert_eq!(dovecot.uids(SUPPORT, "Processed"), Vec::new());
    assert_eq!(dovecot.count(SUPPORT, "Processed"), 0);

    dovecot.append(SUPPORT, "Processed", &mail(1));
    dovecot.append(SUPPORT, "Processed", &mail(2));
    assert_eq!(dovecot.count(SUPPORT, "Processed"), 2);
    assert_eq!(dovecot.uids(SUPPORT, "Processed").len(), 2);
    assert_eq!(dovecot.count(SUPPORT, "INBOX"), 0);
    // Users have mailboxes of their own.
    assert_eq!(dovecot.count("abuse@example.test", "Processed"), 0);
    dovecot.append("alice@client.example", "INBOX", &mail(3));
    assert_eq!(dovecot.count("alice@client.example", "INBOX"), 1);
}

#[test]
fn the_password_file_and_the_log_are_the_clients_view() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dovecot = Dovecot::start(dir.path());

    let password = std::fs::read_to_string(dovecot.password_file()).expect("password file");
    assert_eq!(password, "secret\n");
    dovecot.count("abuse@example.test", "INBOX");
    let log = dovecot.log();
    assert!(log.contains("starting up for imap, lmtp"), "{log}");
    assert!(log.contains("Login: user=<abuse@example.test>"), "{log}");
}

#[test]
fn two_instances_run_side_by_side_and_stop_alone() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Dovecot::start(dir_a.path());
    // A directory inside a test's temporary directory works too.
    let b = Dovecot::start(&dir_b.path().join("imap"));
    let ports = [a.imap_port, a.lmtp_port, b.imap_port, b.lmtp_port];
    for (i, port) in ports.iter().enumerate() {
        assert!(!ports[i + 1..].contains(port), "{ports:?}");
    }

    a.append(SUPPORT, "INBOX", &mail(1));
    assert_eq!(a.count(SUPPORT, "INBOX"), 1);
    assert_eq!(b.count(SUPPORT, "INBOX"), 0);

    a.stop();
    assert!(TcpStream::connect(("127.0.0.1", a.imap_port)).is_err());
    assert!(TcpStream::connect(("127.0.0.1", a.lmtp_port)).is_err());
    a.stop(); // a second stop does nothing
    b.append(SUPPORT, "INBOX", &mail(2));
    assert_eq!(b.count(SUPPORT, "INBOX"), 1);
}

#[tokio::test]
async fn the_helpers_work_inside_a_tokio_runtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dovecot = Dovecot::start(dir.path());
    dovecot.append(SUPPORT, "INBOX", &mail(1));
    assert_eq!(dovecot.count(SUPPORT, "INBOX"), 1);
}

#[test]
fn stop_disconnects_a_logged_in_client_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut dovecot = Dovecot::start(dir.path());
    let tcp = TcpStream::connect(("127.0.0.1", dovecot.imap_port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut client = BufReader::new(tcp.try_clone().expect("clone"));
    let mut line = String::new();
    client.read_line(&mut line).expect("greeting");
    assert!(line.starts_with("* OK"), "{line}");
    (&tcp)
        .write_all(b"a LOGIN support@example.test secret\r\nb SELECT INBOX\r\n")
        .expect("send");
    while !line.starts_with("b OK") {
        line.clear();
        client.read_line(&mut line).expect("SELECT");
        assert!(!line.is_empty() && !line.starts_with("a NO"), "{line}");
    }

    dovecot.stop();
    let mut rest = String::new();
    while client.read_line(&mut line).expect("read until closed") > 0 {
        rest.push_str(&line);
        line.clear();
    }
    assert!(rest.contains("* BYE Server shutting down."), "{rest:?}");

    dovecot.restart();
    assert_eq!(dovecot.count(SUPPORT, "INBOX"), 0);
}
