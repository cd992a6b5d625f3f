//! Any bytes as a local document in each format a `file` source reads (CSV, a JSON array,
//! newline-delimited JSON, GeoJSON): reading it page by page ends in pages or an error,
//! never a panic or a hang.
#![no_main]

use goalpost_fetch::Source;
use goalpost_fetch::sources::file::FileReader;
use goalpost_spec::{FileFormat, FileSource};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let (format, name) = match selector % 4 {
        0 => (FileFormat::Csv, "doc.csv"),
        1 => (FileFormat::Json, "doc.json"),
        2 => (FileFormat::Ndjson, "doc.ndjson"),
        _ => (FileFormat::Geojson, "doc.geojson"),
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name), body).unwrap();
    let cfg = FileSource {
        path: name.to_string(),
        format: Some(format),
        page_size: 7,
        fields: Default::default(),
        link: None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let Ok(mut reader) = FileReader::open(&cfg, dir.path()) else {
            return;
        };
        // A page holds at least one row, so a document of n bytes has at most n pages.
        for _ in 0..=body.len() + 1 {
            match reader.next_page().await {
                Ok(Some(page)) => assert!(page.num_rows() <= 7),
                Ok(None) | Err(_) => return,
            }
        }
        panic!("more pages than the document has bytes");
    });
});
