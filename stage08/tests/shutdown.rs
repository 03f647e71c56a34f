//! Stage 7's graceful shutdown, unchanged in stage 8: SIGINT or SIGTERM
//! destroys the core, and with it every connection, listener and the loop,
//! then exits 0, whether the server is idle or busy; a second Ctrl+C ends a
//! shutdown that hangs. (Shutdown during a flood that is never read is in
//! milestone.rs.)

use shared::shutdown;
use std::path::Path;

const STAGE: &str = env!("CARGO_BIN_EXE_stage08");

#[test]
fn sigint_with_50_idle_connections() {
    shutdown::with_idle_connections(Path::new(STAGE), libc::SIGINT);
}

#[test]
fn sigterm_with_50_idle_connections() {
    shutdown::with_idle_connections(Path::new(STAGE), libc::SIGTERM);
}

#[test]
fn sigint_while_clients_stream_without_pause() {
    shutdown::while_streaming(Path::new(STAGE));
}

#[test]
fn sigterm_while_100_clients_ping_pong() {
    shutdown::while_ping_ponging(Path::new(STAGE));
}

#[test]
fn second_sigint_ends_a_hung_shutdown() {
    shutdown::second_signal_ends_a_hung_shutdown(Path::new(STAGE));
}
