//! Looking after a table's files and history: counting small files
//! ([`TableStore::file_stats`]), compacting them ([`TableStore::compact`]), and deleting the
//! data files that no version worth keeping needs ([`TableStore::vacuum`]).
//!
//! The Delta log itself is never cleaned up (see the table properties in
//! [`store`](crate::store)): every version stays listed, and every version from the one a
//! vacuum keeps onwards stays readable.

use crate::store::{
    HISTORY_PROPERTIES, TableError, TableStore, commit_properties, session, writer_properties,
};
use deltalake::kernel::transaction::CommitProperties;
use deltalake::logstore::object_store::ObjectStoreExt as _;
use deltalake::operations::optimize::OptimizeType;
use deltalake::operations::vacuum::{Clock, VacuumMode};
use deltalake::{DeltaTable, DeltaTableError, ObjectStoreError};
use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU64;
use std::sync::Arc;

/// How a table's data files look at its latest version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileStats {
    /// Data files in the table.
    pub files: u64,
    /// Data files smaller than the threshold asked about.
    pub small_files: u64,
    /// Bytes of all data files.
    pub bytes: u64,
}

/// What a compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactReport {
    /// The table's version before the compaction.
    pub version_before: u64,
    /// The version the compaction committed; `None` when there was nothing to compact.
    pub version_after: Option<u64>,
    /// Small files replaced.
    pub files_removed: u64,
    /// Files written in their place.
    pub files_added: u64,
}

/// What a vacuum deleted (or, for a dry run, would delete).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VacuumReport {
    /// The data files, relative to the table's folder.
    pub files_deleted: Vec<String>,
    /// Their size in bytes.
    pub bytes: u64,
}

/// A clock stopped at one instant: what "now" means to delta-rs's vacuum (see
/// [`TableStore::vacuum`]).
#[derive(Debug)]
struct StoppedClock(i64);

impl Clock for StoppedClock {
    fn current_timestamp_millis(&self) -> i64 {
        self.0
    }
}

impl TableStore {
    /// Count the table's data files, and those smaller than `small_below_bytes`.
    pub async fn file_stats(
        &self,
        table: &str,
        small_below_bytes: u64,
    ) -> Result<FileStats, TableError> {
        let handle = self.existing(table).await?;
        let snapshot = handle.snapshot().map_err(|e| self.err(table, e))?;
        let mut stats = FileStats::default();
        for file in snapshot.log_data() {
            let size = u64::try_from(file.size()).unwrap_or(0);
            stats.files += 1;
            stats.bytes += size;
            if size < small_below_bytes {
                stats.small_files += 1;
            }
        }
        Ok(stats)
    }

    /// Bin-pack the table's small files into files of about `target_file_bytes`, partition
    /// by partition, in one commit that changes no rows (delta-rs's OPTIMIZE). No commit when
    /// no partition has two files below the target.
    pub async fn compact(
        &self,
        table: &str,
        target_file_bytes: u64,
        run_id: &str,
    ) -> Result<CompactReport, TableError> {
        let handle = self.existing(table).await?;
        let version_before = handle.version().unwrap_or(0);
        let target = NonZeroU64::new(target_file_bytes).unwrap_or(NonZeroU64::MIN);
        let nothing = CompactReport {
            version_before,
            version_after: None,
            files_removed: 0,
            files_added: 0,
        };
        if !self.has_small_files_to_pack(table, &handle, target.get())? {
            return Ok(nothing);
        }
        // OPTIMIZE's commit takes log cleanup from the table properties only.
        let handle = self
            .keep_history(table, handle, commit_properties(run_id))
            .await?;
        let state = Arc::new(session().map_err(|e| self.err(table, e))?.state());
        let (compacted, metrics) = handle
            .optimize()
            .with_type(OptimizeType::Compact)
            .with_target_size(target)
            .with_writer_properties(writer_properties())
            .with_session_state(state)
            .with_commit_properties(commit_properties(run_id))
            .await
            .map_err(|e| self.err(table, e))?;
        if metrics.num_files_removed == 0 {
            return Ok(nothing);
        }
        Ok(CompactReport {
            version_before,
            version_after: compacted.version(),
            files_removed: metrics.num_files_removed,
            files_added: metrics.num_files_added,
        })
    }

    /// Whether some partition holds two or more files no larger than `target` (the files
    /// OPTIMIZE packs; a bin of one file is left alone).
    fn has_small_files_to_pack(
        &self,
        table: &str,
        handle: &DeltaTable,
        target: u64,
    ) -> Result<bool, TableError> {
        let snapshot = handle.snapshot().map_err(|e| self.err(table, e))?;
        let mut per_partition: BTreeMap<Vec<(String, Option<String>)>, u64> = BTreeMap::new();
        for file in snapshot.log_data() {
            if u64::try_from(file.size()).unwrap_or(0) > target {
                continue;
            }
            let mut partition: Vec<_> = file.partition_values_map().into_iter().collect();
            partition.sort();
            *per_partition.entry(partition).or_default() += 1;
        }
        Ok(per_partition.values().any(|n| *n >= 2))
    }

    /// Make sure the table carries [`HISTORY_PROPERTIES`], committing them when missing
    /// (tables created before goalpost set them lack them).
    async fn keep_history(
        &self,
        table: &str,
        handle: DeltaTable,
        commit: CommitProperties,
    ) -> Result<DeltaTable, TableError> {
        let snapshot = handle.snapshot().map_err(|e| self.err(table, e))?;
        let config = snapshot.metadata().configuration();
        let missing: HashMap<String, String> = HISTORY_PROPERTIES
            .iter()
            .filter(|(k, v)| config.get(*k).map(String::as_str) != Some(*v))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if missing.is_empty() {
            return Ok(handle);
        }
        handle
            .set_tbl_properties()
            .with_properties(missing)
            .with_commit_properties(commit)
            .await
            .map_err(|e| self.err(table, e))
    }

    /// Delete the data files that only versions before `keep_from_version` need. Versions
    /// from `keep_from_version` on stay readable; older ones stay listed in the log but their
    /// removed files are gone. A dry run deletes nothing and reports what a real run would
    /// delete. No commit either way: the table's versions do not change.
    ///
    /// delta-rs plans the deletion (its "full" vacuum: files the log records as removed, and
    /// files in the folder no version lists, such as those of a write that crashed or
    /// aborted before its commit; the latter only when their modification time is before
    /// the cut-off below, so the files of a write in progress, newer than every commit, are
    /// never touched). It deletes a removed file when
    /// the removal is older than a retention period, and refuses periods below a safety
    /// minimum. Here "now" is the commit time of `keep_from_version` plus one millisecond and
    /// the retention is zero (the minimum switched off), so a file qualifies when it was
    /// removed at or before that commit: no version from `keep_from_version` on can still
    /// need it, since a removal is stamped before its commit is written. This is safe because
    /// the time only selects candidates: every file that any version from
    /// `keep_from_version` to the latest lists is passed to delta-rs as a file to keep
    /// (`with_keep_versions`), which never plans to delete one, even if two commits share a
    /// millisecond or the clock stepped back. The minimum exists to protect readers of old
    /// versions and writers in flight; the first are exactly the versions named here, and a
    /// table has one writer (its pipeline's run), which is not running while its maintenance
    /// is; a file a later commit removes was never a candidate.
    ///
    /// The files are deleted here rather than by delta-rs: removals stay in the log (they are
    /// kept for ten years, see `HISTORY_PROPERTIES`), so delta-rs would list the files of
    /// every earlier vacuum again, report them as deleted once more, and write two commits
    /// (VACUUM START and END) each time. Only files still present are deleted and reported.
    pub async fn vacuum(
        &self,
        table: &str,
        keep_from_version: u64,
        dry_run: bool,
    ) -> Result<VacuumReport, TableError> {
        let handle = self.existing(table).await?;
        let latest = handle.version().unwrap_or(0);
        if keep_from_version > latest {
            return Err(TableError::NoSuchVersion {
                table: table.to_string(),
                version: keep_from_version,
                latest,
            });
        }
        let info = self.commit_info(table, &handle, keep_from_version).await?;
        let committed_at = info
            .get("timestamp")
            .and_then(serde_json::Value::as_i64)
            .ok_or_else(|| TableError::Log {
                table: table.to_string(),
                path: self.path(table).join("_delta_log").to_string(),
                version: keep_from_version,
                detail: "its commitInfo has no timestamp".into(),
            })?;
        let keep: Vec<u64> = (keep_from_version..=latest).collect();
        let store = handle.object_store();
        let (_, plan) = handle
            .vacuum()
            .with_mode(VacuumMode::Full)
            .with_retention_period(chrono::Duration::zero())
            .with_enforce_retention_duration(false)
            .with_clock(Arc::new(StoppedClock(committed_at.saturating_add(1))))
            .with_keep_versions(&keep)
            .with_dry_run(true)
            .await
            .map_err(|e| self.err(table, e))?;

        let mut files = plan.files_deleted;
        files.sort();
        let mut report = VacuumReport::default();
        for file in files {
            let path = deltalake::Path::parse(&file)
                .map_err(|e| self.err(table, DeltaTableError::from(e)))?;
            let size = match store.head(&path).await {
                Ok(meta) => meta.size,
                Err(ObjectStoreError::NotFound { .. }) => continue,
                Err(e) => return Err(self.err(table, e.into())),
            };
            if !dry_run {
                match store.delete(&path).await {
                    Ok(()) | Err(ObjectStoreError::NotFound { .. }) => {}
                    Err(e) => return Err(self.err(table, e.into())),
                }
            }
            report.files_deleted.push(file);
            report.bytes += size;
        }
        Ok(report)
    }
}
