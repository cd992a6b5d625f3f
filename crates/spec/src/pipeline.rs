use crate::diagnostic::SourceFile;
use crate::period::PeriodKind;
use crate::source::SourceSpec;
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use chrono::NaiveDate;
use chrono_tz::Tz;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_spanned::Spanned;
use std::path::PathBuf;
use std::sync::Arc;

/// A loaded, validated pipeline: the file as written plus what was resolved from it.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The pipeline's id: its file name without `.toml`.
    pub id: String,
    pub file: SourceFile,
    /// Folder of the pipeline file; relative source paths are resolved against it.
    pub dir: PathBuf,
    pub tz: Tz,
    pub as_of: Option<NaiveDate>,
    /// When the daemon runs it: `schedule` read in `timezone`.
    pub schedule: Option<crate::Schedule>,
    pub spec: PipelineSpec,
}

impl Pipeline {
    /// The indicator with this id.
    pub fn indicator(&self, id: &str) -> Option<&IndicatorSpec> {
        self.spec.indicators.iter().find(|i| i.id.as_ref() == id)
    }

    /// Fiscal year's first month (1–12).
    pub fn fiscal_year_start(&self) -> u32 {
        self.spec.fiscal_year_start
    }
}

/// What the daemon does about a run missed while it was down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Run once at start-up, however many runs were missed.
    #[default]
    Once,
    /// Wait for the next scheduled time.
    Skip,
}

/// The pipeline file, `pipelines/<id>.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// Optional; when given it must equal the file name without `.toml`.
    pub id: Option<Spanned<String>>,
    /// Human title of the dataset, e.g. "311 service requests".
    pub title: String,
    /// Department or strategic priority the goals are grouped under on the site.
    pub department: Option<String>,
    pub description: Option<String>,
    /// Cron expression with seconds, evaluated in `timezone` (used by the daemon).
    pub schedule: Option<Spanned<String>>,
    /// What the daemon does at start-up when a scheduled run was missed while it was down:
    /// `once` runs the pipeline once, `skip` waits for the next scheduled time.
    #[serde(default)]
    pub catch_up: CatchUp,
    /// IANA time zone of the city: local timestamps are read in it and periods are cut in it.
    pub timezone: Spanned<String>,
    /// First month of the fiscal year (1–12); 7 = July, as in most US cities.
    #[serde(default = "default_fiscal_start")]
    pub fiscal_year_start: u32,
    /// Judge goals as of this date (`YYYY-MM-DD`) instead of today: for archives and
    /// historical replays, such as the bundled demo.
    pub as_of: Option<Spanned<String>>,
    /// Small-cell suppression: a figure built from fewer rows than this is published as
    /// suppressed, never as a number (0 turns it off). Indicators may override it.
    #[serde(default = "default_min_count")]
    pub min_count: u64,
    /// Where the rows come from; several sources may feed one table.
    #[serde(rename = "source")]
    pub sources: Vec<Spanned<SourceSpec>>,
    pub table: TableSpec,
    /// Data-quality checks on the rows and the table.
    #[serde(rename = "check", default)]
    pub checks: Vec<crate::check::CheckSpec>,
    #[serde(rename = "indicator", default)]
    pub indicators: Vec<IndicatorSpec>,
    #[serde(rename = "goal", default)]
    pub goals: Vec<GoalSpec>,
    /// News-flash rules: which goal events are announced.
    #[serde(rename = "news", default)]
    pub news: Vec<crate::news::NewsRule>,
}

fn default_min_count() -> u64 {
    5
}

fn default_fiscal_start() -> u32 {
    7
}

/// The typed table a pipeline writes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// Table name, as indicator SQL refers to it (`[a-z_][a-z0-9_]*`).
    pub name: Spanned<String>,
    /// Columns that identify a row.
    #[serde(default)]
    pub key: Vec<Spanned<String>>,
    /// Timestamp or date column that places a row in a reporting period.
    pub time: Option<Spanned<String>>,
    /// Column that orders the versions of one record (the source's update time): when a
    /// fetch holds a key twice, the row with the newest value wins (the later one on a tie).
    pub updated: Option<Spanned<String>>,
    /// Split the table's files by a column (`"district"`) or by the month or year of a
    /// timestamp or date column (`"month(created_at)"`, `"year(created_at)"`, stored as the
    /// extra column `created_at_month` / `created_at_year`), so a refresh rewrites only the
    /// parts its rows fall in. The value must never change for a record.
    pub partition: Option<Spanned<String>>,
    /// Rows marked deleted at the source: `{ column = "is_deleted", values = ["true"] }`. A
    /// refresh removes their key from the table; a full load leaves them out.
    pub deletes: Option<DeletesSpec>,
    /// Text that means "no value" in any column besides the empty string, e.g.
    /// `["N/A", "NULL", "-"]` (compared after trimming).
    #[serde(default)]
    pub missing: Vec<String>,
    /// Largest share of rows, in percent, that may be quarantined before the run fails.
    #[serde(default = "default_quarantine_limit")]
    pub quarantine_limit: f64,
    /// Publish the table, row by row, beside the digest (`data/<table>.parquet`) so anyone
    /// can check the figures. Turn it off for data that is not open: the rows behind
    /// suppressed small cells would otherwise be downloadable.
    #[serde(default = "default_publish")]
    pub publish: bool,
    pub columns: IndexMap<Spanned<String>, ColumnSpec>,
}

fn default_quarantine_limit() -> f64 {
    5.0
}

fn default_publish() -> bool {
    true
}

/// `[table] deletes`: which rows say "this record was deleted".
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeletesSpec {
    pub column: Spanned<String>,
    /// The column's values (as text) that mark a deletion.
    pub values: Vec<String>,
}

/// How the table is partitioned, resolved from `[table] partition`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Partition {
    /// By a declared column's value.
    Column(String),
    /// By the local month (`YYYY-MM`) or year (`YYYY`) of a timestamp or date column.
    Derived {
        source: String,
        by: PartitionBy,
        /// The extra column holding the label.
        column: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionBy {
    Month,
    Year,
}

impl Partition {
    /// Read `"district"`, `"month(created_at)"` or `"year(created_at)"`.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        for (prefix, by, suffix) in [
            ("month(", PartitionBy::Month, "month"),
            ("year(", PartitionBy::Year, "year"),
        ] {
            if let Some(rest) = text.strip_prefix(prefix) {
                let source = rest.strip_suffix(')')?.trim().to_string();
                let column = format!("{source}_{suffix}");
                return Some(Self::Derived { source, by, column });
            }
        }
        (!text.is_empty() && !text.contains('(')).then(|| Self::Column(text.to_string()))
    }

    /// The table column the files are split by.
    pub fn column(&self) -> &str {
        match self {
            Self::Column(c) => c,
            Self::Derived { column, .. } => column,
        }
    }
}

impl TableSpec {
    pub fn column(&self, name: &str) -> Option<&ColumnSpec> {
        self.columns.get(name)
    }

    /// The table's partitioning, if any (validated at load time).
    pub fn partition(&self) -> Option<Partition> {
        self.partition
            .as_ref()
            .and_then(|p| Partition::parse(p.get_ref()))
    }

    /// The Arrow schema of the table as declared, plus a derived partition column at the
    /// end. Timestamps are stored in UTC.
    pub fn arrow_schema(&self) -> Arc<Schema> {
        let mut fields: Vec<Field> = self
            .columns
            .iter()
            .map(|(name, c)| Field::new(name.as_ref(), c.kind.arrow_type(), !c.required))
            .collect();
        if let Some(Partition::Derived { source, column, .. }) = self.partition() {
            let nullable = self.column(&source).is_none_or(|c| !c.required);
            fields.push(Field::new(column, DataType::Utf8, nullable));
        }
        Arc::new(Schema::new(fields))
    }

    /// The key columns.
    pub fn key_columns(&self) -> Vec<String> {
        self.key.iter().map(|k| k.get_ref().clone()).collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    /// Field name at the source; defaults to the column's own name.
    pub from: Option<String>,
    #[serde(rename = "type")]
    pub kind: ColumnType,
    /// A required column may not be empty in any row.
    #[serde(default = "default_true")]
    pub required: bool,
    /// Time zone of timestamps written without an offset (defaults to the pipeline's).
    pub tz: Option<Spanned<String>>,
    /// chrono format string for timestamps or dates in an unusual form.
    pub format: Option<String>,
    pub description: Option<String>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    String,
    Int64,
    Float64,
    Bool,
    Timestamp,
    Date,
}

impl ColumnType {
    pub fn arrow_type(self) -> DataType {
        match self {
            Self::String => DataType::Utf8,
            Self::Int64 => DataType::Int64,
            Self::Float64 => DataType::Float64,
            Self::Bool => DataType::Boolean,
            Self::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Self::Date => DataType::Date32,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Int64 => "int64",
            Self::Float64 => "float64",
            Self::Bool => "bool",
            Self::Timestamp => "timestamp",
            Self::Date => "date",
        }
    }
}

/// Which direction of an indicator is an improvement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Higher,
    Lower,
}

/// A figure computed per period (and optionally per group) with DataFusion SQL.
///
/// The SQL reads the pipeline's table by name; that table carries an extra `period` column
/// holding the row's period label. It must return `period`, the `by` columns and `value`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndicatorSpec {
    pub id: Spanned<String>,
    pub title: String,
    pub description: Option<String>,
    /// Unit shown after values: "hours", "%", "calls".
    pub unit: Option<String>,
    pub better: Option<Better>,
    #[serde(default = "default_period")]
    pub period: PeriodKind,
    /// Columns the figure is broken down by; rows where they are all NULL are the total.
    #[serde(default)]
    pub by: Vec<Spanned<String>>,
    /// Column that places rows in periods; defaults to `table.time`.
    pub time: Option<Spanned<String>>,
    /// Digits after the decimal point when shown.
    pub decimals: Option<u8>,
    /// Withhold a figure built from fewer rows than this (default: the pipeline's
    /// `min_count`); needs the rows behind each figure (`n`).
    pub min_count: Option<u64>,
    /// DataFusion SQL returning `period`, the `by` columns and `value`. For a structured
    /// indicator (`measure`), the query generated from it.
    #[serde(default = "no_sql")]
    pub sql: Spanned<String>,
    /// A figure without SQL: count, sum, mean, median, percentile, share, ratio or rate.
    pub measure: Option<Spanned<crate::measure::Measure>>,
    /// sum, mean, median, percentile (and optionally rate): the SQL expression measured,
    /// e.g. `"date_part('epoch', on_scene_at - received_at) / 60"`.
    pub value: Option<Spanned<String>>,
    /// percentile: which one, 0–100.
    pub percentile: Option<f64>,
    /// share: the condition a row must meet, e.g. `"closed_at <= created_at + INTERVAL '3 days'"`.
    pub condition: Option<Spanned<String>>,
    /// Only rows meeting this SQL condition count, e.g. `"priority = '3'"`.
    pub filter: Option<Spanned<String>>,
    /// ratio: the expression summed above the line.
    pub numerator: Option<Spanned<String>>,
    /// ratio: the expression summed below the line.
    pub denominator: Option<Spanned<String>>,
    /// ratio: multiply by this (100 for a percentage); default 1.
    pub scale: Option<f64>,
    /// rate: per how many of `population` (default 1,000).
    pub per: Option<f64>,
    /// rate: the population the rate is per, e.g. residents: a number, or a table that
    /// holds it (another pipeline's table, optionally broken down like the indicator).
    pub population: Option<Spanned<Population>>,
    /// A SQL expression giving a row's flag (`provisional`, `estimated`, `revised`) or NULL;
    /// a figure carries the flags of its rows. SQL indicators return a `flag` column instead.
    pub flag: Option<Spanned<String>>,
}

/// The population a rate is per.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(
    untagged,
    expecting = "a number (e.g. 808988), or a table: { table = \"population\", column = \"residents\", by = [\"district\"] }"
)]
pub enum Population {
    /// One number for every period and group.
    Fixed(f64),
    /// The sum of a column of a table, per group when `by` names breakdown columns.
    Table(PopulationTable),
}

/// A population read from a table (typically another pipeline's, e.g. census estimates).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PopulationTable {
    /// The table holding the population.
    pub table: String,
    /// Its column holding people (summed over the table's rows, or per group).
    pub column: String,
    /// Breakdown columns of the indicator's `by` that the population table also has (same
    /// names): a group's rate is per its own population, the total's per the sum.
    #[serde(default)]
    pub by: Vec<String>,
}

fn no_sql() -> Spanned<String> {
    Spanned::new(0..0, String::new())
}

fn default_period() -> PeriodKind {
    PeriodKind::Month
}

impl IndicatorSpec {
    /// The column this indicator's periods are cut from (after validation, always set).
    pub fn time_column<'a>(&'a self, table: &'a TableSpec) -> Option<&'a str> {
        self.time
            .as_ref()
            .or(table.time.as_ref())
            .map(|s| s.get_ref().as_str())
    }
}

/// A goal on an indicator: from a baseline to a target by a date.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoalSpec {
    /// Defaults to the indicator's id.
    pub id: Option<Spanned<String>>,
    pub indicator: Spanned<String>,
    /// The goal as residents read it: "Reach 90 % of emergency calls within 8 minutes".
    pub title: Option<String>,
    /// Defaults to the indicator's `better`.
    pub better: Option<Better>,
    pub baseline: Baseline,
    pub target: Target,
    /// How far behind the expected value still counts as "at risk", as a share of the
    /// baseline-to-target distance (default 0.10).
    pub tolerance: Option<f64>,
    /// Periods the trend (and the pace towards the target) is measured over (default 3).
    pub trend_periods: Option<usize>,
    /// Interim targets on the way (`[{ value = 70, by = "2025-12-31" }]`): the expected
    /// line runs from the baseline through each milestone to the target.
    #[serde(default)]
    pub milestones: Vec<Target>,
    /// How the status is judged: `trajectory` (the straight line from baseline to target,
    /// the default) or `cagr` (observed against required compound annual growth, as Open
    /// SDG reports progress).
    #[serde(default)]
    pub method: GoalMethod,
}

/// How a goal's status is judged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GoalMethod {
    #[default]
    Trajectory,
    Cagr,
}

impl GoalSpec {
    pub fn id(&self) -> &str {
        self.id.as_ref().unwrap_or(&self.indicator).get_ref()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    /// Label of the baseline period, in the indicator's period kind (e.g. "2018-07").
    pub period: Spanned<String>,
    pub value: f64,
}

impl Baseline {
    /// The baseline period, read as a label of `kind` (validated at load time).
    pub fn period(&self, kind: PeriodKind, fiscal_start: u32) -> Option<crate::period::Period> {
        crate::period::Period::parse(kind, self.period.get_ref(), fiscal_start)
    }
}

/// Dates in pipeline files: `YYYY-MM-DD`.
pub fn parse_iso_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub value: f64,
    /// Date (`YYYY-MM-DD`) by which the target is to be reached.
    pub by: Spanned<String>,
}

impl Target {
    /// The target date (validated at load time).
    pub fn date(&self) -> Option<NaiveDate> {
        parse_iso_date(self.by.get_ref())
    }
}
