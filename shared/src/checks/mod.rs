//! One list of checks, run two ways: by `xps-check` against any running
//! server, and by every stage crate's tests against that stage's binary
//! (one `#[test]` each, see [`stage_tests!`](crate::stage_tests)), or
//! against any other binary through `XPS_BIN`, a learner's crate included.
//!
//! A check never panics on a wrong server: it returns an [`Outcome`] that
//! says what was sent, what a right server replies, what came back and the
//! usual cause ([`Failure`]). Every wait in it has a deadline.
//!
//! Every check runs at every stage: the stage's row in the table
//! ([`Stage`]) tells it what is right there (reverse or write-back, whether
//! a client that never reads may block the server, ...). A stage that
//! shows the flaw its lesson is about passes with a note.
//!
//! Where the checks live, by what they need: [`wire`] and [`flood`] talk
//! TCP only, to any running server; the others start the binary
//! themselves ([`launch`] holds what they share): [`cli`] and [`config`]
//! the command line, [`process`] fds and CPU from `/proc` under floods and
//! limits, [`shutdown`] SIGINT and SIGTERM, [`log`] the workspace's own
//! log lines. [`cpu`] and [`memory`] talk TCP too, and read the server's
//! CPU and memory from `/proc` when it runs on this machine. [`target`] is
//! how a check reaches a server and says what went wrong.

pub mod cli;
pub mod config;
pub mod cpu;
pub mod files;
pub mod flood;
pub mod launch;
pub mod log;
pub mod memory;
pub mod process;
pub mod proxy;
pub mod session;
pub mod shutdown;
pub mod target;
pub mod wire;

use crate::stages::Stage;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
pub use target::{Cause, Failure, Outcome, SLOW_HINT, Target, ensure, secs, show};

/// How long one check may take in all, unless told otherwise. A right
/// server on the same machine needs well under a second for the slowest.
pub const CHECK_DEADLINE: Duration = Duration::from_secs(20);

/// How long one reply may take, unless told otherwise.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// Which kind of check it is: who wrote it, and what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// The course's official tester.
    Tester,
    /// This workspace's own, over TCP only.
    Wire,
    /// Starts the binary itself, to see what `/proc` says of it: fds,
    /// memory, CPU, under floods and limits.
    Process,
    /// The command line every stage binary shares: flags, ports that
    /// cannot be opened.
    Cli,
    /// SIGINT and SIGTERM.
    Shutdown,
    /// Reads this workspace's own log lines, so it runs only against the
    /// workspace's own binaries.
    Log,
    /// The course tester's proxy checks (stage 11 on). They need an
    /// upstream behind the first port, up and then down: the stage tests
    /// start the binary in front of one of their own, and `xps-check`
    /// runs them its own way (see its `--upstream`).
    Proxy,
    /// The course tester's file checks (stage 12 on): the sample on the
    /// second port, a file outside `public` refused on the third.
    Files,
    /// The ports whose sessions have nothing behind them (stage 13 on).
    Sessions,
}

/// How a check runs.
#[derive(Debug, Clone, Copy)]
pub enum Run {
    /// Over TCP only, against a server that is already running: any
    /// server, anywhere `xps-check` can reach.
    Wire(fn(&Target, &Stage) -> Outcome),
    /// Starts the binary itself, as many times as it needs.
    Binary(fn(&Subject<'_>) -> Outcome),
}

/// The binary a [`Run::Binary`] check starts, and what it should be.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The executable.
    pub binary: &'a Path,
    /// The stage it should behave as.
    pub stage: &'a Stage,
    /// True for this workspace's own binary, whose log lines are known.
    pub own: bool,
    /// What `--version` should print, where that is known
    /// (`stage07 0.1.0`).
    pub version: Option<&'a str>,
}

/// One check.
#[derive(Debug)]
pub struct Check {
    /// Its name, for `--only` and `cargo test NAME` (with `_` for `-`).
    pub name: &'static str,
    /// What it checks, in one line.
    pub about: &'static str,
    /// Who wrote it and what it needs.
    pub group: Group,
    /// Its code.
    pub run: Run,
}

/// Every check, in the order they run. The blocking-send experiment goes
/// last among the wire checks: on a blocking server it leaves the server
/// busy for a moment.
pub const CHECKS: &[Check] = &[
    Check {
        name: "every-port",
        about: "every port accepts and replies",
        group: Group::Wire,
        run: Run::Wire(wire::every_port),
    },
    Check {
        name: "no-newline",
        about: "a message without \\n is answered whole",
        group: Group::Wire,
        run: Run::Wire(wire::no_newline),
    },
    Check {
        name: "lone-newline",
        about: "a lone \\n comes back as \\n",
        group: Group::Wire,
        run: Run::Wire(wire::lone_newline),
    },
    Check {
        name: "random-strings",
        about: "official check: 1000 random strings per port",
        group: Group::Tester,
        run: Run::Wire(wire::random_strings),
    },
    Check {
        name: "ten-clients",
        about: "official check: ten clients at once on one port",
        group: Group::Tester,
        run: Run::Wire(wire::ten_clients),
    },
    Check {
        name: "error-handling",
        about: "official check: a client leaves, the others are still served",
        group: Group::Tester,
        run: Run::Wire(wire::error_handling),
    },
    Check {
        name: "interleave",
        about: "three clients on one port take turns",
        group: Group::Wire,
        run: Run::Wire(wire::interleave),
    },
    Check {
        name: "reset-client",
        about: "a client that resets does not disturb the others",
        group: Group::Wire,
        run: Run::Wire(wire::reset_client),
    },
    Check {
        name: "large-message",
        about: "a message near the 100000-byte buffer comes back exactly",
        group: Group::Wire,
        run: Run::Wire(wire::large_message),
    },
    Check {
        name: "odd-data",
        about: "binary junk, NUL bytes, invalid UTF-8 and 1 MiB of random bytes come back whole",
        group: Group::Wire,
        run: Run::Wire(wire::odd_data),
    },
    Check {
        name: "blocking-send",
        about: "a client that never reads: does everyone else wait?",
        group: Group::Wire,
        run: Run::Wire(flood::blocking_send),
    },
    Check {
        name: "idle-cpu",
        about: "official check (stage 9): with one idle client the server sleeps",
        group: Group::Tester,
        run: Run::Wire(cpu::idle_cpu),
    },
    Check {
        name: "proxy",
        about: "official checks (stage 11): /0 /1 /2 proxied unchanged; upstream down: no byte",
        group: Group::Proxy,
        run: Run::Binary(proxy::proxy),
    },
    Check {
        name: "files",
        about: "official checks (stage 12): the sample file whole; a file outside public: no byte",
        group: Group::Files,
        run: Run::Binary(files::files),
    },
    Check {
        name: "empty-sessions",
        about: "stage 13: the third and fourth ports hear a client, never answer, free it when it leaves",
        group: Group::Sessions,
        run: Run::Binary(session::sessions),
    },
    Check {
        name: "memory-bound",
        about: "official check (stage 10): a client that never reads costs bounded memory",
        group: Group::Tester,
        run: Run::Wire(memory::memory_bound),
    },
    Check {
        name: "port-in-use",
        about: "a port that is taken is logged and skipped; the others serve",
        group: Group::Cli,
        run: Run::Binary(cli::port_in_use),
    },
    Check {
        name: "no-port-at-all",
        about: "with no port to listen on, the server exits with a failure and says why",
        group: Group::Cli,
        run: Run::Binary(cli::no_port_at_all),
    },
    Check {
        name: "bad-flags",
        about: "a bad flag: one line and the usage, status 2; --help and --version work",
        group: Group::Cli,
        run: Run::Binary(cli::bad_flags),
    },
    Check {
        name: "bad-configuration",
        about: "a failed listener leaves no socket; an unknown host ends it; bad values are named",
        group: Group::Cli,
        run: Run::Binary(config::bad_configuration),
    },
    Check {
        name: "fd-exhaustion",
        about: "out of fds: no spin, and clients are served again once fds are free",
        group: Group::Process,
        run: Run::Binary(process::fd_exhaustion),
    },
    Check {
        name: "no-fd-leak",
        about: "3000 connect/reply/close cycles leave the fds the server started with",
        group: Group::Process,
        run: Run::Binary(process::no_fd_leak),
    },
    Check {
        name: "abrupt-clients",
        about: "resets, 1000 drive-bys, silent, half-closed and 200 clients at once: all survived",
        group: Group::Process,
        run: Run::Binary(process::abrupt_clients),
    },
    Check {
        name: "dead-peer-writes",
        about: "a client that leaves while the server writes to it: no SIGPIPE, serving goes on",
        group: Group::Process,
        run: Run::Binary(process::dead_peer_writes),
    },
    Check {
        name: "sigpipe-ignored",
        about: "SIGPIPE is ignored (from /proc): a send() to a client gone fails, never kills",
        group: Group::Process,
        run: Run::Binary(process::sigpipe_ignored),
    },
    Check {
        name: "sigint-when-idle",
        about: "SIGINT with 50 idle connections ends the server as the stage says, at once",
        group: Group::Shutdown,
        run: Run::Binary(shutdown::sigint_when_idle),
    },
    Check {
        name: "sigterm-when-idle",
        about: "SIGTERM with 50 idle connections ends the server as the stage says, at once",
        group: Group::Shutdown,
        run: Run::Binary(shutdown::sigterm_when_idle),
    },
    Check {
        name: "sigint-while-streaming",
        about: "SIGINT while two clients stream without pause ends the server at once",
        group: Group::Shutdown,
        run: Run::Binary(shutdown::sigint_while_streaming),
    },
    Check {
        name: "sigterm-while-ping-pong",
        about: "SIGTERM while 100 clients ping-pong ends the server at once",
        group: Group::Shutdown,
        run: Run::Binary(shutdown::sigterm_while_ping_pong),
    },
    Check {
        name: "second-sigint",
        about: "a second SIGINT ends a shutdown that hangs on a blocked log",
        group: Group::Shutdown,
        run: Run::Binary(shutdown::second_sigint),
    },
    Check {
        name: "log-clients",
        about: "the log shows each new connection, each message and each client that leaves",
        group: Group::Log,
        run: Run::Binary(log::log_clients),
    },
    Check {
        name: "terminal-is-safe",
        about: "control bytes from a client never reach the server's stdout raw",
        group: Group::Log,
        run: Run::Binary(log::terminal_is_safe),
    },
];

/// The check named `name`.
pub fn find(name: &str) -> Option<&'static Check> {
    CHECKS.iter().find(|check| check.name == name)
}

/// Runs a wire check against `addrs` (for each port, the addresses to try)
/// as stage `stage`, each reply within `timeout`, the whole check within
/// `deadline`; `pid` is the server's process, if it is known. A check that passed but took longer than its deadline (a
/// `connect()` or a `send()` has a limit of its own) fails all the same.
pub fn run_wire(
    check: fn(&Target, &Stage) -> Outcome,
    addrs: &[Vec<SocketAddr>],
    stage: &Stage,
    timeout: Duration,
    deadline: Duration,
    pid: Option<u32>,
) -> (Outcome, Target) {
    let started = Instant::now();
    let mut target = Target::new(addrs.to_vec(), stage.protocol, timeout, deadline);
    target.pid = pid;
    let mut outcome = check(&target, stage);
    let took = started.elapsed();
    if outcome.is_ok() && took > deadline + Duration::from_secs(1) {
        outcome = Err(Box::new(Failure {
            what: format!("took {}, more than the {} a check may take", secs(took), secs(deadline)),
            hint: SLOW_HINT.to_string(),
            ..Failure::default()
        }));
    }
    (outcome, target)
}

/// A failure as text: what happened, the bytes, the hint.
pub fn describe(failure: &Failure) -> String {
    let mut text = failure.what.clone();
    for (label, bytes) in
        [("sent", &failure.sent), ("expected", &failure.expected), ("got", &failure.got)]
    {
        if let Some(bytes) = bytes {
            text += &format!("\n{label:<9} {}", show(bytes));
        }
    }
    if !failure.hint.is_empty() {
        text += &format!("\nhint: {}", failure.hint);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_make_test_names() {
        for (i, check) in CHECKS.iter().enumerate() {
            assert!(
                check.name.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{}",
                check.name
            );
            assert!(CHECKS[..i].iter().all(|other| other.name != check.name), "{}", check.name);
        }
        assert!(find("random-strings").is_some());
        assert!(find("nope").is_none());
    }

    /// xps-check runs the wire checks against any server, and the harness
    /// skips the Log group for other binaries: a check's group must match
    /// how it runs.
    #[test]
    fn groups_match_how_checks_run() {
        for check in CHECKS {
            let over_tcp = matches!(check.group, Group::Tester | Group::Wire);
            assert_eq!(matches!(check.run, Run::Wire(_)), over_tcp, "{}", check.name);
        }
    }
}
