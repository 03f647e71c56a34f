//! What the workspace's own servers print: a line for each new connection,
//! each message and each client that leaves, and never a byte a client
//! sent that could drive the operator's terminal. These checks read this
//! workspace's log lines, so they run only against its own binaries.

use crate::checks::launch::{N_PORTS, answering, log_lines, start, target};
use crate::checks::wire::all_at_once;
use crate::checks::{Failure, Outcome, Subject, ensure};
use crate::client::IO_TIMEOUT;
use crate::server::Launch;

/// The bytes that must never reach the log raw, with what they do to a
/// terminal.
pub const TERMINAL_CONTROLS: [(u8, &str); 5] = [
    (0x1b, "ESC, which starts escape sequences (colours, clearing, the window title)"),
    (0x9b, "CSI, the one-byte ESC [ of 8-bit terminals"),
    (0x07, "BEL, which rings the bell"),
    (0x08, "backspace, which hides what came before it"),
    (0x7f, "DEL, which some terminals treat as a backspace"),
];

/// The log shows each new connection (on its port), what each client sent
/// (`client: hello`), and each client that leaves (`peer closed
/// connection`), while the others are still served.
pub fn log_clients(subject: &Subject<'_>) -> Outcome {
    let server = start(subject, N_PORTS, &Launch { quiet: true, ..Launch::default() })?;
    let target = target(&server, subject);
    let mut clients = Vec::new();
    for index in 0..target.ports() {
        let mut client = target.connect(index)?;
        target.exchange(&mut client, b"hello\n")?;
        clients.push(client);
    }
    let n = target.ports();
    log_lines(&server, "new connection", n, "log each accepted client (INFO)")?;
    for port in answering(&server) {
        let on_port = format!("on port {port}");
        ensure(
            server.stdout().lines().any(|l| l.contains("new connection") && l.contains(&on_port)),
            || format!("no 'new connection' line names port {port}:\n{}", server.stdout()),
            "say on which port each client came in",
        )?;
    }
    log_lines(&server, "client: hello", n, "print every message a client sends")?;

    // The tester's ten clients at once: ten more connections.
    let mut ten = Vec::new();
    for _ in 0..10 {
        ten.push(target.connect(0)?);
    }
    clients.extend(all_at_once(&target, ten, |i| format!("string-{i}\n").into_bytes())?);
    log_lines(&server, "new connection", n + 10, "log each accepted client (INFO)")?;

    // One leaves; the log says so, and the others are still served.
    ensure(
        server.count("peer closed connection") == 0,
        || format!("a client was logged as gone before any left:\n{}", server.stdout()),
        "",
    )?;
    drop(clients.pop());
    log_lines(
        &server,
        "peer closed connection",
        1,
        "when recv() returns 0 the client has gone: log it and destroy the connection",
    )?;
    for client in &mut clients {
        target.exchange(client, b"still here\n")?;
    }
    let outcome = target.nothing_more(&mut clients)?;
    // Nothing above is an error: an ERROR line for it would bury the real
    // ones (an accept loop that logs its normal EAGAIN end, say).
    ensure(
        server.count("[ERROR]") == 0,
        || format!("clients that come, talk and leave logged an ERROR:\n{}", server.stdout()),
        "log as ERROR only what went wrong: EAGAIN from accept() or recv() means 'no more for \
         now', and a client that leaves is INFO",
    )?;
    Ok(outcome)
}

/// Escape sequences and control bytes from a client never reach the
/// server's stdout raw (the message is printed escaped, `\x1b[31mRED`),
/// and a log that is not a terminal has no colours.
pub fn terminal_is_safe(subject: &Subject<'_>) -> Outcome {
    let server = start(subject, 1, &Launch { quiet: true, ..Launch::default() })?;
    let target = target(&server, subject);
    let hostile = b"\x1b[31mRED\x1b]0;title\x07\x1b[2J\x08\x7f\x9b\n";
    let mut client = target.connect(0)?;
    target.exchange(&mut client, hostile)?;
    // The reply can arrive before the log line leaves the server's buffer
    // (it is flushed when the loop next waits), so wait for the line
    // before stopping the process.
    log_lines(&server, "RED", 1, "print every message a client sends")?;
    let exited =
        server.try_stop(libc::SIGKILL, IO_TIMEOUT).map_err(|(_, why)| Failure::new(why, ""))?;
    raw_controls(&exited.stdout_bytes)?;
    ensure(
        exited.stdout.contains("client: \\x1b[31mRED"),
        || format!("the message was not printed escaped:\n{}", exited.stdout),
        "print a client's control bytes escaped, as \\x1b",
    )?;
    Ok(None)
}

/// Fails if `stdout` holds any byte of [`TERMINAL_CONTROLS`] raw.
pub fn raw_controls(stdout: &[u8]) -> Result<(), Box<Failure>> {
    for (byte, what) in TERMINAL_CONTROLS {
        if let Some(at) = stdout.iter().position(|&b| b == byte) {
            let line_start = stdout[..at].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let line_end =
                stdout[at..].iter().position(|&b| b == b'\n').map_or(stdout.len(), |i| at + i);
            return Err(Box::new(Failure {
                what: format!("byte {byte:#04x} reached the server's stdout raw: {what}"),
                got: Some(stdout[line_start..line_end].to_vec()),
                hint: format!(
                    "print a client's bytes escaped (as \\x{byte:02x}), never raw: a client \
                     must not be able to drive the operator's terminal"
                ),
                ..Failure::default()
            }));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_control_bytes_are_found_escaped_ones_are_not() {
        assert!(raw_controls(b"client: \\x1b[31mRED\\x7f\\x9b\n").is_ok());
        for (byte, _) in TERMINAL_CONTROLS {
            let log = [&b"12:00 [INFO] ok\nclient: a"[..], &[byte], b"b\nnext\n"].concat();
            let failure = raw_controls(&log).unwrap_err();
            assert!(failure.what.contains(&format!("{byte:#04x}")), "{}", failure.what);
            assert_eq!(
                failure.got.as_deref(),
                Some(&[&b"client: a"[..], &[byte], b"b"].concat()[..])
            );
        }
    }
}
