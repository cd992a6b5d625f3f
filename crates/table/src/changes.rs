//! Which fetched rows a refresh must merge: those the table does not already hold.
//!
//! A refresh reads an overlap window again, and a daily feed brings back old records with new
//! ones, so most fetched rows are often versions the table has. With an `updated` column the
//! stored stamps tell, and they are two narrow columns: [`stale_rows`] reads only the key and
//! the `updated` column of the stored rows in the partitions the fetched rows fall in (and in
//! their key range), and finds the fetched rows whose stamp is not newer than the stored
//! one's. The merge then reads and rewrites only the files a real change falls in, instead of
//! every file a fetched row falls in.

use crate::dedupe::{conform, deleted_flags, one_of, row_converter};
use crate::layout::Layout;
use crate::store::{
    BatchResult, TableError, TableStore, TableWrite, commit_properties_with, cores,
    merge_predicate, quote, session, session_with_partitions,
};
use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, UInt32Array};
use arrow::datatypes::SchemaRef;
use arrow::datatypes::{DataType, Field, Schema, UInt32Type};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use arrow::row::Row;
use deltalake::datafusion::common::{DataFusionError, ScalarValue};
use deltalake::datafusion::functions_aggregate::min_max::{MaxAccumulator, MinAccumulator};
use deltalake::datafusion::logical_expr::Accumulator;
use deltalake::datafusion::prelude::{Expr, ident, lit};
use deltalake::kernel::Action;
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::protocol::{DeltaOperation, MergePredicate};
use deltalake::{DeltaTable, DeltaTableError};
use futures::TryStreamExt as _;
use percent_encoding::percent_decode_str;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use tokio::sync::mpsc;

/// The fetched rows' keys, partition, stamp and position while they are compared.
const SOURCE_TABLE: &str = "__goalpost_fetched";
/// The stored rows the fetched ones can match.
const STORED_TABLE: &str = "__goalpost_stored";
/// A fetched row's position in its batch.
const ROW_COLUMN: &str = "__goalpost_row";

/// The data file of each stored row, as the scan names it.
const FILE_COLUMN: &str = "__goalpost_file";

/// What the stored rows say about each fetched row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Compared {
    /// Rows the table holds at the same or a newer version (by `updated`): merging them would
    /// change nothing.
    pub stale: BooleanArray,
    /// Rows the merge will add: neither stale nor matched by a stored row in their partition,
    /// nor marking a deletion.
    pub added: BooleanArray,
    /// Rows that replace a stored row: not stale and matched.
    pub replacing: BooleanArray,
    /// The data files (as the scan names them) that hold a row a fetched row replaces.
    pub files: BTreeSet<String>,
    /// Every stored row a replacing row matches has a stamp, older than the row's: each of
    /// them differs from the row (their stamps do) and is replaced whole, so the merge can
    /// rewrite [`files`](Self::files) without looking at the other columns.
    pub all_older: bool,
}

impl TableStore {
    /// Compare `batch` (one row per key) with the stored rows of `table`, by `layout.key` within
    /// the partition, as the merge matches them. A row is stale when a stored row matches it and
    /// every stored row that matches it has a stamp, one at least as new as the row's: the same
    /// version of the record or a newer one. (So a row without a stamp is stale when every match
    /// has one: the merge never lets it replace a stamped row.) Rows that mark a deletion are never
    /// stale (a deletion is matched in every partition, and applied whatever the stamps).
    ///
    /// `None` when the layout has no `updated` column: then only whole rows tell, and the merge
    /// compares them itself.
    pub(crate) async fn stale_rows(
        &self,
        table: &str,
        handle: &DeltaTable,
        batch: &RecordBatch,
        layout: &Layout,
    ) -> Result<Option<Compared>, TableError> {
        let Some(updated) = &layout.updated else {
            return Ok(None);
        };
        if layout.key.is_empty() || batch.num_rows() == 0 {
            return Ok(None);
        }
        let found = self
            .compare(handle, batch, layout, updated)
            .await
            .map_err(|e| self.err(table, e))?;
        stamps_compared(batch, layout, &found).map(Some)
    }

    async fn compare(
        &self,
        handle: &DeltaTable,
        batch: &RecordBatch,
        layout: &Layout,
        updated: &str,
    ) -> Result<Vec<RecordBatch>, DeltaTableError> {
        let mut names: Vec<&str> = layout.key.iter().map(String::as_str).collect();
        if let Some(p) = &layout.partition
            && !names.contains(&p.as_str())
        {
            names.push(p);
        }
        if !names.contains(&updated) {
            names.push(updated);
        }
        let mut stored_names = names.clone();
        stored_names.push(FILE_COLUMN);
        let mut fields = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for name in &names {
            let c = batch.column_by_name(name).ok_or_else(|| {
                DeltaTableError::Generic(format!("the fetched rows have no column \"{name}\""))
            })?;
            fields.push(Field::new(*name, c.data_type().clone(), true));
            columns.push(c.clone());
        }
        fields.push(Field::new(ROW_COLUMN, DataType::UInt32, false));
        columns.push(Arc::new(UInt32Array::from_iter_values(
            0..batch.num_rows() as u32,
        )));
        let source = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;

        // Which rows match does not depend on the order they are read in: use every core.
        let ctx = session_with_partitions(cores())?;
        handle.update_datafusion_session(&ctx.state())?;
        let provider = handle
            .table_provider()
            .with_file_column(FILE_COLUMN)
            .await?;
        let mut stored = ctx.read_table(provider)?.select_columns(&stored_names)?;
        for filter in narrowing(&source, layout)? {
            stored = stored.filter(filter)?;
        }
        ctx.register_table(STORED_TABLE, stored.into_view())?;
        ctx.register_batch(SOURCE_TABLE, source)?;
        Ok(ctx
            .sql(&compare_sql(layout, updated))
            .await?
            .collect()
            .await?)
    }
}

impl TableStore {
    /// Merge by rewriting: `files` (as the comparison names them) are written again without the stored
    /// rows that `fresh`'s `replacing` rows replace (same key, same partition), and `fresh` (the
    /// replacing rows and the rows to add) goes into new files, all in one commit. This is
    /// the merge delta-rs would do for these rows once [`Compared::all_older`] holds and no
    /// row marks a deletion, without its scan of every file the fetched rows could match:
    /// only the files a replaced row is in are read. `None` when a file named is not among
    /// the table's (the caller then merges the usual way).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn merge_by_rewrite(
        &self,
        table: &str,
        handle: &DeltaTable,
        schema: &SchemaRef,
        fresh: RecordBatch,
        replacing: &BooleanArray,
        files: &BTreeSet<String>,
        layout: &Layout,
        run_id: &str,
    ) -> Result<Option<TableWrite>, TableError> {
        let err = |e: DeltaTableError| self.err(table, e);
        let snapshot = handle.snapshot().map_err(err)?;
        // The scan names a file by its URL: the table's URL joined with the path the log
        // holds, encoded once more. Decoded once, it ends with the path as the log's file
        // list gives it (partition values still escaped as in the folder name).
        let named: Vec<String> = files
            .iter()
            .map(|f| percent_decode_str(f).decode_utf8_lossy().to_string())
            .collect();
        let mut removes = Vec::new();
        let mut found = BTreeSet::new();
        for file in snapshot.log_data() {
            let path = file.path();
            let tail = format!("/{path}");
            let hits: Vec<usize> = (0..named.len())
                .filter(|i| named[*i].ends_with(&tail) || named[*i] == path.as_ref())
                .collect();
            if let [i] = hits[..]
                && found.insert(i)
            {
                removes.push(Action::Remove(file.remove_action(true)));
            }
        }
        if found.len() != named.len() {
            tracing::debug!(
                table,
                named = named.len(),
                found = found.len(),
                "the files to rewrite are not all in the table; merging instead"
            );
            return Ok(None);
        }

        // What identifies a replaced row: its key and partition.
        let mut identity = layout.key.clone();
        if let Some(p) = &layout.partition
            && !identity.contains(p)
        {
            identity.push(p.clone());
        }
        let replacing = arrow::compute::filter_record_batch(&fresh, replacing)
            .map_err(TableError::arrow("finding the replacing rows"))?;
        let converter = row_converter(
            identity
                .iter()
                .map(|c| {
                    Ok(schema
                        .field_with_name(c)
                        .map_err(TableError::arrow("the key columns"))?
                        .data_type()
                        .clone())
                })
                .collect::<Result<Vec<_>, TableError>>()?,
        )?;
        // Both sides are typed as `schema` says, so one encoding compares them.
        let identities = |batch: &RecordBatch| {
            let columns: Vec<ArrayRef> = identity
                .iter()
                .map(|c| {
                    batch
                        .column_by_name(c)
                        .cloned()
                        .expect("typed as the table")
                })
                .collect();
            converter
                .convert_columns(&columns)
                .map_err(TableError::arrow("encoding the keys"))
        };
        let replaced_rows = identities(&replacing)?;
        let replaced: HashSet<Row<'_>> = replaced_rows.iter().collect();

        let ctx = session().map_err(err)?;
        handle
            .update_datafusion_session(&ctx.state())
            .map_err(err)?;
        let mut stream = if files.is_empty() {
            // Only rows to add: nothing to read.
            None
        } else {
            let provider = handle
                .table_provider()
                .with_file_paths(files.iter().cloned())
                .await
                .map_err(|e| err(e.into()))?;
            Some(
                ctx.read_table(provider)
                    .map_err(|e| err(e.into()))?
                    .execute_stream()
                    .await
                    .map_err(|e| err(e.into()))?,
            )
        };

        let (tx, rx) = mpsc::channel::<BatchResult>(4);
        let writer = self.write_files(table, handle, schema, rx, layout);
        let mut copied = 0u64;
        let producer = async {
            let mut read = async || -> Result<(), TableError> {
                while let Some(stream) = stream.as_mut()
                    && let Some(batch) = stream.try_next().await.map_err(|e| err(e.into()))?
                {
                    let batch = conform(&batch, schema)?;
                    let keep: BooleanArray = identities(&batch)?
                        .iter()
                        .map(|r| Some(!replaced.contains(&r)))
                        .collect();
                    let kept = arrow::compute::filter_record_batch(&batch, &keep)
                        .map_err(TableError::arrow("leaving out the replaced rows"))?;
                    copied += kept.num_rows() as u64;
                    if kept.num_rows() > 0 && tx.send(Ok(kept)).await.is_err() {
                        // The writer stopped; its error is the one to report.
                        return Ok(());
                    }
                }
                let _ = tx.send(Ok(fresh.clone())).await;
                Ok(())
            };
            let result = read().await;
            if let Err(e) = &result {
                let _ = tx.send(Err(e.to_string())).await;
            }
            drop(tx);
            result
        };
        let (read, written) = tokio::join!(producer, writer);
        let (adds, rows) = written?;
        read?;
        goalpost_spec::pause_point("table-write");

        let updated = replacing.num_rows() as u64;
        let inserted = fresh.num_rows() as u64 - updated;
        let files_added = adds.len() as u64;
        let files_rewritten = removes.len() as u64;
        let mut actions = removes;
        actions.extend(adds.into_iter().map(Action::Add));
        let properties = commit_properties_with(
            run_id,
            [(
                "operationMetrics".to_string(),
                serde_json::json!({
                    "num_source_rows": fresh.num_rows(),
                    "num_target_rows_inserted": inserted,
                    "num_target_rows_updated": updated,
                    "num_target_rows_copied": copied,
                    "num_output_rows": rows,
                    "num_target_files_scanned": files_rewritten,
                    "num_target_files_removed": files_rewritten,
                    "num_target_files_added": files_added,
                }),
            )],
        );
        let operation = DeltaOperation::Merge {
            predicate: None,
            merge_predicate: Some(merge_predicate(layout, true)),
            matched_predicates: vec![MergePredicate {
                action_type: "update".to_string(),
                predicate: layout
                    .updated
                    .as_ref()
                    .map(|u| format!("target.{u} < source.{u}", u = quote(u))),
            }],
            not_matched_predicates: vec![MergePredicate {
                action_type: "insert".to_string(),
                predicate: None,
            }],
            not_matched_by_source_predicates: Vec::new(),
        };
        let committed = CommitBuilder::from(properties)
            .with_actions(actions)
            .build(Some(snapshot), handle.log_store(), operation)
            .await
            .map_err(err)?;
        Ok(Some(TableWrite {
            version: committed.version as u64,
            rows: inserted + updated,
            inserted,
            updated,
            deleted: 0,
            files_scanned: files_rewritten,
            files_rewritten,
            files_added,
        }))
    }
}

/// [`Compared`] from the comparison's rows: one per stored match of a fetched row (its
/// position, whether the match is as new or newer, whether it is older, its file).
fn stamps_compared(
    batch: &RecordBatch,
    layout: &Layout,
    found: &[RecordBatch],
) -> Result<Compared, TableError> {
    let rows = batch.num_rows();
    // Per fetched row: matched, every match as new or newer.
    let mut matched = vec![false; rows];
    let mut stale = vec![true; rows];
    // Per match: the fetched row, whether the stored row is older, and where its file is
    // named (a batch of `file_names`, a row in it): only the files of rows that are not
    // stale are wanted, and those are few.
    let mut matches: Vec<(usize, bool, usize, usize)> = Vec::new();
    let mut file_names: Vec<ArrayRef> = Vec::with_capacity(found.len());
    for b in found {
        let wrong = || TableError::Arrow {
            context: "comparing the fetched rows' stamps with the stored ones",
            source: ArrowError::SchemaError(format!(
                "the comparison gave columns of types {:?}",
                b.columns()
                    .iter()
                    .map(|c| c.data_type())
                    .collect::<Vec<_>>()
            )),
        };
        let row = b
            .column(0)
            .as_primitive_opt::<UInt32Type>()
            .ok_or_else(wrong)?;
        let (Some(newer_kept), Some(older)) =
            (b.column(1).as_boolean_opt(), b.column(2).as_boolean_opt())
        else {
            return Err(wrong());
        };
        for i in 0..b.num_rows() {
            let r = row.value(i) as usize;
            matched[r] = true;
            stale[r] &= newer_kept.is_valid(i) && newer_kept.value(i);
            let older = older.is_valid(i) && older.value(i);
            matches.push((r, older, file_names.len(), i));
        }
        file_names.push(
            arrow::compute::cast(b.column(3), &DataType::Utf8)
                .map_err(TableError::arrow("reading the stored rows' files"))?,
        );
    }
    let deleted = deleted_flags(batch, layout)?;
    let deleted = |r: usize| deleted.as_ref().is_some_and(|d| d.value(r));
    let stale: Vec<bool> = (0..rows)
        .map(|r| matched[r] && stale[r] && !deleted(r))
        .collect();
    let mut files = BTreeSet::new();
    let mut all_older = true;
    for (r, older, batch, i) in matches {
        if !stale[r] {
            all_older &= older;
            files.insert(file_names[batch].as_string::<i32>().value(i).to_string());
        }
    }
    Ok(Compared {
        added: (0..rows)
            .map(|r| Some(!matched[r] && !deleted(r)))
            .collect(),
        replacing: (0..rows).map(|r| Some(matched[r] && !stale[r])).collect(),
        stale: stale.into_iter().map(Some).collect(),
        files,
        all_older,
    })
}

/// Filters that leave out stored files no fetched row can match: the fetched rows'
/// partitions (files are split by them), and each key column's range (files say theirs in
/// their statistics).
fn narrowing(source: &RecordBatch, layout: &Layout) -> Result<Vec<Expr>, DataFusionError> {
    let mut filters = Vec::new();
    if let Some(p) = &layout.partition
        && !layout.key.contains(p)
    {
        let values = source
            .column_by_name(p)
            .expect("the partition was gathered");
        let mut seen = HashSet::new();
        let mut distinct = Vec::new();
        for i in 0..values.len() {
            let v = ScalarValue::try_from_array(values, i)?;
            if seen.insert(v.clone()) {
                distinct.push(v);
            }
        }
        filters.push(one_of(p, &distinct));
    }
    for k in &layout.key {
        let values = source.column_by_name(k).expect("the key was gathered");
        let mut lo = MinAccumulator::try_new(values.data_type())?;
        let mut hi = MaxAccumulator::try_new(values.data_type())?;
        lo.update_batch(std::slice::from_ref(values))?;
        hi.update_batch(std::slice::from_ref(values))?;
        let (lo, hi) = (lo.evaluate()?, hi.evaluate()?);
        // Keys are matched with `=`: a NULL key matches nothing.
        filters.push(if lo.is_null() || hi.is_null() {
            lit(false)
        } else {
            ident(k).gt_eq(lit(lo)).and(ident(k).lt_eq(lit(hi)))
        });
    }
    Ok(filters)
}

/// Per fetched row with a match: its position, and whether every match is as new or newer.
/// The join is the merge's own ([`merge_predicate`]): keys equal, partition not distinct.
fn compare_sql(layout: &Layout, updated: &str) -> String {
    let u = quote(updated);
    format!(
        "SELECT source.{row}, target.{u} IS NOT NULL AND (source.{u} IS NULL OR source.{u} <= target.{u}), \
         target.{u} IS NOT NULL AND source.{u} > target.{u}, target.{file} \
         FROM {SOURCE_TABLE} source JOIN {STORED_TABLE} target ON {on}",
        row = quote(ROW_COLUMN),
        file = quote(FILE_COLUMN),
        on = merge_predicate(layout, true),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_comparison_joins_as_the_merge_does() {
        let layout = Layout {
            key: vec!["id".into()],
            partition: Some("m".into()),
            updated: Some("at".into()),
            deletes: None,
        };
        assert_eq!(
            compare_sql(&layout, "at"),
            "SELECT source.\"__goalpost_row\", target.\"at\" IS NOT NULL AND \
             (source.\"at\" IS NULL OR source.\"at\" <= target.\"at\"), target.\"at\" IS NOT \
             NULL AND source.\"at\" > target.\"at\", target.\"__goalpost_file\" FROM \
             __goalpost_fetched source JOIN __goalpost_stored target ON \
             target.\"id\" = source.\"id\" AND target.\"m\" IS NOT DISTINCT FROM source.\"m\""
        );
    }
}
