//! Stage 9's own tests, on the real binary: what edge triggering must fix,
//! and what it must not break.
//!
//! * Idle clients cost nothing: 100 of them, and the server sleeps.
//! * A burst of clients is accepted in full: epoll reports the listener
//!   once for all of them, so one accept() per event would leave most of
//!   them waiting for good.
//! * A message in many small pieces, and one far larger than the server's
//!   100 KB buffer, come back whole: a ready flag cleared before `EAGAIN`
//!   would strand the rest of the bytes, since their edge is spent.
//! * Fairness: a client that floods does not starve a bystander.
//! * Ctrl+C during a wait shows as one wait in the log: the interrupted
//!   `epoll_wait()` is retried, not logged again.
//!
//! `XPS_BIN=path cargo test -p stage09 --test edge` runs them against
//! another binary (stage 8's, say, to see which of them it fails).

use shared::checks::shutdown::SHUTDOWN_LIMIT;
use shared::client::{Client, IO_TIMEOUT, ReplyEnd};
use shared::harness::{binary_under_test, start_quiet_on};
use shared::load::Load;
use shared::procfs;
use shared::serial::{alone, side_by_side};
use shared::server::Server;
use shared::wait::wait_until;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

// The tests that time replies run alone, so that the others' bursts and
// floods do not slow them past their limits; the rest run side by side
// (each has its own server).
// (`alone` and `side_by_side` are in `shared::serial`.)

/// The server under test on one free port, without DEBUG lines and
/// without keeping its `client: ...` lines.
fn quiet_server() -> Server {
    let (binary, _own) = binary_under_test(env!("CARGO_BIN_EXE_stage09"));
    start_quiet_on(&binary, 1)
}

/// `len` bytes that come back unchanged however the server's recv()
/// splits them: all `x`, and one `\n` at the very end. Each chunk is
/// reversed on its own; a run of `x` reversed is itself, and the chunk
/// with the `\n` keeps it last.
fn palindromic(len: usize) -> Vec<u8> {
    let mut bytes = vec![b'x'; len];
    if let Some(last) = bytes.last_mut() {
        *last = b'\n';
    }
    bytes
}

/// The milestone: with 100 idle clients connected (each served once, so
/// each has been accepted and has had its edges), the server uses under
/// 2% of a core over 2 s. Its own CPU time, from /proc, so a busy machine
/// does not change the figure. Stage 8 spins at 100% here.
#[test]
fn idle_clients_cost_no_cpu() {
    const CLIENTS: usize = 100;
    const WINDOW: Duration = Duration::from_secs(2);
    let server = quiet_server();
    let mut clients: Vec<Client> = (0..CLIENTS).map(|_| Client::connect(server.ports[0])).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        client.expect_reversed(format!("idle {i}\n").as_bytes());
    }
    let before = procfs::cpu_time(server.process.pid()).unwrap();
    std::thread::sleep(WINDOW);
    let used = procfs::cpu_time(server.process.pid()).unwrap().saturating_sub(before);
    let share = used.as_secs_f64() / WINDOW.as_secs_f64();
    eprintln!("{CLIENTS} idle clients: {used:?} of CPU in {WINDOW:?} ({:.2}%)", share * 100.0);
    assert!(share < 0.02, "{:.1}% of a core with {CLIENTS} idle clients", share * 100.0);
    // Still awake to a message.
    clients[CLIENTS / 2].expect_reversed(b"still there?\n");
}

/// 200 clients connect at once (all connected before any sends), then
/// each sends a line: every one is answered. The listener is reported
/// once for many clients; a server that accepts one per event leaves the
/// rest in the queue, and no new edge comes for them.
#[test]
fn a_burst_of_clients_is_accepted_in_full() {
    const CLIENTS: usize = 200;
    let _shared = side_by_side();
    let server = quiet_server();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, server.ports[0]));
    let streams: Vec<TcpStream> = std::thread::scope(|scope| {
        let connects: Vec<_> = (0..CLIENTS)
            .map(|_| scope.spawn(move || TcpStream::connect_timeout(&addr, IO_TIMEOUT)))
            .collect();
        connects.into_iter().map(|c| c.join().unwrap().unwrap()).collect()
    });
    let mut streams = streams;
    for (i, stream) in streams.iter_mut().enumerate() {
        stream.write_all(format!("burst {i}\n").as_bytes()).unwrap();
    }
    // One deadline for all the replies: the server has had every message
    // by now, and answers within milliseconds whatever their number.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut unanswered = Vec::new();
    for (i, stream) in streams.into_iter().enumerate() {
        let expected: String = format!("burst {i}").chars().rev().chain(['\n']).collect();
        let mut reply = vec![0; expected.len()];
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        stream.set_read_timeout(Some(left)).unwrap();
        match std::io::Read::read_exact(&mut &stream, &mut reply) {
            Ok(()) => assert_eq!(reply, expected.as_bytes(), "client {i}"),
            Err(_) => unanswered.push(i),
        }
    }
    assert!(
        unanswered.is_empty(),
        "{} of {CLIENTS} clients were never answered (first: {:?})",
        unanswered.len(),
        &unanswered[..unanswered.len().min(10)]
    );
}

/// A message sent in 2000 small pieces, each its own TCP segment, comes
/// back byte for byte: each piece is an edge, and none is lost between a
/// recv() and the next edge.
#[test]
fn a_message_in_many_small_pieces_comes_back_whole() {
    let _shared = side_by_side();
    let server = quiet_server();
    let mut client = Client::connect(server.ports[0]);
    let message = palindromic(2000 * 7);
    for piece in message.chunks(7) {
        client.send(piece);
    }
    comes_back_whole(&mut client, &message, IO_TIMEOUT);
}

/// 1 MiB in one write, ten times the server's 100 KB buffer: one edge, and
/// at least eleven recv()s to drain it. All of it comes back. (A server
/// that cleared `read_ready` after one recv() would answer 100 KB and then
/// wait for an edge that never comes.)
#[test]
fn a_message_larger_than_the_buffer_comes_back_whole() {
    let _shared = side_by_side();
    let server = quiet_server();
    let mut client = Client::connect(server.ports[0]);
    let message = palindromic(1 << 20);
    client.send(&message);
    comes_back_whole(&mut client, &message, Duration::from_secs(10));
}

/// Asserts that `message` (a palindrome, so its reply is itself however
/// TCP splits it) comes back complete within `wait`, and nothing more.
fn comes_back_whole(client: &mut Client, message: &[u8], wait: Duration) {
    let reply = client.read_reply(message.len(), wait);
    assert_eq!(
        reply.end,
        ReplyEnd::Complete,
        "got {} of {} bytes",
        reply.bytes.len(),
        message.len()
    );
    assert!(reply.bytes == message, "the reply differs from the message");
    assert!(client.receives_nothing_for(Duration::from_millis(100)), "more bytes than sent");
}

/// Fairness: one client streams without pause (and reads its replies), so
/// it is always ready; a bystander on the same port gets each of 20 round
/// trips within 100 ms. One recv() per connection per pass means the
/// bystander waits one turn of the flooder at most.
#[test]
fn a_flooder_does_not_starve_a_bystander() {
    const LIMIT: Duration = Duration::from_millis(100);
    let _alone = alone();
    let server = quiet_server();
    let port = server.ports[0];
    let flooder = Load::streaming(port, 1);
    assert!(
        wait_until(IO_TIMEOUT, || flooder.received() >= 4 << 20),
        "the flooder got only {} bytes back",
        flooder.received()
    );
    let mut bystander = Client::connect(port);
    let received_before = flooder.received();
    let mut times = Vec::new();
    for i in 0..20 {
        let message = format!("ping {i}\n");
        let started = Instant::now();
        bystander.send(message.as_bytes());
        let reply = bystander.read_reply(message.len(), IO_TIMEOUT);
        times.push(started.elapsed());
        let expected: String = format!("ping {i}").chars().rev().chain(['\n']).collect();
        assert_eq!(reply.bytes, expected.as_bytes(), "reply {i}: {reply:?}");
    }
    let flooded = flooder.received() - received_before;
    let worst = times.iter().max().copied().unwrap_or_default();
    eprintln!("bystander: worst round trip {worst:?} of 20; the flooder got {flooded} B meanwhile");
    assert!(worst <= LIMIT, "round trips took {times:?}");
    // The 20 round trips can take a few milliseconds in all, less than
    // the flooding thread may wait for a core on a busy machine: what
    // matters is that its bytes keep coming, not when its thread runs.
    assert!(
        wait_until(IO_TIMEOUT, || flooder.received() > received_before),
        "the flooder was starved instead"
    );
}

/// Ctrl+C while the loop sleeps in `epoll_wait()` interrupts the wait
/// (`EINTR`); the loop waits again and finds the wake-up fd readable. The
/// log shows that as one wait: each `epoll wait` line is followed by its
/// `epoll wait over`, with no second `epoll wait` for the interrupted call
/// (stage 8 logs one).
#[test]
fn a_wait_that_ctrl_c_interrupts_is_logged_once() {
    let _shared = side_by_side();
    let (binary, _own) = binary_under_test(env!("CARGO_BIN_EXE_stage09"));
    let server = Server::start(&binary, 1);
    let pid = server.process.pid();
    let asleep = wait_until(IO_TIMEOUT, || procfs::asleep_in_epoll_wait(pid).unwrap_or(false));
    assert!(asleep, "the server never slept in epoll_wait():\n{}", server.stdout());
    let exited = server.stop(libc::SIGINT, SHUTDOWN_LIMIT * 4);
    assert_eq!(exited.status.code(), Some(0), "{exited:?}");
    assert_eq!(exited.count("SIGINT received"), 1, "{}", exited.stdout);
    let waits = exited.stdout.lines().filter(|line| line.ends_with(" : epoll wait")).count();
    let overs = exited.count(" : epoll wait over");
    assert!(waits >= 1, "no `epoll wait` line:\n{}", exited.stdout);
    assert_eq!(waits, overs, "an `epoll wait` with no `epoll wait over`:\n{}", exited.stdout);
}
