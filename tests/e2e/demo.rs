//! The bundled demo, checked against figures computed from the raw files.

use crate::{Project, close, demo_dir, figure, goal, median, percentile, pipeline_part, repo};
use chrono::{NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

const US: &str = "%m/%d/%Y %I:%M:%S %p";

fn utc(tz: Tz, local: &str, format: &str) -> chrono::DateTime<Utc> {
    let naive = NaiveDateTime::parse_from_str(local, format).unwrap();
    tz.from_local_datetime(&naive)
        .earliest()
        .unwrap()
        .with_timezone(&Utc)
}

fn csv_rows(path: &str) -> Vec<csv::StringRecord> {
    let mut r = csv::Reader::from_path(repo().join(path)).unwrap();
    r.records().map(Result::unwrap).collect()
}

fn header_index(path: &str, name: &str) -> usize {
    let mut r = csv::Reader::from_path(repo().join(path)).unwrap();
    r.headers().unwrap().iter().position(|h| h == name).unwrap()
}

/// Earliest received, earliest on scene, final priority.
type Call = (chrono::DateTime<Utc>, Option<chrono::DateTime<Utc>>, String);

struct Nyc {
    created: chrono::DateTime<Utc>,
    closed: Option<chrono::DateTime<Utc>>,
}

/// All 311 requests from both extracts, in UTC.
fn nyc_requests() -> Vec<Nyc> {
    let tz = chrono_tz::America::New_York;
    let mut out = Vec::new();
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("pipelines/demo/data/nyc311/soda_fhrw-4uyv.json"))
            .unwrap(),
    )
    .unwrap();
    for r in json.as_array().unwrap() {
        let iso = "%Y-%m-%dT%H:%M:%S%.3f";
        out.push(Nyc {
            created: utc(tz, r["created_date"].as_str().unwrap(), iso),
            closed: r["closed_date"].as_str().map(|s| utc(tz, s, iso)),
        });
    }
    let path = "pipelines/demo/data/nyc311/311_service_requests_2018.csv";
    let (c, d) = (
        header_index(path, "Created Date"),
        header_index(path, "Closed Date"),
    );
    for r in csv_rows(path) {
        out.push(Nyc {
            created: utc(tz, &r[c], US),
            closed: (!r[d].is_empty()).then(|| utc(tz, &r[d], US)),
        });
    }
    out
}

fn local_month(t: chrono::DateTime<Utc>) -> String {
    t.with_timezone(&chrono_tz::America::New_York)
        .format("%Y-%m")
        .to_string()
}

#[test]
fn demo_figures_match_the_raw_data_and_rerunning_changes_nothing() {
    let project = Project::new(&demo_dir());
    let stdout = project.ok(&["run"]);
    assert!(stdout.contains("Digest: "), "{stdout}");
    let digest = project.digest();
    assert_eq!(digest["schema_version"], 1);
    assert_eq!(digest["summary"]["goals"], 5);

    // NYC 311: counts and median hours to close, per local month.
    let requests = nyc_requests();
    assert_eq!(requests.len(), 2000);
    let june = requests
        .iter()
        .filter(|r| local_month(r.created) == "2018-06")
        .count();
    assert_eq!(
        figure(&digest, "nyc-311", "requests-received", "2018-06"),
        Some(june as f64)
    );
    let hours: Vec<f64> = requests
        .iter()
        .filter(|r| local_month(r.created) == "2019-03")
        .filter_map(|r| {
            r.closed
                .filter(|c| *c >= r.created)
                .map(|c| (c - r.created).num_seconds() as f64 / 3600.0)
        })
        .collect();
    let march_median = median(hours);
    let g = goal(&digest, "nyc-311", "median-hours-to-close");
    assert_eq!(g["latest"]["period"], "2019-03");
    assert!(
        close(g["latest"]["value"].as_f64().unwrap(), march_median),
        "{g}"
    );
    assert_eq!(
        g["status"], "met",
        "median {march_median} h is under the 12 h target"
    );
    assert!(g["provenance"]["sql"].as_str().unwrap().contains("median("));
    assert_eq!(g["provenance"]["table"], "service_requests");

    // Share closed within 5 days in March 2019, judged against the straight line from
    // baseline (2018-07: 72.2) to target (80 by 2019-06-30).
    let march: Vec<&Nyc> = requests
        .iter()
        .filter(|r| local_month(r.created) == "2019-03")
        .collect();
    let within = march
        .iter()
        .filter(|r| {
            r.closed
                .is_some_and(|c| c >= r.created && (c - r.created).num_seconds() <= 120 * 3600)
        })
        .count();
    let share = 100.0 * within as f64 / march.len() as f64;
    let g = goal(&digest, "nyc-311", "closed-within-5-days");
    assert!(close(g["latest"]["value"].as_f64().unwrap(), share));
    let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
    let fraction = (d(2019, 4, 1) - d(2018, 8, 1)).num_days() as f64
        / (d(2019, 7, 1) - d(2018, 8, 1)).num_days() as f64;
    let expected = 72.2 + fraction * (80.0 - 72.2);
    assert!(close(g["expected"].as_f64().unwrap(), expected));
    let want = if share >= 80.0 {
        "met"
    } else if share >= expected {
        "on_track"
    } else if expected - share <= 0.1 * 7.8 {
        "at_risk"
    } else {
        "off_track"
    };
    assert_eq!(g["status"], want);

    // San Francisco: per call, first unit on scene minus call received; emergencies only.
    let path = "pipelines/demo/data/sffire/fire_department_calls_2016.csv";
    let col = |n| header_index(path, n);
    let (call, rec, scene, prio) = (
        col("Call Number"),
        col("Received DtTm"),
        col("On Scene DtTm"),
        col("Final Priority"),
    );
    let la = chrono_tz::America::Los_Angeles;
    let mut calls: std::collections::BTreeMap<String, Call> = Default::default();
    for r in csv_rows(path) {
        let received = utc(la, &r[rec], US);
        let on_scene = (!r[scene].is_empty()).then(|| utc(la, &r[scene], US));
        let e = calls
            .entry(r[call].to_string())
            .or_insert((received, None, r[prio].to_string()));
        e.0 = e.0.min(received);
        e.1 = match (e.1, on_scene) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    let minutes: Vec<f64> = calls
        .values()
        .filter(|(r, s, p)| {
            p == "3" && s.is_some() && r.with_timezone(&la).date_naive() == d(2017, 1, 7)
        })
        .map(|(r, s, _)| (s.unwrap() - *r).num_seconds() as f64 / 60.0)
        .collect();
    let g = goal(&digest, "sf-fire-ems", "emergency-response-p90");
    assert_eq!(g["latest"]["period"], "2017-01-07");
    assert!(close(
        g["latest"]["value"].as_f64().unwrap(),
        percentile(minutes.clone(), 0.9)
    ));
    let within8 =
        100.0 * minutes.iter().filter(|m| **m <= 8.0).count() as f64 / minutes.len() as f64;
    let g = goal(&digest, "sf-fire-ems", "emergency-within-8-minutes");
    assert!(close(g["latest"]["value"].as_f64().unwrap(), within8));

    // Bicycles: the 15-minute counts of one local day, summed.
    let mut bikes = 0i64;
    for page in ["bike_counts_page_1.json", "bike_counts_page_2.json"] {
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(repo().join("pipelines/demo/data/bike_counts").join(page))
                .unwrap(),
        )
        .unwrap();
        bikes += v
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["date"].as_str().unwrap().starts_with("2016-09-22"))
            .map(|r| r["counts"].as_str().unwrap().parse::<i64>().unwrap())
            .sum::<i64>();
    }
    assert_eq!(
        figure(&digest, "bike-counts", "daily-bicycles", "2016-09-22"),
        Some(bikes as f64)
    );
    // The day the evaluation date falls on is partial and never judged.
    let g = goal(&digest, "bike-counts", "daily-bicycles");
    assert_eq!(g["latest"]["period"], "2016-10-01");
    assert_eq!(
        g["series"].as_array().unwrap().last().unwrap()["partial"],
        true
    );

    // indicators.parquet: one row per point of every series.
    let points: usize = digest["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["indicators"].as_array().unwrap())
        .map(|i| i["series"].as_array().unwrap().len())
        .sum();
    let file = std::fs::File::open(project.current().join("indicators.parquet")).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, points);

    // indicators.csv: the same rows, with a header.
    let mut csv = csv::Reader::from_path(project.current().join("indicators.csv")).unwrap();
    assert_eq!(
        csv.headers().unwrap().iter().take(3).collect::<Vec<_>>(),
        ["pipeline", "indicator", "title"]
    );
    assert_eq!(csv.records().count(), points);

    // digest.json is valid against the published schema.
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(project.current().join("digest.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&digest)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");

    // The data behind the figures: each table at the version its figures come from.
    for p in digest["pipelines"].as_array().unwrap() {
        let name = p["table"]["name"].as_str().unwrap();
        let download = format!("data/{name}.parquet");
        assert_eq!(p["table"]["download"], download.as_str());
        let file = std::fs::File::open(project.current().join(&download)).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let rows: u64 = reader.map(|b| b.unwrap().num_rows() as u64).sum();
        assert_eq!(Some(rows), p["table"]["rows"].as_u64(), "{download}");
    }

    // data.json lists every dataset, with the snapshot among its distributions.
    let catalog: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(project.current().join("data.json")).unwrap(),
    )
    .unwrap();
    let datasets = catalog["dataset"].as_array().unwrap();
    assert_eq!(
        datasets.len(),
        digest["pipelines"].as_array().unwrap().len()
    );
    assert!(datasets.iter().all(|d| {
        d["distribution"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["mediaType"] == "application/vnd.apache.parquet")
    }));

    // The page shows the goals, with the site title escaped.
    let html = std::fs::read_to_string(project.current().join("index.html")).unwrap();
    assert!(html.contains("Test &lt;city&gt; &amp; goals"));
    assert!(!html.contains("Test <city>"));
    assert!(html.contains("Reach 90 % of emergency calls within 8 minutes by 30 June 2017"));
    assert!(
        html.contains("2 of 5 goals on track or met")
            || html.contains("of 5 goals on track or met")
    );

    // A second run: same figures, same row counts (the tables are replaced, not appended to),
    // a new table version and a new published version.
    let first = digest;
    project.ok(&["run"]);
    let second = project.digest();
    assert_ne!(first["version"], second["version"]);
    for (a, b) in first["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .zip(second["pipelines"].as_array().unwrap())
    {
        assert_eq!(a["indicators"], b["indicators"], "figures of {}", a["id"]);
        assert_eq!(a["table"]["rows"], b["table"]["rows"]);
        assert_eq!(
            b["table"]["version"].as_u64().unwrap(),
            a["table"]["version"].as_u64().unwrap() + 1
        );
        for (ga, gb) in a["goals"]
            .as_array()
            .unwrap()
            .iter()
            .zip(b["goals"].as_array().unwrap())
        {
            assert_eq!(
                (&ga["status"], &ga["latest"], &ga["series"]),
                (&gb["status"], &gb["latest"], &gb["series"])
            );
        }
    }
    assert_eq!(
        figure(&second, "nyc-311", "requests-received", "2018-06"),
        Some(june as f64)
    );
    // Each dataset lists its refreshes, newest first, and its page shows them.
    for p in second["pipelines"].as_array().unwrap() {
        let history = p["history"].as_array().unwrap();
        assert_eq!(history.len(), 2, "{}", p["id"]);
        assert_eq!(history[0]["run_id"], p["run_id"]);
        assert!(history.iter().all(|r| r["outcome"] == "succeeded"));
        assert!(history[0]["started_at"].as_str() > history[1]["started_at"].as_str());
    }
    let page = std::fs::read_to_string(project.current().join("datasets/nyc-311.html")).unwrap();
    assert!(
        page.contains("<caption>Latest refreshes</caption>"),
        "{page}"
    );

    // The run history has both runs of every pipeline, all succeeded.
    let runs: serde_json::Value = serde_json::from_str(&project.ok(&["runs", "--json"])).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 6);
    assert!(runs.iter().all(|r| r["status"] == "succeeded"));
    assert!(
        runs.iter()
            .any(|r| r["pipeline"] == "nyc-311" && r["rows_fetched"] == 2000)
    );
}

#[test]
fn running_one_pipeline_keeps_the_others_in_the_digest() {
    let project = Project::new(&demo_dir());
    project.ok(&["run"]);
    let before = project.digest();
    project.ok(&["run", "bike-counts"]);
    let after = project.digest();
    let ids = |d: &serde_json::Value| {
        d["pipelines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&before), ids(&after));
    let run_of = |d: &serde_json::Value, id: &str| pipeline_part(d, id)["run_id"].clone();
    assert_eq!(run_of(&before, "nyc-311"), run_of(&after, "nyc-311"));
    assert_ne!(
        run_of(&before, "bike-counts"),
        run_of(&after, "bike-counts")
    );
    let unknown = project.goalpost(&["run", "no-such-pipeline"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no pipeline \"no-such-pipeline\""));
}
