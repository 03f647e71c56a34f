//! The check of stage 13 on of the ports whose sessions have nothing
//! behind them (the third and fourth): a client there is heard, never
//! answered, and not closed. Stage 12, which refuses a file on the third
//! port and writes back on the fourth, fails it.

use crate::Options;
use crate::report::{Tally, report};
use shared::checks::session::{SILENCE, nothing_behind};
use shared::checks::{Check, Group, Run};
use std::net::SocketAddr;
use std::time::Instant;

/// `empty-sessions`, as `--list` and the report show it.
pub(crate) const EMPTY: Check = Check {
    name: "empty-sessions",
    about: "stage 13: the third and fourth ports hear a client and neither answer nor close it",
    group: Group::Sessions,
    run: Run::Binary(shared::checks::session::sessions),
};

/// Runs `empty-sessions` on `ports` (if `wanted`), counting it in `tally`.
pub(crate) fn run(
    ports: &[Vec<SocketAddr>],
    wanted: impl Fn(&str) -> bool,
    options: &Options,
    tally: &mut Tally,
) {
    if !wanted(EMPTY.name) {
        return;
    }
    let started = Instant::now();
    let outcome = ports.iter().try_for_each(|port| nothing_behind(port, SILENCE).map(drop));
    let outcome = outcome.map(|()| None);
    report(&EMPTY, &outcome, started.elapsed(), options);
    tally.count(&outcome);
}
