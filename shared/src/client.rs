//! A TCP client for tests and tools. Every wait on the network has a
//! deadline, so a broken server fails a test instead of hanging it. Tests
//! connect to 127.0.0.1 only; a tool may pass the address it was given.

use crate::stages::Protocol;
use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// How long any single read or write may wait by default.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// How a read of a reply ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyEnd {
    /// Every byte asked for arrived.
    Complete,
    /// The server closed the connection first.
    Closed,
    /// The connection failed (reset, ...), with the OS error.
    Failed(String),
    /// The time ran out first.
    TimedOut,
}

/// What arrived in answer to a message, and how the read ended.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The bytes received (fewer than asked unless `end` is `Complete`).
    pub bytes: Vec<u8>,
    /// Why the read stopped.
    pub end: ReplyEnd,
}

/// How a [`Client::flood`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FloodEnd {
    /// A write made no progress for the stall time: the server stopped
    /// reading.
    Stalled,
    /// The byte or time limit came first: the server kept reading.
    Limit,
    /// The server closed or reset the connection (the error).
    Gone(String),
}

/// What a [`Client::flood`] sent, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flooded {
    /// The bytes the kernel took from the client.
    pub sent: usize,
    /// Why the flood stopped.
    pub end: FloodEnd,
}

/// A connected client.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    port: u16,
}

impl Client {
    /// Connects to `127.0.0.1:port`, panicking if that fails.
    pub fn connect(port: u16) -> Client {
        Client::try_connect(port).unwrap_or_else(|err| panic!("connect to port {port}: {err}"))
    }

    /// Connects to `127.0.0.1:port`.
    pub fn try_connect(port: u16) -> io::Result<Client> {
        Client::try_connect_to(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    }

    /// Connects to `addr`, waiting at most [`IO_TIMEOUT`].
    pub fn try_connect_to(addr: SocketAddr) -> io::Result<Client> {
        let stream = connect_stream(addr, IO_TIMEOUT)?;
        Ok(Client { stream, port: addr.port() })
    }

    /// Connects to `127.0.0.1:port` with small socket buffers
    /// ([`LEAN_BUFFER`] each way) and an Ethernet-sized segment
    /// ([`LEAN_MSS`]), set before connecting so that they hold from the
    /// first byte. On loopback the kernel otherwise holds about 10 MiB
    /// between a client that never reads and a server (64 KiB segments
    /// make every buffer on the way grow large); with these, about 1 MiB
    /// (measured: the server's receive buffer still grows as the server
    /// reads, and only this end is set). So a flood reaches what the
    /// server itself holds five times sooner: a test fills the pipes of a
    /// hundred clients in seconds. The connect waits at most
    /// [`IO_TIMEOUT`].
    pub fn try_connect_lean(port: u16) -> io::Result<Client> {
        // SAFETY: socket() takes no pointers.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: socket() just returned this fd, and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let int = |level, name, value: libc::c_int| set_option(&fd, level, name, &value);
        int(libc::SOL_SOCKET, libc::SO_SNDBUF, LEAN_BUFFER)?;
        int(libc::SOL_SOCKET, libc::SO_RCVBUF, LEAN_BUFFER)?;
        int(libc::IPPROTO_TCP, libc::TCP_MAXSEG, LEAN_MSS)?;
        // A blocking connect() waits at most the send timeout (a SYN to a
        // full backlog is retried for minutes otherwise).
        let timeout = libc::timeval {
            tv_sec: IO_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: IO_TIMEOUT.subsec_micros() as libc::suseconds_t,
        };
        set_option(&fd, libc::SOL_SOCKET, libc::SO_SNDTIMEO, &timeout)?;
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from(Ipv4Addr::LOCALHOST).to_be() },
            sin_zero: [0; 8],
        };
        // SAFETY: `addr` is a valid sockaddr_in that outlives the call, and
        // its exact size is passed with it.
        let ret = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if ret != 0 {
            return Err(io::Error::last_os_error());
        }
        let stream = with_waits(TcpStream::from(fd), IO_TIMEOUT)?;
        Ok(Client { stream, port })
    }

    /// The server port this client is connected to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The underlying socket, for tests that need socket options.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Sends all of `bytes`, panicking if that fails.
    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes).unwrap_or_else(|err| panic!("send to port {}: {err}", self.port));
    }

    /// Sends all of `bytes`.
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads exactly `len` bytes, waiting at most `timeout` in all, and
    /// says how the read ended.
    pub fn read_reply(&mut self, len: usize, timeout: Duration) -> Reply {
        let deadline = Instant::now() + timeout;
        let mut received = vec![0; len];
        let mut filled = 0;
        let end = loop {
            if filled == len {
                break ReplyEnd::Complete;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stream.set_read_timeout(Some(left)).is_err() {
                break ReplyEnd::TimedOut;
            }
            match self.stream.read(&mut received[filled..]) {
                Ok(0) => break ReplyEnd::Closed,
                Ok(n) => filled += n,
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break ReplyEnd::TimedOut;
                }
                Err(err) => break ReplyEnd::Failed(err.to_string()),
            }
        };
        received.truncate(filled);
        let _ = self.stream.set_read_timeout(Some(IO_TIMEOUT));
        Reply { bytes: received, end }
    }

    /// Reads exactly `len` bytes, waiting at most `timeout` in all.
    /// Returns what arrived (shorter if the time ran out or the server
    /// closed the connection).
    pub fn recv_exact(&mut self, len: usize, timeout: Duration) -> Vec<u8> {
        self.read_reply(len, timeout).bytes
    }

    /// Sends `message` and waits for as many bytes as it has.
    pub fn round_trip(&mut self, message: &[u8]) -> Vec<u8> {
        self.send(message);
        self.recv_exact(message.len(), IO_TIMEOUT)
    }

    /// Sends `message` and asserts the reply is its correct reverse.
    pub fn expect_reversed(&mut self, message: &[u8]) {
        let reply = self.round_trip(message);
        assert_eq!(
            String::from_utf8_lossy(&reply),
            String::from_utf8_lossy(&Protocol::Reverse.reply(message)),
            "wrong reply on port {} to {:?}",
            self.port,
            String::from_utf8_lossy(message)
        );
    }

    /// True if nothing at all arrives within `wait`.
    pub fn receives_nothing_for(&mut self, wait: Duration) -> bool {
        self.recv_exact(1, wait).is_empty()
    }

    /// True if the server has closed the connection (a read returns EOF or
    /// a reset) within `timeout`.
    pub fn is_closed_by_server(&mut self, timeout: Duration) -> bool {
        let _ = self.stream.set_read_timeout(Some(timeout));
        let mut byte = [0];
        let closed = match self.stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(err) => !matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        };
        let _ = self.stream.set_read_timeout(Some(IO_TIMEOUT));
        closed
    }

    /// Sends data without ever reading, as the experiment's `sender` does,
    /// until a write makes no progress for `stall` (the server has stopped
    /// reading), `max_bytes` went out, `max_time` passed, or the server
    /// went away. Says how much was sent and how it ended.
    pub fn flood(&self, stall: Duration, max_bytes: usize, max_time: Duration) -> Flooded {
        let chunk = [b'x'; 64 * 1024];
        let started = Instant::now();
        // `&TcpStream` writes too: a flood needs no `&mut`, so a check can
        // flood a client it shares with another thread.
        let mut stream = &self.stream;
        let _ = stream.set_write_timeout(Some(stall));
        let mut sent = 0;
        let end = loop {
            if sent >= max_bytes || started.elapsed() >= max_time {
                break FloodEnd::Limit;
            }
            match stream.write(&chunk) {
                Ok(0) => break FloodEnd::Gone("a write sent nothing".to_string()),
                Ok(n) => sent += n,
                // A write timeout: not one byte went out for `stall`.
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break FloodEnd::Stalled;
                }
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(err) => break FloodEnd::Gone(err.to_string()),
            }
        };
        let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
        Flooded { sent, end }
    }

    /// [`Client::flood`], for the callers that only ask whether it stalled:
    /// the bytes sent by then, or `None` if the limits came first or the
    /// server went away.
    pub fn flood_until_stalled(
        &mut self,
        stall: Duration,
        max_bytes: usize,
        max_time: Duration,
    ) -> Option<usize> {
        let flooded = self.flood(stall, max_bytes, max_time);
        (flooded.end == FloodEnd::Stalled).then_some(flooded.sent)
    }

    /// Closes the connection with a reset (RST) instead of a normal close:
    /// `SO_LINGER` with a zero timeout makes `close()` drop unsent data and
    /// abort, as a crashed client or a port scanner does.
    pub fn reset(self) {
        let Client { stream, .. } = self;
        reset_stream(stream);
    }

    /// Closes the sending half: the server sees end of input.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// Closes `stream` with a reset (RST), as [`Client::reset`] does for a
/// [`Client`]: `SO_LINGER` at 0 makes `close()` drop unsent data and
/// abort. Panics if the option cannot be set: a test that meant to reset
/// would go on with a normal close.
pub fn reset_stream(stream: TcpStream) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: the option value points to a linger struct that outlives
    // the call, and its exact size is passed with it.
    let ret = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(ret, 0, "setsockopt(SO_LINGER): {}", io::Error::last_os_error());
}

/// A socket connected to `addr` within [`IO_TIMEOUT`], whose every later
/// read and write waits at most `wait`, with Nagle's algorithm off (a
/// short message leaves at once). Every client here starts from one: a
/// [`Client`] waits [`IO_TIMEOUT`]; the background clients of
/// [`crate::load`] wait much less, so that they notice soon when to stop.
pub fn connect_stream(addr: impl Into<SocketAddr>, wait: Duration) -> io::Result<TcpStream> {
    with_waits(TcpStream::connect_timeout(&addr.into(), IO_TIMEOUT)?, wait)
}

/// `stream` with every read and write waiting at most `wait`, Nagle off.
fn with_waits(stream: TcpStream, wait: Duration) -> io::Result<TcpStream> {
    stream.set_read_timeout(Some(wait))?;
    stream.set_write_timeout(Some(wait))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Connects with `connect` to the first of `addrs` that takes the
/// connection, and says which one it was.
///
/// `addrs` are one port's addresses, IPv4 first, as
/// [`crate::cli::resolve`] gives them: "localhost" may name `::1` first
/// while a server listens on 127.0.0.1 only, so each is tried in turn.
/// How to connect is the caller's: a [`Client`] with its deadlines
/// (`Client::try_connect_to`), a bare socket for a tool that sets its own,
/// a probe closed at once. The order, and every error kept for the
/// message, are the same for all.
pub fn connect_first<T>(
    addrs: &[SocketAddr],
    mut connect: impl FnMut(SocketAddr) -> io::Result<T>,
) -> Result<(T, SocketAddr), Unreachable> {
    let mut errors = Vec::new();
    for &addr in addrs {
        match connect(addr) {
            Ok(connected) => return Ok((connected, addr)),
            Err(err) => errors.push((addr, err)),
        }
    }
    Err(Unreachable(errors))
}

/// Why [`connect_first`] found no address that took the connection: each
/// address tried, with its error, in order. Shown as `ADDR: ERROR; ...`.
#[derive(Debug)]
pub struct Unreachable(pub Vec<(SocketAddr, io::Error)>);

impl Unreachable {
    /// True if every address refused the connection: nothing listens
    /// there, as opposed to a network that is down or slow.
    pub fn all_refused(&self) -> bool {
        self.0.iter().all(|(_, err)| err.kind() == ErrorKind::ConnectionRefused)
    }
}

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (addr, err)) in self.0.iter().enumerate() {
            let separator = if i == 0 { "" } else { "; " };
            write!(f, "{separator}{addr}: {err}")?;
        }
        Ok(())
    }
}

/// The socket buffers of [`Client::try_connect_lean`], in bytes (the
/// kernel doubles the figure for its bookkeeping).
pub const LEAN_BUFFER: libc::c_int = 16 * 1024;

/// The largest segment [`Client::try_connect_lean`] accepts: Ethernet's,
/// where loopback's is 64 KiB.
pub const LEAN_MSS: libc::c_int = 1460;

/// Sets one socket option of `fd` to `value`.
fn set_option<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a T that outlives the call, and its exact
    // size is passed with it.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if ret == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// A port on 127.0.0.1 where nothing listens, and where nothing can start
/// listening while this value lives: a connection to it is refused.
///
/// Binding a socket to port 0, reading its port and closing it would give a
/// port that is free only for a moment: another test (or the OS, for another
/// test's port 0) may take it before it is used. Here a socket stays bound
/// to the port without ever listening or connecting: a `bind()` to it fails
/// with `EADDRINUSE`, port 0 never picks it, and a SYN to it finds no
/// listener and is answered with a reset.
///
/// (The port must not be the local port of a live connection instead: the
/// kernel may pick that port again as the source port of a `connect()` to
/// it, since the pair of addresses differs, and a socket that connects
/// from port P to port P on the same address is connected to itself: what
/// it sends comes back to it, as if an echo server listened there.)
#[derive(Debug)]
pub struct ClosedPort {
    /// The socket bound to the port, never listening.
    _bound: OwnedFd,
    /// The port.
    pub port: u16,
}

impl ClosedPort {
    /// Makes one.
    pub fn new() -> io::Result<ClosedPort> {
        // SAFETY: socket() takes no pointers; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new, valid fd that nothing else owns.
        let bound = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut address = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr { s_addr: u32::from(Ipv4Addr::LOCALHOST).to_be() },
            sin_zero: [0; 8],
        };
        let mut len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: `address` is a valid sockaddr_in that outlives the call,
        // and its exact size is passed with it.
        let ret = unsafe { libc::bind(bound.as_raw_fd(), (&raw const address).cast(), len) };
        if ret != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: getsockname() writes at most `len` bytes into `address`,
        // which is that big, and sets `len` to what it wrote.
        let ret = unsafe {
            libc::getsockname(bound.as_raw_fd(), (&raw mut address).cast(), &raw mut len)
        };
        if ret != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(ClosedPort { _bound: bound, port: u16::from_be(address.sin_port) })
    }

    /// Its address on 127.0.0.1.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Binding a port and letting it go, as the tests used to, leaves a
    /// port anyone may take at once (this `bind()` succeeds); a closed port
    /// stays refused and cannot be taken while it lives.
    #[test]
    fn a_closed_port_refuses_and_cannot_be_taken() {
        let closed = ClosedPort::new().unwrap();
        let refused = TcpStream::connect_timeout(&closed.addr(), IO_TIMEOUT).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{refused}");
        assert!(
            TcpListener::bind(closed.addr()).is_err(),
            "another socket could listen on the closed port"
        );
    }

    /// A thread that reads everything and never replies, until the client
    /// leaves: a server that keeps reading.
    fn sink() -> SocketAddr {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut stream, _)) = listener.accept() {
                let _ = io::copy(&mut stream, &mut io::sink());
            }
        });
        addr
    }

    /// The options hold: the kernel reports twice the buffer asked for,
    /// and segments no larger than asked (less the timestamp option).
    #[test]
    fn a_lean_client_has_small_buffers_and_segments() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let client = Client::try_connect_lean(listener.local_addr().unwrap().port()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let get = |fd: &TcpStream, level, name| {
            let mut value: libc::c_int = 0;
            let mut len = size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: `value` and `len` outlive the call, and `len` is the
            // size of `value`.
            let ret = unsafe {
                libc::getsockopt(fd.as_raw_fd(), level, name, (&raw mut value).cast(), &mut len)
            };
            assert_eq!(ret, 0, "{}", io::Error::last_os_error());
            value
        };
        assert_eq!(get(client.stream(), libc::SOL_SOCKET, libc::SO_SNDBUF), 2 * LEAN_BUFFER);
        assert_eq!(get(client.stream(), libc::SOL_SOCKET, libc::SO_RCVBUF), 2 * LEAN_BUFFER);
        // The server's end sends the client segments no larger than that.
        assert!(get(&accepted, libc::IPPROTO_TCP, libc::TCP_MAXSEG) <= LEAN_MSS);
        let refused = ClosedPort::new().unwrap();
        assert!(Client::try_connect_lean(refused.port).is_err());
    }

    #[test]
    fn every_address_is_tried_until_one_answers() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let open = listener.local_addr().unwrap();
        let closed_port = ClosedPort::new().unwrap();
        let closed = closed_port.addr();
        let (_client, addr) = connect_first(&[closed, open], Client::try_connect_to)
            .expect("the second address answers");
        assert_eq!(addr, open);
        let none =
            connect_first(&[closed, closed], Client::try_connect_to).expect_err("nothing listens");
        let why = none.to_string();
        assert!(why.starts_with(&closed.to_string()), "{why}");
        assert_eq!(why.matches(&closed.to_string()).count(), 2, "{why}");
        assert!(none.all_refused());
    }

    #[test]
    fn a_flood_says_how_it_ended() {
        // Nobody reads: the buffers fill and the writes stall.
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let client = Client::try_connect_to(listener.local_addr().unwrap()).unwrap();
        let flooded = client.flood(Duration::from_millis(200), 256 << 20, IO_TIMEOUT);
        assert_eq!(flooded.end, FloodEnd::Stalled, "{flooded:?}");
        assert!(flooded.sent > 0);
        drop(listener);

        // A reader that keeps up: the byte limit comes first.
        let client = Client::try_connect_to(sink()).unwrap();
        let flooded = client.flood(Duration::from_secs(1), 1 << 20, IO_TIMEOUT);
        assert_eq!(flooded.end, FloodEnd::Limit, "{flooded:?}");
        assert!(flooded.sent >= 1 << 20);
    }
}
