//! How a table's rows are identified, versioned, marked deleted and split into files.

use goalpost_spec::TableSpec;

/// The parts of a table's declaration that writes need: which columns identify a record,
/// which column orders versions of one record, which rows mark a deletion, and which column
/// the files are split by.
///
/// `Layout::default()` is a table without a key or partitioning: every row stands alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// Columns that identify a record. Empty: rows are never matched or deduplicated.
    pub key: Vec<String>,
    /// Column the table's files are split by (a Delta partition column). Either a declared
    /// column or a derived one such as `created_at_month` that the mapping stage fills in.
    pub partition: Option<String>,
    /// Column ordering versions of one record: the greatest value is the newest; NULL is
    /// older than any value; on a tie the later row wins.
    pub updated: Option<String>,
    /// A column and the values (as text) that mark a row as "this record was deleted".
    pub deletes: Option<(String, Vec<String>)>,
}

impl Layout {
    /// The layout a pipeline's `[table]` declares.
    pub fn of(spec: &TableSpec) -> Self {
        Self {
            key: spec.key_columns(),
            partition: spec.partition().map(|p| p.column().to_string()),
            updated: spec.updated.as_ref().map(|u| u.get_ref().clone()),
            deletes: spec
                .deletes
                .as_ref()
                .map(|d| (d.column.get_ref().clone(), d.values.clone())),
        }
    }

    /// The Delta partition columns: none, or the one partition column.
    pub fn partition_columns(&self) -> Vec<String> {
        self.partition.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layout_follows_the_table_declaration() {
        let text = r#"title = "t"
timezone = "UTC"
[[source]]
kind = "file"
path = "Cargo.toml"
[table]
name = "t"
key = ["id"]
time = "created_at"
updated = "changed_at"
partition = "month(created_at)"
deletes = { column = "is_deleted", values = ["true", "1"] }
[table.columns]
id = { type = "int64" }
created_at = { type = "timestamp" }
changed_at = { type = "timestamp" }
is_deleted = { type = "bool", required = false }
"#;
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("t.toml");
        let spec = goalpost_spec::parse_pipeline(&path, text)
            .unwrap()
            .spec
            .table;
        assert_eq!(
            Layout::of(&spec),
            Layout {
                key: vec!["id".into()],
                partition: Some("created_at_month".into()),
                updated: Some("changed_at".into()),
                deletes: Some(("is_deleted".into(), vec!["true".into(), "1".into()])),
            }
        );
        assert_eq!(
            Layout::of(&spec).partition_columns(),
            vec!["created_at_month".to_string()]
        );
        assert!(Layout::default().partition_columns().is_empty());
    }
}
