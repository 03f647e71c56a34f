//! The core: `xps_core.c`. One `XpsCore` is one running server; it owns the
//! loop, every listener, connection and pipe, and the pipes' sources and
//! sinks, so destroying it cleans up all.

use crate::core::xps_loop::XpsLoop;
use crate::core::xps_pipe::{XpsPipe, XpsPipeSink, XpsPipeSource};
use crate::core::xps_slots::Slots;
use crate::logger;
use crate::network::xps_connection::XpsConnection;
use crate::network::xps_listener::XpsListener;
use crate::utils::xps_logger::LogLevel;
use crate::xps::DEFAULT_BUFFER_SIZE;
use std::io;

// ANCHOR: xps_core
/// The server itself: `xps_core_t` in C.
///
/// ```text
///                          XpsCore
///    ┌──────────┬─────────────┼──────────┬─────────┬─────────┐
/// event_loop listeners[] connections[] pipes   sources   sinks
/// ```
///
/// Listeners and connections live in lists of slots. Destroying one empties
/// its slot (the course's "set the pointer to NULL") instead of removing it,
/// because the position in the list is the `ptr` its loop event carries.
///
/// Pipes, sources and sinks name each other, so they live in [`Slots`]
/// tables, whose ids carry a generation: an id of something destroyed
/// never finds what later took its slot (see xps_slots.rs).
pub struct XpsCore {
    /// The event loop that drives everything.
    pub event_loop: XpsLoop,
    /// Every listener, by id; `None` where one was destroyed.
    pub listeners: Vec<Option<XpsListener>>,
    /// Every connection, by id; `None` where one was destroyed.
    pub connections: Vec<Option<XpsConnection>>,
    /// How many entries of `listeners` are `None`.
    pub n_null_listeners: usize,
    /// How many entries of `connections` are `None`.
    pub n_null_connections: usize,
    /// Every pipe (new in stage 10). The course also counts their NULL
    /// entries (`n_null_pipes`); a `Slots` table reuses them instead.
    pub pipes: Slots<XpsPipe>,
    /// The sources of the pipes: in C each owner allocates its own; here
    /// the core keeps them, and owners hold their ids.
    pub sources: Slots<XpsPipeSource>,
    /// The sinks of the pipes, likewise.
    pub sinks: Slots<XpsPipeSink>,
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
            listeners: Vec::new(),
            connections: Vec::new(),
            n_null_listeners: 0,
            n_null_connections: 0,
            pipes: Slots::default(),
            sources: Slots::default(),
            sinks: Slots::default(),
            buffer: vec![0; DEFAULT_BUFFER_SIZE].into_boxed_slice(),
            running: false,
        };
        logger!(LogLevel::Debug, "xps_core_create()", "created core");
        Ok(core)
    }
    // ANCHOR_END: create

    // ANCHOR: destroy
    /// `xps_core_destroy()`: destroys every connection (with its source
    /// and sink), then every pipe, then every listener, then the loop.
    /// Taking `self` by value means nothing can use the core afterwards.
    pub fn destroy(mut self) {
        for id in 0..self.connections.len() {
            if self.connections[id].is_some() {
                XpsConnection::destroy(&mut self, id);
            }
        }
        // Their owners gone, the pipes have no ends left; what they still
        // hold is freed with them.
        for id in self.pipes.ids() {
            XpsPipe::destroy(&mut self, id);
        }
        for id in 0..self.listeners.len() {
            if self.listeners[id].is_some() {
                XpsListener::destroy(&mut self, id);
            }
        }
        self.event_loop.destroy();
        logger!(LogLevel::Debug, "xps_core_destroy()", "destroyed core");
    }
    // ANCHOR_END: destroy

    // ANCHOR: start
    /// `xps_core_start()`: creates a listener on each port, then runs the
    /// loop until something calls [`XpsCore::stop`] (the `sigint_handler()`
    /// callback, when a shutdown signal arrives).
    ///
    /// Returns `Ok` once stopped that way. A port that cannot be listened on
    /// is logged and skipped; if none can, or if the loop fails, this
    /// returns the error instead.
    pub fn start(&mut self, host: &str, ports: &[u16]) -> io::Result<()> {
        // The course tags this line `xps_start()`, an older name of the
        // function; the Rust log uses the function's real name.
        logger!(LogLevel::Debug, "xps_core_start()", "starting core");
        let mut n_listening = 0;
        for &port in ports {
            // A failure has been logged by xps_listener_create() itself.
            if let Ok(id) = XpsListener::create(self, host, port)
                && let Some(listener) = &self.listeners[id]
            {
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
            let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!(
                    "could not listen on {host} port {} (see the errors above)",
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

    // ANCHOR: slots
    /// Stores a new listener and returns its id.
    pub fn add_listener(&mut self, listener: XpsListener) -> usize {
        store_in_slot(&mut self.listeners, &mut self.n_null_listeners, listener)
    }

    /// Stores a new connection and returns its id.
    pub fn add_connection(&mut self, connection: XpsConnection) -> usize {
        store_in_slot(&mut self.connections, &mut self.n_null_connections, connection)
    }

    /// The id the next [`XpsCore::add_connection`] will give: a connection
    /// creates its source and sink, which name it, before it is stored.
    pub fn next_connection_id(&self) -> usize {
        next_slot(&self.connections, self.n_null_connections)
    }
}

/// Where [`store_in_slot`] will put the next item.
fn next_slot<T>(slots: &[Option<T>], n_null: usize) -> usize {
    if n_null > 0 {
        slots.iter().position(Option::is_none).unwrap_or(slots.len())
    } else {
        slots.len()
    }
}

/// Puts `item` in the first empty slot, or at the end if there is none.
///
/// The course compacts its lists once they hold too many NULLs. Compacting
/// would move live entries and change the ids their loop events carry, so
/// the Rust port reuses empty slots instead: the lists never grow beyond the
/// largest number of listeners or connections open at one time.
fn store_in_slot<T>(slots: &mut Vec<Option<T>>, n_null: &mut usize, item: T) -> usize {
    let id = next_slot(slots, *n_null);
    if id < slots.len() {
        slots[id] = Some(item);
        *n_null -= 1;
    } else {
        slots.push(Some(item));
    }
    id
}

/// Empties slot `id` and counts it, returning what it held.
pub fn take_from_slot<T>(slots: &mut [Option<T>], n_null: &mut usize, id: usize) -> Option<T> {
    let item = slots.get_mut(id)?.take()?;
    *n_null += 1;
    Some(item)
}
// ANCHOR_END: slots

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_slots_are_reused_and_counted() {
        let mut slots = Vec::new();
        let mut n_null = 0;
        assert_eq!(store_in_slot(&mut slots, &mut n_null, 'a'), 0);
        assert_eq!(store_in_slot(&mut slots, &mut n_null, 'b'), 1);
        assert_eq!(store_in_slot(&mut slots, &mut n_null, 'c'), 2);
        assert_eq!(take_from_slot(&mut slots, &mut n_null, 1), Some('b'));
        assert_eq!(take_from_slot(&mut slots, &mut n_null, 1), None);
        assert_eq!(n_null, 1);
        assert_eq!(store_in_slot(&mut slots, &mut n_null, 'd'), 1);
        assert_eq!(n_null, 0);
        assert_eq!(slots, vec![Some('a'), Some('d'), Some('c')]);
        assert_eq!(store_in_slot(&mut slots, &mut n_null, 'e'), 3);
    }
}
