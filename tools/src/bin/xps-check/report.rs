//! Printing the results: one line per check (or one JSON object), with
//! the bytes of a failure shown exactly, and the summary.

use crate::Options;
use colored::Colorize;
use shared::checks::{Check, Outcome, show};
use std::fmt::Write as _;
use std::time::Duration;

/// Escapes text for a JSON string.
pub(crate) fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Prints one check's result, as text or JSON. Colours are on only if
/// `main` said so (`colored::control::set_override`).
pub(crate) fn report(check: &Check, outcome: &Outcome, took: Duration, options: &Options) {
    if options.json {
        let result = match outcome {
            Ok(None) => "pass",
            Ok(Some(_)) => "note",
            Err(_) => "fail",
        };
        // "passed" is true for a note too: a note does not fail the run.
        let mut line = format!(
            "{{\"check\":{},\"result\":\"{result}\",\"passed\":{},\"seconds\":{:.3}",
            json_string(check.name),
            outcome.is_ok(),
            took.as_secs_f64()
        );
        match outcome {
            Ok(Some(note)) => line += &format!(",\"note\":{}", json_string(note)),
            Ok(None) => {}
            Err(failure) => {
                line += &format!(",\"what\":{}", json_string(&failure.what));
                for (key, bytes) in [
                    ("sent", &failure.sent),
                    ("expected", &failure.expected),
                    ("got", &failure.got),
                ] {
                    if let Some(bytes) = bytes {
                        line += &format!(",\"{key}\":{}", json_string(&show(bytes)));
                    }
                }
                line += &format!(",\"hint\":{}", json_string(&failure.hint));
            }
        }
        println!("{line}}}");
        return;
    }
    let mark = match outcome {
        Ok(None) => "PASS".green(),
        Ok(Some(_)) => "NOTE".yellow(),
        Err(_) => "FAIL".red().bold(),
    };
    println!("{mark} {:<15} {:>6.2} s  {}", check.name, took.as_secs_f64(), check.about);
    match outcome {
        Ok(Some(note)) => println!("     {note}"),
        Ok(None) => {}
        Err(failure) => {
            println!("     {}", failure.what);
            for (label, bytes) in
                [("sent", &failure.sent), ("expected", &failure.expected), ("got", &failure.got)]
            {
                if let Some(bytes) = bytes {
                    println!("     {label:<9} {}", show(bytes));
                }
            }
            if !failure.hint.is_empty() {
                println!("     {} {}", "hint:".bold(), failure.hint);
            }
        }
    }
}

/// How many checks passed, passed with a note, failed, or were not run.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) passed: usize,
    pub(crate) notes: usize,
    pub(crate) failed: usize,
    pub(crate) not_run: usize,
}

impl Tally {
    /// Counts one check's outcome.
    pub(crate) fn count(&mut self, outcome: &Outcome) {
        match outcome {
            Ok(None) => self.passed += 1,
            Ok(Some(_)) => self.notes += 1,
            Err(_) => self.failed += 1,
        }
    }

    /// How many checks have run.
    pub(crate) fn run(&self) -> usize {
        self.passed + self.notes + self.failed
    }
}

/// Prints why the run stopped early, if it did, then the counts: as text
/// ("11 passed, 1 note, 0 failed") or as one JSON object.
pub(crate) fn summary(tally: &Tally, stopped: Option<&str>, json: bool) {
    let Tally { passed, notes, failed, not_run } = tally;
    if json {
        let mut line = format!(
            "{{\"passed\":{passed},\"notes\":{notes},\"failed\":{failed},\"not_run\":{not_run}"
        );
        if let Some(reason) = stopped {
            line += &format!(",\"stopped\":{}", json_string(reason));
        }
        println!("{line}}}");
        return;
    }
    if let Some(reason) = stopped {
        println!("stopped: {reason}");
    }
    let plural = if *notes == 1 { "" } else { "s" };
    let mut line = format!("{passed} passed, {notes} note{plural}, {failed} failed");
    if *not_run > 0 {
        line += &format!(", {not_run} not run");
    }
    println!("{line}");
}
