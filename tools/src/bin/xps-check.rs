//! `xps-check`: checks whatever server is listening, yours or ours, against
//! the milestones of a stage, and says plainly what passes and what fails.
//!
//! ```text
//! xps-check --stage 7                       all the stage-7 checks on 8001-8004
//! xps-check --stage 6 --ports 9001,9002     another set of ports
//! xps-check --stage 7 --only large-message  one check
//! ```
//!
//! It never starts a server, so it works on any implementation, in C or in
//! Rust. It only talks to the host it is given, and every wait has a limit:
//! one reply may take `--timeout`, one check [`CHECK_DEADLINE`] in all, so a
//! server that never answers, or answers slowly, fails in seconds; it does
//! not hang the check.

use shared::cli::options_or_exit;
use shared::client::{Client, IO_TIMEOUT, Reply, ReplyEnd};
use shared::oracle::{Rng, expected_reply};
use std::fmt::Write as _;
use std::io::{ErrorKind, IsTerminal, Read as _, Write as _};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// How long one check may take in all (`--deadline` changes it). A right
/// server on the same machine needs well under a second for the slowest.
const CHECK_DEADLINE: Duration = Duration::from_secs(20);

/// How long to listen for bytes after a check's last expected reply: a
/// server that sends more than the reply is caught here.
const EXTRA_WAIT: Duration = Duration::from_millis(50);

/// How much longer than `--timeout` the waiting client of `blocking-send`
/// may wait for its reply once the flooding client has left: time for the
/// server to see the reset and close that connection.
const AFTER_FLOOD_GRACE: Duration = Duration::from_secs(1);

const USAGE: &str = "\
Usage: xps-check --stage N [--host HOST] [--ports P1,P2,...] [--only NAME]
                 [--timeout SECS] [--deadline SECS] [--json]
       xps-check --list [--stage N]

Checks the reverse server listening on HOST at PORTS against the milestones
of stage N (6, 7 or 8) and prints one line per check.

Options:
  --stage N        6, 7 or 8 (required, except with --list)
  --host HOST      where the server is (default 127.0.0.1; a name is tried
                   at each of its addresses, IPv4 first)
  --ports P1,...   its ports (default 8001,8002,8003,8004)
  --only NAME      run only this check (see --list)
  --list           list the checks (of stage N, or all) and exit
  --timeout SECS   how long to wait for one reply (default 2, at most 60)
  --deadline SECS  how long one check may take in all (default 20, at most
                   600); a check that runs out of time fails
  --json           one JSON object per check, then a summary object
  -h, --help       print this help

Exit status: 0 if every check passed, 1 if one failed, 2 for bad flags.";

/// What the command line asks for.
#[derive(Debug, Clone)]
struct Options {
    stage: u8,
    host: String,
    ports: Vec<u16>,
    only: Option<String>,
    list: bool,
    timeout: Duration,
    deadline: Duration,
    json: bool,
}

/// Parses `--timeout`'s or `--deadline`'s value: seconds, more than 0 and
/// at most `max`.
fn seconds(flag: &str, value: &str, max: f64) -> Result<Duration, String> {
    value
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s <= max)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            format!("{flag} takes seconds, more than 0 and at most {max}, not '{value}'")
        })
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        stage: 0,
        host: "127.0.0.1".to_string(),
        ports: vec![8001, 8002, 8003, 8004],
        only: None,
        list: false,
        timeout: Duration::from_secs(2),
        deadline: CHECK_DEADLINE,
        json: false,
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--json" => options.json = true,
            "--list" => options.list = true,
            "--stage" => {
                let stage = value()?;
                options.stage = match stage.as_str() {
                    "6" | "7" | "8" => stage.parse().unwrap_or_default(),
                    _ => return Err(format!("--stage must be 6, 7 or 8, not '{stage}'")),
                };
            }
            "--host" => options.host = value()?,
            "--ports" => {
                let list = value()?;
                options.ports = list
                    .split(',')
                    .map(|p| p.trim().parse().map_err(|_| format!("'{p}' is not a port")))
                    .collect::<Result<_, _>>()?;
            }
            "--only" => options.only = Some(value()?),
            "--timeout" => options.timeout = seconds("--timeout", &value()?, 60.0)?,
            "--deadline" => options.deadline = seconds("--deadline", &value()?, 600.0)?,
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    if options.stage == 0 && !options.list {
        return Err("--stage is required (6, 7 or 8): the checks depend on it".to_string());
    }
    Ok(Some(options))
}

/// Why a check failed: what was sent, what a right server replies, what
/// came back, and what that usually means.
#[derive(Debug, Default)]
struct Failure {
    what: String,
    sent: Option<Vec<u8>>,
    expected: Option<Vec<u8>>,
    got: Option<Vec<u8>>,
    hint: String,
}

/// A check passes (perhaps with a remark) or fails.
type Outcome = Result<Option<String>, Failure>;

/// What a check that ran out of time suggests, when it cannot say more.
const SLOW_HINT: &str = "every reply must come within --timeout, and each check finish within \
                         --deadline: is the server slow on every message? About 40 ms a reply \
                         is Nagle's algorithm holding back the second send() of a reply until \
                         the client's delayed ACK: send each reply with one send() (or set \
                         TCP_NODELAY)";

/// A duration as a person writes it: "20 s", "0.5 s", "21.37 s".
fn secs(duration: Duration) -> String {
    format!("{} s", (duration.as_secs_f64() * 100.0).round() / 100.0)
}

/// Where and how to talk to the server under check, and until when: each
/// check gets its own, with its own deadline.
#[derive(Debug)]
struct Target {
    /// For each port, the addresses to try in turn (IPv4 first).
    addrs: Vec<Vec<SocketAddr>>,
    /// How long one reply may take.
    timeout: Duration,
    /// How long the whole check may take...
    limit: Duration,
    /// ...so when it must end.
    deadline: Instant,
}

impl Target {
    /// How many ports there are.
    fn ports(&self) -> usize {
        self.addrs.len()
    }

    /// The time left before the check's deadline.
    fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// `wait`, or less if the check's deadline comes first.
    fn wait(&self, wait: Duration) -> Duration {
        wait.min(self.left())
    }

    /// Connects to the `index`-th port (modulo their number), trying each
    /// of its addresses until one answers.
    fn connect(&self, index: usize) -> Result<Client, Failure> {
        let addrs = &self.addrs[index % self.addrs.len()];
        let mut errors = Vec::new();
        for &addr in addrs {
            match Client::try_connect_to(addr) {
                Ok(client) => return Ok(client),
                Err(err) => errors.push(format!("{addr}: {err}")),
            }
        }
        let port = addrs.first().map_or(0, SocketAddr::port);
        Err(Failure {
            what: format!("cannot connect to {}", errors.join("; ")),
            hint: format!(
                "is the server running, and listening on port {port}? (start it first; \
                 xps-check never starts one)"
            ),
            ..Failure::default()
        })
    }

    /// The failure of a check whose time ran out while `port` owed a reply.
    fn out_of_time(&self, port: u16) -> Failure {
        Failure {
            what: format!(
                "out of time: a check may take {} in all, and port {port} had not replied yet",
                secs(self.limit)
            ),
            hint: SLOW_HINT.to_string(),
            ..Failure::default()
        }
    }

    /// Sends `message` and checks that the reply is its reverse.
    fn exchange(&self, client: &mut Client, message: &[u8]) -> Result<(), Failure> {
        let expected = expected_reply(message);
        if self.left().is_zero() {
            return Err(self.out_of_time(client.port()));
        }
        if let Err(err) = client.try_send(message) {
            return Err(Failure {
                what: format!("send to port {} failed: {err}", client.port()),
                sent: Some(message.to_vec()),
                hint: "the server closed or reset the connection before this message: it \
                       should keep a client until the client leaves"
                    .to_string(),
                ..Failure::default()
            });
        }
        let wait = self.wait(self.timeout);
        let reply = client.read_reply(expected.len(), wait);
        if reply.end == ReplyEnd::Complete && reply.bytes == expected {
            return Ok(());
        }
        let cut_short = reply.end == ReplyEnd::TimedOut && wait < self.timeout;
        let (what, hint) = if cut_short {
            let failure = self.out_of_time(client.port());
            (failure.what, failure.hint)
        } else {
            (
                format!("wrong reply on port {}", client.port()),
                hint_for(message, &expected, &reply, self.timeout),
            )
        };
        Err(Failure {
            what,
            hint,
            sent: Some(message.to_vec()),
            expected: Some(expected),
            got: Some(reply.bytes),
        })
    }

    /// After the last reply a check expects: fails if any of `clients`
    /// receives anything more within [`EXTRA_WAIT`].
    fn nothing_more<'a>(&self, clients: impl IntoIterator<Item = &'a mut Client>) -> Outcome {
        std::thread::sleep(EXTRA_WAIT);
        for client in clients {
            let extra = already_received(client);
            if !extra.is_empty() {
                return Err(Failure {
                    what: format!(
                        "got {} extra bytes after the reply on port {}",
                        extra.len(),
                        client.port()
                    ),
                    got: Some(extra),
                    hint: "the server sends more than the reverse of each message: does it \
                           send its whole buffer instead of the n bytes recv() returned, or add \
                           a byte (a \\0, a \\n) to each reply?"
                        .to_string(),
                    ..Failure::default()
                });
            }
        }
        Ok(None)
    }
}

/// What `client` has received and not read yet, read without waiting (a
/// read timeout, however short, costs more than a non-blocking read).
fn already_received(client: &Client) -> Vec<u8> {
    let mut stream = client.stream();
    let mut received = Vec::new();
    if stream.set_nonblocking(true).is_err() {
        return received;
    }
    let mut buffer = [0; 64 * 1024];
    while let Ok(n) = stream.read(&mut buffer)
        && n > 0
        && received.len() < 1 << 20
    {
        received.extend_from_slice(&buffer[..n]);
    }
    let _ = stream.set_nonblocking(false);
    received
}

/// The usual cause of a wrong reply, guessed from its shape.
fn hint_for(message: &[u8], expected: &[u8], reply: &Reply, timeout: Duration) -> String {
    let got = &reply.bytes;
    match &reply.end {
        ReplyEnd::TimedOut if got.is_empty() => {
            return format!(
                "no reply within {timeout:?}: is the connection's read handler attached to \
                 the loop, and does it send? (or is the server blocked on another client?)"
            );
        }
        ReplyEnd::Closed if got.is_empty() => {
            return "the server closed the connection instead of answering: does it close \
                    after the first reply, or on every read?"
                .to_string();
        }
        ReplyEnd::Failed(err) => return format!("the connection failed: {err}"),
        _ => {}
    }
    let mut fully_reversed = message.to_vec();
    fully_reversed.reverse();
    let mut all_but_last = message.to_vec();
    if let Some((_, rest)) = all_but_last.split_last_mut() {
        rest.reverse();
    }
    if got.as_slice() == message && message != expected {
        "the reply is the message itself: the server echoes instead of reversing".to_string()
    } else if message.ends_with(b"\n") && got == &fully_reversed {
        "reply has the newline first: the reverse includes the trailing \\n".to_string()
    } else if !message.ends_with(b"\n") && got == &all_but_last {
        "the last byte stayed in place: the reverse always keeps the last byte, even when \
         it is not \\n"
            .to_string()
    } else if got.len() < expected.len() {
        format!(
            "only {} of {} bytes came back: does the send loop stop after one partial \
             send(), or is the receive buffer smaller than the message?",
            got.len(),
            expected.len()
        )
    } else {
        "the bytes differ from the reverse: check the reverse function".to_string()
    }
}

/// One check: its name, a one-line description, the first stage it
/// belongs to, and the code.
struct Check {
    name: &'static str,
    about: &'static str,
    from_stage: u8,
    run: fn(&Target, u8) -> Outcome,
}

/// The checks, in the order they run. The blocking-send experiment goes
/// last: on a blocking server it leaves the server busy for a moment. It
/// belongs to stage 7 (an observation) and 8 (a check).
const CHECKS: &[Check] = &[
    Check {
        name: "ports-reverse",
        about: "every port accepts and reverses",
        from_stage: 6,
        run: ports_reverse,
    },
    Check {
        name: "no-newline",
        about: "a message without \\n is reversed whole",
        from_stage: 6,
        run: no_newline,
    },
    Check {
        name: "lone-newline",
        about: "a lone \\n comes back as \\n",
        from_stage: 6,
        run: lone_newline,
    },
    Check {
        name: "random-strings",
        about: "official check 1: 1000 random strings per port",
        from_stage: 6,
        run: random_strings,
    },
    Check {
        name: "ten-clients",
        about: "official check 2: ten clients at once on one port",
        from_stage: 6,
        run: ten_clients,
    },
    Check {
        name: "error-handling",
        about: "official check 3: a client leaves, the others are still served",
        from_stage: 6,
        run: error_handling,
    },
    Check {
        name: "interleave",
        about: "three clients on one port take turns",
        from_stage: 6,
        run: interleave,
    },
    Check {
        name: "reset-client",
        about: "a client that resets does not disturb the others",
        from_stage: 6,
        run: reset_client,
    },
    Check {
        name: "large-message",
        about: "a message near the 100000-byte buffer comes back exactly",
        from_stage: 6,
        run: large_message,
    },
    Check {
        name: "blocking-send",
        about: "a client that never reads: does everyone else wait?",
        from_stage: 7,
        run: blocking_send,
    },
];

fn checks_for(stage: u8) -> impl Iterator<Item = &'static Check> {
    CHECKS.iter().filter(move |check| stage >= check.from_stage)
}

fn ports_reverse(target: &Target, _stage: u8) -> Outcome {
    let mut clients = Vec::new();
    for index in 0..target.ports() {
        let mut client = target.connect(index)?;
        target.exchange(&mut client, b"hello\n")?;
        let message = format!("port {}\n", client.port());
        target.exchange(&mut client, message.as_bytes())?;
        clients.push(client);
    }
    target.nothing_more(&mut clients)
}

fn no_newline(target: &Target, _stage: u8) -> Outcome {
    let mut client = target.connect(0)?;
    target.exchange(&mut client, b"abc")?;
    target.nothing_more([&mut client])
}

fn lone_newline(target: &Target, _stage: u8) -> Outcome {
    let mut client = target.connect(0)?;
    target.exchange(&mut client, b"\n")?;
    target.exchange(&mut client, b"after\n")?;
    target.nothing_more([&mut client])
}

fn random_strings(target: &Target, _stage: u8) -> Outcome {
    const PER_PORT: usize = 1000;
    let total = PER_PORT * target.ports();
    let started = Instant::now();
    let mut rng = Rng::new(0x0dd_ba11);
    let mut clients = Vec::new();
    let mut done = 0;
    for index in 0..target.ports() {
        let mut client = target.connect(index)?;
        for _ in 0..PER_PORT {
            match target.exchange(&mut client, &rng.tester_message(99)) {
                Ok(()) => done += 1,
                // The check's deadline cut the wait short: too slow, not silent.
                Err(_) if done > 0 && target.left().is_zero() => {
                    return Err(too_slow(done, total, started.elapsed(), target.limit));
                }
                Err(failure) => return Err(failure),
            }
        }
        clients.push(client);
    }
    target.nothing_more(&mut clients)
}

/// The failure of a check that got only `done` of its `total` replies
/// before its time ran out, with a guess at why the replies are slow.
fn too_slow(done: usize, total: usize, took: Duration, limit: Duration) -> Failure {
    let per_reply = took.as_secs_f64() * 1000.0 / done as f64;
    // Delayed ACKs wait 40 ms on Linux, up to 200 ms elsewhere.
    let hint = if (25.0..=250.0).contains(&per_reply) {
        "that is the delay of Nagle's algorithm meeting a delayed ACK: the server sends each \
         reply in more than one send(), and the kernel holds the second back until the client \
         acknowledges the first. Send each reply with one send() (or set TCP_NODELAY)"
    } else {
        "a right server answers each of these short messages in well under a millisecond: \
         does it sleep, or print every message to a slow terminal?"
    };
    Failure {
        what: format!(
            "only {done} of {total} replies in {} (about {per_reply:.1} ms per reply)",
            secs(limit)
        ),
        hint: hint.to_string(),
        ..Failure::default()
    }
}

fn ten_clients(target: &Target, _stage: u8) -> Outcome {
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(target.connect(0)?);
    }
    let start = Arc::new(Barrier::new(clients.len()));
    let mut clients = std::thread::scope(|scope| {
        let runs: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(i, mut client)| {
                let start = Arc::clone(&start);
                scope.spawn(move || {
                    start.wait();
                    target.exchange(&mut client, format!("string-{i}\n").as_bytes())?;
                    Ok(client)
                })
            })
            .collect();
        runs.into_iter()
            .map(|run| {
                run.join().unwrap_or_else(|_| {
                    Err(Failure {
                        what: "a client thread panicked".to_string(),
                        ..Failure::default()
                    })
                })
            })
            .collect::<Result<Vec<_>, _>>()
    })?;
    target.nothing_more(&mut clients)
}

fn error_handling(target: &Target, _stage: u8) -> Outcome {
    let first = target.connect(0)?;
    let mut second = target.connect(0)?;
    target.exchange(&mut second, b"hello\n")?;
    drop(first);
    // Give the server a moment to see the first client go.
    std::thread::sleep(Duration::from_millis(100));
    target.exchange(&mut second, b"still here\n").map_err(|mut failure| {
        failure.hint = format!("after another client left: {}", failure.hint);
        failure
    })?;
    let mut newcomer = target.connect(0)?;
    target.exchange(&mut newcomer, b"brand new\n")?;
    target.nothing_more([&mut second, &mut newcomer])
}

fn interleave(target: &Target, _stage: u8) -> Outcome {
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(target.connect(0)?);
    }
    for round in 0..5 {
        for (i, client) in clients.iter_mut().enumerate() {
            target.exchange(client, format!("client {i} round {round}\n").as_bytes())?;
        }
    }
    target.nothing_more(&mut clients)
}

fn reset_client(target: &Target, _stage: u8) -> Outcome {
    let mut bystander = target.connect(0)?;
    target.exchange(&mut bystander, b"before\n")?;
    for _ in 0..5 {
        let mut resetter = target.connect(0)?;
        // Half a message, then a reset (RST) instead of a normal close.
        let _ = resetter.try_send(b"half a mess");
        resetter.reset();
    }
    std::thread::sleep(Duration::from_millis(100));
    target.exchange(&mut bystander, b"after the resets\n").map_err(|mut failure| {
        failure.hint = format!("after clients reset their connections: {}", failure.hint);
        failure
    })?;
    let mut newcomer = target.connect(0)?;
    target.exchange(&mut newcomer, b"new\n")?;
    target.nothing_more([&mut bystander, &mut newcomer])
}

fn large_message(target: &Target, _stage: u8) -> Outcome {
    // TCP may deliver a large message in several pieces, and the server
    // reverses each piece on its own. Here that does not matter: every
    // piece is 'x's, which read the same backwards, and only the last one
    // ends in the message's single \n, which stays last. So a right reply
    // is the message itself, byte for byte, however it was split.
    let mut message = vec![b'x'; 99_999];
    message.push(b'\n');
    let mut client = target.connect(0)?;
    if let Err(err) = client.try_send(&message) {
        return Err(Failure { what: format!("send failed: {err}"), ..Failure::default() });
    }
    let wait = target.wait(target.timeout * 2);
    let reply = client.read_reply(message.len(), wait);
    if reply.end == ReplyEnd::Complete && reply.bytes == message {
        return target.nothing_more([&mut client]);
    }
    if reply.end == ReplyEnd::Complete {
        let at = reply.bytes.iter().zip(&message).position(|(a, b)| a != b).unwrap_or_default();
        let around = |bytes: &[u8]| show(&bytes[at..(at + 16).min(bytes.len())]);
        let newline_early = reply.bytes[..reply.bytes.len() - 1].contains(&b'\n');
        return Err(Failure {
            what: format!(
                "all {} bytes came back, but from byte {at} on they differ: {} instead of {}",
                message.len(),
                around(&reply.bytes),
                around(&message)
            ),
            hint: if newline_early {
                "a \\n came back before the end: the reverse includes the trailing \\n (TCP \
                 may split the message into pieces; the \\n of the last piece stays last)"
                    .to_string()
            } else {
                "the reply should be the message itself: check the reverse function".to_string()
            },
            ..Failure::default()
        });
    }
    if reply.end == ReplyEnd::TimedOut && wait < target.timeout * 2 {
        return Err(target.out_of_time(client.port()));
    }
    Err(Failure {
        what: format!(
            "{} of {} bytes came back ({:?})",
            reply.bytes.len(),
            message.len(),
            reply.end
        ),
        hint: "a large message needs every byte sent back: loop on send() until all is \
               written, and read with a buffer of at least 100000 bytes"
            .to_string(),
        ..Failure::default()
    })
}

/// How a flood ended.
#[derive(Debug)]
enum FloodEnd {
    /// A write made no progress for the stall time: the server stopped
    /// reading.
    Stalled,
    /// The byte or time limit came first: the server kept reading.
    Limit,
    /// The server closed or reset the connection (the error).
    Gone(String),
}

/// Sends without ever reading, as the experiment's `sender` does, until a
/// write makes no progress for `stall`, `max_bytes` went out, `max_time`
/// passed, or the server went away. Returns the bytes sent, and why it
/// stopped.
fn flood(
    client: &Client,
    stall: Duration,
    max_bytes: usize,
    max_time: Duration,
) -> (usize, FloodEnd) {
    let chunk = [b'x'; 64 * 1024];
    let started = Instant::now();
    let mut stream = client.stream();
    let _ = stream.set_write_timeout(Some(stall));
    let mut sent = 0;
    let end = loop {
        if sent >= max_bytes || started.elapsed() >= max_time {
            break FloodEnd::Limit;
        }
        match stream.write(&chunk) {
            Ok(0) => break FloodEnd::Gone("a write sent nothing".to_string()),
            Ok(n) => sent += n,
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break FloodEnd::Stalled;
            }
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => break FloodEnd::Gone(err.to_string()),
        }
    };
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    (sent, end)
}

fn blocking_send(target: &Target, stage: u8) -> Outcome {
    // Flood until our sends stall (a blocking server is stuck in send()) or
    // for a few seconds (a non-blocking server may keep reading), then see
    // whether another client is served while the flooder still hangs on,
    // and, if not, once it has left.
    let flooder = target.connect(0)?;
    let (sent, end) =
        flood(&flooder, Duration::from_secs(1), 256 << 20, target.wait(Duration::from_secs(5)));
    if let FloodEnd::Gone(err) = &end {
        // The server dropped the flooder, at once or once the buffers were
        // full, so the experiment could not run. That is a FAIL, not an
        // inconclusive NOTE: a NOTE counts as passed and would tell the
        // learner all is well, when at every stage a client that sends a
        // lot before it reads is still a client to keep (stage 7 blocks in
        // send() on it, stage 8 buffers what send() cannot take yet), and
        // closing it is a bug: closing at once, or on EAGAIN at stage 8.
        return Err(Failure {
            what: format!(
                "the server closed the connection of a client that sends without reading, \
                 after {sent} bytes ({err}): the experiment could not run"
            ),
            hint: "a client that sends a lot before it reads is still a client: read its \
                   messages and reply (at stage 7 send() then blocks on it; from stage 8 \
                   EAGAIN is not an error, keep the rest of the reply until EPOLLOUT), and \
                   close a connection only when recv() returns 0 or fails"
                .to_string(),
            ..Failure::default()
        });
    }
    let mut waiting = target.connect(target.ports() - 1)?;
    let ping = b"ping\n";
    let expected = expected_reply(ping);
    let _ = waiting.try_send(ping);
    let mut reply = waiting.read_reply(expected.len(), target.wait(target.timeout));
    let served_at_once = reply.end == ReplyEnd::Complete;
    // Leave abruptly, as a killed client does: a server blocked in send()
    // to it gets an error instead of waiting on.
    flooder.reset();
    let after = target.timeout + AFTER_FLOOD_GRACE;
    if reply.end == ReplyEnd::TimedOut {
        let rest = waiting.read_reply(expected.len() - reply.bytes.len(), target.wait(after));
        reply.bytes.extend(rest.bytes);
        reply.end = rest.end;
    }
    if reply.end == ReplyEnd::Complete && reply.bytes != expected {
        return Err(Failure {
            what: format!("wrong reply on port {}", waiting.port()),
            hint: hint_for(ping, &expected, &reply, target.timeout),
            sent: Some(ping.to_vec()),
            expected: Some(expected),
            got: Some(reply.bytes),
        });
    }
    if reply.end != ReplyEnd::Complete {
        let how = match &reply.end {
            ReplyEnd::Closed => "the server closed its connection".to_string(),
            ReplyEnd::Failed(err) => format!("its connection failed: {err}"),
            _ => format!("no reply within {} after the flooding client left", secs(after)),
        };
        return Err(Failure {
            what: format!("a client waiting on port {} was never served: {how}", waiting.port()),
            hint: "after the flooding client left, the waiting client was never served: does \
                   the server accept and read every client? And when send() fails because \
                   the client has gone (EPIPE, ECONNRESET), does it close that connection and \
                   go back to the loop?"
                .to_string(),
            sent: Some(ping.to_vec()),
            expected: Some(expected),
            got: Some(reply.bytes),
        });
    }
    target.nothing_more([&mut waiting])?;
    match (stage, served_at_once) {
        (7, false) => Ok(Some(
            "stalls while a client does not read: expected at this stage (stage 8 fixes it); \
             the waiting client was served once that client left"
                .to_string(),
        )),
        (7, true) => Ok(Some(
            "did not stall: your server already serves others while a client does not read"
                .to_string(),
        )),
        (_, false) => Err(Failure {
            what: "a client that never reads stopped the server from serving another".to_string(),
            hint: "make connection sockets non-blocking, and when send() cannot write \
                   everything keep the rest and wait for EPOLLOUT"
                .to_string(),
            ..Failure::default()
        }),
        (_, true) => Ok(None),
    }
}

/// Shows bytes as a Rust-style string literal: readable, one line, exact.
fn show(bytes: &[u8]) -> String {
    const SHOWN: usize = 80;
    let shown: String = bytes[..bytes.len().min(SHOWN)].escape_ascii().to_string();
    if bytes.len() > SHOWN {
        format!("\"{shown}\"... ({} bytes)", bytes.len())
    } else {
        format!("\"{shown}\"")
    }
}

/// Escapes text for a JSON string.
fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Prints one check's result, as text or JSON.
fn report(check: &Check, outcome: &Outcome, took: Duration, options: &Options, colour: bool) {
    let paint = |text: &str, code: &str| {
        if colour { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_string() }
    };
    if options.json {
        let mut line = format!(
            "{{\"check\":{},\"passed\":{},\"seconds\":{:.3}",
            json_string(check.name),
            outcome.is_ok(),
            took.as_secs_f64()
        );
        match outcome {
            Ok(Some(note)) => line += &format!(",\"note\":{}", json_string(note)),
            Ok(None) => {}
            Err(failure) => {
                line += &format!(",\"what\":{}", json_string(&failure.what));
                for (key, bytes) in [
                    ("sent", &failure.sent),
                    ("expected", &failure.expected),
                    ("got", &failure.got),
                ] {
                    if let Some(bytes) = bytes {
                        line += &format!(",\"{key}\":{}", json_string(&show(bytes)));
                    }
                }
                line += &format!(",\"hint\":{}", json_string(&failure.hint));
            }
        }
        println!("{line}}}");
        return;
    }
    let mark = match outcome {
        Ok(None) => paint("PASS", "32"),
        Ok(Some(_)) => paint("NOTE", "33"),
        Err(_) => paint("FAIL", "31;1"),
    };
    println!("{mark} {:<15} {:>6.2} s  {}", check.name, took.as_secs_f64(), check.about);
    match outcome {
        Ok(Some(note)) => println!("     {note}"),
        Ok(None) => {}
        Err(failure) => {
            println!("     {}", failure.what);
            for (label, bytes) in
                [("sent", &failure.sent), ("expected", &failure.expected), ("got", &failure.got)]
            {
                if let Some(bytes) = bytes {
                    println!("     {label:<9} {}", show(bytes));
                }
            }
            if !failure.hint.is_empty() {
                println!("     {} {}", paint("hint:", "1"), failure.hint);
            }
        }
    }
}

/// Puts IPv4 addresses first, keeping the resolver's order otherwise: the
/// course's servers listen on 127.0.0.1, and "localhost" often resolves to
/// ::1 first.
fn ipv4_first(addrs: &mut Vec<SocketAddr>) {
    addrs.sort_by_key(SocketAddr::is_ipv6);
    addrs.dedup();
}

/// Every address of `host` for each port, IPv4 first.
fn resolve(host: &str, ports: &[u16]) -> Result<Vec<Vec<SocketAddr>>, String> {
    ports
        .iter()
        .map(|&port| {
            let mut addrs: Vec<SocketAddr> = (host, port)
                .to_socket_addrs()
                .map_err(|err| format!("cannot resolve '{host}': {err}"))?
                .collect();
            ipv4_first(&mut addrs);
            if addrs.is_empty() { Err(format!("'{host}' has no address")) } else { Ok(addrs) }
        })
        .collect()
}

/// Prints the checks of `stage`, or all of them (with the stages they
/// belong to) when no stage was given.
fn list(stage: u8) {
    for check in CHECKS {
        if stage == 0 && check.from_stage > 6 {
            println!("{:<15} {} (from stage {})", check.name, check.about, check.from_stage);
        } else if stage == 0 || stage >= check.from_stage {
            println!("{:<15} {}", check.name, check.about);
        }
    }
}

fn main() -> ExitCode {
    let options = match options_or_exit("xps-check", USAGE, parse_args(std::env::args().skip(1))) {
        Ok(options) => options,
        Err(status) => return status,
    };
    if options.list {
        list(options.stage);
        return ExitCode::SUCCESS;
    }
    let selected: Vec<&Check> = checks_for(options.stage)
        .filter(|check| options.only.as_deref().is_none_or(|only| only == check.name))
        .collect();
    if selected.is_empty() {
        let names: Vec<_> = checks_for(options.stage).map(|c| c.name).collect();
        eprintln!(
            "xps-check: no check named '{}'; there are: {}",
            options.only.as_deref().unwrap_or(""),
            names.join(", ")
        );
        return ExitCode::from(2);
    }
    let addrs = match resolve(&options.host, &options.ports) {
        Ok(addrs) if !addrs.is_empty() => addrs,
        Ok(_) => {
            eprintln!("xps-check: no ports to check");
            return ExitCode::from(2);
        }
        Err(message) => {
            eprintln!("xps-check: {message}");
            return ExitCode::from(2);
        }
    };
    let colour = !options.json
        && std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    if !options.json {
        let ports: Vec<String> = options.ports.iter().map(u16::to_string).collect();
        println!("checking stage {} on {} port {}", options.stage, options.host, ports.join(", "));
    }
    let (mut passed, mut failed) = (0, 0);
    for check in selected {
        let started = Instant::now();
        let target = Target {
            addrs: addrs.clone(),
            timeout: options.timeout,
            limit: options.deadline,
            deadline: started + options.deadline,
        };
        let mut outcome = (check.run)(&target, options.stage);
        let took = started.elapsed();
        // Every wait of a check stops at its deadline, but a connect() or a
        // send() has its own limit: a check that passed late still fails.
        if outcome.is_ok() && took > options.deadline + Duration::from_secs(1) {
            outcome = Err(Failure {
                what: format!(
                    "took {}, more than the {} a check may take",
                    secs(took),
                    secs(options.deadline)
                ),
                hint: SLOW_HINT.to_string(),
                ..Failure::default()
            });
        }
        report(check, &outcome, took, &options, colour);
        if outcome.is_ok() { passed += 1 } else { failed += 1 }
    }
    if options.json {
        println!("{{\"passed\":{passed},\"failed\":{failed}}}");
    } else {
        println!("{passed} passed, {failed} failed");
    }
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};

    #[test]
    fn ipv4_addresses_come_first() {
        let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, 8001));
        let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, 8001));
        let mut addrs = vec![v6, v4, v4];
        ipv4_first(&mut addrs);
        assert_eq!(addrs, [v4, v6]);
    }

    #[test]
    fn connect_tries_each_address() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let open = listener.local_addr().unwrap();
        // A port nothing listens on: bound, then let go.
        let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap();
        let target = Target {
            addrs: vec![vec![closed, open]],
            timeout: Duration::from_secs(1),
            limit: CHECK_DEADLINE,
            deadline: Instant::now() + CHECK_DEADLINE,
        };
        assert!(target.connect(0).is_ok());
        let target = Target { addrs: vec![vec![closed]], ..target };
        let failure = target.connect(0).unwrap_err();
        assert!(failure.what.contains(&closed.to_string()), "{}", failure.what);
    }
}
