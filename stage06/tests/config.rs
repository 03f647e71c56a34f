//! Flags and listeners that cannot be created.

use std::path::Path;

const STAGE: &str = env!("CARGO_BIN_EXE_stage06");

#[test]
fn port_in_use_others_serve() {
    shared::scenarios::port_in_use_others_serve(Path::new(STAGE));
}

#[test]
fn all_ports_in_use_exits() {
    shared::scenarios::all_ports_in_use_exits(Path::new(STAGE));
}

#[test]
fn bad_flags_exit_2() {
    shared::scenarios::bad_flags_exit_2(Path::new(STAGE));
}
