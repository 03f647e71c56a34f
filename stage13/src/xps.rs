//! The "global header" of the server: the course's `xps.h`.
//!
//! In C every file includes `xps.h` to see the constants, the forward
//! declarations of the structs and the handler type. In Rust the module tree
//! already makes every type visible by path, so this file keeps only what is
//! genuinely shared: constants and the handler type.

use crate::core::xps_core::XpsCore;
use std::time::Duration;

// ANCHOR: constants
/// Backlog passed to `listen()`: how many finished handshakes the kernel
/// queues for us before it starts refusing new clients.
///
/// The course keeps 64. From this stage a proxied client costs a session
/// and a second connection before the next `accept()`, and a client that
/// connects in a loop outruns that: once 64 wait, the kernel drops the
/// next SYN, and that client tries again a whole second later (1,000
/// clients that connect and leave through the proxy: 13 s with 64, 0.2 s
/// with 511, with most of the 13 s spent asleep). 511 is nginx's default.
pub const DEFAULT_BACKLOG: i32 = 511;

/// How many more passes over the ready pipes the loop may make before it
/// asks epoll for news, while pipes still have work (not in the course).
/// From stage 13 a message crosses three pipes each way, and each hop
/// queues the next pipe for the next pass; without these passes each hop
/// costs an `epoll_wait()` of its own (5.9 per proxied message with one
/// client, against stage 11's 3.9). Bounded, so that pipes that always
/// have work (a fast download) cannot keep new events waiting.
pub const FOLLOW_UP_PASSES: usize = 2;

/// How many ready events one `epoll_wait()` may hand back at once.
pub const MAX_EPOLL_EVENTS: usize = 32;

/// Size of the buffer one `recv()` reads into: 100 KB, as in the course.
pub const DEFAULT_BUFFER_SIZE: usize = 100_000;

/// How much a pipe may hold before its source stops reading: 1 MB, as in
/// the course. A client that sends and never reads costs the server this
/// much, not everything it sends. (The Rust pipe counts the memory its
/// buffers hold, not only their bytes: see `XpsPipe::is_writable`.)
pub const DEFAULT_PIPE_BUFF_THRESH: usize = 1_000_000;

// `DEFAULT_NULLS_THRESH` (32) is how many NULL entries the course lets a
// list collect before `filter_nulls()` compacts it. The Rust core reuses
// empty slots instead (see `Slots` in xps_slots.rs), so it has no use.
// ANCHOR_END: constants

// ANCHOR: beyond_constants
/// How many queued buffers one writable event may hand to `sendmsg()` at
/// most. This bounds the work of one event, however long the backlog; 64
/// replies of up to 100 KB are more than a socket's send buffer takes at
/// once. (Not in the course; see `front_slices` in xps_buffer.rs.)
pub const MAX_SEND_BUFFERS: usize = 64;

/// A buffer list that held more than this many bytes when destroyed gives
/// the freed memory back to the system. (Not in the course; see
/// `XpsBufferList::destroy` in xps_buffer.rs.)
pub const MALLOC_TRIM_THRESH: usize = 1 << 20;

/// How much free memory glibc may keep at the top of its heap before it
/// gives it back to the system by itself (its `M_TRIM_THRESHOLD`; not in
/// the course; see `keep_free_memory_for_reuse` in xps_buffer.rs).
pub const HEAP_KEEP: usize = 1 << 20;

// ANCHOR: client_grace
/// The longest the server waits for a client's first bytes before closing
/// it when its upstream has failed (not in the course; see
/// `close_or_linger` in xps_connection.rs). An HTTP client sends its
/// request as soon as it has connected, so it comes well within this.
pub const CLIENT_GRACE: Duration = Duration::from_secs(1);
// ANCHOR_END: client_grace
// ANCHOR_END: beyond_constants

// ANCHOR: xps_error
/// The course's error codes, for the pipe functions of stage 10.
///
/// C returns one `int` for every kind of outcome: `OK`, `E_FAIL`,
/// `E_AGAIN`, `E_NEXT`, `E_NOTFOUND`, `E_PERMISSION`, `E_EOF`. In Rust
/// each becomes what reads best where it is used:
///
/// * `OK` is `Ok(..)`, and `E_FAIL` from a system call is the
///   `io::Error` that carries the OS's own reason (`errno`);
/// * `E_AGAIN` is `io::ErrorKind::WouldBlock`, which `recv()` and
///   `send()` on a non-blocking socket already return;
/// * `E_EOF` is `recv()` returning `Ok(0)`;
/// * `E_NOTFOUND`, `E_PERMISSION` and (from stage 12) `E_FAIL` are this
///   enum. The course first returns them from the file module (stage
///   12), where a missing file is not found, a file outside `public` not
///   allowed, and any other failure a fail; its pipe functions
///   fail with a bare `E_FAIL`. The port's pipe functions say which way
///   they failed with these two instead: they are about the server's own
///   objects, and an `io::Error` would make them look like the OS's;
/// * `E_NEXT` is for the stages after this one; it is added with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XpsError {
    /// The pipe, source or sink an id names no longer exists
    /// (`E_NOTFOUND`).
    NotFound,
    /// The request is not allowed in this state, such as attaching a
    /// source to a pipe that has one, or serving a file from outside
    /// `public` (`E_PERMISSION`).
    Permission,
    /// A system call failed (`E_FAIL`); the log line written where it
    /// failed says which call and why. (New in stage 12, for the file
    /// module: the course's `xps_file_create()` returns it.)
    Fail,
}

impl std::fmt::Display for XpsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            XpsError::NotFound => "not found",
            XpsError::Permission => "not allowed",
            XpsError::Fail => "failed (the log says why)",
        })
    }
}

impl std::error::Error for XpsError {}
// ANCHOR_END: xps_error

// ANCHOR: not_ported
// The C header defines `u_char`, `u_int` and `u_long`: Rust's `u8`, `u32` and
// `u64` already say their size in their name. And it declares every struct
// ahead of use (`struct xps_core_s;` ...), which Rust never needs.
//
// Stage 8 adds `#include <fcntl.h>` and `<errno.h>` to it; in Rust the
// `libc` crate brings `fcntl()` and the `io::Error` of a failed call
// carries `errno`.
// ANCHOR_END: not_ported

// ANCHOR: handler
/// The type of every callback the loop calls: `xps_handler_t` in C, for an
/// object named by an id of type `P`.
///
/// C passes a `void *ptr` to the listener or connection the event is for,
/// and each callback casts it back to the type it expects. Rust passes the
/// core that owns everything, plus `ptr`: the object's id in the core, whose
/// type says what kind of object it names (`ListenerId`, `ConnectionId`).
/// The callback looks the object up itself, so no raw pointer is ever
/// stored, and it cannot be handed the wrong kind of object: the compiler
/// would refuse.
pub type XpsHandler<P> = fn(core: &mut XpsCore, ptr: P);
// ANCHOR_END: handler
