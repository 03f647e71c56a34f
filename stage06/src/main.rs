//! eXpServer, stage 6: the listener and connection modules.
//!
//! Listeners and connections have modules of their own now, but the event
//! loop and the lists that hold them still live here, in `main.rs`:
//!
//! ```text
//! main.rs                          the loop (create, attach, detach, run)
//!  │                               and the LISTENERS / CONNECTIONS lists
//!  ├── xps.rs                      constants, temporary declarations
//!  ├── network/xps_listener.rs     listening sockets, accept
//!  ├── network/xps_connection.rs   clients: recv, reverse, send
//!  ├── utils/xps_logger.rs         the log
//!  ├── utils/xps_utils.rs          small helpers
//!  └── cli.rs                      the flags (not in the course)
//! ```
//!
//! There is no signal handling in this stage, as in the course: Ctrl+C ends
//! the process at once and the kernel closes its sockets.

#![deny(clippy::unwrap_used, clippy::expect_used)]

// ANCHOR: modules
mod cli;
mod network;
mod utils;
mod xps;
// ANCHOR_END: modules

use crate::cli::{Command, Config};
use crate::network::xps_connection::{XpsConnection, xps_connection_read_handler};
use crate::network::xps_listener::{XpsListener, xps_listener_connection_handler};
use crate::utils::xps_logger::{LogLevel, flush_log};
use crate::utils::xps_utils::check_os;
use crate::xps::MAX_EPOLL_EVENTS;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::ExitCode;
use std::sync::{Mutex, MutexGuard};

// ANCHOR: globals
// The two global lists of the C `main.c`. A Rust global must be safe to use
// from any thread, so a mutable one has to sit behind a lock: `static mut`
// would need `unsafe` at every use. This server has a single thread, so the
// lock is never contended; it is simply the price Rust puts on global
// state, and one reason stage 7 moves these lists into a core it owns.

/// Every listener, by id; `None` where one was destroyed.
pub static LISTENERS: Mutex<Vec<Option<XpsListener>>> = Mutex::new(Vec::new());

/// Every connection, by id; `None` where one was destroyed.
pub static CONNECTIONS: Mutex<Vec<Option<XpsConnection>>> = Mutex::new(Vec::new());

/// Locks one of the global lists. A lock is only "poisoned" if a thread
/// panicked while holding it; the list itself is still usable.
pub fn lock<T>(list: &Mutex<T>) -> MutexGuard<'_, T> {
    list.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
// ANCHOR_END: globals

// ANCHOR: main
/// Reads the flags, creates the loop and a listener on each port, then runs
/// the loop. It never returns on its own; Ctrl+C ends the process.
fn main() -> ExitCode {
    let config = match cli::parse(std::env::args_os().skip(1)) {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help) => {
            println!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("{} {}", env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("{}: {message}\n\n{}", env!("CARGO_PKG_NAME"), cli::USAGE);
            return ExitCode::from(2);
        }
    };
    let status = serve(&config);
    // Whatever the log has gathered goes out before the process ends.
    flush_log();
    status
}

/// Creates the loop and a listener on each port, then runs the loop.
fn serve(config: &Config) -> ExitCode {
    let Ok(epoll_fd) = xps_loop_create() else {
        // xps_loop_create() has logged why.
        return ExitCode::FAILURE;
    };
    let mut n_listening = 0;
    for &port in &config.ports {
        // A failure has been logged by xps_listener_create() itself.
        if let Ok(id) = XpsListener::create(epoll_fd.as_raw_fd(), &config.host, port)
            && let Some(listener) = &lock(&LISTENERS)[id]
        {
            // With port 0 the OS chose the port: log the real one.
            logger!(LogLevel::Info, "main()", "Server listening on port {}", listener.port);
            n_listening += 1;
        }
    }
    if n_listening == 0 {
        let ports: Vec<String> = config.ports.iter().map(u16::to_string).collect();
        let message = format!(
            "could not listen on {} port {} (the log says why)",
            config.host,
            ports.join(", ")
        );
        // Each port's ERROR is in the log; why the server ends goes where
        // errors go, once, after the log's lines even when stdout and
        // stderr go to files.
        flush_log();
        eprintln!("{}: {message}", env!("CARGO_PKG_NAME"));
        return ExitCode::FAILURE;
    }

    // Only an epoll failure ends the loop; it has been logged.
    let _ = xps_loop_run(epoll_fd.as_raw_fd());
    ExitCode::FAILURE
}
// ANCHOR_END: main

// ANCHOR: loop_create
/// `xps_loop_create()`: the epoll instance. In this stage the "loop" is
/// nothing more than its file descriptor.
fn xps_loop_create() -> io::Result<OwnedFd> {
    // SAFETY: epoll_create1() takes no pointers; the result is checked.
    let raw = check_os(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) }).inspect_err(|err| {
        logger!(LogLevel::Error, "xps_loop_create()", "epoll_create1() failed: {err}")
    })?;
    // SAFETY: `raw` is a new, valid fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}
// ANCHOR_END: loop_create

// ANCHOR: attach_detach
/// `xps_loop_attach()`: starts watching `fd` for `events` (such as
/// `EPOLLIN`). epoll will hand the fd itself back with each event.
pub fn xps_loop_attach(epoll_fd: RawFd, fd: RawFd, events: u32) -> io::Result<()> {
    let mut request = libc::epoll_event { events, u64: fd as u64 };
    // SAFETY: `request` is a valid epoll_event that outlives the call.
    check_os(unsafe { libc::epoll_ctl(epoll_fd, libc::EPOLL_CTL_ADD, fd, &mut request) })
        .inspect_err(|err| {
            logger!(LogLevel::Error, "xps_loop_attach()", "epoll_ctl(ADD) of fd {fd} failed: {err}")
        })?;
    Ok(())
}

/// `xps_loop_detach()`: stops watching `fd`.
pub fn xps_loop_detach(epoll_fd: RawFd, fd: RawFd) -> io::Result<()> {
    // SAFETY: EPOLL_CTL_DEL ignores the event pointer, so null is allowed.
    check_os(unsafe { libc::epoll_ctl(epoll_fd, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) })
        .inspect_err(|err| {
        logger!(LogLevel::Error, "xps_loop_detach()", "epoll_ctl(DEL) of fd {fd} failed: {err}")
    })?;
    Ok(())
}
// ANCHOR_END: attach_detach

// ANCHOR: loop_run
/// `xps_loop_run()`: waits for events and, for each ready fd, finds out who
/// owns it by searching the listeners, then the connections. That search,
/// repeated for every event, is what stage 7 replaces with callbacks.
fn xps_loop_run(epoll_fd: RawFd) -> io::Result<()> {
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; MAX_EPOLL_EVENTS];
    loop {
        logger!(LogLevel::Debug, "xps_loop_run()", "epoll wait");
        // Nothing may sit in the log's buffer while we sleep.
        flush_log();
        // SAFETY: the buffer holds MAX_EPOLL_EVENTS events and outlives the call.
        let n_events =
            unsafe { libc::epoll_wait(epoll_fd, events.as_mut_ptr(), MAX_EPOLL_EVENTS as i32, -1) };
        let n_events = match check_os(n_events) {
            Ok(n) => n as usize,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                logger!(LogLevel::Error, "xps_loop_run()", "epoll_wait() failed: {err}");
                return Err(err);
            }
        };
        logger!(LogLevel::Debug, "xps_loop_run()", "epoll wait over");

        for event in &events[..n_events] {
            let fd = event.u64 as RawFd;
            let listener = position_of(&lock(&LISTENERS), |l| l.socket.as_raw_fd() == fd);
            if let Some(id) = listener {
                logger!(LogLevel::Debug, "xps_loop_run()", "event on listener fd {fd}");
                xps_listener_connection_handler(id);
                continue;
            }
            let connection = position_of(&lock(&CONNECTIONS), |c| c.socket.as_raw_fd() == fd);
            if let Some(id) = connection {
                logger!(LogLevel::Debug, "xps_loop_run()", "event on connection fd {fd}");
                xps_connection_read_handler(id);
            }
            // Neither: nobody owns this fd. Not possible in this stage, where
            // a handler only ever destroys its own connection and epoll
            // reports each fd once per wait. Once one handler can destroy
            // another object, an event left in the round for that object's
            // fd lands here, or, if the fd was already reused, at the new
            // owner: the search cannot tell. Stage 7's loop can.
        }
    }
}

/// The index of the first live entry of `list` that `is_owner` accepts.
fn position_of<T>(list: &[Option<T>], is_owner: impl Fn(&T) -> bool) -> Option<usize> {
    list.iter().position(|entry| entry.as_ref().is_some_and(&is_owner))
}
// ANCHOR_END: loop_run
