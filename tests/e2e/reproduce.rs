//! Exact reproducibility and table upkeep: `recompute` rebuilds a published version's
//! figures byte for byte from the table versions its digest names; `vacuum` never deletes
//! what a kept version needs; `compact` keeps the rows; a process killed in the middle of a
//! table commit leaves the table readable at the previous version.

use crate::{Project, pipeline_part, repo};
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    repo().join("pipelines/demo/data/sffire/fire_department_calls_2016.csv")
}

fn sf_pipeline(data: &Path) -> String {
    std::fs::read_to_string(repo().join("pipelines/demo/sf-fire-ems.toml"))
        .unwrap()
        .replace(
            "path = \"data/sffire/fire_department_calls_2016.csv\"",
            &format!("path = {:?}", data.display().to_string()),
        )
}

/// A project running the demo pipelines, plus `config` appended to its config file.
fn demo_project(config: &str) -> Project {
    let p = Project::new(&repo().join("pipelines/demo"));
    let file = p.path().join("config/goalpost.toml");
    let mut text = std::fs::read_to_string(&file).unwrap();
    // Top-level keys go before the [site] table.
    text = format!("{config}\n{text}");
    std::fs::write(file, text).unwrap();
    p
}

fn version_of(project: &Project) -> String {
    project.digest()["version"].as_str().unwrap().to_string()
}

/// Every file under `dir` with its bytes, for "nothing changed" comparisons.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push((e.path(), std::fs::read(e.path()).unwrap()));
            } else if t.is_symlink() {
                out.push((
                    e.path(),
                    std::fs::read_link(e.path())
                        .unwrap()
                        .to_string_lossy()
                        .into_owned()
                        .into_bytes(),
                ));
            }
        }
    }
    out.sort();
    out
}

fn recompute_ok(project: &Project, version: &str) -> PathBuf {
    let out = project.path().join(format!("recomputed-{version}"));
    let stdout = project.ok(&[
        "recompute",
        "--run",
        version,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        stdout.contains("indicators.parquet is byte for byte the published one"),
        "{stdout}"
    );
    let published = project.path().join("publish/versions").join(version);
    assert_eq!(
        std::fs::read(out.join("indicators.parquet")).unwrap(),
        std::fs::read(published.join("indicators.parquet")).unwrap()
    );
    let a: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("digest.json")).unwrap()).unwrap();
    let b: serde_json::Value =
        serde_json::from_slice(&std::fs::read(published.join("digest.json")).unwrap()).unwrap();
    assert_eq!(a, b, "the same digest figures");
    out
}

#[test]
fn recompute_rebuilds_published_figures_byte_for_byte_from_the_recorded_versions() {
    let project = demo_project("keep_versions = 20");
    project.ok(&["run"]);
    let first = version_of(&project);
    // The tables move on: full reloads write new versions.
    project.ok(&["run", "--full"]);
    project.ok(&["run", "nyc-311", "--full"]);
    let latest = version_of(&project);
    let before = snapshot(&project.path().join("publish"));
    recompute_ok(&project, &first);
    recompute_ok(&project, &latest);
    assert!(
        snapshot(&project.path().join("publish")) == before,
        "recompute touched nothing published"
    );
    // The digest names every table version it read.
    let digest = project.digest();
    for p in digest["pipelines"].as_array().unwrap() {
        assert!(p["table"]["version"].is_u64(), "{p}");
    }

    let current = project.current();
    let out = project.goalpost(&[
        "recompute",
        "--run",
        &latest,
        "--out",
        current.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is inside the publish folder"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(snapshot(&project.path().join("publish")) == before);

    let out = project.goalpost(&["recompute", "--run", "nope", "--out", "x"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no published version \"nope\" is kept"),
        "{err}"
    );
    assert!(err.contains(&first), "lists the kept versions: {err}");
}

#[test]
fn a_held_version_recomputes_too_and_vacuum_keeps_what_kept_versions_need() {
    let pipelines = tempfile::tempdir().unwrap();
    let data = pipelines.path().join("calls.csv");
    std::fs::copy(fixture(), &data).unwrap();
    std::fs::write(pipelines.path().join("sf.toml"), sf_pipeline(&data)).unwrap();
    let project = Project::new(pipelines.path());
    let file = project.path().join("config/goalpost.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("keep_versions = 2\n{text}")).unwrap();

    project.ok(&["run"]);
    // Half the rows: the row_count check holds the figures.
    let mut r = csv::Reader::from_path(fixture()).unwrap();
    let header = r.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    let mut w = csv::Writer::from_path(&data).unwrap();
    w.write_record(&header).unwrap();
    for row in &rows[..rows.len() / 2] {
        w.write_record(row).unwrap();
    }
    w.flush().unwrap();
    let out = project.ok(&["run"]);
    assert!(out.contains("HELD"), "{out}");
    let held = version_of(&project);
    recompute_ok(&project, &held);

    // More versions of the table than kept digests.
    std::fs::copy(fixture(), &data).unwrap();
    for _ in 0..4 {
        project.ok(&["run", "--full"]);
    }
    let kept: Vec<String> = {
        let mut v: Vec<String> = std::fs::read_dir(project.path().join("publish/versions"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| !name.starts_with('.'))
            .collect();
        v.sort();
        v
    };
    assert_eq!(kept.len(), 3, "the current version and 2 more: {kept:?}");
    let table = project.path().join("data/tables/fire_ems_responses");
    let before = snapshot(&table);
    let dry = project.ok(&["vacuum", "--dry-run"]);
    assert!(dry.contains("fire_ems_responses: would delete"), "{dry}");
    assert!(snapshot(&table) == before, "a dry run deletes nothing");
    let out = project.ok(&["vacuum"]);
    let deleted: u64 = out
        .split("deleted ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(deleted > 0, "{out}");
    assert!(snapshot(&table).len() < before.len());
    // Every kept version still recomputes exactly.
    for v in &kept {
        recompute_ok(&project, v);
    }
}

#[test]
fn compact_rewrites_small_files_and_keeps_every_row() {
    let project = demo_project("");
    project.ok(&["run", "sf-fire-ems"]);
    let count = |p: &Project| {
        pipeline_part(&p.digest(), "sf-fire-ems")["table"]["rows"]
            .as_u64()
            .unwrap()
    };
    let rows = count(&project);
    let out = project.ok(&["compact", "fire_ems_responses"]);
    assert!(out.starts_with("fire_ems_responses: "), "{out}");
    // A second compaction has nothing left to do.
    let again = project.ok(&["compact", "fire_ems_responses"]);
    assert!(again.contains("nothing to compact"), "{again}");
    project.ok(&["run", "sf-fire-ems"]);
    assert_eq!(count(&project), rows);
    let out = project.goalpost(&["compact", "nope"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no pipeline writes a table \"nope\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Parquet data files of a table (not in the log folder).
fn data_files(table: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![table.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() && !p.ends_with("_delta_log") {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[cfg(unix)]
#[test]
fn a_process_killed_mid_commit_leaves_the_table_at_a_whole_version() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    // A bigger copy of the real extract (every row 20 times, with distinct row ids), so
    // writing it takes long enough to be interrupted.
    let pipelines = tempfile::tempdir().unwrap();
    let data = pipelines.path().join("calls.csv");
    let mut r = csv::Reader::from_path(fixture()).unwrap();
    let header = r.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    let row_id = header.iter().position(|h| h == "RowID").unwrap();
    let mut w = csv::Writer::from_path(&data).unwrap();
    w.write_record(&header).unwrap();
    for copy in 0..20 {
        for row in &rows {
            let rec: csv::StringRecord = row
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    if i == row_id {
                        format!("{v}-{copy}")
                    } else {
                        v.to_string()
                    }
                })
                .collect();
            w.write_record(&rec).unwrap();
        }
    }
    w.flush().unwrap();
    let big = rows.len() * 20;
    std::fs::write(pipelines.path().join("sf.toml"), sf_pipeline(&data)).unwrap();
    let project = Project::new(pipelines.path());
    project.ok(&["run"]);
    let table = project.path().join("data/tables/fire_ems_responses");
    let rows_now = |p: &Project| -> u64 {
        let out = p.ok(&["runs", "--json", "--limit", "1"]);
        let runs: serde_json::Value = serde_json::from_str(&out).unwrap();
        runs[0]["table_rows"].as_u64().unwrap_or(0)
    };
    assert_eq!(rows_now(&project), big as u64);

    // Kill a full reload the moment its first new data file appears, then at a few later
    // points; after each kill the next run must find a whole table and succeed.
    let delays = [None, Some(50), Some(200), Some(400)];
    for delay in delays {
        let before: std::collections::HashSet<PathBuf> = data_files(&table).into_iter().collect();
        let mut child = Command::new(env!("CARGO_BIN_EXE_goalpost"))
            .arg("--config")
            .arg(project.path().join("config/goalpost.toml"))
            .args(["run", "--full"])
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let deadline = start + Duration::from_secs(120);
        loop {
            let fired = match delay {
                None => data_files(&table).iter().any(|f| !before.contains(f)),
                Some(ms) => start.elapsed() >= Duration::from_millis(ms),
            };
            if fired || child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                break;
            }
            std::thread::yield_now();
        }
        // SIGKILL: no cleanup, no unwinding.
        let _ = child.kill();
        child.wait().unwrap();
        // The table reads whole, at its previous or the next version.
        let check = project.ok(&["run"]);
        assert!(check.contains("sf: "), "{check}");
        assert_eq!(rows_now(&project), big as u64, "after a kill at {delay:?}");
    }
}
