//! Command-line interface: one file per subcommand.

mod accounts;
mod check;
mod config;
mod generate;
mod outbox;
mod rules;
mod run;
mod tickets;

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{BufWriter, IsTerminal, StdoutLock, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Tz;
use clap::{Parser, Subcommand};
use maildesk::config::{Config, ConfigError};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use crate::logging::LogFormat;

#[derive(Parser)]
#[command(
    name = "maildesk",
    version,
    about = "Support and abuse desk for a hosting provider, run over email"
)]
struct Cli {
    /// Config file [default: ./maildesk.toml, then /etc/maildesk/maildesk.toml]
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log lines on stderr: text, or one JSON object per line
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read the mailboxes, store and answer mail, deliver the outbox
    Run(run::Args),
    /// Validate the config, rules and templates without touching any mailbox
    Check,
    /// Print the configuration in force, every default filled in
    Config,
    /// Rules: try them on a message
    #[command(subcommand)]
    Rules(rules::Command),
    /// The account registry
    #[command(subcommand)]
    Accounts(accounts::Command),
    /// Tickets and their threads
    #[command(subcommand)]
    Tickets(tickets::Command),
    /// Man pages and shell completions, for packaging
    #[command(subcommand, hide = true)]
    Generate(generate::Command),
    /// Mail waiting to be sent, sent, given up or cancelled (like mailq)
    #[command(subcommand)]
    Outbox(outbox::Command),
}

/// Exit code for a config that cannot be used (clap uses 2 for usage errors too).
pub const EXIT_CONFIG: u8 = 2;
/// Exit code of `run --once` when mail stays queued for a later try.
pub const EXIT_DEFERRED: u8 = 3;

pub fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    crate::logging::init(cli.log_format);
    // Run where the package is built, which has no config.
    if let Command::Generate(command) = &cli.command {
        return generate::run(command);
    }
    let config = match load_config(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    match cli.command {
        Command::Run(args) => match check::ready_to_run(&config) {
            Ok(()) => run::run(&config, args),
            Err(code) => Ok(code),
        },
        Command::Check => check::check(&config),
        Command::Config => config::print(&config),
        Command::Rules(command) => rules::run(&config, command),
        Command::Accounts(command) => accounts::run(&config, command),
        Command::Tickets(command) => tickets::run(&config, command),
        Command::Outbox(command) => outbox::run(&config, command),
        Command::Generate(_) => unreachable!("generate returns before the config is loaded"),
    }
}

fn load_config(given: Option<&Path>) -> Result<Config, ConfigError> {
    Config::load(&Config::locate(given)?)
}

/// Prints `value` as pretty JSON on stdout.
fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    write_json(&mut stdout(), value)
}

fn write_json(out: &mut impl Write, value: &impl serde::Serialize) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// Where commands print. Writing returns errors instead of panicking like `println!`: a
/// reader that went away (`maildesk tickets list | head -1`) surfaces as a broken pipe,
/// which [`is_broken_pipe`] lets `main` end quietly.
fn stdout() -> BufWriter<StdoutLock<'static>> {
    BufWriter::new(std::io::stdout().lock())
}

/// Whether the command failed only because whoever read its output stopped reading.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let kind = cause
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
            .or_else(|| {
                cause
                    .downcast_ref::<serde_json::Error>()
                    .and_then(serde_json::Error::io_error_kind)
            });
        kind == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// One line of untrusted text (a subject, an address) safe to show on a terminal: every
/// control character, tabs and line breaks included, becomes a visible escape.
fn visible_line(text: &str) -> Cow<'_, str> {
    escape_controls(text, |_| false)
}

/// Untrusted text (a mail's body) safe to show on a terminal; line breaks and tabs stay.
fn visible_text(text: &str) -> Cow<'_, str> {
    escape_controls(text, |c| c == '\n' || c == '\t')
}

/// Writes control characters as `\x1b` (C0, DEL) or `\u{9b}` (C1, and the Unicode marks
/// that reorder or break lines): a mail must not be able to move the cursor, clear the
/// screen, set the window title or make a line read differently from what it holds.
fn escape_controls(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    let hidden = |c: char| {
        !keep(c)
            && (c.is_control()
                || matches!(
                    c,
                    '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}'
                )
                || ('\u{202a}'..='\u{202e}').contains(&c)
                || ('\u{2066}'..='\u{2069}').contains(&c))
    };
    if !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !hidden(c) {
            out.push(c);
        } else if c.is_ascii() {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
    Cow::Owned(out)
}

/// Database times (UTC, RFC 3339) shown in the desk's zone.
struct Clock {
    zone: Tz,
    this_year: i32,
}

impl Clock {
    fn new(config: &Config) -> Clock {
        let zone = config.time.zone;
        Clock {
            zone,
            this_year: Utc::now().with_timezone(&zone).year(),
        }
    }

    /// Full date and time, with the zone's abbreviation.
    fn long(&self, at: &str) -> String {
        self.format(at, |_| "%Y-%m-%d %H:%M:%S %Z")
    }

    /// Eleven columns: `11-20 10:04` this year, the date alone for an earlier year.
    fn short(&self, at: &str) -> String {
        self.format(at, |t| {
            if t.year() == self.this_year {
                "%m-%d %H:%M"
            } else {
                "%Y-%m-%d"
            }
        })
    }

    fn format(&self, at: &str, format: impl Fn(&DateTime<Tz>) -> &'static str) -> String {
        match at.parse::<DateTime<Utc>>() {
            Ok(t) => {
                let t = t.with_timezone(&self.zone);
                t.format(format(&t)).to_string()
            }
            // Not ours to judge: show what the database holds.
            Err(_) => visible_line(at).into_owned(),
        }
    }
}

/// A column of a [`Table`]: its header and the widest it may grow.
struct Column {
    header: &'static str,
    max: usize,
    right: bool,
}

impl Column {
    const fn left(header: &'static str, max: usize) -> Column {
        Column {
            header,
            max,
            right: false,
        }
    }

    const fn right(header: &'static str, max: usize) -> Column {
        Column {
            header,
            max,
            right: true,
        }
    }
}

/// Rows of terminal-safe cells printed in columns no wider than their content, their cap
/// and, for the last column, what is left of `width`; longer cells end in `…`. A row may
/// carry a note, printed whole on the line below it (like `mailq`'s errors).
struct Table {
    columns: Vec<Column>,
    rows: Vec<(Vec<String>, Option<String>)>,
}

impl Table {
    fn new(columns: Vec<Column>) -> Table {
        Table {
            columns,
            rows: Vec::new(),
        }
    }

    /// Adds a row; each cell is made terminal-safe.
    fn row(&mut self, cells: Vec<Cow<'_, str>>) {
        self.row_with_note(cells, None);
    }

    fn row_with_note(&mut self, cells: Vec<Cow<'_, str>>, note: Option<&str>) {
        self.rows.push((
            cells.iter().map(|c| visible_line(c).into_owned()).collect(),
            note.map(|n| visible_line(n).into_owned()),
        ));
    }

    fn print(&self, out: &mut impl Write, width: usize) -> std::io::Result<()> {
        let mut widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, column)| {
                let content = self
                    .rows
                    .iter()
                    .map(|(r, _)| r[i].width())
                    .max()
                    .unwrap_or(0);
                content.min(column.max).max(column.header.width())
            })
            .collect();
        if let Some((last, others)) = widths.split_last_mut() {
            let used: usize = others.iter().map(|w| w + 1).sum();
            *last = (*last)
                .min(width.saturating_sub(used))
                .max(self.columns[others.len()].header.width());
        }
        let headers: Vec<String> = self.columns.iter().map(|c| c.header.to_string()).collect();
        let header = (headers, None);
        for (cells, note) in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, column)) in cells.iter().zip(&self.columns).enumerate() {
                let last = i + 1 == self.columns.len();
                let cell = fit(cell, widths[i]);
                let pad = " ".repeat(widths[i] - cell.width());
                if column.right {
                    line.push_str(&pad);
                    line.push_str(&cell);
                } else {
                    line.push_str(&cell);
                    if !last {
                        line.push_str(&pad);
                    }
                }
                if !last {
                    line.push(' ');
                }
            }
            writeln!(out, "{}", line.trim_end())?;
            if let Some(note) = note {
                writeln!(out, "        ({note})")?;
            }
        }
        Ok(())
    }
}

/// `text` cut to `width` terminal columns, ending in `…` when cut.
fn fit(text: &str, width: usize) -> Cow<'_, str> {
    if text.width() <= width {
        return Cow::Borrowed(text);
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    Cow::Owned(out)
}

/// A stored mail's bytes: exact into a pipe or file, made safe on a terminal.
fn write_raw(out: &mut impl Write, raw: &[u8]) -> std::io::Result<()> {
    if !std::io::stdout().is_terminal() {
        return out.write_all(raw);
    }
    for line in String::from_utf8_lossy(raw).lines() {
        writeln!(out, "{}", visible_text(line))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible_escapes() {
        assert_eq!(
            visible_line("a\x1b[2J\x07\tb\r\n\u{9b}c\u{202e}d\x7f"),
            r"a\x1b[2J\x07\x09b\x0d\x0a\u{9b}c\u{202e}d\x7f"
        );
        assert_eq!(visible_text("a\tb\nc\x1b"), "a\tb\nc\\x1b");
        assert!(matches!(
            visible_line("plain, ünïcode 中文"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn cells_are_cut_to_terminal_columns() {
        assert_eq!(fit("abcdef", 6), "abcdef");
        assert_eq!(fit("abcdef", 4), "abc…");
        // Each of these takes two columns.
        assert_eq!(fit("中文字符", 5), "中文…");
        let mut table = Table::new(vec![Column::right("#", 8), Column::left("SUBJECT", 99)]);
        table.row(vec!["7".into(), "中文字符 and more".into()]);
        let mut out = Vec::new();
        table.print(&mut out, 10).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "# SUBJECT\n7 中文字…\n");
        assert!(text.lines().all(|l| l.width() <= 10));
    }
}
