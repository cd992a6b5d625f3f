//! The `socrata` connector against the SODA 2.x emulator.

use super::{Harness, assert_same, expected};
use goalpost_testkit::dataset::BASE_EPOCH;
use goalpost_testkit::socrata::{self, SocrataOptions};
use goalpost_testkit::{Dataset, Fault, SharedDataset, TestServer};

fn name(label: &str) -> String {
    goalpost_testkit::dataset::field_name(label)
}

async fn serve(rows: Option<usize>, options: SocrataOptions) -> (SharedDataset, TestServer) {
    let full = Dataset::sf_fire();
    let dataset = match rows {
        Some(n) => full.subset(n),
        None => full,
    }
    .shared();
    let server = socrata::start(dataset.clone(), options).await;
    (dataset, server)
}

fn harness(server: &TestServer, page_size: usize, extra: &str) -> Harness {
    Harness::new(
        &format!(
            "kind = \"socrata\"\nurl = \"{}\"\ndataset = \"nuek-vuh3\"\npage_size = {page_size}\noverlap = \"10m\"\n{extra}",
            server.base_url()
        ),
        name,
    )
}

#[tokio::test]
async fn full_load_then_refresh_fetches_only_what_changed() {
    let (dataset, server) = serve(None, SocrataOptions::default()).await;
    let h = harness(&server, 1500, "");

    let first = h.run().await.expect("first run");
    assert_eq!(first.mode, "full");
    assert_eq!(first.rows_fetched, 7704);
    // Besides the pages: one request for the newest update stamp, which becomes the
    // watermark (see the connector's docs), asked before paging.
    let requests = server.log.data_requests();
    assert_eq!(requests[0].param("$select"), Some(":updated_at"));
    let pages: Vec<_> = requests
        .iter()
        .filter(|r| r.param("$select") == Some(":*,*"))
        .collect();
    assert_eq!(pages.len(), 6, "7,704 rows in pages of 1,500");
    for p in &pages {
        assert_eq!(
            p.param("$order"),
            Some(":id"),
            "every page has a stable order"
        );
        assert_eq!(p.param("$select"), Some(":*,*"));
    }
    assert_same(&h.table().await, &expected(&dataset.read().unwrap()));

    // Change 1 % of the rows a day later; a refresh reads only rows updated since the last
    // watermark less the overlap.
    let changed = dataset
        .write()
        .unwrap()
        .change_rows(100, BASE_EPOCH + 86_400);
    assert_eq!(changed.len(), 77);
    let watermark = dataset
        .read()
        .unwrap()
        .rows()
        .iter()
        .filter(|r| {
            !changed.contains(
                &r.values[dataset.read().unwrap().key_index()]
                    .clone()
                    .unwrap(),
            )
        })
        .map(|r| r.updated_at)
        .max()
        .unwrap();
    let in_overlap = dataset
        .read()
        .unwrap()
        .rows()
        .iter()
        .filter(|r| r.updated_at >= watermark - 600 && r.updated_at <= watermark)
        .count();
    server.log.clear();
    let second = h.run().await.expect("refresh");
    assert_eq!(second.mode, "incremental");
    assert_eq!(
        server.log.rows_served(),
        changed.len() + in_overlap,
        "the changed rows plus the overlap window, nothing else"
    );
    assert!(
        server
            .log
            .data_requests()
            .iter()
            .all(|r| r.param("$order") == Some(":updated_at,:id") && r.param("$offset").is_none()),
        "refreshes page by (update time, id), not by offset"
    );
    assert!(second.table_version > first.table_version);
    let table = h.table().await;
    assert_same(&table, &expected(&dataset.read().unwrap()));
    assert!(table[&changed[0]].disposition.starts_with("Changed"));

    // Nothing changed since: only the overlap window again, and no new table version.
    server.log.clear();
    let third = h.run().await.expect("quiet refresh");
    assert_eq!(
        server.log.rows_served(),
        changed.len(),
        "the overlap holds the changed rows"
    );
    // They come back as the table has them: nothing is written.
    assert_eq!(
        third.rows_written, 0,
        "the overlap's rows came back unchanged"
    );

    // --full starts over.
    server.log.clear();
    let full = h.run_full().await.expect("full run");
    assert_eq!((full.mode, full.rows_fetched), ("full", 7704));
}

#[tokio::test]
async fn transient_faults_are_retried_to_the_same_table() {
    let faults = super::transient_faults();
    for fault in faults {
        let (dataset, server) = serve(Some(700), SocrataOptions::default()).await;
        let h = harness(&server, 100, "");
        // Twice on the third page.
        let want = expected(&dataset.read().unwrap());
        super::retried_twice(&h, &server.faults, 3, &fault, &want, "page 3").await;
        super::assert_waited_twice(&h, &fault);
    }
}

#[tokio::test]
async fn failures_leave_the_table_and_digest_as_they_were() {
    let (dataset, server) = serve(Some(500), SocrataOptions::default()).await;
    let h = harness(&server, 100, "");
    let good = h.run().await.expect("good run");
    let digest = h.digest_bytes().expect("digest published");
    let version = h.table_version().await;

    // A 5xx burst longer than the retry budget, in a full load.
    dataset
        .write()
        .unwrap()
        .change_rows(10, BASE_EPOCH + 86_400);
    super::push_502_burst(&server.faults);
    let err = h.run_full().await.unwrap_err().to_string();
    super::assert_gave_up_on_502(&err);
    assert_eq!(h.table_version().await, version, "no table commit");
    assert_eq!(h.digest_bytes().unwrap(), digest, "the digest is untouched");

    // A 4xx is never retried.
    server.faults.clear();
    server.log.clear();
    server.faults.push(
        Fault::Status {
            code: 400,
            body: r#"{"code":"query.soql.no-such-column","error":true,"message":"No such column: received_dttm"}"#.into(),
        },
        1,
    );
    let err = h.run().await.unwrap_err().to_string();
    assert!(
        err.contains("no such column") && err.contains("schema has changed"),
        "{err}"
    );
    assert_eq!(server.log.data_requests().len(), 1, "a 400 is not retried");
    assert_eq!(h.table_version().await, version);
    assert_eq!(h.digest_bytes().unwrap(), digest);
    assert!(good.rows_fetched == 500);
}

#[tokio::test]
async fn a_row_changing_between_pages_is_never_lost() {
    let (dataset, server) = serve(Some(1000), SocrataOptions::default()).await;
    let h = harness(&server, 100, "");
    h.run().await.expect("first run");
    // Mark a tenth of the rows changed, then, while the refresh pages through them in update
    // order, change every seventh row after the first page: rows already read jump to the
    // end, which under offset paging would shift the rest back and skip some.
    dataset
        .write()
        .unwrap()
        .change_rows(10, BASE_EPOCH + 86_400);
    server.faults.push_at(
        server.faults.data_requests() + 1,
        Fault::MutateAfterServe {
            every: 7,
            at_epoch: BASE_EPOCH + 2 * 86_400,
        },
    );
    let report = h.run().await.expect("refresh");
    assert_eq!(report.mode, "incremental");
    assert_same(&h.table().await, &expected(&dataset.read().unwrap()));

    // In a full load (by :id) rows do not move, but a row changed after it was read is stored
    // as it was: the next refresh's overlap window brings the change in.
    server.faults.push_at(
        server.faults.data_requests() + 2,
        Fault::MutateAfterServe {
            every: 3,
            at_epoch: BASE_EPOCH + 3 * 86_400,
        },
    );
    h.run_full().await.expect("full load");
    let report = h.run().await.expect("refresh after the full load");
    assert_eq!(report.mode, "incremental");
    assert_same(&h.table().await, &expected(&dataset.read().unwrap()));
}

#[tokio::test]
async fn app_tokens_come_from_the_environment_and_are_required_when_set() {
    let (_dataset, server) = serve(
        Some(300),
        SocrataOptions {
            app_token: Some("s3cret-token".into()),
            ..Default::default()
        },
    )
    .await;
    // Without a token: the portal's 403 becomes advice.
    let h = harness(&server, 100, "");
    let err = h.run().await.unwrap_err().to_string();
    assert!(err.contains("app_token_env"), "{err}");

    // The variable named but not set.
    let h = harness(
        &server,
        100,
        "app_token_env = \"GOALPOST_TEST_UNSET_TOKEN\"\n",
    );
    let err = h.run().await.unwrap_err().to_string();
    assert!(
        err.contains("GOALPOST_TEST_UNSET_TOKEN is not set"),
        "{err}"
    );

    // SAFETY: no other test reads or writes this variable.
    unsafe { std::env::set_var("GOALPOST_TEST_SODA_TOKEN", "s3cret-token") };
    let h = harness(
        &server,
        100,
        "app_token_env = \"GOALPOST_TEST_SODA_TOKEN\"\n",
    );
    let report = h.run().await.expect("with the token");
    assert_eq!(report.rows_fetched, 300);
    assert!(
        server
            .log
            .requests()
            .iter()
            .any(|r| r.header("x-app-token") == Some("s3cret-token"))
    );
}

#[tokio::test]
async fn a_recorded_run_replays_offline() {
    let (dataset, server) = serve(Some(400), SocrataOptions::default()).await;
    let h = harness(&server, 100, "");
    let first = h.run().await.expect("recorded run");
    let want = expected(&dataset.read().unwrap());
    drop(server);
    let replay = h
        .replay(&first.run_id)
        .await
        .expect("replay without the server");
    assert_eq!(replay.rows_fetched, 400);
    assert_eq!(replay.fetch.requests, 0, "nothing went to the network");
    assert_same(&h.table().await, &want);

    // The table now holds what the recording held, so the next run starts over.
    let (_dataset, server) = serve(Some(400), SocrataOptions::default()).await;
    let h2 = Harness {
        dir: h.dir,
        waits: h.waits,
    };
    std::fs::write(
        h2.dir.path().join("pipelines/fire.toml"),
        std::fs::read_to_string(h2.dir.path().join("pipelines/fire.toml"))
            .unwrap()
            .lines()
            .map(|l| {
                if l.starts_with("url = ") {
                    format!("url = \"{}\"", server.base_url())
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    let after = h2.run().await.expect("run after the replay");
    assert_eq!(after.mode, "full");
}

#[tokio::test]
async fn a_field_gone_from_the_source_is_an_error_not_empty_values() {
    let (_dataset, server) = serve(Some(200), SocrataOptions::default()).await;
    // The pipeline still maps an optional column to a field the dataset no longer has.
    fn renamed(label: &str) -> String {
        match label {
            "Available DtTm" => "available_datetime".into(),
            other => name(other),
        }
    }
    let h = Harness::new(
        &format!(
            "kind = \"socrata\"\nurl = \"{}\"\ndataset = \"nuek-vuh3\"\npage_size = 100\n",
            server.base_url()
        ),
        renamed,
    );
    let err = h.run().await.unwrap_err().to_string();
    assert!(err.contains("available_datetime"), "{err}");
    assert!(
        err.contains("available_dttm"),
        "the message lists the fields there are: {err}"
    );
    assert_eq!(h.table_version().await, None, "nothing was stored");
}

#[tokio::test]
async fn the_csv_format_loads_the_same_rows() {
    let (dataset, server) = serve(Some(1200), SocrataOptions::default()).await;
    let h = harness(&server, 250, "format = \"csv\"\n");
    let report = h.run().await.expect("csv run");
    assert_eq!(report.rows_fetched, 1200);
    assert!(
        server
            .log
            .data_requests()
            .iter()
            .filter(|r| r.param("$select") == Some(":*,*"))
            .all(|r| r.path.ends_with(".csv")),
        "pages come from the .csv endpoint"
    );
    assert_same(&h.table().await, &expected(&dataset.read().unwrap()));
}

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_never_appears_in_logs_run_records_recordings_or_errors() {
    const TOKEN: &str = "s3cret-soda-t0ken";
    const WRONG: &str = "wr0ng-soda-t0ken";
    let (_dataset, server) = serve(
        Some(300),
        SocrataOptions {
            app_token: Some(TOKEN.into()),
            ..Default::default()
        },
    )
    .await;
    let h = harness(
        &server,
        100,
        "app_token_env = \"GOALPOST_SECRET_FOR_TEST\"\n",
    );
    let config = h.dir.path().join("config/goalpost.toml");
    // The real binary, logging everything it can (every crate at trace level), with the
    // right token and then a wrong one.
    let mut logged = String::new();
    for (token, succeeds) in [(TOKEN, true), (WRONG, false)] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_goalpost"))
            .arg("--config")
            .arg(&config)
            .args(["--log-format", "json", "run"])
            .env_remove("GOALPOST_CONFIG")
            .env("RUST_LOG", "trace")
            .env("GOALPOST_SECRET_FOR_TEST", token)
            .output()
            .await
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.success(), succeeds, "{token}: {text}");
        logged.push_str(&text);
    }
    // The wrong token was refused, and the error says what to check.
    assert!(logged.contains("403"), "{logged}");
    assert!(logged.contains("app_token_env"), "{logged}");
    // The token went to the portal, in a header.
    assert!(
        server
            .log
            .requests()
            .iter()
            .any(|r| r.header("x-app-token") == Some(TOKEN))
    );

    // It is in no log line, no error, no run record (the state store's files, byte for byte),
    // no raw recording, no table file and no published file.
    let records = {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_goalpost"))
            .arg("--config")
            .arg(&config)
            .args(["runs", "--json"])
            .env_remove("GOALPOST_CONFIG")
            .output()
            .await
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(records.contains("failed"), "{records}");
    let files = files_under(h.dir.path());
    assert!(
        files.iter().any(|f| f.ends_with("responses.ndjson")),
        "the runs were recorded: {files:?}"
    );
    for secret in [TOKEN, WRONG] {
        assert!(!logged.contains(secret), "{secret} in the logs");
        assert!(!records.contains(secret), "{secret} in the run records");
        for file in &files {
            let bytes = std::fs::read(file).unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} in {}",
                file.display()
            );
        }
    }
}
