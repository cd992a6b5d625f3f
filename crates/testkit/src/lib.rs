//! goalpost-testkit: servers that speak the real portal APIs on 127.0.0.1, for tests.
//!
//! - [`dataset`]: the San Francisco Fire Department calls every server serves, mutable
//!   between and during runs.
//! - [`socrata`], [`ckan`], [`opendatasoft`], [`arcgis`]: emulators of the SODA 2.x, CKAN
//!   Action API, Opendatasoft Explore v2.1 and ArcGIS FeatureServer query APIs, each with the
//!   paging rules, caps, quirks and error shapes of the real service.
//! - [`fault`]: scripted failures (status bursts, 429s, delays, truncated and malformed
//!   bodies, rows changing between pages) applied alike by every server.
//! - [`log`]: what each server was asked and how many rows it sent.
//! - [`files`]: a plain web server of the same rows as CSV, JSON, NDJSON and GeoJSON
//!   documents, with ETag / Last-Modified and 304 answers.
//! - [`server`]: the [`TestServer`] handle that runs a router and stops it on drop.

pub mod arcgis;
pub mod ckan;
pub mod dataset;
pub mod fault;
pub mod files;
pub mod log;
pub mod opendatasoft;
pub mod proxy;
mod query;
pub mod real;
pub mod server;
pub mod socrata;

pub use dataset::{Column, ColumnKind, Dataset, Row, SharedDataset, Value};
pub use fault::{Fault, FaultPlan, apply_fault};
pub use log::{LoggedRequest, RequestLog};
pub use server::TestServer;
