//! End-to-end tests of the `goalpost` binary, each in its own temporary project folder.
//!
//! Expected figures are computed here from the raw fixture files with plain Rust, never
//! copied from goalpost's output.

mod connectors;
mod crash;
mod daemon;
mod demo;
mod failures;
mod hostile;
mod measures;
mod news;
mod object_storage;
mod quality;
mod reproduce;
mod site;
mod validate;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's root (where Cargo.toml is).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn demo_dir() -> PathBuf {
    repo().join("pipelines/demo")
}

/// A project folder with its own config, data and publish dirs, reading pipelines from
/// `pipelines`.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new(pipelines: &Path) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("config")).unwrap();
        std::fs::write(
            dir.path().join("config/goalpost.toml"),
            format!(
                "data_dir = \"../data\"\npublish_dir = \"../publish\"\npipelines_dir = {:?}\n\n[site]\ntitle = \"Test <city> & goals\"\n",
                pipelines.display().to_string()
            ),
        )
        .unwrap();
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn goalpost(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_goalpost"))
            .arg("--config")
            .arg(self.path().join("config/goalpost.toml"))
            .args(args)
            .env_remove("GOALPOST_CONFIG")
            .env("RUST_LOG", "error")
            .output()
            .expect("run goalpost")
    }

    /// Run and insist it succeeded.
    pub fn ok(&self, args: &[&str]) -> String {
        succeeded(args, self.goalpost(args))
    }

    pub fn current(&self) -> PathBuf {
        self.path().join("publish/current")
    }

    pub fn digest(&self) -> serde_json::Value {
        let text =
            std::fs::read_to_string(self.current().join("digest.json")).expect("digest.json");
        serde_json::from_str(&text).expect("digest.json is JSON")
    }
}

/// The standard output of `goalpost ARGS`, after insisting it succeeded.
pub fn succeeded(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "goalpost {args:?} failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Start `command` paused at `point` (the `GOALPOST_PAUSE_AT` hook), and SIGKILL it there.
pub fn kill_at_pause(mut command: Command, point: &str) {
    use std::io::{BufRead, BufReader};
    let mut child = command
        .env("GOALPOST_PAUSE_AT", point)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = Vec::new();
    let mut paused = false;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if line == format!("goalpost: paused at {point}") {
            paused = true;
            break;
        }
        said.push(line);
    }
    assert!(
        paused,
        "never paused at {point}; stderr:\n{}",
        said.join("\n")
    );
    child.kill().unwrap(); // SIGKILL
    assert!(!child.wait().unwrap().success());
}

/// Pipeline `id`'s part of a digest.
pub fn pipeline_part<'a>(digest: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    digest["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("pipeline {id} in digest"))
}

/// The goal `id` of pipeline `pipeline` in a digest.
pub fn goal<'a>(digest: &'a serde_json::Value, pipeline: &str, id: &str) -> &'a serde_json::Value {
    pipeline_part(digest, pipeline)["goals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == id)
        .unwrap_or_else(|| panic!("goal {id} in digest"))
}

/// The value of an indicator's total for a period.
pub fn figure(
    digest: &serde_json::Value,
    pipeline: &str,
    indicator: &str,
    period: &str,
) -> Option<f64> {
    let p = digest["pipelines"]
        .as_array()?
        .iter()
        .find(|p| p["id"] == pipeline)?;
    let ind = p["indicators"]
        .as_array()?
        .iter()
        .find(|i| i["id"] == indicator)?;
    ind["series"]
        .as_array()?
        .iter()
        .find(|s| s["period"] == period && s.get("group").is_none())?["value"]
        .as_f64()
}

/// Plain arithmetic the expected figures are computed with.
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// Linear interpolation between closest ranks (as `percentile_cont`).
pub fn percentile(mut xs: Vec<f64>, p: f64) -> f64 {
    xs.sort_by(f64::total_cmp);
    let rank = p * (xs.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    xs[lo] + (xs[hi] - xs[lo]) * (rank - lo as f64)
}

pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * b.abs().max(1.0)
}
