//! Prometheus metrics and the desk's live state, as `GET /metrics` and `GET /health` show
//! them (`src/daemon/http.rs`) and the health file holds it (`src/daemon/health.rs`).
//!
//! Counters go through the `metrics` facade: without a recorder (the CLI, `run --once`,
//! a daemon with no `[daemon] listen`) they cost a check and do nothing. The state of
//! each mailbox and of the outbox lives in [`DeskState`], which sets the matching gauges
//! as it changes, so a scrape never queries the database.

use std::sync::Arc;
use std::time::Duration;

use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::sync::watch;

use crate::config::SourceKind;
use crate::daemon::health::{Health, MailboxHealth, MailboxState, OutboxHealth};
use crate::store::outbox::Summary;

const MESSAGES: &str = "maildesk_messages_stored_total";
const LATENCY: &str = "maildesk_ingest_latency_seconds";
const RULE_MATCHES: &str = "maildesk_rule_matches_total";
const RELOAD_FAILURES: &str = "maildesk_reload_failures_total";
const OUTBOX_ROWS: &str = "maildesk_outbox_rows";
const OUTBOX_OLDEST_DUE: &str = "maildesk_outbox_oldest_due_age_seconds";
const MAILBOX_UP: &str = "maildesk_mailbox_up";
const MAILBOX_LAST_SYNC: &str = "maildesk_mailbox_last_sync_timestamp_seconds";

/// From a single message in IDLE (about half a second) to a large batch behind another.
const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The outbox statuses always exported, 0 when no row has them, so that a status that
/// empties shows 0 instead of its last count.
const OUTBOX_STATUSES: [&str; 3] = ["pending", "sent", "failed"];

/// Installs the process-wide Prometheus recorder; the handle renders `/metrics`.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(LATENCY.into()), &LATENCY_BUCKETS)?
        .install_recorder()?;
    describe_counter!(
        MESSAGES,
        "Messages handed out by a mailbox, by result: stored, already_stored (recognised), failed (left at the source)"
    );
    describe_histogram!(
        LATENCY,
        "Time from fetching a message at its source to the commit that stored it"
    );
    describe_counter!(RULE_MATCHES, "Stored messages a rule matched, by rule name");
    describe_counter!(
        RELOAD_FAILURES,
        "Refused reloads: files = policy (rules and templates) or accounts"
    );
    describe_gauge!(OUTBOX_ROWS, "Outbox rows by status");
    describe_gauge!(
        OUTBOX_OLDEST_DUE,
        "How long the oldest due mail has waited for delivery (0: none due)"
    );
    describe_gauge!(
        MAILBOX_UP,
        "1 while the mailbox is connected (IMAP) or was last read without error (Maildir)"
    );
    describe_gauge!(
        MAILBOX_LAST_SYNC,
        "When the mailbox was last read to its end, Unix time"
    );
    Ok(handle)
}

/// What became of a message handed out by a source.
#[derive(Debug, Clone, Copy)]
pub enum Stored {
    Stored,
    AlreadyStored,
    Failed,
}

/// Counts `count` messages of `mailbox` with `result`.
pub fn messages(mailbox: &str, result: Stored, count: usize) {
    let result = match result {
        Stored::Stored => "stored",
        Stored::AlreadyStored => "already_stored",
        Stored::Failed => "failed",
    };
    counter!(MESSAGES, "mailbox" => mailbox.to_string(), "result" => result)
        .increment(count as u64);
}

/// Records `count` messages of `mailbox` committed `latency` after they were fetched.
pub fn ingested(mailbox: &str, latency: Duration, count: usize) {
    histogram!(LATENCY, "mailbox" => mailbox.to_string()).record_many(latency, count);
}

pub fn rule_matched(rule: &str) {
    counter!(RULE_MATCHES, "rule" => rule.to_string()).increment(1);
}

/// `files`: `policy` or `accounts`.
pub fn reload_failed(files: &'static str) {
    counter!(RELOAD_FAILURES, "files" => files).increment(1);
}

/// Sets the gauges that change with time alone; called before each scrape.
pub fn refresh_time_gauges(health: &Health, now: DateTime<Utc>) {
    gauge!(OUTBOX_OLDEST_DUE).set(health.outbox.oldest_due_age(now).as_secs_f64());
}

/// The desk's live state, shared by every task: each mailbox's and the outbox's, and
/// what the reloader knows. Readers (the health file, `/health`) are told of changes.
#[derive(Clone)]
pub struct DeskState(Arc<watch::Sender<Health>>);

impl DeskState {
    pub fn new(health: Health) -> DeskState {
        DeskState(Arc::new(watch::Sender::new(health)))
    }

    pub fn subscribe(&self) -> watch::Receiver<Health> {
        self.0.subscribe()
    }

    /// A copy of the state as it is now.
    pub fn current(&self) -> Health {
        self.0.borrow().clone()
    }

    /// Applies `change`; readers are told when it returns true.
    pub fn update(&self, change: impl FnOnce(&mut Health) -> bool) {
        self.0.send_if_modified(change);
    }

    /// A mailbox the daemon is about to read: down until its source says otherwise.
    pub fn add_mailbox(&self, name: &str, kind: SourceKind, now: DateTime<Utc>) {
        let state = match kind {
            SourceKind::Imap => MailboxState::Connecting,
            SourceKind::Maildir => MailboxState::Starting,
        };
        gauge!(MAILBOX_UP, "mailbox" => name.to_string()).set(0.0);
        self.update(|h| {
            h.mailboxes
                .insert(name.to_string(), MailboxHealth::new(kind, state, now));
            true
        });
    }

    /// The mailbox is now in `state` (IMAP: connected, syncing, idle).
    pub fn mailbox_state(&self, name: &str, state: MailboxState) {
        self.change_mailbox(name, |m, now| m.enter(state, now));
    }

    /// The mailbox was read to its end.
    pub fn mailbox_synced(&self, name: &str, state: MailboxState) {
        gauge!(MAILBOX_LAST_SYNC, "mailbox" => name.to_string()).set(Utc::now().timestamp() as f64);
        self.change_mailbox(name, |m, now| {
            m.enter(state, now);
            m.last_sync = Some(now);
        });
    }

    /// Reading the mailbox failed: it is down (`reconnecting`, `error`) until it works.
    pub fn mailbox_failed(&self, name: &str, state: MailboxState, error: &str) {
        self.change_mailbox(name, |m, now| {
            m.enter(state, now);
            m.last_error = Some(error.to_string());
            m.last_error_at = Some(now);
        });
    }

    fn change_mailbox(&self, name: &str, change: impl FnOnce(&mut MailboxHealth, DateTime<Utc>)) {
        let mut up = None;
        self.update(|h| {
            let Some(mailbox) = h.mailboxes.get_mut(name) else {
                return false;
            };
            let before = mailbox.clone();
            change(mailbox, Utc::now());
            up = Some(mailbox.up);
            *mailbox != before
        });
        if let Some(up) = up {
            gauge!(MAILBOX_UP, "mailbox" => name.to_string()).set(if up { 1.0 } else { 0.0 });
        }
    }

    /// The outbox as the database holds it now.
    pub fn outbox(&self, summary: &Summary) {
        let by_status = &summary.by_status;
        let count = |status: &str| {
            by_status
                .iter()
                .find(|(s, _)| s == status)
                .map_or(0, |(_, n)| *n)
        };
        for status in OUTBOX_STATUSES {
            gauge!(OUTBOX_ROWS, "status" => status).set(count(status) as f64);
        }
        for (status, n) in by_status {
            if !OUTBOX_STATUSES.contains(&status.as_str()) {
                gauge!(OUTBOX_ROWS, "status" => status.clone()).set(*n as f64);
            }
        }
        let outbox = OutboxHealth {
            pending: count("pending"),
            failed: count("failed"),
            next_due_at: summary.next_due,
            oldest_due_age_secs: 0,
        };
        self.update(|h| {
            let changed = h.outbox != outbox;
            h.outbox = outbox;
            changed
        });
    }
}
