//! eXpServer, stage 13: the session module.
//!
//! Until stage 12 the listener joined each client straight to what served
//! it. Here every client gets a *session* in between: five pipe ends of
//! its own, client ↔ session ↔ (upstream | file), holding one chunk each
//! way. The first port (8001) still proxies to the upstream and the second
//! (8002) still sends `sample.txt`, now through the session; the third and
//! fourth (8003, 8004) give each client a session with nothing behind it,
//! as the course leaves them. From stage 14 the session will choose what
//! serves a client from its HTTP request instead of its port.
//!
//! `main()` does what the course's `main.c` does: it creates a core and
//! starts it. Everything else lives in the modules:
//!
//! ```text
//! main.rs ── xps.rs                 constants, error codes, the handler type
//!  ├── core/xps_core.rs             the server: owns loop, listeners, connections, sessions, files, pipes
//!  ├── core/xps_loop.rs             epoll: attach, detach, run, handle_pipes
//!  ├── core/xps_pipe.rs             pipes, sources and sinks
//!  ├── core/xps_session.rs          a session between each client and its backend (new)
//!  ├── core/xps_slots.rs            tables with generation-checked ids (not in the course)
//!  ├── network/xps_listener.rs      listening sockets, accept, a session per client
//!  ├── network/xps_connection.rs    connections: source and sink handlers, recv, send
//!  ├── network/xps_upstream.rs      upstreams: a non-blocking connect()
//!  ├── disk/xps_file.rs             files served through a pipe, inside public
//!  ├── disk/xps_mime.rs             MIME types from file extensions
//!  ├── utils/xps_buffer.rs          buffers and buffer lists
//!  ├── utils/xps_logger.rs          the log
//!  ├── utils/xps_utils.rs           small helpers
//!  ├── cli.rs                       the flags (not in the course)
//!  └── shutdown.rs                  Ctrl+C and SIGTERM (main.c's signal part)
//! ```

#![deny(clippy::unwrap_used, clippy::expect_used)]

// ANCHOR: modules
mod cli;
mod core;
mod disk;
mod network;
mod shutdown;
mod utils;
mod xps;
// ANCHOR_END: modules

use crate::cli::{Command, Config};
use crate::core::xps_core::XpsCore;
use crate::core::xps_loop::EventCallbacks;
use crate::utils::xps_buffer::keep_free_memory_for_reuse;
use crate::utils::xps_logger::{LogLevel, flush_log};
use std::process::ExitCode;

// ANCHOR: main
/// Reads the flags, then creates and starts the core. The C version keeps
/// the core in a global so that its signal handler can destroy it; here the
/// signal reaches the core through the loop, so the core is an ordinary
/// local that `main()` owns.
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

/// Tunes the allocator (see `keep_free_memory_for_reuse`), creates the
/// core, attaches the signal handler's wake-up fd to its loop
/// and starts it. Whether the loop stopped on a signal or failed, the core
/// is then destroyed, which destroys every connection, listener and the
/// loop.
fn serve(config: &Config) -> ExitCode {
    keep_free_memory_for_reuse();
    let Ok(mut core) = XpsCore::create() else {
        // xps_core_create() has logged why.
        return ExitCode::FAILURE;
    };
    let watched = shutdown::install().and_then(|wake_fd| {
        let callbacks = EventCallbacks::Core { read_cb: sigint_handler };
        core.event_loop.attach(wake_fd, libc::EPOLLIN as u32, callbacks)
    });
    if let Err(err) = watched {
        logger!(LogLevel::Error, "main()", "cannot watch for SIGINT and SIGTERM: {err}");
        core.destroy();
        return ExitCode::FAILURE;
    }
    let started = core.start(config);
    core.destroy();
    match started {
        // Stopped by sigint_handler(), which has logged the signal.
        Ok(()) => ExitCode::SUCCESS,
        // No port could be opened, or epoll failed: the details are in the
        // log already; say why the server ends where errors go.
        Err(err) => {
            // The log's ERROR lines first, even when stdout and stderr go
            // to files: this line comes after them.
            flush_log();
            eprintln!("{}: {err}", env!("CARGO_PKG_NAME"));
            ExitCode::FAILURE
        }
    }
}
// ANCHOR_END: main

// ANCHOR: sigint_handler
/// The course's `sigint_handler()`, as the read callback of the wake-up fd:
/// the loop calls it once a shutdown signal has arrived. It reports the
/// signal and stops the core; `serve()` destroys the core when the loop
/// returns. The part that runs inside the signal itself is in
/// `shutdown.rs`.
fn sigint_handler(core: &mut XpsCore) {
    let Some(signal) = shutdown::take() else {
        // Woken with no signal recorded: nothing to do.
        return;
    };
    logger!(LogLevel::Warning, "sigint_handler()", "{} received", signal.name());
    core.stop();
}
// ANCHOR_END: sigint_handler
