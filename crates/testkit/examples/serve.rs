//! Serve the fire-calls fixture through one emulator until Enter is pressed, to try goalpost by
//! hand: `cargo run -p goalpost-testkit --example serve -- socrata` (or `ckan`,
//! `opendatasoft`, `arcgis`, `files`), then `goalpost init <printed address>`.

use goalpost_testkit::{Dataset, arcgis, ckan, files, opendatasoft, socrata};

#[tokio::main]
async fn main() {
    let kind = std::env::args().nth(1).unwrap_or_else(|| "socrata".into());
    let dataset = Dataset::sf_fire().shared();
    let (server, address) = match kind.as_str() {
        "socrata" => {
            let s = socrata::start(dataset, Default::default()).await;
            let a = s.url("/Public-Safety/Fire-Department-Calls-for-Service/nuek-vuh3");
            (s, a)
        }
        "ckan" => {
            let s = ckan::start(dataset, Default::default()).await;
            let a = s.url("/dataset/fire-department-calls-for-service");
            (s, a)
        }
        "opendatasoft" => {
            let s = opendatasoft::start(dataset, Default::default()).await;
            let a = s.url("/explore/dataset/sf-fire-department-calls/");
            (s, a)
        }
        "arcgis" => {
            let s = arcgis::start(dataset, Default::default()).await;
            let a = s.url("/arcgis/rest/services/FireCalls/FeatureServer/0");
            (s, a)
        }
        "files" => {
            let s = files::start(dataset).await;
            let a = s.url("/fire.csv");
            (s, a)
        }
        other => {
            eprintln!(
                "unknown emulator {other:?}; expected socrata, ckan, opendatasoft, arcgis or files"
            );
            std::process::exit(2);
        }
    };
    println!("{kind} emulator at {}", server.base_url());
    println!("dataset: {address}");
    println!("try: goalpost init {address} --timezone America/Los_Angeles");
    println!("press Enter to stop");
    tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new()))
        .await
        .expect("stdin task")
        .ok();
}
