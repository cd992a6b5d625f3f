//! Any text as a pipeline file: it loads or gives located errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let path = std::path::Path::new("/nonexistent/fuzz.toml");
    if let Err(e) = goalpost_spec::parse_pipeline(path, &text) {
        let _ = e.to_string();
    }
});
