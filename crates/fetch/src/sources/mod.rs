//! One module per connector.

pub mod file;
pub mod http;
pub mod socrata;
