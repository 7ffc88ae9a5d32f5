//! A Maildir as a source: messages are read from `new/` and moved to `cur/` (flagged seen)
//! once stored. A crash between the commit and the move leaves the file in `new/`; it is
//! read again next time and recognised by its content hash, so nothing is stored twice.
//!
//! The first contact with a Maildir follows `initial_sync` as an IMAP mailbox does: what
//! is in `new/` then is imported without answers, left alone, or handled like new mail.
//! That first contact is over once the mailbox has a row in `mailbox_cursors` (with
//! UIDVALIDITY 0, which no IMAP server uses), written after the existing mail was handled;
//! a crash before it makes the next start treat the rest the same way.

use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::{SourceMessage, Totals};
use crate::config::{self, InitialSync, Role};
use crate::daemon::health::MailboxState;
use crate::metrics::{self, DeskState, Stored};
use crate::pipeline::{Outcome, Pipeline, Prepared};
use crate::store::StoreError;
use crate::store::cursors::Cursor;

/// Marks a Maildir whose first contact is over.
const KNOWN: Cursor = Cursor {
    uidvalidity: 0,
    last_uid: 0,
    first_uid: 1,
    history_below: 0,
};

/// A header longer than this is cut: it is all we keep of an oversized message.
const MAX_HEADER_BYTES: u64 = 1 << 20;

/// How often a long sync reports its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

pub struct Maildir {
    pub name: String,
    pub role: Role,
    pub path: PathBuf,
    pub initial_sync: InitialSync,
    pub max_message_bytes: u64,
    pub batch_size: usize,
    /// The last failure of the round being read, for the health report.
    last_error: Mutex<Option<String>>,
}

impl Maildir {
    pub fn from_config(mailbox: &config::Mailbox, path: PathBuf) -> Maildir {
        Maildir {
            name: mailbox.name.get_ref().clone(),
            role: mailbox.role,
            path,
            initial_sync: mailbox.initial_sync,
            max_message_bytes: mailbox.max_message_bytes,
            batch_size: mailbox.batch_size.max(1) as usize,
            last_error: Mutex::default(),
        }
    }

    /// Stores every waiting message, a batch per transaction, and moves each to `cur/`
    /// after its commit. Stops between batches once `stop` is cancelled. Returns the
    /// totals and how many outgoing mails were queued; `status` learns whether the
    /// round went without error (else the mailbox is in `error`, with the last one).
    pub fn ingest_waiting(
        &self,
        pipeline: &mut Pipeline,
        stop: &CancellationToken,
        status: &DeskState,
    ) -> (Totals, usize) {
        let result = self.round(pipeline, stop);
        let last_error = self.last_error.lock().ok().and_then(|mut e| e.take());
        match last_error {
            None => status.mailbox_synced(&self.name, MailboxState::Ok),
            Some(error) => {
                metrics::messages(&self.name, Stored::Failed, result.0.failed);
                status.mailbox_failed(&self.name, MailboxState::Error, &error);
            }
        }
        result
    }

    /// Counts a failure and keeps its text for [`Maildir::ingest_waiting`].
    fn failed(&self, totals: &mut Totals, what: &str, error: &dyn std::fmt::Display) {
        totals.failed += 1;
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(format!("{what}: {error}"));
        }
    }

    fn round(&self, pipeline: &mut Pipeline, stop: &CancellationToken) -> (Totals, usize) {
        let mut totals = Totals::default();
        let mut queued = 0;
        let files = match self.waiting() {
            Ok(files) => files,
            Err(error) => {
                tracing::error!(mailbox = %self.name, path = %self.path.display(), %error, "cannot list new mail");
                self.failed(&mut totals, "cannot list new mail", &error);
                return (totals, queued);
            }
        };
        let first_contact = match pipeline.store().cursor(&self.name) {
            Ok(cursor) => cursor.is_none(),
            Err(error) => {
                tracing::error!(mailbox = %self.name, %error, "cannot read the mailbox's state; mail left in new/");
                self.failed(&mut totals, "cannot read the mailbox's state", &error);
                return (totals, queued);
            }
        };
        let history = first_contact && self.initial_sync == InitialSync::ImportSilently;
        if first_contact {
            tracing::info!(mailbox = %self.name, initial_sync = ?self.initial_sync, existing = files.len(), "first contact with this mailbox");
            if self.initial_sync == InitialSync::SkipExisting {
                self.skip(&files, &mut totals);
                self.finish_first_contact(pipeline, &mut totals);
                return (totals, queued);
            }
        }
        let mut progress = Progress::new(files.len());
        let mut complete = true;
        for chunk in files.chunks(self.batch_size) {
            if stop.is_cancelled() {
                complete = false;
                break;
            }
            queued += self.ingest_chunk(pipeline, chunk, history, &mut totals);
            progress.report(
                &self.name,
                totals.stored + totals.already_stored + totals.failed,
            );
        }
        if first_contact && complete {
            self.finish_first_contact(pipeline, &mut totals);
        }
        (totals, queued)
    }

    /// One transaction for the chunk; if it fails, each message is tried on its own so
    /// that one message the store refuses does not hold back the others.
    fn ingest_chunk(
        &self,
        pipeline: &mut Pipeline,
        chunk: &[PathBuf],
        history: bool,
        totals: &mut Totals,
    ) -> usize {
        let reader = pipeline.reader();
        let reading = std::time::Instant::now();
        let mut files = Vec::with_capacity(chunk.len());
        let mut prepared = Vec::with_capacity(chunk.len());
        for file in chunk {
            match self.read(file, history) {
                Ok(message) => {
                    files.push(file.as_path());
                    prepared.push(reader.prepare(message));
                }
                Err(error) => {
                    tracing::error!(mailbox = %self.name, file = %file.display(), %error, "cannot read; message left in new/");
                    self.failed(totals, &format!("cannot read {}", file.display()), &error);
                }
            }
        }
        match pipeline.ingest_batch(&prepared, None, Utc::now()) {
            Ok(outcomes) => {
                metrics::ingested(&self.name, reading.elapsed(), outcomes.len());
                files
                    .iter()
                    .zip(outcomes)
                    .map(|(file, outcome)| self.settle(file, outcome, totals))
                    .sum()
            }
            Err(error) if prepared.len() > 1 => {
                tracing::warn!(mailbox = %self.name, %error, messages = prepared.len(), "batch refused; storing its messages one by one");
                files
                    .iter()
                    .zip(&prepared)
                    .map(|(file, one)| self.ingest_one(pipeline, file, one, totals))
                    .sum()
            }
            Err(error) => {
                self.refused(files.first().copied(), &error, totals);
                0
            }
        }
    }

    fn ingest_one(
        &self,
        pipeline: &mut Pipeline,
        file: &Path,
        prepared: &Prepared,
        totals: &mut Totals,
    ) -> usize {
        match pipeline.ingest_batch(std::slice::from_ref(prepared), None, Utc::now()) {
            Ok(outcomes) => outcomes
                .into_iter()
                .map(|o| self.settle(file, o, totals))
                .sum(),
            Err(error) => {
                self.refused(Some(file), &error, totals);
                0
            }
        }
    }

    fn refused(&self, file: Option<&Path>, error: &StoreError, totals: &mut Totals) {
        let file = file.map(|f| f.display().to_string()).unwrap_or_default();
        tracing::error!(mailbox = %self.name, %file, %error, "message left in new/");
        self.failed(totals, &format!("cannot store {file}"), error);
    }

    /// Counts a committed message and moves it to `cur/`; returns the mails it queued.
    fn settle(&self, file: &Path, outcome: Outcome, totals: &mut Totals) -> usize {
        let queued = match outcome {
            Outcome::Stored { queued, .. } => {
                totals.stored += 1;
                queued
            }
            Outcome::AlreadyStored => {
                totals.already_stored += 1;
                0
            }
        };
        if let Err(error) = self.acknowledge(file) {
            tracing::error!(mailbox = %self.name, file = %file.display(), %error, "stored, but cannot move to cur/");
        }
        queued
    }

    /// `skip-existing`: the mail found at the first contact goes to `cur/` unflagged, as
    /// a mail client leaves what it noticed but did not read; it is never stored.
    fn skip(&self, files: &[PathBuf], totals: &mut Totals) {
        if let Err(error) = std::fs::create_dir_all(self.path.join("cur")) {
            tracing::error!(mailbox = %self.name, %error, "cannot create cur/");
        }
        for file in files {
            let target = self
                .path
                .join("cur")
                .join(format!("{}:2,", unique_name(file)));
            if let Err(error) = std::fs::rename(file, target) {
                tracing::error!(mailbox = %self.name, file = %file.display(), %error, "cannot move existing mail aside");
                self.failed(totals, &format!("cannot move {}", file.display()), &error);
            }
        }
        tracing::info!(mailbox = %self.name, skipped = files.len(), "existing mail left alone (moved to cur/ unread)");
    }

    fn finish_first_contact(&self, pipeline: &mut Pipeline, totals: &mut Totals) {
        if let Err(error) = pipeline.store().reset_cursor(&self.name, KNOWN, Utc::now()) {
            tracing::error!(mailbox = %self.name, %error, "cannot record the first contact; it is repeated next round");
            self.failed(totals, "cannot record the first contact", &error);
        }
    }

    /// Files waiting in `new/`, oldest first (Maildir names start with the delivery time).
    pub fn waiting(&self) -> io::Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(self.path.join("new"))? {
            let entry = entry?;
            let dotfile = entry.file_name().to_string_lossy().starts_with('.');
            if !dotfile && entry.file_type()?.is_file() {
                files.push(entry.path());
            }
        }
        files.sort();
        Ok(files)
    }

    /// The message, or only its header when it is larger than `max_message_bytes`.
    pub fn read(&self, file: &Path, history: bool) -> io::Result<SourceMessage> {
        let size = std::fs::metadata(file)?.len();
        let oversize = size > self.max_message_bytes;
        Ok(SourceMessage {
            mailbox: self.name.clone(),
            role: self.role,
            key: unique_name(file),
            raw: if oversize {
                read_header(file)?
            } else {
                std::fs::read(file)?
            },
            oversize: oversize.then_some(size),
            history,
        })
    }

    /// Moves a stored message to `cur/` with the Seen flag.
    pub fn acknowledge(&self, file: &Path) -> io::Result<()> {
        let target = self
            .path
            .join("cur")
            .join(format!("{}:2,S", unique_name(file)));
        std::fs::create_dir_all(self.path.join("cur"))?;
        std::fs::rename(file, target)
    }
}

/// The header of a message, up to and including the blank line that ends it.
fn read_header(file: &Path) -> io::Result<Vec<u8>> {
    let mut reader = BufReader::new(std::fs::File::open(file)?.take(MAX_HEADER_BYTES));
    let mut header = Vec::new();
    loop {
        let start = header.len();
        if reader.read_until(b'\n', &mut header)? == 0 {
            return Ok(header);
        }
        if matches!(&header[start..], b"\n" | b"\r\n") {
            return Ok(header);
        }
    }
}

/// Logs a long sync's progress every few seconds.
struct Progress {
    total: usize,
    started: Instant,
    reported: Instant,
}

impl Progress {
    fn new(total: usize) -> Progress {
        Progress {
            total,
            started: Instant::now(),
            reported: Instant::now(),
        }
    }

    fn report(&mut self, mailbox: &str, done: usize) {
        if self.reported.elapsed() < PROGRESS_EVERY {
            return;
        }
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        tracing::info!(
            mailbox,
            done,
            total = self.total,
            rate = format!("{rate:.0}/s"),
            "syncing"
        );
        self.reported = Instant::now();
    }
}

/// The part of a Maildir file name that stays the same when flags are added.
fn unique_name(file: &Path) -> String {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.split_once(":2,") {
        Some((unique, _)) => unique.to_string(),
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_ends_at_the_first_blank_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m");
        std::fs::write(
            &file,
            b"From: a@b.example\r\nSubject: big\r\n\r\nbody\r\n\r\nmore",
        )
        .unwrap();
        assert_eq!(
            read_header(&file).unwrap(),
            b"From: a@b.example\r\nSubject: big\r\n\r\n"
        );
        std::fs::write(&file, b"Subject: only a header\n").unwrap();
        assert_eq!(read_header(&file).unwrap(), b"Subject: only a header\n");
    }
}
