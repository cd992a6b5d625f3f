//! Reporting periods: calendar day, ISO week, month, quarter, year, and fiscal year and
//! quarter with a configurable first month.
//!
//! A fiscal year is named by the calendar year in which it ends: with a July start, FY2026
//! runs from 1 July 2025 to 30 June 2026 and its first quarter is `FY2026 Q1` (July–September
//! 2025). Labels are stable strings so they can be written in pipeline files and compared.

use chrono::{Datelike, Days, Months, NaiveDate, Weekday};
use serde::{Deserialize, Serialize};
use std::fmt;

/// How figures are bucketed in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum PeriodKind {
    Day,
    Week,
    Month,
    Quarter,
    Year,
    FiscalYear,
    FiscalQuarter,
}

impl PeriodKind {
    pub const ALL: [PeriodKind; 7] = [
        Self::Day,
        Self::Week,
        Self::Month,
        Self::Quarter,
        Self::Year,
        Self::FiscalYear,
        Self::FiscalQuarter,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
            Self::Quarter => "quarter",
            Self::Year => "year",
            Self::FiscalYear => "fiscal_year",
            Self::FiscalQuarter => "fiscal_quarter",
        }
    }

    /// An example label, for error messages.
    pub fn example(self) -> &'static str {
        match self {
            Self::Day => "2025-07-01",
            Self::Week => "2025-W27",
            Self::Month => "2025-07",
            Self::Quarter => "2025-Q3",
            Self::Year => "2025",
            Self::FiscalYear => "FY2026",
            Self::FiscalQuarter => "FY2026 Q1",
        }
    }

    pub fn parse_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl TryFrom<String> for PeriodKind {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        Self::parse_name(&name).ok_or_else(|| {
            format!(
                "unknown period {name:?}; expected one of {}",
                Self::ALL.map(Self::as_str).join(", ")
            )
        })
    }
}

impl fmt::Display for PeriodKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One period: its kind, its first day, and (for fiscal kinds) the fiscal year's first month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Period {
    kind: PeriodKind,
    start: NaiveDate,
    fiscal_start: u32,
}

/// The instants (UTC microseconds, half-open) whose local date in `tz` lies in
/// `start..end`: from just after the last instant that is still the day before `start`, to just
/// after the last instant of the day before `end`. Every instant inside has its local date in
/// the range, even where clocks go back across midnight (St. John's, 1 November 2009) or a day
/// starts in a gap (Havana). `None` when a day's last microsecond does not exist locally.
pub fn local_days_span(tz: chrono_tz::Tz, start: NaiveDate, end: NaiveDate) -> Option<(i64, i64)> {
    use chrono::TimeZone;
    let after_last = |day: NaiveDate| {
        let last = day.and_hms_micro_opt(23, 59, 59, 999_999)?;
        tz.from_local_datetime(&last)
            .latest()
            .map(|t| t.timestamp_micros() + 1)
    };
    let lo = after_last(start.pred_opt()?)?;
    let hi = after_last(end.pred_opt()?)?;
    (lo < hi).then_some((lo, hi))
}

impl Period {
    /// The period of `kind` that contains `date`. `fiscal_start` is the fiscal year's first
    /// month (1–12); it only matters for the fiscal kinds.
    pub fn containing(kind: PeriodKind, date: NaiveDate, fiscal_start: u32) -> Self {
        let fiscal_start = fiscal_start.clamp(1, 12);
        let start = match kind {
            PeriodKind::Day => date,
            PeriodKind::Week => date - Days::new(u64::from(date.weekday().num_days_from_monday())),
            PeriodKind::Month => first_of_month(date.year(), date.month()),
            PeriodKind::Quarter => first_of_month(date.year(), (date.month() - 1) / 3 * 3 + 1),
            PeriodKind::Year => first_of_month(date.year(), 1),
            PeriodKind::FiscalYear => fiscal_year_start(date, fiscal_start),
            PeriodKind::FiscalQuarter => {
                let fy = fiscal_year_start(date, fiscal_start);
                let months = months_between(fy, date);
                fy + Months::new(months / 3 * 3)
            }
        };
        Self {
            kind,
            start,
            fiscal_start,
        }
    }

    pub fn kind(&self) -> PeriodKind {
        self.kind
    }

    /// First day of the period.
    pub fn start(&self) -> NaiveDate {
        self.start
    }

    /// First day after the period.
    pub fn end(&self) -> NaiveDate {
        match self.kind {
            PeriodKind::Day => self.start + Days::new(1),
            PeriodKind::Week => self.start + Days::new(7),
            PeriodKind::Month => self.start + Months::new(1),
            PeriodKind::Quarter | PeriodKind::FiscalQuarter => self.start + Months::new(3),
            PeriodKind::Year | PeriodKind::FiscalYear => self.start + Months::new(12),
        }
    }

    /// The period right after this one.
    pub fn next(&self) -> Self {
        Self {
            start: self.end(),
            ..*self
        }
    }

    /// The period right before this one.
    pub fn prev(&self) -> Self {
        Self::containing(self.kind, self.start - Days::new(1), self.fiscal_start)
    }

    /// The fiscal year a date falls in, named by the calendar year it ends in.
    fn fiscal_year_number(&self) -> i32 {
        if self.fiscal_start == 1 {
            self.start.year()
        } else {
            fiscal_year_start(self.start, self.fiscal_start).year() + 1
        }
    }

    pub fn label(&self) -> String {
        let d = self.start;
        match self.kind {
            PeriodKind::Day => d.format("%Y-%m-%d").to_string(),
            PeriodKind::Week => {
                let w = d.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            }
            PeriodKind::Month => d.format("%Y-%m").to_string(),
            PeriodKind::Quarter => format!("{}-Q{}", d.year(), (d.month() - 1) / 3 + 1),
            PeriodKind::Year => d.year().to_string(),
            PeriodKind::FiscalYear => format!("FY{}", self.fiscal_year_number()),
            PeriodKind::FiscalQuarter => {
                let fy = fiscal_year_start(d, self.fiscal_start);
                format!(
                    "FY{} Q{}",
                    self.fiscal_year_number(),
                    months_between(fy, d) / 3 + 1
                )
            }
        }
    }

    /// Parse a label written the way [`Period::label`] writes it.
    pub fn parse(kind: PeriodKind, label: &str, fiscal_start: u32) -> Option<Self> {
        let label = label.trim();
        let fiscal_start = fiscal_start.clamp(1, 12);
        let start = match kind {
            PeriodKind::Day => NaiveDate::parse_from_str(label, "%Y-%m-%d").ok()?,
            PeriodKind::Week => {
                let (y, w) = label.split_once("-W")?;
                NaiveDate::from_isoywd_opt(y.parse().ok()?, w.parse().ok()?, Weekday::Mon)?
            }
            PeriodKind::Month => {
                let (y, m) = label.split_once('-')?;
                NaiveDate::from_ymd_opt(y.parse().ok()?, strict_u32(m, 2)?, 1)?
            }
            PeriodKind::Quarter => {
                let (y, q) = label.split_once("-Q")?;
                let q = strict_u32(q, 1)?;
                if !(1..=4).contains(&q) {
                    return None;
                }
                NaiveDate::from_ymd_opt(y.parse().ok()?, (q - 1) * 3 + 1, 1)?
            }
            PeriodKind::Year => NaiveDate::from_ymd_opt(strict_i32(label)?, 1, 1)?,
            PeriodKind::FiscalYear => {
                let y = strict_i32(label.strip_prefix("FY")?)?;
                fiscal_year_first_day(y, fiscal_start)?
            }
            PeriodKind::FiscalQuarter => {
                let (fy, q) = label.strip_prefix("FY")?.split_once(" Q")?;
                let q = strict_u32(q, 1)?;
                if !(1..=4).contains(&q) {
                    return None;
                }
                fiscal_year_first_day(strict_i32(fy)?, fiscal_start)? + Months::new((q - 1) * 3)
            }
        };
        let period = Self::containing(kind, start, fiscal_start);
        // Reject labels that parse but are not canonical (e.g. "2025-7").
        (period.label() == label).then_some(period)
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

fn first_of_month(year: i32, month: u32) -> NaiveDate {
    // Invariant: callers pass a month in 1..=12 and a year from a valid date.
    NaiveDate::from_ymd_opt(year, month, 1).expect("month is 1..=12 of a valid year")
}

fn fiscal_year_start(date: NaiveDate, fiscal_start: u32) -> NaiveDate {
    if date.month() >= fiscal_start {
        first_of_month(date.year(), fiscal_start)
    } else {
        first_of_month(date.year() - 1, fiscal_start)
    }
}

fn fiscal_year_first_day(fiscal_year: i32, fiscal_start: u32) -> Option<NaiveDate> {
    if fiscal_start == 1 {
        NaiveDate::from_ymd_opt(fiscal_year, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(fiscal_year - 1, fiscal_start, 1)
    }
}

fn months_between(from: NaiveDate, to: NaiveDate) -> u32 {
    let m = (to.year() - from.year()) * 12 + to.month() as i32 - from.month() as i32;
    m.max(0) as u32
}

fn strict_u32(s: &str, width: usize) -> Option<u32> {
    (s.len() == width && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn strict_i32(s: &str) -> Option<i32> {
    (s.len() == 4 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn fiscal_year_starting_in_july_is_named_by_its_end() {
        let p = Period::containing(PeriodKind::FiscalYear, d(2025, 7, 1), 7);
        assert_eq!(p.label(), "FY2026");
        assert_eq!(p.start(), d(2025, 7, 1));
        assert_eq!(p.end(), d(2026, 7, 1));
        let p = Period::containing(PeriodKind::FiscalYear, d(2026, 6, 30), 7);
        assert_eq!(p.label(), "FY2026");
    }

    #[test]
    fn fiscal_quarters_count_from_the_fiscal_start() {
        let q = |y, m| Period::containing(PeriodKind::FiscalQuarter, d(y, m, 15), 7).label();
        assert_eq!(q(2025, 7), "FY2026 Q1");
        assert_eq!(q(2025, 12), "FY2026 Q2");
        assert_eq!(q(2026, 1), "FY2026 Q3");
        assert_eq!(q(2026, 6), "FY2026 Q4");
        let p = Period::parse(PeriodKind::FiscalQuarter, "FY2026 Q3", 7).unwrap();
        assert_eq!(p.start(), d(2026, 1, 1));
    }

    #[test]
    fn iso_weeks_cross_year_boundaries() {
        // 1 January 2017 is a Sunday: it belongs to ISO week 52 of 2016.
        let p = Period::containing(PeriodKind::Week, d(2017, 1, 1), 1);
        assert_eq!(p.label(), "2016-W52");
        assert_eq!(p.start(), d(2016, 12, 26));
        assert_eq!(p.next().label(), "2017-W01");
    }

    #[test]
    fn labels_round_trip_and_non_canonical_labels_are_rejected() {
        for kind in PeriodKind::ALL {
            let p = Period::containing(kind, d(2024, 2, 29), 7);
            assert_eq!(Period::parse(kind, &p.label(), 7), Some(p), "{kind}");
            assert_eq!(p.next().prev(), p, "{kind}");
        }
        assert_eq!(Period::parse(PeriodKind::Month, "2025-7", 7), None);
        assert_eq!(Period::parse(PeriodKind::Month, "2025-13", 7), None);
        assert_eq!(Period::parse(PeriodKind::Quarter, "2025-Q5", 7), None);
    }

    mod properties {
        //! Properties of period bucketing, checked against rules written out by hand from the
        //! module's documentation rather than against the implementation's own arithmetic.
        use super::super::*;
        use chrono::{DateTime, NaiveDateTime, NaiveTime};
        use chrono_tz::Tz;
        use proptest::prelude::*;

        const ZONES: [Tz; 5] = [
            chrono_tz::America::New_York,
            chrono_tz::America::Los_Angeles,
            chrono_tz::Australia::Lord_Howe,
            chrono_tz::Europe::London,
            chrono_tz::UTC,
        ];

        /// 1900-01-01T00:00:00Z .. 2200-01-01T00:00:00Z, in seconds.
        const FROM: i64 = -2_208_988_800;
        const TO: i64 = 7_258_118_400;

        fn local_time(secs: i64, tz: Tz) -> NaiveDateTime {
            DateTime::from_timestamp(secs, 0)
                .expect("in range")
                .with_timezone(&tz)
                .naive_local()
        }

        fn midnight(d: NaiveDate) -> NaiveDateTime {
            d.and_time(NaiveTime::MIN)
        }

        fn ymd(y: i32, m: u32, day: u32) -> NaiveDate {
            NaiveDate::from_ymd_opt(y, m, day).unwrap()
        }

        /// The first day of the month `k` months after month `m` (1–12) of year `y`.
        fn month_after(y: i32, m: u32, k: u32) -> NaiveDate {
            let zero_based = m - 1 + k;
            ymd(y + (zero_based / 12) as i32, zero_based % 12 + 1, 1)
        }

        /// The calendar year in which the fiscal year holding `d` begins.
        fn fiscal_year_begins_in(d: NaiveDate, fs: u32) -> i32 {
            if d.month() >= fs {
                d.year()
            } else {
                d.year() - 1
            }
        }

        /// The documented naming rule: a fiscal year is named by the calendar year it ends in.
        /// With a January start that is the calendar year itself; otherwise a date in or after
        /// the first month belongs to the fiscal year named by the next calendar year.
        fn fiscal_year_name(d: NaiveDate, fs: u32) -> i32 {
            if fs == 1 {
                d.year()
            } else if d.month() >= fs {
                d.year() + 1
            } else {
                d.year()
            }
        }

        /// Quarter 1–4 of the fiscal year: months counted from the fiscal start, three a quarter.
        fn fiscal_quarter(d: NaiveDate, fs: u32) -> u32 {
            (d.month() + 12 - fs) % 12 / 3 + 1
        }

        /// First day and first day after of the period of `kind` holding `d`.
        fn expected_bounds(kind: PeriodKind, d: NaiveDate, fs: u32) -> (NaiveDate, NaiveDate) {
            let (y, m) = (d.year(), d.month());
            match kind {
                PeriodKind::Day => (d, d.succ_opt().unwrap()),
                PeriodKind::Week => {
                    // Walk back to the Monday on or before `d`.
                    let mut start = d;
                    while start.weekday() != Weekday::Mon {
                        start = start.pred_opt().unwrap();
                    }
                    (start, start + Days::new(7))
                }
                PeriodKind::Month => (ymd(y, m, 1), month_after(y, m, 1)),
                PeriodKind::Quarter => {
                    let first = match m {
                        1..=3 => 1,
                        4..=6 => 4,
                        7..=9 => 7,
                        _ => 10,
                    };
                    (ymd(y, first, 1), month_after(y, first, 3))
                }
                PeriodKind::Year => (ymd(y, 1, 1), ymd(y + 1, 1, 1)),
                PeriodKind::FiscalYear => {
                    let begins = fiscal_year_begins_in(d, fs);
                    (ymd(begins, fs, 1), ymd(begins + 1, fs, 1))
                }
                PeriodKind::FiscalQuarter => {
                    let begins = fiscal_year_begins_in(d, fs);
                    let offset = (fiscal_quarter(d, fs) - 1) * 3;
                    (
                        month_after(begins, fs, offset),
                        month_after(begins, fs, offset + 3),
                    )
                }
            }
        }

        fn expected_label(kind: PeriodKind, d: NaiveDate, fs: u32) -> String {
            let (y, m) = (d.year(), d.month());
            match kind {
                PeriodKind::Day => format!("{y:04}-{m:02}-{:02}", d.day()),
                PeriodKind::Week => {
                    // ISO 8601: a week belongs to the year its Thursday falls in, and week 1 is
                    // the one holding that year's first Thursday.
                    let (monday, _) = expected_bounds(PeriodKind::Week, d, fs);
                    let thursday = monday + Days::new(3);
                    format!(
                        "{:04}-W{:02}",
                        thursday.year(),
                        (thursday.ordinal() - 1) / 7 + 1
                    )
                }
                PeriodKind::Month => format!("{y:04}-{m:02}"),
                PeriodKind::Quarter => format!("{y:04}-Q{}", (m - 1) / 3 + 1),
                PeriodKind::Year => format!("{y:04}"),
                PeriodKind::FiscalYear => format!("FY{}", fiscal_year_name(d, fs)),
                PeriodKind::FiscalQuarter => {
                    format!("FY{} Q{}", fiscal_year_name(d, fs), fiscal_quarter(d, fs))
                }
            }
        }

        fn kinds() -> impl Strategy<Value = PeriodKind> {
            proptest::sample::select(PeriodKind::ALL.to_vec())
        }

        fn zones() -> impl Strategy<Value = Tz> {
            proptest::sample::select(ZONES.to_vec())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn a_period_holds_the_local_time_it_was_cut_for(
                secs in FROM..TO,
                tz in zones(),
                kind in kinds(),
                fs in 1u32..=12,
            ) {
                let local = local_time(secs, tz);
                let p = Period::containing(kind, local.date(), fs);
                prop_assert_eq!(p.kind(), kind);
                prop_assert!(midnight(p.start()) <= local, "{p:?} starts after {local}");
                prop_assert!(local < midnight(p.end()), "{p:?} ends before {local}");
            }

            #[test]
            fn periods_have_the_documented_bounds_and_labels(
                secs in FROM..TO,
                tz in zones(),
                kind in kinds(),
                fs in 1u32..=12,
            ) {
                let day = local_time(secs, tz).date();
                let p = Period::containing(kind, day, fs);
                let (start, end) = expected_bounds(kind, day, fs);
                prop_assert_eq!(p.start(), start, "{} {} fiscal start {}", kind, day, fs);
                prop_assert_eq!(p.end(), end, "{} {} fiscal start {}", kind, day, fs);
                prop_assert_eq!(p.label(), expected_label(kind, day, fs), "{} fiscal start {}", day, fs);
            }

            #[test]
            fn fiscal_years_are_named_by_the_year_they_end_in(
                secs in FROM..TO,
                tz in zones(),
                fs in 1u32..=12,
            ) {
                let day = local_time(secs, tz).date();
                let fy = Period::containing(PeriodKind::FiscalYear, day, fs);
                let name = fiscal_year_name(day, fs);
                prop_assert_eq!(fy.label(), format!("FY{name}"));
                // The fiscal year ends (its last day) in the calendar year it is named by.
                prop_assert_eq!(fy.end().pred_opt().unwrap().year(), name);
                prop_assert_eq!(fy.start().month(), fs);
                prop_assert_eq!(fy.start().day(), 1);
                let fq = Period::containing(PeriodKind::FiscalQuarter, day, fs);
                prop_assert!(fq.label().starts_with(&format!("FY{name} Q")), "{}", fq.label());
                // Four fiscal quarters make up the fiscal year, the first starting with it.
                let mut q = Period::containing(PeriodKind::FiscalQuarter, fy.start(), fs);
                for n in 1..=4 {
                    prop_assert_eq!(q.label(), format!("FY{name} Q{n}"));
                    q = q.next();
                }
                prop_assert_eq!(q.start(), fy.end());
            }

            #[test]
            fn consecutive_periods_tile_time(
                secs in FROM..TO,
                tz in zones(),
                kind in kinds(),
                fs in 1u32..=12,
            ) {
                let p = Period::containing(kind, local_time(secs, tz).date(), fs);
                let next = p.next();
                let prev = p.prev();
                prop_assert_eq!(next.start(), p.end());
                prop_assert_eq!(prev.end(), p.start());
                prop_assert_eq!(next.prev(), p);
                prop_assert_eq!(prev.next(), p);
                // The first and last day of the period, and the day after it, land where they
                // should.
                prop_assert_eq!(Period::containing(kind, p.start(), fs), p);
                prop_assert_eq!(Period::containing(kind, p.end().pred_opt().unwrap(), fs), p);
                prop_assert_eq!(Period::containing(kind, p.end(), fs), next);
                // Labels of four-digit years sort in time order, so they can be compared.
                prop_assert!(prev.label() < p.label(), "{} !< {}", prev.label(), p.label());
                prop_assert!(p.label() < next.label(), "{} !< {}", p.label(), next.label());
            }

            #[test]
            fn labels_parse_back_to_the_same_period(
                secs in FROM..TO,
                tz in zones(),
                kind in kinds(),
                fs in 1u32..=12,
            ) {
                let p = Period::containing(kind, local_time(secs, tz).date(), fs);
                prop_assert_eq!(Period::parse(kind, &p.label(), fs), Some(p));
                prop_assert_eq!(p.to_string(), p.label());
            }

            #[test]
            fn parsing_any_text_never_panics_and_accepts_only_canonical_labels(
                kind in kinds(),
                fs in 1u32..=12,
                text in prop_oneof![
                    "\\PC*",
                    proptest::collection::vec(any::<u8>(), 0..24)
                        .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
                    // Near misses of each label form.
                    "[0-9]{1,6}-[0-9]{1,3}(-[0-9]{1,3})?",
                    "[0-9]{1,6}-W[0-9]{1,3}",
                    "[0-9]{1,6}-Q[0-9]{1,2}",
                    "FY[0-9]{1,6}( Q[0-9]{1,2})?",
                    " ?[0-9]{1,6} ?",
                ],
            ) {
                if let Some(p) = Period::parse(kind, &text, fs) {
                    prop_assert_eq!(p.kind(), kind);
                    prop_assert_eq!(p.label(), text.trim());
                    prop_assert_eq!(Period::parse(kind, &p.label(), fs), Some(p));
                }
            }
        }
    }
}
