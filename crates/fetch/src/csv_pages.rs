//! CSV read page by page into columns: `csv_core`'s parser writes a page's fields one after
//! the other into one buffer, and each column's values are then copied out of it once.
//!
//! The `csv` crate's reader copies every field twice (into its record, then into the page's
//! column) and checks each record's UTF-8 on its own; at 5 million 311 rows that was a
//! third of a load's processor time, on the one thread that reads the file. Here the
//! parser is the same (`csv_core`, with the `csv` crate's defaults: `,`, `"`, doubled
//! quotes, any of `\r`, `\n`, `\r\n` ending a record, blank lines skipped), so the same
//! bytes give the same fields, and each record's line is the one the `csv` crate gives.

use crate::FetchError;
use crate::csv_chunks::CsvChunks;
use crate::page::{RawPage, RowOrigin};
use arrow::array::{ArrayRef, StringArray};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

/// The bytes a page's field buffer grows by at least.
const GROW_BYTES: usize = 64 * 1024;

/// A CSV document with a header row, read page by page.
pub(crate) struct CsvPages<R: BufRead> {
    input: R,
    core: csv_core::Reader,
    header: Arc<[String]>,
    /// The page's fields, one after the other; `data.len()` is its capacity (kept
    /// initialized), `used` the bytes written.
    data: Vec<u8>,
    used: usize,
    /// Where each field of the page ends in `data`; `ends.len()` is its capacity.
    ends: Vec<usize>,
    fields: usize,
}

impl<R: BufRead> CsvPages<R> {
    /// Read the header row of `input` (named `path` in messages).
    pub(crate) fn open(mut input: R, path: &Path) -> Result<Self, FetchError> {
        // A byte-order mark is not part of the first column's name.
        let first = input.fill_buf().map_err(|e| io(path, e))?;
        if first.starts_with(b"\xEF\xBB\xBF") {
            input.consume(3);
        }
        let mut pages = Self {
            input,
            core: csv_core::Reader::new(),
            header: Arc::new([]),
            data: vec![0; GROW_BYTES],
            used: 0,
            ends: vec![0; 64],
            fields: 0,
        };
        if pages.read_record(path)? {
            let mut header = Vec::with_capacity(pages.fields);
            for i in 0..pages.fields {
                let field = pages.field(i);
                let name = std::str::from_utf8(field).map_err(|_| FetchError::Csv {
                    path: path.to_path_buf(),
                    line: 1,
                    message: format!("the header's field {} is not valid UTF-8", i + 1),
                })?;
                if header.iter().any(|h| h == name) {
                    return Err(FetchError::Csv {
                        path: path.to_path_buf(),
                        line: 1,
                        message: format!("the header names column {name:?} twice"),
                    });
                }
                header.push(name.to_string());
            }
            pages.header = header.into();
        }
        pages.clear();
        Ok(pages)
    }

    /// Read records of a document whose header was read elsewhere, from `input` on, which
    /// starts where a record may start (after a record's terminator) with the parser on
    /// `line`. The buffers start at the size of `bytes` of input holding `records` rows.
    pub(crate) fn resume(
        input: R,
        header: Arc<[String]>,
        line: u64,
        bytes: usize,
        records: usize,
    ) -> Self {
        let mut core = csv_core::Reader::new();
        core.set_line(line);
        Self {
            input,
            core,
            data: vec![0; bytes + 1],
            used: 0,
            // One more than the fields: the parser asks for room before it finds the end.
            ends: vec![0; (records * header.len() + 1).max(64)],
            fields: 0,
            header,
        }
    }

    /// The records after the header, to be cut into chunks and parsed on several threads.
    pub(crate) fn into_chunks(self) -> CsvChunks<R> {
        CsvChunks::new(self.input, self.header, self.core.line())
    }

    /// Read up to `page_size` rows (none at the end of the document).
    pub(crate) fn read_page(
        &mut self,
        path: &Path,
        page_size: usize,
        index: usize,
    ) -> Result<Option<RawPage>, FetchError> {
        let width = self.header.len();
        let mut lines = Vec::with_capacity(page_size.min(1 << 16));
        self.clear();
        while lines.len() < page_size {
            // As the `csv` crate counts: the line the parser is on when the record starts.
            let line = self.core.line();
            let before = self.fields;
            if !self.read_record(path)? {
                break;
            }
            let n = self.fields - before;
            if n != width {
                return Err(FetchError::Csv {
                    path: path.to_path_buf(),
                    line,
                    message: format!("row has {n} fields; expected {width} as in the header"),
                });
            }
            lines.push(line);
        }
        if lines.is_empty() {
            return Ok(None);
        }
        let batch = self.columns(path, &lines)?;
        Ok(Some(RawPage {
            index,
            origin: path.display().to_string(),
            complete_columns: true,
            rows: RowOrigin::Lines(lines),
            batch,
        }))
    }

    fn clear(&mut self) {
        self.used = 0;
        self.fields = 0;
    }

    /// Field `i` of the page (or of the header, while it is read).
    fn field(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.data[start..self.ends[i]]
    }

    /// Append the next record's fields; false at the end of the document.
    fn read_record(&mut self, path: &Path) -> Result<bool, FetchError> {
        use csv_core::ReadRecordResult::*;
        let base = self.used;
        loop {
            if self.used == self.data.len() {
                let grow = self.data.len().max(GROW_BYTES);
                self.data.resize(self.data.len() + grow, 0);
            }
            if self.fields == self.ends.len() {
                self.ends.resize(self.ends.len() * 2, 0);
            }
            let input = self.input.fill_buf().map_err(|e| io(path, e))?;
            let (result, nin, nout, nend) = self.core.read_record(
                input,
                &mut self.data[self.used..],
                &mut self.ends[self.fields..],
            );
            self.input.consume(nin);
            self.used += nout;
            // The parser counts a record's field ends from the record's first byte.
            for end in &mut self.ends[self.fields..self.fields + nend] {
                *end += base;
            }
            self.fields += nend;
            match result {
                InputEmpty | OutputFull | OutputEndsFull => continue,
                Record => return Ok(true),
                End => return Ok(false),
            }
        }
    }

    /// The page's fields as one nullable UTF-8 column per header name; an empty field is
    /// null, as portals write missing values.
    fn columns(&self, path: &Path, lines: &[u64]) -> Result<RecordBatch, FetchError> {
        let width = self.header.len();
        let rows = lines.len();
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(width);
        for c in 0..width {
            let field = |r: usize| self.field(r * width + c);
            let bytes: usize = (0..rows).map(|r| field(r).len()).sum();
            i32::try_from(bytes).map_err(|_| FetchError::Csv {
                path: path.to_path_buf(),
                line: lines[0],
                message: format!(
                    "column {:?} holds {bytes} bytes in one page, more than a page can; \
                     read it with a smaller page_size",
                    self.header[c]
                ),
            })?;
            let mut values = Vec::with_capacity(bytes);
            let mut offsets = Vec::with_capacity(rows + 1);
            let mut valid = Vec::with_capacity(rows);
            offsets.push(0i32);
            for r in 0..rows {
                let f = field(r);
                values.extend_from_slice(f);
                // Fits: the column's total was checked above.
                offsets.push(values.len() as i32);
                valid.push(!f.is_empty());
            }
            let nulls = NullBuffer::from(valid);
            let nulls = (nulls.null_count() > 0).then_some(nulls);
            let array =
                StringArray::try_new(OffsetBuffer::new(offsets.into()), values.into(), nulls)
                    .map_err(|_| self.not_utf8(path, lines))?;
            arrays.push(Arc::new(array));
        }
        let fields: Vec<Field> = self
            .header
            .iter()
            .map(|n| Field::new(n, DataType::Utf8, true))
            .collect();
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        // Invariant: every column has exactly `rows` entries.
        Ok(
            RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)
                .expect("raw columns are all Utf8 and equally long"),
        )
    }

    /// The error naming the page's first field, in reading order, that is not UTF-8 on its
    /// own: the one the `csv` crate would have stopped at.
    fn not_utf8(&self, path: &Path, lines: &[u64]) -> FetchError {
        let width = self.header.len().max(1);
        let at = (0..lines.len() * self.header.len())
            .find(|i| std::str::from_utf8(self.field(*i)).is_err())
            .unwrap_or(0);
        FetchError::Csv {
            path: path.to_path_buf(),
            line: lines[at / width],
            message: format!("field {} is not valid UTF-8", at % width + 1),
        }
    }
}

fn io(path: &Path, source: std::io::Error) -> FetchError {
    FetchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use proptest::prelude::*;

    /// Every page of `text`, as rows of optional fields with their lines, or the error.
    fn pages(text: &[u8], page_size: usize) -> Result<(Vec<String>, Vec<Row>), String> {
        let path = Path::new("t.csv");
        let mut pages = CsvPages::open(text, path).map_err(|e| e.to_string())?;
        let header = pages.header.to_vec();
        let mut rows = Vec::new();
        let mut index = 0;
        while let Some(page) = pages
            .read_page(path, page_size, index)
            .map_err(|e| e.to_string())?
        {
            add_rows(&page, index, page_size, &header, &mut rows);
            index += 1;
        }
        Ok((header, rows))
    }

    /// The same, read as the load reads files: cut into chunks (reading `read_bytes` at a
    /// time) and each chunk parsed on its own.
    fn chunked(
        text: &[u8],
        page_size: usize,
        read_bytes: usize,
    ) -> Result<(Vec<String>, Vec<Row>), String> {
        let path = Path::new("t.csv");
        let pages = CsvPages::open(text, path).map_err(|e| e.to_string())?;
        let header = pages.header.to_vec();
        let mut chunks = pages.into_chunks().with_read_bytes(read_bytes);
        let mut rows = Vec::new();
        let mut index = 0;
        while let Some(chunk) = chunks
            .next_chunk(path, page_size)
            .map_err(|e| e.to_string())?
        {
            let Some(page) = chunk.parse(path, index).map_err(|e| e.to_string())? else {
                // Only the last chunk can hold no record (blank lines at the end).
                assert!(chunks.next_chunk(path, page_size).unwrap().is_none());
                break;
            };
            add_rows(&page, index, page_size, &header, &mut rows);
            index += 1;
        }
        Ok((header, rows))
    }

    fn add_rows(
        page: &RawPage,
        index: usize,
        page_size: usize,
        header: &[String],
        rows: &mut Vec<Row>,
    ) {
        assert_eq!(page.index, index);
        assert!(page.num_rows() <= page_size);
        let names: Vec<String> = (page.batch.schema().fields().iter())
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, header);
        for r in 0..page.num_rows() {
            let fields = (0..header.len())
                .map(|c| {
                    let col = page.batch.column(c).as_string::<i32>();
                    (!col.is_null(r)).then(|| col.value(r).to_string())
                })
                .collect();
            rows.push((page.locate(r), fields));
        }
    }

    type Row = (String, Vec<Option<String>>);

    /// The same document read with the `csv` crate, as the decoder read it before.
    fn reference(text: &[u8]) -> Result<(Vec<String>, Vec<Row>), String> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .from_reader(text);
        let err = |e: csv::Error| {
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
                path: "t.csv".into(),
                line,
                message,
            }
            .to_string()
        };
        let header: Vec<String> = reader
            .headers()
            .map_err(err)?
            .iter()
            .map(|h| h.trim_start_matches('\u{feff}').to_string())
            .collect();
        let mut rows = Vec::new();
        let mut record = csv::StringRecord::new();
        while reader.read_record(&mut record).map_err(err)? {
            let line = record.position().map_or(0, |p| p.line());
            let fields = record
                .iter()
                .map(|f| (!f.is_empty()).then(|| f.to_string()))
                .collect();
            rows.push((format!("line {line}"), fields));
        }
        Ok((header, rows))
    }

    #[test]
    fn fields_lines_and_errors_are_the_csv_crates() {
        let cases: &[&[u8]] = &[
            b"a,b\n1,2\n3,4\n",
            b"a,b\r\n1,2\r\n3,4",
            b"\xEF\xBB\xBFid,name\n1,x\n",
            b"a,b\n\"x, y\",\"say \"\"hi\"\"\"\n\"multi\nline\",z\n5,6\n",
            b"a,b\n1,2\n\n\n3,4\n",
            b"a,b\n,\n1,\n,2\n",
            b"a,b\n1,2\n3\n",
            b"a,b\n1,2,3\n",
            b"a,b\n1,caf\xC3\xA9\n2,\xC3\n",
            b"a,b\n\xC3,\xA9\n",
            b"a,b\n1,2\n3,\xFF\n\xFF,4\n",
            b"a,b\n5\" pipe,x\n\"q\"tail,y\n",
            b"",
            b"a\n",
            b"a,a\n1,2\n",
            // A field that starts with a byte-order mark, at the start of a page.
            b"a\n1\n\xEF\xBB\xBFx\n\xEF\xBB\xBF\n",
            b"a,b\r\n\r\n1,2\r\r\n\n3,4\r\n\n\n",
            b"a,b\n\"1\n\n\",\"x\"\"\ny\"\n\"\"\"\",\"\n",
            b"a,b\n1,\"open\n2,3\n",
        ];
        for text in cases {
            for page_size in [1, 2, 1000] {
                let want = reference(text);
                let read = [pages(text, page_size)]
                    .into_iter()
                    .chain([1, 2, 3, 1000].map(|r| chunked(text, page_size, r)));
                for got in read {
                    match (&got, &want) {
                        (Ok(g), Ok(w)) => {
                            assert_eq!(g, w, "{:?}", String::from_utf8_lossy(text))
                        }
                        (Err(g), Err(w)) if g == w => {}
                        // The header check is the decoder's own.
                        (Err(g), _) if g.contains("names column \"a\" twice") => {}
                        _ => panic!(
                            "{:?}: got {got:?}, the csv crate gives {want:?}",
                            String::from_utf8_lossy(text)
                        ),
                    }
                }
            }
        }
    }

    #[test]
    fn a_field_larger_than_the_buffer_grows_it() {
        let long = "x".repeat(3 * GROW_BYTES + 17);
        let text = format!("a,b\n{long},\"{long}\"\n1,2\n");
        let (_, rows) = pages(text.as_bytes(), 10).unwrap();
        assert_eq!(rows[0].1, [Some(long.clone()), Some(long)]);
        assert_eq!(
            rows[1],
            (
                "line 3".to_string(),
                vec![Some("1".into()), Some("2".into())]
            )
        );
    }

    fn field() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), "[a-z0-9 ]{0,6}", "[a-z,\"\n\r é]{0,6}",]
    }

    proptest! {
        #[test]
        fn any_document_reads_as_the_csv_crate_reads_it(
            rows in proptest::collection::vec(proptest::collection::vec(field(), 1..4), 1..12),
            quote_all in any::<bool>(),
            // Fields written as they are, quotes and line breaks too: often not CSV at all.
            raw in any::<bool>(),
            crlf in any::<bool>(),
            page_size in 1usize..5,
            read_bytes in 1usize..40,
        ) {
            let end = if crlf { "\r\n" } else { "\n" };
            let header: Vec<String> = (0..rows[0].len()).map(|i| format!("h{i}")).collect();
            let text: String = std::iter::once(header.join(",") + end)
                .chain(rows.iter()
                .map(|r| {
                    let fields: Vec<String> = r
                        .iter()
                        .map(|f| {
                            if !raw && (quote_all || f.contains([',', '"', '\n', '\r'])) {
                                format!("\"{}\"", f.replace('"', "\"\""))
                            } else {
                                f.clone()
                            }
                        })
                        .collect();
                    fields.join(",") + end
                }))
                .collect();
            let want = reference(text.as_bytes());
            for got in [
                pages(text.as_bytes(), page_size),
                chunked(text.as_bytes(), page_size, read_bytes),
            ] {
                match (&got, &want) {
                    (Ok(g), Ok(w)) => prop_assert_eq!(g, w),
                    (Err(g), Err(w)) => prop_assert_eq!(g, w),
                    _ => prop_assert!(false, "{:?}: got {:?}, the csv crate gives {:?}", text, got, want),
                }
            }
        }
    }
}
