//! Stage 9's own tests, rerun on stage 10's binary and turned to
//! write-back, plus what the pipes change at the edges of a connection.
//! (The memory bound itself, the digest round trip and the idle CPU are in
//! `memory.rs`.)
//!
//! * Edge triggering still holds: no write events while idle, a burst of
//!   clients accepted in full, a message in small pieces and one far larger
//!   than the buffer come back whole, a client that streams and reads does
//!   not starve a bystander.
//! * Write-back: every byte value comes back as it was sent.
//! * A client that half-closes gets everything back before the server
//!   closes (beyond the course, which drops what the pipe still holds).
//! * Resets with bytes in the pipe, and Ctrl+C while a client's pipe is
//!   full, cost nothing.
//!
//! `XPS_BIN=path cargo test -p stage10 --test milestone` runs them against
//! another binary.

use shared::checks::shutdown::SHUTDOWN_LIMIT;
use shared::client::{Client, IO_TIMEOUT, ReplyEnd};
use shared::harness::{binary_under_test, start_quiet_on};
use shared::load::Load;
use shared::procfs;
use shared::serial::{alone, side_by_side};
use shared::server::{Launch, Server};
use shared::wait::wait_until;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

// The tests that time replies or a shutdown run alone, so that the
// others' bursts and floods do not slow them past their limits; the rest
// run side by side (each has its own server).
// (`alone` and `side_by_side` are in `shared::serial`.)

/// The server under test on `n_ports` free ports, without DEBUG lines and
/// without keeping its `client: ...` lines.
fn quiet_server(n_ports: usize) -> Server {
    let (binary, _own) = binary_under_test(env!("CARGO_BIN_EXE_stage10"));
    start_quiet_on(&binary, n_ports)
}

/// Sends `message` and asserts that exactly it comes back within `wait`,
/// and nothing more.
fn written_back(client: &mut Client, message: &[u8], wait: Duration) {
    client.send(message);
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

/// Floods from `client` without reading: true if the server stopped
/// reading (no progress for 300 ms) within 10 s, as the pipe's bound says
/// it must.
fn stalls(client: &mut Client) -> bool {
    let stall = Duration::from_millis(300);
    client.flood_until_stalled(stall, 1 << 30, Duration::from_secs(10)).is_some()
}

/// What the server sends back is what it got: every byte value, a
/// newline in the middle and none at the end included.
#[test]
fn every_byte_comes_back_as_it_was_sent() {
    let server = quiet_server(1);
    let mut client = Client::connect(server.ports[0]);
    let all_bytes: Vec<u8> = (0..=255).collect();
    written_back(&mut client, &all_bytes, IO_TIMEOUT);
    written_back(&mut client, b"hello\nworld", IO_TIMEOUT);
}

/// As in stage 9, seen in the log with `XPS_DEBUG=1`: a write event when
/// the client connects and one with each message, then none while it sits
/// idle, and no more waits either.
#[test]
fn an_idle_client_gets_no_write_events() {
    let (binary, _own) = binary_under_test(env!("CARGO_BIN_EXE_stage10"));
    let server = Server::start(&binary, 1);
    let mut client = Client::connect(server.ports[0]);
    assert_eq!(client.round_trip(b"hello\n"), b"hello\n");
    // The reply can leave before the log line of its last wait: wait for
    // the log to settle, then watch it stay still.
    let settled = wait_until(IO_TIMEOUT, || {
        let before = server.stdout().len();
        std::thread::sleep(Duration::from_millis(100));
        server.stdout().len() == before
    });
    assert!(settled, "the log never stopped growing:\n{}", server.stdout());
    let (writes, waits) = (server.count("EVENT / write on fd"), server.count("epoll wait"));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.count("EVENT / write on fd"), writes, "write events while idle");
    assert_eq!(server.count("epoll wait"), waits, "the loop woke while idle");
    assert!(writes <= 3, "{writes} write events for one client and one message");
    let exited = server.stop(libc::SIGINT, SHUTDOWN_LIMIT * 4);
    assert_eq!(exited.status.code(), Some(0), "{exited:?}");
    assert_eq!(exited.count("xps_pipe_destroy() : destroyed pipe"), 1, "{}", exited.stdout);
}

/// 200 clients connect at once (all connected before any sends), then
/// each sends a line: every one is answered. Accepting one client per
/// edge of the listener would leave most of them waiting for good.
#[test]
fn a_burst_of_clients_is_accepted_in_full() {
    const CLIENTS: usize = 200;
    let _shared = side_by_side();
    let server = quiet_server(1);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, server.ports[0]));
    let mut streams: Vec<TcpStream> = std::thread::scope(|scope| {
        let connects: Vec<_> = (0..CLIENTS)
            .map(|_| scope.spawn(move || TcpStream::connect_timeout(&addr, IO_TIMEOUT)))
            .collect();
        connects.into_iter().map(|c| c.join().unwrap().unwrap()).collect()
    });
    for (i, stream) in streams.iter_mut().enumerate() {
        stream.write_all(format!("burst {i}\n").as_bytes()).unwrap();
    }
    // One deadline for all the replies: the server has had every message
    // by now, and answers within milliseconds whatever their number.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut unanswered = Vec::new();
    for (i, stream) in streams.into_iter().enumerate() {
        let expected = format!("burst {i}\n");
        let mut reply = vec![0; expected.len()];
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        stream.set_read_timeout(Some(left)).unwrap();
        match (&stream).read_exact(&mut reply) {
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
    let server = quiet_server(1);
    let mut client = Client::connect(server.ports[0]);
    let message: Vec<u8> = (0..2000 * 7).map(|i| b'a' + (i % 26) as u8).collect();
    for piece in message.chunks(7) {
        client.send(piece);
    }
    let reply = client.read_reply(message.len(), IO_TIMEOUT);
    assert_eq!(reply.end, ReplyEnd::Complete, "got {} bytes", reply.bytes.len());
    assert!(reply.bytes == message, "the reply differs from the message");
}

/// 1 MiB in one write, ten times the server's 100 KB buffer and more than
/// the pipe holds: the source reads until the pipe is full, the sink
/// empties it, the source reads on. All of it comes back, in order.
#[test]
fn a_message_larger_than_the_buffer_and_the_pipe_comes_back_whole() {
    let _shared = side_by_side();
    let server = quiet_server(1);
    let mut client = Client::connect(server.ports[0]);
    let message: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    written_back(&mut client, &message, Duration::from_secs(10));
}

/// Fairness: one client streams without pause (and reads what comes
/// back), so its pipe always has work; a bystander on the same port gets
/// each of 20 round trips within 100 ms.
#[test]
fn a_streaming_client_does_not_starve_a_bystander() {
    const LIMIT: Duration = Duration::from_millis(100);
    let _alone = alone();
    let server = quiet_server(1);
    let port = server.ports[0];
    let streamer = Load::streaming(port, 1);
    assert!(
        wait_until(IO_TIMEOUT, || streamer.received() >= 4 << 20),
        "the streaming client got only {} bytes back",
        streamer.received()
    );
    let mut bystander = Client::connect(port);
    let received_before = streamer.received();
    let mut times = Vec::new();
    for i in 0..20 {
        let message = format!("ping {i}\n");
        let started = Instant::now();
        let reply = bystander.round_trip(message.as_bytes());
        times.push(started.elapsed());
        assert_eq!(reply, message.as_bytes(), "reply {i}");
    }
    let streamed = streamer.received() - received_before;
    let worst = times.iter().max().copied().unwrap_or_default();
    eprintln!(
        "bystander: worst round trip {worst:?} of 20; the streamer got {streamed} B meanwhile"
    );
    assert!(worst <= LIMIT, "round trips took {times:?}");
    // The 20 round trips can take a few milliseconds in all, less than
    // the streaming thread may wait for a core on a busy machine: what
    // matters is that its bytes keep coming, not when its thread runs.
    assert!(
        wait_until(IO_TIMEOUT, || streamer.received() > received_before),
        "the streaming client was starved instead"
    );
}

/// A client that sends, then closes its sending side (`nc -N`, `shutdown`)
/// still gets every byte back, and then the server closes the connection
/// and logs that the peer closed it. (Whether the bytes still in the pipe
/// at the end of input survive depends on timing here; the unit test
/// `end_of_input_lets_the_sink_drain_the_pipe_first` pins it down.)
#[test]
fn a_client_that_half_closes_gets_everything_back() {
    let _shared = side_by_side();
    let server = quiet_server(1);
    let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, server.ports[0])).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let message: Vec<u8> = (0..3_000_000).map(|i: u32| (i % 253) as u8).collect();
    let reply = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut reply = Vec::new();
            (&stream).read_to_end(&mut reply).map(|_| reply)
        });
        (&stream).write_all(&message).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        reader.join().unwrap()
    });
    let reply = reply.expect("the server closed without a clean end (reset?)");
    assert_eq!(reply.len(), message.len(), "bytes lost or added");
    assert!(reply == message, "the reply differs from the message");
    assert!(server.wait_for_count("peer closed connection", 1, IO_TIMEOUT), "{}", server.stdout());
}

/// Clients that reset while their pipe holds bytes: one whose pipe is
/// full (it never read), and one per port that resets right after a
/// large send. The server logs it and serves on.
#[test]
fn clients_that_reset_with_bytes_in_their_pipe() {
    let _shared = side_by_side();
    let mut server = quiet_server(4);
    let mut flooder = Client::connect(server.ports[0]);
    assert!(stalls(&mut flooder), "the server never stopped reading the flooder");
    flooder.reset();
    for &port in &server.ports {
        let mut client = Client::connect(port);
        client.send(&vec![b'z'; 200_000]);
        client.reset();
    }
    for &port in &server.ports {
        assert_eq!(Client::connect(port).round_trip(b"still here\n"), b"still here\n");
    }
    assert!(server.process.is_running(), "{}", server.stdout());
}

/// Ctrl+C while a client's pipe is full: the core destroys the connection
/// and its pipe and exits 0 at once.
#[test]
fn sigint_with_a_full_pipe_exits_0_at_once() {
    let _alone = alone();
    let (binary, _own) = binary_under_test(env!("CARGO_BIN_EXE_stage10"));
    let launch = Launch { skip_messages: true, ..Launch::default() };
    let mut server = Server::spawn_with(&binary, &["--ports", "0"], &launch);
    server.wait_for_ports(1);
    let mut flooder = Client::connect(server.ports[0]);
    assert!(stalls(&mut flooder), "the server never stopped reading the flooder");
    let exited = server.stop(libc::SIGINT, SHUTDOWN_LIMIT * 4);
    drop(flooder);
    assert_eq!(exited.status.code(), Some(0), "{}", exited.stderr);
    assert!(exited.elapsed < SHUTDOWN_LIMIT, "took {:?}", exited.elapsed);
    assert_eq!(exited.count("[WARNING] sigint_handler() : SIGINT received"), 1);
    assert_eq!(exited.count("destroyed connection"), 1);
    assert_eq!(exited.count("xps_pipe_destroy() : destroyed pipe"), 1);
    assert_eq!(exited.count("destroyed listener"), 1);
    assert_eq!(exited.count("destroyed core"), 1);
}

/// Ctrl+C while the loop sleeps in `epoll_wait()` is one wait in the log,
/// as in stage 9: the interrupted call is retried, not logged again.
#[test]
fn a_wait_that_ctrl_c_interrupts_is_logged_once() {
    let _shared = side_by_side();
    let (binary, _own) = binary_under_test(env!("CARGO_BIN_EXE_stage10"));
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
