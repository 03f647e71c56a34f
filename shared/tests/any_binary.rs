//! The generated stage tests work through `XPS_BIN`: the checks that may
//! run against another binary pass with `own` false (not our binary, so
//! its log is not read and its version not known), against copies of the
//! stage binaries and against a server that logs nothing at all.
//!
//! Which checks, and why not all (all would take about 25 s here): the
//! only code that changes with `own` is in the checks that start the binary
//! themselves and read `own` (the Cli, Process and Shutdown groups, but
//! `no-fd-leak` and `abrupt-clients`, which never read it). A wire check
//! never sees `own` or the log (the harness finds the ports from `/proc`,
//! and the check gets only the ports and the stage), and the stage crates'
//! own tests already run each one against the same binaries; one,
//! `every-port`, runs here to show the harness starts the binary it is
//! given. Log checks are never run against another binary. So:
//!
//! * stage 7 logging nothing: every check that reads `own`. A check that
//!   leaned on the log by mistake fails here, which a copy that still logs
//!   would hide. All but `bad-flags`: the wrapper throws away `--help` and
//!   `--version` too, which a real server would print.
//! * a copy of stage 7: `bad-flags`, and `second-sigint`, whose hung
//!   shutdown needs a log that can block;
//! * a copy of stage 6: the Shutdown group, where stage 6's row (no signal
//!   handler) takes the checks down another path.

use shared::build::workspace_binary;
use shared::checks::{CHECKS, Check, Group, Subject, describe};
use shared::harness::run;
use shared::scratch::Scratch;
use shared::stages::stage;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

/// The checks that read `own` (see the top of the file).
fn reads_own(check: &Check) -> bool {
    matches!(check.group, Group::Cli | Group::Process | Group::Shutdown)
        && !["no-fd-leak", "abrupt-clients"].contains(&check.name)
}

/// The checks `wanted` picks, and `every-port`.
fn checks(wanted: impl Fn(&Check) -> bool) -> Vec<&'static str> {
    CHECKS
        .iter()
        .filter(|check| check.name == "every-port" || wanted(check))
        .map(|c| c.name)
        .collect()
}

/// Runs the checks named `names` against `binary` as stage `number`, not
/// as the workspace's own, and fails with every failure.
fn passes_as_another_binary(binary: &Path, number: u8, names: &[&str]) {
    let stage = stage(number).unwrap();
    let subject = Subject { binary, stage, own: false, version: None };
    let mut failures = Vec::new();
    for &name in names {
        let started = Instant::now();
        let outcome = run(name, &subject);
        println!("{name:<24} {:>5.2} s  {outcome:?}", started.elapsed().as_secs_f64());
        if let Err(failure) = outcome {
            failures.push(format!("{name}: {}", describe(&failure)));
        }
    }
    assert!(failures.is_empty(), "against {}:\n{}", binary.display(), failures.join("\n\n"));
}

/// Stage `number`'s binary, built once for all the tests of this file
/// (each `cargo build`, even one with nothing to do, waits for Cargo's
/// lock).
fn built(number: u8) -> &'static Path {
    static BUILT: [OnceLock<PathBuf>; 2] = [OnceLock::new(), OnceLock::new()];
    let name = format!("stage{number:02}");
    BUILT[usize::from(number == 7)].get_or_init(|| workspace_binary(&name, &name))
}

/// A copy of stage `number`'s binary in a directory of its own.
fn copy_of(number: u8, dir: &Scratch) -> PathBuf {
    let copy = dir.join(format!("copy-of-stage{number:02}"));
    std::fs::copy(built(number), &copy).unwrap();
    copy
}

#[test]
fn a_copy_of_stage_6_passes() {
    let dir = Scratch::new("copy-6");
    let names = checks(|check| check.group == Group::Shutdown);
    passes_as_another_binary(&copy_of(6, &dir), 6, &names);
}

#[test]
fn a_copy_of_stage_7_passes() {
    let dir = Scratch::new("copy-7");
    let names = checks(|check| ["bad-flags", "second-sigint"].contains(&check.name));
    passes_as_another_binary(&copy_of(7, &dir), 7, &names);
}

/// Stage 7 with its stdout thrown away: a server that logs nothing at
/// all. `exec` keeps the pid, so `/proc` shows the server's own ports and
/// fds.
fn stage_7_logging_nothing(dir: &Scratch) -> PathBuf {
    let stage07 = built(7);
    let text = format!("#!/bin/sh\nexec {} \"$@\" >/dev/null\n", stage07.display());
    dir.write_executable("silent-stage07", &text)
}

// Two tests, so that the test threads share the work.

#[test]
fn stage_7_logging_nothing_passes_the_cli_and_process_checks() {
    let dir = Scratch::new("silent-7-process");
    let names = checks(|check| {
        reads_own(check) && check.group != Group::Shutdown && check.name != "bad-flags"
    });
    passes_as_another_binary(&stage_7_logging_nothing(&dir), 7, &names);
}

#[test]
fn stage_7_logging_nothing_passes_the_shutdown_checks() {
    let dir = Scratch::new("silent-7-shutdown");
    let names = checks(|check| check.group == Group::Shutdown);
    passes_as_another_binary(&stage_7_logging_nothing(&dir), 7, &names);
}
