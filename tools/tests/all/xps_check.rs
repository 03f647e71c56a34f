//! xps-check against our own servers (everything passes) and against small
//! wrong servers written here (the right check fails, with the right hint,
//! and the other checks still run).

use shared::build::workspace_binary;
use shared::checks::{CHECKS, Run};
use shared::client::ClosedPort;
use shared::pty::Terminal;
use shared::server::{Launch, Server};
use shared::stages::Protocol;
use shared::upstream::Upstream;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const XPS_CHECK: &str = env!("CARGO_BIN_EXE_xps-check");

/// What a right server replies at stages 6 and 7, which these tests play.
const REVERSE: Protocol = Protocol::Reverse;

/// How many checks xps-check runs: those over TCP only.
fn wire_checks() -> usize {
    CHECKS.iter().filter(|check| matches!(check.run, Run::Wire(_))).count()
}

fn xps_check(ports: &[u16], args: &[&str]) -> Output {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    Command::new(XPS_CHECK)
        .args(["--ports", &ports.join(",")])
        .args(args)
        .output()
        .expect("run xps-check")
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The line of `check` in the output, and the indented lines under it.
fn section<'a>(output: &'a str, check: &str) -> Vec<&'a str> {
    let mut lines = output.lines().skip_while(|line| !line.contains(&format!(" {check} ")));
    let mut section: Vec<&str> = lines.next().into_iter().collect();
    section.extend(lines.take_while(|line| line.starts_with("     ")));
    section
}

fn assert_passed(output: &str, check: &str) {
    let lines = section(output, check);
    assert!(lines.first().is_some_and(|l| l.starts_with("PASS")), "{check} should pass:\n{output}");
}

fn assert_failed_with_hint(output: &str, check: &str, hint: &str) {
    let lines = section(output, check);
    assert!(lines.first().is_some_and(|l| l.starts_with("FAIL")), "{check} should fail:\n{output}");
    assert!(
        lines.iter().any(|l| l.contains("hint:") && l.contains(hint)),
        "{check} should hint '{hint}':\n{output}"
    );
}

#[test]
fn stage_7_passes_every_check() {
    let server = Server::start(&workspace_binary("stage07", "stage07"), 4);
    let out = xps_check(&server.ports, &["--stage", "7"]);
    let output = text(&out);
    assert!(out.status.success(), "{output}");
    // The stall is a note, counted apart from the checks that passed.
    let summary = format!("\n{} passed, 1 note, 0 failed\n", wire_checks() - 1);
    assert!(output.ends_with(&summary), "{output}");
    let note = section(&output, "blocking-send");
    assert!(note[0].starts_with("NOTE"), "{output}");
    assert!(
        note[1].contains("stalls while a client does not read, as in Experiment 1"),
        "{output}"
    );
    assert!(output.contains("the waiting client was served once"), "{output}");
}

/// The course tester's stage-9 check: stage 8 spins with one idle client,
/// so it fails stage 9's idle-cpu (at `--stage 8` the same spin is a note).
#[test]
fn stage_9_fails_a_server_that_spins_when_idle() {
    let server = Server::start(&workspace_binary("stage08", "stage08"), 4);
    let out = xps_check(&server.ports, &["--stage", "9", "--only", "idle-cpu"]);
    let output = text(&out);
    assert_eq!(out.status.code(), Some(1), "{output}");
    assert_failed_with_hint(&output, "idle-cpu", "EPOLLOUT");
    let out = xps_check(&server.ports, &["--stage", "8", "--only", "idle-cpu"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("NOTE idle-cpu"), "{}", text(&out));
}

/// The course tester's stage-10 check, as a bound: stage 9 queues all
/// that a client that never reads sends, so it fails stage 10's
/// memory-bound, with the pipe hint (at `--stage 9` the same growth is a
/// note with the figure). The server's pid is found from its port.
#[test]
fn stage_10_fails_a_server_whose_memory_grows() {
    let server = Server::start(&workspace_binary("stage09", "stage09"), 4);
    let out = xps_check(&server.ports, &["--stage", "10", "--only", "memory-bound"]);
    let output = text(&out);
    assert_eq!(out.status.code(), Some(1), "{output}");
    assert_failed_with_hint(&output, "memory-bound", "xps_pipe_is_writable");
    let out = xps_check(&server.ports, &["--stage", "9", "--only", "memory-bound"]);
    let output = text(&out);
    assert!(out.status.success(), "{output}");
    assert!(output.contains("this stage queues everything"), "{output}");
}

/// Stage 11's proxy checks: stage 11 passes them in front of an upstream
/// the test runs ("yours", so xps-check leaves upstream-down for later,
/// then runs it once the upstream is stopped); stage 10, which writes
/// back on its first port, fails both.
#[test]
fn stage_11_passes_the_proxy_checks_and_stage_10_fails_them() {
    let upstream = Upstream::http(Vec::new());
    let launch = Launch { upstream: Some(upstream.addr()), ..Launch::default() };
    let binary = workspace_binary("stage11", "stage11");
    let mut server = Server::spawn_with(&binary, &["--ports", "0,0"], &launch);
    server.wait_for_ports(2);
    let addr = upstream.addr();
    let both = ["--stage", "11", "--only", "proxy-responses,upstream-down", "--upstream", &addr];
    let out = xps_check(&server.ports, &both);
    let output = text(&out);
    assert!(out.status.success(), "{output}");
    assert_passed(&output, "proxy-responses");
    assert!(output.contains("SKIP upstream-down"), "{output}");

    drop(upstream);
    let only_down = ["--stage", "11", "--only", "upstream-down", "--upstream", &addr];
    let out = xps_check(&server.ports, &only_down);
    assert!(out.status.success(), "{}", text(&out));
    assert_passed(&text(&out), "upstream-down");

    let stage10 = Server::start(&workspace_binary("stage10", "stage10"), 2);
    // Not 3000: a learner's upstream may well be running there.
    let closed_port = ClosedPort::new().unwrap();
    let closed = format!("127.0.0.1:{}", closed_port.port);
    let only_down = ["--stage", "11", "--only", "upstream-down", "--upstream", &closed];
    let out = xps_check(&stage10.ports, &only_down);
    let output = text(&out);
    assert_eq!(out.status.code(), Some(1), "{output}");
    assert_failed_with_hint(&output, "upstream-down", "without sending anything");
}

/// The file checks through the command line: stage 12, serving its own
/// sample, passes both; stage 11, whose second and third ports write back
/// (and so send nothing to a client that sends nothing), fails both; and
/// a sample that differs from what the port sends is named.
#[test]
fn stage_12_passes_the_file_checks_and_stage_11_fails_them() {
    let files = ["--stage", "12", "--only", "file-sample,file-outside", "--timeout", "1"];
    let stage12 = Server::start(&workspace_binary("stage12", "stage12"), 4);
    let out = xps_check(&stage12.ports, &files);
    let output = text(&out);
    assert!(out.status.success(), "{output}");
    assert_passed(&output, "file-sample");
    assert_passed(&output, "file-outside");

    let other = std::env::temp_dir().join(format!("xps-check-sample-{}", std::process::id()));
    std::fs::write(&other, "not the sample\n").unwrap();
    let mut wrong = files.to_vec();
    wrong.extend(["--sample", other.to_str().unwrap()]);
    let out = xps_check(&stage12.ports, &wrong);
    let _ = std::fs::remove_file(&other);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("differs from the sample from byte 0"), "{}", text(&out));

    let stage11 = Server::start(&workspace_binary("stage11", "stage11"), 4);
    let out = xps_check(&stage11.ports, &files);
    let output = text(&out);
    assert_eq!(out.status.code(), Some(1), "{output}");
    assert_failed_with_hint(&output, "file-sample", "sends sample.txt");
    assert_failed_with_hint(&output, "file-outside", "outside public");
}

/// Stage 13's checks through the command line, in front of an upstream the
/// test runs: stage 13 passes them all; stage 12, whose third port
/// refuses a file (closes) and whose fourth writes back, fails
/// `empty-sessions`, with a hint that names the session. No write-back
/// check runs at stage 13: no port writes back.
#[test]
fn stage_13_passes_its_checks_and_stage_12_fails_the_empty_sessions() {
    let upstream = Upstream::http(Vec::new());
    let addr = upstream.addr();
    let launch = Launch { upstream: Some(addr.clone()), ..Launch::default() };
    for (crate_name, passes) in [("stage13", true), ("stage12", false)] {
        // The sample each serves: stage 13's is the default at --stage 13.
        let sample = format!("{}/../{crate_name}/public/sample.txt", env!("CARGO_MANIFEST_DIR"));
        let args = ["--stage", "13", "--upstream", &addr, "--timeout", "1", "--sample", &sample];
        let binary = workspace_binary(crate_name, crate_name);
        let mut server = Server::spawn_with(&binary, &["--ports", "0,0,0,0"], &launch);
        server.wait_for_ports(4);
        let out = xps_check(&server.ports, &args);
        let output = text(&out);
        assert!(output.contains("no port writes back"), "{output}");
        for check in ["proxy-responses", "half-close", "file-sample"] {
            assert_passed(&output, check);
        }
        assert!(output.contains("SKIP upstream-down"), "{output}");
        if passes {
            assert!(out.status.success(), "{output}");
            assert_passed(&output, "empty-sessions");
        } else {
            assert_eq!(out.status.code(), Some(1), "{output}");
            assert_failed_with_hint(&output, "empty-sessions", "session with nothing behind it");
        }
    }
}

/// Every check runs against every stage's own binary in that stage's
/// tests (`stage_tests!`); here only what xps-check adds matters: stage 8's
/// blocking-send passes against stage 8, through the command line.
#[test]
fn stage_8_passes_its_blocking_send() {
    let server = Server::start(&workspace_binary("stage08", "stage08"), 4);
    let out = xps_check(&server.ports, &["--stage", "8", "--only", "blocking-send"]);
    let output = text(&out);
    assert!(out.status.success(), "{output}");
    assert!(output.ends_with("\n1 passed, 0 notes, 0 failed\n"), "{output}");
}

/// How a wrong server answers one chunk it has read: `None` closes.
type Behaviour = fn(&[u8], usize) -> Option<Vec<u8>>;

/// A wrong server on free ports, one thread per client. Dropping it stops
/// the threads that accept; a client's thread ends when its client, an
/// xps-check that has exited by then, has closed the connection.
struct WrongServer {
    ports: Vec<u16>,
    stop: Arc<AtomicBool>,
    accepting: Vec<JoinHandle<()>>,
}

impl Drop for WrongServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for &port in &self.ports {
            // Wakes that port's accept(): the thread sees `stop` and ends.
            let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, port));
        }
        for thread in self.accepting.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Starts a wrong server on `n_ports` free ports.
fn wrong_server(n_ports: usize, behaviour: Behaviour) -> WrongServer {
    let stop = Arc::new(AtomicBool::new(false));
    let mut server =
        WrongServer { ports: Vec::new(), stop: Arc::clone(&stop), accepting: Vec::new() };
    for _ in 0..n_ports {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        server.ports.push(listener.local_addr().unwrap().port());
        let stop = Arc::clone(&stop);
        server.accepting.push(std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(client) = client {
                    std::thread::spawn(move || serve(client, behaviour));
                }
            }
        }));
    }
    server
}

fn serve(mut client: TcpStream, behaviour: Behaviour) {
    let mut buffer = vec![0; 100_000];
    for count in 0.. {
        let n = match client.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        match behaviour(&buffer[..n], count) {
            Some(reply) => {
                if client.write_all(&reply).is_err() {
                    return;
                }
            }
            None => return,
        }
    }
}

fn reverse_everything(chunk: &[u8], _: usize) -> Option<Vec<u8>> {
    Some(chunk.iter().rev().copied().collect())
}

fn correct(chunk: &[u8], _: usize) -> Option<Vec<u8>> {
    Some(REVERSE.reply(chunk))
}

fn close_after_one_reply(chunk: &[u8], count: usize) -> Option<Vec<u8>> {
    (count == 0).then(|| REVERSE.reply(chunk))
}

fn never_answer(_: &[u8], _: usize) -> Option<Vec<u8>> {
    Some(Vec::new())
}

/// Right, but 40 ms late: as a reply sent with two send() calls is, when
/// Nagle's algorithm holds the second back for the client's delayed ACK.
fn answer_40_ms_late(chunk: &[u8], _: usize) -> Option<Vec<u8>> {
    std::thread::sleep(Duration::from_millis(40));
    Some(REVERSE.reply(chunk))
}

fn add_a_byte(chunk: &[u8], _: usize) -> Option<Vec<u8>> {
    let mut reply = REVERSE.reply(chunk);
    reply.push(0);
    Some(reply)
}

fn close_on_first_read(_: &[u8], _: usize) -> Option<Vec<u8>> {
    None
}

#[test]
fn a_server_that_reverses_the_newline_too() {
    let server = wrong_server(4, reverse_everything);
    let out = xps_check(&server.ports, &["--stage", "6", "--timeout", "2"]);
    let output = text(&out);
    assert_eq!(out.status.code(), Some(1), "{output}");
    assert_failed_with_hint(&output, "every-port", "reply has the newline first");
    assert_passed(&output, "no-newline");
    // However TCP splits the large message, a \n comes back before the end.
    assert_failed_with_hint(&output, "large-message", "includes the trailing \\n");
    assert!(output.lines().last().unwrap().ends_with("failed"), "{output}");
    assert_eq!(
        output.lines().filter(|l| l.starts_with("PASS") || l.starts_with("FAIL")).count(),
        wire_checks()
    );
}

#[test]
fn a_server_that_closes_after_one_reply() {
    let server = wrong_server(4, close_after_one_reply);
    // The checks asserted here, not the slow ones (CPU, memory, floods)
    // that other tests cover: a server that closes fails them all alike.
    let only = "every-port,no-newline,ten-clients,large-message";
    let out = xps_check(&server.ports, &["--stage", "6", "--timeout", "2", "--only", only]);
    let output = text(&out);
    assert_eq!(out.status.code(), Some(1), "{output}");
    assert_failed_with_hint(&output, "every-port", "closed the connection");
    assert_passed(&output, "no-newline");
    assert_passed(&output, "ten-clients");
}

/// How many chunks `answer_ten_then_nothing` has read, over all its
/// clients (only one test uses it).
static CHUNKS_READ: AtomicUsize = AtomicUsize::new(0);

/// Right for the first ten messages, then silent: a server that hangs.
fn answer_ten_then_nothing(chunk: &[u8], _: usize) -> Option<Vec<u8>> {
    let answered = CHUNKS_READ.fetch_add(1, Ordering::SeqCst) < 10;
    Some(if answered { REVERSE.reply(chunk) } else { Vec::new() })
}

#[test]
fn a_server_that_never_answers_stops_the_run_soon() {
    let server = wrong_server(4, never_answer);
    let started = Instant::now();
    // The default --timeout: a whole run used to take about 28 s.
    let out = xps_check(&server.ports, &["--stage", "7"]);
    let took = started.elapsed();
    let output = text(&out);
    assert_eq!(out.status.code(), Some(1), "{output}");
    assert_failed_with_hint(&output, "every-port", "no reply within");
    assert!(
        output.contains("stopped: the server has not sent a single byte since the run began"),
        "{output}"
    );
    let summary = format!("\n0 passed, 0 notes, 1 failed, {} not run\n", wire_checks() - 1);
    assert!(output.ends_with(&summary), "{output}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn a_server_that_stops_answering_stops_the_run_after_two_silent_checks() {
    let server = wrong_server(4, answer_ten_then_nothing);
    let out = xps_check(&server.ports, &["--stage", "6", "--timeout", "0.5", "--json"]);
    let output = text(&out);
    assert_eq!(out.status.code(), Some(1), "{output}");
    // every-port, no-newline and half of lone-newline are answered;
    // random-strings and ten-clients hear nothing, and the run stops.
    let results: Vec<&str> =
        output.lines().filter_map(|l| l.split("\"result\":\"").nth(1)?.split('"').next()).collect();
    assert_eq!(results, ["pass", "pass", "fail", "fail", "fail"], "{output}");
    let last = output.lines().last().unwrap_or_default();
    let summary = format!(
        "{{\"passed\":2,\"notes\":0,\"failed\":3,\"not_run\":{},\"stopped\":",
        wire_checks() - 5
    );
    assert!(last.starts_with(&summary), "{output}");
    assert!(last.contains("in the last two checks"), "{output}");
}

#[test]
fn nothing_listening_is_one_line_and_status_1() {
    // Ports nothing listens on, and nothing can take while we use them.
    let (closed_a, closed_b) = (ClosedPort::new().unwrap(), ClosedPort::new().unwrap());
    let (a, b) = (closed_a.port, closed_b.port);
    let out = xps_check(&[a], &["--stage", "7"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(text(&out).lines().count(), 1, "only the 'checking' line: {out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "xps-check: nothing is listening on 127.0.0.1:{a} (connection refused): start your \
             server first, or pass --ports\n"
        )
    );
    let out = xps_check(&[a, b], &["--stage", "6", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("on 127.0.0.1 port {a} or {b} (connection")), "{stderr}");
}

#[test]
fn a_note_is_counted_apart_in_json() {
    // One thread per client: this server serves others while one client
    // does not read, which stage 7 notes as going beyond the stage.
    let server = wrong_server(2, correct);
    let out = xps_check(&server.ports, &["--stage", "7", "--only", "blocking-send", "--json"]);
    let output = text(&out);
    assert!(out.status.success(), "{output}");
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines.len(), 2, "{output}");
    assert!(lines[0].starts_with("{\"check\":\"blocking-send\",\"result\":\"note\""), "{output}");
    assert!(lines[0].contains("did not stall"), "{output}");
    assert_eq!(lines[1], "{\"passed\":0,\"notes\":1,\"failed\":0,\"not_run\":0}");
}

#[test]
fn a_server_that_answers_on_one_port_only() {
    let server = wrong_server(1, correct);
    let mut ports = server.ports.clone();
    // Three ports that nothing listens on, kept so while the run lasts.
    let closed: Vec<ClosedPort> = (0..3).map(|_| ClosedPort::new().unwrap()).collect();
    ports.extend(closed.iter().map(|closed| closed.port));
    let only = "every-port,no-newline,random-strings,ten-clients,large-message";
    let out = xps_check(&ports, &["--stage", "6", "--timeout", "0.5", "--only", only]);
    let output = text(&out);
    assert_eq!(out.status.code(), Some(1), "{output}");
    assert_failed_with_hint(&output, "every-port", "listening on port");
    assert_failed_with_hint(&output, "random-strings", "listening on port");
    assert_passed(&output, "no-newline");
    assert_passed(&output, "ten-clients");
    assert_passed(&output, "large-message");
}

#[test]
fn bad_flags_exit_2() {
    let missing = (shared::stages::STAGES.last().map_or(0, |stage| stage.number) + 1).to_string();
    for args in [
        &[][..],
        &["--stage", missing.as_str()],
        &["--stage", "7", "--bogus"],
        &["--stage", "7", "--only", "nope"],
    ] {
        let out = Command::new(XPS_CHECK).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
}

#[test]
fn a_slow_server_runs_out_of_time() {
    let server = wrong_server(4, answer_40_ms_late);
    let started = Instant::now();
    let out =
        xps_check(&server.ports, &["--stage", "6", "--only", "random-strings", "--deadline", "1"]);
    let output = text(&out);
    assert_eq!(out.status.code(), Some(1), "{output}");
    assert_failed_with_hint(&output, "random-strings", "TCP_NODELAY");
    assert!(output.contains(" of 4000 replies in 1 s (about "), "{output}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[test]
fn stage_7_does_not_pass_a_server_that_never_accepts() {
    // The kernel completes the connections, nobody reads them.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let out = xps_check(&[port], &["--stage", "7", "--only", "blocking-send", "--timeout", "0.5"]);
    let output = text(&out);
    assert_eq!(out.status.code(), Some(1), "{output}");
    assert_failed_with_hint(&output, "blocking-send", "the waiting client was never served");
    drop(listener);
}

#[test]
fn stage_7_does_not_pass_a_server_that_drops_the_flooder() {
    let server = wrong_server(4, close_on_first_read);
    let out =
        xps_check(&server.ports, &["--stage", "7", "--only", "blocking-send", "--timeout", "0.5"]);
    let output = text(&out);
    assert_eq!(out.status.code(), Some(1), "{output}");
    assert!(output.contains("the experiment could not run"), "{output}");
    assert_failed_with_hint(&output, "blocking-send", "is still a client");
}

#[test]
fn stage_8_fails_a_server_that_stalls() {
    let server = Server::start(&workspace_binary("stage07", "stage07"), 4);
    let out =
        xps_check(&server.ports, &["--stage", "8", "--only", "blocking-send", "--timeout", "0.5"]);
    let output = text(&out);
    assert_eq!(out.status.code(), Some(1), "{output}");
    assert_failed_with_hint(&output, "blocking-send", "non-blocking");
}

#[test]
fn a_server_that_adds_a_byte_to_each_reply() {
    let server = wrong_server(4, add_a_byte);
    let only = "no-newline,ten-clients,large-message,interleave";
    let out = xps_check(&server.ports, &["--stage", "6", "--timeout", "2", "--only", only]);
    let output = text(&out);
    assert_eq!(out.status.code(), Some(1), "{output}");
    for check in ["no-newline", "ten-clients", "large-message"] {
        assert_failed_with_hint(&output, check, "add a byte");
    }
    assert!(output.contains("got 1 extra bytes after the reply"), "{output}");
}

#[test]
fn flags_say_what_they_take() {
    let out = Command::new(XPS_CHECK).args(["--stage", "7", "--timeout", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(
            "xps-check: --timeout: '0' is not a number of seconds above 0 and at most 60\n"
        ),
        "{stderr}"
    );

    let out = Command::new(XPS_CHECK).arg("--help").output().unwrap();
    let help = text(&out);
    let usage: Vec<&str> = help.lines().take_while(|line| !line.is_empty()).collect();
    for flag in ["--stage", "--host", "--ports", "--only", "--timeout", "--deadline", "--json"] {
        assert!(usage.iter().any(|l| l.contains(flag)), "{flag} missing from {usage:#?}");
    }
    assert!(usage.iter().any(|l| l.contains("xps-check --list")), "{usage:#?}");
}

#[test]
fn list_works_without_a_stage() {
    let out = Command::new(XPS_CHECK).arg("--list").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out).starts_with("every-port"), "{}", text(&out));
    assert!(text(&out).contains("blocking-send"), "{}", text(&out));
}

#[test]
fn localhost_works() {
    // Whether "localhost" resolves to ::1 first depends on the machine;
    // here it must at least reach a server on 127.0.0.1.
    let server = wrong_server(4, correct);
    let out =
        xps_check(&server.ports, &["--stage", "6", "--host", "localhost", "--only", "every-port"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn colours_only_on_a_terminal_and_never_with_no_color() {
    let server = wrong_server(1, correct);
    let port = server.ports[0].to_string();
    let args = ["--stage", "7", "--ports", &port, "--only", "every-port"];
    let green_pass = "\x1b[32mPASS\x1b[0m";
    // Through `env`, so that NO_COLOR is set (or unset) for xps-check only.
    let screen = |no_color: &str| {
        let env: Vec<&str> = [no_color, XPS_CHECK].into_iter().chain(args).collect();
        let mut terminal = Terminal::spawn(Path::new("/usr/bin/env"), &env);
        let status = terminal.wait_exit(Duration::from_secs(10));
        terminal.read_to_end(Duration::from_secs(2));
        assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", terminal.screen());
        terminal.screen()
    };
    let coloured = screen("--unset=NO_COLOR");
    assert!(coloured.contains(green_pass), "{coloured:?}");
    let plain = screen("NO_COLOR=1");
    assert!(plain.contains("PASS every-port") && !plain.contains('\x1b'), "{plain:?}");
    // Not a terminal: no colour either.
    let piped = text(&xps_check(&server.ports, &["--stage", "7", "--only", "every-port"]));
    assert!(!piped.contains('\x1b'), "{piped:?}");
}

/// `--only` takes a list: just those checks run, in the list's order, and
/// a name that is not a check is refused with the names there are.
#[test]
fn only_takes_a_list_of_checks() {
    let server = Server::start(&workspace_binary("stage07", "stage07"), 4);
    let out = xps_check(&server.ports, &["--stage", "7", "--only", "lone-newline,every-port"]);
    let output = text(&out);
    assert!(out.status.success(), "{output}");
    let ran: Vec<&str> = output
        .lines()
        .filter(|l| l.starts_with("PASS"))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(ran, ["every-port", "lone-newline"], "{output}");
    let out = xps_check(&server.ports, &["--stage", "7", "--only", "every-port,nope"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("xps-check: no check named 'nope'; there are: every-port,"),
        "{stderr}"
    );
}
