//! The machine's listening TCP sockets, asked of the kernel over netlink
//! (`NETLINK_SOCK_DIAG`, the interface `ss` uses) instead of read from
//! `/proc/net/tcp`.
//!
//! Why: `/proc/net/tcp` lists every TCP socket, and after the tests' floods
//! a machine holds tens of thousands in TIME_WAIT; the kernel formats each
//! one as a line of text on every read (50 ms of CPU for 17,000 sockets).
//! The netlink request names the one state wanted (LISTEN), so the kernel
//! skips the rest and answers with a few dozen fixed-size records.
//!
//! Layouts are from `linux/netlink.h`, `linux/sock_diag.h` and
//! `linux/inet_diag.h`; only the fields read here are named.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};

/// `SOCK_DIAG_BY_FAMILY`: the request, and the type of each answer record.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `NLM_F_REQUEST | NLM_F_DUMP`: "list every socket that matches".
const DUMP_REQUEST: u16 = 0x01 | 0x300;
/// `NLMSG_ERROR` and `NLMSG_DONE`, the two records that end a dump.
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// `TCP_LISTEN` in the kernel's TCP state numbering.
const TCP_LISTEN: u32 = 10;

/// `struct nlmsghdr`: length, type, flags, sequence number, port id.
const HEADER_LEN: usize = 16;
/// `struct inet_diag_req_v2`: family, protocol, extensions, padding, the
/// state bit mask, then a 48-byte `inet_diag_sockid` left zero (any socket).
const REQUEST_LEN: usize = 4 + 4 + 48;
/// In `struct inet_diag_msg`: the local port (big-endian) follows four
/// one-byte fields; the inode follows the 48-byte socket id and four more
/// `u32` fields (expires, rqueue, wqueue, uid).
const PORT_AT: usize = 4;
const INODE_AT: usize = 4 + 48 + 16;

/// Every listening TCP socket of this network namespace, IPv4 and IPv6:
/// its local port and its inode.
pub fn listening_sockets() -> io::Result<Vec<(u16, u64)>> {
    let mut netlink = open()?;
    let mut sockets = Vec::new();
    for family in [libc::AF_INET, libc::AF_INET6] {
        netlink.write_all(&request(family as u8))?;
        read_dump(&mut netlink, &mut sockets)?;
    }
    Ok(sockets)
}

/// A netlink socket to the kernel's socket-diagnostics service. Writes
/// with no address go to the kernel (port id 0), so a plain `File` will do.
fn open() -> io::Result<File> {
    // SAFETY: socket() takes no pointers; the result is checked below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket() and nothing else owns it.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// One dump request: TCP sockets of `family` in state LISTEN.
fn request(family: u8) -> Vec<u8> {
    let len = (HEADER_LEN + REQUEST_LEN) as u32;
    let mut message = Vec::with_capacity(len as usize);
    message.extend_from_slice(&len.to_ne_bytes());
    message.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    message.extend_from_slice(&DUMP_REQUEST.to_ne_bytes());
    message.extend_from_slice(&[0; 8]); // sequence number, port id
    message.extend_from_slice(&[family, libc::IPPROTO_TCP as u8, 0, 0]);
    message.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    message.extend_from_slice(&[0; 48]);
    message
}

/// Reads answer datagrams until the kernel says the dump is done, adding
/// each socket's port and inode to `sockets`.
fn read_dump(netlink: &mut File, sockets: &mut Vec<(u16, u64)>) -> io::Result<()> {
    // The kernel sizes each datagram to fit a page or so; 64 KiB is ample.
    let mut datagram = vec![0u8; 64 * 1024];
    loop {
        let n = netlink.read(&mut datagram)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "netlink closed mid-dump"));
        }
        let mut rest = &datagram[..n];
        while rest.len() >= HEADER_LEN {
            let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
            let kind = u16::from_ne_bytes(rest[4..6].try_into().unwrap());
            if len < HEADER_LEN || len > rest.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "bad netlink record length",
                ));
            }
            let body = &rest[HEADER_LEN..len];
            match kind {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    // The body starts with a negative errno (0 is an ack).
                    let errno =
                        body.get(0..4).map_or(0, |b| i32::from_ne_bytes(b.try_into().unwrap()));
                    return Err(io::Error::from_raw_os_error(-errno));
                }
                SOCK_DIAG_BY_FAMILY if body.len() >= INODE_AT + 4 => {
                    let port = u16::from_be_bytes(body[PORT_AT..PORT_AT + 2].try_into().unwrap());
                    let inode =
                        u32::from_ne_bytes(body[INODE_AT..INODE_AT + 4].try_into().unwrap());
                    sockets.push((port, u64::from(inode)));
                }
                _ => {}
            }
            // Records are padded to a multiple of 4 bytes.
            let padded = (len + 3) & !3;
            rest = &rest[padded.min(rest.len())..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, TcpListener, TcpStream};

    /// The inode `/proc/self/fd/N` names for one of our sockets.
    fn inode_of(fd: &impl std::os::fd::AsRawFd) -> u64 {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        let link = link.to_str().unwrap();
        link.strip_prefix("socket:[").unwrap().strip_suffix(']').unwrap().parse().unwrap()
    }

    #[test]
    fn lists_a_listener_with_its_inode_and_not_a_connection() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        let sockets = listening_sockets().unwrap();
        assert!(sockets.contains(&(port, inode_of(&listener))), "{sockets:?}");
        let client_port = client.local_addr().unwrap().port();
        assert!(sockets.iter().all(|&(p, _)| p != client_port), "{sockets:?}");
        let inode = inode_of(&listener);
        drop(listener);
        // Another test of this binary may be spawning a process: between
        // its fork and its exec the child holds a copy of every fd, ours
        // too, and the socket lives until that copy is closed.
        let gone = crate::wait::wait_until(std::time::Duration::from_secs(2), || {
            !listening_sockets().unwrap().contains(&(port, inode))
        });
        assert!(gone, "the listener is still listed after it was closed");
    }

    #[test]
    fn lists_ipv6_listeners_too() {
        // A machine with IPv6 turned off cannot bind [::1]; nothing to test.
        let Ok(listener) = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)) else { return };
        let port = listener.local_addr().unwrap().port();
        assert!(listening_sockets().unwrap().contains(&(port, inode_of(&listener))));
    }
}
