//! The long-running process: read every mailbox, deliver the outbox, wait, repeat, until
//! SIGTERM or SIGINT. A round in progress is always finished before exiting, so a stop
//! never leaves a message half-handled.

use std::time::Duration;

use chrono::Utc;
use tokio::signal::unix::{SignalKind, signal};

use crate::compose::Templates;
use crate::config::{Config, SourceKind};
use crate::diag::Diagnostics;
use crate::identity::import::{ImportFileError, import_file};
use crate::outbox::{self, Transport, TransportError};
use crate::pipeline::{Outcome, Pipeline};
use crate::source::maildir::Maildir;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("templates are broken:\n{0}")]
    Templates(Diagnostics),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("accounts_file: {0}")]
    Accounts(#[from] ImportFileError),
    #[error(
        "mailbox {0}: IMAP sources are not available in this version yet; use kind = \"maildir\""
    )]
    ImapUnsupported(String),
    #[error("invalid ticket tag: {0}")]
    Tag(#[from] regex::Error),
    #[error("internal error: {0}")]
    Join(#[from] tokio::task::JoinError),
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
}

pub async fn run(config: &Config, once: bool) -> Result<RunTotals, DaemonError> {
    let templates = Templates::load(config.templates_dir.get_ref())
        .map_err(|d| DaemonError::Templates(Diagnostics(d)))?;
    let mut maildirs = Vec::new();
    for mailbox in &config.mailboxes {
        match (mailbox.kind, &mailbox.path) {
            (SourceKind::Maildir, Some(path)) => maildirs.push(Maildir {
                name: mailbox.name.get_ref().clone(),
                role: mailbox.role,
                path: path.get_ref().clone(),
            }),
            _ => return Err(DaemonError::ImapUnsupported(mailbox.name.get_ref().clone())),
        }
    }
    let db = config.database.get_ref();
    let mut outbox_store = Store::open(db)?;
    outbox_store.sync_staff(&config.staff)?;
    if let Some(file) = &config.accounts_file {
        let s = import_file(&mut outbox_store, file.get_ref())?;
        tracing::info!(file = %file.get_ref().display(), created = s.created, updated = s.updated, unchanged = s.unchanged, "imported accounts");
    }
    let mut pipeline = Pipeline::new(config, Store::open(db)?, templates)?;
    let transport = Transport::from_config(&config.outgoing)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(DaemonError::Signal)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(DaemonError::Signal)?;
    let poll = Duration::from_secs(config.daemon.poll_interval_secs.max(1));
    let mut totals = RunTotals::default();
    tracing::info!(mailboxes = maildirs.len(), once, "maildesk started");
    loop {
        // SQLite and Maildir calls block: run the round on the blocking pool.
        let (returned_pipeline, returned_maildirs, round) =
            tokio::task::spawn_blocking(move || {
                let round = ingest_round(&mut pipeline, &maildirs);
                (pipeline, maildirs, round)
            })
            .await?;
        pipeline = returned_pipeline;
        maildirs = returned_maildirs;
        totals.stored += round.stored;
        totals.already_stored += round.already_stored;
        totals.failed += round.failed;
        let delivery = outbox::deliver_due(&mut outbox_store, &transport, Utc::now()).await?;
        totals.sent += delivery.sent;
        totals.deferred += delivery.deferred;
        if once {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    tracing::info!(?totals, "maildesk stopped");
    Ok(totals)
}

/// Reads every waiting message of every Maildir. A message that cannot be read or stored
/// stays where it is (logged) and is tried again next round; the others go on.
fn ingest_round(pipeline: &mut Pipeline, maildirs: &[Maildir]) -> RunTotals {
    let mut totals = RunTotals::default();
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
                        .ingest(&message, Utc::now())
                        .map_err(|e| e.to_string())
                });
            match result {
                Ok(outcome) => {
                    match outcome {
                        Outcome::Stored { .. } => totals.stored += 1,
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
    totals
}
