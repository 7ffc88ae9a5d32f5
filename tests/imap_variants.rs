//! IMAP ingestion against Dovecot variants: implicit TLS and STARTTLS with a private CA, a
//! certificate that cannot be verified, a server without IDLE and one without MOVE.

mod common;

use std::time::{Duration, Instant};

use common::dovecot::{Dovecot, Options};
use common::{Desk, demo_mails, stderr, terminate, wait_for};

const SUPPORT: &str = "support@example.test";
const ABUSE: &str = "abuse@example.test";

/// How a mailbox reaches the server.
#[derive(Clone, Copy)]
enum Link {
    /// `security = "plain"` to 127.0.0.1, the plain port.
    Plain,
    /// `security = "tls"` to localhost, the IMAPS port; `ca_file` the test CA if `trusted`.
    Tls { trusted: bool },
    /// `security = "starttls"` to localhost, the plain port; `ca_file` likewise.
    Starttls { trusted: bool },
}

impl Link {
    /// The `host`, `port`, `security` and `ca_file` lines.
    fn lines(self, dovecot: &Dovecot) -> String {
        let ca = |trusted: bool| {
            if trusted {
                let ca = dovecot.ca_file().expect("a TLS Dovecot has a CA");
                format!("ca_file = \"{}\"\n", ca.display())
            } else {
                String::new()
            }
        };
        match self {
            Link::Plain => format!(
                "host = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\n",
                dovecot.imap_port
            ),
            Link::Tls { trusted } => format!(
                "host = \"localhost\"\nport = {}\nsecurity = \"tls\"\n{}",
                dovecot
                    .imaps_port()
                    .expect("a TLS Dovecot has an IMAPS port"),
                ca(trusted)
            ),
            Link::Starttls { trusted } => format!(
                "host = \"localhost\"\nport = {}\nsecurity = \"starttls\"\n{}",
                dovecot.imap_port,
                ca(trusted)
            ),
        }
    }
}

/// Points the demo's config at `dovecot`: a support mailbox reached over `support` with
/// `extra` lines added, and an abuse one reached over `abuse`.
fn use_imap(desk: &Desk, dovecot: &Dovecot, support: Link, abuse: Link, extra: &str) {
    let config = desk.config();
    let maildir_block = "[[mailbox]]\nname = \"support\"\nrole = \"support\"\nkind = \"maildir\"\npath = \"maildir\"\ninitial_sync = \"process\"\n";
    let imap = |name: &str, role: &str, user: &str, link: Link, extra: &str| {
        format!(
            "[[mailbox]]\nname = \"{name}\"\nrole = \"{role}\"\nkind = \"imap\"\n{}user = \"{user}\"\npassword_file = \"{}\"\n{extra}\n",
            link.lines(dovecot),
            dovecot.password_file().display()
        )
    };
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains(maildir_block));
    let blocks = imap("support", "support", SUPPORT, support, extra)
        + "\n"
        + &imap("abuse", "abuse", ABUSE, abuse, "");
    std::fs::write(&config, text.replace(maildir_block, &blocks)).unwrap();
}

/// Sets `[daemon] poll_interval_secs`.
fn poll_every(desk: &Desk, secs: u64) {
    let config = desk.config();
    let text = std::fs::read_to_string(&config).unwrap();
    let old = "[daemon]\npoll_interval_secs = 30";
    assert!(text.contains(old), "{text}");
    let text = text.replace(old, &format!("[daemon]\npoll_interval_secs = {secs}"));
    std::fs::write(&config, text).unwrap();
}

fn cursors(desk: &Desk) -> i64 {
    if !desk.examples().join("demo.db").exists() {
        return 0;
    }
    desk.db()
        .query_row("SELECT count(*) FROM mailbox_cursors", [], |r| r.get(0))
        .unwrap_or(0)
}

/// dovecot.log's login lines for `user` (`imap-login: Info: Login: user=<…>, …, TLS, …`).
fn logins(dovecot: &Dovecot, user: &str) -> Vec<String> {
    let tag = format!("Login: user=<{user}>");
    dovecot
        .log()
        .lines()
        .filter(|l| l.contains(&tag))
        .map(str::to_string)
        .collect()
}

/// The demo mails in both INBOXes, one `run --once`; then they are all stored and moved, and
/// the daemon's logins were over TLS (Dovecot marks them `TLS`; the harness's own plain logins
/// from loopback are `secured`).
fn run_once_over(support: Link, abuse: Link) {
    let desk = Desk::empty();
    let dovecot = Dovecot::start_with(
        desk.dir.path(),
        Options {
            tls: true,
            ..Options::default()
        },
    );
    use_imap(
        &desk,
        &dovecot,
        support,
        abuse,
        "initial_sync = \"process\"",
    );
    let mails = demo_mails();
    dovecot.append_many(SUPPORT, "INBOX", &mails);
    dovecot.append(ABUSE, "INBOX", &mails[0]);

    let summary = desk.ok(&["run", "--once"]);
    assert!(
        summary.contains("stored 8 message(s), 0 already stored, 0 failed"),
        "{summary}"
    );
    assert_eq!(desk.stored(), 8);
    assert_eq!(dovecot.count(SUPPORT, "INBOX"), 0);
    assert_eq!(dovecot.count(SUPPORT, "Processed"), 7);
    assert_eq!(dovecot.count(ABUSE, "INBOX"), 0);
    assert_eq!(dovecot.count(ABUSE, "Processed"), 1);
    for user in [SUPPORT, ABUSE] {
        let logins = logins(&dovecot, user);
        assert!(
            logins.iter().any(|l| l.contains(", TLS,")),
            "no TLS login of {user}:\n{}",
            logins.join("\n")
        );
    }
}

#[test]
fn implicit_tls_with_the_ca_in_ca_file() {
    run_once_over(Link::Tls { trusted: true }, Link::Tls { trusted: true });
}

#[test]
fn starttls_with_the_ca_in_ca_file() {
    run_once_over(
        Link::Starttls { trusted: true },
        Link::Starttls { trusted: true },
    );
}

/// The test CA is in no system store: without `ca_file` the certificate cannot be verified,
/// over implicit TLS (support) as over STARTTLS (abuse). Nothing is logged in, stored or
/// touched, and each mailbox says what is wrong.
#[test]
fn a_certificate_that_cannot_be_verified_is_refused() {
    let desk = Desk::empty();
    let dovecot = Dovecot::start_with(
        desk.dir.path(),
        Options {
            tls: true,
            ..Options::default()
        },
    );
    use_imap(
        &desk,
        &dovecot,
        Link::Tls { trusted: false },
        Link::Starttls { trusted: false },
        "initial_sync = \"process\"",
    );
    let mails = demo_mails();
    dovecot.append_many(SUPPORT, "INBOX", &mails);
    dovecot.append(ABUSE, "INBOX", &mails[0]);
    let harness_logins = logins(&dovecot, SUPPORT).len() + logins(&dovecot, ABUSE).len();

    let out = desk.maildesk(&["run", "--once"]);
    let err = stderr(&out);
    eprintln!("{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    for mailbox in ["support", "abuse"] {
        let line = err
            .lines()
            .find(|l| l.contains(&format!("mailbox {mailbox}: ")))
            .unwrap_or_else(|| panic!("no error for mailbox {mailbox}:\n{err}"));
        assert!(line.starts_with("error: "), "{err}");
        assert!(
            line.contains(&format!(
                "mailbox {mailbox}: TLS: handshake with localhost failed"
            )),
            "{err}"
        );
        assert!(
            line.contains("certificate") && line.contains("UnknownIssuer"),
            "mailbox {mailbox}: the error should say the certificate's issuer is unknown:\n{err}"
        );
    }
    assert_eq!(desk.stored(), 0);
    assert_eq!(
        logins(&dovecot, SUPPORT).len() + logins(&dovecot, ABUSE).len(),
        harness_logins,
        "maildesk must not log in over an unverified connection"
    );
    let inbox = dovecot.uids(SUPPORT, "INBOX");
    assert_eq!(inbox.len(), 7);
    assert!(inbox.iter().all(|(_, flags)| flags.is_empty()), "{inbox:?}");
    assert_eq!(dovecot.count(ABUSE, "INBOX"), 1);
    assert_eq!(dovecot.count(SUPPORT, "Processed"), 0);
}

/// Without IDLE the daemon polls every `poll_interval_secs`: new mail arrives within a
/// few seconds, IDLE is never sent, and the polls (NOOP) come no faster than the interval.
#[test]
fn without_idle_the_daemon_polls() {
    let desk = Desk::empty();
    let dovecot = Dovecot::start_with(
        desk.dir.path(),
        Options {
            without_idle: true,
            log_commands: true,
            ..Options::default()
        },
    );
    assert!(
        !dovecot.capabilities(SUPPORT).iter().any(|c| c == "IDLE"),
        "{:?}",
        dovecot.capabilities(SUPPORT)
    );
    use_imap(&desk, &dovecot, Link::Plain, Link::Plain, "");
    poll_every(&desk, 1);
    let started = Instant::now();
    let daemon = desk.spawn_daemon();
    wait_for("both cursors", Duration::from_secs(20), || {
        cursors(&desk) == 2
    });
    std::thread::sleep(Duration::from_millis(300));
    dovecot.append(SUPPORT, "INBOX", &demo_mails()[0]);
    let latency = wait_for(
        "the message to be committed",
        Duration::from_secs(10),
        || desk.stored() == 1,
    );
    eprintln!("polling: committed {latency:?} after APPEND");
    wait_for("the move to Processed", Duration::from_secs(10), || {
        dovecot.count(SUPPORT, "Processed") == 1
    });
    // A few more polls, to see their pace.
    std::thread::sleep(Duration::from_secs(2));
    let log = terminate(daemon);
    let ran_for = started.elapsed().as_secs_f64();

    assert!(log.contains("idle=false"), "{log}");
    assert!(!log.contains("idle=true"), "{log}");
    assert_eq!(dovecot.count(SUPPORT, "INBOX"), 0);
    let commands = dovecot.commands(SUPPORT);
    assert!(
        !commands.iter().any(|c| c.starts_with("IDLE")),
        "{commands:#?}"
    );
    let polls = commands.iter().filter(|c| *c == "NOOP").count();
    assert!(
        polls >= 2 && polls as f64 <= ran_for + 1.0,
        "{polls} NOOPs in {ran_for:.1} s with poll_interval_secs = 1: {commands:#?}"
    );
}

/// Without MOVE a processed message is copied, flagged \Deleted and expunged by UID; the
/// copies in Processed do not carry \Deleted and nothing flagged \Deleted stays in INBOX.
#[test]
fn without_move_mail_is_copied_and_expunged() {
    let desk = Desk::empty();
    let dovecot = Dovecot::start_with(
        desk.dir.path(),
        Options {
            without_move: true,
            log_commands: true,
            ..Options::default()
        },
    );
    let capabilities = dovecot.capabilities(SUPPORT);
    assert!(
        !capabilities.iter().any(|c| c == "MOVE")
            && capabilities.iter().any(|c| c == "UIDPLUS")
            && capabilities.iter().any(|c| c == "IDLE"),
        "{capabilities:?}"
    );
    use_imap(
        &desk,
        &dovecot,
        Link::Plain,
        Link::Plain,
        "initial_sync = \"process\"\nafter = \"move\"\nbatch_size = 100",
    );
    dovecot.append_many(SUPPORT, "INBOX", &demo_mails());

    let summary = desk.ok(&["run", "--once"]);
    assert!(
        summary.contains("stored 7 message(s), 0 already stored, 0 failed"),
        "{summary}"
    );
    assert_eq!(desk.stored(), 7);
    assert_eq!(dovecot.uids(SUPPORT, "INBOX"), Vec::new(), "INBOX empty");
    let processed = dovecot.uids(SUPPORT, "Processed");
    assert_eq!(processed.len(), 7);
    assert!(
        processed
            .iter()
            .all(|(_, flags)| !flags.iter().any(|f| f == "\\Deleted")),
        "{processed:?}"
    );

    let commands = dovecot.commands(SUPPORT);
    assert!(
        !commands.iter().any(|c| c.contains("MOVE")),
        "MOVE sent to a server without it: {commands:#?}"
    );
    let position = |prefix: &str| {
        commands
            .iter()
            .position(|c| c.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {commands:#?}"))
    };
    let copy = position("UID COPY 1:7 \"Processed\"");
    let delete = position("UID STORE 1:7 +FLAGS.SILENT (\\Deleted)");
    let expunge = position("UID EXPUNGE 1:7");
    assert!(copy < delete && delete < expunge, "{commands:#?}");
    assert!(
        dovecot.log().contains("deleted=7 expunged=7"),
        "{}",
        dovecot.log()
    );
}
