//! Log lines on stderr, the way an operator reads them: text or JSON, and with journald's
//! priorities when systemd collects stderr.
//!
//! Under systemd (`JOURNAL_STREAM` set, i.e. `StandardError=journal`), each line starts
//! with its sd-daemon(3) priority, `<3>` for an error ... `<7>` for debug: journald strips
//! the prefix and files the line at that priority, so `journalctl -p err` finds errors.
//! This was chosen over `tracing-journald`, which writes to the journal's socket instead:
//! the prefix keeps one output, stderr, that works the same under any supervisor, in a
//! terminal and in tests, and needs no socket that could be missing.

use std::fmt;
use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer};

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per event
    Text,
    /// One JSON object per line, its fields at the top level
    Json,
}

/// Logs to stderr at `RUST_LOG`'s levels (default `info`).
pub fn init(format: LogFormat) {
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(!journal && std::io::stderr().is_terminal());
    let layer = match (format, journal) {
        (LogFormat::Text, false) => layer.boxed(),
        // journald stamps every line itself.
        (LogFormat::Text, true) => layer
            .event_format(Prioritized(
                tracing_subscriber::fmt::format().without_time(),
            ))
            .boxed(),
        (LogFormat::Json, false) => layer.json().flatten_event(true).boxed(),
        (LogFormat::Json, true) => layer
            .json()
            .flatten_event(true)
            .map_event_format(Prioritized)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .init();
}

/// Puts the sd-daemon(3) priority of the event before each of its lines.
struct Prioritized<F>(F);

impl<S, N, F> FormatEvent<S, N> for Prioritized<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut text = String::new();
        self.0.format_event(ctx, Writer::new(&mut text), event)?;
        write_prefixed(&mut writer, priority(*event.metadata().level()), &text)
    }
}

/// syslog(3) priorities, as sd-daemon(3) wants them.
fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// Every line gets the prefix: journald reads a multi-line message (a list of problems
/// in a refused reload) as several lines, each filed at its own prefix's priority.
fn write_prefixed(out: &mut impl fmt::Write, priority: u8, text: &str) -> fmt::Result {
    for line in text.split_inclusive('\n') {
        write!(out, "<{priority}>{line}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_of_an_event_carries_its_priority() {
        let mut out = String::new();
        write_prefixed(&mut out, 3, "reload refused:\n  rules/a.toml:3: bad\n").unwrap();
        assert_eq!(out, "<3>reload refused:\n<3>  rules/a.toml:3: bad\n");
        assert_eq!(priority(Level::WARN), 4);
        assert_eq!(priority(Level::TRACE), 7);
    }
}
