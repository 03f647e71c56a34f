//! The "global header" of the server: the course's `xps.h`.
//!
//! In C every file includes `xps.h` to see the constants, the forward
//! declarations of the structs and the handler type. In Rust the module tree
//! already makes every type visible by path, so this file keeps only what is
//! genuinely shared: constants and, in this stage, the temporary
//! declarations of what `main.rs` holds.

// ANCHOR: constants
/// Backlog passed to `listen()`: how many finished handshakes the kernel
/// queues for us before it starts refusing new clients.
pub const DEFAULT_BACKLOG: i32 = 64;

/// How many ready events one `epoll_wait()` may hand back at once.
pub const MAX_EPOLL_EVENTS: usize = 32;

/// Size of the buffer one `recv()` reads into: 100 KB, as in the course.
pub const DEFAULT_BUFFER_SIZE: usize = 100_000;
// ANCHOR_END: constants

// It also defines `u_char`, `u_int` and `u_long`: Rust's `u8`, `u32` and
// `u64` already say their size in their name. And it declares every struct
// ahead of use (`struct xps_listener_s;` ...), which Rust never needs.

// ANCHOR: temporary
// Temporary declarations: in this stage the event loop and the lists of
// listeners and connections live in main.rs. The listener and connection
// modules reach them through these names; stage 7 removes them all.
pub use crate::{CONNECTIONS, LISTENERS, xps_loop_attach, xps_loop_detach};
// ANCHOR_END: temporary
