//! The checks that only talk to a running server over TCP: the course
//! tester's and this workspace's own. `xps-check` runs these against any
//! server; the stage tests run them against each stage's binary.

use crate::checks::target::{EXTRA_BYTES_HINT, Failure, Outcome, Target, secs, show, silence};
use crate::client::{Client, ReplyEnd};
use crate::oracle::Rng;
use crate::stages::{Protocol, Stage};
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{PoisonError, RwLock};
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
    // Connect them all first: a client that cannot connect fails the check
    // here, before any thread waits for the others.
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(target.connect(0)?);
    }
    let mut clients = all_at_once(target, clients, |i| format!("string-{i}\n").into_bytes())?;
    target.nothing_more(&mut clients)
}

/// Every one of `clients` (already connected) sends `message(i)` at the
/// same moment, each on its own thread, and checks its reply. Returns the
/// clients, or the first failure.
///
/// The threads start together at a gate that opens once every thread
/// exists, or at once if one could not be made; a `Barrier` would leave
/// the others waiting forever for a thread that never came.
pub fn all_at_once(
    target: &Target,
    clients: Vec<Client>,
    message: impl Fn(usize) -> Vec<u8> + Sync,
) -> Result<Vec<Client>, Box<Failure>> {
    // Held for writing until every thread is spawned; each thread takes it
    // for reading (all of them at once) before it sends.
    let gate = RwLock::new(());
    let cancelled = AtomicBool::new(false);
    let count = clients.len();
    std::thread::scope(|scope| {
        let closed = gate.write().unwrap_or_else(PoisonError::into_inner);
        let mut runs = Vec::with_capacity(count);
        for (i, mut client) in clients.into_iter().enumerate() {
            let (gate, cancelled, message) = (&gate, &cancelled, &message);
            let spawned = std::thread::Builder::new().spawn_scoped(scope, move || {
                drop(gate.read().unwrap_or_else(PoisonError::into_inner));
                if cancelled.load(Ordering::Relaxed) {
                    return Err(Failure::new("cancelled", ""));
                }
                target.exchange(&mut client, &message(i))?;
                Ok(client)
            });
            match spawned {
                Ok(run) => runs.push(run),
                Err(err) => {
                    cancelled.store(true, Ordering::Relaxed);
                    drop(closed);
                    return Err(Failure::new(
                        format!("cannot start the thread of client {i} of {count}: {err}"),
                        "",
                    ));
                }
            }
        }
        drop(closed);
        let mut done = Vec::with_capacity(count);
        let mut first_failure = None;
        for run in runs {
            match run.join() {
                Ok(Ok(client)) => done.push(client),
                Ok(Err(failure)) => {
                    first_failure.get_or_insert(failure);
                }
                Err(_) => {
                    first_failure.get_or_insert(Failure::new("a client thread panicked", ""));
                }
            }
        }
        first_failure.map_or(Ok(done), Err)
    })
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

/// True if `reply`, which first differs from `message` at `at`, is
/// `message` with one byte inserted there (the rest shifted along).
fn inserted_byte(reply: &[u8], message: &[u8], at: usize) -> bool {
    let after = &reply[(at + 1).min(reply.len())..];
    !after.is_empty() && message[at..].starts_with(after)
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
            // A reply per recv() with a byte added: where the server's
            // recv() split the message, a stray byte sits in the middle. (A
            // stray \n reads the same as a piece reversed with its \n, the
            // likelier mistake, so it gets that hint.)
            hint: if reply.bytes[at] != b'\n' && inserted_byte(&reply.bytes, &message, at) {
                EXTRA_BYTES_HINT.to_string()
            } else if newline_early {
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

/// Binary junk, invalid UTF-8, NUL bytes, a lone newline and multi-byte
/// characters are answered byte for byte; 1 MiB of random bytes, sent
/// while the replies are read, comes back whole; then every port still
/// answers.
pub fn odd_data(target: &Target, stage: &Stage) -> Outcome {
    let mut client = target.connect(0)?;
    for message in [&b"\xff\xfe\xc3(\n"[..], b"a\0b\0c\n", b"\n", "a\u{f1}b\u{1f600}\n".as_bytes()]
    {
        target.exchange(&mut client, message).map_err(|mut failure| {
            failure.hint = format!(
                "{} (a message is bytes, not a C string: a \\0 does not end it, and bytes that \
                 are not UTF-8 are reversed one by one)",
                failure.hint
            );
            failure
        })?;
    }
    big_random_message(target, stage)?;
    let mut clients = Vec::new();
    for index in 0..target.ports() {
        let mut client = target.connect(index)?;
        target.exchange(&mut client, b"after the odd data\n")?;
        clients.push(client);
    }
    target.nothing_more(&mut clients)
}

/// 1 MiB of random bytes, sent by one thread while this one reads. The
/// server answers each chunk as TCP delivers it, so with the reverse
/// protocol the reply depends on where the chunks were cut, but every
/// reply is a reordering of its chunk: the reply holds the same bytes, as
/// many of each, as the message.
fn big_random_message(target: &Target, stage: &Stage) -> Result<(), Box<Failure>> {
    const SIZE: usize = 1 << 20;
    let message = Rng::new(42).bytes(SIZE);
    let mut client = target.connect(0)?;
    let mut writer = client
        .stream()
        .try_clone()
        .map_err(|err| Failure::new(format!("cannot clone a client socket: {err}"), ""))?;
    let reply = std::thread::scope(|scope| {
        let sending = scope.spawn(|| writer.write_all(&message));
        let reply = target.read_reply(&mut client, SIZE, target.wait(target.timeout * 5));
        // A failed send shows in the reply as well: fewer bytes came back.
        let _ = sending.join();
        reply
    });
    let same_bytes = match stage.protocol {
        Protocol::WriteBack => reply.bytes == message,
        Protocol::Reverse => histogram(&reply.bytes) == histogram(&message),
    };
    if reply.end != ReplyEnd::Complete || !same_bytes {
        return Err(Box::new(Failure {
            what: if reply.end == ReplyEnd::Complete {
                format!("all {SIZE} bytes of a random message came back, but not the same bytes")
            } else {
                format!(
                    "{} of the {SIZE} bytes of a random message came back ({:?})",
                    reply.bytes.len(),
                    reply.end
                )
            },
            hint: "every byte received must be sent back, whatever its value: use the count \
                   recv() returns (never strlen), and loop on send() until all of it is written"
                .to_string(),
            ..Failure::default()
        }));
    }
    target.nothing_more([&mut client])?;
    Ok(())
}

/// How many times each byte value occurs in `bytes`.
fn histogram(bytes: &[u8]) -> [usize; 256] {
    let mut counts = [0; 256];
    for &byte in bytes {
        counts[usize::from(byte)] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::inserted_byte;

    #[test]
    fn an_inserted_byte_is_told_from_a_changed_one() {
        let message = b"xxxxxx\n";
        // A \0 added where the server's recv() split the message.
        assert!(inserted_byte(b"xxx\0xxx\n", message, 3));
        // A byte changed in place, or a reply cut short: not an insertion.
        assert!(!inserted_byte(b"xxx\0xx\n", message, 3));
        assert!(!inserted_byte(b"xxxyyyy", message, 3));
        assert!(!inserted_byte(b"xxx\0", message, 3));
    }
}
