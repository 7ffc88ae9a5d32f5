//! What only the daemon needs, checked by `run` before it starts and by `check`, with
//! the same function so that the two cannot disagree: every secret can be read, and the
//! database can be written and is not from a newer maildesk. Commands that only read
//! (`tickets`, `accounts list`, `config`...) need neither and skip this.

use std::io::ErrorKind;

use super::{Config, PasswordSource, SourceKind, TransportKind};
use crate::diag::Diagnostic;
use crate::store::probe::probe;

impl Config {
    /// Every problem that would stop `run`, as the user running this sees it.
    pub fn check_runtime(&self) -> Vec<Diagnostic> {
        let mut problems = Vec::new();
        for mailbox in &self.mailboxes {
            if mailbox.kind == SourceKind::Imap {
                problems.extend(self.password_problem(mailbox.password()));
            }
        }
        let out = &self.outgoing;
        if out.transport == TransportKind::Smtp && out.user.is_some() {
            problems.extend(self.password_problem(out.password()));
        }
        if let Err(error) = probe(self.database.get_ref()) {
            problems.push(
                Diagnostic::error(&self.file, error.to_string())
                    .at_offset(&self.source, self.database.span().start)
                    .with_hint(error.hint()),
            );
        }
        problems
    }

    /// Reads the secret the way the daemon will, to find out whether it can.
    fn password_problem(&self, source: PasswordSource<'_>) -> Option<Diagnostic> {
        let (offset, message, hint) = match source.read() {
            Ok(Some(_)) => return None,
            Ok(None) => {
                let var = source.env?;
                (
                    var.span().start,
                    format!("environment variable {} is not set", var.get_ref()),
                    "set it in the daemon's environment (e.g. systemd EnvironmentFile=)",
                )
            }
            Err(error) => {
                let file = source.file?;
                let path = file.get_ref().display();
                let message = match error.kind() {
                    ErrorKind::NotFound => format!("password_file {path} does not exist"),
                    _ => format!("password_file {path} cannot be read: {error}"),
                };
                (
                    file.span().start,
                    message,
                    "make it a file readable by the user maildesk runs as (e.g. owner root, group maildesk, mode 640)",
                )
            }
        };
        Some(
            Diagnostic::error(&self.file, message)
                .at_offset(&self.source, offset)
                .with_hint(hint),
        )
    }
}
