//! Real server software for tests: Datasette ([`datasette`]), Koop serving an ArcGIS
//! FeatureServer ([`koop`]) and moto's S3-compatible server ([`moto`]).
//!
//! All are installed outside Cargo by `tools/install-test-servers` into the workspace's
//! `.tools/` directory (or `$GOALPOST_TEST_TOOLS`). Each server runs as a child process bound
//! to 127.0.0.1 on a port the OS picks, is killed when its handle drops, and is ready when
//! `start` returns: readiness is read from the child's output and confirmed with a request,
//! under a bounded deadline, never by sleeping.
//!
//! # When a server is not installed
//!
//! `start` returns [`RealServerError::Missing`]. Tests apply one policy to it through
//! [`skip_or_fail`] (or the `start_or_skip` shortcuts):
//!
//! * under CI (`CI=true`) the test panics, naming `tools/install-test-servers`: CI must never
//!   pass by silently skipping;
//! * elsewhere it prints `SKIPPED: <test> needs <server>; run tools/install-test-servers` to
//!   stderr and the test returns early.
//!
//! Any other error (the server is installed but fails to start) fails the test everywhere.
//!
//! ```no_run
//! # async fn demo(db: &std::path::Path) {
//! use goalpost_testkit::real::datasette::{self, DatasetteOptions};
//! let Some(ds) = datasette::start_or_skip(db, DatasetteOptions::default()).await else {
//!     return;
//! };
//! # let _ = ds;
//! # }
//! ```

pub mod datasette;
pub mod koop;
pub mod moto;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;

/// The script that installs the real servers, relative to the workspace root.
pub const INSTALL_SCRIPT: &str = "tools/install-test-servers";

/// Environment variable overriding [`tools_dir`].
pub const TOOLS_ENV: &str = "GOALPOST_TEST_TOOLS";

/// The workspace root: the nearest ancestor of this crate's manifest directory whose
/// `Cargo.toml` declares `[workspace]`.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .ancestors()
        .find(|dir| {
            std::fs::read_to_string(dir.join("Cargo.toml"))
                .is_ok_and(|text| text.lines().any(|line| line.trim() == "[workspace]"))
        })
        .unwrap_or(manifest_dir)
        .to_path_buf()
}

/// Where `tools/install-test-servers` puts the servers: `$GOALPOST_TEST_TOOLS` when set and
/// not empty, otherwise `<workspace>/.tools`.
pub fn tools_dir() -> PathBuf {
    match std::env::var_os(TOOLS_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join(".tools"),
    }
}

/// Whether this run is CI's (`CI` set to `true` or `1`), where a missing server fails tests.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Why a real server could not be started.
#[derive(Debug)]
pub enum RealServerError {
    /// The server's software is not installed (`tools/install-test-servers` has not run).
    Missing {
        server: &'static str,
        /// What was looked for.
        looked_for: PathBuf,
    },
    /// The input the server should serve is unusable (e.g. the database file does not exist).
    BadInput(String),
    /// The process could not be spawned.
    Spawn {
        server: &'static str,
        source: std::io::Error,
    },
    /// The process exited before it was ready.
    Exited {
        server: &'static str,
        status: String,
        output: String,
    },
    /// The process did not become ready within the deadline.
    Timeout {
        server: &'static str,
        waited: Duration,
        output: String,
    },
}

impl RealServerError {
    /// Whether this is [`RealServerError::Missing`].
    pub fn is_missing(&self) -> bool {
        matches!(self, RealServerError::Missing { .. })
    }
}

impl fmt::Display for RealServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RealServerError::Missing { server, looked_for } => write!(
                f,
                "{server} is not installed (looked for {}); run {INSTALL_SCRIPT}",
                looked_for.display()
            ),
            RealServerError::BadInput(message) => f.write_str(message),
            RealServerError::Spawn { server, source } => {
                write!(f, "could not start {server}: {source}")
            }
            RealServerError::Exited {
                server,
                status,
                output,
            } => {
                write!(
                    f,
                    "{server} exited before it was ready ({status}); its output:\n{output}"
                )
            }
            RealServerError::Timeout {
                server,
                waited,
                output,
            } => write!(
                f,
                "{server} was not ready after {:.1}s; its output:\n{output}",
                waited.as_secs_f64()
            ),
        }
    }
}

impl std::error::Error for RealServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RealServerError::Spawn { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The name of the running test: libtest names each test's thread after it. Falls back to
/// `"this test"` on other threads (e.g. a multi-thread runtime's workers).
pub fn current_test_name() -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" && !name.starts_with("tokio-") => name.to_owned(),
        _ => "this test".to_owned(),
    }
}

/// Applies the missing-server policy to the result of starting a real server.
///
/// * `Ok(server)` → `Some(server)`.
/// * [`RealServerError::Missing`] under CI → panics with a message naming
///   `tools/install-test-servers`.
/// * [`RealServerError::Missing`] elsewhere → prints
///   `SKIPPED: <test> needs <server>; run tools/install-test-servers` to stderr and returns
///   `None`, so the test can return early.
/// * Any other error → panics: the server is installed but broken.
pub fn skip_or_fail<T>(test: &str, result: Result<T, RealServerError>) -> Option<T> {
    match result {
        Ok(server) => Some(server),
        Err(RealServerError::Missing { server, looked_for }) => {
            if in_ci() {
                panic!(
                    "{test} needs {server}, which is not installed (looked for {}). \
                     CI must install it: run {INSTALL_SCRIPT} before the tests.",
                    looked_for.display()
                );
            }
            // Written to the stderr handle itself: libtest's output capture takes only what
            // goes through `eprintln!`, and a skip must be visible in a normal run.
            let notice = format!(
                "\nSKIPPED: {test} needs {server}; run {INSTALL_SCRIPT}\n         (looked for {})\n",
                looked_for.display()
            );
            let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), notice.as_bytes());
            None
        }
        Err(other) => panic!("{test}: {other}"),
    }
}

/// Wait for a spawned server `child` (stdout and stderr piped) to be ready: its output is
/// drained into a [`ChildOutput`] for its whole life, `find_port` reads the port from the line
/// that announces it, and then `GET http://127.0.0.1:PORT{health}` must answer, all within
/// `timeout`. Returns the output and the port.
pub(crate) async fn await_ready(
    server: &'static str,
    child: &mut tokio::process::Child,
    timeout: Duration,
    find_port: impl FnMut(&str) -> Option<u16>,
    health: &str,
) -> Result<(ChildOutput, u16), RealServerError> {
    let output = ChildOutput::default();
    let (lines_tx, mut lines) = mpsc::unbounded_channel();
    if let Some(stdout) = child.stdout.take() {
        output.drain(stdout, lines_tx.clone());
    }
    if let Some(stderr) = child.stderr.take() {
        output.drain(stderr, lines_tx);
    }
    let started = Instant::now();
    let deadline = started + timeout;
    let port = match wait_for_line(child, &mut lines, deadline, find_port).await {
        Ok(port) => port,
        Err(exited) => return Err(output.not_ready(server, exited, started)),
    };
    drop(lines);
    if let Err(failure) =
        wait_until_answers(&format!("http://127.0.0.1:{port}{health}"), deadline).await
    {
        let exited = child.try_wait().ok().flatten().map(|s| s.to_string());
        let mut err = output.not_ready(server, exited, started);
        if let RealServerError::Timeout { output, .. } = &mut err {
            output.push_str(&failure);
        }
        return Err(err);
    }
    Ok((output, port))
}

/// Output a server child has written, kept for error messages and [`ChildOutput::text`].
///
/// Reader tasks drain the child's stdout and stderr for its whole life (so the child never
/// blocks on a full pipe), append every line here, and forward each line to a channel that
/// `start` watches for the readiness line.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChildOutput {
    text: Arc<Mutex<String>>,
}

/// Keep at most this much of a child's output (the most recent part).
const OUTPUT_LIMIT: usize = 256 * 1024;

impl ChildOutput {
    fn push_line(&self, line: &str) {
        let mut text = self.text.lock().unwrap_or_else(|p| p.into_inner());
        text.push_str(line);
        text.push('\n');
        if text.len() > OUTPUT_LIMIT {
            let mut cut = text.len() - OUTPUT_LIMIT / 2;
            while !text.is_char_boundary(cut) {
                cut += 1;
            }
            text.replace_range(..cut, "[...]\n");
        }
    }

    /// The error for a `server` that did not become ready: it exited (with `exited`'s
    /// status) or the wait that began at `started` ran out.
    pub(crate) fn not_ready(
        &self,
        server: &'static str,
        exited: Option<String>,
        started: Instant,
    ) -> RealServerError {
        match exited {
            Some(status) => RealServerError::Exited {
                server,
                status,
                output: self.text(),
            },
            None => RealServerError::Timeout {
                server,
                waited: started.elapsed(),
                output: self.text(),
            },
        }
    }

    /// Everything kept so far.
    pub(crate) fn text(&self) -> String {
        self.text.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Spawns a task that copies `stream` line by line into this buffer and into `lines`.
    pub(crate) fn drain<R>(&self, stream: R, lines: mpsc::UnboundedSender<String>)
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let output = self.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stream).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                output.push_line(&line);
                // The receiver goes away once the server is ready; keep draining anyway.
                let _ = lines.send(line);
            }
        });
    }
}

/// Waits for the first output line for which `find` returns a value, until `deadline`.
/// Returns `Err(None)` on timeout and `Err(Some(status))` when the child exited first.
pub(crate) async fn wait_for_line<T>(
    child: &mut tokio::process::Child,
    lines: &mut mpsc::UnboundedReceiver<String>,
    deadline: Instant,
    mut find: impl FnMut(&str) -> Option<T>,
) -> Result<T, Option<String>> {
    let mut streams_open = true;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(None);
        }
        if streams_open {
            tokio::select! {
                line = lines.recv() => match line {
                    Some(line) => {
                        if let Some(found) = find(&line) {
                            return Ok(found);
                        }
                    }
                    None => streams_open = false,
                },
                status = child.wait() => {
                    // Collect what the child printed last before reporting its exit.
                    while let Ok(line) = lines.try_recv() {
                        if let Some(found) = find(&line) {
                            return Ok(found);
                        }
                    }
                    return Err(Some(describe_exit(status)));
                }
                _ = tokio::time::sleep(remaining) => return Err(None),
            }
        } else {
            tokio::select! {
                status = child.wait() => return Err(Some(describe_exit(status))),
                _ = tokio::time::sleep(remaining) => return Err(None),
            }
        }
    }
}

fn describe_exit(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(err) => format!("wait failed: {err}"),
    }
}

/// Polls `url` with GET until it answers 200, until `deadline`. Returns the last failure.
pub(crate) async fn wait_until_answers(url: &str, deadline: Instant) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let mut delay = Duration::from_millis(10);
    loop {
        let failure = match client.get(url).send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => format!("GET {url} answered {}", response.status()),
            Err(err) => format!("GET {url} failed: {err}"),
        };
        if Instant::now() + delay >= deadline {
            return Err(failure);
        }
        // A bounded back-off between connection attempts, not a wait for readiness.
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_workspace_root() {
        let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"));
        assert!(Path::new(env!("CARGO_MANIFEST_DIR")).starts_with(workspace_root()));
    }

    #[test]
    fn a_missing_server_skips_here_and_fails_in_ci() {
        let missing = || {
            Err::<(), _>(RealServerError::Missing {
                server: "Datasette",
                looked_for: "/nowhere/datasette".into(),
            })
        };
        if in_ci() {
            let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                skip_or_fail("some_test", missing())
            }))
            .unwrap_err();
            let message = panic.downcast_ref::<String>().unwrap();
            assert!(message.contains(INSTALL_SCRIPT), "{message}");
        } else {
            assert_eq!(skip_or_fail("some_test", missing()), None);
        }
        assert_eq!(
            skip_or_fail("some_test", Ok::<_, RealServerError>(7)),
            Some(7)
        );
    }

    #[test]
    fn other_start_failures_fail_the_test() {
        let exited = Err::<(), _>(RealServerError::Exited {
            server: "Koop",
            status: "exit status: 1".into(),
            output: "boom".into(),
        });
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            skip_or_fail("some_test", exited)
        }))
        .unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(
            message.contains("Koop exited before it was ready") && message.contains("boom"),
            "{message}"
        );
    }
}
