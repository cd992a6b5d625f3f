//! One row per key, in rows at hand ([`newest_per_key`]) and in a stored table
//! ([`TableStore::dedupe`]), and leaving out the rows that mark a deleted record
//! ([`drop_deleted`]).
//!
//! Keys are compared as Arrow's row format encodes them: by type and value, so `1` and
//! `"1"` differ, NULL differs from the empty string, and a separator inside a text key
//! cannot make two composite keys collide. The same encoding orders the `updated` column,
//! with NULL below every value.

use crate::layout::Layout;
use crate::store::{
    TableError, TableStore, TableWrite, commit_properties, deleted_sql, quote, quote_text, session,
    writer_properties,
};
use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, UInt64Array};
use arrow::compute::{SortOptions, cast, concat_batches, filter_record_batch, take_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{Row, RowConverter, Rows, SortField};
use deltalake::datafusion::common::{DataFusionError, ScalarValue};
use deltalake::datafusion::prelude::{Expr, SessionContext, ident, lit};
use deltalake::protocol::SaveMode;
use futures::TryStreamExt;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The synthetic column holding each row's data file while a table is deduplicated.
const FILE_COLUMN: &str = "__goalpost_file";
/// The partitions each duplicated key lives in.
const PARTS_COLUMN: &str = "__goalpost_parts";
/// The keys a restricted dedupe looks at.
const WITHIN_TABLE: &str = "__goalpost_within";

/// One row per key of `layout.key`: with `layout.updated`, the row with the greatest updated
/// value (NULL loses to any value; on a tie the later row wins); without it, the last row.
/// The rows kept stay in the order they came. `None` when there are no rows; every row when
/// the layout has no key.
pub fn newest_per_key(
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
    layout: &Layout,
) -> Result<Option<RecordBatch>, TableError> {
    let all = concat_batches(schema, &batches)
        .map_err(TableError::arrow("gathering the rows to deduplicate"))?;
    if all.num_rows() == 0 {
        return Ok(None);
    }
    if layout.key.is_empty() {
        return Ok(Some(all));
    }
    let keep = newest_rows(&all, layout)?;
    take_record_batch(&all, &keep)
        .map(Some)
        .map_err(TableError::arrow("picking the newest row per key"))
}

/// `batch` without the rows that mark a deleted record (a full load stores only live
/// records). The batch itself when the layout declares no deletes.
pub fn drop_deleted(batch: RecordBatch, layout: &Layout) -> Result<RecordBatch, TableError> {
    match deleted_flags(&batch, layout)? {
        None => Ok(batch),
        Some(deleted) => {
            let live = arrow::compute::not(&deleted)
                .map_err(TableError::arrow("leaving out deleted records"))?;
            filter_record_batch(&batch, &live)
                .map_err(TableError::arrow("leaving out deleted records"))
        }
    }
}

/// For each row, whether it marks a deleted record: the `deletes` column's value, cast to
/// text as SQL's `CAST(… AS VARCHAR)` does, is one of the declared values. NULL marks
/// nothing. `None` when the layout declares no deletes.
pub(crate) fn deleted_flags(
    batch: &RecordBatch,
    layout: &Layout,
) -> Result<Option<BooleanArray>, TableError> {
    let Some((name, values)) = &layout.deletes else {
        return Ok(None);
    };
    let text = cast(&column(batch, name, "deletes")?, &DataType::Utf8)
        .map_err(TableError::arrow("reading the deletes column as text"))?;
    let flags = text
        .as_string::<i32>()
        .iter()
        .map(|v| Some(v.is_some_and(|v| values.iter().any(|d| d == v))))
        .collect();
    Ok(Some(flags))
}

/// Indices, ascending, of the newest row of each key in `batch` (see [`newest_per_key`]).
fn newest_rows(batch: &RecordBatch, layout: &Layout) -> Result<UInt64Array, TableError> {
    let keys = rows_of(batch, &layout.key, "key")?;
    let updated = match &layout.updated {
        Some(c) => Some(rows_of(batch, std::slice::from_ref(c), "updated")?),
        None => None,
    };
    let mut newest: HashMap<Row<'_>, usize> = HashMap::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        match newest.entry(keys.row(i)) {
            Entry::Vacant(e) => {
                e.insert(i);
            }
            Entry::Occupied(mut e) => {
                // `>=`: on a tie the later row wins.
                if updated.as_ref().is_none_or(|u| u.row(i) >= u.row(*e.get())) {
                    e.insert(i);
                }
            }
        }
    }
    let mut keep: Vec<u64> = newest.into_values().map(|i| i as u64).collect();
    keep.sort_unstable();
    Ok(UInt64Array::from(keep))
}

/// The named column of `batch`, or an error naming what it was needed for.
fn column(batch: &RecordBatch, name: &str, role: &'static str) -> Result<ArrayRef, TableError> {
    batch
        .column_by_name(name)
        .cloned()
        .ok_or_else(|| unknown_column(role, name, &batch.schema()))
}

pub(crate) fn unknown_column(role: &'static str, column: &str, schema: &Schema) -> TableError {
    TableError::UnknownColumn {
        role,
        column: column.to_string(),
        available: schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The columns as comparable rows: ascending, NULL first (lowest).
pub(crate) fn row_converter(
    types: impl IntoIterator<Item = DataType>,
) -> Result<RowConverter, TableError> {
    let fields = types
        .into_iter()
        .map(|t| {
            SortField::new_with_options(
                t,
                SortOptions {
                    descending: false,
                    nulls_first: true,
                },
            )
        })
        .collect();
    RowConverter::new(fields).map_err(TableError::arrow("encoding rows for comparison"))
}

fn rows_of(
    batch: &RecordBatch,
    columns: &[String],
    role: &'static str,
) -> Result<Rows, TableError> {
    let arrays = columns
        .iter()
        .map(|c| column(batch, c, role))
        .collect::<Result<Vec<_>, _>>()?;
    row_converter(arrays.iter().map(|a| a.data_type().clone()))?
        .convert_columns(&arrays)
        .map_err(TableError::arrow("encoding rows for comparison"))
}

/// `batch` with exactly `schema`'s columns, cast to its types (a scan hands back strings as
/// views and partition values dictionary-encoded).
pub(crate) fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, TableError> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            let c = column(batch, f.name(), "table")?;
            if c.data_type() == f.data_type() {
                Ok(c)
            } else {
                cast(&c, f.data_type()).map_err(TableError::arrow("reading the table's rows"))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(TableError::arrow("reading the table's rows"))
}

impl TableStore {
    /// Settle a table a full load may have left with some keys more than once: keep the
    /// newest row of each such key (the rule of [`newest_per_key`]) and, with
    /// `layout.deletes`, remove every key whose newest row marks it deleted. One commit that
    /// rewrites only the data files holding those keys (within their partitions, when the
    /// table is partitioned); `None`, and no commit, when there is nothing to settle.
    ///
    /// "The later row" on a tie is the later one in the files: files in path order (a write
    /// numbers the files of each partition as it rolls them), rows in file order, which is
    /// the order the load gave them because writes keep rows in order. Copies of one key in
    /// different partitions are ordered by partition path.
    pub async fn dedupe(
        &self,
        table: &str,
        layout: &Layout,
        run_id: &str,
    ) -> Result<Option<TableWrite>, TableError> {
        self.dedupe_within(table, layout, run_id, None).await
    }

    /// [`TableStore::dedupe`], looking only at the keys in `within` (a batch of the key
    /// columns, e.g. the rows a refresh just merged) when given: the table's key, partition and
    /// file columns are still read whole, but only those keys are grouped, so a refresh of 1 %
    /// of a table costs a scan of three columns rather than grouping every row.
    pub async fn dedupe_within(
        &self,
        table: &str,
        layout: &Layout,
        run_id: &str,
        within: Option<RecordBatch>,
    ) -> Result<Option<TableWrite>, TableError> {
        if layout.key.is_empty() {
            return Err(TableError::NoKey {
                table: table.to_string(),
            });
        }
        let handle = self.existing(table).await?;
        let schema = handle
            .snapshot()
            .map_err(|e| self.err(table, e))?
            .snapshot()
            .arrow_schema();
        let named = layout.key.iter().map(|k| ("key", k));
        let named = named
            .chain(layout.updated.iter().map(|c| ("updated", c)))
            .chain(layout.partition.iter().map(|c| ("partition", c)))
            .chain(layout.deletes.iter().map(|(c, _)| ("deletes", c)));
        for (role, c) in named {
            if schema.field_with_name(c).is_err() {
                return Err(unknown_column(role, c, &schema));
            }
        }
        let ctx = session().map_err(|e| self.err(table, e))?;
        handle
            .update_datafusion_session(&ctx.state())
            .map_err(|e| self.err(table, e))?;
        let provider = handle
            .table_provider()
            .with_file_column(FILE_COLUMN)
            .await
            .map_err(|e| self.err(table, e.into()))?;
        ctx.register_table("t", provider)
            .map_err(|e| self.err(table, e.into()))?;
        let restricted = within.as_ref().map(|keys| key_range(layout, keys));
        if let Some(keys) = within {
            ctx.register_batch(WITHIN_TABLE, keys)
                .map_err(|e| self.err(table, e.into()))?;
        }
        let settling = Settling {
            restricted,
            store: self,
            table,
            layout,
            schema,
            ctx,
        };

        let Some((keys, parts)) = settling.keys().await? else {
            return Ok(None);
        };
        let rows = settling.rows(&keys, parts.as_deref()).await?;
        let newest = take_record_batch(&rows, &newest_rows(&rows, layout)?)
            .map_err(TableError::arrow("picking the newest row per key"))?;
        let kept = drop_deleted(newest, layout)?;

        let predicate = settle_predicate(layout, &keys, parts.as_deref())
            .map_err(|e| self.err(table, e.into()))?;
        let kept_rows = kept.num_rows() as u64;
        let written = handle
            .write(vec![kept])
            .with_save_mode(SaveMode::Overwrite)
            .with_replace_where(predicate)
            .with_writer_properties(writer_properties())
            .with_session_state(Arc::new(session().map_err(|e| self.err(table, e))?.state()))
            .with_commit_properties(commit_properties(run_id))
            .await
            .map_err(|e| self.err(table, e))?;
        let version = written.version().unwrap_or(0);
        let (removed, added) = self.write_file_counts(table, &written, version).await?;
        Ok(Some(TableWrite {
            version,
            rows: kept_rows,
            deleted: rows.num_rows() as u64 - kept_rows,
            files_rewritten: removed,
            files_added: added,
            ..Default::default()
        }))
    }
}

/// A dedupe under way: the table registered as `t` (with each row's file) in `ctx`.
struct Settling<'a> {
    /// Only the keys registered as [`WITHIN_TABLE`] are looked at; with a condition on
    /// the key that holds for all of them (see [`key_range`]), when there is one.
    restricted: Option<Option<String>>,
    store: &'a TableStore,
    table: &'a str,
    layout: &'a Layout,
    /// The table's schema.
    schema: SchemaRef,
    ctx: SessionContext,
}

impl Settling<'_> {
    fn err(&self, e: DataFusionError) -> TableError {
        self.store.err(self.table, e.into())
    }

    /// The keys to settle (the key columns, typed as in the table) and, when the table is
    /// partitioned, the partitions they live in. `None` when there are none.
    async fn keys(&self) -> Result<Option<SettledKeys>, TableError> {
        let found = self
            .ctx
            .sql(&settle_keys_sql(self.layout, self.restricted.as_ref()))
            .await
            .map_err(|e| self.err(e))?
            .collect()
            .await
            .map_err(|e| self.err(e))?;
        let keys = conform_all(&found, &self.key_schema()?)?;
        if keys.num_rows() == 0 {
            return Ok(None);
        }
        let parts = match &self.layout.partition {
            Some(p) => Some(partitions_found(&found, &self.schema, p)?),
            None => None,
        };
        Ok(Some((keys, parts)))
    }

    /// The key columns, typed as in the table and nullable (a key may hold NULL).
    fn key_schema(&self) -> Result<SchemaRef, TableError> {
        let fields = self
            .layout
            .key
            .iter()
            .map(|k| {
                let f = self
                    .schema
                    .field_with_name(k)
                    .map_err(|_| unknown_column("key", k, &self.schema))?;
                Ok(Field::new(k, f.data_type().clone(), true))
            })
            .collect::<Result<Vec<_>, TableError>>()?;
        Ok(Arc::new(Schema::new(fields)))
    }

    /// Every row of the settled `keys`, typed as in the table, in file order: files by path,
    /// and within a file in the order they were written.
    async fn rows(
        &self,
        keys: &RecordBatch,
        parts: Option<&[ScalarValue]>,
    ) -> Result<RecordBatch, TableError> {
        let converter =
            row_converter(keys.schema().fields().iter().map(|f| f.data_type().clone()))?;
        let settle: HashSet<Box<[u8]>> = converter
            .convert_columns(keys.columns())
            .map_err(TableError::arrow("encoding the keys to settle"))?
            .iter()
            .map(|r| Box::from(r.as_ref()))
            .collect();

        let mut scan = self.ctx.table("t").await.map_err(|e| self.err(e))?;
        if let (Some(p), Some(parts)) = (&self.layout.partition, parts) {
            scan = scan
                .filter(partition_filter(p, parts))
                .map_err(|e| self.err(e))?;
        }
        let mut fields: Vec<Field> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(FILE_COLUMN, DataType::Utf8, true));
        let scan_schema = Arc::new(Schema::new(fields));
        // One partition (see `session`): the rows of each file come in file order.
        let mut stream = scan.execute_stream().await.map_err(|e| self.err(e))?;
        let mut picked = Vec::new();
        while let Some(batch) = stream.try_next().await.map_err(|e| self.err(e))? {
            let batch = conform(&batch, &scan_schema)?;
            let key_columns = self
                .layout
                .key
                .iter()
                .map(|k| column(&batch, k, "key"))
                .collect::<Result<Vec<_>, _>>()?;
            let hit: BooleanArray = converter
                .convert_columns(&key_columns)
                .map_err(TableError::arrow("encoding the table's keys"))?
                .iter()
                .map(|r| Some(settle.contains(r.as_ref())))
                .collect();
            let batch = filter_record_batch(&batch, &hit)
                .map_err(TableError::arrow("picking the rows to settle"))?;
            if batch.num_rows() > 0 {
                picked.push(batch);
            }
        }
        let picked = concat_batches(&scan_schema, &picked)
            .map_err(TableError::arrow("gathering the rows to settle"))?;
        let files = column(&picked, FILE_COLUMN, "file")?;
        let files = files.as_string::<i32>();
        let file = |i: u64| files.is_valid(i as usize).then(|| files.value(i as usize));
        let mut order: Vec<u64> = (0..picked.num_rows() as u64).collect();
        // A stable sort: the rows of one file keep their order.
        order.sort_by(|a, b| file(*a).cmp(&file(*b)));
        take_record_batch(&picked, &UInt64Array::from(order))
            .and_then(|b| b.project(&(0..self.schema.fields().len()).collect::<Vec<_>>()))
            .map_err(TableError::arrow("ordering the rows to settle"))
    }
}

/// The settled keys, and the partitions they live in when the table is partitioned.
type SettledKeys = (RecordBatch, Option<Vec<ScalarValue>>);

/// `batches` conformed to `schema` and concatenated.
fn conform_all(batches: &[RecordBatch], schema: &SchemaRef) -> Result<RecordBatch, TableError> {
    let conformed = batches
        .iter()
        .map(|b| conform(b, schema))
        .collect::<Result<Vec<_>, _>>()?;
    concat_batches(schema, &conformed).map_err(TableError::arrow("gathering the keys to settle"))
}

/// SQL for the keys a dedupe settles: those held more than once, and with deletes declared,
/// those with a row marking them deleted. With a partition column, each key's partitions.
/// For a dedupe restricted to `within` by a key of one integer or text column: the key lies
/// between the least and the greatest of `within` (or is NULL, if one of them is). Every
/// copy of those keys meets it, and the scan skips the files whose key statistics lie
/// outside: for a refresh of recent records, most of the table. `None` for other keys.
fn key_range(layout: &Layout, within: &RecordBatch) -> Option<String> {
    let [key] = &layout.key[..] else {
        return None;
    };
    let column = within.column_by_name(key)?;
    let bounds = |column: &dyn Array| -> Option<(String, String)> {
        use arrow::compute::{max, max_string, min, min_string};
        use arrow::datatypes::{Int8Type, Int16Type, Int32Type, Int64Type};
        use arrow::datatypes::{UInt8Type, UInt16Type, UInt32Type, UInt64Type};
        macro_rules! ints {
            ($t:ty) => {{
                let a = column.as_primitive::<$t>();
                Some((min(a)?.to_string(), max(a)?.to_string()))
            }};
        }
        match column.data_type() {
            DataType::Int8 => ints!(Int8Type),
            DataType::Int16 => ints!(Int16Type),
            DataType::Int32 => ints!(Int32Type),
            DataType::Int64 => ints!(Int64Type),
            DataType::UInt8 => ints!(UInt8Type),
            DataType::UInt16 => ints!(UInt16Type),
            DataType::UInt32 => ints!(UInt32Type),
            DataType::UInt64 => ints!(UInt64Type),
            DataType::Utf8 => {
                let a = column.as_string::<i32>();
                Some((quote_text(min_string(a)?), quote_text(max_string(a)?)))
            }
            _ => None,
        }
    };
    let k = quote(key);
    let range = match bounds(column.as_ref()) {
        Some((lo, hi)) => format!("(t.{k} >= {lo} AND t.{k} <= {hi})"),
        // Only NULL keys.
        None if column.null_count() > 0 && !matches!(column.data_type(), DataType::Null) => {
            return Some(format!("t.{k} IS NULL"));
        }
        None => return None,
    };
    Some(if column.null_count() > 0 {
        format!("({range} OR t.{k} IS NULL)")
    } else {
        range
    })
}

fn settle_keys_sql(layout: &Layout, restricted: Option<&Option<String>>) -> String {
    let keys = layout
        .key
        .iter()
        .map(|k| quote(k))
        .collect::<Vec<_>>()
        .join(", ");
    let parts = match &layout.partition {
        Some(p) => format!(
            ", array_agg(DISTINCT {}) AS {}",
            quote(p),
            quote(PARTS_COLUMN)
        ),
        None => String::new(),
    };
    let mut having = "COUNT(*) > 1".to_string();
    if let Some((c, values)) = &layout.deletes {
        having.push_str(&format!(
            " OR SUM(CASE WHEN {} THEN 1 ELSE 0 END) > 0",
            deleted_sql(&quote(c), values)
        ));
    }
    let filter = if let Some(range) = restricted {
        let same = layout
            .key
            .iter()
            .map(|k| format!("w.{k} IS NOT DISTINCT FROM t.{k}", k = quote(k)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let range = range
            .as_ref()
            .map(|r| format!("{r} AND "))
            .unwrap_or_default();
        format!(" WHERE {range}EXISTS (SELECT 1 FROM {WITHIN_TABLE} w WHERE {same})")
    } else {
        String::new()
    };
    format!("SELECT {keys}{parts} FROM t{filter} GROUP BY {keys} HAVING {having}")
}

/// The distinct partition values listed in the found keys' parts column.
fn partitions_found(
    found: &[RecordBatch],
    table_schema: &Schema,
    partition: &str,
) -> Result<Vec<ScalarValue>, TableError> {
    let to = table_schema
        .field_with_name(partition)
        .map_err(TableError::arrow("finding the partition column"))?
        .data_type();
    let mut seen = HashSet::new();
    let mut parts = Vec::new();
    for batch in found {
        let lists = column(batch, PARTS_COLUMN, "partition")?;
        let Some(lists) = lists.as_list_opt::<i32>() else {
            return Err(TableError::Arrow {
                context: "reading the partitions of the keys to settle",
                source: arrow::error::ArrowError::InvalidArgumentError(format!(
                    "expected a list of partition values, got {}",
                    lists.data_type()
                )),
            });
        };
        let values = cast(lists.values(), to).map_err(TableError::arrow(
            "reading the partitions of the keys to settle",
        ))?;
        for i in 0..values.len() {
            let v = ScalarValue::try_from_array(&values, i).map_err(|e| TableError::Arrow {
                context: "reading the partitions of the keys to settle",
                source: arrow::error::ArrowError::ExternalError(Box::new(e)),
            })?;
            if seen.insert(v.clone()) {
                parts.push(v);
            }
        }
    }
    Ok(parts)
}

/// `column` is one of `values` (a NULL among them matches NULL).
pub(crate) fn one_of(column: &str, values: &[ScalarValue]) -> Expr {
    let listed: Vec<Expr> = values
        .iter()
        .filter(|v| !v.is_null())
        .cloned()
        .map(lit)
        .collect();
    let mut e = if listed.is_empty() {
        lit(false)
    } else {
        ident(column).in_list(listed, false)
    };
    if values.iter().any(ScalarValue::is_null) {
        e = e.or(ident(column).is_null());
    }
    e
}

fn partition_filter(column: &str, parts: &[ScalarValue]) -> Expr {
    one_of(column, parts)
}

/// The rows a dedupe replaces: those with a settled key (in the settled keys' partitions).
fn settle_predicate(
    layout: &Layout,
    keys: &RecordBatch,
    parts: Option<&[ScalarValue]>,
) -> Result<Expr, DataFusionError> {
    let value = |column: usize, row: usize| ScalarValue::try_from_array(keys.column(column), row);
    let matched = if let [key] = layout.key.as_slice() {
        let values = (0..keys.num_rows())
            .map(|i| value(0, i))
            .collect::<Result<Vec<_>, _>>()?;
        one_of(key, &values)
    } else {
        let rows = (0..keys.num_rows())
            .map(|i| {
                let terms = layout
                    .key
                    .iter()
                    .enumerate()
                    .map(|(j, k)| {
                        let v = value(j, i)?;
                        Ok(if v.is_null() {
                            ident(k).is_null()
                        } else {
                            ident(k).eq(lit(v))
                        })
                    })
                    .collect::<Result<Vec<_>, DataFusionError>>()?;
                Ok(balanced(terms, Expr::and))
            })
            .collect::<Result<Vec<_>, DataFusionError>>()?;
        balanced(rows, Expr::or)
    };
    Ok(match (&layout.partition, parts) {
        (Some(p), Some(parts)) => partition_filter(p, parts).and(matched),
        _ => matched,
    })
}

/// Combine `terms` pairwise into a balanced tree, so thousands of keys do not make an
/// expression thousands of levels deep. `false` when there are none.
fn balanced(mut terms: Vec<Expr>, join: fn(Expr, Expr) -> Expr) -> Expr {
    while terms.len() > 1 {
        let mut next = Vec::with_capacity(terms.len().div_ceil(2));
        let mut it = terms.into_iter();
        while let Some(a) = it.next() {
            next.push(match it.next() {
                Some(b) => join(a, b),
                None => a,
            });
        }
        terms = next;
    }
    terms.pop().unwrap_or_else(|| lit(false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("zone", DataType::Utf8, true),
            Field::new("changed", DataType::Int64, true),
            Field::new("v", DataType::Utf8, true),
        ]))
    }

    type Row4<'a> = (Option<i64>, Option<&'a str>, Option<i64>, &'a str);

    fn batch(rows: &[Row4<'_>]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.3).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    fn values(b: &RecordBatch) -> Vec<String> {
        b.column_by_name("v")
            .unwrap()
            .as_string::<i32>()
            .iter()
            .map(|v| v.unwrap().to_string())
            .collect()
    }

    fn layout(key: &[&str], updated: Option<&str>) -> Layout {
        Layout {
            key: key.iter().map(|k| k.to_string()).collect(),
            updated: updated.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn without_an_updated_column_the_last_row_of_each_key_wins() {
        let out = newest_per_key(
            &schema(),
            vec![
                batch(&[
                    (Some(1), None, None, "a"),
                    (Some(2), None, None, "b"),
                    (Some(3), None, None, "c"),
                ]),
                batch(&[(Some(2), None, None, "B"), (Some(4), None, None, "d")]),
            ],
            &layout(&["id"], None),
        )
        .unwrap()
        .unwrap();
        assert_eq!(values(&out), ["a", "c", "B", "d"]);
    }

    #[test]
    fn a_restricted_dedupe_bounds_a_single_key_by_the_keys_it_looks_at() {
        let layout = |key: &[&str]| Layout {
            key: key.iter().map(|k| k.to_string()).collect(),
            ..Default::default()
        };
        let batch = |name: &str, column: ArrayRef| {
            RecordBatch::try_new(
                Arc::new(Schema::new(vec![Field::new(
                    name,
                    column.data_type().clone(),
                    true,
                )])),
                vec![column],
            )
            .unwrap()
        };
        let ids = batch(
            "id",
            Arc::new(arrow::array::Int64Array::from(vec![
                Some(40),
                Some(-3),
                Some(7),
            ])),
        );
        assert_eq!(
            key_range(&layout(&["id"]), &ids).as_deref(),
            Some(r#"(t."id" >= -3 AND t."id" <= 40)"#)
        );
        let with_null = batch(
            "id",
            Arc::new(arrow::array::Int32Array::from(vec![Some(5), None])),
        );
        assert_eq!(
            key_range(&layout(&["id"]), &with_null).as_deref(),
            Some(r#"((t."id" >= 5 AND t."id" <= 5) OR t."id" IS NULL)"#)
        );
        let texts = batch(
            "k",
            Arc::new(arrow::array::StringArray::from(vec!["b'x", "a", "b"])),
        );
        assert_eq!(
            key_range(&layout(&["k"]), &texts).as_deref(),
            Some(r#"(t."k" >= 'a' AND t."k" <= 'b''x')"#)
        );
        let nulls = batch(
            "k",
            Arc::new(arrow::array::StringArray::from(vec![None::<&str>])),
        );
        assert_eq!(
            key_range(&layout(&["k"]), &nulls).as_deref(),
            Some(r#"t."k" IS NULL"#)
        );
        assert_eq!(
            key_range(&layout(&["id", "k"]), &ids),
            None,
            "composite keys"
        );
        let floats = batch("f", Arc::new(arrow::array::Float64Array::from(vec![1.5])));
        assert_eq!(key_range(&layout(&["f"]), &floats), None);
        // The bounds go in front of the search for the keys.
        let sql = settle_keys_sql(&layout(&["id"]), Some(&key_range(&layout(&["id"]), &ids)));
        assert!(
            sql.contains(r#"WHERE (t."id" >= -3 AND t."id" <= 40) AND EXISTS"#),
            "{sql}"
        );
    }

    #[test]
    fn the_greatest_updated_value_wins_null_loses_and_a_tie_goes_to_the_later_row() {
        let rows = [
            (Some(1), None, Some(5), "1@5"),
            (Some(1), None, Some(3), "1@3 older, later"),
            (Some(2), None, None, "2@null"),
            (Some(2), None, Some(1), "2@1"),
            (Some(2), None, None, "2@null again"),
            (Some(3), None, Some(7), "3@7 first"),
            (Some(3), None, Some(7), "3@7 second"),
            (Some(4), None, None, "4@null first"),
            (Some(4), None, None, "4@null second"),
        ];
        let out = newest_per_key(
            &schema(),
            vec![batch(&rows)],
            &layout(&["id"], Some("changed")),
        )
        .unwrap()
        .unwrap();
        assert_eq!(values(&out), ["1@5", "2@1", "3@7 second", "4@null second"]);
    }

    #[test]
    fn composite_keys_tell_null_from_empty_and_do_not_collide_on_separators() {
        let rows = [
            (Some(1), Some(""), None, "1/empty"),
            (Some(1), None, None, "1/null"),
            (None, Some("a"), None, "null/a"),
            (None, Some("a"), None, "null/a again"),
            (Some(1), Some("a\u{1f}"), None, "1/a-sep"),
            (Some(1), Some("a"), None, "1/a"),
        ];
        let out = newest_per_key(
            &schema(),
            vec![batch(&rows)],
            &layout(&["id", "zone"], None),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            values(&out),
            ["1/empty", "1/null", "null/a again", "1/a-sep", "1/a"]
        );
    }

    #[test]
    fn no_rows_give_none_and_no_key_keeps_every_row() {
        assert!(
            newest_per_key(&schema(), vec![], &layout(&["id"], None))
                .unwrap()
                .is_none()
        );
        let rows = [(Some(1), None, None, "a"), (Some(1), None, None, "b")];
        let out = newest_per_key(&schema(), vec![batch(&rows)], &Layout::default())
            .unwrap()
            .unwrap();
        assert_eq!(out.num_rows(), 2);
    }

    #[test]
    fn an_unknown_key_or_updated_column_is_named_with_the_columns_there_are() {
        let rows = [(Some(1), None, None, "a")];
        let err = newest_per_key(&schema(), vec![batch(&rows)], &layout(&["ID"], None))
            .unwrap_err()
            .to_string();
        assert!(err.contains("key column \"ID\""), "{err}");
        assert!(err.contains("id, zone, changed, v"), "{err}");
        let err = newest_per_key(
            &schema(),
            vec![batch(&rows)],
            &layout(&["id"], Some("modified")),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("updated column \"modified\""), "{err}");
    }

    #[test]
    fn dropping_deleted_rows_compares_the_value_as_text_and_keeps_nulls() {
        let rows = [
            (Some(1), Some("x"), Some(1), "deleted by number"),
            (Some(2), Some("x"), Some(0), "live"),
            (Some(3), Some("x"), None, "null is live"),
            (Some(4), Some("x"), Some(10), "10 is not 1"),
        ];
        let layout = Layout {
            deletes: Some(("changed".into(), vec!["1".into()])),
            ..Default::default()
        };
        let out = drop_deleted(batch(&rows), &layout).unwrap();
        assert_eq!(values(&out), ["live", "null is live", "10 is not 1"]);
        let all = drop_deleted(batch(&rows), &Layout::default()).unwrap();
        assert_eq!(all.num_rows(), 4);
        let missing = Layout {
            deletes: Some(("gone".into(), vec!["1".into()])),
            ..Default::default()
        };
        assert!(drop_deleted(batch(&rows), &missing).is_err());
    }

    #[test]
    fn a_balanced_tree_stays_shallow() {
        fn depth(e: &Expr) -> usize {
            match e {
                Expr::BinaryExpr(b) => 1 + depth(&b.left).max(depth(&b.right)),
                _ => 0,
            }
        }
        let terms: Vec<Expr> = (0..1000).map(|i| ident("id").eq(lit(i))).collect();
        let tree = balanced(terms, Expr::or);
        assert_eq!(depth(&tree), 10 + 1, "ten levels of OR above the = terms");
        assert_eq!(balanced(vec![], Expr::or), lit(false));
    }
}
