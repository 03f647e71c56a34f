//! Stage 6 has no signal handling, as in the course: SIGINT ends the
//! process at once, and the kernel closes its sockets.

use shared::client::Client;
use shared::server::Server;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

const STAGE: &str = env!("CARGO_BIN_EXE_stage06");

#[test]
fn sigint_ends_the_process_and_frees_its_ports() {
    let server = Server::start(Path::new(STAGE), 4);
    let ports = server.ports.clone();
    let mut clients: Vec<Client> = (0..8).map(|i| Client::connect(ports[i % 4])).collect();
    for client in &mut clients {
        client.expect_reversed(b"ready\n");
    }
    let exited = server.stop(libc::SIGINT, Duration::from_secs(1));
    // Killed by the signal: no exit code, no goodbye in the log.
    assert_eq!(exited.status.signal(), Some(libc::SIGINT), "{exited:?}");
    assert_eq!(exited.count("destroyed"), 0, "{}", exited.stdout);
    for client in &mut clients {
        assert!(client.is_closed_by_server(Duration::from_secs(1)));
    }
    // Nothing is left listening: every port can be bound again.
    for port in ports {
        TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .unwrap_or_else(|err| panic!("port {port} still in use: {err}"));
    }
}
