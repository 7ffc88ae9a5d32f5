//! Hot reload of rules and templates, and of the accounts_file: on SIGHUP, and when a
//! file changes (checked every [`WATCH_INTERVAL`]). A set of rules and templates with any
//! error is refused, and so is an accounts file with any bad row: what was in force
//! keeps serving, every problem is logged and reported in the health file
//! ([`super::health`]), where `maildesk check` shows it. A bad billing export never
//! stops the desks.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::diag::Diagnostic;
use crate::identity::import::{ImportFileError, import_file};
use crate::metrics::{self, DeskState};
use crate::pipeline::Pipeline;
use crate::policy::{PolicyFiles, SharedPolicy};
use crate::store::accounts::{record_import, record_refusal};

pub use super::health::{Health, Rejected};

/// How often the directories are looked at for changes.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// The accounts_file (e.g. a billing export), imported at start and on every change.
pub struct AccountsFile {
    pub path: PathBuf,
    /// Its own connection, with the desk's templates for the notice to staff.
    pub pipeline: Pipeline,
    /// Woken when a notice was queued.
    pub outbox: Arc<Notify>,
}

impl AccountsFile {
    /// Imports the file, every row or none. A refused file leaves the registry as it
    /// was: each problem is logged with its file:line, staff are told once (see
    /// [`record_refusal`]), and the refusal is returned for the health file.
    pub fn import(&mut self, now: DateTime<Utc>) -> Option<Rejected> {
        let file = self.path.display().to_string();
        let error = match import_file(self.pipeline.store(), &self.path) {
            Ok(s) => {
                tracing::info!(%file, created = s.created, updated = s.updated, unchanged = s.unchanged, "imported accounts");
                if let Err(error) = record_import(&self.pipeline.store().conn, &self.path, now) {
                    tracing::warn!(%file, %error, "cannot record the import");
                }
                return None;
            }
            Err(error) => error,
        };
        let problems: Vec<String> = match &error {
            ImportFileError::Invalid(problems) => {
                problems.0.iter().map(Diagnostic::to_string).collect()
            }
            other => vec![other.to_string()],
        };
        for problem in &problems {
            tracing::error!(%problem, "accounts_file refused");
        }
        tracing::error!(%file, "the accounts_file was not imported: the registry stays as it was");
        metrics::reload_failed("accounts");
        let text = problems.join("\n");
        let path = &self.path;
        match self
            .pipeline
            .with_outgoing(|tx, out| record_refusal(tx, path, &text, out, now))
        {
            Ok(0) => {}
            Ok(_) => self.outbox.notify_one(),
            Err(error) => {
                tracing::error!(%file, %error, "cannot tell staff of the refused accounts_file")
            }
        }
        Some(Rejected { at: now, problems })
    }

    /// Changes whenever the file is replaced, modified or removed.
    fn fingerprint(&self) -> Option<(Option<SystemTime>, u64)> {
        let meta = std::fs::metadata(&self.path).ok()?;
        Some((meta.modified().ok(), meta.len()))
    }
}

/// Of the rules and templates, and of the accounts file: each reloaded when its own changes.
type Fingerprints = (
    Vec<(PathBuf, Option<SystemTime>, u64)>,
    Option<(Option<SystemTime>, u64)>,
);

pub struct Reloader {
    pub files: PolicyFiles,
    pub policy: SharedPolicy,
    pub accounts: Option<AccountsFile>,
    pub status: DeskState,
}

impl Reloader {
    /// Reloads on SIGHUP or on a change until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => Some(hangup),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP; reloading on file changes only");
                None
            }
        };
        let mut seen = self.fingerprints();
        loop {
            let hup = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = hup => {
                    tracing::info!("SIGHUP: reloading rules and templates, and the accounts file");
                    seen = self.fingerprints();
                    self.reload_policy();
                    self.reload_accounts();
                }
                _ = tokio::time::sleep(WATCH_INTERVAL) => {
                    let now = self.fingerprints();
                    if now.0 != seen.0 {
                        tracing::info!("rules or templates changed: reloading");
                        self.reload_policy();
                    }
                    if now.1 != seen.1 {
                        tracing::info!("the accounts_file changed: importing it");
                        self.reload_accounts();
                    }
                    seen = now;
                }
            }
        }
    }

    fn fingerprints(&self) -> Fingerprints {
        (
            self.files.fingerprint(),
            self.accounts.as_ref().and_then(AccountsFile::fingerprint),
        )
    }

    fn reload_accounts(&mut self) {
        if let Some(accounts) = &mut self.accounts {
            let rejected = accounts.import(Utc::now());
            self.status.update(|h| {
                h.accounts_rejected = rejected;
                true
            });
        }
    }

    fn reload_policy(&mut self) {
        let files = self.files.clone();
        let (policy, problems) = files.load();
        for problem in &problems {
            if problem.is_error() {
                tracing::error!(problem = %problem, "reload refused");
            } else {
                tracing::warn!(problem = %problem, "rules");
            }
        }
        let now = Utc::now();
        match policy {
            Some(policy) => {
                let rules = policy.rules.rules.len();
                self.policy.replace(policy);
                self.status.update(|h| {
                    h.rules = rules;
                    h.policy_loaded_at = now;
                    h.rejected = None;
                    true
                });
                tracing::info!(rules, "rules and templates reloaded");
            }
            None => {
                metrics::reload_failed("policy");
                let problems = problems
                    .iter()
                    .filter(|d| d.is_error())
                    .map(Diagnostic::to_string)
                    .collect();
                let mut loaded_at = now;
                self.status.update(|h| {
                    h.rejected = Some(Rejected { at: now, problems });
                    loaded_at = h.policy_loaded_at;
                    true
                });
                tracing::error!(
                    %loaded_at,
                    "the files have errors: still serving the rules and templates loaded before"
                );
            }
        }
    }
}
