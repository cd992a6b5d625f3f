//! A record of every request a test server answered.
//!
//! Servers wrap their router with [`record_requests`] (an axum `from_fn_with_state`
//! middleware), which logs method, path, decoded query, headers and final status. Handlers of
//! data endpoints mark their response with a [`Served`] extension carrying the number of data
//! rows in it; the middleware copies that into the entry, so tests can assert how many pages a
//! client fetched and how many rows crossed the wire. Entries are written before the response
//! leaves the server: once a client has a response, its entry is in the log.

use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{Query, Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// Response extension set by data endpoints: the request was a data request, and the body
/// holds `rows` data rows (0 when a fault replaced or cut the body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    pub rows: usize,
}

/// One answered request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    /// Query parameters, percent-decoded, in request order.
    pub query: Vec<(String, String)>,
    /// Request headers, names in lowercase.
    pub headers: Vec<(String, String)>,
    pub status: u16,
    /// Data rows in the response body.
    pub rows: usize,
    /// The request hit a data endpoint (rows, records, features, downloads) and was subject to
    /// faults; metadata, count and error-before-query responses are not.
    pub data: bool,
}

impl LoggedRequest {
    /// The first value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A shared, append-only request log.
#[derive(Debug, Clone, Default)]
pub struct RequestLog {
    entries: Arc<Mutex<Vec<LoggedRequest>>>,
}

impl RequestLog {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<LoggedRequest>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn push(&self, entry: LoggedRequest) {
        self.lock().push(entry);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    /// A snapshot of all entries, oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.lock().clone()
    }

    /// The entries of data requests (see [`LoggedRequest::data`]).
    pub fn data_requests(&self) -> Vec<LoggedRequest> {
        self.lock().iter().filter(|r| r.data).cloned().collect()
    }

    /// Data rows sent in all responses so far.
    pub fn rows_served(&self) -> usize {
        self.lock().iter().map(|r| r.rows).sum()
    }
}

/// Middleware that logs each request with its response's status and [`Served`] rows.
pub async fn record_requests(
    State(log): State<RequestLog>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let query = Query::<Vec<(String, String)>>::try_from_uri(request.uri())
        .map(|q| q.0)
        .unwrap_or_default();
    let headers = request
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let response = next.run(request).await;
    let served = response.extensions().get::<Served>().copied();
    log.push(LoggedRequest {
        method,
        path,
        query,
        headers,
        status: response.status().as_u16(),
        rows: served.map_or(0, |s| s.rows),
        data: served.is_some(),
    });
    response
}
