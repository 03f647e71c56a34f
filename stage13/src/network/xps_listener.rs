//! The listener: `xps_listener.c`. A listening TCP socket on one port; when
//! clients connect, the loop calls [`listener_connection_handler`], which
//! accepts every one waiting and makes for each a connection and a
//! session (new in this stage). What serves the client is the session's
//! business: it reads the port's [`PortRole`] (an upstream on the proxy
//! port, a file on the file port, nothing on the others).

use crate::cli::{Config, SAMPLE_FILE, Upstream};
use crate::core::xps_core::XpsCore;
use crate::core::xps_loop::EventCallbacks;
use crate::core::xps_session::xps_session_create;
use crate::core::xps_slots::Id;
use crate::logger;
use crate::network::xps_connection::{ConnectionId, Origin, XpsConnection, close_or_linger};
use crate::utils::xps_logger::LogLevel;
use crate::utils::xps_utils::{
    check_os, make_socket_non_blocking, to_sockaddr_in, xps_getaddrinfo,
};
use crate::xps::DEFAULT_BACKLOG;
use std::fs::File;
use std::io;
use std::net::{SocketAddrV4, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

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
    /// What this port does for each client. (The course tests the port
    /// number, 8001 or 8002, in the handler; a role stored here lets any
    /// port play any part, and the tests pick their own ports.)
    pub role: PortRole,
}
// ANCHOR_END: xps_listener

// ANCHOR: port_role
/// What a port's sessions have behind them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRole {
    /// An upstream server, dialled for each client (8001).
    Proxy(Upstream),
    /// A file, `path` inside `public`, opened for each client (8002).
    File {
        /// The folder files may be served from.
        public: PathBuf,
        /// The file, relative to `public`.
        path: &'static str,
    },
    /// Nothing (8003 and 8004, as the course leaves them in this stage):
    /// the client is heard and never answered.
    Nothing,
}

impl PortRole {
    /// The role of the port at `index` in the list of ports, as the
    /// course numbers them from 8001.
    pub fn of_port(index: usize, config: &Config) -> PortRole {
        match index {
            0 => PortRole::Proxy(config.upstream.clone()),
            1 => PortRole::File { public: config.public.clone(), path: SAMPLE_FILE },
            _ => PortRole::Nothing,
        }
    }

    /// What the port does, for the log line just before its "Server
    /// listening" line. (The checks read it: a port that "serves" a file
    /// or nothing does not answer what a client sends.)
    pub fn describe(&self) -> String {
        match self {
            PortRole::Proxy(upstream) => {
                format!("forwards to upstream {}:{}", upstream.host, upstream.port)
            }
            PortRole::File { public, path } => format!("serves {path} from {}", public.display()),
            PortRole::Nothing => "serves nothing: its sessions have no backend".to_string(),
        }
    }
}
// ANCHOR_END: port_role

impl XpsListener {
    // ANCHOR: create
    /// `xps_listener_create()`: opens a listening socket on `host:port`,
    /// adds the listener to the core and attaches it to the loop. Returns
    /// the listener's id. Its clients are served as `role` says.
    ///
    /// Every failure is logged as an ERROR naming host and port; whatever was
    /// opened so far is closed by `Drop` on the way out.
    pub fn create(
        core: &mut XpsCore,
        host: &str,
        port: u16,
        role: PortRole,
    ) -> io::Result<ListenerId> {
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
            XpsListener { host: host.to_string(), port, socket, spare_fd, out_of_fds: false, role };
        let id = core.listeners.insert(listener);
        let callbacks = EventCallbacks::Listener { ptr: id, read_cb: listener_connection_handler };
        // Edge-triggered like the connections: see listener_connection_handler.
        // The course asks for EPOLLOUT here too; a listening socket never
        // becomes writable (a test in this file shows it), so the flag is
        // left out rather than kept for nothing.
        let flags = (libc::EPOLLIN | libc::EPOLLET) as u32;
        if let Err(err) = core.event_loop.attach(fd, flags, callbacks) {
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

    let sockaddr = to_sockaddr_in(addr);
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
/// Called by the loop when listener `ptr` has clients waiting: accepts
/// them all, and creates a connection for each
/// (`listener_connection_handler()`).
///
/// Edge-triggered, epoll reports the listener when clients arrive, not on
/// every wait while some are still in its queue. Accepting one client per
/// event would leave the others waiting until yet another client connects
/// (a test with one client at a time never sees it). So this accepts until
/// `accept()` says `EAGAIN`: the queue is empty, and the next client to
/// arrive brings a new edge.
fn listener_connection_handler(core: &mut XpsCore, ptr: ListenerId) {
    loop {
        let Some(listener) = core.listeners.get_mut(ptr) else { return };
        let port = listener.port;
        let socket = match listener.socket.accept() {
            Ok((socket, _peer)) => {
                // The proxy port also needs an fd for the upstream, the
                // file port one for the file: past the shortage only once
                // the session is made too (below).
                if listener.role == PortRole::Nothing {
                    listener.accepting_again();
                }
                socket
            }
            // Everyone waiting has been accepted.
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
            // An error about the client at the head of the queue, not about
            // the listener: on to the next one.
            Err(err) if is_that_clients_error(&err) => {
                logger!(LogLevel::Debug, "listener_connection_handler()", "accept() failed: {err}");
                continue;
            }
            Err(err) if is_out_of_fds(&err) => {
                if listener.refuse_one_client(&err) {
                    continue;
                }
                return;
            }
            // Whatever failed may fail again at once; trying again here
            // could spin. Clients still waiting are accepted at the next
            // client's edge.
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
            continue;
        }
        // On failure the socket has been dropped, which closes it: the client
        // sees its connection closed. The error is already logged.
        let Ok(id) = XpsConnection::create(core, socket, Origin::Accepted(ptr), "") else {
            continue;
        };
        let Some(connection) = core.connections.get(id) else { continue };
        logger!(
            LogLevel::Info,
            "listener_connection_handler()",
            "new connection from {} on port {port}",
            connection.remote_ip
        );
        new_session(core, ptr, id);
    }
}
// ANCHOR_END: connection_handler

// ANCHOR: new_session
/// Gives client `id`, just accepted on listener `ptr`, its session. If
/// that fails, the client is closed without a byte and the accept loop
/// goes on with the next one: the course's listener returns here, which,
/// edge-triggered, strands every client still queued until another one
/// arrives.
///
/// If the upstream's socket could not be made for lack of fds, the port is
/// out of fds as when accept() fails: the client is closed at once, and
/// the shortage logged once (see `refuse_one_client`). Otherwise (the
/// upstream's host does not resolve, the file may not be served, or
/// cannot be opened: the file module logs each such failure) the client
/// is closed once it has sent its request (see `close_or_linger`); a file
/// client counts as heard already.
fn new_session(core: &mut XpsCore, ptr: ListenerId, id: ConnectionId) {
    match xps_session_create(core, id) {
        Ok(_) => {
            if let Some(listener) = core.listeners.get_mut(ptr) {
                listener.accepting_again();
            }
        }
        Err(err) if is_out_of_fds(&err) => {
            if let Some(listener) = core.listeners.get_mut(ptr) {
                listener.out_of_fds_for_backend(&err);
            }
            XpsConnection::destroy(core, id);
        }
        Err(err) => {
            logger!(
                LogLevel::Error,
                "listener_connection_handler()",
                "xps_session_create() failed: {err}"
            );
            close_or_linger(core, id);
        }
    }
}
// ANCHOR_END: new_session

// ANCHOR: out_of_fds
// Beyond the course: running out of file descriptors.
//
// A process may only have so many fds open (`ulimit -n`, often 1024). With
// all of them in use, accept() fails with EMFILE and the client stays in the
// listen queue. In stage 8, level-triggered epoll reported the listener
// ready again at once, and the loop would have spun at full CPU until some
// client left. The way out, used by libuv among others, is an fd kept in
// reserve: give it up, accept the waiting client into the slot it frees,
// close that client at once (it sees its connection closed instead of
// hanging in the queue), and take the reserve back.
//
// Edge-triggered, the danger is the opposite one: the listener is not
// reported again. Stop accepting with clients still queued, and no edge
// tells of them until another client arrives: they hang. So the accept
// loop goes on refusing, one client per turn, until accept() says EAGAIN:
// every client that waited is refused (or accepted, if an fd came free
// meanwhile), as stage 8 did one event at a time. That cannot spin: each
// turn takes a client off the queue, or the loop stops. (accept() reports
// EMFILE before it looks at the queue, so an empty queue shows up as the
// refusal's own accept() saying EAGAIN.) The loop also stops if the spare
// fd was lost (the whole system ran out of files, ENFILE, when it was to
// be taken back): the clients left are then taken at the next edge, when
// another client connects, and each refusal tries to take the spare back.
impl XpsListener {
    /// Turns away one waiting client while the process is out of fds.
    /// Returns true if a client was taken off the queue, false if none was
    /// waiting or the spare fd did not free a slot.
    fn refuse_one_client(&mut self, err: &io::Error) -> bool {
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
        let refused = match self.socket.accept() {
            Ok((client, _peer)) => {
                drop(client);
                true
            }
            // That client left by itself: it is off the queue all the same.
            Err(err) => err.kind() == io::ErrorKind::ConnectionAborted,
        };
        self.spare_fd = File::open("/dev/null").ok();
        refused
    }

    /// Notes that a port could accept a client but not make its session's
    /// backend (an upstream connection, a file), for lack of fds: the same
    /// shortage, logged once the same way.
    fn out_of_fds_for_backend(&mut self, err: &io::Error) {
        if !self.out_of_fds {
            self.out_of_fds = true;
            logger!(
                LogLevel::Error,
                "listener_connection_handler()",
                "no fd for a session on port {}: {err}; closing new clients until fds are free",
                self.port
            );
        }
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

/// True for the errors of `accept()` that are about the one client it was
/// taking, not about the listener, so that the next `accept()` may well
/// succeed: the client gave up while it waited (`ECONNABORTED`), a signal
/// came (`EINTR`), a firewall refused it (`EPERM`), or a network error
/// was already pending on its new socket. accept(2) says to treat those
/// last ones, for TCP `ENETDOWN`, `EPROTO`, `ENOPROTOOPT`, `EHOSTDOWN`,
/// `ENONET`, `EHOSTUNREACH`, `EOPNOTSUPP` and `ENETUNREACH`, "like EAGAIN
/// by retrying". Stopping at one of them would strand, edge-triggered,
/// every client queued behind it until yet another one arrived.
fn is_that_clients_error(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EINTR
                | libc::EPERM
                | libc::ENETDOWN
                | libc::EPROTO
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
        )
    )
}
// ANCHOR_END: out_of_fds

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::xps_loop::tests::serial;
    use std::net::{Ipv4Addr, TcpStream};

    /// The proxy's wiring through its session: a client of the first port
    /// gets a session and an upstream connection of its own, and four
    /// pipes: client → session → upstream, and back.
    #[test]
    fn a_proxy_client_gets_a_session_and_an_upstream_joined_by_four_pipes() {
        let _serial = serial();
        let mut core = XpsCore::create().unwrap();
        let upstream = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let to =
            Upstream { host: "127.0.0.1".to_string(), port: upstream.local_addr().unwrap().port() };
        let listener = XpsListener::create(&mut core, "127.0.0.1", 0, PortRole::Proxy(to)).unwrap();
        let port = core.listeners.get(listener).unwrap().socket.local_addr().unwrap().port();
        let _client = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while core.connections.len() < 2 {
            assert!(std::time::Instant::now() < deadline, "no client and upstream pair");
            listener_connection_handler(&mut core, listener);
        }
        let ids = core.connections.ids();
        let kind = |id| core.connections.get(id).unwrap().origin.clone();
        let (client, server) =
            if kind(ids[0]) == Origin::Dialled { (ids[1], ids[0]) } else { (ids[0], ids[1]) };
        let (c, u) = (core.connections.get(client).unwrap(), core.connections.get(server).unwrap());
        let sessions = core.sessions.ids();
        assert_eq!(sessions.len(), 1, "one session per client");
        let session = core.sessions.get(sessions[0]).unwrap();
        assert_eq!((session.client, session.upstream), (client, Some(server)));
        let pipes: Vec<_> = core
            .pipes
            .ids()
            .into_iter()
            .map(|id| {
                let pipe = core.pipes.get(id).unwrap();
                (pipe.source, pipe.sink)
            })
            .collect();
        assert_eq!(pipes.len(), 4, "four pipes per proxied client");
        for (pipe, what) in [
            ((c.source, session.client_sink), "client to session"),
            ((session.client_source, c.sink), "session to client"),
            ((session.upstream_source, u.sink), "session to upstream"),
            ((u.source, session.upstream_sink), "upstream to session"),
        ] {
            assert!(pipes.contains(&(Some(pipe.0), Some(pipe.1))), "no pipe from {what}");
        }
        core.destroy();
    }

    /// A client whose session cannot be made (here: its file's folder is
    /// gone) is closed, and the clients queued behind it are still
    /// accepted in the same call: the course's listener returns at the
    /// first failure, stranding them.
    #[test]
    fn a_failed_session_closes_its_client_and_the_accept_loop_goes_on() {
        let _serial = serial();
        let mut core = XpsCore::create().unwrap();
        let public = PathBuf::from("/nonexistent/xps-public");
        let role = PortRole::File { public, path: SAMPLE_FILE };
        let listener = XpsListener::create(&mut core, "127.0.0.1", 0, role).unwrap();
        let port = core.listeners.get(listener).unwrap().socket.local_addr().unwrap().port();
        let mut clients: Vec<TcpStream> =
            (0..3).map(|_| TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap()).collect();
        listener_connection_handler(&mut core, listener);
        assert!(core.sessions.is_empty(), "a failed session is left in the core");
        assert!(core.connections.is_empty(), "a client whose session failed is still open");
        for client in &mut clients {
            client.set_read_timeout(Some(std::time::Duration::from_secs(1))).unwrap();
            let mut byte = [0; 1];
            assert_eq!(io::Read::read(client, &mut byte).unwrap(), 0, "not closed");
        }
        core.destroy();
    }

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

    /// Edge-triggered: the listener's readiness is reported once for all
    /// the clients waiting, so one call must accept every one of them.
    #[test]
    fn one_call_accepts_every_client_waiting() {
        let _serial = serial();
        let mut core = XpsCore::create().unwrap();
        let listener = XpsListener::create(&mut core, "127.0.0.1", 0, PortRole::Nothing).unwrap();
        let port = core.listeners.get(listener).unwrap().socket.local_addr().unwrap().port();
        // On loopback the handshake is over when connect() returns: all
        // three are in the listener's queue before the handler runs.
        let _clients: Vec<TcpStream> =
            (0..3).map(|_| TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap()).collect();
        listener_connection_handler(&mut core, listener);
        assert_eq!(core.connections.ids().len(), 3, "one call accepted too few");
        assert_eq!(core.sessions.len(), 3, "a client without its session");
        core.destroy();
    }

    #[test]
    fn accept_goes_on_past_an_error_about_one_client_and_stops_at_others() {
        let error = io::Error::from_raw_os_error;
        for errno in [libc::ECONNABORTED, libc::EINTR, libc::EPROTO, libc::ENETUNREACH] {
            assert!(is_that_clients_error(&error(errno)), "{}", error(errno));
        }
        // About the process or the system: trying again at once could spin.
        for errno in [libc::ENOBUFS, libc::ENOMEM, libc::EMFILE, libc::EBADF] {
            assert!(!is_that_clients_error(&error(errno)), "{}", error(errno));
        }
    }

    #[test]
    fn a_listening_socket_is_never_reported_writable() {
        // Why the listener is attached without EPOLLOUT (see create).
        let socket = open_listening_socket(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).unwrap();
        let client = TcpStream::connect(socket.local_addr().unwrap()).unwrap();
        let mut pollfd = libc::pollfd {
            fd: socket.as_raw_fd(),
            events: libc::POLLIN | libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd, and its count, for the call's duration.
        let ready = unsafe { libc::poll(&mut pollfd, 1, 1000) };
        assert_eq!(ready, 1);
        assert_eq!(pollfd.revents, libc::POLLIN, "a client waits; nothing else is reported");
        drop(client);
    }
}
