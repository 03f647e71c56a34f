//! Stage 11's proxy on the real binary, in front of an upstream the test
//! starts itself (`shared::upstream`): every way a proxied exchange can
//! end has one outcome, and each is checked here.
//!
//! | case                                   | the client sees                     |
//! |----------------------------------------|-------------------------------------|
//! | upstream refuses (nothing listens)     | a close (FIN), no byte, no reset    |
//! | upstream answers and closes            | the whole response, then EOF        |
//! | upstream dies mid-response             | what came, then a close             |
//! | client half-closes after its request   | the whole response, then EOF        |
//! | client leaves mid-response             | (gone; the upstream is closed too)  |
//! | client never reads a 1 GiB response    | the server stays within 4 MiB       |
//!
//! After each, the server holds nothing for the exchange: the log shows
//! both connections destroyed, or the upstream sees its connection closed.

use shared::client::{Client, ClosedPort, IO_TIMEOUT, ReplyEnd};
use shared::harness::binary_under_test;
use shared::memory::{MIB, RssSampler};
use shared::procfs;
use shared::serial::{alone, side_by_side};
use shared::server::{Launch, Server};
use shared::upstream::{Upstream, pattern};
use shared::wait::wait_until;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The binary under test: this stage's, or the one `XPS_BIN` names (a
/// learner's exercise, say).
fn stage_binary() -> PathBuf {
    binary_under_test(env!("CARGO_BIN_EXE_stage11")).0
}

/// Stage 11 on two free ports, the first forwarding to `upstream`, DEBUG
/// lines on (the tests count create and destroy lines).
fn proxy_to(upstream: &str) -> Server {
    let launch = Launch { upstream: Some(upstream.to_string()), ..Launch::default() };
    let mut server = Server::spawn_with(&stage_binary(), &["--ports", "0,0"], &launch);
    server.wait_for_ports(2);
    server
}

/// The same, quiet and without the message lines: for the tests that
/// move many bytes or make many connections.
fn quiet_proxy_to(upstream: &str) -> Server {
    let launch = Launch {
        quiet: true,
        skip_messages: true,
        upstream: Some(upstream.to_string()),
        ..Launch::default()
    };
    let mut server = Server::spawn_with(&stage_binary(), &["--ports", "0,0"], &launch);
    server.wait_for_ports(2);
    server
}

/// An HTTP/1.0 request for `path`.
fn request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").into_bytes()
}

/// Everything `client` receives until the connection ends, or until
/// `limit`, and how it ended.
fn read_to_end(client: &mut Client, limit: Duration) -> (Vec<u8>, ReplyEnd) {
    // Asks for more than any response here: the read ends with the
    // connection (or the time).
    let reply = client.read_reply(4 << 20, limit);
    (reply.bytes, reply.end)
}

/// The same exchange made with the upstream directly: what the client of
/// the proxy must receive, byte for byte.
fn direct(upstream: &Upstream, path: &str) -> Vec<u8> {
    let mut client = Client::connect(upstream.port());
    client.send(&request(path));
    let (bytes, end) = read_to_end(&mut client, IO_TIMEOUT);
    assert_eq!(end, ReplyEnd::Closed, "the upstream itself did not answer {path}");
    bytes
}

/// The connections of `clients` proxied exchanges, and their pipes, are
/// gone from the server: its log shows each client, each upstream and two
/// pipes each destroyed.
fn exchange_freed(server: &Server, clients: usize) {
    let freed = wait_until(IO_TIMEOUT, || {
        server.count("destroyed connection from") >= clients
            && server.count("destroyed upstream connection") >= clients
            && server.count("xps_pipe_destroy()") >= 2 * clients
    });
    assert!(freed, "an exchange was not freed whole:\n{}", server.stdout());
}

#[test]
fn an_upstream_that_refuses_closes_the_client_with_no_byte_and_no_reset() {
    let _shared = side_by_side();
    let closed = ClosedPort::new().unwrap();
    let upstream = format!("127.0.0.1:{}", closed.port);
    let mut server = proxy_to(&upstream);
    let (proxy, echo) = (server.ports[0], server.ports[1]);

    // A client that sends its request at once is closed as soon as the
    // refusal is known: a FIN, not a reset, though its request was never
    // read by anyone.
    let mut client = Client::connect(proxy);
    client.send(&request("/"));
    let started = Instant::now();
    let (bytes, end) = read_to_end(&mut client, IO_TIMEOUT);
    assert_eq!((bytes.as_slice(), &end), (&b""[..], &ReplyEnd::Closed), "{}", server.stdout());
    assert!(started.elapsed() < Duration::from_millis(500), "closed after {:?}", started.elapsed());
    let named = format!("connect() to upstream {upstream} failed: Connection refused");
    assert!(server.wait_for_count(&named, 1, IO_TIMEOUT), "{}", server.stdout());
    assert_eq!(server.count("[ERROR]"), 1, "one error line per refusal:\n{}", server.stdout());

    // The server goes on: the other port writes back, the proxy port
    // refuses the next client the same way.
    assert_eq!(Client::connect(echo).round_trip(b"still here\n"), b"still here\n");
    let mut again = Client::connect(proxy);
    again.send(&request("/again"));
    assert_eq!(read_to_end(&mut again, IO_TIMEOUT).1, ReplyEnd::Closed);
    exchange_freed(&server, 2);
    assert!(server.process.is_running());
}

/// A client whose upstream refuses before it has sent a byte is not closed
/// at once (an HTTP client closed before it wrote its request may wait for
/// ever): it is closed when its request comes, or after the 1 s grace.
#[test]
fn a_client_whose_upstream_refuses_is_closed_after_its_request_or_the_grace() {
    let _shared = side_by_side();
    let closed = ClosedPort::new().unwrap();
    let server = proxy_to(&format!("127.0.0.1:{}", closed.port));
    let proxy = server.ports[0];

    let mut silent = Client::connect(proxy);
    let started = Instant::now();
    let (bytes, end) = read_to_end(&mut silent, IO_TIMEOUT);
    assert_eq!((bytes.as_slice(), &end), (&b""[..], &ReplyEnd::Closed));
    let waited = started.elapsed();
    assert!(
        (Duration::from_millis(800)..Duration::from_millis(2500)).contains(&waited),
        "a silent client was closed after {waited:?}, not after the 1 s grace"
    );

    // One that speaks late, once the refusal is known: closed when it does.
    let mut late = Client::connect(proxy);
    assert!(server.wait_for_count("once it has sent its request", 2, IO_TIMEOUT));
    let started = Instant::now();
    late.send(&request("/late"));
    let (bytes, end) = read_to_end(&mut late, IO_TIMEOUT);
    assert_eq!((bytes.as_slice(), &end), (&b""[..], &ReplyEnd::Closed));
    assert!(started.elapsed() < Duration::from_millis(500), "closed after {:?}", started.elapsed());
    exchange_freed(&server, 2);
}

#[test]
fn an_upstream_that_answers_and_closes_gives_the_client_everything_then_eof() {
    let _shared = side_by_side();
    let page = b"<html>the page</html>\n".repeat(5000);
    let upstream = Upstream::http(vec![("/index.html".to_string(), page.clone())]);
    let server = proxy_to(&upstream.addr());
    let expected = direct(&upstream, "/index.html");
    assert!(expected.ends_with(&page));

    let mut client = Client::connect(server.ports[0]);
    client.send(&request("/index.html"));
    let (bytes, end) = read_to_end(&mut client, IO_TIMEOUT);
    assert_eq!(end, ReplyEnd::Closed, "no EOF after the response");
    assert!(bytes == expected, "{} bytes, expected {}", bytes.len(), expected.len());
    // A 404 passes through unchanged too.
    let mut missing = Client::connect(server.ports[0]);
    missing.send(&request("/nowhere"));
    assert_eq!(read_to_end(&mut missing, IO_TIMEOUT).0, direct(&upstream, "/nowhere"));

    drop((client, missing));
    exchange_freed(&server, 2);
    assert!(upstream.wait_open(0, IO_TIMEOUT), "the server kept an upstream connection open");
}

#[test]
fn an_upstream_that_dies_mid_response_gives_the_client_what_came_then_a_close() {
    let _shared = side_by_side();
    let upstream = Upstream::http(Vec::new());
    let server = proxy_to(&upstream.addr());
    let mut client = Client::connect(server.ports[0]);
    client.send(&request("/die/300000"));
    let (bytes, end) = read_to_end(&mut client, IO_TIMEOUT);
    assert_eq!(end, ReplyEnd::Closed, "{}", server.stdout());
    let body = bytes.split(|&b| b == b'\n').count();
    assert!(body > 1, "no response head");
    assert!(bytes.ends_with(&pattern(0, 300_000)), "the bytes sent before the upstream died");
    drop(client);
    exchange_freed(&server, 1);
}

#[test]
fn a_client_that_half_closes_still_gets_the_whole_response() {
    let _shared = side_by_side();
    let upstream = Upstream::http(Vec::new());
    let server = proxy_to(&upstream.addr());
    let mut client = Client::connect(server.ports[0]);
    let mut message = request("/after-eof");
    message.extend_from_slice(b"twelve bytes");
    client.send(&message);
    // The upstream answers only once it has seen the end of the request:
    // the half-close must have been passed on.
    client.shutdown_write();
    let (bytes, end) = read_to_end(&mut client, IO_TIMEOUT);
    assert_eq!(end, ReplyEnd::Closed, "{}", server.stdout());
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.ends_with("got 12 bytes after the head\n"), "{text}\n{}", server.stdout());
    exchange_freed(&server, 1);
}

#[test]
fn a_client_that_leaves_mid_response_closes_its_upstream() {
    let _shared = side_by_side();
    let upstream = Upstream::http(Vec::new());
    let server = proxy_to(&upstream.addr());
    for reset in [false, true] {
        let mut client = Client::connect(server.ports[0]);
        client.send(&request("/bytes/100000000"));
        assert_eq!(client.read_reply(100_000, IO_TIMEOUT).end, ReplyEnd::Complete);
        assert!(upstream.wait_open(1, IO_TIMEOUT));
        if reset {
            client.reset();
        } else {
            drop(client);
        }
        assert!(
            upstream.wait_open(0, IO_TIMEOUT),
            "after the client {} the upstream connection stayed open:\n{}",
            if reset { "reset" } else { "closed" },
            server.stdout()
        );
    }
    exchange_freed(&server, 2);
}

/// A client asks for 1 GiB and never reads: the pipe toward it fills, the
/// upstream is no longer read, and TCP stops the upstream. The server's
/// memory stays within 4 MiB of where it was, and a client of the other
/// port is answered within 100 ms all the while.
#[test]
fn a_client_that_never_reads_a_gib_throttles_the_upstream() {
    let _alone = alone();
    let upstream = Upstream::http(Vec::new());
    let server = quiet_proxy_to(&upstream.addr());
    let pid = server.process.pid();
    let sampler = RssSampler::start(pid).unwrap();
    let mut sleeper = Client::connect(server.ports[0]);
    sleeper.send(&request("/bytes/1073741824"));
    let mut bystander = Client::connect(server.ports[1]);
    let mut slowest = Duration::ZERO;
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let asked = Instant::now();
        let reply = bystander.round_trip(b"ping\n");
        assert_eq!(reply, b"ping\n", "after {:?}:\n{}", asked.elapsed(), server.stdout());
        slowest = slowest.max(asked.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    let rss = sampler.finish().unwrap();
    eprintln!(
        "never-reading client of 1 GiB: RSS grew {} KiB; slowest bystander reply {slowest:?}",
        rss.growth() / 1024
    );
    assert!(rss.growth() <= 4 * MIB, "the server grew by {} KiB", rss.growth() / 1024);
    assert!(slowest < Duration::from_millis(100), "a bystander waited {slowest:?}");

    // The sleeper wakes: the bytes it gets are the upstream's, in order.
    sleeper.stream().set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut head = [0; 4096];
    let n = sleeper.stream().read(&mut head).unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.0 200"), "{:?}", String::from_utf8_lossy(&head[..n]));
    drop(sleeper);
    assert!(upstream.wait_open(0, IO_TIMEOUT), "the upstream stayed open after its client left");
}

/// 1,000 proxied exchanges, each ended early at random by the client
/// (close or reset) or by the upstream (it dies mid-response): the
/// server ends with the fds it started with, and within 1 MiB of the
/// memory.
#[test]
fn a_thousand_aborted_exchanges_leave_nothing_behind() {
    let _shared = side_by_side();
    let upstream = Upstream::http(Vec::new());
    let server = quiet_proxy_to(&upstream.addr());
    let pid = server.process.pid();
    let fds = procfs::open_fds(pid).unwrap();
    let fds_back = || wait_until(IO_TIMEOUT, || procfs::open_fds(pid).is_ok_and(|n| n == fds));
    // One exchange first, so that what the first connection allocates for
    // good (the log's buffer, say) is in the baseline.
    let mut first = Client::connect(server.ports[0]);
    first.send(&request("/bytes/10"));
    read_to_end(&mut first, IO_TIMEOUT);
    drop(first);
    assert!(upstream.wait_open(0, IO_TIMEOUT) && fds_back());
    let rss = procfs::rss_bytes(pid).unwrap();
    let started = Instant::now();

    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..1000 {
        // Each exchange takes a millisecond or so: a stuck one fails the
        // test instead of stretching it.
        assert!(started.elapsed() < Duration::from_secs(30), "slow by exchange {i}");
        let mut client = Client::connect(server.ports[0]);
        match next() % 4 {
            0 => client.send(&request("/die/5000")),
            _ => client.send(&request("/bytes/200000")),
        }
        let keep = (next() % 50_000) as usize;
        let _ = client.read_reply(keep, Duration::from_millis(500));
        match next() % 3 {
            0 => client.reset(),
            1 => drop(client),
            _ => {
                let _ = client.stream().shutdown(Shutdown::Both);
            }
        }
    }
    eprintln!("1000 aborted exchanges in {:?}", started.elapsed());
    assert!(upstream.wait_open(0, IO_TIMEOUT), "upstream connections left open");
    assert!(fds_back(), "{fds} fds before, {:?} after", procfs::open_fds(pid));
    let grown = procfs::rss_bytes(pid).unwrap().saturating_sub(rss);
    eprintln!("after them: {fds} fds as before; RSS {} KiB above the baseline", grown / 1024);
    assert!(grown <= MIB, "the server kept {} KiB", grown / 1024);
    let mut client = Client::connect(server.ports[1]);
    client.stream().set_nodelay(true).unwrap();
    client.stream().write_all(b"alive\n").unwrap();
    assert_eq!(client.recv_exact(6, IO_TIMEOUT), b"alive\n");
}

/// Out of fds: on the write-back port accept() itself fails, on the proxy
/// port the upstream's socket fails first (one fd a client there is not
/// enough). Either way the clients that cannot be served are closed one by
/// one, the shortage is logged once, the loop does not spin, and once fds
/// are free the port serves again. (The shared fd-exhaustion check starts
/// one port, the proxy, and so never reaches the accept() case.)
#[test]
fn out_of_fds_clients_are_closed_the_shortage_logged_once_and_nothing_spins() {
    let _shared = side_by_side();
    // An upstream that takes every connection and keeps it: a proxy
    // client holds two fds, its own and its upstream's, until it leaves.
    let upstream = Upstream::echo();
    for (index, shortage) in [(1, "accept() failed on port"), (0, "no fd for an upstream on port")]
    {
        let launch = Launch {
            quiet: true,
            skip_messages: true,
            max_fds: Some(48),
            upstream: Some(upstream.addr()),
            ..Launch::default()
        };
        let mut server = Server::spawn_with(&stage_binary(), &["--ports", "0,0"], &launch);
        server.wait_for_ports(2);
        let (port, pid) = (server.ports[index], server.process.pid());
        let base = procfs::open_fds(pid).unwrap();
        let mut held = Vec::new();
        if index == 0 {
            // Two fds a client: with an odd number left, the last accept()
            // takes the last fd and the upstream's socket() is what fails.
            // One client where a client costs one fd makes the number odd.
            if (48 - base).is_multiple_of(2) {
                held.push(Client::connect(server.ports[1]));
                let taken = || procfs::open_fds(pid).is_ok_and(|n| n == base + 1);
                assert!(wait_until(IO_TIMEOUT, taken), "the odd client was never accepted");
            }
        }
        held.extend((0..80).filter_map(|_| Client::try_connect(port).ok()));
        assert!(held.len() > 48, "only {} clients connected", held.len());
        let seen = server.wait_for_count(shortage, 1, IO_TIMEOUT);
        assert!(seen, "no {shortage:?} line:\n{}", server.stdout());
        let before = procfs::cpu_time(pid).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let spent = procfs::cpu_time(pid).unwrap().saturating_sub(before);
        assert!(spent < Duration::from_millis(100), "{spent:?} of CPU in 0.5 s while out of fds");
        // Once per shortage: the fd a turned-away client frees may end one, and
        // the next client start another.
        let (shortages, recoveries) = (server.count(shortage), server.count("fds are free again"));
        assert!(shortages <= recoveries + 1, "logged more than once:\n{}", server.stdout());
        // Not once a client either: the upstream's failed socket() is the
        // shortage's line, not an ERROR of its own.
        let per_client = server.count("failed for upstream");
        assert_eq!(
            per_client,
            0,
            "an upstream's fd shortage logged per client:\n{}",
            server.stdout()
        );
        drop(held);
        // The next client comes once the server has closed them all.
        let closed = || procfs::open_fds(pid).is_ok_and(|n| n <= base);
        assert!(wait_until(IO_TIMEOUT, closed), "the clients' fds were never freed");
        let _next = Client::connect(port);
        let again = server.wait_for_count("fds are free again: accepting on port", 1, IO_TIMEOUT);
        assert!(again, "port {index} never accepted again:\n{}", server.stdout());
    }
}
