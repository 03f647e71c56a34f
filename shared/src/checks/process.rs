//! Faults, floods and limits, seen from outside the process: what a server
//! left running on a laptop meets sooner or later. Each check starts the
//! binary itself and reads its fds and CPU time from `/proc`.

use crate::checks::launch::{N_PORTS, every_port_answers, log_lines, start, still_running, target};
use crate::checks::wire::all_at_once;
use crate::checks::{Failure, Outcome, Subject, Target, ensure};
use crate::client::{Client, FloodEnd, Flooded, IO_TIMEOUT, ReplyEnd};
use crate::procfs;
use crate::server::{Launch, Server};
use crate::stages::SendModel;
use crate::wait::wait_until;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// A server without DEBUG lines and without its message lines kept: some
/// of these checks make thousands of connections.
const QUIET: Launch =
    Launch { quiet: true, max_fds: None, skip_messages: true, upstream: None, public: None };

/// Process `pid`'s open fd count, as a check's result.
fn open_fds(pid: u32) -> Result<usize, Box<Failure>> {
    procfs::open_fds(pid)
        .map_err(|err| Failure::new(format!("cannot count the server's fds: {err}"), ""))
}

/// Fails unless the server's open-fd count comes back to `start` within a
/// few seconds `after` something.
fn fds_come_back(server: &Server, start: usize, after: &str) -> Result<(), Box<Failure>> {
    let mut now = 0;
    wait_until(Duration::from_secs(5), || {
        now = procfs::open_fds(server.process.pid()).unwrap_or(usize::MAX);
        now == start
    });
    ensure(
        now == start,
        || format!("the server had {start} fds open before {after}, and {now} after"),
        "every connection's fd must be closed once the client has gone: close() it when \
         recv() returns 0 or fails, and when send() fails",
    )
}

/// Under a 64-fd limit, 100 clients connect to one port and stay. The
/// server runs out of fds: it must not spin while the clients wait (where
/// the stage does not spin anyway), must say so once (the workspace's own
/// log), and must serve a new client soon after they leave.
pub fn fd_exhaustion(subject: &Subject<'_>) -> Outcome {
    const MAX_FDS: u64 = 64;
    const CLIENTS: usize = 100;
    const HOLD: Duration = Duration::from_secs(1);
    let launch = Launch { max_fds: Some(MAX_FDS), ..QUIET };
    let mut server = start(subject, 1, &launch)?;
    let (port, pid) = (server.ports[0], server.process.pid());
    // Connect 100 clients at once and hold whatever connects: a connect
    // that fails is simply not held, nobody waits for it.
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let held: Vec<TcpStream> = std::thread::scope(|scope| {
        let tries: Vec<_> = (0..CLIENTS)
            .map(|_| {
                scope.spawn(move || TcpStream::connect_timeout(&addr, Duration::from_secs(3)).ok())
            })
            .collect();
        tries.into_iter().filter_map(|t| t.join().ok().flatten()).collect()
    });
    ensure(
        held.len() > MAX_FDS as usize,
        || format!("only {} of {CLIENTS} clients could connect", held.len()),
        "the kernel completes connections that wait in the listen backlog even while the \
         server cannot accept them: is the backlog tiny?",
    )?;
    // Out of fds: the workspace's server says so; any server's fd count
    // reaches the limit.
    let out_of_fds = if subject.own {
        server.wait_for_count("Too many open files", 1, Duration::from_secs(5))
    } else {
        wait_until(Duration::from_secs(5), || {
            procfs::open_fds(pid).is_ok_and(|n| n as u64 >= MAX_FDS - 1)
        })
    };
    ensure(
        out_of_fds,
        || {
            format!(
                "with {} clients connected under a limit of {MAX_FDS} fds, the server never ran \
                 out of fds ({} open){}",
                held.len(),
                procfs::open_fds(pid).unwrap_or_default(),
                if subject.own { ": no 'Too many open files' line" } else { "" }
            )
        },
        "accept every client that connects, and log an accept() that fails",
    )?;

    let note = if subject.stage.spins_when_idle {
        std::thread::sleep(HOLD);
        Some(format!(
            "CPU not measured: at stage {} one connected client already keeps the server at \
             full CPU (level-triggered EPOLLOUT), so the figure could not show an accept() \
             spin; the server ran out of fds and served again once they were free",
            subject.stage.number
        ))
    } else {
        let cpu = || {
            procfs::cpu_time(pid).map_err(|err| {
                Failure::new(format!("cannot read the server's CPU time: {err}"), "")
            })
        };
        let before = cpu()?;
        std::thread::sleep(HOLD);
        let share = (cpu()?.saturating_sub(before)).as_secs_f64() / HOLD.as_secs_f64();
        ensure(
            share < 0.20,
            || format!("the server used {:.0}% CPU while out of fds", share * 100.0),
            "when accept() fails with EMFILE the client stays in the backlog, so a listener \
             in epoll is ready again at once and the loop spins. Keep a spare fd: close it, \
             accept the client, close that, reopen the spare (see refuse_one_client in \
             xps_listener.rs)",
        )?;
        None
    };
    if subject.own {
        ensure(
            // The listener's line: from stage 11 a proxied client's
            // upstream may also fail to get an fd, and says so apart.
            server.count("closing new clients until fds are free") == 1,
            || format!("logged more than once for one burst:\n{}", server.stdout()),
            "log running out of fds once per burst, not once per refused client",
        )?;
    }

    drop(held);
    let expected = subject.stage.protocol.reply(b"free again\n");
    let served = wait_until(Duration::from_secs(2), || {
        let Ok(mut client) = Client::try_connect(port) else { return false };
        let _ = client.try_send(b"free again\n");
        client.read_reply(expected.len(), Duration::from_millis(300)).bytes == expected
    });
    ensure(
        served,
        || "no client was served within 2 s of the fds being free again".to_string(),
        "once clients leave, their fds are free: the listener must accept again",
    )?;
    if subject.own {
        // Saying so matters beyond the log: the flag it clears is what lets
        // the next burst be logged at all.
        ensure(
            server.wait_for_count("fds are free again", 1, Duration::from_secs(2)),
            || {
                format!(
                    "no 'fds are free again' line once clients were served:\n{}",
                    server.stdout()
                )
            },
            "when accept() works again after EMFILE, log it once and clear out_of_fds \
             (accepting_again in xps_listener.rs)",
        )?;
    }
    still_running(&mut server, "running out of fds")?;
    Ok(note)
}

/// 3000 connect / message / reply / close cycles over the four ports leave
/// the server with the fds it started with. (More cycles than the usual
/// limit of 1024 fds: a server that leaks one fd a client also stops
/// accepting.)
pub fn no_fd_leak(subject: &Subject<'_>) -> Outcome {
    const CYCLES: usize = 3000;
    let server = start(subject, N_PORTS, &QUIET)?;
    let target = target(&server, subject);
    let start = open_fds(server.process.pid())?;
    for i in 0..CYCLES {
        let mut client = target.connect(i)?;
        target.exchange(&mut client, b"cycle\n").map_err(|mut failure| {
            failure.what = format!("cycle {i} of {CYCLES}: {}", failure.what);
            failure
        })?;
    }
    fds_come_back(&server, start, &format!("{CYCLES} connect/reply/close cycles"))?;
    Ok(None)
}

/// How many clients a check connects to one port before it waits for the
/// server to accept them: half the course's backlog of 64. Past the
/// backlog the kernel drops the SYN, and the client's connect() waits a
/// 1 s retry (stage 13's chapter measures it); a check that means to see
/// many clients, not a slow start, stays below it.
const CLIENTS_PER_ROUND: usize = 32;

/// `clients` clients spread over the target's ports, all connected first,
/// then all sending at once, each answered.
pub fn crowd(target: &Target, clients: usize) -> Result<(), Box<Failure>> {
    let mut connected = Vec::with_capacity(clients);
    for i in 0..clients {
        let client = target.connect(i).map_err(|mut failure| {
            failure.what = format!("client {i} of a crowd of {clients}: {}", failure.what);
            failure
        })?;
        connected.push(client);
        if (i + 1) % (CLIENTS_PER_ROUND * target.ports()) == 0 {
            every_port_answers(target, &format!("{} clients of a crowd connected", i + 1))?;
        }
    }
    all_at_once(target, connected, |i| format!("crowd {i}\n").into_bytes())?;
    Ok(())
}

/// Clients that reset mid-message, connect and leave at once (1000 of
/// them), say nothing, half-close after a message, or come 200 at once:
/// the server copes with each, keeps serving, and ends with the fds it
/// started with.
pub fn abrupt_clients(subject: &Subject<'_>) -> Outcome {
    let server = start(subject, N_PORTS, &QUIET)?;
    let target = target(&server, subject);
    let start = open_fds(server.process.pid())?;

    for index in 0..target.ports() {
        let mut client = target.connect(index)?;
        let _ = client.try_send(b"half a mess");
        client.reset();
    }
    every_port_answers(&target, "clients reset mid-message")?;

    // In rounds, each ended by a reply on every port: a reply shows that
    // the clients queued before it were accepted.
    let round = CLIENTS_PER_ROUND * target.ports();
    for first in (0..1000).step_by(round) {
        for i in first..(first + round).min(1000) {
            drop(target.connect(i)?);
        }
        every_port_answers(&target, "1000 clients connected and left at once")?;
    }

    let mut silent = Vec::new();
    for index in 0..target.ports() {
        silent.push(target.connect(index)?);
    }
    every_port_answers(&target, "clients that say nothing")?;
    drop(silent);

    for index in 0..target.ports() {
        let mut client = target.connect(index)?;
        let message = b"last words\n";
        let expected = target.protocol.reply(message);
        client
            .try_send(message)
            .map_err(|err| Failure::new(format!("send to port {}: {err}", client.port()), ""))?;
        client.shutdown_write();
        let reply = target.read_reply(&mut client, expected.len(), target.wait(target.timeout));
        if reply.end != ReplyEnd::Complete || reply.bytes != expected {
            return Err(Box::new(Failure {
                what: format!("a client that half-closed on port {} lost its reply", client.port()),
                sent: Some(message.to_vec()),
                expected: Some(expected),
                got: Some(reply.bytes),
                hint: "a client that closes its sending half (shutdown(SHUT_WR)) after a \
                       message still reads: answer what you received before you handle the \
                       end of input"
                    .to_string(),
                ..Failure::default()
            }));
        }
        ensure(
            client.is_closed_by_server(IO_TIMEOUT),
            || format!("the server kept a half-closed client on port {}", client.port()),
            "recv() returning 0 means the client has finished sending: close the connection",
        )?;
    }
    every_port_answers(&target, "half-closed clients")?;

    crowd(&target, 200)?;
    every_port_answers(&target, "200 clients at once")?;
    fds_come_back(&server, start, "the abrupt clients")?;
    Ok(None)
}

/// A client that goes away while the server is writing to it: the write
/// fails (EPIPE or a reset) instead of killing the server with SIGPIPE,
/// and the server lives on.
///
/// Where a stage blocks in `send()`, a client floods without reading until
/// the server is stuck in `send()` to it, then resets. Where a stage
/// buffers, it never blocks: the client floods a bounded amount, then
/// resets.
pub fn dead_peer_writes(subject: &Subject<'_>) -> Outcome {
    let mut server = start(subject, N_PORTS, &QUIET)?;
    let target = target(&server, subject);
    let flooder = target.connect(0)?;
    // Where send() blocks, flood until the server is stuck in it; where it
    // buffers there is no stall to wait for, so flood a bounded amount.
    let (stall, max_bytes) = match subject.stage.send_model {
        SendModel::Blocks => (Duration::from_millis(300), 64 << 20),
        SendModel::Buffers => (Duration::from_secs(1), 16 << 20),
    };
    let Flooded { sent, end } =
        flooder.flood(stall, max_bytes, target.wait(Duration::from_secs(10)));
    if let FloodEnd::Gone(err) = &end {
        return Err(Failure::new(
            format!(
                "the server dropped a client that sends without reading, after {sent} bytes ({err})"
            ),
            "a client that sends a lot before it reads is still a client: close a connection \
             only when recv() returns 0 or fails, or send() fails",
        ));
    }
    flooder.reset();
    // The workspace's server logs the failed send() it was blocked in.
    if subject.own && end == FloodEnd::Stalled && subject.stage.send_model == SendModel::Blocks {
        log_lines(
            &server,
            "send() failed",
            1,
            "a send() that fails because the client has gone is logged as an ERROR",
        )?;
    }
    still_running(&mut server, "a client reset while the server was writing to it")?;
    // The same on every port, with the replies still being written.
    for index in 0..target.ports() {
        let mut client = target.connect(index)?;
        let _ = client.try_send(&vec![b'z'; 200_000]);
        client.reset();
    }
    every_port_answers(&target, "writes to clients that had gone")?;
    still_running(&mut server, "writes to clients that had gone")?;
    Ok(None)
}

/// A write to a client that has gone must fail with `EPIPE`, not kill the
/// server with `SIGPIPE`. The Rust runtime ignores `SIGPIPE` before
/// `main()` runs; this reads `/proc` to see that nothing put the default
/// back, which the book says of every stage. A binary that is not the
/// workspace's own (a C build) passes with a note: it must then send with
/// `MSG_NOSIGNAL`, which `dead-peer-writes` tries.
pub fn sigpipe_ignored(subject: &Subject<'_>) -> Outcome {
    let server = start(subject, 1, &QUIET)?;
    let ignored = procfs::ignores_signal(server.process.pid(), libc::SIGPIPE)
        .map_err(|err| Failure::new(format!("cannot read the server's signals: {err}"), ""))?;
    if ignored {
        return Ok(None);
    }
    if !subject.own {
        return Ok(Some(
            "SIGPIPE keeps its default action: only MSG_NOSIGNAL on every send keeps a client \
             that has gone from killing the server"
                .to_string(),
        ));
    }
    Err(Failure::new(
        "SIGPIPE has its default action: a send() to a client that has gone ends the server",
        "Rust programs start with SIGPIPE ignored; something restored SIG_DFL (a \
         libc::signal(SIGPIPE, ..) call?): take it out, or the book's claim is wrong",
    ))
}
