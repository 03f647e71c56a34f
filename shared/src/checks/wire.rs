//! The checks that only talk to a running server over TCP: the course
//! tester's and this workspace's own. `xps-check` runs these against any
//! server; the stage tests run them against each stage's binary.

use crate::checks::target::{Failure, Outcome, Target, secs, show, silence};
use crate::client::ReplyEnd;
use crate::oracle::Rng;
use crate::stages::Stage;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// On every port, a client gets two messages answered.
pub fn every_port(target: &Target, _stage: &Stage) -> Outcome {
    let mut clients = Vec::new();
    for index in 0..target.ports() {
        let mut client = target.connect(index)?;
        target.exchange(&mut client, b"hello\n")?;
        let message = format!("port {}\n", client.port());
        target.exchange(&mut client, message.as_bytes())?;
        clients.push(client);
    }
    target.nothing_more(&mut clients)
}

/// A message without a trailing `\n` is answered whole.
pub fn no_newline(target: &Target, _stage: &Stage) -> Outcome {
    let mut client = target.connect(0)?;
    target.exchange(&mut client, b"abc")?;
    target.nothing_more([&mut client])
}

/// A lone `\n` is answered with a lone `\n`, and the next message too.
pub fn lone_newline(target: &Target, _stage: &Stage) -> Outcome {
    let mut client = target.connect(0)?;
    target.exchange(&mut client, b"\n")?;
    target.exchange(&mut client, b"after\n")?;
    target.nothing_more([&mut client])
}

/// The official tester's first check: 1000 random strings on each port,
/// one at a time.
pub fn random_strings(target: &Target, _stage: &Stage) -> Outcome {
    const PER_PORT: usize = 1000;
    let total = PER_PORT * target.ports();
    let started = Instant::now();
    let mut rng = Rng::new(0x0dd_ba11);
    let mut clients = Vec::new();
    let mut done = 0;
    for index in 0..target.ports() {
        let mut client = target.connect(index)?;
        for _ in 0..PER_PORT {
            match target.exchange(&mut client, &rng.tester_message(99)) {
                Ok(()) => done += 1,
                // The check's deadline cut the wait short: too slow, not silent.
                Err(_) if done > 0 && target.left().is_zero() => {
                    return Err(too_slow(done, total, started.elapsed(), target.limit).into());
                }
                Err(failure) => return Err(failure),
            }
        }
        clients.push(client);
    }
    target.nothing_more(&mut clients)
}

/// The failure of a check that got only `done` of its `total` replies
/// before its time ran out, with a guess at why the replies are slow.
fn too_slow(done: usize, total: usize, took: Duration, limit: Duration) -> Failure {
    let per_reply = took.as_secs_f64() * 1000.0 / done as f64;
    // Delayed ACKs wait 40 ms on Linux, up to 200 ms elsewhere.
    let hint = if (25.0..=250.0).contains(&per_reply) {
        "that is the delay of Nagle's algorithm meeting a delayed ACK: the server sends each \
         reply in more than one send(), and the kernel holds the second back until the client \
         acknowledges the first. Send each reply with one send() (or set TCP_NODELAY)"
    } else {
        "a right server answers each of these short messages in well under a millisecond: \
         does it sleep, or print every message to a slow terminal?"
    };
    Failure {
        what: format!(
            "only {done} of {total} replies in {} (about {per_reply:.1} ms per reply)",
            secs(limit)
        ),
        hint: hint.to_string(),
        ..Failure::default()
    }
}

/// The official tester's second check: ten clients on one port at once,
/// each with its own message.
pub fn ten_clients(target: &Target, _stage: &Stage) -> Outcome {
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(target.connect(0)?);
    }
    let start = Arc::new(Barrier::new(clients.len()));
    let mut clients = std::thread::scope(|scope| {
        let runs: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(i, mut client)| {
                let start = Arc::clone(&start);
                scope.spawn(move || {
                    start.wait();
                    target.exchange(&mut client, format!("string-{i}\n").as_bytes())?;
                    Ok(client)
                })
            })
            .collect();
        runs.into_iter()
            .map(|run| {
                run.join().unwrap_or_else(|_| {
                    Err(Box::new(Failure {
                        what: "a client thread panicked".to_string(),
                        ..Failure::default()
                    }))
                })
            })
            .collect::<Result<Vec<_>, _>>()
    })?;
    target.nothing_more(&mut clients)
}

/// The official tester's third check: of two clients the first leaves;
/// the second and a newcomer are still served.
pub fn error_handling(target: &Target, _stage: &Stage) -> Outcome {
    let first = target.connect(0)?;
    let mut second = target.connect(0)?;
    target.exchange(&mut second, b"hello\n")?;
    drop(first);
    // Give the server a moment to see the first client go.
    std::thread::sleep(Duration::from_millis(100));
    target.exchange(&mut second, b"still here\n").map_err(|mut failure| {
        failure.hint = format!("after another client left: {}", failure.hint);
        failure
    })?;
    let mut newcomer = target.connect(0)?;
    target.exchange(&mut newcomer, b"brand new\n")?;
    target.nothing_more([&mut second, &mut newcomer])
}

/// Three clients on one port take turns, five rounds.
pub fn interleave(target: &Target, _stage: &Stage) -> Outcome {
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(target.connect(0)?);
    }
    for round in 0..5 {
        for (i, client) in clients.iter_mut().enumerate() {
            target.exchange(client, format!("client {i} round {round}\n").as_bytes())?;
        }
    }
    target.nothing_more(&mut clients)
}

/// Clients that reset their connection mid-message disturb nobody else.
pub fn reset_client(target: &Target, _stage: &Stage) -> Outcome {
    let mut bystander = target.connect(0)?;
    target.exchange(&mut bystander, b"before\n")?;
    for _ in 0..5 {
        let mut resetter = target.connect(0)?;
        // Half a message, then a reset (RST) instead of a normal close.
        let _ = resetter.try_send(b"half a mess");
        resetter.reset();
    }
    std::thread::sleep(Duration::from_millis(100));
    target.exchange(&mut bystander, b"after the resets\n").map_err(|mut failure| {
        failure.hint = format!("after clients reset their connections: {}", failure.hint);
        failure
    })?;
    let mut newcomer = target.connect(0)?;
    target.exchange(&mut newcomer, b"new\n")?;
    target.nothing_more([&mut bystander, &mut newcomer])
}

/// A message of 100,000 bytes, near the size of the server's buffer,
/// comes back exactly.
pub fn large_message(target: &Target, _stage: &Stage) -> Outcome {
    // TCP may deliver a large message in several pieces, and the server
    // reverses each piece on its own. Here that does not matter: every
    // piece is 'x's, which read the same backwards, and only the last one
    // ends in the message's single \n, which stays last. So a right reply
    // is the message itself, byte for byte, however it was split.
    let mut message = vec![b'x'; 99_999];
    message.push(b'\n');
    let mut client = target.connect(0)?;
    if let Err(err) = client.try_send(&message) {
        return Err(Box::new(Failure {
            what: format!("send failed: {err}"),
            ..Failure::default()
        }));
    }
    let wait = target.wait(target.timeout * 2);
    let reply = target.read_reply(&mut client, message.len(), wait);
    if reply.end == ReplyEnd::Complete && reply.bytes == message {
        return target.nothing_more([&mut client]);
    }
    if reply.end == ReplyEnd::Complete {
        let at = reply.bytes.iter().zip(&message).position(|(a, b)| a != b).unwrap_or_default();
        let around = |bytes: &[u8]| show(&bytes[at..(at + 16).min(bytes.len())]);
        let newline_early = reply.bytes[..reply.bytes.len() - 1].contains(&b'\n');
        return Err(Box::new(Failure {
            what: format!(
                "all {} bytes came back, but from byte {at} on they differ: {} instead of {}",
                message.len(),
                around(&reply.bytes),
                around(&message)
            ),
            hint: if newline_early {
                "a \\n came back before the end: the reverse includes the trailing \\n (TCP \
                 may split the message into pieces; the \\n of the last piece stays last)"
                    .to_string()
            } else {
                "the reply should be the message itself: check the reverse function".to_string()
            },
            ..Failure::default()
        }));
    }
    let cut_short = wait < target.timeout * 2;
    if reply.end == ReplyEnd::TimedOut && cut_short {
        return Err(target.out_of_time(client.port()).into());
    }
    Err(Box::new(Failure {
        cause: silence(&reply, cut_short),
        what: format!(
            "{} of {} bytes came back ({:?})",
            reply.bytes.len(),
            message.len(),
            reply.end
        ),
        hint: "a large message needs every byte sent back: loop on send() until all is \
               written, and read with a buffer of at least 100000 bytes"
            .to_string(),
        ..Failure::default()
    }))
}
