//! Parsers for the text forms open-data portals use.

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

/// Timestamp forms tried in order when a column names no `format`.
const NAIVE_FORMATS: &[&str] = &[
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %I:%M %p",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
];

pub(crate) const TIMESTAMP_FORMS: &str = "ISO 8601 (with or without an offset), \
    MM/DD/YYYY hh:mm:ss AM, or a date";

/// Parses timestamps; remembers which form matched last, since a column rarely mixes forms.
pub(crate) struct TimestampParser<'a> {
    tz: Tz,
    format: Option<&'a str>,
    last: usize,
}

impl<'a> TimestampParser<'a> {
    pub(crate) fn new(tz: Tz, format: Option<&'a str>) -> Self {
        Self {
            tz,
            format,
            last: 0,
        }
    }

    /// Microseconds since the epoch (UTC); `None` for text that is not a timestamp or an
    /// instant outside the range dates can be written in (a corrupt epoch value).
    pub(crate) fn parse(&mut self, s: &str) -> Option<i64> {
        self.parse_any(s)
            .filter(|us| DateTime::from_timestamp_micros(*us).is_some())
    }

    fn parse_any(&mut self, s: &str) -> Option<i64> {
        let s = s.trim();
        match self.format {
            Some("epoch_ms") => return s.parse::<i64>().ok()?.checked_mul(1_000),
            Some("epoch_s") => return s.parse::<i64>().ok()?.checked_mul(1_000_000),
            _ => {}
        }
        if let Some(us) = epoch(s) {
            return Some(us);
        }
        if let Some(f) = self.format {
            if let Ok(dt) = DateTime::parse_from_str(s, f) {
                return Some(dt.with_timezone(&Utc).timestamp_micros());
            }
            return NaiveDateTime::parse_from_str(s, f)
                .ok()
                .map(|n| self.local(n))
                .or_else(|| {
                    NaiveDate::parse_from_str(s, f)
                        .ok()
                        .map(|d| self.local(d.and_time(chrono::NaiveTime::MIN)))
                });
        }
        // An explicit offset or Z wins over the column's zone.
        if has_offset(s) {
            let zulu;
            let s = match s.strip_suffix(['Z', 'z']) {
                Some(head) => {
                    zulu = format!("{head}+00:00");
                    zulu.as_str()
                }
                None => s,
            };
            return OFFSET_FORMATS
                .iter()
                .find_map(|f| DateTime::parse_from_str(s, f).ok())
                .map(|dt| dt.with_timezone(&Utc).timestamp_micros());
        }
        let n = NAIVE_FORMATS.len();
        for k in 0..n {
            let i = (self.last + k) % n;
            if let Ok(naive) = NaiveDateTime::parse_from_str(s, NAIVE_FORMATS[i]) {
                self.last = i;
                return Some(self.local(naive));
            }
        }
        // A bare date is midnight; a date followed by anything else is not a timestamp.
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .or_else(|_| NaiveDate::parse_from_str(s, "%m/%d/%Y"))
            .ok()
            .map(|d| self.local(d.and_time(chrono::NaiveTime::MIN)))
    }

    /// A local wall-clock time in the column's zone, as UTC microseconds. In the hour that
    /// repeats when clocks go back, the first (daylight) instant is taken; a time in the hour
    /// skipped when clocks go forward is read as the instant it would have been an hour later.
    fn local(&self, naive: NaiveDateTime) -> i64 {
        match self.tz.from_local_datetime(&naive) {
            LocalResult::Single(dt) => dt.with_timezone(&Utc).timestamp_micros(),
            LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc).timestamp_micros(),
            LocalResult::None => {
                let later = naive + TimeDelta::hours(1);
                match self.tz.from_local_datetime(&later) {
                    LocalResult::Single(dt) | LocalResult::Ambiguous(dt, _) => {
                        dt.with_timezone(&Utc).timestamp_micros()
                    }
                    // No zone skips two hours in a row; fall back to reading it as UTC.
                    LocalResult::None => naive.and_utc().timestamp_micros(),
                }
            }
        }
    }
}

/// Forms with an explicit offset (`Z` is handled as `+00:00`).
const OFFSET_FORMATS: &[&str] = &[
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M%#z",
    "%Y-%m-%d %H:%M%#z",
];

/// Ends in `Z`, `±HH`, `±HHMM` or `±HH:MM` after a time (checked on bytes, so any text is safe).
/// A bare integer in a timestamp column is a Unix time: 12 or 13 digits are milliseconds
/// (ArcGIS and many JSON APIs write them; 2001-09-09 to 2286), 9 or 10 digits seconds
/// (1973 to 2286). Other lengths (`20170108`) are not taken as epochs.
pub(crate) fn epoch(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = s.parse().ok()?;
    match digits.len() {
        12 | 13 => n.checked_mul(1_000),
        9 | 10 => n.checked_mul(1_000_000),
        _ => None,
    }
}

fn has_offset(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 16 {
        return false;
    }
    if matches!(b[b.len() - 1], b'Z' | b'z') {
        return true;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let sign = |i: usize| matches!(b[i], b'+' | b'-');
    let n = b.len();
    (sign(n - 6) && digits(n - 5..n - 3) && b[n - 3] == b':' && digits(n - 2..n))
        || (sign(n - 5) && digits(n - 4..n))
        || (sign(n - 3) && digits(n - 2..n) && b[n - 6] == b':')
}

/// Dates as `YYYY-MM-DD`, `MM/DD/YYYY`, or the date part of an ISO timestamp.
pub(crate) fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(s, "%m/%d/%Y"))
        .ok()
        .or_else(|| {
            let head = s.get(..10)?;
            let rest = s.get(10..)?;
            (rest.starts_with(['T', ' ']))
                .then(|| NaiveDate::parse_from_str(head, "%Y-%m-%d").ok())?
        })
}

pub(crate) fn parse_i64(s: &str) -> Option<i64> {
    let s = s.trim();
    s.parse::<i64>().ok().or_else(|| {
        // "12.0" from a portal that stores integers as floats; "1,234" or "$1,234" from
        // one that formats them.
        let f = parse_f64(s)?;
        (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
    })
}

pub(crate) fn parse_f64(s: &str) -> Option<f64> {
    let s = s.trim();
    s.parse::<f64>()
        .ok()
        .or_else(|| formatted_number(s)?.parse::<f64>().ok())
        .filter(|f| f.is_finite())
}

/// A number as spreadsheets and budget exports write it: an optional sign, an optional `$`,
/// digits grouped by commas in threes (`-$1,234,567.89`, `$12.50`). The plain digits, or
/// `None` when the text is anything else (a comma in the wrong place is not a number).
fn formatted_number(s: &str) -> Option<String> {
    let (sign, rest) = match s.strip_prefix('-') {
        Some(r) => ("-", r),
        None => ("", s.strip_prefix('+').unwrap_or(s)),
    };
    let rest = rest.strip_prefix('$').unwrap_or(rest);
    let (int, frac) = match rest.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (rest, None),
    };
    let groups: Vec<&str> = int.split(',').collect();
    let grouped_ok = !groups[0].is_empty()
        && groups[0].len() <= 3
        && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_digit()))
        && groups[1..].iter().all(|g| g.len() == 3);
    let frac_ok = frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()));
    // Only text that needed this reading: "12" parses without it.
    let formatted = groups.len() > 1 || rest.len() != s.len() - sign.len();
    (grouped_ok && frac_ok && formatted).then(|| {
        let mut out = format!("{sign}{}", groups.concat());
        if let Some(f) = frac {
            out.push('.');
            out.push_str(f);
        }
        out
    })
}

pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "t" | "yes" | "y" | "1" => Some(true),
        "false" | "f" | "no" | "n" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_micros()
    }

    #[test]
    fn floating_and_us_local_times_are_read_in_the_zone() {
        let mut p = TimestampParser::new(chrono_tz::America::New_York, None);
        // November: EST, UTC-5.
        assert_eq!(
            p.parse("2012-11-20T07:50:59.000"),
            Some(utc("2012-11-20T12:50:59Z"))
        );
        // June: EDT, UTC-4.
        assert_eq!(
            p.parse("06/26/2018 10:58:54 AM"),
            Some(utc("2018-06-26T14:58:54Z"))
        );
        assert_eq!(
            p.parse("06/26/2018 12:50:01 PM"),
            Some(utc("2018-06-26T16:50:01Z"))
        );
        assert_eq!(
            p.parse("2018-06-26T10:58:54-07:00"),
            Some(utc("2018-06-26T17:58:54Z"))
        );
        assert_eq!(
            p.parse("2018-06-26T10:58:54Z"),
            Some(utc("2018-06-26T10:58:54Z"))
        );
        assert_eq!(
            p.parse("2018-06-26T10:58-04:00"),
            Some(utc("2018-06-26T14:58:00Z"))
        );
        assert_eq!(
            p.parse("2018-06-26T10:58Z"),
            Some(utc("2018-06-26T10:58:00Z"))
        );
        assert_eq!(p.parse("2018-06-26"), Some(utc("2018-06-26T04:00:00Z")));
        assert_eq!(p.parse("13/45/2018 10:58:54 AM"), None);
        // Not a time: never silently read as midnight.
        assert_eq!(p.parse("2018-06-26 25:61:00"), None);
        assert_eq!(p.parse("2018-06-26T10:58:54 EST"), None);
        // Multi-byte text where an offset would be must not panic.
        assert_eq!(p.parse("2018-06-26 10:58:54 未定"), None);
        assert_eq!(p.parse("é2018-06-26T10:58:54+1é"), None);
        assert_eq!(p.parse("soon"), None);
    }

    #[test]
    fn dst_edges_are_resolved_as_documented() {
        let mut p = TimestampParser::new(chrono_tz::America::New_York, None);
        // 2018-11-04 01:30 happens twice: take the first (EDT, UTC-4).
        assert_eq!(
            p.parse("2018-11-04T01:30:00"),
            Some(utc("2018-11-04T05:30:00Z"))
        );
        // 2018-03-11 02:30 does not exist: read as 03:30 EDT.
        assert_eq!(
            p.parse("2018-03-11T02:30:00"),
            Some(utc("2018-03-11T07:30:00Z"))
        );
    }

    #[test]
    fn formatted_numbers_are_read_and_malformed_ones_are_not() {
        assert_eq!(parse_f64("1,234"), Some(1234.0));
        assert_eq!(parse_f64("-$1,234,567.89"), Some(-1_234_567.89));
        assert_eq!(parse_f64("$12.50"), Some(12.5));
        assert_eq!(parse_i64("12,000"), Some(12_000));
        assert_eq!(parse_i64("$7"), Some(7));
        for bad in [
            "1,23",
            "12,34,567",
            ",123",
            "1,234.",
            "$",
            "1.2.3",
            "12a",
            "$-5",
        ] {
            assert_eq!(parse_f64(bad), None, "{bad}");
        }
    }

    #[test]
    fn unix_times_in_seconds_and_milliseconds() {
        let mut p = TimestampParser::new(chrono_tz::America::New_York, None);
        // 2017-01-01T07:57:56Z, as ArcGIS writes it and as seconds.
        assert_eq!(p.parse("1483257476000"), Some(1_483_257_476_000_000));
        assert_eq!(p.parse("1483257476"), Some(1_483_257_476_000_000));
        assert_eq!(p.parse("1483257476123"), Some(1_483_257_476_123_000));
        assert_eq!(
            p.parse("20170101"),
            None,
            "a date without separators is not an epoch"
        );
        let mut ms = TimestampParser::new(chrono_tz::UTC, Some("epoch_ms"));
        assert_eq!(
            ms.parse("9000000000000000"),
            None,
            "beyond the years dates can be written in"
        );
        assert_eq!(
            ms.parse("1000"),
            Some(1_000_000),
            "explicit units take any length"
        );
        let mut secs = TimestampParser::new(chrono_tz::UTC, Some("epoch_s"));
        assert_eq!(secs.parse("86400"), Some(86_400_000_000));
        assert_eq!(secs.parse("x"), None);
    }

    #[test]
    fn numbers_and_booleans_in_portal_forms() {
        assert_eq!(parse_i64(" 42 "), Some(42));
        assert_eq!(parse_i64("12.0"), Some(12));
        assert_eq!(parse_i64("12.5"), None);
        assert_eq!(parse_f64("NaN"), None);
        assert_eq!(parse_bool("Y"), Some(true));
        assert_eq!(parse_bool("maybe"), None);
        assert_eq!(
            parse_date("2012-11-20T07:50:59.000"),
            NaiveDate::from_ymd_opt(2012, 11, 20)
        );
    }
}
