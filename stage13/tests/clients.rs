//! How the stage-13 server ends a connection, as its log shows it.

use shared::client::Client;
use shared::harness::binary_under_test;
use shared::server::Server;
use std::path::PathBuf;
use std::time::Duration;

/// The binary under test: this stage's, or the one `XPS_BIN` names (a
/// learner's exercise, say).
fn stage_binary() -> PathBuf {
    binary_under_test(env!("CARGO_BIN_EXE_stage13")).0
}

/// A client that closes is "peer closed connection"; one that resets is
/// logged as an error with the reason (by its failed `recv()`, or by the
/// loop when the reset comes as an event). Either way the connection and
/// its session are destroyed at once and the server serves the next
/// client. (The third port has nothing behind its sessions: the client
/// is heard, and never answered.)
#[test]
fn a_close_and_a_reset_are_told_apart_and_both_destroyed() {
    // The third port: the first forwards, the second serves a file.
    let server = Server::start(&stage_binary(), 4);
    let port = server.ports[2];
    let wait = |server: &Server, what: &str, n: usize| {
        let seen = server.wait_for_count(what, n, Duration::from_secs(2));
        assert!(seen, "no {n} '{what}' line(s):\n{}", server.stdout());
    };

    let mut closing = Client::connect(port);
    closing.send(b"bye\n");
    wait(&server, "client: bye", 1);
    assert!(closing.receives_nothing_for(Duration::from_millis(100)), "an empty session answered");
    drop(closing);
    wait(&server, "peer closed connection", 1);
    wait(&server, "destroyed connection", 1);
    wait(&server, "destroyed session", 1);

    let mut resetting = Client::connect(port);
    resetting.send(b"abort\n");
    wait(&server, "client: abort", 1);
    resetting.reset();
    wait(&server, "Connection reset by peer", 1);
    wait(&server, "destroyed connection", 2);
    wait(&server, "destroyed session", 2);
    assert_eq!(server.count("peer closed connection"), 1, "{}", server.stdout());

    let mut next = Client::connect(port);
    next.send(b"next\n");
    wait(&server, "client: next", 1);
}
