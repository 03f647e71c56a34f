//! The checks: their list (`CHECKS`), the stages they belong to, and the
//! code of each, except the blocking-send experiment (in `flood`).

use crate::flood::blocking_send;
use crate::report::show;
use crate::target::{Failure, Outcome, Target, secs, silence};
use shared::client::ReplyEnd;
use shared::oracle::Rng;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// One check: its name, a one-line description, the first stage it
/// belongs to, and the code.
pub(crate) struct Check {
    pub(crate) name: &'static str,
    pub(crate) about: &'static str,
    pub(crate) from_stage: u8,
    pub(crate) run: fn(&Target, u8) -> Outcome,
}

/// The checks, in the order they run. The blocking-send experiment goes
/// last: on a blocking server it leaves the server busy for a moment. It
/// belongs to stage 7 (an observation) and 8 (a check).
pub(crate) const CHECKS: &[Check] = &[
    Check {
        name: "ports-reverse",
        about: "every port accepts and reverses",
        from_stage: 6,
        run: ports_reverse,
    },
    Check {
        name: "no-newline",
        about: "a message without \\n is reversed whole",
        from_stage: 6,
        run: no_newline,
    },
    Check {
        name: "lone-newline",
        about: "a lone \\n comes back as \\n",
        from_stage: 6,
        run: lone_newline,
    },
    Check {
        name: "random-strings",
        about: "official check 1: 1000 random strings per port",
        from_stage: 6,
        run: random_strings,
    },
    Check {
        name: "ten-clients",
        about: "official check 2: ten clients at once on one port",
        from_stage: 6,
        run: ten_clients,
    },
    Check {
        name: "error-handling",
        about: "official check 3: a client leaves, the others are still served",
        from_stage: 6,
        run: error_handling,
    },
    Check {
        name: "interleave",
        about: "three clients on one port take turns",
        from_stage: 6,
        run: interleave,
    },
    Check {
        name: "reset-client",
        about: "a client that resets does not disturb the others",
        from_stage: 6,
        run: reset_client,
    },
    Check {
        name: "large-message",
        about: "a message near the 100000-byte buffer comes back exactly",
        from_stage: 6,
        run: large_message,
    },
    Check {
        name: "blocking-send",
        about: "a client that never reads: does everyone else wait?",
        from_stage: 7,
        run: blocking_send,
    },
];

pub(crate) fn checks_for(stage: u8) -> impl Iterator<Item = &'static Check> {
    CHECKS.iter().filter(move |check| stage >= check.from_stage)
}

fn ports_reverse(target: &Target, _stage: u8) -> Outcome {
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

fn no_newline(target: &Target, _stage: u8) -> Outcome {
    let mut client = target.connect(0)?;
    target.exchange(&mut client, b"abc")?;
    target.nothing_more([&mut client])
}

fn lone_newline(target: &Target, _stage: u8) -> Outcome {
    let mut client = target.connect(0)?;
    target.exchange(&mut client, b"\n")?;
    target.exchange(&mut client, b"after\n")?;
    target.nothing_more([&mut client])
}

fn random_strings(target: &Target, _stage: u8) -> Outcome {
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

fn ten_clients(target: &Target, _stage: u8) -> Outcome {
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

fn error_handling(target: &Target, _stage: u8) -> Outcome {
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

fn interleave(target: &Target, _stage: u8) -> Outcome {
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

fn reset_client(target: &Target, _stage: u8) -> Outcome {
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

fn large_message(target: &Target, _stage: u8) -> Outcome {
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
