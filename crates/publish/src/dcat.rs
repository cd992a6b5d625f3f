//! `data.json`: the public data inventory, as a DCAT-US catalog (Project Open Data metadata
//! schema v1.1) of every dataset the digest uses.
//!
//! One `dcat:Dataset` per pipeline, ordered by pipeline id, each with three kinds of
//! distribution: the published snapshot of its table (`data/<table>.parquet`), the figures
//! computed from it (`indicators.csv`, shared by all datasets; its `pipeline` column picks
//! one out) and every original source reachable over HTTP(S). File paths a source was read
//! from are private to the machine that read them and are left out.
//!
//! Links point into the published site: the dataset's page `datasets/<id>.html`, the snapshot
//! and the figures. DCAT-US asks for absolute URLs, so with [`CatalogInfo::base_url`] set
//! every link is absolute and the catalog validates against the DCAT-US schemas. Without it
//! the links are relative to the folder `data.json` sits in — right for a site that may be
//! served from anywhere, or read from disk, but a harvester such as data.gov's cannot follow
//! them, and the catalog's URL fields then fail the schemas' `uri` format. Set `base_url` for
//! any catalog that is registered with a harvester.
//!
//! Federal-only fields (`bureauCode`, `programCode`) are not written: a city is not a federal
//! agency, and data.gov checks non-federal catalogs without them.

use crate::digest::{Digest, PipelineDigest, SiteInfo, SourceInfo};
use chrono::{NaiveDate, SecondsFormat};
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// The catalog's JSON-LD context.
pub const CONTEXT: &str = "https://project-open-data.cio.gov/v1.1/schema/catalog.jsonld";
/// The schema version the catalog conforms to.
pub const CONFORMS_TO: &str = "https://project-open-data.cio.gov/v1.1/schema";
/// The JSON Schema that describes the catalog.
pub const DESCRIBED_BY: &str = "https://project-open-data.cio.gov/v1.1/schema/catalog.json";

/// What the digest does not know about the city that publishes the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogInfo {
    /// Where the site is served, e.g. `https://performance.example.gov/` (a trailing slash or
    /// none gives the same links). Default: none, and links are relative to `data.json`'s
    /// folder (see the module docs for the trade-off). Should be an `http(s)` URL.
    pub base_url: Option<String>,
    /// The publishing organization, e.g. `City of Springfield`. A pipeline's department is
    /// written as a sub-organization of it. Blank: the site's organization, else its title.
    pub publisher: String,
    /// Who answers questions about the data: a person or a team, e.g. `Open Data Team`.
    /// Blank: the publisher.
    pub contact_name: String,
    /// Their email address (`mailto:` is added; one already there is kept once). Required by
    /// DCAT-US.
    pub contact_email: String,
    /// URL of the licence the data is published under, e.g.
    /// `https://creativecommons.org/publicdomain/zero/1.0/`. Default: none, and datasets carry
    /// no `license`; DCAT-US asks for one wherever one applies, so a city should set it.
    pub license: Option<String>,
    /// The place the data covers, e.g. `Springfield, IL`, written as each dataset's `spatial`.
    /// Default: none.
    pub spatial: Option<String>,
}

impl CatalogInfo {
    /// The catalog settings published with the digest (`[site]` in the configuration).
    pub fn from_site(site: &SiteInfo) -> Self {
        Self {
            base_url: site.base_url.clone(),
            publisher: site.organization.clone().unwrap_or_default(),
            contact_name: site.contact_name.clone().unwrap_or_default(),
            contact_email: site.contact_email.clone().unwrap_or_default(),
            license: site.license.clone(),
            spatial: site.spatial.clone(),
        }
    }

    /// A catalog with the required contact and every optional field unset.
    pub fn new(
        publisher: impl Into<String>,
        contact_name: impl Into<String>,
        contact_email: impl Into<String>,
    ) -> Self {
        Self {
            base_url: None,
            publisher: publisher.into(),
            contact_name: contact_name.into(),
            contact_email: contact_email.into(),
            license: None,
            spatial: None,
        }
    }
}

/// The `data.json` catalog of every dataset in the digest.
pub fn data_json(digest: &Digest, catalog: &CatalogInfo) -> Value {
    let links = Links::new(catalog.base_url.as_deref());
    let mut pipelines: Vec<&PipelineDigest> = digest.pipelines.iter().collect();
    pipelines.sort_by(|a, b| a.id.cmp(&b.id));
    let datasets: Vec<Value> = pipelines
        .into_iter()
        .map(|p| dataset(p, &digest.site, catalog, &links))
        .collect();

    let mut out = Map::new();
    out.insert("@context".into(), CONTEXT.into());
    // The catalog's node id is the URL of data.json itself, which is only known with a base.
    if links.base.is_some() {
        out.insert("@id".into(), links.url("data.json").into());
    }
    out.insert("@type".into(), "dcat:Catalog".into());
    out.insert("conformsTo".into(), CONFORMS_TO.into());
    out.insert("describedBy".into(), DESCRIBED_BY.into());
    out.insert("dataset".into(), datasets.into());
    Value::Object(out)
}

/// `data.json`'s text: [`data_json`] pretty-printed, with `<`, `>`, `&`, U+2028 and U+2029
/// written as `\u` escapes so the text can also be placed inside an HTML `<script>` element
/// unchanged. (Those characters only occur inside JSON strings, where the escapes mean the
/// same.)
pub fn data_json_text(digest: &Digest, catalog: &CatalogInfo) -> String {
    let pretty = serde_json::to_string_pretty(&data_json(digest, catalog))
        .expect("a serde_json::Value (string keys only) always serializes");
    let mut out = String::with_capacity(pretty.len());
    for c in pretty.chars() {
        match c {
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('\n');
    out
}

fn dataset(p: &PipelineDigest, site: &SiteInfo, catalog: &CatalogInfo, links: &Links) -> Value {
    let title = Some(one_line(&p.title))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| p.id.clone());
    let landing_page = links.url(&format!("datasets/{}.html", segment(&p.id)));

    let mut d = Map::new();
    d.insert("@type".into(), "dcat:Dataset".into());
    d.insert("title".into(), title.clone().into());
    d.insert("description".into(), description(p, &title, site).into());
    d.insert("keyword".into(), keywords(p).into());
    d.insert(
        "modified".into(),
        p.refreshed_at
            .to_rfc3339_opts(SecondsFormat::Secs, true)
            .into(),
    );
    let city = city(catalog, site);
    d.insert(
        "publisher".into(),
        publisher(&city, p.department.as_deref()),
    );
    let contact = Some(one_line(&catalog.contact_name))
        .filter(|name| !name.is_empty())
        .unwrap_or(city);
    d.insert(
        "contactPoint".into(),
        json!({
            "@type": "vcard:Contact",
            "fn": contact,
            "hasEmail": format!("mailto:{}", email(&catalog.contact_email)),
        }),
    );
    // The landing page is a URL that stays put as long as the pipeline keeps its id; with no
    // base there is no URL, and the id is what is unique within the catalog.
    let identifier = if links.base.is_some() {
        landing_page.clone()
    } else {
        p.id.clone()
    };
    d.insert("identifier".into(), identifier.into());
    d.insert("accessLevel".into(), "public".into());
    if let Some(license) = catalog.license.as_deref().map(str::trim)
        && !license.is_empty()
    {
        d.insert("license".into(), license.into());
    }
    if let Some(spatial) = catalog.spatial.as_deref().map(one_line)
        && !spatial.is_empty()
    {
        d.insert("spatial".into(), spatial.into());
    }
    if let Some(temporal) = temporal(p) {
        d.insert("temporal".into(), temporal.into());
    }
    d.insert("landingPage".into(), landing_page.into());
    // digest.json holds each figure's provenance: the query, the table version, the run.
    d.insert("references".into(), json!([links.url("digest.json")]));
    d.insert(
        "distribution".into(),
        distributions(p, &title, links).into(),
    );
    Value::Object(d)
}

fn description(p: &PipelineDigest, title: &str, site: &SiteInfo) -> String {
    if let Some(text) = p.description.as_deref().map(multi_line)
        && !text.trim().is_empty()
    {
        return text.trim().to_string();
    }
    let mut text = format!(
        "{title}: the data behind {}'s figures, as loaded into the table {} ({} rows).",
        one_line(&site.title),
        one_line(&p.table.name),
        p.table.rows
    );
    let indicators: Vec<String> = p
        .indicators
        .iter()
        .map(|i| one_line(&i.title))
        .filter(|t| !t.is_empty())
        .collect();
    if !indicators.is_empty() {
        let _ = write!(text, " Indicators: {}.", indicators.join("; "));
    }
    text
}

/// Department, indicator titles and the pipeline id, lower-cased, without repeats, in that
/// order; never empty.
fn keywords(p: &PipelineDigest) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let candidates = p
        .department
        .iter()
        .map(String::as_str)
        .chain(p.indicators.iter().map(|i| i.title.as_str()))
        .chain([p.id.as_str()]);
    for c in candidates {
        let k = one_line(c).to_lowercase();
        if !k.is_empty() && seen.insert(k.clone()) {
            out.push(k);
        }
    }
    if out.is_empty() {
        out.push("performance".into());
    }
    out
}

/// The city, else the site's organization, else the site's title.
fn city(catalog: &CatalogInfo, site: &SiteInfo) -> String {
    [
        Some(catalog.publisher.as_str()),
        site.organization.as_deref(),
        Some(site.title.as_str()),
    ]
    .into_iter()
    .flatten()
    .map(one_line)
    .find(|name| !name.is_empty())
    .unwrap_or_else(|| "Publisher".into())
}

fn publisher(city: &str, department: Option<&str>) -> Value {
    let org = json!({"@type": "org:Organization", "name": city});
    match department.map(one_line) {
        Some(dept) if !dept.is_empty() && dept != city => json!({
            "@type": "org:Organization",
            "name": dept,
            "subOrganizationOf": org,
        }),
        _ => org,
    }
}

fn email(address: &str) -> String {
    let address = address.trim();
    let address = address
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("mailto:"))
        .map_or(address, |_| &address[7..]);
    one_line(address).replace(' ', "")
}

/// The span the figures cover: the first period's first day to the last period's last day
/// (a period's `end` is the day after it; a partial period ends at the date judged as of).
/// Periods without a figure (no rows) do not count; suppressed ones do, their rows exist.
fn temporal(p: &PipelineDigest) -> Option<String> {
    let mut span: Option<(NaiveDate, NaiveDate)> = None;
    let points = p
        .indicators
        .iter()
        .flat_map(|i| &i.series)
        .filter(|pt| pt.value.is_some() || pt.suppressed);
    for pt in points {
        let mut last = pt.end.pred_opt().unwrap_or(pt.end);
        if pt.partial {
            last = last.min(p.as_of);
        }
        let last = last.max(pt.start);
        span = Some(match span {
            None => (pt.start, last),
            Some((a, b)) => (a.min(pt.start), b.max(last)),
        });
    }
    span.map(|(first, last)| format!("{first}/{last}"))
}

fn distributions(p: &PipelineDigest, title: &str, links: &Links) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(download) = &p.table.download {
        out.push(json!({
            "@type": "dcat:Distribution",
            "title": format!("{title}: table snapshot (Parquet)"),
            "description": format!(
                "The table {} at version {} ({} rows), as the published figures were computed from it.",
                one_line(&p.table.name), p.table.version, p.table.rows
            ),
            "downloadURL": links.url(download),
            "mediaType": "application/vnd.apache.parquet",
            "format": "Parquet",
        }));
    }
    out.push(json!({
        "@type": "dcat:Distribution",
        "title": "Indicator figures (CSV)",
        "description": format!(
            "Every published figure, one row per indicator, period and breakdown group; \
             the rows of this dataset have pipeline = {}.",
            p.id
        ),
        "downloadURL": links.url("indicators.csv"),
        "mediaType": "text/csv",
        "format": "CSV",
    }));
    let mut seen = BTreeSet::new();
    for s in &p.sources {
        let Some(url) = source_url(s) else { continue };
        if !seen.insert(url.clone()) {
            continue;
        }
        let kind = one_line(&s.kind);
        out.push(json!({
            "@type": "dcat:Distribution",
            "title": format!("Original source ({kind})"),
            "description": format!("Where the data was read from ({} rows in the last run).", s.rows),
            "accessURL": url,
        }));
    }
    out
}

/// The source's public page, else the URL it was read from; `None` for a file path.
fn source_url(s: &SourceInfo) -> Option<String> {
    s.link
        .as_deref()
        .and_then(http_url)
        .or_else(|| http_url(&s.location))
}

/// `s` as an `http(s)` URL with anything a URI may not hold percent-encoded, or `None` when it
/// is something else (a file path, another scheme, no host).
fn http_url(s: &str) -> Option<String> {
    let s = s.trim();
    let rest = ["http://", "https://"].iter().find_map(|scheme| {
        s.get(..scheme.len())
            .filter(|head| head.eq_ignore_ascii_case(scheme))
            .map(|_| &s[scheme.len()..])
    })?;
    if rest.is_empty() || rest.starts_with(['/', '?', '#']) {
        return None;
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    Some(out)
}

/// Builds links into the published site.
struct Links {
    /// The base without trailing slashes, so joining never doubles one.
    base: Option<String>,
}

impl Links {
    fn new(base: Option<&str>) -> Self {
        let base = base
            .map(|b| b.trim().trim_end_matches('/').to_string())
            .filter(|b| !b.is_empty());
        Self { base }
    }

    /// `path` (relative, without a leading slash) under the base, or as it is without one.
    fn url(&self, path: &str) -> String {
        match &self.base {
            Some(base) => format!("{base}/{path}"),
            None => path.to_string(),
        }
    }
}

/// `s` percent-encoded as one URL path segment.
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `s` on one line: each run of whitespace and control characters becomes one space, and the
/// ends are trimmed. Control characters mean nothing in catalog metadata, and DCAT catalogs are
/// often converted to RDF/XML, which cannot carry most of them.
fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split(|c: char| c.is_whitespace() || c.is_control()) {
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// `s` with its line breaks and tabs, without other control characters.
fn multi_line(s: &str) -> String {
    s.chars()
        .filter(|&c| !c.is_control() || c == '\n' || c == '\t')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{
        DIGEST_SCHEMA_VERSION, DataQuality, IndicatorDigest, SeriesPoint, Summary, TableInfo,
    };
    use chrono::{DateTime, TimeZone, Utc};
    use jsonschema::{Draft, Registry, Validator};
    use std::collections::BTreeMap;

    // The DCAT-US v1.1 schemas, vendored; see tests-data/dcat-us-1.1/README.md.
    const NON_FEDERAL_CATALOG: &str =
        include_str!("../tests-data/dcat-us-1.1/non-federal/catalog.json");
    const NON_FEDERAL_DATASET: &str =
        include_str!("../tests-data/dcat-us-1.1/non-federal/dataset-non-federal.json");

    const BASE: &str = "https://performance.springfield.example/reports/";

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).expect("vendored schema is JSON")
    }

    /// A Draft 4 validator for `root`, its `$ref`s resolved against `others` only (offline,
    /// so a reference that is not vendored fails the build instead of being fetched).
    fn validator(root: &str, others: &[&str]) -> Validator {
        let mut registry = Registry::new();
        for text in others {
            let schema = parse(text);
            let id = schema["id"].as_str().expect("schema has an id").to_string();
            registry = registry.add(id, schema).expect("schema id is a URI");
        }
        let registry = registry.prepare().expect("schemas resolve");
        jsonschema::options()
            .with_draft(Draft::Draft4)
            .offline()
            .should_validate_formats(true)
            .with_registry(&registry)
            .build(&parse(root))
            .expect("catalog schema builds with every $ref resolved")
    }

    /// The non-federal schemas: catalog.json → dataset-non-federal.json.
    fn non_federal() -> Validator {
        validator(NON_FEDERAL_CATALOG, &[NON_FEDERAL_DATASET])
    }

    /// Each error as `instance path: message`.
    fn errors(v: &Validator, instance: &Value) -> Vec<String> {
        v.iter_errors(instance)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect()
    }

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
    }

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0)
            .single()
            .expect("valid time")
    }

    fn month(start: NaiveDate, value: Option<f64>, partial: bool) -> SeriesPoint {
        SeriesPoint {
            period: start.format("%Y-%m").to_string(),
            start,
            end: start + chrono::Months::new(1),
            group: BTreeMap::new(),
            value,
            partial,
            n: value.map(|_| 40),
            suppressed: false,
            flag: None,
        }
    }

    fn indicator(id: &str, title: &str, series: Vec<SeriesPoint>) -> IndicatorDigest {
        IndicatorDigest {
            id: id.into(),
            title: title.into(),
            description: None,
            unit: Some("days".into()),
            better: Some("lower".into()),
            period: "month".into(),
            decimals: Some(1),
            by: vec![],
            measure: None,
            filter: None,
            min_count: 0,
            sql: "SELECT 1".into(),
            reads: vec![],
            series,
            held: None,
        }
    }

    fn source(kind: &str, location: &str, link: Option<&str>) -> SourceInfo {
        SourceInfo {
            kind: kind.into(),
            location: location.into(),
            link: link.map(Into::into),
            rows: 1200,
        }
    }

    fn pipeline(id: &str, title: &str) -> PipelineDigest {
        PipelineDigest {
            id: id.into(),
            title: title.into(),
            department: None,
            description: None,
            run_id: "run-7".into(),
            refreshed_at: at(2026, 3, 2, 6, 30),
            as_of: day(2026, 3, 2),
            table: TableInfo {
                name: id.replace('-', "_"),
                version: 12,
                rows: 48_211,
                latest_version: None,
                download: Some(format!("data/{}.parquet", id.replace('-', "_"))),
            },
            sources: vec![],
            data_quality: DataQuality::default(),
            held: None,
            indicators: vec![],
            goals: vec![],
            schedule: None,
            history: vec![],
        }
    }

    /// Two pipelines, listed out of id order: one fully described, one bare.
    fn digest() -> Digest {
        let mut requests = pipeline("service-requests", "311 service requests");
        requests.department = Some("Public Works".into());
        requests.description = Some("Every request made to 311 since 2019.".into());
        requests.sources = vec![
            source(
                "socrata",
                "https://data.springfield.example/resource/abcd-1234.json",
                Some("https://data.springfield.example/d/abcd-1234"),
            ),
            source("csv", "data/backfill/requests-2019.csv", None),
            source(
                "ckan",
                "https://ckan.springfield.example/api/3/action",
                None,
            ),
            // The same page twice (two resources of one dataset) is listed once.
            source(
                "socrata",
                "https://data.springfield.example/resource/efgh-5678.json",
                Some("https://data.springfield.example/d/abcd-1234"),
            ),
        ];
        requests.indicators = vec![
            indicator(
                "days-to-close",
                "Days to close a request",
                vec![
                    month(day(2025, 12, 1), Some(3.5), false),
                    month(day(2026, 1, 1), Some(3.1), false),
                    month(day(2026, 2, 1), Some(2.9), false),
                    // The current month, judged as of 2 March.
                    month(day(2026, 3, 1), Some(2.0), true),
                ],
            ),
            indicator(
                "requests",
                "Requests received",
                // An earlier month with no rows does not widen the span.
                vec![
                    month(day(2025, 10, 1), None, false),
                    month(day(2025, 11, 1), Some(910.0), false),
                ],
            ),
        ];
        let bare = pipeline("budget", "");
        Digest {
            schema_version: DIGEST_SCHEMA_VERSION,
            version: "run-7".into(),
            generated_at: at(2026, 3, 2, 7, 0),
            site: SiteInfo {
                title: "Springfield performance".into(),
                organization: Some("City of Springfield".into()),
                ..Default::default()
            },
            summary: Summary::default(),
            pipelines: vec![requests, bare],
            news: vec![],
        }
    }

    fn info(base_url: Option<&str>) -> CatalogInfo {
        let mut info = CatalogInfo::new(
            "City of Springfield",
            "Open Data Team",
            "opendata@springfield.example",
        );
        info.base_url = base_url.map(Into::into);
        info.license = Some("https://creativecommons.org/publicdomain/zero/1.0/".into());
        info.spatial = Some("Springfield".into());
        info
    }

    /// Every string in `v` under a key that holds a URL.
    fn urls(v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(o) => {
                for (k, v) in o {
                    match (k.as_str(), v) {
                        ("@id" | "landingPage" | "downloadURL" | "accessURL", Value::String(s)) => {
                            out.push((k.clone(), s.clone()))
                        }
                        ("references", Value::Array(a)) => out.extend(
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(|s| (k.clone(), s.to_string())),
                        ),
                        _ => urls(v, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| urls(v, out)),
            _ => {}
        }
    }

    #[test]
    fn dcat_catalog_with_a_base_url_is_valid_against_the_dcat_us_schemas() {
        let catalog = data_json(&digest(), &info(Some(BASE)));

        assert_eq!(errors(&non_federal(), &catalog), Vec::<String>::new());
    }

    #[test]
    fn dcat_schemas_reject_what_they_should() {
        // Guards against a validator that passes everything (an unresolved $ref, formats off).
        let good = data_json(&digest(), &info(Some(BASE)));
        fn remove(c: &mut Value, at: &str, key: &str) {
            if let Some(o) = c.pointer_mut(at).and_then(Value::as_object_mut) {
                o.remove(key);
            }
        }
        type Break = fn(&mut Value);
        let broken: [(&str, Break); 7] = [
            ("no title", |c| remove(c, "/dataset/0", "title")),
            ("contact email that is no address", |c| {
                c["dataset"][0]["contactPoint"]["hasEmail"] = json!("mailto:nobody");
            }),
            ("publisher without name", |c| {
                remove(c, "/dataset/1/publisher", "name")
            }),
            ("download URL that is no URI", |c| {
                c["dataset"][0]["distribution"][0]["downloadURL"] = json!("not a uri");
            }),
            ("download without media type", |c| {
                remove(c, "/dataset/0/distribution/1", "mediaType")
            }),
            ("modified that is no date", |c| {
                c["dataset"][1]["modified"] = json!("2 March 2026");
            }),
            ("temporal that is no interval", |c| {
                c["dataset"][1]["temporal"] = json!("2025-11-01 to 2026-03-02");
            }),
        ];
        for (what, breaks) in broken {
            let mut c = good.clone();
            breaks(&mut c);
            assert!(
                !non_federal().is_valid(&c),
                "non-federal schema took {what}"
            );
        }
    }

    #[test]
    fn dcat_datasets_carry_the_pipeline_facts_in_id_order() {
        let c = data_json(&digest(), &info(Some(BASE)));
        assert_eq!(c["@context"], CONTEXT);
        assert_eq!(c["@type"], "dcat:Catalog");
        assert_eq!(c["conformsTo"], CONFORMS_TO);
        assert_eq!(c["describedBy"], DESCRIBED_BY);
        assert_eq!(
            c["@id"],
            "https://performance.springfield.example/reports/data.json"
        );
        let ds = c["dataset"].as_array().expect("datasets");
        let ids: Vec<&str> = ds
            .iter()
            .map(|d| d["landingPage"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            [
                "https://performance.springfield.example/reports/datasets/budget.html",
                "https://performance.springfield.example/reports/datasets/service-requests.html",
            ]
        );

        let (budget, requests) = (&ds[0], &ds[1]);
        assert_eq!(requests["title"], "311 service requests");
        assert_eq!(
            requests["description"],
            "Every request made to 311 since 2019."
        );
        assert_eq!(
            requests["keyword"],
            json!([
                "public works",
                "days to close a request",
                "requests received",
                "service-requests"
            ])
        );
        assert_eq!(requests["modified"], "2026-03-02T06:30:00Z");
        assert_eq!(
            requests["publisher"],
            json!({
                "@type": "org:Organization",
                "name": "Public Works",
                "subOrganizationOf": {"@type": "org:Organization", "name": "City of Springfield"},
            })
        );
        assert_eq!(
            requests["contactPoint"],
            json!({
                "@type": "vcard:Contact",
                "fn": "Open Data Team",
                "hasEmail": "mailto:opendata@springfield.example",
            })
        );
        assert_eq!(requests["identifier"], requests["landingPage"]);
        assert_eq!(requests["accessLevel"], "public");
        assert_eq!(
            requests["license"],
            "https://creativecommons.org/publicdomain/zero/1.0/"
        );
        assert_eq!(requests["spatial"], "Springfield");
        // 1 Nov 2025 (the first month with a figure) to 2 March 2026 (the partial month,
        // judged as of that day).
        assert_eq!(requests["temporal"], "2025-11-01/2026-03-02");
        assert_eq!(
            requests["references"],
            json!(["https://performance.springfield.example/reports/digest.json"])
        );

        let dist = requests["distribution"].as_array().expect("distributions");
        let kinds: Vec<(&str, &str)> = dist
            .iter()
            .map(|d| {
                let url = d.get("downloadURL").or(d.get("accessURL")).unwrap();
                (d["title"].as_str().unwrap(), url.as_str().unwrap())
            })
            .collect();
        assert_eq!(
            kinds,
            [
                (
                    "311 service requests: table snapshot (Parquet)",
                    "https://performance.springfield.example/reports/data/service_requests.parquet"
                ),
                (
                    "Indicator figures (CSV)",
                    "https://performance.springfield.example/reports/indicators.csv"
                ),
                (
                    "Original source (socrata)",
                    "https://data.springfield.example/d/abcd-1234"
                ),
                (
                    "Original source (ckan)",
                    "https://ckan.springfield.example/api/3/action"
                ),
            ]
        );
        assert_eq!(dist[0]["mediaType"], "application/vnd.apache.parquet");
        assert_eq!(dist[0]["format"], "Parquet");
        assert_eq!(dist[1]["mediaType"], "text/csv");
        assert!(dist.iter().all(|d| d["@type"] == "dcat:Distribution"));

        // A bare pipeline still has every required field.
        assert_eq!(budget["title"], "budget");
        assert_eq!(
            budget["description"],
            "budget: the data behind Springfield performance's figures, as loaded into the \
             table budget (48211 rows)."
        );
        assert_eq!(budget["keyword"], json!(["budget"]));
        assert_eq!(
            budget["publisher"],
            json!({"@type": "org:Organization", "name": "City of Springfield"})
        );
        assert!(budget.get("temporal").is_none());
        assert_eq!(budget["distribution"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn dcat_output_does_not_depend_on_pipeline_order() {
        let d = digest();
        let mut reversed = d.clone();
        reversed.pipelines.reverse();
        let info = info(Some(BASE));
        assert_eq!(data_json_text(&d, &info), data_json_text(&reversed, &info));
    }

    #[test]
    fn dcat_without_base_url_links_are_relative() {
        let c = data_json(&digest(), &info(None));
        assert!(c.get("@id").is_none(), "no URL for data.json itself");
        let requests = &c["dataset"][1];
        assert_eq!(requests["identifier"], "service-requests");
        assert_eq!(requests["landingPage"], "datasets/service-requests.html");
        assert_eq!(requests["references"], json!(["digest.json"]));
        assert_eq!(
            requests["distribution"][0]["downloadURL"],
            "data/service_requests.parquet"
        );
        assert_eq!(requests["distribution"][1]["downloadURL"], "indicators.csv");
        // Sources are elsewhere: still absolute.
        assert_eq!(
            requests["distribution"][2]["accessURL"],
            "https://data.springfield.example/d/abcd-1234"
        );

        // The trade-off: the relative links fail the schemas' `uri` format, and they are all
        // the schemas object to.
        assert!(!non_federal().is_valid(&c));
        let mut absolute = c.clone();
        absolutize(&mut absolute, "https://anywhere.example/");
        assert_eq!(errors(&non_federal(), &absolute), Vec::<String>::new());
    }

    /// Prefixes every relative link in `v` with `base`.
    fn absolutize(v: &mut Value, base: &str) {
        match v {
            Value::Object(o) => {
                for (k, v) in o.iter_mut() {
                    match (k.as_str(), v) {
                        ("landingPage" | "downloadURL" | "accessURL", Value::String(s))
                            if !s.starts_with("https://") =>
                        {
                            *s = format!("{base}{s}")
                        }
                        (_, v) => absolutize(v, base),
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|v| absolutize(v, base)),
            Value::String(s) if !s.starts_with("https://") && s.ends_with(".json") => {
                // A `references` entry.
                *s = format!("{base}{s}")
            }
            _ => {}
        }
    }

    #[test]
    fn dcat_with_base_url_links_are_absolute_without_double_slashes() {
        let d = digest();
        let expected = data_json(&d, &info(Some(BASE)));
        for base in [
            "https://performance.springfield.example/reports",
            "https://performance.springfield.example/reports//",
            " https://performance.springfield.example/reports/ ",
        ] {
            assert_eq!(data_json(&d, &info(Some(base))), expected, "{base:?}");
        }
        let mut found = Vec::new();
        urls(&expected, &mut found);
        // data.json; per dataset its page, digest.json and two downloads; two sources.
        assert_eq!(found.len(), 1 + 2 * 4 + 2, "{found:#?}");
        for (key, url) in found {
            let rest = url
                .strip_prefix("https://")
                .unwrap_or_else(|| panic!("{key}: {url} is not absolute"));
            assert!(!rest.contains("//"), "{key}: {url}");
            if !matches!(key.as_str(), "accessURL") {
                assert!(url.starts_with(BASE), "{key}: {url}");
            }
        }

        // A site at the root of its host.
        let c = data_json(&d, &info(Some("https://springfield.example/")));
        assert_eq!(c["@id"], "https://springfield.example/data.json");
        assert_eq!(
            c["dataset"][0]["landingPage"],
            "https://springfield.example/datasets/budget.html"
        );
    }

    #[test]
    fn dcat_hostile_text_stays_valid_json_text() {
        let title = "</script><script>alert(\"pwned\")</script> & 'quotes' ]]>";
        let mut d = digest();
        let p = &mut d.pipelines[0];
        p.title = format!("{title}\u{0}\u{7}\n\u{1b}[31m\u{2028}");
        p.department = Some("Works \"Dept\" <b>\u{85}".into());
        p.description = Some(
            "Line one ]]> <!-- x -->\u{2028}\n\tLine \"two\"\u{0}\u{8}\u{7f} end\u{2029}".into(),
        );
        p.indicators[0].title = "<img src=x onerror=alert(1)>".into();
        p.sources[0].link = Some("https://data.springfield.example/d/a b\"<x>".into());
        let mut info = info(Some(BASE));
        info.contact_name = "O'Brien \"Data\" <Team>\u{1}".into();

        let text = data_json_text(&d, &info);
        for c in ['<', '>', '&', '\u{2028}', '\u{2029}'] {
            assert!(!text.contains(c), "{c:?} written raw");
        }
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "a control character written raw"
        );
        let back: Value = serde_json::from_str(&text).expect("data.json is JSON");
        assert_eq!(back, data_json(&d, &info));

        let requests = &back["dataset"][1];
        // Markup and quotes are data: kept as they are, for the reader to escape.
        assert_eq!(requests["title"], format!("{title} [31m"));
        assert_eq!(
            requests["description"],
            "Line one ]]> <!-- x -->\u{2028}\n\tLine \"two\" end"
        );
        assert_eq!(requests["publisher"]["name"], "Works \"Dept\" <b>");
        assert_eq!(requests["contactPoint"]["fn"], "O'Brien \"Data\" <Team>");
        assert_eq!(
            requests["distribution"][2]["accessURL"],
            "https://data.springfield.example/d/a%20b%22%3Cx%3E"
        );
        assert_eq!(errors(&non_federal(), &back), Vec::<String>::new());
    }

    #[test]
    fn dcat_urls_other_than_http_are_not_sources() {
        for not in [
            "data/x.csv",
            "/srv/data/x.csv",
            "file:///srv/x.csv",
            "ftp://x.example/x.csv",
            "https://",
            "http:///path",
            "httpsx://x",
        ] {
            assert_eq!(http_url(not), None, "{not}");
        }
        assert_eq!(
            http_url("HTTPS://Data.example/d/x?a=1&b=é"),
            Some("HTTPS://Data.example/d/x?a=1&b=%C3%A9".into())
        );
        assert_eq!(email(" MAILTO:a@b.example "), "a@b.example");
        assert_eq!(segment("a b/ç"), "a%20b%2F%C3%A7");
    }
}
