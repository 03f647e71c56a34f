//! The upstream: `xps_upstream.c`, new in stage 11. An upstream is the
//! server this one forwards a client to (the course's 127.0.0.1:3000).
//! It is an ordinary connection, made by `connect()` instead of
//! `accept()`: the same structure, source and sink, so the listener can
//! join it to its client with two pipes.

use crate::core::xps_core::XpsCore;
use crate::logger;
use crate::network::xps_connection::{ConnectionId, Origin, XpsConnection};
use crate::utils::xps_logger::LogLevel;
use crate::utils::xps_utils::{check_os, to_sockaddr_in, xps_getaddrinfo};
use std::io;
#[cfg(test)]
use std::net::SocketAddr;
use std::net::{SocketAddrV4, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// ANCHOR: create
/// `xps_upstream_create()`: starts a connection to `host:port` and adds it
/// to the core as a connection. Returns its id.
///
/// The socket is non-blocking from birth (the course's page leaves that
/// out; a blocking `connect()` would stop every client while the upstream
/// answers). So `connect()` only starts the handshake, and the outcome,
/// connected or refused, arrives later as the socket's first event (see
/// `is_connected` in xps_connection.rs). Meanwhile the connection is in
/// the core like any other: what its client sends waits in their pipe.
///
/// Fails, with an ERROR line naming the upstream, only if the host does
/// not resolve or the socket cannot be made (for lack of fds, the caller
/// logs it).
pub fn xps_upstream_create(core: &mut XpsCore, host: &str, port: u16) -> io::Result<ConnectionId> {
    let fail = |step: &str, err: io::Error| {
        // Out of fds, the listener logs the shortage once for all the
        // clients it turns away (see forward() in xps_listener.rs).
        if !matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
            logger!(
                LogLevel::Error,
                "xps_upstream_create()",
                "{step} failed for upstream {host}:{port}: {err}"
            );
        }
        err
    };
    let addr = xps_getaddrinfo(host, port).map_err(|err| fail("resolving the host", err))?;
    let socket = start_connect(addr).map_err(|(step, err)| fail(step, err))?;
    let id = XpsConnection::create(core, socket, Origin::Dialled, &format!("{host}:{port}"))?;
    logger!(LogLevel::Debug, "xps_upstream_create()", "connecting to upstream {host}:{port}");
    Ok(id)
}
// ANCHOR_END: create

// ANCHOR: start_connect
/// A non-blocking TCP socket with its `connect()` to `addr` started. On
/// failure, says which call failed.
///
/// std's `TcpStream::connect` blocks until the handshake is over, so the
/// two calls are made by hand, as for the listening socket.
fn start_connect(addr: SocketAddrV4) -> Result<TcpStream, (&'static str, io::Error)> {
    let flags = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: socket() takes no pointers; the result is checked.
    let raw =
        check_os(unsafe { libc::socket(libc::AF_INET, flags, 0) }).map_err(|e| ("socket()", e))?;
    // SAFETY: `raw` is a new, valid fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };

    let sockaddr = to_sockaddr_in(addr);
    // SAFETY: `sockaddr` is a valid sockaddr_in that outlives the call, and
    // its exact size is passed with it.
    let started = check_os(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&raw const sockaddr).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    });
    match started {
        Ok(_) => {}
        // The handshake is under way (EINPROGRESS), or a signal came first
        // (EINTR), after which it goes on all the same: connect(2) says
        // both finish in the background.
        Err(err) if matches!(err.raw_os_error(), Some(libc::EINPROGRESS | libc::EINTR)) => {}
        Err(err) => return Err(("connect()", err)),
    }
    Ok(TcpStream::from(fd))
}
// ANCHOR_END: start_connect

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener};
    use std::time::Duration;

    /// A non-blocking connect() to a live port is started, not failed
    /// (EINPROGRESS), and the socket it gives is non-blocking.
    #[test]
    fn a_connect_in_progress_is_started_not_failed() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let SocketAddr::V4(addr) = listener.local_addr().unwrap() else { unreachable!() };
        let socket = start_connect(addr).expect("EINPROGRESS is no failure");
        // SAFETY: F_GETFL takes no pointers; the fd is open for the call.
        let flags = unsafe { libc::fcntl(socket.as_raw_fd(), libc::F_GETFL) };
        assert!(flags >= 0 && flags & libc::O_NONBLOCK != 0, "the socket blocks");
        listener.set_nonblocking(false).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        accepted.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        // The handshake finished: the peer is the socket we made.
        assert_eq!(accepted.peer_addr().unwrap(), socket.local_addr().unwrap());
    }
}
