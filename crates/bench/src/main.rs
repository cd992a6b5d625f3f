//! `just bench`: goalpost and DuckDB doing the same work on generated 311 data, stage by
//! stage, in one run on one machine.
//!
//! ```text
//! goalpost-bench [run] [--rows 1000000,5000000] [--save]   the benchmark
//! goalpost-bench generate --rows N --out DIR               only the data
//! goalpost-bench serve --data DIR [--changes]              only the Socrata server
//! ```
//!
//! Stages (`stage=<name> goalpost_s=… peer_s=… ratio=… goalpost_rss_mb=… peer_rss_mb=…`):
//! `csv_to_table`, `json_pages_to_table`, `indicators`, `incremental_1pct`, `publish`.
//! goalpost's figures are its own per-stage timings (`goalpost run --timings`): wall time,
//! and the process's peak memory during the stage. DuckDB's are the wall time of the same
//! work in its Python process and that process's peak memory.

mod generate;
mod serve;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "goalpost against DuckDB on generated 311 data, stage by stage")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Sizes to run, in rows, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000000,5000000")]
    rows: Vec<u64>,
    /// Folder for the generated data and the runs (kept between runs: data of the same size
    /// is generated once).
    #[arg(long, default_value = "target/bench")]
    work: PathBuf,
    /// Also write the results to bench/results/<date>.md.
    #[arg(long)]
    save: bool,
    /// The goalpost binary (build it with `cargo build --release`).
    #[arg(long, default_value = "target/release/goalpost")]
    goalpost: PathBuf,
    /// Runs of each stage; the median is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// A Python with the `duckdb` package (`just bench` makes a venv for it).
    #[arg(long, default_value = ".tools/bench-venv/bin/python")]
    python: PathBuf,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the benchmark (the default).
    Run(RunArgs),
    /// Generate the data for one size.
    Generate {
        #[arg(long)]
        rows: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Serve generated pages as a Socrata dataset; prints the address it listens on.
    Serve {
        #[arg(long)]
        data: PathBuf,
        /// Serve the rows as changed by `changes.json`.
        #[arg(long)]
        changes: bool,
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: String,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None => bench(&cli.run),
        Some(Cmd::Run(args)) => bench(&args),
        Some(Cmd::Generate { rows, out }) => {
            let meta = generate::generate(&out, rows, |n| eprintln!("  {n} rows"))?;
            println!("{}", serde_json::to_string_pretty(&meta)?);
            Ok(())
        }
        Some(Cmd::Serve {
            data,
            changes,
            bind,
        }) => {
            let rows = serve::Rows::load(&data, changes)?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind(&bind).await?;
                println!("listening on http://{}", listener.local_addr()?);
                std::io::stdout().flush()?;
                serve::serve(listener, rows).await
            })
        }
    }
}

/// One measured stage.
#[derive(Debug, Clone)]
struct Figure {
    seconds: f64,
    rss_mb: Option<f64>,
}

#[derive(Debug, Default)]
struct SizeResult {
    rows: u64,
    csv_mb: f64,
    changes: u64,
    goalpost: BTreeMap<&'static str, Figure>,
    peer: BTreeMap<&'static str, Figure>,
    notes: Vec<String>,
}

const STAGES: [&str; 5] = [
    "csv_to_table",
    "json_pages_to_table",
    "indicators",
    "incremental_1pct",
    "publish",
];

fn bench(args: &RunArgs) -> Result<()> {
    if !args.goalpost.is_file() {
        bail!(
            "no goalpost binary at {}; build it with `cargo build --release` (or run `just bench`)",
            args.goalpost.display()
        );
    }
    let peer = args.python.is_file();
    if !peer {
        eprintln!(
            "note: no Python with duckdb at {}; DuckDB's columns will say na (`just bench` installs it)",
            args.python.display()
        );
    }
    std::fs::create_dir_all(&args.work)?;
    let work = args.work.canonicalize()?;
    let mut results = Vec::new();
    for &rows in &args.rows {
        results.push(one_size(args, &work, rows, peer)?);
    }
    let daemon_mb = idle_daemon_rss(args, &work.join(format!("run-{}", args.rows[0])))?;

    let mut report = String::new();
    for r in &results {
        report += &format!(
            "\n## {} rows ({:.0} MB of CSV, {} rows changed for the refresh; median of {} runs)\n\n",
            r.rows,
            r.csv_mb,
            r.changes,
            args.repeat.max(1)
        );
        for stage in STAGES {
            report += &line(stage, r.goalpost.get(stage), r.peer.get(stage));
            report.push('\n');
        }
        for n in &r.notes {
            report += &format!("\n{n}");
        }
        report.push('\n');
    }
    report += &format!("\nidle daemon: rss_mb={daemon_mb:.1}\n");
    report += &targets(&results, daemon_mb);
    println!("{report}");
    if args.save {
        let path = save(&report)?;
        println!("saved {}", path.display());
    }
    Ok(())
}

fn fmt_opt(x: Option<f64>, decimals: usize) -> String {
    x.map_or("na".to_string(), |v| format!("{v:.decimals$}"))
}

/// One line in the fixed form tools compare.
fn line(stage: &str, g: Option<&Figure>, p: Option<&Figure>) -> String {
    let gs = g.map(|f| f.seconds);
    let ps = p.map(|f| f.seconds);
    let ratio = gs.zip(ps).map(|(a, b)| a / b);
    format!(
        "stage={stage} goalpost_s={} peer_s={} ratio={} goalpost_rss_mb={} peer_rss_mb={}",
        fmt_opt(gs, 3),
        fmt_opt(ps, 3),
        fmt_opt(ratio, 2),
        fmt_opt(g.and_then(|f| f.rss_mb), 0),
        fmt_opt(p.and_then(|f| f.rss_mb), 0),
    )
}

fn targets(results: &[SizeResult], daemon_mb: f64) -> String {
    let mut out = String::from("\n## Targets\n\n");
    let mut check = |name: String, ok: Option<bool>| {
        let mark = match ok {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "not measured",
        };
        out += &format!("- {name}: {mark}\n");
    };
    for r in results {
        let g = |s: &str| r.goalpost.get(s);
        let p = |s: &str| r.peer.get(s);
        let ratio = |s: &str| g(s).zip(p(s)).map(|(a, b)| a.seconds / b.seconds);
        let a = ratio("csv_to_table");
        let mem = g("csv_to_table")
            .and_then(|f| f.rss_mb)
            .zip(p("csv_to_table").and_then(|f| f.rss_mb));
        check(
            format!(
                "{} rows, (a) CSV → table ratio ≤ 1.0 (is {}), peak memory ≤ half of DuckDB's (is {})",
                r.rows,
                fmt_opt(a, 2),
                mem.map_or("na".into(), |(x, y)| format!("{:.0} of {:.0} MB", x, y))
            ),
            a.zip(mem).map(|(a, (x, y))| a <= 1.0 && x <= y / 2.0),
        );
        let c = ratio("indicators");
        check(
            format!(
                "{} rows, (c) indicators ≤ 1.2× DuckDB (is {})",
                r.rows,
                fmt_opt(c, 2)
            ),
            c.map(|c| c <= 1.2),
        );
        let d = g("incremental_1pct")
            .zip(g("json_pages_to_table"))
            .map(|(d, b)| d.seconds / b.seconds);
        check(
            format!(
                "{} rows, (d) a 1 % refresh ≤ 5 % of the full load of the same table (is {} %)",
                r.rows,
                fmt_opt(d.map(|d| d * 100.0), 1)
            ),
            d.map(|d| d <= 0.05),
        );
    }
    if let (Some(small), Some(big)) = (
        results.iter().min_by_key(|r| r.rows),
        results.iter().max_by_key(|r| r.rows),
    ) && big.rows > small.rows
    {
        for stage in ["csv_to_table", "json_pages_to_table"] {
            let m = |r: &SizeResult| r.goalpost.get(stage).and_then(|f| f.rss_mb);
            let growth = m(big).zip(m(small)).map(|(b, s)| b / s);
            check(
                format!(
                    "streaming: {stage} peak memory at {} rows ≤ 1.2× at {} rows (is {}×)",
                    big.rows,
                    small.rows,
                    fmt_opt(growth, 2)
                ),
                growth.map(|g| g <= 1.2),
            );
        }
    }
    check(
        format!("the idle daemon holds under 30 MB (is {daemon_mb:.1} MB)"),
        Some(daemon_mb < 30.0),
    );
    out
}

/// Where generated data of `rows` rows lives, generating it if needed.
fn data_for(work: &Path, rows: u64) -> Result<(PathBuf, generate::Meta)> {
    let dir = work.join(format!("data-{rows}"));
    if let Some(meta) = generate::existing(&dir, rows) {
        return Ok((dir, meta));
    }
    eprintln!("generating {rows} rows into {} …", dir.display());
    let started = Instant::now();
    let meta = generate::generate(&dir, rows, |n| eprintln!("  {n} rows"))?;
    eprintln!("  done in {:.1} s", started.elapsed().as_secs_f64());
    Ok((dir, meta))
}

/// The table's columns: name, CSV header, Socrata field, type, required.
const COLUMNS: [(&str, &str, &str, &str, bool); 11] = [
    ("request_id", "Unique Key", "unique_key", "int64", true),
    (
        "created_at",
        "Created Date",
        "created_date",
        "timestamp",
        true,
    ),
    (
        "closed_at",
        "Closed Date",
        "closed_date",
        "timestamp",
        false,
    ),
    ("agency", "Agency", "agency", "string", true),
    (
        "complaint_type",
        "Complaint Type",
        "complaint_type",
        "string",
        true,
    ),
    ("descriptor", "Descriptor", "descriptor", "string", false),
    (
        "address",
        "Incident Address",
        "incident_address",
        "string",
        false,
    ),
    ("status", "Status", "status", "string", true),
    (
        "community_board",
        "Community Board",
        "community_board",
        "string",
        true,
    ),
    ("latitude", "Latitude", "latitude", "float64", false),
    ("longitude", "Longitude", "longitude", "float64", false),
];

/// `[table.columns]` reading the CSV headers or the Socrata fields.
fn columns(socrata: bool) -> String {
    COLUMNS
        .iter()
        .map(|(name, label, field, kind, required)| {
            let from = if socrata { field } else { label };
            let optional = if *required { "" } else { ", required = false" };
            format!("{name} = {{ from = \"{from}\", type = \"{kind}\"{optional} }}\n")
        })
        .collect()
}

/// The demo's figures for 311 requests: count, median and 90th percentile of hours to
/// close, and the share closed within 72 hours, by month and complaint type and by month
/// and community board.
fn indicators() -> String {
    let hours = "(extract(epoch FROM closed_at) - extract(epoch FROM created_at)) / 3600.0";
    let mut out = String::new();
    for by in ["complaint_type", "community_board"] {
        for (id, extra) in [
            ("requests", "measure = \"count\"\n".to_string()),
            (
                "median-hours",
                format!("measure = \"median\"\nvalue = \"{hours}\"\n"),
            ),
            (
                "p90-hours",
                format!("measure = \"percentile\"\npercentile = 90\nvalue = \"{hours}\"\n"),
            ),
            (
                "closed-72h",
                format!(
                    "measure = \"share\"\ncondition = \"closed_at IS NOT NULL AND {hours} <= 72\"\n"
                ),
            ),
        ] {
            let slug = by.replace('_', "-");
            out += &format!(
                "\n[[indicator]]\nid = \"{id}-by-{slug}\"\ntitle = \"{id} by {slug}\"\nperiod = \"month\"\nby = [\"{by}\"]\n{extra}"
            );
        }
    }
    out
}

/// A pipeline of the 311 requests. `updated` names the column that stamps a record's
/// versions, if the source has one.
fn pipeline(
    title: &str,
    source: &str,
    table: &str,
    columns: &str,
    updated: Option<&str>,
) -> String {
    let updated = updated
        .map(|u| format!("updated = \"{u}\"\n"))
        .unwrap_or_default();
    format!(
        r#"title = "{title}"
timezone = "America/New_York"
as_of = "2025-07-01"

[[source]]
{source}
[table]
name = "{table}"
key = ["request_id"]
time = "created_at"
{updated}partition = "month(created_at)"

[table.columns]
{columns}{indicators}"#,
        indicators = indicators()
    )
}

/// The median of each stage's figures over several runs (time and memory taken apart).
fn median(runs: &[BTreeMap<String, Figure>]) -> BTreeMap<String, Figure> {
    let mid = |mut xs: Vec<f64>| {
        xs.sort_by(f64::total_cmp);
        xs[xs.len() / 2]
    };
    let mut out = BTreeMap::new();
    let stages: Vec<String> = runs
        .first()
        .map(|r| r.keys().cloned().collect())
        .unwrap_or_default();
    for stage in stages {
        let figures: Vec<&Figure> = runs.iter().filter_map(|r| r.get(&stage)).collect();
        let rss: Vec<f64> = figures.iter().filter_map(|f| f.rss_mb).collect();
        out.insert(
            stage,
            Figure {
                seconds: mid(figures.iter().map(|f| f.seconds).collect()),
                rss_mb: (!rss.is_empty()).then(|| mid(rss)),
            },
        );
    }
    out
}

/// Run `goalpost run <id> --timings` `times` times (with `--full` after the first); the
/// median of the stage figures it printed, and the last run's output.
fn goalpost_runs(
    args: &RunArgs,
    project: &Path,
    id: &str,
    times: usize,
) -> Result<(BTreeMap<String, Figure>, String)> {
    let mut runs = Vec::new();
    let mut last = String::new();
    for k in 0..times.max(1) {
        let (stages, out) = goalpost_run(args, project, id, k > 0)?;
        runs.push(stages);
        last = out;
    }
    Ok((median(&runs), last))
}

/// The Socrata pipeline's refresh, `times` times, each from the table and watermark the full
/// load left (they are copied aside first and put back before each run): the median
/// figures and the last run's output.
fn refresh_runs(
    args: &RunArgs,
    project: &Path,
    times: usize,
) -> Result<(BTreeMap<String, Figure>, String)> {
    let data = project.join("data");
    let table = data.join("tables/requests_soda");
    let saved = project.join("before-refresh");
    if saved.exists() {
        std::fs::remove_dir_all(&saved)?;
    }
    copy_dir(&table, &saved.join("requests_soda"))?;
    // The state database and its journal files, if any.
    let state_files = || -> Result<Vec<PathBuf>> {
        Ok(std::fs::read_dir(&data)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("state.sqlite"))
            })
            .collect())
    };
    let state = state_files()?;
    for f in &state {
        std::fs::copy(f, saved.join(f.file_name().context("a state file")?))?;
    }
    let mut runs = Vec::new();
    let mut last = String::new();
    for k in 0..times.max(1) {
        if k > 0 {
            std::fs::remove_dir_all(&table)?;
            copy_dir(&saved.join("requests_soda"), &table)?;
            for f in state_files()? {
                std::fs::remove_file(&f)?;
            }
            for f in &state {
                let name = f.file_name().context("a state file")?;
                std::fs::copy(saved.join(name), f)?;
            }
        }
        let (stages, out) = goalpost_run(args, project, "requests-soda", false)?;
        runs.push(stages);
        last = out;
    }
    std::fs::remove_dir_all(&saved)?;
    Ok((median(&runs), last))
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Run `goalpost run <id> --timings`; the stage figures it printed.
fn goalpost_run(
    args: &RunArgs,
    project: &Path,
    id: &str,
    full: bool,
) -> Result<(BTreeMap<String, Figure>, String)> {
    let out = Command::new(&args.goalpost)
        .arg("--config")
        .arg(project.join("config/goalpost.toml"))
        .args(["run", id, "--timings"])
        .args(full.then_some("--full"))
        .env_remove("GOALPOST_CONFIG")
        .env("RUST_LOG", "warn")
        .output()
        .with_context(|| format!("starting {}", args.goalpost.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "goalpost run {id} failed:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut stages = BTreeMap::new();
    for l in stdout.lines() {
        // "  stage load           1.234 s   peak RSS    180.5 MiB"
        let Some(rest) = l.trim().strip_prefix("stage ") else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        if let [name, secs, "s", "peak", "RSS", mib, "MiB"] = words[..] {
            stages.insert(
                name.to_string(),
                Figure {
                    seconds: secs.parse()?,
                    rss_mb: mib.parse::<f64>().ok().map(|m| m * 1.048_576),
                },
            );
        }
    }
    if stages.is_empty() {
        bail!("goalpost run {id} printed no stage timings:\n{stdout}");
    }
    Ok((stages, stdout))
}

/// A child process's exit status and peak memory (MB), from `wait4`.
fn wait_rss(mut child: Child) -> Result<(std::process::ExitStatus, f64)> {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data, filled by the kernel; the pid is our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r != pid {
        // Fall back to std's wait (the rusage is lost).
        let s = child.wait()?;
        return Ok((s, f64::NAN));
    }
    use std::os::unix::process::ExitStatusExt;
    Ok((
        std::process::ExitStatus::from_raw(status),
        usage.ru_maxrss as f64 * 1024.0 / 1e6,
    ))
}

fn peer_stage(args: &RunArgs, script: &Path, argv: &[&Path], stage: &str) -> Result<Figure> {
    let mut child = Command::new(&args.python)
        .arg(script)
        .arg(stage)
        .args(argv)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", args.python.display()))?;
    let mut text = String::new();
    if let Some(out) = child.stdout.take() {
        std::io::Read::read_to_string(&mut BufReader::new(out), &mut text)?;
    }
    let (status, rss) = wait_rss(child)?;
    if !status.success() {
        bail!("DuckDB {stage} failed ({status}):\n{text}");
    }
    let v: serde_json::Value = serde_json::from_str(text.trim())
        .with_context(|| format!("DuckDB {stage} printed {text:?}"))?;
    Ok(Figure {
        seconds: v["seconds"].as_f64().context("seconds")?,
        rss_mb: Some(rss),
    })
}

/// Start `goalpost-bench serve` on `bind`; returns the child and the portal's address.
fn start_server(data: &Path, changes: bool, bind: &str) -> Result<(Child, String)> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("serve")
        .arg("--data")
        .arg(data)
        .arg("--bind")
        .arg(bind);
    if changes {
        cmd.arg("--changes");
    }
    let mut child = cmd.stdout(Stdio::piped()).spawn()?;
    let mut first = String::new();
    BufReader::new(child.stdout.take().context("server stdout")?).read_line(&mut first)?;
    let addr = first
        .trim()
        .strip_prefix("listening on ")
        .with_context(|| format!("the server said {first:?}"))?
        .to_string();
    Ok((child, addr))
}

fn one_size(args: &RunArgs, work: &Path, rows: u64, peer: bool) -> Result<SizeResult> {
    let (data, meta) = data_for(work, rows)?;
    let project = work.join(format!("run-{rows}"));
    if project.exists() {
        std::fs::remove_dir_all(&project)?;
    }
    std::fs::create_dir_all(project.join("config"))?;
    std::fs::create_dir_all(project.join("pipelines"))?;
    std::fs::write(
        project.join("config/goalpost.toml"),
        "data_dir = \"../data\"\npublish_dir = \"../publish\"\npipelines_dir = \"../pipelines\"\n\n[site]\ntitle = \"Benchmark\"\n\n[fetch]\nkeep_raw = false\n# The server is local: measure goalpost's work, not the pause a portal is owed.\nrequests_per_second = 10000\n",
    )?;
    let csv = data.join("requests.csv");
    std::fs::write(
        project.join("pipelines/requests-csv.toml"),
        pipeline(
            "311 requests from CSV",
            &format!("kind = \"file\"\npath = {:?}\n", csv.display().to_string()),
            "requests_csv",
            &columns(false),
            None,
        ),
    )?;
    let mut r = SizeResult {
        rows,
        csv_mb: meta.csv_bytes as f64 / 1e6,
        changes: meta.changes,
        ..Default::default()
    };

    // goalpost's and DuckDB's runs take turns, so that each ratio compares runs made under
    // the same conditions: the machine's speed drifts over minutes.
    let script = work.join("peer.py");
    let parquet = project.join("duckdb-requests.parquet");
    if peer {
        std::fs::write(&script, include_str!("../peer.py"))?;
    }
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for k in 0..args.repeat.max(1) {
        eprintln!("[{rows}] goalpost: CSV → table, indicators, publish …");
        ours.push(goalpost_run(args, &project, "requests-csv", k > 0)?.0);
        if peer {
            eprintln!("[{rows}] DuckDB: CSV → Parquet, indicators …");
            let a = peer_stage(args, &script, &[&csv, &parquet], "csv_to_table")?;
            let c = peer_stage(args, &script, &[&parquet], "indicators")?;
            theirs.push(BTreeMap::from([
                ("csv_to_table".to_string(), a),
                ("indicators".to_string(), c),
            ]));
        }
    }
    for (stage, f) in median(&theirs) {
        let stage = STAGES
            .iter()
            .find(|s| **s == stage)
            .copied()
            .context("a stage name")?;
        r.peer.insert(stage, f);
    }
    let stages = median(&ours);
    for (from, to) in [
        ("load", "csv_to_table"),
        ("indicators", "indicators"),
        ("publish", "publish"),
    ] {
        if let Some(f) = stages.get(from) {
            r.goalpost.insert(to, f.clone());
        }
    }

    eprintln!("[{rows}] goalpost: Socrata JSON pages → table …");
    let (mut server, url) = start_server(&data, false, "127.0.0.1:0")?;
    let page = generate::PAGE_SIZE;
    std::fs::write(
        project.join("pipelines/requests-soda.toml"),
        pipeline(
            "311 requests from Socrata",
            &format!(
                "kind = \"socrata\"\nurl = \"{url}\"\ndataset = \"bnch-3110\"\npage_size = {page}\n"
            ),
            "requests_soda",
            // Socrata stamps every row's version: a refresh compares stamps, not rows.
            &format!(
                "{}updated_at = {{ from = \":updated_at\", type = \"timestamp\" }}\n",
                columns(true)
            ),
            Some("updated_at"),
        ),
    )?;
    let full = goalpost_runs(args, &project, "requests-soda", args.repeat);
    server.kill()?;
    server.wait()?;
    let (stages, _) = full?;
    if let Some(f) = stages.get("load") {
        r.goalpost.insert("json_pages_to_table", f.clone());
    }

    eprintln!("[{rows}] goalpost: refresh with 1 % of rows changed …");
    // The same address: the source (and its saved watermark) is named by its URL.
    let (mut server, _) = start_server(&data, true, url.trim_start_matches("http://"))?;
    let refresh = refresh_runs(args, &project, args.repeat);
    server.kill()?;
    server.wait()?;
    let (stages, stdout) = refresh?;
    if let Some(f) = stages.get("load") {
        r.goalpost.insert("incremental_1pct", f.clone());
    }
    if let Some(l) = stdout.lines().find(|l| l.starts_with("requests-soda:")) {
        r.notes.push(format!("refresh: {l}"));
    }
    Ok(r)
}

/// The daemon's resident memory once it has started and answered a few requests, with the
/// pipelines of `project` loaded and nothing due.
fn idle_daemon_rss(args: &RunArgs, project: &Path) -> Result<f64> {
    let mut child = Command::new(&args.goalpost)
        .arg("--config")
        .arg(project.join("config/goalpost.toml"))
        .args(["daemon", "--bind", "127.0.0.1:0"])
        .env_remove("GOALPOST_CONFIG")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut first = String::new();
    BufReader::new(child.stdout.take().context("daemon stdout")?).read_line(&mut first)?;
    let addr = first
        .trim()
        .strip_prefix("goalpost daemon listening on http://")
        .with_context(|| format!("the daemon said {first:?}"))?
        .to_string();
    for path in [
        "/healthz",
        "/",
        "/digest.json",
        "/api/pipelines",
        "/metrics",
    ] {
        let mut s = std::net::TcpStream::connect(&addr)?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )?;
        let mut sink = Vec::new();
        std::io::Read::read_to_end(&mut s, &mut sink)?;
    }
    // Let it settle: start-up work done, nothing due.
    std::thread::sleep(Duration::from_secs(2));
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .context("VmRSS")?;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    child.wait()?;
    Ok(kb * 1024.0 / 1e6)
}

fn save(report: &str) -> Result<PathBuf> {
    let dir = PathBuf::from("bench/results");
    std::fs::create_dir_all(&dir)?;
    let date = chrono::Utc::now().format("%Y-%m-%d");
    // A second run on one day does not replace the first: `<date>-2.md`, `<date>-3.md`, …
    let path = std::iter::once(dir.join(format!("{date}.md")))
        .chain((2..).map(|n| dir.join(format!("{date}-{n}.md"))))
        .find(|p| !p.exists())
        .expect("an unused name");
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or("unknown".into(), |kb| {
            format!("{:.1} GiB", kb / 1024.0 / 1024.0)
        });
    let commit = Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let text = format!(
        "# Benchmark, {date}\n\n`just bench` at {commit}, on {cores} cores ({cpu}), {mem}.\n\n```text{report}```\n"
    );
    std::fs::write(&path, text)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_takes_time_and_memory_apart() {
        let run = |s: f64, m: f64| {
            BTreeMap::from([(
                "load".to_string(),
                Figure {
                    seconds: s,
                    rss_mb: Some(m),
                },
            )])
        };
        let m = median(&[run(3.0, 100.0), run(1.0, 300.0), run(2.0, 200.0)]);
        assert_eq!(m["load"].seconds, 2.0);
        assert_eq!(m["load"].rss_mb, Some(200.0));
        assert_eq!(
            line("csv_to_table", m.get("load"), None),
            "stage=csv_to_table goalpost_s=2.000 peer_s=na ratio=na goalpost_rss_mb=200 peer_rss_mb=na"
        );
    }
}
