//! `goalpost validate` reports every problem with file, line and column.

use crate::failures::bike_pipeline;
use crate::{Project, repo};

/// 1-based line and column of the first occurrence of `needle` (after `after`, if given).
fn position(text: &str, needle: &str, after: Option<&str>) -> (usize, usize) {
    let start = after.map_or(0, |a| text.find(a).unwrap());
    let at = start + text[start..].find(needle).unwrap();
    let line = text[..at].matches('\n').count() + 1;
    let col = at - text[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

#[test]
fn validate_reports_each_broken_file_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let good =
        bike_pipeline(&repo().join("pipelines/demo/data/bike_counts/bike_counts_page_1.json"));
    let mut expected = Vec::new();

    // Unknown key in [table].
    let text = good.replace(
        "time = \"counted_at\"",
        "time = \"counted_at\"\npartition_by = \"day\"",
    );
    let (l, c) = position(&text, "partition_by", None);
    expected.push(format!(
        "unknown-key.toml:{l}:{c}: unknown field `partition_by`"
    ));
    std::fs::write(dir.path().join("unknown-key.toml"), text).unwrap();

    // A column type that does not exist.
    let text = good.replace(r#"type = "int64""#, r#"type = "integer""#);
    let (l, c) = position(&text, r#""integer""#, None);
    expected.push(format!(
        "wrong-type.toml:{l}:{c}: unknown variant `integer`, expected one of `string`, `int64`"
    ));
    std::fs::write(dir.path().join("wrong-type.toml"), text).unwrap();

    // A goal naming an indicator that is not defined, and a bad time zone, in one file.
    let text = good
        .replace(
            r#"indicator = "daily-bicycles""#,
            r#"indicator = "daily-bikes""#,
        )
        .replace("America/New_York", "America/Gotham");
    let (l, c) = position(&text, r#""daily-bikes""#, None);
    expected.push(format!(
        "two-errors.toml:{l}:{c}: goal names indicator \"daily-bikes\", which is not defined; the pipeline has: daily-bicycles"
    ));
    let (l, c) = position(&text, r#""America/Gotham""#, None);
    expected.push(format!(
        "two-errors.toml:{l}:{c}: unknown time zone \"America/Gotham\""
    ));
    std::fs::write(dir.path().join("two-errors.toml"), text).unwrap();

    // Indicator SQL naming a column the table does not have: found by planning against the
    // declared schema, pointed at the name inside the SQL.
    let text = good
        .replace("sum(bicycles)", "sum(bikes)")
        .replace("bicycle_counts", "bicycle_counts_copy");
    let (l, c) = position(&text, "bikes)", Some("sql = "));
    expected.push(format!(
        "missing-column.toml:{l}:{c}: indicator \"daily-bicycles\": No field named bikes"
    ));
    std::fs::write(dir.path().join("missing-column.toml"), text).unwrap();

    // A wrong value type for a known key.
    let text = good.replace(r#"period = "day""#, "period = 7");
    let (l, c) = position(&text, "7", Some("period = 7"));
    expected.push(format!(
        "wrong-value.toml:{l}:{c}: invalid type: integer `7`, expected a string"
    ));
    std::fs::write(dir.path().join("wrong-value.toml"), text).unwrap();

    // A second pipeline writing the table another one owns.
    let (l, c) = position(&good, r#""bicycle_counts""#, Some("[table]"));
    expected.push(format!(
        "zz-same-table.toml:{l}:{c}: table \"bicycle_counts\" already belongs to pipeline \"good\""
    ));
    std::fs::write(dir.path().join("zz-same-table.toml"), &good).unwrap();

    // And one good file, which is not reported.
    std::fs::write(dir.path().join("good.toml"), &good).unwrap();

    let project = Project::new(dir.path());
    let out = project.goalpost(&["validate"]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    for e in &expected {
        assert!(
            stdout.lines().any(|line| line.contains(e)),
            "expected a line containing {e:?} in:\n{stdout}"
        );
    }
    assert!(!stdout.contains("good.toml:"), "{stdout}");
    assert_eq!(stdout.lines().count(), expected.len(), "{stdout}");

    // The bundled demo is valid.
    let demo = Project::new(&repo().join("pipelines/demo"));
    let out = demo.ok(&["validate"]);
    assert!(out.contains("3 pipeline file(s)"), "{out}");
}

/// The example pipelines point at real portals (not reachable from tests), but each must be
/// a valid pipeline whose SQL plans against its declared table.
#[test]
fn example_pipelines_validate() {
    let examples = repo().join("pipelines/examples");
    let p = Project::new(&examples);
    let out = p.goalpost(&["validate"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = std::fs::read_dir(&examples)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "toml")
        })
        .count();
    assert!(
        stdout.contains(&format!("{files} pipeline file(s)")),
        "{stdout}"
    );
}

/// Indicator SQL can only read: writes, definitions, settings, files and table functions
/// are refused by `validate` with the indicator's position, and a run refuses them before
/// touching anything.
#[test]
fn indicator_sql_that_writes_or_reads_files_is_refused() {
    let demo = repo().join("pipelines/demo");
    let original = std::fs::read_to_string(demo.join("bike-counts.toml")).unwrap();
    let start = original.find("sql = \"\"\"").unwrap();
    let end = original[start + 9..].find("\"\"\"").unwrap() + start + 12;
    let dir = tempfile::tempdir().unwrap();
    let planted = dir.path().join("planted.csv");
    let cases: [(String, &str); 8] = [
        (
            format!("COPY (SELECT 1) TO '{}'", planted.display()),
            "DML not supported: COPY",
        ),
        ("CREATE TABLE t2 AS SELECT 1".into(), "DDL not supported"),
        (
            format!(
                "CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '{}'",
                "/etc/passwd"
            ),
            "DDL not supported",
        ),
        ("DROP TABLE bicycle_counts".into(), "DDL not supported"),
        (
            "INSERT INTO bicycle_counts SELECT * FROM bicycle_counts".into(),
            "DML not supported",
        ),
        (
            "SET datafusion.execution.batch_size = 1".into(),
            "Statement not supported",
        ),
        ("SELECT * FROM '/etc/passwd'".into(), "not found"),
        (
            "SELECT * FROM read_csv('/etc/passwd')".into(),
            "table function 'read_csv' not found",
        ),
    ];
    for (sql, expected) in cases {
        let pipelines = dir.path().join("pipelines");
        let _ = std::fs::remove_dir_all(&pipelines);
        std::fs::create_dir_all(&pipelines).unwrap();
        std::os::unix::fs::symlink(demo.join("data"), pipelines.join("data")).unwrap();
        let text = format!(
            "{}sql = \"\"\"{sql}\"\"\"{}",
            &original[..start],
            &original[end..]
        );
        std::fs::write(pipelines.join("bike-counts.toml"), &text).unwrap();
        let p = Project::new(&pipelines);
        let out = p.goalpost(&["validate"]);
        assert!(!out.status.success(), "{sql}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = text[..start].lines().count() + 1;
        assert!(
            stdout.contains(&format!(
                "bike-counts.toml:{line}:7: indicator \"daily-bicycles\": "
            )) && stdout.contains(expected),
            "{sql}: {stdout}"
        );
        if !expected.contains("not found") {
            assert!(
                stdout.contains("indicator SQL may only be one SELECT"),
                "{sql}: {stdout}"
            );
        }
        let out = p.goalpost(&["run"]);
        assert!(!out.status.success(), "{sql}");
        assert!(!p.current().exists(), "{sql}: nothing is published");
        assert!(!planted.exists(), "{sql}: no file is written");
    }
}

/// Config files with unknown keys, wrong types and values goalpost cannot work with are
/// refused with the file, line and column and what was expected; nothing runs.
#[test]
fn hostile_config_files_are_refused_with_their_position() {
    let base =
        "data_dir = \"../data\"\npublish_dir = \"../publish\"\npipelines_dir = \"../pipelines\"\n";
    let huge = "x".repeat(100_000);
    let cases: Vec<(String, &str)> = vec![
        (
            "dat_dir = \"x\"\n".into(),
            "goalpost.toml:4:1: unknown field `dat_dir`, expected one of",
        ),
        (
            "keep_versions = \"ten\"\n".into(),
            "goalpost.toml:4:17: invalid type: string \"ten\", expected usize",
        ),
        (
            "keep_versions = 99999999999999999999\n".into(),
            "goalpost.toml:4:17: invalid type: integer `99999999999999999999`",
        ),
        (
            "keep_versions = -1\n".into(),
            "goalpost.toml:4:17: invalid value: integer `-1`, expected usize",
        ),
        (
            "[fetch]\nrequests_per_second = -5\n".into(),
            "goalpost.toml:5:1: [fetch] requests_per_second is -5; expected a number above 0",
        ),
        (
            "[fetch]\nrequests_per_second = nan\n".into(),
            "requests_per_second is NaN; expected a number above 0",
        ),
        (
            "[fetch]\ntimeout = \"100000000000 years\"\n".into(),
            "goalpost.toml:5:1: timeout is 100000000000years; expected at most 1day",
        ),
        (
            "[fetch]\ntimeout = \"soon\"\n".into(),
            "goalpost.toml:5:11:",
        ),
        (
            "[daemon]\nbind = \"not an address\"\n".into(),
            "goalpost.toml:5:1: [daemon] bind is \"not an address\"; expected ADDRESS:PORT",
        ),
        (
            "[daemon]\nmax_concurrent_runs = 0\n".into(),
            "max_concurrent_runs is 0; expected at least 1",
        ),
        (
            "[site]\ntitel = \"x\"\n".into(),
            "goalpost.toml:5:1: unknown field `titel`",
        ),
        (
            format!("[site]\ntitle = {huge:?}\n[site]\n"),
            "goalpost.toml:6:2: duplicate key",
        ),
    ];
    for (extra, expected) in cases {
        let p = Project::new(&repo().join("pipelines/demo"));
        std::fs::write(
            p.path().join("config/goalpost.toml"),
            format!("{base}{extra}"),
        )
        .unwrap();
        for command in [&["validate"][..], &["run"][..], &["status"][..]] {
            let out = p.goalpost(command);
            assert!(!out.status.success(), "{extra}: {command:?}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains(expected),
                "{command:?} {}: {err}",
                &extra[..extra.len().min(80)]
            );
            assert!(err.lines().count() < 20, "a short message: {err}");
        }
        assert!(!p.current().exists());
    }
}

#[test]
fn a_pipeline_id_with_dot_dot_never_becomes_a_path() {
    let pipelines = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(repo().join("pipelines/demo/bike-counts.toml")).unwrap();
    std::os::unix::fs::symlink(
        repo().join("pipelines/demo/data"),
        pipelines.path().join("data"),
    )
    .unwrap();
    std::fs::write(
        pipelines.path().join("bikes.toml"),
        format!("id = \"../../escaped\"\n{good}"),
    )
    .unwrap();
    // "...toml" names the id "..", which is not a pipeline id either.
    std::fs::write(pipelines.path().join("...toml"), &good).unwrap();
    let p = Project::new(pipelines.path());

    let out = p.goalpost(&["validate"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stdout);
    assert!(
        err.contains("bikes.toml:1:6: id \"../../escaped\" differs from the file name"),
        "{err}"
    );
    assert!(err.contains("\"..\" is not a valid pipeline id"), "{err}");

    for id in ["../../escaped", "..", "../bikes", "bikes/../../x"] {
        let out = p.goalpost(&["run", id]);
        assert!(!out.status.success(), "run {id}");
        let err = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            err.contains("has errors") || err.contains("no pipeline"),
            "{id}: {err}"
        );
    }
    // Nothing was written anywhere: not beside the project, not in it.
    let outside = p.path().parent().unwrap().join("escaped");
    assert!(!outside.exists());
    assert!(!p.path().join("data/raw").exists());
    assert!(!p.current().exists());
}
