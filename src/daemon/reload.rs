//! Hot reload of rules and templates: on SIGHUP, and when a file in either directory
//! changes (checked every [`WATCH_INTERVAL`]). A set with any error is refused: the old
//! one keeps serving, every problem is logged and written to the health file, where
//! `maildesk check` shows it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::diag::Diagnostic;
use crate::policy::{PolicyFiles, SharedPolicy};

/// How often the directories are looked at for changes.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// What the running daemon reports about itself; rewritten at each (attempted) reload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Health {
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    /// When the rules and templates in force were loaded.
    pub policy_loaded_at: DateTime<Utc>,
    pub rules: usize,
    /// Set while the files on disk are broken and the older set keeps serving.
    pub rejected: Option<Rejected>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rejected {
    pub at: DateTime<Utc>,
    pub problems: Vec<String>,
}

impl Health {
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

pub struct Reloader {
    pub files: PolicyFiles,
    pub policy: SharedPolicy,
    pub health_file: PathBuf,
    pub health: Health,
}

impl Reloader {
    /// Reloads on SIGHUP or on a change until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        self.health.write(&self.health_file);
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => Some(hangup),
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP; reloading on file changes only");
                None
            }
        };
        let mut seen = self.files.fingerprint();
        loop {
            let hup = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => {
                    // The report describes a running daemon; a stopped one leaves none.
                    let _ = std::fs::remove_file(&self.health_file);
                    return;
                }
                _ = hup => {
                    tracing::info!("SIGHUP: reloading rules and templates");
                    seen = self.files.fingerprint();
                    self.reload();
                }
                _ = tokio::time::sleep(WATCH_INTERVAL) => {
                    let now = self.files.fingerprint();
                    if now != seen {
                        seen = now;
                        tracing::info!("rules or templates changed: reloading");
                        self.reload();
                    }
                }
            }
        }
    }

    fn reload(&mut self) {
        let files = self.files.clone();
        let (policy, problems) = files.load();
        for problem in &problems {
            if problem.is_error() {
                tracing::error!(problem = %problem, "reload refused");
            } else {
                tracing::warn!(problem = %problem, "rules");
            }
        }
        match policy {
            Some(policy) => {
                self.health.rules = policy.rules.rules.len();
                self.health.policy_loaded_at = Utc::now();
                self.health.rejected = None;
                self.policy.replace(policy);
                tracing::info!(rules = self.health.rules, "rules and templates reloaded");
            }
            None => {
                self.health.rejected = Some(Rejected {
                    at: Utc::now(),
                    problems: problems
                        .iter()
                        .filter(|d| d.is_error())
                        .map(Diagnostic::to_string)
                        .collect(),
                });
                tracing::error!(
                    loaded_at = %self.health.policy_loaded_at,
                    "the files have errors: still serving the rules and templates loaded before"
                );
            }
        }
        self.health.write(&self.health_file);
    }
}
