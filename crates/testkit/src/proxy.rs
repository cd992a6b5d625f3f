//! A fault-injecting reverse proxy in front of a real server (Datasette, Koop).
//!
//! [`start`] binds 127.0.0.1 at an OS-picked port and forwards every request (method, path,
//! query, body and end-to-end headers) to the upstream, returning its answer. Data requests
//! (see [`is_data_request`]) go through the shared [`crate::fault::apply_fault`], so the
//! proxy misbehaves exactly like the emulators under the same [`FaultPlan`]; every request is
//! recorded in the [`RequestLog`] by the same middleware the emulators use, with the number
//! of rows in each data response.
//!
//! Absolute upstream URLs in response bodies and `Location` headers (Datasette's `next_url`)
//! are rewritten to the proxy's base URL, so a client that follows them stays behind the
//! proxy. The proxy asks the upstream for uncompressed bodies so it can do that.
//!
//! [`Fault::MutateAfterServe`](crate::fault::Fault::MutateAfterServe) has no dataset to
//! change behind a real server: it serves normally. To change rows between pages, change the
//! upstream's source (the SQLite file, the GeoJSON file) from the test.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::fault::{FaultPlan, apply_fault};
use crate::log::{RequestLog, Served, record_requests};

/// Decides whether a request (path, decoded query) is a data request: subject to faults and
/// logged with `data: true`.
pub type DataRequestFilter = fn(&str, &[(String, String)]) -> bool;

/// Settings for [`start_with`].
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// Which requests are data requests. Default [`is_data_request`].
    pub is_data_request: DataRequestFilter,
    /// Rewrite the upstream's absolute URLs in bodies and `Location` to the proxy's. Default
    /// true.
    pub rewrite_urls: bool,
    /// Upper bound on one upstream exchange. Default 120 s.
    pub upstream_timeout: Duration,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            is_data_request,
            rewrite_urls: true,
            upstream_timeout: Duration::from_secs(120),
        }
    }
}

/// A running proxy; dropping it shuts it down.
#[derive(Debug)]
pub struct Proxy {
    pub addr: SocketAddr,
    pub log: RequestLog,
    pub faults: FaultPlan,
    upstream: String,
    shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<()>,
}

impl Proxy {
    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The base URL followed by `path_and_query` (which starts with `/`).
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base_url())
    }

    /// The upstream base URL, without a trailing `/`.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// Translates an upstream URL (e.g. one a server helper built) to the same URL through
    /// the proxy. URLs of other origins are returned unchanged.
    pub fn proxied(&self, upstream_url: &str) -> String {
        match upstream_url.strip_prefix(&self.upstream) {
            Some(rest) if rest.is_empty() || rest.starts_with(['/', '?']) => {
                format!("{}{rest}", self.base_url())
            }
            _ => upstream_url.to_owned(),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.handle.abort();
    }
}

/// Starts a proxy to `upstream` (`http://127.0.0.1:PORT`, optionally with a path prefix) with
/// the default [`ProxyOptions`].
///
/// # Panics
/// When no local port can be bound or `upstream` is not an `http://` URL.
pub async fn start(upstream: &str, faults: FaultPlan, log: RequestLog) -> Proxy {
    start_with(upstream, faults, log, ProxyOptions::default()).await
}

/// Starts a proxy to `upstream` with `options`.
///
/// # Panics
/// When no local port can be bound or `upstream` is not an `http://` URL.
pub async fn start_with(
    upstream: &str,
    faults: FaultPlan,
    log: RequestLog,
    options: ProxyOptions,
) -> Proxy {
    let upstream = upstream.trim_end_matches('/').to_owned();
    assert!(
        upstream.starts_with("http://"),
        "proxy upstream must be an http:// URL, got {upstream}"
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("bound address");
    let client = reqwest::Client::builder()
        .no_proxy()
        .no_gzip()
        .no_deflate()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(options.upstream_timeout)
        .build()
        .expect("HTTP client");
    let state = Arc::new(ProxyState {
        upstream: upstream.clone(),
        base_url: format!("http://{addr}"),
        client,
        faults: faults.clone(),
        options,
    });
    let app = Router::new()
        .fallback(forward)
        .with_state(state)
        .layer(from_fn_with_state(log.clone(), record_requests));
    let (shutdown, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    Proxy {
        addr,
        log,
        faults,
        upstream,
        shutdown: Some(shutdown),
        handle,
    }
}

struct ProxyState {
    upstream: String,
    base_url: String,
    client: reqwest::Client,
    faults: FaultPlan,
    options: ProxyOptions,
}

async fn forward(State(state): State<Arc<ProxyState>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let query = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(request.uri())
        .map(|q| q.0)
        .unwrap_or_default();
    if (state.options.is_data_request)(&path, &query) {
        let upstream = Arc::clone(&state);
        apply_fault(&state.faults, None, move || async move {
            let response = exchange(&upstream, request).await;
            mark_rows(response).await
        })
        .await
    } else {
        exchange(&state, request).await
    }
}

/// Sends `request` upstream and turns the answer into the proxy's response.
async fn exchange(state: &ProxyState, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let url = format!("{}{path_and_query}", state.upstream);
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(err) => return bad_gateway(format!("reading the request body: {err}")),
    };
    let mut upstream_request = state.client.request(parts.method.clone(), &url);
    for (name, value) in &parts.headers {
        if forwardable_request_header(name) {
            upstream_request = upstream_request.header(name, value);
        }
    }
    if !body.is_empty() {
        upstream_request = upstream_request.body(body);
    }
    let upstream_response = match upstream_request.send().await {
        Ok(response) => response,
        Err(err) => return bad_gateway(format!("{} {url}: {err}", parts.method)),
    };
    let status = upstream_response.status();
    let headers = upstream_response.headers().clone();
    let body = match upstream_response.bytes().await {
        Ok(body) => body,
        Err(err) => return bad_gateway(format!("reading {url}: {err}")),
    };

    let rewrite = state.options.rewrite_urls;
    let body = if rewrite && is_textual(&headers) && !headers.contains_key(header::CONTENT_ENCODING)
    {
        rewrite_body(body, &state.upstream, &state.base_url)
    } else {
        body
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    for (name, value) in &headers {
        if !forwardable_response_header(name) {
            continue;
        }
        let value = if rewrite && name == header::LOCATION {
            value
                .to_str()
                .ok()
                .map(|v| replace_origin(v, &state.upstream, &state.base_url))
                .and_then(|v| HeaderValue::from_str(&v).ok())
                .unwrap_or_else(|| value.clone())
        } else {
            value.clone()
        };
        response.headers_mut().append(name, value);
    }
    response
}

/// Adds the [`Served`] extension with the number of rows in the (buffered) body.
async fn mark_rows(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let rows = if parts.status.is_success() {
        count_rows(&parts.headers, &bytes)
    } else {
        0
    };
    parts.extensions.insert(Served { rows });
    Response::from_parts(parts, Body::from(bytes))
}

fn bad_gateway(message: String) -> Response {
    (StatusCode::BAD_GATEWAY, format!("proxy: {message}")).into_response()
}

/// Hop-by-hop headers, and those the proxy sets itself.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
    )
}

fn forwardable_request_header(name: &HeaderName) -> bool {
    // Host comes from the upstream URL; Accept-Encoding is dropped so bodies come back plain.
    !is_hop_by_hop(name) && name != header::HOST && name != header::ACCEPT_ENCODING
}

fn forwardable_response_header(name: &HeaderName) -> bool {
    !is_hop_by_hop(name)
}

fn is_textual(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let content_type = content_type.to_ascii_lowercase();
    content_type.contains("json")
        || content_type.starts_with("text/")
        || content_type.contains("javascript")
        || content_type.contains("xml")
}

fn rewrite_body(body: Bytes, upstream: &str, base_url: &str) -> Bytes {
    match std::str::from_utf8(&body) {
        Ok(text) if text.contains(upstream) => {
            Bytes::from(replace_origin(text, upstream, base_url))
        }
        _ => body,
    }
}

/// Replaces `upstream` by `base_url` where it is a whole origin: followed by `/`, `?`, `#`,
/// a quote, whitespace or the end (so `http://127.0.0.1:80` does not match inside
/// `http://127.0.0.1:8080`).
fn replace_origin(text: &str, upstream: &str, base_url: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(upstream) {
        let after = &rest[at + upstream.len()..];
        let whole = after.chars().next().is_none_or(|c| {
            matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>') || c.is_whitespace()
        });
        out.push_str(&rest[..at]);
        out.push_str(if whole { base_url } else { upstream });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Whether a request for `path` with `query` fetches data (rows or features) rather than
/// metadata or a count. The default proxy filter:
///
/// * Datasette: `/<db>/<table>.json|.csv` unless `_size=0`; `/<db>.json|.csv` with `sql=`.
///   Not `/<db>.json` (table list), nor `/-/...` (server information).
/// * ArcGIS / Koop: `.../query` unless `returnCountOnly` or `returnIdsOnly` is true. Not the
///   service or layer info.
pub fn is_data_request(path: &str, query: &[(String, String)]) -> bool {
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let is_true = |name: &str| param(name).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if path.starts_with("/-/") {
        return false;
    }
    if path.ends_with("/query") {
        return !is_true("returnCountOnly") && !is_true("returnIdsOnly");
    }
    if path.contains("/FeatureServer") || path.contains("/MapServer") {
        return false;
    }
    let Some(stem) = path
        .strip_suffix(".json")
        .or_else(|| path.strip_suffix(".csv"))
    else {
        return false;
    };
    match stem.trim_start_matches('/').split('/').count() {
        1 => param("sql").is_some(),
        2 => param("_size") != Some("0"),
        _ => false,
    }
}

/// Rows in a data response body: the length of `rows` (Datasette), `features` (ArcGIS,
/// GeoJSON) or of a top-level array (Datasette's `_shape=array`); for CSV, the records after
/// the header line. 0 for anything else.
pub fn count_rows(headers: &HeaderMap, body: &[u8]) -> usize {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.contains("csv") {
        return csv::Reader::from_reader(body)
            .records()
            .filter(|r| r.is_ok())
            .count();
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Array(items)) => items.len(),
        Ok(serde_json::Value::Object(object)) => ["rows", "features"]
            .iter()
            .find_map(|key| object.get(*key).and_then(|v| v.as_array()).map(Vec::len))
            .unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn classifies_datasette_requests() {
        assert!(is_data_request(
            "/calls/calls.json",
            &q(&[("_size", "1000")])
        ));
        assert!(is_data_request("/calls/calls.csv", &[]));
        assert!(!is_data_request("/calls/calls.json", &q(&[("_size", "0")])));
        assert!(!is_data_request("/calls.json", &[]));
        assert!(is_data_request("/calls.json", &q(&[("sql", "select 1")])));
        assert!(!is_data_request("/-/versions.json", &[]));
    }

    #[test]
    fn classifies_arcgis_requests() {
        let query = "/file-geojson/rest/services/calls/FeatureServer/0/query";
        assert!(is_data_request(query, &q(&[("resultOffset", "0")])));
        assert!(!is_data_request(query, &q(&[("returnCountOnly", "true")])));
        assert!(!is_data_request(query, &q(&[("returnIdsOnly", "true")])));
        assert!(!is_data_request(
            "/file-geojson/rest/services/calls/FeatureServer/0",
            &[]
        ));
        assert!(!is_data_request(
            "/file-geojson/rest/services/calls/FeatureServer",
            &[]
        ));
    }

    #[test]
    fn counts_rows() {
        let mut json = HeaderMap::new();
        json.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert_eq!(count_rows(&json, br#"{"rows": [{}, {}], "next": null}"#), 2);
        assert_eq!(count_rows(&json, br#"{"features": [{}, {}, {}]}"#), 3);
        assert_eq!(count_rows(&json, br#"[{}, {}]"#), 2);
        assert_eq!(count_rows(&json, br#"{"count": 5}"#), 0);
        let mut csv = HeaderMap::new();
        csv.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        assert_eq!(count_rows(&csv, b"a,b\n1,2\n3,\"x\ny\"\n"), 2);
    }

    #[test]
    fn rewrites_upstream_urls() {
        let body =
            Bytes::from_static(br#"{"next_url": "http://127.0.0.1:1234/db/t.json?_next=5"}"#);
        let out = rewrite_body(body, "http://127.0.0.1:1234", "http://127.0.0.1:9");
        assert_eq!(
            &out[..],
            br#"{"next_url": "http://127.0.0.1:9/db/t.json?_next=5"}"#
        );
        assert_eq!(
            replace_origin(
                "http://127.0.0.1:12345/a http://127.0.0.1:1234",
                "http://127.0.0.1:1234",
                "P"
            ),
            "http://127.0.0.1:12345/a P"
        );
    }
}
