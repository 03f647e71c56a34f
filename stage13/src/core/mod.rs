//! The core and loop modules stage 7 adds, the pipe module stage 10 adds,
//! the session module stage 13 adds, and the tables of ids in which the core keeps what it owns (not in the
//! course).

pub mod xps_core;
pub mod xps_loop;
pub mod xps_pipe;
pub mod xps_session;
pub mod xps_slots;
