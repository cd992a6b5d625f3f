//! Decoding documents into raw pages: CSV with a header row, a JSON array of objects (the
//! shape of a Socrata `.json` response, or an array inside a larger document), newline-delimited
//! JSON and GeoJSON feature collections. Shared by the `file` and `http` sources, and the JSON
//! helpers by every portal connector.

use crate::FetchError;
use crate::page::{RawBatchBuilder, RawPage, RowOrigin};
use goalpost_spec::FileFormat;
use serde_json::Value;
use std::io::BufRead;
use std::path::Path;

/// A document being read page by page. `R` is a file or an in-memory body.
pub(crate) enum Decoder<R: BufRead> {
    Csv {
        reader: csv::Reader<R>,
        header: Vec<String>,
    },
    /// A parsed JSON array (or GeoJSON features), handed out page by page.
    JsonArray {
        items: std::vec::IntoIter<Value>,
        next_record: u64,
        geojson: bool,
    },
    Ndjson {
        lines: std::io::Lines<R>,
        line: u64,
    },
    Done,
}

/// The format a path or URL's extension suggests.
pub(crate) fn guess_format(path: &str) -> Option<FileFormat> {
    let path = path
        .split(['?', '#'])
        .next()
        .unwrap_or(path)
        .to_ascii_lowercase();
    let ext = Path::new(&path).extension().and_then(|e| e.to_str())?;
    Some(match ext {
        "json" => FileFormat::Json,
        "ndjson" | "jsonl" => FileFormat::Ndjson,
        "geojson" => FileFormat::Geojson,
        "csv" | "txt" | "tsv" => FileFormat::Csv,
        _ => return None,
    })
}

impl<R: BufRead> Decoder<R> {
    /// Start reading `input` (named `path` in messages). For JSON, `records` is the dotted
    /// path of the array inside the document (empty: the document is the array).
    pub(crate) fn open(
        input: R,
        format: FileFormat,
        path: &Path,
        records: Option<&str>,
    ) -> Result<Self, FetchError> {
        Ok(match format {
            FileFormat::Csv => {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(true)
                    .flexible(false)
                    .from_reader(input);
                let header: Vec<String> = reader
                    .headers()
                    .map_err(|e| csv_error(path, &e))?
                    .iter()
                    .map(|h| h.trim_start_matches('\u{feff}').to_string())
                    .collect();
                for (i, h) in header.iter().enumerate() {
                    if header[..i].contains(h) {
                        return Err(FetchError::Csv {
                            path: path.to_path_buf(),
                            line: 1,
                            message: format!("the header names column {h:?} twice"),
                        });
                    }
                }
                Decoder::Csv { reader, header }
            }
            FileFormat::Json | FileFormat::Geojson => {
                let value: Value =
                    serde_json::from_reader(input).map_err(|e| FetchError::Json {
                        path: path.to_path_buf(),
                        message: json_error(&e),
                    })?;
                let geojson = format == FileFormat::Geojson;
                let records = if geojson {
                    Some(records.unwrap_or("features"))
                } else {
                    records
                };
                let items = take_records(value, records.unwrap_or(""), path)?;
                Decoder::JsonArray {
                    items: items.into_iter(),
                    next_record: 1,
                    geojson,
                }
            }
            FileFormat::Ndjson => Decoder::Ndjson {
                lines: input.lines(),
                line: 0,
            },
        })
    }

    /// Read up to `page_size` rows. Blocking I/O for files: run off the async runtime.
    pub(crate) fn read_page(
        &mut self,
        path: &Path,
        page_size: usize,
        index: usize,
    ) -> Result<Option<RawPage>, FetchError> {
        let origin = path.display().to_string();
        let page = |mut b: RawBatchBuilder, rows, complete_columns| RawPage {
            index,
            origin: origin.clone(),
            complete_columns,
            rows,
            batch: b.finish(),
        };
        match self {
            Decoder::Done => Ok(None),
            Decoder::Csv { reader, header } => {
                let mut b = RawBatchBuilder::new(header.clone());
                let mut lines = Vec::with_capacity(page_size.min(1 << 16));
                let mut record = csv::StringRecord::new();
                while b.rows() < page_size {
                    let more = reader
                        .read_record(&mut record)
                        .map_err(|e| csv_error(path, &e))?;
                    if !more {
                        *self = Decoder::Done;
                        break;
                    }
                    lines.push(record.position().map_or(0, |p| p.line()));
                    for (i, field) in record.iter().enumerate() {
                        // Portals write missing values as empty cells.
                        b.append(i, (!field.is_empty()).then_some(field));
                    }
                    b.end_row();
                }
                Ok((b.rows() > 0).then(|| page(b, RowOrigin::Lines(lines), true)))
            }
            Decoder::JsonArray {
                items,
                next_record,
                geojson,
            } => {
                let first = *next_record;
                let mut b = RawBatchBuilder::new(Vec::new());
                for value in items.by_ref().take(page_size) {
                    if *geojson {
                        append_feature(&mut b, &value, &origin, *next_record)?;
                    } else {
                        append_object(&mut b, &value, &origin, *next_record)?;
                    }
                    *next_record += 1;
                }
                if b.rows() == 0 {
                    *self = Decoder::Done;
                    return Ok(None);
                }
                Ok(Some(page(b, RowOrigin::Records { first }, false)))
            }
            Decoder::Ndjson { lines, line } => {
                let mut b = RawBatchBuilder::new(Vec::new());
                let mut at = Vec::with_capacity(page_size.min(1 << 16));
                while b.rows() < page_size {
                    let Some(text) = lines.next() else {
                        *self = Decoder::Done;
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
                Ok((b.rows() > 0).then(|| page(b, RowOrigin::Lines(at), false)))
            }
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(self, Decoder::Done)
    }
}

/// The array at a dotted `path` inside a JSON document.
pub(crate) fn take_records(
    value: Value,
    path: &str,
    file: &Path,
) -> Result<Vec<Value>, FetchError> {
    let mut at = value;
    let mut walked = Vec::new();
    for key in path.split('.').filter(|k| !k.is_empty()) {
        walked.push(key);
        at = match at {
            Value::Object(mut map) => map.remove(key).ok_or_else(|| FetchError::Json {
                path: file.to_path_buf(),
                message: format!("the document has no {:?}", walked.join(".")),
            })?,
            other => {
                return Err(FetchError::Json {
                    path: file.to_path_buf(),
                    message: format!(
                        "expected an object at {:?}, found {}",
                        walked[..walked.len() - 1].join("."),
                        json_kind(&other)
                    ),
                });
            }
        };
    }
    match at {
        Value::Array(items) => Ok(items),
        other => Err(FetchError::Json {
            path: file.to_path_buf(),
            message: format!(
                "expected a JSON array of objects{}, found {}",
                if path.is_empty() {
                    String::new()
                } else {
                    format!(" at {path:?}")
                },
                json_kind(&other)
            ),
        }),
    }
}

pub(crate) fn csv_error(path: &Path, e: &csv::Error) -> FetchError {
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

pub(crate) fn json_kind(v: &Value) -> &'static str {
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
pub(crate) fn json_text(v: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.as_str().into()),
        other => Some(other.to_string().into()),
    }
}

pub(crate) fn append_object(
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

/// A GeoJSON feature as a row: its properties, plus `geometry` as compact GeoJSON and, for a
/// point, `longitude` and `latitude`.
pub(crate) fn append_feature(
    builder: &mut RawBatchBuilder,
    value: &Value,
    origin: &str,
    record: u64,
) -> Result<(), FetchError> {
    let Some(feature) = value.as_object() else {
        return Err(FetchError::Decode {
            origin: origin.to_string(),
            message: format!(
                "feature {record}: expected a GeoJSON feature object, found {}",
                json_kind(value)
            ),
        });
    };
    let props = feature.get("properties").and_then(Value::as_object);
    if let Some(props) = props {
        for (k, v) in props {
            let i = builder.column_index(k);
            builder.append(i, json_text(v).as_deref());
        }
    }
    // Properties of the same names win over the derived columns.
    let has = |name: &str| props.is_some_and(|p| p.contains_key(name));
    if let Some(geometry) = feature.get("geometry").filter(|g| !g.is_null()) {
        if !has("geometry") {
            let i = builder.column_index("geometry");
            builder.append(i, Some(&geometry.to_string()));
        }
        if !has("longitude")
            && !has("latitude")
            && geometry.get("type").and_then(Value::as_str) == Some("Point")
            && let Some([x, y, ..]) = geometry
                .get("coordinates")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
        {
            let i = builder.column_index("longitude");
            builder.append(i, Some(&x.to_string()));
            let i = builder.column_index("latitude");
            builder.append(i, Some(&y.to_string()));
        }
    }
    builder.end_row();
    Ok(())
}

/// A page of JSON objects as received from a portal.
pub fn records_page(
    items: &[Value],
    origin: &str,
    index: usize,
    first_record: u64,
) -> Result<RawPage, FetchError> {
    records_page_with_columns(items, None, origin, index, first_record)
}

/// Like [`records_page`], when the portal also says which fields the dataset has (objects
/// leave out empty fields): every one of them becomes a column, and a field the pipeline
/// names that is not among them is reported as missing rather than read as empty.
pub fn records_page_with_columns(
    items: &[Value],
    columns: Option<Vec<String>>,
    origin: &str,
    index: usize,
    first_record: u64,
) -> Result<RawPage, FetchError> {
    let complete_columns = columns.is_some();
    let mut b = RawBatchBuilder::new(columns.unwrap_or_default());
    for (n, value) in items.iter().enumerate() {
        append_object(&mut b, value, origin, first_record + n as u64)?;
    }
    Ok(RawPage {
        index,
        origin: origin.to_string(),
        complete_columns,
        rows: RowOrigin::Records {
            first: first_record,
        },
        batch: b.finish(),
    })
}

/// A JSON error as `line L column C: what`, with serde_json's own trailing position removed.
pub(crate) fn json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let what = text.strip_suffix(&suffix).unwrap_or(&text);
    format!("line {} column {}: {what}", e.line(), e.column())
}
