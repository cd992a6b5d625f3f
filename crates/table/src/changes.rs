//! Which fetched rows a refresh must merge: those the table does not already hold.
//!
//! A refresh reads an overlap window again, and a daily feed brings back old records with new
//! ones, so most fetched rows are often versions the table has. With an `updated` column the
//! stored stamps tell, and they are two narrow columns: [`stale_rows`] reads only the key and
//! the `updated` column of the stored rows in the partitions the fetched rows fall in (and in
//! their key range), and finds the fetched rows whose stamp is not newer than the stored
//! one's. The merge then reads and rewrites only the files a real change falls in, instead of
//! every file a fetched row falls in.

use crate::dedupe::deleted_flags;
use crate::layout::Layout;
use crate::store::{TableError, TableStore, quote, session_with_partitions};
use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema, UInt32Type};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use deltalake::datafusion::common::{DataFusionError, ScalarValue};
use deltalake::datafusion::functions_aggregate::min_max::{MaxAccumulator, MinAccumulator};
use deltalake::datafusion::logical_expr::Accumulator;
use deltalake::datafusion::prelude::{Expr, ident, lit};
use deltalake::{DeltaTable, DeltaTableError};
use std::collections::HashSet;
use std::sync::Arc;

/// The fetched rows' keys, partition, stamp and position while they are compared.
const SOURCE_TABLE: &str = "__goalpost_fetched";
/// The stored rows the fetched ones can match.
const STORED_TABLE: &str = "__goalpost_stored";
/// A fetched row's position in its batch.
const ROW_COLUMN: &str = "__goalpost_row";

/// What the stored rows say about each fetched row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Compared {
    /// Rows the table holds at the same or a newer version (by `updated`): merging them would
    /// change nothing.
    pub stale: BooleanArray,
    /// Rows the merge will add: neither stale nor matched by a stored row in their partition,
    /// nor marking a deletion.
    pub added: BooleanArray,
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
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let ctx = session_with_partitions(cores)?;
        handle.update_datafusion_session(&ctx.state())?;
        let provider = handle.table_provider().await?;
        let mut stored = ctx.read_table(provider)?.select_columns(&names)?;
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

/// [`Compared`] from the comparison's rows: (fetched row, stale).
fn stamps_compared(
    batch: &RecordBatch,
    layout: &Layout,
    found: &[RecordBatch],
) -> Result<Compared, TableError> {
    let rows = batch.num_rows();
    let mut stale = vec![false; rows];
    let mut matched = vec![false; rows];
    for b in found {
        let row = b.column(0).as_primitive_opt::<UInt32Type>();
        let old = b.column(1).as_boolean_opt();
        let (Some(row), Some(old)) = (row, old) else {
            return Err(TableError::Arrow {
                context: "comparing the fetched rows' stamps with the stored ones",
                source: ArrowError::SchemaError(format!(
                    "the comparison gave columns of types {} and {}",
                    b.column(0).data_type(),
                    b.column(1).data_type()
                )),
            });
        };
        for i in 0..b.num_rows() {
            let r = row.value(i) as usize;
            matched[r] = true;
            stale[r] = old.is_valid(i) && old.value(i);
        }
    }
    let deleted = deleted_flags(batch, layout)?;
    let deleted = |r: usize| deleted.as_ref().is_some_and(|d| d.value(r));
    Ok(Compared {
        stale: (0..rows).map(|r| Some(stale[r] && !deleted(r))).collect(),
        added: (0..rows)
            .map(|r| Some(!matched[r] && !deleted(r)))
            .collect(),
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
        let mut listed = Vec::new();
        let mut null = false;
        for i in 0..values.len() {
            let v = ScalarValue::try_from_array(values, i)?;
            if v.is_null() {
                null = true;
            } else if seen.insert(v.clone()) {
                listed.push(lit(v));
            }
        }
        let mut e = if listed.is_empty() {
            lit(false)
        } else {
            ident(p).in_list(listed, false)
        };
        if null {
            e = e.or(ident(p).is_null());
        }
        filters.push(e);
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
/// The join is the merge's (see `merge_predicate` in `store.rs`): keys equal, partition not
/// distinct.
fn compare_sql(layout: &Layout, updated: &str) -> String {
    let mut on: Vec<String> = layout
        .key
        .iter()
        .map(|k| format!("t.{k} = s.{k}", k = quote(k)))
        .collect();
    if let Some(p) = &layout.partition
        && !layout.key.contains(p)
    {
        on.push(format!("t.{p} IS NOT DISTINCT FROM s.{p}", p = quote(p)));
    }
    let u = quote(updated);
    format!(
        "SELECT s.{row}, bool_and(t.{u} IS NOT NULL AND (s.{u} IS NULL OR s.{u} <= t.{u})) \
         FROM {SOURCE_TABLE} s JOIN {STORED_TABLE} t ON {on} GROUP BY s.{row}",
        row = quote(ROW_COLUMN),
        on = on.join(" AND "),
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
            "SELECT s.\"__goalpost_row\", bool_and(t.\"at\" IS NOT NULL AND (s.\"at\" IS NULL \
             OR s.\"at\" <= t.\"at\")) FROM __goalpost_fetched s JOIN __goalpost_stored t ON \
             t.\"id\" = s.\"id\" AND t.\"m\" IS NOT DISTINCT FROM s.\"m\" GROUP BY \
             s.\"__goalpost_row\""
        );
    }
}
