//! A TCP client for tests: connects to 127.0.0.1 only, and every wait on
//! the network has a deadline, so a broken server fails a test instead of
//! hanging it.

use crate::oracle::expected_reply;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long any single read or write may wait by default.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A connected test client.
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
    pub fn try_connect(port: u16) -> std::io::Result<Client> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
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

    /// Sends all of `bytes`.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|err| panic!("send to port {}: {err}", self.port));
    }

    /// Reads exactly `len` bytes, waiting at most `timeout` in all.
    /// Returns what arrived (shorter if the time ran out or the server
    /// closed the connection).
    pub fn recv_exact(&mut self, len: usize, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        let mut received = vec![0; len];
        let mut filled = 0;
        while filled < len {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stream.set_read_timeout(Some(left)).is_err() {
                break;
            }
            match self.stream.read(&mut received[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(err) if err.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        received.truncate(filled);
        let _ = self.stream.set_read_timeout(Some(IO_TIMEOUT));
        received
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

    /// Closes the sending half: the server sees end of input.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}
