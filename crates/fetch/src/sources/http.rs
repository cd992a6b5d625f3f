//! The `http` source: one document at a URL — CSV, a JSON array (or an array inside a larger
//! JSON document, named by `records`), newline-delimited JSON or GeoJSON.
//!
//! - The document is streamed to a temporary file, never held in memory whole, then read in
//!   pages like a local file.
//! - Conditional GET: the `ETag` and `Last-Modified` of the last successful run are sent back
//!   as `If-None-Match` / `If-Modified-Since`; a `304 Not Modified` means the source is
//!   unchanged and costs that one request and no work. A server that sends neither
//!   validator is downloaded in full every run.
//! - The format comes from the pipeline, else the URL's extension, else the response's
//!   `Content-Type`.
//! - `auth_env` names an environment variable whose value is sent as `Authorization`, and
//!   only to the document's own host.

use crate::decode::{Decoder, PagesAhead, guess_format};
use crate::http::{HttpClient, Request};
use crate::page::RawPage;
use crate::{FetchError, LoadKind, Source, SourceContext, SourceState, secret_from_env};
use async_trait::async_trait;
use goalpost_spec::{FileFormat, HttpSource};
use reqwest::header::{ACCEPT, AUTHORIZATION, IF_MODIFIED_SINCE, IF_NONE_MATCH};
use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::sync::Arc;
use url::Url;

/// Rows per page handed to the table stage.
const PAGE_ROWS: usize = 10_000;

pub struct HttpDocument {
    cfg: HttpSource,
    http: Arc<HttpClient>,
    url: Url,
    auth: Option<String>,
    prior: Option<SourceState>,
    kind: LoadKind,
    state: SourceState,
    started: bool,
    download: Option<tempfile::NamedTempFile>,
    pages: Option<PagesAhead<BufReader<File>>>,
}

impl HttpDocument {
    pub fn open(cfg: &HttpSource, ctx: &SourceContext) -> Result<Self, FetchError> {
        let url = Url::parse(&cfg.url).map_err(|e| FetchError::Config {
            message: format!("http url {:?} is not a web address: {e}", cfg.url),
        })?;
        let auth = cfg.auth_env.as_deref().map(secret_from_env).transpose()?;
        Ok(Self {
            cfg: cfg.clone(),
            http: ctx.http.clone(),
            url,
            auth,
            prior: ctx.prior.clone(),
            kind: LoadKind::Full,
            state: SourceState::default(),
            started: false,
            download: None,
            pages: None,
        })
    }

    /// Make the request; returns false when the server says the document has not changed.
    async fn fetch(&mut self) -> Result<bool, FetchError> {
        let mut req = Request::new(self.url.clone()).header(
            ACCEPT,
            "text/csv, application/json, application/geo+json, application/x-ndjson;q=0.9, */*;q=0.5",
        );
        if let Some(prior) = &self.prior {
            if let Some(etag) = &prior.etag {
                req = req.header(IF_NONE_MATCH, etag);
            }
            if let Some(lm) = &prior.last_modified {
                req = req.header(IF_MODIFIED_SINCE, lm);
            }
        }
        if let Some(auth) = &self.auth {
            req = req.secret(AUTHORIZATION, auth)?;
        }
        let file = tempfile::Builder::new()
            .prefix("goalpost-download-")
            .tempfile()
            .map_err(|source| FetchError::Io {
                path: std::env::temp_dir(),
                source,
            })?;
        let response = self.http.download(&req, file.path()).await?;
        if response.status == 304 {
            self.kind = LoadKind::Unchanged;
            self.state = self.prior.clone().unwrap_or_default();
            tracing::info!(url = %self.url, "not modified since the last run");
            return Ok(false);
        }
        self.state = SourceState {
            etag: response.header("etag").map(str::to_string),
            last_modified: response.header("last-modified").map(str::to_string),
            ..Default::default()
        };
        let format = self
            .cfg
            .format
            .or_else(|| guess_format(self.url.path()))
            .or_else(|| format_of_content_type(response.header("content-type")?))
            .ok_or_else(|| FetchError::Config {
                message: format!(
                    "cannot tell the format of {} from its address or its Content-Type ({}); set format = \"csv\", \"json\", \"ndjson\" or \"geojson\"",
                    self.url,
                    response.header("content-type").unwrap_or("none")
                ),
            })?;
        let path = file.path().to_path_buf();
        let origin = PathBuf::from(self.url.as_str());
        let records = self.cfg.records.clone();
        let decoder = tokio::task::spawn_blocking(move || {
            let f = File::open(&path).map_err(|source| FetchError::Io { path, source })?;
            Decoder::open(BufReader::new(f), format, &origin, records.as_deref())
        })
        .await
        .map_err(|e| FetchError::Decode {
            origin: self.url.to_string(),
            message: format!("reader task failed: {e}"),
        })??;
        self.download = Some(file);
        self.pages = Some(PagesAhead::new(
            decoder,
            &PathBuf::from(self.url.as_str()),
            PAGE_ROWS,
        ));
        Ok(true)
    }
}

fn format_of_content_type(content_type: &str) -> Option<FileFormat> {
    let mime = content_type.split(';').next()?.trim().to_ascii_lowercase();
    Some(match mime.as_str() {
        "text/csv" | "application/csv" => FileFormat::Csv,
        "application/geo+json" | "application/vnd.geo+json" => FileFormat::Geojson,
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => FileFormat::Ndjson,
        "application/json" | "text/json" => FileFormat::Json,
        _ => return None,
    })
}

#[async_trait]
impl Source for HttpDocument {
    fn describe(&self) -> String {
        self.url.to_string()
    }

    async fn next_page(&mut self) -> Result<Option<RawPage>, FetchError> {
        if !self.started {
            self.started = true;
            if !self.fetch().await? {
                return Ok(None);
            }
        }
        let Some(pages) = &mut self.pages else {
            return Ok(None);
        };
        let page = pages.next().await?;
        if pages.is_done() {
            // The temporary copy is no longer needed.
            self.pages = None;
            self.download = None;
        }
        Ok(page)
    }

    fn load_kind(&self) -> LoadKind {
        self.kind
    }

    fn state(&self) -> SourceState {
        self.state.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_name_formats() {
        assert_eq!(
            format_of_content_type("text/csv; charset=utf-8"),
            Some(FileFormat::Csv)
        );
        assert_eq!(
            format_of_content_type("application/geo+json"),
            Some(FileFormat::Geojson)
        );
        assert_eq!(format_of_content_type("text/html"), None);
    }
}
