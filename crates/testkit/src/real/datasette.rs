//! A real Datasette (PyPI `datasette`, pinned by `tools/install-test-servers`) serving one
//! SQLite file, plus [`write_sqlite`] to build that file.
//!
//! [`Datasette::start`] runs
//! `.tools/venv/bin/datasette serve DB --host 127.0.0.1 --port 0 --setting max_returned_rows N
//! --setting default_page_size M`, reads the port from uvicorn's
//! `Uvicorn running on http://127.0.0.1:PORT` line (stderr) and returns once
//! `/-/versions.json` answers. The database is opened mutable (no `--immutable`): Datasette
//! reads the file on every query, so a test can change rows between two runs of a client.
//!
//! # Datasette's JSON API (verified against Datasette 0.65.5)
//!
//! * `GET /-/versions.json` → `{"python": {...}, "datasette": {"version": "0.65.5"},
//!   "uvicorn": "...", "sqlite": {...}}`.
//! * `GET /<db>.json` → `{"database": "<db>", "tables": [{"name", "columns", "primary_keys",
//!   "count", ...}], ...}`: row counts of every table. `<db>` is the file name without
//!   `.sqlite`/`.db` ([`Datasette::database`]).
//! * `GET /<db>/<table>.json?_shape=objects&_size=N&_sort=col` →
//!   `{"database", "table", "rows": [{col: value, ...}], "truncated": false,
//!   "filtered_table_rows_count": <rows matching the filters>, "columns": [...],
//!   "primary_keys": [...], "next": "<token>" | null, "next_url": "http://.../...&_next=<token>"
//!   | null, "query": {"sql", "params"}, "suggested_facets": [...], ...}`.
//!   - Without `_shape` rows are arrays (`_shape=arrays`); `_shape=array` returns a bare JSON
//!     array of objects with no paging information.
//!   - Default order is the primary key; a table without one is ordered by `rowid`, which
//!     then appears in every row as `"rowid"`. `_sort=col` / `_sort_desc=col` order by a
//!     column.
//!   - Keyset paging: `next` is the last row's key: `"<pk>"` (or rowid) unsorted,
//!     `"<sort value>,<pk>"` when sorted (values tilde-encoded, e.g. `:` → `~3A`). Repeat the
//!     same query with `_next=<token>`, or just GET `next_url` (an absolute URL built from
//!     the request's `Host`). The last page has `"next": null, "next_url": null`. A garbage
//!     `_next` is not an error: it is compared as a key and usually yields an empty page.
//!   - **Ties under `_sort`**: Datasette 0.65.5 adds the primary key as tie-breaker to `ORDER
//!     BY` only on pages fetched with `_next` (`order by col, pk`); the first page is `order
//!     by col` alone. When rows tie on `col` across the first page boundary, paging with
//!     `_sort` repeats one row and skips another (seen on the fixture sorted by
//!     `received_dttm`). Paging in primary-key order (no `_sort`) is complete.
//!   - `_size` defaults to `default_page_size`; `_size=max` means `max_returned_rows`;
//!     `_size` above `max_returned_rows` is **400** `{"ok": false, "error": "_size must be <=
//!     1000", "status": 400, "title": null}`; non-numeric `_size` is 400 `"_size must be a
//!     positive integer"`. `_size=0` returns no rows but `filtered_table_rows_count` (the count).
//!   - Filters: `?col=value` / `col__exact`, `__not`, `__gt`, `__gte`, `__lt`, `__lte`,
//!     `__contains`, `__startswith`, `__in=a,b`, `__isnull=1`, `__notnull=1`, `__date=`,
//!     and `_where=<sql fragment>`. Values that look numeric are bound as numbers, others as
//!     text; ISO timestamps stored as text therefore compare as strings (`received__gte=
//!     2017-01-07T23:00:00` works). **A filter on a column that does not exist is not an
//!     error**: SQLite reads the double-quoted unknown name as a string literal, so the filter
//!     silently matches all or no rows.
//!   - Columns: `_col=a&_col=b` (the primary key is always included), `_nocol=c`; an unknown
//!     `_col` is 400 `"_col=x - invalid columns"`.
//!   - `_nosuggest=1` skips facet suggestions, which otherwise run a query per column on
//!     every page and dominate response time (a 1,000-row page: 88 ms with, 20 ms without,
//!     on a 7-column table); `_nofacet=1` skips facets.
//! * `GET /<db>.json?sql=select ...&_shape=objects` → `{"ok": true, "rows": [...],
//!   "truncated": true|false, ...}`: custom SQL returns at most `max_returned_rows` rows and
//!   says `"truncated": true` when there were more; it has no `next`.
//! * Errors are JSON `{"ok": false, "error": "<message>", "status": <code>, "title": null}`
//!   with that HTTP status: unknown table 404 `"Table not found"`, `_sort` on an unknown
//!   column **500** `"Cannot sort table by x"`, bad SQL 400 (with `"error": "no such table:
//!   x"` in a query-shaped body).
//! * Values: INTEGER/REAL columns come back as JSON numbers, TEXT as strings, NULL as `null`.
//!   Dates are whatever text the database holds; Datasette does not convert them.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rusqlite::types::Value as SqlValue;
use tokio::process::{Child, Command};

use super::{
    ChildOutput, RealServerError, await_ready, current_test_name, skip_or_fail, tools_dir,
};

const SERVER: &str = "Datasette";

/// Settings for [`Datasette::start`].
#[derive(Debug, Clone)]
pub struct DatasetteOptions {
    /// `--setting max_returned_rows`: the largest page (`_size`) allowed. Default 1000.
    pub max_returned_rows: usize,
    /// `--setting default_page_size`: the page size without `_size`. Default 100.
    pub default_page_size: usize,
    /// Further `--setting NAME VALUE` pairs, e.g. `("suggest_facets", "off")`.
    pub settings: Vec<(String, String)>,
    /// A `--metadata` file (JSON), e.g. one giving a table a default `sort`.
    pub metadata: Option<PathBuf>,
    /// How long to wait for the server to be ready. Default 60 s.
    pub startup_timeout: Duration,
}

impl Default for DatasetteOptions {
    fn default() -> Self {
        DatasetteOptions {
            max_returned_rows: 1000,
            default_page_size: 100,
            settings: Vec::new(),
            metadata: None,
            startup_timeout: Duration::from_secs(60),
        }
    }
}

/// A running Datasette; killed when dropped.
#[derive(Debug)]
pub struct Datasette {
    base_url: String,
    port: u16,
    database: String,
    db_path: PathBuf,
    output: ChildOutput,
    child: Child,
}

/// The Datasette executable `tools/install-test-servers` installs.
pub fn executable() -> PathBuf {
    tools_dir().join("venv").join("bin").join("datasette")
}

/// Whether Datasette is installed.
pub fn is_installed() -> bool {
    executable().is_file()
}

/// Starts Datasette over `db_path`, applying the missing-server policy of
/// [`super::skip_or_fail`] with the current test's name.
///
/// # Panics
/// When Datasette is missing under CI, or installed but failing to start.
pub async fn start_or_skip(db_path: &Path, options: DatasetteOptions) -> Option<Datasette> {
    skip_or_fail(
        &current_test_name(),
        Datasette::start(db_path, options).await,
    )
}

impl Datasette {
    /// Runs Datasette over the SQLite file `db_path` on 127.0.0.1 at an OS-picked port and
    /// waits until it answers `/-/versions.json`.
    pub async fn start(
        db_path: &Path,
        options: DatasetteOptions,
    ) -> Result<Datasette, RealServerError> {
        let executable = executable();
        if !executable.is_file() {
            return Err(RealServerError::Missing {
                server: SERVER,
                looked_for: executable,
            });
        }
        if !db_path.is_file() {
            return Err(RealServerError::BadInput(format!(
                "Datasette database {} does not exist",
                db_path.display()
            )));
        }
        let db_path = std::path::absolute(db_path).unwrap_or_else(|_| db_path.to_path_buf());
        let database = database_name(&db_path);

        let mut command = Command::new(&executable);
        command
            .arg("serve")
            .arg(&db_path)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args([
                "--setting",
                "max_returned_rows",
                &options.max_returned_rows.to_string(),
            ])
            .args([
                "--setting",
                "default_page_size",
                &options.default_page_size.to_string(),
            ]);
        for (name, value) in &options.settings {
            command.args(["--setting", name, value]);
        }
        if let Some(metadata) = &options.metadata {
            command.arg("--metadata").arg(metadata);
        }
        command
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|source| RealServerError::Spawn {
            server: SERVER,
            source,
        })?;

        let (output, port) = await_ready(
            SERVER,
            &mut child,
            options.startup_timeout,
            uvicorn_port,
            "/-/versions.json",
        )
        .await?;
        let base_url = format!("http://127.0.0.1:{port}");
        Ok(Datasette {
            base_url,
            port,
            database,
            db_path,
            output,
            child,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The database's name in URLs: the file name without its extension.
    pub fn database(&self) -> &str {
        &self.database
    }

    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// `http://127.0.0.1:PORT/<db>.json`.
    pub fn database_url(&self) -> String {
        format!("{}/{}.json", self.base_url, tilde_encode(&self.database))
    }

    /// `http://127.0.0.1:PORT/<db>/<table>.json` (names tilde-encoded as Datasette does).
    pub fn table_url(&self, table: &str) -> String {
        format!(
            "{}/{}/{}.json",
            self.base_url,
            tilde_encode(&self.database),
            tilde_encode(table)
        )
    }

    /// The base URL followed by `path_and_query` (which starts with `/`).
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base_url)
    }

    /// What the server has printed so far (its request log included).
    pub fn output(&self) -> String {
        self.output.text()
    }

    /// Kills the server and waits for it to exit.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The port in uvicorn's `Uvicorn running on http://127.0.0.1:PORT (Press CTRL+C to quit)`.
fn uvicorn_port(line: &str) -> Option<u16> {
    let rest =
        &line[line.find("Uvicorn running on http://")? + "Uvicorn running on http://".len()..];
    let rest = &rest[rest.find(':')? + 1..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|port| *port != 0)
}

/// Datasette's name for a database file: its stem.
fn database_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Datasette's tilde encoding of a name in a URL path: `A-Za-z0-9_-` stay, a space becomes
/// `+`, every other byte becomes `~XX`.
pub fn tilde_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' => out.push(byte as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("~{byte:02X}")),
        }
    }
    out
}

/// Writes `table` into the SQLite file `db_path` (created if missing), replacing any table of
/// that name, in one transaction. Returns the number of rows written.
///
/// `columns` are `(name, SQLite type)`. A cell `None` is NULL; in a column whose declared
/// type has INTEGER affinity (contains `INT`) a cell is stored as an integer, in REAL/NUMERIC
/// affinity (`REAL`, `FLOA`, `DOUB`, `NUM`, `DEC`) as an integer or float, when it parses as
/// one; everything else is stored as text. `primary_key` names the key columns (empty: a
/// rowid table, which Datasette pages by `rowid`).
///
/// Rewriting the table while a [`Datasette`] serves the file is how a test changes the
/// source between two runs; Datasette sees the change on its next query.
pub fn write_sqlite<R>(
    db_path: &Path,
    table: &str,
    columns: &[(&str, &str)],
    rows: R,
    primary_key: &[&str],
) -> rusqlite::Result<usize>
where
    R: IntoIterator<Item = Vec<Option<String>>>,
{
    let mut conn = rusqlite::Connection::open(db_path)?;
    let tx = conn.transaction()?;
    let quoted = quote_ident(table);
    tx.execute_batch(&format!("DROP TABLE IF EXISTS {quoted};"))?;
    let mut definition: Vec<String> = columns
        .iter()
        .map(|(name, ty)| format!("{} {ty}", quote_ident(name)))
        .collect();
    if !primary_key.is_empty() {
        let key: Vec<String> = primary_key.iter().map(|k| quote_ident(k)).collect();
        definition.push(format!("PRIMARY KEY ({})", key.join(", ")));
    }
    tx.execute_batch(&format!(
        "CREATE TABLE {quoted} ({});",
        definition.join(", ")
    ))?;
    let affinities: Vec<Affinity> = columns.iter().map(|(_, ty)| Affinity::of(ty)).collect();
    let placeholders = vec!["?"; columns.len()].join(", ");
    let mut written = 0;
    {
        let mut insert = tx.prepare(&format!("INSERT INTO {quoted} VALUES ({placeholders})"))?;
        for row in rows {
            if row.len() != columns.len() {
                return Err(rusqlite::Error::InvalidParameterCount(
                    row.len(),
                    columns.len(),
                ));
            }
            let values: Vec<SqlValue> = row
                .into_iter()
                .zip(&affinities)
                .map(|(cell, affinity)| affinity.convert(cell))
                .collect();
            insert.execute(rusqlite::params_from_iter(values))?;
            written += 1;
        }
    }
    tx.commit()?;
    Ok(written)
}

/// SQLite's column type affinity, from the declared type (sqlite.org/datatype3.html §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Affinity {
    Integer,
    Numeric,
    Text,
}

impl Affinity {
    fn of(declared: &str) -> Affinity {
        let ty = declared.to_ascii_uppercase();
        if ty.contains("INT") {
            Affinity::Integer
        } else if ty.contains("CHAR")
            || ty.contains("CLOB")
            || ty.contains("TEXT")
            || ty.contains("BLOB")
            || ty.is_empty()
        {
            Affinity::Text
        } else {
            // REAL, FLOA, DOUB, NUMERIC, DECIMAL, BOOLEAN, DATE, ...: numeric when it parses.
            Affinity::Numeric
        }
    }

    fn convert(self, cell: Option<String>) -> SqlValue {
        let Some(text) = cell else {
            return SqlValue::Null;
        };
        if self == Affinity::Text {
            return SqlValue::Text(text);
        }
        let trimmed = text.trim();
        if let Ok(integer) = trimmed.parse::<i64>() {
            return SqlValue::Integer(integer);
        }
        match trimmed.parse::<f64>() {
            Ok(float) if float.is_finite() => {
                if self == Affinity::Integer && float.fract() == 0.0 && float.abs() < 9.0e15 {
                    SqlValue::Integer(float as i64)
                } else {
                    SqlValue::Real(float)
                }
            }
            _ => SqlValue::Text(text),
        }
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_port_from_uvicorn() {
        assert_eq!(
            uvicorn_port(
                "INFO:     Uvicorn running on http://127.0.0.1:34873 (Press CTRL+C to quit)"
            ),
            Some(34873)
        );
        assert_eq!(
            uvicorn_port("INFO:     Application startup complete."),
            None
        );
    }

    #[test]
    fn tilde_encodes_like_datasette() {
        assert_eq!(tilde_encode("fire_calls-2016"), "fire_calls-2016");
        assert_eq!(
            tilde_encode("fire calls/2016.csv"),
            "fire+calls~2F2016~2Ecsv"
        );
    }

    #[test]
    fn affinity_follows_sqlite_rules() {
        assert_eq!(Affinity::of("INTEGER"), Affinity::Integer);
        assert_eq!(Affinity::of("bigint"), Affinity::Integer);
        assert_eq!(Affinity::of("REAL"), Affinity::Numeric);
        assert_eq!(Affinity::of("TEXT"), Affinity::Text);
        assert_eq!(Affinity::of("varchar(20)"), Affinity::Text);
        assert_eq!(
            Affinity::Integer.convert(Some("42".into())),
            SqlValue::Integer(42)
        );
        assert_eq!(
            Affinity::Numeric.convert(Some("4.5".into())),
            SqlValue::Real(4.5)
        );
        assert_eq!(
            Affinity::Numeric.convert(Some("n/a".into())),
            SqlValue::Text("n/a".into())
        );
        assert_eq!(
            Affinity::Text.convert(Some("007".into())),
            SqlValue::Text("007".into())
        );
        assert_eq!(Affinity::Integer.convert(None), SqlValue::Null);
    }
}
