//! `xps-bench`: a ping-pong load generator for any reverse server.
//!
//! ```text
//! xps-bench                                  10 clients on 127.0.0.1:8001 for 5 s
//! xps-bench --conns 100 --idle 10000 --seconds 3
//! xps-bench --port 8002 --msg-size 512
//! ```
//!
//! It first opens `--idle` connections that it never uses, then `--conns`
//! active ones. Each active connection sends a line of `--msg-size` bytes,
//! reads the whole reply, checks it is the exact reverse, and sends the next
//! line. Once every active connection has had its first reply, it counts
//! for `--seconds`, then prints messages per second, latency percentiles
//! and errors, and a last `result:` line of `key=value` pairs for scripts.
//!
//! All the sockets are non-blocking and served by one epoll loop in one
//! thread, so that the generator costs far less than the server it loads:
//! the `cpu` figure it prints says how much of a core it used.

use shared::oracle::{Rng, expected_reply};
use std::fmt::Write as _;
use std::io::{self, IsTerminal, Read, Write};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

const USAGE: &str = "\
Usage: xps-bench [--host HOST] [--port PORT] [--conns K] [--idle I]
                 [--seconds S] [--msg-size M] [--timeout T]

Loads a reverse server with K clients that each send an M-byte line, wait
for its reverse and send the next, after opening I clients that never send.
Prints msgs/s, latency and errors, then one line of key=value pairs:
  result: msgs_per_s=... p50_us=... p99_us=... max_us=... errors=... ...
Exits with status 0 only if there were no errors and at least one message.

Options:
  --host HOST      server address (default 127.0.0.1)
  --port PORT      server port (default 8001)
  --conns K        active connections (default 10)
  --idle I         connections opened first and never used (default 0)
  --seconds S      how long to measure, after the warm-up (default 5)
  --msg-size M     bytes per message, newline included, 1 to 65536
                   (default 64); a server that gets a long message in
                   pieces reverses each piece, so keep it small
  --timeout T      seconds a reply may take before it counts as an error
                   (default 3)
  -h, --help       print this help";

/// How many connections may be in the middle of their handshake at once.
const CONNECT_WINDOW: usize = 64;

/// New connections per second: where the pace starts, its floor and its
/// ceiling. A server accepts one client at a time, and the kernel queues
/// only `backlog` (64 for the stage servers) finished handshakes for it;
/// beyond that it drops the client's SYN, and the client sends it again
/// only a second later. So connections are opened at a pace, which slows
/// down when handshakes stall and speeds up while they do not.
const CONNECT_RATE: (f64, f64, f64) = (10_000.0, 200.0, 100_000.0);

/// A handshake that takes this long has probably had its SYN dropped.
const HANDSHAKE_STALL: Duration = Duration::from_millis(250);

/// How long one connection may take to be established.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often deadlines are checked and the progress line redrawn.
const TICK: Duration = Duration::from_millis(100);

/// The most events one `epoll_wait()` returns.
const MAX_EVENTS: usize = 1024;

/// What the line of each message is made of.
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

#[derive(Debug, Clone, PartialEq)]
struct Options {
    host: String,
    port: u16,
    conns: usize,
    idle: usize,
    seconds: f64,
    msg_size: usize,
    timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            host: "127.0.0.1".to_string(),
            port: 8001,
            conns: 10,
            idle: 0,
            seconds: 5.0,
            msg_size: 64,
            timeout: Duration::from_secs(3),
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options::default();
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--host" => options.host = value("--host")?,
            "--port" => options.port = number(&value("--port")?, "a port", 1, 65535)?,
            "--conns" => options.conns = number(&value("--conns")?, "a count", 1, 100_000)?,
            "--idle" => options.idle = number(&value("--idle")?, "a count", 0, 1_000_000)?,
            "--msg-size" => options.msg_size = number(&value("--msg-size")?, "a size", 1, 65536)?,
            "--seconds" => options.seconds = seconds(&value("--seconds")?, 3600.0)?,
            "--timeout" => {
                options.timeout = Duration::from_secs_f64(seconds(&value("--timeout")?, 60.0)?)
            }
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    Ok(Some(options))
}

/// Parses a whole number in `min..=max`; `what` names it in the error.
fn number<T: TryFrom<u64>>(text: &str, what: &str, min: u64, max: u64) -> Result<T, String> {
    let bad = || format!("'{text}' is not {what} from {min} to {max}");
    let value: u64 = text.parse().map_err(|_| bad())?;
    if !(min..=max).contains(&value) {
        return Err(bad());
    }
    T::try_from(value).map_err(|_| bad())
}

/// Parses a number of seconds, more than 0 and at most `max`.
fn seconds(text: &str, max: f64) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value > 0.0 && value <= max => Ok(value),
        _ => Err(format!("'{text}' is not a number of seconds above 0 and up to {max}")),
    }
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("xps-bench: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(report) => {
            report.print(&options);
            if report.errors() == 0 && report.msgs > 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(message) => {
            eprintln!("xps-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves the address, makes room for the sockets, and runs the loop.
fn run(options: &Options) -> Result<Report, String> {
    let addr = (options.host.as_str(), options.port)
        .to_socket_addrs()
        .map_err(|err| format!("cannot resolve '{}': {err}", options.host))?
        .next()
        .ok_or_else(|| format!("'{}' has no address", options.host))?;
    // Every connection is a file descriptor; leave a few for stdio and epoll.
    let needed = (options.conns + options.idle + 16) as u64;
    let limit = raise_fd_limit().map_err(|err| format!("cannot raise the fd limit: {err}"))?;
    if limit < needed {
        return Err(format!(
            "{} connections need about {needed} file descriptors, but the hard limit is \
             {limit}; raise it (ulimit -Hn, or LimitNOFILE) or open fewer",
            options.conns + options.idle
        ));
    }
    let mut bench = Bench::new(options, addr).map_err(|err| format!("epoll_create1(): {err}"))?;
    bench.run().map_err(|err| format!("epoll_wait(): {err}"))?;
    Ok(bench.report())
}

/// Raises the soft limit on open files to the hard limit, and returns it.
fn raise_fd_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid rlimit that outlives the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == -1 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `limit` is a valid rlimit that outlives the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

// ---------------------------------------------------------------------------
// Connections

/// What a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Opened and then left alone.
    Idle,
    /// Sends a message, waits for its reverse, sends the next.
    Active,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `connect()` is in progress.
    Connecting,
    /// An idle connection, established.
    Idle,
    /// Part of the message is still to be sent.
    Sending,
    /// The message is sent; part of the reply is still to come.
    Receiving,
    /// Closed, after an error or at the end.
    Closed,
}

/// The kinds of error counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// A reply that is not the reverse of the message.
    Wrong,
    /// The server closed or reset the connection.
    Reset,
    /// A reply or a handshake that did not come in time.
    Timeout,
    /// The connection could not be opened.
    Connect,
}

struct Conn {
    /// `None` once closed (dropping it closes the socket, which also takes
    /// it out of the epoll set).
    stream: Option<TcpStream>,
    role: Role,
    state: State,
    /// When the handshake or the current message started.
    started: Instant,
    rng: Rng,
    message: Vec<u8>,
    /// How much of `message` has been sent.
    sent: usize,
    reply: Vec<u8>,
    /// Correct replies received on this connection.
    replies: u64,
}

/// Latencies in nanoseconds, in buckets about 1.5% wide (log-linear, as an
/// HDR histogram): constant memory however long the run.
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

/// Sub-buckets per power of two.
const SUB_BUCKETS: u64 = 64;

impl Histogram {
    fn new() -> Histogram {
        Histogram { counts: vec![0; bucket_of(u64::MAX) + 1], total: 0, max: 0 }
    }

    fn record(&mut self, nanos: u64) {
        self.counts[bucket_of(nanos)] += 1;
        self.total += 1;
        self.max = self.max.max(nanos);
    }

    /// The smallest value at or above which lies the fraction `1 - q` of the
    /// samples, rounded up to its bucket's upper end (and at most the max).
    fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (bucket, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return bucket_high(bucket).min(self.max);
            }
        }
        self.max
    }
}

/// The bucket of `value`: exact below 128, then 64 per power of two.
fn bucket_of(value: u64) -> usize {
    if value < 2 * SUB_BUCKETS {
        return value as usize;
    }
    let shift = 63 - value.leading_zeros() as u64 - 6;
    let mantissa = value >> shift; // 64..128
    ((shift + 1) * SUB_BUCKETS + mantissa - SUB_BUCKETS) as usize
}

/// The largest value in `bucket`.
fn bucket_high(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    if bucket < 2 * SUB_BUCKETS {
        return bucket;
    }
    let shift = bucket / SUB_BUCKETS - 1;
    let mantissa = bucket % SUB_BUCKETS + SUB_BUCKETS;
    ((mantissa + 1) << shift).wrapping_sub(1)
}

/// What the run counted.
struct Report {
    /// Correct replies during the measured window.
    msgs: u64,
    /// How long the measured window lasted.
    window: Duration,
    /// Latency of each reply in the window.
    latency: Histogram,
    /// Correct replies and messages sent over the whole run, warm-up included.
    replies_total: u64,
    sent_total: u64,
    wrong: u64,
    resets: u64,
    timeouts: u64,
    connect_failed: u64,
    /// Idle connections established.
    idle_open: usize,
    /// How long opening the idle connections took.
    idle_time: Duration,
    /// CPU time the generator used during the window, over the window.
    cpu_share: f64,
    /// The first error, described.
    first_error: Option<String>,
}

impl Report {
    fn errors(&self) -> u64 {
        self.wrong + self.resets + self.timeouts + self.connect_failed
    }

    fn print(&self, options: &Options) {
        let secs = self.window.as_secs_f64();
        let rate = if secs > 0.0 { self.msgs as f64 / secs } else { 0.0 };
        let us = |nanos: u64| nanos as f64 / 1000.0;
        let (p50, p99, max) =
            (us(self.latency.quantile(0.5)), us(self.latency.quantile(0.99)), us(self.latency.max));
        println!(
            "xps-bench: {}:{}, {} active + {} idle connections, {}-byte messages",
            options.host, options.port, options.conns, options.idle, options.msg_size
        );
        if options.idle > 0 {
            println!(
                "idle:      {} of {} open in {:.2} s",
                self.idle_open,
                options.idle,
                self.idle_time.as_secs_f64()
            );
        }
        println!("messages:  {} in {secs:.2} s: {rate:.0} msgs/s", self.msgs);
        println!("latency:   p50 {p50:.0} us, p99 {p99:.0} us, max {max:.0} us");
        println!(
            "errors:    {} (wrong replies {}, resets {}, timeouts {}, connect failures {})",
            self.errors(),
            self.wrong,
            self.resets,
            self.timeouts,
            self.connect_failed
        );
        if let Some(first) = &self.first_error {
            println!("first error: {first}");
        }
        println!("cpu:       xps-bench used {:.0}% of one core", self.cpu_share * 100.0);
        println!(
            "result: msgs_per_s={rate:.1} msgs={} seconds={secs:.3} p50_us={p50:.1} \
             p99_us={p99:.1} max_us={max:.1} errors={} wrong={} resets={} timeouts={} \
             connect_failed={} conns={} idle={} idle_open={} msg_size={} replies_total={} \
             sent_total={} cpu_pct={:.1}",
            self.msgs,
            self.errors(),
            self.wrong,
            self.resets,
            self.timeouts,
            self.connect_failed,
            options.conns,
            options.idle,
            self.idle_open,
            options.msg_size,
            self.replies_total,
            self.sent_total,
            self.cpu_share * 100.0
        );
    }
}

// ---------------------------------------------------------------------------
// The loop

struct Bench {
    epoll: OwnedFd,
    addr: SocketAddr,
    n_idle: usize,
    n_active: usize,
    msg_size: usize,
    seconds: Duration,
    timeout: Duration,
    conns: Vec<Conn>,
    /// Connections in their handshake.
    in_flight: usize,
    /// The pace of new connections (per second), the connections that may
    /// be opened now, when that was computed, and when the pace last slowed.
    connect_rate: f64,
    tokens: f64,
    last_refill: Instant,
    last_slowdown: Option<Instant>,
    /// Idle connections whose handshake has ended, well or not.
    idle_settled: usize,
    /// Active connections that have had a first reply or are closed.
    settled: usize,
    /// Active connections still open.
    live_active: usize,
    /// No more connections are opened after this.
    connect_deadline: Instant,
    /// Whatever happens, the run ends by then.
    hard_deadline: Instant,
    started: Instant,
    /// When the last idle connection was open.
    idle_done: Option<Instant>,
    /// The measured window: when it starts and ends, and the CPU time used
    /// so far when it started.
    window: Option<(Instant, Instant, Duration)>,
    /// What each `recv()` reads into.
    scratch: Vec<u8>,
    report: Report,
}

impl Bench {
    fn new(options: &Options, addr: SocketAddr) -> io::Result<Bench> {
        // SAFETY: epoll_create1() takes no pointers; the result is checked.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw == -1 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new, valid fd that nothing else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(raw) };
        let now = Instant::now();
        let total = options.idle + options.conns;
        // Generous, but bounded: a server that drops handshakes cannot make
        // the generator wait for ever.
        let connect_phase = CONNECT_TIMEOUT + Duration::from_millis(total as u64);
        let seconds = Duration::from_secs_f64(options.seconds);
        Ok(Bench {
            epoll,
            addr,
            n_idle: options.idle,
            n_active: options.conns,
            msg_size: options.msg_size,
            seconds,
            timeout: options.timeout,
            conns: Vec::with_capacity(total),
            in_flight: 0,
            connect_rate: CONNECT_RATE.0,
            tokens: 1.0,
            last_refill: now,
            last_slowdown: None,
            idle_settled: 0,
            settled: 0,
            live_active: 0,
            connect_deadline: now + connect_phase,
            hard_deadline: now + connect_phase + 2 * options.timeout + seconds + 10 * TICK,
            started: now,
            idle_done: None,
            window: None,
            scratch: vec![0; options.msg_size + 1],
            report: Report {
                msgs: 0,
                window: Duration::ZERO,
                latency: Histogram::new(),
                replies_total: 0,
                sent_total: 0,
                wrong: 0,
                resets: 0,
                timeouts: 0,
                connect_failed: 0,
                idle_open: 0,
                idle_time: Duration::ZERO,
                cpu_share: 0.0,
                first_error: None,
            },
        })
    }

    fn total(&self) -> usize {
        self.n_idle + self.n_active
    }

    /// Opens the connections, runs the traffic, and stops at the end of the
    /// window, when no active connection is left, or at the hard deadline.
    fn run(&mut self) -> io::Result<()> {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
        let mut progress = Progress::new(io::stderr().is_terminal());
        let mut next_tick = Instant::now();
        loop {
            let now = Instant::now();
            self.open_more(now);
            let all_open = self.conns.len() == self.total();
            if self.window.is_none() && all_open && self.settled == self.n_active {
                self.window = Some((now, now + self.seconds, cpu_time()));
            }
            let window_over = self.window.is_some_and(|(_, end, _)| now >= end);
            let all_gone = all_open && self.live_active == 0 && self.in_flight == 0;
            if window_over || all_gone || now >= self.hard_deadline {
                break;
            }
            if now >= next_tick {
                self.check_deadlines(now);
                let rate = progress.rate(self.report.replies_total, now);
                progress.draw(&self.status(now, rate));
                next_tick = now + TICK;
            }
            let mut wait = next_tick.saturating_duration_since(now);
            if self.conns.len() < self.total() {
                // Come back soon to open the next ones at the pace.
                wait = wait.min(Duration::from_millis(1));
            }
            if let Some((_, end, _)) = self.window {
                wait = wait.min(end.saturating_duration_since(now));
            }
            let n = self.wait(&mut events, wait)?;
            for event in &events[..n] {
                self.handle(event.u64 as usize, event.events);
            }
        }
        progress.clear();
        if let Some((start, _, cpu_at_start)) = self.window {
            let window = start.elapsed();
            self.report.window = window;
            let cpu = cpu_time().saturating_sub(cpu_at_start);
            self.report.cpu_share = cpu.as_secs_f64() / window.as_secs_f64().max(1e-9);
        }
        Ok(())
    }

    /// One `epoll_wait()` of at most `wait` (rounded up to a millisecond).
    fn wait(&self, events: &mut [libc::epoll_event], wait: Duration) -> io::Result<usize> {
        let timeout_ms = wait.as_micros().div_ceil(1000).min(1000) as i32;
        let (epoll, buffer, len) = (self.epoll.as_raw_fd(), events.as_mut_ptr(), events.len());
        // SAFETY: `buffer` points to `len` epoll_events that outlive the call.
        let n = unsafe { libc::epoll_wait(epoll, buffer, len as i32, timeout_ms) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted { Ok(0) } else { Err(err) }
    }

    /// Starts more handshakes: the idle connections first, and the active
    /// ones only once every idle one is open (or has failed), so that the
    /// server has accepted them before the measured traffic begins.
    fn open_more(&mut self, now: Instant) {
        if now >= self.connect_deadline && self.conns.len() < self.total() {
            self.give_up_opening();
        }
        if self.idle_done.is_none() && self.idle_settled >= self.n_idle {
            self.idle_done = Some(now);
            self.report.idle_time = now.duration_since(self.started);
        }
        let elapsed = now.duration_since(self.last_refill).as_secs_f64();
        self.last_refill = now;
        let burst = CONNECT_WINDOW as f64 / 2.0;
        self.tokens = (self.tokens + self.connect_rate * elapsed).min(burst);
        while self.in_flight < CONNECT_WINDOW
            && self.conns.len() < self.total()
            && self.tokens >= 1.0
        {
            let role = if self.conns.len() < self.n_idle { Role::Idle } else { Role::Active };
            if role == Role::Active && self.idle_done.is_none() {
                break;
            }
            self.tokens -= 1.0;
            self.open(role, now);
        }
    }

    /// Counts the connections not started yet as failed, because the time
    /// for opening them ran out, and forgets them.
    fn give_up_opening(&mut self) {
        let left = self.total() - self.conns.len();
        // The active connections come last, so they are the first left out.
        let active_left = left.min(self.n_active);
        self.n_active -= active_left;
        self.n_idle -= left - active_left;
        self.report.connect_failed += left as u64;
        self.note_error(format!("{left} connections never started: opening took too long"));
    }

    fn open(&mut self, role: Role, now: Instant) {
        let index = self.conns.len();
        let clock = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH);
        let seed = clock.map_or(1, |d| d.as_nanos() as u64) ^ (index as u64 + 1) << 20;
        self.conns.push(Conn {
            stream: None,
            role,
            state: State::Connecting,
            started: now,
            rng: Rng::new(seed),
            message: Vec::new(),
            sent: 0,
            reply: Vec::new(),
            replies: 0,
        });
        self.in_flight += 1;
        if role == Role::Active {
            self.live_active += 1;
        }
        let started = start_connect(&self.addr).and_then(|stream| {
            self.watch(&stream, index)?;
            Ok(stream)
        });
        match started {
            Ok(stream) => self.conns[index].stream = Some(stream),
            Err(err) => self.close(index, Failure::Connect, &format!("connect(): {err}")),
        }
    }

    /// Adds `stream` to the epoll set, edge-triggered, under `index`.
    fn watch(&self, stream: &TcpStream, index: usize) -> io::Result<()> {
        let flags = libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET;
        let mut event = libc::epoll_event { events: flags as u32, u64: index as u64 };
        let (epoll, fd) = (self.epoll.as_raw_fd(), stream.as_raw_fd());
        // SAFETY: `event` is a valid epoll_event that outlives the call.
        let ret = unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut event) };
        if ret == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }

    /// Acts on one event of connection `index`.
    fn handle(&mut self, index: usize, flags: u32) {
        let Some(conn) = self.conns.get(index) else { return };
        let closing = (libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP | libc::EPOLLRDHUP) as u32;
        match conn.state {
            State::Closed => {}
            State::Connecting => self.connected(index),
            // An idle connection never gets a reply: anything is a close.
            State::Idle if flags & closing != 0 => {
                self.close(index, Failure::Reset, "the server closed an idle connection");
            }
            State::Idle => {}
            State::Sending => self.send(index),
            State::Receiving => self.receive(index),
        }
    }

    /// The handshake of connection `index` has ended, one way or another.
    fn connected(&mut self, index: usize) {
        let conn = &mut self.conns[index];
        let Some(stream) = &conn.stream else { return };
        let error = match stream.take_error() {
            Ok(None) => None,
            Ok(Some(err)) | Err(err) => Some(err),
        };
        if let Some(err) = error {
            self.close(index, Failure::Connect, &format!("connect(): {err}"));
            return;
        }
        self.in_flight -= 1;
        match conn.role {
            Role::Idle => {
                conn.state = State::Idle;
                self.idle_settled += 1;
                self.report.idle_open += 1;
            }
            Role::Active => {
                // Small messages go out at once rather than wait for an ACK.
                let _ = stream.set_nodelay(true);
                self.next_message(index);
            }
        }
    }

    /// Makes a new random line and starts sending it.
    fn next_message(&mut self, index: usize) {
        let size = self.msg_size;
        let conn = &mut self.conns[index];
        conn.message.clear();
        for _ in 1..size {
            let pick = conn.rng.below(ALPHABET.len());
            conn.message.push(ALPHABET[pick]);
        }
        conn.message.push(b'\n');
        conn.sent = 0;
        conn.reply.clear();
        conn.started = Instant::now();
        conn.state = State::Sending;
        self.report.sent_total += 1;
        self.send(index);
    }

    /// Sends what is left of the message, until done or the socket is full.
    fn send(&mut self, index: usize) {
        let conn = &mut self.conns[index];
        let Some(stream) = conn.stream.as_mut() else { return };
        while conn.sent < conn.message.len() {
            match stream.write(&conn.message[conn.sent..]) {
                Ok(n) => conn.sent += n,
                // Edge-triggered: EPOLLOUT will say when there is room.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    self.close(index, Failure::Reset, &format!("send(): {err}"));
                    return;
                }
            }
        }
        conn.state = State::Receiving;
    }

    /// Reads what has come of the reply; checks it once it is complete.
    fn receive(&mut self, index: usize) {
        let size = self.msg_size;
        let conn = &mut self.conns[index];
        let Some(stream) = conn.stream.as_mut() else { return };
        while conn.reply.len() < size {
            // One byte more than is missing, to notice a reply that is too long.
            let room = size + 1 - conn.reply.len();
            match stream.read(&mut self.scratch[..room]) {
                Ok(0) => {
                    let got = conn.reply.len();
                    let why = format!("closed by the server ({got} of {size} reply bytes came)");
                    self.close(index, Failure::Reset, &why);
                    return;
                }
                Ok(n) => conn.reply.extend_from_slice(&self.scratch[..n]),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    self.close(index, Failure::Reset, &format!("recv(): {err}"));
                    return;
                }
            }
        }
        let now = Instant::now();
        let latency = now.duration_since(conn.started);
        conn.replies += 1;
        if conn.replies == 1 {
            self.settled += 1;
        }
        let expected = expected_reply(&conn.message);
        if conn.reply != expected {
            let why = format!(
                "wrong reply: sent {}, expected {}, got {}",
                show(&conn.message),
                show(&expected),
                show(&conn.reply)
            );
            if conn.reply.len() == expected.len() {
                // Still in step with the server: count it and go on.
                self.report.wrong += 1;
                self.note_error(format!("active connection {index}: {why}"));
                self.next_message(index);
            } else {
                self.close(index, Failure::Wrong, &why);
            }
            return;
        }
        self.report.replies_total += 1;
        if let Some((start, end, _)) = self.window
            && conn.started >= start
            && now <= end
        {
            self.report.msgs += 1;
            self.report.latency.record(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
        }
        self.next_message(index);
    }

    /// Closes every connection whose handshake or reply is late.
    fn check_deadlines(&mut self, now: Instant) {
        self.adjust_connect_rate(now);
        for index in 0..self.conns.len() {
            let conn = &self.conns[index];
            let waited = now.duration_since(conn.started);
            match conn.state {
                State::Connecting if waited > CONNECT_TIMEOUT => {
                    let why = format!("no handshake within {} s", CONNECT_TIMEOUT.as_secs());
                    self.close(index, Failure::Timeout, &why);
                }
                State::Sending | State::Receiving if waited > self.timeout => {
                    let why = format!(
                        "no complete reply within {:.1} s ({} of {} bytes came)",
                        self.timeout.as_secs_f64(),
                        conn.reply.len(),
                        self.msg_size
                    );
                    self.close(index, Failure::Timeout, &why);
                }
                _ => {}
            }
        }
    }

    /// Halves the pace of new connections when a handshake stalls (at most
    /// once a second: a dropped SYN takes a second to be sent again), and
    /// raises it a little on every tick without one.
    fn adjust_connect_rate(&mut self, now: Instant) {
        if self.conns.len() == self.total() && self.in_flight == 0 {
            return;
        }
        let (_, floor, ceiling) = CONNECT_RATE;
        let stalled = self.conns.iter().rev().take(CONNECT_WINDOW * 4).any(|conn| {
            conn.state == State::Connecting && now.duration_since(conn.started) > HANDSHAKE_STALL
        });
        let recently = self.last_slowdown.is_some_and(|t| now.duration_since(t) < 10 * TICK);
        if stalled && !recently {
            self.connect_rate = (self.connect_rate / 2.0).max(floor);
            self.last_slowdown = Some(now);
        } else if !stalled {
            self.connect_rate = (self.connect_rate + 1000.0).min(ceiling);
        }
    }

    /// Closes connection `index` and counts `failure`.
    fn close(&mut self, index: usize, failure: Failure, why: &str) {
        let conn = &mut self.conns[index];
        if conn.state == State::Closed {
            return;
        }
        let was_connecting = conn.state == State::Connecting;
        // Closing the socket also takes it out of the epoll set.
        conn.stream = None;
        conn.state = State::Closed;
        let (role, replies) = (conn.role, conn.replies);
        if was_connecting {
            self.in_flight -= 1;
            if role == Role::Idle {
                self.idle_settled += 1;
            }
        }
        if role == Role::Active {
            self.live_active -= 1;
            if replies == 0 {
                self.settled += 1;
            }
        }
        match failure {
            Failure::Wrong => self.report.wrong += 1,
            Failure::Reset => self.report.resets += 1,
            Failure::Timeout => self.report.timeouts += 1,
            Failure::Connect => self.report.connect_failed += 1,
        }
        let kind = if role == Role::Idle { "idle" } else { "active" };
        self.note_error(format!("{kind} connection {index}: {why}"));
    }

    fn note_error(&mut self, why: String) {
        if self.report.first_error.is_none() {
            self.report.first_error = Some(why);
        }
    }

    fn report(self) -> Report {
        self.report
    }

    /// One line saying where the run is, for the progress display.
    fn status(&self, now: Instant, rate: f64) -> String {
        let report = &self.report;
        match self.window {
            None if self.idle_done.is_none() => {
                format!("opening idle connections: {} of {} open", report.idle_open, self.n_idle)
            }
            None => format!(
                "warming up: {} of {} active connections have a reply",
                self.settled, self.n_active
            ),
            Some((start, _, _)) => format!(
                "{:.1} s: {} msgs, {rate:.0} msgs/s, {} errors",
                now.duration_since(start).as_secs_f64(),
                report.msgs,
                report.errors()
            ),
        }
    }
}

/// A new non-blocking socket with `connect()` to `addr` under way.
fn start_connect(addr: &SocketAddr) -> io::Result<TcpStream> {
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    let flags = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: socket() takes no pointers; the result is checked.
    let raw = unsafe { libc::socket(family, flags, 0) };
    if raw == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new, valid fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let ret = match addr {
        SocketAddr::V4(v4) => {
            let sockaddr = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from(*v4.ip()).to_be() },
                sin_zero: [0; 8],
            };
            let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            // SAFETY: `sockaddr` is a valid sockaddr_in of `len` bytes that
            // outlives the call.
            unsafe { libc::connect(fd.as_raw_fd(), (&raw const sockaddr).cast(), len) }
        }
        SocketAddr::V6(v6) => {
            let sockaddr = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: v6.ip().octets() },
                sin6_scope_id: v6.scope_id(),
            };
            let len = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            // SAFETY: `sockaddr` is a valid sockaddr_in6 of `len` bytes that
            // outlives the call.
            unsafe { libc::connect(fd.as_raw_fd(), (&raw const sockaddr).cast(), len) }
        }
    };
    if ret == -1 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(err);
        }
    }
    Ok(TcpStream::from(fd))
}

/// CPU time (user + system) this process has used so far.
fn cpu_time() -> Duration {
    let mut usage = MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: `usage` is valid for writing one rusage and outlives the call.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } == -1 {
        return Duration::ZERO;
    }
    // SAFETY: getrusage() succeeded, so it filled in `usage`.
    let usage = unsafe { usage.assume_init() };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Bytes shown for an error message: escaped, and cut if long.
fn show(bytes: &[u8]) -> String {
    const SHOWN: usize = 40;
    let mut text = String::from("\"");
    for &byte in bytes.iter().take(SHOWN) {
        let _ = write!(text, "{}", std::ascii::escape_default(byte));
    }
    text.push('"');
    if bytes.len() > SHOWN {
        let _ = write!(text, "... ({} bytes)", bytes.len());
    }
    text
}

/// The live progress line on stderr; drawn only on a terminal.
struct Progress {
    on_terminal: bool,
    line_open: bool,
    /// Replies and time when the rate was last measured, and that rate.
    mark: (u64, Instant),
    rate: f64,
}

impl Progress {
    fn new(on_terminal: bool) -> Progress {
        Progress { on_terminal, line_open: false, mark: (0, Instant::now()), rate: 0.0 }
    }

    /// Replies per second, measured over half a second or more.
    fn rate(&mut self, replies: u64, now: Instant) -> f64 {
        let (mark_replies, mark_time) = self.mark;
        let span = now.duration_since(mark_time).as_secs_f64();
        if span >= 0.5 {
            self.rate = replies.saturating_sub(mark_replies) as f64 / span;
            self.mark = (replies, now);
        }
        self.rate
    }

    fn draw(&mut self, status: &str) {
        if self.on_terminal {
            eprint!("\r\x1b[K{status}");
            let _ = io::stderr().flush();
            self.line_open = true;
        }
    }

    fn clear(&mut self) {
        if self.line_open {
            eprint!("\r\x1b[K");
            self.line_open = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Options>, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn flags_are_parsed_and_checked() {
        assert_eq!(parse(&[]), Ok(Some(Options::default())));
        let options = parse(&[
            "--port",
            "9000",
            "--conns",
            "100",
            "--idle",
            "10000",
            "--seconds",
            "0.5",
            "--msg-size",
            "128",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            (options.port, options.conns, options.idle, options.msg_size),
            (9000, 100, 10000, 128)
        );
        assert_eq!(options.seconds, 0.5);
        assert_eq!(parse(&["--help"]), Ok(None));
        assert!(parse(&["--conns", "0"]).is_err());
        assert!(parse(&["--msg-size", "0"]).is_err());
        assert!(parse(&["--seconds", "-1"]).is_err());
        assert!(parse(&["--seconds", "NaN"]).is_err());
        assert!(parse(&["--port"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
    }

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut last = 0;
        for value in (0..100_000u64).chain([1 << 40, u64::MAX - 1, u64::MAX]) {
            let bucket = bucket_of(value);
            assert!(bucket >= last, "{value}");
            assert!(bucket_high(bucket) >= value, "{value}");
            assert!(bucket == 0 || bucket_high(bucket - 1) < value, "{value}");
            last = bucket;
        }
    }

    #[test]
    fn quantiles_are_within_two_percent() {
        let mut histogram = Histogram::new();
        for value in 1..=10_000u64 {
            histogram.record(value * 1000);
        }
        let p50 = histogram.quantile(0.5) as f64;
        let p99 = histogram.quantile(0.99) as f64;
        assert!((p50 / 5_000_000.0 - 1.0).abs() < 0.02, "{p50}");
        assert!((p99 / 9_900_000.0 - 1.0).abs() < 0.02, "{p99}");
        assert_eq!(histogram.quantile(1.0), 10_000_000);
        assert_eq!(Histogram::new().quantile(0.5), 0);
    }
}
