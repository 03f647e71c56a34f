//! Faults, floods and hostile input, written once and run against every
//! stage: what a server left running on a laptop meets sooner or later.
//! Each function starts the stage binary itself and panics with its log
//! when the server misbehaves.

use crate::client::{Client, IO_TIMEOUT, ReplyEnd};
use crate::oracle::Rng;
use crate::procfs;
use crate::server::{Exited, Launch, Server};
use crate::wait::wait_until;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const N_PORTS: usize = 4;

/// A server on four free ports without DEBUG logs (some of these tests
/// make thousands of connections).
fn quiet_server(binary: &Path) -> Server {
    let mut server = Server::spawn_with(
        binary,
        &["--ports", "0,0,0,0"],
        &Launch { quiet: true, ..Launch::default() },
    );
    server.wait_for_ports(N_PORTS);
    server
}

/// Every port still accepts a new client and answers it.
fn every_port_answers(server: &Server, after: &str) {
    for &port in &server.ports {
        let mut client = Client::try_connect(port)
            .unwrap_or_else(|err| panic!("after {after}: port {port} refuses: {err}"));
        client.expect_reversed(format!("still here after {after}\n").as_bytes());
    }
}

/// Waits until the server's open-fd count is `expected` again.
fn fds_settle_to(server: &Server, expected: usize) -> usize {
    let mut now = 0;
    wait_until(Duration::from_secs(5), || {
        now = procfs::open_fds(server.pid()).unwrap_or(usize::MAX);
        now == expected
    });
    now
}

/// Under a 64-fd limit, 100 clients connect to one port and stay. The
/// server runs out of fds: it must say so once, not spin while the clients
/// wait, and serve a new client soon after they leave.
pub fn fd_exhaustion(binary: &Path) {
    let mut server = Server::spawn_with(
        binary,
        &["--ports", "0"],
        &Launch { quiet: true, max_fds: Some(64), ..Launch::default() },
    );
    let port = server.wait_for_ports(1)[0];
    // Connect 100 clients at once; hold whatever connects.
    let held: Vec<TcpStream> = std::thread::scope(|scope| {
        let tries: Vec<_> = (0..100)
            .map(|_| {
                scope.spawn(move || {
                    let addr = (Ipv4Addr::LOCALHOST, port).into();
                    TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok()
                })
            })
            .collect();
        tries.into_iter().filter_map(|t| t.join().ok().flatten()).collect()
    });
    assert!(held.len() > 64, "only {} clients connected", held.len());
    assert!(
        server.wait_for_count("Too many open files", 1, Duration::from_secs(5)),
        "no EMFILE line:\n{}",
        server.stdout()
    );

    let cpu_before = procfs::cpu_time(server.pid()).expect("cpu time");
    let hold = Duration::from_secs(3);
    std::thread::sleep(hold);
    let cpu = procfs::cpu_time(server.pid()).expect("cpu time") - cpu_before;
    let share = cpu.as_secs_f64() / hold.as_secs_f64();
    assert!(share < 0.20, "the server spun: {:.0}% CPU while out of fds", share * 100.0);
    assert_eq!(
        server.count("Too many open files"),
        1,
        "logged more than once for one burst:\n{}",
        server.stdout()
    );

    drop(held);
    let started = Instant::now();
    let served = wait_until(Duration::from_secs(2), || {
        let Ok(mut client) = Client::try_connect(port) else { return false };
        let _ = client.try_send(b"free again\n");
        client.read_reply(11, Duration::from_millis(300)).bytes == b"niaga eerf\n"
    });
    assert!(served, "no client served within 2 s of fds being free:\n{}", server.stdout());
    eprintln!(
        "fd exhaustion: {:.1}% CPU while out of fds; served again after {:?}",
        share * 100.0,
        started.elapsed()
    );
    assert!(server.is_running());
}

/// 3000 connect / line / reply / close cycles over the four ports leave
/// the server with the fds it started with.
pub fn no_fd_leak(binary: &Path) {
    let server = quiet_server(binary);
    let pid = server.pid();
    let start = procfs::open_fds(pid).expect("fd count");
    for i in 0..3000 {
        let mut client = Client::connect(server.ports[i % N_PORTS]);
        client.expect_reversed(b"cycle\n");
    }
    let end = fds_settle_to(&server, start);
    assert_eq!(end, start, "fd count went from {start} to {end} after 3000 cycles");
}

/// Clients that reset mid-message, connect and leave, say nothing, or
/// half-close: the server copes with each and keeps serving.
pub fn abrupt_clients(binary: &Path) {
    let server = quiet_server(binary);
    let pid = server.pid();
    let start = procfs::open_fds(pid).expect("fd count");

    for &port in &server.ports {
        let mut client = Client::connect(port);
        client.send(b"half a mess");
        client.reset();
    }
    every_port_answers(&server, "resets mid-message");

    for i in 0..1000 {
        drop(Client::connect(server.ports[i % N_PORTS]));
    }
    every_port_answers(&server, "1000 connect-and-close");

    let silent: Vec<Client> = server.ports.iter().map(|&port| Client::connect(port)).collect();
    every_port_answers(&server, "clients that send nothing");
    drop(silent);

    for &port in &server.ports {
        let mut client = Client::connect(port);
        client.send(b"last words\n");
        client.shutdown_write();
        assert_eq!(client.recv_exact(11, IO_TIMEOUT), b"sdrow tsal\n", "half-closed client");
        assert!(client.is_closed_by_server(IO_TIMEOUT), "server kept a half-closed client");
    }
    every_port_answers(&server, "half-closed clients");

    let ports = server.ports.clone();
    let start_line = Arc::new(Barrier::new(200));
    let clients: Vec<_> = (0..200)
        .map(|i| {
            let start_line = Arc::clone(&start_line);
            let port = ports[i % N_PORTS];
            std::thread::spawn(move || {
                let mut client = Client::connect(port);
                start_line.wait();
                client.expect_reversed(format!("crowd {i}\n").as_bytes());
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client of the crowd failed");
    }
    every_port_answers(&server, "200 clients at once");

    let end = fds_settle_to(&server, start);
    assert_eq!(end, start, "fd count went from {start} to {end}");
}

/// Binary junk, invalid UTF-8, NUL bytes and a lone newline are answered
/// byte for byte; a 1 MiB message comes back with the same byte count.
pub fn odd_data(binary: &Path) {
    let server = quiet_server(binary);
    let port = server.ports[0];
    let mut client = Client::connect(port);
    client.expect_reversed(b"\xff\xfe\xc3(\n");
    client.expect_reversed(b"a\0b\0c\n");
    client.expect_reversed(b"\n");
    client.expect_reversed("añb😀\n".as_bytes());

    // 1 MiB of random bytes, sent by one thread while this one reads: the
    // server answers each chunk as it comes, so the reply's content depends
    // on chunk boundaries, but its length must be exactly 1 MiB.
    let big = Rng::new(42).bytes(1 << 20);
    let mut client = Client::connect(port);
    let mut writer = client.stream().try_clone().expect("clone socket");
    let sending = std::thread::spawn(move || std::io::Write::write_all(&mut writer, &big));
    let reply = client.read_reply(1 << 20, Duration::from_secs(10));
    sending.join().expect("sender thread").expect("send 1 MiB");
    assert_eq!(reply.end, ReplyEnd::Complete, "got {} of {} bytes", reply.bytes.len(), 1 << 20);
    assert!(client.receives_nothing_for(Duration::from_millis(200)), "more bytes than sent");
    every_port_answers(&server, "odd data");
}

/// Escape sequences and control bytes from a client never reach the
/// server's stdout raw, and a log that is not a terminal has no colours.
pub fn terminal_is_safe(binary: &Path) {
    let server = quiet_server(binary);
    let hostile = b"\x1b[31mRED\x1b]0;title\x07\x1b[2J\x08\x7f\x9b\n";
    let mut client = Client::connect(server.ports[0]);
    client.expect_reversed(hostile);
    // The reply can arrive before the log line leaves the server's buffer
    // (it is flushed when the loop next waits), so wait for the line
    // before killing the process.
    assert!(
        server.wait_for_count("RED", 1, IO_TIMEOUT),
        "the message was never printed:\n{}",
        server.stdout()
    );
    let exited: Exited = server.stop(libc::SIGKILL, IO_TIMEOUT);
    let out = exited.stdout.as_bytes();
    assert!(!out.contains(&0x1b), "an ESC byte reached stdout:\n{}", exited.stdout);
    assert!(!out.contains(&0x07), "a BEL byte reached stdout:\n{}", exited.stdout);
    assert!(!out.contains(&0x08), "a backspace reached stdout:\n{}", exited.stdout);
    assert!(
        exited.stdout.contains("\\x1b[31mRED"),
        "the message was not printed escaped:\n{}",
        exited.stdout
    );
}

/// A client that goes away while the server is writing to it: the write
/// fails with EPIPE or a reset, and the server lives on.
pub fn dead_peer_writes(binary: &Path) {
    let server = quiet_server(binary);
    // A client floods without reading until the server is stuck in send()
    // to it, then resets: the blocked send() fails (ECONNRESET or EPIPE)
    // instead of killing the server with SIGPIPE.
    let mut flooder = Client::connect(server.ports[0]);
    let stalled =
        flooder.flood_until_stalled(Duration::from_millis(300), 64 << 20, Duration::from_secs(10));
    assert!(stalled.is_some(), "the server never blocked in send()");
    flooder.reset();
    assert!(
        server.wait_for_count("send() failed", 1, IO_TIMEOUT),
        "no failed send logged:\n{}",
        server.stdout()
    );
    // The same on every port, with the replies still being written.
    for &port in &server.ports {
        let mut client = Client::connect(port);
        client.send(&vec![b'z'; 200_000]);
        client.reset();
    }
    every_port_answers(&server, "writes to dead peers");
}

/// A listener that cannot be created leaves no socket behind; the others
/// serve. Unknown hosts, bad ports and duplicates are refused with one line.
pub fn bad_configuration(binary: &Path) {
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
    let busy = taken.local_addr().expect("local address").port();
    let mut server = Server::spawn(binary, &["--ports", &format!("0,{busy}")]);
    let ports = server.wait_for_ports(1);
    assert!(
        server.wait_for_count("[ERROR]", 1, IO_TIMEOUT),
        "no ERROR for port {busy}:\n{}",
        server.stdout()
    );
    assert_eq!(
        procfs::open_sockets(server.pid()).expect("sockets"),
        1,
        "a failed listener left a socket"
    );
    Client::connect(ports[0]).expect_reversed(b"served\n");
    drop(server);

    let exited = Server::spawn(binary, &["--host", "no-such-host.invalid", "--ports", "0"])
        .finish(IO_TIMEOUT * 2);
    assert!(!exited.status.success(), "{exited:?}");
    assert!(exited.stdout.contains("no-such-host.invalid"), "{exited:?}");
    assert_eq!(exited.stderr.lines().count(), 1, "{exited:?}");

    for args in [["--ports", "65536"], ["--ports", "8001,8001"], ["--ports", "x"]] {
        let exited = Server::spawn(binary, &args).finish(IO_TIMEOUT);
        assert_eq!(exited.status.code(), Some(2), "{args:?}: {exited:?}");
        let first = exited.stderr.lines().next().unwrap_or_default();
        assert!(first.contains(args[1].split(',').next().unwrap_or_default()), "{args:?}: {first}");
    }
}
