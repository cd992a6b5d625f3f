//! From indicator series and goal judgements to the pipeline's part of the digest.

use chrono::{DateTime, NaiveDate, Utc};
use goalpost_indicators::{Point, Series, judge};
use goalpost_publish::{
    BaselineInfo, DataQuality, GoalDigest, Hold, IndicatorDigest, LatestFigure, PipelineDigest,
    Provenance, SeriesPoint, SourceInfo, TableInfo, TableRead, TargetInfo,
};
use goalpost_spec::{Better, Pipeline};

/// What a run knows besides the figures.
pub(crate) struct Built<'a> {
    pub run_id: &'a str,
    pub now: DateTime<Utc>,
    pub as_of: NaiveDate,
    /// The table version the figures are computed from.
    pub version: u64,
    /// Rows in the table at that version.
    pub rows: u64,
    pub sources: Vec<SourceInfo>,
    pub quality: DataQuality,
    /// Other tables the indicators may have read, at the versions read.
    pub reads: &'a [TableRead],
}

fn point(p: &Point) -> SeriesPoint {
    SeriesPoint {
        period: p.period.clone(),
        start: p.start,
        end: p.end,
        group: p.group.iter().cloned().collect(),
        value: p.value,
        partial: p.partial,
        n: p.n,
        suppressed: p.suppressed,
        flag: p.flag.clone(),
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
    built: Built<'_>,
    series: &[Series],
) -> PipelineDigest {
    let Built {
        run_id,
        now,
        as_of,
        version,
        rows,
        sources,
        quality,
        reads,
    } = built;
    let table = pipeline.spec.table.name.get_ref().clone();
    let read = |s: &Series| -> Vec<TableRead> {
        reads
            .iter()
            .filter(|r| s.reads.contains(&r.table))
            .cloned()
            .collect()
    };
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
            measure: spec.measure.as_ref().map(|m| {
                let m = *m.get_ref();
                match (m, spec.percentile) {
                    (goalpost_spec::Measure::Percentile, Some(p)) => format!("percentile {p}"),
                    _ => m.as_str().to_string(),
                }
            }),
            filter: spec.filter.as_ref().map(|f| f.get_ref().trim().to_string()),
            min_count: spec.min_count.unwrap_or(pipeline.spec.min_count),
            sql: spec.sql.get_ref().trim().to_string(),
            reads: read(s),
            series: s.points.iter().map(point).collect(),
            held: None,
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
                milestones: goal
                    .milestones
                    .iter()
                    .filter_map(|m| {
                        Some(TargetInfo {
                            value: m.value,
                            by: m.date()?,
                        })
                    })
                    .collect(),
                trend: j.trend.as_ref().map(|t| goalpost_publish::TrendInfo {
                    periods: t.periods,
                    from_period: t.from_period.clone(),
                    change: t.change,
                    direction: t.direction.clone(),
                }),
                best: j.best.as_ref().map(|(period, value)| LatestFigure {
                    period: period.clone(),
                    value: *value,
                }),
                worst: j.worst.as_ref().map(|(period, value)| LatestFigure {
                    period: period.clone(),
                    value: *value,
                }),
                periods_to_target: j.periods_to_target,
                cagr: j.cagr.as_ref().map(|c| {
                    let finite = |v: f64| v.is_finite().then_some(v);
                    goalpost_publish::CagrInfo {
                        observed: finite(c.observed),
                        required: finite(c.required),
                        ratio: finite(c.ratio),
                        status: c.status.clone(),
                    }
                }),
                series: s.total().map(point).collect(),
                provenance: Provenance {
                    pipeline: pipeline.id.clone(),
                    sources: sources.clone(),
                    table: table.clone(),
                    table_version: version,
                    sql: spec.sql.get_ref().trim().to_string(),
                    reads: read(s),
                    run_id: run_id.to_string(),
                    computed_at: now,
                },
                held: None,
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
            version,
            rows,
            latest_version: None,
            download: None,
        },
        sources,
        data_quality: quality,
        held: None,
        indicators,
        goals,
        schedule: pipeline.spec.schedule.as_ref().map(|s| s.get_ref().clone()),
        history: Vec::new(),
    }
}

/// The pipeline's part of the digest when a failed check holds its figures: the last good
/// figures and statuses (from `previous`, the part currently published) marked held, with
/// this run's sources and data-quality results. Without earlier figures every indicator is
/// empty and every goal has no data.
pub(crate) fn held_digest(
    pipeline: &Pipeline,
    built: Built<'_>,
    previous: Option<PipelineDigest>,
    mut hold: Hold,
) -> PipelineDigest {
    let written = built.version;
    let mut section = match previous {
        Some(mut p) => {
            // A hold that goes on keeps the run it started in, and the figures' run.
            match &p.held {
                Some(earlier) => {
                    hold.since_run = earlier.since_run.clone();
                    hold.last_good_run = earlier.last_good_run.clone();
                }
                None => hold.last_good_run = Some(p.run_id.clone()),
            }
            p.title = pipeline.spec.title.clone();
            p.department = pipeline.spec.department.clone();
            p.description = pipeline.spec.description.clone();
            p.run_id = built.run_id.to_string();
            p.refreshed_at = built.now;
            p.sources = built.sources;
            p.data_quality = built.quality;
            p
        }
        None => {
            let empty: Vec<Series> = pipeline
                .spec
                .indicators
                .iter()
                .map(|i| Series {
                    indicator: i.id.get_ref().clone(),
                    period: i.period,
                    points: Vec::new(),
                    reads: Vec::new(),
                })
                .collect();
            pipeline_digest(pipeline, built, &empty)
        }
    };
    section.table.latest_version = (section.table.version != written).then_some(written);
    for i in &mut section.indicators {
        i.held = Some(hold.clone());
    }
    for g in &mut section.goals {
        g.held = Some(hold.clone());
    }
    section.held = Some(hold);
    section
}
