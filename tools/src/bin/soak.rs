//! `soak`: many clients misbehaving at once for a while, against the server
//! of any stage, with every reply checked and the server's fds and memory
//! watched.
//!
//! ```text
//! soak --ports 8001,8002,8003,8004 --clients 50 --seconds 30
//! soak --stage 6 --ports 9001 --seconds 10
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
//! Replies are checked against the stage's protocol; long messages to a
//! reverse server over a real network less strictly than short ones, since
//! TCP may hand them to the server in pieces ([`check_reply`]). When the
//! server goes away, each client waits longer and longer between
//! attempts, and ten failed connections in a row end the whole run, which
//! then fails; only the first 20 errors are printed, the rest are counted.
//!
//! A run ends at most [`END_GRACE`] after `--seconds`, however slow the
//! server: no exchange starts once the time is up, the ones under way get
//! [`CLIENT_GRACE`] to finish (a reply still missing then is an error), and
//! the server's fd count what is left of the grace to come back.

use shared::checks::show;
use shared::cli::{Args, options_or_exit, resolve, unknown};
use shared::client::{Client, ReplyEnd, connect_first};
use shared::oracle::Rng;
use shared::procfs;
use shared::stages::{self, Protocol, Stage};
use shared::units::format_bytes;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The usage, with the stages this workspace has.
fn usage() -> String {
    let stages = stages::numbers_in_words();
    format!(
        "\
Usage: soak [--stage N] [--host HOST] [--ports P1,...] [--clients C] [--seconds T]
            [--pid PID] [--max-rss-growth S] [--seed S]

Runs C clients for T seconds against the server of stage N at HOST:PORTS
with a random mix of well-behaved and abrupt clients, checks every reply
(reversed up to stage 9, written back from stage 10), and prints what
happened. It also compares the server's open fds and memory before and
after, and fails if fds leaked or memory grew too much: the server is the
process listening on the first port, found in /proc when HOST is this
machine's loopback address, or the process --pid names. However slow the
server, a run ends at most {grace} s after T.

Options:
  --stage N            the stage whose replies to expect: {stages} (default 7)
  --host HOST          server address (default 127.0.0.1; a name is tried at
                       each of its addresses, IPv4 first)
  --ports P1,...       server ports, 1 to 65535 (default 8001,8002,8003,8004)
  --clients C          client threads, 1 to 10000 (default 50)
  --seconds T          how long to run, 1 to 86400 (default 30)
  --pid PID            the server's process id, to watch its fds and memory
                       (default: the process listening on the first port)
  --max-rss-growth S   most the server's memory may grow (default 1M)
  --seed S             random seed (default: from the clock)
  -h, --help           print this help",
        grace = END_GRACE.as_secs()
    )
}

/// How long one reply may take before it counts as an error.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long after `--seconds` the exchanges under way may take to finish.
/// No exchange starts once the time is up, and every wait is cut at this
/// grace, so a slow server cannot stretch the run: a reply still missing
/// then counts as an error. A right server on loopback answers in
/// milliseconds.
const CLIENT_GRACE: Duration = Duration::from_secs(2);

/// How long after [`CLIENT_GRACE`] soak still waits for a client to end:
/// a client whose wait was cut at the grace needs a moment to count it.
const LAST_WORD: Duration = Duration::from_millis(500);

/// How long after `--seconds` a run may go on in all: [`CLIENT_GRACE`] and
/// [`LAST_WORD`] for the clients, then what is left for the server's fd
/// count to come back.
const END_GRACE: Duration = Duration::from_secs(3);

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
    stage: &'static Stage,
    host: String,
    ports: Vec<u16>,
    clients: usize,
    seconds: u64,
    pid: Option<u32>,
    max_rss_growth: u64,
    seed: u64,
}

fn parse_args<S: AsRef<str>>(args: impl IntoIterator<Item = S>) -> Result<Option<Options>, String> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let mut options = Options {
        stage: stages::stage(7).expect("stage 7 is in the table"),
        host: "127.0.0.1".to_string(),
        ports: vec![8001, 8002, 8003, 8004],
        clients: 50,
        seconds: 30,
        pid: None,
        max_rss_growth: 1 << 20,
        seed,
    };
    let mut args = Args::new(args);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--stage" => options.stage = args.stage(&flag)?,
            "--host" => options.host = args.value(&flag)?,
            "--ports" => options.ports = args.ports(&flag)?,
            "--clients" => options.clients = args.number(&flag, 1..=MAX_CLIENTS)?,
            "--seconds" => options.seconds = args.number(&flag, 1..=MAX_SECONDS)?,
            "--pid" => options.pid = Some(args.number(&flag, 1..=i32::MAX as u32)?),
            "--max-rss-growth" => options.max_rss_growth = args.size(&flag)?,
            "--seed" => options.seed = args.number(&flag, 0..=u64::MAX)?,
            _ => return Err(unknown(&flag)),
        }
    }
    Ok(Some(options))
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

/// What every client thread shares: what a right server replies, the
/// counters, the end of the run, why the run stopped early if it did, and
/// how many clients are still running.
struct Run {
    protocol: Protocol,
    tally: Tally,
    /// When `--seconds` are up: no exchange starts after it.
    deadline: Instant,
    /// The deadline plus [`CLIENT_GRACE`]: no client waits past it.
    end: Instant,
    gave_up: OnceLock<String>,
    running: Mutex<usize>,
    client_ended: Condvar,
}

impl Run {
    /// True once time is up or the run has been given up.
    fn is_over(&self) -> bool {
        Instant::now() >= self.deadline || self.gave_up.get().is_some()
    }

    /// How long the next wait for the server may take: `limit`, cut at the
    /// end of the grace.
    fn wait(&self, limit: Duration) -> Duration {
        limit.min(self.end.saturating_duration_since(Instant::now()))
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

    /// Waits until every client thread has ended, or until the end of the
    /// grace and [`LAST_WORD`], whichever comes first; returns how many are
    /// still running then (each stuck in a `connect()` the server does not
    /// complete, which has a limit of its own; the process's exit ends
    /// them).
    fn wait_for_clients(&self) -> usize {
        let until = self.end + LAST_WORD;
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        while *running > 0 {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            running =
                self.client_ended.wait_timeout(running, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        *running
    }
}

/// Counts a client thread as ended when dropped, even by a panic.
struct Running(Arc<Run>);

impl Drop for Running {
    fn drop(&mut self) {
        *self.0.running.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        self.0.client_ended.notify_all();
    }
}

/// One client's session: behaviours picked at random until the run is
/// over. After a failed connection it waits before the next attempt,
/// longer each time; after [`MAX_CONNECT_FAILURES`] in a row it gives up
/// the whole run, since the server is not there (any more).
fn client_loop(addrs: &[Vec<SocketAddr>], seed: u64, run: &Run) {
    let mut rng = Rng::new(seed);
    let mut failures_in_a_row = 0;
    let mut backoff = FIRST_BACKOFF;
    while !run.is_over() {
        let port = &addrs[rng.below(addrs.len())];
        let (client, addr) = match connect_first(port, Client::try_connect_to) {
            Ok(connected) => connected,
            Err(unreachable) => {
                // The port's first address starts every error line: name
                // each address in the error only when there were several.
                let addr = port[0];
                let err = match unreachable.0.as_slice() {
                    [(_, only)] => only.to_string(),
                    _ => unreachable.to_string(),
                };
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
        if let Err(problem) = one_behaviour(client, whole_up_to, &mut rng, run) {
            run.error(addr, &problem);
        }
    }
}

/// Sends `message` within the time left, counting it.
fn send(client: &mut Client, message: &[u8], run: &Run) -> Result<(), String> {
    let wait = run.wait(REPLY_TIMEOUT);
    // A zero write timeout is refused: no time left is a failed send.
    if wait.is_zero() || client.stream().set_write_timeout(Some(wait)).is_err() {
        return Err(format!(
            "a message could not be sent by the end of the run ({} s after --seconds)",
            CLIENT_GRACE.as_secs()
        ));
    }
    client.try_send(message).map_err(|err| format!("send failed: {err}"))?;
    Tally::add(&run.tally.messages, 1);
    Tally::add(&run.tally.bytes, message.len() as u64);
    Ok(())
}

/// Waits for the reply to `message` (as many bytes as it has, with either
/// protocol), at most [`REPLY_TIMEOUT`] and never past the grace, and
/// checks it as [`check_reply`] says.
fn receive(
    client: &mut Client,
    message: &[u8],
    whole_up_to: usize,
    run: &Run,
) -> Result<(), String> {
    let wait = run.wait(REPLY_TIMEOUT);
    let reply = client.read_reply(message.len(), wait);
    if reply.end == ReplyEnd::TimedOut && wait < REPLY_TIMEOUT {
        return Err(format!(
            "no reply by the end of the run ({} s after --seconds): {} of {} reply bytes came",
            CLIENT_GRACE.as_secs(),
            reply.bytes.len(),
            message.len()
        ));
    }
    if reply.end != ReplyEnd::Complete {
        return Err(format!(
            "{} of {} reply bytes, then {:?}",
            reply.bytes.len(),
            message.len(),
            reply.end
        ));
    }
    check_reply(run.protocol, message, &reply.bytes, whole_up_to)?;
    Tally::add(&run.tally.verified, 1);
    Ok(())
}

/// Sends `message` and checks its reply, unless time is up: no exchange
/// starts then.
fn exchange(
    client: &mut Client,
    message: &[u8],
    whole_up_to: usize,
    run: &Run,
) -> Result<(), String> {
    if run.is_over() {
        return Ok(());
    }
    send(client, message, run)?;
    receive(client, message, whole_up_to, run)
}

/// Checks a complete reply to `message` as far as it is certain.
///
/// TCP carries a stream of bytes, not messages: a message longer than one
/// segment may reach the server in several `recv()`s, and the server
/// answers each piece on its own. A write-back server's pieces put
/// together are the message again, so its reply must be the message, byte
/// for byte, however it was split. A reverse server reverses each piece
/// ("abcdef" read as "abc" then "def" comes back as "cbafed"). So for a
/// reverse server the rule is:
///
/// - a message of at most `whole_up_to` bytes is certain to arrive in one
///   piece ([`WHOLE_OVER_LOOPBACK`] on the loopback interface,
///   [`WHOLE_OVER_NETWORK`] elsewhere): its reply must be the protocol's,
///   byte for byte;
/// - for a longer message only what holds however it was split is checked:
///   the same length (checked by the caller), the same bytes in some order
///   (reversing a piece keeps its bytes), and a trailing `\n` still last
///   (it ends the last piece, and that piece's reverse keeps it last).
fn check_reply(
    protocol: Protocol,
    message: &[u8],
    reply: &[u8],
    whole_up_to: usize,
) -> Result<(), String> {
    if reply == protocol.reply(message) {
        return Ok(());
    }
    let may_be_split = match protocol {
        Protocol::Reverse => message.len() > whole_up_to,
        Protocol::WriteBack => false,
    };
    if !may_be_split {
        return Err(format!("wrong reply to {}: got {}", show(message), show(reply)));
    }
    let size = message.len();
    let start = show(&message[..size.min(40)]);
    if byte_counts(reply) != byte_counts(message) {
        return Err(format!(
            "the reply to a {size}-byte message starting {start} holds other bytes than the \
             message"
        ));
    }
    if message.ends_with(b"\n") && !reply.ends_with(b"\n") {
        return Err(format!(
            "the reply to a {size}-byte message starting {start} does not end with its \\n"
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

/// One behaviour, picked at random, on a fresh connection. Once the time is
/// up it starts no new exchange.
fn one_behaviour(
    mut client: Client,
    whole_up_to: usize,
    rng: &mut Rng,
    run: &Run,
) -> Result<(), String> {
    match rng.below(10) {
        // A well-behaved client: several lines and their replies.
        0..=3 => {
            for _ in 0..1 + rng.below(20) {
                exchange(&mut client, &rng.tester_message(200), whole_up_to, run)?;
            }
        }
        // Binary junk, invalid UTF-8, NUL bytes, a lone newline.
        4 => {
            let len = 1 + rng.below(8 * 1024);
            let junk = rng.bytes(len);
            exchange(&mut client, &junk, whole_up_to, run)?;
            exchange(&mut client, b"\xff\xfe\xc3(\n", whole_up_to, run)?;
            exchange(&mut client, b"nul\0in\0the\0middle\n", whole_up_to, run)?;
            exchange(&mut client, b"\n", whole_up_to, run)?;
        }
        // A large message: 64 KiB.
        5 => exchange(&mut client, &rng.bytes(64 * 1024), whole_up_to, run)?,
        // A reset in the middle of a message.
        6 => {
            let _ = client.try_send(b"this message is cut sh");
            client.reset();
        }
        // Connect and close at once, like a port scanner.
        7 => drop(client),
        // Connect and say nothing for a moment.
        8 => run.pause(Duration::from_millis(20 + rng.below(200) as u64)),
        // A line, then a half-close: the reply must still come.
        _ => {
            if run.is_over() {
                return Ok(());
            }
            let line = rng.tester_message(100);
            send(&mut client, &line, run)?;
            client.shutdown_write();
            receive(&mut client, &line, whole_up_to, run)
                .map_err(|problem| format!("half-closed client: {problem}"))?;
        }
    }
    Ok(())
}

/// Which process to watch: `--pid`, or else the one listening on the
/// first port, when the server is on this machine's loopback interface (a
/// port of another host says nothing about a process here). Says which pid
/// it watches, or why none.
fn server_pid(options: &Options, addrs: &[Vec<SocketAddr>]) -> Option<u32> {
    if let Some(pid) = options.pid {
        println!("soak: watching pid {pid}, as --pid says");
        return Some(pid);
    }
    let not_watching = "not watching the server's fds and memory";
    if !addrs.iter().flatten().all(|addr| addr.ip().is_loopback()) {
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
    let parsed = parse_args(std::env::args().skip(1));
    let options = match options_or_exit("soak", &usage(), parsed) {
        Ok(options) => options,
        Err(status) => return status,
    };
    let addrs = match resolve(&options.host, &options.ports) {
        Ok(addrs) => Arc::new(addrs),
        Err(message) => {
            eprintln!("soak: {message}");
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
        "soak: {} clients for {} s against stage {} ({}) on {} port(s) {:?} (seed {})",
        options.clients,
        options.seconds,
        options.stage.number,
        options.stage.protocol.name(),
        options.host,
        options.ports,
        options.seed
    );

    let started = Instant::now();
    let deadline = started + Duration::from_secs(options.seconds);
    let run = Arc::new(Run {
        protocol: options.stage.protocol,
        tally: Tally::default(),
        deadline,
        end: deadline + CLIENT_GRACE,
        gave_up: OnceLock::new(),
        running: Mutex::new(0),
        client_ended: Condvar::new(),
    });
    // Detached threads, not scoped ones: a scope would wait for every
    // client however long its last wait takes, and the run must end on
    // time (see `wait_for_clients`).
    for i in 0..options.clients {
        let (addrs, running) = (Arc::clone(&addrs), Running(Arc::clone(&run)));
        *run.running.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        let seed = options.seed.wrapping_add(i as u64 * 0x9e37_79b9);
        let spawned = std::thread::Builder::new().spawn(move || {
            client_loop(&addrs, seed, &running.0);
            drop(running);
        });
        if let Err(err) = spawned {
            // The closure was dropped unrun, and `running` with it.
            run.give_up(format!("cannot start client thread {}: {err}", i + 1));
            break;
        }
    }
    let stuck = run.wait_for_clients();
    let elapsed = started.elapsed().as_secs_f64();
    let tally = &run.tally;
    let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    if stuck > 0 {
        // Each is in a connect() the server has not completed: the only
        // wait of a client that has a limit (5 s) but not the grace.
        eprintln!(
            "soak: {stuck} clients were still waiting for the server to accept them {:.1} s \
             after --seconds",
            (CLIENT_GRACE + LAST_WORD).as_secs_f64()
        );
        Tally::add(&tally.errors, stuck as u64);
    }
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
        // The server sees the last clients leave a moment after we do: give
        // it what is left of the grace.
        let mut after = snapshot(Some(pid));
        let settle = deadline + END_GRACE;
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

    const REVERSE: Protocol = Protocol::Reverse;

    #[test]
    fn a_short_message_must_get_the_exact_reply() {
        assert_eq!(check_reply(REVERSE, b"abc\n", b"cba\n", 1200), Ok(()));
        assert!(check_reply(REVERSE, b"abc\n", b"\ncba", 1200).is_err());
        assert!(check_reply(REVERSE, b"abc\n", b"bca\n", 1200).is_err());
        assert_eq!(check_reply(Protocol::WriteBack, b"abc\n", b"abc\n", 1200), Ok(()));
        assert!(check_reply(Protocol::WriteBack, b"abc\n", b"cba\n", 1200).is_err());
    }

    #[test]
    fn a_long_message_may_come_back_reversed_in_pieces() {
        let message: Vec<u8> = (0..3000u32).map(|i| b'a' + (i % 26) as u8).chain([b'\n']).collect();
        let (first, second) = message.split_at(1000);
        let mut in_pieces = REVERSE.reply(first);
        in_pieces.extend(REVERSE.reply(second));
        assert_eq!(check_reply(REVERSE, &message, &REVERSE.reply(&message), 1200), Ok(()));
        assert_eq!(check_reply(REVERSE, &message, &in_pieces, 1200), Ok(()));
        // On loopback the same message arrives whole: pieces are wrong there.
        assert!(check_reply(REVERSE, &message, &in_pieces, 16 * 1024).is_err());

        let mut newline_first = message.clone();
        newline_first.reverse();
        assert!(check_reply(REVERSE, &message, &newline_first, 1200).is_err());
        let mut other_bytes = REVERSE.reply(&message);
        other_bytes[5] = b'#';
        assert!(check_reply(REVERSE, &message, &other_bytes, 1200).is_err());
    }

    #[test]
    fn a_long_message_written_back_must_come_back_exactly_however_split() {
        let message: Vec<u8> = (0..3000u32).map(|i| b'a' + (i % 26) as u8).chain([b'\n']).collect();
        let write_back = Protocol::WriteBack;
        assert_eq!(check_reply(write_back, &message, &message, 1200), Ok(()));
        // The same bytes in another order pass for a reverse server split
        // in pieces, never for a write-back one.
        let (first, second) = message.split_at(1000);
        let mut in_pieces = REVERSE.reply(first);
        in_pieces.extend(REVERSE.reply(second));
        assert!(check_reply(write_back, &message, &in_pieces, 1200).is_err());
    }
}
