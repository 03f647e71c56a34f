//! How the stage-8 server ends a connection, as its log shows it.

use shared::client::Client;
use shared::harness::binary_under_test;
use shared::procfs;
use shared::server::{Launch, Server};
use shared::wait::wait_until;
use std::path::PathBuf;
use std::time::Duration;

/// The binary under test: this stage's, or the one `XPS_BIN` names (a
/// learner's exercise, say).
fn stage_binary() -> PathBuf {
    binary_under_test(env!("CARGO_BIN_EXE_stage08")).0
}

/// A client that closes is "peer closed connection"; one that resets is
/// logged as an error with the reason (a failed `recv()`, or the loop's
/// close handler when the reset comes with nothing to read). Either way the
/// connection is destroyed at once (its fd is closed) and the server
/// serves the next client.
///
/// The server runs without DEBUG lines: stage 8 spins while a client sits
/// idle after its reply (Experiment 1), and with DEBUG on it prints lines
/// without pause until the client resets, so many on a busy machine that
/// reading the log for one line took longer than the wait. The fd count
/// says the connection was destroyed instead of a DEBUG line.
#[test]
fn a_close_and_a_reset_are_told_apart_and_both_destroyed() {
    let launch = Launch { quiet: true, ..Launch::default() };
    let mut server = Server::spawn_with(&stage_binary(), &["--ports", "0"], &launch);
    let port = server.wait_for_ports(1)[0];
    let pid = server.process.pid();
    let fds = procfs::open_fds(pid).unwrap();
    let wait = |server: &Server, what: &str, n: usize| {
        let seen = server.wait_for_count(what, n, Duration::from_secs(2));
        assert!(seen, "no {n} '{what}' line(s):\n{}", server.stdout());
    };
    let destroyed = || {
        let back =
            wait_until(Duration::from_secs(2), || procfs::open_fds(pid).is_ok_and(|n| n == fds));
        assert!(back, "the connection's fd is still open");
    };

    let mut closing = Client::connect(port);
    closing.expect_reversed(b"bye\n");
    drop(closing);
    wait(&server, "peer closed connection", 1);
    destroyed();

    let mut resetting = Client::connect(port);
    resetting.expect_reversed(b"abort\n");
    resetting.reset();
    // Seen by recv(), or, when the reset comes with nothing left to read,
    // by the loop's close handler ("connection failed"): an ERROR either way.
    wait(&server, "Connection reset by peer", 1);
    assert!(
        server.stdout().lines().any(|l| l.contains("[ERROR]") && l.contains("reset by peer")),
        "the reset is not an ERROR:\n{}",
        server.stdout()
    );
    destroyed();
    assert_eq!(server.count("peer closed connection"), 1, "{}", server.stdout());

    Client::connect(port).expect_reversed(b"next\n");
}
