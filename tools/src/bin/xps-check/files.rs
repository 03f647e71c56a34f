//! The file checks of stage 12 on, against a running server: its second
//! port sends the sample file to each client, its third refuses a file
//! outside `public`. Which sample: `--sample FILE`, by default the one in
//! this workspace's crate of the stage checked (`stage12/public/sample.txt`
//! for `--stage 12`), which is what `cargo run -p stage12` serves; give
//! yours when your server serves another.

use crate::Options;
use crate::report::{Tally, report};
use shared::checks::files::{outside_refused, sample_served};
use shared::checks::{Check, Failure, Group, Run};
use std::net::SocketAddr;
use std::time::Instant;

/// The sample `cargo run -p CRATE` serves, in this workspace.
fn default_sample(crate_name: &str) -> String {
    format!("{}/../{crate_name}/public/sample.txt", env!("CARGO_MANIFEST_DIR"))
}

/// `file-sample`, as `--list` and the report show it.
pub(crate) const SAMPLE: Check = Check {
    name: "file-sample",
    about: "official check (stage 12): the second port sends the sample file, whole, then closes",
    group: Group::Files,
    run: Run::Binary(shared::checks::files::files),
};

/// `file-outside`, likewise.
pub(crate) const OUTSIDE: Check = Check {
    name: "file-outside",
    about: "official check (stage 12): the third port refuses a file outside public, no byte",
    group: Group::Files,
    run: Run::Binary(shared::checks::files::files),
};

/// Runs the file checks (those `wanted` says): the sample on
/// `sample_port`, the refusal on `outside_port` (stage 12 only: `None`
/// from stage 13), counting them in `tally`.
pub(crate) fn run(
    sample_port: &[SocketAddr],
    outside_port: Option<&[SocketAddr]>,
    wanted: impl Fn(&str) -> bool,
    options: &Options,
    tally: &mut Tally,
) {
    if wanted(SAMPLE.name) {
        let started = Instant::now();
        let sample = match (&options.sample, options.stage) {
            (Some(sample), _) => sample.clone(),
            (None, Some(stage)) => default_sample(stage.crate_name),
            (None, None) => default_sample("stage12"),
        };
        let outcome = match std::fs::read(&sample) {
            Ok(sample) => sample_served(sample_port, &sample, options.timeout),
            Err(err) => Err(Failure::new(
                format!("cannot read the sample {sample}: {err}"),
                "give the file your server sends on its second port with --sample FILE",
            )),
        };
        report(&SAMPLE, &outcome, started.elapsed(), options);
        tally.count(&outcome);
    }
    if let Some(outside_port) = outside_port.filter(|_| wanted(OUTSIDE.name)) {
        let started = Instant::now();
        let outcome = outside_refused(outside_port, options.timeout);
        report(&OUTSIDE, &outcome, started.elapsed(), options);
        tally.count(&outcome);
    }
}
