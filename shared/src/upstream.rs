//! Servers for a reverse proxy to forward to, run by the test process
//! itself: stage 11's tests start one, give its address to the proxy's
//! `--upstream`, and compare what comes through the proxy with what the
//! server sent.
//!
//! Two kinds, each on 127.0.0.1 at a port the OS picks:
//!
//! * [`Upstream::echo`]: writes back what it receives, and answers a
//!   half-close with its own, so a test sees both directions and both
//!   ends of a connection pass through the proxy;
//! * [`Upstream::http`]: a small HTTP/1.0 server with a few files, and
//!   paths made for a proxy's hard cases: a body too long to hold in
//!   memory ([`pattern`] says what each of its bytes is), a server that
//!   dies mid-response, a request whose end is a half-close, a response
//!   that trickles.
//!
//! Each counts the connections it accepted and those still open on its
//! side, so a test can see that the proxy opens one upstream connection
//! per client and closes it when the client leaves. Its responses carry
//! no date, so a response that came through the proxy must equal, byte
//! for byte, the one fetched directly.
//!
//! One blocking thread per connection keeps the servers simple, and no
//! wait can hang a test: every socket gives up after [`IDLE_TIMEOUT`],
//! and dropping an [`Upstream`] shuts all its connections down, which
//! ends every wait at once.

use crate::client::{IO_TIMEOUT, connect_stream, reset_stream};
use crate::wait::{POLL_INTERVAL, wait_until};
use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long a connection's thread waits on one read or write before it
/// gives up and closes the connection. Only a safety net: a test is over
/// long before, and dropping the [`Upstream`] ends every wait at once.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest request head [`Upstream::http`] reads: a client that sends
/// more without a blank line is not speaking HTTP, and is dropped.
pub const MAX_HEAD: usize = 64 * 1024;

/// What [`Upstream::http`] names itself in its `Server` header.
pub const SERVER: &str = "xps-test-upstream";

/// The size of each write of a long body, and of each read.
const PIECE: usize = 64 * 1024;

/// The pieces of a `/slow/N` body, and the pause after each but the last.
const SLOW_PIECE: usize = 1024;
const SLOW_PAUSE: Duration = Duration::from_millis(1);

/// How long the accept thread waits for a client before it looks at the
/// stop flag again: a drop waits at most this for it.
const ACCEPT_POLL_MS: libc::c_int = 10;

/// How many connections may wait for the accept thread: more than any
/// burst a test sends through a proxy (the kernel caps it at
/// `net.core.somaxconn`, 4096 by default).
const UPSTREAM_BACKLOG: libc::c_int = 1024;

/// How long a drop waits for the connection threads once their sockets
/// are shut down (they end within a few milliseconds; one that does not
/// is left to end on its own rather than hang the test).
const STOP_WAIT: Duration = Duration::from_millis(500);

/// How long `/die/N` waits for the client's kernel to acknowledge the N
/// bytes before it resets the connection anyway.
const DIE_WAIT: Duration = IO_TIMEOUT;

/// What an upstream does with each connection.
#[derive(Debug)]
enum Service {
    /// [`Upstream::echo`].
    Echo,
    /// [`Upstream::http`], with its files by path.
    Http(HashMap<String, Vec<u8>>),
}

/// What the accept thread and the connection threads of one upstream
/// share with it.
#[derive(Debug)]
struct Shared {
    service: Service,
    /// Set by the drop: the accept thread stops, and `/die/N` stops
    /// waiting.
    stop: AtomicBool,
    accepted: AtomicUsize,
    open: AtomicUsize,
    /// A clone of every open connection's socket, by connection number,
    /// for the drop to shut down: a thread blocked on a peer that never
    /// reads would otherwise keep the drop waiting.
    streams: Mutex<HashMap<u64, TcpStream>>,
}

impl Shared {
    /// The open connections' sockets. A thread that panicked while holding
    /// the lock left the map consistent (every change is one call), so a
    /// poisoned lock is used as it is.
    fn streams(&self) -> MutexGuard<'_, HashMap<u64, TcpStream>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A server on 127.0.0.1 at a port the OS picks, run by threads of the
/// test process: one accepts, one more serves each connection. Dropping
/// it closes the port, shuts down every connection (the peer sees its
/// end, the threads stop at once) and waits briefly for the threads.
#[derive(Debug)]
pub struct Upstream {
    port: u16,
    shared: Arc<Shared>,
    /// The accept thread, which returns the connection threads still
    /// running when it stops.
    accepter: Option<JoinHandle<Vec<JoinHandle<()>>>>,
}

impl Upstream {
    /// A server that writes back whatever it receives. When its peer
    /// half-closes (a read returns 0) it sends what is left, then shuts
    /// down its own write side and closes; a reset or an error closes it
    /// at once.
    pub fn echo() -> Upstream {
        Upstream::start(Service::Echo)
    }

    /// A small HTTP/1.0 server serving `files` (path, body; the last one
    /// given for a path wins). It reads one request head per connection
    /// (up to a blank line, `\r\n\r\n` or `\n\n`, at most [`MAX_HEAD`]
    /// bytes; a client that closes or sends more first gets no answer),
    /// answers `HTTP/1.0 CODE REASON` with `Server`, `Content-Type` and
    /// `Content-Length` headers (no `Date`: the same request gets the same
    /// bytes every time) and closes the connection normally. The method
    /// does not matter; the path does, exactly as sent (no query string is
    /// stripped):
    ///
    /// * a path of `files`: `200 OK` with that body;
    /// * `/bytes/N`: `200 OK` with N bytes of [`pattern`], written 64 KiB
    ///   at a time with blocking writes, so a client that stops reading
    ///   stops the server too (TCP's backpressure). A client that leaves
    ///   ends the response quietly;
    /// * `/die/N`: headers announcing 2N bytes, then the first N bytes of
    ///   [`pattern`], then an abortive close (a reset): the server dies
    ///   mid-response. It resets only once the client's kernel has
    ///   acknowledged the N bytes (or after [`IO_TIMEOUT`]), since a reset
    ///   throws away whatever is still unsent: the client can read all N
    ///   bytes before its read fails with `ECONNRESET`;
    /// * `/after-eof`: reads on after the head until the client
    ///   half-closes, then answers `200 OK` with the body `got N bytes
    ///   after the head\n`, where N counts every byte that came after the
    ///   head (the body of a POST, say): proof that a proxy passed the
    ///   half-close on;
    /// * `/slow/N`: `200 OK` with N bytes of [`pattern`], 1 KiB at a time,
    ///   1 ms apart: a response still on its way while a test acts;
    /// * a request line that is not `METHOD /PATH HTTP/1.x`: `400 Bad
    ///   Request`;
    /// * anything else: `404 Not Found`.
    ///
    /// Error pages are `text/html; charset=utf-8`, every other body
    /// `application/octet-stream`.
    pub fn http(files: Vec<(String, Vec<u8>)>) -> Upstream {
        Upstream::start(Service::Http(files.into_iter().collect()))
    }

    /// [`Upstream::echo`] on 127.0.0.1:`port` (0: any free port), for a
    /// tool that needs it at a known place. Fails if the port is taken.
    pub fn echo_on(port: u16) -> io::Result<Upstream> {
        Upstream::start_on(port, Service::Echo)
    }

    /// [`Upstream::http`] on 127.0.0.1:`port` (0: any free port): the
    /// course's upstream is at port 3000. Fails if the port is taken.
    pub fn http_on(port: u16, files: Vec<(String, Vec<u8>)>) -> io::Result<Upstream> {
        Upstream::start_on(port, Service::Http(files.into_iter().collect()))
    }

    /// Binds a free port and starts the accept thread. Panics if either
    /// fails: a test cannot go on without its upstream.
    fn start(service: Service) -> Upstream {
        Upstream::start_on(0, service)
            .unwrap_or_else(|err| panic!("start an upstream on 127.0.0.1: {err}"))
    }

    /// Binds `port` and starts the accept thread.
    fn start_on(port: u16, service: Service) -> io::Result<Upstream> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
        // std listens with a backlog of 128. A proxy under test dials a
        // connection per client, and a burst of them faster than this
        // thread accepts would overflow the queue: the kernel drops the
        // SYN and the proxy's connect() waits a 1 s retry. A second
        // listen() on a listening socket only sets a new backlog.
        // SAFETY: the fd is the listener's own, open for this whole call;
        // listen() takes no pointer.
        if unsafe { libc::listen(listener.as_raw_fd(), UPSTREAM_BACKLOG) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // The accept thread waits in poll() with a timeout, so that it sees
        // the stop flag; a client that connects and resets before accept()
        // must not leave it blocked there.
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            service,
            stop: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            streams: Mutex::new(HashMap::new()),
        });
        let accepter = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("upstream-{port}"))
                .spawn(move || accept_all(&listener, &shared))?
        };
        Ok(Upstream { port, shared, accepter: Some(accepter) })
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, as the proxy's `--upstream` takes it.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// How many connections it has accepted so far. A connection counts
    /// once `accept()` returned it, which may be a moment after the
    /// client's `connect()` returned: wait for the count rather than read
    /// it right after connecting.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// How many of them are still open on its side. A connection counts
    /// until its thread has closed the socket, because the peer closed or
    /// reset it, or the response was done; so once this drops, the peer
    /// has been sent the FIN or the reset.
    pub fn open(&self) -> usize {
        self.shared.open.load(Ordering::Relaxed)
    }

    /// Waits up to `timeout` until [`Upstream::open`] is `n`, and says
    /// whether it got there.
    pub fn wait_open(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.open() == n)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // The accept thread first: once it has returned, no connection can
        // be added behind the shutdowns below.
        let threads =
            self.accepter.take().and_then(|accepter| accepter.join().ok()).unwrap_or_default();
        for stream in self.shared.streams().values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        // The lock is released: each thread takes it to drop its clone.
        wait_until(STOP_WAIT, || threads.iter().all(JoinHandle::is_finished));
        for thread in threads {
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

/// The accept thread: accepts clients and starts a thread for each until
/// the stop flag is set. Returns the threads still running then.
fn accept_all(listener: &TcpListener, shared: &Arc<Shared>) -> Vec<JoinHandle<()>> {
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    let mut number = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        if !readable(listener) {
            continue;
        }
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(err)
                if matches!(
                    err.kind(),
                    ErrorKind::WouldBlock | ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                ) =>
            {
                continue;
            }
            // Out of file descriptors, say: wait for some to be freed
            // rather than spin.
            Err(_) => {
                thread::sleep(POLL_INTERVAL);
                continue;
            }
        };
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        // A finished thread's handle, dropped, lets its stack go.
        threads.retain(|thread| !thread.is_finished());
        threads.extend(Connection::start(shared, number, stream));
        number += 1;
    }
    threads
}

/// Waits up to [`ACCEPT_POLL_MS`] for `listener` to have a client to
/// accept, and says whether it has.
fn readable(listener: &TcpListener) -> bool {
    let mut poll = libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: `poll` is one valid pollfd that outlives the call, and the
    // count passed is 1.
    let ret = unsafe { libc::poll(&raw mut poll, 1, ACCEPT_POLL_MS) };
    if ret < 0 {
        // EINTR, or worse: never spin on an error.
        thread::sleep(POLL_INTERVAL);
    }
    ret > 0
}

/// One accepted connection, as its thread holds it. Dropping it closes
/// the socket and only then counts it closed, whatever ended the thread
/// (a panic included).
struct Connection {
    /// The socket, until the drop.
    stream: Option<TcpStream>,
    /// Its number, under which its clone is in [`Shared::streams`].
    number: u64,
    shared: Arc<Shared>,
}

impl Connection {
    /// Counts `stream` open and starts its thread. Returns the thread, or
    /// `None` if it could not start (the connection is then closed).
    fn start(shared: &Arc<Shared>, number: u64, stream: TcpStream) -> Option<JoinHandle<()>> {
        shared.open.fetch_add(1, Ordering::Relaxed);
        let clone = stream.try_clone();
        let connection = Connection { stream: Some(stream), number, shared: Arc::clone(shared) };
        // Without a clone the drop could not end this connection's waits:
        // better not to serve it (dropping `connection` closes it).
        let Ok(clone) = clone else { return None };
        shared.streams().insert(number, clone);
        thread::Builder::new()
            .name(format!("upstream-conn-{number}"))
            .spawn(move || connection.serve())
            .ok()
    }

    /// Serves the connection as the upstream's [`Service`] says, then
    /// closes it (FIN or reset).
    fn serve(mut self) {
        let Some(mut stream) = self.stream.take() else { return };
        // Failing to set these only loses the safety net.
        let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
        let _ = stream.set_write_timeout(Some(IDLE_TIMEOUT));
        let _ = stream.set_nodelay(true);
        let end = match &self.shared.service {
            Service::Echo => echo(&mut stream),
            Service::Http(files) => http(&mut stream, files, &self.shared.stop),
        };
        match end {
            End::Close => close(stream),
            End::Reset => reset_stream(stream),
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        drop(self.stream.take());
        // The clone is the socket's last descriptor: closing it sends the
        // FIN (or, after `reset_stream`, the reset), and only then does
        // the connection stop counting as open.
        drop(self.shared.streams().remove(&self.number));
        self.shared.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How a connection's service wants it closed.
enum End {
    /// Normally, with a FIN after the last byte.
    Close,
    /// Abortively, with a reset.
    Reset,
}

/// Closes `stream` normally. Whatever the peer sent that nobody read is
/// read first: closing a socket with unread bytes sends a reset instead
/// of a FIN, and throws away the end of a response still in the send
/// buffer.
fn close(stream: TcpStream) {
    if stream.set_nonblocking(true).is_ok() {
        let mut buffer = vec![0; PIECE];
        // A bound, against a peer that sends faster than this reads.
        for _ in 0..64 {
            if !matches!((&stream).read(&mut buffer), Ok(n) if n > 0) {
                break;
            }
        }
    }
}

/// [`Upstream::echo`]'s service.
fn echo(stream: &mut TcpStream) -> End {
    let mut buffer = vec![0; PIECE];
    loop {
        match stream.read(&mut buffer) {
            // Everything read has been written back already.
            Ok(0) => {
                let _ = stream.shutdown(Shutdown::Write);
                return End::Close;
            }
            Ok(n) => {
                if stream.write_all(&buffer[..n]).is_err() {
                    return End::Close;
                }
            }
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(_) => return End::Close,
        }
    }
}

/// [`Upstream::http`]'s service. Write errors end it quietly: the client
/// left.
fn http(stream: &mut TcpStream, files: &HashMap<String, Vec<u8>>, stop: &AtomicBool) -> End {
    let Some((head, after_head)) = read_head(stream) else { return End::Close };
    let Some(path) = request_path(&head) else {
        let _ = respond(stream, "400 Bad Request", HTML, error_page("400 Bad Request").as_bytes());
        return End::Close;
    };
    if let Some(body) = files.get(path) {
        let _ = respond(stream, "200 OK", BINARY, body);
    } else if let Some(n) = number_after(path, "/bytes/") {
        let _ = send_pattern(stream, n, n, PIECE, Duration::ZERO);
    } else if let Some(n) = number_after(path, "/die/").filter(|n| n.checked_mul(2).is_some()) {
        let _ = send_pattern(stream, 2 * n, n, PIECE, Duration::ZERO);
        wait_acknowledged(stream, stop);
        return End::Reset;
    } else if path == "/after-eof" {
        let Some(n) = count_until_eof(stream, after_head.len()) else { return End::Close };
        let _ =
            respond(stream, "200 OK", BINARY, format!("got {n} bytes after the head\n").as_bytes());
    } else if let Some(n) = number_after(path, "/slow/") {
        let _ = send_pattern(stream, n, n, SLOW_PIECE, SLOW_PAUSE);
    } else {
        let _ = respond(stream, "404 Not Found", HTML, error_page("404 Not Found").as_bytes());
    }
    End::Close
}

/// The content type of error pages.
const HTML: &str = "text/html; charset=utf-8";

/// The content type of every other body.
const BINARY: &str = "application/octet-stream";

/// A small HTML page for an error status such as `404 Not Found`.
fn error_page(status: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><title>{status}</title></head><body><h1>{status}</h1></body></html>\n"
    )
}

/// A response's status line and headers, up to and with the blank line.
fn response_head(status: &str, content_type: &str, length: u64) -> String {
    format!(
        "HTTP/1.0 {status}\r\nServer: {SERVER}\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
    )
}

/// Sends a whole response in one write.
fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
) -> io::Result<()> {
    let mut response = response_head(status, content_type, body.len() as u64).into_bytes();
    response.extend_from_slice(body);
    stream.write_all(&response)
}

/// Sends a `200 OK` head announcing `length` bytes, then the first `n`
/// bytes of [`pattern`], `piece` bytes per write with `pause` between.
fn send_pattern(
    stream: &mut TcpStream,
    length: u64,
    n: u64,
    piece: usize,
    pause: Duration,
) -> io::Result<()> {
    stream.write_all(response_head("200 OK", BINARY, length).as_bytes())?;
    let mut sent = 0;
    while sent < n {
        let len = piece.min(usize::try_from(n - sent).unwrap_or(usize::MAX));
        stream.write_all(&pattern(sent, len))?;
        sent += len as u64;
        if sent < n && !pause.is_zero() {
            thread::sleep(pause);
        }
    }
    Ok(())
}

/// Waits until the peer's kernel has acknowledged every byte written to
/// `stream`, so that a reset now loses none of them; at most
/// [`DIE_WAIT`], and no longer once the upstream is dropped.
fn wait_acknowledged(stream: &TcpStream, stop: &AtomicBool) {
    let deadline = Instant::now() + DIE_WAIT;
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        let mut unacknowledged: libc::c_int = 0;
        // SAFETY: TIOCOUTQ (SIOCOUTQ on a socket: bytes sent but not yet
        // acknowledged, or not yet sent) writes one c_int through the
        // pointer, which points to `unacknowledged` and outlives the call.
        let ret =
            unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &raw mut unacknowledged) };
        if ret != 0 || unacknowledged == 0 {
            return;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// Reads a request head, up to and with the blank line that ends it.
/// Returns the head and the bytes that came after it in the same reads,
/// or `None` if the peer closed, failed or sent [`MAX_HEAD`] bytes first.
fn read_head(stream: &mut TcpStream) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut head = Vec::new();
    let mut buffer = vec![0; 4096];
    loop {
        if let Some(end) = head_end(&head) {
            let after = head.split_off(end);
            return Some((head, after));
        }
        let room = buffer.len().min(MAX_HEAD - head.len());
        if room == 0 {
            return None;
        }
        match stream.read(&mut buffer[..room]) {
            Ok(0) => return None,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// Where the head at the start of `bytes` ends: just after its first
/// empty line (`\n\n` or `\n\r\n`, so `\r\n\r\n` too), if it has one.
fn head_end(bytes: &[u8]) -> Option<usize> {
    bytes.iter().enumerate().filter(|&(_, &byte)| byte == b'\n').find_map(|(i, _)| {
        match bytes[i + 1..] {
            [b'\n', ..] => Some(i + 2),
            [b'\r', b'\n', ..] => Some(i + 3),
            _ => None,
        }
    })
}

/// The path of a request line `METHOD /PATH HTTP/1.x`, the first line of
/// `head`, or `None` if it is not one.
fn request_path(head: &[u8]) -> Option<&str> {
    let line = head.split(|&byte| byte == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    match line.split_ascii_whitespace().collect::<Vec<_>>()[..] {
        [_method, path, version] if path.starts_with('/') && version.starts_with("HTTP/1.") => {
            Some(path)
        }
        _ => None,
    }
}

/// N in a path `PREFIX` + N, N a decimal number.
fn number_after(path: &str, prefix: &str) -> Option<u64> {
    let digits = path.strip_prefix(prefix)?;
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Reads until the peer half-closes, and returns how many bytes came,
/// `already` more; `None` if the connection failed first.
fn count_until_eof(stream: &mut TcpStream, already: usize) -> Option<u64> {
    let mut count = already as u64;
    let mut buffer = vec![0; PIECE];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return Some(count),
            Ok(n) => count += n as u64,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// One echo upstream ([`Upstream::echo`]) for the whole test process,
/// started on first use and never stopped. The checks give its address to
/// every stage that forwards ([`crate::checks::launch::with_upstream`]),
/// and a [`crate::server::Launch`] keeps only the address: the upstream
/// must outlive every server started with it. Its counts are those of
/// every check of the process together, so a test that counts
/// connections starts an upstream of its own.
pub fn echo_for_checks() -> &'static Upstream {
    static ECHO: OnceLock<Upstream> = OnceLock::new();
    ECHO.get_or_init(Upstream::echo)
}

/// The bytes `/bytes/N` sends, from byte `offset` on, `len` of them.
///
/// Every 8 bytes are a 64-bit hash of their position (splitmix64's
/// finaliser, little-endian), so the stream repeats over no length a test
/// could send: a byte lost, doubled or moved shows in any slice, and a
/// test can check any slice of a long transfer without holding it whole.
pub fn pattern(offset: u64, len: usize) -> Vec<u8> {
    let skip = (offset % 8) as usize;
    let first = offset / 8;
    let mut bytes = Vec::with_capacity(skip + len + 8);
    let mut word = first;
    while bytes.len() < skip + len {
        bytes.extend_from_slice(&mix(word).to_le_bytes());
        word += 1;
    }
    bytes.truncate(skip + len);
    bytes.drain(..skip);
    bytes
}

/// splitmix64's output for the state `word`: every bit of the result
/// depends on every bit of `word`.
fn mix(word: u64) -> u64 {
    let mut z = word.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Sends `GET PATH HTTP/1.0` (and a blank line) to 127.0.0.1:`port`, and
/// reads the response until the server closes the connection, each read
/// waiting at most [`IO_TIMEOUT`]. For the small responses a test
/// compares whole, through the proxy and directly; an error (a reset, a
/// timeout) loses what had arrived.
pub fn http_get(port: u16, path: &str) -> io::Result<Vec<u8>> {
    let mut stream = connect_stream((Ipv4Addr::LOCALHOST, port), IO_TIMEOUT)?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(response)
}

/// A response split into its head (the status line and headers, without
/// the blank line after them) and its body; `None` if it has no blank
/// line or its head is not UTF-8.
pub fn split_response(response: &[u8]) -> Option<(&str, &[u8])> {
    let end = head_end(response)?;
    let head = std::str::from_utf8(&response[..end]).ok()?;
    Some((head.trim_end(), &response[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client socket whose every read and write waits at most 2 s.
    fn connect(upstream: &Upstream) -> TcpStream {
        connect_stream((Ipv4Addr::LOCALHOST, upstream.port()), Duration::from_secs(2)).unwrap()
    }

    /// Reads until the peer closes, and says whether it closed normally
    /// (`Ok`) or with an error such as a reset (`Err`, with what came).
    fn read_all(stream: &mut TcpStream) -> Result<Vec<u8>, (Vec<u8>, io::Error)> {
        let mut bytes = Vec::new();
        let mut buffer = vec![0; PIECE];
        loop {
            match stream.read(&mut buffer) {
                Ok(0) => return Ok(bytes),
                Ok(n) => bytes.extend_from_slice(&buffer[..n]),
                Err(err) => return Err((bytes, err)),
            }
        }
    }

    fn index() -> Upstream {
        Upstream::http(vec![("/index.html".to_string(), b"<h1>hello</h1>\n".to_vec())])
    }

    #[test]
    fn echo_writes_back_and_answers_a_half_close_with_its_own() {
        let upstream = Upstream::echo();
        assert!(upstream.addr().ends_with(&format!(":{}", upstream.port())));
        let mut client = connect(&upstream);
        client.write_all(b"hello").unwrap();
        let mut reply = [0; 5];
        client.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"hello");

        // The last bytes come back before the echo's own FIN.
        client.write_all(b" world").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_all(&mut client).unwrap(), b" world");
        assert!(upstream.wait_open(0, IO_TIMEOUT), "the echo kept the connection open");
        assert_eq!(upstream.accepted(), 1);
    }

    #[test]
    fn the_checks_share_one_echo() {
        let echo = echo_for_checks();
        assert_eq!(echo.port(), echo_for_checks().port());
        let mut client = connect(echo);
        client.write_all(b"ping\n").unwrap();
        let mut reply = [0; 5];
        client.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"ping\n");
    }

    #[test]
    fn a_file_is_served_byte_for_byte() {
        let upstream = index();
        let expected = "HTTP/1.0 200 OK\r\nServer: xps-test-upstream\r\n\
                        Content-Type: application/octet-stream\r\nContent-Length: 15\r\n\r\n\
                        <h1>hello</h1>\n";
        assert_eq!(
            String::from_utf8(http_get(upstream.port(), "/index.html").unwrap()).unwrap(),
            expected
        );

        // Bytes after the head that nobody reads (a body, here longer than
        // the head's reads) do not turn the close into a reset.
        let mut client = connect(&upstream);
        let mut request = b"PUT /index.html HTTP/1.0\r\n\r\n".to_vec();
        request.extend_from_slice(&[b'x'; 20_000]);
        client.write_all(&request).unwrap();
        assert_eq!(String::from_utf8(read_all(&mut client).unwrap()).unwrap(), expected);

        // A bare `\n\n` ends a head too, and a request line of another
        // method is answered the same.
        let mut client = connect(&upstream);
        client.write_all(b"POST /index.html HTTP/1.1\nHost: x\n\n").unwrap();
        assert_eq!(String::from_utf8(read_all(&mut client).unwrap()).unwrap(), expected);
    }

    #[test]
    fn an_unknown_path_is_404_and_a_bad_request_400() {
        let upstream = index();
        for (path, status) in [("/nothing", "404 Not Found"), ("/bytes/x", "404 Not Found")] {
            let response = http_get(upstream.port(), path).unwrap();
            let (head, body) = split_response(&response).unwrap();
            assert!(head.starts_with(&format!("HTTP/1.0 {status}\r\n")), "{head}");
            assert!(head.contains("\r\nContent-Type: text/html; charset=utf-8\r\n"), "{head}");
            assert!(head.ends_with(&format!("\r\nContent-Length: {}", body.len())), "{head}");
            assert!(!head.contains("Date"), "{head}");
        }
        let mut client = connect(&upstream);
        client.write_all(b"hello\r\n\r\n").unwrap();
        let response = read_all(&mut client).unwrap();
        assert!(response.starts_with(b"HTTP/1.0 400 Bad Request\r\n"));

        // A client that leaves before the end of its head gets nothing.
        let mut client = connect(&upstream);
        client.write_all(b"GET /index.html HTTP/1.0\r\n").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_all(&mut client).unwrap(), b"");
    }

    #[test]
    fn bytes_sends_the_pattern_and_any_slice_of_it_can_be_checked() {
        let upstream = index();
        let response = http_get(upstream.port(), "/bytes/1000000").unwrap();
        let (head, body) = split_response(&response).unwrap();
        assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
        assert!(head.ends_with("\r\nContent-Length: 1000000"), "{head}");
        assert!(body == pattern(0, 1_000_000), "the body is not the pattern");
        assert_eq!(pattern(500, 10), body[500..510]);
        for (offset, len) in [(0, 0), (1, 7), (7, 9), (8, 8), (999_983, 17)] {
            assert_eq!(pattern(offset, len), body[offset as usize..][..len], "at {offset}");
        }
        // No shift of it repeats its start: a moved byte shows.
        let start = &body[..16];
        assert!(body.windows(16).skip(1).all(|window| window != start));
    }

    /// Asks for `/die/N`, does `meanwhile` without reading, then reads the
    /// response and checks it is the N bytes promised, then a reset.
    fn check_death(n: usize, meanwhile: impl FnOnce(&Upstream)) {
        let upstream = index();
        let mut client = connect(&upstream);
        client.write_all(format!("GET /die/{n} HTTP/1.0\r\n\r\n").as_bytes()).unwrap();
        meanwhile(&upstream);
        let (response, err) = read_all(&mut client).expect_err("the stream ended normally");
        assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
        let (head, body) = split_response(&response).unwrap();
        assert!(head.ends_with(&format!("\r\nContent-Length: {}", 2 * n)), "{head}");
        assert!(body == pattern(0, n), "{} bytes, not the pattern's {n}", body.len());
    }

    #[test]
    fn die_sends_half_the_body_then_resets() {
        // The bytes already with the client are still read after the
        // reset has come...
        check_death(30_000, |upstream| {
            assert!(upstream.wait_open(0, IO_TIMEOUT), "the upstream never reset");
        });
        // ...and the upstream resets only once the client has them all,
        // though most of them wait in its send buffer until the client
        // reads (a reset would throw them away).
        check_death(2_000_000, |_| thread::sleep(Duration::from_millis(100)));
    }

    #[test]
    fn after_eof_counts_what_came_after_the_head() {
        let upstream = index();
        let mut client = connect(&upstream);
        // Some of it in the same write as the head, the rest later.
        client.write_all(b"POST /after-eof HTTP/1.0\r\n\r\nabc").unwrap();
        client.write_all(&[b'x'; 100_000]).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let response = read_all(&mut client).unwrap();
        let (head, body) = split_response(&response).unwrap();
        assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
        assert_eq!(body, b"got 100003 bytes after the head\n");
    }

    #[test]
    fn slow_trickles_the_pattern() {
        let upstream = index();
        let started = Instant::now();
        let response = http_get(upstream.port(), "/slow/5000").unwrap();
        let (_, body) = split_response(&response).unwrap();
        assert!(body == pattern(0, 5000));
        // Five pieces, four pauses of at least a millisecond.
        assert!(started.elapsed() >= Duration::from_millis(4), "{:?}", started.elapsed());
    }

    #[test]
    fn connections_are_counted_until_closed() {
        let upstream = Upstream::echo();
        let clients: Vec<TcpStream> = (0..3).map(|_| connect(&upstream)).collect();
        assert!(wait_until(IO_TIMEOUT, || upstream.accepted() == 3));
        assert!(upstream.wait_open(3, IO_TIMEOUT));
        assert!(!upstream.wait_open(2, Duration::from_millis(20)));
        let mut clients = clients.into_iter();
        drop(clients.next());
        assert!(upstream.wait_open(2, IO_TIMEOUT));
        reset_stream(clients.next().unwrap());
        assert!(upstream.wait_open(1, IO_TIMEOUT));
        drop(clients);
        assert!(upstream.wait_open(0, IO_TIMEOUT));
        assert_eq!(upstream.accepted(), 3);

        // An HTTP connection closes on its side once the response is done.
        let upstream = index();
        let mut client = connect(&upstream);
        client.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").unwrap();
        assert!(upstream.wait_open(0, IO_TIMEOUT));
        assert!(read_all(&mut client).unwrap().ends_with(b"<h1>hello</h1>\n"));
        assert_eq!(upstream.accepted(), 1);
    }

    #[test]
    fn a_drop_ends_a_response_nobody_reads_at_once() {
        let upstream = index();
        let port = upstream.port();
        let mut client = connect(&upstream);
        client.write_all(b"GET /bytes/100000000 HTTP/1.0\r\n\r\n").unwrap();
        let mut first = [0; 100];
        client.read_exact(&mut first).unwrap();
        // Until the buffers on the way are full and the server's write
        // blocks (the client reads no more).
        thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        drop(upstream);
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());

        // The client sees the end of what was on the way (the buffers hold
        // a few MiB), not the rest of the 100 MB, and the port is closed.
        let rest = match read_all(&mut client) {
            Ok(rest) => rest,
            Err((rest, err)) => {
                assert!(!matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut));
                rest
            }
        };
        assert!(rest.len() < 20 << 20, "{} bytes came after the drop", rest.len());
        let refused = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{refused}");
    }
}
