//! The checks against servers that are wrong on purpose: each must fail,
//! with a reason, within its deadline; never pass, panic or hang.

use shared::build::workspace_binary;
use shared::checks::{self, CHECK_DEADLINE, Outcome, REPLY_TIMEOUT, Subject, Target, describe};
use shared::scratch::Scratch;
use shared::stages::{Protocol, stage};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A reverse server that accepts `accepts` clients, serves them, and then
/// closes its listener: the clients after them cannot connect, or are
/// reset from the backlog.
fn server_that_accepts_only(accepts: usize) -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for _ in 0..accepts {
            let Ok((mut stream, _)) = listener.accept() else { return };
            std::thread::spawn(move || {
                let mut buffer = [0; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buffer) {
                    if stream.write_all(&Protocol::Reverse.reply(&buffer[..n])).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Runs `check` on a thread and returns its outcome, or `None` if it did
/// not end within `limit`: a check that hangs fails the test instead of
/// hanging it.
fn within(limit: Duration, check: impl FnOnce() -> Outcome + Send + 'static) -> Option<Outcome> {
    let (done, outcome) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(check());
    });
    outcome.recv_timeout(limit).ok()
}

/// The old crowd connected each client inside its own thread and then met
/// the others at a `Barrier`: one failed connect panicked its thread, the
/// others waited at the barrier forever, and `cargo test` hung. Now every
/// client connects first, and a failure ends the check.
#[test]
fn a_crowd_that_cannot_all_connect_fails_instead_of_hanging() {
    let addr = server_that_accepts_only(5);
    let started = Instant::now();
    let outcome = within(Duration::from_secs(15), move || {
        let target =
            Target::new(vec![vec![addr]], Protocol::Reverse, REPLY_TIMEOUT, CHECK_DEADLINE);
        checks::process::crowd(&target, 200).map(|()| None)
    });
    let outcome = outcome.expect("the crowd hung");
    let failure = outcome.expect_err("200 clients cannot all be served by a server that accepts 5");
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    println!("{}", describe(&failure));
}

/// The same for the tester's ten clients.
#[test]
fn ten_clients_that_cannot_all_connect_fail_instead_of_hanging() {
    let addr = server_that_accepts_only(3);
    let outcome = within(Duration::from_secs(15), move || {
        let stage = stage(7).unwrap();
        let (outcome, _) = checks::run_wire(
            checks::wire::ten_clients,
            &[vec![addr]],
            stage,
            REPLY_TIMEOUT,
            CHECK_DEADLINE,
            None,
        );
        outcome
    });
    let failure = outcome.expect("ten-clients hung").expect_err("only 3 of 10 can be served");
    println!("{}", describe(&failure));
}

/// A stage-7 server whose log is rewritten by `sed` so that one control
/// byte the server prints escaped (`\x9b`) reaches stdout raw. `exec`
/// keeps the server's pid, so the checks find its ports; `sed -u` passes
/// each line on at once.
fn server_printing_raw(dir: &Scratch, stage07: &Path, byte: u8) -> PathBuf {
    let script = format!(
        "#!/bin/bash\nexec {} \"$@\" > >(LC_ALL=C exec sed -u 's/\\\\x{byte:02x}/\\x{byte:02x}/g')\n",
        stage07.display()
    );
    dir.write_executable(format!("raw-{byte:02x}"), &script)
}

/// The old check read stdout through a lossy UTF-8 decoding, which turned
/// a raw 0x9b into U+FFFD, and never looked for 0x7f: a server printing
/// either raw passed. Now the raw bytes are checked, each control byte on
/// its own.
#[test]
fn terminal_is_safe_fails_on_every_raw_control_byte() {
    let stage07 = workspace_binary("stage07", "stage07");
    let dir = Scratch::new("raw-controls");
    let stage = stage(7).unwrap();
    for byte in [0x9b, 0x7f, 0x1b, 0x07, 0x08] {
        let binary = server_printing_raw(&dir, &stage07, byte);
        let subject = Subject { binary: &binary, stage, own: true, version: None };
        let outcome = shared::harness::run("terminal-is-safe", &subject);
        let failure = outcome.expect_err("a server printing a control byte raw must fail");
        assert!(
            failure.what.contains(&format!("byte {byte:#04x} reached the server's stdout raw")),
            "{byte:#04x}: {}",
            describe(&failure)
        );
    }
    // And the check passes against the real server, through the same kind
    // of wrapper (sed that changes nothing): the wrapper is not the cause.
    let binary = server_printing_raw(&dir, &stage07, b'q');
    let subject = Subject { binary: &binary, stage, own: true, version: None };
    if let Err(failure) = shared::harness::run("terminal-is-safe", &subject) {
        panic!("{}", describe(&failure));
    }
}
