//! The progress line of the tools that run for a while (`sender`,
//! `xps-bench`, `mkdata`): on a terminal, one line on stderr redrawn in
//! place; elsewhere (a pipe, a file, a CI log) either nothing or a plain
//! line each time the status changes, as the tool asks. And the rate shown
//! in it, measured over half a second or more so that it does not flicker.

use std::io::{self, Write};
use std::time::{Duration, Instant};

/// What the line does when stderr is not a terminal, where it cannot be
/// redrawn in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffTerminal {
    /// Shows nothing: the tool prints its own summary at the end.
    Quiet,
    /// Prints each status that differs from the last one, on a line of its
    /// own (the tool decides how often it offers one).
    EachChange,
}

/// The progress line on stderr.
#[derive(Debug)]
pub struct ProgressLine {
    on_terminal: bool,
    off_terminal: OffTerminal,
    /// Whether a line is drawn in place and must be ended before others.
    line_open: bool,
    /// The last status shown, not to print it twice off a terminal.
    last: String,
}

impl ProgressLine {
    /// A line drawn in place if `on_terminal`, else as `off_terminal` says.
    pub fn new(on_terminal: bool, off_terminal: OffTerminal) -> ProgressLine {
        ProgressLine { on_terminal, off_terminal, line_open: false, last: String::new() }
    }

    /// True if the line is drawn in place on a terminal.
    pub fn on_terminal(&self) -> bool {
        self.on_terminal
    }

    /// True if `status` is not what was last shown.
    pub fn is_new(&self, status: &str) -> bool {
        status != self.last
    }

    /// Shows `status`: over the previous one on a terminal (`\r`, then
    /// `ESC [ K` to erase what is left of a longer line), else on a line
    /// of its own if it is new and the line was asked to print changes.
    pub fn show(&mut self, status: &str) {
        if self.on_terminal {
            eprint!("\r\x1b[K{status}");
            let _ = io::stderr().flush();
            self.line_open = true;
        } else if self.off_terminal == OffTerminal::EachChange && self.is_new(status) {
            eprintln!("{status}");
        }
        if self.is_new(status) {
            self.last = status.to_string();
        }
    }

    /// Ends a line drawn in place, leaving it on screen, so that what is
    /// printed next starts on a line of its own.
    pub fn finish(&mut self) {
        if self.line_open {
            eprintln!();
            self.line_open = false;
        }
    }

    /// Erases a line drawn in place.
    pub fn clear(&mut self) {
        if self.line_open {
            eprint!("\r\x1b[K");
            let _ = io::stderr().flush();
            self.line_open = false;
        }
    }
}

/// A count per second (bytes sent, replies received), measured again
/// whenever half a second or more has passed since the last measurement.
#[derive(Debug, Clone)]
pub struct Rate {
    /// The count and the time of the last measurement.
    mark: (u64, Instant),
    per_second: f64,
}

impl Rate {
    /// The shortest span a rate is measured over.
    pub const SPAN: Duration = Duration::from_millis(500);

    /// A rate of 0 until the first measurement, counting from 0 at `now`.
    pub fn new(now: Instant) -> Rate {
        Rate { mark: (0, now), per_second: 0.0 }
    }

    /// The rate, measured again if [`Rate::SPAN`] has passed since the last
    /// measurement; `total` is the count so far.
    pub fn update(&mut self, total: u64, now: Instant) -> f64 {
        let (mark_total, mark_time) = self.mark;
        let span = now.duration_since(mark_time);
        if span >= Rate::SPAN {
            self.per_second = total.saturating_sub(mark_total) as f64 / span.as_secs_f64();
            self.mark = (total, now);
        }
        self.per_second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_measured_over_half_a_second_or_more() {
        let start = Instant::now();
        let mut rate = Rate::new(start);
        assert_eq!(rate.update(100, start + Duration::from_millis(100)), 0.0);
        assert_eq!(rate.update(500, start + Duration::from_secs(1)), 500.0);
        // Too soon to measure again: the last rate stands.
        assert_eq!(rate.update(900, start + Duration::from_millis(1200)), 500.0);
        assert_eq!(rate.update(1500, start + Duration::from_secs(2)), 1000.0);
    }

    #[test]
    fn off_a_terminal_a_status_is_new_until_shown() {
        let mut line = ProgressLine::new(false, OffTerminal::Quiet);
        assert!(line.is_new("sent 1 MiB"));
        line.show("sent 1 MiB");
        assert!(!line.is_new("sent 1 MiB"));
        assert!(line.is_new("sent 2 MiB"));
        // Nothing was drawn in place: nothing to end or erase.
        line.finish();
        line.clear();
    }
}
