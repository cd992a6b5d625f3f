//! `goalpost init <dataset address>`: a starter pipeline from a portal's own description of a
//! dataset — typed columns, a key, the refresh field when there is one, and one example
//! indicator — checked the way `goalpost validate` checks it before it is written.

use anyhow::{Context, Result, bail};
use goalpost_fetch::discover::{Discovered, discover, recognise};
use goalpost_fetch::{FetchStats, HttpClient, Tape};
use goalpost_spec::{ColumnType, Config, parse_pipeline};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

pub struct InitArgs {
    pub address: String,
    pub kind: Option<String>,
    pub id: Option<String>,
    pub timezone: Option<String>,
    pub force: bool,
    pub print: bool,
}

/// Discover, render, check, write. Returns the file written (None when printed).
pub async fn init(config: &Config, args: InitArgs) -> Result<Option<PathBuf>> {
    let portal = recognise(&args.address, args.kind.as_deref())?;
    eprintln!(
        "Reading the {} dataset at {} …",
        portal.kind(),
        args.address
    );
    let http = HttpClient::new(&config.fetch, Tape::Off, Arc::new(FetchStats::default()))?;
    let found = discover(portal, &http)
        .await
        .with_context(|| format!("reading the schema of {}", args.address))?;
    let id = match args.id {
        Some(id) if slug(&id, '-') == id || slug(&id, '_') == id => id,
        Some(id) => bail!(
            "--id {id:?} is not a pipeline id; use lowercase letters, digits, - and _, e.g. {:?}",
            slug(&id, '-')
        ),
        None => slug(&found.title, '-'),
    };
    if id.is_empty() {
        bail!(
            "cannot make a pipeline id from the title {:?}; pass --id",
            found.title
        );
    }
    let timezone = args
        .timezone
        .or_else(|| found.timezone.clone())
        .or_else(|| iana_time_zone::get_timezone().ok())
        .unwrap_or_else(|| "UTC".into());
    let path = config.pipelines_dir.join(format!("{id}.toml"));
    let text = render(&found, &id, &timezone, &args.address)?;
    // Check it exactly as `validate` would, before anything is written.
    let pipeline = parse_pipeline(&path, &text).map_err(|e| {
        anyhow::anyhow!("the starter pipeline does not validate (please report this):\n{e}")
    })?;
    let problems = goalpost_indicators::check_sql(&pipeline, &[]).await;
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        bail!(
            "the starter pipeline's SQL does not plan:\n{}",
            list.join("\n")
        );
    }
    if args.print {
        print!("{text}");
        return Ok(None);
    }
    if path.exists() && !args.force {
        bail!(
            "{} already exists; pass --force to replace it, --id to choose another name, or --print to see the pipeline",
            path.display()
        );
    }
    std::fs::create_dir_all(&config.pipelines_dir)
        .with_context(|| format!("creating {}", config.pipelines_dir.display()))?;
    std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    Ok(Some(path))
}

/// A lowercase identifier from free text: `Fire Department Calls` → `fire_department_calls`.
fn slug(text: &str, sep: char) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with(sep) && !out.is_empty() {
            out.push(sep);
        }
    }
    let out = out.trim_end_matches(sep).to_string();
    out.chars()
        .take(60)
        .collect::<String>()
        .trim_end_matches(sep)
        .to_string()
}

/// A column name for a source field: an SQL identifier, unique, not the reserved `period`.
fn column_name(field: &str, taken: &mut HashSet<String>) -> String {
    let mut base = slug(field, '_');
    if base.is_empty() {
        base = "column".into();
    }
    if base.starts_with(|c: char| c.is_ascii_digit()) {
        base = format!("c_{base}");
    }
    if base == "period" {
        base = "period_value".into();
    }
    let mut name = base.clone();
    let mut n = 2;
    while !taken.insert(name.clone()) {
        name = format!("{base}_{n}");
        n += 1;
    }
    name
}

fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn type_name(t: ColumnType) -> &'static str {
    match t {
        ColumnType::String => "string",
        ColumnType::Int64 => "int64",
        ColumnType::Float64 => "float64",
        ColumnType::Bool => "bool",
        ColumnType::Timestamp => "timestamp",
        ColumnType::Date => "date",
    }
}

fn render(found: &Discovered, id: &str, timezone: &str, address: &str) -> Result<String> {
    use std::fmt::Write;
    let mut taken = HashSet::new();
    let columns: Vec<(String, &goalpost_fetch::discover::Field)> = found
        .fields
        .iter()
        .map(|f| (column_name(&f.name, &mut taken), f))
        .collect();
    let column_of = |field: &str| {
        columns
            .iter()
            .find(|(_, f)| f.name == field)
            .map(|(c, _)| c.clone())
    };
    let key: Vec<String> = found.key.iter().filter_map(|k| column_of(k)).collect();
    if key.is_empty() {
        bail!(
            "{address}: no field identifies a row (no declared key, and none of the sampled fields is unique); write the pipeline by hand and set [table] key"
        );
    }
    let time = found.time.as_deref().and_then(column_of);
    let mut table = slug(&found.title, '_');
    if table.is_empty() || table.starts_with(|c: char| c.is_ascii_digit()) {
        table = format!("t_{}", slug(id, '_'));
    }

    let mut t = String::new();
    writeln!(
        t,
        "# Starter pipeline for {}, written by `goalpost init` from",
        q(&found.title)
    )?;
    // The address as parsed, on one line: nothing in it can start a TOML line of its own.
    let shown: String = address.chars().filter(|c| !c.is_control()).collect();
    writeln!(t, "# {shown}")?;
    writeln!(
        t,
        "# Review it: drop the columns you do not need, make the indicator the one you report,"
    )?;
    writeln!(
        t,
        "# add [[goal]]s, then `goalpost validate` and `goalpost run {id}`."
    )?;
    writeln!(t, "title = {}", q(&found.title))?;
    if let Some(d) = &found.description {
        let one_line: String = d.split_whitespace().collect::<Vec<_>>().join(" ");
        writeln!(
            t,
            "description = {}",
            q(&one_line.chars().take(500).collect::<String>())
        )?;
    }
    writeln!(t, "timezone = {}", q(timezone))?;
    writeln!(
        t,
        "# Refresh every morning at 06:00 local time (used by the daemon)."
    )?;
    writeln!(t, "schedule = \"0 0 6 * * *\"")?;
    writeln!(t)?;
    writeln!(t, "[[source]]")?;
    writeln!(t, "kind = {}", q(found.portal.kind()))?;
    for (k, v) in &found.source {
        let value = match v {
            serde_json::Value::String(s) => q(s),
            other => other.to_string(),
        };
        writeln!(t, "{k} = {value}")?;
    }
    if let Some(link) = &found.link {
        writeln!(t, "link = {}", q(link))?;
    }
    let refresh = match (found.portal.kind(), &found.incremental) {
        ("socrata", _) => "Refreshes read only rows whose :updated_at moved since the last run.".to_string(),
        ("ckan", _) => "CKAN has no row-update field: a run reads everything when the dataset's metadata_modified moved, and nothing otherwise.".to_string(),
        ("http", _) => "Conditional GET: an unchanged document costs one request and no work.".to_string(),
        (_, Some(f)) => format!("Refreshes read only rows whose {f} moved since the last run."),
        (_, None) => "Every run reads the whole dataset; set incremental_field to a field that moves when a row changes to read only what changed.".to_string(),
    };
    writeln!(t, "# {refresh}")?;
    writeln!(t)?;
    writeln!(t, "[table]")?;
    writeln!(t, "name = {}", q(&table))?;
    writeln!(
        t,
        "key = [{}]",
        key.iter().map(|k| q(k)).collect::<Vec<_>>().join(", ")
    )?;
    if let Some(time) = &time {
        writeln!(t, "time = {}", q(time))?;
    }
    writeln!(t)?;
    writeln!(t, "[table.columns]")?;
    for (name, f) in &columns {
        let mut parts = vec![
            format!("from = {}", q(&f.name)),
            format!("type = \"{}\"", type_name(f.column_type)),
        ];
        if !key.contains(name) {
            parts.push("required = false".into());
        }
        let description = f
            .description
            .as_deref()
            .or(f.label.as_deref().filter(|l| *l != f.name));
        if let Some(d) = description {
            let d: String = d.split_whitespace().collect::<Vec<_>>().join(" ");
            parts.push(format!(
                "description = {}",
                q(&d.chars().take(200).collect::<String>())
            ));
        }
        writeln!(t, "{name} = {{ {} }}", parts.join(", "))?;
    }
    writeln!(t)?;
    // Guards every refresh should have: a refresh that loses a fifth of the rows, or a
    // source whose columns change, holds the figures until someone looks.
    writeln!(
        t,
        "# Data-quality checks (docs/tables.md): a failing one holds this dataset's figures"
    )?;
    writeln!(t, "# at their last good values.")?;
    writeln!(t, "[[check]]")?;
    writeln!(t, "kind = \"row_count\"")?;
    writeln!(t, "max_drop = 20")?;
    writeln!(t)?;
    writeln!(t, "[[check]]")?;
    writeln!(t, "kind = \"schema_drift\"")?;
    writeln!(t)?;
    if time.is_none() {
        writeln!(
            t,
            "# The dataset has no timestamp field, and an indicator needs one to cut periods by."
        )?;
        writeln!(
            t,
            "# Add the column that dates each record to [table.columns] and [table] time, then an"
        )?;
        writeln!(t, "# [[indicator]] (see docs/pipelines.md).")?;
        return Ok(t);
    }
    writeln!(t, "[[indicator]]")?;
    writeln!(t, "id = \"records-per-month\"")?;
    writeln!(
        t,
        "title = {}",
        q(&format!("{}: records per month", found.title))
    )?;
    writeln!(t, "unit = \"records\"")?;
    writeln!(t, "period = \"month\"")?;
    writeln!(t, "decimals = 0")?;
    writeln!(t, "sql = \"\"\"")?;
    writeln!(t, "SELECT period, count(*) AS value")?;
    writeln!(t, "FROM \"{table}\"")?;
    writeln!(t, "GROUP BY period")?;
    writeln!(t, "\"\"\"")?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_identifiers() {
        let mut taken = HashSet::new();
        assert_eq!(column_name("Received DtTm", &mut taken), "received_dttm");
        assert_eq!(column_name(":id", &mut taken), "id");
        assert_eq!(column_name("ID", &mut taken), "id_2");
        assert_eq!(column_name("2019 count", &mut taken), "c_2019_count");
        assert_eq!(column_name("period", &mut taken), "period_value");
        assert_eq!(
            slug("Fire Dept. Calls — 2016!", '-'),
            "fire-dept-calls-2016"
        );
    }
}
