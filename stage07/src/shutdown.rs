//! How Ctrl+C (SIGINT) and SIGTERM reach the event loop.
//!
//! The C course destroys the core inside the signal handler. A handler may
//! run between any two instructions, even in the middle of `malloc()`, so
//! only async-signal-safe work belongs there. Here the handler does a single
//! thing: it stores the signal number in an atomic. The rest of the program
//! looks at that atomic at safe points and shuts down normally.
//!
//! "Look at it at safe points" hides a trap: if the signal lands just after
//! the loop looked and just before it calls `epoll_wait()`, the loop sleeps
//! until the next client event, maybe forever. So the two signals are kept
//! *blocked* (held pending by the kernel) while the server works, and only
//! let in at two places where that race cannot happen:
//!
//! * inside `epoll_pwait()`, which unblocks them and waits in one atomic
//!   step, and returns `EINTR` when one arrives;
//! * in [`let_pending_in`], called by a `send()` that has been stalled for
//!   [`SEND_STALL_CHECK`](crate::xps::SEND_STALL_CHECK), so that Ctrl+C
//!   works even while a client that never reads keeps the server blocked.
//!
//! Not covered: a `write()` of the log to a stdout nobody reads (a pipe
//! into a pager that stopped, a terminal paused with Ctrl+S) blocks with
//! the signals held, and Ctrl+C waits until the output drains. Letting them
//! in around every log write would cost two system calls per message.

use crate::utils::xps_utils::check_os;
use std::io;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicI32, Ordering};

// ANCHOR: received
/// The shutdown signal received so far, or 0 for none.
static RECEIVED: AtomicI32 = AtomicI32::new(0);
// ANCHOR_END: received

// ANCHOR: handler
/// The real signal handler: async-signal-safe, it only records the signal.
extern "C" fn record_signal(signum: libc::c_int) {
    RECEIVED.store(signum, Ordering::SeqCst);
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

/// An empty signal set.
fn empty_set() -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset() initialises the set it is given a valid pointer to.
    unsafe { libc::sigemptyset(set.as_mut_ptr()) };
    // SAFETY: sigemptyset() above has initialised every byte of the set.
    unsafe { set.assume_init() }
}

/// The set {SIGINT, SIGTERM}.
fn shutdown_signals() -> libc::sigset_t {
    let mut set = empty_set();
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `set` is an initialised sigset_t and the signal is valid.
        unsafe { libc::sigaddset(&mut set, signal) };
    }
    set
}

// ANCHOR: install
/// Installs the handler for SIGINT and SIGTERM and blocks both, so that
/// they are delivered only where the server is ready for them.
///
/// The flags stay empty. (`SA_RESTART` would change nothing here: a handler
/// always makes `epoll_pwait()` fail with `EINTR`, restart flag or not, and
/// everywhere else the two signals are blocked.)
pub fn install() -> io::Result<()> {
    let blocked = shutdown_signals();
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is a valid value (no flags, empty mask).
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = record_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: `action` is fully initialised and its handler only touches
        // an atomic; the old action is not asked for (null pointer).
        check_os(unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) })?;
    }
    // SAFETY: `blocked` is an initialised set; the old mask is not needed.
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &blocked, std::ptr::null_mut()) };
    // pthread_sigmask() returns the error number instead of setting errno.
    match ret {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}
// ANCHOR_END: install

// ANCHOR: wait_mask
/// The signal mask to wait with: the current one minus SIGINT and SIGTERM.
/// `epoll_pwait()` switches to it only for as long as it sleeps.
pub fn wait_mask() -> libc::sigset_t {
    // Start from an initialised set: the kernel fills in only the part of
    // a sigset_t it uses (8 of its 128 bytes).
    let mut mask = empty_set();
    // SAFETY: with a null new set, pthread_sigmask() only writes the current
    // mask into the valid set it is given, and cannot fail.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask) };
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `mask` is an initialised sigset_t and the signal is valid.
        unsafe { libc::sigdelset(&mut mask, signal) };
    }
    mask
}
// ANCHOR_END: wait_mask

// ANCHOR: let_pending_in
/// Opens the door for a moment: a shutdown signal that arrived while it was
/// blocked runs its handler now. Afterwards [`requested`] tells if one came.
pub fn let_pending_in() {
    let set = shutdown_signals();
    // SAFETY: `set` is an initialised sigset_t; the old mask is not needed.
    // Unblocking delivers any pending signal before the call returns.
    unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
    // SAFETY: as above; this blocks the two signals again.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}
// ANCHOR_END: let_pending_in
