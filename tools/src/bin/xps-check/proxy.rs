//! The proxy checks of stage 11 on, against a running server: its first
//! port forwards to an upstream (`--upstream`, by default the course's
//! 127.0.0.1:3000), which must be there for one check and gone for the
//! other.
//!
//! Who provides the upstream: if nothing listens at `--upstream` on this
//! machine, xps-check starts a small HTTP/1.0 server there itself (it
//! answers `/0`, `/1`, `/2` with a 404 page, as Python's `http.server`
//! does), runs `proxy-responses`, stops it and runs `upstream-down`. If
//! the learner's own upstream is running (`python3 -m http.server 3000`),
//! `proxy-responses` uses it, and `upstream-down` is not run: xps-check
//! will not stop someone else's server, and says how to run it once that
//! is stopped.

use crate::Options;
use crate::report::{Tally, json_string, report};
use colored::Colorize;
use shared::checks::proxy::{half_closed, responses_match, upstream_down};
use shared::checks::{Check, Group, Outcome, Run};
use shared::upstream::Upstream;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// `proxy-responses`, as `--list` and the report show it.
pub(crate) const RESPONSES: Check = Check {
    name: "proxy-responses",
    about: "official check (stage 11): /0 /1 /2 through the proxy equal them fetched directly",
    group: Group::Proxy,
    run: Run::Binary(shared::checks::proxy::proxy),
};

/// `half-close`, likewise.
pub(crate) const HALF_CLOSE: Check = Check {
    name: "half-close",
    about: "a client that half-closes after its request still gets the whole response",
    group: Group::Proxy,
    run: Run::Binary(shared::checks::proxy::proxy),
};

/// `upstream-down`, likewise.
pub(crate) const DOWN: Check = Check {
    name: "upstream-down",
    about: "official check (stage 11): upstream down, a client is closed with no byte",
    group: Group::Proxy,
    run: Run::Binary(shared::checks::proxy::proxy),
};

/// Where `--upstream` (`HOST:PORT`) is, as one address.
pub(crate) fn upstream_addr(upstream: &str) -> Result<SocketAddr, String> {
    let addrs = upstream
        .to_socket_addrs()
        .map_err(|err| format!("--upstream '{upstream}': {err} (it takes HOST:PORT)"))?;
    let mut addrs: Vec<SocketAddr> = addrs.collect();
    addrs.sort_by_key(|addr| addr.is_ipv6());
    addrs.first().copied().ok_or_else(|| format!("--upstream '{upstream}' has no address"))
}

/// True if something accepts connections at `addr`.
fn listening(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// Runs the proxy checks (those `wanted` says) against the proxy port
/// `proxy`, counting them in `tally`.
pub(crate) fn run(
    proxy: &[SocketAddr],
    upstream: SocketAddr,
    wanted: impl Fn(&str) -> bool,
    options: &Options,
    tally: &mut Tally,
) {
    let theirs = listening(upstream);
    let mut ours = None;
    // The checks that need an upstream: theirs if it runs, else ours,
    // started for the first of them.
    let mut with_upstream =
        |check: &Check, run: fn(&[SocketAddr], SocketAddr, Duration) -> Outcome| {
            let started = Instant::now();
            let outcome = if theirs || ours.is_some() {
                run(proxy, upstream, options.timeout)
            } else {
                start_ours(upstream).and_then(|server| {
                    ours = Some(server);
                    run(proxy, upstream, options.timeout)
                })
            };
            report(check, &outcome, started.elapsed(), options);
            tally.count(&outcome);
        };
    if wanted(RESPONSES.name) {
        with_upstream(&RESPONSES, responses_match);
    }
    if wanted(HALF_CLOSE.name) {
        with_upstream(&HALF_CLOSE, half_closed);
    }
    if wanted(DOWN.name) {
        // Ours is stopped; theirs is left alone.
        drop(ours);
        if theirs {
            not_run(
                &DOWN,
                &format!(
                    "your upstream at {upstream} is running: stop it, then run \
                     xps-check --stage 11 --only {}",
                    DOWN.name
                ),
                options,
            );
            tally.not_run += 1;
        } else {
            let started = Instant::now();
            let outcome = upstream_down(proxy, options.timeout);
            report(&DOWN, &outcome, started.elapsed(), options);
            tally.count(&outcome);
        }
    }
}

/// Starts xps-check's own upstream at `addr`, which must be on this
/// machine: it can only listen here.
fn start_ours(addr: SocketAddr) -> Result<Upstream, Box<shared::checks::Failure>> {
    let failure = |what: String| {
        shared::checks::Failure::new(
            what,
            "start your upstream (python3 -m http.server 3000), or give --upstream a free \
             port on 127.0.0.1 for xps-check to start its own",
        )
    };
    if addr.ip() != std::net::Ipv4Addr::LOCALHOST {
        return Err(failure(format!("nothing listens at the upstream {addr}")));
    }
    Upstream::http_on(addr.port(), Vec::new())
        .map_err(|err| failure(format!("cannot start an upstream at {addr}: {err}")))
}

/// Reports a check that was not run, and why.
fn not_run(check: &Check, why: &str, options: &Options) {
    if options.json {
        println!(
            "{{\"check\":{},\"result\":\"not run\",\"passed\":false,\"why\":{}}}",
            json_string(check.name),
            json_string(why)
        );
    } else {
        println!("{} {:<15} {:>8}  {}", "SKIP".yellow(), check.name, "", check.about);
        println!("     {why}");
    }
}
