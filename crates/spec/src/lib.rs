//! goalpost-spec: the configuration and pipeline files of goalpost.
//!
//! Everything a user writes lives here as plain serde types: [`Config`] (`config/goalpost.toml`)
//! and [`Pipeline`] (one `pipelines/<id>.toml` each). Loading keeps the source text and the span
//! of every value a later check may need to point at, so any error — an unknown key, a wrong
//! type, a goal naming a missing indicator — is reported as `file:line:column: message`.
//!
//! The crate also owns the reporting [`period`] vocabulary (month, quarter, fiscal year …),
//! because goals name periods and must be checked without running anything.
//!
//! No I/O beyond reading the files named.

pub mod check;
mod config;
mod diagnostic;
mod location;
pub mod measure;
pub mod news;
pub mod period;
mod pipeline;
pub mod schedule;
mod source;
mod status;
mod validate;

pub use check::{CheckKind, CheckSpec, Severity};
pub use config::{Config, DaemonSettings, FetchSettings, SiteSpec, TableSettings};
pub use diagnostic::{Diagnostic, SourceFile, SpecError};
pub use location::Location;
pub use measure::{Measure, combined_sql, same_grouping, structured_sql};
pub use news::{NewsEvent, NewsRule};
pub use pipeline::{
    Baseline, Better, CatchUp, ColumnSpec, ColumnType, DeletesSpec, GoalMethod, GoalSpec,
    IndicatorSpec, Partition, PartitionBy, Pipeline, PipelineSpec, Population, PopulationTable,
    TableSpec, Target,
};
pub use schedule::Schedule;
pub use source::{
    ArcgisFormat, ArcgisSource, CkanSource, DatasetteSource, ExportMode, FileFormat, FileSource,
    HttpSource, OpendatasoftSource, SocrataFormat, SocrataSource, SourceSpec, duration,
};
pub use status::GoalStatus;
pub use validate::{LoadedPipelines, load_pipeline, load_pipelines, parse_pipeline};

/// Re-exported so callers can name spans without depending on serde_spanned themselves.
pub use serde_spanned::Spanned;

/// Fault-injection hook for the crash tests: when the environment variable
/// `GOALPOST_PAUSE_AT` names `point`, print `goalpost: paused at <point>` on stderr and stop
/// here for good, so a test can kill the process at exactly this point. Points: `fetch`
/// (a first page is in), `table-write` (all rows handed to the table writer, nothing
/// committed), `publish` (a version written, `current` not yet switched). Unset, it costs
/// one environment lookup.
pub fn pause_point(point: &str) {
    if std::env::var_os("GOALPOST_PAUSE_AT").is_some_and(|p| p == point) {
        use std::io::Write as _;
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "goalpost: paused at {point}");
        let _ = err.flush();
        drop(err);
        loop {
            std::thread::park();
        }
    }
}

/// Fault-injection hook for the tests: when the environment variable `GOALPOST_FAIL_AT`
/// names `point`, the error a full disk gives (`ENOSPC`) for the write made there. Points:
/// `publish-write` (each file of a published version).
pub fn injected_failure(point: &str) -> Option<std::io::Error> {
    std::env::var_os("GOALPOST_FAIL_AT")
        .is_some_and(|p| p == point)
        .then(|| std::io::Error::from_raw_os_error(28))
}
