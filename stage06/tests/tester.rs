//! The course's official automated checks for stage 6.

use std::path::Path;

const STAGE: &str = env!("CARGO_BIN_EXE_stage06");

#[test]
fn random_strings_on_every_port() {
    shared::scenarios::tester_random_strings(Path::new(STAGE));
}

#[test]
fn ten_clients_at_once() {
    shared::scenarios::tester_ten_clients(Path::new(STAGE));
}

#[test]
fn error_handling() {
    shared::scenarios::tester_error_handling(Path::new(STAGE));
}
