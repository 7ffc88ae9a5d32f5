//! The long-running process: one task per IMAP mailbox, one for the Maildirs, one
//! delivering the outbox, until SIGTERM or SIGINT. Work in progress is always finished
//! before exiting (a batch commits and is acknowledged), so a stop never leaves a message
//! half-handled.

pub mod health;
pub mod http;
pub mod lock;
pub mod notify;
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
use crate::metrics::DeskState;
use crate::outbox::{self, Transport, TransportError};
use crate::pipeline::Pipeline;
use crate::policy::{Policy, PolicyFiles, SharedPolicy};
use crate::source;
use crate::source::imap::{self, ImapError, ImapMailbox, Watch};
use crate::source::maildir::Maildir;
use crate::store::{Store, StoreError};
use health::Health;
use lock::{DatabaseLock, LockError};

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
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("cannot listen for signals: {0}")]
    Signal(std::io::Error),
    #[error(transparent)]
    Listen(#[from] http::ListenError),
    #[error("cannot set up the metrics: {0}")]
    Metrics(#[from] metrics_exporter_prometheus::BuildError),
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

impl From<source::Totals> for RunTotals {
    fn from(t: source::Totals) -> RunTotals {
        RunTotals {
            stored: t.stored,
            already_stored: t.already_stored,
            failed: t.failed,
            ..RunTotals::default()
        }
    }
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

/// What a stop waits for the sources beyond their own grace (logging out, joining).
const JOIN_SLACK: Duration = Duration::from_secs(2);

type Sources = JoinSet<Result<RunTotals, DaemonError>>;

pub async fn run(config: &Config, once: bool) -> Result<RunTotals, DaemonError> {
    // First of all: a second daemon must not touch anything, not even the health file.
    let _lock = DatabaseLock::acquire(config.database.get_ref())?;
    // Read and compiled once: every mailbox answers from the same set.
    let files = config.policy_files();
    let policy = load_policy(&files)?;
    let status = DeskState::new(Health::new(Utc::now(), policy.rules.rules.len()));
    let shutdown = CancellationToken::new();
    // Before anything is counted, and before any mail is read: a taken address stops
    // the start.
    if let (false, Some(addr)) = (once, config.daemon.listen) {
        let prometheus = crate::metrics::install()?;
        http::serve(addr, prometheus, status.clone(), shutdown.clone()).await?;
    }
    let policy = SharedPolicy::new(policy);
    let db = config.database.get_ref();
    let mut outbox_store = Store::open(db)?;
    outbox_store.small_cache()?;
    outbox_store.sync_staff(&config.staff)?;
    let outbox_wake = Arc::new(Notify::new());
    let accounts = import_accounts(config, &policy, &outbox_wake, &status)?;
    // The outbox's own connection, with the desk's templates for alerts to staff.
    let mut outbox = Outbox {
        pipeline: Pipeline::new(config, outbox_store, policy.clone())?,
        transport: Transport::from_config(&config.outgoing)?,
        max_age: chrono::Duration::hours(i64::from(config.outgoing.max_age_hours)),
    };
    listen_for_signals(shutdown.clone())?;
    if !once {
        let reloader = reload::Reloader {
            files,
            policy: policy.clone(),
            accounts,
            status: status.clone(),
        };
        tokio::spawn(reloader.run(shutdown.clone()));
        let (status, file) = (status.clone(), config.health_file());
        tokio::spawn(health::keep_file(status, file, shutdown.clone()));
        tokio::spawn(notify::watchdog(shutdown.clone()));
    }
    let watch = Watch {
        shutdown: shutdown.clone(),
        once,
        poll: Duration::from_secs(config.daemon.poll_interval_secs.max(1)),
        outbox: outbox_wake,
        status: status.clone(),
    };
    let mut sources = spawn_sources(config, &policy, &watch)?;
    tracing::info!(mailboxes = config.mailboxes.len(), once, "maildesk started");
    notify::ready();

    let mut totals = RunTotals::default();
    if !once {
        totals.add(outbox.serve(&watch.outbox, &status, &shutdown).await?);
    }
    let mut failures = join_sources(&mut sources, &shutdown, &mut totals).await?;
    if once {
        totals.add(outbox.deliver(&shutdown).await?);
    }
    tracing::info!(?totals, "maildesk stopped");
    match failures.len() {
        0 => Ok(totals),
        1 => Err(failures.remove(0)),
        _ => Err(DaemonError::Several(failures)),
    }
}

/// The rules and templates, or every problem that makes them unusable; warnings logged.
fn load_policy(files: &PolicyFiles) -> Result<Policy, DaemonError> {
    let (policy, problems) = files.load();
    for warning in problems.iter().filter(|d| !d.is_error()) {
        tracing::warn!(problem = %warning, "rules");
    }
    policy.ok_or(DaemonError::Policy(Diagnostics(problems)))
}

/// The accounts_file, imported now. A bad one is refused without stopping the desks
/// (see reload.rs): the health report says so.
fn import_accounts(
    config: &Config,
    policy: &SharedPolicy,
    outbox: &Arc<Notify>,
    status: &DeskState,
) -> Result<Option<reload::AccountsFile>, DaemonError> {
    let Some(file) = &config.accounts_file else {
        return Ok(None);
    };
    let mut store = Store::open(config.database.get_ref())?;
    store.small_cache()?;
    let mut accounts = reload::AccountsFile {
        path: file.get_ref().clone(),
        pipeline: Pipeline::new(config, store, policy.clone())?,
        outbox: outbox.clone(),
    };
    let rejected = accounts.import(Utc::now());
    status.update(|h| {
        h.accounts_rejected = rejected;
        true
    });
    Ok(Some(accounts))
}

/// One task per IMAP mailbox, one for all the Maildirs; each with its own connection.
fn spawn_sources(
    config: &Config,
    policy: &SharedPolicy,
    watch: &Watch,
) -> Result<Sources, DaemonError> {
    let db = config.database.get_ref();
    let mut sources = Sources::new();
    let mut maildirs = Vec::new();
    for mailbox in &config.mailboxes {
        let name = mailbox.name.get_ref().clone();
        watch.status.add_mailbox(&name, mailbox.kind, Utc::now());
        if let (SourceKind::Maildir, Some(path)) = (mailbox.kind, &mailbox.path) {
            maildirs.push(Maildir::from_config(mailbox, path.get_ref().clone()));
            continue;
        }
        let imap = ImapMailbox::from_config(mailbox).map_err(|error| DaemonError::Imap {
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
            let totals =
                imap::watch(imap, pipeline, watch)
                    .await
                    .map_err(|error| DaemonError::Imap {
                        mailbox: name,
                        error,
                    })?;
            Ok(RunTotals::from(totals))
        });
    }
    if !maildirs.is_empty() {
        let pipeline = Pipeline::new(config, Store::open(db)?, policy.clone())?;
        sources.spawn(watch_maildirs(pipeline, maildirs, watch.clone()));
    }
    Ok(sources)
}

/// Waits for every source to end; after a stop, no longer than their grace and a little
/// more. A source still running then is abandoned: what it committed is acknowledged
/// next time, what it did not commit was rolled back.
async fn join_sources(
    sources: &mut Sources,
    shutdown: &CancellationToken,
    totals: &mut RunTotals,
) -> Result<Vec<DaemonError>, DaemonError> {
    let mut failures = Vec::new();
    let deadline = async {
        crate::shutdown::grace_over(shutdown).await;
        tokio::time::sleep(JOIN_SLACK).await;
    };
    tokio::pin!(deadline);
    loop {
        let next = tokio::select! {
            next = sources.join_next() => next,
            _ = &mut deadline => {
                tracing::warn!(running = sources.len(), "stopping without waiting any longer for the mailboxes");
                sources.abort_all();
                return Ok(failures);
            }
        };
        match next {
            None => return Ok(failures),
            Some(result) => match result? {
                Ok(t) => totals.add(t),
                Err(e) => failures.push(e),
            },
        }
    }
}

/// Delivers the outbox; its own store connection, with the desk's templates for the
/// alerts to staff.
struct Outbox {
    pipeline: Pipeline,
    transport: Transport,
    max_age: chrono::Duration,
}

impl Outbox {
    /// Until the stop: mail left due by an earlier run goes out at once, then whenever a
    /// commit queues some (`wake`), and retries are looked for every [`OUTBOX_INTERVAL`].
    async fn serve(
        &mut self,
        wake: &Notify,
        status: &DeskState,
        shutdown: &CancellationToken,
    ) -> Result<RunTotals, DaemonError> {
        let mut totals = RunTotals::default();
        loop {
            totals.add(self.deliver(shutdown).await?);
            self.report(status);
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(OUTBOX_INTERVAL) => {}
                _ = shutdown.cancelled() => return Ok(totals),
            }
        }
    }

    /// Delivers what is due; staff are told of every mail given up, and those notices go
    /// out in the next round. Ends: an alert is only written for a mail not to staff.
    async fn deliver(&mut self, stop: &CancellationToken) -> Result<RunTotals, DaemonError> {
        let mut totals = RunTotals::default();
        loop {
            let delivery = outbox::deliver_due(
                self.pipeline.store(),
                &self.transport,
                Utc::now(),
                self.max_age,
                stop,
            )
            .await?;
            totals.add(RunTotals {
                sent: delivery.sent,
                deferred: delivery.deferred,
                undeliverable: delivery.given_up.len(),
                ..RunTotals::default()
            });
            if self.pipeline.alert_staff(&delivery.given_up, Utc::now())? == 0 {
                return Ok(totals);
            }
        }
    }

    /// Refreshes the outbox's gauges and health: after every round, so at least every
    /// [`OUTBOX_INTERVAL`]; one query, whatever the number of mails.
    fn report(&mut self, status: &DeskState) {
        match crate::store::outbox::summary(&self.pipeline.store().conn) {
            Ok(summary) => status.outbox(&summary),
            Err(error) => tracing::warn!(%error, "cannot read the outbox's state"),
        }
    }
}

/// The first SIGTERM or SIGINT asks for a stop; a second one ends the process at once
/// (an impatient operator; safe, as a SIGKILL is).
fn listen_for_signals(shutdown: CancellationToken) -> Result<(), DaemonError> {
    let mut terminate = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: finishing the work in progress"),
            _ = interrupt.recv() => tracing::info!("SIGINT: finishing the work in progress"),
        }
        notify::stopping();
        shutdown.cancel();
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::warn!("second signal: exiting at once; uncommitted work is rolled back");
        std::process::exit(1);
    });
    Ok(())
}

/// Reads the Maildirs every poll interval.
async fn watch_maildirs(
    mut pipeline: Pipeline,
    maildirs: Vec<Maildir>,
    watch: Watch,
) -> Result<RunTotals, DaemonError> {
    let maildirs = Arc::new(maildirs);
    let mut totals = RunTotals::default();
    loop {
        // SQLite and Maildir calls block: run the round on the blocking pool.
        let (maildirs_, stop) = (Arc::clone(&maildirs), watch.shutdown.clone());
        let status = watch.status.clone();
        let (returned, round, queued) = tokio::task::spawn_blocking(move || {
            let mut round = RunTotals::default();
            let mut queued = 0;
            for maildir in maildirs_.iter() {
                let (t, q) = maildir.ingest_waiting(&mut pipeline, &stop, &status);
                round.add(RunTotals::from(t));
                queued += q;
            }
            (pipeline, round, queued)
        })
        .await?;
        pipeline = returned;
        totals.add(round);
        if queued > 0 {
            watch.outbox.notify_one();
        }
        if watch.once || watch.shutdown.is_cancelled() {
            return Ok(totals);
        }
        tokio::select! {
            _ = tokio::time::sleep(watch.poll) => {}
            _ = watch.shutdown.cancelled() => return Ok(totals),
        }
    }
}
