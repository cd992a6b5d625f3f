//! Raw page → typed batch.

use crate::parse::{self, TIMESTAMP_FORMS, TimestampParser};
use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder, Date32Builder, Float64Builder,
    Int64Builder, StringArray, TimestampMicrosecondBuilder,
};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use chrono::NaiveDate;
use chrono_tz::Tz;
use goalpost_fetch::RawPage;
use goalpost_spec::{ColumnType, Partition, PartitionBy, TableSpec};
use indexmap::IndexMap;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// One value that does not fit its column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    /// "line 14" or "record 7".
    pub row: String,
    pub column: String,
    /// Field name at the source.
    pub field: String,
    /// The raw text; `None` when the value was missing.
    pub raw: Option<String>,
    pub expected: String,
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.raw {
            Some(raw) => write!(
                f,
                "{}: column {:?} (field {:?}): {:?} is not {}",
                self.row,
                self.column,
                self.field,
                truncate(raw, 80),
                self.expected
            ),
            None => write!(
                f,
                "{}: column {:?} (field {:?}) is empty; it is required",
                self.row, self.column, self.field
            ),
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error(
        "{origin}: field {field:?} (for column {column:?}) is not in the source; it has: {available}"
    )]
    MissingField {
        origin: String,
        column: String,
        field: String,
        available: String,
    },
}

/// A row that did not fit the table: where it was and every value that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Row index within the page.
    pub index: usize,
    pub problems: Vec<ValueError>,
}

impl Rejected {
    /// The problems as one line, for the quarantine's `reason`.
    pub fn reason(&self) -> String {
        self.problems
            .iter()
            .map(|p| match &p.raw {
                Some(raw) => format!(
                    "column {:?} (field {:?}): {:?} is not {}",
                    p.column,
                    p.field,
                    truncate(raw, 80),
                    p.expected
                ),
                None => format!(
                    "column {:?} (field {:?}) is empty; it is required",
                    p.column, p.field
                ),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// A typed page: the rows that fit the declared schema, and those that did not.
#[derive(Debug, Clone)]
pub struct Mapped {
    /// The good rows, in page order, with the table's schema.
    pub batch: RecordBatch,
    /// The index (within the page) of each good row.
    pub kept: Vec<usize>,
    pub rejected: Vec<Rejected>,
}

/// Type one raw page into the table's schema.
///
/// `fields` are the source's overrides of each column's `from`; `tz` is the pipeline's zone,
/// used for local timestamps unless the column names its own, and for a derived
/// month/year partition column. A row with a value that does not parse, or without a
/// required value, is rejected (and kept out of the batch) with every problem it has; the
/// other rows go on. A field missing from a page whose columns are complete is an error.
pub fn map_page(
    page: &RawPage,
    table: &TableSpec,
    fields: &IndexMap<String, String>,
    tz: Tz,
) -> Result<Mapped, MapError> {
    let rows = page.num_rows();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(table.columns.len() + 1);
    let mut problems: BTreeMap<usize, Vec<ValueError>> = BTreeMap::new();
    for (name, spec) in &table.columns {
        let name = name.get_ref();
        let field = fields
            .get(name)
            .or(spec.from.as_ref())
            .unwrap_or(name)
            .as_str();
        let raw: StringArray = match page.batch.column_by_name(field) {
            Some(col) => col.as_string::<i32>().clone(),
            None if page.complete_columns => {
                return Err(MapError::MissingField {
                    origin: page.origin.clone(),
                    column: name.clone(),
                    field: field.to_string(),
                    available: page
                        .batch
                        .schema()
                        .fields()
                        .iter()
                        .map(|f| format!("{:?}", f.name()))
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            // JSON sources leave out fields that are empty in every row of the page.
            None => StringArray::new_null(rows),
        };
        let raw = if table.missing.is_empty() {
            raw
        } else {
            raw.iter()
                .map(|v| v.filter(|v| !table.missing.iter().any(|m| m == v.trim())))
                .collect::<StringArray>()
        };
        let mut report = |i: usize, raw: Option<&str>, expected: &str| {
            problems.entry(i).or_default().push(ValueError {
                row: page.locate(i),
                column: name.clone(),
                field: field.to_string(),
                raw: raw.map(str::to_string),
                expected: expected.to_string(),
            });
        };
        if spec.required {
            for i in 0..rows {
                if raw.is_null(i) || parse::is_blank(raw.value(i)) {
                    report(i, None, "");
                }
            }
        }
        let tz = spec
            .tz
            .as_ref()
            .and_then(|z| z.get_ref().parse::<Tz>().ok())
            .unwrap_or(tz);
        let array: ArrayRef = match spec.kind {
            ColumnType::String => Arc::new(raw),
            ColumnType::Int64 => {
                let mut b = Int64Builder::with_capacity(rows);
                typed(&raw, &mut report, "an integer", parse::parse_i64, |v| {
                    b.append_option(v)
                });
                Arc::new(b.finish())
            }
            ColumnType::Float64 => {
                let mut b = Float64Builder::with_capacity(rows);
                typed(&raw, &mut report, "a number", parse::parse_f64, |v| {
                    b.append_option(v)
                });
                Arc::new(b.finish())
            }
            ColumnType::Bool => {
                let mut b = BooleanBuilder::with_capacity(rows);
                typed(
                    &raw,
                    &mut report,
                    "a boolean (true/false, yes/no, Y/N, 1/0)",
                    parse::parse_bool,
                    |v| b.append_option(v),
                );
                Arc::new(b.finish())
            }
            ColumnType::Date => {
                let mut b = Date32Builder::with_capacity(rows);
                let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
                let expected = "a date (YYYY-MM-DD, MM/DD/YYYY or Unix milliseconds)";
                typed(
                    &raw,
                    &mut report,
                    expected,
                    |s| {
                        match spec.format.as_deref() {
                            Some(f) => NaiveDate::parse_from_str(s.trim(), f).ok(),
                            // ArcGIS sends dates as Unix milliseconds: the local date of
                            // that instant.
                            None => parse::parse_date(s).or_else(|| {
                                let us = parse::epoch(s)?;
                                chrono::DateTime::from_timestamp_micros(us)
                                    .map(|t| t.with_timezone(&tz).date_naive())
                            }),
                        }
                        .and_then(|d| i32::try_from((d - epoch).num_days()).ok())
                    },
                    |v| b.append_option(v),
                );
                Arc::new(b.finish())
            }
            ColumnType::Timestamp => {
                let mut parser = TimestampParser::new(tz, spec.format.as_deref());
                let mut b = TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC");
                let expected = match &spec.format {
                    Some(f) => format!("a timestamp in the form {f:?}"),
                    None => format!("a timestamp ({TIMESTAMP_FORMS})"),
                };
                typed(
                    &raw,
                    &mut report,
                    &expected,
                    |s| parser.parse(s),
                    |v| b.append_option(v),
                );
                Arc::new(b.finish())
            }
        };
        columns.push(array);
    }
    if let Some(Partition::Derived { source, by, .. }) = table.partition() {
        let at = table
            .columns
            .get_index_of(source.as_str())
            .map(|i| columns[i].clone());
        columns.push(derived_partition(at.as_ref(), by, tz, rows));
    }
    // Invariant: one array per declared column (plus the derived partition column), each
    // with the page's row count and the declared type; required columns are empty only in
    // rejected rows, which are filtered out before the declared (non-null) schema applies.
    let schema = table.arrow_schema();
    if problems.is_empty() {
        return Ok(Mapped {
            batch: RecordBatch::try_new(schema, columns)
                .expect("mapped columns match the declared schema"),
            kept: (0..rows).collect(),
            rejected: Vec::new(),
        });
    }
    let keep = BooleanArray::from(
        (0..rows)
            .map(|i| !problems.contains_key(&i))
            .collect::<Vec<_>>(),
    );
    let columns = columns
        .iter()
        .map(|c| arrow::compute::filter(c, &keep))
        .collect::<Result<Vec<_>, _>>()
        .expect("a filter of the columns' own length");
    let batch =
        RecordBatch::try_new(schema, columns).expect("mapped columns match the declared schema");
    Ok(Mapped {
        batch,
        kept: (0..rows).filter(|i| !problems.contains_key(i)).collect(),
        rejected: problems
            .into_iter()
            .map(|(index, problems)| Rejected { index, problems })
            .collect(),
    })
}

/// The month (`YYYY-MM`) or year (`YYYY`) label of each row's timestamp or date, in `tz`.
fn derived_partition(at: Option<&ArrayRef>, by: PartitionBy, tz: Tz, rows: usize) -> ArrayRef {
    let fmt = match by {
        PartitionBy::Month => "%Y-%m",
        PartitionBy::Year => "%Y",
    };
    let mut out = arrow::array::StringBuilder::with_capacity(rows, rows * 7);
    let Some(at) = at else {
        return Arc::new(StringArray::new_null(rows));
    };
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    // Rows mostly come in time order: the last label is kept with the span of values that
    // share it (microseconds or days, half-open), so most rows need no time zone lookup.
    let mut last: Option<(i64, i64, String)> = None;
    for i in 0..rows {
        if at.is_null(i) {
            out.append_null();
            continue;
        }
        let (value, date) = match at.data_type() {
            DataType::Date32 => {
                let days = i64::from(at.as_primitive::<arrow::datatypes::Date32Type>().value(i));
                if let Some((lo, hi, label)) = &last
                    && (*lo..*hi).contains(&days)
                {
                    out.append_value(label);
                    continue;
                }
                (
                    days,
                    epoch.checked_add_signed(chrono::TimeDelta::days(days)),
                )
            }
            _ => {
                let us = at
                    .as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                    .value(i);
                if let Some((lo, hi, label)) = &last
                    && (*lo..*hi).contains(&us)
                {
                    out.append_value(label);
                    continue;
                }
                (
                    us,
                    chrono::DateTime::from_timestamp_micros(us)
                        .map(|t| t.with_timezone(&tz).date_naive()),
                )
            }
        };
        let Some(d) = date else {
            out.append_null();
            continue;
        };
        let label = d.format(fmt).to_string();
        out.append_value(&label);
        let span = match at.data_type() {
            DataType::Date32 => label_span_days(d, by, epoch),
            _ => label_span_micros(d, by, tz),
        };
        last = span
            .filter(|(lo, hi)| (*lo..*hi).contains(&value))
            .map(|(lo, hi)| (lo, hi, label));
    }
    Arc::new(out.finish())
}

/// The first day of the month (or year) holding `d`, and of the next one.
fn label_bounds(d: NaiveDate, by: PartitionBy) -> Option<(NaiveDate, NaiveDate)> {
    use chrono::Datelike;
    let start = match by {
        PartitionBy::Month => d.with_day(1)?,
        PartitionBy::Year => NaiveDate::from_ymd_opt(d.year(), 1, 1)?,
    };
    let end = match by {
        PartitionBy::Month => start.checked_add_months(chrono::Months::new(1))?,
        PartitionBy::Year => NaiveDate::from_ymd_opt(d.year() + 1, 1, 1)?,
    };
    Some((start, end))
}

/// Days since the epoch whose label is `d`'s.
fn label_span_days(d: NaiveDate, by: PartitionBy, epoch: NaiveDate) -> Option<(i64, i64)> {
    let (start, end) = label_bounds(d, by)?;
    Some(((start - epoch).num_days(), (end - epoch).num_days()))
}

/// The instants (microseconds) whose local date in `tz` has `d`'s label.
fn label_span_micros(d: NaiveDate, by: PartitionBy, tz: Tz) -> Option<(i64, i64)> {
    let (start, end) = label_bounds(d, by)?;
    goalpost_spec::period::local_days_span(tz, start, end)
}

/// A raw row as a JSON object of its fields in the source's order (nulls left out), for the
/// quarantine.
pub fn raw_row_json(page: &RawPage, i: usize) -> String {
    let schema = page.batch.schema();
    let mut out = String::from("{");
    for (f, col) in schema.fields().iter().zip(page.batch.columns()) {
        let col = col.as_string::<i32>();
        if col.is_valid(i) {
            if out.len() > 1 {
                out.push(',');
            }
            // Serialising a string cannot fail.
            out.push_str(&serde_json::to_string(f.name()).unwrap_or_default());
            out.push(':');
            out.push_str(&serde_json::to_string(col.value(i)).unwrap_or_default());
        }
    }
    out.push('}');
    out
}

/// Parse each non-empty value; empty text is a missing value.
fn typed<T>(
    raw: &StringArray,
    report: &mut impl FnMut(usize, Option<&str>, &str),
    expected: &str,
    mut parse: impl FnMut(&str) -> Option<T>,
    mut push: impl FnMut(Option<T>),
) {
    for i in 0..raw.len() {
        if raw.is_null(i) || parse::is_blank(raw.value(i)) {
            push(None);
            continue;
        }
        let s = raw.value(i);
        match parse(s) {
            Some(v) => push(Some(v)),
            None => {
                report(i, Some(s), expected);
                push(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use goalpost_fetch::RowOrigin;

    fn table() -> TableSpec {
        let text = r#"title = "t"
timezone = "UTC"
[[source]]
kind = "file"
path = "Cargo.toml"
[table]
name = "t"
time = "at"
[table.columns]
at = { from = "When", type = "timestamp" }
n = { from = "N", type = "int64", required = false }
label = { type = "string" }
"#;
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("t.toml");
        goalpost_spec::parse_pipeline(&path, text)
            .unwrap()
            .spec
            .table
    }

    fn page(columns: &[(&str, Vec<Option<&str>>)], complete: bool) -> RawPage {
        let schema = Schema::new(
            columns
                .iter()
                .map(|(n, _)| Field::new(*n, DataType::Utf8, true))
                .collect::<Vec<_>>(),
        );
        let arrays = columns
            .iter()
            .map(|(_, v)| Arc::new(StringArray::from(v.clone())) as ArrayRef)
            .collect();
        let rows = columns[0].1.len();
        RawPage {
            index: 0,
            origin: "in.csv".into(),
            complete_columns: complete,
            rows: RowOrigin::Lines((2..2 + rows as u64).collect()),
            batch: RecordBatch::try_new(Arc::new(schema), arrays).unwrap(),
        }
    }

    #[test]
    fn values_are_typed_and_renamed_per_source() {
        let p = page(
            &[
                (
                    "time",
                    vec![Some("2020-01-02T03:04:05Z"), Some("01/02/2020 03:04:05 AM")],
                ),
                ("N", vec![Some("7"), Some("")]),
                ("label", vec![Some("a"), Some("b")]),
            ],
            true,
        );
        let fields = IndexMap::from([("at".to_string(), "time".to_string())]);
        let b = map_page(&p, &table(), &fields, chrono_tz::UTC)
            .unwrap()
            .batch;
        let at = b
            .column(0)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(at.value(0), at.value(1));
        let n = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(n.value(0), 7);
        assert!(n.is_null(1), "an empty cell is missing");
    }

    #[test]
    fn bad_rows_are_rejected_with_every_problem_and_good_rows_go_on() {
        let p = page(
            &[
                (
                    "When",
                    vec![Some("2020-01-01"), Some("soon"), Some("2020-01-03")],
                ),
                ("N", vec![Some("1"), Some("x"), Some("3")]),
                ("label", vec![Some("a"), Some("b"), None]),
            ],
            true,
        );
        let m = map_page(&p, &table(), &IndexMap::new(), chrono_tz::UTC).unwrap();
        assert_eq!(m.batch.num_rows(), 1);
        assert_eq!(m.kept, [0]);
        assert_eq!(m.rejected.len(), 2);
        let second = &m.rejected[0];
        assert_eq!(second.index, 1);
        assert_eq!(second.problems.len(), 2);
        assert_eq!(second.problems[0].row, "line 3");
        let reason = second.reason();
        assert!(
            reason.contains(r#"column "at" (field "When"): "soon" is not a timestamp"#),
            "{reason}"
        );
        assert!(
            reason.contains(r#"column "n" (field "N"): "x" is not an integer"#),
            "{reason}"
        );
        assert_eq!(
            m.rejected[1].reason(),
            r#"column "label" (field "label") is empty; it is required"#
        );
        assert_eq!(
            raw_row_json(&p, 2),
            r#"{"When":"2020-01-03","N":"3"}"#,
            "nulls are left out of the raw row"
        );
    }

    #[test]
    fn declared_missing_markers_read_as_empty() {
        let mut t = table();
        t.missing = vec!["N/A".into(), "-".into()];
        let p = page(
            &[
                ("When", vec![Some("2020-01-01"), Some("2020-01-02")]),
                ("N", vec![Some(" N/A "), Some("-")]),
                ("label", vec![Some("a"), Some("N/A")]),
            ],
            true,
        );
        let m = map_page(&p, &t, &IndexMap::new(), chrono_tz::UTC).unwrap();
        assert_eq!(
            m.batch.num_rows(),
            1,
            "a required column given N/A is empty"
        );
        assert!(m.batch.column(1).is_null(0));
        assert_eq!(
            m.rejected[0].reason(),
            r#"column "label" (field "label") is empty; it is required"#
        );
    }

    #[test]
    fn a_date_given_as_unix_milliseconds_is_the_local_date_of_that_instant() {
        let text = r#"title = "t"
timezone = "America/Los_Angeles"
[[source]]
kind = "file"
path = "Cargo.toml"
[table]
name = "t"
[table.columns]
d = { type = "date" }
"#;
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("t.toml");
        let spec = goalpost_spec::parse_pipeline(&path, text).unwrap();
        // 2017-01-01T07:57:56Z is still 31 December 2016 in Los Angeles.
        let p = page(
            &[("d", vec![Some("1483257476000"), Some("2017-01-01")])],
            true,
        );
        let b = map_page(&p, &spec.spec.table, &IndexMap::new(), spec.tz)
            .unwrap()
            .batch;
        let d = b.column(0).as_primitive::<arrow::datatypes::Date32Type>();
        let day =
            |i| NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + chrono::Days::new(d.value(i) as u64);
        assert_eq!(day(0), NaiveDate::from_ymd_opt(2016, 12, 31).unwrap());
        assert_eq!(day(1), NaiveDate::from_ymd_opt(2017, 1, 1).unwrap());
    }

    #[test]
    fn a_month_partition_is_cut_in_local_time() {
        let text = r#"title = "t"
timezone = "America/New_York"
[[source]]
kind = "file"
path = "Cargo.toml"
[table]
name = "t"
partition = "month(at)"
[table.columns]
at = { type = "timestamp" }
"#;
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("t.toml");
        let spec = goalpost_spec::parse_pipeline(&path, text).unwrap();
        // 03:00 UTC on 1 Feb is still 31 January in New York.
        let p = page(
            &[(
                "at",
                vec![
                    Some("2020-02-01T03:00:00Z"),
                    Some("2020-02-01T12:00:00Z"),
                    None,
                ],
            )],
            false,
        );
        let b = map_page(&p, &spec.spec.table, &IndexMap::new(), spec.tz)
            .unwrap()
            .batch;
        let month = b.column_by_name("at_month").unwrap().as_string::<i32>();
        assert_eq!(month.value(0), "2020-01");
        assert_eq!(month.value(1), "2020-02");
    }

    #[test]
    fn a_field_missing_from_a_csv_header_is_an_error_but_not_from_json() {
        let p = page(
            &[
                ("When", vec![Some("2020-01-01")]),
                ("label", vec![Some("a")]),
            ],
            true,
        );
        let err = map_page(&p, &table(), &IndexMap::new(), chrono_tz::UTC)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                r#"field "N" (for column "n") is not in the source; it has: "When", "label""#
            ),
            "{err}"
        );
        let p = page(
            &[
                ("When", vec![Some("2020-01-01")]),
                ("label", vec![Some("a")]),
            ],
            false,
        );
        let b = map_page(&p, &table(), &IndexMap::new(), chrono_tz::UTC)
            .unwrap()
            .batch;
        assert!(b.column(1).is_null(0));
    }

    mod properties {
        //! Whatever text a source sends, mapping never panics, keeps exactly the rows whose
        //! every value reads, and rejects the others with a problem that names each value.
        use super::*;
        use proptest::prelude::*;

        fn typed_table() -> TableSpec {
            let text = r#"title = "t"
timezone = "UTC"
[[source]]
kind = "file"
path = "Cargo.toml"
[table]
name = "t"
[table.columns]
at = { from = "When", type = "timestamp", required = false }
n = { from = "Count", type = "int64", required = false }
x = { from = "Amount", type = "float64", required = false }
"#;
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("t.toml");
            goalpost_spec::parse_pipeline(&path, text)
                .unwrap()
                .spec
                .table
        }

        /// Text of every kind: blank, near-valid and arbitrary.
        fn cell() -> impl Strategy<Value = String> {
            prop_oneof![
                "\\PC*",
                proptest::collection::vec(any::<u8>(), 0..120)
                    .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
                "[-+ ]?\\$?[0-9,]{0,10}(\\.[0-9]{0,3})? ?",
                "[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2})?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?)?",
                Just(String::new()),
                Just("  ".to_string()),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn partition_labels_are_each_rows_local_month_or_year(
                // Runs of nearby instants (as a time-ordered load sends them) and jumps,
                // around clock changes in zones whose days start in a gap (Havana), shift
                // by half an hour (Lord Howe) or not at all.
                steps in proptest::collection::vec(
                    prop_oneof![0i64..7_200_000_000, -86_400_000_000i64..86_400_000_000_000],
                    1..200,
                ),
                start in 1_230_768_000_000_000i64..1_900_000_000_000_000,
                by_month in any::<bool>(),
                tz in proptest::sample::select(vec![
                    chrono_tz::UTC,
                    chrono_tz::America::New_York,
                    chrono_tz::America::Havana,
                    chrono_tz::America::St_Johns,
                    chrono_tz::Australia::Lord_Howe,
                    chrono_tz::Pacific::Apia,
                ]),
            ) {
                let mut at = start;
                let values: Vec<i64> = steps.iter().map(|s| { at += s; at }).collect();
                let by = if by_month { PartitionBy::Month } else { PartitionBy::Year };
                let array: ArrayRef = Arc::new(
                    arrow::array::TimestampMicrosecondArray::from(values.clone())
                        .with_timezone("UTC"),
                );
                let labels = derived_partition(Some(&array), by, tz, values.len());
                let labels = labels.as_string::<i32>();
                for (i, us) in values.iter().enumerate() {
                    let local = chrono::DateTime::from_timestamp_micros(*us)
                        .unwrap()
                        .with_timezone(&tz)
                        .date_naive();
                    let want = local.format(if by_month { "%Y-%m" } else { "%Y" }).to_string();
                    prop_assert_eq!(labels.value(i), want.as_str(), "row {} at {}", i, us);
                }
            }

            #[test]
            fn a_value_that_does_not_parse_is_rejected_naming_it(
                rows in proptest::collection::vec((cell(), cell(), cell()), 1..8),
                tz in proptest::sample::select(vec![
                    chrono_tz::UTC,
                    chrono_tz::America::New_York,
                    chrono_tz::Australia::Lord_Howe,
                ]),
            ) {
                let col = |k: usize| -> Vec<Option<&str>> {
                    rows.iter()
                        .map(|r| Some([r.0.as_str(), r.1.as_str(), r.2.as_str()][k]))
                        .collect()
                };
                let p = page(
                    &[("When", col(0)), ("Count", col(1)), ("Amount", col(2))],
                    true,
                );
                let m = map_page(&p, &typed_table(), &IndexMap::new(), tz).unwrap();
                let timestamp_expected = format!("a timestamp ({TIMESTAMP_FORMS})");
                let columns = [
                    ("at", "When", timestamp_expected.as_str()),
                    ("n", "Count", "an integer"),
                    ("x", "Amount", "a number"),
                ];
                let mut kept = Vec::new();
                let mut rejected = Vec::new();
                for (i, r) in rows.iter().enumerate() {
                    let raws = [&r.0, &r.1, &r.2];
                    let reads = [
                        TimestampParser::new(tz, None).parse(raws[0]).is_some(),
                        parse::parse_i64(raws[1]).is_some(),
                        parse::parse_f64(raws[2]).is_some(),
                    ];
                    let bad: Vec<usize> = (0..3)
                        .filter(|&k| !raws[k].trim().is_empty() && !reads[k])
                        .collect();
                    if bad.is_empty() {
                        kept.push(i);
                    } else {
                        rejected.push((i, bad));
                    }
                }
                prop_assert_eq!(&m.kept, &kept);
                prop_assert_eq!(m.batch.num_rows(), kept.len());
                prop_assert_eq!(m.rejected.len(), rejected.len());
                for (r, (i, bad)) in m.rejected.iter().zip(&rejected) {
                    prop_assert_eq!(r.index, *i);
                    prop_assert_eq!(r.problems.len(), bad.len());
                    let reason = r.reason();
                    for (problem, &k) in r.problems.iter().zip(bad) {
                        let raw = [&rows[*i].0, &rows[*i].1, &rows[*i].2][k];
                        let (column, field, expected) = columns[k];
                        prop_assert_eq!(&problem.row, &format!("line {}", i + 2));
                        prop_assert_eq!(problem.column.as_str(), column);
                        prop_assert_eq!(problem.field.as_str(), field);
                        prop_assert_eq!(problem.raw.as_deref(), Some(raw.as_str()));
                        prop_assert_eq!(problem.expected.as_str(), expected);
                        // The message quotes the value (its first 80 characters).
                        let shown: String = raw.chars().take(80).collect();
                        let quoted = format!("{shown:?}");
                        let open = &quoted[..quoted.len() - 1];
                        let display = problem.to_string();
                        for message in [&reason, &display] {
                            prop_assert!(
                                message.contains(&format!("column {column:?} (field {field:?}): {open}")),
                                "{} does not name {:?}", message, raw
                            );
                            prop_assert!(message.contains(&format!(" is not {expected}")), "{}", message);
                            if raw.chars().count() <= 80 {
                                prop_assert!(message.contains(&format!("{quoted} is not {expected}")), "{}", message);
                            }
                        }
                    }
                }
                // Kept rows carry what the parsers read; blank text is a missing value.
                let at = m.batch.column(0).as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
                let n = m.batch.column(1).as_primitive::<arrow::datatypes::Int64Type>();
                let x = m.batch.column(2).as_primitive::<arrow::datatypes::Float64Type>();
                for (j, &i) in kept.iter().enumerate() {
                    let r = &rows[i];
                    let blank = |s: &str| s.trim().is_empty();
                    let want_at = (!blank(&r.0)).then(|| TimestampParser::new(tz, None).parse(&r.0)).flatten();
                    let want_n = (!blank(&r.1)).then(|| parse::parse_i64(&r.1)).flatten();
                    let want_x = (!blank(&r.2)).then(|| parse::parse_f64(&r.2)).flatten();
                    prop_assert_eq!(at.is_valid(j).then(|| at.value(j)), want_at);
                    prop_assert_eq!(n.is_valid(j).then(|| n.value(j)), want_n);
                    prop_assert_eq!(x.is_valid(j).then(|| x.value(j).to_bits()), want_x.map(f64::to_bits));
                }
            }
        }
    }
}
