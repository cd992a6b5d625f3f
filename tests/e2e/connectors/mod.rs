//! Connector tests: each portal's connector against a local server that speaks its API (an
//! emulator from goalpost-testkit, or the real server software), through the real runner.
//!
//! Every test loads the San Francisco Fire Department calls fixture (7,704 rows) or a slice
//! of it, and compares the stored table with the fixture row for row. Expected values come
//! from the fixture itself, never from goalpost.

mod arcgis;
mod ckan;
mod datasette;
mod http;
mod init;
mod opendatasoft;
mod socrata;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, TimestampMicrosecondType};
use chrono::{DateTime, TimeZone, Utc};
use goalpost_runner::{Configured, FixedClock, RunError, RunOptions, RunReport, Runner};
use goalpost_spec::{Config, Pipeline, load_pipeline};
use goalpost_table::TableStore;
use goalpost_table::deltalake::datafusion::prelude::SessionContext;
use goalpost_testkit::{Dataset, Fault, FaultPlan, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const TABLE: &str = "fire_calls";

/// A project folder with a config tuned for tests (fast retries whose waits are recorded, not
/// slept) and one pipeline, `fire`.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub waits: Arc<Mutex<Vec<Duration>>>,
}

/// How a connector names the fixture's columns (`RowID`, `rowid`, `Row_ID` …).
pub type Namer = fn(&str) -> String;

impl Harness {
    /// `source` is the pipeline's `[[source]]` table body (without the header); `name` maps a
    /// fixture column label to the connector's field name.
    pub fn new(source: &str, name: Namer) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("config")).unwrap();
        std::fs::create_dir_all(root.join("pipelines")).unwrap();
        std::fs::write(
            root.join("config/goalpost.toml"),
            r#"data_dir = "../data"
publish_dir = "../publish"
pipelines_dir = "../pipelines"

[fetch]
requests_per_second = 100000
timeout = "1500ms"
connect_timeout = "1s"
retries = 4
backoff_initial = "10ms"
backoff_max = "40ms"
retry_after_floor = "25ms"
"#,
        )
        .unwrap();
        let pipeline = format!(
            r#"title = "Fire calls"
timezone = "America/Los_Angeles"
as_of = "2017-01-08"

[[source]]
{source}

[table]
name = "{TABLE}"
key = ["row_id"]
time = "received_at"

[table.columns]
row_id = {{ from = "{row_id}", type = "string" }}
call_type = {{ from = "{call_type}", type = "string" }}
disposition = {{ from = "{disposition}", type = "string" }}
received_at = {{ from = "{received}", type = "timestamp" }}
available_at = {{ from = "{available}", type = "timestamp", required = false }}

# A load that loses most rows (a document cut short at a row boundary) holds the figures.
[[check]]
kind = "row_count"
max_drop = 20

[[indicator]]
id = "calls"
title = "Units dispatched"
period = "day"
sql = "SELECT period, count(*) AS value FROM {TABLE} GROUP BY period"
"#,
            row_id = name("RowID"),
            call_type = name("Call Type"),
            disposition = name("Call Final Disposition"),
            received = name("Received DtTm"),
            available = name("Available DtTm"),
        );
        std::fs::write(root.join("pipelines/fire.toml"), pipeline).unwrap();
        Self {
            dir,
            waits: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub fn config(&self) -> Config {
        Config::load(&self.dir.path().join("config/goalpost.toml")).expect("config")
    }

    pub fn pipeline(&self) -> Pipeline {
        load_pipeline(&self.dir.path().join("pipelines/fire.toml")).expect("pipeline is valid")
    }

    pub fn runner(&self) -> Runner {
        let waits = self.waits.clone();
        Runner::new(self.config(), Arc::new(FixedClock(at(2017, 1, 8)))).with_sleep(Arc::new(
            move |d| {
                waits.lock().unwrap().push(d);
                Box::pin(async {})
            },
        ))
    }

    pub async fn run_with(&self, options: &RunOptions) -> Result<RunReport, RunError> {
        self.runner()
            .run(&self.pipeline(), &Configured::only(&["fire"]), options)
            .await
    }

    pub async fn run(&self) -> Result<RunReport, RunError> {
        self.run_with(&RunOptions::default()).await
    }

    /// `goalpost run --full`.
    pub async fn run_full(&self) -> Result<RunReport, RunError> {
        self.run_with(&RunOptions {
            full: true,
            ..Default::default()
        })
        .await
    }

    /// `goalpost run --replay <run_id>`, after checking the run left a recording.
    pub async fn replay(&self, run_id: &str) -> Result<RunReport, RunError> {
        let recording = self.dir.path().join("data/raw/fire").join(run_id);
        assert!(
            recording.join("responses.ndjson").is_file(),
            "{run_id} was recorded"
        );
        assert!(
            recording.join("000001.zst").is_file(),
            "{run_id} kept its bodies"
        );
        self.run_with(&RunOptions {
            replay: Some(run_id.to_string()),
            ..Default::default()
        })
        .await
    }

    pub fn digest_bytes(&self) -> Option<Vec<u8>> {
        std::fs::read(self.dir.path().join("publish/current/digest.json")).ok()
    }

    pub fn tables(&self) -> TableStore {
        TableStore::new(self.dir.path().join("data/tables"))
    }

    pub async fn table_version(&self) -> Option<u64> {
        self.tables().latest_version(TABLE).await.unwrap()
    }

    /// The stored table: row id → (disposition, available_at).
    pub async fn table(&self) -> BTreeMap<String, Stored> {
        let store = self.tables();
        let version = store
            .latest_version(TABLE)
            .await
            .unwrap()
            .expect("table exists");
        let table = store.open_version(TABLE, version).await.unwrap();
        let ctx = SessionContext::new();
        table.update_datafusion_session(&ctx.state()).unwrap();
        ctx.register_table("t", table.table_provider().await.unwrap())
            .unwrap();
        let batches = ctx
            .sql("SELECT row_id, disposition, available_at, call_type FROM t")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let mut out = BTreeMap::new();
        for b in &batches {
            let text = |i: usize| arrow::compute::cast(b.column(i), &DataType::Utf8).unwrap();
            let (ids, disp, types) = (text(0), text(1), text(3));
            let (ids, disp, types) = (
                ids.as_string::<i32>(),
                disp.as_string::<i32>(),
                types.as_string::<i32>(),
            );
            let avail = b.column(2).as_primitive::<TimestampMicrosecondType>();
            for i in 0..b.num_rows() {
                let row = Stored {
                    disposition: disp.value(i).to_string(),
                    available_us: (!avail.is_null(i)).then(|| avail.value(i)),
                    call_type: types.value(i).to_string(),
                };
                assert!(
                    out.insert(ids.value(i).to_string(), row).is_none(),
                    "row {} stored twice",
                    ids.value(i)
                );
            }
        }
        out
    }
}

/// The transient faults every connector must ride out: a 503, a 429 with `Retry-After: 0`,
/// a body cut off before its announced length, a malformed body, and an answer slower than
/// the client's timeout (1.5 s in the harness's config).
pub fn transient_faults() -> [Fault; 5] {
    [
        Fault::Status {
            code: 503,
            body: "busy".into(),
        },
        Fault::TooManyRequests {
            retry_after: Some("0".into()),
        },
        Fault::Truncate,
        Fault::MalformedJson,
        Fault::Delay(Duration::from_secs(4)),
    ]
}

/// After a run that met `fault` twice: two waits, and after a 429 with `Retry-After: 0` each
/// at least the configured floor (25 ms), never a tight loop.
/// Run `h` with `fault` answering data requests `at` and `at + 1`: both must be retried and
/// the table must hold exactly `want`. `label` names the case in failures.
pub async fn retried_twice(
    h: &Harness,
    faults: &FaultPlan,
    at: usize,
    fault: &Fault,
    want: &BTreeMap<String, Stored>,
    label: &str,
) -> RunReport {
    faults.push_at(at, fault.clone());
    faults.push_at(at + 1, fault.clone());
    let report = h
        .run()
        .await
        .unwrap_or_else(|e| panic!("{label}: {fault:?} should be retried: {e}"));
    assert_eq!(report.fetch.retries, 2, "{label}: {fault:?}");
    assert_same(&h.table().await, want);
    report
}

/// A 5xx burst longer than the retry budget: ten 502s in a row.
pub fn push_502_burst(faults: &FaultPlan) {
    faults.push(
        Fault::Status {
            code: 502,
            body: "bad gateway".into(),
        },
        10,
    );
}

/// A run that met [`push_502_burst`] gave up once the retries were spent, naming the status.
pub fn assert_gave_up_on_502(err: &str) {
    assert!(
        err.contains("502") && err.contains("gave up after 5 attempts"),
        "{err}"
    );
}

pub fn assert_waited_twice(h: &Harness, fault: &Fault) {
    let waits = h.waits.lock().unwrap().clone();
    assert_eq!(waits.len(), 2, "{fault:?}: {waits:?}");
    if matches!(fault, Fault::TooManyRequests { .. }) {
        assert!(
            waits.iter().all(|w| *w >= Duration::from_millis(25)),
            "Retry-After: 0 waits at least the floor: {waits:?}"
        );
    }
}

/// What the tests compare per row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub disposition: String,
    /// Microseconds since the epoch, UTC.
    pub available_us: Option<i64>,
    pub call_type: String,
}

/// The fixture as the table should hold it, computed from the dataset's own cells.
pub fn expected(dataset: &Dataset) -> BTreeMap<String, Stored> {
    let col = |label: &str| dataset.label_index(label).expect("fixture column");
    let (key, disp, avail, ctype) = (
        col("RowID"),
        col("Call Final Disposition"),
        col("Available DtTm"),
        col("Call Type"),
    );
    let text = |row, i| match dataset.value(row, i) {
        Some(Value::Text(s)) => s,
        other => panic!("expected text, got {other:?}"),
    };
    dataset
        .rows()
        .iter()
        .map(|row| {
            let available_us = match dataset.value(row, avail) {
                Some(Value::Timestamp(t)) => Some(
                    chrono_tz::America::Los_Angeles
                        .from_local_datetime(&t)
                        .earliest()
                        .expect("local time exists")
                        .timestamp_micros(),
                ),
                None => None,
                other => panic!("expected a timestamp, got {other:?}"),
            };
            (
                text(row, key),
                Stored {
                    disposition: text(row, disp),
                    available_us,
                    call_type: text(row, ctype),
                },
            )
        })
        .collect()
}

/// Assert two tables are equal, showing the first difference rather than 7,704 rows.
pub fn assert_same(got: &BTreeMap<String, Stored>, want: &BTreeMap<String, Stored>) {
    assert_eq!(got.len(), want.len(), "row count");
    for (k, w) in want {
        assert_eq!(got.get(k), Some(w), "row {k}");
    }
}

pub fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap()
}
