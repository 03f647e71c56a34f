//! A connection: `xps_connection.c`. One accepted client, watched
//! edge-triggered: epoll reports once that its socket became readable or
//! writable, and the loop callbacks [`connection_loop_read_handler`] and
//! [`connection_loop_write_handler`] only remember it, in `read_ready` and
//! `write_ready`. The I/O happens when the loop's `handle_connections()`
//! calls the connection's handlers: [`connection_read_handler`] receives,
//! prints and queues the message reversed; [`connection_write_handler`]
//! sends what is queued.
//!
//! The course's stage 8 names the three callbacks the loop calls
//! `connection_loop_read_handler()`, `connection_loop_write_handler()` and
//! `connection_loop_close_handler()`, and the log lines carry those names.
//!
//! The contract of edge triggering, which both handlers keep: a ready flag
//! is cleared when, and only when, the socket says `EAGAIN`. Then the
//! kernel's buffer is drained (or full), and the next change brings a new
//! edge, which sets the flag again. Cleared any earlier (say, after a
//! `recv()` that filled the buffer), the bytes still waiting would never be
//! reported: the edge was already spent. Never cleared, the loop would think
//! the connection forever ready and poll with timeout 0, at full CPU: stage
//! 8's flaw again.

use crate::core::xps_core::XpsCore;
use crate::core::xps_loop::EventCallbacks;
use crate::core::xps_loop::XpsLoop;
use crate::core::xps_slots::Id;
use crate::logger;
use crate::network::xps_listener::ListenerId;
use crate::utils::xps_buffer::{XpsBuffer, XpsBufferList};
use crate::utils::xps_logger::{LogLevel, print_line};
use crate::utils::xps_utils::{escape_for_terminal, get_remote_ip, reverse_in_place};
use crate::xps::{MAX_SEND_BUFFERS, XpsHandler};
use std::io::{self, IoSlice, Read};
use std::net::TcpStream;
use std::os::fd::AsRawFd;

/// The id of a connection in `core.connections`.
pub type ConnectionId = Id<XpsConnection>;

// ANCHOR: xps_connection
/// One connected client: `xps_connection_t` in C.
///
/// As with the listener, the C `core` back-pointer is not needed: the core
/// owns the connection and is handed to its callbacks.
#[derive(Debug)]
pub struct XpsConnection {
    /// The connected socket (`sock_fd` in C), closed when dropped. It is
    /// non-blocking: the listener made it so before creating the connection.
    pub socket: TcpStream,
    /// The listener that accepted it (a pointer in C). It may be destroyed
    /// first: then the id finds nothing.
    pub listener: ListenerId,
    /// The client's IP address, for the log.
    pub remote_ip: String,
    /// Replies not sent yet, oldest first.
    pub write_buff_list: XpsBufferList,
    /// Epoll reported the socket readable, and no `recv()` has said
    /// `EAGAIN` since: there may be bytes to read.
    pub read_ready: bool,
    /// Epoll reported the socket writable, and no `send()` has said
    /// `EAGAIN` since: the socket may take more.
    pub write_ready: bool,
    /// What `handle_connections()` calls while `read_ready`:
    /// [`connection_read_handler`]. The course's stage 9 names this field
    /// `recv_handler` and its stage 10 text `receive_handler`; this port
    /// keeps `recv_handler`, the name of the stage that introduces it.
    pub recv_handler: XpsHandler<ConnectionId>,
    /// What `handle_connections()` calls while `write_ready` with replies
    /// queued: [`connection_write_handler`].
    pub send_handler: XpsHandler<ConnectionId>,
    /// True while the connection has an entry in the loop's ready queue, so
    /// that it never has two (not in the course; see
    /// `XpsLoop::handle_connections`).
    pub queued: bool,
}
// ANCHOR_END: xps_connection

impl XpsConnection {
    // ANCHOR: create
    /// `xps_connection_create()`: adds an accepted socket to the core and
    /// attaches it to the loop. Returns the connection's id.
    pub fn create(
        core: &mut XpsCore,
        socket: TcpStream,
        listener: ListenerId,
    ) -> io::Result<ConnectionId> {
        let fail = |step: &str, err: io::Error| {
            logger!(LogLevel::Error, "xps_connection_create()", "{step} failed: {err}");
            err
        };
        // A client that connects and resets at once is still handed over by
        // accept(); asking for its address is how we find out it has gone.
        // That is the client's doing, not a server error, hence INFO.
        let Some(remote_ip) = get_remote_ip(&socket) else {
            logger!(LogLevel::Info, "xps_connection_create()", "client left before it was served");
            return Err(io::Error::from(io::ErrorKind::NotConnected));
        };
        let fd = socket.as_raw_fd();

        let id = core.connections.insert(XpsConnection {
            socket,
            listener,
            remote_ip,
            write_buff_list: XpsBufferList::create(),
            // Not ready until epoll says so. Attaching reports the socket's
            // state at once (writable, and readable if the client has sent
            // something already), so no edge from before is lost.
            read_ready: false,
            write_ready: false,
            recv_handler: connection_read_handler,
            send_handler: connection_write_handler,
            queued: false,
        });
        // Edge-triggered: EPOLLOUT is reported when the socket becomes
        // writable, not on every wait while it is, so an idle client no
        // longer keeps the loop awake (stage 8's Experiment 1).
        let callbacks = EventCallbacks::Connection {
            ptr: id,
            read_cb: connection_loop_read_handler,
            write_cb: connection_loop_write_handler,
            close_cb: connection_loop_close_handler,
        };
        let flags = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLET) as u32;
        let attached = core.event_loop.attach(fd, flags, callbacks);
        if let Err(err) = attached {
            // Undo the insert; dropping the connection closes its socket.
            core.connections.remove(id);
            return Err(fail("xps_loop_attach()", err));
        }
        logger!(LogLevel::Debug, "xps_connection_create()", "created connection");
        Ok(id)
    }
    // ANCHOR_END: create

    // ANCHOR: destroy
    /// `xps_connection_destroy()`: empties the connection's slot, detaches it
    /// from the loop, closes its socket and destroys its buffer list, with
    /// any replies the client never took. The listener is left alone.
    pub fn destroy(core: &mut XpsCore, id: ConnectionId) {
        let Some(connection) = core.connections.remove(id) else { return };
        // An error here has been logged by the loop; the socket is closed
        // below either way.
        let _ = core.event_loop.detach(connection.socket.as_raw_fd());
        let port = core.listeners.get(connection.listener).map(|listener| listener.port);
        logger!(
            LogLevel::Debug,
            "xps_connection_destroy()",
            "destroyed connection from {} (port {})",
            connection.remote_ip,
            port.map_or_else(|| "closed".to_string(), |port| port.to_string())
        );
        // Its entry in the ready queue, if any, stays there: it no longer
        // matches a live connection, so handle_connections() skips it.
        let XpsConnection { socket, write_buff_list, .. } = connection;
        drop(socket);
        write_buff_list.destroy();
    }
    // ANCHOR_END: destroy

    // ANCHOR: is_ready
    /// True if `handle_connections()` has something to do for it: bytes may
    /// wait to be read, or replies wait and the socket may take them. (A
    /// writable socket with nothing to send is not work.)
    pub fn is_ready(&self) -> bool {
        self.read_ready || (self.write_ready && !self.write_buff_list.is_empty())
    }
    // ANCHOR_END: is_ready
}

// ANCHOR: loop_handlers
/// Called by the loop when connection `ptr`'s socket became readable
/// (`connection_loop_read_handler()`). No `recv()` here: it notes that the
/// connection is ready to read, and `handle_connections()` reads.
fn connection_loop_read_handler(core: &mut XpsCore, ptr: ConnectionId) {
    let Some(connection) = core.connections.get_mut(ptr) else { return };
    connection.read_ready = true;
    XpsLoop::queue_connection(core, ptr);
}

/// Called by the loop when connection `ptr`'s socket became writable
/// (`connection_loop_write_handler()`): notes that the connection may send.
fn connection_loop_write_handler(core: &mut XpsCore, ptr: ConnectionId) {
    let Some(connection) = core.connections.get_mut(ptr) else { return };
    connection.write_ready = true;
    // Queued only if it has replies waiting (see `is_ready`): a client
    // that has just connected, or has taken all its replies, is writable
    // with nothing to write.
    XpsLoop::queue_connection(core, ptr);
}
// ANCHOR_END: loop_handlers

// ANCHOR: after_read
/// What the read handler decided about the connection.
enum AfterRead {
    /// Keep the connection: the reply is queued, or there was nothing to
    /// read after all.
    Keep,
    /// The client is gone or the socket failed: destroy the connection.
    Destroy,
}
// ANCHOR_END: after_read

// ANCHOR: read_handler
/// The connection's `recv_handler` (`connection_read_handler()`), called by
/// `handle_connections()` while connection `ptr` is `read_ready`: one
/// `recv()`, print, reverse, and queue the reply; nothing is sent here.
///
/// One `recv()` per call, not a loop until `EAGAIN`: a client that sends
/// without pause would otherwise keep the server reading its bytes while
/// every other client waits. The flag stays set, and the connection gets
/// its next turn after the others have had theirs.
fn connection_read_handler(core: &mut XpsCore, ptr: ConnectionId) {
    if let AfterRead::Destroy = serve_message(core, ptr) {
        XpsConnection::destroy(core, ptr);
    }
}

/// One `recv()` and its queued reply. Borrows the connection and the core's
/// buffer side by side, which is why it is apart from the handler that
/// destroys.
fn serve_message(core: &mut XpsCore, ptr: ConnectionId) -> AfterRead {
    let XpsCore { connections, buffer, .. } = core;
    let Some(connection) = connections.get_mut(ptr) else { return AfterRead::Keep };
    // `read()` on a TcpStream is one recv() system call.
    let n = match connection.socket.read(buffer) {
        Ok(0) => {
            logger!(LogLevel::Info, "connection_read_handler()", "peer closed connection");
            return AfterRead::Destroy;
        }
        Ok(n) => n,
        // Drained: the only moment the flag may go, since the next bytes
        // to arrive bring a new edge.
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
            connection.read_ready = false;
            return AfterRead::Keep;
        }
        // A signal came first: the flag stays, the next pass tries again.
        Err(err) if err.kind() == io::ErrorKind::Interrupted => return AfterRead::Keep,
        Err(err) => {
            logger!(LogLevel::Error, "connection_read_handler()", "recv() failed: {err}");
            return AfterRead::Destroy;
        }
    };
    let message = &mut buffer[..n];
    print_message(message);
    reverse_in_place(message);
    // The core's buffer is reused by the next recv(): the reply gets a
    // buffer of its own, exactly its size.
    connection.write_buff_list.append(XpsBuffer::create(n, message));
    AfterRead::Keep
}
// ANCHOR_END: read_handler

// ANCHOR: print_message
/// Prints what the client sent, as `client: <message>`, on one line.
///
/// The bytes are escaped first: printed raw, a client could send escape
/// sequences that recolour, retitle or clear the operator's terminal.
fn print_message(message: &[u8]) {
    let text = message.strip_suffix(b"\n").unwrap_or(message);
    print_line(format_args!("client: {}", escape_for_terminal(text)));
}
// ANCHOR_END: print_message

// ANCHOR: write_handler
/// The connection's `send_handler` (`connection_write_handler()`), called
/// by `handle_connections()` while connection `ptr` is `write_ready` with
/// replies queued: one send of as much of them as the socket takes; what
/// was sent is dropped from the list. A failed send ends the connection.
fn connection_write_handler(core: &mut XpsCore, ptr: ConnectionId) {
    let Some(connection) = core.connections.get_mut(ptr) else { return };
    if let Err(err) = send_queued(connection) {
        logger!(LogLevel::Error, "connection_write_handler()", "send() failed: {err}");
        XpsConnection::destroy(core, ptr);
    }
}

/// One send of the front of the write list; `Ok` unless the connection
/// has failed. A socket that takes nothing clears `write_ready`.
///
/// The course reads the whole list into one new buffer and sends that.
/// Beyond the course, this hands the kernel the first few queued buffers
/// as they are (see `front_slices` in xps_buffer.rs): with a backlog of
/// hundreds of MiB, each event would otherwise copy all of it to send a
/// few hundred KB.
fn send_queued(connection: &mut XpsConnection) -> io::Result<()> {
    let list = &mut connection.write_buff_list;
    if list.is_empty() {
        return Ok(());
    }
    let mut slices = [IoSlice::new(&[]); MAX_SEND_BUFFERS];
    let n_slices = list.front_slices(&mut slices);
    let sent = match send_buffers(&connection.socket, &slices[..n_slices]) {
        Ok(sent) => sent,
        // The send buffer is full: wait for the edge that says it has room
        // again. Only now may the flag go (see the module's doc).
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
            connection.write_ready = false;
            return Ok(());
        }
        // A signal came before anything was sent: the flag stays, the next
        // pass tries again.
        Err(err) if err.kind() == io::ErrorKind::Interrupted => return Ok(()),
        Err(err) => return Err(err),
    };
    // Whole replies sent are freed, a partly sent one is kept for the rest.
    list.clear(sent)
}
// ANCHOR_END: write_handler

// ANCHOR: send_buffers
/// One `sendmsg()` of `slices`: the kernel takes what fits in the socket's
/// send buffer, from the first slice on, and says how many bytes that was.
///
/// With `MSG_NOSIGNAL`, as the course's stage 10 sends, a client that has
/// gone away is an `EPIPE` error and never a `SIGPIPE`. (This program
/// would survive the signal anyway: the Rust runtime ignores `SIGPIPE`
/// before `main()` runs, and nothing here restores it. A C server is
/// killed by it.) std's `write_vectored()` would call `writev()`, which
/// takes no flags.
fn send_buffers(socket: &TcpStream, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: an all-zero msghdr is valid: no address, no iovecs, no
    // control data.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    // std guarantees that an IoSlice has the layout of an iovec on Unix.
    message.msg_iov = slices.as_ptr().cast_mut().cast::<libc::iovec>();
    message.msg_iovlen = slices.len() as _;
    // SAFETY: msg_iov points to `slices.len()` iovecs, each naming bytes
    // that outlive the call; sendmsg() only reads them.
    let sent = unsafe { libc::sendmsg(socket.as_raw_fd(), &message, libc::MSG_NOSIGNAL) };
    usize::try_from(sent).map_err(|_| io::Error::last_os_error())
}
// ANCHOR_END: send_buffers

// ANCHOR: close_handler
/// Called by the loop when connection `ptr` reports an error or a hang-up
/// with nothing left to read (`connection_loop_close_handler()`). The
/// error, if the socket holds one, goes to the log; then the connection
/// is destroyed.
///
/// A client that closes or resets its connection does not come here: on
/// TCP its close is readable (`recv()` returns 0) and its reset comes with
/// `EPOLLIN` too, so the read handler finds out (see the loop's
/// `dispatch`). This is for an error with no stream to read, which the
/// kernel reports on a TCP socket only in rare cases (an ICMP error with
/// `IP_RECVERR` set, say).
fn connection_loop_close_handler(core: &mut XpsCore, ptr: ConnectionId) {
    let Some(connection) = core.connections.get(ptr) else { return };
    match connection.socket.take_error() {
        Ok(Some(err)) => {
            logger!(LogLevel::Error, "connection_loop_close_handler()", "connection failed: {err}")
        }
        _ => logger!(LogLevel::Info, "connection_loop_close_handler()", "connection hung up"),
    }
    XpsConnection::destroy(core, ptr);
}
// ANCHOR_END: close_handler

#[cfg(test)]
pub(crate) mod tests {
    //! The ready flags, driven with real TCP sockets on 127.0.0.1.
    use super::*;
    use crate::core::xps_loop::tests::{running_core, serial};
    use crate::utils::xps_utils::make_socket_non_blocking;
    use std::io::Write;
    use std::net::{Ipv4Addr, TcpListener};
    use std::time::{Duration, Instant};

    /// A new connection of `core` and the client at its other end: the
    /// connection's id and the client's socket.
    pub(crate) fn connect_client(core: &mut XpsCore) -> (ConnectionId, TcpStream) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let (socket, _peer) = listener.accept().unwrap();
        make_socket_non_blocking(socket.as_raw_fd()).unwrap();
        // A listener id that names no listener: a connection outlives its
        // listener as well.
        let id = XpsConnection::create(core, socket, Id::for_test(0)).unwrap();
        (id, client)
    }

    /// Connection `id`, which must exist.
    pub(crate) fn connection(core: &mut XpsCore, id: ConnectionId) -> &mut XpsConnection {
        core.connections.get_mut(id).unwrap()
    }

    /// Runs rounds of the loop (waits and callbacks, no handlers) until
    /// `done` holds; false if it still does not after 2 s.
    pub(crate) fn dispatch_until(core: &mut XpsCore, done: impl Fn(&mut XpsCore) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !done(core) {
            if Instant::now() > deadline {
                return false;
            }
            XpsLoop::wait_and_dispatch(core, 100).unwrap();
        }
        true
    }

    #[test]
    fn the_loop_callbacks_only_set_the_flags() {
        let _serial = serial();
        let mut core = running_core();
        let (id, mut client) = connect_client(&mut core);
        // Attaching reports the empty send buffer once: writable, nothing
        // to send, so not queued.
        assert!(dispatch_until(&mut core, |core| connection(core, id).write_ready));
        assert!(!connection(&mut core, id).read_ready);
        assert!(!connection(&mut core, id).queued);

        client.write_all(b"hello\n").unwrap();
        assert!(dispatch_until(&mut core, |core| connection(core, id).read_ready));
        let conn = connection(&mut core, id);
        assert!(conn.queued, "a readable connection is queued");
        assert!(conn.write_buff_list.is_empty(), "the callback must not recv()");
        // Nothing was received, so nothing came back.
        let mut byte = [0];
        assert!(client.read(&mut byte).is_err(), "a reply without a handler");
        core.destroy();
    }

    #[test]
    fn read_ready_is_cleared_only_when_recv_says_eagain() {
        let _serial = serial();
        let mut core = running_core();
        let (id, mut client) = connect_client(&mut core);
        client.write_all(b"hello\n").unwrap();
        assert!(dispatch_until(&mut core, |core| connection(core, id).read_ready));

        connection_read_handler(&mut core, id);
        let conn = connection(&mut core, id);
        assert_eq!(conn.write_buff_list.len(), 6, "one recv() of the whole message");
        // The recv() got bytes: more may wait, so the flag stays.
        assert!(conn.read_ready, "cleared before EAGAIN: later bytes would be lost");

        connection_read_handler(&mut core, id);
        let conn = connection(&mut core, id);
        assert!(!conn.read_ready, "never cleared: the loop would spin");
        assert_eq!(conn.write_buff_list.len(), 6);

        // The next bytes bring a new edge, which sets it again.
        client.write_all(b"again\n").unwrap();
        assert!(dispatch_until(&mut core, |core| connection(core, id).read_ready));
        core.destroy();
    }

    #[test]
    fn write_ready_is_cleared_only_when_send_says_eagain() {
        let _serial = serial();
        let mut core = running_core();
        let (id, client) = connect_client(&mut core);
        assert!(dispatch_until(&mut core, |core| connection(core, id).write_ready));
        // 16 MiB of replies for a client that does not read: more than the
        // socket buffers take.
        for _ in 0..160 {
            connection(&mut core, id)
                .write_buff_list
                .append(XpsBuffer::create(0, &[b'x'; 100_000]));
        }
        let mut sends = 0;
        while connection(&mut core, id).write_ready {
            assert!(sends < 1000, "write_ready never cleared");
            connection_write_handler(&mut core, id);
            sends += 1;
        }
        let conn = connection(&mut core, id);
        assert!(sends >= 2, "cleared after {sends} sends, before any EAGAIN");
        assert!(!conn.write_buff_list.is_empty(), "the socket took 16 MiB at once?");
        assert!(!conn.is_ready(), "a full socket with nothing to read is not ready");
        drop(client);
        core.destroy();
    }

    #[test]
    fn a_peer_that_left_is_destroyed_by_the_read_handler() {
        let _serial = serial();
        let mut core = running_core();
        let (id, client) = connect_client(&mut core);
        drop(client);
        assert!(dispatch_until(&mut core, |core| core
            .connections
            .get(id)
            .is_none_or(|conn| conn.read_ready)));
        connection_read_handler(&mut core, id);
        assert!(core.connections.get(id).is_none());
        core.destroy();
    }

    /// The loop calls the close handler for an error or hang-up with
    /// nothing to read (see the loop's `dispatch`); called as the loop
    /// would, it destroys the connection and closes its socket.
    #[test]
    fn the_loop_close_handler_destroys_the_connection_and_closes_its_socket() {
        let _serial = serial();
        let mut core = running_core();
        let (id, mut client) = connect_client(&mut core);
        connection_loop_close_handler(&mut core, id);
        assert!(core.connections.get(id).is_none(), "the connection is still in the core");
        client.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut byte = [0; 1];
        assert_eq!(client.read(&mut byte).unwrap(), 0, "the client's stream did not end");
        core.destroy();
    }
}
