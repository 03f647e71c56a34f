//! `xps-learn`: write each stage yourself, checked milestone by milestone.
//!
//! ```text
//! xps-learn start 7                  exercises/stage07: stage 7 with its lesson's functions blank
//! xps-learn start 7 --from-previous  exercises/stage07: your stage 6 (or ours), to change into 7
//! xps-learn check 7 [--watch]        build it, run the milestones, say what to write next
//! xps-learn status                   every stage started, milestones passed of total
//! xps-learn verify [N...]            for CI: every blank of every stage is noticed by a test
//! xps-learn book N [--out DIR]       a copy of the book with stage N's blank bodies hidden
//! ```
//!
//! Which functions are blank, with a hint and the book section for each,
//! is data beside each stage: `stageNN/exercise.txt` (see exercise.rs).

mod book;
mod check;
mod exercise;
mod mistake;
mod source;
mod start;
mod verify;

use check::{Milestone, Run, milestones, next_to_write, still_blank};
use exercise::Blank;
use shared::cli::{Args, options_or_exit, unknown};
use shared::stages::{self, STAGES, Stage};
use start::{Layout, Start, write_crate};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

/// The usage, with the stages this workspace has.
fn usage() -> String {
    let stages = stages::numbers_in_words();
    format!(
        "\
Usage: xps-learn start N [--from-previous] [--force]
       xps-learn check N [--watch]
       xps-learn status
       xps-learn verify [N ...]
       xps-learn book N [--out DIR]

Write stage N ({stages}) yourself, in exercises/stageNN/, and check it
milestone by milestone with the stage's own tests.

Commands:
  start N          make exercises/stageNN: the stage's code with the bodies
                   of the functions its chapter teaches replaced by todo!()
  --from-previous  instead, copy your exercises/stage(N-1) (or the
                   workspace's stage N-1) to change into stage N, as the
                   course does
  --force          replace an exercise that already exists (your work in it
                   is lost)
  check N          build exercises/stageNN and run the milestones in the
                   book's order; stop at the first that fails and say which
                   function to write (or look at again, when a test listed
                   under it fails), with a hint and the book section
  --watch          run again whenever a file of the exercise changes
                   (Ctrl+C to stop)
  status           every exercise started: milestones passed, functions
                   still blank (or that the code changed since the check)
  verify [N ...]   for CI: for each stage (all by default), check that the
                   exercise compiles and fails, that every blank alone is
                   noticed by a milestone, that the stage's own code
                   passes them all, and that each known mistake in the
                   stage's mistakes.txt fails one and is traced to its
                   function
  book N           write a copy of the book (into exercises/book) in which
                   the listings of stage N's code show the functions you
                   write as todo!(), not finished; read it with
                   `mdbook serve exercises/book --open`
  --out DIR        write the copy into DIR instead
  -h, --help       print this help"
    )
}

/// What the command line asks for.
#[derive(Debug)]
enum Command {
    Start { stage: &'static Stage, from_previous: bool, force: bool },
    Check { stage: &'static Stage, watch: bool },
    Status,
    Verify { stages: Vec<&'static Stage> },
    Book { stage: &'static Stage, out: Option<PathBuf> },
}

fn parse_args<S: AsRef<str>>(args: impl IntoIterator<Item = S>) -> Result<Option<Command>, String> {
    let mut args = Args::new(args);
    let Some(command) = args.next() else { return Err("which command?".to_string()) };
    let stage_arg = |args: &mut Args<_>| -> Result<&'static Stage, String> {
        let value = args.next().ok_or_else(|| format!("{command} needs a stage number"))?;
        number_to_stage(&value)
    };
    let command = match command.as_str() {
        "-h" | "--help" => return Ok(None),
        "start" => {
            let stage = stage_arg(&mut args)?;
            let (mut from_previous, mut force) = (false, false);
            for flag in args.by_ref() {
                match flag.as_str() {
                    "--from-previous" => from_previous = true,
                    "--force" => force = true,
                    "-h" | "--help" => return Ok(None),
                    _ => return Err(unknown(&flag)),
                }
            }
            Command::Start { stage, from_previous, force }
        }
        "check" => {
            let stage = stage_arg(&mut args)?;
            let mut watch = false;
            for flag in args.by_ref() {
                match flag.as_str() {
                    "--watch" => watch = true,
                    "-h" | "--help" => return Ok(None),
                    _ => return Err(unknown(&flag)),
                }
            }
            Command::Check { stage, watch }
        }
        "status" => match args.next() {
            None => Command::Status,
            Some(extra) => return Err(unknown(&extra)),
        },
        "verify" => {
            let mut chosen = Vec::new();
            for value in args.by_ref() {
                chosen.push(number_to_stage(&value)?);
            }
            if chosen.is_empty() {
                chosen = STAGES.iter().collect();
            }
            Command::Verify { stages: chosen }
        }
        "book" => {
            let stage = stage_arg(&mut args)?;
            let mut out = None;
            while let Some(flag) = args.next() {
                match flag.as_str() {
                    "--out" => out = Some(PathBuf::from(args.value(&flag)?)),
                    "-h" | "--help" => return Ok(None),
                    _ => return Err(unknown(&flag)),
                }
            }
            Command::Book { stage, out }
        }
        other => return Err(format!("unknown command {other:?}")),
    };
    Ok(Some(command))
}

/// The stage a command-line number names.
fn number_to_stage(value: &str) -> Result<&'static Stage, String> {
    value.parse::<u8>().ok().and_then(stages::stage).ok_or_else(|| {
        format!("no stage {value:?}: this workspace has {}", stages::numbers_in_words())
    })
}

fn main() -> ExitCode {
    let usage = usage();
    let command = match options_or_exit("xps-learn", &usage, parse_args(std::env::args().skip(1))) {
        Ok(command) => command,
        Err(status) => return status,
    };
    let layout = Layout::of_workspace();
    let result = match command {
        Command::Start { stage, from_previous, force } => {
            start(&layout, stage, from_previous, force)
        }
        Command::Check { stage, watch } => check(&layout, stage, watch),
        Command::Status => status(&layout),
        Command::Verify { stages } => verify::verify(&layout, &stages),
        Command::Book { stage, out } => book::run(&layout, stage, out.as_deref()),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("xps-learn: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The blanks of `stage`, from its list.
fn blanks_of(layout: &Layout, stage: &Stage) -> Result<Vec<Blank>, String> {
    exercise::load(&layout.stage_dir(stage))
}

/// `start`: makes the learner's crate.
fn start(layout: &Layout, stage: &Stage, from_previous: bool, force: bool) -> Result<bool, String> {
    let dest = layout.exercise_dir(stage);
    if dest.exists() && !force {
        return Err(format!(
            "{} exists already: `check {}` to go on with it, or `start {} --force` to start \
             again (what you wrote there is lost)",
            shown(layout, &dest),
            stage.number,
            stage.number
        ));
    }
    let blanks = blanks_of(layout, stage)?;
    if dest.exists() {
        std::fs::remove_dir_all(dest.join("src"))
            .map_err(|err| format!("{}: {err}", dest.display()))?;
    }
    let all: Vec<&Blank> = blanks.iter().collect();
    if from_previous {
        let previous =
            STAGES.iter().filter(|s| s.number < stage.number).max_by_key(|s| s.number).ok_or_else(
                || format!("stage {} is the first: no stage comes before it", stage.number),
            )?;
        let learners = layout.exercise_dir(previous).join("src");
        let src = if learners.is_dir() { learners } else { layout.stage_dir(previous).join("src") };
        write_crate(layout, stage, &Start::Copy(src.clone()), &dest)?;
        println!(
            "Made {} from {}: change it into stage {}, as the chapter does.",
            shown(layout, &dest),
            shown(layout, &src),
            stage.number
        );
        println!("The functions the chapter adds or changes:");
    } else {
        write_crate(layout, stage, &Start::Blanks(&all), &dest)?;
        println!(
            "Made {}: stage {}'s code with {} functions for you to write:",
            shown(layout, &dest),
            stage.number,
            blanks.len()
        );
    }
    write_shared_config(layout)?;
    print_blanks(&blanks);
    println!("\nNext: cargo run -p tools --bin xps-learn -- check {}", stage.number);
    Ok(true)
}

/// `exercises/.cargo/config.toml`: every exercise builds into one folder,
/// so `cargo run` in an exercise and `xps-learn check` share their builds.
fn write_shared_config(layout: &Layout) -> Result<(), String> {
    let target = layout.target.strip_prefix(&layout.root).unwrap_or(&layout.target);
    let config = format!(
        "# Made by xps-learn: every exercise builds into one folder, so their\n\
         # dependencies are compiled once and `xps-learn check` finds the binaries.\n\
         [build]\n\
         target-dir = \"../{}\"\n",
        target.display()
    );
    start::write(&layout.exercises.join(".cargo/config.toml"), &config)
}

/// Lists `blanks` as "function  (file)  hint".
fn print_blanks(blanks: &[Blank]) {
    for (i, blank) in blanks.iter().enumerate() {
        println!("  {:>2}. {}  (src/{})\n      {}", i + 1, blank.function, blank.file, blank.hint);
    }
}

/// `path` relative to the workspace's root, for messages.
fn shown(layout: &Layout, path: &Path) -> String {
    path.strip_prefix(&layout.root).unwrap_or(path).display().to_string()
}

/// `check`: runs the milestones once, or on every change with `--watch`.
fn check(layout: &Layout, stage: &Stage, watch: bool) -> Result<bool, String> {
    let dir = layout.exercise_dir(stage);
    if !dir.join("Cargo.toml").is_file() {
        return Err(format!(
            "no exercise for stage {n} yet: `xps-learn start {n}` makes one",
            n = stage.number
        ));
    }
    if !watch {
        return check_once(layout, stage);
    }
    loop {
        let seen = latest_change(&dir);
        check_once(layout, stage)?;
        println!("\nWatching {} for changes (Ctrl+C to stop)...", shown(layout, &dir));
        while latest_change(&dir) == seen {
            std::thread::sleep(Duration::from_millis(500));
        }
        println!();
    }
}

/// The latest modification time of the exercise's Cargo.toml and sources.
fn latest_change(dir: &Path) -> Option<SystemTime> {
    let mut files = Vec::new();
    let _ = start::list_files(dir, &dir.join("src"), &mut files);
    files.push("Cargo.toml".to_string());
    files.iter().filter_map(|file| std::fs::metadata(dir.join(file)).ok()?.modified().ok()).max()
}

/// Runs the milestones of the learner's crate in order, stopping at the
/// first that fails; prints each, then what to write next. Returns whether
/// all passed.
fn check_once(layout: &Layout, stage: &Stage) -> Result<bool, String> {
    let blanks = blanks_of(layout, stage)?;
    let dir = layout.exercise_dir(stage);
    let run = Run { layout, stage, crate_dir: &dir, target: &layout.target, blanks: &blanks };
    let list = milestones(layout, stage, &blanks, &dir);
    println!("Stage {} ({}): {}", stage.number, stage.title, shown(layout, &dir));
    let mut passed = 0;
    let mut failure = None;
    for (i, milestone) in list.iter().enumerate() {
        let outcome = run.run(milestone);
        let mark = if outcome.result.is_ok() { "pass" } else { "FAIL" };
        println!(
            "  {mark} {:>2}/{}  {:<44} {:>6.1} s",
            i + 1,
            list.len(),
            milestone.title(),
            outcome.took.as_secs_f64()
        );
        match outcome.result {
            Ok(()) => passed += 1,
            Err(details) => {
                failure = Some((milestone, details));
                break;
            }
        }
    }
    let blank_left = still_blank(&dir, &blanks);
    let next = failure.as_ref().and_then(|(_, details)| next_to_write(details, &dir, &blanks));
    save_status(&dir, passed, list.len(), next);
    let written = blanks.len() - blank_left.len();
    match failure {
        None => {
            println!(
                "\nEvery milestone passes: stage {} is done ({written} of {} functions written).",
                stage.number,
                blanks.len()
            );
            Ok(true)
        }
        Some((milestone, details)) => {
            match next {
                Some(blank) if is_blank_in(&dir, blank) => {
                    println!("\nWrite next: {} in src/{}", blank.function, blank.file);
                    println!("  {}", blank.hint);
                    println!("  Book: book/src/{}", blank.book);
                }
                Some(blank) => {
                    println!(
                        "\nLook again at: {} in src/{} (written, but a test about it fails)",
                        blank.function, blank.file
                    );
                    println!("  {}", blank.hint);
                    println!("  Book: book/src/{}", blank.book);
                }
                None if *milestone == Milestone::Compiles => println!("\nIt does not compile:"),
                None => println!(
                    "\nNo function is left as todo!(), none was hit, and no test that failed \
                     is listed as one of a function's own. Milestone failed: {}. The \
                     failure below says where to look.",
                    milestone.title()
                ),
            }
            println!("\nWhat failed:\n{}", indent(&shorten(&details, 40)));
            println!(
                "\n{written} of {} functions written; {passed} of {} milestones pass.",
                blanks.len(),
                list.len()
            );
            Ok(false)
        }
    }
}

/// The first `max` lines of `text`, saying how many were left out.
fn shorten(text: &str, max: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= max {
        return text.to_string();
    }
    format!("{}\n... ({} more lines)", lines[..max].join("\n"), lines.len() - max)
}

fn indent(text: &str) -> String {
    text.lines().map(|line| format!("  {line}")).collect::<Vec<_>>().join("\n")
}

/// True if `blank` is still `todo!()` in the learner's crate in `dir`.
fn is_blank_in(dir: &Path, blank: &Blank) -> bool {
    still_blank(dir, std::slice::from_ref(blank)).len() == 1
}

/// The file where `check` leaves its result for `status`.
const STATUS_FILE: &str = ".xps-learn-status";

fn save_status(dir: &Path, passed: usize, total: usize, next: Option<&Blank>) {
    let next = next.map_or("-", |blank| blank.function.as_str());
    let _ = std::fs::write(dir.join(STATUS_FILE), format!("{passed} {total} {next}\n"));
}

/// `status`: one line per exercise started.
fn status(layout: &Layout) -> Result<bool, String> {
    let mut any = false;
    for stage in STAGES {
        let dir = layout.exercise_dir(stage);
        if !dir.join("Cargo.toml").is_file() {
            continue;
        }
        any = true;
        let blanks = blanks_of(layout, stage)?;
        let blank = still_blank(&dir, &blanks).len();
        let saved = std::fs::read_to_string(dir.join(STATUS_FILE)).unwrap_or_default();
        let fields: Vec<&str> = saved.split_whitespace().collect();
        // A result older than the code says nothing about the code.
        let checked = std::fs::metadata(dir.join(STATUS_FILE)).and_then(|m| m.modified()).ok();
        let changed_since = latest_change(&dir).zip(checked).is_some_and(|(code, at)| code > at);
        let milestones = match fields.as_slice() {
            [..] if changed_since => {
                "changed since the last check: run `xps-learn check` again".to_string()
            }
            [passed, total, "-"] if passed == total => format!("{passed}/{total} milestones: done"),
            [passed, total, "-"] => format!("{passed}/{total} milestones"),
            [passed, total, next] => format!("{passed}/{total} milestones, next: {next}"),
            _ => "not checked yet".to_string(),
        };
        println!(
            "stage {:>2}  {:<22} {} of {} functions written, {milestones}",
            stage.number,
            shown(layout, &dir),
            blanks.len() - blank,
            blanks.len()
        );
    }
    if !any {
        println!("No exercise started yet: `xps-learn start N` makes one (see --help).");
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use exercise::LIST_FILE;

    fn parse(line: &str) -> Result<Option<Command>, String> {
        parse_args(line.split_whitespace())
    }

    #[test]
    fn commands_parse() {
        assert!(matches!(parse("start 7"), Ok(Some(Command::Start { from_previous: false, .. }))));
        assert!(matches!(
            parse("start 7 --from-previous"),
            Ok(Some(Command::Start { from_previous: true, .. }))
        ));
        assert!(matches!(parse("check 8 --watch"), Ok(Some(Command::Check { watch: true, .. }))));
        assert!(matches!(parse("status"), Ok(Some(Command::Status))));
        assert!(
            matches!(parse("verify"), Ok(Some(Command::Verify { stages })) if stages.len() == STAGES.len())
        );
        assert!(matches!(parse("--help"), Ok(None)));
    }

    #[test]
    fn bad_commands_say_what_is_wrong() {
        assert!(parse("").unwrap_err().contains("which command"));
        assert!(parse("start").unwrap_err().contains("needs a stage"));
        assert!(parse("start 99").unwrap_err().contains("no stage"));
        assert!(parse("check 7 --fast").unwrap_err().contains("--fast"));
        assert!(parse("launch 7").unwrap_err().contains("launch"));
    }

    /// The id mdBook gives a heading: its text (no code marks) in lower
    /// case, spaces as `-`, other punctuation dropped.
    fn heading_id(heading: &str) -> String {
        heading
            .trim()
            .chars()
            .filter_map(|c| match c {
                c if c.is_alphanumeric() || c == '_' || c == '-' => Some(c.to_ascii_lowercase()),
                c if c.is_whitespace() => Some('-'),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn heading_ids_are_mdbooks() {
        assert_eq!(
            heading_id(" `run`: a pass, then a wait of 0 or -1"),
            "run-a-pass-then-a-wait-of-0-or--1"
        );
        assert_eq!(heading_id(" `main.rs` and shutdown"), "mainrs-and-shutdown");
    }

    #[test]
    fn every_stage_has_an_exercise_list_that_names_real_functions() {
        let layout = Layout::of_workspace();
        for stage in STAGES {
            let blanks = blanks_of(&layout, stage)
                .unwrap_or_else(|err| panic!("stage {}: {err} ({LIST_FILE})", stage.number));
            assert!(!blanks.is_empty(), "stage {} has no blanks", stage.number);
            for blank in &blanks {
                let (page, anchor) = blank.book.split_once('#').unwrap_or((&blank.book, ""));
                let path = layout.root.join("book/src").join(page);
                let text = std::fs::read_to_string(&path).unwrap_or_else(|_| {
                    panic!(
                        "stage {}: {} names {page}, which is not a page",
                        stage.number, blank.function
                    )
                });
                let anchors: Vec<String> = text
                    .lines()
                    .filter(|line| line.starts_with('#'))
                    .map(|line| heading_id(line.trim_start_matches('#')))
                    .collect();
                assert!(
                    anchor.is_empty() || anchors.iter().any(|a| a == anchor),
                    "stage {}: {} names {page}#{anchor}, not a heading there (it has {anchors:?})",
                    stage.number,
                    blank.function
                );
                for test in &blank.tests {
                    assert!(
                        is_a_test_of(&layout, stage, test),
                        "stage {}: {} lists {test:?} as its test: no such test or check",
                        stage.number,
                        blank.function
                    );
                }
            }
            // Every known mistake applies to the stage's code.
            mistake::load(&layout.stage_dir(stage))
                .unwrap_or_else(|err| panic!("stage {}: {err}", stage.number));
        }
    }

    /// True if `name` is a check of the shared list, or a `#[test]`
    /// function in the stage's `src/` or `tests/`.
    fn is_a_test_of(layout: &Layout, stage: &Stage, name: &str) -> bool {
        if shared::checks::CHECKS.iter().any(|check| check.name == name) {
            return true;
        }
        let dir = layout.stage_dir(stage);
        let mut files = Vec::new();
        for sub in ["src", "tests"] {
            let mut found = Vec::new();
            let _ = start::list_files(&dir.join(sub), &dir.join(sub), &mut found);
            files.extend(found.into_iter().map(|file| dir.join(sub).join(file)));
        }
        files.iter().any(|file| {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            text.contains(&format!("#[test]\n    fn {name}("))
                || text.contains(&format!("#[test]\nfn {name}("))
        })
    }
}
