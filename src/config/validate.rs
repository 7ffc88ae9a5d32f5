//! What every command needs of the config beyond its types: paths that must exist,
//! fields a kind of mailbox or transport needs, and no setting that the kind ignores.
//! Secrets and the database are left to [`Config::check_runtime`]: commands that only
//! read need neither.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{
    AfterProcessing, Config, Mailbox, PasswordSource, Security, SourceKind, TransportKind,
    is_loopback,
};
use crate::diag::Diagnostic;

/// `[[mailbox]]` keys that only an IMAP mailbox reads.
const IMAP_ONLY: &[&str] = &[
    "host",
    "port",
    "security",
    "user",
    "password_file",
    "password_env",
    "ca_file",
    "auth",
    "allow_plaintext",
    "folder",
    "after",
    "processed_folder",
];
/// `[outgoing]` keys that only the SMTP transport reads.
const SMTP_ONLY: &[&str] = &[
    "host",
    "port",
    "security",
    "user",
    "password_file",
    "password_env",
    "allow_plaintext",
];

impl SourceKind {
    /// Keys that a mailbox of this kind ignores: a setting given there is a mistake.
    pub(super) fn ignored_keys(self) -> &'static [&'static str] {
        match self {
            SourceKind::Maildir => IMAP_ONLY,
            SourceKind::Imap => &["path"],
        }
    }
}

impl TransportKind {
    /// Keys that this transport ignores.
    pub(super) fn ignored_keys(self) -> &'static [&'static str] {
        match self {
            TransportKind::File => SMTP_ONLY,
            TransportKind::Smtp => &["dir"],
        }
    }
}

impl Config {
    /// Checks what types alone cannot: files that must exist, fields one kind needs.
    pub(super) fn validate(&self) -> Vec<Diagnostic> {
        let mut v = Validator {
            file: &self.file,
            source: &self.source,
            problems: Vec::new(),
        };
        match self.database.get_ref().parent() {
            Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => v.error(
                &self.database,
                format!("directory {} of the database does not exist", dir.display()),
                "create it, or point `database` at an existing directory",
            ),
            _ => {}
        }
        v.dir_exists(&self.rules_dir, "rules_dir");
        v.dir_exists(&self.templates_dir, "templates_dir");
        if let Some(file) = &self.accounts_file {
            v.file_exists(file, "accounts_file");
        }
        for address in [&self.desk.support_address, &self.desk.abuse_address] {
            v.address(address);
        }
        let tag = self.desk.ticket_tag.get_ref();
        if tag.is_empty()
            || !tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            v.error(
                &self.desk.ticket_tag,
                format!("ticket_tag {tag:?} must be letters, digits, '-' or '_'"),
                "it becomes the subject tag, e.g. \"ACME\" gives [ACME #123]",
            );
        }
        for staff in &self.staff {
            v.address(&staff.email);
        }
        let mut names = HashSet::new();
        for mailbox in &self.mailboxes {
            if !names.insert(mailbox.name.get_ref().as_str()) {
                v.error(
                    &mailbox.name,
                    format!("mailbox name {:?} is used twice", mailbox.name.get_ref()),
                    "each mailbox needs its own name",
                );
            }
            v.mailbox(mailbox);
        }
        v.outgoing(self);
        v.ignored_keys(self);
        v.problems
    }
}

struct Validator<'a> {
    file: &'a Path,
    source: &'a str,
    problems: Vec<Diagnostic>,
}

impl Validator<'_> {
    fn error<T>(&mut self, at: &Spanned<T>, message: impl Into<String>, hint: &str) {
        self.error_at(at.span().start, message, hint);
    }

    fn error_at(&mut self, offset: usize, message: impl Into<String>, hint: &str) {
        self.problems.push(
            Diagnostic::error(self.file, message)
                .at_offset(self.source, offset)
                .with_hint(hint),
        );
    }

    fn error_at_file(&mut self, message: &str, hint: &str) {
        self.problems
            .push(Diagnostic::error(self.file, message).with_hint(hint));
    }

    fn mailbox(&mut self, mailbox: &Mailbox) {
        match mailbox.kind {
            SourceKind::Maildir => match &mailbox.path {
                Some(path) => self.maildir(path),
                None => self.error(
                    &mailbox.name,
                    "a maildir mailbox needs `path`",
                    "path = \"/var/mail/support\" (the folder holding new/ and cur/)",
                ),
            },
            SourceKind::Imap => {
                if mailbox.host.is_none() {
                    self.error(
                        &mailbox.name,
                        "an imap mailbox needs `host`",
                        "host = \"imap.example.net\"",
                    );
                }
                if mailbox.user.is_none() {
                    self.error(
                        &mailbox.name,
                        "an imap mailbox needs `user`",
                        "user = \"support@example.net\"",
                    );
                }
                self.password(&mailbox.name, mailbox.password());
                if let Some(ca) = &mailbox.ca_file {
                    self.file_exists(ca, "ca_file");
                }
                if mailbox.after == AfterProcessing::Move
                    && mailbox.processed_folder == mailbox.folder
                {
                    // Moved mail would come back with new UIDs, forever.
                    self.error(
                        &mailbox.name,
                        format!(
                            "processed_folder is the watched folder {:?}",
                            mailbox.folder
                        ),
                        "name another folder, or set after = \"seen\"",
                    );
                }
                if let Some(host) = &mailbox.host {
                    self.plain_only_to_loopback(host, mailbox.security, mailbox.allow_plaintext);
                }
            }
        }
    }

    fn outgoing(&mut self, config: &Config) {
        let out = &config.outgoing;
        match out.transport {
            TransportKind::File if out.dir.is_none() => self.error_at_file(
                "[outgoing] transport = \"file\" needs `dir`",
                "dir = \"outbox\" (created if missing)",
            ),
            TransportKind::Smtp if out.host.is_none() => self.error_at_file(
                "[outgoing] transport = \"smtp\" needs `host`",
                "host = \"smtp.example.net\"",
            ),
            TransportKind::Smtp => {
                if let Some(host) = &out.host {
                    if out.user.is_some() {
                        self.password(host, out.password());
                    }
                    self.plain_only_to_loopback(host, out.security, out.allow_plaintext);
                }
            }
            TransportKind::File => {}
        }
    }

    /// A setting the mailbox's kind (or the transport) never reads is refused where it is
    /// written: silently ignoring `folder` on a Maildir hides a config that does not do
    /// what its author thinks. Types cannot tell a key given from a default, so this
    /// looks at the document itself.
    fn ignored_keys(&mut self, config: &Config) {
        let Ok(document) = DeTable::parse(self.source) else {
            return;
        };
        let document = document.into_inner();
        if let Some(DeValue::Array(tables)) = document.get("mailbox").map(|v| v.get_ref()) {
            for (table, mailbox) in tables.iter().zip(&config.mailboxes) {
                if let DeValue::Table(table) = table.get_ref() {
                    let applies = match mailbox.kind {
                        SourceKind::Maildir => "kind = \"imap\"",
                        SourceKind::Imap => "kind = \"maildir\"",
                    };
                    self.keys_in(table, mailbox.kind.ignored_keys(), applies);
                }
            }
        }
        if let Some(DeValue::Table(table)) = document.get("outgoing").map(|v| v.get_ref()) {
            let kind = config.outgoing.transport;
            let applies = match kind {
                TransportKind::File => "transport = \"smtp\"",
                TransportKind::Smtp => "transport = \"file\"",
            };
            self.keys_in(table, kind.ignored_keys(), applies);
        }
    }

    /// `applies` is the setting under which the ignored keys would be read.
    fn keys_in(&mut self, table: &DeTable<'_>, ignored: &[&str], applies: &str) {
        for (key, _) in table.iter() {
            if ignored.contains(&key.get_ref().as_ref()) {
                self.error_at(
                    key.span().start,
                    format!("`{}` only applies to {applies}", key.get_ref()),
                    &format!("remove it, or set {applies}"),
                );
            }
        }
    }

    fn dir_exists(&mut self, dir: &Spanned<PathBuf>, key: &str) {
        if !dir.get_ref().is_dir() {
            self.error(
                dir,
                format!("{key} {} does not exist", dir.get_ref().display()),
                "paths are relative to the config file's directory",
            );
        }
    }

    fn maildir(&mut self, path: &Spanned<PathBuf>) {
        if !path.get_ref().join("new").is_dir() {
            self.error(
                path,
                format!(
                    "{} is not a Maildir (no new/ inside)",
                    path.get_ref().display()
                ),
                "a Maildir holds new/, cur/ and tmp/",
            );
        }
    }

    fn file_exists(&mut self, file: &Spanned<PathBuf>, key: &str) {
        if !file.get_ref().is_file() {
            self.error(
                file,
                format!("{key} {} does not exist", file.get_ref().display()),
                "paths are relative to the config file's directory",
            );
        }
    }

    /// Plain text exposes the password and the mail: acceptable on this machine only.
    fn plain_only_to_loopback(
        &mut self,
        host: &Spanned<String>,
        security: Option<Security>,
        allowed: bool,
    ) {
        if security == Some(Security::Plain) && !allowed && !is_loopback(host.get_ref()) {
            self.error(
                host,
                format!(
                    "security = \"plain\" is allowed only towards loopback, not {}",
                    host.get_ref()
                ),
                "use security = \"starttls\" or \"tls\" (or set allow_plaintext = true if you must)",
            );
        }
    }

    fn address(&mut self, address: &Spanned<String>) {
        if address.get_ref().parse::<lettre::Address>().is_err() {
            self.error(
                address,
                format!("{:?} is not an email address", address.get_ref()),
                "write it as local@domain, without a display name",
            );
        }
    }

    /// Exactly one source of the password must be named; whether it can be read is a
    /// question for the daemon's own user at run time (see [`Config::check_runtime`]).
    fn password<T>(&mut self, owner: &Spanned<T>, source: PasswordSource<'_>) {
        match (source.file, source.env) {
            (Some(_), None) | (None, Some(_)) => {}
            (Some(file), Some(_)) => self.error(
                file,
                "give either password_file or password_env, not both",
                "keep the one your deployment uses",
            ),
            (None, None) => self.error(
                owner,
                "a password is needed: password_file or password_env",
                "password_file = \"/etc/maildesk/imap.pass\"",
            ),
        }
    }
}
