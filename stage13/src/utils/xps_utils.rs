//! Small helpers used across the server: `xps_utils.c` in the course, plus
//! the byte-level helper the connection needs (escape).

use crate::logger;
use crate::utils::xps_logger::LogLevel;
use std::fmt::Write as _;
use std::io;
use std::net::{SocketAddr, SocketAddrV4, TcpStream, ToSocketAddrs};
use std::os::fd::RawFd;

/// Turns the C convention "returns -1 and sets `errno`" into an
/// `io::Result`, so that every `libc` call is checked the same way.
pub fn check_os(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

/// True when `port` fits in the 16 bits TCP has for it (0 to 65535).
///
/// Port 0 is valid here: it asks the OS to pick a free port.
pub fn is_valid_port(port: u32) -> bool {
    port <= u32::from(u16::MAX)
}

// ANCHOR: getaddrinfo
/// Resolves `host` to the first IPv4 address it has, as `xps_getaddrinfo()`
/// does with `getaddrinfo(AF_INET, SOCK_STREAM)`.
///
/// `ToSocketAddrs` calls the system's `getaddrinfo()` for us and frees its
/// result, so the C caller's duty to free it disappears.
pub fn xps_getaddrinfo(host: &str, port: u16) -> io::Result<SocketAddrV4> {
    let found = (host, port).to_socket_addrs()?.find_map(|addr| match addr {
        SocketAddr::V4(v4) => Some(v4),
        SocketAddr::V6(_) => None,
    });
    let addr = found.ok_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, format!("no IPv4 address for host '{host}'"))
    })?;
    logger!(LogLevel::Debug, "xps_getaddrinfo()", "resolved {host} to {}", addr.ip());
    Ok(addr)
}
// ANCHOR_END: getaddrinfo

// ANCHOR: sockaddr_in
/// `addr` as the C structure `bind()` and `connect()` take. (New in stage
/// 11, when a second call needs it: the listener built it in place.)
pub fn to_sockaddr_in(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*addr.ip()).to_be() },
        sin_zero: [0; 8],
    }
}
// ANCHOR_END: sockaddr_in

/// The peer's IPv4 address as text, or `None` if the socket has no peer
/// any more (`getpeername()` + `inet_ntop()` in C).
pub fn get_remote_ip(socket: &TcpStream) -> Option<String> {
    socket.peer_addr().ok().map(|addr| addr.ip().to_string())
}

// ANCHOR: make_socket_non_blocking
/// `make_socket_non_blocking()`: adds `O_NONBLOCK` to the flags of `fd`, so
/// that `recv()` and `send()` on it return `EAGAIN` instead of waiting.
///
/// The flags are read first and written back with one more bit: setting
/// `O_NONBLOCK` alone would clear any other flag the fd has. (std's
/// `TcpStream::set_nonblocking()` does the same with one `ioctl(FIONBIO)`;
/// the two `fcntl()` calls are the course's way.)
pub fn make_socket_non_blocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl(F_GETFL) takes no pointers; the result is checked.
    let flags = check_os(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    // SAFETY: F_SETFL takes an int, no pointers; the result is checked.
    check_os(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    Ok(())
}
// ANCHOR_END: make_socket_non_blocking

// The course adds `vec_filter_null()` here too, to compact a list by
// dropping its NULL entries; stage 10's `filter_nulls()` calls it for every
// list of the core. The Rust core reuses empty slots instead of
// compacting (see `Slots` in xps_slots.rs), so it has no use.

// Stages 6 to 9 reversed each message here (`reverse_in_place`). From
// stage 10 the server writes back what it receives, unchanged, as the
// course does: nothing is left to reverse.

// ANCHOR: escape
/// Makes client bytes safe to print on the operator's terminal.
///
/// Printable text is kept as it is; control characters (escape sequences,
/// bell, backspace, newlines inside the message...) and bytes that are not
/// UTF-8 are written as `\n`, `\x1b`, `\u{9b}` and so on, and a backslash
/// as `\\`, so the printed line is unambiguous and cannot drive the terminal.
pub fn escape_for_terminal(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() && c.is_ascii() => {
                    let _ = write!(out, "\\x{:02x}", u32::from(c));
                }
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out
}
// ANCHOR_END: escape

// ANCHOR: get_file_ext
/// `get_file_ext()`: the extension of `file_path`, dot included (`".txt"`),
/// if its last `.` comes after its last `/`: a dot in a folder's name is
/// not an extension. New in stage 12, for the MIME table.
pub fn get_file_ext(file_path: &str) -> Option<&str> {
    let dot = file_path.rfind('.')?;
    match file_path.rfind('/') {
        Some(slash) if slash > dot => None,
        _ => Some(&file_path[dot..]),
    }
}
// ANCHOR_END: get_file_ext

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extension_is_after_the_last_dot_of_the_last_name() {
        assert_eq!(get_file_ext("public/sample.txt"), Some(".txt"));
        assert_eq!(get_file_ext("archive.tar.gz"), Some(".gz"));
        assert_eq!(get_file_ext(".hidden"), Some(".hidden"));
        assert_eq!(get_file_ext("v1.2/README"), None);
        assert_eq!(get_file_ext("README"), None);
        assert_eq!(get_file_ext("a/b."), Some("."));
    }

    #[test]
    fn escape_keeps_text_and_escapes_control_bytes() {
        assert_eq!(escape_for_terminal(b"hello world"), "hello world");
        assert_eq!(escape_for_terminal("añb".as_bytes()), "añb");
        assert_eq!(escape_for_terminal(b"a\nb\tc\\"), "a\\nb\\tc\\\\");
        assert_eq!(escape_for_terminal(b"\x1b[31mRED\x07\x08\0"), "\\x1b[31mRED\\x07\\x08\\x00");
        assert_eq!(escape_for_terminal("\u{9b}2J".as_bytes()), "\\u{9b}2J");
        assert_eq!(escape_for_terminal(b"\xff\xfe"), "\\xff\\xfe");
    }

    #[test]
    fn escaped_text_has_no_control_characters() {
        let all_bytes: Vec<u8> = (0..=255).collect();
        let escaped = escape_for_terminal(&all_bytes);
        assert!(!escaped.chars().any(char::is_control), "{escaped:?}");
    }

    #[test]
    fn the_remote_ip_is_the_clients_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (socket, _peer) = listener.accept().unwrap();
        assert_eq!(get_remote_ip(&socket).as_deref(), Some("127.0.0.1"));
    }

    #[test]
    fn make_socket_non_blocking_adds_o_nonblock_and_keeps_other_flags() {
        use std::os::fd::AsRawFd;
        let (ours, _theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let fd = ours.as_raw_fd();
        // SAFETY: fcntl(F_GETFL) takes no pointers.
        let before = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        assert_eq!(before & libc::O_NONBLOCK, 0);
        make_socket_non_blocking(fd).unwrap();
        // SAFETY: as above.
        let after = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        assert_eq!(after, before | libc::O_NONBLOCK);
        // Twice is the same as once: the flag is added, never toggled.
        make_socket_non_blocking(fd).unwrap();
        // SAFETY: as above.
        assert_eq!(unsafe { libc::fcntl(fd, libc::F_GETFL) }, after);
        // A read with nothing to read now says so instead of waiting.
        let err = io::Read::read(&mut &ours, &mut [0; 1]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(make_socket_non_blocking(-1).is_err());
    }

    #[test]
    fn ports_fit_in_sixteen_bits() {
        assert!(is_valid_port(0));
        assert!(is_valid_port(8001));
        assert!(is_valid_port(65535));
        assert!(!is_valid_port(65536));
    }
}
