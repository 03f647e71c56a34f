//! Stage 8's milestone and experiments, rerun on stage 9's binary.
//!
//! * Stage 8's milestone (stage 7's Experiment 1): a client floods the
//!   server and never reads, yet another client is served at once. Edge
//!   triggering must not lose that.
//! * Experiment 1 of stage 8, turned round: an idle client gets no write
//!   events any more (its CPU figure, with 100 idle clients, is in
//!   `edge.rs` with the rest of stage 9's own tests).
//! * Experiment 2: the server still queues every reply, so its memory
//!   grows with the flood (stage 10 fixes it); beyond the course, it comes
//!   back once the flooder leaves.
//! * What stage 7's stall tests checked, as it applies now: replies queued
//!   for a client that reads late arrive complete and in order; a client
//!   that resets with a backlog does not hurt; Ctrl+C during a flood.
//!
//! The tests that do not count DEBUG lines start the server without them,
//! and without keeping its `client: ...` lines: a flood would pile them up.

use shared::checks::shutdown::SHUTDOWN_LIMIT;
use shared::client::{Client, IO_TIMEOUT, ReplyEnd, reset_stream};
use shared::harness::{binary_under_test, start_quiet_on};
use shared::procfs;
use shared::serial::{alone, side_by_side};
use shared::server::{Launch, Server};
use shared::wait::wait_until;
use std::io::{ErrorKind, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The binary under test: this stage's, or the one `XPS_BIN` names (a
/// learner's exercise, say).
fn stage_binary() -> PathBuf {
    binary_under_test(env!("CARGO_BIN_EXE_stage09")).0
}

const MIB: usize = 1 << 20;

/// How much a flood sends at least, and how long it may take at most.
const FLOOD_BYTES: usize = 64 * MIB;
const FLOOD_MAX_TIME: Duration = Duration::from_secs(30);

/// The longest a bystander may wait for a reply during a flood.
const BYSTANDER_LIMIT: Duration = Duration::from_millis(100);

/// How far above its size before the flood the server's memory may stay
/// once the flooder has gone.
const RSS_SLACK: u64 = 4 * MIB as u64;

// The tests here flood the server or measure it. Those that measure time
// or CPU run alone, so that the others' floods do not skew them; the rest
// may run side by side (each has its own server, and memory is per process).
// (`alone` and `side_by_side` are in `shared::serial`.)

/// Stage 9 on `n_ports` free ports, without DEBUG lines and without
/// keeping the message lines.
fn quiet_server(n_ports: usize) -> Server {
    start_quiet_on(&stage_binary(), n_ports)
}

/// What a flooder sends: text with one byte in 4096 that is not UTF-8,
/// like most files. The server reverses a chunk that is not UTF-8 byte by
/// byte, which a debug build does several times faster than character by
/// character: the floods here take seconds, not tens of seconds.
fn flood_chunk() -> Vec<u8> {
    let mut chunk = vec![b'x'; 64 * 1024];
    for byte in chunk.iter_mut().step_by(4096) {
        *byte = 0xff;
    }
    chunk
}

/// A client that sends [`flood_chunk`]s without ever reading, on its own thread,
/// until it has sent `target` bytes or [`FLOOD_MAX_TIME`] has passed or a
/// send fails. The thread hands the socket back, still open, so the test
/// chooses when the flooder leaves.
struct Flooder {
    sent: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<TcpStream>>,
}

impl Flooder {
    fn start(port: u16, target: usize) -> Flooder {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        // A bounded wait per send, so that a stop request is noticed.
        stream.set_write_timeout(Some(Duration::from_millis(100))).unwrap();
        let sent = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, quit) = (Arc::clone(&sent), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let chunk = flood_chunk();
            let started = Instant::now();
            let mut writer = &stream;
            while count.load(Ordering::Relaxed) < target
                && started.elapsed() < FLOOD_MAX_TIME
                && !quit.load(Ordering::Relaxed)
            {
                match writer.write(&chunk) {
                    Ok(n) => {
                        count.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(err)
                        if matches!(
                            err.kind(),
                            ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                        ) => {}
                    Err(_) => break,
                }
            }
            stream
        });
        Flooder { sent, stop, thread: Some(thread) }
    }

    fn sent(&self) -> usize {
        self.sent.load(Ordering::Relaxed)
    }

    /// Waits for the flood to end and returns the socket, still open.
    fn finish(mut self) -> (usize, TcpStream) {
        let stream = self.thread.take().unwrap().join().unwrap();
        (self.sent(), stream)
    }
}

impl Drop for Flooder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The server's resident memory, in bytes.
fn rss(server: &Server) -> u64 {
    procfs::rss_bytes(server.process.pid()).unwrap()
}

/// The milestone: stage 7's Experiment 1 again. A client floods port A and
/// never reads; a bystander on port B gets each of 20 replies within
/// [`BYSTANDER_LIMIT`], and the flood goes on: the server keeps reading.
/// (The official tester's first check, with tighter limits.)
#[test]
fn a_flooder_does_not_stop_a_bystander() {
    let _alone = alone();
    let mut server = quiet_server(2);
    let flooder = Flooder::start(server.ports[0], FLOOD_BYTES);
    // Stage 7 stops reading after about 9 MiB: go well past that first.
    let past_stall = wait_until(FLOOD_MAX_TIME, || flooder.sent() >= 16 * MIB);
    assert!(past_stall, "the server stopped reading at {} bytes", flooder.sent());

    let mut bystander = Client::connect(server.ports[1]);
    let sent_before = flooder.sent();
    let mut times = Vec::new();
    for i in 0..20 {
        let message = format!("ping {i}\n");
        let started = Instant::now();
        bystander.send(message.as_bytes());
        let reply = bystander.read_reply(message.len(), IO_TIMEOUT);
        times.push(started.elapsed());
        assert_eq!(reply.end, ReplyEnd::Complete, "reply {i}: {reply:?}");
        let expected: String = format!("ping {i}").chars().rev().chain(['\n']).collect();
        assert_eq!(reply.bytes, expected.as_bytes());
    }
    let sent_during = flooder.sent() - sent_before;
    let worst = times.iter().max().copied().unwrap_or_default();
    eprintln!("bystander: worst reply {worst:?} of 20; the flood sent {sent_during} B meanwhile");
    assert!(worst <= BYSTANDER_LIMIT, "replies took {times:?}");

    let (sent, flooder) = flooder.finish();
    assert!(sent >= FLOOD_BYTES, "the flood stalled at {sent} bytes in {FLOOD_MAX_TIME:?}");
    drop(flooder);
    Client::connect(server.ports[0]).expect_reversed(b"next\n");
    assert!(server.process.is_running());
}

/// The same seen in the log, as the course shows it with `XPS_DEBUG=1`:
/// a write event when the client connects and one with each message
/// (epoll reports a socket's whole state with each edge), then none while
/// it sits idle, and no more waits either.
#[test]
fn an_idle_client_gets_no_write_events() {
    let _shared = side_by_side();
    let server = Server::start(&stage_binary(), 1);
    let mut client = Client::connect(server.ports[0]);
    client.expect_reversed(b"hello\n");
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
}

/// Experiment 2 of stage 8: the server reads everything and queues every
/// reply, so its memory grows with a flood that is never read. Beyond the
/// course, once the flooder leaves its memory comes back to within
/// [`RSS_SLACK`] of what it was before.
#[test]
fn memory_grows_with_the_backlog_and_comes_back() {
    let _shared = side_by_side();
    let server = quiet_server(1);
    let port = server.ports[0];
    Client::connect(port).expect_reversed(b"warm up\n");
    let before = rss(&server);

    let flood = FLOOD_BYTES / 2;
    let (sent, flooder) = Flooder::start(port, flood).finish();
    assert!(sent >= flood, "the flood stalled at {sent} bytes");
    // The last bytes may still be in the kernel's buffers: wait until the
    // server holds most of the flood as replies.
    let grown = (flood * 3 / 4) as u64;
    let mut during = 0;
    let queued = wait_until(IO_TIMEOUT, || {
        during = rss(&server);
        during >= before + grown
    });
    assert!(queued, "RSS went from {before} to only {during} B during a {sent} B flood");

    drop(flooder);
    let mut after = 0;
    let released = wait_until(IO_TIMEOUT, || {
        after = rss(&server);
        after <= before + RSS_SLACK
    });
    eprintln!(
        "RSS: {:.1} MiB before, {:.1} MiB during a {} MiB flood, {:.1} MiB after",
        before as f64 / MIB as f64,
        during as f64 / MIB as f64,
        sent / MIB,
        after as f64 / MIB as f64
    );
    assert!(released, "RSS stayed at {after} B after the flooder left (before: {before} B)");
    Client::connect(port).expect_reversed(b"after the flood\n");
}

/// Replies queued for a client that reads late all arrive, in order: the
/// client sends 8 MiB in 32 blocks of one letter each without reading,
/// waits a second, then reads. Each recv() chunk (at most 100 000 bytes)
/// is reversed on its own, so every byte comes back less than one chunk
/// away from where it was sent: that holds only if the queued buffers
/// went out in order, each once.
#[test]
fn a_backlog_is_sent_complete_and_in_order() {
    const BLOCK: usize = 256 * 1024;
    const LETTERS: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef";
    const CHUNK_MAX: usize = 100_000;
    let _shared = side_by_side();
    let server = quiet_server(1);
    let mut client = Client::connect(server.ports[0]);
    for &letter in LETTERS {
        client.send(&[letter; BLOCK]);
    }
    // A second without reading: the server's socket fills, and its next
    // sendmsg() takes only part of what it offers. A server that clears
    // what it offered instead of what was taken loses bytes here.
    std::thread::sleep(Duration::from_secs(1));
    let total = BLOCK * LETTERS.len();
    let reply = client.read_reply(total, Duration::from_secs(20));
    assert_eq!(reply.end, ReplyEnd::Complete, "got {} of {total} bytes", reply.bytes.len());
    // Which block each byte value was sent in (a debug build is slow
    // enough that a search per byte would take seconds).
    let mut block_of = [usize::MAX; 256];
    for (block, &letter) in LETTERS.iter().enumerate() {
        block_of[usize::from(letter)] = block;
    }
    let mut counts = [0; 256];
    for (i, &byte) in reply.bytes.iter().enumerate() {
        let block = block_of[usize::from(byte)];
        assert!(block < LETTERS.len(), "byte {i} is {byte:#x}, never sent");
        let (start, end) = (block * BLOCK, (block + 1) * BLOCK);
        assert!(
            i + CHUNK_MAX > start && i < end + CHUNK_MAX,
            "byte {i} is {:?}, sent at {start}..{end}",
            byte as char
        );
        counts[usize::from(byte)] += 1;
    }
    for &letter in LETTERS {
        let count = counts[usize::from(letter)];
        assert_eq!(count, BLOCK, "{:?} came back {count} times", letter as char);
    }
    assert!(client.receives_nothing_for(Duration::from_millis(200)), "more bytes than sent");
}

/// Stage 8's version of the shared `dead_peer_writes`: a client that
/// resets with a large backlog queued, and clients that reset while their
/// replies are being written. The server logs it and serves on: no
/// SIGPIPE, no stuck connection.
#[test]
fn clients_that_reset_with_replies_queued() {
    let _shared = side_by_side();
    let mut server = quiet_server(4);
    let (sent, flooder) = Flooder::start(server.ports[0], 16 * MIB).finish();
    assert!(sent >= 16 * MIB, "the flood stalled at {sent} bytes");
    reset_stream(flooder);
    assert!(
        server.wait_for_count("[ERROR]", 1, IO_TIMEOUT),
        "the reset was not logged:\n{}",
        server.stdout()
    );
    for &port in &server.ports {
        let mut client = Client::connect(port);
        client.send(&vec![b'z'; 200_000]);
        client.reset();
    }
    for &port in &server.ports {
        Client::connect(port).expect_reversed(b"still here\n");
    }
    assert!(server.process.is_running(), "{}", server.stdout());
}

/// Ctrl+C during a flood that is never read: the core destroys the
/// flooder's connection with its backlog and exits 0 at once. (Stage 7's
/// shutdown while stuck in send(), which cannot happen any more.)
#[test]
fn sigint_during_a_flood_exits_0_at_once() {
    let _alone = alone();
    let launch = Launch { skip_messages: true, ..Launch::default() };
    let mut server = Server::spawn_with(&stage_binary(), &["--ports", "0"], &launch);
    server.wait_for_ports(1);
    let flooder = Flooder::start(server.ports[0], FLOOD_BYTES);
    assert!(wait_until(FLOOD_MAX_TIME, || flooder.sent() >= 16 * MIB), "the flood stalled");
    let exited = server.stop(libc::SIGINT, SHUTDOWN_LIMIT * 4);
    drop(flooder);
    assert_eq!(exited.status.code(), Some(0), "{}", exited.stderr);
    assert!(exited.elapsed < SHUTDOWN_LIMIT, "took {:?}", exited.elapsed);
    assert_eq!(exited.count("[WARNING] sigint_handler() : SIGINT received"), 1);
    assert_eq!(exited.count("destroyed connection"), 1);
    assert_eq!(exited.count("gave free memory back"), 1);
    assert_eq!(exited.count("destroyed listener"), 1);
    assert_eq!(exited.count("destroyed core"), 1);
}
