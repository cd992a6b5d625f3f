//! The data behind a digest: each table, at the version its figures come from, published as
//! `data/<table>.parquet` beside the digest.
//!
//! A version is written out once, into `snapshots/<table>/v<version>.parquet` in the work
//! folder, and every published version that needs it links to (or, in a bucket, uploads) that
//! file. Snapshots no kept digest names are
//! removed.

use crate::RunError;
use goalpost_publish::{Attached, Digest, Publisher};
use goalpost_spec::Pipeline;
use goalpost_table::TableStore;
use std::path::{Path, PathBuf};

/// Write what is missing of the snapshots `digest` needs and name them in it. Returns the
/// files to publish. `own`'s table is published unless its `[table] publish = false`; another
/// pipeline's as it was (only when its part offered it). A snapshot of `own`'s table that
/// cannot be written fails the run; one of another pipeline's only warns and is left out.
/// A snapshot that `carry` (the current digest) already published at the same table version
/// is taken from there instead.
pub(crate) async fn attach(
    store: &TableStore,
    dir: &Path,
    digest: &mut Digest,
    own: &Pipeline,
    carry: Option<&Digest>,
    publisher: &Publisher,
) -> Result<Vec<(String, Attached)>, RunError> {
    let mut files = Vec::new();
    for part in &mut digest.pipelines {
        let wanted = if part.id == own.id {
            own.spec.table.publish
        } else {
            part.table.download.is_some()
        };
        part.table.download = None;
        if !wanted {
            continue;
        }
        // Held before any run passed its checks: no figures, so no data behind them.
        if part
            .held
            .as_ref()
            .is_some_and(|h| h.last_good_run.is_none())
        {
            continue;
        }
        let name = part.table.name.clone();
        let published = format!("data/{name}.parquet");
        if let Some(current) = carry
            && current.pipelines.iter().any(|p| {
                p.table.name == name
                    && p.table.version == part.table.version
                    && p.table.download.as_deref() == Some(published.as_str())
            })
            && publisher.version_has(&current.version, &published).await?
        {
            tracing::debug!(table = %name, from = %current.version, "snapshot carried over");
            part.table.download = Some(published.clone());
            let from = Attached::Published {
                version: current.version.clone(),
                path: published.clone(),
            };
            files.push((published, from));
            continue;
        }
        let path = cache_path(dir, &name, part.table.version);
        if !path.is_file() {
            let mine = part.id == own.id;
            let order = if mine {
                own.spec.table.key_columns()
            } else {
                Vec::new()
            };
            match write(store, &name, part.table.version, &order, &path).await {
                Ok(()) => {}
                Err(e) if mine => return Err(e.into()),
                Err(e) => {
                    tracing::warn!(table = %name, error = %e, "could not write the table's snapshot; it is not published");
                    continue;
                }
            }
        }
        part.table.download = Some(published.clone());
        files.push((published, Attached::File(path)));
    }
    Ok(files)
}

/// Write the snapshot of `pipeline`'s table at `version` unless it is there already.
pub(crate) async fn prepare(
    store: &TableStore,
    dir: &Path,
    pipeline: &Pipeline,
    version: u64,
) -> Result<(), RunError> {
    let name = pipeline.spec.table.name.get_ref();
    let path = cache_path(dir, name, version);
    if !path.is_file() {
        let order = pipeline.spec.table.key_columns();
        write(store, name, version, &order, &path).await?;
    }
    Ok(())
}

async fn write(
    store: &TableStore,
    name: &str,
    version: u64,
    order: &[String],
    path: &Path,
) -> Result<(), goalpost_table::TableError> {
    let table = store.open_version(name, version).await?;
    let rows = goalpost_table::write_snapshot(name, &table, order, path).await?;
    tracing::info!(table = %name, version, rows, "wrote the table's snapshot");
    Ok(())
}

/// Remove snapshots no kept published version links to (their digests name the table
/// versions). Failures only warn.
pub(crate) fn prune(dir: &Path, kept: &[Digest]) {
    let Ok(tables) = std::fs::read_dir(dir) else {
        return;
    };
    for table in tables.filter_map(|e| e.ok()) {
        let name = table.file_name().to_string_lossy().into_owned();
        let Ok(files) = std::fs::read_dir(table.path()) else {
            continue;
        };
        for file in files.filter_map(|e| e.ok()) {
            let path = file.path();
            // Being written by a run that has not taken the publish lock yet.
            if path.extension().is_some_and(|e| e == "partial") {
                continue;
            }
            let needed = kept.iter().flat_map(|d| &d.pipelines).any(|p| {
                p.table.name == name
                    && p.table.download.is_some()
                    && cache_path(dir, &name, p.table.version) == path
            });
            if !needed && let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "could not remove an old snapshot");
            }
        }
    }
}

fn cache_path(dir: &Path, table: &str, version: u64) -> PathBuf {
    dir.join(table).join(format!("v{version}.parquet"))
}
