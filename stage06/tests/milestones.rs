//! Milestone 2 of stage 6: a client on each port, several clients on one
//! port, and a client that leaves while the others carry on.

use std::path::Path;

const STAGE: &str = env!("CARGO_BIN_EXE_stage06");

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
