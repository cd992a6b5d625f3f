//! Goal status: the latest complete figure against the straight line from baseline to target.

use crate::engine::Series;
use chrono::{Days, NaiveDate};
use goalpost_spec::period::Period;
use goalpost_spec::{Better, GoalSpec, GoalStatus, Pipeline};
use serde::Serialize;

/// Default share of the baseline-to-target distance a figure may lag and still be "at risk".
pub const DEFAULT_TOLERANCE: f64 = 0.10;

/// A goal's standing on the evaluation date.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judgement {
    pub status: GoalStatus,
    /// The figure judged: the latest complete period with a value.
    pub latest_period: Option<String>,
    pub latest_value: Option<f64>,
    /// Where the straight line from baseline to target stands at the end of that period.
    pub expected_value: Option<f64>,
    /// Share of the baseline-to-target distance covered (1.0 = target reached).
    pub progress: Option<f64>,
    pub better: Better,
    pub tolerance: f64,
    /// Why the status is what it is, in one sentence.
    pub reason: String,
    /// The change over the last periods up to the judged one.
    pub trend: Option<Trend>,
    /// The best and the worst complete period (by `better`).
    pub best: Option<(String, f64)>,
    pub worst: Option<(String, f64)>,
    /// Periods until the target at the trend's pace: 0 when met, `None` when the pace does
    /// not lead there.
    pub periods_to_target: Option<u64>,
    /// With `method = "cagr"`: the growth-based progress measure the status follows.
    pub cagr: Option<CagrProgress>,
}

/// Progress by compound annual growth (Statistics Canada's method, used by Open SDG): the
/// growth observed since the baseline against the growth the target requires.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CagrProgress {
    /// Observed compound annual growth rate since the baseline.
    pub observed: f64,
    /// Compound annual growth rate needed from the baseline to reach the target on time.
    pub required: f64,
    /// `observed / required`.
    pub ratio: f64,
    /// `target_achieved`, `substantial`, `moderate`, `limited` or `deterioration`.
    pub status: String,
}

/// Open SDG's default thresholds on observed / required growth.
const SUBSTANTIAL: f64 = 0.95;
const MODERATE: f64 = 0.5;

/// The CAGR progress of `value` (at `years` after the baseline) towards `target` (due
/// `target_years` after it) from `base`. `None` when growth rates do not exist: a value of
/// zero or below, or no time elapsed.
pub fn cagr_progress(
    base: f64,
    value: f64,
    target: f64,
    years: f64,
    target_years: f64,
    better: Better,
) -> Option<CagrProgress> {
    let sign = match better {
        Better::Higher => 1.0,
        Better::Lower => -1.0,
    };
    if sign * (value - target) >= 0.0 {
        return Some(CagrProgress {
            observed: f64::NAN,
            required: f64::NAN,
            ratio: f64::NAN,
            status: "target_achieved".into(),
        })
        .map(|mut c| {
            // Rates still say how it got there, when they exist.
            if base > 0.0 && value > 0.0 && target > 0.0 && years > 0.0 && target_years > 0.0 {
                c.observed = (value / base).powf(1.0 / years) - 1.0;
                c.required = (target / base).powf(1.0 / target_years) - 1.0;
                c.ratio = c.observed / c.required;
            }
            c
        });
    }
    if base <= 0.0 || value <= 0.0 || target <= 0.0 || years <= 0.0 || target_years <= 0.0 {
        return None;
    }
    let observed = (value / base).powf(1.0 / years) - 1.0;
    let required = (target / base).powf(1.0 / target_years) - 1.0;
    if required == 0.0 {
        return None;
    }
    let ratio = observed / required;
    // A ratio a rounding error short of a threshold reaches it: 9.5 % of a 10 % pace is
    // 0.95, whatever the last bits of two powers say.
    let at_least = |t: f64| ratio >= t - 1e-9;
    let status = if at_least(SUBSTANTIAL) {
        "substantial"
    } else if at_least(MODERATE) {
        "moderate"
    } else if ratio >= 0.0 {
        "limited"
    } else {
        "deterioration"
    };
    Some(CagrProgress {
        observed,
        required,
        ratio,
        status: status.into(),
    })
}

/// How a figure moved over its last periods.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trend {
    /// Periods between the two figures compared.
    pub periods: usize,
    /// The period compared with.
    pub from_period: String,
    /// Latest value minus the value `periods` complete periods earlier.
    pub change: f64,
    /// `improving`, `worsening` or `steady`, by the goal's `better`.
    pub direction: String,
}

/// Where a line through `points` (dates ascending) stands on `at`: linear between the two
/// points around it, flat before the first and after the last.
fn expected_on(points: &[(NaiveDate, f64)], at: NaiveDate) -> f64 {
    let first = points[0];
    if at <= first.0 {
        return first.1;
    }
    for pair in points.windows(2) {
        let ((d0, v0), (d1, v1)) = (pair[0], pair[1]);
        if at <= d1 {
            let span = (d1 - d0).num_days() as f64;
            let elapsed = (at - d0).num_days() as f64;
            return if span > 0.0 {
                v0 + elapsed / span * (v1 - v0)
            } else {
                v1
            };
        }
    }
    points[points.len() - 1].1
}

/// Default number of periods a trend is measured over.
pub const DEFAULT_TREND_PERIODS: usize = 3;

/// Judge a goal on its indicator's total series as of `as_of`.
///
/// `no_data` when neither of the last two complete periods before `as_of` has a value.
pub fn judge(pipeline: &Pipeline, goal: &GoalSpec, series: &Series, as_of: NaiveDate) -> Judgement {
    let indicator = pipeline.indicator(goal.indicator.get_ref());
    let better = goal
        .better
        .or(indicator.and_then(|i| i.better))
        .unwrap_or(Better::Higher);
    let tolerance = goal.tolerance.unwrap_or(DEFAULT_TOLERANCE);
    let fiscal_start = pipeline.fiscal_year_start();
    let current = Period::containing(series.period, as_of, fiscal_start);
    let last = current.prev();
    let recent = [last.label(), last.prev().label()];
    let latest = series
        .total()
        .filter(|p| !p.partial && p.value.is_some() && recent.contains(&p.period))
        .max_by_key(|p| p.start);
    let mut j = Judgement {
        status: GoalStatus::NoData,
        latest_period: None,
        latest_value: None,
        expected_value: None,
        progress: None,
        better,
        tolerance,
        reason: format!(
            "no figure for {} or {}, the last two complete periods before {as_of}",
            recent[0], recent[1]
        ),
        trend: None,
        best: None,
        worst: None,
        periods_to_target: None,
        cagr: None,
    };
    let sign = match better {
        Better::Higher => 1.0,
        Better::Lower => -1.0,
    };
    // Complete periods with a value, oldest first: what best, worst and the trend read.
    let complete: Vec<(&str, NaiveDate, f64)> = series
        .total()
        .filter(|p| !p.partial)
        .filter_map(|p| p.value.map(|v| (p.period.as_str(), p.start, v)))
        .collect();
    let rank = |v: f64| sign * v;
    j.best = complete
        .iter()
        .max_by(|a, b| rank(a.2).total_cmp(&rank(b.2)).then(b.1.cmp(&a.1)))
        .map(|(p, _, v)| (p.to_string(), *v));
    j.worst = complete
        .iter()
        .min_by(|a, b| rank(a.2).total_cmp(&rank(b.2)).then(a.1.cmp(&b.1)))
        .map(|(p, _, v)| (p.to_string(), *v));
    let Some(point) = latest else {
        return j;
    };
    let Some(value) = point.value else {
        return j;
    };
    let base = goal.baseline.value;
    let target = goal.target.value;
    // Both were validated when the pipeline was loaded.
    let baseline_end = goal
        .baseline
        .period(series.period, fiscal_start)
        .map_or(point.end, |p| p.end());
    let target_end = goal.target.date().map_or(point.end, |d| d + Days::new(1));
    // The expected line: baseline, then each milestone, then the target.
    let mut line: Vec<(NaiveDate, f64)> = vec![(baseline_end, base)];
    for m in &goal.milestones {
        if let Some(d) = m.date() {
            line.push((d + Days::new(1), m.value));
        }
    }
    line.push((target_end, target));
    let expected = expected_on(&line, point.end);
    let distance = (target - base).abs();
    let behind = sign * (expected - value);
    j.latest_period = Some(point.period.clone());
    j.latest_value = Some(value);
    j.expected_value = Some(expected);
    j.progress = (distance > 0.0).then(|| sign * (value - base) / distance);
    // Comparisons allow a rounding error: a figure exactly on the line, or exactly at the
    // tolerance, is judged as the rule says whatever the last bits of the arithmetic say.
    let slack = 1e-9 * distance.max(value.abs()).max(1.0);
    (j.status, j.reason) = if sign * (value - target) >= -slack {
        (
            GoalStatus::Met,
            format!("{} is at or beyond the target", point.period),
        )
    } else if behind <= slack {
        (
            GoalStatus::OnTrack,
            format!(
                "{} is at or beyond the expected value for its period",
                point.period
            ),
        )
    } else if behind <= tolerance * distance + slack {
        (
            GoalStatus::AtRisk,
            format!(
                "{} is behind the expected value by less than {:.0} % of the baseline-to-target distance",
                point.period,
                tolerance * 100.0
            ),
        )
    } else {
        (
            GoalStatus::OffTrack,
            format!(
                "{} is behind the expected value by more than {:.0} % of the baseline-to-target distance",
                point.period,
                tolerance * 100.0
            ),
        )
    };
    if goal.method == goalpost_spec::GoalMethod::Cagr {
        let years = |days: i64| days as f64 / 365.25;
        let c = cagr_progress(
            base,
            value,
            target,
            years((point.end - baseline_end).num_days()),
            years((target_end - baseline_end).num_days()),
            better,
        );
        (j.status, j.reason) = match &c {
            Some(c) => {
                let status = match c.status.as_str() {
                    "target_achieved" => GoalStatus::Met,
                    "substantial" => GoalStatus::OnTrack,
                    "moderate" => GoalStatus::AtRisk,
                    _ => GoalStatus::OffTrack,
                };
                let reason = if c.status == "target_achieved" {
                    format!("{} is at or beyond the target", point.period)
                } else {
                    format!(
                        "{}: growth since the baseline is {:.1} % a year against {:.1} % required ({:.0} % of the pace needed: {})",
                        point.period,
                        c.observed * 100.0,
                        c.required * 100.0,
                        c.ratio * 100.0,
                        c.status
                    )
                };
                (status, reason)
            }
            None => (
                GoalStatus::NoData,
                format!(
                    "{}: growth rates need values above zero and time since the baseline",
                    point.period
                ),
            ),
        };
        j.cagr = c;
    }
    // The trend: the judged figure against the one `n` complete periods with values before.
    let n = goal.trend_periods.unwrap_or(DEFAULT_TREND_PERIODS).max(1);
    if let Some(at) = complete.iter().position(|(p, _, _)| *p == point.period)
        && at >= n
    {
        let (from, _, earlier) = complete[at - n];
        let change = value - earlier;
        let direction = match (sign * change).partial_cmp(&0.0) {
            Some(std::cmp::Ordering::Greater) => "improving",
            Some(std::cmp::Ordering::Less) => "worsening",
            _ => "steady",
        };
        j.trend = Some(Trend {
            periods: n,
            from_period: from.to_string(),
            change,
            direction: direction.to_string(),
        });
        // At this pace (change per period), how many more periods to the target.
        let pace = change / n as f64;
        let gap = target - value;
        j.periods_to_target = if sign * gap <= 0.0 {
            Some(0)
        } else if pace != 0.0 && gap / pace > 0.0 {
            Some((gap / pace).ceil() as u64)
        } else {
            None
        };
    } else if sign * (value - target) >= 0.0 {
        j.periods_to_target = Some(0);
    }
    j
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Point;
    use goalpost_spec::period::{Period, PeriodKind};

    /// A pipeline with one monthly indicator and one goal: baseline 50 in 2025-06 (the line
    /// starts on 1 July 2025), target 100 by 2026-06-30 (the line ends on 1 July 2026).
    fn pipeline(better: &str, tolerance: &str) -> Pipeline {
        let text = format!(
            r#"title = "t"
timezone = "America/New_York"
[[source]]
kind = "file"
path = "Cargo.toml"
[table]
name = "t"
time = "at"
[table.columns]
at = {{ type = "timestamp" }}
[[indicator]]
id = "x"
title = "x"
better = "{better}"
sql = "SELECT period, count(*) AS value FROM t GROUP BY period"
[[goal]]
indicator = "x"
{tolerance}
baseline = {{ period = "2025-06", value = 50 }}
target = {{ value = {target}, by = "2026-06-30" }}
"#,
            target = if better == "higher" { 100 } else { 0 },
        );
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("goal-test.toml");
        goalpost_spec::parse_pipeline(&path, &text).unwrap()
    }

    fn series(points: &[(&str, Option<f64>)], as_of: NaiveDate) -> Series {
        Series {
            indicator: "x".into(),
            period: PeriodKind::Month,
            points: points
                .iter()
                .map(|(label, value)| {
                    let p = Period::parse(PeriodKind::Month, label, 7).unwrap();
                    Point {
                        period: label.to_string(),
                        start: p.start(),
                        end: p.end(),
                        group: vec![],
                        value: *value,
                        partial: p.end() > as_of,
                        n: None,
                        suppressed: false,
                        flag: None,
                    }
                })
                .collect(),
            reads: Vec::new(),
        }
    }

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn status(
        better: &str,
        tolerance: &str,
        points: &[(&str, Option<f64>)],
        as_of: NaiveDate,
    ) -> Judgement {
        let p = pipeline(better, tolerance);
        judge(&p, &p.spec.goals[0], &series(points, as_of), as_of)
    }

    #[test]
    fn status_follows_the_straight_line_from_baseline_to_target() {
        // End of December 2025 = 1 January 2026: 184 of 365 days along, expected 75.2.
        let as_of = d(2026, 1, 15);
        let expected = 50.0 + 50.0 * 184.0 / 365.0;
        let j = status("higher", "", &[("2025-12", Some(expected + 0.1))], as_of);
        assert_eq!(j.status, GoalStatus::OnTrack);
        assert!((j.expected_value.unwrap() - expected).abs() < 1e-9);
        // Behind by 4.9, under 10 % of the 50-point distance: at risk.
        let j = status("higher", "", &[("2025-12", Some(expected - 4.9))], as_of);
        assert_eq!(j.status, GoalStatus::AtRisk);
        let j = status("higher", "", &[("2025-12", Some(expected - 5.1))], as_of);
        assert_eq!(j.status, GoalStatus::OffTrack);
        // With a 20 % tolerance the same figure is only at risk.
        let j = status(
            "higher",
            "tolerance = 0.2",
            &[("2025-12", Some(expected - 5.1))],
            as_of,
        );
        assert_eq!(j.status, GoalStatus::AtRisk);
        let j = status("higher", "", &[("2025-12", Some(100.0))], as_of);
        assert_eq!(j.status, GoalStatus::Met);
        assert_eq!(j.progress, Some(1.0));
    }

    #[test]
    fn trend_best_worst_and_pace_to_target() {
        let as_of = d(2026, 1, 15);
        let months = [
            ("2025-07", Some(52.0)),
            ("2025-08", Some(58.0)),
            ("2025-09", None),
            ("2025-10", Some(55.0)),
            ("2025-11", Some(61.0)),
            ("2025-12", Some(64.0)),
            ("2026-01", Some(99.0)), // partial: never best, never in the trend
        ];
        let j = status("higher", "", &months, as_of);
        // Three complete periods with values before 2025-12 is 2025-08 (2025-09 has none).
        let t = j.trend.expect("a trend");
        assert_eq!((t.periods, t.from_period.as_str()), (3, "2025-08"));
        assert!((t.change - 6.0).abs() < 1e-9);
        assert_eq!(t.direction, "improving");
        assert_eq!(j.best, Some(("2025-12".to_string(), 64.0)));
        assert_eq!(j.worst, Some(("2025-07".to_string(), 52.0)));
        // 2 a month; 36 to go to 100: 18 months.
        assert_eq!(j.periods_to_target, Some(18));

        // Lower is better: the same numbers are worsening and never reach the target.
        let j = status("lower", "", &months, as_of);
        assert_eq!(j.trend.unwrap().direction, "worsening");
        assert_eq!(j.best, Some(("2025-07".to_string(), 52.0)));
        assert_eq!(j.periods_to_target, None);

        // Too few periods for a trend of 3; a met goal needs 0 more periods.
        let j = status("higher", "", &[("2025-12", Some(100.0))], as_of);
        assert_eq!(j.trend, None);
        assert_eq!(j.periods_to_target, Some(0));
        // A shorter window when the goal asks for one; a flat line is steady.
        let j = status(
            "higher",
            "trend_periods = 1",
            &[("2025-11", Some(61.0)), ("2025-12", Some(61.0))],
            as_of,
        );
        let t = j.trend.unwrap();
        assert_eq!((t.periods, t.direction.as_str()), (1, "steady"));
        assert_eq!(j.periods_to_target, None);
    }

    #[test]
    fn cagr_progress_follows_the_open_sdg_thresholds() {
        // From 100 to a target of 121 in 2 years needs 10 % a year.
        let p = |value: f64, years: f64| {
            cagr_progress(100.0, value, 121.0, years, 2.0, Better::Higher).unwrap()
        };
        let c = p(110.0, 1.0);
        assert!((c.observed - 0.10).abs() < 1e-12 && (c.required - 0.10).abs() < 1e-12);
        assert_eq!(c.status, "substantial");
        // 9.5 % of the required 10 %: exactly the 0.95 boundary is substantial.
        let v = 100.0 * 1.095;
        assert_eq!(p(v, 1.0).status, "substantial");
        assert_eq!(p(100.0 * 1.0949, 1.0).status, "moderate");
        assert_eq!(p(105.0, 1.0).status, "moderate");
        assert_eq!(p(104.9, 1.0).status, "limited");
        assert_eq!(p(100.0, 1.0).status, "limited");
        assert_eq!(p(99.0, 1.0).status, "deterioration");
        assert_eq!(p(121.0, 1.0).status, "target_achieved");
        // Lower is better: from 100 down to 81 in 2 years needs -10 % a year.
        let c = cagr_progress(100.0, 90.0, 81.0, 1.0, 2.0, Better::Lower).unwrap();
        assert!((c.ratio - 1.0).abs() < 1e-12, "{c:?}");
        assert_eq!(
            cagr_progress(100.0, 101.0, 81.0, 1.0, 2.0, Better::Lower)
                .unwrap()
                .status,
            "deterioration"
        );
        assert!(cagr_progress(0.0, 5.0, 10.0, 1.0, 2.0, Better::Higher).is_none());
    }

    #[test]
    fn a_cagr_goal_takes_its_status_from_growth() {
        // Baseline 50 (line starts 1 July 2025), target 100 by 30 June 2026. At the end of
        // December 2025 (184 days), 75 is 50 · 1.5: far beyond the growth required.
        let as_of = d(2026, 1, 15);
        let j = status(
            "higher",
            "method = \"cagr\"",
            &[("2025-12", Some(75.0))],
            as_of,
        );
        let c = j.cagr.clone().unwrap();
        let years = 184.0 / 365.25;
        let target_years = 365.0 / 365.25;
        assert!((c.observed - (1.5f64.powf(1.0 / years) - 1.0)).abs() < 1e-9);
        assert!((c.required - (2.0f64.powf(1.0 / target_years) - 1.0)).abs() < 1e-9);
        assert_eq!(c.status, "substantial");
        assert_eq!(j.status, GoalStatus::OnTrack);
        let j = status(
            "higher",
            "method = \"cagr\"",
            &[("2025-12", Some(45.0))],
            as_of,
        );
        assert_eq!(j.cagr.unwrap().status, "deterioration");
        assert_eq!(j.status, GoalStatus::OffTrack);
        assert!(
            j.reason.contains("% of the pace needed: deterioration"),
            "{}",
            j.reason
        );
    }

    #[test]
    fn every_boundary_of_the_rule_falls_the_documented_way() {
        let as_of = d(2026, 1, 15);
        let expected = 50.0 + 50.0 * 184.0 / 365.0;
        let at = |v: f64| status("higher", "", &[("2025-12", Some(v))], as_of).status;
        assert_eq!(at(expected), GoalStatus::OnTrack, "exactly on the line");
        assert_eq!(at(expected - 1e-6), GoalStatus::AtRisk, "just behind it");
        assert_eq!(
            at(expected - 5.0),
            GoalStatus::AtRisk,
            "exactly 10 % behind"
        );
        assert_eq!(
            at(expected - 5.0 - 1e-6),
            GoalStatus::OffTrack,
            "just beyond 10 %"
        );
        assert_eq!(at(100.0), GoalStatus::Met, "exactly at the target");
        assert_eq!(at(100.0 - 1e-6), GoalStatus::OnTrack, "just short of it");
        let none = status("higher", "", &[("2025-10", Some(99.0))], as_of);
        assert_eq!(
            none.status,
            GoalStatus::NoData,
            "older than the last two periods"
        );
        // Lower is better, mirrored: baseline 50, target 0 by 30 June 2026.
        let p = pipeline("lower", "");
        let mut goal = p.spec.goals[0].clone();
        goal.target.value = 0.0;
        let line = 50.0 - 50.0 * 184.0 / 365.0;
        let j = judge(&p, &goal, &series(&[("2025-12", Some(line))], as_of), as_of);
        assert_eq!(j.status, GoalStatus::OnTrack);
        let j = judge(
            &p,
            &goal,
            &series(&[("2025-12", Some(line + 5.0))], as_of),
            as_of,
        );
        assert_eq!(j.status, GoalStatus::AtRisk);
        let j = judge(&p, &goal, &series(&[("2025-12", Some(0.0))], as_of), as_of);
        assert_eq!(j.status, GoalStatus::Met);
    }

    #[test]
    fn milestones_bend_the_expected_line() {
        // Baseline 50 (line starts 1 July 2025), a milestone of 60 by 30 September 2025
        // (the line reaches it on 1 October), target 100 by 30 June 2026.
        let as_of = d(2026, 1, 15);
        let j = status(
            "higher",
            "milestones = [{ value = 60, by = \"2025-09-30\" }]",
            &[("2025-12", Some(70.0))],
            as_of,
        );
        // End of December (1 January): 92 of 273 days from 1 October towards 100.
        let expected = 60.0 + 40.0 * 92.0 / 273.0;
        assert!((j.expected_value.unwrap() - expected).abs() < 1e-9);
        assert_eq!(j.status, GoalStatus::AtRisk);
        // Without the milestone, 70 is further behind the straight line.
        let j = status("higher", "", &[("2025-12", Some(70.0))], as_of);
        assert_eq!(j.status, GoalStatus::OffTrack);
        let line = [(d(2025, 7, 1), 50.0), (d(2025, 10, 1), 60.0)];
        assert_eq!(expected_on(&line, d(2025, 1, 1)), 50.0, "flat before");
        assert_eq!(expected_on(&line, d(2026, 1, 1)), 60.0, "flat after");
    }

    #[test]
    fn lower_is_better_mirrors_the_rule() {
        let as_of = d(2026, 1, 15);
        let expected = 50.0 - 50.0 * 184.0 / 365.0;
        assert_eq!(
            status("lower", "", &[("2025-12", Some(expected - 1.0))], as_of).status,
            GoalStatus::OnTrack
        );
        assert_eq!(
            status("lower", "", &[("2025-12", Some(expected + 4.0))], as_of).status,
            GoalStatus::AtRisk
        );
        assert_eq!(
            status("lower", "", &[("2025-12", Some(expected + 6.0))], as_of).status,
            GoalStatus::OffTrack
        );
        assert_eq!(
            status("lower", "", &[("2025-12", Some(0.0))], as_of).status,
            GoalStatus::Met
        );
    }

    #[test]
    fn partial_and_stale_periods_are_not_judged() {
        let as_of = d(2026, 1, 15);
        // January is still running: only December counts, and December has no value.
        let j = status(
            "higher",
            "",
            &[("2025-12", None), ("2026-01", Some(99.0))],
            as_of,
        );
        assert_eq!(j.status, GoalStatus::NoData);
        // November is the second-to-last complete period: still judged.
        let j = status("higher", "", &[("2025-11", Some(100.0))], as_of);
        assert_eq!(j.status, GoalStatus::Met);
        assert_eq!(j.latest_period.as_deref(), Some("2025-11"));
        // October is too old.
        let j = status("higher", "", &[("2025-10", Some(100.0))], as_of);
        assert_eq!(j.status, GoalStatus::NoData);
        assert!(
            j.reason.contains("2025-12") && j.reason.contains("2025-11"),
            "{}",
            j.reason
        );
    }
}
