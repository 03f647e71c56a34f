//! xps-bench against the real stage-7 server (no errors) and against small
//! wrong servers written here (errors counted, non-zero exit). Each run
//! lasts about a second; xps-bench bounds its own time.

use shared::build::workspace_binary;
use shared::client::ClosedPort;
use shared::server::{Launch, Server};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const XPS_BENCH: &str = env!("CARGO_BIN_EXE_xps-bench");
const XPS_UPSTREAM: &str = env!("CARGO_BIN_EXE_xps-upstream");

/// Runs xps-bench with `args` and returns its output and how long it took.
fn bench(args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let out = Command::new(XPS_BENCH).args(args).output().expect("run xps-bench");
    (out, started.elapsed())
}

/// The `key=value` pairs of the last `result:` line.
fn result(out: &Output) -> HashMap<String, String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with("result: ")).unwrap_or_else(|| {
        panic!("no result line: {out:?}");
    });
    line["result: ".len()..]
        .split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

fn number(result: &HashMap<String, String>, key: &str) -> f64 {
    result[key].parse().unwrap_or_else(|_| panic!("{key}={} is not a number", result[key]))
}

/// A one-thread server on a free port that handles connections with `serve`
/// until `n` have been accepted. Each connection gets its own thread, which
/// ends when the client closes it.
fn wrong_server(n: usize, serve: fn(TcpStream)) -> (u16, JoinHandle<()>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = std::thread::spawn(move || {
        for stream in listener.incoming().take(n) {
            let stream = stream.unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            std::thread::spawn(move || serve(stream));
        }
    });
    (port, acceptor)
}

/// Reverses each chunk including its newline: "hello\n" -> "\nolleh".
fn reverse_newline_too(mut stream: TcpStream) {
    let mut buffer = [0; 4096];
    while let Ok(n @ 1..) = stream.read(&mut buffer) {
        buffer[..n].reverse();
        if stream.write_all(&buffer[..n]).is_err() {
            return;
        }
    }
}

/// Reads and never answers.
fn never_reply(mut stream: TcpStream) {
    let mut buffer = [0; 4096];
    while let Ok(1..) = stream.read(&mut buffer) {}
}

#[test]
fn stage07_gives_no_errors() {
    let server = Server::start(&workspace_binary("stage07", "stage07"), 1);
    let port = server.ports[0].to_string();
    let args = ["--stage", "7", "--port", &port, "--conns", "4", "--idle", "20", "--seconds", "1"];
    let (out, _) = bench(&args);
    let result = result(&out);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with(&format!("xps-bench: 127.0.0.1:{port}, stage 7 (reverse), ")));
    assert_eq!(result["errors"], "0", "{out:?}");
    assert_eq!(result["idle_open"], "20", "{out:?}");
    assert!(number(&result, "msgs_per_s") > 0.0, "{out:?}");
    assert!(number(&result, "p50_us") > 0.0, "{out:?}");
    assert!(number(&result, "p99_us") >= number(&result, "p50_us"), "{out:?}");
    // Every active connection reached the server, idle ones included.
    assert!(
        server.wait_for_count("new connection", 24, Duration::from_secs(2)),
        "{}",
        server.stdout()
    );
}

#[test]
fn wrong_replies_are_counted_and_fail_the_run() {
    let (port, _acceptor) = wrong_server(2, reverse_newline_too);
    let (out, elapsed) = bench(&["--port", &port.to_string(), "--conns", "2", "--seconds", "0.5"]);
    let result = result(&out);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(number(&result, "wrong") > 0.0, "{out:?}");
    assert_eq!(result["msgs"], "0", "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("wrong reply"), "{out:?}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
}

#[test]
fn a_server_that_never_replies_times_out_instead_of_hanging() {
    let (port, _acceptor) = wrong_server(2, never_reply);
    let port = port.to_string();
    let (out, elapsed) =
        bench(&["--port", &port, "--conns", "2", "--seconds", "0.5", "--timeout", "0.5"]);
    let result = result(&out);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(result["timeouts"], "2", "{out:?}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
}

#[test]
fn a_reply_later_than_timeout_counts_even_between_ticks() {
    // No loopback round trip takes under 10 microseconds, so every reply
    // is late; the deadline check runs only once a tick (100 ms), so this
    // is caught when the reply completes.
    let server = Server::start(&workspace_binary("stage07", "stage07"), 1);
    let port = server.ports[0].to_string();
    let (out, _) =
        bench(&["--port", &port, "--conns", "1", "--seconds", "1", "--timeout", "0.00001"]);
    let result = result(&out);
    assert!(!out.status.success(), "{out:?}");
    assert!(number(&result, "timeouts") > 0.0, "{out:?}");
    assert_eq!(result["msgs"], "0", "{out:?}");
}

#[test]
fn no_server_means_connect_errors() {
    // A port nothing listens on, and nothing can take while we use it.
    let closed = ClosedPort::new().unwrap();
    let port = closed.port;
    let (out, _) = bench(&["--port", &port.to_string(), "--conns", "3", "--seconds", "0.5"]);
    let result = result(&out);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(result["connect_failed"], "3", "{out:?}");
}

#[test]
fn bad_flags_print_usage_and_exit_2() {
    for args in [&["--conns"][..], &["--conns", "0"], &["--msg-size", "big"], &["--what"]] {
        let (out, _) = bench(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(stderr.starts_with("xps-bench: "), "{stderr}");
        assert!(stderr.contains("Usage: xps-bench"), "{stderr}");
    }
    let (out, _) = bench(&["--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--msg-size"));
}

#[test]
fn bulk_goes_through_stage11_and_its_memory_is_sampled() {
    // As tools/bench-proxy.sh runs them: the epoll echo as a process of
    // its own, stage 11 in front of it.
    let mut upstream = Server::spawn(std::path::Path::new(XPS_UPSTREAM), &["--epoll"]);
    let echo_port = upstream.wait_for_ports(1)[0];
    let launch = Launch {
        quiet: true,
        skip_messages: true,
        upstream: Some(format!("127.0.0.1:{echo_port}")),
        ..Launch::default()
    };
    let mut proxy =
        Server::spawn_with(&workspace_binary("stage11", "stage11"), &["--ports", "0"], &launch);
    let port = proxy.wait_for_ports(1)[0].to_string();
    let pid = proxy.process.pid().to_string();

    let (out, _) = bench(&["--bulk", "20M", "--port", &port, "--pid", &pid, "--timeout", "10"]);
    let bulk = result(&out);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(bulk["errors"], "0", "{out:?}");
    assert_eq!(number(&bulk, "received"), (20 << 20) as f64, "{out:?}");
    assert!(number(&bulk, "mib_per_s") > 0.0, "{out:?}");
    assert!(number(&bulk, "rss_before_kib") > 0.0, "{out:?}");
    // Two pipes of 1 MB bound what stage 11 holds, however long the
    // transfer.
    assert!(number(&bulk, "rss_growth_kib") < 16384.0, "{out:?}");

    // The ping-pong through the proxy: stage 11's replies are the lines.
    let (out, _) = bench(&["--stage", "11", "--port", &port, "--conns", "4", "--seconds", "0.5"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(result(&out)["errors"], "0", "{out:?}");

    let exited = upstream.stop(libc::SIGTERM, Duration::from_secs(5));
    assert!(exited.status.success(), "xps-upstream on SIGTERM: {exited:?}");
    drop(proxy);
}

#[test]
fn bulk_counts_a_server_that_does_not_write_back_as_an_error() {
    let (port, _acceptor) = wrong_server(1, reverse_newline_too);
    let port = port.to_string();
    let (out, _) = bench(&["--bulk", "1M", "--port", &port, "--timeout", "5"]);
    let result = result(&out);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(result["errors"], "1", "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("came back wrong"), "{out:?}");
}
