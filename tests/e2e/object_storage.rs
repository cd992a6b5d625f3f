//! The demo with `data_dir` and `publish_dir` in an S3 bucket, served by a real S3-compatible
//! server (moto, on 127.0.0.1): the tables are Delta tables in the bucket, the digest is read
//! back from it, and a publish killed midway never leaves `current.json` naming a version that
//! is not complete.

use crate::{Project, demo_dir};
use goalpost_testkit::real::moto::{self, Moto};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt as _};
use std::process::{Command, Output, Stdio};

const BUCKET: &str = "city-performance";

struct S3Project {
    project: Project,
    env: Vec<(&'static str, String)>,
    bucket: AmazonS3,
}

impl S3Project {
    async fn new(moto: &Moto) -> Self {
        moto.create_bucket(BUCKET).await;
        let project = Project::new(&demo_dir());
        std::fs::write(
            project.path().join("config/goalpost.toml"),
            format!(
                "data_dir = \"s3://{BUCKET}/goalpost/data\"\n\
                 publish_dir = \"s3://{BUCKET}/goalpost/site/\"\n\
                 state_db = \"../state/state.sqlite\"\n\
                 publish_lease = \"2s\"\n\
                 pipelines_dir = {:?}\n\n[site]\ntitle = \"Test <city> & goals\"\n",
                demo_dir().display().to_string()
            ),
        )
        .unwrap();
        let bucket = AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_endpoint(moto.endpoint())
            .with_allow_http(true)
            .with_region(moto::REGION)
            .with_access_key_id(moto::ACCESS_KEY)
            .with_secret_access_key(moto::SECRET_KEY)
            .build()
            .unwrap();
        Self {
            project,
            env: moto.env(),
            bucket,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_goalpost"));
        command
            .arg("--config")
            .arg(self.project.path().join("config/goalpost.toml"))
            .args(args)
            .env_remove("GOALPOST_CONFIG")
            .env("RUST_LOG", "error");
        // Only what the test gives: no credentials from the machine running it.
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_") {
                command.env_remove(k);
            }
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    fn goalpost(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run goalpost")
    }

    fn ok(&self, args: &[&str]) -> String {
        crate::succeeded(args, self.goalpost(args))
    }

    async fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self.bucket.get(&ObjectPath::from(key)).await {
            Ok(got) => Some(got.bytes().await.unwrap().to_vec()),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => panic!("reading {key}: {e}"),
        }
    }

    async fn json(&self, key: &str) -> serde_json::Value {
        let bytes = self
            .get(key)
            .await
            .unwrap_or_else(|| panic!("{key} is missing"));
        serde_json::from_slice(&bytes).unwrap()
    }

    async fn keys(&self, prefix: &str) -> Vec<String> {
        use futures::TryStreamExt as _;
        let mut keys: Vec<String> = self
            .bucket
            .list(Some(&ObjectPath::from(prefix)))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        keys.sort();
        keys
    }

    /// The version `current.json` names, after checking that it is complete: its digest is
    /// there and names it, and so are the site and the figures.
    async fn current_complete(&self) -> String {
        let pointer = self.json("goalpost/site/current.json").await;
        let version = pointer["version"].as_str().unwrap().to_string();
        assert_eq!(pointer["path"], format!("versions/{version}/"));
        let digest = self
            .json(&format!("goalpost/site/versions/{version}/digest.json"))
            .await;
        assert_eq!(digest["version"], version.as_str());
        for file in [
            "index.html",
            "indicators.parquet",
            "indicators.csv",
            "feed.atom",
            "data.json",
        ] {
            let key = format!("goalpost/site/versions/{version}/{file}");
            assert!(self.get(&key).await.is_some(), "{key} is missing");
        }
        version
    }

    /// Run `goalpost run PIPELINE --full` paused at `point`, and SIGKILL it there.
    fn kill_at(&self, pipeline: &str, point: &str) {
        crate::kill_at_pause(self.command(&["run", pipeline, "--full"]), point);
    }
}

/// `indicators.parquet`'s rows as `(pipeline, indicator, period, group) → value`.
fn parquet_figures(bytes: Vec<u8>) -> Vec<(String, String, String, String, Option<f64>)> {
    use arrow::array::{Array, AsArray as _};
    use arrow::datatypes::Float64Type;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        bytes::Bytes::from(bytes),
    )
    .unwrap()
    .build()
    .unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let text = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_string::<i32>()
                .clone()
        };
        let (pipeline, indicator, period, group) = (
            text("pipeline"),
            text("indicator"),
            text("period"),
            text("group"),
        );
        let value = batch
            .column_by_name("value")
            .unwrap()
            .as_primitive::<Float64Type>();
        for i in 0..batch.num_rows() {
            out.push((
                pipeline.value(i).to_string(),
                indicator.value(i).to_string(),
                period.value(i).to_string(),
                if group.is_null(i) {
                    String::new()
                } else {
                    group.value(i).to_string()
                },
                (!value.is_null(i)).then(|| value.value(i)),
            ));
        }
    }
    out.sort_by(|a, b| (&a.0, &a.1, &a.2, &a.3).cmp(&(&b.0, &b.1, &b.2, &b.3)));
    out
}

/// The same figures, from digest.json's series.
fn digest_figures(
    digest: &serde_json::Value,
) -> Vec<(String, String, String, String, Option<f64>)> {
    let mut out = Vec::new();
    for p in digest["pipelines"].as_array().unwrap() {
        for i in p["indicators"].as_array().unwrap() {
            for s in i["series"].as_array().unwrap() {
                out.push((
                    p["id"].as_str().unwrap().to_string(),
                    i["id"].as_str().unwrap().to_string(),
                    s["period"].as_str().unwrap().to_string(),
                    // {"borough": "BRONX"} → "BRONX" (values in key order, joined by " | ").
                    s["group"].as_object().map_or(String::new(), |g| {
                        let values: Vec<&str> = g.values().map(|v| v.as_str().unwrap()).collect();
                        values.join(" | ")
                    }),
                    s["value"].as_f64(),
                ));
            }
        }
    }
    out.sort_by(|a, b| (&a.0, &a.1, &a.2, &a.3).cmp(&(&b.0, &b.1, &b.2, &b.3)));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_with_tables_and_digest_in_a_bucket() {
    let Some(moto) = moto::start_or_skip().await else {
        return;
    };
    let s3 = S3Project::new(&moto).await;
    let out = s3.ok(&["run"]);
    assert!(
        out.contains(&format!("Digest: s3://{BUCKET}/goalpost/site/versions/")),
        "{out}"
    );
    let version = s3.current_complete().await;

    // The tables are Delta tables in the bucket: a log and Parquet files per table.
    let tables = s3.keys("goalpost/data/tables/service_requests").await;
    assert!(
        tables
            .iter()
            .any(|k| k.ends_with("_delta_log/00000000000000000000.json")),
        "{tables:?}"
    );
    assert!(tables.iter().any(|k| k.ends_with(".parquet")), "{tables:?}");
    // Nothing of them on this machine: only the state database and the work files.
    assert!(!s3.project.path().join("data").exists());
    assert!(s3.project.path().join("state/state.sqlite").is_file());

    // indicators.parquet, read back from the bucket, holds the digest's figures.
    let digest = s3
        .json(&format!("goalpost/site/versions/{version}/digest.json"))
        .await;
    let parquet = s3
        .get(&format!(
            "goalpost/site/versions/{version}/indicators.parquet"
        ))
        .await
        .unwrap();
    let figures = parquet_figures(parquet.clone());
    assert!(figures.len() > 100, "{} rows", figures.len());
    assert_eq!(figures, digest_figures(&digest));
    // The root page sends browsers to the current version.
    let root = String::from_utf8(s3.get("goalpost/site/index.html").await.unwrap()).unwrap();
    assert!(
        root.contains(&format!("url=versions/{version}/index.html")),
        "{root}"
    );
    assert!(root.contains("Test &lt;city&gt; &amp; goals"), "{root}");
    // The lock was let go of.
    assert!(s3.get("goalpost/site/.lock").await.is_none());

    // The daemon serves the current version from the bucket.
    let mut daemon = s3
        .command(&["daemon", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = crate::daemon::listening_addr(&mut daemon);
    let (status, _, body) = crate::daemon::http(&addr, "GET", "/readyz", &[]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let ready: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(ready["published_version"], version.as_str());
    let (status, headers, body) = crate::daemon::http(&addr, "GET", "/digest.json", &[]);
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        digest
    );
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "application/json")
    );
    let (status, _, body) = crate::daemon::http(&addr, "GET", "/", &[]);
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("Test &lt;city&gt; &amp; goals"));
    // A table's data, streamed from the bucket as it downloads.
    let (status, _, body) =
        crate::daemon::http(&addr, "GET", "/data/service_requests.parquet", &[]);
    assert_eq!(status, 200);
    let key = format!("goalpost/site/versions/{version}/data/service_requests.parquet");
    assert_eq!(Some(body), s3.get(&key).await);
    let (status, _, _) = crate::daemon::http(&addr, "GET", "/../../data/tables/", &[]);
    assert_eq!(status, 404);
    daemon.kill().unwrap();
    daemon.wait().unwrap();

    // The figures recompute byte for byte from the table versions in the bucket.
    let re = s3.project.path().join("re");
    let out = s3.ok(&[
        "recompute",
        "--run",
        &version,
        "--out",
        re.to_str().unwrap(),
    ]);
    assert!(out.contains("byte for byte the published one"), "{out}");
    assert_eq!(
        std::fs::read(re.join("indicators.parquet")).unwrap(),
        parquet
    );

    // A second run refreshes the same tables (a new Delta version, committed with a
    // conditional write) and publishes a new version.
    let out = s3.ok(&["run", "nyc-311"]);
    assert!(out.contains("table service_requests v1"), "{out}");
    let second = s3.current_complete().await;
    assert_ne!(second, version);
    // Each version offers every table's data: the refreshed one anew, the others as they
    // were.
    let data = |v: &str, table: &str| format!("goalpost/site/versions/{v}/data/{table}.parquet");
    for table in ["service_requests", "fire_ems_responses", "bicycle_counts"] {
        assert!(s3.get(&data(&second, table)).await.is_some(), "{table}");
    }
    assert_eq!(
        s3.get(&data(&second, "fire_ems_responses")).await,
        s3.get(&data(&version, "fire_ems_responses")).await
    );
    let listed = s3.ok(&["publish"]);
    assert!(listed.contains(&format!("current: {second}")), "{listed}");
    assert!(listed.contains(&version), "{listed}");
    let out = s3.ok(&["publish", "--rollback"]);
    assert!(out.contains(&format!("(was {second})")), "{out}");
    assert_ne!(s3.current_complete().await, second);
    moto.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_killed_midway_leaves_current_json_on_a_complete_version() {
    let Some(moto) = moto::start_or_skip().await else {
        return;
    };
    let s3 = S3Project::new(&moto).await;
    s3.ok(&["run", "sf-fire-ems"]);
    let good = s3.current_complete().await;

    // Killed halfway through uploading a version's files, then with every file written but
    // before current.json: readers still find the version before, whole.
    for point in ["publish-upload", "publish"] {
        s3.kill_at("sf-fire-ems", point);
        assert_eq!(s3.current_complete().await, good, "{point}");
    }
    // What the kills left: versions without a digest.json (the first) or not pointed at.
    let versions: std::collections::BTreeSet<String> = s3
        .keys("goalpost/site/versions/")
        .await
        .iter()
        .filter_map(|k| k.split('/').nth(3).map(str::to_string))
        .filter(|v| !v.starts_with('.'))
        .collect();
    assert_eq!(versions.len(), 3, "{versions:?}");
    let mut cut_off = Vec::new();
    for v in &versions {
        if s3
            .get(&format!("goalpost/site/versions/{v}/digest.json"))
            .await
            .is_none()
        {
            cut_off.push(v.clone());
        }
    }
    assert_eq!(cut_off.len(), 1, "{versions:?}");
    // The killed run's publish lock is no longer renewed: the next run takes it over once
    // its lease (2 s here) has lapsed, publishes, and clears the version that was cut off.
    assert!(s3.get("goalpost/site/.lock").await.is_some());
    s3.ok(&["run", "sf-fire-ems"]);
    assert!(s3.get("goalpost/site/.lock").await.is_none());
    let next = s3.current_complete().await;
    assert!(!versions.contains(&next));
    assert!(
        s3.keys(&format!("goalpost/site/versions/{}/", cut_off[0]))
            .await
            .is_empty()
    );
    moto.stop().await;
}
