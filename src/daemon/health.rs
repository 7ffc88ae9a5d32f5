//! What the running daemon reports about itself: the health file
//! (`<database>.health.json`, read by `maildesk check`) and `GET /health` hold the same
//! report. It is healthy when every mailbox is up, or was within [`MAILBOX_TOLERANCE`]
//! (a server restarting is not an outage), and no due mail has waited longer than
//! [`OUTBOX_LAG_LIMIT`]. A refused reload is reported but keeps the daemon healthy: the
//! files in force before keep serving.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::config::SourceKind;
use crate::metrics::DeskState;

/// How long a mailbox may be down before the daemon is unhealthy.
pub const MAILBOX_TOLERANCE: Duration = Duration::from_secs(30);
/// How long a due mail may wait for delivery before the daemon is unhealthy. The outbox
/// is delivered at once after each commit and at least every 30 s.
pub const OUTBOX_LAG_LIMIT: Duration = Duration::from_secs(10 * 60);
/// The health file is rewritten at most this often, and the verdict looked at as often.
const WRITE_EVERY: Duration = Duration::from_secs(1);

/// The report. Fields added after the first version have defaults, so that `maildesk
/// check` reads a report from an older daemon.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Health {
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    /// When the rules and templates in force were loaded.
    pub policy_loaded_at: DateTime<Utc>,
    pub rules: usize,
    /// Set while the files on disk are broken and the older set keeps serving.
    pub rejected: Option<Rejected>,
    /// Set while the accounts_file on disk is refused and the registry stays as it was.
    #[serde(default)]
    pub accounts_rejected: Option<Rejected>,
    /// The verdict at `checked_at`: `/health` answers 200 when true, else 503.
    #[serde(default)]
    pub healthy: bool,
    #[serde(default)]
    pub checked_at: Option<DateTime<Utc>>,
    /// Why it is not healthy, one line per reason.
    #[serde(default)]
    pub problems: Vec<String>,
    #[serde(default)]
    pub mailboxes: BTreeMap<String, MailboxHealth>,
    #[serde(default)]
    pub outbox: OutboxHealth,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rejected {
    pub at: DateTime<Utc>,
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MailboxHealth {
    pub kind: SourceKind,
    pub state: MailboxState,
    pub up: bool,
    /// When `up` last changed; the daemon's start for a mailbox never up yet.
    pub since: DateTime<Utc>,
    /// When the mailbox was last read to its end.
    pub last_sync: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MailboxState {
    /// IMAP: logging in (the first time).
    Connecting,
    /// IMAP: logged in, the folder selected.
    Connected,
    /// IMAP: fetching and storing new mail.
    Syncing,
    /// IMAP: caught up, waiting for mail (IDLE or the poll interval).
    Idle,
    /// IMAP: the last session failed; waiting to try again.
    Reconnecting,
    /// Maildir: not read yet.
    Starting,
    /// Maildir: the last round read it without error.
    Ok,
    /// Maildir: the last round failed for at least one message.
    Error,
}

impl MailboxState {
    pub fn is_up(self) -> bool {
        matches!(
            self,
            MailboxState::Connected | MailboxState::Syncing | MailboxState::Idle | MailboxState::Ok
        )
    }
}

impl MailboxHealth {
    pub fn new(kind: SourceKind, state: MailboxState, now: DateTime<Utc>) -> MailboxHealth {
        MailboxHealth {
            kind,
            state,
            up: state.is_up(),
            since: now,
            last_sync: None,
            last_error: None,
            last_error_at: None,
        }
    }

    pub fn enter(&mut self, state: MailboxState, now: DateTime<Utc>) {
        if state.is_up() != self.up {
            self.since = now;
        }
        self.up = state.is_up();
        self.state = state;
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct OutboxHealth {
    pub pending: u64,
    /// Given up for good (see `maildesk tickets`); staff were told.
    pub failed: u64,
    /// When the earliest pending mail is (or became) due.
    pub next_due_at: Option<DateTime<Utc>>,
    /// How long the oldest due mail has waited, at `checked_at`.
    pub oldest_due_age_secs: u64,
}

impl OutboxHealth {
    pub fn oldest_due_age(&self, now: DateTime<Utc>) -> Duration {
        self.next_due_at
            .and_then(|due| (now - due).to_std().ok())
            .unwrap_or_default()
    }
}

impl Health {
    /// A daemon just started, with `rules` loaded.
    pub fn new(started_at: DateTime<Utc>, rules: usize) -> Health {
        Health {
            pid: std::process::id(),
            started_at,
            policy_loaded_at: started_at,
            rules,
            rejected: None,
            accounts_rejected: None,
            healthy: false,
            checked_at: None,
            problems: Vec::new(),
            mailboxes: BTreeMap::new(),
            outbox: OutboxHealth::default(),
        }
    }

    /// This state with the verdict at `now` filled in.
    pub fn assessed(&self, now: DateTime<Utc>) -> Health {
        let mut report = self.clone();
        report.problems.clear();
        for (name, mailbox) in &report.mailboxes {
            let down_for = (now - mailbox.since).to_std().unwrap_or_default();
            if !mailbox.up && down_for > MAILBOX_TOLERANCE {
                let error = mailbox
                    .last_error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default();
                report.problems.push(format!(
                    "mailbox {name} down ({:?}) for {}s{error}",
                    mailbox.state,
                    down_for.as_secs()
                ));
            }
        }
        let age = report.outbox.oldest_due_age(now);
        report.outbox.oldest_due_age_secs = age.as_secs();
        if age > OUTBOX_LAG_LIMIT {
            report.problems.push(format!(
                "the oldest due mail has waited {}s for delivery (limit {}s)",
                age.as_secs(),
                OUTBOX_LAG_LIMIT.as_secs()
            ));
        }
        report.healthy = report.problems.is_empty();
        report.checked_at = Some(now);
        report
    }

    pub fn read(path: &Path) -> Option<Health> {
        let text = std::fs::read_to_string(path).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Written to a temporary file and renamed, so a reader never sees half a report.
    fn write(&self, path: &Path) {
        let tmp = path.with_extension("json.tmp");
        let result = serde_json::to_vec_pretty(self)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(error) = result {
            tracing::warn!(file = %path.display(), %error, "cannot write the health file");
        }
    }
}

/// Keeps the health file current until `shutdown`: rewritten when the state or the
/// verdict changes, at most every [`WRITE_EVERY`]; removed at the stop (the report
/// describes a running daemon).
pub async fn keep_file(status: DeskState, path: PathBuf, shutdown: CancellationToken) {
    let mut changes = status.subscribe();
    let mut written: Option<bool> = None;
    loop {
        let changed = changes.has_changed().unwrap_or(false);
        let report = changes.borrow_and_update().assessed(Utc::now());
        if changed || written != Some(report.healthy) {
            report.write(&path);
            written = Some(report.healthy);
        }
        tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = std::fs::remove_file(&path);
                return;
            }
            _ = tokio::time::sleep(WRITE_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap_or_default()
    }

    #[test]
    fn a_mailbox_down_is_tolerated_for_a_while() {
        let mut health = Health::new(at(0), 3);
        health.mailboxes.insert(
            "support".into(),
            MailboxHealth::new(SourceKind::Imap, MailboxState::Connecting, at(0)),
        );
        assert!(
            health.assessed(at(30)).healthy,
            "down since the start, 30 s"
        );
        let late = health.assessed(at(31));
        assert!(!late.healthy);
        assert_eq!(late.problems, ["mailbox support down (Connecting) for 31s"]);
        let mailbox = health.mailboxes.get_mut("support").unwrap();
        mailbox.enter(MailboxState::Idle, at(40));
        mailbox.enter(MailboxState::Syncing, at(50));
        assert!(health.assessed(at(1000)).healthy);
        let mailbox = health.mailboxes.get_mut("support").unwrap();
        mailbox.enter(MailboxState::Reconnecting, at(1000));
        mailbox.enter(MailboxState::Connecting, at(1010));
        assert_eq!(mailbox.since, at(1000), "down since it left the up states");
        assert!(health.assessed(at(1030)).healthy);
        assert!(!health.assessed(at(1031)).healthy);
    }

    #[test]
    fn due_mail_waiting_too_long_is_unhealthy() {
        let mut health = Health::new(at(0), 3);
        health.outbox.next_due_at = Some(at(100));
        let early = health.assessed(at(50));
        assert!(early.healthy);
        assert_eq!(early.outbox.oldest_due_age_secs, 0, "not due yet");
        assert_eq!(health.assessed(at(700)).outbox.oldest_due_age_secs, 600);
        assert!(health.assessed(at(700)).healthy);
        let late = health.assessed(at(701));
        assert!(!late.healthy);
        assert_eq!(
            late.problems,
            ["the oldest due mail has waited 601s for delivery (limit 600s)"]
        );
    }

    #[test]
    fn a_report_of_the_first_version_is_still_read() {
        let old = r#"{"pid": 7, "started_at": "2026-01-01T00:00:00Z",
            "policy_loaded_at": "2026-01-01T00:00:00Z", "rules": 2, "rejected": null}"#;
        let health: Health = serde_json::from_str(old).unwrap();
        assert_eq!((health.pid, health.rules), (7, 2));
        assert!(health.mailboxes.is_empty());
    }
}
