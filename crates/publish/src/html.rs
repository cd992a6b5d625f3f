//! The plain HTML digest (`index.html`): every goal with its status and figures, and every
//! indicator's recent values. Values are formatted here; the template only lays them out and
//! escapes everything it prints.

use crate::digest::{Digest, GoalDigest, IndicatorDigest};
use minijinja::value::Serde;
use minijinja::{Environment, Value, context};
use serde::Serialize;

const INDEX: &str = include_str!("../templates/index.html");

#[derive(Serialize)]
struct GoalView<'a> {
    id: &'a str,
    title: &'a str,
    status: &'static str,
    status_label: &'static str,
    status_reason: &'a str,
    latest: String,
    latest_period: String,
    expected: String,
    target: String,
    target_by: String,
    baseline: String,
    baseline_period: &'a str,
    dataset: &'a str,
    as_of: String,
    refreshed: String,
    table: String,
    held: Option<&'a str>,
    trend: String,
}

#[derive(Serialize)]
struct IndicatorView<'a> {
    title: &'a str,
    period: &'a str,
    unit: &'a str,
    rows: Vec<(String, String, bool)>,
    omitted: usize,
}

#[derive(Serialize)]
struct Department<'a> {
    name: String,
    goals: Vec<GoalView<'a>>,
}

#[derive(Serialize)]
struct DatasetView<'a> {
    title: &'a str,
    description: &'a str,
    refreshed: String,
    as_of: String,
    table: String,
    sources: Vec<(String, Option<&'a str>, u64)>,
    indicators: Vec<IndicatorView<'a>>,
    held: Option<&'a str>,
    quarantined: String,
    checks: &'a [crate::digest::CheckReport],
}

/// A number with thousands separators and a fixed number of decimals.
pub(crate) fn format_number(v: f64, decimals: u8) -> String {
    let s = format!("{:.*}", usize::from(decimals), v.abs());
    let (int, frac) = s
        .split_once('.')
        .map_or((s.as_str(), None), |(i, f)| (i, Some(f)));
    let mut grouped = String::with_capacity(int.len() + int.len() / 3);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if v < 0.0 && s.bytes().any(|b| b.is_ascii_digit() && b != b'0') {
        "-"
    } else {
        ""
    };
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

fn with_unit(v: f64, decimals: Option<u8>, unit: Option<&str>) -> String {
    let n = format_number(v, decimals.unwrap_or(1));
    match unit {
        Some("%") => format!("{n} %"),
        Some(u) if !u.is_empty() => format!("{n} {u}"),
        _ => n,
    }
}

fn goal_view<'a>(
    g: &'a GoalDigest,
    dataset: &'a str,
    p: &'a crate::digest::PipelineDigest,
) -> GoalView<'a> {
    let fmt = |v: f64| with_unit(v, g.decimals, g.unit.as_deref());
    GoalView {
        id: &g.id,
        title: &g.title,
        status: g.status.as_str(),
        status_label: g.status.label(),
        status_reason: &g.status_reason,
        latest: g
            .latest
            .as_ref()
            .map_or_else(|| "—".into(), |l| fmt(l.value)),
        latest_period: g
            .latest
            .as_ref()
            .map_or_else(String::new, |l| l.period.clone()),
        expected: g.expected.map_or_else(|| "—".into(), fmt),
        target: fmt(g.target.value),
        target_by: g.target.by.format("%-d %B %Y").to_string(),
        baseline: fmt(g.baseline.value),
        baseline_period: &g.baseline.period,
        dataset,
        as_of: p.as_of.format("%-d %B %Y").to_string(),
        refreshed: p.refreshed_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        table: format!("{} v{}", p.table.name, p.table.version),
        held: g.held.as_ref().map(|h| h.message.as_str()),
        trend: g.trend.as_ref().map_or_else(String::new, |t| {
            let sign = if t.change > 0.0 { "+" } else { "" };
            format!(
                "{}: {sign}{} since {}{}",
                t.direction,
                with_unit(t.change, g.decimals, g.unit.as_deref()),
                t.from_period,
                match g.periods_to_target {
                    Some(0) | None => String::new(),
                    Some(1) => "; target within a period at this pace".to_string(),
                    Some(n) => format!("; target in about {n} periods at this pace"),
                }
            )
        }),
    }
}

/// The last periods of an indicator's total series, newest first.
const RECENT: usize = 12;

fn indicator_view(ind: &IndicatorDigest) -> IndicatorView<'_> {
    let total: Vec<_> = ind.series.iter().filter(|p| p.group.is_empty()).collect();
    let omitted = total.len().saturating_sub(RECENT);
    IndicatorView {
        title: &ind.title,
        period: &ind.period,
        unit: ind.unit.as_deref().unwrap_or(""),
        rows: total
            .iter()
            .rev()
            .take(RECENT)
            .map(|p| {
                (
                    p.period.clone(),
                    p.value.map_or_else(
                        || {
                            if p.suppressed {
                                "suppressed (too few records)".into()
                            } else {
                                "—".into()
                            }
                        },
                        |v| with_unit(v, ind.decimals, ind.unit.as_deref()),
                    ),
                    p.partial,
                )
            })
            .collect(),
        omitted,
    }
}

pub(crate) fn render_index(digest: &Digest) -> Result<String, minijinja::Error> {
    let mut env = Environment::new();
    // Templates named *.html are escaped automatically.
    env.add_template("index.html", INDEX)?;
    let mut departments: Vec<Department> = Vec::new();
    for p in &digest.pipelines {
        let name = p.department.clone().unwrap_or_else(|| "Other goals".into());
        let idx = match departments.iter().position(|d| d.name == name) {
            Some(i) => i,
            None => {
                departments.push(Department {
                    name,
                    goals: Vec::new(),
                });
                departments.len() - 1
            }
        };
        departments[idx]
            .goals
            .extend(p.goals.iter().map(|g| goal_view(g, &p.title, p)));
    }
    departments.sort_by(|a, b| a.name.cmp(&b.name));
    let datasets: Vec<DatasetView> = digest
        .pipelines
        .iter()
        .map(|p| DatasetView {
            title: &p.title,
            description: p.description.as_deref().unwrap_or(""),
            refreshed: p.refreshed_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            as_of: p.as_of.format("%-d %B %Y").to_string(),
            table: match p.table.latest_version {
                Some(latest) => format!(
                    "{} (version {}, {} rows; version {latest} is held back)",
                    p.table.name,
                    p.table.version,
                    format_number(p.table.rows as f64, 0)
                ),
                None => format!(
                    "{} (version {}, {} rows)",
                    p.table.name,
                    p.table.version,
                    format_number(p.table.rows as f64, 0)
                ),
            },
            sources: p
                .sources
                .iter()
                .map(|s| (s.location.clone(), s.link.as_deref(), s.rows))
                .collect(),
            indicators: p.indicators.iter().map(indicator_view).collect(),
            held: p.held.as_ref().map(|h| h.message.as_str()),
            quarantined: if p.data_quality.rows_quarantined == 0 {
                String::new()
            } else {
                format!(
                    "{} of {} rows received in the last refresh were set aside for review \
                     (they failed typing or a row check).",
                    format_number(p.data_quality.rows_quarantined as f64, 0),
                    format_number(p.data_quality.rows_received as f64, 0)
                )
            },
            checks: &p.data_quality.checks,
        })
        .collect();
    let s = &digest.summary;
    let summary = format!(
        "{} of {} goals on track or met",
        s.met + s.on_track,
        s.goals
    );
    env.get_template("index.html")?.render(context! {
        site => Value::from(Serde(&digest.site)),
        summary => summary,
        counts => Value::from(Serde(s)),
        departments => Value::from(Serde(&departments)),
        datasets => Value::from(Serde(&datasets)),
        version => &digest.version,
        generated => digest.generated_at.format("%Y-%m-%d %H:%M UTC").to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_get_separators_and_fixed_decimals() {
        assert_eq!(format_number(1234567.891, 1), "1,234,567.9");
        assert_eq!(format_number(999.0, 0), "999");
        assert_eq!(format_number(-1234.5, 0), "-1,234");
        assert_eq!(format_number(-0.04, 1), "0.0");
        assert_eq!(with_unit(88.94, Some(1), Some("%")), "88.9 %");
    }
}
