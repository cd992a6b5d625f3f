//! From indicator series and goal judgements to the pipeline's part of the digest.

use chrono::{DateTime, NaiveDate, Utc};
use goalpost_indicators::{Point, Series, judge};
use goalpost_publish::{
    BaselineInfo, GoalDigest, IndicatorDigest, LatestFigure, PipelineDigest, Provenance,
    SeriesPoint, SourceInfo, TableInfo, TargetInfo,
};
use goalpost_spec::{Better, Pipeline};
use goalpost_table::TableWrite;

fn point(p: &Point) -> SeriesPoint {
    SeriesPoint {
        period: p.period.clone(),
        start: p.start,
        end: p.end,
        group: p.group.iter().cloned().collect(),
        value: p.value,
        partial: p.partial,
    }
}

fn better_str(b: Better) -> String {
    match b {
        Better::Higher => "higher".into(),
        Better::Lower => "lower".into(),
    }
}

pub(crate) fn pipeline_digest(
    pipeline: &Pipeline,
    run_id: &str,
    now: DateTime<Utc>,
    as_of: NaiveDate,
    write: &TableWrite,
    sources: Vec<SourceInfo>,
    series: &[Series],
) -> PipelineDigest {
    let table = pipeline.spec.table.name.get_ref().clone();
    let indicators = pipeline
        .spec
        .indicators
        .iter()
        .zip(series)
        .map(|(spec, s)| IndicatorDigest {
            id: spec.id.get_ref().clone(),
            title: spec.title.clone(),
            description: spec.description.clone(),
            unit: spec.unit.clone(),
            better: spec.better.map(better_str),
            period: spec.period.as_str().to_string(),
            decimals: spec.decimals,
            by: spec.by.iter().map(|b| b.get_ref().clone()).collect(),
            sql: spec.sql.get_ref().trim().to_string(),
            series: s.points.iter().map(point).collect(),
        })
        .collect();
    let goals = pipeline
        .spec
        .goals
        .iter()
        .filter_map(|goal| {
            let spec = pipeline.indicator(goal.indicator.get_ref())?;
            let s = series
                .iter()
                .find(|s| &s.indicator == goal.indicator.get_ref())?;
            let j = judge(pipeline, goal, s, as_of);
            Some(GoalDigest {
                id: goal.id().to_string(),
                title: goal.title.clone().unwrap_or_else(|| spec.title.clone()),
                indicator: spec.id.get_ref().clone(),
                unit: spec.unit.clone(),
                decimals: spec.decimals,
                status: j.status,
                status_reason: j.reason.clone(),
                latest: j
                    .latest_period
                    .clone()
                    .zip(j.latest_value)
                    .map(|(period, value)| LatestFigure { period, value }),
                expected: j.expected_value,
                progress: j.progress,
                better: better_str(j.better),
                tolerance: j.tolerance,
                baseline: BaselineInfo {
                    period: goal.baseline.period.get_ref().clone(),
                    value: goal.baseline.value,
                },
                target: TargetInfo {
                    value: goal.target.value,
                    // Validated when the pipeline was loaded.
                    by: goal.target.date().unwrap_or(as_of),
                },
                series: s.total().map(point).collect(),
                provenance: Provenance {
                    pipeline: pipeline.id.clone(),
                    sources: sources.clone(),
                    table: table.clone(),
                    table_version: write.version,
                    sql: spec.sql.get_ref().trim().to_string(),
                    run_id: run_id.to_string(),
                    computed_at: now,
                },
            })
        })
        .collect();
    PipelineDigest {
        id: pipeline.id.clone(),
        title: pipeline.spec.title.clone(),
        department: pipeline.spec.department.clone(),
        description: pipeline.spec.description.clone(),
        run_id: run_id.to_string(),
        refreshed_at: now,
        as_of,
        table: TableInfo {
            name: table,
            version: write.version,
            rows: write.rows,
        },
        sources,
        indicators,
        goals,
    }
}
