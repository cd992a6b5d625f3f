//! The dataset every emulator serves: San Francisco Fire Department calls for service.
//!
//! The rows are the real DataSF export kept in `fixtures/` (7,704 rows, 34 columns, unique key
//! `RowID`). The CSV is parsed once per process; [`Dataset::sf_fire`] hands out clones. Column
//! types are inferred from the values, and cells are stored in one canonical text form per type
//! (timestamps as floating ISO `YYYY-MM-DDTHH:MM:SS` in the source's local time,
//! America/Los_Angeles), so each emulator renders them the way its portal does.
//!
//! Besides the user columns, every row carries the system metadata portals keep: a stable row
//! number (`sid`, CKAN's `_id`, ArcGIS' `OBJECTID`), Socrata's opaque `:id`, and `created_at` /
//! `updated_at` epochs. `updated_at` takes 97 distinct values, so it is not unique: a client
//! that pages ordered by it alone meets ties. Tests mutate the dataset between or during runs
//! ([`Dataset::change_rows`], [`Dataset::delete_rows`]) through a [`SharedDataset`].

use std::sync::{Arc, OnceLock, RwLock};

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

const SF_FIRE_CSV: &str = include_str!("../fixtures/fire_department_calls_2016.csv");

/// The time zone of the source's floating timestamps.
pub const SOURCE_TIME_ZONE: Tz = chrono_tz::America::Los_Angeles;

/// Creation time of every row and base of the `updated_at` spread: 2017-01-08T00:00:00Z.
pub const BASE_EPOCH: i64 = 1_483_833_600;

/// A dataset shared between a server and the test that drives it.
pub type SharedDataset = Arc<RwLock<Dataset>>;

/// The type of a column, inferred from its non-empty values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnKind {
    Text,
    Number,
    /// `MM/DD/YYYY hh:mm:ss AM` or, with [`Column::date_only`], `MM/DD/YYYY` (midnight).
    Timestamp,
    Boolean,
    /// `(lat, lon)`.
    Point,
}

/// One user column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The CSV header, e.g. `Received DtTm`.
    pub label: String,
    /// The API field name: lowercase, runs of other characters turned into `_`, e.g.
    /// `received_dttm`.
    pub field: String,
    pub kind: ColumnKind,
    /// A [`ColumnKind::Timestamp`] whose values are all dates without a time of day.
    pub date_only: bool,
    /// A [`ColumnKind::Number`] whose values are all integers.
    pub integer: bool,
}

/// One row: system metadata and one canonical cell per column (`None` for an empty cell).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Stable row number, from 1 in file order.
    pub sid: u64,
    /// Socrata-style opaque row identifier (`:id`), e.g. `row-k3x9~p2am~7fqd`.
    pub id: String,
    /// Epoch seconds.
    pub created_at: i64,
    /// Epoch seconds.
    pub updated_at: i64,
    pub values: Vec<Option<String>>,
}

/// A typed cell, for comparing what a client fetched with what the dataset holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Number(f64),
    /// Floating local time (America/Los_Angeles).
    Timestamp(NaiveDateTime),
    Boolean(bool),
    Point {
        lat: f64,
        lon: f64,
    },
}

/// A table with its columns, rows and modification state.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    columns: Vec<Column>,
    rows: Vec<Row>,
    key: usize,
    modified_at: i64,
    mutation_version: u64,
}

impl Row {
    /// The canonical text of the cell in column `index`.
    pub fn get(&self, index: usize) -> Option<&str> {
        self.values.get(index)?.as_deref()
    }

    /// The cell in column `index` as a floating timestamp.
    pub fn timestamp(&self, index: usize) -> Option<NaiveDateTime> {
        self.get(index).and_then(parse_canonical_timestamp)
    }

    /// The cell in column `index` as `(lat, lon)`.
    pub fn point(&self, index: usize) -> Option<(f64, f64)> {
        self.get(index).and_then(parse_point)
    }
}

impl Dataset {
    /// The San Francisco Fire Department calls (parsed once per process, then cloned).
    pub fn sf_fire() -> Dataset {
        static PARSED: OnceLock<Dataset> = OnceLock::new();
        PARSED
            .get_or_init(|| {
                Dataset::from_csv(SF_FIRE_CSV, "RowID").expect("the bundled CSV is valid")
            })
            .clone()
    }

    /// Parses a CSV with a header row; `key_label` names the column with unique values.
    pub fn from_csv(text: &str, key_label: &str) -> Result<Dataset, String> {
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let labels: Vec<String> = reader
            .headers()
            .map_err(|e| e.to_string())?
            .iter()
            .map(str::to_owned)
            .collect();
        let mut cells: Vec<Vec<Option<String>>> = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| e.to_string())?;
            cells.push(
                record
                    .iter()
                    .map(|v| (!v.is_empty()).then(|| v.to_owned()))
                    .collect(),
            );
        }
        let columns: Vec<Column> = labels
            .iter()
            .enumerate()
            .map(|(i, label)| infer_column(label, cells.iter().filter_map(|r| r[i].as_deref())))
            .collect();
        let key = labels
            .iter()
            .position(|l| l == key_label)
            .ok_or_else(|| format!("no key column {key_label:?}"))?;
        let rows: Vec<Row> = cells
            .into_iter()
            .enumerate()
            .map(|(i, values)| {
                let sid = i as u64 + 1;
                let values = values
                    .into_iter()
                    .zip(&columns)
                    .map(|(v, c)| v.map(|v| canonical(c.kind, &v)))
                    .collect();
                Row {
                    sid,
                    id: socrata_row_id(sid),
                    created_at: BASE_EPOCH,
                    updated_at: BASE_EPOCH + (sid % 97) as i64 * 60,
                    values,
                }
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        if let Some(row) = rows.iter().find(|r| !seen.insert(r.get(key))) {
            return Err(format!("duplicate or empty key in row {}", row.sid));
        }
        let modified_at = rows
            .iter()
            .map(|r| r.updated_at)
            .max()
            .unwrap_or(BASE_EPOCH);
        Ok(Dataset {
            columns,
            rows,
            key,
            modified_at,
            mutation_version: 0,
        })
    }

    /// Wraps the dataset for sharing with a server.
    pub fn shared(self) -> SharedDataset {
        Arc::new(RwLock::new(self))
    }

    /// The first `n` rows only.
    pub fn subset(&self, n: usize) -> Dataset {
        let mut subset = self.clone();
        subset.rows.truncate(n);
        subset
    }

    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Index of the column with API field name `field`.
    pub fn column_index(&self, field: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.field == field)
    }

    /// Index of the column with CSV header `label`.
    pub fn label_index(&self, label: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.label == label)
    }

    /// Index of the unique key column.
    pub fn key_index(&self) -> usize {
        self.key
    }

    /// API field name of the unique key column (`rowid`).
    pub fn key_field(&self) -> &str {
        &self.columns[self.key].field
    }

    /// CSV header of the unique key column (`RowID`).
    pub fn key_label(&self) -> &str {
        &self.columns[self.key].label
    }

    /// The key of `row`.
    pub fn key_of<'a>(&self, row: &'a Row) -> &'a str {
        row.get(self.key).unwrap_or_default()
    }

    /// Epoch seconds of the last change to the rows (what portals publish as
    /// `rowsUpdatedAt`, `metadata_modified`, `data_processed`).
    pub fn modified_at(&self) -> i64 {
        self.modified_at
    }

    /// How many mutations have been applied.
    pub fn mutation_version(&self) -> u64 {
        self.mutation_version
    }

    /// An entity tag that changes with every mutation.
    pub fn etag(&self) -> String {
        format!(
            "\"{:x}-{}-{}\"",
            self.modified_at,
            self.mutation_version,
            self.rows.len()
        )
    }

    /// Changes every `every`-th row (sids divisible by `every`, so `every = 100` is 1 %):
    /// `Call Final Disposition` becomes `Changed <version>`, `Available DtTm` moves one minute
    /// later, and `updated_at` becomes `at_epoch`. Returns the keys of the changed rows.
    pub fn change_rows(&mut self, every: usize, at_epoch: i64) -> Vec<String> {
        let every = every.max(1) as u64;
        self.bump(at_epoch);
        let disposition = self.label_index("Call Final Disposition");
        let available = self.label_index("Available DtTm");
        let marker = format!("Changed {}", self.mutation_version);
        let mut keys = Vec::new();
        for row in self.rows.iter_mut().filter(|r| r.sid % every == 0) {
            if let Some(i) = disposition {
                row.values[i] = Some(marker.clone());
            }
            if let Some(i) = available
                && let Some(t) = row.timestamp(i)
            {
                row.values[i] = Some(format_timestamp(t + TimeDelta::minutes(1)));
            }
            row.updated_at = at_epoch;
            keys.push(row.get(self.key).unwrap_or_default().to_owned());
        }
        keys
    }

    /// Deletes every `every`-th row (sids divisible by `every`); returns their keys.
    pub fn delete_rows(&mut self, every: usize, at_epoch: i64) -> Vec<String> {
        let every = every.max(1) as u64;
        self.bump(at_epoch);
        let key = self.key;
        let (gone, kept): (Vec<Row>, Vec<Row>) = std::mem::take(&mut self.rows)
            .into_iter()
            .partition(|r| r.sid % every == 0);
        self.rows = kept;
        gone.iter()
            .map(|r| r.get(key).unwrap_or_default().to_owned())
            .collect()
    }

    fn bump(&mut self, at_epoch: i64) {
        self.mutation_version += 1;
        self.modified_at = self.modified_at.max(at_epoch);
    }

    /// The rows as CSV: original headers, canonical values.
    pub fn to_csv_string(&self) -> String {
        let mut writer = csv::Writer::from_writer(Vec::new());
        let write = |w: &mut csv::Writer<Vec<u8>>, record: Vec<&str>| {
            w.write_record(record).expect("writing to memory");
        };
        write(
            &mut writer,
            self.columns.iter().map(|c| c.label.as_str()).collect(),
        );
        for row in &self.rows {
            write(
                &mut writer,
                row.values
                    .iter()
                    .map(|v| v.as_deref().unwrap_or(""))
                    .collect(),
            );
        }
        String::from_utf8(writer.into_inner().expect("writing to memory")).expect("UTF-8 input")
    }

    /// The typed cell of `row` in column `index`.
    pub fn value(&self, row: &Row, index: usize) -> Option<Value> {
        let text = row.get(index)?;
        Some(match self.columns[index].kind {
            ColumnKind::Text => Value::Text(text.to_owned()),
            ColumnKind::Number => Value::Number(text.parse().ok()?),
            ColumnKind::Timestamp => Value::Timestamp(parse_canonical_timestamp(text)?),
            ColumnKind::Boolean => Value::Boolean(text == "true"),
            ColumnKind::Point => {
                let (lat, lon) = parse_point(text)?;
                Value::Point { lat, lon }
            }
        })
    }

    /// Every row as typed cells, in column order.
    pub fn typed_rows(&self) -> impl Iterator<Item = Vec<Option<Value>>> + '_ {
        self.rows.iter().map(|row| {
            (0..self.columns.len())
                .map(|i| self.value(row, i))
                .collect()
        })
    }
}

/// Turns a label into an API field name: `Neighborhood  District` → `neighborhood_district`.
pub fn field_name(label: &str) -> String {
    let mut out = String::new();
    for c in label.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_owned()
}

/// Parses `(lat, lon)`.
pub fn parse_point(text: &str) -> Option<(f64, f64)> {
    let inner = text.trim().strip_prefix('(')?.strip_suffix(')')?;
    let (lat, lon) = inner.split_once(',')?;
    Some((lat.trim().parse().ok()?, lon.trim().parse().ok()?))
}

/// Parses the canonical `YYYY-MM-DDTHH:MM:SS`.
pub fn parse_canonical_timestamp(text: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S").ok()
}

/// Formats the canonical `YYYY-MM-DDTHH:MM:SS`.
pub fn format_timestamp(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// The instant of a floating source time (the earlier one when clocks fall back, one hour
/// later when the time falls in the spring-forward gap).
pub fn local_to_utc(t: NaiveDateTime) -> DateTime<Utc> {
    SOURCE_TIME_ZONE
        .from_local_datetime(&t)
        .earliest()
        .or_else(|| {
            SOURCE_TIME_ZONE
                .from_local_datetime(&(t + TimeDelta::hours(1)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| t.and_utc())
}

/// A 64-bit mixing function (splitmix64), the source of every deterministic shuffle here.
pub(crate) fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn socrata_row_id(sid: u64) -> String {
    const ALPHABET: &[u8; 32] = b"23456789abcdefghijkmnpqrstuvwxyz";
    let mut bits = mix64(sid);
    let mut id = String::from("row-");
    for group in 0..3 {
        if group > 0 {
            id.push('~');
        }
        for _ in 0..4 {
            id.push(ALPHABET[(bits & 31) as usize] as char);
            bits >>= 5;
        }
    }
    id
}

/// Reads the source's `MM/DD/YYYY hh:mm:ss AM` or `MM/DD/YYYY`; the flag tells whether a time
/// of day was given.
fn parse_source_time(text: &str) -> Option<(NaiveDateTime, bool)> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = text.get(range)?;
        digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    if bytes.len() < 10 || bytes[2] != b'/' || bytes[5] != b'/' {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(number(6..10)? as i32, number(0..2)?, number(3..5)?)?;
    if bytes.len() == 10 {
        return Some((date.and_time(NaiveTime::MIN), false));
    }
    if bytes.len() != 22
        || bytes[10] != b' '
        || bytes[13] != b':'
        || bytes[16] != b':'
        || bytes[19] != b' '
    {
        return None;
    }
    let hour = number(11..13).filter(|h| (1..=12).contains(h))? % 12;
    let hour = match text.get(20..)? {
        "AM" => hour,
        "PM" => hour + 12,
        _ => return None,
    };
    let time = NaiveTime::from_hms_opt(hour, number(14..16)?, number(17..19)?)?;
    Some((date.and_time(time), true))
}

fn is_number(v: &str) -> bool {
    let digits = v.strip_prefix('-').unwrap_or(v);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, "0"));
    !int.is_empty()
        && !frac.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
}

fn infer_column<'a>(label: &str, values: impl Iterator<Item = &'a str> + Clone) -> Column {
    let all = |f: fn(&str) -> bool| values.clone().next().is_some() && values.clone().all(f);
    let (kind, date_only, integer) = if all(|v| parse_source_time(v).is_some()) {
        (
            ColumnKind::Timestamp,
            all(|v| parse_source_time(v).is_some_and(|(_, timed)| !timed)),
            false,
        )
    } else if all(is_number) {
        (ColumnKind::Number, false, all(|v| !v.contains('.')))
    } else if all(|v| v == "true" || v == "false") {
        (ColumnKind::Boolean, false, false)
    } else if all(|v| parse_point(v).is_some()) {
        (ColumnKind::Point, false, false)
    } else {
        (ColumnKind::Text, false, false)
    };
    Column {
        label: label.to_owned(),
        field: field_name(label),
        kind,
        date_only,
        integer,
    }
}

fn canonical(kind: ColumnKind, value: &str) -> String {
    match kind {
        ColumnKind::Timestamp => parse_source_time(value)
            .map(|(t, _)| format_timestamp(t))
            .unwrap_or_else(|| value.to_owned()),
        _ => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_follow_portal_conventions() {
        assert_eq!(
            field_name("Neighborhood  District"),
            "neighborhood_district"
        );
        assert_eq!(field_name("Received DtTm"), "received_dttm");
        assert_eq!(field_name("RowID"), "rowid");
        assert_eq!(
            field_name("Unit sequence in call dispatch"),
            "unit_sequence_in_call_dispatch"
        );
    }

    #[test]
    fn source_times_are_read_exactly() {
        let t = |s| parse_source_time(s).map(|(t, timed)| (format_timestamp(t), timed));
        assert_eq!(
            t("12/31/2016 11:57:56 PM"),
            Some(("2016-12-31T23:57:56".into(), true))
        );
        assert_eq!(
            t("01/01/2017 12:01:47 AM"),
            Some(("2017-01-01T00:01:47".into(), true))
        );
        assert_eq!(
            t("01/01/2017 12:01:47 PM"),
            Some(("2017-01-01T12:01:47".into(), true))
        );
        assert_eq!(t("12/31/2016"), Some(("2016-12-31T00:00:00".into(), false)));
        assert_eq!(t("13/31/2016"), None);
        assert_eq!(t("12/31/2016 13:00:00 PM"), None);
    }

    #[test]
    fn numbers_are_recognised_strictly() {
        assert!(is_number("94127") && is_number("-1.5") && !is_number("1e5") && !is_number("."));
    }
}
