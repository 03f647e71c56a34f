//! Running the `sender` tool from a test, the way a learner runs it with
//! `sender < huge_file.dat`: its stdin fed from a bounded stream, its
//! stderr read with a deadline, and the process killed when dropped.

use crate::capture::{Captured, Drain};
use crate::child::Process;
use std::io::Write;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

/// How much a flood feeds at most: far more than any stall needs.
pub const MAX_FEED_MIB: usize = 256;

/// A running sender, flooding a server. Dropping it kills the sender.
#[derive(Debug)]
pub struct Flood {
    process: Process,
    /// What it prints on stderr, as it comes (its stall reports end
    /// their lines only when the stall does).
    stderr: Captured,
}

impl Flood {
    /// Starts `sender --port PORT` and feeds it up to [`MAX_FEED_MIB`] MiB.
    /// The feeder blocks once the sender stops taking more, and ends when
    /// the sender exits (its stdin pipe breaks).
    pub fn start(sender: &Path, port: u16) -> Flood {
        let mut process = Process::spawn(
            Command::new(sender)
                .args(["--port", &port.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        );
        if let Some(mut stdin) = process.take_stdin() {
            std::thread::spawn(move || {
                let chunk = vec![b'x'; 1 << 20];
                for _ in 0..MAX_FEED_MIB {
                    if stdin.write_all(&chunk).is_err() {
                        break;
                    }
                }
            });
        }
        let stderr = process.capture_stderr(Drain { partial_lines: true, ..Drain::default() });
        Flood { process, stderr }
    }

    /// Everything it has printed on stderr so far.
    pub fn seen(&self) -> String {
        self.stderr.text()
    }

    /// Reads stderr until it contains `needle` or `timeout` passes, and
    /// returns all of it so far.
    pub fn read_until(&mut self, needle: &str, timeout: Duration) -> String {
        self.read_until_seen(timeout, |seen| seen.contains(needle))
    }

    /// Reads stderr until the sender reports a stall of at least `seconds`
    /// (`stalled for N s` with N >= `seconds`: on a busy machine a second
    /// can go by without a report) or `timeout` passes. Returns all of
    /// stderr so far.
    pub fn read_until_stalled_for(&mut self, seconds: u64, timeout: Duration) -> String {
        self.read_until_seen(timeout, |seen| longest_stall(seen) >= Some(seconds))
    }

    /// Waits until what stderr has printed so far satisfies `done`, or
    /// `timeout` passes (or stderr closes); returns all of it so far.
    fn read_until_seen(&mut self, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        self.stderr.wait_for(timeout, done).unwrap_or_else(|seen| seen)
    }

    /// Waits up to `timeout` for the sender to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.process.wait_exit(timeout)
    }
}

/// The longest stall the sender has reported in `stderr`, in seconds.
pub fn longest_stall(stderr: &str) -> Option<u64> {
    stderr
        .split("stalled for ")
        .skip(1)
        .filter_map(|rest| rest.split(' ').next()?.parse().ok())
        .max()
}
