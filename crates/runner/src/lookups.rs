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

    /// The pipelines each pipeline's indicators read from (their tables' owners).
    fn reads_from(&self, pipeline: &Pipeline) -> Vec<String> {
        let mut from: Vec<String> = goalpost_indicators::tables_read(pipeline)
            .into_iter()
            .flat_map(|(_, names)| names)
            .filter_map(|t| self.owner(&t).map(str::to_string))
            .filter(|o| *o != pipeline.id)
            .collect();
        from.sort();
        from.dedup();
        from
    }

    /// Pipelines in the order to run them: each after the pipelines whose tables it reads,
    /// so a refresh of everything computes rates from this run's populations; otherwise in
    /// the given order. Pipelines that read each other in a circle (see [`Self::cycles`])
    /// run in the given order.
    pub fn run_order<'a>(&self, pipelines: &'a [Pipeline]) -> Vec<&'a Pipeline> {
        let deps: Vec<Vec<String>> = pipelines.iter().map(|p| self.reads_from(p)).collect();
        let mut done: Vec<bool> = vec![false; pipelines.len()];
        let mut order: Vec<&Pipeline> = Vec::with_capacity(pipelines.len());
        while order.len() < pipelines.len() {
            let ready = (0..pipelines.len()).find(|&i| {
                !done[i]
                    && deps[i].iter().all(|d| {
                        pipelines
                            .iter()
                            .zip(&done)
                            .all(|(p, finished)| p.id != *d || *finished)
                    })
            });
            // In a circle nothing is ready: take the first left, in the given order.
            let i = ready.unwrap_or_else(|| done.iter().position(|d| !d).unwrap_or(0));
            done[i] = true;
            order.push(&pipelines[i]);
        }
        order
    }

    /// Pipelines that read one another's tables in a circle, each circle as the ids in it:
    /// none of them can be computed first.
    pub fn cycles(&self, pipelines: &[Pipeline]) -> Vec<Vec<String>> {
        let edges: Vec<(String, Vec<String>)> = pipelines
            .iter()
            .map(|p| (p.id.clone(), self.reads_from(p)))
            .collect();
        let reaches = |from: &str, to: &str| -> bool {
            let mut seen: Vec<&str> = Vec::new();
            let mut stack = vec![from];
            while let Some(at) = stack.pop() {
                for (id, deps) in &edges {
                    if id == at {
                        for d in deps {
                            if d == to {
                                return true;
                            }
                            if !seen.contains(&d.as_str()) {
                                seen.push(d);
                                stack.push(d);
                            }
                        }
                    }
                }
            }
            false
        };
        let mut out: Vec<Vec<String>> = Vec::new();
        for (id, _) in &edges {
            if out.iter().any(|c| c.contains(id)) || !reaches(id, id) {
                continue;
            }
            let mut circle: Vec<String> = edges
                .iter()
                .map(|(o, _)| o.clone())
                .filter(|o| reaches(id, o) && reaches(o, id))
                .collect();
            circle.sort();
            out.push(circle);
        }
        out
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

/// Open what `pipeline`'s indicators read of the configured pipelines' tables, at the
/// version whose figures the owning pipeline has published (`current`): never one a failed
/// check is holding back. A table no configured pipeline loads is left out (planning then
/// says the table is not found); one whose pipeline has published no good figures yet is an
/// error naming that pipeline.
pub(crate) async fn open(
    store: &TableStore,
    pipeline: &Pipeline,
    configured: &Configured,
    current: Option<&goalpost_publish::Digest>,
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
            let published = current
                .and_then(|d| d.pipelines.iter().find(|p| p.id == owner))
                .filter(|p| p.table.name == name)
                .filter(|p| p.held.as_ref().is_none_or(|h| h.last_good_run.is_some()));
            let Some(version) = published.map(|p| p.table.version) else {
                let at = pipeline
                    .indicator(&indicator)
                    .map(|i| i.measure.as_ref().map_or(i.sql.span(), |m| m.span()));
                problems.push(pipeline.file.diagnostic(
                    at,
                    format!(
                        "indicator {indicator:?} reads table {name:?}, which pipeline {owner:?} loads but has not published good figures from yet; run it first: goalpost run {owner}"
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipeline loading `table` whose one indicator reads the tables in `reads`.
    fn pipeline(id: &str, table: &str, reads: &[&str]) -> Pipeline {
        let joins: String = reads.iter().map(|r| format!(" CROSS JOIN {r}")).collect();
        let text = format!(
            r#"title = "{id}"
timezone = "UTC"

[[source]]
kind = "file"
path = {data:?}

[table]
name = "{table}"
time = "at"

[table.columns]
at = {{ type = "timestamp" }}

[[indicator]]
id = "n"
title = "Rows"
sql = "SELECT period, count(*) AS value FROM {table}{joins} GROUP BY period"
"#,
            data = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../pipelines/demo/data/sffire/fire_department_calls_2016.csv"
            )
        );
        goalpost_spec::parse_pipeline(std::path::Path::new(&format!("/p/{id}.toml")), &text)
            .unwrap()
    }

    fn configured(pipelines: Vec<Pipeline>) -> (Configured, Vec<Pipeline>) {
        let loaded = LoadedPipelines {
            pipelines,
            failed: Vec::new(),
        };
        (Configured::new(&loaded), loaded.pipelines)
    }

    #[test]
    fn pipelines_run_after_those_whose_tables_they_read() {
        // a reads b's table, b reads c's; d reads nothing.
        let (c, ps) = configured(vec![
            pipeline("a", "ta", &["tb"]),
            pipeline("b", "tb", &["tc"]),
            pipeline("c", "tc", &[]),
            pipeline("d", "td", &[]),
        ]);
        let order: Vec<&str> = c.run_order(&ps).iter().map(|p| p.id.as_str()).collect();
        assert_eq!(order, ["c", "b", "a", "d"]);
        assert!(c.cycles(&ps).is_empty());
    }

    #[test]
    fn a_circle_of_reads_is_found_and_still_runs_every_pipeline() {
        let (c, ps) = configured(vec![
            pipeline("a", "ta", &["tc"]),
            pipeline("b", "tb", &["ta"]),
            pipeline("c", "tc", &["tb"]),
            pipeline("d", "td", &["ta"]),
            pipeline("e", "te", &[]),
        ]);
        assert_eq!(c.cycles(&ps), vec![vec!["a", "b", "c"]]);
        let order: Vec<&str> = c.run_order(&ps).iter().map(|p| p.id.as_str()).collect();
        assert_eq!(order, ["e", "a", "b", "c", "d"]);
    }
}
