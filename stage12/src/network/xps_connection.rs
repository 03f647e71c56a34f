//! A connection: `xps_connection.c`. One TCP connection, watched
//! edge-triggered, with a pipe *source* (its socket read) and a pipe
//! *sink* (its socket written). From stage 11 there are two kinds: a
//! client the listener accepted, and an upstream the server dialled
//! (`xps_upstream.rs`); both are the same structure, told apart by their
//! [`Origin`]. On the proxy port the listener joins a client and its
//! upstream with two pipes, one each way; on the others it joins a
//! client's source to its own sink (stage 10's write-back).
//!
//! The loop callbacks [`connection_loop_read_handler`] and
//! [`connection_loop_write_handler`] only set the source's or the sink's
//! `ready` flag. The I/O happens when the loop's `handle_pipes()` calls the
//! ends' handlers: [`connection_source_handler`] receives into the pipe
//! while it has room; [`connection_sink_handler`] sends from the pipe
//! while it holds bytes.
//!
//! The course's stage 8 names the three callbacks the loop calls
//! `connection_loop_read_handler()`, `connection_loop_write_handler()` and
//! `connection_loop_close_handler()`, and the log lines carry those names.
//!
//! The contract of edge triggering, which both handlers keep: a ready flag
//! is cleared when, and only when, the socket says `EAGAIN`. Cleared any
//! earlier, the bytes (or the room) still waiting would never be reported:
//! the edge was already spent. Never cleared, the loop would think the
//! pipe forever ready and poll with timeout 0, at full CPU.
//!
//! And the contract of the pipe: the source reads only while the pipe has
//! room. A client that never reads fills its pipe; its source is then
//! skipped, its bytes wait in the kernel's buffers, and TCP stops it from
//! sending more. That is the memory bound of this stage.

use crate::core::xps_core::XpsCore;
use crate::core::xps_loop::EventCallbacks;
use crate::core::xps_pipe::{EndCallbacks, SinkId, SourceId, XpsPipe, XpsPipeSink, XpsPipeSource};
use crate::core::xps_slots::Id;
use crate::logger;
use crate::network::xps_listener::ListenerId;
use crate::utils::xps_buffer::XpsBuffer;
use crate::utils::xps_logger::{LogLevel, print_line};
use crate::utils::xps_utils::{escape_for_terminal, get_remote_ip};
use crate::xps::CLIENT_GRACE;
use crate::xps::MAX_SEND_BUFFERS;
use std::io::{self, IoSlice, Read};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Instant;

/// The id of a connection in `core.connections`.
pub type ConnectionId = Id<XpsConnection>;

// ANCHOR: xps_connection
/// One connected client: `xps_connection_t` in C.
///
/// As with the listener, the C `core` back-pointer is not needed: the core
/// owns the connection and is handed to its callbacks.
///
/// Stage 10 replaces the write list, the ready flags and the two I/O
/// handler fields of stage 9 with a source and a sink: the flags and the
/// handlers are theirs now, and the bytes waiting are in the pipe.
#[derive(Debug)]
pub struct XpsConnection {
    /// The connected socket (`sock_fd` in C), closed when dropped. It is
    /// non-blocking: the listener made it so before creating the
    /// connection, or `xps_upstream_create()` created it so.
    pub socket: TcpStream,
    /// Who made it: a listener's `accept()` or the server's `connect()`.
    pub origin: Origin,
    /// The peer, for the log: a client's IP address, or the upstream's
    /// `host:port` as it was asked for.
    pub remote_ip: String,
    /// True while a `connect()` this server started is in progress: its
    /// outcome comes as the socket's first event (not in the course).
    pub connecting: bool,
    /// True once the peer has sent a byte or ended its side: see
    /// [`close_or_linger`].
    pub heard: bool,
    /// True once the peer has ended its side (`recv()` returned 0).
    pub ended: bool,
    /// True while the connection waits to be closed (see
    /// [`close_or_linger`]).
    pub lingering: bool,
    /// What reads the client's bytes into a pipe, in `core.sources`.
    pub source: SourceId,
    /// What sends a pipe's bytes to the client, in `core.sinks`.
    pub sink: SinkId,
}
// ANCHOR_END: xps_connection

impl XpsConnection {
    /// The peer as the log names it: `client 10.0.0.7` or
    /// `upstream 127.0.0.1:3000`.
    pub fn peer(&self) -> String {
        match self.origin {
            Origin::Accepted(_) => format!("client {}", self.remote_ip),
            Origin::Dialled => format!("upstream {}", self.remote_ip),
        }
    }
}

// ANCHOR: origin
/// Where a connection came from. The C connection keeps a `listener`
/// pointer, NULL for an upstream; an enum says the same without a NULL,
/// and carries what the log needs about each kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A client, accepted by this listener. The listener may be destroyed
    /// first: then the id finds nothing.
    Accepted(ListenerId),
    /// An upstream, dialled by the server.
    Dialled,
}
// ANCHOR_END: origin

impl XpsConnection {
    // ANCHOR: create
    /// `xps_connection_create()`: adds a socket to the core, with its
    /// source and sink, and attaches it to the loop. Returns the
    /// connection's id. (The listener then joins the ends with pipes.)
    ///
    /// `origin` says whose socket it is. For an upstream, `peer` names it
    /// in the log: its `connect()` may still be in progress, so there is
    /// no peer address to ask the socket for yet (the course asks anyway,
    /// and logs the `ENOTCONN` that comes back as an error).
    pub fn create(
        core: &mut XpsCore,
        socket: TcpStream,
        origin: Origin,
        peer: &str,
    ) -> io::Result<ConnectionId> {
        let fail = |step: &str, err: io::Error| {
            logger!(LogLevel::Error, "xps_connection_create()", "{step} failed: {err}");
            err
        };
        let connecting = origin == Origin::Dialled;
        let remote_ip = if connecting {
            peer.to_string()
        } else {
            // A client that connects and resets at once is still handed
            // over by accept(); asking for its address is how we find out
            // it has gone. That is the client's doing, not a server error,
            // hence INFO.
            let Some(remote_ip) = get_remote_ip(&socket) else {
                logger!(
                    LogLevel::Info,
                    "xps_connection_create()",
                    "client left before it was served"
                );
                return Err(io::Error::from(io::ErrorKind::NotConnected));
            };
            remote_ip
        };
        let fd = socket.as_raw_fd();

        // The connection names its source and sink, and they name it: the
        // table tells the id the connection will have, so the ends are made
        // with it before the connection is stored.
        let XpsCore { connections, sources, sinks, .. } = core;
        let id = connections.insert_with(|id| {
            let source = sources.insert(XpsPipeSource::create(EndCallbacks::Connection {
                ptr: id,
                handler_cb: connection_source_handler,
                close_cb: connection_source_close_handler,
            }));
            let sink = sinks.insert(XpsPipeSink::create(EndCallbacks::Connection {
                ptr: id,
                handler_cb: connection_sink_handler,
                close_cb: connection_sink_close_handler,
            }));
            XpsConnection {
                socket,
                origin,
                remote_ip,
                connecting,
                heard: false,
                ended: false,
                lingering: false,
                source,
                sink,
            }
        });
        // Edge-triggered: EPOLLOUT is reported when the socket becomes
        // writable, not on every wait while it is, so an idle client no
        // longer keeps the loop awake (stage 8's Experiment 1). Attaching
        // reports the socket's state at once (writable, and readable if the client has sent
        // something already), so no edge from before is lost.
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
            if let Some(connection) = core.connections.remove(id) {
                XpsPipeSource::destroy(core, connection.source);
                XpsPipeSink::destroy(core, connection.sink);
            }
            return Err(fail("xps_loop_attach()", err));
        }
        logger!(LogLevel::Debug, "xps_connection_create()", "created connection");
        Ok(id)
    }
    // ANCHOR_END: create

    // ANCHOR: destroy
    /// `xps_connection_destroy()`: empties the connection's slot, detaches it
    /// from the loop, destroys its source and sink (which detaches them from
    /// their pipe; `handle_pipes()` then destroys the pipe, with whatever it
    /// still held for a client that is gone) and closes its socket. The
    /// listener is left alone.
    pub fn destroy(core: &mut XpsCore, id: ConnectionId) {
        let Some(connection) = core.connections.remove(id) else { return };
        // An error here has been logged by the loop; the socket is closed
        // below either way.
        let _ = core.event_loop.detach(connection.socket.as_raw_fd());
        XpsPipeSource::destroy(core, connection.source);
        XpsPipeSink::destroy(core, connection.sink);
        match connection.origin {
            Origin::Accepted(listener) => {
                let port = core.listeners.get(listener).map(|listener| listener.port);
                logger!(
                    LogLevel::Debug,
                    "xps_connection_destroy()",
                    "destroyed connection from {} (port {})",
                    connection.remote_ip,
                    port.map_or_else(|| "closed".to_string(), |port| port.to_string())
                );
            }
            Origin::Dialled => logger!(
                LogLevel::Debug,
                "xps_connection_destroy()",
                "destroyed upstream connection to {}",
                connection.remote_ip
            ),
        }
        drop(connection);
    }
    // ANCHOR_END: destroy
}

// ANCHOR: connection_close
/// `connection_close()`: ends the connection, saying why in the log: the
/// client closed its side (`peer_closed`), or the server is closing it
/// (an error, already logged by the caller).
pub fn connection_close(core: &mut XpsCore, id: ConnectionId, peer_closed: bool) {
    let Some(connection) = core.connections.get(id) else { return };
    if peer_closed {
        logger!(
            LogLevel::Info,
            "connection_close()",
            "peer closed connection: {}",
            connection.peer()
        );
    } else {
        logger!(LogLevel::Info, "connection_close()", "closing connection: {}", connection.peer());
    }
    XpsConnection::destroy(core, id);
}
// ANCHOR_END: connection_close

// ANCHOR: loop_handlers
/// Called by the loop when connection `ptr`'s socket became readable
/// (`connection_loop_read_handler()`): its source is ready, and its pipe
/// goes to the loop's ready queue if that gives it work. No `recv()` here.
fn connection_loop_read_handler(core: &mut XpsCore, ptr: ConnectionId) {
    if !is_connected(core, ptr) {
        return;
    }
    let Some(connection) = core.connections.get(ptr) else { return };
    if connection.lingering {
        // The client's request has come: now it can be closed cleanly.
        discard_input_and_close(core, ptr);
        return;
    }
    XpsPipeSource::set_ready(core, connection.source, true);
}

/// Called by the loop when connection `ptr`'s socket became writable
/// (`connection_loop_write_handler()`): its sink is ready. (Its pipe is
/// queued only if it holds something to send.)
fn connection_loop_write_handler(core: &mut XpsCore, ptr: ConnectionId) {
    if !is_connected(core, ptr) {
        return;
    }
    let Some(connection) = core.connections.get(ptr) else { return };
    XpsPipeSink::set_ready(core, connection.sink, true);
}
// ANCHOR_END: loop_handlers

// ANCHOR: is_connected
/// Beyond the course: the outcome of an upstream's `connect()`.
///
/// `xps_upstream_create()` only starts the connection (`EINPROGRESS`).
/// Its outcome is the socket's first event: writable once connected, or
/// an error and a hang-up (with `EPOLLIN` too) when it failed, the reason
/// waiting in `SO_ERROR` (`ECONNREFUSED` when nothing listens there). The
/// course lets the failure surface as a failed `recv()` or `send()`; here
/// it gets one ERROR line that names the upstream, and the upstream is
/// closed: its pipes then close its client (see [`close_or_linger`]).
///
/// Returns true if connection `ptr` exists and is connected.
fn is_connected(core: &mut XpsCore, ptr: ConnectionId) -> bool {
    let Some(connection) = core.connections.get_mut(ptr) else { return false };
    if !connection.connecting {
        return true;
    }
    match connection.socket.take_error() {
        Ok(None) => {
            connection.connecting = false;
            logger!(
                LogLevel::Debug,
                "is_connected()",
                "connected to upstream {}",
                connection.remote_ip
            );
            true
        }
        Ok(Some(err)) | Err(err) => {
            logger!(
                LogLevel::Error,
                "is_connected()",
                "connect() to upstream {} failed: {err}",
                connection.remote_ip
            );
            connection_close(core, ptr, false);
            false
        }
    }
}
// ANCHOR_END: is_connected

// ANCHOR: received
/// What one `recv()` of the source handler got.
enum Received {
    /// Bytes, now in the core's buffer.
    Bytes(usize),
    /// The client has closed its side: nothing more will come (the
    /// course's `E_EOF`).
    EndOfInput,
    /// Nothing for now: the socket is drained (`E_AGAIN`), and the next
    /// bytes bring a new edge.
    Drained,
    /// A signal came first: try again at the next pass.
    Nothing,
    /// The socket failed: the connection is over.
    Failed,
}
// ANCHOR_END: received

// ANCHOR: source_handler
/// The source's `handler_cb` (`connection_source_handler()`), called by
/// `handle_pipes()` while the source is ready and its pipe has room: one
/// `recv()` of at most what the pipe has room for, printed and written
/// into the pipe.
///
/// Asking `recv()` for no more than the room left is what keeps the pipe
/// under its threshold: the bytes that do not fit stay in the kernel.
fn connection_source_handler(core: &mut XpsCore, ptr: ConnectionId) {
    let Some(connection) = core.connections.get(ptr) else { return };
    let source = connection.source;
    let room = XpsPipeSource::pipe(core, source).map_or(0, XpsPipe::room);
    let origin = connection.origin.clone();
    match receive(core, ptr, room) {
        Received::Bytes(n) => {
            let message = &core.buffer[..n];
            print_message(&origin, message);
            // The core's buffer is reused by the next recv(): the bytes get
            // a buffer of their own, exactly their size, which the pipe
            // takes over.
            let chunk = XpsBuffer::create(n, message);
            if let Err(err) = XpsPipeSource::write(core, source, chunk) {
                logger!(
                    LogLevel::Error,
                    "connection_source_handler()",
                    "xps_pipe_source_write() failed: {err}"
                );
                connection_close(core, ptr, false);
            }
        }
        Received::EndOfInput => end_of_input(core, ptr),
        // The only moment the flag may go: see the module's doc.
        Received::Drained => XpsPipeSource::set_ready(core, source, false),
        Received::Nothing => {}
        Received::Failed => connection_close(core, ptr, false),
    }
}

/// One `recv()` of at most `room` bytes into the core's buffer.
fn receive(core: &mut XpsCore, ptr: ConnectionId, room: usize) -> Received {
    let XpsCore { connections, buffer, .. } = core;
    let Some(connection) = connections.get_mut(ptr) else { return Received::Nothing };
    let wanted = room.min(buffer.len());
    // A full pipe is not served (see handle_pipes); and a recv() of 0
    // bytes would return 0, which reads as end of input.
    if wanted == 0 {
        return Received::Nothing;
    }
    // `read()` on a &TcpStream is one recv() system call.
    match (&connection.socket).read(&mut buffer[..wanted]) {
        Ok(0) => {
            connection.heard = true;
            connection.ended = true;
            Received::EndOfInput
        }
        Ok(n) => {
            connection.heard = true;
            Received::Bytes(n)
        }
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => Received::Drained,
        // A signal came first: the flag stays, the next pass tries again.
        Err(err) if err.kind() == io::ErrorKind::Interrupted => Received::Nothing,
        Err(err) => {
            logger!(
                LogLevel::Error,
                "connection_source_handler()",
                "recv() from {} failed: {err}",
                connection.peer()
            );
            Received::Failed
        }
    }
}
// ANCHOR_END: source_handler

// ANCHOR: end_of_input
/// The client has closed its side of the connection (`recv()` returned 0).
///
/// The course closes the connection at once, dropping any bytes its pipe
/// still holds for the client. Beyond the course, the source leaves the
/// pipe instead, and the pipe does the rest: its sink sends what is left
/// and, once the pipe is empty, `handle_pipes()` closes the sink, whose
/// close handler closes the connection. A short message is sent in the
/// same turn it is read, before `recv()` sees the end, so both ways answer
/// `printf 'hi\n' | nc -N host port`; a client that sends more than the
/// socket buffers hold, then half-closes and only then reads, gets all of
/// it back only this way.
fn end_of_input(core: &mut XpsCore, ptr: ConnectionId) {
    let Some(connection) = core.connections.get(ptr) else { return };
    logger!(
        LogLevel::Debug,
        "connection_source_handler()",
        "{} finished sending",
        connection.peer()
    );
    let pipe = core.sources.get(connection.source).and_then(XpsPipeSource::pipe_id);
    if let Some(pipe) = pipe {
        // Cannot fail: the source names the pipe, so the pipe names it.
        let _ = XpsPipe::detach_source(core, pipe);
    }
    // Its sink done already (the other way had ended first): nothing is
    // left for this connection to do.
    if !has_an_active_end(core, ptr) {
        connection_close(core, ptr, true);
    }
}
// ANCHOR_END: end_of_input

// ANCHOR: print_message
/// How many bytes of a chunk the log shows (not in the course).
const SHOWN_BYTES: usize = 80;

/// Prints what the client sent, as `client: <message>`, on one line.
///
/// The bytes are escaped first: printed raw, a client could send escape
/// sequences that recolour, retitle or clear the operator's terminal.
///
/// The course's stage 10 stops printing what clients send; this port keeps
/// the line, so the messages can still be watched, but shows a chunk
/// longer than [`SHOWN_BYTES`] cut, with its size: then the log costs the
/// same for a chunk of 100 bytes or 100,000.
fn print_message(origin: &Origin, message: &[u8]) {
    let from = match origin {
        Origin::Accepted(_) => "client",
        Origin::Dialled => "upstream",
    };
    let text = message.strip_suffix(b"\n").unwrap_or(message);
    if text.len() <= SHOWN_BYTES {
        print_line(format_args!("{from}: {}", escape_for_terminal(text)));
    } else {
        let shown = escape_for_terminal(&text[..SHOWN_BYTES]);
        print_line(format_args!("{from}: {shown}... ({} bytes)", message.len()));
    }
}
// ANCHOR_END: print_message

// ANCHOR: sink_handler
/// The sink's `handler_cb` (`connection_sink_handler()`), called by
/// `handle_pipes()` while the sink is ready and its pipe holds bytes: one
/// send of as much of them as the socket takes, then those bytes are
/// cleared from the pipe. A failed send ends the connection.
fn connection_sink_handler(core: &mut XpsCore, ptr: ConnectionId) {
    let Some(connection) = core.connections.get(ptr) else { return };
    let sink = connection.sink;
    let mut slices = [IoSlice::new(&[]); MAX_SEND_BUFFERS];
    let Ok(n_slices) = XpsPipeSink::read(core, sink, &mut slices) else { return };
    let sent = send_buffers(&connection.socket, &slices[..n_slices]);
    match sent {
        // Whole buffers sent are freed, a partly sent one is kept for the
        // rest. Clearing cannot fail: the bytes sent came from the pipe.
        Ok(sent) => {
            let _ = XpsPipeSink::clear(core, sink, sent);
        }
        // The send buffer is full: wait for the edge that says it has room
        // again. Only now may the flag go (see the module's doc).
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
            XpsPipeSink::set_ready(core, sink, false);
        }
        // A signal came before anything was sent: the flag stays, the next
        // pass tries again.
        Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
        Err(err) => {
            logger!(
                LogLevel::Error,
                "connection_sink_handler()",
                "send() to {} failed: {err}",
                connection.peer()
            );
            connection_close(core, ptr, false);
        }
    }
}
// ANCHOR_END: sink_handler

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

// ANCHOR: close_handlers
/// The source's `close_cb` (`connection_source_close_handler()`), called
/// by `handle_pipes()` when the source has been deactivated because its
/// pipe lost its sink: what this peer sends has nowhere to go. The
/// connection closes once neither of its ends is active: until then its
/// sink may still have bytes to send (the response of an upstream that
/// has gone, to its client).
fn connection_source_close_handler(core: &mut XpsCore, ptr: ConnectionId) {
    if !has_an_active_end(core, ptr) {
        close_or_linger(core, ptr);
    }
}

/// The sink's `close_cb` (`connection_sink_close_handler()`), called by
/// `handle_pipes()` when the sink has been deactivated: its pipe lost its
/// source and is empty, so nothing more will come for this peer.
///
/// With its source gone too, the connection closes. Beyond the course, a
/// source that can still deliver (its pipe still has a sink) keeps the
/// connection open, half-closed: `shutdown(SHUT_WR)` sends the peer a
/// FIN, so it knows nothing more comes, and what it sends still flows.
/// That is how a client's half-close reaches its upstream (an HTTP/1.0
/// client may end its request that way) and how an upstream's close
/// reaches its client, after the last byte.
fn connection_sink_close_handler(core: &mut XpsCore, ptr: ConnectionId) {
    if !has_an_active_end(core, ptr) {
        close_or_linger(core, ptr);
        return;
    }
    let Some(connection) = core.connections.get(ptr) else { return };
    if source_can_deliver(core, connection.source) {
        logger!(
            LogLevel::Debug,
            "connection_sink_close_handler()",
            "nothing more for {}: half-closing",
            connection.peer()
        );
        // Fails only if the peer has gone already, which its source finds
        // out on its own.
        let _ = connection.socket.shutdown(Shutdown::Write);
    }
}

/// True if connection `ptr` exists and its source or its sink is active.
fn has_an_active_end(core: &XpsCore, ptr: ConnectionId) -> bool {
    let Some(connection) = core.connections.get(ptr) else { return false };
    let source = core.sources.get(connection.source).is_some_and(XpsPipeSource::is_active);
    let sink = core.sinks.get(connection.sink).is_some_and(XpsPipeSink::is_active);
    source || sink
}

/// True if `source` is active and its pipe has a sink to take what it
/// reads.
fn source_can_deliver(core: &XpsCore, source: SourceId) -> bool {
    let Some(source) = core.sources.get(source) else { return false };
    let pipe = source.pipe_id().and_then(|pipe| core.pipes.get(pipe));
    source.is_active() && pipe.is_some_and(|pipe| pipe.sink.is_some())
}
// ANCHOR_END: close_handlers

// ANCHOR: close_or_linger
/// Beyond the course: closes connection `ptr`, which has nothing more to
/// send and nowhere to put what it receives, so that its peer sees a
/// close (FIN), never a reset (RST), and never before its request.
///
/// Two things can turn a close into a reset or a hang, both seen when an
/// upstream refuses a client that has just connected:
///
/// * closing a socket with bytes it has not read makes the kernel send
///   an RST instead of a FIN: so what waits is read and thrown away first;
/// * an HTTP client whose connection is closed before it has written its
///   request may wait for an answer forever (`fetch()` in Node does): so a
///   client that has sent nothing yet is kept, "lingering", until its first
///   bytes come (then it is closed at once) or [`CLIENT_GRACE`] has passed.
///
/// An upstream, or a client that has spoken, is closed at once.
pub fn close_or_linger(core: &mut XpsCore, ptr: ConnectionId) {
    let XpsCore { connections, buffer, lingering, .. } = core;
    let Some(connection) = connections.get_mut(ptr) else { return };
    if connection.lingering {
        return;
    }
    if discard_input(&connection.socket, buffer) {
        connection.heard = true;
    }
    if connection.heard || connection.origin == Origin::Dialled {
        let ended = connection.ended;
        connection_close(core, ptr, ended);
        return;
    }
    connection.lingering = true;
    lingering.push_back((Instant::now() + CLIENT_GRACE, ptr));
    logger!(
        LogLevel::Debug,
        "close_or_linger()",
        "closing {} once it has sent its request (at most {} ms)",
        connection.peer(),
        CLIENT_GRACE.as_millis()
    );
}

/// Reads and throws away what `socket` has received; true if there was
/// anything (bytes, or the peer's end).
fn discard_input(mut socket: &TcpStream, buffer: &mut [u8]) -> bool {
    let mut any = false;
    loop {
        match socket.read(buffer) {
            Ok(0) => return true,
            Ok(_) => any = true,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            // Drained (EAGAIN), or the peer reset: nothing more to read.
            Err(_) => return any,
        }
    }
}

/// Closes lingering connection `ptr` now: its request came, or its time
/// is up.
fn discard_input_and_close(core: &mut XpsCore, ptr: ConnectionId) {
    let XpsCore { connections, buffer, .. } = core;
    let Some(connection) = connections.get_mut(ptr) else { return };
    discard_input(&connection.socket, buffer);
    connection_close(core, ptr, false);
}

/// How long the loop may sleep before the first lingering client's time is
/// up: `-1` (no limit) if none is waiting.
pub fn linger_timeout_ms(core: &XpsCore) -> i32 {
    let Some(&(deadline, _)) = core.lingering.front() else { return -1 };
    let left = deadline.saturating_duration_since(Instant::now());
    // Rounded up: woken a millisecond early, the loop would find nothing
    // due and sleep again for 0 ms.
    i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
}

/// Closes the lingering clients whose time is up. They all wait the same
/// [`CLIENT_GRACE`], so the queue is in deadline order; an entry whose
/// connection was closed meanwhile finds nothing (its id is stale).
pub fn close_lingering(core: &mut XpsCore) {
    let now = Instant::now();
    while let Some(&(deadline, id)) = core.lingering.front() {
        if deadline > now {
            break;
        }
        core.lingering.pop_front();
        if core.connections.get(id).is_some_and(|connection| connection.lingering) {
            discard_input_and_close(core, id);
        }
    }
}
// ANCHOR_END: close_or_linger

// ANCHOR: loop_close_handler
/// Called by the loop when connection `ptr` reports an error or a hang-up
/// with nothing left to read (`connection_loop_close_handler()`). The
/// error, if the socket holds one, goes to the log; without one, the
/// course calls it the peer's close.
///
/// A client that closes or resets its connection does not come here: on
/// TCP its close is readable (`recv()` returns 0) and its reset comes with
/// `EPOLLIN` too, so the source handler finds out (see the loop's
/// `dispatch`). This is for an error with no stream to read, which the
/// kernel reports on a TCP socket only in rare cases (an ICMP error with
/// `IP_RECVERR` set, say).
fn connection_loop_close_handler(core: &mut XpsCore, ptr: ConnectionId) {
    // An upstream still connecting: its failure is logged there.
    if !is_connected(core, ptr) {
        return;
    }
    let Some(connection) = core.connections.get(ptr) else { return };
    match connection.socket.take_error() {
        Ok(Some(err)) => {
            logger!(
                LogLevel::Error,
                "connection_loop_close_handler()",
                "connection to {} failed: {err}",
                connection.peer()
            );
            connection_close(core, ptr, false);
        }
        _ => connection_close(core, ptr, true),
    }
}
// ANCHOR_END: loop_close_handler

#[cfg(test)]
pub(crate) mod tests {
    //! The ready flags and the pipe of a connection, driven with real TCP
    //! sockets on 127.0.0.1.
    use super::*;
    use crate::core::xps_loop::XpsLoop;
    use crate::core::xps_loop::tests::{running_core, serial};
    use crate::core::xps_pipe::PipeId;
    use crate::utils::xps_utils::make_socket_non_blocking;
    use crate::xps::DEFAULT_PIPE_BUFF_THRESH;
    use std::io::Write;
    use std::net::{Ipv4Addr, Shutdown, TcpListener};
    use std::time::{Duration, Instant};

    /// A new connection of `core`, joined to itself by a pipe as the
    /// listener does it, and the client at its other end: the connection's
    /// id, its pipe and the client's socket.
    pub(crate) fn connect_client(core: &mut XpsCore) -> (ConnectionId, PipeId, TcpStream) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let (socket, _peer) = listener.accept().unwrap();
        make_socket_non_blocking(socket.as_raw_fd()).unwrap();
        // A listener id that names no listener: a connection outlives its
        // listener as well.
        let id =
            XpsConnection::create(core, socket, Origin::Accepted(Id::for_test(0)), "").unwrap();
        let (source, sink) = (connection(core, id).source, connection(core, id).sink);
        let pipe = XpsPipe::create(core, DEFAULT_PIPE_BUFF_THRESH, source, sink).unwrap();
        (id, pipe, client)
    }

    /// Connection `id`, which must exist.
    pub(crate) fn connection(core: &mut XpsCore, id: ConnectionId) -> &mut XpsConnection {
        core.connections.get_mut(id).unwrap()
    }

    fn source_ready(core: &mut XpsCore, id: ConnectionId) -> bool {
        let source = connection(core, id).source;
        core.sources.get(source).unwrap().is_ready()
    }

    fn sink_ready(core: &mut XpsCore, id: ConnectionId) -> bool {
        let sink = connection(core, id).sink;
        core.sinks.get(sink).unwrap().is_ready()
    }

    fn in_pipe(core: &XpsCore, pipe: PipeId) -> usize {
        core.pipes.get(pipe).unwrap().buff_list.len()
    }

    /// Runs rounds of the loop (waits and callbacks, no pipe handling)
    /// until `done` holds; false if it still does not after 2 s.
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

    /// Runs whole rounds of the loop (pipes, then a short wait) until `done`
    /// holds; false if it still does not after 2 s.
    fn run_until(core: &mut XpsCore, done: impl Fn(&mut XpsCore) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !done(core) {
            if Instant::now() > deadline {
                return false;
            }
            XpsLoop::handle_pipes(core);
            XpsLoop::wait_and_dispatch(core, 10).unwrap();
        }
        true
    }

    #[test]
    fn the_loop_callbacks_only_set_the_flags() {
        let _serial = serial();
        let mut core = running_core();
        let (id, pipe, mut client) = connect_client(&mut core);
        // Attaching reports the empty send buffer once: the sink is ready,
        // but an empty pipe gives it nothing to do, so it is not queued.
        assert!(dispatch_until(&mut core, |core| sink_ready(core, id)));
        assert!(!source_ready(&mut core, id));
        assert!(!core.pipes.get(pipe).unwrap().queued);

        client.write_all(b"hello\n").unwrap();
        assert!(dispatch_until(&mut core, |core| source_ready(core, id)));
        assert!(core.pipes.get(pipe).unwrap().queued, "a pipe with a ready source is queued");
        assert_eq!(in_pipe(&core, pipe), 0, "the callback must not recv()");
        core.destroy();
    }

    /// Runs whole rounds of the loop while reading what comes back to
    /// `client`, until `len` bytes have (or 2 s have passed).
    fn run_and_read(core: &mut XpsCore, client: &mut TcpStream, len: usize) -> Vec<u8> {
        client.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut reply = vec![0; len];
        let mut got = 0;
        while got < len && Instant::now() < deadline {
            XpsLoop::handle_pipes(core);
            XpsLoop::wait_and_dispatch(core, 10).unwrap();
            got += client.read(&mut reply[got..]).unwrap_or(0);
        }
        client.set_nonblocking(false).unwrap();
        reply.truncate(got);
        reply
    }

    #[test]
    fn what_the_client_sends_comes_back_unchanged() {
        let _serial = serial();
        let mut core = running_core();
        let (_id, pipe, mut client) = connect_client(&mut core);
        client.write_all(b"Hello, world\n").unwrap();
        assert_eq!(run_and_read(&mut core, &mut client, 13), b"Hello, world\n");
        assert_eq!(in_pipe(&core, pipe), 0, "sent bytes must be cleared from the pipe");
        core.destroy();
    }

    #[test]
    fn the_source_ready_flag_is_cleared_only_when_recv_says_eagain() {
        let _serial = serial();
        let mut core = running_core();
        let (id, pipe, mut client) = connect_client(&mut core);
        client.write_all(b"hello\n").unwrap();
        assert!(dispatch_until(&mut core, |core| source_ready(core, id)));

        connection_source_handler(&mut core, id);
        assert_eq!(in_pipe(&core, pipe), 6, "one recv() of the whole message");
        assert!(source_ready(&mut core, id), "cleared before EAGAIN: later bytes would be lost");

        connection_source_handler(&mut core, id);
        assert!(!source_ready(&mut core, id), "never cleared: the loop would spin");
        assert_eq!(in_pipe(&core, pipe), 6);
        core.destroy();
    }

    #[test]
    fn a_silent_client_lingers_until_its_grace_is_up_and_no_longer() {
        let _serial = serial();
        let mut core = running_core();
        assert_eq!(linger_timeout_ms(&core), -1, "no one lingers: the loop may sleep unbounded");
        let (id, _pipe, client) = connect_client(&mut core);
        close_or_linger(&mut core, id);
        assert!(connection(&mut core, id).lingering, "a client that said nothing is kept");
        let ms = linger_timeout_ms(&core);
        assert!(ms > 0 && ms as u128 <= CLIENT_GRACE.as_millis(), "woken after {ms} ms");
        close_lingering(&mut core);
        assert!(core.connections.get(id).is_some(), "closed before its grace was up");
        // Its time comes: the queue's deadline is now in the past.
        core.lingering.front_mut().unwrap().0 = Instant::now();
        close_lingering(&mut core);
        assert!(core.connections.get(id).is_none(), "kept after its grace");
        assert!(core.lingering.is_empty());
        assert_eq!(linger_timeout_ms(&core), -1);
        drop(client);
        core.destroy();
    }

    #[test]
    fn a_client_that_never_reads_fills_its_pipe_and_no_more() {
        let _serial = serial();
        let mut core = running_core();
        let (id, pipe, client) = connect_client(&mut core);
        // A writer thread sends up to 32 MiB, far more than the pipe and
        // both sockets' buffers hold, until told to stop; the client never
        // reads. `blocked` is set when a write finds no room at all.
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let blocked = std::sync::Arc::new(AtomicBool::new(false));
        let (stopped, blocked_now) =
            (std::sync::Arc::clone(&stop), std::sync::Arc::clone(&blocked));
        let writer = std::thread::spawn(move || {
            let mut client = client;
            client.set_write_timeout(Some(Duration::from_millis(20))).unwrap();
            let chunk = [b'x'; 64 * 1024];
            let mut sent = 0;
            while sent < 32 << 20 && !stopped.load(Ordering::Relaxed) {
                match client.write(&chunk) {
                    Ok(n) => sent += n,
                    Err(err)
                        if matches!(
                            err.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        blocked_now.store(true, Ordering::Relaxed);
                    }
                    Err(err) => panic!("the writer failed: {err}"),
                }
            }
            (client, sent)
        });
        // Run the loop until the pipe is full and the sink stuck, then let
        // the writer fill the socket buffers until it finds no room (on a
        // busy machine that can take a while: wait for it, within limits).
        assert!(run_until(&mut core, |core| {
            !core.pipes.get(pipe).unwrap().is_writable() && !sink_ready(core, id)
        }));
        // A write may have found no room earlier, while the loop was slower
        // than the writer; only one from now on shows the client stopped.
        // (Clearing the flag on every later write instead made the test
        // flaky: a write that waits can still take a few bytes once the
        // kernel grows the receiving socket's buffer.)
        blocked.store(false, Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !blocked.load(Ordering::Relaxed) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::Relaxed);
        let (client, sent) = writer.join().unwrap();
        let blocked = blocked.load(Ordering::Relaxed);
        assert!(blocked && sent < 32 << 20, "the client was never stopped ({sent} bytes sent)");
        let pipe_now = core.pipes.get(pipe).unwrap();
        assert!(pipe_now.buff_list.held() <= DEFAULT_PIPE_BUFF_THRESH + 100_100);
        // The source is still ready (bytes wait in the kernel) but has no
        // turn while the pipe is full; nothing is left to do.
        assert!(source_ready(&mut core, id));
        assert!(!XpsPipe::has_work(&core, pipe));
        assert!(!XpsLoop::handle_pipes(&mut core));
        drop(client);
        core.destroy();
    }

    #[test]
    fn end_of_input_lets_the_sink_drain_the_pipe_first() {
        let _serial = serial();
        let mut core = running_core();
        let (id, pipe, mut client) = connect_client(&mut core);
        client.write_all(b"last words\n").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        assert!(dispatch_until(&mut core, |core| source_ready(core, id)));
        // Only the source runs: it reads the bytes, then the end of input.
        let source = connection(&mut core, id).source;
        let deadline = Instant::now() + Duration::from_secs(2);
        while core.sources.get(source).is_some_and(|source| source.pipe_id().is_some()) {
            assert!(Instant::now() < deadline, "the end of input was never read");
            connection_source_handler(&mut core, id);
        }
        assert!(core.connections.get(id).is_some(), "closed with bytes still in its pipe");
        assert_eq!(in_pipe(&core, pipe), 11);
        // The sink sends them, then the pipe closes the connection.
        let mut reply = run_and_read(&mut core, &mut client, 11);
        assert_eq!(reply, b"last words\n");
        assert!(run_until(&mut core, |core| core.connections.get(id).is_none()));
        client.read_to_end(&mut reply).unwrap();
        assert_eq!(reply, b"last words\n", "more bytes, or no clean end");
        assert!(!XpsLoop::handle_pipes(&mut core));
        assert!(core.pipes.is_empty(), "the pipe outlived both its ends");
        core.destroy();
    }

    #[test]
    fn a_peer_that_left_is_closed_with_its_pipe() {
        let _serial = serial();
        let mut core = running_core();
        let (id, _pipe, client) = connect_client(&mut core);
        drop(client);
        assert!(run_until(&mut core, |core| core.connections.get(id).is_none()));
        assert!(!XpsLoop::handle_pipes(&mut core));
        assert!(core.pipes.is_empty() && core.sources.is_empty() && core.sinks.is_empty());
        core.destroy();
    }

    /// The loop calls the close handler for an error or hang-up with
    /// nothing to read (see the loop's `dispatch`); called as the loop
    /// would, it destroys the connection and closes its socket.
    #[test]
    fn the_loop_close_handler_destroys_the_connection_and_closes_its_socket() {
        let _serial = serial();
        let mut core = running_core();
        let (id, _pipe, mut client) = connect_client(&mut core);
        connection_loop_close_handler(&mut core, id);
        assert!(core.connections.get(id).is_none(), "the connection is still in the core");
        client.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut byte = [0; 1];
        assert_eq!(client.read(&mut byte).unwrap(), 0, "the client's stream did not end");
        core.destroy();
    }

    /// A client connection of `core` with no pipe yet, and its client.
    fn accepted(core: &mut XpsCore) -> (ConnectionId, TcpStream) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (socket, _peer) = listener.accept().unwrap();
        make_socket_non_blocking(socket.as_raw_fd()).unwrap();
        let id =
            XpsConnection::create(core, socket, Origin::Accepted(Id::for_test(0)), "").unwrap();
        (id, client)
    }

    /// Two connections joined as the proxy joins a client and its
    /// upstream. When A's peer half-closes, A's pipe drains into B and
    /// B's sink is done: B is half-closed (its peer reads the end), and
    /// stays open, since what B's peer sends still goes to A.
    #[test]
    fn a_sink_done_while_its_source_still_delivers_half_closes() {
        let _serial = serial();
        let mut core = running_core();
        let (a, mut peer_a) = accepted(&mut core);
        let (b, mut peer_b) = accepted(&mut core);
        let ends =
            |core: &mut XpsCore, id| (connection(core, id).source, connection(core, id).sink);
        let ((a_source, a_sink), (b_source, b_sink)) = (ends(&mut core, a), ends(&mut core, b));
        XpsPipe::create(&mut core, DEFAULT_PIPE_BUFF_THRESH, a_source, b_sink).unwrap();
        XpsPipe::create(&mut core, DEFAULT_PIPE_BUFF_THRESH, b_source, a_sink).unwrap();

        peer_a.write_all(b"request").unwrap();
        peer_a.shutdown(Shutdown::Write).unwrap();
        let mut got = run_and_read(&mut core, &mut peer_b, 7);
        assert_eq!(got, b"request");
        // The end of A's input reaches B's peer as an end too...
        let ended = run_until(&mut core, |_| {
            peer_b.set_nonblocking(true).unwrap();
            let mut byte = [0; 1];
            let ended = matches!((&peer_b).read(&mut byte), Ok(0));
            peer_b.set_nonblocking(false).unwrap();
            ended
        });
        assert!(ended, "B's peer was never told that nothing more comes");
        assert!(core.connections.get(b).is_some(), "B was closed, not half-closed");
        // ...and what B's peer sends still reaches A's.
        peer_b.write_all(b"response").unwrap();
        got = run_and_read(&mut core, &mut peer_a, 8);
        assert_eq!(got, b"response");
        core.destroy();
    }
}
