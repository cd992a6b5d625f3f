//! Structured indicators (`measure = …`, no SQL) over the real SF fire extract, each figure
//! checked against the same measure computed here in plain Rust from the CSV rows.

use crate::{Project, close, figure, percentile, pipeline_part, repo};
use chrono::NaiveDateTime;
use std::collections::BTreeMap;

const US: &str = "%m/%d/%Y %I:%M:%S %p";
const POPULATION: f64 = 873_965.0;

fn pipeline(data: &std::path::Path) -> String {
    format!(
        r#"title = "SF fire and EMS units"
timezone = "America/Los_Angeles"
as_of = "2017-01-08"

[[source]]
kind = "file"
path = {data:?}

[table]
name = "units"
key = ["row_id"]
time = "received_at"

[table.columns]
row_id = {{ from = "RowID", type = "string" }}
received_at = {{ from = "Received DtTm", type = "timestamp" }}
on_scene_at = {{ from = "On Scene DtTm", type = "timestamp", required = false }}
final_priority = {{ from = "Final Priority", type = "string" }}
battalion = {{ from = "Battalion", type = "string" }}
als_unit = {{ from = "ALS Unit", type = "bool" }}

[[indicator]]
id = "emergency-units"
title = "Units sent to emergencies"
period = "day"
by = ["battalion"]
measure = "count"
filter = "final_priority = '3'"
min_count = 40

[[indicator]]
id = "minutes-total"
title = "Minutes to arrive, all units"
period = "day"
measure = "sum"
value = "(extract(epoch FROM on_scene_at) - extract(epoch FROM received_at)) / 60.0"

[[indicator]]
id = "minutes-mean"
title = "Mean minutes to arrive"
period = "day"
measure = "mean"
value = "(extract(epoch FROM on_scene_at) - extract(epoch FROM received_at)) / 60.0"
filter = "on_scene_at IS NOT NULL"

[[indicator]]
id = "minutes-median"
title = "Median minutes to arrive"
period = "day"
measure = "median"
value = "(extract(epoch FROM on_scene_at) - extract(epoch FROM received_at)) / 60.0"
filter = "on_scene_at IS NOT NULL"

[[indicator]]
id = "minutes-p90"
title = "90th percentile minutes to arrive"
period = "day"
measure = "percentile"
percentile = 90
value = "(extract(epoch FROM on_scene_at) - extract(epoch FROM received_at)) / 60.0"
filter = "on_scene_at IS NOT NULL"

[[indicator]]
id = "within-8-minutes"
title = "Units on scene within 8 minutes"
unit = "%"
period = "day"
measure = "share"
condition = "extract(epoch FROM on_scene_at) - extract(epoch FROM received_at) <= 480"
filter = "on_scene_at IS NOT NULL"

[[indicator]]
id = "als-share"
title = "Advanced life support units, percent of units"
period = "day"
measure = "ratio"
numerator = "CASE WHEN als_unit THEN 1 ELSE 0 END"
denominator = "1"
scale = 100

[[indicator]]
id = "units-per-1000"
title = "Units dispatched per 1,000 residents"
period = "day"
measure = "rate"
population = {POPULATION}
flag = "CASE WHEN on_scene_at IS NULL THEN 'provisional' END"
"#,
        data = data.display().to_string()
    )
}

struct Unit {
    day: String,
    minutes: Option<f64>,
    priority: String,
    battalion: String,
    als: bool,
}

fn units() -> Vec<Unit> {
    let path = repo().join("pipelines/demo/data/sffire/fire_department_calls_2016.csv");
    let mut r = csv::Reader::from_path(path).unwrap();
    let h = r.headers().unwrap().clone();
    let col = |name: &str| h.iter().position(|x| x == name).unwrap();
    let (received, on_scene, priority, battalion, als) = (
        col("Received DtTm"),
        col("On Scene DtTm"),
        col("Final Priority"),
        col("Battalion"),
        col("ALS Unit"),
    );
    r.records()
        .map(Result::unwrap)
        .map(|row| {
            // The extract spans no clock change, so local differences are true durations.
            let at = NaiveDateTime::parse_from_str(&row[received], US).unwrap();
            let minutes = (!row[on_scene].is_empty()).then(|| {
                let t = NaiveDateTime::parse_from_str(&row[on_scene], US).unwrap();
                (t - at).num_seconds() as f64 / 60.0
            });
            Unit {
                day: at.date().format("%Y-%m-%d").to_string(),
                minutes,
                priority: row[priority].to_string(),
                battalion: row[battalion].to_string(),
                als: &row[als] == "true",
            }
        })
        .collect()
}

/// A breakdown point from the digest.
fn group_point<'a>(
    digest: &'a serde_json::Value,
    indicator: &str,
    period: &str,
    column: &str,
    value: &str,
) -> Option<&'a serde_json::Value> {
    digest["pipelines"][0]["indicators"]
        .as_array()?
        .iter()
        .find(|i| i["id"] == indicator)?["series"]
        .as_array()?
        .iter()
        .find(|s| s["period"] == period && s["group"][column] == value)
}

#[test]
fn every_structured_measure_matches_plain_arithmetic_over_the_rows() {
    let pipelines = tempfile::tempdir().unwrap();
    let data = repo().join("pipelines/demo/data/sffire/fire_department_calls_2016.csv");
    std::fs::write(pipelines.path().join("units.toml"), pipeline(&data)).unwrap();
    let project = Project::new(pipelines.path());
    project.ok(&["run"]);
    let digest = project.digest();
    let units = units();
    let mut by_day: BTreeMap<&str, Vec<&Unit>> = BTreeMap::new();
    for u in &units {
        by_day.entry(u.day.as_str()).or_default().push(u);
    }
    assert!(by_day.len() >= 8);
    let get = |indicator: &str, day: &str| {
        figure(&digest, "units", indicator, day)
            .unwrap_or_else(|| panic!("{indicator} on {day} in the digest"))
    };
    let mut withheld_in_all = 0;
    for (day, rows) in &by_day {
        let emergency = rows.iter().filter(|u| u.priority == "3").count() as f64;
        assert_eq!(get("emergency-units", day), emergency, "count on {day}");
        let mut per_battalion: BTreeMap<&str, f64> = BTreeMap::new();
        for u in rows.iter().filter(|u| u.priority == "3") {
            *per_battalion.entry(u.battalion.as_str()).or_default() += 1.0;
        }
        // Small-cell suppression (min_count 40): a battalion with fewer than 40 emergency
        // units that day is withheld, and never alone, or total minus the rest would show it.
        let mut withheld = 0;
        for (b, n) in &per_battalion {
            let cell = group_point(&digest, "emergency-units", day, "battalion", b)
                .unwrap_or_else(|| panic!("{b} on {day}"));
            if cell["suppressed"] == true {
                withheld += 1;
                assert!(cell["value"].is_null() && cell.get("n").is_none(), "{cell}");
            } else {
                assert!(*n >= 40.0, "{b} on {day}: {n} units shown");
                assert_eq!(cell["value"].as_f64(), Some(*n), "count of {b} on {day}");
                assert_eq!(cell["n"].as_f64(), Some(*n));
            }
            if *n < 40.0 {
                assert_eq!(cell["suppressed"], true, "{b} on {day}: {n} units");
            }
        }
        assert_ne!(
            withheld, 1,
            "a lone withheld cell on {day} could be worked out"
        );
        withheld_in_all += withheld;

        let minutes: Vec<f64> = rows.iter().filter_map(|u| u.minutes).collect();
        let sum: f64 = minutes.iter().sum();
        assert!(close(get("minutes-total", day), sum), "sum on {day}");
        let mean = sum / minutes.len() as f64;
        assert!(close(get("minutes-mean", day), mean), "mean on {day}");
        assert!(
            close(get("minutes-median", day), percentile(minutes.clone(), 0.5)),
            "median on {day}"
        );
        assert!(
            close(get("minutes-p90", day), percentile(minutes.clone(), 0.9)),
            "p90 on {day}"
        );
        let within = minutes.iter().filter(|m| **m <= 8.0).count() as f64;
        assert!(
            close(
                get("within-8-minutes", day),
                100.0 * within / minutes.len() as f64
            ),
            "share on {day}"
        );
        let als = rows.iter().filter(|u| u.als).count() as f64;
        assert!(
            close(get("als-share", day), 100.0 * als / rows.len() as f64),
            "ratio on {day}"
        );
        assert!(
            close(
                get("units-per-1000", day),
                rows.len() as f64 * 1000.0 / POPULATION
            ),
            "rate on {day}"
        );
        // The rows' flags travel with the figure.
        let point = digest["pipelines"][0]["indicators"][7]["series"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["period"] == *day)
            .unwrap();
        let unfinished = rows.iter().any(|u| u.minutes.is_none());
        assert_eq!(
            point.get("flag").and_then(|f| f.as_str()),
            unfinished.then_some("provisional"),
            "flag on {day}"
        );
    }

    assert!(
        withheld_in_all > 0,
        "the extract has small cells to withhold"
    );

    // The published SQL is the query that ran.
    let sql = digest["pipelines"][0]["indicators"][4]["sql"]
        .as_str()
        .unwrap();
    assert!(
        sql.contains("percentile_cont(0.9) WITHIN GROUP (ORDER BY __value)"),
        "{sql}"
    );
    assert!(sql.contains("WHERE on_scene_at IS NOT NULL"), "{sql}");

    // `explain` says where one figure comes from.
    let (day, rows) = by_day.iter().nth(3).unwrap();
    let minutes: Vec<f64> = rows.iter().filter_map(|u| u.minutes).collect();
    let p90 = percentile(minutes.clone(), 0.9);
    let text = project.ok(&["explain", "minutes-p90", "--period", day]);
    let run_id = digest["pipelines"][0]["run_id"].as_str().unwrap();
    for needle in [
        "Indicator minutes-p90: 90th percentile minutes to arrive (pipeline units, per day)"
            .to_string(),
        format!(
            "  {day} ({day} to {day}): {p90:.1} (exactly {p90}), from {} rows",
            minutes.len()
        ),
        format!("computed by run {run_id} at "),
        "from table units at Delta version 0 (7704 rows)".to_string(),
        format!("  source: file {} (7704 rows)", data.display()),
        "  measure: percentile 90".to_string(),
        "  filter: on_scene_at IS NOT NULL".to_string(),
        "percentile_cont(0.9) WITHIN GROUP (ORDER BY __value)".to_string(),
    ] {
        assert!(text.contains(&needle), "{needle:?} in:\n{text}");
    }
    let out = project.goalpost(&["explain", "minutes-p90", "--period", "2030-01-01"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no period \"2030-01-01\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_structured_indicator_is_checked_before_it_runs() {
    let pipelines = tempfile::tempdir().unwrap();
    let data = repo().join("pipelines/demo/data/sffire/fire_department_calls_2016.csv");
    let text = pipeline(&data).replace("percentile = 90\n", "").replace(
        "measure = \"rate\"",
        "measure = \"rate\"\ncondition = \"true\"",
    );
    std::fs::write(pipelines.path().join("units.toml"), &text).unwrap();
    let project = Project::new(pipelines.path());
    let out = project.goalpost(&["validate"]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = |needle: &str| {
        text.lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .unwrap()
    };
    assert!(
        stdout.contains(&format!(
            "units.toml:{}:11: indicator \"minutes-p90\": measure percentile needs `percentile`, e.g. 90",
            line("measure = \"percentile\"")
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("indicator \"units-per-1000\": measure rate does not use `condition`"),
        "{stdout}"
    );
    // The typo in a filter is found by planning the generated query.
    std::fs::write(
        pipelines.path().join("units.toml"),
        pipeline(&data).replace(
            "filter = \"final_priority = '3'\"",
            "filter = \"final_priorty = '3'\"",
        ),
    )
    .unwrap();
    let out = project.goalpost(&["validate"]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("indicator \"emergency-units\"") && stdout.contains("final_priorty"),
        "{stdout}"
    );
}

/// Every period kind cuts the real NYC 311 extract (2012–2019, New York time) where a
/// calendar says it should: labels and counts computed here with chrono.
#[test]
fn periods_cut_where_the_calendar_says() {
    let data = repo().join("pipelines/demo/data/nyc311/311_service_requests_2018.csv");
    let kinds = [
        "day",
        "week",
        "month",
        "quarter",
        "year",
        "fiscal_year",
        "fiscal_quarter",
    ];
    let mut text = format!(
        r#"title = "NYC 311"
timezone = "America/New_York"
fiscal_year_start = 7
as_of = "2019-04-01"
min_count = 0

[[source]]
kind = "file"
path = {data:?}

[table]
name = "requests"
key = ["id"]
time = "created_at"

[table.columns]
id = {{ from = "Unique Key", type = "string" }}
created_at = {{ from = "Created Date", type = "timestamp" }}
"#,
        data = data.display().to_string()
    );
    for kind in kinds {
        text.push_str(&format!(
            "\n[[indicator]]\nid = \"per-{kind}\"\ntitle = \"Requests per {kind}\"\nperiod = \"{kind}\"\nmeasure = \"count\"\n"
        ));
    }
    let pipelines = tempfile::tempdir().unwrap();
    std::fs::write(pipelines.path().join("nyc.toml"), text).unwrap();
    let project = Project::new(pipelines.path());
    project.ok(&["run"]);
    let digest = project.digest();

    let mut r = csv::Reader::from_path(&data).unwrap();
    let created = r
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "Created Date")
        .unwrap();
    let stamps: Vec<NaiveDateTime> = r
        .records()
        .map(|row| NaiveDateTime::parse_from_str(&row.unwrap()[created], US).unwrap())
        .collect();
    use chrono::Datelike;
    let label = |kind: &str, t: &NaiveDateTime| -> String {
        let (y, m) = (t.year(), t.month());
        let fy = if m >= 7 { y + 1 } else { y };
        match kind {
            "day" => t.format("%Y-%m-%d").to_string(),
            "week" => {
                let w = t.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            }
            "month" => format!("{y}-{m:02}"),
            "quarter" => format!("{y}-Q{}", (m - 1) / 3 + 1),
            "year" => y.to_string(),
            "fiscal_year" => format!("FY{fy}"),
            "fiscal_quarter" => format!("FY{fy} Q{}", (m + 12 - 7) % 12 / 3 + 1),
            _ => unreachable!(),
        }
    };
    for (i, kind) in kinds.iter().enumerate() {
        let mut want: BTreeMap<String, f64> = BTreeMap::new();
        for t in &stamps {
            *want.entry(label(kind, t)).or_default() += 1.0;
        }
        let got: BTreeMap<String, f64> = digest["pipelines"][0]["indicators"][i]["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["period"].as_str().unwrap().to_string(),
                    p["value"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, want, "per {kind}");
    }
}

/// A rate per the population held in another pipeline's table: each battalion's units per
/// 1,000 of its own residents, the total per all of them. The population figures are
/// illustrative, written by the test.
#[test]
fn a_rate_is_per_the_population_in_another_pipelines_table() {
    let pipelines = tempfile::tempdir().unwrap();
    let data = repo().join("pipelines/demo/data/sffire/fire_department_calls_2016.csv");
    // B02 in two rows (summed); no row for B10, whose rate is unknown.
    let residents: [(&str, f64); 11] = [
        ("B01", 61_000.0),
        ("B02", 70_000.0),
        ("B02", 21_500.0),
        ("B03", 88_000.0),
        ("B04", 79_250.0),
        ("B05", 93_000.0),
        ("B06", 102_000.0),
        ("B07", 97_500.0),
        ("B08", 84_000.0),
        ("B09", 110_000.0),
        ("B99", 1_000.0),
    ];
    let csv_path = pipelines.path().join("battalions.csv");
    let write_population = |rows: &[(&str, f64)]| {
        let mut text = "battalion,part,residents\n".to_string();
        for (i, (b, n)) in rows.iter().enumerate() {
            text.push_str(&format!("{b},{i},{n}\n"));
        }
        std::fs::write(&csv_path, text).unwrap();
    };
    write_population(&residents);
    // "zones" sorts after "units": a refresh of everything must run it first anyway.
    std::fs::write(
        pipelines.path().join("zones.toml"),
        format!(
            r#"title = "Residents per battalion"
timezone = "America/Los_Angeles"

[[source]]
kind = "file"
path = {:?}

[table]
name = "battalion_population"

[table.columns]
battalion = {{ type = "string" }}
part = {{ type = "int64" }}
residents = {{ type = "float64" }}

[[check]]
kind = "unique"
columns = ["part"]
"#,
            csv_path.display().to_string()
        ),
    )
    .unwrap();
    let units_toml = format!(
        r#"title = "SF fire and EMS units"
timezone = "America/Los_Angeles"
as_of = "2017-01-08"

[[source]]
kind = "file"
path = {:?}

[table]
name = "units"
key = ["row_id"]
time = "received_at"

[table.columns]
row_id = {{ from = "RowID", type = "string" }}
received_at = {{ from = "Received DtTm", type = "timestamp" }}
battalion = {{ from = "Battalion", type = "string" }}

[[indicator]]
id = "units-per-1000"
title = "Units dispatched per 1,000 residents"
period = "day"
by = ["battalion"]
measure = "rate"
min_count = 1
population = {{ table = "battalion_population", column = "residents", by = ["battalion"] }}

[[indicator]]
id = "units-per-10000-citywide"
title = "Units dispatched per 10,000 residents"
period = "day"
by = ["battalion"]
measure = "rate"
per = 10000
min_count = 1
population = {{ table = "battalion_population", column = "residents" }}
"#,
        data.display().to_string()
    );
    std::fs::write(pipelines.path().join("units.toml"), &units_toml).unwrap();
    let project = Project::new(pipelines.path());

    // The population must be loaded before a rate can use it.
    let out = project.goalpost(&["run", "units"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("reads table \"battalion_population\", which pipeline \"zones\" loads but has not published good figures from yet; run it first: goalpost run zones"),
        "{stderr}"
    );

    project.ok(&["run"]);
    let digest = project.digest();
    let mut people: BTreeMap<&str, f64> = BTreeMap::new();
    for (b, n) in residents {
        *people.entry(b).or_default() += n;
    }
    let everyone: f64 = people.values().sum();
    let mut per_day: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for u in units() {
        *per_day
            .entry(u.day)
            .or_default()
            .entry(u.battalion)
            .or_default() += 1.0;
    }
    for (day, battalions) in &per_day {
        let all: f64 = battalions.values().sum();
        let total = figure(&digest, "units", "units-per-1000", day).unwrap();
        assert!(close(total, all * 1000.0 / everyone), "total on {day}");
        let citywide = figure(&digest, "units", "units-per-10000-citywide", day).unwrap();
        assert!(
            close(citywide, all * 10000.0 / everyone),
            "citywide on {day}"
        );
        for (b, n) in battalions {
            let cell = group_point(&digest, "units-per-1000", day, "battalion", b).unwrap();
            match people.get(b.as_str()) {
                Some(p) => assert!(
                    close(cell["value"].as_f64().unwrap(), n * 1000.0 / p),
                    "{b} on {day}: {cell}"
                ),
                None => assert!(cell["value"].is_null(), "{b} on {day}: {cell}"),
            }
            assert_eq!(cell["n"].as_f64(), Some(*n), "{b} on {day}");
            // Without a population breakdown, each battalion is per the whole city.
            let cell =
                group_point(&digest, "units-per-10000-citywide", day, "battalion", b).unwrap();
            assert!(
                close(cell["value"].as_f64().unwrap(), n * 10000.0 / everyone),
                "{b} on {day} citywide: {cell}"
            );
        }
    }

    // The figure's provenance names the population table and the version read.
    let units = digest["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "units")
        .unwrap();
    assert_eq!(
        units["indicators"][0]["reads"],
        serde_json::json!([{ "table": "battalion_population", "pipeline": "zones", "version": 0 }])
    );
    let text = project.ok(&["explain", "units-per-1000"]);
    assert!(
        text.contains(
            "  also read: table battalion_population at Delta version 0 (loaded by pipeline zones)"
        ),
        "{text}"
    );
    let first = digest["version"].as_str().unwrap().to_string();
    let b01_rate = |digest: &serde_json::Value| {
        group_point(digest, "units-per-1000", "2017-01-03", "battalion", "B01")
            .and_then(|p| p["value"].as_f64())
            .unwrap()
    };
    let b01_units = per_day["2017-01-03"]["B01"];
    assert!(close(b01_rate(&digest), b01_units * 1000.0 / 61_000.0));

    // Population rows that fail zones' check are held back: a rate never reads them.
    let mut bad = residents.to_vec();
    bad[0].1 = 6_100_000.0;
    write_population(&bad);
    let zones = std::fs::read_to_string(pipelines.path().join("zones.toml")).unwrap();
    std::fs::write(
        pipelines.path().join("zones.toml"),
        zones.replace("columns = [\"part\"]", "columns = [\"battalion\"]"),
    )
    .unwrap();
    project.ok(&["run", "zones"]);
    project.ok(&["run", "units"]);
    let digest = project.digest();
    let units = pipeline_part(&digest, "units");
    assert_eq!(units["indicators"][0]["reads"][0]["version"], 0);
    assert!(close(b01_rate(&digest), b01_units * 1000.0 / 61_000.0));

    // New population figures that pass are read from the next run on.
    std::fs::write(pipelines.path().join("zones.toml"), &zones).unwrap();
    let mut newer = residents.to_vec();
    newer[0].1 = 30_500.0;
    write_population(&newer);
    project.ok(&["run"]);
    let digest = project.digest();
    let units = pipeline_part(&digest, "units");
    assert_eq!(units["indicators"][0]["reads"][0]["version"], 2);
    assert!(close(b01_rate(&digest), b01_units * 1000.0 / 30_500.0));

    // The first digest is recomputed from the population version it read, also after
    // vacuum, which keeps every version a kept digest read.
    project.ok(&["vacuum"]);
    let out = tempfile::tempdir().unwrap();
    let recomputed = project.ok(&[
        "recompute",
        "--run",
        &first,
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert!(
        recomputed.contains("units: read table battalion_population at version 0"),
        "{recomputed}"
    );
    assert!(!recomputed.contains("differ"), "{recomputed}");

    // A misspelt population column is found by `validate`, in the pipeline file.
    std::fs::write(
        pipelines.path().join("units.toml"),
        units_toml.replace("column = \"residents\", by", "column = \"resident\", by"),
    )
    .unwrap();
    let out = project.goalpost(&["validate"]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("units.toml:")
            && stdout.contains("\"units-per-1000\"")
            && stdout.contains("No field named resident."),
        "{stdout}"
    );
    // A population broken down by a column the indicator is not.
    std::fs::write(
        pipelines.path().join("units.toml"),
        units_toml.replace("by = [\"battalion\"] }", "by = [\"district\"] }"),
    )
    .unwrap();
    let out = project.goalpost(&["validate"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("population is broken down by \"district\", which is not one of the indicator's `by` columns (battalion)"),
        "{stdout}"
    );
}

/// Rows on the days New York's clocks change, and just before local midnight at period ends:
/// each row falls in the period of its local time, and durations are true elapsed time (an
/// hour longer across the autumn change, an hour shorter across the spring one). The rows
/// are written here; the expected figures are worked out by hand in the comments.
#[test]
fn clock_changes_and_local_midnight_cut_where_residents_live() {
    let rows = [
        // 2018-03-10 (Saturday): one minute before local midnight, 04:59 UTC on the 11th.
        ("a1", "2018-03-10 23:59:00", "2018-03-11 00:59:00"), // 1 h
        // 2018-03-11: clocks jump from 02:00 to 03:00.
        ("a2", "2018-03-11 01:30:00", "2018-03-11 03:30:00"), // 1 h, not 2
        ("a3", "2018-03-11 23:45:00", "2018-03-12 01:45:00"), // 2 h; 03:45 UTC on the 12th
        // 2018-03-31, last evening of March and of Q1: 03:30 UTC on April 1st.
        ("a4", "2018-03-31 23:30:00", "2018-04-01 02:30:00"), // 3 h
        // Fiscal year (from July): the last evening of FY2018, then the first hour of FY2019.
        ("a5", "2018-06-30 23:30:00", "2018-07-01 00:30:00"), // 1 h
        ("a6", "2018-07-01 00:15:00", "2018-07-01 04:15:00"), // 4 h
        // 2018-11-04 (Sunday, last day of ISO week 44): clocks go back from 02:00 to 01:00.
        ("a7", "2018-11-04 00:30:00", "2018-11-04 03:30:00"), // 4 h, not 3
        // 01:30 happens twice; the first (daylight) one is taken: 05:30 UTC to 07:30 UTC.
        ("a8", "2018-11-04 01:30:00", "2018-11-04 02:30:00"), // 2 h
        ("a9", "2018-11-04 23:30:00", "2018-11-05 00:30:00"), // 1 h; 04:30 UTC Monday
        // 2018-11-05 (Monday, ISO week 45).
        ("b1", "2018-11-05 00:10:00", "2018-11-05 06:10:00"), // 6 h
    ];
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("requests.csv");
    let mut text = "id,created,closed\n".to_string();
    for (id, created, closed) in rows {
        text.push_str(&format!("{id},{created},{closed}\n"));
    }
    std::fs::write(&csv_path, text).unwrap();
    let mut toml = format!(
        r#"title = "Requests around clock changes"
timezone = "America/New_York"
fiscal_year_start = 7
as_of = "2019-01-31"
min_count = 0

[[source]]
kind = "file"
path = {:?}

[table]
name = "requests"
key = ["id"]
time = "created_at"

[table.columns]
id = {{ type = "string" }}
created_at = {{ from = "created", type = "timestamp" }}
closed_at = {{ from = "closed", type = "timestamp" }}
"#,
        csv_path.display().to_string()
    );
    for kind in ["day", "week", "month", "quarter", "fiscal_year"] {
        toml.push_str(&format!(
            r#"
[[indicator]]
id = "hours-{kind}"
title = "Mean hours to close, per {kind}"
period = "{kind}"
measure = "mean"
value = "(extract(epoch FROM closed_at) - extract(epoch FROM created_at)) / 3600.0"

[[indicator]]
id = "count-{kind}"
title = "Requests per {kind}"
period = "{kind}"
measure = "count"
"#
        ));
    }
    std::fs::write(dir.path().join("clocks.toml"), toml).unwrap();
    let project = Project::new(dir.path());
    project.ok(&["run"]);
    let digest = project.digest();
    let series = |id: &str| -> Vec<(String, f64)> {
        digest["pipelines"][0]["indicators"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == id)
            .unwrap()["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["period"].as_str().unwrap().to_string(),
                    p["value"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let expect = |kind: &str, want: &[(&str, usize, f64)]| {
        let counts: Vec<(String, f64)> = want
            .iter()
            .map(|(p, n, _)| (p.to_string(), *n as f64))
            .collect();
        assert_eq!(series(&format!("count-{kind}")), counts, "count per {kind}");
        let hours = series(&format!("hours-{kind}"));
        assert_eq!(hours.len(), want.len(), "hours per {kind}: {hours:?}");
        for ((period, got), (p, _, mean)) in hours.iter().zip(want) {
            assert_eq!(period, p, "hours per {kind}");
            assert!(close(*got, *mean), "hours in {p}: {got}, expected {mean}");
        }
    };
    expect(
        "day",
        &[
            ("2018-03-10", 1, 1.0),
            ("2018-03-11", 2, 1.5),
            ("2018-03-31", 1, 3.0),
            ("2018-06-30", 1, 1.0),
            ("2018-07-01", 1, 4.0),
            ("2018-11-04", 3, 7.0 / 3.0),
            ("2018-11-05", 1, 6.0),
        ],
    );
    expect(
        "week",
        &[
            ("2018-W10", 3, 4.0 / 3.0), // Mon 5 – Sun 11 March: a1, a2, a3
            ("2018-W13", 1, 3.0),       // Sat 31 March
            ("2018-W26", 2, 2.5),       // Sat 30 June, Sun 1 July
            ("2018-W44", 3, 7.0 / 3.0), // Sunday 4 November
            ("2018-W45", 1, 6.0),
        ],
    );
    expect(
        "month",
        &[
            ("2018-03", 4, 7.0 / 4.0),
            ("2018-06", 1, 1.0),
            ("2018-07", 1, 4.0),
            ("2018-11", 4, 13.0 / 4.0),
        ],
    );
    expect(
        "quarter",
        &[
            ("2018-Q1", 4, 7.0 / 4.0),
            ("2018-Q2", 1, 1.0),
            ("2018-Q3", 1, 4.0),
            ("2018-Q4", 4, 13.0 / 4.0),
        ],
    );
    expect(
        "fiscal_year",
        &[("FY2018", 5, 8.0 / 5.0), ("FY2019", 5, 17.0 / 5.0)],
    );
}
