//! An emulator of one ArcGIS REST FeatureServer point layer, for paging edge cases and faults
//! (the happy path is also covered by a real Koop server).
//!
//! Endpoints under `/arcgis/rest/services/{service}/FeatureServer`:
//! - `` (service info) and `/0` (layer info: fields, `maxRecordCount`,
//!   `advancedQueryCapabilities.supportsPagination`, `editFieldsInfo`, `editingInfo.lastEditDate`).
//! - `/0/query`: `where`, `objectIds`, `outFields`, `orderByFields`, `resultOffset`,
//!   `resultRecordCount`, `returnGeometry`, `returnCountOnly`, `returnIdsOnly`,
//!   `f=json|pjson|geojson`.
//!
//! Behaviour kept from the real service:
//! - Field names are the CSV labels with other characters turned into `_` (`Received_DtTm`),
//!   plus `OBJECTID` (the row number) and `EditDate` (the row's update time). Dates are epoch
//!   milliseconds UTC (the source's local times converted from America/Los_Angeles).
//! - A page holds `min(resultRecordCount, maxRecordCount)` features; `exceededTransferLimit:
//!   true` is present while more features follow (in GeoJSON as top-level
//!   `properties.exceededTransferLimit`) and absent on the last page. Without
//!   `resultOffset`, a query answers the first `maxRecordCount` features with the flag set.
//! - With [`ArcGisOptions::quirk_empty_last_page`], the first request for a later page answers
//!   no features yet `exceededTransferLimit: true` (the documented "extreme case" of spatial
//!   index filtering): a correct client advances its offset by the features it received and
//!   keeps going while the flag is set; the next request for the same offset gets the rows.
//! - `returnIdsOnly` and `returnCountOnly` are not limited by `maxRecordCount`; layers without
//!   pagination are read by chunks of `objectIds`.
//! - Errors come with HTTP 200 and a body
//!   `{"error": {"code": 400, "message": "Unable to complete operation.", "details": [...]}}`.
//! - `where` accepts `1=1`, comparisons with numbers, `'strings'`, `timestamp 'YYYY-MM-DD
//!   HH:MM:SS'` and `date 'YYYY-MM-DD'` (UTC) or epoch-millisecond numbers for date fields,
//!   `IS [NOT] NULL`, `AND`, `OR`, `NOT`; field names are case-insensitive.

use std::collections::HashSet;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use http::StatusCode;
use serde_json::{Value as Json, json};

use crate::dataset::{ColumnKind, Dataset, Row, SharedDataset, local_to_utc};
use crate::fault::{FaultPlan, apply_fault};
use crate::log::Served;
use crate::query::{
    self, Clock, Dialect, Filter, Key, Literal, SortKey, TimeLiteral, convert_literal, filter_rows,
    key_kind, parse_order_list, parse_time_literal, sort_rows,
};
use crate::server::{
    ObjectWriter, TestServer, json_response, param, raw_json_response, with_raw_member,
};

/// Settings of an ArcGIS FeatureServer emulator.
#[derive(Debug, Clone)]
pub struct ArcGisOptions {
    pub service_name: String,
    /// The most features one query returns.
    pub max_record_count: usize,
    /// Whether `resultOffset`/`resultRecordCount` are accepted.
    pub supports_pagination: bool,
    /// Answer one later page empty but flagged `exceededTransferLimit` (see the module docs).
    pub quirk_empty_last_page: bool,
}

impl Default for ArcGisOptions {
    fn default() -> Self {
        ArcGisOptions {
            service_name: "FireCalls".into(),
            max_record_count: 2000,
            supports_pagination: true,
            quirk_empty_last_page: false,
        }
    }
}

struct Emulator {
    dataset: SharedDataset,
    faults: FaultPlan,
    options: ArcGisOptions,
    quirk_spent: AtomicBool,
}

/// Starts an ArcGIS FeatureServer emulator on 127.0.0.1.
pub async fn start(dataset: SharedDataset, options: ArcGisOptions) -> TestServer {
    let faults = FaultPlan::new();
    let emulator = Arc::new(Emulator {
        dataset: dataset.clone(),
        faults: faults.clone(),
        options,
        quirk_spent: AtomicBool::new(false),
    });
    let router = Router::new()
        .route(
            "/arcgis/rest/services/{service}/FeatureServer",
            get(service_info),
        )
        .route(
            "/arcgis/rest/services/{service}/FeatureServer/{layer}",
            get(layer_info),
        )
        .route(
            "/arcgis/rest/services/{service}/FeatureServer/{layer}/query",
            get(query_layer),
        )
        .with_state(emulator);
    TestServer::start(router, dataset, faults).await
}

/// The object id field name.
pub const OBJECT_ID_FIELD: &str = "OBJECTID";
/// The edit-date field name.
pub const EDIT_DATE_FIELD: &str = "EditDate";

/// The ArcGIS name of a column label: `Neighborhood  District` → `Neighborhood_District`.
pub fn arcgis_name(label: &str) -> String {
    let mut name = String::new();
    for c in label.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c);
        } else if !name.is_empty() && !name.ends_with('_') {
            name.push('_');
        }
    }
    name.trim_end_matches('_').to_owned()
}

fn arcgis_error(details: impl Into<String>) -> Response {
    json_response(
        StatusCode::OK,
        &json!({"error": {"code": 400, "message": "Unable to complete operation.", "details": [details.into()]}}),
    )
}

fn invalid_field(name: &str) -> String {
    format!("'Invalid field: {name}' parameter is invalid")
}

struct Field {
    name: String,
    alias: String,
    key: Key,
    esri_type: &'static str,
    length: Option<u32>,
}

fn layer_fields(dataset: &Dataset) -> Vec<Field> {
    let mut fields = vec![Field {
        name: OBJECT_ID_FIELD.into(),
        alias: OBJECT_ID_FIELD.into(),
        key: Key::Sid,
        esri_type: "esriFieldTypeOID",
        length: None,
    }];
    for (i, column) in dataset.columns().iter().enumerate() {
        let fits_integer = || {
            dataset
                .rows()
                .iter()
                .all(|r| r.get(i).is_none_or(|v| v.parse::<i32>().is_ok()))
        };
        let (esri_type, length) = match column.kind {
            ColumnKind::Point => continue,
            ColumnKind::Text => ("esriFieldTypeString", Some(256)),
            ColumnKind::Boolean => ("esriFieldTypeString", Some(5)),
            ColumnKind::Number if column.integer && fits_integer() => {
                ("esriFieldTypeInteger", None)
            }
            ColumnKind::Number => ("esriFieldTypeDouble", None),
            ColumnKind::Timestamp => ("esriFieldTypeDate", Some(8)),
        };
        fields.push(Field {
            name: arcgis_name(&column.label),
            alias: column.label.clone(),
            key: Key::Column(i),
            esri_type,
            length,
        });
    }
    fields.push(Field {
        name: EDIT_DATE_FIELD.into(),
        alias: EDIT_DATE_FIELD.into(),
        key: Key::UpdatedAt,
        esri_type: "esriFieldTypeDate",
        length: Some(8),
    });
    fields
}

fn field_json(field: &Field) -> Json {
    let mut json = json!({"name": field.name, "type": field.esri_type, "alias": field.alias});
    if let Some(length) = field.length {
        json["length"] = Json::from(length);
    }
    json
}

fn point_column(dataset: &Dataset) -> Option<usize> {
    dataset
        .columns()
        .iter()
        .position(|c| c.kind == ColumnKind::Point)
}

fn attribute(dataset: &Dataset, row: &Row, key: Key) -> Json {
    match key {
        Key::Sid => Json::from(row.sid),
        Key::UpdatedAt => Json::from(row.updated_at * 1000),
        Key::Column(i) => {
            let Some(text) = row.get(i) else {
                return Json::Null;
            };
            match dataset.columns()[i].kind {
                ColumnKind::Number => serde_json::from_str(text).unwrap_or(Json::Null),
                ColumnKind::Timestamp => row.timestamp(i).map_or(Json::Null, |t| {
                    Json::from(local_to_utc(t).timestamp_millis())
                }),
                _ => Json::from(text),
            }
        }
        Key::RowId | Key::CreatedAt => Json::Null,
    }
}

fn service_matches(emulator: &Emulator, service: &str, layer: Option<&str>) -> bool {
    service == emulator.options.service_name && layer.is_none_or(|l| l == "0")
}

async fn service_info(
    State(emulator): State<Arc<Emulator>>,
    Path(service): Path<String>,
) -> Response {
    if !service_matches(&emulator, &service, None) {
        return arcgis_error("Invalid URL");
    }
    json_response(
        StatusCode::OK,
        &json!({
            "currentVersion": 10.91,
            "serviceDescription": "",
            "maxRecordCount": emulator.options.max_record_count,
            "supportedQueryFormats": "JSON, geoJSON",
            "capabilities": "Query",
            "layers": [{"id": 0, "name": emulator.options.service_name, "geometryType": "esriGeometryPoint"}],
            "tables": [],
        }),
    )
}

async fn layer_info(
    State(emulator): State<Arc<Emulator>>,
    Path((service, layer)): Path<(String, String)>,
) -> Response {
    if !service_matches(&emulator, &service, Some(&layer)) {
        return arcgis_error("Invalid URL");
    }
    let dataset = emulator.dataset.read().expect("dataset lock");
    let options = &emulator.options;
    json_response(
        StatusCode::OK,
        &json!({
            "currentVersion": 10.91,
            "id": 0,
            "name": options.service_name,
            "type": "Feature Layer",
            "geometryType": "esriGeometryPoint",
            "objectIdField": OBJECT_ID_FIELD,
            "displayField": "Call_Type",
            "maxRecordCount": options.max_record_count,
            "capabilities": "Query",
            "supportedQueryFormats": "JSON, geoJSON",
            "advancedQueryCapabilities": {
                "supportsPagination": options.supports_pagination,
                "supportsOrderBy": true,
                "supportsDistinct": true,
                "supportsReturningQueryExtent": false,
            },
            "editFieldsInfo": {"editDateField": EDIT_DATE_FIELD},
            "editingInfo": {"lastEditDate": dataset.modified_at() * 1000},
            "fields": layer_fields(&dataset).iter().map(field_json).collect::<Vec<_>>(),
        }),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    GeoJson,
}

enum Answer {
    Count,
    Ids,
    Features {
        out: Vec<usize>,
        geometry: bool,
        format: Format,
        offset: Option<usize>,
        count: usize,
    },
}

struct LayerQuery {
    filter: Option<Filter>,
    object_ids: Option<HashSet<u64>>,
    order: Vec<SortKey>,
    answer: Answer,
}

fn flag(params: &[(String, String)], name: &str) -> bool {
    param(params, name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn parse_query(
    dataset: &Dataset,
    fields: &[Field],
    params: &[(String, String)],
    options: &ArcGisOptions,
) -> Result<LayerQuery, String> {
    let find = |name: &str| {
        fields
            .iter()
            .position(|f| f.name.eq_ignore_ascii_case(name.trim()))
    };
    let filter = match param(params, "where").map(str::trim) {
        None | Some("") => None,
        Some(text) => {
            let parsed = query::parse(text, Dialect::default())
                .map_err(|_| "'where' parameter is invalid".to_owned())?;
            Some(parsed.bind(
                &mut |ident| {
                    find(&ident.name)
                        .map(|i| fields[i].key)
                        .ok_or_else(|| invalid_field(&ident.name))
                },
                &mut |key, literal| where_literal(dataset, key, literal),
            )?)
        }
    };
    let object_ids = match param(params, "objectIds").map(str::trim) {
        None | Some("") => None,
        Some(list) => Some(
            list.split(',')
                .map(|id| id.trim().parse::<u64>())
                .collect::<Result<HashSet<_>, _>>()
                .map_err(|_| "'objectIds' parameter is invalid".to_owned())?,
        ),
    };
    let order = match param(params, "orderByFields").map(str::trim) {
        None | Some("") => Vec::new(),
        Some(text) => parse_order_list(text)
            .map_err(|_| "'orderByFields' parameter is invalid".to_owned())?
            .into_iter()
            .map(|(name, descending)| {
                find(&name)
                    .map(|i| SortKey {
                        key: fields[i].key,
                        descending,
                    })
                    .ok_or_else(|| invalid_field(&name))
            })
            .collect::<Result<_, _>>()?,
    };
    let answer = if flag(params, "returnCountOnly") {
        Answer::Count
    } else if flag(params, "returnIdsOnly") {
        Answer::Ids
    } else {
        let format = match param(params, "f").unwrap_or("json") {
            "json" | "pjson" => Format::Json,
            "geojson" => Format::GeoJson,
            _ => return Err("'f' parameter is invalid".into()),
        };
        let out = match param(params, "outFields").map(str::trim) {
            None | Some("") => vec![0],
            Some("*") => (0..fields.len()).collect(),
            Some(list) => list
                .split(',')
                .map(|n| find(n).ok_or_else(|| invalid_field(n.trim())))
                .collect::<Result<_, _>>()?,
        };
        let number = |name: &str| -> Result<Option<usize>, String> {
            param(params, name)
                .filter(|v| !v.trim().is_empty())
                .map(|v| {
                    v.trim()
                        .parse::<usize>()
                        .map_err(|_| format!("'{name}' parameter is invalid"))
                })
                .transpose()
        };
        let offset = number("resultOffset")?;
        let requested = number("resultRecordCount")?;
        if !options.supports_pagination && (offset.is_some() || requested.is_some()) {
            return Err("Pagination is not supported.".into());
        }
        let count = requested
            .unwrap_or(options.max_record_count)
            .min(options.max_record_count);
        let geometry =
            param(params, "returnGeometry").is_none_or(|v| !v.eq_ignore_ascii_case("false"));
        Answer::Features {
            out,
            geometry,
            format,
            offset,
            count,
        }
    };
    Ok(LayerQuery {
        filter,
        object_ids,
        order,
        answer,
    })
}

fn where_literal(dataset: &Dataset, key: Key, literal: Literal) -> Result<query::Scalar, String> {
    let (kind, _) = key_kind(dataset, key);
    convert_literal(kind, literal, |lit| match lit {
        Literal::Number(ms) => ms
            .parse::<f64>()
            .ok()
            .map(|ms| (ms / 1000.0).floor() as i64),
        Literal::Text(s) | Literal::Typed { text: s, .. } => match parse_time_literal(s)? {
            TimeLiteral::Floating(t) => Some(t.and_utc().timestamp()),
            TimeLiteral::Instant(t) => Some(t.timestamp()),
        },
        Literal::Bool(_) => None,
    })
    .map_err(|_| "'where' parameter is invalid".to_owned())
}

async fn query_layer(
    State(emulator): State<Arc<Emulator>>,
    Path((service, layer)): Path<(String, String)>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    if !service_matches(&emulator, &service, Some(&layer)) {
        return arcgis_error("Invalid URL");
    }
    let (fields, query) = {
        let dataset = emulator.dataset.read().expect("dataset lock");
        let fields = layer_fields(&dataset);
        match parse_query(&dataset, &fields, &params, &emulator.options) {
            Ok(query) => (fields, query),
            Err(details) => return arcgis_error(details),
        }
    };
    if !matches!(query.answer, Answer::Features { .. }) {
        let dataset = emulator.dataset.read().expect("dataset lock");
        let ids: Vec<u64> = matching(&dataset, &query).iter().map(|r| r.sid).collect();
        let body = match query.answer {
            Answer::Count => json!({"count": ids.len()}),
            _ => json!({"objectIdFieldName": OBJECT_ID_FIELD, "objectIds": ids}),
        };
        return json_response(StatusCode::OK, &body);
    }
    let shared = emulator.dataset.clone();
    let state = emulator.clone();
    apply_fault(&emulator.faults, Some(&emulator.dataset), || async move {
        let dataset = shared.read().expect("dataset lock");
        features(&dataset, &fields, &query, &state)
    })
    .await
}

fn matching<'a>(dataset: &'a Dataset, query: &LayerQuery) -> Vec<&'a Row> {
    let mut rows = filter_rows(dataset, query.filter.as_ref(), Clock::Utc);
    if let Some(ids) = &query.object_ids {
        rows.retain(|row| ids.contains(&row.sid));
    }
    sort_rows(dataset, &mut rows, &query.order, Clock::Utc, |row| row.sid);
    rows
}

fn features(
    dataset: &Dataset,
    fields: &[Field],
    query: &LayerQuery,
    emulator: &Emulator,
) -> Response {
    let Answer::Features {
        out,
        geometry,
        format,
        offset,
        count,
    } = &query.answer
    else {
        unreachable!("only feature queries reach here")
    };
    let rows = matching(dataset, query);
    let start = offset.unwrap_or(0);
    let quirk = emulator.options.quirk_empty_last_page
        && start > 0
        && start < rows.len()
        && !emulator.quirk_spent.swap(true, Ordering::SeqCst);
    let page: Vec<&Row> = if quirk {
        Vec::new()
    } else {
        rows.iter().skip(start).take(*count).copied().collect()
    };
    let exceeded = quirk || start + page.len() < rows.len();
    let point = point_column(dataset);
    let location = |row: &Row| point.and_then(|i| row.point(i));
    let writer = ObjectWriter::new(out.iter().map(|&i| &fields[i].name));
    let mut list = String::from("[");
    for (n, row) in page.iter().enumerate() {
        if n > 0 {
            list.push(',');
        }
        let shape = match (location(row), format) {
            (_, _) if !geometry => None,
            (Some((lat, lon)), Format::Json) => Some(json!({"x": lon, "y": lat})),
            (Some((lat, lon)), Format::GeoJson) => {
                Some(json!({"type": "Point", "coordinates": [lon, lat]}))
            }
            (None, _) => Some(Json::Null),
        };
        let attributes = |j: usize| Some(attribute(dataset, row, fields[out[j]].key));
        match format {
            Format::Json => {
                list.push_str("{\"attributes\":");
                writer.write(&mut list, attributes);
                if let Some(shape) = shape {
                    let _ = write!(list, ",\"geometry\":{shape}");
                }
            }
            Format::GeoJson => {
                let shape = shape.unwrap_or(Json::Null);
                let _ = write!(
                    list,
                    "{{\"type\":\"Feature\",\"id\":{},\"geometry\":{shape},\"properties\":",
                    row.sid
                );
                writer.write(&mut list, attributes);
            }
        }
        list.push('}');
    }
    list.push(']');
    let mut envelope = match format {
        Format::Json => json!({
            "objectIdFieldName": OBJECT_ID_FIELD,
            "uniqueIdField": {"name": OBJECT_ID_FIELD, "isSystemMaintained": true},
            "globalIdFieldName": "",
            "geometryType": "esriGeometryPoint",
            "spatialReference": {"wkid": 4326, "latestWkid": 4326},
            "fields": out.iter().map(|&i| field_json(&fields[i])).collect::<Vec<_>>(),
        }),
        Format::GeoJson => json!({"type": "FeatureCollection"}),
    };
    if exceeded {
        match format {
            Format::Json => envelope["exceededTransferLimit"] = Json::from(true),
            Format::GeoJson => envelope["properties"] = json!({"exceededTransferLimit": true}),
        }
    }
    let mut response = raw_json_response(
        StatusCode::OK,
        with_raw_member(&envelope, "features", &list),
    );
    response
        .extensions_mut()
        .insert(Served { rows: page.len() });
    response
}
