//! A connection: `xps_connection.c`. One accepted client; when it sends
//! something, the loop calls [`xps_connection_read_handler`], which prints
//! the message and sends it back reversed.

use crate::utils::xps_logger::{LogLevel, print_line};
use crate::utils::xps_utils::{escape_for_terminal, get_remote_ip, reverse_in_place};
use crate::xps::{CONNECTIONS, DEFAULT_BUFFER_SIZE, LISTENERS, xps_loop_attach, xps_loop_detach};
use crate::{lock, logger};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Mutex;

// ANCHOR: xps_connection
/// One connected client: `xps_connection_t` in C.
#[derive(Debug)]
pub struct XpsConnection {
    /// The epoll instance the connection is attached to.
    pub epoll_fd: RawFd,
    /// The connected socket (`sock_fd` in C), closed when dropped. It is a
    /// *blocking* socket, as in the course.
    pub socket: TcpStream,
    /// Id of the listener that accepted it, in `LISTENERS`.
    pub listener: usize,
    /// The client's IP address, for the log.
    pub remote_ip: String,
}
// ANCHOR_END: xps_connection

// ANCHOR: buffer
/// The buffer every `recv()` reads into. In C it sits on the stack of the
/// read handler; one global buffer, beside the global lists, serves every
/// connection without zeroing 100 KB for each message.
static BUFFER: Mutex<[u8; DEFAULT_BUFFER_SIZE]> = Mutex::new([0; DEFAULT_BUFFER_SIZE]);
// ANCHOR_END: buffer

impl XpsConnection {
    // ANCHOR: create
    /// `xps_connection_create()`: attaches an accepted socket to the loop and
    /// adds the connection to the global list. Returns the connection's id.
    pub fn create(epoll_fd: RawFd, socket: TcpStream, listener: usize) -> io::Result<usize> {
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
        // On failure, dropping `socket` closes it.
        xps_loop_attach(epoll_fd, socket.as_raw_fd(), libc::EPOLLIN as u32)
            .map_err(|err| fail("xps_loop_attach()", err))?;

        let mut connections = lock(&CONNECTIONS);
        connections.push(Some(XpsConnection { epoll_fd, socket, listener, remote_ip }));
        logger!(LogLevel::Debug, "xps_connection_create()", "created connection");
        Ok(connections.len() - 1)
    }
    // ANCHOR_END: create

    // ANCHOR: destroy
    /// `xps_connection_destroy()`: empties the connection's slot in the
    /// global list, detaches it from the loop and closes its socket. The
    /// listener is left alone.
    pub fn destroy(id: usize) {
        let Some(connection) = lock(&CONNECTIONS).get_mut(id).and_then(Option::take) else {
            return;
        };
        // An error here has been logged by the loop; the socket is closed
        // below either way.
        let _ = xps_loop_detach(connection.epoll_fd, connection.socket.as_raw_fd());
        let port =
            lock(&LISTENERS).get(connection.listener).and_then(Option::as_ref).map(|l| l.port);
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

/// What the read handler decided about the connection.
enum AfterRead {
    /// Keep the connection: the message was answered.
    Keep,
    /// The client is gone or the socket failed: destroy the connection.
    Destroy,
}

// ANCHOR: read_handler
/// Called by the loop when connection `id` is readable: receive, print,
/// reverse, send back.
pub fn xps_connection_read_handler(id: usize) {
    if let AfterRead::Destroy = serve_message(id) {
        XpsConnection::destroy(id);
    }
}

/// One `recv()` and its reply, with the list and the buffer locked; apart
/// from the handler because destroying needs the list unlocked again.
fn serve_message(id: usize) -> AfterRead {
    let mut connections = lock(&CONNECTIONS);
    let Some(connection) = connections.get_mut(id).and_then(Option::as_mut) else {
        return AfterRead::Keep;
    };
    let mut buffer = lock(&BUFFER);
    // `read()` on a TcpStream is one recv() system call.
    let n = match connection.socket.read(&mut buffer[..]) {
        Ok(0) => {
            logger!(LogLevel::Info, "xps_connection_read_handler()", "peer closed connection");
            return AfterRead::Destroy;
        }
        Ok(n) => n,
        Err(err) if err.kind() == io::ErrorKind::Interrupted => return AfterRead::Keep,
        Err(err) => {
            logger!(LogLevel::Error, "xps_connection_read_handler()", "recv() failed: {err}");
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
/// forever, and the whole server waits with it.
fn send_all(socket: &mut TcpStream, mut reply: &[u8]) -> AfterRead {
    while !reply.is_empty() {
        // `write()` on a TcpStream is one send() with MSG_NOSIGNAL, so a
        // client that has gone away gives EPIPE, not a fatal SIGPIPE.
        match socket.write(reply) {
            Ok(0) => {
                logger!(LogLevel::Error, "xps_connection_read_handler()", "send() wrote nothing");
                return AfterRead::Destroy;
            }
            Ok(n) => reply = &reply[n..],
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => {
                logger!(LogLevel::Error, "xps_connection_read_handler()", "send() failed: {err}");
                return AfterRead::Destroy;
            }
        }
    }
    AfterRead::Keep
}
// ANCHOR_END: send_all
