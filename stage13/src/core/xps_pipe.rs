//! Pipes: `xps_pipe.c`, new in stage 10.
//!
//! A pipe carries bytes from a *source* (what produces them: here a
//! client's socket being read) to a *sink* (what consumes them: here the
//! same client's socket being written), through a buffer list that may
//! hold at most `buff_thresh` bytes. The source is served only while the
//! pipe has room ([`XpsPipe::is_writable`]), the sink only while the pipe
//! holds something ([`XpsPipe::is_readable`]). So when the sink cannot
//! send (a client that never reads), the pipe fills, the source stops
//! reading, the client's bytes wait in the kernel, and TCP tells the
//! client to stop sending: *backpressure*. The server's memory stays
//! bounded by the threshold, whatever the client sends.
//!
//! ```text
//!   owner (connection)                                owner (connection)
//!   ptr, handler_cb, close_cb                         ptr, handler_cb, close_cb
//!        │                                                 │
//!   ┌────▼─────┐   write    ┌────────────────────┐   read ┌─▼────────┐
//!   │  source  │──────────▶ │ buff_list ≤ thresh │──────▶ │   sink   │
//!   │ ready    │            └────────────────────┘  clear │ ready    │
//!   │ active   │◀── pipe ──────────  XpsPipe  ───── pipe ─▶│ active   │
//!   └──────────┘                                          └──────────┘
//!   ready: set by the loop when          ready: set by the loop when
//!   the socket is readable,              the socket is writable,
//!   cleared by recv() saying EAGAIN      cleared by send() saying EAGAIN
//! ```
//!
//! Ownership: the core owns every pipe, source and sink, in
//! [`Slots`](crate::core::xps_slots::Slots) tables, as it owns listeners
//! and connections. A pipe names its source and sink, and each end names
//! its pipe, by an id with a generation (`PipeId`, `SourceId`, `SinkId`);
//! an owner (a connection) names its source and sink the same way, and an
//! end names its owner by the owner's typed id (`ptr`, the course's
//! `void *ptr`: see [`EndCallbacks`]). Every function here takes the core
//! and ids: no pointers, no `Rc<RefCell<..>>`, and an id whose object is
//! gone is simply not found.

use crate::core::xps_core::XpsCore;
use crate::core::xps_loop::XpsLoop;
use crate::core::xps_session::SessionId;
use crate::core::xps_slots::Id;
use crate::disk::xps_file::FileId;
use crate::logger;
use crate::network::xps_connection::ConnectionId;
use crate::utils::xps_buffer::{XpsBuffer, XpsBufferList};
use crate::utils::xps_logger::LogLevel;
use crate::xps::{XpsError, XpsHandler};
use std::io::IoSlice;

/// The id of a pipe in `core.pipes`.
pub type PipeId = Id<XpsPipe>;
/// The id of a source in `core.sources`.
pub type SourceId = Id<XpsPipeSource>;
/// The id of a sink in `core.sinks`.
pub type SinkId = Id<XpsPipeSink>;

// ANCHOR: xps_pipe
/// A pipe: `xps_pipe_t` in C. Its `core` back-pointer is not needed: the
/// core owns the pipe and is passed to every function that uses it.
#[derive(Debug)]
pub struct XpsPipe {
    /// The end that writes into the pipe, while one is attached.
    pub source: Option<SourceId>,
    /// The end that reads from the pipe, while one is attached.
    pub sink: Option<SinkId>,
    /// The bytes written and not yet read and cleared, oldest first.
    pub buff_list: XpsBufferList,
    /// How much the pipe may hold before its source is no longer served.
    pub buff_thresh: usize,
    /// True while the pipe has an entry in the loop's ready queue, so that
    /// it never has two (not in the course; see `XpsLoop::handle_pipes`).
    pub queued: bool,
}
// ANCHOR_END: xps_pipe

// ANCHOR: xps_pipe_ends
/// The end that writes into a pipe: `xps_pipe_source_t` in C.
///
/// Its fields are private: `ready` changes through
/// [`XpsPipeSource::set_ready`], which also puts the pipe in the loop's
/// ready queue when that gives it work, and `pipe` and `active` change only
/// through the pipe functions. A flag flipped without the queue being told
/// would leave a ready end waiting for an event that never comes.
#[derive(Debug)]
pub struct XpsPipeSource {
    /// The pipe it is attached to, if any.
    pipe: Option<PipeId>,
    /// The owner has bytes to write (for a connection: its socket is
    /// readable). Set when the loop reports the socket readable, cleared
    /// when `recv()` says `EAGAIN`.
    ready: bool,
    /// Attached to a pipe that still wants its bytes. `handle_pipes()`
    /// clears it when the sink is gone (nobody would read what it writes)
    /// and then calls the owner's `close_cb`.
    active: bool,
    /// Its owner and the owner's `handler_cb` and `close_cb`.
    callbacks: EndCallbacks,
}

/// The end that reads from a pipe: `xps_pipe_sink_t` in C. The same shape
/// as the source; its `ready` says the owner can take bytes (for a
/// connection: its socket is writable).
#[derive(Debug)]
pub struct XpsPipeSink {
    /// The pipe it is attached to, if any.
    pipe: Option<PipeId>,
    /// The owner can take bytes. Set when the loop reports the socket
    /// writable, cleared when `send()` says `EAGAIN`.
    ready: bool,
    /// Attached to a pipe that may still have bytes for it. Cleared by
    /// `handle_pipes()` once the source is gone and the pipe is empty;
    /// then the owner's `close_cb` is called.
    active: bool,
    /// Its owner and the owner's `handler_cb` and `close_cb`.
    callbacks: EndCallbacks,
}
// ANCHOR_END: xps_pipe_ends

// ANCHOR: end_callbacks
/// Whose end it is, and what `handle_pipes()` calls on it: the course's
/// `ptr`, `handler_cb` and `close_cb`, kept together as the loop keeps an
/// event's (`EventCallbacks`).
///
/// The course's pipe calls `handler_cb(end)` and `close_cb(end)`, and each
/// callback reads its owner from `end->ptr`, a `void *` it casts. Here the
/// pipe hands each callback its owner's id, typed: a connection's handler
/// can only ever be called with a connection, a file's with a file, a
/// session's with a session (new in this stage).
#[derive(Debug, Clone, Copy)]
pub enum EndCallbacks {
    /// An end of a connection.
    Connection {
        /// The connection's id.
        ptr: ConnectionId,
        /// Called while the end is ready and the pipe can serve it: a
        /// source's reads from the owner into the pipe, a sink's sends
        /// from the pipe.
        handler_cb: XpsHandler<ConnectionId>,
        /// Called once the end has been deactivated.
        close_cb: XpsHandler<ConnectionId>,
    },
    /// The source of a file (stage 12): ready from birth, no fd in the
    /// loop behind it.
    File {
        /// The file's id.
        ptr: FileId,
        /// Reads the next chunk of the file into the pipe.
        handler_cb: XpsHandler<FileId>,
        /// Called once the pipe has lost its sink (the client left).
        close_cb: XpsHandler<FileId>,
    },
    /// One of a session's five ends (stage 13): no fd behind it either;
    /// the session's own handlers set its `ready` flag.
    Session {
        /// The session's id.
        ptr: SessionId,
        /// Moves the session's buffered chunk on (a source), or takes the
        /// next one from the pipe (a sink).
        handler_cb: XpsHandler<SessionId>,
        /// Called once the end has been deactivated.
        close_cb: XpsHandler<SessionId>,
    },
}

impl EndCallbacks {
    /// Calls `handler_cb` with its owner's id.
    pub fn handle(self, core: &mut XpsCore) {
        match self {
            EndCallbacks::Connection { ptr, handler_cb, .. } => handler_cb(core, ptr),
            EndCallbacks::File { ptr, handler_cb, .. } => handler_cb(core, ptr),
            EndCallbacks::Session { ptr, handler_cb, .. } => handler_cb(core, ptr),
        }
    }

    /// Calls `close_cb` with its owner's id.
    pub fn close(self, core: &mut XpsCore) {
        match self {
            EndCallbacks::Connection { ptr, close_cb, .. } => close_cb(core, ptr),
            EndCallbacks::File { ptr, close_cb, .. } => close_cb(core, ptr),
            EndCallbacks::Session { ptr, close_cb, .. } => close_cb(core, ptr),
        }
    }
}
// ANCHOR_END: end_callbacks

impl XpsPipe {
    // ANCHOR: pipe_create
    /// `xps_pipe_create()`: a pipe from `source` to `sink` holding at most
    /// `buff_thresh` bytes, added to the core, with both ends attached (and
    /// so active). Fails if an end does not exist or already has a pipe;
    /// then nothing is created.
    pub fn create(
        core: &mut XpsCore,
        buff_thresh: usize,
        source: SourceId,
        sink: SinkId,
    ) -> Result<PipeId, XpsError> {
        let source_free = core.sources.get(source).ok_or(XpsError::NotFound)?.pipe.is_none();
        let sink_free = core.sinks.get(sink).ok_or(XpsError::NotFound)?.pipe.is_none();
        if !source_free || !sink_free {
            logger!(LogLevel::Error, "xps_pipe_create()", "an end already has a pipe");
            return Err(XpsError::Permission);
        }
        let pipe = core.pipes.insert(XpsPipe {
            source: None,
            sink: None,
            buff_list: XpsBufferList::create(),
            buff_thresh,
            queued: false,
        });
        // Neither can fail: both ends and the pipe were checked just above.
        XpsPipe::attach_source(core, pipe, source)?;
        XpsPipe::attach_sink(core, pipe, sink)?;
        logger!(LogLevel::Debug, "xps_pipe_create()", "created pipe");
        Ok(pipe)
    }
    // ANCHOR_END: pipe_create

    // ANCHOR: pipe_destroy
    /// `xps_pipe_destroy()`: takes the pipe out of the core and frees what
    /// it still holds. An end still attached is detached (and deactivated)
    /// first, so that it does not name a pipe that is gone (its id would
    /// find nothing anyway).
    pub fn destroy(core: &mut XpsCore, id: PipeId) {
        let Some(pipe) = core.pipes.remove(id) else { return };
        if let Some(source) = pipe.source.and_then(|source| core.sources.get_mut(source)) {
            source.pipe = None;
            source.active = false;
        }
        if let Some(sink) = pipe.sink.and_then(|sink| core.sinks.get_mut(sink)) {
            sink.pipe = None;
            sink.active = false;
        }
        // Its entry in the ready queue, if any, no longer finds a pipe and
        // is skipped.
        pipe.buff_list.destroy();
        logger!(LogLevel::Debug, "xps_pipe_destroy()", "destroyed pipe");
    }
    // ANCHOR_END: pipe_destroy

    // ANCHOR: is_readable
    /// `xps_pipe_is_readable()`: the pipe holds bytes for its sink.
    pub fn is_readable(&self) -> bool {
        !self.buff_list.is_empty()
    }

    /// `xps_pipe_is_writable()`: the pipe has room for its source.
    ///
    /// The course compares the bytes in the pipe with the threshold. Beyond
    /// the course, this compares the memory the pipe's buffers hold
    /// ([`XpsBufferList::held`]): a client that sends 64 bytes at a time
    /// fills the pipe with 64-byte buffers, each with its own bookkeeping,
    /// and 1 MB of those takes more than 1 MB of memory. Counted this way
    /// the threshold bounds what the server spends, not only what it
    /// stores.
    pub fn is_writable(&self) -> bool {
        self.buff_list.held() < self.buff_thresh
    }

    /// How much the source may write before the pipe is full: what the
    /// source handler asks `recv()` for at most.
    pub fn room(&self) -> usize {
        self.buff_thresh.saturating_sub(self.buff_list.held())
    }
    // ANCHOR_END: is_readable

    // ANCHOR: attach
    /// `xps_pipe_attach_source()`: joins `source` to the pipe and makes it
    /// active. Fails if either is gone, or either is already joined.
    ///
    /// An end may be ready before it has a pipe (a file is ready from
    /// birth, in stage 12). So once both ends are attached, the pipe goes
    /// to the loop's ready queue if that gives it work, and a ready source
    /// is served without any event. (Not before: a pipe with one end
    /// attached is being built, not losing its other end.)
    pub fn attach_source(core: &mut XpsCore, id: PipeId, source: SourceId) -> Result<(), XpsError> {
        let XpsCore { pipes, sources, .. } = core;
        let (pipe, end) = (pipes.get_mut(id), sources.get_mut(source));
        let (Some(pipe), Some(end)) = (pipe, end) else { return Err(XpsError::NotFound) };
        if pipe.source.is_some() || end.pipe.is_some() {
            return Err(XpsError::Permission);
        }
        pipe.source = Some(source);
        end.pipe = Some(id);
        end.active = true;
        if pipe.sink.is_some() {
            XpsLoop::queue_pipe(core, id);
        }
        Ok(())
    }

    /// `xps_pipe_attach_sink()`: joins `sink` to the pipe and makes it
    /// active, and queues the pipe as above once it has both ends. Fails if
    /// either is gone, or either is already joined.
    pub fn attach_sink(core: &mut XpsCore, id: PipeId, sink: SinkId) -> Result<(), XpsError> {
        let XpsCore { pipes, sinks, .. } = core;
        let (pipe, end) = (pipes.get_mut(id), sinks.get_mut(sink));
        let (Some(pipe), Some(end)) = (pipe, end) else { return Err(XpsError::NotFound) };
        if pipe.sink.is_some() || end.pipe.is_some() {
            return Err(XpsError::Permission);
        }
        pipe.sink = Some(sink);
        end.pipe = Some(id);
        end.active = true;
        if pipe.source.is_some() {
            XpsLoop::queue_pipe(core, id);
        }
        Ok(())
    }
    // ANCHOR_END: attach

    // ANCHOR: detach
    /// `xps_pipe_detach_source()`: separates the pipe and its source, which
    /// is no longer active. The pipe keeps what it holds for its sink, and
    /// goes to the loop's ready queue: with one end gone, `handle_pipes()`
    /// has work to do (drain and close the sink, or destroy the pipe).
    pub fn detach_source(core: &mut XpsCore, id: PipeId) -> Result<(), XpsError> {
        let pipe = core.pipes.get_mut(id).ok_or(XpsError::NotFound)?;
        let source = pipe.source.take().ok_or(XpsError::NotFound)?;
        if let Some(end) = core.sources.get_mut(source) {
            end.pipe = None;
            end.active = false;
        }
        XpsLoop::queue_pipe(core, id);
        Ok(())
    }

    /// `xps_pipe_detach_sink()`: separates the pipe and its sink, which is
    /// no longer active; the pipe goes to the ready queue, as above.
    pub fn detach_sink(core: &mut XpsCore, id: PipeId) -> Result<(), XpsError> {
        let pipe = core.pipes.get_mut(id).ok_or(XpsError::NotFound)?;
        let sink = pipe.sink.take().ok_or(XpsError::NotFound)?;
        if let Some(end) = core.sinks.get_mut(sink) {
            end.pipe = None;
            end.active = false;
        }
        XpsLoop::queue_pipe(core, id);
        Ok(())
    }
    // ANCHOR_END: detach

    // ANCHOR: turns
    /// The source's callbacks, if `handle_pipes()` should call its
    /// handler now: the source is attached, active and ready, and the pipe
    /// has room.
    pub fn source_turn(core: &XpsCore, id: PipeId) -> Option<EndCallbacks> {
        let pipe = core.pipes.get(id)?;
        let source = core.sources.get(pipe.source?)?;
        let due = source.active && source.ready && pipe.is_writable();
        due.then_some(source.callbacks)
    }

    /// The sink's callbacks, if `handle_pipes()` should call its handler
    /// now: the sink is attached, active and ready, and the pipe holds
    /// bytes.
    pub fn sink_turn(core: &XpsCore, id: PipeId) -> Option<EndCallbacks> {
        let pipe = core.pipes.get(id)?;
        let sink = core.sinks.get(pipe.sink?)?;
        let due = sink.active && sink.ready && pipe.is_readable();
        due.then_some(sink.callbacks)
    }

    /// If the pipe's source is still active but its sink is gone, nobody
    /// will ever read what it writes: deactivates it and returns its
    /// callbacks, for `handle_pipes()` to call `close_cb`.
    pub fn end_orphaned_source(core: &mut XpsCore, id: PipeId) -> Option<EndCallbacks> {
        let pipe = core.pipes.get(id)?;
        if pipe.sink.is_some() {
            return None;
        }
        let source = core.sources.get_mut(pipe.source?)?;
        if !source.active {
            return None;
        }
        source.active = false;
        Some(source.callbacks)
    }

    /// If the pipe's sink is still active but its source is gone and the
    /// pipe is empty, nothing more will come: deactivates it and returns
    /// its callbacks. (While the pipe still holds bytes the sink stays, and
    /// drains it first.)
    pub fn end_drained_sink(core: &mut XpsCore, id: PipeId) -> Option<EndCallbacks> {
        let pipe = core.pipes.get(id)?;
        if pipe.source.is_some() || pipe.is_readable() {
            return None;
        }
        let sink = core.sinks.get_mut(pipe.sink?)?;
        if !sink.active {
            return None;
        }
        sink.active = false;
        Some(sink.callbacks)
    }

    /// True if `handle_pipes()` has something to do for the pipe: one of
    /// the four cases above, or no end at all (then it destroys the pipe).
    /// A pipe is in the loop's ready queue only while this holds.
    pub fn has_work(core: &XpsCore, id: PipeId) -> bool {
        let Some(pipe) = core.pipes.get(id) else { return false };
        let source = pipe.source.and_then(|source| core.sources.get(source));
        let sink = pipe.sink.and_then(|sink| core.sinks.get(sink));
        match (source, sink) {
            (None, None) => true,
            (Some(source), None) => source.active,
            (None, Some(sink)) => sink.active && (!pipe.is_readable() || sink.ready),
            (Some(_), Some(_)) => {
                XpsPipe::source_turn(core, id).is_some() || XpsPipe::sink_turn(core, id).is_some()
            }
        }
    }
    // ANCHOR_END: turns
}

impl XpsPipeSource {
    // ANCHOR: source_create
    /// `xps_pipe_source_create()`: a source for the owner and callbacks
    /// that `callbacks` names; not ready, and not active until attached to
    /// a pipe. C allocates it; here it is a value for the owner to store
    /// in `core.sources`, whose id the owner keeps.
    pub fn create(callbacks: EndCallbacks) -> XpsPipeSource {
        logger!(LogLevel::Debug, "xps_pipe_source_create()", "created pipe source");
        XpsPipeSource { pipe: None, ready: false, active: false, callbacks }
    }

    /// `xps_pipe_source_destroy()`: detaches the source from its pipe, if
    /// any, and takes it out of the core.
    pub fn destroy(core: &mut XpsCore, id: SourceId) {
        let Some(pipe) = core.sources.get(id).map(|source| source.pipe) else { return };
        if let Some(pipe) = pipe {
            // Cannot fail: the source names the pipe, so the pipe names it.
            let _ = XpsPipe::detach_source(core, pipe);
        }
        core.sources.remove(id);
        logger!(LogLevel::Debug, "xps_pipe_source_destroy()", "destroyed pipe source");
    }
    // ANCHOR_END: source_create

    // ANCHOR: source_write
    /// `xps_pipe_source_write()`: appends `buffer` to the source's pipe.
    ///
    /// The C function appends a copy and the caller frees its own buffer.
    /// Taking the buffer by value hands it over instead: the pipe keeps it,
    /// and no copy is needed. Fails if the source has no pipe.
    pub fn write(core: &mut XpsCore, id: SourceId, buffer: XpsBuffer) -> Result<(), XpsError> {
        let pipe = core.sources.get(id).and_then(|source| source.pipe).ok_or(XpsError::NotFound)?;
        let pipe = core.pipes.get_mut(pipe).ok_or(XpsError::NotFound)?;
        pipe.buff_list.append(buffer);
        Ok(())
    }

    /// Beyond the course: appends every buffer of `list` to the source's
    /// pipe, in order, as [`XpsPipeSource::write`] appends one: a session
    /// hands on what it took from another pipe without copying it. Fails
    /// (and gives the list back) if the source has no pipe.
    pub fn write_list(
        core: &mut XpsCore,
        id: SourceId,
        list: XpsBufferList,
    ) -> Result<(), (XpsError, XpsBufferList)> {
        let pipe = core.sources.get(id).and_then(|source| source.pipe);
        let Some(pipe) = pipe.and_then(|pipe| core.pipes.get_mut(pipe)) else {
            return Err((XpsError::NotFound, list));
        };
        pipe.buff_list.append_list(list);
        Ok(())
    }

    /// The pipe of source `id`, if it has one: for the source handler,
    /// which asks it how much room is left.
    pub fn pipe(core: &XpsCore, id: SourceId) -> Option<&XpsPipe> {
        core.pipes.get(core.sources.get(id)?.pipe?)
    }
    // ANCHOR_END: source_write

    // ANCHOR: source_ready
    /// Marks source `id` ready (its owner has bytes to write) or not, and
    /// puts its pipe in the loop's ready queue if that gives it work. The
    /// course's callers set `source->ready` themselves; here the flag and
    /// the queue cannot disagree.
    pub fn set_ready(core: &mut XpsCore, id: SourceId, ready: bool) {
        let Some(source) = core.sources.get_mut(id) else { return };
        source.ready = ready;
        if let Some(pipe) = source.pipe {
            XpsLoop::queue_pipe(core, pipe);
        }
    }

    /// True if the source is ready. (The server only asks through the pipe
    /// functions; the tests ask directly.)
    #[cfg(test)]
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// True if the source is attached to a pipe that still wants its bytes.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// The pipe the source is attached to, if any.
    pub fn pipe_id(&self) -> Option<PipeId> {
        self.pipe
    }
    // ANCHOR_END: source_ready
}

impl XpsPipeSink {
    // ANCHOR: sink_create
    /// `xps_pipe_sink_create()`: a sink for the owner and callbacks that
    /// `callbacks` names; not ready, and not active until attached to a
    /// pipe. A value for the owner to store in `core.sinks`, as above.
    pub fn create(callbacks: EndCallbacks) -> XpsPipeSink {
        logger!(LogLevel::Debug, "xps_pipe_sink_create()", "created pipe sink");
        XpsPipeSink { pipe: None, ready: false, active: false, callbacks }
    }

    /// `xps_pipe_sink_destroy()`: detaches the sink from its pipe, if any,
    /// and takes it out of the core.
    pub fn destroy(core: &mut XpsCore, id: SinkId) {
        let Some(pipe) = core.sinks.get(id).map(|sink| sink.pipe) else { return };
        if let Some(pipe) = pipe {
            // Cannot fail: the sink names the pipe, so the pipe names it.
            let _ = XpsPipe::detach_sink(core, pipe);
        }
        core.sinks.remove(id);
        logger!(LogLevel::Debug, "xps_pipe_sink_destroy()", "destroyed pipe sink");
    }
    // ANCHOR_END: sink_create

    // ANCHOR: sink_read
    /// `xps_pipe_sink_read()`: the bytes at the front of the sink's pipe,
    /// which stay there until [`XpsPipeSink::clear`]. Fills `slices` with
    /// the first buffers (see `XpsBufferList::front_slices`) and returns
    /// how many it filled.
    ///
    /// The C function copies `len` bytes into a new buffer. Lending the
    /// buffers as they are, for one `sendmsg()`, needs no copy; and since
    /// it borrows the core only to read, the caller can hold its socket
    /// (also in the core) at the same time.
    pub fn read<'a>(
        core: &'a XpsCore,
        id: SinkId,
        slices: &mut [IoSlice<'a>],
    ) -> Result<usize, XpsError> {
        let pipe = core.sinks.get(id).and_then(|sink| sink.pipe).ok_or(XpsError::NotFound)?;
        let pipe = core.pipes.get(pipe).ok_or(XpsError::NotFound)?;
        Ok(pipe.buff_list.front_slices(slices))
    }

    /// Beyond the course: takes everything the sink's pipe holds, its
    /// buffers as they are, and leaves the pipe empty. The course's session
    /// reads the whole pipe into a new buffer (`xps_pipe_sink_read()`, a
    /// copy) and then clears it; taking the buffers themselves moves them
    /// on with no copy. Fails if the sink has no pipe.
    pub fn take(core: &mut XpsCore, id: SinkId) -> Result<XpsBufferList, XpsError> {
        let pipe = core.sinks.get(id).and_then(|sink| sink.pipe).ok_or(XpsError::NotFound)?;
        let pipe = core.pipes.get_mut(pipe).ok_or(XpsError::NotFound)?;
        Ok(std::mem::take(&mut pipe.buff_list))
    }

    /// `xps_pipe_sink_clear()`: drops the first `len` bytes of the sink's
    /// pipe, once they have been sent. Fails if the sink has no pipe, or
    /// if the pipe holds fewer bytes (`XpsError::Permission`: clearing
    /// bytes that were never read is not allowed).
    pub fn clear(core: &mut XpsCore, id: SinkId, len: usize) -> Result<(), XpsError> {
        let pipe = core.sinks.get(id).and_then(|sink| sink.pipe).ok_or(XpsError::NotFound)?;
        let pipe = core.pipes.get_mut(pipe).ok_or(XpsError::NotFound)?;
        pipe.buff_list.clear(len).map_err(|_| XpsError::Permission)
    }
    // ANCHOR_END: sink_read

    // ANCHOR: sink_ready
    /// Marks sink `id` ready (its owner can take bytes) or not, and queues
    /// its pipe if that gives it work, as [`XpsPipeSource::set_ready`].
    pub fn set_ready(core: &mut XpsCore, id: SinkId, ready: bool) {
        let Some(sink) = core.sinks.get_mut(id) else { return };
        sink.ready = ready;
        if let Some(pipe) = sink.pipe {
            XpsLoop::queue_pipe(core, pipe);
        }
    }

    /// True if the sink is ready. (As for the source: for the tests.)
    #[cfg(test)]
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// True if the sink is attached to a pipe that may still have bytes for
    /// it.
    pub fn is_active(&self) -> bool {
        self.active
    }

    // ANCHOR_END: sink_ready
}

#[cfg(test)]
pub(crate) mod tests {
    //! Pipes between test ends whose callbacks only take notes: no sockets.
    use super::*;
    use crate::core::xps_loop::tests::{running_core, serial};
    use crate::core::xps_slots::Id;
    use std::cell::RefCell;

    thread_local! {
        /// Which callbacks ran, in order: ("source" | "sink" |
        /// "source closed" | "sink closed", ptr).
        static NOTES: RefCell<Vec<(&'static str, ConnectionId)>> = const { RefCell::new(Vec::new()) };
    }

    fn notes() -> Vec<(&'static str, ConnectionId)> {
        NOTES.with(|notes| notes.take())
    }

    fn note(what: &'static str, ptr: ConnectionId) {
        NOTES.with(|notes| notes.borrow_mut().push((what, ptr)));
    }

    fn on_source(_core: &mut XpsCore, ptr: ConnectionId) {
        note("source", ptr);
    }

    fn on_sink(_core: &mut XpsCore, ptr: ConnectionId) {
        note("sink", ptr);
    }

    fn on_source_close(_core: &mut XpsCore, ptr: ConnectionId) {
        note("source closed", ptr);
    }

    fn on_sink_close(_core: &mut XpsCore, ptr: ConnectionId) {
        note("sink closed", ptr);
    }

    /// The id of test owner `n`: the callbacks here only note it.
    fn owner(n: u32) -> ConnectionId {
        Id::for_test(n)
    }

    /// A source of test owner `n` that only takes notes.
    fn test_source(core: &mut XpsCore, n: u32) -> SourceId {
        let callbacks = EndCallbacks::Connection {
            ptr: owner(n),
            handler_cb: on_source,
            close_cb: on_source_close,
        };
        core.sources.insert(XpsPipeSource::create(callbacks))
    }

    /// A sink of test owner `n` that only takes notes.
    fn test_sink(core: &mut XpsCore, n: u32) -> SinkId {
        let callbacks = EndCallbacks::Connection {
            ptr: owner(n),
            handler_cb: on_sink,
            close_cb: on_sink_close,
        };
        core.sinks.insert(XpsPipeSink::create(callbacks))
    }

    /// A pipe of `thresh` bytes from a test source (owner 1) to a test sink
    /// (owner 2).
    pub(crate) fn test_pipe(core: &mut XpsCore, thresh: usize) -> (PipeId, SourceId, SinkId) {
        let source = test_source(core, 1);
        let sink = test_sink(core, 2);
        let pipe = XpsPipe::create(core, thresh, source, sink).unwrap();
        (pipe, source, sink)
    }

    fn write(core: &mut XpsCore, source: SourceId, bytes: &[u8]) {
        XpsPipeSource::write(core, source, XpsBuffer::create(bytes.len(), bytes)).unwrap();
    }

    #[test]
    fn create_attaches_both_ends_and_destroy_detaches_them() {
        let _serial = serial();
        let mut core = running_core();
        let (pipe, source, sink) = test_pipe(&mut core, 1000);
        assert_eq!(core.pipes.get(pipe).unwrap().source, Some(source));
        assert_eq!(core.sources.get(source).unwrap().pipe, Some(pipe));
        assert!(core.sources.get(source).unwrap().active && core.sinks.get(sink).unwrap().active);
        // An end joins one pipe at most.
        assert_eq!(XpsPipe::create(&mut core, 1000, source, sink), Err(XpsError::Permission));
        XpsPipe::destroy(&mut core, pipe);
        assert!(core.pipes.get(pipe).is_none());
        assert_eq!(core.sources.get(source).unwrap().pipe, None);
        assert!(!core.sinks.get(sink).unwrap().active);
        assert_eq!(
            XpsPipeSource::write(&mut core, source, XpsBuffer::create(1, b"x")),
            Err(XpsError::NotFound)
        );
        core.destroy();
    }

    #[test]
    fn what_the_source_writes_the_sink_reads_then_clears() {
        let _serial = serial();
        let mut core = running_core();
        let (pipe, source, sink) = test_pipe(&mut core, 1000);
        assert!(!core.pipes.get(pipe).unwrap().is_readable());
        write(&mut core, source, b"hello ");
        write(&mut core, source, b"world");
        let mut slices = [IoSlice::new(&[]); 4];
        let n = XpsPipeSink::read(&core, sink, &mut slices).unwrap();
        let read: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(read, b"hello world");
        XpsPipeSink::clear(&mut core, sink, 8).unwrap();
        let mut slices = [IoSlice::new(&[]); 4];
        let n = XpsPipeSink::read(&core, sink, &mut slices).unwrap();
        assert_eq!(&*slices[..n][0], b"rld");
        assert_eq!(XpsPipeSink::clear(&mut core, sink, 4), Err(XpsError::Permission));
        XpsPipeSink::clear(&mut core, sink, 3).unwrap();
        assert!(!core.pipes.get(pipe).unwrap().is_readable());
        core.destroy();
    }

    #[test]
    fn a_full_pipe_is_not_writable_until_the_sink_clears() {
        let _serial = serial();
        let mut core = running_core();
        let (pipe, source, sink) = test_pipe(&mut core, 1000);
        write(&mut core, source, &[b'x'; 900]);
        let pipe_now = core.pipes.get(pipe).unwrap();
        assert!(pipe_now.is_writable(), "900 bytes and one buffer's fields are under 1000");
        assert!(pipe_now.room() < 100);
        write(&mut core, source, &[b'x'; 100]);
        assert!(!core.pipes.get(pipe).unwrap().is_writable());
        assert_eq!(core.pipes.get(pipe).unwrap().room(), 0);
        XpsPipeSink::clear(&mut core, sink, 900).unwrap();
        assert!(core.pipes.get(pipe).unwrap().is_writable());
        core.destroy();
    }

    #[test]
    fn a_pipe_holding_exactly_its_threshold_is_full() {
        let _serial = serial();
        let mut core = running_core();
        let (pipe, source, _sink) = test_pipe(&mut core, 1000);
        write(&mut core, source, &[b'x'; 100]);
        let held = core.pipes.get(pipe).unwrap().buff_list.held();
        core.pipes.get_mut(pipe).unwrap().buff_thresh = held + 1;
        assert!(core.pipes.get(pipe).unwrap().is_writable(), "one byte under the threshold");
        core.pipes.get_mut(pipe).unwrap().buff_thresh = held;
        assert!(!core.pipes.get(pipe).unwrap().is_writable(), "at the threshold");
        core.destroy();
    }

    #[test]
    fn an_end_joins_one_pipe_at_most() {
        let _serial = serial();
        let mut core = running_core();
        let (pipe, source, sink) = test_pipe(&mut core, 1000);
        let (other_source, other_sink) = (test_source(&mut core, 3), test_sink(&mut core, 4));
        // create(): either end taken is enough to refuse.
        assert_eq!(XpsPipe::create(&mut core, 1000, source, other_sink), Err(XpsError::Permission));
        assert_eq!(XpsPipe::create(&mut core, 1000, other_source, sink), Err(XpsError::Permission));
        // A refusal creates nothing and leaves the free end free.
        assert_eq!(core.pipes.len(), 1, "a refused create left a pipe");
        assert_eq!(core.sources.get(other_source).unwrap().pipe, None);
        assert_eq!(core.sinks.get(other_sink).unwrap().pipe, None);
        // attach: the pipe has that end already, or the end has a pipe.
        assert_eq!(
            XpsPipe::attach_source(&mut core, pipe, other_source),
            Err(XpsError::Permission)
        );
        assert_eq!(XpsPipe::attach_sink(&mut core, pipe, other_sink), Err(XpsError::Permission));
        let (empty, free_source, free_sink) = test_pipe(&mut core, 1000);
        XpsPipe::detach_source(&mut core, empty).unwrap();
        XpsPipe::detach_sink(&mut core, empty).unwrap();
        assert_eq!(XpsPipe::attach_source(&mut core, empty, source), Err(XpsError::Permission));
        assert_eq!(XpsPipe::attach_sink(&mut core, empty, sink), Err(XpsError::Permission));
        XpsPipe::attach_source(&mut core, empty, free_source).unwrap();
        XpsPipe::attach_sink(&mut core, empty, free_sink).unwrap();
        core.destroy();
    }

    #[test]
    fn the_bound_counts_memory_not_bytes() {
        let _serial = serial();
        let mut core = running_core();
        let (pipe, source, _sink) = test_pipe(&mut core, 1_000_000);
        let mut bytes = 0;
        while core.pipes.get(pipe).unwrap().is_writable() {
            write(&mut core, source, &[b'x'; 64]);
            bytes += 64;
        }
        // Each 64-byte buffer also costs its own fields: the pipe is full
        // well before 1 MB of bytes.
        assert!(bytes < 700_000, "{bytes} bytes in 64-byte buffers fit under 1 MB");
        core.destroy();
    }

    #[test]
    fn handle_pipes_serves_only_ends_that_are_ready_and_have_work() {
        let _serial = serial();
        let mut core = running_core();
        let (pipe, source, sink) = test_pipe(&mut core, 1000);
        // Nothing ready: no work.
        assert!(!XpsPipe::has_work(&core, pipe));
        // A ready source with room is served; a ready sink of an empty
        // pipe is not.
        XpsPipeSource::set_ready(&mut core, source, true);
        XpsPipeSink::set_ready(&mut core, sink, true);
        XpsLoop::handle_pipes(&mut core);
        assert_eq!(notes(), vec![("source", owner(1))]);
        // Full: the source waits, the sink is served.
        write(&mut core, source, &[b'x'; 1000]);
        XpsLoop::queue_pipe(&mut core, pipe);
        XpsLoop::handle_pipes(&mut core);
        assert_eq!(notes(), vec![("sink", owner(2))]);
        core.destroy();
    }

    #[test]
    fn a_source_without_a_sink_is_closed() {
        let _serial = serial();
        let mut core = running_core();
        let (pipe, source, sink) = test_pipe(&mut core, 1000);
        XpsPipeSink::destroy(&mut core, sink);
        assert!(core.pipes.get(pipe).unwrap().queued, "a pipe that lost an end has work");
        assert!(!XpsLoop::handle_pipes(&mut core), "nothing is left to do");
        assert_eq!(notes(), vec![("source closed", owner(1))]);
        assert!(!core.sources.get(source).unwrap().active);
        // Closed once, not on every pass.
        XpsLoop::queue_pipe(&mut core, pipe);
        assert!(!XpsLoop::handle_pipes(&mut core));
        assert_eq!(notes(), vec![]);
        // Its owner lets it go: the pipe has no end left and is destroyed.
        XpsPipeSource::destroy(&mut core, source);
        assert!(!XpsLoop::handle_pipes(&mut core));
        assert!(core.pipes.get(pipe).is_none());
        assert!(core.pipes.is_empty());
        core.destroy();
    }

    #[test]
    fn a_sink_without_a_source_drains_the_pipe_then_is_closed() {
        let _serial = serial();
        let mut core = running_core();
        let (pipe, source, sink) = test_pipe(&mut core, 1000);
        write(&mut core, source, b"last words");
        XpsPipeSource::destroy(&mut core, source);
        // Bytes left and the sink not ready: wait for it, do not close.
        assert!(!XpsLoop::handle_pipes(&mut core));
        assert_eq!(notes(), vec![]);
        XpsPipeSink::set_ready(&mut core, sink, true);
        XpsLoop::handle_pipes(&mut core);
        assert_eq!(notes(), vec![("sink", owner(2))], "the sink gets what is left");
        XpsPipeSink::clear(&mut core, sink, 10).unwrap();
        XpsLoop::queue_pipe(&mut core, pipe);
        XpsLoop::handle_pipes(&mut core);
        assert_eq!(notes(), vec![("sink closed", owner(2))]);
        core.destroy();
    }

    #[test]
    fn the_entry_of_a_destroyed_pipe_never_reaches_a_new_one() {
        let _serial = serial();
        let mut core = running_core();
        let (old, source, _sink) = test_pipe(&mut core, 1000);
        XpsPipeSource::set_ready(&mut core, source, true);
        assert!(core.pipes.get(old).unwrap().queued);
        XpsPipe::destroy(&mut core, old);
        // A new pipe takes the old one's slot; its source is ready too, but
        // the pipe was never queued (the flag is set here without
        // `set_ready`, as only this module can): the old entry must not
        // serve it.
        let (new, new_source, _new_sink) = test_pipe(&mut core, 1000);
        assert_eq!(old.slot(), new.slot(), "the slot was not reused");
        assert_ne!(old, new);
        core.sources.get_mut(new_source).unwrap().ready = true;
        assert!(!XpsLoop::handle_pipes(&mut core));
        assert_eq!(notes(), vec![]);
        XpsLoop::queue_pipe(&mut core, new);
        XpsLoop::handle_pipes(&mut core);
        assert_eq!(notes(), vec![("source", owner(1))]);
        core.destroy();
    }

    #[test]
    fn set_ready_queues_the_pipe_only_when_that_gives_it_work() {
        let _serial = serial();
        let mut core = running_core();
        let (pipe, source, sink) = test_pipe(&mut core, 1000);
        // A ready sink with nothing to read is no work.
        XpsPipeSink::set_ready(&mut core, sink, true);
        assert!(!core.pipes.get(pipe).unwrap().queued);
        XpsPipeSource::set_ready(&mut core, source, true);
        assert!(core.pipes.get(pipe).unwrap().queued);
        assert_eq!(core.event_loop.ready_pipes.len(), 1);
        // Once queued is enough.
        XpsPipeSource::set_ready(&mut core, source, true);
        assert_eq!(core.event_loop.ready_pipes.len(), 1);
        core.destroy();
    }

    // ANCHOR: ready_from_birth_test
    #[test]
    fn a_source_ready_before_it_has_a_pipe_is_served_without_any_event() {
        let _serial = serial();
        let mut core = running_core();
        // Ready from birth, as a file is in stage 12: nothing to queue yet.
        let source = test_source(&mut core, 1);
        XpsPipeSource::set_ready(&mut core, source, true);
        assert!(core.event_loop.ready_pipes.is_empty());
        // Attaching it to a pipe with room is what queues the pipe.
        let sink = test_sink(&mut core, 2);
        let pipe = XpsPipe::create(&mut core, 1000, source, sink).unwrap();
        assert!(core.pipes.get(pipe).unwrap().queued);
        // One pass, no epoll_wait(): the source is served.
        XpsLoop::handle_pipes(&mut core);
        assert_eq!(notes(), vec![("source", owner(1))]);
        core.destroy();
    }
    // ANCHOR_END: ready_from_birth_test
}
