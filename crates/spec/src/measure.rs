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
    let text = |o: &Option<serde_spanned::Spanned<String>>| {
        o.as_ref().map(|s| s.get_ref().trim().to_string())
    };
    let mut select = vec!["period".to_string()];
    for b in &by {
        select.push(format!(
            "coalesce(CAST({b} AS VARCHAR), '{NOT_RECORDED}') AS {b}"
        ));
    }
    if let Some(v) = text(&ind.value) {
        select.push(format!("CAST(({v}) AS DOUBLE) AS __value"));
    }
    if let Some(c) = text(&ind.condition) {
        select.push(format!("CASE WHEN ({c}) THEN 1.0 ELSE 0.0 END AS __met"));
    }
    if let Some(n) = text(&ind.numerator) {
        select.push(format!("CAST(({n}) AS DOUBLE) AS __num"));
    }
    if let Some(d) = text(&ind.denominator) {
        select.push(format!("CAST(({d}) AS DOUBLE) AS __den"));
    }
    if let Some(f) = text(&ind.flag) {
        select.push(format!("CAST(({f}) AS VARCHAR) AS __flag"));
    }
    let filter = text(&ind.filter)
        .map(|f| format!("\nWHERE {f}"))
        .unwrap_or_default();
    let value = match measure {
        Measure::Count => "CAST(count(*) AS DOUBLE)".to_string(),
        Measure::Sum => "sum(__value)".to_string(),
        Measure::Mean => "avg(__value)".to_string(),
        Measure::Median => "median(__value)".to_string(),
        Measure::Percentile => format!(
            "percentile_cont({}) WITHIN GROUP (ORDER BY __value)",
            ind.percentile.unwrap_or(50.0) / 100.0
        ),
        Measure::Share => "100.0 * avg(__met)".to_string(),
        Measure::Ratio => format!(
            "sum(__num) / NULLIF(sum(__den), 0) * {}",
            ind.scale.unwrap_or(1.0)
        ),
        Measure::Rate => {
            let counted = if ind.value.is_some() {
                "sum(__value)"
            } else {
                "CAST(count(*) AS DOUBLE)"
            };
            let per = ind.per.unwrap_or(1000.0);
            match ind.population.as_ref().map(|p| p.get_ref()) {
                Some(Population::Table(_)) => format!("{counted} * {per}"),
                Some(Population::Fixed(people)) => format!("{counted} * {per} / {people}"),
                None => format!("{counted} * {per}"),
            }
        }
    };
    let group = if by.is_empty() {
        "GROUP BY period".to_string()
    } else {
        format!(
            "GROUP BY GROUPING SETS ((period), (period, {}))",
            by.join(", ")
        )
    };
    let mut out_cols = vec!["period".to_string()];
    out_cols.extend(by.iter().cloned());
    let flag = if ind.flag.is_some() {
        // Every distinct flag of the figure's rows, in order: "estimated,provisional".
        ", array_to_string(array_sort(array_distinct(array_agg(__flag) FILTER (WHERE __flag IS NOT NULL))), ',') AS flag"
    } else {
        ""
    };
    let rows = format!(
        "WITH __goalpost_rows AS (\n  SELECT {}\n  FROM {}{filter}\n)",
        select.join(", "),
        quote(table),
    );
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
