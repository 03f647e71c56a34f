//! Experiment 1: a client that sends without ever reading makes the stage-7
//! server block in send(), and nobody else is served until it goes away.

use shared::build::workspace_binary;
use shared::client::Client;
use shared::server::Server;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const STAGE: &str = env!("CARGO_BIN_EXE_stage07");

/// Bounds of every flood: it must stall long before either is reached.
const FLOOD_MAX_BYTES: usize = 256 << 20;
const FLOOD_MAX_TIME: Duration = Duration::from_secs(20);

/// Starts stage 7 and a client that floods it until its sends have made no
/// progress for a second: the server is now blocked in send().
fn stalled_server() -> (Server, Client) {
    let server = Server::start(Path::new(STAGE), 1);
    let mut flooder = Client::connect(server.ports[0]);
    let stalled =
        flooder.flood_until_stalled(Duration::from_secs(1), FLOOD_MAX_BYTES, FLOOD_MAX_TIME);
    assert!(stalled.is_some(), "the server never stopped reading:\n{}", server.stdout());
    (server, flooder)
}

#[test]
fn stall_blocks_everyone_until_the_flooder_leaves() {
    let (mut server, flooder) = stalled_server();
    let port = server.ports[0];
    assert_eq!(server.count("new connection"), 1);

    // The kernel completes the handshake (the listen backlog), but the
    // server is stuck in send() and never accepts or answers.
    let mut waiting = Client::connect(port);
    waiting.send(b"ping\n");
    assert!(waiting.receives_nothing_for(Duration::from_secs(2)), "got a reply during the stall");
    assert_eq!(
        server.count("new connection"),
        1,
        "accepted during the stall:\n{}",
        server.stdout()
    );

    // The flooder leaves: its send() fails, the server destroys it and
    // gets to the waiting client at once.
    drop(flooder);
    assert_eq!(waiting.recv_exact(5, Duration::from_secs(2)), b"gnip\n");
    assert!(
        server.wait_for_count("new connection", 2, Duration::from_secs(2)),
        "{}",
        server.stdout()
    );
    Client::connect(port).expect_reversed(b"still serving\n");
    assert!(server.is_running());
}

#[test]
fn sigint_while_stalled_exits_0_within_a_second() {
    let (server, _flooder) = stalled_server();
    assert!(
        server.wait_for_count("send() is blocked", 1, Duration::from_secs(5)),
        "{}",
        server.stdout()
    );
    let exited = server.stop(libc::SIGINT, Duration::from_secs(1));
    assert_eq!(exited.status.code(), Some(0), "{}", exited.stdout);
    assert!(exited.elapsed < Duration::from_secs(1), "took {:?}", exited.elapsed);
    assert_eq!(exited.count("destroyed connection"), 1, "{}", exited.stdout);
    assert_eq!(exited.count("destroyed core"), 1, "{}", exited.stdout);
}

#[test]
fn the_real_sender_reports_the_stall() {
    let server = Server::start(Path::new(STAGE), 1);
    let port = server.ports[0].to_string();
    let mut sender = Command::new(workspace_binary("tools", "sender"))
        .args(["--port", &port])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sender");
    // Stand-in for `< huge_file.dat`: feed at most FLOOD_MAX_BYTES. The
    // feeder blocks once sender stalls, and ends when sender is killed.
    let mut stdin = sender.stdin.take().expect("sender stdin");
    std::thread::spawn(move || {
        let chunk = vec![b'z'; 1 << 20];
        for _ in 0..FLOOD_MAX_BYTES >> 20 {
            if stdin.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let mut stderr = sender.stderr.take().expect("sender stderr");
    let reader = std::thread::spawn(move || {
        let mut seen = String::new();
        let mut buf = [0; 4096];
        let deadline = Instant::now() + FLOOD_MAX_TIME;
        while Instant::now() < deadline && !seen.contains("stalled for 2 s") {
            match stderr.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        seen
    });
    let seen = reader.join().expect("reader thread");
    let _ = sender.kill();
    let _ = sender.wait();
    assert!(seen.contains("stalled for 2 s: the server is not reading"), "sender said:\n{seen}");
    assert!(server.wait_for_count("send() is blocked", 1, Duration::from_secs(1)));
    // With the sender gone, the server serves again.
    Client::connect(server.ports[0]).expect_reversed(b"back\n");
}
