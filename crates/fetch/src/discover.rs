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
    let four_by_four = segments
        .iter()
        .rev()
        .map(|s| s.trim_end_matches(".json").trim_end_matches(".csv"))
        .find(|s| is_four_by_four(s))
        .map(str::to_string);
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
        other => Err(FetchError::Config {
            message: format!(
                "reading a {} dataset's schema is not supported yet; write the pipeline by hand (see docs/sources.md)",
                other.kind()
            ),
        }),
    }
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
    sample_url.query_pairs_mut().append_pair("$limit", "500");
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
    for c in view
        .get("columns")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
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
    let page = decoder
        .read_page(origin, 1000, 0)?
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
