//! The loop between events: it sleeps in `epoll_wait()` until something
//! happens, and Ctrl+C wakes it from there.

use shared::checks::shutdown::SHUTDOWN_LIMIT;
use shared::client::IO_TIMEOUT;
use shared::harness::binary_under_test;
use shared::procfs;
use shared::server::Server;
use shared::wait::wait_until;
use std::path::PathBuf;
use std::time::Duration;

/// The binary under test: this stage's, or the one `XPS_BIN` names (a
/// learner's exercise, say).
fn stage_binary() -> PathBuf {
    binary_under_test(env!("CARGO_BIN_EXE_stage07")).0
}

/// With no client, the loop waits with no time limit (`-1`): one
/// `epoll wait` line, then nothing until something happens. A timeout of
/// 0 would spin; any other would wake it for nothing.
#[test]
fn with_no_client_the_loop_sleeps() {
    let server = Server::start(&stage_binary(), 1);
    let settled = wait_until(IO_TIMEOUT, || {
        let before = server.count("epoll wait");
        std::thread::sleep(Duration::from_millis(100));
        before >= 1 && server.count("epoll wait") == before
    });
    assert!(settled, "the loop never settled into a wait:\n{}", server.stdout());
    let waits = server.count("epoll wait");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.count("epoll wait"), waits, "the loop woke with nothing to do");
}

/// Ctrl+C while the loop sleeps in `epoll_wait()` interrupts the wait:
/// `EINTR` is no error, the loop goes round, finds the wake-up fd and the
/// server exits 0.
#[test]
fn ctrl_c_during_a_wait_exits_0() {
    let server = Server::start(&stage_binary(), 1);
    let pid = server.process.pid();
    let asleep = wait_until(IO_TIMEOUT, || procfs::asleep_in_epoll_wait(pid).unwrap_or(false));
    assert!(asleep, "the server never slept in epoll_wait():\n{}", server.stdout());
    let exited = server.stop(libc::SIGINT, SHUTDOWN_LIMIT * 4);
    assert_eq!(exited.status.code(), Some(0), "{exited:?}");
    assert_eq!(exited.count("SIGINT received"), 1, "{}", exited.stdout);
    assert_eq!(exited.count("epoll_wait() failed"), 0, "{}", exited.stdout);
}
