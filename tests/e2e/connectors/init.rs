//! `goalpost init` against the emulators: the starter pipeline validates as written and runs.

use crate::Project;
use goalpost_testkit::socrata::{self, SocrataOptions};
use goalpost_testkit::{Dataset, files};

fn project() -> Project {
    let p = Project::new(std::path::Path::new("../pipelines"));
    std::fs::create_dir_all(p.path().join("pipelines")).unwrap();
    p
}

fn goalpost(p: &Project, args: &[&str]) -> std::process::Output {
    p.goalpost(args)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_socrata_dataset_becomes_a_pipeline_that_validates_and_runs() {
    let dataset = Dataset::sf_fire().subset(600).shared();
    let server = socrata::start(dataset, SocrataOptions::default()).await;
    let p = project();
    let address = server.url("/Public-Safety/Fire-Department-Calls-for-Service/nuek-vuh3");
    let out = tokio::task::block_in_place(|| {
        goalpost(
            &p,
            &[
                "init",
                &address,
                "--timezone",
                "America/Los_Angeles",
                "--id",
                "fire",
            ],
        )
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(p.path().join("pipelines/fire.toml")).unwrap();
    assert!(text.contains("kind = \"socrata\""), "{text}");
    assert!(text.contains("dataset = \"nuek-vuh3\""), "{text}");
    assert!(
        text.contains("received_dttm = { from = \"received_dttm\", type = \"timestamp\""),
        "{text}"
    );
    assert!(
        text.contains("call_number = { from = \"call_number\", type = \"int64\""),
        "{text}"
    );
    assert!(text.contains("[[indicator]]"), "{text}");

    let out = tokio::task::block_in_place(|| goalpost(&p, &["validate"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = tokio::task::block_in_place(|| goalpost(&p, &["run", "fire"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("600 rows fetched"), "{stdout}");

    // An existing file is not overwritten without --force.
    let out = tokio::task::block_in_place(|| goalpost(&p, &["init", &address, "--id", "fire"]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_csv_document_becomes_a_pipeline_keyed_by_its_unique_column() {
    let dataset = Dataset::sf_fire().subset(500).shared();
    let server = files::start(dataset).await;
    let p = project();
    let address = server.url("/fire.csv");
    let out = tokio::task::block_in_place(|| {
        goalpost(
            &p,
            &[
                "init",
                &address,
                "--timezone",
                "America/Los_Angeles",
                "--id",
                "calls",
            ],
        )
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(p.path().join("pipelines/calls.toml")).unwrap();
    assert!(text.contains("kind = \"http\""), "{text}");
    assert!(
        text.contains("key = [\"call_number\"]") || text.contains("key = [\"rowid\"]"),
        "{text}"
    );
    assert!(
        text.contains("zipcode_of_incident = { from = \"Zipcode of Incident\""),
        "{text}"
    );
    let out = tokio::task::block_in_place(|| goalpost(&p, &["run", "calls"]));
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `init` then `validate` then `run`, in a fresh project; returns the pipeline text.
fn init_validate_run(address: &str, extra: &[&str], rows: usize) -> String {
    let p = project();
    let mut args = vec![
        "init",
        address,
        "--timezone",
        "America/Los_Angeles",
        "--id",
        "ds",
    ];
    args.extend_from_slice(extra);
    let out = tokio::task::block_in_place(|| goalpost(&p, &args));
    assert!(
        out.status.success(),
        "init {address}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(p.path().join("pipelines/ds.toml")).unwrap();
    let out = tokio::task::block_in_place(|| goalpost(&p, &["validate"]));
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = tokio::task::block_in_place(|| goalpost(&p, &["run", "ds"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("{rows} rows fetched")), "{stdout}");
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn ckan_opendatasoft_and_arcgis_datasets_become_pipelines() {
    use goalpost_testkit::{arcgis, ckan, opendatasoft};
    let dataset = Dataset::sf_fire().subset(400).shared();

    let server = ckan::start(dataset.clone(), Default::default()).await;
    let text = init_validate_run(
        &server.url("/dataset/fire-department-calls-for-service"),
        &[],
        400,
    );
    assert!(
        text.contains("kind = \"ckan\"") && text.contains("resource_id = "),
        "{text}"
    );
    assert!(
        text.contains("\"Received DtTm\", type = \"timestamp\""),
        "{text}"
    );

    let server = opendatasoft::start(dataset.clone(), Default::default()).await;
    let text = init_validate_run(
        &server.url("/explore/dataset/sf-fire-department-calls/"),
        &[],
        400,
    );
    assert!(text.contains("kind = \"opendatasoft\""), "{text}");
    assert!(
        text.contains("from = \"received_dttm\", type = \"timestamp\""),
        "{text}"
    );

    let server = arcgis::start(dataset, Default::default()).await;
    let text = init_validate_run(
        &server.url("/arcgis/rest/services/FireCalls/FeatureServer/0"),
        &[],
        400,
    );
    assert!(
        text.contains("kind = \"arcgis\"") && text.contains("key = [\"objectid\"]"),
        "{text}"
    );
    assert!(text.contains("EditDate moved"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn datasette_and_koop_tables_become_pipelines() {
    use goalpost_testkit::real::datasette::{self, DatasetteOptions};
    use goalpost_testkit::real::koop::{self, KoopOptions, write_geojson};
    let dataset = Dataset::sf_fire().subset(300);
    let dir = tempfile::tempdir().unwrap();

    let db = dir.path().join("calls.db");
    super::datasette::write_db(&db, &dataset);
    if let Some(server) = datasette::start_or_skip(&db, DatasetteOptions::default()).await {
        let table = format!("{}/calls/{}", server.base_url(), super::datasette::TABLE);
        let text = init_validate_run(&table, &["--kind", "datasette"], 300);
        assert!(
            text.contains("kind = \"datasette\"") && text.contains("key = [\"rowid\"]"),
            "{text}"
        );
        assert!(
            text.contains("call_number = { from = \"Call Number\", type = \"int64\""),
            "{text}"
        );
    }

    write_geojson(
        &dir.path().join("calls.geojson"),
        super::arcgis::koop_features(&dataset),
    )
    .unwrap();
    if let Some(koop) = koop::start_or_skip(dir.path(), KoopOptions::default()).await {
        let text = init_validate_run(&koop.layer_url("calls"), &[], 300);
        assert!(text.contains("kind = \"arcgis\""), "{text}");
        assert!(
            text.contains("longitude = { from = \"longitude\", type = \"float64\""),
            "{text}"
        );
    }
}
