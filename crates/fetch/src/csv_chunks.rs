//! CSV read on every core: one thread cuts the document into chunks of a page's records,
//! other threads parse the chunks into pages, and the pages are handed out in document
//! order.
//!
//! Parsing a CSV page (`csv_core`'s state machine, byte by byte, then the copy into
//! columns) was the one part of a file load that ran on a single thread: at 5 million 311
//! rows, the typing and the Parquet encoding waited on it for a fifth of the load. Finding
//! where records end needs far less work than parsing them. A record ends at a `\r` or `\n`
//! outside quotes, and a quote opens a quoted field only at a field's start, so a scan from
//! one quote or line break to the next (`memchr`) finds each page's end. A chunk then starts
//! where a record starts, in the state the parser would be in there, so a parser given the
//! chunk alone reads the fields, lines and errors the document's parser would.

use crate::FetchError;
use crate::csv_pages::CsvPages;
use crate::page::RawPage;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Bytes asked of the input at once.
const READ_BYTES: usize = 256 * 1024;

/// A CSV document's records after its header, cut into chunks of a page's records.
pub(crate) struct CsvChunks<R> {
    input: R,
    header: Arc<[String]>,
    /// The line the document's parser is on at the next chunk's first byte.
    line: u64,
    /// Bytes read past the last cut: the start of the next chunk.
    carry: Vec<u8>,
    /// The input has no more bytes.
    eof: bool,
    /// The size of the last chunk, which the next one probably matches.
    last_len: usize,
    read_bytes: usize,
}

/// A page's records, as bytes, with what a parser needs to read them on its own.
pub(crate) struct Chunk {
    bytes: Vec<u8>,
    /// The line the document's parser is on at the chunk's first byte.
    line: u64,
    /// The records the cut counted: the page's rows when the document is well formed.
    records: usize,
    header: Arc<[String]>,
}

impl<R: BufRead> CsvChunks<R> {
    /// The records of `input`, which is positioned just after the header's first terminator
    /// byte (where `csv_core` stops reading a record) with the parser on `line`.
    pub(crate) fn new(input: R, header: Arc<[String]>, line: u64) -> Self {
        Self {
            input,
            header,
            line,
            carry: Vec::new(),
            eof: false,
            last_len: 0,
            read_bytes: READ_BYTES,
        }
    }

    #[cfg(test)]
    pub(crate) fn with_read_bytes(mut self, n: usize) -> Self {
        self.read_bytes = n.max(1);
        self
    }

    /// The next `page_size` records (fewer at the end), or none when the document is done.
    /// Each chunk ends just after the first byte of its last record's terminator, where the
    /// parser stops: the next chunk starts in the state the parser is in there.
    pub(crate) fn next_chunk(
        &mut self,
        path: &Path,
        page_size: usize,
    ) -> Result<Option<Chunk>, FetchError> {
        let page_size = page_size.max(1);
        let mut bytes = std::mem::take(&mut self.carry);
        bytes.reserve((self.last_len + self.last_len / 8).max(self.read_bytes));
        let mut scan = Scan::default();
        let mut scanned = 0;
        loop {
            if let Some(cut) = scan.find(&bytes, scanned, page_size) {
                self.carry = bytes.split_off(cut);
                break;
            }
            scanned = bytes.len();
            if self.eof {
                break;
            }
            let read = (&mut self.input)
                .take(self.read_bytes as u64)
                .read_to_end(&mut bytes)
                .map_err(|source| FetchError::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
            self.eof = read == 0;
        }
        if bytes.is_empty() {
            return Ok(None);
        }
        let records = scan.records + usize::from(scan.state != State::RecordStart);
        let line = self.line;
        self.line += memchr::memchr_iter(b'\n', &bytes).count() as u64;
        self.last_len = bytes.len();
        Ok(Some(Chunk {
            bytes,
            line,
            records,
            header: self.header.clone(),
        }))
    }
}

impl Chunk {
    /// The chunk's records as page `index` of the document named `path`.
    pub(crate) fn parse(self, path: &Path, index: usize) -> Result<Option<RawPage>, FetchError> {
        // The parser's first read is given one byte alone: `csv_core` strips a byte-order
        // mark from the first bytes it is given, which is right at a document's start but
        // not at a chunk's, where a field may begin with U+FEFF.
        let (first, rest) = self.bytes.split_at(self.bytes.len().min(1));
        CsvPages::resume(
            first.chain(rest),
            self.header,
            self.line,
            self.bytes.len(),
            self.records,
        )
        .read_page(path, usize::MAX, index)
    }
}

/// Where a scan stands, in the terms of `csv_core`'s parser with the `csv` crate's
/// defaults (`,`, `"`, doubled quotes, no escape, no comments, any of `\r`, `\n`, `\r\n`
/// ending a record).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
enum State {
    /// Between records: line breaks are skipped (a blank line is no record).
    #[default]
    RecordStart,
    /// At a field's first byte.
    FieldStart,
    /// In a field that did not start with a quote: quotes in it are text.
    Unquoted,
    /// In a quoted field: delimiters and line breaks are text.
    Quoted,
    /// Just after a quote in a quoted field: a second quote is a quote in the text;
    /// anything else ends the quoting.
    QuoteInQuoted,
}

/// A scan of a chunk for the end of its records.
#[derive(Default)]
struct Scan {
    state: State,
    /// Records ended so far.
    records: usize,
}

impl Scan {
    /// Scan on from `from` (`bytes[..from]` was scanned before): just past the terminator
    /// byte that ends record number `target`, if `bytes` holds it.
    fn find(&mut self, bytes: &[u8], from: usize, target: usize) -> Option<usize> {
        let mut at = from;
        while at < bytes.len() {
            match self.state {
                State::RecordStart => {
                    if bytes[at] == b'\r' || bytes[at] == b'\n' {
                        at += 1;
                    } else {
                        self.state = State::FieldStart;
                    }
                }
                State::FieldStart => {
                    if bytes[at] == b'"' {
                        self.state = State::Quoted;
                        at += 1;
                    } else {
                        self.state = State::Unquoted;
                    }
                }
                State::Unquoted => {
                    let Some(k) = memchr::memchr3(b'"', b'\r', b'\n', &bytes[at..]) else {
                        at = bytes.len();
                        continue;
                    };
                    let p = at + k;
                    at = p + 1;
                    if bytes[p] != b'"' {
                        self.state = State::RecordStart;
                        self.records += 1;
                        if self.records == target {
                            return Some(at);
                        }
                    } else if p > 0 && bytes[p - 1] == b',' {
                        // Every comma outside quotes ends a field: this quote starts one.
                        self.state = State::Quoted;
                    }
                }
                State::Quoted => match memchr::memchr(b'"', &bytes[at..]) {
                    Some(k) => {
                        self.state = State::QuoteInQuoted;
                        at += k + 1;
                    }
                    None => at = bytes.len(),
                },
                State::QuoteInQuoted => {
                    if bytes[at] == b'"' {
                        self.state = State::Quoted;
                        at += 1;
                    } else {
                        // `,` ends the field, a line break the record, and anything else
                        // goes on as unquoted text: each as in an unquoted field.
                        self.state = State::Unquoted;
                    }
                }
            }
        }
        None
    }
}

/// Pages parsed ahead of the caller: up to as many as there are cores (2 to 4).
const MAX_AHEAD: usize = 4;

/// A CSV document's pages, parsed on blocking threads while the caller works on the ones
/// it was given: one thread cuts the document into chunks, each chunk is parsed on a
/// blocking thread of its own, about `ahead` pages are parsed or waiting at once, and the
/// pages come back in order.
pub(crate) struct CsvAhead<R: BufRead + Send + 'static> {
    origin: PathBuf,
    page_size: usize,
    ahead: usize,
    /// The document, until the first page is asked for.
    chunks: Option<CsvChunks<R>>,
    /// The pages being parsed, in document order, then the end.
    parsing: Option<mpsc::Receiver<Cut>>,
    /// The page being waited for: kept when a call is dropped while it waits.
    current: Option<Parsing>,
    /// Every page was handed out.
    finished: bool,
    /// A page failed: the document cannot go on.
    lost: bool,
}

type Parsing = tokio::task::JoinHandle<Result<Option<RawPage>, FetchError>>;

/// What the cutting thread sends.
enum Cut {
    Page(Parsing),
    /// The document was cut through. A channel closed without it means the thread stopped
    /// early (it panicked): the pages it did not cut must not pass for the end.
    End,
}

impl<R: BufRead + Send + 'static> CsvAhead<R> {
    pub(crate) fn new(chunks: CsvChunks<R>, origin: &Path, page_size: usize) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            origin: origin.to_path_buf(),
            page_size: page_size.max(1),
            ahead: cores.clamp(2, MAX_AHEAD),
            chunks: Some(chunks),
            parsing: None,
            current: None,
            finished: false,
            lost: false,
        }
    }

    /// The next page, or none at the end of the document. Cancel-safe: a call dropped while
    /// it waits leaves the page being parsed for the next call.
    pub(crate) async fn next(&mut self) -> Result<Option<RawPage>, FetchError> {
        if self.lost {
            return Err(FetchError::Decode {
                origin: self.origin.display().to_string(),
                message: "an earlier page could not be read".into(),
            });
        }
        if self.finished {
            return Ok(None);
        }
        if let Err(e) = self.start() {
            return Err(self.fail(e));
        }
        if self.current.is_none() {
            let parsing = self.parsing.as_mut().expect("started above");
            match parsing.recv().await {
                Some(Cut::Page(page)) => self.current = Some(page),
                Some(Cut::End) => return Ok(self.finish()),
                None => {
                    let message = "the thread reading the file stopped before its end".into();
                    return Err(self.fail(FetchError::Decode {
                        origin: self.origin.display().to_string(),
                        message,
                    }));
                }
            }
        }
        let joined = self.current.as_mut().expect("set above").await;
        self.current = None;
        match joined {
            Ok(Ok(Some(page))) => Ok(Some(page)),
            Ok(Ok(None)) => Ok(self.finish()),
            Ok(Err(e)) => Err(self.fail(e)),
            Err(e) => {
                let message = format!("reader task failed: {e}");
                Err(self.fail(FetchError::Decode {
                    origin: self.origin.display().to_string(),
                    message,
                }))
            }
        }
    }

    /// The whole document was read.
    pub(crate) fn is_done(&self) -> bool {
        self.finished
    }

    fn finish(&mut self) -> Option<RawPage> {
        self.finished = true;
        self.parsing = None;
        None
    }

    /// Stop cutting: dropping the receiver ends the cutting thread at its next chunk.
    fn fail(&mut self, e: FetchError) -> FetchError {
        self.lost = true;
        self.parsing = None;
        e
    }

    /// Start the thread that cuts the document, unless it runs. It is a thread of its own,
    /// not the runtime's: a runtime shut down while the thread waits for room in the
    /// channel does not wait for it.
    fn start(&mut self) -> Result<(), FetchError> {
        let Some(mut chunks) = self.chunks.take() else {
            return Ok(());
        };
        let (tx, rx) = mpsc::channel::<Cut>(self.ahead);
        let runtime = tokio::runtime::Handle::current();
        let (origin, page_size) = (self.origin.clone(), self.page_size);
        let cutting = move || {
            for index in 0.. {
                let (cut, last) = match chunks.next_chunk(&origin, page_size) {
                    Ok(Some(chunk)) => {
                        let origin = origin.clone();
                        let parsing = runtime.spawn_blocking(move || chunk.parse(&origin, index));
                        (Cut::Page(parsing), false)
                    }
                    Ok(None) => (Cut::End, true),
                    Err(e) => (Cut::Page(runtime.spawn_blocking(move || Err(e))), true),
                };
                // The reader went away (it failed, or stopped early): stop.
                if tx.blocking_send(cut).is_err() || last {
                    return;
                }
            }
        };
        std::thread::Builder::new()
            .name("goalpost-csv".into())
            .spawn(cutting)
            .map_err(|source| FetchError::Io {
                path: self.origin.clone(),
                source,
            })?;
        self.parsing = Some(rx);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scan `text` whole for the end of record `target`.
    fn cut(text: &[u8], target: usize) -> Option<usize> {
        Scan::default().find(text, 0, target)
    }

    #[test]
    fn a_record_ends_at_a_line_break_outside_quotes() {
        assert_eq!(cut(b"1,2\n3,4\n", 1), Some(4));
        assert_eq!(cut(b"1,2\r\n3,4\r\n", 1), Some(4));
        assert_eq!(cut(b"1,2\r\n3,4\r\n", 2), Some(9));
        // Blank lines are no records.
        assert_eq!(cut(b"\n\n1\n\r\n2\n", 2), Some(8));
        assert_eq!(cut(b"\"a\nb\",c\nd\n", 1), Some(8));
        assert_eq!(cut(b"\"a\"\"\n\",c\nd\n", 1), Some(9));
        // A quote inside an unquoted field is text, and opens nothing.
        assert_eq!(cut(b"5\" pipe,x\ny\n", 1), Some(10));
        // Text after a closing quote goes on unquoted.
        assert_eq!(cut(b"\"q\"tail,y\nz\n", 1), Some(10));
        assert_eq!(cut(b"a,\"b\nc\"\nd\n", 1), Some(8));
        assert_eq!(cut(b"1,2\n3,4", 2), None);
    }

    /// Input that gives `good`, then panics, as a reader with a bug would.
    struct Breaks {
        good: &'static [u8],
    }

    impl Read for Breaks {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            assert!(!self.good.is_empty(), "a reader bug");
            self.good.read(out)
        }
    }

    #[tokio::test]
    async fn a_cutting_thread_that_dies_is_an_error_not_the_end_of_the_file() {
        let path = Path::new("t.csv");
        let input = std::io::BufReader::new(Breaks {
            good: b"a,b\n1,2\n3,4\n",
        });
        let pages = CsvPages::open(input, path).unwrap();
        let mut ahead = CsvAhead::new(pages.into_chunks(), path, 1);
        let e = loop {
            match ahead.next().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("a panic in the reader passed for the end of the file"),
                Err(e) => break e,
            }
        };
        assert!(e.to_string().contains("stopped before its end"), "{e}");
        assert!(!ahead.is_done());
    }

    #[test]
    fn a_scan_resumed_on_more_bytes_finds_the_same_end() {
        let text: &[u8] = b"x,\"a\"\"b\nc\",5\" d\r\n\"q\"t,u\n";
        let whole = cut(text, 2);
        assert_eq!(whole, Some(text.len()));
        for split in 0..text.len() {
            let mut scan = Scan::default();
            let first = scan.find(&text[..split], 0, 2);
            let end = first.or_else(|| scan.find(text, split, 2));
            assert_eq!(end, whole, "split at {split}");
        }
    }
}
