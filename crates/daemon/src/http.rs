//! The HTTP face: the published site from `publish/current`, the run history as JSON, a run
//! trigger for administrators, health, readiness and metrics.

use crate::dispatch::{Triggered, Why};
use crate::{Shared, status};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Largest request body accepted (the API takes none): larger ones get 413.
const MAX_BODY: usize = 16 * 1024;
/// Longest a request may take once its headers are in: 408 after that.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a client may take to send a request's headers; the connection is closed after
/// that, so clients that trickle bytes cannot pile up connections.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Room for a request's line and headers: larger ones get 431.
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// How long open connections get to finish their requests when the server stops.
const DRAIN: Duration = Duration::from_secs(10);

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

/// Serve `app` on `listener` until `stop` turns true: HTTP/1.1, each connection in its own
/// task (a slow client holds only its own), with the header timeout and size limit above.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = stopped(&mut stop) => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "could not accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut stop = stop.clone();
        conns.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEADER_BYTES)
                .serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(DRAIN, conn).await;
                }
            }
        });
        while conns.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} }).await;
}

pub fn router(shared: Arc<Shared>) -> Router {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/pipelines", get(pipelines))
        .route("/api/runs", get(runs))
        .route("/api/runs/{id}", get(run))
        .route("/api/pipelines/{id}/run", post(trigger))
        .fallback(site)
        .with_state(shared);
    guarded(app)
}

/// The limits every request meets, around any routes: the body size limit, the request
/// timeout and response compression.
fn guarded(app: Router) -> Router {
    app.layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_BODY))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(tower_http::compression::CompressionLayer::new())
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    let mut r = (status, axum::Json(body)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    json_response(status, json!({ "error": message.into() }))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    let config = s.loaded().config.clone();
    let state = tokio::task::spawn_blocking(move || {
        goalpost_state::StateStore::open(&config.state_db).and_then(|st| st.runs(None, 1))
    })
    .await;
    let mut problems = Vec::new();
    if !matches!(state, Ok(Ok(_))) {
        problems.push("the state store cannot be read".to_string());
    }
    let version = match s.loaded().runner.publisher() {
        Ok(p) => match p.current_version().await {
            Ok(Some(v)) if p.version_has(&v, "digest.json").await.unwrap_or(false) => Some(v),
            Ok(_) => {
                problems.push("nothing is published yet".to_string());
                None
            }
            Err(e) => {
                problems.push(format!("the publish location cannot be read: {e}"));
                None
            }
        },
        Err(e) => {
            problems.push(format!("the publish location cannot be reached: {e}"));
            None
        }
    };
    if problems.is_empty() {
        json_response(
            StatusCode::OK,
            json!({ "ready": true, "published_version": version }),
        )
    } else {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "ready": false, "problems": problems }),
        )
    }
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    let loaded = s.loaded();
    let now = s.clock.now();
    let gauges = tokio::task::spawn_blocking(move || -> Result<_, goalpost_state::StateError> {
        let state = goalpost_state::StateStore::open(&loaded.config.state_db)?;
        let statuses = status::statuses(&loaded.pipelines, &state, now)?;
        let news = state.news(None)?;
        Ok((statuses, news))
    })
    .await;
    match gauges {
        Ok(Ok((statuses, news))) => {
            for p in statuses {
                s.metrics.freshness(
                    &p.id,
                    p.last_success.map(|t| t.timestamp()),
                    p.data_age_seconds,
                );
            }
            for st in ["published", "draft", "rejected"] {
                s.metrics
                    .news_items(st, news.iter().filter(|n| n.status == st).count() as i64);
            }
        }
        _ => {
            tracing::warn!("metrics: the state store could not be read; freshness gauges are stale")
        }
    }
    let mut r = s.metrics.render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

async fn pipelines(State(s): State<Arc<Shared>>) -> Response {
    let loaded = s.loaded();
    let now = s.clock.now();
    let active = s.dispatcher.active();
    let result = tokio::task::spawn_blocking(move || {
        let state = goalpost_state::StateStore::open(&loaded.config.state_db)?;
        status::statuses(&loaded.pipelines, &state, now)
    })
    .await;
    match result {
        Ok(Ok(list)) => {
            let list: Vec<serde_json::Value> = list
                .into_iter()
                .map(|p| {
                    let queued = active.contains(&p.id);
                    let mut v = serde_json::to_value(&p).unwrap_or_default();
                    v["active"] = json!(queued);
                    v
                })
                .collect();
            json_response(StatusCode::OK, json!({ "pipelines": list }))
        }
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Deserialize)]
struct RunsQuery {
    pipeline: Option<String>,
    limit: Option<usize>,
}

async fn runs(State(s): State<Arc<Shared>>, Query(q): Query<RunsQuery>) -> Response {
    let db = s.loaded().config.state_db.clone();
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let result = tokio::task::spawn_blocking(move || {
        goalpost_state::StateStore::open(&db)?.runs(q.pipeline.as_deref(), limit)
    })
    .await;
    match result {
        Ok(Ok(runs)) => json_response(StatusCode::OK, json!({ "runs": runs })),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn run(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let db = s.loaded().config.state_db.clone();
    let wanted = id.clone();
    let result = tokio::task::spawn_blocking(move || {
        let state = goalpost_state::StateStore::open(&db)?;
        let run = state.run(&wanted)?;
        let checks = match &run {
            Some(_) => state.checks(&wanted)?,
            None => Vec::new(),
        };
        Ok::<_, goalpost_state::StateError>((run, checks))
    })
    .await;
    match result {
        Ok(Ok((Some(run), checks))) => {
            let mut v = serde_json::to_value(&run).unwrap_or_default();
            v["checks"] = serde_json::to_value(&checks).unwrap_or_default();
            json_response(StatusCode::OK, v)
        }
        Ok(Ok((None, _))) => error(StatusCode::NOT_FOUND, format!("no run {id:?}")),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Whether the request carries the administrator's token, compared in constant time.
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    use subtle::ConstantTimeEq;
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
    else {
        return false;
    };
    given.as_bytes().ct_eq(token.as_bytes()).into()
}

async fn trigger(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(token) = s.admin_token.as_deref() else {
        return error(
            StatusCode::FORBIDDEN,
            "run requests are turned off: start the daemon with GOALPOST_ADMIN_TOKEN set to allow them",
        );
    };
    if !authorized(&headers, token) {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "this needs the administrator's token: Authorization: Bearer <token>",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"goalpost\""),
        );
        return r;
    }
    let known = s.loaded().pipelines.pipelines.iter().any(|p| p.id == id);
    if !known {
        return error(StatusCode::NOT_FOUND, format!("no pipeline {id:?}"));
    }
    match s.dispatcher.trigger(&id, Why::Request) {
        Triggered::Started => json_response(
            StatusCode::ACCEPTED,
            json!({ "pipeline": id, "status": "started" }),
        ),
        Triggered::AlreadyRunning => error(
            StatusCode::CONFLICT,
            format!("pipeline {id:?} is already running"),
        ),
        Triggered::Closing => error(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping"),
    }
}

/// The file under the current published version that a request path names, if any. Every
/// segment is percent-decoded once and must be a plain name: no `..`, no hidden files, no
/// separators smuggled inside a segment.
fn resolve(version_dir: &std::path::Path, path: &str) -> Option<PathBuf> {
    let mut out = version_dir.to_path_buf();
    for seg in segments(path)? {
        out.push(seg);
    }
    if out.is_dir() {
        out.push("index.html");
    }
    Some(out)
}

/// A request path's segments, each percent-decoded once and a plain name.
fn segments(path: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for raw in path.trim_start_matches('/').split('/') {
        if raw.is_empty() {
            continue;
        }
        let seg = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .ok()?;
        if seg.starts_with('.') || seg.contains('/') || seg.contains('\\') || seg.contains('\0') {
            return None;
        }
        out.push(seg.into_owned());
    }
    Some(out)
}

/// The site from a bucket: the version `current.json` names, one object per request.
async fn site_from_bucket(s: &Shared, uri_path: &str, if_none_match: Option<String>) -> Response {
    let publisher = match s.loaded().runner.publisher() {
        Ok(p) => p,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let version = match publisher.current_version().await {
        Ok(Some(v)) => v,
        Ok(None) => return error(StatusCode::SERVICE_UNAVAILABLE, "nothing is published yet"),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the current version");
            return error(
                StatusCode::BAD_GATEWAY,
                "the publish location cannot be read",
            );
        }
    };
    let Some(segs) = segments(uri_path) else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    let path = segs.join("/");
    // A folder's page is its index.html; without a trailing slash, a name may be either.
    let mut tries = Vec::new();
    if path.is_empty() || uri_path.ends_with('/') {
        tries.push(
            format!("{path}/index.html")
                .trim_start_matches('/')
                .to_string(),
        );
    } else {
        tries.push(path.clone());
        tries.push(format!("{path}/index.html"));
    }
    for inside in tries {
        let (size, body) = match publisher.stream_version_file(&version, &inside).await {
            Ok(Some(found)) => found,
            Ok(None) => continue,
            Err(e) => {
                tracing::error!(error = %e, "cannot read a published file");
                return error(
                    StatusCode::BAD_GATEWAY,
                    "the publish location cannot be read",
                );
            }
        };
        // A version's files never change: its id and the path name the bytes.
        let etag = format!("W/\"{:x}\"", {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (&version, &inside, size).hash(&mut h);
            h.finish()
        });
        let file = Served {
            path: std::path::Path::new(&inside),
            etag: &etag,
            modified: None,
            length: size,
        };
        return file.respond(if_none_match.as_deref(), Body::from_stream(body));
    }
    error(StatusCode::NOT_FOUND, "not found")
}

async fn site(State(s): State<Arc<Shared>>, req: Request) -> Response {
    if req.method() != axum::http::Method::GET && req.method() != axum::http::Method::HEAD {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are served here",
        );
    }
    let publish_dir = match &s.loaded().config.publish_dir {
        goalpost_spec::Location::Local(dir) => dir.clone(),
        goalpost_spec::Location::Remote(_) => {
            let if_none_match = req
                .headers()
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let path = req.uri().path().to_string();
            drop(req);
            return site_from_bucket(&s, &path, if_none_match).await;
        }
    };
    // One version for the whole response: `current` is read once, and the version folder
    // it names is never changed once published.
    let Ok(link) = std::fs::read_link(publish_dir.join("current")) else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "nothing is published yet");
    };
    let version_dir = publish_dir.join(link);
    let Some(file) = resolve(&version_dir, req.uri().path()) else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    // Nothing outside the version, whatever links it may hold.
    let (Ok(real), Ok(root)) = (file.canonicalize(), version_dir.canonicalize()) else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    if !real.starts_with(&root) {
        return error(StatusCode::NOT_FOUND, "not found");
    }
    let Ok(handle) = tokio::fs::File::open(&real).await else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    let Ok(meta) = handle.metadata().await else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    if !meta.is_file() {
        return error(StatusCode::NOT_FOUND, "not found");
    }
    let modified = meta.modified().ok();
    // Weak: the same file may go out gzipped or not, and ranges are not served.
    let etag = {
        use std::os::unix::fs::MetadataExt;
        format!(
            "W/\"{:x}-{:x}-{:x}\"",
            meta.ino(),
            meta.len(),
            meta.mtime_nsec() ^ meta.mtime()
        )
    };
    let if_none_match = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    let file = Served {
        path: &real,
        etag: &etag,
        modified,
        length: meta.len(),
    };
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(handle));
    file.respond(if_none_match, body)
}

/// A published file about to be served.
struct Served<'a> {
    /// Its name, for the media type.
    path: &'a std::path::Path,
    etag: &'a str,
    modified: Option<std::time::SystemTime>,
    length: u64,
}

impl Served<'_> {
    /// `304 Not Modified` when `if_none_match` names it, otherwise `body` with its headers.
    fn respond(&self, if_none_match: Option<&str>, body: Body) -> Response {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(self.etag) {
            headers.insert(header::ETAG, v);
        }
        if let Some(m) = self.modified
            && let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(m))
        {
            headers.insert(header::LAST_MODIFIED, v);
        }
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=60"),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if if_none_match.is_some_and(|v| etag_matches(v, self.etag)) {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
        headers.insert(header::CONTENT_TYPE, content_type(self.path));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(self.length));
        (StatusCode::OK, headers, body).into_response()
    }
}

/// `If-None-Match` uses the weak comparison (RFC 9110 13.1.2): `W/"x"` matches `"x"`, as
/// proxies that compress weaken the tags they pass on.
fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_string();
    if_none_match
        .split(',')
        .any(|t| t.trim() == "*" || bare(t) == bare(etag))
}

fn content_type(path: &std::path::Path) -> HeaderValue {
    // The types the publisher gives the files of a bucket; a guess for anything else.
    match goalpost_publish::content_type(&path.to_string_lossy()) {
        "application/octet-stream" => {
            let guess = mime_guess::from_path(path).first_or_octet_stream();
            HeaderValue::from_str(guess.as_ref())
                .unwrap_or(HeaderValue::from_static("application/octet-stream"))
        }
        known => HeaderValue::from_static(known),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths_stay_inside_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let v = dir.path();
        std::fs::create_dir_all(v.join("goals")).unwrap();
        assert_eq!(resolve(v, "/"), Some(v.join("index.html")));
        assert_eq!(resolve(v, "/goals/"), Some(v.join("goals/index.html")));
        assert_eq!(
            resolve(v, "/goals/a%20b.html"),
            Some(v.join("goals/a b.html"))
        );
        for bad in [
            "/../secret",
            "/goals/../../x",
            "/%2e%2e/x",
            "/goals%2f..%2f..%2fx",
            "/%252e%252e/x", // decoded once: "%2e%2e", a plain (missing) name, not a way up
            "/.history",
            "/a%00b",
            "/a%5c..%5cb",
        ] {
            match resolve(v, bad) {
                None => {}
                Some(p) => assert!(
                    p.starts_with(v)
                        && !p.components().any(|c| c == std::path::Component::ParentDir),
                    "{bad} -> {p:?}"
                ),
            }
        }
        assert_eq!(resolve(v, "/../secret"), None);
        assert_eq!(resolve(v, "/%2e%2e/x"), None);
    }

    #[test]
    fn tokens_are_checked() {
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, "s3cret"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cre"),
        );
        assert!(!authorized(&h, "s3cret"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic s3cret"),
        );
        assert!(!authorized(&h, "s3cret"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert!(authorized(&h, "s3cret"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer s3cret"),
        );
        assert!(authorized(&h, "s3cret"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret2"),
        );
        assert!(!authorized(&h, "s3cret"));
    }

    /// Serves `app` on a loopback port; returns the address and the switch that stops it.
    async fn start(app: Router) -> (std::net::SocketAddr, tokio::sync::watch::Sender<bool>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(serve(listener, app, rx));
        (addr, tx)
    }

    /// Reads until the server closes the connection.
    async fn read_to_close(stream: &mut tokio::net::TcpStream) -> String {
        use tokio::io::AsyncReadExt as _;
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    // The clock is paused: it moves only when every task waits, straight to the next timer,
    // so the elapsed times below are exact.
    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_finishes_its_headers_is_cut_off_at_the_header_timeout() {
        use tokio::io::AsyncWriteExt as _;
        let app = guarded(Router::new().route("/", get(|| async { "hello" })));
        let (addr, _stop) = start(app).await;

        // A complete request is answered, and the connection stays open for the next one.
        let mut quick = tokio::net::TcpStream::connect(addr).await.unwrap();
        quick
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let answer = read_to_close(&mut quick).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("hello"), "{answer}");

        let begun = tokio::time::Instant::now();
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Trickle: ")
            .await
            .unwrap();
        let answer = read_to_close(&mut slow).await;
        let waited = begun.elapsed();
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer}"
        );
        assert!(
            waited >= HEADER_TIMEOUT && waited < HEADER_TIMEOUT + Duration::from_secs(1),
            "closed after {waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_takes_too_long_is_answered_408_at_the_request_timeout() {
        use tokio::io::AsyncWriteExt as _;
        let slow = || async {
            tokio::time::sleep(REQUEST_TIMEOUT * 2).await;
            "too late"
        };
        let app = guarded(Router::new().route("/slow", get(slow)));
        let (addr, _stop) = start(app).await;

        let begun = tokio::time::Instant::now();
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let answer = read_to_close(&mut client).await;
        let waited = begun.elapsed();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(!answer.contains("too late"), "{answer}");
        assert!(
            waited >= REQUEST_TIMEOUT && waited < REQUEST_TIMEOUT + Duration::from_secs(1),
            "answered after {waited:?}"
        );
    }

    #[test]
    fn conditional_requests_compare_tags_weakly() {
        let tag = "\"1a-2b-3c\"";
        assert!(etag_matches("\"1a-2b-3c\"", tag));
        assert!(etag_matches("W/\"1a-2b-3c\"", tag));
        assert!(etag_matches("\"x\", W/\"1a-2b-3c\"", tag));
        assert!(etag_matches("*", tag));
        assert!(!etag_matches("\"1a-2b-3d\"", tag));
        assert!(!etag_matches("", tag));
    }
}
