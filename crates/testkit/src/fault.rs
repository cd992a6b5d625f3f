//! Scripted failures for data requests.
//!
//! A [`FaultPlan`] holds the faults that upcoming data requests (rows, records, features,
//! downloads: not metadata or count requests) will meet: a queue consumed in order by
//! [`FaultPlan::push`], and faults pinned to the k-th data request by [`FaultPlan::push_at`].
//! Every server applies them through the one function [`apply_fault`], so emulators and the
//! proxy misbehave identically.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, StatusCode};
use http_body::Frame;

use crate::dataset::SharedDataset;
use crate::log::Served;

/// One way a data request can go wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and body (JSON content type when the body parses as JSON).
    Status { code: u16, body: String },
    /// 429 Too Many Requests, with `Retry-After` set to the given value (seconds or HTTP-date).
    TooManyRequests { retry_after: Option<String> },
    /// Wait, then answer normally: with a shorter client timeout this is a timeout.
    Delay(Duration),
    /// Announce the full `Content-Length`, send half the body, then drop the connection.
    Truncate,
    /// 200 with a JSON content type and the real body cut in half: a complete HTTP response
    /// whose JSON does not parse.
    MalformedJson,
    /// Answer normally, then change rows as [`crate::Dataset::change_rows`] does: a row changed
    /// between two pages.
    MutateAfterServe { every: usize, at_epoch: i64 },
}

#[derive(Debug, Default)]
struct PlanState {
    queue: VecDeque<Fault>,
    pinned: BTreeMap<usize, Fault>,
    seen: usize,
}

/// The faults awaiting data requests; clones share state.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    state: Arc<Mutex<PlanState>>,
}

impl FaultPlan {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, PlanState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `fault` for the next `times` data requests (after those already queued).
    pub fn push(&self, fault: Fault, times: usize) {
        let mut state = self.lock();
        state.queue.extend(std::iter::repeat_n(fault, times));
    }

    /// Pins `fault` to the `request_number`-th data request this plan sees (1-based, counted
    /// since the plan was created); it takes precedence over the queue for that request.
    pub fn push_at(&self, request_number: usize, fault: Fault) {
        self.lock().pinned.insert(request_number, fault);
    }

    /// Faults not yet applied.
    pub fn pending(&self) -> usize {
        let state = self.lock();
        state.queue.len() + state.pinned.range(state.seen + 1..).count()
    }

    /// Data requests seen so far.
    pub fn data_requests(&self) -> usize {
        self.lock().seen
    }

    /// Drops every pending fault.
    pub fn clear(&self) {
        let mut state = self.lock();
        state.queue.clear();
        state.pinned.clear();
    }

    /// Counts one data request and returns the fault it meets, if any.
    pub fn next_fault(&self) -> Option<Fault> {
        let mut state = self.lock();
        state.seen += 1;
        let seen = state.seen;
        state
            .pinned
            .remove(&seen)
            .or_else(|| state.queue.pop_front())
    }
}

/// Serves one data request under `plan`: takes the next fault and either replaces the
/// response, delays it, cuts it, or mutates `dataset` after building it. The returned response
/// always carries a [`Served`] extension (rows 0 when the body was replaced or cut).
pub async fn apply_fault<F, Fut>(
    plan: &FaultPlan,
    dataset: Option<&SharedDataset>,
    serve: F,
) -> Response
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Response>,
{
    let mut response = match plan.next_fault() {
        None => serve().await,
        Some(Fault::Status { code, body }) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let content_type = if serde_json::from_str::<serde_json::Value>(&body).is_ok() {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            };
            (status, [(CONTENT_TYPE, content_type)], body).into_response()
        }
        Some(Fault::TooManyRequests { retry_after }) => {
            let mut response = (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response();
            if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
                response.headers_mut().insert(RETRY_AFTER, value);
            }
            response
        }
        Some(Fault::Delay(duration)) => {
            tokio::time::sleep(duration).await;
            serve().await
        }
        Some(Fault::Truncate) => {
            let (mut parts, body) = serve().await.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            parts
                .headers
                .insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            parts.extensions.remove::<Served>();
            let half = bytes.slice(..bytes.len() / 2);
            Response::from_parts(
                parts,
                Body::new(CutBody {
                    head: Some(half),
                    flushed: false,
                }),
            )
        }
        Some(Fault::MalformedJson) => {
            let body = axum::body::to_bytes(serve().await.into_body(), usize::MAX)
                .await
                .unwrap_or_default();
            let cut = body.slice(..body.len() / 2);
            (StatusCode::OK, [(CONTENT_TYPE, "application/json")], cut).into_response()
        }
        Some(Fault::MutateAfterServe { every, at_epoch }) => {
            let response = serve().await;
            if let Some(dataset) = dataset {
                dataset
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .change_rows(every, at_epoch);
            }
            response
        }
    };
    if response.extensions().get::<Served>().is_none() {
        response.extensions_mut().insert(Served { rows: 0 });
    }
    response
}

/// A body that yields its head, lets the server flush it, and then fails, so the connection
/// drops short of the announced `Content-Length`.
struct CutBody {
    head: Option<Bytes>,
    flushed: bool,
}

impl HttpBody for CutBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let body = self.get_mut();
        if let Some(head) = body.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        if !body.flushed {
            // Pending hands control back to the connection, which writes out what it holds.
            body.flushed = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "response cut short by fault injection",
        ))))
    }
}
