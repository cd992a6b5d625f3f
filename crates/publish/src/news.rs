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
pub fn check_template(text: &str) -> Result<(), String> {
    let mut env = Environment::new();
    env.add_template("t", text)
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
            let render =
                |what: &str, src: &str, ctx: &minijinja::Value| -> Result<String, String> {
                    env.render_str(src, ctx.clone())
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
                    title: render("title", title_src, &ctx)?,
                    body: render("body", body_src, &ctx)?,
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
                let stale = section.data_quality.checks.iter().find(|c| {
                    c.kind == "freshness" && c.status != "passed" && c.status != "skipped"
                });
                if let Some(c) = stale {
                    let id = format!("{}-data-stale-{}", section.id, section.as_of);
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
                let key = format!("{}-{}", section.id, g.id);
                match event {
                    NewsEvent::GoalMet => {
                        if g.status == GoalStatus::Met
                            && before.is_none_or(|b| b.status != GoalStatus::Met)
                        {
                            push(
                                format!("{key}-goal-met-{}", slug(&period)),
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
                                    "{key}-now-{}-{}",
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
                                format!("{key}-{what}-{}", slug(&period)),
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
                                format!("{key}-crossed-{}-{}", slug(&t.to_string()), slug(&period)),
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
