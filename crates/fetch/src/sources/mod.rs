//! One module per kind of source.

pub mod file;
