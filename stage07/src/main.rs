//! eXpServer, stage 7: the core and loop modules.
//!
//! `main()` does what the course's `main.c` does in this stage: it creates a
//! core and starts it. Everything else lives in the modules:
//!
//! ```text
//! main.rs ── xps.rs                 constants and the handler type
//!  ├── core/xps_core.rs             the server: owns loop, listeners, connections
//!  ├── core/xps_loop.rs             epoll: attach, detach, run
//!  ├── network/xps_listener.rs      listening sockets, accept
//!  ├── network/xps_connection.rs    clients: recv, reverse, send
//!  ├── utils/xps_logger.rs          the log
//!  ├── utils/xps_utils.rs           small helpers
//!  ├── cli.rs                       the flags (not in the course)
//!  └── shutdown.rs                  Ctrl+C and SIGTERM (main.c's signal part)
//! ```

#![deny(clippy::unwrap_used, clippy::expect_used)]

// ANCHOR: modules
mod cli;
mod core;
mod network;
mod shutdown;
mod utils;
mod xps;
// ANCHOR_END: modules

use crate::cli::{Command, Config};
use crate::core::xps_core::XpsCore;
use crate::shutdown::ShutdownSignal;
use crate::utils::xps_logger::{LogLevel, flush_log};
use std::process::ExitCode;

// ANCHOR: main
/// Reads the flags, installs the signal handling, then creates and starts
/// the core. The C version keeps the core in a global so that its signal
/// handler can destroy it; here the handler only sets a flag, so the core is
/// an ordinary local that `main()` owns.
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

/// Installs the signal handling, then creates the core and starts it;
/// when the loop returns, destroys the core.
fn serve(config: &Config) -> ExitCode {
    if let Err(err) = shutdown::install() {
        logger!(LogLevel::Error, "main()", "cannot install the signal handlers: {err}");
        return ExitCode::FAILURE;
    }

    let Ok(mut core) = XpsCore::create() else {
        // xps_core_create() has logged why.
        return ExitCode::FAILURE;
    };
    match core.start(&config.host, &config.ports) {
        Ok(()) => {
            let signal = shutdown::requested().unwrap_or(ShutdownSignal::Interrupt);
            sigint_handler(core, signal);
            ExitCode::SUCCESS
        }
        Err(err) => {
            logger!(LogLevel::Error, "main()", "{err}");
            core.destroy();
            eprintln!("{}: {err}", env!("CARGO_PKG_NAME"));
            ExitCode::FAILURE
        }
    }
}
// ANCHOR_END: main

// ANCHOR: sigint_handler
/// What the course's `sigint_handler()` does, run once the loop has
/// returned: report the signal and destroy the core, which destroys every
/// connection, listener and the loop. The part that really runs inside the
/// signal is in `shutdown.rs`, and only sets a flag.
fn sigint_handler(core: XpsCore, signal: ShutdownSignal) {
    logger!(LogLevel::Warning, "sigint_handler()", "{} received", signal.name());
    core.destroy();
}
// ANCHOR_END: sigint_handler
