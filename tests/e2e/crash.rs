//! `goalpost run` killed with SIGKILL at chosen points (the `GOALPOST_PAUSE_AT` hook stops
//! the process there, so the kill is deterministic), then run again.

use crate::{Project, demo_dir};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// What a reader sees of a pipeline's figures: goal statuses and latest values, and every
/// indicator's series. Versions, run ids and times are left out.
fn figures(digest: &serde_json::Value, pipeline: &str) -> serde_json::Value {
    let p = crate::pipeline_part(digest, pipeline);
    let goals: Vec<serde_json::Value> = p["goals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| serde_json::json!([g["id"], g["status"], g["latest"], g["series"]]))
        .collect();
    let indicators: Vec<serde_json::Value> = p["indicators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| serde_json::json!([i["id"], i["series"]]))
        .collect();
    serde_json::json!({ "goals": goals, "indicators": indicators, "rows": p["table"]["rows"] })
}

/// Start `goalpost run PIPELINE --full` paused at `point`, and SIGKILL it there.
fn kill_at(project: &Project, pipeline: &str, point: &str) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_goalpost"));
    command
        .arg("--config")
        .arg(project.path().join("config/goalpost.toml"))
        .args(["run", pipeline, "--full"])
        .env_remove("GOALPOST_CONFIG")
        .env("RUST_LOG", "error");
    crate::kill_at_pause(command, point);
}

#[test]
fn a_run_killed_at_any_point_loses_nothing_and_the_rerun_matches_a_clean_run() {
    for point in ["fetch", "table-write", "publish"] {
        let project = Project::new(&demo_dir());
        project.ok(&["run", "sf-fire-ems"]);
        let before = project.digest();
        let clean = figures(&before, "sf-fire-ems");
        let version = before["version"].clone();

        kill_at(&project, "sf-fire-ems", point);

        // The published site is the old, complete version.
        let after_kill = project.digest();
        assert_eq!(after_kill["version"], version, "{point}");
        assert!(project.current().join("index.html").is_file());
        assert!(project.current().join("indicators.parquet").is_file());
        // The killed run is still recorded as running: nothing could record its end.
        let runs: serde_json::Value =
            serde_json::from_str(&project.ok(&["runs", "--json"])).unwrap();
        let killed = runs[0]["id"].as_str().unwrap().to_string();
        assert_eq!(runs[0]["status"], "running", "{point}");

        // The rerun takes over the dead run's lock, marks it interrupted, and publishes
        // the same figures a clean run does, from a readable table.
        project.ok(&["run", "sf-fire-ems"]);
        let runs: serde_json::Value =
            serde_json::from_str(&project.ok(&["runs", "--json"])).unwrap();
        let killed_run = runs
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == killed.as_str())
            .unwrap();
        assert_eq!(killed_run["status"], "interrupted", "{point}");
        assert_eq!(runs[0]["status"], "succeeded", "{point}");
        let rerun = project.digest();
        assert_ne!(rerun["version"], version);
        assert_eq!(figures(&rerun, "sf-fire-ems"), clean, "{point}");
        // What the killed publish left half-made is cleared.
        let partials: Vec<String> = std::fs::read_dir(project.path().join("publish/versions"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".partial"))
            .collect();
        assert!(partials.is_empty(), "{point}: {partials:?}");
        // And the table's history is whole: every version the digest names can be read back.
        let out = project.ok(&[
            "recompute",
            "--run",
            rerun["version"].as_str().unwrap(),
            "--out",
            project.path().join("re").to_str().unwrap(),
        ]);
        assert!(
            out.contains("byte for byte the published one"),
            "{point}: {out}"
        );
    }
}

#[test]
fn a_full_disk_while_publishing_fails_the_run_and_leaves_current_alone() {
    let project = Project::new(&demo_dir());
    project.ok(&["run", "sf-fire-ems"]);
    let before = project.digest();
    let out = Command::new(env!("CARGO_BIN_EXE_goalpost"))
        .arg("--config")
        .arg(project.path().join("config/goalpost.toml"))
        .args(["run", "sf-fire-ems", "--full"])
        .env_remove("GOALPOST_CONFIG")
        .env("RUST_LOG", "error")
        .env("GOALPOST_FAIL_AT", "publish-write")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // The error names the file and the cause.
    assert!(
        err.contains("digest.json") && err.contains("No space left on device"),
        "{err}"
    );
    assert!(err.contains("publish:"), "{err}");
    assert_eq!(project.digest(), before);
    let versions: Vec<String> = std::fs::read_dir(project.path().join("publish/versions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".history"))
        .collect();
    assert_eq!(
        versions.len(),
        1,
        "no half-written version is left: {versions:?}"
    );
    let runs: serde_json::Value = serde_json::from_str(&project.ok(&["runs", "--json"])).unwrap();
    assert_eq!(runs[0]["status"], "failed");
    assert!(
        runs[0]["error"]
            .as_str()
            .unwrap()
            .contains("No space left on device")
    );
    // Space again: the next run publishes the same figures.
    project.ok(&["run", "sf-fire-ems"]);
    assert_eq!(
        figures(&project.digest(), "sf-fire-ems"),
        figures(&before, "sf-fire-ems")
    );
}

#[test]
fn two_runs_of_one_pipeline_at_once_one_is_refused() {
    let project = Project::new(&demo_dir());
    // A table to keep up: compaction and vacuum take the same lock as runs.
    project.ok(&["run", "bike-counts"]);
    // The first run holds the pipeline (paused while fetching) ...
    let mut first = Command::new(env!("CARGO_BIN_EXE_goalpost"))
        .arg("--config")
        .arg(project.path().join("config/goalpost.toml"))
        .args(["run", "bike-counts"])
        .env_remove("GOALPOST_CONFIG")
        .env("RUST_LOG", "error")
        .env("GOALPOST_PAUSE_AT", "fetch")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(first.stderr.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("goalpost: paused at fetch") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "never paused");
    }
    // ... so a second process is refused, naming the first.
    let out = project.goalpost(&["run", "bike-counts"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pipeline bike-counts is already running")
            && err.contains(&format!("by process {}", first.id())),
        "{err}"
    );
    // Nor may table upkeep touch its table meanwhile (a dry run only reads).
    for upkeep in [&["compact"][..], &["vacuum", "bicycle_counts"][..]] {
        let out = project.goalpost(upkeep);
        assert!(!out.status.success(), "{upkeep:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("pipeline bike-counts is already running"),
            "{upkeep:?}: {err}"
        );
    }
    project.ok(&["vacuum", "--dry-run", "bicycle_counts"]);
    // Another pipeline is not held up, nor its upkeep.
    project.ok(&["run", "sf-fire-ems"]);
    project.ok(&["compact", "fire_ems_responses"]);
    first.kill().unwrap();
    first.wait().unwrap();
    project.ok(&["run", "bike-counts"]);
    // Upkeep let go of its locks: nothing is left running, and no upkeep shows as a run.
    project.ok(&["compact"]);
    project.ok(&["vacuum"]);
    let status: serde_json::Value =
        serde_json::from_str(&project.ok(&["status", "--json"])).unwrap();
    assert!(
        status
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["running"].is_null()),
        "{status}"
    );
    let runs = project.ok(&["runs", "--json"]);
    assert!(
        !runs.contains("compact-") && !runs.contains("vacuum-"),
        "{runs}"
    );
}

#[test]
fn two_pipelines_publishing_at_once_both_land() {
    let project = Project::new(&demo_dir());
    project.ok(&["run"]);
    for round in 0..3 {
        let spawn = |id: &str| {
            Command::new(env!("CARGO_BIN_EXE_goalpost"))
                .arg("--config")
                .arg(project.path().join("config/goalpost.toml"))
                .args(["run", id, "--full"])
                .env_remove("GOALPOST_CONFIG")
                .env("RUST_LOG", "error")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        };
        let mut a = spawn("bike-counts");
        let mut b = spawn("sf-fire-ems");
        assert!(a.wait().unwrap().success(), "round {round}");
        assert!(b.wait().unwrap().success(), "round {round}");
        // Each publish merged its part into the digest the other left: both runs' parts,
        // and the third pipeline's, are in what is current.
        let digest = project.digest();
        let runs: serde_json::Value =
            serde_json::from_str(&project.ok(&["runs", "--json"])).unwrap();
        for id in ["bike-counts", "sf-fire-ems"] {
            let newest = runs
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["pipeline"] == id)
                .unwrap();
            assert_eq!(
                crate::pipeline_part(&digest, id)["run_id"],
                newest["id"],
                "round {round}: {id}"
            );
        }
        crate::pipeline_part(&digest, "nyc-311");
    }
}
