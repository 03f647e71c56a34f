//! Running the list of checks as a stage crate's tests: one `#[test]` per
//! check ([`stage_tests!`](crate::stage_tests)), each against the stage's
//! binary, or against any binary named by the environment variable
//! `XPS_BIN` (a learner's build, a copy, a C server that takes the same
//! flags):
//!
//! ```text
//! XPS_BIN=/path/to/my/server cargo test -p stage07 --test checks
//! ```
//!
//! The checks of the [`Group::Log`](crate::checks::Group::Log) group read
//! this workspace's own log lines; with `XPS_BIN` set they say so and are
//! not run, since another server may log differently or not at all.

use crate::checks::{self, CHECK_DEADLINE, Outcome, REPLY_TIMEOUT, Run, Subject, describe};
use crate::server::{Launch, Server};
use crate::stages::{self, Stage};
use crate::wait::wait_until;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The environment variable that points a stage's tests at another binary.
pub const BIN_VAR: &str = "XPS_BIN";

/// Set to `1` beside [`BIN_VAR`] when that binary is built from a copy of
/// this workspace's stage (a learner's exercise from `xps-learn`): its log
/// lines and `--version` are the workspace's, so every check runs, the
/// [`Group::Log`](crate::checks::Group::Log) ones included.
pub const COPY_VAR: &str = "XPS_BIN_IS_COPY";

/// How many ports a wire check's server listens on: the course's four.
pub const N_PORTS: usize = 4;

/// The binary to check: `XPS_BIN` if set, else `built` (the stage's own,
/// from `env!("CARGO_BIN_EXE_stageNN")`). The flag says whether it is the
/// workspace's own code (`XPS_BIN_IS_COPY=1` says a copy of it is).
pub fn binary_under_test(built: &str) -> (PathBuf, bool) {
    match std::env::var_os(BIN_VAR) {
        Some(other) if !other.is_empty() => {
            let copy = std::env::var_os(COPY_VAR).is_some_and(|value| value == "1");
            (PathBuf::from(other), copy)
        }
        _ => (PathBuf::from(built), true),
    }
}

/// Starts `binary` on [`N_PORTS`] ports chosen by the OS, without DEBUG
/// lines and without keeping its message lines (a check may send a lot).
pub fn start_quiet(binary: &Path) -> Server {
    start_quiet_on(binary, N_PORTS)
}

/// [`start_quiet`] on `n_ports` ports.
pub fn start_quiet_on(binary: &Path, n_ports: usize) -> Server {
    let launch = Launch { quiet: true, skip_messages: true, ..Launch::default() };
    let ports = vec!["0"; n_ports].join(",");
    let mut server = Server::spawn_with(binary, &["--ports", &ports], &launch);
    server.wait_for_ports(n_ports);
    server
}

/// Runs check `name` against `subject`'s binary and returns its outcome:
/// a wire check against a server started for it (which must still be
/// running afterwards), any other check as it starts the binary itself.
pub fn run(name: &str, subject: &Subject<'_>) -> Outcome {
    let check = checks::find(name).unwrap_or_else(|| panic!("no check named '{name}'"));
    match check.run {
        Run::Wire(run) => {
            // A server that dies at start-up (a learner's todo!(), say) is
            // this check's failure, with what the server said.
            let started = std::panic::catch_unwind(|| {
                let launch = Launch { quiet: true, skip_messages: true, ..Launch::default() };
                let launch = checks::launch::with_upstream(subject, &launch);
                let ports = ["0"; N_PORTS].join(",");
                let mut server = Server::spawn_with(subject.binary, &["--ports", &ports], &launch);
                server.wait_for_ports(N_PORTS);
                server
            });
            let mut server = match started {
                Ok(server) => server,
                Err(panic) => {
                    let message = panic_message(panic.as_ref());
                    return Err(checks::Failure::new(
                        format!("the server could not be started: {message}"),
                        "",
                    ));
                }
            };
            let addrs: Vec<Vec<SocketAddr>> = checks::launch::answering(&server)
                .into_iter()
                .map(|port| vec![SocketAddr::from((Ipv4Addr::LOCALHOST, port))])
                .collect();
            let (outcome, _) = checks::run_wire(
                run,
                &addrs,
                subject.stage,
                REPLY_TIMEOUT,
                CHECK_DEADLINE,
                Some(server.process.pid()),
            );
            if outcome.is_ok() && !server.process.is_running() {
                return Err(Box::new(checks::Failure {
                    what: "the server exited during the check".to_string(),
                    hint: "a server must outlive its clients, whatever they do".to_string(),
                    ..checks::Failure::default()
                }));
            }
            // A server that panicked mid-check fails it by going silent:
            // its panic message says why better than the silence does.
            outcome.map_err(|mut failure| {
                // Its last words may still be on their way through the
                // pipe, and a dying process is still running a moment.
                let mut panic = server_panic(&server.stderr());
                if panic.is_none() && !server.process.is_running() {
                    wait_until(Duration::from_millis(300), || {
                        panic = server_panic(&server.stderr());
                        panic.is_some()
                    });
                }
                if let Some(panic) = panic {
                    failure.what.push_str(&format!("\nthe server panicked: {panic}"));
                }
                failure
            })
        }
        // A helper it calls may still panic (a server that cannot even be
        // started): that is a failure of the check, reported as one.
        Run::Binary(run) => std::panic::catch_unwind(|| run(subject)).unwrap_or_else(|panic| {
            let message = panic_message(panic.as_ref());
            Err(checks::Failure::new(format!("the check could not go on: {message}"), ""))
        }),
    }
}

/// The text a panic was raised with, from the payload `catch_unwind` or a
/// thread's `join` hands back (empty if it was raised with something other
/// than a string): whoever runs a check that may panic reports the panic
/// as that check's failure, in these words.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// The message of a Rust panic in a server's stderr, if there is one: the
/// line after `panicked at FILE:LINE:COL:`, with that place.
pub fn server_panic(stderr: &str) -> Option<String> {
    let mut lines = stderr.lines();
    let place = lines.find(|line| line.contains("panicked at "))?;
    let place = place.split("panicked at ").nth(1).unwrap_or_default().trim_end_matches(':');
    let message = lines.next().unwrap_or_default();
    Some(format!("{message} (at {place})"))
}

/// The body of one generated test: runs check `name` as stage `number`
/// against its binary (`built`, or `XPS_BIN`) and panics with the failure,
/// described, if it fails. A note is printed (`--nocapture` shows it).
pub fn test_check(number: u8, built: &str, version: &str, name: &str) {
    let stage: &Stage =
        stages::stage(number).unwrap_or_else(|| panic!("stage {number} is not in the table"));
    let (binary, own) = binary_under_test(built);
    let check = checks::find(name).unwrap_or_else(|| panic!("no check named '{name}'"));
    if check.group == checks::Group::Log && !own {
        println!("{name}: not run: it reads this workspace's own log, and {BIN_VAR} is set");
        return;
    }
    let version = format!("{} {version}", stage.crate_name);
    let subject = Subject { binary: &binary, stage, own, version: own.then_some(version.as_str()) };
    match run(name, &subject) {
        Ok(None) => {}
        Ok(Some(note)) => println!("{name}: NOTE: {note}"),
        Err(failure) => panic!(
            "check {name} failed against {} (stage {number}):\n{}",
            binary.display(),
            describe(&failure)
        ),
    }
}

/// Fails unless `names` (the tests one `stage_tests!` made) are exactly
/// the checks of the list, in its order.
pub fn assert_every_check_has_a_test(names: &[&str]) {
    let listed: Vec<&str> = checks::CHECKS.iter().map(|check| check.name).collect();
    assert_eq!(names, listed, "stage_tests! and checks::CHECKS disagree: update the macro");
}

/// Makes one `#[test]` per check of the list, each running that check
/// against this stage's binary, named after the check (`random_strings`
/// for `random-strings`), so `cargo test -p stage07 random_strings` runs
/// one. Use it in a stage crate's `tests/checks.rs`:
///
/// ```text
/// shared::stage_tests!(7, env!("CARGO_BIN_EXE_stage07"));
/// ```
#[macro_export]
macro_rules! stage_tests {
    ($number:literal, $binary:expr) => {
        $crate::stage_tests!(@tests $number, $binary;
            every_port "every-port",
            no_newline "no-newline",
            lone_newline "lone-newline",
            random_strings "random-strings",
            ten_clients "ten-clients",
            error_handling "error-handling",
            interleave "interleave",
            reset_client "reset-client",
            large_message "large-message",
            odd_data "odd-data",
            blocking_send "blocking-send",
            idle_cpu "idle-cpu",
            proxy "proxy",
            files "files",
            empty_sessions "empty-sessions",
            memory_bound "memory-bound",
            port_in_use "port-in-use",
            no_port_at_all "no-port-at-all",
            bad_flags "bad-flags",
            bad_configuration "bad-configuration",
            fd_exhaustion "fd-exhaustion",
            no_fd_leak "no-fd-leak",
            abrupt_clients "abrupt-clients",
            dead_peer_writes "dead-peer-writes",
            sigpipe_ignored "sigpipe-ignored",
            sigint_when_idle "sigint-when-idle",
            sigterm_when_idle "sigterm-when-idle",
            sigint_while_streaming "sigint-while-streaming",
            sigterm_while_ping_pong "sigterm-while-ping-pong",
            second_sigint "second-sigint",
            log_clients "log-clients",
            terminal_is_safe "terminal-is-safe"
        );
    };
    (@tests $number:literal, $binary:expr; $($test:ident $name:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                $crate::harness::test_check($number, $binary, env!("CARGO_PKG_VERSION"), $name);
            }
        )*

        #[test]
        fn every_check_has_a_test() {
            $crate::harness::assert_every_check_has_a_test(&[$($name),*]);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_a_servers_stderr_is_found_with_its_place() {
        let stderr = "[INFO] x\n\nthread 'main' (7) panicked at src/core/xps_core.rs:97:9:\n\
                      not yet implemented: XpsCore::start: listen\nnote: run with RUST_BACKTRACE\n";
        assert_eq!(
            server_panic(stderr).as_deref(),
            Some("not yet implemented: XpsCore::start: listen (at src/core/xps_core.rs:97:9)")
        );
        assert_eq!(server_panic("[ERROR] bind() failed\n"), None);
    }
}
