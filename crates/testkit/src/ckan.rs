//! An emulator of the CKAN Action API (2.9/2.10) with one package and its DataStore.
//!
//! Endpoints (under `/api/3/action/` and the unversioned `/api/action/`):
//! - `datastore_search` (GET query string or POST JSON body): `resource_id`, `limit`,
//!   `offset`, `sort`, `fields`, `filters`, `include_total`, `records_format`.
//! - `package_show?id=` and `resource_show?id=`.
//!
//! and the files the package links to: `/dataset/{package}/resource/{id}/download/fire-calls.csv`
//! (the CSV upload, original headers, with `ETag`/`Last-Modified` and 304 answers to
//! `If-None-Match`/`If-Modified-Since`) and `/datastore/dump/{id}` (the DataStore as CSV).
//!
//! Behaviour kept from the real service:
//! - Responses are `{"help", "success", "result"}` envelopes. Field ids are the original CSV
//!   headers (`Received DtTm`); `_id` is the row number. `numeric` values are JSON numbers,
//!   `timestamp` values `2016-12-31T23:57:56`, empty cells JSON `null` (present).
//! - `limit` defaults to 100 and is silently clamped at `ckan.datastore.search.rows_max`
//!   (32,000; [`CkanOptions::max_limit`]); `result.limit` reports the clamped value.
//! - `_links.next` repeats the request with `offset` advanced by the limit; it is present
//!   even on the last page, so the end of data is an empty (or short) `records` page, or
//!   `offset >= total`.
//! - `sort` clauses are split like a shell would: `"Received DtTm" desc` works, unquoted
//!   labels with spaces do not (`not valid syntax for sort clause`).
//! - Errors: 404 `Not Found Error` for an unknown resource, 409 `Validation Error` with
//!   per-parameter messages (`{"limit": ["Invalid integer"]}`, `{"sort": ["field foo not it
//!   table"]}` — CKAN's own wording), 400 for an unknown action.
//! - Mutations of the dataset move `metadata_modified` and the resources' `last_modified`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::DateTime;
use http::header::{CONTENT_DISPOSITION, CONTENT_TYPE, ETAG, HOST, LAST_MODIFIED};
use http::{HeaderMap, HeaderValue, StatusCode, Uri};
use serde_json::{Value as Json, json};

use crate::dataset::{BASE_EPOCH, ColumnKind, Dataset, Row, SharedDataset};
use crate::fault::{FaultPlan, apply_fault};
use crate::log::Served;
use crate::query::{
    Clock, CmpOp, Expr, Filter, Key, Literal, SortKey, TimeLiteral, convert_literal, filter_rows,
    key_kind, parse_time_literal, sort_rows,
};
use crate::server::{
    TestServer, encode_query, http_date, json_response, json_rows, not_modified, param,
    raw_json_response, with_raw_member,
};

/// Settings of a CKAN emulator.
#[derive(Debug, Clone)]
pub struct CkanOptions {
    pub package_name: String,
    pub package_id: String,
    pub title: String,
    /// The DataStore resource (`datastore_active: true`).
    pub resource_id: String,
    /// The plain CSV upload (`datastore_active: false`).
    pub csv_resource_id: String,
    /// `ckan.datastore.search.rows_max`.
    pub max_limit: usize,
}

impl Default for CkanOptions {
    fn default() -> Self {
        CkanOptions {
            package_name: "fire-department-calls-for-service".into(),
            package_id: "5d0f6b2e-9a41-4c3b-8e7d-2f1a6c9b0e45".into(),
            title: "Fire Department Calls for Service".into(),
            resource_id: "8a3b5c1e-4f2d-4e9a-b6c7-0d1e2f3a4b5c".into(),
            csv_resource_id: "f0e1d2c3-b4a5-4968-8778-695a4b3c2d1e".into(),
            max_limit: 32_000,
        }
    }
}

struct Emulator {
    dataset: SharedDataset,
    faults: FaultPlan,
    options: CkanOptions,
}

/// Starts a CKAN emulator on 127.0.0.1.
pub async fn start(dataset: SharedDataset, options: CkanOptions) -> TestServer {
    let faults = FaultPlan::new();
    let emulator = Arc::new(Emulator {
        dataset: dataset.clone(),
        faults: faults.clone(),
        options,
    });
    let router = Router::new()
        .route("/api/3/action/{action}", get(action_get).post(action_post))
        .route("/api/action/{action}", get(action_get).post(action_post))
        .route(
            "/dataset/{package}/resource/{id}/download/{file}",
            get(download),
        )
        .route("/datastore/dump/{id}", get(dump))
        .with_state(emulator);
    TestServer::start(router, dataset, faults).await
}

const DOWNLOAD_NAME: &str = "fire-calls.csv";

fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

fn ckan_time(epoch: i64) -> String {
    DateTime::from_timestamp(epoch, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string()
}

/// A CKAN call: its help URL for envelopes, and the path it came in on for `_links`.
struct Call {
    help: String,
    path: String,
    base: String,
}

impl Call {
    fn success(&self, result: Json) -> Response {
        json_response(
            StatusCode::OK,
            &json!({"help": self.help, "success": true, "result": result}),
        )
    }

    fn failure(&self, status: StatusCode, error: Json) -> Response {
        json_response(
            status,
            &json!({"help": self.help, "success": false, "error": error}),
        )
    }

    fn validation(&self, field: &str, message: impl Into<String>) -> Response {
        let mut error = json!({"__type": "Validation Error"});
        error[field] = json!([message.into()]);
        self.failure(StatusCode::CONFLICT, error)
    }

    fn not_found(&self, message: &str) -> Response {
        self.failure(
            StatusCode::NOT_FOUND,
            json!({"__type": "Not Found Error", "message": format!("Not found: {message}")}),
        )
    }
}

async fn action_get(
    State(emulator): State<Arc<Emulator>>,
    Path(action): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    dispatch(emulator, action, uri, headers, params).await
}

async fn action_post(
    State(emulator): State<Arc<Emulator>>,
    Path(action): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Result<serde_json::Map<String, Json>, _> = if body.is_empty() {
        Ok(Default::default())
    } else {
        serde_json::from_slice(&body)
    };
    let Ok(object) = parsed else {
        let call = call(&headers, &uri, &action);
        return call.failure(
            StatusCode::BAD_REQUEST,
            json!({"__type": "Bad Request", "message": "Bad request - JSON Error: Error decoding JSON data."}),
        );
    };
    let params = object
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                Json::String(s) => s,
                Json::Array(items) if items.iter().all(Json::is_string) => items
                    .iter()
                    .filter_map(Json::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            (k, text)
        })
        .collect();
    dispatch(emulator, action, uri, headers, params).await
}

fn call(headers: &HeaderMap, uri: &Uri, action: &str) -> Call {
    let base = base_url(headers);
    Call {
        help: format!("{base}/api/3/action/help_show?name={action}"),
        path: uri.path().to_owned(),
        base,
    }
}

async fn dispatch(
    emulator: Arc<Emulator>,
    action: String,
    uri: Uri,
    headers: HeaderMap,
    params: Vec<(String, String)>,
) -> Response {
    let call = call(&headers, &uri, &action);
    match action.as_str() {
        "datastore_search" => datastore_search(emulator, call, params).await,
        "package_show" => {
            let id = param(&params, "id").or_else(|| param(&params, "name_or_id")).unwrap_or_default();
            let options = &emulator.options;
            if id != options.package_name && id != options.package_id {
                return call.not_found("Dataset not found");
            }
            let dataset = emulator.dataset.read().expect("dataset lock");
            call.success(package(&dataset, options, &call.base))
        }
        "resource_show" => {
            let dataset = emulator.dataset.read().expect("dataset lock");
            let id = param(&params, "id").unwrap_or_default();
            match resources(&dataset, &emulator.options, &call.base).into_iter().find(|r| r["id"] == id) {
                Some(resource) => call.success(resource),
                None => call.not_found("Resource was not found."),
            }
        }
        other => call.failure(
            StatusCode::BAD_REQUEST,
            json!({"__type": "Bad Request", "message": format!("Bad request - Action name not known: {other}")}),
        ),
    }
}

fn resources(dataset: &Dataset, options: &CkanOptions, base: &str) -> Vec<Json> {
    let resource = |id: &str, name: &str, url: String, datastore: bool, position: usize| {
        json!({
            "id": id,
            "package_id": options.package_id,
            "name": name,
            "format": "CSV",
            "mimetype": "text/csv",
            "url": url,
            "url_type": if datastore { "datastore" } else { "upload" },
            "datastore_active": datastore,
            "created": ckan_time(BASE_EPOCH),
            "last_modified": ckan_time(dataset.modified_at()),
            "position": position,
            "state": "active",
        })
    };
    vec![
        resource(
            &options.resource_id,
            &options.title,
            format!("{base}/datastore/dump/{}", options.resource_id),
            true,
            0,
        ),
        resource(
            &options.csv_resource_id,
            "Fire Department Calls for Service (CSV)",
            format!(
                "{base}/dataset/{}/resource/{}/download/{DOWNLOAD_NAME}",
                options.package_name, options.csv_resource_id
            ),
            false,
            1,
        ),
    ]
}

fn package(dataset: &Dataset, options: &CkanOptions, base: &str) -> Json {
    json!({
        "id": options.package_id,
        "name": options.package_name,
        "title": options.title,
        "type": "dataset",
        "state": "active",
        "private": false,
        "license_id": "odc-pddl",
        "notes": "Fire unit responses to calls, one row per responding unit.",
        "metadata_created": ckan_time(BASE_EPOCH),
        "metadata_modified": ckan_time(dataset.modified_at()),
        "organization": {"name": "sf-fire", "title": "San Francisco Fire Department"},
        "num_resources": 2,
        "num_tags": 0,
        "tags": [],
        "resources": resources(dataset, options, base),
    })
}

fn ckan_type(dataset: &Dataset, key: Key) -> &'static str {
    match key {
        Key::Column(i) => match dataset.columns()[i].kind {
            ColumnKind::Text | ColumnKind::Point => "text",
            ColumnKind::Number => "numeric",
            ColumnKind::Timestamp => "timestamp",
            ColumnKind::Boolean => "bool",
        },
        _ => "int",
    }
}

fn ckan_value(dataset: &Dataset, row: &Row, key: Key) -> Json {
    let Key::Column(i) = key else {
        return Json::from(row.sid);
    };
    let Some(text) = row.get(i) else {
        return Json::Null;
    };
    match dataset.columns()[i].kind {
        ColumnKind::Number => serde_json::from_str(text).unwrap_or_else(|_| Json::from(text)),
        ColumnKind::Boolean => Json::from(text == "true"),
        _ => Json::from(text),
    }
}

fn resolve(dataset: &Dataset, id: &str) -> Option<Key> {
    if id == "_id" {
        Some(Key::Sid)
    } else {
        dataset.label_index(id).map(Key::Column)
    }
}

/// Splits one sort clause like Python's `shlex.split`: whitespace-separated words, with
/// double- or single-quoted stretches kept whole.
fn shell_words(clause: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in clause.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_default().push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                word.get_or_insert_default();
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_default().push(c),
        }
    }
    words.extend(word);
    quote.is_none().then_some(words)
}

fn parse_sort(dataset: &Dataset, text: &str) -> Result<Vec<SortKey>, String> {
    text.split(',')
        .map(|clause| {
            let words = shell_words(clause).ok_or("not valid syntax for sort clause")?;
            let (field, direction) = match words.as_slice() {
                [field] => (field.as_str(), "asc"),
                [field, direction] => (field.as_str(), direction.as_str()),
                _ => return Err("not valid syntax for sort clause".to_owned()),
            };
            let key =
                resolve(dataset, field).ok_or_else(|| format!("field {field} not it table"))?;
            match direction.to_ascii_lowercase().as_str() {
                "asc" => Ok(SortKey {
                    key,
                    descending: false,
                }),
                "desc" => Ok(SortKey {
                    key,
                    descending: true,
                }),
                _ => Err("sorting can only be asc or desc".to_owned()),
            }
        })
        .collect()
}

fn filter_literal(value: &Json) -> Option<Literal> {
    match value {
        Json::String(s) => Some(Literal::Text(s.clone())),
        Json::Number(n) => Some(Literal::Number(n.to_string())),
        Json::Bool(b) => Some(Literal::Bool(*b)),
        _ => None,
    }
}

fn parse_filters(dataset: &Dataset, text: &str) -> Result<Option<Filter>, String> {
    let Ok(Json::Object(filters)) = serde_json::from_str::<Json>(text) else {
        return Err("Not a json object".into());
    };
    let mut combined = None;
    for (field, value) in filters {
        let key =
            resolve(dataset, &field).ok_or_else(|| format!("field \"{field}\" not in table"))?;
        let values = match value {
            Json::Array(items) => items,
            single => vec![single],
        };
        let mut any: Option<Filter> = None;
        for value in &values {
            let literal =
                filter_literal(value).ok_or_else(|| format!("invalid value for \"{field}\""))?;
            let (kind, _) = key_kind(dataset, key);
            let scalar = convert_literal(kind, literal, |lit| {
                match parse_time_literal(&lit.text())? {
                    TimeLiteral::Floating(t) => Some(t.and_utc().timestamp()),
                    TimeLiteral::Instant(_) => None,
                }
            })?;
            let test = Expr::Cmp(key, CmpOp::Eq, scalar);
            any = Some(match any {
                Some(previous) => Expr::Or(Box::new(previous), Box::new(test)),
                None => test,
            });
        }
        combined = Some(Filter::and(combined, any.unwrap_or(Expr::Const(false))));
    }
    Ok(combined)
}

struct Search {
    resource_id: String,
    fields: Vec<(String, Key)>,
    filter: Option<Filter>,
    sort: Vec<SortKey>,
    limit: usize,
    offset: usize,
    include_total: bool,
    lists: bool,
}

fn parse_search(
    dataset: &Dataset,
    params: &[(String, String)],
    max_limit: usize,
) -> Result<Search, (&'static str, String)> {
    let natural = |name: &'static str, default: usize| -> Result<usize, (&'static str, String)> {
        match param(params, name) {
            None => Ok(default),
            Some(text) => match text.trim().parse::<i64>() {
                Err(_) => Err((name, "Invalid integer".into())),
                Ok(n) if n < 0 => Err((name, "Must be a natural number".into())),
                Ok(n) => Ok(n as usize),
            },
        }
    };
    let resource_id = param(params, "resource_id")
        .or_else(|| param(params, "id"))
        .ok_or(("resource_id", "Missing value".to_owned()))?
        .to_owned();
    let limit = natural("limit", 100)?.min(max_limit);
    let offset = natural("offset", 0)?;
    let fields = match param(params, "fields") {
        None => std::iter::once(("_id".to_owned(), Key::Sid))
            .chain(
                dataset
                    .columns()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.label.clone(), Key::Column(i))),
            )
            .collect(),
        Some(list) => list
            .split(',')
            .map(|f| {
                let f = f.trim();
                resolve(dataset, f)
                    .map(|key| (f.to_owned(), key))
                    .ok_or_else(|| ("fields", format!("field \"{f}\" not in table")))
            })
            .collect::<Result<_, _>>()?,
    };
    let sort = match param(params, "sort") {
        Some(text) if !text.trim().is_empty() => {
            parse_sort(dataset, text).map_err(|e| ("sort", e))?
        }
        _ => Vec::new(),
    };
    let filter = match param(params, "filters") {
        Some(text) => parse_filters(dataset, text).map_err(|e| ("filters", e))?,
        None => None,
    };
    let include_total = match param(params, "include_total")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("true" | "1" | "yes") => true,
        Some("false" | "0" | "no") => false,
        Some(_) => return Err(("include_total", "Value must be one of: true, false".into())),
    };
    let lists = match param(params, "records_format") {
        None | Some("objects") => false,
        Some("lists") => true,
        Some(_) => {
            return Err((
                "records_format",
                "Value must be one of ['objects', 'lists']".into(),
            ));
        }
    };
    Ok(Search {
        resource_id,
        fields,
        filter,
        sort,
        limit,
        offset,
        include_total,
        lists,
    })
}

async fn datastore_search(
    emulator: Arc<Emulator>,
    call: Call,
    params: Vec<(String, String)>,
) -> Response {
    let search = {
        let dataset = emulator.dataset.read().expect("dataset lock");
        match parse_search(&dataset, &params, emulator.options.max_limit) {
            Ok(search) => search,
            Err((field, message)) => return call.validation(field, message),
        }
    };
    if search.resource_id != emulator.options.resource_id {
        return call.not_found(&format!(
            "Resource \"{}\" was not found.",
            search.resource_id
        ));
    }
    let shared = emulator.dataset.clone();
    apply_fault(&emulator.faults, Some(&emulator.dataset), || async move {
        let dataset = shared.read().expect("dataset lock");
        let mut rows = filter_rows(&dataset, search.filter.as_ref(), Clock::Floating);
        let total = rows.len();
        sort_rows(&dataset, &mut rows, &search.sort, Clock::Floating, |row| {
            row.sid
        });
        let page: Vec<&Row> = rows
            .into_iter()
            .skip(search.offset)
            .take(search.limit)
            .collect();
        let records = if search.lists {
            let lists = page.iter().map(|row| {
                Json::Array(
                    search
                        .fields
                        .iter()
                        .map(|(_, key)| ckan_value(&dataset, row, *key))
                        .collect(),
                )
            });
            Json::Array(lists.collect()).to_string()
        } else {
            let names: Vec<String> = search.fields.iter().map(|(id, _)| id.clone()).collect();
            json_rows(page.iter().copied(), &names, |row, i| {
                Some(ckan_value(&dataset, row, search.fields[i].1))
            })
        };
        let fields: Vec<Json> = search
            .fields
            .iter()
            .map(|(id, key)| json!({"id": id, "type": ckan_type(&dataset, *key)}))
            .collect();
        let kept: Vec<(&str, &str)> = params
            .iter()
            .filter(|(k, _)| k != "offset")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let start = format!("{}?{}", call.path, encode_query(kept));
        let next = format!("{start}&offset={}", search.offset + search.limit);
        let mut result = json!({
            "include_total": search.include_total,
            "limit": search.limit,
            "records_format": if search.lists { "lists" } else { "objects" },
            "resource_id": search.resource_id,
            "total_estimation_threshold": null,
            "fields": fields,
            "_links": {"start": start, "next": next},
        });
        for name in ["offset", "sort", "filters"] {
            if let Some(value) = param(&params, name) {
                result[name] = match name {
                    "offset" => Json::from(search.offset),
                    "filters" => serde_json::from_str(value).unwrap_or(Json::Null),
                    _ => Json::from(value),
                };
            }
        }
        if search.include_total {
            result["total"] = Json::from(total);
            result["total_was_estimated"] = Json::from(false);
        }
        let result = with_raw_member(&result, "records", &records);
        let envelope = with_raw_member(
            &json!({"help": call.help, "success": true}),
            "result",
            &result,
        );
        let mut response = raw_json_response(StatusCode::OK, envelope);
        response
            .extensions_mut()
            .insert(Served { rows: page.len() });
        response
    })
    .await
}

fn csv_response(headers: &HeaderMap, dataset: &Dataset, body: String, rows: usize) -> Response {
    let etag = dataset.etag();
    let value = |v: String| HeaderValue::from_str(&v).expect("ASCII header value");
    let mut response = if not_modified(headers, &etag, dataset.modified_at()) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = (
            StatusCode::OK,
            [(CONTENT_TYPE, "text/csv; charset=utf-8")],
            body,
        )
            .into_response();
        response.extensions_mut().insert(Served { rows });
        response
    };
    response.headers_mut().insert(ETAG, value(etag));
    response
        .headers_mut()
        .insert(LAST_MODIFIED, value(http_date(dataset.modified_at())));
    response
}

async fn download(
    State(emulator): State<Arc<Emulator>>,
    Path((package, id, file)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let options = &emulator.options;
    if package != options.package_name || id != options.csv_resource_id || file != DOWNLOAD_NAME {
        return (StatusCode::NOT_FOUND, "404 Not Found").into_response();
    }
    let shared = emulator.dataset.clone();
    apply_fault(&emulator.faults, Some(&emulator.dataset), || async move {
        let dataset = shared.read().expect("dataset lock");
        let mut response = csv_response(&headers, &dataset, dataset.to_csv_string(), dataset.len());
        let disposition = format!("attachment; filename=\"{DOWNLOAD_NAME}\"");
        response.headers_mut().insert(
            CONTENT_DISPOSITION,
            HeaderValue::from_str(&disposition).expect("ASCII"),
        );
        response
    })
    .await
}

async fn dump(
    State(emulator): State<Arc<Emulator>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if id != emulator.options.resource_id {
        return (StatusCode::NOT_FOUND, "404 Not Found").into_response();
    }
    let shared = emulator.dataset.clone();
    apply_fault(&emulator.faults, Some(&emulator.dataset), || async move {
        let dataset = shared.read().expect("dataset lock");
        let mut writer = csv::Writer::from_writer(Vec::new());
        let header =
            std::iter::once("_id").chain(dataset.columns().iter().map(|c| c.label.as_str()));
        writer.write_record(header).expect("writing to memory");
        for row in dataset.rows() {
            let sid = row.sid.to_string();
            let cells = std::iter::once(sid.as_str())
                .chain(row.values.iter().map(|v| v.as_deref().unwrap_or("")));
            writer.write_record(cells).expect("writing to memory");
        }
        let body = String::from_utf8(writer.into_inner().expect("writing to memory"))
            .expect("UTF-8 values");
        csv_response(&headers, &dataset, body, dataset.len())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::shell_words;

    #[test]
    fn sort_clauses_split_like_shlex() {
        assert_eq!(
            shell_words(" \"Received DtTm\" desc").unwrap(),
            ["Received DtTm", "desc"]
        );
        assert_eq!(shell_words("Received DtTm desc").unwrap().len(), 3);
        assert!(shell_words("\"open").is_none());
    }
}
