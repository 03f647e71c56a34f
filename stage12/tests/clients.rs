//! How the stage-12 server ends a connection, as its log shows it.

use shared::client::Client;
use shared::harness::binary_under_test;
use shared::server::Server;
use std::path::PathBuf;
use std::time::Duration;

/// The binary under test: this stage's, or the one `XPS_BIN` names (a
/// learner's exercise, say).
fn stage_binary() -> PathBuf {
    binary_under_test(env!("CARGO_BIN_EXE_stage12")).0
}

/// A client that closes is "peer closed connection"; one that resets is a
/// failed `recv()`, logged as an error with the reason. Either way the
/// connection is destroyed at once and the server serves the next client.
/// (Stage 12 writes back on its fourth port: the bytes come back as they
/// were sent.)
#[test]
fn a_close_and_a_reset_are_told_apart_and_both_destroyed() {
    // The fourth port: the first forwards, the second and third serve files.
    let server = Server::start(&stage_binary(), 4);
    let port = server.ports[3];
    let wait = |server: &Server, what: &str, n: usize| {
        let seen = server.wait_for_count(what, n, Duration::from_secs(2));
        assert!(seen, "no {n} '{what}' line(s):\n{}", server.stdout());
    };

    let mut closing = Client::connect(port);
    assert_eq!(closing.round_trip(b"bye\n"), b"bye\n");
    drop(closing);
    wait(&server, "peer closed connection", 1);
    wait(&server, "destroyed connection", 1);

    let mut resetting = Client::connect(port);
    assert_eq!(resetting.round_trip(b"abort\n"), b"abort\n");
    resetting.reset();
    wait(&server, "recv() from client 127.0.0.1 failed: Connection reset by peer", 1);
    wait(&server, "destroyed connection", 2);
    assert_eq!(server.count("peer closed connection"), 1, "{}", server.stdout());

    assert_eq!(Client::connect(port).round_trip(b"next\n"), b"next\n");
}
