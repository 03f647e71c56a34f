//! `xps-learn verify`: the exercises' honesty check, run by CI.
//!
//! For each stage, in a scratch folder under `target/`:
//!
//! 1. the exercise with every blank compiles, and its milestone run fails;
//! 2. the exercise with one blank only (the others filled back from the
//!    stage's own code) fails a milestone, for every blank in turn: a blank
//!    that no test notices is a bug in the list, since a learner could
//!    leave it unwritten and be told the stage is done;
//! 3. the exercise with no blank, which is the stage's own code, passes
//!    every milestone;
//! 4. the stage's own code with one known mistake made (`mistakes.txt`,
//!    see [`crate::mistake`]) fails a milestone, for every mistake in turn,
//!    and `check` sends the learner to the function the mistake is in.

use crate::check::{Milestone, Run, blanks_hit, milestones, next_to_write};
use crate::exercise::{self, Blank};
use crate::mistake::{self, Mistake};
use crate::start::{Layout, Start, write, write_crate};
use shared::stages::Stage;
use std::time::Instant;

/// Runs the three steps for each of `stages`; true if all hold.
pub fn verify(layout: &Layout, stages: &[&Stage]) -> Result<bool, String> {
    let work = layout.root.join("target/xps-learn-verify");
    let target = work.join("target");
    let mut problems = Vec::new();
    let started = Instant::now();
    for stage in stages {
        let blanks = exercise::load(&layout.stage_dir(stage))?;
        let mistakes = mistake::load(&layout.stage_dir(stage))?;
        let dir = work.join(stage.crate_name);
        let run = Run { layout, stage, crate_dir: &dir, target: &target, blanks: &blanks };
        println!("stage {} ({} blanks):", stage.number, blanks.len());

        let all: Vec<&Blank> = blanks.iter().collect();
        write_crate(layout, stage, &Start::Blanks(&all), &dir)?;
        let list = milestones(layout, stage, &blanks, &dir);
        match first_failure(&run, &list) {
            Some((Milestone::Compiles, details)) => {
                problems.push(format!(
                    "stage {}: the exercise does not compile:\n{details}",
                    stage.number
                ));
                continue;
            }
            Some((milestone, _)) => {
                println!("  every blank: fails at {} (as it must)", milestone.title())
            }
            None => problems
                .push(format!("stage {}: the exercise passes with every blank", stage.number)),
        }

        for blank in &blanks {
            write_crate(layout, stage, &Start::Blanks(&[blank]), &dir)?;
            let step = Instant::now();
            match first_failure(&run, &list) {
                Some((Milestone::Compiles, details)) => problems.push(format!(
                    "stage {}: with only {} blank, it does not compile:\n{details}",
                    stage.number, blank.function
                )),
                Some((milestone, details)) => {
                    let named = if blanks_hit(&details, &blanks).contains(&blank) {
                        "its todo!() named in the failure"
                    } else {
                        "failing without its todo!() in the output"
                    };
                    println!(
                        "  {:<40} noticed by {} ({named}, {:.1} s)",
                        blank.function,
                        milestone.title(),
                        step.elapsed().as_secs_f64()
                    );
                }
                None => {
                    println!("  {:<40} NOTICED BY NO MILESTONE", blank.function);
                    problems.push(format!(
                        "stage {}: {} (src/{}) can be left blank and every milestone passes: \
                         no test notices it",
                        stage.number, blank.function, blank.file
                    ));
                }
            }
        }

        write_crate(layout, stage, &Start::Blanks(&[]), &dir)?;
        let step = Instant::now();
        match first_failure(&run, &list) {
            None => println!(
                "  no blank: all {} milestones pass ({:.1} s)",
                list.len(),
                step.elapsed().as_secs_f64()
            ),
            Some((milestone, details)) => problems.push(format!(
                "stage {}: the stage's own code fails {}:\n{details}",
                stage.number,
                milestone.title()
            )),
        }

        for mistake in &mistakes {
            make_mistake(layout, stage, mistake, &dir)?;
            let step = Instant::now();
            let took = || step.elapsed().as_secs_f64();
            match first_failure(&run, &list) {
                Some((Milestone::Compiles, details)) => problems.push(format!(
                    "stage {}: mistake {:?} does not compile (a mistake must be one a \
                     learner could run):\n{details}",
                    stage.number, mistake.name
                )),
                Some((milestone, details)) => {
                    let next = next_to_write(&details, &dir, &blanks).map(|b| &b.function);
                    if next == Some(&mistake.function) {
                        println!(
                            "  mistake in {:<29} caught by {}, sent to it ({:.1} s): {}",
                            mistake.function,
                            milestone.title(),
                            took(),
                            mistake.name
                        );
                    } else {
                        println!(
                            "  mistake in {:<29} CAUGHT, BUT SENT ELSEWHERE",
                            mistake.function
                        );
                        problems.push(format!(
                            "stage {}: mistake {:?} fails {}, but check sends the learner to {}, \
                             not {}: list the failing test under `tests:` of {} in exercise.txt\n\
                             {details}",
                            stage.number,
                            mistake.name,
                            milestone.title(),
                            next.map_or("no function", String::as_str),
                            mistake.function,
                            mistake.function
                        ));
                    }
                }
                None => {
                    println!("  mistake in {:<29} NOTICED BY NO MILESTONE", mistake.function);
                    problems.push(format!(
                        "stage {}: mistake {:?} in {} passes every milestone: a learner who \
                         made it would be told the stage is done ({})",
                        stage.number, mistake.name, mistake.function, mistake.symptom
                    ));
                }
            }
        }
    }
    println!("\n{} stage(s) verified in {:.0} s", stages.len(), started.elapsed().as_secs_f64());
    if problems.is_empty() {
        return Ok(true);
    }
    for problem in &problems {
        eprintln!("\nxps-learn verify: {problem}");
    }
    Ok(false)
}

/// Runs `list` in order and returns the first milestone that fails, with
/// what failed.
fn first_failure<'a>(run: &Run<'_>, list: &'a [Milestone]) -> Option<(&'a Milestone, String)> {
    list.iter()
        .find_map(|milestone| run.run(milestone).result.err().map(|details| (milestone, details)))
}

/// Writes the stage's own code into `dir` with `mistake` made.
fn make_mistake(
    layout: &Layout,
    stage: &Stage,
    mistake: &Mistake,
    dir: &std::path::Path,
) -> Result<(), String> {
    write_crate(layout, stage, &Start::Blanks(&[]), dir)?;
    let path = dir.join("src").join(&mistake.file);
    let source =
        std::fs::read_to_string(&path).map_err(|err| format!("{}: {err}", path.display()))?;
    write(&path, &mistake.apply(&source)?)
}
