//! The command line every stage binary shares (`--host`, `--ports`,
//! `--help`, `--version`) and what it does with ports it cannot open.
//! These checks start the binary themselves.

use crate::checks::launch::{answering, run_to_exit, taken_port};
use crate::checks::{Failure, Outcome, Subject, ensure};
use crate::client::{Client, IO_TIMEOUT};
use crate::server::Server;

/// Why a run that should end at once may not have: the hint of
/// [`run_to_exit`] here.
const MUST_EXIT: &str = "bad flags, or no port that can be opened, must end the server at once";

/// One of four ports is taken by another socket: the server logs an
/// ERROR naming it and serves on the other three (those that answer what
/// a client sends: from stage 12 two of them serve files).
pub fn port_in_use(subject: &Subject<'_>) -> Outcome {
    let (_taken, busy) = taken_port()?;
    let mut server = Server::spawn(subject.binary, &["--ports", &format!("{busy},0,0,0")]);
    server.try_wait_for_ports(3).map_err(|why| {
        Failure::new(why, "a port that cannot be opened is skipped: the others still serve")
    })?;
    for port in answering(&server).into_iter().filter(|&port| port != busy) {
        let mut client = Client::try_connect(port)
            .map_err(|err| Failure::new(format!("port {port}: {err}"), ""))?;
        let reply = client.round_trip(b"served\n");
        ensure(
            reply == subject.stage.protocol.reply(b"served\n"),
            || format!("port {port} answered {reply:?}"),
            "the other ports must serve as usual",
        )?;
    }
    if subject.own {
        let log = server.stdout();
        ensure(
            log.lines().any(|l| l.contains("[ERROR]") && l.contains(&busy.to_string())),
            || format!("no ERROR line names port {busy}:\n{log}"),
            "log which host and port could not be opened, and why",
        )?;
    }
    ensure(server.process.is_running(), || "the server exited".to_string(), "")?;
    Ok(None)
}

/// Every port is taken: the server exits with a failure status and says
/// why on stderr (and, for the workspace's own, in an ERROR line).
pub fn no_port_at_all(subject: &Subject<'_>) -> Outcome {
    let (_taken, busy) = taken_port()?;
    let exited = run_to_exit(subject, &["--ports", &busy.to_string()], IO_TIMEOUT, MUST_EXIT)?;
    ensure(
        !exited.status.success(),
        || format!("it exited with {} with no port open", exited.status),
        "a server that can listen nowhere must fail, not pretend to run",
    )?;
    ensure(
        !exited.stderr.trim().is_empty(),
        || "nothing on stderr".to_string(),
        "say why the server ends, on stderr, once",
    )?;
    if subject.own {
        ensure(
            exited.stdout.lines().any(|l| l.contains("[ERROR]") && l.contains(&busy.to_string())),
            || format!("no ERROR line names port {busy}:\n{}", exited.stdout),
            "log which port could not be opened, and why",
        )?;
    }
    Ok(None)
}

/// A bad flag or value: a one-line error, then the usage, on stderr, and
/// exit status 2. `--help` and `--version` succeed; `--version` names the
/// binary's own crate and version where that is known.
pub fn bad_flags(subject: &Subject<'_>) -> Outcome {
    let bad: [&[&str]; 6] = [
        &["--bogus"],
        &["--ports"],
        &["--ports", "80x"],
        &["--ports", "70000"],
        &["--ports", "9000,9000"],
        &["--host", ""],
    ];
    for args in bad {
        let exited = run_to_exit(subject, args, IO_TIMEOUT, MUST_EXIT)?;
        let first_line = exited.stderr.lines().next().unwrap_or_default();
        ensure(
            exited.status.code() == Some(2)
                && !first_line.is_empty()
                && !first_line.starts_with("Usage")
                && exited.stderr.contains("Usage:")
                && exited.stdout.is_empty(),
            || format!("{args:?}: {exited:?}"),
            "a bad flag gets a one-line error, then the usage, on stderr, and status 2",
        )?;
    }
    let help = run_to_exit(subject, &["--help"], IO_TIMEOUT, MUST_EXIT)?;
    ensure(
        help.status.success() && help.stdout.contains("Usage:"),
        || format!("--help: {help:?}"),
        "--help prints the usage on stdout and exits 0",
    )?;
    let version = run_to_exit(subject, &["--version"], IO_TIMEOUT, MUST_EXIT)?;
    let printed = version.stdout.trim();
    ensure(
        version.status.success() && subject.version.is_none_or(|expected| printed == expected),
        || {
            format!(
                "--version printed {printed:?} ({}), expected {:?}",
                version.status, subject.version
            )
        },
        "--version prints the crate's name and version and exits 0",
    )?;
    Ok(None)
}
