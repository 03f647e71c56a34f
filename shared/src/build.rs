//! Finding the binaries of other workspace crates from a test.
//!
//! A test may use `env!("CARGO_BIN_EXE_x")` only for binaries of its own
//! package. A stage's test that runs the `sender` tool, or a tool's test
//! that runs a stage, asks Cargo instead: building an up-to-date binary is
//! a no-op, and Cargo reports where the executable is.

use std::path::PathBuf;
use std::process::Command;

/// Builds binary `bin` of workspace package `package` (a no-op when it is
/// up to date) and returns the path of its executable. Panics with Cargo's
/// output if the build fails.
pub fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    // Cargo sets CARGO for the tests it runs; fall back to the PATH.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "--quiet", "--package", package, "--bin", bin])
        .args(["--message-format", "json-render-diagnostics"])
        .output()
        .unwrap_or_else(|err| panic!("cannot run cargo to build {bin}: {err}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "building {bin} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .filter(|line| line.contains("\"reason\":\"compiler-artifact\""))
        .find_map(executable_of)
        .unwrap_or_else(|| panic!("cargo reported no executable for {bin}:\n{stdout}"))
}

/// The `"executable":"..."` field of one line of Cargo's JSON messages.
fn executable_of(line: &str) -> Option<PathBuf> {
    const KEY: &str = "\"executable\":\"";
    let start = line.find(KEY)? + KEY.len();
    let end = start + line[start..].find('"')?;
    Some(PathBuf::from(&line[start..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executable_is_read_from_a_json_message() {
        let line = r#"{"reason":"compiler-artifact","executable":"/t/debug/sender","fresh":true}"#;
        assert_eq!(executable_of(line), Some(PathBuf::from("/t/debug/sender")));
        assert_eq!(executable_of(r#"{"executable":null}"#), None);
    }
}
