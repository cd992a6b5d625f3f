//! A Socrata (SODA 2.x) server over generated pages, for the benchmark's JSON stages.
//!
//! It answers the requests goalpost's `socrata` connector makes, from rows held in memory
//! as their JSON text, so serving costs little next to the client's work:
//!
//! - `$select=count(*) AS n`, with or without a `$where`;
//! - `$select=:updated_at&$order=:updated_at DESC&$limit=1`: the newest stamp;
//! - `$select=:*,*&$order=:id&$limit=L&$offset=O`: a full load's pages;
//! - `$select=:*,*&$order=:updated_at,:id&$limit=L&$where=…`: a refresh's keyset pages.
//!
//! `$where` may hold `:updated_at >= 'T'` and the keyset condition
//! `(:updated_at > 'T' OR (:updated_at = 'T' AND :id > 'ID'))`, joined by `AND`. Anything
//! else is answered 400 with SODA's error shape, naming what is not supported.

use anyhow::{Context, Result, bail};
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDateTime;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// One row: its JSON text and the two system fields the queries use.
struct Row {
    id: String,
    /// `:updated_at` in milliseconds since the epoch.
    updated: i64,
    json: Box<RawValue>,
}

#[derive(Deserialize)]
struct System {
    #[serde(rename = ":id")]
    id: String,
    #[serde(rename = ":updated_at")]
    updated_at: String,
}

pub struct Rows {
    rows: Vec<Row>,
    /// Row indices in (`:updated_at`, `:id`) order.
    by_update: Vec<u32>,
}

fn millis(text: &str) -> Option<i64> {
    let t = text.trim_end_matches('Z');
    NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
}

fn parse_rows(text: &str, origin: &Path) -> Result<Vec<Row>> {
    let raw: Vec<Box<RawValue>> =
        serde_json::from_str(text).with_context(|| format!("reading {}", origin.display()))?;
    raw.into_iter()
        .map(|json| {
            let s: System = serde_json::from_str(json.get()).with_context(|| {
                format!("{}: a row without :id or :updated_at", origin.display())
            })?;
            let updated = millis(&s.updated_at).with_context(|| {
                format!("{}: bad :updated_at {}", origin.display(), s.updated_at)
            })?;
            Ok(Row {
                id: s.id,
                updated,
                json,
            })
        })
        .collect()
}

impl Rows {
    /// The pages under `dir/pages`, in order; with `changes`, the rows of
    /// `dir/changes.json` replace those with the same `:id`.
    pub fn load(dir: &Path, changes: bool) -> Result<Self> {
        let mut files: Vec<_> = std::fs::read_dir(dir.join("pages"))
            .with_context(|| format!("reading {}", dir.join("pages").display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()?;
        files.sort();
        let mut rows = Vec::new();
        for f in &files {
            rows.extend(parse_rows(&std::fs::read_to_string(f)?, f)?);
        }
        if changes {
            let index: HashMap<String, usize> = rows
                .iter()
                .enumerate()
                .map(|(i, r)| (r.id.clone(), i))
                .collect();
            let path = dir.join("changes.json");
            for changed in parse_rows(&std::fs::read_to_string(&path)?, &path)? {
                match index.get(&changed.id) {
                    Some(&i) => rows[i] = changed,
                    None => bail!("{}: no row {}", path.display(), changed.id),
                }
            }
        }
        if rows.windows(2).any(|w| w[0].id >= w[1].id) {
            bail!("the pages under {} are not in :id order", dir.display());
        }
        let mut by_update: Vec<u32> = (0..rows.len() as u32).collect();
        by_update.sort_by(|&a, &b| {
            let (a, b) = (&rows[a as usize], &rows[b as usize]);
            (a.updated, &a.id).cmp(&(b.updated, &b.id))
        });
        Ok(Self { rows, by_update })
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }
}

/// The conditions a `$where` may hold.
#[derive(Debug, Default, PartialEq)]
struct Filter {
    /// `:updated_at >= T`.
    since: Option<i64>,
    /// `(:updated_at, :id) > (T, ID)`.
    after: Option<(i64, String)>,
}

fn parse_where(text: &str) -> Result<Filter, String> {
    let since = regex::Regex::new(r"^:updated_at >= '([^']+)'$").unwrap();
    let after = regex::Regex::new(
        r"^\(:updated_at > '([^']+)' OR \(:updated_at = '([^']+)' AND :id > '([^']+)'\)\)$",
    )
    .unwrap();
    let mut f = Filter::default();
    // The keyset condition holds " AND " itself: take it off the end first.
    let mut rest = text.trim();
    if let Some(start) = rest.find("(:updated_at > ") {
        let clause = &rest[start..];
        let c = after
            .captures(clause)
            .ok_or_else(|| format!("unsupported condition {clause:?}"))?;
        if c[1] != c[2] {
            return Err(format!("unsupported condition {clause:?}"));
        }
        let t = millis(&c[1]).ok_or_else(|| format!("bad time {:?}", &c[1]))?;
        f.after = Some((t, c[3].to_string()));
        rest = rest[..start].trim_end();
        rest = rest.strip_suffix("AND").unwrap_or(rest).trim_end();
    }
    if !rest.is_empty() {
        let c = since
            .captures(rest)
            .ok_or_else(|| format!("unsupported condition {rest:?}"))?;
        f.since = Some(millis(&c[1]).ok_or_else(|| format!("bad time {:?}", &c[1]))?);
    }
    Ok(f)
}

impl Rows {
    /// Row indices matching `f`, in (`:updated_at`, `:id`) order.
    fn matching(&self, f: &Filter) -> &[u32] {
        let key = |i: u32| {
            let r = &self.rows[i as usize];
            (r.updated, r.id.as_str())
        };
        let mut from = 0;
        if let Some(t) = f.since {
            from = from.max(self.by_update.partition_point(|&i| key(i).0 < t));
        }
        if let Some((t, id)) = &f.after {
            from = from.max(
                self.by_update
                    .partition_point(|&i| key(i) <= (*t, id.as_str())),
            );
        }
        &self.by_update[from..]
    }
}

fn soda_error(message: String) -> Response {
    let body = serde_json::json!({
        "code": "query.compiler.malformed",
        "error": true,
        "message": message,
    });
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

fn json_rows<'a>(rows: impl Iterator<Item = &'a str>) -> Response {
    let mut body = String::from("[");
    for (n, r) in rows.enumerate() {
        if n > 0 {
            body.push_str("\n,");
        }
        body.push_str(r);
    }
    body.push_str("]\n");
    let mut resp = body.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=utf-8"),
    );
    resp
}

async fn resource(
    State(rows): State<Arc<Rows>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str);
    let filter = match get("$where").map(parse_where).transpose() {
        Ok(f) => f.unwrap_or_default(),
        Err(e) => return soda_error(e),
    };
    let filtered = filter != Filter::default();
    let number = |k: &str| get(k).map(|v| v.parse::<usize>().map_err(|_| format!("bad {k}")));
    let (limit, offset) = match (number("$limit").transpose(), number("$offset").transpose()) {
        (Ok(l), Ok(o)) => (l.unwrap_or(1_000), o.unwrap_or(0)),
        (Err(e), _) | (_, Err(e)) => return soda_error(e),
    };
    match (get("$select"), get("$order")) {
        (Some("count(*) AS n"), _) => {
            let n = if filtered {
                rows.matching(&filter).len()
            } else {
                rows.len()
            };
            json_rows(std::iter::once(format!("{{\"n\":\"{n}\"}}").as_str()))
        }
        (Some(":updated_at"), Some(":updated_at DESC")) => {
            let newest = rows.matching(&filter).last().map(|&i| {
                let r = &rows.rows[i as usize];
                let t = chrono::DateTime::from_timestamp_millis(r.updated).unwrap();
                format!(
                    "{{\":updated_at\":\"{}\"}}",
                    t.format("%Y-%m-%dT%H:%M:%S%.3fZ")
                )
            });
            json_rows(newest.iter().map(String::as_str))
        }
        (Some(":*,*"), Some(":id")) if !filtered => {
            let end = offset.saturating_add(limit).min(rows.len());
            let start = offset.min(end);
            json_rows(rows.rows[start..end].iter().map(|r| r.json.get()))
        }
        (Some(":*,*"), Some(":updated_at,:id")) => {
            let matching = rows.matching(&filter);
            let start = offset.min(matching.len());
            let end = offset.saturating_add(limit).min(matching.len());
            json_rows(
                matching[start..end]
                    .iter()
                    .map(|&i| rows.rows[i as usize].json.get()),
            )
        }
        (select, order) => soda_error(format!(
            "unsupported query: $select={select:?} $order={order:?} with $where={:?}",
            get("$where")
        )),
    }
}

/// Serve `rows` at `/resource/<any id>.json` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, rows: Rows) -> Result<()> {
    let app = axum::Router::new()
        .route("/resource/{file}", axum::routing::get(resource))
        .with_state(Arc::new(rows));
    axum::serve(listener, app).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connectors_conditions_are_understood_and_others_refused() {
        let t = millis("2025-07-02T00:00:00.000").unwrap();
        assert_eq!(
            parse_where(":updated_at >= '2025-07-02T00:00:00.000'"),
            Ok(Filter {
                since: Some(t),
                after: None
            })
        );
        assert_eq!(
            parse_where(
                ":updated_at >= '2025-07-02T00:00:00.000' AND (:updated_at > '2025-07-02T00:00:00.000' OR (:updated_at = '2025-07-02T00:00:00.000' AND :id > 'row-2222~2222~2223'))"
            ),
            Ok(Filter {
                since: Some(t),
                after: Some((t, "row-2222~2222~2223".into()))
            })
        );
        assert!(parse_where("status = 'Open'").is_err());
        assert!(parse_where(":updated_at > '2025-07-02T00:00:00.000'").is_err());
    }

    #[test]
    fn keyset_pages_cover_the_changed_rows_once() {
        let dir = tempfile::tempdir().unwrap();
        let meta = crate::generate::generate(dir.path(), 20_000, |_| {}).unwrap();
        let rows = Rows::load(dir.path(), true).unwrap();
        assert_eq!(rows.len(), 20_000);
        let since = crate::generate::end_utc().timestamp_millis();
        let mut f = Filter {
            since: Some(since),
            after: None,
        };
        let mut seen = Vec::new();
        loop {
            let page: Vec<u32> = rows.matching(&f).iter().take(100).copied().collect();
            if page.is_empty() {
                break;
            }
            let last = &rows.rows[*page.last().unwrap() as usize];
            f.after = Some((last.updated, last.id.clone()));
            seen.extend(page);
        }
        assert_eq!(seen.len() as u64, meta.changes);
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), seen.len());
    }
}
