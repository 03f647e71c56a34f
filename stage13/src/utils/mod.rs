//! Helpers that every module uses: the logger, buffers and small utilities.

pub mod xps_buffer;
pub mod xps_logger;
pub mod xps_utils;
