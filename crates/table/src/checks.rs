//! Data-quality checks: row checks while rows come in, table checks on the version written,
//! and the source's shape for schema drift.

use crate::store::quote;
use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use chrono::{DateTime, NaiveDate, Utc};
use deltalake::DeltaTable;
use goalpost_fetch::RawPage;
use goalpost_spec::{CheckKind, CheckSpec, Pipeline, Severity};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// Examples listed per check.
const EXAMPLES: usize = 3;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Passed,
    /// A `warn` check found problems; nothing was held back.
    Warned,
    /// An `error` row check kept failing rows out of the table (in the quarantine).
    Quarantined,
    /// An `error` table check failed: the pipeline's figures are held.
    Failed,
    /// The check could not be judged this run (no previous run, no rows from the source).
    Skipped,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passed => "passed",
            Self::Warned => "warned",
            Self::Quarantined => "quarantined",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "passed" => Self::Passed,
            "warned" => Self::Warned,
            "quarantined" => Self::Quarantined,
            "failed" => Self::Failed,
            "skipped" => Self::Skipped,
            _ => return None,
        })
    }
}

/// The result of one check in one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub id: String,
    pub kind: CheckKind,
    pub severity: Severity,
    pub status: CheckStatus,
    /// What was found, in a sentence a data steward can act on.
    pub message: String,
    /// Rows looked at (row checks: the rows of this run; table checks: the table's rows).
    pub rows_checked: Option<u64>,
    /// Rows that failed.
    pub rows_failed: Option<u64>,
    pub description: Option<String>,
}

impl CheckResult {
    fn new(spec: &CheckSpec, status: CheckStatus, message: String) -> Self {
        Self {
            id: spec.id(),
            kind: *spec.kind.get_ref(),
            severity: spec.severity,
            status,
            message,
            rows_checked: None,
            rows_failed: None,
            description: spec.description.clone(),
        }
    }

    /// Whether this result holds the pipeline's figures.
    pub fn blocks(&self) -> bool {
        self.status == CheckStatus::Failed
    }

    fn failing(spec: &CheckSpec) -> CheckStatus {
        match spec.severity {
            Severity::Warn => CheckStatus::Warned,
            Severity::Error => CheckStatus::Failed,
        }
    }
}

/// The pipeline's row checks, tallied over every row of a run.
#[derive(Debug)]
pub struct RowChecks {
    checks: Vec<RowCheck>,
}

#[derive(Debug)]
struct RowCheck {
    spec: CheckSpec,
    column: String,
    allowed: HashSet<String>,
    pattern: Option<regex::Regex>,
    checked: u64,
    failed: u64,
    examples: Vec<String>,
}

/// A row an `error` row check rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowFailure {
    /// Row index within the batch checked.
    pub index: usize,
    pub reason: String,
}

impl RowChecks {
    pub fn new(pipeline: &Pipeline) -> Self {
        let checks = pipeline
            .spec
            .checks
            .iter()
            .filter(|c| c.kind.get_ref().is_row_check())
            .filter_map(|c| {
                let column = c.column.as_ref()?.get_ref().clone();
                Some(RowCheck {
                    column,
                    allowed: c.values.iter().cloned().collect(),
                    // Validated at load time; anchored so the whole value must match.
                    pattern: c
                        .pattern
                        .as_ref()
                        .and_then(|p| regex::Regex::new(&format!("^(?:{})$", p.get_ref())).ok()),
                    spec: c.clone(),
                    checked: 0,
                    failed: 0,
                    examples: Vec::new(),
                })
            })
            .collect();
        Self { checks }
    }

    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }

    /// Judge every row of a typed batch. `locate(i)` names row `i` for examples. Returns
    /// the rows that `error` checks reject (each row once, with every failing check).
    pub fn apply(
        &mut self,
        batch: &RecordBatch,
        locate: impl Fn(usize) -> String,
    ) -> Vec<RowFailure> {
        let mut rejected: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for check in &mut self.checks {
            let Some(col) = batch.column_by_name(&check.column) else {
                continue;
            };
            check.checked += batch.num_rows() as u64;
            for (i, why) in check.failures(col) {
                check.failed += 1;
                if check.examples.len() < EXAMPLES {
                    check.examples.push(format!("{}: {why}", locate(i)));
                }
                if check.spec.severity == Severity::Error {
                    rejected
                        .entry(i)
                        .or_default()
                        .push(format!("check {:?}: {why}", check.spec.id()));
                }
            }
        }
        rejected
            .into_iter()
            .map(|(index, reasons)| RowFailure {
                index,
                reason: reasons.join("; "),
            })
            .collect()
    }

    /// Each row check's result over the run.
    pub fn results(&self) -> Vec<CheckResult> {
        self.checks.iter().map(RowCheck::result).collect()
    }
}

impl RowCheck {
    /// Rows of `col` that fail, with why.
    fn failures(&self, col: &ArrayRef) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        let column = &self.column;
        match self.spec.kind.get_ref() {
            CheckKind::NotNull => {
                for i in 0..col.len() {
                    if col.is_null(i) {
                        out.push((i, format!("{column} is empty")));
                    }
                }
            }
            CheckKind::Range => {
                let Ok(values) = arrow::compute::cast(col, &DataType::Float64) else {
                    return out;
                };
                let values = values.as_primitive::<arrow::datatypes::Float64Type>();
                for i in 0..values.len() {
                    if values.is_null(i) {
                        continue;
                    }
                    let v = values.value(i);
                    if let Some(min) = self.spec.min
                        && v < min
                    {
                        out.push((i, format!("{column} = {v} is below the minimum {min}")));
                    } else if let Some(max) = self.spec.max
                        && v > max
                    {
                        out.push((i, format!("{column} = {v} is above the maximum {max}")));
                    }
                }
            }
            CheckKind::Allowed | CheckKind::Regex => {
                let Ok(text) = arrow::compute::cast(col, &DataType::Utf8) else {
                    return out;
                };
                let text = text.as_string::<i32>();
                for i in 0..text.len() {
                    if text.is_null(i) {
                        continue;
                    }
                    let v = text.value(i);
                    let ok = match &self.pattern {
                        Some(p) => p.is_match(v),
                        None => self.allowed.contains(v),
                    };
                    if !ok {
                        let short: String = v.chars().take(80).collect();
                        out.push((
                            i,
                            match &self.pattern {
                                Some(_) => format!(
                                    "{column} = {short:?} does not match {:?}",
                                    self.spec
                                        .pattern
                                        .as_ref()
                                        .map(|p| p.get_ref().as_str())
                                        .unwrap_or_default()
                                ),
                                None => format!("{column} = {short:?} is not an allowed value"),
                            },
                        ));
                    }
                }
            }
            _ => {}
        }
        out
    }

    fn result(&self) -> CheckResult {
        let spec = &self.spec;
        let (status, message) = if self.failed == 0 {
            (
                CheckStatus::Passed,
                format!("all {} rows passed", self.checked),
            )
        } else {
            let status = match spec.severity {
                Severity::Warn => CheckStatus::Warned,
                Severity::Error => CheckStatus::Quarantined,
            };
            let action = match spec.severity {
                Severity::Warn => "kept",
                Severity::Error => "quarantined",
            };
            (
                status,
                format!(
                    "{} of {} rows failed ({action}), e.g. {}",
                    self.failed,
                    self.checked,
                    self.examples.join("; ")
                ),
            )
        };
        let mut r = CheckResult::new(spec, status, message);
        r.rows_checked = Some(self.checked);
        r.rows_failed = Some(self.failed);
        r
    }
}

/// What a source sent, column by column: each field's kind of values. Compared run to run
/// for schema drift.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    /// Whether the page's columns are the source's complete set (a CSV header, a declared
    /// field list), so a missing field really disappeared.
    pub complete: bool,
    /// Field → `number`, `boolean`, `timestamp`, `text` or `empty`.
    pub columns: BTreeMap<String, String>,
}

impl Shape {
    /// The shape of a page (usually a source's first).
    pub fn of(page: &RawPage) -> Self {
        let schema = page.batch.schema();
        let columns = schema
            .fields()
            .iter()
            .zip(page.batch.columns())
            .map(|(f, col)| {
                (
                    f.name().clone(),
                    value_kind(col.as_string::<i32>()).to_string(),
                )
            })
            .collect();
        Self {
            complete: page.complete_columns,
            columns,
        }
    }

    /// How `self` (now) differs from `before`, as sentences.
    pub fn drift_from(&self, before: &Shape) -> Vec<String> {
        let mut out = Vec::new();
        // Presence is only reliable when both pages list every column.
        if self.complete && before.complete {
            for name in before.columns.keys() {
                if !self.columns.contains_key(name) {
                    out.push(format!("column {name:?} disappeared"));
                }
            }
            for name in self.columns.keys() {
                if !before.columns.contains_key(name) {
                    out.push(format!("column {name:?} appeared"));
                }
            }
        }
        for (name, kind) in &self.columns {
            if let Some(was) = before.columns.get(name)
                && was != kind
                && was != "empty"
                && kind != "empty"
                // A text column whose sample happens to hold only numbers has not changed:
                // kinds are guessed from the values a page holds, and a small page may hold
                // only the narrow ones.
                && was != "text"
            {
                out.push(format!("column {name:?} changed from {was} to {kind}"));
            }
        }
        out
    }
}

/// The kind of every non-empty value of a raw column: the narrowest that fits them all.
fn value_kind(col: &arrow::array::StringArray) -> &'static str {
    let mut number = true;
    let mut boolean = true;
    let mut timestamp = true;
    let mut any = false;
    let mut parser = crate::parse::TimestampParser::new(chrono_tz::UTC, None);
    for v in col.iter().flatten() {
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        any = true;
        number = number && crate::parse::parse_f64(v).is_some();
        boolean = boolean && !number && crate::parse::parse_bool(v).is_some();
        timestamp = timestamp && !number && parser.parse(v).is_some();
        if !number && !boolean && !timestamp {
            return "text";
        }
    }
    match (any, number, boolean, timestamp) {
        (false, ..) => "empty",
        (_, true, _, _) => "number",
        (_, _, true, _) => "boolean",
        (_, _, _, true) => "timestamp",
        _ => "text",
    }
}

/// What table checks need besides the table.
#[derive(Debug, Clone, Default)]
pub struct TableCheckInput {
    /// The time freshness is judged at.
    pub now: Option<DateTime<Utc>>,
    /// Rows in the version checked (counted once by the caller, see [`row_count`]).
    pub rows: u64,
    /// The table's row count at the previous run's version.
    pub previous_rows: Option<u64>,
    /// Per source: its drift from the last accepted shape (`None`: no earlier shape or no
    /// rows this run).
    pub drift: Vec<(String, Option<Vec<String>>)>,
}

#[derive(Debug, thiserror::Error)]
#[error("table {table}: check {check:?}: {message}")]
pub struct CheckError {
    pub table: String,
    pub check: String,
    pub message: String,
}

/// Run the pipeline's table checks against one version of its table.
pub async fn table_checks(
    pipeline: &Pipeline,
    table: &DeltaTable,
    input: &TableCheckInput,
) -> Result<Vec<CheckResult>, CheckError> {
    use deltalake::datafusion::prelude::SessionContext;
    let name = pipeline.spec.table.name.get_ref();
    let ctx = SessionContext::new();
    let fail = |check: &CheckSpec, e: &dyn std::fmt::Display| CheckError {
        table: name.clone(),
        check: check.id(),
        message: e.to_string(),
    };
    let mut out = Vec::new();
    let mut registered = false;
    for check in &pipeline.spec.checks {
        let kind = *check.kind.get_ref();
        if kind.is_row_check() {
            continue;
        }
        if !registered && kind != CheckKind::SchemaDrift {
            table
                .update_datafusion_session(&ctx.state())
                .map_err(|e| fail(check, &e))?;
            let provider = table.table_provider().await.map_err(|e| fail(check, &e))?;
            ctx.register_table("t", provider)
                .map_err(|e| fail(check, &e))?;
            registered = true;
        }
        let rows = |ctx: &SessionContext, sql: String| {
            let ctx = ctx.clone();
            async move {
                let batches = ctx.sql(&sql).await?.collect().await?;
                Ok::<_, deltalake::datafusion::error::DataFusionError>(batches)
            }
        };
        let result = match kind {
            CheckKind::Unique => {
                let columns: Vec<String> = if check.columns.is_empty() {
                    pipeline.spec.table.key_columns()
                } else {
                    check.columns.iter().map(|c| c.get_ref().clone()).collect()
                };
                let cols = columns
                    .iter()
                    .map(|c| quote(c))
                    .collect::<Vec<_>>()
                    .join(", ");
                let sql = format!(
                    "SELECT {cols}, count(*) AS n FROM t GROUP BY {cols} HAVING count(*) > 1 \
                     ORDER BY n DESC, {cols}"
                );
                let batches = rows(&ctx, sql).await.map_err(|e| fail(check, &e))?;
                let total = input.rows;
                let mut groups = 0u64;
                let mut extra = 0u64;
                let mut examples = Vec::new();
                for b in &batches {
                    let n = b
                        .column(columns.len())
                        .as_primitive::<arrow::datatypes::Int64Type>();
                    for i in 0..b.num_rows() {
                        groups += 1;
                        extra += n.value(i) as u64 - 1;
                        if examples.len() < EXAMPLES {
                            let key = (0..columns.len())
                                .map(|c| text_of(b.column(c), i))
                                .collect::<Vec<_>>()
                                .join(", ");
                            examples.push(format!("({key}) × {}", n.value(i)));
                        }
                    }
                }
                let mut r = if groups == 0 {
                    CheckResult::new(
                        check,
                        CheckStatus::Passed,
                        format!("all {total} rows have distinct ({})", columns.join(", ")),
                    )
                } else {
                    CheckResult::new(
                        check,
                        CheckResult::failing(check),
                        format!(
                            "{groups} value(s) of ({}) occur more than once ({extra} extra rows), e.g. {}",
                            columns.join(", "),
                            examples.join("; ")
                        ),
                    )
                };
                r.rows_checked = Some(total);
                r.rows_failed = Some(extra);
                r
            }
            CheckKind::Freshness => {
                let column = check
                    .column
                    .as_ref()
                    .or(pipeline.spec.table.time.as_ref())
                    .map(|c| c.get_ref().clone())
                    .unwrap_or_default();
                let max_age = check.max_age.unwrap_or_default();
                let batches = rows(&ctx, format!("SELECT max({}) FROM t", quote(&column)))
                    .await
                    .map_err(|e| fail(check, &e))?;
                let newest = batches
                    .iter()
                    .find(|b| b.num_rows() > 0)
                    .and_then(|b| instant_of(b.column(0), 0, pipeline.tz));
                let now = input.now.unwrap_or_else(Utc::now);
                match newest {
                    None => CheckResult::new(
                        check,
                        CheckResult::failing(check),
                        format!("{column} has no values: the table is empty"),
                    ),
                    Some(newest) => {
                        let age = (now - newest).to_std().unwrap_or_default();
                        let shown = humantime::format_duration(std::time::Duration::from_secs(
                            age.as_secs() / 60 * 60,
                        ));
                        let limit = humantime::format_duration(max_age);
                        if age <= max_age {
                            CheckResult::new(
                                check,
                                CheckStatus::Passed,
                                format!(
                                    "newest {column} is {} ({shown} old; limit {limit})",
                                    newest.format("%Y-%m-%d %H:%M UTC")
                                ),
                            )
                        } else {
                            CheckResult::new(
                                check,
                                CheckResult::failing(check),
                                format!(
                                    "newest {column} is {}, {shown} old; expected younger than {limit}",
                                    newest.format("%Y-%m-%d %H:%M UTC")
                                ),
                            )
                        }
                    }
                }
            }
            CheckKind::RowCount => {
                let now_rows = input.rows;
                let max_drop = check.max_drop.unwrap_or(100.0);
                let mut r = match input.previous_rows {
                    None => CheckResult::new(
                        check,
                        CheckStatus::Skipped,
                        format!("{now_rows} rows; no previous run to compare with"),
                    ),
                    Some(before) => {
                        let drop = if before == 0 || now_rows >= before {
                            0.0
                        } else {
                            (before - now_rows) as f64 * 100.0 / before as f64
                        };
                        if drop > max_drop {
                            CheckResult::new(
                                check,
                                CheckResult::failing(check),
                                format!(
                                    "the table fell from {before} to {now_rows} rows ({drop:.1} % fewer); at most {max_drop} % is expected"
                                ),
                            )
                        } else {
                            CheckResult::new(
                                check,
                                CheckStatus::Passed,
                                format!("{now_rows} rows (previous run: {before})"),
                            )
                        }
                    }
                };
                r.rows_checked = Some(now_rows);
                r
            }
            CheckKind::SchemaDrift => drift_result(check, &input.drift),
            _ => continue,
        };
        out.push(result);
    }
    Ok(out)
}

/// The pipeline's schema-drift checks alone: for a run that failed before its table checks
/// (a renamed column stops the load), so the drift is still reported.
pub fn drift_checks(
    pipeline: &Pipeline,
    drift: &[(String, Option<Vec<String>>)],
) -> Vec<CheckResult> {
    pipeline
        .spec
        .checks
        .iter()
        .filter(|c| *c.kind.get_ref() == CheckKind::SchemaDrift)
        .map(|c| drift_result(c, drift))
        .collect()
}

fn drift_result(check: &CheckSpec, drift: &[(String, Option<Vec<String>>)]) -> CheckResult {
    let mut changes = Vec::new();
    let mut judged = false;
    for (source, d) in drift {
        if let Some(d) = d {
            judged = true;
            changes.extend(d.iter().map(|c| format!("{source}: {c}")));
        }
    }
    if !changes.is_empty() {
        CheckResult::new(check, CheckResult::failing(check), changes.join("; "))
    } else if judged {
        CheckResult::new(
            check,
            CheckStatus::Passed,
            "the sources sent the same columns as before".into(),
        )
    } else {
        CheckResult::new(
            check,
            CheckStatus::Skipped,
            "no earlier columns to compare with (a first run, or no rows this run)".into(),
        )
    }
}

async fn count_rows(
    ctx: &deltalake::datafusion::prelude::SessionContext,
    sql: &str,
) -> Result<u64, deltalake::datafusion::error::DataFusionError> {
    let batches = ctx.sql(sql).await?.collect().await?;
    Ok(batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .map(|b| {
            b.column(0)
                .as_primitive::<arrow::datatypes::Int64Type>()
                .value(0) as u64
        })
        .unwrap_or(0))
}

fn text_of(col: &ArrayRef, i: usize) -> String {
    if col.is_null(i) {
        return "NULL".into();
    }
    arrow::util::display::array_value_to_string(col, i).unwrap_or_default()
}

/// A timestamp or date value as an instant (a date at its local midnight in `tz`).
fn instant_of(col: &ArrayRef, i: usize, tz: chrono_tz::Tz) -> Option<DateTime<Utc>> {
    if col.is_null(i) {
        return None;
    }
    match col.data_type() {
        DataType::Date32 => {
            let days = col.as_primitive::<arrow::datatypes::Date32Type>().value(i);
            NaiveDate::from_ymd_opt(1970, 1, 1)?
                .checked_add_signed(chrono::TimeDelta::days(i64::from(days)))
                .and_then(|d| {
                    d.and_time(chrono::NaiveTime::MIN)
                        .and_local_timezone(tz)
                        .earliest()
                })
                .map(|t| t.with_timezone(&Utc))
        }
        DataType::Timestamp(_, _) => {
            let cast = arrow::compute::cast(
                col,
                &DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
            )
            .ok()?;
            let us = cast
                .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                .value(i);
            DateTime::from_timestamp_micros(us)
        }
        _ => None,
    }
}

/// Rows in one version of a table.
pub async fn row_count(table: &DeltaTable) -> Result<u64, deltalake::DeltaTableError> {
    use deltalake::datafusion::prelude::SessionContext;
    let ctx = SessionContext::new();
    table.update_datafusion_session(&ctx.state())?;
    ctx.register_table("t", table.table_provider().await?)?;
    Ok(count_rows(&ctx, "SELECT count(*) FROM t").await?)
}
