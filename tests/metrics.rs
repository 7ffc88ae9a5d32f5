//! `[daemon] listen`: Prometheus metrics and the health report over HTTP, checked against
//! what the database holds while a real Dovecot is read, and when it goes away.

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::Duration;

use common::imapdesk::{SUPPORT, count, imap_desk};
use common::scrape::{self, Sample, get, listening_ports, value};
use common::smtp::free_port;
use common::{Desk, mailgen, wait_for};
use serde_json::Value;

const MESSAGES: usize = 300;
const STORED: &str = "maildesk_messages_stored_total";

/// Serves the endpoint on a free loopback port; returns the port.
fn listen(desk: &Desk) -> u16 {
    let port = free_port();
    desk.edit_config(
        "[daemon]\n",
        &format!("[daemon]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    port
}

fn stored_counter(samples: &[Sample]) -> f64 {
    let labels = [("mailbox", "support"), ("result", "stored")];
    value(samples, STORED, &labels).unwrap_or(0.0)
}

fn health(port: u16) -> (u16, Value) {
    let (code, body) = get(port, "/health").expect("/health answers");
    (code, serde_json::from_str(&body).expect("JSON"))
}

/// Outbox rows by status, as the table holds them.
fn outbox_rows(desk: &Desk) -> BTreeMap<String, f64> {
    let db = desk.db();
    let mut stmt = db
        .prepare("SELECT status, count(*) FROM outbox GROUP BY status")
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as f64))
        })
        .unwrap();
    rows.map(Result::unwrap).collect()
}

fn outbox_gauges(samples: &[Sample]) -> BTreeMap<String, f64> {
    samples
        .iter()
        .filter(|s| s.name == "maildesk_outbox_rows" && s.value > 0.0)
        .map(|s| (s.labels["status"].clone(), s.value))
        .collect()
}

/// Rule matches counted by the daemon against the `rule.matched` events it recorded.
fn assert_rule_matches(desk: &Desk, samples: &[Sample]) {
    let counted: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == "maildesk_rule_matches_total")
        .collect();
    assert!(!counted.is_empty(), "no rule matched: {samples:?}");
    let total = count(
        desk,
        "SELECT count(*) FROM events WHERE kind = 'rule.matched'",
    );
    assert_eq!(counted.iter().map(|s| s.value).sum::<f64>(), total as f64);
    for sample in counted {
        let rule = &sample.labels["rule"];
        let events = count(
            desk,
            &format!(
                "SELECT count(*) FROM events WHERE kind = 'rule.matched' AND detail LIKE '% {rule}: %'"
            ),
        );
        assert_eq!(sample.value, events as f64, "rule {rule}");
    }
}

#[test]
fn metrics_show_what_the_database_holds_during_a_real_imap_ingestion() {
    let (desk, mut dovecot) = imap_desk("initial_sync = \"process\"");
    let traffic = mailgen::traffic(11, 40, MESSAGES, 30);
    std::fs::write(desk.examples().join("accounts.csv"), &traffic.accounts_csv).unwrap();
    let port = listen(&desk);
    let mut daemon = desk.spawn_daemon();
    daemon.wait_for_log("watching mailbox", Duration::from_secs(20));
    assert_eq!(listening_ports(daemon.id()), [port]);

    // Scraped while the mail arrives: the counter only grows, and never shows a message
    // the database does not hold yet (it counts after the commit).
    let mut seen = Vec::new();
    std::thread::scope(|scope| {
        let appending = scope.spawn(|| {
            for chunk in traffic.messages.chunks(50) {
                dovecot.append_many(SUPPORT, "INBOX", chunk);
            }
        });
        while !appending.is_finished() || desk.stored() < MESSAGES as i64 {
            let counted = stored_counter(&scrape::metrics(port));
            assert!(counted <= desk.stored() as f64);
            seen.push(counted);
            std::thread::sleep(Duration::from_millis(50));
            assert!(
                seen.len() < 1200,
                "not stored within a minute: {}",
                desk.stored()
            );
        }
    });
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");

    // Then every figure equals the database's (the outbox's once its round is over).
    let stored = count(
        &desk,
        "SELECT count(*) FROM messages WHERE direction = 'in' AND mailbox = 'support'",
    );
    assert_eq!(stored, MESSAGES as i64);
    let mut samples = Vec::new();
    wait_for(
        "the outbox gauges to match the table",
        Duration::from_secs(30),
        || {
            samples = scrape::metrics(port);
            outbox_gauges(&samples) == outbox_rows(&desk)
        },
    );
    assert_eq!(stored_counter(&samples), stored as f64);
    let labels = [("mailbox", "support")];
    let latency = "maildesk_ingest_latency_seconds_count";
    assert_eq!(value(&samples, latency, &labels), Some(stored as f64));
    assert!(outbox_rows(&desk)["sent"] > 0.0, "{:?}", outbox_rows(&desk));
    assert_eq!(value(&samples, "maildesk_mailbox_up", &labels), Some(1.0));
    let last_sync = value(
        &samples,
        "maildesk_mailbox_last_sync_timestamp_seconds",
        &labels,
    )
    .expect("last sync");
    let now = chrono::Utc::now().timestamp() as f64;
    assert!(now - last_sync < 60.0, "last sync {last_sync}, now {now}");
    assert_rule_matches(&desk, &samples);

    let (code, report) = health(port);
    assert_eq!(code, 200, "{report:#}");
    assert_eq!(report["healthy"], true);
    assert_eq!(report["mailboxes"]["support"]["up"], true, "{report:#}");
    assert_eq!(
        report["mailboxes"]["support"]["state"], "idle",
        "{report:#}"
    );
    let pending = outbox_rows(&desk).get("pending").copied().unwrap_or(0.0);
    assert_eq!(report["outbox"]["pending"].as_f64(), Some(pending));
    assert_eq!(report["pid"].as_u64(), Some(u64::from(daemon.id())));

    // Dovecot goes away: the mailbox is down at once, the daemon unhealthy once that
    // lasted longer than the tolerance, and the health file says the same.
    dovecot.stop();
    wait_for("the mailbox down", Duration::from_secs(10), || {
        value(&scrape::metrics(port), "maildesk_mailbox_up", &labels) == Some(0.0)
    });
    let mut report = Value::Null;
    wait_for("/health to answer 503", Duration::from_secs(60), || {
        let (code, body) = health(port);
        report = body;
        code == 503
    });
    assert_eq!(report["healthy"], false);
    let support = &report["mailboxes"]["support"];
    assert_eq!(support["up"], false, "{report:#}");
    assert_eq!(support["state"], "reconnecting", "{report:#}");
    assert!(
        support["last_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{report:#}"
    );
    let problems = report["problems"].to_string();
    assert!(problems.contains("mailbox support down"), "{problems}");
    let file = desk.examples().join("demo.health.json");
    wait_for(
        "the health file to hold the same report",
        Duration::from_secs(10),
        || {
            let written: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
            let (_, served) = health(port);
            comparable(written) == comparable(served)
        },
    );
    common::terminate(daemon);
    assert!(!file.exists(), "a stopped daemon leaves no health file");
}

/// A report without what differs between two moments of the same state.
fn comparable(mut report: Value) -> Value {
    report["checked_at"] = Value::Null;
    report["outbox"]["oldest_due_age_secs"] = Value::Null;
    for mailbox in report["mailboxes"]
        .as_object_mut()
        .into_iter()
        .flat_map(|m| m.values_mut())
    {
        // A reconnect attempt renews it; the state and the error text stay.
        mailbox["last_error_at"] = Value::Null;
    }
    report
}

#[test]
fn nothing_listens_unless_configured() {
    let desk = Desk::demo();
    let mut daemon = desk.spawn_daemon();
    daemon.wait_for_log("maildesk started", Duration::from_secs(20));
    wait_for("the demo's mails", Duration::from_secs(20), || {
        desk.stored() > 0
    });
    assert_eq!(listening_ports(daemon.id()), Vec::<u16>::new());
    let log = common::terminate(daemon);
    assert!(!log.contains("serving /metrics"), "{log}");
    assert!(!desk.ok(&["config"]).contains("listen"));
}

#[test]
fn listen_must_be_an_address_and_a_port() {
    let desk = Desk::demo();
    desk.edit_config("[daemon]\n", "[daemon]\nlisten = \"localhost:9464\"\n");
    let out = desk.maildesk(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let text = std::fs::read_to_string(desk.config()).unwrap();
    let line = common::cfg::line_of(&text, "listen =");
    let stderr = common::stderr(&out);
    assert!(
        stderr.contains(&format!("demo.toml:{line}:")) && stderr.contains("socket address"),
        "{stderr}"
    );
    assert!(
        stderr.contains("\"127.0.0.1:9464\""),
        "the hint shows one: {stderr}"
    );
    assert_eq!(desk.maildesk(&["run", "--once"]).status.code(), Some(2));

    let port = free_port();
    desk.edit_config("\"localhost:9464\"", &format!("\"127.0.0.1:{port}\""));
    let config = desk.ok(&["config"]);
    assert!(
        config.contains(&format!("listen = \"127.0.0.1:{port}\"")),
        "{config}"
    );
}

#[test]
fn a_taken_address_stops_the_start() {
    let desk = Desk::demo();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    desk.edit_config(
        "[daemon]\n",
        &format!("[daemon]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let mut daemon = desk.spawn_daemon();
    let (status, _) = daemon.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1));
    let stderr = daemon.log();
    assert!(
        stderr.contains(&format!(
            "cannot listen on 127.0.0.1:{port} ([daemon] listen)"
        )),
        "{stderr}"
    );
    assert_eq!(desk.stored(), 0, "no mail was read");
}

/// A refused reload is counted and reported without making the daemon unhealthy; a
/// Maildir that cannot be read is down, with its error, until it can.
#[test]
fn refused_reloads_and_an_unreadable_maildir_are_reported() {
    let desk = Desk::demo();
    desk.edit_config("poll_interval_secs = 30", "poll_interval_secs = 1");
    let port = listen(&desk);
    let _daemon = desk.spawn_daemon();
    wait_for("the demo's mails", Duration::from_secs(20), || {
        desk.stored() == 7
    });
    let policy = [("files", "policy")];
    let failures = "maildesk_reload_failures_total";
    assert_eq!(value(&scrape::metrics(port), failures, &policy), None);

    std::fs::write(
        desk.dir.path().join("rules/15-local.toml"),
        "[[rule]]\nname = \"broken\"\nwhen.subject = '(unclosed'\nthen.priority = \"high\"\n",
    )
    .unwrap();
    wait_for("the refusal to be counted", Duration::from_secs(20), || {
        value(&scrape::metrics(port), failures, &policy) == Some(1.0)
    });
    let (code, report) = health(port);
    assert_eq!(
        code, 200,
        "the rules loaded before keep serving: {report:#}"
    );
    let problems = report["rejected"]["problems"].to_string();
    assert!(problems.contains("15-local.toml"), "{report:#}");

    let accounts = [("files", "accounts")];
    std::fs::write(
        desk.examples().join("accounts.csv"),
        "reference,email\nX1,\n",
    )
    .unwrap();
    wait_for(
        "the accounts refusal to be counted",
        Duration::from_secs(20),
        || value(&scrape::metrics(port), failures, &accounts) == Some(1.0),
    );
    let (code, report) = health(port);
    assert_eq!(code, 200, "the registry stays as it was: {report:#}");
    assert!(!report["accounts_rejected"].is_null(), "{report:#}");

    let new = desk.maildir().join("new");
    std::fs::rename(&new, desk.maildir().join("gone")).unwrap();
    let labels = [("mailbox", "support")];
    wait_for("the Maildir down", Duration::from_secs(20), || {
        value(&scrape::metrics(port), "maildesk_mailbox_up", &labels) == Some(0.0)
    });
    let (_, report) = health(port);
    let support = &report["mailboxes"]["support"];
    assert_eq!(support["state"], "error", "{report:#}");
    let error = support["last_error"].as_str().unwrap_or_default();
    assert!(error.starts_with("cannot list new mail: "), "{report:#}");
    let failed = [("mailbox", "support"), ("result", "failed")];
    assert!(value(&scrape::metrics(port), STORED, &failed).is_some_and(|n| n >= 1.0));

    std::fs::rename(desk.maildir().join("gone"), &new).unwrap();
    wait_for("the Maildir up again", Duration::from_secs(20), || {
        value(&scrape::metrics(port), "maildesk_mailbox_up", &labels) == Some(1.0)
    });
    assert_eq!(health(port).1["mailboxes"]["support"]["state"], "ok");
}
