//! The `ckan` source: one resource of a CKAN portal, read through the DataStore's Action API
//! when the resource is in the DataStore, else downloaded whole from its `url`.
//!
//! - **Resolution**: `resource_id` is looked up with `resource_show`; `dataset` with
//!   `package_show`, whose resources are picked by `resource` (name or id) or, by default, the
//!   first DataStore-active resource, else the first CSV. That one metadata request says
//!   whether the resource is in the DataStore, where its file is, and when it last changed.
//! - **Refresh**: CKAN keeps no per-row update time, so the portal's own stamps (the package's
//!   `metadata_modified`, the resource's `last_modified` and `metadata_modified`) are kept as
//!   [`SourceState::modified`]. Unchanged stamps make the fetch [`LoadKind::Unchanged`] after
//!   that single request; moved stamps, or none kept, load everything again
//!   ([`LoadKind::Full`]). CKAN moves none of them when a publisher writes the DataStore
//!   directly (`datastore_upsert`), hence `skip_unchanged = false` for such resources.
//! - **DataStore paging**: `datastore_search` with `limit`/`offset` under `sort=_id` (the
//!   DataStore's own row number, so pages neither overlap nor skip) and `include_total=true`.
//!   The server silently caps `limit` at `ckan.datastore.search.rows_max` (32,000 by default)
//!   and reports the cap in `result.limit` (or, on servers that do not echo it, in the offset of
//!   `result._links.next`); the offset advances by the rows actually returned. The end is an
//!   empty page, a page shorter than the server's limit, or `offset >= total`.
//! - **Completeness**: fewer rows than `total` fail the fetch as incomplete; so does a `total`
//!   that moves between pages (rows deleted mid-read shift every offset behind them), after
//!   which the runner reads once more from the start. Where rows carry `_id`, it must rise from
//!   page to page: a server that ignores the sort or offset is an error, not duplicated rows.
//! - **Envelope**: every answer is `{help, success, result, error}`; `success: false` is an
//!   error even under HTTP 200. `Not Found Error`, `Validation Error` and `Authorization
//!   Error` become advice naming the resource or dataset; a web page instead of JSON means
//!   `url` is not the portal's root.
//! - **Download** (a resource outside the DataStore): a conditional GET with the ETag and
//!   Last-Modified of the last run, so an unchanged file costs one 304. CSV, JSON (an array of
//!   objects), NDJSON and GeoJSON are read with the shared decoder; the format comes from the
//!   resource's `format`, else the URL's extension, else the response's content type. The file
//!   is streamed to a temporary file and read in pages, never held in memory whole.
//! - **Auth**: the token in `api_key_env` goes in the `Authorization` header, to the portal's
//!   own host only (never to a resource URL on another host, nor across a redirect).
//! - **Values**: DataStore `numeric` values arrive as JSON numbers and `timestamp` values as
//!   naive ISO text (read in the pipeline's time zone by the table stage); the internal `_id`
//!   column is passed through but never required. Field names are the original column labels
//!   (`Received DtTm`).

use crate::decode::{Decoder, PagesAhead, guess_format};
use crate::http::{HttpClient, Problem, Request, Response, excerpt};
use crate::page::RawPage;
use crate::{
    FetchError, LoadKind, Source, SourceContext, SourceState, records_page, secret_from_env,
};
use async_trait::async_trait;
use goalpost_spec::{CkanSource, FileFormat};
use reqwest::header::{ACCEPT, AUTHORIZATION, IF_MODIFIED_SINCE, IF_NONE_MATCH};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::sync::Arc;
use url::Url;

/// Rows per request unless the pipeline says otherwise.
pub const DEFAULT_PAGE_SIZE: usize = 10_000;
/// `ckan.datastore.search.rows_max` as CKAN ships it.
pub const MAX_PAGE_SIZE: usize = 32_000;

pub struct Ckan {
    cfg: CkanSource,
    http: Arc<HttpClient>,
    /// The site root, ending in `/` (`https://data.example.gov/`, or `…/ckan/` under a path).
    site: Url,
    api_key: Option<String>,
    /// The last run's state; `None` for a full load or when `skip_unchanged` is off.
    prior: Option<SourceState>,
    page_size: usize,
    kind: LoadKind,
    phase: Phase,
    describe: String,
    expected: Option<u64>,
    received: u64,
    next_index: usize,
    state: SourceState,
}

enum Phase {
    /// The metadata request has not been made yet.
    Resolve,
    Search(SearchCursor),
    Download {
        /// The downloaded file, deleted when dropped.
        file: tempfile::NamedTempFile,
        pages: PagesAhead<BufReader<File>>,
    },
    Done,
}

/// Where a DataStore read stands.
struct SearchCursor {
    resource_id: String,
    endpoint: Url,
    offset: u64,
    /// `_id` of the last row read, when rows carry it.
    last_id: Option<i64>,
    /// The server's own rows-per-request cap, once seen.
    cap: Option<u64>,
}

/// Which call an error came from, for advice that names the right thing.
#[derive(Debug, Clone, Copy)]
enum Call<'a> {
    ResourceShow(&'a str),
    PackageShow(&'a str),
    Search(&'a str),
    Download,
}

/// What the metadata says about the resource to read.
#[derive(Debug, Clone, PartialEq)]
struct Resource {
    id: String,
    name: String,
    datastore: bool,
    url: String,
    format: String,
    /// The portal's modification stamps, joined; `None` when it keeps none.
    stamp: Option<String>,
}

impl Ckan {
    pub fn open(cfg: &CkanSource, ctx: &SourceContext) -> Result<Self, FetchError> {
        let site = site_root(&cfg.url)?;
        if cfg.resource_id.is_none() && cfg.dataset.is_none() {
            return Err(FetchError::Config {
                message: format!(
                    "the ckan source at {} needs resource_id, or dataset (and optionally resource)",
                    cfg.url
                ),
            });
        }
        let api_key = cfg
            .api_key_env
            .as_deref()
            .map(secret_from_env)
            .transpose()?;
        let describe = match (&cfg.resource_id, &cfg.dataset) {
            (Some(id), _) => format!("{site} resource {id}"),
            (None, Some(name)) => format!("{site}dataset/{name}"),
            (None, None) => site.to_string(),
        };
        Ok(Self {
            page_size: cfg
                .page_size
                .unwrap_or(DEFAULT_PAGE_SIZE)
                .clamp(1, MAX_PAGE_SIZE),
            cfg: cfg.clone(),
            http: ctx.http.clone(),
            site,
            api_key,
            prior: ctx.prior.clone().filter(|_| cfg.skip_unchanged),
            kind: LoadKind::Full,
            phase: Phase::Resolve,
            describe,
            expected: None,
            received: 0,
            next_index: 0,
            state: SourceState::default(),
        })
    }

    /// A GET of an Action API call.
    fn action(&self, name: &str, params: &[(&str, &str)]) -> Result<Request, FetchError> {
        let mut url = self.action_url(name)?;
        url.query_pairs_mut().extend_pairs(params);
        self.api_request(url)
    }

    fn action_url(&self, name: &str) -> Result<Url, FetchError> {
        self.site
            .join(&format!("api/3/action/{name}"))
            .map_err(|e| FetchError::Config {
                message: format!("cannot build the CKAN address for {name}: {e}"),
            })
    }

    fn api_request(&self, url: Url) -> Result<Request, FetchError> {
        let mut req = Request::new(url).header(ACCEPT, "application/json");
        if let Some(key) = &self.api_key {
            req = req.secret(AUTHORIZATION, key)?;
        }
        Ok(req)
    }

    /// The one metadata request: `resource_show`, or `package_show` and a pick among its
    /// resources.
    async fn resolve(&self) -> Result<Resource, FetchError> {
        if let Some(id) = &self.cfg.resource_id {
            let call = Call::ResourceShow(id);
            let req = self.action("resource_show", &[("id", id)])?;
            let (_, v) = self
                .http
                .get_with(&req, |r| open_envelope::<Value>(r, call))
                .await
                .map_err(|e| explain(e, call))?;
            return Resource::from_json(&v, None).map_err(|message| FetchError::Portal {
                url: req.url.to_string(),
                message,
            });
        }
        let Some(name) = &self.cfg.dataset else {
            return Err(FetchError::Config {
                message: "a ckan source needs resource_id or dataset".into(),
            });
        };
        let call = Call::PackageShow(name);
        let req = self.action("package_show", &[("id", name)])?;
        let (_, package) = self
            .http
            .get_with(&req, |r| open_envelope::<Value>(r, call))
            .await
            .map_err(|e| explain(e, call))?;
        let portal = |message| FetchError::Portal {
            url: req.url.to_string(),
            message,
        };
        let resources = package
            .get("resources")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let picked =
            pick_resource(resources, self.cfg.resource.as_deref(), name).map_err(portal)?;
        let modified = package.get("metadata_modified").and_then(Value::as_str);
        Resource::from_json(picked, modified).map_err(portal)
    }

    /// Decide how this fetch loads, from the metadata; the first page (if any) follows.
    async fn start(&mut self) -> Result<(), FetchError> {
        let resource = self.resolve().await?;
        tracing::info!(
            source = %self.describe,
            resource = %resource.id,
            name = %resource.name,
            datastore = resource.datastore,
            modified = resource.stamp.as_deref().unwrap_or("-"),
            "resolved"
        );
        let prior = self.prior.clone().unwrap_or_default();
        if resource.stamp.is_none() {
            tracing::info!(source = %self.describe, "the portal keeps no modification time for this resource, so every run loads it all");
        }
        if resource.datastore {
            if resource.stamp.is_some() && prior.modified == resource.stamp {
                tracing::info!(source = %self.describe, "the resource has not changed since the last run");
                self.kind = LoadKind::Unchanged;
                self.state = prior;
                self.phase = Phase::Done;
                return Ok(());
            }
            let endpoint = self.action_url("datastore_search")?;
            self.describe = format!("{endpoint}?resource_id={}", resource.id);
            self.kind = LoadKind::Full;
            self.state = SourceState {
                modified: resource.stamp,
                ..Default::default()
            };
            self.phase = Phase::Search(SearchCursor {
                resource_id: resource.id,
                endpoint,
                offset: 0,
                last_id: None,
                cap: None,
            });
            return Ok(());
        }
        self.download(resource, prior).await
    }

    /// A resource outside the DataStore: fetch its file (conditionally, after a first run).
    async fn download(&mut self, resource: Resource, prior: SourceState) -> Result<(), FetchError> {
        if resource.url.trim().is_empty() {
            return Err(FetchError::Portal {
                url: self.describe.clone(),
                message: format!(
                    "resource {} ({:?}) is not in the DataStore and has no url, so there is nothing to read",
                    resource.id, resource.name
                ),
            });
        }
        let url = self
            .site
            .join(resource.url.trim())
            .map_err(|e| FetchError::Portal {
                url: self.describe.clone(),
                message: format!(
                    "resource {} has an unusable url {:?}: {e}",
                    resource.id, resource.url
                ),
            })?;
        let declared = declared_format(&resource.format).map_err(|format| FetchError::Config {
            message: format!(
                "resource {} ({:?}) is a {format} file, which goalpost cannot read; it reads CSV, \
                 JSON, NDJSON and GeoJSON: pick another resource of the dataset with resource = \"…\"",
                resource.id, resource.name
            ),
        })?;
        self.describe = url.to_string();
        let mut req = Request::new(url.clone()).header(
            ACCEPT,
            "text/csv, application/json, application/geo+json, application/x-ndjson;q=0.9, */*;q=0.5",
        );
        if let Some(key) = &self.api_key
            && url.origin() == self.site.origin()
        {
            req = req.secret(AUTHORIZATION, key)?;
        }
        if let Some(etag) = &prior.etag {
            req = req.header(IF_NONE_MATCH, etag);
        }
        if let Some(modified) = &prior.last_modified {
            req = req.header(IF_MODIFIED_SINCE, modified);
        }
        // Streamed to disk: a resource file can be far larger than memory should hold.
        let file = tempfile::Builder::new()
            .prefix("goalpost-ckan-")
            .tempfile()
            .map_err(|source| FetchError::Io {
                path: std::env::temp_dir(),
                source,
            })?;
        let response = self
            .http
            .download(&req, file.path())
            .await
            .map_err(|e| explain(e, Call::Download))?;
        let header = |name: &str| response.header(name).map(str::to_string);
        if response.status == 304 {
            tracing::info!(url = %url, "the resource's file is not modified since the last run");
            self.kind = LoadKind::Unchanged;
            self.state = SourceState {
                etag: header("etag").or(prior.etag),
                last_modified: header("last-modified").or(prior.last_modified),
                modified: resource.stamp,
                ..prior
            };
            self.phase = Phase::Done;
            return Ok(());
        }
        let format = declared
            .or_else(|| guess_format(url.path()))
            .or_else(|| content_type_format(response.header("content-type")?))
            .ok_or_else(|| FetchError::Portal {
                url: url.to_string(),
                message: format!(
                    "cannot tell the format of resource {}'s file: the resource declares none, and \
                     neither its address nor its Content-Type ({}) names CSV, JSON, NDJSON or \
                     GeoJSON",
                    resource.id,
                    response.header("content-type").unwrap_or("none")
                ),
            })?;
        self.kind = LoadKind::Full;
        self.state = SourceState {
            etag: header("etag"),
            last_modified: header("last-modified"),
            modified: resource.stamp,
            ..Default::default()
        };
        let path = file.path().to_path_buf();
        let origin = PathBuf::from(url.as_str());
        let decoder = tokio::task::spawn_blocking(move || {
            let f = File::open(&path).map_err(|source| FetchError::Io { path, source })?;
            Decoder::open(BufReader::new(f), format, &origin, None)
        })
        .await
        .map_err(|e| FetchError::Decode {
            origin: url.to_string(),
            message: format!("reader task failed: {e}"),
        })??;
        self.phase = Phase::Download {
            file,
            pages: PagesAhead::new(decoder, &PathBuf::from(&self.describe), self.page_size),
        };
        Ok(())
    }

    async fn search_page(
        &mut self,
        mut cursor: SearchCursor,
    ) -> Result<Option<RawPage>, FetchError> {
        let offset = cursor.offset;
        let limit = self.page_size.to_string();
        let start = offset.to_string();
        let mut url = cursor.endpoint.clone();
        url.query_pairs_mut().extend_pairs([
            ("resource_id", cursor.resource_id.as_str()),
            ("limit", &limit),
            ("offset", &start),
            ("sort", "_id"),
            ("include_total", "true"),
        ]);
        let req = self.api_request(url)?;
        let index = self.next_index;
        let origin = format!("{} page {}", self.describe, index + 1);
        let call = Call::Search(&cursor.resource_id);
        let (_, found) = self
            .http
            .get_with(&req, |r| search_result(r, call, &origin, index, offset))
            .await
            .map_err(|e| explain(e, call))?;
        self.next_index += 1;
        let rows = found.page.num_rows() as u64;
        self.received += rows;

        let total = found.total.filter(|_| !found.estimated);
        if found.estimated {
            tracing::warn!(source = %self.describe, "the portal estimated the row total, so it cannot prove the load complete");
        }
        match (self.expected, total) {
            (None, Some(t)) if index == 0 => {
                tracing::info!(source = %self.describe, rows = t, "counted");
                self.expected = Some(t);
            }
            (Some(first), Some(now)) if now != first => {
                self.phase = Phase::Done;
                return Err(FetchError::Incomplete {
                    source_name: self.describe.clone(),
                    expected: first,
                    received: self.received,
                    detail: format!(
                        " by page {}, when the resource's total went from {first} to {now}: it \
                         changed while it was read, so rows may have shifted between pages",
                        index + 1
                    ),
                });
            }
            _ => {}
        }
        if let Some((first_id, last_id)) = found.ids {
            if let Some(before) = cursor.last_id
                && first_id <= before
            {
                return Err(FetchError::Portal {
                    url: req.url.to_string(),
                    message: format!(
                        "page {} starts at _id {first_id}, not after the previous page's last _id \
                         {before}: the portal does not honour sort=_id with offset, so the \
                         resource cannot be paged reliably",
                        index + 1
                    ),
                });
            }
            cursor.last_id = Some(last_id);
        }
        // The server's cap: what it says it applied, else what its next link advances by.
        let cap = found.limit.filter(|l| *l > 0).or_else(|| {
            found
                .next_offset
                .and_then(|next| next.checked_sub(offset))
                .filter(|step| *step > 0)
        });
        if let Some(cap) = cap
            && cap < self.page_size as u64
            && cursor.cap.is_none()
        {
            tracing::info!(source = %self.describe, requested = self.page_size, cap, "the portal caps rows per request; paging by its cap");
        }
        cursor.cap = cap.or(cursor.cap);
        cursor.offset = offset + rows;
        let done = rows == 0
            || self.expected.is_some_and(|t| cursor.offset >= t)
            || match cursor.cap {
                Some(cap) => rows < cap,
                // With neither a cap nor a total, a page shorter than asked for is the end.
                None => self.expected.is_none() && rows < self.page_size as u64,
            };
        if done {
            self.phase = Phase::Done;
            if let Some(expected) = self.expected
                && self.received < expected
            {
                return Err(FetchError::Incomplete {
                    source_name: self.describe.clone(),
                    expected,
                    received: self.received,
                    detail: format!(
                        " (page {} at offset {offset} held {rows} rows: rows were deleted during \
                         the fetch, or the portal cut the result short)",
                        index + 1
                    ),
                });
            }
        } else {
            self.phase = Phase::Search(cursor);
        }
        Ok((rows > 0).then_some(found.page))
    }

    async fn download_page(
        &mut self,
        file: tempfile::NamedTempFile,
        mut pages: PagesAhead<BufReader<File>>,
    ) -> Result<Option<RawPage>, FetchError> {
        let page = pages.next().await?;
        if !pages.is_done() && page.is_some() {
            self.phase = Phase::Download { file, pages };
        }
        if let Some(p) = &page {
            self.received += p.num_rows() as u64;
        }
        Ok(page)
    }
}

#[async_trait]
impl Source for Ckan {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    async fn next_page(&mut self) -> Result<Option<RawPage>, FetchError> {
        loop {
            match std::mem::replace(&mut self.phase, Phase::Done) {
                Phase::Resolve => self.start().await?,
                Phase::Search(cursor) => return self.search_page(cursor).await,
                Phase::Download { file, pages } => {
                    return self.download_page(file, pages).await;
                }
                Phase::Done => return Ok(None),
            }
        }
    }

    fn load_kind(&self) -> LoadKind {
        self.kind
    }

    fn expected_rows(&self) -> Option<u64> {
        self.expected
    }

    fn state(&self) -> SourceState {
        self.state.clone()
    }
}

/// The site root from the configured url, which may also name the API itself.
fn site_root(url: &str) -> Result<Url, FetchError> {
    let mut text = url.trim().trim_end_matches('/').to_string();
    for suffix in ["/api/3/action", "/api/action", "/api/3", "/api"] {
        if let Some(stripped) = text.strip_suffix(suffix) {
            text = stripped.to_string();
            break;
        }
    }
    let site = Url::parse(&format!("{text}/")).map_err(|e| FetchError::Config {
        message: format!("ckan url {url:?} is not a web address: {e}"),
    })?;
    if !matches!(site.scheme(), "http" | "https") {
        return Err(FetchError::Config {
            message: format!("ckan url {url:?} is not a web address; expected https://…"),
        });
    }
    Ok(site)
}

impl Resource {
    /// A resource dict from `resource_show` or `package_show`; `package_modified` is the
    /// package's `metadata_modified` when it came with one.
    fn from_json(v: &Value, package_modified: Option<&str>) -> Result<Resource, String> {
        let text = |key: &str| v.get(key).and_then(Value::as_str).unwrap_or_default();
        let id = text("id").to_string();
        if id.is_empty() {
            return Err(format!(
                "expected a resource with an id, got {}",
                excerpt(v.to_string().as_bytes())
            ));
        }
        let datastore = is_true(v.get("datastore_active"));
        let mut marks = Vec::new();
        for key in ["last_modified", "metadata_modified"] {
            let value = text(key);
            if !value.is_empty() {
                marks.push(format!("{key} {value}"));
            }
        }
        if let Some(m) = package_modified.filter(|m| !m.is_empty()) {
            marks.push(format!("package metadata_modified {m}"));
        }
        let stamp = (!marks.is_empty()).then(|| {
            format!(
                "resource {id}{}: {}",
                if datastore { " (DataStore)" } else { "" },
                marks.join(", ")
            )
        });
        Ok(Resource {
            name: text("name").to_string(),
            url: text("url").to_string(),
            format: text("format").to_string(),
            id,
            datastore,
            stamp,
        })
    }
}

/// `datastore_active` as CKAN writes it (a boolean; a string in some older versions).
fn is_true(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// The resource a pipeline means: by name or id, else the first in the DataStore, else the
/// first CSV.
fn pick_resource<'a>(
    resources: &'a [Value],
    wanted: Option<&str>,
    dataset: &str,
) -> Result<&'a Value, String> {
    let text = |r: &'a Value, key: &str| r.get(key).and_then(Value::as_str).unwrap_or_default();
    let listing = || {
        if resources.is_empty() {
            return "it has no resources".to_string();
        }
        let each: Vec<String> = resources
            .iter()
            .map(|r| {
                format!(
                    "{:?} (id {}, {}{})",
                    text(r, "name"),
                    text(r, "id"),
                    match text(r, "format") {
                        "" => "no format",
                        f => f,
                    },
                    if is_true(r.get("datastore_active")) {
                        ", in the DataStore"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        format!("its resources are {}", each.join("; "))
    };
    if let Some(wanted) = wanted.map(str::trim) {
        return resources
            .iter()
            .find(|r| text(r, "id") == wanted)
            .or_else(|| resources.iter().find(|r| text(r, "name") == wanted))
            .or_else(|| {
                resources
                    .iter()
                    .find(|r| text(r, "name").eq_ignore_ascii_case(wanted))
            })
            .ok_or_else(|| {
                format!(
                    "dataset {dataset} has no resource named {wanted:?} or with that id; {}",
                    listing()
                )
            });
    }
    resources
        .iter()
        .find(|r| is_true(r.get("datastore_active")))
        .or_else(|| {
            resources.iter().find(|r| {
                text(r, "format").eq_ignore_ascii_case("csv")
                    || guess_format(text(r, "url")) == Some(FileFormat::Csv)
            })
        })
        .ok_or_else(|| {
            format!(
                "dataset {dataset} has no resource in the DataStore and no CSV; {}. Name one \
                 with resource = \"…\"",
                listing()
            )
        })
}

/// The format a resource declares: `Ok(None)` when it declares none, `Err(format)` when it
/// declares one goalpost cannot read.
fn declared_format(format: &str) -> Result<Option<FileFormat>, String> {
    let f = format.trim().trim_start_matches('.').to_ascii_lowercase();
    Ok(Some(match f.as_str() {
        "" => return Ok(None),
        "csv" | "text/csv" => FileFormat::Csv,
        "json" | "application/json" => FileFormat::Json,
        "geojson" | "application/geo+json" => FileFormat::Geojson,
        "ndjson" | "jsonl" | "application/x-ndjson" => FileFormat::Ndjson,
        _ => return Err(format.trim().to_string()),
    }))
}

/// The format a response's content type names.
fn content_type_format(content_type: &str) -> Option<FileFormat> {
    let ct = content_type.to_ascii_lowercase();
    let essence = ct.split(';').next().unwrap_or_default().trim();
    Some(match essence {
        "text/csv" | "application/csv" => FileFormat::Csv,
        "application/geo+json" | "application/vnd.geo+json" => FileFormat::Geojson,
        "application/x-ndjson" | "application/jsonl" => FileFormat::Ndjson,
        "application/json" | "text/json" => FileFormat::Json,
        _ => return None,
    })
}

/// An Action API answer.
#[derive(Deserialize)]
struct Envelope<T> {
    success: Option<bool>,
    result: Option<T>,
    error: Option<Value>,
}

/// The `result` of `datastore_search`.
#[derive(Deserialize)]
struct SearchResult {
    records: Option<Vec<Value>>,
    total: Option<Value>,
    #[serde(default)]
    total_was_estimated: bool,
    limit: Option<Value>,
    fields: Option<Vec<FieldInfo>>,
    #[serde(rename = "_links")]
    links: Option<Links>,
}

#[derive(Deserialize)]
struct FieldInfo {
    id: String,
}

#[derive(Deserialize)]
struct Links {
    next: Option<String>,
}

/// One `datastore_search` page, read.
struct Found {
    page: RawPage,
    total: Option<u64>,
    estimated: bool,
    limit: Option<u64>,
    /// The offset `_links.next` points at.
    next_offset: Option<u64>,
    /// `_id` of the page's first and last rows.
    ids: Option<(i64, i64)>,
}

/// The `result` of an answer, or why there is none: `success: false` is the portal refusing
/// (not retried, even under HTTP 200); a body that is not an envelope is a wrong address.
fn open_envelope<T: DeserializeOwned>(r: &Response, call: Call<'_>) -> Result<T, Problem> {
    let first = r.body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'<') {
        return Err(Problem::Permanent(format!(
            "the answer is a web page, not the CKAN Action API's JSON ({}); url should be the \
             portal's root, e.g. https://data.boston.gov",
            excerpt(&r.body)
        )));
    }
    let envelope: Envelope<T> = r.json()?;
    match envelope.success {
        Some(true) => envelope.result.ok_or_else(|| {
            Problem::Transient("the answer says success but carries no result".into())
        }),
        Some(false) => Err(Problem::Permanent(describe_error(
            Some(r.status),
            &envelope.error.unwrap_or(Value::Null),
            call,
        ))),
        None => Err(Problem::Permanent(format!(
            "the answer is not a CKAN Action API envelope ({}); url should be the portal's root",
            excerpt(&r.body)
        ))),
    }
}

fn search_result(
    r: &Response,
    call: Call<'_>,
    origin: &str,
    index: usize,
    offset: u64,
) -> Result<Found, Problem> {
    let result: SearchResult = open_envelope(r, call)?;
    let records = result.records.ok_or_else(|| {
        Problem::Transient("the datastore_search answer has no result.records".into())
    })?;
    let mut page = records_page(&records, origin, index, offset + 1)
        .map_err(|e| Problem::Permanent(e.to_string()))?;
    // Records carry every field (empty ones as null), so when the page holds each field the
    // result lists, a field the pipeline names and the page lacks does not exist.
    if let Some(fields) = &result.fields
        && page.num_rows() > 0
        && fields
            .iter()
            .all(|f| page.batch.column_by_name(&f.id).is_some())
    {
        page.complete_columns = true;
    }
    let id = |v: Option<&Value>| v.and_then(|r| r.get("_id")).and_then(as_count_i64);
    let ids = id(records.first()).zip(id(records.last()));
    let next_offset = result
        .links
        .and_then(|l| l.next)
        .and_then(|next| link_offset(&r.url, &next));
    Ok(Found {
        page,
        total: result.total.as_ref().and_then(as_count),
        estimated: result.total_was_estimated,
        limit: result.limit.as_ref().and_then(as_count),
        next_offset,
        ids,
    })
}

/// A count written as a JSON number or as text.
fn as_count(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_count_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The `offset` of a `_links.next` (a path relative to the site, or a full address).
fn link_offset(base: &Url, next: &str) -> Option<u64> {
    let url = base.join(next).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == "offset")
        .and_then(|(_, v)| v.trim().parse().ok())
}

/// A CKAN `error` object as advice.
fn describe_error(status: Option<u16>, error: &Value, call: Call<'_>) -> String {
    let kind = error
        .get("__type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let details = error_details(error);
    let text = error
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| details.clone());
    let auth = matches!(status, Some(401 | 403)) || kind == "Authorization Error";
    if auth {
        return format!(
            "access denied ({}); set api_key_env to a variable holding a CKAN API token that may \
             read this dataset, or check that it is public",
            or_status(&text, status)
        );
    }
    match (kind, call) {
        ("Not Found Error", Call::Search(id)) => format!(
            "resource {id} has no DataStore table ({text}); check resource_id (the id in the \
             resource page's address, …/dataset/<name>/resource/<id>), or name the dataset with \
             dataset = \"…\" so the resource is looked up"
        ),
        ("Not Found Error", Call::ResourceShow(id)) => format!(
            "resource {id} was not found ({text}); check resource_id (the id in the resource \
             page's address, …/dataset/<name>/resource/<id>); a resource of a private dataset \
             also needs api_key_env"
        ),
        ("Not Found Error", Call::PackageShow(name)) => format!(
            "dataset {name} was not found ({text}); use the name or id from the dataset's address \
             (…/dataset/<name>); a private dataset also needs api_key_env"
        ),
        ("Validation Error", call) => {
            let fields_named = error.as_object().is_some_and(|o| {
                ["sort", "fields", "filters", "q", "distinct"]
                    .iter()
                    .any(|k| o.contains_key(*k))
            });
            let what = match call {
                Call::Search(id) => format!("the DataStore refused the query for resource {id}"),
                _ => "the portal refused the request".to_string(),
            };
            if fields_named {
                format!(
                    "{what} ({details}): a field the query names is not a column of the resource; \
                     its columns have changed, or it is not a DataStore table with an _id column"
                )
            } else {
                format!("{what} ({details})")
            }
        }
        ("", _) => or_status(&text, status),
        (kind, _) => format!("{kind}: {}", or_status(&text, status)),
    }
}

fn or_status(text: &str, status: Option<u16>) -> String {
    match (text.is_empty(), status) {
        (true, Some(s)) => format!("HTTP {s}"),
        (true, None) => "no explanation given".into(),
        (false, _) => text.to_string(),
    }
}

/// The per-field messages of an error object: `sort: field foo not it table`.
fn error_details(error: &Value) -> String {
    let Some(map) = error.as_object() else {
        return match error {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
    };
    map.iter()
        .filter(|(k, _)| *k != "__type")
        .map(|(k, v)| {
            let text = match v {
                Value::Array(items) => items
                    .iter()
                    .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join("; "),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if k == "message" {
                text
            } else {
                format!("{k}: {text}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A failed request made into advice: CKAN's error envelope where the body has one.
fn explain(e: FetchError, call: Call<'_>) -> FetchError {
    let FetchError::Http {
        url,
        status,
        message,
        body,
    } = e
    else {
        return e;
    };
    if matches!(status, Some(200..=299)) {
        // The parser refused a successful answer, and its message says why.
        return FetchError::Portal { url, message };
    }
    if !matches!(status, Some(400..=499)) || matches!(status, Some(408 | 429)) {
        // Retried and given up on: the message says how often, and why.
        return FetchError::Http {
            url,
            status,
            message,
            body,
        };
    }
    let error = body
        .as_deref()
        .and_then(|b| serde_json::from_slice::<Value>(b).ok())
        .filter(|v| v.get("success").is_some())
        .and_then(|v| v.get("error").cloned());
    if let Some(error) = error {
        return FetchError::Portal {
            url,
            message: describe_error(status, &error, call),
        };
    }
    let advice = match (status, call) {
        (Some(401 | 403), _) => describe_error(status, &Value::Null, call),
        (Some(404 | 410), Call::Download) => format!(
            "{message}: the resource's file is not at its url; the publisher has moved or \
             removed it"
        ),
        (Some(404), _) => format!(
            "{message}: there is no CKAN Action API at this address; url should be the portal's \
             root, e.g. https://data.boston.gov"
        ),
        _ => {
            return FetchError::Http {
                url,
                status,
                message,
                body,
            };
        }
    };
    FetchError::Portal {
        url,
        message: advice,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use serde_json::json;

    fn response(status: u16, body: &str) -> Response {
        Response {
            url: Url::parse(
                "https://data.example.gov/api/3/action/datastore_search?resource_id=r&offset=200",
            )
            .unwrap(),
            status,
            headers: Default::default(),
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn the_site_root_is_found_under_api_suffixes_and_paths() {
        for url in [
            "https://data.example.gov",
            "https://data.example.gov/",
            "https://data.example.gov/api/3/action",
            "https://data.example.gov/api/3/",
        ] {
            assert_eq!(
                site_root(url).unwrap().as_str(),
                "https://data.example.gov/"
            );
        }
        let sub = site_root("https://example.gov/ckan/api/3").unwrap();
        assert_eq!(
            sub.join("api/3/action/package_show").unwrap().as_str(),
            "https://example.gov/ckan/api/3/action/package_show"
        );
        assert!(site_root("ftp://example.gov").is_err());
    }

    #[test]
    fn stamps_join_every_modification_time_and_change_with_any() {
        let r = json!({"id": "r1", "name": "Calls", "datastore_active": true,
            "last_modified": "2024-01-02T03:04:05", "metadata_modified": null, "url": "", "format": "CSV"});
        let a = Resource::from_json(&r, Some("2024-01-03T00:00:00")).unwrap();
        assert!(a.datastore);
        assert_eq!(
            a.stamp.as_deref(),
            Some(
                "resource r1 (DataStore): last_modified 2024-01-02T03:04:05, package \
                 metadata_modified 2024-01-03T00:00:00"
            )
        );
        let b = Resource::from_json(&r, Some("2024-01-04T00:00:00")).unwrap();
        assert_ne!(a.stamp, b.stamp);
        let bare =
            Resource::from_json(&json!({"id": "r2", "datastore_active": "True"}), None).unwrap();
        assert!(bare.datastore);
        assert_eq!(bare.stamp, None, "no stamp: every run loads everything");
        assert!(Resource::from_json(&json!({"name": "x"}), None).is_err());
    }

    #[test]
    fn resources_are_picked_by_name_or_id_else_datastore_else_csv() {
        let rs = vec![
            json!({"id": "a", "name": "Notes", "format": "PDF", "url": "https://x/notes.pdf"}),
            json!({"id": "b", "name": "Calls (CSV)", "format": "", "url": "https://x/calls.csv"}),
            json!({"id": "c", "name": "Calls", "format": "CSV", "datastore_active": true}),
        ];
        let id = |v: &Value| v["id"].as_str().unwrap().to_string();
        assert_eq!(id(pick_resource(&rs, None, "d").unwrap()), "c");
        assert_eq!(id(pick_resource(&rs, Some("b"), "d").unwrap()), "b");
        assert_eq!(
            id(pick_resource(&rs, Some("calls (csv)"), "d").unwrap()),
            "b"
        );
        assert_eq!(id(pick_resource(&rs[..2], None, "d").unwrap()), "b");
        let err = pick_resource(&rs, Some("Budget"), "fire").unwrap_err();
        assert!(
            err.contains("no resource named \"Budget\"")
                && err.contains("\"Calls\" (id c, CSV, in the DataStore)"),
            "{err}"
        );
        let err = pick_resource(&rs[..1], None, "fire").unwrap_err();
        assert!(err.contains("resource = "), "{err}");
    }

    #[test]
    fn content_types_name_formats() {
        assert_eq!(
            content_type_format("text/csv; charset=utf-8"),
            Some(FileFormat::Csv)
        );
        assert_eq!(
            content_type_format("application/json"),
            Some(FileFormat::Json)
        );
        assert_eq!(content_type_format("text/html"), None);
    }

    #[test]
    fn declared_formats_are_read_or_refused() {
        assert_eq!(declared_format("CSV"), Ok(Some(FileFormat::Csv)));
        assert_eq!(declared_format(" GeoJSON "), Ok(Some(FileFormat::Geojson)));
        assert_eq!(declared_format(""), Ok(None));
        assert_eq!(declared_format("XLSX"), Err("XLSX".to_string()));
    }

    #[test]
    fn success_false_is_an_error_even_under_200() {
        let body = r#"{"help":"h","success":false,"error":{"__type":"Validation Error","sort":["field foo not it table"]}}"#;
        let Err(Problem::Permanent(m)) =
            open_envelope::<Value>(&response(200, body), Call::Search("r1"))
        else {
            panic!("a refusal is permanent");
        };
        assert!(
            m.contains("resource r1")
                && m.contains("sort: field foo not it table")
                && m.contains("not a column"),
            "{m}"
        );
        let Err(Problem::Permanent(m)) =
            open_envelope::<Value>(&response(200, "<html>Welcome</html>"), Call::Search("r1"))
        else {
            panic!("a web page is permanent");
        };
        assert!(m.contains("portal's root"), "{m}");
        assert!(matches!(
            open_envelope::<Value>(
                &response(200, r#"{"success":true,"res"#),
                Call::Search("r1")
            ),
            Err(Problem::Transient(_))
        ));
    }

    #[test]
    fn http_errors_with_envelopes_become_advice() {
        let e = FetchError::Http {
            url: "u".into(),
            status: Some(404),
            message: "HTTP 404".into(),
            body: Some(Bytes::from_static(
                br#"{"success":false,"error":{"__type":"Not Found Error","message":"Not found: Resource \"x\" was not found."}}"#,
            )),
        };
        let m = explain(e, Call::Search("x")).to_string();
        assert!(
            m.contains("resource x has no DataStore table") && m.contains("resource_id"),
            "{m}"
        );
        let e = FetchError::Http {
            url: "u".into(),
            status: Some(403),
            message: "HTTP 403".into(),
            body: Some(Bytes::from_static(
                br#"{"success":false,"error":{"__type":"Authorization Error","message":"Access denied"}}"#,
            )),
        };
        let m = explain(e, Call::PackageShow("p")).to_string();
        assert!(
            m.contains("Access denied") && m.contains("api_key_env"),
            "{m}"
        );
        let e = FetchError::Http {
            url: "u".into(),
            status: Some(404),
            message: "HTTP 404 Not Found".into(),
            body: Some(Bytes::from_static(b"<html>nope</html>")),
        };
        assert!(
            explain(e, Call::PackageShow("p"))
                .to_string()
                .contains("no CKAN Action API")
        );
    }

    #[test]
    fn search_pages_report_cap_total_link_and_ids() {
        let body = json!({"help": "h", "success": true, "result": {
            "limit": 100, "total": 250, "total_was_estimated": false,
            "fields": [{"id": "_id", "type": "int"}, {"id": "Name", "type": "text"}],
            "records": [{"_id": 201, "Name": "a"}, {"_id": 202, "Name": null}],
            "_links": {"start": "/api/3/action/datastore_search?resource_id=r",
                       "next": "/api/3/action/datastore_search?resource_id=r&offset=300"}}})
        .to_string();
        let found = search_result(&response(200, &body), Call::Search("r"), "o", 2, 200).unwrap();
        assert_eq!(found.page.num_rows(), 2);
        assert!(found.page.complete_columns);
        assert_eq!(found.page.locate(0), "record 201");
        assert_eq!(
            (found.total, found.limit, found.next_offset),
            (Some(250), Some(100), Some(300))
        );
        assert_eq!(found.ids, Some((201, 202)));
    }
}
