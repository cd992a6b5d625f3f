//! goalpost-fetch: getting rows out of wherever a city publishes them.
//!
//! Every connector implements one trait, [`Source`]: it hands out [`RawPage`]s until the
//! source is exhausted. A raw page is an Arrow batch whose columns are the fields as the source
//! named them and whose values are the source's text, untyped (numbers from JSON are written
//! as their JSON text, nested values as JSON). Typing is the table stage's job, so every
//! connector stays a thin, faithful reader and every typing error is reported the same way.
//!
//! Build a source from its pipeline config with [`open_source`].

mod page;
pub mod sources;

pub use page::{RawPage, RowOrigin};

use async_trait::async_trait;
use goalpost_spec::SourceSpec;
use std::path::{Path, PathBuf};

/// A stream of raw pages from one source.
#[async_trait]
pub trait Source: Send {
    /// Where the rows come from, for provenance and messages (a path or URL).
    fn describe(&self) -> String;

    /// The next page, or `None` once the source is exhausted.
    async fn next_page(&mut self) -> Result<Option<RawPage>, FetchError>;
}

/// Build the connector a pipeline's `[[source]]` names. `base_dir` resolves relative paths.
pub fn open_source(spec: &SourceSpec, base_dir: &Path) -> Result<Box<dyn Source>, FetchError> {
    match spec {
        SourceSpec::File(cfg) => Ok(Box::new(sources::file::FileReader::open(cfg, base_dir)?)),
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
}
