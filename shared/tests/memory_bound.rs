//! The `memory-bound` check can fail: run against stage 9's binary as
//! stage 10, it fails, with the figure and the pipe hint. Stage 9 queues
//! everything a client that never reads sends, which is the behaviour
//! stage 10's pipes exist to remove. (The check exchanges only
//! palindromes, so stage 9's reversed replies are right there, and the
//! check judges its memory alone.)

use shared::build::workspace_binary;
use shared::checks::{Subject, describe};
use shared::harness::run;
use shared::stages::{SendModel, stage};
use std::time::{Duration, Instant};

#[test]
fn stage_9_fails_the_memory_check_of_stage_10() {
    let binary = workspace_binary("stage09", "stage09");
    let ten = stage(10).expect("stage 10 is in the table");
    assert!(!ten.unbounded_memory && ten.send_model == SendModel::Buffers, "{ten:?}");
    let subject = Subject { binary: &binary, stage: ten, own: true, version: None };
    let started = Instant::now();
    let outcome = run("memory-bound", &subject);
    let took = started.elapsed();
    let failure = outcome.expect_err("stage 9 queues everything: its memory is not bounded");
    let text = describe(&failure);
    println!("{text}\n({took:?})");
    assert!(failure.what.contains("grew by"), "{text}");
    assert!(failure.hint.contains("xps_pipe_is_writable"), "{text}");
    // It stops the flood as soon as the memory passes the bound.
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

/// And as stage 9 itself, the same growth is that stage's flaw: a note
/// with the figure, not a failure.
#[test]
fn stage_9_itself_gets_a_note_with_the_figure() {
    let binary = workspace_binary("stage09", "stage09");
    let subject = Subject { binary: &binary, stage: stage(9).unwrap(), own: true, version: None };
    let note = run("memory-bound", &subject)
        .unwrap_or_else(|failure| panic!("{}", describe(&failure)))
        .expect("a note");
    println!("{note}");
    assert!(note.contains("this stage queues everything"), "{note}");
}
