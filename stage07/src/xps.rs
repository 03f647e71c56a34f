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
pub const DEFAULT_BACKLOG: i32 = 64;

/// How many ready events one `epoll_wait()` may hand back at once.
pub const MAX_EPOLL_EVENTS: usize = 32;

/// Size of the buffer one `recv()` reads into: 100 KB, as in the course.
pub const DEFAULT_BUFFER_SIZE: usize = 100_000;

// `DEFAULT_NULLS_THRESH` (32) is how many NULL entries the course lets a
// list collect before compacting it, in a later stage. The Rust core reuses
// empty slots instead (see `Slots` in xps_slots.rs), so it has no use.
// ANCHOR_END: constants

// ANCHOR: stall_check
/// How long one blocking `send()` may wait for room before it gives control
/// back, so that a server stuck on a client who never reads can say so in
/// its log (with `XPS_DEBUG=1`). The socket stays blocking: `send()` simply
/// returns `EAGAIN` after this long and is called again. (Not in the course.)
pub const SEND_STALL_CHECK: Duration = Duration::from_millis(100);
// ANCHOR_END: stall_check

// ANCHOR: not_ported
// The C header also defines error codes (`E_SUCCESS`, `E_FAIL`, `E_AGAIN`,
// ...). Rust functions return `io::Result`, which carries the OS error
// itself, so no numeric codes are needed.
//
// It also defines `u_char`, `u_int` and `u_long`: Rust's `u8`, `u32` and
// `u64` already say their size in their name. And it declares every struct
// ahead of use (`struct xps_core_s;` ...), which Rust never needs.
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
