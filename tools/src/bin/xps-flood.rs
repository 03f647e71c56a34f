//! `xps-flood`: stage 8's memory experiment as one command, with a figure:
//! one client sends without ever reading while the server's resident
//! memory is read from `/proc` every 20 ms, and the growth is printed.
//!
//! ```text
//! xps-flood --port 8001                     up to 1 GiB, or until it stalls
//! xps-flood --port 8001 --write-size 64     the same in 64-byte writes
//! xps-flood --port 8001 --stop-above 64M    stop once the server grew 64 MiB
//! ```
//!
//! A server that queues everything (stages 8 and 9) grows with every byte;
//! one with pipes (stage 10) stops reading from the client once its pipe
//! is full, the writes stall, and the growth stays near one pipe. It uses
//! the flood and the sampler of the `memory-bound` check
//! (`shared::memory`), so the two report the same figure.

use shared::cli::{Args, options_or_exit, resolve, unknown};
use shared::client::connect_first;
use shared::memory::{Flood, Outgoing, Stop, Watched, flood_watching};
use shared::procfs;
use shared::units::format_bytes;
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
Usage: xps-flood [--host HOST] [--port PORT] [--pid PID] [--bytes SIZE]
                 [--seconds S] [--write-size N] [--stop-above SIZE]

One client connects to HOST:PORT and sends up to SIZE bytes without ever
reading what comes back, until its writes make no progress for 300 ms (the
server has stopped reading from it), SIZE has gone out, or S seconds have
passed. All the while it reads the server's resident memory (VmRSS) from
/proc every 20 ms, and at the end prints how far it rose above where it
was before the flood, then one line of key=value pairs for scripts:
  result: sent=... stop=stalled|bytes|time|memory|gone rss_before_kib=...
          rss_peak_kib=... rss_growth_kib=... seconds=...
The server is the process listening on PORT (found in /proc, so HOST must
be this machine) unless --pid names it.

Options:
  --host HOST        server address (default 127.0.0.1)
  --port PORT        server port, 1 to 65535 (default 8001)
  --pid PID          the server's process (default: the one listening on PORT)
  --bytes SIZE       the most to send, such as 200M or 1G (default 1G)
  --seconds S        the longest to send for (default 30, at most 600)
  --write-size N     bytes per write, 1 to 1048576 (default 65536; 64 makes
                     many small chunks in the server)
  --stop-above SIZE  stop as soon as the memory has grown by more than SIZE
                     (default: never), so that a server that queues
                     everything does not take SIZE of memory
  -h, --help         print this help

Exit status: 0 once the flood has run, whatever the figure; 1 if it could
not (no server, its memory unreadable, the connection dropped); 2 for bad
flags.";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
struct Options {
    host: String,
    port: u16,
    pid: Option<u32>,
    bytes: u64,
    seconds: Duration,
    write_size: usize,
    stop_above: Option<u64>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            host: "127.0.0.1".to_string(),
            port: 8001,
            pid: None,
            bytes: 1 << 30,
            seconds: Duration::from_secs(30),
            write_size: 64 * 1024,
            stop_above: None,
        }
    }
}

/// `bytes`, the value of the size `flag`, if it is above 0.
fn above_0(flag: &str, bytes: u64) -> Result<u64, String> {
    if bytes == 0 { Err(format!("{flag}: the size must be above 0")) } else { Ok(bytes) }
}

fn parse_args<S: AsRef<str>>(args: impl IntoIterator<Item = S>) -> Result<Option<Options>, String> {
    let mut options = Options::default();
    let mut args = Args::new(args);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--host" => options.host = args.value(&flag)?,
            "--port" => options.port = args.port(&flag)?,
            "--pid" => options.pid = Some(args.number(&flag, 1..=u32::MAX)?),
            "--bytes" => options.bytes = above_0(&flag, args.size(&flag)?)?,
            "--seconds" => options.seconds = args.seconds(&flag, 600.0)?,
            "--write-size" => options.write_size = args.number(&flag, 1..=1 << 20)?,
            "--stop-above" => options.stop_above = Some(above_0(&flag, args.size(&flag)?)?),
            _ => return Err(unknown(&flag)),
        }
    }
    Ok(Some(options))
}

/// The word for how a flood stopped, in the result line.
fn stop_word(stop: &Stop) -> &'static str {
    match stop {
        Stop::Stalled => "stalled",
        Stop::Bytes => "bytes",
        Stop::Time => "time",
        Stop::Asked => "memory",
        Stop::Gone(_) => "gone",
    }
}

fn run(options: &Options) -> Result<Watched, String> {
    let addrs = resolve(&options.host, &[options.port])?.concat();
    let pid = match options.pid {
        Some(pid) => pid,
        None if addrs.iter().all(|addr| addr.ip().is_loopback()) => {
            procfs::pid_listening_on(options.port)
                .map_err(|err| format!("cannot read the listening sockets from /proc: {err}"))?
                .ok_or_else(|| {
                    format!(
                        "no process of yours listens on port {} (is the server running?)",
                        options.port
                    )
                })?
        }
        None => {
            return Err(format!(
                "{} is not this machine: name the server's process with --pid, or run \
                 xps-flood where the server runs",
                options.host
            ));
        }
    };
    let connect = |addr| TcpStream::connect_timeout(&addr, Duration::from_secs(5));
    let (stream, _) = connect_first(&addrs, connect)
        .map_err(|_| format!("cannot connect to {}:{}", options.host, options.port))?;
    // Small writes must leave as small segments, not be merged by Nagle.
    stream.set_nodelay(true).map_err(|err| format!("TCP_NODELAY: {err}"))?;
    let flood =
        Flood { write_size: options.write_size, ..Flood::new(options.bytes, options.seconds) };
    let watched = flood_watching(&stream, pid, &flood, &mut Outgoing::new(1), options.stop_above)
        .map_err(|err| format!("cannot read the memory of pid {pid}: {err}"))?;
    if let Stop::Gone(err) = &watched.run.stop {
        return Err(format!(
            "the server dropped the connection after {}: {err}",
            format_bytes(watched.run.sent)
        ));
    }
    Ok(watched)
}

/// The human lines and the result line.
fn report(Watched { run, rss }: &Watched) -> String {
    let how = match run.stop {
        Stop::Stalled => "then the server stopped reading (no progress for 300 ms)",
        Stop::Bytes => "all of it: the server kept reading",
        Stop::Time => "until the time ran out: the server kept reading",
        Stop::Asked => "until the server's memory had grown past --stop-above",
        Stop::Gone(_) => "until the server dropped the connection",
    };
    let kib = |bytes: u64| bytes / 1024;
    format!(
        "sent {} in {:.2} s, {how}\nserver memory: {} before, {} at most: grew by {} \
         ({} samples)\nresult: sent={} stop={} rss_before_kib={} rss_peak_kib={} \
         rss_growth_kib={} seconds={:.2}",
        format_bytes(run.sent),
        run.took.as_secs_f64(),
        format_bytes(rss.baseline),
        format_bytes(rss.peak),
        format_bytes(rss.growth()),
        rss.samples,
        run.sent,
        stop_word(&run.stop),
        kib(rss.baseline),
        kib(rss.peak),
        kib(rss.growth()),
        run.took.as_secs_f64()
    )
}

fn main() -> ExitCode {
    let options = match options_or_exit("xps-flood", USAGE, parse_args(std::env::args().skip(1))) {
        Ok(options) => options,
        Err(status) => return status,
    };
    match run(&options) {
        Ok(watched) => {
            println!("{}", report(&watched));
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("xps-flood: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::memory::{FloodRun, MIB as M, Rss};

    #[test]
    fn flags_are_read() {
        assert_eq!(parse_args::<&str>([]).unwrap(), Some(Options::default()));
        let options = parse_args([
            "--port",
            "9001",
            "--pid",
            "42",
            "--bytes",
            "200M",
            "--write-size",
            "64",
            "--stop-above",
            "64M",
        ])
        .unwrap()
        .unwrap();
        assert_eq!((options.port, options.pid, options.bytes), (9001, Some(42), 200 * M));
        assert_eq!((options.write_size, options.stop_above), (64, Some(64 * M)));
        assert!(parse_args(["--help"]).unwrap().is_none());
    }

    #[test]
    fn bad_flags_are_one_line_errors() {
        for bad in [
            &["--bytes", "0"][..],
            &["--bytes", "lots"],
            &["--port", "0"],
            &["--write-size", "0"],
            &["--seconds", "0"],
            &["--stop-above"],
            &["--bogus"],
        ] {
            let message = parse_args(bad).err().unwrap_or_else(|| panic!("{bad:?} was accepted"));
            assert!(!message.contains('\n'), "{message}");
        }
    }

    #[test]
    fn the_result_line_has_every_figure() {
        let watched = Watched {
            run: FloodRun { sent: 9 * M, stop: Stop::Stalled, took: Duration::from_millis(500) },
            rss: Rss { baseline: 2 * M, peak: 3 * M, last: 3 * M, samples: 25 },
        };
        let text = report(&watched);
        let result = text.lines().last().unwrap();
        assert_eq!(
            result,
            format!(
                "result: sent={} stop=stalled rss_before_kib=2048 rss_peak_kib=3072 \
                 rss_growth_kib=1024 seconds=0.50",
                9 * M
            )
        );
        assert!(text.contains("grew by 1.0 MiB"), "{text}");
    }
}
