//! Structured indicators: the common figures a performance team reports, declared without
//! SQL. Each becomes one DataFusion query, which is what runs and what is published as the
//! indicator's SQL.

use crate::pipeline::{IndicatorSpec, Population};
use serde::{Deserialize, Serialize};

/// What a structured indicator computes per period (and group).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Measure {
    /// Rows.
    Count,
    /// Sum of `value`.
    Sum,
    /// Mean of `value`.
    Mean,
    /// Median of `value`.
    Median,
    /// The `percentile`-th percentile of `value` (linear interpolation between ranks).
    Percentile,
    /// Percent of rows meeting `condition` (rows where it is NULL do not meet it).
    Share,
    /// `sum(numerator) / sum(denominator)`, times `scale`.
    Ratio,
    /// Rows (or the sum of `value`) per `per` of `population`.
    Rate,
}

impl Measure {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::Sum => "sum",
            Self::Mean => "mean",
            Self::Median => "median",
            Self::Percentile => "percentile",
            Self::Share => "share",
            Self::Ratio => "ratio",
            Self::Rate => "rate",
        }
    }

    /// Whether the measure reads `value`.
    pub fn needs_value(self) -> bool {
        matches!(
            self,
            Self::Sum | Self::Mean | Self::Median | Self::Percentile
        )
    }
}

/// Label of a breakdown value that is missing in the data: a NULL would read as the total.
pub const NOT_RECORDED: &str = "(not recorded)";

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The query a structured indicator runs over `table` (validated beforehand: the fields its
/// measure needs are present). It returns `period`, the `by` columns (as text, a missing
/// value as [`NOT_RECORDED`]), `value` and `n`, the rows behind each figure; the total row
/// has NULL in every `by` column.
pub fn structured_sql(ind: &IndicatorSpec, measure: Measure, table: &str) -> String {
    let by: Vec<String> = ind.by.iter().map(|b| quote(b.get_ref())).collect();
    let (inputs, value) = measured(ind, measure, "");
    let mut select = grouping_columns(&by);
    select.extend(inputs);
    if let Some(f) = text(&ind.flag) {
        select.push(format!("CAST(({f}) AS VARCHAR) AS __flag"));
    }
    let rows = rows_cte(ind, &select, table);
    let group = group_by(&by);
    let mut out_cols = vec!["period".to_string()];
    out_cols.extend(by.iter().cloned());
    let flag = if ind.flag.is_some() {
        // Every distinct flag of the figure's rows, in order: "estimated,provisional".
        ", array_to_string(array_sort(array_distinct(array_agg(__flag) FILTER (WHERE __flag IS NOT NULL))), ',') AS flag"
    } else {
        ""
    };
    let figures = format!(
        "SELECT {}, {value} AS value, count(*) AS n{flag}\nFROM __goalpost_rows\n{group}",
        out_cols.join(", "),
    );
    match (measure, ind.population.as_ref().map(|p| p.get_ref())) {
        (Measure::Rate, Some(Population::Table(pop))) => {
            per_population(ind, pop, &rows, &figures, !flag.is_empty())
        }
        _ => format!("{rows}\n{figures}"),
    }
}

/// Whether structured indicators `a` and `b` group the same rows the same way, so that
/// [`combined_sql`] can compute them in one query: same period, time column, breakdown and
/// filter, and neither has flags or a population table (those have queries of their own).
pub fn same_grouping(a: &IndicatorSpec, b: &IndicatorSpec) -> bool {
    let alone = |i: &IndicatorSpec| {
        i.measure.is_none()
            || i.flag.is_some()
            // A breakdown column that could be taken for a combined query's `value_<k>`.
            || i.by.iter().any(|b| b.get_ref().starts_with("value_"))
            || matches!(
                i.population.as_ref().map(|p| p.get_ref()),
                Some(Population::Table(_))
            )
    };
    let by = |i: &IndicatorSpec| i.by.iter().map(|b| b.get_ref().clone()).collect::<Vec<_>>();
    !alone(a)
        && !alone(b)
        && a.period == b.period
        && a.time.as_ref().map(|t| t.get_ref()) == b.time.as_ref().map(|t| t.get_ref())
        && by(a) == by(b)
        && text(&a.filter) == text(&b.filter)
}

/// One query computing the structured indicators `inds` (which must share their grouping,
/// see [`same_grouping`]) over `table`: it returns `period`, the `by` columns, `value_0`,
/// `value_1`, … (the figures of each, as [`structured_sql`] computes them) and `n`. The
/// rows are read and grouped once, not once per indicator.
pub fn combined_sql(inds: &[(&IndicatorSpec, Measure)], table: &str) -> String {
    let Some((first, _)) = inds.first() else {
        return String::new();
    };
    let by: Vec<String> = first.by.iter().map(|b| quote(b.get_ref())).collect();
    let mut select = grouping_columns(&by);
    let mut out_cols = vec!["period".to_string()];
    out_cols.extend(by.iter().cloned());
    for (i, (ind, measure)) in inds.iter().enumerate() {
        let (inputs, value) = measured(ind, *measure, &format!("_{i}"));
        select.extend(inputs);
        out_cols.push(format!("{value} AS value_{i}"));
    }
    format!(
        "{}\nSELECT {}, count(*) AS n\nFROM __goalpost_rows\n{}",
        rows_cte(first, &select, table),
        out_cols.join(", "),
        group_by(&by)
    )
}

fn text(o: &Option<serde_spanned::Spanned<String>>) -> Option<String> {
    o.as_ref().map(|s| s.get_ref().trim().to_string())
}

/// `period` and the `by` columns (as text, a missing value as [`NOT_RECORDED`]).
fn grouping_columns(by: &[String]) -> Vec<String> {
    let mut select = vec!["period".to_string()];
    for b in by {
        select.push(format!(
            "coalesce(CAST({b} AS VARCHAR), '{NOT_RECORDED}') AS {b}"
        ));
    }
    select
}

/// The rows an indicator reads: `select` over `table`, with its filter.
fn rows_cte(ind: &IndicatorSpec, select: &[String], table: &str) -> String {
    let filter = text(&ind.filter)
        .map(|f| format!("\nWHERE {f}"))
        .unwrap_or_default();
    format!(
        "WITH __goalpost_rows AS (\n  SELECT {}\n  FROM {}{filter}\n)",
        select.join(", "),
        quote(table),
    )
}

/// The figures of every period, and of every group within it when there is a breakdown.
fn group_by(by: &[String]) -> String {
    if by.is_empty() {
        "GROUP BY period".to_string()
    } else {
        format!(
            "GROUP BY GROUPING SETS ((period), (period, {}))",
            by.join(", ")
        )
    }
}

/// What a measure needs from each row (`__value`, `__met`, `__num`, `__den`, each with
/// `suffix`) and its aggregate over them.
fn measured(ind: &IndicatorSpec, measure: Measure, suffix: &str) -> (Vec<String>, String) {
    let mut select = Vec::new();
    if let Some(v) = text(&ind.value) {
        select.push(format!("CAST(({v}) AS DOUBLE) AS __value{suffix}"));
    }
    if let Some(c) = text(&ind.condition) {
        select.push(format!(
            "CASE WHEN ({c}) THEN 1.0 ELSE 0.0 END AS __met{suffix}"
        ));
    }
    if let Some(n) = text(&ind.numerator) {
        select.push(format!("CAST(({n}) AS DOUBLE) AS __num{suffix}"));
    }
    if let Some(d) = text(&ind.denominator) {
        select.push(format!("CAST(({d}) AS DOUBLE) AS __den{suffix}"));
    }
    let value = match measure {
        Measure::Count => "CAST(count(*) AS DOUBLE)".to_string(),
        Measure::Sum => format!("sum(__value{suffix})"),
        Measure::Mean => format!("avg(__value{suffix})"),
        Measure::Median => format!("median(__value{suffix})"),
        Measure::Percentile => format!(
            "percentile_cont({}) WITHIN GROUP (ORDER BY __value{suffix})",
            ind.percentile.unwrap_or(50.0) / 100.0
        ),
        Measure::Share => format!("100.0 * avg(__met{suffix})"),
        Measure::Ratio => format!(
            "sum(__num{suffix}) / NULLIF(sum(__den{suffix}), 0) * {}",
            ind.scale.unwrap_or(1.0)
        ),
        Measure::Rate => {
            let counted = if ind.value.is_some() {
                format!("sum(__value{suffix})")
            } else {
                "CAST(count(*) AS DOUBLE)".to_string()
            };
            let per = ind.per.unwrap_or(1000.0);
            match ind.population.as_ref().map(|p| p.get_ref()) {
                Some(Population::Table(_)) => format!("{counted} * {per}"),
                Some(Population::Fixed(people)) => format!("{counted} * {per} / {people}"),
                None => format!("{counted} * {per}"),
            }
        }
    };
    (select, value)
}

/// A rate whose population comes from a table: the counted figures divided by the matching
/// group's population (summed over the table's rows), the total's by the whole sum. A group
/// the population table has no row for gets no figure.
fn per_population(
    ind: &IndicatorSpec,
    pop: &crate::pipeline::PopulationTable,
    rows: &str,
    figures: &str,
    flag: bool,
) -> String {
    let matched: Vec<String> = pop.by.iter().map(|b| quote(b)).collect();
    // Summed as stored, so a text column fails planning (`validate`) rather than a run.
    let people = format!("CAST(sum({}) AS DOUBLE)", quote(&pop.column));
    let population = if matched.is_empty() {
        format!("SELECT {people} AS __people\n  FROM {}", quote(&pop.table))
    } else {
        let keys: Vec<String> = matched
            .iter()
            .map(|m| format!("CAST({m} AS VARCHAR) AS {m}"))
            .collect();
        format!(
            "SELECT {}, {people} AS __people\n  FROM {}\n  GROUP BY {}",
            keys.join(", "),
            quote(&pop.table),
            matched.join(", ")
        )
    };
    let mut cols = vec!["f.period".to_string()];
    cols.extend(ind.by.iter().map(|b| format!("f.{}", quote(b.get_ref()))));
    // The total row has NULL in every `by` column; a group never does (a missing value
    // reads as "(not recorded)").
    let denominator = match ind.by.first() {
        Some(first) if !matched.is_empty() => format!(
            "CASE WHEN f.{} IS NULL THEN (SELECT sum(__people) FROM __goalpost_population) ELSE p.__people END",
            quote(first.get_ref())
        ),
        _ => "(SELECT sum(__people) FROM __goalpost_population)".to_string(),
    };
    cols.push(format!("f.value / NULLIF({denominator}, 0) AS value"));
    cols.push("f.n".to_string());
    if flag {
        cols.push("f.flag".to_string());
    }
    let join = if matched.is_empty() {
        String::new()
    } else {
        let on: Vec<String> = matched.iter().map(|m| format!("f.{m} = p.{m}")).collect();
        format!(" LEFT JOIN __goalpost_population p ON {}", on.join(" AND "))
    };
    format!(
        "{rows},\n__goalpost_population AS (\n  {population}\n),\n__goalpost_figures AS (\n{figures}\n)\nSELECT {}\nFROM __goalpost_figures f{join}",
        cols.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn indicators() -> Vec<IndicatorSpec> {
        let text = r#"title = "t"
timezone = "UTC"
[[source]]
kind = "file"
path = "Cargo.toml"
[table]
name = "calls"
key = ["id"]
time = "created_at"
[table.columns]
id = { type = "int64" }
created_at = { type = "timestamp" }
closed_at = { type = "timestamp", required = false }
zone = { type = "string" }
kind = { type = "string" }

[[indicator]]
id = "median-hours"
title = "m"
by = ["zone"]
measure = "median"
value = "(extract(epoch FROM closed_at) - extract(epoch FROM created_at)) / 3600.0"

[[indicator]]
id = "closed-72h"
title = "s"
by = ["zone"]
measure = "share"
condition = "closed_at IS NOT NULL"

[[indicator]]
id = "by-kind"
title = "c"
by = ["kind"]
measure = "count"

[[indicator]]
id = "filtered"
title = "f"
by = ["zone"]
measure = "count"
filter = "kind = 'noise'"
"#;
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("t.toml");
        crate::parse_pipeline(&path, text).unwrap().spec.indicators
    }

    #[test]
    fn indicators_group_together_only_when_they_group_the_same_rows_the_same_way() {
        let i = indicators();
        assert!(same_grouping(&i[0], &i[1]), "same breakdown, no filter");
        assert!(!same_grouping(&i[0], &i[2]), "another breakdown");
        assert!(!same_grouping(&i[0], &i[3]), "a filter");
        let mut flagged = i[1].clone();
        flagged.flag = Some(serde_spanned::Spanned::new(0..0, "'estimated'".into()));
        assert!(
            !same_grouping(&i[0], &flagged),
            "flags have a query of their own"
        );
    }

    #[test]
    fn a_combined_query_computes_each_measure_over_its_own_inputs_in_one_grouping() {
        let i = indicators();
        let sql = combined_sql(
            &[(&i[0], Measure::Median), (&i[1], Measure::Share)],
            "calls",
        );
        assert!(sql.contains("AS __value_0"), "{sql}");
        assert!(sql.contains("AS __met_1"), "{sql}");
        assert!(sql.contains("median(__value_0) AS value_0"), "{sql}");
        assert!(sql.contains("100.0 * avg(__met_1) AS value_1"), "{sql}");
        assert_eq!(sql.matches("GROUP BY GROUPING SETS").count(), 1, "{sql}");
        assert!(sql.contains("count(*) AS n"), "{sql}");
        // The query of one indicator alone is as before: unsuffixed names.
        let alone = structured_sql(&i[0], Measure::Median, "calls");
        assert!(
            alone.contains("median(__value) AS value, count(*) AS n"),
            "{alone}"
        );
    }
}
