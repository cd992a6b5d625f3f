//! goalpost-publish: the digest and everything rendered from it.
//!
//! [`Digest`] is the published model: every goal with its latest figure, status, baseline,
//! target, series and provenance, and every indicator's series. [`Publisher`] renders it to a
//! new version folder (`versions/<id>/`: `digest.json` and its JSON Schema
//! `digest.schema.json`, `indicators.parquet` and `indicators.csv`, `index.html` …) in a
//! local folder or an object-storage bucket, and only then points at it: the `current` link
//! (one atomic rename, in a folder) and `current.json`. A reader sees either the previous
//! complete version or the new complete version, never a mix; a failure before the switch
//! leaves the current version untouched.

mod chart;
mod csv_out;
mod dcat;
mod digest;
mod feed;
mod html;
pub mod news;
mod parquet_out;
mod publisher;
mod text;

pub use csv_out::neutralise;
pub use dcat::{CatalogInfo, data_json, data_json_text};
pub use digest::schema as digest_schema;
pub use digest::{
    BaselineInfo, CagrInfo, CheckReport, DIGEST_SCHEMA_VERSION, DataQuality, Digest, GoalDigest,
    Hold, IndicatorDigest, LatestFigure, NewsItem, PipelineDigest, Provenance, Refresh,
    SeriesPoint, SiteInfo, SourceInfo, Summary, TableInfo, TableRead, TargetInfo, TrendInfo,
};
pub use publisher::{
    Attached, CurrentPointer, PublishError, PublishLock, Publisher, content_type,
    write_digest_files,
};
