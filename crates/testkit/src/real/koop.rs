//! A real ArcGIS FeatureServer: Koop (npm `@koopjs/koop-core` 10.4.19 with
//! `@koopjs/provider-file-geojson` 2.2.0, installed by `tools/install-test-servers`) serving
//! the GeoJSON files of one directory, plus [`write_geojson`] to make those files.
//!
//! [`Koop::start`] runs `node crates/testkit/koop/server.js --data-dir DIR` with `NODE_PATH`
//! pointing at `.tools/koop/node_modules` and `TZ=UTC`, and returns once the script printed
//! `KOOP_LISTENING <port>` and the server answers. The child exits when its handle drops.
//!
//! # The FeatureServer API (verified against Koop 10.4.19 / FeatureServer 9.3.0)
//!
//! * A file `DIR/<name>.geojson` (or `<name>.json`) is the layer
//!   `/file-geojson/rest/services/<name>/FeatureServer/0` ([`Koop::layer_url`]); the service
//!   is `.../FeatureServer` and its query endpoint `.../FeatureServer/0/query`. Any layer
//!   number works (each file has one layer). A missing file answers **HTTP 200** with
//!   `{"error": {"code": 404, "message": "File GeoJSON provider: <name>.json not found",
//!   "details": []}}`: like ArcGIS, Koop wraps every error in a 200.
//! * **The file is read again on every request** (the provider sets no cache TTL), so a test
//!   can rewrite it between two runs ([`write_geojson`] replaces it atomically).
//! * Layer info (`.../FeatureServer/0?f=json`) has `maxRecordCount` (from
//!   [`KoopOptions::max_record_count`]), `objectIdField`, `fields` (types inferred from the
//!   first feature: integers `esriFieldTypeInteger`, other numbers `esriFieldTypeDouble`, ISO
//!   8601 strings `esriFieldTypeDate`, the rest and nulls `esriFieldTypeString`) and
//!   `advancedQueryCapabilities.supportsPagination: true`.
//! * `query` supports `where` (SQL-ish: `=`, `<>`, `<`, `>=`, `AND`/`OR`, `LIKE`, `IN`,
//!   `BETWEEN`, `IS [NOT] NULL`; field names are **case-sensitive**; `1=1` means all),
//!   `outFields`, `orderByFields` (`a DESC, b`), `resultOffset` / `resultRecordCount`,
//!   `objectIds=1,2`, `returnIdsOnly`, `returnCountOnly` (→ `{"count": n}`), `outStatistics`
//!   with `groupByFieldsForStatistics`, `f=json|pjson|geojson|pbf`. An invalid `where` is 200
//!   with `{"error": {"code": 400, "message": "Invalid \"where\" parameter: ..."}}`; an
//!   unknown `f` likewise ("Invalid format").
//! * Paging: without `orderByFields` features come in file order. `f=json` responses carry
//!   `exceededTransferLimit: true` when more features follow the page (Koop asks for one
//!   extra feature to know). A plain Koop returns *all* features when `resultRecordCount` is
//!   absent; `server.js` caps such queries (and larger `resultRecordCount`s) at
//!   `maxRecordCount`, as ArcGIS does ([`KoopOptions::cap_page_size`]); `returnIdsOnly` and
//!   `returnCountOnly` are never capped. `resultOffset` past the end gives an empty page.
//!   `f=geojson` returns a bare `FeatureCollection` **without** `exceededTransferLimit`, so
//!   a GeoJSON client must page until a short or empty page.
//! * OBJECTIDs: a feature property named `OBJECTID` (or the property named by
//!   [`KoopOptions::id_field`]) is the object id, and `objectIds` / `returnIdsOnly` use it.
//!   Without one, Koop invents `OBJECTID` as a 31-bit hash of the feature's properties and
//!   geometry: not sequential, not in file order, and equal for identical features.
//! * Dates: a property holding an ISO 8601 string makes a Date field; `f=json` serializes it
//!   as epoch milliseconds (a string without offset is read in the server's time zone, UTC
//!   here), `f=geojson` returns the file's string unchanged. In `where`, `date 'YYYY-MM-DD'`
//!   and `timestamp 'YYYY-MM-DD HH:MM:SS'` literals work against ISO strings, but the
//!   comparison is on text: Koop rewrites the literal as `YYYY-MM-DDTHH:MM:SS.000Z` and
//!   compares that with the stored string, so store timestamps in exactly that form
//!   (`2017-01-08T01:26:00` would sort below the literal `2017-01-08T01:26:00.000Z` and fail
//!   `>=`); comparing a date field with epoch milliseconds matches nothing.
//! * Geometry: points as `{"x": lon, "y": lat}` with `spatialReference {"wkid": 4326}`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::process::{Child, ChildStdin, Command};

use super::{
    ChildOutput, RealServerError, await_ready, current_test_name, skip_or_fail, tools_dir,
};

const SERVER: &str = "Koop";

/// The provider's URL namespace.
pub const PROVIDER: &str = "file-geojson";

/// Settings for [`Koop::start`].
#[derive(Debug, Clone)]
pub struct KoopOptions {
    /// The layers' `maxRecordCount`: the largest page. Default 1000.
    pub max_record_count: usize,
    /// Cap queries without `resultRecordCount` (or with a larger one) at `max_record_count`,
    /// as ArcGIS does. Default true; false gives Koop's own behaviour (everything at once).
    pub cap_page_size: bool,
    /// The property to use as object id, when the files have no `OBJECTID` property.
    pub id_field: Option<String>,
    /// How long to wait for the server to be ready. Default 60 s.
    pub startup_timeout: Duration,
}

impl Default for KoopOptions {
    fn default() -> Self {
        KoopOptions {
            max_record_count: 1000,
            cap_page_size: true,
            id_field: None,
            startup_timeout: Duration::from_secs(60),
        }
    }
}

/// A running Koop; killed when dropped.
#[derive(Debug)]
pub struct Koop {
    base_url: String,
    port: u16,
    data_dir: PathBuf,
    output: ChildOutput,
    child: Child,
    /// Held open for the server's life: server.js exits when its stdin closes.
    _stdin: Option<ChildStdin>,
}

/// The Node.js server script, in this crate's source tree.
pub fn server_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("koop")
        .join("server.js")
}

/// Where `tools/install-test-servers` puts Koop's packages.
pub fn node_modules() -> PathBuf {
    tools_dir().join("koop").join("node_modules")
}

/// The `node` to run: `$GOALPOST_NODE`, else `node` from `PATH`.
pub fn node_executable() -> Option<PathBuf> {
    if let Some(node) = std::env::var_os("GOALPOST_NODE").filter(|n| !n.is_empty()) {
        return Some(PathBuf::from(node));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("node"))
        .find(|candidate| candidate.is_file())
}

/// Whether Koop (and Node.js) are installed.
pub fn is_installed() -> bool {
    missing().is_none()
}

fn missing() -> Option<RealServerError> {
    let core = node_modules()
        .join("@koopjs")
        .join("koop-core")
        .join("package.json");
    if !core.is_file() {
        return Some(RealServerError::Missing {
            server: SERVER,
            looked_for: core,
        });
    }
    if node_executable().is_none() {
        return Some(RealServerError::Missing {
            server: SERVER,
            looked_for: PathBuf::from("node (on PATH)"),
        });
    }
    None
}

/// Starts Koop over `geojson_dir`, applying the missing-server policy of
/// [`super::skip_or_fail`] with the current test's name.
///
/// # Panics
/// When Koop is missing under CI, or installed but failing to start.
pub async fn start_or_skip(geojson_dir: &Path, options: KoopOptions) -> Option<Koop> {
    skip_or_fail(
        &current_test_name(),
        Koop::start(geojson_dir, options).await,
    )
}

impl Koop {
    /// Runs Koop over the GeoJSON files in `geojson_dir` on 127.0.0.1 at an OS-picked port and
    /// waits until it answers.
    pub async fn start(geojson_dir: &Path, options: KoopOptions) -> Result<Koop, RealServerError> {
        if let Some(missing) = missing() {
            return Err(missing);
        }
        let node = node_executable().expect("checked by missing()");
        if !geojson_dir.is_dir() {
            return Err(RealServerError::BadInput(format!(
                "Koop data directory {} does not exist",
                geojson_dir.display()
            )));
        }
        let data_dir =
            std::path::absolute(geojson_dir).unwrap_or_else(|_| geojson_dir.to_path_buf());

        let mut command = Command::new(node);
        command
            .arg(server_script())
            .arg("--data-dir")
            .arg(&data_dir)
            .args([
                "--max-record-count",
                &options.max_record_count.max(1).to_string(),
            ]);
        if let Some(id_field) = &options.id_field {
            command.args(["--id-field", id_field]);
        }
        if !options.cap_page_size {
            command.arg("--no-cap");
        }
        command
            .current_dir(tools_dir().join("koop"))
            .env("NODE_PATH", node_modules())
            .env("TZ", "UTC")
            .env_remove("NODE_ENV")
            .env_remove("KOOP_DATA_DIR")
            .env_remove("KOOP_MAX_RECORD_COUNT")
            .env_remove("KOOP_ID_FIELD")
            .env_remove("KOOP_CAP_PAGE_SIZE")
            // The script exits when its stdin closes: it cannot outlive this process.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|source| RealServerError::Spawn {
            server: SERVER,
            source,
        })?;

        // Taken out of the child, because `Child::wait` closes the stdin it holds.
        let stdin = child.stdin.take();
        let (output, port) = await_ready(
            SERVER,
            &mut child,
            options.startup_timeout,
            listening_port,
            "/status",
        )
        .await?;
        let base_url = format!("http://127.0.0.1:{port}");
        Ok(Koop {
            base_url,
            port,
            data_dir,
            output,
            child,
            _stdin: stdin,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory whose files are served.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `http://127.0.0.1:PORT/file-geojson/rest/services/<name>/FeatureServer`.
    pub fn service_url(&self, name: &str) -> String {
        format!(
            "{}/{PROVIDER}/rest/services/{name}/FeatureServer",
            self.base_url
        )
    }

    /// `http://127.0.0.1:PORT/file-geojson/rest/services/<name>/FeatureServer/0`: the layer
    /// of `<data dir>/<name>.geojson`.
    pub fn layer_url(&self, name: &str) -> String {
        format!("{}/0", self.service_url(name))
    }

    /// The layer's `query` endpoint.
    pub fn query_url(&self, name: &str) -> String {
        format!("{}/query", self.layer_url(name))
    }

    /// The path of the file that serves layer `name`.
    pub fn file_path(&self, name: &str) -> PathBuf {
        self.data_dir.join(format!("{name}.geojson"))
    }

    /// What the server has printed so far.
    pub fn output(&self) -> String {
        self.output.text()
    }

    /// Kills the server and waits for it to exit.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The port in server.js's `KOOP_LISTENING <port>` line.
fn listening_port(line: &str) -> Option<u16> {
    line.trim()
        .strip_prefix("KOOP_LISTENING ")?
        .trim()
        .parse()
        .ok()
        .filter(|port| *port != 0)
}

/// Writes a GeoJSON `FeatureCollection` of points to `path`, replacing it atomically (a
/// temporary file renamed over it), so a running [`Koop`] never reads half a file.
///
/// Each item is `(longitude, latitude, properties)`. Include an integer `OBJECTID` property
/// for stable object ids; write timestamps as ISO 8601 text for Date fields. Returns the
/// number of features written.
pub fn write_geojson<I>(path: &Path, features: I) -> std::io::Result<usize>
where
    I: IntoIterator<Item = (f64, f64, Map<String, Value>)>,
{
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let mut written = 0;
    let result = (|| {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&temp)?);
        out.write_all(b"{\"type\":\"FeatureCollection\",\"features\":[\n")?;
        for (lon, lat, properties) in features {
            if written > 0 {
                out.write_all(b",\n")?;
            }
            let feature = json!({
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [lon, lat]},
                "properties": properties,
            });
            serde_json::to_writer(&mut out, &feature)?;
            written += 1;
        }
        out.write_all(b"\n]}\n")?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map(|()| written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_listening_line() {
        assert_eq!(listening_port("KOOP_LISTENING 41234"), Some(41234));
        assert_eq!(
            listening_port("2026-01-01T00:00:00Z info: registered provider"),
            None
        );
    }

    #[test]
    fn writes_a_feature_collection() {
        let dir = std::env::temp_dir().join(format!("goalpost-geojson-{}", std::process::id()));
        let path = dir.join("points.geojson");
        let mut props = Map::new();
        props.insert("OBJECTID".into(), json!(1));
        props.insert("name".into(), json!("a"));
        let n = write_geojson(
            &path,
            [(-122.4, 37.7, props.clone()), (-122.5, 37.8, props)],
        )
        .unwrap();
        assert_eq!(n, 2);
        let parsed: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(parsed["type"], "FeatureCollection");
        assert_eq!(
            parsed["features"][1]["geometry"]["coordinates"],
            json!([-122.5, 37.8])
        );
        assert_eq!(parsed["features"][0]["properties"]["name"], "a");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
