//! The `opendatasoft` source: Explore API v2.1, `/api/explore/v2.1/catalog/datasets/<id>`.
//!
//! - Counts first: `/records?limit=0` with the fetch's `where` answers `total_count`, the rows
//!   the fetch must deliver; a load that received fewer fails as incomplete.
//! - Pages `/records` with `limit` (at most 100) and `offset`. The endpoint only serves rows
//!   while `offset + limit` stays within a window (10,000 on Opendatasoft's service), so a
//!   result larger than that is read in one `/exports/json` request instead, which has no
//!   ceiling (`export = "auto"`). Before paging past the first page a `limit=0` request at
//!   the far end of the planned pages checks that the portal's window reaches that far: a
//!   portal with a smaller window refuses it (400 `InvalidRESTParameterError`) and the
//!   result goes through exports too. `export = "always"` or `"never"` force one way;
//!   `never` with a result beyond the window fails and says what to change.
//! - An export is one JSON array. Its records are located in the body once (which also
//!   proves the body whole, so a cut or malformed body is fetched again) and turned into
//!   pages of 10,000 rows one at a time, so only the body and one page sit in memory; the
//!   HTTP client's size caps bound the body.
//! - Asks for `timezone=UTC`, so every `datetime` arrives with its offset
//!   (`2017-01-01T07:57:56+00:00`) and date literals without one are read as UTC.
//! - A full load keeps the dataset's natural order (no `order_by`), which is stable: a row
//!   that changes while it is read stays in place, and a change after it was read is brought
//!   in by the next refresh's window.
//! - With `incremental_field` (a `date` or `datetime` field, checked against the dataset's
//!   schema), a refresh asks only for rows with ``field >= date'<watermark − overlap>'``, the
//!   watermark being the newest value of the field when the load began, kept as the portal
//!   wrote it (a full load asks for it with a one-row request before paging; a refresh reads
//!   newest first, so its first row holds it).
//! - A refresh pages by offset, newest first (``order_by=`field` DESC``), because the order
//!   moves while it is read and only this direction makes offsets safe: a row updated
//!   mid-read takes the newest value and jumps to the front, and a row entering the window
//!   lands there too, so the rows still to read only ever move back — a page may repeat a
//!   row, never skip one (and a row read twice is read in time order, so the later copy,
//!   which the merge keeps, is the newer). A jumped row the reader has already passed is at
//!   least as new as the watermark this refresh keeps, so the next refresh's window holds
//!   it. Rows deleted mid-read move
//!   the rows behind them up, and one may be skipped; that shows as fewer distinct rows than
//!   the count, and the runner reads the load again (as it does when jumped rows that were
//!   counted leave the count unmet). Keyset paging, as the Socrata source does on
//!   (`:updated_at`, `:id`), needs a unique field, which an Opendatasoft dataset does not
//!   declare.
//! - Sends `Authorization: Apikey <key>` from the environment variable the pipeline names;
//!   turns the portal's error bodies (`{"error_code", "message"}`) into messages that say
//!   what to fix.

use crate::decode::records_page;
use crate::http::{HttpClient, Problem, Request, Response};
use crate::page::RawPage;
use crate::{FetchError, LoadKind, Source, SourceContext, SourceState, secret_from_env};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use goalpost_spec::{ExportMode, OpendatasoftSource};
use reqwest::header::{ACCEPT, AUTHORIZATION};
use serde_json::Value;
use std::ops::Range;
use std::sync::Arc;
use url::Url;

/// Rows per `/records` request unless the pipeline says otherwise; also the API's ceiling.
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// The largest `offset + limit` Opendatasoft's `/records` endpoint accepts.
pub const RECORDS_WINDOW: usize = 10_000;

/// Rows per page handed out from an export.
const EXPORT_PAGE_ROWS: usize = 10_000;

pub struct Opendatasoft {
    cfg: OpendatasoftSource,
    http: Arc<HttpClient>,
    /// `…/api/explore/v2.1/catalog/datasets/<id>`.
    dataset_url: Url,
    api_key: Option<String>,
    kind: LoadKind,
    /// The ODSQL condition of this fetch (the pipeline's filter and the refresh window).
    condition: Option<String>,
    /// `order_by` of the `/records` pages: none (natural order) for a full load.
    order: Option<String>,
    page_size: usize,
    expected: Option<u64>,
    received: u64,
    next_index: usize,
    read: Read,
    /// The newest value of the incremental field seen, and its text as the portal wrote it.
    watermark: Option<(DateTime<Utc>, String)>,
}

/// How far the portal's `/records` window reaches.
enum Window {
    Reaches,
    /// Refused, with the largest `offset + limit` the portal named, if it named one.
    Refused {
        allows: Option<u64>,
    },
}

/// Where the fetch stands.
enum Read {
    /// Nothing asked yet.
    Start,
    /// Paging `/records`: the next offset, and the result's size as the last answer gave it.
    Records {
        offset: usize,
        total: u64,
    },
    /// Handing out the records of one `/exports/json` body, located by `items`.
    Export {
        url: Url,
        body: Bytes,
        items: Vec<Range<usize>>,
        next: usize,
    },
    Done,
}

impl Opendatasoft {
    pub fn open(cfg: &OpendatasoftSource, ctx: &SourceContext) -> Result<Self, FetchError> {
        let dataset_url = dataset_url(&cfg.url, &cfg.dataset)?;
        let api_key = cfg
            .api_key_env
            .as_deref()
            .map(secret_from_env)
            .transpose()?;
        let prior = match (&cfg.incremental_field, &ctx.prior) {
            (Some(_), Some(state)) => state.watermark.clone(),
            _ => None,
        };
        let watermark = match prior {
            Some(text) => Some((
                instant(&text).ok_or_else(|| FetchError::Config {
                    message: format!(
                        "the saved watermark {text:?} of {dataset_url} is not a date or time; run with --full to start over"
                    ),
                })?,
                text,
            )),
            None => None,
        };
        let refresh = match (&cfg.incremental_field, &watermark) {
            (Some(field), Some((mark, _))) => Some(format!(
                "{} >= date'{}'",
                odsql_field(field),
                window_start(*mark, cfg.overlap)
            )),
            _ => None,
        };
        let (kind, order) = match (&refresh, &cfg.incremental_field) {
            (Some(_), Some(field)) => (
                LoadKind::Changes,
                Some(format!("{} DESC", odsql_field(field))),
            ),
            _ => (LoadKind::Full, None),
        };
        let filter = cfg
            .filter
            .as_deref()
            .map(str::trim)
            .filter(|f| !f.is_empty());
        let condition = match (filter, refresh) {
            (Some(f), Some(r)) => Some(format!("({f}) AND {r}")),
            (Some(f), None) => Some(f.to_string()),
            (None, r) => r,
        };
        Ok(Self {
            page_size: cfg
                .page_size
                .unwrap_or(DEFAULT_PAGE_SIZE)
                .clamp(1, DEFAULT_PAGE_SIZE),
            cfg: cfg.clone(),
            http: ctx.http.clone(),
            dataset_url,
            api_key,
            kind,
            condition,
            order,
            expected: None,
            received: 0,
            next_index: 0,
            read: Read::Start,
            watermark,
        })
    }

    fn endpoint(&self, tail: &[&str]) -> Url {
        let mut url = self.dataset_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.extend(tail);
        }
        url
    }

    fn request(&self, mut url: Url, params: &[(&str, String)]) -> Result<Request, FetchError> {
        if !params.is_empty() {
            url.query_pairs_mut().extend_pairs(params);
        }
        let mut req = Request::new(url).header(ACCEPT, "application/json");
        if let Some(key) = &self.api_key {
            req = req.secret(AUTHORIZATION, &format!("Apikey {key}"))?;
        }
        Ok(req)
    }

    /// A `/records` request with this fetch's condition (and its order, when `ordered`).
    fn records_request(
        &self,
        limit: usize,
        offset: usize,
        ordered: bool,
    ) -> Result<Request, FetchError> {
        let mut params = vec![("limit", limit.to_string()), ("offset", offset.to_string())];
        if let Some(c) = &self.condition {
            params.push(("where", c.clone()));
        }
        if ordered && let Some(o) = &self.order {
            params.push(("order_by", o.clone()));
        }
        params.push(("timezone", "UTC".to_string()));
        self.request(self.endpoint(&["records"]), &params)
    }

    fn portal_error(&self, e: FetchError) -> FetchError {
        ods_error(e, &self.cfg.dataset, self.cfg.api_key_env.is_some())
    }

    /// The incremental field must exist and hold dates: a typo would otherwise only show
    /// on the first refresh, and a text field would compare wrongly.
    async fn check_incremental_field(&self, field: &str) -> Result<(), FetchError> {
        let req = self.request(self.dataset_url.clone(), &[])?;
        let (_, fields) = self
            .http
            .get_with(&req, schema_fields)
            .await
            .map_err(|e| self.portal_error(e))?;
        let url = req.url.to_string();
        match fields.iter().find(|(name, _)| name == field) {
            None => Err(FetchError::Portal {
                url,
                message: format!(
                    "the dataset has no field {field:?} (incremental_field); its fields are: {}. \
                     The source's schema changed or the pipeline names it wrongly",
                    fields
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
            Some((_, kind)) if kind != "datetime" && kind != "date" => Err(FetchError::Portal {
                url,
                message: format!(
                    "incremental_field {field:?} is a {kind} field; a refresh needs a date or \
                     datetime field that moves whenever a row changes"
                ),
            }),
            Some(_) => Ok(()),
        }
    }

    /// `total_count` of this fetch's result, from a `/records` request for no rows.
    async fn count(&self, offset: usize) -> Result<u64, FetchError> {
        let req = self.records_request(0, offset, false)?;
        let (_, answer) = self.http.get_with(&req, records_answer).await?;
        Ok(answer.total_count)
    }

    /// Whether `/records` serves rows up to `offset + limit = reach`. A portal whose window
    /// is smaller answers 400 `InvalidRESTParameterError` ("… <= 5000 is expected").
    async fn window(&self, reach: usize) -> Result<Window, FetchError> {
        match self.count(reach).await {
            Ok(_) => Ok(Window::Reaches),
            Err(FetchError::Http {
                status: Some(400),
                body: Some(body),
                ..
            }) if window_refusal(&body).is_some() => Ok(Window::Refused {
                allows: window_refusal(&body).flatten(),
            }),
            // Recordings keep only the answers that ended a request well, so a replay that
            // does not find this one is replaying a run whose portal refused it.
            Err(FetchError::Replay { .. }) if self.http.tape().is_replay() => {
                Ok(Window::Refused { allows: None })
            }
            Err(e) => Err(self.portal_error(e)),
        }
    }

    /// The newest value of the incremental field before a full load pages.
    ///
    /// A full load reads in the dataset's natural order, so a row it has already passed may
    /// change while it reads on, with a value below rows read after it: the newest value
    /// *seen* could lie past that change and no refresh would ask for it. The newest value at
    /// the start cannot.
    async fn newest_at_start(
        &self,
        field: &str,
    ) -> Result<Option<(DateTime<Utc>, String)>, FetchError> {
        let mut params = vec![
            ("limit", "1".to_string()),
            ("select", odsql_field(field)),
            ("order_by", format!("{} DESC", odsql_field(field))),
        ];
        if let Some(c) = &self.condition {
            params.push(("where", c.clone()));
        }
        params.push(("timezone", "UTC".to_string()));
        let req = self.request(self.endpoint(&["records"]), &params)?;
        let (_, answer) = self
            .http
            .get_with(&req, records_answer)
            .await
            .map_err(|e| self.portal_error(e))?;
        Ok(answer
            .results
            .first()
            .and_then(|r| r.get(field))
            .and_then(Value::as_str)
            .and_then(|text| Some((instant(text)?, text.to_string()))))
    }

    /// Count, then choose between `/records` and `/exports/json`.
    async fn plan(&mut self) -> Result<(), FetchError> {
        if let Some(field) = self.cfg.incremental_field.clone() {
            self.check_incremental_field(&field).await?;
        }
        let total = self.count(0).await.map_err(|e| self.portal_error(e))?;
        self.expected = Some(total);
        if self.kind == LoadKind::Full
            && total > 0
            && let Some(field) = self.cfg.incremental_field.clone()
        {
            self.watermark = self.newest_at_start(&field).await?;
        }
        tracing::info!(source = %self.dataset_url, rows = total, mode = self.kind.as_str(), "counted");
        if total == 0 {
            self.read = Read::Done;
            return Ok(());
        }
        let rows = usize::try_from(total).unwrap_or(usize::MAX);
        // The `offset + limit` of the last page, were the result paged.
        let reach = rows
            .div_ceil(self.page_size)
            .saturating_mul(self.page_size)
            .min(RECORDS_WINDOW);
        let refused = if self.cfg.export == ExportMode::Always {
            None
        } else if rows > RECORDS_WINDOW {
            Some(format!(
                "the records endpoint pages through at most {RECORDS_WINDOW} rows"
            ))
        } else if reach > self.page_size {
            match self.window(reach).await? {
                Window::Reaches => None,
                Window::Refused { allows } => Some(format!(
                    "this portal's records endpoint refuses offset + limit = {reach}{}",
                    allows.map_or(String::new(), |n| format!(" (it allows {n})"))
                )),
            }
        } else {
            None
        };
        let export = match (self.cfg.export, refused) {
            (ExportMode::Always, _) => true,
            (ExportMode::Never, Some(why)) => {
                return Err(FetchError::Config {
                    message: format!(
                        "{}: the result has {total} rows and {why}, but the pipeline says \
                         export = \"never\"; set export = \"auto\" to read it through \
                         /exports/json, or narrow `where` to fewer rows",
                        self.dataset_url
                    ),
                });
            }
            (_, refused) => refused.is_some(),
        };
        if export {
            self.export().await
        } else {
            self.read = Read::Records { offset: 0, total };
            Ok(())
        }
    }

    /// Fetch the whole result in one `/exports/json` request.
    async fn export(&mut self) -> Result<(), FetchError> {
        let mut params = Vec::new();
        if let Some(c) = &self.condition {
            params.push(("where", c.clone()));
        }
        params.push(("timezone", "UTC".to_string()));
        let req = self.request(self.endpoint(&["exports", "json"]), &params)?;
        let (response, items) = self
            .http
            .get_with(&req, |r| {
                array_items(&r.body).map_err(|m| {
                    Problem::Transient(format!("the export is not a whole JSON array ({m})"))
                })
            })
            .await
            .map_err(|e| self.portal_error(e))?;
        let expected = self.expected.unwrap_or(0);
        tracing::info!(source = %req.url, rows = items.len(), "exported");
        if (items.len() as u64) < expected {
            return Err(FetchError::Incomplete {
                source_name: req.url.to_string(),
                expected,
                received: items.len() as u64,
                detail: " (rows were deleted between the count and the export, or the portal cut the export short)".into(),
            });
        }
        self.read = Read::Export {
            url: req.url,
            body: response.body,
            items,
            next: 0,
        };
        Ok(())
    }

    async fn read_records(&mut self, offset: usize, total: u64) -> Result<RawPage, FetchError> {
        let limit = self.page_size.min(RECORDS_WINDOW.saturating_sub(offset));
        if limit == 0 {
            // The result grew past the window while it was read.
            return Err(FetchError::Incomplete {
                source_name: self.dataset_url.to_string(),
                expected: total,
                received: self.received,
                detail: format!(
                    " (the result grew past the {RECORDS_WINDOW}-row window of /records while it was read; counted again, a result that large goes through /exports/json)"
                ),
            });
        }
        let req = self.records_request(limit, offset, true)?;
        let index = self.next_index;
        let origin = format!("{} page {}", self.endpoint(&["records"]), index + 1);
        let (_, (total, page)) = self
            .http
            .get_with(&req, |r| {
                let answer = records_answer(r)?;
                let page = records_page(&answer.results, &origin, index, offset as u64 + 1)
                    .map_err(|e| Problem::Permanent(e.to_string()))?;
                Ok((answer.total_count, page))
            })
            .await
            .map_err(|e| self.portal_error(e))?;
        self.next_index += 1;
        let rows = page.num_rows();
        self.received += rows as u64;
        let next = offset + limit;
        self.read = if rows < limit || next as u64 >= total {
            Read::Done
        } else {
            Read::Records {
                offset: next,
                total,
            }
        };
        Ok(page)
    }

    fn export_page(&mut self) -> Result<Option<RawPage>, FetchError> {
        let Read::Export {
            url,
            body,
            items,
            next,
        } = &mut self.read
        else {
            return Ok(None);
        };
        if *next >= items.len() {
            self.read = Read::Done;
            return Ok(None);
        }
        let end = (*next + EXPORT_PAGE_ROWS).min(items.len());
        let origin = format!("{url} records {}-{}", *next + 1, end);
        let values = items[*next..end]
            .iter()
            .map(|r| serde_json::from_slice::<Value>(&body[r.clone()]))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| FetchError::Decode {
                origin: origin.clone(),
                message: e.to_string(),
            })?;
        let page = records_page(&values, &origin, self.next_index, *next as u64 + 1)?;
        *next = end;
        self.next_index += 1;
        self.received += page.num_rows() as u64;
        Ok(Some(page))
    }

    fn track_watermark(&mut self, page: &RawPage) {
        use arrow::array::AsArray;
        let Some(field) = &self.cfg.incremental_field else {
            return;
        };
        let Some(col) = page.batch.column_by_name(field) else {
            return;
        };
        for text in col.as_string::<i32>().iter().flatten() {
            if let Some(t) = instant(text)
                && self.watermark.as_ref().is_none_or(|(w, _)| t > *w)
            {
                self.watermark = Some((t, text.to_string()));
            }
        }
    }
}

#[async_trait]
impl Source for Opendatasoft {
    fn describe(&self) -> String {
        self.dataset_url.to_string()
    }

    async fn next_page(&mut self) -> Result<Option<RawPage>, FetchError> {
        let page = loop {
            match self.read {
                Read::Start => self.plan().await?,
                Read::Records { offset, total } => break self.read_records(offset, total).await?,
                Read::Export { .. } => match self.export_page()? {
                    Some(page) => break page,
                    None => return Ok(None),
                },
                Read::Done => return Ok(None),
            }
        };
        if matches!(self.read, Read::Done) {
            let expected = self.expected.unwrap_or(0);
            if self.received < expected {
                return Err(FetchError::Incomplete {
                    source_name: self.dataset_url.to_string(),
                    expected,
                    received: self.received,
                    detail:
                        " (rows were deleted during the fetch, or the portal cut the result short)"
                            .into(),
                });
            }
        }
        if self.kind == LoadKind::Changes {
            // Refreshes read newest first, so the newest value seen is the newest at their
            // start; a full load took its mark before paging.
            self.track_watermark(&page);
        }
        if page.num_rows() == 0 {
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
            watermark: self.watermark.as_ref().map(|(_, text)| text.clone()),
            ..Default::default()
        }
    }
}

/// `<portal>/api/explore/v2.1/catalog/datasets/<id>`.
fn dataset_url(portal: &str, dataset: &str) -> Result<Url, FetchError> {
    let mut url = Url::parse(portal.trim()).map_err(|e| FetchError::Config {
        message: format!("opendatasoft url {portal:?} is not a web address: {e}"),
    })?;
    let path = url.path().to_ascii_lowercase();
    if path.contains("/api/") || path.contains("/explore") {
        return Err(FetchError::Config {
            message: format!(
                "opendatasoft url {portal:?} should be the portal's address alone (e.g. \"{}\"), with the dataset identifier in `dataset`",
                url.origin().ascii_serialization()
            ),
        });
    }
    if dataset.trim().is_empty() || dataset.contains('/') {
        return Err(FetchError::Config {
            message: format!(
                "opendatasoft dataset {dataset:?} is not a dataset identifier; expected the <id> of the dataset's address …/explore/dataset/<id>/"
            ),
        });
    }
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut()
        .map_err(|()| FetchError::Config {
            message: format!("opendatasoft url {portal:?} cannot hold a path"),
        })?
        .pop_if_empty()
        .extend([
            "api",
            "explore",
            "v2.1",
            "catalog",
            "datasets",
            dataset.trim(),
        ]);
    Ok(url)
}

/// A field name as an ODSQL identifier (back-quoted, so keywords and digit-only names work).
fn odsql_field(name: &str) -> String {
    format!("`{}`", name.replace('`', ""))
}

/// An instant from a date or datetime as Opendatasoft writes it (`2017-01-01T07:57:56+00:00`,
/// or `2016-12-31` for a `date` field). A time without an offset is taken as UTC, the zone
/// every request asks for.
fn instant(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })
        .or_else(|| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
        })
}

/// The refresh window's start: the watermark less the overlap, ISO 8601 in UTC with `Z`.
fn window_start(mark: DateTime<Utc>, overlap: std::time::Duration) -> String {
    let start = chrono::Duration::from_std(overlap)
        .ok()
        .and_then(|d| mark.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    start.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A `/records` answer.
#[derive(serde::Deserialize)]
struct RecordsAnswer {
    total_count: u64,
    #[serde(default)]
    results: Vec<Value>,
}

fn records_answer(r: &Response) -> Result<RecordsAnswer, Problem> {
    r.json()
}

/// `(name, type)` of each field of the dataset's schema.
fn schema_fields(r: &Response) -> Result<Vec<(String, String)>, Problem> {
    let v: Value = r.json()?;
    let fields = v
        .get("fields")
        .and_then(Value::as_array)
        .ok_or_else(|| Problem::Permanent("the dataset's description has no \"fields\"".into()))?;
    Ok(fields
        .iter()
        .filter_map(|f| {
            let name = f.get("name")?.as_str()?;
            let kind = f.get("type").and_then(Value::as_str).unwrap_or("unknown");
            Some((name.to_string(), kind.to_string()))
        })
        .collect())
}

/// Where each element of a JSON array of objects lies in `body`. Reads the whole body, so a
/// document cut short or malformed is found before any of it is used.
fn array_items(body: &[u8]) -> Result<Vec<Range<usize>>, String> {
    let skip = |mut at: usize| {
        while body.get(at).is_some_and(u8::is_ascii_whitespace) {
            at += 1;
        }
        at
    };
    // A UTF-8 byte order mark is allowed before the document.
    let start = if body.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    };
    let mut at = skip(start);
    if body.get(at) != Some(&b'[') {
        return Err(format!(
            "expected a JSON array of records, found {}",
            crate::http::excerpt(&body[at.min(body.len())..])
        ));
    }
    let mut items = Vec::new();
    at = skip(at + 1);
    if body.get(at) == Some(&b']') {
        at += 1;
    } else {
        loop {
            let n = items.len() + 1;
            if body.get(at) != Some(&b'{') {
                return Err(if at >= body.len() {
                    format!("the document ends before record {n}")
                } else {
                    format!("record {n} is not a JSON object (byte {at})")
                });
            }
            let mut one = serde_json::Deserializer::from_slice(&body[at..])
                .into_iter::<serde::de::IgnoredAny>();
            match one.next() {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("record {n}: {e}")),
                None => return Err(format!("the document ends before record {n}")),
            }
            let end = at + one.byte_offset();
            items.push(at..end);
            at = skip(end);
            match body.get(at) {
                Some(b',') => at = skip(at + 1),
                Some(b']') => {
                    at += 1;
                    break;
                }
                Some(_) => return Err(format!("expected ',' or ']' after record {n} (byte {at})")),
                None => return Err(format!("the document ends after record {n}")),
            }
        }
    }
    if skip(at) != body.len() {
        return Err(format!("unexpected data after the array (byte {at})"));
    }
    Ok(items)
}

/// Whether a 400 body refuses `offset + limit`, and the window it names ("… was found but
/// <= 5000 is expected" gives 5000).
fn window_refusal(body: &[u8]) -> Option<Option<u64>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    if v.get("error_code").and_then(Value::as_str) != Some("InvalidRESTParameterError") {
        return None;
    }
    let message = v.get("message").and_then(Value::as_str)?;
    if !message.contains("offset") {
        return None;
    }
    let allows = message.rsplit_once("<=").and_then(|(_, rest)| {
        rest.trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .ok()
    });
    Some(allows)
}

/// An Opendatasoft error body (`{"error_code", "message"}`) made into advice.
fn ods_error(e: FetchError, dataset: &str, has_key: bool) -> FetchError {
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
    let text_of = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let code = text_of("error_code").unwrap_or_default();
    let text = text_of("message")
        .or_else(|| text_of("error"))
        .unwrap_or(message);
    let status_code = status.unwrap_or(0);
    let message = match (status, code.as_str()) {
        (_, "ODSQLError") if text.to_ascii_lowercase().contains("unknown field") => {
            let field = unknown_field(&text)
                .map(|f| format!(" {f:?}"))
                .unwrap_or_default();
            format!(
                "the dataset {dataset} has no field{field} ({code}: {text}); the source's schema changed or the pipeline names it wrongly (in `where` or incremental_field)"
            )
        }
        (_, "ODSQLError") => format!(
            "the portal cannot run the query ({code}: {text}); check the pipeline's `where`, which must be ODSQL (e.g. date >= date'2020-01-01')"
        ),
        (_, "InvalidRESTParameterError") => {
            format!("the portal refused a request parameter ({code}: {text})")
        }
        (Some(401 | 403), _) => {
            let hint = if has_key {
                "check that the key in api_key_env is valid and may read this dataset"
            } else {
                "set api_key_env to a variable holding an API key that may read this dataset"
            };
            format!("access denied ({text}); {hint}")
        }
        (Some(404), _) => format!(
            "dataset {dataset} was not found ({text}); check `dataset` (the <id> in the dataset's address …/explore/dataset/<id>/){}",
            if has_key {
                ""
            } else {
                ", and for a private dataset set api_key_env"
            }
        ),
        (Some(429), _) => format!(
            "the portal's request quota is used up ({text}); run later, or send an API key (api_key_env), which usually has a larger quota"
        ),
        (_, "") => format!("HTTP {status_code}: {text}"),
        (_, code) => format!("HTTP {status_code}: {code}: {text}"),
    };
    FetchError::Portal {
        url: readable(&url),
        message,
    }
}

/// A request address with its query decoded, so a message shows the ODSQL as written.
fn readable(url: &str) -> String {
    let Ok(parsed) = Url::parse(url) else {
        return url.to_string();
    };
    if parsed.query().is_none() {
        return url.to_string();
    }
    let mut base = parsed.clone();
    base.set_query(None);
    let pairs: Vec<String> = parsed
        .query_pairs()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

/// The name in "Unknown field: foo …".
fn unknown_field(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let at = lower.find("unknown field")? + "unknown field".len();
    let name: String = text[at..]
        .trim_start_matches([':', ' ', '"', '`', '\''])
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn refresh_window_starts_an_overlap_before_the_watermark_in_utc() {
        let mark = instant("2017-01-08T01:36:00+00:00").unwrap();
        assert_eq!(
            window_start(mark, Duration::from_secs(600)),
            "2017-01-08T01:26:00Z"
        );
        let mark = instant("2017-01-08T02:00:00.5-05:00").unwrap();
        assert_eq!(
            window_start(mark, Duration::from_secs(30)),
            "2017-01-08T06:59:30.500Z"
        );
        assert_eq!(
            instant("2016-12-31"),
            instant("2016-12-31T00:00:00Z"),
            "a date field is midnight UTC"
        );
        assert!(instant("yesterday").is_none());
    }

    #[test]
    fn dataset_addresses_are_built_from_the_portal_and_id() {
        assert_eq!(
            dataset_url("https://data.example.gov/", "fire-calls")
                .unwrap()
                .as_str(),
            "https://data.example.gov/api/explore/v2.1/catalog/datasets/fire-calls"
        );
        let err = dataset_url(
            "https://data.example.gov/explore/dataset/fire-calls/",
            "fire-calls",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("\"https://data.example.gov\""), "{err}");
        assert!(dataset_url("https://data.example.gov", "a/b").is_err());
        assert_eq!(odsql_field("date"), "`date`");
    }

    #[test]
    fn export_arrays_are_located_record_by_record() {
        let body = br#" [ {"a": 1, "b": "x]"} ,{"a":[2,{}]}]
"#;
        let items = array_items(body).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(&body[items[0].clone()], br#"{"a": 1, "b": "x]"}"#);
        assert_eq!(&body[items[1].clone()], br#"{"a":[2,{}]}"#);
        assert_eq!(array_items(b"[]").unwrap(), Vec::<Range<usize>>::new());
        assert_eq!(array_items(b"\xEF\xBB\xBF[{}]").unwrap().len(), 1);
        for bad in [
            &b"[{\"a\":1},{\"a\""[..],
            b"[{\"a\":1}",
            b"[{\"a\":1}] x",
            b"[1]",
            b"{\"results\": []}",
            b"",
        ] {
            assert!(
                array_items(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn window_refusals_are_told_from_other_parameter_errors() {
        let refusal = br#"{"status_code":400,"error_code":"InvalidRESTParameterError","message":"Invalid value for sum of offset + limit API parameter: 7800 was found but <= 5000 is expected."}"#;
        assert_eq!(window_refusal(refusal), Some(Some(5000)));
        let other = br#"{"error_code":"InvalidRESTParameterError","message":"Invalid value for limit API parameter: 200 was found but -1 <= limit <= 100 is expected."}"#;
        assert_eq!(window_refusal(other), None);
        let odsql = br#"{"error_code":"ODSQLError","message":"offset"}"#;
        assert_eq!(window_refusal(odsql), None);
    }

    fn http_error(status: u16, body: &str) -> FetchError {
        FetchError::Http {
            url: "https://ods.example/records?where=x+%3E%3D+date%272017-01-01%27".into(),
            status: Some(status),
            message: format!("HTTP {status}"),
            body: Some(Bytes::from(body.to_string())),
        }
    }

    #[test]
    fn portal_errors_become_advice() {
        let e = ods_error(
            http_error(
                400,
                r#"{"status_code":400,"error_code":"ODSQLError","message":"Unknown field: received_dttm"}"#,
            ),
            "fire-calls",
            false,
        )
        .to_string();
        assert!(
            e.starts_with("https://ods.example/records?where=x >= date'2017-01-01': "),
            "{e}"
        );
        assert!(
            e.contains("has no field \"received_dttm\"")
                && e.contains("schema changed or the pipeline names it wrongly"),
            "{e}"
        );
        let e = ods_error(
            http_error(
                404,
                r#"{"error_code":"NotFound","message":"Unknown dataset: x"}"#,
            ),
            "x",
            false,
        )
        .to_string();
        assert!(
            e.contains("dataset x was not found") && e.contains("api_key_env"),
            "{e}"
        );
        let e = ods_error(
            http_error(401, r#"{"error_code":"Unauthorized","message":"no"}"#),
            "x",
            true,
        )
        .to_string();
        assert!(e.contains("check that the key in api_key_env"), "{e}");
        // Bodies that are not the portal's JSON stay as the HTTP client described them.
        assert!(matches!(
            ods_error(http_error(502, "bad gateway"), "x", false),
            FetchError::Http { .. }
        ));
    }
}
