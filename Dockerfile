# syntax=docker/dockerfile:1
# goalpost daemon in a container. Build and run: see "With Docker" in README.md.
#
#   docker build -t goalpost .
#   docker run -d --name goalpost --hostname goalpost --stop-timeout 90 \
#     -p 127.0.0.1:8080:8080 -e GOALPOST_ADMIN_TOKEN \
#     -v goalpost-data:/srv/goalpost/data -v goalpost-publish:/srv/goalpost/publish goalpost
#
# --hostname: the run lock records the host a run started on and takes over a dead run's
# lock only on that same host. Without it every new container gets a new hostname, and a
# lock left by a killed container would block that pipeline's runs for good.

# --- build -------------------------------------------------------------------------------
# The crate needs Rust 1.95 or newer (edition 2024, rust-version = "1.95" in Cargo.toml);
# rust:1-bookworm follows the latest stable release. Bookworm on both sides, so the binary
# runs against the same glibc it was linked with.
FROM rust:1-bookworm AS builder
WORKDIR /build
COPY . .
# The cache mounts keep downloaded crates and compiled dependencies between builds (the
# first build compiles DataFusion and Delta Lake and takes a long time). target/ is a cache
# mount, so the binary is copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/build/target \
    cargo build --release --locked --bin goalpost \
    && cp target/release/goalpost /usr/local/bin/goalpost

# --- run ---------------------------------------------------------------------------------
FROM debian:bookworm-slim
# ca-certificates: the HTTP client checks portals' certificates against the system roots.
# No tzdata: chrono-tz compiles the IANA time-zone database into the binary.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 goalpost \
    && useradd --system --uid 10001 --gid goalpost --home-dir /srv/goalpost --no-create-home \
        --shell /usr/sbin/nologin goalpost
COPY --from=builder /usr/local/bin/goalpost /usr/local/bin/goalpost
# The bundled demo: config/goalpost.toml points data_dir, publish_dir and pipelines_dir at
# ../data, ../publish and ../pipelines/demo, i.e. under /srv/goalpost. Mount your own config
# and pipelines over these two folders to run your city's. They stay root-owned: the daemon
# only reads them.
COPY config/ /srv/goalpost/config/
COPY pipelines/ /srv/goalpost/pipelines/
# Created and owned by the goalpost user before VOLUME, so new named volumes start out
# writable by it. (A host folder mounted here must be writable by uid 10001.)
RUN mkdir -p /srv/goalpost/data /srv/goalpost/publish \
    && chown goalpost:goalpost /srv/goalpost/data /srv/goalpost/publish
# The default --config, config/goalpost.toml, is read relative to this folder.
WORKDIR /srv/goalpost
# Tables, the state store (data/state.sqlite) and raw recordings; the published versions.
VOLUME ["/srv/goalpost/data", "/srv/goalpost/publish"]
USER 10001:10001
EXPOSE 8080
# SIGTERM: running pipelines get [daemon] grace_period (60s by default) before they are
# cancelled, so stop the container with a longer timeout (docker stop -t 90, or
# docker run --stop-timeout 90); Docker's default of 10s kills them sooner.
STOPSIGNAL SIGTERM
ENTRYPOINT ["goalpost"]
# Inside a container the daemon must listen on all interfaces (the config's default,
# 127.0.0.1, is unreachable from outside the container); publish the port on the host's
# loopback (-p 127.0.0.1:8080:8080) and put a reverse proxy in front.
# JSON logs on stderr, for `docker logs` and log collectors.
CMD ["--log-format", "json", "daemon", "--bind", "0.0.0.0:8080"]
