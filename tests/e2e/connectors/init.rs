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
