//! What epoll reports for a TCP socket when its peer closes, resets or
//! hangs up: the table in the stage-8 chapter (`loop-and-connection.md`),
//! checked against the kernel this runs on. The loops of stages 8 to 10
//! read before they close because of the second and third rows.

use shared::client::reset_stream;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Two connected sockets on 127.0.0.1: (ours, the peer's).
fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let ours = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (theirs, _) = listener.accept().expect("accept");
    (ours, theirs)
}

/// The events epoll reports for `socket` now, watched for reading and
/// writing, level-triggered (0 if none within a second).
fn reported(socket: &TcpStream) -> u32 {
    // SAFETY: epoll_create1() takes no pointers; the result is checked.
    let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(raw >= 0, "epoll_create1: {}", io::Error::last_os_error());
    // SAFETY: `raw` is a new fd that nothing else owns.
    let epoll = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut watch = libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLOUT) as u32, u64: 0 };
    // SAFETY: `watch` is a valid epoll_event that outlives the call.
    let added = unsafe {
        libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, socket.as_raw_fd(), &mut watch)
    };
    assert_eq!(added, 0, "epoll_ctl: {}", io::Error::last_os_error());
    let mut ready = [libc::epoll_event { events: 0, u64: 0 }];
    // SAFETY: room for one event, which outlives the call.
    let n = unsafe { libc::epoll_wait(epoll.as_raw_fd(), ready.as_mut_ptr(), 1, 1000) };
    if n == 1 { ready[0].events } else { 0 }
}

/// Waits until `socket` reports `wanted` (the peer's FIN or RST may take a
/// moment to be processed), and returns all it reports then.
fn reported_once(socket: &TcpStream, wanted: u32) -> u32 {
    for _ in 0..100 {
        let events = reported(socket);
        if events & wanted == wanted {
            return events;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    reported(socket)
}

const IN: u32 = libc::EPOLLIN as u32;
const ERR: u32 = libc::EPOLLERR as u32;
const HUP: u32 = libc::EPOLLHUP as u32;

/// Everything `socket` can read now, and how the read after it ended.
fn read_to_end(socket: &mut TcpStream) -> (Vec<u8>, io::Result<()>) {
    socket.set_nonblocking(true).expect("non-blocking");
    let (mut bytes, mut buffer) = (Vec::new(), [0; 64]);
    loop {
        match socket.read(&mut buffer) {
            Ok(0) => return (bytes, Ok(())),
            Ok(n) => bytes.extend_from_slice(&buffer[..n]),
            Err(err) => return (bytes, Err(err)),
        }
    }
}

#[test]
fn a_peer_that_closes_is_readable_and_not_a_hang_up() {
    let (mut ours, mut theirs) = pair();
    theirs.write_all(b"bye").expect("write");
    drop(theirs);
    let events = reported_once(&ours, IN);
    assert_eq!(events & (ERR | HUP), 0, "events {events:#x}");
    let (bytes, end) = read_to_end(&mut ours);
    assert_eq!(bytes, b"bye");
    assert!(end.is_ok(), "recv() after a FIN returns 0: {end:?}");
}

#[test]
fn a_reset_is_an_error_and_a_hang_up_and_readable_with_the_bytes_before_it() {
    let (mut ours, mut theirs) = pair();
    theirs.write_all(b"last words").expect("write");
    reset_stream(theirs);
    let events = reported_once(&ours, ERR | HUP);
    assert_eq!(events & (IN | ERR | HUP), IN | ERR | HUP, "events {events:#x}");
    let (bytes, end) = read_to_end(&mut ours);
    assert_eq!(bytes, b"last words", "the kernel kept what came before the RST");
    assert_eq!(end.map_err(|err| err.kind()), Err(io::ErrorKind::ConnectionReset));
}

#[test]
fn a_hang_up_needs_our_own_shutdown_too() {
    let (mut ours, mut theirs) = pair();
    ours.shutdown(Shutdown::Write).expect("shutdown");
    theirs.write_all(b"tail").expect("write");
    drop(theirs);
    let events = reported_once(&ours, IN | HUP);
    assert_eq!(events & (IN | ERR | HUP), IN | HUP, "events {events:#x}");
    let (bytes, end) = read_to_end(&mut ours);
    assert_eq!(bytes, b"tail");
    assert!(end.is_ok(), "{end:?}");
}
