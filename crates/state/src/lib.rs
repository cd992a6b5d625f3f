//! goalpost-state: what goalpost remembers between runs, in one SQLite file
//! (`data/state.sqlite`).
//!
//! It holds the run history (one row per pipeline run with its times, outcome, row counts,
//! fetch statistics, table version, published version and error text) and each source's
//! refresh state: the watermark an incremental refresh starts from and the validators (ETag,
//! Last-Modified, a portal's modification stamp) that let an unchanged source cost nothing. Schema changes are applied as
//! numbered migrations recorded in SQLite's `user_version`, so an old state file is upgraded
//! in place.

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state store {}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("state store {}: cannot create its folder: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// What was asked for is not there (or not in the state asked for).
    #[error("{0}")]
    NotFound(String),
}

/// Outcome of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    /// Stopped before it finished: cancelled at shutdown, or its process was killed.
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "interrupted" => Self::Interrupted,
            _ => Self::Running,
        }
    }
}

/// One row of the run history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRecord {
    pub id: String,
    pub pipeline: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub status: RunStatus,
    pub rows_fetched: u64,
    pub rows_written: u64,
    pub table_version: Option<u64>,
    pub published_version: Option<String>,
    pub error: Option<String>,
    /// `full`, `incremental` or `unchanged`.
    pub mode: Option<String>,
    /// The run whose recorded responses this run replayed.
    pub replay_of: Option<String>,
    pub fetch: FetchCounts,
    /// Rows kept out of the table (failed typing or an `error` row check).
    pub rows_quarantined: u64,
    /// Rows in the table at `table_version`.
    pub table_rows: Option<u64>,
    /// Why the run's figures were held at their last good values, if they were.
    pub held: Option<String>,
}

/// The result of one data-quality check in one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckRecord {
    pub check_id: String,
    pub kind: String,
    /// `warn` or `error`.
    pub severity: String,
    /// `passed`, `warned`, `quarantined`, `failed` or `skipped`.
    pub status: String,
    pub message: String,
    pub rows_checked: Option<u64>,
    pub rows_failed: Option<u64>,
}

/// What fetching cost in a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FetchCounts {
    pub requests: u64,
    pub pages: u64,
    /// Response body bytes as received (after decompression).
    pub bytes: u64,
    pub retries: u64,
    /// Time spent fetching, in milliseconds.
    pub fetch_ms: u64,
}

/// How a finished run went, to record.
#[derive(Debug, Clone, Default)]
pub struct RunEnd {
    pub succeeded: bool,
    /// The run was cancelled before it finished (it committed and published nothing).
    pub interrupted: bool,
    pub rows_fetched: u64,
    pub rows_written: u64,
    pub table_version: Option<u64>,
    pub published_version: Option<String>,
    pub error: Option<String>,
    pub mode: Option<String>,
    pub replay_of: Option<String>,
    pub fetch: FetchCounts,
    pub rows_quarantined: u64,
    pub table_rows: Option<u64>,
    pub held: Option<String>,
}

pub struct StateStore {
    path: PathBuf,
    conn: Connection,
}

const MIGRATIONS: &[&str] = &[
    // 1: run history
    "CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        pipeline TEXT NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        status TEXT NOT NULL,
        rows_fetched INTEGER NOT NULL DEFAULT 0,
        rows_written INTEGER NOT NULL DEFAULT 0,
        table_version INTEGER,
        published_version TEXT,
        error TEXT
     );
     CREATE INDEX runs_by_pipeline ON runs (pipeline, started_at);",
    // 2: fetch statistics and per-source refresh state
    "ALTER TABLE runs ADD COLUMN mode TEXT;
     ALTER TABLE runs ADD COLUMN replay_of TEXT;
     ALTER TABLE runs ADD COLUMN requests INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE runs ADD COLUMN pages INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE runs ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE runs ADD COLUMN retries INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE runs ADD COLUMN fetch_ms INTEGER NOT NULL DEFAULT 0;
     CREATE TABLE source_state (
        pipeline TEXT NOT NULL,
        source_key TEXT NOT NULL,
        state TEXT NOT NULL,
        run_id TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (pipeline, source_key)
     );",
    // 3: data quality: quarantine counts, held figures, check results, source shapes
    "ALTER TABLE runs ADD COLUMN rows_quarantined INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE runs ADD COLUMN table_rows INTEGER;
     ALTER TABLE runs ADD COLUMN held TEXT;
     CREATE TABLE check_results (
        run_id TEXT NOT NULL,
        pipeline TEXT NOT NULL,
        check_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        severity TEXT NOT NULL,
        status TEXT NOT NULL,
        message TEXT NOT NULL,
        rows_checked INTEGER,
        rows_failed INTEGER,
        PRIMARY KEY (run_id, check_id)
     );
     CREATE TABLE source_shape (
        pipeline TEXT NOT NULL,
        source_key TEXT NOT NULL,
        shape TEXT NOT NULL,
        run_id TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (pipeline, source_key)
     );",
    // 4: the news ledger: every announcement ever made, so none is made twice
    "CREATE TABLE news (
        id TEXT PRIMARY KEY,
        pipeline TEXT NOT NULL,
        goal TEXT,
        event TEXT NOT NULL,
        category TEXT NOT NULL,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at TEXT NOT NULL,
        run_id TEXT NOT NULL,
        status TEXT NOT NULL,
        publish_from TEXT,
        publish_until TEXT,
        window_secs INTEGER NOT NULL
     );
     CREATE INDEX news_by_status ON news (status, publish_from);",
    // 5: which process is running which pipeline, so no two runs of one pipeline overlap
    "CREATE TABLE pipeline_locks (
        pipeline TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        pid INTEGER NOT NULL,
        host TEXT NOT NULL,
        process TEXT NOT NULL,
        acquired_at TEXT NOT NULL
     );",
];

/// Who holds a pipeline's run lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockHolder {
    pub pipeline: String,
    pub run_id: String,
    pub pid: u32,
    pub host: String,
    /// What tells this process from a later one given the same pid (boot and start time).
    pub process: String,
    pub acquired_at: DateTime<Utc>,
}

/// Asking for a pipeline's run lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockOutcome {
    /// Taken. `recovered` names the run whose process ended without letting go of the lock
    /// (it was killed or crashed); that run is now recorded as interrupted.
    Acquired { recovered: Option<LockHolder> },
    /// Another live run holds it.
    Held(LockHolder),
}

/// One announcement in the news ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewsRecord {
    /// Stable: the same event always gets the same id, so it is announced once.
    pub id: String,
    pub pipeline: String,
    pub goal: Option<String>,
    pub event: String,
    pub category: String,
    pub title: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub run_id: String,
    /// draft (awaiting review), published or rejected.
    pub status: String,
    pub publish_from: Option<DateTime<Utc>>,
    pub publish_until: Option<DateTime<Utc>>,
    /// How long the item is shown once published, in seconds.
    pub window_secs: u64,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A `pipeline_locks` row, selected as `pipeline, run_id, pid, host, process, acquired_at`.
fn lock_holder(r: &rusqlite::Row<'_>) -> rusqlite::Result<LockHolder> {
    Ok(LockHolder {
        pipeline: r.get(0)?,
        run_id: r.get(1)?,
        pid: r.get::<_, i64>(2)? as u32,
        host: r.get(3)?,
        process: r.get(4)?,
        acquired_at: parse_ts(&r.get::<_, String>(5)?),
    })
}

/// A time this store wrote with [`ts`] (the Unix epoch if the text was edited to garbage).
fn parse_ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

impl StateStore {
    /// Open (creating if needed) the state file and bring its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| StateError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let err = |source| StateError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
        // Switching a new file to WAL answers "busy" at once, without waiting, when another
        // process is doing the same: try again for a while.
        let mut tries = 0;
        loop {
            match conn.pragma_update(None, "journal_mode", "WAL") {
                Ok(()) => break,
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy && tries < 200 =>
                {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(25));
                }
                Err(e) => return Err(err(e)),
            }
        }
        // The schema version is read and the migrations applied in one write transaction,
        // taken before the read: two processes opening an old file at once (the daemon and a
        // manual run) upgrade it once, the second waiting and then finding nothing to do.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let version: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(err)?;
        let pending = MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(version).unwrap_or(0));
        for (i, sql) in pending {
            tx.execute_batch(sql).map_err(err)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(Self {
            path: path.to_path_buf(),
            conn,
        })
    }

    fn err(&self, source: rusqlite::Error) -> StateError {
        StateError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    pub fn start_run(&self, id: &str, pipeline: &str, at: DateTime<Utc>) -> Result<(), StateError> {
        self.conn
            .execute(
                "INSERT INTO runs (id, pipeline, started_at, status) VALUES (?1, ?2, ?3, 'running')",
                params![id, pipeline, ts(at)],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    pub fn finish_run(&self, id: &str, at: DateTime<Utc>, end: &RunEnd) -> Result<(), StateError> {
        let status = if end.succeeded {
            RunStatus::Succeeded
        } else if end.interrupted {
            RunStatus::Interrupted
        } else {
            RunStatus::Failed
        };
        self.conn
            .execute(
                "UPDATE runs SET ended_at = ?2, status = ?3, rows_fetched = ?4, rows_written = ?5,
                        table_version = ?6, published_version = ?7, error = ?8, mode = ?9,
                        replay_of = ?10, requests = ?11, pages = ?12, bytes = ?13, retries = ?14,
                        fetch_ms = ?15, rows_quarantined = ?16, table_rows = ?17, held = ?18
                 WHERE id = ?1",
                params![
                    id,
                    ts(at),
                    status.as_str(),
                    end.rows_fetched as i64,
                    end.rows_written as i64,
                    end.table_version.map(|v| v as i64),
                    end.published_version,
                    end.error,
                    end.mode,
                    end.replay_of,
                    end.fetch.requests as i64,
                    end.fetch.pages as i64,
                    end.fetch.bytes as i64,
                    end.fetch.retries as i64,
                    end.fetch.fetch_ms as i64,
                    end.rows_quarantined as i64,
                    end.table_rows.map(|v| v as i64),
                    end.held,
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Take the run lock of `claim.pipeline` for `claim.run_id`, held by process `pid` on
    /// `host`. A
    /// holder on this host whose process is gone left the lock behind when it was killed
    /// (`alive` says whether it still runs): its run is marked
    /// interrupted and the lock taken over.
    /// Check and take happen in one write transaction, so two processes cannot both win.
    pub fn lock_pipeline(
        &mut self,
        claim: &LockHolder,
        alive: &dyn Fn(&LockHolder) -> bool,
    ) -> Result<LockOutcome, StateError> {
        let LockHolder {
            pipeline,
            run_id,
            pid,
            host,
            process,
            acquired_at: at,
        } = claim;
        let (pid, at) = (*pid, *at);
        let path = self.path.clone();
        let err = |source| StateError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let holder = tx
            .query_row(
                "SELECT pipeline, run_id, pid, host, process, acquired_at FROM pipeline_locks WHERE pipeline = ?1",
                params![pipeline],
                lock_holder,
            )
            .optional()
            .map_err(err)?;
        let recovered = match holder {
            Some(h) if h.host != *host || alive(&h) => return Ok(LockOutcome::Held(h)),
            Some(h) => {
                tx.execute(
                    "UPDATE runs SET status = 'interrupted', ended_at = ?2,
                            error = coalesce(error, ?3)
                     WHERE id = ?1 AND status = 'running'",
                    params![
                        h.run_id,
                        ts(at),
                        format!(
                            "interrupted: the process running it (pid {}) ended before the run finished; nothing it had not committed was kept",
                            h.pid
                        )
                    ],
                )
                .map_err(err)?;
                Some(h)
            }
            None => None,
        };
        tx.execute(
            "INSERT OR REPLACE INTO pipeline_locks (pipeline, run_id, pid, host, process, acquired_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![pipeline, run_id, i64::from(pid), host, process, ts(at)],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(LockOutcome::Acquired { recovered })
    }

    /// Let go of the run lock of `pipeline`, if `run_id` holds it.
    pub fn unlock_pipeline(&self, pipeline: &str, run_id: &str) -> Result<(), StateError> {
        self.conn
            .execute(
                "DELETE FROM pipeline_locks WHERE pipeline = ?1 AND run_id = ?2",
                params![pipeline, run_id],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Let go of `pipeline`'s run lock whoever holds it, recording the holder's run as
    /// interrupted: for a holder this machine cannot see (another host or container) that
    /// is known to be gone. Returns the holder, if there was one.
    pub fn force_unlock(
        &mut self,
        pipeline: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<LockHolder>, StateError> {
        let holder = self
            .pipeline_locks()?
            .into_iter()
            .find(|l| l.pipeline == pipeline);
        if let Some(h) = &holder {
            self.conn
                .execute(
                    "UPDATE runs SET status = 'interrupted', ended_at = ?2,
                            error = coalesce(error, 'interrupted: its run lock was released by goalpost unlock')
                     WHERE id = ?1 AND status = 'running'",
                    params![h.run_id, ts(at)],
                )
                .map_err(|e| self.err(e))?;
            self.unlock_pipeline(pipeline, &h.run_id)?;
        }
        Ok(holder)
    }

    /// Every pipeline's lock holder.
    pub fn pipeline_locks(&self) -> Result<Vec<LockHolder>, StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT pipeline, run_id, pid, host, process, acquired_at FROM pipeline_locks ORDER BY pipeline")
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], lock_holder).map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Runs, newest first, optionally of one pipeline.
    pub fn runs(&self, pipeline: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "{SELECT_RUN} WHERE (?1 IS NULL OR pipeline = ?1)
                 ORDER BY started_at DESC, id DESC LIMIT ?2"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![pipeline, limit as i64], run_record)
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// The refresh state of every source of a pipeline, by source key, as the JSON text the
    /// fetch layer saved (this crate does not interpret it).
    pub fn source_states(
        &self,
        pipeline: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT source_key, state FROM source_state WHERE pipeline = ?1")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([pipeline], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(|e| self.err(e))?;
        let mut out = std::collections::BTreeMap::new();
        for row in rows {
            let (key, json) = row.map_err(|e| self.err(e))?;
            out.insert(key, json);
        }
        Ok(out)
    }

    /// Replace a pipeline's source states in one transaction: sources no longer configured
    /// are forgotten. Call only after the run's table commit succeeded.
    pub fn save_source_states(
        &mut self,
        pipeline: &str,
        run_id: &str,
        at: DateTime<Utc>,
        states: &[(String, String)],
    ) -> Result<(), StateError> {
        let path = self.path.clone();
        let err = |source| StateError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute("DELETE FROM source_state WHERE pipeline = ?1", [pipeline])
            .map_err(err)?;
        for (key, state) in states {
            tx.execute(
                "INSERT INTO source_state (pipeline, source_key, state, run_id, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![pipeline, key, state, run_id, ts(at)],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Forget a pipeline's source states, so its next run loads everything.
    pub fn clear_source_states(&self, pipeline: &str) -> Result<(), StateError> {
        self.conn
            .execute("DELETE FROM source_state WHERE pipeline = ?1", [pipeline])
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Record the data-quality results of a run (replacing any recorded before for it).
    pub fn record_checks(
        &mut self,
        run_id: &str,
        pipeline: &str,
        checks: &[CheckRecord],
    ) -> Result<(), StateError> {
        let path = self.path.clone();
        let err = |source| StateError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute("DELETE FROM check_results WHERE run_id = ?1", [run_id])
            .map_err(err)?;
        for c in checks {
            tx.execute(
                "INSERT INTO check_results (run_id, pipeline, check_id, kind, severity, status,
                        message, rows_checked, rows_failed)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    run_id,
                    pipeline,
                    c.check_id,
                    c.kind,
                    c.severity,
                    c.status,
                    c.message,
                    c.rows_checked.map(|v| v as i64),
                    c.rows_failed.map(|v| v as i64),
                ],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// The data-quality results of a run, in the order recorded.
    pub fn checks(&self, run_id: &str) -> Result<Vec<CheckRecord>, StateError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT check_id, kind, severity, status, message, rows_checked, rows_failed
                 FROM check_results WHERE run_id = ?1 ORDER BY rowid",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([run_id], |r| {
                Ok(CheckRecord {
                    check_id: r.get(0)?,
                    kind: r.get(1)?,
                    severity: r.get(2)?,
                    status: r.get(3)?,
                    message: r.get(4)?,
                    rows_checked: r.get::<_, Option<i64>>(5)?.map(|v| v as u64),
                    rows_failed: r.get::<_, Option<i64>>(6)?.map(|v| v as u64),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// The most recent result of check `check_id` of a pipeline in a run other than
    /// `except`, with that run's id.
    pub fn last_check(
        &self,
        pipeline: &str,
        check_id: &str,
        except: &str,
    ) -> Result<Option<(String, CheckRecord)>, StateError> {
        self.conn
            .query_row(
                "SELECT c.run_id, c.check_id, c.kind, c.severity, c.status, c.message,
                        c.rows_checked, c.rows_failed
                 FROM check_results c JOIN runs r ON r.id = c.run_id
                 WHERE c.pipeline = ?1 AND c.check_id = ?2 AND c.run_id <> ?3
                 ORDER BY r.started_at DESC, r.id DESC LIMIT 1",
                [pipeline, check_id, except],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        CheckRecord {
                            check_id: r.get(1)?,
                            kind: r.get(2)?,
                            severity: r.get(3)?,
                            status: r.get(4)?,
                            message: r.get(5)?,
                            rows_checked: r.get::<_, Option<i64>>(6)?.map(|v| v as u64),
                            rows_failed: r.get::<_, Option<i64>>(7)?.map(|v| v as u64),
                        },
                    ))
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Add announcements to the ledger; one whose id is already there (announced, drafted or
    /// rejected before) is left as it is. Returns the ids added.
    pub fn add_news(&self, items: &[NewsRecord]) -> Result<Vec<String>, StateError> {
        let mut added = Vec::new();
        for n in items {
            let changed = self
                .conn
                .execute(
                    "INSERT OR IGNORE INTO news (id, pipeline, goal, event, category, title, body,
                        created_at, run_id, status, publish_from, publish_until, window_secs)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                    rusqlite::params![
                        n.id,
                        n.pipeline,
                        n.goal,
                        n.event,
                        n.category,
                        n.title,
                        n.body,
                        ts(n.created_at),
                        n.run_id,
                        n.status,
                        n.publish_from.map(ts),
                        n.publish_until.map(ts),
                        n.window_secs as i64,
                    ],
                )
                .map_err(|e| self.err(e))?;
            if changed > 0 {
                added.push(n.id.clone());
            }
        }
        Ok(added)
    }

    /// The ledger, newest first; `status` filters (draft, published, rejected).
    pub fn news(&self, status: Option<&str>) -> Result<Vec<NewsRecord>, StateError> {
        self.news_where("?1 IS NULL OR status = ?1", status)
    }

    /// One item of the ledger.
    pub fn news_item(&self, id: &str) -> Result<Option<NewsRecord>, StateError> {
        Ok(self.news_where("id = ?1", Some(id))?.pop())
    }

    fn news_where(&self, filter: &str, arg: Option<&str>) -> Result<Vec<NewsRecord>, StateError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT id, pipeline, goal, event, category, title, body, created_at, run_id,
                        status, publish_from, publish_until, window_secs
                 FROM news WHERE {filter}
                 ORDER BY coalesce(publish_from, created_at) DESC, id"
            ))
            .map_err(|e| self.err(e))?;
        let parse = |s: Option<String>| {
            s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        let rows = stmt
            .query_map([arg], |r| {
                Ok(NewsRecord {
                    id: r.get(0)?,
                    pipeline: r.get(1)?,
                    goal: r.get(2)?,
                    event: r.get(3)?,
                    category: r.get(4)?,
                    title: r.get(5)?,
                    body: r.get(6)?,
                    created_at: parse(Some(r.get(7)?)).unwrap_or_default(),
                    run_id: r.get(8)?,
                    status: r.get(9)?,
                    publish_from: parse(r.get(10)?),
                    publish_until: parse(r.get(11)?),
                    window_secs: r.get::<_, i64>(12)? as u64,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Decide a draft: publish it from `now` for its window, or reject it. Returns the item as
    /// it now stands; an error when there is no draft of that id.
    pub fn review_news(
        &self,
        id: &str,
        approve: bool,
        now: DateTime<Utc>,
    ) -> Result<NewsRecord, StateError> {
        let Some(item) = self.news_item(id)? else {
            return Err(StateError::NotFound(format!("no news item {id:?}")));
        };
        if item.status != "draft" {
            return Err(StateError::NotFound(format!(
                "news item {id:?} is {}, not a draft awaiting review",
                item.status
            )));
        }
        let until = now + chrono::Duration::seconds(item.window_secs as i64);
        if approve {
            self.conn
                .execute(
                    "UPDATE news SET status = 'published', publish_from = ?2, publish_until = ?3
                     WHERE id = ?1",
                    rusqlite::params![id, ts(now), ts(until)],
                )
                .map_err(|e| self.err(e))?;
        } else {
            self.conn
                .execute("UPDATE news SET status = 'rejected' WHERE id = ?1", [id])
                .map_err(|e| self.err(e))?;
        }
        self.news_item(id)?
            .ok_or_else(|| StateError::NotFound(format!("no news item {id:?}")))
    }

    /// When the newest successful run of a pipeline finished (held figures or not: its
    /// table was refreshed), if any has.
    pub fn last_success(&self, pipeline: &str) -> Result<Option<DateTime<Utc>>, StateError> {
        self.conn
            .query_row(
                &format!(
                    "{SELECT_RUN} WHERE pipeline = ?1 AND status = 'succeeded'
                     ORDER BY started_at DESC, id DESC LIMIT 1"
                ),
                [pipeline],
                run_record,
            )
            .optional()
            .map(|r| r.and_then(|r| r.ended_at))
            .map_err(|e| self.err(e))
    }

    /// The newest run of a pipeline that succeeded without holding its figures and recorded
    /// its table's row count, other than `except`: what a row-count check compares with.
    pub fn last_good_run(
        &self,
        pipeline: &str,
        except: &str,
    ) -> Result<Option<RunRecord>, StateError> {
        self.conn
            .query_row(
                &format!(
                    "{SELECT_RUN} WHERE pipeline = ?1 AND id <> ?2 AND status = 'succeeded'
                     AND held IS NULL AND table_rows IS NOT NULL ORDER BY started_at DESC, id DESC LIMIT 1"
                ),
                [pipeline, except],
                run_record,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// The column shapes each source of a pipeline last sent (JSON written by the table
    /// layer), by source key.
    pub fn source_shapes(
        &self,
        pipeline: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT source_key, shape FROM source_shape WHERE pipeline = ?1")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([pipeline], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Remember the shape a source sent, as the baseline for the next drift check.
    pub fn save_source_shape(
        &self,
        pipeline: &str,
        source_key: &str,
        shape: &str,
        run_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StateError> {
        self.conn
            .execute(
                "INSERT INTO source_shape (pipeline, source_key, shape, run_id, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (pipeline, source_key)
                 DO UPDATE SET shape = ?3, run_id = ?4, updated_at = ?5",
                params![pipeline, source_key, shape, run_id, ts(at)],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// One run by id.
    pub fn run(&self, id: &str) -> Result<Option<RunRecord>, StateError> {
        self.conn
            .query_row(&format!("{SELECT_RUN} WHERE id = ?1"), [id], run_record)
            .optional()
            .map_err(|e| self.err(e))
    }
}

const SELECT_RUN: &str = "SELECT id, pipeline, started_at, ended_at, status, rows_fetched,
        rows_written, table_version, published_version, error, mode, replay_of, requests, pages,
        bytes, retries, fetch_ms, rows_quarantined, table_rows, held FROM runs";

/// A row selected by [`SELECT_RUN`].
fn run_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    let parse = |s: String| {
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    2,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })
    };
    Ok(RunRecord {
        id: r.get(0)?,
        pipeline: r.get(1)?,
        started_at: parse(r.get(2)?)?,
        ended_at: r.get::<_, Option<String>>(3)?.map(parse).transpose()?,
        status: RunStatus::parse(&r.get::<_, String>(4)?),
        rows_fetched: r.get::<_, i64>(5)? as u64,
        rows_written: r.get::<_, i64>(6)? as u64,
        table_version: r.get::<_, Option<i64>>(7)?.map(|v| v as u64),
        published_version: r.get(8)?,
        error: r.get(9)?,
        mode: r.get(10)?,
        replay_of: r.get(11)?,
        fetch: FetchCounts {
            requests: r.get::<_, i64>(12)? as u64,
            pages: r.get::<_, i64>(13)? as u64,
            bytes: r.get::<_, i64>(14)? as u64,
            retries: r.get::<_, i64>(15)? as u64,
            fetch_ms: r.get::<_, i64>(16)? as u64,
        },
        rows_quarantined: r.get::<_, i64>(17)? as u64,
        table_rows: r.get::<_, Option<i64>>(18)?.map(|v| v as u64),
        held: r.get(19)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn runs_are_recorded_and_listed_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.sqlite");
        let store = StateStore::open(&path).unwrap();
        let t = |s| Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, s).unwrap();
        store.start_run("r1", "a", t(0)).unwrap();
        store.start_run("r2", "b", t(1)).unwrap();
        store
            .finish_run(
                "r1",
                t(5),
                &RunEnd {
                    succeeded: false,
                    rows_fetched: 10,
                    error: Some("boom".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        drop(store);
        // Reopening applies no migration twice.
        let store = StateStore::open(&path).unwrap();
        let runs = store.runs(None, 10).unwrap();
        assert_eq!(
            runs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["r2", "r1"]
        );
        assert_eq!(runs[1].status, RunStatus::Failed);
        assert_eq!(runs[1].error.as_deref(), Some("boom"));
        assert_eq!(runs[1].ended_at, Some(t(5)));
        assert_eq!(runs[0].status, RunStatus::Running);
        assert_eq!(store.runs(Some("a"), 10).unwrap().len(), 1);
        assert_eq!(store.run("r2").unwrap().unwrap().pipeline, "b");
        assert!(store.run("nope").unwrap().is_none());
        // The last success: none while runs fail or go on; then the newest that succeeded,
        // held figures or not, whatever failed after it.
        assert_eq!(store.last_success("a").unwrap(), None);
        assert_eq!(store.last_success("b").unwrap(), None);
        let ok = |held: Option<&str>| RunEnd {
            succeeded: true,
            held: held.map(Into::into),
            ..Default::default()
        };
        store.start_run("r3", "a", t(10)).unwrap();
        store.finish_run("r3", t(12), &ok(None)).unwrap();
        store.start_run("r4", "a", t(20)).unwrap();
        store.finish_run("r4", t(23), &ok(Some("held"))).unwrap();
        store.start_run("r5", "a", t(30)).unwrap();
        store.finish_run("r5", t(31), &RunEnd::default()).unwrap();
        assert_eq!(store.last_success("a").unwrap(), Some(t(23)));
    }

    #[test]
    fn stores_opened_at_once_upgrade_a_new_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let opened: Vec<Result<StateStore, StateError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| StateStore::open(&path)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for store in opened {
            let store = store.unwrap();
            let version: i64 = store
                .conn
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .unwrap();
            assert_eq!(version, MIGRATIONS.len() as i64);
        }
    }

    #[test]
    fn a_pipeline_lock_is_held_by_one_live_run_and_recovered_from_a_dead_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(&dir.path().join("s.sqlite")).unwrap();
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 6, 0, 0).unwrap();
        let alive = |h: &LockHolder| h.pid == 100;
        let claim = |pipeline: &str, run_id: &str, pid: u32, host: &str, at| LockHolder {
            pipeline: pipeline.into(),
            run_id: run_id.into(),
            pid,
            host: host.into(),
            process: "x".into(),
            acquired_at: at,
        };
        store.start_run("r1", "p", at).unwrap();
        let got = store
            .lock_pipeline(&claim("p", "r1", 100, "h", at), &alive)
            .unwrap();
        assert_eq!(got, LockOutcome::Acquired { recovered: None });
        // Another pipeline is free; this one is held by the live process 100.
        let other = store
            .lock_pipeline(&claim("q", "r9", 200, "h", at), &alive)
            .unwrap();
        assert_eq!(other, LockOutcome::Acquired { recovered: None });
        let LockOutcome::Held(h) = store
            .lock_pipeline(&claim("p", "r2", 200, "h", at), &alive)
            .unwrap()
        else {
            panic!("expected the lock to be held")
        };
        assert_eq!((h.run_id.as_str(), h.pid, h.acquired_at), ("r1", 100, at));
        // A holder on another host is never judged dead from here.
        store.unlock_pipeline("p", "r1").unwrap();
        store
            .lock_pipeline(&claim("p", "r1", 300, "elsewhere", at), &alive)
            .unwrap();
        assert!(matches!(
            store
                .lock_pipeline(&claim("p", "r2", 200, "h", at), &alive)
                .unwrap(),
            LockOutcome::Held(_)
        ));
        // Unlocking with the wrong run id does nothing.
        store.unlock_pipeline("p", "r2").unwrap();
        assert_eq!(store.pipeline_locks().unwrap().len(), 2);
        // Process 300 on this host died holding the lock: the next run takes it over and
        // the dead run is recorded as interrupted.
        store.unlock_pipeline("p", "r1").unwrap();
        store
            .lock_pipeline(&claim("p", "r1", 300, "h", at), &alive)
            .unwrap();
        let later = at + chrono::Duration::minutes(5);
        let got = store
            .lock_pipeline(&claim("p", "r2", 100, "h", later), &alive)
            .unwrap();
        let LockOutcome::Acquired {
            recovered: Some(dead),
        } = got
        else {
            panic!("expected a recovered lock, got {got:?}")
        };
        assert_eq!((dead.run_id.as_str(), dead.pid), ("r1", 300));
        let r1 = store.run("r1").unwrap().unwrap();
        assert_eq!(r1.status, RunStatus::Interrupted);
        assert_eq!(r1.ended_at, Some(later));
        assert!(r1.error.unwrap().contains("pid 300"));
        store.unlock_pipeline("p", "r2").unwrap();
        // A holder elsewhere, known to be gone, is let go of by hand.
        store.start_run("r3", "p", at).unwrap();
        store
            .lock_pipeline(&claim("p", "r3", 7, "elsewhere", at), &alive)
            .unwrap();
        let freed = store.force_unlock("p", later).unwrap().unwrap();
        assert_eq!(freed.run_id, "r3");
        assert_eq!(
            store.run("r3").unwrap().unwrap().status,
            RunStatus::Interrupted
        );
        assert_eq!(store.force_unlock("p", later).unwrap(), None);
        store.unlock_pipeline("q", "r9").unwrap();
        assert!(store.pipeline_locks().unwrap().is_empty());
    }

    #[test]
    fn source_states_are_replaced_per_pipeline() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(&dir.path().join("s.sqlite")).unwrap();
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let a = r#"{"watermark":"2026-01-01T00:00:00.000"}"#.to_string();
        let b = r#"{"etag":"\"x\""}"#.to_string();
        store
            .save_source_states(
                "p",
                "r1",
                t,
                &[("one".into(), a.clone()), ("two".into(), b)],
            )
            .unwrap();
        store
            .save_source_states("q", "r2", t, &[("one".into(), "{}".into())])
            .unwrap();
        store
            .save_source_states("p", "r3", t, &[("one".into(), a.clone())])
            .unwrap();
        let p = store.source_states("p").unwrap();
        assert_eq!(p.len(), 1, "a source no longer configured is forgotten");
        assert_eq!(p["one"], a);
        assert_eq!(store.source_states("q").unwrap().len(), 1);
        store.clear_source_states("p").unwrap();
        assert!(store.source_states("p").unwrap().is_empty());
    }

    #[test]
    fn check_results_shapes_and_the_last_good_run_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(&dir.path().join("s.sqlite")).unwrap();
        let t = |s| Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, s).unwrap();
        for (id, ok, rows) in [
            ("r1", true, Some(100)),
            ("r2", false, None),
            ("r3", true, Some(90)),
        ] {
            store.start_run(id, "p", t(0)).unwrap();
            store
                .finish_run(
                    id,
                    t(1),
                    &RunEnd {
                        succeeded: ok,
                        table_rows: rows,
                        held: (id == "r3").then(|| "check \"unique\" failed".to_string()),
                        rows_quarantined: 3,
                        ..Default::default()
                    },
                )
                .unwrap();
        }
        let last = store.last_good_run("p", "r4").unwrap().unwrap();
        assert_eq!(last.id, "r1", "the newest succeeded run that held nothing");
        assert_eq!(last.table_rows, Some(100));
        assert_eq!(last.rows_quarantined, 3);
        let held = store.run("r3").unwrap().unwrap();
        assert_eq!(held.held.as_deref(), Some("check \"unique\" failed"));
        assert!(store.last_good_run("p", "r1").unwrap().is_none());

        let check = |id: &str, status: &str| CheckRecord {
            check_id: id.into(),
            kind: "unique".into(),
            severity: "error".into(),
            status: status.into(),
            message: "m".into(),
            rows_checked: Some(5),
            rows_failed: None,
        };
        store
            .record_checks("r3", "p", &[check("b", "passed"), check("a", "failed")])
            .unwrap();
        assert_eq!(
            store.last_check("p", "a", "r9").unwrap(),
            Some(("r3".to_string(), check("a", "failed")))
        );
        assert_eq!(store.last_check("p", "a", "r3").unwrap(), None);
        let got = store.checks("r3").unwrap();
        assert_eq!(
            got,
            [check("b", "passed"), check("a", "failed")],
            "in recorded order"
        );
        assert!(store.checks("r1").unwrap().is_empty());

        store
            .save_source_shape("p", "s1", "{}", "r1", t(2))
            .unwrap();
        store
            .save_source_shape("p", "s1", "{\"x\":1}", "r3", t(3))
            .unwrap();
        assert_eq!(
            store
                .source_shapes("p")
                .unwrap()
                .get("s1")
                .map(String::as_str),
            Some("{\"x\":1}")
        );
    }
}
