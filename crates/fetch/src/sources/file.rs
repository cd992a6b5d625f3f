//! The `file` source: a CSV file with a header row, a JSON array of objects (the shape of a
//! Socrata `.json` response) or newline-delimited JSON, read in pages.

use crate::page::{RawBatchBuilder, RawPage, RowOrigin};
use crate::{FetchError, Source};
use async_trait::async_trait;
use goalpost_spec::{FileFormat, FileSource};
use serde_json::Value;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

pub struct FileReader {
    path: PathBuf,
    page_size: usize,
    next_index: usize,
    state: Option<Box<State>>,
}

enum State {
    Csv {
        reader: csv::Reader<BufReader<File>>,
        header: Vec<String>,
    },
    /// A parsed JSON array, handed out page by page.
    JsonArray {
        items: std::vec::IntoIter<Value>,
        next_record: u64,
    },
    Ndjson {
        lines: std::io::Lines<BufReader<File>>,
        line: u64,
    },
    Done,
}

impl FileReader {
    pub fn open(cfg: &FileSource, base_dir: &Path) -> Result<Self, FetchError> {
        let path = base_dir.join(&cfg.path);
        let format = cfg.format.unwrap_or_else(|| guess_format(&path));
        let file = File::open(&path).map_err(|source| FetchError::Io {
            path: path.clone(),
            source,
        })?;
        let state = match format {
            FileFormat::Csv => {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(true)
                    .flexible(false)
                    .from_reader(BufReader::new(file));
                let header: Vec<String> = reader
                    .headers()
                    .map_err(|e| csv_error(&path, &e))?
                    .iter()
                    .map(|h| h.trim_start_matches('\u{feff}').to_string())
                    .collect();
                for (i, h) in header.iter().enumerate() {
                    if header[..i].contains(h) {
                        return Err(FetchError::Csv {
                            path,
                            line: 1,
                            message: format!("the header names column {h:?} twice"),
                        });
                    }
                }
                State::Csv { reader, header }
            }
            FileFormat::Json => {
                let value: Value = serde_json::from_reader(BufReader::new(file)).map_err(|e| {
                    FetchError::Json {
                        path: path.clone(),
                        message: format!("line {} column {}: {e}", e.line(), e.column()),
                    }
                })?;
                let Value::Array(items) = value else {
                    return Err(FetchError::Json {
                        path,
                        message: format!(
                            "expected a JSON array of objects, found {}",
                            json_kind(&value)
                        ),
                    });
                };
                State::JsonArray {
                    items: items.into_iter(),
                    next_record: 1,
                }
            }
            FileFormat::Ndjson => State::Ndjson {
                lines: BufReader::new(file).lines(),
                line: 0,
            },
        };
        Ok(Self {
            path,
            page_size: cfg.page_size.max(1),
            next_index: 0,
            state: Some(Box::new(state)),
        })
    }
}

fn guess_format(path: &Path) -> FileFormat {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => FileFormat::Json,
        Some("ndjson" | "jsonl") => FileFormat::Ndjson,
        _ => FileFormat::Csv,
    }
}

fn csv_error(path: &Path, e: &csv::Error) -> FetchError {
    let line = e.position().map_or(0, |p| p.line());
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("row has {len} fields; expected {expected_len} as in the header"),
        csv::ErrorKind::Utf8 { err, .. } => {
            format!("field {} is not valid UTF-8", err.field() + 1)
        }
        _ => e.to_string(),
    };
    FetchError::Csv {
        path: path.to_path_buf(),
        line,
        message,
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The text of a JSON value as a raw field: strings as they are, other scalars as their JSON
/// text, nested values as compact JSON, null as missing.
fn json_text(v: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.as_str().into()),
        other => Some(other.to_string().into()),
    }
}

fn append_object(
    builder: &mut RawBatchBuilder,
    value: &Value,
    origin: &str,
    record: u64,
) -> Result<(), FetchError> {
    let Value::Object(map) = value else {
        return Err(FetchError::Decode {
            origin: origin.to_string(),
            message: format!(
                "record {record}: expected a JSON object, found {}",
                json_kind(value)
            ),
        });
    };
    for (k, v) in map {
        let i = builder.column_index(k);
        builder.append(i, json_text(v).as_deref());
    }
    builder.end_row();
    Ok(())
}

impl State {
    /// Read up to `page_size` rows. Blocking file I/O: run off the async runtime.
    fn read_page(
        &mut self,
        path: &Path,
        page_size: usize,
    ) -> Result<Option<(RawBatchBuilder, RowOrigin, bool)>, FetchError> {
        let origin = path.display().to_string();
        match self {
            State::Done => Ok(None),
            State::Csv { reader, header } => {
                let mut b = RawBatchBuilder::new(header.clone());
                let mut lines = Vec::with_capacity(page_size);
                let mut record = csv::StringRecord::new();
                while b.rows() < page_size {
                    let more = reader
                        .read_record(&mut record)
                        .map_err(|e| csv_error(path, &e))?;
                    if !more {
                        *self = State::Done;
                        break;
                    }
                    lines.push(record.position().map_or(0, |p| p.line()));
                    for (i, field) in record.iter().enumerate() {
                        // Portals write missing values as empty cells.
                        b.append(i, (!field.is_empty()).then_some(field));
                    }
                    b.end_row();
                }
                Ok((b.rows() > 0).then_some((b, RowOrigin::Lines(lines), true)))
            }
            State::JsonArray { items, next_record } => {
                let first = *next_record;
                let mut b = RawBatchBuilder::new(Vec::new());
                for value in items.by_ref().take(page_size) {
                    append_object(&mut b, &value, &origin, *next_record)?;
                    *next_record += 1;
                }
                if b.rows() == 0 {
                    *self = State::Done;
                    return Ok(None);
                }
                Ok(Some((b, RowOrigin::Records { first }, false)))
            }
            State::Ndjson { lines, line } => {
                let mut b = RawBatchBuilder::new(Vec::new());
                let mut at = Vec::with_capacity(page_size);
                while b.rows() < page_size {
                    let Some(text) = lines.next() else {
                        *self = State::Done;
                        break;
                    };
                    *line += 1;
                    let text = text.map_err(|source| FetchError::Io {
                        path: path.to_path_buf(),
                        source,
                    })?;
                    if text.trim().is_empty() {
                        continue;
                    }
                    let value: Value =
                        serde_json::from_str(&text).map_err(|e| FetchError::Json {
                            path: path.to_path_buf(),
                            message: format!("line {}: {e}", *line),
                        })?;
                    append_object(&mut b, &value, &origin, *line)?;
                    at.push(*line);
                }
                Ok((b.rows() > 0).then_some((b, RowOrigin::Lines(at), false)))
            }
        }
    }
}

#[async_trait]
impl Source for FileReader {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    async fn next_page(&mut self) -> Result<Option<RawPage>, FetchError> {
        let Some(mut state) = self.state.take() else {
            return Ok(None);
        };
        let path = self.path.clone();
        let page_size = self.page_size;
        let (state, result) = tokio::task::spawn_blocking(move || {
            let r = state.read_page(&path, page_size);
            (state, r)
        })
        .await
        .map_err(|e| FetchError::Decode {
            origin: self.path.display().to_string(),
            message: format!("reader task failed: {e}"),
        })?;
        let done = matches!(*state, State::Done);
        if !done {
            self.state = Some(state);
        }
        let Some((mut builder, rows, complete_columns)) = result? else {
            return Ok(None);
        };
        let index = self.next_index;
        self.next_index += 1;
        tracing::debug!(source = %self.path.display(), page = index, "read page");
        Ok(Some(RawPage {
            index,
            origin: self.path.display().to_string(),
            complete_columns,
            rows,
            batch: builder.finish(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};

    fn cfg(path: &str, page_size: usize) -> FileSource {
        FileSource {
            path: path.into(),
            format: None,
            page_size,
            fields: Default::default(),
            link: None,
        }
    }

    async fn all_pages(src: &mut FileReader) -> Vec<RawPage> {
        let mut pages = Vec::new();
        while let Some(p) = src.next_page().await.unwrap() {
            pages.push(p);
        }
        pages
    }

    #[tokio::test]
    async fn csv_pages_keep_line_numbers_across_quoted_newlines() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.csv"),
            "id,note\n1,plain\n2,\"two\nlines\"\n3,\n",
        )
        .unwrap();
        let mut src = FileReader::open(&cfg("a.csv", 2), dir.path()).unwrap();
        let pages = all_pages(&mut src).await;
        assert_eq!(pages.len(), 2);
        assert_eq!(pages[0].num_rows(), 2);
        assert_eq!(pages[1].locate(0), "line 5");
        let note = pages[1].batch.column(1).as_string::<i32>();
        assert!(note.is_null(0), "empty cell is missing");
        assert_eq!(
            pages[0].batch.column(1).as_string::<i32>().value(1),
            "two\nlines"
        );
    }

    #[tokio::test]
    async fn json_objects_with_missing_and_nested_fields() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.json"),
            r#"[{"a":"1","n":2.5},{"a":"2","loc":{"type":"Point"}},{"b":true}]"#,
        )
        .unwrap();
        let mut src = FileReader::open(&cfg("a.json", 10), dir.path()).unwrap();
        let pages = all_pages(&mut src).await;
        assert_eq!(pages.len(), 1);
        let b = &pages[0].batch;
        let col = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
        assert_eq!(col("n").value(0), "2.5");
        assert!(col("n").is_null(1));
        assert_eq!(col("loc").value(1), r#"{"type":"Point"}"#);
        assert!(col("a").is_null(2));
        assert_eq!(col("b").value(2), "true");
        assert_eq!(pages[0].locate(2), "record 3");
    }

    #[tokio::test]
    async fn ragged_csv_row_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.csv"), "id,x\n1,2\n3\n").unwrap();
        let mut src = FileReader::open(&cfg("a.csv", 10), dir.path()).unwrap();
        let err = src.next_page().await.unwrap_err().to_string();
        assert!(
            err.contains("a.csv:3: row has 1 fields; expected 2"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn json_that_is_not_an_array_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.json"), r#"{"code":"x"}"#).unwrap();
        let err = FileReader::open(&cfg("a.json", 10), dir.path())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("expected a JSON array of objects, found an object"),
            "{err}"
        );
    }
}
