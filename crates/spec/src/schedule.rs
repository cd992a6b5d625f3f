//! When a pipeline runs: a cron expression with seconds, read in the pipeline's time zone.
//!
//! The fire instants are computed here, in UTC, from local wall-clock matches, because a
//! cron library that keeps a fixed UTC offset (or steps through local time naively) fires an
//! hour off after a daylight-saving change, twice in a repeated hour, or not at all in a
//! skipped one. The rules, as classic cron has them:
//!
//! - **A skipped local time** (clocks go forward, e.g. 02:30 on America/New_York's
//!   spring-forward day) fires once, at the first instant after the gap (03:00 local).
//!   Several skipped times fire once together.
//! - **A repeated local time** (clocks go back, e.g. 01:30 on the fall-back day) fires once,
//!   at its first occurrence, when the schedule names its hours (`0 30 1 * * *`). A schedule
//!   that runs every hour (hour field `*`) fires in both copies of the repeated hour, so an
//!   hourly refresh keeps its pace.
//! - Day of month and day of week, when both are restricted, match either (as in cron).

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// A parsed `schedule` in its `timezone`.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
    every_hour: bool,
    text: String,
}

/// The longest a time zone's clocks go back at once (historically two hours, for double
/// summer time), used to bound how far back a repeated hour can reach.
const MAX_SHIFT: i64 = 3 * 3600;

impl Schedule {
    /// Parse a cron expression with six fields (`sec min hour day-of-month month
    /// day-of-week`).
    pub fn parse(text: &str, tz: Tz) -> Result<Self, String> {
        let fields = text.split_whitespace().count();
        if fields != 6 {
            return Err(format!(
                "schedule {text:?} has {fields} fields; expected 6: second minute hour day-of-month month day-of-week, e.g. \"0 15 6 * * *\" for 06:15:00 daily"
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .dom_and_dow(false)
            .build()
            .parse(text)
            .map_err(|e| format!("schedule {text:?} is not a cron expression: {e}"))?;
        let every_hour = cron.pattern.hours.is_all_set();
        let s = Self {
            cron,
            tz,
            every_hour,
            text: text.to_string(),
        };
        // A pattern that can never match (`0 0 0 31 2 *`) is an error now, not a daemon that
        // silently never runs the pipeline.
        if s.next_after(Utc::now()).is_none() {
            return Err(format!("schedule {text:?} never matches a date"));
        }
        Ok(s)
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The first fire instant strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let offset = |t: DateTime<Utc>| -> i64 {
            i64::from(
                self.tz
                    .offset_from_utc_datetime(&t.naive_utc())
                    .fix()
                    .local_minus_utc(),
            )
        };
        let off_now = offset(after);
        let off_next = offset(after + Duration::days(1));
        // Local times from here on can map to instants after `after`; when the clocks go
        // back within a day, the repeated hour's second copy starts earlier on the wall.
        let back = (off_now - off_next).clamp(0, MAX_SHIFT);
        let off_high = off_now.max(off_next);
        let start = after.naive_utc().with_nanosecond(0)? + Duration::seconds(off_now - back - 1);
        let mut best: Option<DateTime<Utc>> = None;
        // Wall-clock matches, enumerated on a zone without clock changes. (Stepping with
        // `find_next_occurrence` rather than croner's iterator, which skips a match one
        // second after another.)
        let mut cursor = Utc.from_utc_datetime(&start);
        for seen in 0.. {
            let Ok(found) = self.cron.find_next_occurrence(&cursor, false) else {
                break;
            };
            cursor = found;
            let m = found.naive_utc();
            if let Some(b) = best {
                // Every later wall time maps to an instant after `b`.
                if m - Duration::seconds(off_high) > b.naive_utc() {
                    break;
                }
            }
            if seen > 1_000_000 {
                break;
            }
            for t in self.instants(m) {
                if t > after && best.is_none_or(|b| t < b) {
                    best = Some(t);
                }
            }
        }
        best
    }

    /// The instants a local wall-clock time `m` fires at.
    fn instants(&self, m: NaiveDateTime) -> Vec<DateTime<Utc>> {
        match self.tz.from_local_datetime(&m) {
            LocalResult::Single(t) => vec![t.with_timezone(&Utc)],
            LocalResult::Ambiguous(first, second) => {
                if self.every_hour {
                    vec![first.with_timezone(&Utc), second.with_timezone(&Utc)]
                } else {
                    vec![first.with_timezone(&Utc)]
                }
            }
            LocalResult::None => self.gap_end(m).into_iter().collect(),
        }
    }

    /// The first instant after the clock-change gap that swallowed the local time `m`.
    fn gap_end(&self, m: NaiveDateTime) -> Option<DateTime<Utc>> {
        // Read with any offset of the zone, `m` lands within a few hours of the change;
        // search that window for the first instant whose local time is past `m`'s gap.
        let secs = m.and_utc().timestamp();
        let local = |t: i64| {
            DateTime::from_timestamp(t, 0).map(|t| t.with_timezone(&self.tz).naive_local())
        };
        let (mut lo, mut hi) = (secs - 15 * 3600, secs + 15 * 3600);
        if local(hi)? <= m {
            return None;
        }
        // Invariant: local(lo) < m < local(hi) (local time runs forward across a gap).
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if local(mid)? < m {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        DateTime::from_timestamp(hi, 0)
    }

    /// The fire instants in `(after, until]`, oldest first, at most `limit` of them.
    pub fn between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut t = after;
        while out.len() < limit {
            match self.next_after(t) {
                Some(n) if n <= until => {
                    out.push(n);
                    t = n;
                }
                _ => break,
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::New_York;

    /// UTC instants written out by hand: New York is UTC−5 (EST) in winter, UTC−4 (EDT) in
    /// summer; in 2018 the clocks went forward at 02:00 EST on 11 March (07:00 UTC) and back
    /// at 02:00 EDT on 4 November (06:00 UTC).
    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn ny(text: &str) -> Schedule {
        Schedule::parse(text, New_York).unwrap()
    }

    #[test]
    fn a_skipped_time_runs_once_when_the_clocks_have_gone_forward() {
        let s = ny("0 30 2 * * *");
        // 10 March, 02:30 EST = 07:30 UTC.
        let fires = s.between(utc(2018, 3, 10, 0, 0, 0), utc(2018, 3, 13, 0, 0, 0), 10);
        assert_eq!(
            fires,
            [
                utc(2018, 3, 10, 7, 30, 0),
                // 11 March: 02:30 does not exist; the job runs at 03:00 EDT = 07:00 UTC.
                utc(2018, 3, 11, 7, 0, 0),
                // 12 March: 02:30 EDT = 06:30 UTC.
                utc(2018, 3, 12, 6, 30, 0),
            ]
        );
        // Every-20-minutes across the gap: 01:40 EST, then the skipped 02:00/02:20/02:40
        // together at 03:00 EDT, then 03:20 EDT.
        let s = ny("0 */20 * * * *");
        let fires = s.between(utc(2018, 3, 11, 6, 30, 0), utc(2018, 3, 11, 7, 30, 0), 10);
        assert_eq!(
            fires,
            [
                utc(2018, 3, 11, 6, 40, 0),
                utc(2018, 3, 11, 7, 0, 0),
                utc(2018, 3, 11, 7, 20, 0),
            ]
        );
    }

    #[test]
    fn a_repeated_time_runs_once_when_the_clocks_go_back() {
        let s = ny("0 30 1 * * *");
        let fires = s.between(utc(2018, 11, 3, 0, 0, 0), utc(2018, 11, 6, 0, 0, 0), 10);
        assert_eq!(
            fires,
            [
                // 3 November, 01:30 EDT.
                utc(2018, 11, 3, 5, 30, 0),
                // 4 November: 01:30 EDT (05:30 UTC) only, not 01:30 EST (06:30 UTC).
                utc(2018, 11, 4, 5, 30, 0),
                // 5 November, 01:30 EST.
                utc(2018, 11, 5, 6, 30, 0),
            ]
        );
        // A daemon (re)started in the repeated hour's second copy, after the first 01:30
        // ran, does not run it again.
        assert_eq!(
            s.next_after(utc(2018, 11, 4, 6, 0, 0)),
            Some(utc(2018, 11, 5, 6, 30, 0))
        );
        // The 02:30 job runs once on the fall-back day: 02:30 EST.
        let s = ny("0 30 2 * * *");
        let fires = s.between(utc(2018, 11, 4, 0, 0, 0), utc(2018, 11, 5, 0, 0, 0), 10);
        assert_eq!(fires, [utc(2018, 11, 4, 7, 30, 0)]);
    }

    #[test]
    fn an_hourly_schedule_keeps_its_pace_through_the_repeated_hour() {
        let s = ny("0 30 * * * *");
        let fires = s.between(utc(2018, 11, 4, 4, 0, 0), utc(2018, 11, 4, 8, 0, 0), 10);
        assert_eq!(
            fires,
            [
                utc(2018, 11, 4, 4, 30, 0), // 00:30 EDT
                utc(2018, 11, 4, 5, 30, 0), // 01:30 EDT
                utc(2018, 11, 4, 6, 30, 0), // 01:30 EST
                utc(2018, 11, 4, 7, 30, 0), // 02:30 EST
            ]
        );
        // Every 20 seconds from 01:59:40 EDT runs on through 01:xx EST, not skipping it.
        let s = ny("*/20 * * * * *");
        let fires = s.between(utc(2018, 11, 4, 5, 59, 30), utc(2018, 11, 4, 6, 0, 40), 10);
        assert_eq!(
            fires,
            [
                utc(2018, 11, 4, 5, 59, 40),
                utc(2018, 11, 4, 6, 0, 0),
                utc(2018, 11, 4, 6, 0, 20),
                utc(2018, 11, 4, 6, 0, 40),
            ]
        );
    }

    #[test]
    fn matches_one_second_apart_all_fire() {
        let every = ny("* * * * * *");
        let t = utc(2026, 7, 1, 12, 0, 0);
        assert_eq!(
            every.between(t, t + Duration::seconds(3), 10),
            [
                t + Duration::seconds(1),
                t + Duration::seconds(2),
                t + Duration::seconds(3)
            ]
        );
        let pair = ny("0,1 * * * * *");
        assert_eq!(
            pair.between(t, t + Duration::seconds(61), 10),
            [
                t + Duration::seconds(1),
                t + Duration::seconds(60),
                t + Duration::seconds(61)
            ]
        );
    }

    #[test]
    fn ordinary_days_and_bad_expressions() {
        let s = ny("0 15 6 * * *");
        // 06:15 EDT = 10:15 UTC in July.
        assert_eq!(
            s.next_after(utc(2026, 7, 1, 12, 0, 0)),
            Some(utc(2026, 7, 2, 10, 15, 0))
        );
        // Exactly at a fire instant: the next one, not the same.
        assert_eq!(
            s.next_after(utc(2026, 7, 2, 10, 15, 0)),
            Some(utc(2026, 7, 3, 10, 15, 0))
        );
        // Monday to Friday at 07:00: from Friday 10 July 2026 12:00 UTC to Monday 13 July.
        let s = ny("0 0 7 * * MON-FRI");
        assert_eq!(
            s.next_after(utc(2026, 7, 10, 12, 0, 0)),
            Some(utc(2026, 7, 13, 11, 0, 0))
        );
        let err = Schedule::parse("15 6 * * *", New_York).unwrap_err();
        assert!(err.contains("has 5 fields; expected 6"), "{err}");
        let err = Schedule::parse("0 61 6 * * *", New_York).unwrap_err();
        assert!(err.contains("not a cron expression"), "{err}");
        let err = Schedule::parse("0 0 0 31 2 *", New_York).unwrap_err();
        assert!(err.contains("never matches"), "{err}");
    }
}
