//! The checks of the ports whose sessions have nothing behind them (stage
//! 13 on: the third and fourth ports, 8003 and 8004). The course leaves
//! them so in this stage, and its tester does not look at them; these
//! check what the course says they do, in a form that can fail:
//!
//! * [`nothing_behind`]: a client that sends something gets not one byte
//!   back, and its connection stays open: no reply, no close, no reset.
//!   (Stage 12 refuses a file on the third port and writes back on the
//!   fourth: both fail it.)
//! * [`sessions`], the stage tests' form: that, on both ports, and then
//!   clients that leave, one of them after sending more than a pipe holds,
//!   give the server back every fd it took for them.

use crate::checks::launch::{LOG_WAIT, N_PORTS, start};
use crate::checks::{Failure, Outcome, Subject, ensure, show};
use crate::client::{Client, connect_first};
use crate::procfs;
use crate::server::Launch;
use crate::wait::wait_until;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

const NOTHING_HINT: &str = "in stage 13 the third and fourth ports give each client a session \
                            with nothing behind it: what the client sends goes nowhere, nothing \
                            comes back, and the connection stays open until the client leaves \
                            (make the session even when no upstream or file is wanted)";

const FREED_HINT: &str = "a client that leaves a session with nothing behind it must free its \
                          connection: read what it sends even though it goes nowhere, or its \
                          end of input waits behind a full pipe for ever";

/// How long a client of an empty session waits to see that nothing comes.
pub const SILENCE: Duration = Duration::from_millis(300);

/// A client of `port` sends a line, then for `silence` receives nothing
/// and is not closed.
pub fn nothing_behind(port: &[SocketAddr], silence: Duration) -> Outcome {
    let (mut stream, addr) = connect_first(port, |addr| TcpStream::connect_timeout(&addr, silence))
        .map_err(|unreachable| Failure::new(format!("cannot connect to {unreachable}"), ""))?;
    stream
        .write_all(b"anyone there?\n")
        .map_err(|err| Failure::new(format!("sending to {addr}: {err}"), NOTHING_HINT))?;
    let io = |err: std::io::Error| Failure::new(format!("{addr}: {err}"), "");
    stream.set_read_timeout(Some(silence)).map_err(io)?;
    let mut chunk = [0; 256];
    match stream.read(&mut chunk) {
        Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(None),
        Ok(0) => Err(Failure::new(
            format!("{addr} closed the connection: a session with nothing behind it keeps it"),
            NOTHING_HINT,
        )),
        Ok(n) => {
            Err(Failure::new(format!("{addr} sent {n} bytes: {}", show(&chunk[..n])), NOTHING_HINT))
        }
        Err(err) => Err(Failure::new(format!("{addr} ended the connection: {err}"), NOTHING_HINT)),
    }
}

/// The stage tests' form: [`nothing_behind`] on the third and fourth
/// ports; then 20 more clients of each, one of which sends 4 MiB first,
/// leave (half of them with a reset), and the server must be back to the
/// fds it had before all of them.
pub fn sessions(subject: &Subject<'_>) -> Outcome {
    if !subject.stage.sessions {
        return Ok(Some(format!("stage {} has no sessions", subject.stage.number)));
    }
    let launch = Launch { quiet: true, skip_messages: true, ..Launch::default() };
    let server = start(subject, N_PORTS, &launch)?;
    let at = |index: usize| [SocketAddr::from((Ipv4Addr::LOCALHOST, server.ports[index]))];
    let pid = server.process.pid();
    let fds = |what: &str| {
        procfs::open_fds(pid)
            .map_err(|err| Failure::new(format!("cannot count the server's fds {what}: {err}"), ""))
    };
    // Counted first: every client below is gone by the end.
    let before = fds("before the clients")?;
    nothing_behind(&at(2), SILENCE)?;
    nothing_behind(&at(3), SILENCE)?;

    let mut clients = Vec::new();
    for index in [2, 3] {
        for _ in 0..20 {
            let client = Client::try_connect(server.ports[index])
                .map_err(|err| Failure::new(format!("cannot connect: {err}"), NOTHING_HINT))?;
            clients.push(client);
        }
    }
    // More than a pipe and a chunk hold, then gone.
    let flooded = clients[0].flood(Duration::from_millis(200), 4 << 20, Duration::from_secs(2));
    for (i, mut client) in clients.into_iter().enumerate() {
        if i % 2 == 0 {
            // The flooded one may be stalled: then this fails, as it may.
            let _ = client.try_send(b"bye\n");
            drop(client);
        } else {
            client.reset();
        }
    }
    let freed = wait_until(LOG_WAIT, || procfs::open_fds(pid).is_ok_and(|n| n == before));
    let after = fds("after the clients left")?;
    ensure(
        freed,
        || {
            format!(
                "{after} fds open {LOG_WAIT:?} after 42 clients of the empty sessions left ({} \
                 bytes sent by one of them first), {before} before them",
                flooded.sent
            )
        },
        FREED_HINT,
    )?;
    Ok(None)
}
