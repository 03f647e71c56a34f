//! The server under check: how to reach it and exchange messages with it
//! within a check's deadline, and why a check failed (`Failure`), with the
//! usual cause of a wrong reply.

use crate::client::{Client, Reply, ReplyEnd, connect_first};
use crate::stages::Protocol;
use std::io::Read as _;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The hint for bytes that come back beyond the reply.
pub const EXTRA_BYTES_HINT: &str = "the server sends more than the reverse of each message: \
    does it send its whole buffer instead of the n bytes recv() returned, or add a byte (a \\0, \
    a \\n) to each reply?";

/// How long to listen for bytes after a check's last expected reply: a
/// server that sends more than the reply is caught here.
pub const EXTRA_WAIT: Duration = Duration::from_millis(50);

/// Why a check failed: what was sent, what a right server replies, what
/// came back, and what that usually means.
#[derive(Debug, Default)]
pub struct Failure {
    /// What went wrong, in one line.
    pub what: String,
    /// The message sent, if one was.
    pub sent: Option<Vec<u8>>,
    /// What a right server replies to it.
    pub expected: Option<Vec<u8>>,
    /// What came back.
    pub got: Option<Vec<u8>>,
    /// The usual cause of this failure.
    pub hint: String,
    /// Whether the other checks would fail the same way (see `main`).
    pub cause: Cause,
}

impl Failure {
    /// A failure with no bytes to show: what went wrong, and the usual
    /// cause.
    pub fn new(what: impl Into<String>, hint: impl Into<String>) -> Box<Failure> {
        Box::new(Failure { what: what.into(), hint: hint.into(), ..Failure::default() })
    }
}

/// `Ok` if `condition` holds, else a [`Failure`] saying `what` (made only
/// when needed) with `hint`: the `assert!` of a check.
pub fn ensure(
    condition: bool,
    what: impl FnOnce() -> String,
    hint: &str,
) -> Result<(), Box<Failure>> {
    if condition { Ok(()) } else { Err(Failure::new(what(), hint)) }
}

/// The kind of failure that may end the run early.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Anything else: the other checks still run.
    #[default]
    Other,
    /// Every address of a port refused the connection.
    Refused,
    /// A reply never began: not one byte came within `--timeout`.
    Silent,
}

/// A check passes (perhaps with a remark) or fails.
pub type Outcome = Result<Option<String>, Box<Failure>>;

/// What a check that ran out of time suggests, when it cannot say more.
pub const SLOW_HINT: &str = "every reply must come within --timeout, and each check finish within \
                         --deadline: is the server slow on every message? About 40 ms a reply \
                         is Nagle's algorithm holding back the second send() of a reply until \
                         the client's delayed ACK: send each reply with one send() (or set \
                         TCP_NODELAY)";

/// Shows bytes as a Rust-style string literal: readable, one line, exact.
pub fn show(bytes: &[u8]) -> String {
    const SHOWN: usize = 80;
    let shown: String = bytes[..bytes.len().min(SHOWN)].escape_ascii().to_string();
    if bytes.len() > SHOWN {
        format!("\"{shown}\"... ({} bytes)", bytes.len())
    } else {
        format!("\"{shown}\"")
    }
}

/// A duration as a person writes it: "20 s", "0.5 s", "21.37 s".
pub fn secs(duration: Duration) -> String {
    format!("{} s", (duration.as_secs_f64() * 100.0).round() / 100.0)
}

/// Where and how to talk to the server under check, and until when: each
/// check gets its own, with its own deadline.
#[derive(Debug)]
pub struct Target {
    /// For each port, the addresses to try in turn (IPv4 first).
    pub addrs: Vec<Vec<SocketAddr>>,
    /// How long one reply may take.
    pub timeout: Duration,
    /// How long the whole check may take...
    pub limit: Duration,
    /// ...so when it must end.
    pub deadline: Instant,
    /// What a right server replies.
    pub protocol: Protocol,
    /// The server's process id, when it runs on this machine and is known:
    /// the checks that read its CPU from `/proc` need it.
    pub pid: Option<u32>,
    /// Set once the server has sent this check any byte at all.
    heard: AtomicBool,
}

impl Target {
    /// How many ports there are.
    pub fn ports(&self) -> usize {
        self.addrs.len()
    }

    /// The time left before the check's deadline.
    pub fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// `wait`, or less if the check's deadline comes first.
    pub fn wait(&self, wait: Duration) -> Duration {
        wait.min(self.left())
    }

    /// A target for one check: `limit` from now to finish it, replies as
    /// `protocol` says.
    pub fn new(
        addrs: Vec<Vec<SocketAddr>>,
        protocol: Protocol,
        timeout: Duration,
        limit: Duration,
    ) -> Target {
        Target {
            addrs,
            timeout,
            limit,
            deadline: Instant::now() + limit,
            protocol,
            pid: None,
            heard: AtomicBool::new(false),
        }
    }

    /// True if the server has sent this check anything at all.
    pub fn heard_anything(&self) -> bool {
        self.heard.load(Ordering::Relaxed)
    }

    /// [`Client::read_reply`], noting whether the server sent anything.
    pub fn read_reply(&self, client: &mut Client, len: usize, wait: Duration) -> Reply {
        let reply = client.read_reply(len, wait);
        if !reply.bytes.is_empty() {
            self.heard.store(true, Ordering::Relaxed);
        }
        reply
    }

    /// Connects to the `index`-th port (modulo their number), trying each
    /// of its addresses until one answers.
    pub fn connect(&self, index: usize) -> Result<Client, Box<Failure>> {
        let addrs = &self.addrs[index % self.addrs.len()];
        let unreachable = match connect_first(addrs, Client::try_connect_to) {
            Ok((client, _)) => return Ok(client),
            Err(unreachable) => unreachable,
        };
        let port = addrs.first().map_or(0, SocketAddr::port);
        Err(Box::new(Failure {
            what: format!("cannot connect to {unreachable}"),
            hint: format!(
                "is the server running, and listening on port {port}? (start it first; \
                 xps-check never starts one)"
            ),
            cause: if unreachable.all_refused() { Cause::Refused } else { Cause::Other },
            ..Failure::default()
        }))
    }

    /// The failure of a check whose time ran out while `port` owed a reply.
    pub fn out_of_time(&self, port: u16) -> Failure {
        Failure {
            what: format!(
                "out of time: a check may take {} in all, and port {port} had not replied yet",
                secs(self.limit)
            ),
            hint: SLOW_HINT.to_string(),
            ..Failure::default()
        }
    }

    /// Sends `message` and checks that the reply is the protocol's.
    pub fn exchange(&self, client: &mut Client, message: &[u8]) -> Result<(), Box<Failure>> {
        let expected = self.protocol.reply(message);
        if self.left().is_zero() {
            return Err(self.out_of_time(client.port()).into());
        }
        if let Err(err) = client.try_send(message) {
            return Err(Box::new(Failure {
                what: format!("send to port {} failed: {err}", client.port()),
                sent: Some(message.to_vec()),
                hint: "the server closed or reset the connection before this message: it \
                       should keep a client until the client leaves"
                    .to_string(),
                ..Failure::default()
            }));
        }
        let wait = self.wait(self.timeout);
        let reply = self.read_reply(client, expected.len(), wait);
        if reply.end == ReplyEnd::Complete && reply.bytes == expected {
            return Ok(());
        }
        let cut_short = reply.end == ReplyEnd::TimedOut && wait < self.timeout;
        let cause = silence(&reply, cut_short);
        let (what, hint) = if cut_short {
            let failure = self.out_of_time(client.port());
            (failure.what, failure.hint)
        } else {
            (
                format!("wrong reply on port {}", client.port()),
                hint_for(self.protocol, message, &expected, &reply, self.timeout),
            )
        };
        Err(Box::new(Failure {
            what,
            hint,
            sent: Some(message.to_vec()),
            expected: Some(expected),
            got: Some(reply.bytes),
            cause,
        }))
    }

    /// After the last reply a check expects: fails if any of `clients`
    /// receives anything more within [`EXTRA_WAIT`].
    pub fn nothing_more<'a>(&self, clients: impl IntoIterator<Item = &'a mut Client>) -> Outcome {
        std::thread::sleep(EXTRA_WAIT);
        for client in clients {
            let extra = already_received(client);
            if !extra.is_empty() {
                return Err(Box::new(Failure {
                    what: format!(
                        "got {} extra bytes after the reply on port {}",
                        extra.len(),
                        client.port()
                    ),
                    got: Some(extra),
                    hint: EXTRA_BYTES_HINT.to_string(),
                    ..Failure::default()
                }));
            }
        }
        Ok(None)
    }
}

/// [`Cause::Silent`] if `reply` never began although the server had all of
/// `--timeout` to send it (`cut_short` is false), else [`Cause::Other`].
pub fn silence(reply: &Reply, cut_short: bool) -> Cause {
    if reply.end == ReplyEnd::TimedOut && reply.bytes.is_empty() && !cut_short {
        Cause::Silent
    } else {
        Cause::Other
    }
}

/// True if every address of every port refuses a connection: nothing
/// listens there at all (as opposed to a server that is slow to accept,
/// or one port of several missing).
pub fn nothing_listens(addrs: &[Vec<SocketAddr>]) -> bool {
    let probe = |addr| TcpStream::connect_timeout(&addr, Duration::from_secs(1));
    addrs.iter().all(|port| connect_first(port, probe).is_err_and(|none| none.all_refused()))
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
pub fn hint_for(
    protocol: Protocol,
    message: &[u8],
    expected: &[u8],
    reply: &Reply,
    timeout: Duration,
) -> String {
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
    if protocol == Protocol::WriteBack {
        return if got.as_slice() == Protocol::Reverse.reply(message) && got != expected {
            "the reply is the message reversed: from stage 10 the server writes back what it \
             received, unchanged"
                .to_string()
        } else if got.len() < expected.len() {
            format!("only {} of {} bytes came back", got.len(), expected.len())
        } else {
            "the bytes differ from the message: a write-back server sends each chunk back \
             exactly as it came"
                .to_string()
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::CHECK_DEADLINE;
    use crate::client::ClosedPort;
    use std::net::{Ipv4Addr, TcpListener};

    #[test]
    fn connect_tries_each_address() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let open = listener.local_addr().unwrap();
        // A port nothing listens on, kept so while the test runs (a port
        // bound and let go could be taken by another test meanwhile).
        let closed_port = ClosedPort::new().unwrap();
        let closed = closed_port.addr();
        let target = Target::new(
            vec![vec![closed, open]],
            Protocol::Reverse,
            Duration::from_secs(1),
            CHECK_DEADLINE,
        );
        assert!(target.connect(0).is_ok());
        assert!(!nothing_listens(&target.addrs));
        let target = Target { addrs: vec![vec![closed]], ..target };
        let failure = target.connect(0).unwrap_err();
        assert!(failure.what.contains(&closed.to_string()), "{}", failure.what);
        assert_eq!(failure.cause, Cause::Refused);
        assert!(nothing_listens(&target.addrs));
    }
}
