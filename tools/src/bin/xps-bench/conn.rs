//! Connections: what each one is for, where it is in its life, the errors
//! counted, and how a non-blocking `connect()` is started.

use shared::oracle::Rng;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;

/// What a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Opened and then left alone.
    Idle,
    /// Sends a message, waits for its reply, sends the next.
    Active,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// `connect()` is in progress.
    Connecting,
    /// An idle connection, established.
    Idle,
    /// Part of the message is still to be sent.
    Sending,
    /// The message is sent; part of the reply is still to come.
    Receiving,
    /// Closed, after an error or at the end.
    Closed,
}

/// The kinds of error counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// A reply that is not what the stage's protocol says.
    Wrong,
    /// The server closed or reset the connection.
    Reset,
    /// A reply or a handshake that did not come in time.
    Timeout,
    /// The connection could not be opened.
    Connect,
}

pub(crate) struct Conn {
    /// `None` once closed (dropping it closes the socket, which also takes
    /// it out of the epoll set).
    pub(crate) stream: Option<TcpStream>,
    pub(crate) role: Role,
    pub(crate) state: State,
    /// When the handshake or the current message started.
    pub(crate) started: Instant,
    pub(crate) rng: Rng,
    pub(crate) message: Vec<u8>,
    /// How much of `message` has been sent.
    pub(crate) sent: usize,
    pub(crate) reply: Vec<u8>,
    /// Correct replies received on this connection.
    pub(crate) replies: u64,
}

/// A new non-blocking socket with `connect()` to `addr` under way.
pub(crate) fn start_connect(addr: &SocketAddr) -> io::Result<TcpStream> {
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    let flags = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: socket() takes no pointers; the result is checked.
    let raw = unsafe { libc::socket(family, flags, 0) };
    if raw == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new, valid fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let ret = match addr {
        SocketAddr::V4(v4) => {
            let sockaddr = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from(*v4.ip()).to_be() },
                sin_zero: [0; 8],
            };
            let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            // SAFETY: `sockaddr` is a valid sockaddr_in of `len` bytes that
            // outlives the call.
            unsafe { libc::connect(fd.as_raw_fd(), (&raw const sockaddr).cast(), len) }
        }
        SocketAddr::V6(v6) => {
            let sockaddr = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: v6.ip().octets() },
                sin6_scope_id: v6.scope_id(),
            };
            let len = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
            // SAFETY: `sockaddr` is a valid sockaddr_in6 of `len` bytes that
            // outlives the call.
            unsafe { libc::connect(fd.as_raw_fd(), (&raw const sockaddr).cast(), len) }
        }
    };
    if ret == -1 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(err);
        }
    }
    Ok(TcpStream::from(fd))
}
