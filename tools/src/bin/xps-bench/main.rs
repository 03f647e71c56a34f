//! `xps-bench`: a ping-pong load generator for any reverse server.
//!
//! ```text
//! xps-bench                                  10 clients on 127.0.0.1:8001 for 5 s
//! xps-bench --conns 100 --idle 10000 --seconds 3
//! xps-bench --port 8002 --msg-size 512
//! ```
//!
//! It first opens `--idle` connections that it never uses, then `--conns`
//! active ones. Each active connection sends a line of `--msg-size` bytes,
//! reads the whole reply, checks it is the exact reverse, and sends the next
//! line. Once every active connection has had its first reply, it counts
//! for `--seconds`, then prints messages per second, latency percentiles
//! and errors, and a last `result:` line of `key=value` pairs for scripts.
//!
//! All the sockets are non-blocking and served by one epoll loop in one
//! thread, so that the generator costs far less than the server it loads:
//! the `cpu` figure it prints says how much of a core it used.

mod bench;
mod conn;
mod histogram;
mod progress;
mod report;

use bench::Bench;
use report::Report;
use shared::cli::options_or_exit;
use std::io;
use std::mem::MaybeUninit;
use std::net::ToSocketAddrs;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
Usage: xps-bench [--host HOST] [--port PORT] [--conns K] [--idle I]
                 [--seconds S] [--msg-size M] [--timeout T]

Loads a reverse server with K clients that each send an M-byte line, wait
for its reverse and send the next, after opening I clients that never send.
Prints msgs/s, latency and errors, then one line of key=value pairs:
  result: msgs_per_s=... p50_us=... p99_us=... max_us=... errors=... ...
Exits with status 0 only if there were no errors and at least one message.

Options:
  --host HOST      server address (default 127.0.0.1)
  --port PORT      server port (default 8001)
  --conns K        active connections (default 10)
  --idle I         connections opened first and never used (default 0)
  --seconds S      how long to measure, after the warm-up (default 5)
  --msg-size M     bytes per message, newline included, 1 to 65536
                   (default 64); a server that gets a long message in
                   pieces reverses each piece, so keep it small
  --timeout T      seconds a reply may take before it counts as an error
                   (default 3)
  -h, --help       print this help";

#[derive(Debug, Clone, PartialEq)]
struct Options {
    host: String,
    port: u16,
    conns: usize,
    idle: usize,
    seconds: f64,
    msg_size: usize,
    timeout: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            host: "127.0.0.1".to_string(),
            port: 8001,
            conns: 10,
            idle: 0,
            seconds: 5.0,
            msg_size: 64,
            timeout: Duration::from_secs(3),
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options::default();
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--host" => options.host = value("--host")?,
            "--port" => options.port = number(&value("--port")?, "a port", 1, 65535)?,
            "--conns" => options.conns = number(&value("--conns")?, "a count", 1, 100_000)?,
            "--idle" => options.idle = number(&value("--idle")?, "a count", 0, 1_000_000)?,
            "--msg-size" => options.msg_size = number(&value("--msg-size")?, "a size", 1, 65536)?,
            "--seconds" => options.seconds = seconds(&value("--seconds")?, 3600.0)?,
            "--timeout" => {
                options.timeout = Duration::from_secs_f64(seconds(&value("--timeout")?, 60.0)?)
            }
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    Ok(Some(options))
}

/// Parses a whole number in `min..=max`; `what` names it in the error.
fn number<T: TryFrom<u64>>(text: &str, what: &str, min: u64, max: u64) -> Result<T, String> {
    let bad = || format!("'{text}' is not {what} from {min} to {max}");
    let value: u64 = text.parse().map_err(|_| bad())?;
    if !(min..=max).contains(&value) {
        return Err(bad());
    }
    T::try_from(value).map_err(|_| bad())
}

/// Parses a number of seconds, more than 0 and at most `max`.
fn seconds(text: &str, max: f64) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value > 0.0 && value <= max => Ok(value),
        _ => Err(format!("'{text}' is not a number of seconds above 0 and up to {max}")),
    }
}

fn main() -> ExitCode {
    let options = match options_or_exit("xps-bench", USAGE, parse_args(std::env::args().skip(1))) {
        Ok(options) => options,
        Err(status) => return status,
    };
    match run(&options) {
        Ok(report) => {
            report.print(&options);
            if report.errors() == 0 && report.msgs > 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(message) => {
            eprintln!("xps-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves the address, makes room for the sockets, and runs the loop.
fn run(options: &Options) -> Result<Report, String> {
    let addr = (options.host.as_str(), options.port)
        .to_socket_addrs()
        .map_err(|err| format!("cannot resolve '{}': {err}", options.host))?
        .next()
        .ok_or_else(|| format!("'{}' has no address", options.host))?;
    // Every connection is a file descriptor; leave a few for stdio and epoll.
    let needed = (options.conns + options.idle + 16) as u64;
    let limit = raise_fd_limit().map_err(|err| format!("cannot raise the fd limit: {err}"))?;
    if limit < needed {
        return Err(format!(
            "{} connections need about {needed} file descriptors, but the hard limit is \
             {limit}; raise it (ulimit -Hn, or LimitNOFILE) or open fewer",
            options.conns + options.idle
        ));
    }
    let mut bench = Bench::new(options, addr).map_err(|err| format!("epoll_create1(): {err}"))?;
    bench.run().map_err(|err| format!("epoll_wait(): {err}"))?;
    Ok(bench.report())
}

/// Raises the soft limit on open files to the hard limit, and returns it.
fn raise_fd_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid rlimit that outlives the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == -1 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `limit` is a valid rlimit that outlives the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

/// CPU time (user + system) this process has used so far.
fn cpu_time() -> Duration {
    let mut usage = MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: `usage` is valid for writing one rusage and outlives the call.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } == -1 {
        return Duration::ZERO;
    }
    // SAFETY: getrusage() succeeded, so it filled in `usage`.
    let usage = unsafe { usage.assume_init() };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Options>, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn flags_are_parsed_and_checked() {
        assert_eq!(parse(&[]), Ok(Some(Options::default())));
        let options = parse(&[
            "--port",
            "9000",
            "--conns",
            "100",
            "--idle",
            "10000",
            "--seconds",
            "0.5",
            "--msg-size",
            "128",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            (options.port, options.conns, options.idle, options.msg_size),
            (9000, 100, 10000, 128)
        );
        assert_eq!(options.seconds, 0.5);
        assert_eq!(parse(&["--help"]), Ok(None));
        assert!(parse(&["--conns", "0"]).is_err());
        assert!(parse(&["--msg-size", "0"]).is_err());
        assert!(parse(&["--seconds", "-1"]).is_err());
        assert!(parse(&["--seconds", "NaN"]).is_err());
        assert!(parse(&["--port"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
    }
}
