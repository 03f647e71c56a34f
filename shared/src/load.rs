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
//! [`POLL`] that it should stop, even if the server has frozen.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    pub fn streaming(port: u16, clients: usize) -> Load {
        let shared = Arc::new(Shared::default());
        let mut threads = Vec::new();
        for _ in 0..clients {
            let writer = connect(port);
            let reader = writer.try_clone().expect("clone a client socket");
            let (w, r) = (Arc::clone(&shared), Arc::clone(&shared));
            threads.push(std::thread::spawn(move || keep_writing(writer, &w)));
            threads.push(std::thread::spawn(move || keep_reading(reader, &r)));
        }
        Load { shared, threads }
    }

    /// `clients` clients spread over `ports`, each on its own thread sending
    /// `ping\n` and waiting for the 5-byte reply, again and again.
    pub fn ping_pong(ports: &[u16], clients: usize) -> Load {
        let shared = Arc::new(Shared::default());
        // Connect them all first: a failed connect panics here, in the
        // test, not in a thread the test would wait for.
        let sockets: Vec<TcpStream> =
            (0..clients).map(|i| connect(ports[i % ports.len()])).collect();
        let threads = sockets
            .into_iter()
            .map(|socket| {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || keep_ping_ponging(socket, &shared))
            })
            .collect();
        Load { shared, threads }
    }

    /// Bytes received from the server so far, by all the clients.
    pub fn received(&self) -> u64 {
        self.shared.received.load(Ordering::Relaxed)
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

/// A client socket whose every wait ends within [`POLL`].
fn connect(port: u16) -> TcpStream {
    let socket = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .unwrap_or_else(|err| panic!("connect to port {port}: {err}"));
    socket.set_read_timeout(Some(POLL)).expect("set a read timeout");
    socket.set_write_timeout(Some(POLL)).expect("set a write timeout");
    socket.set_nodelay(true).expect("set TCP_NODELAY");
    socket
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
    while !shared.stop.load(Ordering::Relaxed) {
        match socket.read(&mut buffer) {
            Ok(0) => return,
            Ok(n) => {
                shared.received.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(err) if timed_out(err.kind()) => {}
            Err(_) => return,
        }
    }
}

fn keep_ping_ponging(mut socket: TcpStream, shared: &Shared) {
    let mut reply = [0; 5];
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
        shared.received.fetch_add(reply.len() as u64, Ordering::Relaxed);
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
            // Dropping joins every thread: this returns only if they stop.
            drop(load);
        }
    }
}
