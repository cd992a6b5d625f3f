//! Running a router on 127.0.0.1 for the length of a test.
//!
//! [`TestServer::start`] binds an OS-picked port, wraps the router with request logging and
//! serves it on a tokio task. The handle owns the server: dropping it shuts the server down.

use std::net::SocketAddr;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use chrono::DateTime;
use http::StatusCode;
use http::header::CONTENT_TYPE;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::dataset::{Row, SharedDataset};
use crate::fault::FaultPlan;
use crate::log::{RequestLog, record_requests};

/// A server bound to 127.0.0.1, with its request log, fault plan and dataset.
#[derive(Debug)]
pub struct TestServer {
    pub addr: SocketAddr,
    pub log: RequestLog,
    pub faults: FaultPlan,
    pub dataset: SharedDataset,
    shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<()>,
}

impl TestServer {
    /// Serves `router` (with request logging added) on 127.0.0.1 at an OS-picked port.
    ///
    /// # Panics
    /// When no local port can be bound.
    pub async fn start(router: Router, dataset: SharedDataset, faults: FaultPlan) -> TestServer {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("bound address");
        let log = RequestLog::new();
        let app = router.layer(from_fn_with_state(log.clone(), record_requests));
        let (shutdown, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        TestServer {
            addr,
            log,
            faults,
            dataset,
            shutdown: Some(shutdown),
            handle,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The base URL followed by `path_and_query` (which starts with `/`).
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base_url())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.handle.abort();
    }
}

/// Formats epoch seconds as an HTTP-date: `Sun, 08 Jan 2017 01:36:00 GMT`.
pub fn http_date(epoch: i64) -> String {
    DateTime::from_timestamp(epoch, 0)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// Parses an HTTP-date into epoch seconds.
pub fn parse_http_date(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc2822(text)
        .ok()
        .map(|t| t.timestamp())
}

/// Encodes pairs as `application/x-www-form-urlencoded`.
pub fn encode_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    fn encode(text: &str, out: &mut String) {
        for byte in text.bytes() {
            match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    out.push(byte as char)
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{byte:02X}")),
            }
        }
    }
    let mut out = String::new();
    for (key, value) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        encode(key, &mut out);
        out.push('=');
        encode(value, &mut out);
    }
    out
}

/// Writes JSON objects with a fixed list of member names, straight into a string: pages of
/// thousands of rows stay cheap even in unoptimised test builds.
pub(crate) struct ObjectWriter {
    names: Vec<String>,
}

impl ObjectWriter {
    pub(crate) fn new<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Self {
        let names = names
            .into_iter()
            .map(|n| serde_json::Value::from(n.as_ref()).to_string())
            .collect();
        ObjectWriter { names }
    }

    /// Appends one object, leaving out the members for which `cell(index)` is `None`.
    pub(crate) fn write(
        &self,
        out: &mut String,
        cell: impl Fn(usize) -> Option<serde_json::Value>,
    ) {
        out.push('{');
        let mut first = true;
        for (i, name) in self.names.iter().enumerate() {
            if let Some(value) = cell(i) {
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str(name);
                out.push(':');
                match value {
                    serde_json::Value::String(text) => push_json_string(out, &text),
                    other => out.push_str(&other.to_string()),
                }
            }
        }
        out.push('}');
    }
}

/// Appends `text` as a JSON string literal.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c < ' ' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Serialises rows as a JSON array of objects (see [`ObjectWriter::write`]).
pub(crate) fn json_rows<'a>(
    rows: impl IntoIterator<Item = &'a Row>,
    names: &[String],
    cell: impl Fn(&Row, usize) -> Option<serde_json::Value>,
) -> String {
    let writer = ObjectWriter::new(names);
    let mut out = String::from("[");
    for (n, row) in rows.into_iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        writer.write(&mut out, |i| cell(row, i));
    }
    out.push(']');
    out
}

/// Serialises `object` (a JSON object) with one more member, `name`, whose value is the
/// already serialised JSON `raw`.
pub(crate) fn with_raw_member(object: &serde_json::Value, name: &str, raw: &str) -> String {
    let text = object.to_string();
    let head = text.strip_suffix('}').expect("a JSON object");
    let separator = if head.len() > 1 { "," } else { "" };
    format!("{head}{separator}{}:{raw}}}", serde_json::Value::from(name))
}

/// A JSON response with `status`.
pub(crate) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    raw_json_response(status, body.to_string())
}

/// A response with `status` and an already serialised JSON body.
pub(crate) fn raw_json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The first value of query parameter `name`.
pub(crate) fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Whether a conditional GET may be answered with 304 Not Modified.
pub(crate) fn not_modified(headers: &http::HeaderMap, etag: &str, modified_at: i64) -> bool {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &http::HeaderValue| v.to_str().ok())
    };
    if let Some(tags) = header(http::header::IF_NONE_MATCH) {
        return tags.split(',').any(|t| t.trim() == etag || t.trim() == "*");
    }
    header(http::header::IF_MODIFIED_SINCE)
        .and_then(parse_http_date)
        .is_some_and(|since| modified_at <= since)
}
