//! `sender`: a client that sends and never reads, for Experiment 1 of stage 7.
//!
//! It is the Rust counterpart of the course's `sender.c`:
//!
//! ```text
//! sender                        type lines; each is sent as you press Enter
//! sender < huge_file.dat        stream a file; progress and stalls on stderr
//! sender --port 8002 --exit-at-eof < file
//! ```
//!
//! It never reads what the server sends back. The server's replies pile up,
//! first in our receive buffer, then in the server's send buffer, until the
//! server's blocking `send()` cannot go on and the whole server waits.

use shared::cli::{Args, options_or_exit, resolve, unknown};
use shared::progress::{OffTerminal, ProgressLine, Rate};
use shared::units::format_bytes;
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "\
Usage: sender [--host HOST] [--port PORT] [--exit-at-eof]

Connects to HOST:PORT and sends what it reads on stdin, never reading the
replies. From a terminal it sends each line you type; from a file or a
pipe (sender < huge_file.dat) it streams everything and shows progress.

Options:
  --host HOST     server address (default 127.0.0.1; a name is tried at
                  each of its addresses, IPv4 first)
  --port PORT     server port, 1 to 65535 (default 8001)
  --exit-at-eof   close the connection at the end of input instead of
                  keeping it open until Ctrl+C
  -h, --help      print this help";

/// How long one `send()` may block before we look at the clock again.
const TICK: Duration = Duration::from_millis(100);

/// No progress for this long counts as a stall.
const STALL_AFTER: Duration = Duration::from_secs(1);

/// How much of stdin is read and sent at a time.
const CHUNK: usize = 256 * 1024;

struct Options {
    host: String,
    port: u16,
    exit_at_eof: bool,
}

fn parse_args<S: AsRef<str>>(args: impl IntoIterator<Item = S>) -> Result<Option<Options>, String> {
    let mut options = Options { host: "127.0.0.1".to_string(), port: 8001, exit_at_eof: false };
    let mut args = Args::new(args);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--exit-at-eof" => options.exit_at_eof = true,
            "--host" => options.host = args.value(&flag)?,
            "--port" => options.port = args.port(&flag)?,
            _ => return Err(unknown(&flag)),
        }
    }
    Ok(Some(options))
}

/// Connects to the first of `host`'s addresses that answers, IPv4 first.
fn connect(host: &str, port: u16) -> Result<TcpStream, String> {
    let addrs = resolve(host, &[port])?.concat();
    TcpStream::connect(&addrs[..]).map_err(|err| format!("cannot connect to {host}:{port}: {err}"))
}

fn main() -> ExitCode {
    let options = match options_or_exit("sender", USAGE, parse_args(std::env::args().skip(1))) {
        Ok(options) => options,
        Err(status) => return status,
    };
    let stream = match connect(&options.host, options.port) {
        Ok(stream) => stream,
        Err(message) => {
            eprintln!("sender: {message}");
            return ExitCode::FAILURE;
        }
    };
    let result = if io::stdin().is_terminal() {
        send_typed_lines(stream)
    } else {
        stream_stdin(stream, options.exit_at_eof)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sender: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Interactive mode, as `sender.c`: prompt, read a line, send it, confirm.
/// Ends at end of input (Ctrl+D).
fn send_typed_lines(mut stream: TcpStream) -> Result<(), String> {
    let mut stdin = io::stdin().lock();
    let mut line = Vec::new();
    loop {
        print!("Enter message to send: ");
        let _ = io::stdout().flush();
        line.clear();
        match stdin.read_until(b'\n', &mut line) {
            Ok(0) => {
                println!();
                return Ok(());
            }
            Ok(_) => {}
            Err(err) => return Err(format!("cannot read stdin: {err}")),
        }
        stream.write_all(&line).map_err(|err| format!("the server is gone: {err}"))?;
        println!("Message sent to server");
    }
}

/// Streaming mode: send all of stdin, showing progress and stalls; then
/// keep the connection open (still not reading) unless `exit_at_eof`.
fn stream_stdin(mut stream: TcpStream, exit_at_eof: bool) -> Result<(), String> {
    // send() gives control back every TICK even when it cannot progress,
    // so that the progress display can say the server has stalled.
    stream.set_write_timeout(Some(TICK)).map_err(|err| format!("setsockopt: {err}"))?;
    let mut progress = Progress::new(io::stderr().is_terminal());
    let mut stdin = io::stdin().lock();
    let mut chunk = vec![0; CHUNK];
    loop {
        let n = match stdin.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(format!("cannot read stdin: {err}")),
        };
        let mut pending = &chunk[..n];
        while !pending.is_empty() {
            match stream.write(pending) {
                Ok(0) => return Err(progress.fail("the server is gone: send() wrote nothing")),
                Ok(written) => {
                    pending = &pending[written..];
                    progress.sent(written);
                }
                Err(err) if is_no_progress(&err) => {}
                Err(err) => return Err(progress.fail(&format!("the server is gone: {err}"))),
            }
            progress.tick();
        }
    }
    progress.line.finish();
    eprintln!("end of input: sent {} in all", format_bytes(progress.total));
    if exit_at_eof {
        return Ok(());
    }
    eprintln!("keeping the connection open without reading; press Ctrl+C to quit");
    wait_for_server_to_close(&stream);
    Err("the server closed the connection".to_string())
}

/// Errors that only mean "nothing was sent during this tick".
fn is_no_progress(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Sleeps until the server closes its side of the connection, without
/// reading anything (reading would end the experiment's stall).
fn wait_for_server_to_close(stream: &TcpStream) {
    let mut watch = libc::pollfd { fd: stream.as_raw_fd(), events: libc::POLLRDHUP, revents: 0 };
    loop {
        // SAFETY: `watch` is one valid pollfd, and we pass a count of 1.
        let ready = unsafe { libc::poll(&mut watch, 1, -1) };
        let interrupted =
            ready == -1 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted;
        if !interrupted {
            return;
        }
    }
}

/// The progress display on stderr: a line redrawn in place on a terminal,
/// a plain line every second otherwise (see [`Progress::tick`]).
struct Progress {
    line: ProgressLine,
    started: Instant,
    /// Bytes sent so far.
    total: u64,
    /// When a send() last made progress.
    last_progress: Instant,
    /// When the display was last updated.
    last_draw: Instant,
    /// Bytes per second.
    rate: Rate,
}

impl Progress {
    fn new(on_terminal: bool) -> Progress {
        let now = Instant::now();
        Progress {
            line: ProgressLine::new(on_terminal, OffTerminal::EachChange),
            started: now,
            total: 0,
            last_progress: now,
            last_draw: now,
            rate: Rate::new(now),
        }
    }

    fn sent(&mut self, bytes: usize) {
        self.total += bytes as u64;
        self.last_progress = Instant::now();
    }

    /// Updates the display if it is due: ten times a second on a terminal;
    /// otherwise once a second, and during a stall as soon as it has lasted
    /// one more whole second, so that no second is skipped when ticks come
    /// late on a busy machine.
    fn tick(&mut self) {
        let now = Instant::now();
        let on_terminal = self.line.on_terminal();
        let interval =
            if on_terminal { Duration::from_millis(100) } else { Duration::from_secs(1) };
        // A stall's status does not show the rate, so any rate will do to
        // see whether it says a new second.
        let new_stall_second = !on_terminal
            && now.duration_since(self.last_progress) >= STALL_AFTER
            && self.line.is_new(&self.status(now, 0.0));
        if now.duration_since(self.last_draw) < interval && !new_stall_second {
            return;
        }
        self.last_draw = now;
        let rate = self.rate.update(self.total, now);
        self.line.show(&self.status(now, rate));
    }

    fn status(&self, now: Instant, rate: f64) -> String {
        let stalled = now.duration_since(self.last_progress);
        let sent = format_bytes(self.total);
        if stalled >= STALL_AFTER {
            format!("sent {sent}; stalled for {} s: the server is not reading", stalled.as_secs())
        } else {
            format!(
                "sent {sent} at {}/s ({:.0} s)",
                format_bytes(rate as u64),
                now.duration_since(self.started).as_secs_f64()
            )
        }
    }

    /// Ends the display before an error message, with the final count.
    fn fail(&mut self, message: &str) -> String {
        self.line.finish();
        format!("{message} (after sending {})", format_bytes(self.total))
    }
}
