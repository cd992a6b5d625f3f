//! The `datasette` source: one table of a Datasette instance, read through its JSON API
//! (`https://host/<database>/<table>.json`).
//!
//! - Reads `/-/settings.json` first and keeps the page size within the server's
//!   `max_returned_rows`; a `_size` above it would be a 400 (`_size must be <= N`), which is
//!   turned into advice when the settings could not be read.
//! - Asks once with `_size=0` for the table's columns, primary key and row count under this
//!   fetch's filters (`filtered_table_rows_count`, or `count` on Datasette 1.0); a load that
//!   received fewer rows than that count fails.
//! - Pages with `_shape=objects&_size=<n>` and follows `next` with `_next=<token>`: keyset
//!   paging in primary-key (or `rowid`) order, which stays complete while rows change. It
//!   never pages with `_sort`: Datasette 0.65 adds the key as a tie-breaker only from the
//!   second page on, so rows tied on the sort column across the first page boundary are
//!   repeated and skipped. When the table's metadata sets a default sort, the key is asked for
//!   explicitly with `_sort=<key>` (a unique order, so ties cannot happen). Stops when `next`
//!   is null.
//! - Every page sends `_nosuggest=1` (facet suggestions run a query per column), `_nofacet=1`
//!   and `_nocount=1` (the count is taken once).
//! - Query parameters in the table's URL (`?status=open`, `?year__gte=2020`, `_where=…`) are
//!   kept as the fetch's filter.
//! - A refresh adds `<incremental_field>__gte=<watermark − overlap>` and still pages in key
//!   order. Its watermark is the largest value of the field seen (a full load instead asks for
//!   the largest value before it pages: rows it has passed may change while it reads on, and
//!   only a mark taken at the start is sure to lie before such changes), compared as SQLite compares
//!   (numbers below text, numbers by value, text byte by byte). A timestamp watermark is moved
//!   back by the overlap and written in the same shape it was read in (`2017-01-08 00:00:00`
//!   stays space-separated, `…Z` keeps its `Z`), because SQLite compares such text byte by
//!   byte; a number or other text is used as it is.
//! - Datasette does not reject a filter on a column the table lacks (SQLite reads the unknown
//!   name as a string, so the filter silently matches all or no rows), so the incremental
//!   field is checked against the table's columns before any row is read.
//! - Errors are `{"ok": false, "error", "status", "title"}` with that HTTP status (404 for an
//!   unknown database or table); they are turned into messages that say what to fix.

use crate::decode::{json_kind, records_page};
use crate::http::{HttpClient, Problem, Request, Response, excerpt};
use crate::page::RawPage;
use crate::{FetchError, LoadKind, Source, SourceContext, SourceState};
use async_trait::async_trait;
use chrono::{NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use goalpost_spec::DatasetteSource;
use reqwest::header::ACCEPT;
use serde_json::Value;
use std::cmp::Ordering;
use std::sync::Arc;
use url::Url;

/// Rows per request unless the pipeline says otherwise (Datasette's usual
/// `max_returned_rows`).
pub const DEFAULT_PAGE_SIZE: usize = 1000;

/// Query parameters of the table URL that would fight the connector's own paging.
const RESERVED: &[&str] = &["_sort", "_sort_desc", "_next", "_size", "_shape"];

pub struct Datasette {
    cfg: DatasetteSource,
    http: Arc<HttpClient>,
    /// `…/<database>/<table>.json`, without a query.
    json_url: Url,
    settings_url: Url,
    /// Filters from the table URL's query.
    filters: Vec<(String, String)>,
    kind: LoadKind,
    /// The `__gte` value of a refresh.
    since: Option<String>,
    page_size: usize,
    /// `_sort=<key>` when the table's default order is not its key.
    sort: Option<String>,
    started: bool,
    next_token: Option<String>,
    expected: Option<u64>,
    received: u64,
    next_index: usize,
    done: bool,
    watermark: Option<Mark>,
}

/// A value of the incremental field, ordered as SQLite orders values.
#[derive(Debug, Clone, PartialEq)]
enum Mark {
    Number { value: f64, text: String },
    Text(String),
}

impl Mark {
    fn from_json(v: &Value) -> Option<Mark> {
        match v {
            Value::Number(n) => Some(Mark::Number {
                value: n.as_f64()?,
                text: n.to_string(),
            }),
            Value::String(s) => Some(Mark::Text(s.clone())),
            Value::Bool(b) => Some(Mark::Number {
                value: f64::from(u8::from(*b)),
                text: u8::from(*b).to_string(),
            }),
            _ => None,
        }
    }

    /// A saved watermark: a number when it reads as one.
    fn from_saved(text: &str) -> Mark {
        match text.trim().parse::<f64>() {
            Ok(value) if value.is_finite() && !text.trim().is_empty() => Mark::Number {
                value,
                text: text.trim().to_string(),
            },
            _ => Mark::Text(text.to_string()),
        }
    }

    fn text(&self) -> &str {
        match self {
            Mark::Number { text, .. } | Mark::Text(text) => text,
        }
    }

    fn cmp(&self, other: &Mark) -> Ordering {
        match (self, other) {
            (Mark::Number { value: a, .. }, Mark::Number { value: b, .. }) => a.total_cmp(b),
            (Mark::Number { .. }, Mark::Text(_)) => Ordering::Less,
            (Mark::Text(_), Mark::Number { .. }) => Ordering::Greater,
            (Mark::Text(a), Mark::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
        }
    }
}

/// One page as Datasette sent it.
struct Rows {
    page: RawPage,
    next: Option<String>,
    newest: Option<Mark>,
}

impl Datasette {
    pub fn open(cfg: &DatasetteSource, ctx: &SourceContext) -> Result<Self, FetchError> {
        let TableUrls {
            json: json_url,
            settings: settings_url,
            filters,
        } = table_urls(&cfg.url)?;
        if let Some(field) = &cfg.incremental_field
            && field.trim().is_empty()
        {
            return Err(FetchError::Config {
                message: format!("datasette source {}: incremental_field is empty", cfg.url),
            });
        }
        let prior = ctx
            .prior
            .as_ref()
            .and_then(|s| s.watermark.as_deref())
            .filter(|_| cfg.incremental_field.is_some());
        let watermark = prior.map(Mark::from_saved);
        let since = watermark.as_ref().map(|m| window_start(m, cfg.overlap));
        Ok(Self {
            kind: if since.is_some() {
                LoadKind::Changes
            } else {
                LoadKind::Full
            },
            page_size: cfg.page_size.unwrap_or(DEFAULT_PAGE_SIZE).max(1),
            cfg: cfg.clone(),
            http: ctx.http.clone(),
            json_url,
            settings_url,
            filters,
            since,
            sort: None,
            started: false,
            next_token: None,
            expected: None,
            received: 0,
            next_index: 0,
            done: false,
            watermark,
        })
    }

    /// The filters of this fetch: the URL's and the refresh window.
    fn filter_params(&self) -> Vec<(String, String)> {
        let mut params = self.filters.clone();
        if let (Some(field), Some(since)) = (&self.cfg.incremental_field, &self.since) {
            params.push((format!("{field}__gte"), since.clone()));
        }
        params
    }

    fn request(&self, params: &[(String, String)]) -> Request {
        let mut url = self.json_url.clone();
        url.query_pairs_mut().extend_pairs(params);
        Request::new(url).header(ACCEPT, "application/json")
    }

    /// Keep the page size within the server's `max_returned_rows`. The settings are advice:
    /// a server that hides them is read with the configured size.
    async fn fit_page_size(&mut self) {
        let req = Request::new(self.settings_url.clone()).header(ACCEPT, "application/json");
        let answer = self
            .http
            .get_with(&req, |r| r.json::<Value>())
            .await
            .map(|(_, v)| v);
        match answer
            .as_ref()
            .ok()
            .and_then(|v| v.get("max_returned_rows"))
            .and_then(Value::as_u64)
        {
            Some(max) if max > 0 && (self.page_size as u64) > max => {
                if self.cfg.page_size.is_some() {
                    tracing::warn!(
                        source = %self.json_url,
                        page_size = self.page_size,
                        max_returned_rows = max,
                        "page_size is above the server's max_returned_rows; using max_returned_rows"
                    );
                }
                self.page_size = max as usize;
            }
            Some(_) => {}
            None => tracing::debug!(
                source = %self.json_url,
                "the server's settings could not be read; paging with page_size as configured"
            ),
        }
    }

    /// The `_size=0` request: columns, key, count and order, checked before any row is read.
    async fn probe(&mut self) -> Result<(), FetchError> {
        let mut params = self.filter_params();
        params.extend([
            ("_shape".into(), "objects".into()),
            ("_size".into(), "0".into()),
            ("_nosuggest".into(), "1".into()),
            ("_nofacet".into(), "1".into()),
            // Datasette 1.0 returns these only when asked; 0.65 sends them anyway.
            ("_extra".into(), "columns,count,primary_keys,query".into()),
        ]);
        let req = self.request(&params);
        let (_, v) = self
            .http
            .get_with(&req, |r| r.json::<Value>())
            .await
            .map_err(|e| datasette_error(e, &self.cfg, self.page_size))?;
        let url = req.url.to_string();
        let names = |key: &str| -> Option<Vec<String>> {
            v.get(key)?
                .as_array()?
                .iter()
                .map(|c| c.as_str().map(str::to_string))
                .collect()
        };
        let columns = names("columns").ok_or_else(|| FetchError::Portal {
            url: url.clone(),
            message: format!(
                "expected a Datasette table with \"columns\"; is the url a table's address (https://host/<database>/<table>)? The answer begins {}",
                excerpt(v.to_string().as_bytes())
            ),
        })?;
        let keys = names("primary_keys").unwrap_or_default();
        let is_view = v.get("is_view").and_then(Value::as_bool).unwrap_or(false);
        if let Some(field) = &self.cfg.incremental_field
            && !columns.contains(field)
            && !(field == "rowid" && keys.is_empty() && !is_view)
        {
            return Err(FetchError::Config {
                message: format!(
                    "incremental_field {field:?} is not a column of {} (Datasette would silently ignore a filter on it); its columns are: {}",
                    self.cfg.url,
                    columns.join(", ")
                ),
            });
        }
        self.expected = v
            .get("filtered_table_rows_count")
            .or_else(|| v.get("count"))
            .and_then(Value::as_u64);
        if self.expected.is_none() {
            tracing::warn!(source = %self.json_url, "the server gave no row count (it may have timed out); completeness cannot be checked");
        }
        if is_view {
            tracing::warn!(source = %self.json_url, "this is a view: Datasette pages views by offset, without a guaranteed order");
        } else if let Some(sql) = v.pointer("/query/sql").and_then(Value::as_str) {
            let key = if keys.is_empty() {
                vec!["rowid".to_string()]
            } else {
                keys.clone()
            };
            if order_clause(sql).is_some_and(|order| order != normalize(&key.join(","))) {
                // The table's metadata sorts it by something else: ask for key order.
                if key.len() > 1 {
                    return Err(FetchError::Portal {
                        url,
                        message: format!(
                            "the table's default order is set by its metadata ({sql:?}) and its primary key has {} columns, so it cannot be paged in key order; ask the publisher to drop the default sort",
                            key.len()
                        ),
                    });
                }
                self.sort = Some(key[0].clone());
            }
        }
        tracing::info!(source = %self.json_url, rows = ?self.expected, mode = self.kind.as_str(), "counted");
        if self.kind == LoadKind::Full
            && let Some(field) = self.cfg.incremental_field.clone()
        {
            self.watermark = self.newest_at_start(&field).await?;
        }
        Ok(())
    }

    /// The largest value of the incremental field before a full load pages.
    ///
    /// A full load pages in key order, so a row it has already passed may change while later
    /// pages are read, with a value below rows read after it: the largest value *seen* could
    /// lie past that change and no refresh would ask for it. The largest value at the start
    /// cannot: every change made during the load is larger.
    async fn newest_at_start(&self, field: &str) -> Result<Option<Mark>, FetchError> {
        let mut params = self.filter_params();
        params.extend([
            ("_shape".into(), "objects".into()),
            ("_size".into(), "1".into()),
            ("_sort_desc".into(), field.to_string()),
            ("_nosuggest".into(), "1".into()),
            ("_nofacet".into(), "1".into()),
            ("_nocount".into(), "1".into()),
        ]);
        let req = self.request(&params);
        let (_, v) = self
            .http
            .get_with(&req, |r| r.json::<Value>())
            .await
            .map_err(|e| datasette_error(e, &self.cfg, self.page_size))?;
        Ok(v.pointer("/rows/0")
            .and_then(|row| row.get(field))
            .and_then(Mark::from_json))
    }

    fn track(&mut self, newest: Option<Mark>) {
        if let Some(m) = newest
            && self
                .watermark
                .as_ref()
                .is_none_or(|w| m.cmp(w) == Ordering::Greater)
        {
            self.watermark = Some(m);
        }
    }
}

#[async_trait]
impl Source for Datasette {
    fn describe(&self) -> String {
        self.cfg.url.clone()
    }

    async fn next_page(&mut self) -> Result<Option<RawPage>, FetchError> {
        if self.done {
            return Ok(None);
        }
        if !self.started {
            self.fit_page_size().await;
            self.probe().await?;
            self.started = true;
            if self.expected == Some(0) {
                self.done = true;
                return Ok(None);
            }
        }
        let mut params = self.filter_params();
        params.extend([
            ("_shape".into(), "objects".into()),
            ("_size".into(), self.page_size.to_string()),
            ("_nosuggest".into(), "1".into()),
            ("_nofacet".into(), "1".into()),
            ("_nocount".into(), "1".into()),
        ]);
        if let Some(key) = &self.sort {
            params.push(("_sort".into(), key.clone()));
        }
        if let Some(token) = &self.next_token {
            params.push(("_next".into(), token.clone()));
        }
        let req = self.request(&params);
        let index = self.next_index;
        let origin = format!("{} page {}", self.json_url, index + 1);
        let first = self.received + 1;
        let field = self.cfg.incremental_field.clone();
        let (_, got) = self
            .http
            .get_with(&req, |r| {
                decode_rows(r, field.as_deref(), &origin, index, first)
            })
            .await
            .map_err(|e| datasette_error(e, &self.cfg, self.page_size))?;
        let rows = got.page.num_rows();
        self.received += rows as u64;
        self.next_index += 1;
        if self.kind == LoadKind::Changes {
            // Refreshes keep the largest value seen; a full load took its mark at the start.
            self.track(got.newest);
        }
        match got.next {
            Some(next) if rows > 0 && self.next_token.as_deref() != Some(next.as_str()) => {
                self.next_token = Some(next);
            }
            Some(next) => {
                return Err(FetchError::Portal {
                    url: req.url.to_string(),
                    message: format!(
                        "the server sent {rows} rows and the same next token {next:?} again; paging cannot advance"
                    ),
                });
            }
            None => {
                self.done = true;
                let expected = self.expected.unwrap_or(0);
                if self.received < expected {
                    return Err(FetchError::Incomplete {
                        source_name: self.cfg.url.clone(),
                        expected,
                        received: self.received,
                        detail: " (rows were deleted during the fetch, or the server cut the result short)"
                            .into(),
                    });
                }
            }
        }
        if rows == 0 {
            return Ok(None);
        }
        Ok(Some(got.page))
    }

    fn load_kind(&self) -> LoadKind {
        self.kind
    }

    fn expected_rows(&self) -> Option<u64> {
        self.expected
    }

    fn state(&self) -> SourceState {
        SourceState {
            watermark: self
                .cfg
                .incremental_field
                .as_ref()
                .and(self.watermark.as_ref())
                .map(|m| m.text().to_string()),
            ..Default::default()
        }
    }
}

/// Where a table is read from.
#[derive(Debug)]
struct TableUrls {
    /// `…/<database>/<table>.json`, without a query.
    json: Url,
    /// `…/-/settings.json` of the same instance.
    settings: Url,
    /// The filters in the table URL's query.
    filters: Vec<(String, String)>,
}

/// The table's JSON and settings addresses, and the filters in its query.
fn table_urls(text: &str) -> Result<TableUrls, FetchError> {
    let url = Url::parse(text.trim()).map_err(|e| FetchError::Config {
        message: format!("datasette url {text:?} is not a web address: {e}"),
    })?;
    let mut filters = Vec::new();
    for (k, v) in url.query_pairs() {
        if RESERVED.contains(&k.as_ref()) {
            let why = if k.starts_with("_sort") {
                "Datasette pages with _sort can skip rows; the connector pages in key order"
            } else {
                "the connector sets paging itself (page_size sets the size)"
            };
            return Err(FetchError::Config {
                message: format!("datasette url {text:?}: leave out {k}= ({why})"),
            });
        }
        filters.push((k.into_owned(), v.into_owned()));
    }
    let mut segments: Vec<String> = url
        .path_segments()
        .map(|s| s.filter(|p| !p.is_empty()).map(str::to_string).collect())
        .unwrap_or_default();
    if let Some(last) = segments.last_mut()
        && let Some(stem) = last.strip_suffix(".json")
    {
        *last = stem.to_string();
    }
    if segments.len() < 2 || segments.iter().rev().take(2).any(|s| s.starts_with('-')) {
        return Err(FetchError::Config {
            message: format!(
                "datasette url {text:?} is not a table's address; expected https://host/<database>/<table>"
            ),
        });
    }
    let n = segments.len();
    let mut json_url = url.clone();
    json_url.set_query(None);
    json_url.set_fragment(None);
    json_url.set_path(&format!("/{}.json", segments.join("/")));
    let mut settings_url = json_url.clone();
    let base: Vec<&str> = segments[..n - 2].iter().map(String::as_str).collect();
    let prefix = if base.is_empty() {
        String::new()
    } else {
        format!("/{}", base.join("/"))
    };
    settings_url.set_path(&format!("{prefix}/-/settings.json"));
    Ok(TableUrls {
        json: json_url,
        settings: settings_url,
        filters,
    })
}

fn decode_rows(
    r: &Response,
    field: Option<&str>,
    origin: &str,
    index: usize,
    first: u64,
) -> Result<Rows, Problem> {
    let v: Value = r.json()?;
    let items = v.get("rows").and_then(Value::as_array).ok_or_else(|| {
        Problem::Permanent(format!(
            "expected Datasette's table JSON with \"rows\", got {}",
            excerpt(v.to_string().as_bytes())
        ))
    })?;
    let next = match v.get("next") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => {
            return Err(Problem::Permanent(format!(
                "expected \"next\" to be a token or null, found {}",
                json_kind(other)
            )));
        }
    };
    let mut newest: Option<Mark> = None;
    if let Some(field) = field {
        for m in items
            .iter()
            .filter_map(|row| Mark::from_json(row.get(field)?))
        {
            if newest
                .as_ref()
                .is_none_or(|n| m.cmp(n) == Ordering::Greater)
            {
                newest = Some(m);
            }
        }
    }
    let page =
        records_page(items, origin, index, first).map_err(|e| Problem::Permanent(e.to_string()))?;
    Ok(Rows { page, next, newest })
}

/// The `ORDER BY` of Datasette's SQL, without quoting, spaces or case.
fn order_clause(sql: &str) -> Option<String> {
    let lower = sql.to_ascii_lowercase();
    let at = lower.rfind(" order by ")? + " order by ".len();
    let rest = &sql[at..];
    let end = rest
        .to_ascii_lowercase()
        .find(" limit ")
        .unwrap_or(rest.len());
    Some(normalize(&rest[..end]))
}

fn normalize(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '[' | ']' | '"' | '`') && !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Where a refresh starts: the watermark, moved back by the overlap when it is a timestamp.
fn window_start(mark: &Mark, overlap: std::time::Duration) -> String {
    match mark {
        Mark::Number { text, .. } => text.clone(),
        Mark::Text(text) => shift_timestamp(text, overlap).unwrap_or_else(|| text.clone()),
    }
}

/// `text` (an ISO date or date-time in any of its usual shapes) moved back by `by`, written
/// in the same shape: same separator, precision and offset suffix. `None` when `text` is not
/// such a timestamp.
fn shift_timestamp(text: &str, by: std::time::Duration) -> Option<String> {
    let by = chrono::Duration::from_std(by).ok()?;
    let date = NaiveDate::parse_from_str(text.get(..10)?, "%Y-%m-%d").ok()?;
    let rest = &text[10..];
    if rest.is_empty() {
        let shifted = date.and_time(NaiveTime::MIN) - by;
        return Some(shifted.date().format("%Y-%m-%d").to_string());
    }
    let separator = rest.chars().next()?;
    if separator != 'T' && separator != ' ' {
        return None;
    }
    let rest = &rest[1..];
    let digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    let (hour, minute) = (rest.get(..2)?, rest.get(3..5)?);
    if !digits(hour) || rest.get(2..3)? != ":" || !digits(minute) {
        return None;
    }
    let mut at = 5;
    let second = match rest.get(5..8) {
        Some(s) if s.starts_with(':') && digits(&s[1..]) => {
            at = 8;
            Some(&s[1..])
        }
        _ => None,
    };
    let mut fraction = "";
    if second.is_some() && rest[at..].starts_with('.') {
        let len = rest[at + 1..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        fraction = &rest[at + 1..at + 1 + len];
        at += 1 + len;
    }
    let suffix = &rest[at..];
    let offset_like = suffix.is_empty()
        || suffix == "Z"
        || suffix.strip_prefix(['+', '-']).is_some_and(|o| {
            let o = o.replace(':', "");
            o.len() == 4 && o.bytes().all(|b| b.is_ascii_digit())
        });
    if !offset_like || fraction.len() > 9 {
        return None;
    }
    let nanos = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<9}").parse::<u32>().ok()?
    };
    let time = NaiveTime::from_hms_nano_opt(
        hour.parse().ok()?,
        minute.parse().ok()?,
        second.map_or(Some(0), |s| s.parse().ok())?,
        nanos,
    )?;
    let shifted: NaiveDateTime = date.and_time(time) - by;
    let mut out = format!(
        "{}{separator}{}",
        shifted.format("%Y-%m-%d"),
        shifted.format("%H:%M")
    );
    if second.is_some() {
        out.push_str(&shifted.format(":%S").to_string());
    }
    if !fraction.is_empty() {
        let nanos = format!("{:09}", shifted.nanosecond() % 1_000_000_000);
        out.push('.');
        out.push_str(&nanos[..fraction.len()]);
    }
    out.push_str(suffix);
    Some(out)
}

/// A Datasette error body made into advice.
fn datasette_error(e: FetchError, cfg: &DatasetteSource, page_size: usize) -> FetchError {
    let FetchError::Http {
        url,
        status,
        message,
        body,
    } = e
    else {
        return e;
    };
    let parsed = body
        .as_deref()
        .and_then(|b| serde_json::from_slice::<Value>(b).ok());
    let error = parsed
        .as_ref()
        .and_then(|v| v.get("error"))
        .and_then(Value::as_str)
        .map(strip_html);
    let title = parsed
        .as_ref()
        .and_then(|v| v.get("title"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(error) = error else {
        return match status {
            Some(404) => FetchError::Portal {
                url,
                message: format!(
                    "{message}; no table at this address: the url is the table's page, https://host/<database>/<table>"
                ),
            },
            _ => FetchError::Http {
                url,
                status,
                message,
                body,
            },
        };
    };
    let message = if let Some(max) = error.strip_prefix("_size must be <= ") {
        format!(
            "page_size = {page_size} is above this Datasette's max_returned_rows ({}); set page_size to at most that",
            max.trim()
        )
    } else if title == "SQL Interrupted" || error.contains("took too long") {
        format!(
            "the query ran past the server's time limit (sql_time_limit_ms): {error}; {}",
            match &cfg.incremental_field {
                Some(f) =>
                    format!("a smaller page_size may help, or an index on {f} at the source"),
                None => "a smaller page_size may help".into(),
            }
        )
    } else {
        match status {
            Some(404) => format!(
                "{error}: check the database and table names in the url (https://host/<database>/<table>, as the table's page shows it)"
            ),
            Some(401 | 403) => format!(
                "access denied ({error}); the datasette connector reads tables the public can see"
            ),
            Some(code) => format!("HTTP {code}: {error}"),
            None => error,
        }
    };
    FetchError::Portal { url, message }
}

/// Datasette writes some errors as HTML; keep the words.
fn strip_html(text: &str) -> String {
    if !text.contains("</") {
        return text.trim().to_string();
    }
    let mut out = String::new();
    let mut in_tag = false;
    let mut skip = false;
    let mut tag = String::new();
    for c in text.chars() {
        match c {
            '<' => {
                in_tag = true;
                tag.clear();
            }
            '>' if in_tag => {
                in_tag = false;
                let name = tag
                    .trim_start_matches('/')
                    .split_whitespace()
                    .next()
                    .unwrap_or("");
                if matches!(name, "textarea" | "script" | "style") {
                    skip = !tag.starts_with('/');
                }
            }
            _ if in_tag => tag.push(c),
            _ if !skip => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg(field: Option<&str>) -> DatasetteSource {
        DatasetteSource {
            url: "https://example.gov/calls/fire_calls".into(),
            page_size: None,
            incremental_field: field.map(str::to_string),
            overlap: Duration::from_secs(3600),
            fields: Default::default(),
            link: None,
        }
    }

    #[test]
    fn timestamps_move_back_in_their_own_shape() {
        let hour = Duration::from_secs(3600);
        let shift = |t: &str, d| shift_timestamp(t, d);
        assert_eq!(
            shift("2017-01-08 00:00:00", hour).as_deref(),
            Some("2017-01-07 23:00:00")
        );
        assert_eq!(
            shift("2017-01-08T00:00:00Z", hour).as_deref(),
            Some("2017-01-07T23:00:00Z")
        );
        assert_eq!(
            shift("2017-01-08T00:00:00.123Z", Duration::from_secs(30)).as_deref(),
            Some("2017-01-07T23:59:30.123Z")
        );
        assert_eq!(
            shift("2017-01-08T10:00+02:00", hour).as_deref(),
            Some("2017-01-08T09:00+02:00")
        );
        assert_eq!(
            shift("2017-01-08T10:00:00-0500", hour).as_deref(),
            Some("2017-01-08T09:00:00-0500")
        );
        assert_eq!(shift("2017-01-08", hour).as_deref(), Some("2017-01-07"));
        assert_eq!(
            shift("2017-01-08", Duration::ZERO).as_deref(),
            Some("2017-01-08")
        );
        assert_eq!(shift("2017-01-08 7pm", hour), None);
        assert_eq!(shift("hello", hour), None);
        assert_eq!(shift("2017-01-08T00:00:00 PST", hour), None);
    }

    #[test]
    fn watermarks_compare_as_sqlite_does() {
        let n = |v: f64| Mark::Number {
            value: v,
            text: v.to_string(),
        };
        let t = |s: &str| Mark::Text(s.into());
        assert_eq!(n(9.0).cmp(&n(10.0)), Ordering::Less, "numbers by value");
        assert_eq!(t("9").cmp(&t("10")), Ordering::Greater, "text byte by byte");
        assert_eq!(n(1e12).cmp(&t("0")), Ordering::Less, "numbers below text");
        assert_eq!(
            Mark::from_saved("1483833600"),
            Mark::Number {
                value: 1483833600.0,
                text: "1483833600".into()
            }
        );
        assert_eq!(
            Mark::from_saved("2017-01-08"),
            Mark::Text("2017-01-08".into())
        );
        assert_eq!(
            window_start(&Mark::from_saved("42"), Duration::from_secs(3600)),
            "42"
        );
        assert_eq!(
            window_start(&Mark::from_saved("v2"), Duration::from_secs(3600)),
            "v2"
        );
    }

    #[test]
    fn table_urls_give_json_settings_and_filters() {
        let TableUrls {
            json,
            settings,
            filters,
        } = table_urls("https://data.example.gov/calls/fire_calls?status=open&year__gte=2020")
            .unwrap();
        assert_eq!(
            json.as_str(),
            "https://data.example.gov/calls/fire_calls.json"
        );
        assert_eq!(
            settings.as_str(),
            "https://data.example.gov/-/settings.json"
        );
        assert_eq!(
            filters,
            [
                ("status".into(), "open".into()),
                ("year__gte".into(), "2020".into())
            ]
        );
        let TableUrls { json, settings, .. } =
            table_urls("https://h/datasette/calls/fire~2Ecalls.json").unwrap();
        assert_eq!(json.as_str(), "https://h/datasette/calls/fire~2Ecalls.json");
        assert_eq!(settings.as_str(), "https://h/datasette/-/settings.json");
        let err = |u: &str| table_urls(u).unwrap_err().to_string();
        assert!(err("https://h/calls/t?_sort=x").contains("skip rows"));
        assert!(err("https://h/calls/t?_size=5").contains("page_size"));
        assert!(err("https://h/calls").contains("<database>/<table>"));
    }

    #[test]
    fn order_clauses_are_compared_without_quoting() {
        let sql = "select RowID, [Call Type] from [fire calls] order by RowID limit 1";
        assert_eq!(order_clause(sql).as_deref(), Some("rowid"));
        assert_eq!(
            order_clause("select * from t order by [a b], c limit 101").as_deref(),
            Some("ab,c")
        );
        assert_eq!(order_clause("select * from v limit 1"), None);
        assert_eq!(normalize("Call Date,RowID"), "calldate,rowid");
    }

    #[test]
    fn errors_say_what_to_fix() {
        let http = |status, body: &str| FetchError::Http {
            url: "https://h/db/t.json?_size=1000".into(),
            status: Some(status),
            message: format!("HTTP {status}"),
            body: Some(bytes::Bytes::from(body.to_string())),
        };
        let e = datasette_error(
            http(
                400,
                r#"{"ok": false, "error": "_size must be <= 100", "status": 400, "title": null}"#,
            ),
            &cfg(None),
            1000,
        )
        .to_string();
        assert!(
            e.contains("page_size = 1000") && e.contains("max_returned_rows (100)"),
            "{e}"
        );
        let e = datasette_error(
            http(
                404,
                r#"{"ok": false, "error": "Table not found: nope", "status": 404, "title": null}"#,
            ),
            &cfg(None),
            1000,
        )
        .to_string();
        assert!(
            e.contains("Table not found: nope") && e.contains("<database>/<table>"),
            "{e}"
        );
        let e = datasette_error(
            http(400, r#"{"ok": false, "error": "<p>SQL query took too long.</p><textarea>select 1</textarea>", "status": 400, "title": "SQL Interrupted"}"#),
            &cfg(Some("updated_at")),
            1000,
        )
        .to_string();
        assert!(
            e.contains("SQL query took too long.")
                && !e.contains("select 1")
                && e.contains("index on updated_at"),
            "{e}"
        );
        assert!(matches!(
            datasette_error(http(502, "bad gateway"), &cfg(None), 1000),
            FetchError::Http {
                status: Some(502),
                ..
            }
        ));
    }
}
