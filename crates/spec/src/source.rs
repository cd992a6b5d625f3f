//! `[[source]]`: where a pipeline's rows come from. The `kind` key selects the connector; each
//! connector has its own section type so a misspelt key is an error, not a silent default.
//!
//! Every web connector shares the same ideas: a page size bounded by what the portal allows,
//! an optional incremental field with an `overlap` window re-read on every refresh, and
//! optional credentials read from an environment variable (never from the file itself).

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize};
use std::time::Duration;

/// One source of rows.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceSpec {
    /// A CSV, JSON array or NDJSON file on disk.
    File(FileSource),
    /// A CSV, JSON, NDJSON or GeoJSON document at a URL.
    Http(HttpSource),
    /// A Socrata (SODA 2.x) dataset.
    Socrata(SocrataSource),
    /// A CKAN datastore resource, or a downloadable resource of a CKAN dataset.
    Ckan(CkanSource),
    /// An ArcGIS FeatureServer or MapServer layer.
    Arcgis(ArcgisSource),
    /// An Opendatasoft (Explore API v2.1) dataset.
    Opendatasoft(OpendatasoftSource),
    /// A Datasette table.
    Datasette(DatasetteSource),
}

impl SourceSpec {
    /// Overrides of `table.columns.<name>.from` for this source.
    pub fn fields(&self) -> &IndexMap<String, String> {
        match self {
            Self::File(s) => &s.fields,
            Self::Http(s) => &s.fields,
            Self::Socrata(s) => &s.fields,
            Self::Ckan(s) => &s.fields,
            Self::Arcgis(s) => &s.fields,
            Self::Opendatasoft(s) => &s.fields,
            Self::Datasette(s) => &s.fields,
        }
    }

    /// Where the rows come from, as written in the pipeline file (a path or URL).
    pub fn location(&self) -> String {
        match self {
            Self::File(s) => s.path.clone(),
            Self::Http(s) => s.url.clone(),
            Self::Socrata(s) => format!("{}/resource/{}", s.url.trim_end_matches('/'), s.dataset),
            Self::Ckan(s) => match (&s.resource_id, &s.dataset) {
                (Some(r), _) => format!("{} resource {r}", s.url.trim_end_matches('/')),
                (None, Some(d)) => format!("{} dataset {d}", s.url.trim_end_matches('/')),
                (None, None) => s.url.clone(),
            },
            Self::Arcgis(s) => s.url.clone(),
            Self::Opendatasoft(s) => format!(
                "{}/api/explore/v2.1/catalog/datasets/{}",
                s.url.trim_end_matches('/'),
                s.dataset
            ),
            Self::Datasette(s) => s.url.clone(),
        }
    }

    /// The public page about the dataset, if the pipeline names one.
    pub fn link(&self) -> Option<&str> {
        match self {
            Self::File(s) => s.link.as_deref(),
            Self::Http(s) => s.link.as_deref(),
            Self::Socrata(s) => s.link.as_deref(),
            Self::Ckan(s) => s.link.as_deref(),
            Self::Arcgis(s) => s.link.as_deref(),
            Self::Opendatasoft(s) => s.link.as_deref(),
            Self::Datasette(s) => s.link.as_deref(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::File(_) => "file",
            Self::Http(_) => "http",
            Self::Socrata(_) => "socrata",
            Self::Ckan(_) => "ckan",
            Self::Arcgis(_) => "arcgis",
            Self::Opendatasoft(_) => "opendatasoft",
            Self::Datasette(_) => "datasette",
        }
    }

    /// The web address the connector talks to (`None` for files).
    pub fn url(&self) -> Option<&str> {
        match self {
            Self::File(_) => None,
            Self::Http(s) => Some(&s.url),
            Self::Socrata(s) => Some(&s.url),
            Self::Ckan(s) => Some(&s.url),
            Self::Arcgis(s) => Some(&s.url),
            Self::Opendatasoft(s) => Some(&s.url),
            Self::Datasette(s) => Some(&s.url),
        }
    }

    /// Rows per request as configured (each connector has its own default and ceiling).
    pub fn page_size(&self) -> Option<usize> {
        match self {
            Self::File(s) => Some(s.page_size),
            Self::Http(_) => None,
            Self::Socrata(s) => s.page_size,
            Self::Ckan(s) => s.page_size,
            Self::Arcgis(s) => s.page_size,
            Self::Opendatasoft(s) => s.page_size,
            Self::Datasette(s) => s.page_size,
        }
    }

    /// A key that identifies this source's watermark: changing what is fetched (the address,
    /// the filter, the field a refresh follows) starts over with a full load.
    pub fn watermark_key(&self) -> String {
        let (filter, field) = match self {
            Self::Socrata(s) => (s.filter.clone(), None),
            Self::Arcgis(s) => (s.filter.clone(), s.incremental_field.clone()),
            Self::Opendatasoft(s) => (s.filter.clone(), s.incremental_field.clone()),
            Self::Datasette(s) => (None, s.incremental_field.clone()),
            _ => (None, None),
        };
        let mut key = format!("{}:{}", self.kind(), self.location());
        if let Some(f) = filter.filter(|f| !f.is_empty()) {
            key.push('?');
            key.push_str(&f);
        }
        if let Some(f) = field {
            key.push('#');
            key.push_str(&f);
        }
        key
    }
}

fn default_file_page_size() -> usize {
    10_000
}

fn default_overlap() -> Duration {
    Duration::from_secs(3600)
}

fn default_true() -> bool {
    true
}

/// A CSV, JSON array or NDJSON file on disk.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSource {
    /// Path of the file, relative to the pipeline file's folder.
    pub path: String,
    /// `csv`, `json` (an array of objects, as Socrata returns) or `ndjson`; by default taken
    /// from the file's extension.
    pub format: Option<FileFormat>,
    /// Rows per page handed to the table stage.
    #[serde(default = "default_file_page_size")]
    pub page_size: usize,
    /// Per-source field names: `table column = "field at the source"`.
    #[serde(default)]
    pub fields: IndexMap<String, String>,
    /// Public page about the dataset, shown as provenance.
    pub link: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    Csv,
    Json,
    Ndjson,
    Geojson,
}

/// A document at a URL, fetched whole with a conditional GET.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSource {
    pub url: String,
    /// `csv`, `json`, `ndjson` or `geojson`; by default from the URL's extension or the
    /// response's content type.
    pub format: Option<FileFormat>,
    /// For JSON: dotted path of the array of records inside the document, e.g.
    /// `result.records`. Empty: the document itself is the array.
    pub records: Option<String>,
    /// Environment variable holding a value for the `Authorization` header.
    pub auth_env: Option<String>,
    #[serde(default)]
    pub fields: IndexMap<String, String>,
    pub link: Option<String>,
}

/// A Socrata dataset, read through SODA 2.x `/resource/<id>.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocrataSource {
    /// The portal, e.g. `https://data.sfgov.org`.
    pub url: String,
    /// The dataset id (`xxxx-xxxx`).
    pub dataset: String,
    /// A SoQL condition every fetched row must meet, e.g. `call_date >= '2016-01-01'`.
    #[serde(rename = "where")]
    pub filter: Option<String>,
    /// Rows per request (default 10,000; at most 50,000).
    pub page_size: Option<usize>,
    /// `json` (default) or `csv`.
    #[serde(default)]
    pub format: SocrataFormat,
    /// Environment variable holding the app token sent as `X-App-Token`.
    pub app_token_env: Option<String>,
    /// Refresh only rows whose `:updated_at` moved since the last run (default true).
    #[serde(default = "default_true")]
    pub incremental: bool,
    /// How far before the last watermark a refresh starts re-reading (default 1h).
    #[serde(default = "default_overlap", deserialize_with = "duration")]
    pub overlap: Duration,
    #[serde(default)]
    pub fields: IndexMap<String, String>,
    pub link: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SocrataFormat {
    #[default]
    Json,
    Csv,
}

/// A CKAN resource: through the DataStore when it is active, else by downloading the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CkanSource {
    /// The portal, e.g. `https://data.boston.gov`.
    pub url: String,
    /// The resource's id. Either this or `dataset` (with `resource`) names what to read.
    pub resource_id: Option<String>,
    /// The dataset (package) name or id, looked up with `package_show`.
    pub dataset: Option<String>,
    /// Within `dataset`: the resource's name or id (default: the first DataStore resource,
    /// else the first CSV).
    pub resource: Option<String>,
    /// Rows per request (default 10,000; the DataStore allows at most 32,000).
    pub page_size: Option<usize>,
    /// Environment variable holding an API token sent as `Authorization`.
    pub api_key_env: Option<String>,
    /// Skip the load when the portal's modification stamps (`metadata_modified`,
    /// `last_modified`) have not moved since the last run, or a downloaded file answers 304
    /// (default true). CKAN does not move the stamps when a publisher writes the DataStore
    /// directly (`datastore_upsert`): set false for such resources to load everything every run.
    #[serde(default = "default_true")]
    pub skip_unchanged: bool,
    #[serde(default)]
    pub fields: IndexMap<String, String>,
    pub link: Option<String>,
}

/// An ArcGIS FeatureServer or MapServer layer (`…/FeatureServer/0`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArcgisSource {
    /// The layer's URL, ending in the layer number.
    pub url: String,
    /// SQL `where` clause (default `1=1`).
    #[serde(rename = "where")]
    pub filter: Option<String>,
    /// `json` (Esri JSON, default) or `geojson`.
    #[serde(default)]
    pub format: ArcgisFormat,
    /// Features per request (default and ceiling: the layer's `maxRecordCount`).
    pub page_size: Option<usize>,
    /// Date field for incremental refreshes (default: the layer's edit-date field, if any).
    pub incremental_field: Option<String>,
    /// Set false to always load everything.
    #[serde(default = "default_true")]
    pub incremental: bool,
    #[serde(default = "default_overlap", deserialize_with = "duration")]
    pub overlap: Duration,
    /// Environment variable holding a token, sent as the `X-Esri-Authorization: Bearer …`
    /// header (never in the URL, which ends up in logs and recordings).
    pub token_env: Option<String>,
    #[serde(default)]
    pub fields: IndexMap<String, String>,
    pub link: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArcgisFormat {
    #[default]
    Json,
    Geojson,
}

/// An Opendatasoft dataset, read through the Explore API v2.1.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpendatasoftSource {
    /// The portal, e.g. `https://live-durhamnc.opendatasoft.com`.
    pub url: String,
    /// The dataset identifier.
    pub dataset: String,
    /// ODSQL condition, e.g. `date >= date'2020-01-01'`.
    #[serde(rename = "where")]
    pub filter: Option<String>,
    /// Rows per `/records` request (default and ceiling 100).
    pub page_size: Option<usize>,
    /// Datetime field for incremental refreshes; without it every run loads everything.
    pub incremental_field: Option<String>,
    #[serde(default = "default_overlap", deserialize_with = "duration")]
    pub overlap: Duration,
    /// `auto` (default): page through `/records` while the result fits under the API's
    /// 10,000-row window, else use `/exports/json`; `always` or `never` force one way.
    #[serde(default)]
    pub export: ExportMode,
    /// Environment variable holding an API key sent as `Authorization: Apikey …`.
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub fields: IndexMap<String, String>,
    pub link: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportMode {
    #[default]
    Auto,
    Always,
    Never,
}

/// A Datasette table (`https://host/<database>/<table>`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetteSource {
    /// The table's URL, without `.json`.
    pub url: String,
    /// Rows per request (default 1,000, Datasette's usual `max_returned_rows`).
    pub page_size: Option<usize>,
    /// Column for incremental refreshes (compared with `__gte`); without it every run loads
    /// everything.
    pub incremental_field: Option<String>,
    #[serde(default = "default_overlap", deserialize_with = "duration")]
    pub overlap: Duration,
    #[serde(default)]
    pub fields: IndexMap<String, String>,
    pub link: Option<String>,
}

/// Read a duration written like `90s`, `15m`, `1h 30m` or `2days`.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "{text:?} is not a duration ({e}); expected e.g. \"90s\", \"15m\" or \"1h\""
        ))
    })
}

/// An optional duration: `max_age = "2d"`.
pub fn optional_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}
