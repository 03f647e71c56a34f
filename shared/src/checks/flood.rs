//! The blocking-send check: one client floods the server and never reads,
//! while another waits to be served.

use crate::checks::target::{Failure, Outcome, Target, hint_for, secs};
use crate::client::{FloodEnd, Flooded, ReplyEnd};
use crate::stages::{SendModel, Stage};
use std::time::Duration;

/// How much longer than `--timeout` the waiting client of `blocking-send`
/// may wait for its reply once the flooding client has left: time for the
/// server to see the reset and close that connection.
const AFTER_FLOOD_GRACE: Duration = Duration::from_secs(1);

/// Stage 7's Experiment 1: one client floods and never reads, another
/// asks to be served. A server that blocks in `send()` passes with a note
/// where the stage's row says it blocks, and fails where it says it buffers.
pub fn blocking_send(target: &Target, stage: &Stage) -> Outcome {
    // Flood until our sends stall (a blocking server is stuck in send()) or
    // for half a second (a non-blocking server keeps reading: by then it
    // has queued tens of MiB of replies), then see whether another client on
    // the same port, as in the course's tester, is served while the
    // flooder still hangs on, and, if not, once it has left.
    let flooder = target.connect(0)?;
    let Flooded { sent, end } =
        flooder.flood(Duration::from_millis(500), 256 << 20, target.wait(Duration::from_secs(2)));
    if let FloodEnd::Gone(err) = &end {
        // The server dropped the flooder, at once or once the buffers were
        // full, so the experiment could not run. That is a FAIL, not an
        // inconclusive NOTE: a NOTE counts as passed and would tell the
        // learner all is well, when at every stage a client that sends a
        // lot before it reads is still a client to keep (stage 7 blocks in
        // send() on it, stage 8 buffers what send() cannot take yet), and
        // closing it is a bug: closing at once, or on EAGAIN at stage 8.
        return Err(Box::new(Failure {
            what: format!(
                "the server closed the connection of a client that sends without reading, \
                 after {sent} bytes ({err}): the experiment could not run"
            ),
            hint: "a client that sends a lot before it reads is still a client: read its \
                   messages and reply (at stage 7 send() then blocks on it; from stage 8 \
                   EAGAIN is not an error, keep the rest of the reply until EPOLLOUT), and \
                   close a connection only when recv() returns 0 or fails"
                .to_string(),
            ..Failure::default()
        }));
    }
    let mut waiting = target.connect(0)?;
    let ping = b"hello world\n";
    let expected = target.protocol.reply(ping);
    let _ = waiting.try_send(ping);
    // A server whose sends stalled is stuck: a second is enough to see
    // that it does not answer. One that kept reading gets all of --timeout.
    let first_wait = match end {
        FloodEnd::Stalled => target.timeout.min(Duration::from_secs(1)),
        _ => target.timeout,
    };
    let mut reply = target.read_reply(&mut waiting, expected.len(), target.wait(first_wait));
    let served_at_once = reply.end == ReplyEnd::Complete;
    // Leave abruptly, as a killed client does: a server blocked in send()
    // to it gets an error instead of waiting on.
    flooder.reset();
    let after = target.timeout + AFTER_FLOOD_GRACE;
    if reply.end == ReplyEnd::TimedOut {
        let rest =
            target.read_reply(&mut waiting, expected.len() - reply.bytes.len(), target.wait(after));
        reply.bytes.extend(rest.bytes);
        reply.end = rest.end;
    }
    if reply.end == ReplyEnd::Complete && reply.bytes != expected {
        return Err(Box::new(Failure {
            what: format!("wrong reply on port {}", waiting.port()),
            hint: hint_for(target.protocol, ping, &expected, &reply, target.timeout),
            sent: Some(ping.to_vec()),
            expected: Some(expected),
            got: Some(reply.bytes),
            ..Failure::default()
        }));
    }
    if reply.end != ReplyEnd::Complete {
        let how = match &reply.end {
            ReplyEnd::Closed => "the server closed its connection".to_string(),
            ReplyEnd::Failed(err) => format!("its connection failed: {err}"),
            _ => format!("no reply within {} after the flooding client left", secs(after)),
        };
        return Err(Box::new(Failure {
            what: format!("a client waiting on port {} was never served: {how}", waiting.port()),
            hint: "after the flooding client left, the waiting client was never served: does \
                   the server accept and read every client? And when send() fails because \
                   the client has gone (EPIPE, ECONNRESET), does it close that connection and \
                   go back to the loop?"
                .to_string(),
            sent: Some(ping.to_vec()),
            expected: Some(expected),
            got: Some(reply.bytes),
            ..Failure::default()
        }));
    }
    target.nothing_more([&mut waiting])?;
    match (stage.send_model, served_at_once) {
        (SendModel::Blocks, false) => Ok(Some(
            "stalls while a client does not read, as in Experiment 1: expected at this stage \
             (stage 8 fixes it); the waiting client was served once that client left"
                .to_string(),
        )),
        (SendModel::Blocks, true) => Ok(Some(
            "did not stall: your server already serves others while a client does not read"
                .to_string(),
        )),
        (SendModel::Buffers, false) => Err(Box::new(Failure {
            what: "a client that never reads stopped the server from serving another".to_string(),
            hint: "make connection sockets non-blocking, and when send() cannot write \
                   everything keep the rest and wait for EPOLLOUT"
                .to_string(),
            ..Failure::default()
        })),
        (SendModel::Buffers, true) => Ok(None),
    }
}
