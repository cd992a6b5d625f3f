//! A failing run reports what and where, records the failure, and leaves the published
//! digest exactly as it was.

use crate::{Project, repo};
use std::path::Path;

/// A one-source bicycle pipeline reading `data` (an absolute path).
pub fn bike_pipeline(data: &Path) -> String {
    format!(
        r#"title = "Bicycle counter"
timezone = "America/New_York"
as_of = "2016-10-02"

[[source]]
kind = "file"
path = {data:?}

[table]
name = "bicycle_counts"
key = ["counter_id", "counted_at"]
time = "counted_at"

[table.columns]
counter_id = {{ from = "id", type = "string" }}
counted_at = {{ from = "date", type = "timestamp" }}
bicycles = {{ from = "counts", type = "int64" }}

[[indicator]]
id = "daily-bicycles"
title = "Bicycles counted per day"
better = "higher"
period = "day"
sql = "SELECT period, sum(bicycles) AS value FROM bicycle_counts GROUP BY period"

[[goal]]
indicator = "daily-bicycles"
baseline = {{ period = "2016-09-22", value = 3991 }}
target = {{ value = 4390, by = "2017-09-30" }}
"#,
        data = data.display().to_string()
    )
}

fn page_1() -> std::path::PathBuf {
    repo().join("pipelines/demo/data/bike_counts/bike_counts_page_1.json")
}

struct Published {
    target: std::path::PathBuf,
    digest: Vec<u8>,
}

fn published(project: &Project) -> Published {
    Published {
        target: std::fs::read_link(project.current()).unwrap(),
        digest: std::fs::read(project.current().join("digest.json")).unwrap(),
    }
}

fn assert_unchanged(project: &Project, before: &Published) {
    let now = published(project);
    assert_eq!(now.target, before.target, "publish/current was switched");
    assert!(now.digest == before.digest, "digest.json changed");
}

#[test]
fn bad_values_and_bad_files_fail_clearly_and_publish_nothing() {
    let pipelines = tempfile::tempdir().unwrap();
    let file = pipelines.path().join("bikes.toml");
    std::fs::write(&file, bike_pipeline(&page_1())).unwrap();
    let project = Project::new(pipelines.path());
    project.ok(&["run"]);
    let before = published(&project);

    // A value that is not an integer, in record 7 of a copy of the real page, with a
    // quarantine limit of 0 %: one bad row fails the run.
    let mut rows: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(page_1()).unwrap()).unwrap();
    rows[6]["counts"] = serde_json::Value::String("lots".into());
    let broken = pipelines.path().join("bike_counts_bad_value.json");
    std::fs::write(&broken, serde_json::to_string(&rows).unwrap()).unwrap();
    std::fs::write(
        &file,
        bike_pipeline(&broken).replace(
            "time = \"counted_at\"",
            "time = \"counted_at\"\nquarantine_limit = 0",
        ),
    )
    .unwrap();
    let out = project.goalpost(&["run", "bikes"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bike_counts_bad_value.json"), "{err}");
    assert!(
        err.contains(r#"record 7: column "bicycles" (field "counts"): "lots" is not an integer"#),
        "{err}"
    );
    assert!(
        err.contains(
            "1 of 1000 rows (0.1 %) failed typing or row checks, above the quarantine limit of 0 %"
        ),
        "{err}"
    );
    assert_unchanged(&project, &before);

    // A ragged CSV row: the error names the file and line.
    let csv = pipelines.path().join("counts_ragged.csv");
    std::fs::write(
        &csv,
        "id,date,counts\n1,2016-09-22T00:00:00.000,5\n1,2016-09-22T00:15:00.000\n",
    )
    .unwrap();
    std::fs::write(&file, bike_pipeline(&csv)).unwrap();
    let out = project.goalpost(&["run", "bikes"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("counts_ragged.csv:3: row has 2 fields; expected 3"),
        "{err}"
    );
    assert_unchanged(&project, &before);

    // An unknown key in the pipeline file: reported with its line and column.
    let text = bike_pipeline(&page_1()).replace(
        "time = \"counted_at\"",
        "time = \"counted_at\"\ncolour = \"blue\"",
    );
    let line = text.lines().position(|l| l.starts_with("colour")).unwrap() + 1;
    std::fs::write(&file, text).unwrap();
    let out = project.goalpost(&["run"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("bikes.toml:{line}:1: unknown field `colour`")),
        "{err}"
    );
    assert_unchanged(&project, &before);

    // Every failure is in the run history with its error.
    let runs: serde_json::Value =
        serde_json::from_str(&project.ok(&["runs", "--json", "--pipeline", "bikes"])).unwrap();
    let statuses: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["failed", "failed", "failed", "succeeded"]);
    assert!(runs[2]["error"].as_str().unwrap().contains("\"lots\""));
    let table = project.ok(&["runs"]);
    assert!(
        table.contains("failed") && table.contains("succeeded"),
        "{table}"
    );
}
