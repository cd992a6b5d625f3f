//! One module per connector.

pub mod arcgis;
pub mod ckan;
pub mod datasette;
pub mod file;
pub mod http;
pub mod opendatasoft;
pub mod socrata;
