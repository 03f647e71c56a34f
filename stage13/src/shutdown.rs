//! How Ctrl+C (SIGINT) and SIGTERM reach the event loop: the signal part of
//! the course's `main.c`.
//!
//! The C course destroys the core inside the signal handler. A handler may
//! run between any two instructions, even in the middle of `malloc()`, so
//! only async-signal-safe work belongs there. This handler does two such
//! things and nothing else:
//!
//! 1. it stores the signal number in an atomic, and
//! 2. it writes to an `eventfd`, the *wake-up fd*.
//!
//! The wake-up fd is attached to the loop like a socket, with the course's
//! `sigint_handler()` as its read callback (see `main.rs`). So a signal is
//! just one more ready fd: the loop notices it however busy it is, and the
//! callback asks the core to stop. The loop itself knows nothing about
//! signals.
//!
//! Two flags of `sigaction()` finish the job:
//!
//! * no `SA_RESTART`. In stage 7 this let a `send()` blocked on a client
//!   that never reads return `EINTR`, so the server could stop while stuck
//!   (Experiment 1). From stage 8 the sockets are non-blocking: no call
//!   waits for a client any more, and the loop notices the wake-up fd on
//!   its next round. The one call left that can block is the log's
//!   `write()` to a stalled pipe or terminal, which the logger retries
//!   when a signal cuts it short: the next flag is what gets the server
//!   out of that. No call here wants restarting, so the flag stays off;
//! * `SA_RESETHAND`: the handler runs once, then the signal's default
//!   action is back. If the shutdown itself hangs (the log is written to a
//!   pipe nobody reads, or to a terminal paused with Ctrl+S), a second
//!   Ctrl+C ends the process at once.

use crate::utils::xps_utils::check_os;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};

// ANCHOR: statics
/// The shutdown signal received so far, or 0 for none.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// The wake-up fd's number, for the handler; -1 until [`install`] runs.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

/// The wake-up fd itself. It stays open until the process ends, so the
/// number in [`WAKE_FD`] can never name some other file.
static WAKE: OnceLock<OwnedFd> = OnceLock::new();
// ANCHOR_END: statics

// ANCHOR: handler
/// The real signal handler: it records the signal and wakes the loop.
/// Everything it calls is async-signal-safe.
extern "C" fn record_signal(signum: libc::c_int) {
    // The handler may run between a failed call and the code that reads
    // that call's errno; leave errno as it was found.
    // SAFETY: __errno_location() only returns this thread's errno address.
    let errno = unsafe { libc::__errno_location() };
    // SAFETY: that address is valid for as long as the thread lives.
    let saved = unsafe { *errno };

    RECEIVED.store(signum, Ordering::SeqCst);
    let one: u64 = 1;
    // SAFETY: write() is async-signal-safe and reads 8 valid bytes. If it
    // fails (no fd yet, or the counter is full) there is nothing to do: a
    // full counter means the loop has been woken already.
    unsafe { libc::write(WAKE_FD.load(Ordering::SeqCst), (&raw const one).cast(), 8) };

    // SAFETY: as above, the address is this thread's errno.
    unsafe { *errno = saved };
}
// ANCHOR_END: handler

/// A signal that asks the server to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownSignal {
    /// SIGINT, sent by Ctrl+C in the terminal.
    Interrupt,
    /// SIGTERM, sent by `kill` and service managers.
    Terminate,
}

impl ShutdownSignal {
    /// The signal's usual name, for the log.
    pub fn name(self) -> &'static str {
        match self {
            ShutdownSignal::Interrupt => "SIGINT",
            ShutdownSignal::Terminate => "SIGTERM",
        }
    }
}

// ANCHOR: requested
/// The shutdown signal that has arrived, if any.
pub fn requested() -> Option<ShutdownSignal> {
    match RECEIVED.load(Ordering::SeqCst) {
        libc::SIGINT => Some(ShutdownSignal::Interrupt),
        libc::SIGTERM => Some(ShutdownSignal::Terminate),
        _ => None,
    }
}
// ANCHOR_END: requested

// ANCHOR: install
/// Creates the wake-up fd and installs the handler for SIGINT and SIGTERM.
/// Returns the fd for the caller to attach to the loop.
pub fn install() -> io::Result<RawFd> {
    let wake = match WAKE.get() {
        Some(wake) => wake,
        None => {
            // Non-blocking, so that reading it when nothing was written
            // returns at once; close-on-exec, as every fd should be.
            let flags = libc::EFD_NONBLOCK | libc::EFD_CLOEXEC;
            // SAFETY: eventfd() takes no pointers; the result is checked.
            let raw = check_os(unsafe { libc::eventfd(0, flags) })?;
            // SAFETY: `raw` is a new, valid fd that nothing else owns.
            WAKE.get_or_init(|| unsafe { OwnedFd::from_raw_fd(raw) })
        }
    };
    WAKE_FD.store(wake.as_raw_fd(), Ordering::SeqCst);

    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is a valid value (no flags, empty mask).
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = record_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // Once, then the default action again; and no SA_RESTART, so that
        // a blocked call returns EINTR (see the module's doc).
        action.sa_flags = libc::SA_RESETHAND;
        // SAFETY: `action` is fully initialised and its handler does only
        // async-signal-safe work; the old action is not asked for (null).
        check_os(unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) })?;
    }
    Ok(wake.as_raw_fd())
}
// ANCHOR_END: install

// ANCHOR: take
/// Empties the wake-up fd and returns the signal that wrote to it: what
/// `sigint_handler()` calls when the loop reports the fd readable.
pub fn take() -> Option<ShutdownSignal> {
    if let Some(wake) = WAKE.get() {
        let mut count = [0u8; 8];
        // SAFETY: `count` is 8 writable bytes, the size an eventfd read
        // needs. The fd is non-blocking; an error (nothing to read) is fine.
        unsafe { libc::read(wake.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
    }
    requested()
}
// ANCHOR_END: take
