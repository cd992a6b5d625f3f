//! The `add` action of a data file goalpost wrote itself, with the statistics delta-rs would
//! give it.
//!
//! Readers skip files by these statistics (a query on one month reads that month's files),
//! so they must say what delta-rs's own writer says of the same file: delta-rs keeps that
//! code to itself, and this is it again for the columns goalpost tables have (flat: no
//! structs or lists). From the footer's row-group statistics, per column: the least minimum,
//! the greatest maximum, the nulls summed; timestamps written to the millisecond (cut, not
//! rounded), as the Delta protocol has them; binary columns without statistics. Which
//! columns get statistics follows the table's `delta.dataSkippingStatsColumns`, else its
//! `delta.dataSkippingNumIndexedCols` (the first 32 by default); partition columns never do.
//! A test writes the same rows with delta-rs's writer and compares.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Timelike as _};
use delta_kernel::expressions::Scalar;
use delta_kernel::table_properties::DataSkippingNumIndexedCols;
use deltalake::DeltaTableError;
use deltalake::kernel::Add;
use deltalake::kernel::scalars::ScalarExt as _;
use deltalake::parquet::basic::{ConvertedType, LogicalType, TimeUnit, Type as PhysicalType};
use deltalake::parquet::file::metadata::ParquetMetaData;
use deltalake::parquet::file::statistics::Statistics;
use deltalake::parquet::schema::types::ColumnDescriptor;
use indexmap::IndexMap;
use serde_json::{Map, Value};

/// The `add` action of the file at `path` (relative to the table), `size` bytes, whose
/// footer is `metadata`, in the partition `partition_values`.
pub(crate) fn add_action(
    partition_values: &IndexMap<String, Scalar>,
    path: String,
    size: i64,
    metadata: &ParquetMetaData,
    num_indexed_cols: DataSkippingNumIndexedCols,
    stats_columns: Option<&[String]>,
) -> Result<Add, DeltaTableError> {
    let stats = file_stats(partition_values, metadata, num_indexed_cols, stats_columns)?;
    let modification_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Ok(Add {
        path,
        size,
        partition_values: partition_values
            .iter()
            .map(|(k, v)| (k.clone(), (!v.is_null()).then(|| v.serialize())))
            .collect(),
        modification_time,
        data_change: true,
        stats: Some(serde_json::to_string(&stats)?),
        tags: None,
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
        clustering_provider: None,
    })
}

/// `{"numRecords", "minValues", "maxValues", "nullCount"}` of a file.
fn file_stats(
    partition_values: &IndexMap<String, Scalar>,
    metadata: &ParquetMetaData,
    num_indexed_cols: DataSkippingNumIndexedCols,
    stats_columns: Option<&[String]>,
) -> Result<Value, DeltaTableError> {
    let schema = metadata.file_metadata().schema_descr();
    let columns: Vec<usize> = match (stats_columns, num_indexed_cols) {
        (Some(names), _) => {
            let names: Vec<String> = names.iter().map(|n| unquote(n)).collect();
            (0..schema.num_columns())
                .filter(|i| names.iter().any(|n| n == schema.column(*i).name()))
                .collect()
        }
        (None, DataSkippingNumIndexedCols::AllColumns) => (0..schema.num_columns()).collect(),
        (None, DataSkippingNumIndexedCols::NumColumns(n)) => (0..schema.num_columns())
            .filter(|i| !partition_values.contains_key(schema.column(*i).name()))
            .take(n as usize)
            .collect(),
    };
    let mut min_values = Map::new();
    let mut max_values = Map::new();
    let mut null_count = Map::new();
    for i in columns {
        let column = schema.column(i);
        if column.path().parts().len() != 1 || column.max_rep_level() > 0 {
            return Err(DeltaTableError::generic(format!(
                "statistics of the nested column {}: goalpost tables have flat columns",
                column.path()
            )));
        }
        let name = column.name();
        if partition_values.contains_key(name) {
            continue;
        }
        let mut seen = false;
        let mut least: Option<Bound> = None;
        let mut greatest: Option<Bound> = None;
        let mut nulls = 0u64;
        for group in metadata.row_groups() {
            let Some(stats) = group.column(i).statistics() else {
                continue;
            };
            if is_binary(&column) {
                tracing::warn!(column = name, "no statistics for a binary column");
                continue;
            }
            seen = true;
            nulls += stats.null_count_opt().unwrap_or_default();
            if stats.min_bytes_opt().is_none() || stats.max_bytes_opt().is_none() {
                continue;
            }
            let kind = logical_type(&column);
            if let Some(min) = Bound::of(stats, kind.as_ref(), true) {
                least = Some(match least {
                    // As delta-rs folds them: of two equal bounds, the later row group's.
                    Some(l) if l < min => l,
                    _ => min,
                });
            }
            if let Some(max) = Bound::of(stats, kind.as_ref(), false) {
                greatest = Some(match greatest {
                    Some(g) if g > max => g,
                    _ => max,
                });
            }
        }
        if !seen {
            continue;
        }
        if let Some(min) = least {
            min_values.insert(name.to_string(), min.into_json());
        }
        if let Some(max) = greatest {
            max_values.insert(name.to_string(), max.into_json());
        }
        null_count.insert(name.to_string(), Value::from(nulls));
    }
    Ok(serde_json::json!({
        "numRecords": metadata.file_metadata().num_rows(),
        "minValues": min_values,
        "maxValues": max_values,
        "nullCount": null_count,
    }))
}

/// A column name as `delta.dataSkippingStatsColumns` may quote it (`` `a b` `` or `"a b"`).
fn unquote(name: &str) -> String {
    let name = name.trim();
    for q in ['`', '"'] {
        if let Some(inner) = name.strip_prefix(q).and_then(|n| n.strip_suffix(q))
            && !inner.is_empty()
        {
            return inner.replace(&format!("{q}{q}"), &q.to_string());
        }
    }
    name.to_string()
}

fn is_binary(column: &ColumnDescriptor) -> bool {
    column.physical_type() == PhysicalType::BYTE_ARRAY
        && !matches!(column.logical_type_ref(), Some(LogicalType::String))
}

fn logical_type(column: &ColumnDescriptor) -> Option<LogicalType> {
    column
        .logical_type_ref()
        .cloned()
        .or(match column.converted_type() {
            ConvertedType::UTF8 => Some(LogicalType::String),
            ConvertedType::DATE => Some(LogicalType::Date),
            _ => None,
        })
}

/// A minimum or maximum, typed as the column's values are compared.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum Bound {
    Boolean(bool),
    Int32(i32),
    Int64(i64),
    Float32(f32),
    Float64(f64),
    Date(NaiveDate),
    /// Adjusted to UTC.
    Timestamp(NaiveDateTime),
    /// Local, without a zone.
    TimestampNtz(NaiveDateTime),
    String(String),
}

impl Bound {
    /// The minimum (`min`) or maximum of `stats`; none for a type goalpost does not write.
    fn of(stats: &Statistics, kind: Option<&LogicalType>, min: bool) -> Option<Self> {
        fn pick<T: Copy>(min: bool, lo: Option<&T>, hi: Option<&T>) -> Option<T> {
            if min { lo.copied() } else { hi.copied() }
        }
        Some(match (stats, kind) {
            (Statistics::Boolean(v), _) => Self::Boolean(pick(min, v.min_opt(), v.max_opt())?),
            (Statistics::Int32(v), Some(LogicalType::Date)) => {
                let days = pick(min, v.min_opt(), v.max_opt())?;
                Self::Date(
                    NaiveDate::from_ymd_opt(1970, 1, 1)?
                        .checked_add_signed(chrono::Duration::days(days.into()))?,
                )
            }
            (Statistics::Int32(_), Some(LogicalType::Decimal(_))) => return None,
            (Statistics::Int32(v), _) => Self::Int32(pick(min, v.min_opt(), v.max_opt())?),
            (Statistics::Int64(v), Some(LogicalType::Timestamp(kind))) => {
                let t = pick(min, v.min_opt(), v.max_opt())?;
                let at = match kind.unit {
                    TimeUnit::MILLIS => DateTime::from_timestamp_millis(t),
                    TimeUnit::MICROS => DateTime::from_timestamp_micros(t),
                    TimeUnit::NANOS => {
                        DateTime::from_timestamp(t / 1_000_000_000, (t % 1_000_000_000) as u32)
                    }
                }?
                .naive_utc();
                if kind.is_adjusted_to_u_t_c {
                    Self::Timestamp(at)
                } else {
                    Self::TimestampNtz(at)
                }
            }
            (Statistics::Int64(_), Some(LogicalType::Decimal(_))) => return None,
            (Statistics::Int64(v), _) => Self::Int64(pick(min, v.min_opt(), v.max_opt())?),
            (Statistics::Float(v), _) => Self::Float32(pick(min, v.min_opt(), v.max_opt())?),
            (Statistics::Double(v), _) => Self::Float64(pick(min, v.min_opt(), v.max_opt())?),
            (Statistics::ByteArray(v), Some(LogicalType::String)) => {
                let bytes = if min {
                    v.min_bytes_opt()
                } else {
                    v.max_bytes_opt()
                }?;
                Self::String(String::from_utf8(bytes.to_vec()).ok()?)
            }
            _ => return None,
        })
    }

    fn into_json(self) -> Value {
        match self {
            Self::Boolean(v) => Value::from(v),
            Self::Int32(v) => Value::from(v),
            Self::Int64(v) => Value::from(v),
            Self::Float32(v) => Value::from(v),
            Self::Float64(v) => Value::from(v),
            Self::Date(v) => Value::from(v.format("%Y-%m-%d").to_string()),
            Self::Timestamp(v) => Value::from(
                v.format(if v.nanosecond() == 0 {
                    "%Y-%m-%dT%H:%M:%SZ"
                } else {
                    "%Y-%m-%dT%H:%M:%S%.3fZ"
                })
                .to_string(),
            ),
            Self::TimestampNtz(v) => Value::from(
                v.format(if v.nanosecond() == 0 {
                    "%Y-%m-%d %H:%M:%S"
                } else {
                    "%Y-%m-%d %H:%M:%S%.3f"
                })
                .to_string(),
            ),
            Self::String(v) => Value::from(v),
        }
    }
}
