//! A connection: `xps_connection.c`. One accepted client; when it sends
//! something, the loop calls [`connection_read_handler`], which prints the
//! message and sends it back reversed.

use crate::core::xps_core::XpsCore;
use crate::core::xps_loop::EventCallbacks;
use crate::core::xps_slots::Id;
use crate::logger;
use crate::network::xps_listener::ListenerId;
use crate::shutdown;
use crate::utils::xps_logger::{LogLevel, flush_log, print_line};
use crate::utils::xps_utils::{escape_for_terminal, get_remote_ip, reverse_in_place};
use crate::xps::SEND_STALL_CHECK;
use std::io::{self, Read, Write};
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
    /// The connected socket (`sock_fd` in C), closed when dropped. It is a
    /// *blocking* socket, as in the course: that is the lesson of the
    /// experiment at the end of this stage.
    pub socket: TcpStream,
    /// The listener that accepted it (a pointer in C). It may be destroyed
    /// first: then the id finds nothing.
    pub listener: ListenerId,
    /// The client's IP address, for the log.
    pub remote_ip: String,
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
        // A blocking send() gives control back after this long without
        // progress, so that the server can say in its log that it is stuck.
        socket
            .set_write_timeout(Some(SEND_STALL_CHECK))
            .map_err(|e| fail("setsockopt(SO_SNDTIMEO)", e))?;
        // A client that connects and resets at once is still handed over by
        // accept(); asking for its address is how we find out it has gone.
        // That is the client's doing, not a server error, hence INFO.
        let Some(remote_ip) = get_remote_ip(&socket) else {
            logger!(LogLevel::Info, "xps_connection_create()", "client left before it was served");
            return Err(io::Error::from(io::ErrorKind::NotConnected));
        };
        let fd = socket.as_raw_fd();

        let id = core.connections.insert(XpsConnection { socket, listener, remote_ip });
        let callbacks = EventCallbacks::Connection { ptr: id, read_cb: connection_read_handler };
        if let Err(err) = core.event_loop.attach(fd, libc::EPOLLIN as u32, callbacks) {
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
    /// from the loop and closes its socket. The listener is left alone.
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
    }
    // ANCHOR_END: destroy
}

// ANCHOR: after_read
/// What the read handler decided about the connection.
enum AfterRead {
    /// Keep the connection: the message was answered, or the server is
    /// shutting down and the core will destroy it.
    Keep,
    /// The client is gone or the socket failed: destroy the connection.
    Destroy,
}
// ANCHOR_END: after_read

// ANCHOR: read_handler
/// Called by the loop when connection `ptr` is readable
/// (`connection_read_handler()`): receive, print, reverse, send back.
fn connection_read_handler(core: &mut XpsCore, ptr: ConnectionId) {
    if let AfterRead::Destroy = serve_message(core, ptr) {
        XpsConnection::destroy(core, ptr);
    }
}

/// One `recv()` and its reply. Borrows the connection and the core's buffer
/// side by side, which is why it is apart from the handler that destroys.
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
        Err(err) if err.kind() == io::ErrorKind::Interrupted => return AfterRead::Keep,
        Err(err) => {
            logger!(LogLevel::Error, "connection_read_handler()", "recv() failed: {err}");
            return AfterRead::Destroy;
        }
    };
    let message = &mut buffer[..n];
    print_message(message);
    reverse_in_place(message);
    send_all(&mut connection.socket, message)
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

// ANCHOR: send_all
/// Sends every byte of `reply`, however many `send()` calls that takes.
///
/// The socket is blocking, so `send()` waits while the client's receive
/// window and our send buffer are full. If the client never reads, that is
/// forever: the whole server waits with it, which is Experiment 1.
///
/// Only a shutdown signal gets the server out: it interrupts the blocked
/// `send()` (or cuts it short), and the loop stops right after this
/// handler. (A signal that lands between the check and the next `send()`
/// does not interrupt it; that `send()` gives up after `SEND_STALL_CHECK`,
/// and the check comes round again.)
fn send_all(socket: &mut TcpStream, mut reply: &[u8]) -> AfterRead {
    let mut stalled = false;
    while !reply.is_empty() {
        if shutdown::requested().is_some() {
            return AfterRead::Keep;
        }
        // `write()` on a TcpStream is one send() with MSG_NOSIGNAL, so a
        // client that has gone away gives EPIPE, not a fatal SIGPIPE.
        match socket.write(reply) {
            Ok(0) => {
                logger!(LogLevel::Error, "connection_read_handler()", "send() wrote nothing");
                return AfterRead::Destroy;
            }
            Ok(n) => reply = &reply[n..],
            // SO_SNDTIMEO ran out with no progress, or a signal came
            // (checked at the top): still blocked, so block again.
            Err(err) if is_stall(&err) => {
                if !stalled {
                    stalled = true;
                    logger!(
                        LogLevel::Debug,
                        "connection_read_handler()",
                        "send() is blocked: the client is not reading"
                    );
                    // The server may sit here a long time: show the log so far.
                    flush_log();
                }
            }
            Err(err) => {
                logger!(LogLevel::Error, "connection_read_handler()", "send() failed: {err}");
                return AfterRead::Destroy;
            }
        }
    }
    AfterRead::Keep
}
// ANCHOR_END: send_all

// ANCHOR: is_stall
/// True for the errors that mean "no progress yet, try again".
fn is_stall(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}
// ANCHOR_END: is_stall
