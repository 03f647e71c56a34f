//! The "global header" of the server: the course's `xps.h`.
//!
//! In C every file includes `xps.h` to see the constants, the forward
//! declarations of the structs and the handler type. In Rust the module tree
//! already makes every type visible by path, so this file keeps only what is
//! genuinely shared: constants and the handler type.

use crate::core::xps_core::XpsCore;

// ANCHOR: constants
/// Backlog passed to `listen()`: how many finished handshakes the kernel
/// queues for us before it starts refusing new clients.
pub const DEFAULT_BACKLOG: i32 = 64;

/// How many ready events one `epoll_wait()` may hand back at once.
pub const MAX_EPOLL_EVENTS: usize = 32;

/// Size of the buffer one `recv()` reads into: 100 KB, as in the course.
pub const DEFAULT_BUFFER_SIZE: usize = 100_000;

// `DEFAULT_NULLS_THRESH` (32) is how many NULL entries the course lets a
// list collect before compacting it, in a later stage. The Rust core reuses
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
// ANCHOR_END: beyond_constants

// ANCHOR: not_ported
// The C header also defines error codes (`OK`, `E_FAIL`, `E_AGAIN`, ...;
// stage 7's header called success `E_SUCCESS`). Rust functions return
// `io::Result`, which carries the OS error itself, so no numeric codes are
// needed.
//
// It also defines `u_char`, `u_int` and `u_long`: Rust's `u8`, `u32` and
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
