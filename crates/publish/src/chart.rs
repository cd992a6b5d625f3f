//! Inline SVG charts for the HTML pages: a goal's figures against its expected path and
//! target ([`goal_chart`]), and a small line for tables ([`sparkline`]).
//!
//! Both return markup that templates insert unescaped, so every piece of text written here
//! goes through `escape`. Charts need no script and no external resource, scale with their
//! container (a `viewBox`, no fixed width), and carry a text alternative: the goal chart a
//! `<title>` and a `<desc>` that says what the picture shows, the sparkline an `aria-label`.
//!
//! The x axis is a time scale. A series point sits at its `end` (the first day after its
//! period), and a target or milestone at the day after its `by` date, the same instants the
//! expected line is judged on, so uneven periods and the target date sit where they belong.

use crate::digest::{GoalDigest, SeriesPoint};
use chrono::{Datelike, Days, NaiveDate};

// The goal chart is drawn on a 640 × 400 canvas that the browser scales to fit.
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 400.0;
const PLOT_RIGHT: f64 = 624.0;
const PLOT_BOTTOM: f64 = 352.0;
/// Keeps the first and last point off the plot's edges.
const INSET: f64 = 10.0;
const FONT_SIZE: f64 = 13.0;
/// Rough width of a character at `FONT_SIZE`, for layout without font metrics.
const CHAR_WIDTH: f64 = 7.2;
const MAX_X_LABELS: usize = 8;

// Each at least 3:1 against white (WCAG 1.4.11); the lines differ in dash pattern too, so
// colour is not the only cue.
const SERIES: &str = "#1a4480";
const EXPECTED: &str = "#565c65";
const TARGET: &str = "#008817";
const TEXT: &str = "#1b1b1b";
const GRID: &str = "#dfe1e2";
const WHITE: &str = "#fff";
const EXPECTED_DASH: &str = "7 4";
const TARGET_DASH: &str = "3 3";
const FONT_FAMILY: &str = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";

/// Figures beyond this magnitude are left out: scaling them could overflow.
const LIMIT: f64 = 1e300;

/// A line chart of a goal's total series as an inline `<svg>`: the figures (a hollow circle
/// for a period that has not ended, a gap where there is no figure), the expected path from
/// the baseline through any milestones to the target, and the target as a dashed line.
///
/// `id_prefix` makes the ids of the chart's `<title>` and `<desc>` unique on the page; it is
/// reduced to `[a-z0-9-]`.
pub fn goal_chart(goal: &GoalDigest, id_prefix: &str) -> String {
    Chart::new(goal).render(&sanitise_id(id_prefix))
}

/// A small line of `points` for a table cell, the last figure marked, as an inline `<svg>`
/// labelled `label`. Empty when there are fewer than two figures to draw.
pub fn sparkline(points: &[(NaiveDate, Option<f64>)], label: &str) -> String {
    const W: f64 = 120.0;
    const H: f64 = 32.0;
    const PAD: f64 = 3.0;
    let mut points: Vec<(NaiveDate, Option<f64>)> = points
        .iter()
        .map(|&(d, v)| (d, v.and_then(drawable)))
        .collect();
    points.sort_by_key(|p| p.0);
    let values: Vec<f64> = points.iter().filter_map(|p| p.1).collect();
    if values.len() < 2 {
        return String::new();
    }
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let x = TimeScale::new(points.iter().map(|p| p.0), PAD, W - PAD);
    let y = |v: f64| {
        if max > min {
            H - PAD - (v - min) / (max - min) * (H - 2.0 * PAD)
        } else {
            H / 2.0
        }
    };
    let at = |(d, v): (NaiveDate, Option<f64>)| v.map(|v| (x.x(d), y(v)));
    let d = line_path(points.iter().map(|&p| at(p)));
    let last = points.iter().rev().find_map(|&p| at(p));
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="sparkline" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{}">"#,
        escape(label)
    );
    if !d.is_empty() {
        svg.push_str(&format!(
            r#"<path d="{d}" fill="none" stroke="{SERIES}" stroke-width="1.5" stroke-linejoin="round" stroke-linecap="round"/>"#
        ));
    }
    if let Some((cx, cy)) = last {
        svg.push_str(&format!(
            r#"<circle cx="{}" cy="{}" r="2.5" fill="{SERIES}"/>"#,
            num(cx),
            num(cy)
        ));
    }
    svg.push_str("</svg>");
    svg
}

/// Text made safe for XML character data and attribute values: markup characters become
/// references, and control characters (other than tab and newline) and the two
/// noncharacters XML forbids are dropped.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' => out.push(c),
            c if c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// An id fragment of `[a-z0-9-]` that starts with a letter.
fn sanitise_id(prefix: &str) -> String {
    let id: String = prefix
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-') => c,
            _ => '-',
        })
        .collect();
    if id.starts_with(|c: char| c.is_ascii_lowercase()) {
        id
    } else {
        format!("chart-{id}")
    }
}

fn with_unit(v: f64, decimals: u8, unit: Option<&str>) -> String {
    crate::html::with_unit(v, Some(decimals), unit)
}

/// A figure the chart can place.
fn drawable(v: f64) -> Option<f64> {
    (v.is_finite() && v.abs() <= LIMIT).then_some(v)
}

/// A coordinate for an attribute. Scales only produce finite numbers; the guard keeps a
/// mistake from writing `NaN` into the page.
fn num(v: f64) -> String {
    format!("{:.1}", if v.is_finite() { v } else { 0.0 })
}

/// The day a target or milestone `by` date is judged at: its end.
fn deadline(by: NaiveDate) -> NaiveDate {
    by.checked_add_days(Days::new(1)).unwrap_or(by)
}

/// An SVG path through the points, lifting the pen where one is missing; empty when no two
/// neighbours can be joined.
fn line_path(points: impl IntoIterator<Item = Option<(f64, f64)>>) -> String {
    let mut d = String::new();
    let mut run: Vec<(f64, f64)> = Vec::new();
    let mut flush = |run: &mut Vec<(f64, f64)>| {
        if run.len() >= 2 {
            for (i, (x, y)) in run.iter().enumerate() {
                let cmd = if i == 0 { 'M' } else { 'L' };
                if !d.is_empty() {
                    d.push(' ');
                }
                d.push_str(&format!("{cmd}{} {}", num(*x), num(*y)));
            }
        }
        run.clear();
    };
    for p in points {
        match p {
            Some(p) => run.push(p),
            None => flush(&mut run),
        }
    }
    flush(&mut run);
    d
}

/// Maps dates to x, linearly in days.
struct TimeScale {
    first: i64,
    last: i64,
    x0: f64,
    x1: f64,
}

impl TimeScale {
    fn new(dates: impl IntoIterator<Item = NaiveDate>, x0: f64, x1: f64) -> Self {
        let days: Vec<i64> = dates
            .into_iter()
            .map(|d| i64::from(d.num_days_from_ce()))
            .collect();
        Self {
            first: days.iter().copied().min().unwrap_or(0),
            last: days.iter().copied().max().unwrap_or(0),
            x0,
            x1,
        }
    }

    fn x(&self, d: NaiveDate) -> f64 {
        if self.last == self.first {
            return (self.x0 + self.x1) / 2.0;
        }
        let day = i64::from(d.num_days_from_ce());
        self.x0 + (day - self.first) as f64 / (self.last - self.first) as f64 * (self.x1 - self.x0)
    }
}

/// Axis ticks at a step of 1, 2, 2.5 or 5 × 10^k.
#[derive(Debug)]
struct Ticks {
    values: Vec<f64>,
    /// Decimals that show the step exactly.
    decimals: u8,
}

/// Four to six ticks at a nice step whose first is at or below `min` and last at or above
/// `max`. A flat range is widened around its value first.
fn nice_ticks(min: f64, max: f64) -> Ticks {
    let (mut lo, mut hi) = if min <= max { (min, max) } else { (max, min) };
    let scale = lo.abs().max(hi.abs());
    if hi - lo <= scale * 1e-9 {
        let pad = if scale == 0.0 { 1.0 } else { scale * 0.1 };
        let non_negative = lo >= 0.0;
        lo -= pad;
        hi += pad;
        if non_negative {
            lo = lo.max(0.0);
        }
    }
    // Start at a step far below the range and widen it until six ticks cover the range. The
    // steps grow by at most 2×, so the first that fits still needs four ticks.
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) {
        // Only for figures so close to zero that the padding underflows.
        return Ticks {
            values: vec![lo, hi],
            decimals: 0,
        };
    }
    let start = span.log10().floor() as i32 - 2;
    for exp in start..start + 8 {
        for mantissa in [1.0, 2.0, 2.5, 5.0] {
            let step = mantissa * 10f64.powi(exp);
            let mut first = (lo / step).floor();
            let mut last = (hi / step).ceil();
            // Rounding in the product can leave an end tick a hair inside the range.
            if first * step > lo {
                first -= 1.0;
            }
            if last * step < hi {
                last += 1.0;
            }
            if last - first + 1.0 <= 6.0 {
                let count = (last - first) as i64;
                let digits = if mantissa == 2.5 { 1 - exp } else { -exp };
                return Ticks {
                    values: (0..=count).map(|i| (first + i as f64) * step).collect(),
                    decimals: u8::try_from(digits.clamp(0, 20)).unwrap_or(0),
                };
            }
        }
    }
    // Only for ranges too small to step through (subnormal numbers).
    Ticks {
        values: vec![lo, hi],
        decimals: 0,
    }
}

enum Swatch {
    Series,
    Partial,
    Expected,
    Target,
}

struct LegendItem {
    swatch: Swatch,
    text: String,
    x: f64,
    y: f64,
}

struct XLabel {
    /// Where the tick is.
    x: f64,
    /// Where the text is centred: moved in from the edges so it stays on the canvas.
    text_x: f64,
    text: String,
    class: &'static str,
    row: usize,
}

struct Chart<'a> {
    goal: &'a GoalDigest,
    /// The total series in date order.
    points: Vec<&'a SeriesPoint>,
    /// Vertices of the expected path: baseline, milestones, target.
    expected: Vec<(NaiveDate, f64)>,
    target: Option<(NaiveDate, f64)>,
    decimals: u8,
    ticks: Ticks,
    tick_decimals: u8,
    legend: Vec<LegendItem>,
    left: f64,
    top: f64,
    x: TimeScale,
}

impl<'a> Chart<'a> {
    fn new(goal: &'a GoalDigest) -> Self {
        let mut points: Vec<&SeriesPoint> =
            goal.series.iter().filter(|p| p.group.is_empty()).collect();
        points.sort_by_key(|p| p.end);
        let decimals = goal.decimals.unwrap_or(1);
        let target_day = deadline(goal.target.by);
        let target = drawable(goal.target.value).map(|v| (target_day, v));

        // The baseline sits at the end of its period; when that period is not in the series
        // its date is unknown, and the path starts where the series does.
        let start = points
            .iter()
            .find(|p| p.period == goal.baseline.period)
            .or(points.first())
            .map(|p| p.end);
        let mut expected = Vec::new();
        if let (Some(start), Some(base), Some(target)) =
            (start, drawable(goal.baseline.value), target)
        {
            expected.push((start, base));
            let mut milestones: Vec<(NaiveDate, f64)> = goal
                .milestones
                .iter()
                .filter_map(|m| drawable(m.value).map(|v| (deadline(m.by), v)))
                .filter(|&(d, _)| start < d && d < target.0)
                .collect();
            milestones.sort_by_key(|m| m.0);
            expected.extend(milestones);
            if start < target.0 {
                expected.push(target);
            }
        }

        let values: Vec<f64> = points
            .iter()
            .filter_map(|p| p.value.and_then(drawable))
            .chain(expected.iter().map(|e| e.1))
            .chain(target.map(|t| t.1))
            .chain(drawable(goal.baseline.value))
            .collect();
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let ticks = if values.is_empty() {
            nice_ticks(0.0, 1.0)
        } else {
            nice_ticks(min, max)
        };
        let tick_decimals = decimals.max(ticks.decimals);
        let widest = ticks
            .values
            .iter()
            .map(|&v| crate::html::format_number(v, tick_decimals).chars().count())
            .max()
            .unwrap_or(1);
        let left = (widest as f64 * CHAR_WIDTH + 16.0).clamp(44.0, 200.0);

        let mut items = Vec::new();
        if points.iter().any(|p| p.value.and_then(drawable).is_some()) {
            items.push((Swatch::Series, "Actual".to_string()));
        }
        if points
            .iter()
            .any(|p| p.partial && p.value.and_then(drawable).is_some())
        {
            items.push((Swatch::Partial, "Period not ended".into()));
        }
        if expected.len() >= 2 {
            items.push((Swatch::Expected, "Expected path from baseline".into()));
        }
        if target.is_some() {
            items.push((
                Swatch::Target,
                format!(
                    "Target: {} by {}",
                    with_unit(goal.target.value, decimals, goal.unit.as_deref()),
                    goal.target.by.format("%-d %b %Y")
                ),
            ));
        }
        let (legend, legend_bottom) = place_legend(items);
        let top = legend_bottom
            + if unit_caption(goal).is_some() {
                30.0
            } else {
                16.0
            };

        let x = TimeScale::new(
            points
                .iter()
                .map(|p| p.end)
                .chain(expected.iter().map(|e| e.0))
                .chain(std::iter::once(target_day)),
            left + INSET,
            PLOT_RIGHT - INSET,
        );
        Self {
            goal,
            points,
            expected,
            target,
            decimals,
            ticks,
            tick_decimals,
            legend,
            left,
            top,
            x,
        }
    }

    fn y(&self, v: f64) -> f64 {
        let lo = self.ticks.values.first().copied().unwrap_or(0.0);
        let hi = self.ticks.values.last().copied().unwrap_or(1.0);
        if hi > lo {
            PLOT_BOTTOM - (v - lo) / (hi - lo) * (PLOT_BOTTOM - self.top)
        } else {
            (PLOT_BOTTOM + self.top) / 2.0
        }
    }

    fn figure(&self, v: f64) -> String {
        with_unit(v, self.decimals, self.goal.unit.as_deref())
    }

    /// The sentence a screen reader reads for the picture.
    fn description(&self) -> String {
        let g = self.goal;
        let latest = g
            .latest
            .as_ref()
            .filter(|l| drawable(l.value).is_some())
            .map(|l| (l.period.as_str(), l.value))
            .or_else(|| {
                self.points
                    .iter()
                    .rev()
                    .find_map(|p| p.value.and_then(drawable).map(|v| (p.period.as_str(), v)))
            });
        let target = format!(
            "target {} by {}",
            self.figure(g.target.value),
            g.target.by.format("%-d %B %Y")
        );
        let status = g.status.label();
        match latest {
            Some((period, value)) => format!(
                "From a baseline of {} in {} to {} in {period}; {target}. Status: {status}.",
                self.figure(g.baseline.value),
                g.baseline.period,
                self.figure(value),
            ),
            None => format!(
                "No figures yet. Baseline {} in {}; {target}. Status: {status}.",
                self.figure(g.baseline.value),
                g.baseline.period,
            ),
        }
    }

    /// Labels under the axis: at most `MAX_X_LABELS` periods (fewer when they are long),
    /// evenly spread, then the target date. None overlap: a period that would is left out,
    /// except the last, which (like the target date) moves to a second row instead.
    fn x_labels(&self) -> Vec<XLabel> {
        let n = self.points.len();
        let widest = self
            .points
            .iter()
            .map(|p| p.period.chars().count())
            .max()
            .unwrap_or(1);
        let fit = ((PLOT_RIGHT - self.left) / (widest as f64 * CHAR_WIDTH + 12.0)).floor();
        let max = (fit as usize).clamp(2, MAX_X_LABELS);
        let mut picks: Vec<usize> = if n <= max {
            (0..n).collect()
        } else {
            (0..max)
                .map(|i| (i * (n - 1) + (max - 1) / 2) / (max - 1))
                .collect()
        };
        picks.dedup();
        let mut candidates: Vec<(f64, String, &'static str, bool)> = picks
            .iter()
            .map(|&i| {
                let p = self.points[i];
                (self.x.x(p.end), p.period.clone(), "x-tick", i == n - 1)
            })
            .collect();
        if self.target.is_some() {
            let by = self.goal.target.by;
            let text = by.format("%-d %b %Y").to_string();
            candidates.push((self.x.x(deadline(by)), text, "x-target", true));
        }
        let mut rows: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
        let mut labels = Vec::new();
        for (x, text, class, may_wrap) in candidates {
            let half = text.chars().count() as f64 * CHAR_WIDTH / 2.0;
            let tx = x.clamp(half + 2.0, WIDTH - half - 2.0);
            let span = (tx - half - 4.0, tx + half + 4.0);
            let free = |row: &Vec<(f64, f64)>| row.iter().all(|&(a, b)| span.1 <= a || b <= span.0);
            let row = if free(&rows[0]) {
                0
            } else if may_wrap && free(&rows[1]) {
                1
            } else {
                continue;
            };
            rows[row].push(span);
            labels.push(XLabel {
                x,
                text_x: tx,
                text,
                class,
                row,
            });
        }
        labels
    }

    fn render(&self, id: &str) -> String {
        let g = self.goal;
        let mut s = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" class="goal-chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" preserveAspectRatio="xMidYMid meet" role="img" aria-labelledby="{id}-title {id}-desc" font-family="{FONT_FAMILY}" font-size="{FONT_SIZE}" fill="{TEXT}">"#
        );
        s.push_str(&format!(
            r#"<title id="{id}-title">{}</title><desc id="{id}-desc">{}</desc>"#,
            escape(&g.title),
            escape(&self.description())
        ));

        // Grid and y axis labels.
        s.push_str(r#"<g class="y-axis">"#);
        for &v in &self.ticks.values {
            let y = num(self.y(v));
            s.push_str(&format!(
                r#"<line x1="{}" y1="{y}" x2="{PLOT_RIGHT}" y2="{y}" stroke="{GRID}" stroke-width="1"/><text class="y-tick" x="{}" y="{y}" dy="0.32em" text-anchor="end">{}</text>"#,
                num(self.left),
                num(self.left - 8.0),
                escape(&crate::html::format_number(v, self.tick_decimals))
            ));
        }
        s.push_str("</g>");
        if let Some(unit) = unit_caption(g) {
            s.push_str(&format!(
                r#"<text class="unit" x="8" y="{}">{}</text>"#,
                num(self.top - 14.0),
                escape(&unit)
            ));
        }

        // X axis and period labels.
        s.push_str(&format!(
            r#"<g class="x-axis"><line x1="{}" y1="{PLOT_BOTTOM}" x2="{PLOT_RIGHT}" y2="{PLOT_BOTTOM}" stroke="{EXPECTED}" stroke-width="1"/>"#,
            num(self.left)
        ));
        for l in self.x_labels() {
            let x = num(l.x);
            s.push_str(&format!(
                r#"<line x1="{x}" y1="{PLOT_BOTTOM}" x2="{x}" y2="{}" stroke="{EXPECTED}" stroke-width="1"/><text class="{}" x="{}" y="{}" text-anchor="middle">{}</text>"#,
                PLOT_BOTTOM + 5.0,
                l.class,
                num(l.text_x),
                PLOT_BOTTOM + 22.0 + 18.0 * l.row as f64,
                escape(&l.text),
            ));
        }
        s.push_str("</g>");

        if let Some((day, value)) = self.target {
            let y = num(self.y(value));
            s.push_str(&format!(
                r#"<line class="target" x1="{}" y1="{y}" x2="{PLOT_RIGHT}" y2="{y}" stroke="{TARGET}" stroke-width="2" stroke-dasharray="{TARGET_DASH}"/><circle cx="{}" cy="{y}" r="4.5" fill="{WHITE}" stroke="{TARGET}" stroke-width="2"/>"#,
                num(self.left),
                num(self.x.x(day)),
            ));
        }

        if self.expected.len() >= 2 {
            let d = line_path(
                self.expected
                    .iter()
                    .map(|&(day, v)| Some((self.x.x(day), self.y(v)))),
            );
            s.push_str(&format!(
                r#"<path class="expected" d="{d}" fill="none" stroke="{EXPECTED}" stroke-width="2" stroke-dasharray="{EXPECTED_DASH}"/>"#
            ));
            for &(day, v) in &self.expected[1..self.expected.len() - 1] {
                s.push_str(&format!(
                    r#"<circle class="milestone" cx="{}" cy="{}" r="4" fill="{WHITE}" stroke="{EXPECTED}" stroke-width="2"/>"#,
                    num(self.x.x(day)),
                    num(self.y(v))
                ));
            }
        }
        if let Some(&(day, v)) = self.expected.first() {
            s.push_str(&format!(
                r#"<rect class="baseline" x="{}" y="{}" width="8" height="8" fill="{EXPECTED}"/>"#,
                num(self.x.x(day) - 4.0),
                num(self.y(v) - 4.0)
            ));
        }

        let placed: Vec<Option<(f64, f64)>> = self
            .points
            .iter()
            .map(|p| {
                p.value
                    .and_then(drawable)
                    .map(|v| (self.x.x(p.end), self.y(v)))
            })
            .collect();
        // A period missing from the series is a gap as much as one without a figure.
        let track = self
            .points
            .iter()
            .zip(&placed)
            .enumerate()
            .flat_map(|(i, (p, &at))| {
                let missing = i > 0 && self.points[i - 1].end < p.start;
                [missing.then_some(None), Some(at)].into_iter().flatten()
            });
        let d = line_path(track);
        if !d.is_empty() {
            s.push_str(&format!(
                r#"<path class="series" d="{d}" fill="none" stroke="{SERIES}" stroke-width="2.5" stroke-linejoin="round"/>"#
            ));
        }
        for (p, at) in self.points.iter().zip(&placed) {
            let (Some((x, y)), Some(v)) = (at, p.value) else {
                continue;
            };
            let (fill, note) = if p.partial {
                (WHITE, " (period not ended)")
            } else {
                (SERIES, "")
            };
            s.push_str(&format!(
                r#"<circle class="point" cx="{}" cy="{}" r="3.5" fill="{fill}" stroke="{SERIES}" stroke-width="1.5"><title>{}</title></circle>"#,
                num(*x),
                num(*y),
                escape(&format!("{}: {}{note}", p.period, self.figure(v)))
            ));
        }
        if placed.iter().all(Option::is_none) {
            s.push_str(&format!(
                r#"<text class="empty" x="{}" y="{}" text-anchor="middle">No figures yet</text>"#,
                num((self.left + PLOT_RIGHT) / 2.0),
                num((self.top + PLOT_BOTTOM) / 2.0)
            ));
        }

        s.push_str(r#"<g class="legend">"#);
        for item in &self.legend {
            s.push_str(&legend_swatch(&item.swatch, item.x, item.y));
            s.push_str(&format!(
                r#"<text x="{}" y="{}" dy="0.32em">{}</text>"#,
                num(item.x + 30.0),
                num(item.y),
                escape(&item.text)
            ));
        }
        s.push_str("</g></svg>");
        s
    }
}

/// The y axis caption: the unit, unless it is empty.
fn unit_caption(goal: &GoalDigest) -> Option<String> {
    goal.unit
        .as_deref()
        .filter(|u| !u.trim().is_empty())
        .map(|u| {
            if u == "%" {
                "Percent".to_string()
            } else {
                format!("In {u}")
            }
        })
}

/// Lays the legend out in rows; returns the items and the bottom of the last row.
fn place_legend(items: Vec<(Swatch, String)>) -> (Vec<LegendItem>, f64) {
    const LEFT: f64 = 8.0;
    let row = 20.0;
    let (mut x, mut y) = (LEFT, 16.0);
    let mut placed = Vec::new();
    for (swatch, text) in items {
        let w = 30.0 + text.chars().count() as f64 * CHAR_WIDTH;
        if x + w > WIDTH - 8.0 && !placed.is_empty() {
            x = LEFT;
            y += row;
        }
        placed.push(LegendItem { swatch, text, x, y });
        x += w + 20.0;
    }
    (placed, y + 8.0)
}

fn legend_swatch(swatch: &Swatch, x: f64, y: f64) -> String {
    let (x0, x1, cx, y) = (num(x), num(x + 24.0), num(x + 12.0), num(y));
    match swatch {
        Swatch::Series => format!(
            r#"<line x1="{x0}" y1="{y}" x2="{x1}" y2="{y}" stroke="{SERIES}" stroke-width="2.5"/><circle cx="{cx}" cy="{y}" r="3.5" fill="{SERIES}"/>"#
        ),
        Swatch::Partial => format!(
            r#"<circle cx="{cx}" cy="{y}" r="3.5" fill="{WHITE}" stroke="{SERIES}" stroke-width="1.5"/>"#
        ),
        Swatch::Expected => format!(
            r#"<line x1="{x0}" y1="{y}" x2="{x1}" y2="{y}" stroke="{EXPECTED}" stroke-width="2" stroke-dasharray="{EXPECTED_DASH}"/>"#
        ),
        Swatch::Target => format!(
            r#"<line x1="{x0}" y1="{y}" x2="{x1}" y2="{y}" stroke="{TARGET}" stroke-width="2" stroke-dasharray="{TARGET_DASH}"/>"#
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{BaselineInfo, LatestFigure, Provenance, TargetInfo};
    use goalpost_spec::GoalStatus;
    use std::collections::BTreeMap;

    /// Where the expected path stands on `day`: linear between its vertices.
    fn expected_on(path: &[(NaiveDate, f64)], day: NaiveDate) -> Option<f64> {
        path.windows(2).find_map(|w| {
            let ((d0, v0), (d1, v1)) = (w[0], w[1]);
            (d0 <= day && day <= d1).then(|| {
                let span = (d1 - d0).num_days() as f64;
                v0 + (v1 - v0) * (day - d0).num_days() as f64 / span
            })
        })
    }

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    /// A yearly series from 2018, each point ending on 1 January of the next year.
    fn goal(values: &[Option<f64>]) -> GoalDigest {
        let series: Vec<SeriesPoint> = values
            .iter()
            .enumerate()
            .map(|(i, &value)| {
                let year = 2018 + i as i32;
                SeriesPoint {
                    period: year.to_string(),
                    start: NaiveDate::from_ymd_opt(year, 1, 1).unwrap(),
                    end: NaiveDate::from_ymd_opt(year + 1, 1, 1).unwrap(),
                    group: BTreeMap::new(),
                    value,
                    partial: false,
                    n: None,
                    suppressed: value.is_none(),
                    flag: None,
                }
            })
            .collect();
        let latest = series.iter().rev().find_map(|p| {
            p.value.map(|value| LatestFigure {
                period: p.period.clone(),
                value,
            })
        });
        GoalDigest {
            id: "waits".into(),
            title: "Shorter waits".into(),
            indicator: "wait-days".into(),
            unit: Some("days".into()),
            decimals: Some(1),
            status: GoalStatus::OnTrack,
            status_reason: String::new(),
            latest,
            expected: None,
            progress: None,
            better: "lower".into(),
            tolerance: 0.1,
            baseline: BaselineInfo {
                period: "2018".into(),
                value: 10.0,
            },
            target: TargetInfo {
                value: 5.0,
                by: date("2026-12-31"),
            },
            milestones: Vec::new(),
            trend: None,
            best: None,
            worst: None,
            periods_to_target: None,
            cagr: None,
            series,
            provenance: Provenance {
                pipeline: "p".into(),
                sources: Vec::new(),
                table: "t".into(),
                table_version: 1,
                sql: "select 1".into(),
                reads: Vec::new(),
                run_id: "r".into(),
                computed_at: chrono::DateTime::UNIX_EPOCH,
            },
            held: None,
        }
    }

    #[derive(Debug)]
    struct Element {
        name: String,
        attrs: Vec<(String, String)>,
        /// The element's own character data, references resolved.
        text: String,
    }

    impl Element {
        fn attr(&self, name: &str) -> Option<&str> {
            self.attrs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    fn unescape(s: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('&') {
            out.push_str(&rest[..i]);
            let end = rest[i..]
                .find(';')
                .ok_or_else(|| format!("unterminated reference in {s:?}"))?;
            let name = &rest[i + 1..i + end];
            let c = match name {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                "apos" => '\'',
                n if n.starts_with("#x") => u32::from_str_radix(&n[2..], 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| format!("bad reference &{n};"))?,
                n if n.starts_with('#') => n[1..]
                    .parse()
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| format!("bad reference &{n};"))?,
                n => return Err(format!("unknown entity &{n};")),
            };
            out.push(c);
            rest = &rest[i + end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn valid_name(n: &str) -> bool {
        !n.is_empty()
            && n.starts_with(|c: char| c.is_ascii_alphabetic())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':'))
    }

    /// A minimal well-formedness check (no XML parser among the dependencies): one root,
    /// tags that nest and close, quoted unique attributes, no raw `<` in text or values, only
    /// known references, no `]]>` and no control characters. Returns every element in
    /// document order.
    fn parse_xml(s: &str) -> Result<Vec<Element>, String> {
        if let Some(c) = s
            .chars()
            .find(|&c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        {
            return Err(format!("control character {c:?}"));
        }
        if s.contains("]]>") {
            return Err("]]> in the output".into());
        }
        let mut elements: Vec<Element> = Vec::new();
        let mut open: Vec<usize> = Vec::new();
        let mut roots = 0;
        let mut i = 0;
        while i < s.len() {
            let rest = &s[i..];
            if let Some(tag_rest) = rest.strip_prefix('<') {
                let end = tag_rest.find('>').ok_or("unclosed tag")?;
                let tag = &tag_rest[..end];
                if tag.contains('<') {
                    return Err(format!("< inside tag {tag:?}"));
                }
                if let Some(name) = tag.strip_prefix('/') {
                    let top = open
                        .pop()
                        .ok_or_else(|| format!("</{name}> closes nothing"))?;
                    if elements[top].name != name {
                        return Err(format!("<{}> closed by </{name}>", elements[top].name));
                    }
                } else {
                    let self_closing = tag.ends_with('/');
                    let tag = tag.strip_suffix('/').unwrap_or(tag);
                    let (name, mut attrs_text) = tag.split_once(' ').unwrap_or((tag, ""));
                    if !valid_name(name) {
                        return Err(format!("bad element name {name:?}"));
                    }
                    let mut attrs: Vec<(String, String)> = Vec::new();
                    loop {
                        attrs_text = attrs_text.trim_start();
                        if attrs_text.is_empty() {
                            break;
                        }
                        let (attr, value_rest) = attrs_text
                            .split_once("=\"")
                            .ok_or_else(|| format!("unquoted attribute in <{name}>"))?;
                        if !valid_name(attr) || attrs.iter().any(|(a, _)| a == attr) {
                            return Err(format!("bad or repeated attribute {attr:?}"));
                        }
                        let (value, after) = value_rest
                            .split_once('"')
                            .ok_or_else(|| format!("unterminated value of {attr}"))?;
                        attrs.push((attr.to_string(), unescape(value)?));
                        if !(after.is_empty() || after.starts_with(' ')) {
                            return Err(format!("no space after {attr}"));
                        }
                        attrs_text = after;
                    }
                    if open.is_empty() {
                        roots += 1;
                    }
                    elements.push(Element {
                        name: name.to_string(),
                        attrs,
                        text: String::new(),
                    });
                    if !self_closing {
                        open.push(elements.len() - 1);
                    }
                }
                i += end + 2;
            } else {
                let end = rest.find('<').unwrap_or(rest.len());
                let text = unescape(&rest[..end])?;
                match open.last() {
                    Some(&top) => elements[top].text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => return Err(format!("text outside the root: {text:?}")),
                }
                i += end;
            }
        }
        if let Some(&top) = open.last() {
            return Err(format!("<{}> never closed", elements[top].name));
        }
        if roots != 1 {
            return Err(format!("{roots} root elements"));
        }
        Ok(elements)
    }

    fn parse(svg: &str) -> Vec<Element> {
        parse_xml(svg).unwrap_or_else(|e| panic!("not well-formed: {e}\n{svg}"))
    }

    fn with_class<'e>(elements: &'e [Element], class: &str) -> Vec<&'e Element> {
        elements
            .iter()
            .filter(|e| e.attr("class") == Some(class))
            .collect()
    }

    /// Every number in coordinate attributes and path data.
    fn coordinates(elements: &[Element]) -> Vec<String> {
        let mut out = Vec::new();
        for e in elements {
            for (name, value) in &e.attrs {
                match name.as_str() {
                    "x" | "y" | "x1" | "y1" | "x2" | "y2" | "cx" | "cy" | "r" | "width"
                    | "height"
                        if value != "100%" =>
                    {
                        out.push(value.clone())
                    }
                    "d" | "viewBox" => out.extend(
                        value
                            .split([' ', 'M', 'L'])
                            .filter(|t| !t.is_empty())
                            .map(str::to_string),
                    ),
                    _ => {}
                }
            }
        }
        out
    }

    fn assert_finite(svg: &str) {
        let elements = parse(svg);
        let coords = coordinates(&elements);
        assert!(!coords.is_empty());
        for c in coords {
            let v: f64 = c
                .parse()
                .unwrap_or_else(|_| panic!("{c:?} is not a number"));
            assert!(v.is_finite(), "{c}");
        }
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }

    /// The vertices of a path written by `line_path`.
    fn vertices(d: &str) -> Vec<(f64, f64)> {
        d.split(['M', 'L'])
            .filter(|t| !t.trim().is_empty())
            .map(|t| {
                let (x, y) = t.trim().split_once(' ').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn escape_leaves_no_markup_and_no_controls() {
        assert_eq!(
            escape("<a href='x'>\"Q&A\"</a>\u{0}\u{7}\u{1b}\r\t\n\u{85}\u{FFFF}é"),
            "&lt;a href=&#39;x&#39;&gt;&quot;Q&amp;A&quot;&lt;/a&gt;\t\né"
        );
    }

    #[test]
    fn ids_are_sanitised() {
        assert_eq!(sanitise_id("Goal_1 \"x\""), "goal-1--x-");
        assert_eq!(sanitise_id("9lives"), "chart-9lives");
        assert_eq!(sanitise_id(""), "chart-");
    }

    #[test]
    fn numbers_get_separators_and_fixed_decimals() {
        assert_eq!(crate::html::format_number(1234567.891, 1), "1,234,567.9");
        assert_eq!(crate::html::format_number(-1234.5, 0), "-1,234");
        assert_eq!(crate::html::format_number(-0.04, 1), "0.0");
        assert_eq!(with_unit(88.94, 1, Some("%")), "88.9 %");
    }

    #[test]
    fn hostile_text_never_appears_unescaped() {
        let long = "<&>\"'".repeat(2_000);
        let hostile = [
            "<script>alert(1)</script>",
            "\"><img src=x onerror=alert(1)>",
            "]]>",
            "bell\u{7} nul\u{0} esc\u{1b}[31m del\u{7f} c1\u{85}",
            long.as_str(),
        ];
        for text in hostile {
            let mut g = goal(&[Some(10.0), Some(9.0), Some(8.5)]);
            g.title = text.to_string();
            g.unit = Some(text.to_string());
            g.baseline.period = text.to_string();
            g.series[1].period = text.to_string();
            g.latest = Some(LatestFigure {
                period: text.to_string(),
                value: 8.5,
            });
            let svg = goal_chart(&g, text);
            let line = sparkline(
                &[
                    (date("2020-01-01"), Some(1.0)),
                    (date("2021-01-01"), Some(2.0)),
                ],
                text,
            );
            for out in [&svg, &line] {
                let elements = parse(out);
                for raw in ["<script", "<img", "]]>", "\u{0}", "\u{7}", "\u{1b}"] {
                    assert!(!out.contains(raw), "{raw:?} in {out}");
                }
                assert!(
                    elements
                        .iter()
                        .all(|e| e.name != "script" && e.name != "img")
                );
            }
            let kept: String = text
                .chars()
                .filter(|c| !c.is_control() || matches!(c, '\t' | '\n'))
                .collect();
            let title = parse(&svg).into_iter().find(|e| e.name == "title").unwrap();
            assert_eq!(title.text, kept);
            let root = &parse(&line)[0];
            assert_eq!(root.attr("aria-label"), Some(kept.as_str()));
        }
    }

    #[test]
    fn chart_is_labelled_by_its_title_and_desc() {
        let g = goal(&[Some(10.0), Some(9.0), Some(8.5)]);
        let svg = goal_chart(&g, "Goal 7");
        let elements = parse(&svg);
        let root = &elements[0];
        assert_eq!(root.name, "svg");
        assert_eq!(root.attr("role"), Some("img"));
        assert_eq!(root.attr("width"), Some("100%"));
        assert!(root.attr("height").is_none());
        assert!(root.attr("viewBox").is_some());
        assert!(root.attr("preserveAspectRatio").is_some());
        assert_eq!(
            root.attr("aria-labelledby"),
            Some("goal-7-title goal-7-desc")
        );
        let title = elements
            .iter()
            .find(|e| e.attr("id") == Some("goal-7-title"));
        assert_eq!(title.map(|e| e.name.as_str()), Some("title"));
        assert_eq!(title.map(|e| e.text.as_str()), Some("Shorter waits"));
        let desc = elements
            .iter()
            .find(|e| e.attr("id") == Some("goal-7-desc"))
            .unwrap();
        assert_eq!(desc.name, "desc");
        assert_eq!(
            desc.text,
            "From a baseline of 10.0 days in 2018 to 8.5 days in 2020; target 5.0 days by \
             31 December 2026. Status: On track."
        );
        assert!(!svg.contains("<script") && !svg.contains("href"));
        let size: f64 = root.attr("font-size").unwrap().parse().unwrap();
        assert!(size >= 12.0);
        assert!(
            elements
                .iter()
                .skip(1)
                .all(|e| e.attr("font-size").is_none())
        );
        // Series, expected path and target in the legend.
        let legend: Vec<&str> = elements
            .iter()
            .skip_while(|e| e.attr("class") != Some("legend"))
            .filter(|e| e.name == "text")
            .map(|e| e.text.as_str())
            .collect();
        assert_eq!(
            legend,
            [
                "Actual",
                "Expected path from baseline",
                "Target: 5.0 days by 31 Dec 2026"
            ]
        );
    }

    #[test]
    fn ticks_are_nice_and_cover_the_range() {
        let ranges = [
            (0.0, 1.0),
            (72.2, 88.4),
            (3991.0, 4390.0),
            (-12.5, 3.0),
            (0.001, 0.0042),
            (1_234_567.0, 9_876_543.0),
            (5.0, 5.0),
            (0.0, 0.0),
            (-3.0, -3.0),
            (0.1, 0.3),
            (99.99, 100.01),
            (-LIMIT, LIMIT),
        ];
        for (min, max) in ranges {
            let t = nice_ticks(min, max);
            let v = &t.values;
            assert!((4..=6).contains(&v.len()), "{min}..{max}: {v:?}");
            assert!(
                v[0] <= min && *v.last().unwrap() >= max,
                "{min}..{max}: {v:?}"
            );
            let step = v[1] - v[0];
            let exp = step.log10().floor();
            let mantissa = step / 10f64.powf(exp);
            assert!(
                [1.0, 2.0, 2.5, 5.0, 10.0]
                    .iter()
                    .any(|m| (mantissa - m).abs() < 1e-6),
                "{min}..{max}: step {step}"
            );
            for w in v.windows(2) {
                assert!(((w[1] - w[0]) - step).abs() <= step * 1e-9, "{v:?}");
            }
            // Labels at the step's decimals are all different.
            let labels: Vec<String> = v
                .iter()
                .map(|&x| crate::html::format_number(x, t.decimals))
                .collect();
            let mut unique = labels.clone();
            unique.dedup();
            assert_eq!(labels, unique);
        }
        // A flat non-negative line does not get negative ticks.
        assert!(nice_ticks(0.0, 0.0).values[0] >= 0.0);
    }

    #[test]
    fn y_axis_labels_cover_series_baseline_and_target() {
        let mut g = goal(&[Some(12.4), Some(14.9), Some(13.1)]);
        g.decimals = Some(0);
        g.target.value = 3.2;
        let elements = parse(&goal_chart(&g, "g"));
        let labels: Vec<f64> = with_class(&elements, "y-tick")
            .iter()
            .map(|e| e.text.replace(',', "").parse().unwrap())
            .collect();
        assert!((4..=6).contains(&labels.len()), "{labels:?}");
        let (lo, hi) = (labels[0], labels[labels.len() - 1]);
        assert!(lo <= 3.2 && hi >= 14.9, "{labels:?}");
        // A step of 2.5 needs one decimal even though the goal has none.
        assert!(labels.contains(&2.5), "{labels:?}");
    }

    #[test]
    fn no_figures_says_so_and_draws_no_line() {
        let mut g = goal(&[None, None, None]);
        g.status = GoalStatus::NoData;
        let svg = goal_chart(&g, "g");
        let elements = parse(&svg);
        let desc = elements.iter().find(|e| e.name == "desc").unwrap();
        assert!(
            desc.text.to_lowercase().contains("no figures yet"),
            "{}",
            desc.text
        );
        assert!(desc.text.ends_with("Status: No data."));
        assert!(with_class(&elements, "series").is_empty());
        assert!(with_class(&elements, "point").is_empty());
        assert_finite(&svg);
    }

    #[test]
    fn gaps_break_the_line_and_partial_points_are_hollow() {
        let mut g = goal(&[Some(10.0), Some(9.0), None, Some(8.0), Some(7.5)]);
        g.series[4].partial = true;
        let elements = parse(&goal_chart(&g, "g"));
        let series = with_class(&elements, "series");
        let d = series[0].attr("d").unwrap();
        assert_eq!(d.matches('M').count(), 2, "{d}");
        assert_eq!(d.matches('L').count(), 2, "{d}");
        let fills: Vec<&str> = with_class(&elements, "point")
            .iter()
            .map(|e| e.attr("fill").unwrap())
            .collect();
        assert_eq!(fills, [SERIES, SERIES, SERIES, WHITE]);

        // A period absent from the series breaks the line too.
        let mut g = goal(&[Some(10.0), Some(9.0), Some(8.0), Some(7.5)]);
        g.series.remove(2);
        let elements = parse(&goal_chart(&g, "g"));
        let d = with_class(&elements, "series")[0]
            .attr("d")
            .unwrap()
            .to_string();
        assert_eq!(
            (d.matches('M').count(), d.matches('L').count()),
            (1, 1),
            "{d}"
        );
        assert_eq!(with_class(&elements, "point").len(), 3);
    }

    #[test]
    fn coordinates_stay_finite_in_degenerate_cases() {
        let flat = goal(&[Some(5.0), Some(5.0), Some(5.0)]);
        let mut all_equal = flat.clone();
        all_equal.baseline.value = 5.0;
        all_equal.target.value = 5.0;
        let mut zeros = goal(&[Some(0.0), Some(0.0)]);
        zeros.baseline.value = 0.0;
        zeros.target.value = 0.0;
        let single = goal(&[Some(7.0)]);
        let empty = goal(&[]);
        let mut same_day = goal(&[Some(7.0)]);
        same_day.target.by = date("2018-12-31");
        let mut tiny = goal(&[Some(5e-324), Some(0.0)]);
        tiny.baseline.value = 5e-324;
        tiny.target.value = 5e-324;
        let mut huge = goal(&[
            Some(1e300),
            Some(-1e300),
            Some(f64::NAN),
            Some(f64::INFINITY),
        ]);
        huge.target.value = f64::MAX;
        for g in [flat, all_equal, zeros, single, empty, same_day, tiny, huge] {
            assert_finite(&goal_chart(&g, "g"));
        }
        let d = date("2024-01-01");
        assert_finite(&sparkline(&[(d, Some(3.0)), (d, Some(3.0))], "flat"));
        assert_finite(&sparkline(&[(d, Some(1e300)), (d, Some(-1e300))], "huge"));
        assert_finite(&sparkline(&[(d, Some(5e-324)), (d, Some(0.0))], "tiny"));
    }

    #[test]
    fn x_follows_dates_and_labels_are_few() {
        // 40 monthly-ish points, one period twice as long as the rest.
        let mut g = goal(&[Some(8.0); 40]);
        let mut end = date("2018-02-01");
        for (i, p) in g.series.iter_mut().enumerate() {
            p.period = format!("P{i}");
            p.end = end;
            end = end
                .checked_add_days(Days::new(if i == 10 { 60 } else { 30 }))
                .unwrap();
        }
        g.baseline.period = "P0".into();
        g.target.by = date("2022-12-31");
        let elements = parse(&goal_chart(&g, "g"));
        let xs: Vec<f64> = with_class(&elements, "point")
            .iter()
            .map(|e| e.attr("cx").unwrap().parse().unwrap())
            .collect();
        let gap = |i: usize| xs[i + 1] - xs[i];
        assert!((gap(10) - 2.0 * gap(9)).abs() < 0.3, "{xs:?}");
        assert!((gap(20) - gap(9)).abs() < 0.2, "{xs:?}");
        let target_x: f64 = elements
            .iter()
            .find(|e| e.name == "circle" && e.attr("stroke") == Some(TARGET))
            .and_then(|e| e.attr("cx"))
            .unwrap()
            .parse()
            .unwrap();
        assert!((target_x - (PLOT_RIGHT - INSET)).abs() < 0.1);

        let labels: Vec<&str> = with_class(&elements, "x-tick")
            .iter()
            .map(|e| e.text.as_str())
            .collect();
        assert!((2..=MAX_X_LABELS).contains(&labels.len()), "{labels:?}");
        assert_eq!(labels.first(), Some(&"P0"));
        assert_eq!(labels.last(), Some(&"P39"));
    }

    #[test]
    fn first_last_and_target_labels_survive_a_crowded_axis() {
        // Ten daily figures and a target a year away: the days crowd the left edge.
        let mut g = goal(&[Some(4000.0); 10]);
        let first = date("2016-09-21");
        for (i, p) in g.series.iter_mut().enumerate() {
            p.start = first.checked_add_days(Days::new(i as u64)).unwrap();
            p.end = p.start.checked_add_days(Days::new(1)).unwrap();
            p.period = p.start.to_string();
        }
        g.baseline.period = "2016-09-22".into();
        g.target.by = date("2017-09-30");
        let elements = parse(&goal_chart(&g, "g"));
        let labels: Vec<(&str, &str)> = with_class(&elements, "x-tick")
            .iter()
            .chain(&with_class(&elements, "x-target"))
            .map(|e| (e.text.as_str(), e.attr("y").unwrap()))
            .collect();
        assert_eq!(
            labels,
            [
                ("2016-09-21", "374"),
                ("2016-09-30", "392"),
                ("30 Sep 2017", "374")
            ]
        );
    }

    #[test]
    fn expected_path_passes_through_each_milestone() {
        let mut g = goal(&[Some(10.0), Some(9.5), Some(9.0), Some(8.0)]);
        g.baseline.period = "2019".into();
        g.baseline.value = 9.5;
        g.milestones = vec![
            TargetInfo {
                value: 9.0,
                by: date("2022-06-30"),
            },
            TargetInfo {
                value: 6.5,
                by: date("2024-12-31"),
            },
        ];
        let chart = Chart::new(&g);
        // In data terms: the path starts at the end of the baseline period and bends at
        // each milestone.
        assert_eq!(chart.expected[0], (date("2020-01-01"), 9.5));
        for m in &g.milestones {
            assert_eq!(expected_on(&chart.expected, deadline(m.by)), Some(m.value));
        }
        assert_eq!(chart.expected.last(), Some(&(date("2027-01-01"), 5.0)));

        // In the drawing: the path's y where it crosses each milestone's x.
        let elements = parse(&chart.render("g"));
        let d = with_class(&elements, "expected")[0]
            .attr("d")
            .unwrap()
            .to_string();
        let path = vertices(&d);
        for m in &g.milestones {
            let mx = chart.x.x(deadline(m.by));
            let y = path
                .windows(2)
                .find(|w| w[0].0 <= mx && mx <= w[1].0)
                .map(|w| w[0].1 + (w[1].1 - w[0].1) * (mx - w[0].0) / (w[1].0 - w[0].0))
                .unwrap();
            assert!(
                (y - chart.y(m.value)).abs() <= 0.1,
                "{y} vs {}",
                chart.y(m.value)
            );
        }
        assert_eq!(with_class(&elements, "milestone").len(), 2);
    }

    #[test]
    fn without_the_baseline_period_the_path_starts_with_the_series() {
        let mut g = goal(&[Some(10.0), Some(9.0)]);
        g.baseline.period = "2010".into();
        let chart = Chart::new(&g);
        assert_eq!(chart.expected[0], (date("2019-01-01"), 10.0));
    }

    #[test]
    fn sparkline_needs_two_figures_and_marks_the_last() {
        let d = date;
        assert_eq!(sparkline(&[], "x"), "");
        assert_eq!(
            sparkline(
                &[(d("2024-01-01"), Some(1.0)), (d("2024-02-01"), None)],
                "x"
            ),
            ""
        );
        let svg = sparkline(
            &[
                (d("2024-03-01"), Some(3.0)),
                (d("2024-01-01"), Some(1.0)),
                (d("2024-02-01"), None),
                (d("2024-04-01"), Some(2.0)),
            ],
            "Waits & delays",
        );
        let elements = parse(&svg);
        assert_eq!(elements[0].attr("role"), Some("img"));
        assert_eq!(elements[0].attr("aria-label"), Some("Waits & delays"));
        let mark = elements.iter().find(|e| e.name == "circle").unwrap();
        assert_eq!(mark.attr("cx"), Some("117.0"));
        // Highest of 1..3 at the top: 2 sits halfway.
        assert_eq!(mark.attr("cy"), Some("16.0"));
        let path = elements.iter().find(|e| e.name == "path").unwrap();
        assert_eq!(vertices(path.attr("d").unwrap()).len(), 2);
    }
}
