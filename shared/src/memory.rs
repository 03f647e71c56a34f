//! A server's memory under clients that send without reading: the pieces
//! the `memory-bound` check, the stage-10 tests and the `xps-flood` tool
//! share, so that all three measure the same thing the same way.
//!
//! * [`Outgoing`]: what a client sends, bytes that do not repeat for a MiB
//!   (so a reordering shows), with the count and digest of what the
//!   kernel took.
//! * [`Flood`]: sending it without reading, until the writes stall (the
//!   server stopped reading), a limit, or a condition the caller gives.
//! * [`RssSampler`]: the server's resident memory, read from `/proc` every
//!   [`SAMPLE_EVERY`] on a thread of its own while a flood runs.
//! * [`flood_watching`]: the two together, stopping as soon as the memory
//!   has grown past a bound.
//! * [`Fnv1a`] and [`drain`]: what comes back, counted and digested, to
//!   compare with what was sent.
//! * [`palindrome`]: short messages that every protocol sends back as
//!   they are.
//!
//! Every loop here ends at a deadline, and the sampler's thread ends when
//! the sampler is dropped.

use crate::client::ReplyEnd;
use crate::oracle::{ALPHANUMERIC, Rng};
use crate::procfs;
use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One mebibyte, for sizes in this module and its callers.
pub const MIB: u64 = 1 << 20;

/// How often the sampler reads the server's memory: often enough that a
/// flood is stopped within a few MiB of passing a bound, and cheap (one
/// read of `/proc/PID/status` costs tens of microseconds).
pub const SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// The longest a sampler samples, however long it lives.
const SAMPLE_AT_MOST: Duration = Duration::from_secs(3600);

/// How long one write may block before the flood looks at its limits
/// again (the stall time, if that is shorter).
const TICK: Duration = Duration::from_millis(50);

/// The 64-bit FNV-1a hash: a digest of a byte stream, fed in pieces of any
/// size, enough to tell whether two streams are the same (not a defence
/// against anyone forging one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fnv1a(u64);

impl Fnv1a {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    /// The digest of no bytes.
    pub const fn new() -> Fnv1a {
        Fnv1a(Fnv1a::OFFSET_BASIS)
    }

    /// Adds `bytes` to the stream digested so far.
    pub fn update(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(Fnv1a::PRIME);
        }
    }

    /// The digest of everything added so far.
    pub fn value(self) -> u64 {
        self.0
    }
}

impl Default for Fnv1a {
    fn default() -> Fnv1a {
        Fnv1a::new()
    }
}

/// The bytes every flood sends, in a loop: built once, then only sliced,
/// so that a flood costs the client nothing per byte. (The tests run
/// unoptimised; a byte-by-byte generator held a client to 12 MiB/s.)
///
/// Random letters and digits, so bytes that come back out of order change
/// the digest, with one byte in 4096 that is not UTF-8, as in most binary
/// files. That mix is the cheapest for the servers to handle, so a flood
/// is over sooner: they print each chunk they receive with its control
/// bytes escaped (four characters for one byte), and up to stage 9 they
/// reverse a chunk that is not UTF-8 byte by byte, several times faster
/// than by character. The length is odd, so it lines up with no buffer
/// size: two chunks swapped in transit could look the same only if they
/// were a multiple of it apart, over a MiB.
fn pattern() -> &'static [u8] {
    const LEN: usize = (1 << 20) + 7;
    const NOT_UTF8_EVERY: usize = 4096;
    static PATTERN: OnceLock<Vec<u8>> = OnceLock::new();
    PATTERN.get_or_init(|| {
        let mut rng = Rng::new(0x5eed);
        (0..LEN)
            .map(|i| {
                if i % NOT_UTF8_EVERY == 0 {
                    0xff
                } else {
                    ALPHANUMERIC[rng.below(ALPHANUMERIC.len())]
                }
            })
            .collect()
    })
}

/// What a flooding client sends (see `pattern`), and a record of how
/// many of those bytes the kernel took, and, where asked for, their
/// digest. A write the kernel took only part of is finished first by the
/// next one, so the record is of one unbroken stream, across several
/// floods on the same connection.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Where in the pattern the next byte is.
    at: usize,
    sent: u64,
    digest: Option<Fnv1a>,
}

impl Outgoing {
    /// A stream that starts at a place in the pattern chosen by `seed`, so
    /// that clients with different seeds send different bytes.
    pub fn new(seed: u64) -> Outgoing {
        let at = (seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) % pattern().len() as u64) as usize;
        Outgoing { at, sent: 0, digest: None }
    }

    /// The same stream, with a digest of what is sent: it costs the client
    /// a few nanoseconds a byte, so only the floods that compare what
    /// comes back ask for it.
    pub fn digested(seed: u64) -> Outgoing {
        Outgoing { digest: Some(Fnv1a::new()), ..Outgoing::new(seed) }
    }

    /// How many bytes the kernel has taken so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// The digest of those bytes, if this stream keeps one.
    pub fn digest(&self) -> Option<Fnv1a> {
        self.digest
    }

    /// The next bytes to write, at most `size` of them (fewer where the
    /// pattern starts over).
    fn pending(&self, size: usize) -> &'static [u8] {
        let pattern = pattern();
        &pattern[self.at..pattern.len().min(self.at + size)]
    }

    /// Records that the kernel took the next `n` pending bytes.
    fn took(&mut self, n: usize) {
        let pattern = pattern();
        if let Some(digest) = &mut self.digest {
            digest.update(&pattern[self.at..self.at + n]);
        }
        self.at = (self.at + n) % pattern.len();
        self.sent += n as u64;
    }
}

/// Why a [`Flood`] stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// No byte went out for the stall time: the server stopped reading
    /// (backpressure, or a server blocked elsewhere).
    Stalled,
    /// The caller's condition held (say, the memory passed a bound).
    Asked,
    /// The byte limit was reached: the server kept reading.
    Bytes,
    /// The time limit came first: the server kept reading.
    Time,
    /// The server closed or reset the connection (the error).
    Gone(String),
}

/// What one [`Flood::run`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloodRun {
    /// The bytes the kernel took in this run.
    pub sent: u64,
    /// Why it stopped.
    pub stop: Stop,
    /// How long it took.
    pub took: Duration,
}

/// A flood: a client sends without reading, in writes of `write_size`
/// bytes, until one of the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flood {
    /// The most bytes to send.
    pub max_bytes: u64,
    /// The longest to send for.
    pub max_time: Duration,
    /// How long without a byte going out counts as a stall.
    pub stall: Duration,
    /// Bytes per write. Small writes make many small chunks on the
    /// server's side only if the socket has `TCP_NODELAY` set (the
    /// workspace's `Client` does).
    pub write_size: usize,
}

impl Flood {
    /// Up to `max_bytes` in 64 KiB writes, for at most `max_time`, with a
    /// stall after 300 ms without progress.
    pub fn new(max_bytes: u64, max_time: Duration) -> Flood {
        Flood { max_bytes, max_time, stall: Duration::from_millis(300), write_size: 64 * 1024 }
    }

    /// Sends `out`'s next bytes on `stream`, never reading, until a limit
    /// is reached or `stop_when` returns true (it is asked before every
    /// write, so it must be cheap). `stream`'s write timeout is changed
    /// for the run and put back after it.
    pub fn run(
        &self,
        stream: &TcpStream,
        out: &mut Outgoing,
        stop_when: impl Fn() -> bool,
    ) -> FloodRun {
        let old_timeout = stream.write_timeout().ok().flatten();
        // A bounded wait per write, so that the limits are looked at often
        // however slow the server; a zero timeout would mean none at all.
        let tick = self.stall.min(TICK).max(Duration::from_millis(1));
        let _ = stream.set_write_timeout(Some(tick));
        let mut writer = stream;
        let started = Instant::now();
        let mut progress = started;
        let mut sent = 0;
        let stop = loop {
            if sent >= self.max_bytes {
                break Stop::Bytes;
            }
            if stop_when() {
                break Stop::Asked;
            }
            let now = Instant::now();
            if now.duration_since(started) >= self.max_time {
                break Stop::Time;
            }
            if now.duration_since(progress) >= self.stall {
                break Stop::Stalled;
            }
            let left = usize::try_from(self.max_bytes - sent).unwrap_or(usize::MAX);
            let pending = out.pending(self.write_size.max(1));
            let pending = &pending[..pending.len().min(left)];
            match writer.write(pending) {
                Ok(0) => break Stop::Gone("a write sent nothing".to_string()),
                Ok(n) => {
                    out.took(n);
                    sent += n as u64;
                    progress = Instant::now();
                }
                // A write timeout: nothing went out for one tick.
                Err(err)
                    if matches!(
                        err.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(err) => break Stop::Gone(err.to_string()),
            }
        };
        let _ = stream.set_write_timeout(old_timeout);
        FloodRun { sent, stop, took: started.elapsed() }
    }
}

/// What the sampler saw of a process's resident memory (VmRSS), in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rss {
    /// Before the sampling began.
    pub baseline: u64,
    /// The most seen since.
    pub peak: u64,
    /// The last seen.
    pub last: u64,
    /// How many samples were taken.
    pub samples: usize,
}

impl Rss {
    /// How far the memory rose above the baseline at its highest.
    pub fn growth(&self) -> u64 {
        self.peak.saturating_sub(self.baseline)
    }
}

/// What the sampler's thread shares with it.
#[derive(Debug, Default)]
struct Samples {
    peak: AtomicU64,
    last: AtomicU64,
    count: AtomicUsize,
    stop: AtomicBool,
    /// Why a read of `/proc` failed (the process has gone, say).
    failed: Mutex<Option<String>>,
}

/// Reads a process's VmRSS every [`SAMPLE_EVERY`] on a thread of its own,
/// and keeps the highest value: a peak between two samples far apart would
/// be missed, so the samples are taken while the flood runs, not after.
/// The thread ends when the sampler is finished or dropped.
#[derive(Debug)]
pub struct RssSampler {
    pid: u32,
    baseline: u64,
    samples: Arc<Samples>,
    thread: Option<JoinHandle<()>>,
}

impl RssSampler {
    /// Takes process `pid`'s memory now as the baseline, and starts
    /// sampling.
    pub fn start(pid: u32) -> io::Result<RssSampler> {
        let baseline = procfs::rss_bytes(pid)?;
        let samples = Arc::new(Samples::default());
        samples.peak.store(baseline, Ordering::Relaxed);
        samples.last.store(baseline, Ordering::Relaxed);
        let shared = Arc::clone(&samples);
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            // Until stopped; and in any case not past a limit, should a
            // sampler be leaked rather than dropped.
            while !shared.stop.load(Ordering::Relaxed) && started.elapsed() < SAMPLE_AT_MOST {
                match procfs::rss_bytes(pid) {
                    Ok(rss) => record(&shared, rss),
                    Err(err) => {
                        let mut failed = shared.failed.lock().unwrap_or_else(|p| p.into_inner());
                        *failed = Some(err.to_string());
                        return;
                    }
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
        });
        Ok(RssSampler { pid, baseline, samples, thread: Some(thread) })
    }

    /// The memory before sampling began.
    pub fn baseline(&self) -> u64 {
        self.baseline
    }

    /// How far the memory has risen above the baseline at its highest so
    /// far.
    pub fn growth(&self) -> u64 {
        self.samples.peak.load(Ordering::Relaxed).saturating_sub(self.baseline)
    }

    /// Stops sampling, takes one last sample, and says what was seen; an
    /// error if `/proc` could not be read (the process has gone).
    pub fn finish(mut self) -> io::Result<Rss> {
        self.stop_thread();
        if let Some(why) = self.samples.failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(io::Error::other(format!("reading the memory of pid {}: {why}", self.pid)));
        }
        record(&self.samples, procfs::rss_bytes(self.pid)?);
        Ok(Rss {
            baseline: self.baseline,
            peak: self.samples.peak.load(Ordering::Relaxed),
            last: self.samples.last.load(Ordering::Relaxed),
            samples: self.samples.count.load(Ordering::Relaxed),
        })
    }

    fn stop_thread(&mut self) {
        self.samples.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// Adds one sample.
fn record(samples: &Samples, rss: u64) {
    samples.peak.fetch_max(rss, Ordering::Relaxed);
    samples.last.store(rss, Ordering::Relaxed);
    samples.count.fetch_add(1, Ordering::Relaxed);
}

/// A flood and the server's memory during it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// What the flood did.
    pub run: FloodRun,
    /// What the server's memory did, from just before the flood.
    pub rss: Rss,
}

/// Runs `flood` on `stream` while sampling the memory of process `pid`,
/// from just before the flood to just after it. With `stop_above`, the
/// flood stops as soon as the memory has grown by more than that: enough
/// to show that it grows, without making a server that queues everything
/// take gigabytes. An error if `/proc` could not be read.
pub fn flood_watching(
    stream: &TcpStream,
    pid: u32,
    flood: &Flood,
    out: &mut Outgoing,
    stop_above: Option<u64>,
) -> io::Result<Watched> {
    let sampler = RssSampler::start(pid)?;
    let run = flood.run(stream, out, || stop_above.is_some_and(|bound| sampler.growth() > bound));
    let rss = sampler.finish()?;
    Ok(Watched { run, rss })
}

/// `text` (ASCII), the same backwards, and a newline: a line that comes
/// back as it went both from a server that writes back and from one that
/// reverses. The memory check and tests exchange only such lines, so that
/// they judge a server's memory whatever it replies (the other checks
/// judge that), and can be run against stage 9's binary as stage 10.
pub fn palindrome(text: &str) -> Vec<u8> {
    let mut line = text.as_bytes().to_vec();
    line.extend(text.bytes().rev());
    line.push(b'\n');
    line
}

/// What [`drain`] read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// How many bytes.
    pub bytes: u64,
    /// Their digest.
    pub digest: Fnv1a,
    /// How the reading ended.
    pub end: ReplyEnd,
}

/// Reads from `stream` until `want` bytes have come, the server closes or
/// fails the connection, or `limit` passes, keeping only their count and
/// digest (a flood's echo may be far too big to keep).
pub fn drain(stream: &TcpStream, want: u64, limit: Duration) -> Received {
    let deadline = Instant::now() + limit;
    let old_timeout = stream.read_timeout().ok().flatten();
    let mut reader = stream;
    let mut buffer = vec![0; 256 * 1024];
    let mut received = Received { bytes: 0, digest: Fnv1a::new(), end: ReplyEnd::Complete };
    while received.bytes < want {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            received.end = ReplyEnd::TimedOut;
            break;
        }
        let room = usize::try_from(want - received.bytes).unwrap_or(usize::MAX).min(buffer.len());
        match reader.read(&mut buffer[..room]) {
            Ok(0) => {
                received.end = ReplyEnd::Closed;
                break;
            }
            Ok(n) => {
                received.digest.update(&buffer[..n]);
                received.bytes += n as u64;
            }
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                received.end = ReplyEnd::TimedOut;
                break;
            }
            Err(err) => {
                received.end = ReplyEnd::Failed(err.to_string());
                break;
            }
        }
    }
    let _ = stream.set_read_timeout(old_timeout);
    received
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener};

    #[test]
    fn a_palindrome_is_its_own_reply_in_both_protocols() {
        use crate::stages::Protocol;
        let line = palindrome("ping 12");
        assert_eq!(line, b"ping 1221 gnip\n");
        for protocol in [Protocol::Reverse, Protocol::WriteBack] {
            assert_eq!(protocol.reply(&line), line);
        }
    }

    #[test]
    fn fnv1a_matches_the_published_values() {
        // From the FNV reference test suite.
        assert_eq!(Fnv1a::new().value(), 0xcbf2_9ce4_8422_2325);
        let mut digest = Fnv1a::new();
        digest.update(b"a");
        assert_eq!(digest.value(), 0xaf63_dc4c_8601_ec8c);
        let mut whole = Fnv1a::new();
        whole.update(b"foobar");
        assert_eq!(whole.value(), 0x8594_4171_f739_67e8);
        // Fed in pieces, the same.
        let mut pieces = Fnv1a::new();
        pieces.update(b"foo");
        pieces.update(b"");
        pieces.update(b"bar");
        assert_eq!(pieces, whole);
    }

    #[test]
    fn the_outgoing_stream_is_not_one_byte_and_order_changes_its_digest() {
        let mut out = Outgoing::digested(1);
        let first = out.pending(64).to_vec();
        assert_eq!(first.len(), 64);
        assert!(first.iter().any(|&b| b != first[0]), "{first:?}");
        // A partial write: the rest comes first next time.
        out.took(10);
        assert_eq!(out.pending(54), &first[10..]);
        out.took(54);
        let second = out.pending(64).to_vec();
        out.took(64);
        assert_eq!(out.sent(), 128);
        let mut in_order = Fnv1a::new();
        in_order.update(&first);
        in_order.update(&second);
        assert_eq!(out.digest(), Some(in_order));
        let mut swapped = Fnv1a::new();
        swapped.update(&second);
        swapped.update(&first);
        assert_ne!(out.digest(), Some(swapped));
        // Other seeds, other bytes; and no digest unless asked for.
        let other = Outgoing::new(2);
        assert_ne!(other.pending(64), &first[..]);
        assert_eq!(other.digest(), None);
        // The pattern starts over at its end.
        let mut near_end = Outgoing::new(0);
        near_end.at = pattern().len() - 3;
        assert_eq!(near_end.pending(64).len(), 3);
        near_end.took(3);
        assert_eq!(near_end.pending(64), &pattern()[..64]);
    }

    /// A listener that accepts and never reads: a flood stalls; and a
    /// thread that sends back what it reads: the digests match.
    #[test]
    fn a_flood_stalls_where_nobody_reads_and_an_echo_comes_back_whole() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let flood = Flood { stall: Duration::from_millis(100), ..Flood::new(1 << 30, TICK * 40) };
        let run = flood.run(&stream, &mut Outgoing::new(2), || false);
        assert_eq!(run.stop, Stop::Stalled, "{run:?}");
        assert!(run.sent > 0);

        let echo = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = echo.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut client, _) = echo.accept().unwrap();
            client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buffer = [0; 4096];
            while let Ok(n @ 1..) = client.read(&mut buffer) {
                if client.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        });
        let stream = TcpStream::connect(addr).unwrap();
        let reader = stream.try_clone().unwrap();
        let reading = std::thread::spawn(move || drain(&reader, 1 << 20, Duration::from_secs(5)));
        let mut out = Outgoing::digested(3);
        let run = Flood::new(1 << 20, Duration::from_secs(5)).run(&stream, &mut out, || false);
        assert_eq!(run.stop, Stop::Bytes, "{run:?}");
        let received = reading.join().unwrap();
        assert_eq!(received.end, ReplyEnd::Complete);
        assert_eq!((received.bytes, Some(received.digest)), (out.sent(), out.digest()));
        drop(stream);
        server.join().unwrap();
    }

    #[test]
    fn the_sampler_sees_this_process_grow() {
        let sampler = RssSampler::start(std::process::id()).unwrap();
        // 16 MiB touched page by page: resident, not just reserved.
        let held = vec![1u8; 16 << 20];
        let seen = crate::wait::wait_until(Duration::from_secs(2), || sampler.growth() >= 8 * MIB);
        let rss = sampler.finish().unwrap();
        assert!(seen, "{rss:?}");
        assert!(rss.samples >= 1 && rss.peak >= rss.baseline);
        drop(held);
    }
}
