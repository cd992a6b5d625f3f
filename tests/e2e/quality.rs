//! Tables you can trust: deliberately broken copies of the real San Francisco fire calls
//! extract each produce the expected quarantine rows, check results and held figures.
//!
//! Expected counts come from the fixture CSV read here with the `csv` crate.

use crate::{Project, figure, pipeline_part, repo};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    repo().join("pipelines/demo/data/sffire/fire_department_calls_2016.csv")
}

/// The fixture's header and rows.
fn read() -> (csv::StringRecord, Vec<csv::StringRecord>) {
    let mut r = csv::Reader::from_path(fixture()).unwrap();
    let header = r.headers().unwrap().clone();
    let rows = r.records().map(Result::unwrap).collect();
    (header, rows)
}

fn col(header: &csv::StringRecord, name: &str) -> usize {
    header.iter().position(|h| h == name).unwrap()
}

fn write(path: &Path, header: &csv::StringRecord, rows: &[csv::StringRecord]) {
    let mut w = csv::Writer::from_path(path).unwrap();
    w.write_record(header).unwrap();
    for r in rows {
        w.write_record(r).unwrap();
    }
    w.flush().unwrap();
}

fn set(row: &csv::StringRecord, at: usize, value: &str) -> csv::StringRecord {
    row.iter()
        .enumerate()
        .map(|(i, v)| if i == at { value } else { v })
        .collect()
}

/// The demo's SF pipeline (with its checks) reading `data`, plus `extra` TOML.
fn pipeline(data: &Path, extra: &str) -> String {
    let text = std::fs::read_to_string(repo().join("pipelines/demo/sf-fire-ems.toml")).unwrap();
    let text = text.replace(
        "path = \"data/sffire/fire_department_calls_2016.csv\"",
        &format!("path = {:?}", data.display().to_string()),
    );
    format!("{text}\n{extra}\n")
}

/// A project whose one pipeline, `sf`, reads `data/calls.csv` in its pipelines folder.
struct Setup {
    pipelines: tempfile::TempDir,
    project: Project,
}

impl Setup {
    fn new(extra: &str) -> Self {
        let pipelines = tempfile::tempdir().unwrap();
        let data = pipelines.path().join("calls.csv");
        std::fs::copy(fixture(), &data).unwrap();
        std::fs::write(pipelines.path().join("sf.toml"), pipeline(&data, extra)).unwrap();
        let project = Project::new(pipelines.path());
        Self { pipelines, project }
    }

    fn data(&self) -> PathBuf {
        self.pipelines.path().join("calls.csv")
    }

    fn checks(&self) -> BTreeMap<String, serde_json::Value> {
        let out: serde_json::Value =
            serde_json::from_str(&self.project.ok(&["checks", "--json"])).unwrap();
        out[0]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["check_id"].as_str().unwrap().to_string(), c.clone()))
            .collect()
    }
}

/// Rows of a Delta table under the project, by SQL.
fn query(dir: &Path, sql: &str) -> Vec<serde_json::Value> {
    use goalpost_table::deltalake;
    use goalpost_table::deltalake::datafusion::prelude::SessionContext;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = deltalake::ensure_table_uri(dir.to_string_lossy()).unwrap();
        let table = deltalake::open_table(url).await.unwrap();
        let ctx = SessionContext::new();
        table.update_datafusion_session(&ctx.state()).unwrap();
        ctx.register_table("t", table.table_provider().await.unwrap())
            .unwrap();
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        // Integers as JSON numbers, everything else as its display text.
        let mut out = Vec::new();
        for b in &batches {
            for i in 0..b.num_rows() {
                let mut row = serde_json::Map::new();
                for (f, c) in b.schema().fields().iter().zip(b.columns()) {
                    use arrow::array::{Array, AsArray};
                    let v = if c.is_null(i) {
                        serde_json::Value::Null
                    } else if *c.data_type() == arrow::datatypes::DataType::Int64 {
                        c.as_primitive::<arrow::datatypes::Int64Type>()
                            .value(i)
                            .into()
                    } else {
                        arrow::util::display::array_value_to_string(c, i)
                            .unwrap()
                            .into()
                    };
                    row.insert(f.name().clone(), v);
                }
                out.push(serde_json::Value::Object(row));
            }
        }
        out
    })
}

/// Calls per local day, counted here from the fixture rows that should be in the table.
fn calls_per_day(header: &csv::StringRecord, rows: &[&csv::StringRecord]) -> BTreeMap<String, f64> {
    let received = col(header, "Received DtTm");
    let call = col(header, "Call Number");
    let mut calls: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for r in rows {
        // "12/31/2016 11:57:56 PM" is already local time: its date is the day.
        let d = chrono::NaiveDate::parse_from_str(&r[received][..10], "%m/%d/%Y").unwrap();
        calls
            .entry(d.format("%Y-%m-%d").to_string())
            .or_default()
            .insert(r[call].to_string());
    }
    calls
        .into_iter()
        .map(|(d, c)| (d, c.len() as f64))
        .collect()
}

#[test]
fn bad_rows_are_quarantined_and_the_good_rows_go_on() {
    let s = Setup::new("");
    let (header, rows) = read();
    let received = col(&header, "Received DtTm");
    let priority = col(&header, "Final Priority");
    let battalion = col(&header, "Battalion");
    let row_id = col(&header, "RowID");
    // 40 unreadable dates, 10 priorities outside the allowed set (an error row check), 5
    // battalions that do not match the pattern (a warn row check: kept).
    let mut broken = rows.clone();
    for i in 0..40 {
        broken[i * 7] = set(&broken[i * 7], received, "31/12/2016 25:61");
    }
    for i in 0..10 {
        broken[1000 + i] = set(&broken[1000 + i], priority, "9");
    }
    for i in 0..5 {
        broken[2000 + i] = set(&broken[2000 + i], battalion, "Station <5>");
    }
    write(&s.data(), &header, &broken);
    let out = s.project.ok(&["run"]);
    assert!(out.contains("50 row(s) quarantined"), "{out}");
    assert!(out.contains("check regex:battalion warned"), "{out}");

    // The quarantine: every rejected row with run, page, row, reason and raw text.
    let q = query(
        &s.project.path().join("data/quarantine/fire_ems_responses"),
        "SELECT run_id, page, \"row\", reason, raw FROM t ORDER BY reason, \"row\"",
    );
    assert_eq!(q.len(), 50);
    let digest = s.project.digest();
    let run_id = pipeline_part(&digest, "sf")["run_id"].as_str().unwrap();
    assert!(q.iter().all(|r| r["run_id"] == run_id && r["page"] == 0));
    let dates: Vec<_> = q
        .iter()
        .filter(|r| r["reason"].as_str().unwrap().contains("received_at"))
        .collect();
    assert_eq!(dates.len(), 40);
    assert!(
        dates[0]["reason"].as_str().unwrap().starts_with(
            r#"column "received_at" (field "Received DtTm"): "31/12/2016 25:61" is not a timestamp"#
        ),
        "{}",
        dates[0]["reason"]
    );
    // The raw row is the row as sent: its RowID finds it in the fixture, on the line named.
    let raw: serde_json::Value = serde_json::from_str(dates[0]["raw"].as_str().unwrap()).unwrap();
    let line: usize = dates[0]["row"].as_str().unwrap()["line ".len()..]
        .parse()
        .unwrap();
    assert_eq!(raw["RowID"], broken[line - 2][row_id]);
    let priorities: Vec<_> = q
        .iter()
        .filter(|r| r["reason"].as_str().unwrap().contains("final_priority"))
        .collect();
    assert_eq!(priorities.len(), 10);
    assert!(
        priorities[0]["reason"].as_str().unwrap().contains(
            r#"check "allowed:final_priority": final_priority = "9" is not an allowed value"#
        ),
        "{}",
        priorities[0]["reason"]
    );

    // `goalpost quarantine` lists them in source order.
    let listed = s.project.ok(&["quarantine", "sf", "--limit", "3"]);
    assert!(
        listed.starts_with(&format!(
            "sf: 50 row(s) quarantined by run {run_id} (showing 3; --limit N for more)\n{} line 2: column \"received_at\"",
            s.data().display()
        )),
        "{listed}"
    );
    let json: serde_json::Value =
        serde_json::from_str(
            &s.project
                .ok(&["quarantine", "sf", "--json", "--limit", "100"]),
        )
        .unwrap();
    let lines: Vec<u64> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["row"].as_str().unwrap()[5..].parse().unwrap())
        .collect();
    assert_eq!(lines.len(), 50);
    assert!(lines.windows(2).all(|w| w[0] < w[1]), "{lines:?}");

    // The table holds the other rows, the battalion oddities among them.
    let bad: std::collections::HashSet<usize> = (0..40).map(|i| i * 7).chain(1000..1010).collect();
    let good: Vec<&csv::StringRecord> = broken
        .iter()
        .enumerate()
        .filter(|(i, _)| !bad.contains(i))
        .map(|(_, r)| r)
        .collect();
    let n = query(
        &s.project.path().join("data/tables/fire_ems_responses"),
        "SELECT count(*) AS n FROM t",
    );
    assert_eq!(n[0]["n"], good.len());

    // Check results, recorded and published.
    let checks = s.checks();
    assert_eq!(checks["allowed:final_priority"]["status"], "quarantined");
    assert_eq!(checks["allowed:final_priority"]["rows_failed"], 10);
    assert_eq!(checks["regex:battalion"]["status"], "warned");
    assert_eq!(checks["regex:battalion"]["rows_failed"], 5);
    assert_eq!(checks["unique:row_id"]["status"], "passed");
    assert_eq!(checks["row_count"]["status"], "skipped", "no earlier run");
    let part = pipeline_part(&digest, "sf");
    let dq = &part["data_quality"];
    assert_eq!(dq["rows_received"], rows.len());
    assert_eq!(dq["rows_quarantined"], 50);
    assert_eq!(dq["quarantine_limit"], 5.0);
    assert_eq!(dq["checks"].as_array().unwrap().len(), 6);
    assert!(part.get("held").is_none());

    // The figures are those of the good rows.
    for (day, calls) in calls_per_day(&header, &good) {
        assert_eq!(
            figure(&digest, "sf", "calls-received", &day),
            Some(calls),
            "calls on {day}"
        );
    }
    // And the dataset's page shows the data-quality section, escaped.
    let html = std::fs::read_to_string(s.project.current().join("datasets/sf.html")).unwrap();
    assert!(html.contains("Checks of the last refresh"), "{html}");
    assert!(html.contains("&quot;Station &lt;5&gt;&quot;"));
}

#[test]
fn more_bad_rows_than_the_limit_fail_the_run_and_keep_the_digest() {
    let s = Setup::new("");
    s.project.ok(&["run"]);
    let before = std::fs::read(s.project.current().join("digest.json")).unwrap();
    let (header, rows) = read();
    let received = col(&header, "Received DtTm");
    // 8 % of the rows: above the default limit of 5 %.
    let bad = rows.len() * 8 / 100;
    let broken: Vec<csv::StringRecord> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if i < bad {
                set(r, received, "soon")
            } else {
                r.clone()
            }
        })
        .collect();
    write(&s.data(), &header, &broken);
    let out = s.project.goalpost(&["run"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let share = bad as f64 * 100.0 / rows.len() as f64;
    assert!(
        err.contains(&format!(
            "{bad} of {} rows ({share:.1} %) failed typing or row checks, above the quarantine limit of 5 %; nothing was written",
            rows.len()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            r#"{bad} × e.g. {} line 2: column "received_at" (field "Received DtTm"): "soon" is not a timestamp"#,
            s.data().display()
        )),
        "{err}"
    );
    assert_eq!(
        std::fs::read(s.project.current().join("digest.json")).unwrap(),
        before,
        "the digest is untouched"
    );
    // The rejected rows are kept for review, under the failed run's id.
    let runs: serde_json::Value = serde_json::from_str(&s.project.ok(&["runs", "--json"])).unwrap();
    assert_eq!(runs[0]["status"], "failed");
    assert_eq!(runs[0]["rows_quarantined"], bad);
    let q = query(
        &s.project.path().join("data/quarantine/fire_ems_responses"),
        "SELECT run_id, count(*) AS n FROM t GROUP BY run_id",
    );
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["run_id"], runs[0]["id"]);
    assert_eq!(q[0]["n"], bad);
    // The table is still the good version.
    let n = query(
        &s.project.path().join("data/tables/fire_ems_responses"),
        "SELECT count(*) AS n FROM t",
    );
    assert_eq!(n[0]["n"], rows.len());
}

#[test]
fn duplicates_are_kept_once_and_a_failed_unique_check_holds_the_figures() {
    let s = Setup::new(
        r#"[[check]]
kind = "unique"
columns = ["call_number", "unit_id"]
description = "A unit is dispatched to a call once."
"#,
    );
    s.project.ok(&["run"]);
    let good = s.project.digest();
    let good_part = pipeline_part(&good, "sf").clone();
    let (header, rows) = read();
    let row_id = col(&header, "RowID");
    let unit = col(&header, "Unit ID");
    // 30 rows sent twice as they are (the same key: kept once), and 20 units reported a
    // second time under another row id (distinct keys, but the same call and unit).
    let mut broken = rows.clone();
    broken.extend(rows[100..130].iter().cloned());
    for r in &rows[500..520] {
        broken.push(set(r, row_id, &format!("{}-again", &r[row_id])));
    }
    write(&s.data(), &header, &broken);
    let out = s.project.ok(&["run"]);
    assert!(
        out.contains("check unique:call_number+unit_id failed"),
        "{out}"
    );
    assert!(out.contains("HELD"), "{out}");

    let n = query(
        &s.project.path().join("data/tables/fire_ems_responses"),
        "SELECT count(*) AS n, count(DISTINCT row_id) AS keys FROM t",
    );
    assert_eq!(n[0]["n"], rows.len() + 20, "each key once");
    assert_eq!(n[0]["keys"], rows.len() + 20);

    let checks = s.checks();
    assert_eq!(checks["unique:row_id"]["status"], "passed");
    let unique = &checks["unique:call_number+unit_id"];
    assert_eq!(unique["status"], "failed");
    assert_eq!(unique["rows_failed"], 20);
    // Examples come smallest key first.
    let call = col(&header, "Call Number");
    let (first_call, first_unit) = rows[500..520]
        .iter()
        .map(|r| (r[call].parse::<i64>().unwrap(), r[unit].to_string()))
        .min()
        .unwrap();
    assert!(
        unique["message"]
            .as_str()
            .unwrap()
            .contains(&format!("e.g. ({first_call}, {first_unit}) × 2")),
        "{unique}"
    );

    // The figures stay those of the good run, marked held with the check's message.
    let digest = s.project.digest();
    let part = pipeline_part(&digest, "sf");
    assert_eq!(part["held"]["reason"], "data quality");
    assert_eq!(part["held"]["checks"][0], "unique:call_number+unit_id");
    assert_eq!(
        part["indicators"][0]["series"],
        good_part["indicators"][0]["series"]
    );
    assert_eq!(part["table"]["version"], good_part["table"]["version"]);
    assert!(
        part["table"]["latest_version"].as_u64().unwrap()
            > good_part["table"]["version"].as_u64().unwrap()
    );
    for (g, was) in part["goals"]
        .as_array()
        .unwrap()
        .iter()
        .zip(good_part["goals"].as_array().unwrap())
    {
        assert_eq!(g["status"], was["status"]);
        assert_eq!(g["latest"], was["latest"]);
        assert!(
            g["held"]["message"]
                .as_str()
                .unwrap()
                .starts_with("check \"unique:call_number+unit_id\" failed: 20 value(s)"),
            "{g}"
        );
    }
    assert_eq!(
        digest["summary"]["held"],
        part["goals"].as_array().unwrap().len()
    );
    let html = std::fs::read_to_string(s.project.current().join("datasets/sf.html")).unwrap();
    assert!(html.contains("Figures held: data quality."), "{html}");
    let html = std::fs::read_to_string(s.project.current().join("index.html")).unwrap();
    assert!(html.contains("Held: data quality."), "{html}");
    let runs = s.project.ok(&["runs"]);
    assert!(runs.contains(" held "), "{runs}");
    // `explain` says the figure is held, why, and that it comes from the good run.
    let goal = part["goals"][0].clone();
    let text = s.project.ok(&["explain", goal["id"].as_str().unwrap()]);
    let good_run = good_part["run_id"].as_str().unwrap();
    for needle in [
        format!(
            "  held since run {}: check \"unique:call_number+unit_id\" failed: 20 value(s)",
            part["held"]["since_run"].as_str().unwrap()
        ),
        format!(
            "the figures below are the last good ones, from run {}, not from table version {}, which the failing check judged",
            good_part["run_id"].as_str().unwrap(),
            part["table"]["latest_version"]
        ),
        format!(
            "  computed by run {good_run} at {} UTC from table {} at Delta version {}",
            good_part["refreshed_at"]
                .as_str()
                .unwrap()
                .replace('T', " ")
                .split('.')
                .next()
                .unwrap()
                .trim_end_matches('Z'),
            good_part["table"]["name"].as_str().unwrap(),
            good_part["table"]["version"]
        ),
    ] {
        assert!(text.contains(&needle), "{needle:?} in:\n{text}");
    }

    // Good data again: the figures are computed afresh and the hold is lifted.
    std::fs::copy(fixture(), s.data()).unwrap();
    s.project.ok(&["run"]);
    let part = pipeline_part(&s.project.digest(), "sf").clone();
    assert!(part.get("held").is_none());
    assert_eq!(
        part["indicators"][0]["series"],
        good_part["indicators"][0]["series"]
    );
}

#[test]
fn a_renamed_column_fails_the_run_and_schema_drift_names_it() {
    let s = Setup::new("");
    s.project.ok(&["run"]);
    let before = std::fs::read(s.project.current().join("digest.json")).unwrap();
    let (header, rows) = read();
    let renamed: csv::StringRecord = header
        .iter()
        .map(|h| {
            if h == "Battalion" {
                "Battalion Code"
            } else {
                h
            }
        })
        .collect();
    write(&s.data(), &renamed, &rows);
    let out = s.project.goalpost(&["run"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"field "Battalion" (for column "battalion") is not in the source; it has: "Call Number""#),
        "{err}"
    );
    assert!(err.contains(r#""Battalion Code""#), "{err}");
    assert_eq!(
        std::fs::read(s.project.current().join("digest.json")).unwrap(),
        before
    );
    let checks = s.checks();
    let drift = &checks["schema_drift"];
    assert_eq!(drift["status"], "failed");
    assert_eq!(
        drift["message"],
        format!(
            r#"{}: column "Battalion" disappeared; {}: column "Battalion Code" appeared"#,
            s.data().display(),
            s.data().display()
        )
    );
}

#[test]
fn a_column_turned_to_text_fails_the_run_and_schema_drift_names_it() {
    let s = Setup::new("");
    s.project.ok(&["run"]);
    let (header, rows) = read();
    let call = col(&header, "Call Number");
    let texted: Vec<csv::StringRecord> = rows
        .iter()
        .map(|r| set(r, call, &format!("SF-{}", &r[call])))
        .collect();
    write(&s.data(), &header, &texted);
    let out = s.project.goalpost(&["run"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{n} of {n} rows (100.0 %) failed typing or row checks",
            n = rows.len()
        )),
        "{err}"
    );
    assert!(
        err.contains(r#"column "call_number" (field "Call Number"): "SF-"#),
        "{err}"
    );
    let checks = s.checks();
    assert_eq!(checks["schema_drift"]["status"], "failed");
    assert_eq!(
        checks["schema_drift"]["message"],
        format!(
            r#"{}: column "Call Number" changed from number to text"#,
            s.data().display()
        )
    );
}

#[test]
fn a_sixty_percent_drop_holds_the_figures_until_the_rows_are_back_or_accepted() {
    let s = Setup::new("");
    s.project.ok(&["run"]);
    let good = pipeline_part(&s.project.digest(), "sf").clone();
    let (header, rows) = read();
    let kept = rows.len() * 40 / 100;
    write(&s.data(), &header, &rows[..kept]);
    let out = s.project.ok(&["run"]);
    assert!(out.contains("HELD"), "{out}");
    let checks = s.checks();
    assert_eq!(checks["row_count"]["status"], "failed");
    let drop = (rows.len() - kept) as f64 * 100.0 / rows.len() as f64;
    assert_eq!(
        checks["row_count"]["message"],
        format!(
            "the table fell from {} to {kept} rows ({drop:.1} % fewer); at most 20 % is expected",
            rows.len()
        )
    );
    let held = pipeline_part(&s.project.digest(), "sf").clone();
    assert_eq!(held["indicators"], {
        let mut ind = good["indicators"].clone();
        for i in ind.as_array_mut().unwrap() {
            i["held"] = held["held"].clone();
        }
        ind
    });
    let since = held["held"]["since_run"].clone();

    // Still short on the next run: still held, since the same run.
    let out = s.project.ok(&["run"]);
    assert!(out.contains("HELD"), "{out}");
    let again = pipeline_part(&s.project.digest(), "sf").clone();
    assert_eq!(again["held"]["since_run"], since);
    assert_eq!(again["table"]["version"], good["table"]["version"]);

    // The steward confirms the smaller extract is right: figures move.
    let out = s.project.ok(&["run", "--accept-changes"]);
    assert!(!out.contains("HELD"), "{out}");
    let accepted = pipeline_part(&s.project.digest(), "sf").clone();
    assert!(accepted.get("held").is_none());
    let checks = s.checks();
    assert_eq!(checks["row_count"]["status"], "passed");
    assert!(
        checks["row_count"]["message"]
            .as_str()
            .unwrap()
            .starts_with("accepted with --accept-changes: the table fell from"),
    );
    let short: Vec<&csv::StringRecord> = rows[..kept].iter().collect();
    let expected = calls_per_day(&header, &short);
    for (day, calls) in &expected {
        assert_eq!(
            figure(&s.project.digest(), "sf", "calls-received", day),
            Some(*calls)
        );
    }
}

#[test]
fn a_full_load_leaves_out_records_whose_newest_row_marks_them_deleted() {
    let pipelines = tempfile::tempdir().unwrap();
    let data = pipelines.path().join("calls.csv");
    let text = pipeline(&data, "").replace(
        "time = \"received_at\"",
        "time = \"received_at\"\ndeletes = { column = \"call_type_group\", values = [\"Deleted\"] }",
    );
    std::fs::write(pipelines.path().join("sf.toml"), text).unwrap();
    let project = Project::new(pipelines.path());
    let (header, rows) = read();
    let group = col(&header, "Call Type Group");
    assert!(rows.iter().all(|r| &r[group] != "Deleted"));
    // Five records deleted later in the same file; one deleted row first and then sent
    // live again (the live row is newer: it stays).
    let mut sent = rows.clone();
    for r in &rows[..5] {
        sent.push(set(r, group, "Deleted"));
    }
    sent.insert(0, set(&rows[10], group, "Deleted"));
    write(&data, &header, &sent);
    project.ok(&["run"]);
    let n = query(
        &project.path().join("data/tables/fire_ems_responses"),
        "SELECT count(*) AS n, count(DISTINCT row_id) AS keys, \
         sum(CASE WHEN call_type_group = 'Deleted' THEN 1 ELSE 0 END) AS flagged FROM t",
    );
    assert_eq!(n[0]["n"], rows.len() - 5);
    assert_eq!(n[0]["keys"], rows.len() - 5);
    assert_eq!(n[0]["flagged"], 0);
}

#[test]
fn a_new_column_holds_the_figures_until_the_change_is_accepted() {
    let s = Setup::new("");
    s.project.ok(&["run"]);
    let (header, rows) = read();
    let mut wider = header.clone();
    wider.push_field("Engine Colour");
    let rows: Vec<csv::StringRecord> = rows
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.push_field("red");
            r
        })
        .collect();
    write(&s.data(), &wider, &rows);
    let out = s.project.ok(&["run"]);
    assert!(out.contains("HELD"), "{out}");
    let first = s.checks()["schema_drift"].clone();
    assert_eq!(first["status"], "failed");
    assert_eq!(
        first["message"],
        format!(r#"{}: column "Engine Colour" appeared"#, s.data().display())
    );
    let held_run = pipeline_part(&s.project.digest(), "sf")["held"]["since_run"].clone();

    // Nothing new arrives: the drift is still unresolved, the figures still held.
    let out = s.project.ok(&["run"]);
    assert!(out.contains("HELD"), "{out}");
    let again = s.checks()["schema_drift"].clone();
    assert_eq!(again["status"], "failed");
    assert_eq!(
        pipeline_part(&s.project.digest(), "sf")["held"]["since_run"],
        held_run
    );

    // Accepted: the new columns become the baseline and the figures move again.
    let out = s.project.ok(&["run", "--accept-changes"]);
    assert!(!out.contains("HELD"), "{out}");
    let out = s.project.ok(&["run"]);
    assert!(!out.contains("HELD"), "{out}");
    let settled = s.checks()["schema_drift"].clone();
    assert!(
        settled["status"] == "passed" || settled["status"] == "skipped",
        "{settled}"
    );
}
