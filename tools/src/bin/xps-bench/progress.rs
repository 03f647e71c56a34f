//! The live progress line on stderr, redrawn on every tick.

use std::io::{self, Write};
use std::time::Instant;

/// The live progress line on stderr; drawn only on a terminal.
pub(crate) struct Progress {
    on_terminal: bool,
    line_open: bool,
    /// Replies and time when the rate was last measured, and that rate.
    mark: (u64, Instant),
    rate: f64,
}

impl Progress {
    pub(crate) fn new(on_terminal: bool) -> Progress {
        Progress { on_terminal, line_open: false, mark: (0, Instant::now()), rate: 0.0 }
    }

    /// Replies per second, measured over half a second or more.
    pub(crate) fn rate(&mut self, replies: u64, now: Instant) -> f64 {
        let (mark_replies, mark_time) = self.mark;
        let span = now.duration_since(mark_time).as_secs_f64();
        if span >= 0.5 {
            self.rate = replies.saturating_sub(mark_replies) as f64 / span;
            self.mark = (replies, now);
        }
        self.rate
    }

    pub(crate) fn draw(&mut self, status: &str) {
        if self.on_terminal {
            eprint!("\r\x1b[K{status}");
            let _ = io::stderr().flush();
            self.line_open = true;
        }
    }

    pub(crate) fn clear(&mut self) {
        if self.line_open {
            eprint!("\r\x1b[K");
            self.line_open = false;
        }
    }
}
