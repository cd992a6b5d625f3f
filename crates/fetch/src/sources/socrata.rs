//! The `socrata` source: SODA 2.x `/resource/<id>.json` (or `.csv`).
//!
//! - A full load pages with `$limit`/`$offset` under the stable `$order=:id`: without an
//!   order, Socrata's pages may silently repeat and skip rows.
//! - Asks for the system fields with `$select=:*,*`, so every row carries `:id` and
//!   `:updated_at`.
//! - A refresh asks only for rows with `:updated_at >= watermark − overlap`, ordered by
//!   `:updated_at, :id` (`:updated_at` is not unique, hence the overlap and the tie-breaker).
//!   It pages by key rather than by offset — each page asks for rows after the last
//!   (`:updated_at`, `:id`) seen — because the order itself moves while it is read: a row
//!   updated between two pages jumps to the end, and with offsets every row behind it would
//!   shift back and one would be skipped. By key, the jumped row is simply read again at the
//!   end.
//! - Counts first (`$select=count(*)` with the same filter) and fails a load that received
//!   fewer rows than that count.
//! - Reads `X-SODA2-Fields`, the full list of the result's fields (objects leave empty fields
//!   out), so a field the pipeline maps that has disappeared at the source is reported as
//!   schema drift instead of being read as empty.
//! - Sends `X-App-Token` from the environment variable the pipeline names; turns SODA error
//!   bodies (`{"code", "error", "message"}`) into messages that say what to fix.

use crate::decode::{Decoder, JsonPageError, records_page_from_json};
use crate::http::{HttpClient, Problem, Request, Response};
use crate::page::RawPage;
use crate::{FetchError, LoadKind, Source, SourceContext, SourceState, secret_from_env};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use goalpost_spec::{FileFormat, SocrataFormat, SocrataSource};
use reqwest::header::{ACCEPT, HeaderName};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use url::Url;

/// Rows per request unless the pipeline says otherwise.
pub const DEFAULT_PAGE_SIZE: usize = 10_000;

pub struct Socrata {
    cfg: SocrataSource,
    http: Arc<HttpClient>,
    endpoint: Url,
    app_token: Option<String>,
    kind: LoadKind,
    /// The SoQL condition of this fetch (the pipeline's filter and the refresh window).
    condition: Option<String>,
    order: &'static str,
    page_size: usize,
    expected: Option<u64>,
    received: u64,
    next_index: usize,
    done: bool,
    /// Newest `:updated_at` seen (ISO, UTC), carried over when nothing newer arrives.
    watermark: Option<String>,
    /// For a refresh: (`:updated_at`, `:id`) of the last row read.
    after: Option<(String, String)>,
}

impl Socrata {
    pub fn open(cfg: &SocrataSource, ctx: &SourceContext) -> Result<Self, FetchError> {
        let base = Url::parse(cfg.url.trim_end_matches('/')).map_err(|e| FetchError::Config {
            message: format!("socrata url {:?} is not a web address: {e}", cfg.url),
        })?;
        let ext = match cfg.format {
            SocrataFormat::Json => "json",
            SocrataFormat::Csv => "csv",
        };
        let endpoint = base
            .join(&format!("/resource/{}.{ext}", cfg.dataset))
            .map_err(|e| FetchError::Config {
                message: format!("cannot build the SODA address for {:?}: {e}", cfg.dataset),
            })?;
        let app_token = cfg
            .app_token_env
            .as_deref()
            .map(secret_from_env)
            .transpose()?;
        let prior_mark = ctx.prior.as_ref().and_then(|s| s.watermark.clone());
        let since = match (&prior_mark, cfg.incremental) {
            (Some(mark), true) => Some(window_start(mark, cfg.overlap)?),
            _ => None,
        };
        let (kind, order) = if since.is_some() {
            (LoadKind::Changes, ":updated_at,:id")
        } else {
            (LoadKind::Full, ":id")
        };
        let refresh = since.map(|t| format!(":updated_at >= '{t}'"));
        let condition = match (cfg.filter.as_deref(), refresh) {
            (Some(f), Some(r)) => Some(format!("({f}) AND {r}")),
            (Some(f), None) => Some(f.to_string()),
            (None, r) => r,
        };
        Ok(Self {
            page_size: cfg.page_size.unwrap_or(DEFAULT_PAGE_SIZE).clamp(1, 50_000),
            cfg: cfg.clone(),
            http: ctx.http.clone(),
            endpoint,
            app_token,
            kind,
            condition,
            order,
            expected: None,
            received: 0,
            next_index: 0,
            done: false,
            watermark: prior_mark,
            after: None,
        })
    }

    fn request(&self, params: &[(&str, String)]) -> Result<Request, FetchError> {
        let mut url = self.endpoint.clone();
        url.query_pairs_mut().extend_pairs(params);
        let mut req = Request::new(url).header(
            ACCEPT,
            match self.cfg.format {
                SocrataFormat::Json => "application/json",
                SocrataFormat::Csv => "text/csv",
            },
        );
        if let Some(token) = &self.app_token {
            req = req.secret(HeaderName::from_static("x-app-token"), token)?;
        }
        Ok(req)
    }

    /// `$select=count(*)` with this fetch's condition, always as JSON.
    async fn count(&self) -> Result<u64, FetchError> {
        let mut url = self.endpoint.clone();
        url.set_path(&url.path().replace(".csv", ".json"));
        let mut params = vec![("$select", "count(*) AS n".to_string())];
        if let Some(c) = &self.condition {
            params.push(("$where", c.clone()));
        }
        url.query_pairs_mut().extend_pairs(&params);
        let mut req = Request::new(url).header(ACCEPT, "application/json");
        if let Some(token) = &self.app_token {
            req = req.secret(HeaderName::from_static("x-app-token"), token)?;
        }
        let (_, rows) = self
            .http
            .get_with(&req, |r| r.json::<Vec<Value>>())
            .await
            .map_err(|e| soda_error(e, &self.cfg.dataset))?;
        let n = rows
            .first()
            .and_then(|r| r.get("n").or_else(|| r.get("count")))
            .and_then(|v| match v {
                Value::String(s) => s.parse().ok(),
                Value::Number(n) => n.as_u64(),
                _ => None,
            });
        n.ok_or_else(|| FetchError::Portal {
            url: req.url.to_string(),
            message: format!(
                "expected a row count like [{{\"n\":\"123\"}}], got {}",
                Value::Array(rows)
            ),
        })
    }

    /// The newest `:updated_at` among the rows this fetch will read, asked before paging.
    ///
    /// A full load pages by `:id`, so a row it has already passed may be updated while later
    /// pages are read, with a stamp older than rows read after it: the newest stamp *seen*
    /// could lie past that update and a refresh would never ask for it. The newest stamp at
    /// the start cannot: every update made during the load is newer.
    async fn newest_update(&self) -> Result<Option<String>, FetchError> {
        let mut url = self.endpoint.clone();
        url.set_path(&url.path().replace(".csv", ".json"));
        let mut params = vec![
            ("$select", ":updated_at".to_string()),
            ("$order", ":updated_at DESC".to_string()),
            ("$limit", "1".to_string()),
        ];
        if let Some(c) = &self.condition {
            params.push(("$where", c.clone()));
        }
        url.query_pairs_mut().extend_pairs(&params);
        let mut req = Request::new(url).header(ACCEPT, "application/json");
        if let Some(token) = &self.app_token {
            req = req.secret(HeaderName::from_static("x-app-token"), token)?;
        }
        let (_, rows) = self
            .http
            .get_with(&req, |r| r.json::<Vec<Value>>())
            .await
            .map_err(|e| soda_error(e, &self.cfg.dataset))?;
        Ok(rows
            .first()
            .and_then(|r| r.get(":updated_at"))
            .and_then(Value::as_str)
            .map(str::to_string))
    }

    fn track_watermark(&mut self, page: &RawPage) {
        use arrow::array::AsArray;
        let Some(col) = page.batch.column_by_name(":updated_at") else {
            return;
        };
        let newest = col.as_string::<i32>().iter().flatten().max();
        if let Some(newest) = newest
            && self.watermark.as_deref().is_none_or(|w| newest > w)
        {
            self.watermark = Some(newest.to_string());
        }
    }
}

#[async_trait]
impl Source for Socrata {
    fn describe(&self) -> String {
        self.endpoint.to_string()
    }

    async fn next_page(&mut self) -> Result<Option<RawPage>, FetchError> {
        if self.done {
            return Ok(None);
        }
        if self.expected.is_none() {
            let n = self.count().await?;
            tracing::info!(source = %self.endpoint, rows = n, mode = self.kind.as_str(), "counted");
            self.expected = Some(n);
            if self.kind == LoadKind::Full && self.cfg.incremental {
                self.watermark = self.newest_update().await?;
            }
        }
        let offset = self.next_index * self.page_size;
        let mut params = vec![
            ("$select", ":*,*".to_string()),
            ("$order", self.order.to_string()),
            ("$limit", self.page_size.to_string()),
        ];
        let keyset = self.after.as_ref().map(|(t, id)| {
            let (t, id) = (soql_text(t.trim_end_matches('Z')), soql_text(id));
            format!("(:updated_at > {t} OR (:updated_at = {t} AND :id > {id}))")
        });
        if self.kind != LoadKind::Changes {
            params.push(("$offset", offset.to_string()));
        }
        let condition = match (&self.condition, keyset) {
            (Some(c), Some(k)) => Some(format!("{c} AND {k}")),
            (c, k) => c.clone().or(k),
        };
        if let Some(c) = condition {
            params.push(("$where", c));
        }
        let req = self.request(&params)?;
        let index = self.next_index;
        let origin = format!("{} page {}", self.endpoint, index + 1);
        let format = self.cfg.format;
        let (_, page) = self
            .http
            .get_with(&req, |r| {
                decode_page(r, format, &origin, index, offset as u64)
            })
            .await
            .map_err(|e| soda_error(e, &self.cfg.dataset))?;
        self.next_index += 1;
        let rows = page.num_rows();
        self.received += rows as u64;
        if rows < self.page_size {
            // A short page is the end.
            self.done = true;
            let expected = self.expected.unwrap_or(0);
            if self.received < expected {
                return Err(FetchError::Incomplete {
                    source_name: self.endpoint.to_string(),
                    expected,
                    received: self.received,
                    detail:
                        " (rows were deleted during the fetch, or the portal cut the result short)"
                            .into(),
                });
            }
        }
        if self.kind == LoadKind::Changes {
            // Refreshes page in update order by key, so every update made while they read
            // is read too: the newest stamp seen is safe.
            self.track_watermark(&page);
        }
        if self.kind == LoadKind::Changes && rows > 0 {
            self.after = last_position(&page);
            if self.after.is_none() {
                return Err(FetchError::Portal {
                    url: req.url.to_string(),
                    message:
                        "rows came without :updated_at and :id although $select=:*,* asked for them"
                            .into(),
                });
            }
        }
        if rows == 0 {
            return Ok(None);
        }
        Ok(Some(page))
    }

    fn load_kind(&self) -> LoadKind {
        self.kind
    }

    fn expected_rows(&self) -> Option<u64> {
        self.expected
    }

    fn state(&self) -> SourceState {
        SourceState {
            watermark: self.watermark.clone(),
            ..Default::default()
        }
    }
}

fn decode_page(
    r: &Response,
    format: SocrataFormat,
    origin: &str,
    index: usize,
    offset: u64,
) -> Result<RawPage, Problem> {
    match format {
        SocrataFormat::Json => {
            // SODA leaves empty fields out of each object, but names every field of the
            // result in X-SODA2-Fields: with it, a column gone from the source is an error,
            // not a column of empty values.
            let fields = r
                .header("x-soda2-fields")
                .and_then(|h| serde_json::from_str::<Vec<String>>(h).ok());
            records_page_from_json(&r.body, fields, origin, index, offset + 1).map_err(
                |e| match e {
                    JsonPageError::Syntax(e) => r.not_json(&e),
                    JsonPageError::Shape(e) => Problem::Permanent(e.to_string()),
                },
            )
        }
        SocrataFormat::Csv => {
            let mut d = Decoder::open(&r.body[..], FileFormat::Csv, Path::new(origin), None)
                .map_err(|e| Problem::Transient(e.to_string()))?;
            let page = d
                .read_page(Path::new(origin), usize::MAX, index)
                .map_err(|e| Problem::Transient(e.to_string()))?;
            Ok(page.unwrap_or_else(|| RawPage::empty(index, origin)))
        }
    }
}

/// (`:updated_at`, `:id`) of a page's last row.
fn last_position(page: &RawPage) -> Option<(String, String)> {
    use arrow::array::{Array, AsArray};
    let last = page.num_rows().checked_sub(1)?;
    let get = |name: &str| {
        let col = page.batch.column_by_name(name)?.as_string::<i32>();
        (!col.is_null(last)).then(|| col.value(last).to_string())
    };
    Some((get(":updated_at")?, get(":id")?))
}

/// A SoQL string literal.
fn soql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The refresh window's start: the watermark less the overlap, as a SoQL floating literal.
fn window_start(mark: &str, overlap: std::time::Duration) -> Result<String, FetchError> {
    let parsed = DateTime::parse_from_rfc3339(mark)
        .map(|t| t.with_timezone(&Utc).naive_utc())
        .or_else(|_| NaiveDateTime::parse_from_str(mark, "%Y-%m-%dT%H:%M:%S%.f"))
        .map_err(|e| FetchError::Config {
            message: format!("the saved watermark {mark:?} is not a timestamp ({e}); run with --full to start over"),
        })?;
    let start = parsed - chrono::Duration::from_std(overlap).unwrap_or_default();
    Ok(start
        .and_utc()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
        .trim_end_matches('Z')
        .to_string())
}

/// A SODA error body made into advice.
fn soda_error(e: FetchError, dataset: &str) -> FetchError {
    let FetchError::Http {
        url,
        status,
        message,
        body: Some(body),
    } = e
    else {
        return e;
    };
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return FetchError::Http {
            url,
            status,
            message,
            body: Some(body),
        };
    };
    let code = v.get("code").and_then(Value::as_str).unwrap_or_default();
    let text = v
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or(&message)
        .to_string();
    let message = match (status, code) {
        (_, "query.soql.no-such-column") => format!(
            "dataset {dataset} has no such column ({text}); the source's schema has changed or the pipeline names a field wrongly"
        ),
        (Some(401 | 403), _) => format!(
            "access denied ({text}); set app_token_env to a variable holding a valid app token, or check the dataset is public"
        ),
        (Some(404), _) => format!("dataset {dataset} was not found ({text})"),
        (_, "") => format!("HTTP {}: {text}", status.unwrap_or(0)),
        (_, code) => format!("HTTP {}: {code}: {text}", status.unwrap_or(0)),
    };
    FetchError::Portal { url, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn refresh_window_starts_an_overlap_before_the_watermark() {
        assert_eq!(
            window_start("2017-01-08T00:00:00.000Z", Duration::from_secs(3600)).unwrap(),
            "2017-01-07T23:00:00.000"
        );
        assert_eq!(
            window_start("2017-01-08T00:00:30.5", Duration::from_secs(30)).unwrap(),
            "2017-01-08T00:00:00.500"
        );
        assert!(window_start("yesterday", Duration::ZERO).is_err());
    }
}
