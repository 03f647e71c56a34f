//! Sessions: `xps_session.c`, new in stage 13.
//!
//! Until stage 12 the listener joined a client straight to whatever served
//! it: its upstream, its file, or itself. From this stage every client
//! gets a *session* in between, and all bytes go client ↔ session ↔
//! (upstream | file). The session has five pipe ends of its own, one per
//! pipe it takes part in:
//!
//! ```text
//!                    C2S                         S2U
//!   client.source ────────▶ client_sink   upstream_source ────────▶ upstream.sink
//!                                 │  ▲               ▲
//!                  from_client_buff ─┼───────────────┘
//!                                    │
//!   client.sink   ◀──────── client_source   upstream_sink ◀──────── upstream.source
//!                    S2C          ▲                │        U2S
//!                                 └─ to_client_buff ◀┤
//!                                                    │
//!                                      file_sink ◀───┴──────────── file.source
//!                                                           F2S
//! ```
//!
//! Each direction holds at most one chunk in the session
//! (`to_client_buff`, `from_client_buff`), and the session's ends are
//! ready only when that chunk can move: see [`set_to_client_buff`] and
//! [`set_from_client_buff`]. So a slow client stops the upstream or the
//! file as surely as in stages 11 and 12, one pipe further back.
//!
//! In stage 13 the session still chooses its backend by port: the first
//! (8001) dials the upstream, the second (8002) opens the sample file, the
//! others (8003, 8004) have nothing behind them. From stage 14 it will
//! choose from the parsed request.
//!
//! Ownership: the core owns every session in `core.sessions`, as it owns
//! connections and files; a session names its client, upstream and file by
//! id, and its five ends name it by its [`SessionId`] (their `ptr`).
//! Destroying a session destroys its ends and nothing else: the client,
//! the upstream and the file are closed by the pipes' one-sided rules, as
//! the course closes them.

use crate::core::xps_core::XpsCore;
use crate::core::xps_pipe::{EndCallbacks, SinkId, SourceId, XpsPipe, XpsPipeSink, XpsPipeSource};
use crate::core::xps_slots::{Id, Slots};
use crate::disk::xps_file::{FileId, xps_file_create, xps_file_destroy};
use crate::logger;
use crate::network::xps_connection::{ConnectionId, Origin, XpsConnection};
use crate::network::xps_listener::PortRole;
use crate::network::xps_upstream::xps_upstream_create;
use crate::utils::xps_buffer::XpsBufferList;
use crate::utils::xps_logger::LogLevel;
use crate::xps::{DEFAULT_BUFFER_SIZE, DEFAULT_PIPE_BUFF_THRESH, XpsError, XpsHandler};
use std::io;

/// The id of a session in `core.sessions`.
pub type SessionId = Id<XpsSession>;

// ANCHOR: into_session_thresh
/// How much the pipes *into* the session (C2S, U2S, F2S) may hold: one
/// chunk (what one `recv()` or one read of a file brings), so that the
/// session, which takes all its pipe holds (see [`take_chunk`]), holds one
/// chunk each way. The course gives every pipe `DEFAULT_PIPE_BUFF_THRESH` (1 MB);
/// but a session holds a chunk of its own between two pipes, and two full
/// pipes per direction would double what a client that never reads costs
/// (4.5 MB, where stage 11's two pipes cost 2.2 MB). A pipe into the
/// session only has to hold what arrives while the session's chunk waits:
/// the pipes *out of* it keep the full threshold, so the sockets still
/// get as much per `send()` as in stage 11.
const INTO_SESSION_THRESH: usize = DEFAULT_BUFFER_SIZE;
// ANCHOR_END: into_session_thresh

// ANCHOR: xps_session
/// One client's session: `xps_session_t` in C.
#[derive(Debug)]
pub struct XpsSession {
    /// The client it serves.
    pub client: ConnectionId,
    /// Its upstream, on the proxy port only.
    pub upstream: Option<ConnectionId>,
    /// True once the upstream has surely been reached: bytes came from it,
    /// or bytes written toward it have left the pipe (see
    /// [`upstream_source_handler`]).
    pub upstream_connected: bool,
    /// True once the upstream failed before it was reached (see
    /// [`upstream_error_res`]).
    pub upstream_error_res_set: bool,
    /// The bytes written toward the upstream so far, counted until it is
    /// known to be connected.
    pub upstream_write_bytes: usize,
    /// Its file, on the file port only.
    pub file: Option<FileId>,
    /// Session → client (the source of pipe S2C).
    pub client_source: SourceId,
    /// Client → session (the sink of pipe C2S).
    pub client_sink: SinkId,
    /// Session → upstream (the source of pipe S2U).
    pub upstream_source: SourceId,
    /// Upstream → session (the sink of pipe U2S).
    pub upstream_sink: SinkId,
    /// File → session (the sink of pipe F2S).
    pub file_sink: SinkId,
    /// The chunk waiting to go to the client, if any. (C: one
    /// `xps_buffer_t *`; here the buffers taken from the pipe, moved as
    /// they are.)
    pub to_client_buff: Option<XpsBufferList>,
    /// The chunk from the client waiting to go to the upstream, if any.
    pub from_client_buff: Option<XpsBufferList>,
}
// ANCHOR_END: xps_session

// ANCHOR: create
/// `xps_session_create()`: a session for `client`, with its backend as
/// the client's port says: an upstream dialled for it, a file opened for
/// it, or nothing. Returns the session's id.
///
/// On any failure nothing of the session is left (the course leaves a
/// dangling entry in `core->sessions` when a client pipe fails, and
/// ignores failures of the backend's pipes): the session, its ends and
/// its backend are destroyed, and the error returned. The client is the
/// caller's to close. When the upstream's socket cannot be made for lack
/// of fds, the error is the OS's own (`EMFILE`), so that the listener can
/// tell it from the rest; the file module reports its failures as an
/// `XpsError` (logged where they happen), whatever their cause.
pub fn xps_session_create(core: &mut XpsCore, client: ConnectionId) -> io::Result<SessionId> {
    let role = port_role(core, client).ok_or_else(not_found)?;
    let (client_out, client_in) = core
        .connections
        .get(client)
        .map(|connection| (connection.source, connection.sink))
        .ok_or_else(not_found)?;

    let XpsCore { sessions, sources, sinks, .. } = core;
    let id = sessions.insert_with(|id| XpsSession {
        client,
        upstream: None,
        upstream_connected: false,
        upstream_error_res_set: false,
        upstream_write_bytes: 0,
        file: None,
        client_source: new_source(sources, id, client_source_handler, client_source_close_handler),
        client_sink: new_sink(sinks, id, client_sink_handler, client_sink_close_handler),
        upstream_source: new_source(
            sources,
            id,
            upstream_source_handler,
            upstream_source_close_handler,
        ),
        upstream_sink: new_sink(sinks, id, upstream_sink_handler, upstream_sink_close_handler),
        file_sink: new_sink(sinks, id, file_sink_handler, file_sink_close_handler),
        to_client_buff: None,
        from_client_buff: None,
    });
    // The sinks are ready to take a chunk, the sources have none to give.
    let session = core.sessions.get(id).ok_or_else(not_found)?;
    let (client_source, client_sink) = (session.client_source, session.client_sink);
    for sink in [session.client_sink, session.upstream_sink, session.file_sink] {
        XpsPipeSink::set_ready(core, sink, true);
    }

    let piped = XpsPipe::create(core, INTO_SESSION_THRESH, client_out, client_sink)
        .and_then(|_| XpsPipe::create(core, DEFAULT_PIPE_BUFF_THRESH, client_source, client_in));
    if let Err(err) = piped {
        logger!(LogLevel::Error, "xps_session_create()", "failed to create client pipes: {err}");
        xps_session_destroy(core, id);
        return Err(io::Error::other(err));
    }
    logger!(LogLevel::Debug, "xps_session_create()", "created session");

    let joined = match role {
        PortRole::Proxy(upstream) => dial_upstream(core, id, &upstream.host, upstream.port),
        PortRole::File { public, path } => open_file(core, id, &public, path),
        PortRole::Nothing => Ok(()),
    };
    if let Err(err) = joined {
        xps_session_destroy(core, id);
        return Err(err);
    }
    Ok(id)
}

/// The error of an id that finds nothing (here: cannot happen, the object
/// was just made), as an `io::Error`.
fn not_found() -> io::Error {
    io::Error::other(XpsError::NotFound)
}

/// The role of the port `client` was accepted on, if its listener is
/// still there (the course reads `client->listener->port`).
fn port_role(core: &XpsCore, client: ConnectionId) -> Option<PortRole> {
    let Origin::Accepted(listener) = core.connections.get(client)?.origin else { return None };
    core.listeners.get(listener).map(|listener| listener.role.clone())
}

/// A session source for session `id` with these callbacks, in the core.
fn new_source(
    sources: &mut Slots<XpsPipeSource>,
    id: SessionId,
    handler_cb: XpsHandler<SessionId>,
    close_cb: XpsHandler<SessionId>,
) -> SourceId {
    sources.insert(XpsPipeSource::create(EndCallbacks::Session { ptr: id, handler_cb, close_cb }))
}

/// A session sink for session `id` with these callbacks, in the core.
fn new_sink(
    sinks: &mut Slots<XpsPipeSink>,
    id: SessionId,
    handler_cb: XpsHandler<SessionId>,
    close_cb: XpsHandler<SessionId>,
) -> SinkId {
    sinks.insert(XpsPipeSink::create(EndCallbacks::Session { ptr: id, handler_cb, close_cb }))
}
// ANCHOR_END: create

// ANCHOR: backends
/// The proxy port's backend: dials the upstream for session `id`, then
/// joins them with S2U and U2S. On failure the upstream made is destroyed
/// again; the session is the caller's to destroy.
fn dial_upstream(core: &mut XpsCore, id: SessionId, host: &str, port: u16) -> io::Result<()> {
    // xps_upstream_create() has logged why, unless fds ran out (the
    // listener logs that, once).
    let upstream = xps_upstream_create(core, host, port)?;
    let session = core.sessions.get_mut(id).ok_or_else(not_found)?;
    session.upstream = Some(upstream);
    let (to_upstream, from_upstream) = (session.upstream_source, session.upstream_sink);
    let (upstream_out, upstream_in) =
        core.connections.get(upstream).map(|c| (c.source, c.sink)).ok_or_else(not_found)?;
    let pipes = [
        (to_upstream, upstream_in, DEFAULT_PIPE_BUFF_THRESH),
        (upstream_out, from_upstream, INTO_SESSION_THRESH),
    ];
    join(core, &pipes).inspect_err(|_| {
        XpsConnection::destroy(core, upstream);
    })
}

/// The file port's backend: opens `path` inside `public` for session
/// `id`, then joins it to the session with F2S. On failure the file is
/// destroyed again; the session is the caller's to destroy.
fn open_file(
    core: &mut XpsCore,
    id: SessionId,
    public: &std::path::Path,
    path: &str,
) -> io::Result<()> {
    let session = core.sessions.get(id).ok_or_else(not_found)?;
    // A file client is not expected to say anything: once its file is
    // sent (or refused) it is closed at once, not kept waiting for a
    // request as a proxy client is (see close_or_linger).
    if let Some(client) = core.connections.get_mut(session.client) {
        client.heard = true;
    }
    // xps_file_create() has logged why.
    let file = xps_file_create(core, public, path).map_err(io::Error::other)?;
    let session = core.sessions.get_mut(id).ok_or_else(not_found)?;
    session.file = Some(file);
    let file_sink = session.file_sink;
    let file_source = core.files.get(file).map(|file| file.source).ok_or_else(not_found)?;
    join(core, &[(file_source, file_sink, INTO_SESSION_THRESH)])
        .inspect_err(|_| xps_file_destroy(core, file))
}

/// Creates one pipe per `(source, sink, threshold)`. On a failure
/// (logged), the pipes made so far lose their ends with their owners, and
/// `handle_pipes()` destroys them.
fn join(core: &mut XpsCore, pipes: &[(SourceId, SinkId, usize)]) -> io::Result<()> {
    for &(source, sink, thresh) in pipes {
        XpsPipe::create(core, thresh, source, sink).map_err(|err| {
            logger!(LogLevel::Error, "xps_session_create()", "xps_pipe_create() failed: {err}");
            io::Error::other(err)
        })?;
    }
    Ok(())
}
// ANCHOR_END: backends

// ANCHOR: destroy
/// `xps_session_destroy()`: destroys the session's five ends (each leaves
/// its pipe) and whatever chunks it still holds. The client, the upstream
/// and the file stay: each pipe that lost an end here closes its other
/// end's owner once drained.
pub fn xps_session_destroy(core: &mut XpsCore, id: SessionId) {
    let Some(session) = core.sessions.remove(id) else { return };
    for source in [session.client_source, session.upstream_source] {
        XpsPipeSource::destroy(core, source);
    }
    for sink in [session.client_sink, session.upstream_sink, session.file_sink] {
        XpsPipeSink::destroy(core, sink);
    }
    // The chunks, if any, are freed with `session`.
    logger!(LogLevel::Debug, "xps_session_destroy()", "destroyed session");
}
// ANCHOR_END: destroy

// ANCHOR: flow_control
/// `set_to_client_buff()`: stores the chunk for the client (or none) and
/// sets who is ready: with a chunk, the session's client source is (it
/// has something to write) and its upstream and file sinks are not (there
/// is no room for another); without one, the other way round.
fn set_to_client_buff(core: &mut XpsCore, id: SessionId, buff: Option<XpsBufferList>) {
    let Some(session) = core.sessions.get_mut(id) else { return };
    let holding = buff.is_some();
    session.to_client_buff = buff;
    let (client_source, upstream_sink, file_sink) =
        (session.client_source, session.upstream_sink, session.file_sink);
    XpsPipeSource::set_ready(core, client_source, holding);
    XpsPipeSink::set_ready(core, upstream_sink, !holding);
    XpsPipeSink::set_ready(core, file_sink, !holding);
}

/// `set_from_client_buff()`: the same for the chunk from the client: with
/// one, the upstream source is ready and the client sink is not.
fn set_from_client_buff(core: &mut XpsCore, id: SessionId, buff: Option<XpsBufferList>) {
    let Some(session) = core.sessions.get_mut(id) else { return };
    let holding = buff.is_some();
    session.from_client_buff = buff;
    let (client_sink, upstream_source) = (session.client_sink, session.upstream_source);
    XpsPipeSink::set_ready(core, client_sink, !holding);
    XpsPipeSource::set_ready(core, upstream_source, holding);
}
// ANCHOR_END: flow_control

// ANCHOR: source_handlers
/// The S2C source's handler (`client_source_handler()`): moves the chunk
/// for the client into S2C. Called only while there is one (the source is
/// ready only then) and S2C has room.
fn client_source_handler(core: &mut XpsCore, id: SessionId) {
    let Some(session) = core.sessions.get_mut(id) else { return };
    let Some(buff) = session.to_client_buff.take() else { return };
    let source = session.client_source;
    if let Err((err, buff)) = XpsPipeSource::write_list(core, source, buff) {
        logger!(
            LogLevel::Error,
            "client_source_handler()",
            "xps_pipe_source_write() failed: {err}"
        );
        if let Some(session) = core.sessions.get_mut(id) {
            session.to_client_buff = Some(buff);
        }
        return;
    }
    set_to_client_buff(core, id, None);
    session_check_destroy(core, id);
}

/// The S2U source's handler (`upstream_source_handler()`): moves the
/// client's chunk into S2U.
///
/// It also finds out whether the upstream has been reached, before any
/// byte came from it. The bytes just written are still in S2U; if all
/// written so far are more than S2U holds, some have left it, into the
/// upstream's socket: so the connection was made.
fn upstream_source_handler(core: &mut XpsCore, id: SessionId) {
    let Some(session) = core.sessions.get_mut(id) else { return };
    let Some(buff) = session.from_client_buff.take() else { return };
    let (source, len) = (session.upstream_source, buff.len());
    if let Err((err, buff)) = XpsPipeSource::write_list(core, source, buff) {
        logger!(
            LogLevel::Error,
            "upstream_source_handler()",
            "xps_pipe_source_write() failed: {err}"
        );
        if let Some(session) = core.sessions.get_mut(id) {
            session.from_client_buff = Some(buff);
        }
        return;
    }
    let in_pipe = XpsPipeSource::pipe(core, source).map_or(0, |pipe| pipe.buff_list.len());
    let Some(session) = core.sessions.get_mut(id) else { return };
    if !session.upstream_connected {
        session.upstream_write_bytes += len;
        if session.upstream_write_bytes > in_pipe {
            session.upstream_connected = true;
        }
    }
    set_from_client_buff(core, id, None);
    session_check_destroy(core, id);
}
// ANCHOR_END: source_handlers

// ANCHOR: sink_handlers
/// Takes the next chunk out of the pipe of session sink `sink`: all it
/// holds, which a pipe into a session keeps to one chunk
/// ([`INTO_SESSION_THRESH`]).
///
/// The course reads the whole pipe into one new buffer, and the next
/// pipe's write copies it again: two copies per hop. Taking the buffers
/// themselves, and writing them on as they are, copies nothing.
fn take_chunk(core: &mut XpsCore, sink: SinkId, handler: &str) -> Option<XpsBufferList> {
    match XpsPipeSink::take(core, sink) {
        Ok(chunk) if !chunk.is_empty() => Some(chunk),
        // Called only while the pipe holds bytes: nothing to do.
        Ok(_) => None,
        Err(err) => {
            logger!(LogLevel::Error, handler, "xps_pipe_sink_read() failed: {err}");
            None
        }
    }
}

/// The C2S sink's handler (`client_sink_handler()`): takes the client's
/// next chunk, to go to the upstream.
///
/// Beyond the course: a session with no upstream throws it away. The
/// course keeps it, and C2S fills; but then a client that closes is never
/// noticed (its end of input waits behind the full pipe), and its
/// connection would stay open for ever.
fn client_sink_handler(core: &mut XpsCore, id: SessionId) {
    let Some(session) = core.sessions.get(id) else { return };
    let (sink, has_upstream) = (session.client_sink, session.upstream.is_some());
    let Some(chunk) = take_chunk(core, sink, "client_sink_handler()") else { return };
    if has_upstream {
        set_from_client_buff(core, id, Some(chunk));
    } else {
        logger!(
            LogLevel::Debug,
            "client_sink_handler()",
            "nothing behind this session: {} bytes dropped",
            chunk.len()
        );
    }
}

/// The U2S sink's handler (`upstream_sink_handler()`): the upstream has
/// answered, so it is connected; takes its next chunk, for the client.
fn upstream_sink_handler(core: &mut XpsCore, id: SessionId) {
    let Some(session) = core.sessions.get_mut(id) else { return };
    session.upstream_connected = true;
    let sink = session.upstream_sink;
    if let Some(chunk) = take_chunk(core, sink, "upstream_sink_handler()") {
        set_to_client_buff(core, id, Some(chunk));
    }
}

/// The F2S sink's handler (`file_sink_handler()`): takes the file's next
/// chunk, for the client.
fn file_sink_handler(core: &mut XpsCore, id: SessionId) {
    let Some(sink) = core.sessions.get(id).map(|session| session.file_sink) else { return };
    if let Some(chunk) = take_chunk(core, sink, "file_sink_handler()") {
        set_to_client_buff(core, id, Some(chunk));
    }
}
// ANCHOR_END: sink_handlers

// ANCHOR: close_handlers
/// The close handler of the S2C source, the C2S sink and the F2S sink: a
/// flow may have ended.
fn client_source_close_handler(core: &mut XpsCore, id: SessionId) {
    session_check_destroy(core, id);
}

/// See [`client_source_close_handler`].
fn client_sink_close_handler(core: &mut XpsCore, id: SessionId) {
    session_check_destroy(core, id);
}

/// See [`client_source_close_handler`].
fn file_sink_close_handler(core: &mut XpsCore, id: SessionId) {
    session_check_destroy(core, id);
}

/// The close handler of both upstream ends: if the upstream went before it
/// was ever reached, that is an error the client should hear of (see
/// [`upstream_error_res`]); then a flow may have ended.
fn upstream_source_close_handler(core: &mut XpsCore, id: SessionId) {
    upstream_gone(core, id);
}

/// See [`upstream_source_close_handler`].
fn upstream_sink_close_handler(core: &mut XpsCore, id: SessionId) {
    upstream_gone(core, id);
}

/// What both upstream close handlers do.
fn upstream_gone(core: &mut XpsCore, id: SessionId) {
    let Some(session) = core.sessions.get(id) else { return };
    if !session.upstream_connected && !session.upstream_error_res_set {
        upstream_error_res(core, id);
    }
    session_check_destroy(core, id);
}

/// `upstream_error_res()`: notes that the upstream failed before it was
/// reached. That is all it does, as in the course until its HTTP stages:
/// a reply here (a 502) would be bytes the client of a plain TCP proxy
/// never asked for, and the course's tester, which expects the
/// connection to simply close, would wait for ever. The client is closed
/// without a byte, by the pipes, once the session is gone.
fn upstream_error_res(core: &mut XpsCore, id: SessionId) {
    let Some(session) = core.sessions.get_mut(id) else { return };
    session.upstream_error_res_set = true;
    logger!(LogLevel::Debug, "upstream_error_res()", "the upstream failed before it was reached");
}
// ANCHOR_END: close_handlers

// ANCHOR: check_destroy
/// `session_check_destroy()`: destroys the session once no flow through
/// it is possible any more. A flow is possible while the end that takes
/// it onwards is active and there is something to take: an active end
/// bringing more, or a chunk held.
///
/// Beyond the course, a direction that has ended is passed on at once:
/// its onward end leaves its pipe, which drains and then half-closes that
/// peer (`shutdown(SHUT_WR)`, see `connection_sink_close_handler`). A
/// client that half-closes after its request so lets the upstream see the
/// end of it, and still gets the whole answer; an upstream that
/// half-closes lets the client see the end of the answer. In the course
/// the session waits until both directions have ended.
fn session_check_destroy(core: &mut XpsCore, id: SessionId) {
    let Some(session) = core.sessions.get(id) else { return };
    let source_active = |source| core.sources.get(source).is_some_and(XpsPipeSource::is_active);
    let sink_active = |sink| core.sinks.get(sink).is_some_and(XpsPipeSink::is_active);
    let from_client = sink_active(session.client_sink) || session.from_client_buff.is_some();
    let from_upstream = sink_active(session.upstream_sink) || session.to_client_buff.is_some();
    let from_file = sink_active(session.file_sink) || session.to_client_buff.is_some();
    let to_upstream = source_active(session.upstream_source);
    let to_client = source_active(session.client_source);

    let client_to_upstream = to_upstream && from_client;
    let upstream_to_client = to_client && from_upstream;
    let file_to_client = to_client && from_file;
    if !client_to_upstream && !upstream_to_client && !file_to_client {
        xps_session_destroy(core, id);
        return;
    }
    // The session lives on: pass on a direction that has ended.
    let (upstream_source, client_source) = (session.upstream_source, session.client_source);
    if to_upstream && !from_client {
        leave_pipe(core, upstream_source);
    }
    if to_client && !upstream_to_client && !file_to_client {
        leave_pipe(core, client_source);
    }
}

/// Detaches session source `source` from its pipe, if it has one: what the
/// pipe holds still drains, then the sink's owner learns that nothing more
/// comes.
fn leave_pipe(core: &mut XpsCore, source: SourceId) {
    if let Some(pipe) = core.sources.get(source).and_then(XpsPipeSource::pipe_id) {
        // Cannot fail: the source names the pipe, so the pipe names it.
        let _ = XpsPipe::detach_source(core, pipe);
    }
}
// ANCHOR_END: check_destroy

#[cfg(test)]
mod tests {
    //! Sessions on a real listener and client socket, driven by hand: the
    //! handlers are called directly, no loop runs.
    use super::*;
    use crate::core::xps_loop::tests::{running_core, serial};
    use crate::core::xps_pipe::tests::test_pipe;
    use crate::network::xps_listener::{ListenerId, XpsListener};
    use crate::utils::xps_buffer::XpsBuffer;
    use crate::utils::xps_utils::make_socket_non_blocking;
    use std::net::TcpStream;
    use std::os::fd::AsRawFd;

    /// A listener of `role` in `core`, and a client connection it
    /// accepted, with no session yet; the client's socket too.
    fn client_of(core: &mut XpsCore, role: PortRole) -> (ListenerId, ConnectionId, TcpStream) {
        let listener = XpsListener::create(core, "127.0.0.1", 0, role).unwrap();
        let socket = &core.listeners.get(listener).unwrap().socket;
        let client = TcpStream::connect(socket.local_addr().unwrap()).unwrap();
        let (accepted, _peer) = socket.accept().unwrap();
        make_socket_non_blocking(accepted.as_raw_fd()).unwrap();
        let origin = Origin::Accepted(listener);
        let id = XpsConnection::create(core, accepted, origin, "").unwrap();
        (listener, id, client)
    }

    /// A session with nothing behind it, and its client's socket.
    fn empty_session(core: &mut XpsCore) -> (SessionId, TcpStream) {
        let (_, client, socket) = client_of(core, PortRole::Nothing);
        (xps_session_create(core, client).unwrap(), socket)
    }

    fn session(core: &XpsCore, id: SessionId) -> &XpsSession {
        core.sessions.get(id).unwrap()
    }

    fn chunk(bytes: &[u8]) -> XpsBufferList {
        let mut list = XpsBufferList::create();
        list.append(XpsBuffer::create(bytes.len(), bytes));
        list
    }

    fn source_ready(core: &XpsCore, source: SourceId) -> bool {
        core.sources.get(source).unwrap().is_ready()
    }

    fn sink_ready(core: &XpsCore, sink: SinkId) -> bool {
        core.sinks.get(sink).unwrap().is_ready()
    }

    #[test]
    fn a_new_session_has_five_ends_and_two_pipes_and_its_sinks_are_ready() {
        let _serial = serial();
        let mut core = running_core();
        let (id, _client) = empty_session(&mut core);
        let s = session(&core, id);
        assert_eq!((core.sources.len(), core.sinks.len()), (3, 4), "client's two + session's five");
        assert_eq!(core.pipes.len(), 2, "C2S and S2C");
        assert!(sink_ready(&core, s.client_sink) && sink_ready(&core, s.upstream_sink));
        assert!(sink_ready(&core, s.file_sink));
        assert!(!source_ready(&core, s.client_source) && !source_ready(&core, s.upstream_source));
        assert!(s.upstream.is_none() && s.file.is_none());
        core.destroy();
    }

    #[test]
    fn set_to_client_buff_makes_one_side_ready_at_a_time() {
        let _serial = serial();
        let mut core = running_core();
        let (id, _client) = empty_session(&mut core);
        let s = session(&core, id);
        let (client_source, upstream_sink, file_sink) =
            (s.client_source, s.upstream_sink, s.file_sink);
        set_to_client_buff(&mut core, id, Some(chunk(b"for the client")));
        assert!(source_ready(&core, client_source));
        assert!(!sink_ready(&core, upstream_sink) && !sink_ready(&core, file_sink));
        assert_eq!(session(&core, id).to_client_buff.as_ref().map(XpsBufferList::len), Some(14));
        set_to_client_buff(&mut core, id, None);
        assert!(!source_ready(&core, client_source));
        assert!(sink_ready(&core, upstream_sink) && sink_ready(&core, file_sink));
        assert!(session(&core, id).to_client_buff.is_none());
        core.destroy();
    }

    #[test]
    fn set_from_client_buff_makes_one_side_ready_at_a_time() {
        let _serial = serial();
        let mut core = running_core();
        let (id, _client) = empty_session(&mut core);
        let (client_sink, upstream_source) =
            (session(&core, id).client_sink, session(&core, id).upstream_source);
        set_from_client_buff(&mut core, id, Some(chunk(b"for the upstream")));
        assert!(source_ready(&core, upstream_source) && !sink_ready(&core, client_sink));
        assert!(session(&core, id).from_client_buff.is_some());
        set_from_client_buff(&mut core, id, None);
        assert!(!source_ready(&core, upstream_source) && sink_ready(&core, client_sink));
        assert!(session(&core, id).from_client_buff.is_none());
        core.destroy();
    }

    /// The course pushes the session into the core before it makes the
    /// client pipes, and returns NULL when they fail: its slot dangles.
    /// Here nothing of it is left.
    #[test]
    fn a_session_whose_client_pipes_fail_leaves_nothing_behind() {
        let _serial = serial();
        let mut core = running_core();
        let (_, client, _socket) = client_of(&mut core, PortRole::Nothing);
        // The client's source is taken already: C2S cannot be made.
        let (pipe, test_source, _) = test_pipe(&mut core, 1000);
        XpsPipe::detach_source(&mut core, pipe).unwrap();
        XpsPipeSource::destroy(&mut core, test_source);
        let client_source = core.connections.get(client).unwrap().source;
        XpsPipe::attach_source(&mut core, pipe, client_source).unwrap();
        let (sources, sinks, pipes) = (core.sources.len(), core.sinks.len(), core.pipes.len());

        assert!(xps_session_create(&mut core, client).is_err());
        assert!(core.sessions.is_empty(), "the session was left in the core");
        assert_eq!(core.sources.len(), sources, "the session's sources were left");
        assert_eq!(core.sinks.len(), sinks, "the session's sinks were left");
        assert_eq!(core.pipes.len(), pipes, "a client pipe was made after all");
        core.destroy();
    }

    /// The course ignores the result of the backend's pipe: here a file
    /// whose pipe cannot be made is destroyed again, and the error comes
    /// back (the caller then destroys the session).
    #[test]
    fn a_backend_whose_pipe_fails_is_destroyed_again() {
        let _serial = serial();
        let mut core = running_core();
        let (id, _client) = empty_session(&mut core);
        // The session's file sink is taken already: F2S cannot be made.
        let (pipe, _, test_sink) = test_pipe(&mut core, 1000);
        XpsPipe::detach_sink(&mut core, pipe).unwrap();
        XpsPipeSink::destroy(&mut core, test_sink);
        let file_sink = session(&core, id).file_sink;
        XpsPipe::attach_sink(&mut core, pipe, file_sink).unwrap();
        let public = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("public");

        assert!(open_file(&mut core, id, &public, "sample.txt").is_err());
        assert!(core.files.is_empty(), "the file was left open");
        core.destroy();
    }

    #[test]
    fn a_session_lives_while_a_chunk_waits_for_the_client_and_no_longer() {
        let _serial = serial();
        let mut core = running_core();
        let (id, _client) = empty_session(&mut core);
        let (sources, sinks) = (core.sources.len(), core.sinks.len());
        set_to_client_buff(&mut core, id, Some(chunk(b"still to send")));
        session_check_destroy(&mut core, id);
        assert!(core.sessions.get(id).is_some(), "destroyed with a chunk for its client");
        set_to_client_buff(&mut core, id, None);
        session_check_destroy(&mut core, id);
        assert!(core.sessions.get(id).is_none(), "no flow left, yet not destroyed");
        assert_eq!(core.sources.len(), sources - 2, "its two sources are left");
        assert_eq!(core.sinks.len(), sinks - 3, "its three sinks are left");
        core.destroy();
    }

    /// A session whose upstream source writes into a pipe of its own.
    fn with_upstream_pipe(core: &mut XpsCore) -> (SessionId, SinkId, TcpStream) {
        let (id, client) = empty_session(core);
        let (pipe, test_source, test_sink) = test_pipe(core, 1000);
        XpsPipe::detach_source(core, pipe).unwrap();
        XpsPipeSource::destroy(core, test_source);
        let upstream_source = session(core, id).upstream_source;
        XpsPipe::attach_source(core, pipe, upstream_source).unwrap();
        (id, test_sink, client)
    }

    /// The upstream counts as reached once more bytes were written toward
    /// it than its pipe still holds: some have left the pipe.
    #[test]
    fn the_upstream_is_connected_once_written_bytes_have_left_its_pipe() {
        let _serial = serial();
        let mut core = running_core();
        let (id, upstream_sink, _client) = with_upstream_pipe(&mut core);
        set_from_client_buff(&mut core, id, Some(chunk(b"hello")));
        upstream_source_handler(&mut core, id);
        let s = session(&core, id);
        assert_eq!((s.upstream_write_bytes, s.upstream_connected), (5, false));
        assert!(s.from_client_buff.is_none(), "the chunk was not handed on");
        XpsPipeSink::clear(&mut core, upstream_sink, 5).unwrap();
        set_from_client_buff(&mut core, id, Some(chunk(b"abc")));
        upstream_source_handler(&mut core, id);
        let s = session(&core, id);
        assert_eq!((s.upstream_write_bytes, s.upstream_connected), (8, true));
        core.destroy();
    }

    /// Gone before it was reached: the error is noted (and nothing is
    /// sent). Gone after: nothing to note.
    #[test]
    fn an_upstream_gone_before_it_was_reached_is_an_error_and_after_is_not() {
        let _serial = serial();
        let mut core = running_core();
        for connected in [false, true] {
            let (id, _client) = empty_session(&mut core);
            set_to_client_buff(&mut core, id, Some(chunk(b"keeps the session")));
            core.sessions.get_mut(id).unwrap().upstream_connected = connected;
            upstream_sink_close_handler(&mut core, id);
            assert_eq!(session(&core, id).upstream_error_res_set, !connected);
            xps_session_destroy(&mut core, id);
        }
        core.destroy();
    }

    /// What the client sends becomes the session's chunk for the upstream,
    /// moved out of C2S; with nothing behind the session it is dropped.
    #[test]
    fn the_client_sink_takes_a_chunk_or_drops_it_when_nothing_is_behind() {
        let _serial = serial();
        let mut core = running_core();
        for has_upstream in [false, true] {
            let (id, _client) = empty_session(&mut core);
            let client = session(&core, id).client;
            if has_upstream {
                // Any connection will do: only the field is looked at.
                core.sessions.get_mut(id).unwrap().upstream = Some(client);
            }
            let client_source = core.connections.get(client).unwrap().source;
            for part in [&b"one"[..], b"two", b"three"] {
                XpsPipeSource::write(&mut core, client_source, XpsBuffer::create(0, part)).unwrap();
            }
            client_sink_handler(&mut core, id);
            let taken = session(&core, id).from_client_buff.as_ref().map(XpsBufferList::len);
            let left = XpsPipeSource::pipe(&core, client_source).unwrap().buff_list.len();
            assert_eq!(left, 0, "the pipe was not emptied");
            if has_upstream {
                assert_eq!(taken, Some(11), "not all the pipe held");
                assert!(!sink_ready(&core, session(&core, id).client_sink));
            } else {
                assert_eq!(taken, None, "not dropped");
                assert!(sink_ready(&core, session(&core, id).client_sink));
            }
            xps_session_destroy(&mut core, id);
        }
        core.destroy();
    }
}
