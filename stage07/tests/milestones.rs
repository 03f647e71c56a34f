//! Milestone 2 of stage 7, which repeats stage 6's: the server behaves
//! exactly as before the core and loop modules were added.

use std::path::Path;

const STAGE: &str = env!("CARGO_BIN_EXE_stage07");

#[test]
fn each_port_reverses() {
    shared::scenarios::each_port_reverses(Path::new(STAGE));
}

#[test]
fn clients_interleave_on_one_port() {
    shared::scenarios::clients_interleave_on_one_port(Path::new(STAGE));
}

#[test]
fn disconnect_and_carry_on() {
    shared::scenarios::disconnect_and_carry_on(Path::new(STAGE));
}
