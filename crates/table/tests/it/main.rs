//! Integration tests of goalpost-table's Delta tables: partitioned merges, deletes, dedupe,
//! appends, compaction, vacuum and history. One test binary (see STYLE.md).

mod common;
mod dedupe;
mod maintenance;
mod merge;
mod partitioned_merge;
mod stamped_merge;
mod writes;
