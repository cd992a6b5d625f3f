//! A plain web server of documents made from the dataset, for the `http` connector: the
//! same rows as CSV, a JSON array, a JSON array inside an envelope, NDJSON and GeoJSON.
//!
//! - `/fire.csv`, `/fire.json`, `/fire.ndjson`, `/fire.geojson`, `/wrapped.json`
//!   (`{"result": {"records": [...]}}`) and `/noext` (CSV without an extension, typed by
//!   `Content-Type` only). Keys are the CSV labels; JSON values are the canonical text.
//! - Every response carries `ETag` and `Last-Modified` from the dataset's modification state,
//!   and answers `If-None-Match` / `If-Modified-Since` with `304 Not Modified`, as static file
//!   servers and CDNs do.
//! - Faults from the shared plan apply to every document request.

use crate::dataset::{Dataset, SharedDataset};
use crate::fault::{FaultPlan, apply_fault};
use crate::log::Served;
use crate::server::{TestServer, http_date, not_modified};
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header::{CONTENT_TYPE, ETAG, LAST_MODIFIED};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Map, Value as Json, json};
use std::sync::Arc;

struct Files {
    dataset: SharedDataset,
    faults: FaultPlan,
}

/// Starts the document server on 127.0.0.1.
pub async fn start(dataset: SharedDataset) -> TestServer {
    let faults = FaultPlan::new();
    let state = Arc::new(Files {
        dataset: dataset.clone(),
        faults: faults.clone(),
    });
    let router = Router::new()
        .route("/{name}", get(document))
        .with_state(state);
    TestServer::start(router, dataset, faults).await
}

fn objects(dataset: &Dataset) -> Vec<Map<String, Json>> {
    dataset
        .rows()
        .iter()
        .map(|row| {
            dataset
                .columns()
                .iter()
                .zip(&row.values)
                .filter_map(|(c, v)| Some((c.label.clone(), Json::from(v.clone()?))))
                .collect()
        })
        .collect()
}

async fn document(
    State(files): State<Arc<Files>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let files2 = files.clone();
    apply_fault(&files.faults, Some(&files.dataset), || async move {
        let dataset = files2.dataset.read().expect("dataset lock").clone();
        let (content_type, body) = match name.as_str() {
            "fire.csv" | "noext" => ("text/csv; charset=utf-8", dataset.to_csv_string()),
            "fire.json" => (
                "application/json",
                Json::from(
                    objects(&dataset)
                        .into_iter()
                        .map(Json::Object)
                        .collect::<Vec<_>>(),
                )
                .to_string(),
            ),
            "wrapped.json" => (
                "application/json",
                json!({"success": true, "result": {"records": objects(&dataset)}}).to_string(),
            ),
            "fire.ndjson" => (
                "application/x-ndjson",
                objects(&dataset)
                    .into_iter()
                    .map(|o| Json::Object(o).to_string() + "\n")
                    .collect(),
            ),
            "fire.geojson" => {
                let location = dataset.label_index("Location");
                let features: Vec<Json> = dataset
                    .rows()
                    .iter()
                    .zip(objects(&dataset))
                    .map(|(row, props)| {
                        let geometry = location.and_then(|i| row.point(i)).map_or(
                            Json::Null,
                            |(lat, lon)| json!({"type": "Point", "coordinates": [lon, lat]}),
                        );
                        json!({"type": "Feature", "properties": props, "geometry": geometry})
                    })
                    .collect();
                (
                    "application/geo+json",
                    json!({"type": "FeatureCollection", "features": features}).to_string(),
                )
            }
            _ => return (StatusCode::NOT_FOUND, "404 Not Found").into_response(),
        };
        let etag = dataset.etag();
        let mut response = if not_modified(&headers, &etag, dataset.modified_at()) {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            let mut r = ([(CONTENT_TYPE, content_type)], body).into_response();
            r.extensions_mut().insert(Served {
                rows: dataset.len(),
            });
            r
        };
        let value = |v: String| HeaderValue::from_str(&v).expect("ASCII header value");
        response.headers_mut().insert(ETAG, value(etag));
        response
            .headers_mut()
            .insert(LAST_MODIFIED, value(http_date(dataset.modified_at())));
        response
    })
    .await
}
