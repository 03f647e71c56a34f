//! `soak`: many clients misbehaving at once for a while, against any reverse
//! server, with every reply checked and the server's fds and memory watched.
//!
//! ```text
//! soak --ports 8001,8002,8003,8004 --clients 50 --seconds 30
//! ```
//!
//! Each client thread loops until time is up, picking at random: a line and
//! its reply, binary junk, invalid UTF-8, NUL bytes, a lone newline, a
//! 64 KiB message, a reset in the middle of a message, a connect-and-close,
//! a client that says nothing for a moment, and a half-close after a line.
//! It never floods without reading: on a blocking server (stages 6 and 7)
//! that stalls everyone, which is Experiment 1, not a fault.
//!
//! The server whose fds and memory it watches is the process listening on
//! the first port (found in `/proc`), unless `--pid` names another.
//!
//! Long messages over a real network are checked less strictly than short
//! ones, since TCP may hand them to the server in pieces ([`check_reply`]).
//! When the server goes away, each client waits longer and longer between
//! attempts, and ten failed connections in a row end the whole run, which
//! then fails; only the first 20 errors are printed, the rest are counted.

use shared::cli::options_or_exit;
use shared::client::{Client, ReplyEnd};
use shared::oracle::{Rng, expected_reply};
use shared::procfs;
use shared::units::{format_bytes, parse_size};
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::RangeInclusive;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const USAGE: &str = "\
Usage: soak [--host HOST] [--ports P1,...] [--clients N] [--seconds T] [--pid PID]

Runs N clients for T seconds against the reverse server at HOST:PORTS with a
random mix of well-behaved and abrupt clients, checks every reply, and prints
what happened. It also compares the server's open fds and memory before and
after, and fails if fds leaked or memory grew too much: the server is the
process listening on the first port, found in /proc when HOST is this
machine's loopback address, or the process --pid names.

Options:
  --host HOST          server address (default 127.0.0.1)
  --ports P1,...       server ports (default 8001,8002,8003,8004)
  --clients N          client threads, 1 to 10000 (default 50)
  --seconds T          how long to run, 1 to 86400 (default 30)
  --pid PID            the server's process id, to watch its fds and memory
                       (default: the process listening on the first port)
  --max-rss-growth S   most the server's memory may grow (default 1M)
  --seed S             random seed (default: from the clock)
  -h, --help           print this help";

/// How long one reply may take before it counts as an error.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest run `--seconds` accepts: a day.
const MAX_SECONDS: u64 = 24 * 60 * 60;

/// The most client threads `--clients` accepts.
const MAX_CLIENTS: usize = 10_000;

/// Failed connections in a row after which a client decides the server is
/// gone and stops the whole run.
const MAX_CONNECT_FAILURES: u32 = 10;

/// A client's pause after its first failed connection in a row; it doubles
/// with each further failure, up to [`MAX_BACKOFF`]. Ten failures in a row
/// then take about 1.6 s.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);

/// The longest pause between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(320);

/// Errors printed one per line; any further ones are only counted.
const MAX_ERROR_LINES: u64 = 20;

/// The longest message certain to reach the server in one piece over a
/// real network: one TCP segment. Ethernet's 1500-byte MTU leaves 1448
/// bytes of data per segment after the IP and TCP headers, and tunnels and
/// PPPoE leave less; 1200 fits in any path that carries IPv6's minimum MTU
/// of 1280 bytes.
const WHOLE_OVER_NETWORK: usize = 1200;

/// The same over the loopback interface, whose MTU is 64 KiB: one send of up
/// to 16 KiB on a connection with nothing else in flight arrives whole.
const WHOLE_OVER_LOOPBACK: usize = 16 * 1024;

struct Options {
    host: String,
    ports: Vec<u16>,
    clients: usize,
    seconds: u64,
    pid: Option<u32>,
    max_rss_growth: u64,
    seed: u64,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let mut options = Options {
        host: "127.0.0.1".to_string(),
        ports: vec![8001, 8002, 8003, 8004],
        clients: 50,
        seconds: 30,
        pid: None,
        max_rss_growth: 1 << 20,
        seed,
    };
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(None);
        }
        let value =
            args.next().ok_or_else(|| format!("unknown option or missing value: '{arg}'"))?;
        match arg.as_str() {
            "--host" => options.host = value,
            "--ports" => {
                options.ports = value
                    .split(',')
                    .map(|p| number_in("--ports", p.trim(), 1..=u16::MAX))
                    .collect::<Result<_, _>>()?;
            }
            "--clients" => options.clients = number_in(&arg, &value, 1..=MAX_CLIENTS)?,
            "--seconds" => options.seconds = number_in(&arg, &value, 1..=MAX_SECONDS)?,
            "--pid" => options.pid = Some(number_in(&arg, &value, 1..=i32::MAX as u32)?),
            "--max-rss-growth" => options.max_rss_growth = parse_size(&value)?,
            "--seed" => options.seed = number_in(&arg, &value, 0..=u64::MAX)?,
            _ => return Err(format!("unknown option '{arg}'")),
        }
    }
    Ok(Some(options))
}

/// `value` as a number within `range`, or a one-line error naming `flag`.
fn number_in<T>(flag: &str, value: &str, range: RangeInclusive<T>) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    let bad =
        || format!("{flag}: '{value}' is not a number from {} to {}", range.start(), range.end());
    let number: T = value.parse().map_err(|_| bad())?;
    if range.contains(&number) { Ok(number) } else { Err(bad()) }
}

/// Counters shared by every client thread.
#[derive(Default)]
struct Tally {
    connections: AtomicU64,
    messages: AtomicU64,
    bytes: AtomicU64,
    verified: AtomicU64,
    errors: AtomicU64,
}

impl Tally {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// What every client thread shares: the counters, the end of the run, and
/// why the run stopped early if it did.
struct Run {
    tally: Tally,
    deadline: Instant,
    gave_up: OnceLock<String>,
}

impl Run {
    /// True once time is up or the run has been given up.
    fn is_over(&self) -> bool {
        Instant::now() >= self.deadline || self.gave_up.get().is_some()
    }

    /// Counts an error, and prints it if it is one of the first
    /// [`MAX_ERROR_LINES`]: a server that has gone away must not make soak
    /// print a line per attempt.
    fn error(&self, addr: SocketAddr, problem: &str) {
        let n = self.tally.errors.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= MAX_ERROR_LINES {
            eprintln!("soak: {addr}: {problem}");
        }
    }

    /// Stops every client, saying why (only the first reason is kept).
    fn give_up(&self, reason: String) {
        if self.gave_up.set(reason.clone()).is_ok() {
            eprintln!("soak: stopping early: {reason}");
        }
    }

    /// Sleeps for `wait`, or less if the run ends first.
    fn pause(&self, wait: Duration) {
        let until = Instant::now() + wait;
        while !self.is_over() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(20)));
        }
    }
}

/// One client's session: behaviours picked at random until the run is
/// over. After a failed connection it waits before the next attempt,
/// longer each time; after [`MAX_CONNECT_FAILURES`] in a row it gives up
/// the whole run, since the server is not there (any more).
fn client_loop(addrs: &[SocketAddr], seed: u64, run: &Run) {
    let mut rng = Rng::new(seed);
    let mut failures_in_a_row = 0;
    let mut backoff = FIRST_BACKOFF;
    while !run.is_over() {
        let addr = addrs[rng.below(addrs.len())];
        let client = match Client::try_connect_to(addr) {
            Ok(client) => client,
            Err(err) => {
                run.error(addr, &format!("connect failed: {err}"));
                failures_in_a_row += 1;
                if failures_in_a_row >= MAX_CONNECT_FAILURES {
                    run.give_up(format!(
                        "{failures_in_a_row} connections in a row failed, the last to {addr} \
                         ({err}): is the server running?"
                    ));
                    return;
                }
                run.pause(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        failures_in_a_row = 0;
        backoff = FIRST_BACKOFF;
        Tally::add(&run.tally.connections, 1);
        let whole_up_to =
            if addr.ip().is_loopback() { WHOLE_OVER_LOOPBACK } else { WHOLE_OVER_NETWORK };
        if let Err(problem) = one_behaviour(client, whole_up_to, &mut rng, &run.tally) {
            run.error(addr, &problem);
        }
    }
}

/// Sends `message` and checks the reply as [`check_reply`] says.
fn exchange(
    client: &mut Client,
    message: &[u8],
    whole_up_to: usize,
    tally: &Tally,
) -> Result<(), String> {
    client.try_send(message).map_err(|err| format!("send failed: {err}"))?;
    Tally::add(&tally.messages, 1);
    Tally::add(&tally.bytes, message.len() as u64);
    let reply = client.read_reply(message.len(), REPLY_TIMEOUT);
    if reply.end != ReplyEnd::Complete {
        return Err(format!(
            "{} of {} reply bytes, then {:?}",
            reply.bytes.len(),
            message.len(),
            reply.end
        ));
    }
    check_reply(message, &reply.bytes, whole_up_to)?;
    Tally::add(&tally.verified, 1);
    Ok(())
}

/// Checks a complete reply to `message` as far as it is certain.
///
/// TCP carries a stream of bytes, not messages: a message longer than one
/// segment may reach the server in several `recv()`s, and a correct server
/// reverses each piece on its own ("abcdef" read as "abc" then "def" comes
/// back as "cbafed"). So the rule is:
///
/// - a message of at most `whole_up_to` bytes is certain to arrive in one
///   piece ([`WHOLE_OVER_LOOPBACK`] on the loopback interface,
///   [`WHOLE_OVER_NETWORK`] elsewhere): its reply must be the oracle's,
///   byte for byte;
/// - for a longer message only what holds however it was split is checked:
///   the same length (checked by the caller), the same bytes in some order
///   (reversing a piece keeps its bytes), and a trailing `\n` still last
///   (it ends the last piece, and that piece's reverse keeps it last).
fn check_reply(message: &[u8], reply: &[u8], whole_up_to: usize) -> Result<(), String> {
    let start = String::from_utf8_lossy(&message[..message.len().min(40)]);
    if message.len() <= whole_up_to {
        if reply != expected_reply(message) {
            return Err(format!("wrong reply to {start:?}"));
        }
        return Ok(());
    }
    if byte_counts(reply) != byte_counts(message) {
        return Err(format!(
            "the reply to a {}-byte message starting {start:?} holds other bytes than the \
             message",
            message.len()
        ));
    }
    if message.ends_with(b"\n") && !reply.ends_with(b"\n") {
        return Err(format!(
            "the reply to a {}-byte message starting {start:?} does not end with its \\n",
            message.len()
        ));
    }
    Ok(())
}

/// How many times each byte value occurs in `bytes`.
fn byte_counts(bytes: &[u8]) -> [usize; 256] {
    let mut counts = [0; 256];
    for &byte in bytes {
        counts[usize::from(byte)] += 1;
    }
    counts
}

fn text_line(rng: &mut Rng, max: usize) -> Vec<u8> {
    rng.tester_message(max)
}

/// One behaviour, picked at random, on a fresh connection.
fn one_behaviour(
    mut client: Client,
    whole_up_to: usize,
    rng: &mut Rng,
    tally: &Tally,
) -> Result<(), String> {
    match rng.below(10) {
        // A well-behaved client: several lines and their replies.
        0..=3 => {
            for _ in 0..1 + rng.below(20) {
                exchange(&mut client, &text_line(rng, 200), whole_up_to, tally)?;
            }
        }
        // Binary junk, invalid UTF-8, NUL bytes, a lone newline.
        4 => {
            let len = 1 + rng.below(8 * 1024);
            let junk = rng.bytes(len);
            exchange(&mut client, &junk, whole_up_to, tally)?;
            exchange(&mut client, b"\xff\xfe\xc3(\n", whole_up_to, tally)?;
            exchange(&mut client, b"nul\0in\0the\0middle\n", whole_up_to, tally)?;
            exchange(&mut client, b"\n", whole_up_to, tally)?;
        }
        // A large message: 64 KiB.
        5 => exchange(&mut client, &rng.bytes(64 * 1024), whole_up_to, tally)?,
        // A reset in the middle of a message.
        6 => {
            let _ = client.try_send(b"this message is cut sh");
            client.reset();
        }
        // Connect and close at once, like a port scanner.
        7 => drop(client),
        // Connect and say nothing for a moment.
        8 => std::thread::sleep(Duration::from_millis(20 + rng.below(200) as u64)),
        // A line, then a half-close: the reply must still come.
        _ => {
            let line = text_line(rng, 100);
            client.try_send(&line).map_err(|err| format!("send failed: {err}"))?;
            client.shutdown_write();
            Tally::add(&tally.messages, 1);
            Tally::add(&tally.bytes, line.len() as u64);
            let reply = client.read_reply(line.len(), REPLY_TIMEOUT);
            if reply.end != ReplyEnd::Complete {
                return Err(format!(
                    "half-closed client got {} of {} reply bytes, then {:?}",
                    reply.bytes.len(),
                    line.len(),
                    reply.end
                ));
            }
            check_reply(&line, &reply.bytes, whole_up_to)
                .map_err(|problem| format!("half-closed client: {problem}"))?;
            Tally::add(&tally.verified, 1);
        }
    }
    Ok(())
}

/// Which process to watch: `--pid`, or else the one listening on the
/// first port, when the server is on this machine's loopback interface (a
/// port of another host says nothing about a process here). Says which pid
/// it watches, or why none.
fn server_pid(options: &Options, addrs: &[SocketAddr]) -> Option<u32> {
    if let Some(pid) = options.pid {
        println!("soak: watching pid {pid}, as --pid says");
        return Some(pid);
    }
    let not_watching = "not watching the server's fds and memory";
    if !addrs.iter().all(|addr| addr.ip().is_loopback()) {
        println!(
            "soak: {} is not this machine's loopback: {not_watching} (--pid names it)",
            options.host
        );
        return None;
    }
    let port = options.ports[0];
    match procfs::pid_listening_on(port) {
        Ok(Some(pid)) => {
            println!("soak: watching pid {pid}, the process listening on port {port}");
            Some(pid)
        }
        Ok(None) => {
            println!(
                "soak: no process we can see listens on port {port}: {not_watching} (--pid \
                 names it)"
            );
            None
        }
        Err(err) => {
            println!("soak: cannot read /proc/net/tcp ({err}): {not_watching}");
            None
        }
    }
}

/// The server's open fds and memory, if we know its pid.
fn snapshot(pid: Option<u32>) -> Option<(usize, u64)> {
    let pid = pid?;
    Some((procfs::open_fds(pid).ok()?, procfs::rss_bytes(pid).ok()?))
}

fn main() -> ExitCode {
    let options = match options_or_exit("soak", USAGE, parse_args(std::env::args().skip(1))) {
        Ok(options) => options,
        Err(status) => return status,
    };
    let addrs: Result<Vec<SocketAddr>, String> = options
        .ports
        .iter()
        .map(|&port| {
            (options.host.as_str(), port)
                .to_socket_addrs()
                .map_err(|err| err.to_string())?
                .next()
                .ok_or_else(|| format!("'{}' has no address", options.host))
        })
        .collect();
    let addrs = match addrs {
        Ok(addrs) => addrs,
        Err(message) => {
            eprintln!("soak: cannot resolve {}: {message}", options.host);
            return ExitCode::from(2);
        }
    };
    let pid = server_pid(&options, &addrs);
    if let Some(pid) = pid
        && snapshot(Some(pid)).is_none()
    {
        eprintln!("soak: cannot read /proc for pid {pid}");
        return ExitCode::from(2);
    }
    let before = snapshot(pid);
    println!(
        "soak: {} clients for {} s against {} port(s) {:?} (seed {})",
        options.clients, options.seconds, options.host, options.ports, options.seed
    );

    let started = Instant::now();
    let run = Run {
        tally: Tally::default(),
        deadline: started + Duration::from_secs(options.seconds),
        gave_up: OnceLock::new(),
    };
    std::thread::scope(|scope| {
        for i in 0..options.clients {
            let (addrs, run) = (&addrs, &run);
            let seed = options.seed.wrapping_add(i as u64 * 0x9e37_79b9);
            let spawned = std::thread::Builder::new()
                .spawn_scoped(scope, move || client_loop(addrs, seed, run));
            if let Err(err) = spawned {
                run.give_up(format!("cannot start client thread {}: {err}", i + 1));
                break;
            }
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let tally = &run.tally;
    let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let errors = get(&tally.errors);
    if errors > MAX_ERROR_LINES {
        eprintln!("soak: ... and {} more errors", errors - MAX_ERROR_LINES);
    }
    println!("connections     {}", get(&tally.connections));
    println!(
        "messages        {} ({:.0}/s)",
        get(&tally.messages),
        get(&tally.messages) as f64 / elapsed
    );
    println!("bytes sent      {}", format_bytes(get(&tally.bytes)));
    println!("verified        {}", get(&tally.verified));
    println!("errors          {errors}");

    let mut healthy = errors == 0;
    if let Some(reason) = run.gave_up.get() {
        println!("soak: FAIL: stopped after {elapsed:.1} of {} s: {reason}", options.seconds);
        healthy = false;
    }
    if let (Some(pid), Some((fds_before, rss_before))) = (pid, before) {
        // The server sees the last clients leave a moment after we do.
        let mut after = snapshot(Some(pid));
        let settle = Instant::now() + Duration::from_secs(3);
        while after.is_some_and(|(fds, _)| fds != fds_before) && Instant::now() < settle {
            std::thread::sleep(Duration::from_millis(20));
            after = snapshot(Some(pid));
        }
        match after {
            Some((fds_after, rss_after)) => {
                let growth = rss_after.saturating_sub(rss_before);
                println!("server fds      {fds_before} before, {fds_after} after");
                println!(
                    "server RSS      {} before, {} after (growth {})",
                    format_bytes(rss_before),
                    format_bytes(rss_after),
                    format_bytes(growth)
                );
                if fds_after != fds_before {
                    println!("soak: FAIL: the server's fd count did not come back");
                    healthy = false;
                }
                if growth > options.max_rss_growth {
                    println!(
                        "soak: FAIL: the server's memory grew by more than {}",
                        format_bytes(options.max_rss_growth)
                    );
                    healthy = false;
                }
            }
            None => {
                println!("soak: FAIL: the server (pid {pid}) is gone");
                healthy = false;
            }
        }
    }
    if errors > 0 {
        println!("soak: FAIL: {errors} unexpected errors");
    }
    if healthy {
        println!("soak: ok");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_message_must_get_the_exact_reply() {
        assert_eq!(check_reply(b"abc\n", b"cba\n", 1200), Ok(()));
        assert!(check_reply(b"abc\n", b"\ncba", 1200).is_err());
        assert!(check_reply(b"abc\n", b"bca\n", 1200).is_err());
    }

    #[test]
    fn a_long_message_may_come_back_reversed_in_pieces() {
        let message: Vec<u8> = (0..3000u32).map(|i| b'a' + (i % 26) as u8).chain([b'\n']).collect();
        let (first, second) = message.split_at(1000);
        let mut in_pieces = expected_reply(first);
        in_pieces.extend(expected_reply(second));
        assert_eq!(check_reply(&message, &expected_reply(&message), 1200), Ok(()));
        assert_eq!(check_reply(&message, &in_pieces, 1200), Ok(()));
        // On loopback the same message arrives whole: pieces are wrong there.
        assert!(check_reply(&message, &in_pieces, 16 * 1024).is_err());

        let mut newline_first = message.clone();
        newline_first.reverse();
        assert!(check_reply(&message, &newline_first, 1200).is_err());
        let mut other_bytes = expected_reply(&message);
        other_bytes[5] = b'#';
        assert!(check_reply(&message, &other_bytes, 1200).is_err());
    }
}
