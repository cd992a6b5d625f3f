//! Raw page → typed batch.

use crate::parse::{self, TIMESTAMP_FORMS, TimestampParser};
use arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder,
    StringArray, TimestampMicrosecondBuilder,
};
use arrow::record_batch::RecordBatch;
use chrono::NaiveDate;
use chrono_tz::Tz;
use goalpost_fetch::RawPage;
use goalpost_spec::{ColumnType, TableSpec};
use indexmap::IndexMap;
use std::fmt;
use std::sync::Arc;

/// At most this many bad values are listed in one error, and at most `MAX_PER_COLUMN` of one
/// column, so a problem in one column does not hide another's; the rest are counted.
const MAX_LISTED: usize = 10;
const MAX_PER_COLUMN: usize = 3;

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
    #[error("{origin}: {count} value(s) do not fit the table's declared types:\n  {}{}",
        .errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "),
        if *count > .errors.len() { format!("\n  … and {} more", count - .errors.len()) } else { String::new() })]
    Values {
        origin: String,
        count: usize,
        errors: Vec<ValueError>,
    },
}

/// Type one raw page into the table's schema.
///
/// `fields` are the source's overrides of each column's `from`; `tz` is the pipeline's zone,
/// used for local timestamps unless the column names its own.
pub fn map_page(
    page: &RawPage,
    table: &TableSpec,
    fields: &IndexMap<String, String>,
    tz: Tz,
) -> Result<RecordBatch, MapError> {
    let rows = page.num_rows();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(table.columns.len());
    let mut errors = Vec::new();
    let mut count = 0usize;
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
        let mut listed_here = 0;
        let mut report = |i: usize, raw: Option<&str>, expected: &str| {
            count += 1;
            if errors.len() < MAX_LISTED && listed_here < MAX_PER_COLUMN {
                listed_here += 1;
                errors.push(ValueError {
                    row: page.locate(i),
                    column: name.clone(),
                    field: field.to_string(),
                    raw: raw.map(str::to_string),
                    expected: expected.to_string(),
                });
            }
        };
        if spec.required {
            for i in 0..rows {
                if raw.is_null(i) || raw.value(i).trim().is_empty() {
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
                let expected = "a date (YYYY-MM-DD or MM/DD/YYYY)";
                typed(
                    &raw,
                    &mut report,
                    expected,
                    |s| {
                        match spec.format.as_deref() {
                            Some(f) => NaiveDate::parse_from_str(s.trim(), f).ok(),
                            None => parse::parse_date(s),
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
    if count > 0 {
        return Err(MapError::Values {
            origin: page.origin.clone(),
            count,
            errors,
        });
    }
    // Invariant: one array per declared column, each with the page's row count and the
    // declared type.
    Ok(RecordBatch::try_new(table.arrow_schema(), columns)
        .expect("mapped columns match the declared schema"))
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
        if raw.is_null(i) || raw.value(i).trim().is_empty() {
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
        let b = map_page(&p, &table(), &fields, chrono_tz::UTC).unwrap();
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
    fn bad_values_are_listed_with_row_column_and_raw_text() {
        let bad: Vec<Option<&str>> = (0..8).map(|_| Some("x")).collect();
        let ok: Vec<Option<&str>> = (0..8).map(|_| Some("2020-01-01")).collect();
        let mut labels: Vec<Option<&str>> = (0..8).map(|_| Some("l")).collect();
        labels[0] = None;
        let p = page(&[("When", ok), ("N", bad), ("label", labels)], true);
        let err = map_page(&p, &table(), &IndexMap::new(), chrono_tz::UTC).unwrap_err();
        let MapError::Values { count, errors, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(*count, 9);
        // Three of column n's eight, and column label's one.
        assert_eq!(errors.len(), MAX_PER_COLUMN + 1);
        let text = err.to_string();
        assert!(
            text.contains(r#"line 2: column "n" (field "N"): "x" is not an integer"#),
            "{text}"
        );
        assert!(text.contains("… and 5 more"), "{text}");
        assert!(
            text.contains(r#"line 2: column "label" (field "label") is empty; it is required"#),
            "{text}"
        );
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
        let b = map_page(&p, &table(), &IndexMap::new(), chrono_tz::UTC).unwrap();
        assert!(b.column(1).is_null(0));
    }
}
