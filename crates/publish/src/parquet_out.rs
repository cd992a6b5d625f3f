//! `indicators.parquet`: one row per indicator × period × breakdown group.

use crate::digest::Digest;
use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, RecordBatch, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema};
use chrono::NaiveDate;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::io::Write;
use std::sync::Arc;

pub(crate) fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("pipeline", DataType::Utf8, false),
        Field::new("indicator", DataType::Utf8, false),
        Field::new("title", DataType::Utf8, false),
        Field::new("unit", DataType::Utf8, true),
        Field::new("period_kind", DataType::Utf8, false),
        Field::new("period", DataType::Utf8, false),
        Field::new("period_start", DataType::Date32, false),
        Field::new("period_end", DataType::Date32, false),
        Field::new("breakdown", DataType::Utf8, true),
        Field::new("group", DataType::Utf8, true),
        Field::new("value", DataType::Float64, true),
        Field::new("partial", DataType::Boolean, false),
        Field::new("held", DataType::Boolean, false),
        Field::new("suppressed", DataType::Boolean, false),
        Field::new("rows", DataType::Int64, true),
        Field::new("flag", DataType::Utf8, true),
        Field::new("table_version", DataType::Int64, false),
        Field::new("run_id", DataType::Utf8, false),
    ]))
}

fn days(d: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    (d - epoch).num_days() as i32
}

pub(crate) fn batch(digest: &Digest) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut pipeline = StringBuilder::new();
    let mut indicator = StringBuilder::new();
    let mut title = StringBuilder::new();
    let mut unit = StringBuilder::new();
    let mut kind = StringBuilder::new();
    let mut period = StringBuilder::new();
    let mut start = Date32Builder::new();
    let mut end = Date32Builder::new();
    let mut breakdown = StringBuilder::new();
    let mut group = StringBuilder::new();
    let mut value = Float64Builder::new();
    let mut partial = BooleanBuilder::new();
    let mut held = BooleanBuilder::new();
    let mut suppressed = BooleanBuilder::new();
    let mut rows = arrow::array::Int64Builder::new();
    let mut flag = StringBuilder::new();
    let mut version = arrow::array::Int64Builder::new();
    let mut run = StringBuilder::new();
    for p in &digest.pipelines {
        for ind in &p.indicators {
            for pt in &ind.series {
                pipeline.append_value(&p.id);
                indicator.append_value(&ind.id);
                title.append_value(&ind.title);
                unit.append_option(ind.unit.as_deref());
                kind.append_value(&ind.period);
                period.append_value(&pt.period);
                start.append_value(days(pt.start));
                end.append_value(days(pt.end));
                if pt.group.is_empty() {
                    breakdown.append_null();
                    group.append_null();
                } else {
                    let keys: Vec<&str> = pt.group.keys().map(String::as_str).collect();
                    let vals: Vec<&str> = pt.group.values().map(String::as_str).collect();
                    breakdown.append_value(keys.join(" | "));
                    group.append_value(vals.join(" | "));
                }
                value.append_option(pt.value);
                partial.append_value(pt.partial);
                held.append_value(ind.held.is_some());
                suppressed.append_value(pt.suppressed);
                rows.append_option(pt.n.map(|n| n as i64));
                flag.append_option(pt.flag.as_deref());
                version.append_value(p.table.version as i64);
                run.append_value(&p.run_id);
            }
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(pipeline.finish()),
        Arc::new(indicator.finish()),
        Arc::new(title.finish()),
        Arc::new(unit.finish()),
        Arc::new(kind.finish()),
        Arc::new(period.finish()),
        Arc::new(start.finish()),
        Arc::new(end.finish()),
        Arc::new(breakdown.finish()),
        Arc::new(group.finish()),
        Arc::new(value.finish()),
        Arc::new(partial.finish()),
        Arc::new(held.finish()),
        Arc::new(suppressed.finish()),
        Arc::new(rows.finish()),
        Arc::new(flag.finish()),
        Arc::new(version.finish()),
        Arc::new(run.finish()),
    ];
    RecordBatch::try_new(schema(), columns)
}

pub(crate) fn write(
    digest: &Digest,
    out: impl Write + Send,
) -> Result<(), parquet::errors::ParquetError> {
    let batch = batch(digest)?;
    // Every setting is fixed (none left to the library's defaults, which may change between
    // versions), so the same figures always give the same bytes: `recompute` relies on it.
    let props = WriterProperties::builder()
        .set_created_by("goalpost".to_string())
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("3 is a valid zstd level"),
        ))
        .set_max_row_group_row_count(Some(1 << 20))
        .set_writer_version(parquet::file::properties::WriterVersion::PARQUET_1_0)
        .set_statistics_enabled(parquet::file::properties::EnabledStatistics::Page)
        .set_dictionary_enabled(true)
        .build();
    let mut writer = ArrowWriter::try_new(out, batch.schema(), Some(props))?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(())
}
