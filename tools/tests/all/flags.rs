//! The flags the tools share read the same in every tool: a stage not in
//! the table, and port 0, are refused with one line (the same words in
//! each tool), then the usage, and status 2; `xps-check --stages` prints
//! the table for scripts.

use shared::stages::{STAGES, numbers_in_words};
use std::process::{Command, Output};

const SENDER: &str = env!("CARGO_BIN_EXE_sender");
const SOAK: &str = env!("CARGO_BIN_EXE_soak");
const XPS_BENCH: &str = env!("CARGO_BIN_EXE_xps-bench");
const XPS_CHECK: &str = env!("CARGO_BIN_EXE_xps-check");

fn run(binary: &str, args: &[&str]) -> Output {
    Command::new(binary).args(args).output().expect("run the tool")
}

/// Asserts `out` is a refusal: status 2, nothing on stdout, and on stderr
/// exactly `tool: ` + `message`, an empty line, then the usage. Returns
/// the usage.
fn assert_refused(out: &Output, tool: &str, message: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{tool}: {out:?}");
    assert!(out.stdout.is_empty(), "{tool}: {out:?}");
    let (first, usage) = stderr.split_once("\n\n").unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(first, format!("{tool}: {message}"));
    assert!(usage.starts_with(&format!("Usage: {tool}")), "{stderr}");
    usage.to_string()
}

#[test]
fn a_stage_not_in_the_table_is_one_line_and_status_2() {
    let words = numbers_in_words();
    let message = format!("--stage: '5' is not a stage of this workspace ({words})");
    for (tool, binary) in [("soak", SOAK), ("xps-bench", XPS_BENCH), ("xps-check", XPS_CHECK)] {
        let usage = assert_refused(&run(binary, &["--stage", "5"]), tool, &message);
        // The usage names the stages there are, in the table's words.
        assert!(usage.contains("--stage N "), "{tool}: {usage}");
        assert!(usage.contains(&words), "{tool}: {usage}");
    }
}

#[test]
fn port_0_is_refused_with_the_same_words_everywhere() {
    let why = "'0' names no port to connect to (to a server, 0 means any free port): use 1 to \
               65535";
    for (tool, binary, args) in [
        ("sender", SENDER, &["--port", "0"][..]),
        ("xps-bench", XPS_BENCH, &["--port", "0"]),
        ("soak", SOAK, &["--ports", "8001,0"]),
        ("xps-check", XPS_CHECK, &["--stage", "7", "--ports", "0"]),
    ] {
        let flag = if args[0] == "--stage" { args[2] } else { args[0] };
        assert_refused(&run(binary, args), tool, &format!("{flag}: {why}"));
    }
}

#[test]
fn xps_check_lists_the_stage_table_for_scripts() {
    let out = run(XPS_CHECK, &["--stages"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), STAGES.len(), "{stdout}");
    for (line, stage) in lines.iter().zip(STAGES) {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(
            fields[..3],
            [&stage.number.to_string(), stage.crate_name, stage.protocol.name()]
        );
        let shutdown = if stage.graceful_shutdown { "shutdown=graceful" } else { "shutdown=none" };
        let idle = if stage.spins_when_idle { "idle=spins" } else { "idle=quiet" };
        assert!(fields.contains(&shutdown) && fields.contains(&idle), "{line}");
    }
    assert!(lines[1].starts_with("7 stage07 reverse send=blocks idle=quiet"), "{stdout}");
    let help = String::from_utf8_lossy(&run(XPS_CHECK, &["--help"]).stdout).into_owned();
    assert!(help.contains("xps-check --stages"), "{help}");
}
