//! The core and loop modules: the two modules stage 7 adds.

pub mod xps_core;
pub mod xps_loop;
