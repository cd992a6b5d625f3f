//! Raw responses, kept so any run can be replayed offline.
//!
//! A recording lives in `data/raw/<pipeline>/<run-id>/`: `run.json` (what the run started
//! from: each source's refresh state and whether it was a full load), `responses.ndjson` (one
//! line per response, in the order received: URL, status, headers, body file) and one
//! zstd-compressed body file per response. Replaying serves the responses of a recording by
//! URL, in the order they were received, and fails loudly on a request the recording never
//! saw, so a replay is exactly the recorded run or an error.

use crate::FetchError;
use crate::SourceState;
use crate::http::Response;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use url::Url;

/// What a run started from, saved beside its responses.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunManifest {
    pub run_id: String,
    pub pipeline: String,
    /// True when the run was asked to load everything.
    pub full: bool,
    /// Each source's refresh state when the run started, by source key.
    pub sources: BTreeMap<String, SourceState>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    seq: u64,
    url: String,
    status: u16,
    headers: Vec<(String, String)>,
    file: String,
}

/// Headers worth keeping: what connectors read, not cookies or tracing noise.
const KEPT_HEADERS: &[&str] = &[
    "content-type",
    "etag",
    "last-modified",
    "x-soda2-fields",
    "x-soda2-types",
    "x-soda2-truth-last-modified",
];

pub enum Tape {
    /// Nothing is kept.
    Off,
    Record(Recorder),
    Replay(Replayer),
}

impl Tape {
    /// Keep a response; `file` holds its body when it was downloaded to disk.
    pub(crate) async fn record(
        &self,
        response: &Response,
        file: Option<&Path>,
    ) -> Result<(), FetchError> {
        match self {
            Tape::Record(r) => r.record(response, file).await,
            _ => Ok(()),
        }
    }

    /// The recorded response to a request; with `file`, its body is written there instead.
    pub(crate) fn replay(
        &self,
        url: &Url,
        file: Option<&Path>,
    ) -> Result<Option<Response>, FetchError> {
        match self {
            Tape::Replay(r) => r.next(url, file).map(Some),
            _ => Ok(None),
        }
    }

    pub fn is_replay(&self) -> bool {
        matches!(self, Tape::Replay(_))
    }
}

pub struct Recorder {
    dir: PathBuf,
    state: Mutex<(u64, std::fs::File)>,
}

impl Recorder {
    /// Start a recording in `dir` (created), saving the run's starting point.
    pub fn create(dir: &Path, manifest: &RunManifest) -> Result<Self, FetchError> {
        let io = |source| FetchError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let json = serde_json::to_vec_pretty(manifest).expect("manifest serializes");
        std::fs::write(dir.join("run.json"), json).map_err(io)?;
        let index = std::fs::File::create(dir.join("responses.ndjson")).map_err(io)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            state: Mutex::new((0, index)),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    async fn record(
        &self,
        response: &Response,
        body_file: Option<&Path>,
    ) -> Result<(), FetchError> {
        let seq = {
            let mut state = self.state.lock().expect("recorder lock");
            state.0 += 1;
            state.0
        };
        let file = format!("{seq:06}.zst");
        let path = self.dir.join(&file);
        let body = response.body.clone();
        let path2 = path.clone();
        let source = body_file
            .filter(|_| response.status != 304)
            .map(Path::to_path_buf);
        tokio::task::spawn_blocking(move || match source {
            Some(source) => {
                let mut out = std::fs::File::create(&path2)?;
                zstd::stream::copy_encode(std::fs::File::open(source)?, &mut out, 3)
            }
            None => {
                let compressed = zstd::encode_all(&body[..], 3)?;
                std::fs::write(&path2, compressed)
            }
        })
        .await
        .expect("compression task")
        .map_err(|source| FetchError::Io { path, source })?;
        let headers = response
            .headers
            .iter()
            .filter(|(k, _)| KEPT_HEADERS.contains(&k.as_str()))
            .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let entry = Entry {
            seq,
            url: response.url.to_string(),
            status: response.status,
            headers,
            file,
        };
        let mut line = serde_json::to_vec(&entry).expect("entry serializes");
        line.push(b'\n');
        let mut state = self.state.lock().expect("recorder lock");
        state.1.write_all(&line).map_err(|source| FetchError::Io {
            path: self.dir.join("responses.ndjson"),
            source,
        })
    }
}

pub struct Replayer {
    dir: PathBuf,
    manifest: RunManifest,
    entries: Mutex<HashMap<String, VecDeque<Entry>>>,
}

impl Replayer {
    /// Open the recording in `dir`.
    pub fn open(dir: &Path) -> Result<Self, FetchError> {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name)).map_err(|source| FetchError::Io {
                path: dir.join(name),
                source,
            })
        };
        let manifest: RunManifest =
            serde_json::from_str(&read("run.json")?).map_err(|e| FetchError::Json {
                path: dir.join("run.json"),
                message: e.to_string(),
            })?;
        let mut entries: HashMap<String, VecDeque<Entry>> = HashMap::new();
        for (i, line) in read("responses.ndjson")?.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let entry: Entry = serde_json::from_str(line).map_err(|e| FetchError::Json {
                path: dir.join("responses.ndjson"),
                message: format!("line {}: {e}", i + 1),
            })?;
            entries
                .entry(entry.url.clone())
                .or_default()
                .push_back(entry);
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
            entries: Mutex::new(entries),
        })
    }

    pub fn manifest(&self) -> &RunManifest {
        &self.manifest
    }

    fn next(&self, url: &Url, body_file: Option<&Path>) -> Result<Response, FetchError> {
        let entry = self
            .entries
            .lock()
            .expect("replay lock")
            .get_mut(url.as_str())
            .and_then(VecDeque::pop_front)
            .ok_or_else(|| FetchError::Replay {
                dir: self.dir.clone(),
                message: format!("the recorded run never requested {url} (or not this often); a replay must make the same requests as the run it replays"),
            })?;
        let path = self.dir.join(&entry.file);
        let compressed = std::fs::read(&path).map_err(|source| FetchError::Io {
            path: path.clone(),
            source,
        })?;
        let body = match body_file.filter(|_| entry.status != 304) {
            Some(dest) => {
                let mut out = std::fs::File::create(dest).map_err(|source| FetchError::Io {
                    path: dest.to_path_buf(),
                    source,
                })?;
                zstd::stream::copy_decode(&compressed[..], &mut out)
                    .map_err(|source| FetchError::Io { path, source })?;
                Vec::new()
            }
            None => zstd::decode_all(&compressed[..])
                .map_err(|source| FetchError::Io { path, source })?,
        };
        let mut headers = HeaderMap::new();
        for (k, v) in &entry.headers {
            if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::from_str(v)) {
                headers.insert(k, v);
            }
        }
        Ok(Response {
            url: url.clone(),
            status: entry.status,
            headers,
            body: Bytes::from(body),
        })
    }
}

/// Delete all but the newest `keep` recordings of a pipeline (run ids sort by time).
pub fn prune_recordings(pipeline_dir: &Path, keep: usize) -> std::io::Result<usize> {
    let mut runs: Vec<PathBuf> = match std::fs::read_dir(pipeline_dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    runs.sort();
    let excess = runs.len().saturating_sub(keep);
    for dir in &runs[..excess] {
        std::fs::remove_dir_all(dir)?;
    }
    Ok(excess)
}
