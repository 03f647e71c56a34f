//! xps-top against a real stage-8 server: one line a second with plausible
//! figures, the server found from its port, bad flags refused, and a quiet
//! end when the watched process exits.

use shared::build::workspace_binary;
use shared::capture::{Captured, Drain};
use shared::child::Process;
use shared::server::{Launch, Server};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const XPS_TOP: &str = env!("CARGO_BIN_EXE_xps-top");

/// How long xps-top may take beyond the seconds it was asked to watch.
const SLACK: Duration = Duration::from_secs(3);

/// A quiet stage-8 server on one free port.
fn stage08() -> Server {
    let launch = Launch { quiet: true, ..Launch::default() };
    let binary = workspace_binary("stage08", "stage08");
    let mut server = Server::spawn_with(&binary, &["--ports", "0"], &launch);
    server.wait_for_ports(1);
    server
}

fn xps_top(args: &[&str]) -> Output {
    Command::new(XPS_TOP).args(args).stdin(Stdio::null()).output().expect("run xps-top")
}

/// The figures of one line, `N s: cpu X%, memory M UNIT, F fds`.
fn figures(line: &str) -> Option<(u64, f64, String, usize)> {
    let (second, rest) = line.split_once(" s: cpu ")?;
    let (cpu, rest) = rest.split_once("%, memory ")?;
    let (memory, rest) = rest.split_once(", ")?;
    let fds = rest.strip_suffix(" fds")?;
    Some((second.parse().ok()?, cpu.parse().ok()?, memory.to_string(), fds.parse().ok()?))
}

#[test]
fn prints_one_plausible_line_a_second() {
    let server = stage08();
    let pid = server.process.pid().to_string();
    let out = xps_top(&["--pid", &pid, "--seconds", "2"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two lines:\n{stdout}");
    assert!(lines[0].starts_with(&format!("watching pid {pid} (stage08)")), "{stdout}");
    for (i, line) in lines[1..].iter().enumerate() {
        let (second, cpu, memory, fds) =
            figures(line).unwrap_or_else(|| panic!("unexpected line {line:?}"));
        assert_eq!(second, i as u64 + 1, "{stdout}");
        // No client: the server sleeps in epoll_wait().
        assert!((0.0..20.0).contains(&cpu), "{stdout}");
        assert!(memory.ends_with(" MiB") || memory.ends_with(" KiB"), "{stdout}");
        // stdin/out/err, epoll, the wake-up fd, a listener and its spare.
        assert!((7..100).contains(&fds), "{stdout}");
    }
}

#[test]
fn finds_the_server_from_its_port() {
    let server = stage08();
    let port = server.ports[0].to_string();
    let out = xps_top(&["--port", &port, "--seconds", "1"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.starts_with(&format!("watching pid {} (stage08)", server.process.pid())),
        "{stdout}"
    );
    assert_eq!(stdout.lines().filter_map(figures).count(), 1, "{stdout}");
}

#[test]
fn bad_flags_exit_2_with_the_usage() {
    for args in [
        &[][..],
        &["--pid"],
        &["--pid", "x"],
        &["--port", "0"],
        &["--seconds", "0", "--pid", "1"],
        &["--pid", "1", "--port", "8001"],
        &["--verbose"],
    ] {
        let out = xps_top(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with("xps-top: "), "{args:?}: {stderr}");
        assert!(stderr.lines().nth(2).is_some_and(|l| l.starts_with("Usage:")), "{stderr}");
    }
    let help = xps_top(&["--help"]);
    assert!(help.status.success() && String::from_utf8_lossy(&help.stdout).contains("Usage:"));
}

#[test]
fn nothing_to_watch_is_one_line_and_status_1() {
    // A port nothing listens on: bind one, note it, let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = xps_top(&["--port", &port.to_string(), "--seconds", "1"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("port {port}")), "{stderr}");
}

/// xps-top running without `--seconds`, its stdout read line by line.
struct Watching {
    process: Process,
    stdout: Captured,
}

impl Watching {
    fn start(pid: u32) -> Watching {
        let mut process = Process::spawn(
            Command::new(XPS_TOP)
                .args(["--pid", &pid.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::piped()),
        );
        let stdout = process.capture_stdout(Drain::default());
        Watching { process, stdout }
    }

    /// Waits until xps-top has printed `n` lines in all; the lines so far.
    fn wait_for_lines(&self, n: usize, timeout: Duration) -> Result<Vec<String>, String> {
        let lines = |text: &str| text.lines().map(str::to_string).collect();
        self.stdout.wait_for(timeout, |text| text.lines().count() >= n).map(|text| lines(&text))
    }
}

#[test]
fn ends_with_status_0_when_the_process_exits() {
    let server = stage08();
    let mut watching = Watching::start(server.process.pid());
    watching.wait_for_lines(2, SLACK).unwrap_or_else(|seen| panic!("{seen}"));
    let exited = server.stop(libc::SIGINT, Duration::from_secs(2));
    assert_eq!(exited.status.code(), Some(0));
    let status = watching.process.wait_exit(SLACK);
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let seen = watching.wait_for_lines(3, SLACK).unwrap_or_else(|seen| panic!("{seen}"));
    let last = seen.last().cloned().unwrap_or_default();
    assert!(last.ends_with("(stage08) has exited"), "{seen:?}");
}
