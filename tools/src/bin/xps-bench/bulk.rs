//! The bulk mode (`--bulk SIZE`): one connection sends SIZE bytes and
//! reads them back at the same time, through a server that writes back
//! (stage 10) or a proxy in front of one (stage 11, nginx, haproxy). It
//! measures the rate, checks every byte that comes back, and, with
//! `--pid`, samples that process's resident memory all along: a proxy
//! that holds what it forwards grows with the transfer, one that bounds
//! its buffers does not.
//!
//! One thread, one non-blocking socket, `poll()` for both directions: it
//! writes while the socket takes bytes and reads while bytes come, so the
//! server is never waiting for the generator in either direction.

use crate::{Options, cpu_time};
use shared::memory::{Rss, RssSampler};
use shared::oracle::Rng;
use shared::units::format_bytes;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// What is sent: this many random bytes, over and over. Not a power of
/// two, so that a chunk lost or repeated (a whole number of pages, say)
/// shifts the stream against the pattern and shows.
const PERIOD: usize = (1 << 20) - 3;

/// The most one `send()` offers, and one `recv()` takes.
const CHUNK: usize = 256 * 1024;

/// The longest a transfer may take in all, however it progresses.
const MAX_TIME: Duration = Duration::from_secs(600);

/// What one bulk transfer did.
#[derive(Debug)]
pub(crate) struct BulkReport {
    /// Bytes to send, and to get back.
    pub(crate) size: u64,
    pub(crate) sent: u64,
    pub(crate) received: u64,
    /// From the first byte sent to the last byte read back (or the error).
    pub(crate) took: Duration,
    /// What went wrong, if anything did.
    pub(crate) error: Option<String>,
    /// The memory of the `--pid` process, if one was named and `/proc`
    /// could be read.
    pub(crate) rss: Option<Rss>,
    /// Why the memory was not measured, when a process was named.
    pub(crate) rss_error: Option<String>,
    /// CPU time the generator used over the transfer, over its length.
    pub(crate) cpu_share: f64,
}

impl BulkReport {
    /// Mebibytes per second, sent and read back (each byte counted once).
    pub(crate) fn mib_per_s(&self) -> f64 {
        let secs = self.took.as_secs_f64();
        if secs > 0.0 { self.received as f64 / (1 << 20) as f64 / secs } else { 0.0 }
    }

    pub(crate) fn print(&self, options: &Options) {
        println!(
            "xps-bench: {}:{}, bulk: {} sent and read back at once, on one connection",
            options.host,
            options.port,
            format_bytes(self.size)
        );
        println!(
            "transfer:  {} of {} back in {:.2} s: {:.1} MiB/s",
            format_bytes(self.received),
            format_bytes(self.size),
            self.took.as_secs_f64(),
            self.mib_per_s()
        );
        println!("errors:    {}", u8::from(self.error.is_some()));
        if let Some(error) = &self.error {
            println!("first error: {error}");
        }
        let kib = |bytes: u64| bytes / 1024;
        let mut memory = String::new();
        match (&self.rss, &self.rss_error) {
            (Some(rss), _) => {
                println!(
                    "memory:    pid {}: {} before, {} at most: grew by {} ({} samples)",
                    options.pid.unwrap_or_default(),
                    format_bytes(rss.baseline),
                    format_bytes(rss.peak),
                    format_bytes(rss.growth()),
                    rss.samples
                );
                memory = format!(
                    " rss_before_kib={} rss_peak_kib={} rss_growth_kib={}",
                    kib(rss.baseline),
                    kib(rss.peak),
                    kib(rss.growth())
                );
            }
            (None, Some(why)) => println!("memory:    not measured: {why}"),
            (None, None) => {}
        }
        println!("cpu:       xps-bench used {:.0}% of one core", self.cpu_share * 100.0);
        println!(
            "result: bulk_bytes={} sent={} received={} seconds={:.3} mib_per_s={:.1} errors={}{memory} \
             cpu_pct={:.1}",
            self.size,
            self.sent,
            self.received,
            self.took.as_secs_f64(),
            self.mib_per_s(),
            u8::from(self.error.is_some()),
            self.cpu_share * 100.0
        );
    }
}

/// The bytes of the endless stream that is sent, by position.
struct Pattern {
    block: Vec<u8>,
}

impl Pattern {
    fn new() -> Pattern {
        Pattern { block: Rng::new(0x5eed_b01c).bytes(PERIOD) }
    }

    /// The bytes at `offset`, at most `len` of them (fewer where the block
    /// wraps round).
    fn at(&self, offset: u64, len: usize) -> &[u8] {
        let start = (offset % PERIOD as u64) as usize;
        let end = (start + len).min(PERIOD);
        &self.block[start..end]
    }

    /// Where `bytes`, read at `offset` of the stream, first differ from
    /// the pattern, if they do.
    fn first_mismatch(&self, offset: u64, bytes: &[u8]) -> Option<u64> {
        let mut checked = 0;
        while checked < bytes.len() {
            let expected = self.at(offset + checked as u64, bytes.len() - checked);
            let got = &bytes[checked..checked + expected.len()];
            if got != expected {
                let at = got.iter().zip(expected).position(|(a, b)| a != b).unwrap_or(0);
                return Some(offset + (checked + at) as u64);
            }
            checked += expected.len();
        }
        None
    }
}

/// Connects to `addr`, then sends `size` bytes and reads them back at
/// once, sampling the memory of `pid` if given.
pub(crate) fn run(options: &Options, addr: SocketAddr, size: u64) -> Result<BulkReport, String> {
    let stream = TcpStream::connect_timeout(&addr, options.timeout)
        .map_err(|err| format!("connect to {addr}: {err}"))?;
    let _ = stream.set_nodelay(true);
    stream.set_nonblocking(true).map_err(|err| format!("O_NONBLOCK: {err}"))?;
    let pattern = Pattern::new();
    let (sampler, rss_error) = match options.pid.map(RssSampler::start) {
        Some(Ok(sampler)) => (Some(sampler), None),
        Some(Err(err)) => (None, Some(format!("/proc/{}: {err}", options.pid.unwrap_or(0)))),
        None => (None, None),
    };
    let cpu_at_start = cpu_time();
    let started = Instant::now();
    let mut report = BulkReport {
        size,
        sent: 0,
        received: 0,
        took: Duration::ZERO,
        error: None,
        rss: None,
        rss_error,
        cpu_share: 0.0,
    };
    report.error = transfer(&stream, &pattern, size, options.timeout, &mut report).err();
    report.took = started.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_at_start);
    report.cpu_share = cpu.as_secs_f64() / report.took.as_secs_f64().max(1e-9);
    if let Some(sampler) = sampler {
        match sampler.finish() {
            Ok(rss) => report.rss = Some(rss),
            Err(err) => report.rss_error = Some(err.to_string()),
        }
    }
    Ok(report)
}

/// The transfer itself: counts into `report.sent` and `report.received`,
/// and fails at the first wrong byte, an early close or an error, or when
/// nothing moved for `stall`.
fn transfer(
    stream: &TcpStream,
    pattern: &Pattern,
    size: u64,
    stall: Duration,
    report: &mut BulkReport,
) -> Result<(), String> {
    let deadline = Instant::now() + MAX_TIME;
    let mut buffer = vec![0; CHUNK];
    let mut last_progress = Instant::now();
    let (mut reader, mut writer) = (stream, stream);
    while report.received < size {
        let now = Instant::now();
        if now.duration_since(last_progress) > stall {
            return Err(format!(
                "nothing moved for {:.1} s (sent {}, got back {})",
                stall.as_secs_f64(),
                report.sent,
                report.received
            ));
        }
        if now > deadline {
            return Err(format!("not done in {} s", MAX_TIME.as_secs()));
        }
        let want_write = report.sent < size;
        wait(stream, want_write, Duration::from_millis(100))?;
        // As much as the socket takes.
        while report.sent < size {
            let left = usize::try_from(size - report.sent).unwrap_or(usize::MAX).min(CHUNK);
            match writer.write(pattern.at(report.sent, left)) {
                Ok(n) => {
                    report.sent += n as u64;
                    last_progress = Instant::now();
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(format!("send() after {} bytes: {err}", report.sent)),
            }
        }
        // As much as has come.
        while report.received < size {
            match reader.read(&mut buffer) {
                Ok(0) => {
                    return Err(format!(
                        "closed by the server after {} of {size} bytes came back",
                        report.received
                    ));
                }
                Ok(n) => {
                    let extra = (report.received + n as u64).saturating_sub(size);
                    if extra > 0 {
                        return Err(format!("{extra} bytes more came back than were sent"));
                    }
                    if let Some(at) = pattern.first_mismatch(report.received, &buffer[..n]) {
                        return Err(format!("byte {at} came back wrong"));
                    }
                    report.received += n as u64;
                    last_progress = Instant::now();
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    return Err(format!("recv() after {} bytes: {err}", report.received));
                }
            }
        }
    }
    Ok(())
}

/// Waits at most `timeout` until `stream` can be read, or written if
/// `want_write`.
fn wait(stream: &TcpStream, want_write: bool, timeout: Duration) -> Result<(), String> {
    let mut events = libc::POLLIN;
    if want_write {
        events |= libc::POLLOUT;
    }
    let mut poll = libc::pollfd { fd: stream.as_raw_fd(), events, revents: 0 };
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `poll` is one valid pollfd that outlives the call, and the
    // count passed is 1.
    let ret = unsafe { libc::poll(&raw mut poll, 1, timeout_ms) };
    if ret == -1 {
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(format!("poll(): {err}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Shutdown, TcpListener};
    use std::thread;

    #[test]
    fn the_pattern_wraps_round_and_a_shift_shows() {
        let pattern = Pattern::new();
        let offset = PERIOD as u64 - 10;
        let mut stream = pattern.at(offset, 100).to_vec();
        assert_eq!(stream.len(), 10, "a slice stops where the block wraps");
        stream.extend_from_slice(pattern.at(offset + 10, 90));
        assert_eq!(pattern.first_mismatch(offset, &stream), None);
        stream[50] ^= 1;
        assert_eq!(pattern.first_mismatch(offset, &stream), Some(offset + 50));
        // A page's worth lost: everything after it is out of step.
        let block = pattern.at(0, 8192).to_vec();
        assert!(pattern.first_mismatch(4096, &block[..4096]).is_some());
    }

    /// An echo on 127.0.0.1 for one connection; `damage` may change what
    /// it writes back.
    fn echo_once(damage: fn(&mut [u8], u64)) -> SocketAddr {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buffer = vec![0; 65536];
            let mut offset = 0;
            loop {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        damage(&mut buffer[..n], offset);
                        offset += n as u64;
                        if stream.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = stream.shutdown(Shutdown::Both);
        });
        addr
    }

    fn options() -> Options {
        Options { timeout: Duration::from_secs(5), ..Options::default() }
    }

    #[test]
    fn a_transfer_through_an_echo_comes_back_whole() {
        let addr = echo_once(|_, _| {});
        let size = 3 * PERIOD as u64 + 12345;
        let report = run(&options(), addr, size).unwrap();
        assert_eq!(report.error, None);
        assert_eq!((report.sent, report.received), (size, size));
        assert!(report.mib_per_s() > 0.0);
        assert!(report.rss.is_none() && report.rss_error.is_none());
    }

    #[test]
    fn a_wrong_byte_is_an_error_that_says_where() {
        let addr = echo_once(|bytes, offset| {
            let at = 2_000_000_u64.wrapping_sub(offset);
            if let Some(byte) = usize::try_from(at).ok().and_then(|at| bytes.get_mut(at)) {
                *byte ^= 0x20;
            }
        });
        let report = run(&options(), addr, 4 << 20).unwrap();
        assert_eq!(report.error.as_deref(), Some("byte 2000000 came back wrong"));
    }

    #[test]
    fn memory_is_sampled_when_a_process_is_named() {
        let addr = echo_once(|_, _| {});
        let options = Options { pid: Some(std::process::id()), ..options() };
        let report = run(&options, addr, 1 << 20).unwrap();
        assert_eq!(report.error, None);
        let rss = report.rss.expect("the memory of this very process");
        assert!(rss.baseline > 0 && rss.samples >= 1);
    }
}
