//! The HTTP client's manners, against small local servers: what it sends, what it refuses,
//! when it retries and when it gives up.

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use goalpost_fetch::{FetchStats, HttpClient, Request, Tape};
use goalpost_spec::FetchSettings;
use goalpost_testkit::{Dataset, FaultPlan, TestServer};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use url::Url;

fn settings() -> FetchSettings {
    FetchSettings {
        user_agent: Some("goalpost-test (city of Example; data@example.gov)".into()),
        timeout: Duration::from_secs(2),
        retries: 3,
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(20),
        retry_after_floor: Duration::from_millis(30),
        requests_per_second: 10_000.0,
        ..FetchSettings::default()
    }
}

type Waits = Arc<Mutex<Vec<Duration>>>;

fn client(settings: &FetchSettings) -> (HttpClient, Waits) {
    let waits: Waits = Arc::default();
    let w = waits.clone();
    let client = HttpClient::new(settings, Tape::Off, Arc::new(FetchStats::default()))
        .unwrap()
        .with_sleep(Arc::new(move |d| {
            w.lock().unwrap().push(d);
            Box::pin(async {})
        }));
    (client, waits)
}

async fn serve(router: Router) -> TestServer {
    TestServer::start(
        router,
        Dataset::sf_fire().subset(1).shared(),
        FaultPlan::new(),
    )
    .await
}

async fn echo(headers: HeaderMap) -> String {
    let get = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string()
    };
    format!("ua={} token={}", get("user-agent"), get("x-app-token"))
}

#[tokio::test]
async fn credentials_never_follow_a_redirect_to_another_host() {
    let server = serve(
        Router::new()
            .route("/echo", get(echo))
            .route(
                "/same",
                get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/echo")]) }),
            )
            .route(
                "/away",
                get(|headers: HeaderMap| async move {
                    // The same server under another name is another host to a client.
                    let host = headers[header::HOST]
                        .to_str()
                        .unwrap()
                        .replace("127.0.0.1", "localhost");
                    (
                        StatusCode::FOUND,
                        [(header::LOCATION, format!("http://{host}/echo"))],
                    )
                }),
            ),
    )
    .await;
    let (client, _) = client(&settings());
    let get = |path: &str| {
        Request::new(Url::parse(&server.url(path)).unwrap())
            .secret(header::HeaderName::from_static("x-app-token"), "s3cret")
            .unwrap()
    };
    let body = |r: goalpost_fetch::Response| String::from_utf8(r.body.to_vec()).unwrap();
    assert_eq!(
        body(client.get(&get("/echo")).await.unwrap()),
        "ua=goalpost-test (city of Example; data@example.gov) token=s3cret"
    );
    assert!(body(client.get(&get("/same")).await.unwrap()).ends_with("token=s3cret"));
    assert!(
        body(client.get(&get("/away")).await.unwrap()).ends_with("token=-"),
        "the token stays behind when the redirect leaves the host"
    );
}

#[tokio::test]
async fn oversized_bodies_are_refused_as_sent_and_as_decompressed() {
    let zeros = vec![0u8; 3 << 20];
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&zeros).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(
        bomb.len() < 64 << 10,
        "3 MiB of zeros compress to a few KiB"
    );
    let server = serve(
        Router::new()
            .route("/big", get(move || async move { vec![b'x'; 2 << 20] }))
            .route(
                "/bomb",
                get(move || {
                    let bomb = bomb.clone();
                    async move { ([(header::CONTENT_ENCODING, "gzip")], bomb).into_response() }
                }),
            ),
    )
    .await;
    let mut s = settings();
    s.max_response_mib = 1;
    s.max_decompressed_mib = 2;
    let (client, waits) = client(&s);
    let err = client
        .get(&Request::new(Url::parse(&server.url("/big")).unwrap()))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("more than max_response_mib = 1"), "{err}");
    let err = client
        .get(&Request::new(Url::parse(&server.url("/bomb")).unwrap()))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("past max_decompressed_mib = 2"), "{err}");
    assert!(
        waits.lock().unwrap().is_empty(),
        "size limits are not retried"
    );
}

#[tokio::test]
async fn retry_rules_follow_the_status_and_the_server() {
    let hits = Arc::new(Mutex::new(Vec::<String>::new()));
    let h = hits.clone();
    let server = serve(Router::new().route(
        "/{status}",
        get(
            move |axum::extract::Path(status): axum::extract::Path<String>| {
                let h = h.clone();
                async move {
                    h.lock().unwrap().push(status.clone());
                    let code = StatusCode::from_u16(status.parse().unwrap()).unwrap();
                    let mut r: Response = (code, "nope").into_response();
                    if code == StatusCode::TOO_MANY_REQUESTS {
                        r.headers_mut()
                            .insert(header::RETRY_AFTER, "0".parse().unwrap());
                    }
                    if code == StatusCode::SERVICE_UNAVAILABLE {
                        r.headers_mut()
                            .insert(header::RETRY_AFTER, "3600".parse().unwrap());
                    }
                    r
                }
            },
        ),
    ))
    .await;
    let (client, waits) = client(&settings());
    let get = |s: &str| Request::new(Url::parse(&server.url(&format!("/{s}"))).unwrap());
    let count = |s: &str| hits.lock().unwrap().iter().filter(|h| *h == s).count();

    // 404 and 400: the request is wrong; asking again will not help.
    for s in ["404", "400"] {
        let err = client.get(&get(s)).await.unwrap_err().to_string();
        assert!(err.contains(s) && !err.contains("gave up"), "{err}");
        assert_eq!(count(s), 1, "{s} is not retried");
    }
    // 408 and 429 are retried; Retry-After: 0 waits the floor, not zero.
    for s in ["408", "429"] {
        let err = client.get(&get(s)).await.unwrap_err().to_string();
        assert!(err.contains("gave up after 4 attempts"), "{err}");
        assert_eq!(count(s), 4);
    }
    assert!(
        waits.lock().unwrap()[3..]
            .iter()
            .all(|w| *w >= Duration::from_millis(30)),
        "{:?}",
        waits.lock().unwrap()
    );
    // A Retry-After longer than the budget ends the retrying at once, saying why.
    let err = client.get(&get("503")).await.unwrap_err().to_string();
    assert!(err.contains("would pass retry_budget"), "{err}");
    assert_eq!(count("503"), 1);
}

#[tokio::test]
async fn requests_to_one_host_keep_to_the_rate_limit() {
    let server = serve(Router::new().route("/x", get(|| async { "ok" }))).await;
    let mut s = settings();
    s.requests_per_second = 20.0;
    let (client, _) = client(&s);
    let req = Request::new(Url::parse(&server.url("/x")).unwrap());
    let started = Instant::now();
    for _ in 0..5 {
        client.get(&req).await.unwrap();
    }
    // Five requests at 20 per second need at least four intervals of 50 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(195),
        "{:?}",
        started.elapsed()
    );
}

/// A raw server that answers connection `n` (from 0) with `answer(n)`: `Reset` closes it
/// with a TCP reset once the request is read, `Stall` sends the headers and part of the
/// body and then holds the connection open, `Ok` answers in full.
#[derive(Clone, Copy)]
enum Answer {
    Reset,
    Stall,
    Ok,
    /// Announces a 2 GiB body, sends 1 MiB of it and keeps sending while read.
    Huge,
}

async fn raw_server(answer: fn(usize) -> Answer) -> (String, Arc<Mutex<usize>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(Mutex::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let n = {
                let mut c = c.lock().unwrap();
                *c += 1;
                *c - 1
            };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            match answer(n) {
                Answer::Reset => {
                    s.set_zero_linger().unwrap();
                    drop(s);
                }
                Answer::Stall => {
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
                        .await;
                    held.push(s);
                }
                Answer::Huge => {
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2147483648\r\n\r\n")
                        .await;
                    let chunk = vec![b'x'; 1 << 20];
                    let _ = s.write_all(&chunk).await;
                    held.push(s);
                }
                Answer::Ok => {
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        )
                        .await;
                }
            }
        }
    });
    (format!("http://{addr}/data.json"), count)
}

#[tokio::test]
async fn transport_faults_are_retried_then_reported() {
    // Connection refused: nothing listens on the port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (c, waits) = client(&settings());
    let refused = Request::new(Url::parse(&format!("http://127.0.0.1:{port}/x.json")).unwrap());
    let err = c.get(&refused).await.unwrap_err().to_string();
    assert!(err.contains("gave up after 4 attempts"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert_eq!(
        waits.lock().unwrap().len(),
        3,
        "three waits between four attempts"
    );

    // Connections reset twice, then an answer: the answer is read.
    let (url, count) = raw_server(|n| if n < 2 { Answer::Reset } else { Answer::Ok }).await;
    let (c, _) = client(&settings());
    let r = c
        .get(&Request::new(Url::parse(&url).unwrap()))
        .await
        .unwrap();
    assert_eq!(&r.body[..], b"ok");
    assert_eq!(*count.lock().unwrap(), 3);

    // Reset every time: the error says so after the retries.
    let (url, _) = raw_server(|_| Answer::Reset).await;
    let (c, _) = client(&settings());
    let err = c
        .get(&Request::new(Url::parse(&url).unwrap()))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("gave up after 4 attempts"), "{err}");

    // A 2 GiB response, with the default limits: refused as announced, before its body is
    // read, and not retried.
    let (url, count) = raw_server(|_| Answer::Huge).await;
    let (c, waits) = client(&settings());
    let err = c
        .get(&Request::new(Url::parse(&url).unwrap()))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the response is 2048 MiB, more than max_response_mib = 512"),
        "{err}"
    );
    assert_eq!(*count.lock().unwrap(), 1);
    assert!(waits.lock().unwrap().is_empty());

    // A body that stops mid-way: the read times out, the request is retried and the
    // second answer is read.
    let (url, count) = raw_server(|n| if n == 0 { Answer::Stall } else { Answer::Ok }).await;
    let mut quick = settings();
    quick.timeout = Duration::from_millis(300);
    let (c, _) = client(&quick);
    let r = c
        .get(&Request::new(Url::parse(&url).unwrap()))
        .await
        .unwrap();
    assert_eq!(&r.body[..], b"ok");
    assert_eq!(*count.lock().unwrap(), 2);
}
