//! The checks every stage must pass, written once. Each function starts the
//! given stage binary itself, drives it over real TCP on 127.0.0.1, and
//! panics with the server's log when something is wrong. A stage's
//! integration tests are one-line calls to these.

use crate::client::{Client, IO_TIMEOUT};
use crate::oracle::Rng;
use crate::server::Server;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::Duration;

/// How long a log line that should follow an action may take to appear.
const LOG_WAIT: Duration = Duration::from_secs(5);

/// The course's four ports, asked of the OS as port 0.
const N_PORTS: usize = 4;

// ---------------------------------------------------------------------
// Milestone 2 (the same in stages 6 and 7)
// ---------------------------------------------------------------------

/// A client on each port gets its messages back reversed, with and
/// without a trailing newline, and the server prints what it received.
pub fn each_port_reverses(binary: &Path) {
    let server = Server::start(binary, N_PORTS);
    for &port in &server.ports {
        let mut client = Client::connect(port);
        client.expect_reversed(b"hello\n");
        client.expect_reversed(b"abc");
        client.expect_reversed(format!("port {port}\n").as_bytes());
    }
    assert!(server.wait_for_count("new connection", N_PORTS, LOG_WAIT), "{}", server.stdout());
    assert!(server.wait_for_count("client: hello", N_PORTS, LOG_WAIT), "{}", server.stdout());
}

/// Three clients on one port take turns; each gets its own replies.
pub fn clients_interleave_on_one_port(binary: &Path) {
    let server = Server::start(binary, 1);
    let port = server.ports[0];
    let mut clients: Vec<Client> = (0..3).map(|_| Client::connect(port)).collect();
    for round in 0..5 {
        for (i, client) in clients.iter_mut().enumerate() {
            client.expect_reversed(format!("client {i} round {round}\n").as_bytes());
        }
    }
}

/// One of three clients disconnects; the server logs it, the other two
/// carry on, and a new client is accepted and served.
pub fn disconnect_and_carry_on(binary: &Path) {
    let server = Server::start(binary, 1);
    let port = server.ports[0];
    let mut first = Client::connect(port);
    let leaving = Client::connect(port);
    let mut third = Client::connect(port);
    first.expect_reversed(b"before\n");
    drop(leaving);
    assert!(
        server.wait_for_count("peer closed connection", 1, LOG_WAIT),
        "no 'peer closed connection' line:\n{}",
        server.stdout()
    );
    first.expect_reversed(b"still here\n");
    third.expect_reversed(b"me too\n");
    let mut newcomer = Client::connect(port);
    newcomer.expect_reversed(b"new\n");
    assert!(server.wait_for_count("new connection", 4, LOG_WAIT), "{}", server.stdout());
}

// ---------------------------------------------------------------------
// The course's official tester, stages 6 and 7
// ---------------------------------------------------------------------

/// Check 1: on every port, one client sends 1000 random strings (up to 99
/// characters of `[A-Za-z0-9]` and `\n`) one at a time; every reply must be
/// the reverse with the newline kept last.
pub fn tester_random_strings(binary: &Path) {
    let server = Server::start(binary, N_PORTS);
    let mut rng = Rng::new(0x5eed);
    for &port in &server.ports {
        let mut client = Client::connect(port);
        for _ in 0..1000 {
            client.expect_reversed(&rng.tester_message(99));
        }
    }
}

/// Check 2: ten clients connect to one port at once; client i sends
/// `string-i\n` and must get its own string back reversed.
pub fn tester_ten_clients(binary: &Path) {
    let server = Server::start(binary, 1);
    let port = server.ports[0];
    let start = Arc::new(Barrier::new(10));
    let clients: Vec<_> = (0..10)
        .map(|i| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                let mut client = Client::connect(port);
                start.wait();
                client.expect_reversed(format!("string-{i}\n").as_bytes());
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client thread failed");
    }
    assert!(server.wait_for_count("new connection", 10, LOG_WAIT), "{}", server.stdout());
}

/// Check 3: of two connected clients, the first goes away; the second is
/// still served, a brand-new client is too, and the server keeps running.
pub fn tester_error_handling(binary: &Path) {
    let mut server = Server::start(binary, 1);
    let port = server.ports[0];
    let first = Client::connect(port);
    let mut second = Client::connect(port);
    second.expect_reversed(b"hello\n");
    drop(first);
    assert!(server.wait_for_count("peer closed connection", 1, LOG_WAIT), "{}", server.stdout());
    second.expect_reversed(b"still served\n");
    Client::connect(port).expect_reversed(b"brand new\n");
    assert!(server.is_running(), "server exited:\n{}", server.stdout());
}

// ---------------------------------------------------------------------
// Configuration errors
// ---------------------------------------------------------------------

/// One port is taken by another socket: the server logs an ERROR naming it
/// and serves on the others.
pub fn port_in_use_others_serve(binary: &Path) {
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
    let busy = taken.local_addr().expect("local address").port();
    let mut server = Server::spawn(binary, &["--ports", &format!("{busy},0,0")]);
    let ports = server.wait_for_ports(2);
    assert!(!ports.contains(&busy), "{}", server.stdout());
    let log = server.stdout();
    assert!(
        log.lines().any(|l| l.contains("[ERROR]") && l.contains(&busy.to_string())),
        "no ERROR line naming port {busy}:\n{log}"
    );
    for port in ports {
        Client::connect(port).expect_reversed(b"served\n");
    }
    assert!(server.is_running());
}

/// Every port is taken: the server says so and exits with a failure.
pub fn all_ports_in_use_exits(binary: &Path) {
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
    let busy = taken.local_addr().expect("local address").port();
    let exited = Server::spawn(binary, &["--ports", &busy.to_string()]).finish(IO_TIMEOUT);
    assert!(!exited.status.success(), "exit status {:?}", exited.status);
    assert!(
        exited.stdout.lines().any(|l| l.contains("[ERROR]") && l.contains(&busy.to_string())),
        "no ERROR line naming port {busy}:\n{}",
        exited.stdout
    );
    assert!(!exited.stderr.trim().is_empty(), "no message on stderr");
}

/// A bad flag or value: a one-line error, then the usage, on stderr, and
/// exit status 2. `--help` and `--version` succeed.
pub fn bad_flags_exit_2(binary: &Path) {
    let bad: [&[&str]; 6] = [
        &["--bogus"],
        &["--ports"],
        &["--ports", "80x"],
        &["--ports", "70000"],
        &["--ports", "9000,9000"],
        &["--host", ""],
    ];
    for args in bad {
        let exited = Server::spawn(binary, args).finish(IO_TIMEOUT);
        assert_eq!(exited.status.code(), Some(2), "{args:?}: {exited:?}");
        let first_line = exited.stderr.lines().next().unwrap_or_default();
        assert!(!first_line.is_empty() && !first_line.starts_with("Usage"), "{args:?}: {exited:?}");
        assert!(exited.stderr.contains("Usage:"), "{args:?}: no usage: {exited:?}");
        assert!(exited.stdout.is_empty(), "{args:?}: started anyway: {exited:?}");
    }
    let help = Server::spawn(binary, &["--help"]).finish(IO_TIMEOUT);
    assert!(help.status.success() && help.stdout.contains("Usage:"), "{help:?}");
    let version = Server::spawn(binary, &["--version"]).finish(IO_TIMEOUT);
    assert!(
        version.status.success() && version.stdout.contains(env!("CARGO_PKG_VERSION")),
        "{version:?}"
    );
}
