//! The static site: the home page (every goal with its status), a page per goal (chart,
//! figures, breakdown, method, provenance), a page per dataset (sources, refresh, checks,
//! indicators), the dataset list and the method. Values are formatted here; the templates
//! only lay them out and escape everything they print (charts are SVG built and escaped
//! in `chart.rs`).

use crate::digest::{Digest, GoalDigest, IndicatorDigest, PipelineDigest, SeriesPoint};
use minijinja::value::Serde;
use minijinja::{Environment, Value, context};
use serde::Serialize;
use std::collections::BTreeMap;

const TEMPLATES: [(&str, &str); 8] = [
    ("news.html", include_str!("../templates/news.html")),
    (
        "news_item.html",
        include_str!("../templates/news_item.html"),
    ),
    ("base.html", include_str!("../templates/base.html")),
    ("index.html", include_str!("../templates/index.html")),
    ("goal.html", include_str!("../templates/goal.html")),
    ("dataset.html", include_str!("../templates/dataset.html")),
    ("datasets.html", include_str!("../templates/datasets.html")),
    (
        "methodology.html",
        include_str!("../templates/methodology.html"),
    ),
];

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

pub(crate) fn with_unit(v: f64, decimals: Option<u8>, unit: Option<&str>) -> String {
    let n = format_number(v, decimals.unwrap_or(1));
    match unit {
        Some("%") => format!("{n} %"),
        Some(u) if !u.is_empty() => format!("{n} {u}"),
        _ => n,
    }
}

fn when(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn day(d: chrono::NaiveDate) -> String {
    d.format("%-d %B %Y").to_string()
}

/// File names of the goal pages (`goals/<name>`): the goal id, or `<pipeline>-<goal>` where
/// two pipelines have a goal of the same id.
fn goal_pages(digest: &Digest) -> BTreeMap<(String, String), String> {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &digest.pipelines {
        for g in &p.goals {
            *count.entry(g.id.as_str()).or_default() += 1;
        }
    }
    let mut out = BTreeMap::new();
    for p in &digest.pipelines {
        for g in &p.goals {
            let name = if count[g.id.as_str()] > 1 {
                format!("{}.{}.html", p.id, g.id)
            } else {
                format!("{}.html", g.id)
            };
            out.insert((p.id.clone(), g.id.clone()), name);
        }
    }
    out
}

fn quality_line(p: &PipelineDigest) -> String {
    let dq = &p.data_quality;
    let failed = dq.checks.iter().filter(|c| c.status == "failed").count();
    let warned = dq.checks.iter().filter(|c| c.status == "warned").count();
    let mut line = match (dq.checks.len(), failed, warned) {
        (0, _, _) => "No checks are set for this dataset.".to_string(),
        (n, 0, 0) => format!("All {n} checks passed in the last refresh."),
        (n, f, w) => format!("{n} checks in the last refresh: {f} failed, {w} warned."),
    };
    if dq.rows_quarantined > 0 {
        line.push_str(&format!(
            " {} of {} records received were set aside for review.",
            format_number(dq.rows_quarantined as f64, 0),
            format_number(dq.rows_received as f64, 0)
        ));
    }
    line
}

fn table_line(p: &PipelineDigest) -> String {
    let mut s = format!(
        "{} version {} ({} records)",
        p.table.name,
        p.table.version,
        format_number(p.table.rows as f64, 0)
    );
    if let Some(latest) = p.table.latest_version {
        s.push_str(&format!("; version {latest} is held back"));
    }
    s
}

#[derive(Serialize)]
struct GoalRow {
    id: String,
    page: String,
    title: String,
    status: &'static str,
    status_label: &'static str,
    held: bool,
    latest: String,
    latest_period: String,
    target: String,
    target_by: String,
    trend: String,
    sparkline: String,
    dataset: String,
    dataset_page: String,
    refreshed: String,
}

#[derive(Serialize)]
struct Department {
    name: String,
    goals: Vec<GoalRow>,
}

fn trend_text(g: &GoalDigest) -> String {
    g.trend.as_ref().map_or_else(String::new, |t| {
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
    })
}

fn goal_row(g: &GoalDigest, p: &PipelineDigest, page: &str) -> GoalRow {
    let fmt = |v: f64| with_unit(v, g.decimals, g.unit.as_deref());
    let points: Vec<(chrono::NaiveDate, Option<f64>)> =
        g.series.iter().map(|s| (s.end, s.value)).collect();
    GoalRow {
        id: g.id.clone(),
        page: page.to_string(),
        title: g.title.clone(),
        status: g.status.as_str(),
        status_label: g.status.label(),
        held: g.held.is_some(),
        latest: g
            .latest
            .as_ref()
            .map_or_else(|| "—".into(), |l| fmt(l.value)),
        latest_period: g
            .latest
            .as_ref()
            .map_or_else(String::new, |l| l.period.clone()),
        target: fmt(g.target.value),
        target_by: day(g.target.by),
        trend: trend_text(g),
        sparkline: crate::chart::sparkline(&points, &format!("Trend of {}", g.title)),
        dataset: p.title.clone(),
        dataset_page: format!("{}.html", p.id),
        refreshed: when(p.refreshed_at),
    }
}

#[derive(Serialize)]
struct FigureRow {
    period: String,
    value: String,
    n: String,
    notes: String,
}

fn figure_row(
    label: String,
    s: &SeriesPoint,
    decimals: Option<u8>,
    unit: Option<&str>,
) -> FigureRow {
    let mut notes = Vec::new();
    if s.partial {
        notes.push("partial: the period had not ended".to_string());
    }
    if let Some(f) = &s.flag {
        notes.push(f.replace(',', ", "));
    }
    FigureRow {
        period: label,
        value: match (s.value, s.suppressed) {
            (_, true) => "suppressed (too few records)".into(),
            (Some(v), _) => with_unit(v, decimals, unit),
            (None, _) => "—".into(),
        },
        n: s.n.map_or_else(String::new, |n| format_number(n as f64, 0)),
        notes: notes.join("; "),
    }
}

#[derive(Serialize)]
struct SourceView {
    location: String,
    link: Option<String>,
    rows: String,
}

fn sources(p: &PipelineDigest) -> Vec<SourceView> {
    p.sources
        .iter()
        .map(|s| SourceView {
            location: s.location.clone(),
            // Only web links are links: a source's text is open data and may say anything.
            link: s.link.clone().filter(|l| {
                let l = l.to_ascii_lowercase();
                l.starts_with("https://") || l.starts_with("http://")
            }),
            rows: format_number(s.rows as f64, 0),
        })
        .collect()
}

#[derive(Serialize)]
struct GoalPage {
    title: String,
    department: String,
    status: &'static str,
    status_label: &'static str,
    status_reason: String,
    held: Option<String>,
    latest: String,
    latest_period: String,
    expected: String,
    baseline: String,
    baseline_period: String,
    target: String,
    target_by: String,
    milestones: Vec<String>,
    progress: String,
    trend: String,
    best: String,
    worst: String,
    cagr: String,
    chart: String,
    indicator_title: String,
    period: String,
    rows: Vec<FigureRow>,
    breakdown: Vec<FigureRow>,
    breakdown_by: String,
    breakdown_period: String,
    min_count: u64,
    description: String,
    unit: String,
    better: String,
    measure: String,
    filter: String,
    rule: String,
    sql: String,
    dataset: String,
    dataset_page: String,
    sources: Vec<SourceView>,
    refreshed: String,
    table: String,
    download: Option<String>,
    reads: Vec<String>,
    run: String,
    computed: String,
    quality: String,
}

fn goal_page(g: &GoalDigest, p: &PipelineDigest, ind: Option<&IndicatorDigest>) -> GoalPage {
    let fmt = |v: f64| with_unit(v, g.decimals, g.unit.as_deref());
    let unit = g.unit.as_deref();
    let rows = g
        .series
        .iter()
        .rev()
        .map(|s| figure_row(s.period.clone(), s, g.decimals, unit))
        .collect();
    // The breakdown of the latest judged period (or the latest with any figure).
    let breakdown_period = g
        .latest
        .as_ref()
        .map(|l| l.period.clone())
        .or_else(|| g.series.last().map(|s| s.period.clone()))
        .unwrap_or_default();
    let (breakdown, breakdown_by) = match ind {
        Some(ind) if !ind.by.is_empty() => (
            ind.series
                .iter()
                .filter(|s| !s.group.is_empty() && s.period == breakdown_period)
                .map(|s| {
                    let label: Vec<&str> = s.group.values().map(String::as_str).collect();
                    figure_row(label.join(" · "), s, g.decimals, unit)
                })
                .collect(),
            ind.by.join(" and "),
        ),
        _ => (Vec::new(), String::new()),
    };
    let rule = match &g.cagr {
        Some(_) => "Judged by compound annual growth: the growth seen since the baseline against the growth the target needs.".to_string(),
        None => format!(
            "On track at or beyond the line from baseline to target; at risk when behind it by no more than {} % of the distance from baseline to target.",
            format_number(g.tolerance * 100.0, 0)
        ),
    };
    GoalPage {
        title: g.title.clone(),
        department: p.department.clone().unwrap_or_else(|| "Other goals".into()),
        status: g.status.as_str(),
        status_label: g.status.label(),
        status_reason: g.status_reason.clone(),
        held: g.held.as_ref().map(|h| h.message.clone()),
        latest: g
            .latest
            .as_ref()
            .map_or_else(|| "—".into(), |l| fmt(l.value)),
        latest_period: g
            .latest
            .as_ref()
            .map_or_else(String::new, |l| l.period.clone()),
        expected: g.expected.map_or_else(|| "—".into(), fmt),
        baseline: fmt(g.baseline.value),
        baseline_period: g.baseline.period.clone(),
        target: fmt(g.target.value),
        target_by: day(g.target.by),
        milestones: g
            .milestones
            .iter()
            .map(|m| format!("{} by {}", fmt(m.value), day(m.by)))
            .collect(),
        progress: g.progress.map_or_else(String::new, |p| {
            format!(
                "{} % of the way from baseline to target",
                format_number(p * 100.0, 0)
            )
        }),
        trend: trend_text(g),
        best: g
            .best
            .as_ref()
            .map_or_else(String::new, |b| format!("{} ({})", fmt(b.value), b.period)),
        worst: g
            .worst
            .as_ref()
            .map_or_else(String::new, |w| format!("{} ({})", fmt(w.value), w.period)),
        cagr: g.cagr.as_ref().map_or_else(String::new, |c| {
            let pct = |v: Option<f64>| {
                v.map_or_else(
                    || "—".into(),
                    |v| format!("{} %", format_number(v * 100.0, 1)),
                )
            };
            format!(
                "seen {} a year, needed {} a year: {}",
                pct(c.observed),
                pct(c.required),
                c.status.replace('_', " ")
            )
        }),
        chart: crate::chart::goal_chart(g, "goal-chart"),
        indicator_title: ind.map_or_else(|| g.title.clone(), |i| i.title.clone()),
        period: ind.map_or_else(String::new, |i| i.period.replace('_', " ")),
        rows,
        breakdown,
        breakdown_by,
        breakdown_period,
        min_count: ind.map_or(0, |i| i.min_count),
        description: ind.and_then(|i| i.description.clone()).unwrap_or_default(),
        unit: g.unit.clone().unwrap_or_default(),
        better: g.better.clone(),
        measure: ind.and_then(|i| i.measure.clone()).unwrap_or_default(),
        filter: ind.and_then(|i| i.filter.clone()).unwrap_or_default(),
        rule,
        sql: g.provenance.sql.clone(),
        dataset: p.title.clone(),
        dataset_page: format!("{}.html", p.id),
        sources: sources(p),
        refreshed: when(p.refreshed_at),
        table: table_line(p),
        download: p.table.download.clone(),
        reads: g
            .provenance
            .reads
            .iter()
            .map(|r| {
                format!(
                    "table {} version {} (dataset {})",
                    r.table, r.version, r.pipeline
                )
            })
            .collect(),
        run: g.provenance.run_id.clone(),
        computed: when(g.provenance.computed_at),
        quality: quality_line(p),
    }
}

#[derive(Serialize)]
struct IndicatorView {
    title: String,
    period: String,
    unit: String,
    rows: Vec<(String, String, bool)>,
    omitted: usize,
    goals: Vec<(String, String)>,
}

/// The last periods of an indicator's total series, newest first.
const RECENT: usize = 12;

fn indicator_view(ind: &IndicatorDigest, goals: Vec<(String, String)>) -> IndicatorView {
    let total: Vec<_> = ind.series.iter().filter(|p| p.group.is_empty()).collect();
    let omitted = total.len().saturating_sub(RECENT);
    IndicatorView {
        title: ind.title.clone(),
        period: ind.period.replace('_', " "),
        unit: ind.unit.clone().unwrap_or_default(),
        rows: total
            .iter()
            .rev()
            .take(RECENT)
            .map(|p| {
                let r = figure_row(p.period.clone(), p, ind.decimals, ind.unit.as_deref());
                (r.period, r.value, p.partial)
            })
            .collect(),
        omitted,
        goals,
    }
}

#[derive(Serialize)]
struct RefreshView {
    started: String,
    outcome: String,
    mode: String,
    rows: String,
    version: String,
}

#[derive(Serialize)]
struct DatasetPage {
    page: String,
    title: String,
    description: String,
    department: String,
    held: Option<String>,
    sources: Vec<SourceView>,
    refreshed: String,
    as_of: String,
    rows: String,
    table: String,
    download: Option<String>,
    freshness: String,
    schedule: Option<String>,
    history: Vec<RefreshView>,
    quality: String,
    checks: Vec<crate::digest::CheckReport>,
    indicators: Vec<IndicatorView>,
}

fn dataset_page(p: &PipelineDigest, pages: &BTreeMap<(String, String), String>) -> DatasetPage {
    let freshness = p
        .data_quality
        .checks
        .iter()
        .find(|c| c.kind == "freshness")
        .map_or_else(
            || "No expected refresh interval is set for this dataset.".to_string(),
            |c| format!("{}: {}", c.status, c.message),
        );
    DatasetPage {
        page: format!("{}.html", p.id),
        title: p.title.clone(),
        description: p.description.clone().unwrap_or_default(),
        department: p.department.clone().unwrap_or_default(),
        held: p.held.as_ref().map(|h| h.message.clone()),
        sources: sources(p),
        refreshed: when(p.refreshed_at),
        as_of: day(p.as_of),
        rows: format_number(p.table.rows as f64, 0),
        table: table_line(p),
        download: p.table.download.clone(),
        freshness,
        schedule: p.schedule.clone(),
        history: p
            .history
            .iter()
            .map(|r| RefreshView {
                started: when(r.started_at),
                outcome: match r.outcome.as_str() {
                    "held" => "figures held (a check failed)".into(),
                    "failed" => "failed (nothing published)".into(),
                    other => other.to_string(),
                },
                mode: r.mode.clone().unwrap_or_default(),
                rows: format_number(r.rows_fetched as f64, 0),
                version: r.table_version.map_or_else(String::new, |v| v.to_string()),
            })
            .collect(),
        quality: quality_line(p),
        checks: p.data_quality.checks.clone(),
        indicators: p
            .indicators
            .iter()
            .map(|ind| {
                let goals = p
                    .goals
                    .iter()
                    .filter(|g| g.indicator == ind.id)
                    .filter_map(|g| {
                        Some((
                            pages.get(&(p.id.clone(), g.id.clone()))?.clone(),
                            g.title.clone(),
                        ))
                    })
                    .collect();
                indicator_view(ind, goals)
            })
            .collect(),
    }
}

#[derive(Serialize)]
struct NewsView {
    page: String,
    title: String,
    body: String,
    category: String,
    posted: String,
    until: String,
    archived: bool,
    goal_page: Option<String>,
    share: Vec<(&'static str, String)>,
}

#[derive(Serialize)]
struct NewsCategory {
    name: String,
    items: Vec<NewsView>,
}

/// Characters left as they are in a URL query value; everything else is percent-encoded.
fn query_value(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn news_view(
    n: &crate::digest::NewsItem,
    digest: &Digest,
    pages: &BTreeMap<(String, String), String>,
) -> NewsView {
    let page = format!("{}.html", n.id);
    // Share links need the page's public address.
    let share = match &digest.site.base_url {
        Some(base) if base.starts_with("https://") || base.starts_with("http://") => {
            let url = format!("{}/news/{page}", base.trim_end_matches('/'));
            let (u, t) = (query_value(&url), query_value(&n.title));
            vec![
                ("Email", format!("mailto:?subject={t}&body={u}")),
                (
                    "Facebook",
                    format!("https://www.facebook.com/sharer/sharer.php?u={u}"),
                ),
                ("X", format!("https://x.com/intent/post?url={u}&text={t}")),
                (
                    "LinkedIn",
                    format!("https://www.linkedin.com/sharing/share-offsite/?url={u}"),
                ),
            ]
        }
        _ => Vec::new(),
    };
    NewsView {
        page,
        title: n.title.clone(),
        body: n.body.clone(),
        category: n.category.clone(),
        posted: day(n.posted.date_naive()),
        until: day(n.until.date_naive()),
        archived: n.archived,
        goal_page: n
            .goal
            .as_ref()
            .and_then(|g| pages.get(&(n.pipeline.clone(), g.clone())).cloned()),
        share,
    }
}

#[derive(Serialize)]
struct MethodIndicator {
    title: String,
    description: String,
    dataset: String,
    period: String,
    unit: String,
    measure: String,
}

/// Every page of the site: `(path inside the version, HTML)`.
pub(crate) fn render_site(digest: &Digest) -> Result<Vec<(String, String)>, minijinja::Error> {
    let mut env = Environment::new();
    // Templates named *.html are escaped automatically. Open data may also hold control
    // characters, which HTML does not allow: they are dropped from every printed value.
    env.set_formatter(|out, state, value| match value.as_str() {
        Some(text) if !value.is_safe() && text.chars().any(crate::text::unprintable) => {
            let clean = crate::text::printable(text);
            minijinja::escape_formatter(out, state, &Value::from(clean))
        }
        _ => minijinja::escape_formatter(out, state, value),
    });
    for (name, text) in TEMPLATES {
        env.add_template(name, text)?;
    }
    let pages = goal_pages(digest);
    let common = |root: &str, section: &str| {
        context! {
            site => Value::from(Serde(&digest.site)),
            version => &digest.version,
            generated => when(digest.generated_at),
            root => root,
            section => section,
        }
    };
    let mut out = Vec::new();

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
        departments[idx].goals.extend(
            p.goals
                .iter()
                .map(|g| goal_row(g, p, &pages[&(p.id.clone(), g.id.clone())])),
        );
    }
    departments.sort_by(|a, b| a.name.cmp(&b.name));
    let s = &digest.summary;
    let summary = format!(
        "{} of {} goals on track or met",
        s.met + s.on_track,
        s.goals
    );
    out.push((
        "index.html".to_string(),
        env.get_template("index.html")?.render(context! {
            summary => summary,
            counts => Value::from(Serde(s)),
            departments => Value::from(Serde(&departments)),
            ..common("", "goals")
        })?,
    ));

    for p in &digest.pipelines {
        for g in &p.goals {
            let ind = p.indicators.iter().find(|i| i.id == g.indicator);
            let page = goal_page(g, p, ind);
            out.push((
                format!("goals/{}", pages[&(p.id.clone(), g.id.clone())]),
                env.get_template("goal.html")?.render(context! {
                    g => Value::from(Serde(&page)),
                    ..common("../", "goals")
                })?,
            ));
        }
    }

    let datasets: Vec<DatasetPage> = digest
        .pipelines
        .iter()
        .map(|p| dataset_page(p, &pages))
        .collect();
    for d in &datasets {
        out.push((
            format!("datasets/{}", d.page),
            env.get_template("dataset.html")?.render(context! {
                d => Value::from(Serde(d)),
                ..common("../", "datasets")
            })?,
        ));
    }
    // At the top, so no pipeline id (a dataset page's name) can collide with it.
    out.push((
        "datasets.html".to_string(),
        env.get_template("datasets.html")?.render(context! {
            datasets => Value::from(Serde(&datasets)),
            ..common("", "datasets")
        })?,
    ));

    let indicators: Vec<MethodIndicator> = digest
        .pipelines
        .iter()
        .flat_map(|p| {
            p.indicators.iter().map(|i| MethodIndicator {
                title: i.title.clone(),
                description: i.description.clone().unwrap_or_default(),
                dataset: p.title.clone(),
                period: i.period.replace('_', " "),
                unit: i.unit.clone().unwrap_or_default(),
                measure: i.measure.clone().unwrap_or_default(),
            })
        })
        .collect();
    let mut current: Vec<NewsCategory> = Vec::new();
    let mut archived: Vec<NewsView> = Vec::new();
    for n in &digest.news {
        let view = news_view(n, digest, &pages);
        out.push((
            format!("news/{}", view.page),
            env.get_template("news_item.html")?.render(context! {
                n => Value::from(Serde(&view)),
                ..common("../", "news")
            })?,
        ));
        if n.archived {
            archived.push(view);
        } else {
            match current.iter_mut().find(|c| c.name == n.category) {
                Some(c) => c.items.push(view),
                None => current.push(NewsCategory {
                    name: n.category.clone(),
                    items: vec![view],
                }),
            }
        }
    }
    current.sort_by(|a, b| a.name.cmp(&b.name));
    out.push((
        "news/index.html".to_string(),
        env.get_template("news.html")?.render(context! {
            current => Value::from(Serde(&current)),
            archived => Value::from(Serde(&archived)),
            ..common("../", "news")
        })?,
    ));

    out.push((
        "methodology.html".to_string(),
        env.get_template("methodology.html")?.render(context! {
            indicators => Value::from(Serde(&indicators)),
            ..common("", "methodology")
        })?,
    ));
    Ok(out)
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
