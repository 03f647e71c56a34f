//! The core: `xps_core.c`. One `XpsCore` is one running server; it owns the
//! loop, every listener, connection, session, file and pipe, and the pipes'
//! sources and sinks, so destroying it cleans up all.

use crate::cli::Config;
use crate::core::xps_loop::XpsLoop;
use crate::core::xps_pipe::{XpsPipe, XpsPipeSink, XpsPipeSource};
use crate::core::xps_session::{XpsSession, xps_session_destroy};
use crate::core::xps_slots::Slots;
use crate::disk::xps_file::{XpsFile, xps_file_destroy};
use crate::logger;
use crate::network::xps_connection::{ConnectionId, XpsConnection};
use crate::network::xps_listener::{PortRole, XpsListener};
use crate::utils::xps_logger::LogLevel;
use crate::xps::DEFAULT_BUFFER_SIZE;
use std::collections::VecDeque;
use std::io;
use std::time::Instant;

// ANCHOR: xps_core
/// The server itself: `xps_core_t` in C.
///
/// ```text
///                               XpsCore
///    ┌──────────┬──────────┬────────┬──┴─────┬────────┬─────────┬────────┐
/// event_loop listeners connections sessions files   pipes    sources   sinks
///             (Slots)    (Slots)   (Slots) (Slots) (Slots)  (Slots)  (Slots)
/// ```
///
/// The core owns every listener, connection, session, file, pipe, source
/// and sink, each in
/// a slot of a [`Slots`] table: the course's lists of pointers. Destroying
/// one empties its slot (the course's "set the pointer to NULL").
/// Everything else names them by id (`ListenerId`, `ConnectionId`,
/// `SessionId`, `FileId`, `PipeId`, `SourceId`, `SinkId`): a loop event, a
/// connection its listener and its two ends, a session its client, its
/// backend and its five ends, a pipe its ends, an end its pipe and its
/// owner. An id
/// carries its slot's generation, so the id of an object destroyed never
/// finds the one that takes its slot next.
///
/// The C core also counts the NULL entries of each list
/// (`n_null_listeners`, `n_null_connections`, `n_null_pipes`, and from
/// this stage `n_null_sessions`), to compact the lists once there are too
/// many. A
/// `Slots` table refills its empty slots instead, so it needs neither the
/// count nor the compaction.
pub struct XpsCore {
    /// The event loop that drives everything.
    pub event_loop: XpsLoop,
    /// Every listener (the course's `listeners`).
    pub listeners: Slots<XpsListener>,
    /// Every connection (the course's `connections`).
    pub connections: Slots<XpsConnection>,
    /// Every session (the course's `sessions`, new in stage 13).
    pub sessions: Slots<XpsSession>,
    /// Every file being served (new in stage 12; the course keeps no list
    /// of them: each is reached only through its source's `ptr`).
    pub files: Slots<XpsFile>,
    /// Every pipe (the course's `pipes`, new in stage 10).
    pub pipes: Slots<XpsPipe>,
    /// The sources of the pipes: in C each owner allocates its own; here
    /// the core keeps them, and owners hold their ids.
    pub sources: Slots<XpsPipeSource>,
    /// The sinks of the pipes, likewise.
    pub sinks: Slots<XpsPipeSink>,
    /// The clients waiting to be closed until their request has come, with
    /// the time their wait ends, oldest first (not in the course; see
    /// `close_or_linger` in xps_connection.rs).
    pub lingering: VecDeque<(Instant, ConnectionId)>,
    /// The buffer every `recv()` reads into. In C it sits on the stack of the
    /// read handler; one buffer owned by the core serves every connection
    /// without costing 100 KB each.
    pub buffer: Box<[u8]>,
    /// True from [`XpsCore::start`] until [`XpsCore::stop`]: the loop runs
    /// while it is set. (The C core has no such field: its signal handler
    /// destroys the core and exits in the middle of the loop.)
    pub running: bool,
}
// ANCHOR_END: xps_core

impl XpsCore {
    // ANCHOR: create
    /// `xps_core_create()`: a core with its loop and no listeners or
    /// connections yet.
    pub fn create() -> io::Result<XpsCore> {
        let event_loop = XpsLoop::create().inspect_err(|err| {
            logger!(LogLevel::Error, "xps_core_create()", "xps_loop_create() failed: {err}")
        })?;
        let core = XpsCore {
            event_loop,
            listeners: Slots::default(),
            connections: Slots::default(),
            sessions: Slots::default(),
            files: Slots::default(),
            pipes: Slots::default(),
            sources: Slots::default(),
            sinks: Slots::default(),
            lingering: VecDeque::new(),
            buffer: vec![0; DEFAULT_BUFFER_SIZE].into_boxed_slice(),
            running: false,
        };
        logger!(LogLevel::Debug, "xps_core_create()", "created core");
        Ok(core)
    }
    // ANCHOR_END: create

    // ANCHOR: destroy
    /// `xps_core_destroy()`: destroys every session (with its five ends),
    /// every connection (with its source and sink), every file, then every
    /// pipe, then every listener, then the loop.
    /// Taking `self` by value means nothing can use the core afterwards.
    pub fn destroy(mut self) {
        for id in self.sessions.ids() {
            xps_session_destroy(&mut self, id);
        }
        for id in self.connections.ids() {
            XpsConnection::destroy(&mut self, id);
        }
        for id in self.files.ids() {
            xps_file_destroy(&mut self, id);
        }
        // Their owners gone, the pipes have no ends left; what they still
        // hold is freed with them.
        for id in self.pipes.ids() {
            XpsPipe::destroy(&mut self, id);
        }
        for id in self.listeners.ids() {
            XpsListener::destroy(&mut self, id);
        }
        self.event_loop.destroy();
        logger!(LogLevel::Debug, "xps_core_destroy()", "destroyed core");
    }
    // ANCHOR_END: destroy

    // ANCHOR: start
    /// `xps_core_start()`: creates a listener on each port, then runs the
    /// loop until something calls [`XpsCore::stop`] (the `sigint_handler()`
    /// callback, when a shutdown signal arrives). Each port has its role
    /// from its place in the list, as the course's ports have: the first
    /// forwards its clients to the upstream (8001), the second serves the
    /// sample file (8002), and the others have nothing behind their
    /// sessions (8003, 8004).
    ///
    /// Returns `Ok` once stopped that way. A port that cannot be listened on
    /// is logged and skipped; if none can, or if the loop fails, this
    /// returns the error instead.
    pub fn start(&mut self, config: &Config) -> io::Result<()> {
        // The course tags this line `xps_start()`, an older name of the
        // function; the Rust log uses the function's real name.
        logger!(LogLevel::Debug, "xps_core_start()", "starting core");
        let mut n_listening = 0;
        for (index, &port) in config.ports.iter().enumerate() {
            let role = PortRole::of_port(index, config);
            // A failure has been logged by xps_listener_create() itself.
            if let Ok(id) = XpsListener::create(self, &config.host, port, role)
                && let Some(listener) = self.listeners.get(id)
            {
                // What the port does first, then that it listens: a reader
                // of the log (a test) that has seen every port listen has
                // seen their roles too.
                let what = listener.role.describe();
                logger!(LogLevel::Info, "xps_core_start()", "port {} {what}", listener.port);
                // With port 0 the OS chose the port: log the real one.
                logger!(
                    LogLevel::Info,
                    "xps_core_start()",
                    "Server listening on port {}",
                    listener.port
                );
                n_listening += 1;
            }
        }
        if n_listening == 0 {
            let ports: Vec<String> = config.ports.iter().map(u16::to_string).collect();
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!(
                    "could not listen on {} port {} (the log says why)",
                    config.host,
                    ports.join(", ")
                ),
            ));
        }
        self.running = true;
        XpsLoop::run(self)
    }
    // ANCHOR_END: start

    // ANCHOR: stop
    /// Asks the loop to return once the callback that called this is done.
    pub fn stop(&mut self) {
        self.running = false;
    }
    // ANCHOR_END: stop
}
