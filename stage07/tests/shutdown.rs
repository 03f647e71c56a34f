//! Stage 7's graceful shutdown: SIGINT or SIGTERM destroys the core, and
//! with it every connection, listener and the loop, then exits 0. (Shutdown
//! while the server is stuck in send() is in experiment.rs.)

use shared::client::Client;
use shared::server::Server;
use std::path::Path;
use std::time::Duration;

const STAGE: &str = env!("CARGO_BIN_EXE_stage07");

/// The time the course's Ctrl+C must take at most.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(1);

fn shutdown_with_open_connections(signal: libc::c_int, name: &str) {
    let server = Server::start(Path::new(STAGE), 4);
    let mut clients: Vec<Client> = (0..50).map(|i| Client::connect(server.ports[i % 4])).collect();
    // A round trip each proves every connection has been accepted.
    for client in &mut clients {
        client.expect_reversed(b"ready\n");
    }
    let exited = server.stop(signal, SHUTDOWN_LIMIT);
    assert_eq!(exited.status.code(), Some(0), "{}", exited.stdout);
    assert!(exited.elapsed < SHUTDOWN_LIMIT, "took {:?}", exited.elapsed);
    assert_eq!(exited.count(&format!("[WARNING] sigint_handler() : {name} received")), 1);
    assert_eq!(exited.count("destroyed connection"), 50, "{}", exited.stdout);
    assert_eq!(exited.count("destroyed listener"), 4, "{}", exited.stdout);
    assert_eq!(exited.count("destroyed loop"), 1, "{}", exited.stdout);
    assert_eq!(exited.count("destroyed core"), 1, "{}", exited.stdout);
    // The clients see their connections closed.
    for client in &mut clients {
        assert!(client.is_closed_by_server(Duration::from_secs(1)));
    }
}

#[test]
fn sigint_with_50_connections() {
    shutdown_with_open_connections(libc::SIGINT, "SIGINT");
}

#[test]
fn sigterm_with_50_connections() {
    shutdown_with_open_connections(libc::SIGTERM, "SIGTERM");
}
