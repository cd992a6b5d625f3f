//! A real S3-compatible server: moto's server mode (PyPI `moto[server]`, pinned by
//! `tools/install-test-servers` into `.tools/moto/`).
//!
//! [`Moto::start`] runs `.tools/moto/bin/moto_server -H 127.0.0.1 -p 0`, reads the port from
//! Werkzeug's `Running on http://127.0.0.1:PORT` line and returns once `/moto-api/data.json`
//! answers. Every instance keeps its buckets in memory and is killed when dropped, so tests
//! never see each other's objects.
//!
//! moto speaks the S3 REST API with SigV4 (any access key is accepted), including the
//! conditional writes delta-rs commits with (`If-None-Match: *`, answered with
//! `412 Precondition Failed` when the key exists) and multipart uploads. [`Moto::env`] is
//! what a goalpost process needs to use it: the usual `AWS_*` variables.

use super::{
    ChildOutput, RealServerError, await_ready, current_test_name, skip_or_fail, tools_dir,
};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

const SERVER: &str = "moto";

/// The access key and secret moto is given (it accepts any).
pub const ACCESS_KEY: &str = "goalpost-test";
pub const SECRET_KEY: &str = "goalpost-test-secret";
pub const REGION: &str = "us-east-1";

/// A running moto server; killed when dropped.
#[derive(Debug)]
pub struct Moto {
    endpoint: String,
    output: ChildOutput,
    child: Child,
}

/// The `moto_server` executable `tools/install-test-servers` installs.
pub fn executable() -> PathBuf {
    tools_dir().join("moto").join("bin").join("moto_server")
}

/// Starts moto, applying the missing-server policy of [`skip_or_fail`] with the current
/// test's name.
///
/// # Panics
/// When moto is missing under CI, or installed but failing to start.
pub async fn start_or_skip() -> Option<Moto> {
    skip_or_fail(&current_test_name(), Moto::start().await)
}

impl Moto {
    /// Runs moto on 127.0.0.1 at an OS-picked port and waits until it answers.
    pub async fn start() -> Result<Moto, RealServerError> {
        let executable = executable();
        if !executable.is_file() {
            return Err(RealServerError::Missing {
                server: SERVER,
                looked_for: executable,
            });
        }
        let mut child = Command::new(&executable)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| RealServerError::Spawn {
                server: SERVER,
                source,
            })?;
        let (output, port) = await_ready(
            SERVER,
            &mut child,
            Duration::from_secs(60),
            werkzeug_port,
            "/moto-api/data.json",
        )
        .await?;
        let endpoint = format!("http://127.0.0.1:{port}");
        Ok(Moto {
            endpoint,
            output,
            child,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Create a bucket (moto takes an unsigned `PUT /<bucket>`).
    pub async fn create_bucket(&self, bucket: &str) {
        let response = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await
            .expect("moto answers");
        assert!(
            response.status().is_success(),
            "creating bucket {bucket}: {}",
            response.status()
        );
    }

    /// The environment a goalpost process reads its S3 settings from.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// What the server has printed so far (its request log included).
    pub fn output(&self) -> String {
        self.output.text()
    }

    /// Kills the server and waits for it to exit.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The port in Werkzeug's ` * Running on http://127.0.0.1:PORT`.
fn werkzeug_port(line: &str) -> Option<u16> {
    let rest = &line[line.find("Running on http://")? + "Running on http://".len()..];
    let rest = &rest[rest.find(':')? + 1..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|port| *port != 0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_port_is_read_from_werkzeugs_line() {
        assert_eq!(
            super::werkzeug_port(" * Running on http://127.0.0.1:42325"),
            Some(42325)
        );
        assert_eq!(super::werkzeug_port("Press CTRL+C to quit"), None);
        assert_eq!(
            super::werkzeug_port(" * Running on http://127.0.0.1:0"),
            None
        );
    }
}
