//! Running indicator SQL.

use crate::period_udf::PeriodUdf;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use chrono::NaiveDate;
use datafusion::catalog::MemTable;
use datafusion::datasource::TableProvider;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::{DataFrame, SessionContext};
use futures::{StreamExt as _, TryStreamExt as _};
use goalpost_spec::period::{Period, PeriodKind};
use goalpost_spec::{Diagnostic, IndicatorSpec, Pipeline};
use goalpost_table::AbortOnDrop;
use goalpost_table::deltalake::DeltaTable;
use serde::Serialize;
use std::collections::HashSet;
use std::sync::Arc;
use tracing::Instrument as _;

#[derive(Debug, thiserror::Error)]
pub enum IndicatorError {
    #[error("{file}: indicator {indicator:?}: {message}")]
    Sql {
        file: String,
        indicator: String,
        message: String,
    },
    #[error("table {table}: {message}")]
    Table { table: String, message: String },
}

/// One figure: an indicator's value for a period, for the total or for one group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// Period label, e.g. "2018-07".
    pub period: String,
    pub start: NaiveDate,
    /// First day after the period.
    pub end: NaiveDate,
    /// The breakdown values (`by` column → value); empty for the total.
    pub group: Vec<(String, String)>,
    pub value: Option<f64>,
    /// The period had not ended on the evaluation date: shown, never judged.
    pub partial: bool,
    /// Rows behind the figure, when the query says (a structured indicator always does;
    /// SQL returns it as a column `n`).
    pub n: Option<u64>,
    /// Built from fewer rows than the indicator's `min_count`, or withheld so that such a
    /// figure cannot be worked out from the total and the other groups: `value` is `None`.
    pub suppressed: bool,
    /// Flags of the observation (`provisional`, `estimated`, `revised`), comma-separated.
    pub flag: Option<String>,
}

/// Every figure of one indicator, ordered by group (total first) then period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub indicator: String,
    pub period: PeriodKind,
    pub points: Vec<Point>,
    /// Other pipelines' tables the query read (e.g. a population table), by name.
    pub reads: Vec<String>,
}

impl Series {
    /// The total's points, oldest first.
    pub fn total(&self) -> impl Iterator<Item = &Point> {
        self.points.iter().filter(|p| p.group.is_empty())
    }
}

const BASE: &str = "__goalpost_base";

fn sql_options() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Other pipelines' tables an indicator may read, by table name: a population table, a list
/// of districts. They have no `period` column.
type Lookups = [(String, Arc<dyn TableProvider>)];

/// The tables each indicator's query names besides its pipeline's own (CTE names aside), in
/// order: `(indicator id, table names)`. A query that does not parse names none here;
/// [`check_sql`] reports it.
pub fn tables_read(pipeline: &Pipeline) -> Vec<(String, Vec<String>)> {
    let own = pipeline.spec.table.name.get_ref();
    // Parsing needs no functions: a bare state spares registering DataFusion's hundreds of
    // built-in ones (the daemon calls this at start and on every reload).
    let state = datafusion::execution::SessionStateBuilder::new().build();
    let dialect = state.config().options().sql_parser.dialect;
    pipeline
        .spec
        .indicators
        .iter()
        .map(|ind| {
            let mut names: Vec<String> = state
                .sql_to_statement(ind.sql.get_ref(), &dialect)
                .and_then(|st| state.resolve_table_references(&st))
                .map(|refs| refs.iter().map(|r| r.table().to_string()).collect())
                .unwrap_or_default();
            names.retain(|n| n != own && n != BASE);
            names.sort();
            names.dedup();
            (ind.id.get_ref().clone(), names)
        })
        .collect()
}

/// A session that sees the pipeline's table, with its `period` column, and the lookups.
async fn session(
    pipeline: &Pipeline,
    indicator: &IndicatorSpec,
    base: Arc<dyn TableProvider>,
    lookups: &Lookups,
) -> datafusion::error::Result<SessionContext> {
    // One partition: floating-point sums and averages then add up in the same order every
    // time, so a figure recomputed from the same table version is bit for bit the same
    // (`goalpost recompute` depends on it). City-sized tables need no parallel plan.
    let ctx = SessionContext::new_with_config(
        datafusion::prelude::SessionConfig::new().with_target_partitions(1),
    );
    ctx.register_udf(ScalarUDF::from(PeriodUdf::new(
        indicator.period,
        pipeline.tz,
        pipeline.fiscal_year_start(),
    )));
    ctx.register_table(BASE, base)?;
    let table = pipeline.spec.table.name.get_ref();
    for (name, provider) in lookups {
        if name != table {
            ctx.register_table(name.as_str(), Arc::clone(provider))?;
        }
    }
    let time = indicator
        .time_column(&pipeline.spec.table)
        .unwrap_or_default();
    // Names are validated identifiers ([a-z_][a-z0-9_]*), so quoting is enough.
    ctx.sql(&format!(
        "CREATE VIEW \"{table}\" AS SELECT *, {}(\"{time}\") AS period FROM {BASE}",
        PeriodUdf::NAME
    ))
    .await?;
    Ok(ctx)
}

async fn plan(ctx: &SessionContext, sql: &str) -> datafusion::error::Result<DataFrame> {
    ctx.sql_with_options(sql, sql_options()).await
}

/// Problems with the shape of an indicator's result.
fn output_problems(indicator: &IndicatorSpec, df: &DataFrame) -> Vec<String> {
    let schema = df.schema();
    let has = |name: &str| schema.fields().iter().any(|f| f.name() == name);
    let mut problems = Vec::new();
    let mut required = vec!["period", "value"];
    required.extend(indicator.by.iter().map(|b| b.get_ref().as_str()));
    for name in required {
        if !has(name) {
            problems.push(format!(
                "the query returns no column {name:?}; it returns: {}; expected period, {}value",
                schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                indicator
                    .by
                    .iter()
                    .map(|b| format!("{}, ", b.get_ref()))
                    .collect::<String>()
            ));
        }
    }
    if let Some(f) = schema.fields().iter().find(|f| f.name() == "value")
        && !f.data_type().is_numeric()
        && !matches!(f.data_type(), DataType::Null)
    {
        problems.push(format!(
            "column \"value\" is {}; expected a number",
            f.data_type()
        ));
    }
    problems
}

/// Plan every indicator's SQL against the table's declared (empty) schema and check the shape
/// of its result. Returns one diagnostic per problem, pointing into the pipeline file.
///
/// `lookups` are the other tables the queries may read, with their declared schemas.
pub async fn check_sql(pipeline: &Pipeline, lookups: &[(String, SchemaRef)]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let schema = pipeline.spec.table.arrow_schema();
    let empty: Arc<dyn TableProvider> = match MemTable::try_new(schema, vec![vec![]]) {
        Ok(t) => Arc::new(t),
        Err(e) => {
            out.push(
                pipeline
                    .file
                    .diagnostic(None, format!("cannot build the table's schema: {e}")),
            );
            return out;
        }
    };
    let mut others: Vec<(String, Arc<dyn TableProvider>)> = Vec::new();
    for (name, schema) in lookups {
        match MemTable::try_new(Arc::clone(schema), vec![vec![]]) {
            Ok(t) => others.push((name.clone(), Arc::new(t))),
            Err(e) => out.push(
                pipeline
                    .file
                    .diagnostic(None, format!("cannot build table {name}'s schema: {e}")),
            ),
        }
    }
    for indicator in &pipeline.spec.indicators {
        let sql = &indicator.sql;
        let result = match session(pipeline, indicator, Arc::clone(&empty), &others).await {
            Ok(ctx) => plan(&ctx, sql.get_ref()).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(df) => {
                for p in output_problems(indicator, &df) {
                    out.push(pipeline.file.diagnostic(
                        Some(sql.span()),
                        format!("indicator {:?}: {p}", indicator.id.get_ref()),
                    ));
                }
            }
            Err(e) => {
                let message = clean_error(&e.to_string());
                let span = locate_in_sql(pipeline, indicator, &message).unwrap_or(sql.span());
                out.push(pipeline.file.diagnostic(
                    Some(span),
                    format!("indicator {:?}: {message}", indicator.id.get_ref()),
                ));
            }
        }
    }
    out
}

/// DataFusion's messages carry layers of prefixes ("Error during planning: Schema error: …").
fn clean_error(message: &str) -> String {
    let mut m = message.trim();
    for prefix in [
        "Error during planning: ",
        "Schema error: ",
        "SQL error: ",
        "This feature is not implemented: ",
    ] {
        m = m.strip_prefix(prefix).unwrap_or(m);
    }
    let m = m
        .replace(&format!("{BASE}."), "")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if [
        "DDL not supported",
        "DML not supported",
        "Statement not supported",
    ]
    .iter()
    .any(|p| m.starts_with(p))
    {
        // Writes, definitions and settings are refused by the session's SQL options.
        return format!(
            "{m}; indicator SQL may only be one SELECT (WITH … SELECT) over the pipeline's own and other pipelines' tables"
        );
    }
    m
}

/// Point at the offending name inside the SQL when the message names one.
fn locate_in_sql(
    pipeline: &Pipeline,
    indicator: &IndicatorSpec,
    message: &str,
) -> Option<std::ops::Range<usize>> {
    let name = message
        .split_once("No field named ")
        .map(|(_, rest)| rest)
        .or_else(|| message.split_once("table '").map(|(_, rest)| rest))?;
    let name: String = name
        .trim_start_matches(['"', '\''])
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
        .collect();
    let name = name.trim_end_matches('.').rsplit('.').next()?.to_string();
    if name.is_empty() {
        return None;
    }
    let span = indicator.sql.span();
    let text = pipeline.file.text.get(span.clone())?;
    let at = find_word(text, &name)?;
    Some(span.start + at..span.start + at + name.len())
}

fn find_word(haystack: &str, word: &str) -> Option<usize> {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    haystack.match_indices(word).map(|(i, _)| i).find(|&i| {
        let before = haystack[..i].chars().next_back();
        let after = haystack[i + word.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

/// Run every indicator of a pipeline over its table.
///
/// `as_of` is the evaluation date: periods that have not ended by then are `partial`.
///
/// `lookups` are the other tables the indicators read (see [`tables_read`]), opened at the
/// versions to use.
pub async fn compute(
    pipeline: &Pipeline,
    table: &DeltaTable,
    lookups: &[(String, DeltaTable)],
    as_of: NaiveDate,
) -> Result<Vec<Series>, IndicatorError> {
    let table_name = pipeline.spec.table.name.get_ref().clone();
    let provider = table
        .table_provider()
        .await
        .map_err(|e| IndicatorError::Table {
            table: table_name.clone(),
            message: e.to_string(),
        })?;
    let mut others: Vec<(String, Arc<dyn TableProvider>)> = Vec::with_capacity(lookups.len());
    for (name, lookup) in lookups {
        let provider = lookup
            .table_provider()
            .await
            .map_err(|e| IndicatorError::Table {
                table: name.clone(),
                message: e.to_string(),
            })?;
        others.push((name.clone(), provider));
    }
    let reads = tables_read(pipeline);
    // Structured indicators that group the same rows the same way are computed together, in
    // one query (see `together`); any other indicator is a query of its own. Each query is
    // one partition; as many run at once as there are cores, each on a task of its own. The
    // results keep the pipeline's order.
    let parallel = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shared = Arc::new(Shared {
        pipeline: pipeline.clone(),
        table: table.clone(),
        lookups: lookups.to_vec(),
        provider,
        others,
        as_of,
    });
    let specs = &pipeline.spec.indicators;
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, indicator) in specs.iter().enumerate() {
        match groups
            .iter_mut()
            .find(|g| goalpost_spec::same_grouping(&specs[g[0]], indicator))
        {
            Some(group) => group.push(i),
            None => groups.push(vec![i]),
        }
    }
    let jobs = groups.into_iter().map(|group| {
        let shared = Arc::clone(&shared);
        let indicators: Vec<(usize, IndicatorSpec, Vec<String>)> = group
            .iter()
            .map(|i| (*i, specs[*i].clone(), reads[*i].1.clone()))
            .collect();
        async move {
            let id = indicators[0].1.id.get_ref().clone();
            let file = shared.pipeline.file.path.display().to_string();
            // Aborted when dropped: an error elsewhere or a cancelled run stops it too.
            let task = AbortOnDrop(tokio::spawn(
                async move { together(&shared, indicators).await }.in_current_span(),
            ));
            task.wait().await.map_err(|e| IndicatorError::Sql {
                file,
                indicator: id,
                message: format!("goalpost stopped while computing it: {e}"),
            })?
        }
    });
    let mut computed: Vec<(usize, Series)> = futures::stream::iter(jobs)
        .buffered(parallel)
        .try_collect::<Vec<_>>()
        .await?
        .into_iter()
        .flatten()
        .collect();
    computed.sort_by_key(|(i, _)| *i);
    Ok(computed.into_iter().map(|(_, series)| series).collect())
}

/// The series of `indicators` (with their place in the pipeline and the tables they read):
/// one query for them all when there are several (they share their grouping, see
/// [`goalpost_spec::same_grouping`]), which reads and groups the table once. Should that
/// query fail, each is computed on its own, so the error names the indicator at fault.
async fn together(
    shared: &Shared,
    indicators: Vec<(usize, IndicatorSpec, Vec<String>)>,
) -> Result<Vec<(usize, Series)>, IndicatorError> {
    if indicators.len() > 1 {
        match combined(shared, &indicators).await {
            Ok(series) => return Ok(series),
            Err(e) => tracing::debug!(error = %e, "computing the indicators one by one"),
        }
    }
    let mut out = Vec::with_capacity(indicators.len());
    for (i, indicator, read) in indicators {
        out.push((i, one(shared, &indicator, read).await?));
    }
    Ok(out)
}

/// [`together`]'s one query.
async fn combined(
    shared: &Shared,
    indicators: &[(usize, IndicatorSpec, Vec<String>)],
) -> Result<Vec<(usize, Series)>, String> {
    let pipeline = &shared.pipeline;
    let measures: Vec<(&IndicatorSpec, goalpost_spec::Measure)> = indicators
        .iter()
        .filter_map(|(_, ind, _)| ind.measure.as_ref().map(|m| (ind, *m.get_ref())))
        .collect();
    if measures.len() != indicators.len() {
        return Err("an indicator without a measure".into());
    }
    let sql = goalpost_spec::combined_sql(&measures, pipeline.spec.table.name.get_ref());
    let batches = shared
        .planned(&indicators[0].1, &sql)
        .await?
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(indicators.len());
    for (k, (i, indicator, read)) in indicators.iter().enumerate() {
        // This indicator's figures: `value_k` as `value`, beside the grouping and `n`.
        let mine = batches
            .iter()
            .map(|b| figures_of(b, k, indicators.len()))
            .collect::<Result<Vec<_>, _>>()?;
        let points = points(pipeline, indicator, &mine, shared.as_of)?;
        tracing::debug!(indicator = %indicator.id.get_ref(), points = points.len(), "computed");
        out.push((*i, shared.series(indicator, points, read)));
    }
    Ok(out)
}

/// The columns of a combined query's batch that are indicator `k`'s figures: every column
/// but the other indicators' values, with `value_k` named `value`.
fn figures_of(batch: &RecordBatch, k: usize, count: usize) -> Result<RecordBatch, String> {
    let values: Vec<String> = (0..count).map(|j| format!("value_{j}")).collect();
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        match values.iter().position(|v| v == field.name()) {
            Some(j) if j == k => fields.push(field.as_ref().clone().with_name("value")),
            Some(_) => continue,
            None => fields.push(field.as_ref().clone()),
        }
        columns.push(Arc::clone(column));
    }
    RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), columns)
        .map_err(|e| e.to_string())
}

/// What every indicator of a pipeline computes from.
struct Shared {
    pipeline: Pipeline,
    table: DeltaTable,
    lookups: Vec<(String, DeltaTable)>,
    provider: Arc<dyn TableProvider>,
    others: Vec<(String, Arc<dyn TableProvider>)>,
    as_of: NaiveDate,
}

impl Shared {
    /// `sql` planned in `indicator`'s session (its period column, the lookups); errors as
    /// the message shown to the user.
    async fn planned(&self, indicator: &IndicatorSpec, sql: &str) -> Result<DataFrame, String> {
        let ctx = session(
            &self.pipeline,
            indicator,
            Arc::clone(&self.provider),
            &self.others,
        )
        .await
        .map_err(|e| clean_error(&e.to_string()))?;
        for t in std::iter::once(&self.table).chain(self.lookups.iter().map(|(_, t)| t)) {
            t.update_datafusion_session(&ctx.state())
                .map_err(|e| e.to_string())?;
        }
        plan(&ctx, sql)
            .await
            .map_err(|e| clean_error(&e.to_string()))
    }

    /// `indicator`'s series of `points`; of the tables its query `read`, the lookups.
    fn series(&self, indicator: &IndicatorSpec, points: Vec<Point>, read: &[String]) -> Series {
        Series {
            indicator: indicator.id.get_ref().clone(),
            period: indicator.period,
            points,
            reads: read
                .iter()
                .filter(|r| self.lookups.iter().any(|(name, _)| name == *r))
                .cloned()
                .collect(),
        }
    }
}

/// One indicator's series.
async fn one(
    shared: &Shared,
    indicator: &IndicatorSpec,
    read: Vec<String>,
) -> Result<Series, IndicatorError> {
    let pipeline = &shared.pipeline;
    let sql_err = |message: String| IndicatorError::Sql {
        file: pipeline.file.path.display().to_string(),
        indicator: indicator.id.get_ref().clone(),
        message,
    };
    let df = shared
        .planned(indicator, indicator.sql.get_ref())
        .await
        .map_err(sql_err)?;
    let problems = output_problems(indicator, &df);
    if !problems.is_empty() {
        return Err(sql_err(problems.join("; ")));
    }
    let batches = df
        .collect()
        .await
        .map_err(|e| sql_err(clean_error(&e.to_string())))?;
    let points = points(pipeline, indicator, &batches, shared.as_of).map_err(sql_err)?;
    tracing::debug!(indicator = %indicator.id.get_ref(), points = points.len(), "computed");
    Ok(shared.series(indicator, points, &read))
}

fn points(
    pipeline: &Pipeline,
    indicator: &IndicatorSpec,
    batches: &[RecordBatch],
    as_of: NaiveDate,
) -> Result<Vec<Point>, String> {
    let mut points = Vec::new();
    let mut seen = HashSet::new();
    let fiscal_start = pipeline.fiscal_year_start();
    for batch in batches {
        let as_text = |name: &str| -> Result<arrow::array::ArrayRef, String> {
            let col = batch
                .column_by_name(name)
                .ok_or_else(|| format!("result has no column {name:?}"))?;
            arrow::compute::cast(col, &DataType::Utf8).map_err(|e| e.to_string())
        };
        let period = as_text("period")?;
        let period = period.as_string::<i32>();
        let value = batch
            .column_by_name("value")
            .ok_or("result has no column \"value\"")?;
        let value = arrow::compute::cast(value, &DataType::Float64).map_err(|e| e.to_string())?;
        let value = value.as_primitive::<arrow::datatypes::Float64Type>();
        let n = match batch.column_by_name("n") {
            Some(c) => Some(arrow::compute::cast(c, &DataType::Int64).map_err(|e| {
                format!("column \"n\" (rows behind each figure) is not a count: {e}")
            })?),
            None => None,
        };
        let flags = match batch.column_by_name("flag") {
            Some(_) => Some(as_text("flag")?),
            None => None,
        };
        let by: Vec<(String, arrow::array::ArrayRef)> = indicator
            .by
            .iter()
            .map(|b| Ok((b.get_ref().clone(), as_text(b.get_ref())?)))
            .collect::<Result<_, String>>()?;
        for row in 0..batch.num_rows() {
            if period.is_null(row) {
                // Rows without a time have no period; they cannot be placed on the series.
                continue;
            }
            let label = period.value(row);
            let p = Period::parse(indicator.period, label, fiscal_start).ok_or_else(|| {
                format!(
                    "period {label:?} is not a {} label (expected e.g. {:?}); return the view's `period` column unchanged",
                    indicator.period,
                    indicator.period.example()
                )
            })?;
            let group: Vec<(String, String)> = if by.iter().all(|(_, a)| a.is_null(row)) {
                Vec::new()
            } else {
                by.iter()
                    .map(|(name, a)| {
                        let a = a.as_string::<i32>();
                        let v = if a.is_null(row) {
                            "(none)".to_string()
                        } else {
                            a.value(row).to_string()
                        };
                        (name.clone(), v)
                    })
                    .collect()
            };
            if !seen.insert((label.to_string(), group.clone())) {
                return Err(format!(
                    "the query returns more than one row for period {label}{}; expected one row per period{}",
                    if group.is_empty() {
                        String::from(" (total)")
                    } else {
                        format!(" and {group:?}")
                    },
                    if indicator.by.is_empty() {
                        ""
                    } else {
                        " and group (rows whose `by` columns are all NULL are the total)"
                    }
                ));
            }
            let v = (!value.is_null(row))
                .then(|| value.value(row))
                .filter(|v| v.is_finite());
            let rows = n.as_ref().and_then(|n| {
                let n = n.as_primitive::<arrow::datatypes::Int64Type>();
                (!n.is_null(row)).then(|| n.value(row).max(0) as u64)
            });
            points.push(Point {
                period: label.to_string(),
                start: p.start(),
                end: p.end(),
                group,
                value: v,
                partial: p.end() > as_of,
                n: rows,
                suppressed: false,
                flag: flags.as_ref().and_then(|f| {
                    let f = f.as_string::<i32>();
                    (!f.is_null(row) && !f.value(row).is_empty()).then(|| f.value(row).to_string())
                }),
            });
        }
    }
    suppress(
        &mut points,
        indicator.min_count.unwrap_or(pipeline.spec.min_count),
    );
    points.sort_by(|a, b| (&a.group, a.start).cmp(&(&b.group, b.start)));
    Ok(points)
}

/// Small-cell suppression. A figure built from fewer than `min_count` rows is withheld.
/// Then, within each period's breakdown, a lone withheld group could be worked out from the
/// total and the other groups (for counts and sums), so the group with the fewest rows
/// among the rest is withheld too. A withheld total withholds every group of its period.
pub fn suppress(points: &mut [Point], min_count: u64) {
    if min_count == 0 {
        return;
    }
    for p in points.iter_mut() {
        if p.n.is_some_and(|n| n < min_count) {
            p.suppressed = true;
        }
    }
    let mut periods: Vec<String> = points.iter().map(|p| p.period.clone()).collect();
    periods.sort();
    periods.dedup();
    for period in periods {
        let total_suppressed = points
            .iter()
            .any(|p| p.period == period && p.group.is_empty() && p.suppressed);
        let mut groups: Vec<usize> = points
            .iter()
            .enumerate()
            .filter(|(_, p)| p.period == period && !p.group.is_empty())
            .map(|(i, _)| i)
            .collect();
        if total_suppressed {
            for &i in &groups {
                points[i].suppressed = true;
            }
            continue;
        }
        let withheld = groups.iter().filter(|&&i| points[i].suppressed).count();
        if withheld == 1 && groups.len() > 1 {
            groups.retain(|&i| !points[i].suppressed);
            // The smallest other cell: it reveals least by being withheld.
            if let Some(&i) = groups
                .iter()
                .min_by_key(|&&i| (points[i].n.unwrap_or(u64::MAX), points[i].group.clone()))
            {
                points[i].suppressed = true;
            }
        }
    }
    for p in points.iter_mut().filter(|p| p.suppressed) {
        p.value = None;
        p.n = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(period: &str, group: Option<&str>, n: u64) -> Point {
        let start = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap();
        Point {
            period: period.into(),
            start,
            end: start,
            group: group
                .map(|g| vec![("district".to_string(), g.to_string())])
                .unwrap_or_default(),
            value: Some(n as f64),
            partial: false,
            n: Some(n),
            suppressed: false,
            flag: None,
        }
    }

    fn withheld(points: &[Point]) -> Vec<(String, String)> {
        points
            .iter()
            .filter(|p| p.suppressed)
            .map(|p| {
                (
                    p.period.clone(),
                    p.group.first().map_or("total".into(), |g| g.1.clone()),
                )
            })
            .collect()
    }

    #[test]
    fn small_cells_and_their_complements_are_withheld() {
        let mut points = vec![
            // One small group: the smallest other group is withheld with it.
            cell("a", None, 20),
            cell("a", Some("x"), 3),
            cell("a", Some("y"), 10),
            cell("a", Some("z"), 7),
            // A small total withholds every group.
            cell("b", None, 4),
            cell("b", Some("x"), 2),
            cell("b", Some("y"), 2),
            // Two small groups protect each other.
            cell("c", None, 13),
            cell("c", Some("x"), 2),
            cell("c", Some("y"), 1),
            cell("c", Some("z"), 10),
            // Nothing small: nothing withheld (5 is enough).
            cell("d", None, 15),
            cell("d", Some("x"), 5),
            cell("d", Some("y"), 10),
        ];
        suppress(&mut points, 5);
        let expected: Vec<(String, String)> = [
            ("a", "x"),
            ("a", "z"),
            ("b", "total"),
            ("b", "x"),
            ("b", "y"),
            ("c", "x"),
            ("c", "y"),
        ]
        .iter()
        .map(|(p, g)| (p.to_string(), g.to_string()))
        .collect();
        assert_eq!(withheld(&points), expected);
        assert!(
            points
                .iter()
                .filter(|p| p.suppressed)
                .all(|p| p.value.is_none() && p.n.is_none()),
            "a withheld figure carries neither its value nor its row count"
        );
        // Without row counts (plain SQL without `n`) nothing can be judged or withheld.
        let mut unknown = vec![cell("a", None, 1)];
        unknown[0].n = None;
        suppress(&mut unknown, 5);
        assert!(!unknown[0].suppressed);
    }
}
