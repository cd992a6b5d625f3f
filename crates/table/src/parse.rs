//! Parsers for the text forms open-data portals use.

use chrono::{
    DateTime, LocalResult, NaiveDate, NaiveDateTime, Offset as _, TimeDelta, TimeZone, Utc,
};
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

/// Parses timestamps; remembers which form matched last, since a column rarely mixes forms,
/// and the zone's offset in the local hour read last, since neighbouring rows fall in few
/// hours.
pub(crate) struct TimestampParser<'a> {
    tz: Tz,
    format: Option<&'a str>,
    last: usize,
    /// `(local hour, seconds to subtract)`: the hour's one offset from UTC.
    hour: Option<(i64, i64)>,
    /// The local hour of the last value looked up in the zone's rules.
    looked_up: i64,
}

/// The instants dates can be written in, as microseconds.
static INSTANTS: std::sync::LazyLock<std::ops::RangeInclusive<i64>> =
    std::sync::LazyLock::new(|| {
        DateTime::<Utc>::MIN_UTC.timestamp_micros()..=DateTime::<Utc>::MAX_UTC.timestamp_micros()
    });

impl<'a> TimestampParser<'a> {
    pub(crate) fn new(tz: Tz, format: Option<&'a str>) -> Self {
        Self {
            tz,
            format,
            last: 0,
            hour: None,
            looked_up: i64::MIN,
        }
    }

    /// Microseconds since the epoch (UTC); `None` for text that is not a timestamp or an
    /// instant outside the range dates can be written in (a corrupt epoch value).
    pub(crate) fn parse(&mut self, s: &str) -> Option<i64> {
        self.parse_any(s).filter(|us| INSTANTS.contains(us))
    }

    fn parse_any(&mut self, s: &str) -> Option<i64> {
        let s = trim(s);
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
        // The two forms portals write most, read without chrono's format interpreter.
        if let Some(naive) = fast_naive(s) {
            return Some(self.local(naive));
        }
        // An explicit offset or Z wins over the column's zone.
        if has_offset(s) {
            if let Some(us) = fast_offset(s) {
                return Some(us);
            }
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
    ///
    /// The zone's rules are looked up about once per local hour when values come in order:
    /// an hour whose first and last second have one and the same offset has it throughout,
    /// because a zone's offset changes are days apart (the closest in the tz database,
    /// Africa/Freetown's in 1939, are four days apart). The hour is checked when a second
    /// value in a row falls in it, so values in no order cost one lookup each; the hour
    /// around a change is looked up value by value.
    fn local(&mut self, naive: NaiveDateTime) -> i64 {
        let wall = naive.and_utc();
        let hour = wall.timestamp().div_euclid(3600);
        if let Some((h, offset)) = self.hour
            && h == hour
        {
            return wall.timestamp_micros() - offset * 1_000_000;
        }
        let offset_at = |secs: i64| {
            let at = DateTime::from_timestamp(secs, 0)?.naive_utc();
            match self.tz.from_local_datetime(&at) {
                LocalResult::Single(dt) => Some(i64::from(dt.offset().fix().local_minus_utc())),
                _ => None,
            }
        };
        if self.looked_up == hour {
            self.hour = match (offset_at(hour * 3600), offset_at(hour * 3600 + 3599)) {
                (Some(a), Some(b)) if a == b => Some((hour, a)),
                _ => None,
            };
        }
        self.looked_up = hour;
        self.resolve(naive)
    }

    /// [`Self::local`] from the zone's rules.
    fn resolve(&self, naive: NaiveDateTime) -> i64 {
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

/// `YYYY-MM-DD[T ]HH:MM:SS[.fraction]` and `MM/DD/YYYY hh:mm:ss AM|PM`, exactly (two-digit
/// fields, up to nine fraction digits, upper-case AM/PM), read byte by byte. Anything else,
/// including every text these forms reject (a 61st second, a 13th hour, 30 February), is
/// `None` and left to the general parser, so the result is the same either way.
fn fast_naive(s: &str) -> Option<NaiveDateTime> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b.get(r)?.iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let iso = b.len() >= 19
        && b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b' ')
        && b[13] == b':'
        && b[16] == b':';
    let (date, h, m, sec, nanos) = if iso {
        let nanos = match &b[19..] {
            [] => 0,
            [b'.', frac @ ..] if (1..=9).contains(&frac.len()) => {
                num(20..b.len())? * 10u32.pow(9 - frac.len() as u32)
            }
            _ => return None,
        };
        let date = NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
        (date, num(11..13)?, num(14..16)?, num(17..19)?, nanos)
    } else if b.len() == 22
        && b[2] == b'/'
        && b[5] == b'/'
        && b[10] == b' '
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b' '
        && b[21] == b'M'
        && matches!(b[20], b'A' | b'P')
    {
        let h12 = num(11..13)?;
        if !(1..=12).contains(&h12) {
            return None;
        }
        let h = h12 % 12 + if b[20] == b'P' { 12 } else { 0 };
        let date = NaiveDate::from_ymd_opt(num(6..10)? as i32, num(0..2)?, num(3..5)?)?;
        (date, h, num(14..16)?, num(17..19)?, 0)
    } else {
        return None;
    };
    if sec >= 60 {
        return None;
    }
    date.and_hms_nano_opt(h, m, sec, nanos)
}

/// A [`fast_naive`] ISO form followed by `Z` or `±HH:MM` (the form JSON APIs write), as UTC
/// microseconds. Anything else is `None` and left to chrono, which reads these the same way.
fn fast_offset(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let n = b.len();
    let (head, offset_seconds) = if matches!(b.last(), Some(b'Z' | b'z')) {
        (&s[..n - 1], 0)
    } else if n > 6 && matches!(b[n - 6], b'+' | b'-') && b[n - 3] == b':' {
        let two = |i: usize| -> Option<i64> {
            let (x, y) = (b[i], b[i + 1]);
            (x.is_ascii_digit() && y.is_ascii_digit())
                .then(|| i64::from(x - b'0') * 10 + i64::from(y - b'0'))
        };
        let (h, m) = (two(n - 5)?, two(n - 2)?);
        if h >= 24 || m >= 60 {
            return None;
        }
        let sign = if b[n - 6] == b'-' { -1 } else { 1 };
        (&s[..n - 6], sign * (h * 3600 + m * 60))
    } else {
        return None;
    };
    // Only the ISO form: the US form never carries an offset.
    if head.as_bytes().get(4) != Some(&b'-') {
        return None;
    }
    let naive = fast_naive(head)?;
    Some(naive.and_utc().timestamp_micros() - offset_seconds * 1_000_000)
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
        || (sign(n - 3) && digits(n - 2..n) && b[n - 4].is_ascii_digit())
}

/// `s.trim()`, without its cost for the usual text, which starts and ends with an ASCII
/// character that is not white space.
pub(crate) fn trim(s: &str) -> &str {
    // ASCII white space as `char::is_whitespace` has it: tab to carriage return, and space.
    let plain = |b: &u8| *b < 0x80 && *b != b' ' && !(0x09..=0x0D).contains(b);
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) if plain(first) && plain(last) => s,
        _ => s.trim(),
    }
}

/// Whether a value is empty or only white space.
pub(crate) fn is_blank(s: &str) -> bool {
    trim(s).is_empty()
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
    let s = trim(s);
    s.parse::<i64>().ok().or_else(|| {
        // "12.0" from a portal that stores integers as floats; "1,234" or "$1,234" from
        // one that formats them.
        let f = parse_f64(s)?;
        // A fraction written out is a fraction, even when a float cannot hold it
        // ("2251799813685248.81" rounds to a whole f64).
        let written_fraction = !s.contains(['e', 'E'])
            && s.split_once('.').is_some_and(|(_, frac)| {
                frac.trim_end_matches('0')
                    .bytes()
                    .any(|b| b.is_ascii_digit())
            });
        (!written_fraction && f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
    })
}

pub(crate) fn parse_f64(s: &str) -> Option<f64> {
    let s = trim(s);
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
    fn one_parser_reads_every_minute_across_clock_changes_as_fresh_lookups_do() {
        // The offset remembered for an hour must never leak into the hour of a change: read
        // every minute (and the seconds around the changes) of the days clocks change, in
        // order and back and forth, with one parser, and compare with the zone's rules.
        for (tz, days) in [
            (chrono_tz::America::New_York, ["2018-03-11", "2018-11-04"]),
            (
                chrono_tz::Australia::Lord_Howe,
                ["2018-04-01", "2018-10-07"],
            ),
            (chrono_tz::Europe::London, ["2018-03-25", "2018-10-28"]),
            // Clocks went from UTC+1:34:52 to UTC+2 at 00:01: the skipped 25 minutes lie
            // inside the hour, whose first and last second differ in their offset.
            (chrono_tz::Europe::Athens, ["1916-07-27", "1916-07-28"]),
        ] {
            let mut texts = Vec::new();
            for day in days {
                for minute in 0..24 * 60 {
                    texts.push(format!("{day}T{:02}:{:02}:00", minute / 60, minute % 60));
                }
                for hour in 0..24 {
                    for second in [0, 1, 59] {
                        texts.push(format!("{day} {hour:02}:59:{second:02}"));
                    }
                }
            }
            let fresh = |t: &str| TimestampParser::new(tz, None).resolve(fast_naive(t).unwrap());
            let mut one = TimestampParser::new(tz, None);
            let mut zigzag = texts.clone();
            zigzag.sort_by_key(|t| (t.len() % 7, t.clone()));
            for t in texts.iter().chain(&zigzag) {
                assert_eq!(one.parse(t), Some(fresh(t)), "{t} in {tz}");
            }
        }
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

    #[test]
    fn an_offset_of_whole_hours_after_fractional_seconds_is_read() {
        // Found by `timestamps_with_an_offset_read_back_as_the_same_instant`: `±HH` was only
        // recognised right after `:SS`, so this was not read at all.
        let mut p = TimestampParser::new(chrono_tz::America::New_York, None);
        assert_eq!(p.parse("1970-01-01T00:00:00.000+00"), Some(0));
        assert_eq!(
            p.parse("2018-06-26T10:58:54.123-04"),
            Some(utc("2018-06-26T14:58:54.123Z"))
        );
    }

    #[test]
    fn a_fraction_lost_to_float_rounding_is_still_not_an_integer() {
        // Found by `decimals_with_a_fraction_are_not_integers` (minimal failing input).
        assert_eq!(parse_i64("2251799813685248.81"), None);
        assert_eq!(parse_i64("4503599627370496.5"), None);
        assert_eq!(parse_i64("1.0000000000000001"), None);
    }

    mod properties {
        //! Property tests: text is built from random values by hand or with chrono's
        //! formatter, and what the parsers read back is checked against the value it was
        //! built from, never against the parsers' own arithmetic.
        use super::super::*;
        use chrono::{FixedOffset, SecondsFormat};
        use proptest::prelude::*;

        const ZONES: [Tz; 5] = [
            chrono_tz::America::New_York,
            chrono_tz::America::Los_Angeles,
            chrono_tz::Australia::Lord_Howe,
            chrono_tz::Europe::London,
            chrono_tz::UTC,
        ];

        /// 1900-01-01T00:00:00Z .. 2200-01-01T00:00:00Z, in microseconds.
        const FROM_US: i64 = -2_208_988_800_000_000;
        const TO_US: i64 = 7_258_118_400_000_000;

        const SECOND: i64 = 1_000_000;
        const MINUTE: i64 = 60 * SECOND;

        /// Local (floating) forms the parser documents, with the precision each writes.
        const LOCAL_FORMS: &[(&str, i64)] = &[
            // Socrata's floating timestamp.
            ("%Y-%m-%dT%H:%M:%S%.3f", 1_000),
            ("%Y-%m-%dT%H:%M:%S%.6f", 1),
            ("%Y-%m-%dT%H:%M:%S", SECOND),
            ("%Y-%m-%d %H:%M:%S", SECOND),
            ("%Y-%m-%d %H:%M:%S%.3f", 1_000),
            ("%Y-%m-%dT%H:%M", MINUTE),
            ("%Y-%m-%d %H:%M", MINUTE),
            ("%m/%d/%Y %I:%M:%S %p", SECOND),
            ("%m/%d/%Y %I:%M %p", MINUTE),
            ("%m/%d/%Y %H:%M:%S", SECOND),
            ("%m/%d/%Y %H:%M", MINUTE),
        ];

        /// The date-and-time part of the forms written with an explicit offset.
        const OFFSET_BODIES: &[(&str, i64)] = &[
            ("%Y-%m-%dT%H:%M:%S", SECOND),
            ("%Y-%m-%dT%H:%M:%S%.3f", 1_000),
            ("%Y-%m-%dT%H:%M:%S%.6f", 1),
            ("%Y-%m-%d %H:%M:%S", SECOND),
            ("%Y-%m-%d %H:%M:%S%.3f", 1_000),
            ("%Y-%m-%dT%H:%M", MINUTE),
            ("%Y-%m-%d %H:%M", MINUTE),
        ];

        #[derive(Debug, Clone, Copy)]
        enum OffsetStyle {
            /// `+05:30`
            Colon,
            /// `+0530`
            Compact,
            /// `+05` (whole hours only)
            Hours,
            /// `Z` (UTC only)
            Zulu,
        }

        fn zones() -> impl Strategy<Value = Tz> {
            proptest::sample::select(ZONES.to_vec())
        }

        fn wall_clock(us: i64, tz: Tz) -> NaiveDateTime {
            DateTime::from_timestamp_micros(us)
                .expect("in range")
                .with_timezone(&tz)
                .naive_local()
        }

        /// An offset as it is written after a time, by hand.
        fn offset_text(minutes: i32, style: OffsetStyle) -> String {
            let sign = if minutes < 0 { '-' } else { '+' };
            let (h, m) = (minutes.abs() / 60, minutes.abs() % 60);
            match style {
                OffsetStyle::Colon => format!("{sign}{h:02}:{m:02}"),
                OffsetStyle::Compact => format!("{sign}{h:02}{m:02}"),
                OffsetStyle::Hours => format!("{sign}{h:02}"),
                OffsetStyle::Zulu => "Z".to_string(),
            }
        }

        /// A random instant written with an explicit offset, and the instant that text means
        /// (the random one cut to the precision written).
        fn offset_timestamp() -> impl Strategy<Value = (String, i64)> {
            (
                FROM_US..TO_US,
                0..OFFSET_BODIES.len() + 1,
                -14 * 60..=14 * 60,
                prop_oneof![
                    Just(OffsetStyle::Colon),
                    Just(OffsetStyle::Compact),
                    Just(OffsetStyle::Hours),
                    Just(OffsetStyle::Zulu),
                ],
            )
                .prop_map(|(us, form, minutes, style)| {
                    let minutes = match style {
                        OffsetStyle::Hours => minutes / 60 * 60,
                        OffsetStyle::Zulu => 0,
                        _ => minutes,
                    };
                    let offset = FixedOffset::east_opt(minutes * 60).expect("within a day");
                    if form == OFFSET_BODIES.len() {
                        // RFC 3339 as chrono writes it.
                        let at = DateTime::from_timestamp_micros(us)
                            .unwrap()
                            .with_timezone(&offset);
                        let text = at.to_rfc3339_opts(
                            SecondsFormat::Micros,
                            matches!(style, OffsetStyle::Zulu),
                        );
                        return (text, us);
                    }
                    let (body, precision) = OFFSET_BODIES[form];
                    let us = us.div_euclid(precision) * precision;
                    let local = DateTime::from_timestamp_micros(us).unwrap().naive_utc()
                        + TimeDelta::minutes(i64::from(minutes));
                    let text = format!("{}{}", local.format(body), offset_text(minutes, style));
                    (text, us)
                })
        }

        /// A random instant written as a local (floating) time in one of the documented forms,
        /// and the instant, cut to the precision written.
        fn local_timestamp(tz: Tz) -> impl Strategy<Value = (String, i64)> {
            (FROM_US..TO_US, 0..LOCAL_FORMS.len()).prop_map(move |(us, form)| {
                let (fmt, precision) = LOCAL_FORMS[form];
                let us = us.div_euclid(precision) * precision;
                (wall_clock(us, tz).format(fmt).to_string(), us)
            })
        }

        fn any_text() -> impl Strategy<Value = String> {
            prop_oneof![
                "\\PC*",
                proptest::collection::vec(any::<u8>(), 0..40)
                    .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
            ]
        }

        /// A valid timestamp with one to three characters inserted, replaced or removed.
        fn near_miss_timestamp() -> impl Strategy<Value = String> {
            let edit = (
                any::<proptest::sample::Index>(),
                0..3u8,
                proptest::sample::select(vec![
                    '0', '9', '-', '+', ':', '/', '.', ' ', 'T', 'Z', 'z', 'A', 'P', 'M', 'é',
                    '未', '\u{0301}',
                ]),
            );
            (
                prop_oneof![
                    offset_timestamp().prop_map(|(t, _)| t),
                    local_timestamp(chrono_tz::UTC).prop_map(|(t, _)| t),
                ],
                proptest::collection::vec(edit, 1..4),
            )
                .prop_map(|(text, edits)| {
                    let mut chars: Vec<char> = text.chars().collect();
                    for (at, op, c) in edits {
                        let i = at.index(chars.len() + 1);
                        match op {
                            0 => chars.insert(i, c),
                            1 if i < chars.len() => chars[i] = c,
                            _ if i < chars.len() => {
                                chars.remove(i);
                            }
                            _ => chars.push(c),
                        }
                    }
                    chars.into_iter().collect()
                })
        }

        /// `n` with commas between groups of three digits, by hand.
        fn grouped(n: u64) -> String {
            let digits = n.to_string();
            let mut out = String::new();
            for (i, c) in digits.chars().enumerate() {
                if i > 0 && (digits.len() - i).is_multiple_of(3) {
                    out.push(',');
                }
                out.push(c);
            }
            out
        }

        fn padding() -> impl Strategy<Value = (&'static str, &'static str)> {
            (
                proptest::sample::select(vec!["", " ", "  ", "\t"]),
                proptest::sample::select(vec!["", " ", "\r", "\n"]),
            )
        }

        /// Integers: mostly spread over every magnitude, with the edges.
        fn integers() -> impl Strategy<Value = i64> {
            prop_oneof![
                any::<i64>(),
                (0u32..19, any::<bool>()).prop_flat_map(|(digits, negative)| {
                    let top = 10i64.saturating_pow(digits);
                    (0..top.max(1)).prop_map(move |n| if negative { -n } else { n })
                }),
                Just(i64::MIN),
                Just(i64::MAX),
                Just(0),
            ]
        }

        fn finite_f64() -> impl Strategy<Value = f64> {
            use proptest::num::f64::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
            prop_oneof![
                POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO,
                (-1.0e16..1.0e16f64),
                (-1.0e6..1.0e6f64),
            ]
        }

        #[test]
        fn the_fast_forms_take_the_common_texts() {
            let t = |y, mo, d, h, mi, s, ns| {
                NaiveDate::from_ymd_opt(y, mo, d)
                    .unwrap()
                    .and_hms_nano_opt(h, mi, s, ns)
                    .unwrap()
            };
            assert_eq!(
                fast_naive("2018-06-26T10:58:54.123"),
                Some(t(2018, 6, 26, 10, 58, 54, 123_000_000))
            );
            assert_eq!(
                fast_naive("2018-06-26 10:58:54"),
                Some(t(2018, 6, 26, 10, 58, 54, 0))
            );
            assert_eq!(
                fast_naive("06/26/2018 12:05:00 AM"),
                Some(t(2018, 6, 26, 0, 5, 0, 0))
            );
            assert_eq!(
                fast_naive("06/26/2018 12:05:00 PM"),
                Some(t(2018, 6, 26, 12, 5, 0, 0))
            );
            assert_eq!(
                fast_naive("06/26/2018 01:05:00 PM"),
                Some(t(2018, 6, 26, 13, 5, 0, 0))
            );
            assert_eq!(
                fast_offset("2018-06-26T10:58:54.5Z"),
                Some(
                    t(2018, 6, 26, 10, 58, 54, 500_000_000)
                        .and_utc()
                        .timestamp_micros()
                )
            );
            assert_eq!(
                fast_offset("2018-06-26 10:58:54-04:30"),
                Some(t(2018, 6, 26, 15, 28, 54, 0).and_utc().timestamp_micros())
            );
            for other in [
                "2018-06-26T10:58Z",
                "06/26/2018 01:05:00 PMZ",
                "2018-06-26T10:58:54+24:00",
            ] {
                assert_eq!(fast_offset(other), None, "{other}");
            }
            for other in [
                "2018-06-26T10:58:54Z",
                "2018-02-30T10:58:54",
                "06/26/2018 13:05:00 PM",
                "06/26/2018 00:05:00 AM",
                "6/26/2018 01:05:00 PM",
                "2018-06-26T10:58:60",
            ] {
                assert_eq!(fast_naive(other), None, "{other}");
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn the_fast_forms_read_as_chrono_reads_them(
                text in prop_oneof![
                    "[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,11})?",
                    "[0-9]{2}/[0-9]{2}/[0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} [AaPp][Mm]",
                    "(0[1-9]|1[0-2])/(0[1-9]|[12][0-9]|3[01])/20[0-9]{2} (0[0-9]|1[0-3]):[0-5][0-9]:[0-6][0-9] [AP]M",
                    "20[0-9]{2}-(0[0-9]|1[0-3])-(0[0-9]|[123][0-9])T([01][0-9]|2[0-5]):[0-5][0-9]:[0-6][0-9](\\.[0-9]{1,9})?",
                ],
            ) {
                let chrono = NAIVE_FORMATS
                    .iter()
                    .find_map(|f| NaiveDateTime::parse_from_str(&text, f).ok());
                if let Some(fast) = fast_naive(&text) {
                    prop_assert_eq!(Some(fast), chrono, "{}", text);
                }
            }

            #[test]
            fn trim_is_strs_trim(text in any_text(), pad in "[ \t\n\r\u{0b}\u{0c}\u{a0}\u{3000}x]{0,2}") {
                let padded = format!("{pad}{text}{pad}");
                prop_assert_eq!(trim(&padded), padded.trim());
                prop_assert_eq!(is_blank(&padded), padded.trim().is_empty());
            }

            #[test]
            fn the_fast_offset_form_reads_as_chrono_reads_it(
                text in "20[0-9]{2}-(0[0-9]|1[0-3])-(0[0-9]|[123][0-9])[T ]([01][0-9]|2[0-5]):[0-5][0-9]:[0-6][0-9](\\.[0-9]{1,9})?(Z|z|[+-]([01][0-9]|2[0-5]):[0-6][0-9])",
            ) {
                let zulu = text.strip_suffix(['Z', 'z']).map(|h| format!("{h}+00:00"));
                let chrono = OFFSET_FORMATS
                    .iter()
                    .find_map(|f| DateTime::parse_from_str(zulu.as_deref().unwrap_or(&text), f).ok())
                    .map(|dt| dt.with_timezone(&Utc).timestamp_micros());
                if let Some(fast) = fast_offset(&text) {
                    prop_assert_eq!(Some(fast), chrono, "{}", text);
                }
            }

            #[test]
            fn timestamps_with_an_offset_read_back_as_the_same_instant(
                (text, us) in offset_timestamp(),
                tz in zones(),
                (lead, trail) in padding(),
            ) {
                // The column's zone does not matter when the text carries an offset.
                let mut p = TimestampParser::new(tz, None);
                prop_assert_eq!(p.parse(&format!("{lead}{text}{trail}")), Some(us), "{:?}", text);
            }

            #[test]
            fn local_timestamps_read_back_as_the_same_instant_in_the_column_zone(
                (tz, (text, us)) in zones().prop_flat_map(|tz| (Just(tz), local_timestamp(tz))),
            ) {
                let mut p = TimestampParser::new(tz, None);
                let got = p.parse(&text);
                prop_assert!(got.is_some(), "{:?} in {} was not read", text, tz);
                let got = got.unwrap();
                if got != us {
                    // Only a wall-clock time that happens twice (clocks going back) may be
                    // read as another instant, and then as the earlier of the two.
                    prop_assert!(got < us && us - got <= 60 * MINUTE, "{:?} in {}: {} vs {}", text, tz, got, us);
                    prop_assert_eq!(wall_clock(got, tz), wall_clock(us, tz), "{:?} in {}", text, tz);
                }
            }

            #[test]
            fn a_bare_date_is_local_midnight(
                us in FROM_US..TO_US,
                tz in zones(),
                us_style in any::<bool>(),
            ) {
                let day = wall_clock(us, tz).date();
                let text = day.format(if us_style { "%m/%d/%Y" } else { "%Y-%m-%d" }).to_string();
                let got = TimestampParser::new(tz, None).parse(&text);
                prop_assert!(got.is_some(), "{:?}", text);
                let wall = wall_clock(got.unwrap(), tz);
                // Midnight, or 01:00 where midnight is skipped by a clock change.
                prop_assert_eq!(wall.date(), day, "{:?}", text);
                prop_assert!(
                    wall.time() == chrono::NaiveTime::MIN
                        || wall.time() == chrono::NaiveTime::from_hms_opt(1, 0, 0).unwrap(),
                    "{:?} read as {}", text, wall
                );
            }

            #[test]
            fn wall_clock_times_near_clock_changes_follow_the_documented_rule(
                year in 1990i32..=2030,
                tz in proptest::sample::select(ZONES[..4].to_vec()),
                which in any::<proptest::sample::Index>(),
                delta_secs in -150 * 60i64..=150 * 60,
                form in 0..LOCAL_FORMS.len(),
            ) {
                let offset_at = |secs: i64| {
                    use chrono::Offset as _;
                    DateTime::from_timestamp(secs, 0)
                        .unwrap()
                        .with_timezone(&tz)
                        .offset()
                        .fix()
                        .local_minus_utc() as i64
                };
                // The instants in `year` at which the zone's offset changes, by bisection
                // between month starts.
                let month_start = |m: u32| {
                    let (y, m) = if m == 13 { (year + 1, 1) } else { (year, m) };
                    NaiveDate::from_ymd_opt(y, m, 1).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp()
                };
                let mut changes = Vec::new();
                for m in 1..=12 {
                    let (mut lo, mut hi) = (month_start(m), month_start(m + 1));
                    let before = offset_at(lo);
                    if offset_at(hi) == before {
                        continue;
                    }
                    while hi - lo > 1 {
                        let mid = lo + (hi - lo) / 2;
                        if offset_at(mid) == before { lo = mid } else { hi = mid }
                    }
                    changes.push((hi, before, offset_at(hi)));
                }
                prop_assume!(!changes.is_empty());
                let (change, before, after) = changes[which.index(changes.len())];
                // A wall-clock time within 2½ hours of the change (as read before it).
                let wall = change + before + delta_secs;
                let (fmt, precision) = LOCAL_FORMS[form];
                let step = precision / SECOND;
                let wall = if step > 1 { wall.div_euclid(step) * step } else { wall };
                // The documented rule, worked out from the two offsets alone: before the
                // change's wall-clock time, the old offset; a time that happens twice is the
                // first (old offset); a skipped time is read an hour later (new offset).
                let expected = if wall < change + before {
                    wall - before
                } else if wall >= change + after {
                    wall - after
                } else {
                    wall + 3600 - after
                };
                let naive = DateTime::from_timestamp(wall, 0).unwrap().naive_utc();
                let text = naive.format(fmt).to_string();
                let got = TimestampParser::new(tz, None).parse(&text);
                prop_assert_eq!(got, Some(expected * SECOND), "{:?} in {} (change at {}: {} -> {})", text, tz, change, before, after);
            }

            #[test]
            fn one_parser_reads_a_column_of_mixed_forms_as_fresh_parsers_do(
                tz in zones(),
                texts in proptest::collection::vec(
                    prop_oneof![
                        offset_timestamp().prop_map(|(t, _)| t),
                        local_timestamp(chrono_tz::UTC).prop_map(|(t, _)| t),
                        (FROM_US..TO_US).prop_map(|us| {
                            wall_clock(us, chrono_tz::UTC).date().format("%m/%d/%Y").to_string()
                        }),
                        near_miss_timestamp(),
                    ],
                    1..16,
                ),
            ) {
                let mut column = TimestampParser::new(tz, None);
                for text in &texts {
                    let fresh = TimestampParser::new(tz, None).parse(text);
                    prop_assert_eq!(column.parse(text), fresh, "{:?}", text);
                }
            }

            #[test]
            fn bare_integers_are_unix_times_by_their_digit_count(
                digits in "-?[0-9]{1,18}",
                tz in zones(),
            ) {
                let got = TimestampParser::new(tz, None).parse(&digits);
                let n: i64 = digits.parse().unwrap();
                let expected = match digits.trim_start_matches('-').len() {
                    9 | 10 => DateTime::from_timestamp(n, 0),
                    12 | 13 => DateTime::from_timestamp_millis(n),
                    _ => None,
                };
                prop_assert_eq!(got, expected.map(|t| t.timestamp_micros()), "{:?}", digits);
            }

            #[test]
            fn explicit_epoch_units_take_any_integer_in_range(n in integers(), tz in zones()) {
                let ms = TimestampParser::new(tz, Some("epoch_ms")).parse(&n.to_string());
                prop_assert_eq!(ms, DateTime::from_timestamp_millis(n).map(|t| t.timestamp_micros()));
                let s = TimestampParser::new(tz, Some("epoch_s")).parse(&n.to_string());
                prop_assert_eq!(s, DateTime::from_timestamp(n, 0).map(|t| t.timestamp_micros()));
            }

            #[test]
            fn timestamp_parser_never_panics_on_any_text(
                text in prop_oneof![any_text(), near_miss_timestamp()],
                tz in zones(),
                format in proptest::sample::select(vec![
                    None,
                    Some("epoch_ms"),
                    Some("epoch_s"),
                    Some("%Y-%m-%dT%H:%M:%S%z"),
                    Some("%d.%m.%Y %H:%M"),
                    Some("%Y%m%d"),
                ]),
            ) {
                let got = TimestampParser::new(tz, format).parse(&text);
                if let Some(us) = got {
                    prop_assert!(DateTime::from_timestamp_micros(us).is_some());
                    prop_assert!(text.bytes().any(|b| b.is_ascii_digit()), "{:?} read as {}", text, us);
                }
                // Dates never panic either.
                let _ = parse_date(&text);
            }

            #[test]
            fn integers_read_back_plain(n in integers(), (lead, trail) in padding()) {
                let text = format!("{lead}{n}{trail}");
                prop_assert_eq!(parse_i64(&text), Some(n));
                prop_assert_eq!(parse_f64(&text), Some(n as f64));
            }

            #[test]
            fn integers_read_back_with_thousands_separators_and_dollars(
                n in integers(),
                dollar in any::<bool>(),
                plus in any::<bool>(),
                zero_cents in any::<bool>(),
            ) {
                let sign = if n < 0 { "-" } else if plus { "+" } else { "" };
                let text = format!(
                    "{sign}{}{}{}",
                    if dollar { "$" } else { "" },
                    grouped(n.unsigned_abs()),
                    if zero_cents { ".00" } else { "" },
                );
                prop_assert_eq!(parse_f64(&text), Some(n as f64), "{:?}", text);
                let got = parse_i64(&text);
                // Within the range a float holds exactly the value is read; past it the
                // text may be refused, but is never read as another integer.
                if n.unsigned_abs() < 9_000_000_000_000_000 {
                    prop_assert_eq!(got, Some(n), "{:?}", text);
                } else {
                    prop_assert!(got.is_none() || got == Some(n), "{:?} read as {:?}", text, got);
                }
            }

            #[test]
            fn finite_floats_read_back_exactly(
                f in finite_f64(),
                form in 0..4usize,
                (lead, trail) in padding(),
            ) {
                let text = match form {
                    0 => format!("{f}"),
                    1 => format!("{f:?}"),
                    2 => format!("{f:e}"),
                    _ => format!("{f:E}"),
                };
                let got = parse_f64(&format!("{lead}{text}{trail}"));
                prop_assert_eq!(got.map(f64::to_bits), Some(f.to_bits()), "{:?}", text);
            }

            #[test]
            fn amounts_read_back_with_separators_dollars_and_cents(
                whole in 0u64..1_000_000_000_000_000,
                frac in "[0-9]{1,6}",
                negative in any::<bool>(),
                dollar in any::<bool>(),
            ) {
                let sign = if negative { "-" } else { "" };
                let text = format!(
                    "{sign}{}{}.{frac}",
                    if dollar { "$" } else { "" },
                    grouped(whole)
                );
                // The same amount in the plain form the standard library reads.
                let plain: f64 = format!("{sign}{whole}.{frac}").parse().unwrap();
                prop_assert_eq!(parse_f64(&text).map(f64::to_bits), Some(plain.to_bits()), "{:?}", text);
            }

            #[test]
            fn digits_grouped_other_than_in_threes_are_not_numbers(
                first in "[0-9]{0,5}",
                rest in proptest::collection::vec("[0-9]{0,5}", 1..5),
                frac in proptest::option::of("[0-9]{1,3}"),
                sign in proptest::sample::select(vec!["", "-", "+"]),
                dollar in any::<bool>(),
            ) {
                let well_grouped = (1..=3).contains(&first.len()) && rest.iter().all(|g| g.len() == 3);
                prop_assume!(!well_grouped);
                let mut text = format!("{sign}{}{first}", if dollar { "$" } else { "" });
                for g in &rest {
                    text.push(',');
                    text.push_str(g);
                }
                if let Some(f) = frac {
                    text.push('.');
                    text.push_str(&f);
                }
                prop_assert_eq!(parse_f64(&text), None, "{:?}", text);
                prop_assert_eq!(parse_i64(&text), None, "{:?}", text);
            }

            #[test]
            fn number_parsers_never_panic_and_agree_with_each_other(
                text in prop_oneof![
                    any_text(),
                    "[-+ ]?\\$?[0-9,]{0,14}(\\.[0-9,]{0,4})?([eE][-+]?[0-9]{1,3})? ?",
                ],
            ) {
                let f = parse_f64(&text);
                if let Some(f) = f {
                    prop_assert!(f.is_finite(), "{:?} read as {}", text, f);
                }
                if let Some(n) = parse_i64(&text) {
                    prop_assert_eq!(f, Some(n as f64), "{:?} read as the integer {}", text, n);
                }
                let _ = parse_bool(&text);
            }

            /// Also past what a float can tell apart from the integer (see
            /// `a_fraction_lost_to_float_rounding_is_still_not_an_integer`).
            #[test]
            fn decimals_with_a_fraction_are_not_integers(
                whole in 0u64..9_000_000_000_000_000,
                frac in "[0-9]{0,6}[1-9]",
                negative in any::<bool>(),
            ) {
                let text = format!("{}{whole}.{frac}", if negative { "-" } else { "" });
                prop_assert_eq!(parse_i64(&text), None, "{:?}", text);
            }
        }
    }
}
