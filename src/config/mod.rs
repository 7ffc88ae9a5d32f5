//! The daemon's TOML configuration: typed, validated, every problem reported at once.
//!
//! Relative paths are resolved against the directory of the config file, so a config
//! works the same whatever directory the daemon is started from.

mod collect;
mod effective;
mod runtime;
mod validate;

use std::path::{Path, PathBuf};

use chrono::{NaiveDate, NaiveTime, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::diag::Diagnostics;

pub use collect::deserialize_all;

/// Where `--config` is looked for when not given.
pub const DEFAULT_LOCATIONS: [&str; 2] = ["maildesk.toml", "/etc/maildesk/maildesk.toml"];

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The config file this was read from.
    #[serde(skip)]
    pub file: PathBuf,
    /// Its text, to place problems found after loading (see [`Config::check_runtime`]).
    #[serde(skip)]
    source: String,
    pub database: Spanned<PathBuf>,
    pub rules_dir: Spanned<PathBuf>,
    pub templates_dir: Spanned<PathBuf>,
    /// Account CSV imported (upserted) at every start of `run`, e.g. a billing export.
    pub accounts_file: Option<Spanned<PathBuf>>,
    pub desk: Desk,
    #[serde(default)]
    pub time: Time,
    #[serde(default, rename = "mailbox")]
    pub mailboxes: Vec<Mailbox>,
    pub outgoing: Outgoing,
    #[serde(default)]
    pub staff: Vec<Staff>,
    #[serde(default)]
    pub daemon: Daemon,
    #[serde(default)]
    pub limits: Limits,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Desk {
    /// Shown to customers, e.g. in the From display name.
    pub name: String,
    pub support_address: Spanned<String>,
    pub abuse_address: Spanned<String>,
    /// Subject tag, `ACME` gives `[ACME #123]`.
    pub ticket_tag: Spanned<String>,
    /// Language of mails to senders whose language is unknown.
    #[serde(default = "default_language")]
    pub default_language: String,
}

fn default_language() -> String {
    "en".into()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Time {
    pub zone: Tz,
    pub business_days: Vec<Weekday>,
    pub business_hours: BusinessHours,
    /// ISO dates (`"2026-12-25"`) that are not working days.
    pub holidays: Vec<NaiveDate>,
}

impl Default for Time {
    fn default() -> Self {
        Self {
            zone: Tz::UTC,
            business_days: vec![
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
            ],
            business_hours: BusinessHours {
                opens: NaiveTime::from_hms_opt(8, 0, 0).unwrap_or_default(),
                closes: NaiveTime::from_hms_opt(18, 0, 0).unwrap_or_default(),
            },
            holidays: Vec::new(),
        }
    }
}

/// Opening hours of a working day, written `"08:00-18:00"`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(try_from = "String", into = "String")]
pub struct BusinessHours {
    pub opens: NaiveTime,
    pub closes: NaiveTime,
}

impl From<BusinessHours> for String {
    fn from(hours: BusinessHours) -> String {
        format!(
            "{}-{}",
            hours.opens.format("%H:%M"),
            hours.closes.format("%H:%M")
        )
    }
}

impl TryFrom<String> for BusinessHours {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let bad = || format!("business_hours must look like \"08:00-18:00\", not {value:?}");
        let (opens, closes) = value.split_once('-').ok_or_else(bad)?;
        let parse = |s: &str| NaiveTime::parse_from_str(s.trim(), "%H:%M").map_err(|_| bad());
        let (opens, closes) = (parse(opens)?, parse(closes)?);
        if opens >= closes {
            return Err(format!(
                "business_hours {value:?}: opening time must come before closing time"
            ));
        }
        Ok(Self { opens, closes })
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Support,
    Abuse,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Support => "support",
            Role::Abuse => "abuse",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Maildir,
    Imap,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    Tls,
    Starttls,
    /// No TLS: allowed only towards loopback addresses.
    Plain,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Mailbox {
    /// Unique; keys the mailbox's cursor in the database, so renaming it means a new cursor.
    pub name: Spanned<String>,
    pub role: Role,
    pub kind: SourceKind,
    /// Maildir: the directory holding `new/`, `cur/` and `tmp/`.
    pub path: Option<Spanned<PathBuf>>,
    /// IMAP server.
    pub host: Option<Spanned<String>>,
    pub port: Option<u16>,
    pub security: Option<Security>,
    pub user: Option<String>,
    pub password_file: Option<Spanned<PathBuf>>,
    pub password_env: Option<Spanned<String>>,
    /// A CA certificate (PEM) trusted besides the system's roots.
    pub ca_file: Option<Spanned<PathBuf>>,
    /// How to log in: the LOGIN command, or SASL PLAIN (AUTHENTICATE PLAIN).
    #[serde(default)]
    pub auth: ImapAuth,
    /// Allows `security = "plain"` towards a host that is not loopback.
    #[serde(default)]
    pub allow_plaintext: bool,
    #[serde(default = "default_folder")]
    pub folder: String,
    /// What is done to a message on the server once it is stored.
    #[serde(default)]
    pub after: AfterProcessing,
    #[serde(default = "default_processed_folder")]
    pub processed_folder: String,
    #[serde(default)]
    pub initial_sync: InitialSync,
    /// Larger messages are recorded by their header only and flagged for staff.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: u64,
    /// Messages fetched and committed together.
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
}

fn default_folder() -> String {
    "INBOX".into()
}

fn default_processed_folder() -> String {
    "Processed".into()
}

fn default_max_message_bytes() -> u64 {
    25 * 1024 * 1024
}

fn default_batch_size() -> u32 {
    500
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ImapAuth {
    #[default]
    Login,
    Plain,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AfterProcessing {
    /// Move to `processed_folder` (UID MOVE, or COPY + \Deleted + UID EXPUNGE).
    #[default]
    Move,
    /// Leave in place, flagged \Seen.
    Seen,
}

/// What to do with mail already in a mailbox the first time maildesk sees it.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum InitialSync {
    /// Store it as history: tickets, but no automatic answer.
    #[default]
    ImportSilently,
    /// Leave it alone; only mail arriving later is handled.
    SkipExisting,
    /// Handle it like new mail, answers included.
    Process,
}

/// Where a password comes from: a secret never has to be written in the config itself.
#[derive(Debug, Clone, Copy)]
pub struct PasswordSource<'a> {
    pub file: Option<&'a Spanned<PathBuf>>,
    pub env: Option<&'a Spanned<String>>,
}

impl Mailbox {
    pub fn password(&self) -> PasswordSource<'_> {
        PasswordSource {
            file: self.password_file.as_ref(),
            env: self.password_env.as_ref(),
        }
    }
}

impl Outgoing {
    pub fn password(&self) -> PasswordSource<'_> {
        PasswordSource {
            file: self.password_file.as_ref(),
            env: self.password_env.as_ref(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Outgoing {
    pub transport: TransportKind,
    /// File transport: directory the `.eml` files are written to (created if missing).
    pub dir: Option<Spanned<PathBuf>>,
    /// SMTP relay.
    pub host: Option<Spanned<String>>,
    pub port: Option<u16>,
    pub security: Option<Security>,
    pub user: Option<String>,
    pub password_file: Option<Spanned<PathBuf>>,
    pub password_env: Option<Spanned<String>>,
    /// Allows `security = "plain"` towards a host that is not loopback.
    #[serde(default)]
    pub allow_plaintext: bool,
    /// A mail not delivered this long after it was queued is given up: marked failed,
    /// recorded on its ticket, and the ticket flagged for staff.
    #[serde(default = "default_max_age_hours")]
    pub max_age_hours: u32,
}

fn default_max_age_hours() -> u32 {
    48
}

/// How many automatic mails may go out, so that no exchange with a machine (or a flood of
/// forged senders) becomes a flood of our mail. Mails to staff are not counted.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Automatic mails to one address per window.
    pub per_address: u32,
    /// Automatic mails on one ticket per window.
    pub per_ticket: u32,
    pub window_minutes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_address: 5,
            per_ticket: 1,
            window_minutes: 60,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    File,
    Smtp,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Staff {
    pub email: Spanned<String>,
    pub name: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Daemon {
    /// How often a mailbox without push is looked at.
    pub poll_interval_secs: u64,
    /// Where `GET /metrics` and `GET /health` are served (an IP address and a port);
    /// nothing is served without it.
    pub listen: Option<std::net::SocketAddr>,
}

impl Default for Daemon {
    fn default() -> Self {
        Self {
            poll_interval_secs: 60,
            listen: None,
        }
    }
}

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no config file given and none found at {}", DEFAULT_LOCATIONS.join(" or "))]
    NotFound,
    #[error("cannot read config {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Diagnostics),
}

impl Config {
    /// Finds the config: the given path, else the default locations in order.
    pub fn locate(given: Option<&Path>) -> Result<PathBuf, ConfigError> {
        if let Some(path) = given {
            return Ok(path.to_path_buf());
        }
        DEFAULT_LOCATIONS
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or(ConfigError::NotFound)
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let source = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &source)
    }

    /// Parses and validates `source`, the text of the config file at `path`.
    pub fn parse(path: &Path, source: &str) -> Result<Config, ConfigError> {
        let (config, mut problems) = deserialize_all::<Config>(path, source);
        let config = config.map(|mut config| {
            config.file = path.to_path_buf();
            config.source = source.to_string();
            let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
            config.resolve_paths(&base);
            config.resolve_defaults();
            problems.extend(config.validate());
            config
        });
        match config {
            Some(config) if problems.is_empty() => Ok(config),
            _ => Err(ConfigError::Invalid(Diagnostics(problems))),
        }
    }

    /// Where rules and templates are read from.
    pub fn policy_files(&self) -> crate::policy::PolicyFiles {
        crate::policy::PolicyFiles {
            rules_dir: self.rules_dir.get_ref().clone(),
            templates_dir: self.templates_dir.get_ref().clone(),
        }
    }

    /// The running daemon's health report: next to the database, `<name>.health.json`.
    pub fn health_file(&self) -> PathBuf {
        self.database.get_ref().with_extension("health.json")
    }

    /// Fills in the port and security that a server is reached with when the config
    /// names none, so that `maildesk config` shows them and every reader agrees.
    fn resolve_defaults(&mut self) {
        for mailbox in &mut self.mailboxes {
            if mailbox.kind == SourceKind::Imap {
                let security = *mailbox.security.get_or_insert(Security::Tls);
                mailbox.port.get_or_insert(match security {
                    Security::Tls => 993,
                    Security::Starttls | Security::Plain => 143,
                });
            }
        }
        let out = &mut self.outgoing;
        if out.transport == TransportKind::Smtp {
            let security = *out.security.get_or_insert(Security::Starttls);
            out.port.get_or_insert(match security {
                Security::Tls => 465,
                Security::Starttls => 587,
                Security::Plain => 25,
            });
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        let mut paths: Vec<&mut Spanned<PathBuf>> = vec![
            &mut self.database,
            &mut self.rules_dir,
            &mut self.templates_dir,
        ];
        paths.extend(self.accounts_file.as_mut());
        paths.extend(self.outgoing.dir.as_mut());
        paths.extend(self.outgoing.password_file.as_mut());
        for mailbox in &mut self.mailboxes {
            paths.extend(mailbox.path.as_mut());
            paths.extend(mailbox.password_file.as_mut());
            paths.extend(mailbox.ca_file.as_mut());
        }
        for path in paths {
            if path.get_ref().is_relative() {
                let joined = base.join(path.get_ref());
                *path.get_mut() = joined;
            }
        }
    }
}

impl PasswordSource<'_> {
    /// Reads the secret; trailing newlines of a password file are not part of it.
    pub fn read(&self) -> std::io::Result<Option<String>> {
        if let Some(file) = self.file {
            let text = std::fs::read_to_string(file.get_ref())?;
            return Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()));
        }
        Ok(self.env.and_then(|var| std::env::var(var.get_ref()).ok()))
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("::1"));
        assert!(is_loopback("localhost"));
        assert!(!is_loopback("smtp.example.net"));
        assert!(!is_loopback("192.0.2.1"));
    }
}
