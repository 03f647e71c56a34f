//! `xps-upstream`: the test upstreams of `shared::upstream` as a process
//! of their own, for stage 11's proxy to forward to until Ctrl+C.
//!
//! ```text
//! xps-upstream                 an echo server on 127.0.0.1, port picked by the OS
//! xps-upstream --http          the small HTTP/1.0 server of the tests instead
//! xps-upstream --epoll         an echo in one epoll thread, for benchmarks
//! ```
//!
//! It prints one line, `xps-upstream: echo on 127.0.0.1:PORT`, and serves
//! until SIGINT or SIGTERM. `tools/bench-proxy.sh` runs it as the upstream
//! that stage 11, nginx and haproxy all forward to: in a process of its
//! own, so that the load generator does not pay for it.
//!
//! The tests' echo serves each connection with a thread of its own, so
//! each message a proxy forwards wakes a thread: with 100 clients that
//! upstream used more CPU than the proxy in front of it, on a machine
//! whose two cores the proxy, the upstream and the load generator share.
//! `--epoll` is the same echo in one thread and one epoll loop, which
//! costs a few microseconds a message and leaves the CPU to the proxy
//! being measured ([`epoll_echo`]).

use shared::cli::{Args, options_or_exit, unknown};
use shared::upstream::Upstream;
use std::io::{self, ErrorKind, Read, Write};
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::ExitCode;

const USAGE: &str = "\
Usage: xps-upstream [--http | --epoll]

Starts one of the upstream servers stage 11's tests use, on 127.0.0.1 at a
port the OS picks, prints
  xps-upstream: echo on 127.0.0.1:PORT
(or `http on ...`) and serves until SIGINT (Ctrl+C) or SIGTERM. Give that
address to a proxy: stage11 --upstream 127.0.0.1:PORT.

The echo writes back whatever it receives, one thread per connection, and
answers a half-close with its own. The HTTP server answers GET / with a
short page, /bytes/N with N bytes, and the other paths of the tests
(shared/src/upstream.rs). The epoll echo writes back the same bytes from
one thread, far more cheaply: the upstream of tools/bench-proxy.sh.

Options:
  --http         the HTTP/1.0 server instead of the echo
  --epoll        the echo in one thread with epoll, for benchmarks
  -h, --help     print this help";

/// Which upstream to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Echo,
    Http,
    Epoll,
}

fn parse_args<S: AsRef<str>>(args: impl IntoIterator<Item = S>) -> Result<Option<Kind>, String> {
    let mut kind = Kind::Echo;
    for flag in Args::new(args) {
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--http" => kind = Kind::Http,
            "--epoll" => kind = Kind::Epoll,
            _ => return Err(unknown(&flag)),
        }
    }
    Ok(Some(kind))
}

/// SIGINT and SIGTERM, as a signal set.
fn stop_signals() -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset() initialises the set it is given.
    unsafe { libc::sigemptyset(set.as_mut_ptr()) };
    // SAFETY: the set is initialised now.
    let mut set = unsafe { set.assume_init() };
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `set` is an initialised sigset_t and `signal` a valid
        // signal number.
        unsafe { libc::sigaddset(&mut set, signal) };
    }
    set
}

/// Blocks SIGINT and SIGTERM in this thread, and so in every thread it
/// starts afterwards: they stay pending until [`wait_for_stop`] takes one.
fn block_stop_signals() -> io::Result<()> {
    let set = stop_signals();
    // SAFETY: `set` is an initialised sigset_t that outlives the call; the
    // old mask is not asked for.
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if ret == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(ret)) }
}

/// Waits until SIGINT or SIGTERM comes, and returns it.
fn wait_for_stop() -> io::Result<libc::c_int> {
    let set = stop_signals();
    let mut signal: libc::c_int = 0;
    // SAFETY: `set` and `signal` are valid and outlive the call.
    let ret = unsafe { libc::sigwait(&set, &mut signal) };
    if ret == 0 { Ok(signal) } else { Err(io::Error::from_raw_os_error(ret)) }
}

fn main() -> ExitCode {
    let kind = match options_or_exit("xps-upstream", USAGE, parse_args(std::env::args().skip(1))) {
        Ok(kind) => kind,
        Err(status) => return status,
    };
    // Before any thread starts, so that none of them takes the signal.
    if let Err(err) = block_stop_signals() {
        eprintln!("xps-upstream: cannot block SIGINT and SIGTERM: {err}");
        return ExitCode::FAILURE;
    }
    let upstream = match kind {
        Kind::Echo => Upstream::echo(),
        Kind::Http => {
            let page = b"<h1>xps-upstream</h1>\n".to_vec();
            Upstream::http(vec![("/".to_string(), page)])
        }
        Kind::Epoll => {
            let started = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|listener| {
                let port = listener.local_addr()?.port();
                Ok((listener, signal_fd()?, port))
            });
            let served = started.and_then(|(listener, signals, port)| {
                announce("echo (epoll)", port);
                epoll_echo(listener, &signals)
            });
            return match served {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("xps-upstream: {err}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    let name = if kind == Kind::Http { "http" } else { "echo" };
    announce(name, upstream.port());
    let stopped = wait_for_stop();
    drop(upstream);
    match stopped {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xps-upstream: sigwait(): {err}");
            ExitCode::FAILURE
        }
    }
}

/// Prints the line a script waits for, at once.
fn announce(name: &str, port: u16) {
    println!("xps-upstream: {name} on 127.0.0.1:{port}");
    // A script reads the line through a pipe: it must not wait in a buffer.
    let _ = io::stdout().flush();
}

/// The most events one `epoll_wait()` returns.
const MAX_EVENTS: usize = 256;

/// The most one `recv()` of the epoll echo reads.
const ECHO_CHUNK: usize = 64 * 1024;

/// The epoll set's key for the listener and for the fd that stops the
/// loop; a connection's key is its fd, which is never either.
const LISTENER_KEY: u64 = u64::MAX;
const STOP_KEY: u64 = u64::MAX - 1;

/// One connection of the epoll echo.
struct EchoConn {
    stream: TcpStream,
    /// Bytes read and not yet written back, from `written` on. While any
    /// wait, the connection is watched for room to write, not for bytes
    /// to read: a peer that does not read stops being read from.
    pending: Vec<u8>,
    written: usize,
    /// The peer has half-closed: close once `pending` is out.
    ended: bool,
}

/// A signalfd that becomes readable when SIGINT or SIGTERM comes (they
/// must be blocked: [`block_stop_signals`]).
fn signal_fd() -> io::Result<OwnedFd> {
    let set = stop_signals();
    // SAFETY: `set` is an initialised sigset_t that outlives the call.
    let raw = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) };
    if raw == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// An echo server in one thread: a level-triggered epoll loop over
/// `listener`, its connections, and `stop`, an fd whose becoming readable
/// ends it (the signalfd of SIGINT and SIGTERM). Each readable connection
/// gets one `recv()` and one `send()` of what came; what the socket does
/// not take waits, and the connection is read again only once it is out.
/// A peer's half-close is answered, after the last byte, with a close.
fn epoll_echo(listener: TcpListener, stop: &OwnedFd) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    // SAFETY: epoll_create1() takes no pointers; the result is checked.
    let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if raw == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new fd that nothing else owns.
    let epoll = unsafe { OwnedFd::from_raw_fd(raw) };
    let control = |op, fd: RawFd, events: i32, key: u64| {
        let mut event = libc::epoll_event { events: events as u32, u64: key };
        // SAFETY: `event` is a valid epoll_event that outlives the call.
        let ret = unsafe { libc::epoll_ctl(epoll.as_raw_fd(), op, fd, &mut event) };
        if ret == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
    };
    control(libc::EPOLL_CTL_ADD, listener.as_raw_fd(), libc::EPOLLIN, LISTENER_KEY)?;
    control(libc::EPOLL_CTL_ADD, stop.as_raw_fd(), libc::EPOLLIN, STOP_KEY)?;

    let mut conns: Vec<Option<EchoConn>> = Vec::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
    let mut buffer = vec![0; ECHO_CHUNK];
    loop {
        // SAFETY: `events` holds MAX_EVENTS epoll_events that outlive the
        // call.
        let n = unsafe {
            libc::epoll_wait(epoll.as_raw_fd(), events.as_mut_ptr(), MAX_EVENTS as i32, -1)
        };
        if n == -1 {
            let err = io::Error::last_os_error();
            if err.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        for event in &events[..n as usize] {
            match event.u64 {
                STOP_KEY => return Ok(()),
                LISTENER_KEY => {
                    while let Ok((stream, _)) = listener.accept() {
                        let fd = stream.as_raw_fd();
                        if stream.set_nonblocking(true).is_err()
                            || control(libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN, fd as u64).is_err()
                        {
                            continue;
                        }
                        let _ = stream.set_nodelay(true);
                        let slot = fd as usize;
                        if conns.len() <= slot {
                            conns.resize_with(slot + 1, || None);
                        }
                        conns[slot] = Some(EchoConn {
                            stream,
                            pending: Vec::new(),
                            written: 0,
                            ended: false,
                        });
                    }
                }
                key => {
                    let slot = key as usize;
                    let Some(conn) = conns.get_mut(slot).and_then(Option::as_mut) else {
                        continue;
                    };
                    let was_waiting = conn.written < conn.pending.len();
                    let open = serve(conn, &mut buffer);
                    let waiting = conn.written < conn.pending.len();
                    if !open {
                        // Closing the socket takes it out of the epoll set.
                        conns[slot] = None;
                    } else if waiting != was_waiting {
                        let events = if waiting { libc::EPOLLOUT } else { libc::EPOLLIN };
                        let fd = conn.stream.as_raw_fd();
                        if control(libc::EPOLL_CTL_MOD, fd, events, key).is_err() {
                            conns[slot] = None;
                        }
                    }
                }
            }
        }
    }
}

/// One turn of a ready connection of the epoll echo: writes what waits,
/// or reads once and writes that back. False once it is to be closed.
fn serve(conn: &mut EchoConn, buffer: &mut [u8]) -> bool {
    if conn.written == conn.pending.len() && !conn.ended {
        match (&conn.stream).read(buffer) {
            Ok(0) => conn.ended = true,
            Ok(n) => {
                conn.pending.clear();
                conn.pending.extend_from_slice(&buffer[..n]);
                conn.written = 0;
            }
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            Err(_) => return false,
        }
    }
    while conn.written < conn.pending.len() {
        match (&conn.stream).write(&conn.pending[conn.written..]) {
            Ok(n) => conn.written += n,
            Err(err) if err.kind() == ErrorKind::WouldBlock => break,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    if conn.ended && conn.written == conn.pending.len() {
        let _ = conn.stream.shutdown(Shutdown::Write);
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_read() {
        assert_eq!(parse_args::<&str>([]), Ok(Some(Kind::Echo)));
        assert_eq!(parse_args(["--http"]), Ok(Some(Kind::Http)));
        assert_eq!(parse_args(["--epoll"]), Ok(Some(Kind::Epoll)));
        assert_eq!(parse_args(["--help"]), Ok(None));
        assert!(parse_args(["--port"]).is_err());
    }

    #[test]
    fn the_epoll_echo_writes_back_holds_what_is_not_read_and_stops() {
        use std::thread;
        use std::time::Duration;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        // SAFETY: eventfd() takes no pointers; the result is checked.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        assert!(raw >= 0);
        // SAFETY: `raw` is a new fd that nothing else owns.
        let stop = unsafe { OwnedFd::from_raw_fd(raw) };
        let stop_raw = stop.as_raw_fd();
        let server = thread::spawn(move || epoll_echo(listener, &stop));

        let mut client = TcpStream::connect(addr).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        client.write_all(b"ping\n").unwrap();
        let mut reply = [0; 5];
        client.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"ping\n");

        // 8 MiB written before any is read: far more than the sockets
        // hold, so the echo must keep what they do not take, stop reading,
        // and go on once the client reads.
        let data: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
        let writer = {
            let (mut client, data) = (client.try_clone().unwrap(), data.clone());
            thread::spawn(move || {
                client.write_all(&data).unwrap();
                client.shutdown(Shutdown::Write).unwrap();
            })
        };
        thread::sleep(Duration::from_millis(100));
        let mut back = Vec::new();
        client.read_to_end(&mut back).unwrap();
        writer.join().unwrap();
        assert!(back == data, "{} bytes came back, not the same 8 MiB", back.len());

        let one: u64 = 1;
        // SAFETY: `one` is 8 readable bytes; eventfd takes a u64.
        assert_eq!(unsafe { libc::write(stop_raw, (&raw const one).cast(), 8) }, 8);
        server.join().unwrap().unwrap();
    }
}
