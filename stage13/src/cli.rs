//! The command line: `stageNN [--host HOST] [--ports P1,P2,...]
//! [--upstream HOST:PORT] [--public DIR]`.
//!
//! The C server has no flags (it always listens on 127.0.0.1:8001-8004,
//! proxies the first port to 127.0.0.1:3000, and from this stage serves
//! files from `../public`, relative to the folder it is started in). These
//! keep those defaults and add what a learner and the tests need: another
//! host, other ports, port 0 to let the OS pick a free one, another
//! upstream (the tests start their own, on a port the OS picks), and
//! another `public` folder.

use crate::utils::xps_utils::is_valid_port;
use std::ffi::OsString;
use std::path::PathBuf;

/// Where the server listens when no flag says otherwise.
pub const DEFAULT_HOST: &str = "127.0.0.1";

/// The course's four ports.
pub const DEFAULT_PORTS: [u16; 4] = [8001, 8002, 8003, 8004];

// ANCHOR: default_upstream
/// Where the first port's clients are forwarded when no flag says
/// otherwise: the course's upstream, hard-coded in C until its
/// configuration stage.
pub const DEFAULT_UPSTREAM: (&str, u16) = ("127.0.0.1", 3000);
// ANCHOR_END: default_upstream

// ANCHOR: default_public
/// The folder files are served from when no flag says otherwise: this
/// crate's `public` folder, wherever the command is run from. (The course
/// resolves `../public` from the folder the server starts in, its `src`;
/// `cargo run` starts in whatever folder you are in, so a path relative
/// to it would depend on where you typed the command.)
pub const DEFAULT_PUBLIC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/public");

/// What the second port (8002) serves, relative to `public`.
pub const SAMPLE_FILE: &str = "sample.txt";
// ANCHOR_END: default_public

/// What `--help` prints, and what follows any error about the flags.
pub const USAGE: &str = concat!(
    "Usage: ",
    env!("CARGO_PKG_NAME"),
    " [--host HOST] [--ports P1,P2,...] [--upstream HOST:PORT] [--public DIR]

Options:
  --host HOST       address to listen on (default 127.0.0.1;
                    0.0.0.0 accepts clients from other machines)
  --ports P1,P2,... ports to listen on (default 8001,8002,8003,8004;
                    0 lets the OS pick a free port, shown in the log)
  --upstream HOST:PORT
                    the server the first port forwards its clients to
                    (default 127.0.0.1:3000; try python3 -m http.server 3000)
  --public DIR      the folder files are served from (default: the
                    stage's own public folder); the second port sends
                    DIR/sample.txt to each client; the others give each
                    client a session with nothing behind it (no reply)
  -h, --help        print this help
  -V, --version     print the version

Environment:
  XPS_DEBUG=1       also print DEBUG log lines
  NO_COLOR=1        never colour the log"
);

/// Where and how to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Host name or IPv4 address to bind.
    pub host: String,
    /// Ports to listen on, one listener each. The first is the proxy.
    pub ports: Vec<u16>,
    /// Where the first port's clients are forwarded.
    pub upstream: Upstream,
    /// The folder files are served from.
    pub public: PathBuf,
}

/// A server to forward clients to: host name or IPv4 address, and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Host name or IPv4 address.
    pub host: String,
    /// Its port (never 0: there is no such port to connect to).
    pub port: u16,
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Run the server.
    Run(Config),
    /// Print the usage and exit.
    Help,
    /// Print the version and exit.
    Version,
}

/// Reads the arguments (without the program name). An error is one line
/// saying what is wrong; the caller adds the usage.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let (upstream_host, upstream_port) = DEFAULT_UPSTREAM;
    let mut config = Config {
        host: DEFAULT_HOST.to_string(),
        ports: DEFAULT_PORTS.to_vec(),
        upstream: Upstream { host: upstream_host.to_string(), port: upstream_port },
        public: PathBuf::from(DEFAULT_PUBLIC),
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg =
            arg.into_string().map_err(|bad| format!("argument {bad:?} is not valid UTF-8"))?;
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline_value) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_string(), Some(value.to_string()))
            }
            _ => (arg, None),
        };
        let mut value = || match inline_value.clone() {
            Some(value) => Ok(value),
            None => args
                .next()
                .ok_or_else(|| format!("{flag} needs a value"))?
                .into_string()
                .map_err(|bad| format!("value {bad:?} of {flag} is not valid UTF-8")),
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--host" => config.host = parse_host(&value()?)?,
            "--ports" => config.ports = parse_ports(&value()?)?,
            "--upstream" => config.upstream = parse_upstream(&value()?)?,
            "--public" => config.public = parse_public(&value()?)?,
            other => return Err(format!("unknown option '{other}'")),
        }
    }
    Ok(Command::Run(config))
}

fn parse_host(host: &str) -> Result<String, String> {
    if host.trim().is_empty() {
        return Err("--host needs a host name or address".to_string());
    }
    Ok(host.to_string())
}

/// The `--public` folder. Whether it exists is checked for each file
/// served, as the course checks it: a folder made after the start works.
fn parse_public(dir: &str) -> Result<PathBuf, String> {
    if dir.is_empty() {
        return Err("--public needs a folder".to_string());
    }
    Ok(PathBuf::from(dir))
}

// ANCHOR: parse_upstream
/// `127.0.0.1:3000` into an upstream. The port comes after the last `:`.
fn parse_upstream(addr: &str) -> Result<Upstream, String> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(format!("--upstream '{addr}' needs HOST:PORT"));
    };
    let host = parse_host(host).map_err(|_| format!("--upstream '{addr}' has no host"))?;
    let port: u32 = port.parse().map_err(|_| format!("'{port}' is not a port number"))?;
    if port == 0 || !is_valid_port(port) {
        return Err(format!("upstream port {port} is out of range (1-65535)"));
    }
    Ok(Upstream { host, port: port as u16 })
}
// ANCHOR_END: parse_upstream

/// `8001,8002` into a list of ports. Port 0 may appear more than once (each
/// gets its own free port); any other port only once.
fn parse_ports(list: &str) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for item in list.split(',') {
        let item = item.trim();
        let port: u32 = item.parse().map_err(|_| format!("'{item}' is not a port number"))?;
        if !is_valid_port(port) {
            return Err(format!("port {port} is out of range (0-65535)"));
        }
        let port = port as u16;
        if port != 0 && ports.contains(&port) {
            return Err(format!("port {port} is listed twice"));
        }
        ports.push(port);
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Command, String> {
        parse(args.iter().map(OsString::from))
    }

    fn config(host: &str, ports: &[u16]) -> Result<Command, String> {
        let upstream = Upstream { host: "127.0.0.1".to_string(), port: 3000 };
        let public = PathBuf::from(DEFAULT_PUBLIC);
        Ok(Command::Run(Config { host: host.to_string(), ports: ports.to_vec(), upstream, public }))
    }

    fn upstream(args: &[&str]) -> Result<Upstream, String> {
        match run(args)? {
            Command::Run(config) => Ok(config.upstream),
            other => Err(format!("{other:?}")),
        }
    }

    #[test]
    fn upstream_in_both_forms() {
        let localhost = Upstream { host: "localhost".to_string(), port: 8080 };
        assert_eq!(upstream(&["--upstream", "localhost:8080"]), Ok(localhost.clone()));
        assert_eq!(upstream(&["--upstream=localhost:8080"]), Ok(localhost));
    }

    #[test]
    fn bad_upstreams_say_what_is_wrong() {
        let says =
            |addr: &str, why: &str| assert_eq!(upstream(&["--upstream", addr]), Err(why.into()));
        says("3000", "--upstream '3000' needs HOST:PORT");
        says(":3000", "--upstream ':3000' has no host");
        says("localhost:http", "'http' is not a port number");
        says("localhost:0", "upstream port 0 is out of range (1-65535)");
        says("localhost:65536", "upstream port 65536 is out of range (1-65535)");
    }

    #[test]
    fn public_in_both_forms_and_never_empty() {
        let public = |args: &[&str]| match run(args) {
            Ok(Command::Run(config)) => Ok(config.public),
            other => Err(format!("{other:?}")),
        };
        assert_eq!(public(&["--public", "/srv/www"]), Ok(PathBuf::from("/srv/www")));
        assert_eq!(public(&["--public=site"]), Ok(PathBuf::from("site")));
        assert_eq!(run(&["--public="]), Err("--public needs a folder".to_string()));
        // The default is this crate's folder, not the current directory.
        assert!(public(&[]).unwrap().ends_with("stage13/public"));
    }

    #[test]
    fn defaults() {
        assert_eq!(run(&[]), config("127.0.0.1", &[8001, 8002, 8003, 8004]));
    }

    #[test]
    fn host_and_ports_in_both_forms() {
        assert_eq!(
            run(&["--host", "0.0.0.0", "--ports", "9000,0,0"]),
            config("0.0.0.0", &[9000, 0, 0])
        );
        assert_eq!(run(&["--ports=1, 2", "--host=localhost"]), config("localhost", &[1, 2]));
    }

    #[test]
    fn help_and_version() {
        assert_eq!(run(&["--help"]), Ok(Command::Help));
        assert_eq!(run(&["-h"]), Ok(Command::Help));
        assert_eq!(run(&["--version"]), Ok(Command::Version));
    }

    #[test]
    fn bad_flags_say_what_is_wrong() {
        assert_eq!(run(&["--bogus"]), Err("unknown option '--bogus'".to_string()));
        assert_eq!(run(&["--ports"]), Err("--ports needs a value".to_string()));
        assert_eq!(run(&["--ports", "80x"]), Err("'80x' is not a port number".to_string()));
        assert_eq!(run(&["--ports", ""]), Err("'' is not a port number".to_string()));
        assert_eq!(
            run(&["--ports", "70000"]),
            Err("port 70000 is out of range (0-65535)".to_string())
        );
        assert_eq!(run(&["--ports", "1,2,1"]), Err("port 1 is listed twice".to_string()));
        assert_eq!(run(&["--host", " "]), Err("--host needs a host name or address".to_string()));
    }
}
