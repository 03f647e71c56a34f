//! The book's recorded outputs are real: every transcript the book shows
//! (server logs, `nc` sessions, `--help`, a test run) is a file under
//! `book/src/` that this test produces again from the current binaries and
//! compares with what is committed. A stale file fails the test.
//!
//! To rewrite the files after changing what a stage prints:
//!
//! ```text
//! XPS_BLESS=1 cargo test -p shared --features book-outputs --test book_outputs
//! ```
//!
//! It runs only with the `book-outputs` feature (see `shared/Cargo.toml`):
//! CI runs it beside the book's build, and the README's `cargo test` does
//! not, to stay within its time.
//!
//! Each file starts with the command a learner would type (`$ ...`), then
//! what it printed. What varies from run to run is normalised in both the
//! recording and the comparison: the time at the start of each log line
//! becomes `10:00:00.000`, the ports the OS picked become 8001, 8002, ...
//! in the order the server announced them, and file descriptor numbers are
//! shifted so the first one the log names is 4 (the first free fd after
//! stdin, stdout, stderr and the epoll fd when started from a terminal).
//!
//! The servers run with `XPS_DEBUG=1` (the `Server` helper always sets it);
//! a recording of a run without it drops the DEBUG lines, which is exactly
//! what the logger does when `XPS_DEBUG` is unset.

use shared::build::workspace_binary;
use shared::child::Process;
use shared::client::{Client, ClosedPort, ReplyEnd};
use shared::pty::Terminal;
use shared::sender::{Flood, longest_stall};
use shared::server::{Launch, Server};
use shared::units::format_bytes;
use shared::upstream::Upstream;
use shared::wait::wait_until;
use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long any awaited log line may take.
const LOG_WAIT: Duration = Duration::from_secs(5);

/// How long a stopped server may take to exit.
const EXIT_WAIT: Duration = Duration::from_secs(2);

/// How long building the two stages may take when they are not built yet.
const BUILD_WAIT: Duration = Duration::from_secs(300);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn book_src() -> PathBuf {
    workspace_root().join("book/src")
}

/// Runs `cargo` with `args` at the workspace root, killing it if it takes
/// longer than `limit`. Returns its stdout.
fn run_cargo(args: &[&str], limit: Duration) -> String {
    // Cargo tells the tests it runs where it is; fall back to the one that
    // compiled this file.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let out_path = std::env::temp_dir().join(format!(
        "xps-book-cargo-{}-{}.out",
        std::process::id(),
        args.join("_").replace(['/', ' '], "_")
    ));
    let err_path = out_path.with_extension("err");
    // Files, not pipes: a pipe nobody reads while we wait could fill up.
    let out_file = fs::File::create(&out_path).expect("temporary file for cargo's output");
    let err_file = fs::File::create(&err_path).expect("temporary file for cargo's errors");
    let mut cargo = Process::spawn(
        Command::new(cargo)
            .args(args)
            .current_dir(workspace_root())
            .stdin(Stdio::null())
            .stdout(out_file)
            .stderr(err_file),
    );
    // Dropped by the panic, a cargo still running is killed.
    let status = cargo.wait_exit(limit);
    if status.is_none() {
        panic!("cargo {args:?} took longer than {limit:?}");
    }
    let stdout = fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = fs::read_to_string(&err_path).unwrap_or_default();
    let _ = fs::remove_file(&out_path);
    let _ = fs::remove_file(&err_path);
    assert!(status.is_some_and(|s| s.success()), "cargo {args:?} failed:\n{stdout}\n{stderr}");
    stdout
}

/// A stage binary, built if needed (a no-op after a workspace `cargo test`):
/// a test in the `shared` crate cannot use `CARGO_BIN_EXE_stage07`.
fn stage_binary(stage: &str) -> PathBuf {
    workspace_binary(stage, stage)
}

// ---------------------------------------------------------------------
// Normalising what varies
// ---------------------------------------------------------------------

/// The fixed time every log line shows in a recording.
const TIME: &str = "10:00:00.000";

/// True if `s` starts with a log timestamp `HH:MM:SS.mmm `.
fn starts_with_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() > 13
        && [0, 1, 3, 4, 6, 7, 9, 10, 11].iter().all(|&i| b[i].is_ascii_digit())
        && b[2] == b':'
        && b[5] == b':'
        && b[8] == b'.'
        && b[12] == b' '
}

/// Replaces every whole number in `line` for which `map` has a value.
fn map_numbers(line: &str, map: impl Fn(&str, &str) -> Option<String>) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find(|c: char| c.is_ascii_digit()) {
        let (before, from) = rest.split_at(start);
        let end = from.find(|c: char| !c.is_ascii_digit()).unwrap_or(from.len());
        let (number, after) = from.split_at(end);
        out.push_str(before);
        match map(before, number) {
            Some(replacement) => out.push_str(&replacement),
            None => out.push_str(number),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Normalises a server log: times, OS-chosen ports, fd numbers.
fn normalise_log(log: &str, ports: &[u16]) -> String {
    let first_fd: Option<i64> = log.lines().find_map(|line| {
        let at = line.find("fd ")? + 3;
        let digits: String = line[at..].chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    });
    let fd_shift = first_fd.map_or(0, |fd| 4 - fd);
    let mut out = String::new();
    for line in log.lines() {
        let line = if starts_with_time(line) {
            format!("{TIME}{}", &line[12..])
        } else {
            line.to_string()
        };
        let line = map_numbers(&line, |before, number| {
            if let Some(i) = ports.iter().position(|p| p.to_string() == number) {
                return Some((8001 + i).to_string());
            }
            if before.ends_with("fd ") {
                let fd: i64 = number.parse().ok()?;
                return Some((fd + fd_shift).to_string());
            }
            None
        });
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The log without its DEBUG lines: what the server prints when
/// `XPS_DEBUG` is not set.
fn without_debug(log: &str) -> String {
    log.lines().filter(|line| !line.contains("[DEBUG]")).map(|line| format!("{line}\n")).collect()
}

// ---------------------------------------------------------------------
// Driving a server
// ---------------------------------------------------------------------

/// The line the loop prints each time it goes back to sleep.
const IDLE: &str = "xps_loop_run() : epoll wait";

fn idle_count(server: &Server) -> usize {
    server.stdout().lines().filter(|line| line.ends_with(IDLE)).count()
}

/// Waits until the server has finished reacting to what we just did: it
/// has gone back to `epoll_wait()` at least once more than `before`, and
/// that is the last thing it printed.
fn settle(server: &Server, before: usize) {
    let settled = wait_until(LOG_WAIT, || {
        let log = server.stdout();
        let idle = log.lines().filter(|line| line.ends_with(IDLE)).count();
        idle > before && log.lines().last().is_some_and(|line| line.ends_with(IDLE))
    });
    assert!(settled, "the server did not go back to waiting:\n{}", server.stdout());
}

/// Waits until the server is asleep in `epoll_wait()`, as the kernel says
/// in `/proc/PID/wchan` (its log says so a moment before it gets there).
/// Gives up quietly after [`LOG_WAIT`] where the kernel does not say.
fn wait_asleep(server: &Server) {
    let wchan = format!("/proc/{}/wchan", server.process.pid());
    wait_until(LOG_WAIT, || fs::read_to_string(&wchan).is_ok_and(|f| f.contains("epoll")));
}

/// Does `action` and waits until the server is idle again.
fn step<T>(server: &Server, action: impl FnOnce() -> T) -> T {
    let before = idle_count(server);
    let result = action();
    settle(server, before);
    result
}

/// An `nc` session as the learner sees it: each line typed, then the
/// server's reply.
struct NcSession {
    client: Client,
    transcript: String,
}

impl NcSession {
    fn open(server: &Server, port_index: usize) -> NcSession {
        let port = server.ports[port_index];
        let client = step(server, || Client::connect(port));
        NcSession { client, transcript: format!("$ nc 127.0.0.1 {}\n", 8001 + port_index) }
    }

    fn say(&mut self, server: &Server, line: &str) {
        let message = format!("{line}\n");
        let reply = step(server, || self.client.round_trip(message.as_bytes()));
        self.transcript.push_str(&message);
        self.transcript.push_str(&String::from_utf8_lossy(&reply));
    }

    fn close(self, server: &Server) -> String {
        let NcSession { client, transcript } = self;
        step(server, || drop(client));
        transcript
    }
}

/// Starts `stage` on four OS-chosen ports and waits until it is idle.
/// Its ports are listed in the order the log announced them, which is the
/// order the recordings number them 8001, 8002, ...
fn start(stage: &str) -> Server {
    let mut server = Server::start(&stage_binary(stage), 4);
    let announced = server.wait_for_count("Server listening on port", 4, LOG_WAIT);
    assert!(announced, "the ports were not announced:\n{}", server.stdout());
    server.ports = server.announced_ports();
    settle(&server, 0);
    server
}

fn recording(command: &str, body: &str) -> String {
    format!("$ {command}\n{body}")
}

/// The milestone session, the same for both stages: two clients on two
/// ports, then Ctrl+C. Returns (server log, first client's nc session).
fn milestone_session(stage: &str) -> (String, String) {
    let server = start(stage);
    let mut first = NcSession::open(&server, 0);
    first.say(&server, "hello");
    first.say(&server, "Rust is fun");
    let mut second = NcSession::open(&server, 1);
    second.say(&server, "racecar? no: level");
    let _ = second.close(&server);
    let first = first.close(&server);
    let ports = server.ports.clone();
    let exited = server.stop(libc::SIGINT, EXIT_WAIT);
    (normalise_log(&exited.stdout, &ports), first)
}

// ---------------------------------------------------------------------
// The recordings
// ---------------------------------------------------------------------

fn setup_help() -> String {
    let out = Command::new(stage_binary("stage07"))
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .expect("run stage07 --help");
    recording("cargo run -p stage07 -- --help", &String::from_utf8_lossy(&out.stdout))
}

fn stage06_milestone_server() -> String {
    let (log, _) = milestone_session("stage06");
    recording("cargo run -p stage06", &without_debug(&log))
}

fn stage06_milestone_nc() -> String {
    milestone_session("stage06").1
}

fn stage07_milestone_server() -> String {
    let (log, _) = milestone_session("stage07");
    recording("cargo run -p stage07", &without_debug(&log))
}

fn stage07_milestone_nc() -> String {
    milestone_session("stage07").1
}

/// One client says hello and leaves, with every DEBUG line.
fn one_client_debug(stage: &str) -> String {
    let server = start(stage);
    let mut client = NcSession::open(&server, 0);
    client.say(&server, "hello");
    let _ = client.close(&server);
    let ports = server.ports.clone();
    let log = server.stop(libc::SIGKILL, EXIT_WAIT).stdout;
    recording(&format!("XPS_DEBUG=1 cargo run -p {stage}"), &normalise_log(&log, &ports))
}

fn stage06_debug() -> String {
    one_client_debug("stage06")
}

fn stage07_debug() -> String {
    one_client_debug("stage07")
}

/// Ctrl+C with two clients still connected, with every DEBUG line, from
/// the signal on.
fn stage07_shutdown() -> String {
    let server = start("stage07");
    let mut first = NcSession::open(&server, 0);
    first.say(&server, "hello");
    let mut second = NcSession::open(&server, 2);
    second.say(&server, "bye");
    let before = server.stdout().lines().count();
    let ports = server.ports.clone();
    // The recording starts with the `epoll wait` the loop prints again
    // when the signal interrupts its sleep; a signal that came a moment
    // earlier, on a busy machine, would find it still awake.
    wait_asleep(&server);
    let exited = server.stop(libc::SIGINT, EXIT_WAIT);
    assert_eq!(exited.status.code(), Some(0), "{}", exited.stdout);
    let log = normalise_log(&exited.stdout, &ports);
    let tail: String = log.lines().skip(before).map(|line| format!("{line}\n")).collect();
    drop((first, second));
    recording("XPS_DEBUG=1 cargo run -p stage07   # then Ctrl+C", &tail)
}

/// Milestone 1: the loop's own unit tests, run by cargo.
fn stage07_milestone1() -> String {
    let stdout = run_cargo(&["test", "-p", "stage07", "--bin", "stage07", "xps_loop"], BUILD_WAIT);
    // Threads finish in any order, and the summary's time varies. The
    // tests that check a wrong attach or detach fails make the logger print
    // ERROR lines (libtest does not capture them), at any point and with
    // whatever fd numbers the tests got: the book mentions them, the
    // recording leaves them out.
    let is_test = |line: &&str| line.starts_with("test ") && line.contains(" ... ");
    let mut tests: Vec<&str> = stdout.lines().filter(is_test).collect();
    tests.sort_unstable();
    let mut body = String::new();
    for line in stdout.lines() {
        if is_test(&line) || starts_with_time(line) {
            continue;
        }
        if line.starts_with("running ") {
            body.push_str(line);
            body.push('\n');
            for test in &tests {
                body.push_str(test);
                body.push('\n');
            }
            continue;
        }
        match line.find("; finished in ") {
            Some(at) => body.push_str(&format!("{}; finished in 0.01s", &line[..at])),
            None => body.push_str(line),
        }
        body.push('\n');
    }
    recording("cargo test -p stage07 --bin stage07 xps_loop", &body)
}

/// Experiment 1 from the sender's side: what it prints on stderr while it
/// floods stage 7 from a pipe, until it has been stalled for 2 s. Byte
/// counts and rates differ from run to run: see `shape`.
fn sender_stall() -> String {
    let server = start("stage07");
    let mut sender = Flood::start(&workspace_binary("tools", "sender"), server.ports[0]);
    let seen = sender.read_until_stalled_for(2, Duration::from_secs(20));
    assert!(longest_stall(&seen) >= Some(2), "sender never stalled:\n{seen}");
    recording("cargo run -p tools --bin sender < huge_file.dat", &seen)
}

/// The sender typed at, on a terminal, against a stage-7 server: two lines,
/// then Ctrl+D (which a terminal does not echo).
fn sender_interactive() -> String {
    const PROMPT: &str = "Enter message to send: ";
    let server = start("stage07");
    let port = server.ports[0].to_string();
    let mut terminal = Terminal::spawn(&workspace_binary("tools", "sender"), &["--port", &port]);
    for (typed, line) in ["hello", "Rust is fun"].into_iter().enumerate() {
        assert!(terminal.read_until_seen(PROMPT, typed + 1, LOG_WAIT), "{}", terminal.screen());
        terminal.type_line(line);
        // One line at a time, as a person types: the next is typed only
        // once the server has printed this one.
        let printed = format!("client: {line}");
        assert!(server.wait_for_count(&printed, 1, LOG_WAIT), "{}", server.stdout());
    }
    assert!(terminal.read_until_seen(PROMPT, 3, LOG_WAIT), "{}", terminal.screen());
    terminal.end_input();
    let status = terminal.wait_exit(EXIT_WAIT);
    terminal.read_to_end(EXIT_WAIT);
    assert!(status.is_some_and(|s| s.success()), "{status:?}: {}", terminal.screen());
    recording("cargo run -p tools --bin sender", &terminal.screen())
}

/// A recording with what varies masked, for outputs whose numbers vary
/// (bytes sent before a stall, rates): each number becomes `#` and each
/// size unit `U`. The committed file holds a real run.
fn shape(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| {
            let mut masked = String::new();
            for c in line.chars() {
                if c.is_ascii_digit() || c == '.' {
                    if !masked.ends_with('#') {
                        masked.push('#');
                    }
                } else {
                    masked.push(c);
                }
            }
            ["GiB", "MiB", "KiB", "# B"].iter().fold(masked, |line, unit| {
                line.replace(unit, if *unit == "# B" { "# U" } else { "U" })
            })
        })
        .collect()
}

/// True if `fresh` reads like `committed`: each of its lines has the shape
/// of some committed line, and both end with a line of the same shape. How
/// many progress lines come before a stall, and whether the stall is
/// reported at every second, depend on timing; a changed message does not.
fn same_shape(committed: &str, fresh: &str) -> bool {
    let (committed, fresh) = (shape(committed), shape(fresh));
    fresh.iter().all(|line| committed.contains(line)) && committed.last() == fresh.last()
}

/// Recordings compared by [`same_shape`] rather than byte for byte.
const VARYING: &[&str] = &[
    "tools/sender-stall.txt",
    "stage08/milestone-server.txt",
    "stage08/milestone-sender.txt",
    "stage08/experiment1-top.txt",
    "stage08/experiment2-top.txt",
    "stage09/milestone-top.txt",
    "stage10/before-top.txt",
    "stage10/before-sender.txt",
    "stage10/after-top.txt",
    "stage10/after-sender.txt",
    "stage11/never-reads-top.txt",
];

// ---------------------------------------------------------------------
// Stage 8: a server that never waits, and what that costs
// ---------------------------------------------------------------------

/// The stage-8 recordings keep a server spinning or flooding; the one that
/// measures CPU must run alone, or it would measure the others. The rest
/// may run side by side.
static STAGE08: RwLock<()> = RwLock::new(());

/// For the recording that measures CPU: no other stage-8 recording runs.
fn stage08_alone() -> RwLockWriteGuard<'static, ()> {
    STAGE08.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// For the others: they may run together, but not beside the CPU one.
fn stage08_shared() -> RwLockReadGuard<'static, ()> {
    STAGE08.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts `stage` on four OS-chosen ports without DEBUG lines (stage 8
/// logs DEBUG lines without pause while a client is connected), keeping
/// the `client:` lines unless `skip_messages`. Ports are listed in the
/// order the log announced them.
fn start_quiet(stage: &str, skip_messages: bool) -> Server {
    let launch = Launch { quiet: true, skip_messages, ..Launch::default() };
    let mut server = Server::spawn_with(&stage_binary(stage), &["--ports", "0,0,0,0"], &launch);
    server.wait_for_ports(4);
    let announced = server.wait_for_count("Server listening on port", 4, LOG_WAIT);
    assert!(announced, "the ports were not announced:\n{}", server.stdout());
    server.ports = server.announced_ports();
    server
}

/// A client on its own thread that sends without ever reading, until it
/// has sent `target` bytes or is told to stop; the socket stays open until
/// the `Flooder` is dropped. What it sends is text with one byte in 4096
/// that is not UTF-8: a debug build reverses such chunks byte by byte,
/// several times faster than character by character.
struct Flooder {
    sent: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<TcpStream>>,
    stream: Option<TcpStream>,
}

impl Flooder {
    fn start(port: u16, target: usize) -> Flooder {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect the flooder");
        // A bounded wait per send, so that a stop request is noticed.
        stream.set_write_timeout(Some(Duration::from_millis(50))).expect("SO_SNDTIMEO");
        let (sent, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let (count, quit) = (Arc::clone(&sent), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut chunk = vec![b'x'; 64 * 1024];
            chunk.iter_mut().step_by(4096).for_each(|byte| *byte = 0xff);
            let mut writer = &stream;
            loop {
                let left = target.saturating_sub(count.load(Ordering::Relaxed));
                if left == 0 || quit.load(Ordering::Relaxed) {
                    break;
                }
                match writer.write(&chunk[..left.min(chunk.len())]) {
                    Ok(n) => {
                        count.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(err)
                        if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => break,
                }
            }
            stream
        });
        Flooder { sent, stop, thread: Some(thread), stream: None }
    }

    fn sent(&self) -> usize {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops sending; the connection stays open.
    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            self.stream = thread.join().ok();
        }
    }
}

impl Drop for Flooder {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Waits until `server`'s stdout has not grown for `quiet` (it has read
/// and printed all there was to read).
fn wait_until_log_stops(server: &Server, quiet: Duration) -> bool {
    let mut last = (server.stdout_bytes().len(), std::time::Instant::now());
    wait_until(LOG_WAIT, || {
        let len = server.stdout_bytes().len();
        if len != last.0 {
            last = (len, std::time::Instant::now());
        }
        last.1.elapsed() >= quiet
    })
}

/// True for a `client:` line of the flood: only `x`s and `\xff`s.
fn is_flood_line(line: &str) -> bool {
    line.strip_prefix("client: ")
        .is_some_and(|message| message.replace("\\xff", "").bytes().all(|b| b == b'x'))
}

/// Replaces each run of the flood's `client:` lines (each up to 100000
/// bytes of `x`s) by one line saying how many were left out.
fn fold_flood(log: &str) -> String {
    let mut out = String::new();
    let mut run: Vec<&str> = Vec::new();
    let flush = |run: &mut Vec<&str>, out: &mut String| {
        if !run.is_empty() {
            // Each `\xff` in a line is one byte the client sent.
            let bytes: usize = run
                .iter()
                .map(|line| line.len() - "client: ".len() - 3 * line.matches("\\xff").count())
                .sum();
            let what = format!("{} lines, {}", run.len(), format_bytes(bytes as u64));
            out.push_str(&format!("[the flood's client: lines, left out here: {what}]\n"));
            run.clear();
        }
    };
    for line in log.lines() {
        if is_flood_line(line) {
            run.push(line);
        } else {
            flush(&mut run, &mut out);
            out.push_str(line);
            out.push('\n');
        }
    }
    flush(&mut run, &mut out);
    out
}

/// The milestone, both of its files from one run: stage 7's Experiment 1
/// again. A client sends 16 MiB to port 8001 and never reads; then `nc`
/// on port 8002 says hello and is answered; it leaves, and Ctrl+C stops
/// the server with the flooder still connected. (server log, nc session)
fn stage08_milestone() -> Vec<String> {
    let _shared = stage08_shared();
    let server = start_quiet("stage08", false);
    let mut flooder = Flooder::start(server.ports[0], 16 << 20);
    let flooded = wait_until(Duration::from_secs(20), || flooder.sent() >= 16 << 20);
    assert!(flooded, "the flood stalled at {} bytes", flooder.sent());
    // Stage 7 stops reading at about 9 MiB. Let stage 8 read the rest
    // of the 16 MiB before the bystander comes, so the log is in order.
    flooder.halt();
    assert!(wait_until_log_stops(&server, Duration::from_millis(300)), "the log never settled");

    let mut bystander = Client::connect(server.ports[1]);
    let reply = bystander.round_trip(b"hello\n");
    assert_eq!(reply, b"olleh\n");
    let nc = format!("$ nc 127.0.0.1 8002\nhello\n{}", String::from_utf8_lossy(&reply));
    drop(bystander);
    let left = server.wait_for_count("peer closed connection", 1, LOG_WAIT);
    assert!(left, "the bystander's leaving was not logged:\n{}", server.stdout());
    let ports = server.ports.clone();
    let exited = server.stop(libc::SIGINT, EXIT_WAIT);
    assert_eq!(exited.status.code(), Some(0));
    drop(flooder);
    let log = fold_flood(&normalise_log(&exited.stdout, &ports));
    vec![recording("cargo run -p stage08", &log), nc]
}

/// The milestone from the sender's side: the sender streams into stage 8
/// for two seconds and never stalls, where stage 7 stopped it after about
/// 9 MiB (`tools/sender-stall.txt`).
fn stage08_milestone_sender() -> String {
    let _shared = stage08_shared();
    let server = start_quiet("stage08", true);
    let mut sender = Flood::start(&workspace_binary("tools", "sender"), server.ports[0]);
    let seen = sender.read_until("(2 s)", Duration::from_secs(10));
    assert!(seen.contains("(2 s)"), "the sender did not report 2 s:\n{seen}");
    assert!(!seen.contains("stalled"), "the sender stalled against stage 8:\n{seen}");
    drop(sender);
    drop(server);
    recording("cargo run -p tools --bin sender < huge_file.dat", &seen)
}

/// xps-top on `server` for `seconds` lines; `at_line(n)` runs as soon as
/// line `n` (1 = the first figures) has been printed. Returns its stdout.
fn xps_top(server: &Server, seconds: u32, mut at_line: impl FnMut(usize)) -> String {
    let mut top = Process::spawn(
        Command::new(workspace_binary("tools", "xps-top"))
            .args(["--port", &server.ports[0].to_string(), "--seconds", &seconds.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped()),
    );
    let stdout = top.take_stdout().expect("piped stdout");
    let mut text = String::new();
    // The first line is the header; figures follow, one a second.
    for (i, line) in BufReader::new(stdout).lines().map_while(Result::ok).enumerate() {
        text.push_str(&line);
        text.push('\n');
        if i > 0 {
            at_line(i);
        }
    }
    let status = top.wait_exit(LOG_WAIT);
    assert!(status.is_some_and(|s| s.success()), "xps-top: {status:?}\n{text}");
    text
}

/// The CPU share and memory of each figures line of xps-top's output.
fn top_figures(text: &str) -> Vec<(f64, String)> {
    text.lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once(": cpu ")?;
            let (cpu, rest) = rest.split_once("%, memory ")?;
            let (memory, _) = rest.split_once(", ")?;
            Some((cpu.parse().ok()?, memory.to_string()))
        })
        .collect()
}

/// A size as xps-top prints it, in MiB.
fn mib(size: &str) -> f64 {
    let (number, unit) = size.split_once(' ').unwrap_or((size, "B"));
    let number: f64 = number.parse().unwrap_or(0.0);
    match unit {
        "KiB" => number / 1024.0,
        "MiB" => number,
        "GiB" => number * 1024.0,
        _ => number / (1024.0 * 1024.0),
    }
}

/// xps-top on `stage` for three seconds, with a client that says hello
/// after the first line and then nothing: the output, and its CPU column.
fn idle_client_top(stage: &str) -> (String, Vec<f64>) {
    let server = start_quiet(stage, false);
    let mut idle = None;
    let text = xps_top(&server, 3, |line| {
        if line == 1 {
            let mut client = Client::connect(server.ports[0]);
            client.expect_reversed(b"hello\n");
            idle = Some(client);
        }
    });
    drop(idle);
    let cpu = top_figures(&text).iter().map(|f| f.0).collect();
    (text, cpu)
}

/// Experiment 1 in figures: a second with no client, then two with one
/// client that sent a line and then nothing.
fn stage08_experiment1_top() -> String {
    let _alone = stage08_alone();
    let (text, cpu) = idle_client_top("stage08");
    assert!(cpu.len() == 3 && cpu[0] < 20.0, "no client:\n{text}");
    assert!(cpu[1] > 50.0 && cpu[2] > 50.0, "one idle client:\n{text}");
    recording("cargo run -p tools --bin xps-top -- --port 8001 --seconds 3", &text)
}

/// Experiment 1 in the log: a client connects and says nothing, and the
/// loop wakes up for it again and again. From the accept on, the first
/// rounds of the loop.
fn stage08_experiment1_debug() -> String {
    const SHOWN: usize = 26;
    let _shared = stage08_shared();
    let server = start("stage08");
    let idle = Client::connect(server.ports[0]);
    let spun = server.wait_for_count("EVENT / write on fd", 20, LOG_WAIT);
    assert!(spun, "no write events for an idle client:\n{}", server.stdout());
    let ports = server.ports.clone();
    let log = normalise_log(&server.stop(libc::SIGKILL, EXIT_WAIT).stdout, &ports);
    drop(idle);
    let from = log.lines().position(|line| line.contains("EVENT / read on fd")).unwrap_or(0);
    let shown: String =
        log.lines().skip(from).take(SHOWN).map(|line| format!("{line}\n")).collect();
    recording("XPS_DEBUG=1 cargo run -p stage08   # then: nc 127.0.0.1 8001", &shown)
}

/// Experiment 2 in figures: one second with no client, two while a client
/// floods port 8001 without reading, one after it has left.
fn stage08_experiment2_top() -> String {
    let server = start_quiet("stage08", true);
    let mut flooder = None;
    let text = xps_top(&server, 4, |line| match line {
        1 => flooder = Some(Flooder::start(server.ports[0], usize::MAX)),
        // Gone with its replies unread: the kernel resets the connection.
        3 => flooder = None,
        _ => {}
    });
    drop(flooder);
    let memory: Vec<f64> = top_figures(&text).iter().map(|f| mib(&f.1)).collect();
    assert!(memory.len() == 4, "{text}");
    assert!(memory[2] > memory[0] + 8.0, "memory did not grow with the flood:\n{text}");
    assert!(memory[3] < memory[0] + 4.0, "memory did not come back:\n{text}");
    recording("cargo run -p tools --bin xps-top -- --port 8001 --seconds 4", &text)
}

// ---------------------------------------------------------------------
// Stage 9: edge triggering, and an idle client that costs nothing
// ---------------------------------------------------------------------

/// Stage 8's Experiment 1 rerun on stage 9: a second with no client, then
/// two with one client that sent a line and then nothing. The CPU stays
/// near 0 throughout. It takes the same exclusive lock as stage 8's CPU
/// recording: a spinning stage-8 server beside it would take CPU from it,
/// and could hide a stage 9 that spins too.
fn stage09_milestone_top() -> String {
    let _alone = stage08_alone();
    let (text, cpu) = idle_client_top("stage09");
    assert!(cpu.len() == 3, "{text}");
    assert!(cpu.iter().all(|&share| share < 20.0), "stage 9 is not asleep:\n{text}");
    recording("cargo run -p tools --bin xps-top -- --port 8001 --seconds 3", &text)
}

/// The same in the log: a client connects and says nothing. From the
/// listener's event on, the loop handles the one write edge the new socket
/// brings, goes back to `epoll_wait()`, and prints nothing more while the
/// client stays idle (checked over a second).
fn stage09_milestone_debug() -> String {
    let server = start("stage09");
    let asleep = idle_count(&server);
    let idle = Client::connect(server.ports[0]);
    let edge = server.wait_for_count("EVENT / write on fd", 1, LOG_WAIT);
    assert!(edge, "no write edge for the new connection:\n{}", server.stdout());
    // Two more waits: one after the accept, one after the write edge.
    settle(&server, asleep + 1);
    let before = server.stdout();
    std::thread::sleep(Duration::from_secs(1));
    let after = server.stdout();
    assert_eq!(before, after, "the loop woke up for an idle client");
    let writes = after.lines().filter(|line| line.contains("EVENT / write on fd")).count();
    assert_eq!(writes, 1, "more than one write event:\n{after}");
    let ports = server.ports.clone();
    let log = normalise_log(&server.stop(libc::SIGKILL, EXIT_WAIT).stdout, &ports);
    drop(idle);
    let from = log.lines().position(|line| line.contains("EVENT / read on fd")).unwrap_or(0);
    let shown: String = log.lines().skip(from).map(|line| format!("{line}\n")).collect();
    recording("XPS_DEBUG=1 cargo run -p stage09   # then: nc 127.0.0.1 8001", &shown)
}

// ---------------------------------------------------------------------
// Stage 10: pipes, write-back, and memory that stays put
// ---------------------------------------------------------------------

/// The protocol change: two lines on port 8001 come back as they were
/// sent, not reversed.
fn stage10_writeback_nc() -> String {
    milestone_session("stage10").1
}

/// A client sends a line and half-closes at once, as `printf 'hi\n' | nc
/// -N` does, with every DEBUG line from the listener's event on. The
/// client connects, sends and half-closes while the server is stopped
/// (SIGSTOP), so the line and the end of input are both waiting when it
/// accepts, and the log is the same on every run. (A stopped `epoll_wait()`
/// returns `EINTR` when continued: the loop's extra `epoll wait` line
/// comes before the part shown.)
fn stage10_halfclose_debug() -> String {
    let server = start("stage10");
    server.process.signal(libc::SIGSTOP);
    let mut client = Client::connect(server.ports[0]);
    client.send(b"hi\n");
    client.shutdown_write();
    let before = idle_count(&server);
    server.process.signal(libc::SIGCONT);
    let reply = client.read_reply(3, LOG_WAIT);
    assert_eq!(reply.bytes, b"hi\n", "no write-back before the close: {:?}", reply.end);
    assert!(client.is_closed_by_server(LOG_WAIT), "the server did not close the connection");
    let destroyed = server.wait_for_count("xps_pipe_destroy()", 1, LOG_WAIT);
    assert!(destroyed, "the pipe was not destroyed:\n{}", server.stdout());
    settle(&server, before);
    let ports = server.ports.clone();
    let log = normalise_log(&server.stop(libc::SIGKILL, EXIT_WAIT).stdout, &ports);
    let from = log.lines().position(|line| line.contains("EVENT / read on fd")).unwrap_or(0);
    let shown: String = log.lines().skip(from).map(|line| format!("{line}\n")).collect();
    let command =
        "XPS_DEBUG=1 cargo run -p stage10   # then: printf 'hi\\n' | nc -N 127.0.0.1 8001";
    recording(command, &shown)
}

/// Half-closing clients get everything back: `hi`, and 2 MiB sent
/// without reading before the half-close, so that the pipe still holds
/// bytes when the server reads the end of input.
fn stage10_halfclose_nc() -> String {
    const BIG: usize = 2 << 20;
    let server = start_quiet("stage10", true);
    let mut text = String::from("$ printf 'hi\\n' | nc -N 127.0.0.1 8001\n");
    let mut client = Client::connect(server.ports[0]);
    client.send(b"hi\n");
    client.shutdown_write();
    let reply = client.read_reply(3, LOG_WAIT);
    assert_eq!(reply.bytes, b"hi\n", "{:?}", reply.end);
    assert!(client.is_closed_by_server(LOG_WAIT), "the server did not close the connection");
    text.push_str(&String::from_utf8_lossy(&reply.bytes));

    let data: Vec<u8> = (0..BIG).map(|i| (i * 7 % 251) as u8).collect();
    let mut client = Client::connect(server.ports[0]);
    // Far less than the pipe and the kernel's buffers hold together: the
    // whole of it goes out before the client reads a byte.
    client.send(&data);
    client.shutdown_write();
    let reply = client.read_reply(BIG, Duration::from_secs(20));
    let (got, end) = (reply.bytes.len(), reply.end);
    assert!(reply.bytes == data, "{got} of {BIG} bytes came back, not all right ({end:?})");
    assert!(client.is_closed_by_server(LOG_WAIT), "the server did not close the connection");
    text.push_str("$ head -c 2M huge_file.dat | nc -N 127.0.0.1 8001 | wc -c\n");
    text.push_str(&format!("{got}\n"));
    text
}

/// What one flood of [`flood_top`] recorded.
struct FloodRun {
    /// xps-top's output.
    top: String,
    /// Its memory column, in MiB.
    memory: Vec<f64>,
    /// What the sender printed on stderr.
    sender: String,
}

/// Stage 8's Experiment 2 on `stage`, with the `sender` tool as the
/// client: xps-top for four seconds, the sender flooding port 8001 from
/// the first line to the third (then killed: it leaves with replies
/// unread, so the kernel resets its connection), and `during(line,
/// &mut sender, &server)` called at lines 2 and 3, the sender still
/// running.
fn flood_top(stage: &str, mut during: impl FnMut(usize, &mut Flood, &Server)) -> FloodRun {
    let server = start_quiet(stage, true);
    let mut sender = None;
    let mut printed = String::new();
    let top = xps_top(&server, 4, |line| match line {
        1 => sender = Some(Flood::start(&workspace_binary("tools", "sender"), server.ports[0])),
        2 | 3 => {
            if let Some(flood) = sender.as_mut() {
                during(line, flood, &server);
            }
            if line == 3 {
                printed = sender.take().map(|flood| flood.seen()).unwrap_or_default();
            }
        }
        _ => {}
    });
    drop(sender);
    let memory: Vec<f64> = top_figures(&top).iter().map(|f| mib(&f.1)).collect();
    assert!(memory.len() == 4, "{top}");
    FloodRun { top, memory, sender: printed }
}

/// Before: stage 9 under the sender. Its memory climbs with the flood, and
/// the sender never stalls.
fn stage10_before() -> FloodRun {
    let run = flood_top("stage09", |line, sender, _| {
        if line == 3 {
            // The line and its newline may come in two writes.
            sender.read_until("(2 s)\n", Duration::from_millis(1500));
        }
    });
    let (top, memory, printed) = (&run.top, &run.memory, &run.sender);
    // Past stage 10's bound (about 1 MiB), and still climbing: no bound at
    // all. (How fast depends on the machine, and on what runs beside it:
    // 3.5 MiB in two seconds on a machine busy with other builds.)
    let climbing = memory[2] > memory[0] + 2.0 && memory[2] > memory[1] + 1.0;
    assert!(climbing, "stage 9's memory did not climb with the flood:\n{top}");
    assert!(printed.contains("(2 s)"), "the sender did not report 2 s:\n{printed}");
    assert!(!printed.contains("stalled"), "the sender stalled against stage 9:\n{printed}");
    run
}

/// After: stage 10 under the same sender. The sender stalls once the pipe
/// and the kernel's buffers are full; the server's memory stays within
/// 4 MiB of where it started; a bystander on port 8002 is answered at
/// once while the sender floods. Returns the run and the bystander's
/// `nc` session.
fn stage10_after() -> (FloodRun, String) {
    let mut nc = String::new();
    let run = flood_top("stage10", |line, sender, server| {
        if line == 2 {
            let mut bystander = Client::connect(server.ports[1]);
            let started = std::time::Instant::now();
            let reply = bystander.round_trip(b"hello\n");
            let took = started.elapsed();
            assert_eq!(reply, b"hello\n", "the bystander's reply");
            assert!(took < Duration::from_secs(1), "the bystander waited {took:?}");
            nc = format!("$ nc 127.0.0.1 8002\nhello\n{}", String::from_utf8_lossy(&reply));
        } else {
            sender.read_until_stalled_for(1, Duration::from_millis(1500));
            sender.read_until("not reading\n", Duration::from_millis(500));
        }
    });
    let (top, memory, printed) = (&run.top, &run.memory, &run.sender);
    let grown = memory.iter().map(|m| m - memory[0]).fold(0.0, f64::max);
    assert!(grown < 4.0, "stage 10's memory grew by {grown:.1} MiB:\n{top}");
    assert!(longest_stall(printed) >= Some(1), "the sender did not stall:\n{printed}");
    assert!(!nc.is_empty(), "no bystander");
    (run, nc)
}

/// The command lines of the milestone's recordings.
const TOP_FOR_4_S: &str = "cargo run -p tools --bin xps-top -- --port 8001 --seconds 4";
const SENDER: &str = "cargo run -p tools --bin sender < huge_file.dat";

/// Stage 8's Experiment 2, and the same experiment on stage 9 for stage
/// 10's "before", side by side: each keeps a server reading flat out for
/// two seconds, so neither may run beside the recordings that measure CPU
/// (the shared lock), and together they take four seconds, not eight.
/// Each asserts memory that climbs, never a rate, which a busy machine
/// would change.
fn stage08_and_stage09_floods() -> Vec<String> {
    let _shared = stage08_shared();
    let (stage08, before) = std::thread::scope(|scope| {
        let before = scope.spawn(stage10_before);
        let stage08 = stage08_experiment2_top();
        (stage08, before.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    });
    vec![stage08, recording(TOP_FOR_4_S, &before.top), recording(SENDER, &before.sender)]
}

/// The milestone's "after" files. Stage 10 stalls the sender within a
/// second and then sleeps, so this may run beside anything.
fn stage10_after_files() -> Vec<String> {
    let (after, nc) = stage10_after();
    vec![recording(TOP_FOR_4_S, &after.top), recording(SENDER, &after.sender), nc]
}

// ---------------------------------------------------------------------
// Stage 11: the proxy, and every way an exchange ends
// ---------------------------------------------------------------------

/// The port the recordings show for the upstream, whichever the OS gave
/// the test's: the course's 3000.
const UPSTREAM_SHOWN: &str = "3000";

/// The file the milestone's upstream serves, and what it holds.
const HELLO_PATH: &str = "/hello.txt";
const HELLO_BODY: &[u8] = b"hello from the upstream\n";

/// Starts stage 11 on four OS-chosen ports, the first forwarding to
/// `upstream` (`HOST:PORT`), with DEBUG lines, and waits until it is idle.
/// Its ports are listed in the order the log announced them.
fn start_proxy(upstream: &str) -> Server {
    let launch = Launch { upstream: Some(upstream.to_string()), ..Launch::default() };
    let mut server = Server::spawn_with(&stage_binary("stage11"), &["--ports", "0,0,0,0"], &launch);
    server.wait_for_ports(4);
    let announced = server.wait_for_count("Server listening on port", 4, LOG_WAIT);
    assert!(announced, "the ports were not announced:\n{}", server.stdout());
    server.ports = server.announced_ports();
    settle(&server, 0);
    server
}

/// [`normalise_log`], and the upstream's port shown as the course's 3000.
fn normalise_proxy_log(log: &str, ports: &[u16], upstream_port: u16) -> String {
    let upstream_port = upstream_port.to_string();
    normalise_log(log, ports)
        .lines()
        .map(|line| {
            let line = map_numbers(line, |_, number| {
                (number == upstream_port).then(|| UPSTREAM_SHOWN.to_string())
            });
            format!("{line}\n")
        })
        .collect()
}

/// Waits until `n` proxied exchanges are over in `server`'s log: each
/// client, each upstream and both pipes of each destroyed.
fn wait_exchanges_freed(server: &Server, n: usize) {
    let freed = wait_until(LOG_WAIT, || {
        server.count("destroyed connection from") >= n
            && server.count("destroyed upstream connection") >= n
            && server.count("xps_pipe_destroy()") >= 2 * n
    });
    assert!(freed, "an exchange was not freed whole:\n{}", server.stdout());
}

/// Everything `client` receives until the server ends the connection,
/// which must be a close (FIN), not a reset or a silence.
fn read_until_closed(client: &mut Client) -> Vec<u8> {
    let reply = client.read_reply(4 << 20, LOG_WAIT);
    assert_eq!(reply.end, ReplyEnd::Closed, "after {} bytes", reply.bytes.len());
    reply.bytes
}

/// The milestone: a request on the proxy port, answered by the upstream,
/// then Ctrl+C. The upstream is the workspace's test server
/// (`shared::upstream`) standing in for `python3 -m http.server 3000`: it
/// sends no `Date`, so the recording is the same on every run. The client
/// does what `printf ... | nc` does: sends the request, reads until the
/// server closes, then closes. (server log without DEBUG, nc session)
fn stage11_milestone() -> Vec<String> {
    let upstream = Upstream::http(vec![(HELLO_PATH.to_string(), HELLO_BODY.to_vec())]);
    let request = format!("GET {HELLO_PATH} HTTP/1.0\r\n\r\n");
    let expected = shared::upstream::http_get(upstream.port(), HELLO_PATH).expect("fetch directly");
    assert!(expected.ends_with(HELLO_BODY));
    let server = start_proxy(&upstream.addr());
    let mut client = Client::connect(server.ports[0]);
    client.send(request.as_bytes());
    let response = read_until_closed(&mut client);
    assert!(response == expected, "the proxy changed the response:\n{}", server.stdout());
    drop(client);
    wait_exchanges_freed(&server, 1);
    wait_asleep(&server);
    let ports = server.ports.clone();
    let exited = server.stop(libc::SIGINT, EXIT_WAIT);
    assert_eq!(exited.status.code(), Some(0), "{}", exited.stdout);
    let log = normalise_proxy_log(&exited.stdout, &ports, upstream.port());
    // A terminal shows each \r\n as a line break.
    let shown = String::from_utf8_lossy(&response).replace("\r\n", "\n");
    let nc =
        format!("$ printf 'GET {HELLO_PATH} HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 8001\n{shown}");
    vec![recording("cargo run -p stage11", &without_debug(&log)), nc]
}

/// The DEBUG log of the proxy port from the listener's event on, when
/// nothing listens at the upstream's address and the client either sends
/// a request (`request`) or says nothing. The client connects (and sends)
/// while the server is stopped (SIGSTOP), so the accept and the refusal
/// come in the same rounds on every run. It is closed with a FIN and no
/// byte: at once if it sent its request, after about a second if not.
fn stage11_refused(request: Option<&[u8]>) -> String {
    let closed = ClosedPort::new().expect("a port nothing listens on");
    let server = start_proxy(&format!("127.0.0.1:{}", closed.port));
    server.process.signal(libc::SIGSTOP);
    let mut client = Client::connect(server.ports[0]);
    if let Some(request) = request {
        client.send(request);
    }
    let before = idle_count(&server);
    server.process.signal(libc::SIGCONT);
    let started = std::time::Instant::now();
    let bytes = read_until_closed(&mut client);
    let waited = started.elapsed();
    assert!(bytes.is_empty(), "the client got {} bytes", bytes.len());
    if request.is_some() {
        assert!(waited < Duration::from_millis(500), "closed after {waited:?}");
    } else {
        assert!(waited >= Duration::from_millis(800), "closed after {waited:?}, before the grace");
    }
    wait_exchanges_freed(&server, 1);
    settle(&server, before);
    let ports = server.ports.clone();
    let log = server.stop(libc::SIGKILL, EXIT_WAIT).stdout;
    let log = normalise_proxy_log(&log, &ports, closed.port);
    let from = log.lines().position(|line| line.contains("EVENT / read on fd")).unwrap_or(0);
    log.lines().skip(from).map(|line| format!("{line}\n")).collect()
}

/// A refused upstream, and a client that has sent its request.
fn stage11_refused_debug() -> String {
    let shown = stage11_refused(Some(b"GET / HTTP/1.0\r\n\r\n"));
    let command = "XPS_DEBUG=1 cargo run -p stage11   # nothing on port 3000; then: \
                   printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 8001";
    recording(command, &shown)
}

/// A refused upstream, and a client that says nothing.
fn stage11_linger_debug() -> String {
    let shown = stage11_refused(None);
    recording(
        "XPS_DEBUG=1 cargo run -p stage11   # nothing on port 3000; then: nc 127.0.0.1 8001",
        &shown,
    )
}

/// What `grep -E` keeps of the log in the recordings of the endings.
const ENDINGS_GREP: &str = "finished sending|half-closing|connection_close|failed";

/// The lines of `log` that `grep -E ENDINGS_GREP` prints.
fn endings_lines(log: &str) -> String {
    log.lines()
        .filter(|line| ENDINGS_GREP.split('|').any(|word| line.contains(word)))
        .map(|line| format!("{line}\n"))
        .collect()
}

/// What the client of one exchange of [`stage11_endings`] does after it
/// has sent its request.
#[derive(Clone, Copy, PartialEq)]
enum Then {
    /// Reads until the server closes, then closes.
    Reads,
    /// Half-closes, reads until the server closes, then closes.
    HalfClosesAndReads,
    /// Closes at once, without reading.
    Leaves,
}

/// Four exchanges through one proxy, each recorded as the lines of the
/// DEBUG log that say how its two connections ended: the upstream answers
/// and closes; the client half-closes after its request (`/after-eof`
/// answers only once the end of the request has reached it); the upstream
/// resets mid-response (`/die/N`, after N bytes); the client closes as
/// soon as it has sent its request for 5 MiB.
fn stage11_endings() -> Vec<String> {
    let upstream = Upstream::http(vec![(HELLO_PATH.to_string(), HELLO_BODY.to_vec())]);
    let server = start_proxy(&upstream.addr());
    let ports = server.ports.clone();
    let leave = "python3 -c \"import socket; s = socket.create_connection(('127.0.0.1', 8001)); \
                 s.sendall(b'GET /bytes/5242880 HTTP/1.0\\r\\n\\r\\n'); s.close()\"";
    // (what the client sends, what it does then, the shell line)
    let exchanges: [(&[u8], Then, &str); 4] = [
        (
            b"GET /hello.txt HTTP/1.0\r\n\r\n",
            Then::Reads,
            "printf 'GET /hello.txt HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 8001",
        ),
        (
            b"POST /after-eof HTTP/1.0\r\n\r\nhello",
            Then::HalfClosesAndReads,
            "printf 'POST /after-eof HTTP/1.0\\r\\n\\r\\nhello' | nc -N 127.0.0.1 8001",
        ),
        (
            b"GET /die/300000 HTTP/1.0\r\n\r\n",
            Then::Reads,
            "printf 'GET /die/300000 HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 8001",
        ),
        (b"GET /bytes/5242880 HTTP/1.0\r\n\r\n", Then::Leaves, leave),
    ];
    let mut files = Vec::new();
    for (n, (request, then, shell)) in exchanges.into_iter().enumerate() {
        let before = server.stdout().lines().count();
        let mut client = Client::connect(server.ports[0]);
        client.send(request);
        if then == Then::HalfClosesAndReads {
            client.shutdown_write();
        }
        if then == Then::Leaves {
            // The FIN must go before any byte of the response arrives, or
            // the close below sends a reset instead (unread bytes), and
            // the log shows that other ending. python's close() right
            // after sendall() nearly always wins that race; a test thread
            // on a busy machine may not, so it sends the FIN at once and
            // closes once the server has read it.
            let fin = "client 127.0.0.1 finished sending";
            let before = server.count(fin);
            client.shutdown_write();
            let read = server.wait_for_count(fin, before + 1, LOG_WAIT);
            assert!(read, "the server never read the client's FIN:\n{}", server.stdout());
        }
        if then != Then::Leaves {
            let response = read_until_closed(&mut client);
            match n {
                0 => assert!(response.ends_with(HELLO_BODY)),
                1 => assert!(response.ends_with(b"\r\n\r\ngot 5 bytes after the head\n")),
                _ => assert!(response.ends_with(&shared::upstream::pattern(0, 300_000))),
            }
        }
        drop(client);
        wait_exchanges_freed(&server, n + 1);
        settle(&server, idle_count(&server).saturating_sub(1));
        let log = normalise_proxy_log(&server.stdout(), &ports, upstream.port());
        let tail: String = log.lines().skip(before).map(|line| format!("{line}\n")).collect();
        let command = format!(
            "XPS_DEBUG=1 cargo run -p stage11 | grep -E '{ENDINGS_GREP}'   # then: {shell}"
        );
        files.push(recording(&command, &endings_lines(&tail)));
    }
    assert!(upstream.wait_open(0, LOG_WAIT), "an upstream connection was left open");
    drop(server);
    files
}

/// A client of the proxy port asks for 1 GiB and never reads: xps-top for
/// four seconds, the client from the first line to the third. The pipe
/// toward it fills, the upstream is no longer read, and TCP stops the
/// upstream: the server's memory stays within 4 MiB of where it started.
fn stage11_never_reads_top() -> String {
    let upstream = Upstream::http(Vec::new());
    let launch = Launch {
        quiet: true,
        skip_messages: true,
        upstream: Some(upstream.addr()),
        ..Launch::default()
    };
    let mut server = Server::spawn_with(&stage_binary("stage11"), &["--ports", "0,0,0,0"], &launch);
    server.wait_for_ports(4);
    let announced = server.wait_for_count("Server listening on port", 4, LOG_WAIT);
    assert!(announced, "the ports were not announced:\n{}", server.stdout());
    server.ports = server.announced_ports();
    let mut sleeper = None;
    let top = xps_top(&server, 4, |line| match line {
        1 => {
            let mut client = Client::connect(server.ports[0]);
            client.send(b"GET /bytes/1073741824 HTTP/1.0\r\n\r\n");
            sleeper = Some(client);
        }
        3 => sleeper = None,
        _ => {}
    });
    drop(sleeper);
    let memory: Vec<f64> = top_figures(&top).iter().map(|f| mib(&f.1)).collect();
    assert!(memory.len() == 4, "{top}");
    let grown = memory.iter().map(|m| m - memory[0]).fold(0.0, f64::max);
    assert!(grown < 4.0, "stage 11's memory grew by {grown:.1} MiB:\n{top}");
    assert!(upstream.wait_open(0, LOG_WAIT), "the upstream stayed open after its client left");
    recording(TOP_FOR_4_S, &top)
}

// ---------------------------------------------------------------------
// Compare or bless
// ---------------------------------------------------------------------

/// Makes the text of one recorded file.
type Recorder = fn() -> String;

fn bless() -> bool {
    std::env::var_os("XPS_BLESS").is_some_and(|value| value == "1")
}

/// Produces recording `name` and compares it with the committed file, or
/// rewrites the file when `XPS_BLESS=1`.
fn check(name: &str) {
    let (_, make) = RECORDINGS
        .iter()
        .find(|(path, _)| *path == name)
        .unwrap_or_else(|| panic!("no recording named {name}"));
    compare(name, &make());
}

/// Compares `fresh` with the committed file `name`, or rewrites the file
/// when `XPS_BLESS=1`.
fn compare(name: &str, fresh: &str) {
    let path = book_src().join(name);
    if bless() {
        fs::write(&path, fresh).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        return;
    }
    let committed = fs::read_to_string(&path).unwrap_or_default();
    let same =
        if VARYING.contains(&name) { same_shape(&committed, fresh) } else { committed == fresh };
    if !same {
        let line = committed.lines().zip(fresh.lines()).position(|(a, b)| a != b);
        panic!(
            "book/src/{name} is stale (first difference at line {}).\n\
             Rewrite it with: XPS_BLESS=1 cargo test -p shared --features book-outputs \
             --test book_outputs\n\
             --- committed\n{committed}\n--- now\n{fresh}",
            line.map_or_else(|| "end".to_string(), |l| (l + 1).to_string())
        );
    }
}

/// Recordings made together, by one test: a session whose files come from
/// the same run. Each group lists its files and what makes all of them, in
/// that order. (One test per file, sharing the run through a `OnceLock`,
/// would keep a second test thread waiting for as long as the run lasts.)
type Group = (&'static [&'static str], fn() -> Vec<String>);

/// The groups of recordings.
const GROUPS: &[Group] = &[
    (&["stage08/milestone-server.txt", "stage08/milestone-nc.txt"], stage08_milestone),
    (
        &["stage08/experiment2-top.txt", "stage10/before-top.txt", "stage10/before-sender.txt"],
        stage08_and_stage09_floods,
    ),
    (
        &["stage10/after-top.txt", "stage10/after-sender.txt", "stage10/after-nc.txt"],
        stage10_after_files,
    ),
    (&["stage11/milestone-server.txt", "stage11/milestone-nc.txt"], stage11_milestone),
    (
        &[
            "stage11/ends-answer.txt",
            "stage11/ends-halfclose.txt",
            "stage11/ends-die.txt",
            "stage11/ends-leave.txt",
        ],
        stage11_endings,
    ),
];

/// Makes the files of the group whose first file is `first`, and compares
/// each with the committed one (or rewrites it).
fn check_group(first: &str) {
    let (names, make) = GROUPS
        .iter()
        .find(|(names, _)| names.first() == Some(&first))
        .unwrap_or_else(|| panic!("no group starts with {first}"));
    let made = make();
    assert_eq!(made.len(), names.len(), "{first}: one text for each file");
    for (name, fresh) in names.iter().zip(&made) {
        compare(name, fresh);
    }
}

/// Stage 8's milestone: its server log and the bystander's `nc` session.
#[test]
fn stage08_milestone_txt() {
    check_group("stage08/milestone-server.txt");
}

/// Stage 8's Experiment 2, and stage 10's "before": stage 9 under the
/// sender.
#[test]
fn stage08_experiment2_top_txt() {
    check_group("stage08/experiment2-top.txt");
}

/// Stage 10's milestone, after: stage 10 under the sender.
#[test]
fn stage10_after_txt() {
    check_group("stage10/after-top.txt");
}

/// Stage 11's milestone: a request through the proxy, its log and its
/// `nc` session.
#[test]
fn stage11_milestone_txt() {
    check_group("stage11/milestone-server.txt");
}

/// Stage 11's endings: how each connection of four exchanges ends.
#[test]
fn stage11_endings_txt() {
    check_group("stage11/ends-answer.txt");
}

/// Lists every recorded file once: its test, its path under `book/src`,
/// and what makes it. From that one list come `RECORDINGS`, a test per
/// file, and a test that no `.txt` under `book/src` is left unrecorded.
macro_rules! recordings {
    ($($test:ident: $name:literal => $make:expr,)*) => {
        /// Every recorded file, by its path under `book/src`, and what makes it.
        const RECORDINGS: &[(&str, Recorder)] = &[$(($name, $make)),*];

        $(
            #[test]
            fn $test() {
                check($name);
            }
        )*

        /// Every `.txt` under `book/src` is a recording (none is left
        /// behind, unchecked, after a rename).
        #[test]
        fn every_output_file_is_recorded() {
            let mut found = Vec::new();
            collect_txt(&book_src(), &book_src(), &mut found);
            for name in &found {
                let in_group = GROUPS.iter().any(|(names, _)| names.contains(&name.as_str()));
                assert!(
                    in_group || RECORDINGS.iter().any(|(recorded, _)| recorded == name),
                    "book/src/{name} is not produced by any recording"
                );
            }
        }
    };
}

fn collect_txt(root: &Path, dir: &Path, found: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_txt(root, &path, found);
        } else if path.extension().is_some_and(|ext| ext == "txt")
            && let Ok(relative) = path.strip_prefix(root)
        {
            found.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
}

recordings! {
    setup_help_txt: "setup/help.txt" => setup_help,
    stage06_milestone_server_txt: "stage06/milestone-server.txt" => stage06_milestone_server,
    stage06_milestone_nc_txt: "stage06/milestone-nc.txt" => stage06_milestone_nc,
    stage06_debug_one_client_txt: "stage06/debug-one-client.txt" => stage06_debug,
    stage07_milestone1_tests_txt: "stage07/milestone1-tests.txt" => stage07_milestone1,
    stage07_milestone2_server_txt: "stage07/milestone2-server.txt" => stage07_milestone_server,
    stage07_milestone2_nc_txt: "stage07/milestone2-nc.txt" => stage07_milestone_nc,
    stage07_debug_one_client_txt: "stage07/debug-one-client.txt" => stage07_debug,
    stage07_shutdown_debug_txt: "stage07/shutdown-debug.txt" => stage07_shutdown,
    tools_sender_stall_txt: "tools/sender-stall.txt" => sender_stall,
    tools_sender_interactive_txt: "tools/sender-interactive.txt" => sender_interactive,
    stage08_milestone_sender_txt: "stage08/milestone-sender.txt" => stage08_milestone_sender,
    stage08_experiment1_top_txt: "stage08/experiment1-top.txt" => stage08_experiment1_top,
    stage08_experiment1_debug_txt: "stage08/experiment1-debug.txt" => stage08_experiment1_debug,
    stage09_milestone_top_txt: "stage09/milestone-top.txt" => stage09_milestone_top,
    stage09_milestone_debug_txt: "stage09/milestone-debug.txt" => stage09_milestone_debug,
    stage10_writeback_nc_txt: "stage10/writeback-nc.txt" => stage10_writeback_nc,
    stage10_halfclose_debug_txt: "stage10/halfclose-debug.txt" => stage10_halfclose_debug,
    stage10_halfclose_nc_txt: "stage10/halfclose-nc.txt" => stage10_halfclose_nc,
    stage11_refused_debug_txt: "stage11/refused-debug.txt" => stage11_refused_debug,
    stage11_linger_debug_txt: "stage11/linger-debug.txt" => stage11_linger_debug,
    stage11_never_reads_top_txt: "stage11/never-reads-top.txt" => stage11_never_reads_top,
}

#[test]
fn varying_output_is_compared_by_shape() {
    let committed = "$ sender < huge_file.dat\n\
                     sent 8.6 MiB at 8.6 MiB/s (1 s)\n\
                     sent 8.6 MiB; stalled for 1 s: the server is not reading\n\
                     sent 8.6 MiB; stalled for 2 s: the server is not reading\n";
    // Other numbers and units, no progress line, a second not reported.
    let busy = "$ sender < huge_file.dat\n\
                sent 12.1 MiB; stalled for 1 s: the server is not reading\n\
                sent 12.1 MiB; stalled for 3 s: the server is not reading\n";
    let slow = "$ sender < huge_file.dat\n\
                sent 900 KiB at 61.3 KiB/s (1 s)\n\
                sent 900 KiB; stalled for 2 s: the server is not reading\n";
    assert!(same_shape(committed, busy));
    assert!(same_shape(committed, slow));
    let reworded = busy.replace("the server is not reading", "no progress");
    assert!(!same_shape(committed, &reworded));
    let no_stall = "$ sender < huge_file.dat\nsent 8.6 MiB at 8.6 MiB/s (1 s)\n";
    assert!(!same_shape(committed, no_stall));
}

#[test]
fn normalising_fixes_times_ports_and_fds() {
    let log = "07:01:12.512 [INFO] xps_core_start() : Server listening on port 41234\n\
               07:01:12.513 [DEBUG] xps_loop_attach() : attached fd 6\n\
               07:01:12.514 [DEBUG] xps_loop_attach() : attached fd 7\n\
               client: 41234 stays if it is not a port? no: ports are replaced\n";
    assert_eq!(
        normalise_log(log, &[41234]),
        "10:00:00.000 [INFO] xps_core_start() : Server listening on port 8001\n\
         10:00:00.000 [DEBUG] xps_loop_attach() : attached fd 4\n\
         10:00:00.000 [DEBUG] xps_loop_attach() : attached fd 5\n\
         client: 8001 stays if it is not a port? no: ports are replaced\n"
    );
}
