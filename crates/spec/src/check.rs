//! Data-quality checks, declared per pipeline as `[[check]]`.
//!
//! Two families:
//! - **row checks** (`not_null`, `range`, `allowed`, `regex`) look at every incoming row. With
//!   severity `error` a failing row is quarantined (kept out of the table, stored with the
//!   reason); with `warn` it is kept and counted.
//! - **table checks** (`unique`, `freshness`, `row_count`, `schema_drift`) look at the table
//!   version a run wrote, or at what the source sent. With severity `error` a failure holds
//!   every figure of the pipeline at its last good value; with `warn` it is reported only.

use serde::{Deserialize, Serialize};
use serde_spanned::Spanned;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// The column has a value in every row.
    NotNull,
    /// No two rows share the values of `columns` (default: the table's key).
    Unique,
    /// Numbers lie within `min` and `max` (either may be left out).
    Range,
    /// Values are among `values`.
    Allowed,
    /// Text values match `pattern` (the whole value).
    Regex,
    /// The newest value of a timestamp or date column is younger than `max_age`.
    Freshness,
    /// The table did not shrink by more than `max_drop` percent since the previous run.
    RowCount,
    /// The source's columns are the ones it sent last time: none appeared, disappeared or
    /// changed type.
    SchemaDrift,
}

impl CheckKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotNull => "not_null",
            Self::Unique => "unique",
            Self::Range => "range",
            Self::Allowed => "allowed",
            Self::Regex => "regex",
            Self::Freshness => "freshness",
            Self::RowCount => "row_count",
            Self::SchemaDrift => "schema_drift",
        }
    }

    /// Whether the check judges rows one by one (and so can quarantine them).
    pub fn is_row_check(self) -> bool {
        matches!(
            self,
            Self::NotNull | Self::Range | Self::Allowed | Self::Regex
        )
    }

    /// Whether the check needs `column`.
    pub fn needs_column(self) -> bool {
        matches!(
            self,
            Self::NotNull | Self::Range | Self::Allowed | Self::Regex | Self::Freshness
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Reported; nothing is held back.
    Warn,
    /// Row checks quarantine failing rows; table checks hold the pipeline's figures.
    #[default]
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

/// One `[[check]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// Name in reports; defaults to `<kind>` or `<kind>:<column>`.
    pub id: Option<Spanned<String>>,
    pub kind: Spanned<CheckKind>,
    #[serde(default)]
    pub severity: Severity,
    /// The column checked (not_null, range, allowed, regex, freshness; freshness defaults
    /// to `table.time`).
    pub column: Option<Spanned<String>>,
    /// Columns that together must be unique (unique; defaults to `table.key`).
    #[serde(default)]
    pub columns: Vec<Spanned<String>>,
    /// range: smallest allowed value.
    pub min: Option<f64>,
    /// range: largest allowed value.
    pub max: Option<f64>,
    /// allowed: the permitted values, as text (`"true"`, `"42"`, `"Closed"`).
    #[serde(default)]
    pub values: Vec<String>,
    /// regex: the pattern every value must match in full.
    pub pattern: Option<Spanned<String>>,
    /// freshness: how old the newest value may be, e.g. `"2d"`.
    #[serde(default, deserialize_with = "crate::source::optional_duration")]
    pub max_age: Option<Duration>,
    /// row_count: largest allowed drop in rows since the previous run, in percent.
    pub max_drop: Option<f64>,
    /// Shown with the result: why the check matters.
    pub description: Option<String>,
}

impl CheckSpec {
    /// The check's name in reports.
    pub fn id(&self) -> String {
        if let Some(id) = &self.id {
            return id.get_ref().clone();
        }
        let kind = self.kind.get_ref().as_str();
        match &self.column {
            Some(c) => format!("{kind}:{}", c.get_ref()),
            None if !self.columns.is_empty() => format!(
                "{kind}:{}",
                self.columns
                    .iter()
                    .map(|c| c.get_ref().as_str())
                    .collect::<Vec<_>>()
                    .join("+")
            ),
            None => kind.to_string(),
        }
    }
}
