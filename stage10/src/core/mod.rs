//! The core and loop modules of stage 7, the pipe module stage 10 adds, and
//! the slot tables the pipes are kept in.

pub mod xps_core;
pub mod xps_loop;
pub mod xps_pipe;
pub mod xps_slots;
