//! The course tester's checks of a reverse proxy (stage 11 on), in a form
//! that can fail: the first port must pass an HTTP exchange through
//! unchanged, and close a client without a byte when its upstream is down.
//!
//! * [`responses_match`]: `/0`, `/1` and `/2` fetched through the proxy at
//!   once equal the same fetched from the upstream directly. The tester
//!   compares the status line, the headers and the body; so does this,
//!   except the `Date` header: it has one-second resolution, and the two
//!   fetches may fall in different seconds (the tester is flaky there).
//!   Its presence must match, its value is not compared.
//! * [`half_closed`] (not the tester's): a client that half-closes right
//!   after its request, as `nc -N` or an HTTP/1.0 client may, still gets
//!   the whole response.
//! * [`upstream_down`]: with nothing behind the proxy, a client is closed
//!   with not one byte. Any answer at all (a `502` page, say) makes the
//!   tester's `fetch()` resolve, and its check then never ends.
//!
//! `xps-check` runs both against a running server (see its `--upstream`);
//! the stage tests run [`proxy`], which starts the binary with an upstream
//! of its own.

use crate::checks::launch::{N_PORTS, start};
use crate::checks::{Failure, Outcome, REPLY_TIMEOUT, Subject, ensure};
use crate::client::connect_first;
use crate::server::Launch;
use crate::upstream::Upstream;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The paths the tester fetches, all three at once.
pub const PATHS: [&str; 3] = ["/0", "/1", "/2"];

/// What a client got, and how its connection ended.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) bytes: Vec<u8>,
    /// `None` for a clean end (FIN), else what ended it: a reset, the time.
    pub(crate) trouble: Option<String>,
}

/// An HTTP/1.1 GET of `path`, as a browser or `fetch()` sends it (the
/// tester's undici asks for HTTP/1.1 and gets Python's HTTP/1.0 answer).
fn request(path: &str, host: &SocketAddr) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
}

/// Connects to `addrs` (the first that answers), sends `message` and reads
/// until the connection ends or `limit` has passed.
pub(crate) fn fetch(
    addrs: &[SocketAddr],
    message: &[u8],
    limit: Duration,
) -> Result<Fetched, String> {
    fetch_with(addrs, message, false, limit)
}

/// [`fetch`], half-closing (`shutdown(SHUT_WR)`) right after `message` if
/// `half_close` says so.
fn fetch_with(
    addrs: &[SocketAddr],
    message: &[u8],
    half_close: bool,
    limit: Duration,
) -> Result<Fetched, String> {
    let (mut stream, addr) = connect_first(addrs, |addr| TcpStream::connect_timeout(&addr, limit))
        .map_err(|unreachable| format!("cannot connect to {unreachable}"))?;
    stream.write_all(message).map_err(|err| format!("sending to {addr}: {err}"))?;
    if half_close {
        stream
            .shutdown(std::net::Shutdown::Write)
            .map_err(|err| format!("half-closing toward {addr}: {err}"))?;
    }
    let deadline = Instant::now() + limit;
    let mut bytes = Vec::new();
    let mut chunk = [0; 16 * 1024];
    let trouble = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break Some(format!("still open after {} s", limit.as_secs()));
        }
        match stream.read(&mut chunk) {
            Ok(0) => break None,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break Some(format!("still open after {} s", limit.as_secs()));
            }
            Err(err) => break Some(err.to_string()),
        }
    };
    Ok(Fetched { bytes, trouble })
}

/// A response as the tester compares it: the status line, then the
/// headers sorted by lower-case name, `date` with its value left out,
/// then the body.
fn comparable(response: &[u8]) -> Option<Vec<u8>> {
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let (head, body) = (&response[..split], &response[split + 4..]);
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let status = lines.next()?.to_string();
    let mut headers: Vec<String> = lines
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            let name = name.trim().to_ascii_lowercase();
            let value = if name == "date" { "(any)" } else { value.trim() };
            Some(format!("{name}: {value}"))
        })
        .collect();
    headers.sort();
    let mut text = format!("{status}\n{}\n\n", headers.join("\n")).into_bytes();
    text.extend_from_slice(body);
    Some(text)
}

/// `/0`, `/1` and `/2` fetched through the proxy at `proxy`, all three at
/// once, equal the same fetched from `upstream` directly; each exchange,
/// to its end, within `limit`.
pub fn responses_match(proxy: &[SocketAddr], upstream: SocketAddr, limit: Duration) -> Outcome {
    let direct: Vec<Vec<u8>> =
        PATHS.iter().map(|path| direct(upstream, path, limit)).collect::<Result<_, _>>()?;
    let host = proxy.first().copied().unwrap_or(upstream);
    let proxied: Vec<Result<Fetched, String>> = std::thread::scope(|scope| {
        let fetches: Vec<_> = PATHS
            .iter()
            .map(|path| scope.spawn(move || fetch(proxy, &request(path, &host), limit)))
            .collect();
        fetches
            .into_iter()
            .map(|fetch| fetch.join().unwrap_or_else(|_| Err("the fetch panicked".to_string())))
            .collect()
    });
    for ((path, expected), fetched) in PATHS.iter().zip(direct).zip(proxied) {
        let fetched = fetched.map_err(|why| Failure::new(why, PROXY_HINT))?;
        let got = comparable(&fetched.bytes);
        if got.as_ref() != Some(&expected) {
            return Err(Box::new(Failure {
                what: format!(
                    "{path} through the proxy differs from {path} fetched from {upstream} \
                     directly{}",
                    fetched
                        .trouble
                        .map(|t| format!(" (the connection ended: {t})"))
                        .unwrap_or_default()
                ),
                expected: Some(expected),
                got: Some(got.unwrap_or(fetched.bytes)),
                hint: PROXY_HINT.to_string(),
                ..Failure::default()
            }));
        }
    }
    Ok(None)
}

/// `path` fetched from `upstream` directly, as the tester compares it.
fn direct(upstream: SocketAddr, path: &str, limit: Duration) -> Result<Vec<u8>, Box<Failure>> {
    let fetched = fetch(&[upstream], &request(path, &upstream), limit)
        .map_err(|why| Failure::new(format!("the upstream itself: {why}"), UPSTREAM_HINT))?;
    comparable(&fetched.bytes).ok_or_else(|| {
        Failure::new(
            format!("the upstream at {upstream} sent no HTTP response for {path}"),
            UPSTREAM_HINT,
        )
    })
}

/// A client of `proxy` that half-closes right after its request for `/1`
/// gets the same response as one fetched from `upstream` directly, then a
/// clean close, within `limit`.
pub fn half_closed(proxy: &[SocketAddr], upstream: SocketAddr, limit: Duration) -> Outcome {
    let path = PATHS[1];
    let expected = direct(upstream, path, limit)?;
    let host = proxy.first().copied().unwrap_or(upstream);
    let fetched = fetch_with(proxy, &request(path, &host), true, limit)
        .map_err(|why| Failure::new(why, HALF_CLOSE_HINT))?;
    let got = comparable(&fetched.bytes);
    if got.as_ref() != Some(&expected) {
        return Err(Box::new(Failure {
            what: format!(
                "a client that half-closed after its request got {} bytes{}, not the response",
                fetched.bytes.len(),
                fetched
                    .trouble
                    .map(|t| format!(" (the connection ended: {t})"))
                    .unwrap_or_default()
            ),
            expected: Some(expected),
            got: Some(got.unwrap_or(fetched.bytes)),
            hint: HALF_CLOSE_HINT.to_string(),
            ..Failure::default()
        }));
    }
    match fetched.trouble {
        None => Ok(None),
        Some(trouble) => Err(Failure::new(
            format!("the whole response came, but then the connection was {trouble}"),
            HALF_CLOSE_HINT,
        )),
    }
}

/// With nothing listening behind the proxy at `proxy`, a client that sends
/// a request is closed within `limit` and gets not one byte.
/// A close (FIN) passes; a reset passes too, as in the tester, with a
/// remark: a reset can cut off bytes a client had not yet read.
pub fn upstream_down(proxy: &[SocketAddr], limit: Duration) -> Outcome {
    let host = proxy.first().copied().ok_or_else(|| Failure::new("no proxy port", ""))?;
    let fetched =
        fetch(proxy, &request("/", &host), limit).map_err(|why| Failure::new(why, DOWN_HINT))?;
    ensure(
        fetched.bytes.is_empty(),
        || {
            format!(
                "with the upstream down the proxy answered {} bytes: {}",
                fetched.bytes.len(),
                crate::checks::show(&fetched.bytes)
            )
        },
        DOWN_HINT,
    )?;
    match fetched.trouble {
        None => Ok(None),
        Some(trouble) if trouble.starts_with("still open") => {
            Err(Failure::new(format!("with the upstream down the client was {trouble}"), DOWN_HINT))
        }
        Some(trouble) => Ok(Some(format!(
            "the client was closed with no byte, but not cleanly ({trouble}): a close (FIN) \
             after reading the request is better"
        ))),
    }
}

const UPSTREAM_HINT: &str = "is the upstream running? (python3 -m http.server 3000, or let \
                             xps-check start one on a free port)";
const PROXY_HINT: &str = "the proxy must pass every byte through unchanged, both ways: \
                          client source to upstream sink, upstream source to client sink, and \
                          close the client once the upstream has closed and everything was sent";
const HALF_CLOSE_HINT: &str = "a client's end of input (recv() returns 0) ends only what it \
                               sends: keep sending it what the upstream answers, and close it \
                               once that is all through";
const DOWN_HINT: &str = "when the upstream refuses (connect() fails, ECONNREFUSED), close the \
                         client without sending anything: any response, even a 502, makes the \
                         course's tester hang";

/// The stage tests' form of both checks: the binary on its four ports,
/// its first in front of an upstream this check starts, then stops.
pub fn proxy(subject: &Subject<'_>) -> Outcome {
    if !subject.stage.forwards_first_port {
        return Ok(Some(format!("stage {} has no proxy port", subject.stage.number)));
    }
    let upstream = Upstream::http(Vec::new());
    let upstream_addr = SocketAddr::from(([127, 0, 0, 1], upstream.port()));
    let launch = Launch { quiet: true, upstream: Some(upstream.addr()), ..Launch::default() };
    let server = start(subject, N_PORTS, &launch)?;
    let proxy = [SocketAddr::from(([127, 0, 0, 1], server.ports[0]))];
    responses_match(&proxy, upstream_addr, REPLY_TIMEOUT)?;
    half_closed(&proxy, upstream_addr, REPLY_TIMEOUT)?;
    drop(upstream);
    upstream_down(&proxy, REPLY_TIMEOUT)
}
