//! A connection: `xps_connection.c`. One accepted client. When it sends
//! something, the loop calls [`connection_loop_read_handler`], which prints
//! the message and queues it reversed; whenever the socket can take more,
//! the loop calls [`connection_loop_write_handler`], which sends what is
//! queued.
//!
//! The course's stage 8 names the three callbacks the loop calls
//! `connection_loop_read_handler()`, `connection_loop_write_handler()` and
//! `connection_loop_close_handler()`, and the log lines carry those names.
//! (Its stage 7 shows no name for the connection's one callback; this
//! port's stage 7 called it `connection_read_handler()`, after the
//! listener's `listener_connection_handler()`.)

use crate::core::xps_core::XpsCore;
use crate::core::xps_loop::EventCallbacks;
use crate::core::xps_slots::Id;
use crate::logger;
use crate::network::xps_listener::ListenerId;
use crate::utils::xps_buffer::{XpsBuffer, XpsBufferList};
use crate::utils::xps_logger::{LogLevel, print_line};
use crate::utils::xps_utils::{escape_for_terminal, get_remote_ip, reverse_in_place};
use crate::xps::MAX_SEND_BUFFERS;
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

        let write_buff_list = XpsBufferList::create();
        let id =
            core.connections.insert(XpsConnection { socket, listener, remote_ip, write_buff_list });
        // Level-triggered EPOLLOUT is reported on every wait while the
        // socket's send buffer has room: for an idle client, always. So the
        // loop never sleeps while a client is connected (Experiment 1 of
        // this stage); stage 9's edge triggering fixes that.
        let callbacks = EventCallbacks::Connection {
            ptr: id,
            read_cb: connection_loop_read_handler,
            write_cb: connection_loop_write_handler,
            close_cb: connection_loop_close_handler,
        };
        let attached =
            core.event_loop.attach(fd, (libc::EPOLLIN | libc::EPOLLOUT) as u32, callbacks);
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
        let XpsConnection { socket, write_buff_list, .. } = connection;
        drop(socket);
        write_buff_list.destroy();
    }
    // ANCHOR_END: destroy
}

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
/// Called by the loop when connection `ptr` is readable
/// (`connection_loop_read_handler()`): receive, print, reverse, and queue
/// the reply. Nothing is sent here: the write handler sends when the
/// socket has room.
fn connection_loop_read_handler(core: &mut XpsCore, ptr: ConnectionId) {
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
            logger!(LogLevel::Info, "connection_loop_read_handler()", "peer closed connection");
            return AfterRead::Destroy;
        }
        Ok(n) => n,
        // Nothing to read after all (the socket is non-blocking now), or a
        // signal came first: the loop calls again if there is.
        Err(err)
            if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) =>
        {
            return AfterRead::Keep;
        }
        Err(err) => {
            logger!(LogLevel::Error, "connection_loop_read_handler()", "recv() failed: {err}");
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
/// Called by the loop when connection `ptr` is writable
/// (`connection_loop_write_handler()`): sends as much of the queued replies
/// as the socket takes, and drops from the list what was sent. A failed
/// send ends the connection.
fn connection_loop_write_handler(core: &mut XpsCore, ptr: ConnectionId) {
    let Some(connection) = core.connections.get_mut(ptr) else { return };
    if let Err(err) = send_queued(connection) {
        logger!(LogLevel::Error, "connection_loop_write_handler()", "send() failed: {err}");
        XpsConnection::destroy(core, ptr);
    }
}

/// One send of the front of the write list; `Ok` unless the connection
/// has failed.
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
        // The socket had no room after all: wait for the next EPOLLOUT.
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(()),
        // A signal came before anything was sent: the loop calls again.
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
mod tests {
    use super::*;
    use crate::core::xps_loop::tests::serial;
    use crate::core::xps_slots::Id;
    use crate::utils::xps_utils::make_socket_non_blocking;
    use std::net::{Ipv4Addr, TcpListener};
    use std::time::Duration;

    /// No TCP connection of these tests can make epoll report an error
    /// with nothing to read (see the loop's `dispatch`), so the handler is
    /// called as the loop would call it.
    #[test]
    fn the_close_handler_destroys_the_connection_and_closes_its_socket() {
        let _serial = serial();
        let mut core = XpsCore::create().unwrap();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (socket, _peer) = listener.accept().unwrap();
        make_socket_non_blocking(socket.as_raw_fd()).unwrap();
        let id = XpsConnection::create(&mut core, socket, Id::for_test(0)).unwrap();
        connection_loop_close_handler(&mut core, id);
        assert!(core.connections.get(id).is_none(), "the connection is still in the core");
        client.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut byte = [0; 1];
        assert_eq!(client.read(&mut byte).unwrap(), 0, "the client's stream did not end");
        core.destroy();
    }
}
