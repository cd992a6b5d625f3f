//! Reading a dataset's schema from its portal, for `goalpost init`.
//!
//! [`recognise`] tells the portal from a dataset's address (or the `--kind` given);
//! [`discover`] asks that portal for the dataset's title, fields and types (and a sample of
//! rows where the types alone are ambiguous), and says which field is the key, which one
//! moves when a row changes, and which timestamp the figures should be cut by. The caller
//! turns a [`Discovered`] into a starter pipeline file.

use crate::FetchError;
use crate::decode::{Decoder, guess_format};
use crate::http::{HttpClient, Request};
use goalpost_spec::{ColumnType, FileFormat};
use reqwest::header::ACCEPT;
use serde_json::Value;
use std::path::Path;
use url::Url;

/// A dataset's address, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Portal {
    /// `base` is the portal (`https://data.sfgov.org`), `dataset` the four-by-four id.
    Socrata {
        base: String,
        dataset: String,
    },
    Ckan {
        base: String,
        dataset: Option<String>,
        resource: Option<String>,
    },
    Arcgis {
        layer: String,
    },
    Opendatasoft {
        base: String,
        dataset: String,
    },
    Datasette {
        table: String,
    },
    Http {
        url: String,
    },
}

impl Portal {
    pub fn kind(&self) -> &'static str {
        match self {
            Portal::Socrata { .. } => "socrata",
            Portal::Ckan { .. } => "ckan",
            Portal::Arcgis { .. } => "arcgis",
            Portal::Opendatasoft { .. } => "opendatasoft",
            Portal::Datasette { .. } => "datasette",
            Portal::Http { .. } => "http",
        }
    }
}

/// One field of a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The name the connector's rows use.
    pub name: String,
    /// A human label, when the portal has one besides the name.
    pub label: Option<String>,
    pub description: Option<String>,
    pub column_type: ColumnType,
}

/// What `init` needs to write a starter pipeline.
#[derive(Debug, Clone)]
pub struct Discovered {
    pub portal: Portal,
    pub title: String,
    pub description: Option<String>,
    /// The dataset's public page.
    pub link: Option<String>,
    /// The `[[source]]` keys besides `kind`, in order, as TOML-ready values.
    pub source: Vec<(String, Value)>,
    pub fields: Vec<Field>,
    /// Source fields that identify a row.
    pub key: Vec<String>,
    /// The field a refresh follows, when the portal has one.
    pub incremental: Option<String>,
    /// The timestamp field to cut periods by.
    pub time: Option<String>,
    /// The dataset's time zone, when the portal says.
    pub timezone: Option<String>,
}

fn is_four_by_four(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 9
        && b[4] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || c.is_ascii_alphanumeric())
}

/// Tell the portal from a dataset's address. `kind` overrides the guess.
pub fn recognise(address: &str, kind: Option<&str>) -> Result<Portal, FetchError> {
    let url = Url::parse(address).map_err(|e| FetchError::Config {
        message: format!(
            "{address:?} is not a web address ({e}); give the dataset's page or API address"
        ),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FetchError::Config {
            message: format!("{address:?} is not an http(s) address"),
        });
    }
    let base = url.origin().ascii_serialization();
    let segments: Vec<&str> = url
        .path_segments()
        .map(|s| s.filter(|x| !x.is_empty()).collect())
        .unwrap_or_default();
    let query = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let after = |word: &str| {
        segments
            .iter()
            .position(|s| *s == word)
            .and_then(|i| segments.get(i + 1))
            .map(|s| s.to_string())
    };
    // A Socrata id is four-by-four lowercase letters and digits, in one of the portal's own
    // address shapes: `/resource/<id>.json`, `/api/views/<id>`, `/d/<id>`, or a dataset page
    // ending `/<id>` (optionally `/about_data`). A file named like one elsewhere is not it.
    let four_by_four = segments.iter().enumerate().rev().find_map(|(i, s)| {
        let prev = i.checked_sub(1).map(|j| segments[j]);
        let (stem, ext) = match s.rsplit_once('.') {
            Some((stem, ext)) => (stem, Some(ext)),
            None => (*s, None),
        };
        let lowercase = stem
            .bytes()
            .all(|b| b == b'-' || b.is_ascii_lowercase() || b.is_ascii_digit());
        let placed = match ext {
            Some("json" | "csv") => matches!(prev, Some("resource" | "views")),
            Some(_) => false,
            None => true,
        };
        (is_four_by_four(stem) && lowercase && placed).then(|| stem.to_string())
    });
    let layer = || {
        let i = segments
            .iter()
            .position(|s| *s == "FeatureServer" || *s == "MapServer")?;
        let number = segments.get(i + 1).filter(|n| n.parse::<u32>().is_ok())?;
        let mut layer = url.clone();
        layer.set_query(None);
        layer.set_path(&format!("/{}/{}", segments[..=i].join("/"), number));
        Some(layer.to_string())
    };
    let guess = match kind {
        Some(k) => k.to_string(),
        None if layer().is_some() => "arcgis".into(),
        None if segments.windows(2).any(|w| w == ["explore", "dataset"])
            || segments.starts_with(&["api", "explore"]) =>
        {
            "opendatasoft".into()
        }
        None if segments.first() == Some(&"dataset")
            || segments.starts_with(&["api", "3", "action"]) =>
        {
            "ckan".into()
        }
        None if four_by_four.is_some() => "socrata".into(),
        None => "http".into(),
    };
    Ok(match guess.as_str() {
        "socrata" => Portal::Socrata {
            base,
            dataset: four_by_four.ok_or_else(|| FetchError::Config {
                message: format!("{address} holds no Socrata dataset id (like abcd-1234)"),
            })?,
        },
        "ckan" => Portal::Ckan {
            base,
            dataset: after("dataset").or_else(|| query("id").filter(|_| segments.last() == Some(&"package_show"))),
            resource: after("resource").or_else(|| query("resource_id")),
        },
        "arcgis" => Portal::Arcgis {
            layer: layer().ok_or_else(|| FetchError::Config {
                message: format!("{address} is not an ArcGIS layer address; expected …/FeatureServer/<layer number>"),
            })?,
        },
        "opendatasoft" => Portal::Opendatasoft {
            base,
            dataset: after("dataset").or_else(|| after("datasets")).ok_or_else(|| FetchError::Config {
                message: format!("{address} names no Opendatasoft dataset; expected …/explore/dataset/<id>"),
            })?,
        },
        "datasette" => {
            let mut table = url.clone();
            table.set_query(None);
            let path = table.path().trim_end_matches(".json").trim_end_matches('/').to_string();
            table.set_path(&path);
            Portal::Datasette { table: table.to_string() }
        }
        "http" => Portal::Http { url: address.to_string() },
        other => {
            return Err(FetchError::Config {
                message: format!("unknown kind {other:?}; expected socrata, ckan, arcgis, opendatasoft, datasette or http"),
            });
        }
    })
}

/// Ask the portal about the dataset.
pub async fn discover(portal: Portal, http: &HttpClient) -> Result<Discovered, FetchError> {
    match &portal {
        Portal::Socrata { base, dataset } => socrata(portal.clone(), base, dataset, http).await,
        Portal::Http { url } => document(portal.clone(), url, http).await,
        Portal::Ckan {
            base,
            dataset,
            resource,
        } => {
            ckan(
                portal.clone(),
                base,
                dataset.as_deref(),
                resource.as_deref(),
                http,
            )
            .await
        }
        Portal::Arcgis { layer } => arcgis(portal.clone(), layer, http).await,
        Portal::Opendatasoft { base, dataset } => {
            opendatasoft(portal.clone(), base, dataset, http).await
        }
        Portal::Datasette { table } => datasette(portal.clone(), table, http).await,
    }
}

/// The array at `key` of a JSON object; empty when it is missing or not an array.
fn items<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn parse_url(s: &str) -> Result<Url, FetchError> {
    Url::parse(s).map_err(|e| FetchError::Config {
        message: format!("{s:?} is not a web address: {e}"),
    })
}

fn with_query(base: &str, path: &str, pairs: &[(&str, &str)]) -> Result<Url, FetchError> {
    let mut url = parse_url(&format!("{}{path}", base.trim_end_matches('/')))?;
    url.query_pairs_mut().extend_pairs(pairs);
    Ok(url)
}

/// A unique field of the sampled rows to key by: one whose name says it is an id first.
fn unique_field(sample: &[Value], fields: &[Field]) -> Option<String> {
    let unique = |name: &str| {
        let values: Vec<String> = sample
            .iter()
            .filter_map(|r| r.get(name).filter(|v| !v.is_null()).map(Value::to_string))
            .collect();
        !values.is_empty()
            && values.len() == sample.len()
            && values
                .iter()
                .collect::<std::collections::HashSet<_>>()
                .len()
                == values.len()
    };
    let candidates: Vec<&Field> = fields
        .iter()
        .filter(|f| matches!(f.column_type, ColumnType::String | ColumnType::Int64))
        .collect();
    let named_id = |f: &&&Field| {
        let n = f.name.to_ascii_lowercase();
        n == "id"
            || n.ends_with("_id")
            || n.ends_with("id")
            || n.contains("key")
            || n.contains("number")
    };
    candidates
        .iter()
        .filter(named_id)
        .chain(candidates.iter())
        .find(|f| unique(&f.name))
        .map(|f| f.name.clone())
}

/// CKAN: the DataStore's `fields` (with Postgres types), or the resource file's first rows.
async fn ckan(
    portal: Portal,
    base: &str,
    dataset: Option<&str>,
    resource: Option<&str>,
    http: &HttpClient,
) -> Result<Discovered, FetchError> {
    let action = |name: &str, pairs: &[(&str, &str)]| {
        with_query(base, &format!("/api/3/action/{name}"), pairs)
    };
    let unwrap = |v: Value, url: &Url| -> Result<Value, FetchError> {
        if v.get("success") == Some(&Value::Bool(true)) {
            Ok(v.get("result").cloned().unwrap_or(Value::Null))
        } else {
            Err(FetchError::Portal {
                url: url.to_string(),
                message: format!(
                    "CKAN said: {}",
                    v.get("error").map(Value::to_string).unwrap_or_default()
                ),
            })
        }
    };
    let package = match dataset {
        Some(d) => {
            let url = action("package_show", &[("id", d)])?;
            Some(unwrap(get_json(http, url.clone()).await?, &url)?)
        }
        None => None,
    };
    let resources: Vec<Value> = package
        .as_ref()
        .and_then(|p| p.get("resources"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let res = match resource {
        Some(r) if package.is_none() => {
            let url = action("resource_show", &[("id", r)])?;
            unwrap(get_json(http, url.clone()).await?, &url)?
        }
        Some(r) => resources
            .iter()
            .find(|x| x.get("id").and_then(Value::as_str) == Some(r) || x.get("name").and_then(Value::as_str) == Some(r))
            .cloned()
            .ok_or_else(|| FetchError::Config {
                message: format!("dataset {} has no resource {r:?}", dataset.unwrap_or_default()),
            })?,
        None => resources
            .iter()
            .find(|x| x.get("datastore_active") == Some(&Value::Bool(true)))
            .or_else(|| resources.iter().find(|x| x.get("format").and_then(Value::as_str).is_some_and(|f| f.eq_ignore_ascii_case("csv"))))
            .cloned()
            .ok_or_else(|| FetchError::Config {
                message: format!("dataset {} has no DataStore or CSV resource; name one with --kind ckan and its /resource/<id> address", dataset.unwrap_or_default()),
            })?,
    };
    let resource_id = res
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let title = package
        .as_ref()
        .and_then(|p| p.get("title"))
        .or_else(|| res.get("name"))
        .and_then(Value::as_str)
        .unwrap_or(&resource_id)
        .to_string();
    let description = package
        .as_ref()
        .and_then(|p| p.get("notes"))
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty())
        .map(str::to_string);
    let mut source = vec![("url".to_string(), Value::from(base))];
    match (dataset, resource) {
        (Some(d), _) if res.get("datastore_active") != Some(&Value::Bool(true)) => {
            source.push(("dataset".into(), Value::from(d)));
            source.push(("resource".into(), Value::from(resource_id.clone())));
        }
        _ => source.push(("resource_id".into(), Value::from(resource_id.clone()))),
    }
    let link = package
        .as_ref()
        .and_then(|p| p.get("name"))
        .and_then(Value::as_str)
        .map(|n| format!("{}/dataset/{n}", base.trim_end_matches('/')));
    if res.get("datastore_active") != Some(&Value::Bool(true)) {
        let file = res
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| FetchError::Portal {
                url: base.to_string(),
                message: format!(
                    "resource {resource_id} is neither in the DataStore nor has a download url"
                ),
            })?;
        let doc = document(
            Portal::Http {
                url: file.to_string(),
            },
            file,
            http,
        )
        .await?;
        return Ok(Discovered {
            portal,
            title,
            description,
            link,
            source,
            incremental: None,
            timezone: None,
            ..doc
        });
    }
    let url = action(
        "datastore_search",
        &[("resource_id", &resource_id), ("limit", "1000")],
    )?;
    let result = unwrap(get_json(http, url.clone()).await?, &url)?;
    let sample = items(&result, "records").to_vec();
    let fields: Vec<Field> = items(&result, "fields")
        .iter()
        .filter_map(|f| {
            let name = f.get("id")?.as_str()?;
            if name == "_id" || name == "_full_text" {
                return None;
            }
            let t = f
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("text")
                .to_ascii_lowercase();
            let column_type = match t.as_str() {
                "int" | "int4" | "int8" | "integer" | "bigint" | "smallint" => ColumnType::Int64,
                "numeric" | "float" | "float4" | "float8" | "double precision" | "real" => {
                    if whole_numbers(&sample, name) {
                        ColumnType::Int64
                    } else {
                        ColumnType::Float64
                    }
                }
                "timestamp" | "timestamptz" => ColumnType::Timestamp,
                "date" => ColumnType::Date,
                "bool" | "boolean" => ColumnType::Bool,
                _ => ColumnType::String,
            };
            Some(Field {
                name: name.to_string(),
                label: f
                    .pointer("/info/label")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                description: f
                    .pointer("/info/notes")
                    .and_then(Value::as_str)
                    .filter(|d| !d.is_empty())
                    .map(str::to_string),
                column_type,
            })
        })
        .collect();
    let key = unique_field(&sample, &fields).into_iter().collect();
    Ok(Discovered {
        title,
        description,
        link,
        source,
        time: pick_time(&fields),
        fields,
        key,
        incremental: None,
        timezone: None,
        portal,
    })
}

/// ArcGIS: the layer's `fields`, object id field and edit-date field.
async fn arcgis(portal: Portal, layer: &str, http: &HttpClient) -> Result<Discovered, FetchError> {
    let mut url = parse_url(layer)?;
    url.query_pairs_mut().append_pair("f", "json");
    let info = get_json(http, url.clone()).await?;
    if let Some(error) = info.get("error") {
        return Err(FetchError::Portal {
            url: url.to_string(),
            message: format!("ArcGIS said: {error}"),
        });
    }
    let mut fields: Vec<Field> = items(&info, "fields")
        .iter()
        .filter_map(|f| {
            let name = f.get("name")?.as_str()?.to_string();
            let column_type = match f.get("type").and_then(Value::as_str).unwrap_or_default() {
                "esriFieldTypeOID"
                | "esriFieldTypeInteger"
                | "esriFieldTypeSmallInteger"
                | "esriFieldTypeBigInteger" => ColumnType::Int64,
                "esriFieldTypeDouble" | "esriFieldTypeSingle" => ColumnType::Float64,
                "esriFieldTypeDate" | "esriFieldTypeTimestampOffset" => ColumnType::Timestamp,
                "esriFieldTypeDateOnly" => ColumnType::Date,
                "esriFieldTypeGeometry" | "esriFieldTypeBlob" | "esriFieldTypeRaster" => {
                    return None;
                }
                _ => ColumnType::String,
            };
            Some(Field {
                label: f
                    .get("alias")
                    .and_then(Value::as_str)
                    .filter(|a| *a != name)
                    .map(str::to_string),
                name,
                description: None,
                column_type,
            })
        })
        .collect();
    if info.get("geometryType").and_then(Value::as_str) == Some("esriGeometryPoint") {
        for (name, label) in [
            ("longitude", "Longitude (WGS 84)"),
            ("latitude", "Latitude (WGS 84)"),
        ] {
            fields.push(Field {
                name: name.into(),
                label: Some(label.into()),
                description: None,
                column_type: ColumnType::Float64,
            });
        }
    }
    let oid = info
        .get("objectIdField")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            fields
                .iter()
                .find(|f| f.name.eq_ignore_ascii_case("objectid"))
                .map(|f| f.name.clone())
        });
    let global = fields
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case("globalid"))
        .map(|f| f.name.clone());
    let edit = info
        .pointer("/editFieldsInfo/editDateField")
        .and_then(Value::as_str)
        .map(str::to_string);
    let name = info
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("layer")
        .to_string();
    Ok(Discovered {
        title: name,
        description: info
            .get("description")
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
            .map(str::to_string),
        link: Some(layer.to_string()),
        source: vec![("url".into(), Value::from(layer))],
        time: pick_time(&fields),
        key: global.or(oid).into_iter().collect(),
        fields,
        incremental: edit,
        timezone: None,
        portal,
    })
}

/// Opendatasoft: the dataset's `fields` (with ODS types) and its time zone.
async fn opendatasoft(
    portal: Portal,
    base: &str,
    dataset: &str,
    http: &HttpClient,
) -> Result<Discovered, FetchError> {
    let path = format!("/api/explore/v2.1/catalog/datasets/{dataset}");
    let info = get_json(http, with_query(base, &path, &[])?).await?;
    let records = get_json(
        http,
        with_query(base, &format!("{path}/records"), &[("limit", "100")])?,
    )
    .await?;
    let sample = items(&records, "results").to_vec();
    let fields: Vec<Field> = items(&info, "fields")
        .iter()
        .filter_map(|f| {
            let name = f.get("name")?.as_str()?.to_string();
            let column_type = match f.get("type").and_then(Value::as_str).unwrap_or_default() {
                "int" => ColumnType::Int64,
                "double" => ColumnType::Float64,
                "date" => ColumnType::Date,
                "datetime" => ColumnType::Timestamp,
                "boolean" => ColumnType::Bool,
                _ => ColumnType::String,
            };
            Some(Field {
                label: f
                    .get("label")
                    .and_then(Value::as_str)
                    .filter(|l| *l != name)
                    .map(str::to_string),
                description: f
                    .get("description")
                    .and_then(Value::as_str)
                    .filter(|d| !d.is_empty())
                    .map(str::to_string),
                name,
                column_type,
            })
        })
        .collect();
    let meta = |k: &str| {
        info.pointer(&format!("/metas/default/{k}"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Ok(Discovered {
        title: meta("title").unwrap_or_else(|| dataset.to_string()),
        description: meta("description"),
        link: Some(format!(
            "{}/explore/dataset/{dataset}/",
            base.trim_end_matches('/')
        )),
        source: vec![
            ("url".into(), Value::from(base)),
            ("dataset".into(), Value::from(dataset)),
        ],
        time: pick_time(&fields),
        key: unique_field(&sample, &fields).into_iter().collect(),
        fields,
        incremental: None,
        timezone: meta("timezone"),
        portal,
    })
}

/// The declared SQLite type of each column of a Datasette table (empty when the instance
/// does not allow SQL queries).
async fn datasette_declared_types(
    table: &str,
    http: &HttpClient,
) -> std::collections::HashMap<String, String> {
    let Some((database, name)) = table.rsplit_once('/') else {
        return Default::default();
    };
    let Ok(mut url) = parse_url(&format!("{database}.json")) else {
        return Default::default();
    };
    url.query_pairs_mut()
        .append_pair("sql", "select name, type from pragma_table_info(:t)")
        .append_pair("t", &tilde_decode(name))
        .append_pair("_shape", "objects");
    match get_json(http, url).await {
        Ok(v) => items(&v, "rows")
            .iter()
            .filter_map(|r| {
                Some((
                    r.get("name")?.as_str()?.to_string(),
                    r.get("type")?.as_str()?.to_string(),
                ))
            })
            .collect(),
        Err(e) => {
            tracing::info!(error = %e, "column types not available; guessing them from a sample");
            Default::default()
        }
    }
}

/// Undo Datasette's tilde-encoding (`~2E` → `.`) and percent-encoding of a name in a path.
fn tilde_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'~' | b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Datasette: a sample page gives the columns, the primary keys and, from the values, types.
async fn datasette(
    portal: Portal,
    table: &str,
    http: &HttpClient,
) -> Result<Discovered, FetchError> {
    let mut url = parse_url(&format!("{table}.json"))?;
    url.query_pairs_mut()
        .append_pair("_shape", "objects")
        .append_pair("_size", "max")
        .append_pair("_nosuggest", "1");
    let page = get_json(http, url.clone()).await?;
    if page.get("ok") == Some(&Value::Bool(false)) {
        return Err(FetchError::Portal {
            url: url.to_string(),
            message: format!(
                "Datasette said: {}",
                page.get("error").map(Value::to_string).unwrap_or_default()
            ),
        });
    }
    let sample = items(&page, "rows").to_vec();
    let columns: Vec<String> = page
        .get("columns")
        .and_then(Value::as_array)
        .map(|c| {
            c.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .or_else(|| {
            sample
                .first()
                .and_then(Value::as_object)
                .map(|o| o.keys().cloned().collect())
        })
        .unwrap_or_default();
    let declared = datasette_declared_types(table, http).await;
    let fields: Vec<Field> = columns
        .iter()
        .map(|name| {
            let declared = declared.get(name).map(|t| t.to_ascii_uppercase());
            let texts: Vec<String> = sample
                .iter()
                .filter_map(|r| match r.get(name)? {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                })
                .collect();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            // SQLite's declared type settles numbers; a sample cannot prove that a text
            // column holds only digits. Text may still hold dates, which the sample shows.
            let column_type = match declared.as_deref() {
                Some(t) if t.contains("INT") => ColumnType::Int64,
                Some(t) if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") => {
                    ColumnType::Float64
                }
                Some(t) if t.contains("CHAR") || t.contains("TEXT") || t.contains("CLOB") => {
                    match infer(&refs) {
                        c @ (ColumnType::Timestamp | ColumnType::Date) => c,
                        _ => ColumnType::String,
                    }
                }
                _ => infer(&refs),
            };
            Field {
                name: name.clone(),
                label: None,
                description: None,
                column_type,
            }
        })
        .collect();
    let mut key: Vec<String> = page
        .get("primary_keys")
        .and_then(Value::as_array)
        .map(|k| {
            k.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if key.is_empty() {
        key = unique_field(&sample, &fields).into_iter().collect();
    }
    let name = table.rsplit('/').next().unwrap_or("table").to_string();
    Ok(Discovered {
        title: page
            .get("table")
            .and_then(Value::as_str)
            .unwrap_or(&name)
            .replace(['-', '_'], " "),
        description: None,
        link: Some(table.to_string()),
        source: vec![("url".into(), Value::from(table))],
        time: pick_time(&fields),
        fields,
        key,
        incremental: None,
        timezone: None,
        portal,
    })
}

async fn get_json(http: &HttpClient, url: Url) -> Result<Value, FetchError> {
    let req = Request::new(url).header(ACCEPT, "application/json");
    Ok(http.get_with(&req, |r| r.json::<Value>()).await?.1)
}

/// Socrata: the view metadata (`/api/views/<id>.json`) names and types every column; a sample
/// page settles whether numbers are whole.
async fn socrata(
    portal: Portal,
    base: &str,
    dataset: &str,
    http: &HttpClient,
) -> Result<Discovered, FetchError> {
    let base_url = Url::parse(base).map_err(|e| FetchError::Config {
        message: e.to_string(),
    })?;
    let join = |p: &str| {
        base_url.join(p).map_err(|e| FetchError::Config {
            message: e.to_string(),
        })
    };
    let view = get_json(http, join(&format!("/api/views/{dataset}.json"))?).await?;
    let mut sample_url = join(&format!("/resource/{dataset}.json"))?;
    sample_url.query_pairs_mut().append_pair("$limit", "5000");
    let sample = get_json(http, sample_url).await?;
    let sample = sample.as_array().cloned().unwrap_or_default();
    // The column the publisher declared as the row identifier: `rowIdentifierColumnId`, or
    // `metadata.rowIdentifier` (a column id, or a field name on newer views).
    let row_identifier = view
        .get("rowIdentifierColumnId")
        .or_else(|| view.pointer("/metadata/rowIdentifier"))
        .cloned();
    let mut fields = Vec::new();
    let mut key = Vec::new();
    for c in items(&view, "columns").iter() {
        let Some(name) = c.get("fieldName").and_then(Value::as_str) else {
            continue;
        };
        if name.starts_with(':') {
            continue;
        }
        let soda = c
            .get("dataTypeName")
            .and_then(Value::as_str)
            .unwrap_or("text");
        let column_type = match soda {
            "number" | "double" | "money" | "percent" => {
                if whole_numbers(&sample, name) {
                    ColumnType::Int64
                } else {
                    ColumnType::Float64
                }
            }
            "checkbox" => ColumnType::Bool,
            "calendar_date" | "floating_timestamp" | "fixed_timestamp" | "date" => {
                ColumnType::Timestamp
            }
            _ => ColumnType::String,
        };
        let declared = match &row_identifier {
            Some(Value::Number(n)) => c.get("id").and_then(Value::as_i64) == n.as_i64(),
            Some(Value::String(s)) => s == name,
            _ => false,
        };
        if declared {
            key.push(name.to_string());
        }
        fields.push(Field {
            name: name.to_string(),
            label: c.get("name").and_then(Value::as_str).map(str::to_string),
            description: c
                .get("description")
                .and_then(Value::as_str)
                .filter(|d| !d.is_empty())
                .map(str::to_string),
            column_type,
        });
    }
    if key.is_empty() {
        // Every Socrata row has a unique system id.
        fields.insert(
            0,
            Field {
                name: ":id".into(),
                label: Some("Row id".into()),
                description: Some("Socrata's own identifier of the row".into()),
                column_type: ColumnType::String,
            },
        );
        key.push(":id".into());
    }
    let time = pick_time(&fields);
    Ok(Discovered {
        title: view
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or(dataset)
            .to_string(),
        description: view
            .get("description")
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
            .map(str::to_string),
        link: Some(format!("{}/d/{dataset}", base.trim_end_matches('/'))),
        source: vec![
            ("url".into(), Value::from(base)),
            ("dataset".into(), Value::from(dataset)),
        ],
        fields,
        key,
        incremental: Some(":updated_at".into()),
        time,
        timezone: None,
        portal,
    })
}

/// A document: its first rows settle names and types.
async fn document(
    portal: Portal,
    address: &str,
    http: &HttpClient,
) -> Result<Discovered, FetchError> {
    let url = Url::parse(address).map_err(|e| FetchError::Config {
        message: e.to_string(),
    })?;
    let response = http.get(&Request::new(url.clone())).await?;
    let format = guess_format(url.path())
        .or_else(|| {
            match response
                .header("content-type")
                .unwrap_or_default()
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
            {
                "text/csv" => Some(FileFormat::Csv),
                "application/geo+json" => Some(FileFormat::Geojson),
                "application/x-ndjson" => Some(FileFormat::Ndjson),
                "application/json" => Some(FileFormat::Json),
                _ => None,
            }
        })
        .unwrap_or(FileFormat::Csv);
    let origin = Path::new(address);
    let mut decoder = Decoder::open(&response.body[..], format, origin, None)?;
    // Types are guessed from the values, so look at many rows: a code column that holds
    // one letter in row 30,000 is text.
    let page = decoder
        .read_page(origin, 50_000, 0)?
        .ok_or_else(|| FetchError::Decode {
            origin: address.to_string(),
            message: "the document has no rows to learn the columns from".into(),
        })?;
    let columns = page.batch.schema();
    let mut fields = Vec::new();
    for (i, f) in columns.fields().iter().enumerate() {
        use arrow::array::AsArray;
        let values: Vec<&str> = page
            .batch
            .column(i)
            .as_string::<i32>()
            .iter()
            .flatten()
            .collect();
        fields.push(Field {
            name: f.name().clone(),
            label: None,
            description: None,
            column_type: infer(&values),
        });
    }
    let key = fields
        .iter()
        .enumerate()
        .find(|(i, f)| {
            use arrow::array::AsArray;
            let col = page.batch.column(*i).as_string::<i32>();
            let vals: Vec<&str> = col.iter().flatten().collect();
            vals.len() == page.num_rows()
                && vals.iter().collect::<std::collections::HashSet<_>>().len() == vals.len()
                && matches!(f.column_type, ColumnType::String | ColumnType::Int64)
        })
        .map(|(_, f)| vec![f.name.clone()])
        .unwrap_or_default();
    let name = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or("data")
        .to_string();
    Ok(Discovered {
        title: name
            .split('.')
            .next()
            .unwrap_or(&name)
            .replace(['-', '_'], " "),
        description: None,
        link: None,
        source: vec![("url".into(), Value::from(address))],
        time: pick_time(&fields),
        fields,
        key,
        incremental: None,
        timezone: None,
        portal,
    })
}

fn whole_numbers(sample: &[Value], field: &str) -> bool {
    let mut any = false;
    for row in sample {
        match row.get(field) {
            Some(Value::String(s)) => {
                any = true;
                if s.parse::<i64>().is_err() {
                    return false;
                }
            }
            Some(Value::Number(n)) => {
                any = true;
                if !n.is_i64() {
                    return false;
                }
            }
            _ => {}
        }
    }
    any
}

/// The narrowest type every sampled value fits.
fn infer(values: &[&str]) -> ColumnType {
    if values.is_empty() {
        return ColumnType::String;
    }
    let all = |f: &dyn Fn(&str) -> bool| values.iter().all(|v| f(v));
    // Codes with leading zeros (ZIP codes, ids) stay text, or their zeros would be lost.
    if values
        .iter()
        .any(|v| v.len() > 1 && v.starts_with('0') && !v.starts_with("0."))
    {
        return ColumnType::String;
    }
    if all(&|v| v.parse::<i64>().is_ok()) {
        ColumnType::Int64
    } else if all(&|v| v.parse::<f64>().is_ok()) {
        ColumnType::Float64
    } else if all(&|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "false")) {
        ColumnType::Bool
    } else if all(&|v| chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").is_ok()) {
        ColumnType::Date
    } else if all(&looks_like_timestamp) {
        ColumnType::Timestamp
    } else {
        ColumnType::String
    }
}

fn looks_like_timestamp(v: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(v).is_ok()
        || chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
        || chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S%.f").is_ok()
        || chrono::NaiveDateTime::parse_from_str(v, "%m/%d/%Y %I:%M:%S %p").is_ok()
}

/// The timestamp a dataset's figures are most likely cut by: one whose name says it is when
/// the record began, else the first timestamp.
fn pick_time(fields: &[Field]) -> Option<String> {
    let timestamps: Vec<&Field> = fields
        .iter()
        .filter(|f| matches!(f.column_type, ColumnType::Timestamp | ColumnType::Date))
        .collect();
    let preferred = [
        "created",
        "received",
        "opened",
        "requested",
        "reported",
        "incident",
        "date",
    ];
    preferred
        .iter()
        .find_map(|word| {
            timestamps
                .iter()
                .find(|f| f.name.to_ascii_lowercase().contains(word))
        })
        .or(timestamps.first())
        .map(|f| f.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portals_are_recognised_from_their_addresses() {
        let r = |a: &str| recognise(a, None).unwrap();
        assert_eq!(
            r(
                "https://data.sfgov.org/Public-Safety/Fire-Department-Calls-for-Service/nuek-vuh3/about_data"
            ),
            Portal::Socrata {
                base: "https://data.sfgov.org".into(),
                dataset: "nuek-vuh3".into()
            }
        );
        assert_eq!(
            r("https://data.cityofnewyork.us/resource/erm2-nwe9.json").kind(),
            "socrata"
        );
        assert_eq!(
            r(
                "https://services.arcgis.com/abc/arcgis/rest/services/Crime/FeatureServer/0/query?where=1%3D1"
            ),
            Portal::Arcgis {
                layer: "https://services.arcgis.com/abc/arcgis/rest/services/Crime/FeatureServer/0"
                    .into()
            }
        );
        assert_eq!(
            r("https://data.boston.gov/dataset/311-service-requests/resource/abc-123"),
            Portal::Ckan {
                base: "https://data.boston.gov".into(),
                dataset: Some("311-service-requests".into()),
                resource: Some("abc-123".into())
            }
        );
        assert_eq!(
            r(
                "https://live-durhamnc.opendatasoft.com/explore/dataset/durham-police-crime-reports/table/"
            ),
            Portal::Opendatasoft {
                base: "https://live-durhamnc.opendatasoft.com".into(),
                dataset: "durham-police-crime-reports".into()
            }
        );
        assert_eq!(r("https://example.org/files/counts.csv").kind(), "http");
        assert_eq!(
            r("https://example.org/files/city-data.csv").kind(),
            "http",
            "a file named like a Socrata id is still a file"
        );
        assert_eq!(
            recognise(
                "https://example.org/db/table.json?_size=5",
                Some("datasette")
            )
            .unwrap(),
            Portal::Datasette {
                table: "https://example.org/db/table".into()
            }
        );
        assert!(recognise("ftp://x", None).is_err());
        assert!(recognise("https://x.org/a", Some("nope")).is_err());
    }

    #[test]
    fn sampled_values_settle_types() {
        assert_eq!(infer(&["1", "22"]), ColumnType::Int64);
        assert_eq!(
            infer(&["01234", "22"]),
            ColumnType::String,
            "ZIP codes keep their zeros"
        );
        assert_eq!(infer(&["1.5", "2"]), ColumnType::Float64);
        assert_eq!(infer(&["2016-12-31"]), ColumnType::Date);
        assert_eq!(infer(&["12/31/2016 11:57:56 PM"]), ColumnType::Timestamp);
        assert_eq!(infer(&["x", "1"]), ColumnType::String);
    }
}
