//! The network modules: listeners and connections.

pub mod xps_connection;
pub mod xps_listener;
