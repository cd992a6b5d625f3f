use crate::diagnostic::{SourceFile, SpecError};
use crate::location::Location;
use crate::source::duration;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `config/goalpost.toml`: where things live and how the site is titled.
///
/// Relative paths are resolved against the folder that holds the config file.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    /// The tables and the quarantine: a folder, or an object-storage prefix.
    pub data_dir: Location,
    /// The published versions: a folder, or an object-storage prefix.
    pub publish_dir: Location,
    pub pipelines_dir: PathBuf,
    pub state_db: PathBuf,
    /// A folder on this machine for the raw recordings and the snapshot cache: `data_dir`
    /// when that is local, otherwise the folder that holds `state_db`.
    pub work_dir: PathBuf,
    /// Published versions kept besides the current one.
    pub keep_versions: usize,
    /// When `publish_dir` is in object storage: the publish lock is renewed while held, and
    /// one not renewed for this long (its process died) is taken over.
    pub publish_lease: Duration,
    pub site: SiteSpec,
    pub fetch: FetchSettings,
    pub tables: TableSettings,
    pub daemon: DaemonSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    data_dir: String,
    publish_dir: String,
    pipelines_dir: String,
    state_db: Option<String>,
    work_dir: Option<String>,
    #[serde(default = "default_keep")]
    keep_versions: usize,
    #[serde(default = "default_lease", deserialize_with = "duration")]
    publish_lease: Duration,
    #[serde(default)]
    site: SiteSpec,
    #[serde(default)]
    fetch: FetchSettings,
    #[serde(default)]
    tables: TableSettings,
    #[serde(default)]
    daemon: DaemonSettings,
}

/// `[daemon]`: the long-running `goalpost daemon`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonSettings {
    /// Address the HTTP server listens on; `goalpost daemon --bind` overrides it. The
    /// default is reachable only from this machine: put a reverse proxy in front to publish.
    pub bind: String,
    /// Pipelines run at the same time at most; further due runs wait their turn.
    pub max_concurrent_runs: usize,
    /// On SIGTERM/SIGINT, how long running pipelines may take to finish before they are
    /// cancelled (a cancelled run commits and publishes nothing).
    #[serde(deserialize_with = "duration")]
    pub grace_period: Duration,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".to_string(),
            max_concurrent_runs: 2,
            grace_period: Duration::from_secs(60),
        }
    }
}

/// `[tables]`: upkeep of the Delta tables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TableSettings {
    /// Compact a table after a run once it has this many small files (0: never
    /// automatically; `goalpost compact` still works).
    pub compact_small_files: usize,
    /// Files below this size (MiB) count as small.
    pub small_file_mib: u64,
    /// Size (MiB) compaction aims for per file.
    pub target_file_mib: u64,
}

impl Default for TableSettings {
    fn default() -> Self {
        Self {
            compact_small_files: 32,
            small_file_mib: 16,
            target_file_mib: 128,
        }
    }
}

fn default_keep() -> usize {
    10
}

fn default_lease() -> Duration {
    Duration::from_secs(120)
}

/// What the published site says about who publishes it.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSpec {
    #[serde(default = "default_title")]
    pub title: String,
    /// The publishing organisation, e.g. "City of Example".
    pub organization: Option<String>,
    /// Public URL the site is served at, used for absolute links.
    pub base_url: Option<String>,
    /// Who answers questions about the published data (`data.json`'s contact point), e.g.
    /// "Open Data Team"; default: the organization.
    pub contact_name: Option<String>,
    /// Their email address; DCAT-US asks every dataset for one.
    pub contact_email: Option<String>,
    /// URL of the licence the data is published under, e.g.
    /// "https://creativecommons.org/publicdomain/zero/1.0/".
    pub license: Option<String>,
    /// The place the data covers, e.g. "Springfield, IL".
    pub spatial: Option<String>,
}

fn default_title() -> String {
    "Performance and goals".to_string()
}

impl Default for SiteSpec {
    fn default() -> Self {
        Self {
            title: default_title(),
            organization: None,
            base_url: None,
            contact_name: None,
            contact_email: None,
            license: None,
            spatial: None,
        }
    }
}

/// `[fetch]`: how goalpost behaves as a web client. The defaults suit public portals.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FetchSettings {
    /// Sent as `User-Agent`; name the city and a contact so portal operators can reach you.
    pub user_agent: Option<String>,
    /// Longest wait for one response, headers and body.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// Retries of one request after a transient failure (connect error, timeout, 408, 429,
    /// 5xx, a cut-off body).
    pub retries: u32,
    /// Give up once retrying one request has taken this long in total.
    #[serde(deserialize_with = "duration")]
    pub retry_budget: Duration,
    /// First backoff; it doubles (with jitter) up to `backoff_max`.
    #[serde(deserialize_with = "duration")]
    pub backoff_initial: Duration,
    #[serde(deserialize_with = "duration")]
    pub backoff_max: Duration,
    /// Shortest wait after a `Retry-After`, so `Retry-After: 0` cannot become a tight loop.
    #[serde(deserialize_with = "duration")]
    pub retry_after_floor: Duration,
    /// Requests per second to any one host.
    pub requests_per_second: f64,
    /// Largest response body accepted, as sent (MiB).
    pub max_response_mib: u64,
    /// Largest response body accepted after decompression (MiB).
    pub max_decompressed_mib: u64,
    /// Keep the raw responses of each run (zstd) under `data/raw/` for `run --replay`.
    pub keep_raw: bool,
    /// Raw recordings kept per pipeline; older ones are deleted.
    pub keep_raw_runs: usize,
}

impl Default for FetchSettings {
    fn default() -> Self {
        Self {
            user_agent: None,
            timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(15),
            retries: 6,
            retry_budget: Duration::from_secs(600),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            retry_after_floor: Duration::from_secs(1),
            requests_per_second: 4.0,
            max_response_mib: 512,
            max_decompressed_mib: 2048,
            keep_raw: true,
            keep_raw_runs: 10,
        }
    }
}

impl Config {
    /// Read and check a config file.
    pub fn load(path: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| SpecError::io(path, e))?;
        let file = SourceFile::new(path, text);
        let raw: ConfigFile = toml::from_str(&file.text)
            .map_err(|e| SpecError::Invalid(vec![file.diagnostic(e.span(), e.message().trim())]))?;
        // Absolute, so paths shown to users and written to the digest read cleanly.
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base = base.canonicalize().map_err(|e| SpecError::io(base, e))?;
        let base = base.as_path();
        let resolve = |p: &str| -> PathBuf {
            let p = Path::new(p);
            normalize(&if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            })
        };
        let problems = check_settings(&raw);
        if !problems.is_empty() {
            return Err(SpecError::Invalid(
                problems
                    .into_iter()
                    .map(|(key, message)| file.diagnostic(key_span(&file.text, key), message))
                    .collect(),
            ));
        }
        let invalid = |key: &str, message: String| {
            SpecError::Invalid(vec![
                file.diagnostic(key_span(&file.text, key), format!("{key}: {message}")),
            ])
        };
        let location = |key: &str, text: &str| {
            Location::parse(text, |p| resolve(&p.to_string_lossy())).map_err(|m| invalid(key, m))
        };
        let local = |key: &str, text: &str| match location(key, text)? {
            Location::Local(path) => Ok(path),
            Location::Remote(_) => Err(invalid(
                key,
                format!("{text:?} is in object storage; {key} must be a folder on this machine"),
            )),
        };
        let data_dir = location("data_dir", &raw.data_dir)?;
        let publish_dir = location("publish_dir", &raw.publish_dir)?;
        let state_db = match (&raw.state_db, &data_dir) {
            (Some(db), _) => local("state_db", db)?,
            (None, Location::Local(dir)) => dir.join("state.sqlite"),
            (None, Location::Remote(_)) => {
                return Err(invalid(
                    "data_dir",
                    format!(
                        "{} is in object storage, where SQLite cannot live; set state_db to a \
                         file on this machine, e.g. state_db = \"/var/lib/goalpost/state.sqlite\"",
                        data_dir
                    ),
                ));
            }
        };
        let work_dir = match (&raw.work_dir, &data_dir) {
            (Some(dir), _) => local("work_dir", dir)?,
            (None, Location::Local(dir)) => dir.clone(),
            (None, Location::Remote(_)) => state_db
                .parent()
                .map_or_else(|| base.to_path_buf(), Path::to_path_buf),
        };
        Ok(Self {
            file: path.to_path_buf(),
            state_db,
            work_dir,
            publish_dir,
            pipelines_dir: local("pipelines_dir", &raw.pipelines_dir)?,
            data_dir,
            keep_versions: raw.keep_versions,
            publish_lease: raw.publish_lease,
            site: raw.site,
            fetch: raw.fetch,
            tables: raw.tables,
            daemon: raw.daemon,
        })
    }
}

/// Where `key = …` is written in the file (the first place, outside comments).
fn key_span(text: &str, key: &str) -> Option<std::ops::Range<usize>> {
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix(key)
            && rest.trim_start().starts_with('=')
        {
            let start = at + (line.len() - trimmed.len());
            return Some(start..start + key.len());
        }
        at += line.len();
    }
    None
}

/// Values serde accepts but goalpost cannot work with: `(key, message)`.
fn check_settings(raw: &ConfigFile) -> Vec<(&'static str, String)> {
    const DAY: Duration = Duration::from_secs(86_400);
    let mut out = Vec::new();
    let f = &raw.fetch;
    if !(f.requests_per_second.is_finite() && f.requests_per_second > 0.0) {
        out.push((
            "requests_per_second",
            format!(
                "[fetch] requests_per_second is {}; expected a number above 0, e.g. 4",
                f.requests_per_second
            ),
        ));
    }
    for (key, value, most) in [
        ("timeout", f.timeout, DAY),
        ("connect_timeout", f.connect_timeout, DAY),
        ("retry_budget", f.retry_budget, 7 * DAY),
        ("backoff_initial", f.backoff_initial, DAY),
        ("backoff_max", f.backoff_max, DAY),
        ("retry_after_floor", f.retry_after_floor, DAY),
        ("grace_period", raw.daemon.grace_period, DAY),
        ("publish_lease", raw.publish_lease, DAY),
    ] {
        if value > most {
            out.push((
                key,
                format!(
                    "{key} is {}; expected at most {}",
                    humantime::format_duration(value),
                    humantime::format_duration(most)
                ),
            ));
        }
    }
    if raw.publish_lease < Duration::from_secs(1) {
        out.push((
            "publish_lease",
            "publish_lease is under 1s; expected a duration such as \"2m\"".into(),
        ));
    }
    if f.timeout.is_zero() {
        out.push((
            "timeout",
            "[fetch] timeout is 0; expected a duration such as \"120s\"".into(),
        ));
    }
    if raw.daemon.max_concurrent_runs == 0 {
        out.push((
            "max_concurrent_runs",
            "[daemon] max_concurrent_runs is 0; expected at least 1".into(),
        ));
    }
    let bind = &raw.daemon.bind;
    let port_ok = bind
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok {
        out.push((
            "bind",
            format!("[daemon] bind is {bind:?}; expected ADDRESS:PORT, e.g. \"127.0.0.1:8080\""),
        ));
    }
    out
}

/// Resolve `.` and `..` without touching the disk (the folder may not exist yet).
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_against_the_config_folder() {
        let dir = std::env::temp_dir().join(format!("goalpost-config-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("config")).unwrap();
        let file = dir.join("config/goalpost.toml");
        std::fs::write(&file, "data_dir = \"../data\"\npublish_dir = \"/srv/site\"\npipelines_dir = \"../pipelines\"\n").unwrap();
        let c = Config::load(&file).unwrap();
        let root = dir.canonicalize().unwrap();
        assert_eq!(c.data_dir, Location::Local(root.join("data")));
        assert_eq!(c.state_db, root.join("data/state.sqlite"));
        assert_eq!(c.work_dir, root.join("data"));
        assert_eq!(c.publish_dir, Location::Local(PathBuf::from("/srv/site")));
        assert_eq!(c.keep_versions, 10);
        std::fs::write(&file, "data_dir = 1\n").unwrap();
        let err = Config::load(&file).unwrap_err().to_string();
        assert!(err.contains("goalpost.toml:1:12"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn object_storage_needs_a_local_state_db_and_names_the_key_when_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("goalpost.toml");
        let load = |text: &str| {
            std::fs::write(&file, text).unwrap();
            Config::load(&file)
        };
        let root = dir.path().canonicalize().unwrap();
        let c = load(
            "data_dir = \"s3://city/goalpost/data\"\npublish_dir = \"s3://city/site/\"\n\
             pipelines_dir = \"p\"\nstate_db = \"state/goalpost.sqlite\"\n",
        )
        .unwrap();
        assert_eq!(c.data_dir.to_string(), "s3://city/goalpost/data");
        assert_eq!(c.publish_dir.to_string(), "s3://city/site");
        assert_eq!(c.state_db, root.join("state/goalpost.sqlite"));
        assert_eq!(c.work_dir, root.join("state"), "beside the state database");

        let err =
            load("data_dir = \"s3://city/data\"\npublish_dir = \"site\"\npipelines_dir = \"p\"\n")
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("goalpost.toml:1:1: data_dir: s3://city/data is in object storage"),
            "{err}"
        );
        assert!(err.contains("set state_db"), "{err}");

        let err =
            load("data_dir = \"d\"\npublish_dir = \"ftp://host/site\"\npipelines_dir = \"p\"\n")
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("goalpost.toml:2:1: publish_dir: ftp:// is not a storage"),
            "{err}"
        );

        let err = load("data_dir = \"d\"\npublish_dir = \"site\"\npipelines_dir = \"gs://b/p\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pipelines_dir must be a folder on this machine"),
            "{err}"
        );
    }
}
