//! Faults, floods and hostile input (the shared robustness suite).

use std::path::Path;

const STAGE: &str = env!("CARGO_BIN_EXE_stage07");

#[test]
fn fd_exhaustion() {
    shared::robustness::fd_exhaustion(Path::new(STAGE));
}

#[test]
fn no_fd_leak() {
    shared::robustness::no_fd_leak(Path::new(STAGE));
}

#[test]
fn abrupt_clients() {
    shared::robustness::abrupt_clients(Path::new(STAGE));
}

#[test]
fn odd_data() {
    shared::robustness::odd_data(Path::new(STAGE));
}

#[test]
fn terminal_is_safe() {
    shared::robustness::terminal_is_safe(Path::new(STAGE));
}

#[test]
fn dead_peer_writes() {
    shared::robustness::dead_peer_writes(Path::new(STAGE));
}

#[test]
fn bad_configuration() {
    shared::robustness::bad_configuration(Path::new(STAGE));
}
