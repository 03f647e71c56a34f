//! What every tool does with its command line: the flags read one by one
//! ([`Args`]), their values checked the same way in every tool (numbers,
//! seconds, sizes, ports, stages), the result turned into options or an exit
//! status ([`options_or_exit`]), and the host resolved to the addresses to
//! try, IPv4 first ([`resolve`]).
//!
//! The error messages are one line each and name the flag first
//! (`--ports: '0' names no port ...`), so a learner who mistypes a flag in
//! any tool reads the same words.

use crate::stages::{self, Stage};
use crate::units::parse_size;
use std::fmt::Display;
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::RangeInclusive;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

/// Turns the result of a tool's flag parser into its options, or into the
/// exit status to return at once: `Ok(None)` means `--help` (the usage on
/// stdout, status 0); an error is one line naming the tool, then the usage,
/// on stderr, status 2.
///
/// It also gives SIGPIPE back its default action, as a command-line tool
/// has in C: `xps-check | head` then ends quietly when `head` stops
/// reading, where Rust's default (SIGPIPE ignored) makes `println!` panic.
/// Sockets are not affected: `TcpStream` sends with `MSG_NOSIGNAL`.
///
/// ```text
/// let options = match options_or_exit("sender", USAGE, parse_args(args)) {
///     Ok(options) => options,
///     Err(status) => return status,
/// };
/// ```
pub fn options_or_exit<T>(
    tool: &str,
    usage: &str,
    parsed: Result<Option<T>, String>,
) -> Result<T, ExitCode> {
    // SAFETY: signal() with SIG_DFL takes no pointers; the tools are still
    // single-threaded when they parse their flags.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    match parsed {
        Ok(Some(options)) => Ok(options),
        Ok(None) => {
            println!("{usage}");
            Err(ExitCode::SUCCESS)
        }
        Err(message) => {
            eprintln!("{tool}: {message}\n\n{usage}");
            Err(ExitCode::from(2))
        }
    }
}

/// A tool's arguments (without the program name), read flag by flag; each
/// flag takes its value with the method for its kind.
///
/// They may be `String`s (`std::env::args()`) or anything else that reads
/// as text, so a tool's tests pass a list as it is written
/// (`parse_args(["--port", "9001"])`) to the very parser `main` uses.
///
/// ```text
/// let mut args = Args::new(std::env::args().skip(1));
/// while let Some(flag) = args.next() {
///     match flag.as_str() {
///         "-h" | "--help" => return Ok(None),
///         "--host" => options.host = args.value(&flag)?,
///         "--ports" => options.ports = args.ports(&flag)?,
///         "--clients" => options.clients = args.number(&flag, 1..=10_000)?,
///         _ => return Err(unknown(&flag)),
///     }
/// }
/// ```
#[derive(Debug)]
pub struct Args<I> {
    args: I,
}

impl<I, S> Iterator for Args<I>
where
    I: Iterator<Item = S>,
    S: AsRef<str>,
{
    type Item = String;

    /// The next flag (or positional argument).
    fn next(&mut self) -> Option<String> {
        self.args.next().map(|arg| arg.as_ref().to_string())
    }
}

impl<I, S> Args<I>
where
    I: Iterator<Item = S>,
    S: AsRef<str>,
{
    /// The arguments to read, program name already skipped.
    pub fn new(args: impl IntoIterator<IntoIter = I>) -> Args<I> {
        Args { args: args.into_iter() }
    }

    /// The value that follows `flag`, whatever it is.
    pub fn value(&mut self, flag: &str) -> Result<String, String> {
        self.next().ok_or_else(|| format!("{flag} needs a value"))
    }

    /// `flag`'s value as a whole number within `range` ([`number_in`]).
    pub fn number<T>(&mut self, flag: &str, range: RangeInclusive<T>) -> Result<T, String>
    where
        T: FromStr + PartialOrd + Display,
    {
        number_in(flag, &self.value(flag)?, range)
    }

    /// `flag`'s value as seconds, more than 0 and at most `max` ([`seconds`]).
    pub fn seconds(&mut self, flag: &str, max: f64) -> Result<Duration, String> {
        seconds(flag, &self.value(flag)?, max)
    }

    /// `flag`'s value as a size such as `200M` ([`size`]).
    pub fn size(&mut self, flag: &str) -> Result<u64, String> {
        size(flag, &self.value(flag)?)
    }

    /// `flag`'s value as a port to connect to ([`port`]).
    pub fn port(&mut self, flag: &str) -> Result<u16, String> {
        port(flag, &self.value(flag)?)
    }

    /// `flag`'s value as a comma-separated list of ports ([`ports`]).
    pub fn ports(&mut self, flag: &str) -> Result<Vec<u16>, String> {
        ports(flag, &self.value(flag)?)
    }

    /// `flag`'s value as a stage of the table ([`stage`]).
    pub fn stage(&mut self, flag: &str) -> Result<&'static Stage, String> {
        stage(flag, &self.value(flag)?)
    }
}

/// The error for a flag no tool knows.
pub fn unknown(flag: &str) -> String {
    format!("unknown option '{flag}'")
}

/// `value` as a whole number within `range`, or a one-line error naming
/// `flag`.
pub fn number_in<T>(flag: &str, value: &str, range: RangeInclusive<T>) -> Result<T, String>
where
    T: FromStr + PartialOrd + Display,
{
    let bad =
        || format!("{flag}: '{value}' is not a number from {} to {}", range.start(), range.end());
    let number: T = value.parse().map_err(|_| bad())?;
    if range.contains(&number) { Ok(number) } else { Err(bad()) }
}

/// `value` as a number of seconds (fractions allowed), more than 0 and at
/// most `max`.
pub fn seconds(flag: &str, value: &str, max: f64) -> Result<Duration, String> {
    value
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s <= max)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            format!("{flag}: '{value}' is not a number of seconds above 0 and at most {max}")
        })
}

/// `value` as a size in bytes, as [`parse_size`] reads it (`4096`, `64K`,
/// `200M`, `1G`), or a one-line error naming `flag`.
pub fn size(flag: &str, value: &str) -> Result<u64, String> {
    parse_size(value).map_err(|why| format!("{flag}: {why}"))
}

/// `value` as a port a client can connect to: 1 to 65535.
///
/// Port 0 is refused with its own message, since the stage servers do
/// accept it: to a server it means "any free port, the OS picks", but
/// nothing can be reached at port 0, so to a client it names nothing.
pub fn port(flag: &str, value: &str) -> Result<u16, String> {
    match value.trim().parse::<u16>() {
        Ok(0) => Err(format!(
            "{flag}: '{value}' names no port to connect to (to a server, 0 means any free \
             port): use 1 to 65535"
        )),
        Ok(port) => Ok(port),
        Err(_) => Err(format!("{flag}: '{value}' is not a port from 1 to 65535")),
    }
}

/// A comma-separated list of ports to connect to, each as [`port`] takes it.
pub fn ports(flag: &str, list: &str) -> Result<Vec<u16>, String> {
    list.split(',').map(|value| port(flag, value)).collect()
}

/// The stage numbered `value` in the stage table, or an error that names
/// the stages there are.
pub fn stage(flag: &str, value: &str) -> Result<&'static Stage, String> {
    value.trim().parse().ok().and_then(stages::stage).ok_or_else(|| {
        format!(
            "{flag}: '{value}' is not a stage of this workspace ({})",
            stages::numbers_in_words()
        )
    })
}

/// Puts IPv4 addresses first, keeping the resolver's order otherwise, and
/// drops repeats: the course's servers listen on 127.0.0.1, and
/// "localhost" often resolves to ::1 first.
pub fn ipv4_first(addrs: &mut Vec<SocketAddr>) {
    addrs.sort_by_key(SocketAddr::is_ipv6);
    addrs.dedup();
}

/// Every address of `host` for each of `ports`, IPv4 first: a client tries
/// them in turn until one answers.
pub fn resolve(host: &str, ports: &[u16]) -> Result<Vec<Vec<SocketAddr>>, String> {
    ports
        .iter()
        .map(|&port| {
            let mut addrs: Vec<SocketAddr> = (host, port)
                .to_socket_addrs()
                .map_err(|err| format!("cannot resolve '{host}': {err}"))?
                .collect();
            ipv4_first(&mut addrs);
            if addrs.is_empty() { Err(format!("'{host}' has no address")) } else { Ok(addrs) }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn ipv4_addresses_come_first() {
        let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, 8001));
        let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, 8001));
        let mut addrs = vec![v6, v4, v4];
        ipv4_first(&mut addrs);
        assert_eq!(addrs, [v4, v6]);
    }

    #[test]
    fn a_numeric_host_resolves_to_itself_for_each_port() {
        let v4 = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        assert_eq!(resolve("127.0.0.1", &[8001, 8002]), Ok(vec![vec![v4(8001)], vec![v4(8002)]]));
    }

    #[test]
    fn port_0_names_nothing_to_connect_to() {
        assert_eq!(port("--port", "8001"), Ok(8001));
        assert_eq!(port("--port", "65535"), Ok(65535));
        let zero = port("--port", "0").unwrap_err();
        assert!(zero.starts_with("--port: '0' names no port to connect to"), "{zero}");
        assert_eq!(ports("--ports", "9000,0").unwrap_err(), zero.replacen("--port", "--ports", 1));
        for bad in ["", "-1", "65536", "80x"] {
            let message = port("--ports", bad).unwrap_err();
            assert_eq!(message, format!("--ports: '{bad}' is not a port from 1 to 65535"));
        }
        assert_eq!(ports("--ports", "8001, 8002"), Ok(vec![8001, 8002]));
    }

    #[test]
    fn values_are_checked_with_one_line_errors() {
        let mut given = Args::new(["--clients", "0", "--seconds", "0.5", "--stage", "5", "--host"]);
        assert_eq!(given.next().as_deref(), Some("--clients"));
        assert_eq!(
            given.number::<usize>("--clients", 1..=10).unwrap_err(),
            "--clients: '0' is not a number from 1 to 10"
        );
        assert_eq!(given.next().as_deref(), Some("--seconds"));
        assert_eq!(given.seconds("--seconds", 60.0), Ok(Duration::from_millis(500)));
        assert_eq!(given.next().as_deref(), Some("--stage"));
        let words = stages::numbers_in_words();
        assert_eq!(
            given.stage("--stage").unwrap_err(),
            format!("--stage: '5' is not a stage of this workspace ({words})")
        );
        assert_eq!(given.next().as_deref(), Some("--host"));
        assert_eq!(given.value("--host").unwrap_err(), "--host needs a value");
        for bad in ["0", "-1", "NaN", "inf", "61", "x"] {
            assert!(seconds("--timeout", bad, 60.0).is_err(), "{bad}");
        }
        assert_eq!(stage("--stage", "7").map(|s| s.number), Ok(7));
        assert_eq!(size("--bytes", "200M"), Ok(200 << 20));
        assert!(size("--bytes", "lots").unwrap_err().starts_with("--bytes: 'lots' is not a size"));
        assert_eq!(number_in("--seed", "18446744073709551615", 0..=u64::MAX), Ok(u64::MAX));
    }
}
