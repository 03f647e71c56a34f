//! `xps-bench`: a ping-pong load generator for the server of any stage.
//!
//! ```text
//! xps-bench                                  10 clients on 127.0.0.1:8001 for 5 s
//! xps-bench --conns 100 --idle 10000 --seconds 3
//! xps-bench --port 8002 --msg-size 512 --stage 6
//! ```
//!
//! It first opens `--idle` connections that it never uses, then `--conns`
//! active ones. Each active connection sends a line of `--msg-size` bytes,
//! reads the whole reply, checks it is exactly what the stage's protocol
//! says (the reverse up to stage 9, the line itself from stage 10), and
//! sends the next line. Once every active connection has had its first reply, it counts
//! for `--seconds`, then prints messages per second, latency percentiles
//! and errors, and a last `result:` line of `key=value` pairs for scripts.
//!
//! All the sockets are non-blocking and served by one epoll loop in one
//! thread, so that the generator costs far less than the server it loads:
//! the `cpu` figure it prints says how much of a core it used.
//!
//! With `--bulk SIZE` it does something else: one connection sends SIZE
//! bytes and reads them back at the same time, every byte checked, and
//! prints the rate in MiB/s; with `--pid PID` also how far that process's
//! resident memory grew meanwhile (see `bulk.rs`).

mod bench;
mod bulk;
mod conn;
mod histogram;
mod report;

use bench::Bench;
use report::Report;
use shared::cli::{Args, options_or_exit, resolve, unknown};
use shared::client::connect_first;
use shared::stages::{self, Stage};
use std::io;
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

/// The usage, with the stages this workspace has.
fn usage() -> String {
    let stages = stages::numbers_in_words();
    format!(
        "\
Usage: xps-bench [--stage N] [--host HOST] [--port PORT] [--conns K] [--idle I]
                 [--seconds S] [--msg-size M] [--timeout T]
       xps-bench --bulk SIZE [--pid PID] [--host HOST] [--port PORT] [--timeout T]

Loads the server of stage N with K clients that each send an M-byte line,
wait for the reply and send the next, after opening I clients that never
send. Every reply is checked: the line reversed up to stage 9, the line
itself from stage 10. Prints msgs/s, latency and errors, then one line of
key=value pairs:
  result: msgs_per_s=... p50_us=... p99_us=... max_us=... errors=... ...
Exits with status 0 only if there were no errors and at least one message.

With --bulk, one connection sends SIZE bytes and reads them back at the
same time, from a server that writes back (stage 10 on, or a proxy in
front of an echo: stage 11, nginx, haproxy); every byte is checked. It
prints the rate and, with --pid, how far that process's memory (VmRSS)
rose meanwhile, then
  result: bulk_bytes=... seconds=... mib_per_s=... errors=... rss_growth_kib=...

Options:
  --stage N        the stage whose replies to expect: {stages} (default 7)
  --host HOST      server address (default 127.0.0.1); a name with several
                   addresses (localhost) is tried at each, IPv4 first, with
                   one connection closed at once, and the run uses the
                   first that answers
  --port PORT      server port, 1 to 65535 (default 8001)
  --conns K        active connections, 1 to 100000 (default 10)
  --idle I         connections opened first and never used, 0 to 1000000
                   (default 0)
  --seconds S      how long to measure, after the warm-up (default 5, at
                   most 3600)
  --msg-size M     bytes per message, newline included, 1 to 65536
                   (default 64); a reverse server that gets a long message
                   in pieces reverses each piece, so keep it small
  --timeout T      seconds a reply may take before it counts as an error
                   (default 3, at most 60); with --bulk, the longest
                   nothing may move either way
  --bulk SIZE      the bulk transfer instead of the ping-pong: SIZE bytes
                   (such as 1G) sent and read back at once
  --pid PID        with --bulk: the process whose memory to sample every
                   20 ms during the transfer (the server or proxy)
  -h, --help       print this help"
    )
}

#[derive(Debug, Clone, PartialEq)]
struct Options {
    stage: &'static Stage,
    host: String,
    port: u16,
    conns: usize,
    idle: usize,
    seconds: Duration,
    msg_size: usize,
    timeout: Duration,
    /// `--bulk`: the bytes of the bulk transfer, instead of the ping-pong.
    bulk: Option<u64>,
    /// `--pid`: the process whose memory the bulk transfer samples.
    pid: Option<u32>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            stage: stages::stage(7).expect("stage 7 is in the table"),
            host: "127.0.0.1".to_string(),
            port: 8001,
            conns: 10,
            idle: 0,
            seconds: Duration::from_secs(5),
            msg_size: 64,
            timeout: Duration::from_secs(3),
            bulk: None,
            pid: None,
        }
    }
}

fn parse_args<S: AsRef<str>>(args: impl IntoIterator<Item = S>) -> Result<Option<Options>, String> {
    let mut options = Options::default();
    let mut args = Args::new(args);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--stage" => options.stage = args.stage(&flag)?,
            "--host" => options.host = args.value(&flag)?,
            "--port" => options.port = args.port(&flag)?,
            "--conns" => options.conns = args.number(&flag, 1..=100_000)?,
            "--idle" => options.idle = args.number(&flag, 0..=1_000_000)?,
            "--msg-size" => options.msg_size = args.number(&flag, 1..=65536)?,
            "--seconds" => options.seconds = args.seconds(&flag, 3600.0)?,
            "--timeout" => options.timeout = args.seconds(&flag, 60.0)?,
            "--bulk" => {
                let size = args.size(&flag)?;
                if size == 0 {
                    return Err(format!("{flag}: the size must be above 0"));
                }
                options.bulk = Some(size);
            }
            "--pid" => options.pid = Some(args.number(&flag, 1..=u32::MAX)?),
            _ => return Err(unknown(&flag)),
        }
    }
    if options.pid.is_some() && options.bulk.is_none() {
        return Err("--pid: only the bulk transfer (--bulk SIZE) samples a process".to_string());
    }
    Ok(Some(options))
}

fn main() -> ExitCode {
    let parsed = parse_args(std::env::args().skip(1));
    let options = match options_or_exit("xps-bench", &usage(), parsed) {
        Ok(options) => options,
        Err(status) => return status,
    };
    if let Some(size) = options.bulk {
        return match run_bulk(&options, size) {
            Ok(report) => {
                report.print(&options);
                if report.error.is_none() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
            }
            Err(message) => {
                eprintln!("xps-bench: {message}");
                ExitCode::FAILURE
            }
        };
    }
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

/// How long the connection that picks one of several addresses may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Resolves the address, makes room for the sockets, and runs the loop.
fn run(options: &Options) -> Result<Report, String> {
    let addr = pick_address(&resolve(&options.host, &[options.port])?.concat());
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

/// Resolves the address and runs the bulk transfer.
fn run_bulk(options: &Options, size: u64) -> Result<bulk::BulkReport, String> {
    let addr = pick_address(&resolve(&options.host, &[options.port])?.concat());
    bulk::run(options, addr, size)
}

/// The address to load, from `addrs` (IPv4 first): the only one, or else
/// the first that accepts a connection (closed at once), so that a server
/// on 127.0.0.1 is found even where "localhost" is ::1 first. If none
/// answers, the first: the run then counts its connections as failed.
fn pick_address(addrs: &[SocketAddr]) -> SocketAddr {
    if let [only] = addrs {
        return *only;
    }
    let probe = |addr| TcpStream::connect_timeout(&addr, PROBE_TIMEOUT);
    connect_first(addrs, probe).map_or(addrs[0], |(_, answered)| answered)
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

    #[test]
    fn flags_are_parsed_and_checked() {
        assert_eq!(parse_args::<&str>([]), Ok(Some(Options::default())));
        let options = parse_args([
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
        assert_eq!(options.seconds, Duration::from_millis(500));
        assert_eq!(options.stage.number, 7);
        assert_eq!(parse_args(["--stage", "6"]).unwrap().unwrap().stage.number, 6);
        assert_eq!(parse_args(["--help"]), Ok(None));
        assert!(parse_args(["--conns", "0"]).is_err());
        assert!(parse_args(["--msg-size", "0"]).is_err());
        assert!(parse_args(["--seconds", "-1"]).is_err());
        assert!(parse_args(["--seconds", "NaN"]).is_err());
        assert!(parse_args(["--port"]).is_err());
        assert!(parse_args(["--port", "0"]).is_err());
        assert!(parse_args(["--stage", "5"]).is_err());
        assert!(parse_args(["--bogus"]).is_err());
    }

    #[test]
    fn bulk_takes_a_size_and_a_pid() {
        let options = parse_args(["--bulk", "1G", "--pid", "42"]).unwrap().unwrap();
        assert_eq!((options.bulk, options.pid), (Some(1 << 30), Some(42)));
        assert!(parse_args(["--bulk", "0"]).is_err());
        assert!(parse_args(["--bulk", "lots"]).is_err());
        assert!(parse_args(["--pid", "42"]).is_err(), "a pid with nothing to sample it for");
    }

    #[test]
    fn the_first_address_that_answers_is_loaded() {
        use std::net::{Ipv4Addr, TcpListener};
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let open = listener.local_addr().unwrap();
        // Bound, then let go: nothing listens there.
        let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap();
        assert_eq!(pick_address(&[closed, open]), open);
        assert_eq!(pick_address(&[open, closed]), open);
        assert_eq!(pick_address(&[closed]), closed);
    }
}
