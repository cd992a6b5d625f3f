//! Any bytes as `config/goalpost.toml`: it loads or gives located errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("goalpost.toml");
    std::fs::write(&path, data).unwrap();
    if let Err(e) = goalpost_spec::Config::load(&path) {
        let _ = e.to_string();
    }
});
