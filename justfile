# goalpost tasks. `just --list` shows them.

# Run one pipeline (or all, without an id) end to end and publish.
run-pipeline *ids:
    cargo run --release -- run {{ids}}

# Run the bundled demo.
demo:
    cargo run --release -- run

# Run as a service on the demo config until Ctrl-C: schedules, the site and the API on
# 127.0.0.1:8080 (`just daemon --bind 127.0.0.1:9090` for another address).
daemon *args:
    cargo run --release -- daemon {{args}}

# goalpost against DuckDB on generated 311 data, stage by stage (1 and 5 million rows by
# default): `just bench --rows 1000000`, `just bench --save` to keep the results in
# bench/results/. Builds in release mode and installs DuckDB into .tools/bench-venv.
bench *args:
    cargo build --release -p goalpost -p goalpost-bench
    tools/bench-venv
    target/release/goalpost-bench {{args}}

# Check the config and every pipeline file.
validate:
    cargo run --release -- validate

# All tests.
test:
    tools/test

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

fmt:
    cargo fmt --all

# Fuzz the source decoders and the config and pipeline parsers, each for SECONDS (default
# 60). Needs nightly Rust and cargo-fuzz (`cargo install cargo-fuzz`). An input that
# crashes is saved under fuzz/artifacts/<target>/; turn it into a regression test.
fuzz seconds="60":
    for t in source_documents pipeline_file config_file; do cargo +nightly fuzz run $t -- -max_total_time={{seconds}} || exit 1; done
