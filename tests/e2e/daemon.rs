//! `goalpost daemon` as a real process: schedules, HTTP, metrics, reload and shutdown; and the
//! run lock that keeps a manual run and another process apart.

use crate::{Project, demo_dir};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Longest wait for an event the daemon should log; generous for slow CI machines, and
/// never spent unless something is wrong.
const PATIENCE: Duration = Duration::from_secs(180);

/// A folder of pipelines: the demo's bicycle counts and fire calls, due every 2 seconds.
/// The bicycle counts skip missed runs, so only the schedule starts them.
fn fast_pipelines(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::os::unix::fs::symlink(demo_dir().join("data"), dir.join("data")).unwrap();
    for (id, extra) in [
        ("bike-counts", "catch_up = \"skip\"\n"),
        ("sf-fire-ems", ""),
    ] {
        let text = std::fs::read_to_string(demo_dir().join(format!("{id}.toml"))).unwrap();
        let mut out = String::new();
        for line in text.lines() {
            if line.starts_with("schedule = ") {
                out.push_str("schedule = \"*/2 * * * * *\"\n");
                out.push_str(extra);
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        std::fs::write(dir.join(format!("{id}.toml")), out).unwrap();
    }
}

struct Daemon {
    child: Child,
    addr: String,
    logs: mpsc::Receiver<serde_json::Value>,
    seen: Vec<serde_json::Value>,
}

impl Daemon {
    fn start(project: &Project) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_goalpost"))
            .arg("--config")
            .arg(project.path().join("config/goalpost.toml"))
            .args(["--log-format", "json", "daemon", "--bind", "127.0.0.1:0"])
            .env_remove("GOALPOST_CONFIG")
            .env_remove("RUST_LOG")
            .env("GOALPOST_ADMIN_TOKEN", "s3cret-t0ken")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start goalpost daemon");
        let addr = listening_addr(&mut child);
        let (tx, logs) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "message": line, "unparsed": true }));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            addr,
            logs,
            seen: Vec::new(),
        }
    }

    /// Wait for a log event matching `want`; returns it.
    fn wait_for(
        &mut self,
        what: &str,
        want: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        if let Some(v) = self.seen.iter().find(|v| want(v)) {
            return v.clone();
        }
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.logs.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if want(&v) {
                        return v;
                    }
                }
                Err(_) => panic!(
                    "no log event {what} within {PATIENCE:?}; logged:\n{}",
                    self.seen
                        .iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
            }
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

/// The address a daemon just started says it listens on (its first line of output).
pub fn listening_addr(child: &mut Child) -> String {
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    first
        .trim()
        .strip_prefix("goalpost daemon listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string()
}

fn event(v: &serde_json::Value, message: &str) -> bool {
    v["message"]
        .as_str()
        .is_some_and(|m| m.starts_with(message))
}

/// One HTTP/1.1 request; returns status, headers (lowercased names) and body.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let hs: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if hs
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v == "chunked")
    {
        body = unchunk(&body);
    }
    (status, hs, body)
}

/// Send `bytes` as they are and read the whole answer (the server may close early).
fn raw(addr: &str, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    // The server may answer and close before reading everything: a failed write is fine.
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn unchunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
}

fn header<'a>(hs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    hs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

#[test]
fn the_daemon_runs_on_schedule_serves_the_site_and_stops_cleanly() {
    let project = Project::new(Path::new("../pipelines"));
    let pipelines = project.path().join("pipelines");
    fast_pipelines(&pipelines);
    let config = project.path().join("config/goalpost.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[daemon]\nmax_concurrent_runs = 2\ngrace_period = \"60s\"\n");
    std::fs::write(&config, text).unwrap();

    let mut d = Daemon::start(&project);
    // The fire calls never ran: made up at start-up. The bicycle counts skip missed runs:
    // the schedule starts them.
    let fire = d.wait_for("catch-up start of sf-fire-ems", |v| {
        event(v, "run starting") && v["pipeline"] == "sf-fire-ems"
    });
    assert_eq!(fire["trigger"], "catch-up");
    let bike = d.wait_for("start of bike-counts", |v| {
        event(v, "run starting") && v["pipeline"] == "bike-counts"
    });
    assert_eq!(bike["trigger"], "schedule");
    for id in ["bike-counts", "sf-fire-ems"] {
        d.wait_for(&format!("success of {id}"), |v| {
            event(v, "run succeeded") && v["pipeline"] == id
        });
    }
    // Scheduled again, every 2 seconds.
    d.wait_for("a scheduled run of sf-fire-ems", |v| {
        event(v, "run starting") && v["pipeline"] == "sf-fire-ems" && v["trigger"] == "schedule"
    });

    let addr = d.addr.clone();
    // The site, from publish/current.
    let (status, hs, body) = http(&addr, "GET", "/", &[]);
    assert_eq!(status, 200);
    assert_eq!(
        header(&hs, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(String::from_utf8_lossy(&body).contains("Test &lt;city&gt; &amp; goals"));
    let (status, hs, body) = http(&addr, "GET", "/digest.json", &[]);
    assert_eq!(status, 200);
    let digest = json(&body);
    let ids: Vec<&str> = digest["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["bike-counts", "sf-fire-ems"]);
    assert!(header(&hs, "cache-control").is_some());
    let etag = header(&hs, "etag").expect("an ETag").to_string();
    // The same file again is not sent again (unless a run published in between).
    let (status, hs, body) = http(&addr, "GET", "/digest.json", &[("If-None-Match", &etag)]);
    match status {
        304 => assert!(body.is_empty()),
        // A run published a new version in between: a new file, a new tag.
        200 => assert_ne!(header(&hs, "etag"), Some(etag.as_str())),
        other => panic!("{other}"),
    }
    let (status, _, body) = http(&addr, "GET", "/digest.json", &[("If-None-Match", "*")]);
    assert_eq!((status, body.len()), (304, 0));
    let (status, hs, _) = http(&addr, "GET", "/feed.atom", &[("Accept-Encoding", "gzip")]);
    assert_eq!(status, 200);
    assert_eq!(header(&hs, "content-encoding"), Some("gzip"));
    // The gzipped and the plain bytes share a tag, so it must be a weak one.
    assert!(header(&hs, "etag").unwrap().starts_with("W/\""), "{hs:?}");
    assert!(
        header(&hs, "vary").is_some_and(|v| v.to_ascii_lowercase().contains("accept-encoding")),
        "{hs:?}"
    );
    assert!(
        header(&hs, "content-type")
            .unwrap()
            .starts_with("application/atom+xml")
    );
    // Nothing outside the published version, and no listings.
    for path in [
        "/../config/goalpost.toml",
        "/%2e%2e/config/goalpost.toml",
        "/%252e%252e/x",
        "/goals/",
        "/.lock",
        "/data/",
        "/nope.html",
    ] {
        let (status, _, body) = http(&addr, "GET", path, &[]);
        assert_eq!(status, 404, "{path}: {}", String::from_utf8_lossy(&body));
    }

    // The API.
    let (status, _, body) = http(&addr, "GET", "/api/pipelines", &[]);
    assert_eq!(status, 200);
    let list = json(&body);
    let bike = &list["pipelines"][0];
    assert_eq!(bike["id"], "bike-counts");
    assert_eq!(bike["schedule"], "*/2 * * * * *");
    assert!(bike["next_run"].is_string());
    let (status, _, body) = http(&addr, "GET", "/api/runs?pipeline=sf-fire-ems&limit=3", &[]);
    assert_eq!(status, 200);
    let runs = json(&body);
    let runs = runs["runs"].as_array().unwrap();
    assert!(!runs.is_empty() && runs.len() <= 3);
    assert!(runs.iter().all(|r| r["pipeline"] == "sf-fire-ems"));
    let done = runs
        .iter()
        .find(|r| r["status"] == "succeeded")
        .expect("a finished run");
    let (status, _, body) = http(
        &addr,
        "GET",
        &format!("/api/runs/{}", done["id"].as_str().unwrap()),
        &[],
    );
    assert_eq!(status, 200);
    assert!(json(&body)["checks"].is_array());
    assert_eq!(http(&addr, "GET", "/api/runs/no-such-run", &[]).0, 404);

    // Run requests need the token.
    let (status, hs, _) = http(&addr, "POST", "/api/pipelines/bike-counts/run", &[]);
    assert_eq!(status, 401);
    assert!(header(&hs, "www-authenticate").is_some());
    let (status, _, _) = http(
        &addr,
        "POST",
        "/api/pipelines/bike-counts/run",
        &[("Authorization", "Bearer n0t-the-t0ken")],
    );
    assert_eq!(status, 401);
    let auth = [("Authorization", "Bearer s3cret-t0ken")];
    assert_eq!(http(&addr, "POST", "/api/pipelines/nope/run", &auth).0, 404);
    for id in ["..%2F..%2Fx", "%2e%2e", "bike-counts%2F..%2Fsf-fire-ems"] {
        let path = format!("/api/pipelines/{id}/run");
        assert_eq!(http(&addr, "POST", &path, &auth).0, 404, "{path}");
    }
    let (status, _, body) = http(&addr, "POST", "/api/pipelines/bike-counts/run", &auth);
    assert!(
        status == 202 || status == 409,
        "{status} {}",
        String::from_utf8_lossy(&body)
    );

    // Limits: a large body, large headers, and a client that stalls mid-request while
    // others are served.
    let big = "x".repeat(100_000);
    let answer = raw(
        &addr,
        format!(
            "POST /api/pipelines/bike-counts/run HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer s3cret-t0ken\r\nContent-Length: {}\r\n\r\n{big}",
            big.len()
        )
        .as_bytes(),
    );
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    let answer = raw(
        &addr,
        format!(
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
            &big[..40_000]
        )
        .as_bytes(),
    );
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    let mut stalled = TcpStream::connect(&addr).unwrap();
    stalled.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    assert_eq!(http(&addr, "GET", "/healthz", &[]).0, 200);
    drop(stalled);

    // Health, readiness, metrics.
    assert_eq!(http(&addr, "GET", "/healthz", &[]).0, 200);
    let (status, _, body) = http(&addr, "GET", "/readyz", &[]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (status, hs, body) = http(&addr, "GET", "/metrics", &[]);
    assert_eq!(status, 200);
    assert!(
        header(&hs, "content-type")
            .unwrap()
            .contains("openmetrics-text")
    );
    let metrics = String::from_utf8_lossy(&body).into_owned();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("{name} not in\n{metrics}"))
    };
    for id in ["bike-counts", "sf-fire-ems"] {
        assert!(
            value(&format!(
                "goalpost_runs_total{{pipeline=\"{id}\",outcome=\"succeeded\"}}"
            )) >= 1.0
        );
        assert!(
            value(&format!(
                "goalpost_run_duration_seconds_count{{pipeline=\"{id}\"}}"
            )) >= 1.0
        );
        assert!(value(&format!("goalpost_rows_fetched_total{{pipeline=\"{id}\"}}")) >= 1.0);
        assert!(
            value(&format!(
                "goalpost_last_success_timestamp_seconds{{pipeline=\"{id}\"}}"
            )) > 1.7e9
        );
        assert!(value(&format!("goalpost_data_age_seconds{{pipeline=\"{id}\"}}")) >= 0.0);
    }
    // News: the ledger's count (no new events arise between runs of unchanged data).
    let news: serde_json::Value =
        serde_json::from_str(&project.ok(&["news", "list", "--json"])).unwrap();
    let published = news
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["status"] == "published")
        .count();
    assert_eq!(
        value("goalpost_news_items{status=\"published\"}"),
        published as f64
    );

    // SIGHUP with a broken pipeline file keeps the set in force; fixed, it is reloaded.
    let broken = pipelines.join("broken.toml");
    std::fs::write(&broken, "title = 1\n").unwrap();
    d.signal("HUP");
    let err = d.wait_for("the reload refused", |v| {
        event(v, "SIGHUP: the new configuration has errors")
    });
    assert!(
        err["error"].as_str().unwrap().contains("broken.toml"),
        "{err}"
    );
    std::fs::remove_file(&broken).unwrap();
    d.signal("HUP");
    let ok = d.wait_for("the reload", |v| {
        event(v, "SIGHUP: configuration and pipelines reloaded")
    });
    assert_eq!(ok["pipelines"], 2);

    // SIGTERM: no new runs, running ones finish, exit 0 within the grace period.
    d.signal("TERM");
    let (tx, rx) = mpsc::channel();
    let mut child = d.child;
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = rx
        .recv_timeout(Duration::from_secs(60 + 15))
        .expect("the daemon exits within its grace period")
        .unwrap();
    assert!(status.success(), "exit status {status}");
    // Neither the token nor a wrong one given for it is ever written down.
    let mut logged: Vec<String> = d.seen.iter().map(|v| v.to_string()).collect();
    logged.extend(d.logs.iter().map(|v| v.to_string()));
    assert!(
        logged.iter().any(|l| l.contains("\"stopped\"")),
        "{logged:?}"
    );
    let records = project.ok(&["runs", "--json", "--limit", "1000"]);
    for secret in ["s3cret-t0ken", "n0t-the-t0ken"] {
        assert!(
            !logged.iter().any(|l| l.contains(secret)),
            "{secret} logged"
        );
        assert!(!records.contains(secret), "{secret} in the run records");
    }
    // The last digest is whole, and no run is left looking as if it were still going.
    let digest = project.digest();
    assert_eq!(digest["pipelines"].as_array().unwrap().len(), 2);
    assert!(project.current().join("index.html").is_file());
    let runs = project.ok(&["runs", "--json", "--limit", "1000"]);
    let runs: serde_json::Value = serde_json::from_str(&runs).unwrap();
    for r in runs.as_array().unwrap() {
        assert_ne!(r["status"], "running", "{r}");
    }
    let status = project.ok(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(
        status
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["running"].is_null())
    );
}

#[test]
fn a_run_still_going_after_the_grace_period_is_cancelled_and_recorded_interrupted() {
    // A portal that accepts the connection and never answers: the run stays in its fetch.
    let portal = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let portal_addr = portal.local_addr().unwrap();
    let (accepted, connections) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in portal.incoming() {
            // Keep the connection open and silent.
            if accepted.send(stream).is_err() {
                break;
            }
        }
    });
    let pipelines = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(demo_dir().join("sf-fire-ems.toml")).unwrap();
    let source = "kind = \"file\"\npath = \"data/sffire/fire_department_calls_2016.csv\"\n";
    assert!(text.contains(source));
    let text = text.replace(
        source,
        &format!("kind = \"http\"\nurl = \"http://{portal_addr}/calls.csv\"\n"),
    );
    std::fs::write(pipelines.path().join("sf-fire-ems.toml"), text).unwrap();
    let project = Project::new(pipelines.path());
    let config = project.path().join("config/goalpost.toml");
    let mut settings = std::fs::read_to_string(&config).unwrap();
    settings.push_str("\n[fetch]\ntimeout = \"1h\"\n\n[daemon]\ngrace_period = \"1s\"\n");
    std::fs::write(&config, settings).unwrap();

    // Never run before, so the daemon catches up at once and the run connects to the portal.
    let d = Daemon::start(&project);
    let _held = connections
        .recv_timeout(PATIENCE)
        .expect("the run connects to the portal")
        .unwrap();
    let running = project.ok(&["status", "--json"]);
    let running: serde_json::Value = serde_json::from_str(&running).unwrap();
    let run_id = running[0]["running"]["run_id"]
        .as_str()
        .unwrap_or_else(|| panic!("a run in progress: {running}"))
        .to_string();

    d.signal("TERM");
    let (tx, rx) = mpsc::channel();
    let mut child = d.child;
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    // The grace period is 1 s and the run would wait an hour: the daemon must cancel it.
    let status = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the daemon exits soon after its grace period")
        .unwrap();
    assert!(status.success(), "exit status {status}");
    let logged: Vec<serde_json::Value> = d.seen.into_iter().chain(d.logs.iter()).collect();
    let cancelled = logged
        .iter()
        .find(|v| event(v, "cancelled runs still going after the grace period"))
        .unwrap_or_else(|| panic!("no cancellation logged: {logged:?}"));
    assert_eq!(cancelled["cancelled"], 1, "{cancelled}");

    // The run is recorded as interrupted, its lock is free, and nothing was published.
    let runs = project.ok(&["runs", "--json"]);
    let runs: serde_json::Value = serde_json::from_str(&runs).unwrap();
    let run = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == run_id.as_str())
        .unwrap_or_else(|| panic!("run {run_id} in {runs}"));
    assert_eq!(run["status"], "interrupted", "{run}");
    assert!(
        run["error"].as_str().unwrap().contains("interrupted"),
        "{run}"
    );
    let status = project.ok(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(status[0]["running"].is_null(), "{status}");
    assert!(!project.current().exists());
}

/// This process's identity as the run lock records it (boot id and start time).
fn identity(pid: &str) -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 1..];
    format!(
        "{}:{}",
        boot.trim(),
        after.split_whitespace().nth(19).unwrap()
    )
}

#[test]
fn a_manual_run_is_refused_while_the_lock_is_held_and_takes_over_from_a_killed_run() {
    let project = Project::new(&demo_dir());
    let state = goalpost_state::StateStore::open(&project.path().join("data/state.sqlite"));
    let mut state = state.unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host = host.trim();
    let at = chrono::Utc::now();
    // A live process (this test) holds bike-counts.
    state.start_run("r-live", "bike-counts", at).unwrap();
    let live = goalpost_state::LockHolder {
        pipeline: "bike-counts".into(),
        run_id: "r-live".into(),
        pid: std::process::id(),
        host: host.into(),
        process: identity("self"),
        acquired_at: at,
    };
    state.lock_pipeline(&live, &|_| true).unwrap();
    let out = project.goalpost(&["run", "bike-counts"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "pipeline bike-counts is already running: run r-live started at {} by process {} on {host}",
            at.format("%Y-%m-%d %H:%M:%S UTC"),
            std::process::id()
        )),
        "{err}"
    );
    let shown = project.ok(&["status"]);
    assert!(
        shown.contains("running") && shown.contains("run r-live"),
        "{shown}"
    );
    // The holder is killed (here: a process that has ended) without letting go.
    state.unlock_pipeline("bike-counts", "r-live").unwrap();
    let mut gone = Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    let gone_identity = identity(&gone_pid.to_string());
    gone.wait().unwrap();
    let dead = goalpost_state::LockHolder {
        pid: gone_pid,
        process: gone_identity,
        ..live
    };
    state.lock_pipeline(&dead, &|_| true).unwrap();
    project.ok(&["run", "bike-counts"]);
    let r = state.run("r-live").unwrap().unwrap();
    assert_eq!(r.status, goalpost_state::RunStatus::Interrupted);
    assert!(r.error.unwrap().contains(&format!("pid {gone_pid}")));
    assert!(state.pipeline_locks().unwrap().is_empty());
}

/// One keep-alive connection: requests in turn, each answer read to its Content-Length.
struct Client {
    stream: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: &str) -> Self {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Self {
            stream: BufReader::new(s),
        }
    }

    /// Status and body, or what went wrong.
    fn get(&mut self, path: &str) -> Result<(u16, Vec<u8>), String> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: goalpost\r\n\r\n");
        self.stream
            .get_mut()
            .write_all(req.as_bytes())
            .map_err(|e| e.to_string())?;
        let mut status_line = String::new();
        self.stream
            .read_line(&mut status_line)
            .map_err(|e| e.to_string())?;
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let mut length = None;
        loop {
            let mut line = String::new();
            self.stream
                .read_line(&mut line)
                .map_err(|e| e.to_string())?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse::<usize>().ok();
            }
        }
        let mut body = vec![0; length.ok_or("no Content-Length")?];
        self.stream
            .read_exact(&mut body)
            .map_err(|e| e.to_string())?;
        Ok((status, body))
    }
}

/// 200 clients for 20 seconds against the daemon while its pipelines publish every 2
/// seconds: no errors, and every digest served is whole and one that was published.
#[test]
fn two_hundred_clients_read_whole_versions_while_publishing() {
    const CLIENTS: usize = 200;
    const SECONDS: u64 = 20;
    let project = Project::new(Path::new("../pipelines"));
    let pipelines = project.path().join("pipelines");
    fast_pipelines(&pipelines);
    let mut d = Daemon::start(&project);
    for id in ["bike-counts", "sf-fire-ems"] {
        d.wait_for(&format!("success of {id}"), |v| {
            event(v, "run succeeded") && v["pipeline"] == id
        });
    }
    let versions_dir = project.path().join("publish/versions");
    let first = project.digest()["version"].as_str().unwrap().to_string();
    let until = std::time::Instant::now() + Duration::from_secs(SECONDS);
    let handles: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let addr = d.addr.clone();
            std::thread::spawn(move || {
                let mut client = Client::connect(&addr);
                let mut latencies = Vec::new();
                let mut errors = Vec::new();
                let mut versions = std::collections::BTreeSet::new();
                let paths = ["/digest.json", "/", "/feed.atom", "/data.json"];
                let mut n = i;
                while std::time::Instant::now() < until {
                    let path = paths[n % paths.len()];
                    n += 1;
                    let t = std::time::Instant::now();
                    match client.get(path) {
                        Ok((200, body)) => {
                            latencies.push(t.elapsed());
                            if path == "/digest.json" {
                                match serde_json::from_slice::<serde_json::Value>(&body) {
                                    Ok(v) => {
                                        versions.insert(
                                            v["version"].as_str().unwrap_or("?").to_string(),
                                        );
                                    }
                                    Err(e) => errors.push(format!("torn digest: {e}")),
                                }
                            }
                        }
                        Ok((status, _)) => errors.push(format!("{path}: status {status}")),
                        Err(e) => {
                            errors.push(format!("{path}: {e}"));
                            client = Client::connect(&addr);
                        }
                    }
                }
                (latencies, errors, versions)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    let mut versions = std::collections::BTreeSet::new();
    for h in handles {
        let (l, e, v) = h.join().unwrap();
        latencies.extend(l);
        errors.extend(e);
        versions.extend(v);
    }
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    eprintln!(
        "load: {CLIENTS} clients, {SECONDS} s: {} requests, {} errors, {} digest versions seen, p50 {:?}, p99 {:?}, max {:?}",
        latencies.len() + errors.len(),
        errors.len(),
        versions.len(),
        p(0.5),
        p(0.99),
        latencies.last().unwrap()
    );
    assert!(
        errors.is_empty(),
        "{} errors, e.g. {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    // Publishing went on meanwhile, and every version served was a published one.
    assert!(versions.len() > 1, "{versions:?}");
    let last = project.digest()["version"].as_str().unwrap().to_string();
    assert_ne!(first, last);
    for v in &versions {
        assert!(
            versions_dir.join(v).is_dir()
                || std::fs::read_to_string(versions_dir.join(".history"))
                    .unwrap()
                    .lines()
                    .any(|l| l == format!("publish {v}")),
            "{v} was never published"
        );
    }
    d.signal("TERM");
    let _ = d.child.wait();
}
