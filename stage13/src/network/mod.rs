//! The network modules: listeners, connections and upstreams.

pub mod xps_connection;
pub mod xps_listener;
pub mod xps_upstream;
