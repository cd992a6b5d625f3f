//! Rows coming in: typed, checked row by row, and split into the good rows that go to the
//! table and the rejected ones that go to the quarantine.

use crate::checks::{CheckResult, RowChecks};
use crate::mapping::{MapError, map_page, raw_row_json};
use arrow::array::{
    BooleanArray, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use goalpost_fetch::RawPage;
use goalpost_spec::Pipeline;
use indexmap::IndexMap;
use std::sync::Arc;

/// Rejected rows kept per run with their raw text; beyond this they are only counted, so a
/// source gone wholly bad cannot exhaust memory (such a run fails on the limit anyway).
const KEEP_AT_MOST: usize = 100_000;

/// A row kept out of the table, with why and what it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedRow {
    /// The source it came from (its description).
    pub source: String,
    /// 0-based page of the source.
    pub page: u64,
    /// "line 14" or "record 7".
    pub row: String,
    pub reason: String,
    /// The row as the source sent it: a JSON object of its fields.
    pub raw: String,
}

/// Typing and row checks for one run of one pipeline.
pub struct Intake<'a> {
    pipeline: &'a Pipeline,
    checks: RowChecks,
    rows_in: u64,
    quarantined: u64,
    kept: Vec<QuarantinedRow>,
}

impl<'a> Intake<'a> {
    pub fn new(pipeline: &'a Pipeline) -> Self {
        Self {
            pipeline,
            checks: RowChecks::new(pipeline),
            rows_in: 0,
            quarantined: 0,
            kept: Vec::new(),
        }
    }

    /// Type and check one page from `source`; returns its good rows. `fields` are the
    /// source's column overrides.
    pub fn take(
        &mut self,
        source: &str,
        page: &RawPage,
        fields: &IndexMap<String, String>,
    ) -> Result<RecordBatch, MapError> {
        let table = &self.pipeline.spec.table;
        let mapped = map_page(page, table, fields, self.pipeline.tz)?;
        self.rows_in += page.num_rows() as u64;
        for r in &mapped.rejected {
            self.quarantine(source, page, r.index, r.reason());
        }
        if self.checks.is_empty() || mapped.batch.num_rows() == 0 {
            return Ok(mapped.batch);
        }
        let failures = self
            .checks
            .apply(&mapped.batch, |i| page.locate(mapped.kept[i]));
        if failures.is_empty() {
            return Ok(mapped.batch);
        }
        let mut keep = vec![true; mapped.batch.num_rows()];
        for f in failures {
            keep[f.index] = false;
            self.quarantine(source, page, mapped.kept[f.index], f.reason);
        }
        Ok(
            arrow::compute::filter_record_batch(&mapped.batch, &BooleanArray::from(keep))
                .expect("a filter of the batch's own length"),
        )
    }

    fn quarantine(&mut self, source: &str, page: &RawPage, index: usize, reason: String) {
        self.quarantined += 1;
        if self.kept.len() < KEEP_AT_MOST {
            self.kept.push(QuarantinedRow {
                source: source.to_string(),
                page: page.index as u64,
                row: page.locate(index),
                reason,
                raw: raw_row_json(page, index),
            });
        }
    }

    pub fn rows_in(&self) -> u64 {
        self.rows_in
    }

    pub fn quarantined(&self) -> u64 {
        self.quarantined
    }

    /// Why the load must stop now: more rows were rejected than the pipeline allows.
    pub fn over_limit(&self) -> Option<String> {
        over_limit(
            self.rows_in,
            self.quarantined,
            self.pipeline.spec.table.quarantine_limit,
            &self.kept,
        )
    }

    /// The run's row-check results and rejected rows.
    pub fn finish(self) -> IntakeReport {
        IntakeReport {
            rows_in: self.rows_in,
            quarantined: self.quarantined,
            rows: self.kept,
            checks: self.checks.results(),
            limit: self.pipeline.spec.table.quarantine_limit,
        }
    }
}

/// What came in during a run.
#[derive(Debug, Clone, Default)]
pub struct IntakeReport {
    pub rows_in: u64,
    pub quarantined: u64,
    /// The rejected rows (at most 100,000 of them).
    pub rows: Vec<QuarantinedRow>,
    /// Row-check results.
    pub checks: Vec<CheckResult>,
    /// The pipeline's quarantine limit, percent.
    pub limit: f64,
}

impl IntakeReport {
    /// Share of incoming rows quarantined, percent.
    pub fn share(&self) -> f64 {
        if self.rows_in == 0 {
            0.0
        } else {
            self.quarantined as f64 * 100.0 / self.rows_in as f64
        }
    }

    /// Why the run must fail, when more rows were quarantined than the limit allows.
    pub fn over_limit(&self) -> Option<String> {
        over_limit(self.rows_in, self.quarantined, self.limit, &self.rows)
    }
}

fn over_limit(
    rows_in: u64,
    quarantined: u64,
    limit: f64,
    rows: &[QuarantinedRow],
) -> Option<String> {
    let share = if rows_in == 0 {
        0.0
    } else {
        quarantined as f64 * 100.0 / rows_in as f64
    };
    {
        if quarantined == 0 || share <= limit {
            return None;
        }
        // The most common reasons, so the message says what to fix.
        let mut reasons: IndexMap<String, (u64, String)> = IndexMap::new();
        for r in rows {
            let key = reason_kind(&r.reason);
            let e = reasons
                .entry(key)
                .or_insert_with(|| (0, format!("{} {}: {}", r.source, r.row, r.reason)));
            e.0 += 1;
        }
        reasons.sort_by(|_, a, _, b| b.0.cmp(&a.0));
        let listed = reasons
            .values()
            .take(5)
            .map(|(n, example)| format!("\n  {n} × e.g. {example}"))
            .collect::<String>();
        Some(format!(
            "{} of {} rows ({:.1} %) failed typing or row checks, above the quarantine limit of \
             {} %; nothing was written. Most common problems:{listed}",
            quarantined, rows_in, share, limit
        ))
    }
}

/// A reason without its values, to group rows failing the same way: `column "x" (field
/// "X"): "abc" is not a number` → `column "x" (field "X"): is not a number`.
fn reason_kind(reason: &str) -> String {
    let mut out = String::new();
    let mut in_quotes = false;
    let mut quoted = String::new();
    for c in reason.chars() {
        if c == '"' {
            if in_quotes {
                // Keep column and field names; drop raw values (which follow a colon or '=').
                let trimmed = out.trim_end();
                if trimmed.ends_with(':') || trimmed.ends_with('=') {
                    out.push('…');
                } else {
                    out.push('"');
                    out.push_str(&quoted);
                    out.push('"');
                }
                quoted.clear();
            }
            in_quotes = !in_quotes;
        } else if in_quotes {
            quoted.push(c);
        } else {
            out.push(c);
        }
    }
    out
}

/// The quarantine table's schema.
pub fn quarantine_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new(
            "quarantined_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("source", DataType::Utf8, false),
        Field::new("page", DataType::Int64, false),
        Field::new("row", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("raw", DataType::Utf8, false),
    ]))
}

/// Quarantined rows as a batch for the quarantine table.
pub fn quarantine_batch(run_id: &str, at: DateTime<Utc>, rows: &[QuarantinedRow]) -> RecordBatch {
    let mut run = StringBuilder::new();
    let mut when = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let mut source = StringBuilder::new();
    let mut page = Int64Builder::new();
    let mut row = StringBuilder::new();
    let mut reason = StringBuilder::new();
    let mut raw = StringBuilder::new();
    for r in rows {
        run.append_value(run_id);
        when.append_value(at.timestamp_micros());
        source.append_value(&r.source);
        page.append_value(r.page as i64);
        row.append_value(&r.row);
        reason.append_value(&r.reason);
        raw.append_value(&r.raw);
    }
    RecordBatch::try_new(
        quarantine_schema(),
        vec![
            Arc::new(run.finish()),
            Arc::new(when.finish()),
            Arc::new(source.finish()),
            Arc::new(page.finish()),
            Arc::new(row.finish()),
            Arc::new(reason.finish()),
            Arc::new(raw.finish()),
        ],
    )
    .expect("quarantine columns match the quarantine schema")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_group_without_their_values() {
        assert_eq!(
            reason_kind(r#"column "x" (field "X"): "abc" is not a number"#),
            r#"column "x" (field "X"): … is not a number"#
        );
        assert_eq!(
            reason_kind(r#"check "range:n": n = 9 is above the maximum 5"#),
            r#"check "range:n": n = 9 is above the maximum 5"#
        );
    }
}
