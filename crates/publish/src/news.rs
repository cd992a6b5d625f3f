//! News-flash items: goal events turned into short public announcements by a pipeline's
//! `[[news]]` rules.
//!
//! Each event gets a stable id made of the pipeline, the goal, the event and the period (and
//! the new status, or the threshold), so the same event is never announced twice however
//! often the figures are recomputed. Texts are plain text from minijinja templates; the
//! renderers escape them (HTML, Atom, JSON).

use crate::digest::{GoalDigest, PipelineDigest};
use goalpost_spec::{GoalStatus, NewsEvent, NewsRule};
use minijinja::{Environment, context};
use serde::Serialize;

/// An announcement made from an event, before it enters the ledger.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Announcement {
    pub id: String,
    pub pipeline: String,
    pub goal: Option<String>,
    pub event: NewsEvent,
    pub category: String,
    pub title: String,
    pub body: String,
    /// Wait for `goalpost news approve`.
    pub review: bool,
    /// Seconds shown once published.
    pub window_secs: u64,
}

fn default_title(event: NewsEvent) -> &'static str {
    match event {
        NewsEvent::GoalMet => "Goal met: {{ goal.title }}",
        NewsEvent::StatusChanged => "{{ goal.title }}: now {{ status }}",
        NewsEvent::NewBest => "Best result yet: {{ goal.title }}",
        NewsEvent::NewWorst => "Weakest result yet: {{ goal.title }}",
        NewsEvent::ThresholdCrossed => "{{ goal.title }}: {{ threshold }} crossed",
        NewsEvent::DataStale => "Data not refreshed on time: {{ dataset }}",
    }
}

fn default_body(event: NewsEvent) -> &'static str {
    match event {
        NewsEvent::GoalMet => {
            "{{ goal.title }}: {{ value }} in {{ period }}, meeting the target of {{ target }} set for {{ target_by }}."
        }
        NewsEvent::StatusChanged => {
            "{{ goal.title }} is now {{ status }} (was {{ previous_status }}): {{ value }} in {{ period }}, against a target of {{ target }} by {{ target_by }}."
        }
        NewsEvent::NewBest => {
            "{{ goal.title }}: {{ value }} in {{ period }} is the best result since the figures began. The target is {{ target }} by {{ target_by }}."
        }
        NewsEvent::NewWorst => {
            "{{ goal.title }}: {{ value }} in {{ period }} is the weakest result since the figures began. The target is {{ target }} by {{ target_by }}."
        }
        NewsEvent::ThresholdCrossed => {
            "{{ goal.title }}: {{ value }} in {{ period }} crossed {{ threshold }} ({{ change }} since the period before)."
        }
        NewsEvent::DataStale => {
            "{{ dataset }} was not refreshed on time, so its figures may be out of date: {{ message }}"
        }
    }
}

/// Check a template's syntax (for `goalpost validate`).
/// Check a template: its syntax, and that it renders with every name a template can use
/// (an unknown name, filter or function is an error).
pub fn check_template(text: &str) -> Result<(), String> {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let sample = context! {
        goal => context! { id => "goal", title => "A goal" },
        value => "1.0", unit => "units", period => "2026-01", target => "2.0",
        target_by => "30 June 2026", status => "on track", previous_status => "at risk",
        change => "+0.5", threshold => "1.5", dataset => "A dataset", message => "a message",
    };
    env.render_str(text, sample)
        .map(|_| ())
        .map_err(|e| format!("{e:#}"))
}

fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

fn fmt(v: f64, g: &GoalDigest) -> String {
    crate::html::with_unit(v, g.decimals, g.unit.as_deref())
}

/// The latest judged figure and the figures before it, oldest first.
fn judged(g: &GoalDigest) -> Option<(usize, f64)> {
    let latest = g.latest.as_ref()?;
    let i = g.series.iter().position(|p| p.period == latest.period)?;
    Some((i, latest.value))
}

fn better(g: &GoalDigest, a: f64, b: f64) -> bool {
    if g.better == "lower" { a < b } else { a > b }
}

/// The announcements `rules` make of a pipeline's newly computed part, given the part
/// published before it (none on a first run).
pub fn announcements(
    rules: &[NewsRule],
    previous: Option<&PipelineDigest>,
    section: &PipelineDigest,
) -> Result<Vec<Announcement>, String> {
    let mut out: Vec<Announcement> = Vec::new();
    let env = Environment::new();
    for (r, rule) in rules.iter().enumerate() {
        let category = rule
            .category
            .clone()
            .or_else(|| section.department.clone())
            .unwrap_or_else(|| "Performance".into());
        let goals: Vec<&GoalDigest> = section
            .goals
            .iter()
            .filter(|g| rule.goals.is_empty() || rule.goals.iter().any(|id| id.get_ref() == &g.id))
            .collect();
        for event in rule.on.iter().map(|e| *e.get_ref()) {
            let title_src = rule
                .title
                .as_ref()
                .map_or(default_title(event), |t| t.get_ref().as_str());
            let body_src = rule
                .template
                .as_ref()
                .map_or(default_body(event), |t| t.get_ref().as_str());
            // A template of the rule's that fails to render (checked by `validate`, but a
            // value may still trip it) gives way to the event's default text: the figures
            // are published either way.
            let render = |what: &str, src: &str, fallback: &str, ctx: &minijinja::Value| {
                env.render_str(src, ctx.clone())
                    .or_else(|e| {
                        tracing::warn!(
                            rule = r + 1,
                            event = event.as_str(),
                            error = %format!("{e:#}"),
                            "the news {what} template failed; the default text is used"
                        );
                        env.render_str(fallback, ctx.clone())
                    })
                    .map(|s| s.trim().to_string())
                    .map_err(|e| {
                        format!(
                            "[[news]] rule {} ({}): the {what} template: {e:#}",
                            r + 1,
                            event.as_str()
                        )
                    })
            };
            let mut push = |id: String,
                            goal: Option<&GoalDigest>,
                            ctx: minijinja::Value|
             -> Result<(), String> {
                if out.iter().any(|a| a.id == id) {
                    return Ok(());
                }
                out.push(Announcement {
                    title: render("title", title_src, default_title(event), &ctx)?,
                    body: render("body", body_src, default_body(event), &ctx)?,
                    id,
                    pipeline: section.id.clone(),
                    goal: goal.map(|g| g.id.clone()),
                    event,
                    category: category.clone(),
                    review: rule.review,
                    window_secs: rule.publish_for.as_secs(),
                });
                Ok(())
            };
            if event == NewsEvent::DataStale {
                fn stale(p: &PipelineDigest) -> Option<&crate::digest::CheckReport> {
                    p.data_quality.checks.iter().find(|c| {
                        c.kind == "freshness" && c.status != "passed" && c.status != "skipped"
                    })
                }
                // Once per stale spell: when the data turns stale, not on every run while
                // it stays so.
                let newly = stale(section).filter(|_| previous.and_then(stale).is_none());
                if let Some(c) = newly {
                    let id = format!("{}.data-stale.{}", section.id, section.as_of);
                    push(
                        id,
                        None,
                        context! { dataset => &section.title, message => &c.message },
                    )?;
                }
                continue;
            }
            for g in &goals {
                // Figures held by a failed check are not news.
                if g.held.is_some() {
                    continue;
                }
                let Some((i, value)) = judged(g) else {
                    continue;
                };
                let period = g.series[i].period.clone();
                let before = previous.and_then(|p| p.goals.iter().find(|o| o.id == g.id));
                let earlier: Vec<f64> = g.series[..i].iter().filter_map(|p| p.value).collect();
                let prior = g.series[..i].iter().rev().find_map(|p| p.value);
                let ctx = |extra: minijinja::Value| {
                    let base = context! {
                        goal => context! { id => &g.id, title => &g.title },
                        value => fmt(value, g),
                        unit => g.unit.clone().unwrap_or_default(),
                        period => &period,
                        target => fmt(g.target.value, g),
                        target_by => g.target.by.format("%-d %B %Y").to_string(),
                        status => g.status.label().to_lowercase(),
                        previous_status => before.map(|b| b.status.label().to_lowercase()).unwrap_or_default(),
                        change => prior.map(|p| {
                            let d = value - p;
                            format!("{}{}", if d > 0.0 { "+" } else { "" }, fmt(d, g))
                        }).unwrap_or_default(),
                        threshold => rule.threshold.map(|t| fmt(t, g)).unwrap_or_default(),
                        dataset => &section.title,
                    };
                    context! { ..extra, ..base }
                };
                // Ids never contain '.', so the parts cannot run into one another.
                let key = format!("{}.{}", section.id, g.id);
                match event {
                    NewsEvent::GoalMet => {
                        if g.status == GoalStatus::Met
                            && before.is_none_or(|b| b.status != GoalStatus::Met)
                        {
                            push(
                                format!("{key}.goal-met.{}", slug(&period)),
                                Some(g),
                                ctx(context! {}),
                            )?;
                        }
                    }
                    NewsEvent::StatusChanged => {
                        if let Some(b) = before
                            && b.status != g.status
                        {
                            push(
                                format!(
                                    "{key}.now-{}.{}",
                                    g.status.as_str().replace('_', "-"),
                                    slug(&period)
                                ),
                                Some(g),
                                ctx(context! {}),
                            )?;
                        }
                    }
                    NewsEvent::NewBest | NewsEvent::NewWorst => {
                        let best = event == NewsEvent::NewBest;
                        let record = !earlier.is_empty()
                            && earlier.iter().all(|&e| {
                                if best {
                                    better(g, value, e)
                                } else {
                                    better(g, e, value)
                                }
                            });
                        if record {
                            let what = if best { "new-best" } else { "new-worst" };
                            push(
                                format!("{key}.{what}.{}", slug(&period)),
                                Some(g),
                                ctx(context! {}),
                            )?;
                        }
                    }
                    NewsEvent::ThresholdCrossed => {
                        let (Some(t), Some(p)) = (rule.threshold, prior) else {
                            continue;
                        };
                        if (p < t) != (value < t) {
                            push(
                                format!(
                                    "{key}.crossed-{}.{}",
                                    slug(&t.to_string().replace('-', "minus-")),
                                    slug(&period)
                                ),
                                Some(g),
                                ctx(context! {}),
                            )?;
                        }
                    }
                    NewsEvent::DataStale => {}
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A pipeline part with one goal ("response", lower is better) whose monthly values
    /// are `values` (the last one judged), with `status`.
    fn part(values: &[f64], status: &str) -> PipelineDigest {
        let series: Vec<serde_json::Value> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                json!({
                    "period": format!("2025-{:02}", i + 1),
                    "start": format!("2025-{:02}-01", i + 1),
                    "end": format!("2025-{:02}-01", i + 2),
                    "value": v, "partial": false,
                })
            })
            .collect();
        let last = values.len();
        serde_json::from_value(json!({
            "id": "ems", "title": "EMS <calls>", "department": "Public Safety",
            "description": null, "run_id": "r", "refreshed_at": "2025-12-01T00:00:00Z",
            "as_of": "2025-12-01",
            "table": { "name": "calls", "version": 1, "rows": 10 },
            "sources": [],
            "data_quality": { "run_id": "r", "rows_received": 10, "rows_quarantined": 0,
                "quarantine_limit": 5.0, "checks": [
                    { "id": "freshness:received_at", "kind": "freshness", "severity": "warn",
                      "status": "warned", "message": "newest row is 9 days old" } ] },
            "indicators": [],
            "goals": [{
                "id": "response", "title": "Faster response", "indicator": "minutes",
                "unit": "minutes", "decimals": 1, "status": status, "status_reason": "",
                "latest": { "period": format!("2025-{last:02}"), "value": values[last - 1] },
                "expected": null, "progress": null, "better": "lower", "tolerance": 0.1,
                "baseline": { "period": "2025-01", "value": values[0] },
                "target": { "value": 5.0, "by": "2026-06-30" },
                "series": series,
                "provenance": { "pipeline": "ems", "sources": [], "table": "calls",
                    "table_version": 1, "sql": "", "run_id": "r",
                    "computed_at": "2025-12-01T00:00:00Z" }
            }]
        }))
        .unwrap()
    }

    fn rule(text: &str) -> NewsRule {
        #[derive(Deserialize)]
        struct File {
            news: Vec<NewsRule>,
        }
        toml::from_str::<File>(text).unwrap().news.remove(0)
    }

    fn ids(
        rules: &[NewsRule],
        previous: Option<&PipelineDigest>,
        now: &PipelineDigest,
    ) -> Vec<String> {
        announcements(rules, previous, now)
            .unwrap()
            .into_iter()
            .map(|a| a.id)
            .collect()
    }

    use serde::Deserialize;

    #[test]
    fn each_event_fires_on_its_change_only() {
        let all = [rule(
            "[[news]]\non = [\"goal_met\", \"status_changed\", \"new_best\", \"new_worst\", \"data_stale\"]",
        )];
        // Lower is better: 6.0 is a new best, and the status moved from at risk to on track;
        // the data was fresh before and is stale now.
        let mut before = part(&[8.0, 7.0], "at_risk");
        before.data_quality.checks.clear();
        let now = part(&[8.0, 7.0, 6.0], "on_track");
        assert_eq!(
            ids(&all, Some(&before), &now),
            [
                "ems.response.now-on-track.2025-03",
                "ems.response.new-best.2025-03",
                "ems.data-stale.2025-12-01",
            ]
        );
        // 9.0 is the worst yet; the status did not change, and the data stayed stale (it is
        // announced once per stale spell).
        let worse = part(&[8.0, 7.0, 9.0], "on_track");
        assert_eq!(
            ids(&all, Some(&now), &worse),
            ["ems.response.new-worst.2025-03"]
        );
        // Met, on a first run too.
        let met = part(&[8.0, 6.0, 6.5], "met");
        assert_eq!(
            ids(&all, None, &met),
            ["ems.response.goal-met.2025-03", "ems.data-stale.2025-12-01"]
        );
        // A held part announces nothing about its goals.
        let mut held = met.clone();
        held.goals[0].held = Some(crate::digest::Hold {
            reason: "data quality".into(),
            checks: vec![],
            message: String::new(),
            since_run: "r".into(),
            last_good_run: Some("q".into()),
        });
        assert_eq!(ids(&all, None, &held), ["ems.data-stale.2025-12-01"]);
    }

    #[test]
    fn templates_fill_in_the_figures_and_rules_filter_goals() {
        let custom = [rule(
            "[[news]]\non = [\"threshold_crossed\"]\nthreshold = 7.5\ncategory = \"EMS\"\ntitle = \"{{ goal.title }} under {{ threshold }}\"\ntemplate = \"{{ value }} in {{ period }} ({{ change }}); target {{ target }} by {{ target_by }}; {{ dataset }}\"",
        )];
        let now = part(&[8.0, 7.0], "on_track");
        let a = announcements(&custom, None, &now).unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].id, "ems.response.crossed-7-5.2025-02");
        assert_eq!(a[0].category, "EMS");
        assert_eq!(a[0].title, "Faster response under 7.5 minutes");
        // Plain text: the renderers escape it.
        assert_eq!(
            a[0].body,
            "7.0 minutes in 2025-02 (-1.0 minutes); target 5.0 minutes by 30 June 2026; EMS <calls>"
        );
        let other = [rule(
            "[[news]]\non = [\"goal_met\"]\ngoals = [\"elsewhere\"]",
        )];
        assert!(ids(&other, None, &part(&[8.0, 4.0], "met")).is_empty());
        // A template that fails to render gives way to the default text; `validate` finds it.
        let text = "{{ value | nosuchfilter }}";
        let broken = [rule(&format!(
            "[[news]]\non = [\"goal_met\"]\ntemplate = \"{text}\""
        ))];
        let a = announcements(&broken, None, &part(&[8.0, 4.0], "met")).unwrap();
        assert!(
            a[0].body
                .starts_with("Faster response: 4.0 minutes in 2025-02, meeting"),
            "{}",
            a[0].body
        );
        let err = check_template(text).unwrap_err();
        assert!(err.contains("nosuchfilter"), "{err}");
        assert!(check_template("{{ nosuchname }}").is_err());
        assert!(check_template(default_body(NewsEvent::StatusChanged)).is_ok());
    }
}
