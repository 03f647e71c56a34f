//! SIGINT and SIGTERM, idle and under load. Where the stage has a graceful
//! shutdown (from stage 7) the server exits with status 0 within
//! [`SHUTDOWN_LIMIT`], and the workspace's own logs the signal and destroys
//! every connection, listener and the loop, each with its DEBUG line; a
//! second Ctrl+C ends a shutdown that hangs. Where it has none (stage 6, as
//! in the course), the signal ends the process at once. Either way every
//! client sees its connection closed and the ports are free again.

use crate::checks::launch::{N_PORTS, answering, start, target};
use crate::checks::{Failure, Outcome, Subject, ensure};
use crate::client::Client;
use crate::load::Load;
use crate::procfs;
use crate::server::{Exited, Launch, Server};
use crate::wait::wait_until;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

/// How long a server may take to exit after the signal. The requirement is
/// 100 ms; a test on a loaded two-core machine (the whole suite running
/// beside it, a debug build, the load's threads competing for the CPUs)
/// measures scheduling delays too, so the checks allow some slack. A server
/// that ignores the signal while busy, the bug these checks exist for,
/// never exits at all.
pub const SHUTDOWN_LIMIT: Duration = Duration::from_millis(500);

/// How long the load runs before the signal.
const LOAD_WARMUP: Duration = Duration::from_millis(300);

/// What a right graceful shutdown does, for the hints.
const GRACEFUL_HINT: &str = "on SIGINT or SIGTERM the handler only records the signal and wakes \
                             the loop (see stage07/src/shutdown.rs); the loop then destroys the \
                             core, with every connection and listener, and main returns 0";

/// The name the log gives `signal`.
fn signal_name(signal: libc::c_int) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "another signal",
    }
}

/// How to start the server for these checks: the workspace's own with
/// DEBUG lines (the destroy lines are DEBUG), any other quiet.
fn launch(subject: &Subject<'_>, skip_messages: bool) -> Launch {
    Launch { quiet: !subject.own, skip_messages, ..Launch::default() }
}

/// Sends `signal` and waits for the process to exit, with room for a
/// slow machine: how fast it was is judged by [`judge`].
fn stop(server: Server, signal: libc::c_int) -> Result<Exited, Box<Failure>> {
    server.try_stop(signal, SHUTDOWN_LIMIT * 4).map_err(|(server, why)| {
        let log = server.stdout();
        let tail: Vec<&str> =
            log.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect();
        Failure::new(
            format!("{}: {why}; the log ended with:\n{}", signal_name(signal), tail.join("\n")),
            GRACEFUL_HINT,
        )
    })
}

/// Judges how the server ended on `signal` with `connections` connections
/// and `listeners` listeners open: how it exited and how fast, for any
/// server; the signal's WARNING and the DEBUG destroy lines for the
/// workspace's own.
fn judge(
    subject: &Subject<'_>,
    exited: &Exited,
    signal: libc::c_int,
    connections: usize,
    listeners: usize,
) -> Outcome {
    let name = signal_name(signal);
    let log = &exited.stdout;
    let mut note = None;
    if subject.stage.graceful_shutdown {
        ensure(
            exited.status.code() == Some(0),
            || format!("after {name} the server ended with {}", exited.status),
            GRACEFUL_HINT,
        )?;
    } else if exited.status.code() == Some(0) {
        note = Some(format!(
            "exits with status 0 on {name}: a graceful shutdown, which the course adds only \
             at stage 7"
        ));
    } else {
        ensure(
            exited.status.signal() == Some(signal),
            || format!("after {name} the server ended with {}", exited.status),
            "at this stage the server installs no signal handler, as in the course: the \
             signal's default action ends it at once",
        )?;
    }
    ensure(
        exited.elapsed < SHUTDOWN_LIMIT,
        || format!("the server took {:?} to exit after {name}", exited.elapsed),
        "the loop must notice the signal at once, even while it is busy: wake it (an eventfd \
         in the epoll set) instead of waiting for the next client event",
    )?;
    if subject.own && subject.stage.graceful_shutdown {
        let warning = format!("[WARNING] sigint_handler() : {name} received");
        for (needle, expected) in [
            (warning.as_str(), 1),
            ("destroyed connection", connections),
            ("destroyed listener", listeners),
            ("destroyed loop", 1),
            ("destroyed core", 1),
        ] {
            ensure(
                exited.count(needle) == expected,
                || {
                    format!(
                        "{} lines say {needle:?}, expected {expected}:\n{log}",
                        exited.count(needle)
                    )
                },
                "a graceful shutdown logs the signal once, then destroys every connection, \
                 every listener, the loop and the core, once each",
            )?;
        }
    } else if subject.own {
        ensure(
            exited.count("destroyed") == 0,
            || format!("the log says goodbye although the stage has no shutdown:\n{log}"),
            "",
        )?;
    }
    Ok(note)
}

/// Fails unless every client sees its connection closed and every port
/// can be bound again: the kernel closed the server's sockets.
fn everything_closed(clients: &mut [Client], ports: &[u16]) -> Result<(), Box<Failure>> {
    for client in clients {
        ensure(
            client.is_closed_by_server(Duration::from_secs(1)),
            || format!("a client on port {} was not closed", client.port()),
            "every connection must end with the server",
        )?;
    }
    for &port in ports {
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).map_err(|err| {
            Failure::new(
                format!("port {port} is still in use after the server exited: {err}"),
                "no other process may keep the server's sockets: do not fork children that \
                 inherit them",
            )
        })?;
    }
    Ok(())
}

/// 50 idle connections on four ports, then `signal`.
fn with_idle_connections(subject: &Subject<'_>, signal: libc::c_int) -> Outcome {
    const CLIENTS: usize = 50;
    let server = start(subject, N_PORTS, &launch(subject, false))?;
    let target = target(&server, subject);
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let mut client = target.connect(i)?;
        // A round trip each proves every connection has been accepted.
        target.exchange(&mut client, b"ready\n")?;
        clients.push(client);
    }
    // Idle means asleep in the loop's wait: a client's reply can arrive
    // before the server has finished its round (its log lines, say), and
    // a signal then lands outside epoll_wait(). In it, the signal cuts the
    // wait short (EINTR), which the loop must take for no error. A server
    // that never sleeps there (another design) is signalled all the same.
    let pid = server.process.pid();
    wait_until(Duration::from_secs(1), || procfs::asleep_in_epoll_wait(pid).unwrap_or(false));
    let ports = server.ports.clone();
    let exited = stop(server, signal)?;
    let note = judge(subject, &exited, signal, CLIENTS, N_PORTS)?;
    everything_closed(&mut clients, &ports)?;
    Ok(note)
}

/// SIGINT with 50 idle connections.
pub fn sigint_when_idle(subject: &Subject<'_>) -> Outcome {
    with_idle_connections(subject, libc::SIGINT)
}

/// SIGTERM with 50 idle connections.
pub fn sigterm_when_idle(subject: &Subject<'_>) -> Outcome {
    with_idle_connections(subject, libc::SIGTERM)
}

/// Lets `load` run until every one of its `clients` has had a reply (so
/// the server has accepted them all) and a little longer, so the server is
/// busy in the middle of its work when the signal comes.
fn warm_up(load: &Load, clients: usize) -> Result<(), Box<Failure>> {
    ensure(
        wait_until(Duration::from_secs(5), || load.answered() >= clients),
        || format!("only {} of {clients} busy clients had a reply within 5 s", load.answered()),
        "every client must be served while others keep the server busy",
    )?;
    std::thread::sleep(LOAD_WARMUP);
    Ok(())
}

/// Two clients that send and read without pause (`cat /dev/zero | nc`),
/// then SIGINT: the server must stop serving them and exit.
pub fn sigint_while_streaming(subject: &Subject<'_>) -> Outcome {
    const CLIENTS: usize = 2;
    let server = start(subject, 1, &launch(subject, true))?;
    let load = Load::try_streaming(server.ports[0], CLIENTS)
        .map_err(|err| Failure::new(format!("a streaming client cannot connect: {err}"), ""))?;
    warm_up(&load, CLIENTS)?;
    let ports = server.ports.clone();
    let exited = stop(server, libc::SIGINT);
    drop(load);
    let note = judge(subject, &exited?, libc::SIGINT, CLIENTS, 1)?;
    everything_closed(&mut [], &ports)?;
    Ok(note)
}

/// 100 clients doing ping-pong on four ports, then SIGTERM.
pub fn sigterm_while_ping_pong(subject: &Subject<'_>) -> Outcome {
    const CLIENTS: usize = 100;
    let server = start(subject, N_PORTS, &launch(subject, true))?;
    let load = Load::try_ping_pong(&answering(&server), CLIENTS)
        .map_err(|err| Failure::new(format!("a ping-pong client cannot connect: {err}"), ""))?;
    warm_up(&load, CLIENTS)?;
    let ports = server.ports.clone();
    let exited = stop(server, libc::SIGTERM);
    drop(load);
    let note = judge(subject, &exited?, libc::SIGTERM, CLIENTS, N_PORTS)?;
    everything_closed(&mut [], &ports)?;
    Ok(note)
}

/// The server's log goes to a pipe that nobody reads (a terminal paused
/// with Ctrl+S), so it blocks writing its log and the first Ctrl+C cannot
/// finish the shutdown. The second must end the process at once: after the
/// first signal, its default action is back. Where the stage has no
/// handler, the first Ctrl+C ends it at once, blocked or not.
pub fn second_sigint(subject: &Subject<'_>) -> Outcome {
    let mut server = start(subject, 1, &Launch { quiet: true, ..Launch::default() })?;
    let target = target(&server, subject);
    let mut client = target.connect(0)?;
    target.exchange(&mut client, b"hello\n")?;
    server.pause_output();
    // Each message is logged before it is answered, so short messages
    // sent one at a time, each its own recv() and its own log line, fill
    // the pipe (64 KiB unless raised) within a few thousand, however much
    // of a long chunk the server's log shows, and block the server in the
    // log's write().
    let message = b"a short message, one log line each, until the log is full\n";
    let blocked = (0..4000).any(|_| {
        client.try_send(message).is_err()
            || client.recv_exact(message.len(), Duration::from_millis(500)).len() < message.len()
    });
    if !blocked {
        let why = "the server never blocked writing its log (4000 messages went through \
                   with nobody reading its stdout)";
        return if subject.own {
            Err(Failure::new(why, "the server prints every message it receives"))
        } else {
            Ok(Some(format!(
                "{why}: it logs little or nothing, so a hung shutdown could not be made"
            )))
        };
    }

    server.process.try_signal(libc::SIGINT).map_err(|why| Failure::new(why, ""))?;
    if let Some(status) = server.process.wait_exit(Duration::from_millis(300)) {
        // Ended by the first signal, even while blocked on its log.
        if !subject.stage.graceful_shutdown {
            ensure(
                status.signal() == Some(libc::SIGINT),
                || format!("after SIGINT the server ended with {status}"),
                "at this stage the server installs no signal handler: SIGINT ends it at once",
            )?;
            return Ok(Some(
                "no handler at this stage, as in the course: the first SIGINT ended the server \
                 at once although it was blocked writing its log, so no second one was needed"
                    .to_string(),
            ));
        }
        return if subject.own {
            Err(Failure::new(
                format!("the first SIGINT ended a server blocked writing its log ({status})"),
                "the shutdown logs its WARNING and DEBUG lines, so it cannot end while the log \
                 is blocked",
            ))
        } else {
            Ok(Some(format!(
                "the first SIGINT ended the server ({status}) although its log was blocked: \
                 nothing was left for a second one to end"
            )))
        };
    }
    server.process.try_signal(libc::SIGINT).map_err(|why| Failure::new(why, ""))?;
    let status = server.process.wait_exit(SHUTDOWN_LIMIT * 2);
    ensure(
        status.is_some_and(|status| status.signal() == Some(libc::SIGINT)),
        || match status {
            Some(status) => format!("after a second SIGINT the server ended with {status}"),
            None => format!("still running {:?} after a second SIGINT", SHUTDOWN_LIMIT * 2),
        },
        "a second Ctrl+C must end a shutdown that hangs: install the handler with \
         SA_RESETHAND, so that after the first signal the default action (ending the process) \
         is back",
    )?;
    Ok(None)
}
