//! goalpost-fetch: getting rows out of wherever a city publishes them.
//!
//! Every connector implements one trait, [`Source`]: it hands out [`RawPage`]s until the
//! source is exhausted. A raw page is an Arrow batch whose columns are the fields as the source
//! named them and whose values are the source's text, untyped (numbers from JSON are written
//! as their JSON text, nested values as JSON). Typing is the table stage's job, so every
//! connector stays a thin, faithful reader and every typing error is reported the same way.
//!
//! Web connectors talk through one [`HttpClient`] (retries, rate limits, size caps, recording
//! for replay). Each decides from the source's saved [`SourceState`] whether this run loads
//! everything ([`LoadKind::Full`]), only what changed since the watermark
//! ([`LoadKind::Changes`]), or nothing because the source has not changed
//! ([`LoadKind::Unchanged`]), and each proves a full load complete against the row count the
//! portal reports before the run may store it.
//!
//! Build a source from its pipeline config with [`open_source`].

mod csv_chunks;
mod csv_pages;
mod decode;
pub mod discover;
pub mod http;
mod page;
pub mod sources;
pub mod tape;

pub use decode::{records_page, records_page_with_columns};
pub use http::{FetchStats, HttpClient, Problem, Request, Response};
pub use page::{RawPage, RowOrigin};
pub use tape::{Recorder, Replayer, RunManifest, Tape, prune_recordings};

use async_trait::async_trait;
use goalpost_spec::SourceSpec;
use std::path::PathBuf;
use std::sync::Arc;

/// A source's refresh state, kept between runs (in the state store, as JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceState {
    /// The newest value of the source's update field seen so far, as the portal wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    /// A portal's own modification stamp of the dataset (CKAN `metadata_modified`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
}

impl SourceState {
    /// Read a saved state; one this version cannot read only costs a full reload.
    pub fn from_json(text: &str) -> Self {
        serde_json::from_str(text).unwrap_or_default()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("source state serializes")
    }
}

/// How a fetch loads its rows into the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadKind {
    /// Every row the source has: the table is replaced by them.
    Full,
    /// Only rows changed since the last run (plus the overlap window): merged by key.
    Changes,
    /// The source has not changed since the last run: nothing to load.
    Unchanged,
}

impl LoadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Changes => "incremental",
            Self::Unchanged => "unchanged",
        }
    }
}

/// A stream of raw pages from one source.
#[async_trait]
pub trait Source: Send {
    /// Where the rows come from, for provenance and messages (a path or URL).
    fn describe(&self) -> String;

    /// The next page, or `None` once the source is exhausted.
    async fn next_page(&mut self) -> Result<Option<RawPage>, FetchError>;

    /// How this fetch loads the table. Settled once the first page (or the end) is returned.
    fn load_kind(&self) -> LoadKind {
        LoadKind::Full
    }

    /// The number of rows the portal said this fetch would deliver, when it says one.
    fn expected_rows(&self) -> Option<u64> {
        None
    }

    /// The refresh state to keep once the run has stored what was fetched.
    fn state(&self) -> SourceState {
        SourceState::default()
    }
}

/// What a connector needs besides its own config.
#[derive(Clone)]
pub struct SourceContext {
    /// Relative file paths resolve against it (the pipeline file's folder).
    pub base_dir: PathBuf,
    pub http: Arc<HttpClient>,
    /// The state the last successful run left; `None` means load everything.
    pub prior: Option<SourceState>,
}

/// Build the connector a pipeline's `[[source]]` names.
pub fn open_source(spec: &SourceSpec, ctx: &SourceContext) -> Result<Box<dyn Source>, FetchError> {
    Ok(match spec {
        SourceSpec::File(cfg) => Box::new(sources::file::FileReader::open(cfg, &ctx.base_dir)?),
        SourceSpec::Socrata(cfg) => Box::new(sources::socrata::Socrata::open(cfg, ctx)?),
        SourceSpec::Ckan(cfg) => Box::new(sources::ckan::Ckan::open(cfg, ctx)?),
        SourceSpec::Opendatasoft(cfg) => {
            Box::new(sources::opendatasoft::Opendatasoft::open(cfg, ctx)?)
        }
        SourceSpec::Http(cfg) => Box::new(sources::http::HttpDocument::open(cfg, ctx)?),
        SourceSpec::Arcgis(cfg) => Box::new(sources::arcgis::Arcgis::open(cfg, ctx)?),
        SourceSpec::Datasette(cfg) => Box::new(sources::datasette::Datasette::open(cfg, ctx)?),
    })
}

/// Read a secret from the environment variable a pipeline names.
pub fn secret_from_env(var: &str) -> Result<String, FetchError> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
        _ => Err(FetchError::Config {
            message: format!(
                "environment variable {var} is not set; the pipeline reads its credential from it"
            ),
        }),
    }
}

/// Errors while fetching or decoding a source. Each names where it happened.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Csv {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    Json { path: PathBuf, message: String },
    #[error("{origin}: {message}")]
    Decode { origin: String, message: String },
    #[error("{message}")]
    Config { message: String },
    #[error("{url}: {message}")]
    Http {
        url: String,
        status: Option<u16>,
        message: String,
        /// The error response's body, for the connector to explain.
        body: Option<bytes::Bytes>,
    },
    /// The portal answered, in its own error format.
    #[error("{url}: {message}")]
    Portal { url: String, message: String },
    #[error(
        "{source_name}: the portal reported {expected} rows but {received} arrived{detail}; \
         nothing was stored, so the table keeps its last complete version"
    )]
    Incomplete {
        source_name: String,
        expected: u64,
        received: u64,
        detail: String,
    },
    #[error("replay of {}: {message}", dir.display())]
    Replay { dir: PathBuf, message: String },
}
