//! soak against nothing (it gives up soon, printing a bounded number of
//! lines), with absurd flags (status 2, no panic), and against the real
//! stage-7 server (a short run passes; a server killed mid-run fails it).
//! Every run has a deadline, and a soak still running then is killed.

use shared::build::workspace_binary;
use shared::capture::{Captured, Drain};
use shared::child::Process;
use shared::client::ClosedPort;
use shared::server::{Launch, Server};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const SOAK: &str = env!("CARGO_BIN_EXE_soak");

/// The longest any soak run here may take before it is killed.
const DEADLINE: Duration = Duration::from_secs(10);

/// What a soak run left behind.
#[derive(Debug)]
struct Run {
    status: ExitStatus,
    elapsed: Duration,
    stdout: String,
    stderr: String,
}

/// A soak run in progress; dropping it kills soak if it is still running.
struct Soak {
    process: Process,
    started: Instant,
    stdout: Captured,
    stderr: Captured,
}

impl Soak {
    fn start(args: &[&str]) -> Soak {
        let mut process = Process::spawn(
            Command::new(SOAK)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        let stdout = process.capture_stdout(Drain::default());
        let stderr = process.capture_stderr(Drain::default());
        Soak { process, started: Instant::now(), stdout, stderr }
    }

    /// Waits for soak to exit; panics (and the drop kills it) if it is still
    /// running after [`DEADLINE`].
    fn finish(mut self) -> Run {
        let left = DEADLINE.saturating_sub(self.started.elapsed());
        let status = self
            .process
            .wait_exit(left)
            .unwrap_or_else(|| panic!("soak still running after {DEADLINE:?}"));
        let elapsed = self.started.elapsed();
        self.stdout.join();
        self.stderr.join();
        Run { status, elapsed, stdout: self.stdout.text(), stderr: self.stderr.text() }
    }
}

fn soak(args: &[&str]) -> Run {
    Soak::start(args).finish()
}

/// A port on which nothing listens, and nothing can take while it lives.
fn closed_port() -> ClosedPort {
    ClosedPort::new().unwrap()
}

/// The stage-7 server on two ports chosen by the OS, without DEBUG logs.
fn stage07() -> Server {
    let binary = workspace_binary("stage07", "stage07");
    let launch = Launch { quiet: true, ..Launch::default() };
    let mut server = Server::spawn_with(&binary, &["--ports", "0,0"], &launch);
    server.wait_for_ports(2);
    server
}

#[test]
fn gives_up_soon_with_few_lines_when_nothing_listens() {
    let closed = closed_port();
    let port = closed.port.to_string();
    let run = soak(&["--ports", &port, "--clients", "8", "--seconds", "30"]);
    assert_eq!(run.status.code(), Some(1), "{run:#?}");
    assert!(run.elapsed < Duration::from_secs(5), "took {:?}: {run:#?}", run.elapsed);
    assert!(run.stderr.lines().count() < 50, "{} stderr lines", run.stderr.lines().count());
    assert!(run.stderr.contains("more errors"), "{run:#?}");
    assert!(run.stdout.contains("soak: FAIL: stopped after"), "{run:#?}");
    assert!(run.stdout.contains("connections     0"), "{run:#?}");
    assert!(
        run.stdout.contains(&format!("soak: no process we can see listens on port {port}")),
        "{run:#?}"
    );
}

#[test]
fn absurd_numbers_are_a_one_line_error_and_status_2() {
    for args in [
        ["--seconds", "18446744073709551615"],
        ["--seconds", "0"],
        ["--clients", "0"],
        ["--clients", "18446744073709551615"],
        ["--ports", "0"],
        ["--ports", "65536"],
        ["--pid", "0"],
    ] {
        let run = soak(&args);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {run:#?}");
        let mut lines = run.stderr.lines();
        let first = lines.next().unwrap_or_default();
        assert!(
            first.starts_with(&format!("soak: {}: '{}'", args[0], args[1])),
            "{args:?}: {first}"
        );
        assert_eq!(lines.next(), Some(""), "{args:?}: one error line, then the usage");
        assert!(run.stderr.contains("Usage: soak"), "{args:?}: {run:#?}");
        assert!(!run.stderr.contains("panicked"), "{args:?}: {run:#?}");
        assert!(run.stdout.is_empty(), "{args:?}: {run:#?}");
    }
}

#[test]
fn a_short_run_against_stage07_passes() {
    let server = stage07();
    let ports = format!("{},{}", server.ports[0], server.ports[1]);
    let pid = server.process.pid().to_string();
    let run = soak(&["--ports", &ports, "--clients", "4", "--seconds", "1", "--pid", &pid]);
    assert!(run.status.success(), "{run:#?}");
    assert!(run.stdout.contains("errors          0"), "{run:#?}");
    assert!(run.stdout.lines().any(|l| l.starts_with("server fds")), "{run:#?}");
    assert!(run.stdout.ends_with("soak: ok\n"), "{run:#?}");
    assert!(!run.stdout.contains("Some("), "the pid is printed as a number: {run:#?}");
}

#[test]
fn finds_the_server_from_its_port_without_pid() {
    let server = stage07();
    let ports = format!("{},{}", server.ports[0], server.ports[1]);
    let run = soak(&["--ports", &ports, "--clients", "4", "--seconds", "1"]);
    assert!(run.status.success(), "{run:#?}");
    let watching = format!(
        "soak: watching pid {}, the process listening on port {}",
        server.process.pid(),
        server.ports[0]
    );
    assert!(run.stdout.starts_with(&watching), "{run:#?}");
    assert!(run.stdout.lines().any(|l| l.starts_with("server fds")), "{run:#?}");
    assert!(run.stdout.ends_with("soak: ok\n"), "{run:#?}");
}

#[test]
fn a_server_killed_mid_run_fails_it_soon_and_quietly() {
    let server = stage07();
    let ports = format!("{},{}", server.ports[0], server.ports[1]);
    let pid = server.process.pid();
    let args = ["--ports", &ports, "--clients", "8", "--seconds", "30", "--pid", &pid.to_string()];
    let soak = Soak::start(&args);
    std::thread::sleep(Duration::from_millis(500));
    drop(server); // kills it and reaps it
    let run = soak.finish();
    assert_eq!(run.status.code(), Some(1), "{run:#?}");
    assert!(run.elapsed < Duration::from_secs(5), "took {:?}: {run:#?}", run.elapsed);
    assert!(run.stderr.lines().count() < 50, "{} stderr lines", run.stderr.lines().count());
    assert!(run.stdout.contains("soak: FAIL: stopped after"), "{run:#?}");
    assert!(
        run.stdout.contains(&format!("soak: FAIL: the server (pid {pid}) is gone")),
        "{run:#?}"
    );
}

/// A wrong server on a free port of 127.0.0.1: each client gets a thread
/// that reads a chunk, sleeps for `delay`, and answers with its reverse.
/// The threads end when their client leaves, or with the test process.
fn slow_server(delay: Duration) -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut client in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buffer = vec![0; 100_000];
                while let Ok(n @ 1..) = client.read(&mut buffer) {
                    std::thread::sleep(delay);
                    let reply = shared::stages::Protocol::Reverse.reply(&buffer[..n]);
                    if client.write_all(&reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn a_very_slow_server_cannot_stretch_the_run() {
    // Each reply takes 4 s: within the 5 s any one reply may take, so the
    // old soak waited for every one of a client's (up to 20) messages.
    let port = slow_server(Duration::from_secs(4)).to_string();
    let run = soak(&["--ports", &port, "--clients", "4", "--seconds", "1", "--seed", "1"]);
    // --seconds, plus soak's stated grace of 3 s, plus start-up.
    let limit = Duration::from_millis(1000 + 3000 + 1500);
    assert!(run.elapsed < limit, "took {:?}, more than {limit:?}: {run:#?}", run.elapsed);
    assert_eq!(run.status.code(), Some(1), "{run:#?}");
    assert!(run.stderr.contains("no reply by the end of the run"), "{run:#?}");
}
