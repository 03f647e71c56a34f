//! Ctrl+C and SIGTERM, checked the same way for every stage from 7 on: the
//! server logs the signal, destroys every connection, listener and the loop
//! (each with its DEBUG line) and exits with status 0 within
//! [`SHUTDOWN_LIMIT`], whether it is idle or busy. A second Ctrl+C ends a
//! shutdown that hangs at once. (A server stalled in `send()` is checked by
//! the stage-7 experiment's tests.)

use crate::client::Client;
use crate::load::Load;
use crate::server::{Exited, Launch, Server};
use crate::wait::wait_until;
use std::path::Path;
use std::time::Duration;

/// How long a server may take to exit after the signal. The requirement is
/// 100 ms; a test on a loaded two-core machine (the whole suite running
/// beside it, a debug build, the load's threads competing for the CPUs)
/// measures scheduling delays too, so the tests allow some slack. A server
/// that ignores the signal while busy, the bug these tests exist for, never
/// exits at all.
pub const SHUTDOWN_LIMIT: Duration = Duration::from_millis(500);

/// How long the load runs before the signal.
const LOAD_WARMUP: Duration = Duration::from_millis(300);

/// The name the log gives `signal`.
fn signal_name(signal: libc::c_int) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "another signal",
    }
}

/// Asserts that `exited` is a complete, graceful shutdown on `signal` with
/// `connections` connections and `listeners` listeners open.
fn assert_graceful(exited: &Exited, signal: libc::c_int, connections: usize, listeners: usize) {
    let log = &exited.stdout;
    assert_eq!(exited.status.code(), Some(0), "status {:?}:\n{log}", exited.status);
    assert!(exited.elapsed < SHUTDOWN_LIMIT, "took {:?}:\n{log}", exited.elapsed);
    let warning = format!("[WARNING] sigint_handler() : {} received", signal_name(signal));
    assert_eq!(exited.count(&warning), 1, "{log}");
    assert_eq!(exited.count("destroyed connection"), connections, "{log}");
    assert_eq!(exited.count("destroyed listener"), listeners, "{log}");
    assert_eq!(exited.count("destroyed loop"), 1, "{log}");
    assert_eq!(exited.count("destroyed core"), 1, "{log}");
}

/// 50 idle connections on four ports, then `signal`: a graceful exit, and
/// every client sees its connection closed.
pub fn with_idle_connections(binary: &Path, signal: libc::c_int) {
    let server = Server::start(binary, 4);
    let mut clients: Vec<Client> = (0..50).map(|i| Client::connect(server.ports[i % 4])).collect();
    // A round trip each proves every connection has been accepted.
    for client in &mut clients {
        client.expect_reversed(b"ready\n");
    }
    let exited = server.stop(signal, SHUTDOWN_LIMIT * 4);
    assert_graceful(&exited, signal, 50, 4);
    for client in &mut clients {
        assert!(client.is_closed_by_server(Duration::from_secs(1)));
    }
}

/// Starts `binary` on `ports` ports with the message lines left out of its
/// captured log (a load would pile up gigabytes of them).
fn start_for_load(binary: &Path, ports: usize) -> Server {
    let launch = Launch { skip_messages: true, ..Launch::default() };
    let mut server = Server::spawn_with(binary, &["--ports", &vec!["0"; ports].join(",")], &launch);
    server.wait_for_ports(ports);
    server
}

/// Lets `load` run until replies flow and a little longer, so the server is
/// busy in the middle of its work when the signal comes.
fn warm_up(server: &Server, load: &Load) {
    let flowing = wait_until(Duration::from_secs(10), || load.received() > 0);
    assert!(flowing, "no reply came back under load:\n{}", server.stdout());
    std::thread::sleep(LOAD_WARMUP);
}

/// Two clients that send and read without pause (`cat /dev/zero | nc`),
/// then SIGINT: the server must stop serving them and exit.
pub fn while_streaming(binary: &Path) {
    let server = start_for_load(binary, 1);
    let load = Load::streaming(server.ports[0], 2);
    warm_up(&server, &load);
    let exited = server.stop(libc::SIGINT, SHUTDOWN_LIMIT * 4);
    drop(load);
    assert_graceful(&exited, libc::SIGINT, 2, 1);
}

/// 100 clients doing ping-pong on four ports, then SIGTERM.
pub fn while_ping_ponging(binary: &Path) {
    let server = start_for_load(binary, 4);
    let load = Load::ping_pong(&server.ports, 100);
    warm_up(&server, &load);
    // Every client has had a reply by now, so all 100 are accepted.
    let all_in = wait_until(Duration::from_secs(10), || server.count("new connection") >= 100);
    assert!(all_in, "not every client was accepted:\n{}", server.stdout());
    let exited = server.stop(libc::SIGTERM, SHUTDOWN_LIMIT * 4);
    drop(load);
    assert_graceful(&exited, libc::SIGTERM, 100, 4);
}

/// The server's log goes to a pipe that nobody reads (a terminal paused
/// with Ctrl+S), so it blocks writing its log and the first Ctrl+C cannot
/// finish the shutdown. The second must end the process at once: after the
/// first signal, its default action is back.
pub fn second_signal_ends_a_hung_shutdown(binary: &Path) {
    let mut server = Server::start(binary, 1);
    let mut client = Client::connect(server.ports[0]);
    client.expect_reversed(b"hello\n");
    server.pause_output();
    // Each message is logged before it is answered; a few 64 KB messages
    // fill the pipe, and the server blocks in the log's write().
    let message = vec![b'a'; 64 * 1024];
    let blocked = (0..64).any(|_| {
        client.send(&message);
        client.recv_exact(message.len(), Duration::from_millis(500)).len() < message.len()
    });
    assert!(blocked, "the server never blocked on its log");

    server.signal(libc::SIGINT);
    // The shutdown's own log lines cannot be written either: it hangs.
    assert!(server.wait_exit(Duration::from_millis(300)).is_none(), "the first SIGINT ended it");
    server.signal(libc::SIGINT);
    let status = server.wait_exit(SHUTDOWN_LIMIT * 2);
    let status = status.unwrap_or_else(|| panic!("still running after a second SIGINT"));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGINT), "status {status:?}");
}
