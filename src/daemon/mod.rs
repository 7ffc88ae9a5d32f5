//! The long-running process: one task per IMAP mailbox, one for the Maildirs, one
//! delivering the outbox, until SIGTERM or SIGINT. Work in progress is always finished
//! before exiting (a batch commits and is acknowledged), so a stop never leaves a message
//! half-handled.

pub mod reload;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, SourceKind};
use crate::diag::Diagnostics;
use crate::outbox::{self, Transport, TransportError};
use crate::pipeline::{Outcome, Pipeline};
use crate::policy::SharedPolicy;
use crate::source::imap::{self, ImapError, ImapMailbox, Watch};
use crate::source::maildir::Maildir;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("rules or templates are broken:\n{0}")]
    Policy(Diagnostics),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("mailbox {mailbox}: {error}")]
    Imap { mailbox: String, error: ImapError },
    #[error("invalid ticket tag: {0}")]
    Tag(#[from] regex::Error),
    #[error("internal error: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// More than one source failed; each is reported.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\nerror: "))]
    Several(Vec<DaemonError>),
    #[error("cannot listen for signals: {0}")]
    Signal(std::io::Error),
}

/// Totals over a run, printed by `run --once`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunTotals {
    pub stored: usize,
    pub already_stored: usize,
    pub failed: usize,
    pub sent: usize,
    pub deferred: usize,
    /// Outgoing mails given up (refused for good, or too old).
    pub undeliverable: usize,
}

impl RunTotals {
    fn add(&mut self, other: RunTotals) {
        self.stored += other.stored;
        self.already_stored += other.already_stored;
        self.failed += other.failed;
        self.sent += other.sent;
        self.deferred += other.deferred;
        self.undeliverable += other.undeliverable;
    }
}

/// Retries of deferred mail are looked for this often even when nothing new was queued.
const OUTBOX_INTERVAL: Duration = Duration::from_secs(30);

pub async fn run(config: &Config, once: bool) -> Result<RunTotals, DaemonError> {
    // Read and compiled once: every mailbox answers from the same set.
    let files = config.policy_files();
    let (policy, problems) = files.load();
    for warning in problems.iter().filter(|d| !d.is_error()) {
        tracing::warn!(problem = %warning, "rules");
    }
    let Some(policy) = policy else {
        return Err(DaemonError::Policy(Diagnostics(problems)));
    };
    let started_at = Utc::now();
    let mut health = reload::Health {
        pid: std::process::id(),
        started_at,
        policy_loaded_at: started_at,
        rules: policy.rules.rules.len(),
        rejected: None,
        accounts_rejected: None,
    };
    let policy = SharedPolicy::new(policy);
    let db = config.database.get_ref();
    let mut outbox_store = Store::open(db)?;
    outbox_store.sync_staff(&config.staff)?;
    // A bad accounts file is refused without stopping the desks (see reload.rs).
    let outbox_wake = Arc::new(Notify::new());
    let mut accounts = match &config.accounts_file {
        Some(file) => Some(reload::AccountsFile {
            path: file.get_ref().clone(),
            pipeline: Pipeline::new(config, Store::open(db)?, policy.clone())?,
            outbox: outbox_wake.clone(),
        }),
        None => None,
    };
    health.accounts_rejected = accounts.as_mut().and_then(|a| a.import(started_at));
    // The outbox's own connection, with the desk's templates for alerts to staff.
    let mut outbox = Pipeline::new(config, outbox_store, policy.clone())?;
    let transport = Transport::from_config(&config.outgoing)?;
    let max_age = chrono::Duration::hours(i64::from(config.outgoing.max_age_hours));
    let shutdown = CancellationToken::new();
    listen_for_signals(shutdown.clone())?;
    if !once {
        let reloader = reload::Reloader {
            files,
            policy: policy.clone(),
            accounts,
            health_file: config.health_file(),
            health,
        };
        tokio::spawn(reloader.run(shutdown.clone()));
    }
    let watch = Watch {
        shutdown: shutdown.clone(),
        once,
        poll: Duration::from_secs(config.daemon.poll_interval_secs.max(1)),
        outbox: outbox_wake,
    };

    let mut sources: JoinSet<Result<RunTotals, DaemonError>> = JoinSet::new();
    let mut maildirs = Vec::new();
    for mailbox in &config.mailboxes {
        let name = mailbox.name.get_ref().clone();
        match (mailbox.kind, &mailbox.path) {
            (SourceKind::Maildir, Some(path)) => maildirs.push(Maildir {
                name,
                role: mailbox.role,
                path: path.get_ref().clone(),
            }),
            _ => {
                let imap =
                    ImapMailbox::from_config(mailbox).map_err(|error| DaemonError::Imap {
                        mailbox: name.clone(),
                        error,
                    })?;
                let pipeline = Arc::new(Mutex::new(Pipeline::new(
                    config,
                    Store::open(db)?,
                    policy.clone(),
                )?));
                let watch = watch.clone();
                sources.spawn(async move {
                    let totals = imap::watch(imap, pipeline, watch).await.map_err(|error| {
                        DaemonError::Imap {
                            mailbox: name,
                            error,
                        }
                    })?;
                    Ok(RunTotals {
                        stored: totals.stored,
                        already_stored: totals.already_stored,
                        ..RunTotals::default()
                    })
                });
            }
        }
    }
    if !maildirs.is_empty() {
        let pipeline = Pipeline::new(config, Store::open(db)?, policy)?;
        sources.spawn(watch_maildirs(pipeline, maildirs, watch.clone()));
    }
    tracing::info!(mailboxes = config.mailboxes.len(), once, "maildesk started");

    let mut totals = RunTotals::default();
    let mut failures = Vec::new();
    if once {
        while let Some(result) = sources.join_next().await {
            match result? {
                Ok(t) => totals.add(t),
                Err(e) => failures.push(e),
            }
        }
        totals.add(deliver(&mut outbox, &transport, max_age).await?);
    } else {
        loop {
            tokio::select! {
                _ = watch.outbox.notified() => {}
                _ = tokio::time::sleep(OUTBOX_INTERVAL) => {}
                _ = shutdown.cancelled() => break,
            }
            totals.add(deliver(&mut outbox, &transport, max_age).await?);
        }
        while let Some(result) = sources.join_next().await {
            match result? {
                Ok(t) => totals.add(t),
                Err(e) => failures.push(e),
            }
        }
    }
    tracing::info!(?totals, "maildesk stopped");
    match failures.len() {
        0 => Ok(totals),
        1 => Err(failures.remove(0)),
        _ => Err(DaemonError::Several(failures)),
    }
}

/// Delivers what is due; staff are told of every mail given up, and those notices go
/// out in the next round. Ends: an alert is only written for a mail not to staff.
async fn deliver(
    outbox: &mut Pipeline,
    transport: &Transport,
    max_age: chrono::Duration,
) -> Result<RunTotals, DaemonError> {
    let mut totals = RunTotals::default();
    loop {
        let delivery = outbox::deliver_due(outbox.store(), transport, Utc::now(), max_age).await?;
        totals.add(RunTotals {
            sent: delivery.sent,
            deferred: delivery.deferred,
            undeliverable: delivery.given_up.len(),
            ..RunTotals::default()
        });
        if outbox.alert_staff(&delivery.given_up, Utc::now())? == 0 {
            return Ok(totals);
        }
    }
}

fn listen_for_signals(shutdown: CancellationToken) -> Result<(), DaemonError> {
    let mut terminate = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: finishing the work in progress"),
            _ = interrupt.recv() => tracing::info!("SIGINT: finishing the work in progress"),
        }
        shutdown.cancel();
    });
    Ok(())
}

/// Reads the Maildirs every poll interval.
async fn watch_maildirs(
    mut pipeline: Pipeline,
    mut maildirs: Vec<Maildir>,
    watch: Watch,
) -> Result<RunTotals, DaemonError> {
    let mut totals = RunTotals::default();
    loop {
        // SQLite and Maildir calls block: run the round on the blocking pool.
        let (returned_pipeline, returned_maildirs, round, queued) =
            tokio::task::spawn_blocking(move || {
                let (round, queued) = ingest_round(&mut pipeline, &maildirs);
                (pipeline, maildirs, round, queued)
            })
            .await?;
        pipeline = returned_pipeline;
        maildirs = returned_maildirs;
        totals.add(round);
        if queued > 0 {
            watch.outbox.notify_one();
        }
        if watch.once {
            return Ok(totals);
        }
        tokio::select! {
            _ = tokio::time::sleep(watch.poll) => {}
            _ = watch.shutdown.cancelled() => return Ok(totals),
        }
    }
}

/// Reads every waiting message of every Maildir. A message that cannot be read or stored
/// stays where it is (logged) and is tried again next round; the others go on.
/// Returns the totals and how many outgoing mails were queued.
fn ingest_round(pipeline: &mut Pipeline, maildirs: &[Maildir]) -> (RunTotals, usize) {
    let mut totals = RunTotals::default();
    let mut queued = 0;
    for maildir in maildirs {
        let files = match maildir.waiting() {
            Ok(files) => files,
            Err(error) => {
                tracing::error!(mailbox = %maildir.name, path = %maildir.path.display(), %error, "cannot list new mail");
                totals.failed += 1;
                continue;
            }
        };
        for file in files {
            let result = maildir
                .read(&file)
                .map_err(|e| e.to_string())
                .and_then(|message| {
                    pipeline
                        .ingest(message, Utc::now())
                        .map_err(|e| e.to_string())
                });
            match result {
                Ok(outcome) => {
                    match outcome {
                        Outcome::Stored { queued: q, .. } => {
                            totals.stored += 1;
                            queued += q;
                        }
                        Outcome::AlreadyStored => totals.already_stored += 1,
                    }
                    if let Err(error) = maildir.acknowledge(&file) {
                        tracing::error!(mailbox = %maildir.name, file = %file.display(), %error, "stored, but cannot move to cur/");
                    }
                }
                Err(error) => {
                    tracing::error!(mailbox = %maildir.name, file = %file.display(), %error, "message left in new/");
                    totals.failed += 1;
                }
            }
        }
    }
    (totals, queued)
}
