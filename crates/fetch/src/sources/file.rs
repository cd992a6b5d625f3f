//! The `file` source: a CSV file with a header row, a JSON array of objects (the shape of a
//! Socrata `.json` response), newline-delimited JSON or GeoJSON, read from disk in pages.

use crate::decode::{Decoder, PagesAhead, guess_format};
use crate::page::RawPage;
use crate::{FetchError, Source};
use async_trait::async_trait;
use goalpost_spec::{FileFormat, FileSource};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// Reads a file page by page; each page is read while the one before is typed and written.
pub struct FileReader {
    path: PathBuf,
    pages: PagesAhead<BufReader<File>>,
}

impl FileReader {
    pub fn open(cfg: &FileSource, base_dir: &Path) -> Result<Self, FetchError> {
        let path = base_dir.join(&cfg.path);
        let format = cfg
            .format
            .or_else(|| guess_format(&cfg.path))
            .unwrap_or(FileFormat::Csv);
        let file = File::open(&path).map_err(|source| FetchError::Io {
            path: path.clone(),
            source,
        })?;
        let decoder = Decoder::open(BufReader::new(file), format, &path, None)?;
        Ok(Self {
            pages: PagesAhead::new(decoder, &path, cfg.page_size),
            path,
        })
    }
}

#[async_trait]
impl Source for FileReader {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    async fn next_page(&mut self) -> Result<Option<RawPage>, FetchError> {
        self.pages.next().await
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
    async fn pages_read_ahead_come_in_order_and_a_bad_row_later_still_stops_the_read() {
        let dir = tempfile::tempdir().unwrap();
        // 25 good rows, then a ragged one on line 27 (the header is line 1).
        let mut csv = String::from("id,x\n");
        for i in 0..25 {
            csv.push_str(&format!("{i},v{i}\n"));
        }
        csv.push_str("99\n");
        std::fs::write(dir.path().join("a.csv"), csv).unwrap();
        let mut src = FileReader::open(&cfg("a.csv", 10), dir.path()).unwrap();
        for first in [0, 10] {
            let page = src.next_page().await.unwrap().unwrap();
            assert_eq!(page.num_rows(), 10);
            assert_eq!(page.index, first / 10);
            assert_eq!(page.locate(0), format!("line {}", first + 2));
            let ids = page.batch.column(0).as_string::<i32>();
            assert_eq!(ids.value(9), (first + 9).to_string());
        }
        let err = src.next_page().await.unwrap_err().to_string();
        assert!(
            err.contains("a.csv:27: row has 1 fields; expected 2"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_read_given_up_while_waiting_loses_no_page() {
        // Poll a call once, then drop it.
        fn poll_once<F: std::future::Future>(f: F) -> Option<F::Output> {
            let mut f = std::pin::pin!(f);
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            match f.as_mut().poll(&mut cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let csv: String = std::iter::once("id\n".to_string())
            .chain((0..30).map(|i| format!("{i}\n")))
            .collect();
        std::fs::write(dir.path().join("a.csv"), csv).unwrap();
        let mut src = FileReader::open(&cfg("a.csv", 10), dir.path()).unwrap();
        let mut firsts = Vec::new();
        loop {
            // Each call is first polled once and dropped (a timeout that fired, say), then
            // made again: the page being read must come with the second call, if not the first.
            let page = match poll_once(src.next_page()) {
                Some(page) => page.unwrap(),
                None => src.next_page().await.unwrap(),
            };
            let Some(page) = page else { break };
            firsts.push(page.batch.column(0).as_string::<i32>().value(0).to_string());
        }
        assert_eq!(firsts, ["0", "10", "20"]);
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
