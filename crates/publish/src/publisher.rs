//! Versioned, atomic publishing, to a folder on this machine or to object storage.
//!
//! Every version is written whole under `versions/<id>/` before anything points at it. Then:
//! - in a folder, the `current` symbolic link is switched with one rename;
//! - in both, `current.json` (`{"version": …, "path": "versions/<id>/", …}`) is replaced (one
//!   rename in a folder; one PUT in a bucket, where an object is only ever seen whole), and
//!   after it the root `index.html`, which sends a browser on to the current version.
//!
//! So a reader that follows `current` or `current.json` only ever finds a complete version.
//! In a bucket `digest.json` is the last file of a version to be written: a version without
//! one was cut off, and the next publish removes it. One publisher at a time: a file lock in a
//! folder, a lease object written with a conditional PUT in a bucket.

use crate::digest::Digest;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, Attributes, ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload,
    UpdateVersion,
};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Store {
        path: String,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error("{path}: {message}")]
    Render { path: String, message: String },
    #[error("{path}: the current digest cannot be read: {message}")]
    Corrupt { path: String, message: String },
    #[error(
        "{path}: another publisher holds the publish lock ({holder}) and did not let go \
         within {waited:?}; a lock whose process is gone is taken over once it has not been \
         renewed for {lease:?} (publish_lease)"
    )]
    Locked {
        path: String,
        holder: String,
        waited: Duration,
        lease: Duration,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PublishError + '_ {
    move |source| PublishError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The pointer at the current version: `current.json` at the root of the publish location.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CurrentPointer {
    /// The current version's id.
    pub version: String,
    /// Its folder, relative to the publish location, with a trailing slash.
    pub path: String,
    /// Its digest, relative to the publish location.
    pub digest: String,
    /// When the digest was generated.
    pub generated_at: chrono::DateTime<chrono::Utc>,
}

impl CurrentPointer {
    fn to(digest: &Digest) -> Self {
        Self::at(&digest.version, digest.generated_at)
    }

    fn at(version: &str, generated_at: chrono::DateTime<chrono::Utc>) -> Self {
        Self {
            version: version.to_string(),
            path: format!("versions/{version}/"),
            digest: format!("versions/{version}/digest.json"),
            generated_at,
        }
    }
}

/// A file put into a version besides the digest's own (a table's snapshot, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attached {
    /// A file on this machine.
    File(PathBuf),
    /// A file of a version already published (`path` inside it), carried over unchanged.
    Published { version: String, path: String },
}

/// In a bucket: how long the publish lock of a publisher that stopped renewing it (it died)
/// keeps others out, and how long a publisher waits for a lock that is being renewed.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(120);
const LOCK_WAIT: Duration = Duration::from_secs(30 * 60);

/// The publish location: `versions/<id>/`, the `current` link (in a folder), `current.json`
/// and the root `index.html`.
#[derive(Debug, Clone)]
pub struct Publisher {
    place: Place,
    keep: usize,
    /// In a bucket: how old a lock may get before it is taken over, and how long to wait.
    lease: Duration,
    lock_wait: Duration,
}

#[derive(Clone)]
enum Place {
    Local(PathBuf),
    /// A store whose root is the publish prefix, and the prefix's address for messages.
    Remote {
        store: Arc<dyn ObjectStore>,
        url: String,
    },
}

impl std::fmt::Debug for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Local(dir) => write!(f, "Local({})", dir.display()),
            Place::Remote { url, .. } => write!(f, "Remote({url})"),
        }
    }
}

/// Held while publishing; let go with [`PublishLock::release`] (or, less promptly, by
/// dropping it).
pub struct PublishLock {
    held: Option<Held>,
}

enum Held {
    /// Locked while open.
    File { _open: File },
    /// The lease object, renewed in the background until let go of.
    Lease {
        store: Arc<dyn ObjectStore>,
        path: ObjectPath,
        lost: Arc<AtomicBool>,
        renew: tokio::task::JoinHandle<()>,
    },
}

impl PublishLock {
    /// Whether another publisher took the lock over (this one failed to renew it in time):
    /// nothing may be made current under it any more.
    pub fn lost(&self) -> bool {
        match &self.held {
            Some(Held::Lease { lost, .. }) => lost.load(Ordering::SeqCst),
            _ => false,
        }
    }

    /// Let go of the lock now.
    pub async fn release(mut self) {
        if let Some(Held::Lease {
            store,
            path,
            lost,
            renew,
        }) = self.held.take()
        {
            renew.abort();
            if !lost.load(Ordering::SeqCst)
                && let Err(e) = store.delete(&path).await
            {
                tracing::warn!(error = %e, "could not remove the publish lock; it lapses on its own");
            }
        }
    }
}

impl Drop for PublishLock {
    fn drop(&mut self) {
        if let Some(Held::Lease {
            store,
            path,
            lost,
            renew,
        }) = self.held.take()
        {
            renew.abort();
            // Dropped without release (an error on the way): remove it in the background, or
            // leave it to lapse.
            if !lost.load(Ordering::SeqCst)
                && let Ok(rt) = tokio::runtime::Handle::try_current()
            {
                rt.spawn(async move {
                    let _ = store.delete(&path).await;
                });
            }
        }
    }
}

/// Renew the lease at `path` every `every`, each time conditional on the version written
/// last; once that fails because another publisher took it over, mark it `lost` and stop.
async fn renew_lease(
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    holder: String,
    mut version: UpdateVersion,
    every: Duration,
    lost: Arc<AtomicBool>,
) {
    loop {
        tokio::time::sleep(every).await;
        let put = store
            .put_opts(
                &path,
                PutPayload::from(holder.clone()),
                PutMode::Update(version.clone()).into(),
            )
            .await;
        match put {
            Ok(done) => {
                version = UpdateVersion {
                    e_tag: done.e_tag,
                    version: done.version,
                }
            }
            Err(object_store::Error::Precondition { .. })
            | Err(object_store::Error::NotFound { .. }) => {
                tracing::error!("the publish lock was taken over by another publisher");
                lost.store(true, Ordering::SeqCst);
                return;
            }
            // A passing failure: the lease holds until it lapses, and the next renewal may
            // get through.
            Err(e) => tracing::warn!(error = %e, "could not renew the publish lock"),
        }
    }
}

impl Publisher {
    /// A publish folder on this machine. `keep`: versions kept besides the current one; older
    /// ones are removed after a publish.
    pub fn new(dir: impl Into<PathBuf>, keep: usize) -> Self {
        Self::at(Place::Local(dir.into()), keep)
    }

    fn at(place: Place, keep: usize) -> Self {
        Self {
            place,
            keep,
            lease: DEFAULT_LEASE,
            lock_wait: LOCK_WAIT,
        }
    }

    /// A publish prefix in object storage: `store`'s root is the prefix, `url` its address.
    pub fn remote(store: Arc<dyn ObjectStore>, url: impl Into<String>, keep: usize) -> Self {
        let url = url.into().trim_end_matches('/').to_string();
        Self::at(Place::Remote { store, url }, keep)
    }

    /// In a bucket: the lock is renewed every quarter of `lease` while held, and one not
    /// renewed for `lease` is taken over.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// In a bucket: give up waiting for a lock that is being renewed after `wait`.
    pub fn with_lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// The address of `path` inside the publish location, for messages.
    pub fn location(&self, path: &str) -> String {
        match &self.place {
            Place::Local(dir) => dir.join(path).display().to_string(),
            Place::Remote { url, .. } if path.is_empty() => url.clone(),
            Place::Remote { url, .. } => format!("{url}/{path}"),
        }
    }

    /// The address of a kept version's folder.
    pub fn version_location(&self, id: &str) -> String {
        self.location(&format!("versions/{id}"))
    }

    /// The version folder on this machine, when publishing to a folder.
    pub fn local_version_dir(&self, id: &str) -> Option<PathBuf> {
        match &self.place {
            Place::Local(dir) => Some(dir.join("versions").join(id)),
            Place::Remote { .. } => None,
        }
    }

    /// Take the publish lock: one publisher at a time reads, merges and swaps.
    pub async fn lock(&self) -> Result<PublishLock, PublishError> {
        match &self.place {
            Place::Local(dir) => {
                fs::create_dir_all(dir).map_err(io(dir))?;
                let path = dir.join(".lock");
                let file = File::create(&path).map_err(io(&path))?;
                file.lock().map_err(io(&path))?;
                Ok(PublishLock {
                    held: Some(Held::File { _open: file }),
                })
            }
            Place::Remote { store, .. } => self.take_lease(store).await,
        }
    }

    /// The lease: `.lock`, created only if absent and renewed while held. One not renewed
    /// for the lease's length was left by a publisher that is gone, and is taken over with a
    /// PUT conditional on its ETag, so of two publishers taking it over only one succeeds.
    async fn take_lease(&self, store: &Arc<dyn ObjectStore>) -> Result<PublishLock, PublishError> {
        let path = ObjectPath::from(".lock");
        let holder = format!(
            "{} pid {} since {}",
            hostname(),
            std::process::id(),
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(200);
        loop {
            let put = store
                .put_opts(
                    &path,
                    PutPayload::from(holder.clone()),
                    PutMode::Create.into(),
                )
                .await;
            let held = |done: object_store::PutResult| {
                let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let renew = tokio::spawn(renew_lease(
                    store.clone(),
                    path.clone(),
                    holder.clone(),
                    UpdateVersion {
                        e_tag: done.e_tag,
                        version: done.version,
                    },
                    self.lease / 4,
                    lost.clone(),
                ));
                PublishLock {
                    held: Some(Held::Lease {
                        store: store.clone(),
                        path: path.clone(),
                        lost,
                        renew,
                    }),
                }
            };
            match put {
                Ok(done) => return Ok(held(done)),
                Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(self.store_error(".lock", e)),
            }
            let current = match store.get(&path).await {
                Ok(current) => current,
                // Let go of between the two calls: try again at once.
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(self.store_error(".lock", e)),
            };
            let meta = current.meta.clone();
            let other = current
                .bytes()
                .await
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let age = (chrono::Utc::now() - meta.last_modified)
                .to_std()
                .unwrap_or_default();
            if age >= self.lease {
                let version = UpdateVersion {
                    e_tag: meta.e_tag.clone(),
                    version: meta.version.clone(),
                };
                match store
                    .put_opts(
                        &path,
                        PutPayload::from(holder.clone()),
                        PutMode::Update(version).into(),
                    )
                    .await
                {
                    Ok(done) => {
                        tracing::warn!(previous = %other, "took over a publish lock not renewed for {age:?}");
                        return Ok(held(done));
                    }
                    Err(object_store::Error::Precondition { .. })
                    | Err(object_store::Error::NotFound { .. }) => continue,
                    Err(e) => return Err(self.store_error(".lock", e)),
                }
            }
            if started.elapsed() >= self.lock_wait {
                return Err(PublishError::Locked {
                    path: self.location(".lock"),
                    holder: other,
                    waited: self.lock_wait,
                    lease: self.lease,
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    fn store_error(&self, path: &str, source: object_store::Error) -> PublishError {
        PublishError::Store {
            path: self.location(path),
            source: Box::new(source),
        }
    }

    /// A file of the publish location, `None` when it is not there.
    async fn read(&self, path: &str) -> Result<Option<Vec<u8>>, PublishError> {
        match &self.place {
            Place::Local(dir) => {
                let file = dir.join(path);
                match fs::read(&file) {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(io(&file)(e)),
                }
            }
            Place::Remote { store, .. } => {
                let got = match store.get(&ObjectPath::from(path)).await {
                    Ok(got) => got,
                    Err(object_store::Error::NotFound { .. }) => return Ok(None),
                    Err(e) => return Err(self.store_error(path, e)),
                };
                match got.bytes().await {
                    Ok(bytes) => Ok(Some(bytes.to_vec())),
                    Err(e) => Err(self.store_error(path, e)),
                }
            }
        }
    }

    /// A file of a kept version (`path` inside it), `None` when it is not there.
    pub async fn version_file(
        &self,
        id: &str,
        path: &str,
    ) -> Result<Option<Vec<u8>>, PublishError> {
        self.read(&format!("versions/{id}/{path}")).await
    }

    /// A file of a kept version as a stream of chunks, with its size; `None` when it is not
    /// there. From a bucket the chunks arrive as they are downloaded (a table's snapshot
    /// can be large); from a folder the file is read whole.
    pub async fn stream_version_file(
        &self,
        id: &str,
        path: &str,
    ) -> Result<Option<(u64, BoxStream<'static, std::io::Result<Bytes>>)>, PublishError> {
        use futures::{StreamExt as _, TryStreamExt as _};
        let inside = format!("versions/{id}/{path}");
        match &self.place {
            Place::Local(_) => Ok(self.read(&inside).await?.map(|bytes| {
                let size = bytes.len() as u64;
                let one = futures::stream::once(async move { Ok(Bytes::from(bytes)) });
                (size, one.boxed())
            })),
            Place::Remote { store, .. } => {
                match store.get(&ObjectPath::from(inside.as_str())).await {
                    Ok(got) => {
                        let size = got.meta.size;
                        let stream = got.into_stream().map_err(std::io::Error::other).boxed();
                        Ok(Some((size, stream)))
                    }
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(self.store_error(&inside, e)),
                }
            }
        }
    }

    /// Whether a kept version holds `path`.
    pub async fn version_has(&self, id: &str, path: &str) -> Result<bool, PublishError> {
        let inside = format!("versions/{id}/{path}");
        match &self.place {
            Place::Local(dir) => Ok(dir.join(&inside).is_file()),
            Place::Remote { store, .. } => {
                match store.head(&ObjectPath::from(inside.as_str())).await {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::NotFound { .. }) => Ok(false),
                    Err(e) => Err(self.store_error(&inside, e)),
                }
            }
        }
    }

    /// The id of the current version: where the `current` link points in a folder, what
    /// `current.json` names in a bucket.
    pub async fn current_version(&self) -> Result<Option<String>, PublishError> {
        match &self.place {
            Place::Local(dir) => {
                let current = dir.join("current");
                match fs::read_link(&current) {
                    Ok(target) => Ok(target.file_name().map(|n| n.to_string_lossy().into_owned())),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(io(&current)(e)),
                }
            }
            Place::Remote { .. } => Ok(self.pointer().await?.map(|p| p.version)),
        }
    }

    /// `current.json`, when something was published.
    pub async fn pointer(&self) -> Result<Option<CurrentPointer>, PublishError> {
        let Some(bytes) = self.read("current.json").await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| PublishError::Corrupt {
                path: self.location("current.json"),
                message: e.to_string(),
            })
    }

    /// The digest of the current version, if anything was published.
    pub async fn current_digest(&self) -> Result<Option<Digest>, PublishError> {
        match self.current_version().await? {
            Some(id) => self.version_digest(&id).await,
            None => Ok(None),
        }
    }

    /// The news items of the current digest, read without the rest of it (a digest of many
    /// indicators runs to megabytes; the daemon looks at its news every minute).
    pub async fn current_news(&self) -> Result<Option<Vec<crate::NewsItem>>, PublishError> {
        #[derive(serde::Deserialize)]
        struct NewsOnly {
            #[serde(default)]
            news: Vec<crate::NewsItem>,
        }
        let Some(id) = self.current_version().await? else {
            return Ok(None);
        };
        let path = format!("versions/{id}/digest.json");
        let news = match &self.place {
            // Streamed from the file: the rest of the digest is never held.
            Place::Local(dir) => {
                let file = match File::open(dir.join(&path)) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(io(&dir.join(&path))(e)),
                };
                serde_json::from_reader::<_, NewsOnly>(std::io::BufReader::new(file))
            }
            Place::Remote { .. } => {
                let Some(bytes) = self.read(&path).await? else {
                    return Ok(None);
                };
                serde_json::from_slice::<NewsOnly>(&bytes)
            }
        };
        news.map(|d| Some(d.news))
            .map_err(|e| PublishError::Corrupt {
                path: self.location(&path),
                message: e.to_string(),
            })
    }

    /// The digest of a kept published version, if that version is still kept.
    pub async fn version_digest(&self, id: &str) -> Result<Option<Digest>, PublishError> {
        let path = format!("versions/{id}/digest.json");
        let Some(bytes) = self.read(&path).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| PublishError::Corrupt {
                path: self.location(&path),
                message: e.to_string(),
            })
    }

    /// The ids of the kept, complete published versions, oldest first.
    pub async fn kept_versions(&self) -> Result<Vec<String>, PublishError> {
        let mut names: Vec<String> = self
            .version_folders()
            .await?
            .into_iter()
            .filter(|(name, complete)| *complete && !name.starts_with('.'))
            .map(|(name, _)| name)
            .collect();
        names.sort();
        Ok(names)
    }

    /// Every folder under `versions/`, and whether it holds a `digest.json`.
    async fn version_folders(&self) -> Result<Vec<(String, bool)>, PublishError> {
        match &self.place {
            Place::Local(dir) => {
                let versions = dir.join("versions");
                let entries = match fs::read_dir(&versions) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(io(&versions)(e)),
                };
                Ok(entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().is_dir())
                    .map(|e| {
                        (
                            e.file_name().to_string_lossy().into_owned(),
                            e.path().join("digest.json").is_file(),
                        )
                    })
                    .collect())
            }
            Place::Remote { store, .. } => {
                let prefix = ObjectPath::from("versions");
                let listed = store
                    .list_with_delimiter(Some(&prefix))
                    .await
                    .map_err(|e| self.store_error("versions/", e))?;
                let mut out = Vec::new();
                for folder in listed.common_prefixes {
                    let Some(name) = folder.filename().map(str::to_string) else {
                        continue;
                    };
                    let complete = match store.head(&folder.clone().join("digest.json")).await {
                        Ok(_) => true,
                        Err(object_store::Error::NotFound { .. }) => false,
                        Err(e) => return Err(self.store_error(&format!("versions/{name}/"), e)),
                    };
                    out.push((name, complete));
                }
                Ok(out)
            }
        }
    }

    /// Write a complete new version and make it current. Returns the version's address.
    ///
    /// Any error before the switch leaves the current version as it was.
    pub async fn publish(&self, digest: &Digest) -> Result<String, PublishError> {
        let lock = self.lock().await?;
        let published = self.publish_with(&lock, digest, &[]).await;
        lock.release().await;
        published
    }

    /// [`Self::publish`], with more files in the version: `(path inside the version, where
    /// to take it from)`. In a folder, each is hard-linked when the file system allows
    /// (published versions are never changed, so versions can share a file) and copied
    /// otherwise; in a bucket, a published one is copied inside the bucket.
    /// `lock` is the publish lock, taken before the current digest was read.
    pub async fn publish_with(
        &self,
        lock: &PublishLock,
        digest: &Digest,
        files: &[(String, Attached)],
    ) -> Result<String, PublishError> {
        for (name, _) in files {
            check_inside(name).map_err(|message| PublishError::Render {
                path: self.location(&format!("versions/{}/{name}", digest.version)),
                message,
            })?;
        }
        check_inside(&digest.version).map_err(|message| PublishError::Render {
            path: self.location("versions"),
            message: format!("the version id {:?}: {message}", digest.version),
        })?;
        match &self.place {
            Place::Local(dir) => self.publish_local(dir, digest, files)?,
            Place::Remote { store, .. } => self.publish_remote(store, lock, digest, files).await?,
        }
        self.log(&format!("publish {}", digest.version)).await;
        self.prune(&digest.version).await;
        Ok(self.version_location(&digest.version))
    }

    fn publish_local(
        &self,
        dir: &Path,
        digest: &Digest,
        files: &[(String, Attached)],
    ) -> Result<(), PublishError> {
        let versions = dir.join("versions");
        fs::create_dir_all(&versions).map_err(io(&versions))?;
        let final_dir = versions.join(&digest.version);
        let tmp = versions.join(format!(".{}.partial", digest.version));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let written =
            write_digest_files(digest, &tmp).and_then(|()| attach(&versions, &tmp, files));
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
        self.swap_current(dir, CurrentPointer::to(digest), &digest.site.title)
    }

    async fn publish_remote(
        &self,
        store: &Arc<dyn ObjectStore>,
        lock: &PublishLock,
        digest: &Digest,
        files: &[(String, Attached)],
    ) -> Result<(), PublishError> {
        let root = format!("versions/{}", digest.version);
        let mut rendered = digest_files(digest)?;
        // digest.json last: a version is complete once it is there.
        rendered.sort_by_key(|(name, _)| name == "digest.json");
        let (last, rendered) = rendered.split_last().expect("a digest renders to files");
        for (n, (name, bytes)) in rendered.iter().enumerate() {
            let path = format!("{root}/{name}");
            self.put(store, &path, Bytes::from(bytes.clone()), IMMUTABLE)
                .await?;
            if n == rendered.len() / 2 {
                goalpost_spec::pause_point("publish-upload");
            }
        }
        for (name, from) in files {
            let path = format!("{root}/{name}");
            match from {
                Attached::File(file) => self.upload(store, file, &path).await?,
                Attached::Published {
                    version,
                    path: inside,
                } => {
                    let from = ObjectPath::from(format!("versions/{version}/{inside}"));
                    store
                        .copy(&from, &ObjectPath::from(path.as_str()))
                        .await
                        .map_err(|e| self.store_error(&path, e))?;
                }
            }
        }
        let path = format!("{root}/{}", last.0);
        self.put(store, &path, Bytes::from(last.1.clone()), IMMUTABLE)
            .await?;
        goalpost_spec::pause_point("publish");
        if lock.lost() {
            return Err(PublishError::Render {
                path: self.location(".lock"),
                message: format!(
                    "the publish lock was taken over by another publisher before version {} \
                     was made current (it could not be renewed within its lease); the \
                     version is left for the next publish to remove",
                    digest.version
                ),
            });
        }
        self.point_at(CurrentPointer::to(digest), &digest.site.title)
            .await
    }

    /// Make `pointer`'s version the one readers see.
    async fn point_at(&self, pointer: CurrentPointer, title: &str) -> Result<(), PublishError> {
        match &self.place {
            Place::Local(dir) => self.swap_current(dir, pointer, title),
            Place::Remote { store, .. } => {
                let json = serde_json::to_vec_pretty(&pointer).expect("a pointer serialises");
                self.put(store, "current.json", Bytes::from(json), CHANGING)
                    .await?;
                let html = root_index(&pointer, title);
                if let Err(e) = self
                    .put(store, "index.html", Bytes::from(html), CHANGING)
                    .await
                {
                    // current.json has switched; a stale root page only sends browsers to
                    // the version before, which is still complete.
                    tracing::warn!(error = %e, "published, but the root index.html was not rewritten");
                }
                Ok(())
            }
        }
    }

    async fn put(
        &self,
        store: &Arc<dyn ObjectStore>,
        path: &str,
        bytes: Bytes,
        cache: &str,
    ) -> Result<(), PublishError> {
        if let Some(e) = goalpost_spec::injected_failure("publish-write") {
            return Err(PublishError::Io {
                path: self.location(path),
                source: e,
            });
        }
        let options = PutOptions {
            attributes: attributes(path, cache),
            ..Default::default()
        };
        store
            .put_opts(&ObjectPath::from(path), PutPayload::from(bytes), options)
            .await
            .map_err(|e| self.store_error(path, e))?;
        Ok(())
    }

    /// Stream a file on this machine into the bucket (a multipart upload for a large one).
    async fn upload(
        &self,
        store: &Arc<dyn ObjectStore>,
        file: &Path,
        path: &str,
    ) -> Result<(), PublishError> {
        use tokio::io::AsyncWriteExt as _;
        let mut from = tokio::fs::File::open(file).await.map_err(io(file))?;
        let mut to = object_store::buffered::BufWriter::new(store.clone(), ObjectPath::from(path))
            .with_attributes(attributes(path, IMMUTABLE));
        let copied = async {
            tokio::io::copy(&mut from, &mut to).await?;
            to.shutdown().await
        }
        .await;
        if let Err(e) = copied {
            let _ = to.abort().await;
            return Err(PublishError::Io {
                path: format!("{} → {}", file.display(), self.location(path)),
                source: e,
            });
        }
        Ok(())
    }

    /// Point `current` at the kept version published before the current one (the same
    /// atomic switch as a publish). Returns `(from, to)`. Nothing is deleted: a later publish
    /// builds on the version now current.
    pub async fn rollback(&self) -> Result<(String, String), PublishError> {
        let lock = self.lock().await?;
        let current = self
            .current_version()
            .await?
            .ok_or_else(|| PublishError::Render {
                path: self.location(""),
                message: "nothing is published yet, so there is nothing to roll back".into(),
            })?;
        let kept = self.kept_versions().await?;
        // The versions made current, in order, without those rolled back from: the one
        // before the current one is where a rollback goes.
        let mut made_current: Vec<String> = Vec::new();
        for line in self.history().await? {
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
                path: self.location("versions"),
                message: format!(
                    "no kept version was current before {current}; kept: {}",
                    kept.join(", ")
                ),
            })?
            .clone();
        let digest = self.version_digest(&earlier).await?;
        let title = digest.as_ref().map_or("", |d| d.site.title.as_str());
        let generated = digest
            .as_ref()
            .map_or_else(chrono::Utc::now, |d| d.generated_at);
        self.point_at(CurrentPointer::at(&earlier, generated), title)
            .await?;
        self.log(&format!("rollback {earlier}")).await;
        lock.release().await;
        Ok((current, earlier))
    }

    /// `versions/.history`: one line per switch of `current` (`publish <id>`,
    /// `rollback <id>`), oldest first.
    async fn history(&self) -> Result<Vec<String>, PublishError> {
        Ok(self
            .read("versions/.history")
            .await?
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .lines()
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Append to the history. A failure only warns: the switch it records has happened.
    async fn log(&self, line: &str) {
        let written = match &self.place {
            Place::Local(dir) => {
                let path = dir.join("versions/.history");
                fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .and_then(|mut f| {
                        writeln!(f, "{line}")?;
                        f.sync_all()
                    })
                    .map_err(io(&path))
            }
            // No appending in a bucket: read, add, write back (under the publish lock).
            Place::Remote { store, .. } => match self.history().await {
                Ok(mut lines) => {
                    lines.push(line.to_string());
                    let text = lines.join("\n") + "\n";
                    self.put(store, "versions/.history", Bytes::from(text), CHANGING)
                        .await
                }
                Err(e) => Err(e),
            },
        };
        if let Err(e) = written {
            tracing::warn!(error = %e, "could not record the switch of current");
        }
    }

    /// Remove versions beyond the newest `keep` (never the current one), and partial
    /// versions left by a publish that was killed. Callers hold the publish lock, so no
    /// partial version here is still being written. Failures only warn: a version left
    /// behind costs storage, not correctness.
    async fn prune(&self, current: &str) {
        let folders = match self.version_folders().await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "could not list the published versions");
                return;
            }
        };
        let partial = |name: &str, complete: bool| match &self.place {
            Place::Local(_) => name.starts_with('.') && name.ends_with(".partial"),
            Place::Remote { .. } => !complete && name != current,
        };
        let mut doomed: Vec<String> = folders
            .iter()
            .filter(|(n, complete)| partial(n, *complete))
            .map(|(n, _)| n.clone())
            .collect();
        let mut names: Vec<String> = folders
            .iter()
            .filter(|(n, complete)| !partial(n, *complete) && !n.starts_with('.') && n != current)
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        let excess = names.len().saturating_sub(self.keep);
        doomed.extend(names.drain(..excess));
        for name in doomed {
            if let Err(e) = self.remove_version(&name).await {
                tracing::warn!(version = %name, error = %e, "could not remove an old or partial published version");
            }
        }
    }

    async fn remove_version(&self, name: &str) -> Result<(), PublishError> {
        match &self.place {
            Place::Local(dir) => {
                let path = dir.join("versions").join(name);
                fs::remove_dir_all(&path).map_err(io(&path))
            }
            Place::Remote { store, .. } => {
                use futures::{StreamExt as _, TryStreamExt as _};
                let prefix = ObjectPath::from(format!("versions/{name}"));
                let listed = store.list(Some(&prefix)).map_ok(|m| m.location).boxed();
                store
                    .delete_stream(listed)
                    .try_collect::<Vec<_>>()
                    .await
                    .map_err(|e| self.store_error(&format!("versions/{name}/"), e))?;
                Ok(())
            }
        }
    }

    /// In a folder: switch the `current` link with one rename, then replace `current.json`
    /// and the root `index.html` the same way.
    fn swap_current(
        &self,
        dir: &Path,
        pointer: CurrentPointer,
        title: &str,
    ) -> Result<(), PublishError> {
        let current = dir.join("current");
        let tmp_link = dir.join(".current.next");
        let _ = fs::remove_file(&tmp_link);
        let target = Path::new("versions").join(&pointer.version);
        #[cfg(unix)]
        std::os::unix::fs::symlink(&target, &tmp_link).map_err(io(&tmp_link))?;
        #[cfg(not(unix))]
        compile_error!("publishing needs symbolic links (unix)");
        fs::rename(&tmp_link, &current).map_err(io(&current))?;
        // Readers see the new version from here on: a failed pointer file or sync only
        // warns, so it cannot turn a published version into a failed run.
        let json = serde_json::to_vec_pretty(&pointer).expect("a pointer serialises");
        for (name, bytes) in [
            ("current.json", json),
            ("index.html", root_index(&pointer, title).into_bytes()),
        ] {
            let path = dir.join(name);
            let tmp = dir.join(format!(".{name}.next"));
            if let Err(e) =
                write_file(&tmp, &bytes).and_then(|()| fs::rename(&tmp, &path).map_err(io(&path)))
            {
                tracing::warn!(error = %e, "published, but {name} was not rewritten");
            }
        }
        if let Err(e) = sync_dir(dir) {
            tracing::warn!(error = %e, "published, but syncing the publish folder failed");
        }
        Ok(())
    }
}

/// Cache headers: a version's files never change; the pointer and the root page do.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const CHANGING: &str = "no-cache";

fn attributes(path: &str, cache: &str) -> Attributes {
    let mut attributes = Attributes::new();
    attributes.insert(Attribute::ContentType, content_type(path).into());
    attributes.insert(Attribute::CacheControl, cache.to_string().into());
    attributes
}

/// The media type a file is served with, from its extension.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        Some("csv") => "text/csv; charset=utf-8",
        Some("parquet") => "application/vnd.apache.parquet",
        Some("atom") => "application/atom+xml; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The page at the root of the publish location: it sends a browser on to the current
/// version's site (written after `current.json`).
fn root_index(pointer: &CurrentPointer, title: &str) -> String {
    let title = crate::chart::escape(if title.is_empty() {
        "Published digest"
    } else {
        title
    });
    let href = crate::chart::escape(&format!("{}index.html", pointer.path));
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<meta http-equiv=\"refresh\" content=\"0; url={href}\">\n\
         <link rel=\"canonical\" href=\"{href}\">\n</head>\n<body>\n\
         <p><a href=\"{href}\">{title}</a></p>\n</body>\n</html>\n"
    )
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown host".into())
}

/// `name` as a plain relative path: no `..`, no root, nothing empty.
fn check_inside(name: &str) -> Result<(), String> {
    let inside = Path::new(name);
    let plain = !name.is_empty()
        && !name.contains('\0')
        && !inside.is_absolute()
        && inside
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    if plain {
        Ok(())
    } else {
        Err("a published file must be a plain path inside the version".into())
    }
}

/// A digest's files (digest.json, indicators.parquet, the site …), as paths inside a version
/// and their bytes.
fn digest_files(digest: &Digest) -> Result<Vec<(String, Vec<u8>)>, PublishError> {
    let render = |name: &str| {
        let name = name.to_string();
        move |message: String| PublishError::Render {
            path: name,
            message,
        }
    };
    let mut out = Vec::new();
    let json =
        serde_json::to_vec_pretty(digest).map_err(|e| render("digest.json")(e.to_string()))?;
    out.push(("digest.json".to_string(), json));

    let mut parquet = Vec::new();
    crate::parquet_out::write(digest, &mut parquet)
        .map_err(|e| render("indicators.parquet")(e.to_string()))?;
    out.push(("indicators.parquet".to_string(), parquet));

    let schema = serde_json::to_vec_pretty(&crate::digest::schema())
        .map_err(|e| render("digest.schema.json")(e.to_string()))?;
    out.push(("digest.schema.json".to_string(), schema));

    let mut csv = Vec::new();
    crate::csv_out::write(digest, &mut csv).map_err(render("indicators.csv"))?;
    out.push(("indicators.csv".to_string(), csv));

    out.push((
        "feed.atom".to_string(),
        crate::feed::atom(digest).into_bytes(),
    ));

    let news =
        serde_json::to_vec_pretty(&digest.news).map_err(|e| render("news.json")(e.to_string()))?;
    out.push(("news.json".to_string(), news));

    let catalog = crate::dcat::CatalogInfo::from_site(&digest.site);
    out.push((
        "data.json".to_string(),
        crate::dcat::data_json_text(digest, &catalog).into_bytes(),
    ));

    let pages =
        crate::html::render_site(digest).map_err(|e| render("index.html")(format!("{e:#}")))?;
    for (name, html) in pages {
        out.push((name, html.into_bytes()));
    }
    Ok(out)
}

/// Write a digest's files (digest.json, indicators.parquet, index.html …) into `dir`, which
/// must exist. Publishing to a folder uses this for each new version; `recompute` for its
/// output.
pub fn write_digest_files(digest: &Digest, dir: &Path) -> Result<(), PublishError> {
    let files = digest_files(digest).map_err(|e| match e {
        PublishError::Render { path, message } => PublishError::Render {
            path: dir.join(path).display().to_string(),
            message,
        },
        other => other,
    })?;
    let mut folders = std::collections::BTreeSet::new();
    for (name, bytes) in files {
        let path = dir.join(&name);
        if let Some(parent) = path.parent()
            && parent != dir
        {
            fs::create_dir_all(parent).map_err(io(parent))?;
            folders.insert(parent.to_path_buf());
        }
        write_file(&path, &bytes)?;
    }
    // The version's own folder is synced by the publisher; its subfolders here.
    for folder in &folders {
        sync_dir(folder)?;
    }
    Ok(())
}

/// Put `files` into the version folder `dir` (`versions` holds the published versions).
fn attach(versions: &Path, dir: &Path, files: &[(String, Attached)]) -> Result<(), PublishError> {
    for (name, from) in files {
        let from = match from {
            Attached::File(file) => file.clone(),
            Attached::Published { version, path } => versions.join(version).join(path),
        };
        let to = dir.join(name);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        match fs::hard_link(&from, &to) {
            Ok(()) => {}
            // Two files for one path: never let the second replace the first.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(PublishError::Render {
                    path: to.display().to_string(),
                    message: "two published files have this path".into(),
                });
            }
            // Another file system, or no hard links there: copy.
            Err(_) => {
                fs::copy(&from, &to).map_err(io(&from))?;
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
    use object_store::memory::InMemory;

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

    #[tokio::test]
    async fn publishing_switches_current_and_keeps_the_newest_versions() {
        let dir = tempfile::tempdir().unwrap();
        let p = Publisher::new(dir.path(), 1);
        assert_eq!(p.current_digest().await.unwrap(), None);
        assert_eq!(p.current_news().await.unwrap(), None);
        // What a publish killed mid-write leaves behind; the next publish clears it.
        let killed = dir.path().join("versions/.v0.partial");
        fs::create_dir_all(&killed).unwrap();
        fs::write(killed.join("digest.json"), "{").unwrap();
        for v in ["v1", "v2", "v3"] {
            p.publish(&digest(v)).await.unwrap();
            assert_eq!(p.current_digest().await.unwrap().unwrap().version, v);
            assert_eq!(
                p.current_news().await.unwrap().unwrap(),
                digest(v).news,
                "the news alone reads as the digest has it"
            );
            assert_eq!(
                fs::read_link(dir.path().join("current")).unwrap(),
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
        let pointer: CurrentPointer =
            serde_json::from_slice(&fs::read(dir.path().join("current.json")).unwrap()).unwrap();
        assert_eq!(pointer.version, "v3");
        assert_eq!(pointer.path, "versions/v3/");
        assert_eq!(pointer.digest, "versions/v3/digest.json");
        let root = fs::read_to_string(dir.path().join("index.html")).unwrap();
        assert!(root.contains("url=versions/v3/index.html"), "{root}");
        assert!(
            root.contains("<title>&lt;b&gt;City&lt;/b&gt;</title>"),
            "{root}"
        );
        let html = fs::read_to_string(dir.path().join("current/index.html")).unwrap();
        assert!(html.contains("&lt;b&gt;City&lt;&#x2f;b&gt;"), "{html}");
        assert!(dir.path().join("current/indicators.parquet").is_file());
    }

    #[tokio::test]
    async fn rollback_points_current_at_the_version_before() {
        let dir = tempfile::tempdir().unwrap();
        let p = Publisher::new(dir.path(), 5);
        assert!(p.rollback().await.is_err());
        for v in ["v1", "v2", "v3"] {
            p.publish(&digest(v)).await.unwrap();
        }
        assert_eq!(p.rollback().await.unwrap(), ("v3".into(), "v2".into()));
        assert_eq!(p.current_digest().await.unwrap().unwrap().version, "v2");
        assert_eq!(p.rollback().await.unwrap(), ("v2".into(), "v1".into()));
        let err = p.rollback().await.unwrap_err().to_string();
        assert!(
            err.contains("no kept version was current before v1"),
            "{err}"
        );
        assert_eq!(p.current_version().await.unwrap().as_deref(), Some("v1"));
        // Nothing was deleted, and the next publish goes on from here.
        assert_eq!(p.kept_versions().await.unwrap(), ["v1", "v2", "v3"]);
        p.publish(&digest("v4")).await.unwrap();
        assert_eq!(p.current_version().await.unwrap().as_deref(), Some("v4"));
        // Back from v4 goes to v1, the version current before it, never to the versions
        // rolled back from; and ids out of publish order do not matter.
        assert_eq!(p.rollback().await.unwrap(), ("v4".into(), "v1".into()));
        p.publish(&digest("v0-later")).await.unwrap();
        assert_eq!(
            p.rollback().await.unwrap(),
            ("v0-later".into(), "v1".into())
        );
    }

    #[tokio::test]
    async fn a_failed_write_leaves_current_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = Publisher::new(dir.path(), 5);
        p.publish(&digest("good")).await.unwrap();
        // A version id that cannot be a folder name fails before the switch.
        let bad = digest("bad/../../escape\0");
        assert!(p.publish(&bad).await.is_err());
        assert_eq!(p.current_digest().await.unwrap().unwrap().version, "good");
    }

    fn bucket() -> (Arc<dyn ObjectStore>, Publisher) {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let p = Publisher::remote(store.clone(), "s3://city/site", 1);
        (store, p)
    }

    async fn names(store: &Arc<dyn ObjectStore>, prefix: &str) -> Vec<String> {
        use futures::TryStreamExt as _;
        let mut names: Vec<String> = store
            .list(Some(&ObjectPath::from(prefix)))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        names.sort();
        names
    }

    async fn text(store: &Arc<dyn ObjectStore>, path: &str) -> String {
        let bytes = store
            .get(&ObjectPath::from(path))
            .await
            .unwrap()
            .bytes()
            .await;
        String::from_utf8(bytes.unwrap().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_bucket_gets_whole_versions_then_the_pointer_then_the_root_page() {
        let (store, p) = bucket();
        assert_eq!(p.current_digest().await.unwrap(), None);
        for v in ["v1", "v2", "v3"] {
            let at = p.publish(&digest(v)).await.unwrap();
            assert_eq!(at, format!("s3://city/site/versions/{v}"));
            assert_eq!(p.current_version().await.unwrap().as_deref(), Some(v));
            assert_eq!(p.current_digest().await.unwrap().unwrap().version, v);
            assert_eq!(p.current_news().await.unwrap().unwrap(), digest(v).news);
        }
        let pointer: CurrentPointer =
            serde_json::from_str(&text(&store, "current.json").await).unwrap();
        assert_eq!(
            pointer,
            CurrentPointer {
                version: "v3".into(),
                path: "versions/v3/".into(),
                digest: "versions/v3/digest.json".into(),
                generated_at: digest("v3").generated_at,
            }
        );
        assert!(
            text(&store, "index.html")
                .await
                .contains("url=versions/v3/index.html")
        );
        assert_eq!(
            text(&store, "versions/.history").await,
            "publish v1\npublish v2\npublish v3\n"
        );
        // keep = 1: the current version and one more.
        assert_eq!(p.kept_versions().await.unwrap(), ["v2", "v3"]);
        let files = names(&store, "versions/v3").await;
        for f in [
            "digest.json",
            "indicators.parquet",
            "indicators.csv",
            "index.html",
            "feed.atom",
            "news.json",
            "data.json",
            "digest.schema.json",
        ] {
            assert!(
                files.contains(&format!("versions/v3/{f}")),
                "{f} in {files:?}"
            );
        }
        // Served as what they are; a version's files never change, the pointer does.
        let meta = store
            .get(&ObjectPath::from("versions/v3/index.html"))
            .await
            .unwrap();
        assert_eq!(
            meta.attributes
                .get(&Attribute::ContentType)
                .map(|v| v.as_ref()),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(
            meta.attributes
                .get(&Attribute::CacheControl)
                .map(|v| v.as_ref()),
            Some(IMMUTABLE)
        );
        let meta = store.get(&ObjectPath::from("current.json")).await.unwrap();
        assert_eq!(
            meta.attributes
                .get(&Attribute::CacheControl)
                .map(|v| v.as_ref()),
            Some(CHANGING)
        );
        assert_eq!(p.rollback().await.unwrap(), ("v3".into(), "v2".into()));
        assert_eq!(p.current_digest().await.unwrap().unwrap().version, "v2");
        assert!(
            text(&store, "index.html")
                .await
                .contains("url=versions/v2/index.html")
        );
    }

    #[tokio::test]
    async fn a_version_cut_off_in_a_bucket_is_never_current_and_is_cleared_by_the_next_publish() {
        let (store, p) = bucket();
        p.publish(&digest("v1")).await.unwrap();
        // What a publish killed mid-upload leaves: files, but no digest.json.
        store
            .put(
                &ObjectPath::from("versions/v2/index.html"),
                PutPayload::from("<p>"),
            )
            .await
            .unwrap();
        assert_eq!(p.kept_versions().await.unwrap(), ["v1"]);
        assert_eq!(p.current_version().await.unwrap().as_deref(), Some("v1"));
        // A failed upload leaves the pointer alone too.
        let bad = digest("bad/../../escape");
        let err = p.publish(&bad).await.unwrap_err().to_string();
        assert!(err.contains("plain path"), "{err}");
        assert_eq!(p.current_version().await.unwrap().as_deref(), Some("v1"));
        p.publish(&digest("v3")).await.unwrap();
        assert!(names(&store, "versions/v2").await.is_empty());
        assert_eq!(p.kept_versions().await.unwrap(), ["v1", "v3"]);
    }

    #[tokio::test]
    async fn files_of_a_published_version_are_carried_over_in_the_bucket() {
        let (store, p) = bucket();
        let dir = tempfile::tempdir().unwrap();
        let snapshot = dir.path().join("t.parquet");
        fs::write(&snapshot, b"PAR1 rows PAR1").unwrap();
        let files = [("data/t.parquet".to_string(), Attached::File(snapshot))];
        let lock = p.lock().await.unwrap();
        p.publish_with(&lock, &digest("v1"), &files).await.unwrap();
        let carried = [(
            "data/t.parquet".to_string(),
            Attached::Published {
                version: "v1".into(),
                path: "data/t.parquet".into(),
            },
        )];
        p.publish_with(&lock, &digest("v2"), &carried)
            .await
            .unwrap();
        lock.release().await;
        assert_eq!(
            p.version_file("v2", "data/t.parquet")
                .await
                .unwrap()
                .unwrap(),
            b"PAR1 rows PAR1"
        );
        assert_eq!(
            text(&store, "versions/v1/data/t.parquet").await,
            "PAR1 rows PAR1"
        );
    }

    #[tokio::test]
    async fn the_bucket_lock_is_a_lease_renewed_while_held_that_lapses_when_not() {
        let (store, p) = bucket();
        let p = p.with_lease(Duration::from_secs(2));
        let lock = p.lock().await.unwrap();
        assert!(
            text(&store, ".lock")
                .await
                .contains(&format!("pid {}", std::process::id()))
        );
        // Held: a second publisher waits, and gives up after its wait (shorter than the
        // lease, so this holds however late the renewals are), saying who holds it.
        let waiting = p.clone().with_lock_wait(Duration::from_millis(500));
        let err = waiting.lock().await.err().unwrap().to_string();
        assert!(
            err.contains("another publisher holds the publish lock"),
            "{err}"
        );
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("s3://city/site/.lock"), "{err}");
        assert!(!lock.lost());
        lock.release().await;
        assert!(names(&store, ".lock").await.is_empty());

        // Left by a publisher that is gone (no longer renewed): taken over once the lease
        // has run out.
        let gone = p.lock().await.unwrap();
        if let Some(Held::Lease { renew, .. }) = &gone.held {
            renew.abort();
        }
        let lock = p
            .clone()
            .with_lock_wait(Duration::from_secs(30))
            .lock()
            .await
            .unwrap();
        lock.release().await;
        drop(gone);
    }
}
