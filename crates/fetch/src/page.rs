use arrow::array::{ArrayBuilder, ArrayRef, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use std::sync::Arc;

/// How rows of a page are located in the source, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowOrigin {
    /// Line number in a text file, one per row (a quoted CSV field may span lines).
    Lines(Vec<u64>),
    /// Rows are the elements `first, first + 1, …` (1-based) of a JSON array or stream.
    Records { first: u64 },
}

/// One page of rows as the source sent them: every column is nullable UTF-8.
#[derive(Debug, Clone)]
pub struct RawPage {
    /// 0-based page number within the source.
    pub index: usize,
    /// Path or URL the page came from.
    pub origin: String,
    /// False when a field missing from the page may simply be empty at the source (JSON
    /// objects omit empty fields); true when the page's columns are the complete set (a CSV
    /// header), so a missing field is an error.
    pub complete_columns: bool,
    pub rows: RowOrigin,
    pub batch: RecordBatch,
}

impl RawPage {
    /// "line 12" or "record 7" for row `i` of this page.
    pub fn locate(&self, i: usize) -> String {
        match &self.rows {
            RowOrigin::Lines(lines) => match lines.get(i) {
                Some(l) => format!("line {l}"),
                None => format!("row {}", i + 1),
            },
            RowOrigin::Records { first } => format!("record {}", first + i as u64),
        }
    }

    /// A page with no rows and no columns.
    pub fn empty(index: usize, origin: &str) -> Self {
        Self {
            index,
            origin: origin.to_string(),
            complete_columns: false,
            rows: RowOrigin::Records { first: 1 },
            batch: RecordBatch::new_empty(Arc::new(Schema::empty())),
        }
    }

    pub fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }
}

/// Builds a raw batch column by column from rows of optional strings.
pub(crate) struct RawBatchBuilder {
    names: Vec<String>,
    columns: Vec<StringBuilder>,
    rows: usize,
}

impl RawBatchBuilder {
    pub(crate) fn new(names: Vec<String>) -> Self {
        let columns = names.iter().map(|_| StringBuilder::new()).collect();
        Self {
            names,
            columns,
            rows: 0,
        }
    }

    /// Index of a column, adding it (null in every earlier row) when new.
    pub(crate) fn column_index(&mut self, name: &str) -> usize {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            return i;
        }
        let mut b = StringBuilder::new();
        for _ in 0..self.rows {
            b.append_null();
        }
        self.names.push(name.to_string());
        self.columns.push(b);
        self.names.len() - 1
    }

    pub(crate) fn append(&mut self, column: usize, value: Option<&str>) {
        self.columns[column].append_option(value);
    }

    /// Finish a row: columns not written in it get a null.
    pub(crate) fn end_row(&mut self) {
        self.rows += 1;
        for c in &mut self.columns {
            while c.len() < self.rows {
                c.append_null();
            }
        }
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub(crate) fn finish(&mut self) -> RecordBatch {
        let fields: Vec<Field> = self
            .names
            .iter()
            .map(|n| Field::new(n, DataType::Utf8, true))
            .collect();
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|c| Arc::new(c.finish()) as ArrayRef)
            .collect();
        let rows = std::mem::take(&mut self.rows);
        let options = arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(rows));
        // Invariant: every column has exactly `rows` entries (end_row pads them).
        RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)
            .expect("raw columns are all Utf8 and equally long")
    }
}
