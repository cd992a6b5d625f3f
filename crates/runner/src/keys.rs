//! The distinct keys a load has seen, counted in little memory.
//!
//! A full load checks the distinct keys of each source against the count its portal reported
//! and learns whether any key came twice (see `load::feed`). The set grows with the table, so
//! its size per key decides how much memory a load of 40 million records needs:
//! - a key of one integer column (the common record id) is kept as the values themselves in
//!   a compressed bitmap: ids run mostly in dense ranges, where a key costs a bit or two;
//! - any other key is kept as a 64-bit hash of its row-format encoding (type and value, so
//!   `1` and `"1"` differ, NULL differs from the empty string), 8 bytes and a little more a
//!   key. Two keys with one hash would be counted once; at 40 million keys the chance of
//!   that is below one in ten billion.

use crate::RunError;
use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int8Type, Int16Type, Int32Type, Int64Type};
use arrow::datatypes::{UInt8Type, UInt16Type, UInt32Type, UInt64Type};
use roaring::RoaringTreemap;
use std::collections::HashSet;
use std::hash::Hasher;

/// Integer keys are kept as hashes instead once the bitmap takes more than this many bytes
/// a key (a hash takes 8 and a little more)...
const SPARSE_BYTES_PER_KEY: u64 = 12;
/// ...which is looked at from this many keys on.
const SPARSE_CHECK_FROM: u64 = 4096;

/// A set of keys; see the module docs.
#[derive(Default)]
pub(crate) enum KeySet {
    /// Nothing seen yet.
    #[default]
    Empty,
    /// Keys of one integer column: the values (as their 64 bits), and whether NULL was one.
    Ints { values: RoaringTreemap, null: bool },
    /// Any other key: hashes.
    Hashes(HashSet64),
}

impl KeySet {
    /// Add the keys of `batch`'s rows (`key_columns`; rows without them add nothing).
    pub(crate) fn insert(
        &mut self,
        batch: &RecordBatch,
        key_columns: &[String],
    ) -> Result<(), RunError> {
        let columns: Vec<ArrayRef> = key_columns
            .iter()
            .filter_map(|k| batch.column_by_name(k).cloned())
            .collect();
        if columns.is_empty() || batch.num_rows() == 0 {
            return Ok(());
        }
        if matches!(self, KeySet::Empty) {
            *self = if columns.len() == 1 && integer(columns[0].data_type()) {
                KeySet::Ints {
                    values: RoaringTreemap::new(),
                    null: false,
                }
            } else {
                KeySet::Hashes(HashSet64::default())
            };
        }
        match self {
            KeySet::Ints { values, null } if columns.len() == 1 => {
                if let Some(bits) = integer_bits(&columns[0]) {
                    *null |= columns[0].null_count() > 0;
                    // The values come mostly in order, which the bitmap takes fastest.
                    let before = values.len();
                    values.extend(bits);
                    // Ids scattered over the 64-bit range make a bitmap larger than the
                    // hashes: looked at each time the count passes a power of two.
                    let after = values.len();
                    if after >= SPARSE_CHECK_FROM
                        && before.checked_ilog2() != after.checked_ilog2()
                        && values.serialized_size() as u64 > SPARSE_BYTES_PER_KEY * after
                    {
                        self.make_hashes();
                    }
                    return Ok(());
                }
                // A batch whose key has another type than the first one's: hash from now on.
                self.make_hashes();
            }
            KeySet::Ints { .. } => self.make_hashes(),
            _ => {}
        }
        if let KeySet::Hashes(set) = self {
            // One integer column is hashed as the 64-bit integers a bitmap turned into hashes
            // holds, so the same number is the same key whatever the column's width.
            match as_int64(&columns[0]) {
                Some(ints) if columns.len() == 1 => set.extend(key_hashes(&[ints])?),
                _ => set.extend(key_hashes(&columns)?),
            }
        }
        Ok(())
    }

    /// How many distinct keys.
    pub(crate) fn len(&self) -> u64 {
        match self {
            KeySet::Empty => 0,
            KeySet::Ints { values, null } => values.len() + u64::from(*null),
            KeySet::Hashes(set) => set.len() as u64,
        }
    }

    /// Add the keys of `other`.
    pub(crate) fn absorb(&mut self, other: KeySet) {
        match (&mut *self, other) {
            (_, KeySet::Empty) => {}
            (KeySet::Empty, other) => *self = other,
            (
                KeySet::Ints { values, null },
                KeySet::Ints {
                    values: more,
                    null: more_null,
                },
            ) => {
                *values |= more;
                *null |= more_null;
            }
            (_, other) => {
                self.make_hashes();
                let mut other = other;
                other.make_hashes();
                if let (KeySet::Hashes(set), KeySet::Hashes(more)) = (self, other) {
                    set.extend(more);
                }
            }
        }
    }

    /// The same keys as hashes.
    fn make_hashes(&mut self) {
        if matches!(self, KeySet::Hashes(_)) {
            return;
        }
        if let KeySet::Ints { values, null } = std::mem::take(self) {
            let mut set = HashSet64::default();
            set.reserve(values.len() as usize + 1);
            // In slices, so the switch does not hold every key three times over at once.
            let mut values = values.iter();
            loop {
                let chunk: arrow::array::Int64Array =
                    values.by_ref().take(1 << 16).map(|v| v as i64).collect();
                if chunk.is_empty() {
                    break;
                }
                let chunk: ArrayRef = std::sync::Arc::new(chunk);
                set.extend(key_hashes(&[chunk]).unwrap_or_default());
            }
            if null {
                let none: ArrayRef =
                    std::sync::Arc::new(arrow::array::Int64Array::from(vec![None]));
                set.extend(key_hashes(&[none]).unwrap_or_default());
            }
            *self = KeySet::Hashes(set);
        } else {
            *self = KeySet::Hashes(HashSet64::default());
        }
    }
}

fn integer(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
    )
}

/// The non-null values of an integer column as 64 bits each: signed values sign-extended,
/// so equal numbers give equal bits whatever the column's width.
fn integer_bits(column: &ArrayRef) -> Option<Box<dyn Iterator<Item = u64> + '_>> {
    macro_rules! signed {
        ($t:ty) => {
            Box::new(
                column
                    .as_primitive::<$t>()
                    .iter()
                    .flatten()
                    .map(|v| i64::from(v) as u64),
            )
        };
    }
    macro_rules! unsigned {
        ($t:ty) => {
            Box::new(column.as_primitive::<$t>().iter().flatten().map(u64::from))
        };
    }
    Some(match column.data_type() {
        DataType::Int8 => signed!(Int8Type),
        DataType::Int16 => signed!(Int16Type),
        DataType::Int32 => signed!(Int32Type),
        DataType::Int64 => signed!(Int64Type),
        DataType::UInt8 => unsigned!(UInt8Type),
        DataType::UInt16 => unsigned!(UInt16Type),
        DataType::UInt32 => unsigned!(UInt32Type),
        DataType::UInt64 => unsigned!(UInt64Type),
        _ => return None,
    })
}

/// An integer column as 64-bit integers (the bits of [`integer_bits`]), NULLs kept.
fn as_int64(column: &ArrayRef) -> Option<ArrayRef> {
    let mut bits = integer_bits(column)?;
    let ints: arrow::array::Int64Array = (0..column.len())
        .map(|i| {
            if column.is_null(i) {
                None
            } else {
                bits.next().map(|b| b as i64)
            }
        })
        .collect();
    Some(std::sync::Arc::new(ints))
}

/// The key of every row as a 64-bit hash: the key columns in arrow's row format, hashed
/// with XXH64.
fn key_hashes(columns: &[ArrayRef]) -> Result<Vec<u64>, RunError> {
    let converter = arrow::row::RowConverter::new(
        columns
            .iter()
            .map(|c| arrow::row::SortField::new(c.data_type().clone()))
            .collect(),
    )
    .and_then(|c| c.convert_columns(columns).map(|rows| (c, rows)));
    let (_, rows) = converter.map_err(|e| RunError::Internal(format!("hashing the keys: {e}")))?;
    Ok(rows
        .iter()
        .map(|r| twox_hash::XxHash64::oneshot(0, r.as_ref()))
        .collect())
}

/// A set of hashes, which need no hashing again.
pub(crate) type HashSet64 = HashSet<u64, std::hash::BuildHasherDefault<Prehashed>>;

/// The identity "hasher" for values that are already hashes.
#[derive(Default)]
pub(crate) struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64s are hashed with it; fold anything else in, for completeness.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, Int64Array, StringArray, UInt64Array};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let schema = Schema::new(
            columns
                .iter()
                .map(|(n, c)| Field::new(*n, c.data_type().clone(), true))
                .collect::<Vec<_>>(),
        );
        RecordBatch::try_new(Arc::new(schema), columns.into_iter().map(|c| c.1).collect()).unwrap()
    }

    fn ids(values: Vec<Option<i64>>) -> RecordBatch {
        batch(vec![("id", Arc::new(Int64Array::from(values)))])
    }

    #[test]
    fn integer_keys_are_counted_exactly_with_null_as_one_more_key() {
        let mut set = KeySet::default();
        let key = ["id".to_string()];
        set.insert(
            &ids(vec![Some(5), Some(-5), Some(5), None, Some(i64::MIN)]),
            &key,
        )
        .unwrap();
        set.insert(&ids(vec![None, Some(i64::MAX), Some(-5)]), &key)
            .unwrap();
        assert!(matches!(set, KeySet::Ints { .. }));
        // 5, -5, MIN, MAX and NULL.
        assert_eq!(set.len(), 5);
        // Dense record ids: many keys, little memory.
        let mut dense = KeySet::default();
        for start in (0..1_000_000i64).step_by(50_000) {
            dense
                .insert(&ids((start..start + 50_000).map(Some).collect()), &key)
                .unwrap();
        }
        assert_eq!(dense.len(), 1_000_000);
        let KeySet::Ints { values, .. } = &dense else {
            panic!("integer keys are kept as a bitmap");
        };
        assert!(
            values.serialized_size() < 200_000,
            "{}",
            values.serialized_size()
        );
    }

    #[test]
    fn integer_keys_scattered_over_the_whole_range_turn_into_hashes() {
        let key = ["id".to_string()];
        let mut set = KeySet::default();
        // A multiplicative scramble: distinct values, spread over all 64 bits.
        let scattered = |i: i64| Some((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) as i64);
        for start in (0..20_000i64).step_by(5_000) {
            set.insert(&ids((start..start + 5_000).map(scattered).collect()), &key)
                .unwrap();
        }
        assert!(
            matches!(set, KeySet::Hashes(_)),
            "the bitmap would be larger"
        );
        set.insert(&ids((0..100).map(scattered).collect()), &key)
            .unwrap();
        assert_eq!(set.len(), 20_000, "the keys counted before are still there");
    }

    #[test]
    fn other_keys_are_counted_by_hash_and_keep_types_apart() {
        let key = ["k".to_string(), "n".to_string()];
        let mut set = KeySet::default();
        let rows = batch(vec![
            (
                "k",
                Arc::new(StringArray::from(vec![
                    Some("a"),
                    Some("a"),
                    Some(""),
                    None,
                    Some("a,1"),
                ])),
            ),
            (
                "n",
                Arc::new(Int32Array::from(vec![Some(1), Some(1), None, None, None])),
            ),
        ]);
        set.insert(&rows, &key).unwrap();
        assert!(matches!(set, KeySet::Hashes(_)));
        // (a,1) twice; ("",NULL), (NULL,NULL) and ("a,1",NULL) differ.
        assert_eq!(set.len(), 4);
    }

    #[test]
    fn sets_of_several_sources_combine_whatever_their_kind() {
        let key = ["id".to_string()];
        let mut all = KeySet::default();
        let mut one = KeySet::default();
        one.insert(&ids(vec![Some(1), Some(2), None]), &key)
            .unwrap();
        all.absorb(one);
        let mut two = KeySet::default();
        two.insert(&ids(vec![Some(2), Some(3)]), &key).unwrap();
        all.absorb(two);
        assert_eq!(all.len(), 4, "1, 2, 3 and NULL");
        // A source whose id is unsigned: the same numbers are the same keys.
        let mut three = KeySet::default();
        three
            .insert(
                &batch(vec![("id", Arc::new(UInt64Array::from(vec![3u64, 4])))]),
                &key,
            )
            .unwrap();
        all.absorb(three);
        assert_eq!(all.len(), 5);
        // A source keyed by text turns the set into hashes and keeps every key.
        let mut four = KeySet::default();
        four.insert(
            &batch(vec![("id", Arc::new(StringArray::from(vec!["1", "9"])))]),
            &key,
        )
        .unwrap();
        all.absorb(four);
        assert!(matches!(all, KeySet::Hashes(_)));
        assert_eq!(all.len(), 7, "text \"1\" is not the number 1");
        // And a set turned into hashes still finds integer keys it had.
        let mut again = KeySet::default();
        again
            .insert(&ids(vec![Some(1), Some(4), None]), &key)
            .unwrap();
        all.absorb(again);
        assert_eq!(all.len(), 7);
    }
}
