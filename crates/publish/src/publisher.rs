//! Versioned, atomic publishing to a local folder.

use crate::digest::Digest;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Render { path: PathBuf, message: String },
    #[error("{}: the current digest cannot be read: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PublishError + '_ {
    move |source| PublishError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The publish folder: `versions/<id>/` plus the `current` link.
#[derive(Debug, Clone)]
pub struct Publisher {
    dir: PathBuf,
    keep: usize,
}

impl Publisher {
    /// `keep`: versions kept besides the current one; older ones are removed after a publish.
    pub fn new(dir: impl Into<PathBuf>, keep: usize) -> Self {
        Self {
            dir: dir.into(),
            keep,
        }
    }

    pub fn current_dir(&self) -> PathBuf {
        self.dir.join("current")
    }

    fn versions_dir(&self) -> PathBuf {
        self.dir.join("versions")
    }

    /// Take the publish lock: one publisher at a time reads, merges and swaps.
    pub fn lock(&self) -> Result<File, PublishError> {
        fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let path = self.dir.join(".lock");
        let file = File::create(&path).map_err(io(&path))?;
        file.lock().map_err(io(&path))?;
        Ok(file)
    }

    /// The digest `current` points at, if anything was published.
    pub fn current_digest(&self) -> Result<Option<Digest>, PublishError> {
        read_digest(&self.current_dir().join("digest.json"))
    }

    /// The news items of the current digest, read without the rest of it (a digest of many
    /// indicators runs to megabytes; the daemon looks at its news every minute).
    pub fn current_news(&self) -> Result<Option<Vec<crate::NewsItem>>, PublishError> {
        #[derive(serde::Deserialize)]
        struct NewsOnly {
            #[serde(default)]
            news: Vec<crate::NewsItem>,
        }
        let path = self.current_dir().join("digest.json");
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path)(e)),
        };
        serde_json::from_reader::<_, NewsOnly>(std::io::BufReader::new(file))
            .map(|d| Some(d.news))
            .map_err(|e| PublishError::Corrupt {
                path: path.clone(),
                message: e.to_string(),
            })
    }

    /// Write a complete new version and make it current. Returns the version's folder.
    ///
    /// The version is written under a temporary name, synced, renamed into `versions/`, and
    /// only then is `current` switched by renaming a new link over it. Any error before that
    /// leaves `current` as it was.
    pub fn publish(&self, digest: &Digest) -> Result<PathBuf, PublishError> {
        self.publish_with(digest, &[])
    }

    /// [`Self::publish`], with more files in the version: `(path inside the version, file to
    /// take it from)`. Each is hard-linked when the file system allows (published versions
    /// are never changed, so versions can share a file) and copied otherwise.
    pub fn publish_with(
        &self,
        digest: &Digest,
        files: &[(String, PathBuf)],
    ) -> Result<PathBuf, PublishError> {
        let versions = self.versions_dir();
        fs::create_dir_all(&versions).map_err(io(&versions))?;
        let final_dir = versions.join(&digest.version);
        let tmp = versions.join(format!(".{}.partial", digest.version));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let written = write_digest_files(digest, &tmp).and_then(|()| attach(&tmp, files));
        if let Err(e) = written {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        sync_dir(&tmp)?;
        goalpost_spec::pause_point("publish");
        if final_dir.exists() {
            fs::remove_dir_all(&final_dir).map_err(io(&final_dir))?;
        }
        fs::rename(&tmp, &final_dir).map_err(io(&final_dir))?;
        sync_dir(&versions)?;
        self.swap_current(&digest.version)?;
        self.log(&format!("publish {}", digest.version));
        self.prune(&digest.version);
        Ok(final_dir)
    }

    /// The id of the version `current` points at.
    pub fn current_version(&self) -> Result<Option<String>, PublishError> {
        let current = self.current_dir();
        match fs::read_link(&current) {
            Ok(target) => Ok(target.file_name().map(|n| n.to_string_lossy().into_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&current)(e)),
        }
    }

    /// Point `current` at the kept version published before the current one (the same
    /// atomic switch as a publish). Returns `(from, to)`. Nothing is deleted: a later publish
    /// builds on the version now current.
    pub fn rollback(&self) -> Result<(String, String), PublishError> {
        let _lock = self.lock()?;
        let current = self
            .current_version()?
            .ok_or_else(|| PublishError::Render {
                path: self.current_dir(),
                message: "nothing is published yet, so there is nothing to roll back".into(),
            })?;
        let kept = self.kept_versions()?;
        // The versions made current, in order, without those rolled back from: the one
        // before the current one is where a rollback goes.
        let mut made_current: Vec<String> = Vec::new();
        for line in self.history()? {
            match line.split_once(' ') {
                Some(("publish", v)) => made_current.push(v.to_string()),
                Some(("rollback", v)) => {
                    made_current.pop();
                    if made_current.last().map(String::as_str) != Some(v) {
                        made_current.push(v.to_string());
                    }
                }
                _ => {}
            }
        }
        if made_current.last() != Some(&current) {
            // No record of how current came to be (published before the log): publish order
            // is the order of the ids.
            made_current = kept
                .iter()
                .filter(|v| v.as_str() <= current.as_str())
                .cloned()
                .collect();
        }
        made_current.pop();
        let earlier = made_current
            .iter()
            .rev()
            .find(|v| kept.contains(v))
            .ok_or_else(|| PublishError::Render {
                path: self.versions_dir(),
                message: format!(
                    "no kept version was current before {current}; kept: {}",
                    kept.join(", ")
                ),
            })?
            .clone();
        self.swap_current(&earlier)?;
        self.log(&format!("rollback {earlier}"));
        Ok((current, earlier))
    }

    /// `versions/.history`: one line per switch of `current` (`publish <id>`,
    /// `rollback <id>`), oldest first.
    fn history(&self) -> Result<Vec<String>, PublishError> {
        let path = self.versions_dir().join(".history");
        match fs::read_to_string(&path) {
            Ok(text) => Ok(text.lines().map(str::to_string).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Append to the history. A failure only warns: the switch it records has happened.
    fn log(&self, line: &str) {
        let path = self.versions_dir().join(".history");
        let written = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| {
                writeln!(f, "{line}")?;
                f.sync_all()
            });
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "could not record the switch of current");
        }
    }

    /// A kept published version's folder.
    pub fn version_dir(&self, id: &str) -> PathBuf {
        self.versions_dir().join(id)
    }

    /// The digest of a kept published version, if that version is still kept.
    pub fn version_digest(&self, id: &str) -> Result<Option<Digest>, PublishError> {
        read_digest(&self.version_dir(id).join("digest.json"))
    }

    /// The ids of the kept published versions, oldest first.
    pub fn kept_versions(&self) -> Result<Vec<String>, PublishError> {
        let dir = self.versions_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&dir)(e)),
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("digest.json").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        Ok(names)
    }
}

fn read_digest(path: &Path) -> Result<Option<Digest>, PublishError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| PublishError::Corrupt {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

/// Write a digest's files (digest.json, indicators.parquet, index.html) into `dir`, which
/// must exist. Publishing uses this for each new version; `recompute` for its output.
pub fn write_digest_files(digest: &Digest, dir: &Path) -> Result<(), PublishError> {
    {
        let json = serde_json::to_vec_pretty(digest).map_err(|e| PublishError::Render {
            path: dir.join("digest.json"),
            message: e.to_string(),
        })?;
        write_file(&dir.join("digest.json"), &json)?;

        let path = dir.join("indicators.parquet");
        let file = File::create(&path).map_err(io(&path))?;
        let mut out = BufWriter::new(file);
        crate::parquet_out::write(digest, &mut out).map_err(|e| PublishError::Render {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let file = out.into_inner().map_err(|e| io(&path)(e.into_error()))?;
        file.sync_all().map_err(io(&path))?;

        let path = dir.join("digest.schema.json");
        let schema = serde_json::to_vec_pretty(&crate::digest::schema()).map_err(|e| {
            PublishError::Render {
                path: path.clone(),
                message: e.to_string(),
            }
        })?;
        write_file(&path, &schema)?;

        let path = dir.join("indicators.csv");
        let mut csv = Vec::new();
        crate::csv_out::write(digest, &mut csv).map_err(|message| PublishError::Render {
            path: path.clone(),
            message,
        })?;
        write_file(&path, &csv)?;

        let path = dir.join("feed.atom");
        write_file(&path, crate::feed::atom(digest).as_bytes())?;

        let path = dir.join("news.json");
        let news = serde_json::to_vec_pretty(&digest.news).map_err(|e| PublishError::Render {
            path: path.clone(),
            message: e.to_string(),
        })?;
        write_file(&path, &news)?;

        let path = dir.join("data.json");
        let catalog = crate::dcat::CatalogInfo::from_site(&digest.site);
        write_file(
            &path,
            crate::dcat::data_json_text(digest, &catalog).as_bytes(),
        )?;

        let pages = crate::html::render_site(digest).map_err(|e| PublishError::Render {
            path: dir.join("index.html"),
            message: format!("{e:#}"),
        })?;
        let mut folders = std::collections::BTreeSet::new();
        for (name, html) in pages {
            let path = dir.join(&name);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(io(parent))?;
                folders.insert(parent.to_path_buf());
            }
            write_file(&path, html.as_bytes())?;
        }
        // The version's own folder is synced by the publisher; its subfolders here.
        for folder in folders.iter().filter(|f| f.as_path() != dir) {
            sync_dir(folder)?;
        }
        Ok(())
    }
}

impl Publisher {
    fn swap_current(&self, version: &str) -> Result<(), PublishError> {
        let current = self.current_dir();
        let tmp_link = self.dir.join(".current.next");
        let _ = fs::remove_file(&tmp_link);
        let target = Path::new("versions").join(version);
        #[cfg(unix)]
        std::os::unix::fs::symlink(&target, &tmp_link).map_err(io(&tmp_link))?;
        #[cfg(not(unix))]
        compile_error!("publishing needs symbolic links (unix)");
        fs::rename(&tmp_link, &current).map_err(io(&current))?;
        // Readers see the new version from here on: a failed sync only risks the switch not
        // surviving a power cut, so it must not turn a published version into a failed run.
        if let Err(e) = sync_dir(&self.dir) {
            tracing::warn!(error = %e, "published, but syncing the publish folder failed");
        }
        Ok(())
    }

    /// Remove versions beyond the newest `keep` (never the current one), and partial
    /// versions left by a publish that was killed. Callers hold the publish lock, so no
    /// partial version here is still being written. Failures only warn: a version left
    /// behind costs disk, not correctness.
    fn prune(&self, current: &str) {
        let versions = self.versions_dir();
        let Ok(entries) = fs::read_dir(&versions) else {
            return;
        };
        let dirs: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        for name in dirs
            .iter()
            .filter(|n| n.starts_with('.') && n.ends_with(".partial"))
        {
            let path = versions.join(name);
            if let Err(e) = fs::remove_dir_all(&path) {
                tracing::warn!(path = %path.display(), error = %e, "could not remove a partial version");
            }
        }
        let mut names: Vec<String> = dirs
            .into_iter()
            .filter(|n| !n.starts_with('.') && n != current)
            .collect();
        names.sort();
        let excess = names.len().saturating_sub(self.keep);
        for name in &names[..excess] {
            let path = versions.join(name);
            if let Err(e) = fs::remove_dir_all(&path) {
                tracing::warn!(path = %path.display(), error = %e, "could not remove an old published version");
            }
        }
    }
}

/// Put `files` into the version folder `dir`.
fn attach(dir: &Path, files: &[(String, PathBuf)]) -> Result<(), PublishError> {
    for (name, from) in files {
        let inside = Path::new(name);
        if inside.is_absolute()
            || inside
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(PublishError::Render {
                path: dir.join(name),
                message: "a published file must be a plain path inside the version".into(),
            });
        }
        let to = dir.join(inside);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        match fs::hard_link(from, &to) {
            Ok(()) => {}
            // Two files for one path: never let the second replace the first.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(PublishError::Render {
                    path: to,
                    message: "two published files have this path".into(),
                });
            }
            // Another file system, or no hard links there: copy.
            Err(_) => {
                fs::copy(from, &to).map_err(io(from))?;
                File::open(&to)
                    .and_then(|f| f.sync_all())
                    .map_err(io(&to))?;
            }
        }
        if let Some(parent) = to.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), PublishError> {
    let mut f = File::create(path).map_err(io(path))?;
    if let Some(e) = goalpost_spec::injected_failure("publish-write") {
        return Err(io(path)(e));
    }
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn sync_dir(dir: &Path) -> Result<(), PublishError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{NewsItem, SiteInfo, Summary};
    use chrono::TimeZone;

    fn digest(version: &str) -> Digest {
        Digest {
            schema_version: crate::DIGEST_SCHEMA_VERSION,
            version: version.into(),
            generated_at: chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            site: SiteInfo {
                title: "<b>City</b>".into(),
                organization: None,
                ..Default::default()
            },
            summary: Summary::default(),
            pipelines: vec![],
            news: vec![NewsItem {
                id: format!("news-{version}"),
                category: "goal".into(),
                title: "Goal met".into(),
                body: "Response times are down.".into(),
                pipeline: "p".into(),
                goal: None,
                event: "met".into(),
                posted: chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
                until: chrono::Utc.with_ymd_and_hms(2026, 1, 8, 0, 0, 0).unwrap(),
                archived: false,
            }],
        }
    }

    #[test]
    fn publishing_switches_current_and_keeps_the_newest_versions() {
        let dir = tempfile::tempdir().unwrap();
        let p = Publisher::new(dir.path(), 1);
        assert_eq!(p.current_digest().unwrap(), None);
        assert_eq!(p.current_news().unwrap(), None);
        // What a publish killed mid-write leaves behind; the next publish clears it.
        let killed = dir.path().join("versions/.v0.partial");
        fs::create_dir_all(&killed).unwrap();
        fs::write(killed.join("digest.json"), "{").unwrap();
        for v in ["v1", "v2", "v3"] {
            p.publish(&digest(v)).unwrap();
            assert_eq!(p.current_digest().unwrap().unwrap().version, v);
            assert_eq!(
                p.current_news().unwrap().unwrap(),
                digest(v).news,
                "the news alone reads as the digest has it"
            );
            assert_eq!(
                fs::read_link(p.current_dir()).unwrap(),
                Path::new("versions").join(v)
            );
        }
        let mut left: Vec<String> = fs::read_dir(dir.path().join("versions"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        // The versions, and the record of what was made current when.
        assert_eq!(left, [".history", "v2", "v3"]);
        assert_eq!(
            fs::read_to_string(dir.path().join("versions/.history")).unwrap(),
            "publish v1\npublish v2\npublish v3\n"
        );
        let html = fs::read_to_string(p.current_dir().join("index.html")).unwrap();
        assert!(html.contains("&lt;b&gt;City&lt;&#x2f;b&gt;"), "{html}");
        assert!(p.current_dir().join("indicators.parquet").is_file());
    }

    #[test]
    fn rollback_points_current_at_the_version_before() {
        let dir = tempfile::tempdir().unwrap();
        let p = Publisher::new(dir.path(), 5);
        assert!(p.rollback().is_err());
        for v in ["v1", "v2", "v3"] {
            p.publish(&digest(v)).unwrap();
        }
        assert_eq!(p.rollback().unwrap(), ("v3".into(), "v2".into()));
        assert_eq!(p.current_digest().unwrap().unwrap().version, "v2");
        assert_eq!(p.rollback().unwrap(), ("v2".into(), "v1".into()));
        let err = p.rollback().unwrap_err().to_string();
        assert!(
            err.contains("no kept version was current before v1"),
            "{err}"
        );
        assert_eq!(p.current_version().unwrap().as_deref(), Some("v1"));
        // Nothing was deleted, and the next publish goes on from here.
        assert_eq!(p.kept_versions().unwrap(), ["v1", "v2", "v3"]);
        p.publish(&digest("v4")).unwrap();
        assert_eq!(p.current_version().unwrap().as_deref(), Some("v4"));
        // Back from v4 goes to v1, the version current before it, never to the versions
        // rolled back from; and ids out of publish order do not matter.
        assert_eq!(p.rollback().unwrap(), ("v4".into(), "v1".into()));
        p.publish(&digest("v0-later")).unwrap();
        assert_eq!(p.rollback().unwrap(), ("v0-later".into(), "v1".into()));
    }

    #[test]
    fn a_failed_write_leaves_current_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = Publisher::new(dir.path(), 5);
        p.publish(&digest("good")).unwrap();
        // A version id that cannot be a folder name fails before the switch.
        let bad = digest("bad/../../escape\0");
        assert!(p.publish(&bad).is_err());
        assert_eq!(p.current_digest().unwrap().unwrap().version, "good");
    }
}
