//! The `arcgis` source: one layer of an ArcGIS REST FeatureServer or MapServer
//! (`…/FeatureServer/0`), read through its `query` operation.
//!
//! - Reads the layer's description first (`<layer>?f=json`): its fields (which are
//!   `esriFieldTypeDate`), the object-id field, `maxRecordCount`, whether it can page
//!   (`advancedQueryCapabilities.supportsPagination`), its edit-date field
//!   (`editFieldsInfo.editDateField`) and whether its dates are in an unknown time zone.
//! - Counts first (`returnCountOnly=true`, same `where`) and fails a load that received fewer
//!   features than that count.
//! - Pages with `resultOffset`/`resultRecordCount` (never above `maxRecordCount`) under
//!   `orderByFields=<object id>`, a stable order, for as long as `exceededTransferLimit` says
//!   more features follow. The offset advances by the features received, not by the page size:
//!   a server may send fewer than asked — even none — and still set the flag. A few empty pages
//!   in a row with the flag set are an error, not an endless loop. GeoJSON from servers that
//!   leave the flag out (Koop) is paged until a short page.
//! - Layers that cannot page (old servers, some MapServers) are read by object id: the ids
//!   matching the `where` first (`returnIdsOnly=true`, not limited by `maxRecordCount`), then
//!   ranges of them as `<oid> >= a AND <oid> <= b`, which keeps every URL short whatever the
//!   ids. A range that meanwhile holds more features than one response carries is split.
//! - Dates (`esriFieldTypeDate`) arrive as epoch milliseconds UTC and are written as ISO 8601
//!   (`2017-01-01T07:57:56Z`, milliseconds kept when not zero), which the table stage reads.
//!   A layer that declares `datesInUnknownTimezone` gets the same text without `Z`, so the
//!   values are read in the pipeline's time zone.
//! - A point's coordinates become `longitude` and `latitude`; every geometry is also kept in
//!   `geometry` as the JSON the server sent (Esri JSON, or GeoJSON with `format = "geojson"`).
//!   Every query asks for `outSR=4326`, so coordinates are WGS 84 degrees.
//! - A refresh asks only for features whose incremental field (default: the layer's edit-date
//!   field) is at or after the watermark less the overlap: `(<where>) AND <field> >= timestamp
//!   'YYYY-MM-DD HH:MM:SS'` (UTC). It still pages in object-id order: an order by edit date
//!   moves while it is read (an edited feature jumps to the end and every feature behind it
//!   shifts back one offset, so one is skipped), and a keyset on the date would need date
//!   literals as precise as the stored values, which many servers do not accept. In
//!   object-id order an edit never moves a feature back; one edited after it was read is
//!   stored as it was, and the next refresh brings the change in: the watermark is the
//!   newest edit date *before* the pages are read (a one-feature query ordered by the field,
//!   descending), so every edit made while paging lies after it. (Layers without pagination
//!   keep the newest date seen, and rely on the overlap.)
//! - Errors come with HTTP 200 and a body `{"error": {"code", "message", "details"}}`, so
//!   every body is checked: a 5xx code is retried like a busy server, any other code is
//!   reported with its details and advice.
//! - A token (from the variable `token_env` names) is sent as `X-Esri-Authorization: Bearer
//!   <token>`, never as the `token` query parameter: URLs end up in logs and recordings.

use crate::decode::json_text;
use crate::http::{HttpClient, Problem, Request, Response, excerpt};
use crate::page::{RawBatchBuilder, RawPage, RowOrigin};
use crate::{FetchError, LoadKind, Source, SourceContext, SourceState, secret_from_env};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use goalpost_spec::{ArcgisFormat, ArcgisSource};
use reqwest::header::{ACCEPT, HeaderName};
use serde_json::Value;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use url::Url;

/// `maxRecordCount` when a layer does not state one (the ArcGIS Server default).
pub const DEFAULT_MAX_RECORD_COUNT: usize = 1000;

/// Empty pages in a row, flagged `exceededTransferLimit`, before the server is given up on.
const MAX_EMPTY_PAGES: u32 = 3;

const ESRI_DATE: &str = "esriFieldTypeDate";

pub struct Arcgis {
    cfg: ArcgisSource,
    http: Arc<HttpClient>,
    layer_url: Url,
    query_url: Url,
    token: Option<String>,
    /// What the layer's description said; read on the first call of `next_page`.
    layer: Option<Layer>,
    kind: LoadKind,
    /// The `where` of this fetch: the pipeline's filter and the refresh window.
    condition: String,
    page_size: usize,
    cursor: Cursor,
    expected: Option<u64>,
    received: u64,
    next_index: usize,
    done: bool,
    empty_in_a_row: u32,
    /// Newest value of the incremental field seen (epoch ms), carried over from the last run.
    watermark_ms: Option<i64>,
    /// The watermark was taken from the layer before paging (see [`ArcGis::newest_at_start`]),
    /// so the pages must not move it.
    mark_taken: bool,
}

/// What the fetch needs from the layer's description.
#[derive(Debug, Clone)]
struct Layer {
    object_id: String,
    max_record_count: usize,
    pagination: bool,
    /// Names of the `esriFieldTypeDate` fields.
    dates: HashSet<String>,
    geometry: bool,
    /// `datesInUnknownTimezone`: dates are wall-clock times, not UTC.
    naive_dates: bool,
    /// The incremental field, spelled as the layer spells it.
    incremental: Option<String>,
}

/// Where the fetch stands.
enum Cursor {
    /// Paging: the next offset is the number of features received so far.
    Offsets,
    /// By object id: the chunks of sorted ids still to read.
    Ranges(VecDeque<Vec<i64>>),
}

/// An ArcGIS error envelope.
#[derive(Debug, Clone, PartialEq)]
struct EsriError {
    code: i64,
    message: String,
    details: Vec<String>,
}

impl std::fmt::Display for EsriError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ArcGIS error {}: {}", self.code, self.message)?;
        let details: Vec<&str> = self
            .details
            .iter()
            .map(|d| d.trim())
            .filter(|d| !d.is_empty() && *d != self.message)
            .collect();
        if !details.is_empty() {
            write!(f, " ({})", details.join("; "))?;
        }
        Ok(())
    }
}

/// One decoded page and what it says about the rest.
struct Features {
    page: RawPage,
    /// `exceededTransferLimit`, when the response states it.
    exceeded: Option<bool>,
    /// Newest value of the incremental field on the page (epoch ms).
    newest_ms: Option<i64>,
}

impl Arcgis {
    pub fn open(cfg: &ArcgisSource, ctx: &SourceContext) -> Result<Self, FetchError> {
        let layer_url = layer_url(&cfg.url)?;
        let mut query_url = layer_url.clone();
        query_url
            .path_segments_mut()
            .map_err(|_| FetchError::Config {
                message: format!("arcgis url {:?} cannot take a path", cfg.url),
            })?
            .push("query");
        let token = cfg.token_env.as_deref().map(secret_from_env).transpose()?;
        let watermark_ms = match ctx.prior.as_ref().and_then(|s| s.watermark.as_deref()) {
            Some(mark) => Some(parse_instant_ms(mark).ok_or_else(|| FetchError::Config {
                message: format!(
                    "the saved watermark {mark:?} of {} is not a timestamp; run with --full to start over",
                    cfg.url
                ),
            })?),
            None => None,
        };
        Ok(Self {
            cfg: cfg.clone(),
            http: ctx.http.clone(),
            layer_url,
            query_url,
            token,
            layer: None,
            kind: LoadKind::Full,
            condition: String::new(),
            page_size: 0,
            cursor: Cursor::Offsets,
            expected: None,
            received: 0,
            next_index: 0,
            done: false,
            empty_in_a_row: 0,
            watermark_ms,
            mark_taken: false,
        })
    }

    fn request(&self, url: &Url, params: &[(&str, String)]) -> Result<Request, FetchError> {
        let mut url = url.clone();
        url.query_pairs_mut().extend_pairs(params);
        let accept = match self.cfg.format {
            ArcgisFormat::Json => "application/json",
            ArcgisFormat::Geojson => "application/geo+json, application/json",
        };
        let mut req = Request::new(url).header(ACCEPT, accept);
        if let Some(token) = &self.token {
            req = req.secret(
                HeaderName::from_static("x-esri-authorization"),
                &format!("Bearer {token}"),
            )?;
        }
        Ok(req)
    }

    /// GET a JSON document, checking it for an error envelope.
    async fn get_json(&self, req: &Request) -> Result<Value, FetchError> {
        let (_, answer) = self
            .http
            .get_with(req, checked_json)
            .await
            .map_err(|e| http_error(e, &self.cfg))?;
        answer.map_err(|e| portal_error(&req.url, &e, &self.cfg))
    }

    /// Read the layer's description and settle how this fetch runs.
    async fn prepare(&mut self) -> Result<(), FetchError> {
        let req = self.request(&self.layer_url, &[("f", "json".into())])?;
        let info = self.get_json(&req).await?;
        let layer = describe_layer(&info, &self.cfg).map_err(|message| FetchError::Portal {
            url: req.url.to_string(),
            message,
        })?;
        if let Some(zone) = info
            .pointer("/dateFieldsTimeReference/timeZone")
            .and_then(Value::as_str)
            .filter(|z| !z.eq_ignore_ascii_case("UTC"))
        {
            tracing::warn!(
                source = %self.layer_url,
                zone,
                "the layer stores dates in a local time zone; make overlap cover its offset from UTC"
            );
        }
        let filter = self
            .cfg
            .filter
            .as_deref()
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .unwrap_or("1=1");
        let window = match (&layer.incremental, self.watermark_ms, self.cfg.incremental) {
            (Some(field), Some(mark), true) => {
                Some((field.clone(), window_literal(mark, self.cfg.overlap)))
            }
            _ => None,
        };
        (self.kind, self.condition) = match window {
            Some((field, since)) => (
                LoadKind::Changes,
                format!("({filter}) AND {field} >= timestamp '{since}'"),
            ),
            None => (LoadKind::Full, filter.to_string()),
        };
        if layer.incremental.is_none() {
            self.watermark_ms = None;
        }
        let requested = self.cfg.page_size.unwrap_or(layer.max_record_count);
        if requested > layer.max_record_count {
            tracing::warn!(
                source = %self.layer_url,
                page_size = requested,
                max_record_count = layer.max_record_count,
                "page_size is above the layer's maxRecordCount; using maxRecordCount"
            );
        }
        self.page_size = requested.clamp(1, layer.max_record_count);
        if layer.pagination {
            let req = self.request(
                &self.query_url,
                &[
                    ("where", self.condition.clone()),
                    ("returnCountOnly", "true".into()),
                    ("f", "json".into()),
                ],
            )?;
            let answer = self.get_json(&req).await?;
            let count =
                answer
                    .get("count")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| FetchError::Portal {
                        url: req.url.to_string(),
                        message: format!(
                            "expected a count like {{\"count\": 123}}, got {}",
                            excerpt(answer.to_string().as_bytes())
                        ),
                    })?;
            self.expected = Some(count);
            self.cursor = Cursor::Offsets;
            if let (Some(field), true) = (layer.incremental.clone(), self.cfg.incremental)
                && count > 0
                && let Some(ms) = self.newest_at_start(&field).await?
            {
                self.watermark_ms = Some(self.watermark_ms.map_or(ms, |w| w.max(ms)));
                self.mark_taken = true;
            }
            if count == 0 {
                self.done = true;
            }
        } else {
            let req = self.request(
                &self.query_url,
                &[
                    ("where", self.condition.clone()),
                    ("returnIdsOnly", "true".into()),
                    ("f", "json".into()),
                ],
            )?;
            let answer = self.get_json(&req).await?;
            let mut ids = object_ids(&answer).map_err(|message| FetchError::Portal {
                url: req.url.to_string(),
                message,
            })?;
            ids.sort_unstable();
            ids.dedup();
            self.expected = Some(ids.len() as u64);
            self.cursor = Cursor::Ranges(ids.chunks(self.page_size).map(<[i64]>::to_vec).collect());
            tracing::info!(source = %self.layer_url, "the layer cannot page; reading it by object id");
        }
        tracing::info!(
            source = %self.layer_url,
            rows = self.expected.unwrap_or(0),
            mode = self.kind.as_str(),
            "counted"
        );
        self.layer = Some(layer);
        Ok(())
    }

    /// One `query` for features.
    async fn features(
        &self,
        mut params: Vec<(&'static str, String)>,
    ) -> Result<Features, FetchError> {
        let layer = self.layer.as_ref().expect("prepare() ran before any page");
        params.push(("outFields", "*".into()));
        params.push(("returnGeometry", layer.geometry.to_string()));
        if layer.geometry {
            params.push(("outSR", "4326".into()));
        }
        let geojson = self.cfg.format == ArcgisFormat::Geojson;
        params.push(("f", if geojson { "geojson" } else { "json" }.into()));
        let req = self.request(&self.query_url, &params)?;
        let index = self.next_index;
        let origin = format!("{} page {}", self.query_url, index + 1);
        let first = self.received + 1;
        let (_, answer) = self
            .http
            .get_with(&req, |r| match checked_json(r)? {
                Ok(v) => decode_features(&v, layer, geojson, &origin, index, first).map(Ok),
                Err(e) => Ok(Err(e)),
            })
            .await
            .map_err(|e| http_error(e, &self.cfg))?;
        answer.map_err(|e| portal_error(&req.url, &e, &self.cfg))
    }

    /// The newest value of the edit-date field before paging.
    ///
    /// Pages come in object-id order, so a feature already read may be edited while later
    /// pages are read, with a date below features read after it: the newest date *seen* could
    /// lie past that edit and no refresh would ask for it. The newest date at the start
    /// cannot: every edit made while paging is newer.
    async fn newest_at_start(&self, field: &str) -> Result<Option<i64>, FetchError> {
        let req = self.request(
            &self.query_url,
            &[
                ("where", self.condition.clone()),
                ("outFields", field.to_string()),
                ("orderByFields", format!("{field} DESC")),
                ("resultRecordCount", "1".into()),
                ("returnGeometry", "false".into()),
                ("f", "json".into()),
            ],
        )?;
        let answer = self.get_json(&req).await?;
        let attributes = answer.pointer("/features/0/attributes");
        Ok(attributes
            .and_then(Value::as_object)
            .and_then(|a| {
                a.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(field))
                    .map(|(_, v)| v)
            })
            .and_then(Value::as_i64))
    }

    fn track(&mut self, newest: Option<i64>) {
        if self.mark_taken {
            return;
        }
        if let Some(ms) = newest
            && self.watermark_ms.is_none_or(|w| ms > w)
        {
            self.watermark_ms = Some(ms);
        }
    }

    fn incomplete(&self) -> Result<(), FetchError> {
        let expected = self.expected.unwrap_or(0);
        if self.received < expected {
            return Err(FetchError::Incomplete {
                source_name: self.layer_url.to_string(),
                expected,
                received: self.received,
                detail:
                    " (features were deleted during the fetch, or the server cut the result short)"
                        .into(),
            });
        }
        Ok(())
    }

    async fn next_by_offset(&mut self) -> Result<Option<RawPage>, FetchError> {
        let object_id = self
            .layer
            .as_ref()
            .map(|l| l.object_id.clone())
            .unwrap_or_default();
        loop {
            let offset = self.received;
            let got = self
                .features(vec![
                    ("where", self.condition.clone()),
                    ("orderByFields", object_id.clone()),
                    ("resultOffset", offset.to_string()),
                    ("resultRecordCount", self.page_size.to_string()),
                ])
                .await?;
            let rows = got.page.num_rows();
            self.received += rows as u64;
            let more = match got.exceeded {
                Some(flag) => flag,
                // Only GeoJSON from servers that leave the flag out gets here: a full page may
                // have more behind it.
                None => self.cfg.format == ArcgisFormat::Geojson && rows >= self.page_size,
            };
            self.track(got.newest_ms);
            if !more {
                self.done = true;
                self.incomplete()?;
            } else if rows == 0 {
                self.empty_in_a_row += 1;
                if self.empty_in_a_row >= MAX_EMPTY_PAGES {
                    return Err(FetchError::Portal {
                        url: self.query_url.to_string(),
                        message: format!(
                            "the server answered {MAX_EMPTY_PAGES} empty pages in a row at offset {offset} while saying more features follow (exceededTransferLimit); {} of {} features arrived",
                            self.received,
                            self.expected.unwrap_or(0)
                        ),
                    });
                }
                // The documented case of a page cut to nothing: ask again from the same offset.
                continue;
            } else {
                self.empty_in_a_row = 0;
                let expected = self.expected.unwrap_or(0);
                if self.received > expected.saturating_mul(2) + self.page_size as u64 {
                    return Err(FetchError::Portal {
                        url: self.query_url.to_string(),
                        message: format!(
                            "the server keeps sending features ({} so far) long past the {expected} it counted; it seems to ignore resultOffset",
                            self.received
                        ),
                    });
                }
            }
            if rows == 0 {
                return Ok(None);
            }
            self.next_index += 1;
            return Ok(Some(got.page));
        }
    }

    async fn next_by_ids(&mut self) -> Result<Option<RawPage>, FetchError> {
        let layer = self.layer.clone().expect("prepare() ran before any page");
        loop {
            let Cursor::Ranges(queue) = &mut self.cursor else {
                unreachable!("called only for id ranges")
            };
            let Some(chunk) = queue.pop_front() else {
                self.done = true;
                self.incomplete()?;
                return Ok(None);
            };
            let (first, last) = (chunk[0], chunk[chunk.len() - 1]);
            let oid = &layer.object_id;
            let got = self
                .features(vec![
                    (
                        "where",
                        format!(
                            "({}) AND {oid} >= {first} AND {oid} <= {last}",
                            self.condition
                        ),
                    ),
                    ("orderByFields", oid.clone()),
                ])
                .await?;
            let rows = got.page.num_rows();
            let cut = got.exceeded == Some(true)
                || (got.exceeded.is_none() && rows >= layer.max_record_count && rows > chunk.len());
            if cut {
                // Features were added inside the range since the ids were read: halve it.
                if chunk.len() < 2 {
                    return Err(FetchError::Portal {
                        url: self.query_url.to_string(),
                        message: format!(
                            "the server says the features with {oid} = {first} exceed its transfer limit"
                        ),
                    });
                }
                let (a, b) = chunk.split_at(chunk.len() / 2);
                if let Cursor::Ranges(queue) = &mut self.cursor {
                    queue.push_front(b.to_vec());
                    queue.push_front(a.to_vec());
                }
                continue;
            }
            self.received += rows as u64;
            self.track(got.newest_ms);
            if rows == 0 {
                continue;
            }
            self.next_index += 1;
            return Ok(Some(got.page));
        }
    }
}

#[async_trait]
impl Source for Arcgis {
    fn describe(&self) -> String {
        self.layer_url.to_string()
    }

    async fn next_page(&mut self) -> Result<Option<RawPage>, FetchError> {
        if self.layer.is_none() {
            self.prepare().await?;
        }
        if self.done {
            return Ok(None);
        }
        match self.cursor {
            Cursor::Offsets => self.next_by_offset().await,
            Cursor::Ranges(_) => self.next_by_ids().await,
        }
    }

    fn load_kind(&self) -> LoadKind {
        self.kind
    }

    fn expected_rows(&self) -> Option<u64> {
        self.expected
    }

    fn state(&self) -> SourceState {
        SourceState {
            watermark: self.watermark_ms.map(|ms| format_ms(ms, false)),
            ..Default::default()
        }
    }
}

/// The layer's address from the pipeline's `url`.
fn layer_url(text: &str) -> Result<Url, FetchError> {
    let url = Url::parse(text.trim().trim_end_matches('/')).map_err(|e| FetchError::Config {
        message: format!("arcgis url {text:?} is not a web address: {e}"),
    })?;
    if url.query().is_some() {
        let hint = if url
            .query_pairs()
            .any(|(k, _)| k.eq_ignore_ascii_case("token"))
        {
            " (put the token in an environment variable and name it with token_env)"
        } else {
            " (the filter goes in `where`)"
        };
        return Err(FetchError::Config {
            message: format!("arcgis url {text:?} should not have a query string{hint}"),
        });
    }
    let segments: Vec<&str> = url
        .path_segments()
        .map(Iterator::collect)
        .unwrap_or_default();
    let n = segments.len();
    let is_layer = n >= 2
        && matches!(segments[n - 2], "FeatureServer" | "MapServer")
        && segments[n - 1].parse::<u32>().is_ok();
    if !is_layer {
        let hint = if segments.last().is_some_and(|s| *s == "query") {
            "; leave out the trailing /query"
        } else if segments
            .last()
            .is_some_and(|s| *s == "FeatureServer" || *s == "MapServer")
        {
            "; add the layer number, e.g. …/FeatureServer/0"
        } else {
            ""
        };
        return Err(FetchError::Config {
            message: format!(
                "arcgis url {text:?} is not a layer address ending in …/FeatureServer/<n> or …/MapServer/<n>{hint}"
            ),
        });
    }
    Ok(url)
}

/// The body as JSON, with an ArcGIS error envelope separated out: a 5xx-coded envelope is
/// transient (retried), any other is the answer `Err`.
fn checked_json(r: &Response) -> Result<Result<Value, EsriError>, Problem> {
    let v: Value = r.json()?;
    match error_envelope(&v) {
        Some(e) if (500..600).contains(&e.code) => Err(Problem::Transient(e.to_string())),
        Some(e) => Ok(Err(e)),
        None => Ok(Ok(v)),
    }
}

fn error_envelope(v: &Value) -> Option<EsriError> {
    let e = v.get("error")?.as_object()?;
    let code = match e.get("code") {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0),
        _ => 0,
    };
    let message = e
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("(no message)")
        .to_string();
    let details = match e.get("details") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|d| json_text(d).map(|t| t.into_owned()))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    };
    Some(EsriError {
        code,
        message,
        details,
    })
}

/// An error envelope made into advice.
fn portal_error(url: &Url, e: &EsriError, cfg: &ArcgisSource) -> FetchError {
    let all = format!("{} {}", e.message, e.details.join(" ")).to_ascii_lowercase();
    let advice = match e.code {
        498 => Some(if cfg.token_env.is_some() {
            "the token is invalid or has expired: renew the one in the environment variable token_env names".to_string()
        } else {
            "the layer asks for a token: set token_env to an environment variable holding one"
                .to_string()
        }),
        499 | 401 => Some(
            "the layer needs a token: set token_env to an environment variable holding one"
                .to_string(),
        ),
        403 => Some(
            "the token does not give access to this layer, or the layer is not shared publicly"
                .to_string(),
        ),
        404 => Some(
            "no such service or layer: check the url against the layer's page on the server"
                .to_string(),
        ),
        400 if all.contains("invalid field") || all.contains("where") => Some(format!(
            "the query names something the layer lacks: check `where` ({:?}) and incremental_field against the layer's fields",
            cfg.filter.as_deref().unwrap_or("1=1")
        )),
        400 if all.contains("pagination") => {
            Some("the layer refused paging although it advertised it".to_string())
        }
        _ => None,
    };
    FetchError::Portal {
        url: url.to_string(),
        message: match advice {
            Some(a) => format!("{e}; {a}"),
            None => e.to_string(),
        },
    }
}

/// HTTP failures made into advice where the status says something.
fn http_error(e: FetchError, cfg: &ArcgisSource) -> FetchError {
    let FetchError::Http {
        url,
        status: Some(status @ (401 | 403 | 404)),
        message,
        ..
    } = e
    else {
        return e;
    };
    let advice = match status {
        404 => "no layer at this address: check the url",
        _ if cfg.token_env.is_none() => {
            "access denied: the layer may need a token (set token_env), or it is not public"
        }
        _ => "access denied: check the token in the environment variable token_env names",
    };
    FetchError::Portal {
        url,
        message: format!("{message}; {advice}"),
    }
}

/// The parts of a layer description the fetch needs.
fn describe_layer(info: &Value, cfg: &ArcgisSource) -> Result<Layer, String> {
    let fields = info
        .get("fields")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            format!(
                "the layer description has no fields: is this a feature layer or table (…/FeatureServer/<n>)? It begins {}",
                excerpt(info.to_string().as_bytes())
            )
        })?;
    let field = |f: &Value, key: &str| f.get(key).and_then(Value::as_str).map(str::to_string);
    let named: Vec<(String, String)> = fields
        .iter()
        .filter_map(|f| Some((field(f, "name")?, field(f, "type").unwrap_or_default())))
        .collect();
    if let Some(caps) = info.get("capabilities").and_then(Value::as_str)
        && !caps
            .split(',')
            .any(|c| c.trim().eq_ignore_ascii_case("query"))
    {
        return Err(format!(
            "the layer does not allow queries (capabilities: {caps}); ask its owner to enable Query"
        ));
    }
    let object_id = info
        .get("objectIdField")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or_else(|| {
            named
                .iter()
                .find(|(_, t)| t == "esriFieldTypeOID")
                .map(|(n, _)| n.clone())
        })
        .ok_or("the layer has no object-id field (objectIdField), so it cannot be read in a stable order")?;
    let max_record_count = info
        .get("maxRecordCount")
        .and_then(Value::as_u64)
        .filter(|n| *n > 0)
        .map_or(DEFAULT_MAX_RECORD_COUNT, |n| n as usize);
    let pagination = info
        .pointer("/advancedQueryCapabilities/supportsPagination")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let dates: HashSet<String> = named
        .iter()
        .filter(|(_, t)| t == ESRI_DATE)
        .map(|(n, _)| n.clone())
        .collect();
    let date_list = || {
        let mut list: Vec<&str> = dates.iter().map(String::as_str).collect();
        list.sort_unstable();
        if list.is_empty() {
            "it has none".to_string()
        } else {
            format!("its date fields are: {}", list.join(", "))
        }
    };
    let incremental = match cfg.incremental_field.as_deref() {
        Some(wanted) => {
            let Some((name, kind)) = named.iter().find(|(n, _)| n.eq_ignore_ascii_case(wanted))
            else {
                return Err(format!(
                    "incremental_field {wanted:?} is not a field of the layer; {}",
                    date_list()
                ));
            };
            if kind != ESRI_DATE {
                return Err(format!(
                    "incremental_field {wanted:?} is of type {kind}, not a date field (esriFieldTypeDate); {}",
                    date_list()
                ));
            }
            Some(name.clone())
        }
        None => info
            .pointer("/editFieldsInfo/editDateField")
            .and_then(Value::as_str)
            .and_then(|edit| named.iter().find(|(n, _)| n.eq_ignore_ascii_case(edit)))
            .filter(|(_, kind)| kind == ESRI_DATE)
            .map(|(n, _)| n.clone()),
    };
    let geometry = info
        .get("geometryType")
        .and_then(Value::as_str)
        .is_some_and(|g| !g.is_empty());
    Ok(Layer {
        object_id,
        max_record_count,
        pagination,
        dates,
        geometry,
        naive_dates: info
            .get("datesInUnknownTimezone")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        incremental,
    })
}

/// The ids of a `returnIdsOnly` answer (`null` when nothing matches).
fn object_ids(answer: &Value) -> Result<Vec<i64>, String> {
    match answer.get("objectIds") {
        Some(Value::Array(ids)) => ids
            .iter()
            .map(|id| {
                id.as_i64()
                    .ok_or_else(|| format!("object id {id} is not an integer"))
            })
            .collect(),
        Some(Value::Null) => Ok(Vec::new()),
        _ => Err(format!(
            "expected {{\"objectIds\": [...]}}, got {}",
            excerpt(answer.to_string().as_bytes())
        )),
    }
}

/// A `query` answer (Esri JSON or GeoJSON) as a raw page.
fn decode_features(
    v: &Value,
    layer: &Layer,
    geojson: bool,
    origin: &str,
    index: usize,
    first: u64,
) -> Result<Features, Problem> {
    let features = v.get("features").and_then(Value::as_array).ok_or_else(|| {
        Problem::Permanent(format!(
            "expected a FeatureSet with \"features\", got {}",
            excerpt(v.to_string().as_bytes())
        ))
    })?;
    let exceeded_at = if geojson {
        // ArcGIS puts the flag in the collection's properties; accept it at the top too.
        v.pointer("/properties/exceededTransferLimit")
            .or_else(|| v.get("exceededTransferLimit"))
    } else {
        v.get("exceededTransferLimit")
    };
    let mut b = RawBatchBuilder::new(Vec::new());
    let mut newest_ms: Option<i64> = None;
    for (n, feature) in features.iter().enumerate() {
        if !feature.is_object() {
            return Err(Problem::Permanent(format!(
                "{origin}: feature {} is not an object",
                first + n as u64
            )));
        }
        let attributes = feature
            .get(if geojson { "properties" } else { "attributes" })
            .and_then(Value::as_object);
        for (name, value) in attributes.into_iter().flatten() {
            let i = b.column_index(name);
            if layer.dates.contains(name)
                && let Some(ms) = epoch_ms(value)
            {
                b.append(i, Some(&format_ms(ms, layer.naive_dates)));
            } else {
                b.append(i, json_text(value).as_deref());
            }
            if layer.incremental.as_deref() == Some(name.as_str())
                && let Some(ms) =
                    epoch_ms(value).or_else(|| value.as_str().and_then(parse_instant_ms))
            {
                newest_ms = Some(newest_ms.map_or(ms, |m| m.max(ms)));
            }
        }
        if let Some(geometry) = feature.get("geometry").filter(|g| !g.is_null()) {
            // An attribute of the same name keeps its column.
            let mut derived = |name: &str, text: String| {
                if !attributes.is_some_and(|a| a.contains_key(name)) {
                    let i = b.column_index(name);
                    b.append(i, Some(&text));
                }
            };
            derived("geometry", geometry.to_string());
            if let Some((x, y)) = point(geometry) {
                derived("longitude", x.to_string());
                derived("latitude", y.to_string());
            }
        }
        b.end_row();
    }
    let page = RawPage {
        index,
        origin: origin.to_string(),
        complete_columns: false,
        rows: RowOrigin::Records { first },
        batch: b.finish(),
    };
    Ok(Features {
        page,
        exceeded: exceeded_at.and_then(Value::as_bool),
        newest_ms,
    })
}

/// A point's coordinates: Esri `{"x", "y"}` or GeoJSON `{"type": "Point", "coordinates"}`.
fn point(geometry: &Value) -> Option<(&serde_json::Number, &serde_json::Number)> {
    if let (Some(Value::Number(x)), Some(Value::Number(y))) = (geometry.get("x"), geometry.get("y"))
    {
        return Some((x, y));
    }
    if geometry.get("type").and_then(Value::as_str) == Some("Point")
        && let Some([Value::Number(x), Value::Number(y), ..]) = geometry
            .get("coordinates")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
    {
        return Some((x, y));
    }
    None
}

/// A date value as epoch milliseconds (ArcGIS sends a JSON number).
fn epoch_ms(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite())
                .map(|f| f.round() as i64)
        }),
        _ => None,
    }
}

/// Epoch milliseconds as ISO 8601: `2017-01-01T07:57:56Z`, `…56.250Z` when the milliseconds
/// are not zero; without `Z` for dates in an unknown time zone.
fn format_ms(ms: i64, naive: bool) -> String {
    let Some(t) = DateTime::<Utc>::from_timestamp_millis(ms) else {
        return ms.to_string();
    };
    let mut text = if ms.rem_euclid(1000) == 0 {
        t.format("%Y-%m-%dT%H:%M:%S").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string()
    };
    if !naive {
        text.push('Z');
    }
    text
}

/// An ISO 8601 instant (a naive one read as UTC) as epoch milliseconds.
fn parse_instant_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_millis());
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .map(|t| t.and_utc().timestamp_millis())
}

/// The refresh window's start as the text of an ArcGIS `timestamp` literal (UTC, whole
/// seconds, rounded down so nothing at the boundary is missed).
fn window_literal(mark_ms: i64, overlap: std::time::Duration) -> String {
    let overlap_ms = i64::try_from(overlap.as_millis()).unwrap_or(i64::MAX);
    let start = mark_ms.saturating_sub(overlap_ms);
    let t = DateTime::<Utc>::from_timestamp_millis(start.div_euclid(1000) * 1000)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use serde_json::json;
    use std::time::Duration;

    fn layer() -> Layer {
        Layer {
            object_id: "OBJECTID".into(),
            max_record_count: 2,
            pagination: true,
            dates: ["EditDate".to_string(), "Received".to_string()].into(),
            geometry: true,
            naive_dates: false,
            incremental: Some("EditDate".into()),
        }
    }

    fn cfg(incremental_field: Option<&str>) -> ArcgisSource {
        ArcgisSource {
            url: "https://example.gov/arcgis/rest/services/Calls/FeatureServer/0".into(),
            filter: None,
            format: ArcgisFormat::Json,
            page_size: None,
            incremental_field: incremental_field.map(str::to_string),
            incremental: true,
            overlap: Duration::from_secs(3600),
            token_env: None,
            fields: Default::default(),
            link: None,
        }
    }

    fn column(page: &RawPage, name: &str) -> Vec<Option<String>> {
        let col = page.batch.column_by_name(name).unwrap().as_string::<i32>();
        (0..col.len())
            .map(|i| (!col.is_null(i)).then(|| col.value(i).to_string()))
            .collect()
    }

    #[test]
    fn dates_become_iso_text_in_utc() {
        assert_eq!(format_ms(1_483_257_476_000, false), "2017-01-01T07:57:56Z");
        assert_eq!(
            format_ms(1_483_257_476_250, false),
            "2017-01-01T07:57:56.250Z"
        );
        assert_eq!(format_ms(-1, false), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_ms(1_483_257_476_000, true), "2017-01-01T07:57:56");
        assert_eq!(
            parse_instant_ms("2017-01-01T07:57:56Z"),
            Some(1_483_257_476_000)
        );
        assert_eq!(
            parse_instant_ms("2017-01-01T07:57:56.250Z"),
            Some(1_483_257_476_250)
        );
        assert_eq!(
            parse_instant_ms("2017-01-01T07:57:56"),
            Some(1_483_257_476_000)
        );
        assert_eq!(parse_instant_ms("yesterday"), None);
    }

    #[test]
    fn refresh_window_is_a_whole_second_before_the_overlap() {
        let mark = parse_instant_ms("2017-01-08T00:00:00.500Z").unwrap();
        assert_eq!(
            window_literal(mark, Duration::from_secs(3600)),
            "2017-01-07 23:00:00"
        );
        assert_eq!(window_literal(mark, Duration::ZERO), "2017-01-08 00:00:00");
    }

    #[test]
    fn layer_urls_must_name_a_layer() {
        assert!(layer_url("https://h/arcgis/rest/services/A/FeatureServer/0").is_ok());
        assert!(layer_url("https://h/arcgis/rest/services/A/MapServer/12/").is_ok());
        let err = |u: &str| layer_url(u).unwrap_err().to_string();
        assert!(
            err("https://h/arcgis/rest/services/A/FeatureServer").contains("add the layer number")
        );
        assert!(err("https://h/arcgis/rest/services/A/FeatureServer/0/query").contains("/query"));
        assert!(
            err("https://h/arcgis/rest/services/A/FeatureServer/0?token=abc").contains("token_env")
        );
    }

    #[test]
    fn error_envelopes_are_found_and_classified() {
        let body = json!({"error": {"code": 400, "message": "Unable to complete operation.",
            "details": ["'Invalid field: Foo' parameter is invalid"]}});
        let e = error_envelope(&body).unwrap();
        assert_eq!(
            e.to_string(),
            "ArcGIS error 400: Unable to complete operation. ('Invalid field: Foo' parameter is invalid)"
        );
        let url = Url::parse("https://h/q").unwrap();
        let message = portal_error(&url, &e, &cfg(None)).to_string();
        assert!(message.contains("check `where`"), "{message}");
        let token =
            error_envelope(&json!({"error": {"code": 499, "message": "Token Required"}})).unwrap();
        assert!(
            portal_error(&url, &token, &cfg(None))
                .to_string()
                .contains("token_env")
        );
        assert!(error_envelope(&json!({"features": []})).is_none());
        assert_eq!(
            error_envelope(&json!({"error": {"code": "503", "message": "busy"}}))
                .unwrap()
                .code,
            503
        );
    }

    #[test]
    fn layer_descriptions_settle_the_fetch() {
        let info = json!({
            "objectIdField": "OBJECTID", "maxRecordCount": 1500, "geometryType": "esriGeometryPoint",
            "capabilities": "Query,Extract",
            "advancedQueryCapabilities": {"supportsPagination": true},
            "editFieldsInfo": {"editDateField": "EditDate"},
            "fields": [
                {"name": "OBJECTID", "type": "esriFieldTypeOID"},
                {"name": "Call_Type", "type": "esriFieldTypeString"},
                {"name": "Received", "type": "esriFieldTypeDate"},
                {"name": "EditDate", "type": "esriFieldTypeDate"},
            ]
        });
        let l = describe_layer(&info, &cfg(None)).unwrap();
        assert_eq!(
            (l.object_id.as_str(), l.max_record_count, l.pagination),
            ("OBJECTID", 1500, true)
        );
        assert_eq!(l.incremental.as_deref(), Some("EditDate"));
        let l = describe_layer(&info, &cfg(Some("received"))).unwrap();
        assert_eq!(
            l.incremental.as_deref(),
            Some("Received"),
            "spelled as the layer spells it"
        );
        let e = describe_layer(&info, &cfg(Some("Call_Type"))).unwrap_err();
        assert!(
            e.contains("not a date field") && e.contains("EditDate, Received"),
            "{e}"
        );
        let e = describe_layer(&info, &cfg(Some("updated"))).unwrap_err();
        assert!(e.contains("not a field of the layer"), "{e}");
        let old = json!({"fields": [{"name": "FID", "type": "esriFieldTypeOID"}], "capabilities": "Map,Query"});
        let l = describe_layer(&old, &cfg(None)).unwrap();
        assert_eq!(
            (l.object_id.as_str(), l.max_record_count, l.pagination),
            ("FID", 1000, false)
        );
        assert!(!l.geometry && l.incremental.is_none());
        let e =
            describe_layer(&json!({"fields": [], "capabilities": "Map"}), &cfg(None)).unwrap_err();
        assert!(e.contains("does not allow queries"), "{e}");
    }

    #[test]
    fn esri_json_features_become_rows() {
        let body = json!({
            "features": [
                {"attributes": {"OBJECTID": 1, "Call_Type": "Alarms", "Received": 1483257476000i64, "EditDate": 1483833600000i64},
                 "geometry": {"x": -122.4, "y": 37.7}},
                {"attributes": {"OBJECTID": 2, "Call_Type": null, "Received": null, "EditDate": 1483920000000i64, "latitude": "own"},
                 "geometry": {"x": -122.5, "y": 37.8}},
            ],
            "exceededTransferLimit": true
        });
        let f = decode_features(&body, &layer(), false, "o", 0, 1).unwrap();
        assert_eq!(f.exceeded, Some(true));
        assert_eq!(f.newest_ms, Some(1_483_920_000_000));
        let p = &f.page;
        assert_eq!(
            column(p, "Received"),
            [Some("2017-01-01T07:57:56Z".into()), None]
        );
        assert_eq!(column(p, "Call_Type"), [Some("Alarms".into()), None]);
        assert_eq!(
            column(p, "longitude"),
            [Some("-122.4".into()), Some("-122.5".into())]
        );
        assert_eq!(
            column(p, "latitude"),
            [Some("37.7".into()), Some("own".into())],
            "the attribute wins"
        );
        assert_eq!(
            column(p, "geometry")[0].as_deref(),
            Some(r#"{"x":-122.4,"y":37.7}"#)
        );
    }

    #[test]
    fn geojson_features_become_rows() {
        let body = json!({
            "type": "FeatureCollection",
            "features": [{"type": "Feature", "id": 1,
                "geometry": {"type": "Point", "coordinates": [-122.4, 37.7]},
                "properties": {"OBJECTID": 1, "EditDate": "2017-01-08T01:36:00", "Received": 1483257476000i64}}],
        });
        let f = decode_features(&body, &layer(), true, "o", 0, 1).unwrap();
        assert_eq!(f.exceeded, None, "Koop leaves the flag out of GeoJSON");
        assert_eq!(f.newest_ms, parse_instant_ms("2017-01-08T01:36:00Z"));
        assert_eq!(
            column(&f.page, "EditDate"),
            [Some("2017-01-08T01:36:00".into())]
        );
        assert_eq!(
            column(&f.page, "Received"),
            [Some("2017-01-01T07:57:56Z".into())]
        );
        assert_eq!(column(&f.page, "latitude"), [Some("37.7".into())]);
        let flagged = json!({"type": "FeatureCollection", "features": [], "properties": {"exceededTransferLimit": true}});
        assert_eq!(
            decode_features(&flagged, &layer(), true, "o", 0, 1)
                .unwrap()
                .exceeded,
            Some(true)
        );
        assert!(decode_features(&json!({"count": 3}), &layer(), false, "o", 0, 1).is_err());
    }

    #[test]
    fn id_lists_may_be_null() {
        assert_eq!(object_ids(&json!({"objectIds": [3, 1]})).unwrap(), [3, 1]);
        assert!(object_ids(&json!({"objectIds": null})).unwrap().is_empty());
        assert!(object_ids(&json!({"count": 1})).is_err());
    }
}
