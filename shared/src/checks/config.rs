//! Configurations a server cannot use, beyond the flags `cli` checks: a
//! listener that cannot be created leaves nothing behind, a host that does
//! not resolve ends the server, and a bad value is named in the error.

use crate::checks::launch::{every_port_answers, run_to_exit, taken_port, target};
use crate::checks::{Failure, Outcome, Subject, ensure};
use crate::client::IO_TIMEOUT;
use crate::procfs;
use crate::server::Server;
use std::time::Duration;

/// How long a configuration the server cannot use may take to end it:
/// resolving a host may take a moment, so twice the usual wait.
const EXIT_WAIT: Duration = Duration::from_secs(2 * IO_TIMEOUT.as_secs());

/// Why a run that should end at once may not have: the hint of
/// [`run_to_exit`] here.
const MUST_EXIT: &str = "a configuration the server cannot use must end it at once";

/// A listener that cannot be created (its port is taken) leaves no socket
/// behind, and the other port serves; a host that does not resolve ends
/// the server with a failure and a message; a bad port value is named in
/// the first line of the error.
pub fn bad_configuration(subject: &Subject<'_>) -> Outcome {
    let (_taken, busy) = taken_port()?;
    // The taken port first: once the server listens on the second, it has
    // tried (and failed) to open the first.
    let mut server = Server::spawn(subject.binary, &["--ports", &format!("{busy},0")]);
    server.try_wait_for_ports(1).map_err(|why| {
        Failure::new(why, "a port that cannot be opened is skipped: the others still serve")
    })?;
    let sockets = procfs::open_sockets(server.process.pid())
        .map_err(|err| Failure::new(format!("cannot list the server's sockets: {err}"), ""))?;
    ensure(
        sockets == 1,
        || format!("the server has {sockets} sockets open with one listener"),
        "when bind() or listen() fails, close the socket socket() made before giving up on \
         that port",
    )?;
    every_port_answers(&target(&server, subject), "a port that could not be opened")?;
    drop(server);

    let host = "no-such-host.invalid";
    let exited = run_to_exit(subject, &["--host", host, "--ports", "0"], EXIT_WAIT, MUST_EXIT)?;
    ensure(
        !exited.status.success() && !exited.stderr.trim().is_empty(),
        || format!("with a host that does not resolve: {exited:?}"),
        "a server that can listen nowhere must fail and say why on stderr, not pretend to run",
    )?;
    if subject.own {
        ensure(
            exited.stdout.contains(host) && exited.stderr.lines().count() == 1,
            || format!("the host is not named in the log, or stderr is not one line: {exited:?}"),
            "log the host that could not be resolved as an ERROR, and say once on stderr why \
             the server ends",
        )?;
    }

    for args in [["--ports", "65536"], ["--ports", "8001,8001"], ["--ports", "x"]] {
        let exited = run_to_exit(subject, &args, EXIT_WAIT, MUST_EXIT)?;
        let first = exited.stderr.lines().next().unwrap_or_default();
        let value = args[1].split(',').next().unwrap_or_default();
        ensure(
            first.contains(value),
            || format!("{args:?}: the error does not name {value:?}: {first:?}"),
            "name the value that is wrong in the error, so the user sees what to fix",
        )?;
    }
    Ok(None)
}
