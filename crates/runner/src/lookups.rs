//! Tables of other pipelines that a pipeline's indicators read: a population table for a rate,
//! a list of districts to join with.

use crate::RunError;
use arrow::datatypes::SchemaRef;
use goalpost_publish::TableRead;
use goalpost_spec::{LoadedPipelines, Pipeline};
use goalpost_table::TableStore;
use goalpost_table::deltalake::DeltaTable;

/// Every configured pipeline as a run of one of them sees it: the ids (the digest keeps their
/// parts and drops others) and which pipeline loads which table.
#[derive(Debug, Clone, Default)]
pub struct Configured {
    /// Every configured pipeline id, including those whose file has errors.
    pub ids: Vec<String>,
    /// `(table, pipeline)` for every pipeline that loaded.
    pub tables: Vec<(String, String)>,
}

impl Configured {
    pub fn new(loaded: &LoadedPipelines) -> Self {
        let mut ids: Vec<String> = loaded.pipelines.iter().map(|p| p.id.clone()).collect();
        ids.extend(loaded.failed.iter().map(|(id, _)| id.clone()));
        let tables = loaded
            .pipelines
            .iter()
            .map(|p| (p.spec.table.name.get_ref().clone(), p.id.clone()))
            .collect();
        Self { ids, tables }
    }

    /// Just these pipelines, with no tables to read from one another.
    pub fn only(ids: &[&str]) -> Self {
        Self {
            ids: ids.iter().map(|s| s.to_string()).collect(),
            tables: Vec::new(),
        }
    }

    /// The pipeline that loads `table`.
    pub fn owner(&self, table: &str) -> Option<&str> {
        self.tables
            .iter()
            .find(|(t, _)| t == table)
            .map(|(_, p)| p.as_str())
    }

    /// Pipelines in the order to run them: those whose tables others read come first, so
    /// a refresh of everything computes rates from this run's populations.
    pub fn run_order<'a>(&self, pipelines: &'a [Pipeline]) -> Vec<&'a Pipeline> {
        let read: Vec<String> = pipelines
            .iter()
            .flat_map(|p| goalpost_indicators::tables_read(p).into_iter())
            .flat_map(|(_, names)| names)
            .collect();
        let mut order: Vec<&Pipeline> = pipelines.iter().collect();
        order.sort_by_key(|p| !read.contains(p.spec.table.name.get_ref()));
        order
    }
}

/// The other tables a pipeline's indicators read, opened at their latest versions.
#[derive(Default)]
pub(crate) struct Lookups {
    pub tables: Vec<(String, DeltaTable)>,
    /// Their schemas, to plan the queries against.
    pub schemas: Vec<(String, SchemaRef)>,
    pub reads: Vec<TableRead>,
}

/// Open what `pipeline`'s indicators read of the configured pipelines' tables. A table no
/// configured pipeline loads is left out (planning then says the table is not found); one
/// whose pipeline has not written it yet is an error naming that pipeline.
pub(crate) async fn open(
    store: &TableStore,
    pipeline: &Pipeline,
    configured: &Configured,
) -> Result<Lookups, RunError> {
    let mut out = Lookups::default();
    let mut problems = Vec::new();
    for (indicator, names) in goalpost_indicators::tables_read(pipeline) {
        for name in names {
            if out.tables.iter().any(|(n, _)| *n == name) {
                continue;
            }
            let Some(owner) = configured.owner(&name) else {
                continue;
            };
            let Some(version) = store.latest_version(&name).await? else {
                let at = pipeline
                    .indicator(&indicator)
                    .map(|i| i.measure.as_ref().map_or(i.sql.span(), |m| m.span()));
                problems.push(pipeline.file.diagnostic(
                    at,
                    format!(
                        "indicator {indicator:?} reads table {name:?}, which pipeline {owner:?} loads but has not written yet; run it first: goalpost run {owner}"
                    ),
                ));
                continue;
            };
            let table = store.open_version(&name, version).await?;
            let schema = table
                .snapshot()
                .map_err(|e| RunError::Internal(format!("table {name}: {e}")))?
                .snapshot()
                .arrow_schema();
            out.schemas.push((name.clone(), schema));
            out.reads.push(TableRead {
                table: name.clone(),
                pipeline: owner.to_string(),
                version,
            });
            out.tables.push((name, table));
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(RunError::Invalid(problems))
    }
}

/// Open the tables a recorded digest says its indicators read, at the versions recorded.
pub(crate) async fn open_recorded(
    store: &TableStore,
    reads: &[TableRead],
) -> Result<Vec<(String, DeltaTable)>, RunError> {
    let mut out: Vec<(String, DeltaTable)> = Vec::new();
    for r in reads {
        if out.iter().any(|(n, _)| *n == r.table) {
            continue;
        }
        let table = store
            .open_version(&r.table, r.version)
            .await
            .map_err(|e| {
                RunError::Internal(format!(
                    "table {} version {} (read by the indicators) cannot be read ({e}); it may have been vacuumed",
                    r.table, r.version
                ))
            })?;
        out.push((r.table.clone(), table));
    }
    Ok(out)
}
