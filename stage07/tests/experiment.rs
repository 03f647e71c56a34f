//! Experiment 1: a client that sends without ever reading makes the stage-7
//! server block in send(), and nobody else is served until it goes away.

use shared::build::workspace_binary;
use shared::checks::shutdown::SHUTDOWN_LIMIT;
use shared::client::Client;
use shared::harness::binary_under_test;
use shared::sender::{Flood, longest_stall};
use shared::server::Server;
use std::path::PathBuf;
use std::time::Duration;

/// The binary under test: this stage's, or the one `XPS_BIN` names (a
/// learner's exercise, say).
fn stage_binary() -> PathBuf {
    binary_under_test(env!("CARGO_BIN_EXE_stage07")).0
}

/// Bounds of every flood: it must stall long before either is reached.
const FLOOD_MAX_BYTES: usize = 256 << 20;
const FLOOD_MAX_TIME: Duration = Duration::from_secs(20);

/// Starts stage 7 and a client that floods it until its sends have made no
/// progress for a second: the server is now blocked in send().
fn stalled_server() -> (Server, Client) {
    let server = Server::start(&stage_binary(), 1);
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
    assert!(server.wait_for_count("new connection", 1, Duration::from_secs(2)));
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
    assert!(server.process.is_running());
}

#[test]
fn sigint_while_stalled_exits_0_at_once() {
    let (server, _flooder) = stalled_server();
    assert!(
        server.wait_for_count("send() is blocked", 1, Duration::from_secs(5)),
        "{}",
        server.stdout()
    );
    let exited = server.stop(libc::SIGINT, SHUTDOWN_LIMIT * 4);
    assert_eq!(exited.status.code(), Some(0), "{}", exited.stdout);
    assert!(exited.elapsed < SHUTDOWN_LIMIT, "took {:?}", exited.elapsed);
    assert_eq!(exited.count("[WARNING] sigint_handler() : SIGINT received"), 1);
    assert_eq!(exited.count("destroyed connection"), 1, "{}", exited.stdout);
    assert_eq!(exited.count("destroyed listener"), 1, "{}", exited.stdout);
    assert_eq!(exited.count("destroyed core"), 1, "{}", exited.stdout);
}

#[test]
fn the_real_sender_reports_the_stall() {
    let server = Server::start(&stage_binary(), 1);
    let mut sender = Flood::start(&workspace_binary("tools", "sender"), server.ports[0]);
    let seen = sender.read_until_stalled_for(2, FLOOD_MAX_TIME);
    drop(sender);
    assert!(longest_stall(&seen) >= Some(2), "sender said:\n{seen}");
    assert!(seen.contains(" s: the server is not reading\n"), "sender said:\n{seen}");
    assert!(server.wait_for_count("send() is blocked", 1, Duration::from_secs(1)));
    // With the sender gone, the server serves again.
    Client::connect(server.ports[0]).expect_reversed(b"back\n");
}
