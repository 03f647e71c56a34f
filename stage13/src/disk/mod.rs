//! The disk modules (new in stage 12): files served through pipes, and
//! the MIME types their names imply.

pub mod xps_file;
pub mod xps_mime;
