//! The event loop: `xps_loop.c`. It watches file descriptors with epoll and
//! calls the callback attached to each one when it becomes readable.
//!
//! All the epoll system calls of the server are in this file.

use crate::core::xps_core::XpsCore;
use crate::logger;
use crate::network::xps_connection::ConnectionId;
use crate::network::xps_listener::ListenerId;
use crate::utils::xps_logger::{LogLevel, flush_log};
use crate::utils::xps_utils::check_os;
use crate::xps::{MAX_EPOLL_EVENTS, XpsHandler};
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
    /// What to call when `fd` is readable, and for which object: the
    /// course's `read_cb` and `ptr`.
    callbacks: EventCallbacks,
}
// ANCHOR_END: loop_event

// ANCHOR: callbacks
/// The callback of one event and the object it is for: the course's
/// `read_cb` and `ptr`, kept together.
///
/// In C, `ptr` is a `void *` that each callback casts to the type it
/// expects, and nothing stops a listener's callback from being handed a
/// connection. Here each kind of object has a variant whose callback takes
/// that kind's id, so a callback is only ever called with the kind of
/// object it was written for.
#[derive(Debug, Clone, Copy)]
pub enum EventCallbacks {
    /// A listening socket, and the listener it belongs to.
    Listener {
        /// The listener's id.
        ptr: ListenerId,
        /// Called when a client is waiting to be accepted.
        read_cb: XpsHandler<ListenerId>,
    },
    /// A client's socket, and its connection.
    Connection {
        /// The connection's id.
        ptr: ConnectionId,
        /// Called when the client has sent something, or has gone (the
        /// next `recv()` says which).
        read_cb: XpsHandler<ConnectionId>,
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
            EventCallbacks::Connection { ptr, read_cb } => read_cb(core, ptr),
            EventCallbacks::Core { read_cb } => read_cb(core),
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
    /// `EPOLLIN`); the read callback of `callbacks` runs, with its object's
    /// id, whenever it is readable.
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
    /// `xps_loop_run()`: waits for events and dispatches them, round after
    /// round, until a callback stops the core. Returns an error only if
    /// `epoll_wait()` itself fails.
    ///
    /// It takes the whole core rather than `&mut self`, because the
    /// callbacks it calls need the core.
    pub fn run(core: &mut XpsCore) -> io::Result<()> {
        while core.running {
            XpsLoop::wait_and_dispatch(core, -1)?;
        }
        Ok(())
    }
    // ANCHOR_END: run

    // ANCHOR: wait_and_dispatch
    /// One round of the loop: wait up to `timeout_ms` (-1 = no limit) for
    /// events, then call the callback of each one that is still attached.
    /// Returns how many events epoll reported.
    pub fn wait_and_dispatch(core: &mut XpsCore, timeout_ms: i32) -> io::Result<usize> {
        let lp = &mut core.event_loop;
        logger!(LogLevel::Debug, "xps_loop_run()", "epoll wait");
        // Nothing may sit in the log's buffer while we sleep.
        flush_log();
        // SAFETY: the buffer holds MAX_EPOLL_EVENTS events and lives across
        // the call.
        let n_events = unsafe {
            libc::epoll_wait(
                lp.epoll_fd.as_raw_fd(),
                lp.epoll_events.as_mut_ptr(),
                MAX_EPOLL_EVENTS as i32,
                timeout_ms,
            )
        };
        let n_events = match check_os(n_events) {
            Ok(n) => n as usize,
            // A signal handler ran while we slept. The handler has also
            // made the wake-up fd readable, so the next wait reports it.
            Err(err) if err.kind() == io::ErrorKind::Interrupted => return Ok(0),
            Err(err) => {
                logger!(LogLevel::Error, "xps_loop_run()", "epoll_wait() failed: {err}");
                return Err(err);
            }
        };
        logger!(LogLevel::Debug, "xps_loop_run()", "epoll wait over");
        logger!(LogLevel::Debug, "xps_loop_run()", "handling {n_events} events");

        for i in 0..n_events {
            logger!(LogLevel::Debug, "xps_loop_run()", "handling event no. {}", i + 1);
            let ready = core.event_loop.epoll_events[i];
            // An earlier callback in this round may have detached this fd
            // (and the fd may even have been reused for a new client).
            // The course tags these two lines `handle_epoll_events()`, the
            // name this part of the loop gets in a later stage.
            let Some(event) = core.event_loop.find_live(ready.u64) else {
                logger!(LogLevel::Debug, "handle_epoll_events()", "event not found. skipping");
                continue;
            };
            let (fd, callbacks) = (event.fd, event.callbacks);
            let flags = ready.events;
            if flags & (libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0 {
                // The fd is not in the course's line; it shows which
                // socket each event is for.
                logger!(LogLevel::Debug, "handle_epoll_events()", "EVENT / read on fd {fd}");
                callbacks.read(core);
            }
            // A callback may have stopped the core (Ctrl+C): the rest of
            // the round is not served.
            if !core.running {
                break;
            }
        }
        Ok(n_events)
    }
    // ANCHOR_END: wait_and_dispatch
}

// ANCHOR: slot_index
/// An fd as an index into the slots; a negative fd is an error.
fn slot_index(fd: RawFd) -> io::Result<usize> {
    usize::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))
}
// ANCHOR_END: slot_index

#[cfg(test)]
mod tests {
    //! The loop driven with pairs of TCP sockets on 127.0.0.1, no server.
    use super::*;
    use crate::core::xps_slots::Id;
    use std::cell::RefCell;
    use std::io::Write;
    use std::net::{Ipv4Addr, TcpListener, TcpStream};
    use std::sync::{Mutex, MutexGuard};

    /// These tests check what happens when the kernel reuses an fd number,
    /// so they must not run alongside each other: one test's new socket
    /// could take the number another test just freed.
    static FD_LOCK: Mutex<()> = Mutex::new(());

    fn serial() -> MutexGuard<'static, ()> {
        FD_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    thread_local! {
        /// Which `ptr` values the handlers were called with, in order.
        static CALLS: RefCell<Vec<ConnectionId>> = const { RefCell::new(Vec::new()) };
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
    fn running_core() -> XpsCore {
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

    /// Attaches `fd` for reading, as test connection `n`, with `read_cb`.
    fn attach_read(
        core: &mut XpsCore,
        fd: RawFd,
        n: u32,
        read_cb: XpsHandler<ConnectionId>,
    ) -> io::Result<()> {
        let callbacks = EventCallbacks::Connection { ptr: id(n), read_cb };
        core.event_loop.attach(fd, libc::EPOLLIN as u32, callbacks)
    }

    fn attach_pair(core: &mut XpsCore, n: u32, cb: XpsHandler<ConnectionId>) {
        let (ours, theirs) = readable_pair();
        attach_read(core, ours.as_raw_fd(), n, cb).unwrap();
        PAIRS.with(|pairs| pairs.borrow_mut().push((id(n), ours, theirs)));
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
}
