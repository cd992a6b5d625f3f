//! One module per connector.

pub mod file;
pub mod socrata;
