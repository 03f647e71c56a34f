//! What the checks that start the binary themselves share: starting it on
//! ports the OS picks (or with arguments that should end it), reaching it
//! as a [`Target`], and seeing that it still serves, each returning a
//! [`Failure`] instead of panicking.

use crate::checks::{CHECK_DEADLINE, Failure, REPLY_TIMEOUT, Subject, Target, ensure};
use crate::client::IO_TIMEOUT;
use crate::server::{Exited, Launch, Server};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

/// The course's four ports.
pub const N_PORTS: usize = 4;

/// How long a log line that should follow an action may take to appear.
pub const LOG_WAIT: Duration = Duration::from_secs(5);

/// Starts `subject`'s binary on `ports` ports chosen by the OS, as
/// `launch` says, and waits until it listens on all of them.
///
/// A stage that forwards its first port (stage 11 on) gets an upstream
/// that writes back ([`crate::upstream::echo_for_checks`]): every port then
/// answers as the stage's protocol says, the first one through the proxy.
pub fn start(subject: &Subject<'_>, ports: usize, launch: &Launch) -> Result<Server, Box<Failure>> {
    let list = vec!["0"; ports].join(",");
    let launch = &with_upstream(subject, launch);
    let mut server = Server::spawn_with(subject.binary, &["--ports", &list], launch);
    server.try_wait_for_ports(ports).map_err(|why| {
        Failure::new(
            why,
            "the server must start and listen on every port --ports names (0 lets the OS pick \
             a free one)",
        )
    })?;
    Ok(server)
}

/// `launch`, with an upstream that writes back if `subject`'s stage
/// forwards its first port and `launch` names none.
pub fn with_upstream(subject: &Subject<'_>, launch: &Launch) -> Launch {
    let mut launch = launch.clone();
    if subject.stage.forwards_first_port && launch.upstream.is_none() {
        launch.upstream = Some(crate::upstream::echo_for_checks().addr());
    }
    launch
}

/// Runs `subject`'s binary with `args`, which should end it at once
/// instead of serving (a bad flag, no port it can open, a host that does
/// not resolve), and returns what it printed. Fails with `hint` if it is
/// still running after `within`: each caller knows how long its case may
/// take (resolving a host takes longer than reading a flag).
pub fn run_to_exit(
    subject: &Subject<'_>,
    args: &[&str],
    within: Duration,
    hint: &str,
) -> Result<Exited, Box<Failure>> {
    let mut server = Server::spawn(subject.binary, args);
    if server.process.wait_exit(within).is_none() {
        return Err(Failure::new(format!("with {args:?} it did not exit within {within:?}"), hint));
    }
    Ok(server.finish(IO_TIMEOUT))
}

/// The server's ports as a check's [`Target`]: replies as the stage's
/// protocol says, each within [`REPLY_TIMEOUT`], the whole check within
/// [`CHECK_DEADLINE`] from now.
/// Only the ports that answer what a client sends: see [`answering`].
pub fn target(server: &Server, subject: &Subject<'_>) -> Target {
    let addrs = answering(server)
        .into_iter()
        .map(|port| vec![SocketAddr::from((Ipv4Addr::LOCALHOST, port))])
        .collect();
    Target::new(addrs, subject.stage.protocol, REPLY_TIMEOUT, CHECK_DEADLINE)
}

/// The server's ports that answer what a client sends: all but those
/// its log says serve a file (from stage 12, "port N serves FILE from
/// DIR", logged before the port's "Server listening" line, so that it is
/// there once [`Server::wait_for_ports`] has returned). Which ports those
/// are is read from the log, not from their place in `--ports`: a port
/// that could not be opened leaves the others their roles.
pub fn answering(server: &Server) -> Vec<u16> {
    let log = server.stdout();
    server
        .ports
        .iter()
        .copied()
        .filter(|port| !log.contains(&format!("port {port} serves ")))
        .collect()
}

/// A new client on every port is answered, `after` something that might
/// have broken the server.
pub fn every_port_answers(target: &Target, after: &str) -> Result<(), Box<Failure>> {
    for index in 0..target.ports() {
        let mut client = target.connect(index).map_err(|failure| after_(failure, after))?;
        target
            .exchange(&mut client, format!("still here after {after}\n").as_bytes())
            .map_err(|failure| after_(failure, after))?;
    }
    Ok(())
}

/// `failure`, saying what came before it.
fn after_(mut failure: Box<Failure>, after: &str) -> Box<Failure> {
    failure.what = format!("after {after}: {}", failure.what);
    failure
}

/// Fails if the server has exited.
pub fn still_running(server: &mut Server, after: &str) -> Result<(), Box<Failure>> {
    ensure(
        server.process.is_running(),
        || format!("the server exited after {after}"),
        "a server must outlive its clients, whatever they do (a send() to a client that has \
         gone raises SIGPIPE, which ends the process: send with MSG_NOSIGNAL)",
    )
}

/// Waits until `n` lines of the server's log contain `needle`; fails
/// with the log and `hint` if they do not come within [`LOG_WAIT`].
pub fn log_lines(server: &Server, needle: &str, n: usize, hint: &str) -> Result<(), Box<Failure>> {
    ensure(
        server.wait_for_count(needle, n, LOG_WAIT),
        || {
            let count = server.count(needle);
            let lines = if count == 1 { "line" } else { "lines" };
            format!(
                "after {LOG_WAIT:?} the log has {count} {lines} with {needle:?}, expected {n}:\n{}",
                server.stdout()
            )
        },
        hint,
    )
}

/// A port nobody else can take while the returned listener lives.
pub fn taken_port() -> Result<(TcpListener, u16), Box<Failure>> {
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|err| Failure::new(format!("cannot bind a port to take: {err}"), ""))?;
    let port = taken
        .local_addr()
        .map_err(|err| Failure::new(format!("cannot read the taken port: {err}"), ""))?
        .port();
    Ok((taken, port))
}
