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
//!    every milestone.

use crate::check::{Milestone, Run, blanks_hit, milestones};
use crate::exercise::{self, Blank};
use crate::start::{Layout, Start, write_crate};
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
        let dir = work.join(stage.crate_name);
        let run = Run { layout, stage, crate_dir: &dir, target: &target };
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
