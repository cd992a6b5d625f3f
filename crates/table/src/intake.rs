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
///
/// Rejected rows wait in [`pending`](Self::pending) until the caller stores them
/// ([`drain`](Self::drain)); a count per kind of problem, with one example each, is kept for
/// the run's message.
pub struct Intake<'a> {
    pipeline: &'a Pipeline,
    checks: RowChecks,
    rows_in: u64,
    quarantined: u64,
    floor: u64,
    pending: Vec<QuarantinedRow>,
    reasons: Reasons,
}

/// Problems by kind: how many, and the first example.
type Reasons = IndexMap<String, (u64, String)>;

impl<'a> Intake<'a> {
    pub fn new(pipeline: &'a Pipeline) -> Self {
        Self {
            pipeline,
            checks: RowChecks::new(pipeline),
            rows_in: 0,
            quarantined: 0,
            floor: 0,
            pending: Vec::new(),
            reasons: Reasons::new(),
        }
    }

    /// Judge the quarantined share against at least `rows` rows: a refresh passes the
    /// table's size, so one bad row among ten changed ones does not fail every run.
    pub fn set_floor(&mut self, rows: u64) {
        self.floor = rows;
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
        let row = page.locate(index);
        let e = self
            .reasons
            .entry(reason_kind(&reason))
            .or_insert_with(|| (0, format!("{source} {row}: {reason}")));
        e.0 += 1;
        self.pending.push(QuarantinedRow {
            source: source.to_string(),
            page: page.index as u64,
            row,
            reason,
            raw: raw_row_json(page, index),
        });
    }

    pub fn rows_in(&self) -> u64 {
        self.rows_in
    }

    pub fn quarantined(&self) -> u64 {
        self.quarantined
    }

    /// Rejected rows not yet stored.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Take the rejected rows not yet stored (the caller stores them).
    pub fn drain(&mut self) -> Vec<QuarantinedRow> {
        std::mem::take(&mut self.pending)
    }

    /// Why the load must stop now: more rows were rejected than the pipeline allows.
    pub fn over_limit(&self) -> Option<String> {
        over_limit(
            self.rows_in.max(self.floor),
            self.quarantined,
            self.pipeline.spec.table.quarantine_limit,
            &self.reasons,
        )
    }

    /// The run's row-check results and the rejected rows not yet stored.
    pub fn finish(self) -> IntakeReport {
        IntakeReport {
            rows_in: self.rows_in,
            quarantined: self.quarantined,
            rows: self.pending,
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
    /// Rejected rows not yet stored.
    pub rows: Vec<QuarantinedRow>,
    /// Row-check results.
    pub checks: Vec<CheckResult>,
    /// The pipeline's quarantine limit, percent.
    pub limit: f64,
}

fn over_limit(rows_in: u64, quarantined: u64, limit: f64, reasons: &Reasons) -> Option<String> {
    let share = if rows_in == 0 {
        0.0
    } else {
        quarantined as f64 * 100.0 / rows_in as f64
    };
    if quarantined == 0 || share <= limit {
        return None;
    }
    // The most common problems, so the message says what to fix.
    let mut reasons: Vec<&(u64, String)> = reasons.values().collect();
    reasons.sort_by_key(|r| std::cmp::Reverse(r.0));
    let listed = reasons
        .iter()
        .take(5)
        .map(|(n, example)| format!("\n  {n} × e.g. {example}"))
        .collect::<String>();
    Some(format!(
        "{quarantined} of {rows_in} rows ({share:.1} %) failed typing or row checks, above the \
         quarantine limit of {limit} %; nothing was written. Most common problems:{listed}"
    ))
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
