//! The demo's published site in a real browser. `tools/site-check/check.mjs` opens every page
//! in headless Chromium and runs axe-core's WCAG 2.0/2.1 A and AA rules, loads it 375 px wide
//! to catch sideways scrolling, and loads it with JavaScript off to read its h1. Screenshots
//! are left in `target/site-check/` for a person to look at.
//!
//! Node's packages and Chromium come from `tools/install-test-servers`; without them the test
//! fails, naming the script (it never skips).

use crate::{Project, demo_dir, repo};
use goalpost_testkit::real::INSTALL_SCRIPT;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const CHECK: &str = "tools/site-check/check.mjs";
const PACKAGES: [&str; 2] = ["axe-core", "playwright-core"];

/// The browser the check drives, as check.mjs picks it.
fn chromium() -> PathBuf {
    match std::env::var_os("CHROMIUM") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from("/usr/bin/chromium"),
    }
}

/// Cargo's target directory (the one holding this build's `goalpost`), so screenshots land
/// beside the build even when CARGO_TARGET_DIR moves it.
fn target_dir() -> PathBuf {
    let exe = Path::new(env!("CARGO_BIN_EXE_goalpost"));
    exe.parent()
        .and_then(Path::parent)
        .map_or_else(|| repo().join("target"), Path::to_path_buf)
}

fn require_installed() {
    let modules = repo().join("tools/site-check/node_modules");
    for package in PACKAGES {
        let manifest = modules.join(package).join("package.json");
        assert!(
            manifest.is_file(),
            "{package} is not installed (looked for {}); run {INSTALL_SCRIPT}",
            manifest.display()
        );
    }
    let browser = chromium();
    assert!(
        browser.is_file(),
        "Chromium is not installed (looked for {}); run {INSTALL_SCRIPT} (it runs apt-get \
         install chromium) or set CHROMIUM to a Chromium binary",
        browser.display()
    );
}

/// Every problem in check.mjs's report, one readable entry each.
fn problems(report: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for page in report["pages"].as_array().expect("pages in the report") {
        let name = page["page"].as_str().unwrap_or("?");
        for violation in page["violations"].as_array().expect("violations of a page") {
            let nodes: Vec<&str> = violation["nodes"]
                .as_array()
                .map(|nodes| nodes.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            problems.push(format!(
                "{name}: axe {} ({}): {}\n      {}\n      on: {}",
                violation["id"].as_str().unwrap_or("?"),
                violation["impact"].as_str().unwrap_or("?"),
                violation["help"].as_str().unwrap_or("?"),
                violation["help_url"].as_str().unwrap_or(""),
                nodes.join("\n          "),
            ));
        }
        if page["overflow"] == true {
            let culprits: Vec<&str> = page["overflowing"]
                .as_array()
                .map(|c| c.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            problems.push(format!(
                "{name}: scrolls sideways on a 375 px screen ({} px wide); what sticks out:\n          {}",
                page["scroll_width"],
                culprits.join("\n          "),
            ));
        }
        if page["h1_without_js"].as_str().is_none_or(str::is_empty) {
            problems.push(format!("{name}: no h1 text with JavaScript off"));
        }
        match page["broken_links"].as_array() {
            Some(broken) => {
                for link in broken.iter().filter_map(Value::as_str) {
                    problems.push(format!("{name}: links to {link}"));
                }
            }
            None => problems.push(format!("{name}: the check reported no links")),
        }
    }
    problems
}

#[test]
fn demo_site_passes_axe_fits_a_phone_and_reads_without_javascript() {
    require_installed();
    let project = Project::new(&demo_dir());
    project.ok(&["run"]);

    let out_dir = target_dir().join("site-check");
    // A screenshot left by an earlier run must not stand in for this one.
    for shot in ["home.png", "goal.png"] {
        let _ = std::fs::remove_file(out_dir.join(shot));
    }
    let output = Command::new("node")
        .arg(repo().join(CHECK))
        .arg(project.current())
        .arg(&out_dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("could not run node ({e}); install Node.js 20 or newer and run {INSTALL_SCRIPT}")
        });
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{CHECK} failed ({}):\n{stderr}",
        output.status
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{CHECK} printed no JSON report ({e}):\n{}\n{stderr}",
            String::from_utf8_lossy(&output.stdout)
        )
    });

    let pages: Vec<&str> = report["pages"]
        .as_array()
        .expect("pages in the report")
        .iter()
        .filter_map(|p| p["page"].as_str())
        .collect();
    assert!(pages.contains(&"index.html"), "pages checked: {pages:?}");

    let home = out_dir.join("home.png");
    let png = std::fs::read(&home).unwrap_or_else(|e| panic!("{}: {e}", home.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        home.display()
    );

    let problems = problems(&report);
    assert!(
        problems.is_empty(),
        "{} problem(s) on the demo site (screenshots in {}):\n  {}",
        problems.len(),
        out_dir.display(),
        problems.join("\n  ")
    );
}
