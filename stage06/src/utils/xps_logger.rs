//! The logger: one coloured line per event on stdout, as `xps_logger.c` does.
//!
//! A line looks like
//! `12:04:31.207 [INFO] xps_core_start() : Server listening on port 8001`.
//! Colours are used only when stdout is a terminal and `NO_COLOR` is not set,
//! so a log piped to a file or a test holds plain text. DEBUG lines appear
//! only when the environment variable `XPS_DEBUG` is exactly `1`.

use colored::{ColoredString, Colorize};
use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::OnceLock;

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

/// Prints one log line to stdout and flushes it, like the C `logger()`.
///
/// Use it through the [`logger!`](crate::logger) macro, which takes a format
/// string as `printf` does. A failed write (stdout closed, disk full) is
/// ignored on purpose: losing a log line must never take the server down.
pub fn log(level: LogLevel, function_name: &str, message: fmt::Arguments<'_>) {
    let config = config();
    if level == LogLevel::Debug && !config.show_debug {
        return;
    }
    let line = format_line(level, function_name, message, config.use_colour);
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
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
    fn coloured_line_has_escape_codes() {
        colored::control::set_override(true);
        let line = format_line(LogLevel::Info, "f()", format_args!("hi"), true);
        assert!(line.contains('\x1b'), "{line:?}");
        assert!(line.contains("INFO") && line.contains("hi"), "{line:?}");
    }
}
