//! The `file` source: a CSV file with a header row, a JSON array of objects (the shape of a
//! Socrata `.json` response), newline-delimited JSON or GeoJSON, read from disk in pages.

use crate::decode::{Decoder, guess_format};
use crate::page::RawPage;
use crate::{FetchError, Source};
use async_trait::async_trait;
use goalpost_spec::{FileFormat, FileSource};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

pub struct FileReader {
    path: PathBuf,
    page_size: usize,
    next_index: usize,
    decoder: Option<Box<Decoder<BufReader<File>>>>,
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
            path,
            page_size: cfg.page_size.max(1),
            next_index: 0,
            decoder: Some(Box::new(decoder)),
        })
    }
}

#[async_trait]
impl Source for FileReader {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    async fn next_page(&mut self) -> Result<Option<RawPage>, FetchError> {
        let Some(mut decoder) = self.decoder.take() else {
            return Ok(None);
        };
        let path = self.path.clone();
        let page_size = self.page_size;
        let index = self.next_index;
        let (decoder, result) = tokio::task::spawn_blocking(move || {
            let r = decoder.read_page(&path, page_size, index);
            (decoder, r)
        })
        .await
        .map_err(|e| FetchError::Decode {
            origin: self.path.display().to_string(),
            message: format!("reader task failed: {e}"),
        })?;
        if !decoder.is_done() {
            self.decoder = Some(decoder);
        }
        let page = result?;
        if page.is_some() {
            self.next_index += 1;
            tracing::debug!(source = %self.path.display(), page = index, "read page");
        }
        Ok(page)
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
