use crate::check::CheckKind;
use crate::diagnostic::{Diagnostic, SourceFile, SpecError};
use crate::pipeline::{ColumnType, Partition, Pipeline, PipelineSpec, Population, parse_iso_date};
use crate::source::SourceSpec;
use chrono::NaiveDate;
use chrono_tz::Tz;
use serde_spanned::Spanned;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Every pipeline file in a folder: those that loaded, and the errors of those that did not.
#[derive(Debug, Default)]
pub struct LoadedPipelines {
    pub pipelines: Vec<Pipeline>,
    /// Per failing file: its id (file stem) and its problems.
    pub failed: Vec<(String, SpecError)>,
}

/// Load every `*.toml` in `dir` (sorted by name), checking each fully.
pub fn load_pipelines(dir: &Path) -> Result<LoadedPipelines, SpecError> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| SpecError::io(dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
        .collect();
    paths.sort();
    let mut out = LoadedPipelines::default();
    for path in paths {
        match load_pipeline(&path) {
            Ok(p) => {
                // Each pipeline owns its table: a second writer would overwrite the first's.
                let name = p.spec.table.name.get_ref();
                if let Some(owner) = out
                    .pipelines
                    .iter()
                    .find(|o| o.spec.table.name.get_ref() == name)
                {
                    let d = p.file.diagnostic(
                        Some(p.spec.table.name.span()),
                        format!(
                            "table {name:?} already belongs to pipeline {:?} ({}); each pipeline needs its own table",
                            owner.id,
                            owner.file.path.display()
                        ),
                    );
                    out.failed.push((p.id, SpecError::Invalid(vec![d])));
                } else {
                    out.pipelines.push(p);
                }
            }
            Err(e) => out.failed.push((file_stem(&path), e)),
        }
    }
    Ok(out)
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Load one pipeline file and check it: syntax, types, unknown keys, and every cross
/// reference (goal → indicator → table → column). All problems are reported together.
pub fn load_pipeline(path: &Path) -> Result<Pipeline, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|e| SpecError::io(path, e))?;
    parse_pipeline(path, &text)
}

/// Check a pipeline given as text, as if read from `path` (whose folder resolves relative
/// source paths and whose name gives the id).
pub fn parse_pipeline(path: &Path, text: &str) -> Result<Pipeline, SpecError> {
    let file = SourceFile::new(path, text);
    let mut spec: PipelineSpec = toml::from_str(&file.text)
        .map_err(|e| SpecError::Invalid(vec![file.diagnostic(e.span(), e.message().trim())]))?;
    let mut v = Checker {
        file: &file,
        errors: Vec::new(),
    };
    let id = file_stem(path);
    v.check_id(&id, spec.id.as_ref());
    let tz = v.check_tz(&spec.timezone);
    let as_of = spec.as_of.as_ref().and_then(|d| v.date(d, "as_of"));
    let schedule = match (&spec.schedule, tz) {
        (Some(text), Some(tz)) => match crate::Schedule::parse(text.get_ref(), tz) {
            Ok(s) => Some(s),
            Err(e) => {
                v.at(text, e);
                None
            }
        },
        _ => None,
    };
    if !(1..=12).contains(&spec.fiscal_year_start) {
        v.push(
            None,
            format!(
                "fiscal_year_start is {}; expected a month number from 1 to 12",
                spec.fiscal_year_start
            ),
        );
    }
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    v.check_sources(&spec, &dir);
    v.check_table(&spec);
    v.check_table_options(&spec);
    v.check_checks(&spec);
    v.check_indicators_and_goals(&spec);
    v.check_measures(&spec);
    v.check_news(&spec);
    if !v.errors.is_empty() {
        return Err(SpecError::Invalid(v.errors));
    }
    // A structured indicator runs, and publishes, the query made from it.
    let table = spec.table.name.get_ref().clone();
    for ind in &mut spec.indicators {
        if let Some(m) = &ind.measure {
            let sql = crate::measure::structured_sql(ind, *m.get_ref(), &table);
            ind.sql = Spanned::new(m.span(), sql);
        }
    }
    Ok(Pipeline {
        id,
        dir,
        tz: tz.unwrap_or(Tz::UTC),
        as_of,
        schedule,
        file,
        spec,
    })
}

struct Checker<'a> {
    file: &'a SourceFile,
    errors: Vec<Diagnostic>,
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && !s.starts_with(['-', '_'])
}

impl Checker<'_> {
    fn push(&mut self, span: Option<std::ops::Range<usize>>, message: String) {
        self.errors.push(self.file.diagnostic(span, message));
    }

    fn at<T>(&mut self, value: &Spanned<T>, message: String) {
        self.push(Some(value.span()), message);
    }

    fn check_id(&mut self, stem: &str, id: Option<&Spanned<String>>) {
        if !is_slug(stem) {
            self.push(
                None,
                format!(
                    "pipeline file name {stem:?} is not a valid pipeline id; expected lowercase \
                     letters, digits, '-' and '_' (the id is the file name without .toml)"
                ),
            );
        }
        if let Some(id) = id
            && id.get_ref() != stem
        {
            self.at(
                id,
                format!(
                    "id {:?} differs from the file name; expected {stem:?} (or leave id out)",
                    id.get_ref()
                ),
            );
        }
    }

    fn check_tz(&mut self, tz: &Spanned<String>) -> Option<Tz> {
        match tz.get_ref().parse::<Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                self.at(
                    tz,
                    format!(
                        "unknown time zone {:?}; expected an IANA name such as \"America/New_York\"",
                        tz.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn date(&mut self, value: &Spanned<String>, what: &str) -> Option<NaiveDate> {
        match parse_iso_date(value.get_ref()) {
            Some(d) => Some(d),
            None => {
                self.at(
                    value,
                    format!(
                        "{what} {:?} is not a date; expected YYYY-MM-DD",
                        value.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn check_sources(&mut self, spec: &PipelineSpec, dir: &Path) {
        if spec.sources.is_empty() {
            self.push(
                None,
                "no [[source]]; expected at least one source of rows".into(),
            );
        }
        for source in &spec.sources {
            for column in source.get_ref().fields().keys() {
                if spec.table.column(column).is_none() {
                    self.at(
                        source,
                        format!(
                            "source field override names column {column:?}, which is not in \
                             [table.columns]; the table has: {}",
                            column_list(spec)
                        ),
                    );
                }
            }
            if let Some(link) = source.get_ref().link()
                && !(link.starts_with("https://") || link.starts_with("http://"))
            {
                self.at(
                    source,
                    format!("link {link:?} is not a web address; expected one starting with https:// or http://"),
                );
            }
            match source.get_ref() {
                SourceSpec::File(f) => {
                    let path = dir.join(&f.path);
                    if !path.is_file() {
                        self.at(
                            source,
                            format!(
                                "source file {} does not exist (paths are relative to the \
                                 pipeline file's folder)",
                                path.display()
                            ),
                        );
                    }
                    if f.page_size == 0 {
                        self.at(source, "page_size is 0; expected at least 1".into());
                    }
                }
                web => self.check_web_source(source, web),
            }
        }
    }

    fn check_web_source(&mut self, at: &Spanned<SourceSpec>, spec: &SourceSpec) {
        let url = spec.url().unwrap_or_default();
        if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() < 10 {
            self.at(
                at,
                format!("url {url:?} is not a web address; expected one starting with https:// or http://"),
            );
        } else if let Some(found) = credential_in_url(url) {
            // Pipeline files are shared and URLs are logged, recorded and shown in errors:
            // a credential belongs in the environment, sent as a header.
            let instead = match spec {
                SourceSpec::Http(_) => "name an environment variable with auth_env",
                SourceSpec::Socrata(_) => "name an environment variable with app_token_env",
                SourceSpec::Ckan(_) | SourceSpec::Opendatasoft(_) => {
                    "name an environment variable with api_key_env"
                }
                SourceSpec::Arcgis(_) => "name an environment variable with token_env",
                _ => "leave it out; this source sends no credentials",
            };
            self.at(
                at,
                format!(
                    "url holds a credential ({found}); keep secrets out of pipeline files: {instead}"
                ),
            );
        }
        let ceiling = match spec {
            SourceSpec::Socrata(_) => Some(50_000),
            SourceSpec::Ckan(_) => Some(32_000),
            SourceSpec::Opendatasoft(_) => Some(100),
            _ => None,
        };
        match (spec.page_size(), ceiling) {
            (Some(0), _) => self.at(at, "page_size is 0; expected at least 1".into()),
            (Some(n), Some(max)) if n > max => self.at(
                at,
                format!(
                    "page_size {n} is more than the {max} rows a {} request may return",
                    spec.kind()
                ),
            ),
            _ => {}
        }
        match spec {
            SourceSpec::Socrata(s) => {
                let ok = s.dataset.len() == 9
                    && s.dataset.as_bytes()[4] == b'-'
                    && s.dataset
                        .bytes()
                        .enumerate()
                        .all(|(i, b)| i == 4 || b.is_ascii_alphanumeric());
                if !ok {
                    self.at(
                        at,
                        format!("dataset {:?} is not a Socrata dataset id; expected the form \"abcd-1234\" from the dataset's address", s.dataset),
                    );
                }
            }
            SourceSpec::Ckan(s) => {
                if s.resource_id.is_none() && s.dataset.is_none() {
                    self.at(
                        at,
                        "a ckan source needs resource_id, or dataset (and optionally resource)"
                            .into(),
                    );
                }
                if s.resource_id.is_some() && s.resource.is_some() {
                    self.at(
                        at,
                        "give either resource_id or resource (within dataset), not both".into(),
                    );
                }
            }
            _ => {}
        }
        let env_vars = match spec {
            SourceSpec::Http(s) => s.auth_env.as_deref(),
            SourceSpec::Socrata(s) => s.app_token_env.as_deref(),
            SourceSpec::Ckan(s) => s.api_key_env.as_deref(),
            SourceSpec::Arcgis(s) => s.token_env.as_deref(),
            SourceSpec::Opendatasoft(s) => s.api_key_env.as_deref(),
            _ => None,
        };
        if let Some(name) = env_vars
            && (name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        {
            self.at(
                at,
                format!("{name:?} is not an environment variable name; expected letters, digits and _ (the secret itself never goes in the pipeline file)"),
            );
        }
    }

    fn check_table(&mut self, spec: &PipelineSpec) {
        let table = &spec.table;
        if !is_identifier(table.name.get_ref()) || table.name.get_ref().starts_with('_') {
            self.at(
                &table.name,
                format!(
                    "table name {:?} is not a plain SQL name; expected lowercase letters, digits \
                     and '_', starting with a letter",
                    table.name.get_ref()
                ),
            );
        }
        if table.columns.is_empty() {
            self.push(
                None,
                "[table.columns] is empty; expected at least one column".into(),
            );
        }
        for (name, column) in &table.columns {
            if !is_identifier(name.get_ref()) {
                self.at(
                    name,
                    format!(
                        "column name {:?} is not a plain SQL name; expected lowercase letters, \
                         digits and '_'",
                        name.get_ref()
                    ),
                );
            }
            if name.get_ref() == "period" {
                self.at(
                    name,
                    "column name \"period\" is reserved: indicator SQL sees each row's period \
                     under that name"
                        .into(),
                );
            }
            if let Some(tz) = &column.tz {
                if column.kind != ColumnType::Timestamp {
                    self.at(
                        tz,
                        format!(
                            "tz is only for timestamp columns; {:?} is {}",
                            name.get_ref(),
                            column.kind.as_str()
                        ),
                    );
                }
                self.check_tz(tz);
            }
        }
        for key in &table.key {
            if table.column(key.get_ref()).is_none() {
                self.at(
                    key,
                    format!(
                        "key column {:?} is not in [table.columns]; the table has: {}",
                        key.get_ref(),
                        column_list(spec)
                    ),
                );
            }
        }
        if let Some(time) = &table.time {
            self.check_time_column(spec, time);
        }
    }

    /// A column named in the pipeline that must be declared in `[table.columns]`.
    fn declared(
        &mut self,
        spec: &PipelineSpec,
        name: &Spanned<String>,
        what: &str,
    ) -> Option<ColumnType> {
        match spec.table.column(name.get_ref()) {
            Some(c) => Some(c.kind),
            None => {
                self.at(
                    name,
                    format!(
                        "{what} {:?} is not in [table.columns]; the table has: {}",
                        name.get_ref(),
                        column_list(spec)
                    ),
                );
                None
            }
        }
    }

    fn check_table_options(&mut self, spec: &PipelineSpec) {
        let table = &spec.table;
        if let Some(updated) = &table.updated {
            self.declared(spec, updated, "updated column");
        }
        if let Some(text) = &table.partition {
            match Partition::parse(text.get_ref()) {
                None => self.at(
                    text,
                    format!(
                        "partition {:?} is not a column, \"month(column)\" or \"year(column)\"",
                        text.get_ref()
                    ),
                ),
                Some(Partition::Column(c)) => {
                    let named = Spanned::new(text.span(), c);
                    if let Some(kind) = self.declared(spec, &named, "partition column")
                        && matches!(kind, ColumnType::Float64 | ColumnType::Timestamp)
                    {
                        self.at(
                            text,
                            format!(
                                "partition column {:?} is {}: every distinct value would get its \
                                 own folder; use \"month({})\" or a column with few values",
                                named.get_ref(),
                                kind.as_str(),
                                named.get_ref()
                            ),
                        );
                    }
                }
                Some(Partition::Derived { source, column, .. }) => {
                    let named = Spanned::new(text.span(), source);
                    if let Some(kind) = self.declared(spec, &named, "partition column")
                        && !matches!(kind, ColumnType::Timestamp | ColumnType::Date)
                    {
                        self.at(
                            text,
                            format!(
                                "{:?} is {}; month() and year() need a timestamp or date column",
                                named.get_ref(),
                                kind.as_str()
                            ),
                        );
                    }
                    if table.column(&column).is_some() {
                        self.at(
                            text,
                            format!(
                                "partition {:?} adds the column {column:?}, which is already \
                                 declared; rename the declared column",
                                text.get_ref()
                            ),
                        );
                    }
                }
            }
        }
        if let Some(deletes) = &table.deletes {
            self.declared(spec, &deletes.column, "deletes column");
            if deletes.values.is_empty() {
                self.at(
                    &deletes.column,
                    "deletes needs `values`: the column's values that mark a deleted record".into(),
                );
            }
            if table.key.is_empty() {
                self.at(
                    &deletes.column,
                    "deletes needs a [table] key: a deletion removes the record with that key"
                        .into(),
                );
            }
        }
        if !(0.0..=100.0).contains(&table.quarantine_limit) {
            self.push(
                None,
                format!(
                    "[table] quarantine_limit = {} is not a percentage; expected 0 to 100",
                    table.quarantine_limit
                ),
            );
        }
    }

    fn check_checks(&mut self, spec: &PipelineSpec) {
        let mut ids = HashSet::new();
        for check in &spec.checks {
            let kind = *check.kind.get_ref();
            let id = check.id();
            if !ids.insert(id.clone()) {
                let at = check.id.as_ref().map_or(check.kind.span(), |i| i.span());
                self.push(
                    Some(at),
                    format!("two checks are named {id:?}; give one an `id`"),
                );
            }
            let column_kind = match &check.column {
                Some(c) => self.declared(spec, c, "check column"),
                None => None,
            };
            let needs = |this: &mut Self, what: &str| {
                this.at(
                    &check.kind,
                    format!("a {} check needs {what}", kind.as_str()),
                )
            };
            if kind.needs_column() && check.column.is_none() {
                if kind == CheckKind::Freshness {
                    if spec.table.time.is_none() {
                        needs(self, "`column` (or a [table] time column)");
                    }
                } else {
                    needs(self, "`column`");
                }
            }
            match kind {
                CheckKind::Unique => {
                    for c in &check.columns {
                        self.declared(spec, c, "check column");
                    }
                    if check.columns.is_empty() && spec.table.key.is_empty() {
                        needs(self, "`columns` (or a [table] key)");
                    }
                }
                CheckKind::Range => {
                    if check.min.is_none() && check.max.is_none() {
                        needs(self, "`min`, `max` or both");
                    }
                    if let (Some(lo), Some(hi)) = (check.min, check.max)
                        && lo > hi
                    {
                        self.at(
                            &check.kind,
                            format!("range check: min {lo} is above max {hi}"),
                        );
                    }
                    if let Some(k) = column_kind
                        && !matches!(k, ColumnType::Int64 | ColumnType::Float64)
                    {
                        self.at(
                            &check.kind,
                            format!(
                                "a range check needs a number column; this one is {}",
                                k.as_str()
                            ),
                        );
                    }
                }
                CheckKind::Allowed if check.values.is_empty() => needs(self, "`values`"),
                CheckKind::Regex => match &check.pattern {
                    None => needs(self, "`pattern`"),
                    Some(p) => {
                        if let Err(e) = regex::Regex::new(p.get_ref()) {
                            self.at(p, format!("pattern is not a regular expression: {e}"));
                        }
                    }
                },
                CheckKind::Freshness => {
                    if check.max_age.is_none() {
                        needs(self, "`max_age`, e.g. \"2d\"");
                    }
                    if let Some(k) = column_kind
                        && !matches!(k, ColumnType::Timestamp | ColumnType::Date)
                    {
                        self.at(
                            &check.kind,
                            format!(
                                "a freshness check needs a timestamp or date column; this one is {}",
                                k.as_str()
                            ),
                        );
                    }
                }
                CheckKind::RowCount => match check.max_drop {
                    None => needs(self, "`max_drop` (percent)"),
                    Some(d) if !(0.0..=100.0).contains(&d) => self.at(
                        &check.kind,
                        format!("max_drop = {d} is not a percentage; expected 0 to 100"),
                    ),
                    Some(_) => {}
                },
                _ => {}
            }
        }
    }

    /// Each indicator has SQL or a measure, and a measure has exactly the fields it uses.
    fn check_measures(&mut self, spec: &PipelineSpec) {
        use crate::measure::Measure;
        for ind in &spec.indicators {
            let id = ind.id.get_ref();
            let has_sql = !ind.sql.get_ref().trim().is_empty();
            let Some(measure) = &ind.measure else {
                if !has_sql {
                    self.at(
                        &ind.id,
                        format!(
                            "indicator {id:?} needs `sql` or a `measure` (count, sum, mean, median, percentile, share, ratio, rate)"
                        ),
                    );
                }
                let stray = [
                    ("value", ind.value.is_some()),
                    ("percentile", ind.percentile.is_some()),
                    ("condition", ind.condition.is_some()),
                    ("filter", ind.filter.is_some()),
                    ("numerator", ind.numerator.is_some()),
                    ("denominator", ind.denominator.is_some()),
                    ("scale", ind.scale.is_some()),
                    ("per", ind.per.is_some()),
                    ("population", ind.population.is_some()),
                    ("flag", ind.flag.is_some()),
                ];
                for (key, set) in stray {
                    if set {
                        self.at(
                            &ind.id,
                            format!(
                                "indicator {id:?}: `{key}` belongs to a structured indicator (with `measure`); with `sql`, write it into the query"
                            ),
                        );
                    }
                }
                continue;
            };
            let m = *measure.get_ref();
            if has_sql {
                self.at(
                    measure,
                    format!("indicator {id:?} has both `sql` and `measure`; keep one"),
                );
            }
            let need = |this: &mut Self, what: &str| {
                this.at(
                    measure,
                    format!("indicator {id:?}: measure {} needs {what}", m.as_str()),
                )
            };
            let unused = |this: &mut Self, key: &str, set: bool| {
                if set {
                    this.at(
                        measure,
                        format!(
                            "indicator {id:?}: measure {} does not use `{key}`",
                            m.as_str()
                        ),
                    );
                }
            };
            if m.needs_value() && ind.value.is_none() {
                need(self, "`value`, the expression measured");
            }
            if !m.needs_value() && m != Measure::Rate {
                unused(self, "value", ind.value.is_some());
            }
            match ind.percentile {
                _ if m != Measure::Percentile => {
                    unused(self, "percentile", ind.percentile.is_some())
                }
                None => need(self, "`percentile`, e.g. 90"),
                Some(p) if !(0.0..=100.0).contains(&p) => self.at(
                    measure,
                    format!("indicator {id:?}: percentile {p} is not between 0 and 100"),
                ),
                Some(_) => {}
            }
            if m == Measure::Share {
                if ind.condition.is_none() {
                    need(self, "`condition`, the SQL condition a row must meet");
                }
            } else {
                unused(self, "condition", ind.condition.is_some());
            }
            if m == Measure::Ratio {
                if ind.numerator.is_none() || ind.denominator.is_none() {
                    need(
                        self,
                        "`numerator` and `denominator`, the expressions summed",
                    );
                }
            } else {
                unused(self, "numerator", ind.numerator.is_some());
                unused(self, "denominator", ind.denominator.is_some());
                unused(self, "scale", ind.scale.is_some());
            }
            if m == Measure::Rate {
                match ind.population.as_ref().map(|p| (p, p.get_ref())) {
                    None => need(
                        self,
                        "`population`, e.g. the number of residents or a table holding it",
                    ),
                    Some((at, Population::Fixed(p))) if !(*p > 0.0 && p.is_finite()) => self.at(
                        at,
                        format!("indicator {id:?}: population {p} must be above 0"),
                    ),
                    Some((at, Population::Table(t))) => {
                        self.check_population_table(spec, ind, at, t)
                    }
                    Some(_) => {}
                }
                if ind.per.is_some_and(|p| p <= 0.0) {
                    self.at(measure, format!("indicator {id:?}: per must be above 0"));
                }
            } else {
                unused(self, "per", ind.per.is_some());
                unused(self, "population", ind.population.is_some());
            }
        }
    }

    /// `[[news]]` rules name events, goals that exist and a threshold when one is crossed.
    fn check_news(&mut self, spec: &PipelineSpec) {
        use crate::news::NewsEvent;
        for (i, rule) in spec.news.iter().enumerate() {
            let n = i + 1;
            if rule.on.is_empty() {
                self.push(
                    None,
                    format!("[[news]] rule {n}: `on` is empty; expected events such as [\"goal_met\", \"status_changed\"]"),
                );
            }
            for g in &rule.goals {
                if !spec.goals.iter().any(|goal| goal.id() == g.get_ref()) {
                    let ids: Vec<&str> = spec.goals.iter().map(|goal| goal.id()).collect();
                    self.at(
                        g,
                        format!(
                            "[[news]] rule {n}: no goal {:?}; the goals are: {}",
                            g.get_ref(),
                            if ids.is_empty() {
                                "none".to_string()
                            } else {
                                ids.join(", ")
                            }
                        ),
                    );
                }
            }
            if rule.publish_for > std::time::Duration::from_secs(10 * 366 * 24 * 3600) {
                self.push(
                    None,
                    format!("[[news]] rule {n}: publish_for is longer than 10 years; items are archived, never deleted, so a shorter window loses nothing"),
                );
            }
            let crossing = rule
                .on
                .iter()
                .find(|e| *e.get_ref() == NewsEvent::ThresholdCrossed);
            match (crossing, rule.threshold) {
                (Some(e), None) => self.at(
                    e,
                    format!("[[news]] rule {n}: threshold_crossed needs `threshold`, the value whose crossing is announced"),
                ),
                (None, Some(_)) => self.push(
                    None,
                    format!("[[news]] rule {n}: `threshold` is only used with threshold_crossed"),
                ),
                _ => {}
            }
        }
    }

    fn check_population_table(
        &mut self,
        spec: &PipelineSpec,
        ind: &crate::pipeline::IndicatorSpec,
        at: &Spanned<Population>,
        t: &crate::pipeline::PopulationTable,
    ) {
        let id = ind.id.get_ref();
        if &t.table == spec.table.name.get_ref() {
            self.at(
                at,
                format!(
                    "indicator {id:?}: the population table is this pipeline's own table {:?}; name the table of the pipeline that loads the population",
                    t.table
                ),
            );
        }
        for (what, name) in [("table", &t.table), ("column", &t.column)]
            .into_iter()
            .chain(t.by.iter().map(|b| ("by column", b)))
        {
            if !is_identifier(name) {
                self.at(
                    at,
                    format!(
                        "indicator {id:?}: population {what} {name:?} is not a valid name; expected lowercase letters, digits and '_'"
                    ),
                );
            }
        }
        for b in &t.by {
            if !ind.by.iter().any(|i| i.get_ref() == b) {
                self.at(
                    at,
                    format!(
                        "indicator {id:?}: population is broken down by {b:?}, which is not one of the indicator's `by` columns ({})",
                        if ind.by.is_empty() {
                            "it has none".to_string()
                        } else {
                            ind.by
                                .iter()
                                .map(|b| b.get_ref().as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    ),
                );
            }
        }
    }

    fn check_time_column(&mut self, spec: &PipelineSpec, time: &Spanned<String>) {
        match spec.table.column(time.get_ref()) {
            None => self.at(
                time,
                format!(
                    "time column {:?} is not in [table.columns]; the table has: {}",
                    time.get_ref(),
                    column_list(spec)
                ),
            ),
            Some(c) if !matches!(c.kind, ColumnType::Timestamp | ColumnType::Date) => self.at(
                time,
                format!(
                    "time column {:?} is {}; expected a timestamp or date column",
                    time.get_ref(),
                    c.kind.as_str()
                ),
            ),
            Some(_) => {}
        }
    }

    fn check_indicators_and_goals(&mut self, spec: &PipelineSpec) {
        let mut ids = HashSet::new();
        for ind in &spec.indicators {
            if !is_slug(ind.id.get_ref()) {
                self.at(
                    &ind.id,
                    format!(
                        "indicator id {:?} is not valid; expected lowercase letters, digits, '-' and '_'",
                        ind.id.get_ref()
                    ),
                );
            }
            if !ids.insert(ind.id.get_ref().as_str()) {
                self.at(
                    &ind.id,
                    format!("indicator id {:?} is used twice", ind.id.get_ref()),
                );
            }
            match &ind.time {
                Some(time) => self.check_time_column(spec, time),
                None if spec.table.time.is_none() => self.at(
                    &ind.id,
                    format!(
                        "indicator {:?} has no time column: set `time` on it or on [table]",
                        ind.id.get_ref()
                    ),
                ),
                None => {}
            }
            for by in &ind.by {
                if spec.table.column(by.get_ref()).is_none() {
                    self.at(
                        by,
                        format!(
                            "indicator {:?} breaks down by {:?}, which is not in [table.columns]; \
                             the table has: {}",
                            ind.id.get_ref(),
                            by.get_ref(),
                            column_list(spec)
                        ),
                    );
                }
            }
        }
        let mut goal_ids = HashSet::new();
        for goal in &spec.goals {
            if let Some(id) = &goal.id
                && !is_slug(id.get_ref())
            {
                self.at(id, format!("goal id {:?} is not valid; expected lowercase letters, digits, '-' and '_'", id.get_ref()));
            }
            if !goal_ids.insert(goal.id().to_string()) {
                self.at(
                    goal.id.as_ref().unwrap_or(&goal.indicator),
                    format!(
                        "goal id {:?} is used twice; give one of them an `id`",
                        goal.id()
                    ),
                );
            }
            let target_date = self.date(&goal.target.by, "target.by");
            let mut last_date: Option<NaiveDate> = None;
            for m in &goal.milestones {
                let Some(date) = self.date(&m.by, "milestone by") else {
                    continue;
                };
                if last_date.is_some_and(|l| date <= l) {
                    self.at(
                        &m.by,
                        "milestones must be in date order, each after the one before".into(),
                    );
                }
                if target_date.is_some_and(|t| date >= t) {
                    self.at(
                        &m.by,
                        format!(
                            "milestone date {date} is not before the target date {}",
                            goal.target.by.get_ref()
                        ),
                    );
                }
                last_date = Some(date);
            }
            if let Some(t) = goal.tolerance
                && !(0.0..=1.0).contains(&t)
            {
                self.at(
                    &goal.indicator,
                    format!(
                        "tolerance {t} is out of range; expected a share from 0 to 1 (0.1 = 10 %)"
                    ),
                );
            }
            let Some(ind) = spec
                .indicators
                .iter()
                .find(|i| i.id.get_ref() == goal.indicator.get_ref())
            else {
                let known: Vec<&str> = spec
                    .indicators
                    .iter()
                    .map(|i| i.id.get_ref().as_str())
                    .collect();
                self.at(
                    &goal.indicator,
                    format!(
                        "goal names indicator {:?}, which is not defined; the pipeline has: {}",
                        goal.indicator.get_ref(),
                        if known.is_empty() {
                            "no indicators".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
                continue;
            };
            if goal.better.or(ind.better).is_none() {
                self.at(
                    &goal.indicator,
                    format!(
                        "goal on {:?} does not say which direction is better; set better = \"higher\" or \"lower\" on the goal or the indicator",
                        goal.indicator.get_ref()
                    ),
                );
            }
            if (goal.baseline.value - goal.target.value).abs() < f64::EPSILON {
                self.at(
                    &goal.baseline.period,
                    "baseline and target values are equal; a goal needs a distance to cover".into(),
                );
            }
            match goal.baseline.period(ind.period, spec.fiscal_year_start) {
                None => self.at(
                    &goal.baseline.period,
                    format!(
                        "baseline period {:?} is not a {} label; expected e.g. {:?}",
                        goal.baseline.period.get_ref(),
                        ind.period,
                        ind.period.example()
                    ),
                ),
                Some(p) => {
                    if let Some(by) = target_date
                        && by < p.end()
                    {
                        self.at(
                            &goal.target.by,
                            format!(
                                "target date {by} is not after the baseline period {} (which ends {})",
                                p.label(),
                                p.end()
                            ),
                        );
                    }
                }
            }
        }
    }
}

fn column_list(spec: &PipelineSpec) -> String {
    spec.table
        .columns
        .keys()
        .map(|k| k.get_ref().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Query parameters that carry credentials on the portals goalpost reads.
const SECRET_PARAMS: &[&str] = &[
    "$$app_token",
    "app_token",
    "token",
    "access_token",
    "api_key",
    "apikey",
    "password",
    "secret",
];

/// What in `url` is a credential, named without its value: a password in the address or a
/// query parameter that carries a token.
fn credential_in_url(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    if parsed.password().is_some() {
        return Some("a password before the host".into());
    }
    parsed.query_pairs().find_map(|(k, v)| {
        (!v.is_empty() && SECRET_PARAMS.iter().any(|p| k.eq_ignore_ascii_case(p)))
            .then(|| format!("the query parameter {k}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(name: &str, text: &str) -> Result<Pipeline, SpecError> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
        parse_pipeline(&path, text)
    }

    const GOOD: &str = r#"title = "t"
timezone = "America/Chicago"
[[source]]
kind = "file"
path = "Cargo.toml"
link = "https://data.example.gov/d/abcd-1234"
[table]
name = "t"
time = "at"
[table.columns]
at = { type = "timestamp" }
n = { type = "int64" }
[[indicator]]
id = "x"
title = "x"
better = "lower"
period = "fiscal_quarter"
sql = "SELECT period, sum(n) AS value FROM t GROUP BY period"
[[goal]]
indicator = "x"
baseline = { period = "FY2025 Q1", value = 10 }
target = { value = 5, by = "2026-06-30" }
"#;

    fn messages(r: Result<Pipeline, SpecError>) -> Vec<String> {
        r.unwrap_err()
            .diagnostics()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_good_pipeline_loads_with_its_id_and_zone() {
        let p = pipeline("good.toml", GOOD).unwrap();
        assert_eq!(p.id, "good");
        assert_eq!(p.tz, chrono_tz::America::Chicago);
        assert_eq!(p.spec.table.arrow_schema().fields().len(), 2);
    }

    #[test]
    fn every_problem_is_reported_with_its_position() {
        let text = GOOD
            .replace(
                "https://data.example.gov/d/abcd-1234",
                "javascript:alert(1)",
            )
            .replace("FY2025 Q1", "2025-Q1")
            .replace("2026-06-30", "June 2026")
            .replace("name = \"t\"", "name = \"t; DROP TABLE x\"")
            .replace("title = \"t\"", "title = \"t\"\nschedule = \"15 6 * * *\"");
        let m = messages(pipeline("bad.toml", &text));
        let has = |needle: &str| m.iter().any(|l| l.contains(needle));
        assert!(
            has("bad.toml:4:1: link \"javascript:alert(1)\" is not a web address"),
            "{m:#?}"
        );
        assert!(
            has(
                "baseline period \"2025-Q1\" is not a fiscal_quarter label; expected e.g. \"FY2026 Q1\""
            ),
            "{m:#?}"
        );
        assert!(has("target.by \"June 2026\" is not a date"), "{m:#?}");
        assert!(
            has("table name \"t; DROP TABLE x\" is not a plain SQL name"),
            "{m:#?}"
        );
        assert!(
            has("bad.toml:2:12: schedule \"15 6 * * *\" has 5 fields; expected 6"),
            "{m:#?}"
        );
        assert_eq!(m.len(), 5, "{m:#?}");
    }

    #[test]
    fn checks_and_table_options_are_checked_with_positions() {
        let good = GOOD.replace(
            "time = \"at\"",
            "time = \"at\"\nkey = [\"n\"]\nupdated = \"at\"\npartition = \"month(at)\"\ndeletes = { column = \"n\", values = [\"0\"] }",
        ) + r#"
[[check]]
kind = "range"
column = "n"
min = 0
[[check]]
kind = "freshness"
max_age = "2d"
severity = "warn"
[[check]]
kind = "unique"
[[check]]
kind = "schema_drift"
"#;
        let p = pipeline("good.toml", &good).unwrap();
        assert_eq!(p.spec.checks.len(), 4);
        assert_eq!(p.spec.checks[1].id(), "freshness");
        assert_eq!(p.spec.checks[0].id(), "range:n");
        assert_eq!(
            p.spec.table.partition(),
            Some(Partition::Derived {
                source: "at".into(),
                by: crate::pipeline::PartitionBy::Month,
                column: "at_month".into()
            })
        );
        let fields: Vec<String> = p
            .spec
            .table
            .arrow_schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(fields, ["at", "n", "at_month"]);

        let bad = GOOD.replace(
            "time = \"at\"",
            "time = \"at\"\npartition = \"month(n)\"\nupdated = \"changed\"\nquarantine_limit = 150",
        ) + r#"
[[check]]
kind = "range"
column = "at"
[[check]]
kind = "regex"
column = "nope"
pattern = "a("
[[check]]
kind = "row_count"
[[check]]
kind = "unique"
[[check]]
kind = "not_null"
column = "n"
[[check]]
kind = "not_null"
column = "n"
"#;
        let m = messages(pipeline("bad.toml", &bad));
        let has = |needle: &str| m.iter().any(|l| l.contains(needle));
        assert!(
            has("\"n\" is int64; month() and year() need a timestamp or date column"),
            "{m:#?}"
        );
        assert!(
            has("updated column \"changed\" is not in [table.columns]; the table has: at, n"),
            "{m:#?}"
        );
        assert!(has("quarantine_limit = 150 is not a percentage"), "{m:#?}");
        assert!(has("a range check needs `min`, `max` or both"), "{m:#?}");
        assert!(
            has("a range check needs a number column; this one is timestamp"),
            "{m:#?}"
        );
        assert!(
            has("check column \"nope\" is not in [table.columns]"),
            "{m:#?}"
        );
        assert!(has("pattern is not a regular expression"), "{m:#?}");
        assert!(
            has("a row_count check needs `max_drop` (percent)"),
            "{m:#?}"
        );
        assert!(
            has("a unique check needs `columns` (or a [table] key)"),
            "{m:#?}"
        );
        assert!(
            has("two checks are named \"not_null:n\"; give one an `id`"),
            "{m:#?}"
        );
        // Each with its line.
        assert!(
            m.iter()
                .all(|l| l.starts_with("bad.toml:") || l.contains("bad.toml:")),
            "{m:#?}"
        );
    }

    #[test]
    fn milestones_must_come_in_order_before_the_target() {
        let ok = GOOD.replace(
            "target = { value = 5, by = \"2026-06-30\" }",
            "target = { value = 5, by = \"2026-06-30\" }\nmilestones = [{ value = 8, by = \"2025-12-31\" }, { value = 6, by = \"2026-03-31\" }]",
        );
        assert_eq!(
            pipeline("good.toml", &ok).unwrap().spec.goals[0]
                .milestones
                .len(),
            2
        );
        let bad = GOOD.replace(
            "target = { value = 5, by = \"2026-06-30\" }",
            "target = { value = 5, by = \"2026-06-30\" }\nmilestones = [{ value = 8, by = \"2026-03-31\" }, { value = 6, by = \"2025-12-31\" }, { value = 5, by = \"2026-07-01\" }]",
        );
        let m = messages(pipeline("bad.toml", &bad));
        assert!(
            m.iter()
                .any(|l| l.contains("milestones must be in date order")),
            "{m:#?}"
        );
        assert!(
            m.iter().any(|l| l
                .contains("milestone date 2026-07-01 is not before the target date 2026-06-30")),
            "{m:#?}"
        );
    }

    #[test]
    fn two_pipelines_cannot_share_a_table() {
        let dir = tempfile::tempdir().unwrap();
        let text = GOOD.replace(
            "path = \"Cargo.toml\"",
            &format!(
                "path = {:?}",
                concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")
            ),
        );
        std::fs::write(dir.path().join("a.toml"), &text).unwrap();
        std::fs::write(dir.path().join("b.toml"), &text).unwrap();
        let loaded = load_pipelines(dir.path()).unwrap();
        assert_eq!(loaded.pipelines.len(), 1);
        assert_eq!(loaded.failed[0].0, "b");
        let m = loaded.failed[0].1.to_string();
        assert!(
            m.contains("b.toml:8:8: table \"t\" already belongs to pipeline \"a\""),
            "{m}"
        );
    }

    #[test]
    fn credentials_in_source_urls_are_refused_without_being_repeated() {
        let with_url = |kind: &str, url: &str| {
            let extra = if kind == "socrata" {
                "dataset = \"abcd-1234\"\n"
            } else {
                ""
            };
            GOOD.replace(
                "kind = \"file\"\npath = \"Cargo.toml\"\n",
                &format!("kind = \"{kind}\"\nurl = \"{url}\"\n{extra}"),
            )
        };
        for (kind, url, want) in [
            (
                "http",
                "https://city:hunter2@data.example.gov/x.csv",
                "url holds a credential (a password before the host); keep secrets out of pipeline files: name an environment variable with auth_env",
            ),
            (
                "socrata",
                "https://data.example.gov/?$$app_token=hunter2",
                "(the query parameter $$app_token); keep secrets out of pipeline files: name an environment variable with app_token_env",
            ),
            (
                "http",
                "https://data.example.gov/x.csv?foo=1&API_KEY=hunter2",
                "(the query parameter API_KEY)",
            ),
        ] {
            let text = with_url(kind, url);
            assert!(text.contains(url), "the test pipeline uses the url");
            let m = messages(pipeline("p.toml", &text));
            assert!(m.iter().any(|m| m.contains(want)), "{url}: {m:#?}");
            assert!(!m.iter().any(|m| m.contains("hunter2")), "{m:#?}");
        }
        // Ordinary parameters and an empty token are fine.
        let text = with_url("http", "https://data.example.gov/x.csv?format=csv&token=");
        assert!(pipeline("p.toml", &text).is_ok());
    }

    #[test]
    fn ids_come_from_safe_file_names() {
        let m = messages(pipeline("Bad Name.toml", GOOD));
        assert!(m[0].contains("is not a valid pipeline id"), "{m:#?}");
        let m = messages(pipeline("good.toml", &format!("id = \"other\"\n{GOOD}")));
        assert!(
            m[0].contains("good.toml:1:6: id \"other\" differs from the file name"),
            "{m:#?}"
        );
    }
}
