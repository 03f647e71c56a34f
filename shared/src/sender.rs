//! Running the `sender` tool from a test, the way a learner runs it with
//! `sender < huge_file.dat`: its stdin fed from a bounded stream, its
//! stderr read with a deadline, and the process killed when dropped.

use crate::wait::child_exit;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// How much a flood feeds at most: far more than any stall needs.
pub const MAX_FEED_MIB: usize = 256;

/// A running sender, flooding a server.
#[derive(Debug)]
pub struct Flood {
    child: Child,
    stderr: Receiver<Vec<u8>>,
    /// Everything it has printed on stderr so far.
    pub seen: String,
}

impl Flood {
    /// Starts `sender --port PORT` and feeds it up to [`MAX_FEED_MIB`] MiB.
    /// The feeder blocks once the sender stops taking more, and ends when
    /// the sender exits (its stdin pipe breaks).
    pub fn start(sender: &Path, port: u16) -> Flood {
        let mut child = Command::new(sender)
            .args(["--port", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", sender.display()));
        if let Some(mut stdin) = child.stdin.take() {
            std::thread::spawn(move || {
                let chunk = vec![b'x'; 1 << 20];
                for _ in 0..MAX_FEED_MIB {
                    if stdin.write_all(&chunk).is_err() {
                        break;
                    }
                }
            });
        }
        let (sink, stderr) = mpsc::channel();
        if let Some(mut pipe) = child.stderr.take() {
            std::thread::spawn(move || {
                let mut buf = [0; 4096];
                while let Ok(n @ 1..) = pipe.read(&mut buf) {
                    if sink.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            });
        }
        Flood { child, stderr, seen: String::new() }
    }

    /// Reads stderr until it contains `needle` or `timeout` passes, and
    /// returns all of it so far.
    pub fn read_until(&mut self, needle: &str, timeout: Duration) -> &str {
        self.read_until_seen(timeout, |seen| seen.contains(needle))
    }

    /// Reads stderr until the sender reports a stall of at least `seconds`
    /// (`stalled for N s` with N >= `seconds`: on a busy machine a second
    /// can go by without a report) or `timeout` passes. Returns all of
    /// stderr so far.
    pub fn read_until_stalled_for(&mut self, seconds: u64, timeout: Duration) -> &str {
        self.read_until_seen(timeout, |seen| longest_stall(seen) >= Some(seconds))
    }

    /// Reads stderr until what it has printed so far satisfies `done`, or
    /// `timeout` passes (or stderr closes); returns all of it so far.
    fn read_until_seen(&mut self, timeout: Duration, done: impl Fn(&str) -> bool) -> &str {
        let deadline = Instant::now() + timeout;
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(bytes) => self.seen.push_str(&String::from_utf8_lossy(&bytes)),
                Err(_) => break,
            }
        }
        &self.seen
    }

    /// Waits up to `timeout` for the sender to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        child_exit(&mut self.child, timeout)
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

impl Drop for Flood {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
