//! Where log lines go and what they look like (`docs/operations.md`,
//! "Logs"): `tracing` events on stderr, through a background writer thread,
//! as human-readable text or as one JSON object per line.
//!
//! Colour codes are for people at a terminal: text written to a file, a
//! pipe or a journal carries none, so `grep` and log shippers see the
//! plain line (and `NO_COLOR` turns colour off on a terminal too).

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// `--log-format` / `SCOPEGATE_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines: `timestamp LEVEL target: message key=value ...`.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, then the
    /// event's fields (`message` when it has one) at the top level, with
    /// numbers as JSON numbers.
    Json,
}

/// Lines queued for the writer thread before new ones are dropped.
const QUEUED_LINES: usize = 64 * 1024;

/// Install the global subscriber. The writer is non-blocking and lossy: a
/// slow or full log sink drops lines instead of blocking request handling.
/// The guard flushes what is queued when `main` returns.
pub fn init(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = EnvFilter::try_from_env("SCOPEGATE_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let colour = colour_wanted(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUED_LINES)
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    // `try_init`: a second call (tests, embedding) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.with_ansi(colour).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    guard
}

/// Colour only on a terminal, and not when `NO_COLOR` is set to a
/// non-empty value (<https://no-color.org>).
fn colour_wanted(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        let set = std::ffi::OsStr::new("1");
        let empty = std::ffi::OsStr::new("");
        assert!(colour_wanted(true, None));
        assert!(colour_wanted(true, Some(empty)));
        assert!(!colour_wanted(true, Some(set)));
        assert!(!colour_wanted(false, None));
        assert!(!colour_wanted(false, Some(empty)));
    }
}
