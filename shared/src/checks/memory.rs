//! The course tester's stage-10 memory check, in a form that can fail: a
//! bound, not a trend. The tester pipes a large file into the server with
//! `netcat` and fails on memory that keeps rising; a trend over a few
//! samples a second apart says little either way. Here one client floods
//! the first port and never reads, the server's memory is read from
//! `/proc` every few milliseconds while it does, and the server fails if
//! it ever grows by more than [`MEMORY_BOUND`].
//!
//! A server with pipes stops reading from that client once its pipe is
//! full (backpressure): the client's writes stall within a few MiB, and
//! the memory stays put. A server that queues everything it cannot send
//! (stages 8 and 9) grows with every byte; the flood stops as soon as it
//! has grown past the bound, so the check ends at once, with the figure.
//! A server that blocks in `send()` (stages 6 and 7) stops reading too,
//! the hard way.

use crate::checks::{Failure, Outcome, Target, secs};
use crate::memory::{Flood, MIB, Outgoing, Stop, Watched, flood_watching, palindrome};
use crate::stages::{SendModel, Stage};
use crate::units::format_bytes;
use std::time::Duration;

/// How far the server's memory may rise above where it was before the
/// flood: one pipe of 1,000,000 bytes, the connection's buffers, and room
/// for the allocator's habits.
pub const MEMORY_BOUND: u64 = 4 * MIB;

/// The most the client sends: as the tester's large file.
const FLOOD_BYTES: u64 = 1 << 30;

/// How long the flood may last: a server that keeps reading without
/// growing would be flooded this long (a right one stalls it within a
/// second, a queuing one passes the bound sooner).
const FLOOD_TIME: Duration = Duration::from_secs(2);

/// What the usual mistakes of a stage-10 server are, when its memory grows.
const PIPE_HINT: &str = "with pipes, a client that never reads must stop being read from once \
                         its pipe is full: the source reads while the pipe is full (check \
                         xps_pipe_is_writable before recv); or the sink never clears what was \
                         sent (xps_pipe_sink_clear), so the pipe never empties; or each queued \
                         chunk keeps a whole 100,000-byte buffer";

/// The same for a server that should block in `send()`.
const BLOCKING_HINT: &str = "a server with blocking sockets reads one buffer, then waits in \
                             send() until the client reads: its memory should not grow with \
                             what a client sends. Does it read everything into a growing \
                             buffer, or allocate a new buffer for each recv() and keep it?";

/// One client floods the first port without reading, up to 1 GiB, while
/// the server's memory is sampled; then it leaves, and a new client on
/// that port must still be served. Where the stage's row says memory is
/// unbounded (stages 8 and 9), growth is that stage's flaw, reported as a
/// note with the figure; elsewhere growth past [`MEMORY_BOUND`] fails.
pub fn memory_bound(target: &Target, stage: &Stage) -> Outcome {
    let Some(pid) = target.pid else {
        return Ok(Some(
            "not run: the server's memory can be read only on its own machine (run xps-check \
             there, against 127.0.0.1, or pass --pid)"
                .to_string(),
        ));
    };
    let mut flooder = target.connect(0)?;
    // Served once first: the connection is accepted and set up before the
    // memory is measured, so what follows is the flood's doing. The short
    // messages here are palindromes: this check judges memory only (the
    // others judge the replies), so stage 9's binary can be checked as
    // stage 10 and fail on what it lacks.
    target.exchange(&mut flooder, &palindrome("a flood follows"))?;
    let flood = Flood::new(FLOOD_BYTES, target.wait(FLOOD_TIME));
    let Watched { run, rss } =
        flood_watching(flooder.stream(), pid, &flood, &mut Outgoing::new(10), Some(MEMORY_BOUND))
            .map_err(|err| Failure::new(format!("cannot read the server's memory: {err}"), ""))?;
    if let Stop::Gone(err) = &run.stop {
        return Err(Failure::new(
            format!(
                "the server dropped a client that sends without reading, after {} ({err})",
                format_bytes(run.sent)
            ),
            "a client that sends a lot before it reads is still a client: stop reading from it \
             while its data cannot go anywhere, and close a connection only when recv() \
             returns 0 or fails, or send() fails",
        ));
    }
    // It leaves with replies unread (the kernel resets the connection);
    // the server must drop it and go on.
    drop(flooder);
    let mut client = target.connect(0)?;
    target.exchange(&mut client, &palindrome("still there")).map_err(|mut failure| {
        failure.what = format!("after a client flooded and left: {}", failure.what);
        failure
    })?;

    let growth = rss.growth();
    let how = match run.stop {
        Stop::Stalled => "until the server stopped reading",
        Stop::Asked => "until the memory had grown past the bound",
        _ => "without a stall",
    };
    let figures = format!(
        "grew by {} (from {} to {}) while one client that never reads sent {} {how} in {}",
        format_bytes(growth),
        format_bytes(rss.baseline),
        format_bytes(rss.peak),
        format_bytes(run.sent),
        secs(run.took)
    );
    if stage.unbounded_memory {
        return Ok(Some(if growth > MEMORY_BOUND {
            format!(
                "grew by {} after {} from one client that never reads: this stage queues \
                 everything; stage 10 bounds it with pipes",
                format_bytes(growth),
                format_bytes(run.sent)
            )
        } else if run.stop == Stop::Stalled {
            format!("memory {figures}: bounded already, ahead of the course")
        } else {
            format!("memory {figures}")
        }));
    }
    if growth > MEMORY_BOUND {
        let hint = match stage.send_model {
            SendModel::Buffers => PIPE_HINT,
            SendModel::Blocks => BLOCKING_HINT,
        };
        return Err(Failure::new(
            format!(
                "the server's memory {figures}: more than the {} allowed",
                format_bytes(MEMORY_BOUND)
            ),
            hint,
        ));
    }
    Ok(None)
}
