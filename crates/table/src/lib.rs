//! goalpost-table: from raw source text to typed, versioned tables.
//!
//! Two jobs:
//! - [`map_page`] turns a [`RawPage`](goalpost_fetch::RawPage) (untyped text as the source sent
//!   it) into a batch with the table's declared Arrow schema, parsing numbers, booleans, dates
//!   and timestamps (local times read in the pipeline's time zone, stored in UTC). A value that
//!   does not parse is reported with the file, line or record, column, field and raw value.
//! - [`TableStore`] keeps each table as a Delta Lake table under `data/tables/<name>/`: every
//!   write is one atomic commit, so a failed run never leaves half a table, and every digest
//!   can name the table version its figures were computed from.

mod changes;
pub mod checks;
mod datafile;
mod dedupe;
mod intake;
mod layout;
pub mod maintenance;
mod mapping;
mod parse;
mod sink;
mod snapshot;
mod stats;
mod store;

pub use checks::{
    CheckResult, CheckStatus, Shape, TableCheckInput, drift_checks, row_count, table_checks,
};
pub use dedupe::{drop_deleted, newest_per_key};
pub use intake::{Intake, IntakeReport, QuarantinedRow, quarantine_batch, quarantine_schema};
pub use layout::Layout;
pub use maintenance::{CompactReport, FileStats, VacuumReport};
pub use mapping::{MapError, Mapped, Rejected, ValueError, map_page, raw_row_json};
pub use snapshot::write_snapshot;
pub use store::{
    AbortOnDrop, BatchResult, Merged, TableError, TableStore, TableWrite, object_store,
};

/// Delta Lake, re-exported so callers open tables with the same crate version.
pub use deltalake;
