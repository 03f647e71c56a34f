//! A TCP client for tests and tools. Every wait on the network has a
//! deadline, so a broken server fails a test instead of hanging it. Tests
//! connect to 127.0.0.1 only; a tool may pass the address it was given.

use crate::oracle::expected_reply;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
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
        let port = addr.port();
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
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
            String::from_utf8_lossy(&expected_reply(message)),
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
    /// reading). Returns the bytes sent by then, or `None` if `max_bytes`
    /// went out or `max_time` passed first, or the server went away.
    pub fn flood_until_stalled(
        &mut self,
        stall: Duration,
        max_bytes: usize,
        max_time: Duration,
    ) -> Option<usize> {
        let chunk = [b'x'; 64 * 1024];
        let started = Instant::now();
        let mut sent = 0;
        let _ = self.stream.set_write_timeout(Some(stall));
        let result = loop {
            if sent >= max_bytes || started.elapsed() >= max_time {
                break None;
            }
            match self.stream.write(&chunk) {
                Ok(0) => break None,
                Ok(n) => sent += n,
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break Some(sent);
                }
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(_) => break None,
            }
        };
        let _ = self.stream.set_write_timeout(Some(IO_TIMEOUT));
        result
    }

    /// Closes the connection with a reset (RST) instead of a normal close:
    /// `SO_LINGER` with a zero timeout makes `close()` drop unsent data and
    /// abort, as a crashed client or a port scanner does.
    pub fn reset(self) {
        let linger = libc::linger { l_onoff: 1, l_linger: 0 };
        // SAFETY: the option value points to a linger struct that outlives
        // the call, and its exact size is passed with it.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&self.stream),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&raw const linger).cast(),
                size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        drop(self);
    }

    /// Closes the sending half: the server sees end of input.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}
