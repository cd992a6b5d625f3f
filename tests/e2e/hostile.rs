//! Open data holds arbitrary text. Hostile values in a source's rows come out inert in every
//! published file: escaped in HTML, exact in JSON, neutralised in CSV.

use crate::Project;

const SCRIPT: &str = "<script>alert(1)</script>";
const ATTRIBUTE: &str = "\"><img src=x onerror=alert(1)>";
const CDATA: &str = "]]><!-- x";
const BELL: &str = "bell\u{7}and\u{1b}[31mescape\u{0}nul";
const FORMULA: &str = "=HYPERLINK(\"http://evil.example\",\"click\")";

#[test]
fn hostile_text_in_the_data_comes_out_inert() {
    let long = format!("long {}", "x".repeat(10_240));
    let values = [SCRIPT, ATTRIBUTE, CDATA, BELL, FORMULA, long.as_str()];
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("requests.csv");
    let mut w = csv::Writer::from_path(&data).unwrap();
    w.write_record(["id", "created", "category"]).unwrap();
    let mut id = 0;
    for (i, v) in values.iter().enumerate() {
        // Six rows per category and day: no figure is suppressed.
        for day in 1..=2 {
            for _ in 0..(6 + i) {
                id += 1;
                w.write_record([
                    id.to_string(),
                    format!("2024-03-0{day} 10:00:00"),
                    v.to_string(),
                ])
                .unwrap();
            }
        }
    }
    w.flush().unwrap();
    std::fs::write(
        dir.path().join("requests.toml"),
        format!(
            r#"title = "Requests"
timezone = "UTC"
as_of = "2024-03-03"

[[source]]
kind = "file"
path = {:?}

[table]
name = "requests"
key = ["id"]
time = "created_at"
publish = false

[table.columns]
id = {{ type = "int64" }}
created_at = {{ from = "created", type = "timestamp" }}
category = {{ type = "string" }}

[[indicator]]
id = "requests"
title = "Requests"
period = "day"
by = ["category"]
measure = "count"

[[goal]]
indicator = "requests"
title = "Requests {SCRIPT} ]]> stay high\u0007"
better = "higher"
baseline = {{ period = "2024-03-01", value = 30 }}
target = {{ value = 40, by = "2024-12-31" }}

[[news]]
on = ["goal_met"]
category = "{attribute}"
publish_for = "90d"
"#,
            data.display().to_string(),
            attribute = ATTRIBUTE.replace('"', "\\\""),
        ),
    )
    .unwrap();
    let project = Project::new(dir.path());
    project.ok(&["run"]);
    let current = project.current();

    // HTML: every page escapes the values and drops control characters.
    let goal = std::fs::read_to_string(current.join("goals/requests.html")).unwrap();
    for page in walk(&current, "html") {
        let html = std::fs::read_to_string(&page).unwrap();
        for raw in [SCRIPT, ATTRIBUTE, "<img", "<!-- x"] {
            assert!(
                !html.contains(raw),
                "{raw:?} unescaped in {}",
                page.display()
            );
        }
        assert!(
            !html
                .chars()
                .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')),
            "a control character in {}",
            page.display()
        );
    }
    for escaped in [
        "&lt;script&gt;alert(1)&lt;&#x2f;script&gt;",
        "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;",
        "]]&gt;&lt;!-- x",
        "belland[31mescapenul",
        &long,
    ] {
        assert!(goal.contains(escaped), "{escaped:?} in the goal page");
    }

    // JSON: the values come back exactly.
    let digest = project.digest();
    let groups: Vec<String> = digest["pipelines"][0]["indicators"][0]["series"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["group"]["category"].as_str().map(str::to_string))
        .collect();
    for v in values {
        assert!(groups.iter().any(|g| g == v), "{v:?} in digest.json");
    }
    let text = std::fs::read_to_string(current.join("digest.json")).unwrap();
    for escaped in ["\\u0007", "\\u001b", "\\u0000"] {
        assert!(
            text.contains(escaped),
            "control characters are escaped in JSON: {escaped}"
        );
    }
    // The Atom feed holds no control character either, NUL included (the charts are inline
    // SVG in the pages checked above).
    let feed = std::fs::read_to_string(current.join("feed.atom")).unwrap();
    assert!(
        !feed
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')),
        "a control character in feed.atom"
    );

    // Atom: a real feed reader reads the hostile title and category back as text.
    let feed = std::fs::read_to_string(current.join("feed.atom")).unwrap();
    for raw in [SCRIPT, "<img"] {
        assert!(!feed.contains(raw), "{raw:?} unescaped in feed.atom");
    }
    let read = crate::news::feedparser(&current.join("feed.atom"));
    assert_eq!(read["bozo"], 0, "{read}");
    assert_eq!(
        read["entries"][0]["title"],
        format!("Goal met: Requests {SCRIPT} ]]> stay high")
    );
    assert_eq!(read["entries"][0]["category"], ATTRIBUTE);

    // The table is not published row by row (`publish = false`): the figures are.
    let digest_table = &digest["pipelines"][0]["table"];
    assert!(digest_table.get("download").is_none(), "{digest_table}");
    assert!(!current.join("data/requests.parquet").exists());
    let catalog = std::fs::read_to_string(current.join("data.json")).unwrap();
    assert!(
        !catalog.contains("application/vnd.apache.parquet"),
        "{catalog}"
    );

    // CSV: values are quoted, and the formula is neutralised.
    let mut r = csv::Reader::from_path(current.join("indicators.csv")).unwrap();
    let group = r
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "group")
        .unwrap();
    let cells: Vec<String> = r
        .records()
        .map(|row| row.unwrap()[group].to_string())
        .collect();
    assert!(
        cells.iter().any(|c| *c == format!("'{FORMULA}")),
        "{cells:?}"
    );
    assert!(!cells.iter().any(|c| c.starts_with('=')));
    assert!(cells.iter().any(|c| c == SCRIPT));
    assert!(cells.contains(&long));
}

/// Every file under `dir` with the extension.
fn walk(dir: &std::path::Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path, ext));
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
    out
}

/// A pipeline over one local document `requests.<ext>` with columns id, created, category.
fn odd_document(dir: &std::path::Path, ext: &str, bytes: &[u8]) -> Project {
    let data = dir.join(format!("requests.{ext}"));
    std::fs::write(&data, bytes).unwrap();
    std::fs::write(
        dir.join("requests.toml"),
        format!(
            r#"title = "Requests"
timezone = "UTC"
as_of = "2024-03-03"

[[source]]
kind = "file"
path = {:?}

[table]
name = "requests"
key = ["id"]
time = "created_at"

[table.columns]
id = {{ type = "int64" }}
created_at = {{ from = "created", type = "timestamp" }}
category = {{ type = "string" }}

[[indicator]]
id = "requests"
title = "Requests"
period = "day"
measure = "count"
min_count = 0
"#,
            data.display().to_string(),
        ),
    )
    .unwrap();
    Project::new(dir)
}

#[test]
fn odd_documents_load_whole_or_fail_naming_the_place() {
    // A 10 MB field loads, whole.
    let dir = tempfile::tempdir().unwrap();
    let big = "y".repeat(10 * 1024 * 1024);
    let csv =
        format!("id,created,category\n1,2024-03-01 10:00:00,{big}\n2,2024-03-01 11:00:00,b\n");
    let p = odd_document(dir.path(), "csv", csv.as_bytes());
    p.ok(&["run"]);
    let runs: serde_json::Value = serde_json::from_str(&p.ok(&["runs", "--json"])).unwrap();
    assert_eq!(runs[0]["rows_written"], 2);
    let snapshot = p.current().join("data/requests.parquet");
    assert!(std::fs::metadata(&snapshot).unwrap().len() > 0);

    // Invalid UTF-8 in a field: the run fails naming the file and line; nothing is published.
    let mut bytes =
        b"id,created,category\n1,2024-03-01 10:00:00,ok\n2,2024-03-01 11:00:00,caf".to_vec();
    bytes.extend_from_slice(&[0xe9, 0xff, b'\n']);
    let err = refused("csv", &bytes);
    assert!(
        err.contains("requests.csv") && err.contains("UTF-8"),
        "{err}"
    );

    // The same in JSON: the file, line and column.
    let mut bytes =
        b"[{\"id\": 1, \"created\": \"2024-03-01T10:00:00\", \"category\": \"caf".to_vec();
    bytes.extend_from_slice(&[0xe9, 0xff]);
    bytes.extend_from_slice(b"\"}]");
    let err = refused("json", &bytes);
    assert!(
        err.contains("requests.json: line 1 column 62: invalid unicode code point\n"),
        "{err}"
    );

    // JSON nested 100,000 deep: refused with a message naming the file, without
    // exhausting the stack.
    let depth = 100_000;
    let json = format!(
        "[{{\"id\": 1, \"created\": \"2024-03-01T10:00:00\", \"category\": {}{}}}]",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let err = refused("json", json.as_bytes());
    assert!(
        err.contains("requests.json") && err.contains("recursion limit"),
        "{err}"
    );
}

/// Run a pipeline over the document `requests.<ext>` holding `bytes`, insisting that the
/// run fails and publishes nothing; its error output.
fn refused(ext: &str, bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = odd_document(dir.path(), ext, bytes);
    let out = p.goalpost(&["run"]);
    assert!(!out.status.success());
    assert!(!p.current().exists());
    String::from_utf8_lossy(&out.stderr).into_owned()
}
