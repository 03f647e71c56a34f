//! The listener: `xps_listener.c`. A listening TCP socket on one port; when
//! a client connects, the loop calls [`listener_connection_handler`], which
//! accepts it and creates a connection.

use crate::core::xps_core::XpsCore;
use crate::core::xps_loop::EventCallbacks;
use crate::core::xps_slots::Id;
use crate::logger;
use crate::network::xps_connection::XpsConnection;
use crate::utils::xps_logger::LogLevel;
use crate::utils::xps_utils::{check_os, make_socket_non_blocking, xps_getaddrinfo};
use crate::xps::DEFAULT_BACKLOG;
use std::fs::File;
use std::io;
use std::net::{SocketAddrV4, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The id of a listener in `core.listeners`.
pub type ListenerId = Id<XpsListener>;

// ANCHOR: xps_listener
/// One listening socket: `xps_listener_t` in C.
///
/// C stores a `core` back-pointer here. In Rust the core owns the listener
/// and hands itself to the callbacks, so the listener needs no pointer back.
#[derive(Debug)]
pub struct XpsListener {
    /// The host it was asked to listen on, as given on the command line.
    pub host: String,
    /// The port it listens on: the real one, even when 0 was asked for.
    pub port: u16,
    /// The listening socket (`sock_fd` in C), closed when dropped.
    pub socket: TcpListener,
    /// An fd held in reserve for when the process runs out (not in the
    /// course; see `refuse_one_client`).
    pub spare_fd: Option<File>,
    /// True while accept() fails for lack of fds, so that is logged once.
    pub out_of_fds: bool,
}
// ANCHOR_END: xps_listener

impl XpsListener {
    // ANCHOR: create
    /// `xps_listener_create()`: opens a listening socket on `host:port`,
    /// adds the listener to the core and attaches it to the loop. Returns
    /// the listener's id.
    ///
    /// Every failure is logged as an ERROR naming host and port; whatever was
    /// opened so far is closed by `Drop` on the way out.
    pub fn create(core: &mut XpsCore, host: &str, port: u16) -> io::Result<ListenerId> {
        let fail = |step: &str, err: io::Error| {
            logger!(
                LogLevel::Error,
                "xps_listener_create()",
                "{step} failed for {host}:{port}: {err}"
            );
            err
        };
        let addr = xps_getaddrinfo(host, port).map_err(|err| fail("resolving the host", err))?;
        let socket = open_listening_socket(addr).map_err(|(step, err)| fail(step, err))?;
        let port = socket.local_addr().map_err(|err| fail("getsockname()", err))?.port();
        let fd = socket.as_raw_fd();

        let spare_fd = File::open("/dev/null").ok();
        let listener =
            XpsListener { host: host.to_string(), port, socket, spare_fd, out_of_fds: false };
        let id = core.listeners.insert(listener);
        let callbacks = EventCallbacks::Listener { ptr: id, read_cb: listener_connection_handler };
        if let Err(err) = core.event_loop.attach(fd, libc::EPOLLIN as u32, callbacks) {
            // Undo the insert; dropping the listener closes its socket.
            core.listeners.remove(id);
            return Err(fail("xps_loop_attach()", err));
        }
        logger!(LogLevel::Debug, "xps_listener_create()", "created listener on {host}:{port}");
        Ok(id)
    }
    // ANCHOR_END: create

    // ANCHOR: destroy
    /// `xps_listener_destroy()`: detaches the listener from the loop, empties
    /// its slot in the core and closes its socket.
    pub fn destroy(core: &mut XpsCore, id: ListenerId) {
        let Some(listener) = core.listeners.remove(id) else { return };
        // An error here has been logged by the loop; the socket is closed
        // below either way.
        let _ = core.event_loop.detach(listener.socket.as_raw_fd());
        logger!(
            LogLevel::Debug,
            "xps_listener_destroy()",
            "destroyed listener on {}:{}",
            listener.host,
            listener.port
        );
    }
    // ANCHOR_END: destroy
}

// ANCHOR: open_listening_socket
/// `socket()`, `setsockopt(SO_REUSEADDR)`, `bind()` and `listen()`: the four
/// calls that make a listening socket. On failure, says which call failed.
///
/// `std::net::TcpListener::bind` does the same, but with its own backlog;
/// the course asks for `DEFAULT_BACKLOG`, so the calls are made by hand and
/// the result handed to `TcpListener`, whose safe `accept()` we then use.
fn open_listening_socket(addr: SocketAddrV4) -> Result<TcpListener, (&'static str, io::Error)> {
    let flags = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: socket() takes no pointers; the result is checked.
    let raw =
        check_os(unsafe { libc::socket(libc::AF_INET, flags, 0) }).map_err(|e| ("socket()", e))?;
    // SAFETY: `raw` is a new, valid fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };

    // Without SO_REUSEADDR, a server restarted right after Ctrl+C could not
    // bind its port while old connections sit in TIME_WAIT.
    let enable: libc::c_int = 1;
    // SAFETY: the option value points to a c_int that outlives the call,
    // and its size is passed with it.
    let set = check_os(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&raw const enable).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    });
    set.map_err(|e| ("setsockopt(SO_REUSEADDR)", e))?;

    let sockaddr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*addr.ip()).to_be() },
        sin_zero: [0; 8],
    };
    // SAFETY: `sockaddr` is a valid sockaddr_in that outlives the call, and
    // its exact size is passed with it.
    let bound = check_os(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const sockaddr).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    });
    bound.map_err(|e| ("bind()", e))?;

    // SAFETY: listen() takes no pointers; the result is checked.
    check_os(unsafe { libc::listen(fd.as_raw_fd(), DEFAULT_BACKLOG) })
        .map_err(|e| ("listen()", e))?;
    Ok(TcpListener::from(fd))
}
// ANCHOR_END: open_listening_socket

// ANCHOR: connection_handler
/// Called by the loop when listener `ptr` has a client waiting: accepts it
/// and creates a connection for it (`listener_connection_handler()`).
fn listener_connection_handler(core: &mut XpsCore, ptr: ListenerId) {
    let Some(listener) = core.listeners.get_mut(ptr) else { return };
    let port = listener.port;
    let socket = match listener.socket.accept() {
        Ok((socket, _peer)) => {
            listener.accepting_again();
            socket
        }
        // Woken with nothing to accept after all: the listening socket is
        // non-blocking, so accept() says so instead of freezing the loop.
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
        Err(err) if is_out_of_fds(&err) => {
            listener.refuse_one_client(&err);
            return;
        }
        Err(err) => {
            logger!(LogLevel::Error, "listener_connection_handler()", "accept() failed: {err}");
            return;
        }
    };
    // The heart of stage 8: a connection's send() must never wait for its
    // client, or every other client waits too (stage 7's Experiment 1).
    if let Err(err) = make_socket_non_blocking(socket.as_raw_fd()) {
        // Dropping the socket closes it: the client sees its connection closed.
        logger!(
            LogLevel::Error,
            "listener_connection_handler()",
            "make_socket_non_blocking() failed: {err}"
        );
        return;
    }
    // On failure the socket has been dropped, which closes it: the client
    // sees its connection closed. The error is already logged.
    if let Ok(id) = XpsConnection::create(core, socket, ptr)
        && let Some(connection) = core.connections.get(id)
    {
        logger!(
            LogLevel::Info,
            "listener_connection_handler()",
            "new connection from {} on port {port}",
            connection.remote_ip
        );
    }
}
// ANCHOR_END: connection_handler

// ANCHOR: out_of_fds
// Beyond the course: running out of file descriptors.
//
// A process may only have so many fds open (`ulimit -n`, often 1024). With
// all of them in use, accept() fails with EMFILE and the client stays in the
// listen queue. epoll is level-triggered, so it reports the listener ready
// again at once: the loop would spin at full CPU, logging an error on every
// turn, until some client leaves. The way out, used by libuv among others,
// is an fd kept in reserve: give it up, accept the waiting client into the
// slot it frees, close that client at once (it sees its connection closed
// instead of hanging in the queue), and take the reserve back.
impl XpsListener {
    /// Turns away one waiting client while the process is out of fds.
    fn refuse_one_client(&mut self, err: &io::Error) {
        if !self.out_of_fds {
            self.out_of_fds = true;
            logger!(
                LogLevel::Error,
                "listener_connection_handler()",
                "accept() failed on port {}: {err}; closing new clients until fds are free",
                self.port
            );
        }
        self.spare_fd = None;
        if let Ok((client, _peer)) = self.socket.accept() {
            drop(client);
        }
        self.spare_fd = File::open("/dev/null").ok();
    }

    /// Notes that accept() works again after running out of fds.
    fn accepting_again(&mut self) {
        if self.out_of_fds {
            self.out_of_fds = false;
            logger!(
                LogLevel::Info,
                "listener_connection_handler()",
                "fds are free again: accepting on port {}",
                self.port
            );
        }
    }
}

/// True for the errors that mean "no file descriptor left".
fn is_out_of_fds(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}
// ANCHOR_END: out_of_fds

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::xps_loop::tests::serial;
    use std::net::{Ipv4Addr, TcpStream};
    use std::time::{Duration, Instant};

    /// Only "no fd left" turns a client away; any other failure of
    /// accept() is about that one client or the listener, not the limit.
    #[test]
    fn only_emfile_and_enfile_mean_out_of_fds() {
        let error = io::Error::from_raw_os_error;
        assert!(is_out_of_fds(&error(libc::EMFILE)));
        assert!(is_out_of_fds(&error(libc::ENFILE)));
        for other in [libc::EAGAIN, libc::ECONNABORTED, libc::ENOBUFS, libc::EINVAL] {
            assert!(!is_out_of_fds(&error(other)), "errno {other}");
        }
    }

    /// The lesson of the stage in one test: a client's socket that blocks
    /// would let one client that never reads freeze every other.
    #[test]
    fn an_accepted_client_gets_a_non_blocking_socket() {
        let _serial = serial();
        let mut core = XpsCore::create().unwrap();
        let listener = XpsListener::create(&mut core, "127.0.0.1", 0).unwrap();
        let port = core.listeners.get(listener).unwrap().socket.local_addr().unwrap().port();
        let _client = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        while core.connections.ids().is_empty() {
            assert!(Instant::now() < deadline, "the client was never accepted");
            listener_connection_handler(&mut core, listener);
            std::thread::sleep(Duration::from_millis(5));
        }
        let id = core.connections.ids()[0];
        let fd = core.connections.get(id).unwrap().socket.as_raw_fd();
        // SAFETY: F_GETFL takes no pointers; `fd` is open for the call.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        assert!(flags >= 0 && flags & libc::O_NONBLOCK != 0, "the client's socket blocks");
        core.destroy();
    }
}
