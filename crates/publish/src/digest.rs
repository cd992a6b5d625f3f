//! The digest model, as written to `digest.json`.

use chrono::{DateTime, NaiveDate, Utc};
use goalpost_spec::GoalStatus;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bumped when a field changes meaning or disappears; additions keep the number.
pub const DIGEST_SCHEMA_VERSION: u32 = 1;

/// The JSON Schema of `digest.json`, published beside it as `digest.schema.json`.
pub fn schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(Digest).to_value();
    if let Some(o) = schema.as_object_mut() {
        o.insert("title".into(), "goalpost digest".into());
        o.insert(
            "description".into(),
            format!(
                "Goals, indicators and their provenance as published (schema_version {DIGEST_SCHEMA_VERSION})."
            )
            .into(),
        );
    }
    schema
}

/// Everything published about the city's goals and the data behind them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Digest {
    pub schema_version: u32,
    /// The published version's id (the id of the run that published it).
    pub version: String,
    pub generated_at: DateTime<Utc>,
    pub site: SiteInfo,
    pub summary: Summary,
    pub pipelines: Vec<PipelineDigest>,
    /// News-flash items: current ones, then archived ones (their window has ended), newest
    /// first within each.
    #[serde(default)]
    pub news: Vec<NewsItem>,
}

/// A short public announcement of a goal event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NewsItem {
    /// Stable across runs: the same event always has the same id.
    pub id: String,
    pub category: String,
    pub title: String,
    pub body: String,
    /// The pipeline (dataset) and goal it is about.
    pub pipeline: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<String>,
    /// goal_met, status_changed, new_best, new_worst, threshold_crossed or data_stale.
    pub event: String,
    /// Start of its publish window ("Posted on").
    pub posted: DateTime<Utc>,
    /// End of its publish window; after it the item is archived, never deleted.
    pub until: DateTime<Utc>,
    pub archived: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SiteInfo {
    pub title: String,
    pub organization: Option<String>,
    /// Public URL the site is served at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Who answers questions about the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_email: Option<String>,
    /// URL of the licence the data is published under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// The place the data covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spatial: Option<String>,
}

/// Goal counts by status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    pub goals: usize,
    pub met: usize,
    pub on_track: usize,
    pub at_risk: usize,
    pub off_track: usize,
    pub no_data: usize,
    /// Goals whose figures are held at their last good values by a failed data-quality
    /// check (counted under their status as well).
    #[serde(default)]
    pub held: usize,
}

impl Summary {
    pub fn of<'a>(goals: impl IntoIterator<Item = &'a GoalDigest>) -> Self {
        let mut s = Self::default();
        for g in goals {
            s.goals += 1;
            s.held += usize::from(g.held.is_some());
            match g.status {
                GoalStatus::Met => s.met += 1,
                GoalStatus::OnTrack => s.on_track += 1,
                GoalStatus::AtRisk => s.at_risk += 1,
                GoalStatus::OffTrack => s.off_track += 1,
                GoalStatus::NoData => s.no_data += 1,
            }
        }
        s
    }
}

/// One pipeline's part of the digest: its dataset, indicators and goals, from its last
/// successful run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PipelineDigest {
    pub id: String,
    pub title: String,
    pub department: Option<String>,
    pub description: Option<String>,
    pub run_id: String,
    pub refreshed_at: DateTime<Utc>,
    /// Date the goals were judged as of.
    pub as_of: NaiveDate,
    pub table: TableInfo,
    pub sources: Vec<SourceInfo>,
    /// This run's data-quality checks and quarantine.
    #[serde(default)]
    pub data_quality: DataQuality,
    /// Set when a failed `error` check holds every figure below at its last good value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Hold>,
    pub indicators: Vec<IndicatorDigest>,
    pub goals: Vec<GoalDigest>,
    /// The cron schedule (with seconds, in the pipeline's time zone) it is refreshed on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// The latest refreshes, newest first, this one included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Refresh>,
}

/// One refresh of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Refresh {
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    /// succeeded, held (figures kept at their last good values) or failed (nothing
    /// published).
    pub outcome: String,
    /// full, incremental or unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    pub rows_fetched: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_version: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TableInfo {
    pub name: String,
    /// Delta Lake version the figures were computed from.
    pub version: u64,
    /// Rows in the table at `version`.
    pub rows: u64,
    /// The table's newest version, when it is newer than the figures' (their figures are
    /// held) — the version the failing checks judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_version: Option<u64>,
    /// The table at `version` as one Parquet file, relative to the digest
    /// (`data/<table>.parquet`): the data behind the figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download: Option<String>,
}

/// Why figures are held at their last good values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Hold {
    /// Always `"data quality"` for now.
    pub reason: String,
    /// The failing check(s).
    pub checks: Vec<String>,
    /// The failing checks' messages.
    pub message: String,
    /// The first run whose figures were held (holds carry over until a run passes).
    pub since_run: String,
    /// The run that computed the figures shown; none when no run has passed its checks yet
    /// (then there are no figures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_good_run: Option<String>,
}

/// The data-quality section of a dataset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DataQuality {
    /// The run the checks belong to.
    pub run_id: String,
    /// Rows that came in this run (before quarantine).
    pub rows_received: u64,
    /// Rows kept out of the table this run, stored in `data/quarantine/<table>/`.
    pub rows_quarantined: u64,
    /// Largest share (percent) that may be quarantined before a run fails.
    pub quarantine_limit: f64,
    pub checks: Vec<CheckReport>,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CheckReport {
    pub id: String,
    /// not_null, unique, range, allowed, regex, freshness, row_count, schema_drift.
    pub kind: String,
    /// warn or error.
    pub severity: String,
    /// passed, warned, quarantined, failed or skipped.
    pub status: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_checked: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_failed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SourceInfo {
    pub kind: String,
    /// File path or URL read.
    pub location: String,
    /// Public page about the dataset.
    pub link: Option<String>,
    pub rows: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SeriesPoint {
    pub period: String,
    pub start: NaiveDate,
    pub end: NaiveDate,
    /// Breakdown values; empty for the total.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub group: BTreeMap<String, String>,
    pub value: Option<f64>,
    pub partial: bool,
    /// Rows behind the figure, when known (never for a suppressed one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u64>,
    /// Withheld by small-cell suppression: too few rows, or it would reveal a cell that is.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suppressed: bool,
    /// Flags of the observation: provisional, estimated, revised (comma-separated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IndicatorDigest {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub unit: Option<String>,
    pub better: Option<String>,
    /// Period kind: day, week, month, quarter, year, fiscal_year, fiscal_quarter.
    pub period: String,
    pub decimals: Option<u8>,
    pub by: Vec<String>,
    /// For a structured indicator: its measure (`percentile 90`, `share`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measure: Option<String>,
    /// For a structured indicator: the rows it counts (a SQL condition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Figures from fewer rows than this are suppressed.
    #[serde(default)]
    pub min_count: u64,
    /// The query that ran (generated for a structured indicator).
    pub sql: String,
    /// Other pipelines' tables the query read (e.g. a population table), at the versions
    /// read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<TableRead>,
    pub series: Vec<SeriesPoint>,
    /// Set when the series is held at its last good values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Hold>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LatestFigure {
    pub period: String,
    pub value: f64,
}

/// Progress by compound annual growth (Statistics Canada's method, as Open SDG reports it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CagrInfo {
    /// Observed compound annual growth rate since the baseline (0.1 = 10 % a year).
    pub observed: Option<f64>,
    /// The rate the target requires from the baseline.
    pub required: Option<f64>,
    /// `observed / required`.
    pub ratio: Option<f64>,
    /// target_achieved, substantial, moderate, limited or deterioration.
    pub status: String,
}

/// How a goal's figure moved over its last periods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TrendInfo {
    /// Periods between the two figures compared.
    pub periods: usize,
    pub from_period: String,
    /// Latest value minus the earlier one.
    pub change: f64,
    /// improving, worsening or steady.
    pub direction: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BaselineInfo {
    pub period: String,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TargetInfo {
    pub value: f64,
    pub by: NaiveDate,
}

/// Another pipeline's table an indicator read, at the version read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TableRead {
    pub table: String,
    /// The pipeline that loads it.
    pub pipeline: String,
    pub version: u64,
}

/// Where a figure came from, enough to recompute it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Provenance {
    pub pipeline: String,
    pub sources: Vec<SourceInfo>,
    pub table: String,
    pub table_version: u64,
    pub sql: String,
    /// Other tables the query read, at the versions read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<TableRead>,
    pub run_id: String,
    pub computed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GoalDigest {
    pub id: String,
    pub title: String,
    pub indicator: String,
    pub unit: Option<String>,
    pub decimals: Option<u8>,
    pub status: GoalStatus,
    pub status_reason: String,
    pub latest: Option<LatestFigure>,
    /// Where the line from baseline to target stands at the end of the latest period.
    pub expected: Option<f64>,
    /// Share of the baseline-to-target distance covered.
    pub progress: Option<f64>,
    pub better: String,
    pub tolerance: f64,
    pub baseline: BaselineInfo,
    pub target: TargetInfo,
    /// Interim targets the expected line passes through.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub milestones: Vec<TargetInfo>,
    /// The change over the last periods up to the judged one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trend: Option<TrendInfo>,
    /// The best complete period so far, by `better`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best: Option<LatestFigure>,
    /// The worst complete period so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worst: Option<LatestFigure>,
    /// Periods until the target at the trend's pace (0: met); absent when the pace does not
    /// lead there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub periods_to_target: Option<u64>,
    /// For a goal judged by growth (`method = "cagr"`): the progress measure its status
    /// follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cagr: Option<CagrInfo>,
    /// The indicator's total series.
    pub series: Vec<SeriesPoint>,
    pub provenance: Provenance,
    /// Set when the figure and status are held at their last good values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Hold>,
}
