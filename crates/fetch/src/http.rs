//! The one HTTP client every web connector uses: polite, bounded and replayable.
//!
//! - **Polite**: a descriptive `User-Agent`, a request-rate limit per host (token bucket from
//!   `governor`), and retries of transient failures only — connect errors, timeouts, cut-off
//!   bodies, 408, 429 and 5xx — with exponential backoff and jitter (`backon`). A
//!   `Retry-After` is honoured, but never below a floor, so `Retry-After: 0` cannot become a
//!   tight loop. Other 4xx answers are never retried. Retrying stops after a number of
//!   attempts or a time budget, whichever comes first, with an error that says why.
//! - **Bounded**: a declared `Content-Length` above the cap is refused before reading, and the
//!   body is counted as it is decompressed, so a small gzip bomb cannot fill memory.
//! - **Safe with credentials**: redirects are followed by hand, and headers marked secret
//!   (app tokens, API keys) are dropped as soon as a redirect leaves the original host. A
//!   redirect from https to http is refused.
//! - **Replayable**: every response that ends a request is handed to the [`Tape`]: while
//!   recording it is saved (zstd) under `data/raw/…`; while replaying, responses come from
//!   such a recording and nothing touches the network.

use crate::FetchError;
use crate::tape::Tape;
use backon::{BackoffBuilder, ExponentialBuilder};
use bytes::{Bytes, BytesMut};
use goalpost_spec::FetchSettings;
use governor::{DefaultKeyedRateLimiter, Quota};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use url::Url;

/// Waits between attempts. Production sleeps; tests record the waits and go on at once.
pub type SleepFn = Arc<dyn Fn(Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Counters of one run's fetching, shared by every source of the run.
#[derive(Debug, Default)]
pub struct FetchStats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub bytes: AtomicU64,
}

impl FetchStats {
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.retries.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// One GET to make.
#[derive(Debug, Clone)]
pub struct Request {
    pub url: Url,
    /// Ordinary headers (Accept, conditional-GET validators …).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Credentials: sent to the original host only, never across a redirect to another.
    pub secret_headers: Vec<(HeaderName, HeaderValue)>,
}

impl Request {
    pub fn new(url: Url) -> Self {
        Self {
            url,
            headers: Vec::new(),
            secret_headers: Vec::new(),
        }
    }

    pub fn header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }

    pub fn secret(mut self, name: HeaderName, value: &str) -> Result<Self, FetchError> {
        let mut v = HeaderValue::from_str(value).map_err(|_| FetchError::Config {
            message: format!("the value for the {name} header is not a valid header value"),
        })?;
        v.set_sensitive(true);
        self.secret_headers.push((name, v));
        Ok(self)
    }
}

/// A response that ended a request: 2xx or 304.
#[derive(Debug, Clone)]
pub struct Response {
    /// The URL asked for (before redirects), which is what a replay looks up.
    pub url: Url,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON; a body that does not parse is reported with position and excerpt.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Problem> {
        serde_json::from_slice(&self.body).map_err(|e| self.not_json(&e))
    }

    /// The problem of a body that did not parse as the JSON expected: worth another attempt
    /// (a portal may answer with a truncated or interrupted body).
    pub(crate) fn not_json(&self, e: &serde_json::Error) -> Problem {
        Problem::Transient(format!(
            "the response is not the JSON expected ({}); it begins {}",
            crate::decode::json_error(e),
            excerpt(&self.body)
        ))
    }
}

/// Why a response could not be used, as the caller's parser judges it.
#[derive(Debug, Clone)]
pub enum Problem {
    /// Worth another attempt (a malformed body, a portal's "try again" envelope).
    Transient(String),
    /// Retrying will not help (a portal error naming a bad query …).
    Permanent(String),
}

/// What one attempt ended with.
#[derive(Debug)]
struct Failure {
    message: String,
    transient: bool,
    /// The server's `Retry-After`, already floored.
    retry_after: Option<Duration>,
    status: Option<u16>,
    body: Option<Bytes>,
}

pub struct HttpClient {
    client: reqwest::Client,
    settings: FetchSettings,
    limiter: Arc<DefaultKeyedRateLimiter<String>>,
    stats: Arc<FetchStats>,
    tape: Tape,
    sleep: SleepFn,
}

impl HttpClient {
    /// A client for one run. `tape` records (or replays) every response.
    pub fn new(
        settings: &FetchSettings,
        tape: Tape,
        stats: Arc<FetchStats>,
    ) -> Result<Self, FetchError> {
        let user_agent = settings.user_agent.clone().unwrap_or_else(|| {
            format!(
                "goalpost/{} (public performance reporting; open-data client)",
                env!("CARGO_PKG_VERSION")
            )
        });
        let client = reqwest::Client::builder()
            .user_agent(user_agent)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .connect_timeout(settings.connect_timeout)
            .build()
            .map_err(|e| FetchError::Config {
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        let period = Duration::from_secs_f64(1.0 / settings.requests_per_second.max(0.001));
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(NonZeroU32::MIN);
        Ok(Self {
            client,
            settings: settings.clone(),
            limiter: Arc::new(DefaultKeyedRateLimiter::keyed(quota)),
            stats,
            tape,
            sleep: Arc::new(|d| Box::pin(tokio::time::sleep(d))),
        })
    }

    /// Replace how the client waits between attempts (tests record waits instead).
    pub fn with_sleep(mut self, sleep: SleepFn) -> Self {
        self.sleep = sleep;
        self
    }

    pub fn stats(&self) -> &Arc<FetchStats> {
        &self.stats
    }

    pub fn tape(&self) -> &Tape {
        &self.tape
    }

    /// GET, retrying transient failures; the body is returned as received.
    pub async fn get(&self, req: &Request) -> Result<Response, FetchError> {
        self.get_with(req, |_| Ok(())).await.map(|(r, ())| r)
    }

    /// GET and parse, where a parse failure the parser calls transient is retried like a
    /// network failure (a body cut off by a proxy, a portal's "busy" envelope).
    pub async fn get_with<T: Send, P>(
        &self,
        req: &Request,
        parse: P,
    ) -> Result<(Response, T), FetchError>
    where
        P: Fn(&Response) -> Result<T, Problem> + Send + Sync,
    {
        self.fetch(req, None, parse).await
    }

    /// GET a document straight into the file `dest` (a large download never sits in memory).
    /// The response's `body` is empty; a 304 leaves `dest` untouched.
    pub async fn download(
        &self,
        req: &Request,
        dest: &std::path::Path,
    ) -> Result<Response, FetchError> {
        self.fetch(req, Some(dest), |_| Ok(()))
            .await
            .map(|(r, ())| r)
    }

    async fn fetch<T: Send, P>(
        &self,
        req: &Request,
        sink: Option<&std::path::Path>,
        parse: P,
    ) -> Result<(Response, T), FetchError>
    where
        P: Fn(&Response) -> Result<T, Problem> + Send + Sync,
    {
        if let Some(replayed) = self.tape.replay(&req.url, sink)? {
            return match parse(&replayed) {
                Ok(v) => Ok((replayed, v)),
                Err(Problem::Transient(m) | Problem::Permanent(m)) => Err(FetchError::Http {
                    url: req.url.to_string(),
                    status: Some(replayed.status),
                    message: m,
                    body: None,
                }),
            };
        }
        // Time spent on attempts plus time spent waiting (the waits may be virtual in tests,
        // so they are counted apart from the attempts, never twice).
        let mut in_attempts = Duration::ZERO;
        // backon supplies the schedule (exponential, jittered, capped); the loop adds what a
        // schedule cannot know: the server's Retry-After and the time budget.
        let mut schedule = ExponentialBuilder::default()
            .with_min_delay(self.settings.backoff_initial)
            .with_max_delay(self.settings.backoff_max)
            .with_max_times(self.settings.retries as usize)
            .with_jitter()
            .build();
        let mut waited = Duration::ZERO;
        let mut attempts = 0u32;
        let result = loop {
            attempts += 1;
            let attempt_started = Instant::now();
            let attempt = self.attempt(req, sink).await;
            in_attempts += attempt_started.elapsed();
            let outcome = match attempt {
                Ok(response) => match parse(&response) {
                    Ok(v) => Ok((response, v)),
                    Err(Problem::Transient(message)) => Err(Failure {
                        message,
                        transient: true,
                        retry_after: None,
                        status: Some(response.status),
                        body: None,
                    }),
                    Err(Problem::Permanent(message)) => Err(Failure {
                        message,
                        transient: false,
                        retry_after: None,
                        status: Some(response.status),
                        body: None,
                    }),
                },
                Err(f) => Err(f),
            };
            let failure = match outcome {
                Ok(done) => break Ok(done),
                Err(f) if !f.transient => break Err(f),
                Err(f) => f,
            };
            let Some(next) = schedule.next() else {
                break Err(failure);
            };
            // The server's word beats the schedule, but never below the floor.
            let wait = failure
                .retry_after
                .map_or(next, |ra| ra.max(self.settings.retry_after_floor));
            let spent = in_attempts.saturating_add(waited).saturating_add(wait);
            if spent > self.settings.retry_budget {
                break Err(Failure {
                    message: format!(
                        "{}; the next wait ({wait:?}) would pass retry_budget = {:?}",
                        failure.message, self.settings.retry_budget
                    ),
                    ..failure
                });
            }
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(url = %req.url, wait = ?wait, attempt = attempts, "{}; retrying", failure.message);
            (self.sleep)(wait).await;
            waited = waited.saturating_add(wait);
        };
        match result {
            Ok((response, value)) => {
                self.tape.record(&response, sink).await?;
                Ok((response, value))
            }
            Err(f) => {
                let message = if f.transient && attempts > 1 {
                    format!("{} (gave up after {attempts} attempts)", f.message)
                } else {
                    f.message
                };
                Err(FetchError::Http {
                    url: req.url.to_string(),
                    status: f.status,
                    message,
                    body: f.body,
                })
            }
        }
    }

    /// One attempt: wait for the host's rate limit, send, follow redirects, read the body.
    async fn attempt(
        &self,
        req: &Request,
        sink: Option<&std::path::Path>,
    ) -> Result<Response, Failure> {
        let mut url = req.url.clone();
        let origin = req.url.origin();
        for _hop in 0..10 {
            let host = url.host_str().unwrap_or_default().to_string();
            self.limiter.until_key_ready(&host).await;
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let mut builder = self.client.get(url.clone());
            for (k, v) in &req.headers {
                builder = builder.header(k, v);
            }
            if url.origin() == origin {
                for (k, v) in &req.secret_headers {
                    builder = builder.header(k, v);
                }
            }
            let response = builder.send().await.map_err(|e| Failure {
                message: describe_reqwest(&e),
                transient: true,
                retry_after: None,
                status: None,
                body: None,
            })?;
            let status = response.status();
            if status.is_redirection() && status.as_u16() != 304 {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| permanent(format!("HTTP {status} without a Location header")))?;
                let next = url.join(location).map_err(|e| {
                    permanent(format!(
                        "HTTP {status} to an unusable address {location:?}: {e}"
                    ))
                })?;
                if url.scheme() == "https" && next.scheme() != "https" {
                    return Err(permanent(format!(
                        "refusing a redirect from https to {next} (an insecure address)"
                    )));
                }
                url = next;
                continue;
            }
            let headers = response.headers().clone();
            if status.as_u16() == 304 {
                return Ok(Response {
                    url: req.url.clone(),
                    status: 304,
                    headers,
                    body: Bytes::new(),
                });
            }
            if status.is_success() {
                let body = match sink {
                    Some(path) => {
                        self.save_body(response, path).await?;
                        Bytes::new()
                    }
                    None => self.read_body(response).await?,
                };
                return Ok(Response {
                    url: req.url.clone(),
                    status: status.as_u16(),
                    headers,
                    body,
                });
            }
            let code = status.as_u16();
            let transient = matches!(code, 408 | 429) || status.is_server_error();
            let retry_after = headers
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after)
                .map(|d| d.max(self.settings.retry_after_floor));
            // Error bodies are small; keep one for the connector to explain.
            let body = self.read_body(response).await.ok();
            let detail = body.as_deref().map(excerpt).unwrap_or_default();
            return Err(Failure {
                message: format!(
                    "HTTP {status}{}",
                    if detail.is_empty() {
                        String::new()
                    } else {
                        format!(": {detail}")
                    }
                ),
                transient,
                retry_after,
                status: Some(code),
                body,
            });
        }
        Err(permanent("more than 10 redirects".into()))
    }

    async fn read_body(&self, response: reqwest::Response) -> Result<Bytes, Failure> {
        let mut body = BytesMut::new();
        self.each_chunk(response, |chunk| {
            body.extend_from_slice(chunk);
            Ok(())
        })
        .await?;
        Ok(body.freeze())
    }

    /// Stream the body into `path` (created or truncated).
    async fn save_body(
        &self,
        response: reqwest::Response,
        path: &std::path::Path,
    ) -> Result<(), Failure> {
        use std::io::Write;
        let io_failure =
            |e: std::io::Error| permanent(format!("cannot write {}: {e}", path.display()));
        let mut file = std::io::BufWriter::new(std::fs::File::create(path).map_err(io_failure)?);
        self.each_chunk(response, |chunk| file.write_all(chunk).map_err(io_failure))
            .await?;
        file.flush().map_err(io_failure)
    }

    /// Hand each chunk of the (decompressed) body to `each`, enforcing the size caps.
    async fn each_chunk(
        &self,
        mut response: reqwest::Response,
        mut each: impl FnMut(&[u8]) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        let max_sent = self.settings.max_response_mib.saturating_mul(1 << 20);
        let max_body = self.settings.max_decompressed_mib.saturating_mul(1 << 20);
        if let Some(len) = response.content_length()
            && len > max_sent
        {
            return Err(permanent(format!(
                "the response is {} MiB, more than max_response_mib = {}",
                len >> 20,
                self.settings.max_response_mib
            )));
        }
        let mut seen = 0u64;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    self.stats
                        .bytes
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    seen += chunk.len() as u64;
                    if seen > max_body {
                        return Err(permanent(format!(
                            "the response body grew past max_decompressed_mib = {} MiB",
                            self.settings.max_decompressed_mib
                        )));
                    }
                    each(&chunk)?;
                }
                Ok(None) => return Ok(()),
                Err(e) => {
                    return Err(Failure {
                        message: format!("the response body was cut off: {}", describe_reqwest(&e)),
                        transient: true,
                        retry_after: None,
                        status: None,
                        body: None,
                    });
                }
            }
        }
    }
}

fn permanent(message: String) -> Failure {
    Failure {
        message,
        transient: false,
        retry_after: None,
        status: None,
        body: None,
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        // Absurd values are capped; the retry budget then ends the retrying with a message.
        return Some(Duration::from_secs(secs.min(86_400 * 365)));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let now = chrono::Utc::now();
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// The first 300 characters of a body, on one line.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(600)]);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = one_line.chars().take(300).collect();
    if one_line.chars().count() > 300 || body.len() > 600 {
        out.push('…');
    }
    out
}

/// reqwest's error with its causes, which hold the useful part ("connection refused").
fn describe_reqwest(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "reading the body failed"
    } else {
        "request failed"
    };
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    if causes.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {}", causes.join(": "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after("0"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn excerpts_are_short_and_on_one_line() {
        assert_eq!(excerpt(b"{\"a\":\n  1}"), "{\"a\": 1}");
        let long = vec![b'x'; 1000];
        assert!(excerpt(&long).ends_with('…'));
        assert_eq!(excerpt(&long).chars().count(), 301);
    }
}
