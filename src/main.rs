//! `goalpost`: public performance reporting for cities.
//!
//! The binary owns argument parsing and how errors and results are shown; the work is done by
//! the crates under `crates/`.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
mod init;
mod progress;

use goalpost_runner::{Configured, RunOptions, Runner, SystemClock};
use goalpost_spec::{Config, Location, load_pipelines};
use goalpost_state::StateStore;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "goalpost",
    version,
    about = "Open data in, goal progress and a transparency digest out"
)]
struct Cli {
    /// Configuration file.
    #[arg(
        short,
        long,
        global = true,
        env = "GOALPOST_CONFIG",
        default_value = "config/goalpost.toml"
    )]
    config: PathBuf,
    /// Log lines as text for people or as JSON objects for log collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run pipelines end to end: fetch, table, indicators, goals, publish.
    Run {
        /// Pipeline ids (file names without .toml); none runs every pipeline.
        ids: Vec<String>,
        /// Load every source in full, ignoring saved watermarks.
        #[arg(long)]
        full: bool,
        /// Replay a recorded run offline: its saved responses stand in for the network.
        #[arg(long, value_name = "RUN_ID", conflicts_with_all = ["ids", "full"])]
        replay: Option<String>,
        /// Accept what the sources send now as the new normal: schema_drift and row_count
        /// checks pass this run and their baselines move.
        #[arg(long)]
        accept_changes: bool,
        /// Print how long each stage took (plan, load, checks, indicators, publish) and the
        /// most memory the process held during it.
        #[arg(long)]
        timings: bool,
    },
    /// Show the data-quality check results of a run (by default each pipeline's latest).
    Checks {
        /// A run id (see `goalpost runs`).
        #[arg(long, value_name = "RUN_ID")]
        run: Option<String>,
        /// Only this pipeline's latest run.
        #[arg(long)]
        pipeline: Option<String>,
        /// JSON for tools instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Where a published figure comes from: the table and its version, the sources, the
    /// query, the rows behind it, the run.
    Explain {
        /// A goal or indicator id (`PIPELINE/ID` when two pipelines use the same id).
        id: String,
        /// The period (a label such as 2019-03 or FY2026); by default the latest judged one.
        #[arg(long)]
        period: Option<String>,
    },
    /// Show the rows a pipeline's run kept out of its table, with why and the raw row.
    Quarantine {
        /// The pipeline.
        pipeline: String,
        /// A run id; by default the newest run that quarantined rows.
        #[arg(long, value_name = "RUN_ID")]
        run: Option<String>,
        /// How many rows to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// JSON for tools instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Rewrite the small files of tables into large ones (one new version each).
    Compact {
        /// A table name; none compacts every pipeline's table.
        table: Option<String>,
    },
    /// Delete table files that no kept published version needs.
    Vacuum {
        /// A table name; none vacuums every pipeline's table.
        table: Option<String>,
        /// Only report what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// Recompute a published version's figures from the table versions its digest names,
    /// into a folder of your choice; nothing published changes.
    Recompute {
        /// The published version (its run id).
        #[arg(long, value_name = "RUN_ID")]
        run: String,
        /// Where to write digest.json, indicators.parquet and index.html.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Write a starter pipeline for a dataset from its portal's description of it: typed
    /// columns, a key, the refresh field and an example indicator.
    Init {
        /// The dataset's address: its page on the portal or its API address.
        address: String,
        /// The portal software, when the address does not tell: socrata, ckan, arcgis,
        /// opendatasoft, datasette or http.
        #[arg(long)]
        kind: Option<String>,
        /// Pipeline id (the file name); by default made from the dataset's title.
        #[arg(long)]
        id: Option<String>,
        /// The city's IANA time zone; by default the portal's, else this machine's.
        #[arg(long)]
        timezone: Option<String>,
        /// Replace an existing pipeline file.
        #[arg(long)]
        force: bool,
        /// Print the pipeline instead of writing it.
        #[arg(long)]
        print: bool,
    },
    /// Check the config and every pipeline file, including each indicator's SQL, without
    /// fetching anything.
    Validate,
    /// News-flash items: list them, and approve or reject drafts (rules with `review = true`).
    News {
        #[command(subcommand)]
        action: NewsAction,
    },
    /// Manage what is published.
    Publish {
        /// Point `current` back at the version published before it (run again to go back
        /// further); the next run publishes on top of it.
        #[arg(long)]
        rollback: bool,
    },
    /// Run as a service: every pipeline on its schedule, the site and an API over HTTP,
    /// until SIGTERM or SIGINT (SIGHUP reloads the configuration and pipelines).
    Daemon {
        /// Address to listen on, e.g. 127.0.0.1:8080 (default: [daemon] bind in the config).
        #[arg(long, value_name = "ADDR:PORT")]
        bind: Option<String>,
    },
    /// Where each pipeline stands: last run and its outcome, next scheduled run, data age.
    Status {
        /// JSON for tools instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Let go of a pipeline's run lock whoever holds it, recording that run as interrupted:
    /// for a run on another host or container that is known to be gone.
    Unlock {
        /// The pipeline.
        pipeline: String,
    },
    /// Show the run history.
    Runs {
        /// Only runs of this pipeline.
        #[arg(long)]
        pipeline: Option<String>,
        /// How many runs, newest first.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// JSON for tools instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum NewsAction {
    /// List the items, newest first.
    List {
        /// Only drafts, published or rejected items.
        #[arg(long)]
        status: Option<String>,
        /// JSON for tools instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Publish a draft now, for its window, and republish the site.
    Approve { id: String },
    /// Reject a draft: it is never published.
    Reject { id: String },
}

/// Print a line to stdout. A closed pipe (`goalpost run | head -1`) only stops the printing:
/// the work goes on, so a run is never cut off half-recorded because its reader left.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// Have glibc's allocator keep one arena, unless `MALLOC_ARENA_MAX` or `GLIBC_TUNABLES`
/// says otherwise. With one
/// arena per thread, a full load whose rows are read on one thread and written on another
/// leaves memory freed by the writer in the reader's arena, where it piles up: measured on
/// 5 million rows, 213 MB at the end of the load instead of 150 MB, for the same time.
/// Small allocations still go through each thread's cache without a lock.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    let tuned = std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.arena_max"));
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() && !tuned {
        // SAFETY: called first thing in main, before any thread exists; mallopt only sets
        // an allocator parameter.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

fn main() -> ExitCode {
    one_malloc_arena();
    let cli = Cli::parse();
    // delta-rs warns on every vacuum about options goalpost uses on purpose.
    let default_filter = if matches!(cli.command, Command::Daemon { .. }) {
        "warn,deltalake_core::operations::vacuum=error,goalpost_daemon=info,goalpost_runner=info"
    } else {
        "warn,deltalake_core::operations::vacuum=error,goalpost_runner::progress=info"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Human => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let config = Config::load(&cli.config).with_context(|| {
        format!(
            "loading config {} (run from the project folder, or pass --config PATH or set GOALPOST_CONFIG)",
            cli.config.display()
        )
    })?;
    match cli.command {
        Command::Run {
            ids,
            full,
            replay,
            accept_changes,
            timings,
        } => {
            let options = RunOptions {
                full,
                replay,
                accept_changes,
                measure_memory: timings,
            };
            run(config, ids, options).await
        }
        Command::Checks {
            run,
            pipeline,
            json,
        } => checks(&config, run.as_deref(), pipeline.as_deref(), json),
        Command::Explain { id, period } => explain(&config, &id, period.as_deref()).await,
        Command::Quarantine {
            pipeline,
            run,
            limit,
            json,
        } => quarantine(config, &pipeline, run.as_deref(), limit, json).await,
        Command::Compact { table } => compact(config, table.as_deref()).await,
        Command::Vacuum { table, dry_run } => vacuum(config, table.as_deref(), dry_run).await,
        Command::Recompute { run, out } => recompute(config, &run, &out).await,
        Command::Publish { rollback } => publish(&config, rollback).await,
        Command::News { action } => news(config, action).await,
        Command::Init {
            address,
            kind,
            id,
            timezone,
            force,
            print,
        } => {
            let written = init::init(
                &config,
                init::InitArgs {
                    address,
                    kind,
                    id,
                    timezone,
                    force,
                    print,
                },
            )
            .await?;
            if let Some(path) = written {
                out!("Wrote {}", path.display());
                out!(
                    "It validates as written. Review it, then: goalpost run {}",
                    path.file_stem().unwrap_or_default().to_string_lossy()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate => validate(&config).await,
        Command::Daemon { bind } => {
            drop(config);
            goalpost_daemon::run(
                cli.config.clone(),
                goalpost_daemon::DaemonOptions { bind },
                Arc::new(SystemClock),
                |addr| out!("goalpost daemon listening on http://{addr}"),
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json } => status(&config, json),
        Command::Unlock { pipeline } => {
            let mut store = StateStore::open(&config.state_db)?;
            match store.force_unlock(&pipeline, chrono::Utc::now())? {
                Some(h) => out!(
                    "Let go of {pipeline}'s run lock, held by run {} (process {} on {} since {}); that run is recorded as interrupted",
                    h.run_id,
                    h.pid,
                    h.host,
                    h.acquired_at.format("%Y-%m-%d %H:%M:%S UTC")
                ),
                None => out!("{pipeline} is not locked"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Runs {
            pipeline,
            limit,
            json,
        } => runs(&config, pipeline.as_deref(), limit, json),
    }
}

async fn run(config: Config, mut ids: Vec<String>, options: RunOptions) -> Result<ExitCode> {
    if let Some(run_id) = &options.replay {
        let store = StateStore::open(&config.state_db)?;
        let pipeline = match store.run(run_id)? {
            Some(r) => r.pipeline,
            None => bail!("no run {run_id:?} in the run history (see `goalpost runs`)"),
        };
        let dir = config.work_dir.join("raw").join(&pipeline).join(run_id);
        if !dir.join("responses.ndjson").is_file() {
            bail!(
                "run {run_id} has no raw recording at {} (file sources are not recorded, and only the newest [fetch] keep_raw_runs recordings are kept)",
                dir.display()
            );
        }
        ids = vec![pipeline];
    }
    let loaded = load_pipelines(&config.pipelines_dir)?;
    let configured = Configured::new(&loaded);
    for id in &ids {
        if !configured.ids.contains(id) {
            bail!(
                "no pipeline {id:?} in {}; it has: {}",
                config.pipelines_dir.display(),
                configured.ids.join(", ")
            );
        }
    }
    let wanted = |id: &str| ids.is_empty() || ids.iter().any(|i| i == id);
    if configured.ids.is_empty() {
        bail!(
            "no pipeline files (*.toml) in {}",
            config.pipelines_dir.display()
        );
    }
    let runner = Runner::new(config, Arc::new(SystemClock)).with_progress(progress::for_stderr());
    let mut failed = 0;
    let mut succeeded = 0;
    for (id, err) in loaded.failed.iter().filter(|(id, _)| wanted(id)) {
        failed += 1;
        out!("{id}: failed: the pipeline file has errors");
        eprintln!("{err}");
        runner.record_load_failure(id, &err.to_string())?;
    }
    for pipeline in configured
        .run_order(&loaded.pipelines)
        .into_iter()
        .filter(|p| wanted(&p.id))
    {
        match runner.run(pipeline, &configured, &options).await {
            Ok(r) => {
                succeeded += 1;
                let s = &r.summary;
                let f = &r.fetch;
                let requests = if f.requests > 0 {
                    format!(
                        " in {} requests ({}{})",
                        f.requests,
                        human_bytes(f.bytes),
                        if f.retries > 0 {
                            format!(", {} retries", f.retries)
                        } else {
                            String::new()
                        }
                    )
                } else {
                    String::new()
                };
                out!(
                    "{}: {} load, {} rows fetched{requests}, table {} v{} ({} rows written), {} indicators, {} goals ({} met, {} on track, {} at risk, {} off track, {} no data)",
                    r.pipeline,
                    r.mode,
                    r.rows_fetched,
                    r.table,
                    r.table_version,
                    r.rows_written,
                    r.indicators,
                    s.goals,
                    s.met,
                    s.on_track,
                    s.at_risk,
                    s.off_track,
                    s.no_data
                );
                if r.rows_quarantined > 0 {
                    out!(
                        "  {} row(s) quarantined (failed typing or a row check): see `goalpost quarantine {}`",
                        r.rows_quarantined,
                        r.pipeline
                    );
                }
                for c in r.checks.iter().filter(|c| {
                    !matches!(
                        c.status,
                        goalpost_table::CheckStatus::Passed | goalpost_table::CheckStatus::Skipped
                    )
                }) {
                    out!("  check {} {}: {}", c.id, c.status.as_str(), c.message);
                }
                if r.held.is_some() {
                    out!(
                        "  HELD: a data-quality check failed, so {}'s figures keep their last good values",
                        r.pipeline
                    );
                }
                if options.measure_memory {
                    for t in &r.stages {
                        let peak = t.peak_rss_bytes.map_or("-".to_string(), |b| {
                            format!("{:.1}", b as f64 / (1024.0 * 1024.0))
                        });
                        out!(
                            "  stage {:<10} {:>9.3} s   peak RSS {:>8} MiB",
                            t.stage,
                            t.seconds,
                            peak
                        );
                    }
                }
            }
            Err(e) => {
                failed += 1;
                out!("{}: failed", pipeline.id);
                eprintln!("{}: {e}", pipeline.id);
            }
        }
    }
    // Where the digest is; a publish location that cannot be reached was reported above.
    if let Ok(publisher) = runner.publisher() {
        let current = publisher.current_version().await.ok().flatten();
        match (&runner.config().publish_dir, current) {
            (_, None) => {}
            (Location::Local(dir), Some(id)) if succeeded > 0 => {
                let current = dir.join("current");
                out!("Digest: {}", current.join("digest.json").display());
                out!("Site:   {}", current.join("index.html").display());
                out!(
                    "        (current -> {})",
                    dir.join("versions").join(&id).display()
                );
            }
            (Location::Remote(_), Some(id)) if succeeded > 0 => {
                let at = publisher.version_location(&id);
                out!("Digest: {at}/digest.json");
                out!("Site:   {at}/index.html");
                out!("        (current.json -> {id})");
            }
            (_, Some(id)) => out!(
                "Nothing published; the previous digest stays at {}",
                publisher.version_location(&id)
            ),
        }
    }
    Ok(if failed > 0 {
        eprintln!("{failed} of {} pipeline(s) failed", failed + succeeded);
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn validate(config: &Config) -> Result<ExitCode> {
    let loaded = load_pipelines(&config.pipelines_dir)?;
    let mut problems = 0;
    for (_, err) in &loaded.failed {
        let d = err.diagnostics();
        if d.is_empty() {
            out!("{err}");
            problems += 1;
        }
        for diag in d {
            out!("{diag}");
            problems += 1;
        }
    }
    for circle in Configured::new(&loaded).cycles(&loaded.pipelines) {
        out!(
            "pipelines {} read one another's tables in a circle, so none of them can be computed first",
            circle.join(", ")
        );
        problems += 1;
    }
    for p in &loaded.pipelines {
        // Indicators may read the other pipelines' tables (a population table).
        let others: Vec<_> = loaded
            .pipelines
            .iter()
            .filter(|o| o.id != p.id)
            .map(|o| {
                (
                    o.spec.table.name.get_ref().clone(),
                    o.spec.table.arrow_schema(),
                )
            })
            .collect();
        for rule in &p.spec.news {
            for t in rule.title.iter().chain(&rule.template) {
                if let Err(e) = goalpost_publish::news::check_template(t.get_ref()) {
                    out!(
                        "{}",
                        p.file
                            .diagnostic(Some(t.span()), format!("[[news]] template: {e}"))
                    );
                    problems += 1;
                }
            }
        }
        for diag in goalpost_indicators::check_sql(p, &others).await {
            out!("{diag}");
            problems += 1;
        }
    }
    let files = loaded.pipelines.len() + loaded.failed.len();
    if problems == 0 {
        out!(
            "{} and {files} pipeline file(s) in {} are valid",
            config.file.display(),
            config.pipelines_dir.display()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{problems} problem(s) in {files} pipeline file(s)");
        Ok(ExitCode::FAILURE)
    }
}

fn status(config: &Config, json: bool) -> Result<ExitCode> {
    let loaded = load_pipelines(&config.pipelines_dir)?;
    let store = StateStore::open(&config.state_db)?;
    let now = chrono::Utc::now();
    let list = goalpost_daemon::status::statuses(&loaded, &store, now)?;
    if json {
        out!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        out!("no pipelines in {}", config.pipelines_dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let local = |t: chrono::DateTime<chrono::Utc>, tz: Option<&str>| -> String {
        match tz.and_then(|z| z.parse::<chrono_tz::Tz>().ok()) {
            Some(z) => t.with_timezone(&z).format("%Y-%m-%d %H:%M %Z").to_string(),
            None => t.format("%Y-%m-%d %H:%M UTC").to_string(),
        }
    };
    out!(
        "{:<16} {:<22} {:<12} {:<22} {:>9}  note",
        "pipeline",
        "last run",
        "outcome",
        "next run",
        "data age"
    );
    for p in &list {
        let tz = p.timezone.as_deref();
        let last = p
            .last_run
            .as_ref()
            .map(|r| local(r.started_at, tz))
            .unwrap_or_else(|| "never".into());
        let outcome = match (&p.running, &p.last_run) {
            (Some(_), _) => "running".to_string(),
            (None, Some(r)) => r.status.as_str().to_string(),
            (None, None) => "-".to_string(),
        };
        let next = match (&p.next_run, &p.schedule) {
            (Some(t), _) => local(*t, tz),
            (None, None) => "not scheduled".into(),
            (None, Some(_)) => "-".into(),
        };
        let age = p
            .data_age_seconds
            .map(human_age)
            .unwrap_or_else(|| "-".into());
        let note = if let Some(e) = &p.load_error {
            format!("file has errors: {}", e.lines().next().unwrap_or_default())
        } else if let Some(h) = &p.running {
            format!("run {} by process {} on {}", h.run_id, h.pid, h.host)
        } else {
            p.last_run
                .as_ref()
                .and_then(|r| r.error.as_deref())
                .and_then(|e| e.lines().next())
                .unwrap_or_default()
                .to_string()
        };
        out!(
            "{:<16} {:<22} {:<12} {:<22} {:>9}  {}",
            p.id,
            last,
            outcome,
            next,
            age,
            note
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Seconds as the largest sensible unit: 45s, 12m, 5h, 3d.
fn human_age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn runs(config: &Config, pipeline: Option<&str>, limit: usize, json: bool) -> Result<ExitCode> {
    let store = StateStore::open(&config.state_db)?;
    let runs = store.runs(pipeline, limit)?;
    if json {
        out!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(ExitCode::SUCCESS);
    }
    if runs.is_empty() {
        out!("no runs yet");
        return Ok(ExitCode::SUCCESS);
    }
    out!(
        "{:<44} {:<14} {:<20} {:>8} {:<10} {:<11} {:>8} {:>8} {:>8} {:>11} {:>7} {:>5}  error",
        "run",
        "pipeline",
        "started (UTC)",
        "seconds",
        "status",
        "mode",
        "requests",
        "fetched",
        "written",
        "quarantined",
        "retries",
        "table"
    );
    for r in runs {
        let secs = r
            .ended_at
            .map(|e| {
                format!(
                    "{:.1}",
                    (e - r.started_at).num_milliseconds() as f64 / 1000.0
                )
            })
            .unwrap_or_else(|| "-".into());
        let error = r
            .error
            .as_deref()
            .or(r.held.as_deref())
            .and_then(|e| e.lines().next())
            .unwrap_or("");
        let status = if r.held.is_some() {
            "held"
        } else {
            r.status.as_str()
        };
        out!(
            "{:<44} {:<14} {:<20} {:>8} {:<10} {:<11} {:>8} {:>8} {:>8} {:>11} {:>7} {:>5}  {}",
            r.id,
            r.pipeline,
            r.started_at.format("%Y-%m-%d %H:%M:%S"),
            secs,
            status,
            r.mode.as_deref().unwrap_or("-"),
            r.fetch.requests,
            r.rows_fetched,
            r.rows_written,
            r.rows_quarantined,
            r.fetch.retries,
            r.table_version
                .map_or_else(|| "-".into(), |v| format!("v{v}")),
            error
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn checks(
    config: &Config,
    run: Option<&str>,
    pipeline: Option<&str>,
    json: bool,
) -> Result<ExitCode> {
    let store = StateStore::open(&config.state_db)?;
    let runs: Vec<goalpost_state::RunRecord> = match run {
        Some(id) => match store.run(id)? {
            Some(r) => vec![r],
            None => bail!("no run {id:?} in the run history (see `goalpost runs`)"),
        },
        None => {
            // Each pipeline's newest run.
            let mut seen = std::collections::BTreeSet::new();
            store
                .runs(pipeline, 10_000)?
                .into_iter()
                .filter(|r| seen.insert(r.pipeline.clone()))
                .collect()
        }
    };
    let mut all = Vec::new();
    for r in &runs {
        all.push((r, store.checks(&r.id)?));
    }
    if json {
        let value: Vec<serde_json::Value> = all
            .iter()
            .map(|(r, c)| {
                serde_json::json!({
                    "run": r.id,
                    "pipeline": r.pipeline,
                    "rows_quarantined": r.rows_quarantined,
                    "held": r.held,
                    "checks": c,
                })
            })
            .collect();
        out!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        out!("no runs yet");
    }
    for (r, checks) in &all {
        out!(
            "{} (run {}): {} row(s) quarantined{}",
            r.pipeline,
            r.id,
            r.rows_quarantined,
            if r.held.is_some() {
                "; figures HELD at their last good values"
            } else {
                ""
            }
        );
        if checks.is_empty() {
            out!("  no checks recorded");
        }
        for c in checks {
            out!(
                "  {:<11} {:<5} {}: {}",
                c.status,
                c.severity,
                c.check_id,
                c.message
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Pipelines for upkeep commands: every loadable one (a broken file is reported, not fatal).
fn upkeep_pipelines(config: &Config) -> Result<Vec<goalpost_spec::Pipeline>> {
    let loaded = load_pipelines(&config.pipelines_dir)?;
    for (id, err) in &loaded.failed {
        eprintln!("{id}: skipped, the pipeline file has errors:\n{err}");
    }
    Ok(loaded.pipelines)
}

async fn news(config: Config, action: NewsAction) -> Result<ExitCode> {
    let runner = Runner::new(config, Arc::new(SystemClock));
    match action {
        NewsAction::List { status, json } => {
            if let Some(s) = status.as_deref()
                && !["draft", "published", "rejected"].contains(&s)
            {
                bail!("--status {s:?}: expected draft, published or rejected");
            }
            let items = runner.news(status.as_deref())?;
            if json {
                out!("{}", serde_json::to_string_pretty(&items)?);
                return Ok(ExitCode::SUCCESS);
            }
            if items.is_empty() {
                out!("no news items");
            }
            let now = chrono::Utc::now();
            for n in &items {
                let state = match (n.status.as_str(), n.publish_until) {
                    ("published", Some(until)) if until <= now => "archived".to_string(),
                    ("published", Some(until)) => {
                        format!("published until {}", until.format("%Y-%m-%d"))
                    }
                    (s, _) => s.to_string(),
                };
                out!(
                    "{}  {}  [{}] {}\n    {}",
                    n.id,
                    state,
                    n.category,
                    n.title,
                    n.body
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        NewsAction::Approve { id } => review(&runner, &id, true).await,
        NewsAction::Reject { id } => review(&runner, &id, false).await,
    }
}

async fn review(runner: &Runner, id: &str, approve: bool) -> Result<ExitCode> {
    let (item, version) = runner.review_news(id, approve).await?;
    out!(
        "{}: {}{}",
        item.id,
        item.status,
        item.publish_until.map_or(String::new(), |u| format!(
            " until {}",
            u.format("%Y-%m-%d %H:%M UTC")
        ))
    );
    if let Some(v) = version {
        out!("published version {v}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn publish(config: &Config, rollback: bool) -> Result<ExitCode> {
    let publisher = goalpost_runner::publisher_for(config)?;
    if !rollback {
        match publisher.current_version().await? {
            Some(v) => out!(
                "current: {v}\nkept: {}",
                publisher.kept_versions().await?.join(", ")
            ),
            None => out!("nothing is published yet in {}", config.publish_dir),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (from, to) = publisher.rollback().await?;
    out!("current now points at {to} (was {from}); {} is kept", from);
    Ok(ExitCode::SUCCESS)
}

async fn explain(config: &Config, id: &str, period: Option<&str>) -> Result<ExitCode> {
    use goalpost_publish::{IndicatorDigest, PipelineDigest};
    let publisher = goalpost_runner::publisher_for(config)?;
    let Some(digest) = publisher.current_digest().await? else {
        bail!(
            "nothing is published yet in {}; run `goalpost run` first",
            config.publish_dir
        );
    };
    let (only, wanted) = match id.split_once('/') {
        Some((p, i)) => (Some(p), i),
        None => (None, id),
    };
    let mut found: Vec<(
        &PipelineDigest,
        Option<&goalpost_publish::GoalDigest>,
        &IndicatorDigest,
    )> = Vec::new();
    for p in &digest.pipelines {
        if only.is_some_and(|o| o != p.id) {
            continue;
        }
        for g in p.goals.iter().filter(|g| g.id == wanted) {
            if let Some(ind) = p.indicators.iter().find(|i| i.id == g.indicator) {
                found.push((p, Some(g), ind));
            }
        }
        if found.iter().all(|(fp, _, _)| fp.id != p.id) {
            for ind in p.indicators.iter().filter(|i| i.id == wanted) {
                found.push((p, None, ind));
            }
        }
    }
    let (p, goal, ind) = match found.as_slice() {
        [one] => *one,
        [] => {
            let known: Vec<String> = digest
                .pipelines
                .iter()
                .flat_map(|p| {
                    p.goals
                        .iter()
                        .map(|g| g.id.clone())
                        .chain(p.indicators.iter().map(|i| i.id.clone()))
                })
                .collect();
            let mut known = known;
            known.sort();
            known.dedup();
            bail!(
                "no goal or indicator {id:?} in the published digest; it has: {}",
                known.join(", ")
            );
        }
        many => bail!(
            "{id:?} is in several pipelines ({}); name one as PIPELINE/{wanted}",
            many.iter()
                .map(|(p, _, _)| p.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let totals: Vec<&goalpost_publish::SeriesPoint> =
        ind.series.iter().filter(|s| s.group.is_empty()).collect();
    let chosen = match period {
        Some(label) => match totals.iter().find(|s| s.period == label) {
            Some(s) => Some(*s),
            None => bail!(
                "indicator {} has no period {label:?}; it has {} to {}",
                ind.id,
                totals.first().map_or("-", |s| s.period.as_str()),
                totals.last().map_or("-", |s| s.period.as_str())
            ),
        },
        None => goal
            .and_then(|g| g.latest.as_ref())
            .and_then(|l| totals.iter().find(|s| s.period == l.period).copied())
            .or_else(|| totals.iter().rev().find(|s| !s.partial).copied())
            .or_else(|| totals.last().copied()),
    };
    let unit = ind.unit.as_deref().unwrap_or("");
    if let Some(g) = goal {
        out!("Goal {}: {}", g.id, g.title);
        out!(
            "  status {} ({}){}",
            g.status.as_str(),
            g.status_reason,
            if g.held.is_some() {
                "; HELD at its last good value"
            } else {
                ""
            }
        );
        out!(
            "  baseline {} in {}; target {} by {}",
            g.baseline.value,
            g.baseline.period,
            g.target.value,
            g.target.by
        );
    }
    out!(
        "Indicator {}: {}{} (pipeline {}, per {})",
        ind.id,
        ind.title,
        if unit.is_empty() {
            String::new()
        } else {
            format!(" [{unit}]")
        },
        p.id,
        ind.period
    );
    let held = ind.held.as_ref().or(p.held.as_ref());
    if let Some(h) = held {
        match &h.last_good_run {
            Some(good) => out!(
                "  held since run {}: {}; the figures below are the last good ones, from run {good}{}",
                h.since_run,
                h.message,
                p.table.latest_version.map_or(String::new(), |v| format!(
                    ", not from table version {v}, which the failing check judged"
                ))
            ),
            None => out!(
                "  held since run {}: {}; no run has passed its checks yet, so there are no figures",
                h.since_run,
                h.message
            ),
        }
    }
    match chosen {
        Some(s) => {
            let value = match (s.value, s.suppressed) {
                (_, true) => format!("suppressed (fewer than {} rows behind it)", ind.min_count),
                (Some(v), _) => {
                    let shown = format!("{:.*}", usize::from(ind.decimals.unwrap_or(1)), v);
                    let exact = v.to_string();
                    format!(
                        "{shown} {unit}{}",
                        if exact == shown {
                            String::new()
                        } else {
                            format!(" (exactly {exact})")
                        }
                    )
                    .replace("  ", " ")
                }
                (None, _) => "no value".into(),
            };
            out!(
                "  {} ({} to {}): {value}{}{}",
                s.period,
                s.start,
                s.end - chrono::Days::new(1),
                s.n.map_or(String::new(), |n| format!(", from {n} rows")),
                if s.partial {
                    "; partial: the period had not ended, so it is not judged"
                } else {
                    ""
                }
            );
        }
        None => out!("  no figures yet"),
    }
    // A held part carries the held run's id; the goal's provenance and the hold keep the
    // run that computed the figures shown.
    let when = |at: chrono::DateTime<chrono::Utc>| at.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    let computed = match (goal, held) {
        (_, Some(h)) if h.last_good_run.is_none() => None,
        (Some(g), _) => Some(format!(
            "by run {} at {} ",
            g.provenance.run_id,
            when(g.provenance.computed_at)
        )),
        (None, None) => Some(format!("by run {} at {} ", p.run_id, when(p.refreshed_at))),
        (None, Some(h)) => Some(format!(
            "by run {} ",
            h.last_good_run.as_deref().unwrap_or_default()
        )),
    };
    // With no good figures yet, the table version the part names is the one held back.
    if let Some(by) = computed {
        out!(
            "  computed {by}from table {} at Delta version {} ({} rows)",
            p.table.name,
            p.table.version,
            p.table.rows,
        );
    }
    for r in &ind.reads {
        out!(
            "  also read: table {} at Delta version {} (loaded by pipeline {})",
            r.table,
            r.version,
            r.pipeline
        );
    }
    for src in &p.sources {
        out!(
            "  source: {} {} ({} rows){}",
            src.kind,
            src.location,
            src.rows,
            src.link
                .as_deref()
                .map_or(String::new(), |l| format!(", {l}"))
        );
    }
    if let Some(m) = &ind.measure {
        out!("  measure: {m}");
    }
    if let Some(f) = &ind.filter {
        out!("  filter: {f}");
    }
    out!("  query:");
    for line in ind.sql.lines() {
        out!("    {line}");
    }
    let dq = &p.data_quality;
    let failed = dq.checks.iter().filter(|c| c.status == "failed").count();
    out!(
        "  data quality: {} check(s), {failed} failed; {} of {} rows quarantined in the last refresh",
        dq.checks.len(),
        dq.rows_quarantined,
        dq.rows_received
    );
    out!(
        "  recompute: goalpost recompute --run {} --out DIR",
        digest.version
    );
    Ok(ExitCode::SUCCESS)
}

async fn quarantine(
    config: Config,
    pipeline: &str,
    run: Option<&str>,
    limit: usize,
    json: bool,
) -> Result<ExitCode> {
    let pipelines = upkeep_pipelines(&config)?;
    let Some(p) = pipelines.iter().find(|p| p.id == pipeline) else {
        bail!(
            "no pipeline {pipeline:?} in {}; it has: {}",
            config.pipelines_dir.display(),
            pipelines
                .iter()
                .map(|p| p.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let table = p.spec.table.name.get_ref().clone();
    let runner = Runner::new(config, Arc::new(SystemClock));
    let (rows, total) = runner.quarantined(&table, run, limit).await?;
    if json {
        out!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let Some(first) = rows.first() else {
        out!("{pipeline}: no quarantined rows");
        return Ok(ExitCode::SUCCESS);
    };
    out!(
        "{pipeline}: {total} row(s) quarantined by run {}{}",
        first.run_id,
        if total as usize > rows.len() {
            format!(" (showing {}; --limit N for more)", rows.len())
        } else {
            String::new()
        }
    );
    for r in &rows {
        out!("{} {}: {}", r.source, r.row, r.reason);
        out!("  raw: {}", r.raw);
    }
    Ok(ExitCode::SUCCESS)
}

async fn compact(config: Config, table: Option<&str>) -> Result<ExitCode> {
    let pipelines = upkeep_pipelines(&config)?;
    let runner = Runner::new(config, Arc::new(SystemClock));
    let id = format!("compact-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"));
    for c in runner.compact(&pipelines, table, &id).await? {
        match c.version {
            Some(v) => out!(
                "{}: {} files compacted into {} (version {v})",
                c.table,
                c.files_removed,
                c.files_added
            ),
            None => out!("{}: nothing to compact ({} files)", c.table, c.files_before),
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn vacuum(config: Config, table: Option<&str>, dry_run: bool) -> Result<ExitCode> {
    let pipelines = upkeep_pipelines(&config)?;
    let runner = Runner::new(config, Arc::new(SystemClock));
    for v in runner.vacuum(&pipelines, table, dry_run).await? {
        out!(
            "{}: {} {} file(s), {}; versions from {} on stay readable",
            v.table,
            if dry_run { "would delete" } else { "deleted" },
            v.files_deleted,
            human_bytes(v.bytes),
            v.kept_from
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn recompute(config: Config, run_id: &str, out_dir: &std::path::Path) -> Result<ExitCode> {
    let pipelines = upkeep_pipelines(&config)?;
    let runner = Runner::new(config, Arc::new(SystemClock));
    let r = runner.recompute(&pipelines, run_id, out_dir).await?;
    for (pipeline, table, version) in &r.tables {
        out!("{pipeline}: read table {table} at version {version}");
    }
    out!("Wrote {}", r.out.display());
    for d in &r.differences {
        out!("  differs: {d}");
    }
    if r.parquet_identical && r.differences.is_empty() {
        out!("indicators.parquet is byte for byte the published one; every figure agrees");
        Ok(ExitCode::SUCCESS)
    } else {
        if !r.parquet_identical {
            out!("indicators.parquet differs from the published one");
        }
        Ok(ExitCode::FAILURE)
    }
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}
