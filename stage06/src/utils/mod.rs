//! Helpers that every module uses: the logger and small utilities.

pub mod xps_logger;
pub mod xps_utils;
