//! An emulator of the Opendatasoft Explore API v2.1 serving one dataset.
//!
//! Endpoints under `/api/explore/v2.1/catalog/datasets/{id}`:
//! - `` (the dataset): `fields` with ODS types and `metas.default` (`modified`,
//!   `data_processed`, `records_count`, `timezone`).
//! - `/records`: `select`, `where`, `order_by`, `limit`, `offset`, `timezone`.
//! - `/exports/json` and `/exports/csv`: the whole result set in one response (same
//!   parameters; CSV is `;`-delimited unless `delimiter` says otherwise).
//!
//! Behaviour kept from the real service:
//! - Field names are the lowercase API names; values are typed: `int`/`double` as JSON
//!   numbers, `date` as `2016-12-31`, `datetime` as ISO 8601 with the offset of the requested
//!   `timezone` (UTC by default: `2017-01-01T07:57:56+00:00`), `geo_point_2d` as
//!   `{"lon", "lat"}`, empty cells as `null`.
//! - `records`: `limit` defaults to 10 and must lie in -1..=100; `offset + limit` must not
//!   exceed 10,000 ([`OdsOptions::max_window`]), so datasets larger than that are read through
//!   `exports`. Both violations are 400 `InvalidRESTParameterError`.
//! - `exports` has no ceiling, except an observed quirk kept here: with a non-zero `offset`,
//!   `offset + limit` (the row count for `limit=-1`) must not exceed the same window.
//! - Without `order_by` records come in a stable natural order.
//! - ODSQL errors (unknown field, bad syntax) are 400 `ODSQLError`. Date literals are
//!   `date'2017-01-01'` or `date'2017-01-01T00:00:00Z'`; a literal without offset is read in
//!   the request's `timezone`.
//! - The source has no row-update field, so the emulated dataset adds one: `updated`
//!   (`datetime`), each row's update time, which makes `where=updated >= date'…'`
//!   incremental reads possible. `metas.default.data_processed` moves with every mutation.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use http::StatusCode;
use http::header::CONTENT_TYPE;
use serde_json::{Value as Json, json};

use crate::dataset::{
    ColumnKind, Dataset, Row, SOURCE_TIME_ZONE, SharedDataset, local_to_utc, parse_point,
};
use crate::fault::{FaultPlan, apply_fault};
use crate::log::Served;
use crate::query::{
    self, Clock, Dialect, Filter, Key, Literal, SortKey, TimeLiteral, convert_literal, filter_rows,
    key_kind, parse_order_list, parse_time_literal, sort_rows,
};
use crate::server::{
    TestServer, json_response, json_rows, param, raw_json_response, with_raw_member,
};

/// Settings of an Opendatasoft emulator.
#[derive(Debug, Clone)]
pub struct OdsOptions {
    pub dataset_id: String,
    pub title: String,
    /// Largest `offset + limit` the records endpoint accepts (10,000 on real portals).
    pub max_window: usize,
}

impl Default for OdsOptions {
    fn default() -> Self {
        OdsOptions {
            dataset_id: "sf-fire-department-calls".into(),
            title: "Fire Department Calls for Service".into(),
            max_window: 10_000,
        }
    }
}

struct Emulator {
    dataset: SharedDataset,
    faults: FaultPlan,
    options: OdsOptions,
}

/// Starts an Opendatasoft emulator on 127.0.0.1.
pub async fn start(dataset: SharedDataset, options: OdsOptions) -> TestServer {
    let faults = FaultPlan::new();
    let emulator = Arc::new(Emulator {
        dataset: dataset.clone(),
        faults: faults.clone(),
        options,
    });
    let router = Router::new()
        .route("/api/explore/v2.1/catalog/datasets/{id}", get(dataset_info))
        .route(
            "/api/explore/v2.1/catalog/datasets/{id}/records",
            get(records),
        )
        .route(
            "/api/explore/v2.1/catalog/datasets/{id}/exports/{format}",
            get(exports),
        )
        .with_state(emulator);
    TestServer::start(router, dataset, faults).await
}

/// The field name of the added row-update datetime.
pub const UPDATED_FIELD: &str = "updated";

struct OdsError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl OdsError {
    fn odsql(message: impl Into<String>) -> Self {
        OdsError {
            status: StatusCode::BAD_REQUEST,
            code: "ODSQLError",
            message: message.into(),
        }
    }

    fn parameter(message: impl Into<String>) -> Self {
        OdsError {
            status: StatusCode::BAD_REQUEST,
            code: "InvalidRESTParameterError",
            message: message.into(),
        }
    }

    fn into_response(self) -> Response {
        json_response(
            self.status,
            &json!({"status_code": self.status.as_u16(), "error_code": self.code, "message": self.message}),
        )
    }
}

fn not_found(id: &str) -> Response {
    OdsError {
        status: StatusCode::NOT_FOUND,
        code: "NotFound",
        message: format!("Unknown dataset: {id}"),
    }
    .into_response()
}

fn fields(dataset: &Dataset) -> Vec<(String, Key)> {
    dataset
        .columns()
        .iter()
        .enumerate()
        .map(|(i, c)| (c.field.clone(), Key::Column(i)))
        .chain(std::iter::once((UPDATED_FIELD.to_owned(), Key::UpdatedAt)))
        .collect()
}

fn resolve(dataset: &Dataset, name: &str) -> Option<Key> {
    if name == UPDATED_FIELD {
        Some(Key::UpdatedAt)
    } else {
        dataset.column_index(name).map(Key::Column)
    }
}

fn ods_type(dataset: &Dataset, key: Key) -> &'static str {
    let Key::Column(i) = key else {
        return "datetime";
    };
    let column = &dataset.columns()[i];
    match column.kind {
        ColumnKind::Text => "text",
        ColumnKind::Number if column.integer => "int",
        ColumnKind::Number => "double",
        ColumnKind::Timestamp if column.date_only => "date",
        ColumnKind::Timestamp => "datetime",
        ColumnKind::Boolean => "boolean",
        ColumnKind::Point => "geo_point_2d",
    }
}

fn iso(instant: DateTime<Utc>, tz: Tz) -> String {
    instant
        .with_timezone(&tz)
        .to_rfc3339_opts(SecondsFormat::Secs, false)
}

fn ods_value(dataset: &Dataset, row: &Row, key: Key, tz: Tz) -> Json {
    let Key::Column(i) = key else {
        return Json::from(iso(
            DateTime::from_timestamp(row.updated_at, 0).unwrap_or_default(),
            tz,
        ));
    };
    let Some(text) = row.get(i) else {
        return Json::Null;
    };
    let column = &dataset.columns()[i];
    match column.kind {
        ColumnKind::Text => Json::from(text),
        ColumnKind::Number => serde_json::from_str(text).unwrap_or_else(|_| Json::from(text)),
        ColumnKind::Boolean => Json::from(text == "true"),
        ColumnKind::Point => match parse_point(text) {
            Some((lat, lon)) => json!({"lon": lon, "lat": lat}),
            None => Json::Null,
        },
        ColumnKind::Timestamp => match row.timestamp(i) {
            Some(t) if column.date_only => Json::from(t.date().to_string()),
            Some(t) => Json::from(iso(local_to_utc(t), tz)),
            None => Json::Null,
        },
    }
}

fn csv_value(value: &Json) -> String {
    match value {
        Json::Null => String::new(),
        Json::String(s) => s.clone(),
        Json::Object(point) => format!("{}, {}", point["lat"], point["lon"]),
        other => other.to_string(),
    }
}

struct OdsQuery {
    select: Vec<(String, Key)>,
    filter: Option<Filter>,
    order: Vec<SortKey>,
    tz: Tz,
    limit: Option<i64>,
    offset: usize,
}

fn parse_query(dataset: &Dataset, params: &[(String, String)]) -> Result<OdsQuery, OdsError> {
    let tz: Tz = match param(params, "timezone") {
        None => Tz::UTC,
        Some(name) => name.parse().map_err(|_| {
            OdsError::parameter(format!("Invalid value for timezone API parameter: {name}"))
        })?,
    };
    let unknown = |name: &str| OdsError::odsql(format!("Unknown field: {name}"));
    let select = match param(params, "select") {
        None => fields(dataset),
        Some(list) => {
            let mut selected = Vec::new();
            for item in list.split(',').map(|s| s.trim().trim_matches('`')) {
                if item == "*" {
                    selected.extend(fields(dataset));
                } else if item.contains('(') {
                    return Err(OdsError::odsql(format!(
                        "Unsupported select expression: {item}"
                    )));
                } else {
                    selected.push((
                        item.to_owned(),
                        resolve(dataset, item).ok_or_else(|| unknown(item))?,
                    ));
                }
            }
            selected
        }
    };
    let filter = match param(params, "where") {
        None => None,
        Some(text) => {
            let parsed = query::parse(
                text,
                Dialect {
                    double_quoted_strings: true,
                },
            )
            .map_err(|e| OdsError::odsql(format!("ODSQL query is malformed: {e}")))?;
            Some(parsed.bind(
                &mut |ident| resolve(dataset, &ident.name).ok_or_else(|| unknown(&ident.name)),
                &mut |key, literal| {
                    time_aware_literal(dataset, key, literal, tz).map_err(OdsError::odsql)
                },
            )?)
        }
    };
    let order = match param(params, "order_by") {
        None => Vec::new(),
        Some(text) => parse_order_list(text)
            .map_err(OdsError::odsql)?
            .into_iter()
            .map(|(name, descending)| {
                resolve(dataset, &name)
                    .map(|key| SortKey { key, descending })
                    .ok_or_else(|| unknown(&name))
            })
            .collect::<Result<_, _>>()?,
    };
    let integer = |name: &str| -> Result<Option<i64>, OdsError> {
        param(params, name)
            .map(|text| {
                text.trim().parse::<i64>().map_err(|_| {
                    OdsError::parameter(format!("Invalid value for {name} API parameter: {text}"))
                })
            })
            .transpose()
    };
    let limit = integer("limit")?;
    let offset = match integer("offset")? {
        Some(n) if n < 0 => {
            return Err(OdsError::parameter(format!(
                "Invalid value for offset API parameter: {n} was found but offset >= 0 is expected."
            )));
        }
        n => n.unwrap_or(0) as usize,
    };
    Ok(OdsQuery {
        select,
        filter,
        order,
        tz,
        limit,
        offset,
    })
}

fn time_aware_literal(
    dataset: &Dataset,
    key: Key,
    literal: Literal,
    tz: Tz,
) -> Result<query::Scalar, String> {
    let (kind, date_only) = key_kind(dataset, key);
    convert_literal(kind, literal, |lit| {
        let parsed = match lit {
            Literal::Text(s) | Literal::Typed { text: s, .. } => parse_time_literal(s)?,
            _ => return None,
        };
        Some(match (parsed, date_only) {
            (TimeLiteral::Floating(t), true) => {
                t.date().and_time(Default::default()).and_utc().timestamp()
            }
            (TimeLiteral::Instant(t), true) => t
                .with_timezone(&tz)
                .date_naive()
                .and_time(Default::default())
                .and_utc()
                .timestamp(),
            (TimeLiteral::Floating(t), false) => tz.from_local_datetime(&t).earliest()?.timestamp(),
            (TimeLiteral::Instant(t), false) => t.timestamp(),
        })
    })
}

fn select_rows<'a>(dataset: &'a Dataset, query: &OdsQuery) -> Vec<&'a Row> {
    let mut rows = filter_rows(dataset, query.filter.as_ref(), Clock::UtcWithFloatingDates);
    sort_rows(
        dataset,
        &mut rows,
        &query.order,
        Clock::UtcWithFloatingDates,
        |row| row.sid,
    );
    rows
}

fn records_json<'a>(
    dataset: &Dataset,
    rows: impl IntoIterator<Item = &'a Row>,
    query: &OdsQuery,
) -> String {
    let names: Vec<String> = query.select.iter().map(|(name, _)| name.clone()).collect();
    json_rows(rows, &names, |row, i| {
        Some(ods_value(dataset, row, query.select[i].1, query.tz))
    })
}

fn window_error(sum: usize, max_window: usize) -> OdsError {
    OdsError::parameter(format!(
        "Invalid value for sum of offset + limit API parameter: {sum} was found but <= {max_window} is expected."
    ))
}

async fn dataset_info(State(emulator): State<Arc<Emulator>>, Path(id): Path<String>) -> Response {
    if id != emulator.options.dataset_id {
        return not_found(&id);
    }
    let dataset = emulator.dataset.read().expect("dataset lock");
    let fields: Vec<Json> = fields(&dataset)
        .into_iter()
        .map(|(name, key)| {
            let label = match key {
                Key::Column(i) => dataset.columns()[i].label.clone(),
                _ => "Updated".to_owned(),
            };
            json!({"name": name, "label": label, "type": ods_type(&dataset, key), "description": null, "annotations": {}})
        })
        .collect();
    let modified = iso(
        DateTime::from_timestamp(dataset.modified_at(), 0).unwrap_or_default(),
        Tz::UTC,
    );
    let body = json!({
        "dataset_id": id,
        "dataset_uid": "da_sffire1",
        "has_records": !dataset.is_empty(),
        "data_visible": true,
        "features": ["timeserie", "geo", "analyze"],
        "fields": fields,
        "metas": {"default": {
            "title": emulator.options.title,
            "description": null,
            "publisher": "San Francisco Fire Department",
            "license": "ODC PDDL",
            "modified": modified,
            "data_processed": modified,
            "metadata_processed": modified,
            "records_count": dataset.len(),
            "timezone": SOURCE_TIME_ZONE.name(),
        }},
    });
    json_response(StatusCode::OK, &body)
}

async fn records(
    State(emulator): State<Arc<Emulator>>,
    Path(id): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    if id != emulator.options.dataset_id {
        return not_found(&id);
    }
    let max_window = emulator.options.max_window;
    let query = {
        let dataset = emulator.dataset.read().expect("dataset lock");
        let checked = parse_query(&dataset, &params).and_then(|query| {
            let limit = query.limit.unwrap_or(10);
            if !(-1..=100).contains(&limit) {
                return Err(OdsError::parameter(format!(
                    "Invalid value for limit API parameter: {limit} was found but -1 <= limit <= 100 is expected."
                )));
            }
            let limit = if limit == -1 { 100 } else { limit as usize };
            if query.offset + limit > max_window {
                return Err(window_error(query.offset + limit, max_window));
            }
            Ok(OdsQuery { limit: Some(limit as i64), ..query })
        });
        match checked {
            Ok(query) => query,
            Err(e) => return e.into_response(),
        }
    };
    let shared = emulator.dataset.clone();
    apply_fault(&emulator.faults, Some(&emulator.dataset), || async move {
        let dataset = shared.read().expect("dataset lock");
        let rows = select_rows(&dataset, &query);
        let total = rows.len();
        let limit = query.limit.unwrap_or(10) as usize;
        let page: Vec<&Row> = rows.into_iter().skip(query.offset).take(limit).collect();
        let served = page.len();
        let body = with_raw_member(
            &json!({"total_count": total}),
            "results",
            &records_json(&dataset, page, &query),
        );
        let mut response = raw_json_response(StatusCode::OK, body);
        response.extensions_mut().insert(Served { rows: served });
        response
    })
    .await
}

async fn exports(
    State(emulator): State<Arc<Emulator>>,
    Path((id, format)): Path<(String, String)>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    if id != emulator.options.dataset_id {
        return not_found(&id);
    }
    let csv = match format.as_str() {
        "json" => false,
        "csv" => true,
        other => {
            return OdsError::parameter(format!(
                "Unsupported export format: {other} (this server offers json, csv)"
            ))
            .into_response();
        }
    };
    let delimiter = match param(&params, "delimiter").unwrap_or(";").as_bytes() {
        [byte] => *byte,
        _ => {
            return OdsError::parameter("Invalid value for delimiter API parameter")
                .into_response();
        }
    };
    let max_window = emulator.options.max_window;
    let query = {
        let dataset = emulator.dataset.read().expect("dataset lock");
        let checked = parse_query(&dataset, &params).and_then(|query| {
            let wanted = match query.limit {
                None | Some(-1) => dataset.len(),
                Some(n) if n >= 0 => n as usize,
                Some(n) => {
                    return Err(OdsError::parameter(format!(
                        "Invalid value for limit API parameter: {n} was found but limit >= -1 is expected."
                    )));
                }
            };
            if query.offset > 0 && query.offset + wanted > max_window {
                return Err(window_error(query.offset + wanted, max_window));
            }
            Ok(query)
        });
        match checked {
            Ok(query) => query,
            Err(e) => return e.into_response(),
        }
    };
    let shared = emulator.dataset.clone();
    apply_fault(&emulator.faults, Some(&emulator.dataset), || async move {
        let dataset = shared.read().expect("dataset lock");
        let limit = match query.limit {
            Some(n) if n >= 0 => n as usize,
            _ => usize::MAX,
        };
        let rows: Vec<&Row> = select_rows(&dataset, &query)
            .into_iter()
            .skip(query.offset)
            .take(limit)
            .collect();
        let served = rows.len();
        let mut response = if csv {
            let mut writer = csv::WriterBuilder::new()
                .delimiter(delimiter)
                .from_writer(Vec::new());
            writer
                .write_record(query.select.iter().map(|(name, _)| name))
                .expect("writing to memory");
            for row in rows {
                let values = query
                    .select
                    .iter()
                    .map(|(_, key)| csv_value(&ods_value(&dataset, row, *key, query.tz)));
                writer.write_record(values).expect("writing to memory");
            }
            let body = String::from_utf8(writer.into_inner().expect("writing to memory"))
                .expect("UTF-8 values");
            (
                StatusCode::OK,
                [(CONTENT_TYPE, "text/csv; charset=utf-8")],
                body,
            )
                .into_response()
        } else {
            raw_json_response(StatusCode::OK, records_json(&dataset, rows, &query))
        };
        response.extensions_mut().insert(Served { rows: served });
        response
    })
    .await
}
