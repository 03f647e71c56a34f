//! Running a stage binary under test: start it, read its log as it comes,
//! signal it, and make sure it never outlives the test.

use crate::capture::{Captured, Drain};
use crate::child::Process;
use crate::procfs;
use crate::wait::wait_until;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a server may take to print its "listening" lines.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a server that listens may take to say so in its log.
const ANNOUNCE_WAIT: Duration = Duration::from_millis(500);

/// How long, once the server has exited, its output may take to reach us.
const OUTPUT_AFTER_EXIT: Duration = Duration::from_secs(1);

/// What the line a server prints for each message starts with: a
/// client's, or (from stage 11) an upstream's.
const MESSAGE_LINES: &[&[u8]] = &[b"client: ", b"upstream: "];

/// How to start a server: [`Server::spawn_with`].
#[derive(Debug, Clone, Default)]
pub struct Launch {
    /// Leave DEBUG logs off (they are on by default, for the tests that
    /// count create/destroy lines).
    pub quiet: bool,
    /// Run it with at most this many open file descriptors.
    pub max_fds: Option<u64>,
    /// Do not keep the `client: ...` line printed for each message: a test
    /// that streams gigabytes through the server would pile them up.
    pub skip_messages: bool,
    /// `--upstream HOST:PORT` for it, for a stage that forwards its first
    /// port (from stage 11).
    pub upstream: Option<String>,
    /// `--public DIR` for it, for a stage that serves files (from stage 12).
    pub public: Option<String>,
}

/// What a server left behind when it exited.
#[derive(Debug)]
pub struct Exited {
    /// Its exit status.
    pub status: ExitStatus,
    /// How long it took to exit after it was signalled.
    pub elapsed: Duration,
    /// Everything it printed on stdout, as text (bytes that are not UTF-8
    /// as U+FFFD).
    pub stdout: String,
    /// Everything it printed on stdout, byte for byte.
    pub stdout_bytes: Vec<u8>,
    /// Everything it printed on stderr.
    pub stderr: String,
}

impl Exited {
    /// How many lines of stdout contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        count_lines(&self.stdout, needle)
    }
}

/// A stage binary running as a child process, with its log read as it
/// comes. Dropping it kills the process if it is still running, so a
/// failing test leaves nothing behind.
#[derive(Debug)]
pub struct Server {
    /// The process: its pid, whether it still runs, signals, its exit.
    pub process: Process,
    stdout: Captured,
    stderr: Captured,
    /// While set, nobody reads the server's stdout (see [`Server::pause_output`]).
    output_paused: Arc<AtomicBool>,
    /// The ports it announced, in the order it listed them.
    pub ports: Vec<u16>,
}

impl Server {
    /// Starts `binary` on `n_ports` ports chosen by the OS (`--ports
    /// 0,0,...`) with DEBUG logs on, and waits until it has announced them.
    pub fn start(binary: &Path, n_ports: usize) -> Server {
        let ports = vec!["0"; n_ports].join(",");
        let mut server = Server::spawn(binary, &["--ports", &ports]);
        server.wait_for_ports(n_ports);
        server
    }

    /// Starts `binary` with `args`, DEBUG logs on and colours off, without
    /// waiting for anything.
    pub fn spawn(binary: &Path, args: &[&str]) -> Server {
        Server::spawn_with(binary, args, &Launch::default())
    }

    /// Starts `binary` with `args` as `launch` says, colours off, without
    /// waiting for anything.
    pub fn spawn_with(binary: &Path, args: &[&str], launch: &Launch) -> Server {
        let mut command = Command::new(binary);
        command.args(args).env("NO_COLOR", "1");
        if let Some(upstream) = &launch.upstream {
            command.args(["--upstream", upstream]);
        }
        if let Some(public) = &launch.public {
            command.args(["--public", public]);
        }
        if launch.quiet {
            command.env_remove("XPS_DEBUG");
        } else {
            command.env("XPS_DEBUG", "1");
        }
        let max_fds = launch.max_fds;
        let prepare_child = move || {
            // Whatever fds the test process inherited (from a shell, an IDE,
            // CI) must not leak into the server: they would shift the fd
            // numbers it logs and take room under a fd limit. Mark every fd
            // above stderr close-on-exec; a kernel too old for close_range
            // (before 5.11) just leaves them.
            // SAFETY: close_range() takes no pointers; failure is harmless.
            unsafe { libc::syscall(libc::SYS_close_range, 3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
            // A shell without job control starts background commands with
            // SIGINT ignored, and an ignored signal stays ignored across
            // exec. Stage 6 installs no handler, so a `cargo test` run from
            // such a script would leave it deaf to the SIGINT the tests
            // send. Give the server the default dispositions a terminal
            // user would give it.
            for signal in [libc::SIGINT, libc::SIGTERM] {
                // SAFETY: signal() with SIG_DFL takes no pointers and is
                // async-signal-safe; it cannot fail for these signals.
                unsafe { libc::signal(signal, libc::SIG_DFL) };
            }
            if let Some(max_fds) = max_fds {
                let limit = libc::rlimit { rlim_cur: max_fds, rlim_max: max_fds };
                // SAFETY: `limit` is a valid rlimit that outlives the call.
                let ret = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
                if ret != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        };
        // SAFETY: the closure runs in the child between fork and exec, where
        // only async-signal-safe calls are allowed: it makes a few system
        // calls and allocates nothing.
        unsafe { command.pre_exec(prepare_child) };
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut process = Process::spawn(&mut command);
        let output_paused = Arc::new(AtomicBool::new(false));
        let how = Drain {
            skip_lines: if launch.skip_messages { MESSAGE_LINES } else { &[] },
            paused: Some(Arc::clone(&output_paused)),
            ..Drain::default()
        };
        let stdout = process.capture_stdout(how);
        let stderr = process.capture_stderr(Drain::default());
        Server { process, stdout, stderr, output_paused, ports: Vec::new() }
    }

    /// Waits until the process listens on `n` TCP ports (as `/proc` shows
    /// them, not as its log says: any server will do) and records them, in
    /// ascending order. Panics at once, with the exit status and what the
    /// server printed, if it exits first; after [`START_TIMEOUT`] if it
    /// never listens.
    pub fn wait_for_ports(&mut self, n: usize) -> Vec<u16> {
        self.try_wait_for_ports(n).unwrap_or_else(|why| panic!("{why}"))
    }

    /// [`Server::wait_for_ports`], returning what went wrong instead of
    /// panicking.
    pub fn try_wait_for_ports(&mut self, n: usize) -> Result<Vec<u16>, String> {
        let pid = self.process.pid();
        let mut ports = Vec::new();
        let found = wait_until(START_TIMEOUT, || {
            // /proc/net/tcp lists every socket on the machine, TIME_WAIT
            // ones too: after a flood it is thousands of lines, and reading
            // it every few milliseconds was most of the CPU the tests
            // spent. Read it only once the process holds n sockets.
            if procfs::open_sockets(pid).is_ok_and(|sockets| sockets >= n) {
                ports = procfs::listening_ports(pid).unwrap_or_default();
            }
            ports.len() >= n || !self.process.is_running()
        });
        if let Some(status) = self.process.status() {
            // The process has exited, but the threads that read its output
            // may not have read the last of it yet: give them a moment to
            // reach the end of both streams.
            let _ = self.stderr.wait_for(OUTPUT_AFTER_EXIT, |_| false);
            let _ = self.stdout.wait_for(OUTPUT_AFTER_EXIT, |_| false);
            return Err(format!(
                "the server exited at start-up with {status}\nstderr:\n{}\nstdout:\n{}",
                self.stderr(),
                self.stdout()
            ));
        }
        if !found {
            return Err(format!(
                "the server did not listen on {n} ports within {START_TIMEOUT:?}:\n{}",
                self.stdout()
            ));
        }
        self.ports = self.in_announced_order(ports);
        Ok(self.ports.clone())
    }

    /// `ports`, as /proc lists them (in its hash order), put in the order
    /// the log announces them, which is the order of `--ports`: from stage
    /// 11 the first one is the proxy. The announcement may follow the
    /// `listen()` by a moment; a server that never makes it (not one of
    /// this workspace's) keeps the order of /proc.
    fn in_announced_order(&self, mut ports: Vec<u16>) -> Vec<u16> {
        let mut announced = Vec::new();
        wait_until(ANNOUNCE_WAIT, || {
            announced = self.announced_ports();
            ports.iter().all(|port| announced.contains(port))
        });
        ports.sort_by_key(|port| announced.iter().position(|a| a == port).unwrap_or(usize::MAX));
        ports
    }

    /// Everything printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// The ports the log has announced so far ("Server listening on port
    /// N"), in the order it announced them. Only this workspace's servers
    /// say it that way.
    pub fn announced_ports(&self) -> Vec<u16> {
        self.stdout.with_text(parse_listening_ports)
    }

    /// Everything printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    /// Everything printed on stdout so far, byte for byte (the message
    /// lines too, unless the server was started with `skip_messages`).
    pub fn stdout_bytes(&self) -> Vec<u8> {
        self.stdout.bytes()
    }

    /// How many stdout lines so far contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.stdout.with_text(|text| count_lines(text, needle))
    }

    /// Waits until at least `n` stdout lines contain `needle` (false if
    /// they do not within `timeout`, or the server exits first).
    pub fn wait_for_count(&self, needle: &str, n: usize, timeout: Duration) -> bool {
        self.stdout.wait_for(timeout, |text| count_lines(text, needle) >= n).is_ok()
    }

    /// Stops reading the server's stdout, as a terminal paused with Ctrl+S
    /// or a pipe into a stalled program would: once the pipe is full, the
    /// server's next log write blocks. Reading resumes when the server
    /// exits or is dropped.
    pub fn pause_output(&self) {
        self.output_paused.store(true, Ordering::Relaxed);
    }

    /// Sends `signal` and waits up to `timeout` for the process to exit.
    /// If it is still running by then, gives it back (the drop kills it)
    /// with the time waited.
    pub fn try_stop(
        mut self,
        signal: libc::c_int,
        timeout: Duration,
    ) -> Result<Exited, (Box<Server>, String)> {
        // A server that is already gone was not stopped by the signal.
        if !self.process.is_running() {
            let why = format!("the server had already exited ({:?})", self.process.status());
            return Err((Box::new(self), why));
        }
        let sent = Instant::now();
        if let Err(why) = self.process.try_signal(signal) {
            return Err((Box::new(self), why));
        }
        match self.process.wait_exit(timeout) {
            Some(status) => Ok(self.exited(status, sent.elapsed())),
            None => {
                Err((Box::new(self), format!("still running {timeout:?} after signal {signal}")))
            }
        }
    }

    /// Sends `signal` and waits up to `timeout` for the process to exit.
    /// Panics (and the drop kills it) if it is still running by then.
    pub fn stop(self, signal: libc::c_int, timeout: Duration) -> Exited {
        self.try_stop(signal, timeout)
            .unwrap_or_else(|(server, why)| panic!("server: {why}:\n{}", server.stdout()))
    }

    /// Waits for the process to exit on its own (for servers that should
    /// refuse to start) and returns what it printed.
    pub fn finish(mut self, timeout: Duration) -> Exited {
        let started = Instant::now();
        let status = self.process.wait_exit(timeout).unwrap_or_else(|| {
            panic!("server did not exit within {timeout:?}:\n{}", self.stdout())
        });
        self.exited(status, started.elapsed())
    }

    fn exited(self, status: ExitStatus, elapsed: Duration) -> Exited {
        self.output_paused.store(false, Ordering::Relaxed);
        // The process is gone, so its pipes are closed and the readers end.
        self.stdout.join();
        self.stderr.join();
        let stdout_bytes = self.stdout_bytes();
        let stdout = String::from_utf8_lossy(&stdout_bytes).into_owned();
        Exited { status, elapsed, stdout, stdout_bytes, stderr: self.stderr() }
    }
}

impl Drop for Server {
    /// Lets the reader of a paused stdout finish; the process is killed
    /// as it is dropped.
    fn drop(&mut self) {
        self.output_paused.store(false, Ordering::Relaxed);
    }
}

/// How many lines of `text` contain `needle`.
fn count_lines(text: &str, needle: &str) -> usize {
    text.lines().filter(|line| line.contains(needle)).count()
}

/// The ports in every "Server listening on port N" line of `log`.
pub fn parse_listening_ports(log: &str) -> Vec<u16> {
    const MARK: &str = "Server listening on port ";
    log.lines()
        .filter_map(|line| {
            let rest = &line[line.find(MARK)? + MARK.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::panic_message;
    use std::panic::catch_unwind;

    #[test]
    fn a_server_that_dies_at_start_up_fails_at_once_with_its_status_and_stderr() {
        let started = Instant::now();
        let panic = catch_unwind(|| {
            let mut server =
                Server::spawn(Path::new("/bin/sh"), &["-c", "echo no luck >&2; exit 3"]);
            server.wait_for_ports(1);
        });
        let message = panic_message(panic.expect_err("waiting for ports must fail").as_ref());
        assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
        assert!(message.contains("exited at start-up"), "{message}");
        assert!(message.contains("exit status: 3"), "{message}");
        assert!(message.contains("no luck"), "{message}");
    }

    #[test]
    fn stdout_is_kept_byte_for_byte() {
        // printf's octal escapes: 0x9b is not UTF-8 on its own, 0x7f is.
        let server = Server::spawn(Path::new("/bin/sh"), &["-c", "printf 'a\\233\\177b\\n'"]);
        let exited = server.finish(Duration::from_secs(5));
        assert_eq!(exited.stdout_bytes, b"a\x9b\x7fb\n");
        // As text, the lone 0x9b is lost: a check must look at the bytes.
        assert_eq!(exited.stdout, "a\u{fffd}\u{7f}b\n");
    }

    #[test]
    fn listening_ports_are_read_from_the_log() {
        let log = "12:00:00.000 [INFO] xps_core_start() : Server listening on port 8001\n\
                   12:00:00.000 [DEBUG] other line\n\
                   [INFO] main() : Server listening on port 40123 (127.0.0.1)\n";
        assert_eq!(parse_listening_ports(log), vec![8001, 40123]);
    }
}
