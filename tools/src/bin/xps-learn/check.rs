//! `xps-learn check N`: builds the learner's crate and runs stage N's
//! milestones in the book's order, stopping at the first that fails.
//!
//! The milestones are the stage's own tests, not copies: the unit tests
//! in the learner's `src/` (the exercise keeps the stage's API, so they
//! are the stage's), the shared list of checks (`shared::checks`, which
//! the stage's `tests/checks.rs` runs too) and the stage's other
//! integration tests, run against the learner's binary through `XPS_BIN`.

use crate::exercise::{Blank, is_blank};
use crate::start::Layout;
use shared::capture::{Captured, Drain};
use shared::checks::{self, Group, Subject, describe};
use shared::harness::{self, BIN_VAR, COPY_VAR};
use shared::stages::Stage;
use shared::wait::wait_until;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One step of a stage's milestone run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Milestone {
    /// The crate builds.
    Compiles,
    /// The unit tests of one file (module) of the lesson.
    UnitTests {
        /// The file under `src/`.
        file: String,
    },
    /// Every unit test of the crate.
    AllUnitTests,
    /// The checks of one group of the shared list.
    Checks(Group),
    /// One integration test file of the stage (`tests/NAME.rs`), against
    /// the learner's binary.
    StageTests {
        /// The file's name without `.rs`.
        name: String,
    },
}

impl Milestone {
    /// What it is, in a few words.
    pub fn title(&self) -> String {
        match self {
            Milestone::Compiles => "it compiles".to_string(),
            Milestone::UnitTests { file } => format!("the unit tests of {file}"),
            Milestone::AllUnitTests => "every unit test".to_string(),
            Milestone::Checks(group) => match group {
                Group::Tester => "the course tester's checks".to_string(),
                Group::Wire => "the wire checks (odd clients, odd data)".to_string(),
                Group::Process => "the process checks (fds, CPU, memory)".to_string(),
                Group::Cli => "the command line".to_string(),
                Group::Shutdown => "shutdown (SIGINT, SIGTERM)".to_string(),
                Group::Log => "the log".to_string(),
                Group::Proxy => "the course tester's proxy checks".to_string(),
                Group::Files => "the course tester's file checks".to_string(),
                Group::Sessions => "the ports with nothing behind their sessions".to_string(),
            },
            Milestone::StageTests { name } => format!("the stage's tests/{name}.rs"),
        }
    }
}

/// The milestones of `stage`, in the book's order: the crate builds; the
/// unit tests of each file of the lesson, before the server runs at all;
/// the course tester's checks; the stage's milestone tests; the other
/// checks, shutdown last; then the stage's other tests (the experiment).
///
/// The tester's checks come before the milestone tests because a server
/// that does not answer at all fails them in seconds, while the milestone
/// tests, written for a server that works, wait out their floods first
/// (over a minute).
pub fn milestones(
    layout: &Layout,
    stage: &Stage,
    blanks: &[Blank],
    crate_dir: &Path,
) -> Vec<Milestone> {
    let mut list = vec![Milestone::Compiles];
    let mut files: Vec<&str> = Vec::new();
    for blank in blanks {
        if !files.contains(&blank.file.as_str()) {
            files.push(&blank.file);
        }
    }
    for file in files {
        let source = std::fs::read_to_string(crate_dir.join("src").join(file)).unwrap_or_default();
        if file != "main.rs" && source.contains("#[cfg(test)]") {
            list.push(Milestone::UnitTests { file: file.to_string() });
        }
    }
    list.push(Milestone::AllUnitTests);
    let (first, last): (Vec<String>, Vec<String>) =
        stage_test_files(layout, stage).into_iter().partition(|name| name.starts_with("milestone"));
    list.push(Milestone::Checks(Group::Tester));
    if stage.forwards_first_port {
        list.push(Milestone::Checks(Group::Proxy));
    }
    if stage.serves_files {
        list.push(Milestone::Checks(Group::Files));
    }
    if stage.sessions {
        list.push(Milestone::Checks(Group::Sessions));
    }
    list.extend(first.into_iter().map(|name| Milestone::StageTests { name }));
    for group in [Group::Wire, Group::Cli, Group::Process, Group::Log, Group::Shutdown] {
        if checks::CHECKS.iter().any(|check| check.group == group) {
            list.push(Milestone::Checks(group));
        }
    }
    list.extend(last.into_iter().map(|name| Milestone::StageTests { name }));
    list
}

/// The stage's integration test files other than `checks.rs` (whose
/// checks run here directly), by name, sorted.
fn stage_test_files(layout: &Layout, stage: &Stage) -> Vec<String> {
    let dir = layout.stage_dir(stage).join("tests");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| {
                    let name = entry.ok()?.file_name().to_string_lossy().into_owned();
                    name.strip_suffix(".rs").map(str::to_string)
                })
                .filter(|name| name != "checks")
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// How a milestone went.
pub struct Outcome {
    /// Passed, or what failed (the failing tests and their messages).
    pub result: Result<(), String>,
    /// How long it took.
    pub took: Duration,
}

/// What a milestone run needs to know.
pub struct Run<'a> {
    pub layout: &'a Layout,
    pub stage: &'a Stage,
    /// The learner's crate.
    pub crate_dir: &'a Path,
    /// Where it is built.
    pub target: &'a Path,
    /// The stage's exercise list: a failure about an earlier function is
    /// shown first.
    pub blanks: &'a [Blank],
}

impl Run<'_> {
    /// The learner's binary.
    pub fn binary(&self) -> PathBuf {
        self.target.join("debug").join(self.stage.crate_name)
    }

    /// Runs one milestone.
    pub fn run(&self, milestone: &Milestone) -> Outcome {
        let started = Instant::now();
        let result = match milestone {
            Milestone::Compiles => self.cargo_in_crate(&["build"], &[]),
            Milestone::UnitTests { file } => {
                let module = file.trim_end_matches(".rs").replace('/', "::");
                self.cargo_in_crate(
                    &["test", "--bin", self.stage.crate_name],
                    &[&format!("{module}::")],
                )
            }
            Milestone::AllUnitTests => {
                self.cargo_in_crate(&["test", "--bin", self.stage.crate_name], &[])
            }
            Milestone::Checks(group) => self.checks(*group),
            Milestone::StageTests { name } => self.stage_tests(name),
        };
        Outcome { result, took: started.elapsed() }
    }

    /// `cargo <args> -- <test_args>` in the learner's crate.
    fn cargo_in_crate(&self, args: &[&str], test_args: &[&str]) -> Result<(), String> {
        let mut command = Command::new(cargo());
        command
            .args(args)
            .arg("--quiet")
            .arg("--manifest-path")
            .arg(self.crate_dir.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(self.target);
        if !test_args.is_empty() || args.first() == Some(&"test") {
            command.arg("--").args(test_args);
        }
        // The panic message says what failed; a backtrace would bury it.
        command.env("RUST_BACKTRACE", "0");
        run_command(command, self.blanks)
    }

    /// Every check of `group`, against the learner's binary, four at a
    /// time (each starts its own server).
    fn checks(&self, group: Group) -> Result<(), String> {
        let binary = self.binary();
        let version = format!("{} {}", self.stage.crate_name, env!("CARGO_PKG_VERSION"));
        let subject =
            Subject { binary: &binary, stage: self.stage, own: true, version: Some(&version) };
        let names: Vec<&str> =
            checks::CHECKS.iter().filter(|c| c.group == group).map(|c| c.name).collect();
        let mut failures = Vec::new();
        // A check that panics is reported below as a failure; the default
        // hook would also print it, backtrace and all, in the middle of
        // the milestone lines.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        for batch in names.chunks(4) {
            let outcomes: Vec<_> = std::thread::scope(|scope| {
                let runs: Vec<_> = batch
                    .iter()
                    .map(|&name| (name, scope.spawn(|| harness::run(name, &subject))))
                    .collect();
                runs.into_iter().map(|(name, run)| (name, run.join())).collect()
            });
            for (name, outcome) in outcomes {
                match outcome {
                    Ok(Ok(_)) => {}
                    Ok(Err(failure)) => {
                        failures.push(format!("check {name}:\n{}", describe(&failure)))
                    }
                    Err(panic) => {
                        let message = harness::panic_message(panic.as_ref());
                        failures.push(format!("check {name}: the check could not go on: {message}"))
                    }
                }
            }
        }
        std::panic::set_hook(hook);
        // The first failure in full, the one about the earliest function of
        // the lesson first; the others by name (they often fail the same
        // way), but the text of every one is searched for the blanks it ran
        // into.
        failures.sort_by_key(|failure| {
            let name = failure.strip_prefix("check ").and_then(|rest| rest.split(':').next());
            first_blank_about(name.unwrap_or(""), failure, self.blanks)
        });
        let Some((first, others)) = failures.split_first() else { return Ok(()) };
        let mut text = first.clone();
        if !others.is_empty() {
            let names: Vec<&str> = others
                .iter()
                .filter_map(|failure| failure.strip_prefix("check ")?.split(':').next())
                .collect();
            text.push_str(&format!("\n\n(and {} more: {})", others.len(), names.join(", ")));
            let hits: Vec<&str> = others
                .iter()
                .flat_map(|failure| failure.lines())
                .filter(|line| line.contains("not yet implemented: "))
                .collect();
            for hit in hits {
                if !text.contains(hit) {
                    text.push_str(&format!("\n{hit}"));
                }
            }
        }
        Err(without_backtraces(&text))
    }

    /// `cargo test -p stageNN --test NAME` in the workspace, against the
    /// learner's binary.
    fn stage_tests(&self, name: &str) -> Result<(), String> {
        let mut command = Command::new(cargo());
        command
            .current_dir(&self.layout.root)
            .args(["test", "--quiet", "-p", self.stage.crate_name, "--test", name])
            .env(BIN_VAR, self.binary())
            .env(COPY_VAR, "1")
            .env("RUST_BACKTRACE", "0");
        run_command(command, self.blanks)
    }
}

/// The cargo that runs this tool, or the one on the PATH.
fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// The longest one milestone run by cargo may take. The slowest, the
/// stage's milestone tests, take about a minute; a test that waits for a
/// loop that never stops would take for ever.
const MILESTONE_LIMIT: Duration = Duration::from_secs(300);

/// Runs `command`; on failure, what it printed that says why. Stopped,
/// with whatever it started, after [`MILESTONE_LIMIT`].
fn run_command(mut command: Command, blanks: &[Blank]) -> Result<(), String> {
    // A group of its own: the test binary that cargo starts is stopped
    // with it.
    command.process_group(0).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|err| format!("could not run cargo: {err}"))?;
    let stdout = child.stdout.take().map(|out| Captured::drain(out, Drain::default()));
    let stderr = child.stderr.take().map(|err| Captured::drain(err, Drain::default()));
    let mut status = None;
    wait_until(MILESTONE_LIMIT, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    if status.is_none() {
        if let Ok(group) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill() takes no pointers; the group is the one this
            // child leads, and the child has not been reaped yet.
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
        let _ = child.wait();
        return Err(format!(
            "still running after {} s, and stopped: a test waits for something that never \
             happens (a loop that does not stop, a reply that never comes)",
            MILESTONE_LIMIT.as_secs()
        ));
    }
    let text = |captured: Option<Captured>| {
        captured.map(|captured| {
            captured.join();
            captured.text()
        })
    };
    let text = format!("{}{}", text(stdout).unwrap_or_default(), text(stderr).unwrap_or_default());
    if status.is_some_and(|status| status.success()) {
        return Ok(());
    }
    Err(failure_excerpt(&text, blanks))
}

/// `text` without the stack backtraces a panic may print (a server run
/// with `RUST_BACKTRACE` set): the panic's message says what failed.
pub fn without_backtraces(text: &str) -> String {
    let mut out = Vec::new();
    let mut in_backtrace = false;
    for line in text.lines() {
        if line.trim_start().starts_with("stack backtrace:") {
            in_backtrace = true;
            continue;
        }
        if in_backtrace {
            let frame = line.trim_start();
            let is_frame = frame.starts_with("at ")
                || frame.split(':').next().is_some_and(|n| n.trim().parse::<u32>().is_ok());
            if is_frame {
                continue;
            }
            in_backtrace = false;
            if frame.starts_with("note: Some details are omitted") {
                continue;
            }
        }
        out.push(line);
    }
    out.join("\n")
}

/// The index in `blanks` of the first function that the failure of test
/// `name` (its text `text`) is about, as a sort key: a `todo!()` it ran
/// into first, then a function that lists the test as one of its own,
/// then failures about no function.
fn first_blank_about(name: &str, text: &str, blanks: &[Blank]) -> (u8, usize) {
    // A todo!() that was hit comes before any test listed under a
    // function: that test may fail only because of the todo!().
    if let Some(hit) = blanks.iter().position(|blank| text.contains(&blank.panic_text())) {
        return (0, hit);
    }
    match blanks.iter().position(|blank| blank.claims(name)) {
        Some(claimed) => (1, claimed),
        None => (2, 0),
    }
}

/// The part of cargo's output that says what failed: the compiler's
/// errors, or the test harness's "failures:" section, the failure about
/// the earliest function of `blanks` first.
fn failure_excerpt(text: &str, blanks: &[Blank]) -> String {
    let text = &without_backtraces(text);
    if let Some(start) = text.find("failures:\n\n") {
        let rest = &text[start + "failures:\n\n".len()..];
        let end = rest.find("\nfailures:\n").unwrap_or(rest.len());
        // One block per failing test, `---- name stdout ----` first: the
        // first in full, the others by name (they often fail the same way).
        let mut blocks: Vec<String> = rest[..end]
            .split("\n---- ")
            .map(|block| block.trim_start_matches("---- ").to_string())
            .collect();
        let test_name = |block: &str| block.split(" stdout ----").next().unwrap_or("").to_string();
        blocks.sort_by_key(|block| first_blank_about(&test_name(block), block, blanks));
        let blocks: Vec<String> = blocks.into_iter().map(|block| format!("---- {block}")).collect();
        let mut excerpt = blocks[0].trim_end().to_string();
        if blocks.len() > 1 {
            let others: Vec<String> =
                blocks[1..].iter().map(|block| test_name(&block["---- ".len()..])).collect();
            excerpt.push_str(&format!("\n\n(and {} more: {})", others.len(), others.join(", ")));
        }
        return excerpt;
    }
    let errors: Vec<&str> =
        text.split("\n\n").filter(|block| block.trim_start().starts_with("error")).collect();
    if errors.is_empty() { text.trim_end().to_string() } else { errors.join("\n\n") }
}

/// The blanks whose `todo!()` a failure ran into, named in its text
/// (`not yet implemented: XpsLoop::create: ...`), in list order.
pub fn blanks_hit<'a>(failure: &str, blanks: &'a [Blank]) -> Vec<&'a Blank> {
    blanks.iter().filter(|blank| failure.contains(&blank.panic_text())).collect()
}

/// The blanks not written yet in the learner's crate, in list order.
pub fn still_blank<'a>(crate_dir: &Path, blanks: &'a [Blank]) -> Vec<&'a Blank> {
    blanks
        .iter()
        .filter(|blank| {
            let source = std::fs::read_to_string(crate_dir.join("src").join(&blank.file));
            source.is_ok_and(|source| is_blank(&source, blank))
        })
        .collect()
}

/// The names of the tests (or checks) a failure's text says failed: the
/// one shown in full and those named in its `(and N more: ...)` line.
pub fn failing_tests(failure: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in failure.lines() {
        if let Some(rest) = line.strip_prefix("---- ") {
            names.extend(rest.split(" stdout ----").next().map(str::to_string));
        } else if let Some(rest) = line.strip_prefix("check ") {
            names.extend(rest.split(':').next().map(str::to_string));
        } else if let Some(rest) = line.strip_prefix("(and ") {
            let list = rest.split_once(" more: ").map_or("", |(_, list)| list);
            names.extend(list.trim_end_matches(')').split(", ").map(str::to_string));
        }
    }
    names.retain(|name| !name.is_empty());
    names
}

/// The function to write (or fix) next after a failure: the first blank
/// the failure ran into; else the first function, in the book's order,
/// whose own tests failed; else the first still blank.
pub fn next_to_write<'a>(
    failure: &str,
    crate_dir: &Path,
    blanks: &'a [Blank],
) -> Option<&'a Blank> {
    let failed = failing_tests(failure);
    blanks_hit(failure, blanks)
        .first()
        .copied()
        .or_else(|| blanks.iter().find(|blank| failed.iter().any(|test| blank.claims(test))))
        .or_else(|| still_blank(crate_dir, blanks).first().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failures_section_is_what_is_shown() {
        let output = "running 2 tests\ntest a ... ok\ntest b ... FAILED\n\nfailures:\n\n---- b stdout ----\n\nthread 'b' panicked at src/x.rs:1:1:\nnot yet implemented: X::y: do it\n\n---- c stdout ----\n\nsame\n\n\nfailures:\n    b\n    c\n\ntest result: FAILED.";
        let excerpt = failure_excerpt(output, &[]);
        assert!(excerpt.starts_with("---- b stdout ----"), "{excerpt}");
        assert!(excerpt.contains("X::y: do it\n\n(and 1 more: c)"), "{excerpt}");
    }

    #[test]
    fn compiler_errors_are_what_is_shown() {
        let output = "   Compiling x\nwarning: unused\n\nerror[E0308]: mismatched types\n --> src/a.rs:1:1\n\nerror: could not compile `x`\n";
        let excerpt = failure_excerpt(output, &[]);
        assert!(excerpt.starts_with("error[E0308]"), "{excerpt}");
        assert!(!excerpt.contains("warning"), "{excerpt}");
    }

    #[test]
    fn backtraces_are_left_out() {
        let text = "panicked at a.rs:1:1:\nboom\nstack backtrace:\n   0: f\n             at ./a.rs:1:1\n  12: g\nnote: Some details are omitted, run with `RUST_BACKTRACE=full`\nnext";
        assert_eq!(without_backtraces(text), "panicked at a.rs:1:1:\nboom\nnext");
    }

    fn two_blanks() -> Vec<Blank> {
        crate::exercise::parse(
            "fn: first\nfile: a.rs\nbook: x.md\nhint: do 1\ntests: one_is_right\n\n\
             fn: second\nfile: a.rs\nbook: x.md\nhint: do 2\ntests: two_is_right, big-check\n",
        )
        .unwrap()
    }

    #[test]
    fn the_failure_about_the_earliest_function_is_shown_first() {
        let output = "failures:\n\n---- mod::tests::two_is_right stdout ----\ntwo failed\n\n\
                      ---- mod::tests::one_is_right stdout ----\none failed\n\n\
                      failures:\n    a\n";
        let excerpt = failure_excerpt(output, &two_blanks());
        assert!(excerpt.starts_with("---- mod::tests::one_is_right stdout ----"), "{excerpt}");
        assert!(excerpt.ends_with("(and 1 more: mod::tests::two_is_right)"), "{excerpt}");
        // A todo!() that was hit comes before a listed test, even one of
        // an earlier function: that test may fail only because of it.
        let output = "failures:\n\n---- mod::tests::one_is_right stdout ----\none failed\n\n\
                      ---- other stdout ----\nnot yet implemented: second: do 2\n\n\
                      failures:\n    a\n";
        let excerpt = failure_excerpt(output, &two_blanks());
        assert!(excerpt.starts_with("---- other stdout ----"), "{excerpt}");
    }

    #[test]
    fn a_failing_test_leads_to_the_function_that_lists_it() {
        let blanks = two_blanks();
        let dir = Path::new("/nonexistent");
        let failure = "---- mod::tests::two_is_right stdout ----\nassertion failed";
        assert_eq!(failing_tests(failure), vec!["mod::tests::two_is_right"]);
        assert_eq!(next_to_write(failure, dir, &blanks), Some(&blanks[1]));
        let checks = "check every-port:\nwrong\n\n(and 2 more: big-check, other)";
        assert_eq!(failing_tests(checks), vec!["every-port", "big-check", "other"]);
        assert_eq!(next_to_write(checks, dir, &blanks), Some(&blanks[1]));
        // A todo!() that was hit comes first; nothing known leads nowhere.
        let hit =
            "---- t stdout ----\nnot yet implemented: first: do 1\n(and 1 more: two_is_right)";
        assert_eq!(next_to_write(hit, dir, &blanks), Some(&blanks[0]));
        assert_eq!(next_to_write("---- unknown stdout ----", dir, &blanks), None);
    }

    #[test]
    fn a_todo_panic_names_its_blank() {
        let blanks = crate::exercise::parse(
            "fn: A::b\nfile: a.rs\nbook: x.md\nhint: do b\n\nfn: c\nfile: a.rs\nbook: x.md\nhint: do c\n",
        )
        .unwrap();
        let failure = "panicked at src/a.rs:3:5:\nnot yet implemented: c: do c";
        assert_eq!(blanks_hit(failure, &blanks), vec![&blanks[1]]);
        assert!(blanks_hit("assertion failed", &blanks).is_empty());
    }
}
