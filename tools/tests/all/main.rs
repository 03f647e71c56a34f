//! The tools' tests, one module per tool, in one test binary.
//!
//! `cargo test` runs test binaries one after another, and most of these
//! tests wait on a server or a clock rather than compute: in one binary
//! they wait side by side, and the whole suite takes seconds less than
//! with a binary per tool. `cargo test -p tools --test all xps_check` runs
//! one tool's tests.

mod flags;
mod mkdata;
mod sender;
mod soak;
mod xps_bench;
mod xps_check;
mod xps_top;
