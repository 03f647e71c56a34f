//! The course tester's checks of the file ports (stage 12 on), in a form
//! that can fail:
//!
//! * [`sample_served`]: a client of the second port (8002) that sends
//!   nothing receives the sample file, all of it, byte for byte, and then
//!   a clean close. (The tester compares only its first read, so a server
//!   that sends the first chunk and stops would pass it; this reads to the
//!   end, and the stage tests use a sample of several chunks.)
//! * [`outside_refused`]: a client of the third port (8003), which asks for
//!   a file outside `public`, gets not one byte and a close (FIN): the
//!   tester fails a reset here.
//!
//! `xps-check` runs both against a running server, with the sample it is
//! given (`--sample`); the stage tests run [`files`], which starts the
//! binary with a `public` folder of its own.

use crate::checks::launch::{N_PORTS, start};
use crate::checks::proxy::fetch;
use crate::checks::{Failure, Outcome, REPLY_TIMEOUT, Subject, ensure, show};
use crate::scratch::Scratch;
use crate::server::Launch;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

const SAMPLE_HINT: &str = "the second port sends sample.txt from public to each client as soon \
                           as it connects: one pipe from the file's source to the client's sink, \
                           the source ready from the start; once the file is read to its end \
                           (a read of 0 bytes), the client is closed";
const OUTSIDE_HINT: &str = "the third port asks for ../outside.txt, which is outside public: \
                            resolve both paths (realpath), refuse a file that is not inside \
                            public (compare path components), and close the client without \
                            sending anything, with a FIN (no unread bytes, no SO_LINGER 0)";

/// A client of `port` sends nothing and gets `sample`, whole, then a close,
/// within `limit`.
pub fn sample_served(port: &[SocketAddr], sample: &[u8], limit: Duration) -> Outcome {
    let fetched = fetch(port, b"", limit).map_err(|why| Failure::new(why, SAMPLE_HINT))?;
    if fetched.bytes != sample {
        let at = fetched.bytes.iter().zip(sample).position(|(a, b)| a != b);
        let what = match at {
            Some(at) => format!("the file differs from the sample from byte {at} on"),
            None if fetched.bytes.len() < sample.len() => {
                format!("only {} of the sample's {} bytes came", fetched.bytes.len(), sample.len())
            }
            None => format!(
                "{} bytes came after the sample's {}: {}",
                fetched.bytes.len() - sample.len(),
                sample.len(),
                show(&fetched.bytes[sample.len()..])
            ),
        };
        return Err(Box::new(Failure {
            what,
            hint: SAMPLE_HINT.to_string(),
            ..Failure::default()
        }));
    }
    match fetched.trouble {
        None => Ok(None),
        Some(trouble) => Err(Failure::new(
            format!("the whole sample came, but then the connection was {trouble}"),
            SAMPLE_HINT,
        )),
    }
}

/// A client of `port` sends nothing, gets not one byte, and is closed
/// cleanly (a FIN, not a reset) within `limit`.
pub fn outside_refused(port: &[SocketAddr], limit: Duration) -> Outcome {
    let fetched = fetch(port, b"", limit).map_err(|why| Failure::new(why, OUTSIDE_HINT))?;
    ensure(
        fetched.bytes.is_empty(),
        || {
            format!(
                "a file outside public was sent ({} bytes): {}",
                fetched.bytes.len(),
                show(&fetched.bytes[..fetched.bytes.len().min(64)])
            )
        },
        OUTSIDE_HINT,
    )?;
    match fetched.trouble {
        None => Ok(None),
        Some(trouble) => Err(Failure::new(
            format!("no byte came, but the connection was not closed cleanly: {trouble}"),
            OUTSIDE_HINT,
        )),
    }
}

/// The stage tests' form of both checks: the binary on its four ports,
/// serving from a `public` folder this check makes, with a sample of
/// three and a half chunks (350,000 bytes), so that a server that sends
/// only its first read fails. From stage 13 the third port has a session
/// with nothing behind it instead (see `checks::session`): only the
/// sample is checked here.
pub fn files(subject: &Subject<'_>) -> Outcome {
    if !subject.stage.serves_files {
        return Ok(Some(format!("stage {} has no file ports", subject.stage.number)));
    }
    // A scratch folder holding `public/sample.txt`, and `outside.txt`
    // beside `public`.
    let setup =
        |why: std::io::Error| Failure::new(format!("cannot make the public folder: {why}"), "");
    let scratch = Scratch::try_new("files-check").map_err(setup)?;
    let sample = crate::upstream::pattern(0, 350_000);
    std::fs::create_dir_all(scratch.join("public")).map_err(setup)?;
    std::fs::write(scratch.join("public/sample.txt"), &sample).map_err(setup)?;
    std::fs::write(scratch.join("outside.txt"), "never to be served\n").map_err(setup)?;
    let public = scratch.join("public").display().to_string();
    let launch =
        Launch { quiet: true, skip_messages: true, public: Some(public), ..Launch::default() };
    let server = start(subject, N_PORTS, &launch)?;
    let at = |index: usize| [SocketAddr::from((Ipv4Addr::LOCALHOST, server.ports[index]))];
    sample_served(&at(1), &sample, REPLY_TIMEOUT)?;
    if subject.stage.sessions {
        return Ok(None);
    }
    outside_refused(&at(2), REPLY_TIMEOUT)
}
