//! An emulator of the Socrata Open Data API (SODA 2.x) serving one dataset.
//!
//! Endpoints:
//! - `GET /resource/{id}.json` and `/resource/{id}.csv`: rows, with `$select`, `$where`,
//!   `$order`, `$limit`, `$offset` and simple `field=value` filters.
//! - `GET /api/views/{id}.json`: view metadata (`rowsUpdatedAt`, `viewLastModified`, columns).
//!
//! Behaviour kept from the real service:
//! - `$limit` defaults to 1000. SODA 2.0 caps it at 50,000 and 2.1 has no cap; the emulator
//!   clamps silently at [`SocrataOptions::max_limit`] (50,000 by default), so a client must
//!   never infer the end of data from a page shorter than it asked for unless it asked for no
//!   more than the cap.
//! - Without `$order` the order is unspecified: each offset sees its own deterministic shuffle,
//!   so paging without `$order` shows repeats and gaps. Ties under `$order` are broken the same
//!   way: `:updated_at` is not unique, so order by `:updated_at, :id`.
//! - Values are JSON strings (numbers too), checkboxes JSON booleans, floating timestamps
//!   `2016-12-31T23:57:56.000`, points GeoJSON; empty fields are left out of the object.
//! - `$select=:*,*` adds the system fields `:id`, `:created_at`, `:updated_at` (UTC,
//!   `2017-01-08T00:00:00.000Z`); `count(*)` answers `[{"count":"7704"}]`.
//! - Data responses carry `X-SODA2-Fields`, `X-SODA2-Types`, `Last-Modified` and `ETag`.
//! - Errors are JSON `{"code", "error": true, "message", "data"}`: 400
//!   `query.soql.no-such-column` for an unknown field, `query.soql.type-mismatch` for a literal
//!   of the wrong type, `query.compiler.malformed` for anything that does not parse; 404
//!   `not_found` for another dataset id; 403 (the real body) without the required app token.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::DateTime;
use http::header::{CONTENT_TYPE, ETAG, LAST_MODIFIED};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::{Value as Json, json};

use crate::dataset::{BASE_EPOCH, ColumnKind, Dataset, Row, SharedDataset, mix64, parse_point};
use crate::fault::{FaultPlan, apply_fault};
use crate::log::Served;
use crate::query::{
    self, Clock, Dialect, Filter, Key, Literal, SortKey, TimeLiteral, convert_literal, filter_rows,
    key_kind, parse_order_list, parse_time_literal, sort_rows,
};
use crate::server::{TestServer, http_date, json_response, json_rows};

/// The real body Socrata sends when a request lacks the credentials a resource needs.
pub const FORBIDDEN_BODY: &str = include_str!("../fixtures/socrata_error_403.json");

/// Settings of a Socrata emulator.
#[derive(Debug, Clone)]
pub struct SocrataOptions {
    /// The four-by-four id (default `nuek-vuh3`, the real DataSF id).
    pub dataset_id: String,
    pub name: String,
    /// When set, every request must carry it in `X-App-Token` (or `$$app_token`).
    pub app_token: Option<String>,
    /// Largest `$limit` honoured; larger values are clamped.
    pub max_limit: usize,
}

impl Default for SocrataOptions {
    fn default() -> Self {
        SocrataOptions {
            dataset_id: "nuek-vuh3".into(),
            name: "Fire Department Calls for Service".into(),
            app_token: None,
            max_limit: 50_000,
        }
    }
}

struct Emulator {
    dataset: SharedDataset,
    faults: FaultPlan,
    options: SocrataOptions,
}

/// Starts a Socrata emulator on 127.0.0.1.
pub async fn start(dataset: SharedDataset, options: SocrataOptions) -> TestServer {
    let faults = FaultPlan::new();
    let emulator = Arc::new(Emulator {
        dataset: dataset.clone(),
        faults: faults.clone(),
        options,
    });
    let router = Router::new()
        .route("/resource/{file}", get(resource))
        .route("/api/views/{file}", get(view))
        .with_state(emulator);
    TestServer::start(router, dataset, faults).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
}

enum Selection {
    Count(String),
    Fields(Vec<(String, Key)>),
}

struct SodaQuery {
    selection: Selection,
    filter: Option<Filter>,
    order: Vec<SortKey>,
    limit: usize,
    offset: usize,
}

struct SoqlError {
    code: &'static str,
    message: String,
}

impl SoqlError {
    fn malformed(message: impl Into<String>) -> Self {
        SoqlError {
            code: "query.compiler.malformed",
            message: message.into(),
        }
    }

    fn no_such_column(name: &str, position: usize, clause: &str) -> Self {
        SoqlError {
            code: "query.soql.no-such-column",
            message: format!(
                "No such column: {name}; position: Map(row -> 1, column -> {position}, line -> \"{clause}\")"
            ),
        }
    }

    fn into_response(self) -> Response {
        error(StatusCode::BAD_REQUEST, self.code, &self.message)
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(
        status,
        &json!({"code": code, "error": true, "message": message, "data": {}}),
    )
}

fn forbidden(
    emulator: &Emulator,
    headers: &HeaderMap,
    params: &[(String, String)],
) -> Option<Response> {
    let expected = emulator.options.app_token.as_deref()?;
    let header = headers.get("x-app-token").and_then(|v| v.to_str().ok());
    let param = crate::server::param(params, "$$app_token");
    if header == Some(expected) || param == Some(expected) {
        return None;
    }
    Some(
        (
            StatusCode::FORBIDDEN,
            [(CONTENT_TYPE, "application/json; charset=utf-8")],
            FORBIDDEN_BODY,
        )
            .into_response(),
    )
}

fn split_file(file: &str) -> (&str, Option<&str>) {
    match file.rsplit_once('.') {
        Some((id, ext)) => (id, Some(ext)),
        None => (file, None),
    }
}

async fn resource(
    State(emulator): State<Arc<Emulator>>,
    Path(file): Path<String>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    if let Some(response) = forbidden(&emulator, &headers, &params) {
        return response;
    }
    let (id, format) = match split_file(&file) {
        (id, None | Some("json")) => (id, Format::Json),
        (id, Some("csv")) => (id, Format::Csv),
        _ => return error(StatusCode::NOT_FOUND, "not_found", "Not found"),
    };
    if id != emulator.options.dataset_id {
        return error(StatusCode::NOT_FOUND, "not_found", "Not found");
    }
    let query = {
        let dataset = emulator.dataset.read().expect("dataset lock");
        match parse_query(&dataset, &params, emulator.options.max_limit) {
            Ok(query) => query,
            Err(e) => return e.into_response(),
        }
    };
    if matches!(query.selection, Selection::Count(_)) {
        return render(
            &emulator.dataset.read().expect("dataset lock"),
            &query,
            format,
            false,
        );
    }
    let shared = emulator.dataset.clone();
    apply_fault(&emulator.faults, Some(&emulator.dataset), || async move {
        render(&shared.read().expect("dataset lock"), &query, format, true)
    })
    .await
}

async fn view(
    State(emulator): State<Arc<Emulator>>,
    Path(file): Path<String>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    if let Some(response) = forbidden(&emulator, &headers, &params) {
        return response;
    }
    let (id, ext) = split_file(&file);
    if id != emulator.options.dataset_id || !matches!(ext, None | Some("json")) {
        return error(StatusCode::NOT_FOUND, "not_found", "Not found");
    }
    let dataset = emulator.dataset.read().expect("dataset lock");
    let columns: Vec<Json> = dataset
        .columns()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let type_name = type_name(&dataset, Key::Column(i));
            json!({
                "id": 400_000 + i,
                "name": c.label,
                "dataTypeName": type_name,
                "fieldName": c.field,
                "position": i + 1,
                "renderTypeName": type_name,
                "tableColumnId": 900_000 + i,
                "format": {},
            })
        })
        .collect();
    let body = json!({
        "id": emulator.options.dataset_id,
        "name": emulator.options.name,
        "assetType": "dataset",
        "attribution": "San Francisco Fire Department",
        "category": "Public Safety",
        "createdAt": BASE_EPOCH,
        "publicationDate": BASE_EPOCH,
        "rowsUpdatedAt": dataset.modified_at(),
        "viewLastModified": dataset.modified_at(),
        "displayType": "table",
        "viewType": "tabular",
        "licenseId": "PDDL",
        "newBackend": true,
        "publicationStage": "published",
        "publicationAppendEnabled": false,
        "state": "normal",
        "columns": columns,
        "metadata": {
            "rowIdentifier": 400_000 + dataset.key_index(),
            "availableDisplayTypes": ["table", "fatrow", "page"],
        },
        "owner": {"id": "fire-dept", "displayName": "San Francisco Fire Department"},
    });
    json_response(StatusCode::OK, &body)
}

fn resolve(dataset: &Dataset, name: &str) -> Option<Key> {
    match name {
        ":id" => Some(Key::RowId),
        ":created_at" => Some(Key::CreatedAt),
        ":updated_at" => Some(Key::UpdatedAt),
        _ => dataset
            .column_index(&name.to_ascii_lowercase())
            .map(Key::Column),
    }
}

fn parse_query(
    dataset: &Dataset,
    params: &[(String, String)],
    max_limit: usize,
) -> Result<SodaQuery, SoqlError> {
    let mut query = SodaQuery {
        selection: Selection::Fields(user_fields(dataset)),
        filter: None,
        order: Vec::new(),
        limit: 1000,
        offset: 0,
    };
    let number = |name: &str, text: &str| {
        text.trim().parse::<usize>().map_err(|_| {
            SoqlError::malformed(format!(
                "Invalid {name}: '{text}' is not a non-negative integer"
            ))
        })
    };
    for (name, value) in params {
        match name.as_str() {
            "$select" => query.selection = parse_select(dataset, value)?,
            "$where" => {
                query.filter = Some(Filter::and(
                    query.filter.take(),
                    parse_where(dataset, value)?,
                ))
            }
            "$order" => query.order = parse_order(dataset, value)?,
            "$limit" => query.limit = number("$limit", value)?.min(max_limit),
            "$offset" => query.offset = number("$offset", value)?,
            system if system.starts_with("$$") => {}
            other if other.starts_with('$') => {
                return Err(SoqlError::malformed(format!(
                    "Unrecognized arguments [{other}]"
                )));
            }
            field => {
                let key = resolve(dataset, field)
                    .ok_or_else(|| SoqlError::no_such_column(field, 1, field))?;
                let literal = literal(dataset, key, Literal::Text(value.clone()))?;
                let filter = query::Expr::Cmp(key, query::CmpOp::Eq, literal);
                query.filter = Some(Filter::and(query.filter.take(), filter));
            }
        }
    }
    Ok(query)
}

fn user_fields(dataset: &Dataset) -> Vec<(String, Key)> {
    dataset
        .columns()
        .iter()
        .enumerate()
        .map(|(i, c)| (c.field.clone(), Key::Column(i)))
        .collect()
}

fn system_fields() -> Vec<(String, Key)> {
    [
        (":id", Key::RowId),
        (":created_at", Key::CreatedAt),
        (":updated_at", Key::UpdatedAt),
    ]
    .into_iter()
    .map(|(n, k)| (n.to_owned(), k))
    .collect()
}

fn parse_select(dataset: &Dataset, text: &str) -> Result<Selection, SoqlError> {
    let lower = text.trim().to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("count(*)") {
        let rest = rest.trim();
        let alias = match rest.strip_prefix("as ") {
            Some(alias) => alias.trim(),
            None if rest.is_empty() => "count",
            None => {
                return Err(SoqlError::malformed(format!(
                    "Could not parse $select: {text}"
                )));
            }
        };
        if alias.is_empty() || alias.contains([',', ' ']) {
            return Err(SoqlError::malformed(format!(
                "Could not parse $select: {text}"
            )));
        }
        return Ok(Selection::Count(alias.to_owned()));
    }
    let mut fields = Vec::new();
    let mut position = 1;
    for item in text.split(',') {
        let name = item.trim();
        match name {
            "*" => fields.extend(user_fields(dataset)),
            ":*" => fields.extend(system_fields()),
            _ if name.contains('(') => {
                return Err(SoqlError::malformed(format!(
                    "Aggregates other than a lone count(*) are not supported: {text}"
                )));
            }
            _ => {
                let offset = item.len() - item.trim_start().len();
                let key = resolve(dataset, name)
                    .ok_or_else(|| SoqlError::no_such_column(name, position + offset, text))?;
                fields.push((name.to_owned(), key));
            }
        }
        position += item.chars().count() + 1;
    }
    Ok(Selection::Fields(fields))
}

fn literal(dataset: &Dataset, key: Key, literal: Literal) -> Result<query::Scalar, SoqlError> {
    let system = matches!(key, Key::CreatedAt | Key::UpdatedAt);
    let (kind, _) = key_kind(dataset, key);
    convert_literal(kind, literal, |lit| match lit {
        Literal::Text(s) | Literal::Typed { text: s, .. } => match parse_time_literal(s)? {
            TimeLiteral::Floating(t) => Some(t.and_utc().timestamp()),
            TimeLiteral::Instant(t) if system => Some(t.timestamp()),
            TimeLiteral::Instant(_) => None,
        },
        _ => None,
    })
    .map_err(|message| SoqlError {
        code: "query.soql.type-mismatch",
        message: format!("Type mismatch: {message}"),
    })
}

fn parse_where(dataset: &Dataset, text: &str) -> Result<Filter, SoqlError> {
    let parsed = query::parse(text, Dialect::default()).map_err(SoqlError::malformed)?;
    parsed.bind(
        &mut |ident| {
            resolve(dataset, &ident.name)
                .ok_or_else(|| SoqlError::no_such_column(&ident.name, ident.position, text))
        },
        &mut |key, lit| literal(dataset, key, lit),
    )
}

fn parse_order(dataset: &Dataset, text: &str) -> Result<Vec<SortKey>, SoqlError> {
    parse_order_list(text)
        .map_err(SoqlError::malformed)?
        .into_iter()
        .map(|(name, descending)| {
            let position = text.find(&name).map_or(1, |p| p + 1);
            resolve(dataset, &name)
                .map(|key| SortKey { key, descending })
                .ok_or_else(|| SoqlError::no_such_column(&name, position, text))
        })
        .collect()
}

fn type_name(dataset: &Dataset, key: Key) -> &'static str {
    match key {
        Key::Column(i) => match dataset.columns()[i].kind {
            ColumnKind::Text => "text",
            ColumnKind::Number => "number",
            ColumnKind::Timestamp => "floating_timestamp",
            ColumnKind::Boolean => "checkbox",
            ColumnKind::Point => "point",
        },
        _ => "meta_data",
    }
}

fn fixed_timestamp(epoch: i64) -> String {
    DateTime::from_timestamp(epoch, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

fn json_value(dataset: &Dataset, row: &Row, key: Key) -> Option<Json> {
    Some(match key {
        Key::Column(i) => {
            let text = row.get(i)?;
            match dataset.columns()[i].kind {
                ColumnKind::Text | ColumnKind::Number => Json::from(text),
                ColumnKind::Timestamp => Json::from(format!("{text}.000")),
                ColumnKind::Boolean => Json::from(text == "true"),
                ColumnKind::Point => {
                    let (lat, lon) = parse_point(text)?;
                    json!({"type": "Point", "coordinates": [lon, lat]})
                }
            }
        }
        Key::RowId => Json::from(row.id.as_str()),
        Key::CreatedAt => Json::from(fixed_timestamp(row.created_at)),
        Key::UpdatedAt => Json::from(fixed_timestamp(row.updated_at)),
        Key::Sid => Json::from(row.sid),
    })
}

fn csv_value(dataset: &Dataset, row: &Row, key: Key) -> String {
    if let Key::Column(i) = key
        && dataset.columns()[i].kind == ColumnKind::Point
    {
        return row
            .point(i)
            .map(|(lat, lon)| format!("POINT ({lon} {lat})"))
            .unwrap_or_default();
    }
    match json_value(dataset, row, key) {
        Some(Json::String(s)) => s,
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// Filters, orders and pages as SODA does (see the module documentation).
fn select_rows<'a>(dataset: &'a Dataset, query: &SodaQuery) -> Vec<&'a Row> {
    let mut rows = filter_rows(dataset, query.filter.as_ref(), Clock::Floating);
    let seed = mix64(query.offset as u64 ^ 0x50da);
    sort_rows(dataset, &mut rows, &query.order, Clock::Floating, |row| {
        mix64(row.sid ^ seed)
    });
    rows.into_iter()
        .skip(query.offset)
        .take(query.limit)
        .collect()
}

fn render(dataset: &Dataset, query: &SodaQuery, format: Format, data: bool) -> Response {
    let (names, types, rows, body) = match &query.selection {
        Selection::Count(alias) => {
            let count = filter_rows(dataset, query.filter.as_ref(), Clock::Floating).len();
            let body = match format {
                Format::Json => json!([{alias.as_str(): count.to_string()}]).to_string(),
                Format::Csv => format!("\"{alias}\"\n\"{count}\"\n"),
            };
            (vec![alias.clone()], vec!["number"], 1, body)
        }
        Selection::Fields(fields) => {
            let rows = select_rows(dataset, query);
            let names: Vec<String> = fields.iter().map(|(n, _)| n.clone()).collect();
            let body = match format {
                Format::Json => json_rows(rows.iter().copied(), &names, |row, i| {
                    json_value(dataset, row, fields[i].1)
                }),
                Format::Csv => {
                    let mut writer = csv::WriterBuilder::new()
                        .quote_style(csv::QuoteStyle::Always)
                        .from_writer(Vec::new());
                    writer.write_record(&names).expect("writing to memory");
                    for row in &rows {
                        let cells = fields.iter().map(|(_, key)| csv_value(dataset, row, *key));
                        writer.write_record(cells).expect("writing to memory");
                    }
                    String::from_utf8(writer.into_inner().expect("writing to memory"))
                        .expect("UTF-8 values")
                }
            };
            (
                names,
                fields.iter().map(|(_, k)| type_name(dataset, *k)).collect(),
                rows.len(),
                body,
            )
        }
    };
    let content_type = match format {
        Format::Json => "application/json;charset=utf-8",
        Format::Csv => "text/csv; charset=utf-8",
    };
    let header = |value: String| HeaderValue::from_str(&value).expect("ASCII header value");
    let mut response = (StatusCode::OK, [(CONTENT_TYPE, content_type)], body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        HeaderName::from_static("x-soda2-fields"),
        header(Json::from(names).to_string()),
    );
    headers.insert(
        HeaderName::from_static("x-soda2-types"),
        header(Json::from(types).to_string()),
    );
    headers.insert(LAST_MODIFIED, header(http_date(dataset.modified_at())));
    headers.insert(ETAG, header(dataset.etag()));
    if data {
        response.extensions_mut().insert(Served { rows });
    }
    response
}
