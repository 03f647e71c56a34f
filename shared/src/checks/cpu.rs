//! The course tester's CPU check (from stage 9): one idle client, and the
//! server's CPU over a few seconds. A server that sleeps in `epoll_wait()`
//! while nobody talks uses none; stage 8's level-triggered `EPOLLOUT` wakes
//! it for the idle client without end.

use crate::checks::{Failure, Outcome, Target, ensure, secs};
use crate::procfs;
use crate::stages::Stage;
use std::time::{Duration, Instant};

/// How long the server's CPU is watched. The course's tester samples for
/// 30 s; a spinning loop shows within a second.
const WATCHED: Duration = Duration::from_secs(1);

/// Above this share of one core with one idle client, the server spins.
/// (The course's description says "under 10%".)
const SPINNING: f64 = 0.10;

/// One client connects, is answered once, and then says nothing: the
/// server must go back to sleep. Where the stage's row says it spins when
/// idle (stage 8), the spin is its Experiment 1, reported as a note.
pub fn idle_cpu(target: &Target, stage: &Stage) -> Outcome {
    let Some(pid) = target.pid else {
        return Ok(Some(
            "not run: the server's CPU can be read only on its own machine (run xps-check \
             there, against 127.0.0.1, or pass --pid)"
                .to_string(),
        ));
    };
    let mut client = target.connect(0)?;
    target.exchange(&mut client, b"hello\n")?;
    let cpu = |what: &str| {
        procfs::cpu_time(pid).map_err(|err| {
            Failure::new(format!("cannot read the CPU time of pid {pid} {what}: {err}"), "")
        })
    };
    let (before, started) = (cpu("before")?, Instant::now());
    std::thread::sleep(target.wait(WATCHED));
    let used = cpu("after")?.saturating_sub(before);
    let window = started.elapsed();
    let share = used.as_secs_f64() / window.as_secs_f64().max(0.001);
    let percent = share * 100.0;
    if stage.spins_when_idle {
        return Ok(Some(if share > SPINNING {
            format!(
                "{percent:.0}% of a core with one idle client: the spin of this stage's \
                 Experiment 1 (level-triggered EPOLLOUT); the next stage fixes it"
            )
        } else {
            format!("{percent:.0}% of a core with one idle client: no spin, ahead of the course")
        }));
    }
    ensure(
        share <= SPINNING,
        || format!("{percent:.0}% of a core over {} with one idle client", secs(window)),
        "an idle server must sleep in epoll_wait(): is an idle connection watched for EPOLLOUT \
         level-triggered (writable is true whenever there is nothing to send)? Or is a ready \
         flag never cleared on EAGAIN, so the loop waits with timeout 0?",
    )?;
    drop(client);
    Ok(None)
}
