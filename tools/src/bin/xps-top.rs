//! `xps-top`: one line a second about a running server: the CPU it used over
//! that second, its resident memory and its open file descriptors, read
//! from `/proc`. Stage 8's two experiments are read off it: an idle client
//! that costs a whole core, a backlog that costs memory.
//!
//! ```text
//! xps-top --port 8001            the process listening on port 8001
//! xps-top --pid 4242 --seconds 5 five lines, then stop
//! ```

use shared::cli::{Args, options_or_exit, unknown};
use shared::procfs;
use shared::units::format_bytes;
use std::fs;
use std::io;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "\
Usage: xps-top (--pid PID | --port PORT) [--seconds N]

Prints one line a second about a running process, from /proc: the CPU it
used over that second (100% is one whole core), its resident memory
(VmRSS) and how many file descriptors it has open. Stops when the process
exits, after N lines with --seconds, or at Ctrl+C.

Options:
  --pid PID      the process to watch
  --port PORT    watch the process listening on TCP port PORT
  --seconds N    stop after N lines (default: until the process exits)
  -h, --help     print this help";

/// How the process to watch is named on the command line.
#[derive(Debug, Clone, Copy)]
enum Target {
    Pid(u32),
    Port(u16),
}

/// What the command line asks for.
#[derive(Debug)]
struct Options {
    target: Target,
    lines: Option<u64>,
}

fn parse_args<S: AsRef<str>>(args: impl IntoIterator<Item = S>) -> Result<Option<Options>, String> {
    let mut target = None;
    let mut lines = None;
    let mut args = Args::new(args);
    while let Some(flag) = args.next() {
        let named = match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--pid" => Some(Target::Pid(args.number(&flag, 1..=u32::MAX)?)),
            "--port" => Some(Target::Port(args.port(&flag)?)),
            "--seconds" => {
                lines = Some(args.number(&flag, 1..=1_000_000)?);
                None
            }
            _ => return Err(unknown(&flag)),
        };
        if named.is_some() {
            if target.is_some() {
                return Err("give one of --pid and --port, once".to_string());
            }
            target = named;
        }
    }
    let target = target.ok_or("name the process to watch with --pid PID or --port PORT")?;
    Ok(Some(Options { target, lines }))
}

/// The pid to watch, or a one-line reason why there is none.
fn find_pid(target: Target) -> Result<u32, String> {
    match target {
        Target::Pid(pid) => Ok(pid),
        Target::Port(port) => match procfs::pid_listening_on(port) {
            Ok(Some(pid)) => Ok(pid),
            Ok(None) => {
                Err(format!("no process of yours listens on port {port} (is the server running?)"))
            }
            Err(err) => Err(format!("cannot read the listening sockets from /proc: {err}")),
        },
    }
}

/// What one look at the process shows.
struct Sample {
    taken: Instant,
    cpu: Duration,
    rss: u64,
    fds: usize,
}

/// Looks at process `pid` once. An error means it has exited (or, at the
/// first look, that it never existed or is not ours to read). A process
/// that has exited but not been reaped yet (a zombie) has no memory line
/// any more, so it reads as exited too.
fn sample(pid: u32) -> io::Result<Sample> {
    let taken = Instant::now();
    Ok(Sample {
        taken,
        cpu: procfs::cpu_time(pid)?,
        rss: procfs::rss_bytes(pid)?,
        fds: procfs::open_fds(pid)?,
    })
}

/// The line for the second from `before` to `now`.
fn line(second: u64, before: &Sample, now: &Sample) -> String {
    let wall = now.taken.duration_since(before.taken).as_secs_f64();
    let used = now.cpu.saturating_sub(before.cpu).as_secs_f64();
    let cpu = if wall > 0.0 { used / wall * 100.0 } else { 0.0 };
    format!("{second} s: cpu {cpu:.1}%, memory {}, {} fds", format_bytes(now.rss), now.fds)
}

/// The process's command name, as `/proc/PID/comm` gives it.
fn name_of(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|name| name.trim().to_string())
        .unwrap_or_default()
}

fn watch(options: &Options) -> Result<(), String> {
    let pid = find_pid(options.target)?;
    let mut before = sample(pid).map_err(|err| format!("cannot read /proc/{pid}: {err}"))?;
    let name = name_of(pid);
    println!("watching pid {pid} ({name}): cpu over each second (100% = one core), memory, fds");
    let started = before.taken;
    let mut second = 0;
    while options.lines.is_none_or(|lines| second < lines) {
        second += 1;
        // Aim at whole seconds from the start, so the lines do not drift.
        let due = started + Duration::from_secs(second);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let Ok(now) = sample(pid) else {
            println!("pid {pid} ({name}) has exited");
            return Ok(());
        };
        println!("{}", line(second, &before, &now));
        before = now;
    }
    Ok(())
}

fn main() -> ExitCode {
    let options = match options_or_exit("xps-top", USAGE, parse_args(std::env::args().skip(1))) {
        Ok(options) => options,
        Err(status) => return status,
    };
    match watch(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xps-top: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_read() {
        let options = parse_args(["--port", "8001", "--seconds", "3"]).unwrap().unwrap();
        assert!(matches!(options.target, Target::Port(8001)));
        assert_eq!(options.lines, Some(3));
        let options = parse_args(["--pid", "42"]).unwrap().unwrap();
        assert!(matches!(options.target, Target::Pid(42)));
        assert_eq!(options.lines, None);
        assert!(parse_args(["--help"]).unwrap().is_none());
    }

    #[test]
    fn bad_flags_are_one_line_errors() {
        for bad in [
            &[][..],
            &["--seconds", "2"],
            &["--pid", "1", "--port", "8001"],
            &["--pid", "0"],
            &["--port", "0"],
            &["--seconds", "0", "--pid", "1"],
            &["--bogus"],
        ] {
            let message = parse_args(bad).err().unwrap_or_else(|| panic!("{bad:?} was accepted"));
            assert!(!message.contains('\n'), "{message}");
        }
    }

    #[test]
    fn a_line_shows_the_share_of_one_core() {
        let start = Instant::now();
        let before = Sample { taken: start, cpu: Duration::ZERO, rss: 0, fds: 3 };
        let now = Sample {
            taken: start + Duration::from_secs(2),
            cpu: Duration::from_millis(500),
            rss: 3 << 20,
            fds: 13,
        };
        assert_eq!(line(2, &before, &now), "2 s: cpu 25.0%, memory 3.0 MiB, 13 fds");
    }
}
