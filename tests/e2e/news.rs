//! News-flash items: announced once per event, drafts held for review, archived when their
//! window ends, shown on the site and in the feed.

use crate::{Project, repo};

const RULES: &str = r#"
[[news]]
on = ["goal_met"]
category = "311 <Customer> Service"
publish_for = "0s"

[[news]]
on = ["threshold_crossed"]
goals = ["closed-within-5-days"]
threshold = 70
review = true
publish_for = "90d"
"#;

#[test]
fn goal_events_are_announced_once_reviewed_and_archived() {
    let dir = tempfile::tempdir().unwrap();
    let demo = repo().join("pipelines/demo");
    let text = std::fs::read_to_string(demo.join("nyc-311.toml"))
        .unwrap()
        .replace(
            "path = \"data/",
            &format!("path = \"{}/data/", demo.display()),
        );
    // The demo's own news rules give way to the ones under test.
    let text = text.split("[[news]]").next().unwrap();
    std::fs::write(dir.path().join("nyc-311.toml"), format!("{text}{RULES}")).unwrap();
    let project = Project::new(dir.path());
    project.ok(&["run"]);

    // The met goal is announced and, with a window of 0 s, archived at once; the crossing
    // of 70 % (54.0 % in 2019-01, then 79.7 % in 2019-03) waits for review.
    let met = "nyc-311.median-hours-to-close.goal-met.2019-03";
    let crossed = "nyc-311.closed-within-5-days.crossed-70.2019-03";
    let digest = project.digest();
    let news = digest["news"].as_array().unwrap();
    assert_eq!(news.len(), 1, "{news:?}");
    assert_eq!(news[0]["id"], met);
    assert_eq!(news[0]["archived"], true);
    assert_eq!(
        news[0]["title"],
        "Goal met: Cut the median time to close a 311 request to 12 hours by the end of FY2019"
    );
    let page = std::fs::read_to_string(project.current().join(format!("news/{met}.html"))).unwrap();
    assert!(
        page.contains("<h1>[ARCHIVED] Goal met: Cut the median"),
        "{page}"
    );
    assert!(
        page.contains("The original item was published from"),
        "{page}"
    );
    assert!(page.contains("311 &lt;Customer&gt; Service"), "{page}");
    let drafts = project.ok(&["news", "list", "--status", "draft"]);
    assert!(drafts.contains(crossed), "{drafts}");
    assert!(
        drafts.contains("Close 80 % of 311 requests within 5 days by the end of FY2019: 79.7 % in 2019-03 crossed 70.0 % (+25.7 % since the period before)."),
        "{drafts}"
    );

    // Approving publishes it now for 90 days, and the site is published again with it.
    let approved = project.ok(&["news", "approve", crossed]);
    assert!(
        approved.contains(&format!("{crossed}: published until")),
        "{approved}"
    );
    let digest = project.digest();
    let news = digest["news"].as_array().unwrap();
    assert_eq!(news.len(), 2);
    assert_eq!(news[0]["id"], crossed, "current items come first");
    assert_eq!(news[0]["archived"], false);
    let index = std::fs::read_to_string(project.current().join("news/index.html")).unwrap();
    assert!(
        index.contains(&format!("href=\"{crossed}.html\"")),
        "{index}"
    );
    let feed = std::fs::read_to_string(project.current().join("feed.atom")).unwrap();
    assert!(
        !feed.contains("Goal met"),
        "archived items leave the feed: {feed}"
    );
    // A real feed reader takes it without complaint.
    let read = feedparser(&project.current().join("feed.atom"));
    assert_eq!(read["bozo"], 0, "{read}");
    assert_eq!(read["entries"].as_array().unwrap().len(), 1, "{read}");
    assert_eq!(
        read["entries"][0]["title"],
        "Close 80 % of 311 requests within 5 days by the end of FY2019: 70.0 % crossed"
    );
    assert_eq!(read["entries"][0]["category"], "Customer Service");
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(project.current().join("news.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    // The data files carry over into the republished version.
    assert!(
        project
            .current()
            .join("data/service_requests.parquet")
            .is_file()
    );

    // A second run announces nothing again: the ids are stable.
    project.ok(&["run"]);
    let all: serde_json::Value =
        serde_json::from_str(&project.ok(&["news", "list", "--json"])).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 2);
    let out = project.goalpost(&["news", "reject", crossed]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is published, not a draft awaiting review"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What Python's feedparser (installed by tools/install-test-servers) reads from a feed:
/// `bozo` (1 when the feed is not well formed), the feed's title and each entry's title,
/// summary, category and link.
pub(crate) fn feedparser(feed: &std::path::Path) -> serde_json::Value {
    let python = goalpost_testkit::real::tools_dir().join("venv/bin/python");
    let script = r#"
import json, sys, feedparser
d = feedparser.parse(sys.argv[1])
print(json.dumps({
    "bozo": int(d.bozo),
    "error": str(d.get("bozo_exception", "")),
    "title": d.feed.get("title"),
    "entries": [{
        "title": e.get("title"),
        "summary": e.get("summary"),
        "category": (e.get("tags") or [{}])[0].get("term"),
        "link": e.get("link"),
    } for e in d.entries],
}))
"#;
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(feed)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{} cannot run ({e}); run {} to install feedparser",
                python.display(),
                goalpost_testkit::real::INSTALL_SCRIPT
            )
        });
    assert!(
        out.status.success(),
        "feedparser failed (run {} if it is missing): {}",
        goalpost_testkit::real::INSTALL_SCRIPT,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
