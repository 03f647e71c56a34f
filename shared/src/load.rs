//! Clients that keep a server busy in the background, for the tests that
//! must see what a server does under load (Ctrl+C while it serves).
//!
//! Two kinds, both stopped (and their threads joined) when dropped:
//!
//! * [`Load::streaming`]: clients that send and read at the same time
//!   without pause, like `cat /dev/zero | nc HOST PORT > /dev/null`;
//! * [`Load::ping_pong`]: clients that each send a short line and wait for
//!   its reply, over and over.
//!
//! Every socket wait is bounded, so a thread notices within
//! [`POLL`] that it should stop, even if the server has frozen. Every
//! client connects before any thread starts: a connect that fails is an
//! error for the caller, not a thread that dies while the others run on.

use crate::client::connect_stream;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long any read or write of a load thread may block.
pub const POLL: Duration = Duration::from_millis(50);

/// What every thread of one load shares.
#[derive(Debug, Default)]
struct Shared {
    /// Set to tell the threads to stop.
    stop: AtomicBool,
    /// Bytes received from the server so far, by all clients.
    received: AtomicU64,
    /// How many clients have had at least one byte back.
    answered: AtomicUsize,
}

/// Clients keeping a server busy until dropped.
#[derive(Debug)]
pub struct Load {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    /// `clients` clients on `port`, each sending 16 KiB writes of `a`
    /// without pause on one thread and reading everything that comes back
    /// on another.
    /// Panics if a client cannot connect; [`Load::try_streaming`] says why.
    pub fn streaming(port: u16, clients: usize) -> Load {
        Load::try_streaming(port, clients).unwrap_or_else(|err| panic!("port {port}: {err}"))
    }

    /// [`Load::streaming`], returning the error of a client that could not
    /// connect.
    pub fn try_streaming(port: u16, clients: usize) -> io::Result<Load> {
        let mut pairs = Vec::new();
        for _ in 0..clients {
            let writer = connect_stream((Ipv4Addr::LOCALHOST, port), POLL)?;
            let reader = writer.try_clone()?;
            pairs.push((writer, reader));
        }
        let shared = Arc::new(Shared::default());
        let mut threads = Vec::new();
        for (writer, reader) in pairs {
            let (w, r) = (Arc::clone(&shared), Arc::clone(&shared));
            threads.push(std::thread::spawn(move || keep_writing(writer, &w)));
            threads.push(std::thread::spawn(move || keep_reading(reader, &r)));
        }
        Ok(Load { shared, threads })
    }

    /// `clients` clients spread over `ports`, each on its own thread sending
    /// `ping\n` and waiting for the 5-byte reply, again and again. Panics if
    /// a client cannot connect; [`Load::try_ping_pong`] says why.
    pub fn ping_pong(ports: &[u16], clients: usize) -> Load {
        Load::try_ping_pong(ports, clients).unwrap_or_else(|err| panic!("{err}"))
    }

    /// [`Load::ping_pong`], returning the error of a client that could not
    /// connect.
    pub fn try_ping_pong(ports: &[u16], clients: usize) -> io::Result<Load> {
        if ports.is_empty() {
            return Err(io::Error::new(ErrorKind::InvalidInput, "no port to connect to"));
        }
        let sockets = (0..clients)
            .map(|i| {
                let port = ports[i % ports.len()];
                connect_stream((Ipv4Addr::LOCALHOST, port), POLL)
                    .map_err(|err| io::Error::new(err.kind(), format!("port {port}: {err}")))
            })
            .collect::<io::Result<Vec<TcpStream>>>()?;
        let shared = Arc::new(Shared::default());
        let threads = sockets
            .into_iter()
            .map(|socket| {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || keep_ping_ponging(socket, &shared))
            })
            .collect();
        Ok(Load { shared, threads })
    }

    /// Bytes received from the server so far, by all the clients.
    pub fn received(&self) -> u64 {
        self.shared.received.load(Ordering::Relaxed)
    }

    /// How many of the clients have had at least one byte back: once all
    /// have, the server has accepted every one of them.
    pub fn answered(&self) -> usize {
        self.shared.answered.load(Ordering::Relaxed)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Counts `n` more bytes received, and the client as answered on its
/// first ones.
fn count_received(shared: &Shared, n: usize, first: &mut bool) {
    shared.received.fetch_add(n as u64, Ordering::Relaxed);
    if std::mem::take(first) {
        shared.answered.fetch_add(1, Ordering::Relaxed);
    }
}

/// True for the errors that only mean "the bounded wait ran out".
fn timed_out(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted)
}

fn keep_writing(mut socket: TcpStream, shared: &Shared) {
    let chunk = [b'a'; 16 * 1024];
    while !shared.stop.load(Ordering::Relaxed) {
        match socket.write(&chunk) {
            Ok(0) => return,
            Ok(_) => {}
            Err(err) if timed_out(err.kind()) => {}
            Err(_) => return,
        }
    }
}

fn keep_reading(mut socket: TcpStream, shared: &Shared) {
    let mut buffer = [0; 64 * 1024];
    let mut first = true;
    while !shared.stop.load(Ordering::Relaxed) {
        match socket.read(&mut buffer) {
            Ok(0) => return,
            Ok(n) => count_received(shared, n, &mut first),
            Err(err) if timed_out(err.kind()) => {}
            Err(_) => return,
        }
    }
}

fn keep_ping_ponging(mut socket: TcpStream, shared: &Shared) {
    let mut reply = [0; 5];
    let mut first = true;
    while !shared.stop.load(Ordering::Relaxed) {
        if socket.write_all(b"ping\n").is_err() {
            return;
        }
        // Wait for the whole reply, checking the stop flag between waits.
        let mut got = 0;
        while got < reply.len() {
            if shared.stop.load(Ordering::Relaxed) {
                return;
            }
            match socket.read(&mut reply[got..]) {
                Ok(0) => return,
                Ok(n) => got += n,
                Err(err) if timed_out(err.kind()) => {}
                Err(_) => return,
            }
        }
        count_received(shared, reply.len(), &mut first);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A thread that answers every byte with the same byte, until the
    /// client leaves.
    fn echo_server() -> u16 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut stream = stream;
                    let mut buffer = [0; 64 * 1024];
                    while let Ok(n @ 1..) = stream.read(&mut buffer) {
                        if stream.write_all(&buffer[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        port
    }

    #[test]
    fn both_loads_get_replies_and_stop_when_dropped() {
        let port = echo_server();
        for load in [Load::streaming(port, 2), Load::ping_pong(&[port], 3)] {
            assert!(crate::wait::wait_until(Duration::from_secs(5), || load.received() > 1000));
            assert!(crate::wait::wait_until(Duration::from_secs(5), || load.answered() >= 2));
            // Dropping joins every thread: this returns only if they stop.
            drop(load);
        }
    }

    #[test]
    fn a_client_that_cannot_connect_is_an_error_not_a_panic() {
        let closed = crate::client::ClosedPort::new().unwrap();
        assert!(Load::try_streaming(closed.port, 2).is_err());
        let open = echo_server();
        // One good port and one closed: the error comes back, and the
        // clients already connected are dropped with no thread left behind.
        let err = Load::try_ping_pong(&[open, closed.port], 4).unwrap_err();
        assert!(err.to_string().contains(&closed.port.to_string()), "{err}");
    }
}
