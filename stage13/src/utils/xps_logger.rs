//! The logger: one coloured line per event on stdout, as `xps_logger.c` does.
//!
//! A line looks like
//! `12:04:31.207 [INFO] xps_core_start() : Server listening on port 8001`.
//! Colours are used only when stdout is a terminal and `NO_COLOR` is not set,
//! so a log piped to a file or a test holds plain text. DEBUG lines appear
//! only when the environment variable `XPS_DEBUG` is exactly `1`.
//!
//! On a terminal every line is written as soon as it is logged. Into a file
//! or a pipe, lines are gathered and written together by [`flush_log`],
//! which the loop calls before it waits for events (see [`Output`]).

use colored::{ColoredString, Colorize};
use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// How important a log line is; each level has its own colour.
///
/// The same logger serves every stage, and not every stage uses every
/// level (HTTP waits for the HTTP stages), hence the `allow`.
#[allow(dead_code)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Something failed; the server goes on if it can.
    Error,
    /// Normal progress worth seeing: a listener started, a client came or went.
    Info,
    /// Every step in detail; shown only with `XPS_DEBUG=1`.
    Debug,
    /// Something unusual but expected, such as a shutdown signal.
    Warning,
    /// HTTP traffic. The course uses it from the HTTP stages on.
    Http,
}

impl LogLevel {
    /// The word printed between the brackets.
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Error => "ERROR",
            LogLevel::Info => "INFO",
            LogLevel::Debug => "DEBUG",
            LogLevel::Warning => "WARNING",
            LogLevel::Http => "HTTP",
        }
    }

    /// The level word with the course's colours: a coloured background for
    /// most levels, magenta text for DEBUG.
    fn paint(self) -> ColoredString {
        let word = format!("[{}]", self.name()).bold();
        match self {
            LogLevel::Error => word.white().on_red(),
            LogLevel::Info => word.white().on_blue(),
            LogLevel::Debug => word.magenta(),
            LogLevel::Warning => word.black().on_yellow(),
            LogLevel::Http => word.white().on_green(),
        }
    }
}

/// What the environment asked for, read once on the first log line.
#[derive(Debug, Clone, Copy)]
struct LoggerConfig {
    show_debug: bool,
    use_colour: bool,
}

static CONFIG: OnceLock<LoggerConfig> = OnceLock::new();

fn config() -> LoggerConfig {
    *CONFIG.get_or_init(|| {
        let no_colour = std::env::var_os("NO_COLOR");
        let use_colour = colour_enabled(std::io::stdout().is_terminal(), no_colour.as_deref());
        // `colored` has its own guess from the environment; ours is the one
        // that counts, so tell it.
        colored::control::set_override(use_colour);
        LoggerConfig {
            show_debug: debug_enabled(std::env::var("XPS_DEBUG").ok().as_deref()),
            use_colour,
        }
    })
}

/// DEBUG lines are shown only when `XPS_DEBUG` is exactly `1`.
pub fn debug_enabled(xps_debug: Option<&str>) -> bool {
    xps_debug == Some("1")
}

/// Colour only on a terminal, and never when `NO_COLOR` is set to anything
/// but the empty string (the convention of no-color.org).
pub fn colour_enabled(stdout_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    let opted_out = no_color.is_some_and(|value| !value.is_empty());
    stdout_is_terminal && !opted_out
}

// ANCHOR: format_line
/// Builds one log line (without the newline).
pub fn format_line(
    level: LogLevel,
    function_name: &str,
    message: fmt::Arguments<'_>,
    use_colour: bool,
) -> String {
    let time = chrono::Local::now().format("%H:%M:%S%.3f");
    if use_colour {
        format!("{time} {} {} : {message}", level.paint(), function_name.green())
    } else {
        format!("{time} [{}] {function_name} : {message}", level.name())
    }
}
// ANCHOR_END: format_line

/// Prints one log line on stdout, like the C `logger()`.
///
/// Use it through the [`logger!`](crate::logger) macro, which takes a format
/// string as `printf` does.
pub fn log(level: LogLevel, function_name: &str, message: fmt::Arguments<'_>) {
    let config = config();
    if level == LogLevel::Debug && !config.show_debug {
        return;
    }
    print_line(format_args!("{}", format_line(level, function_name, message, config.use_colour)));
}

/// Prints one line on stdout that is not a log line (the server prints
/// each client message this way), in order with the log.
pub fn print_line(line: fmt::Arguments<'_>) {
    // Under `cargo test`, `println!` lets the test harness capture the line
    // and show it only if the test fails: the unit tests of failure paths
    // log ERRORs on purpose, and those should not litter the test report.
    if cfg!(test) {
        println!("{line}");
        return;
    }
    let mut output = output();
    let _ = writeln!(output.pending, "{line}");
    output.written(&mut std::io::stdout().lock());
}

/// Writes out any lines still gathered. The loop calls it before it waits
/// for events, and `main()` before the process ends.
pub fn flush_log() {
    output().flush(&mut std::io::stdout().lock());
}

// ANCHOR: output
/// The lines on their way to stdout.
///
/// Writing each line with its own `write()` costs a system call per line,
/// as much as receiving or sending a message. On a terminal that is worth
/// it: the operator sees every line at once. Into a file or a pipe nobody
/// watches line by line, so lines are gathered here and written with one
/// `write()` when the loop is about to sleep: a busy server makes one
/// system call for many lines, and no line waits while the server is idle.
#[derive(Debug)]
pub struct Output {
    /// Lines not written yet.
    pending: Vec<u8>,
    /// Write every line at once (stdout is a terminal).
    immediate: bool,
}

/// Gathered output this large is written out without waiting for the loop.
const FLUSH_AT: usize = 64 * 1024;

impl Output {
    /// Called after a line was added to `pending`: writes it out now on a
    /// terminal, or when a lot has gathered.
    fn written(&mut self, sink: &mut impl Write) {
        if self.immediate || self.pending.len() >= FLUSH_AT {
            self.flush(sink);
        }
    }

    /// Writes out everything gathered. A failed write (stdout closed, disk
    /// full) is dropped on purpose: losing log lines must never take the
    /// server down.
    fn flush(&mut self, sink: &mut impl Write) {
        if !self.pending.is_empty() {
            let _ = sink.write_all(&self.pending).and_then(|()| sink.flush());
            self.pending.clear();
            // One huge message (a 100 KB chunk of binary, escaped) may have
            // grown the buffer; do not keep that much memory for good.
            self.pending.shrink_to(FLUSH_AT);
        }
    }
}
// ANCHOR_END: output

static OUTPUT: OnceLock<Mutex<Output>> = OnceLock::new();

fn output() -> MutexGuard<'static, Output> {
    let output = OUTPUT.get_or_init(|| {
        Mutex::new(Output { pending: Vec::new(), immediate: std::io::stdout().is_terminal() })
    });
    // Poisoned only if a thread panicked while printing; the buffer is fine.
    output.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Logs a line: `logger!(LogLevel::Info, "xps_core_start()", "port {}", p)`.
#[macro_export]
macro_rules! logger {
    ($level:expr, $function_name:expr, $($message:tt)+) => {
        $crate::utils::xps_logger::log($level, $function_name, format_args!($($message)+))
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn debug_needs_xps_debug_exactly_one() {
        assert!(debug_enabled(Some("1")));
        assert!(!debug_enabled(None));
        assert!(!debug_enabled(Some("0")));
        assert!(!debug_enabled(Some("true")));
        assert!(!debug_enabled(Some(" 1")));
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_enabled(true, None));
        assert!(colour_enabled(true, Some(OsStr::new(""))));
        assert!(!colour_enabled(true, Some(OsStr::new("1"))));
        assert!(!colour_enabled(false, None));
        assert!(!colour_enabled(false, Some(OsStr::new("1"))));
    }

    #[test]
    fn plain_line_has_no_escape_codes() {
        let line = format_line(
            LogLevel::Warning,
            "sigint_handler()",
            format_args!("SIGINT received"),
            false,
        );
        assert!(!line.contains('\x1b'), "{line:?}");
        assert!(line.ends_with("[WARNING] sigint_handler() : SIGINT received"), "{line:?}");
    }

    #[test]
    fn terminal_output_is_written_line_by_line() {
        let mut sink = Vec::new();
        let mut output = Output { pending: Vec::new(), immediate: true };
        output.pending.extend_from_slice(b"one\n");
        output.written(&mut sink);
        assert_eq!(sink, b"one\n");
        assert!(output.pending.is_empty());
    }

    #[test]
    fn other_output_waits_for_a_flush_or_a_full_buffer() {
        let mut sink = Vec::new();
        let mut output = Output { pending: Vec::new(), immediate: false };
        output.pending.extend_from_slice(b"one\n");
        output.written(&mut sink);
        output.pending.extend_from_slice(b"two\n");
        output.written(&mut sink);
        assert!(sink.is_empty(), "written before the flush");
        output.flush(&mut sink);
        assert_eq!(sink, b"one\ntwo\n");

        output.pending.resize(FLUSH_AT, b'x');
        output.written(&mut sink);
        assert_eq!(sink.len(), 8 + FLUSH_AT, "a full buffer is written at once");
    }

    #[test]
    fn coloured_line_has_escape_codes() {
        colored::control::set_override(true);
        let line = format_line(LogLevel::Info, "f()", format_args!("hi"), true);
        assert!(line.contains('\x1b'), "{line:?}");
        assert!(line.contains("INFO") && line.contains("hi"), "{line:?}");
    }
}
