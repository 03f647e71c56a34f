//! The event loop: `xps_loop.c`. It watches file descriptors with epoll and
//! calls the callbacks attached to each one: when it becomes readable, when
//! it becomes writable, and when it reports an error or a hang-up.
//!
//! From stage 9 the sockets are watched edge-triggered: a callback only
//! notes that a connection's source or sink is ready, and, from stage 10,
//! [`XpsLoop::handle_pipes`] moves the bytes through the pipes, pass after
//! pass, until nothing is ready.
//!
//! All the epoll system calls of the server are in this file.

use crate::core::xps_core::XpsCore;
use crate::core::xps_pipe::{PipeId, XpsPipe};
use crate::logger;
use crate::network::xps_connection::{ConnectionId, close_lingering, linger_timeout_ms};
use crate::network::xps_listener::ListenerId;
use crate::utils::xps_logger::{LogLevel, flush_log};
use crate::utils::xps_utils::check_os;
use crate::xps::{MAX_EPOLL_EVENTS, XpsHandler};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

// ANCHOR: loop_event
/// What the loop knows about one attached fd: `loop_event_t` in C.
///
/// It is private to the loop module, as in the course. It is neither
/// `Clone` nor `Copy`: the one value lives in its slot, and dispatch copies
/// out only the callbacks it needs.
#[derive(Debug)]
struct LoopEvent {
    /// The file descriptor being watched.
    fd: RawFd,
    /// What to call when `fd` is readable, writable or fails, and for
    /// which object: the course's `read_cb`, `write_cb`, `close_cb` and
    /// `ptr`.
    callbacks: EventCallbacks,
}
// ANCHOR_END: loop_event

// ANCHOR: callbacks
/// The callbacks of one event and the object they are for: the course's
/// `read_cb`, `write_cb`, `close_cb` and `ptr`, kept together.
///
/// In C, `ptr` is a `void *` that each callback casts to the type it
/// expects, and nothing stops a listener's callback from being handed a
/// connection. Here each kind of object has a variant whose callbacks take
/// that kind's id, so a callback is only ever called with the kind of
/// object it was written for.
///
/// Stage 8 adds `write_cb` and `close_cb`, for connections. A listener has
/// neither (in C they are NULL): its variant has no field for them.
#[derive(Debug, Clone, Copy)]
pub enum EventCallbacks {
    /// A listening socket, and the listener it belongs to.
    Listener {
        /// The listener's id.
        ptr: ListenerId,
        /// Called when clients are waiting to be accepted.
        read_cb: XpsHandler<ListenerId>,
    },
    /// A client's socket, and its connection.
    Connection {
        /// The connection's id.
        ptr: ConnectionId,
        /// Called when the client has sent something, or has gone (the
        /// next `recv()` says which).
        read_cb: XpsHandler<ConnectionId>,
        /// Called when the socket is writable.
        write_cb: XpsHandler<ConnectionId>,
        /// Called when the socket reports an error (`EPOLLERR`) or a
        /// hang-up (`EPOLLHUP`) with nothing left to read; with bytes to
        /// read, `read_cb` is called instead and meets the error itself.
        close_cb: XpsHandler<ConnectionId>,
    },
    /// An fd of the core's own, with no object behind it: the wake-up fd
    /// that brings a shutdown signal to the loop (see shutdown.rs).
    Core {
        /// Called when the fd is readable.
        read_cb: fn(&mut XpsCore),
    },
}

impl EventCallbacks {
    /// Calls the read callback, with its object's id.
    fn read(self, core: &mut XpsCore) {
        match self {
            EventCallbacks::Listener { ptr, read_cb } => read_cb(core, ptr),
            EventCallbacks::Connection { ptr, read_cb, .. } => read_cb(core, ptr),
            EventCallbacks::Core { read_cb } => read_cb(core),
        }
    }

    /// Calls the write callback, if there is one.
    fn write(self, core: &mut XpsCore) {
        if let EventCallbacks::Connection { ptr, write_cb, .. } = self {
            write_cb(core, ptr);
        }
    }

    /// Calls the close callback, if there is one. (A listener and the
    /// wake-up fd never report an error or a hang-up.)
    fn close(self, core: &mut XpsCore) {
        if let EventCallbacks::Connection { ptr, close_cb, .. } = self {
            close_cb(core, ptr);
        }
    }
}
// ANCHOR_END: callbacks

// ANCHOR: loop_event_create
impl LoopEvent {
    /// `loop_event_create()`: C allocates it with `malloc()`; in Rust it is
    /// a plain value stored straight into its slot, and cannot fail.
    fn create(fd: RawFd, callbacks: EventCallbacks) -> LoopEvent {
        logger!(LogLevel::Debug, "event_create()", "created event");
        LoopEvent { fd, callbacks }
    }

    /// `loop_event_destroy()`: it consumes the event, so nothing can use it
    /// afterwards.
    fn destroy(self) {
        logger!(LogLevel::Debug, "event_destroy()", "destroyed event");
    }
}
// ANCHOR_END: loop_event_create

// ANCHOR: event_slot
/// One entry of the loop's event list.
///
/// The C loop keeps a list of `loop_event_t *` and, to tell whether an event
/// epoll reported is still attached, searches that list for its address:
/// O(n) for each event, and fooled when `malloc()` hands the same address
/// to a new event. Here the slot of an fd is simply `events[fd]`, and each
/// slot counts how many times it has been filled. epoll carries both numbers
/// back to us (see [`token`]), so checking an event is O(1) and an old event
/// can never reach the fd's new owner.
#[derive(Debug, Default)]
struct EventSlot {
    /// Bumped on every attach to this fd.
    generation: u32,
    /// `None` once detached: the course's NULL entry.
    event: Option<LoopEvent>,
}
// ANCHOR_END: event_slot

// ANCHOR: token
/// Packs an fd and its slot's generation into the 64 bits of
/// `epoll_event.data`, which epoll hands back untouched with each event.
fn token(fd: RawFd, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(fd as u32)
}

/// Unpacks what [`token`] packed.
fn untoken(token: u64) -> (RawFd, u32) {
    ((token & 0xffff_ffff) as u32 as RawFd, (token >> 32) as u32)
}
// ANCHOR_END: token

// ANCHOR: xps_loop
/// An event loop: `xps_loop_t` in C. The core owns exactly one.
///
/// C gives the loop a `core` back-pointer. Here the core owns the loop and
/// [`XpsLoop::run`] is handed the core, so no back-pointer is needed.
pub struct XpsLoop {
    /// The epoll instance; closed when the loop is dropped.
    epoll_fd: OwnedFd,
    /// What `epoll_wait()` fills in: the events ready in this round.
    epoll_events: [libc::epoll_event; MAX_EPOLL_EVENTS],
    /// Attached events, indexed by fd.
    events: Vec<EventSlot>,
    /// Beyond the course: the pipes that have work, each once, in the
    /// order they got it (see [`XpsLoop::handle_pipes`]).
    pub(crate) ready_pipes: VecDeque<PipeId>,
}
// ANCHOR_END: xps_loop

// ANCHOR: no_null_events
// The C struct also counts its NULL entries (`n_null_events`) so that the
// list can be compacted later. Slots indexed by fd are reused by the next
// attach of that fd, and the kernel hands out the lowest free fd, so the
// list never grows past the highest fd in use: no compaction, no counter.
// ANCHOR_END: no_null_events

impl XpsLoop {
    // ANCHOR: create
    /// `xps_loop_create()`: makes the epoll instance and an empty event list.
    pub fn create() -> io::Result<XpsLoop> {
        // SAFETY: epoll_create1() takes no pointers; the result is checked.
        let raw =
            check_os(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) }).inspect_err(|err| {
                logger!(LogLevel::Error, "xps_loop_create()", "epoll_create1() failed: {err}")
            })?;
        // SAFETY: `raw` is a new, valid fd that nothing else owns.
        let epoll_fd = unsafe { OwnedFd::from_raw_fd(raw) };
        logger!(LogLevel::Debug, "xps_loop_create()", "created loop");
        Ok(XpsLoop {
            epoll_fd,
            epoll_events: [libc::epoll_event { events: 0, u64: 0 }; MAX_EPOLL_EVENTS],
            events: Vec::new(),
            ready_pipes: VecDeque::new(),
        })
    }
    // ANCHOR_END: create

    // ANCHOR: destroy
    /// `xps_loop_destroy()`: destroys every event still attached, then
    /// closes the epoll fd (dropping the `OwnedFd` does that).
    pub fn destroy(self) {
        for slot in self.events {
            if let Some(event) = slot.event {
                event.destroy();
            }
        }
        logger!(LogLevel::Debug, "xps_loop_destroy()", "destroyed loop");
    }
    // ANCHOR_END: destroy

    // ANCHOR: attach
    /// `xps_loop_attach()`: starts watching `fd` for `event_flags` (such as
    /// `EPOLLIN | EPOLLOUT`). The callbacks run with their object's id:
    /// `read_cb` whenever `fd` is readable, `write_cb` whenever it is
    /// writable, and `close_cb` on an error or hang-up (see
    /// [`XpsLoop::dispatch`] for the order).
    pub fn attach(
        &mut self,
        fd: RawFd,
        event_flags: u32,
        callbacks: EventCallbacks,
    ) -> io::Result<()> {
        let index = slot_index(fd)?;
        if self.events.len() <= index {
            self.events.resize_with(index + 1, EventSlot::default);
        }
        let slot = &mut self.events[index];
        let generation = slot.generation.wrapping_add(1);
        let mut request = libc::epoll_event { events: event_flags, u64: token(fd, generation) };
        // SAFETY: `request` is a valid epoll_event that outlives the call.
        let added = check_os(unsafe {
            libc::epoll_ctl(self.epoll_fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut request)
        });
        if let Err(err) = added {
            logger!(
                LogLevel::Error,
                "xps_loop_attach()",
                "epoll_ctl(ADD) of fd {fd} failed: {err}"
            );
            return Err(err);
        }
        slot.generation = generation;
        slot.event = Some(LoopEvent::create(fd, callbacks));
        logger!(LogLevel::Debug, "xps_loop_attach()", "attached fd {fd}");
        Ok(())
    }
    // ANCHOR_END: attach

    // ANCHOR: detach
    /// `xps_loop_detach()`: stops watching `fd` and destroys its event. Any
    /// event for `fd` already returned by this round's `epoll_wait()` is now
    /// stale, and [`XpsLoop::run`] will skip it.
    pub fn detach(&mut self, fd: RawFd) -> io::Result<()> {
        let slot = slot_index(fd).ok().and_then(|index| self.events.get_mut(index));
        let Some(event) = slot.and_then(|slot| slot.event.take()) else {
            logger!(LogLevel::Error, "xps_loop_detach()", "fd {fd} is not attached");
            return Err(io::Error::new(io::ErrorKind::NotFound, "fd is not attached"));
        };
        event.destroy();
        // SAFETY: EPOLL_CTL_DEL ignores the event pointer, so null is allowed.
        let removed = check_os(unsafe {
            libc::epoll_ctl(
                self.epoll_fd.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        });
        if let Err(err) = removed {
            logger!(
                LogLevel::Error,
                "xps_loop_detach()",
                "epoll_ctl(DEL) of fd {fd} failed: {err}"
            );
            return Err(err);
        }
        logger!(LogLevel::Debug, "xps_loop_detach()", "detached fd {fd}");
        Ok(())
    }
    // ANCHOR_END: detach

    // ANCHOR: find_live
    /// The event an epoll token refers to, if it is still attached: its slot
    /// holds an event and has not been refilled since epoll reported it.
    fn find_live(&self, token: u64) -> Option<&LoopEvent> {
        let (fd, generation) = untoken(token);
        let slot = self.events.get(slot_index(fd).ok()?)?;
        if slot.generation == generation { slot.event.as_ref() } else { None }
    }
    // ANCHOR_END: find_live

    // ANCHOR: run
    /// `xps_loop_run()`: serves the pipes that have work, waits for events
    /// and dispatches them, round after round, until a callback stops the
    /// core. Returns an error only if `epoll_wait()` itself fails.
    ///
    /// While a pipe still has work after its turn, the wait must not sleep:
    /// epoll will say nothing more about sockets it has reported already
    /// (edge-triggered), so the loop only looks for new events (timeout 0)
    /// and comes back to serve it. With nothing to do it sleeps until epoll
    /// has news (timeout -1): an idle server uses no CPU.
    ///
    /// It takes the whole core rather than `&mut self`, because the
    /// callbacks it calls need the core.
    ///
    /// The course's loop of this stage logs `starting to run loop`, then
    /// `loop top` and `epoll waiting` on every round. This port keeps
    /// stage 7's one line per round, `epoll wait`, logged just before the
    /// wait: one line that means "going to sleep" in every stage.
    pub fn run(core: &mut XpsCore) -> io::Result<()> {
        while core.running {
            let still_ready = XpsLoop::handle_pipes(core);
            // Stage 11: a client waiting to be closed wakes the loop when
            // its time is up (see close_or_linger in xps_connection.rs).
            let timeout_ms = if still_ready { 0 } else { linger_timeout_ms(core) };
            XpsLoop::wait_and_dispatch(core, timeout_ms)?;
            close_lingering(core);
        }
        Ok(())
    }
    // ANCHOR_END: run

    // ANCHOR: handle_pipes
    /// `handle_pipes()`: one pass over the pipes that have work. In its
    /// turn a pipe:
    ///
    /// 1. with neither a source nor a sink, is destroyed;
    /// 2. calls its source's handler, if the source is ready and the pipe
    ///    has room (the handler reads from its owner into the pipe);
    /// 3. then, if the pipe still exists, calls its sink's handler, if the
    ///    sink is ready and the pipe holds bytes (the handler sends them);
    /// 4. with a source but no sink, deactivates the source and calls its
    ///    close callback; with a sink but no source, does the same for the
    ///    sink once the pipe is empty.
    ///
    /// Returns true if some pipe still has work afterwards (the course's
    /// second pass), so that [`XpsLoop::run`] does not sleep.
    ///
    /// Case 4 cannot happen to a live connection in this stage, whose pipe
    /// joins its own two ends (but see `connection_source_handler` on end
    /// of input); from stage 11 the ends of a pipe belong to different
    /// owners, and one may go first.
    ///
    /// Beyond the course: the course's passes visit every pipe, ready or
    /// not, so with 10,000 idle clients every message costs 10,000 visits.
    /// Here a pass visits only the pipes in the ready queue, which the loop
    /// callbacks and the pipe functions feed ([`XpsLoop::queue_pipe`]), as
    /// stage 9's queue of connections did:
    ///
    /// * a pipe is in the queue while it has work ([`XpsPipe::has_work`]),
    ///   at most once (its `queued` flag);
    /// * an entry is a [`PipeId`], whose generation says whether the pipe
    ///   it was queued for still exists: a destroyed pipe's entry, even
    ///   with its slot reused, finds nothing and is dropped, as a
    ///   destroyed connection's did in stage 9;
    /// * a pass serves only the entries queued before it began, and a pipe
    ///   with work left after its turn goes to the back: round robin, one
    ///   `recv()` and one `send()` per pipe per pass.
    pub fn handle_pipes(core: &mut XpsCore) -> bool {
        let n_queued = core.event_loop.ready_pipes.len();
        for _ in 0..n_queued {
            let Some(id) = core.event_loop.ready_pipes.pop_front() else { break };
            let Some(pipe) = core.pipes.get_mut(id) else {
                logger!(LogLevel::Debug, "handle_pipes()", "pipe not found. skipping");
                continue;
            };
            pipe.queued = false;
            if pipe.source.is_none() && pipe.sink.is_none() {
                XpsPipe::destroy(core, id);
                continue;
            }
            // Each callback may destroy the pipe or its ends (a connection
            // that fails closes both): every step looks them up again.
            if let Some(source) = XpsPipe::source_turn(core, id) {
                source.handle(core);
            }
            if let Some(sink) = XpsPipe::sink_turn(core, id) {
                sink.handle(core);
            }
            if let Some(source) = XpsPipe::end_orphaned_source(core, id) {
                source.close(core);
            }
            if let Some(sink) = XpsPipe::end_drained_sink(core, id) {
                sink.close(core);
            }
            XpsLoop::queue_pipe(core, id);
        }
        !core.event_loop.ready_pipes.is_empty()
    }
    // ANCHOR_END: handle_pipes

    // ANCHOR: queue_pipe
    /// Beyond the course: puts pipe `id` at the back of the ready queue if
    /// it has work ([`XpsPipe::has_work`]) and is not queued already. The
    /// loop callbacks call it when they set a `ready` flag, the pipe
    /// functions when a pipe loses an end, and [`XpsLoop::handle_pipes`]
    /// after a pipe's turn.
    pub fn queue_pipe(core: &mut XpsCore, id: PipeId) {
        if !XpsPipe::has_work(core, id) {
            return;
        }
        let Some(pipe) = core.pipes.get_mut(id) else { return };
        if pipe.queued {
            return;
        }
        pipe.queued = true;
        core.event_loop.ready_pipes.push_back(id);
    }
    // ANCHOR_END: queue_pipe

    // ANCHOR: wait_and_dispatch
    /// One round of the loop: wait up to `timeout_ms` (-1 = no limit) for
    /// events, then dispatch each one that is still attached (see
    /// [`XpsLoop::dispatch`]). Returns how many events epoll reported.
    pub fn wait_and_dispatch(core: &mut XpsCore, timeout_ms: i32) -> io::Result<usize> {
        let lp = &mut core.event_loop;
        logger!(LogLevel::Debug, "xps_loop_run()", "epoll wait");
        // Nothing may sit in the log's buffer while we sleep.
        flush_log();
        let n_events = loop {
            // SAFETY: the buffer holds MAX_EPOLL_EVENTS events and lives
            // across the call.
            let n_events = unsafe {
                libc::epoll_wait(
                    lp.epoll_fd.as_raw_fd(),
                    lp.epoll_events.as_mut_ptr(),
                    MAX_EPOLL_EVENTS as i32,
                    timeout_ms,
                )
            };
            match check_os(n_events) {
                Ok(n) => break n as usize,
                // A signal handler ran while we slept, and made the wake-up
                // fd readable: waiting again returns at once with it. The
                // same wait goes on, so it logs no second `epoll wait`
                // (stages 7 and 8 end the round here, and log one).
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    logger!(LogLevel::Error, "xps_loop_run()", "epoll_wait() failed: {err}");
                    return Err(err);
                }
            }
        };
        logger!(LogLevel::Debug, "xps_loop_run()", "epoll wait over");
        XpsLoop::handle_epoll_events(core, n_events);
        Ok(n_events)
    }
    // ANCHOR_END: wait_and_dispatch

    // ANCHOR: handle_epoll_events
    /// `handle_epoll_events()`: dispatches the first `n_events` events of
    /// the last wait, one by one (see [`XpsLoop::dispatch`]). Stage 10 of
    /// the course moves this part of `xps_loop_run()` into a function of
    /// its own, under this name.
    fn handle_epoll_events(core: &mut XpsCore, n_events: usize) {
        logger!(LogLevel::Debug, "handle_epoll_events()", "handling {n_events} events");
        for i in 0..n_events {
            logger!(LogLevel::Debug, "handle_epoll_events()", "handling event no. {}", i + 1);
            let ready = core.event_loop.epoll_events[i];
            XpsLoop::dispatch(core, ready);
            // A callback may have stopped the core (Ctrl+C): the rest of
            // the round is not served.
            if !core.running {
                break;
            }
        }
    }
    // ANCHOR_END: handle_epoll_events

    // ANCHOR: dispatch
    /// Calls the callbacks of one ready event:
    ///
    /// 1. readable: `read_cb`, even when the event also reports an error or
    ///    a hang-up;
    /// 2. an error or a hang-up with nothing to read: `close_cb`, and
    ///    nothing else;
    /// 3. then, writable: `write_cb`, if the event is still attached.
    ///
    /// The course checks for an error or a hang-up first, and closes. But
    /// the kernel may still hold bytes that arrived before the peer reset
    /// the connection or hung up, and on a TCP socket an error or a hang-up
    /// always comes with `EPOLLIN` (the end of the stream is readable). So
    /// here the read handler goes first and gets those bytes; its next
    /// `recv()` then says how the stream ended (0 or the error), and the
    /// handler closes the connection itself. Only an error with nothing to
    /// read, which a TCP socket hardly ever reports, goes straight to
    /// `close_cb`.
    ///
    /// Before each callback the event is looked up again: an earlier
    /// callback may have detached it (and the fd may even have been reused
    /// for a new client). The log lines are tagged `handle_epoll_events()`,
    /// as in the course.
    fn dispatch(core: &mut XpsCore, ready: libc::epoll_event) {
        let token = ready.u64;
        let flags = ready.events;
        let Some(event) = core.event_loop.find_live(token) else {
            logger!(LogLevel::Debug, "handle_epoll_events()", "event not found. skipping");
            return;
        };
        // The fd is not in the course's lines; it shows which socket each
        // event is for.
        let (fd, callbacks) = (event.fd, event.callbacks);

        if flags & libc::EPOLLIN as u32 != 0 {
            logger!(LogLevel::Debug, "handle_epoll_events()", "EVENT / read on fd {fd}");
            callbacks.read(core);
        } else if flags & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0 {
            logger!(LogLevel::Debug, "handle_epoll_events()", "EVENT / close on fd {fd}");
            callbacks.close(core);
            return;
        }
        if flags & libc::EPOLLOUT as u32 != 0 {
            // The read callback may have destroyed the connection.
            if core.event_loop.find_live(token).is_none() {
                return;
            }
            logger!(LogLevel::Debug, "handle_epoll_events()", "EVENT / write on fd {fd}");
            callbacks.write(core);
        }
    }
    // ANCHOR_END: dispatch
}

// ANCHOR: slot_index
/// An fd as an index into the slots; a negative fd is an error.
fn slot_index(fd: RawFd) -> io::Result<usize> {
    usize::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))
}
// ANCHOR_END: slot_index

#[cfg(test)]
pub(crate) mod tests {
    //! The loop driven with pairs of TCP sockets on 127.0.0.1, no server.
    use super::*;
    use crate::core::xps_slots::Id;
    use std::cell::RefCell;
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, TcpListener, TcpStream};
    use std::sync::{Mutex, MutexGuard};

    /// These tests check what happens when the kernel reuses an fd number,
    /// so they must not run alongside each other: one test's new socket
    /// could take the number another test just freed.
    static FD_LOCK: Mutex<()> = Mutex::new(());

    pub(crate) fn serial() -> MutexGuard<'static, ()> {
        FD_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    thread_local! {
        /// Which `ptr` values the handlers were called with, in order.
        static CALLS: RefCell<Vec<ConnectionId>> = const { RefCell::new(Vec::new()) };
        /// Which callbacks ran, in order: ("read" | "write" | "close", ptr).
        static KINDS: RefCell<Vec<(&'static str, ConnectionId)>> = const { RefCell::new(Vec::new()) };
        /// What `read_and_note` read: the bytes and how the stream ended.
        static READS: RefCell<Vec<(Vec<u8>, String)>> = const { RefCell::new(Vec::new()) };
        /// Sockets the test handlers can reach: (ptr, our end, their end).
        static PAIRS: RefCell<Vec<(ConnectionId, TcpStream, TcpStream)>> =
            const { RefCell::new(Vec::new()) };
    }

    fn calls() -> Vec<ConnectionId> {
        CALLS.with(|calls| calls.borrow().clone())
    }

    /// The id of test connection `n`: the handlers here only note it.
    fn id(n: u32) -> ConnectionId {
        Id::for_test(n)
    }

    /// Two connected TCP sockets on 127.0.0.1: the loop watches the first.
    fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (theirs, _peer) = listener.accept().unwrap();
        (ours, theirs)
    }

    /// A readable pair: a byte is waiting at the first end.
    fn readable_pair() -> (TcpStream, TcpStream) {
        let (ours, mut theirs) = tcp_pair();
        theirs.write_all(b"x").unwrap();
        (ours, theirs)
    }

    fn record(_core: &mut XpsCore, ptr: ConnectionId) {
        CALLS.with(|calls| calls.borrow_mut().push(ptr));
    }

    /// Takes every pair but `ptr`'s out of `PAIRS` and detaches it, the way
    /// destroying one connection can destroy others in a later stage.
    fn detach_others(core: &mut XpsCore, ptr: ConnectionId) -> Vec<(TcpStream, TcpStream)> {
        let others: Vec<_> = PAIRS.with(|pairs| {
            let mut pairs = pairs.borrow_mut();
            let (mine, others) = pairs.drain(..).partition(|(p, _, _)| *p == ptr);
            *pairs = mine;
            others
        });
        let mut detached = Vec::new();
        for (_, ours, theirs) in others {
            core.event_loop.detach(ours.as_raw_fd()).unwrap();
            detached.push((ours, theirs));
        }
        detached
    }

    /// Detaches and closes every other pair.
    fn record_and_close_others(core: &mut XpsCore, ptr: ConnectionId) {
        record(core, ptr);
        drop(detach_others(core, ptr));
    }

    /// Like `record_and_close_others`, then at once attaches a new socket
    /// (with ptr 99) under the fd number of a closed one, as the kernel
    /// does when a client leaves and another arrives in the same round.
    fn close_others_and_reuse_fd(core: &mut XpsCore, ptr: ConnectionId) {
        record(core, ptr);
        let (mut old, _) = detach_others(core, ptr).pop().expect("another pair");
        let (new, theirs) = readable_pair();
        take_the_number_of(&mut old, new);
        attach_read(core, old.as_raw_fd(), 99, record).unwrap();
        PAIRS.with(|pairs| pairs.borrow_mut().push((id(99), old, theirs)));
    }

    /// Closes `old`'s socket and moves `new`'s under `old`'s fd number in
    /// one step. Closing and then opening would leave the number free for
    /// a moment, and the other tests of this binary, on other threads,
    /// open sockets too: one of them could take it.
    fn take_the_number_of(old: &mut TcpStream, new: TcpStream) {
        // SAFETY: both fds are open, owned by the two streams. dup2 closes
        // the socket behind `old`'s number and makes the number refer to
        // `new`'s socket, which `old` then owns and closes on drop; `new`
        // closes only its own number.
        let fd = unsafe { libc::dup2(new.as_raw_fd(), old.as_raw_fd()) };
        assert_eq!(fd, old.as_raw_fd(), "dup2: {}", io::Error::last_os_error());
    }

    /// A core as `xps_core_start()` leaves it: running, so that a round
    /// serves every event (an event after a stop would be cut off).
    pub(crate) fn running_core() -> XpsCore {
        let mut core = XpsCore::create().unwrap();
        core.running = true;
        core
    }

    fn record_and_stop(core: &mut XpsCore, ptr: ConnectionId) {
        record(core, ptr);
        // Bounded: a loop that does not stop would call this forever.
        assert!(calls().len() < 100, "the loop went on after stop()");
        core.stop();
    }

    /// Attaches `fd` for reading only, as test connection `n`, with
    /// `read_cb`; the other callbacks only take notes.
    fn attach_read(
        core: &mut XpsCore,
        fd: RawFd,
        n: u32,
        read_cb: XpsHandler<ConnectionId>,
    ) -> io::Result<()> {
        let callbacks = test_callbacks(n, read_cb);
        core.event_loop.attach(fd, libc::EPOLLIN as u32, callbacks)
    }

    /// The callbacks of test connection `n`: `read_cb`, and notes for the
    /// others.
    fn test_callbacks(n: u32, read_cb: XpsHandler<ConnectionId>) -> EventCallbacks {
        EventCallbacks::Connection {
            ptr: id(n),
            read_cb,
            write_cb: note_write,
            close_cb: note_close,
        }
    }

    fn attach_pair(core: &mut XpsCore, n: u32, cb: XpsHandler<ConnectionId>) {
        let (ours, theirs) = readable_pair();
        attach_read(core, ours.as_raw_fd(), n, cb).unwrap();
        PAIRS.with(|pairs| pairs.borrow_mut().push((id(n), ours, theirs)));
    }

    fn kinds() -> Vec<(&'static str, ConnectionId)> {
        KINDS.with(|kinds| kinds.borrow().clone())
    }

    fn note(kind: &'static str, ptr: ConnectionId) {
        KINDS.with(|kinds| kinds.borrow_mut().push((kind, ptr)));
    }

    fn note_read(_core: &mut XpsCore, ptr: ConnectionId) {
        note("read", ptr);
    }

    fn note_write(_core: &mut XpsCore, ptr: ConnectionId) {
        note("write", ptr);
    }

    fn note_close(_core: &mut XpsCore, ptr: ConnectionId) {
        note("close", ptr);
    }

    /// A read callback that destroys its own event, as a connection's read
    /// handler does when the client has gone.
    fn note_read_and_detach(core: &mut XpsCore, ptr: ConnectionId) {
        note("read", ptr);
        let fd =
            PAIRS.with(|pairs| pairs.borrow().iter().find(|p| p.0 == ptr).map(|p| p.1.as_raw_fd()));
        core.event_loop.detach(fd.unwrap()).unwrap();
    }

    /// Attaches the first end of a fresh pair for reading and writing, with
    /// the given callbacks; returns the fd.
    fn attach_rw(core: &mut XpsCore, n: u32, read_cb: XpsHandler<ConnectionId>) -> RawFd {
        let (ours, theirs) = tcp_pair();
        let fd = ours.as_raw_fd();
        let flags = (libc::EPOLLIN | libc::EPOLLOUT) as u32;
        core.event_loop.attach(fd, flags, test_callbacks(n, read_cb)).unwrap();
        PAIRS.with(|pairs| pairs.borrow_mut().push((id(n), ours, theirs)));
        fd
    }

    /// Writes a byte into the other end of the pair of `ptr`.
    fn make_readable(n: u32) {
        PAIRS.with(|pairs| {
            let mut pairs = pairs.borrow_mut();
            let pair = pairs.iter_mut().find(|p| p.0 == id(n)).unwrap();
            pair.2.write_all(b"x").unwrap();
        });
    }

    /// Ends the other end of the pair of test connection `n`: a plain
    /// close (a FIN), or with `reset` a close with `SO_LINGER` at 0, which
    /// sends an RST instead. A stand-in socket takes its place in the pair.
    fn close_peer(n: u32, reset: bool) {
        PAIRS.with(|pairs| {
            let mut pairs = pairs.borrow_mut();
            let pair = pairs.iter_mut().find(|p| p.0 == id(n)).unwrap();
            if reset {
                let linger = libc::linger { l_onoff: 1, l_linger: 0 };
                // SAFETY: the option value points to a linger that outlives
                // the call, and its size is passed with it.
                let set = unsafe {
                    libc::setsockopt(
                        pair.2.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_LINGER,
                        (&raw const linger).cast(),
                        size_of::<libc::linger>() as libc::socklen_t,
                    )
                };
                assert_eq!(set, 0, "setsockopt(SO_LINGER)");
            }
            // Dropping the old socket closes it.
            pair.2 = tcp_pair().1;
        });
    }

    /// What the read callbacks below read: the bytes, then how the read
    /// after them ended.
    fn reads() -> Vec<(Vec<u8>, String)> {
        READS.with(|reads| reads.borrow().clone())
    }

    /// A read callback that reads everything waiting at its end of the
    /// pair, as a connection's read handler would, and notes it.
    fn read_and_note(_core: &mut XpsCore, ptr: ConnectionId) {
        note("read", ptr);
        let mut ours =
            PAIRS.with(|pairs| pairs.borrow().iter().find(|p| p.0 == ptr).unwrap().1.try_clone());
        let ours = ours.as_mut().unwrap();
        ours.set_nonblocking(true).unwrap();
        let (mut bytes, mut buffer) = (Vec::new(), [0; 64]);
        let ending = loop {
            match ours.read(&mut buffer) {
                Ok(0) => break "end of stream".to_string(),
                Ok(n) => bytes.extend_from_slice(&buffer[..n]),
                Err(err) => break err.kind().to_string(),
            }
        };
        READS.with(|reads| reads.borrow_mut().push((bytes, ending)));
    }

    #[test]
    fn token_round_trips() {
        assert_eq!(untoken(token(7, 3)), (7, 3));
        assert_eq!(untoken(token(i32::MAX, u32::MAX)), (i32::MAX, u32::MAX));
    }

    #[test]
    fn attached_fd_is_dispatched_and_detached_fd_is_not() {
        let _serial = serial();
        let mut core = running_core();
        let (ours, _theirs) = readable_pair();
        let fd = ours.as_raw_fd();
        attach_read(&mut core, fd, 7, record).unwrap();
        assert_eq!(XpsLoop::wait_and_dispatch(&mut core, 1000).unwrap(), 1);
        assert_eq!(calls(), vec![id(7)]);

        core.event_loop.detach(fd).unwrap();
        assert_eq!(XpsLoop::wait_and_dispatch(&mut core, 50).unwrap(), 0);
        assert_eq!(calls(), vec![id(7)]);
        assert!(core.event_loop.detach(fd).is_err(), "second detach must fail");
        core.destroy();
    }

    #[test]
    fn attaching_the_same_fd_twice_fails() {
        let _serial = serial();
        let mut core = running_core();
        let (ours, _theirs) = readable_pair();
        let fd = ours.as_raw_fd();
        attach_read(&mut core, fd, 1, record).unwrap();
        assert!(attach_read(&mut core, fd, 2, record).is_err());
        core.destroy();
    }

    // ANCHOR: skip_test
    #[test]
    fn event_detached_earlier_in_the_same_round_is_skipped() {
        let _serial = serial();
        let mut core = running_core();
        attach_pair(&mut core, 1, record_and_close_others);
        attach_pair(&mut core, 2, record_and_close_others);
        // Both fds are ready, so one wait reports both events; whichever
        // runs first detaches the other, whose event must then be skipped.
        assert_eq!(XpsLoop::wait_and_dispatch(&mut core, 1000).unwrap(), 2);
        assert_eq!(calls().len(), 1, "calls: {:?}", calls());
        PAIRS.with(|pairs| pairs.borrow_mut().clear());
        core.destroy();
    }
    // ANCHOR_END: skip_test

    #[test]
    fn a_callback_that_stops_the_core_ends_the_round_and_the_run() {
        let _serial = serial();
        let mut core = running_core();
        attach_pair(&mut core, 1, record_and_stop);
        attach_pair(&mut core, 2, record_and_stop);
        // Both are ready; the first callback stops the core, so the second
        // is not served and run() returns after one round.
        XpsLoop::run(&mut core).unwrap();
        assert_eq!(calls().len(), 1, "calls: {:?}", calls());
        assert!(!core.running);
        PAIRS.with(|pairs| pairs.borrow_mut().clear());
        core.destroy();
    }

    #[test]
    fn reused_slot_does_not_get_the_old_event() {
        let _serial = serial();
        let mut core = running_core();
        attach_pair(&mut core, 1, close_others_and_reuse_fd);
        attach_pair(&mut core, 2, close_others_and_reuse_fd);
        assert_eq!(XpsLoop::wait_and_dispatch(&mut core, 1000).unwrap(), 2);
        // The stale event of the closed fd must not reach the new owner (99).
        let first = calls();
        assert_eq!(first.len(), 1, "calls: {first:?}");
        // Stop watching the survivor; in the next round the new owner gets
        // its own, genuine event.
        let survivor = PAIRS
            .with(|pairs| pairs.borrow().iter().find(|p| p.0 == first[0]).map(|p| p.1.as_raw_fd()));
        core.event_loop.detach(survivor.unwrap()).unwrap();
        assert_eq!(XpsLoop::wait_and_dispatch(&mut core, 1000).unwrap(), 1);
        assert_eq!(calls(), vec![first[0], id(99)]);
        PAIRS.with(|pairs| pairs.borrow_mut().clear());
        core.destroy();
    }

    #[test]
    fn writable_only_calls_write_cb() {
        let _serial = serial();
        let mut core = running_core();
        attach_rw(&mut core, 5, note_read);
        // Nothing to read, an empty send buffer: writable only.
        assert_eq!(XpsLoop::wait_and_dispatch(&mut core, 1000).unwrap(), 1);
        assert_eq!(kinds(), vec![("write", id(5))]);
        PAIRS.with(|pairs| pairs.borrow_mut().clear());
        core.destroy();
    }

    #[test]
    fn readable_only_calls_read_cb() {
        let _serial = serial();
        let mut core = running_core();
        let (ours, theirs) = readable_pair();
        let fd = ours.as_raw_fd();
        core.event_loop.attach(fd, libc::EPOLLIN as u32, test_callbacks(5, note_read)).unwrap();
        PAIRS.with(|pairs| pairs.borrow_mut().push((id(5), ours, theirs)));
        assert_eq!(XpsLoop::wait_and_dispatch(&mut core, 1000).unwrap(), 1);
        assert_eq!(kinds(), vec![("read", id(5))], "a readable-only event called more");
        PAIRS.with(|pairs| pairs.borrow_mut().clear());
        core.destroy();
    }

    #[test]
    fn write_cb_runs_after_read_cb() {
        let _serial = serial();
        let mut core = running_core();
        attach_rw(&mut core, 5, note_read);
        make_readable(5);
        assert_eq!(XpsLoop::wait_and_dispatch(&mut core, 1000).unwrap(), 1);
        assert_eq!(kinds(), vec![("read", id(5)), ("write", id(5))]);
        PAIRS.with(|pairs| pairs.borrow_mut().clear());
        core.destroy();
    }

    #[test]
    fn write_cb_is_not_called_when_read_cb_destroyed_the_event() {
        let _serial = serial();
        let mut core = running_core();
        attach_rw(&mut core, 5, note_read_and_detach);
        make_readable(5);
        assert_eq!(XpsLoop::wait_and_dispatch(&mut core, 1000).unwrap(), 1);
        assert_eq!(kinds(), vec![("read", id(5))]);
        PAIRS.with(|pairs| pairs.borrow_mut().clear());
        core.destroy();
    }

    #[test]
    fn a_peer_that_closes_is_read_to_its_end() {
        let _serial = serial();
        let mut core = running_core();
        attach_rw(&mut core, 5, read_and_note);
        make_readable(5);
        close_peer(5, false);
        // A FIN is the end of the stream, readable: the read callback gets
        // the byte, then the end; the close callback is not called.
        assert_eq!(XpsLoop::wait_and_dispatch(&mut core, 1000).unwrap(), 1);
        assert_eq!(kinds(), vec![("read", id(5)), ("write", id(5))]);
        assert_eq!(reads(), vec![(b"x".to_vec(), "end of stream".to_string())]);
        PAIRS.with(|pairs| pairs.borrow_mut().clear());
        core.destroy();
    }

    // ANCHOR: reset_test
    #[test]
    fn a_reset_with_bytes_unread_is_read_first() {
        let _serial = serial();
        let mut core = running_core();
        attach_rw(&mut core, 5, read_and_note);
        make_readable(5);
        close_peer(5, true);
        // An RST comes with EPOLLERR, EPOLLHUP and EPOLLIN: the byte that
        // arrived before it is read, then recv() reports the reset.
        assert_eq!(XpsLoop::wait_and_dispatch(&mut core, 1000).unwrap(), 1);
        assert_eq!(kinds(), vec![("read", id(5)), ("write", id(5))]);
        let reset = io::ErrorKind::ConnectionReset.to_string();
        assert_eq!(reads(), vec![(b"x".to_vec(), reset)]);
        PAIRS.with(|pairs| pairs.borrow_mut().clear());
        core.destroy();
    }
    // ANCHOR_END: reset_test

    #[test]
    fn an_error_with_nothing_to_read_calls_close_cb_and_nothing_else() {
        let _serial = serial();
        let mut core = running_core();
        let fd = attach_rw(&mut core, 5, note_read);
        // No TCP socket here reports this (see dispatch), so the event is
        // made up: an error, writable, nothing to read.
        let generation = core.event_loop.events[fd as usize].generation;
        let flags = (libc::EPOLLERR | libc::EPOLLOUT) as u32;
        XpsLoop::dispatch(
            &mut core,
            libc::epoll_event { events: flags, u64: token(fd, generation) },
        );
        assert_eq!(kinds(), vec![("close", id(5))]);
        PAIRS.with(|pairs| pairs.borrow_mut().clear());
        core.destroy();
    }
}
