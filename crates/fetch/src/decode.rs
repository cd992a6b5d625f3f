//! Decoding documents into raw pages: CSV with a header row, a JSON array of objects (the
//! shape of a Socrata `.json` response, or an array inside a larger document), newline-delimited
//! JSON and GeoJSON feature collections. Shared by the `file` and `http` sources, and the JSON
//! helpers by every portal connector.

use crate::FetchError;
use crate::csv_chunks::CsvAhead;
use crate::csv_pages::CsvPages;
use crate::page::{RawBatchBuilder, RawPage, RowOrigin};
use goalpost_spec::FileFormat;
use serde_json::Value;
use std::io::BufRead;
use std::path::Path;

/// A document being read page by page. `R` is a file or an in-memory body.
pub(crate) enum Decoder<R: BufRead> {
    Csv(Box<CsvPages<R>>),
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
            FileFormat::Csv => Decoder::Csv(Box::new(CsvPages::open(input, path)?)),
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
        // JSON leaves out empty fields: a page's columns are those its records had.
        let page = |mut b: RawBatchBuilder, rows| RawPage {
            index,
            origin: origin.clone(),
            complete_columns: false,
            rows,
            batch: b.finish(),
        };
        match self {
            Decoder::Done => Ok(None),
            Decoder::Csv(pages) => {
                let page = pages.read_page(path, page_size, index)?;
                if page.is_none() {
                    *self = Decoder::Done;
                }
                Ok(page)
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
                Ok(Some(page(b, RowOrigin::Records { first })))
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
                Ok((b.rows() > 0).then(|| page(b, RowOrigin::Lines(at))))
            }
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(self, Decoder::Done)
    }
}

/// A document's pages read ahead on blocking threads while the caller types and writes the
/// one it was given, so reading overlaps the rest of a load instead of taking turns with it.
/// CSV is parsed on several threads at once ([`CsvAhead`]); the other formats one page
/// ahead.
pub(crate) enum PagesAhead<R: BufRead + Send + 'static> {
    Csv(CsvAhead<R>),
    Serial(SerialAhead<R>),
}

impl<R: BufRead + Send + 'static> PagesAhead<R> {
    pub(crate) fn new(decoder: Decoder<R>, origin: &Path, page_size: usize) -> Self {
        match decoder {
            Decoder::Csv(pages) => {
                PagesAhead::Csv(CsvAhead::new(pages.into_chunks(), origin, page_size))
            }
            other => PagesAhead::Serial(SerialAhead::new(other, origin, page_size)),
        }
    }

    /// The next page, or none at the end of the document. Cancel-safe: a call dropped while
    /// it waits leaves the page being read for the next call.
    pub(crate) async fn next(&mut self) -> Result<Option<RawPage>, FetchError> {
        match self {
            PagesAhead::Csv(pages) => pages.next().await,
            PagesAhead::Serial(pages) => pages.next().await,
        }
    }

    /// The whole document was read.
    pub(crate) fn is_done(&self) -> bool {
        match self {
            PagesAhead::Csv(pages) => pages.is_done(),
            PagesAhead::Serial(pages) => pages.is_done(),
        }
    }
}

/// A document's pages read on a blocking thread one page ahead.
pub(crate) struct SerialAhead<R: BufRead + Send + 'static> {
    /// The document's name in messages.
    origin: std::path::PathBuf,
    page_size: usize,
    /// The number of the next page to hand out (from 0).
    next_index: usize,
    /// The decoder, when no page is being read and the document is not done.
    decoder: Option<Box<Decoder<R>>>,
    ahead: Option<Reading<R>>,
    /// The reading task failed and the decoder went with it: the document cannot go on.
    lost: bool,
}

/// A page being read: the decoder comes back with it.
type Reading<R> = tokio::task::JoinHandle<(Box<Decoder<R>>, Result<Option<RawPage>, FetchError>)>;

impl<R: BufRead + Send + 'static> SerialAhead<R> {
    fn new(decoder: Decoder<R>, origin: &Path, page_size: usize) -> Self {
        Self {
            origin: origin.to_path_buf(),
            page_size: page_size.max(1),
            next_index: 0,
            decoder: Some(Box::new(decoder)),
            ahead: None,
            lost: false,
        }
    }

    async fn next(&mut self) -> Result<Option<RawPage>, FetchError> {
        let origin = self.origin.display().to_string();
        let failed = |message: String| FetchError::Decode { origin, message };
        if self.lost {
            return Err(failed("an earlier page could not be read".into()));
        }
        self.read_ahead();
        let Some(reading) = self.ahead.as_mut() else {
            return Ok(None);
        };
        let joined = reading.await;
        self.ahead = None;
        let (decoder, result) = joined.map_err(|e| {
            self.lost = true;
            failed(format!("reader task failed: {e}"))
        })?;
        if !decoder.is_done() {
            self.decoder = Some(decoder);
        }
        let page = result?;
        if page.is_some() {
            self.next_index += 1;
            self.read_ahead();
        }
        Ok(page)
    }

    fn is_done(&self) -> bool {
        self.decoder.is_none() && self.ahead.is_none() && !self.lost
    }

    /// Start reading the next page, unless one is being read or the document is done.
    fn read_ahead(&mut self) {
        if self.ahead.is_some() {
            return;
        }
        let Some(mut decoder) = self.decoder.take() else {
            return;
        };
        let origin = self.origin.clone();
        let (page_size, index) = (self.page_size, self.next_index);
        self.ahead = Some(tokio::task::spawn_blocking(move || {
            let r = decoder.read_page(&origin, page_size, index);
            (decoder, r)
        }));
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

/// Why [`records_page_from_json`] could not read a body.
#[derive(Debug)]
pub(crate) enum JsonPageError {
    /// The body is not JSON, or not an array.
    Syntax(serde_json::Error),
    /// An element of the array is not an object.
    Shape(FetchError),
}

/// Like [`records_page_with_columns`], reading the objects straight from `body` (a JSON
/// array) into the page's columns. No tree of JSON values is built first: for a page of
/// 50,000 records that tree takes several times the body's size. The page is the one
/// [`records_page_with_columns`] makes of the parsed array: the fields of each object in the
/// order of their names, the last of two fields of one name winning, numbers and booleans
/// as their JSON text, nested values as compact JSON, null as missing.
pub(crate) fn records_page_from_json(
    body: &[u8],
    columns: Option<Vec<String>>,
    origin: &str,
    index: usize,
    first_record: u64,
) -> Result<RawPage, JsonPageError> {
    use serde::de::DeserializeSeed as _;
    let complete_columns = columns.is_some();
    let mut builder = RawBatchBuilder::new(columns.unwrap_or_default());
    let mut shape = None;
    let mut de = serde_json::Deserializer::from_slice(body);
    let read = json_stream::Records {
        builder: &mut builder,
        origin,
        first: first_record,
        shape: &mut shape,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    if let Some(e) = shape {
        // A body broken further on is a syntax error (worth another attempt) first, as it
        // is when the whole array is parsed before its elements are looked at.
        if let Err(syntax) = serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            return Err(JsonPageError::Syntax(syntax));
        }
        return Err(JsonPageError::Shape(e));
    }
    read.map_err(JsonPageError::Syntax)?;
    Ok(RawPage {
        index,
        origin: origin.to_string(),
        complete_columns,
        rows: RowOrigin::Records {
            first: first_record,
        },
        batch: builder.finish(),
    })
}

/// The serde visitors of [`records_page_from_json`].
mod json_stream {
    use super::{FetchError, RawBatchBuilder};
    use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
    use std::borrow::Cow;
    use std::fmt;

    /// A field of one record: its name and text.
    type Field<'de> = (Cow<'de, str>, Option<Cow<'de, str>>);

    /// The top-level array.
    pub(super) struct Records<'a> {
        pub(super) builder: &'a mut RawBatchBuilder,
        pub(super) origin: &'a str,
        pub(super) first: u64,
        /// Set when an element is not an object (the serde error then only stops the parse).
        pub(super) shape: &'a mut Option<FetchError>,
    }

    impl<'de> DeserializeSeed<'de> for Records<'_> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }

    impl<'de> Visitor<'de> for Records<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a sequence")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            let mut fields: Vec<Field<'de>> = Vec::new();
            let mut record = self.first;
            while seq
                .next_element_seed(Record {
                    builder: &mut *self.builder,
                    fields: &mut fields,
                    origin: self.origin,
                    record,
                    shape: &mut *self.shape,
                })?
                .is_some()
            {
                record += 1;
            }
            Ok(())
        }
    }

    /// One element of the array, which must be an object.
    struct Record<'a, 'de> {
        builder: &'a mut RawBatchBuilder,
        fields: &'a mut Vec<Field<'de>>,
        origin: &'a str,
        record: u64,
        shape: &'a mut Option<FetchError>,
    }

    impl Record<'_, '_> {
        fn not_an_object<E: de::Error>(self, found: &str) -> Result<(), E> {
            *self.shape = Some(FetchError::Decode {
                origin: self.origin.to_string(),
                message: format!(
                    "record {}: expected a JSON object, found {found}",
                    self.record
                ),
            });
            Err(E::custom("an element is not an object"))
        }
    }

    impl<'de> DeserializeSeed<'de> for Record<'_, 'de> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Record<'_, 'de> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            self.fields.clear();
            while let Some(name) = map.next_key_seed(Name)? {
                let text = map.next_value_seed(Text)?;
                self.fields.push((name, text));
            }
            // As a parsed object holds them: by name, the last of one name winning (the sort
            // is stable, so the last stays last).
            self.fields.sort_by(|a, b| a.0.cmp(&b.0));
            for (at, (name, text)) in self.fields.iter().enumerate() {
                if self.fields.get(at + 1).is_some_and(|next| next.0 == *name) {
                    continue;
                }
                let i = self.builder.column_index(name);
                self.builder.append(i, text.as_deref());
            }
            self.builder.end_row();
            Ok(())
        }
        fn visit_unit<E: de::Error>(self) -> Result<(), E> {
            self.not_an_object("null")
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
            self.not_an_object("a boolean")
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
            self.not_an_object("a number")
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
            self.not_an_object("a number")
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
            self.not_an_object("a number")
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
            self.not_an_object("a string")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
            self.not_an_object("an array")
        }
    }

    /// A field name, borrowed from the body when it holds no escapes.
    struct Name;

    impl<'de> DeserializeSeed<'de> for Name {
        type Value = Cow<'de, str>;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(self)
        }
    }

    impl<'de> Visitor<'de> for Name {
        type Value = Cow<'de, str>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a field name")
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Cow::Borrowed(v))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Cow::Owned(v.to_string()))
        }
    }

    /// A field's value as raw text (see [`super::json_text`]).
    struct Text;

    impl<'de> DeserializeSeed<'de> for Text {
        type Value = Option<Cow<'de, str>>;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Text {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value")
        }
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(if v { "true" } else { "false" })))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            // As a parsed number prints.
            serde_json::Number::from_f64(v)
                .map(|n| Some(Cow::Owned(n.to_string())))
                .ok_or_else(|| E::custom("a number that is not finite"))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            let v: serde_json::Value =
                de::Deserialize::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
            Ok(Some(Cow::Owned(v.to_string())))
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            let v: serde_json::Value =
                de::Deserialize::deserialize(de::value::MapAccessDeserializer::new(map))?;
            Ok(Some(Cow::Owned(v.to_string())))
        }
    }
}

/// A JSON error as `line L column C: what`, with serde_json's own trailing position removed.
pub(crate) fn json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let what = text.strip_suffix(&suffix).unwrap_or(&text);
    format!("line {} column {}: {what}", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The page the parsed array gives, the reference for the streamed one.
    fn parsed(body: &str, columns: Option<Vec<String>>) -> RawPage {
        let items: Vec<Value> = serde_json::from_str(body).unwrap();
        records_page_with_columns(&items, columns, "p", 3, 11).unwrap()
    }

    fn streamed(body: &str, columns: Option<Vec<String>>) -> Result<RawPage, JsonPageError> {
        records_page_from_json(body.as_bytes(), columns, "p", 3, 11)
    }

    fn same(body: &str, columns: Option<Vec<String>>) {
        let a = parsed(body, columns.clone());
        let b = streamed(body, columns).unwrap();
        assert_eq!(a.batch, b.batch, "{body}");
        assert_eq!(a.complete_columns, b.complete_columns);
        assert_eq!(b.locate(1), "record 12");
    }

    #[test]
    fn a_streamed_page_is_the_page_of_the_parsed_array() {
        same("[]", None);
        same(r#"[{"b":"x","a":1},{"a":2.50,"c":true},{}]"#, None);
        same(
            r#"[{"a":null,"b":[1,{"z":"q"}],"c":{"y":[],"x":"\"quoted\", with comma"}}]"#,
            None,
        );
        same(
            r#"[{"a":"first","a":"second","b":-0.0,"c":1e300,"d":18446744073709551615}]"#,
            None,
        );
        same(
            r#"[{"\u00e9t\u00e9":"caf\u00e9 \ud83d\ude00","line":"a\nb"}]"#,
            None,
        );
        same(
            r#"[{"b":"1"},{"zz":"2"}]"#,
            Some(vec!["zz".to_string(), "b".to_string(), "gone".to_string()]),
        );
    }

    #[test]
    fn an_element_that_is_not_an_object_is_named_by_its_record() {
        let Err(JsonPageError::Shape(e)) = streamed(r#"[{"a":1},{"a":2},[3]]"#, None) else {
            panic!("an array element is a shape error");
        };
        assert_eq!(
            e.to_string(),
            FetchError::Decode {
                origin: "p".into(),
                message: "record 13: expected a JSON object, found an array".into()
            }
            .to_string()
        );
        // Broken further on: the syntax error comes first, as for the parsed array.
        let Err(JsonPageError::Syntax(_)) = streamed(r#"[1, {"a":"#, None) else {
            panic!("a body broken after a non-object is a syntax error");
        };
        for (body, found) in [
            ("[1]", "a number"),
            ("[null]", "null"),
            ("[\"s\"]", "a string"),
        ] {
            let Err(JsonPageError::Shape(e)) = streamed(body, None) else {
                panic!("{body}");
            };
            assert!(
                e.to_string()
                    .contains(&format!("record 11: expected a JSON object, found {found}")),
                "{e}"
            );
        }
    }

    #[test]
    fn a_body_that_is_not_an_array_of_json_is_a_syntax_error_with_its_position() {
        for (body, what) in [
            (
                r#"{"error":true}"#,
                "line 1 column 0: invalid type: map, expected a sequence",
            ),
            (
                r#"[{"a":1},{"a":"#,
                "line 1 column 14: EOF while parsing a value",
            ),
            (
                r#"[{"a":1}] trailing"#,
                "line 1 column 11: trailing characters",
            ),
        ] {
            let Err(JsonPageError::Syntax(e)) = streamed(body, None) else {
                panic!("{body}");
            };
            let reference = serde_json::from_str::<Vec<Value>>(body).unwrap_err();
            assert_eq!(json_error(&e), json_error(&reference), "{body}");
            assert_eq!(json_error(&e), what, "{body}");
        }
    }

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".{0,12}".prop_map(Value::String),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        scalar().prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map("[a-c]{1,2}", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_array_of_objects_streams_to_the_page_it_parses_to(
            records in prop::collection::vec(
                prop::collection::vec(("[a-e]{1,2}|é|\"q\"", value()), 0..6),
                0..6,
            )
        ) {
            // Objects written out by hand, so that a name may come twice.
            let body = format!(
                "[{}]",
                records
                    .iter()
                    .map(|fields| format!(
                        "{{{}}}",
                        fields
                            .iter()
                            .map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), v))
                            .collect::<Vec<_>>()
                            .join(",")
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let a = parsed(&body, None);
            let b = streamed(&body, None).unwrap();
            prop_assert_eq!(a.batch, b.batch, "{}", body);
        }
    }
}
